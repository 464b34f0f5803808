import Foundation
import SundialCore
import SundialStore
import Testing

/// `timer_runs` partitions (migrations 0012–0014): one per period of UTC days of timer creation, created ahead,
/// closed once the retention's day has passed for the whole range. The clock is injected.
@Suite("Run partition calendar")
struct RunPartitionCalendarTests {
    /// 2026-12-07 15:30:00 UTC.
    let now = Date(timeIntervalSince1970: 1_796_657_400)

    func day(_ offset: Int) -> Date {
        RunPartitionCalendar.dayStart(now).addingTimeInterval(Double(offset) * 86_400)
    }

    func partition(_ offset: Int) -> RunPartition {
        RunPartition(
            name: RunPartitionCalendar.name(day: day(offset)), lower: TimerID.lowerBound(at: day(offset)),
            upper: TimerID.lowerBound(at: day(offset + 1)))
    }

    /// A partition of the days [from, to).
    func range(_ from: Int, _ to: Int) -> RunPartition {
        RunPartition(name: RunPartitionCalendar.name(day: day(from)), lower: TimerID.lowerBound(at: day(from)),
                     upper: TimerID.lowerBound(at: day(to)))
    }

    @Test func daysStartAtUTCMidnightAndNameTheirPartition() {
        #expect(RunPartitionCalendar.dayStart(now) == Date(timeIntervalSince1970: 1_796_601_600))
        #expect(RunPartitionCalendar.name(day: day(0)) == "timer_runs_p20261207")
        #expect(RunPartitionCalendar.name(day: day(25)) == "timer_runs_p20270101")
    }

    @Test func missingDaysAreTodayToTheLookaheadLessWhatAnotherPartitionCovers() {
        let fresh = RunPartitionCalendar.missing(now: now, lookaheadDays: 2, existing: [])
        #expect(fresh == [partition(0), partition(1), partition(2)])
        // An id made today is in today's range (uuid text order is Postgres's byte order).
        let made = TimerID.make(now: now).uuidString
        #expect(made >= fresh[0].lower!.uuidString && made < fresh[0].upper!.uuidString)
        #expect(TimerID.make(now: day(1).addingTimeInterval(-0.001)).uuidString < fresh[0].upper!.uuidString)

        // Today exists; a legacy partition reaching an hour into tomorrow leaves the rest of
        // tomorrow; the default partition covers nothing that can be created.
        let legacy = RunPartition(name: "timer_runs_legacy", lower: nil, upper: TimerID.lowerBound(at: day(1).addingTimeInterval(3600)))
        let existing = [partition(0), legacy, RunPartition(name: "timer_runs_default", lower: nil, upper: nil, isDefault: true)]
        let restOfTomorrow = RunPartition(
            name: "timer_runs_p20261208", lower: TimerID.lowerBound(at: day(1).addingTimeInterval(3600)),
            upper: TimerID.lowerBound(at: day(2)))
        #expect(RunPartitionCalendar.missing(now: now, lookaheadDays: 3, existing: existing) == [restOfTomorrow, partition(2), partition(3)])
        // A legacy partition open upwards (MAXVALUE) leaves nothing to create.
        let everything = RunPartition(name: "timer_runs_legacy", lower: nil, upper: nil)
        #expect(RunPartitionCalendar.missing(now: now, lookaheadDays: 3, existing: [everything]).isEmpty)
    }

