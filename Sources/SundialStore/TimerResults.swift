import Foundation
import SundialContract
import SundialCore
import SundialPostgres
import SundialProto
import SundialSchedule

/// An executor's report on one job.
public struct JobOutcome: Sendable, Hashable {
    public var key: FireKey
    public var success: Bool
    public var error: String?
    public var finishedAt: Date
    /// false: the executor said not to retry — dead-lettered at once.
    public var retryable: Bool
    /// The timer version the job was dispatched with (the job's `Sundial-Version` header);
    /// nil when the executor did not say. A result naming another version than its run's
    /// applies to nothing: it is stale or forged.
    public var version: Int64?

    public init(
        key: FireKey, success: Bool, error: String?, finishedAt: Date, retryable: Bool = true, version: Int64? = nil
    ) {
        self.key = key
        self.success = success
        self.error = error
        self.finishedAt = finishedAt
        self.retryable = retryable
        self.version = version
    }
}

/// How a failure is judged beyond the timer's own retry policy (decided by the Dispatcher
/// before the transaction).
public struct FailureHandling: Sendable, Hashable {
    /// The failure hit a downstream whose circuit breaker was tripping or open: give the
    /// attempt back (`RetryBackoff.verdict`).
    public var refund: Bool
    /// The downstream may be starting to fail (not enough evidence yet): a failure that would
    /// dead-letter gets one provisional retry (`RetryBackoff.verdict`).
    public var suspected: Bool
    /// Most attempts given back per occurrence, so a downstream that never recovers cannot
    /// keep a job retrying for ever.
    public var maximumRefunds: Int

    public init(refund: Bool = false, suspected: Bool = false, maximumRefunds: Int = 0) {
        self.refund = refund
        self.suspected = suspected
        self.maximumRefunds = maximumRefunds
    }
}

/// What applying a batch of successes did.
public struct SuccessEffects: Sendable {
    /// Runs finished as succeeded (the rest were duplicates or stale).
    public var applied = 0
    /// `succeeded` events to publish (timers or tenants that asked for them).
    public var events: [(kind: String, timer: StoredTimer, run: StoredRun)] = []
}

/// What applying a result requires next (outside the transaction).
public struct ResultEffects: Sendable {
    /// A retry run armed for the next attempt: publish it.
    public var retry: ScheduledFire?
    /// The failed attempt was given back (it does not count against the retry policy).
    public var refunded = false
    /// Tenant events to publish: (kind, timer, run).
    public var events: [(kind: String, timer: StoredTimer, run: StoredRun)] = []
    /// The result did not match a run awaiting one (a duplicate report): nothing changed.
    public var ignored = false
}

