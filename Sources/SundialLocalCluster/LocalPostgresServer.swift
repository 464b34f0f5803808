import Foundation
import Logging
import SundialPostgres

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A private Postgres cluster for tests and `sundial dev`, driven through `initdb` / `pg_ctl`.
///
/// Layout: the cluster lives in `dataDirectory` (server log: `postgres.log` inside it); the unix
/// socket goes to `pgsocket/` beside it. Settings live in `sundial.conf` in the data directory,
/// rewritten on every start and included from `postgresql.conf`. The server listens on
/// 127.0.0.1 only and trusts local connections as user `postgres`.
public final class LocalPostgresServer: Sendable {
    public let dataDirectory: URL
    /// Holds `.s.PGSQL.<port>`; nil when its path would be too long for a unix socket.
    public let socketDirectory: URL?
    public let port: Int
    public let fsync: Bool
    private let tools: Tools
    private let logger: Logger

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    public var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// A configuration for `url` (SSL off: the server has none).
    public var configuration: PostgresConfiguration {
        PostgresConfiguration(host: "127.0.0.1", port: port, user: "postgres", database: "postgres", sslMode: "disable")
    }

    private init(dataDirectory: URL, socketDirectory: URL?, port: Int, fsync: Bool, tools: Tools, logger: Logger) {
        self.dataDirectory = dataDirectory
        self.socketDirectory = socketDirectory
        self.port = port
        self.fsync = fsync
        self.tools = tools
        self.logger = logger
    }

