import Testing

@testable import SundialFairness

/// The Governor's "overloaded at first sight" rule: a flood on a queue never measured saturated
/// is throttled from the first sample on, by a guess of the executors' speed. It is there for a
/// whale's cold flood beside small tenants (docs/fairness.md, "Cold start"). It must not
/// throttle a burst nobody contends with — one tenant's, or one the executors keep up with —
/// since fires deferred under the guess keep delays computed at its rate after the next plan
/// has corrected it (README, "Scale-out": 6,000 timers of one tenant at one instant, two
/// dispatchers, work-stream lag p99 30.6 s with fairness on against 1.75 s with it off).
@Suite("Cold start: the overloaded-at-first-sight rule")
struct FirstSightTests {
    typealias Core = GovernorCore<ManualClock>
    typealias Gate = FairnessGate<ManualClock>
    typealias Line = Gate.TenantReport
    typealias Estimator = CapacityEstimator<ManualClock>

    static let period = Duration.milliseconds(500)

    /// Samples of queue "q" every governor period: 2 s of live executors with nothing to do,
    /// then a burst under way for 0.2 s — the executors took 200 jobs (1 000 jobs/s) and 400 more
    /// wait, the two dispatchers forwarding 3 000/s — with `due` fires per tenant reported by each
    /// dispatcher for that period. Returns the governor and the plan it publishes then.
    static func coldBurst(_ clock: ManualClock, due: [String: Int]) -> (Core, FairnessPlan) {
        var core = Core()
        for _ in 0..<5 {
            core.observeWork(queue: "q", consumedTotal: 0, backlog: 0, now: clock.now)
            clock.advance(by: period)
        }
        core.observeWork(queue: "q", consumedTotal: 200, backlog: 400, now: clock.now)
        let lines = due.map { Line(tenant: $0.key, queue: "q", due: $0.value, deferred: 0, dispatched: 0) }
        for dispatcher in ["d1", "d2"] {
            core.ingest(.init(dispatcher: dispatcher, interval: period, tenants: lines), now: clock.now)
        }
        let profiles = due.mapValues { _ in Core.TenantProfile(age: .seconds(1e6)) }
        let plan = core.plan(now: clock.now, profiles: profiles, issuedAtMillis: 0)
        return (core, plan)
    }

    static func delays(_ decisions: [Gate.Decision]) -> [Duration] {
        decisions.compactMap { decision -> Duration? in
            if case .deferred(let delay, _) = decision { return delay }
            return nil
        }
    }

    /// The reported defect. Before the fix the first-sight estimate was the consumption
    /// averaged over the 2 s window (200 jobs / 2 s = 100/s, a tenth of the executors' speed),
    /// the plan shared 25 % of it while draining the backlog, and each dispatcher held the lone
    /// tenant to 12.5 jobs/s: 990 of these 1 000 fires were nak'd with delays of up to 60 s.
    @Test func aLoneTenantsBurstIsNotThrottledByTheFirstSightGuess() {
        let clock = ManualClock()
        var (core, plan) = Self.coldBurst(clock, due: ["bench": 300])
        var gate = Gate()
        gate.apply(plan, now: clock.now)
        let burst = Array(repeating: Gate.Candidate(tenant: "bench", queue: "q"), count: 1000)
        var decisions = gate.decide(burst, now: clock.now)
        #expect(decisions.allSatisfy { $0 == .dispatch }, "longest deferral \(Self.delays(decisions).max() ?? .zero)")

        // The next sample measures the executors saturated (1 000 jobs/s since the last one):
        // from then on the lone tenant is held to that like any tenant alone on a saturated
        // queue, its fires smeared over seconds at the measured rate, not a guessed one.
        clock.advance(by: Self.period)
        core.observeWork(queue: "q", consumedTotal: 700, backlog: 600, now: clock.now)
        let line = Line(tenant: "bench", queue: "q", due: 300, deferred: 0, dispatched: 0)
        for dispatcher in ["d1", "d2"] {
            core.ingest(.init(dispatcher: dispatcher, interval: Self.period, tenants: [line]), now: clock.now)
        }
        plan = core.plan(now: clock.now, profiles: ["bench": .init(age: .seconds(1e6))], issuedAtMillis: 0)
        #expect(abs((plan.queues["q"]?.capacityEstimate ?? 0) - 1000) < 1)
        gate.apply(plan, now: clock.now)
        decisions = gate.decide(burst, now: clock.now)
        let delays = Self.delays(decisions)
        #expect(!delays.isEmpty)
        #expect((delays.max() ?? .zero) <= .seconds(3), "longest deferral \(delays.max() ?? .zero)")
    }

