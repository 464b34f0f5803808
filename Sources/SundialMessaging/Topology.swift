import SundialContract
import SundialCore
import SundialNATS

/// Bounds of the streams Sundial creates (docs/limits.md). Each is chosen so that reaching
/// it hurts only its owner: the work stream refuses a full *queue* (its fires wait in
/// Sundial, deferred and counted) while other queues go on; the results stream refuses a
/// full *tenant's* results subject (the executor's publish fails and it retries).
public struct StreamLimits: Sendable, Hashable {
    /// Jobs waiting in one queue (`sundial.work.<queue>`).
    public var workPerQueue: Int = 1_000_000
    /// The whole work stream; file bytes are reserved against the server's `max_file_store`.
    public var workBytes: Int = 4 << 30
    /// The work stream's dedupe window: a job forwarded again within it (same timer,
    /// occurrence, attempt and version) is dropped by JetStream. The Planner's rescue of lost
    /// dispatches waits longer than this, or its re-forward would be dropped too.
    public var workDuplicateWindow: Duration = .seconds(600)
    /// Copies of every Sundial stream and KV bucket in a JetStream cluster: 1 for a single
    /// server (dev), 3 in production, so that losing a node loses no schedule, job or result.
    /// Needs at least that many JetStream servers.
    public var replicas: Int = 1
    /// Unapplied results of one tenant (`sundial.results.<tenant>`).
    public var resultsPerTenant: Int = 100_000
    public var resultsBytes: Int = 512 << 20
    /// One result message: a JobResult with at most 2,000 bytes of error text is far smaller.
    public var resultMessageBytes: Int = 64 << 10
    /// Events per (tenant, kind) subject; the oldest go first.
    public var eventsPerSubject: Int = 100_000
    public var eventsBytes: Int = 1 << 30
    public var eventsMaxAge: Duration = .seconds(7 * 86_400)
    /// Messages refused by a service (bad results, bad fires), kept for operators.
    public var poisonBytes: Int = 256 << 20
    public var poisonMaxAge: Duration = .seconds(7 * 86_400)

    public init() {}

    public func validate() throws(SundialError) {
        guard workPerQueue > 0, resultsPerTenant > 0, eventsPerSubject > 0 else {
            throw .invalid("streams", "per-queue, per-tenant and per-subject limits must be positive")
        }
        guard workBytes >= 1 << 20, resultsBytes >= 1 << 20, eventsBytes >= 1 << 20, poisonBytes >= 1 << 20 else {
            throw .invalid("streams", "byte limits must be at least 1 MiB")
        }
        guard (1...5).contains(replicas) else { throw .invalid("streams.replicas", "must be in 1…5") }
        guard workDuplicateWindow >= .seconds(1), workDuplicateWindow <= .seconds(86_400) else {
            throw .invalid("streams.work_duplicate_window", "must be within 1s…24h")
        }
        guard resultMessageBytes >= 1024 else { throw .invalid("streams.result_message_bytes", "must be at least 1 KiB") }
        guard eventsMaxAge >= .seconds(60), poisonMaxAge >= .seconds(60) else {
            throw .invalid("streams", "max ages must be at least 60s")
        }
    }
}

