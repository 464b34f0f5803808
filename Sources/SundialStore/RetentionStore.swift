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
    static let finishedRunOutcomes: [RunOutcome] = [.succeeded, .failed, .dead, .cancelled, .superseded, .skipped]

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
            let ids = try session.execute(RetentionQueries.walk, [
                "after_id": .uuid(position), "before_id": .uuid(bound), "limit": .int(batch),
            ])
                .compactMap { try $0.uuid("id") }
            guard let last = ids.last else {
                try session.execute(RetentionQueries.moveCursor, [
                    "position": .uuid(UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))),
                ])
                return .caughtUp
            }
            let doomed = try session.execute(
                RetentionQueries.finishedTimers,
                [
                    "ids": .uuidArray(ids), "final_states": .textArray(Self.finalStates.map(\.rawValue)),
                    "changed_before": .timestamp(cutoff),
                ]
            ).compactMap { try $0.uuid("id") }
            let cap = max(1, runsPerBatch)
            let runs = try session.execute(
                RetentionQueries.deleteRuns,
                [
                    "walked": .uuidArray(ids), "finished": .uuidArray(doomed),
                    "finished_outcomes": .textArray(Self.finishedRunOutcomes.map(\.rawValue)),
                    "older_than": .timestamp(cutoff), "limit": .int(cap),
                ]
            ).first?.int("deleted") ?? 0
            // More runs than one transaction may delete: stay on these timers (cursor not moved).
            guard runs < cap else { return .walked(walked: ids.count, timersDeleted: 0, runsDeleted: runs) }
            let deleted = try session.execute(RetentionQueries.deleteTimers, ["ids": .uuidArray(doomed)]).affectedRows
            try session.execute(RetentionQueries.moveCursor, ["position": .uuid(last)])
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

    /// Where the walk goes on.
    static let moveCursor = PostgresQuery(
        name: "sundial_reaper_move", sql: "UPDATE reaper_cursor SET position = $position WHERE id = 1")

    /// The next timers after $after_id created before $before_id (ids), at most $limit: a
    /// primary-key range scan.
    static let walk = PostgresQuery(
        name: "sundial_reaper_walk",
        sql: "SELECT id FROM timers WHERE id > $after_id AND id < $before_id ORDER BY id LIMIT $limit")

    /// Of $ids, the timers in a final state ($final_states) last changed before $changed_before
    /// with no run still to fire or to report (a `completed` recurring timer's last occurrence
    /// may still be armed — held by a paused queue, say — and must fire); locked until the batch
    /// ends.
    static let finishedTimers = PostgresQuery(
        name: "sundial_reaper_finished_timers",
        sql: """
            SELECT t.id FROM timers t
            WHERE t.id = ANY($ids::uuid[]) AND t.state = ANY($final_states::text[]) AND t.updated_at < $changed_before
              AND NOT EXISTS (
                  SELECT 1 FROM timer_runs r
                  WHERE r.timer_id = t.id AND r.outcome IN (\(RunOutcome.sql(.armed, .dispatching, .dispatched))))
            FOR UPDATE OF t
            """)

    /// The finished timers $ids (their runs are gone).
    static let deleteTimers = PostgresQuery(
        name: "sundial_reaper_delete_timers", sql: "DELETE FROM timers WHERE id = ANY($ids::uuid[])")

    /// At most $limit runs: every run of the finished timers $finished (none is pending); of the other
    /// walked timers $walked, finished runs ($finished_outcomes) older than $older_than.
    static let deleteRuns = PostgresQuery(
        name: "sundial_reaper_delete_runs",
        sql: """
            WITH doomed AS (
                SELECT ctid FROM timer_runs
                WHERE timer_id = ANY($walked::uuid[])
                  AND (timer_id = ANY($finished::uuid[])
                       OR (outcome = ANY($finished_outcomes::text[]) AND coalesce(finished_at, scheduled_at) < $older_than))
                LIMIT $limit),
            gone AS (DELETE FROM timer_runs WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1)
            SELECT count(*) AS deleted FROM gone
            """)

    /// Every statement above (the statement test prepares each on a real server).
    static let all: [PostgresQuery] = [
        tryLock, cursor, moveCursor, walk, finishedTimers, deleteTimers, deleteRuns,
    ]
}
