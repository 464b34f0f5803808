import Testing

@testable import SundialFairness

@Suite("Unit: fairness fair share")
struct FairShareTests {
    /// Textbook water-filling, O(n²): the oracle the O(n log n) version is checked against.
    static func oracle(capacity: Double, demands: [Double], weights: [Double]) -> [Double] {
        var alloc = [Double](repeating: 0, count: demands.count)
        var open = Set(demands.indices)
        var remaining = capacity
        while !open.isEmpty && remaining > 0 {
            let totalWeight = open.reduce(0) { $0 + weights[$1] }
            let level = remaining / totalWeight
            let satisfied = open.filter { demands[$0] <= weights[$0] * level }
            if satisfied.isEmpty {
                for i in open { alloc[i] = weights[i] * level }
                break
            }
            for i in satisfied {
                alloc[i] = demands[i]
                remaining -= demands[i]
                open.remove(i)
            }
        }
        return alloc
    }

    @Test func oneWhaleAndManySmallTenants() {
        var demands = [Demand(id: "whale", tier: .bulk, rate: 100_000)]
        for i in 0..<500 { demands.append(Demand(id: "std-\(i)", tier: .standard, rate: 0.5)) }
        for i in 0..<50 { demands.append(Demand(id: "new-\(i)", tier: .new, rate: 1)) }
        let share = FairShare.allocate(capacity: 1_000, demands: demands)
        for a in share.allocations where a.id != "whale" {
            #expect(a.isSatisfied, "\(a.id) got \(a.rate) of \(a.demand)")
        }
        let leftover = 1_000 - 500 * 0.5 - 50 * 1
        #expect(share["whale"] >= 0.9 * leftover)
        #expect(close(share["whale"], leftover))  // work-conserving: all of it
        #expect(share.isCapacityBound)
        #expect(close(share.totalAllocated, 1_000))
        #expect(share.byTier[.standard]?.tenants == 500)
        #expect(close(share.byTier[.standard]!.allocated, 250))
        #expect(close(share.byTier[.new]!.allocated, 50))
        #expect(close(share.byTier[.bulk]!.allocated, 700))
        // The whale is throttled: its ceiling is its allocation. Small ones have room to grow.
        #expect(share.allocation(for: "whale")!.ceiling == share["whale"])
        #expect(share.allocation(for: "std-0")!.ceiling > 0.5)
    }

    @Test func aWhaleAloneRunsAtFullSpeedWithSpareCapacity() {
        let demands = [
            Demand(id: "whale", tier: .bulk, rate: 600),
            Demand(id: "a", tier: .standard, rate: 10),
        ]
        let share = FairShare.allocate(capacity: 1_000, demands: demands)
        #expect(share["whale"] == 600)
        #expect(share["a"] == 10)
        #expect(share.level == nil)
        // It may grow into everything the others leave.
        #expect(close(share.allocation(for: "whale")!.ceiling, 990))
        // Max-min with a unbounded: a (weight 2) would get 2/3 of C, the whale 1/3.
        #expect(close(share.allocation(for: "a")!.ceiling, 2_000.0 / 3))
    }

    @Test func underCapacityEveryoneGetsItsDemand() {
        let demands = (0..<100).map {
            Demand(id: "t\($0)", tier: Tier.allCases[$0 % 3], rate: Double($0) * 0.7)
        }
        let total = demands.reduce(0) { $0 + $1.rate }
        let share = FairShare.allocate(capacity: total + 1, demands: demands)
        for (d, a) in zip(demands, share.allocations) {
            #expect(a.id == d.id && a.rate == d.rate)
        }
        #expect(!share.isCapacityBound)
    }

    @Test(
        "saturated tenants split the capacity by weight",
        arguments: [
            TierWeights(), TierWeights(new: 10, standard: 3, bulk: 1),
            TierWeights(new: 1, standard: 1, bulk: 1),
        ])
    func weightsRespectedWhenAllSaturated(weights: TierWeights) {
        let demands = Tier.allCases.map { Demand(id: $0.rawValue, tier: $0, rate: 1e9) }
        let share = FairShare.allocate(capacity: 700, demands: demands, weights: weights)
        let totalWeight = weights.new + weights.standard + weights.bulk
        for tier in Tier.allCases {
            #expect(close(share[tier.rawValue], 700 * weights[tier] / totalWeight))
        }
        #expect(close(share.level!, 700 / totalWeight))
    }

