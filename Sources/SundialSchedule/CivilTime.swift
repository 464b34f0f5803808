import Foundation

/// Proleptic-Gregorian calendar arithmetic on plain integers (no Foundation `Calendar`).
///
/// "Local seconds" are seconds since 1970-01-01T00:00:00 *on the wall clock of some zone*,
/// i.e. the wall-clock reading encoded as if it were UTC. Converting local seconds to an
/// instant is the job of ``ZoneRules``.
enum Civil {
    static let secondsPerDay: Int64 = 86_400

    @inline(__always)
    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    @inline(__always)
    static func isLeap(_ y: Int) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }

    @inline(__always)
    static func daysInMonth(_ y: Int, _ m: Int) -> Int {
        switch m {
        case 2: return isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of the civil date y-m-d (H. Hinnant's algorithm).
    @inline(__always)
    static func days(_ y: Int, _ m: Int, _ d: Int) -> Int64 {
        let y = Int64(m <= 2 ? y - 1 : y)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64(m > 2 ? m - 3 : m + 9)
        let doy = (153 * mp + 2) / 5 + Int64(d) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The civil date of a day count since 1970-01-01.
    @inline(__always)
    static func date(days z0: Int64) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(m <= 2 ? y + 1 : y), Int(m), Int(d))
    }

    /// ISO weekday (1 = Monday … 7 = Sunday) of a day count since 1970-01-01 (a Thursday).
    @inline(__always)
    static func isoWeekday(days: Int64) -> Int {
        let r = Int((days + 3) % 7)
        return (r < 0 ? r + 7 : r) + 1
    }

    /// Local seconds for a civil date and time.
    @inline(__always)
    static func local(_ y: Int, _ m: Int, _ d: Int, _ h: Int = 0, _ mi: Int = 0, _ s: Int = 0) -> Int64 {
        days(y, m, d) * secondsPerDay + Int64(h * 3600 + mi * 60 + s)
    }

    struct Fields: Equatable {
        var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int
        var dayNumber: Int64
    }

    @inline(__always)
    static func fields(local: Int64) -> Fields {
        let days = floorDiv(local, secondsPerDay)
        let sod = Int(local - days * secondsPerDay)
        let (y, m, d) = date(days: days)
        return Fields(
            year: y, month: m, day: d, hour: sod / 3600, minute: (sod % 3600) / 60,
            second: sod % 60, dayNumber: days)
    }
}

/// Converts between instants and wall-clock readings of one IANA zone, with Sundial's DST
/// rules:
/// - a local time that does not exist (spring-forward gap) resolves to the first valid instant
///   after the gap, i.e. the transition instant itself;
/// - a local time that exists twice (fall-back overlap) resolves to the first (earlier) instant.
///
/// The resulting map from local seconds to instants is monotone (non-decreasing), which is what
/// lets the schedule search run on wall-clock fields and still return strictly increasing
/// instants without double fires.
struct ZoneRules: Sendable {
    let zone: TimeZone
    /// Fixed-offset fast path (UTC, Etc/GMT+5, Asia/Kolkata has no DST either but is not
    /// detected as fixed; that only costs a few nanoseconds).
    private let fixedOffset: Int64?

    init(_ zone: TimeZone) {
        self.zone = zone
        let id = zone.identifier
        if id == "GMT" || id == "UTC" || id == "Etc/UTC" || id == "Etc/GMT" {
            fixedOffset = 0
        } else {
            fixedOffset = nil
        }
    }

    static let utc = ZoneRules(TimeZone(identifier: "UTC")!)

    @inline(__always)
    func offset(at unix: Int64) -> Int64 {
        if let fixedOffset { return fixedOffset }
        return Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(unix))))
    }

    /// Wall-clock reading (local seconds) of an instant given in whole Unix seconds.
    @inline(__always)
    func local(ofUnix unix: Int64) -> Int64 { unix + offset(at: unix) }

    /// The instant (Unix seconds) at which the wall clock reads `local`, under the DST rules
    /// above.
    func resolve(local l: Int64) -> Int64 {
        if let fixedOffset { return l - fixedOffset }
        // Any instant whose wall-clock reading is `l` lies within [l-14h, l+12h]; offsets at the
        // window's edges give the (at most two) candidate offsets.
        let early = offset(at: l - 54_000)
        let late = offset(at: l + 46_800)
        let c1 = l - early
        let v1 = offset(at: c1) == early
        if early == late && v1 { return c1 }
        let c2 = l - late
        let v2 = offset(at: c2) == late
        switch (v1, v2) {
        case (true, true): return min(c1, c2)  // overlap: first instant
        case (true, false): return c1
        case (false, true): return c2
        case (false, false):
            // Gap: the first instant after it is the transition, which lies in (l-late, l-early].
            let lo = min(c1, c2), hi = max(c1, c2)
            return firstChange(after: lo, notAfter: hi) ?? hi
        }
    }

    /// The smallest t in (lo, hi] whose offset differs from the offset at lo (binary search;
    /// transitions are whole seconds).
    private func firstChange(after lo: Int64, notAfter hi: Int64) -> Int64? {
        let base = offset(at: lo)
        guard offset(at: hi) != base else { return nil }
        var lo = lo, hi = hi
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2
            if offset(at: mid) == base { lo = mid } else { hi = mid }
        }
        return hi
    }

    /// The smallest wall-clock reading whose resolved instant is strictly after `unix`.
    /// Every local time at or above it resolves to an instant > `unix` (monotonicity).
    func localFloor(afterUnix a: Int64) -> Int64 {
        let naive = local(ofUnix: a) + 1
        if fixedOffset != nil { return naive }
        let e = resolve(local: naive)
        if e > a { return naive }
        // `a` lies in the second pass of a fall-back overlap: every ambiguous wall time already
        // fired (at its first instant). Continue at the wall time where the overlap ends.
        let early = offset(at: e)
        guard let t = firstChange(after: e, notAfter: a) else { return naive + 1 }
        return max(naive, t + early)
    }
}

extension Date {
    /// Whole Unix seconds, rounded down.
    @inline(__always)
    var unixFloor: Int64 {
        let t = timeIntervalSince1970
        let f = t.rounded(.down)
        return Int64(f)
    }

    @inline(__always)
    init(unix: Int64) { self.init(timeIntervalSince1970: Double(unix)) }
}
