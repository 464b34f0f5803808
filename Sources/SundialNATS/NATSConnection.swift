import CNats
import Foundation
import Logging
import SundialThreads
import Synchronization

/// Connection settings. Defaults suit a service on the same host or LAN as its NATS server.
public struct NATSConnectionOptions: Sendable {
    /// Comma-separated server URLs, e.g. "nats://127.0.0.1:4222".
    public var url: String
    /// Shown in the server's connection list (`nats server report connections`).
    public var name: String
    /// Write each publish at once instead of letting cnats's flusher batch for ~1 ms.
    /// On for latency-sensitive request/reply connections; off for bulk publishing.
    public var sendAsap: Bool = false
    /// Wait between reconnect attempts. Reconnects are unlimited: a service never gives up.
    public var reconnectWait: Duration = .milliseconds(250)
    /// Bytes cnats buffers while disconnected before publishes fail (then they are retried).
    public var reconnectBufferBytes: Int = 64 << 20
    /// Async JetStream publishes in flight before `publish` stalls (backpressure).
    public var maxPendingJetStreamPublishes: Int = 8192
    /// How long one JetStream publish waits for its ack before it is retried.
    public var jetStreamAckTimeout: Duration = .seconds(5)
    /// How long a JetStream publish keeps retrying retryable failures (timeouts, no
    /// responders while a stream leader is elected, disconnects) before it reports failure.
    public var jetStreamRetryBudget: Duration = .seconds(60)
    /// Optional credentials file (JWT + nkey) or user/password.
    public var user: String? = nil
    public var password: String? = nil
    /// First token(s) of this connection's reply inboxes instead of `_INBOX`, e.g.
    /// `_INBOX_acme` for tenant acme, whose NATS permissions allow subscribing only to
    /// `_INBOX_acme.>` (so no tenant can read another's replies). Used for cnats's own
    /// requests (JetStream API) and for `request`. No wildcards.
    public var inboxPrefix: String? = nil

    public init(url: String, name: String) {
        self.url = url
        self.name = name
    }

    /// The servers `url` names: one, or several comma-separated (a cluster's nodes).
    public var servers: [String] {
        url.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Throws a clear error instead of letting cnats fail later.
    public func validate() throws(NATSError) {
        guard !servers.isEmpty, servers.allSatisfy({ $0.hasPrefix("nats://") || $0.hasPrefix("tls://") }) else {
            throw NATSError(kind: .client, message: "NATS URL must start with nats:// or tls:// (several: comma-separated): \(url)")
        }
        guard maxPendingJetStreamPublishes > 0, jetStreamAckTimeout > .zero else {
            throw NATSError(kind: .client, message: "invalid JetStream publish limits")
        }
        if let inboxPrefix {
            let tokens = inboxPrefix.split(separator: ".", omittingEmptySubsequences: false)
            guard !inboxPrefix.isEmpty, tokens.allSatisfy({ !$0.isEmpty && !$0.contains(where: { "*> \t\r\n".contains($0) }) })
            else {
                throw NATSError(kind: .client, message: "invalid inbox prefix (a subject without wildcards): \(inboxPrefix)")
            }
        }
    }
}

/// A cnats connection with one owner. Blocking cnats calls (connect, publish into a full
/// buffer, JetStream publish when stalled) run on the connection's dedicated publisher
/// thread; requests are asynchronous (one inbox subscription, replies routed by token).
public final class NATSConnection: @unchecked Sendable {
    // @unchecked: the C handles are thread-safe inside cnats and are only destroyed in
    // deinit, after `close()`; the Swift state is in Mutex/Atomic.
    let handle: OpaquePointer
    private let optionsHandle: OpaquePointer
    private let events: Unmanaged<ConnectionEvents>
    /// A strong reference besides cnats's: readable for as long as this object lives, also
    /// after the closed callback released cnats's.
    private let eventsBox: ConnectionEvents
    let publisher: DedicatedThread
    let requests: RequestMux
    private let inbox: NATSSubscription
    private let reaper: Task<Void, Never>
    private let closed = Atomic<Bool>(false)
    public let options: NATSConnectionOptions
    public let logger: Logger
    public let jetStream: JetStreamContext

