#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Circuit breaker settings an operator set for particular queues (`sundial queues
/// configure`): JSON in the quotas KV bucket (key `breakers`), read by the governor every
/// period. Each field overrides the governor's default for that queue (env
/// `SUNDIAL_GOVERNOR_BREAKER_*`); an absent field keeps the default. The queue's breaker and
/// the breakers of its tenants on it use the result.
public struct QueueBreakerSettings: Sendable, Hashable, Codable {
    public struct Override: Sendable, Hashable, Codable {
        public var windowSeconds: Double?
        public var minimumSamples: Int?
        public var failureRatio: Double?
        public var coolDownSeconds: Double?
        public var maximumCoolDownSeconds: Double?
        public var probes: Int?
        public var probeTimeoutSeconds: Double?

        public init(
            windowSeconds: Double? = nil, minimumSamples: Int? = nil, failureRatio: Double? = nil,
            coolDownSeconds: Double? = nil, maximumCoolDownSeconds: Double? = nil, probes: Int? = nil,
            probeTimeoutSeconds: Double? = nil
        ) {
            self.windowSeconds = windowSeconds
            self.minimumSamples = minimumSamples
            self.failureRatio = failureRatio
            self.coolDownSeconds = coolDownSeconds
            self.maximumCoolDownSeconds = maximumCoolDownSeconds
            self.probes = probes
            self.probeTimeoutSeconds = probeTimeoutSeconds
        }

        public var isEmpty: Bool { self == Override() }

        /// `base` with this override's fields, or nil when a number is unusable (not finite,
        /// beyond a day) or the result is not a valid configuration.
        public func applied<C: Clock>(to base: CircuitBreaker<C>.Configuration) -> CircuitBreaker<C>.Configuration?
        where C.Duration == Duration {
            func duration(_ seconds: Double?, _ fallback: Duration) -> Duration? {
                guard let seconds else { return fallback }
                guard seconds.isFinite, seconds > 0, seconds <= 86_400 else { return nil }
                return .milliseconds(Int64((seconds * 1000).rounded()))
            }
            guard let window = duration(windowSeconds, base.window),
                let coolDown = duration(coolDownSeconds, base.coolDown),
                let probeTimeout = duration(probeTimeoutSeconds, base.probeTimeout)
            else { return nil }
            // A cool-down raised above the default maximum lifts the maximum with it.
            guard let maximum = duration(maximumCoolDownSeconds, max(base.maximumCoolDown, coolDown)) else { return nil }
            var config = base
            config.window = window
            config.coolDown = coolDown
            config.maximumCoolDown = maximum
            config.probeTimeout = probeTimeout
            if let minimumSamples { config.minimumSamples = minimumSamples }
            if let failureRatio { config.failureRatio = failureRatio }
            if let probes { config.probes = probes }
            return config.problem == nil ? config : nil
        }
    }

    public var queues: [String: Override]

    public init(queues: [String: Override] = [:]) {
        self.queues = queues
    }

    /// Most queues with their own settings (the value must fit one KV entry).
    public static let maximumQueues = 1000

    public func jsonBytes() throws -> [UInt8] {
        try StableJSON.encode(self)
    }

    /// Decodes and checks a stored value (a KV entry is untrusted): at most `maximumQueues`
    /// entries, each named by `isValidQueue`. Numbers are checked per queue when applied.
    public init(jsonBytes: [UInt8], isValidQueue: (String) -> Bool) throws {
        let decoded = try JSONDecoder().decode(QueueBreakerSettings.self, from: Data(jsonBytes))
        guard decoded.queues.count <= Self.maximumQueues, decoded.queues.keys.allSatisfy(isValidQueue) else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: [], debugDescription: "breaker settings: too many queues, or an invalid name"))
        }
        self = decoded
    }
}
