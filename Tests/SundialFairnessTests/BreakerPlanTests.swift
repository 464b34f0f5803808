import Testing

@testable import SundialFairness

/// Issue 18: the governor judges each queue's downstream, and each tenant's on it, by the
/// results the dispatchers report; the plan carries breakers that are not closed; the gate
/// holds what they cover.
@Suite("Circuit breakers in the plan and the gate")
struct BreakerPlanTests {
    typealias Core = GovernorCore<ManualClock>
    typealias Gate = FairnessGate<ManualClock>
    typealias Line = Gate.TenantReport

    static func core() -> Core {
        var config = Core.Configuration()
        config.breaker = .init(
            window: .seconds(10), slots: 10, minimumSamples: 10, failureRatio: 0.5, coolDown: .seconds(4),
            maximumCoolDown: .seconds(60), probes: 2, probeTimeout: .seconds(30))
        return Core(configuration: config)
    }

    static func report(_ lines: [Line]) -> Core.Report { .init(dispatcher: "d", interval: .seconds(1), tenants: lines) }

    @Test func aFailingTenantIsHeldAloneAndProbedBackToClosed() {
        let clock = ManualClock()
        var core = Self.core()
        core.ingest(
            Self.report([
                Line(tenant: "broken", queue: "q", due: 20, deferred: 0, dispatched: 20, succeeded: 1, failedDownstream: 14),
                Line(tenant: "fine", queue: "q", due: 20, deferred: 0, dispatched: 20, succeeded: 20),
            ]), now: clock.now)
        var plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        let held = plan.queues["q"]?.tenants["broken"]?.breaker
        #expect(held?.state == .open && held?.reopensInMillis == 4000 && held?.probes == 2)
        #expect(plan.queues["q"]?.tenants["fine"]?.breaker == nil)
        // The broken tenant's failures do not count for the queue: its breaker stays closed.
        #expect(plan.queues["q"]?.breaker == nil)
        #expect(core.takeBreakerChanges().map(\.tenant) == ["broken"])

        clock.advance(by: .seconds(4))
        plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(plan.queues["q"]?.tenants["broken"]?.breaker?.state == .halfOpen)
        core.ingest(Self.report([Line(tenant: "broken", queue: "q", due: 0, deferred: 5, dispatched: 2, succeeded: 2)]), now: clock.now)
        plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(plan.queues["q"]?.tenants["broken"]?.breaker == nil)
        let changes = core.takeBreakerChanges().map(\.transition)
        #expect(changes == [.halfOpened, .closed])
    }

    @Test func aStandbyForgetsResultsSoATakeoverDoesNotReplayThem() {
        let clock = ManualClock()
        var core = Self.core()
        core.ingest(
            Self.report([Line(tenant: "t", queue: "q", due: 50, deferred: 0, dispatched: 50, failedDownstream: 50)]),
            now: clock.now)
        core.dropPendingOutcomes()  // every period while standing by
        clock.advance(by: .seconds(600))
        let plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(plan.queues["q"]?.tenants["t"]?.breaker == nil)
        #expect(core.takeBreakerChanges().isEmpty)
    }

    @Test func manyTenantsFailingTogetherOpenTheQueuesBreaker() {
        let clock = ManualClock()
        var core = Self.core()
        // Each below the sample size on its own; together the queue is clearly failing.
        core.ingest(
            Self.report((0..<4).map { Line(tenant: "t\($0)", queue: "q", due: 5, deferred: 0, dispatched: 5, failedDownstream: 5) }),
            now: clock.now)
        let plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(plan.queues["q"]?.breaker?.state == .open)
        #expect(plan.queues["q"]?.tenants.values.allSatisfy { $0.breaker == nil } == true)
        #expect(core.tenants(on: "q") == ["t0", "t1", "t2", "t3"])
        // Survives a takeover: a new governor resumes the breaker from the plan.
        var successor = Self.core()
        successor.resume(from: plan, now: clock.now)
        clock.advance(by: .seconds(1))
        let next = successor.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        #expect(next.queues["q"]?.breaker?.state == .open)
        #expect((next.queues["q"]?.breaker?.reopensInMillis ?? 0) <= 3000)
    }

