import Testing

@testable import SundialFairness

@Suite("CapacityEstimator: executors' capacity from the work stream")
struct CapacityEstimatorTests {
    typealias Estimator = CapacityEstimator<ManualClock>

    /// Drives an estimator against simulated executors of `capacity` jobs/s fed `offered` jobs/s,
    /// sampling every 250 ms for `seconds`. Returns the estimator.
    static func run(
        _ estimator: inout Estimator, clock: ManualClock, capacity: Double, offered: (Double?) -> Double,
        seconds: Int, throttling: Bool, backlog: inout Double, consumed: inout Double
    ) {
        for _ in 0..<(seconds * 4) {
            let dt = 0.25
            backlog += offered(estimator.estimate) * dt
            let done = min(backlog, capacity * dt)
            backlog -= done
            consumed += done
            clock.advance(by: .milliseconds(250))
            estimator.observe(
                consumedTotal: UInt64(consumed), backlog: UInt64(backlog), throttling: throttling, now: clock.now)
        }
    }

    @Test func unknownUntilTheExecutorsAreSaturatedThenTheirRate() {
        let clock = ManualClock()
        var e = Estimator()
        var backlog = 0.0
        var consumed = 0.0
        Self.run(&e, clock: clock, capacity: 500, offered: { _ in 200 }, seconds: 10, throttling: false, backlog: &backlog, consumed: &consumed)
        #expect(e.estimate == nil)
        #expect(abs(e.consumptionRate - 200) < 5)
        Self.run(&e, clock: clock, capacity: 500, offered: { _ in 2000 }, seconds: 5, throttling: false, backlog: &backlog, consumed: &consumed)
        #expect(e.saturated)
        #expect(abs((e.estimate ?? 0) - 500) < 10)
    }

    @Test func whileThrottlingItProbesUpToFreedCapacityAndSettlesThere() {
        let clock = ManualClock()
        var e = Estimator(configuration: .init(initial: 400))
        var backlog = 0.0
        var consumed = 0.0
        // A governor sending 95 % of the estimate to executors that can do 800/s.
        Self.run(&e, clock: clock, capacity: 800, offered: { ($0 ?? 0) * 0.95 }, seconds: 30, throttling: true, backlog: &backlog, consumed: &consumed)
        let estimate = e.estimate ?? 0
        #expect(estimate > 760 && estimate < 900, "estimate \(estimate)")
        #expect(backlog < 400, "standing backlog \(backlog)")
    }

    @Test func aFixedCapacityWins() {
        let clock = ManualClock()
        var e = Estimator(configuration: .init(fixed: 123))
        e.observe(consumedTotal: 0, backlog: 10_000, throttling: true, now: clock.now)
        clock.advance(by: .seconds(5))
        e.observe(consumedTotal: 10, backlog: 10_000, throttling: true, now: clock.now)
        #expect(e.estimate == 123)
    }
}

@Suite("GovernorCore: demand reports and work samples to a quota plan")
struct GovernorCoreTests {
    typealias Core = GovernorCore<ManualClock>
    typealias Line = FairnessGate<ManualClock>.TenantReport

    static func report(_ dispatcher: String, _ lines: [Line]) -> Core.Report {
        Core.Report(dispatcher: dispatcher, interval: .seconds(1), tenants: lines)
    }

    @Test func aWhaleIsThrottledToTheLeftoverAndSmallTenantsAreNot() {
        let clock = ManualClock()
        var core = Core(configuration: .init(capacity: .init(fixed: 1000)))
        var plan: QuotaPlan!
        for _ in 0..<10 {
            clock.advance(by: .seconds(1))
            core.ingest(
                Self.report("d1", [
                    Line(tenant: "whale", due: 3000, deferred: 20_000, dispatched: 900),
                    Line(tenant: "shop", due: 2, deferred: 0, dispatched: 2),
                ]), now: clock.now)
            plan = core.plan(
                now: clock.now,
                profiles: ["whale": .init(age: .seconds(1e6)), "shop": .init(age: .seconds(1e6))],
                issuedAtMillis: 0)
        }
        #expect(plan.generation == 10)
        #expect(plan.dispatchers == 1)
        #expect(plan.tenants["whale"]?.tier == .bulk)
        #expect(plan.tenants["shop"]?.tier == .standard)
        let whale = plan.tenants["whale"]!
        #expect(abs(whale.rate - (950 - plan.tenants["shop"]!.allocated)) < 1)
        #expect(whale.demand > 3000 + 1900)  // due rate + backlog / 10 s
        #expect(plan.tenants["shop"]!.rate > 100)  // its ceiling: room to grow
    }

