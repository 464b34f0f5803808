import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import SundialContract
import SundialCore
import SundialMessaging
import SundialNATS
import SundialObservability
import SundialProto
import SundialSchedule
import SundialStore
import Synchronization

/// Planner settings; defaults are production values (see services/planner/README.md).
public struct PlannerConfig: Sendable {
    public var namespace: SundialNamespace = .standard
    /// Stream bounds, applied when this service creates or updates the streams at startup.
    public var streamLimits = StreamLimits()
    /// Unique per process; the lease owner name.
    public var instanceID: String = "planner-\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    /// Timers due within this window are loaded into JetStream. Same value as Ingest's.
    public var horizon: Duration = .seconds(300)
    /// An occurrence loaded more than this late is missed: its timer's misfire policy decides
    /// (docs/lifecycle.md#missed-occurrences). Same value as Ingest's.
    public var misfireThreshold: Duration = MisfireRule.defaultThreshold
    /// How often each shard is scanned for newly due timers.
    public var claimInterval: Duration = .seconds(1)
    /// Rows per claim query (a full batch triggers an immediate next claim).
    public var claimBatchSize: Int = 5000
    /// Memory bound of one claim: payload bytes loaded (64 MiB) and runs armed (50,000; a
    /// fast recurring timer arms several). A claim cut short is followed by the next at once.
    public var claimBudget = TimerStore.LoadBudget()
    /// Shard lease length; a dead planner's shards are taken over after at most this long.
    public var leaseTTL: Duration = .seconds(15)
    /// Upper bound of shards this instance holds, whatever its share of the live planners
    /// (no bound by default: the share decides).
    public var maxShards: Int = ShardMap.maximumCount
    /// An armed timer this overdue with no dispatch is republished (it may have been lost
    /// between a commit and its publish). The Dispatcher drops the duplicate otherwise.
    public var rescueGrace: Duration = .seconds(60)
    /// Shard loads (claims, republishes, rescues) run at once, each on its own pooled Postgres
    /// session: a tick over many shards takes about 1/n as long. Keep it below the pool size.
    public var loadConcurrency: Int = 4
    public var rescueInterval: Duration = .seconds(10)
    /// Dispatched-but-lost: a run claimed or dispatched this long ago, with no result and its
    /// job no longer in the work stream (lost with a node, purged, acked without a report), is
    /// dispatched again and counted in `redispatched`. A job still in the work stream (queued
    /// or being worked) is looked at again after as long. Longer than the work stream's dedupe
    /// window (`StreamLimits.workDuplicateWindow`), which would drop the second forward.
    public var redispatchAfter: Duration = .seconds(900)
    /// Finished timers (with their runs and payloads), and finished runs of timers that go
    /// on, are deleted this long after they finished (nil: kept for ever). See `ReaperPacing`.
    public var retention: Duration? = .seconds(7 * 86_400)
    /// Timers walked per reaper transaction.
    public var reaperBatchSize: Int = 1000
    /// Days of `timer_runs` partitions created ahead of today (`RunPartitionCalendar`): the
    /// planners may be down this long before new runs spill into the default partition.
    public var partitionLookaheadDays: Int = 3
    /// Days of timer creation per `timer_runs` partition. Longer: fewer partitions, so less
    /// work per statement (Postgres locks every partition a cached plan names), but finished
    /// timers stay up to this much longer past the retention.
    public var partitionDays: Int = 7

    public init() {}

