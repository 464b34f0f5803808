import Foundation
import SundialContract
import SundialExecutor
import SundialGovernor
import SundialProto
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
            print("dead queue: \(governor.snapshot.queuesWithoutExecutors) without executors, backlog counted \(governor.snapshot.workBacklog)")

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
                "dead queue beside a live one: \(jobs.count)/300 arrived; lag p50 \(lags.isEmpty ? -1 : lags[lags.count / 2]) s, p95 \(p95) s, max \(lags.last ?? -1) s; governor capacity \(governor.snapshot.capacityEstimate.map { "\($0)" } ?? "unknown"), backlog \(governor.snapshot.workBacklog), without executors \(governor.snapshot.queuesWithoutExecutors)"
            )
            #expect(jobs.count == 300)
            #expect(p95 < 2)
        }
    }
}
