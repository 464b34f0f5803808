import Foundation
import Logging
import ServiceLifecycle
import SundialClient
import SundialContract
import SundialDispatcher
import SundialExecutor
import SundialFairness
import SundialGovernor
import SundialIngest
import SundialLocalCluster
import SundialMessaging
import SundialNATS
import SundialPlanner
import SundialPostgres
import SundialProto
import SundialStore
import SundialTestSupport
import Synchronization

/// A complete Sundial for one test: real nats-server and Postgres, its own schema and its own
/// subject/stream namespace, with the chosen services running in-process.
final class TestSystem: Sendable {
    let name: String
    let namespace: SundialNamespace
    let schema: String
    let nats: LocalNATSServer
    /// What clients connect to: `nats`'s URL, or every node of `Options.natsCluster`.
    let natsURL: String
    let pool: PostgresPool
    let api: NATSConnection
    let bulk: NATSConnection
    let store: TimerStore
    let ingest: IngestService?
    let planner: PlannerService?
    let dispatcher: DispatcherService?
    let governor: GovernorService?
    /// The in-process Planner's config (also when none runs): `startPlanner` starts more.
    let plannerConfig: PlannerConfig
    private let tasks: Mutex<[Task<Void, Never>]>

    struct Options {
        var horizon: Duration = .seconds(300)
        var misfireThreshold: Duration = .seconds(60)
        var ingest = true
        var planner = true
        var dispatcher = true
        var leaseTTL: Duration = .seconds(3)
        var nats: LocalNATSServer? = nil
        /// A JetStream cluster to run on instead (clients get every node's URL); set
        /// `streamLimits.replicas` to replicate the streams.
        var natsCluster: LocalNATSCluster? = nil
        /// Login for the services' connections (an auth-enabled `nats`); nil: none.
        var natsUser: String? = nil
        var natsPassword: String? = nil
        /// Nil: a fresh isolated namespace. A private server may use `.standard`.
        var namespace: SundialNamespace? = nil
        /// Fire streams (K) of the fresh namespace.
        var fireStreams = 1
        /// Run a Fairness-Governor in-process with this config (its namespace is set for you).
        var governor: GovernorConfig? = nil
        /// The dispatcher enforces quotas (false: plain FIFO).
        var fairness = true
        var streamLimits = StreamLimits()
        /// A Postgres of the test's own (for tests that stop it); nil: the shared one.
        var postgres: LocalPostgresServer? = nil
        /// Applied to the in-process Ingest's config.
        var ingestTuning: @Sendable (inout IngestConfig) -> Void = { _ in }
        /// Applied to the in-process Planner's config (after the test defaults).
        var plannerTuning: @Sendable (inout PlannerConfig) -> Void = { _ in }
    }

    /// Governor settings for tests: fast periods, the given fixed capacity.
    static func governorConfig(capacity: Double?, bulkBacklog: Int = 300, newTenantAge: Duration = .seconds(3600))
        -> GovernorConfig
    {
        var config = GovernorConfig()
        config.period = .milliseconds(250)
        config.leaseTTL = .seconds(1)
        config.core.capacity.fixed = capacity
        config.core.classifier.enterBulkBacklog = bulkBacklog
        config.core.classifier.exitBulkBacklog = bulkBacklog / 10
        config.core.classifier.newTenantAge = newTenantAge
        config.core.reportTTL = .seconds(3)
        return config
    }

