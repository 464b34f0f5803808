import ArgumentParser
import Foundation
import Logging
import SundialBench
import SundialClient
import SundialContract
import SundialLocalCluster
import SundialNATS

/// `sundial bench chaos`: a private fleet — a NATS JetStream cluster (3 replicas), Postgres
/// (fsync on) and `--instances` of every service, each its own process — under a steady create
/// rate, while faults come one after another: every service instance killed with SIGKILL and
/// started again, one NATS node killed and restarted, Postgres stopped and started. Reports
/// created, lost (must be 0), duplicates, lag, and per fault the create attempts that failed,
/// the largest lag and the time to recover (`ChaosRecovery`); writes JSON.
struct ChaosBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Kill every service instance, a NATS node and Postgres in turn under load; report lost, duplicates, lag, recovery.")

    @Option(help: "Creates per second (one-shot timers).") var rate: Double = 1000
    @Option(help: "Tenants the timers are spread over.") var tenants: Int = 4
    @Option(help: "Instances of every service.") var instances: Int = 2
    @Option(help: "NATS cluster nodes (streams get min(3, nodes) replicas).") var natsNodes: Int = 3
    @Option(help: "Seconds of load before the first fault.") var warmup: Double = 20
    @Option(help: "Seconds from one fault to the next (its observation window).") var observe: Double = 20
    @Option(help: "Seconds a killed service instance stays down before it is started again.") var down: Double = 3
    @Option(help: "Seconds the killed NATS node stays down.") var natsDown: Double = 10
    @Option(help: "Seconds Postgres stays stopped.") var postgresOutage: Double = 60
    @Option(help: "Seconds to wait after the last due time for jobs still missing.") var drain: Double = 120
    @Option(help: "Earliest due time after creation, seconds.") var dueMin: Double = 5
    @Option(help: "Latest due time after creation, seconds.") var dueMax: Double = 20
    @Option(help: "Faults to inject, comma-separated: services, nats, postgres.") var faults: String = "services,nats,postgres"
    @Option(help: "A sundial binary to run the services from (default: this one).") var servicesBinary: String?
    @Option(help: "Data folder (wiped first).") var data: String = ".sundial/bench-chaos"
    @Option(help: "Write the report as JSON here.") var json: String = "bench-results/chaos.json"

    func run() async throws {
        guard rate > 0, rate <= 20_000, (1...20).contains(tenants), (1...8).contains(instances), (1...9).contains(natsNodes),
            warmup >= 0, observe >= 5, down >= 0, natsDown >= 0, postgresOutage >= 0, drain >= 0, dueMin >= 1, dueMax >= dueMin,
            down < observe, natsDown < observe
        else {
            throw ValidationError("rate 1…20000, tenants 1…20, instances 1…8, nats nodes 1…9, observe ≥ 5 s and longer than the down times, due 1 s ≤ min ≤ max")
        }
        let kinds = Set(faults.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        guard kinds.isSubset(of: ["services", "nats", "postgres"]) else { throw ValidationError("--faults: services, nats, postgres") }
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        let root = URL(fileURLWithPath: data).standardizedFileURL
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)

        let postgresDirectory = root.appendingPathComponent("postgres")
        var postgres = try await LocalPostgresServer.start(dataDirectory: postgresDirectory, port: nil, fsync: true, logger: logger)
        defer { postgres.stopBlocking() }
        let natsBinary = try LocalNATSServer.locateBinary(from: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        let cluster = try await LocalNATSCluster.start(
            binary: natsBinary, root: root.appendingPathComponent("nats"), size: natsNodes, logger: logger)
        defer { cluster.killNow() }
        print("NATS: \(cluster.url) (\(natsNodes) nodes); Postgres: \(postgres.url)")

        var env = ProcessInfo.processInfo.environment
        env["SUNDIAL_NATS_URL"] = cluster.url
        env["SUNDIAL_STREAM_REPLICAS"] = String(min(3, natsNodes))
        env["SUNDIAL_POSTGRES_URL"] = postgres.url
        env["SUNDIAL_POSTGRES_SCHEMA"] = "sundial"
        env["SUNDIAL_METRICS_ADDRESS"] = "off"
        env["SUNDIAL_LOG_LEVEL"] = "warning"
        let executable = servicesBinary ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let fleet = ServiceFleet(executable: executable, environment: env, logs: root, cpuPerInstance: nil)
        // Ingest first (it migrates); the others once it answers.
        try fleet.start("ingest", count: instances, pinned: false)
        try await IngestReadiness.wait(natsURL: cluster.url, logger: logger)
        for component in ["planner", "dispatcher", "governor"] { try fleet.start(component, count: instances, pinned: false) }
        print("services: \(fleet.names.joined(separator: ", ")) (logs in \(root.path))")

        var parameters = ChaosLoad.Parameters()
        parameters.rate = rate
        parameters.tenants = tenants
        parameters.dueMin = dueMin
        parameters.dueMax = dueMax
        let load = try await ChaosLoad.start(natsURL: cluster.url, parameters: parameters)
        print(String(format: "load: %.0f creates/s, due %.0f–%.0f s out; warming up %.0f s", rate, dueMin, dueMax, warmup))
        try await Task.sleep(for: .seconds(warmup))

        var injected: [ChaosLoad.Fault] = []
        func observeUntil(_ end: Double) async throws {
            while load.elapsed < end { try await Task.sleep(for: .milliseconds(200)) }
        }
        func inject(_ name: String, downFor: Double, fault: () async throws -> Void, undo: () async throws -> Void) async throws {
            let at = load.elapsed
            try await fault()
            print(String(format: "[%6.1f s] %@ (created so far %d)", at, name, load.created))
            try await Task.sleep(for: .seconds(downFor))
            try await undo()
            let undoneAt = load.elapsed
            try await observeUntil(max(at + observe, undoneAt + 5))
            injected.append(.init(name: name, at: at, undoneAt: undoneAt, windowEnd: load.elapsed))
            let died = fleet.exited
            if !died.isEmpty { print("  exited on their own: \(died.joined(separator: ", ")) (see their logs)") }
        }

        if kinds.contains("services") {
            for name in fleet.names {
                try await inject("kill -9 \(name)", downFor: down) { await fleet.kill(name) } undo: { try fleet.restart(name) }
            }
        }
        if kinds.contains("nats"), natsNodes > 1 {
            let node = cluster.nodes[1]
            try await inject("kill -9 NATS node 2", downFor: natsDown) { await node.signal(SIGKILL) } undo: { try await node.launch() }
        }
        if kinds.contains("postgres") {
            let port = postgres.port
            try await inject("Postgres stopped", downFor: postgresOutage) { await postgres.stop() } undo: {
                postgres = try await LocalPostgresServer.start(dataDirectory: postgresDirectory, port: port, fsync: true, logger: logger)
            }
        }
        await load.stopCreating()
        print(String(format: "[%6.1f s] stopped creating (%d created); draining", load.elapsed, load.created))
        await load.drain(timeout: drain) { print($0) }
        let report = load.report(faults: injected)
        print(report.text)
        await fleet.stop()
        await cluster.stop()
        await postgres.stop()
        try BenchReportFile.write(report, to: json)
        if report.lost > 0 { throw ExitCode(1) }
    }
}