extension TimerStore {
    /// Applies a failure report in one transaction: finishes the run and, by
    /// `RetryBackoff.verdict` over the timer's retry policy, arms the next attempt or
    /// dead-letters the occurrence, settling a one-shot timer and cancelling its waiting
    /// children. A cancelled timer gets no retry. Successes go through `applySuccesses`,
    /// set-wise.
    public func applyFailure(_ outcome: JobOutcome, handling: FailureHandling, now: Date = Date()) async throws
        -> ResultEffects
    {
        try await pool.transaction { session in
            var effects = ResultEffects()
            let key = outcome.key
            guard let row = try session.execute(
                TimerQueries.selectRunForResult,
                [
                    "timer_id": .uuid(key.id), "occurrence": .int64(key.occurrence), "attempt": .int(key.attempt),
                    "version": .int64(outcome.version ?? 0),
                ]
            ).first, try [.dispatched, .dispatching].contains(RunOutcome(stored: row.required("run_outcome", row.string)))
            else {
                effects.ignored = true
                return effects
            }
            let timer = try StoredTimer(row: row)
            let refundedBefore = try row.int("run_refunded") ?? 0
            // Attempts before the occurrence's latest redrive do not count against its policy.
            let attemptBase = min(max(try row.int("run_attempt_base") ?? 0, 0), key.attempt - 1)
            let finished = { (state: RunOutcome, error: String?) throws -> StoredRun in
                let rows = try session.execute(
                    TimerQueries.finishRun,
                    [
                        "timer_id": .uuid(key.id), "occurrence": .int64(key.occurrence), "attempt": .int(key.attempt),
                        "outcome": .text(state.rawValue), "error": error.map { .text($0) } ?? .null,
                        "finished_at": .timestamp(outcome.finishedAt),
                    ])
                return try StoredRun(row: rows[0])
            }

            let error = String((outcome.error ?? "failed").prefix(2000))
            let policy = RetryBackoff(timer.retryPolicy.flatMap { try? Sundial_V1_RetryPolicy(serializedBytes: $0) })
            let verdict: FailureVerdict = timer.state == .cancelled
                ? .deadLetter
                : policy.verdict(
                    failedAttempt: key.attempt - attemptBase, refundedBefore: refundedBefore, retryable: outcome.retryable,
                    refund: handling.refund, suspected: handling.suspected, maximumRefunds: handling.maximumRefunds,
                    timerID: TimerID.text(timer.id),
                    occurrence: key.occurrence)
            if case .retry(let delay, let refunded) = verdict {
                let retryTime = now.addingTimeInterval(delay.seconds)
                effects.refunded = verdict.refunds(given: refundedBefore)
                let run = try finished(.failed, error)
                let next = ArmedRun(
                    occurrence: key.occurrence, attempt: key.attempt + 1, dueAt: retryTime, refunded: refunded,
                    attemptBase: attemptBase)
                // A paused timer (a recurring one whose job was in flight when it was paused)
                // keeps its state; the retry waits paused for the resume.
                let paused = timer.state == .paused
                let settled = timer.recurring || paused
                    ? try session.execute(TimerQueries.noteTimerError, [
                        "id": .uuid(timer.id), "error": .text(error),
                    ])[0]
                    : try session.execute(
                        TimerQueries.settleTimer, [
                            "id": .uuid(timer.id), "state": .text(StoredTimerState.retrying.rawValue),
                            "last_error": .text(error), "next_fire_at": .timestamp(retryTime),
                        ])[0]
                let current = try StoredTimer(row: settled)
                try Self.insertArmedRun(next, of: current, session)
                if paused {
                    try session.execute(TimerQueries.pauseRun, [
                        "timer_id": .uuid(timer.id), "occurrence": .int64(next.occurrence), "attempt": .int(next.attempt),
                    ])
                    effects.events.append((TimerEventKind.attemptFailed, current, run))
                    return effects
                }
                effects.retry = ScheduledFire(
                    tenant: current.tenant, timerID: current.id, shard: current.shard, version: current.version,
                    dueAt: retryTime, occurrence: next.occurrence, attempt: next.attempt, queue: current.queue,
                    payload: current.payload, priority: current.priority)
                effects.events.append((TimerEventKind.attemptFailed, current, run))
            } else {
                let run = try finished(.dead, error)
                let settled = timer.recurring
                    ? try session.execute(TimerQueries.noteTimerError, [
                        "id": .uuid(timer.id), "error": .text(error),
                    ])[0]
                    : try session.execute(TimerQueries.settleTimer, [
                        "id": .uuid(timer.id), "state": .text(StoredTimerState.dead.rawValue),
                        "last_error": .text(error), "next_fire_at": .null,
                    ])[0]
                if !timer.recurring {
                    try session.execute(TimerQueries.cancelWaitingChildren, ["parent": .uuid(timer.id)])
                }
                effects.events.append((TimerEventKind.deadLetter, try StoredTimer(row: settled), run))
            }
            return effects
        }
    }
}