    @Test func theGateHoldsWhatABreakerCoversAndLetsProbesThrough() throws {
        let clock = ManualClock()
        var gate = Gate()
        var queuePlan = QuotaPlan.unthrottled()
        queuePlan.tenants["broken"] = TenantQuota(
            tier: .standard, rate: 1e9, burst: 1e9, demand: 1, allocated: 1,
            breaker: BreakerStatus(state: .open, reopensInMillis: 5000, coolDownMillis: 5000, probes: 2, failureRatio: 0.9))
        gate.apply(FairnessPlan(generation: 1, issuedAtMillis: 0, queues: ["q": queuePlan]), now: clock.now)
        let candidates = (0..<10).map { _ in Gate.Candidate(tenant: "broken", queue: "q", dueSecond: 100) }
            + (0..<10).map { _ in Gate.Candidate(tenant: "fine", queue: "q", dueSecond: 100) }
            + (0..<10).map { _ in Gate.Candidate(tenant: "broken", queue: "other", dueSecond: 100) }
        var decisions = gate.decide(candidates, now: clock.now)
        #expect(decisions[10...].allSatisfy { $0 == .dispatch })
        for decision in decisions[..<10] {
            guard case .deferred(let delay, _) = decision else {
                Issue.record("a held fire must be deferred")
                continue
            }
            #expect(delay >= .milliseconds(4900) && delay <= .seconds(5))
        }
        #expect(gate.takeReport(now: clock.now).first { $0.tenant == "broken" && $0.queue == "q" }?.held == 10)

        // Half-open: two probes go out, the rest wait for the next probe allowance.
        queuePlan.tenants["broken"]!.breaker = BreakerStatus(
            state: .halfOpen, reopensInMillis: nil, coolDownMillis: 5000, probes: 2, failureRatio: 0.9)
        gate.apply(FairnessPlan(generation: 2, issuedAtMillis: 0, queues: ["q": queuePlan]), now: clock.now)
        decisions = gate.decide((0..<10).map { _ in Gate.Candidate(tenant: "broken", queue: "q", redelivered: true, dueSecond: 100) }, now: clock.now)
        #expect(decisions.filter { $0 == .dispatch }.count == 2)
        #expect(gate.heldTotal == 18)
    }

    @Test func withoutAGovernorAnOpenBreakerProbesAfterItsCoolDownAndAReReadDoesNotRestartIt() {
        let clock = ManualClock()
        var gate = Gate()
        var queuePlan = QuotaPlan.unthrottled()
        queuePlan.breaker = BreakerStatus(state: .open, reopensInMillis: 3000, coolDownMillis: 3000, probes: 1, failureRatio: 1)
        let plan = FairnessPlan(generation: 7, issuedAtMillis: 0, queues: ["q": queuePlan])
        gate.apply(plan, now: clock.now)
        clock.advance(by: .seconds(2))
        gate.apply(plan, now: clock.now)  // the periodic re-read of the same plan
        guard case .deferred(let delay, _) = gate.decide([Gate.Candidate(tenant: "t", queue: "q")], now: clock.now)[0] else {
            Issue.record("still open: held")
            return
        }
        #expect(delay <= .seconds(1))
        // Past the cool-down with no newer plan: one probe goes, the next waits.
        clock.advance(by: .seconds(1))
        let decisions = gate.decide((0..<3).map { _ in Gate.Candidate(tenant: "t", queue: "q", redelivered: true) }, now: clock.now)
        #expect(decisions.filter { $0 == .dispatch }.count == 1)
    }

    @Test func hostileBreakerStatusesAreRejected() throws {
        var plan = QuotaPlan.unthrottled()
        plan.breaker = BreakerStatus(state: .open, reopensInMillis: -1, coolDownMillis: 1000, probes: 1, failureRatio: 1)
        #expect(throws: (any Error).self) { try FairnessPlan(jsonBytes: FairnessPlan(generation: 1, issuedAtMillis: 0, queues: ["q": plan]).jsonBytes()) }
        plan.breaker = BreakerStatus(state: .open, reopensInMillis: 1000, coolDownMillis: 1000, probes: 0, failureRatio: 1)
        #expect(throws: (any Error).self) { try FairnessPlan(jsonBytes: FairnessPlan(generation: 1, issuedAtMillis: 0, queues: ["q": plan]).jsonBytes()) }
        plan.breaker = BreakerStatus(state: .open, reopensInMillis: 1000, coolDownMillis: 1000, probes: 2, failureRatio: 1)
        let ok = FairnessPlan(generation: 1, issuedAtMillis: 0, queues: ["q": plan])
        #expect(try FairnessPlan(jsonBytes: ok.jsonBytes()) == ok)
    }
}