    public func validate() throws(SundialError) {
        try streamLimits.validate()
        guard horizon >= .seconds(1) else { throw .invalid("planner.horizon", "must be at least 1s") }
        guard misfireThreshold >= .seconds(1) else { throw .invalid("planner.misfire_threshold", "must be at least 1s") }
        guard claimInterval >= .milliseconds(10), claimInterval < horizon else {
            throw .invalid("planner.claim_interval", "must be ≥ 10ms and shorter than the horizon")
        }
        guard leaseTTL >= .seconds(1) else { throw .invalid("planner.lease_ttl", "must be at least 1s") }
        guard (1...ShardMap.maximumCount).contains(maxShards) else {
            throw .invalid("planner.max_shards", "must be in 1…\(ShardMap.maximumCount)")
        }
        guard (1...50_000).contains(claimBatchSize) else {
            throw .invalid("planner.claim_batch_size", "must be in 1…50000")
        }
        guard claimBudget.bytes >= 1 << 20, claimBudget.runs >= 1 else {
            throw .invalid("planner.claim_budget", "needs at least 1 MiB and 1 run")
        }
        guard (1...64).contains(loadConcurrency) else {
            throw .invalid("planner.load_concurrency", "must be in 1…64")
        }
        guard rescueGrace >= .seconds(1) else { throw .invalid("planner.rescue_grace", "must be at least 1s") }
        guard redispatchAfter > streamLimits.workDuplicateWindow else {
            throw .invalid("planner.redispatch_after", "must be longer than the work stream's dedupe window (\(streamLimits.workDuplicateWindow))")
        }
        if let retention, retention < .seconds(1) || retention > .seconds(3650 * 86_400) {
            throw .invalid("planner.retention", "must be 1s…3650d, or off")
        }
        guard (1...100_000).contains(reaperBatchSize) else {
            throw .invalid("planner.reaper_batch_size", "must be in 1…100000")
        }
        guard (1...60).contains(partitionLookaheadDays) else {
            throw .invalid("planner.partition_lookahead_days", "must be in 1…60")
        }
        guard (1...31).contains(partitionDays) else {
            throw .invalid("planner.partition_days", "must be in 1…31")
        }
    }
}

/// Counters shown in `$SRV.STATS` and used by tests.
public final class PlannerStats: Sendable {
    public let claimed = Atomic<Int>(0)
    public let published = Atomic<Int>(0)
    public let republished = Atomic<Int>(0)
    public let rescued = Atomic<Int>(0)
    /// Runs dispatched again because their job was lost (each a possible duplicate, if the
    /// job was in fact only slow to report).
    public let redispatched = Atomic<Int>(0)
    public let publishFailures = Atomic<Int>(0)
    public let leaseAcquisitions = Atomic<Int>(0)
    public let heldShards = Atomic<Int>(0)
    /// Of `leaseAcquisitions`, shards whose lease had expired under another owner.
    public let leaseTakeovers = Atomic<Int>(0)
    /// Shards handed back to balance: beyond this planner's share once others joined.
    public let shardsReleased = Atomic<Int>(0)
    /// Live planners at the last heartbeat, this one included (0 before the first).
    public let livePlanners = Atomic<Int>(0)
    /// Deleted by the reaper (retention): timers, and runs.
    public let reapedTimers = Atomic<Int>(0)
    public let reapedRuns = Atomic<Int>(0)
    /// `timer_runs` partitions dropped whole by the reaper (their runs are not in `reapedRuns`).
    public let partitionsDropped = Atomic<Int>(0)
    /// Claims that stopped early at the byte or run budget.
    public let claimsCutByBudget = Atomic<Int>(0)
    /// Claims, republishes and rescues put off to the next tick by its time box.
    public let actionsDeferred = Atomic<Int>(0)

    public init() {}

    /// The counters as `$SRV.STATS` reports them (`data`).
    public var snapshot: PlannerStatsReport {
        PlannerStatsReport(
            claimed: claimed.load(ordering: .relaxed), published: published.load(ordering: .relaxed),
            republished: republished.load(ordering: .relaxed), rescued: rescued.load(ordering: .relaxed),
            redispatched: redispatched.load(ordering: .relaxed),
            publishFailures: publishFailures.load(ordering: .relaxed),
            leaseAcquisitions: leaseAcquisitions.load(ordering: .relaxed), heldShards: heldShards.load(ordering: .relaxed),
            shardsReleased: shardsReleased.load(ordering: .relaxed), livePlanners: livePlanners.load(ordering: .relaxed),
            claimsCutByBudget: claimsCutByBudget.load(ordering: .relaxed),
            actionsDeferred: actionsDeferred.load(ordering: .relaxed))
    }
}

