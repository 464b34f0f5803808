import SundialNATS

/// The JetStream streams and consumers Sundial needs, created idempotently at startup by
/// every service (whoever starts first wins; the rest are no-ops).
public enum SundialTopology {
    /// Stream holding scheduled messages (`sched.<shard>.<timer>.<occurrence>.<attempt>`) and what they fire
    /// (`fired.<shard>`). Work-queue retention: a fired message is gone once the Dispatcher
    /// acks it. No max_age and file storage: an evicted schedule would be a lost timer.
    public static func fireStream(_ namespace: SundialNamespace, replicas: Int = 1) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(
            name: namespace.fireStream, subjects: [namespace.scheduleWildcard, namespace.firedWildcard])
        config.retention = .workqueue
        config.allowMessageSchedules = true
        config.replicas = replicas
        return config
    }

    /// The work stream executors consume. Work-queue retention (a job leaves when acked);
    /// a 10-minute dedupe window catches a re-forward of the same (timer, occurrence,
    /// attempt) after a Dispatcher crash between forward and ack.
    public static func workStream(_ namespace: SundialNamespace, replicas: Int = 1) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.workStream, subjects: [namespace.workWildcard])
        config.retention = .workqueue
        config.duplicateWindow = .seconds(600)
        config.replicas = replicas
        return config
    }

    /// Job outcomes from executors; work-queue retention, consumed by the Dispatchers.
    public static func resultsStream(_ namespace: SundialNamespace, replicas: Int = 1) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.resultsStream, subjects: [namespace.resultsWildcard])
        config.retention = .workqueue
        config.duplicateWindow = .seconds(600)
        config.replicas = replicas
        return config
    }

    /// Tenant notifications (dead letters, failed attempts), kept 7 days for subscribers.
    public static func eventsStream(_ namespace: SundialNamespace, replicas: Int = 1) -> JetStreamStreamConfig {
        var config = JetStreamStreamConfig(name: namespace.eventsStream, subjects: [namespace.eventsWildcard])
        config.maxAge = .seconds(7 * 86_400)
        config.replicas = replicas
        return config
    }

    public static func resultsConsumer(_ namespace: SundialNamespace) -> JetStreamConsumerConfig {
        var config = JetStreamConsumerConfig(durableName: namespace.resultsDurable, filterSubjects: [namespace.resultsWildcard])
        config.ackWait = .seconds(30)
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
        config.maxAckPending = maxAckPending
        config.description = "Sundial dispatchers: fired timers → work stream"
        return config
    }

    /// Creates or updates the streams and the dispatchers' consumers.
    public static func ensure(_ connection: NATSConnection, namespace: SundialNamespace) async throws {
        try await connection.ensureStream(fireStream(namespace))
        try await connection.ensureStream(workStream(namespace))
        try await connection.ensureStream(resultsStream(namespace))
        try await connection.ensureStream(eventsStream(namespace))
        try await connection.ensureConsumer(stream: namespace.fireStream, dispatcherConsumer(namespace))
        try await connection.ensureConsumer(stream: namespace.resultsStream, resultsConsumer(namespace))
    }
}
