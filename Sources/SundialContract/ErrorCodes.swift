import SundialProto
import SwiftProtobuf

/// The error contract: NATS micro headers plus a `sundial.v1.Status` body (`SundialMessaging`
/// reads and writes the reply form).
public enum SundialErrorCode: Int, Sendable {
    case invalidArgument = 400
    case forbidden = 403
    case notFound = 404
    /// Conflict, including "already fired" and idempotency-key reuse with another request.
    case conflict = 409
    case quotaExceeded = 429
    case `internal` = 500
    case unavailable = 503
}

/// An error a Sundial service returns to a client.
public struct SundialError: Error, Sendable, CustomStringConvertible {
    public var code: SundialErrorCode
    public var message: String
    public var violations: [Sundial_V1_FieldViolation]
    /// When to send again (429 from admission control); nil when not said.
    public var retryAfter: Duration?

    public init(_ code: SundialErrorCode, _ message: String, violations: [Sundial_V1_FieldViolation]) {
        self.code = code
        self.message = message
        self.violations = violations
    }

    public init(_ code: SundialErrorCode, _ message: String, violations: [(field: String, reason: String)] = []) {
        self.code = code
        self.message = message
        self.violations = violations.map {
            var violation = Sundial_V1_FieldViolation()
            violation.field = $0.field
            violation.description_p = $0.reason
            return violation
        }
    }

    public static func invalid(_ field: String, _ reason: String) -> SundialError {
        SundialError(.invalidArgument, "\(field): \(reason)", violations: [(field, reason)])
    }

    public var status: Sundial_V1_Status {
        var status = Sundial_V1_Status()
        status.code = Int32(code.rawValue)
        status.message = message
        status.violations = violations
        if let retryAfter {
            status.retryAfter = Google_Protobuf_Duration(
                seconds: retryAfter.components.seconds, nanos: Int32(retryAfter.components.attoseconds / 1_000_000_000))
        }
        return status
    }

    /// `retryAfter` in whole seconds, rounded up (at least 1): the `Retry-After` header.
    public var retryAfterSeconds: Int64? {
        guard let retryAfter else { return nil }
        let components = retryAfter.components
        return max(1, components.seconds + (components.attoseconds > 0 ? 1 : 0))
    }

    public var description: String {
        var text = "\(code.rawValue) \(message)"
        for violation in violations where !message.contains(violation.description_p) {
            text += "; \(violation.field): \(violation.description_p)"
        }
        return text
    }
}
