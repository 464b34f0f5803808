import ArgumentParser
import Foundation
import Logging
import SundialBench
import SundialClient
import SundialContract
import SundialLocalCluster
import SundialNATS

/// `sundial bench whale`: the fairness scenario, run twice on a private Sundial each time —
/// fairness on (governor + enforcing dispatcher) and off (plain FIFO) — and printed side by side.
struct WhaleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whale",
        abstract: "Fairness under a whale flood: per-tier lag and the whale's share, fairness on vs FIFO.")

    @Option(help: "Executor capacity C, jobs/s.") var capacity: Double = 800
    @Option(help: "Whale timers, all due within the window.") var whale: Int = 200_000
    @Option(help: "Window (seconds) the whale's and standard tenants' timers are due in.") var window: Double = 60
    @Option(help: "Standard tenants (a few timers each).") var standardTenants: Int = 500
    @Option(help: "Timers per standard tenant.") var standardTimers: Int = 4
    @Option(help: "New tenants (first seen during the flood, 10–30 s delays).") var newTenants: Int = 50
    @Option(help: "Timers per new tenant.") var newTimers: Int = 6
    @Option(help: "Seconds from start to the first due time (must cover creating everything).") var lead: Double?
    @Option(help: "Modes to run, in order: fair, fifo.") var modes: [String] = ["fair", "fifo"]
    @Option(help: "one-queue; two-queues (a second queue with slower executors, its own whale and half the small tenants); dead-queue (plus timers on a queue nobody consumes).")
    var scenario = "one-queue"
    @Option(help: "two-queues: executor capacity of queue B, jobs/s.") var secondCapacity: Double = 200
    @Option(help: "two-queues: whale timers on queue B.") var secondWhale: Int = 20_000
    @Option(help: "dead-queue: timers on the queue nobody consumes.") var deadTimers: Int = 2_000
    @Option(help: "Run the services from this sundial binary (e.g. a release build of the previous main, for before/after); default: this one.")
    var servicesBinary: String?
    @Option(help: "Data folder (wiped per mode).") var data: String = ".sundial/bench-whale"
    @Option(help: "Write the report as JSON here.") var json: String = "bench-results/whale.json"

    func run() async throws {
        var p = WhaleBenchmark.Parameters()
        p.capacity = capacity
        p.whaleTimers = whale
        p.window = window
        p.standardTenants = standardTenants
        p.standardTimersEach = standardTimers
        p.newTenants = newTenants
        p.newTimersEach = newTimers
        p.scenario = scenario
        p.secondCapacity = secondCapacity
        p.secondWhaleTimers = secondWhale
        p.deadQueueTimers = deadTimers
        guard WhaleBenchmark.Parameters.scenarios.contains(scenario) else {
            throw ValidationError("--scenario: one of \(WhaleBenchmark.Parameters.scenarios.joined(separator: ", "))")
        }
        guard secondCapacity > 0, secondWhale >= 0, deadTimers >= 0 else {
            throw ValidationError("--second-capacity must be positive, counts non-negative")
        }
        // Creating runs at roughly 1 000/s on 2 cores; leave slack.
        p.lead = lead ?? (Double(p.createdBeforeFlood) / 900 + 30)
        for mode in modes where mode != "fair" && mode != "fifo" { throw ValidationError("--modes: fair or fifo") }
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        var reports: [WhaleBenchmark.ModeReport] = []
        for mode in modes {
            reports.append(
                try await Self.runMode(
                    mode, parameters: p, dataRoot: URL(fileURLWithPath: data), servicesBinary: servicesBinary, logger: logger))
            print(WhaleBenchmark.table(reports, parameters: p))
        }
        let url = URL(fileURLWithPath: json)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        struct Output: Encodable {
            var parameters: WhaleBenchmark.Parameters
            var modes: [WhaleBenchmark.ModeReport]
        }
        try encoder.encode(Output(parameters: p, modes: reports)).write(to: url)
        print("report written to \(url.path)")
    }

    /// One mode on a fresh private stack (see `PrivateStack`).
    static func runMode(
        _ mode: String, parameters p: WhaleBenchmark.Parameters, dataRoot: URL, servicesBinary: String? = nil,
        logger: Logger
    ) async throws -> WhaleBenchmark.ModeReport {
        let fair = mode == "fair"
        // Scaled for a benchmark: standard tenants exist from the start (≈ lead seconds before
        // the flood), new ones first appear during it.
        let env = [
            "SUNDIAL_DISPATCHER_FAIRNESS": fair ? "on" : "off",
            "SUNDIAL_GOVERNOR_NEW_TENANT_AGE": "\(Int(max(30, p.lead / 2)))s",
        ]
        return try await PrivateStack.run(
            root: dataRoot.appendingPathComponent(mode),
            components: ["ingest", "planner", "dispatcher"] + (fair ? ["governor"] : []), environment: env,
            servicesBinary: servicesBinary, logger: logger
        ) { natsURL in
            try await WhaleBenchmark(p).run(natsURL: natsURL, mode: fair ? "fairness on" : "FIFO (fairness off)") { print($0) }
        }
    }
}

/// A fresh private stack for one benchmark run: nats-server + Postgres (fsync on) under `root`
/// (wiped first), and the services as one `sundial serve` child process, as in a deployment —
/// the benchmark's client and executors run in this process, apart.
enum PrivateStack {
    static func run<T>(
        root: URL, components: [String], environment extra: [String: String], servicesBinary: String?, logger: Logger,
        body: (String) async throws -> T
    ) async throws -> T {
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let postgres = try await LocalPostgresServer.start(
            dataDirectory: root.appendingPathComponent("postgres"), port: nil, fsync: true, logger: logger)
        defer { postgres.stopBlocking() }
        let natsBinary = try LocalNATSServer.locateBinary(from: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        let nats = try await LocalNATSServer.start(
            binary: natsBinary, storeDirectory: root.appendingPathComponent("nats"), port: nil, auth: nil, logger: logger)

        var env = ProcessInfo.processInfo.environment
        env["SUNDIAL_NATS_URL"] = nats.url
        env["SUNDIAL_POSTGRES_URL"] = postgres.url
        env["SUNDIAL_POSTGRES_SCHEMA"] = "sundial"
        env["SUNDIAL_METRICS_ADDRESS"] = "off"  // a benchmark's services must not need port 9464
        env["SUNDIAL_LOG_LEVEL"] = "warning"
        env.merge(extra) { _, new in new }
        let executable = servicesBinary ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let log = root.appendingPathComponent("services.log").path
        let services = try ChildProcess.spawn(
            executable: executable, arguments: ["serve"] + components, environment: env, output: .file(log))

        // Ingest subscribes asynchronously; wait until it answers.
        let probeConnection = try await NATSConnection.connect(
            NATSConnectionOptions(url: nats.url, name: "bench-probe"), logger: logger)
        let probe = TimersClient(connection: probeConnection, tenant: "probe", namespace: .standard, timeout: .seconds(1))
        let ready = try await IngestReadiness.wait(probe, limit: .seconds(30))
        await probeConnection.close()
        guard ready else {
            services.signal(SIGKILL)
            _ = await services.waitForExit()
            await nats.stop()
            throw ValidationError("services did not start; see \(log)")
        }
        let result: T
        do {
            result = try await body(nats.url)
        } catch {
            services.signal(SIGKILL)
            _ = await services.waitForExit()
            await nats.stop()
            throw error
        }
        services.signal(SIGTERM)
        _ = await services.waitForExit()
        await nats.stop()
        return result
    }
}
