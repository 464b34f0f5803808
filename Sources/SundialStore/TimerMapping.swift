import Foundation
import SundialContract
import SundialCore
import SundialProto
import SundialSchedule

/// Stored rows ↔ wire messages.
public enum TimerMapping {
    public static func proto(_ stored: StoredTimer) -> Sundial_V1_Timer {
        var timer = Sundial_V1_Timer()
        timer.id = TimerID.text(stored.id)
        timer.tenant = stored.tenant
        timer.state = state(stored.state)
        if let schedule = try? Sundial_V1_Schedule(serializedBytes: stored.schedule) { timer.schedule = schedule }
        timer.queue = stored.queue
        timer.payload = Data(stored.payload)
        if let next = stored.nextFireAt, stored.state == .scheduled || stored.state == .armed || stored.state == .retrying {
            // For a recurring timer the cursor is the next occurrence not yet loaded; an
            // earlier one may be armed (see History).
            timer.nextFireAt = Google_Protobuf_Timestamp(date: next)
        }
        timer.version = UInt64(stored.version)
        timer.attempts = UInt32(stored.attempts)
        timer.lastError = stored.lastError ?? ""
        timer.priority = Sundial_V1_Priority(rawValue: stored.priority) ?? .normal
        if let data = stored.labelsJSON.data(using: .utf8),
            let labels = try? JSONSerialization.jsonObject(with: data) as? [String: String]
        {
            timer.labels = labels
        }
        if let policy = stored.retryPolicy, let decoded = try? Sundial_V1_RetryPolicy(serializedBytes: policy) {
            timer.retryPolicy = decoded
        }
        timer.createdAt = Google_Protobuf_Timestamp(date: stored.createdAt)
        timer.updatedAt = Google_Protobuf_Timestamp(date: stored.updatedAt)
        timer.idempotencyKey = stored.idempotencyKey ?? ""
        timer.occurrencesFired = UInt64(stored.occurrencesFired)
        timer.afterTimerID = stored.afterTimerID.map(TimerID.text) ?? ""
        timer.misfirePolicy = misfirePolicy(stored.misfirePolicy)
        if let window = stored.catchupWindow { timer.catchupWindow = Google_Protobuf_Duration(rounding: window) }
        timer.occurrencesSkipped = UInt64(max(0, stored.occurrencesSkipped))
        timer.notifySuccess = stored.notifySuccess
        return timer
    }

    public static func state(_ state: StoredTimerState) -> Sundial_V1_TimerState {
        switch state {
        case .scheduled: return .scheduled
        case .armed: return .armed
        case .dispatched: return .dispatched
        case .succeeded: return .succeeded
        case .retrying: return .retrying
        case .dead: return .dead
        case .cancelled: return .cancelled
        case .completed: return .completed
        case .waiting: return .waiting
        case .paused: return .paused
        }
    }

    public static func misfirePolicy(_ policy: MisfirePolicy) -> Sundial_V1_MisfirePolicy {
        switch policy {
        case .fireAll: return .fireAll
        case .fireOnce: return .fireOnce
        case .skip: return .skip
        }
    }

    public static func storedState(_ state: Sundial_V1_TimerState) -> StoredTimerState? {
        switch state {
        case .scheduled: return .scheduled
        case .armed: return .armed
        case .dispatched: return .dispatched
        case .succeeded: return .succeeded
        case .retrying: return .retrying
        case .dead: return .dead
        case .cancelled: return .cancelled
        case .completed: return .completed
        case .waiting: return .waiting
        case .paused: return .paused
        default: return nil
        }
    }

    public static func proto(_ run: StoredRun) -> Sundial_V1_TimerRun {
        var proto = Sundial_V1_TimerRun()
        proto.occurrence = UInt64(max(0, run.occurrence))
        proto.attempt = UInt32(run.attempt)
        proto.version = UInt64(run.version)
        proto.scheduledAt = Google_Protobuf_Timestamp(date: run.scheduledAt)
        if let fired = run.firedAt { proto.firedAt = Google_Protobuf_Timestamp(date: fired) }
        if let dispatched = run.dispatchedAt { proto.dispatchedAt = Google_Protobuf_Timestamp(date: dispatched) }
        if let finished = run.finishedAt { proto.finishedAt = Google_Protobuf_Timestamp(date: finished) }
        proto.outcome = run.outcome.rawValue
        proto.error = run.error ?? ""
        return proto
    }

    /// The `timers.kind` column value.
    public static func kindName(_ schedule: TimerSchedule) -> String {
        switch schedule.kind {
        case .delay: return "delay"
        case .at: return "at"
        case .weekdays: return "weekdays"
        case .date: return "date"
        case .cron: return "cron"
        case .every: return "every"
        }
    }
}

extension StoredTimer {
    /// The stored schedule, decoded; nil when it no longer decodes or evaluates (a time zone
    /// that fails to load, say).
    var decodedSchedule: TimerSchedule? {
        try? TimerSchedule(proto: Sundial_V1_Schedule(serializedBytes: schedule))
    }
}
