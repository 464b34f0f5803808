import Foundation
import SundialProto
import SundialSchedule

/// Steps a timer through its occurrences. Pure: the same inputs give the same fire times in
/// Ingest, the Planner and after a crash, so a re-planned occurrence lands on the same
/// instant (jitter is deterministic per timer and occurrence).
public enum OccurrenceStepper {
    /// One occurrence: its number, nominal (un-jittered) time and actual fire time.
    public struct Occurrence: Sendable, Hashable {
        public var number: Int64
        public var nominal: Date
        public var fireAt: Date

        public init(number: Int64, nominal: Date, fireAt: Date) {
            self.number = number
            self.nominal = nominal
            self.fireAt = fireAt
        }
    }

    /// The first occurrence of a timer created (or re-based by an update) at `createdAt`.
    /// Numbers continue across updates, and `max_occurrences` bounds them over the timer's
    /// life, exactly as `following` does: an update never adds an occurrence past the limit.
    public static func first(_ schedule: TimerSchedule, timerID: String, createdAt: Date, number: Int64 = 0)
        -> Occurrence?
    {
        if schedule.isRecurring, let max = schedule.maxOccurrences, number < 0 || UInt64(number) >= max { return nil }
        guard let nominal = schedule.firstFire(createdAt: createdAt) else { return nil }
        return Occurrence(
            number: number, nominal: nominal,
            fireAt: schedule.fireTime(nominal: nominal, timerID: timerID, occurrence: UInt64(number)))
    }

    /// The occurrence after `current`, or nil when the schedule ends (one-shot, until,
    /// max occurrences, an `every` end). `current.number + 1` occurrences have been loaded.
    public static func following(_ schedule: TimerSchedule, timerID: String, after current: Occurrence)
        -> Occurrence?
    {
        guard schedule.isRecurring,
            let nominal = schedule.next(after: current.nominal, occurrencesSoFar: UInt64(current.number + 1))
        else { return nil }
        let number = current.number + 1
        return Occurrence(
            number: number, nominal: nominal,
            fireAt: schedule.fireTime(nominal: nominal, timerID: timerID, occurrence: UInt64(number)))
    }
}

/// Exponential backoff with deterministic jitter for failed attempts.
public struct RetryBackoff: Sendable, Hashable {
    /// Total attempts including the first.
    public var maxAttempts: Int
    public var initial: Duration
    public var maximum: Duration

    public static let defaultPolicy = RetryBackoff(maxAttempts: 5, initial: .seconds(1), maximum: .seconds(600))

    public init(maxAttempts: Int, initial: Duration, maximum: Duration) {
        self.maxAttempts = maxAttempts
        self.initial = initial
        self.maximum = maximum
    }

    /// The longest backoff a policy may ask for (Ingest refuses more). Stored policies are
    /// clamped to it too, so the arithmetic below can never overflow.
    public static let longestBackoff: Duration = .seconds(7 * 86_400)
    /// Most attempts a policy may ask for (Ingest refuses more).
    public static let mostAttempts = 100

    /// The policy a timer asked for, with defaults for unset fields; out-of-range values
    /// (stored before validation existed, or written by hand) are clamped.
    public init(_ policy: Sundial_V1_RetryPolicy?) {
        var backoff = RetryBackoff.defaultPolicy
        if let policy {
            if policy.maxAttempts > 0 { backoff.maxAttempts = Int(min(policy.maxAttempts, UInt32(Self.mostAttempts))) }
            if policy.hasInitialBackoff, let initial = Self.duration(policy.initialBackoff) { backoff.initial = initial }
            if policy.hasMaxBackoff, let maximum = Self.duration(policy.maxBackoff) { backoff.maximum = maximum }
        }
        backoff.maximum = max(backoff.maximum, backoff.initial)
        self = backoff
    }

    /// A positive protobuf duration, clamped to `longestBackoff`; nil when not positive.
    static func duration(_ value: Google_Protobuf_Duration) -> Duration? {
        guard value.seconds > 0 || (value.seconds == 0 && value.nanos > 0) else { return nil }
        if value.seconds >= Self.longestBackoff.components.seconds { return Self.longestBackoff }
        return .seconds(value.seconds) + .nanoseconds(Int64(min(max(value.nanos, 0), 999_999_999)))
    }

    /// Whether `failedAttempt` (1-based) may be followed by another.
    public func allowsRetry(after failedAttempt: Int) -> Bool { failedAttempt < maxAttempts }

    /// Delay before attempt `failedAttempt + 1`: initial·2^(n−1) capped at `maximum`, then
    /// "equal jitter" (between half and all of it) so a queue that fails as a whole does not
    /// retry in lockstep. Deterministic per (timer, occurrence, attempt).
    public func delay(after failedAttempt: Int, timerID: String, occurrence: Int64) -> Duration {
        let exponent = min(max(failedAttempt - 1, 0), 40)
        let base = min(initial * (1 << exponent), maximum)
        let hash = ScheduleJitter.hash(timerID: timerID, occurrence: UInt64(bitPattern: occurrence) &* 1000 &+ UInt64(failedAttempt))
        let fraction = Double(hash >> 11) / Double(1 << 53)
        return base / 2 + (base / 2) * fraction
    }
}
