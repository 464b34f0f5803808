import Foundation
import Logging
import SundialContract
import SundialCore
import SundialMessaging
import SundialNATS
import SundialPostgres
import SundialProto
import SundialSchedule
import SundialStore

/// The Timers API logic, independent of the transport: validate at the edge, write to
/// Postgres (durable before we answer), hand near-term timers to JetStream.
public struct TimerRequestHandler: Sendable {
    public let config: IngestConfig
    public let store: TimerStore
    public let jetStream: JetStreamContext
    public let connection: NATSConnection
    public let logger: Logger
    /// Injected for tests; `Date()` in production.
    public let now: @Sendable () -> Date
    let usage: TenantUsageLimiter
    let admission: AdmissionControl
    let creates: CreateBatcher

    public init(
        config: IngestConfig, store: TimerStore, connection: NATSConnection, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.config = config
        self.store = store
        self.connection = connection
        self.jetStream = connection.jetStream
        self.logger = logger
        self.now = now
        self.usage = TenantUsageLimiter(config: config, store: store)
        self.admission = AdmissionControl(config: config, tenants: TenantStore(pool: store.pool))
        self.creates = CreateBatcher(store: store, maxBatch: config.createBatch, maxFlushes: config.createFlushes) {
            [jetStream = connection.jetStream, namespace = config.namespace, logger] runs in
            await Self.publish(runs, jetStream: jetStream, namespace: namespace, logger: logger)
        }
    }

    // MARK: Create

    public func create(tenant: String, body: [UInt8]) async throws(SundialError)
        -> Sundial_V1_CreateTimerResponse
    {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_CreateTimerRequest = try Self.decode(body, "CreateTimerRequest")
        let createdAt = now()
        let plan = try validate(request, createdAt: createdAt)
        // After validation (a refused request costs no token), before any database work.
        try await admission.admit(tenant: tenant)
        let id = TimerID.make(now: createdAt)
        // Where the schedule starts, and its first run when that is due within the horizon
        // (loaded by Ingest itself, so a 10 s delay does not wait for a planner tick).
        guard let load = FirstLoad.plan(plan.schedule, timerID: id, startingAt: createdAt, horizon: config.horizon.seconds)
        else { throw .invalid("schedule", "never fires") }
        var parent: UUID?
        if !request.afterTimerID.isEmpty {
            guard let parentID = TimerID.parse(request.afterTimerID) else {
                throw .invalid("after_timer_id", "is not a timer id")
            }
            parent = parentID
        }
        // A dependent timer waits for its parent; it is never loaded at create time.
        let (state, cursor, run) = parent == nil ? (load.state, load.cursor, load.run) : (.waiting, load.first, nil)
        var newTimer = NewTimer(
            id: id, tenant: tenant, shard: ShardMap.shard(of: id, count: config.namespace.shardCount), state: state, kind: plan.kind,
            recurring: plan.schedule.isRecurring, schedule: plan.scheduleBytes, nextFireAt: cursor.fireAt,
            nextNominalAt: cursor.nominal, occurrence: cursor.number, armedRun: run,
            queue: request.queue, payload: [UInt8](request.payload), priority: plan.priority.rawValue,
            labelsJSON: plan.labelsJSON,
            retryPolicy: request.hasRetryPolicy ? try? request.retryPolicy.serializedBytes() : nil,
            idempotencyKey: request.idempotencyKey.isEmpty ? nil : request.idempotencyKey,
            requestHash: RequestFingerprint.of(request), afterTimerID: parent)
        newTimer.startedCursor = (load.first.fireAt, load.first.nominal)
        newTimer.misfirePolicy = plan.misfirePolicy
        newTimer.catchupWindowMs = plan.catchupWindowMs
        newTimer.notifySuccess = request.notifySuccess

        let outcome: CreateOutcome
        do {
            try await usage.admit(tenant: tenant, payloadBytes: request.payload.count)
            // A dependent timer reads its parent in its own transaction; the rest are group-committed.
            outcome = parent == nil ? try await creates.create(newTimer) : try await store.create(newTimer)
        } catch let error as SundialError {
            throw error
        } catch {
            throw storeFailure(error, "create")
        }
        var response = Sundial_V1_CreateTimerResponse()
        switch outcome {
        case .created(let stored):
            usage.created(tenant: tenant, payloadBytes: stored.payload.count)
            // A group-committed create's run is already in JetStream (CreateBatcher); a
            // dependent timer arms none (it waits for its parent).
            response.timer = TimerMapping.proto(stored)
            response.created = true
        case .existing(let stored):
            // A retry of a create that succeeded. If that attempt died between commit and
            // publish, the Planner's rescue pass republishes its armed run.
            response.timer = TimerMapping.proto(stored)
            response.created = false
        case .keyConflict:
            throw SundialError(
                .conflict, "idempotency_key was already used for a different request",
                violations: [("idempotency_key", "reused with different request fields")])
        case .parentNotFound:
            throw SundialError(
                .notFound, "after_timer_id \(request.afterTimerID) not found",
                violations: [("after_timer_id", "no such timer for this tenant")])
        case .parentEnded(let state):
            throw SundialError(
                .conflict, "after_timer_id names a timer that is \(state.rawValue); this timer would never start",
                violations: [("after_timer_id", "parent is \(state.rawValue)")])
        }
        return response
    }

