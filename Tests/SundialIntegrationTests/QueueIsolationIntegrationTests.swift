import Foundation
import SundialContract
import SundialExecutor
import SundialGovernor
import SundialProto
import SundialTestSupport
import Testing

/// A queue nobody consumes must never slow anyone else (issue 10): its jobs are not the
/// executors' saturation, so they never lower the capacity other queues' tenants share.
@Suite("Integration: queue isolation", .serialized)
struct QueueIsolationIntegrationTests {
    @Test("1,000 jobs on a queue whose executors are gone; new tenants' bursts on a live queue still arrive on time")
    func deadQueueDoesNotThrottleOthers() async throws {
        var options = TestSystem.Options()
        // The capacity is measured, as in production (no fixed figure).
        options.governor = TestSystem.governorConfig(capacity: nil)
        try await withTestSystem("dead-queue", options) { system in
            let governor = try #require(system.governor)
            // Executors of "gone" connected once (its consumer exists) and left.
            _ = try await system.worker(queue: "gone")
            let whale = system.client(tenant: "typo")
            for _ in 0..<1000 { _ = try await whale.create(.delay(.milliseconds(500), queue: "gone", payload: "x")) }
            // They come due; let the governor sample a few periods with them waiting.
            try await Task.sleep(for: .seconds(4))
            print("dead queue: \(governor.snapshot.queuesWithoutExecutors) without executors, live queues measured \(governor.snapshot.queues.keys.sorted())")

            let live = try await system.worker(queue: "live")
            let due = Date().addingTimeInterval(3)
            await withTaskGroup(of: Void.self) { group in
                for tenant in ["fresh1", "fresh2", "fresh3"] {
                    group.addTask {
                        let client = system.client(tenant: tenant)
                        for index in 0..<100 {
                            var request = Sundial_V1_CreateTimerRequest()
                            request.queue = "live"
                            request.payload = Data("\(tenant)-\(index)".utf8)
                            request.schedule.at.instant = .init(date: due)
                            _ = try? await client.create(request)
                        }
                    }
                }
            }
            let jobs = try await collectJobs(live, count: 300, timeout: .seconds(20))
            let lags = jobs.map { $0.0.lag(receivedAt: $0.1) }.sorted()
            let p95 = lags.isEmpty ? 99 : lags[min(lags.count - 1, lags.count * 95 / 100)]
            print(
                "dead queue beside a live one: \(jobs.count)/300 arrived; lag p50 \(lags.isEmpty ? -1 : lags[lags.count / 2]) s, p95 \(p95) s, max \(lags.last ?? -1) s; governor per queue \(governor.snapshot.queues.mapValues { "capacity \($0.estimate.map { String(format: "%.0f", $0) } ?? "unknown"), backlog \($0.backlog)" }), without executors \(governor.snapshot.queuesWithoutExecutors)"
            )
            #expect(jobs.count == 300)
            #expect(p95 < 2)
            // The dead queue is counted, never measured: no capacity of its own, no plan that
            // throttles anyone on it.
            #expect(governor.snapshot.queues["gone"] == nil)
            #expect((governor.snapshot.queuesWithoutExecutors["gone"] ?? 0) > 0)
            #expect(system.dispatcher!.currentPlan.plan(for: "gone")?.capacityEstimate == nil)
        }
    }

