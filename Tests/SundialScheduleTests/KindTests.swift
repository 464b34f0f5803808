import Foundation
import Testing

@testable import SundialSchedule

/// First fires of a newly created timer: (name, schedule, createdAt, expected upcoming fires).
struct FirstFireCase: Sendable, CustomTestStringConvertible {
    let name: String
    let schedule: TimerSchedule
    let createdAt: String
    let expected: [String]

    init(_ name: String, _ schedule: TimerSchedule, createdAt: String, _ expected: [String]) {
        self.name = name
        self.schedule = schedule
        self.createdAt = createdAt
        self.expected = expected
    }

    var testDescription: String { name }
}

func weekdays(
    _ days: Set<Weekday>, _ time: LocalTime? = nil, recurring: Bool = false, _ zone: String = "UTC"
) -> TimerSchedule {
    TimerSchedule(.weekdays(days: days, timeOfDay: time, recurring: recurring), timeZone: zone)
}

/// 2027-03-15 is a Monday, 2027-03-16 a Tuesday.
@Suite("Schedule kinds")
struct KindTests {
    static let nine = LocalTime(hour: 9)

    static let weekdayCases: [FirstFireCase] = [
        FirstFireCase("Mon+Wed, created Tuesday → Wednesday", weekdays([.monday, .wednesday], nine),
            createdAt: "2027-03-16T10:00:00Z", ["2027-03-17T09:00:00Z"]),
        FirstFireCase("today selected, time still ahead → today", weekdays([.monday], nine),
            createdAt: "2027-03-15T08:59:59Z", ["2027-03-15T09:00:00Z"]),
        FirstFireCase("today selected, exactly the time → next selected day", weekdays([.monday, .wednesday], nine),
            createdAt: "2027-03-15T09:00:00Z", ["2027-03-17T09:00:00Z"]),
        FirstFireCase("today selected, time passed → next week when only today", weekdays([.monday], nine),
            createdAt: "2027-03-15T09:00:01Z", ["2027-03-22T09:00:00Z"]),
        FirstFireCase("one-shot fires once", weekdays([.monday, .tuesday], nine),
            createdAt: "2027-03-15T10:00:00Z", ["2027-03-16T09:00:00Z"]),
        FirstFireCase("recurring", weekdays([.monday, .tuesday], nine, recurring: true),
            createdAt: "2027-03-15T10:00:00Z",
            ["2027-03-16T09:00:00Z", "2027-03-22T09:00:00Z", "2027-03-23T09:00:00Z"]),
        FirstFireCase("no time of day, today selected → immediately", weekdays([.monday]),
            createdAt: "2027-03-15T13:14:15Z", ["2027-03-15T13:14:15Z"]),
        FirstFireCase("no time of day, recurring: now, then following selected days at 00:00",
            weekdays([.monday, .tuesday], recurring: true), createdAt: "2027-03-15T13:14:15Z",
            ["2027-03-15T13:14:15Z", "2027-03-16T00:00:00Z", "2027-03-22T00:00:00Z"]),
        FirstFireCase("no time of day, today not selected → 00:00 local of next", weekdays([.wednesday]),
            createdAt: "2027-03-16T23:00:00Z", ["2027-03-17T00:00:00Z"]),
        FirstFireCase("today is decided in the schedule's zone", weekdays([.monday], nine, "Europe/Berlin"),
            createdAt: "2027-03-15T23:30:00Z", ["2027-03-22T08:00:00Z"]),
        FirstFireCase("today in the zone, no time of day", weekdays([.tuesday], nil, "Europe/Berlin"),
            createdAt: "2027-03-15T23:30:00Z", ["2027-03-15T23:30:00Z"]),
        FirstFireCase("all seven days", weekdays(Set(Weekday.allCases), LocalTime(hour: 23, minute: 59, second: 59),
            recurring: true), createdAt: "2027-03-15T23:59:59Z",
            ["2027-03-16T23:59:59Z", "2027-03-17T23:59:59Z"]),
    ]

