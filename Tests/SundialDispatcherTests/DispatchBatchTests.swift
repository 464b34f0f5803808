import Foundation
import SundialCore
import SundialDispatcher
import SundialFairness
import Testing

/// The Dispatcher's per-batch decision (`DispatchBatch`), without NATS or Postgres: which
/// fired message is acked, nak'd (and with what delay) or terminated, and which run is
/// forwarded and recorded.
@Suite("Dispatch batch decisions")
struct DispatchBatchTests {
    typealias Decision = FairnessGate<ContinuousClock>.Decision
    typealias Expected = [Int: DispatchBatch.Disposition]
    static let settings = DispatchBatch.Settings(
        retryDelay: .seconds(2), queueFullDelay: .seconds(5), recordDeferralsBeyond: .seconds(30))
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func fire(
        _ index: Int, id: UUID = UUID(), occurrence: Int64 = 0, version: Int64 = 1, priority: JobPriority = .normal
    ) -> DispatchBatch.Fire {
        DispatchBatch.Fire(
            index: index, key: FireKey(id: id, occurrence: occurrence, attempt: 1), version: version, tenant: "acme",
            queue: "q", priority: priority, scheduledAt: now, firedAt: now)
    }

    /// Runs a batch through every step with the given outcomes; returns the batch.
    static func run(
        _ fires: [DispatchBatch.Fire], size: Int? = nil, undecodable: [Int] = [], decisions: [Decision]? = nil,
        claimed: (([DispatchBatch.Fire]) -> [FireKey: Int64]?)? = nil,
        forward: (DispatchBatch.Fire) -> DispatchBatch.ForwardResult = { _ in .forwarded }, recorded: Bool = true
    ) -> (batch: DispatchBatch, forwardOrder: [Int], final: DispatchBatch.FinalStep) {
        var batch = DispatchBatch(size: size ?? fires.count + undecodable.count, settings: settings)
        for index in undecodable { batch.undecodable(index) }
        let gated = batch.gate(fires, decisions: decisions ?? fires.map { _ in .dispatch }, now: now)
        let versions = claimed.map { $0(gated.claim) } ?? Dictionary(gated.claim.map { ($0.key, $0.version) }) { a, _ in a }
        let claim = batch.claimed(gated.claim, versions: versions)
        let forwarded = batch.forwarded(claim.forward, results: claim.forward.map(forward), dispatchedAt: now)
        let final = batch.marked(recorded)
        return (batch, claim.forward.map(\.index), final)
    }

    @Test("live fires are forwarded, recorded and acked")
    func live() {
        let (batch, order, final) = Self.run([Self.fire(0), Self.fire(1)])
        #expect(order == [0, 1])
        #expect(final.dispatched.map(\.index) == [0, 1])
        #expect(batch.dispositions == ([0: .ack, 1: .ack] as Expected))
        #expect(batch.counts.dispatched == 2)
        #expect(batch.isSettled)
    }

    @Test("a cancelled run (not claimed) is acked and dropped, never forwarded")
    func cancelled() {
        let cancelled = Self.fire(1)
        let (batch, order, _) = Self.run([Self.fire(0), cancelled], claimed: { fires in
            Dictionary(uniqueKeysWithValues: fires.filter { $0.index != 1 }.map { ($0.key, $0.version) })
        })
        #expect(order == [0])
        #expect(batch.dispositions[1] == .ack)
        #expect(batch.counts.staleDropped == 1)
        #expect(batch.counts.supersededDropped == 0)
    }

    @Test("an old version's fire beside the new one: only the claimed version goes out")
    func stale() {
        let id = UUID()
        let old = Self.fire(0, id: id, version: 1)
        let new = Self.fire(1, id: id, version: 2)
        let (batch, order, _) = Self.run([old, new], claimed: { _ in [old.key: 2] })
        #expect(order == [1])
        #expect(batch.dispositions == ([0: .ack, 1: .ack] as Expected))
        #expect(batch.counts.staleDropped == 1)
        #expect(batch.counts.supersededDropped == 1)
        #expect(batch.counts.dispatched == 1)
    }

    @Test("a duplicate of the same fire in one batch goes out once")
    func duplicate() {
        let id = UUID()
        let (batch, order, _) = Self.run([Self.fire(0, id: id), Self.fire(1, id: id)])
        #expect(order == [0])
        #expect(batch.dispositions == ([0: .ack, 1: .ack] as Expected))
        #expect(batch.counts.staleDropped == 1)
        #expect(batch.counts.dispatched == 1)
    }

    @Test("a failed claim naks every admitted fire with the retry delay")
    func failedClaim() {
        let (batch, order, final) = Self.run([Self.fire(0), Self.fire(1)], claimed: { _ in nil })
        #expect(order.isEmpty)
        #expect(final.acks.isEmpty)
        #expect(batch.dispositions == ([0: .nak(delay: .seconds(2)), 1: .nak(delay: .seconds(2))] as Expected))
        #expect(batch.counts.retried == 2)
    }

