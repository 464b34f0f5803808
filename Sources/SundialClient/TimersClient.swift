import SundialContract
import SundialMessaging
import SundialNATS
import SundialProto

/// The client side of the Timers API: protobuf over NATS request/reply. Error replies are
/// thrown as `SundialError` (code, message, field violations).
public struct TimersClient: Sendable {
    public let connection: NATSConnection
    public let tenant: String
    public let namespace: SundialNamespace
    public var timeout: Duration

    public init(connection: NATSConnection, tenant: String, namespace: SundialNamespace = .standard, timeout: Duration = .seconds(5)) {
        self.connection = connection
        self.tenant = tenant
        self.namespace = namespace
        self.timeout = timeout
    }

    public func create(_ request: Sundial_V1_CreateTimerRequest) async throws -> Sundial_V1_CreateTimerResponse {
        try await call(.create, request)
    }

    public func get(_ timerID: String) async throws -> Sundial_V1_Timer {
        var request = Sundial_V1_GetTimerRequest()
        request.timerID = timerID
        let response: Sundial_V1_GetTimerResponse = try await call(.get, request)
        return response.timer
    }

    /// Sends raw bytes (tests use it for malformed requests) and returns the raw reply.
    public func raw(_ method: TimersMethod, _ body: [UInt8]) async throws -> NATSMessage {
        try await connection.request(subject: namespace.request(tenant: tenant, method: method), payload: body, timeout: timeout)
    }

    func call<Request: SwiftProtobuf.Message, Reply: SwiftProtobuf.Message>(_ method: TimersMethod, _ request: Request)
        async throws -> Reply
    {
        let reply = try await raw(method, try request.serializedBytes())
        if let error = SundialError(reply: reply) { throw error }
        return try Reply(serializedBytes: reply.payload)
    }
}
