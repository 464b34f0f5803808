import ArgumentParser
import Foundation
import Logging
import SundialClient
import SundialContract
import SundialCore
import SundialLocalCluster
import SundialNATS
import SundialPostgres
import SundialProto
import SundialStore
import SwiftProtobuf

/// `sundial bench storage`: what the number of stored future timers costs. For each size
/// (0.1M, 1M, 10M by default, filled cumulatively into a private Postgres with fsync on), it
/// measures the Planner's due scan — a tick over every shard (the database's count) with the store's own load
/// (`TimerStore.loadDue`), idle and with timers due — the create latency through a real Ingest
/// (`sundial serve ingest` child process), and the bytes on disk per stored timer.
struct StorageBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Due-scan time per planner tick, create latency and disk bytes per timer with 0.1M, 1M and 10M future timers stored.")

    @Option(help: "Stored future timers to measure at, comma-separated, ascending (filled cumulatively).")
    var sizes: String = "100000,1000000,10000000"
    @Option(help: "Payload bytes per timer.") var payloadBytes: Int = 100
    @Option(help: "Measured planner ticks per size (each: one load per shard).") var ticks: Int = 10
    @Option(help: "Timers due in each loaded tick.") var duePerTick: Int = 1000
    @Option(help: "Creates through Ingest per size.") var creates: Int = 2000
    @Option(help: "Creates in flight at once.") var concurrency: Int = 8
    @Option(help: "Data folder (wiped).") var data: String = ".sundial/bench-storage"
    @Option(help: "Write the report as JSON here.") var json: String = "bench-results/storage.json"

    struct Row: Codable {
        var storedTimers: Int
        var allTimers: Int
        var fillSeconds: Double
        var idleTickMillis: [Double]
        var loadedTickMillis: [Double]
        /// Pages (8 KiB buffers, hit or read) the due scan of one shard touches with nothing
        /// due, from `EXPLAIN (ANALYZE, BUFFERS)`, mean over the shards: the scan's cost without
        /// the machine's noise. Right after the fill's `VACUUM`, and after the measured ticks
        /// (each loaded timer leaves a dead entry in `timers_due` that scans step over, visiting
        /// its heap page, until a scan marks it dead or a vacuum removes it).
        var idleScanBuffersPerShard: Double
        var scanBuffersPerShardAfterTicks: Double
        var createMillis: Percentiles
        var createsPerSecond: Double
        var createErrors: Int
        var timersTableBytes: Int64
        var timersIndexBytes: Int64
        var runsBytes: Int64
        var databaseBytes: Int64
    }

    struct Percentiles: Codable {
        var p50: Double
        var p99: Double
        var max: Double
    }

    func run() async throws {
        let targets = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !targets.isEmpty, targets == targets.sorted(), targets.allSatisfy({ (1...50_000_000).contains($0) }),
              (0...65_536).contains(payloadBytes), (1...1000).contains(ticks), (1...50_000).contains(duePerTick),
              (1...1_000_000).contains(creates), (1...256).contains(concurrency)
        else {
            throw ValidationError("--sizes ascending, each 1…50M; --payload-bytes ≤ 64 KiB; --ticks 1…1000; --due-per-tick 1…50000; --creates 1…1M; --concurrency 1…256")
        }
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        let servers = try await BenchServers.start(data: data, fsync: true, logger: logger)
        defer { servers.postgres.stopBlocking() }
        let (root, nats, pool) = (servers.root, servers.nats, servers.pool)

        var env = servers.serviceEnvironment()
        env["SUNDIAL_METRICS_ADDRESS"] = "off"
        env["SUNDIAL_LOG_LEVEL"] = env["SUNDIAL_LOG_LEVEL"] ?? "warning"
        let log = root.appendingPathComponent("ingest.log").path
        let ingest = try ChildProcess.spawn(
            executable: URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path,
            arguments: ["serve", "ingest"], environment: env, output: .file(log), diesWithParent: true)
        defer { ingest.signal(SIGTERM) }
        let connection = try await NATSConnection.connect(NATSConnectionOptions(url: nats.url, name: "bench-storage"), logger: logger)
        let client = TimersClient(connection: connection, tenant: "bench", namespace: .standard, timeout: .seconds(10))
        let ready = try await IngestReadiness.wait(client, limit: .seconds(30))
        guard ready else { throw ValidationError("ingest did not start; see \(log)") }

        let shardCount = try await LeaseStore(pool: pool).shardCount()
        let leases = try await LeaseStore(pool: pool).acquire(owner: "bench", ttl: .seconds(86_400), limit: shardCount)
        guard leases.count == shardCount else { throw ValidationError("could not lease every shard") }
        let store = TimerStore(pool: pool)
        var rows: [Row] = []
        var stored = 0
        for target in targets {
            print("filling to \(target) stored future timers …")
            let fillStarted = Date()
            try await Self.fill(pool, from: stored, to: target, payloadBytes: payloadBytes)
            // INDEX_CLEANUP ON: the timers the previous size's ticks loaded left entries in
            // `timers_due` on a share of pages too small (under 2 %) for a plain VACUUM to clean
            // the indexes, and the clean scan is to show what the stored count alone costs.
            _ = try await pool.withSession { try $0.execute("VACUUM (ANALYZE, INDEX_CLEANUP ON) timers") }
            let fillSeconds = Date().timeIntervalSince(fillStarted)
            stored = target
            let cleanScanBuffers = try await Self.scanBuffers(pool, shards: shardCount)

            var idle: [Double] = []
            var loaded: [Double] = []
            for _ in 0..<ticks {
                idle.append(try await Self.tick(store, leases: leases, expecting: 0))
                try await Self.insertDue(pool, count: duePerTick, payloadBytes: payloadBytes)
                loaded.append(try await Self.tick(store, leases: leases, expecting: duePerTick))
            }
            let scanBuffers = try await Self.scanBuffers(pool, shards: shardCount)
            let (latencies, errors, rate) = try await Self.createThroughIngest(
                client, count: creates, concurrency: concurrency, payloadBytes: payloadBytes)
            let sizes = try await pool.withSession { session -> [String: Int64] in
                let row = try session.execute(
                    """
                    SELECT pg_table_size('timers') AS t, pg_indexes_size('timers') AS i,
                           (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits
                            WHERE inhparent = 'timer_runs'::regclass) AS r,
                           pg_database_size(current_database()) AS d, (SELECT count(*) FROM timers) AS n
                    """)[0]
                return [
                    "t": try row.int64("t") ?? 0, "i": try row.int64("i") ?? 0, "r": try row.int64("r") ?? 0,
                    "d": try row.int64("d") ?? 0, "n": try row.int64("n") ?? 0,
                ]
            }
            let sorted = latencies.sorted()
            // Per timer of every timer stored: the filled ones, the due ones loaded by the
            // ticks and the ones created through Ingest.
            let row = Row(
                storedTimers: target, allTimers: Int(sizes["n"] ?? 0), fillSeconds: fillSeconds, idleTickMillis: idle, loadedTickMillis: loaded,
                idleScanBuffersPerShard: cleanScanBuffers, scanBuffersPerShardAfterTicks: scanBuffers,
                createMillis: Percentiles(p50: Self.percentile(sorted, 0.5), p99: Self.percentile(sorted, 0.99), max: sorted.last ?? 0),
                createsPerSecond: rate, createErrors: errors, timersTableBytes: sizes["t"] ?? 0,
                timersIndexBytes: sizes["i"] ?? 0, runsBytes: sizes["r"] ?? 0, databaseBytes: sizes["d"] ?? 0)
            rows.append(row)
            print(Self.table(rows, duePerTick: duePerTick, payloadBytes: payloadBytes, shards: shardCount))
        }
        await connection.close()
        await pool.close()
        ingest.signal(SIGTERM)
        _ = await ingest.waitForExit()
        await nats.stop()
        let url = URL(fileURLWithPath: json)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(rows).write(to: url)
        print("report written to \(url.path)")
    }

    /// Timers `from..<to`, created over the last day (UUIDv7 ids of their creation time), due 1 h
    /// to 30 days out, 100 tenants, two labels each: rows as Ingest writes them.
    static func fill(_ pool: PostgresPool, from: Int, to: Int, payloadBytes: Int) async throws {
        try await pool.withSession { session in
            for start in stride(from: from, to: to, by: 200_000) {
                let end = min(start + 200_000, to)
                try session.execute(
                    """
                    INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at, queue, payload,
                                        labels, created_at, updated_at)
                    SELECT \(uuidV7), 'tenant-' || (i % 100), i % (SELECT shard_count FROM shard_settings), 'scheduled', 'at', ''::bytea, due, due, 'q',
                           convert_to(repeat('x', \(payloadBytes)), 'UTF8'),
                           jsonb_build_object('env', 'prod', 'team', 'team-' || (i % 50)), created, created
                    FROM (SELECT i, md5(i::text || random()::text) AS r, created, due,
                                 lpad(to_hex(floor(extract(epoch FROM created) * 1000)::bigint), 12, '0') AS h
                          FROM (SELECT i, now() - make_interval(secs => (i % 86400)) AS created,
                                       now() + make_interval(secs => 3600 + (i % (30 * 86400))) AS due
                                FROM generate_series(\(start), \(end - 1)) AS i) AS g) AS x
                    """)
            }
        }
    }

    /// A UUIDv7 from `h` (12 hex digits: the creation millisecond) and `r` (random hex), as
    /// Ingest makes them: ids land in their creation day's `timer_runs` partition.
    static let uuidV7 = """
        (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid
        """

    /// `count` timers due now, spread over the shards.
    static func insertDue(_ pool: PostgresPool, count: Int, payloadBytes: Int) async throws {
        _ = try await pool.withSession { session in
            try session.execute(
                """
                INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at, queue, payload)
                SELECT \(uuidV7), 'due', i % (SELECT shard_count FROM shard_settings), 'scheduled', 'at', ''::bytea, now(), now(), 'q',
                       convert_to(repeat('x', \(payloadBytes)), 'UTF8')
                FROM (SELECT i, md5(i::text || random()::text) AS r,
                             lpad(to_hex(floor(extract(epoch FROM now()) * 1000)::bigint), 12, '0') AS h
                      FROM generate_series(1, \(count)) AS i) AS x
                """)
        }
    }

    /// One planner tick: the due scan and load of every shard, one after another as the
    /// Planner does, with its horizon (5 min) and batch (5,000). Milliseconds.
    static func tick(_ store: TimerStore, leases: [ShardLease], expecting: Int) async throws -> Double {
        let started = ContinuousClock.now
        var loaded = 0
        for lease in leases {
            loaded += try await store.loadDue(
                lease: lease, owner: "bench", dueBefore: Date().addingTimeInterval(300), limit: 5000
            ).timers
        }
        let elapsed = (ContinuousClock.now - started)
        guard loaded == expecting else { throw ValidationError("a tick loaded \(loaded) timers, expected \(expecting)") }
        return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
    }

    /// The due scan of `TimerQueries.selectDueForLoad` (shard, state, due before the horizon,
    /// in due order) under `EXPLAIN (ANALYZE, BUFFERS)` for every shard: buffers touched, mean.
    static func scanBuffers(_ pool: PostgresPool, shards: Int) async throws -> Double {
        try await pool.withSession { session in
            var total = 0
            for shard in 0..<shards {
                let plan = try session.execute(
                    """
                    EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
                    SELECT id FROM timers WHERE shard = \(shard) AND state = 'scheduled'
                      AND next_fire_at < now() + interval '5 minutes' ORDER BY next_fire_at LIMIT 5000
                    """
                ).first?.string("QUERY PLAN") ?? "[]"
                guard let root = (try? JSONSerialization.jsonObject(with: Data(plan.utf8))) as? [[String: Any]],
                      let top = root.first?["Plan"] as? [String: Any]
                else { throw ValidationError("unreadable EXPLAIN output") }
                total += ((top["Shared Hit Blocks"] as? Int) ?? 0) + ((top["Shared Read Blocks"] as? Int) ?? 0)
            }
            return Double(total) / Double(shards)
        }
    }

    /// Creates through Ingest (due in 2 h: stored, not yet loaded), `concurrency` in flight.
    static func createThroughIngest(_ client: TimersClient, count: Int, concurrency: Int, payloadBytes: Int) async throws
        -> (latencies: [Double], errors: Int, rate: Double)
    {
        let payload = Data(repeating: 0x61, count: payloadBytes)
        let started = ContinuousClock.now
        var latencies: [Double] = []
        var errors = 0
        await withTaskGroup(of: Double?.self) { group in
            var next = 0
            func add() {
                var request = Sundial_V1_CreateTimerRequest()
                request.queue = "q"
                request.payload = payload
                request.labels = ["env": "prod", "team": "team-\(next % 50)"]
                request.schedule.delay.duration = Google_Protobuf_Duration(seconds: 7200, nanos: 0)
                next += 1
                group.addTask {
                    let sent = ContinuousClock.now
                    guard (try? await client.create(request)) != nil else { return nil }
                    let elapsed = ContinuousClock.now - sent
                    return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                }
            }
            while next < min(concurrency, count) { add() }
            for await latency in group {
                if let latency { latencies.append(latency) } else { errors += 1 }
                if next < count { add() }
            }
        }
        let seconds = (ContinuousClock.now - started)
        return (latencies, errors, Double(count) / max(0.001, Double(seconds.components.seconds) + Double(seconds.components.attoseconds) / 1e18))
    }

    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((Double(sorted.count) * q).rounded(.up)) - 1
        return sorted[min(sorted.count - 1, max(0, rank))]
    }

    static func table(_ rows: [Row], duePerTick: Int, payloadBytes: Int, shards: Int) -> String {
        func median(_ values: [Double]) -> Double { percentile(values.sorted(), 0.5) }
        func p90(_ values: [Double]) -> Double { percentile(values.sorted(), 0.9) }
        var text = "| stored future timers | fill (s) | idle tick, \(shards) shards: p50 / p90 ms | due scan after vacuum: buffers per shard | tick loading \(duePerTick): p50 / p90 ms | create p50 / p99 ms (rate/s, errors) | timers table + indexes bytes/timer | database bytes/timer |\n"
        text += "|---|---|---|---|---|---|---|---|\n"
        for row in rows {
            let count = Double(max(1, row.allTimers))
            let perTimer = Double(row.timersTableBytes + row.timersIndexBytes) / count
            text += "| \(row.storedTimers) " + String(
                format: "| %.0f | %.1f / %.1f | %.1f | %.1f / %.1f | %.1f / %.1f (%.0f/s, %d) | %.0f (%.0f + %.0f) | %.0f |\n",
                row.fillSeconds, median(row.idleTickMillis), p90(row.idleTickMillis), row.idleScanBuffersPerShard,
                median(row.loadedTickMillis), p90(row.loadedTickMillis), row.createMillis.p50, row.createMillis.p99,
                row.createsPerSecond, row.createErrors, perTimer, Double(row.timersTableBytes) / count,
                Double(row.timersIndexBytes) / count, Double(row.databaseBytes) / count)
        }
        text += "(\(payloadBytes) B payloads; fsync on; release build; everything on this machine)"
        return text
    }
}