    /// Starts (or reuses) the cluster in `dataDirectory`, creating and `initdb`-ing it when
    /// missing. `port` nil picks a free one. `fsync: false` (tests) turns off fsync,
    /// synchronous_commit and full_page_writes and initdb's own syncing; `true` (`sundial dev`)
    /// keeps the durable defaults.
    ///
    /// Idempotent: a healthy server already running from this directory on the wanted port (any
    /// port when `port` is nil) is reused after reloading the settings; one on another port or
    /// not answering is stopped first; a stale `postmaster.pid` is removed. As root, the tools run
    /// as the `postgres` user (initdb refuses root) and the directories are chowned to it.
    public static func start(dataDirectory: URL, port: Int?, fsync: Bool, logger: Logger) async throws
        -> LocalPostgresServer
    {
        let tools = try Tools.locate()
        let dataDirectory = URL(fileURLWithPath: dataDirectory.path).standardizedFileURL
        var logger = logger
        logger[metadataKey: "postgres.data"] = "\(dataDirectory.path)"
        let files = FileManager.default
        let parent = dataDirectory.deletingLastPathComponent()
        let socketCandidate = parent.appendingPathComponent("pgsocket", isDirectory: true)
        // sun_path holds 107 bytes; "/.s.PGSQL.65535.lock" needs 20 of them.
        let socketFits = socketCandidate.path.utf8.count + 20 <= 107
        if !socketFits { logger.warning("socket directory path too long for a unix socket; TCP only") }
        let socketDirectory = socketFits ? socketCandidate : nil

        do {
            try files.createDirectory(at: parent, withIntermediateDirectories: true)
            if !files.fileExists(atPath: dataDirectory.path) {
                try files.createDirectory(at: dataDirectory, withIntermediateDirectories: false)
            }
            if let socketDirectory, !files.fileExists(atPath: socketDirectory.path) {
                try files.createDirectory(at: socketDirectory, withIntermediateDirectories: false)
            }
        } catch {
            throw LocalPostgresServerError("cannot create \(dataDirectory.path): \(error)")
        }
        if let owner = tools.runAs {
            try owner.own(dataDirectory)
            if let socketDirectory { try owner.own(socketDirectory) }
        }
        chmod(dataDirectory.path, 0o700)

        let versionFile = dataDirectory.appendingPathComponent("PG_VERSION")
        if !files.fileExists(atPath: versionFile.path) {
            let contents = (try? files.contentsOfDirectory(atPath: dataDirectory.path)) ?? []
            guard contents.isEmpty else {
                throw LocalPostgresServerError(
                    "\(dataDirectory.path) is not empty but holds no Postgres cluster (no PG_VERSION); "
                        + "remove it or point elsewhere")
            }
            logger.info("initialising Postgres cluster")
            var arguments = [
                "-D", dataDirectory.path, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
            ]
            if !fsync { arguments.append("--no-sync") }
            let result = try await tools.run("initdb", arguments, in: parent)
            guard result.status == 0 else {
                throw LocalPostgresServerError("initdb failed (exit \(result.status)): \(result.output)")
            }
            try appendInclude(to: dataDirectory.appendingPathComponent("postgresql.conf"))
        }

        // A server from an earlier run: reuse it when healthy, otherwise stop it.
        if let running = RunningPostmaster.read(dataDirectory: dataDirectory) {
            if running.isAlive, port == nil || port == running.port,
                try await tools.isReady(port: running.port, in: parent)
            {
                let server = LocalPostgresServer(
                    dataDirectory: dataDirectory, socketDirectory: socketDirectory, port: running.port,
                    fsync: fsync, tools: tools, logger: logger)
                try server.writeSettings()
                let reload = try await tools.run("pg_ctl", ["reload", "-D", dataDirectory.path], in: parent)
                if reload.status != 0 { logger.warning("pg_ctl reload failed: \(reload.output)") }
                logger.info("reusing running Postgres on port \(running.port)")
                return server
            }
            if running.isAlive {
                logger.notice("stopping the Postgres left running in this directory (port \(running.port))")
                let stop = try await tools.run(
                    "pg_ctl", ["stop", "-D", dataDirectory.path, "-m", "fast", "-w", "-t", "60"], in: parent)
                guard stop.status == 0 || !RunningPostmaster.isRunning(dataDirectory: dataDirectory) else {
                    throw LocalPostgresServerError("could not stop the previous server: \(stop.output)")
                }
            } else {
                // The pid is dead or now belongs to another process (pid reuse after a container
                // restart would make Postgres refuse to start): the lock files are stale.
                logger.notice("removing stale postmaster.pid (pid \(running.pid))")
                try? files.removeItem(at: dataDirectory.appendingPathComponent("postmaster.pid"))
                if let socketDirectory {
                    try? files.removeItem(at: socketDirectory.appendingPathComponent(".s.PGSQL.\(running.port).lock"))
                    try? files.removeItem(at: socketDirectory.appendingPathComponent(".s.PGSQL.\(running.port)"))
                }
            }
        }

        // Start; with a picked port, retry on a fresh one if someone took it meanwhile.
        var attempt = 0
        while true {
            attempt += 1
            let chosenPort = try port ?? FreePort.allocate()
            let server = LocalPostgresServer(
                dataDirectory: dataDirectory, socketDirectory: socketDirectory, port: chosenPort, fsync: fsync,
                tools: tools, logger: logger)
            try server.writeSettings()
            let logFile = dataDirectory.appendingPathComponent("postgres.log")
            let result = try await tools.run(
                "pg_ctl", ["start", "-D", dataDirectory.path, "-l", logFile.path, "-w", "-t", "120"], in: parent)
            if result.status == 0 {
                logger.info("Postgres started on 127.0.0.1:\(chosenPort)")
                return server
            }
            let log = Self.tail(of: logFile)
            let portTaken = log.contains("could not bind") || log.contains("Address already in use")
            if port == nil && portTaken && attempt < 5 {
                logger.notice("port \(chosenPort) was taken; retrying with another")
                continue
            }
            throw LocalPostgresServerError(
                "pg_ctl start failed (exit \(result.status)): \(result.output)\n--- postgres.log ---\n\(log)")
        }
    }

    /// `pg_ctl stop -m fast`, waiting until the server is down. Safe to call when it is not running.
    public func stop() async {
        do {
            let result = try await tools.run(
                "pg_ctl", ["stop", "-D", dataDirectory.path, "-m", "fast", "-w", "-t", "60"],
                in: dataDirectory.deletingLastPathComponent())
            if result.status != 0 && RunningPostmaster.isRunning(dataDirectory: dataDirectory) {
                logger.error("pg_ctl stop failed: \(result.output)")
            }
        } catch {
            logger.error("pg_ctl stop failed: \(error)")
        }
    }

