import ArgumentParser
import Foundation
import Logging
import SundialBench
import SundialContract
import SundialDispatcher
import SundialGovernor
import SundialIngest
import SundialLocalCluster
import SundialNATS
import SundialPlanner
import ServiceLifecycle
import SundialPostgres
import SundialStore

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
        // Creating runs at roughly 1 000/s on 2 cores; leave slack.
        p.lead = lead ?? (Double(whale + standardTenants * standardTimers) / 900 + 30)
        for mode in modes where mode != "fair" && mode != "fifo" { throw ValidationError("--modes: fair or fifo") }
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        var reports: [WhaleBenchmark.ModeReport] = []
        for mode in modes {
            reports.append(try await Self.runMode(mode, parameters: p, dataRoot: URL(fileURLWithPath: data), logger: logger))
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

    /// One mode on a fresh private stack: nats-server + Postgres under `dataRoot/mode`, services
    /// in-process (ingest, planner, dispatcher; the governor only with fairness).
    static func runMode(
        _ mode: String, parameters p: WhaleBenchmark.Parameters, dataRoot: URL, logger: Logger
    ) async throws -> WhaleBenchmark.ModeReport {
        let fair = mode == "fair"
        let root = dataRoot.appendingPathComponent(mode)
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let postgres = try await LocalPostgresServer.start(
            dataDirectory: root.appendingPathComponent("postgres"), port: nil, fsync: true, logger: logger)
        let natsBinary = try LocalNATSServer.locateBinary(from: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        let nats = try await LocalNATSServer.start(
            binary: natsBinary, storeDirectory: root.appendingPathComponent("nats"), port: nil, auth: nil, logger: logger)
        defer {
            postgres.stopBlocking()
        }
        var pgConfig = try PostgresConfiguration(url: postgres.url)
        pgConfig.searchPath = "\"sundial\""
        let pool = PostgresPool(configuration: pgConfig, size: 8, logger: logger)
        try await SundialDatabase.migrate(pool, schema: "sundial")
        var apiOptions = NATSConnectionOptions(url: nats.url, name: "sundial-api")
        apiOptions.sendAsap = true
        let api = try await NATSConnection.connect(apiOptions, logger: logger)
        let bulk = try await NATSConnection.connect(NATSConnectionOptions(url: nats.url, name: "sundial-bulk"), logger: logger)
        let store = TimerStore(pool: pool)

        var dispatcherConfig = DispatcherConfig()
        dispatcherConfig.fairness.enforce = fair
        var governorConfig = GovernorConfig()
        // Scaled for a benchmark: standard tenants exist from the start (≈ lead seconds before
        // the flood), new ones first appear during it.
        governorConfig.core.classifier.newTenantAge = .seconds(Int64(max(30, p.lead / 2)))
        var services: [any Service] = [
            try IngestService(config: IngestConfig(), connection: api, store: store, logger: logger),
            try PlannerService(
                config: PlannerConfig(), connection: bulk, timers: store, leases: LeaseStore(pool: pool), logger: logger),
            try DispatcherService(config: dispatcherConfig, connection: bulk, timers: store, logger: logger),
        ]
        if fair {
            services.append(
                try GovernorService(config: governorConfig, connection: bulk, tenants: TenantStore(pool: pool), logger: logger))
        }
        let tasks = services.map { service in
            Task {
                do { try await service.run() } catch {
                    if !Task.isCancelled { logger.error("service failed: \(error)") }
                }
            }
        }
        // Ingest subscribes asynchronously; wait until it answers.
        let probe = TimersClient(connection: api, tenant: "probe", namespace: .standard, timeout: .seconds(1))
        for _ in 0..<100 {
            if (try? await probe.raw(.get, [])) != nil { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let report: WhaleBenchmark.ModeReport
        do {
            report = try await WhaleBenchmark(p).run(natsURL: nats.url, mode: fair ? "fairness on" : "FIFO (fairness off)") {
                print($0)
            }
        } catch {
            for task in tasks { task.cancel() }
            throw error
        }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
        await api.close()
        await bulk.close()
        await pool.close()
        await nats.stop()
        return report
    }
}
