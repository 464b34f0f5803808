import Foundation

/// Human-friendly durations: "90m", "3d", "1h30m", "10s", "500ms", "1.5h", "2w".
/// Units: ms, s, m, h, d (24 h), w (7 d). Components may repeat in any order and are added.
public enum ScheduleDuration {
    public static func parse(_ text: String) -> Duration? {
        let s = Array(text.trimmingCharacters(in: .whitespaces).lowercased().utf8)
        guard !s.isEmpty else { return nil }
        if s == Array("0".utf8) { return .zero }
        var i = 0
        var totalMs: Double = 0
        while i < s.count {
            let start = i
            var sawDot = false
            while i < s.count, (s[i] >= 48 && s[i] <= 57) || (s[i] == 46 && !sawDot) {
                if s[i] == 46 { sawDot = true }
                i += 1
            }
            guard i > start, let number = Double(String(decoding: s[start..<i], as: UTF8.self)) else { return nil }
            let unitStart = i
            while i < s.count, s[i] >= 97 && s[i] <= 122 { i += 1 }
            let unit = String(decoding: s[unitStart..<i], as: UTF8.self)
            let factor: Double
            switch unit {
            case "ms": factor = 1
            case "s": factor = 1000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            case "w": factor = 604_800_000
            default: return nil
            }
            totalMs += number * factor
        }
        guard totalMs.isFinite, totalMs < 9e15 else { return nil }
        let ms = Int64(totalMs.rounded())
        return .milliseconds(ms)
    }

    /// "1d2h3m4s500ms"-style rendering (largest unit first, zero units omitted; "0s" for zero).
    public static func format(_ d: Duration) -> String {
        if d < .zero { return "-" + format(.zero - d) }
        var ms = d.wholeMilliseconds
        let c = d.components
        if ms == 0 && c.attoseconds > 0 { return "\(Double(c.attoseconds) / 1e9)ns" }
        if ms == 0 { return "0s" }
        var out = ""
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            let n = ms / size
            if n > 0 {
                out += "\(n)\(unit)"
                ms -= n * size
            }
        }
        return out
    }
}

/// RFC 3339 parsing and formatting, plus the local rendering used by `sundial schedule preview`.
public enum RFC3339 {
    /// Parses "2027-03-15T09:00:00Z", "2027-03-15T09:00:00.250+01:00", "2027-03-15 09:00:00z".
    public static func parse(_ text: String) -> Date? {
        let s = Array(text.trimmingCharacters(in: .whitespaces).utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= s.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = s[i + k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            i += n
            return v
        }
        func expect(_ chars: String) -> Bool {
            guard i < s.count, chars.utf8.contains(s[i]) else { return false }
            i += 1
            return true
        }
        guard let y = digits(4), expect("-"), let mo = digits(2), expect("-"), let d = digits(2),
            expect("Tt "), let h = digits(2), expect(":"), let mi = digits(2), expect(":"),
            let sec = digits(2)
        else { return nil }
        guard (1...12).contains(mo), (1...Civil.daysInMonth(y, mo)).contains(d), h <= 23, mi <= 59, sec <= 60 else {
            return nil
        }
        var fraction = 0.0
        if i < s.count, s[i] == 46 {
            i += 1
            let start = i
            var scale = 0.1
            while i < s.count, s[i] >= 48 && s[i] <= 57 {
                fraction += Double(s[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        var offset = 0
        if expect("Zz") {
        } else if i < s.count, s[i] == 43 || s[i] == 45 {
            let sign = s[i] == 45 ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(":"), let om = digits(2), oh <= 23, om <= 59 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == s.count else { return nil }
        let local = Civil.local(y, mo, d, h, mi, min(sec, 59)) + (sec == 60 ? 1 : 0)
        return Date(timeIntervalSince1970: Double(local - Int64(offset)) + fraction)
    }

    /// "2027-03-15T08:00:00Z" (milliseconds appear only when non-zero: "…:00.250Z").
    public static func format(_ date: Date) -> String {
        let (secs, ms) = split(date)
        return stamp(secs, ms, separator: "T") + "Z"
    }

    /// "2027-03-15T09:00:00+01:00" in `zone`.
    public static func format(_ date: Date, in zone: TimeZone) -> String {
        let (secs, ms) = split(date)
        let off = Int64(zone.secondsFromGMT(for: Date(unix: secs)))
        return stamp(secs + off, ms, separator: "T") + offsetText(off)
    }

    /// "2027-03-15 09:00:00 +01:00 Europe/Berlin".
    public static func formatLocal(_ date: Date, zone: TimeZone, zoneName: String? = nil) -> String {
        let (secs, ms) = split(date)
        let off = Int64(zone.secondsFromGMT(for: Date(unix: secs)))
        return stamp(secs + off, ms, separator: " ") + " " + offsetText(off) + " " + (zoneName ?? zone.identifier)
    }

    private static func split(_ date: Date) -> (Int64, Int) {
        let totalMs = (date.timeIntervalSince1970 * 1000).rounded()
        let ms = Int64(totalMs)
        let secs = Civil.floorDiv(ms, 1000)
        return (secs, Int(ms - secs * 1000))
    }

    private static func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }

    private static func stamp(_ local: Int64, _ ms: Int, separator: String) -> String {
        let f = Civil.fields(local: local)
        var y = String(f.year)
        while y.count < 4 { y = "0" + y }
        var out = "\(y)-\(two(f.month))-\(two(f.day))\(separator)\(two(f.hour)):\(two(f.minute)):\(two(f.second))"
        if ms != 0 {
            out += "." + (ms < 10 ? "00" : ms < 100 ? "0" : "") + String(ms)
        }
        return out
    }

    private static func offsetText(_ off: Int64) -> String {
        let sign = off < 0 ? "-" : "+"
        let a = Int(abs(off))
        let base = "\(sign)\(two(a / 3600)):\(two((a % 3600) / 60))"
        return a % 60 == 0 ? base : base + ":\(two(a % 60))"
    }
}
