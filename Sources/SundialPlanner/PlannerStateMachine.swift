import SundialCore
import SundialStore

/// The Planner's timing decisions as a pure state machine (no I/O): which shard leases to
/// acquire, renew or give up, when to claim due timers of each shard, when to republish a
/// shard just taken over, and when to run the rescue pass. Live planners share the shards:
/// each heartbeat returns who is alive, which sets this planner's share (`ShardShare`); it
/// acquires up to its share and hands back what it holds beyond it. The service feeds it the time and
/// the outcomes of the actions it asked for; tests drive it with a manual clock.
public struct PlannerStateMachine<C: Clock> where C.Duration == Duration {
    public struct Timing: Sendable {
        /// How often each held shard is scanned for due timers.
        public var claimInterval: Duration
        /// Lease length (database clock). Renewed every third of it.
        public var leaseTTL: Duration
        /// How often to send a heartbeat (and learn who else is alive), and to look for free
        /// or expired shards while holding fewer than the share.
        public var acquireInterval: Duration
        /// How often each shard's rescue pass runs.
        public var rescueInterval: Duration
        /// Most shards this planner holds, whatever its share.
        public var maxShards: Int
        /// Shards that exist (the database's count, `SundialNamespace.shardCount`), split among
        /// the live planners.
        public var totalShards: Int

        public init(
            claimInterval: Duration, leaseTTL: Duration, acquireInterval: Duration,
            rescueInterval: Duration, maxShards: Int, totalShards: Int = ShardMap.defaultCount
        ) {
            self.claimInterval = claimInterval
            self.leaseTTL = leaseTTL
            self.acquireInterval = acquireInterval
            self.rescueInterval = rescueInterval
            self.maxShards = maxShards
            self.totalShards = totalShards
        }
    }

    public enum Action: Sendable, Hashable {
        /// Take up to `limit` free or expired shards.
        case acquire(limit: Int)
        case renew([ShardLease])
        /// A newly acquired shard: republish its armed future timers (their schedules may be
        /// missing if the previous owner died mid-publish). Same subject = replace, so no dup.
        case republish(ShardLease)
        case claim(ShardLease)
        case rescue(ShardLease)
        /// Say this planner is alive and learn who else is (`membership`).
        case heartbeat
        /// Hand these shards back: they are beyond this planner's share (dropped already).
        case release([ShardLease])
    }

    struct Held {
        var lease: ShardLease
        /// Local time the lease was last confirmed; it is trusted until `validUntil`.
        var confirmedAt: C.Instant
        var nextClaim: C.Instant
        var nextRescue: C.Instant
        var republishPending: Bool
        var claimInFlight = false
    }

    public let timing: Timing
    private(set) var held: [Int: Held] = [:]
    private var nextAcquire: C.Instant?
    private var acquireInFlight = false
    private var nextHeartbeat: C.Instant?
    private var heartbeatInFlight = false
    /// This planner's share of the shards; nil until the first heartbeat answered.
    private(set) var share: Int?
    private var renewInFlight = false
    /// After a failed renewal, the next try waits until then (no busy loop while Postgres fails fast).
    private var renewRetryAt: C.Instant?
    /// The shard claimed last: the next tick's claims start after it, so when a tick's work is
    /// cut short (see `deferred`) every shard gets its turn.
    private var lastClaimedShard = -1

    public init(timing: Timing) {
        self.timing = timing
    }

    public var heldShards: [Int] { held.keys.sorted() }
    /// Shards this planner aims to hold: its share, at most `maxShards`.
    public var targetShards: Int { min(timing.maxShards, share ?? timing.maxShards) }
    public var leases: [ShardLease] { held.values.map(\.lease).sorted { $0.shard < $1.shard } }

    /// What to do now.
    public mutating func tick(now: C.Instant) -> [Action] {
        var actions: [Action] = []
        // A lease not confirmed for 2/3 of its TTL is dropped locally before the database
        // could hand it to someone else (the SQL is fenced by epoch anyway).
        let trust = timing.leaseTTL * 2 / 3
        for (shard, entry) in held where entry.confirmedAt.advanced(by: trust) <= now {
            held[shard] = nil
        }
        if !heartbeatInFlight, nextHeartbeat.map({ $0 <= now }) ?? true {
            heartbeatInFlight = true
            nextHeartbeat = now.advanced(by: timing.acquireInterval)
            actions.append(.heartbeat)
        }
        let target = targetShards
        if !acquireInFlight, held.count < target, nextAcquire.map({ $0 <= now }) ?? true {
            acquireInFlight = true
            nextAcquire = now.advanced(by: timing.acquireInterval)
            actions.append(.acquire(limit: target - held.count))
        }
        if held.count > target {
            // The highest-numbered shards go back; one whose load is in flight stays until
            // its load finished (the next tick hands it back then).
            let spare = held.values.filter { !$0.claimInFlight }.map(\.lease.shard).sorted(by: >)
            let give = Array(spare.prefix(held.count - target))
            if !give.isEmpty {
                let leases = give.sorted().compactMap { held[$0]?.lease }
                for shard in give { held[shard] = nil }
                actions.append(.release(leases))
            }
        }
        let renewAfter = timing.leaseTTL / 3
        let toRenew = held.values.filter { $0.confirmedAt.advanced(by: renewAfter) <= now }.map(\.lease)
        if !renewInFlight, !toRenew.isEmpty, renewRetryAt.map({ $0 <= now }) ?? true {
            renewInFlight = true
            actions.append(.renew(toRenew.sorted { $0.shard < $1.shard }))
        }
        let shards = held.keys.sorted()
        let rotated = shards.filter { $0 > lastClaimedShard } + shards.filter { $0 <= lastClaimedShard }
        for shard in rotated {
            guard var entry = held[shard] else { continue }
            if entry.republishPending {
                entry.republishPending = false
                actions.append(.republish(entry.lease))
            }
            // Rescue before claim: a long claim can use up the tick's time box, and overdue
            // runs must not wait behind a backlog of new loads.
            if entry.nextRescue <= now {
                entry.nextRescue = now.advanced(by: timing.rescueInterval)
                actions.append(.rescue(entry.lease))
            }
            if !entry.claimInFlight, entry.nextClaim <= now {
                entry.claimInFlight = true
                actions.append(.claim(entry.lease))
            }
            held[shard] = entry
        }
        return actions
    }

