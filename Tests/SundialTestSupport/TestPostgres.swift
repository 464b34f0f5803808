import Foundation
import Logging
import SundialLocalCluster
import SundialPostgres
import Synchronization

/// One throwaway Postgres per test process (fsync off, fresh temp directory), started on first
/// use and stopped at process exit. Tests isolate themselves with a fresh schema each.
public enum TestPostgres {
    /// The shared start, so concurrent first callers wait for the same server.
    private static let shared = Mutex<Task<LocalPostgresServer, any Error>?>(nil)
    private static let schemaCounter = Atomic<Int>(0)

    public static let logger: Logger = {
        var logger = Logger(label: "sundial.tests.postgres")
        logger.logLevel = .warning
        return logger
    }()

    public static func server() async throws -> LocalPostgresServer {
        let task = shared.withLock { task in
            if let task { return task }
            let started = Task { try await startServer() }
            task = started
            return started
        }
        return try await task.value
    }

    /// A unique, valid (lowercase, ≤ 63 bytes) schema name starting with `prefix`.
    public static func freshSchema(_ prefix: String) -> String {
        let cleaned = String(
            prefix.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "_" }.prefix(30))
        let number = schemaCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let random = UInt32.random(in: 0...UInt32.max)
        return "t_\(cleaned)_\(number)_\(String(random, radix: 16))"
    }

    /// A pool whose connections use `schema` as search path; the schema is created.
    public static func pool(schema: String, size: Int = 4, server given: LocalPostgresServer? = nil) async throws -> PostgresPool {
        let server: LocalPostgresServer
        if let given { server = given } else { server = try await self.server() }
        var configuration = server.configuration
        configuration.searchPath = schema
        configuration.applicationName = "sundial-tests"
        let pool = PostgresPool(configuration: configuration, size: size, logger: logger)
        try await pool.withSession { session in
            try session.execute("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"")
        }
        return pool
    }

    /// A fresh temporary directory for one test's files (cluster, migrations…).
    public static func temporaryDirectory(_ prefix: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("sundial-\(prefix)-\(UUID().uuidString.prefix(8).lowercased())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// A server of the test's own (for tests that stop and restart it), stopped at exit.
    public static func privateServer() async throws -> LocalPostgresServer {
        try await startServer()
    }

    private static func startServer() async throws -> LocalPostgresServer {
        let root = try temporaryDirectory("pg-test")
        let server = try await LocalPostgresServer.start(
            dataDirectory: root.appendingPathComponent("data"), port: nil, fsync: false, logger: logger)
        registerForExit(server, root: root)
        return server
    }

    // MARK: Cleanup at process exit

    /// Servers (and their temp folders) to stop when the test process exits: Swift Testing has
    /// no process-level teardown, and a leftover postmaster would outlive every run.
    private static let toStop = Mutex<[(LocalPostgresServer, URL)]>([])
    private static let exitHookInstalled = Atomic<Bool>(false)

    public static func registerForExit(_ server: LocalPostgresServer, root: URL) {
        toStop.withLock { $0.append((server, root)) }
        if exitHookInstalled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            atexit {
                let servers = TestPostgres.toStop.withLock { list in
                    defer { list.removeAll() }
                    return list
                }
                for (server, root) in servers {
                    server.stopBlocking()
                    try? FileManager.default.removeItem(at: root)
                }
            }
        }
    }
}
