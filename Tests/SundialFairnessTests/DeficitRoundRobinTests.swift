import Testing

@testable import SundialFairness

@Suite("Unit: fairness deficit round robin")
struct DeficitRoundRobinTests {
    typealias DRR = DeficitRoundRobin<String, Int>

    @Test("service follows the weights over many rounds", arguments: [1, 3, 7, 64, 1_000])
    func weightedRatios(limit: Int) {
        var drr = DRR()
        for i in 0..<30_000 {
            drr.enqueue(i, for: "a", weight: 1)
            drr.enqueue(i, for: "b", weight: 2)
            drr.enqueue(i, for: "c", weight: 4)
        }
        var served: [String: Int] = [:]
        while served.values.reduce(0, +) < 35_000 {
            for (key, _) in drr.dequeue(limit: limit) { served[key, default: 0] += 1 }
        }
        let total = Double(served.values.reduce(0, +))
        #expect(abs(Double(served["a"]!) / total - 1.0 / 7) < 0.01 / 7)
        #expect(abs(Double(served["b"]!) / total - 2.0 / 7) < 0.01 * 2 / 7)
        #expect(abs(Double(served["c"]!) / total - 4.0 / 7) < 0.01 * 4 / 7)
    }

    @Test func aWhaleDoesNotDelaySmallTenants() {
        var drr = DRR()
        for i in 0..<100_000 { drr.enqueue(i, for: "whale", weight: 1) }
        for t in 0..<10 {
            for i in 0..<3 { drr.enqueue(i, for: "small-\(t)", weight: 2) }
        }
        let first = drr.dequeue(limit: 40)
        #expect(first.count == 40)
        #expect(first.filter { $0.key != "whale" }.count == 30)
        #expect(drr.count == 100_000 - 10 && drr.activeKeys == 1)
    }

    @Test func priorityWithinATenantIsAStableOrder() {
        var drr = DRR(quantum: 100)
        drr.enqueue(1, for: "a", priority: .low)
        drr.enqueue(2, for: "a", priority: .normal)
        drr.enqueue(3, for: "a", priority: .high)
        drr.enqueue(4, for: "a", priority: .normal)
        drr.enqueue(5, for: "a", priority: .high)
        drr.enqueue(6, for: "a", priority: .low)
        check(drr.dequeue(limit: 10).map(\.item) == [3, 5, 2, 4, 1, 6])
        #expect(drr.isEmpty && drr.activeKeys == 0)
    }

    @Test func capacityBoundsWhatIsHeld() {
        var drr = DRR(capacity: 5)
        for i in 0..<5 { check(drr.enqueue(i, for: "k\(i % 2)")) }
        #expect(drr.isFull)
        check(!drr.enqueue(99, for: "k0"))
        #expect(drr.count == 5 && drr.count(for: "k0") == 3)
        _ = drr.dequeue()
        check(drr.enqueue(99, for: "k0"))
        check(drr.dequeue(limit: 0).isEmpty)
    }

    @Test func refusedTenantsKeepTheirItemsAndOthersProceed() {
        var drr = DRR()
        for i in 0..<5 {
            drr.enqueue(i, for: "throttled")
            drr.enqueue(i, for: "ok")
        }
        var asked = 0
        let out = drr.dequeue(limit: 100) { key, _ in
            if key == "throttled" { asked += 1 }
            return key != "throttled"
        }
        #expect(out.map(\.key) == Array(repeating: "ok", count: 5))
        #expect(asked == 1)  // asked once, then skipped for the rest of the call
        #expect(drr.count(for: "throttled") == 5)
        // Everyone refused: returns at once, nothing lost.
        check(drr.dequeue(limit: 100) { _, _ in false }.isEmpty)
        #expect(drr.count == 5)
        check(drr.dequeue(limit: 100).count == 5)
    }

    @Test func costsAreChargedAgainstTheCredit() {
        var drr = DRR(quantum: 4)
        for i in 0..<10_000 {
            drr.enqueue(i, for: "big", cost: 4)
            drr.enqueue(i, for: "small", cost: 1)
        }
        var cost: [String: Double] = [:]
        for _ in 0..<500 {
            for (key, _) in drr.dequeue(limit: 9) { cost[key, default: 0] += key == "big" ? 4 : 1 }
        }
        #expect(abs(cost["big"]! - cost["small"]!) <= 8)
    }

    @Test func removeAllForATenantKeepsTheOthersInOrder() {
        var drr = DRR()
        drr.enqueue(1, for: "a", priority: .low)
        drr.enqueue(2, for: "a", priority: .high)
        drr.enqueue(10, for: "b")
        drr.enqueue(20, for: "c")
        check(drr.removeAll(for: "a") == [2, 1])
        check(drr.removeAll(for: "zzz").isEmpty)
        #expect(drr.count == 2 && drr.activeKeys == 2)
        check(drr.dequeue(limit: 5).map(\.key) == ["b", "c"])
        drr.enqueue(1, for: "x")
        drr.enqueue(2, for: "y")
        check(drr.removeAll().map(\.key) == ["x", "y"])
        #expect(drr.isEmpty)
    }

    @Test func aTinyWeightIsStillServed() {
        var drr = DRR()
        drr.enqueue(1, for: "a", weight: 0)
        drr.enqueue(2, for: "b", weight: .nan)
        check(Set(drr.dequeue(limit: 2).map(\.item)) == [1, 2])
    }

    @Test func setWeightChangesTheShare() {
        var drr = DRR()
        for i in 0..<1_000 {
            drr.enqueue(i, for: "a")
            drr.enqueue(i, for: "b")
        }
        drr.setWeight(3, for: "b")
        let out = drr.dequeue(limit: 400)
        #expect(out.filter { $0.key == "b" }.count == 300)
    }
}
