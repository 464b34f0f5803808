import Foundation
import Logging
import SundialLocalCluster
import SundialPostgres
import Synchronization
import SundialTestSupport
import Testing

@Suite("Integration: Postgres")
struct PostgresIntegrationTests {
    @Test("a database that hangs: after one connect timeout the pool fails calls at once, probing now and then")
    func poolFailsFastWhileDown() async throws {
        // A listener that accepts TCP connections (the kernel's backlog) but never answers,
        // like a Postgres behind a dead network path: libpq waits out connect_timeout.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(listener, 64) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let pool = PostgresPool(
            configuration: PostgresConfiguration(port: port, connectTimeout: .seconds(2)), size: 4, logger: TestPostgres.logger,
            probeInterval: .seconds(1))
        defer { Task { await pool.close() } }

        func attempt() async -> (Duration, PostgresError?) {
            let started = ContinuousClock.now
            do {
                try await pool.withSession { session in try session.execute("SELECT 1") }
                return (ContinuousClock.now - started, nil)
            } catch {
                return (ContinuousClock.now - started, error as? PostgresError)
            }
        }
        // One failed connection is not an outage (an idle socket may just have been dropped);
        // two in a row are.
        let (first, firstError) = await attempt()
        #expect(firstError?.isConnectionFailure == true)
        #expect(first >= .milliseconds(1500))
        #expect(!pool.isDown)
        let (second, _) = await attempt()
        #expect(second >= .milliseconds(1500))
        #expect(pool.isDown)
        // While down: at once, with a connection error (callers answer 503).
        for _ in 0..<20 {
            let (waited, error) = await attempt()
            #expect(error?.isConnectionFailure == true)
            #expect(waited < .milliseconds(200))
        }
        // After the probe interval one call goes through to find out (and waits again).
        try await Task.sleep(for: .milliseconds(1100))
        let (probe, _) = await attempt()
        #expect(probe >= .milliseconds(1500))
        print("pool fail-fast: first call \(first), calls while down < 200 ms, probe \(probe)")
    }

    struct Boom: Error {}

    // MARK: Values

    @Test("parameters of every kind round-trip and decode")
    func parameterRoundTrip() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("values"))
        let allBytes = (0...255).map { UInt8($0) }
        let moment = try utc(2026, 11, 22, 14, 5, 3, micros: 123_456)
        let beforeEpoch = try utc(1969, 12, 31, 23, 59, 59, micros: 999_999)
        let id = UUID()
        let text = "héllo 'single' \"double\" \\back ünï 🎉 \t tab"

        let rows = try await pool.withSession { session in
            try session.execute(
                """
                CREATE TABLE v (t text, i bigint, small int, b boolean, f boolean, ts timestamptz,
                                old timestamptz, u uuid, blob bytea, empty bytea, j jsonb, d double precision, n text)
                """)
            try session.execute(
                "INSERT INTO v VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                [
                    .text(text), .int64(.min), .int(-42), .bool(true), .bool(false), .timestamp(moment),
                    .timestamp(beforeEpoch), .uuid(id), .bytes(allBytes), .bytes([]),
                    .json(#"{"a": [1, "two"]}"#), .double(0.1), .null,
                ])
            return try session.execute(
                """
                SELECT t, i, small, b, f, ts, old, u, blob, empty, j->'a'->>1 AS j1, d, n,
                       to_char(ts, 'YYYY-MM-DD HH24:MI:SS.US') AS ts_text,
                       to_char(old, 'YYYY-MM-DD HH24:MI:SS.US') AS old_text,
                       octet_length(blob) AS blob_length, u::text AS u_text
                FROM v
                """)
        }
        try #require(rows.count == 1)
        let row = rows[0]
        #expect(try row.string("t") == text)
        #expect(try row.int64("i") == .min)
        #expect(try row.int("small") == -42)
        #expect(try row.bool("b") == true)
        #expect(try row.bool("f") == false)
        // The server saw exactly the microseconds we sent…
        #expect(row["ts_text"] == "2026-11-22 14:05:03.123456")
        #expect(row["old_text"] == "1969-12-31 23:59:59.999999")
        // …and the decoder gives back the same instants.
        #expect(try row.date("ts") == moment)
        #expect(try row.date("old") == beforeEpoch)
        #expect(try row.uuid("u") == id)
        #expect(row["u_text"] == id.uuidString.lowercased())
        #expect(try row.int("blob_length") == 256)
        #expect(try row.bytes("blob") == allBytes)
        #expect(try row.bytes("empty") == [])
        #expect(try row.string("j1") == "two")
        #expect(try row.double("d") == 0.1)
        #expect(try row.isNull("n"))
        #expect(try row.string("n") == nil)
        #expect(row["n"] == nil)
        #expect(try !row.isNull("t"))
        #expect(rows.columnNames.first == "t")
        #expect(rows.columnIndex("blob") == 8)
        await pool.close()
    }

    @Test("a required column that is NULL throws a decoding error naming it, never traps")
    func requiredColumn() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("required"))
        let row = try #require(try await pool.withSession { session in
            try session.execute("SELECT NULL::uuid AS id, 'x'::text AS name")
        }.first)
        #expect(try row.required("name", row.string) == "x")
        do {
            _ = try row.required("id", row.uuid)
            Issue.record("a NULL required column decoded")
        } catch let error as PostgresError {
            #expect(error.kind == .decoding)
            #expect(error.message.contains("id"))
        }
        // An unknown column is a decoding error too.
        #expect(throws: PostgresError.self) { try row.required("missing", row.string) }
    }

    @Test("timestamp text forms decode: offsets, no fraction, date, infinity")
    func timestampForms() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("tsforms"))
        let rows = try await pool.withSession { session in
            try session.execute(
                """
                SELECT '2026-11-22 19:35:03.5+05:30'::text AS offset_form,
                       '2026-11-22 10:05:03-04'::text AS negative_offset,
                       '2026-11-22 14:05:03.123456Z'::timestamptz AS z_input,
                       '2026-11-22 14:05:03'::timestamp AS naive,
                       '2026-11-22'::date AS day,
                       'infinity'::timestamptz AS inf,
                       '0044-03-15 12:00:00+00 BC'::timestamptz AS ides,
                       'not a date'::text AS junk
                """)
        }
        let row = rows[0]
        #expect(try row.date("offset_form") == utc(2026, 11, 22, 14, 5, 3, micros: 500_000))
        #expect(try row.date("negative_offset") == utc(2026, 11, 22, 14, 5, 3))
        #expect(try row.date("z_input") == utc(2026, 11, 22, 14, 5, 3, micros: 123_456))
        #expect(try row.date("naive") == utc(2026, 11, 22, 14, 5, 3))
        #expect(try row.date("day") == utc(2026, 11, 22, 0, 0, 0))
        #expect(try row.date("inf") == Date.distantFuture)
        // 44 BC is astronomical year -43: 2017 years before 1975 is far in the past.
        #expect(try row.date("ides")! < utc(1, 1, 1, 0, 0, 0))
        #expect(throws: PostgresError.self) { try row.date("junk") }
        await pool.close()
    }

    @Test("array literals survive unnest batches, including awkward strings")
    func arraysViaUnnest() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("arrays"))
        let strings = [
            "plain", "with,comma", "quote\"s", "back\\slash", "{braces}", "NULL", "", "  padded  ",
            "ünïcödé 🎉", "new\nline",
        ]
        let ids = strings.map { _ in UUID() }
        let numbers: [Int64] = [.min, -1, 0, 1, .max, 42, 7, 8, 9, 10]
        let base = try utc(2026, 3, 29, 0, 59, 59, micros: 999_999)
        let times = (0..<strings.count).map { base.addingTimeInterval(Double($0) * 3600.000001) }

        let rows = try await pool.withSession { session in
            try session.execute(
                """
                SELECT u, t, i, ts FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::timestamptz[])
                    WITH ORDINALITY AS x(u, t, i, ts, ord) ORDER BY ord
                """,
                [.uuidArray(ids), .textArray(strings), .int64Array(numbers), .timestampArray(times)])
        }
        try #require(rows.count == strings.count)
        for (index, row) in rows.enumerated() {
            #expect(try row.uuid("u") == ids[index])
            #expect(try row.string("t") == strings[index])
            #expect(try row.int64("i") == numbers[index])
            let decoded = try #require(try row.date("ts"))
            #expect(abs(decoded.timeIntervalSince(times[index])) < 0.000_001)
        }

        let withNulls = try await pool.withSession { session in
            try session.execute(
                "SELECT x, x IS NULL AS missing FROM unnest($1::text[]) WITH ORDINALITY AS a(x, ord) ORDER BY ord",
                [.textArray(["a", nil, "NULL"])])
        }
        #expect(withNulls.map { $0["x"] } == ["a", nil, "NULL"])
        #expect(try withNulls.map { try $0.bool("missing") } == [false, true, false])

        let empty = try await pool.withSession { session in
            try session.execute("SELECT cardinality($1::uuid[]) AS n", [.uuidArray([])])
        }
        #expect(try empty[0].int("n") == 0)
        await pool.close()
    }

    // MARK: Errors

    @Test("server errors map to PostgresError with their SQLSTATE")
    func sqlStateMapping() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("errors"), size: 1)
        try await pool.withSession { session in
            try session.execute("CREATE TABLE k (id int PRIMARY KEY)")
            try session.execute("INSERT INTO k VALUES (1)")
        }

        let unique = try await captureError(pool, "INSERT INTO k VALUES (1)")
        #expect(unique.isUniqueViolation)
        #expect(unique.sqlState == "23505")
        #expect(unique.kind == .query)
        #expect(!unique.isConnectionFailure && !unique.isSerializationFailure)
        #expect(unique.detail?.contains("already exists") == true)
        #expect(unique.description.contains("23505"))

        let syntax = try await captureError(pool, "SELEC 1")
        #expect(syntax.sqlState == "42601")
        #expect(!syntax.isUniqueViolation)

        let division = try await captureError(pool, "SELECT 1 / 0")
        #expect(division.sqlState == "22012")

        for code in ["40001", "40P01"] {
            let error = try await captureError(pool, "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '\(code)'; END $$")
            #expect(error.isSerializationFailure, "\(code)")
        }
        let adminShutdown = try await captureError(
            pool, "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '57P01'; END $$")
        #expect(adminShutdown.isConnectionFailure)
        #expect(adminShutdown.kind == .query)

        // Decoding problems are errors too, never traps.
        let rows = try await pool.withSession { session in try session.execute("SELECT 'abc' AS word, 1 AS one") }
        #expect(throws: PostgresError.self) { try rows[0].int64("word") }
        #expect(throws: PostgresError.self) { try rows[0].int64("nope") }
        #expect(throws: PostgresError.self) { try rows[0].string(7) }
        do {
            _ = try rows[0].uuid("word")
            Issue.record("expected a decoding error")
        } catch let error as PostgresError {
            #expect(error.kind == .decoding)
        }

        // NUL cannot travel in text: a clear error, not truncation.
        let nul = try await captureError(pool, "SELECT $1::text", [.text("a\u{0}b")])
        #expect(nul.kind == .query)

        // The connection is still usable after all that.
        let after = try await pool.withSession { session in try session.execute("SELECT count(*) AS n FROM k") }
        #expect(try after[0].int("n") == 1)
        await pool.close()
    }

    // MARK: Transactions

    @Test("transaction commits on return, rolls back on throw, savepoints nest")
    func transactions() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("tx"), size: 2)
        try await pool.withSession { session in try session.execute("CREATE TABLE t (id int PRIMARY KEY)") }

        await #expect(throws: Boom.self) {
            try await pool.transaction { session in
                try session.execute("INSERT INTO t VALUES (1)")
                throw Boom()
            }
        }
        #expect(try await count(pool, "t") == 0)

        try await pool.transaction { session in try session.execute("INSERT INTO t VALUES (2)") }
        #expect(try await count(pool, "t") == 1)

        // A caught statement error poisons the transaction: it must not look committed.
        let poisoned = await #expect(throws: PostgresError.self) {
            try await pool.transaction { session in
                try session.execute("INSERT INTO t VALUES (3)")
                _ = try? session.execute("INSERT INTO t VALUES (2)")
            }
        }
        #expect(poisoned?.sqlState == "25P02")
        #expect(try await count(pool, "t") == 1)

        // Inner failure rolls back to its savepoint; the outer transaction still commits.
        try await pool.transaction { session in
            try session.execute("INSERT INTO t VALUES (4)")
            do {
                try session.transaction { inner in
                    try inner.execute("INSERT INTO t VALUES (5)")
                    throw Boom()
                }
            } catch is Boom {}
            try session.transaction { inner in try inner.execute("INSERT INTO t VALUES (6)") }
        }
        let ids = try await pool.withSession { session in
            try session.execute("SELECT id FROM t ORDER BY id").map { try $0.int(0) }
        }
        #expect(ids == [2, 4, 6])

        // A session that leaves a transaction open is cleaned up before the next user.
        let pid = try await pool.withSession { session -> Int in
            try session.execute("BEGIN")
            try session.execute("INSERT INTO t VALUES (7)")
            return try session.execute("SELECT pg_backend_pid()")[0].int(0)!
        }
        let state = try await pool.withSession { session in
            try session.execute("SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS fresh")
        }
        #expect(try state[0].int("pid") == pid)
        #expect(try await count(pool, "t") == 3)
        await pool.close()
    }

    // MARK: Prepared statements

    @Test("a prepared statement is prepared once per connection and reused")
    func preparedStatementReuse() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("prepared"), size: 1)
        let insert = PostgresQuery(name: "test_reuse_insert", sql: "INSERT INTO p (n) VALUES ($n) RETURNING n * 2 AS doubled")
        let info = PostgresQuery(
            name: "test_reuse_info",
            sql: """
                SELECT prepare_time::text AS prepared_at, generic_plans + custom_plans AS runs
                FROM pg_prepared_statements WHERE name = $name
                """)
        try await pool.withSession { session in try session.execute("CREATE TABLE p (n int)") }

        let doubled = try await pool.withSession { session in
            try (0..<40).map { try session.execute(insert, ["n": .int($0)])[0].int("doubled")! }
        }
        #expect(doubled == (0..<40).map { $0 * 2 })
        let first = try await pool.withSession { session in try session.execute(info, ["name": .text(insert.name)]) }
        try #require(first.count == 1)
        #expect(try first[0].int("runs") == 40)

        // A later session on the same connection reuses the statement (same prepare_time).
        let second = try await pool.withSession { session in
            for n in 40..<50 { try session.execute(insert, ["n": .int(n)]) }
            return try session.execute(info, ["name": .text(insert.name)])
        }
        #expect(second[0]["prepared_at"] == first[0]["prepared_at"])
        #expect(try second[0].int("runs") == 50)

        // The server forgets every statement: the next call re-prepares transparently.
        let third = try await pool.withSession { session in
            try session.execute("DEALLOCATE ALL")
            try session.execute(insert, ["n": .int(50)])
            return try session.execute(info, ["name": .text(insert.name)])
        }
        #expect(try third[0].int("runs") == 1)
        #expect(try await count(pool, "p") == 51)
        await pool.close()
    }

    // MARK: Pipeline

    @Test("pipeline inserts 5000 rows, in order, and reports errors per segment")
    func pipelineInserts() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("pipeline"), size: 1)
        try await pool.withSession { session in
            try session.execute("CREATE TABLE pipe (id int PRIMARY KEY, note text NOT NULL)")
        }
        let insert = PostgresQuery(name: "test_pipe_insert", sql: "INSERT INTO pipe (id, note) VALUES ($id, $note)")
        let sets: [PostgresBindings] = (0..<5000).map { ["id": .int($0), "note": .text("row \($0)")] }

        let clock = ContinuousClock()
        let started = clock.now
        let results = try await pool.withSession { session in try session.pipeline(insert, sets) }
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("pipeline: 5000 single-row inserts in \(elapsed) ≈ \(Int(5000 / seconds)) rows/s")

        #expect(results.count == 5000)
        #expect(results.allSatisfy { $0.affectedRows == 1 })
        let summary = try await pool.withSession { session in
            try session.execute("SELECT count(*) AS n, sum(id) AS total FROM pipe")
        }
        #expect(try summary[0].int("n") == 5000)
        #expect(try summary[0].int64("total") == 4999 * 5000 / 2)

        // Results come back in order, across sync segments.
        let echo = PostgresQuery(name: "test_pipe_echo", sql: "SELECT $n::int * 3 AS tripled")
        let echoed = try await pool.withSession { session in
            try session.pipeline(echo, (0..<2500).map { ["n": .int($0)] })
        }
        #expect(try echoed.map { try $0[0].int("tripled")! } == (0..<2500).map { $0 * 3 })

        // A failure in segment 2 (statements 1000..<2000): segment 1 stays committed, segment 2
        // rolls back, segment 3 is never sent; the connection stays usable.
        let pidBefore = try await backendPID(pool)
        let failing: [PostgresBindings] = (10_000..<12_500).map { id in
            ["id": .int(id == 11_500 ? 0 : id), "note": .text("x")]
        }
        let error = await #expect(throws: PostgresError.self) {
            try await pool.withSession { session in try session.pipeline(insert, failing) }
        }
        #expect(error?.isUniqueViolation == true)
        #expect(try await count(pool, "pipe", where: "id >= 10000") == 1000)
        #expect(try await backendPID(pool) == pidBefore)

        // A parameter set that cannot be sent (NUL in text) stops the pipeline cleanly: what was
        // sent before it commits, and the connection is reused.
        let withBadValue: [PostgresBindings] = (30_000..<30_010).map {
            ["id": .int($0), "note": .text($0 == 30_005 ? "nul\u{0}inside" : "z")]
        }
        let badValue = await #expect(throws: PostgresError.self) {
            try await pool.withSession { session in try session.pipeline(insert, withBadValue) }
        }
        #expect(badValue?.sqlState == "22021")
        #expect(try await count(pool, "pipe", where: "id >= 30000") == 5)
        #expect(try await backendPID(pool) == pidBefore)

        // Inside a transaction the whole pipeline is all-or-nothing.
        await #expect(throws: PostgresError.self) {
            try await pool.transaction { session in
                try session.pipeline(insert, (20_000..<22_500).map { ["id": .int($0 == 21_999 ? 1 : $0), "note": .text("y")] })
            }
        }
        #expect(try await count(pool, "pipe", where: "id BETWEEN 20000 AND 29999") == 0)
        await pool.close()
    }

    @Test("a claim-sized result (5000 rows) decodes correctly")
    func largeResultDecoding() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("decode"), size: 1)
        let ids = (0..<5000).map { _ in UUID() }
        let base = try utc(2026, 1, 1, 0, 0, 0)
        try await pool.withSession { session in
            try session.execute(
                "CREATE TABLE due (id uuid PRIMARY KEY, seq bigint, due_at timestamptz, tenant text, payload bytea)")
            try session.execute(
                """
                INSERT INTO due SELECT u, s, $2::timestamptz + s * interval '1.000001 second', 'tenant-' || s % 7,
                                       decode(lpad(to_hex(s), 8, '0'), 'hex')
                FROM unnest($1::uuid[]) WITH ORDINALITY AS x(u, s)
                """, [.uuidArray(ids), .timestamp(base)])
        }
        let clock = ContinuousClock()
        let rows = try await pool.withSession { session in
            try session.execute("SELECT id, seq, due_at, tenant, payload FROM due ORDER BY seq")
        }
        let started = clock.now
        var decoded: [(UUID, Int64, Date, String, [UInt8])] = []
        decoded.reserveCapacity(rows.count)
        for row in rows {
            decoded.append(
                (try row.uuid(0)!, try row.int64(1)!, try row.date(2)!, try row.string(3)!, try row.bytes(4)!))
        }
        print("decode: 5000 rows × 5 columns in \(clock.now - started)")
        try #require(decoded.count == 5000)
        for (index, value) in decoded.enumerated() {
            let seq = Int64(index + 1)
            #expect(value.0 == ids[index])
            #expect(value.1 == seq)
            #expect(abs(value.2.timeIntervalSince(base) - Double(seq) * 1.000001) < 0.000_001)
            #expect(value.3 == "tenant-\(seq % 7)")
            #expect(value.4 == withUnsafeBytes(of: UInt32(seq).bigEndian, Array.init))
        }
        await pool.close()
    }

    // MARK: Pool

    @Test("more concurrent callers than connections all complete, at most `size` at once")
    func poolContention() async throws {
        let size = 3
        let callers = 24
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("pool"), size: size)
        let gate = Rendezvous(parties: size)
        let tally = InFlightTally()

        let pids = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<callers {
                group.addTask {
                    try await pool.withSession { session in
                        tally.enter()
                        defer { tally.leave() }
                        // The first `size` callers meet here: proves they really run in parallel.
                        guard gate.arrive(timeout: 30) else { throw Boom() }
                        return try session.execute("SELECT pg_backend_pid()")[0].int(0)!
                    }
                }
            }
            var pids: [Int] = []
            for try await pid in group { pids.append(pid) }
            return pids
        }
        #expect(pids.count == callers)
        #expect(Set(pids).count == size)
        #expect(tally.maximum == size)
        await pool.close()
    }

    @Test("a caller waiting for a connection can be cancelled")
    func poolWaiterCancellation() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("cancel"), size: 1)
        let release = Rendezvous(parties: 2)
        let (entered, enteredContinuation) = AsyncStream<Void>.makeStream()

        let holder = Task {
            try await pool.withSession { _ in
                enteredContinuation.yield()
                _ = release.arrive(timeout: 30)
            }
        }
        for await _ in entered { break }

        let waiter = Task { try await pool.withSession { session in try session.execute("SELECT 1").count } }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }

        _ = release.arrive(timeout: 30)
        try await holder.value
        let after = try await pool.withSession { session in try session.execute("SELECT 1").count }
        #expect(after == 1)
        await pool.close()
        await #expect(throws: PostgresError.self) {
            try await pool.withSession { session in try session.execute("SELECT 1").count }
        }
    }

    @Test("a terminated idle backend is replaced before the next call")
    func terminatedBackendHeals() async throws {
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("terminate"), size: 1)
        let killer = try await TestPostgres.pool(schema: TestPostgres.freshSchema("killer"), size: 1)
        let victim = try await backendPID(pool)
        let terminated = try await killer.withSession { session in
            try session.execute("SELECT pg_terminate_backend($1) AS ok", [.int(victim)])[0].bool("ok")
        }
        #expect(terminated == true)

        // Wait until the backend is gone (it sends its FATAL before it leaves the view).
        var gone = false
        for _ in 0..<10_000 where !gone {
            gone = try await killer.withSession { session in
                try session.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [.int(victim)])[0].int(0) == 0
            }
        }
        try #require(gone)
        // The idle connection's death is noticed before use: no caller sees an error.
        let healed = try await backendPID(pool)
        #expect(healed != victim)
        await pool.close()
        await killer.close()
    }

    @Test("a standalone connection runs sessions in order and refuses use after close")
    func standaloneConnection() async throws {
        let server = try await TestPostgres.server()
        let connection = try await PostgresConnection.connect(server.configuration, logger: TestPostgres.logger)
        let pids = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await connection.withSession { session in
                        try session.execute("SELECT pg_backend_pid()")[0].int(0)!
                    }
                }
            }
            return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
        }
        #expect(pids.count == 1)
        await connection.close()
        let error = await #expect(throws: PostgresError.self) {
            try await connection.withSession { session in try session.execute("SELECT 1").count }
        }
        #expect(error?.kind == .closed)

        var unreachable = server.configuration
        unreachable.port = try FreePort.allocate()
        let refused = await #expect(throws: PostgresError.self) {
            try await PostgresConnection.connect(unreachable, logger: TestPostgres.logger)
        }
        #expect(refused?.kind == .connection)
    }

    // MARK: Migrations

    @Test("migrator applies in version order, once, under concurrency")
    func migrator() async throws {
        let directory = try TestPostgres.temporaryDirectory("migrations")
        defer { try? FileManager.default.removeItem(at: directory) }
        try write(directory, "0002_add_color.sql", "ALTER TABLE widgets ADD COLUMN color text NOT NULL DEFAULT 'red';")
        try write(
            directory, "0001_create_widgets.sql",
            "CREATE TABLE widgets (id bigint PRIMARY KEY);\nCREATE INDEX widgets_id ON widgets (id);")
        try write(directory, "0010_seed.sql", "INSERT INTO widgets (id) VALUES (1), (2);")
        try write(directory, "README.txt", "not a migration")

        let migrations = try PostgresMigration.load(directory: directory)
        #expect(migrations.map(\.version) == [1, 2, 10])
        #expect(migrations.map(\.name) == ["create_widgets", "add_color", "seed"])

        // The pools' own search path is elsewhere: the migrator's schema must be used.
        let schema = TestPostgres.freshSchema("migrated")
        let pool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("elsewhere"))
        let migrator = PostgresMigrator(migrations: migrations, schema: schema)
        #expect(try await migrator.migrate(pool) == [1, 2, 10])
        #expect(try await migrator.migrate(pool) == [])
        let recorded = try await pool.withSession { session in
            try session.execute("SELECT version, name FROM \"\(schema)\".schema_migrations ORDER BY applied_at, version")
        }
        #expect(try recorded.map { try $0.int("version")! } == [1, 2, 10])
        #expect(recorded.map { $0["name"] } == ["create_widgets", "add_color", "seed"])
        let widgets = try await pool.withSession { session in
            try session.execute("SELECT count(*) AS n, min(color) AS color FROM \"\(schema)\".widgets")
        }
        #expect(try widgets[0].int("n") == 2)
        #expect(widgets[0]["color"] == "red")

        // Concurrent starters: every migration applied exactly once overall.
        let racedSchema = TestPostgres.freshSchema("raced")
        let racer = PostgresMigrator(migrations: migrations, schema: racedSchema)
        let otherPool = try await TestPostgres.pool(schema: TestPostgres.freshSchema("elsewhere2"))
        async let a = racer.migrate(pool)
        async let b = racer.migrate(otherPool)
        let applied = try await a + b
        #expect(applied.sorted() == [1, 2, 10])

        // A failing migration rolls back entirely and is not recorded.
        try write(directory, "0011_broken.sql", "CREATE TABLE half_done (x int);\nSELEC oops;")
        let withBroken = PostgresMigrator(migrations: try PostgresMigration.load(directory: directory), schema: schema)
        let failure = await #expect(throws: PostgresError.self) { try await withBroken.migrate(pool) }
        #expect(failure?.sqlState == "42601")
        #expect(failure?.message.contains("0011") == true || failure?.message.contains("11_broken") == true)
        let leftovers = try await pool.withSession { session in
            try session.execute(
                """
                SELECT (SELECT count(*) FROM "\(schema)".schema_migrations WHERE version = 11) AS recorded,
                       to_regclass($1) IS NULL AS absent
                """,
                [.text("\(schema).half_done")])
        }
        #expect(try leftovers[0].int("recorded") == 0)
        #expect(try leftovers[0].bool("absent") == true)
        await pool.close()
        await otherPool.close()
    }

    @Test("migration files with duplicate versions or bad names are rejected")
    func migrationLoadingValidation() throws {
        let duplicate = try TestPostgres.temporaryDirectory("dupes")
        defer { try? FileManager.default.removeItem(at: duplicate) }
        try write(duplicate, "0001_a.sql", "SELECT 1;")
        try write(duplicate, "1_b.sql", "SELECT 1;")
        #expect(throws: PostgresError.self) { try PostgresMigration.load(directory: duplicate) }

        let badName = try TestPostgres.temporaryDirectory("badname")
        defer { try? FileManager.default.removeItem(at: badName) }
        try write(badName, "create_things.sql", "SELECT 1;")
        #expect(throws: PostgresError.self) { try PostgresMigration.load(directory: badName) }
    }

    // MARK: Restart

    @Test("the pool heals after the server restarts; start is idempotent")
    func reconnectAfterRestart() async throws {
        // Not removed in a defer: the exit hook stops the server first, then removes the folder.
        let root = try TestPostgres.temporaryDirectory("pg-restart")
        let dataDirectory = root.appendingPathComponent("data")
        let server = try await LocalPostgresServer.start(
            dataDirectory: dataDirectory, port: nil, fsync: false, logger: TestPostgres.logger)
        TestPostgres.registerForExit(server, root: root)
        // Every call tries the server (no failing fast): this test is about reconnecting.
        let pool = PostgresPool(configuration: server.configuration, size: 1, logger: TestPostgres.logger, probeInterval: .zero)
        let bootTime = try await postmasterStart(pool)

        // Starting again while it runs reuses it: same port, no restart.
        let again = try await LocalPostgresServer.start(
            dataDirectory: dataDirectory, port: nil, fsync: false, logger: TestPostgres.logger)
        #expect(again.port == server.port)
        #expect(try await postmasterStart(pool) == bootTime)

        // Down: calls fail as connection failures.
        await server.stop()
        let whileDown = await #expect(throws: PostgresError.self) { try await postmasterStart(pool) }
        #expect(whileDown?.isConnectionFailure == true)
        #expect(whileDown?.kind == .connection)

        // Back on the same port: the next call reconnects.
        let restarted = try await LocalPostgresServer.start(
            dataDirectory: dataDirectory, port: server.port, fsync: false, logger: TestPostgres.logger)
        #expect(restarted.port == server.port)
        let secondBoot = try await postmasterStart(pool)
        #expect(secondBoot != bootTime)

        // Restart under an idle pooled connection: the server said goodbye (57P01) and closed
        // the socket before `stop` returned, so the pool reconnects before the call.
        await restarted.stop()
        let third = try await LocalPostgresServer.start(
            dataDirectory: dataDirectory, port: server.port, fsync: false, logger: TestPostgres.logger)
        let thirdBoot = try await postmasterStart(pool)
        #expect(thirdBoot != secondBoot)

        // Killed mid-statement: that call fails as a connection failure, the next one heals.
        let (running, runningContinuation) = AsyncStream<Void>.makeStream()
        let slow = Task {
            try await pool.withSession { session in
                runningContinuation.yield()
                return try session.execute("SELECT pg_sleep(30)").count
            }
        }
        for await _ in running { break }
        await third.stop()
        let midStatement = await #expect(throws: PostgresError.self) { try await slow.value }
        #expect(midStatement?.isConnectionFailure == true, "\(String(describing: midStatement))")
        #expect(midStatement?.kind == .connection)
        let fourth = try await LocalPostgresServer.start(
            dataDirectory: dataDirectory, port: server.port, fsync: false, logger: TestPostgres.logger)
        #expect(try await postmasterStart(pool) != thirdBoot)

        await pool.close()
        await fourth.stop()
    }

    // MARK: Configuration

    @Test("URL configuration parses and validates")
    func configurationFromURL() throws {
        let full = try PostgresConfiguration(
            url: "postgres://alice:p%40ss@db.internal:6543/sundial"
                + "?search_path=tenant_a&application_name=ingest&connect_timeout=3&sslmode=disable")
        #expect(full.host == "db.internal")
        #expect(full.port == 6543)
        #expect(full.user == "alice")
        #expect(full.password == "p@ss")
        #expect(full.database == "sundial")
        #expect(full.searchPath == "tenant_a")
        #expect(full.applicationName == "ingest")
        #expect(full.connectTimeout == .seconds(3))
        #expect(full.sslMode == "disable")
        #expect(!full.description.contains("p@ss"))

        let minimal = try PostgresConfiguration(url: "postgresql://bob@localhost")
        #expect(minimal.port == 5432)
        #expect(minimal.database == "bob")
        #expect(minimal.password == nil)
        #expect(minimal.searchPath == nil)

        let socket = try PostgresConfiguration(url: "postgres://postgres@/postgres?host=/run/postgresql")
        #expect(socket.host == "/run/postgresql")

        for bad in [
            "mysql://u@h/db", "postgres://u@h:0/db", "postgres://u@h/db?search_pth=x",
            "postgres://u@h/db?connect_timeout=soon", "postgres://u@h/db?sslmode=sometimes", "not a url at all",
            "postgres://u@h:/db",
        ] {
            #expect(throws: PostgresError.self, "\(bad)") { try PostgresConfiguration(url: bad) }
        }
    }

    // MARK: Helpers

    private func utc(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int, micros: Int = 0)
        throws -> Date
    {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let whole = try #require(
            calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute, second: second)))
        // Build from whole seconds on the reference-date scale, as a decoder would.
        return Date(timeIntervalSinceReferenceDate: whole.timeIntervalSinceReferenceDate.rounded() + Double(micros) / 1e6)
    }

    private func captureError(_ pool: PostgresPool, _ sql: String, _ parameters: [PostgresValue] = []) async throws
        -> PostgresError
    {
        do {
            _ = try await pool.withSession { session in try session.execute(sql, parameters) }
        } catch let error as PostgresError {
            return error
        }
        Issue.record("expected \(sql) to fail")
        return PostgresError(kind: .query, message: "no error")
    }

    private func count(_ pool: PostgresPool, _ table: String, where condition: String = "true") async throws -> Int {
        try await pool.withSession { session in
            try session.execute("SELECT count(*) FROM \(table) WHERE \(condition)")[0].int(0)!
        }
    }

    private func backendPID(_ pool: PostgresPool) async throws -> Int {
        try await pool.withSession { session in try session.execute("SELECT pg_backend_pid()")[0].int(0)! }
    }

    private func postmasterStart(_ pool: PostgresPool) async throws -> String {
        try await pool.withSession { session in
            try session.execute("SELECT pg_postmaster_start_time()::text")[0][0]!
        }
    }

    private func write(_ directory: URL, _ name: String, _ contents: String) throws {
        try contents.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }
}

/// Counts sessions running at once and remembers the peak.
final class InFlightTally: Sendable {
    private let current = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)

    func enter() {
        let now = current.wrappingAdd(1, ordering: .relaxed).newValue
        peak.max(now, ordering: .relaxed)
    }

    func leave() { current.wrappingSubtract(1, ordering: .relaxed) }

    var maximum: Int { peak.load(ordering: .relaxed) }
}

/// Blocks each arriving thread until `parties` have arrived (or the timeout passes). Used on
/// connection threads to prove sessions overlap, and to hold a connection until released.
final class Rendezvous: @unchecked Sendable {
    // `arrived` is only touched with `condition` locked.
    private let condition = NSCondition()
    private var arrived = 0
    private let parties: Int

    init(parties: Int) { self.parties = parties }

    /// Returns false on timeout.
    func arrive(timeout seconds: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        arrived += 1
        condition.broadcast()
        let deadline = Date(timeIntervalSinceNow: seconds)
        while arrived < parties {
            if !condition.wait(until: deadline) { return arrived >= parties }
        }
        return true
    }
}
