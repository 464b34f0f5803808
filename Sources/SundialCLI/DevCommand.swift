import ArgumentParser
import Foundation
import Logging
import SundialClient
import SundialContract
import SundialExecutor
import SundialLocalCluster
import SundialNATS
import SundialProto
import ServiceLifecycle
import SundialServer

/// `sundial dev`: the embedded default. Starts a private nats-server (2.15, from the project
/// venv) and a private Postgres cluster under `.sundial/`, migrates, runs every service in
/// this process, and prints how to talk to it. Ctrl-C stops everything cleanly.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Run Sundial locally with private NATS and Postgres servers.")

    @Option(help: "Folder for the servers' data (reused across runs).")
    var dataDir: String = ".sundial"

    @Option(help: "NATS port (default: the last one used here, else a free one).")
    var natsPort: Int?

    @Option(help: "Postgres port (default: the last one used here, else a free one).")
    var postgresPort: Int?

    @Option(help: "Port of /metrics, /healthz and /readyz on 127.0.0.1 (default: 9464 if free, else a free one).")
    var metricsPort: Int?

    @Flag(inversion: .prefixedNo, help: "Create a demo timer after startup and show it arrive.")
    var demo: Bool = true

    @Option(
        name: .customLong("tenant"),
        help: "Enable NATS auth with credentials for this tenant (repeatable): it may use only sundial.v1.<tenant>.> and its own inbox. Credentials go to .sundial/dev.env, where the CLI finds them.")
    var tenants: [String] = []

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Option(help: "Run NATS as a JetStream cluster of this many nodes on loopback (3 or more: every stream gets 3 replicas, as in production, and survives the loss of a node); 1: one server.")
    var natsCluster: Int = 1

    @Flag(help: "Run each service as its own `sundial serve <service>` child process (each with its own /metrics; benchmarks then report CPU per service).")
    var processes: Bool = false

    func run() async throws {
        let logger = SundialLogging.bootstrap(level: Logger.Level(rawValue: logLevel) ?? .info, label: "sundial.dev")
        let root = URL(fileURLWithPath: dataDir, isDirectory: true).standardizedFileURL
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        // The servers' URLs and credentials live beside their data; the CLI finds them at
        // .sundial/dev.env or through $SUNDIAL_DEV_ENV.
        let envFile = root.appendingPathComponent("dev.env")
        let previous = DevEnvironmentFile.read(envFile)

        // Another `sundial dev` on this folder: refuse before touching its Postgres.
        if let holder = LocalNATSServer.storeHolder(root.appendingPathComponent("nats")) {
            throw LocalClusterError.startFailed(
                "another sundial dev (its nats-server, pid \(holder)) is using \(root.path); stop it first")
        }
        let natsBinary = try LocalNATSServer.locateBinary(from: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        let postgres = try await LocalPostgresServer.start(
            dataDirectory: root.appendingPathComponent("postgres"),
            port: postgresPort ?? previous["SUNDIAL_DEV_POSTGRES_PORT"].flatMap { Int($0) }.flatMap(Self.ifFree),
            fsync: true, logger: logger)
        for tenant in tenants where !SubjectToken.isValidTenant(tenant) {
            throw ValidationError("--tenant \(tenant): 1–64 characters of [A-Za-z0-9_-]")
        }
        var saved = [
            "SUNDIAL_NATS_URL": "", "SUNDIAL_POSTGRES_URL": postgres.url,
            "SUNDIAL_DEV_POSTGRES_PORT": String(postgres.port),
        ]
        var auth: NATSAuthConfig?
        var servicePassword: String?
        if !tenants.isEmpty {
            servicePassword = Self.randomSecret()
            let executorPassword = Self.randomSecret()
            var tenantSecrets: [NATSAuthConfig.Tenant] = []
            for tenant in tenants {
                let secret = Self.randomSecret()
                tenantSecrets.append(.init(tenant, password: .literal(secret)))
                saved["SUNDIAL_DEV_TENANT_\(tenant.uppercased())_PASSWORD"] = secret
            }
            saved["SUNDIAL_DEV_EXECUTOR_PASSWORD"] = executorPassword
            saved["SUNDIAL_DEV_SERVICE_PASSWORD"] = servicePassword
            auth = NATSAuthConfig(
                servicePassword: .literal(servicePassword!), executorPassword: .literal(executorPassword),
                tenants: tenantSecrets)
        }
        guard (1...9).contains(natsCluster) else { throw ValidationError("--nats-cluster: 1…9 nodes") }
        // One server, or a cluster whose URL lists every node (clients fail over between them).
        let natsURL: String
        let natsDescription: String
        let stopNATS: @Sendable () async -> Void
        var replicas = 1
        if natsCluster > 1 {
            let clusterRoot = root.appendingPathComponent("nats-cluster")
            if let holder = LocalNATSServer.storeHolder(clusterRoot.appendingPathComponent("node1")) {
                throw LocalClusterError.startFailed(
                    "another sundial dev (its nats-server, pid \(holder)) is using \(root.path); stop it first")
            }
            let cluster = try await LocalNATSCluster.start(
                binary: natsBinary, root: clusterRoot, size: natsCluster, auth: auth, logger: logger)
            replicas = min(3, natsCluster)
            natsURL = cluster.url
            natsDescription = "\(natsCluster)-node JetStream cluster, streams with \(replicas) replicas"
            stopNATS = { await cluster.stop() }
        } else {
            let nats = try await LocalNATSServer.start(
                binary: natsBinary, storeDirectory: root.appendingPathComponent("nats"),
                port: natsPort ?? previous["SUNDIAL_DEV_NATS_PORT"].flatMap { Int($0) }.flatMap(Self.ifFree),
                auth: auth, logger: logger)
            saved["SUNDIAL_DEV_NATS_PORT"] = String(nats.port)
            natsURL = nats.url
            natsDescription = "nats-server \(natsBinary.path)"
            stopNATS = { await nats.stop() }
        }
        // Postgres is a daemon: stop it when this process ends, also by kill -9.
        let watchdog = try postgres.stopWhenProcessExits(getpid())
        saved["SUNDIAL_NATS_URL"] = natsURL
        let metricsPort = try self.metricsPort ?? Self.ifFree(9464) ?? FreePort.allocate()
        saved["SUNDIAL_DEV_METRICS_URL"] = "http://127.0.0.1:\(metricsPort)/metrics"
        try DevEnvironmentFile.write(saved, to: envFile)
        let defaultEnvFile = DevEnvironmentFile.defaultURL.standardizedFileURL
        let envHint = envFile.path == defaultEnvFile.path
            ? "(the commands find this server through .sundial/dev.env)"
            : "(first: export SUNDIAL_DEV_ENV=\(envFile.path))"

        print("""
            Sundial dev is starting.
              NATS:      \(natsURL)   (\(natsDescription))
              Postgres:  \(postgres.url)   (schema "sundial")
              Metrics:   http://127.0.0.1:\(metricsPort)/metrics   (also /healthz, /readyz)
              Data:      \(root.path)
            Try, in another shell \(envHint):
              swift run sundial timers create --tenant acme --in 10s --queue emails --payload 'hello'
              swift run sundial work tail --queue emails
            Ctrl-C stops Sundial, NATS and Postgres.
            """)

        var environment = ServiceEnvironment()
        environment.natsURL = natsURL
        environment.streamLimits.replicas = replicas
        environment.applyStreamLimits()
        environment.postgresURL = postgres.url
        environment.schema = "sundial"
        environment.metricsAddress = "127.0.0.1:\(metricsPort)"
        if let servicePassword {
            environment.natsUser = NATSAuthConfig.serviceUser
            environment.natsPassword = servicePassword
            print("NATS auth is on: tenants \(tenants.joined(separator: ", ")) (credentials in .sundial/dev.env; the CLI uses them).")
        }
        // The demo acts as a tenant and an executor; it runs only without auth.
        let demoTask = demo && auth == nil ? Task { await Self.runDemo(natsURL: natsURL, replicas: replicas) } : nil
        do {
            if processes {
                try await Self.runAsProcesses(environment, metricsPort: metricsPort, logLevel: logLevel, logger: logger)
            } else {
                try await ServiceRunner.run(SundialComponent.allCases, environment: environment, logger: logger)
            }
        } catch {
            logger.error("sundial stopped with error: \(error)")
        }
        demoTask?.cancel()
        await stopNATS()
        await postgres.stop()
        watchdog.signal(SIGTERM)
        print("Sundial dev stopped.")
    }

    /// `--processes`: one `sundial serve <service>` child per service, configured through the
    /// environment as a deployment would be; the first (ingest) serves the printed metrics
    /// port, the others free ones (printed). SIGINT/SIGTERM stop them; one exiting stops all.
    static func runAsProcesses(_ environment: ServiceEnvironment, metricsPort: Int, logLevel: String, logger: Logger) async throws {
        var env = ProcessInfo.processInfo.environment
        env["SUNDIAL_NATS_URL"] = environment.natsURL
        env["SUNDIAL_POSTGRES_URL"] = environment.postgresURL
        env["SUNDIAL_POSTGRES_SCHEMA"] = environment.schema
        env["SUNDIAL_LOG_LEVEL"] = logLevel
        env["SUNDIAL_NATS_USER"] = environment.natsUser
        env["SUNDIAL_NATS_PASSWORD"] = environment.natsPassword
        env["SUNDIAL_STREAM_REPLICAS"] = String(environment.streamLimits.replicas)
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        var children: [(SundialComponent, ChildProcess)] = []
        for component in SundialComponent.allCases {
            let port = children.isEmpty ? metricsPort : try FreePort.allocate()
            env["SUNDIAL_METRICS_ADDRESS"] = "127.0.0.1:\(port)"
            let child = try ChildProcess.spawn(
                executable: executable, arguments: ["serve", component.rawValue], environment: env,
                output: .pipe { FileHandle.standardError.write(Data($0)) }, diesWithParent: true)
            children.append((component, child))
            print("  \(component.rawValue): pid \(child.pid), metrics http://127.0.0.1:\(port)/metrics")
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: ChildServices(children: children.map(\.1)))],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// Runs until a child exits or shutdown is asked for, then stops every child (SIGTERM:
    /// their own graceful shutdown) and waits for them all.
    struct ChildServices: Service {
        let children: [ChildProcess]

        func run() async throws {
            let children = self.children
            await withGracefulShutdownHandler {
                await withTaskGroup(of: Void.self) { group in
                    for child in children { group.addTask { _ = await child.waitForExit() } }
                    await group.next()
                    for child in children where child.isRunning { child.signal(SIGTERM) }
                }
            } onGracefulShutdown: {
                for child in children { child.signal(SIGTERM) }
            }
        }
    }

    static func randomSecret() -> String {
        let alphabet = Array("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        return String((0..<24).map { _ in alphabet.randomElement()! })
    }

    static func ifFree(_ port: Int) -> Int? {
        FreePort.isFree(port) ? port : nil
    }

    /// Creates a 3-second timer and waits for it as an executor would.
    static func runDemo(natsURL: String, replicas: Int) async {
        do {
            var options = NATSConnectionOptions(url: natsURL, name: "sundial-dev-demo")
            options.sendAsap = true
            let connection = try await NATSConnection.connect(options, logger: CLILogger.shared)
            defer { Task { await connection.close() } }
            var workerOptions = SundialWorker.Options()
            workerOptions.streamReplicas = replicas
            let worker = try await SundialWorker.connect(connection: connection, queue: "demo", options: workerOptions)
            let client = TimersClient(connection: connection, tenant: "demo")
            var request = Sundial_V1_CreateTimerRequest()
            request.queue = "demo"
            request.payload = Data("hello from sundial dev".utf8)
            request.schedule.delay.duration = .init(seconds: 3)
            var created: Sundial_V1_CreateTimerResponse?
            // Ingest may still be starting: retry briefly (bounded).
            for _ in 0..<50 where created == nil && !Task.isCancelled {
                do { created = try await client.create(request) } catch { try await Task.sleep(for: .milliseconds(200)) }
            }
            guard let created else { return }
            print("demo: created timer \(created.timer.id) due in 3s on queue demo")
            while !Task.isCancelled {
                for job in try await worker.next(max: 16, maxWait: .seconds(1)) {
                    try await worker.complete(job)
                    if job.timerID == created.timer.id {
                        print(String(format: "demo: job received %.3f s after its due time — Sundial works.", job.lag()))
                        return
                    }
                }
            }
        } catch {
            print("demo failed: \(error)")
        }
    }
}