/// The JetStream streams and consumers Sundial needs, created idempotently at startup by
/// every service (whoever starts first wins; the rest are no-ops).
public enum SundialTopology {
    /// Stream holding scheduled messages (`sched.<shard>.<timer>.<occurrence>.<attempt>`) and what they fire
    /// (`fired.<shard>`). Work-queue retention: a fired message is gone once the Dispatcher
    /// acks it. No max_age and file storage: an evicted schedule would be a lost timer.
    /// With K fire streams (`SundialNamespace.fireStreamCount`), stream `index` holds the
    /// shards s with s mod K = index.
    public static func fireStream(
        _ namespace: SundialNamespace, index: Int = 0, limits: StreamLimits = StreamLimits()
    ) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(
            name: namespace.fireStream(index: index), subjects: namespace.fireSubjects(index: index))
        config.retention = .workqueue
        config.allowMessageSchedules = true
        config.replicas = limits.replicas
        return config
    }

    /// The work stream executors consume. Work-queue retention (a job leaves when acked);
    /// a dedupe window (`StreamLimits.workDuplicateWindow`, 10 minutes) catches a re-forward of
    /// the same (timer, occurrence, attempt) after a Dispatcher crash between forward and ack. A queue at its bound
    /// refuses new jobs (discard new, per subject) without touching other queues.
    public static func workStream(
        _ namespace: SundialNamespace, limits: StreamLimits = StreamLimits()
    ) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.workStream, subjects: [namespace.workWildcard])
        config.retention = .workqueue
        config.duplicateWindow = limits.workDuplicateWindow
        config.replicas = limits.replicas
        config.discard = .new
        config.discardNewPerSubject = true
        config.maxMessagesPerSubject = limits.workPerQueue
        config.maxBytes = limits.workBytes
        return config
    }

    /// Job outcomes from executors; work-queue retention, consumed by the Dispatchers. A
    /// tenant at its bound gets a publish error on its own subject only.
    public static func resultsStream(
        _ namespace: SundialNamespace, limits: StreamLimits = StreamLimits()
    ) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.resultsStream, subjects: [namespace.resultsWildcard])
        config.retention = .workqueue
        config.duplicateWindow = .seconds(600)
        config.replicas = limits.replicas
        config.discard = .new
        config.discardNewPerSubject = true
        config.maxMessagesPerSubject = limits.resultsPerTenant
        config.maxBytes = limits.resultsBytes
        config.maxMessageSize = limits.resultMessageBytes
        return config
    }

    /// Tenant notifications (dead letters, failed attempts, rejected results), kept for
    /// subscribers; per (tenant, kind) the oldest go first.
    public static func eventsStream(
        _ namespace: SundialNamespace, limits: StreamLimits = StreamLimits()
    ) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.eventsStream, subjects: [namespace.eventsWildcard])
        config.maxAge = limits.eventsMaxAge
        config.maxMessagesPerSubject = limits.eventsPerSubject
        config.maxBytes = limits.eventsBytes
        config.replicas = limits.replicas
        return config
    }

    /// Messages a service refused (see `SundialNamespace.poisonStream`).
    public static func poisonStream(
        _ namespace: SundialNamespace, limits: StreamLimits = StreamLimits()
    ) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.poisonStream, subjects: [namespace.poisonWildcard])
        config.maxAge = limits.poisonMaxAge
        config.maxBytes = limits.poisonBytes
        config.replicas = limits.replicas
        return config
    }

    public static func resultsConsumer(_ namespace: SundialNamespace) -> JetStreamConsumerConfig {
        var config = JetStreamConsumerConfig(durableName: namespace.resultsDurable, filterSubjects: [namespace.resultsWildcard])
        config.ackWait = .seconds(30)
        // A backstop only: the results pipeline poisons a result that keeps failing after a
        // few deliveries, and waits out a Postgres outage with 2 s naks (≈ 55 h to this bound).
        config.maxDeliver = Self.maximumDeliveries
        config.description = "Sundial dispatchers: executor results → runs, retries, dead letters"
        return config
    }

    /// `max_ack_pending` is large because fires deferred by quota (nak'd with a delay) stay
    /// pending until they come back; each dispatcher keeps its deferred fires below
    /// `FairnessGate.Configuration.maximumDeferred` (400 000) so the window never fills.
    public static func dispatcherConsumer(_ namespace: SundialNamespace, maxAckPending: Int = 1_000_000)
        -> JetStreamConsumerConfig
    {
        var config = JetStreamConsumerConfig(
            durableName: namespace.dispatcherDurable, filterSubjects: [namespace.firedWildcard])
        config.ackWait = .seconds(30)
        // A backstop only: deferrals and full queues are redeliveries by design, so the bound is
        // far beyond any wait; a fire past it stays armed in Postgres and is rescued.
        config.maxDeliver = Self.maximumDeliveries
        config.maxAckPending = maxAckPending
        config.description = "Sundial dispatchers: fired timers → work stream"
        return config
    }

    /// `max_deliver` of the services' consumers (see each consumer for why so high).
    public static let maximumDeliveries = 100_000

    /// Creates or updates the streams and the dispatchers' consumers.
    public static func ensure(
        _ connection: NATSConnection, namespace: SundialNamespace, limits: StreamLimits = StreamLimits()
    ) async throws {
        for index in namespace.fireStreams.indices {
            try await connection.ensureStream(fireStream(namespace, index: index, limits: limits))
        }
        try await connection.ensureStream(workStream(namespace, limits: limits))
        try await connection.ensureStream(resultsStream(namespace, limits: limits))
        try await connection.ensureStream(eventsStream(namespace, limits: limits))
        try await connection.ensureStream(poisonStream(namespace, limits: limits))
        for stream in namespace.fireStreams {
            try await connection.ensureConsumer(stream: stream, dispatcherConsumer(namespace))
        }
        try await connection.ensureConsumer(stream: namespace.resultsStream, resultsConsumer(namespace))
    }
}