    @Test("two queues with executors of different speed: each queue's tenants share that queue's capacity, and neither slows the other")
    func twoQueuesShareTheirOwnCapacity() async throws {
        var options = TestSystem.Options()
        options.governor = TestSystem.governorConfig(capacity: nil, bulkBacklog: 100)
        try await withTestSystem("two-queues", options) { system in
            let governor = try #require(system.governor)
            let fast = CappedExecutor(worker: try await system.worker(queue: "fast"), rate: 200)
            let slow = CappedExecutor(worker: try await system.worker(queue: "slow"), rate: 40)
            try await eventually("the dispatcher has a plan") { system.dispatcher!.currentPlan.generation > 0 }
            // A whale on each queue, due over the same 10 s at about 1.5× and 2× its executors'
            // speed: each saturates its own queue, and the governor measures each.
            let floodAt = Date().addingTimeInterval(12)
            async let fastWhale = FairnessIntegrationTests.createDue(system, tenant: "whale-f", count: 3000, due: floodAt, over: 10, queue: "fast")
            async let slowWhale = FairnessIntegrationTests.createDue(system, tenant: "whale-s", count: 900, due: floodAt, over: 10, queue: "slow")
            let (fastIDs, slowIDs) = try await (fastWhale, slowWhale)
            // Five seconds into the flood a small tenant arrives on each queue.
            try await Task.sleep(until: .now + .seconds(max(0, floodAt.timeIntervalSinceNow + 5)), clock: .continuous)
            async let lateSlow = FairnessIntegrationTests.createDue(
                system, tenant: "late-s", count: 40, due: Date().addingTimeInterval(1), queue: "slow")
            async let shopFast = FairnessIntegrationTests.createDue(
                system, tenant: "shop-f", count: 30, due: Date().addingTimeInterval(1), queue: "fast")
            let (lateIDs, shopIDs) = try await (lateSlow, shopFast)
            let during = governor.snapshot.queues
            let expected = fastIDs.count + slowIDs.count + lateIDs.count + shopIDs.count
            try await eventually("every job arrives", timeout: .seconds(120)) { fast.count() + slow.count() >= expected }

            func p95(_ lags: [TimeInterval]) -> TimeInterval {
                let sorted = lags.sorted()
                return sorted.isEmpty ? 99 : sorted[min(sorted.count - 1, sorted.count * 95 / 100)]
            }
            let whaleF = fast.received.withLock { $0.filter { $0.tenant == "whale-f" }.map(\.at) }.sorted()
            let fastBusy = (whaleF.last ?? floodAt).timeIntervalSince(floodAt)
            let fastRate = Double(whaleF.count) / max(0.001, fastBusy)
            let lateP95 = p95(slow.lags("late-s"))
            let shopP95 = p95(fast.lags("shop-f"))
            let slowWhaleMax = slow.lags("whale-s").max() ?? 0
            print(
                "two queues: whale-f \(whaleF.count) jobs in \(String(format: "%.1f", fastBusy)) s from the flood's start = \(Int(fastRate))/s (executors 200/s); late-s p95 \(String(format: "%.2f", lateP95)) s beside whale-s (max lag \(String(format: "%.1f", slowWhaleMax)) s, executors 40/s); shop-f p95 \(String(format: "%.2f", shopP95)) s; governor during the flood: \(during.mapValues { "capacity \($0.estimate.map { String(format: "%.0f", $0) } ?? "unknown"), backlog \($0.backlog)" })"
            )
            #expect(fast.count() + slow.count() == expected, "no duplicates")
            #expect(Set(fast.received.withLock { $0.map(\.timerID) }) == fastIDs.union(shopIDs))
            #expect(Set(slow.received.withLock { $0.map(\.timerID) }) == slowIDs.union(lateIDs))
            // The slow queue's saturation is its own: the fast queue runs near its executors'
            // speed (held to the slow queue's 40/s it would take 75 s).
            #expect(fastRate >= 120, "whale-f at \(fastRate)/s")
            #expect(shopP95 <= 2.5)
            // On the slow queue the flood was real (in FIFO order late-s would wait behind
            // ≈ 250 queued jobs, 6 s), and late-s got its share of the slow queue's capacity.
            #expect(slowWhaleMax >= 8)
            #expect(lateP95 <= 4, "late-s p95 \(lateP95) s")
            // Measured per queue.
            let fastEstimate = during["fast"]?.estimate ?? 0
            let slowEstimate = during["slow"]?.estimate ?? 0
            #expect(slowEstimate >= 20 && slowEstimate <= 80, "slow capacity \(slowEstimate)")
            #expect(fastEstimate >= 100 && fastEstimate <= 400, "fast capacity \(fastEstimate)")
            await fast.stop()
            await slow.stop()
        }
    }
}
