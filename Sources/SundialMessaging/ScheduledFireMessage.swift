import SundialContract
import SundialCore
import SundialNATS
import SundialSchedule

extension ScheduledFire {
    /// `Nats-Schedule: @at <due>` on `sched.<shard>.<timer>.<occurrence>.<attempt>`, firing to
    /// `fired.<shard>`.
    public func scheduleMessage(_ namespace: SundialNamespace) throws -> NATSOutgoingMessage {
        var headers = NATSHeaders()
        headers[SundialHeader.natsSchedule] = "@at " + RFC3339.format(dueAt)
        headers[SundialHeader.natsScheduleTarget] = namespace.fired(shard: shard)
        return NATSOutgoingMessage(
            subject: namespace.schedule(shard: shard, timerID: TimerID.text(timerID), occurrence: occurrence, attempt: attempt),
            headers: headers, payload: try envelope.serializedBytes())
    }
}
