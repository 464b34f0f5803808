import Foundation
import SundialContract
import SundialCore
import SundialDispatcher
import SundialNATS
import SundialProto
import Testing

/// Executor results are untrusted: every field is converted with checks (issue 17).
@Suite("Job result parsing")
struct JobResultParserTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let id = TimerID.text(TimerID.make(now: now))

    static func bytes(_ edit: (inout Sundial_V1_JobResult) -> Void = { _ in }) throws -> [UInt8] {
        var result = Sundial_V1_JobResult()
        result.tenant = "acme"
        result.timerID = id
        result.occurrence = 3
        result.attempt = 2
        result.success = false
        result.error = "boom"
        result.finishedAt = .init(date: now.addingTimeInterval(-5))
        edit(&result)
        return try result.serializedBytes()
    }

    static func parse(_ bytes: [UInt8], tenant: String? = "acme") -> Result<ParsedJobResult, JobResultRejection> {
        JobResultParser.parse(bytes, subjectTenant: tenant, receivedAt: now)
    }

    @Test("a well-formed result becomes an outcome with its own values")
    func wellFormed() throws {
        let parsed = try Self.parse(try Self.bytes()).get()
        #expect(parsed.outcome.key.occurrence == 3)
        #expect(parsed.outcome.key.attempt == 2)
        #expect(parsed.outcome.error == "boom")
        #expect(!parsed.outcome.success)
        #expect(parsed.outcome.finishedAt == Self.now.addingTimeInterval(-5))
        #expect(!parsed.finishedAtReplaced)
    }

    @Test("the failure class, the queue and retryable: false are read; an invalid queue is dropped")
    func classesAndRetryable() throws {
        var parsed = try Self.parse(try Self.bytes()).get()
        #expect(parsed.outcome.retryable && parsed.downstreamFailure && parsed.queue == "" && parsed.tenant == "acme")
        parsed = try Self.parse(try Self.bytes {
            $0.failureClass = .job
            $0.retryable = false
            $0.queue = "webhooks"
        }).get()
        #expect(!parsed.outcome.retryable && !parsed.downstreamFailure && parsed.queue == "webhooks")
        parsed = try Self.parse(try Self.bytes {
            $0.failureClass = .downstream
            $0.retryable = true
            $0.queue = "no spaces allowed"
        }).get()
        #expect(parsed.outcome.retryable && parsed.downstreamFailure && parsed.queue == "")
        // A success is never a downstream failure, whatever class it claims.
        parsed = try Self.parse(try Self.bytes {
            $0.success = true
            $0.failureClass = .downstream
        }).get()
        #expect(!parsed.downstreamFailure)
    }

    @Test("out-of-range numbers are refused, never trapped on")
    func outOfRange() throws {
        #expect(Self.parse(try Self.bytes { $0.occurrence = UInt64.max }) == .failure(.occurrenceOutOfRange(UInt64.max)))
        #expect(Self.parse(try Self.bytes { $0.occurrence = UInt64(Int64.max) + 1 })
            == .failure(.occurrenceOutOfRange(UInt64(Int64.max) + 1)))
        #expect(Self.parse(try Self.bytes { $0.occurrence = UInt64(Int64.max) + 7 })
            == .failure(.occurrenceOutOfRange(UInt64(Int64.max) + 7)))
        #expect(Self.parse(try Self.bytes { $0.attempt = 0 }) == .failure(.attemptOutOfRange(0)))
        #expect(Self.parse(try Self.bytes { $0.attempt = UInt32.max }) == .failure(.attemptOutOfRange(UInt32.max)))
        #expect(Self.parse(try Self.bytes { $0.timerID = "x" }) == .failure(.invalidTimerID))
        #expect(Self.parse([0xFF, 0xFF, 0xFF]) == .failure(.undecodable))
        #expect(Self.parse(try Self.bytes { $0.version = UInt64(Int64.max) + 1 })
            == .failure(.versionOutOfRange(UInt64(Int64.max) + 1)))
        // The largest accepted values pass.
        let largest = try Self.parse(
            try Self.bytes {
                $0.occurrence = UInt64(Int64.max)
                $0.attempt = JobResultParser.maximumAttempt
                $0.version = UInt64(Int64.max)
            }
        ).get()
        #expect(largest.outcome.key.occurrence == Int64.max)
        #expect(largest.outcome.version == Int64.max)
        // Version 0 means the executor did not say.
        #expect(try Self.parse(try Self.bytes { $0.version = 0 }).get().outcome.version == nil)
    }

    @Test("a result naming another tenant than its subject is refused")
    func tenantMismatch() throws {
        #expect(Self.parse(try Self.bytes { $0.tenant = "globex" }) == .failure(.tenantMismatch("globex")))
        // An empty tenant in the body means the subject's.
        #expect((try? Self.parse(try Self.bytes { $0.tenant = "" }).get()) != nil)
    }

    @Test("finished_at beyond the accepted skew, or malformed, is replaced by the receive time")
    func finishedAtChecked() throws {
        for bad: Google_Protobuf_Timestamp in [
            .init(seconds: Int64.max, nanos: 0), .init(seconds: Int64.min, nanos: 0),
            .init(seconds: 1_800_000_000, nanos: -1), .init(seconds: 1_800_000_000, nanos: 1_000_000_000),
            .init(date: Self.now.addingTimeInterval(JobResultParser.acceptedClockSkew + 1)),
        ] {
            let parsed = try Self.parse(try Self.bytes { $0.finishedAt = bad }).get()
            #expect(parsed.outcome.finishedAt == Self.now)
            #expect(parsed.finishedAtReplaced)
        }
        let missing = try Self.parse(try Self.bytes { $0.clearFinishedAt() }).get()
        #expect(missing.outcome.finishedAt == Self.now)
        #expect(!missing.finishedAtReplaced)
    }

    @Test("error text is bounded")
    func errorBounded() throws {
        let parsed = try Self.parse(try Self.bytes { $0.error = String(repeating: "é", count: 5000) }).get()
        #expect((parsed.outcome.error?.utf8.count ?? 0) <= JobResultParser.maximumErrorBytes + 3)
    }

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
            let delay = backoff.delay(after: attempt, timerID: Self.id, occurrence: Int64.max)
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
