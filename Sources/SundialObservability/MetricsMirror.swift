import CoreMetrics
import Synchronization

/// Turns totals a service already keeps (atomics in its stats) into Prometheus counters and
/// gauges, sampled every few seconds — the hot paths stay free of metric calls. A counter is
/// advanced by the growth since the last sample (a total that went down, e.g. a restarted
/// component, is taken as the new base).
public final class MetricsMirror: Sendable {
    private struct Key: Hashable {
        var name: String
        var labels: [String]
    }

    private let last = Mutex<[Key: Int64]>([:])
    private let counters = Mutex<[Key: CoreMetrics.Counter]>([:])
    private let gauges = Mutex<[Key: CoreMetrics.Gauge]>([:])
    private let labels: LabelBudget

    /// `labels`: bounds the distinct label values (queue names come from tenants and executors).
    public init(labels: LabelBudget = LabelBudget()) {
        self.labels = labels
    }

    /// Sets counter `name` to `total` (by adding its growth since the last call). Totals are
    /// remembered per original label set, so several queues beyond the label budget add up
    /// correctly in their shared `other` series.
    public func counter(_ name: String, _ total: Int, _ dimensions: [(String, String)] = []) {
        let original = Key(name: name, labels: dimensions.flatMap { [$0.0, $0.1] })
        let mapped = labels.bounded(dimensions)
        let key = Key(name: name, labels: mapped.flatMap { [$0.0, $0.1] })
        // A label set that cannot be remembered (beyond 100,000) is not counted at all: adding
        // its whole total every sample would over-count.
        guard let previous = last.withLock({ last -> Int64?? in
            let known = last[original]
            guard known != nil || last.count < 100_000 else { return nil }
            last[original] = Int64(total)
            return .some(known)
        }) else { return }
        let counter = counters.withLock { counters in
            if let existing = counters[key] { return existing }
            let made = CoreMetrics.Counter(label: name, dimensions: mapped)
            counters[key] = made
            return made
        }
        let growth = Int64(total) - (previous ?? 0)
        if growth > 0 { counter.increment(by: growth) }
    }

    /// Sets gauge `name`. A gauge of a queue beyond the label budget is not exported (gauges
    /// of different queues cannot share a series).
    public func gauge(_ name: String, _ value: Double, _ dimensions: [(String, String)] = []) {
        let dimensions = labels.bounded(dimensions)
        guard !dimensions.contains(where: { $0.0 == "queue" && $0.1 == LabelBudget.overflow }) else { return }
        let key = Key(name: name, labels: dimensions.flatMap { [$0.0, $0.1] })
        let gauge = gauges.withLock { gauges in
            if let existing = gauges[key] { return existing }
            let made = CoreMetrics.Gauge(label: name, dimensions: dimensions)
            gauges[key] = made
            return made
        }
        gauge.record(value)
    }
}

/// Bounds the distinct values of the `queue` label: the first `maximumQueues` queues seen keep
/// their name, later ones are reported as `other` (a metric series per queue name an executor
/// invents would grow without bound).
public final class LabelBudget: Sendable {
    public let maximumQueues: Int
    /// The label value of every queue beyond the budget.
    public static let overflow = "other"
    private let queues = Mutex<Set<String>>([])

    public init(maximumQueues: Int = 200) {
        self.maximumQueues = maximumQueues
    }

    public func queue(_ name: String) -> String {
        queues.withLock { queues in
            if queues.contains(name) { return name }
            guard queues.count < maximumQueues else { return Self.overflow }
            queues.insert(name)
            return name
        }
    }

    public func bounded(_ dimensions: [(String, String)]) -> [(String, String)] {
        dimensions.map { $0.0 == "queue" ? ($0.0, queue($0.1)) : $0 }
    }
}
