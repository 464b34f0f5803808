import Foundation
import Logging
import Synchronization

/// An error reply in the NATS micro convention: `Nats-Service-Error` and
/// `Nats-Service-Error-Code` headers, plus a body chosen by the service.
public struct MicroServiceError: Error, Sendable {
    public var code: Int
    public var description: String
    public var body: [UInt8]
    /// Headers beside the two of the convention (e.g. `Retry-After`).
    public var headers: [(String, String)]

    public init(code: Int, description: String, body: [UInt8] = [], headers: [(String, String)] = []) {
        self.code = code
        self.description = description
        self.body = body
        self.headers = headers
    }
}

/// A reply from an endpoint handler.
public struct MicroReply: Sendable {
    public var payload: [UInt8]
    public var headers: NATSHeaders

    public init(payload: [UInt8], headers: NATSHeaders = NATSHeaders()) {
        self.payload = payload
        self.headers = headers
    }
}

/// One request/reply endpoint: a subject (wildcards allowed) served in a queue group.
public struct MicroEndpoint: Sendable {
    public var name: String
    public var subject: String
    public var queueGroup: String
    public var handler: @Sendable (NATSMessage) async throws(MicroServiceError) -> MicroReply
    /// Fair share of the endpoint: requests are queued per `partition` (e.g. the tenant in
    /// the subject), each queue bounded by `share.limit`, and served round-robin; a request
    /// beyond its partition's bound is answered at once with `share.refusal`.
    public var share: FairShare?
    /// Answer with `deadline.refusal` when the handler has not finished within
    /// `deadline.after`, so a caller never waits out its own timeout (the handler runs on and
    /// its late reply is dropped). With a fair share, handlers run apart from the service's
    /// task, so its shutdown does not cancel them; without one they see it as cancellation.
    public var deadline: Deadline?

    public struct Deadline: Sendable {
        public var after: Duration
        public var refusal: MicroServiceError
        public init(after: Duration, refusal: MicroServiceError) {
            self.after = after
            self.refusal = refusal
        }
    }

    public struct FairShare: Sendable {
        /// Requests one partition may have waiting (not yet handled) in this instance.
        public var limit: Int
        /// Requests all partitions together may have waiting.
        public var totalLimit: Int
        public var partition: @Sendable (NATSMessage) -> String?
        public var refusal: MicroServiceError

        public init(
            limit: Int, totalLimit: Int = 65_536, partition: @escaping @Sendable (NATSMessage) -> String?,
            refusal: MicroServiceError
        ) {
            self.limit = limit
            self.totalLimit = totalLimit
            self.partition = partition
            self.refusal = refusal
        }
    }

    public init(
        name: String, subject: String, queueGroup: String = "q", share: FairShare? = nil,
        deadline: Deadline? = nil,
        handler: @escaping @Sendable (NATSMessage) async throws(MicroServiceError) -> MicroReply
    ) {
        self.name = name
        self.subject = subject
        self.queueGroup = queueGroup
        self.share = share
        self.deadline = deadline
        self.handler = handler
    }
}

/// A NATS micro service implemented over cnats (which has no `micro` API): endpoints in
/// queue groups, plus `$SRV.PING|INFO|STATS[.<name>[.<id>]]` discovery answered by every
/// instance. Requests are handled concurrently up to `maxConcurrentRequests`.
public final class MicroService: Sendable {
    public struct Identity: Sendable {
        public var name: String
        public var version: String
        public var description: String
        public var metadata: [String: String]

        public init(name: String, version: String, description: String, metadata: [String: String] = [:]) {
            self.name = name
            self.version = version
            self.description = description
            self.metadata = metadata
        }
    }

    struct EndpointStats {
        var requests: Int = 0
        var errors: Int = 0
        var processingNanos: Int64 = 0
        var lastError: String = ""
    }

    public let identity: Identity
    public let id: String
    private let connection: NATSConnection
    private let endpoints: [MicroEndpoint]
    private let maxConcurrentRequests: Int
    private let started = Date()
    private let stats: Mutex<[String: EndpointStats]>
    private let deadlines = RequestDeadlines()
    /// The STATS `data` object (service-specific counters, a typed report encoded as JSON).
    private let extraStats: @Sendable () -> (any Encodable)?
    /// Told of every answered request: endpoint name, code (200, or the error's), time from
    /// arrival to answer — nil for a request refused on arrival, which did not run (for metrics).
    private let observe: @Sendable (_ endpoint: String, _ code: Int, _ elapsed: Duration?) -> Void
    private let logger: Logger

