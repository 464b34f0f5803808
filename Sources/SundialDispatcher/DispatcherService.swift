import CoreMetrics
import Foundation
import Logging
import ServiceLifecycle
import SundialContract
import SundialCore
import SundialFairness
import SundialMessaging
import SundialNATS
import SundialObservability
import SundialProto
import SundialSchedule
import SundialStore
import Synchronization

/// Dispatcher settings; defaults are production values (see services/dispatcher/README.md).
public struct DispatcherConfig: Sendable {
    public var namespace: SundialNamespace = .standard
    /// Stream bounds, applied when this service creates or updates the streams at startup.
    public var streamLimits = StreamLimits()
    /// Concurrent fetch→forward→ack pipelines per instance (each with its own pull inbox), so
    /// database and JetStream round-trips overlap, and a fire waits less for a free pipeline.
    public var pipelines: Int = 3
    /// Fired messages per fetch. Smaller batches make shorter cycles: a fire waits less for a
    /// pipeline, and a throttled tenant's tokens go out in smaller bursts (each lands on the
    /// work stream at once, in front of small tenants' jobs). Under the whale benchmark 3 × 250
    /// measured better than 2 × 500 (docs/fairness.md).
    public var fetchBatch: Int = 250
    /// Long-poll wait of one fetch when nothing is pending.
    public var fetchMaxWait: Duration = .seconds(1)
    /// Redelivery delay for a fire whose forward failed (JetStream or Postgres down).
    public var retryDelay: Duration = .seconds(2)
    /// Redelivery delay for a fire whose queue is at its backlog bound
    /// (`StreamLimits.workPerQueue`): it waits in Sundial, and other queues go on.
    public var queueFullDelay: Duration = .seconds(5)
    /// Quota enforcement (see `FairnessGate`); `fairness.enforce = false` is plain FIFO.
    public var fairness = FairnessGate<ContinuousClock>.Configuration()
    /// How often per-tenant demand is reported to the Fairness-Governor.
    public var demandReportInterval: Duration = .milliseconds(500)
    /// A deferral that brings a fire back later than this after its due time is recorded in
    /// Postgres (the run's `armed_at`), so the planner's rescue pass (grace 60 s) does not
    /// republish it meanwhile. Shorter deferrals cost no database write.
    public var recordDeferralsBeyond: Duration = .seconds(30)
    /// A fire or result that fails with anything but the database being away is retried
    /// this many deliveries, then kept on the poison subject and terminated.
    public var poisonAfterDeliveries: Int = 5
    /// Most attempts of one occurrence given back because they failed against a downstream
    /// whose circuit breaker was tripping or open (docs/failures.md); beyond it, failures
    /// count again, so a downstream that never recovers cannot keep a job retrying for ever.
    public var maximumRefunds: Int = 10
    /// Metrics (`MetricName`) are sampled from the counters this often.
    public var metricsInterval: Duration = .seconds(5)
    /// Re-read the quota plan this often even without a KV update (a missed update heals).
    public var planRefresh: Duration = .seconds(5)
    /// Names this dispatcher in demand reports (the governor counts live dispatchers by it).
    public var instanceID: String = "dispatcher-\(ProcessInfo.processInfo.hostName)-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"

    public init() {}

    public func validate() throws(SundialError) {
        try streamLimits.validate()
        guard (1...16).contains(pipelines) else { throw .invalid("dispatcher.pipelines", "must be in 1…16") }
        guard (1...5000).contains(fetchBatch) else { throw .invalid("dispatcher.fetch_batch", "must be in 1…5000") }
        guard fetchMaxWait >= .milliseconds(10) else {
            throw .invalid("dispatcher.fetch_max_wait", "must be at least 10ms")
        }
        guard demandReportInterval >= .milliseconds(50) else {
            throw .invalid("dispatcher.demand_report_interval", "must be at least 50ms")
        }
        guard queueFullDelay >= .milliseconds(100), queueFullDelay <= .seconds(300) else {
            throw .invalid("dispatcher.queue_full_delay", "must be within 100ms…300s")
        }
        guard (0...100).contains(maximumRefunds) else {
            throw .invalid("dispatcher.maximum_refunds", "must be in 0…100")
        }
        guard (1...1000).contains(poisonAfterDeliveries) else {
            throw .invalid("dispatcher.poison_after_deliveries", "must be in 1…1000")
        }
        guard fairness.maximumDeferred >= 0, fairness.minimumDeferral <= fairness.maximumDeferral else {
            throw .invalid("dispatcher.fairness", "needs maximum_deferred ≥ 0 and minimum ≤ maximum deferral")
        }
        let budget = (fairness.retryBudgetRatio, fairness.retryBudgetFloor, fairness.retryBudgetBurst)
        // A positive floor: retries of a queue without new first attempts must still go.
        guard budget.0.isFinite, budget.0 >= 0, budget.1.isFinite, budget.1 > 0, budget.2.isFinite, budget.2 >= 1 else {
            throw .invalid("dispatcher.retry_budget", "needs ratio ≥ 0, floor > 0 jobs/s and burst ≥ 1")
        }
    }
}

