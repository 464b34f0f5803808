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

    /// Delay before attempt `failedAttempt + 1`: "full jitter" — anywhere in [0, base], with base
    /// initial·2^(n−1) capped at `maximum` — so a wave of jobs that failed together (a queue whose
    /// downstream went down) comes back spread over the whole interval, not as a wave.
    /// Deterministic per (timer, occurrence, attempt); `seed` picks the jitter draw (by default
    /// the attempt itself).
    public func delay(after failedAttempt: Int, timerID: String, occurrence: Int64, seed: Int? = nil) -> Duration {
        let exponent = min(max(failedAttempt - 1, 0), 40)
        let base = min(initial * (1 << exponent), maximum)
        let draw = UInt64(truncatingIfNeeded: seed ?? failedAttempt)
        let hash = ScheduleJitter.hash(timerID: timerID, occurrence: UInt64(bitPattern: occurrence) &* 1000 &+ draw)
        let fraction = Double(hash >> 11) / Double(1 << 53)
        return base * fraction
    }

    /// What happens after a failed attempt (pure; the store applies it in the result's
    /// transaction). `refundedBefore` attempts of this occurrence were given back earlier, so
    /// `failedAttempt − refundedBefore` attempts count against `maxAttempts`.
    /// - `retryable == false` (the executor said the failure is permanent): dead letter.
    /// - `refund` (the failure hit a downstream whose circuit breaker was tripping or open) and
    ///   fewer than `maximumRefunds` given back so far: the attempt is given back — a retry that
    ///   does not count, its backoff not grown by it.
    /// - `suspected` (the downstream's recent results are mostly failures, not yet enough to
    ///   trip) and the policy says dead letter, with nothing given back so far: one provisional
    ///   refund — by the next attempt the breaker has tripped (and holds it) or the downstream
    ///   is judged healthy. A job that fails alone costs at most this one extra attempt.
    /// - otherwise the policy decides: a retry after `delay`, or a dead letter when spent.
    public func verdict(
        failedAttempt: Int, refundedBefore: Int, retryable: Bool, refund: Bool, suspected: Bool = false,
        maximumRefunds: Int, timerID: String, occurrence: Int64
    ) -> FailureVerdict {
        guard retryable else { return .deadLetter }
        let refunded = min(max(refundedBefore, 0), max(failedAttempt - 1, 0))
        let spent = failedAttempt - refunded
        let given = delay(after: max(spent - 1, 1), timerID: timerID, occurrence: occurrence, seed: failedAttempt)
        if refund, refunded < maximumRefunds {
            return .retry(after: given, refunded: refunded + 1)
        }
        guard allowsRetry(after: spent) else {
            if suspected, refunded == 0, maximumRefunds > 0 { return .retry(after: given, refunded: 1) }
            return .deadLetter
        }
        return .retry(
            after: delay(after: spent, timerID: timerID, occurrence: occurrence, seed: failedAttempt), refunded: refunded)
    }
}

/// The outcome of a failed attempt (`RetryBackoff.verdict`).
public enum FailureVerdict: Sendable, Hashable {
    /// The next attempt runs after this long; `refunded` attempts of the occurrence have been
    /// given back so far (carried on the next attempt's run).
    case retry(after: Duration, refunded: Int)
    case deadLetter

    /// Whether this verdict gives the failed attempt back (compared with `refundedBefore`).
    public func refunds(given refundedBefore: Int) -> Bool {
        if case .retry(_, let refunded) = self { return refunded > max(refundedBefore, 0) }
        return false
    }
}