    @Test func weeklyPeriodsAreAlignedAndFillWhatOtherPartitionsLeave() {
        // 2026-12-07 is a Monday; periods of 7 days since 1970-01-01 (a Thursday) start on
        // Thursdays: 2026-12-03, 2026-12-10, 2026-12-17.
        let thursday = day(-4)
        #expect(RunPartitionCalendar.periodStart(now, periodDays: 7) == thursday)
        // Nothing yet: from today (not the period's start) to the end of the lookahead's period.
        #expect(RunPartitionCalendar.missing(now: now, lookaheadDays: 2, periodDays: 7, existing: []) == [range(0, 3)])
        #expect(RunPartitionCalendar.missing(now: now, lookaheadDays: 3, periodDays: 7, existing: [])
            == [range(0, 3), range(3, 10)])
        // After a migration: legacy up to the day after tomorrow, three day partitions; the
        // rest of that week, then whole weeks.
        let legacy = RunPartition(name: "timer_runs_legacy", lower: nil, upper: TimerID.lowerBound(at: day(2)))
        let migrated = [legacy, range(2, 3), range(3, 4), range(4, 5)]
        #expect(RunPartitionCalendar.missing(now: now, lookaheadDays: 10, periodDays: 7, existing: migrated)
            == [range(5, 10), range(10, 17)])
        // A legacy partition open upwards leaves nothing.
        #expect(RunPartitionCalendar.missing(
            now: now, lookaheadDays: 10, periodDays: 7,
            existing: [RunPartition(name: "timer_runs_legacy", lower: nil, upper: nil)]).isEmpty)
        // A hole between two partitions inside one period.
        #expect(RunPartitionCalendar.missing(now: now, lookaheadDays: 2, periodDays: 7, existing: [range(0, 1), range(2, 3)])
            == [range(1, 2)])
    }

    @Test func aPartitionIsClosedOnceTheRetentionsDayHasPassedForItsWholeRange() {
        let week = Duration.seconds(7 * 86_400)
        // now − 7 d is 2026-11-30 15:30: the reaper's bound is that day's midnight.
        #expect(RunPartitionCalendar.reapBefore(now: now, retention: week) == day(-7))
        // However short the retention, a day closes only a whole day after it ended.
        #expect(RunPartitionCalendar.reapBefore(now: now, retention: .seconds(1)) == day(-1))
        #expect(RunPartitionCalendar.reapBefore(now: now, retention: .seconds(3 * 86_400)) == day(-3))
        let legacy = RunPartition(name: "timer_runs_legacy", lower: nil, upper: TimerID.lowerBound(at: day(-9)))
        let all = [partition(-6), partition(-7), partition(-8), legacy, partition(0),
                   RunPartition(name: "timer_runs_default", lower: nil, upper: nil, isDefault: true)]
        // −8 ends at −7's midnight (closed); −7 ends after the bound (open). Oldest first.
        #expect(RunPartitionCalendar.closed(all, reapBefore: day(-7)) == [legacy, partition(-8)])
        #expect(RunPartitionCalendar.closed(all, reapBefore: day(1)).map(\.name)
            == ["timer_runs_legacy", "timer_runs_p20261129", "timer_runs_p20261130", "timer_runs_p20261201", "timer_runs_p20261207"])
    }

    @Test func theWalkStopsAtTheFirstPartitionThatIsNotClosed() {
        let week = Duration.seconds(7 * 86_400)
        let reapBefore = RunPartitionCalendar.reapBefore(now: now, retention: week)  // day(−7)
        let legacy = RunPartition(name: "timer_runs_legacy", lower: nil, upper: TimerID.lowerBound(at: day(-3)))
        let defaultPartition = RunPartition(name: "timer_runs_default", lower: nil, upper: nil, isDefault: true)
        // Weekly partitions: [−10, −3) is open at a day(−7) bound, so the walk stops at −10,
        // leaving its finished timers to go with it.
        #expect(RunPartitionCalendar.walkBefore([range(-17, -10), range(-10, -3), range(-3, 4), defaultPartition],
                                                reapBefore: reapBefore) == day(-10))
        // Daily ones: the bound is a partition boundary; the walk goes up to it.
        #expect(RunPartitionCalendar.walkBefore([partition(-8), partition(-7), partition(-6)], reapBefore: reapBefore) == day(-7))
        // An open legacy partition (the history from before partitioning) does not stop it.
        #expect(RunPartitionCalendar.walkBefore([legacy, range(-3, 4), defaultPartition], reapBefore: reapBefore) == day(-7))
        // No partitions but the default: the day bound.
        #expect(RunPartitionCalendar.walkBefore([defaultPartition], reapBefore: reapBefore) == reapBefore)
    }

    @Test func boundsReadFromPostgresAndAnythingElseIsRefused() {
        let id = "0193a1b2-c3d4-0000-0000-000000000000"
        #expect(RunPartition(name: "d", bound: "DEFAULT") == RunPartition(name: "d", lower: nil, upper: nil, isDefault: true))
        #expect(RunPartition(name: "l", bound: "FOR VALUES FROM (MINVALUE) TO ('\(id)')")
            == RunPartition(name: "l", lower: nil, upper: UUID(uuidString: id)))
        #expect(RunPartition(name: "p", bound: "FOR VALUES FROM ('\(id)') TO (MAXVALUE)")
            == RunPartition(name: "p", lower: UUID(uuidString: id), upper: nil))
        for bad in ["", "FOR VALUES IN ('a')", "FOR VALUES FROM ('nope') TO (MAXVALUE)", "FOR VALUES FROM ('\(id)')",
                    "FOR VALUES FROM (\(id)) TO (MAXVALUE)"] {
            #expect(RunPartition(name: "x", bound: bad) == nil, "\(bad)")
        }
    }
}
