/// The Dispatcher's enforcement of a `FairnessPlan`, as a pure state machine over a clock.
///
/// Everything is kept per (queue, tenant): a tenant's bucket on one queue is its share of that
/// queue's executors, so a tenant held back on a saturated queue still runs at full speed on
/// another, and a queue without a plan (capacity unknown, executors gone) throttles nobody.
///
/// For each fetched batch the Dispatcher asks `decide` which fires go out now and which are
/// deferred, and for how long. Fires go through a `DeficitRoundRobin` keyed by tenant (weight:
/// the tenant's tier weight; priority within a tenant; fires coming back from a deferral ahead of
/// fresh ones) whose admission check is the tenant's `TokenBucket`. What the buckets refuse is
/// **deferred**: the Dispatcher naks it with the returned delay, so the fire stays in JetStream
/// (pending on the consumer) and comes back later — memory here is one small record per active
/// tenant, never a queue of fires.
///
/// The delay smears an over-quota tenant's fires at its rate, in the order they came due: each
/// tenant's deferred fires form a line ordered by due time (a count per due second), and a
/// deferred fire waits for the next token plus one token interval per fire ahead of it in that
/// line. Nothing is reserved: a returning fire takes a token like any other (first in its
/// tenant's turn), so a quota that shrinks applies at once, and a fire that finds the bucket dry
/// is placed in the line again — at its due-time position, so it is not overtaken by younger
/// fires. A quota that grows must reach fires already deferred, so a wait longer than
/// `maximumDeferral` (60 s) is cut to the larger of that and half the wait: the fire returns and
/// is placed again, nearer the front. Halving (rather than returning every 60 s) keeps the
/// re-deferrals of a long line logarithmic in its length — each one costs the nak, a redelivery
/// and the JetStream consumer's bookkeeping. The full wait is reported too (`lineWait`), so the
/// caller can record once how long the fire will be away.
///
/// Buckets hold at least what accrues between two decisions (`burstCover` × the smoothed gap
/// between `decide` calls): while a batch is being processed no fire can take a token, and a
/// bucket smaller than one cycle's tokens would throw away part of a throttled tenant's quota.
///
/// A queue plan whose capacity is only a first-sight guess (`QuotaPlan.provisional`: one sample
/// of a flood on a queue never measured saturated) holds a tenant back only while two tenants
/// contend for the queue: the plan lists two with fires due on it, or fires of two tenants have
/// met on it here within `contentionWindow`. The guess errs low, so a fire deferred under it
/// comes back within `provisionalMaximumDeferral` to be decided again under the plan then in
/// force; holding back is worth it to stop a whale's cold flood in front of small tenants, not to throttle a
/// lone tenant's burst, which nobody waits behind (it is held to the measured capacity from the
/// next plan on, like any tenant alone on a saturated queue).
///
/// Guards: at most `maximumDeferred` fires deferred at once by this dispatcher (beyond that,
/// fires are dispatched — degraded to FIFO, never stalled — since deferred fires count toward the
/// consumer's `max_ack_pending`, and a full window would stop delivery for every tenant); no
/// plan yet = unthrottled; `enforce = false` = plain FIFO (demand is still counted).
public struct FairnessGate<C: Clock>: Sendable where C.Duration == Duration {
    public struct Configuration: Sendable, Hashable {
        /// `false`: plain FIFO — every fire is dispatched at once (demand is still reported).
        public var enforce: Bool
        /// Tier assumed for a tenant the plan does not list: most likely one that just started,
        /// and the `new` default is the most generous, so a first timer is never held back.
        public var unknownTenantTier: Tier
        /// A deferred fire comes back no sooner than this.
        public var minimumDeferral: Duration
        /// A longer wait is cut to the larger of this and half the wait (the fire is then placed
        /// in its tenant's line again): bounds how long a raised quota takes to reach fires
        /// already deferred, at the cost of a few re-deferrals for fires far back in a long line.
        public var maximumDeferral: Duration
        /// Most fires this dispatcher keeps deferred at once. The limit in force is also at
        /// most `windowShare` of the consumer's window divided by the plan's dispatchers
        /// (`deferralLimit`), so any number of dispatchers together never fill it.
        public var maximumDeferred: Int
        /// The fire consumer's `max_ack_pending`, and the part of it all dispatchers' deferred
        /// fires may take together (the rest is for fires in flight).
        public var consumerWindow: Int = 1_000_000
        public var windowShare: Double = 0.8
        /// Most (queue, tenant) pairs tracked; results for a new pair beyond it are not counted.
        public var maximumTracked = 200_000
        /// Retry budget per queue: retries earned per first attempt, retries per second
        /// allowed anyway (shared by the dispatchers), and the most saved up.
        public var retryBudgetRatio = 0.2
        public var retryBudgetFloor = 10.0
        public var retryBudgetBurst = 100.0
        /// Under a plan whose capacity is a first-sight guess (`QuotaPlan.provisional`), a
        /// tenant is held back only if fires of two tenants met on its queue here within this
        /// long (see the type's notes).
        public var contentionWindow: Duration = .seconds(3)
        /// A tenant the plan lists on a queue counts toward contention there only with at least
        /// this smoothed demand (jobs/s): one fire adds ≈ 0.3 and it decays over the Governor's
        /// 3 s demand window, so 0.05 ≈ a fire within the last 5 s. The plan keeps a tenant for
        /// 10 minutes after its last fire, so any demand at all would mean "seen lately".
        public var contentionDemand = 0.05
        /// Under a provisional plan a deferral is at most this long: the guess errs low, and a
        /// fire deferred by it comes back to be decided again under the measured plan that
        /// normally follows within a Governor period or two, instead of keeping a delay
        /// computed at the guessed rate.
        public var provisionalMaximumDeferral: Duration = .seconds(2)
        /// A tenant idle this long (bucket full, nothing deferred) is forgotten.
        public var idleExpiry: Duration
        /// Buckets hold at least this many gaps between two `decide` calls worth of tokens (the
        /// gap smoothed; at most `maximumBurstCover`), so a slow batch does not waste quota.
        public var burstCover: Double
        public var maximumBurstCover: Duration

