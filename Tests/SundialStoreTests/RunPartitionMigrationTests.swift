import Foundation
import SundialCore
import SundialPostgres
import SundialStore
import SundialTestSupport
import Testing

/// Migrations 0012–0014 on a schema that already holds runs: they stay, in `timer_runs_legacy`,
/// which covers every id up to the UTC midnight a week ahead; new ids beyond it go to the
/// partitions after it, ids nothing covers to the default partition.
@Suite("Integration: timer_runs partitioning migration")
struct RunPartitionMigrationTests {
    static func migrate(_ pool: PostgresPool, schema: String, through version: Int) async throws {
        let migrations = try SundialDatabase.migrations().filter { $0.version <= version }
        _ = try await PostgresMigrator(migrations: migrations, schema: schema).migrate(pool)
    }

    static func insertRun(_ session: PostgresSession, id: UUID) throws {
        try session.execute(
            """
            INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, outcome)
            VALUES ($1, 0, 1, 'acme', 1, now(), 'succeeded')
            """, [.uuid(id)])
    }

    static func placement(_ pool: PostgresPool) async throws -> [String: String] {
        try await pool.withSession { session in
            var partitions: [String: String] = [:]
            for row in try session.execute(
                "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'timer_runs'::regclass"
            ) {
                partitions[try row.string("name") ?? "?"] = try row.string("bound") ?? "?"
            }
            return partitions
        }
    }

    /// The UTC midnight a week ahead, computed before and after a migration (it may straddle one).
    static func boundCandidates(_ before: Date, _ after: Date) -> Set<String> {
        Set([before, after].map {
            "FOR VALUES FROM (MINVALUE) TO ('\(TimerID.text(TimerID.lowerBound(at: RunPartitionCalendar.dayStart($0).addingTimeInterval(7 * 86_400))))')"
        })
    }

    @Test("stored runs become the legacy partition up to the midnight a week ahead; three days follow; the rest goes to the default")
    func storedRunsBecomeTheLegacyPartition() async throws {
        let schema = TestPostgres.freshSchema("partmigrate")
        let pool = try await TestPostgres.pool(schema: schema, size: 1)
        try await Self.migrate(pool, schema: schema, through: 11)
        let old = TimerID.make(now: Date().addingTimeInterval(-3 * 86_400))
        let recent = TimerID.make()
        let notTimeOrdered = UUID(uuidString: "f0000000-0000-4000-8000-000000000000")!
        _ = try await pool.withSession { session in
            try Self.insertRun(session, id: old)
            try Self.insertRun(session, id: recent)
            try Self.insertRun(session, id: notTimeOrdered)
        }
        let before = Date()
        try await SundialDatabase.migrate(pool, schema: schema)
        let after = Date()

        let partitions = try await Self.placement(pool)
        #expect(Self.boundCandidates(before, after).contains(partitions["timer_runs_legacy"] ?? ""), "\(partitions)")
        #expect(partitions["timer_runs_default"] == "DEFAULT")
        let bound = RunPartitionCalendar.dayStart(after).addingTimeInterval(7 * 86_400)
        let days = (0...2).map { RunPartitionCalendar.name(day: bound.addingTimeInterval(Double($0) * 86_400)) }
        #expect(Set(days).isSubset(of: Set(partitions.keys)) || RunPartitionCalendar.dayStart(before) != RunPartitionCalendar.dayStart(after))
        #expect(partitions.count == 5 || RunPartitionCalendar.dayStart(before) != RunPartitionCalendar.dayStart(after), "\(partitions)")
        // Every stored run is still there: the time-ordered ones in the legacy partition, the
        // other in the default one; the legacy partition kept its four indexes, now the parent's (0015 adds a fifth).
        let placed = try await pool.withSession { session in
            try session.execute(
                "SELECT timer_id, tableoid::regclass::text AS p FROM timer_runs WHERE timer_id = ANY($1::uuid[])",
                [.uuidArray([old, recent, notTimeOrdered])]
            ).reduce(into: [UUID: String]()) { $0[try $1.uuid("timer_id")!] = try $1.string("p") }
        }
        #expect(placed == [old: "timer_runs_legacy", recent: "timer_runs_legacy", notTimeOrdered: "timer_runs_default"])
        let legacyIndexes = try await pool.withSession { session in
            try session.execute(
                """
                SELECT x.indexrelid::regclass::text AS name FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid
                WHERE x.indrelid = 'timer_runs_legacy'::regclass
                """
            ).map { try $0.string("name") ?? "" }
        }
        // 0014 reused its four; 0015 added the in-flight index to every partition.
        #expect(
            Set(["timer_runs_legacy_pkey", "timer_runs_legacy_armed", "timer_runs_legacy_open", "timer_runs_legacy_paused"])
                .isSubset(of: legacyIndexes))
        #expect(legacyIndexes.count == 5)
        // The walk's position moved (an earlier build's reaper finds no reaper_cursor and stops).
        let tables = try await pool.withSession { session in
            try session.execute(
                "SELECT to_regclass('reaper_cursor') IS NULL AS gone, to_regclass('reaper_position') IS NOT NULL AS moved"
            ).first.map { [try $0.bool("gone"), try $0.bool("moved")] }
        }
        #expect(tables == [true, true])

        // The reaper's pass adds the days after (with or without a retention, so that the
        // default stays empty); an id of a created day lands in its partition, and the key
        // still refuses a second run with the same key.
        let store = RetentionStore(pool: pool)
        let week = Duration.seconds(7 * 86_400)
        guard case .done(let work) = try await store.maintainPartitions(now: after, retention: nil, lookaheadDays: 10) else {
            Issue.record("the reaper lock was busy on a private schema")
            return
        }
        let tenth = RunPartitionCalendar.name(day: RunPartitionCalendar.dayStart(after).addingTimeInterval(10 * 86_400))
        #expect(work.created == [tenth], "\(work)")
        #expect(work.walkBefore == nil, "no retention, no walk")
        let future = TimerID.make(now: bound.addingTimeInterval(3600))
        let landed = try await pool.withSession { session in
            try Self.insertRun(session, id: future)
            return try session.execute("SELECT tableoid::regclass::text AS p FROM timer_runs WHERE timer_id = $1", [.uuid(future)])
                .first?.string("p")
        }
        #expect(landed == days[0])
        await #expect(throws: PostgresError.self) {
            _ = try await pool.withSession { session in try Self.insertRun(session, id: future) }
        }
        // An id beyond every partition goes to the default; its day is then not created (told,
        // not thrown), the day before it is.
        let far = RunPartitionCalendar.dayStart(after).addingTimeInterval(12 * 86_400)
        let beyond = TimerID.make(now: far.addingTimeInterval(3600))
        let spilled = try await pool.withSession { session in
            try Self.insertRun(session, id: beyond)
            return try session.execute("SELECT tableoid::regclass::text AS p FROM timer_runs WHERE timer_id = $1", [.uuid(beyond)])
                .first?.string("p")
        }
        #expect(spilled == "timer_runs_default")
        guard case .done(let later) = try await store.maintainPartitions(
            now: far.addingTimeInterval(-86_400), retention: week, lookaheadDays: 1)
        else {
            Issue.record("busy")
            return
        }
        let spilledDay = RunPartitionCalendar.name(day: far)
        #expect(later.failed.keys.contains(spilledDay) && !later.created.contains(spilledDay), "\(later)")
        #expect(later.created == [RunPartitionCalendar.name(day: far.addingTimeInterval(-86_400))], "\(later)")
        await pool.close()
    }
}
