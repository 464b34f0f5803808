import Foundation
import Synchronization
import SundialContract
import SundialCore
import SundialExecutor
import SundialProto
import SundialStore
import SundialTestSupport
import SundialWebhook
import Testing

/// The webhook executor against a local HTTP server: signed requests with the Sundial headers;
/// 2xx completes, 5xx and timeouts retry, other 4xx dead-letter at once.
@Suite("Integration: webhook executor")
struct WebhookIntegrationTests {
    @Test("jobs are POSTed signed; 2xx succeeds, a 503 then 200 retries once, a timeout retries, a 400 dead-letters without retry")
    func webhookDeliveries() async throws {
        let secret = Array("test-secret-0123456789".utf8)
        // Per path: the answers in order (the last one repeats).
        let script: [String: [TestHTTPServer.Response]] = [
            "/ok": [.init(status: 200)],
            "/flaky": [.init(status: 503), .init(status: 200)],
            "/slow": [.init(status: 200, delay: .seconds(6)), .init(status: 204)],
            "/bad": [.init(status: 400)],
        ]
        let served = Mutex([String: Int]())
        let server = try TestHTTPServer { request in
            let answers = script[request.path] ?? [.init(status: 404)]
            let index = served.withLock { counts in
                defer { counts[request.path, default: 0] += 1 }
                return counts[request.path, default: 0]
            }
            return answers[min(index, answers.count - 1)]
        }
        defer { server.stop() }

        try await withTestSystem("webhook") { system in
            let client = system.client(tenant: "acme")
            var timers: [String: Sundial_V1_Timer] = [:]
            var executors: [Task<Void, any Error>] = []
            for path in script.keys.sorted() {
                let queue = "hook\(path.replacingOccurrences(of: "/", with: "-"))"
                var request = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: queue, payload: "body of \(path)")
                request.retryPolicy.maxAttempts = 5
                request.retryPolicy.initialBackoff = .init(seconds: 0, nanos: 200_000_000)
                timers[path] = try await client.create(request).timer
                var config = WebhookConfig(url: server.url(path), secret: secret)
                // Generous but for the path that tests the timeout: a loaded machine must not
                // turn a slow local answer into a spurious failure.
                config.timeout = path == "/slow" ? .seconds(2) : .seconds(10)
                let executor = try WebhookExecutor(worker: try await system.worker(queue: queue), config: config)
                executors.append(Task { try await executor.run() })
            }
            defer { executors.forEach { $0.cancel() } }

            for (path, expected) in [("/ok", Sundial_V1_TimerState.succeeded), ("/flaky", .succeeded), ("/slow", .succeeded), ("/bad", .dead)] {
                let id = timers[path]!.id
                do {
                    try await eventually("\(path) ends \(expected)", timeout: .seconds(20)) {
                        try await client.get(id).state == expected
                    }
                } catch {
                    // Where it stands, to diagnose a failure.
                    print("webhook test: \(path) is \(try await client.get(id).state); requests \(server.requests.map { "\($0.path)@\($0.receivedAt.timeIntervalSince1970)" }); runs \(try await system.store.runs(timerID: TimerID.parse(id)!).map { "\($0.attempt):\($0.outcome):\($0.error ?? "")" })")
                    throw error
                }
            }
            let requests = server.requests
            func received(_ path: String) -> [TestHTTPServer.Request] { requests.filter { $0.path == path } }
            #expect(received("/ok").count == 1)
            #expect(received("/flaky").count == 2)
            #expect(received("/bad").count == 1)  // a 400 is not retried
            #expect(received("/slow").count >= 2)  // the first timed out (after 2 s of 6 s)

            // Every request carries the Sundial headers and a valid signature of its body.
            for request in requests {
                let timer = try #require(timers[request.path])
                #expect(request.method == "POST")
                #expect(request.headers["sundial-timer-id"] == timer.id)
                #expect(request.headers["sundial-tenant"] == "acme")
                #expect(request.headers["idempotency-key"] == "\(timer.id):0")
                #expect(request.headers["sundial-scheduled-at"] != nil)
                #expect(String(decoding: request.body, as: UTF8.self) == "body of \(request.path)")
                let timestamp = try #require(request.headers["sundial-timestamp"].flatMap { Int64($0) })
                #expect(abs(Double(timestamp) - request.receivedAt.timeIntervalSince1970) < 5)
                let signature = try #require(request.headers["sundial-signature"])
                #expect(WebhookRequest.verify(header: signature, secret: secret, timestamp: timestamp, body: request.body))
                #expect(!WebhookRequest.verify(header: signature, secret: Array("another-secret-0123456".utf8), timestamp: timestamp, body: request.body))
            }
            #expect(received("/flaky").compactMap { $0.headers["sundial-attempt"] } == ["1", "2"])
            let badRuns = try await system.store.runs(timerID: TimerID.parse(timers["/bad"]!.id)!)
            #expect(badRuns.map(\.outcome) == [.dead])
            #expect(badRuns.first?.error == "HTTP 400")
        }
    }
}
