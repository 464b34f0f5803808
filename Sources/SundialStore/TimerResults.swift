import Foundation
import SundialContract
import SundialPostgres

/// An executor's report on one job.
public struct JobOutcome: Sendable, Hashable {
    public var key: FireKey
    public var success: Bool
    public var error: String?
    public var finishedAt: Date
    /// false: the executor said not to retry — dead-lettered at once.
    public var retryable: Bool

    public init(key: FireKey, success: Bool, error: String?, finishedAt: Date, retryable: Bool = true) {
        self.key = key
        self.success = success
        self.error = error
        self.finishedAt = finishedAt
        self.retryable = retryable
    }
}

/// What applying a result requires next (outside the transaction).
public struct ResultEffects: Sendable {
    /// A retry run armed for the next attempt: publish it.
    public var retry: FireRow?
    /// Tenant events to publish: (kind, timer, run).
    public var events: [(kind: String, timer: StoredTimer, run: StoredRun)] = []
    /// The result did not match a run awaiting one (a duplicate report): nothing changed.
    public var ignored = false
}

extension TimerStore {
    /// Applies a failure report in one transaction: finishes the run and arms the next
    /// attempt (`retryAt` decides when, nil = no attempts left) or dead-letters the occurrence,
    /// settling a one-shot timer and cancelling its waiting children. Successes go through
    /// `applySuccesses`, set-wise.
    public func applyFailure(
        _ outcome: JobOutcome,
        retryAt: @escaping @Sendable (StoredTimer, _ failedAttempt: Int) -> Date?
    ) async throws -> ResultEffects {
        try await pool.transaction { session in
            var effects = ResultEffects()
            let key = outcome.key
            guard let row = try session.execute(
                TimerQueries.selectRunForResult, [.uuid(key.id), .int64(key.occurrence), .int(key.attempt)]
            ).first, let runState = try row.string("run_outcome"), runState == "dispatched" || runState == "dispatching"
            else {
                effects.ignored = true
                return effects
            }
            let timer = try StoredTimer(row: row)
            let finished = { (state: String, error: String?) throws -> StoredRun in
                let rows = try session.execute(
                    TimerQueries.finishRun,
                    [
                        .uuid(key.id), .int64(key.occurrence), .int(key.attempt), .text(state),
                        error.map { .text($0) } ?? .null, .timestamp(outcome.finishedAt),
                    ])
                return try StoredRun(row: rows[0])
            }

            let error = String((outcome.error ?? "failed").prefix(2000))
            let retryTime = timer.state == .cancelled ? nil : retryAt(timer, key.attempt)
            if let retryTime {
                let run = try finished("failed", error)
                let next = ArmedRun(occurrence: key.occurrence, attempt: key.attempt + 1, dueAt: retryTime)
                let settled = timer.recurring
                    ? try session.execute(TimerQueries.noteTimerError, [.uuid(timer.id), .text(error)])[0]
                    : try session.execute(
                        TimerQueries.settleTimer, [.uuid(timer.id), .text("retrying"), .text(error), .timestamp(retryTime)])[0]
                let current = try StoredTimer(row: settled)
                try Self.insertArmedRun(next, of: current, session)
                effects.retry = FireRow(
                    id: current.id, tenant: current.tenant, shard: current.shard, version: current.version,
                    nextFireAt: retryTime, occurrence: next.occurrence, attempt: next.attempt, queue: current.queue,
                    payload: current.payload, priority: current.priority)
                effects.events.append((TimerEventKind.attemptFailed, current, run))
            } else {
                let run = try finished("dead", error)
                let settled = timer.recurring
                    ? try session.execute(TimerQueries.noteTimerError, [.uuid(timer.id), .text(error)])[0]
                    : try session.execute(TimerQueries.settleTimer, [.uuid(timer.id), .text("dead"), .text(error), .null])[0]
                if !timer.recurring {
                    try session.execute(TimerQueries.cancelWaitingChildren, [.uuid(timer.id)])
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
    public func applySuccesses(
        _ outcomes: [JobOutcome],
        childStart: @escaping @Sendable (StoredTimer, _ parentSucceededAt: Date) -> (fireAt: Date, nominal: Date)?
    ) async throws -> Int {
        guard !outcomes.isEmpty else { return 0 }
        return try await pool.transaction { session in
            let succeeded = try session.execute(
                TimerQueries.succeedRuns,
                [
                    .uuidArray(outcomes.map(\.key.id)), .int64Array(outcomes.map(\.key.occurrence)),
                    .intArray(outcomes.map(\.key.attempt)), .timestampArray(outcomes.map(\.finishedAt)),
                ]
            ).map { try $0.uuid("timer_id")! }
            guard !succeeded.isEmpty else { return 0 }
            let parents = Array(Set(succeeded))
            try session.execute(TimerQueries.settleSucceeded, [.uuidArray(parents)])
            let finishedAt = Dictionary(outcomes.map { ($0.key.id, $0.finishedAt) }, uniquingKeysWith: max)
            for child in try session.execute(TimerQueries.selectWaitingChildrenOfAny, [.uuidArray(parents)])
                .map(StoredTimer.init(row:))
            {
                guard let parent = child.afterTimerID, let at = finishedAt[parent], let start = childStart(child, at) else {
                    continue
                }
                try session.execute(TimerQueries.startChild, [.uuid(child.id), .timestamp(start.fireAt), .timestamp(start.nominal)])
            }
            return succeeded.count
        }
    }
}

extension StoredRun {
    init(row: PostgresRow) throws {
        occurrence = try row.int64("occurrence")!
        attempt = try row.int("attempt")!
        version = try row.int64("version")!
        scheduledAt = try row.date("scheduled_at")!
        firedAt = try row.date("fired_at")
        dispatchedAt = try row.date("dispatched_at")
        finishedAt = try row.date("finished_at")
        outcome = try row.string("outcome")!
        error = try row.string("error")
    }
}
