import CLibPQ
import Logging

/// Exclusive use of one connection, on that connection's thread. Only valid inside the
/// `withSession` / `transaction` closure that received it; every call blocks that thread.
public final class PostgresSession {
    private let state: ConnectionState
    private var isValid = true

    /// Queries sent per sync point in `pipeline`. Without periodic syncs the server's replies
    /// pile up while the client is still writing, and both sides can block on full sockets.
    static let pipelineSegment = 1000

    init(state: ConnectionState) {
        self.state = state
    }

    func invalidate() { isValid = false }

    // MARK: Statements

    /// Runs one statement with `$1…` parameters (unnamed statement; results in text format).
    @discardableResult
    public func execute(_ sql: String, _ parameters: [PostgresValue] = []) throws -> PostgresRows {
        try withHandle { handle in
            let result = try withCParameters(parameters) { count, values, lengths, formats in
                PQexecParams(handle, sql, count, nil, values, lengths, formats, 0)
            }
            return try consume(result, handle)
        }
    }

    /// Runs a named prepared statement with its named parameters bound, preparing it on first
    /// use on this connection. If the server no longer knows the statement (SQLSTATE 26000,
    /// e.g. after `DISCARD ALL`), it is prepared again once.
    @discardableResult
    public func execute(_ query: PostgresQuery, _ bindings: PostgresBindings = [:]) throws -> PostgresRows {
        let parameters = try query.values(for: bindings)
        return try withHandle { handle in
            try prepareIfNeeded(query, handle)
            do {
                return try executePrepared(query, parameters, handle)
            } catch let error as PostgresError
                where error.sqlState == "26000" && PQtransactionStatus(handle) == PQTRANS_IDLE
            {
                // Outside a transaction block the failed statement left nothing to clean up.
                state.logger.debug("prepared statement \(query.name) vanished; preparing it again")
                state.prepared[query.name] = nil
                try prepareIfNeeded(query, handle)
                return try executePrepared(query, parameters, handle)
            }
        }
    }

    /// Runs one or more `;`-separated statements without parameters (simple protocol), e.g. a
    /// migration. Outside a transaction the statements run as one implicit transaction.
    public func executeScript(_ sql: String) throws {
        try withHandle { handle in
            _ = try consume(PQexec(handle, sql), handle)
        }
    }

    // MARK: Transactions

    /// Runs `body` in a transaction: COMMIT when it returns, ROLLBACK when it throws. Nested
    /// calls use savepoints. If a statement failed inside `body` and the error was caught, the
    /// transaction cannot commit: it is rolled back and 25P02 is thrown.
    @discardableResult
    public func transaction<T>(_ body: (PostgresSession) throws -> T) throws -> T {
        let nested = try withHandle { PQtransactionStatus($0) } != PQTRANS_IDLE
        let savepoint = "sundial_savepoint_\(state.transactionDepth)"
        try command(nested ? "SAVEPOINT \(savepoint)" : "BEGIN")
        state.transactionDepth += 1
        defer { state.transactionDepth -= 1 }

        let result: T
        do {
            result = try body(self)
        } catch {
            rollbackQuietly(nested ? "ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)" : "ROLLBACK")
            throw error
        }
        if try withHandle({ PQtransactionStatus($0) }) == PQTRANS_INERROR {
            rollbackQuietly(nested ? "ROLLBACK TO SAVEPOINT \(savepoint); RELEASE SAVEPOINT \(savepoint)" : "ROLLBACK")
            throw PostgresError(
                kind: .query, sqlState: "25P02",
                message: "transaction aborted by an earlier statement error that was caught; rolled back")
        }
        try command(nested ? "RELEASE SAVEPOINT \(savepoint)" : "COMMIT")
        return result
    }

    // MARK: Pipeline

    /// Sends `query` once per parameter set in libpq pipeline mode (no round-trip wait per
    /// statement) and returns one result per set, in order.
    ///
    /// A sync point follows every `pipelineSegment` (1000) statements and its replies are read
    /// before the next segment is sent. Outside an explicit transaction each segment is its own
    /// implicit transaction: if a statement fails, the rest of its segment is skipped, that
    /// segment rolls back, later segments are not sent, earlier segments stay committed, and the
    /// first error is thrown. Run it inside `transaction { }` for all-or-nothing.
    public func pipeline(_ query: PostgresQuery, _ bindingSets: [PostgresBindings]) throws -> [PostgresRows] {
        if bindingSets.isEmpty { return [] }
        // Every set is checked before anything is sent: a misnamed parameter sends nothing.
        let parameterSets = try bindingSets.map { try query.values(for: $0) }
        return try withHandle { handle in
            try prepareIfNeeded(query, handle)
            guard PQenterPipelineMode(handle) == 1 else {
                throw PostgresError.from(result: nil, connection: handle)
            }
            var results: [PostgresRows] = []
            results.reserveCapacity(parameterSets.count)
            var firstError: PostgresError?
            var start = 0
            while start < parameterSets.count && firstError == nil {
                let end = min(start + Self.pipelineSegment, parameterSets.count)
                var sent = 0
                for index in start..<end {
                    let accepted: Int32
                    do {
                        accepted = try withCParameters(parameterSets[index]) { count, values, lengths, formats in
                            PQsendQueryPrepared(handle, query.name, count, values, lengths, formats, 0)
                        }
                    } catch {
                        // A bad parameter set: stop sending, but still sync and drain what was sent.
                        firstError = error as? PostgresError ?? PostgresError(kind: .query, message: "\(error)")
                        break
                    }
                    guard accepted == 1 else {
                        firstError = PostgresError.from(result: nil, connection: handle)
                        break
                    }
                    sent += 1
                }
                guard PQpipelineSync(handle) == 1 else {
                    throw brokenPipeline(handle, firstError)
                }
                for _ in 0..<sent {
                    guard let result = PQgetResult(handle) else { throw brokenPipeline(handle, firstError) }
                    let status = PQresultStatus(result)
                    if status == PGRES_PIPELINE_ABORTED {
                        PQclear(result)
                    } else if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK {
                        results.append(rows(from: result))
                        PQclear(result)
                    } else {
                        if firstError == nil { firstError = PostgresError.from(result: result, connection: handle) }
                        PQclear(result)
                    }
                    // Each statement's results end with a NULL.
                    while let extra = PQgetResult(handle) { PQclear(extra) }
                }
                guard let sync = PQgetResult(handle) else { throw brokenPipeline(handle, firstError) }
                let synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC
                PQclear(sync)
                guard synced else { throw brokenPipeline(handle, firstError) }
                start = end
            }
            guard PQexitPipelineMode(handle) == 1 else { throw brokenPipeline(handle, firstError) }
            if let firstError { throw firstError }
            return results
        }
    }

