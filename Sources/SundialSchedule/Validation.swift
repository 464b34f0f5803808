import Foundation

extension TimerSchedule {
    /// Smallest accepted `every` interval.
    public static let minimumInterval: Duration = .seconds(1)
    /// Largest accepted delay, `every` interval and jitter window.
    public static let maximumDelay: Duration = .seconds(100 * 366 * 86_400)
    public static let maximumJitter: Duration = .seconds(86_400)

    /// Field-path prefix of the kind in the wire message ("schedule.cron", …).
    var kindPath: String { "schedule.\(kindName)" }

    /// Throws every problem with this schedule at once. `now` is the creation time: once-only
    /// `at`/`date` schedules and `until`/`every.end` in the past are rejected.
    public func validate(now: Date) throws(ScheduleValidationError) {
        let found = violations(now: now)
        if !found.isEmpty { throw ScheduleValidationError(violations: found) }
    }

    /// All problems; with `now == nil` only the time-independent ones (zone, cron syntax,
    /// ranges, …).
    public func violations(now: Date?) -> [ScheduleViolation] {
        var out: [ScheduleViolation] = []
        func add(_ field: String, _ reason: String) { out.append(ScheduleViolation(field: field, reason: reason)) }
        if let zoneError { add("schedule.time_zone", zoneError) }

        switch kind {
        case .delay(let d):
            if d < .zero {
                add("schedule.delay.duration", "must not be negative (got \(ScheduleDuration.format(d)))")
            } else if d > Self.maximumDelay {
                add("schedule.delay.duration", "must be at most 100 years")
            }
        case .at(let instant):
            if let now, instant < now {
                add("schedule.at.instant", "\(RFC3339.format(instant)) is in the past (now is \(RFC3339.format(now)))")
            }
        case .weekdays(let days, let tod, _):
            if days.isEmpty { add("schedule.weekdays.days", "must name at least one weekday") }
            if let tod { checkTime(tod, "schedule.weekdays.time_of_day", &out) }
        case .date(let year, let month, let day, let tod):
            if let tod { checkTime(tod, "schedule.date.time_of_day", &out) }
            if let year, !(1...9999).contains(year) {
                add("schedule.date.year", "must be between 1 and 9999, or 0 for every year (got \(year))")
            }
            if !(1...12).contains(month) {
                add("schedule.date.month", "must be between 1 and 12 (got \(month))")
            } else {
                let maxDay: Int
                if let year, (1...9999).contains(year) {
                    maxDay = Civil.daysInMonth(year, month)
                } else {
                    maxDay = month == 2 ? 29 : Civil.daysInMonth(2001, month)
                }
                if !(1...maxDay).contains(day) {
                    let which = year.map { "\($0)-\(month < 10 ? "0" : "")\(month)" } ?? "month \(month)"
                    add("schedule.date.day", "must be between 1 and \(maxDay) for \(which) (got \(day))")
                }
            }
            if out.isEmpty, let now, let year, let rules {
                let l = Civil.days(year, month, day) * Civil.secondsPerDay + (tod?.secondsOfDay ?? 0)
                let instant = Date(unix: rules.resolve(local: l))
                if instant <= now {
                    add(
                        "schedule.date",
                        "\(RFC3339.formatLocal(instant, zone: rules.zone, zoneName: timeZone)) is in the past; a once-only date must be in the future (set year to 0 for every year)"
                    )
                }
            }
        case .cron:
            if let cronError { add("schedule.cron.expression", cronError.description) }
        case .every(let interval, let start, let end):
            if interval < Self.minimumInterval {
                add("schedule.every.interval", "must be at least \(ScheduleDuration.format(Self.minimumInterval)) (got \(ScheduleDuration.format(interval)))")
            } else if interval > Self.maximumDelay {
                add("schedule.every.interval", "must be at most 100 years")
            }
            if let start, let end, end <= start {
                add("schedule.every.end", "must be after start (\(RFC3339.format(start)))")
            } else if let now, let end, end < now {
                add("schedule.every.end", "\(RFC3339.format(end)) is in the past")
            }
        }

        if let max = maxOccurrences, max == 0 {
            add("schedule.end.max_occurrences", "must be at least 1 (leave it unset for no limit)")
        }
        if isRecurring, let now, let until, until < now {
            add("schedule.end.until", "\(RFC3339.format(until)) is in the past")
        }
        if let jitter {
            if jitter < .zero {
                add("schedule.jitter", "must not be negative")
            } else if jitter > Self.maximumJitter {
                add("schedule.jitter", "must be at most 24h (got \(ScheduleDuration.format(jitter)))")
            } else if jitter > .zero, isRecurring, let shortest = shortestInterval, jitter >= shortest {
                add(
                    "schedule.jitter",
                    "must be smaller than the shortest interval between fires (\(ScheduleDuration.format(shortest))); got \(ScheduleDuration.format(jitter))"
                )
            }
        }
        if out.isEmpty, let now, isRecurring, firstFire(createdAt: now) == nil {
            if until != nil {
                add("schedule.end.until", "the schedule has no occurrence between now and until")
            } else {
                add("schedule", "the schedule has no occurrence after now")
            }
        }
        return out
    }

    private func checkTime(_ t: LocalTime, _ field: String, _ out: inout [ScheduleViolation]) {
        if !(0...23).contains(t.hour) { out.append(.init(field: "\(field).hour", reason: "must be between 0 and 23 (got \(t.hour))")) }
        if !(0...59).contains(t.minute) { out.append(.init(field: "\(field).minute", reason: "must be between 0 and 59 (got \(t.minute))")) }
        if !(0...59).contains(t.second) { out.append(.init(field: "\(field).second", reason: "must be between 0 and 59 (got \(t.second))")) }
    }

    /// Lower bound of the nominal gap between two consecutive fires of a recurring schedule
    /// (DST can shorten a wall-clock gap by the size of the shift); nil for one-shot kinds or
    /// invalid schedules. A jitter window must be smaller than this.
    public var shortestInterval: Duration? {
        guard isRecurring else { return nil }
        switch kind {
        case .every(let interval, _, _): return interval
        case .cron: return cronExpression.map { .seconds($0.shortestInterval) }
        case .date: return .seconds(365 * 86_400)
        case .weekdays(let days, _, _):
            let sorted = days.map(\.rawValue).sorted()
            guard let first = sorted.first, let last = sorted.last else { return nil }
            var gap = first + 7 - last
            for (a, b) in zip(sorted, sorted.dropFirst()) { gap = min(gap, b - a) }
            return .seconds(gap * 86_400)
        case .delay, .at: return nil
        }
    }
}
