import Foundation
import SundialContract
import SundialCore
import SundialPostgres
import SundialProto
import SundialSchedule

/// A row of `timers`.
public struct StoredTimer: Sendable, Hashable {
    public var id: UUID
    public var tenant: String
    public var shard: Int
    public var state: StoredTimerState
    public var kind: String
    public var recurring: Bool
    public var schedule: [UInt8]
    public var nextFireAt: Date?
    /// The un-jittered time of the next occurrence.
    public var nextNominalAt: Date?
    /// Number of the next occurrence not yet loaded.
    public var occurrence: Int64
    public var attempt: Int
    public var version: Int64
    public var queue: String
    public var payload: [UInt8]
    public var priority: Int
    /// JSON object text, e.g. `{"env": "prod"}`.
    public var labelsJSON: String
    public var retryPolicy: [UInt8]?
    public var idempotencyKey: String?
    public var afterTimerID: UUID?
    public var attempts: Int
    public var occurrencesFired: Int64
    public var lastError: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// A paused timer's state to return to on resume.
    public var pausedState: StoredTimerState?
    public var misfirePolicy: MisfirePolicy
    /// Missed occurrences older than this are skipped whatever the policy (nil: no limit).
    public var catchupWindow: TimeInterval?
    public var occurrencesSkipped: Int64
    /// Publish a `succeeded` event when a job succeeds.
    public var notifySuccess: Bool

    init(row: PostgresRow) throws {
        id = try row.required("id", row.uuid)
        tenant = try row.required("tenant", row.string)
        shard = try row.required("shard", row.int)
        state = try StoredTimerState(stored: row.required("state", row.string))
        kind = try row.required("kind", row.string)
        recurring = try row.bool("recurring") ?? false
        schedule = try row.bytes("schedule") ?? []
        nextFireAt = try row.date("next_fire_at")
        nextNominalAt = try row.date("next_nominal_at")
        occurrence = try row.required("occurrence", row.int64)
        attempt = try row.required("attempt", row.int)
        version = try row.required("version", row.int64)
        queue = try row.required("queue", row.string)
        payload = try row.bytes("payload") ?? []
        priority = try row.required("priority", row.int)
        labelsJSON = try row.string("labels") ?? "{}"
        retryPolicy = try row.bytes("retry_policy")
        idempotencyKey = try row.string("idempotency_key")
        afterTimerID = try row.uuid("after_timer_id")
        attempts = try row.required("attempts", row.int)
        occurrencesFired = try row.required("occurrences_fired", row.int64)
        lastError = try row.string("last_error")
        createdAt = try row.required("created_at", row.date)
        updatedAt = try row.required("updated_at", row.date)
        pausedState = try row.string("paused_state").map(StoredTimerState.init(stored:))
        misfirePolicy = try MisfirePolicy(stored: row.required("misfire_policy", row.string))
        let windowMs = try row.required("catchup_window_ms", row.int64)
        catchupWindow = windowMs > 0 ? Double(windowMs) / 1000 : nil
        occurrencesSkipped = try row.required("occurrences_skipped", row.int64)
        notifySuccess = try row.required("notify_success", row.bool)
    }

    /// The misfire rule this timer's missed occurrences are judged by at `now`.
    public func misfire(at now: Date, threshold: Duration) -> MisfireRule {
        MisfireRule(policy: misfirePolicy, catchupWindow: catchupWindow, now: now, threshold: threshold)
    }
}

