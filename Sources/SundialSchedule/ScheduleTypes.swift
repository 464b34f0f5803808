import Foundation

/// ISO-8601 weekday numbering (Monday = 1 … Sunday = 7), identical to the wire enum
/// `sundial.v1.Weekday`.
public enum Weekday: Int, Sendable, Hashable, CaseIterable, Comparable, CustomStringConvertible {
    case monday = 1, tuesday, wednesday, thursday, friday, saturday, sunday

    public static func < (a: Weekday, b: Weekday) -> Bool { a.rawValue < b.rawValue }

    /// Three-letter English abbreviation, lowercase ("mon").
    public var shortName: String {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][rawValue - 1]
    }

    public var description: String { shortName }

    /// Parses "mon", "Monday", "MO", "1" (ISO number) case-insensitively.
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let n = Int(t), let d = Weekday(rawValue: n) {
            self = d
            return
        }
        guard t.count >= 2 else { return nil }
        for d in Weekday.allCases {
            let full = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"][
                d.rawValue - 1]
            if full.hasPrefix(t) {
                self = d
                return
            }
        }
        return nil
    }

    /// Parses a comma-separated list ("mon,wed,fri"; ranges such as "mon-fri" are accepted).
    public static func parseList(_ text: String) -> Set<Weekday>? {
        var out = Set<Weekday>()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let p = part.trimmingCharacters(in: .whitespaces)
            if let dash = p.firstIndex(of: "-") {
                guard let a = Weekday(parsing: String(p[..<dash])),
                    let b = Weekday(parsing: String(p[p.index(after: dash)...])), a <= b
                else { return nil }
                for r in a.rawValue...b.rawValue { out.insert(Weekday(rawValue: r)!) }
            } else {
                guard let d = Weekday(parsing: p) else { return nil }
                out.insert(d)
            }
        }
        return out
    }
}

/// A wall-clock time of day. Values are not range-checked on construction; ``TimerSchedule``
/// validation reports out-of-range fields.
public struct LocalTime: Sendable, Hashable, CustomStringConvertible {
    public var hour: Int
    public var minute: Int
    public var second: Int

    public init(hour: Int, minute: Int = 0, second: Int = 0) {
        self.hour = hour
        self.minute = minute
        self.second = second
    }

    public static let midnight = LocalTime(hour: 0)

    public var isValid: Bool {
        (0...23).contains(hour) && (0...59).contains(minute) && (0...59).contains(second)
    }

    var secondsOfDay: Int64 { Int64(hour * 3600 + minute * 60 + second) }

    public var description: String {
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return second == 0 ? "\(two(hour)):\(two(minute))" : "\(two(hour)):\(two(minute)):\(two(second))"
    }

    /// Parses "9:00", "09:00", "09:00:30".
    public init?(parsing text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count),
            parts.allSatisfy({ !$0.isEmpty && $0.count <= 2 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) })
        else { return nil }
        let h = Int(parts[0])!, m = Int(parts[1])!, s = parts.count == 3 ? Int(parts[2])! : 0
        self.init(hour: h, minute: m, second: s)
        guard isValid else { return nil }
    }
}

/// One field-level problem with a schedule. `field` is a path in the wire message
/// (`schedule.cron.expression`, `schedule.time_zone`, …); `reason` is a human-readable sentence.
public struct ScheduleViolation: Sendable, Hashable, CustomStringConvertible {
    public var field: String
    public var reason: String

    public init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    public var description: String { "\(field): \(reason)" }
}

/// All problems found with a schedule (never empty when thrown).
public struct ScheduleValidationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var violations: [ScheduleViolation]

    public init(violations: [ScheduleViolation]) { self.violations = violations }

    public init(field: String, reason: String) {
        self.violations = [ScheduleViolation(field: field, reason: reason)]
    }

    public var description: String { violations.map(\.description).joined(separator: "; ") }
}
