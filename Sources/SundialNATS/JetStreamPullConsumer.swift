import CNats
import Foundation
import SundialThreads

/// Delivery facts parsed from a JetStream message's ack subject.
public struct JetStreamMessageMetadata: Sendable, Hashable {
    public var stream: String
    public var consumer: String
    /// 1 on first delivery, more on redelivery.
    public var deliveries: UInt64
    public var streamSequence: UInt64
    public var consumerSequence: UInt64
    /// When the message was stored, nanoseconds since 1970.
    public var timestampNanos: Int64
    public var pending: UInt64

    /// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` and the
    /// newer form with domain and account hash tokens in front.
    public init?(ackSubject: String) {
        let tokens = ackSubject.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        let base = tokens.count == 9 ? 2 : 4
        guard tokens.count >= base + 7,
            let delivered = UInt64(tokens[base + 2]), let sseq = UInt64(tokens[base + 3]),
            let cseq = UInt64(tokens[base + 4]), let ts = Int64(tokens[base + 5]),
            let pending = UInt64(tokens[base + 6])
        else { return nil }
        stream = String(tokens[base])
        consumer = String(tokens[base + 1])
        deliveries = delivered
        streamSequence = sseq
        consumerSequence = cseq
        timestampNanos = ts
        self.pending = pending
    }
}

/// A message fetched from a pull consumer, copied out of cnats. Acknowledge it through the
/// consumer it came from.
public struct JetStreamMessage: Sendable {
    public var subject: String
    public var headers: NATSHeaders
    public var payload: [UInt8]
    public var ackSubject: String
    public var metadata: JetStreamMessageMetadata?
}

/// A durable pull consumer. Fetches are our own pull requests
/// (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`) answered on a core synchronous subscription
/// to this consumer's inbox, not cnats's `natsSubscription_Fetch`: in cnats 3.4.1 that function
/// writes past its result array when more than half a batch is left over from an earlier fetch
/// (nats.c PR #749, fixed in 3.9) — deliveries that arrive after a fetch returned, which a busy
/// dispatcher sees — and it lets an earlier request's "408" end a later fetch. Here every
/// request has its own reply subject (`<inbox>.<n>`), so a status is matched to its request and
/// stale ones are ignored, and deliveries that arrive late are simply the next fetch's first.
/// Fetches run on the consumer's own dedicated thread (they long-poll); acks are core publishes.
public final class JetStreamPullConsumer: @unchecked Sendable {
    // @unchecked: `puller` (and the cnats subscription it owns) is used only on `thread`.
    private let puller: Puller
    private let thread: DedicatedThread
    public let connection: NATSConnection
    public let stream: String
    public let durable: String

    /// Binds to an existing durable consumer (create it with `ensureConsumer` first); throws if
    /// it does not exist or filters another subject.
    public static func bind(
        connection: NATSConnection, stream: String, durable: String, filterSubject: String
    ) async throws -> JetStreamPullConsumer {
        let info = try await connection.consumerInfo(stream: stream, durable: durable)
        if let config = info["config"] as? [String: Any] {
            let filters = (config["filter_subjects"] as? [String] ?? []) + [config["filter_subject"] as? String].compactMap { $0 }
            if !filters.isEmpty, !filters.contains(filterSubject) {
                throw NATSError(
                    kind: .client, message: "consumer \(stream)/\(durable) filters \(filters), not \(filterSubject)")
            }
        }
        let inbox = connection.requests.prefix + "pull\(UInt64.random(in: 1...UInt64.max))"
        let nc = CHandle(connection.handle)
        // Subscribed on the connection's thread (the SUB goes out under cnats's connection lock,
        // ahead of any pull request this consumer publishes).
        let sub = try await connection.publisher.run { () throws -> CHandle in
            var sub: OpaquePointer? = nil
            let status = natsConnection_SubscribeSync(&sub, nc.raw, inbox + ".*")
            guard status == NATS_OK, let sub else {
                throw NATSError(status: status, context: "pull inbox for \(stream)/\(durable)")
            }
            return CHandle(sub)
        }
        return JetStreamPullConsumer(
            puller: Puller(
                subscription: sub.raw, connection: connection, inbox: inbox,
                requestSubject: "$JS.API.CONSUMER.MSG.NEXT.\(stream).\(durable)", name: "\(stream)/\(durable)"),
            thread: DedicatedThread(name: "fetch-\(durable)"), connection: connection, stream: stream, durable: durable)
    }

