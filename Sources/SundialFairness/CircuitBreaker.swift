/// A circuit breaker over one downstream — a work queue, or one tenant on a queue — as a pure
/// state machine over a clock (issue 18). Its input is what the Dispatchers already see: job
/// results, counted as successes and downstream failures (a failure the executor classified as
/// the job's own does not count here; an unclassified one does).
///
/// - **Closed**: jobs flow. Outcomes are kept in a sliding window (`window`, in `slots` time
///   slots). When the window holds at least `minimumSamples` outcomes and the failure ratio is at
///   least `failureRatio`, the breaker **opens**: one failure never trips anything.
/// - **Open** for a cool-down (`coolDown`, doubled after every failed probe round, at most
///   `maximumCoolDown`): the downstream's due jobs wait in Sundial and consume no attempts.
///   The cap is short on purpose: a probe round costs only a few jobs' attempts, and the cap
///   bounds how long held jobs wait after the downstream is back.
/// - **Half-open** after the cool-down: `probes` jobs may go through. `probes` successes close
///   it (cool-down back to its first value); any downstream failure among them opens it again,
///   with the cool-down doubled. After `probeTimeout`, successes without a failure close it (a
///   quiet downstream has fewer jobs than `probes`); no answers at all start a new round.
public struct CircuitBreaker<C: Clock>: Sendable where C.Duration == Duration {
    public struct Configuration: Sendable, Hashable, Codable {
        /// Outcomes are judged over this long.
        public var window: Duration
        public var slots: Int
        /// Least outcomes in the window before it may trip.
        public var minimumSamples: Int
        /// Downstream failures ÷ outcomes at or above which it trips (0…1).
        public var failureRatio: Double
        public var coolDown: Duration
        public var maximumCoolDown: Duration
        /// Jobs let through while half-open, and successes needed to close.
        public var probes: Int
        /// A half-open round without enough results after this long counts as unanswered.
        public var probeTimeout: Duration

        public init(
            window: Duration = .seconds(20), slots: Int = 10, minimumSamples: Int = 20, failureRatio: Double = 0.5,
            coolDown: Duration = .seconds(5), maximumCoolDown: Duration = .seconds(15), probes: Int = 3,
            probeTimeout: Duration = .seconds(30)
        ) {
            self.window = window
            self.slots = slots
            self.minimumSamples = minimumSamples
            self.failureRatio = failureRatio
            self.coolDown = coolDown
            self.maximumCoolDown = maximumCoolDown
            self.probes = probes
            self.probeTimeout = probeTimeout
        }

        /// The part of it that decides when it trips (what a plan tells the dispatchers).
        public var trip: BreakerTrip {
            BreakerTrip(
                windowMillis: max(1, Int64(window.fairnessSeconds * 1000)), slots: slots, minimumSamples: minimumSamples,
                failureRatio: failureRatio)
        }

        /// Why a configuration is unusable, or nil.
        public var problem: String? {
            if window <= .zero || window > .seconds(86_400) { return "window must be positive and at most a day" }
            if !(1...1000).contains(slots) { return "slots must be 1…1000" }
            if minimumSamples < 1 { return "minimum samples must be at least 1" }
            if !(failureRatio > 0 && failureRatio <= 1) { return "failure ratio must be in (0, 1]" }
            if coolDown <= .zero || maximumCoolDown < coolDown || maximumCoolDown > .seconds(86_400) {
                return "cool-down must be positive, at most its maximum, and the maximum at most a day"
            }
            if !(1...10_000).contains(probes) { return "probes must be 1…10000" }
            if probeTimeout <= .zero { return "probe timeout must be positive" }
            return nil
        }
    }

    public typealias State = BreakerState

    /// A change worth telling someone about (an event, a log line).
    public enum Transition: Sendable, Hashable {
        case opened(failureRatio: Double, coolDown: Duration)
        case halfOpened
        case closed
    }

    public private(set) var configuration: Configuration
    public private(set) var state: State = .closed
    /// When the current state began.
    public private(set) var since: C.Instant
    /// The cool-down in force (or the next one, while closed).
    public private(set) var coolDown: Duration
    /// The failure ratio that last opened it.
    public private(set) var openedAtRatio: Double?
    private var window: FailureWindow<C>
    /// Half-open round: results seen since it began.
    private var probeSuccesses = 0
    private var probeFailures = 0

    public init(configuration: Configuration = Configuration(), now: C.Instant) {
        self.configuration = configuration
        self.since = now
        self.coolDown = configuration.coolDown
        self.window = FailureWindow(rule: configuration.trip)
    }

