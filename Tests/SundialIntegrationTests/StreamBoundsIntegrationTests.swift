import Foundation
import SundialContract
import SundialCore
import SundialDispatcher
import SundialExecutor
import SundialNATS
import SundialProto
import SundialTestSupport
import Testing

/// Every stream has a bound, and reaching it hurts only its owner (issue 17).
@Suite("Integration: stream bounds", .serialized)
struct StreamBoundsIntegrationTests {
    @Test("a queue at its backlog bound holds its own fires; other queues go on; it drains when consumed")
    func fullQueueWaitsAlone() async throws {
        var options = TestSystem.Options()
        options.fairness = false
        options.streamLimits.workPerQueue = 30
        try await withTestSystem("full-queue", options) { system in
            let dispatcher = try #require(system.dispatcher)
            let client = system.client(tenant: "acme")
            let events = try await system.api.subscribe(
                subject: system.namespace.event(tenant: "acme", kind: TimerEventKind.queueFull))
            for index in 0..<35 {
                _ = try await client.create(.delay(.milliseconds(300), queue: "nobody", payload: "n\(index)"))
            }
            try await eventually("five fires wait for room") {
                dispatcher.stats.count(of: .queueFullDeferred) >= 5
            }
            #expect(try await system.api.streamMessageCount(system.namespace.workStream) == 30)
            // The tenant is told, once (a minute) for the queue, not once per fire.
            let told = try (try await firstMessage(events, within: .seconds(5))).map {
                try Sundial_V1_TimerEvent(serializedBytes: $0.payload)
            }
            #expect(told?.queue == "nobody")
            #expect(told?.detail.contains("30") == true)
            #expect(told?.hasTimer == false)

            // Another tenant's live queue is not held back by the full one.
            let live = try await system.worker(queue: "live")
            let started = Date()
            for index in 0..<20 {
                _ = try await system.client(tenant: "small").create(
                    .delay(.milliseconds(500), queue: "live", payload: "l\(index)"))
            }
            let jobs = try await collectJobs(live, count: 20, timeout: .seconds(10))
            #expect(jobs.count == 20)
            let lags = jobs.map { $0.0.lag(receivedAt: $0.1) }.sorted()
            print(
                "full queue beside a live one: 20 live jobs, lags \(lags.map { Int($0 * 1000) }) ms, in \(Date().timeIntervalSince(started)) s; queue_full_deferred \(dispatcher.stats.count(of: .queueFullDeferred))"
            )
            // Loose on purpose (the suite runs beside others): held behind the full queue they
            // would not arrive at all until it drained.
            #expect((lags.last ?? 99) < 5)

            // Once consumed, the held fires follow: all 35, once each.
            let nobody = try await system.worker(queue: "nobody")
            let drained = try await collectJobs(nobody, count: 35, timeout: .seconds(20))
            #expect(Set(drained.map { String(decoding: $0.0.payload, as: UTF8.self) }).count == 35)
            #expect(try await collectJobs(nobody, count: 1, timeout: .seconds(2)).isEmpty)
        }
    }

    @Test("a fire waiting for room in a full queue can still be cancelled, and then never runs")
    func cancelWhileQueueFull() async throws {
        var options = TestSystem.Options()
        options.fairness = false
        options.streamLimits.workPerQueue = 1
        try await withTestSystem("full-cancel", options) { system in
            let dispatcher = try #require(system.dispatcher)
            let client = system.client(tenant: "acme")
            let first = try await client.create(.delay(.milliseconds(200), queue: "tight", payload: "first"))
            try await eventually("the queue is full") {
                try await system.api.streamMessageCount(system.namespace.workStream) == 1
            }
            let waiting = try await client.create(.delay(.milliseconds(200), queue: "tight", payload: "waiting"))
            try await eventually("the second fire waits for room") { dispatcher.stats.count(of: .queueFullDeferred) >= 1 }
            // Its run is armed again while it waits: the cancel wins.
            _ = try await client.cancel(waiting.timer.id)
            let worker = try await system.worker(queue: "tight")
            let jobs = try await collectJobs(worker, count: 2, timeout: .seconds(6))
            #expect(jobs.map(\.0.timerID) == [first.timer.id])
        }
    }

    @Test("a tenant at its results bound is refused on its own subject; others publish")
    func resultsBoundPerTenant() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        options.streamLimits.resultsPerTenant = 3
        try await withTestSystem("results-bound", options) { system in
            func publish(_ tenant: String, _ n: Int) async -> Result<JetStreamPubAck, NATSError> {
                var result = Sundial_V1_JobResult()
                result.tenant = tenant
                result.timerID = TimerID.text(TimerID.make())
                result.success = true
                var headers = NATSHeaders()
                headers[SundialHeader.natsMessageID] = "\(tenant)-\(n)"
                return await system.api.jetStream.publish(batch: [
                    NATSOutgoingMessage(
                        subject: system.namespace.results(tenant: tenant), headers: headers,
                        payload: (try? result.serializedBytes()) ?? [])
                ])[0]
            }
            for n in 0..<3 { #expect((try? await publish("whale", n).get()) != nil) }
            let refused = await publish("whale", 3)
            guard case .failure(let error) = refused else {
                Issue.record("the fourth result of a tenant at its bound was stored")
                return
            }
            print("results bound: \(error)")
            #expect(error.isStreamLimitReached)
            #expect((try? await publish("minnow", 0).get()) != nil)
        }
    }
}
