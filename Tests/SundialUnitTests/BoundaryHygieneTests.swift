import Foundation
import SundialContract
import SundialCore
import SundialNATS
import SundialProto
import Testing

/// Bounds on what crosses a boundary outside the result parser: stored retry policies, header
/// values built from request text, waiting requests per tenant, executor durable names.
@Suite("Boundary hygiene")
struct BoundaryHygieneTests {
    @Test("stored retry policies with absurd backoffs are clamped, so the delay never overflows")
    func retryBackoffClamped() throws {
        var policy = Sundial_V1_RetryPolicy()
        policy.maxAttempts = UInt32.max
        policy.initialBackoff = .init(seconds: Int64.max, nanos: 0)
        policy.maxBackoff = .init(seconds: Int64.max, nanos: Int32.max)
        let backoff = RetryBackoff(policy)
        #expect(backoff.maxAttempts == RetryBackoff.mostAttempts)
        #expect(backoff.initial == RetryBackoff.longestBackoff)
        #expect(backoff.maximum == RetryBackoff.longestBackoff)
        for attempt in [1, 2, 40, 99, Int.max] {
            let delay = backoff.delay(after: attempt, timerID: "0193a6f0-0000-7000-8000-000000000001", occurrence: Int64.max)
            #expect(delay <= RetryBackoff.longestBackoff)
            #expect(delay >= .zero)
        }
    }

    @Test("header values built from request text lose control characters and are bounded")
    func headerValues() {
        #expect(HeaderValue.sanitized("a\r\nX-Injected: 1") == "a  X-Injected: 1")
        #expect(HeaderValue.sanitized(String(repeating: "é", count: 4000)).utf8.count <= HeaderValue.maximumBytes)
        #expect(HeaderValue.sanitized("plain") == "plain")
    }

    @Test("waiting requests are bounded per tenant and in total, and served round-robin")
    func fairRequestQueues() {
        var queues = FairRequestQueues<String>(perPartition: 3, total: 5)
        for n in 0..<4 { _ = queues.enqueue("w\(n)", partition: "whale") }
        #expect(queues.waiting("whale") == 3)  // the fourth was refused
        let s0 = queues.enqueue("s0", partition: "small")
        let s1 = queues.enqueue("s1", partition: "small")
        let t0 = queues.enqueue("t0", partition: "third")
        #expect(s0 && s1)
        #expect(!t0)  // the room is full
        var order: [String] = []
        while let next = queues.dequeue() { order.append(next) }
        #expect(order == ["w0", "s0", "w1", "s1", "w2"])
        #expect(queues.count == 0)
        // Long single-tenant runs keep FIFO order across internal compaction.
        var long = FairRequestQueues<Int>(perPartition: 5000, total: 5000)
        for n in 0..<3000 { _ = long.enqueue(n, partition: "a") }
        var taken: [Int] = []
        while let n = long.dequeue() { taken.append(n) }
        #expect(taken == Array(0..<3000))
    }

    @Test("queue names map to distinct executor durables, also when dots and underscores collide")
    func executorDurablesAreDistinct() {
        let namespace = SundialNamespace.standard
        let queues = ["a.b", "a_b", "a.b_c", "a_b.c", "a..b", "emails", "a-b", "a.b.c", "a_b_c", "a.b-c"]
            .filter { SubjectToken.isValidQueue($0) }
        let names = queues.map { namespace.executorDurable(queue: $0) }
        #expect(Set(names).count == queues.count)
        #expect(namespace.executorDurable(queue: "emails") == "executor-emails")
        for name in names {
            #expect(!name.contains("."))
            #expect(name.utf8.count <= 9 + 128 + 17)
        }
    }
}
