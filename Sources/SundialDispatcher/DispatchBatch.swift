import Foundation
import SundialCore
import SundialFairness

/// What happens to one fetched batch of fired messages, decided step by step as a value:
/// the Dispatcher's fire pipeline (the shell) runs each step's I/O — the fairness gate, the
/// claim in Postgres, the forward to the work stream, the record of the dispatch — and feeds
/// the outcome back. Every message of the batch ends with exactly one disposition: acked,
/// nak'd with a delay, or terminated.
///
/// The steps, in order:
/// 1. `undecodable(_:)` for each message that is not a valid `FireEnvelope` → terminated.
/// 2. `gate(_:decisions:now:)`: over-quota fires are nak'd with their delay (and, when they
///    will stay away long, their deferral recorded); the rest are claimed.
/// 3. `claimed(_:)`: fires whose run was claimed at their own version, first copy only, are
///    forwarded in priority order; the others (cancelled, superseded, already dispatched, a
///    duplicate in the batch) are acked and dropped. A failed claim naks them all.
/// 4. `forwarded(_:dispatchedAt:)`: forwarded fires are to be marked dispatched; a fire whose
///    queue is full is handed back (claim released) and nak'd; a failed forward is nak'd.
/// 5. `marked(_:)`: recorded → acked; not recorded → nak'd (the run stays claimed, and the
///    work stream's dedupe window drops the second forward).
public struct DispatchBatch: Sendable {
    /// A decoded, range-checked fired message.
    public struct Fire: Sendable, Hashable {
        /// Its position in the fetched batch.
        public var index: Int
        public var key: FireKey
        /// The timer version the fire was scheduled under; only the claimed version goes out.
        public var version: Int64
        public var tenant: String
        public var queue: String
        public var priority: JobPriority
        public var scheduledAt: Date
        public var firedAt: Date
        /// Delivered before (a deferral or a failed step brought it back).
        public var redelivered: Bool
        /// The tier fairness applied (for per-tier lag).
        public var tier: Tier

        public init(
            index: Int, key: FireKey, version: Int64, tenant: String, queue: String, priority: JobPriority,
            scheduledAt: Date, firedAt: Date, redelivered: Bool = false, tier: Tier = .standard
        ) {
            self.index = index
            self.key = key
            self.version = version
            self.tenant = tenant
            self.queue = queue
            self.priority = priority
            self.scheduledAt = scheduledAt
            self.firedAt = firedAt
            self.redelivered = redelivered
            self.tier = tier
        }
    }

    public enum Disposition: Sendable, Hashable {
        case ack
        case nak(delay: Duration)
        case term
    }

    /// How one forward to the work stream ended.
    public enum ForwardResult: Sendable, Hashable {
        case forwarded
        /// The queue's backlog is at its bound.
        case queueFull
        case failed
    }

    public struct Settings: Sendable, Hashable {
        /// Nak delay after a failed claim, forward or record.
        public var retryDelay: Duration
        /// Nak delay of a fire whose queue is full.
        public var queueFullDelay: Duration
        /// A deferral that keeps a fire away longer than this past its due time is recorded
        /// on the run (so the rescue pass leaves it alone).
        public var recordDeferralsBeyond: Duration

        public init(retryDelay: Duration, queueFullDelay: Duration, recordDeferralsBeyond: Duration) {
            self.retryDelay = retryDelay
            self.queueFullDelay = queueFullDelay
            self.recordDeferralsBeyond = recordDeferralsBeyond
        }
    }

    /// What the batch did, for the dispatcher's stats.
    public struct Counts: Sendable, Hashable {
        public var undecodable = 0
        public var deferred = 0
        /// Not claimed: cancelled, superseded, already dispatched, or a duplicate.
        public var staleDropped = 0
        /// Of `staleDropped`: the run was claimed at another (newer) version.
        public var supersededDropped = 0
        public var queueFull = 0
        /// Nak'd after a failed claim, forward or record.
        public var retried = 0
        public var dispatched = 0
    }

    /// After the fairness gate.
    public struct GateStep: Sendable {
        public var naks: [(index: Int, delay: Duration)]
        /// Deferrals to record: the run's `armed_at` moved to when the fire is expected back.
        public var recordDeferrals: [(key: FireKey, until: Date)]
        /// Fires to claim, in fetch order.
        public var claim: [Fire]
    }

    /// After the claim.
    public struct ClaimStep: Sendable {
        /// Fires to nak at once (the claim failed).
        public var naks: [(index: Int, delay: Duration)]
        /// Fires to forward, highest priority first (ties keep fetch order).
        public var forward: [Fire]
    }

    /// After the forward.
    public struct ForwardStep: Sendable {
        /// Fires whose queue is full: release their claims until `releaseUntil`, then nak.
        public var queueFull: [Fire]
        public var releaseUntil: Date
        public var queueFullNaks: [(index: Int, delay: Duration)]
        /// Forwarded fires whose dispatch is to be recorded.
        public var mark: [Fire]
    }