    public init(
        identity: Identity, connection: NATSConnection, endpoints: [MicroEndpoint],
        maxConcurrentRequests: Int = 64, logger: Logger,
        extraStats: @escaping @Sendable () -> (any Encodable)? = { nil },
        observe: @escaping @Sendable (_ endpoint: String, _ code: Int, _ elapsed: Duration?) -> Void = { _, _, _ in }
    ) {
        self.observe = observe
        self.identity = identity
        self.id = Self.makeID()
        self.connection = connection
        self.endpoints = endpoints
        self.maxConcurrentRequests = maxConcurrentRequests
        self.logger = logger
        self.extraStats = extraStats
        stats = Mutex(Dictionary(uniqueKeysWithValues: endpoints.map { ($0.name, EndpointStats()) }))
    }

    private static func makeID() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        return String((0..<22).map { _ in alphabet.randomElement()! })
    }

    /// Serves until the task is cancelled; then stops taking requests and lets in-flight
    /// ones finish (graceful shutdown).
    public func run() async throws {
        var subscribed: [(MicroEndpoint, NATSSubscription)] = []
        for endpoint in endpoints {
            subscribed.append((endpoint, try await connection.subscribe(subject: endpoint.subject, queue: endpoint.queueGroup)))
        }
        let endpointSubscriptions = subscribed
        var discoverySubjects: [String] = []
        for verb in ["PING", "INFO", "STATS"] {
            discoverySubjects += ["$SRV.\(verb)", "$SRV.\(verb).\(identity.name)", "$SRV.\(verb).\(identity.name).\(id)"]
        }
        var discoverySubscriptions: [NATSSubscription] = []
        for subject in discoverySubjects {
            discoverySubscriptions.append(try await connection.subscribe(subject: subject))
        }
        let discovery = discoverySubscriptions
        try await connection.flush()
        logger.info("service \(identity.name) \(id) serving \(endpoints.map(\.subject))")

        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                for (endpoint, subscription) in endpointSubscriptions {
                    group.addTask { await self.serve(endpoint, subscription) }
                }
                for subscription in discovery {
                    group.addTask {
                        for await message in subscription { await self.answerDiscovery(message) }
                    }
                }
            }
        } onCancel: {
            for (_, subscription) in endpointSubscriptions { subscription.unsubscribe() }
            for subscription in discovery { subscription.unsubscribe() }
        }
    }

    private func serve(_ endpoint: MicroEndpoint, _ subscription: NATSSubscription) async {
        guard let share = endpoint.share else {
            await withTaskGroup(of: Void.self) { group in
                var inFlight = 0
                for await message in subscription {
                    if inFlight >= maxConcurrentRequests {
                        await group.next()
                        inFlight -= 1
                    }
                    inFlight += 1
                    group.addTask { await self.handle(endpoint, message) }
                }
            }
            return
        }
        // Requests wait in one queue per partition (tenant), each bounded; free slots take
        // them round-robin, so one tenant's backlog never sits in front of another's request.
        // The reader never waits for a slot: a tenant over its bound is answered at once.
        // Each request carries its arrival time: the deadline counts from there, so time in
        // line is part of it.
        let waiting = WaitingRoom(FairRequestQueues(perPartition: share.limit, total: share.totalLimit))
        let (tokens, token) = AsyncStream<Void>.makeStream()
        let slots = maxConcurrentRequests
        // The workers run unstructured: shutdown (cancellation) ends the reader, whose end
        // finishes the token stream, and the workers then answer everything already queued.
        let workers = Task {
            await withTaskGroup(of: Void.self) { workers in
                var inFlight = 0
                // One token per queued request, so every queued request is taken exactly once.
                for await _ in tokens {
                    if inFlight >= slots {
                        await workers.next()
                        inFlight -= 1
                    }
                    guard let (message, arrived) = waiting.queues.withLock({ $0.dequeue() }) else { continue }
                    inFlight += 1
                    workers.addTask { await self.handle(endpoint, message, arrived: arrived) }
                }
            }
        }
        for await message in subscription {
            let arrived = ContinuousClock.now
            if waiting.queues.withLock({ $0.enqueue((message, arrived), partition: share.partition(message) ?? "") }) {
                token.yield()
            } else {
                await refuse(endpoint, message, share.refusal)
            }
        }
        token.finish()
        await workers.value
    }

    private func refuse(_ endpoint: MicroEndpoint, _ message: NATSMessage, _ error: MicroServiceError) async {
        observe(endpoint.name, error.code, nil)
        stats.withLock { stats in
            stats[endpoint.name, default: EndpointStats()].requests += 1
            stats[endpoint.name, default: EndpointStats()].errors += 1
            stats[endpoint.name, default: EndpointStats()].lastError = "\(error.code):\(error.description)"
        }
        guard let replySubject = message.replySubject else { return }
        try? await connection.publish(Self.errorReply(to: replySubject, error))
    }

    /// Runs the handler and answers; or, with a deadline, answers with its refusal when the
    /// handler has not finished in time (counted from `arrived`, so time in line is part of it;
    /// a request already past it is refused without running). A handler answered for by its
    /// deadline is never cancelled (a store call in progress finishes, and may commit, on its
    /// own): it runs on, keeping its slot until it ends, so a stuck dependency cannot pile up
    /// more handlers than the concurrency bound, and its late reply is dropped.
    private func handle(_ endpoint: MicroEndpoint, _ message: NATSMessage, arrived: ContinuousClock.Instant = .now) async {
        let start = ContinuousClock.now
        var booked: (ticket: UInt64, late: LateAnswer)?
        if let deadline = endpoint.deadline {
            let due = arrived + deadline.after
            guard due > start else {
                await answer(endpoint, message, arrived: arrived, started: start, .failure(deadline.refusal))
                return
            }
            let late = LateAnswer()
            let ticket = deadlines.add(due: due) {
                late.start(Task { await self.answer(endpoint, message, arrived: arrived, started: start, .failure(deadline.refusal)) })
            }
            booked = (ticket, late)
        }
        let result: Result<MicroReply, MicroServiceError>
        do throws(MicroServiceError) { result = .success(try await endpoint.handler(message)) } catch { result = .failure(error) }
        if let booked, !deadlines.finish(booked.ticket) {
            // The deadline answered; its reply is sent before the slot (and, at shutdown, the
            // service) is given up.
            await booked.late.sent()
            return
        }
        await answer(endpoint, message, arrived: arrived, started: start, result)
    }

    /// Records and sends one request's answer (`started`: when its handling began).
    private func answer(
        _ endpoint: MicroEndpoint, _ message: NATSMessage, arrived: ContinuousClock.Instant, started: ContinuousClock.Instant,
        _ result: Result<MicroReply, MicroServiceError>
    ) async {
        let failure: MicroServiceError?
        let reply: NATSOutgoingMessage?
        switch result {
        case .success(let success):
            failure = nil
            reply = message.replySubject.map {
                NATSOutgoingMessage(subject: $0, headers: success.headers, payload: success.payload)
            }
        case .failure(let error):
            failure = error
            reply = message.replySubject.map { Self.errorReply(to: $0, error) }
        }
        observe(endpoint.name, failure?.code ?? 200, ContinuousClock.now - arrived)
        stats.withLock { stats in
            stats[endpoint.name, default: EndpointStats()].requests += 1
            stats[endpoint.name, default: EndpointStats()].processingNanos += (ContinuousClock.now - started).nanoseconds
            if let failure {
                stats[endpoint.name, default: EndpointStats()].errors += 1
                stats[endpoint.name, default: EndpointStats()].lastError = "\(failure.code):\(failure.description)"
            }
        }
        guard let reply else { return }
        do {
            try await connection.publish(reply)
        } catch {
            // Too large for max_payload, or refused: the caller still gets an answer.
            logger.warning("reply on \(endpoint.subject) failed: \(error); answering 500")
            let fallback = Self.errorReply(
                to: reply.subject, MicroServiceError(code: 500, description: "the reply could not be sent"))
            try? await connection.publish(fallback)
        }
    }

    /// Error text often echoes the request: it is sanitised so it cannot break or bloat the
    /// header block; the body carries the detail.
    static func errorReply(to subject: String, _ error: MicroServiceError) -> NATSOutgoingMessage {
        var headers = NATSHeaders()
        for (name, value) in error.headers { headers[name] = HeaderValue.sanitized(value) }
        headers["Nats-Service-Error"] = HeaderValue.sanitized(error.description)
        headers["Nats-Service-Error-Code"] = String(error.code)
        return NATSOutgoingMessage(subject: subject, headers: headers, payload: error.body)
    }

    private func answerDiscovery(_ message: NATSMessage) async {
        guard let replySubject = message.replySubject else { return }
        let verb = message.subject.split(separator: ".").dropFirst().first.map(String.init) ?? ""
        var object: [String: Any] = [
            "name": identity.name, "id": id, "version": identity.version,
            "metadata": identity.metadata,
        ]
        switch verb {
        case "PING":
            object["type"] = "io.nats.micro.v1.ping_response"
        case "INFO":
            object["type"] = "io.nats.micro.v1.info_response"
            object["description"] = identity.description
            object["endpoints"] = endpoints.map {
                ["name": $0.name, "subject": $0.subject, "queue_group": $0.queueGroup, "metadata": [String: String]()]
            }
        case "STATS":
            object["type"] = "io.nats.micro.v1.stats_response"
            object["started"] = ISO8601DateFormatter().string(from: started)
            let snapshot = stats.withLock { $0 }
            object["endpoints"] = endpoints.map { endpoint -> [String: Any] in
                let s = snapshot[endpoint.name] ?? EndpointStats()
                return [
                    "name": endpoint.name, "subject": endpoint.subject,
                    "queue_group": endpoint.queueGroup, "num_requests": s.requests,
                    "num_errors": s.errors, "last_error": s.lastError,
                    "processing_time": s.processingNanos,
                    "average_processing_time": s.requests == 0 ? 0 : s.processingNanos / Int64(s.requests),
                ]
            }
            object["data"] = extraStats().flatMap { try? JSONEncoder().encode($0) }
                .flatMap { try? JSONSerialization.jsonObject(with: $0) } ?? [String: Any]()
        default:
            return
        }
        guard let body = try? JSONSerialization.data(withJSONObject: object) else { return }
        try? await connection.publish(NATSOutgoingMessage(subject: replySubject, payload: [UInt8](body)))
    }
}