    @Test(arguments: weekdayCases)
    func weekdaysFirstFire(_ c: FirstFireCase) {
        let got = Array(c.schedule.upcoming(createdAt: utc(c.createdAt)).prefix(c.expected.count + 1))
        let expectedCount = c.schedule.isRecurring ? c.expected.count : c.expected.count
        #expect(got.prefix(expectedCount).map(RFC3339.format) == c.expected, "\(c.name)")
        if !c.schedule.isRecurring { #expect(got.count == c.expected.count, "one-shot must fire once") }
    }

    static let dateCases: [FirstFireCase] = [
        FirstFireCase("yearly 03-15 09:00 Berlin",
            TimerSchedule(.date(year: nil, month: 3, day: 15, timeOfDay: nine), timeZone: "Europe/Berlin"),
            createdAt: "2027-01-01T00:00:00Z", ["2027-03-15T08:00:00Z", "2028-03-15T08:00:00Z", "2029-03-15T08:00:00Z"]),
        FirstFireCase("yearly, today but time passed → next year",
            TimerSchedule(.date(year: nil, month: 3, day: 15, timeOfDay: nine)),
            createdAt: "2027-03-15T09:00:00Z", ["2028-03-15T09:00:00Z"]),
        FirstFireCase("yearly, no time of day = 00:00 local",
            TimerSchedule(.date(year: nil, month: 12, day: 25, timeOfDay: nil), timeZone: "America/New_York"),
            createdAt: "2027-01-01T00:00:00Z", ["2027-12-25T05:00:00Z"]),
        FirstFireCase("Feb 29 yearly fires only in leap years",
            TimerSchedule(.date(year: nil, month: 2, day: 29, timeOfDay: nil)),
            createdAt: "2027-01-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"]),
        FirstFireCase("Feb 29 yearly across 2100",
            TimerSchedule(.date(year: nil, month: 2, day: 29, timeOfDay: nil)),
            createdAt: "2097-01-01T00:00:00Z", ["2104-02-29T00:00:00Z"]),
        FirstFireCase("once, full date",
            TimerSchedule(.date(year: 2028, month: 2, day: 29, timeOfDay: LocalTime(hour: 12, minute: 30)),
                timeZone: "Asia/Kolkata"),
            createdAt: "2027-01-01T00:00:00Z", ["2028-02-29T07:00:00Z"]),
    ]

    @Test(arguments: dateCases)
    func dateFirstFire(_ c: FirstFireCase) {
        let got = Array(c.schedule.upcoming(createdAt: utc(c.createdAt)).prefix(c.expected.count))
        #expect(got.map(RFC3339.format) == c.expected, "\(c.name)")
        if !c.schedule.isRecurring {
            #expect(Array(c.schedule.upcoming(createdAt: utc(c.createdAt))).count == 1)
        }
    }

    @Test func delay() {
        let s = TimerSchedule(.delay(.seconds(3 * 86_400)))
        let created = utc("2027-03-15T10:00:00Z")
        #expect(s.firstFire(createdAt: created) == utc("2027-03-18T10:00:00Z"))
        #expect(s.isRecurring == false)
        #expect(s.next(after: created) == nil, "delay needs its creation time")
        #expect(Array(s.upcoming(createdAt: created)) == [utc("2027-03-18T10:00:00Z")])
        // Sub-second delays keep their precision.
        let ms = TimerSchedule(.delay(.milliseconds(500)))
        #expect(ms.firstFire(createdAt: created) == utc("2027-03-15T10:00:00.500Z"))
    }

    @Test func at() {
        let instant = utc("2027-03-15T10:00:00.250Z")
        let s = TimerSchedule(.at(instant))
        #expect(s.firstFire(createdAt: utc("2027-01-01T00:00:00Z")) == instant)
        #expect(s.next(after: utc("2027-03-15T10:00:00Z")) == instant)
        #expect(s.next(after: instant) == nil)
        #expect(s.next(after: utc("2027-01-01T00:00:00Z"), occurrencesSoFar: 1) == nil)
        #expect(Array(s.upcoming(createdAt: utc("2027-01-01T00:00:00Z"))) == [instant])
    }

