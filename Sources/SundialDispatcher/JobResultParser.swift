import Foundation
import SundialContract
import SundialCore
import SundialProto
import SundialStore

/// Why an executor's result was refused. Results come from tenants' code: every field is
/// converted with checks, and a refused result is terminated, counted and reported to the
/// tenant (`result_rejected` event), never retried and never trapped on.
public enum JobResultRejection: Error, Sendable, Hashable {
    case undecodable
    case invalidTimerID
    /// Occurrences are 0-based and stored as bigint.
    case occurrenceOutOfRange(UInt64)
    /// Attempts are 1-based; no policy allows more than `JobResultParser.maximumAttempt`.
    case attemptOutOfRange(UInt32)
    /// The result names another tenant than the subject it was published on.
    case tenantMismatch(String)
    /// Versions are stored as bigint (0 means not given).
    case versionOutOfRange(UInt64)

    public var reason: String {
        switch self {
        case .undecodable: return "undecodable JobResult"
        case .invalidTimerID: return "timer_id is not a timer id"
        case .occurrenceOutOfRange(let value): return "occurrence \(value) is out of range (0…\(Int64.max))"
        case .attemptOutOfRange(let value):
            return "attempt \(value) is out of range (1…\(JobResultParser.maximumAttempt))"
        case .tenantMismatch(let tenant):
            return "tenant '\(tenant.prefix(64))' differs from the results subject's tenant"
        case .versionOutOfRange(let value): return "version \(value) is out of range (0…\(Int64.max))"
        }
    }

    /// Stats key per reason.
    public var kind: String {
        switch self {
        case .undecodable: return "undecodable"
        case .invalidTimerID: return "invalid_timer_id"
        case .occurrenceOutOfRange: return "occurrence_out_of_range"
        case .attemptOutOfRange: return "attempt_out_of_range"
        case .tenantMismatch: return "tenant_mismatch"
        case .versionOutOfRange: return "version_out_of_range"
        }
    }
}

/// A checked executor result.
public struct ParsedJobResult: Sendable, Hashable {
    public var outcome: JobOutcome
    /// The reported `finished_at` was missing or outside the accepted skew and was replaced
    /// by the time the result was received.
    public var finishedAtReplaced: Bool
    /// The tenant (the body's, else the subject's) and the work queue the executor names ("" when
    /// absent or not a queue name): whose downstream the result says something about.
    public var tenant: String
    public var queue: String
    /// A failure that counts towards the downstream's circuit breaker: classified as the
    /// downstream's, or not classified.
    public var downstreamFailure: Bool
}

/// Converts a `JobResult` from the wire into a `JobOutcome`, with range checks on every field.
public enum JobResultParser {
    /// Larger than any retry policy allows (Ingest caps `max_attempts` at 100); redrives add
    /// attempts, so leave room.
    public static let maximumAttempt = UInt32(ArmedRun.maximumAttempt)
    /// Error text kept per run.
    public static let maximumErrorBytes = 2000
    /// How far an executor's `finished_at` may be from our clock before it is replaced by the
    /// receive time: it is recorded, never decided on, and Postgres must be able to store it.
    public static let acceptedClockSkew: TimeInterval = 86_400

    /// `subjectTenant` is the tenant token of the results subject (NATS permissions bind it
    /// to the executor's credentials); an empty `tenant` in the body is taken to mean it.
    public static func parse(_ payload: [UInt8], subjectTenant: String?, receivedAt: Date)
        -> Result<ParsedJobResult, JobResultRejection>
    {
        guard let result = try? Sundial_V1_JobResult(serializedBytes: payload) else { return .failure(.undecodable) }
        if let subjectTenant, !result.tenant.isEmpty, result.tenant != subjectTenant {
            return .failure(.tenantMismatch(result.tenant))
        }
        guard let id = TimerID.parse(result.timerID) else { return .failure(.invalidTimerID) }
        guard let occurrence = Int64(exactly: result.occurrence) else {
            return .failure(.occurrenceOutOfRange(result.occurrence))
        }
        guard (1...maximumAttempt).contains(result.attempt) else {
            return .failure(.attemptOutOfRange(result.attempt))
        }
        guard let version = Int64(exactly: result.version) else { return .failure(.versionOutOfRange(result.version)) }
        var finishedAt = receivedAt
        var replaced = true
        if result.hasFinishedAt, (0..<1_000_000_000).contains(result.finishedAt.nanos) {
            let seconds = Double(result.finishedAt.seconds) + Double(result.finishedAt.nanos) / 1e9
            let reported = Date(timeIntervalSince1970: seconds)
            if abs(reported.timeIntervalSince(receivedAt)) <= acceptedClockSkew {
                finishedAt = reported
                replaced = false
            }
        }
        let error = result.error.isEmpty ? nil : String(decoding: Array(result.error.utf8.prefix(maximumErrorBytes)), as: UTF8.self)
        return .success(
            ParsedJobResult(
                outcome: JobOutcome(
                    key: FireKey(id: id, occurrence: occurrence, attempt: Int(result.attempt)),
                    success: result.success, error: error, finishedAt: finishedAt,
                    retryable: !result.hasRetryable || result.retryable, version: version == 0 ? nil : version),
                finishedAtReplaced: replaced && result.hasFinishedAt,
                tenant: result.tenant.isEmpty ? (subjectTenant ?? "") : result.tenant,
                queue: SubjectToken.isValidQueue(result.queue) ? result.queue : "",
                downstreamFailure: !result.success && result.failureClass != .job))
    }
}
