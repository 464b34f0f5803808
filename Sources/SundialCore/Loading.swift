import Foundation
import SundialSchedule

// States and load planning shared by Ingest (create, update), the Planner (claims) and the
// store, which calls these directly inside its transactions.

/// Lifecycle states as stored in `timers.state`.
public enum StoredTimerState: String, Sendable, CaseIterable {
    case scheduled, armed, dispatched, succeeded, retrying, dead, cancelled, completed
    /// Created with `after_timer_id`: starts when the parent's job succeeds.
    case waiting
    /// Paused: fires nothing until resumed; `paused_state` keeps the state to return to.
    case paused
}

/// States of a run (`timer_runs.outcome`); the store maps them to SQL in one place.
public enum RunOutcome: String, Sendable, CaseIterable {
    /// Loaded into JetStream as a scheduled message, not yet fired.
    case armed
    /// Claimed by a Dispatcher (compare-and-set); it will be forwarded.
    case dispatching
    /// Forwarded to the work stream; awaiting the executor's result.
    case dispatched
    case succeeded
    /// Failed; a later attempt follows.
    case failed
    /// Failed with no attempts left (dead-lettered).
    case dead
    /// The timer was cancelled while this run was armed.
    case cancelled
    /// The timer was updated while this run was armed (an old version).
    case superseded
    /// The timer was paused while this run was armed: resumed, it is armed again (or skipped).
    case paused
    /// A missed occurrence its timer's misfire policy skipped on resume.
    case skipped

    /// Runs that may still fire or report: a timer with one is not finished.
    public static let open: [RunOutcome] = [.armed, .dispatching, .dispatched]
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

/// A run to store as armed: one occurrence (and attempt) loaded into JetStream.
public struct ArmedRun: Sendable, Hashable {
    public var occurrence: Int64
    public var attempt: Int
    public var dueAt: Date
    /// Attempts of this occurrence given back before this one (see `RetryBackoff.verdict`).
    public var refunded: Int
    /// Attempts made before the occurrence's latest redrive (0: never redriven): the retry
    /// policy counts the attempts after it.
    public var attemptBase: Int

    /// The highest attempt number a job result may carry; a redrive never arms a round that
    /// could pass it.
    public static let maximumAttempt = 100_000

    public init(occurrence: Int64, attempt: Int = 1, dueAt: Date, refunded: Int = 0, attemptBase: Int = 0) {
        self.occurrence = occurrence
        self.attempt = attempt
        self.dueAt = dueAt
        self.refunded = refunded
        self.attemptBase = attemptBase
    }
}

/// What loading one due timer does: the run it arms and where its cursor moves.
public struct LoadStep: Sendable {
    /// The runs to arm: the current occurrence, and for a recurring timer every following
    /// one already due before the load's horizon (so a fast timer cannot fall behind).
    public var runs: [ArmedRun]
    public var nextState: StoredTimerState
    public var nextFireAt: Date
    public var nextNominalAt: Date
    public var nextOccurrence: Int64
    /// Set when the timer cannot go on (its stored schedule no longer evaluates, e.g. a
    /// time zone that fails to load): it ends `dead` with this as `last_error`.
    public var failure: String?
    /// Missed occurrences the misfire policy skipped (their numbers are used up).
    public var skipped = 0

    /// The first run (Ingest and updates load a single occurrence, never skipped).
    public var run: ArmedRun { runs[0] }

    /// Missed occurrences skipped per load (a Planner's claim, all its timers together) at
    /// most: a timer that missed more (a fast one after a long outage) goes on skipping at the
    /// next load, so a load stays bounded.
    public static let maximumSkipsPerLoad = 10_000

    /// Loading `current`: arms it and moves the cursor on — a recurring timer to its next
    /// occurrence (still `scheduled`, loaded again when that comes within the horizon), a
    /// one-shot to `armed`, a recurring timer without further occurrences to `completed`.
    /// With `through`, also arms following occurrences due before it, up to `limit` runs.
    ///
    /// With `misfire`, a recurring timer's missed occurrences (see `MisfirePolicy`) are
    /// skipped as its policy says before the first one is armed; the step then may arm
    /// nothing (everything it reached was skipped).
    public static func loading(
        _ current: OccurrenceStepper.Occurrence, recurring: Bool, schedule: TimerSchedule?, timerID: UUID,
        through horizon: Date? = nil, limit: Int = 1, misfire: MisfireRule? = nil,
        maximumSkips: Int = maximumSkipsPerLoad
    ) -> LoadStep {
        var current = current
        var skipped = 0
        if recurring, let schedule, let misfire {
            let id = TimerID.text(timerID)
            while misfire.isMissed(current.fireAt) {
                let next = OccurrenceStepper.following(schedule, timerID: id, after: current)
                let keep: Bool
                switch misfire.policy {
                case .fireAll: keep = misfire.isWithinWindow(current.fireAt)
                case .fireOnce: keep = (next.map { !misfire.isMissed($0.fireAt) } ?? true) && misfire.isWithinWindow(current.fireAt)
                case .skip: keep = false
                }
                if keep { break }
                skipped += 1
                guard let next else {
                    // The schedule ended among the skipped occurrences.
                    var step = LoadStep(
                        skipping: current.number + 1, nextState: .completed, nextFireAt: current.fireAt,
                        nextNominalAt: current.nominal)
                    step.skipped = skipped
                    return step
                }
                current = next
                if skipped >= max(1, maximumSkips) {
                    var step = LoadStep(
                        skipping: current.number, nextState: .scheduled, nextFireAt: current.fireAt,
                        nextNominalAt: current.nominal)
                    step.skipped = skipped
                    return step
                }
            }
        }
        var step = loadingFrom(current, recurring: recurring, schedule: schedule, timerID: timerID, through: horizon, limit: limit)
        step.skipped = skipped
        return step
    }

