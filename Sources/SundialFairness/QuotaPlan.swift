#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Token-bucket parameters.
public struct Quota: Sendable, Hashable, Codable {
    /// Tokens (jobs) per second.
    public var rate: Double
    /// Bucket capacity.
    public var burst: Double

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }
}

/// A tenant's entry in a `QuotaPlan`: its tier, its bucket, and (for visibility) the demand and
/// fair-share allocation it was computed from.
public struct TenantQuota: Sendable, Hashable, Codable {
    public var tier: Tier
    public var rate: Double
    public var burst: Double
    /// The demand the Governor saw (jobs/s).
    public var demand: Double
    /// Its max-min fair allocation (jobs/s); `rate < demand` means it is being throttled.
    public var allocated: Double
    /// Its circuit breaker on this queue, when not closed: its fires are held.
    public var breaker: BreakerStatus?

    public init(tier: Tier, rate: Double, burst: Double, demand: Double, allocated: Double, breaker: BreakerStatus? = nil) {
        self.tier = tier
        self.rate = rate
        self.burst = burst
        self.demand = demand
        self.allocated = allocated
        self.breaker = breaker
    }

    public var quota: Quota { Quota(rate: rate, burst: burst) }
}

/// A circuit breaker that is not closed, as the plan carries it (`CircuitBreaker`): the
/// Dispatchers hold the fires it covers while open and let `probes` through while half-open.
public struct BreakerStatus: Sendable, Hashable, Codable {
    public var state: BreakerState
    /// Open: how long until it half-opens, from when the plan was issued.
    public var reopensInMillis: Int64?
    /// The cool-down in force (restored by a governor that takes over).
    public var coolDownMillis: Int64
    /// Jobs let through per half-open round.
    public var probes: Int
    /// Downstream failures ÷ outcomes when it opened (0 when probes went unanswered).
    public var failureRatio: Double?
    /// Held by an operator (`sundial queues pause`), not by failures.
    public var paused: Bool?

    public init(state: BreakerState, reopensInMillis: Int64?, coolDownMillis: Int64, probes: Int, failureRatio: Double?) {
        self.state = state
        self.reopensInMillis = reopensInMillis
        self.coolDownMillis = coolDownMillis
        self.probes = probes
        self.failureRatio = failureRatio
    }

    /// Numbers a dispatcher can act on (a KV entry is untrusted): at most a day's wait, a
    /// sane probe count.
    public var isValid: Bool {
        state != .closed && (0...86_400_000).contains(reopensInMillis ?? 0) && (0...86_400_000).contains(coolDownMillis)
            && (1...10_000).contains(probes) && (failureRatio.map { $0.isFinite } ?? true)
    }
}

/// How the Governor turns fair-share allocations into bucket parameters.
public struct QuotaPolicy: Sendable, Hashable, Codable {
    /// Which figure becomes the bucket rate.
    public enum RateBasis: String, Sendable, Hashable, Codable {
        /// The tenant's max-min ceiling (see `FairShare`): its allocation if it is throttled,
        /// otherwise the most it could take without cutting anyone's fair share. Lets satisfied
        /// tenants grow between two plans; throttles exactly the tenants that must be.
        case ceiling
        /// The allocation itself: a satisfied tenant is held to its measured demand until the
        /// next plan (tighter, but a tenant whose demand rises waits a plan period).
        case allocation
    }

    public var basis: RateBasis
    /// burst = max(minBurst, rate × burstSeconds). Short, because a throttled tenant's burst
    /// lands on the work stream at once, in front of everyone else's jobs.
    public var burstSeconds: Double
    public var minBurst: Double
    /// No bucket rate below this (jobs/s): nobody is ever stopped outright.
    public var minRate: Double
    /// No bucket rate above this; keeps the plan finite (JSON has no ∞).
    public var maxRate: Double
    /// Fraction of the capacity handed to it that `QuotaPlan.compute` shares out. 1 by
    /// default: the Governor already steers the work backlog to a short target (see
    /// `GovernorCore.Configuration.targetWorkBacklog`), which absorbs bursts and estimation
    /// errors without idling executors; a fixed headroom on top would only starve a whale.
    public var targetUtilisation: Double

