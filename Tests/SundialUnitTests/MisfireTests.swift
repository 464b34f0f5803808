import Foundation
import SundialCore
import SundialSchedule
import Testing

/// Misfire policies at load and at resume, with an injected `now` (no clock is read).
@Suite("Unit: misfire policy")
struct MisfireTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    let id = UUID()
    let everyMinute = TimerSchedule(.every(interval: .seconds(60), start: nil, end: nil))

    /// Loading the first occurrence `late` seconds after it was due, through 5 min ahead.
    func load(_ schedule: TimerSchedule, late: TimeInterval, policy: MisfirePolicy, window: TimeInterval? = nil) throws -> (LoadStep, Date) {
        let first = try #require(OccurrenceStepper.first(schedule, timerID: TimerID.text(id), createdAt: start))
        let now = first.fireAt.addingTimeInterval(late)
        let step = LoadStep.loading(
            first, recurring: true, schedule: schedule, timerID: id, through: now.addingTimeInterval(300), limit: 1000,
            misfire: MisfireRule(policy: policy, catchupWindow: window, now: now))
        return (step, now)
    }

    @Test("a load less than a minute late is on time under every policy: nothing is skipped")
    func lateButNotMissed() throws {
        for policy in MisfirePolicy.allCases {
            let (step, _) = try load(everyMinute, late: 59, policy: policy)
            #expect(step.skipped == 0)
            #expect(step.runs.first?.occurrence == 0)
        }
    }

    @Test("after a 10-minute outage: fire_all arms every missed occurrence, fire_once the latest, skip none")
    func policiesAfterOutage() throws {
        // Due at +60 s steps from the first; loaded 10 min (600 s) after the first was due:
        // occurrences 0…8 are more than 60 s late (missed), 9 is exactly 60 s late (on time),
        // 10 is due now, 11… are ahead.
        let (all, now) = try load(everyMinute, late: 600, policy: .fireAll)
        #expect(all.skipped == 0)
        #expect(Array(all.runs.prefix(11).map(\.occurrence)) == Array(0...10))

        let (once, _) = try load(everyMinute, late: 600, policy: .fireOnce)
        #expect(once.skipped == 8)
        #expect(once.runs.first?.occurrence == 8)  // the latest missed: one catch-up
        #expect(once.runs.dropFirst().first?.occurrence == 9)
        #expect(once.runs.dropFirst().allSatisfy { $0.dueAt >= now.addingTimeInterval(-60) })

        let (skip, _) = try load(everyMinute, late: 600, policy: .skip)
        #expect(skip.skipped == 9)
        #expect(skip.runs.first?.occurrence == 9)
        // The numbers skipped are used up: the cursor is past every armed run.
        #expect(skip.nextOccurrence == (skip.runs.last?.occurrence ?? 0) + 1)
    }

    @Test("the catch-up window skips missed occurrences older than it, whatever the policy")
    func catchupWindow() throws {
        // 10 min late, window 3 min: missed occurrences due more than 180 s ago are skipped (0…6).
        let (all, now) = try load(everyMinute, late: 600, policy: .fireAll, window: 180)
        #expect(all.skipped == 7)
        #expect(all.runs.first?.occurrence == 7)
        #expect(all.runs.first.map { $0.dueAt >= now.addingTimeInterval(-180) } == true)
        // fire_once whose latest missed occurrence is older than the window: nothing catches up.
        let (once, _) = try load(everyMinute, late: 600, policy: .fireOnce, window: 30)
        #expect(once.skipped == 9)
        #expect(once.runs.first?.occurrence == 9)
    }

    @Test("a schedule that ends among the missed occurrences completes the timer with nothing armed")
    func endsWhileSkipping() throws {
        let limited = TimerSchedule(.every(interval: .seconds(60), start: nil, end: nil), maxOccurrences: 3)
        let (step, _) = try load(limited, late: 3600, policy: .skip)
        #expect(step.runs.isEmpty)
        #expect(step.skipped == 3)
        #expect(step.nextState == .completed)
        let (once, _) = try load(limited, late: 3600, policy: .fireOnce)
        #expect(once.runs.map(\.occurrence) == [2])
        #expect(once.skipped == 2 && once.nextState == .completed)
    }

    @Test("skipping is bounded per load; the rest is skipped at the next load")
    func boundedSkips() throws {
        let everySecond = TimerSchedule(.every(interval: .seconds(1), start: nil, end: nil))
        let (step, _) = try load(everySecond, late: 86_400, policy: .skip)
        #expect(step.runs.isEmpty)
        #expect(step.skipped == LoadStep.maximumSkipsPerLoad)
        #expect(step.nextState == .scheduled)
        #expect(step.nextOccurrence == Int64(LoadStep.maximumSkipsPerLoad))
    }

    @Test("one-shot timers are never skipped, however late")
    func oneShotAlwaysFires() throws {
        let first = try #require(OccurrenceStepper.first(TimerSchedule(.delay(.seconds(5))), timerID: TimerID.text(id), createdAt: start))
        let step = LoadStep.loading(
            first, recurring: false, schedule: nil, timerID: id,
            misfire: MisfireRule(policy: .skip, catchupWindow: 1, now: start.addingTimeInterval(86_400)))
        #expect(step.runs.map(\.occurrence) == [0])
        #expect(step.skipped == 0)
    }

    @Test("resume: runs not yet due are armed again; missed ones go by the policy; a later missed cursor takes the catch-up")
    func resumeDecisions() {
        let now = start.addingTimeInterval(1000)
        // Paused runs due at -600, -300, -90, -30 (not missed: within the 60 s threshold) and +60.
        let runs = [-600.0, -300, -90, -30, 60].map { now.addingTimeInterval($0) }
        func decide(_ policy: MisfirePolicy, window: TimeInterval? = nil, laterMissed: Bool = false) -> ([Double], [Double]) {
            let rule = MisfireRule(policy: policy, catchupWindow: window, now: now)
            let (rearm, skip) = rule.resume(runs, fireAt: { $0 }, isRetry: { _ in false }, laterMissed: laterMissed)
            return (rearm.map { $0.timeIntervalSince(now) }, skip.map { $0.timeIntervalSince(now) })
        }
        #expect(decide(.fireAll) == ([-600, -300, -90, -30, 60], []))
        #expect(decide(.fireAll, window: 400) == ([-300, -90, -30, 60], [-600]))
        #expect(decide(.fireOnce) == ([-90, -30, 60], [-600, -300]))
        #expect(decide(.fireOnce, laterMissed: true) == ([-30, 60], [-600, -300, -90]))
        #expect(decide(.fireOnce, window: 60) == ([-30, 60], [-600, -300, -90]))
        #expect(decide(.skip) == ([-30, 60], [-600, -300, -90]))
    }

    @Test("resume: a paused retry is always armed again, missed or not, and does not take the catch-up")
    func resumeKeepsRetries() {
        let now = start.addingTimeInterval(1000)
        // (fire time offset, attempt): occurrence A's retry missed, B and C first attempts missed.
        let runs: [(Double, Int)] = [(-600, 2), (-300, 1), (-200, 1), (30, 1)]
        for policy in MisfirePolicy.allCases {
            let rule = MisfireRule(policy: policy, catchupWindow: nil, now: now)
            let (rearm, skip) = rule.resume(
                runs, fireAt: { now.addingTimeInterval($0.0) }, isRetry: { $0.1 > 1 }, laterMissed: false)
            #expect(rearm.contains { $0.0 == -600 && $0.1 == 2 }, "\(policy)")
            #expect(!skip.contains { $0.1 > 1 })
            switch policy {
            case .fireAll: #expect(skip.isEmpty)
            case .fireOnce: #expect(skip.map(\.0) == [-300] && rearm.map(\.0) == [-600, -200, 30])
            case .skip: #expect(skip.map(\.0) == [-300, -200])
            }
        }
    }
}
