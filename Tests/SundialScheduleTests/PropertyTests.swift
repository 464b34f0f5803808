import Foundation
import Testing

@testable import SundialSchedule

/// Property tests over random schedules (seeded, so every failure reproduces).
@Suite("Properties")
struct PropertyTests {
    /// Fall-back/spring-forward instants of each zone in 2025–2031 (from Foundation).
    static func transitions(_ zoneName: String) -> [Date] {
        let tz = zone(zoneName)
        var out: [Date] = []
        var t = utc("2025-01-01T00:00:00Z")
        while let n = tz.nextDaylightSavingTimeTransition(after: t), n < utc("2031-01-01T00:00:00Z") {
            out.append(n)
            t = n
        }
        return out
    }

    /// Brute-force oracle: walk a window minute by minute in UTC, read the wall clock from
    /// Foundation, and apply the documented rules literally:
    /// - a matching wall-clock minute fires the first time the clock shows it;
    /// - matching minutes skipped by a forward jump fire at the first instant after the jump.
    static func bruteForce(
        window: ClosedRange<Date>, zoneName: String, matches: (Civil.Fields) -> Bool
    ) -> [Date] {
        let tz = zone(zoneName)
        func wall(_ t: Int64) -> Int64 { t + Int64(tz.secondsFromGMT(for: Date(unix: t))) }
        var out: [Date] = []
        var seen = Set<Int64>()
        let start = window.lowerBound.unixFloor / 60 * 60
        var previous = wall(start - 60)
        var t = start
        while t <= window.upperBound.unixFloor {
            let l = wall(t)
            var fire = false
            if l - previous > 60 {
                var skipped = previous + 60
                while skipped < l {
                    if matches(Civil.fields(local: skipped)) { fire = true }
                    skipped += 60
                }
            }
            if matches(Civil.fields(local: l)) && !seen.contains(l) { fire = true }
            if fire { out.append(Date(unix: t)) }
            seen.insert(l)
            previous = l
            t += 60
        }
        return out
    }

    static func cronMatches(_ c: CronExpression, _ f: Civil.Fields) -> Bool {
        (c.months >> UInt64(f.month)) & 1 == 1
            && c.dayMatches(dayNumber: f.dayNumber, day: f.day, daysInMonth: Civil.daysInMonth(f.year, f.month))
            && (c.hours >> UInt64(f.hour)) & 1 == 1 && (c.minutes >> UInt64(f.minute)) & 1 == 1
            && (c.seconds >> UInt64(f.second)) & 1 == 1
    }

    /// Compares `next(after:)` chains with the brute-force oracle in 2-day windows around DST
    /// transitions (and some ordinary days) in every test zone, for cron, weekdays and date.
    @Test(arguments: dstZones)
    func matchesBruteForceAroundTransitions(_ zoneName: String) throws {
        var rng = SplitMix64(seed: zoneName.utf8.reduce(UInt64(17)) { $0 &* 31 &+ UInt64($1) })
        let transitions = Self.transitions(zoneName)
        var gen = CronGenerator(rng: SplitMix64(seed: rng.next()), dense: true)
        var compared = 0
        for round in 0..<60 {
            let center: Date
            if !transitions.isEmpty && round % 5 != 4 {
                center = rng.pick(transitions).addingTimeInterval(Double(rng.int(-7200...7200)))
            } else {
                center = Date(timeIntervalSince1970: Double(rng.int(1_750_000_000...1_900_000_000)))
            }
            let after = center.addingTimeInterval(-Double(rng.int(0...86_400)))
            let end = after.addingTimeInterval(2 * 86_400)
            let schedule: TimerSchedule
            let matches: (Civil.Fields) -> Bool
            switch round % 3 {
            case 0:
                let text = gen.expression(allowSeconds: false)
                let e = try CronExpression(text)
                schedule = TimerSchedule(.cron(text), timeZone: zoneName)
                matches = { Self.cronMatches(e, $0) }
            case 1:
                let days = Set(Weekday.allCases.filter { _ in rng.chance(0.5) } + [rng.pick(Weekday.allCases)])
                let tod = LocalTime(hour: rng.pick([0, 1, 2, 3, 23, rng.int(0...23)]), minute: rng.pick([0, 15, 30, 45, 59]))
                schedule = TimerSchedule(.weekdays(days: days, timeOfDay: tod, recurring: true), timeZone: zoneName)
                matches = { f in
                    days.contains(Weekday(rawValue: Civil.isoWeekday(days: f.dayNumber))!) && f.hour == tod.hour
                        && f.minute == tod.minute && f.second == 0
                }
            default:
                let local = Civil.fields(local: center.unixFloor + Int64(offset(zoneName, center)))
                let tod = LocalTime(hour: rng.pick([0, 1, 2, 3, 23, rng.int(0...23)]), minute: rng.pick([0, 15, 30, 45]))
                schedule = TimerSchedule(
                    .date(year: nil, month: local.month, day: local.day, timeOfDay: tod), timeZone: zoneName)
                matches = { f in f.month == local.month && f.day == local.day && f.hour == tod.hour && f.minute == tod.minute }
            }
            // Window for the oracle starts a day earlier so a repeated hour's first pass is seen.
            let oracle = Self.bruteForce(window: after.addingTimeInterval(-86_400)...end, zoneName: zoneName, matches: matches)
                .filter { $0 > after }
            let ours = Array(schedule.occurrences(after: after).prefix { $0 <= end }.prefix(5000))
            #expect(ours == oracle, "\(schedule) after \(RFC3339.format(after)) in \(zoneName)")
            if ours != oracle {
                let o = ours.prefix(6).map { local($0, zoneName) }
                let b = oracle.prefix(6).map { local($0, zoneName) }
                Issue.record("ours \(o)\noracle \(b)")
                return
            }
            compared += oracle.count
        }
        #expect(compared > 100, "the windows should contain fires")
    }

