import Testing

@testable import SundialFairness

@Suite("Unit: fairness tier classifier")
struct TierClassifierTests {
    typealias Classifier = TierClassifier<ManualClock>

    static let config = Classifier.Configuration(
        newTenantAge: .seconds(3_600), enterBulkRate: 50, exitBulkRate: 20,
        enterBulkBacklog: 10_000, exitBulkBacklog: 1_000, exitHold: .seconds(60),
        rateWindow: .seconds(30))
    static let old = Duration.seconds(86_400)

    /// Observes `tenant` once a second for `seconds` seconds; returns the tiers seen.
    static func feed(
        _ c: inout Classifier, _ tenant: String = "t", rate: (Int) -> Double, backlog: Int = 0,
        seconds: Int, age: Duration = TierClassifierTests.old, now: inout ManualClock.Instant
    ) -> [Tier] {
        (0..<seconds).map { i in
            now = now.advanced(by: .seconds(1))
            return c.observe(tenant: tenant, dueRate: rate(i), backlog: backlog, age: age, now: now)
        }
    }

    static func transitions(_ tiers: [Tier]) -> Int {
        zip(tiers, tiers.dropFirst()).filter { $0 != $1 }.count
    }

    @Test func youngOrTrialTenantsAreNew() {
        var c = Classifier(configuration: Self.config)
        let now = ManualClock().now
        check(c.observe(tenant: "a", dueRate: 1, backlog: 0, age: .seconds(600), now: now) == .new)
        check(c.observe(tenant: "b", dueRate: 1, backlog: 0, age: .seconds(7_200), now: now) == .standard)
        check(
            c.observe(tenant: "c", dueRate: 1, backlog: 0, age: .seconds(7_200), trial: true, now: now)
                == .new)
        #expect(c.tier(of: "a") == .new && c.tier(of: "zzz") == nil)
    }