        public init(
            enforce: Bool = true, unknownTenantTier: Tier = .new, minimumDeferral: Duration = .milliseconds(100),
            maximumDeferral: Duration = .seconds(60), maximumDeferred: Int = 400_000,
            idleExpiry: Duration = .seconds(300), burstCover: Double = 2, maximumBurstCover: Duration = .seconds(1)
        ) {
            self.enforce = enforce
            self.unknownTenantTier = unknownTenantTier
            self.minimumDeferral = minimumDeferral
            self.maximumDeferral = maximumDeferral
            self.maximumDeferred = maximumDeferred
            self.idleExpiry = idleExpiry
            self.burstCover = burstCover
            self.maximumBurstCover = maximumBurstCover
        }
    }

    /// One fetched fire, as far as fairness is concerned.
    public struct Candidate: Sendable, Hashable {
        public var tenant: String
        /// The work queue the job goes to.
        public var queue: String
        public var priority: JobPriority
        /// Delivered before (JetStream delivery count > 1): back from a deferral (or from a
        /// failed forward). Not counted as new demand; first in its tenant's line.
        public var redelivered: Bool
        /// When the fire was due (Unix seconds): its place in the tenant's line of deferred fires.
        public var dueSecond: Int64
        /// Its attempt (1 = first): retries need their queue's retry budget.
        public var attempt: Int

        public init(
            tenant: String, queue: String = "", priority: JobPriority = .normal, redelivered: Bool = false,
            dueSecond: Int64 = 0, attempt: Int = 1
        ) {
            self.attempt = attempt
            self.tenant = tenant
            self.queue = queue
            self.priority = priority
            self.redelivered = redelivered
            self.dueSecond = dueSecond
        }
    }

    public enum Decision: Sendable, Hashable {
        case dispatch
        /// Nak with this delay. `lineWait`: when the fire's turn is expected, uncapped (≥ the
        /// delay): how long it will stay away, through any re-deferrals, if the quota holds.
        case deferred(Duration, lineWait: Duration)
    }

    /// One tenant's counts since the previous `takeReport`.
    public struct TenantReport: Sendable, Hashable {
        public var tenant: String
        public var queue: String
        public var due: Int
        public var deferred: Int
        public var dispatched: Int
        /// Results applied since the last report: successes, and failures that count towards
        /// the downstream's circuit breaker.
        public var succeeded = 0
        public var failedDownstream = 0
        /// Fires deferred because a circuit breaker holds them.
        public var held = 0

        public init(
            tenant: String, queue: String = "", due: Int, deferred: Int, dispatched: Int, succeeded: Int = 0,
            failedDownstream: Int = 0, held: Int = 0
        ) {
            self.succeeded = succeeded
            self.failedDownstream = failedDownstream
            self.held = held
            self.tenant = tenant
            self.queue = queue
            self.due = due
            self.deferred = deferred
            self.dispatched = dispatched
        }
    }

