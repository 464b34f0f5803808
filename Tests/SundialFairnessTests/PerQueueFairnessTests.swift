import Testing

@testable import SundialFairness

/// Issue 10: each work queue is its own executor pool — capacity measured per queue, tenants
/// sharing only the capacity of the queue they target, a queue without live executors
/// throttling nobody.
@Suite("Per-queue fairness: estimator, shares and enforcement per queue")
struct PerQueueFairnessTests {
    typealias Core = GovernorCore<ManualClock>
    typealias Gate = FairnessGate<ManualClock>
    typealias Line = Gate.TenantReport
    typealias Sampler = WorkQueueSampler<ManualClock>

    static let old = Core.TenantProfile(age: .seconds(1e6))

    /// Executors on `queue` consuming `rate` jobs/s with a standing backlog (saturated).
    struct SaturatedQueue {
        var queue: String
        var rate: Double
        var consumed = 0.0

        mutating func step(_ core: inout Core, seconds: Double, backlog: UInt64 = 5_000, now: ManualClock.Instant) {
            consumed += rate * seconds
            core.observeWork(queue: queue, consumedTotal: UInt64(consumed), backlog: backlog, now: now)
        }
    }

    @Test func tenantsShareOnlyTheCapacityOfTheQueueTheyTarget() {
        let clock = ManualClock()
        var core = Core()
        var fast = SaturatedQueue(queue: "fast", rate: 1000)
        var slow = SaturatedQueue(queue: "slow", rate: 100)
        var plan: FairnessPlan!
        for _ in 0..<20 {
            clock.advance(by: .seconds(1))
            // Backlogs at their targets (200 ms of capacity): no draining correction.
            fast.step(&core, seconds: 1, backlog: 200, now: clock.now)
            slow.step(&core, seconds: 1, backlog: 20, now: clock.now)
            core.ingest(
                .init(dispatcher: "d", interval: .seconds(1), tenants: [
                    Line(tenant: "whale", queue: "fast", due: 5000, deferred: 10_000, dispatched: 900),
                    Line(tenant: "shop", queue: "fast", due: 20, deferred: 0, dispatched: 20),
                    Line(tenant: "b1", queue: "slow", due: 300, deferred: 1000, dispatched: 50),
                    Line(tenant: "b2", queue: "slow", due: 300, deferred: 1000, dispatched: 50),
                ]), now: clock.now)
            plan = core.plan(
                now: clock.now, profiles: ["whale": Self.old, "shop": Self.old, "b1": Self.old, "b2": Self.old],
                issuedAtMillis: 0)
        }
        let fastPlan = try! #require(plan.queues["fast"])
        let slowPlan = try! #require(plan.queues["slow"])
        #expect(abs((fastPlan.capacityEstimate ?? 0) - 1000) < 1)
        #expect(abs((slowPlan.capacityEstimate ?? 0) - 100) < 1)
        // The slow queue's saturation is its own: the fast queue's tenants share 1 000/s.
        #expect(fastPlan.tenants["shop"]!.allocated >= 20 - 1e-6)
        #expect(abs(fastPlan.tenants["whale"]!.allocated - (fastPlan.capacity - fastPlan.tenants["shop"]!.allocated)) < 1)
        #expect(fastPlan.tenants["whale"]!.allocated > 900)
        // The slow queue's two equal tenants split its 100/s.
        #expect(abs(slowPlan.tenants["b1"]!.allocated - slowPlan.tenants["b2"]!.allocated) < 1e-6)
        #expect(abs(slowPlan.tenants["b1"]!.allocated * 2 - slowPlan.capacity) < 1)
        #expect(slowPlan.tenants["whale"] == nil && fastPlan.tenants["b1"] == nil)
    }

    @Test func aTenantHeldBackOnOneQueueRunsFreelyOnAnother() {
        let clock = ManualClock()
        var core = Core()
        var busy = SaturatedQueue(queue: "busy", rate: 200)
        var idle = 0.0
        var plan: FairnessPlan!
        for _ in 0..<10 {
            clock.advance(by: .seconds(1))
            busy.step(&core, seconds: 1, now: clock.now)
            idle += 50
            // "spare": live executors keeping up (no backlog): never saturated, so unknown.
            core.observeWork(queue: "spare", consumedTotal: UInt64(idle), backlog: 0, now: clock.now)
            core.ingest(
                .init(dispatcher: "d", interval: .seconds(1), tenants: [
                    Line(tenant: "whale", queue: "busy", due: 2000, deferred: 5000, dispatched: 200),
                    Line(tenant: "whale", queue: "spare", due: 50, deferred: 0, dispatched: 50),
                ]), now: clock.now)
            plan = core.plan(now: clock.now, profiles: ["whale": Self.old], issuedAtMillis: 0)
        }
        let held = try! #require(plan.queues["busy"]?.tenants["whale"])
        let free = try! #require(plan.queues["spare"]?.tenants["whale"])
        #expect(held.tier == .bulk && free.tier == .bulk)  // one tier per tenant
        #expect(held.rate < 300)
        #expect(free.rate >= 1e8)

        // The gate enforces the same: one bucket per (queue, tenant).
        var gate = Gate()
        gate.apply(plan, now: clock.now)
        let busyFires = Array(repeating: Gate.Candidate(tenant: "whale", queue: "busy"), count: 500)
        let spareFires = Array(repeating: Gate.Candidate(tenant: "whale", queue: "spare"), count: 500)
        let decisions = gate.decide(busyFires + spareFires, now: clock.now)
        #expect(decisions[500...].allSatisfy { $0 == .dispatch })
        #expect(decisions[..<500].filter { $0 == .dispatch }.count < 200)
        let report = gate.takeReport(now: clock.now)
        #expect(report.map(\.queue) == ["busy", "spare"])
        #expect(report.first { $0.queue == "busy" }!.deferred > 300)
        #expect(report.first { $0.queue == "spare" }!.deferred == 0)
        #expect(gate.queueCounters()["busy"]!.deferredNow > 300)
    }

