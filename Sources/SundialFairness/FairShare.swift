/// What one tenant asks for: `rate` jobs per second (its due rate, plus whatever backlog drain
/// the caller wants to count), in a tier.
public struct Demand: Sendable, Hashable, Codable {
    public var id: String
    public var tier: Tier
    public var rate: Double

    public init(id: String, tier: Tier, rate: Double) {
        self.id = id
        self.tier = tier
        self.rate = rate
    }
}

/// Weighted max-min fair allocation ("water-filling") of a capacity among demands.
///
/// Each tenant *i* has a demand *dᵢ* and a weight *wᵢ* (its tier's weight). The allocation is
/// *aᵢ = min(dᵢ, wᵢ·λ)* for the one water level *λ* at which the allocations add up to the
/// capacity *C* — or every demand is met when *Σd ≤ C*. Equivalently: everyone gets its weighted
/// share; what the satisfied ones leave over is redistributed among the unsatisfied in proportion
/// to their weights, until the capacity is used up or all demands are met. Properties:
///
/// - **work-conserving**: *Σa = min(C, Σd)*;
/// - no allocation exceeds its demand;
/// - **max-min fair**: an unsatisfied tenant has the largest *a/w* of all, and at least its
///   weighted share *C·wᵢ/Σw*; nobody can gain without taking from someone with less per weight.
///
/// Besides the allocation, each tenant gets a **ceiling**: the rate max-min fairness would grant
/// it if it asked for more while everyone else kept their demand. For a throttled tenant
/// (*aᵢ < dᵢ*) the ceiling is its allocation; for a satisfied one it is at least its demand — the
/// room it may grow into before the next computation without hurting anyone's fair share. A
/// whale alone with spare capacity has the whole leftover as its ceiling. `tierDefaultCeilings`
/// gives the same for a tenant of each tier that is not in the input (demand 0).
///
/// Cost: O(n log n) (one sort; one binary search per tenant for the ceilings).
public enum FairShare {
    public struct Allocation: Sendable, Hashable, Codable {
        public var id: String
        public var tier: Tier
        /// The weight used (the tier's sanitised weight).
        public var weight: Double
        /// The demand as given (sanitised: NaN and negatives are 0).
        public var demand: Double
        /// The allocated rate: `min(demand, weight × level)`.
        public var rate: Double
        /// The most this tenant would get if it asked for more (see `FairShare`).
        public var ceiling: Double

        /// The whole demand is allocated.
        public var isSatisfied: Bool {
            rate >= demand || (demand.isFinite && demand - rate <= 1e-9 * max(1, demand))
        }
    }

    public struct TierTotal: Sendable, Hashable, Codable {
        public var tenants: Int
        public var demand: Double
        public var allocated: Double

        public init(tenants: Int = 0, demand: Double = 0, allocated: Double = 0) {
            self.tenants = tenants
            self.demand = demand
            self.allocated = allocated
        }
    }

    public struct Result: Sendable {
        /// The capacity that was shared (sanitised).
        public var capacity: Double
        public var weights: TierWeights
        /// One per distinct id, in order of first appearance in the input.
        public var allocations: [Allocation]
        /// Totals per tier; every tier is present (zeros if it has no tenants).
        public var byTier: [Tier: TierTotal]
        /// The water level λ (allocation per unit of weight of the throttled tenants), or `nil`
        /// when capacity is not short (`Σd ≤ C`, everyone gets its demand).
        public var level: Double?
        /// The ceiling of a tenant of each tier that is not in the input and has no demand yet.
        public var tierDefaultCeilings: [Tier: Double]
        public var totalDemand: Double
        public var totalAllocated: Double

        private var index: [String: Int]

        init(
            capacity: Double, weights: TierWeights, allocations: [Allocation], level: Double?,
            tierDefaultCeilings: [Tier: Double]
        ) {
            self.capacity = capacity
            self.weights = weights
            self.allocations = allocations
            self.level = level
            self.tierDefaultCeilings = tierDefaultCeilings
            var byTier = Dictionary(uniqueKeysWithValues: Tier.allCases.map { ($0, TierTotal()) })
            var index: [String: Int] = [:]
            index.reserveCapacity(allocations.count)
            var demand = 0.0
            var allocated = 0.0
            for (i, a) in allocations.enumerated() {
                index[a.id] = i
                byTier[a.tier, default: TierTotal()].tenants += 1
                byTier[a.tier, default: TierTotal()].demand += a.demand
                byTier[a.tier, default: TierTotal()].allocated += a.rate
                demand += a.demand
                allocated += a.rate
            }
            self.byTier = byTier
            self.index = index
            self.totalDemand = demand
            self.totalAllocated = allocated
        }

        /// The allocation of `id`, if it was in the input.
        public func allocation(for id: String) -> Allocation? {
            index[id].map { allocations[$0] }
        }

        /// The allocated rate of `id` (0 if it was not in the input).
        public subscript(id: String) -> Double {
            allocation(for: id)?.rate ?? 0
        }

        /// Capacity is short: some demand is not fully met.
        public var isCapacityBound: Bool { level != nil }
    }