    @Test func leftoverGoesToTheUnsatisfiedByWeight() {
        // C = 10: a (w 1) wants 2 → 2; b (w 1) wants 4 → 4; c (w 1) wants 10 → the rest, 4.
        let equal = TierWeights(new: 1, standard: 1, bulk: 1)
        let share = FairShare.allocate(
            capacity: 10,
            demands: [
                Demand(id: "a", tier: .standard, rate: 2), Demand(id: "b", tier: .standard, rate: 4),
                Demand(id: "c", tier: .standard, rate: 10),
            ], weights: equal)
        #expect(share["a"] == 2 && share["b"] == 4 && share["c"] == 4)
        // Weighted: new (4) and bulk (1) both want 100 of 10, standard (2) wants 1.
        let weighted = FairShare.allocate(
            capacity: 10,
            demands: [
                Demand(id: "n", tier: .new, rate: 100), Demand(id: "s", tier: .standard, rate: 1),
                Demand(id: "b", tier: .bulk, rate: 100),
            ])
        #expect(weighted["s"] == 1)
        #expect(close(weighted["n"], 7.2) && close(weighted["b"], 1.8))
    }

    @Test func edgeCases() {
        let empty = FairShare.allocate(capacity: 100, demands: [])
        #expect(empty.allocations.isEmpty && empty.totalAllocated == 0)
        #expect(empty.tierDefaultCeilings[.bulk] == 100)

        let zero = FairShare.allocate(
            capacity: 0, demands: [Demand(id: "a", tier: .new, rate: 5)])
        #expect(zero["a"] == 0 && zero.level == 0 && !zero.allocations[0].isSatisfied)

        let nonsense = FairShare.allocate(
            capacity: .nan,
            demands: [
                Demand(id: "a", tier: .new, rate: .nan), Demand(id: "b", tier: .bulk, rate: -4),
            ])
        #expect(nonsense.totalAllocated == 0 && nonsense.capacity == 0)

        let infiniteDemand = FairShare.allocate(
            capacity: 50,
            demands: [
                Demand(id: "a", tier: .bulk, rate: .infinity), Demand(id: "b", tier: .new, rate: 10),
            ])
        #expect(infiniteDemand["b"] == 10 && infiniteDemand["a"] == 40)

        let unlimited = FairShare.allocate(
            capacity: .infinity, demands: [Demand(id: "a", tier: .bulk, rate: 1e6)])
        #expect(unlimited["a"] == 1e6 && unlimited.level == nil)

        let oneOverCapacity = FairShare.allocate(
            capacity: 10, demands: [Demand(id: "a", tier: .bulk, rate: 100)])
        #expect(oneOverCapacity["a"] == 10 && oneOverCapacity.isCapacityBound)

        let merged = FairShare.allocate(
            capacity: 100,
            demands: [
                Demand(id: "a", tier: .new, rate: 3), Demand(id: "b", tier: .bulk, rate: 1),
                Demand(id: "a", tier: .bulk, rate: 4),
            ])
        #expect(merged.allocations.map(\.id) == ["a", "b"])
        #expect(merged.allocation(for: "a")?.demand == 7 && merged.allocation(for: "a")?.tier == .new)
        #expect(merged["unknown"] == 0)
    }

    @Test func tierDefaultCeilingIsWhatANewcomerWouldGet() {
        let demands = [
            Demand(id: "whale", tier: .bulk, rate: 10_000), Demand(id: "s", tier: .standard, rate: 5),
        ]
        let share = FairShare.allocate(capacity: 1_000, demands: demands)
        for tier in Tier.allCases {
            let withNewcomer = FairShare.allocate(
                capacity: 1_000, demands: demands + [Demand(id: "x", tier: tier, rate: 1e12)])
            #expect(close(share.tierDefaultCeilings[tier]!, withNewcomer["x"], relative: 1e-9))
        }
        // With a whale at weight 1, a new tenant (weight 4) could claim 4/5 of what is left.
        #expect(close(share.tierDefaultCeilings[.new]!, 995 * 4 / 5))
    }

