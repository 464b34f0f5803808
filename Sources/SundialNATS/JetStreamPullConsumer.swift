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

/// A durable pull consumer bound through cnats (`js_PullSubscribe`). Fetches run on the
/// consumer's own dedicated thread (they long-poll); acks are core publishes.
public final class JetStreamPullConsumer: @unchecked Sendable {
    // @unchecked: `subscription` is a thread-safe cnats handle used only on `thread`
    // for fetches and destroyed in deinit.
    private let subscription: OpaquePointer
    private let thread: DedicatedThread
    public let connection: NATSConnection
    public let stream: String
    public let durable: String

    /// Binds to an existing durable consumer (create it with `ensureConsumer` first).
    public static func bind(
        connection: NATSConnection, stream: String, durable: String, filterSubject: String
    ) async throws -> JetStreamPullConsumer {
        let thread = DedicatedThread(name: "fetch-\(durable)")
        let js = CHandle(connection.jetStream.rawHandle)
        do {
            let sub = try await thread.run { () throws -> CHandle in
                var options = jsSubOptions()
                jsSubOptions_Init(&options)
                var sub: OpaquePointer? = nil
                var errCode = jsErrCode(rawValue: 0)
                let status = stream.withCString { streamName in
                    durable.withCString { durableName in
                        options.Stream = streamName
                        options.Consumer = durableName
                        return js_PullSubscribe(&sub, js.raw, filterSubject, durableName, nil, &options, &errCode)
                    }
                }
                guard status == NATS_OK, let sub else {
                    var error = NATSError(status: status, context: "pull subscribe \(stream)/\(durable)")
                    if errCode.rawValue != 0 { error.jetStreamErrorCode = Int(errCode.rawValue) }
                    throw error
                }
                return CHandle(sub)
            }
            return JetStreamPullConsumer(
                subscription: sub.raw, thread: thread, connection: connection, stream: stream,
                durable: durable)
        } catch {
            thread.shutdown()
            throw error
        }
    }

    private init(
        subscription: OpaquePointer, thread: DedicatedThread, connection: NATSConnection,
        stream: String, durable: String
    ) {
        self.subscription = subscription
        self.thread = thread
        self.connection = connection
        self.stream = stream
        self.durable = durable
    }

    deinit {
        natsSubscription_Destroy(subscription)
        thread.shutdown()
    }

    /// Fetches up to `batch` messages, returning as soon as some are available and the
    /// server has no more, or after `maxWait` with none (then `[]`).
    public func fetch(batch: Int, maxWait: Duration) async throws -> [JetStreamMessage] {
        let sub = CHandle(subscription)
        let deadline = ContinuousClock.now + maxWait
        return try await thread.run { () throws -> [JetStreamMessage] in
            // cnats's fetches share one reply subject, and a pull request expires on the server
            // just before the client gives up: its "408 Request Timeout" can arrive after that
            // fetch returned and end the *next* one at once with nothing. An empty timeout well
            // before our deadline is such a stale status: fetch again for the time left.
            while true {
                let timeout = max((deadline - ContinuousClock.now).milliseconds, 1)
                if let messages = try self.fetchOnce(sub, batch: batch, timeout: timeout) { return messages }
                if deadline - ContinuousClock.now < .milliseconds(20) { return [] }
            }
        }
    }

    /// One cnats fetch; nil for a timeout with no messages.
    private func fetchOnce(_ sub: CHandle, batch: Int, timeout: Int64) throws -> [JetStreamMessage]? {
        var list = natsMsgList()
        var errCode = jsErrCode(rawValue: 0)
        let status = natsSubscription_Fetch(&list, sub.raw, Int32(batch), timeout, &errCode)
        defer { natsMsgList_Destroy(&list) }
        if status == NATS_TIMEOUT && list.Count == 0 { return nil }
        guard status == NATS_OK || list.Count > 0 else {
            throw NATSError(status: status, context: "fetch \(durable)")
        }
        var messages: [JetStreamMessage] = []
        messages.reserveCapacity(Int(list.Count))
        for index in 0..<Int(list.Count) {
            guard let msg = list.Msgs[index] else { continue }
            let copied = NATSMessage(copying: msg)
            let ack = copied.replySubject ?? ""
            messages.append(
                JetStreamMessage(
                    subject: copied.subject, headers: copied.headers, payload: copied.payload,
                    ackSubject: ack, metadata: JetStreamMessageMetadata(ackSubject: ack)))
        }
        return messages
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
