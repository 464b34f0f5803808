import ArgumentParser
import Foundation
import SundialContract
import SundialProto
import SundialSchedule

/// `sundial schedule …`: offline tools for schedules (no server needed).
public struct ScheduleCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Inspect schedules offline.",
        subcommands: [SchedulePreviewCommand.self])

    public init() {}
}

/// `sundial schedule preview`: prints upcoming fire times of a schedule given as flags or as
/// the protobuf JSON the API accepts.
struct SchedulePreviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preview",
        abstract: "Print the next fire times of a schedule, one per line: UTC instant, then local time.",
        discussion: """
            Give exactly one kind: --cron, --weekdays, --date, --every, --in (or --delay), --at, or --schedule-json.
            Examples:
              sundial schedule preview --cron '0 9 * * MON-FRI' --time-zone Europe/Berlin
              sundial schedule preview --weekdays mon,wed --at-time 09:00 --recurring
              sundial schedule preview --date 03-15 --at-time 09:00 --time-zone America/New_York
              sundial schedule preview --every 90m --max-occurrences 5
              sundial schedule preview --schedule-json '{"cron":{"expression":"@daily"},"timeZone":"Asia/Kolkata"}'
            See docs/schedules.md for the semantics.
            """)

    @OptionGroup var schedule: ScheduleOptions

    @Option(help: "Preview as if the timer were created at this instant (RFC 3339; default now).")
    var from: String?

    @Option(help: "How many fire times to print.")
    var count: Int = 10

    @Option(name: .customLong("timer-id"), help: "Timer id used to derive the jitter offsets.")
    var timerID: String = "preview"

    mutating func run() throws {
        do {
            let now = try ScheduleOptions.instant(from, "--from") ?? Date()
            let built = try schedule.buildSchedule()
            try built.validate(now: now)
            for line in ScheduleOptions.preview(built, createdAt: now, timerID: timerID, count: count) { print(line) }
        } catch let error as ScheduleValidationError {
            ScheduleOptions.report(error)
            throw ExitCode(2)
        }
    }
}

/// The options that describe a schedule, shared by `schedule preview` and `timers create`:
/// exactly one kind (`--cron`, `--weekdays`, `--date`, `--every`, `--in`/`--delay`, `--at`,
/// `--schedule-json`) plus time zone, end conditions and jitter (docs/schedules.md).
struct ScheduleOptions: ParsableArguments {
    @Option(help: "Cron expression: 5 fields, 6 with leading seconds, or @hourly/@daily/…")
    var cron: String?

    @Option(help: "Comma-separated weekdays, e.g. mon,wed (ranges like mon-fri work).")
    var weekdays: String?

    @Flag(help: "With --weekdays: fire on every selected day instead of once.")
    var recurring = false

    @Option(help: "MM-DD (every year) or YYYY-MM-DD (once).")
    var date: String?

    @Option(name: .customLong("at-time"), help: "Local time of day for --weekdays/--date, e.g. 09:00.")
    var atTime: String?

    @Option(help: "Fixed interval, e.g. 90m, 1h30m, 10s.")
    var every: String?

    @Option(help: "With --every: first fire (RFC 3339); default one interval after creation.")
    var start: String?

    @Option(help: "With --every: last possible fire (RFC 3339).")
    var end: String?

    @Option(name: [.customLong("in"), .customLong("delay")], help: "One-shot delay after creation, e.g. 3d, 10s, 500ms.")
    var delay: String?

    @Option(help: "One-shot absolute instant (RFC 3339).")
    var at: String?

    @Option(name: .customLong("time-zone"), help: "IANA time zone (default UTC).")
    var timeZone: String?

    @Option(help: "End condition: no fire after this instant (RFC 3339).")
    var until: String?

    @Option(name: .customLong("max-occurrences"), help: "End condition: at most this many fires.")
    var maxOccurrences: UInt64?

    @Option(help: "Jitter window, e.g. 30s (fires spread over [0, jitter)).")
    var jitter: String?

    @Option(name: .customLong("schedule-json"), help: "The schedule as protobuf JSON (sundial.v1.Schedule), as the API accepts it.")
    var json: String?