    /// Stops this server when process `owner` exits, however it exits (kill -9 included): a
    /// small watchdog shell polls it every second, then runs `pg_ctl stop -m fast`. The
    /// postmaster is a daemon that would otherwise outlive `sundial dev`.
    public func stopWhenProcessExits(_ owner: pid_t) throws -> ChildProcess {
        let (executable, arguments) = tools.commandLine(
            "pg_ctl", ["stop", "-D", dataDirectory.path, "-m", "fast", "-w", "-t", "60"])
        let stopCommand = ([executable.path] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            .joined(separator: " ")
        let script = "while kill -0 \(owner) 2>/dev/null; do sleep 1; done; exec \(stopCommand) >/dev/null 2>&1"
        return try ChildProcess.spawn(
            executable: "/bin/sh", arguments: ["-c", script],
            workingDirectory: dataDirectory.deletingLastPathComponent().path, output: .file("/dev/null"))
    }

    /// Blocking `pg_ctl stop -m immediate`, for exit paths that cannot await (an `atexit`
    /// handler in tests). Blocks the calling thread; never call it from async code.
    public func stopBlocking() {
        _ = try? tools.spawnAndWait(
            "pg_ctl", ["stop", "-D", dataDirectory.path, "-m", "immediate", "-w", "-t", "30"],
            in: dataDirectory.deletingLastPathComponent(), output: nil)
    }

    // MARK: Settings

    private func writeSettings() throws {
        func quoted(_ value: String) -> String { "'" + value.replacingOccurrences(of: "'", with: "''") + "'" }
        let onOff = fsync ? "on" : "off"
        let settings = """
            # Written by Sundial's LocalPostgresServer on every start; edits here are overwritten.
            listen_addresses = '127.0.0.1'
            port = \(port)
            unix_socket_directories = \(quoted(socketDirectory?.path ?? ""))
            max_connections = 200
            shared_buffers = 128MB
            fsync = \(onOff)
            synchronous_commit = \(onOff)
            full_page_writes = \(onOff)
            max_wal_size = 1GB
            timezone = 'UTC'
            log_timezone = 'UTC'
            datestyle = 'iso, mdy'
            log_min_messages = warning
            log_line_prefix = '%m [%p] '

            """
        let file = dataDirectory.appendingPathComponent("sundial.conf")
        do {
            try settings.write(to: file, atomically: false, encoding: .utf8)
        } catch {
            throw LocalPostgresServerError("cannot write \(file.path): \(error)")
        }
        if let owner = tools.runAs { try owner.own(file) }
        try Self.appendInclude(to: dataDirectory.appendingPathComponent("postgresql.conf"))
    }

    /// Makes `postgresql.conf` include `sundial.conf` (once).
    private static func appendInclude(to configFile: URL) throws {
        let current = (try? String(contentsOf: configFile, encoding: .utf8)) ?? ""
        guard !current.contains("include_if_exists = 'sundial.conf'") else { return }
        guard let handle = try? FileHandle(forWritingTo: configFile) else {
            throw LocalPostgresServerError("cannot open \(configFile.path) to add the sundial.conf include")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("\n# Sundial settings\ninclude_if_exists = 'sundial.conf'\n".utf8))
    }

    private static func tail(of file: URL) -> String {
        guard let data = try? Data(contentsOf: file) else { return "(no log)" }
        return String(decoding: data.suffix(4096), as: UTF8.self)
    }
}

public struct LocalPostgresServerError: Error, Sendable, CustomStringConvertible {
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { "LocalPostgresServer: \(message)" }
}

// MARK: - postmaster.pid

/// What `postmaster.pid` says about a server started from a data directory.
private struct RunningPostmaster {
    let pid: Int32
    let port: Int
    /// The pid is alive and is a Postgres process (not a recycled pid).
    let isAlive: Bool

    static func read(dataDirectory: URL) -> RunningPostmaster? {
        let file = dataDirectory.appendingPathComponent("postmaster.pid")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        // Line 1: pid, line 4: port (see miscadmin.h, LOCK_FILE_LINE_*).
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 4, let pid = Int32(lines[0].trimmingCharacters(in: .whitespaces)),
            let port = Int(lines[3].trimmingCharacters(in: .whitespaces))
        else { return nil }
        return RunningPostmaster(pid: pid, port: port, isAlive: isPostgresProcess(pid))
    }

    static func isRunning(dataDirectory: URL) -> Bool {
        read(dataDirectory: dataDirectory)?.isAlive ?? false
    }

    private static func isPostgresProcess(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        #if os(Linux)
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8) else { return false }
            return comm.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("postgres")
        #else
            return kill(pid, 0) == 0
        #endif
    }
}

// MARK: - Running the Postgres tools

