import Foundation
import SundialContract
import SundialProto
import SundialSchedule
import Testing

@Suite("Protobuf conversion")
struct ProtoConversionTests {
    static let roundTrip: [TimerSchedule] = [
        TimerSchedule(.delay(.seconds(259_200))),
        TimerSchedule(.delay(.milliseconds(1500)), jitter: .milliseconds(250)),
        TimerSchedule(.at(utc("2027-03-15T08:00:00Z"))),
        TimerSchedule(.at(utc("2027-03-15T08:00:00.125Z")), timeZone: "Europe/Berlin"),
        TimerSchedule(.weekdays(days: [.monday, .wednesday], timeOfDay: LocalTime(hour: 9), recurring: false),
            timeZone: "Europe/Berlin"),
        TimerSchedule(.weekdays(days: Set(Weekday.allCases), timeOfDay: nil, recurring: true),
            timeZone: "Australia/Lord_Howe", until: utc("2030-01-01T00:00:00Z"), maxOccurrences: 10,
            jitter: .seconds(30)),
        TimerSchedule(.date(year: nil, month: 2, day: 29, timeOfDay: LocalTime(hour: 23, minute: 59, second: 59)),
            timeZone: "Asia/Kolkata"),
        TimerSchedule(.date(year: 2030, month: 3, day: 15, timeOfDay: nil), timeZone: "America/New_York"),
        TimerSchedule(.cron("0 9 * * MON-FRI"), timeZone: "Europe/Berlin", maxOccurrences: 4_000_000_000),
        TimerSchedule(.cron("@hourly"), jitter: .seconds(59 * 60)),
        TimerSchedule(.every(interval: .seconds(5400), start: nil, end: nil)),
        TimerSchedule(.every(interval: .milliseconds(1500), start: utc("2027-01-01T00:00:00Z"),
            end: utc("2027-12-31T23:59:59.999Z")), until: utc("2027-06-01T00:00:00Z")),
    ]

    @Test(arguments: roundTrip)
    func roundTrips(_ s: TimerSchedule) throws {
        let back = try TimerSchedule(proto: s.proto)
        #expect(back == s)
        // Through the binary and JSON encodings, as on the wire.
        let binary = try Sundial_V1_Schedule(serializedBytes: s.proto.serializedBytes() as [UInt8])
        #expect(try TimerSchedule(proto: binary) == s)
        let json = try s.proto.jsonString()
        #expect(try Sundial_V1_Schedule.timerSchedule(json: json) == s)
    }

    @Test func fieldMapping() throws {
        let s = TimerSchedule(
            .weekdays(days: [.sunday, .monday], timeOfDay: LocalTime(hour: 9, minute: 30), recurring: true),
            timeZone: "Europe/Berlin", maxOccurrences: 3, jitter: .seconds(90))
        let p = s.proto
        #expect(p.weekdays.days == [.monday, .sunday])
        #expect(p.weekdays.timeOfDay.hour == 9 && p.weekdays.timeOfDay.minute == 30)
        #expect(p.weekdays.recurring)
        #expect(p.timeZone == "Europe/Berlin")
        #expect(p.end.maxOccurrences == 3 && !p.end.hasUntil)
        #expect(p.jitter.seconds == 90)
        #expect(!TimerSchedule(.cron("@daily")).proto.hasEnd)
        #expect(!TimerSchedule(.cron("@daily")).proto.hasJitter)
    }

    @Test func emptyZoneMeansUTC() throws {
        var p = Sundial_V1_Schedule()
        p.cron = .with { $0.expression = "@daily" }
        let s = try TimerSchedule(proto: p)
        #expect(s.timeZone == "UTC")
        #expect(s.next(after: utc("2027-01-01T12:00:00Z")) == utc("2027-01-02T00:00:00Z"))
    }

