import ArgumentParser
import Foundation
import SundialLocalCluster
import Logging
import SundialNATS

/// `sundial`: run Sundial locally, talk to it, benchmark it.
public struct SundialCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sundial",
        abstract: "Durable timers and job scheduling on NATS JetStream and Postgres.",
        subcommands: [
            DevCommand.self, ServeCommand.self, TimersCommand.self, WorkCommand.self, EventsCommand.self,
            ScheduleCommand.self, TenantsCommand.self, QueuesCommand.self,
            BenchCommand.self,
        ])

    public init() {}

    /// Parses the process arguments and runs the chosen command, async or not.
    public static func runMain() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Where a client command finds NATS: `--nats`, else `$SUNDIAL_NATS_URL`, else the URL the
/// last `sundial dev` in this folder wrote to `.sundial/dev.env`, else localhost:4222.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "NATS server URL.")
    var nats: String?

    @Option(name: .long, help: "NATS user (default: from .sundial/dev.env when `sundial dev` runs with tenants).")
    var user: String?

    @Option(name: .long, help: "NATS password.")
    var password: String?

    /// Who a command acts as when the dev server has auth: a tenant, or the executor.
    enum Role {
        case tenant(String)
        case executor
        /// Operator views (quotas): the service user.
        case service
    }

    func resolvedURL() -> String {
        if let nats { return nats }
        if let env = ProcessInfo.processInfo.environment["SUNDIAL_NATS_URL"] { return env }
        if let saved = DevEnvironmentFile.read()["SUNDIAL_NATS_URL"] { return saved }
        return "nats://127.0.0.1:4222"
    }

    func connect(name: String, sendAsap: Bool = true, as role: Role? = nil) async throws -> NATSConnection {
        var options = NATSConnectionOptions(url: resolvedURL(), name: name)
        options.sendAsap = sendAsap
        options.user = user
        options.password = password
        if let user, user.hasPrefix("tenant-") {
            // Tenant users may only receive replies on their own inbox prefix.
            options.inboxPrefix = "_INBOX_" + user.dropFirst("tenant-".count)
        }
        // With `sundial dev --tenant …` the credentials are in .sundial/dev.env: a tenant's
        // user may only use its own subjects and inbox prefix; executors have their own user.
        let saved = DevEnvironmentFile.read()
        if user == nil, let role, let url = saved["SUNDIAL_NATS_URL"], url == resolvedURL() {
            switch role {
            case .tenant(let tenant):
                if let secret = saved["SUNDIAL_DEV_TENANT_\(tenant.uppercased())_PASSWORD"] {
                    options.user = "tenant-\(tenant)"
                    options.password = secret
                    options.inboxPrefix = "_INBOX_\(tenant)"
                }
            case .executor:
                if let secret = saved["SUNDIAL_DEV_EXECUTOR_PASSWORD"] {
                    options.user = "executor"
                    options.password = secret
                }
            case .service:
                if let secret = saved["SUNDIAL_DEV_SERVICE_PASSWORD"] {
                    options.user = NATSAuthConfig.serviceUser
                    options.password = secret
                }
            }
        }
        return try await NATSConnection.connect(options, logger: CLILogger.shared)
    }
}

enum CLILogger {
    static let shared: Logger = {
        var logger = Logger(label: "sundial.cli")
        logger.logLevel = .warning
        return logger
    }()
}

/// `.sundial/dev.env`: KEY=VALUE lines written by `sundial dev` for the other commands.
enum DevEnvironmentFile {
    static let defaultURL = URL(fileURLWithPath: ".sundial/dev.env")
    /// `$SUNDIAL_DEV_ENV` (a `sundial dev --data-dir` elsewhere prints it), else `.sundial/dev.env`.
    static var url: URL {
        ProcessInfo.processInfo.environment["SUNDIAL_DEV_ENV"].map { URL(fileURLWithPath: $0) } ?? defaultURL
    }

    static func read(_ file: URL = url) -> [String: String] {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [:] }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        return values
    }

    static func write(_ values: [String: String], to file: URL) throws {
        let text = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n") + "\n"
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: file, atomically: true, encoding: .utf8)
    }
}
