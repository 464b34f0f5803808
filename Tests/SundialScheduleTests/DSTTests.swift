import Foundation
import Testing

@testable import SundialSchedule

/// One row: the schedule, the instant to search after, and the expected next occurrences (UTC).
struct OccurrenceCase: Sendable, CustomTestStringConvertible {
    let name: String
    let schedule: TimerSchedule
    let after: String
    let expected: [String]

    init(_ name: String, _ schedule: TimerSchedule, after: String, _ expected: [String]) {
        self.name = name
        self.schedule = schedule
        self.after = after
        self.expected = expected
    }

    var testDescription: String { name }
}

func cron(_ expression: String, _ zone: String = "UTC") -> TimerSchedule {
    TimerSchedule(.cron(expression), timeZone: zone)
}

/// DST rules: a nonexistent local time fires at the first instant after the gap; an ambiguous
/// one fires once, at its first instant; cron never double-fires in a repeated hour and never
/// skips a day. Transition instants were read off Python's zoneinfo (same tzdata).
@Suite("DST rules")
struct DSTTests {
    static let cases: [OccurrenceCase] = [
        // Europe/Berlin: 2027-03-28 01:00Z 02:00 CET → 03:00 CEST; 2027-10-31 01:00Z 03:00 CEST → 02:00 CET.
        OccurrenceCase(
            "Berlin spring: 02:30 does not exist → 03:00 CEST, next day normal",
            cron("30 2 * * *", "Europe/Berlin"), after: "2027-03-27T00:00:00Z",
            ["2027-03-27T01:30:00Z", "2027-03-28T01:00:00Z", "2027-03-29T00:30:00Z"]),
        OccurrenceCase(
            "Berlin spring: four nonexistent times collapse into one fire",
            cron("*/15 2 * * *", "Europe/Berlin"), after: "2027-03-28T00:00:00Z",
            ["2027-03-28T01:00:00Z", "2027-03-29T00:00:00Z", "2027-03-29T00:15:00Z"]),
        OccurrenceCase(
            "Berlin fall: 02:30 is ambiguous → first instant only",
            cron("30 2 * * *", "Europe/Berlin"), after: "2027-10-30T00:00:00Z",
            ["2027-10-30T00:30:00Z", "2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z"]),
        OccurrenceCase(
            "Berlin fall: hourly skips the repeated 02:00 CET",
            cron("0 * * * *", "Europe/Berlin"), after: "2027-10-30T22:30:00Z",
            ["2027-10-30T23:00:00Z", "2027-10-31T00:00:00Z", "2027-10-31T02:00:00Z", "2027-10-31T03:00:00Z"]),
        OccurrenceCase(
            "Berlin fall: search starting inside the repeated hour",
            cron("*/20 * * * *", "Europe/Berlin"), after: "2027-10-31T01:10:00Z",
            ["2027-10-31T02:00:00Z", "2027-10-31T02:20:00Z"]),
        OccurrenceCase(
            "Berlin weekly Sunday 02:30 across the gap",
            TimerSchedule(
                .weekdays(days: [.sunday], timeOfDay: LocalTime(hour: 2, minute: 30), recurring: true),
                timeZone: "Europe/Berlin"), after: "2027-03-21T12:00:00Z",
            ["2027-03-28T01:00:00Z", "2027-04-04T00:30:00Z"]),
        OccurrenceCase(
            "Berlin yearly 10-31 02:30 (ambiguous in 2027, CET in 2028)",
            TimerSchedule(
                .date(year: nil, month: 10, day: 31, timeOfDay: LocalTime(hour: 2, minute: 30)),
                timeZone: "Europe/Berlin"), after: "2027-01-01T00:00:00Z",
            ["2027-10-31T00:30:00Z", "2028-10-31T01:30:00Z"]),
        // America/New_York: 2027-03-14 07:00Z 02:00 EST → 03:00 EDT; 2027-11-07 06:00Z 02:00 EDT → 01:00 EST.
        OccurrenceCase(
            "New York spring: 02:30 → 03:00 EDT",
            cron("30 2 * * *", "America/New_York"), after: "2027-03-13T12:00:00Z",
            ["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z"]),
        OccurrenceCase(
            "New York fall: 01:30 fires once (EDT)",
            cron("30 1 * * *", "America/New_York"), after: "2027-11-06T12:00:00Z",
            ["2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z"]),
        OccurrenceCase(
            "New York fall: 01:00 EDT and 02:00 EST",
            cron("0 1,2 * * *", "America/New_York"), after: "2027-11-06T12:00:00Z",
            ["2027-11-07T05:00:00Z", "2027-11-07T07:00:00Z", "2027-11-08T06:00:00Z"]),
        OccurrenceCase(
            "New York weekdays 09:00 across spring forward",
            cron("0 9 * * 1-5", "America/New_York"), after: "2027-03-12T00:00:00Z",
            ["2027-03-12T14:00:00Z", "2027-03-15T13:00:00Z"]),
        // Australia/Lord_Howe (30-minute shift): 2027-04-03 15:00Z 02:00 (+11) → 01:30 (+10:30);
        // 2027-10-02 15:30Z 02:00 (+10:30) → 02:30 (+11).
        OccurrenceCase(
            "Lord Howe spring: 02:15 does not exist → 02:30 (+11)",
            cron("15 2 * * *", "Australia/Lord_Howe"), after: "2027-10-01T12:00:00Z",
            ["2027-10-01T15:45:00Z", "2027-10-02T15:30:00Z", "2027-10-03T15:15:00Z"]),
        OccurrenceCase(
            "Lord Howe fall: 01:45 is ambiguous → first instant (+11)",
            cron("45 1 * * *", "Australia/Lord_Howe"), after: "2027-04-02T12:00:00Z",
            ["2027-04-02T14:45:00Z", "2027-04-03T14:45:00Z", "2027-04-04T15:15:00Z"]),
        OccurrenceCase(
            "Lord Howe fall: every 10 minutes skips the repeated half hour",
            cron("*/10 * * * *", "Australia/Lord_Howe"), after: "2027-04-03T14:25:00Z",
            ["2027-04-03T14:30:00Z", "2027-04-03T14:40:00Z", "2027-04-03T14:50:00Z", "2027-04-03T15:30:00Z",
             "2027-04-03T15:40:00Z"]),
        OccurrenceCase(
            "Lord Howe weekdays Sunday 02:10 in the gap",
            TimerSchedule(
                .weekdays(days: [.sunday], timeOfDay: LocalTime(hour: 2, minute: 10), recurring: true),
                timeZone: "Australia/Lord_Howe"), after: "2027-09-30T00:00:00Z",
            ["2027-10-02T15:30:00Z", "2027-10-09T15:10:00Z"]),
        // Asia/Kolkata: +05:30 all year.
        OccurrenceCase(
            "Kolkata daily 02:30 (no DST, half-hour offset)",
            cron("30 2 * * *", "Asia/Kolkata"), after: "2027-03-27T00:00:00Z",
            ["2027-03-27T21:00:00Z", "2027-03-28T21:00:00Z"]),
        OccurrenceCase(
            "Kolkata Feb 29 midnight (leap years only)",
            cron("0 0 29 2 *", "Asia/Kolkata"), after: "2027-01-01T00:00:00Z",
            ["2028-02-28T18:30:00Z", "2032-02-28T18:30:00Z"]),
        // America/Santiago: midnight transitions. 2027-09-05 04:00Z 00:00 (-04) → 01:00 (-03);
        // 2027-04-04 03:00Z 24:00 (-03) → 23:00 (-04).
        OccurrenceCase(
            "Santiago: midnight does not exist → 01:00",
            cron("@daily", "America/Santiago"), after: "2027-09-04T12:00:00Z",
            ["2027-09-05T04:00:00Z", "2027-09-06T03:00:00Z"]),
        OccurrenceCase(
            "Santiago weekdays Sunday without time of day",
            TimerSchedule(.weekdays(days: [.sunday], timeOfDay: nil, recurring: true), timeZone: "America/Santiago"),
            after: "2027-09-01T12:00:00Z",
            ["2027-09-05T04:00:00Z", "2027-09-12T03:00:00Z"]),
        OccurrenceCase(
            "Santiago: 23:30 repeated Saturday fires once",
            cron("30 23 * * *", "America/Santiago"), after: "2027-04-03T12:00:00Z",
            ["2027-04-04T02:30:00Z", "2027-04-05T03:30:00Z"]),
        // Pacific/Chatham (+12:45/+13:45): 2027-09-25 14:00Z 02:45 → 03:45.
        OccurrenceCase(
            "Chatham: 03:00 does not exist → 03:45",
            cron("0 3 * * *", "Pacific/Chatham"), after: "2027-09-25T00:00:00Z",
            ["2027-09-25T14:00:00Z", "2027-09-26T13:15:00Z"]),
        // America/St_Johns (-03:30/-02:30): 2027-11-07 04:30Z 02:00 → 01:00.
        OccurrenceCase(
            "St John's fall: 01:30 once",
            cron("30 1 * * *", "America/St_Johns"), after: "2027-11-06T12:00:00Z",
            ["2027-11-07T04:00:00Z", "2027-11-08T05:00:00Z"]),
    ]