    struct TenantState: Sendable {
        var bucket: TokenBucket<C>
        var tier: Tier
        /// Deferred by this dispatcher and not seen again yet…
        var deferred = 0
        /// …counted per due second (the line's order).
        var deferredByDue: [Int64: Int] = [:]
        /// When the last of those is due back (plus grace, the count is reset then: its
        /// redelivery may have gone to another dispatcher).
        var deferredBackBy: C.Instant
        var due = 0
        var dispatched = 0
        var succeeded = 0
        var failedDownstream = 0
        var held = 0
        var lastActive: C.Instant
    }

    public struct TierCounters: Sendable, Hashable {
        public var tenants = 0
        public var deferredNow = 0
        public var dispatchedTotal = 0
        public var deferredTotal = 0

        public init() {}
    }

    public private(set) var configuration: Configuration
    public private(set) var plan: FairnessPlan
    /// When the current plan was applied (nil: none yet, running unthrottled).
    public private(set) var planAppliedAt: C.Instant?
    private var tenants: [QueueTenant: TenantState] = [:]
    public private(set) var deferredNow = 0
    /// Fires dispatched because `maximumDeferred` was reached (would have been deferred).
    public private(set) var overflowDispatched = 0
    /// Fires deferred because a circuit breaker held them (lifetime).
    public private(set) var heldTotal = 0
    /// Retries deferred because their queue's retry budget was spent (lifetime).
    public private(set) var retriesOverBudget = 0
    /// Per queue: retry tokens, and the fraction of a token first attempts have earned.
    private var retryBudgets: [String: (bucket: TokenBucket<C>, earned: Double)] = [:]
    /// Queues whose plan carries a breaker that is not closed (its own or a tenant's), from the
    /// plan in force: every other fire skips the breaker check.
    private var breakerQueues: Set<String> = []
    private var breakersOnOtherQueues = false
    /// The plan in force has a queue whose capacity is a first-sight guess.
    private var provisionalPlans = false
    struct QueueActivity: Sendable {
        var tenant: String
        var lastSeen: C.Instant
        var mixedAt: C.Instant?
    }
    /// Per queue: the tenant of the last fire seen on it and when, and when a fire followed one
    /// of another tenant (two tenants contending for it). Forgotten after `idleExpiry`.
    private var queueActivity: [String: QueueActivity] = [:]
    /// How long before it was applied the plan in force was issued (its stated times count
    /// from its issue).
    private var planAge: Duration = .zero
    /// This dispatcher's own outcome windows under the plan's trip rules, per queue (tenant "")
    /// and per (queue, tenant): they show a downstream tripping before a plan says its breaker
    /// opened (`judgeFailure`). At most `maximumTracked`; empty ones are dropped first.
    private var failureWindows: [QueueTenant: FailureWindow<C>] = [:]

    private func mayHold(_ queue: String) -> Bool {
        breakersOnOtherQueues ? plan.queues[queue] == nil || breakerQueues.contains(queue) : breakerQueues.contains(queue)
    }
    /// Half-open breakers' probe allowances: per queue (tenant "") and per (queue, tenant).
    private var probeBuckets: [QueueTenant: TokenBucket<C>] = [:]
    private var dispatchedByTier: [Tier: Int] = [:]
    private var deferredByTier: [Tier: Int] = [:]
    /// Smoothed gap between two `decide` calls (seconds) and when the last one was.
    public private(set) var decisionGap: Double = 0
    private var lastDecision: C.Instant?

    public init(configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.plan = .unthrottled
    }

    /// Switches to `plan` (ignored if older than the current one by (epoch, generation), so a
    /// new governor leader's plans win even when its generations restart). Buckets keep the
    /// tokens they have (clamped to the new burst), so a new plan never releases a burst.
    /// `age`: how long ago the plan was issued (a plan read from KV at start may be old; fleet
    /// clocks are synchronised anyway, as due times are wall-clock times).
    public mutating func apply(_ plan: FairnessPlan, age: Duration = .zero, now: C.Instant) {
        // Strictly newer only: the same plan read again (the periodic re-read) must not restart
        // the times it states, such as a breaker's remaining cool-down.
        guard planAppliedAt == nil || plan.isNewer(than: self.plan) else { return }
        self.plan = plan
        planAppliedAt = now
        planAge = min(max(age, .zero), .seconds(86_400))
        func holds(_ q: QuotaPlan) -> Bool { q.breaker != nil || q.tenants.values.contains { $0.breaker != nil } }
        breakerQueues = Set(plan.queues.filter { holds($0.value) }.keys)
        breakersOnOtherQueues = plan.otherQueues.map(holds) ?? false
        provisionalPlans = plan.queues.values.contains { $0.provisional == true } || plan.otherQueues?.provisional == true
        // A probe round lasts while its breaker stays half-open; the next one starts full.
        probeBuckets = probeBuckets.filter { scope, _ in
            let queuePlan = plan.plan(for: scope.queue)
            let status = scope.tenant.isEmpty ? queuePlan?.breaker : queuePlan?.tenants[scope.tenant]?.breaker
            return status?.state == .halfOpen
        }
        for (name, var state) in tenants {
            let (tier, quota) = resolvedQuota(name)
            state.tier = tier
            state.bucket.reconfigure(rate: quota.rate, burst: coveredBurst(quota), now: now)
            tenants[name] = state
        }
    }

