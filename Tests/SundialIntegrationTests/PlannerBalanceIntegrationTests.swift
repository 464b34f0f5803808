import Foundation
import SundialCore
import SundialProto
import SundialTestSupport
import Testing

/// Planners share the shards: a second instance takes half, a third a third, and a leaving
/// one's shards go back to the others — while timers due across every handoff fire exactly once.
@Suite("Integration: planner shard balancing")
struct PlannerBalanceIntegrationTests {
    @Test("planners joining and leaving split the shards evenly; every timer due meanwhile fires exactly once")
    func joinAndLeaveRebalance() async throws {
        var options = TestSystem.Options()
        options.fairness = false
        // Due times beyond the horizon: the planners, not Ingest, load every timer.
        options.horizon = .seconds(2)
        options.leaseTTL = .seconds(3)
        try await withTestSystem("balance", options) { system in
            let first = try #require(system.planner)
            let worker = try await system.worker(queue: "balance")
            let client = system.client(tenant: "acme")
            try await eventually("the only planner holds every shard", timeout: .seconds(15)) {
                first.stats.heldShards.load(ordering: .relaxed) == ShardMap.defaultCount
            }

            // Timers due every 100 ms over the next 4–16 s: across the joins and the leave.
            var ids: Set<String> = []
            for index in 0..<120 {
                let delay = Duration.milliseconds(4000 + 100 * index)
                ids.insert(try await client.create(.delay(delay, queue: "balance", key: "b\(index)")).timer.id)
            }
            let (second, secondTask) = try system.startPlanner(instanceID: "planner-balance-2")
            try await eventually("two planners hold 32 shards each", timeout: .seconds(15)) {
                first.stats.heldShards.load(ordering: .relaxed) == ShardMap.defaultCount / 2
                    && second.stats.heldShards.load(ordering: .relaxed) == ShardMap.defaultCount / 2
            }
            let (third, thirdTask) = try system.startPlanner(instanceID: "planner-balance-3")
            try await eventually("three planners hold 22, 21 and 21 shards", timeout: .seconds(15)) {
                let held = [first, second, third].map { $0.stats.heldShards.load(ordering: .relaxed) }
                return held.reduce(0, +) == ShardMap.defaultCount && held.max()! - held.min()! <= 1
            }
            // The second leaves gracefully: its shards go to the other two at once.
            secondTask.cancel()
            await secondTask.value
            try await eventually("two planners share every shard again", timeout: .seconds(15)) {
                first.stats.heldShards.load(ordering: .relaxed) == ShardMap.defaultCount / 2
                    && third.stats.heldShards.load(ordering: .relaxed) == ShardMap.defaultCount / 2
            }
            #expect(first.stats.shardsReleased.load(ordering: .relaxed) > 0)

            let jobs = try await collectJobs(worker, count: ids.count, timeout: .seconds(40))
            #expect(Set(jobs.map(\.0.timerID)) == ids)
            #expect(jobs.count == ids.count, "duplicates: \(jobs.count - Set(jobs.map(\.0.timerID)).count)")
            // Nothing more arrives: no occurrence was loaded twice across the handoffs.
            let extra = try await collectJobs(worker, count: 1, timeout: .seconds(3))
            #expect(extra.isEmpty, "duplicate jobs: \(extra.map(\.0.timerID))")
            thirdTask.cancel()
            await thirdTask.value
        }
    }
}
