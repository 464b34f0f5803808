import SundialContract
import SundialNATS
import SundialProto

/// The error contract on NATS micro replies: headers carry code and message, the body the
/// full `sundial.v1.Status`.
extension SundialError {
    /// The reply form: headers carry code and message, the body the full Status.
    public var microServiceError: MicroServiceError {
        MicroServiceError(
            code: code.rawValue, description: message,
            body: (try? status.serializedBytes() as [UInt8]) ?? [],
            headers: retryAfterSeconds.map { [(SundialHeader.retryAfter, String($0))] } ?? [])
    }

    /// Reads an error reply, or returns nil for a success reply.
    public init?(reply: NATSMessage) {
        guard let codeText = reply.headers[SundialHeader.serviceErrorCode] else { return nil }
        let status = try? Sundial_V1_Status(serializedBytes: reply.payload)
        self.init(
            SundialErrorCode(rawValue: Int(codeText) ?? 500) ?? .internal,
            status?.message ?? reply.headers[SundialHeader.serviceError] ?? "error",
            violations: status?.violations ?? [])
        if let status, status.hasRetryAfter, status.retryAfter.seconds >= 0, status.retryAfter.nanos >= 0 {
            retryAfter = .seconds(status.retryAfter.seconds) + .nanoseconds(Int64(status.retryAfter.nanos))
        } else if let seconds = reply.headers[SundialHeader.retryAfter].flatMap({ Int64($0) }), seconds >= 0 {
            retryAfter = .seconds(seconds)
        }
    }
}
