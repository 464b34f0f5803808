import Foundation
import SundialContract
import SundialCore
import SundialPostgres

/// Deletes what the retention no longer keeps (see migrations 0006 and 0012): timers in a final
/// state last changed before the cutoff — with all their runs and so their payloads — and, of
/// timers that go on, finished runs older than the cutoff. Only timers of closed `timer_runs`
/// partitions (`RunPartitionCalendar`) are reaped: a closed partition whose timers are all
/// finished loses its timers in batches and then drops as one table with all its runs
/// (`maintainPartitions`); the others are walked row by row (`reapBatch`). Every call is one
/// transaction fenced by a transaction-scoped advisory lock, so only one reaper works at a
/// time however many planners run; the walk's position is shared in `reaper_position`.
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
    /// `walkBefore` is where this walk stops (timers created before it): the start of the
    /// first day that was not closed when the walk began (`RunPartitionCalendar.reapBefore`,
    /// fixed per walk so that a day closing meanwhile is left to the partition pass); nil
    /// computes it from `now`.
    public func reapBatch(
        now: Date, retention: Duration, batchSize: Int, runsPerBatch: Int = 50_000, walkBefore: Date? = nil
    ) async throws -> BatchOutcome {
        let cutoff = Self.cutoff(now: now, retention: retention)
        // Timers created after the cutoff cannot have finished before it; the walk stops
        // earlier still, at the first open partition, whose runs are to go as one table.
        let bound = TimerID.lowerBound(at: walkBefore ?? RunPartitionCalendar.reapBefore(now: now, retention: retention))
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

    static func cutoff(now: Date, retention: Duration) -> Date {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        return now.addingTimeInterval(-seconds)
    }

    /// A closed partition being emptied; its timers were all finished when the drain began.
    public struct PartitionDrain: Sendable, Hashable {
        public var partition: String
        /// Timers up to this id are deleted (a keyset: no batch rescans what went before).
        public var after: UUID
        /// The partition keeps a live timer (found so, or one turned live during the drain: a
        /// redrive): runs whose timers are gone are deleted row by row instead, and then it is held.
        public var orphans: Bool

        public init(partition: String, after: UUID = RetentionStore.zeroID, orphans: Bool = false) {
            self.partition = partition
            self.after = after
            self.orphans = orphans
        }
    }

    /// What one `maintainPartitions` call did.
    public struct PartitionWork: Sendable, Hashable {
        public var created: [String] = []
        public var dropped: [String] = []
        /// Closed partitions with a live timer: left to the row-by-row walk.
        public var held: [String] = []
        /// Finished timers of a closed partition deleted without their runs, which go with it.
        public var timersDeleted = 0
        /// Runs of a held partition whose timers a drain had deleted.
        public var runsDeleted = 0
        /// Where to go on: pass it to the next call.
        public var drain: PartitionDrain?
        /// Where the row-by-row walk is to stop (`RunPartitionCalendar.walkBefore`); nil
        /// without a retention, or when another reaper held the lock for the reaping part.
        public var walkBefore: Date?
        /// More to do at once (a drain, or another closed partition): call again after a pause.
        public var more = false
        /// Partitions not created or dropped this time (lock timeout; rows of the new range in
        /// the default partition), with the reason.
        public var failed: [String: String] = [:]

        public init() {}
    }

    public enum PartitionPass: Sendable, Hashable {
        /// Another reaper holds the lock.
        case busy
        case done(PartitionWork)
    }

    public static let zeroID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))

    /// Creates the partitions of `timer_runs` (`periodDays` each) up to `lookaheadDays` ahead
    /// (with or without a retention, so that the default partition stays empty), and — with a
    /// retention — empties closed partitions whose timers are all finished, `deleteBatch`
    /// timers per call (`drain`: where the previous call stopped), and drops them. Partitions
    /// named in `held` were found holding a live timer earlier and are not scanned again. A
    /// partition DDL locks `timer_runs` until its transaction commits, so creating is one short
    /// transaction and a drop is the last statement of another; a lock not granted within
    /// `lockTimeout` gives up (`failed`, and no further DDL this call) instead of queueing the
    /// hot path behind it, and a CREATE (which scans the default partition under that lock) is
    /// not tried while the default holds more than `defaultScanLimit` runs.
    public func maintainPartitions(
        now: Date, retention: Duration?, lookaheadDays: Int = 2, periodDays: Int = 1, deleteBatch: Int = 5_000,
        held: Set<String> = [], drain: PartitionDrain? = nil, lockTimeout: Duration = .milliseconds(200),
        defaultScanLimit: Int = 10_000
    ) async throws -> PartitionPass {
        let timeout = max(1, Int(lockTimeout.components.seconds) * 1000 + Int(lockTimeout.components.attoseconds / 1_000_000_000_000_000))
        let creating = try await pool.transaction { session -> PartitionWork? in
            guard let existing = try Self.lockAndList(session) else { return nil }
            var work = PartitionWork()
            let missing = RunPartitionCalendar.missing(now: now, lookaheadDays: lookaheadDays, periodDays: periodDays, existing: existing)
            guard !missing.isEmpty else { return work }
            let inDefault = try session.execute(PartitionQueries.defaultRuns, ["limit": .int(defaultScanLimit + 1)]).first?.int("runs") ?? 0
            if inDefault > defaultScanLimit {
                for partition in missing {
                    work.failed[partition.name] = "the default partition holds more than \(defaultScanLimit) runs, which a CREATE would scan under an exclusive lock (docs/operations.md#retention)"
                }
                return work
            }
            for partition in missing {
                // Rows of the range in the default partition would make the CREATE fail after a
                // scan of the default under lock: look by index first, and leave that range to the default.
                let range = try Self.range(partition)
                if try !session.execute(PartitionQueries.anyDefaultRun, range).isEmpty {
                    work.failed[partition.name] = "the default partition holds runs of this range"
                    continue
                }
                guard Self.attempt(
                    session, PartitionQueries.create(partition), lockTimeoutMilliseconds: timeout,
                    failed: &work.failed[partition.name])
                else { break }
                work.created.append(partition.name)
            }
            return work
        }
        guard var work = creating else { return .busy }
        guard let retention else { return .done(work) }
        let cutoff = Self.cutoff(now: now, retention: retention)
        let reapBefore = RunPartitionCalendar.reapBefore(now: now, retention: retention)
        let batch = max(1, deleteBatch)
        let reaping = try await pool.transaction { session -> PartitionWork? in
            guard let existing = try Self.lockAndList(session) else { return nil }
            var work = PartitionWork()
            work.walkBefore = RunPartitionCalendar.walkBefore(existing, reapBefore: reapBefore)
            let closed = RunPartitionCalendar.closed(existing, reapBefore: reapBefore)
            func finished(_ partition: RunPartition) throws -> PostgresBindings {
                var bindings = try Self.range(partition)
                bindings.bind("final_states", .textArray(Self.finalStates.map(\.rawValue)))
                bindings.bind("changed_before", .timestamp(cutoff))
                return bindings
            }
            /// The partition is empty of timers: drop it (the last statement: its lock ends with the commit).
            func drop(_ partition: RunPartition) -> PartitionWork {
                if Self.attempt(
                    session, PartitionQueries.drop(partition), lockTimeoutMilliseconds: timeout,
                    failed: &work.failed[partition.name]) {
                    work.dropped.append(partition.name)
                    work.more = true  // other closed partitions: in the next call
                }
                return work
            }
            if let drain, let partition = closed.first(where: { $0.name == drain.partition }) {
                if drain.orphans {
                    var bindings = try Self.range(partition)
                    bindings.bind("limit", .int(batch * 10))
                    let deleted = try session.execute(PartitionQueries.deleteOrphanRuns, bindings).first?.int("deleted") ?? 0
                    work.runsDeleted = deleted
                    if deleted >= batch * 10 {
                        work.drain = drain
                        work.more = true
                    } else {
                        work.held.append(partition.name)
                    }
                    return work
                }
                var bindings = try finished(partition)
                bindings.bind("after", .uuid(drain.after))
                bindings.bind("limit", .int(batch))
                let row = try session.execute(PartitionQueries.deleteFinishedTimers, bindings).first
                let deleted = try row?.int("deleted") ?? 0
                work.timersDeleted = deleted
                if deleted >= batch, let last = try row?.uuid("last") {
                    work.drain = PartitionDrain(partition: partition.name, after: last)
                    work.more = true
                    return work
                }
                if try session.execute(PartitionQueries.anyTimer, Self.range(partition)).isEmpty { return drop(partition) }
                // A timer turned live meanwhile keeps the partition: delete the runs of the
                // timers already gone, which no walk would find.
                work.drain = PartitionDrain(partition: partition.name, orphans: true)
                work.more = true
                return work
            }
            for partition in closed where !held.contains(partition.name) {
                if try session.execute(PartitionQueries.anyTimer, Self.range(partition)).isEmpty { return drop(partition) }
                if try !session.execute(PartitionQueries.liveTimer, finished(partition)).isEmpty {
                    // Held: first delete any runs whose timers are gone (a drain that a restart
                    // or a new reaper cut short leaves them, and no walk finds them); the
                    // sweep ends by marking it held.
                    work.drain = PartitionDrain(partition: partition.name, orphans: true)
                    work.more = true
                    return work
                }
                work.drain = PartitionDrain(partition: partition.name)
                work.more = true
                return work
            }
            return work
        }
        if let reaping {
            work.held = reaping.held
            work.dropped = reaping.dropped
            work.timersDeleted = reaping.timersDeleted
            work.runsDeleted = reaping.runsDeleted
            work.drain = reaping.drain
            work.more = reaping.more
            work.walkBefore = reaping.walkBefore
            work.failed.merge(reaping.failed) { _, new in new }
        } else {
            work.drain = drain
        }
        return .done(work)
    }

    /// [$lower, $upper) of a bounded partition (a missing lower bound: the smallest id).
    private static func range(_ partition: RunPartition) throws -> PostgresBindings {
        guard let upper = partition.upper else {
            throw PostgresError(kind: .parameters, message: "partition \(partition.name) has no upper bound")
        }
        return ["lower": .uuid(partition.lower ?? zeroID), "upper": .uuid(upper)]
    }

    /// Takes the reaper's lock (nil: another reaper holds it) and lists the partitions of `timer_runs`.
    private static func lockAndList(_ session: PostgresSession) throws -> [RunPartition]? {
        guard try session.execute(RetentionQueries.tryLock).first?.bool("locked") == true else { return nil }
        return try session.execute(PartitionQueries.list).compactMap { row -> RunPartition? in
            guard let name = try row.string("name"), let bound = try row.string("bound") else { return nil }
            return RunPartition(name: name, bound: bound)
        }
    }

    /// One DDL statement in a savepoint, so a lock timeout or a refusal leaves the transaction
    /// (and the other partitions' work) intact; the reason goes to `failed`. Only DDL follows in
    /// the transaction, so the bounds set here (the lock wait; the statement, whose scan of the
    /// default partition holds the exclusive lock) apply to nothing else.
    private static func attempt(
        _ session: PostgresSession, _ ddl: String, lockTimeoutMilliseconds: Int, failed: inout String?
    ) -> Bool {
        do {
            try session.execute("SAVEPOINT partition_ddl")
            try session.execute("SET LOCAL lock_timeout = \(lockTimeoutMilliseconds)")
            try session.execute("SET LOCAL statement_timeout = \(max(1_000, lockTimeoutMilliseconds * 10))")
            try session.execute(ddl)
            try session.execute("RELEASE SAVEPOINT partition_ddl")
            return true
        } catch {
            _ = try? session.execute("ROLLBACK TO SAVEPOINT partition_ddl")
            failed = "\(error)"
            return false
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
        name: "sundial_reaper_cursor", sql: "SELECT position FROM reaper_position WHERE id = 1")

    /// Where the walk goes on.
    static let moveCursor = PostgresQuery(
        name: "sundial_reaper_move", sql: "UPDATE reaper_position SET position = $position WHERE id = 1")

    /// The next timers after $after_id created before $before_id (ids), at most $limit: a
    /// primary-key range scan.
    static let walk = PostgresQuery(
        name: "sundial_reaper_walk",
        sql: "SELECT id FROM timers WHERE id > $after_id AND id < $before_id ORDER BY id LIMIT $limit")

    /// What the retention deletes, of timers `t`: in a final state ($final_states), last changed
    /// before $changed_before, with no run still to fire or to report (a `completed` recurring
    /// timer's last occurrence may still be armed — held by a paused queue, say — and must fire).
    static let finished = """
        (t.state = ANY($final_states::text[]) AND t.updated_at < $changed_before
         AND NOT EXISTS (
             SELECT 1 FROM timer_runs r
             WHERE r.timer_id = t.id AND r.outcome IN (\(RunOutcome.sql(.armed, .dispatching, .dispatched)))))
        """

    /// Of $ids, the `finished` timers, locked until the batch ends.
    static let finishedTimers = PostgresQuery(
        name: "sundial_reaper_finished_timers",
        sql: "SELECT t.id FROM timers t WHERE t.id = ANY($ids::uuid[]) AND \(finished) FOR UPDATE OF t")

    /// The finished timers $ids (their runs are gone).
    static let deleteTimers = PostgresQuery(
        name: "sundial_reaper_delete_timers", sql: "DELETE FROM timers WHERE id = ANY($ids::uuid[])")

    /// At most $limit runs: every run of the finished timers $finished (none is pending); of the other
    /// walked timers $walked, finished runs ($finished_outcomes) older than $older_than.
    static let deleteRuns = PostgresQuery(
        name: "sundial_reaper_delete_runs",
        sql: """
            WITH doomed AS (
                SELECT timer_id, occurrence, attempt FROM timer_runs   -- by key: ctid is per partition
                WHERE timer_id = ANY($walked::uuid[])
                  AND (timer_id = ANY($finished::uuid[])
                       OR (outcome = ANY($finished_outcomes::text[]) AND coalesce(finished_at, scheduled_at) < $older_than))
                LIMIT $limit),
            gone AS (
                DELETE FROM timer_runs r USING doomed d
                WHERE r.timer_id = d.timer_id AND r.occurrence = d.occurrence AND r.attempt = d.attempt
                RETURNING 1)
            SELECT count(*) AS deleted FROM gone
            """)

    /// Every statement above (the statement test prepares each on a real server).
    static let all: [PostgresQuery] = [
        tryLock, cursor, moveCursor, walk, finishedTimers, deleteTimers, deleteRuns,
    ]
}

