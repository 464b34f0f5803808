import Foundation

extension TimerSchedule {
    /// The nominal (un-jittered) next occurrence strictly after `after`, honouring `until` and
    /// `every`'s end but not `maxOccurrences` (use ``next(after:occurrencesSoFar:)`` for that).
    /// `delay` has no occurrence without its creation time: use ``firstFire(createdAt:)``.
    public func next(after: Date) -> Date? {
        next(after: after, occurrencesSoFar: 0)
    }

    /// The nominal next occurrence strictly after `after`, or nil when the schedule has ended:
    /// a one-shot kind that already fired (`occurrencesSoFar >= 1`), `maxOccurrences` reached,
    /// or the next occurrence lies beyond `until` / `every`'s end.
    public func next(after: Date, occurrencesSoFar: UInt64) -> Date? {
        if isRecurring {
            if let max = maxOccurrences, occurrencesSoFar >= max { return nil }
        } else if occurrencesSoFar >= 1 {
            return nil
        }
        guard let candidate = rawNext(after: after) else { return nil }
        return withinEnd(candidate) ? candidate : nil
    }

    /// The first occurrence of a timer created at `createdAt` (nominal, without jitter):
    /// - delay: `createdAt + duration`; at: the instant (even if it is not after `createdAt`);
    /// - weekdays with a time of day, date, cron: the first occurrence strictly after
    ///   `createdAt`;
    /// - weekdays without a time of day: `createdAt` itself when today (local) is a selected
    ///   day, else 00:00 local of the next selected day;
    /// - every: `start` when it is at or after `createdAt`, else the first `start + k·interval`
    ///   at or after `createdAt`; without `start`, `createdAt + interval`.
    public func firstFire(createdAt: Date) -> Date? {
        if isRecurring, let max = maxOccurrences, max == 0 { return nil }
        let candidate: Date?
        switch kind {
        case .delay(let d):
            candidate = createdAt.addingTimeInterval(d.seconds)
        case .at(let instant):
            candidate = instant
        case .weekdays(let days, nil, _):
            if let rules, Self.weekdayMask(days) & Self.bit(localDayOf: createdAt, rules) != 0 {
                candidate = createdAt
            } else {
                candidate = rawNext(after: createdAt)
            }
        case .every(let interval, let start?, _):
            let iv = interval.seconds
            guard iv > 0 else { return nil }
            if createdAt <= start {
                candidate = start
            } else {
                var k = ((createdAt.timeIntervalSince(start)) / iv).rounded(.up)
                while start.addingTimeInterval((k - 1) * iv) >= createdAt && k > 0 { k -= 1 }
                while start.addingTimeInterval(k * iv) < createdAt { k += 1 }
                candidate = start.addingTimeInterval(k * iv)
            }
        case .every(let interval, nil, _):
            candidate = interval > .zero ? createdAt.addingTimeInterval(interval.seconds) : nil
        case .weekdays, .date, .cron:
            candidate = rawNext(after: createdAt)
        }
        guard let candidate else { return nil }
        return withinEnd(candidate) ? candidate : nil
    }

    /// Upcoming nominal occurrences strictly after `after`, lazily, honouring all end
    /// conditions. `occurrencesSoFar` counts occurrences that already fired (for
    /// `maxOccurrences`).
    public func occurrences(after: Date, occurrencesSoFar: UInt64 = 0) -> ScheduleOccurrences {
        ScheduleOccurrences(schedule: self, first: nil, after: after, count: occurrencesSoFar)
    }

    /// Every nominal occurrence of a timer created at `createdAt`: ``firstFire(createdAt:)``,
    /// then each following occurrence, honouring all end conditions.
    public func upcoming(createdAt: Date) -> ScheduleOccurrences {
        ScheduleOccurrences(schedule: self, first: createdAt, after: createdAt, count: 0)
    }

    // MARK: - Internals

    func withinEnd(_ d: Date) -> Bool {
        guard isRecurring else { return true }  // end conditions are ignored by one-shot kinds
        if let until, d > until { return false }
        if case .every(_, _, let end?) = kind, d > end { return false }
        return true
    }

    @inline(__always)
    static func weekdayMask(_ days: Set<Weekday>) -> UInt8 {
        var m: UInt8 = 0
        for d in days { m |= 1 << UInt8(d.rawValue - 1) }
        return m
    }

