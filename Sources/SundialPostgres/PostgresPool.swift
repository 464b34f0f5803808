import Logging
import Synchronization

/// A fixed-size set of `PostgresConnection`s, created and connected lazily.
///
/// Callers beyond `size` wait (suspended, first come first served) for a connection to come
/// back. A connection that broke reconnects at the start of its next session, so after a
/// Postgres restart each call that was already in flight fails with
/// `PostgresError(kind: .connection)` and later calls succeed without intervention.
///
/// Fail fast: after two connection failures in a row the pool counts the database as down.
/// Until a session succeeds again, one call at a time (at most one per `probeInterval`) goes
/// through as a probe and every other call fails at once with `PostgresError(kind:
/// .connection)` (callers answer 503) instead of waiting out a connect timeout; the first
/// success ends the outage.
public final class PostgresPool: Sendable {
    public let configuration: PostgresConfiguration
    public let size: Int
    private let logger: Logger
    private let state = Mutex(State())

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<PostgresConnection, any Error>
    }

    private struct State {
        var idle: [PostgresConnection] = []
        var all: [PostgresConnection] = []
        /// Slots handed out but whose connection object is not created yet.
        var reserved = 0
        var waiters: [Waiter] = []
        var nextWaiterID: UInt64 = 0
        var closed = false
        /// Set while the database is considered down: when the last probe was let through.
        var downSince: ContinuousClock.Instant?
        var lastProbe: ContinuousClock.Instant?
        var probeInFlight = false
        var consecutiveFailures = 0
        /// Callers that had to wait for a connection, and their total wait (for metrics).
        var waits = 0
        var waitedNanos: Int64 = 0
    }

    /// Callers that waited for a connection (all were busy) and their total wait, since start.
    public var waitTotals: (waits: Int, waited: Duration) {
        state.withLock { ($0.waits, .nanoseconds($0.waitedNanos)) }
    }

    /// While down, how often one call is let through to find out whether it is back
    /// (`.zero`: every call tries, i.e. no failing fast).
    public let probeInterval: Duration

    /// True while the pool considers the database unreachable (calls fail fast).
    public var isDown: Bool { state.withLock { $0.downSince != nil } }

    public init(
        configuration: PostgresConfiguration, size: Int, logger: Logger, probeInterval: Duration = .milliseconds(250)
    ) {
        precondition(size > 0, "PostgresPool size must be positive")
        self.configuration = configuration
        self.size = size
        self.probeInterval = probeInterval
        var logger = logger
        logger[metadataKey: "pg.pool"] = "\(configuration.host):\(configuration.port)/\(configuration.database)"
        self.logger = logger
    }

    /// Runs `body` with a session on an idle connection (waiting for one if all are busy).
    @discardableResult
    public func withSession<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) throws -> T)
        async throws -> T
    {
        let probe = try admitDuringOutage()
        let connection: PostgresConnection
        do {
            connection = try await acquire()
        } catch {
            if probe { finishProbe() }
            throw error
        }
        defer { release(connection) }
        do {
            let result = try await connection.withSession(body)
            recordSuccess()
            return result
        } catch let error as PostgresError where error.kind == .connection {
            // The connection itself failed (not a statement that raised a class-08 SQLSTATE).
            recordFailure(error, probe: probe)
            throw error
        } catch {
            // The server answered (a query error, or the body's own error): it is up.
            recordSuccess()
            throw error
        }
    }

    // MARK: Outage

    /// Lets the call through (true: as the outage's one probe), or fails it at once.
    private func admitDuringOutage() throws -> Bool {
        let now = ContinuousClock.now
        let admitted = state.withLock { state -> Bool? in
            guard state.downSince != nil else { return false }
            if state.probeInFlight { return nil }
            if let last = state.lastProbe, last.duration(to: now) < probeInterval { return nil }
            state.lastProbe = now
            state.probeInFlight = true
            return true
        }
        guard let admitted else {
            throw PostgresError(kind: .connection, message: "database unavailable (failing fast until it answers again)")
        }
        return admitted
    }

    private func finishProbe() {
        state.withLock { $0.probeInFlight = false }
    }

    /// One broken connection (an idle socket dropped by a firewall) is not an outage: the
    /// database counts as down after `failuresForOutage` connection failures in a row.
    private func recordFailure(_ error: PostgresError, probe: Bool) {
        let now = ContinuousClock.now
        let began = state.withLock { state -> Bool in
            if probe { state.probeInFlight = false }
            state.consecutiveFailures += 1
            state.lastProbe = now
            guard state.downSince == nil, state.consecutiveFailures >= Self.failuresForOutage else { return false }
            state.downSince = now
            return true
        }
        if began { logger.warning("database unreachable, failing fast until it answers: \(error)") }
    }

    static let failuresForOutage = 2

    private func recordSuccess() {
        let ended = state.withLock { state -> ContinuousClock.Instant? in
            defer {
                state.downSince = nil
                state.probeInFlight = false
                state.consecutiveFailures = 0
            }
            return state.downSince
        }
        if let ended { logger.notice("database reachable again after \(ended.duration(to: .now))") }
    }

    /// `withSession` + `PostgresSession.transaction`: COMMIT on return, ROLLBACK on throw.
    @discardableResult
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) throws -> T)
        async throws -> T
    {
        try await withSession { session in try session.transaction(body) }
    }

    /// Fails waiting callers, then closes every connection once its current session is done.
    /// Later calls throw `PostgresError(kind: .closed)`.
    public func close() async {
        let (waiters, connections) = state.withLock { state in
            state.closed = true
            let waiters = state.waiters
            state.waiters.removeAll()
            state.idle.removeAll()
            return (waiters, state.all)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: PostgresError.closed("pool is closed")) }
        for connection in connections { await connection.close() }
    }

    // MARK: Checkout

    private enum Checkout {
        case ready(PostgresConnection)
        case create
        case wait
    }

    private func acquire() async throws -> PostgresConnection {
        let checkout = try state.withLock { state -> Checkout in
            if state.closed { throw PostgresError.closed("pool is closed") }
            if let connection = state.idle.popLast() { return .ready(connection) }
            if state.all.count + state.reserved < size {
                state.reserved += 1
                return .create
            }
            return .wait
        }
        switch checkout {
        case .ready(let connection):
            return connection
        case .create:
            // Creating starts a thread: done outside the lock. It connects on first use.
            let connection = PostgresConnection(configuration: configuration, logger: logger)
            let accepted = state.withLock { state -> Bool in
                state.reserved -= 1
                if state.closed { return false }
                state.all.append(connection)
                return true
            }
            guard accepted else {
                await connection.close()
                throw PostgresError.closed("pool is closed")
            }
            return connection
        case .wait:
            let started = ContinuousClock.now
            defer {
                let waited = ContinuousClock.now - started
                state.withLock {
                    $0.waits += 1
                    $0.waitedNanos &+= waited.components.seconds * 1_000_000_000 + waited.components.attoseconds / 1_000_000_000
                }
            }
            return try await waitForConnection()
        }
    }

    private func waitForConnection() async throws -> PostgresConnection {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                enum Outcome {
                    case waiting
                    case resume(Result<PostgresConnection, any Error>)
                }
                let outcome = state.withLock { state -> Outcome in
                    // Re-check under the lock: things changed since `acquire` looked.
                    if state.closed { return .resume(.failure(PostgresError.closed("pool is closed"))) }
                    // Cancellation sets the flag before running the handler, and the handler
                    // takes this lock, so checking here closes the race with it.
                    if Task.isCancelled { return .resume(.failure(CancellationError())) }
                    if let connection = state.idle.popLast() { return .resume(.success(connection)) }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return .waiting
                }
                if case .resume(let result) = outcome { continuation.resume(with: result) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func release(_ connection: PostgresConnection) {
        let waiter = state.withLock { state -> Waiter? in
            if state.closed { return nil }
            if !state.waiters.isEmpty { return state.waiters.removeFirst() }
            state.idle.append(connection)
            return nil
        }
        // Hand the connection straight to the longest waiter (FIFO).
        waiter?.continuation.resume(returning: connection)
    }
}