/// Counters shown in `$SRV.STATS` and used by tests.
public final class DispatcherStats: Sendable {
    public let fired = Atomic<Int>(0)
    public let dispatched = Atomic<Int>(0)
    /// Fires not claimable: cancelled, superseded by an update, or already forwarded
    /// (a duplicate from a republish race or a redelivery).
    public let staleDropped = Atomic<Int>(0)
    public let undecodable = Atomic<Int>(0)
    public let retried = Atomic<Int>(0)
    public let succeeded = Atomic<Int>(0)
    public let attemptsFailed = Atomic<Int>(0)
    /// Failed attempts given back (a downstream's breaker tripping or open); also in
    /// `attemptsFailed`.
    public let attemptsRefunded = Atomic<Int>(0)
    public let deadLettered = Atomic<Int>(0)
    /// Results that matched no run awaiting one (a repeat, or a stale or forged report naming
    /// another version): acked, nothing changed.
    public let resultsIgnored = Atomic<Int>(0)
    /// Sum and count of fire lag (JetStream fire time − due time), for the average.
    public let fireLagMicros = Atomic<Int>(0)
    /// Fires held back by quota (nak'd with a delay), counting each deferral.
    public let deferred = Atomic<Int>(0)

    /// Dispatch lag (forwarded − due) of recent jobs, per tier.
    let lag = Mutex([Tier: LagWindow]())

    /// Rarer events, counted by name.
    public enum Event: String, Sendable, CaseIterable {
        /// A result kept on the poison subject after repeated failures to apply it.
        case resultPoisoned = "results_poisoned"
        /// A result's `finished_at` was missing or beyond the accepted clock skew.
        case resultFinishedAtReplaced = "results_finished_at_replaced"
        /// Fires dropped because the claim matched a newer version of the same run.
        case supersededDropped = "superseded_dropped"
        /// Fires held back because their queue's backlog was at its bound (per return).
        case queueFullDeferred = "queue_full_deferred"
    }
    let events = Mutex([String: Int]())
    /// Refused results by reason (`JobResultRejection.kind`).
    let rejections = Mutex([String: Int]())

    public init() {}

    func count(_ event: Event, _ n: Int = 1) {
        events.withLock { $0[event.rawValue, default: 0] += n }
    }

    func countRejection(_ kind: String) {
        rejections.withLock { $0[kind, default: 0] += 1 }
    }

    public func count(of event: Event) -> Int { events.withLock { $0[event.rawValue] ?? 0 } }
    public var resultsRejected: [String: Int] { rejections.withLock { $0 } }

    /// A batch's dispatch lags, under one lock.
    func recordLags(_ samples: [(seconds: Double, tier: Tier)]) {
        lag.withLock { windows in
            for sample in samples { windows[sample.tier, default: LagWindow()].record(sample.seconds) }
        }
    }

    /// Recent dispatch-lag percentiles per tier, in milliseconds.
    public func lagPercentiles() -> [Tier: LagWindow.Summary] {
        lag.withLock { windows in windows.mapValues { $0.summary() } }
    }

