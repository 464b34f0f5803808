import Testing

@testable import SundialFairness

/// The pure pieces composed the way the Dispatcher is meant to use them (docs/fairness.md), in a
/// discrete-time simulation — not a benchmark, a check that they fit together:
/// fires become visible at their due tick; each tick the dispatcher puts what it fetched into the
/// fair scheduler, forwards what the tenants' buckets admit, and defers the rest to a slot
/// reserved in the bucket (the nak-with-delay / re-schedule smearing; a deferred fire comes back
/// prepaid and goes straight out). Executors take `capacity` jobs per second from a FIFO work queue.
@Suite("Unit: fairness simulated dispatcher")
struct SimulatedDispatcherTests {
    struct Fire: Sendable {
        let id: Int
        let tenant: String
        let tier: Tier
        let dueTick: Int
        var prepaid = false
    }

    struct Outcome {
        var lagTicks: [Tier: [Int]] = [:]
        var executed: [Int: Int] = [:]  // id → times
        var whaleInFirstMinute = 0
        var othersInFirstMinute = 0

        func p95(_ tier: Tier, tick: Duration) -> Duration {
            let sorted = (lagTicks[tier] ?? []).sorted()
            guard !sorted.isEmpty else { return .zero }
            return tick * sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.95))]
        }
    }

    static let tick = Duration.milliseconds(10)
    static let ticksPerSecond = 100
    static let capacityPerSecond = 500
    static let maxDefer = Duration.seconds(30)

    /// One whale with 60 000 fires due in the first minute (2× capacity on its own), 500
    /// standard tenants with 4 each and 50 new tenants with 10 each, at random instants.
    static func workload() -> [Fire] {
        var rng = SplitMix64(seed: 2024)
        var fires: [Fire] = []
        var id = 0
        func add(_ tenant: String, _ tier: Tier, _ count: Int) {
            for _ in 0..<count {
                fires.append(Fire(id: id, tenant: tenant, tier: tier, dueTick: rng.int(0...5_999)))
                id += 1
            }
        }
        add("whale", .bulk, 60_000)
        for t in 0..<500 { add("std-\(t)", .standard, 4) }
        for t in 0..<50 { add("new-\(t)", .new, 10) }
        return fires
    }

    static func simulate(
        fair: Bool, fires: [Fire], seconds: Int, policy: QuotaPolicy = QuotaPolicy()
    ) -> Outcome {
        let totalTicks = seconds * ticksPerSecond
        let maxDeferTicks = Int(maxDefer / tick)
        var wheel = [[Fire]](repeating: [], count: totalTicks + maxDeferTicks + 2)
        for f in fires { wheel[f.dueTick].append(f) }

        // The Governor's view: due rates over the minute, shared by max-min fairness.
        var perTenant: [String: (Tier, Int)] = [:]
        for f in fires { perTenant[f.tenant, default: (f.tier, 0)].1 += 1 }
        let demands = perTenant.map { Demand(id: $0.key, tier: $0.value.0, rate: Double($0.value.1) / 60) }
        // Default policy: 95 % of capacity shared out, bursts of ¼ s.
        let plan = QuotaPlan.compute(
            capacity: Double(capacityPerSecond), demands: demands, policy: policy, generation: 1,
            issuedAtMillis: 0)

        let clock = ManualClock()
        let start = clock.now
        var buckets: [String: TokenBucket<ManualClock>] = [:]
        var drr = DeficitRoundRobin<String, Fire>(capacity: 1_000_000)
        var work = FIFO<Fire>()
        var outcome = Outcome()
        let perTick = capacityPerSecond / ticksPerSecond

        for t in 0..<totalTicks {
            let now = start.advanced(by: tick * t)
            let fetched = wheel[t]
            wheel[t] = []
            if fair {
                for f in fetched {
                    if f.prepaid {
                        work.append(f)  // its slot was reserved when it was deferred
                    } else {
                        drr.enqueue(f, for: f.tenant, weight: plan.weights.weight(of: f.tier))
                    }
                }
                let admitted = drr.dequeue(limit: .max) { tenant, fire in
                    if buckets[tenant] == nil {
                        let q = plan.resolve(tenant, fallbackTier: fire.tier).quota
                        buckets[tenant] = TokenBucket(rate: q.rate, burst: q.burst, now: now)
                    }
                    return buckets[tenant]!.tryTake(now: now)
                }
                for (_, f) in admitted { work.append(f) }
                // Over quota: defer to the next free slot of the tenant's bucket, prepaid.
                for (tenant, fire) in drr.removeAll() {
                    var f = fire
                    if let wait = buckets[tenant]!.reserve(now: now, maxWait: maxDefer) {
                        f.prepaid = true
                        wheel[t + max(1, Int((wait / tick).rounded(.up)))].append(f)
                    } else {
                        wheel[t + maxDeferTicks].append(f)
                    }
                }
            } else {
                for f in fetched { work.append(f) }  // plain FIFO
            }
            for _ in 0..<perTick {
                guard let f = work.popFirst() else { break }
                outcome.lagTicks[f.tier, default: []].append(t - f.dueTick)
                outcome.executed[f.id, default: 0] += 1
                if t < 60 * ticksPerSecond {
                    if f.tenant == "whale" {
                        outcome.whaleInFirstMinute += 1
                    } else {
                        outcome.othersInFirstMinute += 1
                    }
                }
            }
        }
        return outcome
    }

    @Test func smallTenantsAreServedOnTimeUnderAWhaleFlood() {
        let fires = Self.workload()
        let fair = Self.simulate(fair: true, fires: fires, seconds: 240)
        let fifo = Self.simulate(fair: false, fires: fires, seconds: 240)

        // Nothing lost, nothing duplicated.
        #expect(fair.executed.count == fires.count)
        #expect(fair.executed.values.allSatisfy { $0 == 1 })

        // Standard and new tenants: on time with fairness, far behind without.
        #expect(fair.p95(.standard, tick: Self.tick) <= .seconds(2))
        #expect(fair.p95(.new, tick: Self.tick) <= .seconds(1))
        #expect(fifo.p95(.standard, tick: Self.tick) > .seconds(10))

        // Work-conserving: the whale gets ≥ 90 % of what the others leave in the busy minute.
        let leftover = Self.capacityPerSecond * 60 - fair.othersInFirstMinute
        #expect(Double(fair.whaleInFirstMinute) >= 0.9 * Double(leftover),
                "whale \(fair.whaleInFirstMinute) of leftover \(leftover)")
    }

    @Test func withoutHeadroomAStandingQueueDelaysEveryone() {
        let fires = Self.workload()
        let tight = QuotaPolicy(burstSeconds: 1, targetUtilisation: 1)
        let noHeadroom = Self.simulate(fair: true, fires: fires, seconds: 240, policy: tight)
        let headroom = Self.simulate(fair: true, fires: fires, seconds: 240)
        #expect(noHeadroom.executed.count == fires.count)
        // Sharing out 100 % leaves the whale's first burst queued in front of everyone for the
        // whole flood; 5 % headroom drains it.
        #expect(noHeadroom.p95(.new, tick: Self.tick) > headroom.p95(.new, tick: Self.tick) * 2)
    }
}