    @Test func sustainedRateMakesATenantBulk() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        check(Self.feed(&c, rate: { _ in 5 }, seconds: 100, now: &now).allSatisfy { $0 == .standard })
        let tiers = Self.feed(&c, rate: { _ in 100 }, seconds: 60, now: &now)
        // EWMA (30 s) from 5 toward 100 reaches 50 after 30·ln(95/50) ≈ 19.3 s.
        let firstBulk = tiers.firstIndex(of: .bulk)
        #expect(firstBulk != nil && (17...21).contains(firstBulk!), "\(String(describing: firstBulk))")
        #expect(Self.transitions(tiers) == 1)
    }

    @Test func aShortSpikeDoesNotMakeATenantBulk() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        _ = Self.feed(&c, rate: { _ in 5 }, seconds: 100, now: &now)
        let tiers = Self.feed(&c, rate: { $0 < 5 ? 100 : 5 }, seconds: 200, now: &now)
        #expect(tiers.allSatisfy { $0 == .standard })
    }

    @Test func aBacklogMakesATenantBulkAtOnce() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        _ = Self.feed(&c, rate: { _ in 1 }, seconds: 10, now: &now)
        now = now.advanced(by: .seconds(1))
        check(c.observe(tenant: "t", dueRate: 1, backlog: 200_000, age: Self.old, now: now) == .bulk)
    }

    @Test(
        "no flapping: once bulk, noise between the exit and entry thresholds keeps it bulk",
        arguments: [UInt64(1), 2, 3])
    func noFlappingAboveTheExitThreshold(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        _ = Self.feed(&c, rate: { _ in 100 }, seconds: 60, now: &now)
        #expect(c.tier(of: "t") == .bulk)
        let tiers = Self.feed(
            &c, rate: { _ in rng.double(21..<49) }, backlog: 5_000, seconds: 10_000, now: &now)
        #expect(tiers.allSatisfy { $0 == .bulk })
    }

    @Test("no flapping: a rate oscillating around the entry threshold switches once", arguments: [10, 60, 300])
    func noFlappingAroundTheEntryThreshold(period: Int) {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        // Square wave 30 ↔ 70 (mean 50) with the given half-period in seconds.
        let tiers = Self.feed(
            &c, rate: { ($0 / period) % 2 == 0 ? 30 : 70 }, seconds: 20_000, now: &now)
        #expect(Self.transitions(tiers) <= 1)
        #expect(tiers.last == .bulk)
    }

    @Test func aRandomWalkAroundBothThresholdsSwitchesOnlyWithHysteresis() {
        var rng = SplitMix64(seed: 77)
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        var rate = 35.0
        var previous: Tier = .standard
        var lastSwitch = now
        var entries = 0
        var exits = 0
        for _ in 0..<50_000 {
            rate = min(max(rate + rng.double(-3..<3), 0), 90)
            now = now.advanced(by: .seconds(1))
            let before = c.state(of: "t")
            let tier = c.observe(tenant: "t", dueRate: rate, backlog: 0, age: Self.old, now: now)
            if previous == .bulk && tier == .standard {
                exits += 1
                // Left only after a calm stretch of at least exitHold, with the average low.
                let calmSince = before?.calmSince
                #expect(calmSince != nil && calmSince!.duration(to: now) >= Self.config.exitHold)
                #expect(c.state(of: "t")!.smoothedRate < Self.config.exitBulkRate)
                #expect(lastSwitch.duration(to: now) >= Self.config.exitHold)
                lastSwitch = now
            }
            if previous == .standard && tier == .bulk {
                entries += 1
                #expect(c.state(of: "t")!.smoothedRate >= Self.config.enterBulkRate)
                // From below 20 to 50 with samples ≤ 90 takes ≥ 30·ln(70/40) ≈ 16.8 s.
                if exits > 0 { #expect(lastSwitch.duration(to: now) >= .seconds(16)) }
                lastSwitch = now
            }
            previous = tier
        }
        #expect(entries >= 1 && exits >= 1, "the walk should cross both thresholds")
        #expect(entries - exits <= 1 && entries >= exits)
    }

    @Test func leavesBulkOnlyAfterTheHold() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        _ = Self.feed(&c, rate: { _ in 100 }, seconds: 120, now: &now)
        #expect(c.tier(of: "t") == .bulk)
        // Quiet: EWMA 100 → below 20 after 30·ln 5 ≈ 48 s, then 60 s of hold.
        let tiers = Self.feed(&c, rate: { _ in 0 }, seconds: 200, now: &now)
        let exit = tiers.firstIndex(of: .standard)
        #expect(exit != nil && (106...110).contains(exit!), "\(String(describing: exit))")
        #expect(Self.transitions(tiers) == 1)
    }

    @Test func aBacklogDuringTheHoldRestartsIt() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        _ = Self.feed(&c, rate: { _ in 100 }, seconds: 120, now: &now)
        // Calm from ~48 s on; at 80 s a backlog of 5 000 (above the exit threshold) for 1 s.
        let tiers = (0..<300).map { i -> Tier in
            now = now.advanced(by: .seconds(1))
            return c.observe(
                tenant: "t", dueRate: 0, backlog: i == 80 ? 5_000 : 0, age: Self.old, now: now)
        }
        let exit = tiers.firstIndex(of: .standard)
        #expect(exit != nil && (140...141).contains(exit!), "\(String(describing: exit))")
    }

    @Test func bulkWinsOverNewAndNewReturnsAfterwards() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        let young = Duration.seconds(60)
        check(Self.feed(&c, rate: { _ in 1 }, seconds: 5, age: young, now: &now).last == .new)
        check(Self.feed(&c, rate: { _ in 500 }, seconds: 30, age: young, now: &now).last == .bulk)
        check(Self.feed(&c, rate: { _ in 0 }, seconds: 300, age: young, now: &now).last == .new)
    }

    @Test func pinnedTenantsKeepTheirTier() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        c.pin("t", to: .standard)
        check(Self.feed(&c, rate: { _ in 500 }, seconds: 30, now: &now).allSatisfy { $0 == .standard })
        #expect(c.tier(of: "t") == .standard)
        c.pin("t", to: nil)
        check(Self.feed(&c, rate: { _ in 500 }, seconds: 1, now: &now) == [.bulk])
        c.pin("u", to: .bulk)
        #expect(c.tier(of: "u") == .bulk && c.pinned == ["u": .bulk])
    }

    @Test func pruneDropsIdleTenants() {
        var c = Classifier(configuration: Self.config)
        var now = ManualClock().now
        for t in ["a", "b", "c"] { c.observe(tenant: t, dueRate: 1, backlog: 0, age: Self.old, now: now) }
        now = now.advanced(by: .seconds(600))
        c.observe(tenant: "b", dueRate: 1, backlog: 0, age: Self.old, now: now)
        check(c.prune(idleFor: .seconds(300), now: now) == 2)
        #expect(c.trackedTenants == 1 && c.tier(of: "b") == .standard)
        c.forget("b")
        #expect(c.trackedTenants == 0)
    }

    @Test func configurationIsSanitised() {
        let c = Classifier(
            configuration: .init(
                enterBulkRate: 10, exitBulkRate: 30, enterBulkBacklog: 100, exitBulkBacklog: 500,
                exitHold: .seconds(-5)))
        #expect(c.configuration.exitBulkRate == 10)
        #expect(c.configuration.exitBulkBacklog == 100)
        #expect(c.configuration.exitHold == .zero)
    }
}
