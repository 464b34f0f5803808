import Foundation
import Logging
import SundialLocalCluster
import SundialNATS
import Synchronization

/// One nats-server (2.15 from the project venv) per test process, on a free loopback port
/// with its store in a temp folder. Tests isolate themselves by namespace (subjects+streams).
public enum TestNATS {
    private static let shared = Mutex<Task<LocalNATSServer, any Error>?>(nil)

    public static let logger: Logger = {
        var logger = Logger(label: "sundial.tests")
        logger.logLevel = .warning
        return logger
    }()

    /// Every test namespace creates bounded streams, and JetStream reserves their byte limits
    /// against `max_file_store` (accounting only): room for many namespaces on one server.
    public static let maxFileStore = "1TB"

    /// The package root, found from this file's path.
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    public static func server() async throws -> LocalNATSServer {
        let task = shared.withLock { task in
            if let task { return task }
            let started = Task { try await startServer() }
            task = started
            return started
        }
        return try await task.value
    }

    /// A fresh server of its own (for tests that restart or kill it).
    public static func privateServer() async throws -> LocalNATSServer {
        let binary = try LocalNATSServer.locateBinary(from: packageRoot)
        let root = try TestPostgres.temporaryDirectory("nats")
        let server = try await LocalNATSServer.start(binary: binary, storeDirectory: root, maxFileStore: Self.maxFileStore, logger: logger)
        registerForExit(server)
        return server
    }

    /// A fresh server of its own that enforces `auth` (users and permissions).
    public static func privateAuthServer(_ auth: NATSAuthConfig) async throws -> LocalNATSServer {
        let binary = try LocalNATSServer.locateBinary(from: packageRoot)
        let root = try TestPostgres.temporaryDirectory("nats-auth")
        let server = try await LocalNATSServer.start(
            binary: binary, storeDirectory: root, auth: auth, maxFileStore: Self.maxFileStore, logger: logger)
        registerForExit(server)
        return server
    }

    private static func startServer() async throws -> LocalNATSServer {
        try await privateServer()
    }

    /// A 3-node (by default) JetStream cluster of its own, on loopback.
    public static func privateCluster(size: Int = 3) async throws -> LocalNATSCluster {
        let binary = try LocalNATSServer.locateBinary(from: packageRoot)
        let root = try TestPostgres.temporaryDirectory("nats-cluster")
        let cluster = try await LocalNATSCluster.start(
            binary: binary, root: root, size: size, maxFileStore: Self.maxFileStore, logger: logger)
        for node in cluster.nodes { registerForExit(node) }
        return cluster
    }

    public static func connect(
        _ server: LocalNATSServer, name: String, sendAsap: Bool = true, user: String? = nil, password: String? = nil,
        inboxPrefix: String? = nil
    ) async throws -> NATSConnection {
        try await connect(
            url: server.url, name: name, sendAsap: sendAsap, user: user, password: password, inboxPrefix: inboxPrefix)
    }

    /// `url` may list several servers, comma-separated (a cluster's nodes).
    public static func connect(
        url: String, name: String, sendAsap: Bool = true, user: String? = nil, password: String? = nil,
        inboxPrefix: String? = nil
    ) async throws -> NATSConnection {
        var options = NATSConnectionOptions(url: url, name: name)
        options.sendAsap = sendAsap
        options.user = user
        options.password = password
        options.inboxPrefix = inboxPrefix
        options.jetStreamRetryBudget = .seconds(20)
        return try await NATSConnection.connect(options, logger: logger)
    }

    private static let toStop = Mutex<[LocalNATSServer]>([])
    private static let hookInstalled = Atomic<Bool>(false)

    /// Swift Testing has no process-level teardown: stop servers at exit.
    public static func registerForExit(_ server: LocalNATSServer) {
        toStop.withLock { $0.append(server) }
        if hookInstalled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            atexit {
                for server in TestNATS.toStop.withLock({ $0 }) { server.killNow() }
            }
        }
    }
}