    static func start(_ name: String, _ options: Options = Options()) async throws -> TestSystem {
        let id = "\(name.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(12))\(UInt32.random(in: 0...UInt32.max))"
        var namespace = options.namespace ?? SundialNamespace.isolated(id)
        if options.namespace == nil { namespace.fireStreamCount = options.fireStreams }
        let schema = TestPostgres.freshSchema(name)
        let nats: LocalNATSServer
        if let cluster = options.natsCluster {
            nats = cluster.nodes[0]
        } else if let given = options.nats {
            nats = given
        } else {
            nats = try await TestNATS.server()
        }
        let natsURL = options.natsCluster?.url ?? nats.url
        let pool = try await TestPostgres.pool(schema: schema, size: 6, server: options.postgres)
        try await SundialDatabase.migrate(pool, schema: schema)
        // The database's shard count (a fresh schema: the default), as the services settle it at startup.
        namespace.shardCount = try await LeaseStore(pool: pool).shardCount()
        let api = try await TestNATS.connect(
            url: natsURL, name: "\(name)-api", user: options.natsUser, password: options.natsPassword)
        let bulk = try await TestNATS.connect(
            url: natsURL, name: "\(name)-bulk", sendAsap: false, user: options.natsUser, password: options.natsPassword)
        try await SundialTopology.ensure(api, namespace: namespace, limits: options.streamLimits)
        let store = TimerStore(pool: pool)
        let logger = TestNATS.logger

        var ingestConfig = IngestConfig()
        ingestConfig.namespace = namespace
        ingestConfig.streamLimits = options.streamLimits
        options.ingestTuning(&ingestConfig)
        ingestConfig.horizon = options.horizon
        ingestConfig.misfireThreshold = options.misfireThreshold
        var plannerConfig = PlannerConfig()
        plannerConfig.namespace = namespace
        plannerConfig.streamLimits = options.streamLimits
        plannerConfig.horizon = options.horizon
        plannerConfig.misfireThreshold = options.misfireThreshold
        plannerConfig.claimInterval = .milliseconds(200)
        plannerConfig.leaseTTL = options.leaseTTL
        plannerConfig.rescueGrace = .seconds(5)
        plannerConfig.rescueInterval = .seconds(1)
        options.plannerTuning(&plannerConfig)
        var dispatcherConfig = DispatcherConfig()
        dispatcherConfig.namespace = namespace
        dispatcherConfig.streamLimits = options.streamLimits
        dispatcherConfig.queueFullDelay = .seconds(1)
        dispatcherConfig.fetchMaxWait = .milliseconds(500)
        dispatcherConfig.demandReportInterval = .milliseconds(250)
        dispatcherConfig.planRefresh = .seconds(1)
        dispatcherConfig.fairness.enforce = options.fairness
        // Below the tests' 5 s rescue grace, so deferred fires are not rescued meanwhile.
        dispatcherConfig.recordDeferralsBeyond = .seconds(2)

        let ingest = options.ingest
            ? try IngestService(config: ingestConfig, connection: api, store: store, logger: logger) : nil
        let planner = options.planner
            ? try PlannerService(
                config: plannerConfig, connection: bulk, timers: store, leases: LeaseStore(pool: pool), logger: logger)
            : nil
        let dispatcher = options.dispatcher
            ? try DispatcherService(config: dispatcherConfig, connection: bulk, timers: store, logger: logger) : nil
        let governor = try options.governor.map { config in
            var config = config
            config.namespace = namespace
            config.streamLimits = options.streamLimits
            return try GovernorService(config: config, connection: bulk, tenants: TenantStore(pool: pool), logger: logger)
        }
        let system = TestSystem(
            name: name, namespace: namespace, schema: schema, nats: nats, natsURL: natsURL, pool: pool, api: api, bulk: bulk,
            store: store, ingest: ingest, planner: planner, dispatcher: dispatcher, governor: governor,
            plannerConfig: plannerConfig)
        for service in [ingest as (any Service)?, planner, dispatcher, governor].compactMap({ $0 }) {
            system.launch(service)
        }
        if ingest != nil { try await system.waitForIngest() }
        return system
    }

    private init(
        name: String, namespace: SundialNamespace, schema: String, nats: LocalNATSServer, natsURL: String,
        pool: PostgresPool,
        api: NATSConnection, bulk: NATSConnection, store: TimerStore, ingest: IngestService?,
        planner: PlannerService?, dispatcher: DispatcherService?, governor: GovernorService?,
        plannerConfig: PlannerConfig
    ) {
        self.plannerConfig = plannerConfig
        self.name = name
        self.namespace = namespace
        self.schema = schema
        self.nats = nats
        self.natsURL = natsURL
        self.pool = pool
        self.api = api
        self.bulk = bulk
        self.store = store
        self.ingest = ingest
        self.planner = planner
        self.dispatcher = dispatcher
        self.governor = governor
        tasks = Mutex([])
    }

    /// Starts one more governor in-process; cancelling the returned task stops it gracefully.
    func startGovernor(_ config: GovernorConfig) throws -> (GovernorService, Task<Void, Never>) {
        var config = config
        config.namespace = namespace
        let governor = try GovernorService(
            config: config, connection: bulk, tenants: TenantStore(pool: pool), logger: TestNATS.logger)
        return (governor, launch(governor))
    }

    /// Starts one more planner in-process, with the system planner's settings and its own
    /// instance id; cancelling the returned task stops it gracefully (its shards handed back).
    func startPlanner(instanceID: String) throws -> (PlannerService, Task<Void, Never>) {
        var config = plannerConfig
        config.instanceID = instanceID
        let planner = try PlannerService(
            config: config, connection: bulk, timers: store, leases: LeaseStore(pool: pool), logger: TestNATS.logger)
        return (planner, launch(planner))
    }