    /// Shares `capacity` (jobs/s) among `demands`. Demands with the same id are merged (rates
    /// summed, the first one's tier kept). Sanitising: a capacity that is NaN or negative is 0;
    /// a demand that is NaN or negative is 0, one of +∞ is "as much as there is".
    public static func allocate(
        capacity: Double, demands: [Demand], weights: TierWeights = .default
    ) -> Result {
        // Merge duplicates, sanitise.
        var ids: [String] = []
        var tiers: [Tier] = []
        var demand: [Double] = []
        var position: [String: Int] = [:]
        position.reserveCapacity(demands.count)
        for d in demands {
            let rate = d.rate.isNaN ? 0 : max(d.rate, 0)
            if let p = position[d.id] {
                demand[p] += rate
            } else {
                position[d.id] = ids.count
                ids.append(d.id)
                tiers.append(d.tier)
                demand.append(rate)
            }
        }
        let n = ids.count
        let w = tiers.map { weights.weight(of: $0) }
        let cap = capacity.isNaN ? 0 : max(capacity, 0)

        if cap == .infinity {
            // Unlimited: everyone gets its demand and can grow without bound.
            let allocations = (0..<n).map {
                Allocation(
                    id: ids[$0], tier: tiers[$0], weight: w[$0], demand: demand[$0],
                    rate: demand[$0], ceiling: .infinity)
            }
            return Result(
                capacity: cap, weights: weights, allocations: allocations, level: nil,
                tierDefaultCeilings: Dictionary(uniqueKeysWithValues: Tier.allCases.map { ($0, Double.infinity) }))
        }

        // A demand above the capacity behaves exactly like one equal to it (no allocation can
        // exceed C), and keeps the arithmetic finite.
        let e = demand.map { min($0, cap) }
        let r = (0..<n).map { e[$0] / w[$0] }  // normalised demand
        let order = (0..<n).sorted { r[$0] != r[$1] ? r[$0] < r[$1] : $0 < $1 }
        var rank = [Int](repeating: 0, count: n)
        for (k, i) in order.enumerated() { rank[i] = k }

        // prefixDemand[k] = Σ e over sorted positions < k; suffixWeight[k] = Σ w over ≥ k.
        var prefixDemand = [Double](repeating: 0, count: n + 1)
        for k in 0..<n { prefixDemand[k + 1] = prefixDemand[k] + e[order[k]] }
        var suffixWeight = [Double](repeating: 0, count: n + 1)
        for k in stride(from: n - 1, through: 0, by: -1) {
            suffixWeight[k] = suffixWeight[k + 1] + w[order[k]]
        }
        // f(λ) = Σ min(eᵢ, wᵢλ) at the breakpoint λ = r(order[k]).
        func fAtBreakpoint(_ k: Int) -> Double {
            prefixDemand[k] + r[order[k]] * suffixWeight[k]
        }

        // Water-filling: satisfy in order of normalised demand while the level allows it.
        var satisfiedCount = n
        var level: Double? = nil
        for k in 0..<n {
            let remaining = cap - prefixDemand[k]
            let lambda = remaining / suffixWeight[k]
            if r[order[k]] > lambda {
                satisfiedCount = k
                level = max(lambda, 0)
                break
            }
        }
        let rawTotal = demand.reduce(0, +)
        if level == nil && rawTotal > cap && n > 0 {
            // All (clamped) demands fit exactly: some demand is ≥ C, so it alone takes C.
            level = r[order[n - 1]]
        }

        var allocations: [Allocation] = []
        allocations.reserveCapacity(n)
        for i in 0..<n {
            let rate: Double
            if rank[i] < satisfiedCount {
                rate = e[i]
            } else {
                rate = min(e[i], w[i] * (level ?? 0))
            }
            let ceiling: Double
            if rank[i] >= satisfiedCount {
                ceiling = rate
            } else {
                // Solve g(λ) = C, g(λ) = f(λ) + wᵢ·(λ − rᵢ) for λ ≥ rᵢ: find the last
                // breakpoint k ≥ rank(i) with g ≤ C, then λ lies in [r(k), r(k+1)).
                let own = rank[i]
                var lo = own  // g(r(own)) = f(rᵢ) ≤ C because i is satisfied
                var hi = n - 1
                while lo < hi {
                    let mid = (lo + hi + 1) / 2
                    let g = fAtBreakpoint(mid) + w[i] * (r[order[mid]] - r[i])
                    if g <= cap { lo = mid } else { hi = mid - 1 }
                }
                let k = lo + 1
                let lambda = (cap - prefixDemand[k] + e[i]) / (suffixWeight[k] + w[i])
                ceiling = min(cap, max(e[i], w[i] * lambda))
            }
            allocations.append(
                Allocation(
                    id: ids[i], tier: tiers[i], weight: w[i], demand: demand[i], rate: rate,
                    ceiling: ceiling))
        }

        // A newcomer of weight w with no demand: solve f(λ) + w·λ = C.
        var defaults: [Tier: Double] = [:]
        for tier in Tier.allCases {
            let wt = weights.weight(of: tier)
            // Last breakpoint k with f(r(k)) + wt·r(k) ≤ C, or -1.
            var lo = -1
            var hi = n - 1
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if fAtBreakpoint(mid) + wt * r[order[mid]] <= cap { lo = mid } else { hi = mid - 1 }
            }
            let k = lo + 1
            let lambda = (cap - prefixDemand[k]) / (suffixWeight[k] + wt)
            defaults[tier] = min(cap, max(0, wt * lambda))
        }

        return Result(
            capacity: cap, weights: weights, allocations: allocations, level: level,
            tierDefaultCeilings: defaults)
    }
}
