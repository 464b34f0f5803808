import Foundation
import Testing

@testable import SundialSchedule

@Suite("Jitter")
struct JitterTests {
    @Test func noJitterIsZero() {
        #expect(cron("@daily").jitterOffset(timerID: "t", occurrence: 1) == .zero)
        #expect(cron("@daily").with(jitter: .zero).jitterOffset(timerID: "t", occurrence: 1) == .zero)
        #expect(cron("@daily").with(jitter: .nanoseconds(999_999)).jitterOffset(timerID: "t", occurrence: 1) == .zero)
    }

    /// Pinned values: the algorithm (FNV-1a 64 + SplitMix64 finalizer, ms resolution) is part of
    /// the contract — changing it would move every jittered timer on upgrade.
    @Test func pinnedValues() {
        #expect(ScheduleJitter.hash(timerID: "", occurrence: 0) == ScheduleJitter.hash(timerID: "", occurrence: 0))
        let fnvEmptyThenFF: UInt64 = {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in [UInt8(0xFF)] + [UInt8](repeating: 0, count: 8) {
                h ^= UInt64(b)
                h = h &* 0x100_0000_01b3
            }
            return h
        }()
        #expect(ScheduleJitter.hash(timerID: "", occurrence: 0) == ScheduleJitter.splitMix64Finalize(fnvEmptyThenFF))
        // SplitMix64's first output for seed 0 is the well-known 0xE220A8397B1DCDAF.
        #expect(ScheduleJitter.splitMix64Finalize(0) == 0xE220_A839_7B1D_CDAF)
        let s = cron("@daily").with(jitter: .seconds(3600))
        #expect(s.jitterOffset(timerID: "tmr_01HZX3", occurrence: 1) == PinnedJitter.tmr01HZX3Occurrence1)
    }

    @Test func deterministicAndInRange() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let windowMs = Int64(rng.int(1...86_400_000))
            let s = cron("@daily").with(jitter: .milliseconds(windowMs))
            let id = "timer-\(rng.next())"
            let occurrence = rng.next() % 1000
            let a = s.jitterOffset(timerID: id, occurrence: occurrence)
            let b = s.jitterOffset(timerID: id, occurrence: occurrence)
            #expect(a == b)
            #expect(a >= .zero && a < .milliseconds(windowMs))
            // Replanning from a fresh copy (e.g. decoded from the database) gives the same offset.
            let copy = TimerSchedule(s.kind, timeZone: s.timeZone, jitter: s.jitter)
            #expect(copy.jitterOffset(timerID: id, occurrence: occurrence) == a)
        }
    }

    @Test func spreadsUniformly() {
        // 20 buckets over a 1-minute window, 20,000 (timer, occurrence) pairs: each bucket should
        // get 1000 ± a few standard deviations (σ ≈ 31).
        let s = cron("@daily").with(jitter: .seconds(60))
        var buckets = [Int](repeating: 0, count: 20)
        for t in 0..<200 {
            for o in 1...100 {
                let ms = s.jitterOffset(timerID: "t\(t)", occurrence: UInt64(o)).wholeMilliseconds
                buckets[Int(ms / 3000)] += 1
            }
        }
        #expect(buckets.allSatisfy { (850...1150).contains($0) }, "\(buckets)")
        // Different occurrences of one timer move.
        let offsets = Set((1...50).map { s.jitterOffset(timerID: "same", occurrence: UInt64($0)) })
        #expect(offsets.count > 45)
    }

    @Test func fireTimeAddsOffset() {
        let s = cron("@daily").with(jitter: .seconds(30))
        let nominal = utc("2027-01-01T00:00:00Z")
        let fire = s.fireTime(nominal: nominal, timerID: "x", occurrence: 3)
        #expect(abs(fire.timeIntervalSince(nominal) - s.jitterOffset(timerID: "x", occurrence: 3).seconds) < 1e-6)
        #expect(fire > nominal)
    }
}

/// Value computed once by this implementation and pinned.
enum PinnedJitter {
    static let tmr01HZX3Occurrence1: Duration = .milliseconds(1_761_180)
}

@Suite("Durations and timestamps")
struct FormattingTests {
    @Test(arguments: [
        ("90m", 5_400_000), ("3d", 259_200_000), ("1h30m", 5_400_000), ("10s", 10_000), ("500ms", 500),
        ("1.5h", 5_400_000), ("2w", 1_209_600_000), ("0", 0), ("1m30s", 90_000), (" 45s ", 45_000), ("1H", 3_600_000),
        ("1d12h", 129_600_000),
    ] as [(String, Int64)])
    func parseDuration(_ text: String, _ ms: Int64) {
        #expect(ScheduleDuration.parse(text) == .milliseconds(ms), "\(text)")
    }

    @Test(arguments: ["", "10", "m", "10x", "-5m", "1..5s", "5 m", "10s5", "1y"])
    func rejectDuration(_ text: String) {
        #expect(ScheduleDuration.parse(text) == nil, "\(text)")
    }