private struct Tools: Sendable {
    /// Directory with initdb, pg_ctl, pg_isready.
    let bin: URL
    /// Set when we are root: the tools then run as this user through runuser.
    let runAs: Owner?

    struct Owner: Sendable {
        let name: String
        let uid: uid_t
        let gid: gid_t
        let runuser: URL

        /// Hands `url` to this user (Postgres insists on owning its data directory).
        func own(_ url: URL) throws {
            guard chown(url.path, uid, gid) == 0 else {
                throw LocalPostgresServerError(
                    "cannot chown \(url.path) to \(name): \(String(cString: strerror(errno)))")
            }
        }
    }

    static func locate() throws -> Tools {
        let files = FileManager.default
        var candidates: [URL] = []
        if let explicit = ProcessInfo.processInfo.environment["SUNDIAL_POSTGRES_BIN"] {
            candidates.append(URL(fileURLWithPath: explicit))
        }
        // Debian/Ubuntu keep versioned binaries off PATH; prefer the newest.
        let debian = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = ((try? files.contentsOfDirectory(atPath: debian.path)) ?? [])
            .compactMap { Int($0) }.sorted(by: >)
        candidates += versions.map { debian.appendingPathComponent("\($0)/bin") }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            candidates.append(URL(fileURLWithPath: String(directory)))
        }
        guard
            let bin = candidates.first(where: {
                files.isExecutableFile(atPath: $0.appendingPathComponent("pg_ctl").path)
                    && files.isExecutableFile(atPath: $0.appendingPathComponent("initdb").path)
            })
        else {
            throw LocalPostgresServerError(
                "Postgres server binaries (initdb, pg_ctl) not found; install `postgresql` or set SUNDIAL_POSTGRES_BIN")
        }

        guard geteuid() == 0 else { return Tools(bin: bin, runAs: nil) }
        guard let entry = getpwnam("postgres") else {
            throw LocalPostgresServerError("running as root needs a `postgres` user (initdb refuses root)")
        }
        guard
            let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
                .first(where: { files.isExecutableFile(atPath: $0) })
        else {
            throw LocalPostgresServerError("running as root needs `runuser` to switch to the postgres user")
        }
        return Tools(
            bin: bin,
            runAs: Owner(
                name: "postgres", uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
                runuser: URL(fileURLWithPath: runuser)))
    }

    struct Result {
        let status: Int32
        let output: String
    }

    /// The executable and arguments to launch `tool` as the right user.
    func commandLine(_ tool: String, _ arguments: [String]) -> (URL, [String]) {
        let executable = bin.appendingPathComponent(tool)
        guard let owner = runAs else { return (executable, arguments) }
        return (owner.runuser, ["-u", owner.name, "--", executable.path] + arguments)
    }

    /// The environment for the tools: ours without PG* variables that would redirect them.
    private static func environmentDictionary() -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
        environment["LC_ALL"] = "C"
        return environment
    }

    /// Runs a tool to completion on a short-lived thread of its own (the wait blocks it, not
    /// the cooperative pool) and returns its exit status and combined stdout/stderr.
    ///
    /// Not Foundation's `Process`: on Linux it learns of the exit through a socket the child
    /// inherits, and `pg_ctl start` hands that socket on to the postmaster, so the exit of
    /// `pg_ctl` is never reported while the server runs.
    func run(_ tool: String, _ arguments: [String], in directory: URL) async throws -> Result {
        let outputFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("sundial-\(tool)-\(UUID().uuidString).log")
        defer { try? FileManager.default.removeItem(at: outputFile) }
        let tools = self
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Swift.Result { try tools.spawnAndWait(tool, arguments, in: directory, output: outputFile.path) })
            }
        }
        let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        return Result(status: status, output: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// `pg_isready` against the TCP port.
    func isReady(port: Int, in directory: URL) async throws -> Bool {
        try await run("pg_isready", ["-h", "127.0.0.1", "-p", String(port), "-t", "5"], in: directory).status == 0
    }

    /// Runs a tool to completion, blocking the calling thread (for `atexit` cleanup).
    func spawnAndWait(_ tool: String, _ arguments: [String], in directory: URL, output: String?) throws -> Int32 {
        let (executable, fullArguments) = commandLine(tool, arguments)
        return try ChildProcess.runBlocking(
            executable: executable.path, arguments: fullArguments, environment: Self.environmentDictionary(),
            workingDirectory: directory.path, outputFile: output)
    }
}
