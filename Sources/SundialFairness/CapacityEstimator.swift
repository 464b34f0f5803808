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
///   an idle system) is taken as saturation at once, which stops the flood a period earlier.
///   That sample is judged and measured by the consumption since the previous one, when the
///   queue was not busy yet: the window's rate still holds the idle seconds before the flood,
///   and at that rate executors keeping up with a burst looked overloaded by the jobs they
///   hold, and the estimate was a fraction of their speed. It can still err low (part of that
///   interval may have been idle), so it stays `provisional` until a saturated measurement
///   replaces it: the plan says so, and the Dispatchers hold a tenant back by it only beside
///   another tenant on the queue (`FairnessGate`).
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
        /// With no estimate yet, a backlog this many times the threshold (from the consumption
        /// since the previous sample) at one sample counts as saturation, provisionally.
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
    /// The measured estimate is the first-sight guess (or a lower bound lifted from it) and no
    /// saturated measurement has confirmed it yet.
    private var guessed = false
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

    /// The estimate is only the first-sight guess (see the type's notes): the executors have
    /// not been measured saturated since. `QuotaPlan.provisional` carries it to the Dispatchers.
    public var provisional: Bool { configuration.fixed == nil && measured != nil && guessed }

    /// Seeds the estimate (e.g. from the last published plan after a restart) if none exists;
    /// `provisional`: that plan's estimate was still a guess.
    public mutating func seed(_ capacity: Double, provisional: Bool = false) {
        guard measured == nil, capacity.isFinite, capacity > 0 else { return }
        measured = max(capacity, configuration.floor)
        guessed = provisional
    }

    /// One sample of the work stream. `throttling`: the current plan holds someone back.
    public mutating func observe(consumedTotal: UInt64, backlog: UInt64, throttling: Bool, now: C.Instant) {
        let c = configuration
        if let last = samples.elements.last, consumedTotal < last.consumed {
            samples = FIFO()  // the stream was recreated; start over
            busyAnchor = nil
        }
        let previous = samples.elements.last
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
            guessed = false
            return
        }
        saturated = false
        if measured == nil, busy, let previous, previous.at < now {
            // Overloaded at first sight (see the type's notes)? The queue was not busy at the
            // previous sample (else the anchor would be older than now), so what the executors
            // do under this load shows only in the consumption since then.
            let recent = Double(consumedTotal - previous.consumed) / previous.at.duration(to: now).fairnessSeconds
            let rate = max(consumptionRate, recent)
            let firstThreshold = max(Double(c.minimumBacklog), rate * c.saturationBacklog.fairnessSeconds)
            if rate > 0, Double(backlog) >= max(c.overload, 1) * firstThreshold {
                // Not kept among the saturated measurements: the next one replaces it.
                saturated = true
                measured = max(rate, c.floor)
                guessed = true
                return
            }
        }
        guard var estimate = measured else { return }
        estimate = max(estimate, consumptionRate)
        if throttling, Double(backlog) < threshold / 2, dt > 0 {
            estimate *= FairnessMath.expo(max(0, c.probeGrowthPerSecond) * min(dt, 10))
        }
        measured = max(estimate, c.floor)
    }
}