    @Test(arguments: [
        (5_400_000, "1h30m"), (500, "500ms"), (0, "0s"), (90_061_500, "1d1h1m1s500ms"), (-60_000, "-1m"),
    ] as [(Int64, String)])
    func formatDuration(_ ms: Int64, _ text: String) {
        #expect(ScheduleDuration.format(.milliseconds(ms)) == text)
        #expect(ScheduleDuration.parse(text.hasPrefix("-") ? "x" : text) == (ms >= 0 ? .milliseconds(ms) : nil))
    }

    @Test(arguments: [
        ("2027-03-15T08:00:00Z", 1_805_097_600.0),
        ("2027-03-15T09:00:00+01:00", 1_805_097_600.0),
        ("2027-03-15t08:00:00z", 1_805_097_600.0),
        ("2027-03-15 08:00:00Z", 1_805_097_600.0),
        ("2027-03-15T08:00:00.250Z", 1_805_097_600.25),
        ("2027-03-14T22:30:00-09:30", 1_805_097_600.0),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59Z", -1),
    ])
    func parseRFC3339(_ text: String, _ unix: Double) {
        #expect(RFC3339.parse(text)?.timeIntervalSince1970 == unix, "\(text)")
    }

    @Test(arguments: [
        "2027-03-15T08:00:00", "2027-3-15T08:00:00Z", "2027-02-29T00:00:00Z", "2027-03-15T24:00:00Z",
        "2027-03-15T08:00Z", "2027-03-15T08:00:00+1:00", "2027-03-15T08:00:00.Z", "tomorrow",
    ])
    func rejectRFC3339(_ text: String) {
        #expect(RFC3339.parse(text) == nil, "\(text)")
    }

    @Test func formats() {
        let d = utc("2027-03-15T08:00:00Z")
        #expect(RFC3339.format(d) == "2027-03-15T08:00:00Z")
        #expect(RFC3339.format(d.addingTimeInterval(0.25)) == "2027-03-15T08:00:00.250Z")
        #expect(RFC3339.format(d, in: zone("Asia/Kolkata")) == "2027-03-15T13:30:00+05:30")
        #expect(RFC3339.formatLocal(d, zone: zone("Europe/Berlin")) == "2027-03-15 09:00:00 +01:00 Europe/Berlin")
        #expect(RFC3339.formatLocal(d, zone: zone("America/St_Johns")) == "2027-03-15 05:30:00 -02:30 America/St_Johns")
        #expect(RFC3339.format(utc("1969-12-31T23:59:59.500Z")) == "1969-12-31T23:59:59.500Z")
    }

    @Test(arguments: [("09:00", 9, 0, 0), ("9:05", 9, 5, 0), ("23:59:59", 23, 59, 59)])
    func localTime(_ text: String, _ h: Int, _ m: Int, _ s: Int) {
        #expect(LocalTime(parsing: text) == LocalTime(hour: h, minute: m, second: s))
    }

    @Test(arguments: ["24:00", "9", "09:60", "aa:bb", "09:00:00:00", "-1:00", ""])
    func rejectLocalTime(_ text: String) {
        #expect(LocalTime(parsing: text) == nil)
    }

    @Test func weekdayLists() {
        #expect(Weekday.parseList("mon,wed") == [.monday, .wednesday])
        #expect(Weekday.parseList("Mon-Fri") == [.monday, .tuesday, .wednesday, .thursday, .friday])
        #expect(Weekday.parseList("sunday,7,SA") == [.sunday, .saturday])
        #expect(Weekday.parseList("mon,,wed") == nil)
        #expect(Weekday.parseList("fri-mon") == nil)
        #expect(Weekday.parseList("m") == nil)
    }
}

@Suite("Civil calendar")
struct CivilTests {
    /// Day numbers and weekdays agree with Foundation's Gregorian calendar across 1600–2400.
    @Test func againstFoundationCalendar() {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        var rng = SplitMix64(seed: 1)
        for _ in 0..<3000 {
            let days = Int64(rng.int(-135_000...156_000))
            let date = Date(timeIntervalSince1970: Double(days * 86_400))
            let c = cal.dateComponents([.year, .month, .day, .weekday], from: date)
            let (y, m, d) = Civil.date(days: days)
            #expect(y == c.year! && m == c.month! && d == c.day!)
            #expect(Civil.days(y, m, d) == days)
            #expect(Civil.isoWeekday(days: days) == (c.weekday! + 5) % 7 + 1)
        }
    }

    @Test func leapYears() {
        #expect(Civil.isLeap(2000) && Civil.isLeap(2028) && !Civil.isLeap(2100) && !Civil.isLeap(2027))
        #expect(Civil.daysInMonth(2028, 2) == 29 && Civil.daysInMonth(2100, 2) == 28)
    }
}
