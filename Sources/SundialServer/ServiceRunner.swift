import CoreMetrics
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import SundialContract
import SundialCore
import SundialDispatcher
import SundialFairness
import SundialGovernor
import SundialIngest
import SundialMessaging
import SundialMetricsServer
import SundialNATS
import SundialObservability
import SundialPlanner
import SundialPostgres
import SundialSchedule
import SundialStore
import Synchronization

/// Which services one process runs.
public enum SundialComponent: String, CaseIterable, Sendable {
    case ingest, planner, dispatcher, governor
}

/// Everything a service process needs, read from the environment by executables only.
/// Keys and defaults are documented in each services/<name>/README.md.
public struct ServiceEnvironment: Sendable {
    public var natsURL = "nats://127.0.0.1:4222"
    /// NATS login (`SUNDIAL_NATS_USER`, `SUNDIAL_NATS_PASSWORD`): the `sundial-service`
    /// user of deploy/nats/auth.conf when the server enforces tenant isolation.
    public var natsUser: String? = nil
    public var natsPassword: String? = nil
    public var postgresURL = "postgres://postgres@127.0.0.1:5432/postgres"
    /// Postgres schema holding Sundial's tables (created and migrated at startup).
    public var schema = "sundial"
    public var namespace = SundialNamespace.standard
    public var streamLimits = StreamLimits()
    public var postgresPoolSize = 8
    /// `SUNDIAL_SHARDS`: the shard count a database without timers is given at startup (nil:
    /// it keeps what it has — 256 for a new one). A database that holds timers keeps its
    /// count; asking for another is a startup error.
    public var shards: Int? = nil
    public var logLevel = Logger.Level.info
    /// `text` (one line per event) or `json` (one JSON object per line).
    public var logFormat = SundialLogging.Format.text
    /// Where `/metrics`, `/healthz` and `/readyz` are served (`host:port`; nil: not served).
    public var metricsAddress: String? = "0.0.0.0:9464"
    public var ingest = IngestConfig()
    public var planner = PlannerConfig()
    public var dispatcher = DispatcherConfig()
    public var governor = GovernorConfig()

    public init() {}

    /// Hands `streamLimits` to every service's config (they apply it to the streams).
    public mutating func applyStreamLimits() {
        governor.streamLimits = streamLimits
        ingest.streamLimits = streamLimits
        planner.streamLimits = streamLimits
        dispatcher.streamLimits = streamLimits
    }

