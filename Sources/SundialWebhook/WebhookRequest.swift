import Foundation
import SundialExecutor
import SundialSchedule

/// What the webhook executor sends for a job, and how it judges the answer — pure, so both are
/// unit-tested apart from HTTP.
///
/// The request: `POST <url>` with the job's payload as the body (`application/octet-stream`)
/// and the headers below. The signature is `v1=` + hex HMAC-SHA256 under the shared secret of
/// `<Sundial-Timestamp>.<body>`; a receiver recomputes it, compares in constant time, and
/// refuses timestamps far from its clock (replays).
public enum WebhookRequest {
    public static let timerIDHeader = "Sundial-Timer-Id"
    public static let tenantHeader = "Sundial-Tenant"
    public static let scheduledAtHeader = "Sundial-Scheduled-At"
    public static let occurrenceHeader = "Sundial-Occurrence"
    public static let attemptHeader = "Sundial-Attempt"
    /// The same for every attempt of one occurrence (`<timer>:<occurrence>`): a receiver that
    /// saw it succeed can answer 2xx again without doing the work twice.
    public static let idempotencyKeyHeader = "Idempotency-Key"
    /// Unix seconds when the request was signed.
    public static let timestampHeader = "Sundial-Timestamp"
    public static let signatureHeader = "Sundial-Signature"

    /// The headers for `job` signed at `timestamp` (Unix seconds).
    public static func headers(for job: SundialJob, secret: [UInt8], timestamp: Int64) -> [(String, String)] {
        [
            ("Content-Type", "application/octet-stream"),
            (timerIDHeader, job.timerID),
            (tenantHeader, job.tenant),
            (scheduledAtHeader, RFC3339.format(job.scheduledAt)),
            (occurrenceHeader, String(job.occurrence)),
            (attemptHeader, String(job.attempt)),
            (idempotencyKeyHeader, "\(job.timerID):\(job.occurrence)"),
            (timestampHeader, String(timestamp)),
            (signatureHeader, signature(secret: secret, timestamp: timestamp, body: job.payload)),
        ]
    }

    /// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
    public static func signature(secret: [UInt8], timestamp: Int64, body: [UInt8]) -> String {
        "v1=" + hex(HMACSHA256.authenticationCode(key: secret, message: Array("\(timestamp).".utf8) + body))
    }

    /// Whether `header` is a valid signature of `body` at `timestamp` (what a receiver does;
    /// compares in constant time).
    public static func verify(header: String, secret: [UInt8], timestamp: Int64, body: [UInt8]) -> Bool {
        let expected = Array(signature(secret: secret, timestamp: timestamp, body: body).utf8)
        let given = Array(header.utf8)
        guard expected.count == given.count else { return false }
        return zip(expected, given).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// How an answer settles the job.
    public enum Verdict: Sendable, Hashable {
        case succeeded
        /// `retryable`: the retry policy decides (false: dead-lettered at once);
        /// `downstream`: the endpoint failed (counts towards the queue's circuit breaker),
        /// rather than the job.
        case failed(reason: String, retryable: Bool, downstream: Bool)
    }

    /// 2xx completes; 408, 429 and 5xx fail with retry (the endpoint's trouble); other 4xx fail
    /// without retry (the job's: a retry would get the same answer); no answer (timeout,
    /// connection refused) fails with retry. Anything else (1xx, 3xx not followed) fails with
    /// retry as the endpoint's.
    public static func verdict(status: Int?, transportError: String? = nil) -> Verdict {
        guard let status else {
            return .failed(reason: "no answer: \(transportError ?? "unknown error")", retryable: true, downstream: true)
        }
        switch status {
        case 200..<300:
            return .succeeded
        case 408, 429, 500..<600:
            return .failed(reason: "HTTP \(status)", retryable: true, downstream: true)
        case 400..<500:
            return .failed(reason: "HTTP \(status)", retryable: false, downstream: false)
        default:
            return .failed(reason: "HTTP \(status)", retryable: true, downstream: true)
        }
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
