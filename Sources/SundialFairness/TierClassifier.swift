/// Assigns tenants to tiers from what is observed about them, with hysteresis so that a tenant
/// hovering around a threshold does not flap between tiers.
///
/// Rules, in order:
/// 1. a tenant pinned by an operator (`pin`) has the pinned tier;
/// 2. **bulk** — entered when the tenant's smoothed due rate reaches `enterBulkRate` *or* its
///    backlog reaches `enterBulkBacklog`; left only once the smoothed rate is below
///    `exitBulkRate` *and* the backlog below `exitBulkBacklog`, continuously for `exitHold`.
///    The exit thresholds are lower than the entry ones (they are clamped to be at most those);
///    the gap plus the hold is the hysteresis. Bulk wins over new: a trial tenant that floods is
///    a whale;
/// 3. **new** — younger than `newTenantAge`, or flagged as a trial;
/// 4. **standard** — everyone else.
///
/// The due rate is smoothed with an exponentially weighted moving average whose time constant is
/// `rateWindow`, correct for irregular observation intervals (weight `1 − e^(−Δt/window)` for
/// the new sample). The first observation of a tenant initialises it.
///
/// Pure: no I/O, no clock reads — every call passes `now` of a clock `C`. The tenant's age is
/// passed in (it comes from the tenant's creation time on the wall clock, which `C` need not be).
/// Memory: one small record per tenant observed; `forget`/`prune` drop idle ones.
public struct TierClassifier<C: Clock>: Sendable where C.Duration == Duration {
    public struct Configuration: Sendable, Hashable, Codable {
        /// A tenant younger than this is `new`.
        public var newTenantAge: Duration
        /// Smoothed due rate (timers/s) at which a tenant becomes bulk…
        public var enterBulkRate: Double
        /// …and below which it may leave bulk (clamped to ≤ `enterBulkRate`).
        public var exitBulkRate: Double
        /// Backlog (due or overdue, not yet dispatched) at which a tenant becomes bulk…
        public var enterBulkBacklog: Int
        /// …and below which it may leave bulk (clamped to ≤ `enterBulkBacklog`).
        public var exitBulkBacklog: Int
        /// How long both must stay below the exit thresholds before the tenant leaves bulk.
        public var exitHold: Duration
        /// Time constant of the due-rate moving average.
        public var rateWindow: Duration

        public init(
            newTenantAge: Duration = .seconds(7 * 86_400),
            enterBulkRate: Double = 50,
            exitBulkRate: Double = 20,
            enterBulkBacklog: Int = 20_000,
            exitBulkBacklog: Int = 2_000,
            exitHold: Duration = .seconds(300),
            rateWindow: Duration = .seconds(60)
        ) {
            self.newTenantAge = newTenantAge
            self.enterBulkRate = enterBulkRate
            self.exitBulkRate = exitBulkRate
            self.enterBulkBacklog = enterBulkBacklog
            self.exitBulkBacklog = exitBulkBacklog
            self.exitHold = exitHold
            self.rateWindow = rateWindow
        }

        /// Thresholds made consistent: NaN/negative rates are 0, exit ≤ enter, non-negative
        /// durations.
        public var sanitised: Configuration {
            var c = self
            c.enterBulkRate = c.enterBulkRate.isNaN ? 0 : max(c.enterBulkRate, 0)
            c.exitBulkRate = min(c.exitBulkRate.isNaN ? 0 : max(c.exitBulkRate, 0), c.enterBulkRate)
            c.enterBulkBacklog = max(c.enterBulkBacklog, 0)
            c.exitBulkBacklog = min(max(c.exitBulkBacklog, 0), c.enterBulkBacklog)
            c.exitHold = max(c.exitHold, .zero)
            c.rateWindow = max(c.rateWindow, .zero)
            return c
        }
    }

    /// What the classifier remembers about a tenant.
    public struct TenantState: Sendable, Hashable {
        /// Smoothed due rate (timers/s).
        public var smoothedRate: Double
        public var lastBacklog: Int
        public var lastObserved: C.Instant
        public var isBulk: Bool
        /// Since when the tenant has been below both exit thresholds while bulk.
        public var calmSince: C.Instant?
        /// The tier returned by the last observation.
        public var tier: Tier
        /// When `tier` last changed (or the first observation).
        public var tierSince: C.Instant
    }