    /// Reads `SUNDIAL_*` variables; a malformed value is an error naming the variable.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws
        -> ServiceEnvironment
    {
        var result = ServiceEnvironment()
        func duration(_ key: String) throws -> Duration? {
            guard let text = env[key] else { return nil }
            guard let value = ScheduleDuration.parse(text) else {
                throw SundialError.invalid(key, "is not a duration like 500ms, 10s, 5m: \(text)")
            }
            return value
        }
        func number(_ key: String) throws -> Double? {
            guard let text = env[key] else { return nil }
            guard let value = Double(text), value.isFinite else { throw SundialError.invalid(key, "is not a number: \(text)") }
            return value
        }
        func integer(_ key: String) throws -> Int? {
            guard let text = env[key] else { return nil }
            guard let value = Int(text) else { throw SundialError.invalid(key, "is not an integer: \(text)") }
            return value
        }
        if let value = env["SUNDIAL_NATS_URL"] { result.natsURL = value }
        if let value = env["SUNDIAL_NATS_USER"], !value.isEmpty { result.natsUser = value }
        if let value = env["SUNDIAL_NATS_PASSWORD"] {
            guard result.natsUser != nil else {
                throw SundialError.invalid("SUNDIAL_NATS_PASSWORD", "is set but SUNDIAL_NATS_USER is not")
            }
            result.natsPassword = value
        }
        if let value = env["SUNDIAL_POSTGRES_URL"] { result.postgresURL = value }
        if let value = env["SUNDIAL_POSTGRES_SCHEMA"] { result.schema = value }
        if let value = try integer("SUNDIAL_POSTGRES_POOL_SIZE") { result.postgresPoolSize = value }
        if let root = env["SUNDIAL_SUBJECT_ROOT"] { result.namespace.subjectRoot = root }
        if let prefix = env["SUNDIAL_STREAM_PREFIX"] { result.namespace.streamPrefix = prefix }
        if let value = try integer("SUNDIAL_FIRE_STREAMS") {
            guard (1...64).contains(value) else { throw SundialError.invalid("SUNDIAL_FIRE_STREAMS", "must be in 1…64") }
            result.namespace.fireStreamCount = value
        }
        if let value = try integer("SUNDIAL_SHARDS") {
            guard (1...ShardMap.maximumCount).contains(value) else {
                throw SundialError.invalid("SUNDIAL_SHARDS", "must be in 1…\(ShardMap.maximumCount)")
            }
            result.shards = value
        }
        if let level = env["SUNDIAL_LOG_LEVEL"] {
            guard let parsed = Logger.Level(rawValue: level) else {
                throw SundialError.invalid("SUNDIAL_LOG_LEVEL", "must be trace|debug|info|notice|warning|error|critical")
            }
            result.logLevel = parsed
        }
        if let value = env["SUNDIAL_LOG_FORMAT"] {
            guard let format = SundialLogging.Format(rawValue: value) else {
                throw SundialError.invalid("SUNDIAL_LOG_FORMAT", "must be text or json")
            }
            result.logFormat = format
        }
        if let value = env["SUNDIAL_METRICS_ADDRESS"] {
            if value == "off" {
                result.metricsAddress = nil
            } else {
                guard MetricsEndpoint.Configuration(address: value).parsed != nil else {
                    throw SundialError.invalid("SUNDIAL_METRICS_ADDRESS", "must be host:port (IPv4) or off")
                }
                result.metricsAddress = value
            }
        }
        if let value = try integer("SUNDIAL_WORK_MAX_PER_QUEUE") { result.streamLimits.workPerQueue = value }
        if let value = try integer("SUNDIAL_WORK_MAX_BYTES") { result.streamLimits.workBytes = value }
        if let value = try duration("SUNDIAL_WORK_DUPLICATE_WINDOW") { result.streamLimits.workDuplicateWindow = value }
        if let value = try integer("SUNDIAL_STREAM_REPLICAS") { result.streamLimits.replicas = value }
        if let value = try integer("SUNDIAL_RESULTS_MAX_PER_TENANT") { result.streamLimits.resultsPerTenant = value }
        if let value = try integer("SUNDIAL_RESULTS_MAX_BYTES") { result.streamLimits.resultsBytes = value }
        if let value = try integer("SUNDIAL_EVENTS_MAX_PER_SUBJECT") { result.streamLimits.eventsPerSubject = value }
        if let value = try integer("SUNDIAL_EVENTS_MAX_BYTES") { result.streamLimits.eventsBytes = value }
        if let value = try duration("SUNDIAL_EVENTS_MAX_AGE") { result.streamLimits.eventsMaxAge = value }
        if let value = try integer("SUNDIAL_POISON_MAX_BYTES") { result.streamLimits.poisonBytes = value }
        if let value = try integer("SUNDIAL_DISPATCHER_POISON_AFTER") { result.dispatcher.poisonAfterDeliveries = value }
        if let horizon = try duration("SUNDIAL_HORIZON") {
            result.ingest.horizon = horizon
            result.planner.horizon = horizon
        }
        if let threshold = try duration("SUNDIAL_MISFIRE_THRESHOLD") {
            result.ingest.misfireThreshold = threshold
            result.planner.misfireThreshold = threshold
        }
        if let value = try integer("SUNDIAL_MAX_PAYLOAD_BYTES") { result.ingest.maxPayloadBytes = value }
        if let value = try integer("SUNDIAL_TENANT_MAX_ACTIVE_TIMERS") { result.ingest.maxActiveTimersPerTenant = value }
        if let value = try integer("SUNDIAL_TENANT_MAX_PAYLOAD_BYTES") { result.ingest.maxPayloadBytesPerTenant = value }
        for (key, tier) in [
            ("SUNDIAL_ADMISSION_RATE_NEW", Tier.new), ("SUNDIAL_ADMISSION_RATE_STANDARD", .standard),
            ("SUNDIAL_ADMISSION_RATE_BULK", .bulk),
        ] {
            if let value = try number(key) { result.ingest.admissionRates[tier] = value }
        }
        if let value = try duration("SUNDIAL_ADMISSION_BURST") { result.ingest.admissionBurst = value }
        if let value = try integer("SUNDIAL_INGEST_MAX_QUEUED_PER_TENANT") { result.ingest.maxQueuedPerTenant = value }
        if let value = try integer("SUNDIAL_INGEST_CREATE_BATCH") { result.ingest.createBatch = value }
        if let value = try integer("SUNDIAL_INGEST_CREATE_FLUSHES") { result.ingest.createFlushes = value }
        if let value = env["SUNDIAL_PLANNER_INSTANCE_ID"] { result.planner.instanceID = value }
        if let value = try duration("SUNDIAL_PLANNER_CLAIM_INTERVAL") { result.planner.claimInterval = value }
        if let value = try integer("SUNDIAL_PLANNER_CLAIM_BATCH") { result.planner.claimBatchSize = value }
        if let value = try integer("SUNDIAL_PLANNER_CLAIM_BUDGET_BYTES") { result.planner.claimBudget.bytes = value }
        if let value = try integer("SUNDIAL_PLANNER_CLAIM_BUDGET_RUNS") { result.planner.claimBudget.runs = value }
        if let value = try duration("SUNDIAL_PLANNER_LEASE_TTL") { result.planner.leaseTTL = value }
        if let value = try integer("SUNDIAL_PLANNER_MAX_SHARDS") { result.planner.maxShards = value }
        if let value = try duration("SUNDIAL_PLANNER_RESCUE_GRACE") { result.planner.rescueGrace = value }
        if let value = try integer("SUNDIAL_PLANNER_LOAD_CONCURRENCY") { result.planner.loadConcurrency = value }
        if let value = try duration("SUNDIAL_PLANNER_REDISPATCH_AFTER") { result.planner.redispatchAfter = value }
        if let value = env["SUNDIAL_RETENTION"] {
            if value == "off" {
                result.planner.retention = nil
            } else {
                guard let parsed = ScheduleDuration.parse(value) else {
                    throw SundialError.invalid("SUNDIAL_RETENTION", "is not a duration like 7d or 12h, nor off: \(value)")
                }
                result.planner.retention = parsed
            }
        }
        if let value = try integer("SUNDIAL_REAPER_BATCH") { result.planner.reaperBatchSize = value }
        if let value = try integer("SUNDIAL_RUN_PARTITION_LOOKAHEAD_DAYS") { result.planner.partitionLookaheadDays = value }
        if let value = try integer("SUNDIAL_RUN_PARTITION_DAYS") { result.planner.partitionDays = value }
        if let value = try integer("SUNDIAL_DISPATCHER_PIPELINES") { result.dispatcher.pipelines = value }
        if let value = try integer("SUNDIAL_DISPATCHER_FETCH_BATCH") { result.dispatcher.fetchBatch = value }
        if let value = env["SUNDIAL_DISPATCHER_FAIRNESS"] {
            guard value == "on" || value == "off" else {
                throw SundialError.invalid("SUNDIAL_DISPATCHER_FAIRNESS", "must be on or off")
            }
            result.dispatcher.fairness.enforce = value == "on"
        }
        if let value = try integer("SUNDIAL_DISPATCHER_MAX_DEFERRED") { result.dispatcher.fairness.maximumDeferred = value }
        if let value = try number("SUNDIAL_DISPATCHER_RETRY_BUDGET_RATIO") { result.dispatcher.fairness.retryBudgetRatio = value }
        if let value = try number("SUNDIAL_DISPATCHER_RETRY_BUDGET_FLOOR") { result.dispatcher.fairness.retryBudgetFloor = value }
        if let value = try number("SUNDIAL_DISPATCHER_RETRY_BUDGET_BURST") { result.dispatcher.fairness.retryBudgetBurst = value }
        if let value = try integer("SUNDIAL_DISPATCHER_MAX_REFUNDS") { result.dispatcher.maximumRefunds = value }
        if let value = env["SUNDIAL_DISPATCHER_INSTANCE_ID"] { result.dispatcher.instanceID = value }
        if let value = env["SUNDIAL_GOVERNOR_INSTANCE_ID"] { result.governor.instanceID = value }
        if let value = try duration("SUNDIAL_GOVERNOR_PERIOD") { result.governor.period = value }
        if let value = try duration("SUNDIAL_GOVERNOR_LEASE_TTL") { result.governor.leaseTTL = value }
        if let value = try number("SUNDIAL_GOVERNOR_CAPACITY") { result.governor.core.capacity.fixed = value }
        if let value = try duration("SUNDIAL_GOVERNOR_EXECUTOR_IDLE_AFTER") { result.governor.executorIdleAfter = value }
        if let value = env["SUNDIAL_GOVERNOR_BREAKERS"] {
            guard value == "on" || value == "off" else { throw SundialError.invalid("SUNDIAL_GOVERNOR_BREAKERS", "must be on or off") }
            result.governor.core.breakers = value == "on"
        }
        if let value = try duration("SUNDIAL_GOVERNOR_BREAKER_WINDOW") { result.governor.core.breaker.window = value }
        if let value = try integer("SUNDIAL_GOVERNOR_BREAKER_MIN_SAMPLES") { result.governor.core.breaker.minimumSamples = value }
        if let value = try number("SUNDIAL_GOVERNOR_BREAKER_FAILURE_RATIO") { result.governor.core.breaker.failureRatio = value }
        if let value = try duration("SUNDIAL_GOVERNOR_BREAKER_COOL_DOWN") { result.governor.core.breaker.coolDown = value }
        if let value = try duration("SUNDIAL_GOVERNOR_BREAKER_MAX_COOL_DOWN") { result.governor.core.breaker.maximumCoolDown = value }
        if let value = try integer("SUNDIAL_GOVERNOR_BREAKER_PROBES") { result.governor.core.breaker.probes = value }
        if let value = try number("SUNDIAL_GOVERNOR_TARGET_UTILISATION") { result.governor.core.policy.targetUtilisation = value }
        if let value = try duration("SUNDIAL_GOVERNOR_NEW_TENANT_AGE") { result.governor.core.classifier.newTenantAge = value }
        if let value = try number("SUNDIAL_GOVERNOR_BULK_RATE") {
            result.governor.core.classifier.enterBulkRate = value
            result.governor.core.classifier.exitBulkRate = value * 0.4
        }
        if let value = try integer("SUNDIAL_GOVERNOR_BULK_BACKLOG") {
            result.governor.core.classifier.enterBulkBacklog = value
            result.governor.core.classifier.exitBulkBacklog = value / 10
        }
        if let value = env["SUNDIAL_GOVERNOR_WEIGHTS"] {
            // new:4,standard:2,bulk:1
            var weights = TierWeights()
            for part in value.split(separator: ",") {
                let pair = part.split(separator: ":")
                guard pair.count == 2, let tier = Tier(rawValue: String(pair[0])), let w = Double(pair[1]), w > 0 else {
                    throw SundialError.invalid("SUNDIAL_GOVERNOR_WEIGHTS", "must look like new:4,standard:2,bulk:1")
                }
                switch tier {
                case .new: weights.new = w
                case .standard: weights.standard = w
                case .bulk: weights.bulk = w
                }
            }
            result.governor.core.weights = weights
        }
        result.applyNamespace()
        result.applyStreamLimits()
        return result
    }

