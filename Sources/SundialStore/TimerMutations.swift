import Foundation
import SundialCore
import SundialSchedule
import SundialPostgres

/// How an update or cancel ended.
public enum MutationOutcome: Sendable {
    /// Applied. `retired`: armed runs taken out of play (occurrence, attempt) whose schedules
    /// should be purged; `armed`: runs to publish — the run an update armed for its new first
    /// occurrence, or the re-versioned runs of an update that kept the schedule.
    case applied(StoredTimer, retired: [FireKey], armed: [ArmedRun] = [])
    case notFound
    /// `expected_version` did not match.
    case versionMismatch(StoredTimer)
    /// A one-shot timer whose occurrence a Dispatcher already claimed or forwarded: the
    /// request lost the race with the fire.
    case alreadyFired(StoredTimer)
    /// The timer is in a final state (succeeded, dead, completed, or already cancelled).
    case finished(StoredTimer)
    /// Not possible in the timer's state (e.g. pausing a timer that waits for its parent).
    case refused(StoredTimer, reason: String)
}

/// What an update changes (checked by Ingest); nil keeps the current value.
public struct TimerChange: Sendable {
    /// A new schedule: it starts at `at`, numbered past every earlier occurrence. nil keeps
    /// the schedule, its cursor and its armed runs (moved to the new version).
    public var schedule: TimerSchedule?
    public var scheduleBytes: [UInt8]
    public var payload: [UInt8]?
    public var priority: Int?
    public var labelsJSON: String?
    /// When the update is made.
    public var at: Date
    /// The load horizon: a new schedule's first occurrence due within it is armed at once.
    public var horizon: TimeInterval

    public init(
        schedule: TimerSchedule?, scheduleBytes: [UInt8], payload: [UInt8]?, priority: Int?, labelsJSON: String?,
        at: Date, horizon: TimeInterval
    ) {
        self.schedule = schedule
        self.scheduleBytes = scheduleBytes
        self.payload = payload
        self.priority = priority
        self.labelsJSON = labelsJSON
        self.at = at
        self.horizon = horizon
    }
}

/// A timer's new definition, written by an update.
struct TimerRewrite: Sendable {
    var state: StoredTimerState
    /// A paused timer's state to return to (nil unless it stays paused).
    var pausedState: StoredTimerState?
    var nextFireAt: Date
    var nextNominalAt: Date
    var nextOccurrence: Int64
    var schedule: [UInt8]
    var kind: String
    var recurring: Bool
    var payload: [UInt8]
    var priority: Int
    var labelsJSON: String
    /// The new first occurrence's run when it is due within the horizon.
    var armedRun: ArmedRun?

    /// `change` applied to `current`; a new schedule starts at occurrence `next`.
    init(_ change: TimerChange, of current: StoredTimer, next: Int64) {
        payload = change.payload ?? current.payload
        priority = change.priority ?? current.priority
        labelsJSON = change.labelsJSON ?? current.labelsJSON
        pausedState = current.state == .paused ? current.pausedState : nil
        guard let schedule = change.schedule else {
            // Same schedule: same cursor and occurrences; only the fields change.
            state = current.state
            nextFireAt = current.nextFireAt ?? change.at
            nextNominalAt = current.nextNominalAt ?? current.nextFireAt ?? change.at
            nextOccurrence = current.occurrence
            self.schedule = current.schedule
            kind = current.kind
            recurring = current.recurring
            armedRun = nil
            return
        }
        self.schedule = change.scheduleBytes
        kind = TimerMapping.kindName(schedule)
        recurring = schedule.isRecurring
        if let load = FirstLoad.plan(schedule, timerID: current.id, startingAt: change.at, number: next, horizon: change.horizon) {
            state = load.state
            nextFireAt = load.cursor.fireAt
            nextNominalAt = load.cursor.nominal
            nextOccurrence = load.cursor.number
            armedRun = load.run
        } else {
            // Never fires from now on: nothing to load.
            state = .completed
            nextFireAt = change.at
            nextNominalAt = change.at
            nextOccurrence = next
            armedRun = nil
        }
        if current.state == .paused {
            // A paused timer's new schedule waits for the resume: nothing is armed, the cursor
            // is its first occurrence, and the Planner loads it once resumed.
            if let load = FirstLoad.plan(schedule, timerID: current.id, startingAt: change.at, number: next, horizon: 0) {
                pausedState = .scheduled
                nextFireAt = load.first.fireAt
                nextNominalAt = load.first.nominal
                nextOccurrence = load.first.number
            } else {
                pausedState = .completed
            }
            state = .paused
            armedRun = nil
        }
    }
}

