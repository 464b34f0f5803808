import Foundation
import Testing

@testable import SundialSchedule

struct InvalidCase: Sendable, CustomTestStringConvertible {
    let name: String
    let schedule: TimerSchedule
    let field: String
    let fragment: String

    init(_ name: String, _ schedule: TimerSchedule, _ field: String, _ fragment: String) {
        self.name = name
        self.schedule = schedule
        self.field = field
        self.fragment = fragment
    }

    var testDescription: String { name }
}

@Suite("Validation")
struct ValidationTests {
    static let now = utc("2027-03-15T10:00:00Z")

    static let invalid: [InvalidCase] = [
        InvalidCase("unknown zone", cron("@daily", "Mars/Olympus_Mons"), "schedule.time_zone", "unknown time zone"),
        InvalidCase("abbreviation is not an IANA name", cron("@daily", "PST"), "schedule.time_zone", "unknown"),
        InvalidCase("POSIX-style offset", cron("@daily", "GMT+5"), "schedule.time_zone", "unknown"),
        InvalidCase("zone names are case-sensitive", cron("@daily", "europe/berlin"), "schedule.time_zone", "unknown"),
        InvalidCase("bad cron field", cron("0 25 * * *"), "schedule.cron.expression", "hour field"),
        InvalidCase("cron that never fires", cron("0 0 30 2 *"), "schedule.cron.expression", "never fires"),
        InvalidCase("empty weekday set", weekdays([]), "schedule.weekdays.days", "at least one"),
        InvalidCase("weekday time out of range", weekdays([.monday], LocalTime(hour: 24)),
            "schedule.weekdays.time_of_day.hour", "between 0 and 23"),
        InvalidCase("minute out of range", weekdays([.monday], LocalTime(hour: 1, minute: 60)),
            "schedule.weekdays.time_of_day.minute", "between 0 and 59"),
        InvalidCase("once date in the past", TimerSchedule(.date(year: 2027, month: 3, day: 15, timeOfDay: nine)),
            "schedule.date", "in the past"),
        InvalidCase("once date now (not after) is past",
            TimerSchedule(.date(year: 2027, month: 3, day: 15, timeOfDay: LocalTime(hour: 10))), "schedule.date", "past"),
        InvalidCase("Feb 29 in a non-leap year", TimerSchedule(.date(year: 2029, month: 2, day: 29, timeOfDay: nil)),
            "schedule.date.day", "between 1 and 28"),
        InvalidCase("Feb 30 yearly", TimerSchedule(.date(year: nil, month: 2, day: 30, timeOfDay: nil)),
            "schedule.date.day", "between 1 and 29"),
        InvalidCase("April 31", TimerSchedule(.date(year: nil, month: 4, day: 31, timeOfDay: nil)),
            "schedule.date.day", "between 1 and 30"),
        InvalidCase("month 13", TimerSchedule(.date(year: nil, month: 13, day: 1, timeOfDay: nil)),
            "schedule.date.month", "between 1 and 12"),
        InvalidCase("day 0", TimerSchedule(.date(year: nil, month: 1, day: 0, timeOfDay: nil)),
            "schedule.date.day", "between 1 and 31"),
        InvalidCase("at in the past", TimerSchedule(.at(utc("2027-03-15T09:59:59Z"))), "schedule.at.instant", "in the past"),
        InvalidCase("negative delay", TimerSchedule(.delay(.seconds(-1))), "schedule.delay.duration", "negative"),
        InvalidCase("interval below 1 s", TimerSchedule(.every(interval: .milliseconds(999), start: nil, end: nil)),
            "schedule.every.interval", "at least 1s"),
        InvalidCase("every end before start",
            TimerSchedule(.every(interval: .seconds(60), start: utc("2027-04-01T00:00:00Z"), end: utc("2027-03-31T00:00:00Z"))),
            "schedule.every.end", "after start"),
        InvalidCase("every end in the past",
            TimerSchedule(.every(interval: .seconds(60), start: nil, end: utc("2027-03-01T00:00:00Z"))),
            "schedule.every.end", "in the past"),
        InvalidCase("until in the past", TimerSchedule(.cron("@daily"), until: utc("2027-03-01T00:00:00Z")),
            "schedule.end.until", "in the past"),
        InvalidCase("until before the first fire", TimerSchedule(.cron("@daily"), until: utc("2027-03-15T12:00:00Z")),
            "schedule.end.until", "no occurrence"),
        InvalidCase("max occurrences zero", TimerSchedule(.cron("@daily"), maxOccurrences: 0),
            "schedule.end.max_occurrences", "at least 1"),
        InvalidCase("jitter larger than the every interval",
            TimerSchedule(.every(interval: .seconds(60), start: nil, end: nil), jitter: .seconds(90)),
            "schedule.jitter", "smaller than"),
        InvalidCase("jitter equal to the cron interval", TimerSchedule(.cron("*/5 * * * *"), jitter: .seconds(300)),
            "schedule.jitter", "smaller than the shortest interval between fires (5m)"),
        InvalidCase("jitter vs weekdays gap", weekdays([.monday, .tuesday], recurring: true).with(jitter: .seconds(90_000)),
            "schedule.jitter", "at most 24h"),
        InvalidCase("jitter vs weekdays gap (1 day)", weekdays([.sunday, .monday], recurring: true).with(jitter: .seconds(86_400)),
            "schedule.jitter", "smaller than"),
        InvalidCase("negative jitter", cron("@daily").with(jitter: .seconds(-1)), "schedule.jitter", "negative"),
    ]

