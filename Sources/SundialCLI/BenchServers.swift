import Foundation
import Logging
import SundialLocalCluster
import SundialPostgres
import SundialStore

/// What a self-contained benchmark runs against: a private Postgres and nats-server under a
/// wiped data folder, the schema `sundial` migrated, and a small pool on it. `stop` ends all.
struct BenchServers {
    let root: URL
    let postgres: LocalPostgresServer
    let nats: LocalNATSServer
    let pool: PostgresPool

    /// `fsync` off when the disk is not what is measured.
    static func start(data: String, fsync: Bool, logger: Logger) async throws -> BenchServers {
        let root = URL(fileURLWithPath: data).standardizedFileURL
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let postgres = try await LocalPostgresServer.start(
            dataDirectory: root.appendingPathComponent("postgres"), port: nil, fsync: fsync, logger: logger)
        do {
            let nats = try await LocalNATSServer.start(
                binary: try LocalNATSServer.locateBinary(from: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)),
                storeDirectory: root.appendingPathComponent("nats"), port: nil, auth: nil, logger: logger)
            var configuration = try PostgresConfiguration(url: postgres.url)
            configuration.searchPath = "sundial"
            let pool = PostgresPool(configuration: configuration, size: 2, logger: logger)
            _ = try await SundialDatabase.migrate(pool, schema: "sundial")
            return BenchServers(root: root, postgres: postgres, nats: nats, pool: pool)
        } catch {
            postgres.stopBlocking()
            throw error
        }
    }

    /// The environment a `sundial serve …` child needs to reach these servers.
    func serviceEnvironment() -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["SUNDIAL_NATS_URL"] = nats.url
        env["SUNDIAL_POSTGRES_URL"] = postgres.url
        env["SUNDIAL_POSTGRES_SCHEMA"] = "sundial"
        return env
    }
}
