import Testing

@testable import SundialBench

/// The chaos benchmark's sum of fairness deferrals over Dispatcher processes that are killed
/// and restarted (their counters start again from zero).
@Suite("Unit: chaos deferral tally")
struct DeferralTallyTests {
    @Test func sumsEveryInstancesGrowthAndCountsARestartFromZero() {
        var tally = DeferralTally()
        tally.record(instance: "a", deferredTotal: 0)
        tally.record(instance: "b", deferredTotal: 5)
        #expect(tally.total == 5)
        tally.record(instance: "a", deferredTotal: 30)
        tally.record(instance: "b", deferredTotal: 5)
        #expect(tally.total == 35)
        // "a" was restarted: its counter went down, and what it shows now is all new.
        tally.record(instance: "a", deferredTotal: 4)
        #expect(tally.total == 39)
        tally.record(instance: "a", deferredTotal: 10)
        #expect(tally.total == 45)
    }

    @Test func ignoresNegativeCountersAndInstancesBeyondTheBound() {
        var tally = DeferralTally()
        tally.record(instance: "a", deferredTotal: -7)
        #expect(tally.total == 0)
        for index in 0..<DeferralTally.maximumInstances {
            tally.record(instance: "i\(index)", deferredTotal: 1)
        }
        #expect(tally.total == DeferralTally.maximumInstances)
        tally.record(instance: "one-too-many", deferredTotal: 1_000)
        #expect(tally.total == DeferralTally.maximumInstances)
    }
}
