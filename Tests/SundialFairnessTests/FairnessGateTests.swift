import Testing

@testable import SundialFairness

@Suite("FairnessGate: the Dispatcher's enforcement")
struct FairnessGateTests {
    typealias Gate = FairnessGate<ManualClock>

    /// A plan throttling `whale` to `rate` jobs/s (bulk), everyone else unlisted.
    static func plan(whaleRate: Double, burst: Double = 10, generation: UInt64 = 1, dispatchers: Int = 1) -> QuotaPlan {
        var plan = QuotaPlan.unthrottled()
        plan.generation = generation
        plan.tenants["whale"] = TenantQuota(tier: .bulk, rate: whaleRate, burst: burst, demand: 1000, allocated: whaleRate)
        plan.dispatchers = dispatchers
        return plan
    }

    static func fires(_ tenant: String, _ n: Int, redelivered: Bool = false) -> [Gate.Candidate] {
        Array(repeating: Gate.Candidate(tenant: tenant, redelivered: redelivered), count: n)
    }

    @Test func withoutAPlanNothingIsHeldBack() {
        let clock = ManualClock()
        var gate = Gate()
        let decisions = gate.decide(Self.fires("whale", 5000), now: clock.now)
        #expect(decisions.allSatisfy { $0 == .dispatch })
    }

    @Test func overQuotaFiresAreDeferredAndSmearedAtTheTenantsRate() {
        let clock = ManualClock()
        var gate = Gate()
        gate.apply(Self.plan(whaleRate: 100, burst: 10), now: clock.now)
        let decisions = gate.decide(Self.fires("whale", 210) + Self.fires("small", 3), now: clock.now)
        let dispatched = decisions.filter { $0 == .dispatch }.count
        #expect(dispatched == 10 + 3)  // the whale's burst, and every small fire
        let delays = decisions.compactMap { d -> Double? in
            if case .deferred(let delay, _) = d { return delay.inSeconds } else { return nil }
        }
        #expect(delays.count == 200)
        // Successive deferred fires are 1/rate apart: the 200 are spread over ≈ 2 s.
        #expect(delays == delays.sorted())
        #expect(abs(delays.last! - 2.0) < 0.05)
        #expect(abs((delays[101] - delays[100]) - 0.01) < 1e-6)
        #expect(decisions.suffix(3).allSatisfy { $0 == .dispatch })
    }

    @Test func returningFiresGoFirstAndNeverCountAsNewDemand() {
        let clock = ManualClock()
        var gate = Gate()
        gate.apply(Self.plan(whaleRate: 10, burst: 5), now: clock.now)
        _ = gate.decide(Self.fires("whale", 25), now: clock.now)  // 5 out, 20 deferred
        #expect(gate.deferredNow == 20)
        clock.advance(by: .seconds(1))  // 10 tokens, capped to the burst of 5
        let mixed = Self.fires("whale", 10) + Self.fires("whale", 8, redelivered: true)
        let decisions = gate.decide(mixed, now: clock.now)
        // The 5 tokens go to returning fires (the first 5 of them).
        #expect(decisions[10..<15].allSatisfy { $0 == .dispatch })
        #expect(decisions[0..<10].allSatisfy { $0 != .dispatch })
        let report = gate.takeReport(now: clock.now)
        #expect(report == [.init(tenant: "whale", due: 35, deferred: 20 - 8 + 13, dispatched: 10)])
    }

    @Test func aDispatcherEnforcesItsShareOfEachBucket() {
        let clock = ManualClock()
        var gate = Gate()
        gate.apply(Self.plan(whaleRate: 100, burst: 40, dispatchers: 4), now: clock.now)
        let decisions = gate.decide(Self.fires("whale", 100), now: clock.now)
        #expect(decisions.filter { $0 == .dispatch }.count == 10)
        guard case .deferred(let first, _) = decisions[10] else { Issue.record("not deferred"); return }
        // Next token of a 25/s bucket in 40 ms.
        #expect(abs(first.inSeconds - 0.1) < 1e-9)  // clamped up to minimumDeferral
        guard case .deferred(let later, _) = decisions[99] else { Issue.record("not deferred"); return }
        #expect(abs(later.inSeconds - (0.04 + 89 * 0.04)) < 1e-6)
    }

