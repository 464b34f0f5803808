import Foundation
import SundialCore
import SundialPostgres

/// How a redrive (`Timers.Retry`) ended.
public enum RedriveOutcome: Sendable {
    /// The occurrence runs again: `run` is armed (due at once) and must be published; nil
    /// when the timer is paused (the run waits paused for the resume).
    case redriven(StoredTimer, run: ArmedRun?)
    case notFound
    /// No dead-lettered occurrence to run again (none, the one named is not dead, or it was
    /// redriven already); or the timer was cancelled.
    case nothingToRetry(StoredTimer)
    /// The occurrence has had so many attempts that another round could pass the highest
    /// attempt number a result may carry (`ArmedRun.maximumAttempt`).
    case tooManyAttempts(StoredTimer)
}

extension TimerStore {
    /// Runs a dead-lettered occurrence again (`occurrence` nil: the latest one): its next
    /// attempt is armed, due at `now`, with a fresh round of the timer's retry policy (the
    /// attempts before count as `attemptBase`). A one-shot timer goes from `dead` back to
    /// `armed` (version + 1); a recurring timer's state is unchanged, and when it is paused the
    /// run waits paused. Its waiting children, cancelled when
    /// it was dead-lettered, stay cancelled. The timer row is locked first, so two redrives of
    /// one occurrence cannot both arm it: the second finds no dead attempt.
    public func redrive(tenant: String, id: UUID, occurrence: Int64?, now: Date = Date()) async throws -> RedriveOutcome {
        try await pool.transaction { session in
            guard let row = try session.execute(
                TimerQueries.selectTimerForUpdate, ["tenant": .text(tenant), "id": .uuid(id)]
            ).first else { return .notFound }
            var timer = try StoredTimer(row: row)
            guard timer.state != .cancelled, timer.recurring || timer.state == .dead else {
                return .nothingToRetry(timer)
            }
            guard let dead = try session.execute(
                TimerQueries.selectDeadRun, ["timer_id": .uuid(id), "occurrence": .int64(occurrence ?? -1)]
            ).first else { return .nothingToRetry(timer) }
            let attempt = try dead.required("attempt", dead.int)
            guard attempt + RetryBackoff.mostAttempts <= ArmedRun.maximumAttempt else { return .tooManyAttempts(timer) }
            let run = ArmedRun(
                occurrence: try dead.required("occurrence", dead.int64), attempt: attempt + 1, dueAt: now,
                attemptBase: attempt)
            if !timer.recurring {
                guard let rearmed = try session.execute(
                    TimerQueries.rearmTimer, ["id": .uuid(id), "next_fire_at": .timestamp(now)]
                ).first else { return .notFound }
                timer = try StoredTimer(row: rearmed)
            } else {
                // A recurring timer's state is unchanged, but it changed now: the reaper, which
                // re-checks `updated_at` on the rows it locks, must not take it for long finished.
                try session.execute(TimerQueries.touchTimer, ["id": .uuid(id)])
            }
            try Self.insertArmedRun(run, of: timer, session)
            if timer.state == .paused {
                try session.execute(TimerQueries.pauseRun, [
                    "timer_id": .uuid(id), "occurrence": .int64(run.occurrence), "attempt": .int(run.attempt),
                ])
                return .redriven(timer, run: nil)
            }
            return .redriven(timer, run: run)
        }
    }
}