    /// Publishes armed runs of one timer as JetStream scheduled messages, in one batch. If
    /// JetStream is unreachable the runs are still durable (armed in Postgres); the Planner's
    /// rescue pass republishes overdue armed runs, so the request still succeeds.
    func publish(_ runs: [ArmedRun], of stored: StoredTimer) async {
        await Self.publish(runs.map { ($0, stored) }, jetStream: jetStream, namespace: config.namespace, logger: logger)
    }

    /// Runs of any timers in one batch (one thread hop, all acks awaited together).
    static func publish(
        _ runs: [(ArmedRun, StoredTimer)], jetStream: JetStreamContext, namespace: SundialNamespace, logger: Logger
    ) async {
        guard !runs.isEmpty else { return }
        func failed(_ stored: StoredTimer, _ error: any Error) {
            logger.error("loading timer \(stored.id) into JetStream failed; the planner will rescue it: \(error)")
        }
        var loading: [(StoredTimer, NATSOutgoingMessage)] = []
        for (run, stored) in runs {
            let fire = ScheduledFire(
                tenant: stored.tenant, timerID: stored.id, shard: stored.shard, version: stored.version,
                dueAt: run.dueAt, occurrence: run.occurrence, attempt: run.attempt, queue: stored.queue,
                payload: stored.payload, priority: stored.priority)
            do {
                loading.append((stored, try fire.scheduleMessage(namespace)))
            } catch {
                failed(stored, error)
            }
        }
        for ((stored, _), result) in zip(loading, await jetStream.publish(batch: loading.map(\.1))) {
            if case .failure(let error) = result { failed(stored, error) }
        }
    }

    /// Removes pending schedules after a cancel (`runs` nil: all of the timer's) or an update
    /// (only the retired runs'). Best effort: a fire that still happens is dropped by the
    /// Dispatcher's compare-and-set. Many retired runs (a fast recurring timer) are left to
    /// that drop rather than purged one request each.
    func purgeSchedules(of stored: StoredTimer, runs: [FireKey]?) async {
        let namespace = config.namespace
        let id = TimerID.text(stored.id)
        let subjects = runs.map {
            $0.count > 16 ? [] : $0.map {
                namespace.schedule(shard: stored.shard, timerID: id, occurrence: $0.occurrence, attempt: $0.attempt)
            }
        } ?? [namespace.schedules(shard: stored.shard, timerID: id)]
        for subject in subjects {
            do {
                try await connection.purge(stream: namespace.fireStream(shard: stored.shard), subject: subject)
            } catch {
                logger.warning("purging \(subject) failed (its fire will be dropped): \(error)")
            }
        }
    }