    @Test func aReturningFireKeepsItsPlaceByDueTimeAndDelaysAreCapped() {
        let clock = ManualClock()
        var gate = Gate()
        gate.apply(Self.plan(whaleRate: 10, burst: 1), now: clock.now)
        // 1 000 fires due at second 100, then 1 000 due at second 200: 1 dispatched, the rest
        // in line at 0.1 s per fire. A wait beyond 60 s is cut to max(60 s, half of it).
        let early = (0..<1000).map { _ in Gate.Candidate(tenant: "whale", dueSecond: 100) }
        let late = (0..<1000).map { _ in Gate.Candidate(tenant: "whale", dueSecond: 200) }
        let first = gate.decide(early + late, now: clock.now)
        let deferred = first.compactMap { d -> (delay: Double, wait: Double)? in
            if case .deferred(let delay, let wait) = d { return (delay.inSeconds, wait.inSeconds) } else { return nil }
        }
        #expect(deferred.count == 1999)
        #expect(deferred.allSatisfy { abs($0.delay - ($0.wait <= 60 ? $0.wait : max(60, $0.wait / 2))) < 1e-6 })
        #expect(abs(deferred.map(\.wait).max()! - 199.9) < 0.01)  // the last fire: 1 998 ahead of it
        #expect(abs(deferred.map(\.delay).max()! - 99.95) < 0.01)
        #expect(deferred.filter { abs($0.delay - 60) < 0.05 }.count > 590)
        // A capped early fire comes back after 60 s while the quota doubled: it is placed among
        // the early fires still waiting (not behind the 1 000 late ones), at the new rate.
        clock.advance(by: .seconds(60))
        var raised = Self.plan(whaleRate: 20, burst: 1, generation: 2)
        raised.tenants["whale"]!.allocated = 20
        gate.apply(raised, now: clock.now)
        _ = gate.decide([Gate.Candidate(tenant: "whale", redelivered: true, dueSecond: 100)], now: clock.now)  // takes the token
        let back = gate.decide([Gate.Candidate(tenant: "whale", redelivered: true, dueSecond: 100)], now: clock.now)
        guard case .deferred(let again, _) = back[0] else { Issue.record("not deferred"); return }
        // 999 − 2 early fires ahead (all still outstanding in this simulation) at 20/s ≈ 49.9 s.
        #expect(abs(again.inSeconds - (0.05 + 997 * 0.05)) < 0.01)
    }

    @Test func overTheDeferralCapFiresAreDispatchedNotStalled() {
        let clock = ManualClock()
        var gate = Gate(configuration: .init(maximumDeferred: 50))
        gate.apply(Self.plan(whaleRate: 1, burst: 1), now: clock.now)
        let decisions = gate.decide(Self.fires("whale", 200), now: clock.now)
        #expect(decisions.filter { $0 != .dispatch }.count == 50)
        #expect(gate.overflowDispatched == 149)
    }

    @Test func fifoModeDispatchesEverythingButStillReportsDemand() {
        let clock = ManualClock()
        var gate = Gate(configuration: .init(enforce: false))
        gate.apply(Self.plan(whaleRate: 1, burst: 1), now: clock.now)
        #expect(gate.decide(Self.fires("whale", 500), now: clock.now).allSatisfy { $0 == .dispatch })
        #expect(gate.takeReport(now: clock.now).first?.due == 500)
    }

