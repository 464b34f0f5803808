#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// What the Fairness-Governor publishes (JSON, one KV value) and the Dispatchers enforce: one
/// `QuotaPlan` per work queue. Each queue (`sundial.work.<queue>`) is its own executor pool with
/// its own capacity, and its tenants compete only for that capacity; a queue the plan does not
/// list is not throttled (its capacity is unknown — nobody has measured it saturated, or its
/// executors are gone and its jobs wait in the durable work queue, up to its bound).
///
/// The plan is ordered by (epoch, generation) like its per-queue plans, which carry the same
/// generation and epoch.
public struct FairnessPlan: Sendable, Hashable, Codable {
    /// Version of this JSON shape (1 was a single `QuotaPlan` for all queues; still read).
    public static let currentFormat = 2

    public var format: Int
    public var generation: UInt64
    /// The leadership term that issued it (see `QuotaPlan.epoch`).
    public var epoch: UInt64?
    public var issuedAtMillis: Int64
    /// Live dispatchers when the plan was made (absent: 1); each enforces 1/n of every bucket.
    public var dispatchers: Int?
    /// Per work queue. A queue's plan may list tenants with open buckets: its capacity is
    /// unknown, and the entry is there for its tiers and demand (`sundial tenants quotas`).
    public var queues: [String: QuotaPlan]
    /// The plan for a queue not in `queues` (nil: such a queue is not throttled). Only a fixed
    /// plan uses it — e.g. a format-1 plan from an older governor.
    public var otherQueues: QuotaPlan?
    /// Queues holding jobs that no live executor takes, and how many (for visibility).
    public var queuesWithoutExecutors: [String: UInt64]?
    /// When a breaker trips, for queues without their own rule (nil: breakers are off). The
    /// dispatchers use it to recognise a queue that is tripping before a plan says it opened,
    /// and give back the attempts that failed meanwhile.
    public var breakerTrip: BreakerTrip?
    /// Queues with their own rule (`QueueBreakerSettings`).
    public var queueBreakerTrips: [String: BreakerTrip]?

    /// The trip rule in force on `queue` (nil: breakers are off).
    public func breakerTrip(for queue: String) -> BreakerTrip? {
        guard let breakerTrip else { return nil }
        return queueBreakerTrips?[queue] ?? breakerTrip
    }

    public init(
        generation: UInt64, epoch: UInt64? = nil, issuedAtMillis: Int64, dispatchers: Int? = nil,
        queues: [String: QuotaPlan], otherQueues: QuotaPlan? = nil
    ) {
        self.format = Self.currentFormat
        self.generation = generation
        self.epoch = epoch
        self.issuedAtMillis = issuedAtMillis
        self.dispatchers = dispatchers
        self.queues = queues
        self.otherQueues = otherQueues
    }

    /// One plan for every queue (a fixed plan, or one from a governor older than per-queue
    /// capacity).
    public init(everyQueue plan: QuotaPlan) {
        self.init(
            generation: plan.generation, epoch: plan.epoch, issuedAtMillis: plan.issuedAtMillis,
            dispatchers: plan.dispatchers, queues: [:], otherQueues: plan)
    }

    /// No plan yet: nothing is throttled.
    public static let unthrottled = FairnessPlan(generation: 0, issuedAtMillis: 0, queues: [:])

    public func isNewer(than other: FairnessPlan) -> Bool {
        ((epoch ?? 0), generation) > ((other.epoch ?? 0), other.generation)
    }

    /// The share of each bucket one dispatcher enforces: 1 / live dispatchers.
    public var dispatcherShare: Double { 1 / Double(max(1, dispatchers ?? 1)) }

    /// The plan in force for `queue` (nil: not throttled).
    public func plan(for queue: String) -> QuotaPlan? { queues[queue] ?? otherQueues }

    /// The tier and bucket for `tenant` on `queue`: the queue's entry, else the queue's default
    /// for `fallbackTier`; on a queue without a plan, open.
    public func resolve(_ tenant: String, queue: String, fallbackTier: Tier) -> (tier: Tier, quota: Quota) {
        if let plan = plan(for: queue) { return plan.resolve(tenant, fallbackTier: fallbackTier) }
        return (fallbackTier, QuotaPolicy().quota(forRate: .infinity))
    }

    /// Every tenant entry over all queues.
    public var tenantEntries: Int { queues.values.reduce(0) { $0 + $1.tenants.count } + (otherQueues?.tenants.count ?? 0) }

