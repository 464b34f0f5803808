/// Turns per-queue consumer samples of the work stream into what the capacity estimate may
/// use: only queues with live executors count. A queue whose executors are gone, slow to
/// start, or were never started holds jobs that nobody is taking; counted in the backlog they
/// would read as global saturation and throttle every tenant on every other queue (issue 10).
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

    /// What one sample adds up to over the live queues.
    public struct Sample: Sendable, Hashable {
        /// Jobs acknowledged by live queues' executors since the sampler started (monotonic).
        public var consumedTotal: UInt64
        /// Jobs waiting in, or held by executors of, live queues.
        public var backlog: UInt64
        /// Queues with live executors, and queues holding jobs that nobody takes.
        public var liveQueues: [String]
        public var deadQueues: [String: UInt64]
    }

    struct Seen: Sendable {
        var ackFloor: UInt64
        var lastProgress: C.Instant
    }

    /// A consumer with jobs but without a pull waiting or an ack for this long is dead.
    public var idleAfter: Duration
    private var seen: [String: Seen] = [:]
    private var consumedTotal: UInt64 = 0

    public init(idleAfter: Duration = .seconds(10)) {
        self.idleAfter = idleAfter
    }

    public mutating func observe(_ consumers: [Consumer], now: C.Instant) -> Sample {
        var backlog: UInt64 = 0
        var live = Set<String>()
        var dead: [String: UInt64] = [:]
        var present = Set<String>()
        for consumer in consumers {
            present.insert(consumer.name)
            // First sight counts as idle: a consumer is live once it shows a pull or an ack,
            // so jobs nobody takes never read as saturation, not even for the first seconds.
            var entry = seen[consumer.name]
                ?? Seen(ackFloor: consumer.ackFloor, lastProgress: now.advanced(by: .zero - idleAfter - .seconds(1)))
            if consumer.ackFloor > entry.ackFloor {
                // Acks since the last sample count as consumption (a new consumer starts at its
                // floor: what it acked before we saw it is not this period's work).
                consumedTotal &+= consumer.ackFloor - entry.ackFloor
                entry.ackFloor = consumer.ackFloor
                entry.lastProgress = now
            } else if consumer.ackFloor < entry.ackFloor {
                entry.ackFloor = consumer.ackFloor  // recreated under the same name
            }
            if consumer.waiting > 0 { entry.lastProgress = now }
            seen[consumer.name] = entry
            let held = consumer.pending &+ consumer.ackPending
            if held == 0 { continue }
            if entry.lastProgress.duration(to: now) <= idleAfter {
                live.insert(consumer.queue)
                backlog &+= held
            } else {
                dead[consumer.queue, default: 0] &+= held
            }
        }
        seen = seen.filter { present.contains($0.key) }
        for queue in live { dead[queue] = nil }
        return Sample(consumedTotal: consumedTotal, backlog: backlog, liveQueues: live.sorted(), deadQueues: dead)
    }
}