extension MicroServiceError: CustomStringConvertible {}

/// Shares the queues between the reader and the dispatching loop.
private final class WaitingRoom: Sendable {
    let queues: Mutex<FairRequestQueues<(NATSMessage, ContinuousClock.Instant)>>
    init(_ queues: FairRequestQueues<(NATSMessage, ContinuousClock.Instant)>) { self.queues = Mutex(queues) }
}

/// The deadline's answer to one request, sent by a task of its own while the handler runs on.
private final class LateAnswer: Sendable {
    private let sending = Mutex<Task<Void, Never>?>(nil)

    func start(_ task: Task<Void, Never>) { sending.withLock { $0 = task } }

    /// Waits until it is sent (the deadline's expiry has started it by the time anyone asks).
    func sent() async { await sending.withLock { $0 }?.value }
}

extension FairRequestQueues: Sendable where Element: Sendable {}

/// Per-partition FIFO queues served round-robin, each bounded (and all together): the waiting
/// room of a `MicroService` endpoint with a fair share. Pure; the service holds it in a lock.
public struct FairRequestQueues<Element> {
    private var queues: [String: [Element]] = [:]
    private var heads: [String: Int] = [:]
    /// Partitions with waiting elements, in round-robin order.
    private var ring: [String] = []
    private var cursor = 0
    public private(set) var count = 0
    public let perPartition: Int
    public let total: Int

