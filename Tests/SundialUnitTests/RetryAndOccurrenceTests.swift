import Foundation
import SundialContract
import SundialCore
import SundialProto
import SundialSchedule
import Testing

@Suite("Unit: retry backoff and occurrence stepping")
struct RetryAndOccurrenceTests {
    @Test("defaults: 5 attempts, 1 s initial, 10 min cap; a policy overrides each field")
    func policyDefaults() {
        let defaults = RetryBackoff(nil)
        #expect(defaults == RetryBackoff.defaultPolicy)
        var proto = Sundial_V1_RetryPolicy()
        proto.maxAttempts = 3
        proto.initialBackoff = .init(seconds: 2)
        let custom = RetryBackoff(proto)
        #expect(custom.maxAttempts == 3 && custom.initial == .seconds(2) && custom.maximum == .seconds(600))
        #expect(custom.allowsRetry(after: 2) && !custom.allowsRetry(after: 3))
    }

    @Test("delays double per attempt with full jitter (anywhere in [0, base]), capped, deterministic")
    func exponentialWithJitter() {
        let policy = RetryBackoff(maxAttempts: 20, initial: .seconds(1), maximum: .seconds(30))
        for attempt in 1...10 {
            let base = min(Duration.seconds(1 << (attempt - 1)), .seconds(30))
            let delays = (0..<100).map { policy.delay(after: attempt, timerID: "t\($0)", occurrence: 0) }
            #expect(delays.allSatisfy { $0 >= .zero && $0 <= base }, "attempt \(attempt) vs base \(base)")
            // Full jitter uses the whole interval, the lower half included.
            #expect(delays.contains { $0 < base / 4 } && delays.contains { $0 > base * 3 / 4 })
            #expect(delays[0] == policy.delay(after: attempt, timerID: "t0", occurrence: 0))
        }
    }

    @Test("a queue failing as a whole does not retry in lockstep: delays spread across timers")
    func jitterSpreadsAQueue() {
        let policy = RetryBackoff(maxAttempts: 5, initial: .seconds(10), maximum: .seconds(600))
        let delays = (0..<200).map { policy.delay(after: 1, timerID: "timer-\($0)", occurrence: 0) }
        let seconds = delays.map { Int($0.components.seconds) }
        // 200 retries over [0 s, 10 s]: every whole second gets some, none gets most.
        #expect(Set(seconds).count == 10)
        #expect(Dictionary(grouping: seconds, by: { $0 }).values.allSatisfy { $0.count < 50 })
        #expect(delays.allSatisfy { $0 >= .zero && $0 <= .seconds(10) })
    }

    @Test("verdicts: a refunded attempt does not count and does not grow the backoff; refunds are capped; permanent is permanent")
    func verdicts() {
        let policy = RetryBackoff(maxAttempts: 2, initial: .seconds(1), maximum: .seconds(60))
        func verdict(_ attempt: Int, refunded: Int, refund: Bool, retryable: Bool = true, cap: Int = 3) -> FailureVerdict {
            policy.verdict(
                failedAttempt: attempt, refundedBefore: refunded, retryable: retryable, refund: refund, maximumRefunds: cap,
                timerID: "t", occurrence: 0)
        }
        // Attempt 2 of 2 would be the last…
        #expect(verdict(2, refunded: 0, refund: false) == .deadLetter)
        // …given back, it retries, and attempt 3 is then the second that counts.
        guard case .retry(let delay, let refunded) = verdict(2, refunded: 0, refund: true) else {
            Issue.record("a refunded last attempt must retry")
            return
        }
        #expect(refunded == 1 && delay <= .seconds(1))
        #expect(verdict(2, refunded: 0, refund: true).refunds(given: 0))
        #expect(verdict(3, refunded: 1, refund: false) == .deadLetter)
        if case .retry(_, let r) = verdict(2, refunded: 1, refund: false) { #expect(r == 1) } else {
            Issue.record("one counted attempt of two: retry")
        }
        // At the cap, the failure counts again.
        #expect(verdict(5, refunded: 3, refund: true) == .deadLetter)
        #expect(!verdict(5, refunded: 3, refund: true).refunds(given: 3))
        // Suspected (not yet tripping): only a failure that would dead-letter gets one
        // provisional retry, and only if nothing was given back before.
        func suspected(_ attempt: Int, refunded: Int) -> FailureVerdict {
            policy.verdict(
                failedAttempt: attempt, refundedBefore: refunded, retryable: true, refund: false, suspected: true,
                maximumRefunds: 3, timerID: "t", occurrence: 0)
        }
        #expect(suspected(2, refunded: 0).refunds(given: 0))
        #expect(!suspected(1, refunded: 0).refunds(given: 0))  // attempts left: the policy retries anyway
        #expect(suspected(3, refunded: 1) == .deadLetter)
        // The executor's "permanent" wins over a refund.
        #expect(verdict(1, refunded: 0, refund: true, retryable: false) == .deadLetter)
        // A stored count beyond the attempts (hostile or corrupt) is clamped.
        if case .retry(_, let r) = verdict(2, refunded: 99, refund: false) { #expect(r == 1) } else {
            Issue.record("99 refunds claimed for attempt 2 count as 1: one counted attempt of two, retry")
        }
    }