    public static func connect(_ options: NATSConnectionOptions, logger: Logger) async throws
        -> NATSConnection
    {
        try options.validate()
        let thread = DedicatedThread(name: "nats-\(options.name)")
        let events = Unmanaged.passRetained(ConnectionEvents(logger: logger))
        do {
            let handles = try await thread.run { () throws -> (CHandle, CHandle) in
                let (connection, options) = try NATSConnection.openConnection(options, events: events)
                return (CHandle(connection), CHandle(options))
            }
            return try await NATSConnection(
                handle: handles.0.raw, optionsHandle: handles.1.raw, events: events, publisher: thread,
                options: options, logger: logger)
        } catch {
            // `events` is deliberately not released: whether cnats still delivers a callback
            // for a connection that failed part-way is not specified, and a leaked box of a
            // few bytes beats a use-after-free.
            thread.shutdown()
            throw error
        }
    }

    private static func openConnection(
        _ options: NATSConnectionOptions, events: Unmanaged<ConnectionEvents>
    ) throws -> (OpaquePointer, OpaquePointer) {
        var opts: OpaquePointer? = nil
        try check(natsOptions_Create(&opts), "natsOptions_Create")
        guard let opts else { throw NATSError(kind: .client, message: "natsOptions_Create nil") }
        do {
            // A comma-separated list (a cluster's nodes) is the server list cnats tries and
            // fails over between; one URL is just that server.
            let servers = options.servers
            if servers.count > 1 {
                var pointers = servers.map { strdup($0) }
                defer { for pointer in pointers { free(pointer) } }
                try pointers.withUnsafeMutableBufferPointer { buffer in
                    try buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) {
                        try check(natsOptions_SetServers(opts, $0, Int32(buffer.count)), "SetServers")
                    }
                }
            } else {
                try check(natsOptions_SetURL(opts, options.url), "SetURL")
            }
            try check(natsOptions_SetName(opts, options.name), "SetName")
            try check(natsOptions_SetAllowReconnect(opts, true), "SetAllowReconnect")
            try check(natsOptions_SetMaxReconnect(opts, -1), "SetMaxReconnect")
            try check(
                natsOptions_SetReconnectWait(opts, options.reconnectWait.milliseconds),
                "SetReconnectWait")
            try check(
                natsOptions_SetReconnectBufSize(opts, Int32(options.reconnectBufferBytes)),
                "SetReconnectBufSize")
            try check(natsOptions_SetSendAsap(opts, options.sendAsap), "SetSendAsap")
            try check(natsOptions_SetTimeout(opts, 5000), "SetTimeout")
            if let user = options.user {
                try check(natsOptions_SetUserInfo(opts, user, options.password ?? ""), "SetUserInfo")
            }
            if let inboxPrefix = options.inboxPrefix {
                try check(natsOptions_SetCustomInboxPrefix(opts, inboxPrefix), "SetCustomInboxPrefix")
            }
            let closure = events.toOpaque()
            try check(natsOptions_SetErrorHandler(opts, connectionError, closure), "SetErrorHandler")
            try check(
                natsOptions_SetDisconnectedCB(opts, connectionDisconnected, closure),
                "SetDisconnectedCB")
            // The closed callback is cnats's last for a connection: it releases `events`.
            try check(natsOptions_SetClosedCB(opts, connectionClosed, closure), "SetClosedCB")
            try check(
                natsOptions_SetReconnectedCB(opts, connectionReconnected, closure),
                "SetReconnectedCB")
            var nc: OpaquePointer? = nil
            try check(natsConnection_Connect(&nc, opts), "connect to \(options.url)")
            guard let nc else { throw NATSError(kind: .client, message: "connect returned nil") }
            return (nc, opts)
        } catch {
            natsOptions_Destroy(opts)
            throw error
        }
    }