    @Test("random cases satisfy the max-min properties", arguments: [UInt64(7), 8, 9, 10])
    func properties(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<150 {
            let n = rng.int(0...120)
            let weights = TierWeights(
                new: rng.double(0.5..<8), standard: rng.double(0.5..<4), bulk: rng.double(0.1..<2))
            var demands: [Demand] = []
            for i in 0..<n {
                let tier = rng.pick(Tier.allCases)
                // Heavy-tailed demands, some zero, some whales.
                let rate: Double =
                    rng.chance(0.1) ? 0 : rng.chance(0.05) ? rng.double(1e4..<1e6) : rng.double(0..<50)
                demands.append(Demand(id: "t\(i)", tier: tier, rate: rate))
            }
            let totalDemand = demands.reduce(0) { $0 + $1.rate }
            let capacity = rng.chance(0.5) ? rng.double(0..<(totalDemand + 1)) : rng.double(0..<2_000)
            let share = FairShare.allocate(capacity: capacity, demands: demands, weights: weights)
            let a = share.allocations
            let w = demands.map { weights.weight(of: $0.tier) }
            #expect(a.count == n)

            // Work-conserving.
            #expect(
                close(share.totalAllocated, min(capacity, totalDemand), relative: 1e-9),
                "Σa \(share.totalAllocated) vs min(C \(capacity), Σd \(totalDemand))")
            let totalWeight = w.reduce(0, +)
            let maxNormalised = a.indices.map { a[$0].rate / w[$0] }.max() ?? 0
            let expected = Self.oracle(
                capacity: capacity, demands: demands.map(\.rate), weights: w)
            for i in a.indices {
                #expect(a[i].rate >= 0)
                #expect(a[i].rate <= demands[i].rate * (1 + 1e-12) + 1e-12)  // never above demand
                #expect(close(a[i].rate, expected[i], relative: 1e-7, absolute: 1e-7))
                #expect(a[i].ceiling >= a[i].rate * (1 - 1e-12) - 1e-9)
                if !a[i].isSatisfied {
                    // At least its weighted share, and the largest allocation per weight.
                    #expect(a[i].rate >= capacity * w[i] / totalWeight * (1 - 1e-9) - 1e-9)
                    #expect(a[i].rate / w[i] >= maxNormalised * (1 - 1e-9) - 1e-9)
                    #expect(close(a[i].ceiling, a[i].rate, relative: 1e-9))
                }
            }
            // Ceiling: the allocation the tenant would get if its demand were unbounded.
            if n > 0 {
                for _ in 0..<3 {
                    let i = rng.int(0...(n - 1))
                    var more = demands
                    more[i].rate = capacity * 10 + 1
                    let grown = FairShare.allocate(capacity: capacity, demands: more, weights: weights)
                    #expect(
                        close(a[i].ceiling, grown.allocations[i].rate, relative: 1e-7, absolute: 1e-7),
                        "ceiling \(a[i].ceiling) vs \(grown.allocations[i].rate)")
                }
            }
            // Per-tier totals add up.
            for tier in Tier.allCases {
                let sum = a.filter { $0.tier == tier }.reduce(0) { $0 + $1.rate }
                #expect(close(share.byTier[tier]!.allocated, sum, relative: 1e-9))
            }
        }
    }

    @Test func scalesToManyTenants() {
        var rng = SplitMix64(seed: 99)
        let demands = (0..<100_000).map {
            Demand(id: "t\($0)", tier: rng.pick(Tier.allCases), rate: rng.double(0..<10))
        }
        let share = FairShare.allocate(capacity: 200_000, demands: demands)
        #expect(share.allocations.count == 100_000)
        #expect(close(share.totalAllocated, 200_000, relative: 1e-9))
    }
}

extension TierWeights: CustomTestStringConvertible {
    public var testDescription: String { "new \(new), standard \(standard), bulk \(bulk)" }
}
