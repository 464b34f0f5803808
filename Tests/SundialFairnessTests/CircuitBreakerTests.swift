import Testing

@testable import SundialFairness

@Suite("CircuitBreaker: closed → open → half-open → closed, from job results")
struct CircuitBreakerTests {
    typealias Breaker = CircuitBreaker<ManualClock>

    static let config = Breaker.Configuration(
        window: .seconds(10), slots: 10, minimumSamples: 10, failureRatio: 0.5, coolDown: .seconds(5),
        maximumCoolDown: .seconds(18), probes: 3, probeTimeout: .seconds(20))

    @Test func aFewFailuresNeverTripItAndSuccessesDiluteFailures() {
        let clock = ManualClock()
        var breaker = Breaker(configuration: Self.config, now: clock.now)
        #expect(breaker.record(successes: 0, failures: 9, now: clock.now) == nil)  // below the sample size
        #expect(breaker.record(successes: 20, failures: 0, now: clock.now) == nil)  // 9 / 29 < 50 %
        #expect(breaker.state == .closed)
        // Old outcomes leave the window: nine new failures alone are below the sample size again.
        clock.advance(by: .seconds(11))
        #expect(breaker.record(successes: 0, failures: 9, now: clock.now) == nil)
        let counts = breaker.windowCounts(now: clock.now)
        #expect(counts.successes == 0 && counts.failures == 9)
        #expect(breaker.failureRatio(now: clock.now) == 1)
        _ = breaker.record(successes: 27, failures: 0, now: clock.now)
        #expect(breaker.failureRatio(now: clock.now) == 0.25)
        clock.advance(by: .seconds(11))
        #expect(breaker.failureRatio(now: clock.now) == 0)  // an empty window
        // Open: the ratio that opened it.
        _ = breaker.record(successes: 2, failures: 8, now: clock.now)
        #expect(breaker.state == .open && breaker.failureRatio(now: clock.now) == 0.8)
    }

    @Test func tripsHoldsForTheCoolDownAndClosesOnSuccessfulProbes() {
        let clock = ManualClock()
        var breaker = Breaker(configuration: Self.config, now: clock.now)
        _ = breaker.record(successes: 4, failures: 3, now: clock.now)
        clock.advance(by: .seconds(1))
        #expect(breaker.record(successes: 0, failures: 5, now: clock.now) == .opened(failureRatio: 8.0 / 12.0, coolDown: .seconds(5)))
        #expect(breaker.state == .open)
        #expect(breaker.reopensAt == clock.now.advanced(by: .seconds(5)))
        // Late results of jobs that went out before it opened change nothing.
        #expect(breaker.record(successes: 0, failures: 50, now: clock.now) == nil)
        clock.advance(by: .seconds(4))
        #expect(breaker.tick(now: clock.now) == nil)
        clock.advance(by: .seconds(1))
        #expect(breaker.tick(now: clock.now) == .halfOpened)
        #expect(breaker.record(successes: 2, failures: 0, now: clock.now) == nil)
        #expect(breaker.record(successes: 1, failures: 0, now: clock.now) == .closed)
        #expect(breaker.state == .closed && breaker.coolDown == .seconds(5))
        #expect(breaker.windowCounts(now: clock.now).failures == 0)
    }

    @Test func aFailedProbeRoundReopensWithALongerCoolDownUpToItsMaximum() {
        let clock = ManualClock()
        var breaker = Breaker(configuration: Self.config, now: clock.now)
        _ = breaker.record(successes: 0, failures: 10, now: clock.now)
        var coolDowns: [Duration] = []
        for _ in 0..<4 {
            clock.advance(by: breaker.coolDown)
            #expect(breaker.tick(now: clock.now) == .halfOpened)
            _ = breaker.record(successes: 1, failures: 0, now: clock.now)
            guard case .opened(_, let coolDown) = breaker.record(successes: 0, failures: 1, now: clock.now) else {
                Issue.record("a failed probe must reopen it")
                return
            }
            coolDowns.append(coolDown)
        }
        #expect(coolDowns == [.seconds(10), .seconds(18), .seconds(18), .seconds(18)])
    }

    @Test func aQuietDownstreamClosesOnFewerSuccessesAndUnansweredProbesStartANewRound() {
        let clock = ManualClock()
        var breaker = Breaker(configuration: Self.config, now: clock.now)
        _ = breaker.record(successes: 0, failures: 10, now: clock.now)
        clock.advance(by: .seconds(5))
        #expect(breaker.tick(now: clock.now) == .halfOpened)
        // No answers within the probe timeout: no jobs went — a new round, not a reopening.
        clock.advance(by: .seconds(20))
        #expect(breaker.tick(now: clock.now) == nil)
        #expect(breaker.state == .halfOpen)
        // One success (fewer than `probes`) and no failure by the timeout: closed.
        #expect(breaker.record(successes: 1, failures: 0, now: clock.now) == nil)
        clock.advance(by: .seconds(20))
        #expect(breaker.tick(now: clock.now) == .closed)
        // Statuses stay within a day, whatever the configuration allowed.
        var long = Self.config
        long.maximumCoolDown = .seconds(90_000)
        #expect(long.problem != nil)
    }

    @Test func aRestoredBreakerKeepsItsRemainingCoolDown() {
        let clock = ManualClock()
        let breaker = Breaker(
            configuration: Self.config, restoring: .open, remaining: .seconds(3), coolDown: .seconds(10), now: clock.now)
        #expect(breaker.state == .open && breaker.coolDown == .seconds(10))
        #expect(breaker.reopensAt == clock.now.advanced(by: .seconds(3)))
        let hostile = Breaker(
            configuration: Self.config, restoring: .open, remaining: .seconds(1_000_000), coolDown: .seconds(1_000_000),
            now: clock.now)
        #expect(hostile.coolDown == .seconds(18) && hostile.reopensAt == clock.now.advanced(by: .seconds(18)))
    }

    @Test func aClosedBreakerTakesANewShorterCoolDownAtOnce() {
        let clock = ManualClock()
        var breaker = Breaker(configuration: Self.config, now: clock.now)  // cool-down 5 s
        var shorter = Self.config
        shorter.coolDown = .seconds(2)
        breaker.reconfigure(shorter)
        #expect(breaker.coolDown == .seconds(2))
        _ = breaker.record(successes: 0, failures: 10, now: clock.now)
        #expect(breaker.state == .open && breaker.reopensAt == clock.now.advanced(by: .seconds(2)))
    }

    @Test func configurationsAreChecked() {
        #expect(Self.config.problem == nil)
        var bad = Self.config
        bad.failureRatio = 0
        #expect(bad.problem != nil)
        var longWindow = Self.config
        longWindow.window = .seconds(2 * 86_400)  // the plan's trip rule allows at most a day
        #expect(longWindow.problem != nil)
        bad = Self.config
        bad.maximumCoolDown = .seconds(1)
        #expect(bad.problem != nil)
    }
}
