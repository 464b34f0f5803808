import Foundation
import SundialContract
import SundialCore
import SundialPostgres

/// Deletes what the retention no longer keeps (see migration 0006): timers in a final state
/// last changed before the cutoff — with all their runs and so their payloads — and, of timers
/// that go on, finished runs older than the cutoff. One batch per call, in one transaction,
/// fenced by a transaction-scoped advisory lock so that only one reaper works at a time
/// however many planners run; the walk's position is shared in `reaper_cursor`.
public struct RetentionStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public enum BatchOutcome: Sendable, Hashable {
        /// Another reaper holds the lock.
        case busy
        /// This batch walked `walked` timers and deleted what it could.
        case walked(walked: Int, timersDeleted: Int, runsDeleted: Int)
        /// The walk reached timers created after the cutoff: it starts over next time.
        case caughtUp
    }

    /// States a timer ends in (nothing more will happen to it).
    static let finalStates: [StoredTimerState] = [.succeeded, .dead, .cancelled, .completed]
    /// Run outcomes that are history (not awaiting anything).
    static let finishedRunOutcomes: [RunOutcome] = [.succeeded, .failed, .dead, .cancelled, .superseded]

    /// One batch of at most `batchSize` timers, with `now` injected (tests move it). At most
    /// `runsPerBatch` runs are deleted per transaction: when a batch's timers have more (long
    /// histories, the first time retention is enabled), the walk stays on them and the next
    /// batch goes on deleting; their timers go once their runs are gone.
    public func reapBatch(now: Date, retention: Duration, batchSize: Int, runsPerBatch: Int = 50_000) async throws
        -> BatchOutcome
    {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        let cutoff = now.addingTimeInterval(-seconds)
        // Timers created after the cutoff cannot have finished before it: the walk stops at
        // the smallest id of that instant.
        let bound = TimerID.lowerBound(at: cutoff)
        let batch = max(1, batchSize)
        return try await pool.transaction { session in
            guard try session.execute(RetentionQueries.tryLock).first?.bool("locked") == true else { return .busy }
            let position = try session.execute(RetentionQueries.cursor).first?.uuid("position")
                ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            let ids = try session.execute(RetentionQueries.walk, [.uuid(position), .uuid(bound), .int(batch)])
                .compactMap { try $0.uuid("id") }
            guard let last = ids.last else {
                try session.execute(RetentionQueries.moveCursor, [.uuid(UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)))])
                return .caughtUp
            }
            let doomed = try session.execute(
                RetentionQueries.finishedTimers,
                [.uuidArray(ids), .textArray(Self.finalStates.map(\.rawValue)), .timestamp(cutoff)]
            ).compactMap { try $0.uuid("id") }
            let cap = max(1, runsPerBatch)
            let runs = try session.execute(
                RetentionQueries.deleteRuns,
                [.uuidArray(ids), .uuidArray(doomed), .textArray(Self.finishedRunOutcomes.map(\.rawValue)), .timestamp(cutoff), .int(cap)]
            ).first?.int("deleted") ?? 0
            // More runs than one transaction may delete: stay on these timers (cursor not moved).
            guard runs < cap else { return .walked(walked: ids.count, timersDeleted: 0, runsDeleted: runs) }
            let deleted = try session.execute(RetentionQueries.deleteTimers, [.uuidArray(doomed)]).affectedRows
            try session.execute(RetentionQueries.moveCursor, [.uuid(last)])
            return .walked(walked: ids.count, timersDeleted: deleted, runsDeleted: runs)
        }
    }
}

/// The reaper's SQL, in one place.
enum RetentionQueries {
    /// One reaper per schema at a time (released when the transaction ends).
    static let tryLock = PostgresQuery(
        name: "sundial_reaper_lock",
        sql: "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.sundial_reaper')) AS locked")

    static let cursor = PostgresQuery(
        name: "sundial_reaper_cursor", sql: "SELECT position FROM reaper_cursor WHERE id = 1")

    /// $1 position.
    static let moveCursor = PostgresQuery(
        name: "sundial_reaper_move", sql: "UPDATE reaper_cursor SET position = $1 WHERE id = 1")

    /// The next timers after $1 created before $2 (ids), at most $3: a primary-key range scan.
    static let walk = PostgresQuery(
        name: "sundial_reaper_walk",
        sql: "SELECT id FROM timers WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3")

    /// Of $1, the timers in a final state ($2) last changed before $3 with no run still to
    /// fire or to report (a `completed` recurring timer's last occurrence may still be armed —
    /// held by a paused queue, say — and must fire); locked until the batch ends.
    static let finishedTimers = PostgresQuery(
        name: "sundial_reaper_finished_timers",
        sql: """
            SELECT t.id FROM timers t
            WHERE t.id = ANY($1::uuid[]) AND t.state = ANY($2::text[]) AND t.updated_at < $3
              AND NOT EXISTS (
                  SELECT 1 FROM timer_runs r
                  WHERE r.timer_id = t.id AND r.outcome IN (\(RunOutcome.sql(.armed, .dispatching, .dispatched))))
            FOR UPDATE OF t
            """)

    /// $1 the finished timers (their runs are gone).
    static let deleteTimers = PostgresQuery(
        name: "sundial_reaper_delete_timers", sql: "DELETE FROM timers WHERE id = ANY($1::uuid[])")

    /// At most $5 runs: every run of the finished timers $2 (none is pending); of the other
    /// walked timers $1, finished runs ($3) older than $4.
    static let deleteRuns = PostgresQuery(
        name: "sundial_reaper_delete_runs",
        sql: """
            WITH doomed AS (
                SELECT ctid FROM timer_runs
                WHERE timer_id = ANY($1::uuid[])
                  AND (timer_id = ANY($2::uuid[])
                       OR (outcome = ANY($3::text[]) AND coalesce(finished_at, scheduled_at) < $4))
                LIMIT $5),
            gone AS (DELETE FROM timer_runs WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1)
            SELECT count(*) AS deleted FROM gone
            """)
}