    /// Starts a dispatcher in-process (for systems started with `dispatcher = false`);
    /// cancelling the returned task stops it gracefully. `fairness`: enforce the plan, with
    /// the system's own dispatcher's test timings.
    func startDispatcher(fetchBatch: Int = 250, pipelines: Int = 1, fairness: Bool = false) throws
        -> (DispatcherService, Task<Void, Never>)
    {
        var config = DispatcherConfig()
        config.namespace = namespace
        config.fetchBatch = fetchBatch
        config.pipelines = pipelines
        config.fetchMaxWait = .milliseconds(500)
        config.fairness.enforce = fairness
        if fairness {
            config.demandReportInterval = .milliseconds(250)
            config.planRefresh = .seconds(1)
            config.recordDeferralsBeyond = .seconds(2)
        }
        let dispatcher = try DispatcherService(config: config, connection: bulk, timers: store, logger: TestNATS.logger)
        return (dispatcher, launch(dispatcher))
    }

    @discardableResult
    private func launch(_ service: any Service) -> Task<Void, Never> {
        let task = Task {
            do { try await service.run() } catch {
                if !Task.isCancelled { TestNATS.logger.error("service failed: \(error)") }
            }
        }
        tasks.withLock { $0.append(task) }
        return task
    }

    /// Ingest subscribes asynchronously: wait until it answers on this system's own subjects
    /// (discovery pings would be answered by other tests' instances on the shared server).
    private func waitForIngest() async throws {
        let client = client(tenant: "readiness")
        try await eventually("ingest serves \(namespace.subjectRoot)", timeout: .seconds(10)) {
            (try? await client.raw(.get, [])) != nil
        }
    }

    func client(tenant: String) -> TimersClient {
        TimersClient(connection: api, tenant: tenant, namespace: namespace)
    }

    func worker(queue: String) async throws -> SundialWorker {
        var options = SundialWorker.Options()
        options.namespace = namespace
        return try await SundialWorker.connect(connection: api, queue: queue, options: options)
    }

    /// Environment for a service subprocess pointed at this system.
    func serviceEnvironment(_ extra: [String: String] = [:]) async throws -> [String: String] {
        let postgres = try await TestPostgres.server()
        var env = ProcessInfo.processInfo.environment
        env["SUNDIAL_NATS_URL"] = natsURL
        env["SUNDIAL_POSTGRES_URL"] = postgres.url
        env["SUNDIAL_POSTGRES_SCHEMA"] = schema
        env["SUNDIAL_METRICS_ADDRESS"] = "off"  // tests that want metrics pass an address
        env["SUNDIAL_SUBJECT_ROOT"] = namespace.subjectRoot
        env["SUNDIAL_STREAM_PREFIX"] = namespace.streamPrefix
        env["SUNDIAL_LOG_LEVEL"] = "warning"
        for (key, value) in extra { env[key] = value }
        return env
    }

    func shutdown() async {
        let running = tasks.withLock { $0 }
        for task in running { task.cancel() }
        for task in running { await task.value }
        await api.close()
        await bulk.close()
        await pool.close()
    }
}

/// Runs `body` with a started system and always shuts it down, also when the body throws.
func withTestSystem<T>(
    _ name: String, _ options: TestSystem.Options = TestSystem.Options(),
    _ body: (TestSystem) async throws -> T
) async throws -> T {
    let system = try await TestSystem.start(name, options)
    do {
        let result = try await body(system)
        await system.shutdown()
        return result
    } catch {
        await system.shutdown()
        throw error
    }
}

/// Collects jobs from a worker until `count` arrived or `timeout` passed.
func collectJobs(_ worker: SundialWorker, count: Int, timeout: Duration) async throws -> [(SundialJob, Date)] {
    var jobs: [(SundialJob, Date)] = []
    let deadline = ContinuousClock.now + timeout
    while jobs.count < count, ContinuousClock.now < deadline {
        for job in try await worker.next(max: min(256, count - jobs.count), maxWait: .milliseconds(500)) {
            jobs.append((job, Date()))
            try await worker.complete(job)
        }
    }
    return jobs
}

extension Sundial_V1_CreateTimerRequest {
    static func delay(_ duration: Duration, queue: String, payload: String = "", key: String = "") -> Self {
        var request = Sundial_V1_CreateTimerRequest()
        request.queue = queue
        request.payload = Data(payload.utf8)
        request.idempotencyKey = key
        request.schedule.delay.duration = Google_Protobuf_Duration(
            seconds: duration.components.seconds, nanos: Int32(duration.components.attoseconds / 1_000_000_000))
        return request
    }
}

/// The first message of `subscription` within `timeout`, or nil.
func firstMessage(_ subscription: NATSSubscription, within timeout: Duration) async throws -> NATSMessage? {
    try await withThrowingTaskGroup(of: NATSMessage?.self) { group in
        group.addTask {
            for await message in subscription { return message }
            return nil
        }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        return try await group.next() ?? nil
    }
}

/// The error a request failed with; fails the test if it succeeded.
func sundialError(_ body: () async throws -> Void) async throws -> SundialError {
    do {
        try await body()
    } catch let error as SundialError {
        return error
    }
    throw TestFailure("the request succeeded but should have failed")
}
