import Foundation
import Synchronization

/// When a timer fires: one of six kinds, a time zone for the wall-clock kinds, optional end
/// conditions and an optional jitter window. Pure value type, no I/O. Semantics are specified in
/// docs/schedules.md; the wire form is `sundial.v1.Schedule`.
public struct TimerSchedule: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Once, `duration` after creation.
        case delay(Duration)
        /// Once, at an absolute instant.
        case at(Date)
        /// The first selected weekday at `timeOfDay` (local; nil = no time of day, see docs),
        /// or every one of them when `recurring`.
        case weekdays(days: Set<Weekday>, timeOfDay: LocalTime?, recurring: Bool)
        /// `month`/`day` every year (`year == nil`), or once on `year-month-day`, at
        /// `timeOfDay` (local; nil = 00:00).
        case date(year: Int?, month: Int, day: Int, timeOfDay: LocalTime?)
        /// A cron expression (5 or 6 fields, or an alias), evaluated in the time zone.
        case cron(String)
        /// Every `interval` (elapsed time) from `start` (nil: from creation, first fire one
        /// interval after it) until `end` (inclusive, optional).
        case every(interval: Duration, start: Date?, end: Date?)
    }

    public var kind: Kind {
        didSet { compiled = Compiled(kind: kind, timeZone: timeZone) }
    }
    /// IANA zone name ("Europe/Berlin"); "UTC" by default. Only wall-clock kinds use it.
    public var timeZone: String {
        didSet { compiled = Compiled(kind: kind, timeZone: timeZone) }
    }
    /// Recurring kinds: no occurrence after this instant (inclusive bound).
    public var until: Date?
    /// Recurring kinds: at most this many occurrences in total.
    public var maxOccurrences: UInt64?
    /// Each occurrence fires at a deterministic offset in [0, jitter) after its nominal time.
    public var jitter: Duration?

    private var compiled: Compiled

    public init(
        _ kind: Kind, timeZone: String = "UTC", until: Date? = nil, maxOccurrences: UInt64? = nil,
        jitter: Duration? = nil
    ) {
        self.kind = kind
        self.timeZone = timeZone.isEmpty ? "UTC" : timeZone
        self.until = until
        self.maxOccurrences = maxOccurrences
        self.jitter = jitter
        self.compiled = Compiled(kind: kind, timeZone: timeZone.isEmpty ? "UTC" : timeZone)
    }

    public static func == (a: TimerSchedule, b: TimerSchedule) -> Bool {
        a.kind == b.kind && a.timeZone == b.timeZone && a.until == b.until
            && a.maxOccurrences == b.maxOccurrences && a.jitter == b.jitter
    }

    public func hash(into h: inout Hasher) {
        h.combine(kind)
        h.combine(timeZone)
        h.combine(until)
        h.combine(maxOccurrences)
        h.combine(jitter)
    }

    /// Derived state: the resolved zone and the parsed cron expression.
    struct Compiled: Sendable {
        var zone: ZoneRules?
        var zoneError: String?
        var cron: CronExpression?
        var cronError: CronParseError?

        init(kind: Kind, timeZone: String) {
            if let tz = TimeZoneName.resolve(timeZone) {
                zone = ZoneRules(tz)
            } else {
                zoneError = "unknown time zone \"\(timeZone)\" (use an IANA name such as \"Europe/Berlin\", or \"UTC\")"
            }
            if case .cron(let text) = kind {
                do { cron = try CronExpression(text) } catch { cronError = error }
            }
        }
    }

    var rules: ZoneRules? { compiled.zone }
    var cronExpression: CronExpression? { compiled.cron }
    var cronError: CronParseError? { compiled.cronError }
    var zoneError: String? { compiled.zoneError }

    /// The resolved Foundation zone (nil when the name is unknown).
    public var resolvedTimeZone: TimeZone? { compiled.zone?.zone }

    /// True for kinds that fire more than once: cron, every, yearly dates, recurring weekdays.
    public var isRecurring: Bool {
        switch kind {
        case .delay, .at: return false
        case .weekdays(_, _, let recurring): return recurring
        case .date(let year, _, _, _): return year == nil
        case .cron, .every: return true
        }
    }

    /// A short human-readable description of the kind ("cron 0 9 * * MON", …).
    public var kindName: String {
        switch kind {
        case .delay: "delay"
        case .at: "at"
        case .weekdays: "weekdays"
        case .date: "date"
        case .cron: "cron"
        case .every: "every"
        }
    }
}

/// Time-zone name handling: only IANA region names ("Area/Location"), names in the system's
/// zone list, and "UTC" are accepted, so abbreviations like "PST" or "GMT+5" are rejected.
public enum TimeZoneName {
    private static let utc = TimeZone(identifier: "UTC")!
    /// Resolved zones by name (only successes; there are a few hundred IANA names).
    private static let cache = Mutex<[String: TimeZone]>([:])

    public static func resolve(_ name: String) -> TimeZone? {
        if name.isEmpty || name == "UTC" { return utc }
        if let hit = cache.withLock({ $0[name] }) { return hit }
        guard let tz = TimeZone(identifier: name), tz.identifier == name else { return nil }
        guard name.contains("/") || TimeZone.knownTimeZoneIdentifiers.contains(name) else { return nil }
        cache.withLock { if $0.count < 4096 { $0[name] = tz } }
        return tz
    }
}

/// The one place Sundial's modules convert a `Duration` (the fairness core, which has no
/// dependencies, keeps its own `fairnessSeconds`).
extension Duration {
    /// Seconds as a Double (attosecond precision is irrelevant here).
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }

    /// Whole milliseconds, rounded toward zero.
    public var wholeMilliseconds: Int64 {
        let c = components
        return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
    }
}
