import CNats

/// The one error type of the NATS wrapper. Carries the cnats status and, for JetStream API
/// failures, the server's JetStream error code (e.g. 10058 "stream name already in use").
public struct NATSError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A cnats call failed; `status` holds the natsStatus.
        case client
        /// A request got no reply in time.
        case timeout
        /// Nobody subscribes to the request subject (server "503" status).
        case noResponders
        /// The JetStream API or a publish ack returned an error object.
        case jetStream
        /// A reply could not be decoded.
        case protocolViolation
        /// The connection or the object was closed.
        case closed
    }

    public var kind: Kind
    /// Raw `natsStatus` (0 = NATS_OK) when the failure came from cnats.
    public var status: Int32
    /// JetStream API `err_code`, when the server sent one.
    public var jetStreamErrorCode: Int?
    public var message: String

    public init(kind: Kind, status: Int32 = 0, jetStreamErrorCode: Int? = nil, message: String) {
        self.kind = kind
        self.status = status
        self.jetStreamErrorCode = jetStreamErrorCode
        self.message = message
    }

    init(status s: natsStatus, context: String) {
        let text = String(cString: natsStatus_GetText(s))
        var lastStatus = NATS_OK
        let last = nats_GetLastError(&lastStatus).map { String(cString: $0) } ?? ""
        let kind: Kind
        switch s {
        case NATS_TIMEOUT: kind = .timeout
        case NATS_NO_RESPONDERS: kind = .noResponders
        case NATS_CONNECTION_CLOSED: kind = .closed
        default: kind = .client
        }
        self.init(
            kind: kind, status: Int32(bitPattern: s.rawValue),
            message: "\(context): \(text)\(last.isEmpty || last == text ? "" : " (\(last))")")
    }

    public var description: String {
        var text = "NATSError(\(kind)"
        if status != 0 { text += ", status \(status)" }
        if let code = jetStreamErrorCode { text += ", err_code \(code)" }
        return text + "): \(message)"
    }
}

@inline(__always)
func check(_ status: natsStatus, _ context: @autoclosure () -> String) throws(NATSError) {
    if status != NATS_OK { throw NATSError(status: status, context: context()) }
}

/// Carries a cnats handle across the hop to a dedicated thread. The handle's owner (the
/// class that created it) guarantees it outlives the hop; cnats handles are thread-safe.
struct CHandle: @unchecked Sendable {
    let raw: OpaquePointer
    init(_ raw: OpaquePointer) { self.raw = raw }
}
