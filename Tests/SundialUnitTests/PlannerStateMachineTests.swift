import Foundation
import SundialContract
import SundialCore
import SundialPlanner
import SundialStore
import Synchronization
import Testing

/// A clock that only moves when told: the state machine's notion of time in tests.
final class ManualClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private(set) var now = Instant(offset: .zero)
    var minimumResolution: Duration { .nanoseconds(1) }

    func advance(by duration: Duration) { now = now.advanced(by: duration) }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        advance(by: now.duration(to: deadline))
    }
}

@Suite("Unit: planner state machine")
struct PlannerStateMachineTests {
    let timing = PlannerStateMachine<ManualClock>.Timing(
        claimInterval: .seconds(1), leaseTTL: .seconds(15), acquireInterval: .seconds(5),
        rescueInterval: .seconds(10), maxShards: 4)

    func lease(_ shard: Int, epoch: Int64 = 1) -> ShardLease {
        ShardLease(shard: shard, epoch: epoch, expiresAt: Date(timeIntervalSince1970: 0))
    }

    @Test("starts by acquiring up to maxShards, and does not re-ask while a request is in flight")
    func acquiresFirst() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        #expect(machine.tick(now: clock.now) == [.heartbeat, .acquire(limit: 4)])
        machine.heartbeatFailed()
        clock.advance(by: .seconds(6))
        // The heartbeat comes again every acquire interval; the acquire waits for its answer.
        #expect(machine.tick(now: clock.now) == [.heartbeat])
    }

    @Test("live planners share the shards: each acquires up to its share and hands back the highest spare shards beyond it")
    func sharesShardsWithPeers() {
        let clock = ManualClock()
        let timing = PlannerStateMachine<ManualClock>.Timing(
            claimInterval: .seconds(1), leaseTTL: .seconds(15), acquireInterval: .seconds(5),
            rescueInterval: .seconds(10), maxShards: 8, totalShards: 8)
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.membership(["b"], me: "b")
        machine.acquired((0..<8).map { lease($0) }, now: clock.now)
        let loads = machine.tick(now: clock.now)
        #expect(loads.filter { if case .claim = $0 { true } else { false } }.count == 8)
        // Shards 0–6 finished their loads; shard 7's is still in flight.
        for shard in 0..<7 { machine.claimed(shard: shard, count: 0, batchSize: 5000, now: clock.now) }
        // Planner "a" joined: b ranks second of two, so its share is 4.
        machine.membership(["a", "b"], me: "b")
        #expect(machine.targetShards == 4)
        let balance = machine.tick(now: clock.now)
        #expect(balance.contains(.release([lease(3), lease(4), lease(5), lease(6)])))
        #expect(machine.heldShards == [0, 1, 2, 7])
        // Its load done, shard 7 goes once the share shrinks again.
        machine.claimed(shard: 7, count: 0, batchSize: 5000, now: clock.now)
        machine.membership(["a", "b", "c"], me: "b")  // 8 / 3: a 3, b 3, c 2
        #expect(machine.targetShards == 3)
        #expect(machine.tick(now: clock.now).contains(.release([lease(7)])))
        #expect(machine.heldShards == [0, 1, 2])
        // "a" and "c" left: b's share is everything again, and it asks for the rest.
        machine.membership(["b"], me: "b")
        clock.advance(by: .seconds(5))
        #expect(machine.tick(now: clock.now).contains(.acquire(limit: 5)))
    }

    @Test("shares add up to the shard count for any number of planners, and every planner computes the same split")
    func sharesAddUp() {
        for n in 1...70 {
            let members = (0..<n).map { "planner-\($0)" }.shuffled()
            let shares = members.map { ShardShare.target(shards: 64, members: members, me: $0) }
            #expect(shares.reduce(0, +) == 64, "\(n) planners")
            #expect(shares.max()! - shares.min()! <= 1)
        }
        // A planner missing from the list (its own heartbeat not yet visible) counts itself in.
        #expect(ShardShare.target(shards: 64, members: ["a"], me: "b") == 32)
    }

    @Test("a newly acquired shard is republished once, then claimed every claim interval")
    func republishThenClaim() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(7)], now: clock.now)
        let first = machine.tick(now: clock.now)
        #expect(first.contains(.republish(lease(7))))
        #expect(first.contains(.claim(lease(7))))
        // The claim is in flight: no second claim for the same shard.
        #expect(!machine.tick(now: clock.now).contains(.claim(lease(7))))
        machine.claimed(shard: 7, count: 10, batchSize: 5000, now: clock.now)
        clock.advance(by: .milliseconds(999))
        #expect(!machine.tick(now: clock.now).contains(.claim(lease(7))))
        clock.advance(by: .milliseconds(1))
        let later = machine.tick(now: clock.now)
        #expect(later.contains(.claim(lease(7))))
        #expect(!later.contains(.republish(lease(7))))
    }

    @Test("a full claim batch means more is due: the next claim comes at once")
    func fullBatchClaimsAgain() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(1)], now: clock.now)
        _ = machine.tick(now: clock.now)
        machine.claimed(shard: 1, count: 5000, batchSize: 5000, now: clock.now)
        #expect(machine.tick(now: clock.now).contains(.claim(lease(1))))
    }

    @Test("leases are renewed after a third of the TTL; a lease the database did not extend is dropped")
    func renewAndLose() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(1), lease(2)], now: clock.now)
        machine.acquireFailed()
        _ = machine.tick(now: clock.now)
        clock.advance(by: .seconds(5))
        let actions = machine.tick(now: clock.now)
        #expect(actions.contains(.renew([lease(1), lease(2)])))
        machine.renewed(requested: [lease(1), lease(2)], granted: [lease(1)], now: clock.now)
        #expect(machine.heldShards == [1])
    }

    @Test("without confirmation for 2/3 of the TTL a lease is given up locally, before it can expire")
    func unconfirmedLeaseIsDropped() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(3)], now: clock.now)
        _ = machine.tick(now: clock.now)
        clock.advance(by: .seconds(5))
        _ = machine.tick(now: clock.now)  // asks to renew
        machine.renewFailed(now: clock.now)  // database unreachable
        // No busy loop: the next renewal waits a moment (TTL / 15 = 1 s).
        #expect(!machine.tick(now: clock.now).contains { if case .renew = $0 { true } else { false } })
        #expect(machine.nextDeadline(after: clock.now) > clock.now)
        clock.advance(by: .seconds(1))
        #expect(machine.tick(now: clock.now).contains { if case .renew = $0 { true } else { false } })
        machine.renewFailed(now: clock.now)
        clock.advance(by: .seconds(3))
        _ = machine.tick(now: clock.now)
        #expect(machine.heldShards == [3])  // 9 s < 10 s of trust
        clock.advance(by: .seconds(1))
        let actions = machine.tick(now: clock.now)
        #expect(machine.heldShards.isEmpty)
        #expect(!actions.contains(.claim(lease(3))))
    }

    @Test("a renewal that comes back with another epoch means the shard changed hands")
    func epochMismatchDrops() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(5, epoch: 3)], now: clock.now)
        machine.renewed(requested: [lease(5, epoch: 3)], granted: [lease(5, epoch: 4)], now: clock.now)
        #expect(machine.heldShards.isEmpty)
    }

    @Test("rescue runs per shard every rescue interval; shutdown releases all held shards")
    func rescueAndRelease() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(1), lease(2)], now: clock.now)
        #expect(!machine.tick(now: clock.now).contains(.rescue(lease(1))))
        clock.advance(by: .seconds(5))
        _ = machine.tick(now: clock.now)
        machine.renewed(requested: [lease(1), lease(2)], granted: [lease(1), lease(2)], now: clock.now)
        clock.advance(by: .seconds(5))
        let actions = machine.tick(now: clock.now)
        #expect(actions.contains(.rescue(lease(1))) && actions.contains(.rescue(lease(2))))
        #expect(machine.releaseAll() == [1, 2])
        #expect(machine.heldShards.isEmpty)
    }

    @Test("work the service put off (its time box ran out) is due again at once; claims rotate so every shard gets a turn")
    func deferredWorkAndRotation() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(1), lease(2), lease(3)], now: clock.now)
        let first = machine.tick(now: clock.now)
        #expect(first.filter { if case .claim = $0 { true } else { false } } == [.claim(lease(1)), .claim(lease(2)), .claim(lease(3))])
        // Only shard 1 was claimed (a full batch); the rest was put off, republishes included.
        machine.claimed(shard: 1, count: 5000, batchSize: 5000, now: clock.now)
        for action in first where action != .claim(lease(1)) { machine.deferred(action, now: clock.now) }
        let second = machine.tick(now: clock.now)
        // Shards after the last claimed one come first; nothing is lost.
        #expect(second.filter { if case .claim = $0 { true } else { false } } == [.claim(lease(2)), .claim(lease(3)), .claim(lease(1))])
        #expect(second.contains(.republish(lease(2))) && second.contains(.republish(lease(3))))
    }

    @Test("the next deadline is never later than the next claim and never earlier than now")
    func nextDeadline() {
        let clock = ManualClock()
        var machine = PlannerStateMachine<ManualClock>(timing: timing)
        _ = machine.tick(now: clock.now)
        machine.acquired([lease(1)], now: clock.now)
        _ = machine.tick(now: clock.now)
        machine.claimed(shard: 1, count: 0, batchSize: 5000, now: clock.now)
        let deadline = machine.nextDeadline(after: clock.now)
        #expect(deadline == clock.now.advanced(by: .seconds(1)))
        clock.advance(by: .seconds(3))
        #expect(machine.nextDeadline(after: clock.now) == clock.now)
    }
}