/// What a mutation does to the timer's armed runs before anything else.
enum ArmedRunsMode {
    /// Take them out of play with this outcome (`cancelled`, `superseded` or `paused`).
    case retire(RunOutcome)
    /// Move them to the timer's next version (the update keeps the schedule).
    case reversion
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
        try await mutate(tenant: tenant, id: id, expectedVersion: expectedVersion, mode: .retire(.cancelled)) {
            timer, retired, _, session in
            guard let row = try session.execute(TimerQueries.cancelTimer, ["id": .uuid(timer.id)]).first else {
                throw Rollback(outcome: .notFound)
            }
            // Documented rule: children waiting for a cancelled parent are cancelled too.
            try session.execute(TimerQueries.cancelWaitingChildren, ["parent": .uuid(timer.id)])
            return .applied(try StoredTimer(row: row), retired: retired)
        }
    }

    /// Updates a timer: armed runs of the old version are superseded (their fires are
    /// dropped by the Dispatcher's version check) and the new schedule starts at the next
    /// unused occurrence number (numbers never repeat, so run keys and `Nats-Msg-Id`s stay
    /// unique). Without a new schedule the armed runs stay, moved to the new version.
    public func update(tenant: String, id: UUID, expectedVersion: Int64?, change: TimerChange) async throws
        -> MutationOutcome
    {
        let keepSchedule = change.schedule == nil
        return try await mutate(
            tenant: tenant, id: id, expectedVersion: expectedVersion,
            mode: keepSchedule ? .reversion : .retire(.superseded)
        ) { timer, retired, rearmed, session in
            if keepSchedule {
                // Same schedule, new fields: the armed runs stay (same occurrences, same due
                // times) at the new version; the caller republishes them.
                let updated = try Self.store(TimerRewrite(change, of: timer, next: timer.occurrence), of: timer, session)
                return .applied(updated, retired: [], armed: rearmed)
            }
            let inFlight = try session.execute(TimerQueries.inFlightRuns, ["timer_id": .uuid(timer.id)])[0]
            let highest = max(retired.map(\.occurrence).max() ?? -1, try inFlight.int64("max_occurrence") ?? -1)
            let new = TimerRewrite(change, of: timer, next: max(timer.occurrence, highest + 1))
            let updated = try Self.store(new, of: timer, session)
            if let run = new.armedRun { try Self.insertArmedRun(run, of: updated, session) }
            return .applied(updated, retired: retired, armed: new.armedRun.map { [$0] } ?? [])
        }
    }

    /// Pauses a timer: its armed runs become `paused` under the same lock order as a cancel,
    /// so an acknowledged pause means no later claim succeeds (the claim needs `armed`); a
    /// one-shot already claimed or forwarded rolls back as `alreadyFired`. The state to return
    /// to is kept in `paused_state`. Pausing a paused timer changes nothing.
    public func pause(tenant: String, id: UUID, expectedVersion: Int64?) async throws -> MutationOutcome {
        try await mutate(tenant: tenant, id: id, expectedVersion: expectedVersion, mode: .retire(.paused)) {
            timer, retired, _, session in
            switch timer.state {
            case .paused:
                return .applied(timer, retired: [])
            case .waiting:
                throw Rollback(outcome: .refused(timer, reason: "waits for its parent timer; pause the parent instead"))
            default:
                guard let row = try session.execute(
                    TimerQueries.pauseTimer, ["id": .uuid(timer.id), "paused_state": .text(timer.state.rawValue)]
                ).first else { throw Rollback(outcome: .notFound) }
                return .applied(try StoredTimer(row: row), retired: retired)
            }
        }
    }

    /// Resumes a paused timer at `now`: it returns to the state it was paused in (version + 1).
    /// Its paused runs not yet due are armed again at their times; those it missed go by its
    /// misfire policy (`MisfireRule.resume`; a one-shot's always fires, at once when its time
    /// has passed). The runs armed again are returned to publish. Resuming a timer that is not
    /// paused changes nothing.
    public func resume(
        tenant: String, id: UUID, expectedVersion: Int64?, now: Date = Date(),
        misfireThreshold: Duration = MisfireRule.defaultThreshold
    ) async throws -> MutationOutcome
    {
        do {
            return try await pool.transaction { session in
                guard let row = try session.execute(
                    TimerQueries.selectTimerForUpdate, ["tenant": .text(tenant), "id": .uuid(id)]
                ).first else { throw Rollback(outcome: .notFound) }
                let timer = try StoredTimer(row: row)
                if let expectedVersion, expectedVersion != timer.version {
                    throw Rollback(outcome: .versionMismatch(timer))
                }
                guard timer.state == .paused else { return .applied(timer, retired: []) }
                let restored = timer.pausedState ?? .scheduled
                let paused = try session.execute(TimerQueries.selectPausedRuns, ["timer_id": .uuid(id)]).map {
                    ArmedRun(
                        occurrence: try $0.required("occurrence", $0.int64), attempt: try $0.required("attempt", $0.int),
                        dueAt: try $0.required("scheduled_at", $0.date))
                }
                let rule = timer.misfire(at: now, threshold: misfireThreshold)
                let (rearm, skip): (rearm: [ArmedRun], skip: [ArmedRun]) = timer.recurring
                    ? rule.resume(
                        paused, fireAt: \.dueAt, isRetry: { $0.attempt > 1 },
                        laterMissed: restored == .scheduled && timer.nextFireAt.map(rule.isMissed) == true)
                    : (paused, [])
                let version = timer.version + 1
                if !rearm.isEmpty {
                    try session.execute(
                        TimerQueries.rearmPausedRuns,
                        [
                            "timer_id": .uuid(id), "occurrences": .int64Array(rearm.map(\.occurrence)),
                            "attempts": .intArray(rearm.map(\.attempt)), "version": .int64(version),
                        ])
                }
                if !skip.isEmpty {
                    try session.execute(
                        TimerQueries.skipPausedRuns,
                        [
                            "timer_id": .uuid(id), "occurrences": .int64Array(skip.map(\.occurrence)),
                            "attempts": .intArray(skip.map(\.attempt)),
                        ])
                }
                guard let updated = try session.execute(
                    TimerQueries.resumeTimer,
                    ["id": .uuid(id), "state": .text(restored.rawValue), "skipped": .int64(Int64(skip.count))]
                ).first else { throw Rollback(outcome: .notFound) }
                return .applied(try StoredTimer(row: updated), retired: [], armed: rearm)
            }
        } catch let rollback as Rollback {
            return rollback.outcome
        }
    }

    /// Writes a rewrite (bumping the version) and returns the updated row.
    private static func store(_ new: TimerRewrite, of timer: StoredTimer, _ session: PostgresSession) throws -> StoredTimer {
        guard let row = try session.execute(
            TimerQueries.rewriteTimer,
            [
                "id": .uuid(timer.id), "state": .text(new.state.rawValue), "next_fire_at": .timestamp(new.nextFireAt),
                "next_nominal_at": .timestamp(new.nextNominalAt), "occurrence": .int64(new.nextOccurrence),
                "schedule": .bytes(new.schedule), "kind": .text(new.kind), "payload": .bytes(new.payload),
                "priority": .int(new.priority), "labels": .json(new.labelsJSON), "recurring": .bool(new.recurring),
                "paused_state": new.pausedState.map { .text($0.rawValue) } ?? .null,
            ]
        ).first else { throw Rollback(outcome: .notFound) }
        return try StoredTimer(row: row)
    }

    private func mutate(
        tenant: String, id: UUID, expectedVersion: Int64?, mode: ArmedRunsMode,
        apply: @escaping @Sendable (StoredTimer, [FireKey], [ArmedRun], PostgresSession) throws -> MutationOutcome
    ) async throws -> MutationOutcome {
        do {
            return try await pool.transaction { session in
                guard let row = try session.execute(TimerQueries.selectTimerForUpdate, [
                    "tenant": .text(tenant), "id": .uuid(id),
                ]).first
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
                case .scheduled, .armed, .retrying, .waiting, .completed, .paused:
                    break
                }
                // The armed runs' row locks come first (see the race rules above): retired for
                // a cancel or a new schedule, moved to the next version when the schedule stays.
                var retired: [FireKey] = []
                var rearmed: [ArmedRun] = []
                switch mode {
                case .retire(let outcome):
                    retired = try session.execute(TimerQueries.retireArmedRuns, [
                        "timer_id": .uuid(timer.id), "outcome": .text(outcome.rawValue),
                    ])
                        .map { FireKey(id: timer.id, occurrence: try $0.required("occurrence", $0.int64), attempt: try $0.required("attempt", $0.int)) }
                case .reversion:
                    rearmed = try session.execute(TimerQueries.reversionArmedRuns, [
                        "timer_id": .uuid(timer.id), "version": .int64(timer.version + 1),
                    ])
                        .map { ArmedRun(occurrence: try $0.required("occurrence", $0.int64), attempt: try $0.required("attempt", $0.int), dueAt: try $0.required("scheduled_at", $0.date)) }
                }
                // A recurring timer is `completed` as soon as its last occurrence is loaded; until
                // those armed runs fire it can still be cancelled or updated. Nothing armed: finished.
                if timer.state == .completed && retired.isEmpty && rearmed.isEmpty {
                    throw Rollback(outcome: .finished(timer))
                }
                // Lost the race: a one-shot whose run a Dispatcher claimed or forwarded, or a
                // recurring timer with an occurrence being forwarded right now (a state that
                // lasts milliseconds; a retry then succeeds and stops the later occurrences).
                let inFlight = try session.execute(TimerQueries.inFlightRuns, ["timer_id": .uuid(timer.id)])[0]
                let lostRace = timer.recurring ? (try inFlight.int("claiming") ?? 0) > 0 : (try inFlight.int("n") ?? 0) > 0
                // Pausing a paused timer changes nothing, whatever is in flight.
                if case .retire(.paused) = mode, timer.state == .paused {
                } else if lostRace {
                    throw Rollback(outcome: .alreadyFired(timer))
                }
                return try apply(timer, retired, rearmed, session)
            }
        } catch let rollback as Rollback {
            return rollback.outcome
        }
    }
}
