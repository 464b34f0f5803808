import Foundation
import SundialPostgres

/// How an update or cancel ended.
public enum MutationOutcome: Sendable {
    /// Applied. `retired`: armed runs taken out of play (occurrence, attempt) whose schedules
    /// should be purged; `armed`: runs to publish — the run an update armed for its new first
    /// occurrence, or the re-versioned runs of an update that kept the schedule.
    case applied(StoredTimer, retired: [RunKey], armed: [ArmedRun] = [])
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

/// What a mutation does to the timer's armed runs before anything else.
enum ArmedRunsMode {
    /// Take them out of play with this outcome ('cancelled' or 'superseded').
    case retire(String)
    /// Move them to the timer's next version (the update keeps the schedule).
    case reversion
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
        try await mutate(tenant: tenant, id: id, expectedVersion: expectedVersion, mode: .retire("cancelled")) {
            timer, retired, _, session in
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
        tenant: String, id: UUID, expectedVersion: Int64?, keepSchedule: Bool = false,
        rewrite: @escaping @Sendable (_ current: StoredTimer, _ nextOccurrence: Int64) throws -> TimerRewrite
    ) async throws -> MutationOutcome {
        try await mutate(
            tenant: tenant, id: id, expectedVersion: expectedVersion,
            mode: keepSchedule ? .reversion : .retire("superseded")
        ) { timer, retired, rearmed, session in
            if keepSchedule {
                // Same schedule, new fields: the armed runs stay (same occurrences, same due
                // times) at the new version; the caller republishes them.
                let updated = try Self.store(rewrite(timer, timer.occurrence), of: timer, session)
                return .applied(updated, retired: [], armed: rearmed)
            }
            let inFlight = try session.execute(TimerQueries.inFlightRuns, [.uuid(timer.id)])[0]
            let highest = max(retired.map(\.occurrence).max() ?? -1, try inFlight.int64("max_occurrence") ?? -1)
            let new = try rewrite(timer, max(timer.occurrence, highest + 1))
            let updated = try Self.store(new, of: timer, session)
            if let run = new.armedRun { try Self.insertArmedRun(run, of: updated, session) }
            return .applied(updated, retired: retired, armed: new.armedRun.map { [$0] } ?? [])
        }
    }

    /// Writes a rewrite (bumping the version) and returns the updated row.
    private static func store(_ new: TimerRewrite, of timer: StoredTimer, _ session: PostgresSession) throws -> StoredTimer {
        guard let row = try session.execute(
            TimerQueries.rewriteTimer,
            [
                .uuid(timer.id), .text(new.state.rawValue), .timestamp(new.nextFireAt), .timestamp(new.nextNominalAt),
                .int64(new.nextOccurrence), .bytes(new.schedule), .text(new.kind), .bytes(new.payload),
                .int(new.priority), .json(new.labelsJSON), .bool(new.recurring),
            ]
        ).first else { throw Rollback(outcome: .notFound) }
        return try StoredTimer(row: row)
    }

    private func mutate(
        tenant: String, id: UUID, expectedVersion: Int64?, mode: ArmedRunsMode,
        apply: @escaping @Sendable (StoredTimer, [RunKey], [ArmedRun], PostgresSession) throws -> MutationOutcome
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
                // The armed runs' row locks come first (see the race rules above): retired for
                // a cancel or a new schedule, moved to the next version when the schedule stays.
                var retired: [RunKey] = []
                var rearmed: [ArmedRun] = []
                switch mode {
                case .retire(let outcome):
                    retired = try session.execute(TimerQueries.retireArmedRuns, [.uuid(timer.id), .text(outcome)])
                        .map { RunKey(occurrence: try $0.int64("occurrence")!, attempt: try $0.int("attempt")!) }
                case .reversion:
                    rearmed = try session.execute(TimerQueries.reversionArmedRuns, [.uuid(timer.id), .int64(timer.version + 1)])
                        .map { ArmedRun(occurrence: try $0.int64("occurrence")!, attempt: try $0.int("attempt")!, dueAt: try $0.date("scheduled_at")!) }
                }
                // A recurring timer is `completed` as soon as its last occurrence is loaded; until
                // those armed runs fire it can still be cancelled or updated. Nothing armed: finished.
                if timer.state == .completed && retired.isEmpty && rearmed.isEmpty {
                    throw Rollback(outcome: .finished(timer))
                }
                // Lost the race: a one-shot whose run a Dispatcher claimed or forwarded, or a
                // recurring timer with an occurrence being forwarded right now (a state that
                // lasts milliseconds; a retry then succeeds and stops the later occurrences).
                let inFlight = try session.execute(TimerQueries.inFlightRuns, [.uuid(timer.id)])[0]
                let lostRace = timer.recurring ? (try inFlight.int("claiming") ?? 0) > 0 : (try inFlight.int("n") ?? 0) > 0
                if lostRace { throw Rollback(outcome: .alreadyFired(timer)) }
                return try apply(timer, retired, rearmed, session)
            }
        } catch let rollback as Rollback {
            return rollback.outcome
        }
    }
}
