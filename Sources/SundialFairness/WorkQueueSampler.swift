/// Turns consumer samples of the work stream into per-queue figures for the capacity estimates:
/// each queue's own consumption and backlog, and only for queues with live executors. A queue
/// whose executors are gone, slow to start, or were never started holds jobs that nobody is
/// taking; measured, it would read as a queue of capacity zero.
///
/// Pure and generic over a clock; the Governor feeds it `CONSUMER.LIST` of the work stream.
public struct WorkQueueSampler<C: Clock>: Sendable where C.Duration == Duration {
    /// One executor consumer as JetStream reports it.
    public struct Consumer: Sendable, Hashable {
        public var name: String
        /// The queue its filter subject names.
        public var queue: String
        /// Jobs not yet delivered.
        public var pending: UInt64
        /// Jobs delivered and not yet acknowledged.
        public var ackPending: UInt64
        /// Pull requests waiting: someone is asking for work right now.
        public var waiting: UInt64
        /// Consumer sequence up to which everything is acknowledged (grows with each ack).
        public var ackFloor: UInt64

        public init(name: String, queue: String, pending: UInt64, ackPending: UInt64, waiting: UInt64, ackFloor: UInt64) {
            self.name = name
            self.queue = queue
            self.pending = pending
            self.ackPending = ackPending
            self.waiting = waiting
            self.ackFloor = ackFloor
        }
    }

    /// One queue with live executors, as one sample sees it.
    public struct QueueSample: Sendable, Hashable {
        /// Jobs its executors acknowledged since the sampler first saw the queue (monotonic).
        public var consumedTotal: UInt64
        /// Jobs waiting in it or held by its executors.
        public var backlog: UInt64

        public init(consumedTotal: UInt64, backlog: UInt64) {
            self.consumedTotal = consumedTotal
            self.backlog = backlog
        }
    }

    /// What one sample adds up to, per queue.
    public struct Sample: Sendable, Hashable {
        /// Queues with live executors (an ack or a waiting pull within `idleAfter`), also
        /// those with nothing to do.
        public var live: [String: QueueSample]
        /// Queues holding jobs that nobody takes, and how many.
        public var deadQueues: [String: UInt64]
    }

    struct Seen: Sendable {
        var queue: String
        var ackFloor: UInt64
        var lastProgress: C.Instant
    }

    /// A consumer with neither a pull waiting nor an ack for this long is not live.
    public var idleAfter: Duration
    private var seen: [String: Seen] = [:]
    private var consumed: [String: UInt64] = [:]

    public init(idleAfter: Duration = .seconds(10)) {
        self.idleAfter = idleAfter
    }

    public mutating func observe(_ consumers: [Consumer], now: C.Instant) -> Sample {
        var live: [String: QueueSample] = [:]
        var held: [String: UInt64] = [:]
        var present = Set<String>()
        for consumer in consumers {
            present.insert(consumer.name)
            // First sight counts as idle: a consumer is live once it shows a pull or an ack,
            // so jobs nobody takes never read as a live queue, not even for the first seconds.
            var entry = seen[consumer.name]
            if entry?.queue != consumer.queue { entry = nil }  // recreated with another filter
            var current = entry ?? Seen(
                queue: consumer.queue, ackFloor: consumer.ackFloor,
                lastProgress: now.advanced(by: .zero - idleAfter - .seconds(1)))
            if consumer.ackFloor > current.ackFloor {
                // Acks since the last sample count as the queue's consumption (a new consumer
                // starts at its floor: what it acked before we saw it is not this period's work).
                consumed[consumer.queue, default: 0] &+= consumer.ackFloor - current.ackFloor
                current.ackFloor = consumer.ackFloor
                current.lastProgress = now
            } else if consumer.ackFloor < current.ackFloor {
                current.ackFloor = consumer.ackFloor  // recreated under the same name
            }
            if consumer.waiting > 0 { current.lastProgress = now }
            seen[consumer.name] = current
            let jobs = consumer.pending &+ consumer.ackPending
            held[consumer.queue, default: 0] &+= jobs
            if current.lastProgress.duration(to: now) <= idleAfter {
                live[consumer.queue, default: QueueSample(consumedTotal: 0, backlog: 0)].backlog &+= jobs
            }
        }
        seen = seen.filter { present.contains($0.key) }
        let queuesSeen = Set(seen.values.map(\.queue))
        consumed = consumed.filter { queuesSeen.contains($0.key) }
        for queue in live.keys { live[queue]!.consumedTotal = consumed[queue] ?? 0 }
        let dead = held.filter { live[$0.key] == nil && $0.value > 0 }
        return Sample(live: live, deadQueues: dead)
    }
}
