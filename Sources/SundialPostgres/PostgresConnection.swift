import CLibPQ
import Logging
import Synchronization
import SundialThreads

private let connectionCounter = Atomic<Int>(0)

/// One Postgres connection with its own OS thread. Every libpq call for it runs on that
/// thread, so blocking never touches Swift's cooperative pool, and the `PGconn` is only ever
/// used by one thread.
///
/// If the connection breaks (server restart, network error), the call that hit it fails with
/// `PostgresError(kind: .connection)` and the next `withSession` reconnects, clearing the
/// prepared-statement cache.
public final class PostgresConnection: Sendable {
    private let thread: DedicatedThread
    private let state: ConnectionState
    let id: Int

    /// Creates the connection without connecting; the first session connects.
    init(configuration: PostgresConfiguration, logger: Logger) {
        id = connectionCounter.wrappingAdd(1, ordering: .relaxed).newValue
        var logger = logger
        logger[metadataKey: "pg.connection"] = "\(id)"
        thread = DedicatedThread(name: "sundial-pg-\(id)")
        state = ConnectionState(configuration: configuration, logger: logger)
    }

    deinit {
        // Finish the PGconn on its own thread, after anything still queued there.
        let state = self.state
        thread.submit { state.close() }
        thread.shutdown()
    }

    /// Connects on a new dedicated thread, which stays the connection's home for its life.
    public static func connect(_ configuration: PostgresConfiguration, logger: Logger) async throws
        -> PostgresConnection
    {
        let connection = PostgresConnection(configuration: configuration, logger: logger)
        let state = connection.state
        try await connection.onThread { try state.connectIfNeeded() }
        return connection
    }

    /// Runs `body` on the connection's thread with a session. After `body`, a transaction left
    /// open is rolled back so the next user starts clean. Sessions of one connection run one
    /// at a time, in submission order.
    @discardableResult
    public func withSession<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) throws -> T)
        async throws -> T
    {
        let state = self.state
        return try await onThread { try state.withSession(body) }
    }

    /// Closes the connection after the sessions already submitted have run. Idempotent.
    public func close() async {
        let state = self.state
        try? await onThread { state.close() }
        thread.shutdown()
    }

    private func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await thread.run(body)
        } catch is DedicatedThreadError {
            throw PostgresError.closed("connection is closed")
        }
    }
}

/// Everything mutable about one connection.
// @unchecked Sendable: only ever touched on the owning PostgresConnection's DedicatedThread
// (every access goes through `thread.run` / `thread.submit`), so there is no concurrent access.
final class ConnectionState: @unchecked Sendable {
    let configuration: PostgresConfiguration
    let logger: Logger
    private(set) var connection: LibPQConnection?
    /// Statement name → SQL of the statements prepared on the current `connection`.
    var prepared: [String: String] = [:]
    /// Nesting depth of `PostgresSession.transaction`, for savepoint names.
    var transactionDepth = 0
    private var closed = false
    private var everConnected = false

    init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    func withSession<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        try connectIfNeeded()
        let session = PostgresSession(state: self)
        defer {
            session.invalidate()
            resetAfterSession()
        }
        return try body(session)
    }

    /// Opens the connection, or replaces a broken one.
    func connectIfNeeded() throws {
        guard !closed else { throw PostgresError.closed("connection is closed") }
        if let connection {
            if connection.isHealthy { return }
            logger.notice("Postgres connection is broken; reconnecting")
            discardConnection()
        }
        let opened = try LibPQConnection.open(configuration, logger: logger)
        connection = opened
        prepared.removeAll()
        transactionDepth = 0
        if everConnected {
            logger.notice("Postgres connection re-established")
        } else {
            logger.debug("Postgres connection established")
        }
        everConnected = true
    }

    /// Drops the PGconn (PQfinish) so the next session reconnects from scratch.
    func discardConnection() {
        connection = nil
        prepared.removeAll()
        transactionDepth = 0
    }

    func close() {
        closed = true
        discardConnection()
    }

    /// Leaves the connection idle for the next user: out of pipeline mode, no open transaction.
    private func resetAfterSession() {
        transactionDepth = 0
        guard let connection else { return }
        let clean = connection.withHandle { handle -> Bool in
            guard PQstatus(handle) == CONNECTION_OK else { return false }
            // Still in pipeline mode means `pipeline` was interrupted at an unknown point;
            // draining could block forever if no sync was sent, so start over instead.
            if PQpipelineStatus(handle) != PQ_PIPELINE_OFF { return false }
            switch PQtransactionStatus(handle) {
            case PQTRANS_IDLE:
                return true
            case PQTRANS_INTRANS, PQTRANS_INERROR:
                logger.warning("Postgres session ended inside a transaction; rolling it back")
                guard let result = PQexec(handle, "ROLLBACK") else { return false }
                defer { PQclear(result) }
                return PQresultStatus(result) == PGRES_COMMAND_OK
            default:
                // ACTIVE (a command still running) or UNKNOWN: the protocol state is not
                // trustworthy any more.
                return false
            }
        }
        if !clean {
            logger.notice("Postgres connection left in an unusable state; it will reconnect")
            discardConnection()
        }
    }
}