    /// Takes new settings (an operator changed the queue's): the state stays; a closed
    /// breaker's next cool-down is the new first one, an open or half-open one's is clamped to
    /// the new bounds; the window keeps its outcomes.
    public mutating func reconfigure(_ configuration: Configuration) {
        guard configuration != self.configuration else { return }
        self.configuration = configuration
        coolDown = state == .closed
            ? configuration.coolDown : min(max(coolDown, configuration.coolDown), configuration.maximumCoolDown)
        window.rule = configuration.trip
    }

    /// Restores a state published earlier (a restarted Governor): open for `remaining` more,
    /// or half-open, with the cool-down it had.
    public init(configuration: Configuration, restoring state: State, remaining: Duration, coolDown: Duration, now: C.Instant) {
        self.init(configuration: configuration, now: now)
        self.coolDown = min(max(coolDown, configuration.coolDown), configuration.maximumCoolDown)
        switch state {
        case .closed: break
        case .open:
            self.state = .open
            // `since` such that the cool-down ends `remaining` from now.
            let left = min(max(remaining, .zero), self.coolDown)
            self.since = now.advanced(by: left - self.coolDown)
        case .halfOpen:
            self.state = .halfOpen
        }
    }

    /// The state as a plan carries it (nil while closed).
    public func status(now: C.Instant) -> BreakerStatus? {
        func millis(_ d: Duration) -> Int64 {
            let c = d.components
            let total = min(max(0, c.seconds), 86_400) * 1000 + max(0, c.attoseconds / 1_000_000_000_000_000)
            return min(total, 86_400_000)  // `BreakerStatus.isValid` allows at most a day
        }
        switch state {
        case .closed: return nil
        case .open:
            let left = reopensAt.map { now < $0 ? now.duration(to: $0) : .zero } ?? .zero
            return BreakerStatus(
                state: .open, reopensInMillis: millis(left), coolDownMillis: millis(coolDown),
                probes: configuration.probes, failureRatio: openedAtRatio)
        case .halfOpen:
            return BreakerStatus(
                state: .halfOpen, reopensInMillis: nil, coolDownMillis: millis(coolDown), probes: configuration.probes,
                failureRatio: openedAtRatio)
        }
    }

    /// A breaker restored from a published status (a governor taking over), issued `age` ago:
    /// an open breaker's remaining cool-down is counted from then.
    public init(configuration: Configuration, restoring status: BreakerStatus, age: Duration = .zero, now: C.Instant) {
        self.init(
            configuration: configuration, restoring: status.state,
            remaining: .milliseconds(status.reopensInMillis ?? status.coolDownMillis) - max(age, .zero),
            coolDown: .milliseconds(status.coolDownMillis), now: now)
        self.openedAtRatio = status.failureRatio
    }

    /// When an open breaker half-opens (nil unless open).
    public var reopensAt: C.Instant? { state == .open ? since.advanced(by: coolDown) : nil }

    /// Downstream failures ÷ outcomes: in the window while closed (0 when empty), else the
    /// ratio that opened it.
    public func failureRatio(now: C.Instant) -> Double {
        guard state == .closed else { return openedAtRatio ?? 0 }
        let (s, f) = window.counts(now: now)
        return s + f == 0 ? 0 : Double(f) / Double(s + f)
    }

    /// Outcomes in the window (closed state).
    public func windowCounts(now: C.Instant) -> (successes: Int, failures: Int) { window.counts(now: now) }

    /// Records outcomes reported since the last call (negative counts are ignored).
    public mutating func record(successes: Int, failures: Int, now: C.Instant) -> Transition? {
        let successes = max(0, successes)
        let failures = max(0, failures)
        switch state {
        case .closed:
            window.record(successes: successes, failures: failures, now: now)
            guard let ratio = window.trippingRatio(now: now) else { return nil }
            return open(now: now, ratio: ratio)
        case .open:
            // Results of jobs that went out before it opened: they say nothing new.
            return nil
        case .halfOpen:
            probeSuccesses += successes
            probeFailures += failures
            if probeFailures > 0 {
                coolDown = min(coolDown * 2, configuration.maximumCoolDown)
                let total = probeSuccesses + probeFailures
                return open(now: now, ratio: Double(probeFailures) / Double(max(total, 1)))
            }
            if probeSuccesses >= configuration.probes {
                state = .closed
                since = now
                coolDown = configuration.coolDown
                window.reset()
                return .closed
            }
            return nil
        }
    }

    /// Moves on with time alone: open → half-open when the cool-down is over. A half-open round
    /// without enough answers within `probeTimeout`: closed if every answer was a success (a
    /// downstream with fewer jobs than `probes` per round must be able to close), otherwise a
    /// new round starts — no answers at all mean no jobs went, not a failed downstream.
    public mutating func tick(now: C.Instant) -> Transition? {
        switch state {
        case .closed:
            return nil
        case .open:
            guard since.advanced(by: coolDown) <= now else { return nil }
            state = .halfOpen
            since = now
            probeSuccesses = 0
            probeFailures = 0
            return .halfOpened
        case .halfOpen:
            guard since.advanced(by: configuration.probeTimeout) <= now else { return nil }
            if probeSuccesses > 0 {
                state = .closed
                since = now
                coolDown = configuration.coolDown
                window.reset()
                return .closed
            }
            since = now
            return nil
        }
    }

