import Foundation
import SundialMessaging
import SundialNATS
import SundialPostgres
import SundialProto
import SundialTestSupport
import Testing

/// Dispatched-but-lost: a job that disappears from the work stream after dispatch (here: a
/// purge, as a lost unreplicated node would do) is dispatched again by the Planner's rescue
/// pass and reaches an executor; a job still waiting in the work stream is left alone.
@Suite("Integration: dispatched-but-lost rescue")
struct DispatchedLostIntegrationTests {
    @Test("a job purged from the work stream is dispatched again and counted; a job still queued is not")
    func lostJobIsDispatchedAgain() async throws {
        var options = TestSystem.Options()
        options.fairness = false
        options.streamLimits.workDuplicateWindow = .seconds(1)
        options.plannerTuning = { config in config.redispatchAfter = .seconds(2) }
        try await withTestSystem("redispatch", options) { system in
            let planner = try #require(system.planner)
            let client = system.client(tenant: "acme")
            let lostQueue = try await system.worker(queue: "lost")
            let keptQueue = try await system.worker(queue: "kept")
            let lost = try await client.create(.delay(.milliseconds(300), queue: "lost", payload: "L"))
            let kept = try await client.create(.delay(.milliseconds(300), queue: "kept", payload: "K"))
            let lostID = try #require(UUID(uuidString: lost.timer.id))
            let keptID = try #require(UUID(uuidString: kept.timer.id))

            // Both dispatched, each job recorded at its place in the work stream.
            try await eventually("both runs dispatched with their work sequences", timeout: .seconds(15)) {
                let lostRun = try await inFlight(system.pool, lostID)
                let keptRun = try await inFlight(system.pool, keptID)
                return (lostRun?.sequence ?? 0) > 0 && (keptRun?.sequence ?? 0) > 0
            }
            let keptSequence = try #require(try await inFlight(system.pool, keptID)?.sequence)
            // The lost queue's job vanishes before any executor took it.
            let purged = try await system.api.purge(
                stream: system.namespace.workStream, subject: system.namespace.work(queue: "lost"))
            #expect(purged == 1)

            try await eventually("the lost run dispatched again", timeout: .seconds(20)) {
                planner.stats.redispatched.load(ordering: .relaxed) >= 1
            }
            let jobs = try await collectJobs(lostQueue, count: 1, timeout: .seconds(10))
            #expect(jobs.map(\.0.timerID) == [lost.timer.id])
            #expect(jobs.first.map { String(decoding: $0.0.payload, as: UTF8.self) } == "L")
            try await eventually("the lost timer succeeded", timeout: .seconds(10)) {
                try await client.get(lost.timer.id).state == .succeeded
            }

            // The kept job was found where it was stored: seen, not dispatched again.
            try await eventually("a rescue pass saw the queued job", timeout: .seconds(20)) {
                try await inFlight(system.pool, keptID)?.checked == true
            }
            #expect(planner.stats.redispatched.load(ordering: .relaxed) == 1)
            let stored = try await system.api.lastMessage(
                stream: system.namespace.workStream, subject: system.namespace.work(queue: "kept"))
            #expect(stored?.sequence == keptSequence)
            let keptJobs = try await collectJobs(keptQueue, count: 1, timeout: .seconds(10))
            #expect(keptJobs.map(\.0.timerID) == [kept.timer.id])
        }
    }
}

/// A run's recorded work sequence and whether a rescue pass has seen its job; nil once the
/// run is no longer in flight.
private func inFlight(_ pool: PostgresPool, _ id: UUID) async throws -> (sequence: UInt64, checked: Bool)? {
    try await pool.withSession { session in
        guard
            let row = try session.execute(
                """
                SELECT coalesce(work_sequence, 0) AS sequence, checked_at IS NOT NULL AS checked FROM timer_runs
                WHERE timer_id = $1 AND outcome IN ('dispatching', 'dispatched')
                """, [.uuid(id)]
            ).first
        else { return nil }
        return (UInt64(clamping: try row.int64("sequence") ?? 0), try row.bool("checked") ?? false)
    }
}
