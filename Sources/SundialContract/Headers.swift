/// Every message header Sundial sets or reads, in one place.
public enum SundialHeader {
    // On jobs in the work stream (BRIEF §3), for executors.
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

    // NATS / JetStream.
    /// Dedupe id; for jobs: `<timer>:<occurrence>:<attempt>`.
    public static let natsMessageID = "Nats-Msg-Id"
    public static let natsSchedule = "Nats-Schedule"
    public static let natsScheduleTarget = "Nats-Schedule-Target"
    public static let natsExpectedLastSubjectSequence = "Nats-Expected-Last-Subject-Sequence"
    /// Set by JetStream on a fired message: the schedule subject it came from.
    public static let natsScheduler = "Nats-Scheduler"

    // NATS micro error convention.
    public static let serviceError = "Nats-Service-Error"
    public static let serviceErrorCode = "Nats-Service-Error-Code"
}