    /// Random schedules of every kind, random zones and instants 1971–2099: occurrences are
    /// strictly increasing, strictly after the start, consistent with `next(after:)` from any
    /// point in between, and each one matches its rule on the wall clock (or is the first
    /// instant after a gap).
    @Test func orderingAndRuleAcrossKinds() throws {
        var rng = SplitMix64(seed: 2027)
        var gen = CronGenerator(rng: SplitMix64(seed: 99), dense: false)
        for i in 0..<400 {
            let zoneName = rng.pick(dstZones + ["UTC"])
            let after = Date(timeIntervalSince1970: Double(rng.int(40_000_000...4_000_000_000)) + (rng.chance(0.3) ? 0.5 : 0))
            let schedule: TimerSchedule
            switch i % 4 {
            case 0: schedule = TimerSchedule(.cron(gen.expression(allowSeconds: true)), timeZone: zoneName)
            case 1:
                let days = Set(Weekday.allCases.filter { _ in rng.chance(0.3) } + [rng.pick(Weekday.allCases)])
                let tod = rng.chance(0.2) ? nil : LocalTime(hour: rng.int(0...23), minute: rng.int(0...59), second: rng.int(0...59))
                schedule = TimerSchedule(.weekdays(days: days, timeOfDay: tod, recurring: true), timeZone: zoneName)
            case 2:
                let month = rng.int(1...12)
                let day = rng.int(1...(month == 2 ? 29 : Civil.daysInMonth(2001, month)))
                schedule = TimerSchedule(
                    .date(year: nil, month: month, day: day, timeOfDay: LocalTime(hour: rng.int(0...23), minute: rng.int(0...59))),
                    timeZone: zoneName)
            default:
                schedule = TimerSchedule(
                    .every(
                        interval: .milliseconds(Int64(rng.int(1000...90_000_000))),
                        start: rng.chance(0.7) ? after.addingTimeInterval(Double(rng.int(-10_000_000...10_000_000))) : nil,
                        end: nil), timeZone: zoneName)
            }
            try #require(schedule.violations(now: nil).isEmpty, "\(schedule)")
            let list = Array(schedule.occurrences(after: after).prefix(40))
            #expect(list.count == 40, "\(schedule)")
            var previous = after
            for o in list {
                #expect(o > previous, "\(schedule): \(RFC3339.format(o)) after \(RFC3339.format(previous))")
                previous = o
            }
            // Restarting from halfway between two occurrences lands on the later one.
            let unanchored: Bool
            if case .every(_, nil, _) = schedule.kind { unanchored = true } else { unanchored = false }
            for (a, b) in zip(list, list.dropFirst()).prefix(unanchored ? 0 : 10) {
                let mid = a.addingTimeInterval(b.timeIntervalSince(a) / 2)
                #expect(schedule.next(after: mid) == b, "\(schedule) from \(RFC3339.format(mid))")
            }
            // Wall-clock rule.
            let tz = zone(zoneName)
            for o in list {
                let f = Civil.fields(local: o.unixFloor + Int64(tz.secondsFromGMT(for: o)))
                let afterGap = tz.secondsFromGMT(for: o.addingTimeInterval(-1)) < tz.secondsFromGMT(for: o)
                switch schedule.kind {
                case .cron:
                    let ok = Self.cronMatches(schedule.cronExpression!, f) || afterGap
                    #expect(ok, "\(schedule): \(local(o, zoneName))")
                case .weekdays(let days, let tod, _):
                    let day = Weekday(rawValue: Civil.isoWeekday(days: f.dayNumber))!
                    let t = tod ?? .midnight
                    let ok = (days.contains(day) && f.hour == t.hour && f.minute == t.minute && f.second == t.second) || afterGap
                    #expect(ok, "\(schedule): \(local(o, zoneName))")
                case .date(_, let month, let day, let tod):
                    let ok = (f.month == month && f.day == day && f.hour == tod!.hour && f.minute == tod!.minute) || afterGap
                    #expect(ok, "\(schedule): \(local(o, zoneName))")
                    if month == 2 && day == 29 { #expect(Civil.isLeap(f.year)) }
                case .every(let interval, let start, _):
                    if let start {
                        let k = o.timeIntervalSince(start) / interval.seconds
                        #expect(abs(k - k.rounded()) < 1e-6, "\(schedule)")
                    }
                default: break
                }
            }
        }
    }

    /// `firstFire` of a recurring schedule equals `next(after:)` except for the weekday
    /// "immediately" rule, and is never before creation (except `at`).
    @Test func firstFireConsistency() {
        var rng = SplitMix64(seed: 5)
        var gen = CronGenerator(rng: SplitMix64(seed: 6), dense: false)
        for _ in 0..<300 {
            let zoneName = rng.pick(dstZones)
            let created = Date(timeIntervalSince1970: Double(rng.int(1_700_000_000...2_200_000_000)))
            let s = TimerSchedule(.cron(gen.expression(allowSeconds: true)), timeZone: zoneName)
            #expect(s.firstFire(createdAt: created) == s.next(after: created), "\(s)")
            let w = weekdays(Set(Weekday.allCases.filter { _ in rng.chance(0.4) } + [.monday]), nil, recurring: true, zoneName)
            let first = w.firstFire(createdAt: created)!
            #expect(first >= created)
            #expect((first == created) == (Self.todayIsSelected(w, created)))
        }
    }

    /// Garbage in never crashes, and every expression the parser accepts fires (the parser
    /// rejects expressions that can never fire).
    @Test func cronParserFuzz() {
        var rng = SplitMix64(seed: 404)
        let alphabet = Array("0123456789*/-,?LlWw#@ \tMONJANfebxyz".unicodeScalars.map(Character.init)) + ["é", "０", "\u{0}"]
        var gen = CronGenerator(rng: SplitMix64(seed: 405), dense: false)
        var accepted = 0
        for i in 0..<20_000 {
            var text = ""
            if i % 2 == 0 {
                // A valid expression with up to three random character edits.
                var chars = Array(gen.expression(allowSeconds: true))
                for _ in 0..<rng.int(0...3) where !chars.isEmpty {
                    let at = rng.int(0...(chars.count - 1))
                    switch rng.int(0...2) {
                    case 0: chars[at] = rng.pick(alphabet)
                    case 1: chars.insert(rng.pick(alphabet), at: at)
                    default: chars.remove(at: at)
                    }
                }
                text = String(chars)
            } else {
                text = String((0..<rng.int(0...30)).map { _ in rng.pick(alphabet) })
            }
            guard let e = try? CronExpression(text) else { continue }
            accepted += 1
            let start = Date(timeIntervalSince1970: Double(rng.int(0...4_000_000_000)))
            let next = e.next(after: start, in: zone(rng.pick(dstZones)))
            #expect(next != nil && next! > start, "\(text)")
        }
        #expect(accepted > 2000, "\(accepted)")
    }

    static func todayIsSelected(_ s: TimerSchedule, _ date: Date) -> Bool {
        guard case .weekdays(let days, _, _) = s.kind, let tz = s.resolvedTimeZone else { return false }
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = tz
        let foundationWeekday = cal.component(.weekday, from: date)  // 1 = Sunday
        return days.contains(Weekday(rawValue: (foundationWeekday + 5) % 7 + 1)!)
    }
}