    /// The pipeline's protocol state is unknown: drop the connection so the next session
    /// reconnects, and report the best error we have.
    private func brokenPipeline(_ handle: OpaquePointer, _ firstError: PostgresError?) -> PostgresError {
        let error: PostgresError
        if let firstError, firstError.isConnectionFailure {
            error = firstError
        } else if let firstError {
            error = PostgresError(kind: .connection, message: "pipeline aborted: \(firstError.message)")
        } else {
            error = PostgresError(kind: .connection, message: PostgresError.clientMessage(handle, fallback: "pipeline broke"))
        }
        state.logger.notice("Postgres pipeline broke; dropping the connection: \(error)")
        state.discardConnection()
        return error
    }

    // MARK: Plumbing

    private func withHandle<T>(_ body: (OpaquePointer) throws -> T) throws -> T {
        guard isValid else { throw PostgresError.closed("PostgresSession used outside its withSession scope") }
        guard let connection = state.connection else {
            throw PostgresError(kind: .connection, message: "connection was dropped during this session")
        }
        return try connection.withHandle(body)
    }

    private func command(_ sql: String) throws {
        try executeScript(sql)
    }

    private func rollbackQuietly(_ sql: String) {
        do {
            try command(sql)
        } catch {
            state.logger.debug("rollback failed (the connection will be checked before reuse): \(error)")
        }
    }

    private func prepareIfNeeded(_ query: PostgresQuery, _ handle: OpaquePointer) throws {
        if let sql = state.prepared[query.name] {
            if sql == query.preparedSQL { return }
            // Same name, new SQL (e.g. a changed deployment): replace the statement.
            _ = try consume(PQexec(handle, "DEALLOCATE \(query.name)"), handle)
            state.prepared[query.name] = nil
        }
        do {
            _ = try consume(PQprepare(handle, query.name, query.preparedSQL, 0, nil), handle)
        } catch let error as PostgresError where error.sqlState == "42P05" && PQtransactionStatus(handle) == PQTRANS_IDLE {
            // Prepared behind the cache's back (e.g. SQL-level PREPARE): replace it.
            _ = try consume(PQexec(handle, "DEALLOCATE \(query.name)"), handle)
            _ = try consume(PQprepare(handle, query.name, query.preparedSQL, 0, nil), handle)
        }
        state.prepared[query.name] = query.preparedSQL
    }

    private func executePrepared(_ query: PostgresQuery, _ parameters: [PostgresValue], _ handle: OpaquePointer)
        throws -> PostgresRows
    {
        let result = try withCParameters(parameters) { count, values, lengths, formats in
            PQexecPrepared(handle, query.name, count, values, lengths, formats, 0)
        }
        return try consume(result, handle)
    }

    /// Takes ownership of `result` (clears it) and turns it into rows or an error.
    private func consume(_ result: OpaquePointer?, _ handle: OpaquePointer) throws -> PostgresRows {
        guard let result else { throw PostgresError.from(result: nil, connection: handle) }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        if status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY {
            return rows(from: result)
        }
        if status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH {
            // The connection is now in COPY mode, which this API does not drive.
            state.discardConnection()
            throw PostgresError(kind: .query, message: "COPY is not supported by execute; the connection was reset")
        }
        throw PostgresError.from(result: result, connection: handle)
    }

    private func rows(from result: OpaquePointer) -> PostgresRows {
        var affected = 0
        if let tuples = PQcmdTuples(result) {
            var pointer = tuples
            while pointer.pointee >= 0x30 && pointer.pointee <= 0x39 {
                affected = affected * 10 + Int(pointer.pointee - 0x30)
                pointer += 1
            }
        }
        return PostgresRows(storage: ResultStorage.copy(from: result), affectedRows: affected)
    }
}

@available(*, unavailable, message: "a session is confined to its connection's thread")
extension PostgresSession: Sendable {}