    /// Most fires this dispatcher may keep deferred under the plan in force: its share of the
    /// consumer's window, and never more than `maximumDeferred`.
    public var deferralLimit: Int {
        let share = Double(max(0, configuration.consumerWindow)) * min(max(configuration.windowShare, 0), 1)
            * plan.dispatcherShare
        return max(0, min(configuration.maximumDeferred, Int(share)))
    }

    /// Applies one plan to every queue (a fixed plan; tests).
    public mutating func apply(_ plan: QuotaPlan, now: C.Instant) {
        apply(FairnessPlan(everyQueue: plan), now: now)
    }

    /// The tier this dispatcher currently applies to `tenant` on `queue`.
    public func tier(of tenant: String, queue: String = "") -> Tier {
        let key = QueueTenant(queue: queue, tenant: tenant)
        return tenants[key]?.tier ?? resolvedQuota(key).tier
    }

    /// Decides for each candidate (same order) whether to dispatch it now or defer it.
    public mutating func decide(_ candidates: [Candidate], now: C.Instant) -> [Decision] {
        var decisions = [Decision](repeating: .dispatch, count: candidates.count)
        for candidate in candidates {
            var state = self.state(for: candidate.key, now: now)
            if candidate.redelivered {
                if let n = state.deferredByDue[candidate.dueSecond], n > 0 {
                    state.deferredByDue[candidate.dueSecond] = n > 1 ? n - 1 : nil
                    state.deferred -= 1
                    deferredNow -= 1
                }
            } else {
                state.due += 1
            }
            state.lastActive = now
            tenants[candidate.key] = state
            noteActivity(candidate, now: now)
        }
        guard configuration.enforce else {
            for candidate in candidates { countDispatch(candidate.key) }
            return decisions
        }
        observeDecisionGap(now: now)
        for key in Set(candidates.map(\.key)) { fitBurst(key, now: now) }

        var scheduler = DeficitRoundRobin<QueueTenant, Int>()
        // Returning fires first, oldest first: they are older than anything fresh of the tenant.
        let order = candidates.indices.sorted {
            (candidates[$0].redelivered ? 0 : 1, candidates[$0].dueSecond, $0)
                < (candidates[$1].redelivered ? 0 : 1, candidates[$1].dueSecond, $1)
        }
        // A fire held back before fair scheduling (a breaker, the retry budget) waits here,
        // unclaimed — it spends no attempt — and counts like any deferral.
        func hold(_ index: Int, for delay: Duration) -> Bool {
            let key = candidates[index].key
            guard deferredNow < deferralLimit else { return false }
            deferredNow += 1
            var state = tenants[key]!
            state.deferredByDue[candidates[index].dueSecond, default: 0] += 1
            state.deferred += 1
            state.held += 1
            state.deferredBackBy = max(state.deferredBackBy, now.advanced(by: delay))
            tenants[key] = state
            decisions[index] = .deferred(delay, lineWait: delay)
            return true
        }
        // Circuit breakers first, then the retry budget of each queue. The common batch — only
        // first attempts, no breaker on their queues — just earns retry budget, once per queue.
        var settled = [Bool](repeating: false, count: candidates.count)
        let checks = candidates.contains { $0.attempt > 1 || mayHold($0.queue) }
        if !checks {
            earnRetryBudget(candidates.indices, of: candidates, now: now)
        } else {
            // Fewest attempts spent first: a half-open breaker's probes use jobs with attempts to
            // spare rather than the same oldest job round after round, and first attempts earn
            // their retry budget before this batch's retries spend it.
            let holdOrder = order.enumerated().sorted {
                (candidates[$0.element].attempt, $0.offset) < (candidates[$1.element].attempt, $1.offset)
            }.map(\.element)
            var earning: [Int] = []
            var earned = false
            for index in holdOrder {
                let candidate = candidates[index]
                var delay = breakerHold(candidate.key, now: now)
                let byBreaker = delay != nil
                if !byBreaker {
                    if candidate.attempt <= 1 {
                        earning.append(index)
                        continue
                    }
                    if !earned {
                        earnRetryBudget(earning, of: candidates, now: now)
                        earned = true
                    }
                    delay = retryBudgetHold(candidate, now: now)
                }
                guard let delay else { continue }
                settled[index] = true
                if !hold(index, for: delay) {
                    overflowDispatched += 1
                    countDispatch(candidate.key)
                } else if byBreaker {
                    heldTotal += 1
                } else {
                    retriesOverBudget += 1
                }
            }
            if !earned { earnRetryBudget(earning, of: candidates, now: now) }
        }
        for index in order where !settled[index] {
            let candidate = candidates[index]
            scheduler.enqueue(
                index, for: candidate.key, priority: candidate.priority,
                weight: (plan.plan(for: candidate.queue)?.weights ?? .default)[tenants[candidate.key]!.tier])
        }
        // A first-sight guess holds back no tenant that is alone on its queue here.
        var unguarded: Set<String> = []
        if provisionalPlans {
            for queue in Set(candidates.map(\.queue))
            where plan.plan(for: queue)?.provisional == true && !contended(queue, now: now) {
                unguarded.insert(queue)
            }
        }
        let admitted = scheduler.dequeue(limit: candidates.count) { tenant, _ in
            tenants[tenant]!.bucket.tryTake(now: now) || unguarded.contains(tenant.queue)
        }
        for (tenant, _) in admitted { countDispatch(tenant) }

        var refused: [QueueTenant: [Int]] = [:]
        for (tenant, index) in scheduler.removeAll() {
            if deferredNow >= deferralLimit {
                overflowDispatched += 1
                countDispatch(tenant)
                continue
            }
            refused[tenant, default: []].append(index)
            deferredNow += 1
        }
        for (tenant, indices) in refused {
            var state = tenants[tenant]!
            let provisional = plan.plan(for: tenant.queue)?.provisional == true
            let interval = 1 / max(state.bucket.rate, 1e-9)
            let firstToken = state.bucket.timeUntilAvailable(now: now)
            // Walk the line (due seconds ascending) alongside this batch's refused fires sorted
            // by due time: position = fires already deferred that came due no later + the ones
            // of this batch placed before it.
            let line = state.deferredByDue.sorted { $0.key < $1.key }
            var cursor = 0
            var ahead = 0
            let sorted = indices.sorted { (candidates[$0].dueSecond, $0) < (candidates[$1].dueSecond, $1) }
            for (placed, index) in sorted.enumerated() {
                let due = candidates[index].dueSecond
                while cursor < line.count, line[cursor].key <= due {
                    ahead += line[cursor].value
                    cursor += 1
                }
                let wait = max(
                    firstToken + Duration.seconds(min(Double(ahead + placed) * interval, 1e9)),
                    configuration.minimumDeferral)
                var delay = wait <= configuration.maximumDeferral ? wait : max(configuration.maximumDeferral, wait / 2)
                if provisional { delay = min(delay, max(configuration.provisionalMaximumDeferral, configuration.minimumDeferral)) }
                state.deferredBackBy = max(state.deferredBackBy, now.advanced(by: delay))
                decisions[index] = .deferred(delay, lineWait: wait)
            }
            for index in indices { state.deferredByDue[candidates[index].dueSecond, default: 0] += 1 }
            state.deferred += indices.count
            deferredByTier[state.tier, default: 0] += indices.count
            tenants[tenant] = state
        }
        return decisions
    }

