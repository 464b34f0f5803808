/// Estimates the executors' capacity *C* (jobs/s) from the work stream, as the Governor samples it:
/// the total consumed so far (for a work-queue stream, last sequence − messages left) and the
/// backlog (messages left).
///
/// - While the executors are **saturated** — the backlog has stayed above `saturationBacklog`
///   worth of their rate (and at least `minimumBacklog` jobs) at two samples or more — the
///   consumption rate since the first of them (within `window`) *is* the capacity.
/// - Otherwise the consumption rate is only a lower bound (they took all they were given). The
///   estimate never drops below it. The upward search for capacity that freed up is the
///   Governor's: it shares a little more than the estimate while the backlog is below its
///   target (`GovernorCore.sharedCapacity`). `probeGrowthPerSecond` can add a compounding
///   probe on top (off by default).
/// - Before the first saturation nothing is known: `estimate` is nil (or `initial`) and the plan
///   throttles nobody. A backlog `overload` times the threshold at a single sample (a flood on
///   an idle system) is taken as saturation at once, measured at the recent consumption rate:
///   that errs low, and the next samples correct it, but it stops the flood a period earlier.
///   `fixed` replaces all of this with a configured figure.
public struct CapacityEstimator<C: Clock>: Sendable where C.Duration == Duration {
    public struct Configuration: Sendable, Hashable {
        /// A configured capacity (jobs/s) instead of a measured one.
        public var fixed: Double?
        /// The estimate before the first measurement (nil: unknown, nobody is throttled).
        public var initial: Double?
        /// Backlog worth this much of the consumption rate means the executors are saturated…
        public var saturationBacklog: Duration
        /// …and at least this many jobs.
        public var minimumBacklog: Int
        /// Consumption is measured over this window.
        public var window: Duration
        /// Upward probe while throttling and the backlog is low (0.05 = +5 % per second).
        public var probeGrowthPerSecond: Double
        /// With no estimate yet, a backlog this many times the threshold at one sample counts
        /// as saturation.
        public var overload: Double
        /// The estimate is the median of the saturated measurements within this window: one
        /// sample's consumption is noisy both ways — executors that catch up after a pause read
        /// high, moments they idled between dispatcher batches read low — and an estimate that
        /// follows either leaves a standing backlog or starves a throttled tenant. The median
        /// ignores both and still follows a real change within half the window.
        public var smoothing: Duration
        /// Lower bound of any estimate (jobs/s).
        public var floor: Double

        public init(
            fixed: Double? = nil, initial: Double? = nil, saturationBacklog: Duration = .milliseconds(100),
            minimumBacklog: Int = 20, window: Duration = .seconds(2), probeGrowthPerSecond: Double = 0,
            overload: Double = 4, smoothing: Duration = .seconds(10), floor: Double = 1
        ) {
            self.fixed = fixed
            self.initial = initial
            self.saturationBacklog = saturationBacklog
            self.minimumBacklog = minimumBacklog
            self.window = window
            self.probeGrowthPerSecond = probeGrowthPerSecond
            self.overload = overload
            self.smoothing = smoothing
            self.floor = floor
        }
    }

    struct Sample: Sendable {
        var at: C.Instant
        var consumed: UInt64
    }

    public private(set) var configuration: Configuration
    private var measured: Double?
    private var samples = FIFO<Sample>()
    struct RateSample: Sendable {
        var at: C.Instant
        var rate: Double
    }
    /// Saturated measurements within `smoothing`, oldest first.
    private var saturatedRates = FIFO<RateSample>()
    /// The sample at which the backlog last rose above the threshold.
    private var busyAnchor: Sample?
    private var lastObserved: C.Instant?
    /// Consumption rate over the last window (jobs/s), whatever the backlog.
    public private(set) var consumptionRate: Double = 0
    public private(set) var saturated = false
    public private(set) var lastBacklog: UInt64 = 0

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.measured = configuration.initial.map { max($0, configuration.floor) }
    }

    /// The capacity to share, jobs/s (nil: unknown).
    public var estimate: Double? { configuration.fixed ?? measured }

    /// Seeds the estimate (e.g. from the last published plan after a restart) if none exists.
    public mutating func seed(_ capacity: Double) {
        guard measured == nil, capacity.isFinite, capacity > 0 else { return }
        measured = max(capacity, configuration.floor)
    }

    /// One sample of the work stream. `throttling`: the current plan holds someone back.
    public mutating func observe(consumedTotal: UInt64, backlog: UInt64, throttling: Bool, now: C.Instant) {
        let c = configuration
        if let last = samples.elements.last, consumedTotal < last.consumed {
            samples = FIFO()  // the stream was recreated; start over
            busyAnchor = nil
        }
        samples.append(Sample(at: now, consumed: consumedTotal))
        while let first = samples.first, samples.count > 2, first.at.duration(to: now) > c.window {
            _ = samples.popFirst()
        }
        lastBacklog = backlog
        if let first = samples.first, first.at < now {
            let seconds = first.at.duration(to: now).fairnessSeconds
            consumptionRate = Double(consumedTotal - first.consumed) / seconds
        }
        let threshold = max(Double(c.minimumBacklog), consumptionRate * c.saturationBacklog.fairnessSeconds)
        let busy = Double(backlog) >= threshold
        if busy {
            if busyAnchor == nil { busyAnchor = Sample(at: now, consumed: consumedTotal) }
        } else {
            busyAnchor = nil
        }
        let dt = lastObserved.map { $0 < now ? $0.duration(to: now).fairnessSeconds : 0 } ?? 0
        lastObserved = now
        // Saturated: busy at two samples or more — the consumption since the first of them
        // (within the window) is what the executors can do.
        if let anchor = busyAnchor, anchor.at < now {
            let from = samples.first.map { $0.at > anchor.at ? $0 : anchor } ?? anchor
            let busyRate = max(Double(consumedTotal - from.consumed) / from.at.duration(to: now).fairnessSeconds, c.floor)
            saturated = true
            saturatedRates.append(RateSample(at: now, rate: busyRate))
            while let first = saturatedRates.first, saturatedRates.count > 1, first.at.duration(to: now) > c.smoothing {
                _ = saturatedRates.popFirst()
            }
            let rates = saturatedRates.elements.map(\.rate).sorted()
            measured = rates.count % 2 == 1
                ? rates[rates.count / 2] : (rates[rates.count / 2 - 1] + rates[rates.count / 2]) / 2
            return
        }
        saturated = false
        if measured == nil, busy, Double(backlog) >= max(c.overload, 1) * threshold, consumptionRate > 0 {
            // Overloaded at first sight (see the type's notes). Not kept among the saturated
            // measurements: the next one replaces it.
            saturated = true
            measured = max(consumptionRate, c.floor)
            return
        }
        guard var estimate = measured else { return }
        estimate = max(estimate, consumptionRate)
        if throttling, Double(backlog) < threshold / 2, dt > 0 {
            estimate *= FairnessMath.expo(max(0, c.probeGrowthPerSecond) * min(dt, 10))
        }
        measured = max(estimate, c.floor)
    }
}