    /// The counters as `$SRV.STATS` reports them (`data`).
    public var snapshot: DispatcherStatsReport {
        let events = events.withLock { $0 }
        let dispatched = dispatched.load(ordering: .relaxed)
        return DispatcherStatsReport(
            fired: fired.load(ordering: .relaxed), dispatched: dispatched,
            staleDropped: staleDropped.load(ordering: .relaxed), undecodable: undecodable.load(ordering: .relaxed),
            retried: retried.load(ordering: .relaxed), succeeded: succeeded.load(ordering: .relaxed),
            attemptsFailed: attemptsFailed.load(ordering: .relaxed), attemptsRefunded: attemptsRefunded.load(ordering: .relaxed),
            resultsIgnored: resultsIgnored.load(ordering: .relaxed), deadLettered: deadLettered.load(ordering: .relaxed),
            deferred: deferred.load(ordering: .relaxed),
            averageFireLagMs: dispatched == 0 ? 0 : Double(fireLagMicros.load(ordering: .relaxed)) / Double(dispatched) / 1000,
            resultsRejected: resultsRejected,
            resultsPoisoned: events[Event.resultPoisoned.rawValue] ?? 0,
            resultsFinishedAtReplaced: events[Event.resultFinishedAtReplaced.rawValue] ?? 0,
            supersededDropped: events[Event.supersededDropped.rawValue] ?? 0,
            queueFullDeferred: events[Event.queueFullDeferred.rawValue] ?? 0)
    }
}

/// The Dispatcher: consumes fired timers from the shared durable consumer, drops stale and
/// duplicate fires, forwards jobs to `SUNDIAL_WORK` (`sundial.work.<queue>`, deduped by
/// `Nats-Msg-Id`), records the dispatch in `timer_runs`, and only then acks the fire.
public final class DispatcherService: Service, Sendable {
    public let config: DispatcherConfig
    public let stats = DispatcherStats()
    /// Quota enforcement state; shared by the pipelines, held only for in-memory decisions.
    let gate: Mutex<FairnessGate<ContinuousClock>>
    /// (queue, tenant) → the minute its last `queue_full` event was published.
    private let queueFullAnnounced = Mutex<[QueueTenant: Int64]>([:])
    /// Failures (not outages) applying a result, by results-stream sequence: poison after a few.
    let resultFailures = Mutex([UInt64: Int]())
    /// Fire lag histograms per (tier, queue), made once each (queue names bounded).
    private let lagHistograms = Mutex([String: CoreMetrics.Timer]())
    private let metricLabels = LabelBudget()
    let connection: NATSConnection
    let timers: TimerStore
    let logger: Logger

    public init(config: DispatcherConfig, connection: NATSConnection, timers: TimerStore, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.connection = connection
        self.timers = timers
        self.logger = logger
        self.gate = Mutex(FairnessGate(configuration: config.fairness))
    }

    /// The quota plan in force (generation 0: none received yet).
    public var currentPlan: FairnessPlan { gate.withLock { $0.plan } }

    /// Fires deferred by this dispatcher and not yet back.
    public var deferredNow: Int { gate.withLock { $0.deferredNow } }
    /// Fires deferred because a circuit breaker (or a pause) held them, since start.
    public var breakerHeldTotal: Int { gate.withLock { $0.heldTotal } }