/// What a planner reports in `$SRV.STATS` (`data`); wire names are the snake_case keys.
public struct PlannerStatsReport: Codable, Sendable, Hashable {
    public var claimed: Int
    public var published: Int
    public var republished: Int
    public var rescued: Int
    public var redispatched: Int
    public var publishFailures: Int
    public var leaseAcquisitions: Int
    public var heldShards: Int
    public var shardsReleased: Int
    public var livePlanners: Int
    public var claimsCutByBudget: Int
    public var actionsDeferred: Int

    enum CodingKeys: String, CodingKey {
        case claimed, published, republished, rescued, redispatched
        case publishFailures = "publish_failures"
        case leaseAcquisitions = "lease_acquisitions"
        case heldShards = "held_shards"
        case shardsReleased = "shards_released"
        case livePlanners = "live_planners"
        case claimsCutByBudget = "claims_cut_by_budget"
        case actionsDeferred = "actions_deferred"
    }
}

/// The Planner: holds shard leases, and every tick claims each shard's timers due within
/// the horizon and publishes each as a JetStream scheduled message on its own subject.
public final class PlannerService: Service, Sendable {
    public let config: PlannerConfig
    public let stats = PlannerStats()
    private let connection: NATSConnection
    private let timers: TimerStore
    private let leases: LeaseStore
    private let logger: Logger
    /// Per shard, when its dispatched-but-lost pass last ran.
    private let lastInFlightCheck = Mutex([Int: ContinuousClock.Instant]())

    public init(config: PlannerConfig, connection: NATSConnection, timers: TimerStore, leases: LeaseStore, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.connection = connection
        self.timers = timers
        self.leases = leases
        self.logger = logger
    }

