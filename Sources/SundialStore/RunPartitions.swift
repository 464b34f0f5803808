import Foundation
import SundialCore

/// One partition of `timer_runs` (migrations 0012–0014): a range of timer ids, which are UUIDv7, so a
/// span of timer creation time.
public struct RunPartition: Sendable, Hashable {
    public var name: String
    /// Lowest id in the partition; nil: no lower bound (MINVALUE).
    public var lower: UUID?
    /// First id after the partition (exclusive); nil: no upper bound (MAXVALUE).
    public var upper: UUID?
    /// The default partition: ids no other partition covers. Never created or dropped here.
    public var isDefault: Bool

    public init(name: String, lower: UUID?, upper: UUID?, isDefault: Bool = false) {
        self.name = name
        self.lower = lower
        self.upper = upper
        self.isDefault = isDefault
    }

    /// Reads Postgres's `pg_get_expr(relpartbound)`: `DEFAULT`, or
    /// `FOR VALUES FROM (MINVALUE | '<uuid>') TO (MAXVALUE | '<uuid>')`; nil for anything else.
    public init?(name: String, bound: String) {
        if bound.trimmingCharacters(in: .whitespaces) == "DEFAULT" {
            self.init(name: name, lower: nil, upper: nil, isDefault: true)
            return
        }
        guard bound.hasPrefix("FOR VALUES FROM ("), let to = bound.range(of: ") TO (") else { return nil }
        func value(_ text: Substring) -> UUID?? {
            let trimmed = text.trimmingCharacters(in: CharacterSet(charactersIn: " ()"))
            if trimmed == "MINVALUE" || trimmed == "MAXVALUE" { return .some(nil) }
            guard trimmed.hasPrefix("'"), trimmed.hasSuffix("'"), trimmed.count == 38,
                  let id = UUID(uuidString: String(trimmed.dropFirst().dropLast()))
            else { return nil }
            return .some(id)
        }
        let from = bound[bound.index(bound.startIndex, offsetBy: "FOR VALUES FROM (".count)..<to.lowerBound]
        guard let lower = value(from), let upper = value(bound[to.upperBound...]) else { return nil }
        self.init(name: name, lower: lower, upper: upper)
    }
}

/// Which `timer_runs` partitions to create and which are closed (pure; the clock is a
/// parameter). Partitions span `periodDays` UTC days of timer creation, aligned to multiples
/// of the period since 1970-01-01, each named by its first day, `timer_runs_pYYYYMMDD`; a range
/// another partition already covers (the legacy one, the days migration 0014 made) is left to
/// it, and the rest of the period becomes a shorter partition. A partition is *closed* when its
/// whole range was created before the reaper's day bound (`reapBefore`), so the retention has
/// passed for the creation time of every timer in it. Only closed partitions are reaped: a
/// timer is deleted between one retention and one retention plus a period (and a day) after
/// it finished.
public enum RunPartitionCalendar {
    static let secondsPerDay: TimeInterval = 86_400

    /// The start (00:00 UTC) of `instant`'s day.
    public static func dayStart(_ instant: Date) -> Date {
        Date(timeIntervalSince1970: (instant.timeIntervalSince1970 / secondsPerDay).rounded(.down) * secondsPerDay)
    }

    /// The start of `instant`'s period of `periodDays` days.
    public static func periodStart(_ instant: Date, periodDays: Int) -> Date {
        let length = secondsPerDay * Double(max(1, periodDays))
        return Date(timeIntervalSince1970: (instant.timeIntervalSince1970 / length).rounded(.down) * length)
    }

    /// `timer_runs_pYYYYMMDD` for the UTC day starting at `day`.
    public static func name(day: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: day)
        return String(format: "timer_runs_p%04d%02d%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
    }