@Suite("Retry budget per queue")
struct RetryBudgetTests {
    typealias Gate = FairnessGate<ManualClock>

    @Test func retriesAreLimitedToAShareOfFirstAttemptsPlusAFloor() {
        let clock = ManualClock()
        var config = Gate.Configuration()
        config.retryBudgetRatio = 0.2
        config.retryBudgetFloor = 10
        config.retryBudgetBurst = 50
        var gate = Gate(configuration: config)
        // A storm of retries on a queue: the saved-up budget (50), then the floor.
        let retries = (0..<200).map { _ in Gate.Candidate(tenant: "t", queue: "q", attempt: 2) }
        var decisions = gate.decide(retries, now: clock.now)
        #expect(decisions.filter { $0 == .dispatch }.count == 50)
        #expect(gate.retriesOverBudget == 150)
        // First attempts are never held, and each earns a fifth of a retry.
        clock.advance(by: .seconds(1))  // + 10 from the floor
        let first = (0..<100).map { _ in Gate.Candidate(tenant: "t", queue: "q") }
        decisions = gate.decide(first + (0..<100).map { _ in Gate.Candidate(tenant: "t", queue: "q", attempt: 3) }, now: clock.now)
        #expect(decisions[..<100].allSatisfy { $0 == .dispatch })
        #expect(decisions[100...].filter { $0 == .dispatch }.count == 10 + 20)
        // Another queue's budget is its own.
        decisions = gate.decide([Gate.Candidate(tenant: "t", queue: "other", attempt: 2)], now: clock.now)
        #expect(decisions == [.dispatch])
        // A held retry waits at least a second.
        guard case .deferred(let delay, _) = gate.decide([Gate.Candidate(tenant: "t", queue: "q", attempt: 2)], now: clock.now)[0] else {
            Issue.record("over budget: deferred")
            return
        }
        #expect(delay >= .seconds(1))
    }
}

@Suite("Paused queues")
struct PausedQueueTests {
    typealias Core = GovernorCore<ManualClock>
    typealias Gate = FairnessGate<ManualClock>

    @Test func aPausedQueueIsHeldUntilResumedAndThePauseListIsChecked() throws {
        let clock = ManualClock()
        var core = Core()
        core.pausedQueues = ["mail"]
        var plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        let status = try #require(plan.queues["mail"]?.breaker)
        #expect(status.state == .open && status.paused == true && status.reopensInMillis == 86_400_000)
        var gate = Gate()
        gate.apply(plan, now: clock.now)
        let decisions = gate.decide([Gate.Candidate(tenant: "t", queue: "mail"), Gate.Candidate(tenant: "t", queue: "other")], now: clock.now)
        #expect(decisions[1] == .dispatch)
        #expect(decisions[0] != .dispatch)
        // A takeover does not turn a pause into a failure breaker.
        var successor = Core()
        successor.resume(from: plan, now: clock.now)
        #expect(successor.queueBreakers["mail"] == nil)
        core.pausedQueues = []
        plan = core.plan(now: clock.now, profiles: [:], issuedAtMillis: 0)
        gate.apply(plan, now: clock.now)
        #expect(gate.decide([Gate.Candidate(tenant: "t", queue: "mail", redelivered: true)], now: clock.now) == [.dispatch])

        let list = QueuePauses(queues: ["mail": .init(sinceMillis: 1, by: "ops")])
        #expect(try QueuePauses(jsonBytes: list.jsonBytes(), isValidQueue: { !$0.isEmpty }) == list)
        let hostile = QueuePauses(queues: ["": .init(sinceMillis: 1, by: "ops")])
        #expect(throws: (any Error).self) { try QueuePauses(jsonBytes: hostile.jsonBytes(), isValidQueue: { !$0.isEmpty }) }
    }
}