    public func run() async throws {
        let namespace = config.namespace
        try await SundialTopology.ensure(connection, namespace: namespace, limits: config.streamLimits)
        // Pipelines on every fire stream, `pipelines` in all (at least one per stream).
        var bound: [JetStreamPullConsumer] = []
        let streams = namespace.fireStreams
        let perStream = max(1, (config.pipelines + streams.count - 1) / streams.count)
        for stream in streams {
            for _ in 0..<perStream {
                bound.append(
                    try await JetStreamPullConsumer.bind(
                        connection: connection, stream: stream, durable: namespace.dispatcherDurable,
                        filterSubject: namespace.firedWildcard))
            }
        }
        let consumers = bound
        let resultsConsumer = try await JetStreamPullConsumer.bind(
            connection: connection, stream: namespace.resultsStream, durable: namespace.resultsDurable,
            filterSubject: namespace.resultsWildcard)
        let stats = self.stats
        let bucket = try await KeyValueBucket.ensure(
            namespace.quotasBucket, connection: connection, replicas: config.streamLimits.replicas)
        let planUpdates = try await connection.subscribe(subject: bucket.subject(of: SundialNamespace.quotaPlanKey))
        let micro = MicroService(
            identity: .init(
                name: SundialNamespace.dispatcherServiceName, version: "0.1.0",
                description: "Sundial dispatcher: fired timers to the work stream"),
            connection: connection, endpoints: [], logger: logger, extraStats: { [self] in
                var report = stats.snapshot
                report.fairness = self.fairnessStats()
                return report
            })
        // The plan in force before the first fire: a restarted dispatcher must keep holding
        // what an open circuit breaker holds and throttling whom the plan throttles. (An
        // unreachable bucket fails this read; the refresh loop below keeps trying.)
        if let stored = try? await bucket.get(SundialNamespace.quotaPlanKey) { applyPlan(stored.value) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await micro.run() }
            group.addTask { for await update in planUpdates { self.applyPlan(update.payload) } }
            group.addTask { await self.refreshPlan(bucket) }
            group.addTask { await self.reportDemand() }
            group.addTask { await self.sampleMetrics() }
            group.addTask {
                // Graceful shutdown stops fetching; a batch in progress finishes and is acked.
                await cancelWhenGracefulShutdown {
                    await withTaskGroup(of: Void.self) { pipelines in
                        for consumer in consumers {
                            pipelines.addTask { await self.pipeline(consumer) }
                        }
                        pipelines.addTask { await self.resultsPipeline(resultsConsumer) }
                    }
                }
            }
            try await group.next()
            planUpdates.unsubscribe()
            group.cancelAll()
        }
    }

    // MARK: metrics

    private func lagHistogram(tier: Tier, queue: String) -> CoreMetrics.Timer {
        let label = metricLabels.queue(queue)  // bounded: at most 200 names, then `other`
        let key = tier.rawValue + "/" + label
        return lagHistograms.withLock { cache in
            if let timer = cache[key] { return timer }
            let timer = CoreMetrics.Timer(
                label: MetricName.fireLag, dimensions: [("tier", tier.rawValue), ("queue", label)])
            if cache.count < 1000 { cache[key] = timer }
            return timer
        }
    }

    /// Mirrors the counters into metrics every `metricsInterval`; also reads the fire
    /// consumer's pending count (one JetStream API request).
    private func sampleMetrics() async {
        let mirror = MetricsMirror(labels: metricLabels)
        while !Task.isCancelled {
            let s = stats
            mirror.counter(MetricName.fires, s.fired.load(ordering: .relaxed))
            mirror.counter(MetricName.dispatched, s.dispatched.load(ordering: .relaxed))
            mirror.counter(MetricName.deferred, s.deferred.load(ordering: .relaxed))
            mirror.counter(MetricName.staleDropped, s.staleDropped.load(ordering: .relaxed))
            mirror.counter(MetricName.results, s.succeeded.load(ordering: .relaxed), [("outcome", "succeeded")])
            mirror.counter(MetricName.results, s.attemptsFailed.load(ordering: .relaxed), [("outcome", "retried")])
            mirror.counter(MetricName.results, s.deadLettered.load(ordering: .relaxed), [("outcome", "dead_letter")])
            mirror.counter(MetricName.results, s.resultsIgnored.load(ordering: .relaxed), [("outcome", "ignored")])
            mirror.counter(MetricName.resultsRejected, s.resultsRejected.values.reduce(0, +))
            mirror.counter(MetricName.attemptsRefunded, s.attemptsRefunded.load(ordering: .relaxed))
            let (held, overBudget, deferredNow) = gate.withLock { ($0.heldTotal, $0.retriesOverBudget, $0.deferredNow) }
            mirror.counter(MetricName.breakerHeld, held)
            mirror.counter(MetricName.retriesOverBudget, overBudget)
            mirror.gauge(MetricName.deferredNow, Double(deferredNow))
            var pending = 0.0
            var read = false
            for stream in config.namespace.fireStreams {
                if let info = try? await connection.consumerInfo(stream: stream, durable: config.namespace.dispatcherDurable),
                    let count = (info["num_pending"] as? NSNumber)?.doubleValue
                {
                    pending += count
                    read = true
                }
            }
            if read { mirror.gauge(MetricName.fireConsumerPending, pending) }
            try? await Task.sleep(for: config.metricsInterval)
        }
    }

    // MARK: fairness

    private func applyPlan(_ bytes: [UInt8]) {
        guard let plan = try? FairnessPlan(jsonBytes: bytes) else {
            logger.warning("ignoring an undecodable quota plan (\(bytes.count) bytes)")
            return
        }
        // Its age by the wall clock (fleet clocks are synchronised: due times are wall-clock).
        let ageMillis = min(max(0, Int64(Date().timeIntervalSince1970 * 1000) - plan.issuedAtMillis), 86_400_000)
        gate.withLock { $0.apply(plan, age: .milliseconds(ageMillis), now: .now) }
    }

    /// Reads the plan at start and every `planRefresh` (the subscription carries updates; this
    /// heals missed ones). Keeps the last plan when the bucket is unreachable or empty.
    private func refreshPlan(_ bucket: KeyValueBucket) async {
        while !Task.isCancelled {
            if let stored = try? await bucket.get(SundialNamespace.quotaPlanKey) { applyPlan(stored.value) }
            try? await Task.sleep(for: config.planRefresh)
        }
    }

    private func reportDemand() async {
        var last = ContinuousClock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: config.demandReportInterval)
            let now = ContinuousClock.now
            let (lines, generation) = gate.withLock { ($0.takeReport(now: now), $0.plan.generation) }
            var report = Sundial_V1_DemandReport()
            report.dispatcherID = config.instanceID
            report.sentAt = .init(date: Date())
            report.intervalMs = UInt32(clamping: last.duration(to: now).wholeMilliseconds)
            report.planGeneration = generation
            report.tenants = lines.map {
                var line = Sundial_V1_TenantDemand()
                line.tenant = $0.tenant
                line.queue = $0.queue
                line.succeeded = UInt64($0.succeeded)
                line.failedDownstream = UInt64($0.failedDownstream)
                line.held = UInt64($0.held)
                line.due = UInt64($0.due)
                line.deferred = UInt64($0.deferred)
                line.dispatched = UInt64($0.dispatched)
                return line
            }
            last = now
            guard let bytes = try? report.serializedBytes() as [UInt8] else { continue }
            try? await connection.publish(NATSOutgoingMessage(subject: config.namespace.fairnessDemand, payload: bytes))
        }
    }

    public func fairnessStats() -> DispatcherStatsReport.Fairness {
        let (plan, appliedAt, counters, deferred, overflow, active, queueCounters) = gate.withLock {
            ($0.plan, $0.planAppliedAt, $0.tierCounters(), $0.deferredNow, $0.overflowDispatched, $0.activeTenants,
             $0.queueCounters())
        }
        let (heldTotal, overBudget) = gate.withLock { ($0.heldTotal, $0.retriesOverBudget) }
        var queues: [String: DispatcherStatsReport.Fairness.Queue] = [:]
        for (queue, c) in queueCounters {
            let queuePlan = plan.plan(for: queue)
            queues[queue] = .init(
                tenants: c.tenants, deferredNow: c.deferredNow,
                throttled: queuePlan.map { $0.capacityEstimate != nil } ?? false,
                planCapacity: queuePlan.map { $0.capacityEstimate == nil ? 0 : $0.capacity } ?? 0)
        }
        let lags = stats.lagPercentiles()
        var tiers: [String: DispatcherStatsReport.Fairness.TierCounts] = [:]
        for tier in Tier.allCases {
            let c = counters[tier] ?? .init()
            tiers[tier.rawValue] = .init(
                tenants: c.tenants, deferredNow: c.deferredNow, dispatchedTotal: c.dispatchedTotal,
                deferredTotal: c.deferredTotal,
                lagMs: lags[tier].map { .init(p50: $0.p50 * 1000, p95: $0.p95 * 1000, p99: $0.p99 * 1000, max: $0.max * 1000, samples: $0.count) })
        }
        return DispatcherStatsReport.Fairness(
            enforce: config.fairness.enforce, planGeneration: plan.generation,
            planAgeSeconds: plan.issuedAtMillis == 0 ? -1 : (Date().timeIntervalSince1970 * 1000 - Double(plan.issuedAtMillis)) / 1000,
            planApplied: appliedAt != nil, planIssuedAtMs: plan.issuedAtMillis, dispatchers: plan.dispatchers ?? 1,
            activeTenants: active, deferredNow: deferred, overflowDispatched: overflow, tiers: tiers, queues: queues,
            breakerHeldTotal: heldTotal, retriesOverBudgetTotal: overBudget)
    }

    private func pipeline(_ consumer: JetStreamPullConsumer) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let batch = try await consumer.fetch(batch: config.fetchBatch, maxWait: config.fetchMaxWait)
                backoff = .milliseconds(100)
                if batch.isEmpty { continue }
                // Finish the batch even if shutdown begins meanwhile: ack or nak everything.
                await Task { await self.process(batch, consumer) }.value
            } catch {
                if Task.isCancelled { break }
                logger.warning("fetch failed, retrying in \(backoff): \(error)")
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    /// One batch: decode, the fairness gate, claim in Postgres, forward the live ones, record,
    /// ack. Every decision is `DispatchBatch`'s; this runs its I/O.
    func process(_ batch: [JetStreamMessage], _ consumer: JetStreamPullConsumer) async {
        stats.fired.add(batch.count, ordering: .relaxed)
        var state = DispatchBatch(
            size: batch.count,
            settings: DispatchBatch.Settings(
                retryDelay: config.retryDelay, queueFullDelay: config.queueFullDelay,
                recordDeferralsBeyond: config.recordDeferralsBeyond))
        var fires: [DispatchBatch.Fire] = []
        // By batch position; an undecodable message keeps an empty one (it is never forwarded).
        var envelopes = [Sundial_V1_FireEnvelope](repeating: Sundial_V1_FireEnvelope(), count: batch.count)
        for (index, message) in batch.enumerated() {
            guard let envelope = try? Sundial_V1_FireEnvelope(serializedBytes: message.payload),
                let fire = Self.fire(envelope, index: index, message: message)
            else {
                // Poison: never redeliver, but keep it visible.
                state.undecodable(index)
                logger.error("undecodable or out-of-range fired message on \(message.subject); poisoned")
                await poison(message, reason: "undecodable or out-of-range FireEnvelope", consumer)
                continue
            }
            envelopes[index] = envelope
            fires.append(fire)
        }
        defer { record(state.counts) }
        guard !fires.isEmpty else { return }

        // Fairness: over-quota fires go back to JetStream with a delay (nak), smeared at their
        // tenant's rate; they are not claimed, so nothing about the run changes.
        let now0 = ContinuousClock.now
        let decisions = gate.withLock { gate in
            let decisions = gate.decide(
                fires.map {
                    FairnessGate.Candidate(
                        tenant: $0.tenant, queue: $0.queue, priority: $0.priority, redelivered: $0.redelivered,
                        dueSecond: envelopes[$0.index].scheduledAt.seconds, attempt: $0.key.attempt)
                }, now: now0)
            for index in fires.indices { fires[index].tier = gate.tier(of: fires[index].tenant, queue: fires[index].queue) }
            return decisions
        }
        let gated = state.gate(fires, decisions: decisions, now: Date())
        if !gated.naks.isEmpty {
            do { try await consumer.nak(gated.naks.map { (batch[$0.index], $0.delay) }) } catch {
                // Not nak'd: they come back after ack_wait instead (later, never lost).
                logger.warning("nak of \(gated.naks.count) deferred fires failed: \(error)")
            }
        }
        await dispatch(gated.claim, &state, batch, envelopes, consumer)
        // Recorded after the admitted fires are through: they should not wait for it.
        if !gated.recordDeferrals.isEmpty {
            do { try await timers.recordDeferrals(gated.recordDeferrals) } catch {
                // Worst case the rescue pass republishes some: the claim still drops duplicates.
                logger.warning("recording \(gated.recordDeferrals.count) deferrals failed: \(error)")
            }
        }
    }

    /// A fired message's envelope, range-checked; nil if any field is out of range.
    static func fire(_ envelope: Sundial_V1_FireEnvelope, index: Int, message: JetStreamMessage) -> DispatchBatch.Fire? {
        guard let id = TimerID.parse(envelope.timerID),
            let occurrence = Int64(exactly: envelope.occurrence),
            (1...JobResultParser.maximumAttempt).contains(envelope.attempt),
            let version = Int64(exactly: envelope.version)
        else { return nil }
        return DispatchBatch.Fire(
            index: index, key: FireKey(id: id, occurrence: occurrence, attempt: Int(envelope.attempt)),
            version: version, tenant: envelope.tenant, queue: envelope.queue, priority: JobPriority(envelope.priority),
            scheduledAt: envelope.scheduledAt.date,
            firedAt: message.metadata.map { Date(timeIntervalSince1970: Double($0.timestampNanos) / 1e9) } ?? Date(),
            redelivered: (message.metadata?.deliveries ?? 1) > 1)
    }

    /// Claim in Postgres, forward the live ones, record, ack.
    private func dispatch(
        _ fires: [DispatchBatch.Fire], _ state: inout DispatchBatch, _ batch: [JetStreamMessage],
        _ envelopes: [Sundial_V1_FireEnvelope], _ consumer: JetStreamPullConsumer
    ) async {
        guard !fires.isEmpty else { return }
        // Compare-and-set in Postgres: only runs still armed at this version (or claimed by
        // a dispatcher that died mid-batch) may go out.
        var versions: [FireKey: Int64]?
        do {
            versions = try await timers.claimForDispatch(
                fires.map { FiredRun(key: $0.key, version: $0.version, firedAt: $0.firedAt) })
        } catch {
            logger.warning("dispatch claim failed; redelivering \(fires.count) fires: \(error)")
        }
        let claim = state.claimed(fires, versions: versions)
        if !claim.naks.isEmpty { try? await consumer.nak(claim.naks.map { (batch[$0.index], $0.delay) }) }

        let now = Date()
        var results: [DispatchBatch.ForwardResult] = []
        // Where each job landed in the work stream, recorded with the dispatch: the Planner's
        // rescue looks there before dispatching a run again.
        var workSequences: [FireKey: UInt64] = [:]
        if !claim.forward.isEmpty {
            let published = await connection.jetStream.publish(
                batch: claim.forward.map { job(envelopes[$0.index], firedAt: $0.firedAt, dispatchedAt: now) })
            results = zip(claim.forward, published).map { fire, result in
                switch result {
                case .success(let ack):
                    workSequences[fire.key] = ack.sequence
                    return .forwarded
                case .failure(let error) where error.isStreamLimitReached: return .queueFull
                case .failure(let error):
                    logger.warning("forward of timer \(TimerID.text(fire.key.id)) failed: \(error)")
                    return .failed
                }
            }
        }
        let forwarded = state.forwarded(claim.forward, results: results, dispatchedAt: now)
        if !forwarded.queueFull.isEmpty {
            let queues = Set(forwarded.queueFull.map(\.queue)).sorted().prefix(5)
            logger.notice("\(forwarded.queueFull.count) fires wait: queue backlog at its bound (\(queues))")
            do {
                try await timers.releaseClaims(forwarded.queueFull.map(\.key), until: forwarded.releaseUntil)
            } catch {
                logger.warning("handing back \(forwarded.queueFull.count) claims failed (they stay claimed until they return): \(error)")
            }
            try? await consumer.nak(forwarded.queueFullNaks.map { (batch[$0.index], $0.delay) })
            await announceQueueFull(forwarded.queueFull)
        }
        var recorded = true
        if !forwarded.mark.isEmpty {
            do {
                try await timers.markDispatched(
                    forwarded.mark.map(\.key), workSequences: forwarded.mark.map { workSequences[$0.key] ?? 0 }, at: now)
            } catch {
                // Forwarded but not recorded: redeliver. The run stays 'dispatching', so it is
                // claimed again; the work stream's dedupe window drops the second forward.
                logger.warning("recording \(forwarded.mark.count) dispatches failed; redelivering: \(error)")
                recorded = false
            }
        }
        let final = state.marked(recorded)
        // Lag of the batch's dispatched fires: one lock for the windows, one histogram lookup
        // per (tier, queue) — not per fire.
        var fireLagMicros = 0
        var histograms: [String: CoreMetrics.Timer] = [:]
        var dispatchLags: [(seconds: Double, tier: Tier)] = []
        dispatchLags.reserveCapacity(final.dispatched.count)
        for fire in final.dispatched {
            // Clamped to a day: a fire's due time is the envelope's, which need not be sane, and
            // the sum must not overflow.
            fireLagMicros += Int(min(max(0, fire.firedAt.timeIntervalSince(fire.scheduledAt)), 86_400) * 1e6)
            let dispatchLag = now.timeIntervalSince(fire.scheduledAt)
            dispatchLags.append((dispatchLag, fire.tier))
            let key = fire.tier.rawValue + "/" + fire.queue
            let histogram = histograms[key] ?? lagHistogram(tier: fire.tier, queue: fire.queue)
            histograms[key] = histogram
            histogram.recordNanoseconds(Int64(max(0, min(dispatchLag, 1e9)) * 1e9))
        }
        if !dispatchLags.isEmpty {
            stats.fireLagMicros.add(fireLagMicros, ordering: .relaxed)
            stats.recordLags(dispatchLags)
        }
        if !final.acks.isEmpty {
            do {
                try await consumer.ack(final.acks.map { batch[$0] })
            } catch {
                // The fires come back after ack_wait and are then dropped (no longer claimable).
                logger.warning("ack of \(final.acks.count) fires failed: \(error)")
            }
        }
        if !final.naks.isEmpty { try? await consumer.nak(final.naks.map { (batch[$0.index], $0.delay) }) }
    }

    /// A batch's counts into the dispatcher's stats.
    private func record(_ counts: DispatchBatch.Counts) {
        stats.undecodable.add(counts.undecodable, ordering: .relaxed)
        stats.deferred.add(counts.deferred, ordering: .relaxed)
        stats.staleDropped.add(counts.staleDropped, ordering: .relaxed)
        if counts.supersededDropped > 0 { stats.count(.supersededDropped, counts.supersededDropped) }
        if counts.queueFull > 0 { stats.count(.queueFullDeferred, counts.queueFull) }
        stats.retried.add(counts.retried, ordering: .relaxed)
        stats.dispatched.add(counts.dispatched, ordering: .relaxed)
    }

    /// Tells each tenant whose fires wait for room in a full queue, at most once a minute per
    /// (tenant, queue) — deduped across dispatchers by the minute in the message ID.
    private func announceQueueFull(_ fires: [DispatchBatch.Fire]) async {
        let now = Date()
        let minute = Int64(now.timeIntervalSince1970 / 60)
        let due = queueFullAnnounced.withLock { announced -> [QueueTenant] in
            if announced.count > 10_000 { announced = announced.filter { $0.value == minute } }
            var out: [QueueTenant] = []
            for fire in fires {
                let key = QueueTenant(queue: fire.queue, tenant: fire.tenant)
                if announced[key] != minute {
                    announced[key] = minute
                    out.append(key)
                }
            }
            return out
        }
        guard !due.isEmpty else { return }
        let limit = config.streamLimits.workPerQueue
        let messages = due.compactMap { key -> NATSOutgoingMessage? in
            var event = Sundial_V1_TimerEvent()
            event.kind = TimerEventKind.queueFull
            event.queue = key.queue
            event.detail = "queue \(key.queue) holds its maximum of \(limit) jobs; due fires wait in Sundial and are retried every \(config.queueFullDelay) until executors make room"
            event.at = Google_Protobuf_Timestamp(date: now)
            var headers = NATSHeaders()
            headers[SundialHeader.natsMessageID] = "queue_full:\(key.queue):\(minute)"
            guard let body = try? event.serializedBytes() as [UInt8] else { return nil }
            return NATSOutgoingMessage(
                subject: config.namespace.event(tenant: key.tenant, kind: TimerEventKind.queueFull), headers: headers,
                payload: body)
        }
        for case .failure(let error) in await connection.jetStream.publish(batch: messages) {
            logger.warning("publishing a queue_full event failed: \(error)")
        }
    }

    /// The job as executors see it (the work headers in SundialHeader), deduped per (timer,
    /// occurrence, attempt, version): a run moved to a new version by an update is a new job
    /// (its payload may differ), while every copy of one fire is the same job.
    private func job(_ envelope: Sundial_V1_FireEnvelope, firedAt: Date, dispatchedAt: Date) -> NATSOutgoingMessage {
        var headers = NATSHeaders()
        headers[SundialHeader.natsMessageID] = SundialHeader.jobMessageID(
            timerID: envelope.timerID, occurrence: envelope.occurrence, attempt: envelope.attempt,
            version: envelope.version)
        headers[SundialHeader.timerID] = envelope.timerID
        headers[SundialHeader.tenant] = envelope.tenant
        headers[SundialHeader.scheduledAt] = RFC3339.format(envelope.scheduledAt.date)
        headers[SundialHeader.attempt] = String(envelope.attempt)
        headers[SundialHeader.occurrence] = String(envelope.occurrence)
        headers[SundialHeader.version] = String(envelope.version)
        headers[SundialHeader.priority] = envelope.priority.headerValue
        headers[SundialHeader.firedAt] = RFC3339.format(firedAt)
        headers[SundialHeader.dispatchedAt] = RFC3339.format(dispatchedAt)
        return NATSOutgoingMessage(
            subject: config.namespace.work(queue: envelope.queue), headers: headers,
            payload: [UInt8](envelope.payload))
    }
}

extension JobPriority {
    /// The wire priority (unknown values count as normal).
    init(_ priority: Sundial_V1_Priority) {
        switch priority {
        case .high: self = .high
        case .low: self = .low
        default: self = .normal
        }
    }
}