    /// Per tenant: fires that came due, are deferred now, and were dispatched since the last
    /// report (tenants with nothing to say are left out). Resets the period counts, forgets idle
    /// tenants and resets deferral counts whose fires must have come back elsewhere.
    public mutating func takeReport(now: C.Instant, grace: Duration = .seconds(30)) -> [TenantReport] {
        var lines: [TenantReport] = []
        for (name, var state) in tenants {
            if state.deferred > 0, now > state.deferredBackBy.advanced(by: grace) {
                deferredNow -= state.deferred
                state.deferred = 0
                state.deferredByDue = [:]
            }
            if state.due > 0 || state.deferred > 0 || state.dispatched > 0 || state.succeeded > 0
                || state.failedDownstream > 0 || state.held > 0
            {
                var line = TenantReport(
                    tenant: name.tenant, queue: name.queue, due: state.due, deferred: state.deferred,
                    dispatched: state.dispatched)
                line.succeeded = state.succeeded
                line.failedDownstream = state.failedDownstream
                line.held = state.held
                lines.append(line)
            }
            state.due = 0
            state.dispatched = 0
            state.succeeded = 0
            state.failedDownstream = 0
            state.held = 0
            let idle = state.lastActive.duration(to: now) >= configuration.idleExpiry
            if idle, state.deferred == 0, state.bucket.tokens(at: now) >= state.bucket.burst {
                tenants[name] = nil
            } else {
                tenants[name] = state
            }
        }
        queueActivity = queueActivity.filter { $0.value.lastSeen.duration(to: now) < configuration.idleExpiry }
        return lines.sorted { ($0.queue, $0.tenant) < ($1.queue, $1.tenant) }
    }