    @Test func executorsThatVanishStopTheThrottlingAndAreMeasuredAfreshWhenTheyReturn() {
        let clock = ManualClock()
        var core = Core()
        var sampler = Sampler(idleAfter: .seconds(10))
        var acked: UInt64 = 0
        func consumer(pending: UInt64, waiting: UInt64) -> Sampler.Consumer {
            .init(name: "exec-q", queue: "q", pending: pending, ackPending: 0, waiting: waiting, ackFloor: acked)
        }
        func tick(_ consumers: [Sampler.Consumer]) -> FairnessPlan {
            clock.advance(by: .seconds(1))
            core.observeWork(sampler.observe(consumers, now: clock.now), now: clock.now)
            core.ingest(
                .init(dispatcher: "d", interval: .seconds(1), tenants: [
                    Line(tenant: "whale", queue: "q", due: 1000, deferred: 5000, dispatched: 100)
                ]), now: clock.now)
            return core.plan(now: clock.now, profiles: ["whale": Self.old], issuedAtMillis: 0)
        }
        // Saturated at 100 jobs/s: measured, the whale is throttled near it.
        var plan = FairnessPlan.unthrottled
        for _ in 0..<10 {
            acked += 100
            plan = tick([consumer(pending: 2000, waiting: 0)])
        }
        #expect(abs((plan.queues["q"]?.capacityEstimate ?? 0) - 100) < 1)
        #expect((plan.queues["q"]?.tenants["whale"]?.rate ?? .infinity) < 200)
        // The executors leave: no acks, no pulls. Past the idle time the queue has no capacity
        // figure, nobody on it is throttled, and its waiting jobs are counted.
        for _ in 0..<11 { plan = tick([consumer(pending: 3000, waiting: 0)]) }
        #expect(core.capacity(of: "q") == nil)
        #expect(plan.queues["q"]?.capacityEstimate == nil)
        #expect((plan.queues["q"]?.tenants["whale"]?.rate ?? 0) >= 1e8)
        #expect(plan.queuesWithoutExecutors == ["q": 3000])
        // They come back at 400 jobs/s with the backlog still there: measured afresh, not at
        // the old figure.
        for _ in 0..<12 {
            acked += 400
            plan = tick([consumer(pending: 2600, waiting: 1)])
        }
        #expect(abs((plan.queues["q"]?.capacityEstimate ?? 0) - 400) < 1)
        #expect(plan.queuesWithoutExecutors == nil)
        #expect((plan.queues["q"]?.tenants["whale"]?.rate ?? .infinity) < 800)
    }

    @Test func aPlanRoundTripsAndAFormatOnePlanAppliesToEveryQueue() throws {
        var single = QuotaPlan.unthrottled()
        single.generation = 7
        single.tenants["whale"] = TenantQuota(tier: .bulk, rate: 5, burst: 5, demand: 100, allocated: 5)
        let old = try FairnessPlan(jsonBytes: single.jsonBytes())
        #expect(old.generation == 7)
        #expect(old.resolve("whale", queue: "anything", fallbackTier: .new).quota.rate == 5)
        let plan = FairnessPlan(generation: 8, issuedAtMillis: 1, dispatchers: 2, queues: ["a": single])
        #expect(try FairnessPlan(jsonBytes: plan.jsonBytes()) == plan)
        #expect(plan.resolve("whale", queue: "b", fallbackTier: .new).quota.rate >= 1e8)
        #expect(plan.isNewer(than: old))
        // Unusable numbers on any queue reject the whole plan.
        var bad = single
        bad.tenants["x"] = TenantQuota(tier: .new, rate: -1, burst: 1, demand: 0, allocated: 0)
        #expect(throws: (any Error).self) {
            try FairnessPlan(jsonBytes: FairnessPlan(generation: 9, issuedAtMillis: 0, queues: ["a": single, "b": bad]).jsonBytes())
        }
    }

    @Test func fittingTrimsEveryQueueAndKeepsItsThrottledTenants() throws {
        var queues: [String: QuotaPlan] = [:]
        for q in 0..<4 {
            var plan = QuotaPlan.unthrottled()
            plan.tierDefaults[.new] = Quota(rate: 10, burst: 10)
            for t in 0..<500 {
                plan.tenants["tenant-\(t)"] = TenantQuota(tier: .new, rate: 1, burst: 1, demand: Double(t), allocated: 1)
            }
            plan.tenants["whale"] = TenantQuota(tier: .bulk, rate: 3, burst: 3, demand: 1e6, allocated: 3)
            queues["q\(q)"] = plan
        }
        let plan = FairnessPlan(generation: 1, issuedAtMillis: 0, queues: queues)
        let full = try plan.jsonBytes().count
        let fitted = try plan.fitting(maxBytes: full / 3)
        #expect(fitted.bytes.count <= full / 3)
        #expect(fitted.dropped > 0)
        #expect(fitted.plan.queues.count == 4)
        #expect(fitted.plan.queues.values.allSatisfy { $0.tenants["whale"] != nil })
    }
}
