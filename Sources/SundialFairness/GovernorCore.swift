/// The Fairness-Governor's computation, pure and generic over a clock: demand reports from the
/// dispatchers and samples of the work stream in, a `FairnessPlan` out (`plan(now:…)` every
/// period) — one `QuotaPlan` per work queue.
///
/// - **Per queue.** Each work queue is an executor pool with its own capacity; a tenant's
///   demand is kept per (queue, tenant), and tenants share only the capacity of the queue they
///   target. A queue nobody is measured on is not throttled.
/// - **Demand** of a tenant on a queue = its due rate there (summed over the live dispatchers'
///   latest reports, smoothed with time constant `demandWindow`) + its deferred backlog there /
///   `backlogDrainTime`. The due rate counts fires when they first come due, never when they are
///   dispatched, so a throttled tenant's demand does not fall to its quota and drag the quota
///   down with it.
/// - **Tier** from `TierClassifier`, per tenant over all its queues (age, trial flag and pin
///   from the caller's tenant profiles).
/// - **Capacity** from one `CapacityEstimator` per queue with live executors, fed by
///   `WorkQueueSampler`. A queue whose executors are gone (or never came) loses its estimate:
///   its fires go on time into the durable work queue, where they wait up to the queue's bound,
///   and measuring starts afresh when executors return. An estimate that is only the
///   first-sight guess is marked `provisional` in the queue's plan.
/// - **Dispatchers** alive = those heard from within `reportTTL`; the plan tells each to enforce
///   its 1/n share of every bucket.
public struct GovernorCore<C: Clock>: Sendable where C.Duration == Duration {
    public struct Configuration: Sendable, Hashable {
        public var weights: TierWeights
        public var policy: QuotaPolicy
        public var classifier: TierClassifier<C>.Configuration
        public var capacity: CapacityEstimator<C>.Configuration
        /// Time constant of the demand moving average (short: the plan must follow a flood).
        public var demandWindow: Duration
        /// A deferred backlog counts as this much extra demand: backlog / drain time.
        public var backlogDrainTime: Duration
        /// A queue's backlog is steered towards this much of its capacity: a short
        /// standing queue keeps the executors busy (work-conserving — a throttled whale gets
        /// all the capacity the others leave) while every tenant's job waits at most this long
        /// behind it.
        public var targetWorkBacklog: Duration
        /// …within about this long: the capacity shared is the estimate + (target − backlog) /
        /// this. Above the target it drains a standing queue (an overshoot, a cold start);
        /// below it, it is the upward probe that finds capacity that freed up.
        public var workBacklogDrainTime: Duration
        /// The least fraction of the capacity shared while draining a backlog.
        public var minimumShare: Double
        /// The most the correction adds to the estimate while the backlog is below target
        /// (0.2: 20 %).
        public var maximumBoost: Double
        /// A dispatcher not heard from for this long is gone (its counts are dropped).
        public var reportTTL: Duration
        /// A tenant without demand for this long leaves the plan (and the classifier).
        public var tenantIdleExpiry: Duration
        /// Circuit breakers per queue and per (queue, tenant), judged by the results the
        /// dispatchers report (`CircuitBreaker`); off: nobody is ever held.
        public var breakers = true
        public var breaker = CircuitBreaker<C>.Configuration()

        public init(
            weights: TierWeights = .default, policy: QuotaPolicy = QuotaPolicy(),
            classifier: TierClassifier<C>.Configuration = .init(),
            capacity: CapacityEstimator<C>.Configuration = .init(), demandWindow: Duration = .seconds(3),
            backlogDrainTime: Duration = .seconds(10), targetWorkBacklog: Duration = .milliseconds(200),
            workBacklogDrainTime: Duration = .seconds(2), minimumShare: Double = 0.25, maximumBoost: Double = 0.2,
            reportTTL: Duration = .seconds(10), tenantIdleExpiry: Duration = .seconds(600)
        ) {
            self.weights = weights
            self.policy = policy
            self.classifier = classifier
            self.capacity = capacity
            self.demandWindow = demandWindow
            self.backlogDrainTime = backlogDrainTime
            self.targetWorkBacklog = targetWorkBacklog
            self.workBacklogDrainTime = workBacklogDrainTime
            self.minimumShare = minimumShare
            self.maximumBoost = maximumBoost
            self.reportTTL = reportTTL
            self.tenantIdleExpiry = tenantIdleExpiry
        }
    }

