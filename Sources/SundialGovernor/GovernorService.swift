import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import SundialContract
import SundialFairness
import SundialMessaging
import SundialNATS
import SundialObservability
import SundialProto
import SundialSchedule
import SundialStore
import Synchronization

/// Governor settings; defaults are production values (see services/governor/README.md).
public struct GovernorConfig: Sendable {
    public var namespace: SundialNamespace = .standard
    /// Stream bounds, applied when this service creates or updates the streams at startup.
    public var streamLimits = StreamLimits()
    /// Identifies this instance in the leader lease (default: host + pid + random).
    public var instanceID: String = GovernorConfig.defaultInstanceID()
    /// How often the leader computes and publishes a plan (and renews its lease).
    public var period: Duration = .milliseconds(500)
    /// Leader lease lifetime; a standby takes over within about this long after the leader dies.
    public var leaseTTL: Duration = .seconds(5)
    /// How long tenant profiles (age, trial, pin) are cached before re-reading Postgres.
    public var profileRefresh: Duration = .seconds(30)
    /// Plans listing more tenants than this are published compacted (satisfied standard
    /// tenants left out; dispatchers then treat them as `new`, which only loosens their bucket).
    public var compactAbove = 5000
    /// Largest plan value put in KV; a larger plan is trimmed (`QuotaPlan.fitting`). It must
    /// fit the server's max_payload (1 MiB by default), which also caps it at run time.
    public var maxPlanBytes = 900 * 1024
    /// An executor consumer with neither an ack nor a waiting pull for this long is gone, and
    /// its queue's capacity with it (`WorkQueueSampler`): longer than the slowest job's run.
    public var executorIdleAfter: Duration = .seconds(10)
    /// Tiers, weights, policy, capacity measurement (see `GovernorCore.Configuration`).
    public var core = GovernorCore<ContinuousClock>.Configuration()

    public init() {}

    public static func defaultInstanceID() -> String {
        "governor-\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
    }

    public func validate() throws(SundialError) {
        try streamLimits.validate()
        guard maxPlanBytes >= 16 * 1024 else { throw .invalid("governor.max_plan_bytes", "must be at least 16 KiB") }
        guard period >= .milliseconds(50), period <= .seconds(60) else {
            throw .invalid("governor.period", "must be within 50ms…60s")
        }
        guard executorIdleAfter >= period * 2, executorIdleAfter <= .seconds(3600) else {
            throw .invalid("governor.executor_idle_after", "must be within two periods…1h")
        }
        guard leaseTTL >= period * 2 else { throw .invalid("governor.lease_ttl", "must be at least twice the period") }
        guard !instanceID.isEmpty else { throw .invalid("governor.instance_id", "must not be empty") }
        let u = core.policy.targetUtilisation
        guard u > 0, u <= 1 else { throw .invalid("governor.target_utilisation", "must be in (0, 1]") }
        if let fixed = core.capacity.fixed, !(fixed > 0 && fixed.isFinite) {
            throw .invalid("governor.capacity", "must be a positive number of jobs/s")
        }
        if let problem = core.breaker.problem { throw .invalid("governor.breaker", problem) }
        for tier in Tier.allCases where !(core.weights[tier] > 0) {
            throw .invalid("governor.weight_\(tier)", "must be positive")
        }
    }
}

/// What `$SRV.STATS` shows, updated every period.
public struct GovernorSnapshot: Sendable {
    /// One queue with live executors as the last work sample saw it.
    public struct QueueCapacity: Sendable {
        public var estimate: Double?
        public var consumptionRate: Double
        public var saturated: Bool
        public var backlog: UInt64
    }

    public var leader = false
    public var leaderID: String?
    public var plan: FairnessPlan?
    public var planBytes = 0
    /// Per queue with live executors.
    public var queues: [String: QueueCapacity] = [:]
    public var reportsReceived = 0
    public var reportsRejected = 0
    public var publishFailures = 0
    /// Tenant entries left out of the last plan to fit `maxPlanBytes` (they get their queue's
    /// tier defaults).
    public var planTenantsDropped = 0
    /// Demand-report lines whose tenant is not a valid tenant name (ignored).
    public var reportLinesRejected = 0
    /// Queues holding jobs that no live executor takes (not counted as saturation), and how many.
    public var queuesWithoutExecutors: [String: UInt64] = [:]
    /// Circuit breakers not closed: per queue, and per (queue, tenant); breakers opened so far.
    public var queueBreakers: [String: BreakerState] = [:]
    public var tenantBreakers: [QueueTenant: BreakerState] = [:]
    public var breakersOpened = 0
    /// Per queue with a breaker in memory: downstream failures ÷ outcomes in its window (while
    /// closed), or the ratio that opened it.
    public var queueFailureRatios: [String: Double] = [:]
    /// Queues paused by an operator, as last read.
    public var pausedQueues: Set<String> = []
    /// Queues with their own breaker settings, as in force.
    public var breakerSettings: [String: CircuitBreaker<ContinuousClock>.Configuration] = [:]
}