    @inline(__always)
    static func bit(localDayOf date: Date, _ rules: ZoneRules) -> UInt8 {
        let l = rules.local(ofUnix: date.unixFloor)
        return bit(dayNumber: Civil.floorDiv(l, Civil.secondsPerDay))
    }

    @inline(__always)
    static func bit(dayNumber: Int64) -> UInt8 { 1 << UInt8(Civil.isoWeekday(days: dayNumber) - 1) }

    /// Next occurrence by the kind's rule alone, strictly after `after`.
    func rawNext(after: Date) -> Date? {
        switch kind {
        case .delay:
            return nil
        case .at(let instant):
            return instant > after ? instant : nil
        case .weekdays(let days, let tod, _):
            guard let rules else { return nil }
            let mask = Self.weekdayMask(days)
            guard mask != 0 else { return nil }
            let todSeconds = tod?.secondsOfDay ?? 0
            guard (0..<Civil.secondsPerDay).contains(todSeconds) else { return nil }
            return WallClockSearch.next(after: after, rules: rules) { floor in
                let day = Civil.floorDiv(floor, Civil.secondsPerDay)
                let sod = floor - day * Civil.secondsPerDay
                if mask & Self.bit(dayNumber: day) != 0 && todSeconds >= sod {
                    return day * Civil.secondsPerDay + todSeconds
                }
                for k in Int64(1)...7 where mask & Self.bit(dayNumber: day + k) != 0 {
                    return (day + k) * Civil.secondsPerDay + todSeconds
                }
                return nil
            }
        case .date(let year, let month, let day, let tod):
            guard let rules, (1...12).contains(month), day >= 1 else { return nil }
            let todSeconds = tod?.secondsOfDay ?? 0
            guard (0..<Civil.secondsPerDay).contains(todSeconds) else { return nil }
            if let year {
                guard day <= Civil.daysInMonth(year, month) else { return nil }
                let l = Civil.days(year, month, day) * Civil.secondsPerDay + todSeconds
                return WallClockSearch.next(after: after, rules: rules) { floor in l >= floor ? l : nil }
            }
            guard day <= (month == 2 ? 29 : Civil.daysInMonth(2001, month)) else { return nil }
            return WallClockSearch.next(after: after, rules: rules) { floor in
                let y0 = Civil.fields(local: floor).year
                for y in y0...(y0 + 8) where day <= Civil.daysInMonth(y, month) {
                    let l = Civil.days(y, month, day) * Civil.secondsPerDay + todSeconds
                    if l >= floor { return l }
                }
                return nil
            }
        case .cron:
            guard let rules, let cron = cronExpression else { return nil }
            return WallClockSearch.next(after: after, rules: rules) { cron.nextLocal(atOrAfter: $0) }
        case .every(let interval, let start, let end):
            let iv = interval.seconds
            guard iv > 0 else { return nil }
            let candidate: Date
            if let start {
                if after < start {
                    candidate = start
                } else {
                    var k = (after.timeIntervalSince(start) / iv).rounded(.down) + 1
                    while k > 1 && start.addingTimeInterval((k - 1) * iv) > after { k -= 1 }
                    while start.addingTimeInterval(k * iv) <= after { k += 1 }
                    candidate = start.addingTimeInterval(k * iv)
                }
            } else {
                candidate = after.addingTimeInterval(iv)
            }
            if let end, candidate > end { return nil }
            return candidate
        }
    }
}

/// A lazy sequence of nominal occurrences (see ``TimerSchedule/occurrences(after:occurrencesSoFar:)``
/// and ``TimerSchedule/upcoming(createdAt:)``). Always strictly increasing; ends when the
/// schedule ends.
public struct ScheduleOccurrences: Sequence, IteratorProtocol, Sendable {
    let schedule: TimerSchedule
    var first: Date?
    var after: Date
    var count: UInt64
    var done = false

    init(schedule: TimerSchedule, first: Date?, after: Date, count: UInt64) {
        self.schedule = schedule
        self.first = first
        self.after = after
        self.count = count
    }

    public mutating func next() -> Date? {
        guard !done else { return nil }
        let value: Date?
        if let createdAt = first {
            first = nil
            value = schedule.firstFire(createdAt: createdAt)
        } else {
            value = schedule.next(after: after, occurrencesSoFar: count)
        }
        guard let value else {
            done = true
            return nil
        }
        after = value
        count += 1
        return value
    }
}