    private static func loadingFrom(
        _ current: OccurrenceStepper.Occurrence, recurring: Bool, schedule: TimerSchedule?, timerID: UUID,
        through horizon: Date?, limit: Int
    ) -> LoadStep {
        var runs = [ArmedRun(occurrence: current.number, dueAt: current.fireAt)]
        var last = current
        if recurring, schedule == nil {
            // The current occurrence was computed while the schedule still evaluated: it
            // runs; nothing after it can be computed, and the timer says why.
            var step = LoadStep(
                runs: runs, nextState: .dead, nextFireAt: current.fireAt, nextNominalAt: current.nominal,
                nextOccurrence: current.number + 1)
            step.failure = "the schedule can no longer be evaluated (time zone or rule failed to load); no further occurrences"
            return step
        }
        guard recurring, let schedule else {
            return LoadStep(
                runs: runs, nextState: recurring ? .completed : .armed, nextFireAt: current.fireAt,
                nextNominalAt: current.nominal, nextOccurrence: current.number + 1)
        }
        while let next = OccurrenceStepper.following(schedule, timerID: TimerID.text(timerID), after: last) {
            guard runs.count < limit, let horizon, next.fireAt < horizon else {
                return LoadStep(
                    runs: runs, nextState: .scheduled, nextFireAt: next.fireAt, nextNominalAt: next.nominal,
                    nextOccurrence: next.number)
            }
            runs.append(ArmedRun(occurrence: next.number, dueAt: next.fireAt))
            last = next
        }
        return LoadStep(
            runs: runs, nextState: .completed, nextFireAt: last.fireAt, nextNominalAt: last.nominal,
            nextOccurrence: last.number + 1)
    }

    /// A step that arms nothing: the cursor only moves past skipped occurrences.
    init(skipping nextOccurrence: Int64, nextState: StoredTimerState, nextFireAt: Date, nextNominalAt: Date) {
        runs = []
        self.nextState = nextState
        self.nextFireAt = nextFireAt
        self.nextNominalAt = nextNominalAt
        self.nextOccurrence = nextOccurrence
    }

    public init(runs: [ArmedRun], nextState: StoredTimerState, nextFireAt: Date, nextNominalAt: Date, nextOccurrence: Int64) {
        precondition(!runs.isEmpty)
        self.runs = runs
        self.nextState = nextState
        self.nextFireAt = nextFireAt
        self.nextNominalAt = nextNominalAt
        self.nextOccurrence = nextOccurrence
    }
}

/// Where a new schedule starts — a create, or an update with a new schedule — and whether its
/// first occurrence is loaded at once (due within the horizon) rather than by a Planner.
public struct FirstLoad: Sendable, Hashable {
    public var state: StoredTimerState
    /// The timer's cursor after the load: the next occurrence not yet loaded.
    public var cursor: OccurrenceStepper.Occurrence
    /// The first occurrence itself (when a dependent timer's parent has already succeeded, it
    /// starts from here).
    public var first: OccurrenceStepper.Occurrence
    /// The run to arm now, when the first occurrence is due within the horizon.
    public var run: ArmedRun?

    /// nil when the schedule never fires (from `startingAt` on). `number` is the first
    /// occurrence's number: 0 for a create, past every earlier one for an update, so run keys
    /// and `Nats-Msg-Id`s never repeat.
    public static func plan(
        _ schedule: TimerSchedule, timerID: UUID, startingAt start: Date, number: Int64 = 0, horizon: TimeInterval
    ) -> FirstLoad? {
        guard let first = OccurrenceStepper.first(schedule, timerID: TimerID.text(timerID), createdAt: start, number: number)
        else { return nil }
        guard first.fireAt < start.addingTimeInterval(horizon) else {
            return FirstLoad(state: .scheduled, cursor: first, first: first, run: nil)
        }
        let step = LoadStep.loading(first, recurring: schedule.isRecurring, schedule: schedule, timerID: timerID)
        return FirstLoad(
            state: step.nextState,
            cursor: OccurrenceStepper.Occurrence(number: step.nextOccurrence, nominal: step.nextNominalAt, fireAt: step.nextFireAt),
            first: first, run: step.run)
    }
}