    /// Hands `namespace` (with the shard count, once known) to every service.
    public mutating func applyNamespace() {
        governor.namespace = namespace
        ingest.namespace = namespace
        planner.namespace = namespace
        dispatcher.namespace = namespace
    }

    /// Gives a database without timers the asked-for shard count (`shards`), then takes the
    /// database's count into the namespace of every service: Ingest shards new timers by it,
    /// the planners split it, and K fire streams list their shards' subjects.
    public mutating func settleShards(_ leases: LeaseStore, logger: Logger) async throws {
        if let shards {
            switch try await leases.settleShardCount(shards) {
            case .unchanged: break
            case .changed(let from, let to): logger.notice("database re-sharded from \(from) to \(to) shards (it held no timers)")
            case .refused(let stored):
                throw SundialError.invalid(
                    "SUNDIAL_SHARDS",
                    "is \(shards), but this database holds timers sharded \(stored) ways (re-sharding is not supported); set \(stored) or unset it")
            }
        }
        namespace.shardCount = try await leases.shardCount()
        guard namespace.fireStreamCount <= namespace.shardCount else {
            throw SundialError.invalid("SUNDIAL_FIRE_STREAMS", "must not exceed the shard count (\(namespace.shardCount))")
        }
        applyNamespace()
    }
}