    @Test(arguments: cases)
    func occurrences(_ c: OccurrenceCase) {
        let got = Array(c.schedule.occurrences(after: utc(c.after)).prefix(c.expected.count))
        #expect(got.map(RFC3339.format) == c.expected, "\(c.name)")
    }

    @Test("transition instants match the tables", arguments: [
        ("Europe/Berlin", "2027-03-28T01:00:00Z", 3600, 7200),
        ("Europe/Berlin", "2027-10-31T01:00:00Z", 7200, 3600),
        ("America/New_York", "2027-03-14T07:00:00Z", -18000, -14400),
        ("America/New_York", "2027-11-07T06:00:00Z", -14400, -18000),
        ("Australia/Lord_Howe", "2027-04-03T15:00:00Z", 39600, 37800),
        ("Australia/Lord_Howe", "2027-10-02T15:30:00Z", 37800, 39600),
        ("America/Santiago", "2027-09-05T04:00:00Z", -14400, -10800),
    ])
    func transitions(_ zoneName: String, _ at: String, _ before: Int, _ after: Int) {
        let t = utc(at)
        #expect(offset(zoneName, t.addingTimeInterval(-1)) == before)
        #expect(offset(zoneName, t) == after)
    }

    /// Resolution of single wall-clock readings, including the gap and overlap edges.
    @Test(arguments: [
        ("Europe/Berlin", "2027-03-28T01:59:59Z", "2027-03-28T00:59:59Z"),  // local literal, expected UTC
        ("Europe/Berlin", "2027-03-28T02:00:00Z", "2027-03-28T01:00:00Z"),
        ("Europe/Berlin", "2027-03-28T02:59:59Z", "2027-03-28T01:00:00Z"),
        ("Europe/Berlin", "2027-03-28T03:00:00Z", "2027-03-28T01:00:00Z"),
        ("Europe/Berlin", "2027-03-28T03:00:01Z", "2027-03-28T01:00:01Z"),
        ("Europe/Berlin", "2027-10-31T02:00:00Z", "2027-10-31T00:00:00Z"),
        ("Europe/Berlin", "2027-10-31T02:59:59Z", "2027-10-31T00:59:59Z"),
        ("Europe/Berlin", "2027-10-31T03:00:00Z", "2027-10-31T02:00:00Z"),
        ("Australia/Lord_Howe", "2027-10-03T02:00:00Z", "2027-10-02T15:30:00Z"),
        ("Australia/Lord_Howe", "2027-10-03T02:29:59Z", "2027-10-02T15:30:00Z"),
        ("Australia/Lord_Howe", "2027-10-03T02:30:00Z", "2027-10-02T15:30:00Z"),
        ("Australia/Lord_Howe", "2027-04-04T01:30:00Z", "2027-04-03T14:30:00Z"),
        ("Australia/Lord_Howe", "2027-04-04T02:00:00Z", "2027-04-03T15:30:00Z"),
        ("Asia/Kolkata", "2027-03-28T02:30:00Z", "2027-03-27T21:00:00Z"),
        ("America/New_York", "2027-11-07T01:00:00Z", "2027-11-07T05:00:00Z"),
    ])
    func resolve(_ zoneName: String, _ localLiteral: String, _ expected: String) {
        let rules = ZoneRules(zone(zoneName))
        let l = utc(localLiteral).unixFloor
        #expect(Date(unix: rules.resolve(local: l)) == utc(expected))
    }