/// The SQL of `timer_runs`'s partitions, in one place. Partition DDL cannot take parameters:
/// it is built here from our own names and ids only (`RunPartitionCalendar`), never from input.
enum PartitionQueries {
    /// The partitions of `timer_runs` in the current schema, with their bounds.
    static let list = PostgresQuery(
        name: "sundial_partitions_list",
        sql: """
            SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'timer_runs'::regclass
            """)

    /// Whether any timer has an id in [$lower, $upper) (a primary-key probe).
    static let anyTimer = PostgresQuery(
        name: "sundial_partitions_any_timer",
        sql: "SELECT 1 AS found FROM timers WHERE id >= $lower AND id < $upper LIMIT 1")

    /// A timer in [$lower, $upper) that the retention keeps (not `RetentionQueries.finished`).
    static let liveTimer = PostgresQuery(
        name: "sundial_partitions_live_timer",
        sql: "SELECT 1 AS found FROM timers t WHERE t.id >= $lower AND t.id < $upper AND NOT \(RetentionQueries.finished) LIMIT 1")

    /// How many runs the default partition holds, counted up to $limit.
    static let defaultRuns = PostgresQuery(
        name: "sundial_partitions_default_runs",
        sql: "SELECT count(*) AS runs FROM (SELECT 1 FROM timer_runs_default LIMIT $limit) AS d")

