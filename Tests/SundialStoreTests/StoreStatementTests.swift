import Foundation
import SundialCore
import SundialPostgres
import SundialStore
import SundialTestSupport
import Testing

/// Every statement the stores run, prepared against the migrated schema: the SQL is valid, each
/// named parameter is one server-side parameter (no gaps, nothing unnamed), and no statement
/// name is used twice.
@Suite("Integration: store statements")
struct StoreStatementTests {
    @Test("every store statement prepares on the migrated schema with one parameter per name")
    func everyStatementPrepares() async throws {
        let schema = TestPostgres.freshSchema("statements")
        let pool = try await TestPostgres.pool(schema: schema, size: 1)
        try await SundialDatabase.migrate(pool, schema: schema)
        let statements = SundialDatabase.statements
        #expect(Set(statements.map(\.name)).count == statements.count)
        #expect(try statements.count == Self.declaredStatementCount())

        for statement in statements {
            let parameters = try await pool.withSession { session in
                try session.execute("PREPARE \(statement.name) AS \(statement.preparedSQL)")
                defer { _ = try? session.execute("DEALLOCATE \(statement.name)") }
                return try session.execute(
                    "SELECT cardinality(parameter_types) AS n FROM pg_prepared_statements WHERE name = $1",
                    [.text(statement.name)]
                ).first?.int("n")
            }
            #expect(parameters == statement.parameterNames.count, "\(statement.name): \(statement.parameterNames)")
        }
        await pool.close()
    }

    /// The statements that find runs by key must probe the primary key, not scan a partial index
    /// of open runs, even where the last ANALYZE saw none open — the usual picture for a run
    /// ledger whose states change within seconds. With the plain outcome check the planner
    /// chose a whole scan of `timer_runs_open` per statement (or per key) under load.
    @Test("by-key run statements probe the primary key whatever the statistics say")
    func byKeyStatementsProbeThePrimaryKey() async throws {
        let schema = TestPostgres.freshSchema("bykey")
        let pool = try await TestPostgres.pool(schema: schema, size: 1)
        try await SundialDatabase.migrate(pool, schema: schema)
        let names = [
            "sundial_claim_for_dispatch", "sundial_mark_dispatched", "sundial_succeed_runs",
            "sundial_record_deferrals", "sundial_release_claims", "sundial_note_in_flight_seen",
            "sundial_redispatch_runs",
        ]
        let statements = SundialDatabase.statements.filter { names.contains($0.name) }
        #expect(statements.count == names.count)
        let plans = try await pool.withSession { session -> [(String, String)] in
            // 20,000 finished runs of time-ordered ids (as TimerID makes them), analyzed…
            try session.execute(
                """
                INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, outcome, shard)
                SELECT ('01900000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 0, 1, 'tenant-a', 1, now(),
                       'succeeded', g % 256
                FROM generate_series(1, 20000) g
                """)
            try session.execute("ANALYZE timer_runs")
            // …then a quarter of them open again, as in a burst, before the next ANALYZE.
            try session.execute(
                "UPDATE timer_runs SET outcome = 'armed' WHERE timer_id < '01900000-0000-7000-8000-000000001388'")
            try session.execute("SET plan_cache_mode = force_generic_plan")
            var plans: [(String, String)] = []
            for statement in statements {
                try session.execute("PREPARE \(statement.name) AS \(statement.preparedSQL)")
                let nulls = Array(repeating: "NULL", count: statement.parameterNames.count).joined(separator: ", ")
                let plan = try session.execute("EXPLAIN (FORMAT JSON) EXECUTE \(statement.name)(\(nulls))")
                    .compactMap { try $0.string("QUERY PLAN") }.joined(separator: "\n")
                try session.execute("DEALLOCATE \(statement.name)")
                plans.append((statement.name, plan))
            }
            return plans
        }
        for (name, plan) in plans {
            let indexes = Self.indexNames(in: plan).filter { $0.hasPrefix("timer_runs") }
            #expect(!indexes.isEmpty, "\(name) reads no run index:\n\(plan)")
            #expect(indexes.allSatisfy { $0.hasSuffix("_pkey") }, "\(name) uses \(indexes):\n\(plan)")
        }
        await pool.close()
    }

    /// Statements that update many runs take them in `FireKey.lockOrder`, which must be
    /// Postgres's own order of uuids, or two of them can still deadlock.
    @Test("the runs' lock order is Postgres's order of their keys")
    func lockOrderIsPostgresOrder() async throws {
        let schema = TestPostgres.freshSchema("lockorder")
        let pool = try await TestPostgres.pool(schema: schema, size: 1)
        var keys = (0..<300).map { i in FireKey(id: UUID(), occurrence: Int64(i % 3), attempt: 1 + i % 2) }
        // Same ids with other occurrences and attempts, to order by the later columns too.
        keys += keys.prefix(50).map { FireKey(id: $0.id, occurrence: $0.occurrence + 1, attempt: $0.attempt) }
        keys += keys.prefix(50).map { FireKey(id: $0.id, occurrence: $0.occurrence, attempt: $0.attempt + 1) }
        keys.shuffle()
        let shuffled = keys
        let ordered = try await pool.withSession { session in
            try session.execute(
                """
                SELECT id, occurrence, attempt FROM unnest($1::uuid[], $2::bigint[], $3::int[]) AS k(id, occurrence, attempt)
                ORDER BY id, occurrence, attempt
                """,
                [.uuidArray(shuffled.map(\.id)), .int64Array(shuffled.map(\.occurrence)), .intArray(shuffled.map(\.attempt))]
            ).map { row in
                FireKey(
                    id: try row.required("id", row.uuid), occurrence: try row.required("occurrence", row.int64),
                    attempt: try row.required("attempt", row.int))
            }
        }
        #expect(ordered.count == shuffled.count)
        #expect(shuffled.sorted(by: FireKey.lockOrder) == ordered)
        await pool.close()
    }

    /// The `Index Name` values of a JSON plan.
    private static func indexNames(in plan: String) -> [String] {
        plan.components(separatedBy: "\"Index Name\": \"").dropFirst().compactMap {
            $0.split(separator: "\"", maxSplits: 1).first.map(String.init)
        }
    }

    /// How many statements the store's sources declare, so a new one cannot miss the list.
    private static func declaredStatementCount() throws -> Int {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/SundialStore")
        var count = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: sources.path) where file.hasSuffix(".swift") {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            count += text.components(separatedBy: "= PostgresQuery(").count - 1
        }
        return count
    }
}