/// Connects to NATS and Postgres, migrates, and runs the chosen services in one
/// `ServiceGroup` that shuts down gracefully on SIGTERM/SIGINT.
public enum ServiceRunner {
    public static func run(_ components: [SundialComponent], environment: ServiceEnvironment, logger: Logger)
        async throws
    {
        var environment = environment
        try environment.ingest.validate()
        try environment.planner.validate()
        try environment.dispatcher.validate()
        try environment.governor.validate()
        var pgConfig = try PostgresConfiguration(url: environment.postgresURL)
        pgConfig.searchPath = "\"\(environment.schema)\""
        pgConfig.applicationName = "sundial-" + components.map(\.rawValue).joined(separator: "+")
        let pool = PostgresPool(configuration: pgConfig, size: environment.postgresPoolSize, logger: logger)
        try await SundialDatabase.migrate(pool, schema: environment.schema)
        try await environment.settleShards(LeaseStore(pool: pool), logger: logger)

        // Request/reply wants every reply written at once; bulk fire traffic wants batching.
        var apiOptions = NATSConnectionOptions(url: environment.natsURL, name: "sundial-api")
        apiOptions.sendAsap = true
        apiOptions.user = environment.natsUser
        apiOptions.password = environment.natsPassword
        var bulkOptions = NATSConnectionOptions(url: environment.natsURL, name: "sundial-bulk")
        bulkOptions.user = environment.natsUser
        bulkOptions.password = environment.natsPassword
        // Shorter than the planner's lease TTL, so a NATS outage cannot hold the planning
        // loop past its leases; what fails is rescued (planner) or redelivered (dispatcher).
        bulkOptions.jetStreamRetryBudget = min(.seconds(10), environment.planner.leaseTTL / 2)
        let api = try await NATSConnection.connect(apiOptions, logger: logger)
        let bulk = try await NATSConnection.connect(bulkOptions, logger: logger)

        let store = TimerStore(pool: pool)
        var services: [any Service] = []
        let started = Atomic<Bool>(false)
        if let address = environment.metricsAddress {
            // Bound before anything runs: a taken port is a startup error.
            let endpoint = try MetricsEndpoint(
                configuration: .init(address: address), registry: metricsRegistry, logger: logger,
                ready: { started.load(ordering: .acquiring) && api.isConnected && bulk.isConnected && !pool.isDown })
            services.append(endpoint)
            services.append(ProcessMetricsSampler(connections: ["api": api, "bulk": bulk], pool: pool))
        }
        for component in components {
            switch component {
            case .ingest:
                services.append(try IngestService(config: environment.ingest, connection: api, store: store, logger: logger))
            case .planner:
                services.append(
                    try PlannerService(
                        config: environment.planner, connection: bulk, timers: store, leases: LeaseStore(pool: pool),
                        logger: logger))
            case .dispatcher:
                services.append(
                    try DispatcherService(config: environment.dispatcher, connection: bulk, timers: store, logger: logger))
            case .governor:
                services.append(
                    try GovernorService(
                        config: environment.governor, connection: bulk, tenants: TenantStore(pool: pool), logger: logger))
            }
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info("sundial running \(components.map(\.rawValue)) against \(environment.natsURL)")
        started.store(true, ordering: .releasing)
        do {
            try await group.run()
        } catch {
            logger.error("service group ended with error: \(error)")
            await api.close()
            await bulk.close()
            await pool.close()
            throw error
        }
        await api.close()
        await bulk.close()
        await pool.close()
    }
}

/// Entry point of the `services/*` executables.
public enum ServiceMain {
    public static func run(_ components: [SundialComponent]) async {
        let environment: ServiceEnvironment
        do {
            environment = try ServiceEnvironment.fromEnvironment()
        } catch {
            FileHandle.standardError.write(Data("configuration error: \(error)\n".utf8))
            exit(2)
        }
        let logger = SundialLogging.bootstrap(
            level: environment.logLevel, label: "sundial", format: environment.logFormat,
            service: components.map(\.rawValue).joined(separator: "+"))
        do {
            try await ServiceRunner.run(components, environment: environment, logger: logger)
        } catch {
            logger.critical("fatal: \(error)")
            // A setting found invalid at startup (a config check, the database's shard count)
            // is a configuration error, like a malformed variable.
            if let error = error as? SundialError, error.code == .invalidArgument { exit(2) }
            exit(1)
        }
    }
}

/// The process's Prometheus registry: swift-metrics is bootstrapped with it once, on first
/// use by a server entry point (`sundial dev` or a service executable).
let metricsRegistry: PrometheusCollectorRegistry = MetricsBootstrap.prometheus()

/// Process-wide metrics every 5 s: NATS connections (connected, reconnects) and the Postgres
/// pool (time callers waited for a connection, whether it is failing fast).
struct ProcessMetricsSampler: Service {
    let connections: [String: NATSConnection]
    let pool: PostgresPool

