import Foundation
import SundialProto
import SundialSchedule
import SwiftProtobuf

// Conversion between the wire message `sundial.v1.Schedule` and `TimerSchedule`.
//
// Proto → library checks the message's structure (exactly one kind, required sub-fields,
// well-formed timestamps/durations, weekday enum values) and every time-independent rule
// (zone, cron syntax, ranges, jitter vs interval). Time-dependent rules (once-only date or
// `at` in the past, `until` in the past) need the creation time: call
// `TimerSchedule.validate(now:)` afterwards.

extension TimerSchedule {
    /// Converts and validates a wire schedule. Field paths in violations are rooted at
    /// "schedule" (e.g. "schedule.cron.expression").
    public init(proto p: Sundial_V1_Schedule) throws(ScheduleValidationError) {
        var problems: [ScheduleViolation] = []
        func add(_ field: String, _ reason: String) { problems.append(ScheduleViolation(field: field, reason: reason)) }

        func date(_ t: Google_Protobuf_Timestamp, _ field: String) -> Date? {
            // RFC 3339 range 0001-01-01 … 9999-12-31, nanos in [0, 1e9).
            guard (-62_135_596_800...253_402_300_799).contains(t.seconds), (0..<1_000_000_000).contains(t.nanos) else {
                add(field, "is not a valid timestamp (seconds \(t.seconds), nanos \(t.nanos))")
                return nil
            }
            return t.date
        }
        func duration(_ d: Google_Protobuf_Duration, _ field: String) -> Duration? {
            let signsAgree = (d.seconds >= 0 && d.nanos >= 0) || (d.seconds <= 0 && d.nanos <= 0)
            guard (-315_576_000_000...315_576_000_000).contains(d.seconds), abs(d.nanos) < 1_000_000_000, signsAgree else {
                add(field, "is not a valid duration (seconds \(d.seconds), nanos \(d.nanos))")
                return nil
            }
            return Duration(d)
        }
        func localTime(_ has: Bool, _ t: Sundial_V1_LocalTime) -> LocalTime? {
            has ? LocalTime(hour: Int(t.hour), minute: Int(t.minute), second: Int(t.second)) : nil
        }

        var kind: Kind?
        switch p.kind {
        case nil:
            add("schedule", "must set exactly one kind: delay, at, weekdays, date, cron or every")
        case .delay(let d)?:
            if !d.hasDuration {
                add("schedule.delay.duration", "is required")
            } else if let v = duration(d.duration, "schedule.delay.duration") {
                kind = .delay(v)
            }
        case .at(let a)?:
            if !a.hasInstant {
                add("schedule.at.instant", "is required")
            } else if let v = date(a.instant, "schedule.at.instant") {
                kind = .at(v)
            }
        case .weekdays(let w)?:
            var days = Set<Weekday>()
            var bad = false
            for d in w.days {
                if let day = Weekday(rawValue: d.rawValue) {
                    days.insert(day)
                } else {
                    bad = true
                    add(
                        "schedule.weekdays.days",
                        d == .unspecified ? "WEEKDAY_UNSPECIFIED is not a weekday" : "unknown weekday value \(d.rawValue)")
                }
            }
            if !bad { kind = .weekdays(days: days, timeOfDay: localTime(w.hasTimeOfDay, w.timeOfDay), recurring: w.recurring) }
        case .date(let d)?:
            kind = .date(
                year: d.year == 0 ? nil : Int(d.year), month: Int(d.month), day: Int(d.day),
                timeOfDay: localTime(d.hasTimeOfDay, d.timeOfDay))
        case .cron(let c)?:
            kind = .cron(c.expression)
        case .every(let e)?:
            var start: Date?
            var end: Date?
            if e.hasStart { start = date(e.start, "schedule.every.start") }
            if e.hasEnd { end = date(e.end, "schedule.every.end") }
            if !e.hasInterval {
                add("schedule.every.interval", "is required")
            } else if let iv = duration(e.interval, "schedule.every.interval"), (!e.hasStart || start != nil),
                (!e.hasEnd || end != nil)
            {
                kind = .every(interval: iv, start: start, end: end)
            }
        }

        var until: Date?
        var maxOccurrences: UInt64?
        if p.hasEnd {
            if p.end.hasUntil { until = date(p.end.until, "schedule.end.until") }
            if p.end.maxOccurrences > 0 { maxOccurrences = UInt64(p.end.maxOccurrences) }
        }
        var jitter: Duration?
        if p.hasJitter { jitter = duration(p.jitter, "schedule.jitter") }

        guard let kind else {
            throw ScheduleValidationError(violations: problems)
        }
        let schedule = TimerSchedule(
            kind, timeZone: p.timeZone.isEmpty ? "UTC" : p.timeZone, until: until, maxOccurrences: maxOccurrences,
            jitter: jitter)
        problems += schedule.violations(now: nil)
        if !problems.isEmpty { throw ScheduleValidationError(violations: problems) }
        self = schedule
    }

