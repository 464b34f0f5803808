import CLibPQ
import Foundation
import Logging

/// The single owner of one `PGconn*`. Created by `open`, finished in `deinit`; the pointer is
/// only lent out inside `withHandle`. Not Sendable: it lives in a `ConnectionState` that is
/// confined to the connection's dedicated thread.
final class LibPQConnection {
    private let handle: OpaquePointer
    /// Target of the notice-processor callback; must live as long as `handle`.
    private let notices: NoticeSink

    private init(handle: OpaquePointer, notices: NoticeSink) {
        self.handle = handle
        self.notices = notices
    }

    deinit { PQfinish(handle) }

    /// Connects (blocking). Throws `PostgresError(kind: .connection)`.
    static func open(_ configuration: PostgresConfiguration, logger: Logger) throws -> LibPQConnection {
        let parameters = configuration.connectionParameters
        let handle = withCStringArray(parameters.map(\.0)) { keywords in
            withCStringArray(parameters.map(\.1)) { values in
                PQconnectdbParams(keywords, values, 0)
            }
        }
        guard let handle else {
            throw PostgresError(kind: .connection, message: "libpq could not allocate a connection")
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let message = PostgresError.clientMessage(handle, fallback: "could not connect")
            PQfinish(handle)
            throw PostgresError(
                kind: .connection, message: message, detail: "connecting to \(configuration)")
        }
        let notices = NoticeSink(logger: logger)
        // Without a processor libpq prints NOTICEs ("schema already exists, skipping") and the
        // server's goodbye on admin shutdown straight to stderr.
        PQsetNoticeProcessor(
            handle,
            { context, message in
                guard let context, let message else { return }
                Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue().log(String(cString: message))
            }, Unmanaged.passUnretained(notices).toOpaque())
        return LibPQConnection(handle: handle, notices: notices)
    }

    func withHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try body(handle)
    }

    /// Cheap liveness check before lending the connection out: a server that restarted or
    /// terminated the backend has closed the socket (often after a FATAL 57P01 message), which
    /// libpq only notices when it reads. Reading what is pending here (one `poll` with zero
    /// timeout when nothing is) lets the caller reconnect instead of failing the next statement.
    var isHealthy: Bool {
        guard PQstatus(handle) == CONNECTION_OK, !notices.sawFatal else { return false }
        let socket = PQsocket(handle)
        guard socket >= 0 else { return false }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        var rounds = 0
        while rounds < 8, poll(&descriptor, 1, 0) > 0 {
            // Readable while idle means an unsolicited message or EOF.
            if PQconsumeInput(handle) == 0 { return false }
            _ = PQisBusy(handle)  // parses it; an ErrorResponse goes to the notice processor
            // A FATAL arrives before the server closes the socket: the session is over either way.
            if PQstatus(handle) != CONNECTION_OK || notices.sawFatal { return false }
            rounds += 1
        }
        return PQstatus(handle) == CONNECTION_OK
    }
}

/// Routes libpq notices to the logger. Called synchronously on the connection's thread.
final class NoticeSink {
    let logger: Logger
    /// The server announced it is ending the session (e.g. 57P01 on shutdown or
    /// pg_terminate_backend) while the connection was idle.
    private(set) var sawFatal = false

    init(logger: Logger) { self.logger = logger }

    func log(_ message: String) {
        let text = message.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("FATAL") || text.hasPrefix("PANIC") {
            sawFatal = true
            logger.notice("postgres: \(text)")
        } else if text.hasPrefix("WARNING") {
            logger.warning("postgres: \(text)")
        } else {
            logger.debug("postgres: \(text)")
        }
    }
}

/// A NULL-terminated `const char* const*` for the duration of `body`.
private func withCStringArray<R>(
    _ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R
) -> R {
    let pointers = strings.map { UnsafePointer<CChar>(strdup($0)) } + [nil]
    defer { for pointer in pointers { free(UnsafeMutablePointer(mutating: pointer)) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Lays `parameters` out as the C arrays that PQexecParams / PQsendQueryPrepared take, valid
/// only inside `body`. One allocation holds all the values' bytes; `.bytes` go in binary format.
func withCParameters<R>(
    _ parameters: [PostgresValue],
    _ body: (
        Int32, UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?
    ) throws -> R
) throws -> R {
    let count = parameters.count
    if count == 0 { return try body(0, nil, nil, nil) }
    guard count <= 65_535 else {
        throw PostgresError(kind: .query, message: "\(count) parameters; the protocol allows at most 65535")
    }
    var total = 0
    for parameter in parameters {
        switch parameter {
        case .null: break
        case .text(let text): total += text.utf8.count + 1
        case .bytes(let bytes): total += bytes.count
        }
    }
    let storage = UnsafeMutablePointer<CChar>.allocate(capacity: max(total, 1))
    let values = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: count)
    let lengths = UnsafeMutablePointer<Int32>.allocate(capacity: count)
    let formats = UnsafeMutablePointer<Int32>.allocate(capacity: count)
    defer {
        storage.deallocate()
        values.deallocate()
        lengths.deallocate()
        formats.deallocate()
    }
    var offset = 0
    for (index, parameter) in parameters.enumerated() {
        switch parameter {
        case .null:
            values[index] = nil
            lengths[index] = 0
            formats[index] = 0
        case .text(var text):
            let start = storage + offset
            let length = text.withUTF8 { utf8 -> Int in
                if let base = utf8.baseAddress {
                    UnsafeMutableRawPointer(start).copyMemory(from: base, byteCount: utf8.count)
                }
                return utf8.count
            }
            if memchr(start, 0, length) != nil {
                throw PostgresError(
                    kind: .query, sqlState: "22021",
                    message: "parameter $\(index + 1) contains a NUL character, which Postgres text cannot hold")
            }
            start[length] = 0
            values[index] = UnsafePointer(start)
            lengths[index] = Int32(clamping: length)
            formats[index] = 0
            offset += length + 1
        case .bytes(let bytes):
            guard bytes.count <= Int(Int32.max) else {
                throw PostgresError(kind: .query, message: "parameter $\(index + 1) is larger than 2 GiB")
            }
            let start = storage + offset
            bytes.withUnsafeBytes { raw in
                if let base = raw.baseAddress { UnsafeMutableRawPointer(start).copyMemory(from: base, byteCount: raw.count) }
            }
            values[index] = UnsafePointer(start)
            lengths[index] = Int32(bytes.count)
            formats[index] = 1
            offset += bytes.count
        }
    }
    return try body(Int32(count), values, lengths, formats)
}