    struct CreatePlan {
        var schedule: TimerSchedule
        var scheduleBytes: [UInt8]
        var kind: String
        var firstFire: Date
        var priority: Sundial_V1_Priority
        var labelsJSON: String
        var misfirePolicy: MisfirePolicy
        var catchupWindowMs: Int64
    }

    func validate(_ request: Sundial_V1_CreateTimerRequest, createdAt: Date) throws(SundialError) -> CreatePlan {
        var violations: [(field: String, reason: String)] = []
        if !SubjectToken.isValidQueue(request.queue) {
            violations.append(("queue", request.queue.isEmpty
                ? "is required"
                : "must be 1–128 characters of [A-Za-z0-9_-], optionally dot-separated"))
        }
        if request.payload.count > config.maxPayloadBytes {
            violations.append(("payload", "is \(request.payload.count) bytes; the limit is \(config.maxPayloadBytes) (send large data by reference)"))
        }
        if request.idempotencyKey.utf8.count > config.maxIdempotencyKeyBytes {
            violations.append(("idempotency_key", "is longer than \(config.maxIdempotencyKeyBytes) bytes"))
        }
        if request.idempotencyKey.utf8.contains(0) {
            violations.append(("idempotency_key", "must not contain NUL characters"))
        }
        violations += labelViolations(request.labels)
        let priority: Sundial_V1_Priority
        switch request.priority {
        case .unspecified, .normal: priority = .normal
        case .high: priority = .high
        case .low: priority = .low
        case .UNRECOGNIZED(let raw):
            priority = .normal
            violations.append(("priority", "unknown value \(raw)"))
        }
        if request.hasRetryPolicy {
            let policy = request.retryPolicy
            if policy.maxAttempts > RetryBackoff.mostAttempts {
                violations.append(("retry_policy.max_attempts", "must be at most \(RetryBackoff.mostAttempts)"))
            }
            let longest = RetryBackoff.longestBackoff.components.seconds
            for (field, value) in [("initial_backoff", policy.initialBackoff), ("max_backoff", policy.maxBackoff)] {
                if value.seconds < 0 || value.nanos < 0 || value.nanos > 999_999_999 {
                    violations.append(("retry_policy.\(field)", "must be a non-negative duration"))
                } else if value.seconds > longest || (value.seconds == longest && value.nanos > 0) {
                    violations.append(("retry_policy.\(field)", "must be at most \(longest / 86_400) days"))
                }
            }
        }
        let misfire = Self.misfirePolicy(request.misfirePolicy, &violations)
        var catchupWindowMs: Int64 = 0
        if request.hasCatchupWindow {
            let window = request.catchupWindow
            if window.seconds < 1 || window.nanos < 0 || window.nanos > 999_999_999 {
                violations.append(("catchup_window", "must be at least 1 s (unset: no limit)"))
            } else if window.seconds > 366 * 86_400 {
                violations.append(("catchup_window", "must be at most 366 days (unset: no limit)"))
            } else {
                catchupWindowMs = window.seconds * 1000 + Int64(window.nanos / 1_000_000)
            }
        }

        var schedule: TimerSchedule?
        if !request.hasSchedule {
            violations.append(("schedule", "is required"))
        } else {
            do {
                let parsed = try TimerSchedule(proto: request.schedule)
                try parsed.validate(now: createdAt)
                schedule = parsed
            } catch {
                violations += error.violations.map { (prefixed($0.field), $0.reason) }
            }
        }
        var firstFire: Date?
        if let schedule {
            firstFire = schedule.firstFire(createdAt: createdAt)
            if firstFire == nil {
                violations.append(("schedule", "never fires"))
            } else if firstFire! > createdAt.addingTimeInterval(config.maxScheduleAhead.seconds) {
                violations.append(("schedule", "fires more than 100 years from now"))
            }
        }
        guard violations.isEmpty, let schedule, let firstFire else {
            let summary = violations.map { "\($0.field): \($0.reason)" }.joined(separator: "; ")
            throw SundialError(.invalidArgument, summary, violations: violations)
        }
        let labels = Self.labelsJSON(request.labels)
        return CreatePlan(
            schedule: schedule, scheduleBytes: (try? schedule.proto.serializedBytes()) ?? [],
            kind: TimerMapping.kindName(schedule), firstFire: firstFire, priority: priority,
            labelsJSON: labels, misfirePolicy: misfire, catchupWindowMs: catchupWindowMs)
    }

