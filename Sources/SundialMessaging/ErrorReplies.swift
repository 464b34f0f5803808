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
            body: (try? status.serializedBytes() as [UInt8]) ?? [])
    }

    /// Reads an error reply, or returns nil for a success reply.
    public init?(reply: NATSMessage) {
        guard let codeText = reply.headers[SundialHeader.serviceErrorCode] else { return nil }
        let status = try? Sundial_V1_Status(serializedBytes: reply.payload)
        self.init(
            SundialErrorCode(rawValue: Int(codeText) ?? 500) ?? .internal,
            status?.message ?? reply.headers[SundialHeader.serviceError] ?? "error",
            violations: status?.violations ?? [])
    }
}