    public func run() async throws {
        try await SundialTopology.ensure(connection, namespace: config.namespace, limits: config.streamLimits)
        let stats = self.stats
        let micro = MicroService(
            identity: .init(
                name: SundialNamespace.plannerServiceName, version: "0.1.0",
                description: "Sundial planner: loads due timers into JetStream",
                metadata: ["instance": config.instanceID]),
            connection: connection, endpoints: [], logger: logger, extraStats: { stats.snapshot })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await micro.run() }
            group.addTask { await self.planLoop() }
            group.addTask { await self.sampleMetrics() }
            group.addTask { await self.reapLoop() }
            // When the plan loop ends (graceful shutdown), stop answering discovery too.
            try await group.next()
            group.cancelAll()
        }
    }

    private func planLoop() async {
        let shards = (try? await cancelWhenGracefulShutdown { await self.runMachine() }) ?? []
        // Graceful: hand the shards back so a peer takes them without waiting for expiry.
        do {
            try await leases.release(owner: config.instanceID, shards: shards)
            try await leases.leave(owner: config.instanceID)
            logger.info("planner \(config.instanceID) released \(shards.count) shards")
        } catch {
            logger.warning("releasing shard leases failed (they expire in \(config.leaseTTL)): \(error)")
        }
    }

    /// Ticks the state machine until cancelled; returns the shards still held.
    private func runMachine() async -> [Int] {
        let clock = ContinuousClock()
        var machine = PlannerStateMachine<ContinuousClock>(
            timing: .init(
                claimInterval: config.claimInterval, leaseTTL: config.leaseTTL,
                acquireInterval: config.leaseTTL / 3, rescueInterval: config.rescueInterval,
                maxShards: min(config.maxShards, config.namespace.shardCount), totalShards: config.namespace.shardCount))
        // Lease work first, one action after another; then the shard loads (claims,
        // republishes, rescues), `loadConcurrency` at a time. Loads not started once a tick has
        // run for a sixth of the lease TTL are put off to the next tick, so renewals are never
        // starved however much is due.
        let timeBox = config.leaseTTL / 6
        while !Task.isCancelled {
            let tickStarted = clock.now
            var loads: [PlannerStateMachine<ContinuousClock>.Action] = []
            for action in machine.tick(now: clock.now) {
                switch action {
                case .acquire, .renew, .heartbeat, .release: await perform(action, &machine, clock)
                case .claim, .republish, .rescue: loads.append(action)
                }
            }
            await runLoads(loads, &machine, clock, until: tickStarted.advanced(by: timeBox))
            stats.heldShards.store(machine.heldShards.count, ordering: .relaxed)
            try? await Task.sleep(until: machine.nextDeadline(after: clock.now), clock: clock)
        }
        return machine.releaseAll()
    }

    private func perform(
        _ action: PlannerStateMachine<ContinuousClock>.Action,
        _ machine: inout PlannerStateMachine<ContinuousClock>, _ clock: ContinuousClock
    ) async {
        switch action {
        case .acquire(let limit):
            do {
                let (acquired, takenOver) = try await leases.acquireCountingTakeovers(
                    owner: config.instanceID, ttl: config.leaseTTL, limit: limit)
                if !acquired.isEmpty {
                    stats.leaseAcquisitions.add(acquired.count, ordering: .relaxed)
                    stats.leaseTakeovers.add(takenOver, ordering: .relaxed)
                    logger.info("planner \(config.instanceID) acquired shards \(acquired.map(\.shard))")
                }
                machine.acquired(acquired, now: clock.now)
            } catch {
                logger.warning("lease acquisition failed: \(error)")
                machine.acquireFailed()
            }
        case .renew(let held):
            do {
                let granted = try await leases.renew(owner: config.instanceID, leases: held, ttl: config.leaseTTL)
                if granted.count < held.count {
                    logger.warning("lost shard leases \(Set(held.map(\.shard)).subtracting(granted.map(\.shard)).sorted())")
                }
                machine.renewed(requested: held, granted: granted, now: clock.now)
            } catch {
                logger.warning("lease renewal failed: \(error)")
                machine.renewFailed(now: clock.now)
            }
        case .heartbeat:
            do {
                let members = try await leases.heartbeat(owner: config.instanceID, ttl: config.leaseTTL)
                if members.count != stats.livePlanners.load(ordering: .relaxed) {
                    logger.info("planner \(config.instanceID): \(members.count) live planners")
                }
                stats.livePlanners.store(members.count, ordering: .relaxed)
                machine.membership(members, me: config.instanceID)
            } catch {
                logger.warning("planner heartbeat failed: \(error)")
                machine.heartbeatFailed()
            }
        case .release(let surplus):
            // Already dropped by the machine; if this fails the leases lapse within a TTL.
            do {
                try await leases.release(owner: config.instanceID, shards: surplus.map(\.shard))
                stats.shardsReleased.add(surplus.count, ordering: .relaxed)
                logger.info("planner \(config.instanceID) handed back shards \(surplus.map(\.shard)) (beyond its share)")
            } catch {
                logger.warning("handing back shards \(surplus.map(\.shard)) failed (they lapse in \(config.leaseTTL)): \(error)")
            }
        case .republish, .claim, .rescue:
            apply(await load(action), &machine, clock)
        }
    }

    /// What a shard load tells the state machine.
    enum LoadOutcome: Sendable {
        case claimed(shard: Int, count: Int)
        case claimFailed(shard: Int)
        case done
    }

    /// Runs shard loads `config.loadConcurrency` at a time (each on its own pooled session),
    /// handing each outcome to the machine as it comes; loads not started by `deadline` are
    /// deferred to the next tick.
    private func runLoads(
        _ loads: [PlannerStateMachine<ContinuousClock>.Action],
        _ machine: inout PlannerStateMachine<ContinuousClock>, _ clock: ContinuousClock, until deadline: ContinuousClock.Instant
    ) async {
        var waiting = await withoutIdleClaims(loads, &machine, clock)[...]
        await withTaskGroup(of: LoadOutcome.self) { group in
            var running = 0
            while true {
                while running < config.loadConcurrency, let action = waiting.popFirst() {
                    if clock.now >= deadline {
                        machine.deferred(action, now: clock.now)
                        stats.actionsDeferred.add(1, ordering: .relaxed)
                        continue
                    }
                    group.addTask { await self.load(action) }
                    running += 1
                }
                guard let outcome = await group.next() else { break }
                running -= 1
                apply(outcome, &machine, clock)
            }
        }
    }

    /// One statement asks which of the tick's claimed shards have a timer due within the
    /// horizon (`TimerStore.shardsWithDue`); the others count as claimed empty without a
    /// transaction each, so idle shards cost one index probe a tick. If the probe fails, every
    /// claim runs.
    private func withoutIdleClaims(
        _ loads: [PlannerStateMachine<ContinuousClock>.Action],
        _ machine: inout PlannerStateMachine<ContinuousClock>, _ clock: ContinuousClock
    ) async -> [PlannerStateMachine<ContinuousClock>.Action] {
        let claimed = loads.compactMap { action -> Int? in
            if case .claim(let lease) = action { return lease.shard }
            return nil
        }
        guard claimed.count > 1,
            let due = try? await timers.shardsWithDue(claimed, dueBefore: Date().addingTimeInterval(config.horizon.seconds))
        else { return loads }
        return loads.filter { action in
            guard case .claim(let lease) = action, !due.contains(lease.shard) else { return true }
            apply(.claimed(shard: lease.shard, count: 0), &machine, clock)
            return false
        }
    }

    private func apply(
        _ outcome: LoadOutcome, _ machine: inout PlannerStateMachine<ContinuousClock>, _ clock: ContinuousClock
    ) {
        switch outcome {
        case .claimed(let shard, let count):
            machine.claimed(shard: shard, count: count, batchSize: config.claimBatchSize, now: clock.now)
        case .claimFailed(let shard):
            machine.claimFailed(shard: shard, now: clock.now)
        case .done:
            break
        }
    }

    /// One shard load: its I/O only; the outcome goes to the machine through `apply`.
    private func load(_ action: PlannerStateMachine<ContinuousClock>.Action) async -> LoadOutcome {
        switch action {
        case .republish(let lease):
            await republish(lease)
        case .claim(let lease):
            do {
                let now = Date()
                let loaded = try await timers.loadDue(
                    lease: lease, owner: config.instanceID, dueBefore: now.addingTimeInterval(config.horizon.seconds),
                    limit: config.claimBatchSize, budget: config.claimBudget, now: now,
                    misfireThreshold: config.misfireThreshold)
                stats.claimed.add(loaded.rows.count, ordering: .relaxed)
                if loaded.truncated && loaded.timers < config.claimBatchSize { stats.claimsCutByBudget.add(1, ordering: .relaxed) }
                await publish(loaded.rows, counter: stats.published)
                // Cut short by a budget: claim again at once, as for a full batch.
                return .claimed(shard: lease.shard, count: loaded.truncated ? config.claimBatchSize : loaded.timers)
            } catch {
                logger.warning("claim on shard \(lease.shard) failed: \(error)")
                return .claimFailed(shard: lease.shard)
            }
        case .rescue(let lease):
            do {
                let overdue = Date().addingTimeInterval(-config.rescueGrace.seconds)
                let rows = try await timers.rescueOverdue(
                    lease: lease, owner: config.instanceID, overdueBefore: overdue, limit: 1000)
                if !rows.isEmpty {
                    logger.warning("rescuing \(rows.count) overdue armed timers on shard \(lease.shard)")
                    await publish(rows, counter: stats.rescued)
                }
                if inFlightCheckDue(shard: lease.shard) { try await redispatchLost(lease) }
            } catch {
                logger.warning("rescue on shard \(lease.shard) failed: \(error)")
            }
        case .acquire, .renew, .heartbeat, .release:
            break
        }
        return .done
    }

    /// The dispatched-but-lost pass of a shard runs every tenth of `redispatchAfter` (90 s by
    /// default), not every rescue interval: nothing it finds can be younger than that.
    private func inFlightCheckDue(shard: Int) -> Bool {
        let now = ContinuousClock.now
        return lastInFlightCheck.withLock { last in
            if let previous = last[shard], previous.duration(to: now) < config.redispatchAfter / 10 { return false }
            last[shard] = now
            return true
        }
    }

    /// Dispatched-but-lost: runs in flight for `redispatchAfter` whose job is not in the work
    /// stream are armed again and republished; those whose job is still there are seen now.
    /// A run whose lookup fails is left for the next pass (never dispatched again blind).
    private func redispatchLost(_ lease: ShardLease) async throws {
        let before = Date().addingTimeInterval(-config.redispatchAfter.seconds)
        let runs = try await timers.inFlightOverdue(lease: lease, owner: config.instanceID, before: before, limit: 200)
        guard !runs.isEmpty else { return }
        var seen: [FireKey] = []
        var lost: [TimerStore.InFlightRun] = []
        for run in runs {
            if run.workSequence > 0 {
                let stored: StoredMessage?
                do {
                    stored = try await connection.storedMessage(stream: config.namespace.workStream, sequence: run.workSequence)
                } catch {
                    continue
                }
                // The sequence holds this run's job (its dedupe id), not some later message.
                let id = "\(SundialHeader.natsMessageID): "
                    + SundialHeader.jobMessageIDPrefix(
                        timerID: TimerID.text(run.key.id), occurrence: run.key.occurrence, attempt: run.key.attempt)
                if let stored, stored.rawHeaders.contains(id) {
                    seen.append(run.key)
                    continue
                }
            }
            lost.append(run)
        }
        try await timers.noteInFlightSeen(seen)
        let rows = try await timers.redispatch(lost, lease: lease, owner: config.instanceID, before: before)
        if !rows.isEmpty {
            logger.warning("dispatching again \(rows.count) runs on shard \(lease.shard) whose jobs are gone from the work stream")
            await publish(rows, counter: stats.redispatched)
        }
    }

    /// Keeps `timer_runs`'s partitions created ahead and deletes what the retention no
    /// longer keeps (`RetentionStore`; one reaper at a time across planners), paced by
    /// `ReaperPacing`: a partition pass at start, after every complete walk, after a failure
    /// and at least every 10 minutes (closed partitions whose timers are all finished are
    /// emptied and dropped whole, in passes that follow each other), then the walk in batches
    /// up to where the last pass said (`PartitionWork.walkBefore`: never into an open partition).
    private func reapLoop() async {
        let store = RetentionStore(pool: timers.pool)
        var pacing = ReaperPacing()
        // Closed partitions found holding a live timer: not rescanned (nor swept for orphaned
        // runs) for an hour, while the walk deletes what it can in them.
        var held: Set<String> = []
        var heldSince = ContinuousClock.now
        var drain: RetentionStore.PartitionDrain?
        var partitionPassDue = true
        var lastPass = ContinuousClock.now
        // Where the current walk stops: fixed when it starts (from the last pass), so a
        // partition closing meanwhile goes whole.
        var walkBefore: Date?
        var walkBound: Date?
        while !Task.isCancelled {
            var wait = pacing.idle
            if ContinuousClock.now - lastPass > .seconds(600) { partitionPassDue = true }
            if ContinuousClock.now - heldSince > .seconds(3600) {
                held = []
                heldSince = ContinuousClock.now
            }
            do {
                if partitionPassDue {
                    lastPass = ContinuousClock.now
                    let pass = try await store.maintainPartitions(
                        now: Date(), retention: config.retention, lookaheadDays: config.partitionLookaheadDays,
                        periodDays: config.partitionDays, deleteBatch: config.reaperBatchSize, held: held, drain: drain)
                    if case .done(let work) = pass {
                        record(work)
                        held.formUnion(work.held)
                        drain = work.drain
                        walkBound = work.walkBefore ?? walkBound
                        partitionPassDue = work.more
                    }
                    wait = pacing.next(after: pass)
                } else if let retention = config.retention, let bound = walkBefore ?? walkBound {
                    walkBefore = bound
                    let outcome = try await store.reapBatch(
                        now: Date(), retention: retention, batchSize: config.reaperBatchSize, walkBefore: walkBefore)
                    switch outcome {
                    case .walked(_, let timersDeleted, let runsDeleted):
                        stats.reapedTimers.add(timersDeleted, ordering: .relaxed)
                        stats.reapedRuns.add(runsDeleted, ordering: .relaxed)
                    case .caughtUp, .busy:
                        walkBefore = nil
                        partitionPassDue = true
                    }
                    wait = pacing.next(after: outcome)
                } else {
                    partitionPassDue = true
                }
            } catch {
                wait = pacing.nextAfterFailure()
                partitionPassDue = true
                logger.warning("retention: a reaper batch failed, retrying in \(wait): \(error)")
            }
            try? await Task.sleep(for: wait)
        }
    }

    private func record(_ work: RetentionStore.PartitionWork) {
        stats.reapedTimers.add(work.timersDeleted, ordering: .relaxed)
        stats.reapedRuns.add(work.runsDeleted, ordering: .relaxed)
        stats.partitionsDropped.add(work.dropped.count, ordering: .relaxed)
        for name in work.created { logger.info("retention: created run partition \(name)") }
        for name in work.dropped { logger.info("retention: dropped run partition \(name)") }
        for (name, reason) in work.failed.sorted(by: { $0.key < $1.key }) {
            logger.warning("retention: run partition \(name) not changed this time: \(reason)")
        }
    }

    /// Mirrors the counters into metrics every 5 s.
    private func sampleMetrics() async {
        let mirror = MetricsMirror()
        var sample = 0
        while !Task.isCancelled {
            mirror.gauge(MetricName.shardsHeld, Double(stats.heldShards.load(ordering: .relaxed)))
            mirror.gauge(MetricName.shards, Double(config.namespace.shardCount))
            mirror.counter(MetricName.leaseAcquisitions, stats.leaseAcquisitions.load(ordering: .relaxed))
            mirror.counter(MetricName.published, stats.published.load(ordering: .relaxed))
            mirror.counter(MetricName.rescued, stats.rescued.load(ordering: .relaxed))
            mirror.counter(MetricName.redispatched, stats.redispatched.load(ordering: .relaxed))
            mirror.counter(MetricName.publishFailures, stats.publishFailures.load(ordering: .relaxed))
            mirror.counter(MetricName.reapedTimers, stats.reapedTimers.load(ordering: .relaxed))
            mirror.counter(MetricName.reapedRuns, stats.reapedRuns.load(ordering: .relaxed))
            mirror.counter(MetricName.partitionsDropped, stats.partitionsDropped.load(ordering: .relaxed))
            mirror.counter(MetricName.leaseTakeovers, stats.leaseTakeovers.load(ordering: .relaxed))
            mirror.counter(MetricName.shardsReleased, stats.shardsReleased.load(ordering: .relaxed))
            mirror.gauge(MetricName.livePlanners, Double(stats.livePlanners.load(ordering: .relaxed)))
            // Every 30 s (a count over the armed-runs index): the same figure on every planner.
            if sample % 6 == 0, let armed = try? await leases.armedRuns() {
                mirror.gauge(MetricName.armedRuns, Double(armed))
            }
            sample += 1
            try? await Task.sleep(for: .seconds(5))
        }
    }

    /// After a takeover: re-publish the shard's armed timers that cannot have fired yet.
    private func republish(_ lease: ShardLease) async {
        // One second of margin: a schedule due that soon may be firing right now, and
        // republishing it could fire it twice; the rescue pass covers those instead.
        var after = Date().addingTimeInterval(1)
        var afterID = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
        do {
            while !Task.isCancelled {
                let page = try await timers.armedFuture(shard: lease.shard, after: after, afterID: afterID, limit: 5000)
                await publish(page, counter: stats.republished)
                guard let last = page.last, page.count == 5000 else { break }
                after = last.dueAt
                afterID = last.timerID
            }
        } catch {
            logger.warning("republish of shard \(lease.shard) failed; rescue will cover it: \(error)")
        }
    }

    private func publish(_ rows: [ScheduledFire], counter: borrowing Atomic<Int>) async {
        guard !rows.isEmpty else { return }
        var messages: [NATSOutgoingMessage] = []
        messages.reserveCapacity(rows.count)
        for row in rows {
            if let message = try? row.scheduleMessage(config.namespace) { messages.append(message) }
        }
        let results = await connection.jetStream.publish(batch: messages)
        var failures = 0
        for result in results {
            if case .failure(let error) = result {
                failures += 1
                if failures == 1 { logger.error("schedule publish failed (rescue will retry): \(error)") }
            }
        }
        counter.add(results.count - failures, ordering: .relaxed)
        stats.publishFailures.add(failures, ordering: .relaxed)
    }
}
