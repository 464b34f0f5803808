import CNats

/// Message headers in order, allowing repeated keys like NATS does.
public struct NATSHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(dictionaryLiteral elements: (String, String)...) {
        fields = elements.map { (name: $0.0, value: $0.1) }
    }

    /// The first value for `name` (exact match first, then case-insensitive).
    public subscript(name: String) -> String? {
        get {
            if let hit = fields.first(where: { $0.name == name }) { return hit.value }
            let lower = name.lowercased()
            return fields.first(where: { $0.name.lowercased() == lower })?.value
        }
        set {
            fields.removeAll { $0.name == name }
            if let newValue { fields.append((name: name, value: newValue)) }
        }
    }

    public mutating func add(_ name: String, _ value: String) {
        fields.append((name: name, value: value))
    }

    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    public static func == (lhs: NATSHeaders, rhs: NATSHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for field in fields {
            hasher.combine(field.name)
            hasher.combine(field.value)
        }
    }
}

/// Header values built from text we do not control (error messages that echo a request,
/// subjects): control characters would break the header block, and length is bounded.
public enum HeaderValue {
    public static let maximumBytes = 1024

    public static func sanitized(_ text: String, maximumBytes: Int = HeaderValue.maximumBytes) -> String {
        var out = String.UnicodeScalarView()
        var bytes = 0
        for scalar in text.unicodeScalars {
            let printable = scalar.value >= 0x20 && scalar.value != 0x7F
            let replacement: Unicode.Scalar = printable ? scalar : " "
            let size = String(replacement).utf8.count
            if bytes + size > maximumBytes { break }
            out.append(replacement)
            bytes += size
        }
        return String(out)
    }
}

/// A received message, copied out of cnats so no C pointer outlives the callback.
public struct NATSMessage: Sendable {
    public var subject: String
    public var replySubject: String?
    public var headers: NATSHeaders
    public var payload: [UInt8]
    /// True for the server's "503 no responders" status message.
    public var isNoResponders: Bool

    public init(
        subject: String, replySubject: String? = nil, headers: NATSHeaders = NATSHeaders(),
        payload: [UInt8] = [], isNoResponders: Bool = false
    ) {
        self.subject = subject
        self.replySubject = replySubject
        self.headers = headers
        self.payload = payload
        self.isNoResponders = isNoResponders
    }

    /// Copies subject, reply, headers and data. Does not take ownership of `msg`.
    init(copying msg: OpaquePointer) {
        subject = String(cString: natsMsg_GetSubject(msg))
        replySubject = natsMsg_GetReply(msg).map { String(cString: $0) }
        let length = Int(natsMsg_GetDataLength(msg))
        if length > 0, let data = natsMsg_GetData(msg) {
            payload = data.withMemoryRebound(to: UInt8.self, capacity: length) {
                Array(UnsafeBufferPointer(start: $0, count: length))
            }
        } else {
            payload = []
        }
        isNoResponders = natsMsg_IsNoResponders(msg)
        headers = NATSHeaders()
        var keys: UnsafeMutablePointer<UnsafePointer<CChar>?>? = nil
        var keyCount: Int32 = 0
        guard natsMsgHeader_Keys(msg, &keys, &keyCount) == NATS_OK, let keys else { return }
        defer { free(keys) }
        for index in 0..<Int(keyCount) {
            guard let key = keys[index] else { continue }
            var values: UnsafeMutablePointer<UnsafePointer<CChar>?>? = nil
            var valueCount: Int32 = 0
            guard natsMsgHeader_Values(msg, key, &values, &valueCount) == NATS_OK, let values
            else { continue }
            let name = String(cString: key)
            for valueIndex in 0..<Int(valueCount) {
                if let value = values[valueIndex] { headers.add(name, String(cString: value)) }
            }
            free(values)
        }
    }
}

/// A message to send.
public struct NATSOutgoingMessage: Sendable {
    public var subject: String
    public var replySubject: String?
    public var headers: NATSHeaders
    public var payload: [UInt8]

    public init(
        subject: String, replySubject: String? = nil, headers: NATSHeaders = NATSHeaders(),
        payload: [UInt8] = []
    ) {
        self.subject = subject
        self.replySubject = replySubject
        self.headers = headers
        self.payload = payload
    }

    /// Builds a cnats message inside the scope and destroys it afterwards unless `body`
    /// handed ownership to cnats (by nulling the pointer, as `js_PublishMsgAsync` does).
    func withNATSMessage<T>(
        _ body: (inout OpaquePointer?) throws(NATSError) -> T
    ) throws(NATSError) -> T {
        var msg: OpaquePointer? = try makeNATSMessage()
        defer { if let msg { natsMsg_Destroy(msg) } }
        return try body(&msg)
    }

    /// Returns an owned cnats message; the caller must destroy it or hand it to cnats.
    func makeNATSMessage() throws(NATSError) -> OpaquePointer {
        var msg: OpaquePointer? = nil
        let status = payload.withUnsafeBufferPointer { buffer in
            natsMsg_Create(
                &msg, subject, replySubject,
                buffer.baseAddress.map { UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self) },
                Int32(buffer.count))
        }
        try check(status, "natsMsg_Create(\(subject))")
        guard let msg else { throw NATSError(kind: .client, message: "natsMsg_Create returned nil") }
        for field in headers.fields {
            let added = natsMsgHeader_Add(msg, field.name, field.value)
            if added != NATS_OK {
                natsMsg_Destroy(msg)
                throw NATSError(status: added, context: "header \(field.name)")
            }
        }
        return msg
    }
}