    /// One dispatcher's report (see `DemandReport` on the wire).
    public struct Report: Sendable, Hashable {
        public var dispatcher: String
        /// The period the counts cover.
        public var interval: Duration
        public var tenants: [FairnessGate<C>.TenantReport]

        public init(dispatcher: String, interval: Duration, tenants: [FairnessGate<C>.TenantReport]) {
            self.dispatcher = dispatcher
            self.interval = interval
            self.tenants = tenants
        }
    }

    /// What the caller knows about a tenant (from the tenants table).
    public struct TenantProfile: Sendable, Hashable {
        public var age: Duration
        public var trial: Bool
        public var pinned: Tier?

        public init(age: Duration, trial: Bool = false, pinned: Tier? = nil) {
            self.age = age
            self.trial = trial
            self.pinned = pinned
        }
    }

    struct DispatcherState: Sendable {
        var heardAt: C.Instant
        /// Per tenant and queue: due rate in the latest report and deferred backlog.
        var rates: [QueueTenant: (due: Double, deferred: Int)]
    }

    /// A circuit breaker changed state: the queue's own (`tenant` nil) or a tenant's on it.
    public struct BreakerChange: Sendable, Hashable {
        public var queue: String
        public var tenant: String?
        public var transition: CircuitBreaker<C>.Transition
    }

    struct DemandState: Sendable {
        var rate: Double
        var lastUpdate: C.Instant
        var lastDemand: C.Instant
    }

    public private(set) var configuration: Configuration
    public private(set) var classifier: TierClassifier<C>
    /// One estimator per queue with live executors.
    public private(set) var capacities: [String: CapacityEstimator<C>] = [:]
    /// Queues holding jobs nobody takes (from the last work sample).
    public private(set) var queuesWithoutExecutors: [String: UInt64] = [:]
    private var dispatchers: [String: DispatcherState] = [:]
    private var demand: [QueueTenant: DemandState] = [:]
    public private(set) var lastPlan: FairnessPlan?
    /// Circuit breakers that are not idle: per (queue, tenant) and per queue.
    public private(set) var tenantBreakers: [QueueTenant: CircuitBreaker<C>] = [:]
    public private(set) var queueBreakers: [String: CircuitBreaker<C>] = [:]
    /// Results reported since the last plan, per (queue, tenant).
    private var outcomes: [QueueTenant: (succeeded: Int, failed: Int)] = [:]
    private var breakerChanges: [BreakerChange] = []
    /// Queues an operator paused (`QueuePauses`), set by the caller every period: their plan
    /// states an open breaker marked `paused`, re-stated each plan, so the dispatchers hold
    /// them until resumed.
    public var pausedQueues: Set<String> = []
    /// Breaker settings an operator set per queue (`QueueBreakerSettings`, already applied to
    /// the default and checked), set by the caller every period; other queues use
    /// `configuration.breaker`.
    public var breakerOverrides: [String: CircuitBreaker<C>.Configuration] = [:]

    /// The breaker settings in force on `queue` (its own breaker and its tenants').
    public func breakerConfiguration(for queue: String) -> CircuitBreaker<C>.Configuration {
        breakerOverrides[queue] ?? configuration.breaker
    }

