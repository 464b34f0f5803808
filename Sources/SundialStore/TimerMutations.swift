import Foundation
import SundialPostgres

/// How an update or cancel ended.
public enum MutationOutcome: Sendable {
    /// Applied. `retired`: armed runs taken out of play (occurrence, attempt) whose schedules
    /// should be purged; `armed`: the run an update armed for its new first occurrence.
    case applied(StoredTimer, retired: [RunKey], armed: ArmedRun? = nil)
    case notFound
    /// `expected_version` did not match.
    case versionMismatch(StoredTimer)
    /// A one-shot timer whose occurrence a Dispatcher already claimed or forwarded: the
    /// request lost the race with the fire.
    case alreadyFired(StoredTimer)
    /// The timer is in a final state (succeeded, dead, completed, or already cancelled).
    case finished(StoredTimer)
}

/// A new definition for an updated timer, computed by the caller (Ingest) from the current row.
public struct TimerRewrite: Sendable {
    public var state: StoredTimerState
    public var nextFireAt: Date
    public var nextNominalAt: Date
    public var nextOccurrence: Int64
    public var schedule: [UInt8]
    public var kind: String
    public var recurring: Bool
    public var payload: [UInt8]
    public var priority: Int
    public var labelsJSON: String
    /// When Ingest loads the new first occurrence itself (near-term).
    public var armedRun: ArmedRun?

    public init(
        state: StoredTimerState, nextFireAt: Date, nextNominalAt: Date, nextOccurrence: Int64, schedule: [UInt8],
        kind: String, recurring: Bool, payload: [UInt8], priority: Int, labelsJSON: String, armedRun: ArmedRun?
    ) {
        self.recurring = recurring
        self.state = state
        self.nextFireAt = nextFireAt
        self.nextNominalAt = nextNominalAt
        self.nextOccurrence = nextOccurrence
        self.schedule = schedule
        self.kind = kind
        self.payload = payload
        self.priority = priority
        self.labelsJSON = labelsJSON
        self.armedRun = armedRun
    }
}

/// A run within its timer.
public struct RunKey: Sendable, Hashable {
    public var occurrence: Int64
    public var attempt: Int
}

/// Thrown inside a transaction to roll it back with a definite outcome.
private struct Rollback: Error {
    let outcome: MutationOutcome
}

extension TimerStore {
    /// Cancels a timer. Lock order makes the race with a Dispatcher exact: armed runs are
    /// retired first (row locks; a claim in progress is waited for), then a one-shot whose
    /// run was claimed meanwhile rolls back as `alreadyFired`. A committed cancel therefore
    /// means no later claim can succeed: the Dispatcher's compare-and-set needs 'armed'.
    public func cancel(tenant: String, id: UUID, expectedVersion: Int64?) async throws -> MutationOutcome {
        try await mutate(tenant: tenant, id: id, expectedVersion: expectedVersion, retireAs: "cancelled") {
            timer, retired, session in
            guard let row = try session.execute(TimerQueries.cancelTimer, [.uuid(timer.id)]).first else {
                throw Rollback(outcome: .notFound)
            }
            // Documented rule: children waiting for a cancelled parent are cancelled too.
            try session.execute(TimerQueries.cancelWaitingChildren, [.uuid(timer.id)])
            return .applied(try StoredTimer(row: row), retired: retired)
        }
    }

    /// Updates a timer: armed runs of the old version are superseded (their fires are
    /// dropped by the Dispatcher's version check), then `rewrite` gives the new definition,
    /// starting at occurrence number `next` (numbers never repeat, so run keys and
    /// `Nats-Msg-Id`s stay unique).
    public func update(
        tenant: String, id: UUID, expectedVersion: Int64?,
        rewrite: @escaping @Sendable (_ current: StoredTimer, _ nextOccurrence: Int64) throws -> TimerRewrite
    ) async throws -> MutationOutcome {
        try await mutate(tenant: tenant, id: id, expectedVersion: expectedVersion, retireAs: "superseded") {
            timer, retired, session in
            let inFlight = try session.execute(TimerQueries.inFlightRuns, [.uuid(timer.id)])[0]
            let highest = max(retired.map(\.occurrence).max() ?? -1, try inFlight.int64("max_occurrence") ?? -1)
            let next = max(timer.occurrence, highest + 1)
            let new = try rewrite(timer, next)
            guard let row = try session.execute(
                TimerQueries.rewriteTimer,
                [
                    .uuid(timer.id), .text(new.state.rawValue), .timestamp(new.nextFireAt), .timestamp(new.nextNominalAt),
                    .int64(new.nextOccurrence), .bytes(new.schedule), .text(new.kind), .bytes(new.payload),
                    .int(new.priority), .json(new.labelsJSON), .bool(new.recurring),
                ]
            ).first else { throw Rollback(outcome: .notFound) }
            let updated = try StoredTimer(row: row)
            if let run = new.armedRun { try Self.insertArmedRun(run, of: updated, session) }
            return .applied(updated, retired: retired, armed: new.armedRun)
        }
    }

    private func mutate(
        tenant: String, id: UUID, expectedVersion: Int64?, retireAs: String,
        apply: @escaping @Sendable (StoredTimer, [RunKey], PostgresSession) throws -> MutationOutcome
    ) async throws -> MutationOutcome {
        do {
            return try await pool.transaction { session in
                guard let row = try session.execute(TimerQueries.selectTimerForUpdate, [.text(tenant), .uuid(id)]).first
                else { throw Rollback(outcome: .notFound) }
                let timer = try StoredTimer(row: row)
                if let expectedVersion, expectedVersion != timer.version {
                    throw Rollback(outcome: .versionMismatch(timer))
                }
                switch timer.state {
                case .succeeded, .dead, .cancelled:
                    throw Rollback(outcome: .finished(timer))
                case .dispatched:
                    throw Rollback(outcome: .alreadyFired(timer))
                case .scheduled, .armed, .retrying, .waiting, .completed:
                    break
                }
                let retired = try session.execute(TimerQueries.retireArmedRuns, [.uuid(timer.id), .text(retireAs)])
                    .map { RunKey(occurrence: try $0.int64("occurrence")!, attempt: try $0.int("attempt")!) }
                // A recurring timer is `completed` as soon as its last occurrence is loaded; until
                // those armed runs fire it can still be cancelled or updated. Nothing armed: finished.
                if timer.state == .completed && retired.isEmpty { throw Rollback(outcome: .finished(timer)) }
                if !timer.recurring {
                    let inFlight = try session.execute(TimerQueries.inFlightRuns, [.uuid(timer.id)])[0]
                    if (try inFlight.int("n") ?? 0) > 0 { throw Rollback(outcome: .alreadyFired(timer)) }
                }
                return try apply(timer, retired, session)
            }
        } catch let rollback as Rollback {
            return rollback.outcome
        }
    }
}