    /// The end of the batch.
    public struct FinalStep: Sendable {
        public var acks: [Int]
        public var naks: [(index: Int, delay: Duration)]
        /// The fires that went out and were recorded (lag is measured on them).
        public var dispatched: [Fire]
    }

    public let size: Int
    public let settings: Settings
    public private(set) var dispositions: [Int: Disposition] = [:]
    public private(set) var counts = Counts()
    private var dropped: [Int] = []
    private var marking: [Fire] = []
    private var failedForwards: [Int] = []

    public init(size: Int, settings: Settings) {
        self.size = size
        self.settings = settings
    }

    /// Every message has its disposition.
    public var isSettled: Bool { dispositions.count == size }

    private mutating func settle(_ index: Int, _ disposition: Disposition) {
        // The first disposition stands; a second is a bug in the shell (the tests check it).
        assert(dispositions[index] == nil, "message \(index) settled twice")
        if dispositions[index] == nil { dispositions[index] = disposition }
    }

    /// Step 1: a message that is not a valid fire is terminated (and kept as poison).
    public mutating func undecodable(_ index: Int) {
        settle(index, .term)
        counts.undecodable += 1
    }

    /// Step 2: the gate's decision for each decoded fire (same order).
    public mutating func gate<C: Clock>(_ fires: [Fire], decisions: [FairnessGate<C>.Decision], now: Date) -> GateStep {
        var step = GateStep(naks: [], recordDeferrals: [], claim: [])
        for (fire, decision) in zip(fires, decisions) {
            switch decision {
            case .dispatch:
                step.claim.append(fire)
            case .deferred(let delay, let lineWait):
                settle(fire.index, .nak(delay: delay))
                step.naks.append((fire.index, delay))
                counts.deferred += 1
                // Recorded for the whole expected wait, not just this nak's delay: re-deferrals
                // of the same fire then find `armed_at` far enough ahead and write nothing.
                let back = now.addingTimeInterval(lineWait.seconds)
                let beyond = settings.recordDeferralsBeyond.seconds
                if back.timeIntervalSince(fire.scheduledAt) > beyond {
                    // Slack past the return, for redelivery and processing.
                    step.recordDeferrals.append((fire.key, back.addingTimeInterval(beyond)))
                }
            }
        }
        return step
    }

    /// Step 3: the claim's result — the version each claimed run is armed at, or nil when the
    /// claim failed.
    public mutating func claimed(_ fires: [Fire], versions: [FireKey: Int64]?) -> ClaimStep {
        guard let versions else {
            for fire in fires { settle(fire.index, .nak(delay: settings.retryDelay)) }
            counts.retried += fires.count
            return ClaimStep(naks: fires.map { ($0.index, settings.retryDelay) }, forward: [])
        }
        // Only the fire of the version the claim matched goes out: after an update, the old
        // version's fire (same run key) can sit in the same batch, before the new one.
        var live: [Fire] = []
        var seen = Set<FireKey>()
        for fire in fires {
            if versions[fire.key] == fire.version, seen.insert(fire.key).inserted {
                live.append(fire)
            } else {
                counts.staleDropped += 1
                if let current = versions[fire.key], current != fire.version { counts.supersededDropped += 1 }
                // Acked (dropped) when the batch ends.
                dropped.append(fire.index)
            }
        }
        let ordered = live.enumerated().sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }
            .map(\.element)
        return ClaimStep(naks: [], forward: ordered)
    }

    /// Step 4: how each forward ended (same order as `ClaimStep.forward`).
    public mutating func forwarded(_ fires: [Fire], results: [ForwardResult], dispatchedAt: Date) -> ForwardStep {
        var step = ForwardStep(
            queueFull: [], releaseUntil: dispatchedAt.addingTimeInterval(settings.queueFullDelay.seconds + 30),
            queueFullNaks: [], mark: [])
        for (fire, result) in zip(fires, results) {
            switch result {
            case .forwarded:
                step.mark.append(fire)
            case .queueFull:
                // The fire waits here, its run handed back to `armed` so a cancel or update
                // still wins meanwhile.
                settle(fire.index, .nak(delay: settings.queueFullDelay))
                step.queueFull.append(fire)
                step.queueFullNaks.append((fire.index, settings.queueFullDelay))
                counts.queueFull += 1
            case .failed:
                failedForwards.append(fire.index)
            }
        }
        marking = step.mark
        return step
    }

    /// Step 5: whether the forwarded fires' dispatch was recorded. Ends the batch.
    public mutating func marked(_ recorded: Bool) -> FinalStep {
        var final = FinalStep(acks: [], naks: [], dispatched: [])
        var retry = failedForwards
        if recorded {
            final.dispatched = marking
            counts.dispatched += marking.count
        } else {
            retry += marking.map(\.index)
        }
        final.acks = dropped + final.dispatched.map(\.index)
        for index in final.acks { settle(index, .ack) }
        for index in retry { settle(index, .nak(delay: settings.retryDelay)) }
        final.naks = retry.map { ($0, settings.retryDelay) }
        counts.retried += retry.count
        dropped = []
        marking = []
        failedForwards = []
        return final
    }
}