/// What Ingest stores for a new timer.
public struct NewTimer: Sendable {
    public var id: UUID
    public var tenant: String
    public var shard: Int
    /// `.armed` when Ingest publishes the schedule itself (due within the horizon).
    public var state: StoredTimerState
    public var kind: String
    public var recurring: Bool
    public var schedule: [UInt8]
    /// The cursor: the next occurrence not yet loaded (for a near-term one-shot, the loaded one).
    public var nextFireAt: Date
    public var nextNominalAt: Date
    public var occurrence: Int64
    /// Set when Ingest loads the first occurrence itself: stored armed in the same transaction.
    public var armedRun: ArmedRun?
    public var queue: String
    public var payload: [UInt8]
    public var priority: Int
    public var labelsJSON: String
    public var retryPolicy: [UInt8]?
    public var idempotencyKey: String?
    /// Hash of the request, to tell a retry from a different request reusing the key.
    public var requestHash: [UInt8]
    public var afterTimerID: UUID?
    /// With `afterTimerID`: the cursor to use instead of waiting if the parent has already
    /// succeeded (its schedule computed from now).
    public var startedCursor: (fireAt: Date, nominal: Date)?
    public var misfirePolicy: MisfirePolicy = .standard
    /// Milliseconds; 0: no limit.
    public var catchupWindowMs: Int64 = 0
    public var notifySuccess = false

    public init(
        id: UUID, tenant: String, shard: Int, state: StoredTimerState, kind: String, recurring: Bool,
        schedule: [UInt8], nextFireAt: Date, nextNominalAt: Date, occurrence: Int64, armedRun: ArmedRun?,
        queue: String, payload: [UInt8], priority: Int, labelsJSON: String,
        retryPolicy: [UInt8]?, idempotencyKey: String?, requestHash: [UInt8], afterTimerID: UUID?
    ) {
        self.nextNominalAt = nextNominalAt
        self.occurrence = occurrence
        self.armedRun = armedRun
        self.recurring = recurring
        self.id = id
        self.tenant = tenant
        self.shard = shard
        self.state = state
        self.kind = kind
        self.schedule = schedule
        self.nextFireAt = nextFireAt
        self.queue = queue
        self.payload = payload
        self.priority = priority
        self.labelsJSON = labelsJSON
        self.retryPolicy = retryPolicy
        self.idempotencyKey = idempotencyKey
        self.requestHash = requestHash
        self.afterTimerID = afterTimerID
    }
}

/// The outcome of a create.
public enum CreateOutcome: Sendable {
    case created(StoredTimer)
    /// The idempotency key matched a timer created by the same request.
    case existing(StoredTimer)
    /// The key was used before for a different request.
    case keyConflict(StoredTimer)
    /// `after_timer_id` names no timer of this tenant.
    case parentNotFound
    /// The parent ended without success (dead or cancelled): the child would never start.
    case parentEnded(StoredTimerState)
}

extension ScheduledFire {
    /// A row with a run's timer columns (`id`, `tenant`, …, `next_fire_at` as the run's due time).
    init(row: PostgresRow) throws {
        self.init(
            tenant: try row.required("tenant", row.string), timerID: try row.required("id", row.uuid),
            shard: try row.required("shard", row.int), version: try row.required("version", row.int64),
            dueAt: try row.required("next_fire_at", row.date), occurrence: try row.required("occurrence", row.int64),
            attempt: try row.required("attempt", row.int), queue: try row.required("queue", row.string),
            payload: try row.bytes("payload") ?? [], priority: try row.required("priority", row.int))
    }
}

/// A fired run, as the Dispatcher claims it.
public struct FiredRun: Sendable, Hashable {
    public var key: FireKey
    public var version: Int64
    public var firedAt: Date

    public init(key: FireKey, version: Int64, firedAt: Date) {
        self.key = key
        self.version = version
        self.firedAt = firedAt
    }
}

/// One row of `timer_runs`.
public struct StoredRun: Sendable, Hashable {
    public var occurrence: Int64
    public var attempt: Int
    public var version: Int64
    public var scheduledAt: Date
    public var firedAt: Date?
    public var dispatchedAt: Date?
    public var finishedAt: Date?
    public var outcome: RunOutcome
    public var error: String?
}