    /// Active (queue, tenant) pairs, deferred fires and lifetime totals per tier (for `$SRV.STATS`).
    public func tierCounters() -> [Tier: TierCounters] {
        var out = Dictionary(uniqueKeysWithValues: Tier.allCases.map { ($0, TierCounters()) })
        for state in tenants.values {
            out[state.tier]!.tenants += 1
            out[state.tier]!.deferredNow += state.deferred
        }
        for tier in Tier.allCases {
            out[tier]!.dispatchedTotal = dispatchedByTier[tier] ?? 0
            out[tier]!.deferredTotal = deferredByTier[tier] ?? 0
        }
        return out
    }

    /// Tenants active on a queue (one tenant on two queues counts twice).
    public var activeTenants: Int { tenants.count }

    /// Per queue: tenants active on it and fires deferred now.
    public func queueCounters() -> [String: (tenants: Int, deferredNow: Int)] {
        var out: [String: (tenants: Int, deferredNow: Int)] = [:]
        for (key, state) in tenants {
            out[key.queue, default: (0, 0)].tenants += 1
            out[key.queue, default: (0, 0)].deferredNow += state.deferred
        }
        return out
    }

    /// Smooths the gap between decisions (time constant ≈ 8 calls), ignoring idle pauses
    /// longer than the cover's cap: those are not batch processing time.
    private mutating func observeDecisionGap(now: C.Instant) {
        defer { lastDecision = now }
        guard let last = lastDecision, last < now else { return }
        let gap = last.duration(to: now).fairnessSeconds
        guard gap <= configuration.maximumBurstCover.fairnessSeconds else { return }
        decisionGap += (gap - decisionGap) / 8
    }

    /// Records results applied for `tenant` on `queue` (reported to the governor, whose circuit
    /// breakers judge the downstream by them). Beyond `maximumTracked` (queue, tenant) pairs a
    /// new pair is not tracked: queue names in results come from executors.
    /// `failedFirstAttempts`: of `failedDownstream`, first attempts (distinct jobs).
    public mutating func recordResults(
        queue: String, tenant: String, succeeded: Int, failedDownstream: Int, failedFirstAttempts: Int = 0, now: C.Instant
    ) {
        let key = QueueTenant(queue: queue, tenant: tenant)
        guard tenants[key] != nil || tenants.count < configuration.maximumTracked else { return }
        var state = self.state(for: key, now: now)
        state.succeeded = min(state.succeeded + max(0, succeeded), Int.max / 4)
        state.failedDownstream = min(state.failedDownstream + max(0, failedDownstream), Int.max / 4)
        state.lastActive = now
        tenants[key] = state
        guard let rule = plan.breakerTrip(for: queue) else { return }
        for scope in [key, QueueTenant(queue: queue, tenant: "")] {
            var window: FailureWindow<C>
            if let existing = failureWindows[scope] {
                window = existing
            } else {
                if failureWindows.count >= configuration.maximumTracked {
                    failureWindows = failureWindows.filter { !$0.value.isEmpty(now: now) }
                    if failureWindows.count >= configuration.maximumTracked { continue }
                }
                window = FailureWindow(rule: rule)
            }
            window.rule = rule
            window.record(
                successes: succeeded, failures: failedDownstream, firstAttemptFailures: failedFirstAttempts, now: now)
            failureWindows[scope] = window
        }
    }

    /// How the downstream of `tenant`'s jobs on `queue` looks when one of them failed in a way
    /// that counts towards its breaker (record the result with `recordResults` first):
    /// - `.tripping`: the plan has a breaker not closed over it (the queue's or the tenant's on
    ///   it, or an operator's pause), or this dispatcher's own window for the queue or the
    ///   tenant on it already trips the plan's rule — the failures that trip a breaker arrive
    ///   before the plan that says it opened. The failure's attempt is given back.
    /// - `.suspected`: the window's failures are at the rule's ratio but fewer than its
    ///   minimum samples, and at least two jobs failed their first attempt (a job failing
    ///   alone, retry after retry, is not suspect): maybe the start of an outage. A failure that would
    ///   dead-letter gets one provisional retry, by which time the evidence is in.
    /// - `.healthy`; also always with breakers off, or in FIFO mode (nothing is held).
    public func judgeFailure(queue: String, tenant: String, now: C.Instant) -> DownstreamJudgement {
        guard configuration.enforce, plan.breakerTrip(for: queue) != nil else { return .healthy }
        if let queuePlan = plan.plan(for: queue),
            queuePlan.breaker != nil || queuePlan.tenants[tenant]?.breaker != nil
        {
            return .tripping
        }
        let windows = [QueueTenant(queue: queue, tenant: tenant), QueueTenant(queue: queue, tenant: "")]
            .compactMap { failureWindows[$0] }
        if windows.contains(where: { $0.trippingRatio(now: now) != nil }) { return .tripping }
        return windows.contains { $0.suspects(now: now) } ? .suspected : .healthy
    }