    public mutating func acquired(_ leases: [ShardLease], now: C.Instant) {
        acquireInFlight = false
        for lease in leases {
            held[lease.shard] = Held(
                lease: lease, confirmedAt: now, nextClaim: now,
                nextRescue: now.advanced(by: timing.rescueInterval), republishPending: true)
        }
    }

    public mutating func acquireFailed() {
        acquireInFlight = false
    }

    /// A heartbeat answered: `members` are the live planners, `me` this one.
    public mutating func membership(_ members: [String], me: String) {
        heartbeatInFlight = false
        share = ShardShare.target(shards: timing.totalShards, members: members, me: me)
    }

    /// A heartbeat failed: keep the share last learned, try again next interval.
    public mutating func heartbeatFailed() {
        heartbeatInFlight = false
    }

    /// `granted` are the leases the database extended; any other requested one was lost.
    public mutating func renewed(requested: [ShardLease], granted: [ShardLease], now: C.Instant) {
        renewInFlight = false
        let grantedShards = Dictionary(uniqueKeysWithValues: granted.map { ($0.shard, $0) })
        for lease in requested {
            if let renewed = grantedShards[lease.shard], held[lease.shard]?.lease.epoch == renewed.epoch {
                held[lease.shard]?.lease = renewed
                held[lease.shard]?.confirmedAt = now
            } else {
                held[lease.shard] = nil
            }
        }
    }

    /// The service did not get to `action` in this tick (its time box ran out, so that lease
    /// renewals are never starved by long claims): it is due again at once.
    public mutating func deferred(_ action: Action, now: C.Instant) {
        switch action {
        case .claim(let lease):
            held[lease.shard]?.claimInFlight = false
            held[lease.shard]?.nextClaim = now
        case .republish(let lease):
            held[lease.shard]?.republishPending = true
        case .rescue(let lease):
            held[lease.shard]?.nextRescue = now
        case .acquire:
            acquireInFlight = false
            nextAcquire = now
        case .renew:
            renewInFlight = false
        case .heartbeat:
            heartbeatInFlight = false
            nextHeartbeat = now
        case .release:
            break  // lease work: never put off
        }
    }

    /// The database could not be reached; keep the leases until their local trust runs out.
    public mutating func renewFailed(now: C.Instant) {
        renewInFlight = false
        renewRetryAt = now.advanced(by: timing.leaseTTL / 15)
    }

    /// A claim finished. A full batch means more are due: claim again at once.
    public mutating func claimed(shard: Int, count: Int, batchSize: Int, now: C.Instant) {
        lastClaimedShard = shard
        guard var entry = held[shard] else { return }
        entry.claimInFlight = false
        entry.nextClaim = count >= batchSize ? now : now.advanced(by: timing.claimInterval)
        held[shard] = entry
    }

    public mutating func claimFailed(shard: Int, now: C.Instant) {
        let next = now.advanced(by: timing.claimInterval)
        held[shard]?.claimInFlight = false
        held[shard]?.nextClaim = next
    }

    /// Graceful shutdown: the leases to hand back.
    public mutating func releaseAll() -> [Int] {
        defer { held.removeAll() }
        return held.keys.sorted()
    }

    /// The earliest instant something is due, so the service can sleep until then.
    public func nextDeadline(after now: C.Instant) -> C.Instant {
        var deadline = now.advanced(by: timing.claimInterval)
        if let nextAcquire, held.count < targetShards { deadline = min(deadline, nextAcquire) }
        if let nextHeartbeat, !heartbeatInFlight { deadline = min(deadline, nextHeartbeat) }
        for entry in held.values {
            if !entry.claimInFlight { deadline = min(deadline, entry.nextClaim) }
            deadline = min(deadline, max(entry.confirmedAt.advanced(by: timing.leaseTTL / 3), renewRetryAt ?? now))
            deadline = min(deadline, entry.nextRescue)
        }
        return max(deadline, now)
    }
}