/// The Fairness-Governor: gathers demand reports from the Dispatchers and samples the work stream,
/// and — while it holds the leader lease — computes a `QuotaPlan` every period and publishes it
/// to the quotas KV bucket, where the Dispatchers watch it. A standby keeps listening and takes
/// over when the lease expires; the plan in KV outlives any governor.
public final class GovernorService: Service, Sendable {
    public let config: GovernorConfig
    let connection: NATSConnection
    let tenants: TenantStore
    let logger: Logger
    private let core: Mutex<GovernorCore<ContinuousClock>>
    private let workQueues: Mutex<WorkQueueSampler<ContinuousClock>>
    private let state = Mutex(GovernorSnapshot())

    public init(config: GovernorConfig, connection: NATSConnection, tenants: TenantStore, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.connection = connection
        self.tenants = tenants
        self.logger = logger
        self.core = Mutex(GovernorCore(configuration: config.core))
        self.workQueues = Mutex(WorkQueueSampler(idleAfter: config.executorIdleAfter))
    }

    public var snapshot: GovernorSnapshot { state.withLock { $0 } }

    public func run() async throws {
        let namespace = config.namespace
        try await SundialTopology.ensure(connection, namespace: namespace, limits: config.streamLimits)
        let bucket = try await KeyValueBucket.ensure(
            namespace.quotasBucket, connection: connection, replicas: config.streamLimits.replicas)
        let lease = GovernorLease(
            bucket: bucket, key: SundialNamespace.governorLeaderKey, owner: config.instanceID, ttl: config.leaseTTL)
        let reports = try await connection.subscribe(subject: namespace.fairnessDemand)
        let micro = MicroService(
            identity: .init(
                name: SundialNamespace.governorServiceName, version: "0.1.0",
                description: "Sundial fairness governor: per-queue, per-tenant quotas from demand and capacity"),
            connection: connection, endpoints: [], logger: logger, extraStats: { [self] in Self.stats(self.snapshot) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await micro.run() }
            group.addTask {
                for await message in reports { self.ingest(message) }
            }
            group.addTask { await self.sampleMetrics() }
            group.addTask {
                await cancelWhenGracefulShutdown { await self.loop(bucket: bucket, lease: lease) }
                await lease.release()
                reports.unsubscribe()
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Mirrors the snapshot into metrics every 5 s: leadership, and per queue its capacity
    /// (0 while unknown), backlog (also of queues without live executors), throttled tenants
    /// and circuit breakers. Only the leader states them; a standby (or a former leader)
    /// reports 0 for every queue it has seen, so sums and maxima over instances stay right.
    private func sampleMetrics() async {
        let labels = LabelBudget()
        let mirror = MetricsMirror(labels: labels)
        var seen = Set<String>()
        while !Task.isCancelled {
            let s = snapshot
            mirror.gauge(MetricName.governorLeader, s.leader ? 1 : 0)
            mirror.gauge(MetricName.planGeneration, Double(s.plan?.generation ?? 0))
            mirror.counter(MetricName.breakersOpened, s.breakersOpened)
            if s.leader {
                let queues = Set(s.queues.keys).union(s.plan?.queues.keys.map { $0 } ?? [])
                    .union(s.queueBreakers.keys).union(s.pausedQueues).union(s.tenantBreakers.keys.map(\.queue))
                    .union(s.queuesWithoutExecutors.keys)
                for queue in queues where seen.count < labels.maximumQueues { seen.insert(queue) }
            }
            var notClosed: [String: Int] = [:]
            for key in s.tenantBreakers.keys { notClosed[key.queue, default: 0] += 1 }
            for queue in seen {
                let dims = [("queue", queue)]
                guard s.leader else {
                    for name in [MetricName.queueCapacity, MetricName.workBacklog, MetricName.throttledTenants,
                                 MetricName.breakerState, MetricName.tenantBreakersNotClosed, MetricName.breakerFailureRatio] {
                        mirror.gauge(name, 0, dims)
                    }
                    continue
                }
                mirror.gauge(MetricName.queueCapacity, s.queues[queue]?.estimate ?? 0, dims)
                let backlog = max(s.queues[queue]?.backlog ?? 0, s.queuesWithoutExecutors[queue] ?? 0)
                mirror.gauge(MetricName.workBacklog, Double(backlog), dims)
                let throttled = s.plan?.queues[queue]?.tenants.values.filter { $0.allocated + 1e-9 < $0.demand }.count ?? 0
                mirror.gauge(MetricName.throttledTenants, Double(throttled), dims)
                let breaker: Double = switch s.queueBreakers[queue] {
                case .open: 2
                case .halfOpen: 1
                default: 0
                }
                mirror.gauge(MetricName.breakerState, s.pausedQueues.contains(queue) ? 3 : breaker, dims)
                mirror.gauge(MetricName.tenantBreakersNotClosed, Double(notClosed[queue] ?? 0), dims)
                mirror.gauge(MetricName.breakerFailureRatio, s.queueFailureRatios[queue] ?? 0, dims)
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }

    private func ingest(_ message: NATSMessage) {
        // Reports are messages like any other: bounded, and tenants must be tenant names.
        guard let report = try? Sundial_V1_DemandReport(serializedBytes: message.payload),
            (1...256).contains(report.dispatcherID.utf8.count), report.tenants.count <= Self.maximumReportLines
        else {
            state.withLock { $0.reportsRejected += 1 }
            return
        }
        // An empty queue is an older dispatcher's line (counted as a queue of its own).
        let valid = report.tenants.filter {
            SubjectToken.isValidTenant($0.tenant) && ($0.queue.isEmpty || SubjectToken.isValidQueue($0.queue))
        }
        if valid.count < report.tenants.count {
            state.withLock { $0.reportLinesRejected += report.tenants.count - valid.count }
        }
        let lines = valid.map {
            FairnessGate<ContinuousClock>.TenantReport(
                tenant: $0.tenant, queue: $0.queue, due: Int(clamping: $0.due), deferred: Int(clamping: $0.deferred),
                dispatched: Int(clamping: $0.dispatched), succeeded: Int(clamping: $0.succeeded),
                failedDownstream: Int(clamping: $0.failedDownstream), held: Int(clamping: $0.held))
        }
        let interval = Duration.milliseconds(Int64(max(1, report.intervalMs)))
        core.withLock {
            $0.ingest(.init(dispatcher: report.dispatcherID, interval: interval, tenants: lines), now: .now)
        }
        state.withLock { $0.reportsReceived += 1 }
    }

    /// Tenant lines accepted in one demand report.
    static let maximumReportLines = 200_000

    private func loop(bucket: KeyValueBucket, lease: GovernorLease) async {
        var wasLeader = false
        var profiles: [String: (row: TenantProfileRow, loadedAt: ContinuousClock.Instant)] = [:]
        while !Task.isCancelled {
            let started = ContinuousClock.now
            await sampleWork()
            let outcome = await lease.tick()
            var leader = false
            if case .leader(let revision) = outcome {
                leader = true
                // A new term: its plans outrank every earlier leader's, also if the stored
                // plan cannot be read and generations restart.
                if !wasLeader { core.withLock { $0.epoch = revision } }
            }
            if leader != wasLeader {
                logger.notice(leader ? "governor \(config.instanceID) is now the leader" : "governor \(config.instanceID) stands by")
            }
            if leader {
                // The queues' own breaker settings first: breakers restored from the plan take
                // their queue's bounds (a cool-down longer than the default survives).
                await readBreakerSettings(bucket)
                if !wasLeader { await resume(bucket) }
                profiles = await refreshProfiles(profiles)
                await readPausedQueues(bucket)
                await publishPlan(bucket, profiles: profiles.mapValues(\.row))
            }
            if !leader { core.withLock { $0.dropPendingOutcomes() } }
            wasLeader = leader
            state.withLock {
                $0.leader = leader
                if case .follower(let who) = outcome { $0.leaderID = who } else { $0.leaderID = self.config.instanceID }
            }
            try? await Task.sleep(until: started.advanced(by: config.period), clock: .continuous)
        }
    }

    /// The queues operators paused (KV key `paused`); on a read error the last list stays.
    private func readPausedQueues(_ bucket: KeyValueBucket) async {
        let paused: Set<String>
        do {
            guard let stored = try await bucket.get(SundialNamespace.pausedQueuesKey), !stored.value.isEmpty else {
                core.withLock { $0.pausedQueues = [] }
                state.withLock { $0.pausedQueues = [] }
                return
            }
            paused = Set(try QueuePauses(jsonBytes: stored.value, isValidQueue: SubjectToken.isValidQueue).queues.keys)
        } catch {
            logger.warning("reading paused queues failed; keeping the last list: \(error)")
            return
        }
        core.withLock { $0.pausedQueues = paused }
        state.withLock { $0.pausedQueues = paused }
    }

    /// The per-queue breaker settings (KV key `breakers`); on a read error the last ones stay.
    /// A queue whose settings are unusable keeps the defaults, with a warning.
    private func readBreakerSettings(_ bucket: KeyValueBucket) async {
        let settings: QueueBreakerSettings
        do {
            guard let stored = try await bucket.get(SundialNamespace.breakerSettingsKey), !stored.value.isEmpty else {
                core.withLock { $0.breakerOverrides = [:] }
                state.withLock { $0.breakerSettings = [:] }
                return
            }
            settings = try QueueBreakerSettings(jsonBytes: stored.value, isValidQueue: SubjectToken.isValidQueue)
        } catch {
            logger.warning("reading breaker settings failed; keeping the last ones: \(error)")
            return
        }
        let base = config.core.breaker
        var overrides: [String: CircuitBreaker<ContinuousClock>.Configuration] = [:]
        for (queue, override) in settings.queues {
            if let configuration = override.applied(to: base) {
                overrides[queue] = configuration
            } else {
                logger.warning("breaker settings of queue \(queue) are unusable; it keeps the defaults")
            }
        }
        core.withLock { $0.breakerOverrides = overrides }
        state.withLock { $0.breakerSettings = overrides }
    }

    /// Continues from the plan in KV (generation, capacities) when becoming leader.
    private func resume(_ bucket: KeyValueBucket) async {
        guard let stored = try? await bucket.get(SundialNamespace.quotaPlanKey),
            let plan = try? FairnessPlan(jsonBytes: stored.value)
        else { return }
        // The plan's age (wall clock; at most a day, never negative) shortens the cool-downs
        // of the breakers it states.
        let ageMillis = min(max(0, Int64(Date().timeIntervalSince1970 * 1000) - plan.issuedAtMillis), 86_400_000)
        core.withLock { $0.resume(from: plan, age: .milliseconds(ageMillis), now: .now) }
        logger.info("resuming after quota plan generation \(plan.generation)")
    }

    /// Samples the executors' consumers of the work stream: each queue with live executors has
    /// its capacity measured from its own consumption and backlog; jobs of a queue nobody takes
    /// (no consumer, or its executors gone) are counted, not measured (`WorkQueueSampler`).
    private func sampleWork() async {
        guard let listed = try? await connection.consumers(of: config.namespace.workStream) else { return }
        let prefix = config.namespace.work(queue: "")
        let consumers = listed.compactMap { info -> WorkQueueSampler<ContinuousClock>.Consumer? in
            guard let name = info["name"] as? String, let consumerConfig = info["config"] as? [String: Any] else { return nil }
            let filter = consumerConfig["filter_subject"] as? String
                ?? (consumerConfig["filter_subjects"] as? [String])?.first ?? ""
            func number(_ value: Any?) -> UInt64 { (value as? NSNumber)?.uint64Value ?? 0 }
            return .init(
                name: name, queue: filter.hasPrefix(prefix) ? String(filter.dropFirst(prefix.count)) : filter,
                pending: number(info["num_pending"]), ackPending: number(info["num_ack_pending"]),
                waiting: number(info["num_waiting"]),
                ackFloor: number((info["ack_floor"] as? [String: Any])?["consumer_seq"]))
        }
        let now = ContinuousClock.now
        let sample = workQueues.withLock { $0.observe(consumers, now: now) }
        let estimators = core.withLock { core -> [String: CapacityEstimator<ContinuousClock>] in
            core.observeWork(sample, now: now)
            return core.capacities
        }
        state.withLock {
            $0.queues = estimators.mapValues {
                .init(estimate: $0.estimate, consumptionRate: $0.consumptionRate, saturated: $0.saturated, backlog: $0.lastBacklog)
            }
            $0.queuesWithoutExecutors = sample.deadQueues
        }
    }

    private func refreshProfiles(_ cached: [String: (row: TenantProfileRow, loadedAt: ContinuousClock.Instant)]) async
        -> [String: (row: TenantProfileRow, loadedAt: ContinuousClock.Instant)]
    {
        let now = ContinuousClock.now
        let active = core.withLock { $0.activeTenants }
        var result = cached.filter { active.contains($0.key) || $0.value.loadedAt.duration(to: now) < config.profileRefresh }
        let stale = active.filter { name in result[name].map { $0.loadedAt.duration(to: now) >= config.profileRefresh } ?? true }
        guard !stale.isEmpty else { return result }
        do {
            for chunk in stride(from: 0, to: stale.count, by: 1000).map({ Array(stale[$0..<min($0 + 1000, stale.count)]) }) {
                for (name, row) in try await tenants.profiles(chunk) { result[name] = (row, now) }
            }
        } catch {
            // Keep the cached profiles; unknown tenants count as new until Postgres answers.
            logger.warning("loading tenant profiles failed: \(error)")
        }
        return result
    }

    private func publishPlan(_ bucket: KeyValueBucket, profiles: [String: TenantProfileRow]) async {
        let wallNow = Date()
        let profileMap = profiles.mapValues { row in
            GovernorCore<ContinuousClock>.TenantProfile(
                age: .seconds(max(0, wallNow.timeIntervalSince(row.firstSeenAt))), trial: row.trial,
                pinned: row.pinnedTier.flatMap(Tier.init(rawValue:)))
        }
        let plan = core.withLock {
            $0.plan(now: .now, profiles: profileMap, issuedAtMillis: Int64(wallNow.timeIntervalSince1970 * 1000))
        }
        do {
            // Compact only when large: a dispatcher resolves an unlisted tenant as `new`.
            var bytes = try (plan.tenantEntries > config.compactAbove ? plan.compacted() : plan).jsonBytes()
            var dropped = 0
            let serverMax = connection.serverMaxPayload
            let limit = min(config.maxPlanBytes, serverMax > 0 ? serverMax - 4096 : config.maxPlanBytes)
            if bytes.count > limit {
                (_, bytes, dropped) = try plan.fitting(maxBytes: limit)
                if dropped > 0 {
                    logger.warning("quota plan \(plan.generation) trimmed to \(bytes.count) B: \(dropped) tenant entries left out")
                }
            }
            try await bucket.put(SundialNamespace.quotaPlanKey, bytes)
            let now = ContinuousClock.now
            let (changes, breakers, ratios) = core.withLock { core in
                (
                    core.takeBreakerChanges(), (core.queueBreakers.mapValues(\.state), core.tenantBreakers.mapValues(\.state)),
                    core.queueBreakers.mapValues { $0.failureRatio(now: now) }
                )
            }
            state.withLock {
                $0.plan = plan
                $0.planBytes = bytes.count
                $0.planTenantsDropped = dropped
                $0.queueBreakers = breakers.0.filter { $0.value != .closed }
                $0.queueFailureRatios = ratios
                $0.tenantBreakers = breakers.1.filter { $0.value != .closed }
                for change in changes {
                    if case .opened = change.transition { $0.breakersOpened += 1 }
                }
            }
            await announce(changes)
        } catch {
            state.withLock { $0.publishFailures += 1 }
            logger.warning("publishing quota plan \(plan.generation) failed: \(error)")
        }
    }

    /// Logs breaker changes and tells the tenants concerned: a tenant's breaker → that tenant; a
    /// queue's → every tenant with demand on it (at most 1,000).
    private func announce(_ changes: [GovernorCore<ContinuousClock>.BreakerChange]) async {
        guard !changes.isEmpty else { return }
        var messages: [NATSOutgoingMessage] = []
        let now = Date()
        for change in changes {
            let scope = change.tenant.map { "tenant \($0) on queue \(change.queue)" } ?? "queue \(change.queue)"
            let kind: String
            let detail: String
            switch change.transition {
            case .opened(let ratio, let coolDown):
                kind = TimerEventKind.queueBreakerOpened
                detail = "circuit breaker of \(scope) opened: \(Int((ratio * 100).rounded())) % of recent results failed downstream; due jobs wait in Sundial, without spending attempts, and a few probe jobs go out after \(coolDown)"
                logger.warning("\(detail)")
            case .halfOpened:
                logger.notice("circuit breaker of \(scope) half-open: probing")
                continue
            case .closed:
                kind = TimerEventKind.queueBreakerClosed
                detail = "circuit breaker of \(scope) closed: probes succeeded; held jobs go out"
                logger.notice("\(detail)")
            }
            let tenants = change.tenant.map { [$0] } ?? core.withLock { $0.tenants(on: change.queue) }
            for tenant in tenants where SubjectToken.isValidTenant(tenant) {
                var event = Sundial_V1_TimerEvent()
                event.kind = kind
                event.queue = change.queue
                event.detail = detail
                event.at = Google_Protobuf_Timestamp(date: now)
                guard let body = try? event.serializedBytes() as [UInt8] else { continue }
                messages.append(
                    NATSOutgoingMessage(subject: config.namespace.event(tenant: tenant, kind: kind), payload: body))
            }
        }
        for case .failure(let error) in await connection.jetStream.publish(batch: messages) {
            logger.warning("publishing a circuit breaker event failed: \(error)")
        }
    }

    public static func stats(_ s: GovernorSnapshot) -> GovernorStatsReport {
        typealias Queue = GovernorStatsReport.Queue
        var out = GovernorStatsReport(
            leader: s.leader, leaderID: s.leaderID ?? "", reportsReceived: s.reportsReceived,
            reportsRejected: s.reportsRejected, publishFailures: s.publishFailures,
            planTenantsDropped: s.planTenantsDropped, reportLinesRejected: s.reportLinesRejected,
            queuesWithoutExecutors: s.queuesWithoutExecutors, breakersOpened: s.breakersOpened)
        // Per queue: what was measured (live executors) and what the plan shares out.
        var queues: [String: Queue] = [:]
        for (queue, q) in s.queues {
            queues[queue] = Queue(
                executors: "live", capacityEstimate: q.estimate ?? 0, capacityKnown: q.estimate != nil,
                consumptionRate: q.consumptionRate, saturated: q.saturated, backlog: q.backlog)
        }
        for (queue, held) in s.queuesWithoutExecutors where queues[queue] == nil {
            queues[queue] = Queue(backlog: held)
        }
        if let plan = s.plan {
            out.planGeneration = plan.generation
            out.planBytes = s.planBytes
            out.dispatchers = plan.dispatchers ?? 1
            out.tenants = Set(plan.queues.values.flatMap(\.tenants.keys)).count
            for (queue, queuePlan) in plan.queues {
                var entry = queues[queue] ?? Queue()
                entry.planCapacity = queuePlan.capacityEstimate == nil ? nil : queuePlan.capacity
                entry.tenants = queuePlan.tenants.count
                entry.throttledTenants = queuePlan.tenants.values.filter { $0.allocated + 1e-9 < $0.demand }.count
                var tiers: [String: GovernorStatsReport.TierShare] = [:]
                for (tier, total) in queuePlan.byTier {
                    tiers[tier.rawValue] = .init(
                        tenants: total.tenants, demand: total.demand, allocated: total.allocated,
                        defaultRate: queuePlan.tierDefaults[tier]?.rate ?? 0)
                }
                entry.tiers = tiers
                queues[queue] = entry
            }
            out.throttledTenants = plan.queues.values.reduce(0) { sum, queuePlan in
                sum + queuePlan.tenants.values.filter { $0.allocated + 1e-9 < $0.demand }.count
            }
        }
        for (queue, breaker) in s.queueBreakers {
            queues[queue, default: Queue()].breaker = breaker.rawValue
        }
        for (queue, ratio) in s.queueFailureRatios where ratio > 0 {
            queues[queue, default: Queue()].breakerFailureRatio = ratio
        }
        for queue in s.pausedQueues {
            queues[queue, default: Queue()].paused = true
        }
        for (queue, c) in s.breakerSettings {
            queues[queue, default: Queue()].breakerSettings = .init(
                windowSeconds: c.window.seconds, minimumSamples: c.minimumSamples, failureRatio: c.failureRatio,
                coolDownSeconds: c.coolDown.seconds, maximumCoolDownSeconds: c.maximumCoolDown.seconds,
                probes: c.probes, probeTimeoutSeconds: c.probeTimeout.seconds)
        }
        var held: [String: [String: String]] = [:]
        for (key, breaker) in s.tenantBreakers { held[key.queue, default: [:]][key.tenant] = breaker.rawValue }
        for (queue, tenants) in held {
            queues[queue, default: Queue()].tenantBreakers =
                Dictionary(uniqueKeysWithValues: tenants.sorted { $0.key < $1.key }.prefix(100).map { ($0.key, $0.value) })
            queues[queue, default: Queue()].tenantBreakersNotClosed = tenants.count
        }
        out.queues = queues
        return out
    }
}
