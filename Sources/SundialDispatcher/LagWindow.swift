/// The most recent dispatch lags (seconds) of one tier, for percentiles in `$SRV.STATS`: a ring of
/// the last `capacity` samples, so memory is fixed and old floods age out.
public struct LagWindow: Sendable {
    public struct Summary: Sendable, Hashable {
        public var count: Int
        public var p50: Double
        public var p95: Double
        public var p99: Double
        public var max: Double
    }

    private var samples: [Double] = []
    private var next = 0
    public let capacity: Int

    public init(capacity: Int = 4096) { self.capacity = Swift.max(1, capacity) }

    public mutating func record(_ seconds: Double) {
        guard seconds.isFinite else { return }
        if samples.count < capacity {
            samples.append(seconds)
        } else {
            samples[next] = seconds
        }
        next = (next + 1) % capacity
    }

    /// Nearest-rank percentiles of the samples held.
    public func summary() -> Summary {
        guard !samples.isEmpty else { return Summary(count: 0, p50: 0, p95: 0, p99: 0, max: 0) }
        let sorted = samples.sorted()
        func rank(_ p: Double) -> Double {
            sorted[Swift.min(sorted.count - 1, Swift.max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
        }
        return Summary(count: sorted.count, p50: rank(0.5), p95: rank(0.95), p99: rank(0.99), max: sorted.last!)
    }
}