    /// The same plan with every queue's plan compacted (`QuotaPlan.compacted`).
    public func compacted() -> FairnessPlan {
        var copy = self
        copy.queues = queues.mapValues { $0.compacted() }
        copy.otherQueues = otherQueues?.compacted()
        return copy
    }

    /// The plan as JSON of at most `maxBytes`: compacted first; if still too large, each queue's
    /// plan is trimmed (`QuotaPlan.fitting`) to a share of the room in proportion to its size,
    /// so every queue keeps its throttled tenants first. Returns how many tenant entries were
    /// dropped beyond the lossless steps.
    public func fitting(maxBytes: Int) throws -> (plan: FairnessPlan, bytes: [UInt8], dropped: Int) {
        var plan = compacted()
        var bytes = try plan.jsonBytes()
        if bytes.count <= maxBytes { return (plan, bytes, 0) }
        var sizes: [String: Int] = [:]
        for (queue, queuePlan) in plan.queues { sizes[queue] = try queuePlan.jsonBytes().count }
        let total = max(1, sizes.values.reduce(0, +))
        let overhead = bytes.count - total
        let room = Double(max(0, maxBytes - overhead)) * 0.98  // JSON around each value varies a little
        var dropped = 0
        for (queue, queuePlan) in plan.queues {
            let share = Int(room * Double(sizes[queue] ?? 0) / Double(total))
            let fitted = try queuePlan.fitting(maxBytes: share)
            plan.queues[queue] = fitted.plan
            dropped += fitted.dropped
        }
        bytes = try plan.jsonBytes()
        if bytes.count > maxBytes {
            // Per-queue plans without any tenant entry still did not fit (thousands of queues):
            // keep the queues with the most throttling, the rest go unlisted (= not throttled).
            // Queues with a breaker not closed are kept first: dropping one releases what it holds.
            let ranked = plan.queues.sorted { a, b in
                let ha = a.value.breaker != nil || a.value.tenants.values.contains { $0.breaker != nil } ? 1 : 0
                let hb = b.value.breaker != nil || b.value.tenants.values.contains { $0.breaker != nil } ? 1 : 0
                let ta = a.value.tenants.values.filter { $0.rate < $0.demand }.count
                let tb = b.value.tenants.values.filter { $0.rate < $0.demand }.count
                return (ha, ta, a.value.tenants.count, b.key) > (hb, tb, b.value.tenants.count, a.key)
            }
            var kept = plan
            for (queue, queuePlan) in ranked.reversed() {
                if try kept.jsonBytes().count <= maxBytes { break }
                kept.queues[queue] = nil
                dropped += queuePlan.tenants.count
            }
            plan = kept
            bytes = try plan.jsonBytes()
        }
        return (plan, bytes, dropped)
    }

    /// JSON with sorted keys (stable bytes for the same plan).
    public func jsonBytes() throws -> [UInt8] {
        try StableJSON.encode(self)
    }

    /// Most queues one plan may list (a KV value is at most 1 MiB anyway).
    public static let maximumQueues = 10_000

    /// Decodes a published plan: this format, or a format-1 `QuotaPlan` (applied to every
    /// queue). Throws on malformed JSON, an unknown format, or a plan whose numbers are unusable.
    public init(jsonBytes: [UInt8]) throws {
        struct Header: Decodable { var format: Int }
        let header = try JSONDecoder().decode(Header.self, from: Data(jsonBytes))
        if header.format == 1 {
            self.init(everyQueue: try QuotaPlan(jsonBytes: jsonBytes))
            return
        }
        guard header.format == Self.currentFormat else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: [], debugDescription: "unknown FairnessPlan format \(header.format)"))
        }
        let plan = try JSONDecoder().decode(FairnessPlan.self, from: Data(jsonBytes))
        // A KV entry is untrusted like any message: every queue's plan is checked like a
        // published `QuotaPlan`.
        guard (plan.dispatchers ?? 1) >= 1, plan.queues.count <= Self.maximumQueues,
            plan.breakerTrip?.isValid ?? true, (plan.queueBreakerTrips?.count ?? 0) <= QueueBreakerSettings.maximumQueues,
            plan.queueBreakerTrips?.values.allSatisfy(\.isValid) ?? true
        else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: [], debugDescription: "FairnessPlan with too many queues, no dispatcher, or an unusable breaker rule"))
        }
        for queuePlan in plan.queues.values { try queuePlan.validate() }
        try plan.otherQueues?.validate()
        self = plan
    }
}
