import Foundation
import Testing

@testable import SundialFairness

@Suite("Unit: fairness quota plan")
struct QuotaPlanTests {
    static func whaleShare() -> FairShare.Result {
        var demands = [Demand(id: "whale", tier: .bulk, rate: 100_000)]
        for i in 0..<20 { demands.append(Demand(id: "std-\(i)", tier: .standard, rate: 0.5)) }
        for i in 0..<5 { demands.append(Demand(id: "new-\(i)", tier: .new, rate: 2)) }
        return FairShare.allocate(capacity: 1_000, demands: demands)
    }

    @Test func bucketsFollowTheFairShare() {
        let share = Self.whaleShare()
        let plan = QuotaPlan.make(from: share, generation: 7, issuedAtMillis: 1_700_000_000_000)
        let whale = plan.tenants["whale"]!
        #expect(whale.tier == .bulk)
        #expect(close(whale.rate, 1_000 - 10 - 10))  // throttled: rate = allocation
        #expect(close(whale.burst, whale.rate / 4))  // ¼ s of rate
        #expect(close(whale.allocated, whale.rate) && whale.demand == 100_000)
        let small = plan.tenants["std-3"]!
        #expect(small.rate > 0.5 && close(small.rate, share.allocation(for: "std-3")!.ceiling))
        #expect(small.burst >= 20)
        // Tier defaults: what a tenant of that tier not seen yet would get; new > standard > bulk.
        #expect(plan.tierDefaults[.new]!.rate > plan.tierDefaults[.standard]!.rate)
        #expect(plan.tierDefaults[.standard]!.rate > plan.tierDefaults[.bulk]!.rate)
        #expect(close(plan.tierDefaults[.new]!.rate, share.tierDefaultCeilings[.new]!))
        #expect(plan.generation == 7 && plan.level != nil && plan.capacity == 1_000)
        #expect(plan.byTier[.standard]?.tenants == 20)
    }

    @Test func computeLeavesHeadroom() {
        var demands = [Demand(id: "whale", tier: .bulk, rate: 100_000)]
        for i in 0..<20 { demands.append(Demand(id: "std-\(i)", tier: .standard, rate: 0.5)) }
        let plan = QuotaPlan.compute(
            capacity: 1_000, demands: demands, policy: QuotaPolicy(targetUtilisation: 0.9),
            generation: 3, issuedAtMillis: 0)
        #expect(plan.capacity == 900)
        #expect(close(plan.tenants["whale"]!.rate, 890))
        let nonsense = QuotaPlan.compute(
            capacity: 1_000, demands: demands, policy: QuotaPolicy(targetUtilisation: .nan),
            generation: 3, issuedAtMillis: 0)
        #expect(nonsense.capacity == 1_000)
    }

    @Test func allocationBasisHoldsSatisfiedTenantsToTheirDemand() {
        let policy = QuotaPolicy(basis: .allocation, burstSeconds: 2, minBurst: 5, minRate: 0.1)
        let plan = QuotaPlan.make(from: Self.whaleShare(), policy: policy, generation: 1, issuedAtMillis: 0)
        #expect(plan.tenants["std-0"]!.rate == 0.5)
        #expect(plan.tenants["std-0"]!.burst == 5)
        #expect(plan.tenants["new-0"]!.rate == 2)
        #expect(close(plan.tenants["whale"]!.burst, 2 * 980))
    }

    @Test func nobodyIsStoppedOutright() {
        let share = FairShare.allocate(
            capacity: 0, demands: [Demand(id: "a", tier: .bulk, rate: 10)])
        let plan = QuotaPlan.make(from: share, generation: 1, issuedAtMillis: 0)
        #expect(plan.tenants["a"]!.rate == 1)  // minRate
        #expect(plan.tierDefaults.values.allSatisfy { $0.rate == 1 && $0.burst == 20 })
    }

    @Test func encodesAsStableJSONAndRoundTrips() throws {
        let plan = QuotaPlan.make(from: Self.whaleShare(), generation: 42, issuedAtMillis: 123)
        let bytes = try plan.jsonBytes()
        #expect(try plan.jsonBytes() == bytes)
        let decoded = try QuotaPlan(jsonBytes: bytes)
        #expect(decoded == plan)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#""tierDefaults":{"bulk":{"#))
        #expect(text.contains(#""whale":{"allocated":"#))
        #expect(text.contains(#""format":1"#))
    }

    @Test func rejectsUnknownFormatsAndGarbage() throws {
        let plan = QuotaPlan.unthrottled()
        var json = String(decoding: try plan.jsonBytes(), as: UTF8.self)
        json = json.replacingOccurrences(of: #""format":1"#, with: #""format":2"#)
        #expect(throws: DecodingError.self) { try QuotaPlan(jsonBytes: Array(json.utf8)) }
        #expect(throws: (any Error).self) { try QuotaPlan(jsonBytes: Array("{\"nope\":".utf8)) }
    }

    @Test func resolveUsesTheTenantsEntryThenItsTierDefault() {
        let plan = QuotaPlan.make(from: Self.whaleShare(), generation: 1, issuedAtMillis: 0)
        let whale = plan.resolve("whale")
        #expect(whale.tier == .bulk && whale.quota == plan.tenants["whale"]!.quota)
        let stranger = plan.resolve("stranger", fallbackTier: .new)
        #expect(stranger.tier == .new && stranger.quota == plan.tierDefaults[.new]!)
        #expect(plan.resolve("stranger").tier == .standard)
    }

    @Test func unthrottledPlanThrottlesNothing() throws {
        let plan = QuotaPlan.unthrottled()
        #expect(plan.resolve("anyone").quota.rate == 1e9)
        #expect(plan.tenants.isEmpty && plan.generation == 0)
        _ = try plan.jsonBytes()
    }

    @Test func infiniteCapacityStillMakesAFinitePlan() throws {
        let share = FairShare.allocate(
            capacity: .infinity, demands: [Demand(id: "a", tier: .bulk, rate: .infinity)])
        let plan = QuotaPlan.make(from: share, generation: 1, issuedAtMillis: 0)
        #expect(plan.tenants["a"]!.rate == 1e9)
        let decoded = try QuotaPlan(jsonBytes: try plan.jsonBytes())
        #expect(decoded.tenants["a"]!.rate == 1e9)
    }

    @Test func compactedKeepsOnlyWhatADispatcherCannotReconstruct() {
        let share = Self.whaleShare()
        let plan = QuotaPlan.make(from: share, generation: 1, issuedAtMillis: 0)
        let compact = plan.compacted()
        #expect(compact.tenants["whale"] != nil)  // throttled
        #expect(compact.tenants["new-0"] != nil)  // its tier matters
        #expect(compact.tenants["std-0"] == nil)  // unthrottled standard: the default serves it
        // What the dispatcher then uses for it is no more than its own ceiling, and covers its demand.
        let q = compact.resolve("std-0").quota
        #expect(q.rate <= plan.tenants["std-0"]!.rate && q.rate >= 0.5)
    }
}
