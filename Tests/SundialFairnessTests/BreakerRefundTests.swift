import Testing

@testable import SundialFairness

/// Issue 18, part 2: a queue's own breaker settings, the trip rule the plan carries, the
/// dispatcher recognising a downstream that is tripping (so the attempts that failed meanwhile
/// are given back), and a restored breaker's cool-down counted from the plan's issue.
@Suite("Breaker settings per queue and refunds")
struct BreakerRefundTests {
    typealias Core = GovernorCore<ManualClock>
    typealias Gate = FairnessGate<ManualClock>
    typealias Line = Gate.TenantReport
    typealias Config = CircuitBreaker<ManualClock>.Configuration

    static let base = Config(
        window: .seconds(10), slots: 10, minimumSamples: 20, failureRatio: 0.5, coolDown: .seconds(4),
        maximumCoolDown: .seconds(16), probes: 2, probeTimeout: .seconds(30))

    static func report(_ lines: [Line]) -> Core.Report { .init(dispatcher: "d", interval: .seconds(1), tenants: lines) }

    @Test func aQueuesOwnSettingsTripItWhereTheDefaultsWouldNot() throws {
        let clock = ManualClock()
        var config = Core.Configuration()
        config.breaker = Self.base
        var core = Core(configuration: config)
        let sensitive = try #require(QueueBreakerSettings.Override(minimumSamples: 4, coolDownSeconds: 30).applied(to: Self.base))
        #expect(sensitive.minimumSamples == 4 && sensitive.coolDown == .seconds(30) && sensitive.maximumCoolDown == .seconds(30))
        core.breakerOverrides = ["payments": sensitive]
        // Five failures of one tenant on each queue: fewer than the default 20 samples.
        core.ingest(
            Self.report([
                Line(tenant: "t", queue: "payments", due: 5, deferred: 0, dispatched: 5, failedDownstream: 5),
                Line(tenant: "t", queue: "mail", due: 5, deferred: 0, dispatched: 5, failedDownstream: 5),
            ]), now: clock.now)
        let plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        let held = plan.queues["payments"]?.tenants["t"]?.breaker
        #expect(held?.state == .open && held?.reopensInMillis == 30_000)
        #expect(plan.queues["mail"]?.tenants["t"]?.breaker == nil)
        // The plan carries both trip rules, so dispatchers judge tripping alike.
        #expect(plan.breakerTrip(for: "mail") == Self.base.trip)
        #expect(plan.breakerTrip(for: "payments")?.minimumSamples == 4)
        let decoded = try FairnessPlan(jsonBytes: plan.jsonBytes())
        #expect(decoded.breakerTrip(for: "payments") == sensitive.trip)

        // Changed settings reach a breaker that exists: a shorter maximum clamps its cool-down.
        core.breakerOverrides = ["payments": try #require(QueueBreakerSettings.Override(coolDownSeconds: 2, maximumCoolDownSeconds: 8).applied(to: Self.base))]
        clock.advance(by: .seconds(1))
        _ = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(core.tenantBreakers[QueueTenant(queue: "payments", tenant: "t")]?.coolDown == .seconds(8))
    }

    @Test func unusableSettingsAreRefusedAndStoredOnesAreChecked() throws {
        #expect(QueueBreakerSettings.Override(failureRatio: 0).applied(to: Self.base) == nil)
        #expect(QueueBreakerSettings.Override(failureRatio: .nan).applied(to: Self.base) == nil)
        #expect(QueueBreakerSettings.Override(windowSeconds: -1).applied(to: Self.base) == nil)
        #expect(QueueBreakerSettings.Override(coolDownSeconds: 1e300).applied(to: Self.base) == nil)
        #expect(QueueBreakerSettings.Override(coolDownSeconds: 20, maximumCoolDownSeconds: 10).applied(to: Self.base) == nil)
        #expect(QueueBreakerSettings.Override(probes: 0).applied(to: Self.base) == nil)
        let valid = QueueBreakerSettings(queues: ["q": .init(failureRatio: 0.3)])
        #expect(try QueueBreakerSettings(jsonBytes: valid.jsonBytes(), isValidQueue: { !$0.contains(".") }) == valid)
        let badName = QueueBreakerSettings(queues: ["a.b": .init(failureRatio: 0.3)])
        #expect(throws: (any Error).self) { try QueueBreakerSettings(jsonBytes: badName.jsonBytes(), isValidQueue: { !$0.contains(".") }) }
        var plan = FairnessPlan(generation: 1, issuedAtMillis: 0, queues: [:])
        plan.breakerTrip = BreakerTrip(windowMillis: 0, slots: 10, minimumSamples: 1, failureRatio: 0.5)
        #expect(throws: (any Error).self) { try FairnessPlan(jsonBytes: plan.jsonBytes()) }
    }

    static func plan(_ generation: UInt64, trip: BreakerTrip?, queues: [String: QuotaPlan] = [:]) -> FairnessPlan {
        var plan = FairnessPlan(generation: generation, issuedAtMillis: 0, queues: queues)
        plan.breakerTrip = trip
        return plan
    }

    @Test func theGateRecognisesATrippingDownstreamBeforeThePlanSaysSo() {
        let clock = ManualClock()
        var gate = Gate()
        let trip = BreakerTrip(windowMillis: 10_000, slots: 10, minimumSamples: 6, failureRatio: 0.5)
        gate.apply(Self.plan(1, trip: trip), now: clock.now)
        // One job failing, retry after retry, says nothing about its downstream…
        gate.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 1, failedFirstAttempts: 1, now: clock.now)
        gate.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 2, now: clock.now)
        #expect(gate.judgeFailure(queue: "q", tenant: "a", now: clock.now) == .healthy)
        // …a second job failing too is suspect (below the rule's samples: not tripping).
        gate.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 1, failedFirstAttempts: 1, now: clock.now)
        #expect(gate.judgeFailure(queue: "q", tenant: "a", now: clock.now) == .suspected)
        // Six in all (the rule's samples): tripping.
        gate.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 1, now: clock.now)
        gate.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 1, now: clock.now)
        #expect(gate.judgeFailure(queue: "q", tenant: "a", now: clock.now) == .tripping)
        // The queue as a whole is tripping too, so another tenant's failure on it is given back;
        // on another queue nothing is.
        #expect(gate.judgeFailure(queue: "q", tenant: "b", now: clock.now) == .tripping)
        #expect(gate.judgeFailure(queue: "other", tenant: "a", now: clock.now) != .tripping)
        // Successes dilute it; the window forgets.
        gate.recordResults(queue: "q", tenant: "a", succeeded: 20, failedDownstream: 0, now: clock.now)
        #expect(gate.judgeFailure(queue: "q", tenant: "a", now: clock.now) == .healthy)
        clock.advance(by: .seconds(11))
        gate.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 1, now: clock.now)
        #expect(gate.judgeFailure(queue: "q", tenant: "a", now: clock.now) != .tripping)
    }

    @Test func aBreakerNotClosedInThePlanRefundsAndBreakersOffOrFIFONever() {
        let clock = ManualClock()
        let trip = BreakerTrip(windowMillis: 10_000, slots: 10, minimumSamples: 6, failureRatio: 0.5)
        var queuePlan = QuotaPlan.unthrottled()
        queuePlan.tenants["a"] = TenantQuota(
            tier: .standard, rate: 1e9, burst: 1e9, demand: 1, allocated: 1,
            breaker: BreakerStatus(state: .halfOpen, reopensInMillis: nil, coolDownMillis: 5000, probes: 2, failureRatio: 1))
        var gate = Gate()
        gate.apply(Self.plan(1, trip: trip, queues: ["q": queuePlan]), now: clock.now)
        #expect(gate.judgeFailure(queue: "q", tenant: "a", now: clock.now) == .tripping)  // a failed probe
        #expect(gate.judgeFailure(queue: "q", tenant: "b", now: clock.now) != .tripping)

        var off = Gate()
        off.apply(Self.plan(1, trip: nil, queues: ["q": queuePlan]), now: clock.now)
        off.recordResults(queue: "q", tenant: "a", succeeded: 0, failedDownstream: 50, now: clock.now)
        #expect(off.judgeFailure(queue: "q", tenant: "a", now: clock.now) != .tripping)

        var fifo = Gate(configuration: .init(enforce: false))
        fifo.apply(Self.plan(1, trip: trip, queues: ["q": queuePlan]), now: clock.now)
        #expect(fifo.judgeFailure(queue: "q", tenant: "a", now: clock.now) != .tripping)
    }

    @Test func anOldPlansCoolDownIsCountedFromItsIssue() {
        let clock = ManualClock()
        var queuePlan = QuotaPlan.unthrottled()
        queuePlan.breaker = BreakerStatus(state: .open, reopensInMillis: 10_000, coolDownMillis: 10_000, probes: 1, failureRatio: 1)
        let plan = FairnessPlan(generation: 3, issuedAtMillis: 0, queues: ["q": queuePlan])
        // A dispatcher reading it 7 s after its issue holds for the 3 s left, not 10 s.
        var gate = Gate()
        gate.apply(plan, age: .seconds(7), now: clock.now)
        guard case .deferred(let delay, _) = gate.decide([Gate.Candidate(tenant: "t", queue: "q")], now: clock.now)[0] else {
            Issue.record("still open: held")
            return
        }
        #expect(delay > .milliseconds(2900) && delay <= .seconds(3))
        // A governor taking over 7 s after it restores 3 s of cool-down.
        var config = Core.Configuration()
        config.breaker = Self.base
        var core = Core(configuration: config)
        core.resume(from: plan, age: .seconds(7), now: clock.now)
        #expect(core.queueBreakers["q"]?.reopensAt == clock.now.advanced(by: .seconds(3)))
        // Older than its cool-down: it half-opens at the next plan.
        var late = Core(configuration: config)
        late.resume(from: plan, age: .seconds(60), now: clock.now)
        _ = late.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(late.queueBreakers["q"]?.state == .halfOpen)
    }
}