    private init(
        puller: Puller, thread: DedicatedThread, connection: NATSConnection, stream: String, durable: String
    ) {
        self.puller = puller
        self.thread = thread
        self.connection = connection
        self.stream = stream
        self.durable = durable
    }

    deinit {
        thread.shutdown()
    }

    /// Fetches up to `batch` messages: what is available now, or — when nothing is — the first
    /// ones to arrive within `maxWait` (then `[]`).
    public func fetch(batch: Int, maxWait: Duration) async throws -> [JetStreamMessage] {
        let puller = self.puller
        return try await thread.run { () throws -> [JetStreamMessage] in
            try puller.fetch(batch: max(1, batch), until: ContinuousClock.now + maxWait)
        }
    }

    /// Batches as an async sequence: each `next()` fetches; empty polls are skipped. Ends when
    /// the surrounding task is cancelled. Fetch errors are thrown to the iterating task.
    public func batches(size: Int, maxWait: Duration = .seconds(1)) -> Batches {
        Batches(consumer: self, size: size, maxWait: maxWait)
    }

    /// Single messages as an async sequence (fetching `prefetch` at a time).
    public func messages(prefetch: Int = 256, maxWait: Duration = .seconds(1)) -> Messages {
        Messages(consumer: self, prefetch: prefetch, maxWait: maxWait)
    }

    // MARK: acknowledgements (core publishes to the ack subject, as cnats's natsMsg_Ack does)

    public func ack(_ messages: [JetStreamMessage]) async throws {
        try await reply(messages, body: Array("+ACK".utf8))
    }

    public func ack(_ message: JetStreamMessage) async throws { try await ack([message]) }

    /// Asks for redelivery, after `delay` if given.
    public func nak(_ messages: [JetStreamMessage], delay: Duration? = nil) async throws {
        let body = delay.map { "-NAK {\"delay\": \($0.nanoseconds)}" } ?? "-NAK"
        try await reply(messages, body: Array(body.utf8))
    }

    /// Asks for redelivery of each message after its own delay (one protocol message each).
    public func nak(_ deferrals: [(message: JetStreamMessage, delay: Duration)]) async throws {
        try await connection.publish(
            batch: deferrals.filter { !$0.message.ackSubject.isEmpty }.map {
                NATSOutgoingMessage(
                    subject: $0.message.ackSubject, payload: Array("-NAK {\"delay\": \($0.delay.nanoseconds)}".utf8))
            })
    }

    public func nak(_ message: JetStreamMessage, delay: Duration? = nil) async throws {
        try await nak([message], delay: delay)
    }

    /// Never redeliver.
    public func term(_ message: JetStreamMessage) async throws {
        try await reply([message], body: Array("+TERM".utf8))
    }

    /// Resets the ack timer: still working on it.
    public func inProgress(_ message: JetStreamMessage) async throws {
        try await reply([message], body: Array("+WPI".utf8))
    }

    private func reply(_ messages: [JetStreamMessage], body: [UInt8]) async throws {
        try await connection.publish(
            batch: messages.filter { !$0.ackSubject.isEmpty }.map {
                NATSOutgoingMessage(subject: $0.ackSubject, payload: body)
            })
    }

    public struct Batches: AsyncSequence, Sendable {
        public typealias Element = [JetStreamMessage]
        let consumer: JetStreamPullConsumer
        let size: Int
        let maxWait: Duration