@Suite("Reaper pacing")
struct ReaperPacingTests {
    @Test func aWalkGoesOnWithPausesThenIdlesAndFailuresBackOff() {
        var pacing = ReaperPacing(pause: .milliseconds(50), idle: .seconds(60))
        #expect(pacing.next(after: .walked(walked: 1000, timersDeleted: 10, runsDeleted: 30)) == .milliseconds(50))
        #expect(pacing.next(after: .caughtUp) == .seconds(60))
        #expect(pacing.next(after: RetentionStore.BatchOutcome.busy) == .seconds(60))
        #expect((1...8).map { _ in pacing.nextAfterFailure() } == [1, 2, 4, 8, 16, 32, 60, 60].map { .seconds($0) })
        // A success resets the back-off.
        _ = pacing.next(after: .caughtUp)
        #expect(pacing.nextAfterFailure() == .seconds(1))
    }

    @Test func aPartitionPassGoesStraightOnPausesWhileDeletingAndIdlesWhenBusy() {
        var pacing = ReaperPacing(pause: .milliseconds(50), idle: .seconds(60))
        var work = RetentionStore.PartitionWork()
        #expect(pacing.next(after: .done(work)) == .zero)
        work.more = true
        #expect(pacing.next(after: .done(work)) == .milliseconds(50))
        #expect(pacing.next(after: RetentionStore.PartitionPass.busy) == .seconds(60))
    }
}

@Suite("Timer ids bound the reaper's walk")
struct TimerIDBoundTests {
    @Test func theLowerBoundOfAnInstantSortsBetweenIdsBeforeAndIdsFrom() {
        let instant = Date(timeIntervalSince1970: 1_800_000_000.5)
        let bound = TimerID.lowerBound(at: instant).uuidString
        for _ in 0..<100 {
            #expect(TimerID.make(now: instant.addingTimeInterval(-0.001)).uuidString < bound)
            #expect(TimerID.make(now: instant).uuidString >= bound)
        }
        #expect(bound.hasSuffix("-0000-0000-000000000000"))
    }
}