    public init(
        basis: RateBasis = .ceiling, burstSeconds: Double = 0.25, minBurst: Double = 20,
        minRate: Double = 1, maxRate: Double = 1e9, targetUtilisation: Double = 1
    ) {
        self.basis = basis
        self.burstSeconds = burstSeconds
        self.minBurst = minBurst
        self.minRate = minRate
        self.maxRate = maxRate
        self.targetUtilisation = targetUtilisation
    }

    /// `targetUtilisation` within 0.01 … 1 (NaN: 1).
    public var sanitisedUtilisation: Double {
        targetUtilisation.isNaN ? 1 : min(max(targetUtilisation, 0.01), 1)
    }

    /// Bucket parameters for a rate under this policy.
    public func quota(forRate rate: Double) -> Quota {
        let maxRate = max(FairnessMath.nonNegative(self.maxRate, cap: 1e12), 1e-9)
        let minRate = min(FairnessMath.nonNegative(self.minRate), maxRate)
        let r = min(max(rate.isNaN ? 0 : rate, minRate), maxRate)
        let burstSeconds = FairnessMath.nonNegative(self.burstSeconds, cap: 1e6)
        let minBurst = max(FairnessMath.nonNegative(self.minBurst, cap: 1e12), 1)
        return Quota(rate: r, burst: min(max(minBurst, r * burstSeconds), 1e12))
    }
}

/// The quotas the Fairness-Governor publishes (as JSON, to a JetStream KV bucket) and the
/// Dispatchers watch: a bucket per tenant it knows, a default per tier for tenants it does not,
/// and the figures behind them for `sundial tenants quotas`.
///
/// All numbers are finite (JSON has no ∞ or NaN). Tier-keyed dictionaries encode as JSON objects
/// keyed `"new"`, `"standard"`, `"bulk"`.
public struct QuotaPlan: Sendable, Hashable, Codable {
    /// Version of this JSON shape; readers reject versions they do not know.
    public static let currentFormat = 1

    public var format: Int
    /// Increases with every plan a governor publishes (the KV revision orders them too; this
    /// survives copying a plan elsewhere).
    public var generation: UInt64
    /// The leadership term that issued it: the KV revision at which its governor took the
    /// lease, so a new leader outranks the old one even when its generations restart (it could
    /// not read the stored plan). Absent in plans from older governors (= 0).
    public var epoch: UInt64?
    /// When it was computed: Unix time in milliseconds (wall clock of the governor).
    public var issuedAtMillis: Int64
    /// The capacity that was shared (jobs/s) — with `compute`, the measured capacity times
    /// `policy.targetUtilisation`.
    public var capacity: Double
    public var weights: TierWeights
    public var policy: QuotaPolicy
    /// The fair-share water level (jobs/s per unit weight), absent when capacity was not short.
    public var level: Double?
    /// For tenants without an entry in `tenants`.
    public var tierDefaults: [Tier: Quota]
    public var tenants: [String: TenantQuota]
    /// Demand and allocation per tier.
    public var byTier: [Tier: FairShare.TierTotal]
    /// Live dispatchers when the plan was made (absent: 1). They share one consumer, so each
    /// sees about 1/n of every tenant's fires and enforces 1/n of its bucket.
    public var dispatchers: Int?
    /// The executors' capacity as estimated (jobs/s) and the work backlog (jobs) the Governor
    /// corrected it by to get `capacity` (see `GovernorCore.sharedCapacity`); absent when
    /// unknown or in plans from older governors.
    public var capacityEstimate: Double?
    public var workBacklog: Int?
    /// The estimate is only a guess from one sample (a flood at first sight on a queue never
    /// measured saturated; `CapacityEstimator.provisional`): a Dispatcher holds a tenant back by
    /// this plan only while another tenant has fires on the queue too (`FairnessGate`). Absent:
    /// measured, fixed or unknown.
    public var provisional: Bool?
    /// The queue's circuit breaker, when not closed: every tenant's fires on it are held.
    public var breaker: BreakerStatus?

    public init(
        generation: UInt64, issuedAtMillis: Int64, capacity: Double, weights: TierWeights,
        policy: QuotaPolicy, level: Double?, tierDefaults: [Tier: Quota],
        tenants: [String: TenantQuota], byTier: [Tier: FairShare.TierTotal], dispatchers: Int? = nil
    ) {
        self.format = Self.currentFormat
        self.generation = generation
        self.issuedAtMillis = issuedAtMillis
        self.capacity = capacity
        self.weights = weights
        self.policy = policy
        self.level = level
        self.tierDefaults = tierDefaults
        self.tenants = tenants
        self.byTier = byTier
        self.dispatchers = dispatchers
    }