    @Test("stepping a recurring schedule: increasing numbers and times, ends at max occurrences")
    func stepping() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let schedule = TimerSchedule(.every(interval: .seconds(60), start: nil, end: nil), maxOccurrences: 3)
        var current = try #require(OccurrenceStepper.first(schedule, timerID: "x", createdAt: start))
        #expect(current.number == 0 && current.fireAt == start.addingTimeInterval(60))
        var seen = [current]
        while let next = OccurrenceStepper.following(schedule, timerID: "x", after: current) {
            #expect(next.number == current.number + 1 && next.fireAt > current.fireAt)
            current = next
            seen.append(next)
        }
        #expect(seen.count == 3)
        let oneShot = TimerSchedule(.delay(.seconds(5)))
        let only = try #require(OccurrenceStepper.first(oneShot, timerID: "y", createdAt: start))
        #expect(OccurrenceStepper.following(oneShot, timerID: "y", after: only) == nil)
    }

    @Test("jitter is applied per occurrence and is the same when re-planned")
    func jitterStable() throws {
        let schedule = TimerSchedule(.cron("0 * * * *"), jitter: .seconds(600))
        let created = Date(timeIntervalSince1970: 1_800_000_000)
        let a = try #require(OccurrenceStepper.first(schedule, timerID: "id-1", createdAt: created))
        let b = try #require(OccurrenceStepper.first(schedule, timerID: "id-1", createdAt: created))
        #expect(a == b)
        #expect(a.fireAt >= a.nominal && a.fireAt < a.nominal.addingTimeInterval(600))
        let next = try #require(OccurrenceStepper.following(schedule, timerID: "id-1", after: a))
        #expect(next.nominal == a.nominal.addingTimeInterval(3600))
    }
}

@Suite("Unit: load step")
struct LoadStepTests {
    @Test("a fast recurring timer arms every occurrence within the horizon in one load, capped")
    func armsAheadWithinHorizon() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let schedule = TimerSchedule(.every(interval: .seconds(1), start: nil, end: nil))
        let id = UUID()
        let first = try #require(OccurrenceStepper.first(schedule, timerID: TimerID.text(id), createdAt: start))
        let step = LoadStep.loading(
            first, recurring: true, schedule: schedule, timerID: id, through: start.addingTimeInterval(30.5), limit: 1000)
        #expect(step.runs.map(\.occurrence) == Array(0..<30))
        #expect(step.nextState == .scheduled && step.nextOccurrence == 30)
        #expect(step.nextFireAt == start.addingTimeInterval(31))
        let capped = LoadStep.loading(
            first, recurring: true, schedule: schedule, timerID: id, through: start.addingTimeInterval(300), limit: 10)
        #expect(capped.runs.count == 10 && capped.nextOccurrence == 10)
    }

    @Test("the last occurrence completes the timer; a one-shot is armed")
    func endsAndOneShots() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let limited = TimerSchedule(.every(interval: .seconds(1), start: nil, end: nil), maxOccurrences: 3)
        let id = UUID()
        let first = try #require(OccurrenceStepper.first(limited, timerID: TimerID.text(id), createdAt: start))
        let step = LoadStep.loading(
            first, recurring: true, schedule: limited, timerID: id, through: start.addingTimeInterval(60), limit: 1000)
        #expect(step.runs.count == 3 && step.nextState == .completed)
        let oneShot = LoadStep.loading(first, recurring: false, schedule: nil, timerID: id)
        #expect(oneShot.runs.count == 1 && oneShot.nextState == .armed && oneShot.nextOccurrence == 1)
    }

    @Test("max_occurrences is exact across an update: a re-based schedule never adds one past the limit")
    func maxOccurrencesExactUnderUpdate() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let limited = TimerSchedule(.every(interval: .seconds(1), start: nil, end: nil), maxOccurrences: 3)
        let id = TimerID.text(UUID())
        // Two occurrences (0, 1) were loaded before the update: one is left.
        let rebased = try #require(OccurrenceStepper.first(limited, timerID: id, createdAt: start, number: 2))
        #expect(OccurrenceStepper.following(limited, timerID: id, after: rebased) == nil)
        // Three were loaded: none is left, whatever the new schedule.
        #expect(OccurrenceStepper.first(limited, timerID: id, createdAt: start, number: 3) == nil)
        #expect(OccurrenceStepper.first(limited, timerID: id, createdAt: start, number: 7) == nil)
        // Without a limit, numbering goes on.
        let unlimited = TimerSchedule(.every(interval: .seconds(1), start: nil, end: nil))
        #expect(OccurrenceStepper.first(unlimited, timerID: id, createdAt: start, number: 7)?.number == 7)
    }

    @Test("a recurring timer whose stored schedule no longer evaluates runs its current occurrence, then ends dead with a reason")
    func unevaluableScheduleFailsTheTimer() throws {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let every = TimerSchedule(.every(interval: .seconds(60), start: nil, end: nil))
        let id = UUID()
        let first = try #require(OccurrenceStepper.first(every, timerID: TimerID.text(id), createdAt: start))
        let step = LoadStep.loading(first, recurring: true, schedule: nil, timerID: id)
        #expect(step.runs.count == 1)
        #expect(step.nextState == .dead)
        #expect(step.failure?.contains("time zone") == true)
        let healthy = LoadStep.loading(first, recurring: true, schedule: every, timerID: id)
        #expect(healthy.nextState == .scheduled && healthy.failure == nil)
    }
}