    /// Opens it for the current cool-down.
    private mutating func open(now: C.Instant, ratio: Double) -> Transition {
        state = .open
        openedAtRatio = ratio
        since = now
        window.reset()
        probeSuccesses = 0
        probeFailures = 0
        return .opened(failureRatio: ratio, coolDown: coolDown)
    }
}

/// When a breaker trips: at least `minimumSamples` outcomes within `windowMillis` (counted in
/// `slots` time slots) of which at least `failureRatio` were downstream failures. The plan
/// carries it so the dispatchers can tell a queue that is tripping before the governor's
/// next plan says so (refunds, docs/failures.md).
public struct BreakerTrip: Sendable, Hashable, Codable {
    public var windowMillis: Int64
    public var slots: Int
    public var minimumSamples: Int
    public var failureRatio: Double

    public init(windowMillis: Int64, slots: Int, minimumSamples: Int, failureRatio: Double) {
        self.windowMillis = windowMillis
        self.slots = slots
        self.minimumSamples = minimumSamples
        self.failureRatio = failureRatio
    }

    /// Numbers a dispatcher can act on (a KV entry is untrusted).
    public var isValid: Bool {
        (1...86_400_000).contains(windowMillis) && (1...1000).contains(slots) && minimumSamples >= 1
            && failureRatio > 0 && failureRatio <= 1
    }
}

/// Outcomes over a sliding window of time slots, and whether they trip a `BreakerTrip`
/// (pure; a `CircuitBreaker` keeps one while closed, a dispatcher one per queue and per
/// (queue, tenant) to recognise tripping early).
public struct FailureWindow<C: Clock>: Sendable where C.Duration == Duration {
    struct Slot: Sendable {
        var start: C.Instant
        var successes = 0
        var failures = 0
        /// Of `failures`, first attempts: distinct jobs (a job's own retries are not).
        var firstAttemptFailures = 0
    }

    public var rule: BreakerTrip
    private var slots = FIFO<Slot>()

    public init(rule: BreakerTrip) {
        self.rule = rule
    }

    private var length: Duration { .milliseconds(max(1, rule.windowMillis)) }

    public mutating func record(successes: Int, failures: Int, firstAttemptFailures: Int = 0, now: C.Instant) {
        let slotLength = length / max(1, rule.slots)
        if slots.elements.last.map({ $0.start.advanced(by: slotLength) <= now }) ?? true {
            slots.append(Slot(start: now))
        }
        slots.updateLast {
            $0.successes = min($0.successes + max(0, successes), Int.max / 4)
            $0.failures = min($0.failures + max(0, failures), Int.max / 4)
            $0.firstAttemptFailures = min($0.firstAttemptFailures + min(max(0, firstAttemptFailures), max(0, failures)), Int.max / 4)
        }
        let horizon = now.advanced(by: .zero - length)
        while let first = slots.first, first.start <= horizon { _ = slots.popFirst() }
    }

    public func counts(now: C.Instant) -> (successes: Int, failures: Int) {
        let horizon = now.advanced(by: .zero - length)
        var s = 0
        var f = 0
        for slot in slots.elements where slot.start > horizon {
            s += slot.successes
            f += slot.failures
        }
        return (s, f)
    }

    /// Whether the window looks like the start of an outage without enough outcomes to trip:
    /// at least two jobs' first attempts failed, and failures are at the rule's ratio.
    public func suspects(now: C.Instant) -> Bool {
        let horizon = now.advanced(by: .zero - length)
        var s = 0
        var f = 0
        var firsts = 0
        for slot in slots.elements where slot.start > horizon {
            s += slot.successes
            f += slot.failures
            firsts += slot.firstAttemptFailures
        }
        return firsts >= 2 && Double(f) / Double(s + f) >= rule.failureRatio
    }

    /// The failure ratio when the window trips its rule, else nil.
    public func trippingRatio(now: C.Instant) -> Double? {
        let (s, f) = counts(now: now)
        let total = s + f
        guard total >= rule.minimumSamples, total > 0, Double(f) / Double(total) >= rule.failureRatio else { return nil }
        return Double(f) / Double(total)
    }

    /// Nothing left in the window.
    public func isEmpty(now: C.Instant) -> Bool { counts(now: now) == (0, 0) }

    public mutating func reset() { slots = FIFO() }
}

/// A circuit breaker's state (JSON: `closed`, `open`, `half_open`).
public enum BreakerState: String, Sendable, Hashable, Codable {
    case closed, open, halfOpen = "half_open"
}
