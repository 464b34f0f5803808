import Testing

@testable import SundialFairness

@Suite("Unit: fairness token bucket")
struct TokenBucketTests {
    /// Greedy consumer polling every `tick` for `ticks` ticks; returns tokens taken. The bucket
    /// starts empty, so the count is exactly ⌊rate × time⌋ if nothing drifts.
    static func run(
        rate: Double, burst: Double, tick: Duration, ticks: Int, clock: ManualClock
    ) -> Int {
        var now = clock.now
        var bucket = Bucket(rate: rate, burst: burst, now: now, initialTokens: 0)
        var taken = 0
        for _ in 0..<ticks {
            now = now.advanced(by: tick)
            while bucket.tryTake(now: now) { taken += 1 }
        }
        return taken
    }

    @Test(
        "rate over 10^5 ticks is within 0.1% of the configured rate",
        arguments: [0.5, 3, 333.3, 1_000, 12_345.6])
    func longRunRate(rate: Double) {
        let clock = ManualClock()
        let ticks = 100_000
        let tick = Duration.milliseconds(1)
        // The burst must hold more than one tick's worth, or the cap (correctly) drops tokens
        // between two polls.
        let burst = max(10, (rate * tick.inSeconds * 2).rounded(.up))
        let taken = Self.run(rate: rate, burst: burst, tick: tick, ticks: ticks, clock: clock)
        let seconds = tick.inSeconds * Double(ticks)
        #expect(abs(Double(taken) / seconds - rate) <= 0.001 * rate, "taken \(taken) in \(seconds)s")
        // Exact, not merely close: the count is what the formula says, ±1 for the last token.
        let expected = (rate * seconds).rounded(.down)
        #expect(abs(Double(taken) - expected) <= 1, "taken \(taken), expected \(expected)")
    }

    @Test("irregular ticks do not drift", arguments: [UInt64(1), 2, 3])
    func irregularTicks(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let clock = ManualClock()
        let rate = 1.0 / 3.0 * 1_000  // not representable in binary
        var now = clock.now
        var bucket = Bucket(rate: rate, burst: 5, now: now, initialTokens: 0)
        let start = now
        var taken = 0
        for _ in 0..<100_000 {
            now = now.advanced(by: .microseconds(Int64(rng.int(1...3_000))))
            while bucket.tryTake(now: now) { taken += 1 }
        }
        let seconds = start.duration(to: now).inSeconds
        let expected = (rate * seconds).rounded(.down)
        #expect(abs(Double(taken) - expected) <= 1, "taken \(taken), expected \(expected)")
    }

    @Test func noDriftOverMonthsOfSparseTakes() {
        // A third of a token per second, polled every 7 s for ~4 months: 10^7 s, 3.5·10^6 tokens.
        let clock = ManualClock()
        var now = clock.now
        var bucket = Bucket(rate: 1.0 / 3.0, burst: 10, now: now, initialTokens: 0)
        let start = now
        var taken = 0
        for _ in 0..<1_500_000 {
            now = now.advanced(by: .seconds(7))
            while bucket.tryTake(now: now) { taken += 1 }
        }
        let seconds = start.duration(to: now).inSeconds
        let expected = (seconds / 3).rounded(.down)
        #expect(abs(Double(taken) - expected) <= 1)
    }

