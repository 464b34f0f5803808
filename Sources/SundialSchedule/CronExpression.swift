import Foundation

/// A parse or validation problem in a cron expression. `field` names the cron field
/// ("second", "minute", "hour", "day-of-month", "month", "day-of-week") when one is at fault.
public struct CronParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var field: String?
    public var message: String

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String {
        if let field { return "\(field) field: \(message)" }
        return message
    }
}

/// A parsed cron expression (see docs/schedules.md, "Cron dialect").
///
/// - 5 fields `minute hour day-of-month month day-of-week`, or 6 fields with a leading
///   `second` field.
/// - Each field is a comma list of `*`, `n`, `a-b`, each optionally followed by `/step`;
///   `n/step` means `n-max/step`. Month names `JAN`…`DEC` and weekday names `SUN`…`SAT`
///   (case-insensitive); day-of-week 0 and 7 are both Sunday.
/// - `?` is a synonym for `*` in day-of-month and day-of-week; `L` in day-of-month means the
///   last day of the month (it may appear in a list: `1,15,L`).
/// - Day-of-month and day-of-week: when both are restricted (neither is a bare `*` or `?`) a
///   day matches if **either** matches (POSIX, Vixie, croniter); otherwise only the restricted
///   one counts. Unlike Vixie cron, `*/2` counts as restricted (no "star bug").
/// - Aliases: `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`.
/// - Unsupported (rejected): `W`, `#`, `L` in day-of-week, a year field, `@reboot`, `H`.
/// - An expression that can never fire (`0 0 30 2 *`) is rejected.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The expression as given (trimmed).
    public let source: String
    /// True when the expression has a leading seconds field.
    public let hasSeconds: Bool

    let seconds: UInt64  // bits 0...59
    let minutes: UInt64  // bits 0...59
    let hours: UInt64  // bits 0...23
    let daysOfMonth: UInt64  // bits 1...31
    let lastDayOfMonth: Bool
    let months: UInt64  // bits 1...12
    let daysOfWeek: UInt64  // bits 0...6, 0 = Sunday
    let domRestricted: Bool
    let dowRestricted: Bool

    public var description: String { source }

    public static func == (a: CronExpression, b: CronExpression) -> Bool { a.source == b.source }
    public func hash(into h: inout Hasher) { h.combine(source) }

    static let aliases: [String: String] = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    ]

    enum FieldKind: Int, CaseIterable {
        case second, minute, hour, dayOfMonth, month, dayOfWeek

        var name: String {
            switch self {
            case .second: "second"
            case .minute: "minute"
            case .hour: "hour"
            case .dayOfMonth: "day-of-month"
            case .month: "month"
            case .dayOfWeek: "day-of-week"
            }
        }

        /// Inclusive bounds of written values (day-of-week accepts 7 = Sunday).
        var bounds: ClosedRange<Int> {
            switch self {
            case .second, .minute: 0...59
            case .hour: 0...23
            case .dayOfMonth: 1...31
            case .month: 1...12
            case .dayOfWeek: 0...7
            }
        }

        /// Range used for `*` and for the open end of `n/step`.
        var starRange: ClosedRange<Int> { self == .dayOfWeek ? 0...6 : bounds }

        var names: [String]? {
            switch self {
            case .month: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
            case .dayOfWeek: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
            default: nil
            }
        }

        var nameBase: Int { self == .month ? 1 : 0 }
    }

    public init(_ text: String) throws(CronParseError) {
        var utf8 = Substring(text).utf8
        while let c = utf8.first, c == 32 || c == 9 || c == 10 || c == 13 { utf8 = utf8.dropFirst() }
        while let c = utf8.last, c == 32 || c == 9 || c == 10 || c == 13 { utf8 = utf8.dropLast() }
        let trimmed = String(Substring(utf8))
        source = trimmed
        var body = trimmed
        if trimmed.hasPrefix("@") {
            guard let expansion = Self.aliases[trimmed.lowercased()] else {
                throw CronParseError(
                    field: nil,
                    message: "unknown alias \"\(trimmed)\" (supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)")
            }
            body = expansion
        }
        let parts = body.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard !parts.isEmpty else { throw CronParseError(field: nil, message: "expression is empty") }
        guard parts.count == 5 || parts.count == 6 else {
            throw CronParseError(
                field: nil,
                message: "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second field, got \(parts.count)")
        }
        hasSeconds = parts.count == 6
        let f = hasSeconds ? Array(parts) : ["0"] + Array(parts)
        seconds = try Self.parseField(f[0], .second).mask
        minutes = try Self.parseField(f[1], .minute).mask
        hours = try Self.parseField(f[2], .hour).mask
        let dom = try Self.parseField(f[3], .dayOfMonth)
        daysOfMonth = dom.mask
        lastDayOfMonth = dom.last
        months = try Self.parseField(f[4], .month).mask
        var dow = try Self.parseField(f[5], .dayOfWeek).mask
        if dow & (1 << 7) != 0 { dow = (dow & ~(1 << 7)) | 1 }
        daysOfWeek = dow
        // POSIX/Vixie: a field is unrestricted only when written as a bare "*" (or "?").
        domRestricted = !(f[3] == "*" || f[3] == "?")
        dowRestricted = !(f[5] == "*" || f[5] == "?")

        // Reject expressions that can never fire.
        if !dowRestricted || !domRestricted {
            var possible = false
            for m in 1...12 where months & (1 << UInt64(m)) != 0 {
                let maxDay = m == 2 ? 29 : Civil.daysInMonth(2001, m)
                let fitting = daysOfMonth & ((UInt64(1) << UInt64(maxDay + 1)) - 1)
                if lastDayOfMonth || fitting != 0 {
                    possible = true
                    break
                }
            }
            if !possible {
                throw CronParseError(
                    field: "day-of-month",
                    message: "\"\(f[3])\" never occurs in the selected month(s) \"\(f[4])\", so the expression never fires")
            }
        }
    }

    static func parseField(_ text: Substring, _ kind: FieldKind) throws(CronParseError) -> (mask: UInt64, last: Bool) {
        // Byte-level parser: this runs for every schedule decoded, so it avoids String work on
        // the happy path (error messages are built only when failing).
        let b = Array(text.utf8)
        func str(_ r: Range<Int>) -> String { String(decoding: b[r], as: UTF8.self) }
        func fail(_ message: String) -> CronParseError {
            CronParseError(field: kind.name, message: "\"\(text)\": \(message)")
        }
        func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        func lower(_ c: UInt8) -> UInt8 { c >= 65 && c <= 90 ? c + 32 : c }
        func range() -> String { "\(kind.bounds.lowerBound)-\(kind.bounds.upperBound)" }
        func value(_ r: Range<Int>) throws(CronParseError) -> Int {
            if r.isEmpty { throw fail("empty value") }
            if b[r].allSatisfy(isDigit) {
                guard r.count <= 4 else { throw fail("value \(str(r)) is out of range \(range())") }
                var v = 0
                for c in b[r] { v = v * 10 + Int(c - 48) }
                guard kind.bounds.contains(v) else { throw fail("value \(v) is out of range \(range())") }
                return v
            }
            if let names = kind.names, r.count == 3 {
                for (i, name) in names.enumerated() {
                    let n = Array(name.utf8)
                    if lower(b[r.lowerBound]) == n[0] && lower(b[r.lowerBound + 1]) == n[1] && lower(b[r.lowerBound + 2]) == n[2] {
                        return i + kind.nameBase
                    }
                }
            }
            let upper = str(r).uppercased()
            if upper == "L" || upper.contains("#") || upper.hasSuffix("W") || upper.hasSuffix("L") {
                throw fail("\"\(str(r))\" is not supported here (only a plain L in day-of-month is)")
            }
            throw fail("\"\(str(r))\" is not a valid \(kind.name) value")
        }

        guard !b.isEmpty else { throw fail("empty field") }
        var mask: UInt64 = 0
        var last = false
        var itemStart = 0
        while itemStart <= b.count {
            var itemEnd = itemStart
            while itemEnd < b.count && b[itemEnd] != 44 { itemEnd += 1 }  // ','
            defer { itemStart = itemEnd + 1 }
            let item = itemStart..<itemEnd
            guard !item.isEmpty else { throw fail("empty list element") }
            if kind == .dayOfMonth && item.count == 1 && lower(b[item.lowerBound]) == 108 {  // 'l'
                last = true
                continue
            }
            var baseEnd = itemEnd
            var step = 1
            var hasStep = false
            if let slash = b[item].firstIndex(of: 47) {  // '/'
                baseEnd = slash
                let stepRange = (slash + 1)..<itemEnd
                guard !stepRange.isEmpty, stepRange.count <= 4, b[stepRange].allSatisfy(isDigit) else {
                    throw fail("step \"\(str(stepRange))\" must be a positive integer")
                }
                step = 0
                for c in b[stepRange] { step = step * 10 + Int(c - 48) }
                guard step >= 1 else { throw fail("step \"\(str(stepRange))\" must be a positive integer") }
                hasStep = true
            }
            let base = item.lowerBound..<baseEnd
            let single = base.count == 1 ? b[base.lowerBound] : 0
            var lo: Int
            var hi: Int
            if single == 42 || (single == 63 && (kind == .dayOfMonth || kind == .dayOfWeek)) {  // '*', '?'
                if single == 63 && hasStep { throw fail("\"?\" cannot take a step") }
                lo = kind.starRange.lowerBound
                hi = kind.starRange.upperBound
            } else if let dash = b[base].firstIndex(of: 45) {  // '-'
                lo = try value(base.lowerBound..<dash)
                hi = try value((dash + 1)..<base.upperBound)
                guard lo <= hi else {
                    throw fail("range \(str(base)) runs backwards (wrap-around ranges are not supported)")
                }
            } else {
                lo = try value(base)
                hi = hasStep ? kind.starRange.upperBound : lo
                if hasStep && lo > hi { hi = lo }
            }
            var v = lo
            while v <= hi {
                mask |= 1 << UInt64(v)
                v += step
            }
        }
        return (mask, last)
    }

    // MARK: - Search

    @inline(__always)
    static func nextBit(_ mask: UInt64, atOrAfter v: Int) -> Int? {
        guard v < 64 else { return nil }
        let m = mask >> UInt64(v)
        return m == 0 ? nil : v + m.trailingZeroBitCount
    }

    @inline(__always)
    func dayMatches(dayNumber: Int64, day: Int, daysInMonth dim: Int) -> Bool {
        let domHit = (daysOfMonth >> UInt64(day)) & 1 == 1 || (lastDayOfMonth && day == dim)
        let dowHit = (daysOfWeek >> UInt64(Civil.isoWeekday(days: dayNumber) % 7)) & 1 == 1
        switch (domRestricted, dowRestricted) {
        case (true, true): return domHit || dowHit
        case (true, false): return domHit
        case (false, true): return dowHit
        case (false, false): return true
        }
    }

    /// The smallest wall-clock reading (local seconds) at or after `start` that matches every
    /// field. Skips whole months, days, hours and minutes at a time.
    func nextLocal(atOrAfter start: Int64) -> Int64? {
        var l = start
        let startYear = Civil.fields(local: start).year
        while true {
            let f = Civil.fields(local: l)
            if f.year > startYear + 30 { return nil }  // valid expressions repeat within 8 years
            // Month.
            if months & (1 << UInt64(f.month)) == 0 {
                if let m = Self.nextBit(months, atOrAfter: f.month + 1), m <= 12 {
                    l = Civil.local(f.year, m, 1)
                } else {
                    l = Civil.local(f.year + 1, Self.nextBit(months, atOrAfter: 1)!, 1)
                }
                continue
            }
            // Day.
            let dim = Civil.daysInMonth(f.year, f.month)
            var d = f.day
            var dayNumber = f.dayNumber
            while d <= dim && !dayMatches(dayNumber: dayNumber, day: d, daysInMonth: dim) {
                d += 1
                dayNumber += 1
            }
            if d > dim {
                l = dayNumber * Civil.secondsPerDay  // first day of the next month
                continue
            }
            let dayStart = dayNumber * Civil.secondsPerDay
            if d != f.day {
                l = dayStart
                continue
            }
            // Hour.
            guard let h = Self.nextBit(hours, atOrAfter: f.hour) else {
                l = dayStart + Civil.secondsPerDay
                continue
            }
            if h != f.hour {
                l = dayStart + Int64(h) * 3600
                continue
            }
            // Minute.
            guard let mi = Self.nextBit(minutes, atOrAfter: f.minute) else {
                l = dayStart + Int64(h + 1) * 3600
                continue
            }
            if mi != f.minute {
                l = dayStart + Int64(h) * 3600 + Int64(mi) * 60
                continue
            }
            // Second.
            guard let s = Self.nextBit(seconds, atOrAfter: f.second) else {
                l = dayStart + Int64(h) * 3600 + Int64(mi + 1) * 60
                continue
            }
            return dayStart + Int64(h) * 3600 + Int64(mi) * 60 + Int64(s)
        }
    }

    /// Next fire strictly after `date`, evaluated in `zone` with Sundial's DST rules.
    public func next(after date: Date, in zone: TimeZone) -> Date? {
        WallClockSearch.next(after: date, rules: ZoneRules(zone)) { nextLocal(atOrAfter: $0) }
    }

    /// A lower bound of the gap between two consecutive fires (ignoring DST), used to check
    /// that a jitter window fits: the smallest cyclic gap of the finest field with more than
    /// one value, or, for at most one fire a day, the smallest gap between firing days.
    var shortestInterval: Int64 {
        func cyclicGap(_ mask: UInt64, period: Int) -> Int? {
            let values = (0..<period).filter { mask & (1 << UInt64($0)) != 0 }
            guard values.count > 1 else { return nil }
            var gap = values.first! + period - values.last!
            for (a, b) in zip(values, values.dropFirst()) { gap = min(gap, b - a) }
            return gap
        }
        if let g = cyclicGap(seconds, period: 60) { return Int64(g) }
        if let g = cyclicGap(minutes, period: 60) { return Int64(g) * 60 }
        if let g = cyclicGap(hours, period: 24) { return Int64(g) * 3600 }
        // One fire per matching day: scan three years of days for the tightest pair.
        var previous: Int64?
        var best: Int64 = 366
        let first = Civil.days(2024, 1, 1)
        for dayNumber in first..<(first + 3 * 366) {
            let (y, m, d) = Civil.date(days: dayNumber)
            guard months & (1 << UInt64(m)) != 0,
                dayMatches(dayNumber: dayNumber, day: d, daysInMonth: Civil.daysInMonth(y, m))
            else { continue }
            if let p = previous { best = min(best, dayNumber - p) }
            previous = dayNumber
            if best == 1 { break }
        }
        return best * Civil.secondsPerDay
    }
}

/// Shared search for wall-clock kinds: find the smallest matching wall-clock reading whose
/// resolved instant is strictly after `after`.
enum WallClockSearch {
    static func next(after: Date, rules: ZoneRules, match: (Int64) -> Int64?) -> Date? {
        let a = after.unixFloor
        var floor = rules.localFloor(afterUnix: a)
        for _ in 0..<16 {
            guard let l = match(floor) else { return nil }
            let t = rules.resolve(local: l)
            if t > a { return Date(unix: t) }
            floor = l + 1
        }
        return nil
    }
}