        public struct AsyncIterator: AsyncIteratorProtocol {
            let consumer: JetStreamPullConsumer
            let size: Int
            let maxWait: Duration

            public mutating func next() async throws -> [JetStreamMessage]? {
                while !Task.isCancelled {
                    let batch = try await consumer.fetch(batch: size, maxWait: maxWait)
                    if !batch.isEmpty { return batch }
                }
                return nil
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(consumer: consumer, size: size, maxWait: maxWait)
        }
    }

    public struct Messages: AsyncSequence, Sendable {
        public typealias Element = JetStreamMessage
        let consumer: JetStreamPullConsumer
        let prefetch: Int
        let maxWait: Duration

        public struct AsyncIterator: AsyncIteratorProtocol {
            var batches: Batches.AsyncIterator
            var buffer: [JetStreamMessage] = []
            var position = 0

            public mutating func next() async throws -> JetStreamMessage? {
                if position == buffer.count {
                    guard let batch = try await batches.next() else { return nil }
                    buffer = batch
                    position = 0
                }
                defer { position += 1 }
                return buffer[position]
            }
        }

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(batches: Batches.AsyncIterator(consumer: consumer, size: prefetch, maxWait: maxWait))
        }
    }
}

/// The fetch protocol on one inbox; used only on its consumer's thread.
final class Puller: @unchecked Sendable {
    let subscription: OpaquePointer
    /// Held so the connection outlives the subscription (destroyed with this object).
    private let owner: NATSConnection
    private var connection: OpaquePointer { owner.handle }
    private let inbox: String
    private let requestSubject: String
    private let name: String
    private var nextRequest: UInt64 = 0
    /// The long-poll request still open at the server: its reply subject, how many it may
    /// still deliver, when the server expires it.
    private var open: (reply: String, remaining: Int, expires: ContinuousClock.Instant)?

    init(subscription: OpaquePointer, connection: NATSConnection, inbox: String, requestSubject: String, name: String) {
        self.subscription = subscription
        self.owner = connection
        self.inbox = inbox
        self.requestSubject = requestSubject
        self.name = name
    }

    /// The subscription goes with the last reference — a fetch in flight holds one.
    deinit {
        releaseSubscription(subscription, on: owner.publisher)
    }

    private enum Received {
        case message(JetStreamMessage)
        /// A status (404, 408, 409, 100…) for the request answered on `reply`.
        case status(reply: String, code: Int, description: String)
    }

    func fetch(batch: Int, until deadline: ContinuousClock.Instant) throws(NATSError) -> [JetStreamMessage] {
        var out: [JetStreamMessage] = []
        // Deliveries already here (an open request's, or late ones) come first.
        try drain(into: &out, limit: batch)
        if out.count >= batch { return out }
        if let open, ContinuousClock.now >= open.expires { self.open = nil }
        if open == nil {
            // What is available now: the server answers a no-wait request with up to `n`
            // messages, then "408" if it could not fill it, or "404" if it had none.
            let reply = try send(batch: batch - out.count, expires: nil)
            available: while out.count < batch {
                guard let received = try next(until: deadline) else { return out }
                switch received {
                case .message(let message): out.append(message)
                case .status(let from, let code, let description):
                    guard from == reply, code != 100 else { continue }  // stale, or a heartbeat
                    if !out.isEmpty || code == 408 { return out }
                    if code == 404 { break available }
                    throw failure(code, description)
                }
            }
            if !out.isEmpty { return out }
        }
        // Nothing available: long-poll, one request open at a time, renewed when it expires
        // before our deadline. It may outlive this fetch (its deliveries are then the next
        // fetch's first).
        while out.isEmpty {
            if let open, ContinuousClock.now >= open.expires + .milliseconds(100) {
                self.open = nil  // its "408" was lost (a reconnect): the server has let it go
            }
            if open == nil {
                let wait = deadline - ContinuousClock.now
                guard wait >= .milliseconds(20) else { return out }
                // Expire on the server a little before we give up, so its "408" is usually in.
                let expires = wait - .milliseconds(10)
                let reply = try send(batch: batch, expires: expires)
                open = (reply, batch, ContinuousClock.now + expires)
            }
            let wakeUp = min(deadline, (open?.expires ?? deadline) + .milliseconds(100))
            guard let received = try next(until: wakeUp) else {
                if ContinuousClock.now >= deadline { return out }
                continue
            }
            switch received {
            case .message(let message):
                out.append(message)
                countDelivery()
            case .status(let from, let code, let description):
                guard from == open?.reply, code != 100 else { continue }
                open = nil
                if code != 408 && code != 404 { throw failure(code, description) }
            }
        }
        // The first delivery is in: take whatever else is already queued, and go.
        try drain(into: &out, limit: batch)
        return out
    }

