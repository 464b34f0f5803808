import Foundation
import SundialPostgres

/// Lifecycle states as stored in `timers.state`.
public enum StoredTimerState: String, Sendable, CaseIterable {
    case scheduled, armed, dispatched, succeeded, retrying, dead, cancelled, completed
}

/// A row of `timers`.
public struct StoredTimer: Sendable, Hashable {
    public var id: UUID
    public var tenant: String
    public var shard: Int
    public var state: StoredTimerState
    public var kind: String
    public var schedule: [UInt8]
    public var nextFireAt: Date?
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

    init(row: PostgresRow) throws {
        id = try row.uuid("id")!
        tenant = try row.string("tenant")!
        shard = try row.int("shard")!
        let stateText = try row.string("state")!
        guard let state = StoredTimerState(rawValue: stateText) else {
            throw PostgresError(kind: .decoding, message: "unknown timer state \(stateText)")
        }
        self.state = state
        kind = try row.string("kind")!
        schedule = try row.bytes("schedule") ?? []
        nextFireAt = try row.date("next_fire_at")
        occurrence = try row.int64("occurrence")!
        attempt = try row.int("attempt")!
        version = try row.int64("version")!
        queue = try row.string("queue")!
        payload = try row.bytes("payload") ?? []
        priority = try row.int("priority")!
        labelsJSON = try row.string("labels") ?? "{}"
        retryPolicy = try row.bytes("retry_policy")
        idempotencyKey = try row.string("idempotency_key")
        afterTimerID = try row.uuid("after_timer_id")
        attempts = try row.int("attempts")!
        occurrencesFired = try row.int64("occurrences_fired")!
        lastError = try row.string("last_error")
        createdAt = try row.date("created_at")!
        updatedAt = try row.date("updated_at")!
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
    public var schedule: [UInt8]
    public var nextFireAt: Date
    public var queue: String
    public var payload: [UInt8]
    public var priority: Int
    public var labelsJSON: String
    public var retryPolicy: [UInt8]?
    public var idempotencyKey: String?
    /// Hash of the request, to tell a retry from a different request reusing the key.
    public var requestHash: [UInt8]
    public var afterTimerID: UUID?

    public init(
        id: UUID, tenant: String, shard: Int, state: StoredTimerState, kind: String, schedule: [UInt8],
        nextFireAt: Date, queue: String, payload: [UInt8], priority: Int, labelsJSON: String,
        retryPolicy: [UInt8]?, idempotencyKey: String?, requestHash: [UInt8], afterTimerID: UUID?
    ) {
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
}

/// Everything needed to (re)publish one occurrence as a JetStream scheduled message.
public struct FireRow: Sendable, Hashable {
    public var id: UUID
    public var tenant: String
    public var shard: Int
    public var version: Int64
    public var nextFireAt: Date
    public var occurrence: Int64
    public var attempt: Int
    public var queue: String
    public var payload: [UInt8]
    public var priority: Int

    init(row: PostgresRow) throws {
        id = try row.uuid("id")!
        tenant = try row.string("tenant")!
        shard = try row.int("shard")!
        version = try row.int64("version")!
        nextFireAt = try row.date("next_fire_at")!
        occurrence = try row.int64("occurrence")!
        attempt = try row.int("attempt")!
        queue = try row.string("queue")!
        payload = try row.bytes("payload") ?? []
        priority = try row.int("priority")!
    }
}

/// Identifies one attempt of one occurrence of a timer.
public struct FireKey: Sendable, Hashable {
    public var id: UUID
    public var occurrence: Int64
    public var attempt: Int

    public init(id: UUID, occurrence: Int64, attempt: Int) {
        self.id = id
        self.occurrence = occurrence
        self.attempt = attempt
    }
}

/// The Dispatcher's view of a fired timer.
public struct DispatchStatus: Sendable, Hashable {
    public var version: Int64
    public var state: StoredTimerState
    /// This (occurrence, attempt) already has a run row: it was forwarded before.
    public var alreadyDispatched: Bool
}

/// A forwarded job, for the history.
public struct DispatchRecord: Sendable {
    public var key: FireKey
    public var version: Int64
    public var scheduledAt: Date
    public var firedAt: Date
    public var dispatchedAt: Date

    public init(key: FireKey, version: Int64, scheduledAt: Date, firedAt: Date, dispatchedAt: Date) {
        self.key = key
        self.version = version
        self.scheduledAt = scheduledAt
        self.firedAt = firedAt
        self.dispatchedAt = dispatchedAt
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
    public var outcome: String
    public var error: String?
}

/// Timer persistence. All SQL is in `TimerQueries`; this type only binds and decodes.
public struct TimerStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// Inserts a timer, durably (the transaction commits before this returns), honouring the
    /// per-tenant idempotency key.
    public func create(_ timer: NewTimer) async throws -> CreateOutcome {
        try await pool.withSession { session in
            let inserted = try session.execute(
                TimerQueries.insertTimer,
                [
                    .uuid(timer.id), .text(timer.tenant), .int(timer.shard), .text(timer.state.rawValue),
                    .text(timer.kind), .bytes(timer.schedule), .timestamp(timer.nextFireAt),
                    .text(timer.queue), .bytes(timer.payload), .int(timer.priority),
                    .json(timer.labelsJSON), timer.retryPolicy.map { .bytes($0) } ?? .null,
                    timer.idempotencyKey.map { .text($0) } ?? .null, .bytes(timer.requestHash),
                    timer.afterTimerID.map { .uuid($0) } ?? .null,
                ])
            if let row = inserted.first { return .created(try StoredTimer(row: row)) }
            // Conflict on the idempotency key: return the first timer.
            guard let key = timer.idempotencyKey,
                let row = try session.execute(
                    TimerQueries.selectByIdempotencyKey, [.text(timer.tenant), .text(key)]
                ).first
            else {
                throw PostgresError(kind: .query, message: "insert returned no row and no key conflict")
            }
            let existing = try StoredTimer(row: row)
            return try row.bytes("request_hash") == timer.requestHash
                ? .existing(existing) : .keyConflict(existing)
        }
    }

    public func get(tenant: String, id: UUID) async throws -> StoredTimer? {
        try await pool.withSession { session in
            try session.execute(TimerQueries.selectTimer, [.text(tenant), .uuid(id)]).first
                .map(StoredTimer.init(row:))
        }
    }

    public func runs(timerID: UUID) async throws -> [StoredRun] {
        try await pool.withSession { session in
            try session.execute(TimerQueries.selectRuns, [.uuid(timerID)]).map { row in
                StoredRun(
                    occurrence: try row.int64("occurrence")!, attempt: try row.int("attempt")!,
                    version: try row.int64("version")!, scheduledAt: try row.date("scheduled_at")!,
                    firedAt: try row.date("fired_at"), dispatchedAt: try row.date("dispatched_at"),
                    finishedAt: try row.date("finished_at"), outcome: try row.string("outcome")!,
                    error: try row.string("error"))
            }
        }
    }

    /// Claims up to `limit` timers of `lease.shard` due before `dueBefore`, marking them armed.
    /// Returns nothing if the lease was lost (fencing).
    public func claimDue(lease: ShardLease, owner: String, dueBefore: Date, limit: Int) async throws -> [FireRow] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.claimDue,
                [.int(lease.shard), .timestamp(dueBefore), .int(limit), .text(owner), .int64(lease.epoch)]
            ).map(FireRow.init(row:))
        }
    }

    /// Armed timers of `shard` due after `after` (exclusive, keyset on time then id).
    public func armedFuture(shard: Int, after: Date, afterID: UUID, limit: Int) async throws -> [FireRow] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.armedFuture, [.int(shard), .timestamp(after), .uuid(afterID), .int(limit)]
            ).map(FireRow.init(row:))
        }
    }

    /// Armed timers overdue since before `overdueBefore` and not re-armed since then.
    public func rescueOverdue(shard: Int, overdueBefore: Date, limit: Int) async throws -> [FireRow] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.rescueOverdue, [.int(shard), .timestamp(overdueBefore), .int(limit)]
            ).map(FireRow.init(row:))
        }
    }

    public func dispatchStatus(_ keys: [FireKey]) async throws -> [UUID: DispatchStatus] {
        guard !keys.isEmpty else { return [:] }
        return try await pool.withSession { session in
            let rows = try session.execute(
                TimerQueries.dispatchStatus,
                [
                    .uuidArray(keys.map(\.id)), .int64Array(keys.map(\.occurrence)),
                    .intArray(keys.map(\.attempt)),
                ])
            var result: [UUID: DispatchStatus] = [:]
            for row in rows {
                guard let state = StoredTimerState(rawValue: try row.string("state") ?? "") else { continue }
                result[try row.uuid("id")!] = DispatchStatus(
                    version: try row.int64("version")!, state: state,
                    alreadyDispatched: try row.bool("dispatched") ?? false)
            }
            return result
        }
    }

    public func recordDispatches(_ records: [DispatchRecord]) async throws {
        guard !records.isEmpty else { return }
        _ = try await pool.withSession { session in
            try session.execute(
                TimerQueries.recordDispatches,
                [
                    .uuidArray(records.map(\.key.id)), .int64Array(records.map(\.key.occurrence)),
                    .intArray(records.map(\.key.attempt)), .int64Array(records.map(\.version)),
                    .timestampArray(records.map(\.scheduledAt)), .timestampArray(records.map(\.firedAt)),
                    .timestampArray(records.map(\.dispatchedAt)),
                ]
            ).affectedRows
        }
    }
}
