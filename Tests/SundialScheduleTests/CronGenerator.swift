import Foundation

@testable import SundialSchedule

/// Random cron expressions in the dialect both Sundial and croniter accept.
struct CronGenerator {
    var rng: SplitMix64
    /// Dense expressions fire often (most day/month fields are `*`), for brute-force windows.
    var dense: Bool

    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

    mutating func expression(allowSeconds: Bool) -> String {
        if !dense && rng.chance(0.02) {
            return rng.pick(["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"])
        }
        var fields: [String] = []
        if allowSeconds && rng.chance(0.25) { fields.append(field(0, 59, starChance: 0.3)) }
        fields.append(field(0, 59, starChance: dense ? 0.3 : 0.15))
        fields.append(field(0, 23, starChance: dense ? 0.5 : 0.3))
        fields.append(dayOfMonth())
        fields.append(field(1, 12, starChance: dense ? 0.9 : 0.6, names: Self.monthNames, nameBase: 1))
        fields.append(dayOfWeek())
        return fields.joined(separator: " ")
    }

    mutating func dayOfMonth() -> String {
        if rng.chance(dense ? 0.8 : 0.5) { return rng.chance(0.1) ? "?" : "*" }
        if rng.chance(0.1) { return rng.chance(0.5) ? "L" : "\(rng.int(1...28)),L" }
        return field(1, 31, starChance: 0)
    }

    mutating func dayOfWeek() -> String {
        if rng.chance(dense ? 0.7 : 0.55) { return rng.chance(0.1) ? "?" : "*" }
        return field(0, 7, starChance: 0, names: Self.dayNames, nameBase: 0)
    }

    mutating func field(_ lo: Int, _ hi: Int, starChance: Double, names: [String]? = nil, nameBase: Int = 0) -> String {
        if rng.chance(starChance) { return "*" }
        let count = rng.chance(0.3) ? rng.int(2...3) : 1
        return (0..<count).map { _ in item(lo, hi, names: names, nameBase: nameBase) }.joined(separator: ",")
    }

    mutating func value(_ v: Int, names: [String]?, nameBase: Int) -> String {
        if let names, rng.chance(0.3), v - nameBase < names.count, v - nameBase >= 0 {
            let n = names[v - nameBase]
            return rng.chance(0.5) ? n : n.lowercased()
        }
        return String(v)
    }

    mutating func item(_ lo: Int, _ hi: Int, names: [String]?, nameBase: Int) -> String {
        let span = hi - lo
        switch rng.int(0...4) {
        case 0, 1:
            return value(rng.int(lo...hi), names: names, nameBase: nameBase)
        case 2:
            // Ranges are never degenerate ("5-5"): croniter 7 expands those to "*".
            let a = rng.int(lo...(hi - 1))
            let b = rng.int((a + 1)...hi)
            return "\(value(a, names: names, nameBase: nameBase))-\(value(b, names: names, nameBase: nameBase))"
        case 3:
            return "*/\(rng.int(1...max(1, span / 2)))"
        default:
            let a = rng.int(lo...hi)
            if rng.chance(0.5) && a < hi {
                let b = rng.int((a + 1)...hi)
                return "\(a)-\(b)/\(rng.int(1...max(1, span / 2)))"
            }
            // "a/step" (= a-max/step); day-of-week 7 would start past the star range.
            let start = lo == 0 && hi == 7 ? rng.int(0...6) : a
            return "\(start)/\(rng.int(1...max(1, span / 2)))"
        }
    }
}
