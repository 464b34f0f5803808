import Foundation
import SundialContract
import SundialExecutor
import SundialProto
import Synchronization
import Testing

/// Failing downstreams (issue 18): a circuit breaker per queue and per tenant on it holds due
/// jobs in Sundial while the downstream is down — no attempts spent, no dead letters — and
/// lets them go once probes succeed.
@Suite("Integration: circuit breakers", .serialized)
struct BreakerIntegrationTests {
    final class Ledger: Sendable {
        struct Attempt {
            var tenant: String
            var timerID: String
            var at: Date
            var failed: Bool
            var lag: TimeInterval
        }
        let attempts = Mutex<[Attempt]>([])
    }

    @Test("one tenant's downstream down for 20 s: it is held without spending attempts, the other tenant on the queue goes on, and it recovers by itself")
    func failingTenantIsHeldAndRecovers() async throws {
        var options = TestSystem.Options()
        var governor = TestSystem.governorConfig(capacity: nil)
        governor.core.breaker = .init(
            window: .seconds(10), slots: 10, minimumSamples: 8, failureRatio: 0.5, coolDown: .seconds(2),
            maximumCoolDown: .seconds(8), probes: 2, probeTimeout: .seconds(20))
        options.governor = governor
        try await withTestSystem("breaker", options) { system in
            let events = try await system.api.subscribe(subject: system.namespace.event(tenant: "broken", kind: ">"))
            let fineEvents = try await system.api.subscribe(subject: system.namespace.event(tenant: "fine", kind: ">"))
            let worker = try await system.worker(queue: "dep")
            let ledger = Ledger()
            let downUntil = Date().addingTimeInterval(22)
            let stop = Atomic<Bool>(false)
            let executor = Task {
                while !stop.load(ordering: .relaxed) {
                    guard let jobs = try? await worker.next(max: 64, maxWait: .milliseconds(200)) else { continue }
                    for job in jobs {
                        let now = Date()
                        let down = job.tenant == "broken" && now < downUntil
                        ledger.attempts.withLock {
                            $0.append(.init(tenant: job.tenant, timerID: job.timerID, at: now, failed: down, lag: job.lag(receivedAt: now)))
                        }
                        if down {
                            try? await worker.fail(job, error: "503 from the downstream", cause: .downstream)
                        } else {
                            try? await worker.complete(job)
                        }
                    }
                }
            }
            func create(_ tenant: String, count: Int) async throws -> Set<String> {
                let client = system.client(tenant: tenant)
                var ids = Set<String>()
                for index in 0..<count {
                    var request = Sundial_V1_CreateTimerRequest.delay(
                        .milliseconds(2000 + index * 10_000 / count), queue: "dep", payload: "\(tenant)-\(index)")
                    request.retryPolicy.maxAttempts = 5
                    request.retryPolicy.initialBackoff = .init(seconds: 1)
                    request.retryPolicy.maxBackoff = .init(seconds: 10)
                    ids.insert(try await client.create(request).timer.id)
                }
                return ids
            }
            async let brokenIDs = create("broken", count: 60)
            async let fineIDs = create("fine", count: 30)
            let (broken, fine) = try await (brokenIDs, fineIDs)
            try await eventually("every job succeeded", timeout: .seconds(120)) {
                let done = ledger.attempts.withLock { Set($0.filter { !$0.failed }.map(\.timerID)) }
                return done.isSuperset(of: broken.union(fine))
            }
            stop.store(true, ordering: .relaxed)
            await executor.value

            let attempts = ledger.attempts.withLock { $0 }
            let duringOutage = attempts.filter { $0.tenant == "broken" && $0.at < downUntil }.count
            let lastSuccess = attempts.filter { $0.tenant == "broken" && !$0.failed }.map(\.at).max() ?? downUntil
            let fineLags = attempts.filter { $0.tenant == "fine" }.map(\.lag).sorted()
            let fineP95 = fineLags.isEmpty ? 99 : fineLags[min(fineLags.count - 1, fineLags.count * 95 / 100)]
            var kinds: [String] = []
            while let message = try await firstMessage(events, within: .milliseconds(500)) {
                kinds.append(try Sundial_V1_TimerEvent(serializedBytes: message.payload).kind)
            }
            let fineKinds = try await firstMessage(fineEvents, within: .milliseconds(500)).map {
                try Sundial_V1_TimerEvent(serializedBytes: $0.payload).kind
            }
            print(
                "breaker: broken tenant's downstream down 22 s: \(duringOutage) attempts during the outage for 60 jobs (\(String(format: "%.2f", Double(duringOutage) / 60)) per job), all 60 succeeded, the last \(String(format: "%.1f", lastSuccess.timeIntervalSince(downUntil))) s after recovery; events \(kinds); fine tenant p95 lag \(String(format: "%.2f", fineP95)) s, its events \(fineKinds ?? "none")"
            )
            // Without the breaker every job spends all 5 attempts against the dead downstream
            // (300 attempts) and is dead-lettered.
            #expect(Double(duringOutage) / 60 <= 2, "attempts per job during the outage")
            #expect(!kinds.contains(TimerEventKind.deadLetter))
            #expect(kinds.contains(TimerEventKind.queueBreakerOpened))
            #expect(kinds.contains(TimerEventKind.queueBreakerClosed))
            #expect(lastSuccess.timeIntervalSince(downUntil) < 30)
            // The other tenant on the same queue was never held.
            #expect(fineP95 < 2)
            #expect(fineKinds == nil)
        }
    }
}