    @Test func everyWithStart() {
        let start = utc("2027-01-01T00:00:00Z")
        let s = TimerSchedule(.every(interval: .seconds(5400), start: start, end: utc("2027-01-01T06:00:00Z")))
        #expect(s.firstFire(createdAt: utc("2026-12-31T00:00:00Z")) == start)
        #expect(s.firstFire(createdAt: start) == start, "start at creation fires at start")
        #expect(s.firstFire(createdAt: utc("2027-01-01T01:00:00Z")) == utc("2027-01-01T01:30:00Z"))
        #expect(s.firstFire(createdAt: utc("2027-01-01T01:30:00Z")) == utc("2027-01-01T01:30:00Z"))
        #expect(s.next(after: utc("2027-01-01T01:30:00Z")) == utc("2027-01-01T03:00:00Z"))
        #expect(s.next(after: utc("2026-01-01T00:00:00Z")) == start)
        let all = Array(s.upcoming(createdAt: utc("2026-12-31T00:00:00Z"))).map(RFC3339.format)
        #expect(all == ["2027-01-01T00:00:00Z", "2027-01-01T01:30:00Z", "2027-01-01T03:00:00Z",
                        "2027-01-01T04:30:00Z", "2027-01-01T06:00:00Z"], "end is inclusive")
    }

    @Test func everyWithoutStart() {
        let s = TimerSchedule(.every(interval: .milliseconds(1500), start: nil, end: nil), maxOccurrences: 3)
        let created = utc("2027-01-01T00:00:00Z")
        let all = Array(s.upcoming(createdAt: created)).map(RFC3339.format)
        #expect(all == ["2027-01-01T00:00:01.500Z", "2027-01-01T00:00:03Z", "2027-01-01T00:00:04.500Z"])
    }

    @Test func everyIsElapsedTimeAcrossDST() {
        // Fixed interval: 24h across Berlin's spring forward moves the wall-clock time by an hour.
        let s = TimerSchedule(
            .every(interval: .seconds(86_400), start: utc("2027-03-27T08:00:00Z"), end: nil), timeZone: "Europe/Berlin")
        let two = Array(s.occurrences(after: utc("2027-03-27T00:00:00Z")).prefix(2))
        #expect(two.map { local($0, "Europe/Berlin") } == ["2027-03-27 09:00:00 +01:00", "2027-03-28 10:00:00 +02:00"])
    }

    @Test func untilIsInclusive() {
        let s = TimerSchedule(.cron("0 * * * *"), until: utc("2027-01-01T03:00:00Z"))
        let all = Array(s.upcoming(createdAt: utc("2027-01-01T00:30:00Z"))).map(RFC3339.format)
        #expect(all == ["2027-01-01T01:00:00Z", "2027-01-01T02:00:00Z", "2027-01-01T03:00:00Z"])
        #expect(s.next(after: utc("2027-01-01T03:00:00Z")) == nil)
    }

    @Test func maxOccurrencesCountsAlreadyFired() {
        let s = TimerSchedule(.cron("@daily"), maxOccurrences: 3)
        let created = utc("2027-01-01T12:00:00Z")
        #expect(Array(s.upcoming(createdAt: created)).count == 3)
        #expect(s.next(after: created, occurrencesSoFar: 2) == utc("2027-01-02T00:00:00Z"))
        #expect(s.next(after: created, occurrencesSoFar: 3) == nil)
        #expect(Array(s.occurrences(after: created, occurrencesSoFar: 1)).count == 2)
    }

    @Test func endConditionsIgnoredByOneShots() {
        let s = TimerSchedule(.at(utc("2027-06-01T00:00:00Z")), until: utc("2027-01-01T00:00:00Z"), maxOccurrences: 1)
        #expect(s.firstFire(createdAt: utc("2026-01-01T00:00:00Z")) == utc("2027-06-01T00:00:00Z"))
        #expect(s.violations(now: utc("2026-06-01T00:00:00Z")).isEmpty)
    }

    @Test func isRecurring() {
        #expect(!TimerSchedule(.delay(.seconds(1))).isRecurring)
        #expect(!TimerSchedule(.at(Date())).isRecurring)
        #expect(!weekdays([.monday]).isRecurring)
        #expect(weekdays([.monday], recurring: true).isRecurring)
        #expect(TimerSchedule(.date(year: nil, month: 1, day: 1, timeOfDay: nil)).isRecurring)
        #expect(!TimerSchedule(.date(year: 2030, month: 1, day: 1, timeOfDay: nil)).isRecurring)
        #expect(cron("@daily").isRecurring)
        #expect(TimerSchedule(.every(interval: .seconds(5), start: nil, end: nil)).isRecurring)
    }

    @Test func mutatingKindRecompiles() {
        var s = cron("0 0 * * *")
        s.kind = .cron("0 12 * * *")
        s.timeZone = "Asia/Kolkata"
        #expect(s.next(after: utc("2027-01-01T00:00:00Z")) == utc("2027-01-01T06:30:00Z"))
        #expect(s == cron("0 12 * * *", "Asia/Kolkata"))
        #expect(s.hashValue == cron("0 12 * * *", "Asia/Kolkata").hashValue)
    }
}