    func run() async throws {
        let mirror = MetricsMirror()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                for (name, connection) in connections {
                    mirror.gauge(MetricName.natsConnected, connection.isConnected ? 1 : 0, [("connection", name)])
                    mirror.counter(MetricName.natsReconnects, connection.reconnectCount, [("connection", name)])
                }
                let (waits, waited) = pool.waitTotals
                mirror.counter(MetricName.postgresPoolWaits, waits)
                waitedSeconds.record(waited)
                mirror.gauge(MetricName.postgresDown, pool.isDown ? 1 : 0)
                try? await Task.sleep(for: .seconds(5))
            }
        }
    }

    private let waitedSeconds = SecondsCounter(MetricName.postgresPoolWait)
}

/// A floating-point seconds counter fed with a growing total duration.
final class SecondsCounter: Sendable {
    private let counter: CoreMetrics.FloatingPointCounter
    private let last = Mutex<Duration>(.zero)

    init(_ name: String) {
        counter = CoreMetrics.FloatingPointCounter(label: name)
    }

    func record(_ total: Duration) {
        let growth = last.withLock { last -> Duration in
            defer { last = max(last, total) }
            return total - last
        }
        if growth > .zero {
            counter.increment(by: Double(growth.components.seconds) + Double(growth.components.attoseconds) / 1e18)
        }
    }
}

/// Logging setup for executables: one event per line on stderr, as text or JSON.
public enum SundialLogging {
    public enum Format: String, Sendable {
        case text, json
    }

    public static func bootstrap(level: Logger.Level, label: String, format: Format = .text, service: String = "sundial")
        -> Logger
    {
        let instance = ProcessInfo.processInfo.hostName + ":" + String(getpid())
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label, service: service, instance: instance)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