    /// How long each plan says a paused queue stays held (re-stated every period).
    public static var pauseStatement: Duration { .seconds(86_400) }

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.classifier = TierClassifier(configuration: configuration.classifier)
    }

    /// The estimator of `queue` (nil: no live executors seen on it).
    public func capacity(of queue: String) -> CapacityEstimator<C>? { capacities[queue] }

    /// Continues after `plan` (the one in KV when this governor took over): generations go on
    /// from it, its measured capacity seeds the estimate, and its tenants' demand and bulk tiers
    /// seed this governor's state — so the first plan after a takeover does not let a whale run
    /// free before the dispatchers' next reports arrive.
    /// The leadership term this core issues plans under (see `QuotaPlan.epoch`); set when
    /// its governor takes the lease.
    public var epoch: UInt64 = 0

    /// `age` is how long ago the plan was issued (its breakers' remaining cool-downs are
    /// counted from then).
    public mutating func resume(from plan: FairnessPlan, age: Duration = .zero, now: C.Instant) {
        if plan.generation > (lastPlan?.generation ?? 0) { lastPlan = plan }
        var bulk = Set<String>()
        for (queue, queuePlan) in plan.queues {
            for (tenant, quota) in queuePlan.tenants {
                let key = QueueTenant(queue: queue, tenant: tenant)
                if demand[key] == nil {
                    demand[key] = DemandState(rate: quota.demand, lastUpdate: now, lastDemand: now)
                }
                if quota.tier == .bulk { bulk.insert(tenant) }
            }
            // Measured capacity carries over; if the next sample shows no live executors on
            // the queue, the estimate goes with them.
            if configuration.breakers, let status = queuePlan.breaker, status.isValid, status.paused != true,
                queueBreakers[queue] == nil
            {
                queueBreakers[queue] = CircuitBreaker(
                    configuration: breakerConfiguration(for: queue), restoring: status, age: age, now: now)
            }
            for (tenant, quota) in queuePlan.tenants {
                let key = QueueTenant(queue: queue, tenant: tenant)
                if configuration.breakers, let status = quota.breaker, status.isValid, tenantBreakers[key] == nil {
                    tenantBreakers[key] = CircuitBreaker(
                        configuration: breakerConfiguration(for: queue), restoring: status, age: age, now: now)
                }
            }
            var estimate = queuePlan.capacityEstimate
            if estimate == nil, queuePlan.capacity < queuePlan.policy.maxRate * 0.5 {
                // A plan without the estimate: only the capacity shared (maybe while draining a
                // backlog, so an understatement; the next saturation corrects it).
                estimate = queuePlan.capacity / queuePlan.policy.sanitisedUtilisation
            }
            if let estimate {
                capacities[queue, default: CapacityEstimator(configuration: configuration.capacity)].seed(
                    estimate, provisional: queuePlan.provisional == true)
            }
        }
        for (tenant, quota) in plan.otherQueues?.tenants ?? [:] where quota.tier == .bulk { bulk.insert(tenant) }
        for tenant in bulk where classifier.tier(of: tenant) != .bulk {
            // Enter bulk as if its backlog had crossed the threshold; it leaves by the usual
            // hysteresis once the reports show it calm.
            classifier.observe(
                tenant: tenant, dueRate: 0, backlog: configuration.classifier.enterBulkBacklog,
                age: .seconds(Int64.max / 2), now: now)
        }
    }

    /// Largest count one report line may carry for a tenant (a billion fires).
    public static var maximumReportedCount: Int { 1_000_000_000 }
    /// Largest due rate one dispatcher can report for a tenant (jobs/s): well above what one
    /// instance dispatches, so only an implausible report is cut.
    public static var maximumReportedRate: Double { 1_000_000 }

    public mutating func ingest(_ report: Report, now: C.Instant) {
        let seconds = max(report.interval.fairnessSeconds, 1e-3)
        var rates: [QueueTenant: (due: Double, deferred: Int)] = [:]
        // Reports cross a process boundary: counts are bounded so sums over dispatchers and
        // tenants can never overflow (no dispatcher holds anywhere near this many).
        for line in report.tenants {
            rates[QueueTenant(queue: line.queue, tenant: line.tenant)] = (
                min(Double(min(max(0, line.due), Self.maximumReportedCount)) / seconds, Self.maximumReportedRate),
                min(max(0, line.deferred), Self.maximumReportedCount)
            )
        }
        dispatchers[report.dispatcher] = DispatcherState(heardAt: now, rates: rates)
        for line in report.tenants where line.succeeded > 0 || line.failedDownstream > 0 {
            let key = QueueTenant(queue: line.queue, tenant: line.tenant)
            guard outcomes[key] != nil || outcomes.count < Self.maximumReportLinesTracked else { continue }
            let bound = Self.maximumReportedCount
            var o = outcomes[key] ?? (0, 0)
            o.succeeded = min(o.succeeded + min(max(0, line.succeeded), bound), Int.max / 4)
            o.failed = min(o.failed + min(max(0, line.failedDownstream), bound), Int.max / 4)
            outcomes[key] = o
        }
    }

    /// Most (queue, tenant) pairs whose results are held between two plans.
    static var maximumReportLinesTracked: Int { 1_000_000 }

    /// Forgets results reported since the last plan: a standby governor (it plans nothing) calls
    /// it every period, so a takeover does not replay old results into one window slot.
    public mutating func dropPendingOutcomes() { outcomes = [:] }

    /// Breaker changes since the last call (for events and logs).
    public mutating func takeBreakerChanges() -> [BreakerChange] {
        defer { breakerChanges = [] }
        return breakerChanges
    }

    /// Tenants with demand on `queue` (at most `limit`), e.g. to tell them about its breaker.
    public func tenants(on queue: String, limit: Int = 1000) -> [String] {
        Array(demand.keys.filter { $0.queue == queue }.map(\.tenant).sorted().prefix(limit))
    }

    /// Feeds the results reported since the last plan to the breakers and moves them on with
    /// time. One tenant's broken endpoint must trip that tenant's breaker, not everyone's on
    /// the queue: a queue's own breaker counts only tenants whose breaker on it is closed, and
    /// of those, each round, not the one with the most failures — so it opens only when
    /// several tenants fail at once (a downstream they share).
    mutating func updateBreakers(now: C.Instant) {
        // Settings an operator changed apply to breakers that exist too.
        for key in Array(tenantBreakers.keys) { tenantBreakers[key]!.reconfigure(breakerConfiguration(for: key.queue)) }
        for queue in Array(queueBreakers.keys) { queueBreakers[queue]!.reconfigure(breakerConfiguration(for: queue)) }
        var byQueue: [String: [(tenant: String, succeeded: Int, failed: Int)]] = [:]
        for (key, o) in outcomes {
            var breaker = tenantBreakers[key] ?? CircuitBreaker(configuration: breakerConfiguration(for: key.queue), now: now)
            if let change = breaker.record(successes: o.succeeded, failures: o.failed, now: now) {
                breakerChanges.append(BreakerChange(queue: key.queue, tenant: key.tenant, transition: change))
            }
            tenantBreakers[key] = breaker
            if breaker.state == .closed { byQueue[key.queue, default: []].append((key.tenant, o.succeeded, o.failed)) }
        }
        outcomes = [:]
        var queueOutcomes: [String: (succeeded: Int, failed: Int)] = [:]
        for (queue, lines) in byQueue {
            let worst = lines.max { ($0.failed, $1.tenant) < ($1.failed, $0.tenant) }
            for line in lines {
                let excluded = line.tenant == worst?.tenant && line.failed > 0
                queueOutcomes[queue, default: (0, 0)].succeeded += line.succeeded
                queueOutcomes[queue, default: (0, 0)].failed += excluded ? 0 : line.failed
            }
        }
        let byQueueTotals = queueOutcomes
        for (queue, o) in byQueueTotals {
            var breaker = queueBreakers[queue] ?? CircuitBreaker(configuration: breakerConfiguration(for: queue), now: now)
            if let change = breaker.record(successes: o.succeeded, failures: o.failed, now: now) {
                breakerChanges.append(BreakerChange(queue: queue, tenant: nil, transition: change))
            }
            queueBreakers[queue] = breaker
        }
        for key in Array(tenantBreakers.keys) {
            if let change = tenantBreakers[key]!.tick(now: now) {
                breakerChanges.append(BreakerChange(queue: key.queue, tenant: key.tenant, transition: change))
            }
        }
        for queue in Array(queueBreakers.keys) {
            if let change = queueBreakers[queue]!.tick(now: now) {
                breakerChanges.append(BreakerChange(queue: queue, tenant: nil, transition: change))
            }
        }
        // A closed breaker with nothing in its window is forgotten (memory stays with the
        // active (queue, tenant) pairs).
        func idle(_ b: CircuitBreaker<C>) -> Bool {
            guard b.state == .closed else { return false }
            let w = b.windowCounts(now: now)
            return w.successes == 0 && w.failures == 0
        }
        tenantBreakers = tenantBreakers.filter { !idle($0.value) }
        queueBreakers = queueBreakers.filter { !idle($0.value) }
    }

    /// A sample of the whole work stream (`WorkQueueSampler`): each live queue's estimator
    /// observes its own consumption and backlog; a queue without live executors loses its
    /// estimate (its tenants are not throttled until executors are back and measured).
    public mutating func observeWork(_ sample: WorkQueueSampler<C>.Sample, now: C.Instant) {
        for queue in capacities.keys where sample.live[queue] == nil { capacities[queue] = nil }
        for (queue, figures) in sample.live {
            observeWork(queue: queue, consumedTotal: figures.consumedTotal, backlog: figures.backlog, now: now)
        }
        queuesWithoutExecutors = sample.deadQueues
    }

    /// One live queue's consumption and backlog (see `CapacityEstimator`).
    public mutating func observeWork(queue: String, consumedTotal: UInt64, backlog: UInt64, now: C.Instant) {
        let throttling = lastPlan?.queues[queue].map { plan in
            plan.tenants.values.contains { $0.allocated + 1e-9 < $0.demand }
        } ?? false
        capacities[queue, default: CapacityEstimator(configuration: configuration.capacity)].observe(
            consumedTotal: consumedTotal, backlog: backlog, throttling: throttling, now: now)
    }

    /// Dispatchers heard from within `reportTTL`.
    public func liveDispatchers(now: C.Instant) -> Int {
        dispatchers.values.filter { $0.heardAt.duration(to: now) <= configuration.reportTTL }.count
    }

    /// Tenants with current demand or deferred fires on any queue (the caller looks up their
    /// profiles).
    public var activeTenants: [String] { Set(demand.keys.map(\.tenant)).sorted() }

    /// Computes the next plan. `profiles`: age/trial/pin per tenant; a tenant without one is
    /// treated as brand new (age 0).
    public mutating func plan(
        now: C.Instant, profiles: [String: TenantProfile], issuedAtMillis: Int64
    ) -> FairnessPlan {
        let c = configuration
        dispatchers = dispatchers.filter { $0.value.heardAt.duration(to: now) <= c.reportTTL }
        var due: [QueueTenant: Double] = [:]
        var backlog: [QueueTenant: Int] = [:]
        for state in dispatchers.values {
            for (key, r) in state.rates {
                due[key, default: 0] += r.due
                backlog[key] = min(backlog[key, default: 0] + r.deferred, Int.max / 2)
            }
        }
        // Smooth the due rate of every (queue, tenant) we know or just heard of.
        for key in Set(due.keys).union(demand.keys) {
            let sample = due[key] ?? 0
            if var d = demand[key] {
                let dt = d.lastUpdate < now ? d.lastUpdate.duration(to: now).fairnessSeconds : 0
                let window = c.demandWindow.fairnessSeconds
                let alpha = window <= 0 ? 1 : 1 - FairnessMath.expo(-dt / window)
                d.rate += alpha * (sample - d.rate)
                d.lastUpdate = now
                if sample > 0 || (backlog[key] ?? 0) > 0 { d.lastDemand = now }
                demand[key] = d
            } else {
                demand[key] = DemandState(rate: sample, lastUpdate: now, lastDemand: now)
            }
        }
        for (key, d) in demand where d.lastDemand.duration(to: now) > c.tenantIdleExpiry { demand[key] = nil }
        let tenantsLeft = Set(demand.keys.map(\.tenant))
        for tenant in classifier.tenants where !tenantsLeft.contains(tenant) { classifier.forget(tenant) }

        // A tenant's tier comes from all its queues together.
        var tenantDue: [String: Double] = [:]
        var tenantBacklog: [String: Int] = [:]
        for key in demand.keys {
            tenantDue[key.tenant, default: 0] += due[key] ?? 0
            tenantBacklog[key.tenant] = min(tenantBacklog[key.tenant, default: 0] + (backlog[key] ?? 0), Int.max / 2)
        }
        var tiers: [String: Tier] = [:]
        for tenant in tenantsLeft {
            let profile = profiles[tenant] ?? TenantProfile(age: .zero)
            classifier.pin(tenant, to: profile.pinned)
            tiers[tenant] = classifier.observe(
                tenant: tenant, dueRate: tenantDue[tenant] ?? 0, backlog: tenantBacklog[tenant] ?? 0,
                age: profile.age, trial: profile.trial, now: now)
        }

        let drain = max(c.backlogDrainTime.fairnessSeconds, 1e-3)
        var demandsByQueue: [String: [Demand]] = [:]
        for (key, d) in demand {
            let rate = d.rate + Double(backlog[key] ?? 0) / drain
            demandsByQueue[key.queue, default: []].append(Demand(id: key.tenant, tier: tiers[key.tenant] ?? .new, rate: rate))
        }
        let generation = (lastPlan?.generation ?? 0) + 1
        if c.breakers { updateBreakers(now: now) } else { outcomes = [:] }
        var queues: [String: QuotaPlan] = [:]
        let tenantBreakersByQueue = Dictionary(grouping: tenantBreakers, by: \.key.queue)
        let held = Set(queueBreakers.keys).union(tenantBreakersByQueue.keys).union(pausedQueues)
        for queue in Set(demandsByQueue.keys).union(capacities.keys).union(held) {
            var demands = demandsByQueue[queue] ?? []
            demands.sort { $0.id < $1.id }
            var plan: QuotaPlan
            if let estimator = capacities[queue], let measured = estimator.estimate {
                plan = QuotaPlan.compute(
                    capacity: sharedCapacity(measured, backlog: estimator.lastBacklog), demands: demands,
                    weights: c.weights, policy: c.policy, generation: generation, issuedAtMillis: issuedAtMillis)
                plan.capacityEstimate = measured
                plan.workBacklog = Int(clamping: estimator.lastBacklog)
                plan.provisional = estimator.provisional ? true : nil
            } else {
                // Capacity unknown: tiers and demand are listed, nobody is throttled — whatever
                // the reported demand adds up to (reports cross a process boundary).
                let share = FairShare.allocate(capacity: c.policy.maxRate, demands: demands, weights: c.weights)
                plan = QuotaPlan.make(from: share, policy: c.policy, generation: generation, issuedAtMillis: issuedAtMillis)
                let open = c.policy.quota(forRate: c.policy.maxRate)
                for name in plan.tenants.keys {
                    plan.tenants[name]!.rate = open.rate
                    plan.tenants[name]!.burst = open.burst
                }
                for tier in Tier.allCases { plan.tierDefaults[tier] = open }
            }
            plan.dispatchers = max(1, liveDispatchers(now: now))
            plan.epoch = epoch
            plan.breaker = queueBreakers[queue]?.status(now: now)
            if pausedQueues.contains(queue) {
                let day = Int64(Self.pauseStatement.components.seconds) * 1000
                plan.breaker = BreakerStatus(
                    state: .open, reopensInMillis: day, coolDownMillis: day, probes: breakerConfiguration(for: queue).probes,
                    failureRatio: nil)
                plan.breaker?.paused = true
            }
            for (key, breaker) in tenantBreakersByQueue[queue] ?? [] {
                guard let status = breaker.status(now: now) else { continue }
                if plan.tenants[key.tenant] == nil {
                    // Held without current demand: listed for its breaker, bucket open.
                    let open = c.policy.quota(forRate: c.policy.maxRate)
                    plan.tenants[key.tenant] = TenantQuota(
                        tier: tiers[key.tenant] ?? .new, rate: open.rate, burst: open.burst, demand: 0, allocated: 0)
                }
                plan.tenants[key.tenant]!.breaker = status
            }
            queues[queue] = plan
        }
        var plan = FairnessPlan(
            generation: generation, epoch: epoch, issuedAtMillis: issuedAtMillis,
            dispatchers: max(1, liveDispatchers(now: now)), queues: queues)
        plan.queuesWithoutExecutors = queuesWithoutExecutors.isEmpty ? nil : queuesWithoutExecutors
        if c.breakers {
            plan.breakerTrip = c.breaker.trip
            let own = breakerOverrides.mapValues(\.trip).filter { $0.value != c.breaker.trip }
            plan.queueBreakerTrips = own.isEmpty ? nil : own
        }
        lastPlan = plan
        return plan
    }

    /// The capacity of a queue to share: its estimate, corrected so its backlog moves towards
    /// `targetWorkBacklog` within `workBacklogDrainTime` (within `minimumShare` … 1 +
    /// `maximumBoost` of the estimate).
    public func sharedCapacity(_ measured: Double, backlog: UInt64) -> Double {
        let c = configuration
        let target = max(Double(c.capacity.minimumBacklog), measured * c.targetWorkBacklog.fairnessSeconds)
        let correction = (target - Double(backlog)) / max(c.workBacklogDrainTime.fairnessSeconds, 0.1)
        let low = measured * min(max(c.minimumShare, 0), 1)
        let high = measured * (1 + max(c.maximumBoost, 0))
        return min(max(measured + correction, low), high)
    }
}
