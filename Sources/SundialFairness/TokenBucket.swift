/// A token bucket: tokens accrue at `rate` per second up to `burst`; taking `n` tokens succeeds
/// only if `n` are there. Pure and lazy — no timers: every operation passes the current instant
/// of a clock `C`, and the refill is computed from it.
///
/// **No drift.** The bucket does not add `rate × Δt` to a running float on every call (which
/// accumulates rounding error over millions of operations). It keeps a reference instant (the
/// *anchor*), the tokens it held at the anchor, and an exact integer count of tokens taken since:
///
///     tokens(now) = min(burst, tokensAtAnchor + rate × (now − anchor) − taken)
///
/// The anchor only moves when the bucket is found full (then the value is exactly `burst`) or on
/// `reconfigure`, so the error at any instant is a single rounding of one product, however long
/// the run and however many operations it had.
///
/// **Debt.** `reserve` may take tokens that are not there yet and tells how long until they
/// would have been; the bucket then stays negative until the rate has paid the debt back. This is
/// how the Dispatcher smears over-quota fires: each held-back fire gets the next free slot.
///
/// Instants earlier than the anchor (a caller passing a stale `now`) count as "no time passed".
/// Rates and bursts are sanitised: a rate that is NaN or negative is 0 (nothing accrues), +∞ and
/// anything above `maximumRate` is `maximumRate`; a burst below 1 is 1, above `maximumBurst` is
/// `maximumBurst`.
public struct TokenBucket<C: Clock>: Sendable where C.Duration == Duration {
    /// Upper bound of `rate` (tokens/s) and `burst`, so every computation stays finite.
    public static var maximumRate: Double { 1e12 }
    public static var maximumBurst: Double { 1e12 }
    /// Returned by `timeUntilAvailable` when the request can never be met (rate 0 with too few
    /// tokens, or more tokens than the burst). Callers clamp their own delays anyway.
    public static var never: Duration { .seconds(Int64.max) }

    /// Tolerance when comparing token counts, against `Double` rounding of `rate × elapsed`.
    /// It never accumulates: every comparison is against the exact formula above.
    static var epsilon: Double { 1e-9 }

    /// Tokens per second.
    public private(set) var rate: Double
    /// Capacity: the most tokens the bucket can hold (and the largest `tryTake`).
    public private(set) var burst: Double

    private var anchor: C.Instant
    private var tokensAtAnchor: Double
    private var takenSinceAnchor: Int

    /// A bucket holding `initialTokens` (clamped to `0 ... burst`; default: full) at `now`.
    public init(rate: Double, burst: Double, now: C.Instant, initialTokens: Double? = nil) {
        self.rate = Self.sanitisedRate(rate)
        let b = Self.sanitisedBurst(burst)
        self.burst = b
        self.anchor = now
        self.tokensAtAnchor = min(FairnessMath.nonNegative(initialTokens ?? b), b)
        self.takenSinceAnchor = 0
    }

    /// Tokens available at `now` (at most `burst`; negative while in debt after `reserve`).
    /// Does not change the bucket.
    public func tokens(at now: C.Instant) -> Double {
        min(burst, rawTokens(at: now))
    }

    /// Takes `n` tokens if they are available at `now`. `n ≤ 0` always succeeds and takes
    /// nothing; `n > burst` never succeeds.
    public mutating func tryTake(_ n: Int = 1, now: C.Instant) -> Bool {
        guard n > 0 else { return true }
        guard Double(n) <= burst + Self.epsilon else { return false }
        refill(now)
        guard rawTokens(at: now) + Self.epsilon >= Double(n) else { return false }
        takenSinceAnchor += n
        return true
    }

    /// How long from `now` until `n` tokens are available (`.zero` if they are now). The
    /// result is rounded up to the nanosecond, so `tryTake(n, now: now + wait)` succeeds if
    /// nothing else took tokens meanwhile. `never` if it cannot happen: `n > burst`, or rate 0.
    public func timeUntilAvailable(_ n: Int = 1, now: C.Instant) -> Duration {
        guard n > 0 else { return .zero }
        guard Double(n) <= burst + Self.epsilon else { return Self.never }
        return waitTime(forDeficit: Double(n) - rawTokens(at: now))
    }

    /// Takes `n` tokens now, going into debt if they are not there, and returns how long from
    /// `now` until they would have been available (`.zero` if they were). Successive calls
    /// return successive slots `1/rate` apart — the smearing schedule for held-back work.
    ///
    /// Returns `nil` and changes nothing if that wait would exceed `maxWait`, or if the bucket
    /// has rate 0 and too few tokens. `n` may exceed `burst` (it is a debt, not a withdrawal).
    public mutating func reserve(_ n: Int = 1, now: C.Instant, maxWait: Duration? = nil)
        -> Duration?
    {
        guard n > 0 else { return .zero }
        refill(now)
        let wait = waitTime(forDeficit: Double(n) - rawTokens(at: now))
        if wait == Self.never { return nil }
        if let maxWait, wait > maxWait { return nil }
        takenSinceAnchor += n
        return wait
    }

    /// Returns up to `n` previously taken or reserved tokens (e.g. a fire that was admitted but
    /// then not dispatched). The bucket never exceeds `burst`.
    public mutating func giveBack(_ n: Int = 1, now: C.Instant) {
        guard n > 0 else { return }
        refill(now)
        let current = rawTokens(at: now)
        let refunded = min(burst, current + Double(n))
        reanchor(now: now, tokens: refunded)
    }

    /// Changes rate and burst at `now`. Tokens accrued so far under the old rate are kept, but
    /// clamped to the new burst (lowering the burst drops the excess; raising it adds nothing —
    /// the bucket fills up at the new rate). A debt from `reserve` is kept: it stands for work
    /// already promised a slot. From `now` on, tokens accrue at the new rate.
    public mutating func reconfigure(rate: Double, burst: Double, now: C.Instant) {
        refill(now)
        let current = rawTokens(at: now)
        self.rate = Self.sanitisedRate(rate)
        self.burst = Self.sanitisedBurst(burst)
        reanchor(now: now, tokens: min(current, self.burst))
    }

    // MARK: - internals

    /// The unclamped formula (may exceed `burst` if not refilled since the bucket filled up).
    private func rawTokens(at now: C.Instant) -> Double {
        let elapsed = now > anchor ? anchor.duration(to: now).fairnessSeconds : 0
        return tokensAtAnchor + rate * elapsed - Double(takenSinceAnchor)
    }

    /// If the bucket has filled up since the anchor, restart the formula from `now` with exactly
    /// `burst` tokens: the clamp is where the lazy formula stops being linear.
    private mutating func refill(_ now: C.Instant) {
        if rawTokens(at: now) >= burst {
            reanchor(now: now, tokens: burst)
        }
    }

    private mutating func reanchor(now: C.Instant, tokens: Double) {
        if now > anchor { anchor = now }
        tokensAtAnchor = tokens
        takenSinceAnchor = 0
    }

    private func waitTime(forDeficit deficit: Double) -> Duration {
        guard deficit > Self.epsilon else { return .zero }
        guard rate > 0 else { return Self.never }
        let seconds = deficit / rate
        guard seconds < 1e9 else { return Self.never }
        let nanoseconds = (seconds * 1e9).rounded(.up)
        return .nanoseconds(Int64(nanoseconds))
    }

    private static func sanitisedRate(_ rate: Double) -> Double {
        FairnessMath.nonNegative(rate, cap: maximumRate)
    }

    private static func sanitisedBurst(_ burst: Double) -> Double {
        guard !burst.isNaN else { return 1 }
        return min(max(burst, 1), maximumBurst)
    }
}
