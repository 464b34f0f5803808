import Foundation
import Testing

@testable import SundialSchedule

@Suite("Cron expressions")
struct CronTests {
    static let nextCases: [OccurrenceCase] = [
        OccurrenceCase("every minute", cron("* * * * *"), after: "2027-01-01T00:00:30Z",
            ["2027-01-01T00:01:00Z", "2027-01-01T00:02:00Z"]),
        OccurrenceCase("strictly after an exact match", cron("0 * * * *"), after: "2027-01-01T05:00:00Z",
            ["2027-01-01T06:00:00Z"]),
        OccurrenceCase("fractional start", cron("* * * * * *"), after: "2027-01-01T00:00:00.500Z",
            ["2027-01-01T00:00:01Z", "2027-01-01T00:00:02Z"]),
        OccurrenceCase("6 fields: leading seconds", cron("30 */5 * * * *"), after: "2027-01-01T00:00:00Z",
            ["2027-01-01T00:00:30Z", "2027-01-01T00:05:30Z", "2027-01-01T00:10:30Z"]),
        OccurrenceCase("ranges, lists, steps", cron("5,10-12 8-10/2 * * *"), after: "2027-01-01T08:11:00Z",
            ["2027-01-01T08:12:00Z", "2027-01-01T10:05:00Z", "2027-01-01T10:10:00Z", "2027-01-01T10:11:00Z",
             "2027-01-01T10:12:00Z", "2027-01-02T08:05:00Z"]),
        OccurrenceCase("n/step means n-max/step", cron("5/20 0 * * *"), after: "2027-01-01T00:00:00Z",
            ["2027-01-01T00:05:00Z", "2027-01-01T00:25:00Z", "2027-01-01T00:45:00Z", "2027-01-02T00:05:00Z"]),
        OccurrenceCase("names and weekday range", cron("0 9 * JAN-MAR MON-FRI"), after: "2027-03-31T10:00:00Z",
            ["2028-01-03T09:00:00Z"]),
        OccurrenceCase("lowercase names", cron("0 9 * * sun"), after: "2027-01-01T00:00:00Z",
            ["2027-01-03T09:00:00Z"]),
        OccurrenceCase("day-of-week 7 is Sunday", cron("0 0 * * 7"), after: "2027-01-01T00:00:00Z",
            ["2027-01-03T00:00:00Z", "2027-01-10T00:00:00Z"]),
        OccurrenceCase("day-of-week 5-7 is Fri,Sat,Sun", cron("0 0 * * 5-7"), after: "2027-01-01T00:00:00Z",
            ["2027-01-02T00:00:00Z", "2027-01-03T00:00:00Z", "2027-01-08T00:00:00Z"]),
        OccurrenceCase("DOM and DOW both restricted: OR", cron("0 0 13 * 5"), after: "2027-01-01T00:00:00Z",
            ["2027-01-08T00:00:00Z", "2027-01-13T00:00:00Z", "2027-01-15T00:00:00Z"]),
        OccurrenceCase("*/2 day-of-month is restricted (no Vixie star bug)", cron("0 0 */10 * 1"),
            after: "2027-01-01T00:00:00Z",
            ["2027-01-04T00:00:00Z", "2027-01-11T00:00:00Z", "2027-01-18T00:00:00Z", "2027-01-21T00:00:00Z"]),
        OccurrenceCase("bare * day-of-month: weekday only", cron("0 0 * * 1"), after: "2027-01-01T00:00:00Z",
            ["2027-01-04T00:00:00Z", "2027-01-11T00:00:00Z"]),
        OccurrenceCase("? is *", cron("0 0 ? * 1"), after: "2027-01-01T00:00:00Z",
            ["2027-01-04T00:00:00Z"]),
        OccurrenceCase("L: last day of month", cron("0 12 L * *"), after: "2028-01-31T13:00:00Z",
            ["2028-02-29T12:00:00Z", "2028-03-31T12:00:00Z", "2028-04-30T12:00:00Z"]),
        OccurrenceCase("L in a list", cron("0 0 1,15,L 2 *"), after: "2027-01-01T00:00:00Z",
            ["2027-02-01T00:00:00Z", "2027-02-15T00:00:00Z", "2027-02-28T00:00:00Z", "2028-02-01T00:00:00Z"]),
        OccurrenceCase("31st skips short months", cron("0 0 31 * *"), after: "2027-01-31T00:00:00Z",
            ["2027-03-31T00:00:00Z", "2027-05-31T00:00:00Z"]),
        OccurrenceCase("Feb 29 every 4 years", cron("0 0 29 2 *"), after: "2024-02-29T00:00:00Z",
            ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        OccurrenceCase("Feb 29 skips 2100 (8-year gap)", cron("0 0 29 2 *"), after: "2096-03-01T00:00:00Z",
            ["2104-02-29T00:00:00Z"]),
        OccurrenceCase("Feb 29 or Mondays in Feb", cron("0 0 29 2 1"), after: "2027-02-20T00:00:00Z",
            ["2027-02-22T00:00:00Z", "2028-02-07T00:00:00Z"]),
        OccurrenceCase("year boundary", cron("59 23 31 12 *"), after: "2027-12-31T23:59:00Z",
            ["2028-12-31T23:59:00Z"]),
        OccurrenceCase("@yearly", cron("@yearly"), after: "2027-06-01T00:00:00Z", ["2028-01-01T00:00:00Z"]),
        OccurrenceCase("@annually", cron("@annually"), after: "2027-06-01T00:00:00Z", ["2028-01-01T00:00:00Z"]),
        OccurrenceCase("@monthly", cron("@monthly"), after: "2027-06-01T00:00:00Z", ["2027-07-01T00:00:00Z"]),
        OccurrenceCase("@weekly (Sunday)", cron("@weekly"), after: "2027-06-01T00:00:00Z", ["2027-06-06T00:00:00Z"]),
        OccurrenceCase("@daily", cron("@daily"), after: "2027-06-01T00:00:00Z", ["2027-06-02T00:00:00Z"]),
        OccurrenceCase("@midnight", cron("@midnight"), after: "2027-06-01T00:00:00Z", ["2027-06-02T00:00:00Z"]),
        OccurrenceCase("@hourly", cron("@HOURLY"), after: "2027-06-01T00:00:00Z", ["2027-06-01T01:00:00Z"]),
        OccurrenceCase("time zone applies", cron("0 9 * * *", "Asia/Kolkata"), after: "2027-06-01T00:00:00Z",
            ["2027-06-01T03:30:00Z", "2027-06-02T03:30:00Z"]),
    ]

    @Test(arguments: nextCases)
    func next(_ c: OccurrenceCase) {
        let got = Array(c.schedule.occurrences(after: utc(c.after)).prefix(c.expected.count))
        #expect(got.map(RFC3339.format) == c.expected, "\(c.name)")
    }

    /// Invalid expressions: (expression, cron field at fault or nil, fragment of the message).
    @Test(arguments: [
        ("", nil, "empty"),
        ("* * * *", nil, "expected 5 fields"),
        ("* * * * * * *", nil, "got 7"),
        ("61 * * * *", "minute", "out of range 0-59"),
        ("* 24 * * *", "hour", "out of range 0-23"),
        ("* * 0 * *", "day-of-month", "out of range 1-31"),
        ("* * 32 * *", "day-of-month", "out of range"),
        ("* * * 13 *", "month", "out of range 1-12"),
        ("* * * * 8", "day-of-week", "out of range 0-7"),
        ("60 * * * * *", "second", "out of range"),
        ("*/0 * * * *", "minute", "step"),
        ("*/x * * * *", "minute", "step"),
        ("5-1 * * * *", "minute", "backwards"),
        ("1,,2 * * * *", "minute", "empty list element"),
        ("* * * FOO *", "month", "not a valid month"),
        ("* * * * MONDAY", "day-of-week", "not a valid"),
        ("* * L * L", "day-of-week", "not supported"),
        ("* * 15W * *", "day-of-month", "not supported"),
        ("* * * * 5#3", "day-of-week", "not supported"),
        ("? * * * *", "minute", "not a valid"),
        ("0 0 ?/2 * *", "day-of-month", "step"),
        ("0 0 30 2 *", "day-of-month", "never fires"),
        ("0 0 31 4,6,9,11 *", "day-of-month", "never fires"),
        ("@reboot", nil, "unknown alias"),
        ("@every 5m", nil, "unknown alias"),
        ("0 0 * * * 2027", "day-of-week", "out of range"),
    ] as [(String, String?, String)])
    func invalid(_ expression: String, _ field: String?, _ fragment: String) {
        do {
            let e = try CronExpression(expression)
            Issue.record("\"\(expression)\" parsed as \(e)")
        } catch {
            #expect(error.field == field, "\(expression): \(error)")
            #expect(error.description.contains(fragment), "\(expression): \(error)")
        }
    }

    @Test(arguments: [
        "0 0 29 2 *", "0 0 30 2 1", "0 0 L 2 *", "0 0 31 1-12 *", "*/5 * * * *", "0 0 1 * *",
        "  0 9 * * MON-FRI  ", "0\t9 * * *", "00 09 * * 1", "0-59/15 * * * *", "* * * * * *",
    ])
    func valid(_ expression: String) throws {
        let e = try CronExpression(expression)
        #expect(e.next(after: utc("2027-01-01T00:00:00Z"), in: zone("UTC")) != nil)
    }

    @Test func sixFieldDetection() throws {
        #expect(try CronExpression("* * * * *").hasSeconds == false)
        #expect(try CronExpression("0 * * * * *").hasSeconds == true)
        #expect(try CronExpression(" @daily ").source == "@daily")
    }

    /// A once-in-4-years expression must be answered by skipping fields, not by iterating
    /// minutes: 2,000 searches (each crossing up to 8 years) must stay far below a second even
    /// in a debug build. Minute-by-minute iteration would need ~2M steps per search.
    @Test(arguments: ["0 0 29 2 *", "0 0 29 2 1", "59 23 29 2 *", "0 0 29 2 * ", "0 0 0 29 2 *"])
    func rareExpressionsAreFast(_ expression: String) throws {
        let s = TimerSchedule(.cron(expression), timeZone: "Europe/Berlin")
        var rng = SplitMix64(seed: 29)
        let clock = ContinuousClock()
        var count = 0
        let elapsed = clock.measure {
            for _ in 0..<2000 {
                let start = Date(timeIntervalSince1970: Double(rng.int(946_684_800...4_102_444_800)))
                if s.next(after: start) != nil { count += 1 }
            }
        }
        #expect(count == 2000)
        #expect(elapsed < .seconds(3), "2000 searches took \(elapsed)")
    }

    @Test func shortestInterval() throws {
        #expect(try CronExpression("*/15 * * * *").shortestInterval == 900)
        #expect(try CronExpression("0,10,50 * * * *").shortestInterval == 600)
        #expect(try CronExpression("0 0,23 * * *").shortestInterval == 3600)
        #expect(try CronExpression("0 9 * * *").shortestInterval == 86_400)
        #expect(try CronExpression("0 9 * * MON,WED").shortestInterval == 2 * 86_400)
        #expect(try CronExpression("0 9 * * MON").shortestInterval == 7 * 86_400)
        #expect(try CronExpression("0 0 1 * *").shortestInterval == 28 * 86_400)
        #expect(try CronExpression("*/20 * * * * *").shortestInterval == 20)
    }
}
