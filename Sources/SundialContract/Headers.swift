/// Every message header Sundial sets or reads, in one place.
public enum SundialHeader {
    // On jobs in the work stream, for executors (services/dispatcher/README.md, "Job headers").
    public static let timerID = "Sundial-Timer-Id"
    public static let tenant = "Sundial-Tenant"
    /// RFC 3339 (UTC, milliseconds) due time of this occurrence.
    public static let scheduledAt = "Sundial-Scheduled-At"
    /// 1-based attempt number.
    public static let attempt = "Sundial-Attempt"
    public static let occurrence = "Sundial-Occurrence"
    public static let version = "Sundial-Version"
    /// "high", "normal" or "low".
    public static let priority = "Sundial-Priority"
    /// RFC 3339 time JetStream fired the schedule.
    public static let firedAt = "Sundial-Fired-At"
    /// RFC 3339 time the Dispatcher forwarded the job.
    public static let dispatchedAt = "Sundial-Dispatched-At"

    // On messages kept in the poison stream (`<prefix>_POISON`).
    /// Why the message was not processed.
    public static let poisonReason = "Sundial-Poison-Reason"
    /// The subject it arrived on.
    public static let poisonSubject = "Sundial-Poison-Subject"

    // NATS / JetStream.
    /// Dedupe id; for jobs: `<timer>:<occurrence>:<attempt>:<version>`.
    public static let natsMessageID = "Nats-Msg-Id"

    /// A job's dedupe id (`natsMessageID`): `<timer>:<occurrence>:<attempt>:<version>`.
    public static func jobMessageID(
        timerID: String, occurrence: some BinaryInteger, attempt: some BinaryInteger, version: some BinaryInteger
    ) -> String {
        jobMessageIDPrefix(timerID: timerID, occurrence: occurrence, attempt: attempt) + "\(version)"
    }

    /// What the dedupe id of every job of one run starts with, whatever its version.
    public static func jobMessageIDPrefix(
        timerID: String, occurrence: some BinaryInteger, attempt: some BinaryInteger
    ) -> String {
        "\(timerID):\(occurrence):\(attempt):"
    }
    public static let natsSchedule = "Nats-Schedule"
    public static let natsScheduleTarget = "Nats-Schedule-Target"
    public static let natsExpectedLastSubjectSequence = "Nats-Expected-Last-Subject-Sequence"
    /// Set by JetStream on a fired message: the schedule subject it came from.
    public static let natsScheduler = "Nats-Scheduler"

    /// On a 429 from admission control: whole seconds (rounded up) until the tenant may send
    /// again; `Status.retry_after` has it exactly.
    public static let retryAfter = "Retry-After"

    // NATS micro error convention.
    public static let serviceError = "Nats-Service-Error"
    public static let serviceErrorCode = "Nats-Service-Error-Code"
}

/// Kinds of tenant notification events (`sundial.v1.<tenant>.events.<kind>`).
public enum TimerEventKind {
    /// An attempt failed and a retry is armed.
    public static let attemptFailed = "attempt_failed"
    /// No attempts left: the occurrence is dead-lettered.
    public static let deadLetter = "dead_letter"
    /// A job succeeded (opt-in per timer, or for every timer of a tenant).
    public static let succeeded = "succeeded"
    /// An executor's result was refused (out-of-range fields, another tenant, undecodable);
    /// the reason is in `run.error`. The run it named is unchanged.
    public static let resultRejected = "result_rejected"
    /// A queue the tenant's timers target is at its backlog bound: its due fires wait in
    /// Sundial (retried every few seconds) until executors make room. About a queue, not a
    /// timer: `queue` and `detail` are set. At most once a minute per tenant and queue.
    public static let queueFull = "queue_full"
    /// A circuit breaker opened: the queue's (every tenant on it is told) or the tenant's own on
    /// the queue. Its due jobs wait in Sundial without spending attempts; a few probe jobs go
    /// out after a cool-down. About a queue: `queue` and `detail` are set.
    public static let queueBreakerOpened = "queue_breaker_opened"
    /// The breaker closed again (its probes succeeded): held jobs go out.
    public static let queueBreakerClosed = "queue_breaker_closed"
}