    /// Plans are ordered by (epoch, generation).
    public func isNewer(than other: QuotaPlan) -> Bool {
        ((epoch ?? 0), generation) > ((other.epoch ?? 0), other.generation)
    }

    /// The share of each bucket one dispatcher enforces: 1 / live dispatchers.
    public var dispatcherShare: Double { 1 / Double(max(1, dispatchers ?? 1)) }

    /// The plan for a fair-share result: per tenant, rate = its ceiling or allocation (per
    /// `policy.basis`) within `minRate ... maxRate`, burst = max(minBurst, rate × burstSeconds);
    /// per tier, the same for a tenant of that tier not yet seen (its default ceiling).
    public static func make(
        from share: FairShare.Result, policy: QuotaPolicy = QuotaPolicy(), generation: UInt64,
        issuedAtMillis: Int64
    ) -> QuotaPlan {
        var tenants: [String: TenantQuota] = [:]
        tenants.reserveCapacity(share.allocations.count)
        for a in share.allocations {
            let base = policy.basis == .ceiling ? a.ceiling : a.rate
            let q = policy.quota(forRate: base)
            tenants[a.id] = TenantQuota(
                tier: a.tier, rate: q.rate, burst: q.burst, demand: finite(a.demand),
                allocated: finite(a.rate))
        }
        var defaults: [Tier: Quota] = [:]
        for tier in Tier.allCases {
            defaults[tier] = policy.quota(forRate: share.tierDefaultCeilings[tier] ?? share.capacity)
        }
        var byTier: [Tier: FairShare.TierTotal] = [:]
        for (tier, total) in share.byTier {
            byTier[tier] = FairShare.TierTotal(
                tenants: total.tenants, demand: finite(total.demand),
                allocated: finite(total.allocated))
        }
        return QuotaPlan(
            generation: generation, issuedAtMillis: issuedAtMillis, capacity: finite(share.capacity),
            weights: share.weights, policy: policy, level: share.level.map(finite),
            tierDefaults: defaults, tenants: tenants, byTier: byTier)
    }

    /// Shares `capacity × policy.targetUtilisation` among `demands` (`FairShare.allocate`) and
    /// makes the plan — what the Governor does every period.
    public static func compute(
        capacity: Double, demands: [Demand], weights: TierWeights = .default,
        policy: QuotaPolicy = QuotaPolicy(), generation: UInt64, issuedAtMillis: Int64
    ) -> QuotaPlan {
        let shared = (capacity.isNaN ? 0 : capacity) * policy.sanitisedUtilisation
        let share = FairShare.allocate(capacity: shared, demands: demands, weights: weights)
        return make(from: share, policy: policy, generation: generation, issuedAtMillis: issuedAtMillis)
    }

    /// The plan a dispatcher uses before it has seen any: no tenant entries, every tier at
    /// `policy.maxRate` — nothing is throttled (the fair scheduler still interleaves tenants).
    public static func unthrottled(policy: QuotaPolicy = QuotaPolicy()) -> QuotaPlan {
        let q = policy.quota(forRate: .infinity)
        return QuotaPlan(
            generation: 0, issuedAtMillis: 0, capacity: q.rate, weights: .default, policy: policy,
            level: nil, tierDefaults: Dictionary(uniqueKeysWithValues: Tier.allCases.map { ($0, q) }),
            tenants: [:], byTier: [:])
    }

    /// The tier and bucket for `tenant`: its own entry, else the default of `fallbackTier` (the
    /// tier the caller assumes for a tenant the governor has not seen), else `unthrottled`.
    public func resolve(_ tenant: String, fallbackTier: Tier = .standard) -> (
        tier: Tier, quota: Quota
    ) {
        if let t = tenants[tenant] { return (t.tier, t.quota) }
        return (fallbackTier, tierDefaults[fallbackTier] ?? policy.quota(forRate: .infinity))
    }

