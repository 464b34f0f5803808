import CLibPQ
import Foundation

/// The one error type of the Postgres layer. Every libpq failure, configuration problem and
/// decoding problem is mapped to it, so callers branch on `kind` and `sqlState`, never on text.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Could not connect, the connection broke, or the configuration is invalid.
        case connection
        /// The server rejected a statement (see `sqlState`), or a migration is malformed.
        case query
        /// The connection, pool or session was already closed / used outside `withSession`.
        case closed
        /// A value in a result could not be decoded as the requested type.
        case decoding
        /// A statement's named parameters and the values bound for it do not match: one has
        /// no value, a value names no parameter, or a name is bound twice.
        case parameters
    }

    public var kind: Kind
    /// The five-character SQLSTATE the server reported, e.g. "23505". Nil for client-side errors.
    public var sqlState: String?
    public var message: String
    public var detail: String?

    public init(kind: Kind, sqlState: String? = nil, message: String, detail: String? = nil) {
        self.kind = kind
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
    }

    /// 23505 unique_violation: the idempotency-key and "already exists" paths rely on it.
    public var isUniqueViolation: Bool { sqlState == "23505" }

    /// The connection is gone (or never came up); retrying on a fresh connection may succeed.
    /// Class 08 is connection_exception; 57P01–57P03 are admin/crash shutdown and
    /// "cannot connect now" (server starting up or shutting down).
    public var isConnectionFailure: Bool {
        if kind == .connection { return true }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || sqlState == "57P01" || sqlState == "57P02"
            || sqlState == "57P03"
    }

    /// 40001 serialization_failure / 40P01 deadlock_detected: the transaction may be retried.
    public var isSerializationFailure: Bool { sqlState == "40001" || sqlState == "40P01" }

    public var description: String {
        var text = "PostgresError(\(kind)"
        if let sqlState { text += ", \(sqlState)" }
        text += "): \(message)"
        if let detail, !detail.isEmpty { text += " — \(detail)" }
        return text
    }

    static func closed(_ message: String) -> PostgresError {
        PostgresError(kind: .closed, message: message)
    }

    static func decoding(_ message: String) -> PostgresError {
        PostgresError(kind: .decoding, message: message)
    }
}

// MARK: - Mapping libpq failures

extension PostgresError {
    /// Builds the error for a failed result (or a nil result, which libpq returns when it
    /// could not even send the command). `connection` is consulted for the client-side text and
    /// to tell a broken connection from a rejected statement.
    static func from(result: OpaquePointer?, connection: OpaquePointer) -> PostgresError {
        let broken = PQstatus(connection) != CONNECTION_OK
        guard let result else {
            return PostgresError(
                kind: broken ? .connection : .query,
                message: clientMessage(connection, fallback: "libpq returned no result"))
        }
        let sqlState = field(result, PG_DIAG_SQLSTATE_CODE)
        let primary = field(result, PG_DIAG_MESSAGE_PRIMARY_CODE)
        var detail = field(result, PG_DIAG_MESSAGE_DETAIL_CODE)
        if let hint = field(result, PG_DIAG_MESSAGE_HINT_CODE) {
            detail = detail.map { "\($0) (hint: \(hint))" } ?? "hint: \(hint)"
        }
        let message =
            primary
            ?? PQresultErrorMessage(result).flatMap { trimmed(String(cString: $0)) }
            ?? clientMessage(connection, fallback: "unknown error")
        // FATAL/PANIC means the server is ending the session even if libpq has not seen the
        // socket close yet. A plain ERROR with a class-08/57P0x code (e.g. raised by a function)
        // stays `.query`; `isConnectionFailure` still reports it through the SQLSTATE.
        let severity = field(result, PG_DIAG_SEVERITY_NONLOCALIZED_CODE)
        let fatal = severity == "FATAL" || severity == "PANIC"
        return PostgresError(
            kind: broken || fatal ? .connection : .query, sqlState: sqlState, message: message,
            detail: detail)
    }

    /// The connection-level error text (PQerrorMessage), trimmed.
    static func clientMessage(_ connection: OpaquePointer, fallback: String) -> String {
        PQerrorMessage(connection).flatMap { trimmed(String(cString: $0)) } ?? fallback
    }

    private static func field(_ result: OpaquePointer, _ code: Int32) -> String? {
        PQresultErrorField(result, code).map { String(cString: $0) }
    }

    private static func trimmed(_ text: String) -> String? {
        let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return value.isEmpty ? nil : value
    }
}

// postgres_ext.h defines these as character literals, which Swift does not import.
private let PG_DIAG_SQLSTATE_CODE = Int32(UInt8(ascii: "C"))
private let PG_DIAG_MESSAGE_PRIMARY_CODE = Int32(UInt8(ascii: "M"))
private let PG_DIAG_MESSAGE_DETAIL_CODE = Int32(UInt8(ascii: "D"))
private let PG_DIAG_MESSAGE_HINT_CODE = Int32(UInt8(ascii: "H"))
private let PG_DIAG_SEVERITY_NONLOCALIZED_CODE = Int32(UInt8(ascii: "V"))