    @Test func aNewPlanKeepsTokensAndAnOlderPlanIsIgnored() {
        let clock = ManualClock()
        var gate = Gate()
        gate.apply(Self.plan(whaleRate: 10, burst: 100, generation: 5), now: clock.now)
        _ = gate.decide(Self.fires("whale", 100), now: clock.now)  // bucket empty
        gate.apply(Self.plan(whaleRate: 1000, burst: 1000, generation: 6), now: clock.now)
        // No burst is released by the plan change.
        #expect(gate.decide(Self.fires("whale", 1), now: clock.now) != [.dispatch])
        gate.apply(Self.plan(whaleRate: 1, burst: 1, generation: 4), now: clock.now)
        #expect(gate.plan.generation == 6)
        clock.advance(by: .milliseconds(100))
        #expect(gate.decide(Self.fires("whale", 100), now: clock.now).filter { $0 == .dispatch }.count == 100)
    }

    @Test func aNewLeadersPlansWinAlsoWhenItsGenerationsRestart() {
        let clock = ManualClock()
        var gate = Gate()
        var old = Self.plan(whaleRate: 10, generation: 500)
        old.epoch = 7
        gate.apply(old, now: clock.now)
        // The new leader could not read the stored plan: generation 1, but a later term.
        var successor = Self.plan(whaleRate: 20, generation: 1)
        successor.epoch = 9
        gate.apply(successor, now: clock.now)
        #expect(gate.plan.epoch == 9 && gate.plan.generation == 1)
        // A late plan of the old term is ignored, whatever its generation.
        var late = Self.plan(whaleRate: 30, generation: 501)
        late.epoch = 7
        gate.apply(late, now: clock.now)
        #expect(gate.plan.epoch == 9 && gate.plan.generation == 1)
        // Plans without an epoch (older governors) rank below any term.
        gate.apply(Self.plan(whaleRate: 40, generation: 10_000), now: clock.now)
        #expect(gate.plan.epoch == 9)
        var next = successor
        next.generation = 2
        gate.apply(next, now: clock.now)
        #expect(gate.plan.generation == 2)
    }

    @Test func fourDispatchersTogetherNeverFillTheConsumersWindow() {
        let clock = ManualClock()
        var config = Gate.Configuration()
        config.consumerWindow = 10_000
        config.maximumDeferred = 4_000  // alone, four of these could take 16,000 > 10,000
        var gates = (0..<4).map { _ in Gate(configuration: config) }
        var deferredTotal = 0
        for index in gates.indices {
            gates[index].apply(Self.plan(whaleRate: 1, burst: 1, dispatchers: 4), now: clock.now)
            #expect(gates[index].deferralLimit == 2_000)
            _ = gates[index].decide(Self.fires("whale", 5_000), now: clock.now)
            deferredTotal += gates[index].deferredNow
            #expect(gates[index].overflowDispatched > 0)
        }
        #expect(deferredTotal <= 8_000)
        #expect(deferredTotal < config.consumerWindow)
    }

    @Test func aPlanTooLargeForKVIsTrimmedKeepingThrottledTenants() throws {
        var plan = QuotaPlan.unthrottled()
        plan.tierDefaults[.new] = Quota(rate: 50, burst: 50)
        plan.tierDefaults[.standard] = Quota(rate: 20, burst: 20)
        for index in 0..<20_000 {
            // Bulk tenants held below their demand, and many satisfied ones of every tier.
            let throttled = index % 10 == 0
            plan.tenants["tenant-\(index)"] = TenantQuota(
                tier: throttled ? .bulk : (index % 3 == 0 ? .new : .bulk), rate: throttled ? 5 : 100, burst: 10,
                demand: throttled ? Double(1000 + index) : 50, allocated: 5)
        }
        let untrimmed = try plan.jsonBytes().count
        let (fitted, bytes, dropped) = try plan.fitting(maxBytes: 256 * 1024)
        #expect(untrimmed > 256 * 1024)
        #expect(bytes.count <= 256 * 1024)
        #expect(dropped > 0)
        #expect(try QuotaPlan(jsonBytes: bytes) == fitted)
        // Every throttled tenant that fits is kept before any satisfied one.
        let keptThrottled = fitted.tenants.values.filter { $0.rate < $0.demand }.count
        let keptSatisfied = fitted.tenants.count - keptThrottled
        #expect(keptThrottled == 2_000 || keptSatisfied == 0)
        // A plan that fits is published as it is (compacted).
        let small = Self.plan(whaleRate: 10)
        #expect(try small.fitting(maxBytes: 256 * 1024).dropped == 0)
    }

