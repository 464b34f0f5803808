import Foundation
import SundialCore
import SundialDispatcher
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
}