    static let nine = LocalTime(hour: 9)

    @Test(arguments: invalid)
    func rejects(_ c: InvalidCase) {
        do {
            try c.schedule.validate(now: Self.now)
            Issue.record("\(c.name): accepted")
        } catch {
            let match = error.violations.first { $0.field == c.field }
            #expect(match != nil, "\(c.name): got \(error)")
            #expect(match?.reason.contains(c.fragment) == true, "\(c.name): got \(error)")
        }
    }

    static let valid: [TimerSchedule] = [
        TimerSchedule(.delay(.zero)),
        TimerSchedule(.at(now)),
        cron("0 9 * * MON-FRI", "Europe/Berlin"),
        cron("@hourly", "Etc/UTC"),
        cron("@hourly", ""),
        cron("0 0 29 2 *", "Australia/Lord_Howe"),
        TimerSchedule(.date(year: 2028, month: 2, day: 29, timeOfDay: nil)),
        TimerSchedule(.date(year: nil, month: 2, day: 29, timeOfDay: nil), timeZone: "Asia/Kolkata"),
        TimerSchedule(.date(year: 2027, month: 3, day: 15, timeOfDay: LocalTime(hour: 10, second: 1))),
        weekdays([.monday], recurring: true).with(jitter: .seconds(86_399)),
        TimerSchedule(.every(interval: .seconds(1), start: nil, end: nil)),
        TimerSchedule(.every(interval: .seconds(60), start: utc("2020-01-01T00:00:00Z"), end: nil), jitter: .seconds(59)),
        TimerSchedule(.cron("*/5 * * * *"), jitter: .seconds(299)),
        TimerSchedule(.cron("0 0 1 * *"), until: utc("2027-04-01T00:00:00Z"), maxOccurrences: 1),
        TimerSchedule(.at(utc("2030-01-01T00:00:00Z")), jitter: .seconds(3600)),
    ]

    @Test(arguments: valid)
    func accepts(_ s: TimerSchedule) {
        #expect(throws: Never.self) { try s.validate(now: Self.now) }
    }

    @Test func reportsEveryProblemAtOnce() {
        let s = TimerSchedule(
            .weekdays(days: [], timeOfDay: LocalTime(hour: 25, minute: 61), recurring: true), timeZone: "Nowhere/Land",
            maxOccurrences: 0, jitter: .seconds(-5))
        let fields = Set(s.violations(now: Self.now).map(\.field))
        #expect(fields == [
            "schedule.time_zone", "schedule.weekdays.days", "schedule.weekdays.time_of_day.hour",
            "schedule.weekdays.time_of_day.minute", "schedule.end.max_occurrences", "schedule.jitter",
        ])
    }

    @Test func timeIndependentChecksWithoutNow() {
        #expect(TimerSchedule(.at(utc("2000-01-01T00:00:00Z"))).violations(now: nil).isEmpty)
        #expect(cron("bad").violations(now: nil).map(\.field) == ["schedule.cron.expression"])
    }

    @Test(arguments: [
        ("UTC", true), ("", true), ("Etc/UTC", true), ("Europe/Berlin", true), ("America/Argentina/Buenos_Aires", true),
        ("Asia/Kolkata", true), ("Asia/Calcutta", true), ("Australia/Lord_Howe", true), ("Etc/GMT+5", true),
        ("GMT", true), ("PST", false), ("../../../etc/passwd", false), ("Europe/../Europe/Berlin", false), ("posix/Europe/Berlin", false), ("CEST", false), ("Europe/Berlin ", false), ("Foo/Bar", false), ("+01:00", false),
    ])
    func zoneNames(_ name: String, _ accepted: Bool) {
        #expect((TimeZoneName.resolve(name) != nil) == accepted, "\(name)")
    }
}

extension TimerSchedule {
    func with(jitter: Duration) -> TimerSchedule {
        var s = self
        s.jitter = jitter
        return s
    }
}