    /// The wire form. `TimerSchedule(proto: s.proto) == s` for every valid schedule.
    public var proto: Sundial_V1_Schedule {
        var p = Sundial_V1_Schedule()
        func localTime(_ t: LocalTime) -> Sundial_V1_LocalTime {
            var l = Sundial_V1_LocalTime()
            l.hour = UInt32(clamping: t.hour)
            l.minute = UInt32(clamping: t.minute)
            l.second = UInt32(clamping: t.second)
            return l
        }
        switch kind {
        case .delay(let d):
            var m = Sundial_V1_DelaySchedule()
            m.duration = Google_Protobuf_Duration(rounding: d)
            p.delay = m
        case .at(let instant):
            var m = Sundial_V1_AtSchedule()
            m.instant = Google_Protobuf_Timestamp(date: instant)
            p.at = m
        case .weekdays(let days, let tod, let recurring):
            var m = Sundial_V1_WeekdaysSchedule()
            m.days = days.sorted().map { Sundial_V1_Weekday(rawValue: $0.rawValue) ?? .unspecified }
            if let tod { m.timeOfDay = localTime(tod) }
            m.recurring = recurring
            p.weekdays = m
        case .date(let year, let month, let day, let tod):
            var m = Sundial_V1_DateSchedule()
            m.year = UInt32(clamping: year ?? 0)
            m.month = UInt32(clamping: month)
            m.day = UInt32(clamping: day)
            if let tod { m.timeOfDay = localTime(tod) }
            p.date = m
        case .cron(let expression):
            var m = Sundial_V1_CronSchedule()
            m.expression = expression
            p.cron = m
        case .every(let interval, let start, let end):
            var m = Sundial_V1_EverySchedule()
            m.interval = Google_Protobuf_Duration(rounding: interval)
            if let start { m.start = Google_Protobuf_Timestamp(date: start) }
            if let end { m.end = Google_Protobuf_Timestamp(date: end) }
            p.every = m
        }
        p.timeZone = timeZone
        if until != nil || maxOccurrences != nil {
            var e = Sundial_V1_EndCondition()
            if let until { e.until = Google_Protobuf_Timestamp(date: until) }
            if let maxOccurrences { e.maxOccurrences = UInt32(clamping: maxOccurrences) }
            p.end = e
        }
        if let jitter { p.jitter = Google_Protobuf_Duration(rounding: jitter) }
        return p
    }
}

extension Sundial_V1_Schedule {
    /// Same as `TimerSchedule(proto:)`.
    public func timerSchedule() throws(ScheduleValidationError) -> TimerSchedule {
        try TimerSchedule(proto: self)
    }

    /// Parses the protobuf JSON form the API accepts and converts it.
    public static func timerSchedule(json: String) throws(ScheduleValidationError) -> TimerSchedule {
        let message: Sundial_V1_Schedule
        do {
            message = try Sundial_V1_Schedule(jsonString: json)
        } catch {
            throw ScheduleValidationError(field: "schedule", reason: "is not valid Schedule JSON: \(error)")
        }
        return try TimerSchedule(proto: message)
    }
}