    /// Whether the default partition holds a run of [$lower, $upper) (its key's index).
    static let anyDefaultRun = PostgresQuery(
        name: "sundial_partitions_any_default_run",
        sql: "SELECT 1 AS found FROM timer_runs_default WHERE timer_id >= $lower AND timer_id < $upper LIMIT 1")

    /// At most $limit finished timers in [$lower, $upper) after $after, in id order, without
    /// their runs (the partition drops with them); the same conditions as the walk's,
    /// re-checked on locked rows. Returns how many and the last id.
    static let deleteFinishedTimers = PostgresQuery(
        name: "sundial_partitions_delete_timers",
        sql: """
            WITH doomed AS (
                SELECT t.id FROM timers t
                WHERE t.id > $after AND t.id >= $lower AND t.id < $upper AND \(RetentionQueries.finished)
                ORDER BY t.id LIMIT $limit
                FOR UPDATE OF t),
            gone AS (DELETE FROM timers WHERE id IN (SELECT id FROM doomed) RETURNING id)
            SELECT count(*) AS deleted, (array_agg(id ORDER BY id DESC))[1] AS last FROM gone
            """)

    /// At most $limit runs in [$lower, $upper) whose timer is gone (a drain that ended with a
    /// timer turned live).
    static let deleteOrphanRuns = PostgresQuery(
        name: "sundial_partitions_delete_orphan_runs",
        sql: """
            WITH doomed AS (
                SELECT r.timer_id, r.occurrence, r.attempt FROM timer_runs r
                WHERE r.timer_id >= $lower AND r.timer_id < $upper
                  AND NOT EXISTS (SELECT 1 FROM timers t WHERE t.id = r.timer_id)
                LIMIT $limit),
            gone AS (
                DELETE FROM timer_runs r USING doomed d
                WHERE r.timer_id = d.timer_id AND r.occurrence = d.occurrence AND r.attempt = d.attempt
                RETURNING 1)
            SELECT count(*) AS deleted FROM gone
            """)

    static func create(_ partition: RunPartition) -> String {
        let lower = partition.lower.map { "'\(TimerID.text($0))'" } ?? "MINVALUE"
        let upper = partition.upper.map { "'\(TimerID.text($0))'" } ?? "MAXVALUE"
        return "CREATE TABLE \(partition.name) PARTITION OF timer_runs FOR VALUES FROM (\(lower)) TO (\(upper))"
    }

    static func drop(_ partition: RunPartition) -> String { "DROP TABLE \(partition.name)" }

    static let all: [PostgresQuery] = [list, anyTimer, liveTimer, defaultRuns, anyDefaultRun, deleteFinishedTimers, deleteOrphanRuns]
}