    /// The wire policy as stored; unspecified is the default (`MisfirePolicy.standard`).
    static func misfirePolicy(
        _ policy: Sundial_V1_MisfirePolicy, _ violations: inout [(field: String, reason: String)]
    ) -> MisfirePolicy {
        switch policy {
        case .unspecified: return .standard
        case .fireAll: return .fireAll
        case .fireOnce: return .fireOnce
        case .skip: return .skip
        case .UNRECOGNIZED(let raw):
            violations.append(("misfire_policy", "unknown value \(raw)"))
            return .standard
        }
    }

    private func prefixed(_ field: String) -> String {
        field.hasPrefix("schedule") ? field : "schedule.\(field)"
    }

    // MARK: Get

    public func get(tenant: String, body: [UInt8]) async throws(SundialError) -> Sundial_V1_GetTimerResponse {
        try Self.checkTenant(tenant)
        let request: Sundial_V1_GetTimerRequest = try Self.decode(body, "GetTimerRequest")
        guard let id = TimerID.parse(request.timerID) else {
            throw .invalid("timer_id", request.timerID.isEmpty ? "is required" : "is not a timer id")
        }
        let stored: StoredTimer?
        do {
            stored = try await store.get(tenant: tenant, id: id)
        } catch {
            throw storeFailure(error, "get")
        }
        // Another tenant's id is indistinguishable from a missing one.
        guard let stored else { throw SundialError(.notFound, "timer \(request.timerID) not found") }
        var response = Sundial_V1_GetTimerResponse()
        response.timer = TimerMapping.proto(stored)
        return response
    }

    // MARK: shared

    static func checkTenant(_ tenant: String) throws(SundialError) {
        guard SubjectToken.isValidTenant(tenant) else {
            throw .invalid("tenant", "subject tenant token must be 1–64 characters of [A-Za-z0-9_-]")
        }
    }

    static func decode<M: SwiftProtobuf.Message>(_ body: [UInt8], _ name: String) throws(SundialError) -> M {
        do {
            return try M(serializedBytes: body)
        } catch {
            throw SundialError(.invalidArgument, "malformed \(name): \(error)")
        }
    }

    func storeFailure(_ error: any Error, _ operation: String) -> SundialError {
        if error is CancellationError {
            // Graceful shutdown cancelled the request before it was applied: retryable.
            return SundialError(.unavailable, "service shutting down; retry")
        }
        if let pg = error as? PostgresError, pg.isConnectionFailure {
            logger.warning("\(operation): database unavailable: \(pg)")
            return SundialError(.unavailable, "storage temporarily unavailable; retry")
        }
        logger.error("\(operation) failed: \(error)")
        return SundialError(.internal, "internal error")
    }
}

/// A fingerprint of a create request (deterministic protobuf encoding, 128-bit FNV-1a), so
/// a retry with the same idempotency key is told apart from a different request reusing it.
enum RequestFingerprint {
    static func of(_ request: Sundial_V1_CreateTimerRequest) -> [UInt8] {
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        let bytes: [UInt8] = (try? request.serializedBytes(options: options)) ?? []
        var low: UInt64 = 0xcbf2_9ce4_8422_2325
        var high: UInt64 = 0x6c62_272e_07bb_0142
        for byte in bytes {
            low = (low ^ UInt64(byte)) &* 0x100_0000_01b3
            high = (high ^ UInt64(byte)) &* 0x100_0000_01b3 &+ 0x9e37_79b9
        }
        return withUnsafeBytes(of: (low.bigEndian, high.bigEndian)) { Array($0) }
    }
}