    /// The partitions to create so that every id from today to `lookaheadDays` ahead (to the
    /// end of that day's period) has one: the periods, less what existing partitions cover.
    public static func missing(now: Date, lookaheadDays: Int, periodDays: Int = 1, existing: [RunPartition]) -> [RunPartition] {
        let length = secondsPerDay * Double(max(1, periodDays))
        let today = dayStart(now)
        let last = periodStart(today.addingTimeInterval(Double(max(0, lookaheadDays)) * secondsPerDay), periodDays: periodDays)
        // What is covered, as seconds since 1970 (an open bound: infinite).
        let covered = existing.filter { !$0.isDefault }.map { partition in
            (lower: partition.lower.map(seconds) ?? -.infinity, upper: partition.upper.map(seconds) ?? .infinity)
        }
        var gaps: [RunPartition] = []
        var start = max(periodStart(today, periodDays: periodDays), today).timeIntervalSince1970
        var periodEnd = periodStart(today, periodDays: periodDays).timeIntervalSince1970 + length
        while start < last.timeIntervalSince1970 + length {
            // The first stretch of [start, periodEnd) no partition covers.
            var lower = start
            var moved = true
            while moved {
                moved = false
                for range in covered where range.lower <= lower && lower < range.upper {
                    lower = range.upper
                    moved = true
                }
            }
            if lower < periodEnd {
                let upper = covered.map(\.lower).filter { $0 > lower && $0 < periodEnd }.min() ?? periodEnd
                let from = Date(timeIntervalSince1970: lower)
                gaps.append(RunPartition(
                    name: name(day: dayStart(from)), lower: TimerID.lowerBound(at: from),
                    upper: TimerID.lowerBound(at: Date(timeIntervalSince1970: upper))))
                start = upper
            } else {
                start = periodEnd
            }
            if start >= periodEnd { periodEnd += length }
        }
        return gaps
    }

    /// The creation instant an id's first 48 bits name (Unix milliseconds), in seconds.
    static func seconds(_ id: UUID) -> TimeInterval {
        let millis = withUnsafeBytes(of: id.uuid) { bytes in (0..<6).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) } }
        return Double(millis) / 1000
    }

    /// The reaper's bound: timers created before this instant are past the retention's day.
    /// Never later than yesterday's start, so a day is closed only once a whole day has passed
    /// since it ended: no create can still be in flight with an id of it (however short the
    /// retention), and a drop never takes the run of a timer being created.
    public static func reapBefore(now: Date, retention: Duration) -> Date {
        let seconds = Double(retention.components.seconds) + Double(retention.components.attoseconds) / 1e18
        return min(dayStart(now.addingTimeInterval(-seconds)), dayStart(now).addingTimeInterval(-secondsPerDay))
    }

    /// The closed partitions among `partitions`, oldest first (never the default one).
    public static func closed(_ partitions: [RunPartition], reapBefore: Date) -> [RunPartition] {
        let bound = TimerID.lowerBound(at: reapBefore)
        return partitions
            .filter { partition in
                guard !partition.isDefault, let upper = partition.upper else { return false }
                return !precedes(bound, upper)
            }
            .sorted { a, b in
                guard let lowerA = a.lower else { return b.lower != nil }
                guard let lowerB = b.lower else { return false }
                return precedes(lowerA, lowerB)
            }
    }

    /// Where the row-by-row walk stops: `reapBefore`, or earlier, at the lower bound of the
    /// oldest partition that is not closed yet, whose timers go with it as one table once it
    /// closes (with weekly partitions the day bound falls inside one). The legacy partition
    /// (no lower bound) never stops the walk: it holds the history from before partitioning.
    public static func walkBefore(_ partitions: [RunPartition], reapBefore: Date) -> Date {
        let bound = TimerID.lowerBound(at: reapBefore)
        let open = partitions.compactMap { partition -> TimeInterval? in
            guard !partition.isDefault, let lower = partition.lower else { return nil }
            if let upper = partition.upper, !precedes(bound, upper) { return nil }  // closed
            return seconds(lower)
        }
        guard let oldest = open.min() else { return reapBefore }
        return min(reapBefore, Date(timeIntervalSince1970: oldest))
    }

    /// Postgres's uuid order: bytewise.
    static func precedes(_ a: UUID, _ b: UUID) -> Bool {
        withUnsafeBytes(of: a.uuid) { left in
            withUnsafeBytes(of: b.uuid) { right in left.lexicographicallyPrecedes(right) }
        }
    }
}
