import CoreMetrics
import Logging
import ServiceLifecycle
import SundialContract
import SundialMessaging
import SundialNATS
import SundialObservability
import SundialProto
import SundialStore
import Synchronization

/// The Ingest service: answers `sundial.v1.<tenant>.Timers.<Method>` (Create, Get, Update, Cancel,
/// List, History) in a queue group (so
/// any number of instances share the load) and `$SRV.PING|INFO|STATS`.
public final class IngestService: Service, Sendable {
    public let handler: TimerRequestHandler
    private let connection: NATSConnection
    private let logger: Logger

    public init(config: IngestConfig, connection: NATSConnection, store: TimerStore, logger: Logger) throws {
        try config.validate()
        self.connection = connection
        self.logger = logger
        handler = TimerRequestHandler(
            config: config, store: store, connection: connection, logger: logger)
    }

    public func run() async throws {
        let namespace = handler.config.namespace
        // A payload just under the limit must still fit once wrapped (fire envelope, job
        // headers); otherwise its fire could never be published and would be retried forever.
        let serverMax = connection.serverMaxPayload
        if serverMax > 0, handler.config.maxPayloadBytes + IngestConfig.envelopeAllowance > serverMax {
            throw SundialError.invalid(
                "ingest.max_payload_bytes",
                "\(handler.config.maxPayloadBytes) B plus \(IngestConfig.envelopeAllowance) B for the envelope exceeds the NATS server's max_payload (\(serverMax) B)")
        }
        try await SundialTopology.ensure(connection, namespace: namespace, limits: handler.config.streamLimits)
        let handler = self.handler
        let service = MicroService(
            identity: .init(
                name: SundialNamespace.ingestServiceName, version: "0.1.0",
                description: "Sundial Timers API: create, read, update, cancel, list timers and their history"),
            connection: connection,
            endpoints: [
                Self.endpoint(.create, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.create(tenant: tenant, body: body)
                },
                Self.endpoint(.get, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.get(tenant: tenant, body: body)
                },
                Self.endpoint(.update, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.update(tenant: tenant, body: body)
                },
                Self.endpoint(.cancel, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.cancel(tenant: tenant, body: body)
                },
                Self.endpoint(.list, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.list(tenant: tenant, body: body)
                },
                Self.endpoint(.history, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.history(tenant: tenant, body: body)
                },
                Self.endpoint(.retry, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.retry(tenant: tenant, body: body)
                },
                Self.endpoint(.pause, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.pause(tenant: tenant, body: body)
                },
                Self.endpoint(.resume, namespace, queuedPerTenant: handler.config.maxQueuedPerTenant, deadline: handler.config.answerWithin) { tenant, body throws(SundialError) in
                    try await handler.resume(tenant: tenant, body: body)
                },
            ],
            maxConcurrentRequests: handler.config.maxConcurrentRequests, logger: logger,
            observe: Self.requestMetrics())
        try await cancelWhenGracefulShutdown {
            try await service.run()
        }
    }

    /// Counts answered requests per (method, code) and their latency per method. Metric
    /// objects are made once per label set (endpoint names and codes are a small fixed set).
    static func requestMetrics() -> @Sendable (String, Int, Duration?) -> Void {
        let counters = Mutex([String: CoreMetrics.Counter]())
        let timers = Mutex([String: CoreMetrics.Timer]())
        return { endpoint, code, elapsed in
            let method = endpoint.hasPrefix("Timers.") ? String(endpoint.dropFirst("Timers.".count)) : endpoint
            let key = method + "/" + String(code)
            counters.withLock { cache in
                if cache[key] == nil, cache.count < 200 {
                    cache[key] = CoreMetrics.Counter(
                        label: MetricName.requests, dimensions: [("method", method), ("code", String(code))])
                }
                return cache[key]
            }?.increment()
            guard let elapsed else { return }  // refused on arrival: counted, not timed
            timers.withLock { cache in
                if cache[method] == nil, cache.count < 50 {
                    cache[method] = CoreMetrics.Timer(label: MetricName.requestDuration, dimensions: [("method", method)])
                }
                return cache[method]
            }?.recordNanoseconds(max(Int64(0), elapsed.components.seconds &* 1_000_000_000 &+ elapsed.components.attoseconds / 1_000_000_000))
        }
    }

    /// Binds a typed handler to `sundial.v1.*.Timers.<method>`: the tenant comes from the
    /// subject; errors become micro error headers plus a Status body.
    static func endpoint<Reply: SwiftProtobuf.Message>(
        _ method: TimersMethod, _ namespace: SundialNamespace, queuedPerTenant: Int, deadline: Duration,
        _ body: @escaping @Sendable (String, [UInt8]) async throws(SundialError) -> Reply
    ) -> MicroEndpoint {
        let share = MicroEndpoint.FairShare(
            limit: queuedPerTenant, partition: { namespace.tenant(fromRequestSubject: $0.subject) },
            refusal: SundialError(
                .quotaExceeded,
                "too many requests of this tenant are waiting at this instance (\(queuedPerTenant)); retry with backoff"
            ).microServiceError)
        let answerWithin = MicroEndpoint.Deadline(
            after: deadline,
            refusal: SundialError(.unavailable, "the request took longer than \(deadline); retry (with the same idempotency key for a Create)").microServiceError)
        return MicroEndpoint(
            name: "Timers.\(method.rawValue)", subject: namespace.requestWildcard(method), share: share,
            deadline: answerWithin
        ) {
            message throws(MicroServiceError) in
            guard let tenant = namespace.tenant(fromRequestSubject: message.subject) else {
                throw SundialError.invalid("subject", "not a Timers request subject").microServiceError
            }
            do {
                let reply = try await body(tenant, message.payload)
                return MicroReply(payload: try reply.serializedBytes())
            } catch let error as SundialError {
                throw error.microServiceError
            } catch {
                throw SundialError(.internal, "could not encode reply").microServiceError
            }
        }
    }
}