    public init(perPartition: Int, total: Int) {
        self.perPartition = max(1, perPartition)
        self.total = max(1, total)
    }

    /// Waiting elements of one partition.
    public func waiting(_ partition: String) -> Int {
        (queues[partition]?.count ?? 0) - (heads[partition] ?? 0)
    }

    /// False (and nothing queued) when the partition or the whole room is full.
    public mutating func enqueue(_ element: Element, partition: String) -> Bool {
        guard count < total, waiting(partition) < perPartition else { return false }
        if queues[partition] == nil {
            queues[partition] = []
            heads[partition] = 0
            ring.append(partition)
        }
        queues[partition]!.append(element)
        count += 1
        return true
    }

    /// The next element, taking partitions in turn.
    public mutating func dequeue() -> Element? {
        guard !ring.isEmpty else { return nil }
        if cursor >= ring.count { cursor = 0 }
        let partition = ring[cursor]
        let head = heads[partition]!
        let element = queues[partition]![head]
        count -= 1
        if head + 1 == queues[partition]!.count {
            queues[partition] = nil
            heads[partition] = nil
            ring.remove(at: cursor)
        } else {
            heads[partition] = head + 1
            if head + 1 >= 1024 {
                queues[partition]!.removeFirst(head + 1)
                heads[partition] = 0
            }
            cursor += 1
        }
        return element
    }
}