    /// The same plan without the entries a dispatcher would reconstruct anyway: standard tenants
    /// whose bucket is at least their tier default (they get the default — never more than their
    /// own ceiling, so no less fair). Keeps the KV value small with many small tenants; throttled
    /// tenants and every new or bulk tenant (their tier matters) stay.
    public func compacted() -> QuotaPlan {
        var copy = self
        guard let standard = tierDefaults[.standard] else { return copy }
        copy.tenants = tenants.filter { _, t in
            t.breaker != nil || !(t.tier == .standard && t.rate >= standard.rate && t.burst >= standard.burst)
        }
        return copy
    }

    /// The plan as JSON of at most `maxBytes` (a KV value must fit the server's max_payload):
    /// compacted first; then `new` tenants whose bucket is at least the `new` default (an
    /// unlisted tenant resolves to exactly that); then, only if still too large, the entries
    /// that matter least — kept are throttled tenants (rate below demand) first, then by
    /// demand, largest first. Returns how many entries were dropped beyond the lossless steps.
    public func fitting(maxBytes: Int) throws -> (plan: QuotaPlan, bytes: [UInt8], dropped: Int) {
        var plan = compacted()
        var bytes = try plan.jsonBytes()
        if bytes.count <= maxBytes { return (plan, bytes, 0) }
        if let newDefault = tierDefaults[.new] {
            plan.tenants = plan.tenants.filter { _, t in
                t.breaker != nil || !(t.tier == .new && t.rate >= newDefault.rate && t.burst >= newDefault.burst)
            }
            bytes = try plan.jsonBytes()
            if bytes.count <= maxBytes { return (plan, bytes, 0) }
        }
        let ranked = plan.tenants.sorted { a, b in
            // Held tenants first: dropping one would release what its breaker holds.
            if (a.value.breaker != nil) != (b.value.breaker != nil) { return a.value.breaker != nil }
            let aThrottled = a.value.rate < a.value.demand
            let bThrottled = b.value.rate < b.value.demand
            if aThrottled != bThrottled { return aThrottled }
            if a.value.demand != b.value.demand { return a.value.demand > b.value.demand }
            return a.key < b.key
        }
        // The largest prefix that fits (the size grows with the prefix).
        var low = 0
        var high = ranked.count
        var best = plan
        best.tenants = [:]
        var bestBytes = try best.jsonBytes()
        while low < high {
            let middle = (low + high + 1) / 2
            var candidate = plan
            candidate.tenants = Dictionary(uniqueKeysWithValues: ranked.prefix(middle).map { ($0.key, $0.value) })
            let candidateBytes = try candidate.jsonBytes()
            if candidateBytes.count <= maxBytes {
                low = middle
                best = candidate
                bestBytes = candidateBytes
            } else {
                high = middle - 1
            }
        }
        return (best, bestBytes, plan.tenants.count - best.tenants.count)
    }

    /// JSON with sorted keys (stable bytes for the same plan).
    public func jsonBytes() throws -> [UInt8] {
        try StableJSON.encode(self)
    }

    /// Decodes a plan published by `jsonBytes`. Throws on malformed JSON or an unknown format.
    public init(jsonBytes: [UInt8]) throws {
        let plan = try JSONDecoder().decode(QuotaPlan.self, from: Data(jsonBytes))
        guard plan.format == Self.currentFormat else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(
                    codingPath: [], debugDescription: "unknown QuotaPlan format \(plan.format)"))
        }
        try plan.validate()
        self = plan
    }

    /// A KV entry is untrusted like any message: rates and bursts must be usable numbers.
    public func validate() throws {
        let quotas = tierDefaults.values.map { ($0.rate, $0.burst) } + tenants.values.map { ($0.rate, $0.burst) }
        let breakers = [breaker].compactMap { $0 } + tenants.values.compactMap(\.breaker)
        guard capacity.isFinite, quotas.allSatisfy({ $0.0.isFinite && $0.0 >= 0 && $0.1.isFinite && $0.1 >= 0 }),
            (dispatchers ?? 1) >= 1, breakers.allSatisfy(\.isValid)
        else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: [], debugDescription: "QuotaPlan with a negative or non-finite quota"))
        }
    }
}

private func finite(_ x: Double) -> Double {
    if x.isNaN { return 0 }
    return min(max(x, -1e15), 1e15)
}