    /// Retries per queue are limited to a share of first attempts (as gRPC and Finagle retry
    /// throttling): each first attempt earns `retryBudgetRatio` of a retry, a floor of
    /// `retryBudgetFloor` per second accrues anyway (this dispatcher's share of it), and at most
    /// `retryBudgetBurst` are saved up. A retry over budget waits for its token. Nil: go on.
    private mutating func retryBudgetHold(_ candidate: Candidate, now: C.Instant) -> Duration? {
        let c = configuration
        guard c.retryBudgetRatio.isFinite, c.retryBudgetRatio >= 0 else { return nil }
        var budget = retryBudget(candidate.queue, now: now)
        defer { retryBudgets[candidate.queue] = budget }
        if budget.bucket.tryTake(now: now) { return nil }
        let wait = budget.bucket.timeUntilAvailable(now: now)
        return min(max(wait, c.minimumDeferral, .seconds(1)), c.maximumDeferral)
    }

    /// Credits the retry budgets with the first attempts among `indices` (first deliveries
    /// only), one update per queue.
    private mutating func earnRetryBudget(_ indices: some Sequence<Int>, of candidates: [Candidate], now: C.Instant) {
        let ratio = configuration.retryBudgetRatio
        guard ratio.isFinite, ratio > 0 else { return }
        var firsts: [String: Int] = [:]
        for index in indices where candidates[index].attempt <= 1 && !candidates[index].redelivered {
            firsts[candidates[index].queue, default: 0] += 1
        }
        for (queue, count) in firsts {
            var budget = retryBudget(queue, now: now)
            budget.earned += Double(count) * ratio
            let whole = Int(min(budget.earned, 1e6))
            if whole > 0 {
                budget.bucket.giveBack(whole, now: now)
                budget.earned -= Double(whole)
            }
            retryBudgets[queue] = budget
        }
    }

    private func retryBudget(_ queue: String, now: C.Instant) -> (bucket: TokenBucket<C>, earned: Double) {
        let c = configuration
        return retryBudgets[queue]
            ?? (TokenBucket(rate: max(0, c.retryBudgetFloor) * plan.dispatcherShare, burst: max(1, c.retryBudgetBurst), now: now), 0)
    }

    /// How long a fire of `key` must wait for the circuit breakers of its queue and of its
    /// tenant on it, or nil to go on: open → until it half-opens (as the plan said, counted from
    /// when the plan was applied); half-open → only the probes its bucket allows.
    private mutating func breakerHold(_ key: QueueTenant, now: C.Instant) -> Duration? {
        guard mayHold(key.queue), let queuePlan = plan.plan(for: key.queue) else { return nil }
        let scopes: [(QueueTenant, BreakerStatus)] = [
            queuePlan.breaker.map { (QueueTenant(queue: key.queue, tenant: ""), $0) },
            queuePlan.tenants[key.tenant]?.breaker.map { (key, $0) },
        ].compactMap { $0 }
        guard !scopes.isEmpty else { return nil }
        let elapsed = planAge + (planAppliedAt.map { $0 < now ? $0.duration(to: now) : .zero } ?? .zero)
        var wait: Duration?
        var probing: [(QueueTenant, BreakerStatus)] = []
        for (scope, status) in scopes {
            switch status.state {
            case .closed: continue
            case .halfOpen: probing.append((scope, status))
            case .open:
                let remaining = Duration.milliseconds(status.reopensInMillis ?? status.coolDownMillis) - elapsed
                if remaining > .zero {
                    wait = max(wait ?? .zero, max(remaining, configuration.minimumDeferral))
                } else {
                    // Past its cool-down and no newer plan (no governor to move it on): probe as
                    // if half-open rather than hold for ever.
                    probing.append((scope, status))
                }
            }
        }
        if wait == nil {
            for (scope, status) in probing {
                let probes = Double(max(1, status.probes))
                var bucket = probeBuckets[scope] ?? TokenBucket(rate: probes / 10, burst: probes, now: now)
                if !bucket.tryTake(now: now) {
                    wait = max(wait ?? .zero, max(bucket.timeUntilAvailable(now: now), .seconds(1)))
                }
                probeBuckets[scope] = bucket
                if wait != nil { break }
            }
        }
        return wait.map { min($0, configuration.maximumDeferral) }
    }

