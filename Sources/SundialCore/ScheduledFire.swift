import Foundation
import SundialProto
import SundialSchedule

/// One occurrence/attempt of a timer, as loaded into JetStream. Ingest (near-term timers)
/// and the Planner (everything else) both publish through `scheduleMessage` (SundialMessaging),
/// so the two paths produce byte-identical schedules and a republish simply replaces.
public struct ScheduledFire: Sendable, Hashable {
    public var tenant: String
    public var timerID: UUID
    public var shard: Int
    public var version: Int64
    public var dueAt: Date
    public var occurrence: Int64
    public var attempt: Int
    public var queue: String
    public var payload: [UInt8]
    public var priority: Int

    public init(
        tenant: String, timerID: UUID, shard: Int, version: Int64, dueAt: Date, occurrence: Int64,
        attempt: Int, queue: String, payload: [UInt8], priority: Int
    ) {
        self.tenant = tenant
        self.timerID = timerID
        self.shard = shard
        self.version = version
        self.dueAt = dueAt
        self.occurrence = occurrence
        self.attempt = attempt
        self.queue = queue
        self.payload = payload
        self.priority = priority
    }

    public var envelope: Sundial_V1_FireEnvelope {
        var envelope = Sundial_V1_FireEnvelope()
        envelope.tenant = tenant
        envelope.timerID = TimerID.text(timerID)
        envelope.version = UInt64(version)
        envelope.scheduledAt = Google_Protobuf_Timestamp(date: dueAt)
        envelope.attempt = UInt32(attempt)
        envelope.queue = queue
        envelope.payload = Data(payload)
        envelope.priority = Sundial_V1_Priority(rawValue: priority) ?? .normal
        envelope.shard = UInt32(shard)
        envelope.occurrence = UInt64(occurrence)
        return envelope
    }
}

extension Sundial_V1_Priority {
    /// Header form: "high", "normal", "low".
    public var headerValue: String {
        switch self {
        case .high: return "high"
        case .low: return "low"
        default: return "normal"
        }
    }
}
