import Foundation
import SundialContract
import SundialNATS
import Synchronization

/// Fairness deferrals summed over every Dispatcher instance from their `$SRV.STATS` counters
/// (pure). A counter that went down belongs to a restarted process and counts from zero;
/// at most `maximumInstances` are tracked (a chaos fleet has a handful).
public struct DeferralTally: Sendable {
    public static let maximumInstances = 256
    private var last: [String: Int] = [:]
    /// Deferrals since the first sample of each instance's process.
    public private(set) var total = 0

    public init() {}

    public mutating func record(instance: String, deferredTotal: Int) {
        guard deferredTotal >= 0 else { return }
        guard let previous = last[instance] else {
            guard last.count < Self.maximumInstances else { return }
            last[instance] = deferredTotal
            total += deferredTotal
            return
        }
        total += deferredTotal >= previous ? deferredTotal - previous : deferredTotal
        last[instance] = deferredTotal
    }
}

/// Asks every Dispatcher for its stats once a second during a chaos run: deferrals so far
/// (`DeferralTally`) and fires held deferred at that moment, summed over the instances that
/// answered within half a second.
final class DispatcherDeferralSampler: Sendable {
    struct Sample: Sendable {
        var at: Double
        var total: Int
        var deferredNow: Int
        /// Dispatchers that answered.
        var instances: Int
    }

    /// Two hours at one sample a second.
    static let maximumSamples = 7_200
    let samples = Mutex<[Sample]>([])
    private let tally = Mutex(DeferralTally())

    func run(_ connection: NATSConnection, since start: Date, while running: @escaping @Sendable () -> Bool) async {
        var round = 0
        while running(), !Task.isCancelled {
            round += 1
            let replies = await gather(connection, round: round)
            var deferredNow = 0
            let total = tally.withLock { tally in
                for reply in replies {
                    tally.record(instance: reply.instance, deferredTotal: reply.deferredTotal)
                    deferredNow += reply.deferredNow
                }
                return tally.total
            }
            samples.withLock { samples in
                if samples.count < Self.maximumSamples {
                    samples.append(Sample(at: Date().timeIntervalSince(start), total: total, deferredNow: deferredNow, instances: replies.count))
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private struct Reply {
        var instance: String
        var deferredTotal: Int
        var deferredNow: Int
    }

    private func gather(_ connection: NATSConnection, round: Int) async -> [Reply] {
        let inbox = "_INBOX.chaos-stats.\(UUID().uuidString).\(round)"
        guard let subscription = try? await connection.subscribe(subject: inbox, bufferLimit: 64) else { return [] }
        let collected = Mutex<[Reply]>([])
        let reader = Task {
            for await message in subscription {
                guard let reply = Self.parse(message.payload) else { continue }
                collected.withLock { if $0.count < 64 { $0.append(reply) } }
            }
        }
        try? await connection.publish(
            NATSOutgoingMessage(subject: "$SRV.STATS.\(SundialNamespace.dispatcherServiceName)", replySubject: inbox))
        try? await Task.sleep(for: .milliseconds(500))
        subscription.unsubscribe()
        reader.cancel()
        return collected.withLock { $0 }
    }

    /// `{"id": …, "data": {"deferred": n, "fairness": {"deferred_now": m}}}`; anything else is skipped.
    private static func parse(_ payload: [UInt8]) -> Reply? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any],
            let id = object["id"] as? String, let data = object["data"] as? [String: Any],
            let deferred = (data["deferred"] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) })
        else { return nil }
        let now = ((data["fairness"] as? [String: Any])?["deferred_now"] as? NSNumber).flatMap { Int(exactly: $0.doubleValue) }
        return Reply(instance: id, deferredTotal: deferred, deferredNow: max(0, now ?? 0))
    }
}