    @Test func jsonAsTheAPIAcceptsIt() throws {
        let s = try Sundial_V1_Schedule.timerSchedule(json: """
            {"weekdays": {"days": ["MONDAY", "WEDNESDAY"], "timeOfDay": {"hour": 9}, "recurring": true},
             "timeZone": "Europe/Berlin", "end": {"until": "2027-12-31T00:00:00Z", "maxOccurrences": 5},
             "jitter": "30s"}
            """)
        #expect(s.kind == .weekdays(days: [.monday, .wednesday], timeOfDay: LocalTime(hour: 9), recurring: true))
        #expect(s.until == utc("2027-12-31T00:00:00Z"))
        #expect(s.maxOccurrences == 5)
        #expect(s.jitter == .seconds(30))
        let e = try Sundial_V1_Schedule.timerSchedule(json: #"{"every": {"interval": "5400s", "start": "2027-01-01T00:00:00Z"}}"#)
        #expect(e.kind == .every(interval: .seconds(5400), start: utc("2027-01-01T00:00:00Z"), end: nil))
    }

    static func schedule(_ build: (inout Sundial_V1_Schedule) -> Void) -> Sundial_V1_Schedule {
        var p = Sundial_V1_Schedule()
        build(&p)
        return p
    }

    /// Invalid messages: (message, expected field, fragment of the reason).
    @Test(arguments: [
        (schedule { _ in }, "schedule", "exactly one kind"),
        (schedule { $0.timeZone = "Europe/Berlin" }, "schedule", "exactly one kind"),
        (schedule { $0.delay = .init() }, "schedule.delay.duration", "required"),
        (schedule { $0.at = .init() }, "schedule.at.instant", "required"),
        (schedule { $0.every = .init() }, "schedule.every.interval", "required"),
        (schedule { $0.every = .with { $0.interval = .init(seconds: 0, nanos: 500_000_000) } }, "schedule.every.interval", "at least 1s"),
        (schedule { $0.cron = .with { $0.expression = "0 0 30 2 *" } }, "schedule.cron.expression", "never fires"),
        (schedule { $0.cron = .with { $0.expression = "" } }, "schedule.cron.expression", "empty"),
        (schedule { $0.cron = .with { $0.expression = "@daily" }; $0.timeZone = "Mars/Base" }, "schedule.time_zone", "unknown"),
        (schedule { $0.weekdays = .init() }, "schedule.weekdays.days", "at least one"),
        (schedule { $0.weekdays = .with { $0.days = [.unspecified] } }, "schedule.weekdays.days", "WEEKDAY_UNSPECIFIED"),
        (schedule { $0.weekdays = .with { $0.days = [.UNRECOGNIZED(9)] } }, "schedule.weekdays.days", "unknown weekday"),
        (schedule { $0.weekdays = .with { $0.days = [.monday]; $0.timeOfDay = .with { $0.hour = 24 } } },
            "schedule.weekdays.time_of_day.hour", "between 0 and 23"),
        (schedule { $0.date = .with { $0.month = 2; $0.day = 30 } }, "schedule.date.day", "between 1 and 29"),
        (schedule { $0.date = .init() }, "schedule.date.month", "between 1 and 12"),
        (schedule { $0.date = .with { $0.year = 2029; $0.month = 2; $0.day = 29 } }, "schedule.date.day", "between 1 and 28"),
        (schedule { $0.date = .with { $0.year = 10000; $0.month = 1; $0.day = 1 } }, "schedule.date.year", "between 1 and 9999"),
        (schedule { $0.delay = .with { $0.duration = .init(seconds: -5) } }, "schedule.delay.duration", "negative"),
        (schedule { $0.delay = .with { $0.duration = .init(seconds: 5, nanos: -1) } }, "schedule.delay.duration", "not a valid duration"),
        (schedule { $0.at = .with { $0.instant = .init(seconds: 0, nanos: -1) } }, "schedule.at.instant", "not a valid timestamp"),
        (schedule { $0.cron = .with { $0.expression = "*/5 * * * *" }; $0.jitter = .init(seconds: 300) }, "schedule.jitter", "smaller than"),
        (schedule { $0.cron = .with { $0.expression = "@daily" }; $0.end = .with { $0.until = .init(seconds: 253_402_300_800) } },
            "schedule.end.until", "not a valid timestamp"),
    ] as [(Sundial_V1_Schedule, String, String)])
    func rejects(_ p: Sundial_V1_Schedule, _ field: String, _ fragment: String) {
        do {
            let s = try TimerSchedule(proto: p)
            Issue.record("accepted as \(s)")
        } catch {
            let v = error.violations.first { $0.field == field }
            #expect(v != nil, "got \(error)")
            #expect(v?.reason.contains(fragment) == true, "got \(error)")
        }
    }

    @Test func malformedJSON() {
        #expect(throws: ScheduleValidationError.self) { try Sundial_V1_Schedule.timerSchedule(json: "{not json") }
        #expect(throws: ScheduleValidationError.self) { try Sundial_V1_Schedule.timerSchedule(json: #"{"cron": {"expression": 5}}"#) }
        #expect(throws: ScheduleValidationError.self) {
            try Sundial_V1_Schedule.timerSchedule(json: #"{"weekdays": {"days": ["FUNDAY"]}}"#)
        }
    }

    @Test func timeDependentRulesAfterConversion() throws {
        var p = Sundial_V1_Schedule()
        p.at = .with { $0.instant = .init(date: utc("2020-01-01T00:00:00Z")) }
        let s = try TimerSchedule(proto: p)  // structure is fine…
        #expect(throws: ScheduleValidationError.self) { try s.validate(now: utc("2027-01-01T00:00:00Z")) }  // …but it is past
    }
}