    /// What the rule is for, kept: a whale flooding a cold queue while a small tenant has fires
    /// on it is held from the first sample on (also in a batch of whale fires only: the small
    /// tenant's fires came in the batch before), and the small tenant is not.
    @Test func aWhalesColdFloodBesideASmallTenantIsHeldAtFirstSight() {
        let clock = ManualClock()
        let (_, plan) = Self.coldBurst(clock, due: ["whale": 300, "shop": 2])
        var gate = Gate()
        let whaleFire = Gate.Candidate(tenant: "whale", queue: "q")
        let shopFire = Gate.Candidate(tenant: "shop", queue: "q")
        // Just before the plan arrives, unthrottled.
        let before = gate.decide(
            [shopFire] + Array(repeating: whaleFire, count: 20) + [shopFire], now: clock.now.advanced(by: .milliseconds(-100)))
        #expect(before.allSatisfy { $0 == .dispatch })
        gate.apply(plan, now: clock.now)
        let flood = gate.decide(Array(repeating: whaleFire, count: 1000), now: clock.now)
        #expect(flood.filter { $0 == .dispatch }.count <= 100)
        #expect(Self.delays(flood).count >= 900)
        // Deferred by a guess, they come back within 2 s to be decided under the measured plan.
        #expect(Self.delays(flood).allSatisfy { $0 <= .seconds(2) }, "longest \(Self.delays(flood).max() ?? .zero)")
        let shop = gate.decide([shopFire, shopFire], now: clock.now.advanced(by: .milliseconds(100)))
        #expect(shop.allSatisfy { $0 == .dispatch })
    }

    /// With two Dispatchers a small tenant's few fires may all reach the other one: the plan's
    /// own view (two tenants with fires due on the queue, from every Dispatcher's reports) is
    /// contention too, so a Dispatcher that sees only the whale still holds it.
    @Test func aWhaleIsHeldAtFirstSightWhereOnlyThePlanSeesTheSmallTenant() {
        let clock = ManualClock()
        let (_, plan) = Self.coldBurst(clock, due: ["whale": 300, "shop": 2])
        #expect(plan.queues["q"]?.provisional == true)
        var gate = Gate()
        gate.apply(plan, now: clock.now)
        let flood = gate.decide(Array(repeating: Gate.Candidate(tenant: "whale", queue: "q"), count: 1000), now: clock.now)
        #expect(flood.filter { $0 == .dispatch }.count <= 100)
    }

    /// Contention is recent: another tenant's fire minutes before the burst, and a tenant the
    /// plan still lists with a demand decayed to almost nothing (it keeps one for 10 minutes
    /// after its last fire), do not make a lone tenant's burst contended.
    @Test func staleActivityOfAnotherTenantDoesNotCountAsContention() {
        let clock = ManualClock()
        var (_, plan) = Self.coldBurst(clock, due: ["bench": 300])
        plan.queues["q"]?.tenants["old"] = TenantQuota(tier: .standard, rate: 50, burst: 20, demand: 0.01, allocated: 0.01)
        #expect(plan.queues["q"]?.provisional == true)
        var gate = Gate()
        // One fire of another tenant 200 s ago, on this dispatcher.
        _ = gate.decide([Gate.Candidate(tenant: "shop", queue: "q")], now: clock.now.advanced(by: .seconds(-200)))
        gate.apply(plan, now: clock.now)
        let decisions = gate.decide(Array(repeating: Gate.Candidate(tenant: "bench", queue: "q"), count: 1000), now: clock.now)
        #expect(decisions.allSatisfy { $0 == .dispatch }, "longest deferral \(Self.delays(decisions).max() ?? .zero)")
    }

    /// "Keeping up": executors idle for 2 s, then a burst they keep up with — 1 000 jobs taken
    /// since the last sample (2 000 jobs/s) and only the 250 they hold in the backlog (⅛ s of
    /// their work). Before the fix the window's rate (1 000 / 2 s = 500/s) made those 250 jobs
    /// read as 4× overloaded, and the queue was "measured" at a quarter of its speed.
    @Test func aBurstTheExecutorsKeepUpWithIsNotOverloadAtFirstSight() {
        let clock = ManualClock()
        var e = Estimator()
        for _ in 0..<5 {
            e.observe(consumedTotal: 0, backlog: 0, throttling: false, now: clock.now)
            clock.advance(by: Self.period)
        }
        e.observe(consumedTotal: 1000, backlog: 250, throttling: false, now: clock.now)
        #expect(e.estimate == nil)
        // Still busy at the next sample: measured, at their speed.
        clock.advance(by: Self.period)
        e.observe(consumedTotal: 2000, backlog: 250, throttling: false, now: clock.now)
        #expect(abs((e.estimate ?? 0) - 2000) < 1)
    }
}