/// Timer persistence. All SQL is in `TimerQueries`; this type only binds and decodes.
public struct TimerStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// Inserts a timer — and, for a near-term timer, its first armed run — in one
    /// transaction, durably (committed before this returns), honouring the per-tenant
    /// idempotency key.
    public func create(_ timer: NewTimer) async throws -> CreateOutcome {
        if timer.afterTimerID == nil {
            // The common case: one statement, one round trip.
            let inserted = try await pool.withSession { session in
                try session.execute(
                    TimerQueries.insertTimerWithRun,
                    [
                        "id": .uuid(timer.id), "tenant": .text(timer.tenant), "shard": .int(timer.shard),
                        "state": .text(timer.state.rawValue), "kind": .text(timer.kind),
                        "schedule": .bytes(timer.schedule), "next_fire_at": .timestamp(timer.nextFireAt),
                        "next_nominal_at": .timestamp(timer.nextNominalAt), "occurrence": .int64(timer.occurrence),
                        "queue": .text(timer.queue), "payload": .bytes(timer.payload),
                        "priority": .int(timer.priority), "labels": .json(timer.labelsJSON),
                        "retry_policy": timer.retryPolicy.map { .bytes($0) } ?? .null,
                        "idempotency_key": timer.idempotencyKey.map { .text($0) } ?? .null,
                        "request_hash": .bytes(timer.requestHash), "recurring": .bool(timer.recurring),
                        "misfire_policy": .text(timer.misfirePolicy.rawValue), "catchup_window_ms": .int64(timer.catchupWindowMs),
                        "notify_success": .bool(timer.notifySuccess),
                        "run_occurrence": timer.armedRun.map { .int64($0.occurrence) } ?? .null,
                        "run_scheduled_at": timer.armedRun.map { .timestamp($0.dueAt) } ?? .null,
                    ]
                ).first.map(StoredTimer.init(row:))
            }
            if let inserted { return .created(inserted) }
        }
        return try await pool.transaction { session in
            var timer = timer
            if let parent = timer.afterTimerID {
                guard let row = try session.execute(
                    TimerQueries.selectParentForChild, ["tenant": .text(timer.tenant), "id": .uuid(parent)]
                ).first else { return .parentNotFound }
                let parentState = try StoredTimerState(stored: row.required("state", row.string))
                // A finished recurring parent (`completed`) counts as succeeded when any of
                // its occurrences did; otherwise the child could never start and is refused.
                let hasSucceeded = try row.bool("has_succeeded") ?? false
                switch parentState {
                case .dead, .cancelled:
                    return .parentEnded(parentState)
                case .completed where !hasSucceeded:
                    return .parentEnded(parentState)
                case .succeeded, .completed:
                    if let started = timer.startedCursor {
                        timer.state = .scheduled
                        timer.nextFireAt = started.fireAt
                        timer.nextNominalAt = started.nominal
                    }
                default:
                    timer.state = .waiting
                }
            }
            let inserted = try session.execute(
                TimerQueries.insertTimer,
                [
                    "id": .uuid(timer.id), "tenant": .text(timer.tenant), "shard": .int(timer.shard),
                    "state": .text(timer.state.rawValue), "kind": .text(timer.kind),
                    "schedule": .bytes(timer.schedule), "next_fire_at": .timestamp(timer.nextFireAt),
                    "next_nominal_at": .timestamp(timer.nextNominalAt), "occurrence": .int64(timer.occurrence),
                    "queue": .text(timer.queue), "payload": .bytes(timer.payload), "priority": .int(timer.priority),
                    "labels": .json(timer.labelsJSON), "retry_policy": timer.retryPolicy.map { .bytes($0) } ?? .null,
                    "idempotency_key": timer.idempotencyKey.map { .text($0) } ?? .null,
                    "request_hash": .bytes(timer.requestHash),
                    "after_timer_id": timer.afterTimerID.map { .uuid($0) } ?? .null,
                    "misfire_policy": .text(timer.misfirePolicy.rawValue), "catchup_window_ms": .int64(timer.catchupWindowMs),
                    "notify_success": .bool(timer.notifySuccess), "recurring": .bool(timer.recurring),
                ])
            if let row = inserted.first {
                let stored = try StoredTimer(row: row)
                if let run = timer.armedRun { try Self.insertArmedRun(run, of: stored, session) }
                return .created(stored)
            }
            // Conflict on the idempotency key: return the first timer.
            guard let key = timer.idempotencyKey,
                let row = try session.execute(
                    TimerQueries.selectByIdempotencyKey, ["tenant": .text(timer.tenant), "idempotency_key": .text(key)]
                ).first
            else {
                throw PostgresError(kind: .query, message: "insert returned no row and no key conflict")
            }
            let existing = try StoredTimer(row: row)
            return try row.bytes("request_hash") == timer.requestHash
                ? .existing(existing) : .keyConflict(existing)
        }
    }

    /// Inserts many timers without a parent (`afterTimerID` nil) — each with its first armed run
    /// when it has one — in one statement and one commit (group commit). Returns the timers
    /// inserted, by id; a timer missing from it was not inserted (its idempotency key was
    /// taken) and goes through `create` to find out how.
    public func createBatch(_ timers: [NewTimer]) async throws -> [UUID: StoredTimer] {
        guard !timers.isEmpty else { return [:] }
        let bindings: PostgresBindings = [
            "id": .uuidArray(timers.map(\.id)), "tenant": .textArray(timers.map(\.tenant)),
            "shard": .intArray(timers.map(\.shard)), "state": .textArray(timers.map(\.state.rawValue)),
            "kind": .textArray(timers.map(\.kind)), "schedule": .byteaArray(timers.map(\.schedule)),
            "next_fire_at": .timestampArray(timers.map(\.nextFireAt)),
            "next_nominal_at": .timestampArray(timers.map(\.nextNominalAt)),
            "occurrence": .int64Array(timers.map(\.occurrence)), "queue": .textArray(timers.map(\.queue)),
            "payload": .byteaArray(timers.map(\.payload)), "priority": .intArray(timers.map(\.priority)),
            "labels": .textArray(timers.map(\.labelsJSON)),
            "retry_policy": .byteaArray(timers.map(\.retryPolicy)),
            "idempotency_key": .textArray(timers.map(\.idempotencyKey)),
            "request_hash": .byteaArray(timers.map(\.requestHash)),
            "recurring": .boolArray(timers.map(\.recurring)),
            "misfire_policy": .textArray(timers.map(\.misfirePolicy.rawValue)),
            "catchup_window_ms": .int64Array(timers.map(\.catchupWindowMs)),
            "notify_success": .boolArray(timers.map(\.notifySuccess)),
            "run_occurrence": .textArray(timers.map { $0.armedRun.map { String($0.occurrence) } }),
            // Read only where run_occurrence is not null.
            "run_scheduled_at": .timestampArray(timers.map { $0.armedRun?.dueAt ?? $0.nextFireAt }),
        ]
        let rows = try await pool.withSession { session in
            try session.execute(TimerQueries.insertTimersWithRuns, bindings).map(StoredTimer.init(row:))
        }
        return Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Loading a due timer: its current occurrence, and a recurring timer's following ones due
    /// before `horizon` (at most 1,000 per claim).
    /// Missed occurrences (loaded more than a minute late) go by the timer's misfire policy.
    static func loadStep(
        _ timer: StoredTimer, through horizon: Date, now: Date, misfireThreshold: Duration, maximumSkips: Int
    ) -> LoadStep {
        let fireAt = timer.nextFireAt ?? now
        let current = OccurrenceStepper.Occurrence(
            number: timer.occurrence, nominal: timer.nextNominalAt ?? fireAt, fireAt: fireAt)
        let schedule = timer.recurring
            ? timer.decodedSchedule : nil
        return .loading(
            current, recurring: timer.recurring, schedule: schedule, timerID: timer.id, through: horizon, limit: 1000,
            misfire: timer.misfire(at: now, threshold: misfireThreshold), maximumSkips: maximumSkips)
    }

    static func insertArmedRun(_ run: ArmedRun, of timer: StoredTimer, _ session: PostgresSession) throws {
        try session.execute(
            TimerQueries.insertArmedRun,
            [
                "timer_id": .uuid(timer.id), "occurrence": .int64(run.occurrence), "attempt": .int(run.attempt),
                "tenant": .text(timer.tenant), "version": .int64(timer.version),
                "scheduled_at": .timestamp(run.dueAt), "shard": .int(timer.shard), "refunded": .int(run.refunded),
                "attempt_base": .int(run.attemptBase),
            ])
    }

    /// A tenant's active timers (not in a final state) and their payload bytes.
    public func activeUsage(tenant: String) async throws -> (timers: Int, bytes: Int) {
        try await pool.withSession { session in
            let row = try session.execute(TimerQueries.tenantActiveUsage, ["tenant": .text(tenant)]).first
            return (Int(try row?.int64("timers") ?? 0), Int(try row?.int64("bytes") ?? 0))
        }
    }

    public func get(tenant: String, id: UUID) async throws -> StoredTimer? {
        try await pool.withSession { session in
            try session.execute(TimerQueries.selectTimer, ["tenant": .text(tenant), "id": .uuid(id)]).first
                .map(StoredTimer.init(row:))
        }
    }

    /// One page of a tenant's timers after `afterID` (nil: from the start).
    public func list(
        tenant: String, afterID: UUID?, states: [StoredTimerState], queue: String?, labelsJSON: String, limit: Int
    ) async throws -> [StoredTimer] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.listTimers,
                [
                    "tenant": .text(tenant),
                    "after_id": .uuid(afterID ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))),
                    "states": .textArray(states.map(\.rawValue)), "queue": .text(queue ?? ""),
                    "labels": .json(labelsJSON), "limit": .int(limit),
                ]
            ).map(StoredTimer.init(row:))
        }
    }

    /// Runs of a timer in (occurrence, attempt) order after the given position.
    public func runs(timerID: UUID, after: (occurrence: Int64, attempt: Int) = (-1, 0), limit: Int = 10_000)
        async throws -> [StoredRun]
    {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.selectRuns, [
                    "timer_id": .uuid(timerID), "after_occurrence": .int64(after.occurrence),
                    "after_attempt": .int(after.attempt), "limit": .int(limit),
                ]
            ).map(StoredRun.init(row:))
        }
    }

    // MARK: planner

    /// Loads up to `limit` timers of `lease.shard` due before `dueBefore`: in one transaction,
    /// arms a run for each and advances its cursor as `step` decides (a recurring timer moves
    /// to its next occurrence, so it never stalls and an occurrence is loaded exactly once).
    /// Returns nothing if the lease was lost (fencing).
    /// What one claim may hold in memory: payload bytes of the selected timers, and runs
    /// (each run becomes a message carrying its timer's payload). Past either, the claim stops
    /// early (`LoadedRuns.truncated`); the rest is claimed next time.
    public struct LoadBudget: Sendable, Hashable {
        public var bytes: Int
        public var runs: Int
        public init(bytes: Int = 64 << 20, runs: Int = 50_000) {
            self.bytes = bytes
            self.runs = runs
        }
    }

    /// The runs of one claim, and whether a budget cut it short (more may be due now).
    public struct LoadedRuns: Sendable {
        public var rows: [ScheduledFire]
        public var timers: Int
        public var truncated: Bool
    }

    /// Of `shards`, those holding a timer due before `dueBefore` (`TimerQueries.shardsWithDue`).
    public func shardsWithDue(_ shards: [Int], dueBefore: Date) async throws -> Set<Int> {
        try await pool.withSession { session in
            Set(
                try session.execute(
                    TimerQueries.shardsWithDue,
                    ["shards": .intArray(shards), "due_before": .timestamp(dueBefore)]
                ).map { try $0.required("shard", $0.int) })
        }
    }

    public func loadDue(
        lease: ShardLease, owner: String, dueBefore: Date, limit: Int, budget: LoadBudget = LoadBudget(),
        now: Date = Date(), misfireThreshold: Duration = MisfireRule.defaultThreshold
    ) async throws -> LoadedRuns {
        try await pool.transaction { session in
            let selected = try session.execute(
                TimerQueries.selectDueForLoad,
                [
                    "shard": .int(lease.shard), "due_before": .timestamp(dueBefore), "limit": .int(limit),
                    "owner": .text(owner), "epoch": .int64(lease.epoch), "max_bytes": .int64(Int64(budget.bytes)),
                ]
            ).map(StoredTimer.init(row:))
            guard !selected.isEmpty else { return LoadedRuns(rows: [], timers: 0, truncated: false) }
            // Steps in due order until the run, byte or skip budget is spent (the first always goes).
            var timers: [StoredTimer] = []
            var steps: [LoadStep] = []
            var runCount = 0
            var bytes = 0
            var skipsLeft = LoadStep.maximumSkipsPerLoad
            for timer in selected {
                let next = Self.loadStep(
                    timer, through: dueBefore, now: now, misfireThreshold: misfireThreshold, maximumSkips: skipsLeft)
                let cost = next.runs.count * (timer.payload.count + 512)
                if !timers.isEmpty, runCount + next.runs.count > budget.runs || bytes + cost > budget.bytes { break }
                timers.append(timer)
                steps.append(next)
                runCount += next.runs.count
                bytes += cost
                skipsLeft -= next.skipped
                // Skipping costs a step per occurrence: a claim stops once it skipped its share.
                if skipsLeft <= 0 { break }
            }
            let truncated = timers.count < selected.count || selected.count >= limit || skipsLeft <= 0
            // One row per run; a recurring timer may contribute several.
            let runs = zip(timers, steps).flatMap { timer, step in step.runs.map { (timer, $0) } }
            try session.execute(
                TimerQueries.insertArmedRuns,
                [
                    "ids": .uuidArray(runs.map(\.0.id)), "occurrences": .int64Array(runs.map(\.1.occurrence)),
                    "attempts": .intArray(runs.map(\.1.attempt)), "tenants": .textArray(runs.map(\.0.tenant)),
                    "versions": .int64Array(runs.map(\.0.version)),
                    "scheduled_at": .timestampArray(runs.map(\.1.dueAt)), "shards": .intArray(runs.map(\.0.shard)),
                ])
            try session.execute(
                TimerQueries.advanceTimers,
                [
                    "ids": .uuidArray(timers.map(\.id)), "states": .textArray(steps.map(\.nextState.rawValue)),
                    "next_fire_at": .timestampArray(steps.map(\.nextFireAt)),
                    "next_nominal_at": .timestampArray(steps.map(\.nextNominalAt)),
                    "occurrences": .int64Array(steps.map(\.nextOccurrence)),
                    "errors": .textArray(steps.map { $0.failure ?? "" }),
                    "skipped": .int64Array(steps.map { Int64($0.skipped) }),
                ])
            let rows = runs.map { timer, run in
                ScheduledFire(
                    tenant: timer.tenant, timerID: timer.id, shard: timer.shard, version: timer.version,
                    dueAt: run.dueAt, occurrence: run.occurrence, attempt: run.attempt,
                    queue: timer.queue, payload: timer.payload, priority: timer.priority)
            }
            return LoadedRuns(rows: rows, timers: timers.count, truncated: truncated)
        }
    }

    /// Armed runs of `shard` due after `after` (exclusive, keyset on time then id).
    public func armedFuture(shard: Int, after: Date, afterID: UUID, limit: Int) async throws -> [ScheduledFire] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.armedFuture, [
                    "shard": .int(shard), "after_time": .timestamp(after), "after_id": .uuid(afterID),
                    "limit": .int(limit),
                ]
            ).map(ScheduledFire.init(row:))
        }
    }

    /// Armed runs overdue since before `overdueBefore` and not re-armed since then; nothing
    /// unless `lease` is still held.
    public func rescueOverdue(lease: ShardLease, owner: String, overdueBefore: Date, limit: Int) async throws -> [ScheduledFire] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.rescueOverdue, [
                    "shard": .int(lease.shard), "owner": .text(owner), "epoch": .int64(lease.epoch),
                    "overdue_before": .timestamp(overdueBefore), "limit": .int(limit),
                ]
            ).map(ScheduledFire.init(row:))
        }
    }

    /// A run in flight, as the dispatched-but-lost rescue sees it.
    public struct InFlightRun: Sendable, Hashable {
        public var key: FireKey
        /// Where its job was stored in the work stream; 0 if not recorded (claimed, never marked).
        public var workSequence: UInt64

        public init(key: FireKey, workSequence: UInt64) {
            self.key = key
            self.workSequence = workSequence
        }
    }

    /// Runs of the lease's shard in flight and unseen since `before`, oldest first (see
    /// `TimerQueries.inFlightOverdue`); none unless `lease` is still held.
    public func inFlightOverdue(lease: ShardLease, owner: String, before: Date, limit: Int) async throws -> [InFlightRun] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.inFlightOverdue, [
                    "shard": .int(lease.shard), "owner": .text(owner), "epoch": .int64(lease.epoch),
                    "before": .timestamp(before), "limit": .int(limit),
                ]
            ).map { row in
                guard let id = try row.uuid("timer_id"), let occurrence = try row.int64("occurrence"),
                    let attempt = try row.int("attempt"), let sequence = try row.int64("work_sequence")
                else { throw PostgresError(kind: .query, message: "in-flight run with NULL key columns") }
                return InFlightRun(
                    key: FireKey(id: id, occurrence: occurrence, attempt: attempt), workSequence: UInt64(clamping: sequence))
            }
        }
    }

    /// Runs whose job is still in the work stream: seen now.
    public func noteInFlightSeen(_ keys: [FireKey]) async throws {
        guard !keys.isEmpty else { return }
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.noteInFlightSeen, [
                    "ids": .uuidArray(keys.map(\.id)), "occurrences": .int64Array(keys.map(\.occurrence)),
                    "attempts": .intArray(keys.map(\.attempt)),
                ])
        }
    }

    /// Arms again runs whose job is lost (see `TimerQueries.redispatchRuns`); returns the fires
    /// to republish. Nothing unless `lease` is still held.
    public func redispatch(_ runs: [InFlightRun], lease: ShardLease, owner: String, before: Date) async throws
        -> [ScheduledFire]
    {
        guard !runs.isEmpty else { return [] }
        return try await pool.withSession { session in
            try session.execute(
                TimerQueries.redispatchRuns, [
                    "ids": .uuidArray(runs.map(\.key.id)), "occurrences": .int64Array(runs.map(\.key.occurrence)),
                    "attempts": .intArray(runs.map(\.key.attempt)),
                    "work_sequences": .int64Array(runs.map { Int64(clamping: $0.workSequence) }),
                    "shard": .int(lease.shard), "owner": .text(owner), "epoch": .int64(lease.epoch),
                    "before": .timestamp(before),
                ]
            ).map(ScheduledFire.init(row:))
        }
    }

    // MARK: dispatcher

    /// Compare-and-set claim of fired runs; returns the keys this caller may forward.
    /// Claims fired runs still armed at the fired version; returns each claimed run's key with
    /// the version that matched.
    public func claimForDispatch(_ runs: [FiredRun]) async throws -> [FireKey: Int64] {
        guard !runs.isEmpty else { return [:] }
        let runs = runs.sorted { FireKey.lockOrder($0.key, $1.key) }
        return try await pool.withSession { session in
            let rows = try session.execute(
                TimerQueries.claimForDispatch,
                [
                    "ids": .uuidArray(runs.map(\.key.id)), "occurrences": .int64Array(runs.map(\.key.occurrence)),
                    "attempts": .intArray(runs.map(\.key.attempt)), "versions": .int64Array(runs.map(\.version)),
                    "fired_at": .timestampArray(runs.map(\.firedAt)),
                ])
            var claimed: [FireKey: Int64] = [:]
            for row in rows {
                guard let id = try row.uuid("timer_id"), let occurrence = try row.int64("occurrence"),
                    let attempt = try row.int("attempt"), let version = try row.int64("version")
                else { throw PostgresError(kind: .query, message: "claim returned a row with NULL key columns") }
                claimed[FireKey(id: id, occurrence: occurrence, attempt: attempt)] = version
            }
            return claimed
        }
    }

    /// Records forwarded jobs; `workSequences[i]` is where the job of `keys[i]` was stored in
    /// the work stream (0: unknown), looked up by the dispatched-but-lost rescue.
    public func markDispatched(_ keys: [FireKey], workSequences: [UInt64], at dispatchedAt: Date) async throws {
        guard !keys.isEmpty else { return }
        precondition(workSequences.count == keys.count, "one work sequence per run")
        let sorted = zip(keys, workSequences).sorted { FireKey.lockOrder($0.0, $1.0) }
        let keys = sorted.map(\.0), workSequences = sorted.map(\.1)
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.markDispatched,
                [
                    "ids": .uuidArray(keys.map(\.id)), "occurrences": .int64Array(keys.map(\.occurrence)),
                    "attempts": .intArray(keys.map(\.attempt)),
                    "dispatched_at": .timestampArray(Array(repeating: dispatchedAt, count: keys.count)),
                    "work_sequences": .int64Array(workSequences.map { Int64(clamping: $0) }),
                ])
        }
    }

    /// Hands claimed runs back to `armed` (see `TimerQueries.releaseClaims`).
    public func releaseClaims(_ keys: [FireKey], until: Date) async throws {
        guard !keys.isEmpty else { return }
        let keys = keys.sorted(by: FireKey.lockOrder)
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.releaseClaims,
                [
                    "ids": .uuidArray(keys.map(\.id)), "occurrences": .int64Array(keys.map(\.occurrence)),
                    "attempts": .intArray(keys.map(\.attempt)),
                    "until": .timestampArray(Array(repeating: until, count: keys.count)),
                ])
        }
    }

    /// Records that these runs' fires were deferred by quota until the given instants (see
    /// `TimerQueries.recordDeferrals`).
    public func recordDeferrals(_ deferrals: [(key: FireKey, until: Date)]) async throws {
        guard !deferrals.isEmpty else { return }
        let deferrals = deferrals.sorted { FireKey.lockOrder($0.key, $1.key) }
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.recordDeferrals,
                [
                    "ids": .uuidArray(deferrals.map(\.key.id)),
                    "occurrences": .int64Array(deferrals.map(\.key.occurrence)),
                    "attempts": .intArray(deferrals.map(\.key.attempt)),
                    "until": .timestampArray(deferrals.map(\.until)),
                ])
        }
    }
}

extension FireKey {
    /// Postgres's order of run keys: the uuid's bytes, then occurrence and attempt. Statements
    /// that update many runs by key take them in this order (a nested loop over the sorted
    /// arrays), so a dispatch mark and a batch of results on overlapping runs wait for each
    /// other instead of deadlocking — a deadlock sent a whole batch of results one by one.
    public static func lockOrder(_ a: FireKey, _ b: FireKey) -> Bool {
        if a.id != b.id {
            return withUnsafeBytes(of: a.id.uuid) { x in
                withUnsafeBytes(of: b.id.uuid) { y in x.lexicographicallyPrecedes(y) }
            }
        }
        return a.occurrence != b.occurrence ? a.occurrence < b.occurrence : a.attempt < b.attempt
    }
}