    @Test("a failed forward is nak'd; the others are recorded and acked")
    func failedForward() {
        let (batch, _, final) = Self.run([Self.fire(0), Self.fire(1), Self.fire(2)], forward: { $0.index == 1 ? .failed : .forwarded })
        #expect(final.dispatched.map(\.index) == [0, 2])
        #expect(batch.dispositions == ([0: .ack, 1: .nak(delay: .seconds(2)), 2: .ack] as Expected))
        #expect(batch.counts.retried == 1)
        #expect(batch.counts.dispatched == 2)
    }

    @Test("forwarded but not recorded: every forwarded fire is nak'd, none acked")
    func failedMark() {
        let (batch, _, final) = Self.run([Self.fire(0), Self.fire(1)], recorded: false)
        #expect(final.dispatched.isEmpty)
        #expect(final.acks.isEmpty)
        #expect(batch.dispositions == ([0: .nak(delay: .seconds(2)), 1: .nak(delay: .seconds(2))] as Expected))
        #expect(batch.counts.dispatched == 0)
    }

    @Test("a full queue: the claim is handed back and the fire nak'd with the queue-full delay")
    func queueFull() {
        var batch = DispatchBatch(size: 2, settings: Self.settings)
        let fires = [Self.fire(0), Self.fire(1)]
        let gated = batch.gate(fires, decisions: [Decision.dispatch, .dispatch], now: Self.now)
        let claim = batch.claimed(gated.claim, versions: Dictionary(uniqueKeysWithValues: fires.map { ($0.key, $0.version) }))
        let forwarded = batch.forwarded(claim.forward, results: [.queueFull, .forwarded], dispatchedAt: Self.now)
        #expect(forwarded.queueFull.map(\.index) == [0])
        #expect(forwarded.releaseUntil == Self.now.addingTimeInterval(35))
        #expect(forwarded.mark.map(\.index) == [1])
        _ = batch.marked(true)
        #expect(batch.dispositions == ([0: .nak(delay: .seconds(5)), 1: .ack] as Expected))
        #expect(batch.counts.queueFull == 1)
    }

    @Test("deferred fires are nak'd with the gate's delay; a long wait is recorded on the run")
    func deferred() {
        let fires = [Self.fire(0), Self.fire(1), Self.fire(2)]
        var batch = DispatchBatch(size: 3, settings: Self.settings)
        let gated = batch.gate(
            fires, decisions: [Decision.deferred(.seconds(1), lineWait: .seconds(5)), .dispatch, .deferred(.seconds(3), lineWait: .seconds(120))],
            now: Self.now)
        #expect(gated.naks.map(\.index) == [0, 2])
        #expect(gated.naks.map(\.delay) == [.seconds(1), .seconds(3)])
        #expect(gated.claim.map(\.index) == [1])
        // Only the 120 s wait is beyond 30 s past due: recorded until its return plus slack.
        #expect(gated.recordDeferrals.map(\.key) == [fires[2].key])
        #expect(gated.recordDeferrals.first?.until == Self.now.addingTimeInterval(150))
        #expect(batch.counts.deferred == 2)
    }

    @Test("higher priority is forwarded first; ties keep fetch order")
    func priorityOrder() {
        let (_, order, _) = Self.run([
            Self.fire(0, priority: .low), Self.fire(1), Self.fire(2, priority: .high), Self.fire(3), Self.fire(4, priority: .high),
        ])
        #expect(order == [2, 4, 1, 3, 0])
    }

    @Test("an undecodable message is terminated; the rest go on")
    func undecodable() {
        let (batch, _, _) = Self.run([Self.fire(1)], undecodable: [0])
        #expect(batch.dispositions == ([0: .term, 1: .ack] as Expected))
        #expect(batch.counts.undecodable == 1)
    }

    @Test("any mix of outcomes settles every message exactly once")
    func everyMessageSettledOnce() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let size = Int.random(in: 1...40, using: &rng)
            let ids = (0..<4).map { _ in UUID() }
            var undecodable: [Int] = []
            var fires: [DispatchBatch.Fire] = []
            for index in 0..<size {
                if Int.random(in: 0..<10, using: &rng) == 0 { undecodable.append(index); continue }
                fires.append(Self.fire(
                    index, id: ids.randomElement(using: &rng)!, version: Int64.random(in: 1...2, using: &rng),
                    priority: JobPriority.allCases.randomElement(using: &rng)!))
            }
            let decisions: [Decision] = fires.map { _ in
                Bool.random(using: &rng) ? .dispatch : .deferred(.seconds(1), lineWait: .seconds(Int.random(in: 1...100, using: &rng)))
            }
            let claimFails = Int.random(in: 0..<8, using: &rng) == 0
            let (batch, _, _) = Self.run(
                fires, size: size, undecodable: undecodable, decisions: decisions,
                claimed: { claim in
                    claimFails ? nil : Dictionary(claim.filter { _ in Bool.random() }.map { ($0.key, Int64.random(in: 1...2)) }) { a, _ in a }
                },
                forward: { _ in [.forwarded, .forwarded, .queueFull, .failed].randomElement()! },
                recorded: Bool.random(using: &rng))
            #expect(batch.isSettled, "size \(size): \(batch.dispositions.count) settled")
            let c = batch.counts
            #expect(c.undecodable + c.deferred + c.staleDropped + c.queueFull + c.retried + c.dispatched == size)
        }
    }
}