    public private(set) var configuration: Configuration
    private var states: [String: TenantState] = [:]
    private var pins: [String: Tier] = [:]

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration.sanitised
    }

    /// Records an observation of `tenant` at `now` and returns its tier.
    ///
    /// - Parameters:
    ///   - dueRate: timers of this tenant that came due per second over the last reporting
    ///     interval (NaN or negative counts as 0).
    ///   - backlog: its timers that are due but not yet dispatched.
    ///   - age: time since the tenant was created.
    ///   - trial: the tenant is flagged as a trial (counts as new, unless bulk).
    @discardableResult
    public mutating func observe(
        tenant: String, dueRate: Double, backlog: Int, age: Duration, trial: Bool = false,
        now: C.Instant
    ) -> Tier {
        let c = configuration
        let sample = dueRate.isNaN ? 0 : min(max(dueRate, 0), .greatestFiniteMagnitude)
        var s: TenantState
        if var existing = states.removeValue(forKey: tenant) {
            let dt = now > existing.lastObserved ? existing.lastObserved.duration(to: now) : .zero
            let window = c.rateWindow.fairnessSeconds
            let alpha = window <= 0 ? 1 : 1 - FairnessMath.expo(-dt.fairnessSeconds / window)
            existing.smoothedRate += alpha * (sample - existing.smoothedRate)
            if now > existing.lastObserved { existing.lastObserved = now }
            existing.lastBacklog = backlog
            s = existing
        } else {
            s = TenantState(
                smoothedRate: sample, lastBacklog: backlog, lastObserved: now, isBulk: false,
                calmSince: nil, tier: .standard, tierSince: now)
        }

        let hot = s.smoothedRate >= c.enterBulkRate || backlog >= c.enterBulkBacklog
        let calm = s.smoothedRate < c.exitBulkRate && backlog < c.exitBulkBacklog
        if !s.isBulk {
            if hot {
                s.isBulk = true
                s.calmSince = nil
            }
        } else if calm {
            let since = s.calmSince ?? now
            s.calmSince = since
            if since.duration(to: now) >= c.exitHold {
                s.isBulk = false
                s.calmSince = nil
            }
        } else {
            s.calmSince = nil
        }

        let tier: Tier
        if let pinned = pins[tenant] {
            tier = pinned
        } else if s.isBulk {
            tier = .bulk
        } else if trial || age < c.newTenantAge {
            tier = .new
        } else {
            tier = .standard
        }
        if tier != s.tier {
            s.tier = tier
            s.tierSince = now
        }
        states[tenant] = s
        return tier
    }

    /// The tier from the tenant's last observation (its pin if pinned), `nil` if never observed
    /// and not pinned.
    public func tier(of tenant: String) -> Tier? {
        pins[tenant] ?? states[tenant]?.tier
    }

    public func state(of tenant: String) -> TenantState? { states[tenant] }

    /// Tenants with a state (observed and not forgotten).
    public var trackedTenants: Int { states.count }

    /// Their names.
    public var tenants: [String] { Array(states.keys) }

    /// Pins `tenant` to `tier` (an operator's decision), or unpins it with `nil`. The dynamic
    /// state keeps being tracked underneath, so unpinning returns to the observed tier.
    public mutating func pin(_ tenant: String, to tier: Tier?) {
        pins[tenant] = tier
    }

    public var pinned: [String: Tier] { pins }

    /// Drops what is known about `tenant` (not its pin).
    public mutating func forget(_ tenant: String) {
        states[tenant] = nil
    }

    /// Drops tenants not observed for `idle` or longer; returns how many.
    @discardableResult
    public mutating func prune(idleFor idle: Duration, now: C.Instant) -> Int {
        let before = states.count
        states = states.filter { _, s in s.lastObserved.duration(to: now) < idle }
        return before - states.count
    }

    /// Replaces the configuration; tenants keep their state (a bulk tenant stays bulk until it
    /// meets the new exit conditions).
    public mutating func reconfigure(_ configuration: Configuration) {
        self.configuration = configuration.sanitised
    }
}