    @Test func implausiblePlansFromKVAreRefused() throws {
        var plan = Self.plan(whaleRate: 10)
        plan.tenants["whale"]?.rate = -5
        #expect(throws: (any Error).self) { try QuotaPlan(jsonBytes: plan.jsonBytes()) }
        var zero = Self.plan(whaleRate: 10)
        zero.dispatchers = 0
        #expect(throws: (any Error).self) { try QuotaPlan(jsonBytes: zero.jsonBytes()) }
        #expect(try QuotaPlan(jsonBytes: Self.plan(whaleRate: 10).jsonBytes()) == Self.plan(whaleRate: 10))
    }

    @Test func unknownTenantsGetTheNewTierDefault() {
        let clock = ManualClock()
        var gate = Gate()
        var plan = Self.plan(whaleRate: 10)
        plan.tierDefaults[.new] = Quota(rate: 50, burst: 20)
        plan.tierDefaults[.standard] = Quota(rate: 5, burst: 2)
        gate.apply(plan, now: clock.now)
        #expect(gate.decide(Self.fires("fresh", 20), now: clock.now).allSatisfy { $0 == .dispatch })
        #expect(gate.tier(of: "fresh") == .new)
        #expect(gate.tier(of: "whale") == .bulk)
    }

    @Test func idleTenantsAreForgottenAndLostDeferralsExpire() {
        let clock = ManualClock()
        var gate = Gate(configuration: .init(idleExpiry: .seconds(60)))
        gate.apply(Self.plan(whaleRate: 10, burst: 1), now: clock.now)
        _ = gate.decide(Self.fires("whale", 11) + Self.fires("small", 1), now: clock.now)
        #expect(gate.deferredNow == 10)
        // The deferred fires went to another dispatcher: after they were due back (1 s) plus
        // grace, the count is dropped; after the idle expiry the tenants are gone.
        clock.advance(by: .seconds(40))
        _ = gate.takeReport(now: clock.now)
        #expect(gate.deferredNow == 0)
        clock.advance(by: .seconds(30))
        _ = gate.takeReport(now: clock.now)
        #expect(gate.activeTenants == 0)
    }

    @Test func overManyBatchesTheWhaleGetsItsRateAndSmallTenantsEverything() {
        // 10 ms batches for 20 s: whale offers 2000/s, 20 small tenants 1/s each; quota 300/s.
        let clock = ManualClock()
        var gate = Gate()
        gate.apply(Self.plan(whaleRate: 300, burst: 30), now: clock.now)
        var returning: [(at: Duration, count: Int)] = []
        var whaleOut = 0
        var smallOut = 0
        var smallOffered = 0
        for step in 0..<2000 {
            let now = clock.now
            var batch = Self.fires("whale", 20)
            if step % 5 == 0 {
                batch += (0..<4).map { _ in Gate.Candidate(tenant: "small-\((step / 5) % 20)") }
                smallOffered += 4
            }
            let back = returning.filter { $0.at <= now.offset }.reduce(0) { sum, r in sum + r.count }
            returning.removeAll { $0.at <= now.offset }
            batch += Self.fires("whale", back, redelivered: true)
            for (candidate, decision) in zip(batch, gate.decide(batch, now: now)) {
                switch decision {
                case .dispatch:
                    if candidate.tenant == "whale" { whaleOut += 1 } else { smallOut += 1 }
                case .deferred(let delay, _):
                    returning.append((now.offset + delay, 1))
                }
            }
            clock.advance(by: .milliseconds(10))
        }
        #expect(smallOut == smallOffered)
        let rate = Double(whaleOut) / 20
        #expect(abs(rate - 300) < 300 * 0.03, "whale rate \(rate)")
    }
}