    @Test func ageTrialAndPinsDecideTiersAndQuietDispatchersAreDropped() {
        let clock = ManualClock()
        var core = Core(configuration: .init(classifier: .init(newTenantAge: .seconds(60)), reportTTL: .seconds(5)))
        core.ingest(Self.report("d1", [Line(tenant: "young", due: 1, deferred: 0, dispatched: 1)]), now: clock.now)
        core.ingest(Self.report("d2", [
            Line(tenant: "old", due: 1, deferred: 0, dispatched: 1),
            Line(tenant: "trial", due: 1, deferred: 0, dispatched: 1),
            Line(tenant: "pinned", due: 1, deferred: 0, dispatched: 1),
        ]), now: clock.now)
        var plan = core.plan(
            now: clock.now,
            profiles: [
                "young": .init(age: .seconds(10)), "old": .init(age: .seconds(600)),
                "trial": .init(age: .seconds(600), trial: true), "pinned": .init(age: .seconds(600), pinned: .bulk),
            ], issuedAtMillis: 0)
        #expect(plan.tenants.mapValues(\.tier) == ["young": .new, "old": .standard, "trial": .new, "pinned": .bulk])
        #expect(plan.dispatchers == 2)
        // Capacity unknown: nobody is throttled.
        #expect(plan.tenants.values.allSatisfy { $0.rate >= 1e8 })
        clock.advance(by: .seconds(6))
        core.ingest(Self.report("d1", []), now: clock.now)
        plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(plan.dispatchers == 1)
    }

    @Test func aRestartedGovernorContinuesTheGenerationAndCapacity() {
        let clock = ManualClock()
        var old = QuotaPlan.compute(
            capacity: 800, demands: [Demand(id: "whale", tier: .bulk, rate: 5000)], generation: 41, issuedAtMillis: 0)
        old.dispatchers = 1
        var core = Core()
        core.resume(from: old, now: clock.now)
        #expect(abs((core.capacity.estimate ?? 0) - 800) < 1e-6)
        // Before any report: the whale is still bulk and still throttled to the capacity.
        let plan = core.plan(now: clock.now, profiles: ["whale": .init(age: .seconds(1e6))], issuedAtMillis: 0)
        #expect(plan.generation == 42)
        #expect(plan.tenants["whale"]?.tier == .bulk)
        #expect(abs((plan.tenants["whale"]?.rate ?? 0) - 760) < 1)
    }
}

@Suite("GovernorCore: draining a standing work backlog")
struct GovernorBacklogTests {
    typealias Core = GovernorCore<ManualClock>

    @Test func aStandingBacklogShrinksTheSharedCapacityUntilDrained() {
        let clock = ManualClock()
        var core = Core(configuration: .init(capacity: .init(fixed: 1000)))
        let whale = FairnessGate<ManualClock>.TenantReport(tenant: "whale", due: 5000, deferred: 50_000, dispatched: 0)
        core.ingest(.init(dispatcher: "d", interval: .seconds(1), tenants: [whale]), now: clock.now)
        core.observeWork(consumedTotal: 0, backlog: 0, now: clock.now)
        clock.advance(by: .seconds(1))
        core.observeWork(consumedTotal: 1000, backlog: 1250, now: clock.now)  // 1 s of work queued
        var plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        // threshold = ¼ s of the 1 000/s consumption = 250; excess 1 000 → drained within 2 s:
        // share 1 000 − 500.
        #expect(abs(plan.capacity - 500 * 0.95) < 1)
        clock.advance(by: .seconds(1))
        core.observeWork(consumedTotal: 2000, backlog: 100, now: clock.now)
        plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(abs(plan.capacity - 950) < 1)
    }
}
