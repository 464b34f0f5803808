import ArgumentParser
import Foundation
import Logging
import SundialContract
import SundialCore
import SundialLocalCluster
import SundialPostgres
import SundialStore

/// `sundial bench planner-load`: N timers due within one window, written straight into
/// Postgres, loaded by a `sundial serve planner` child process into a private JetStream.
/// Prints the load time and the planner's peak memory (VmHWM), which the claim budget keeps
/// flat however many timers come due and however large their payloads.
struct PlannerLoadBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "planner-load",
        abstract: "Planner memory and load time for N timers due within one window.")

    @Option(help: "Timers due within the window.") var timers: Int = 1_000_000
    @Option(help: "Payload bytes per timer.") var payloadBytes: Int = 100
    @Option(help: "Seconds from the start of loading to the first due time.") var lead: Int = 120
    @Option(help: "Window (seconds) the timers are due in.") var window: Int = 60
    @Option(help: "Planner claim budget in payload bytes (default: the service default).") var budgetBytes: Int?
    @Option(help: "Data folder (wiped).") var data: String = ".sundial/bench-planner"
    @Option(help: "Another build's sundial executable to run the planner (a before/after comparison).")
    var plannerBinary: String?

    func run() async throws {
        guard (1...5_000_000).contains(timers), (0...(1 << 20)).contains(payloadBytes) else {
            throw ValidationError("--timers 1…5M, --payload-bytes 0…1 MiB")
        }
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        // fsync off: this measures the planner, not the disk.
        let servers = try await BenchServers.start(data: data, fsync: false, logger: logger)
        defer { servers.postgres.stopBlocking() }
        let (root, nats, pool) = (servers.root, servers.nats, servers.pool)
        let started = Date()
        let (count, lead, window, payload) = (timers, lead, window, payloadBytes)
        try await pool.withSession { session in
            // One statement per 100k rows keeps each transaction moderate.
            for start in stride(from: 0, to: count, by: 100_000) {
                let end = min(start + 100_000, count)
                try session.execute(
                    """
                    INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at, queue, payload)
                    SELECT \(StorageBench.uuidV7), 'bench', i % (SELECT shard_count FROM shard_settings), 'scheduled', 'at', ''::bytea,
                           now() + make_interval(secs => \(lead) + (i % \(max(1, window)))),
                           now() + make_interval(secs => \(lead) + (i % \(max(1, window)))),
                           'q', convert_to(repeat('x', \(payload)), 'UTF8')
                    FROM (SELECT i, md5(i::text || random()::text) AS r,
                                 lpad(to_hex(floor(extract(epoch FROM now()) * 1000)::bigint), 12, '0') AS h
                          FROM generate_series(\(start), \(end - 1)) AS i) AS x
                    """)
            }
        }
        print(String(format: "inserted %d timers (%d B payload each) in %.1f s", count, payload, Date().timeIntervalSince(started)))

        var env = servers.serviceEnvironment()
        env["SUNDIAL_METRICS_ADDRESS"] = "off"  // a benchmark's services must not need port 9464
        env["SUNDIAL_LOG_LEVEL"] = env["SUNDIAL_LOG_LEVEL"] ?? "warning"
        if let budgetBytes { env["SUNDIAL_PLANNER_CLAIM_BUDGET_BYTES"] = String(budgetBytes) }
        let executable = plannerBinary ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let log = root.appendingPathComponent("planner.log").path
        let loadStarted = Date()
        let planner = try ChildProcess.spawn(
            executable: executable, arguments: ["serve", "planner"], environment: env, output: .file(log),
            diesWithParent: true)
        var armed = 0
        var peakRSS = 0
        let deadline = Date().addingTimeInterval(Double(lead))
        while armed < count, Date() < deadline, planner.isRunning {
            try await Task.sleep(for: .milliseconds(250))
            armed = try await pool.withSession { session in
                try session.execute("SELECT count(*)::bigint AS n FROM timers WHERE state = 'armed'")[0].int64("n")
            }.map(Int.init) ?? 0
            peakRSS = max(peakRSS, Self.kilobytes("VmHWM", pid: planner.pid))
        }
        let loadSeconds = Date().timeIntervalSince(loadStarted)
        let natsRSS = Self.kilobytes("VmRSS", pid: Self.pid(of: root.appendingPathComponent("nats/nats-server.pid")))
        planner.signal(SIGTERM)
        _ = await planner.waitForExit()
        await pool.close()
        await nats.stop()
        print(
            String(
                format: "planner-load: %d timers, %d B payload, budget %@: %d loaded in %.1f s (%.0f timers/s); planner peak RSS %.0f MiB; nats-server RSS %.0f MiB",
                count, payload, budgetBytes.map { "\($0) B" } ?? "default", armed, loadSeconds,
                Double(armed) / max(loadSeconds, 0.001), Double(peakRSS) / 1024, Double(natsRSS) / 1024))
        if armed < count { throw ValidationError("only \(armed) of \(count) loaded before the first due time; see \(log)") }
    }

    /// A `/proc/<pid>/status` field in kB (0 when unreadable).
    static func kilobytes(_ field: String, pid: pid_t) -> Int {
        guard pid > 0, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    static func pid(of file: URL) -> pid_t {
        (try? String(contentsOf: file, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
    }
}