extension TimerStore {
    /// Applies successful results set-wise in one transaction (the common case on the hot
    /// path): runs finished, one-shot timers settled, waiting children started. Results that
    /// match no run awaiting one are ignored. Returns how many runs succeeded.
    public func applySuccesses(_ outcomes: [JobOutcome]) async throws -> SuccessEffects {
        guard !outcomes.isEmpty else { return SuccessEffects() }
        let outcomes = outcomes.sorted { FireKey.lockOrder($0.key, $1.key) }
        return try await pool.transaction { session in
            let rows = try session.execute(
                TimerQueries.succeedRuns,
                [
                    "ids": .uuidArray(outcomes.map(\.key.id)),
                    "occurrences": .int64Array(outcomes.map(\.key.occurrence)),
                    "attempts": .intArray(outcomes.map(\.key.attempt)),
                    "finished_at": .timestampArray(outcomes.map(\.finishedAt)),
                    "versions": .int64Array(outcomes.map { $0.version ?? 0 }),
                ]
            )
            let succeeded = try rows.map { try $0.required("timer_id", $0.uuid) }
            guard !succeeded.isEmpty else { return SuccessEffects() }
            let parents = Array(Set(succeeded))
            try session.execute(TimerQueries.settleSucceeded, ["ids": .uuidArray(parents)])
            let finishedAt = Dictionary(outcomes.map { ($0.key.id, $0.finishedAt) }, uniquingKeysWith: max)
            for child in try session.execute(TimerQueries.selectWaitingChildrenOfAny, ["parents": .uuidArray(parents)])
                .map(StoredTimer.init(row:))
            {
                guard let parent = child.afterTimerID, let at = finishedAt[parent], let start = Self.start(child, at) else {
                    continue
                }
                try session.execute(TimerQueries.startChild, [
                    "id": .uuid(child.id), "next_fire_at": .timestamp(start.fireAt),
                    "next_nominal_at": .timestamp(start.nominal),
                ])
            }
            var effects = SuccessEffects(applied: succeeded.count)
            // Completion events, for the runs whose timer or tenant asked for them: the timers
            // read after settling, so the event shows the final state.
            let asking = Set(try session.execute(
                TimerQueries.selectNotifiedTimers,
                [
                    "ids": .uuidArray(succeeded),
                    "tenants": .textArray(try rows.map { try $0.required("tenant", $0.string) }),
                ]
            ).map { try $0.required("id", $0.uuid) })
            let notified = try rows.compactMap { row -> (UUID, StoredRun)? in
                let id = try row.required("timer_id", row.uuid)
                return asking.contains(id) ? (id, try StoredRun(row: row)) : nil
            }
            if !notified.isEmpty {
                let timers = Dictionary(
                    try session.execute(TimerQueries.selectTimersByID, ["ids": .uuidArray(Array(Set(notified.map(\.0))))])
                        .map { let timer = try StoredTimer(row: $0); return (timer.id, timer) },
                    uniquingKeysWith: { first, _ in first })
                effects.events = notified.compactMap { id, run in
                    timers[id].map { (kind: TimerEventKind.succeeded, timer: $0, run: run) }
                }
            }
            return effects
        }
    }
}

extension TimerStore {
    /// A dependent timer's first fire: its schedule starts when the parent succeeded.
    static func start(_ child: StoredTimer, _ parentSucceededAt: Date) -> OccurrenceStepper.Occurrence? {
        guard let schedule = child.decodedSchedule else { return nil }
        return OccurrenceStepper.first(schedule, timerID: TimerID.text(child.id), createdAt: parentSucceededAt)
    }
}

extension StoredRun {
    init(row: PostgresRow) throws {
        occurrence = try row.required("occurrence", row.int64)
        attempt = try row.required("attempt", row.int)
        version = try row.required("version", row.int64)
        scheduledAt = try row.required("scheduled_at", row.date)
        firedAt = try row.date("fired_at")
        dispatchedAt = try row.date("dispatched_at")
        finishedAt = try row.date("finished_at")
        outcome = try RunOutcome(stored: row.required("outcome", row.string))
        error = try row.string("error")
    }
}