    /// 503: no responders (no such stream or consumer, or JetStream unavailable); 409: the
    /// consumer was deleted, or too many requests wait on it.
    private func failure(_ code: Int, _ description: String) -> NATSError {
        code == 503
            ? NATSError(kind: .noResponders, message: "fetch \(name): no responders")
            : NATSError(kind: .jetStream, status: Int32(code), message: "fetch \(name): \(code) \(description)")
    }

    private func countDelivery() {
        guard var current = open else { return }
        current.remaining -= 1
        open = current.remaining > 0 ? current : nil
    }

    /// Takes what is queued on the inbox without waiting (statuses of the open request close it).
    private func drain(into out: inout [JetStreamMessage], limit: Int) throws(NATSError) {
        while out.count < limit, let received = try next(until: nil) {
            switch received {
            case .message(let message):
                out.append(message)
                countDelivery()
            case .status(let from, let code, _):
                if from == open?.reply, code != 100 { open = nil }
            }
        }
    }

    private func send(batch: Int, expires: Duration?) throws(NATSError) -> String {
        nextRequest += 1
        let reply = "\(inbox).\(nextRequest)"
        let body = expires.map { "{\"batch\":\(batch),\"expires\":\($0.nanoseconds)}" } ?? "{\"batch\":\(batch),\"no_wait\":true}"
        let status = body.withCString { bytes in
            natsConnection_PublishRequest(connection, requestSubject, reply, bytes, Int32(strlen(bytes)))
        }
        try check(status, "pull request \(name)")
        return reply
    }

    /// The next message on the inbox: waits until `deadline` (nil: not at all); nil when none.
    private func next(until deadline: ContinuousClock.Instant?) throws(NATSError) -> Received? {
        var timeout: Int64 = 0
        if let deadline {
            timeout = (deadline - ContinuousClock.now).milliseconds
            if timeout <= 0 { timeout = 0 }
        }
        var msg: OpaquePointer? = nil
        let status = natsSubscription_NextMsg(&msg, subscription, timeout)
        if status == NATS_TIMEOUT { return nil }
        guard status == NATS_OK, let msg else { throw NATSError(status: status, context: "fetch \(name)") }
        defer { natsMsg_Destroy(msg) }
        if natsMsg_GetDataLength(msg) == 0 {
            var value: UnsafePointer<CChar>? = nil
            if natsMsgHeader_Get(msg, "Status", &value) == NATS_OK, let value {
                var description: UnsafePointer<CChar>? = nil
                _ = natsMsgHeader_Get(msg, "Description", &description)
                return .status(
                    reply: String(cString: natsMsg_GetSubject(msg)), code: Int(String(cString: value)) ?? 0,
                    description: description.map { String(cString: $0) } ?? "")
            }
        }
        let copied = NATSMessage(copying: msg)
        let ack = copied.replySubject ?? ""
        return .message(
            JetStreamMessage(
                subject: copied.subject, headers: copied.headers, payload: copied.payload, ackSubject: ack,
                metadata: JetStreamMessageMetadata(ackSubject: ack)))
    }
}