    /// A bucket's burst: the plan's, or what accrues over `burstCover` decision gaps if larger.
    private func coveredBurst(_ quota: Quota) -> Double {
        let cover = min(
            max(configuration.burstCover, 0) * decisionGap, configuration.maximumBurstCover.fairnessSeconds)
        return max(quota.burst, quota.rate * cover)
    }

    /// Follows the decision gap: refits the tenant's burst when it is off by more than 10 %.
    private mutating func fitBurst(_ tenant: QueueTenant, now: C.Instant) {
        guard var state = tenants[tenant] else { return }
        let burst = coveredBurst(resolvedQuota(tenant).quota)
        guard abs(burst - state.bucket.burst) > 0.1 * state.bucket.burst else { return }
        state.bucket.reconfigure(rate: state.bucket.rate, burst: burst, now: now)
        tenants[tenant] = state
    }

    /// Records a fire of `candidate.tenant` on its queue (for `contended`). Two tenants met
    /// only if the other one's fire came within `contentionWindow`; at most `maximumTracked`
    /// queues are followed (beyond that a new queue counts as uncontended: the guess is not
    /// applied there, as before the rule).
    private mutating func noteActivity(_ candidate: Candidate, now: C.Instant) {
        // Per fire on the hot path: a batch is mostly runs of one tenant at one `now`, which
        // change nothing here, so they cost one lookup and no write.
        if let seen = queueActivity[candidate.queue], seen.tenant == candidate.tenant, seen.lastSeen == now { return }
        guard var activity = queueActivity[candidate.queue] else {
            guard queueActivity.count < configuration.maximumTracked else { return }
            queueActivity[candidate.queue] = QueueActivity(tenant: candidate.tenant, lastSeen: now)
            return
        }
        if activity.tenant != candidate.tenant {
            if activity.lastSeen.duration(to: now) <= configuration.contentionWindow { activity.mixedAt = now }
            activity.tenant = candidate.tenant
        }
        activity.lastSeen = now
        queueActivity[candidate.queue] = activity
    }

    /// Two tenants contend for `queue`: the plan lists two with fires due on it lately
    /// (`contentionDemand`, from every Dispatcher's reports), or fires of two tenants met on it here within `contentionWindow`
    /// (the reports may be a period behind a flood).
    private func contended(_ queue: String, now: C.Instant) -> Bool {
        if let queuePlan = plan.plan(for: queue),
            queuePlan.tenants.values.count(where: { $0.demand >= configuration.contentionDemand }) >= 2
        {
            return true
        }
        guard let mixedAt = queueActivity[queue]?.mixedAt else { return false }
        return mixedAt.duration(to: now) <= configuration.contentionWindow
    }

    private mutating func countDispatch(_ tenant: QueueTenant) {
        guard var state = tenants[tenant] else { return }
        state.dispatched += 1
        dispatchedByTier[state.tier, default: 0] += 1
        tenants[tenant] = state
    }

    private func resolvedQuota(_ key: QueueTenant) -> (tier: Tier, quota: Quota) {
        let (tier, quota) = plan.resolve(key.tenant, queue: key.queue, fallbackTier: configuration.unknownTenantTier)
        let share = plan.dispatcherShare
        return (tier, Quota(rate: quota.rate * share, burst: max(1, quota.burst * share)))
    }

    private func state(for tenant: QueueTenant, now: C.Instant) -> TenantState {
        if let existing = tenants[tenant] { return existing }
        let (tier, quota) = resolvedQuota(tenant)
        return TenantState(
            bucket: TokenBucket(rate: quota.rate, burst: coveredBurst(quota), now: now), tier: tier,
            deferredBackBy: now, lastActive: now)
    }
}

/// A tenant on one work queue: what the gate and the governor keep fairness state for.
public struct QueueTenant: Sendable, Hashable, Comparable {
    public var queue: String
    public var tenant: String

    public init(queue: String, tenant: String) {
        self.queue = queue
        self.tenant = tenant
    }

    public static func < (a: QueueTenant, b: QueueTenant) -> Bool { (a.queue, a.tenant) < (b.queue, b.tenant) }
}

extension FairnessGate.Candidate {
    var key: QueueTenant { QueueTenant(queue: queue, tenant: tenant) }
}

/// What a failed job says about its downstream (`FairnessGate.judgeFailure`).
public enum DownstreamJudgement: Sendable, Hashable {
    case healthy, suspected, tripping
}