    private init(
        handle: OpaquePointer, optionsHandle: OpaquePointer, events: Unmanaged<ConnectionEvents>,
        publisher: DedicatedThread, options: NATSConnectionOptions, logger: Logger
    ) async throws {
        self.handle = handle
        self.optionsHandle = optionsHandle
        self.events = events
        self.eventsBox = events.takeUnretainedValue()
        self.publisher = publisher
        self.options = options
        self.logger = logger
        var inboxName: UnsafeMutablePointer<natsInbox>? = nil
        natsInbox_Create(&inboxName)
        var prefix: String
        if let inboxName {
            prefix = String(cString: inboxName) + "."
            natsInbox_Destroy(inboxName)
        } else {
            prefix = "_INBOX.\(UInt64.random(in: 1...UInt64.max))."
        }
        if let custom = options.inboxPrefix, prefix.hasPrefix("_INBOX.") {
            // natsInbox_Create ignores the option: keep its unique token, swap the prefix.
            prefix = custom + prefix.dropFirst("_INBOX".count)
        }
        let requests = RequestMux(prefix: prefix)
        self.requests = requests
        events.takeUnretainedValue().attach(requests)
        let connection = CHandle(handle)
        let inboxSubject = prefix + "*"
        inbox = try await publisher.run {
            try NATSSubscription.subscribe(
                connection: connection.raw, subject: inboxSubject, queue: nil,
                sink: .requestReplies(requests), thread: publisher)
        }
        reaper = Task.detached {
            // Fails requests whose deadline passed; 20 ms granularity is ample for timeouts
            // measured in hundreds of milliseconds or more.
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(20))
                requests.expire(now: .now)
            }
        }
        jetStream = try JetStreamContext(connection: handle, options: options, publisher: publisher)
    }

    deinit {
        reaper.cancel()
        natsConnection_Destroy(handle)
        natsOptions_Destroy(optionsHandle)
        // `events` is released by the closed callback, which cnats delivers asynchronously
        // after the disconnected one; releasing it here crashed in a late disconnected callback.
        publisher.shutdown()
    }

    public var isClosed: Bool { closed.load(ordering: .acquiring) }
    /// Connected to a server now (false while reconnecting, or closed).
    public var isConnected: Bool { !isClosed && eventsBox.connected.load(ordering: .acquiring) }
    /// Reconnects since the connection was opened.
    public var reconnectCount: Int { eventsBox.reconnects.load(ordering: .relaxed) }

    /// Flushes, then closes. In-flight requests fail with `.closed`.
    public func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        events.takeUnretainedValue().closing.store(true, ordering: .releasing)
        jetStream.beginClose()  // a stalled batch on the publisher thread gives way at once
        reaper.cancel()
        let handle = CHandle(self.handle)
        await publisher.run {
            _ = natsConnection_FlushTimeout(handle.raw, 2000)
            natsConnection_Close(handle.raw)
        }
        requests.failAll(NATSError(kind: .closed, message: "connection closed"))
        jetStream.shutdown()
    }

    /// Publishes a core NATS message (no JetStream ack).
    public func publish(_ message: NATSOutgoingMessage) async throws {
        let handle = CHandle(self.handle)
        try await publisher.run { () throws -> Void in
            try message.withNATSMessage { msg throws(NATSError) in
                try check(natsConnection_PublishMsg(handle.raw, msg), "publish \(message.subject)")
            }
        }
    }

    /// Publishes several core messages with one hop to the publisher thread.
    public func publish(batch messages: [NATSOutgoingMessage]) async throws {
        guard !messages.isEmpty else { return }
        let handle = CHandle(self.handle)
        try await publisher.run { () throws -> Void in
            for message in messages {
                try message.withNATSMessage { msg throws(NATSError) in
                    try check(natsConnection_PublishMsg(handle.raw, msg), "publish \(message.subject)")
                }
            }
        }
    }

    /// Waits until the server has processed everything sent so far.
    public func flush(timeout: Duration = .seconds(5)) async throws {
        let handle = CHandle(self.handle)
        try await publisher.run { () throws -> Void in
            try check(natsConnection_FlushTimeout(handle.raw, timeout.milliseconds), "flush")
        }
    }

    /// Sends a request and awaits the first reply. Non-blocking: replies arrive on the
    /// connection's inbox subscription and are routed by token.
    public func request(_ message: NATSOutgoingMessage, timeout: Duration) async throws
        -> NATSMessage
    {
        if isClosed { throw NATSError(kind: .closed, message: "connection closed") }
        let (token, subject) = requests.nextReplySubject()
        let outgoing = {
            var outgoing = message
            outgoing.replySubject = subject
            return outgoing
        }()
        let handle = CHandle(self.handle)
        let requests = self.requests
        let publisher = self.publisher
        let reply = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<NATSMessage, any Error>) in
            requests.register(token, continuation, deadline: .now + timeout, subject: message.subject)
            let accepted = publisher.submit {
                do {
                    try outgoing.withNATSMessage { msg throws(NATSError) in
                        try check(natsConnection_PublishMsg(handle.raw, msg), "request \(message.subject)")
                    }
                } catch {
                    requests.fail(token, error)
                }
            }
            if !accepted { requests.fail(token, NATSError(kind: .closed, message: "connection closed")) }
        }
        if reply.isNoResponders {
            throw NATSError(kind: .noResponders, message: "no responders on \(message.subject)")
        }
        return reply
    }

    public func request(
        subject: String, payload: [UInt8], headers: NATSHeaders = NATSHeaders(),
        timeout: Duration
    ) async throws -> NATSMessage {
        try await request(
            NATSOutgoingMessage(subject: subject, headers: headers, payload: payload),
            timeout: timeout)
    }

    /// Subscribes; messages are copied out of cnats in its callback and delivered through
    /// the returned async sequence. `queue` makes it a queue-group member.
    /// `bufferLimit` bounds the hand-off buffer; beyond it the newest messages are dropped,
    /// which is what NATS itself does to a slow consumer (requests then time out and retry).
    public func subscribe(subject: String, queue: String? = nil, bufferLimit: Int = 65_536)
        async throws -> NATSSubscription
    {
        if isClosed { throw NATSError(kind: .closed, message: "connection closed") }
        let handle = CHandle(self.handle)
        let thread = publisher
        return try await publisher.run {
            try NATSSubscription.subscribe(
                connection: handle.raw, subject: subject, queue: queue,
                sink: .stream(bufferLimit: bufferLimit), thread: thread)
        }
    }

    /// Recent permission violations the server reported on this connection (newest last,
    /// at most 100), e.g. `Permissions Violation for Subscription to "x.>"`. A violation on
    /// a publish also fails the pending `request` to that subject at once (see
    /// `NATSError.isPermissionViolation`) instead of letting it time out. The server
    /// reports a violation before it answers a later PING, so after `flush()` the list
    /// holds every violation caused by what was sent before it.
    public var permissionViolations: [String] {
        events.takeUnretainedValue().violations.withLock { $0 }
    }

    /// The largest message the connected server accepts (its `max_payload`), in bytes.
    public var serverMaxPayload: Int {
        Int(natsConnection_GetMaxPayload(handle))
    }

    /// The URL of the server currently connected to.
    public var connectedURL: String {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = natsConnection_GetConnectedUrl(handle, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Logs connection state changes; retained for the connection's life.
final class ConnectionEvents: Sendable {
    let logger: Logger
    /// Set before a deliberate close, so its disconnect is not reported as a failure.
    let closing = Atomic<Bool>(false)
    /// Connected now, and reconnects since start (for readiness and metrics).
    let connected = Atomic<Bool>(true)
    let reconnects = Atomic<Int>(0)
    /// Recent permission violations (see `NATSConnection.permissionViolations`).
    let violations = Mutex<[String]>([])
    private let requests = Mutex<RequestMux?>(nil)
    init(logger: Logger) { self.logger = logger }

    func attach(_ requests: RequestMux) { self.requests.withLock { $0 = requests } }

    /// From cnats's callback thread: record a violation and fail the requests it hit.
    func permissionViolation(_ text: String) {
        violations.withLock {
            $0.append(text)
            if $0.count > 100 { $0.removeFirst($0.count - 100) }
        }
        logger.warning("nats: \(text)")
        // `Permissions Violation for Publish to "subject"` (also "… with Reply of "r" to "s"").
        guard text.contains("Publish"), let subject = Self.lastQuoted(text) else { return }
        requests.withLock { $0 }?.fail(
            subject: subject,
            NATSError(kind: .client, status: Int32(bitPattern: NATS_NOT_PERMITTED.rawValue), message: text))
    }

    static func lastQuoted(_ text: String) -> String? {
        guard let close = text.lastIndex(of: "\""),
            let open = text[..<close].lastIndex(of: "\"")
        else { return nil }
        return String(text[text.index(after: open)..<close])
    }
}

private let connectionError: natsErrHandler = { nc, subscription, status, closure in
    guard let closure else { return }
    let events = Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue()
    if status == NATS_NOT_PERMITTED {
        var text: UnsafePointer<CChar>? = nil
        _ = natsConnection_GetLastError(nc, &text)
        events.permissionViolation(text.map { String(cString: $0) } ?? "permissions violation")
    } else if status == NATS_SLOW_CONSUMER {
        events.logger.warning("nats: slow consumer, messages dropped")
    } else {
        events.logger.warning("nats: asynchronous error \(String(cString: natsStatus_GetText(status)))")
    }
}

private let connectionDisconnected: natsConnectionHandler = { _, closure in
    guard let closure else { return }
    let events = Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue()
    events.connected.store(false, ordering: .releasing)
    if !events.closing.load(ordering: .acquiring) {
        events.logger.warning("nats disconnected; reconnecting")
    }
}

private let connectionClosed: natsConnectionHandler = { _, closure in
    guard let closure else { return }
    Unmanaged<ConnectionEvents>.fromOpaque(closure).release()
}

private let connectionReconnected: natsConnectionHandler = { _, closure in
    guard let closure else { return }
    let events = Unmanaged<ConnectionEvents>.fromOpaque(closure).takeUnretainedValue()
    events.connected.store(true, ordering: .releasing)
    events.reconnects.add(1, ordering: .relaxed)
    events.logger.info("nats reconnected")
}

/// Routes replies on the connection's inbox to waiting requests.
final class RequestMux: Sendable {
    struct Pending {
        var continuation: CheckedContinuation<NATSMessage, any Error>
        var deadline: ContinuousClock.Instant
        var subject: String
    }

    struct State {
        var nextToken: UInt64 = 1
        var pending: [UInt64: Pending] = [:]
    }

    let prefix: String
    private let state = Mutex(State())

    init(prefix: String) { self.prefix = prefix }

    func nextReplySubject() -> (UInt64, String) {
        let token = state.withLock { state in
            defer { state.nextToken &+= 1 }
            return state.nextToken
        }
        return (token, prefix + String(token))
    }

    func register(
        _ token: UInt64, _ continuation: CheckedContinuation<NATSMessage, any Error>,
        deadline: ContinuousClock.Instant, subject: String
    ) {
        state.withLock {
            $0.pending[token] = Pending(continuation: continuation, deadline: deadline, subject: subject)
        }
    }

    /// Called from the cnats delivery thread: only a lookup and a resume.
    func deliver(_ message: NATSMessage) {
        guard message.subject.hasPrefix(prefix),
            let token = UInt64(message.subject.dropFirst(prefix.count))
        else { return }
        let pending = state.withLock { $0.pending.removeValue(forKey: token) }
        pending?.continuation.resume(returning: message)
    }

    func fail(_ token: UInt64, _ error: any Error) {
        let pending = state.withLock { $0.pending.removeValue(forKey: token) }
        pending?.continuation.resume(throwing: error)
    }

    /// Fails every pending request sent to `subject` (the server refused the publish).
    func fail(subject: String, _ error: any Error) {
        let refused: [Pending] = state.withLock { state in
            let tokens = state.pending.filter { $0.value.subject == subject }.map(\.key)
            return tokens.compactMap { state.pending.removeValue(forKey: $0) }
        }
        for pending in refused { pending.continuation.resume(throwing: error) }
    }

    func expire(now: ContinuousClock.Instant) {
        let expired: [Pending] = state.withLock { state in
            var expired: [Pending] = []
            for (token, pending) in state.pending where pending.deadline <= now {
                expired.append(pending)
                state.pending[token] = nil
            }
            return expired
        }
        for pending in expired {
            pending.continuation.resume(
                throwing: NATSError(kind: .timeout, message: "request to \(pending.subject) timed out"))
        }
    }

    func failAll(_ error: NATSError) {
        let all = state.withLock { state in
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        for pending in all { pending.continuation.resume(throwing: error) }
    }
}

extension NATSError {
    /// The server refused a publish or subscribe for lack of permission.
    public var isPermissionViolation: Bool {
        kind == .client && status == Int32(bitPattern: NATS_NOT_PERMITTED.rawValue)
    }
}

extension Duration {
    /// Whole milliseconds, for cnats's `int64_t` millisecond parameters.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
