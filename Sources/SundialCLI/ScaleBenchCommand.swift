import ArgumentParser
import Foundation
import Logging
import SundialBench
import SundialLocalCluster
import SundialPostgres

/// `sundial bench scale`: scale evidence on one box. For each instance count N, a fresh private
/// stack (nats-server, Postgres with fsync on) runs N Ingest and N Dispatcher processes, each
/// held to `--cpu-per-instance` cores by a cgroup quota (one Planner and one Governor, not
/// held), and takes the burst load: `--count` `at` timers created at an offered `--rate` (above
/// what one instance can take), all due at one instant, then drained. Prints per N the creates/s
/// achieved, the create p99, the fires/s of the drain, the cores nats-server and Postgres used
/// (where the scaling stops), and Postgres WAL and run-table bytes per timer.
struct ScaleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "1 → 2 → 4 Ingest and Dispatcher instances, each held to a CPU quota: creates/s and fires/s per count.")

    @Option(help: "Instance counts to run, comma-separated.") var instances: String = "1,2,4"
    @Option(help: "Cores each Ingest and Dispatcher instance may use (cgroup quota).") var cpuPerInstance: Double = 0.25
    @Option(help: "Timers per run, all due at one instant.") var count: Int = 30_000
    @Option(help: "Offered creates per second.") var rate: Double = 3000
    @Option(help: "Tenants the timers are spread over.") var tenants: Int = 20
    @Option(help: "Seconds added to the due instant beyond creating at a sixth of --rate.") var lead: Double = 10
    @Option(help: "Seconds to wait after the due instant for jobs still missing.") var drain: Double = 120
    @Option(help: "A sundial binary to run the services from (default: this one).") var servicesBinary: String?
    @Option(help: "Data folder (wiped per run).") var data: String = ".sundial/bench-scale"
    @Option(help: "Write the report as JSON here.") var json: String = "bench-results/scale.json"

    struct Row: Codable {
        var instances: Int
        var cpuPerInstance: Double
        var created: Int
        var createsPerSecond: Double
        var createP99Ms: Double
        var lost: Int
        var duplicates: Int
        /// Seconds from the due instant to the last job in the work stream.
        var drainSeconds: Double
        /// Work-stream lag of the jobs (stored − due), p50 and p99, seconds.
        var lagP50Seconds: Double
        var lagP99Seconds: Double
        var firesPerSecond: Double
        /// Cores used on average from the first create to the last job, by role.
        var coresByRole: [String: Double]
        var walBytesPerTimer: Double
        var runTableBytesPerTimer: Double
    }

    func run() async throws {
        let counts = instances.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ (1...16).contains($0) }), cpuPerInstance > 0, cpuPerInstance <= 8,
            (1...2_000_000).contains(count), rate > 0, (1...100).contains(tenants), lead >= 1, drain >= 0
        else { throw ValidationError("instances 1…16 each, cpu per instance (0, 8], count 1…2M, rate > 0, tenants 1…100, lead ≥ 1 s") }
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        let executable = servicesBinary ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        var rows: [Row] = []
        for n in counts {
            let servers = try await BenchServers.start(data: data + "/\(n)", fsync: true, logger: logger)
            var env = servers.serviceEnvironment()
            env["SUNDIAL_METRICS_ADDRESS"] = "off"
            env["SUNDIAL_LOG_LEVEL"] = "warning"
            let fleet = ServiceFleet(executable: executable, environment: env, logs: servers.root, cpuPerInstance: cpuPerInstance)
            do {
                try fleet.start("ingest", count: n)
                try fleet.start("dispatcher", count: n)
                try fleet.start("planner", count: 1, pinned: false)
                try fleet.start("governor", count: 1, pinned: false)
                try await IngestReadiness.wait(natsURL: servers.nats.url, logger: logger)
                // Every dispatcher bound its consumers: wait a few seconds beyond Ingest answering.
                try await Task.sleep(for: .seconds(3))
                let walBefore = try await Self.walPosition(servers.pool)
                var p = SpineBenchmark.Parameters(natsURL: servers.nats.url)
                p.count = count
                p.rate = rate
                p.tenants = tenants
                p.maxInFlight = 512
                // Due once every create is in even if only a sixth of the offered rate is taken.
                p.burstAt = Date().addingTimeInterval(Double(count) / (rate / 6) + lead)
                p.drainTimeout = .seconds(drain)
                print("[\(n) ingest + \(n) dispatcher, \(cpuPerInstance) cores each] \(count) timers offered at \(Int(rate))/s, due at one instant")
                let cpuStart = ProcessCPU.snapshot()
                let started = Date()
                let report = try await SpineBenchmark(p).run { print("  " + $0) }
                let cpuEnd = ProcessCPU.snapshot()
                let seconds = Date().timeIntervalSince(started)
                let (walAfter, runBytes) = try await (Self.walPosition(servers.pool), Self.runTableBytes(servers.pool))
                let drainSeconds = (report.workStreamLagMs?.max ?? report.fireLagMs.max) / 1000
                var cores: [String: Double] = [:]
                for (role, used) in cpuEnd { cores[role] = max(0, used - (cpuStart[role] ?? 0)) / max(seconds, 1) }
                let created = max(report.created, 1)
                rows.append(Row(
                    instances: n, cpuPerInstance: cpuPerInstance, created: report.created,
                    createsPerSecond: report.createRatePerSecondAchieved, createP99Ms: report.createLatencyMs.p99,
                    lost: report.lost, duplicates: report.duplicates, drainSeconds: drainSeconds,
                    lagP50Seconds: (report.workStreamLagMs?.p50 ?? 0) / 1000, lagP99Seconds: (report.workStreamLagMs?.p99 ?? 0) / 1000,
                    firesPerSecond: Double(report.received) / max(drainSeconds, 0.001), coresByRole: cores,
                    walBytesPerTimer: Double(walAfter - walBefore) / Double(created),
                    runTableBytesPerTimer: Double(runBytes) / Double(created)))
                print(Self.table(rows))
            } catch {
                await fleet.stop()
                await servers.nats.stop()
                await servers.postgres.stop()
                throw error
            }
            await fleet.stop()
            await servers.pool.close()
            await servers.nats.stop()
            await servers.postgres.stop()
        }
        try BenchReportFile.write(rows, to: json)
    }

    static func walPosition(_ pool: PostgresPool) async throws -> Int64 {
        try await pool.withSession { session in
            try session.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint AS b")[0].int64("b") ?? 0
        }
    }

    static func runTableBytes(_ pool: PostgresPool) async throws -> Int64 {
        try await pool.withSession { session in
            try session.execute(
                """
                SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint AS b FROM pg_inherits
                WHERE inhparent = 'timer_runs'::regclass
                """)[0].int64("b") ?? 0
        }
    }

    static func table(_ rows: [Row]) -> String {
        var text = "| ingest + dispatcher instances (cores each) | creates/s | create p99 ms | fires/s (drain s) | work-stream lag p50 / p99 s | lost | dup | cores: ingest / dispatcher / nats-server / postgres | WAL B/timer | run table B/timer |\n|---|---:|---:|---:|---|---:|---:|---|---:|---:|\n"
        for row in rows {
            let c = row.coresByRole
            text += String(
                format: "| %d + %d (%.2f) | %.0f | %.0f | %.0f (%.1f) | %.2f / %.2f | %d | %d | %.2f / %.2f / %.2f / %.2f | %.0f | %.0f |\n",
                row.instances, row.instances, row.cpuPerInstance, row.createsPerSecond, row.createP99Ms, row.firesPerSecond,
                row.drainSeconds, row.lagP50Seconds, row.lagP99Seconds, row.lost, row.duplicates, c["ingest"] ?? 0, c["dispatcher"] ?? 0, c["nats-server"] ?? 0,
                c["postgres"] ?? 0, row.walBytesPerTimer, row.runTableBytesPerTimer)
        }
        return text
    }
}