    @Test func burstIsHonoured() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 5, burst: 10, now: clock.now, initialTokens: 0)
        clock.advance(by: .seconds(3600))  // idle for an hour: full, not 18000 tokens
        #expect(bucket.tokens(at: clock.now) == 10)
        var taken = 0
        while bucket.tryTake(now: clock.now) { taken += 1 }
        #expect(taken == 10)
        check(!bucket.tryTake(11, now: clock.now.advanced(by: .seconds(100))))
        check(bucket.tryTake(10, now: clock.now.advanced(by: .seconds(100))))
    }

    @Test func takesSeveralAtOnce() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 1, burst: 10, now: clock.now)
        check(bucket.tryTake(7, now: clock.now))
        check(!bucket.tryTake(4, now: clock.now))  // refused takes nothing
        check(bucket.tryTake(3, now: clock.now))
        check(bucket.tryTake(0, now: clock.now))
        check(!bucket.tryTake(now: clock.now))
    }

    @Test func timeUntilAvailable() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 10, burst: 5, now: clock.now)
        #expect(bucket.timeUntilAvailable(5, now: clock.now) == .zero)
        check(bucket.tryTake(5, now: clock.now))
        #expect(near(bucket.timeUntilAvailable(1, now: clock.now), .milliseconds(100)))
        #expect(near(bucket.timeUntilAvailable(3, now: clock.now), .milliseconds(300)))
        #expect(bucket.timeUntilAvailable(6, now: clock.now) == Bucket.never)
        #expect(bucket.timeUntilAvailable(0, now: clock.now) == .zero)
        clock.advance(by: .milliseconds(99))
        check(!bucket.tryTake(now: clock.now))
        #expect(near(bucket.timeUntilAvailable(1, now: clock.now), .milliseconds(1)))
        clock.advance(by: .milliseconds(1))
        check(bucket.tryTake(now: clock.now))
    }

    @Test func waitingTimeUntilAvailableIsEnoughAndNotTooMuch() {
        var rng = SplitMix64(seed: 42)
        let clock = ManualClock()
        for _ in 0..<2_000 {
            let rate = rng.double(0.01..<50_000)
            let burst = Double(rng.int(1...500))
            var bucket = Bucket(rate: rate, burst: burst, now: clock.now, initialTokens: rng.double(0..<burst))
            clock.advance(by: .microseconds(Int64(rng.int(0...2_000_000))))
            let n = rng.int(1...Int(burst))
            let wait = bucket.timeUntilAvailable(n, now: clock.now)
            if wait > .microseconds(1) {
                check(!bucket.tryTake(n, now: clock.now.advanced(by: wait - .microseconds(1))))
            }
            check(bucket.tryTake(n, now: clock.now.advanced(by: wait)), "rate \(rate) n \(n) wait \(wait)")
        }
    }

    @Test func reserveSmearsIntoSuccessiveSlots() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 4, burst: 2, now: clock.now)
        check(bucket.reserve(now: clock.now) == .zero)
        check(bucket.reserve(now: clock.now) == .zero)
        var waits: [Duration?] = []
        for _ in 0..<5 { waits.append(bucket.reserve(now: clock.now)) }
        #expect(waits == [250, 500, 750, 1000, 1250].map { Optional(Duration.milliseconds($0)) })
        // Beyond maxWait: refused, and nothing is taken.
        check(bucket.reserve(now: clock.now, maxWait: .seconds(1)) == nil)
        #expect(bucket.tokens(at: clock.now) == -5)
        #expect(bucket.timeUntilAvailable(1, now: clock.now) == .milliseconds(1500))
        // The debt is paid back at the rate.
        clock.advance(by: .milliseconds(1250))
        #expect(abs(bucket.tokens(at: clock.now)) < 1e-9)
        check(!bucket.tryTake(now: clock.now))
        clock.advance(by: .milliseconds(250))
        check(bucket.tryTake(now: clock.now))
    }

    @Test func giveBackRefundsUpToTheBurst() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 1, burst: 3, now: clock.now)
        check(bucket.tryTake(3, now: clock.now))
        bucket.giveBack(2, now: clock.now)
        #expect(bucket.tokens(at: clock.now) == 2)
        bucket.giveBack(5, now: clock.now)
        #expect(bucket.tokens(at: clock.now) == 3)
    }

    @Test func reconfigureClampsAccruedTokensToTheNewBurst() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 10, burst: 100, now: clock.now)
        bucket.reconfigure(rate: 10, burst: 10, now: clock.now)
        #expect(bucket.tokens(at: clock.now) == 10)
        // Raising the burst adds no tokens; they accrue at the new rate from now on.
        bucket.reconfigure(rate: 20, burst: 100, now: clock.now)
        #expect(bucket.tokens(at: clock.now) == 10)
        clock.advance(by: .seconds(2))
        #expect(bucket.tokens(at: clock.now) == 50)
        clock.advance(by: .seconds(60))
        #expect(bucket.tokens(at: clock.now) == 100)
    }

    @Test func reconfigureKeepsTokensAccruedUnderTheOldRate() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 10, burst: 50, now: clock.now, initialTokens: 0)
        clock.advance(by: .milliseconds(500))
        bucket.reconfigure(rate: 100, burst: 50, now: clock.now)
        #expect(close(bucket.tokens(at: clock.now), 5))
        clock.advance(by: .milliseconds(100))
        #expect(close(bucket.tokens(at: clock.now), 15))
        #expect(bucket.rate == 100)
    }

    @Test func reconfigureKeepsADebt() {
        let clock = ManualClock()
        var bucket = Bucket(rate: 10, burst: 10, now: clock.now, initialTokens: 0)
        _ = bucket.reserve(20, now: clock.now)
        bucket.reconfigure(rate: 20, burst: 5, now: clock.now)
        #expect(bucket.tokens(at: clock.now) == -20)
        #expect(near(bucket.timeUntilAvailable(1, now: clock.now), .milliseconds(1050)))
    }

    @Test func reconfiguredRateHoldsOverALongRun() {
        let clock = ManualClock()
        var now = clock.now
        var bucket = Bucket(rate: 100, burst: 5, now: now)
        var taken = 0
        for i in 0..<100_000 {
            if i == 50_000 { bucket.reconfigure(rate: 400, burst: 5, now: now) }
            now = now.advanced(by: .milliseconds(1))
            while bucket.tryTake(now: now) { taken += 1 }
        }
        // 50 s at 100/s, then 50 s at 400/s (+5 initial tokens).
        #expect(abs(Double(taken) - 25_005) <= 2)
    }

    @Test func aStaleInstantIsNoTimePassing() {
        let clock = ManualClock(start: .seconds(100))
        let later = clock.now
        var bucket = Bucket(rate: 10, burst: 10, now: later, initialTokens: 0)
        let earlier = later.advanced(by: .seconds(-50))
        #expect(bucket.tokens(at: earlier) == 0)
        check(!bucket.tryTake(now: earlier))
        check(bucket.tryTake(now: later.advanced(by: .milliseconds(100))))
    }

    @Test func sanitisesNonsense() {
        let clock = ManualClock()
        var bucket = Bucket(rate: .nan, burst: 0, now: clock.now)
        #expect(bucket.rate == 0)
        #expect(bucket.burst == 1)
        check(bucket.tryTake(now: clock.now))
        #expect(bucket.timeUntilAvailable(1, now: clock.now) == Bucket.never)
        check(bucket.reserve(now: clock.now) == nil)
        bucket.reconfigure(rate: .infinity, burst: -3, now: clock.now)
        #expect(bucket.rate == Bucket.maximumRate)
        check(bucket.tryTake(now: clock.now.advanced(by: .nanoseconds(1))))
        let negative = Bucket(rate: -5, burst: .nan, now: clock.now)
        #expect(negative.rate == 0 && negative.burst == 1)
    }
}
