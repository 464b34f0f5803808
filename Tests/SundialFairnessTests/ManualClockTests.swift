import Testing

@testable import SundialFairness

@Suite("Unit: fairness test clock")
struct ManualClockTests {
    @Test func advancesOnlyWhenTold() {
        let clock = ManualClock()
        let t0 = clock.now
        #expect(clock.now == t0)
        clock.advance(by: .milliseconds(1500))
        #expect(t0.duration(to: clock.now) == .milliseconds(1500))
    }

    @Test func sleeperWakesWhenTheDeadlinePasses() async throws {
        let clock = ManualClock()
        let deadline = clock.now.advanced(by: .seconds(10))
        let sleeper = Task { try await clock.sleep(until: deadline, tolerance: nil) }
        // Wake it: keep advancing in small steps until the task finishes.
        for _ in 0..<20 {
            await Task.yield()
            clock.advance(by: .seconds(1))
        }
        try await sleeper.value
        #expect(clock.now >= deadline)
    }
}