    /// Fall back: searching from every second of the repeated hour never yields an instant
    /// inside it, and never goes backwards.
    @Test(arguments: ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/St_Johns"])
    func noDoubleFireInRepeatedHour(_ zoneName: String) throws {
        let tz = zone(zoneName)
        let t = try #require(tz.nextDaylightSavingTimeTransition(after: utc("2027-04-01T00:00:00Z")).flatMap { first in
            // The fall-back transition of 2027 (offset decreases).
            tz.secondsFromGMT(for: first) < tz.secondsFromGMT(for: first.addingTimeInterval(-1))
                ? first : tz.nextDaylightSavingTimeTransition(after: first)
        })
        let shift = Double(tz.secondsFromGMT(for: t.addingTimeInterval(-1)) - tz.secondsFromGMT(for: t))
        #expect(shift > 0)
        let s = TimerSchedule(.cron("* * * * * *"), timeZone: zoneName)
        var a = t.addingTimeInterval(-5)
        // The next fire after the last pre-transition second is the end of the repeated span.
        var fires: [Date] = []
        for _ in 0..<10 {
            let n = try #require(s.next(after: a))
            fires.append(n)
            a = n
        }
        #expect(fires.prefix(5).map { $0.timeIntervalSince(t) } == [-4, -3, -2, -1, shift])
        for probe in stride(from: 0.0, to: shift, by: 97) {
            let n = try #require(s.next(after: t.addingTimeInterval(probe)))
            #expect(n == t.addingTimeInterval(shift), "after transition+\(probe)s")
        }
    }
}