    /// The next `count` fire times, one line each: UTC instant, then local time (and the
    /// jitter offset when there is one).
    static func preview(_ schedule: TimerSchedule, createdAt now: Date, timerID: String, count: Int) -> [String] {
        let zone = schedule.resolvedTimeZone ?? TimeZone(identifier: "UTC")!
        var lines: [String] = []
        for (index, nominal) in schedule.upcoming(createdAt: now).enumerated() {
            guard lines.count < count else { break }
            let occurrence = UInt64(index)  // 0-based, as the services number them
            let fire = schedule.fireTime(nominal: nominal, timerID: timerID, occurrence: occurrence)
            var line = "\(RFC3339.format(fire))  \(RFC3339.formatLocal(fire, zone: zone, zoneName: schedule.timeZone))"
            if schedule.jitter != nil {
                let offset = schedule.jitterOffset(timerID: timerID, occurrence: occurrence)
                line += "  (nominal \(RFC3339.format(nominal)) +\(ScheduleDuration.format(offset)) jitter)"
            }
            lines.append(line)
        }
        return lines.isEmpty ? ["(no upcoming fire times)"] : lines
    }

    static func report(_ error: ScheduleValidationError) {
        for v in error.violations {
            FileHandle.standardError.write(Data("error: \(v.field): \(v.reason)\n".utf8))
        }
    }

    static func instant(_ text: String?, _ flag: String) throws -> Date? {
        guard let text else { return nil }
        guard let d = RFC3339.parse(text) else {
            throw ScheduleValidationError(field: flag, reason: "\"\(text)\" is not an RFC 3339 instant (e.g. 2027-03-15T09:00:00Z)")
        }
        return d
    }

    static func duration(_ text: String, _ flag: String) throws -> Duration {
        guard let d = ScheduleDuration.parse(text) else {
            throw ScheduleValidationError(field: flag, reason: "\"\(text)\" is not a duration (e.g. 90m, 1h30m, 10s, 500ms, 3d)")
        }
        return d
    }

    func buildSchedule() throws -> TimerSchedule {
        let kinds = [cron, weekdays, date, every, delay, at, json].compactMap { $0 }
        guard kinds.count == 1 else {
            throw ScheduleValidationError(
                field: "schedule",
                reason: kinds.isEmpty
                    ? "give one of --cron, --weekdays, --date, --every, --in, --at, --schedule-json"
                    : "give only one of --cron, --weekdays, --date, --every, --in, --at, --schedule-json")
        }
        if let json {
            var schedule = try Sundial_V1_Schedule.timerSchedule(json: json)
            if let timeZone { schedule.timeZone = timeZone }
            if let until { schedule.until = try Self.instant(until, "--until") }
            if let maxOccurrences { schedule.maxOccurrences = maxOccurrences }
            if let jitter { schedule.jitter = try Self.duration(jitter, "--jitter") }
            return schedule
        }
        var timeOfDay: LocalTime?
        if let atTime {
            guard let t = LocalTime(parsing: atTime) else {
                throw ScheduleValidationError(field: "--at-time", reason: "\"\(atTime)\" is not a time of day (HH:MM or HH:MM:SS)")
            }
            timeOfDay = t
        }
        if atTime != nil && weekdays == nil && date == nil {
            throw ScheduleValidationError(field: "--at-time", reason: "only applies to --weekdays and --date")
        }
        let kind: TimerSchedule.Kind
        if let cron {
            kind = .cron(cron)
        } else if let weekdays {
            guard let days = Weekday.parseList(weekdays) else {
                throw ScheduleValidationError(field: "--weekdays", reason: "\"\(weekdays)\" is not a list of weekdays (e.g. mon,wed)")
            }
            kind = .weekdays(days: days, timeOfDay: timeOfDay, recurring: recurring)
        } else if let date {
            let parts = date.split(separator: "-").map { Int($0) }
            guard parts.allSatisfy({ $0 != nil }), parts.count == 2 || parts.count == 3 else {
                throw ScheduleValidationError(field: "--date", reason: "\"\(date)\" is not MM-DD or YYYY-MM-DD")
            }
            let p = parts.map { $0! }
            kind = p.count == 2
                ? .date(year: nil, month: p[0], day: p[1], timeOfDay: timeOfDay)
                : .date(year: p[0], month: p[1], day: p[2], timeOfDay: timeOfDay)
        } else if let every {
            kind = .every(
                interval: try Self.duration(every, "--every"), start: try Self.instant(start, "--start"), end: try Self.instant(end, "--end"))
        } else if let delay {
            kind = .delay(try Self.duration(delay, "--delay"))
        } else {
            kind = .at(try Self.instant(at, "--at")!)
        }
        if (start != nil || end != nil) && every == nil {
            throw ScheduleValidationError(field: "--start", reason: "--start/--end only apply to --every")
        }
        if recurring && weekdays == nil {
            throw ScheduleValidationError(field: "--recurring", reason: "only applies to --weekdays")
        }
        return TimerSchedule(
            kind, timeZone: timeZone ?? "UTC", until: try Self.instant(until, "--until"), maxOccurrences: maxOccurrences,
            jitter: try jitter.map { try Self.duration($0, "--jitter") })
    }
}
