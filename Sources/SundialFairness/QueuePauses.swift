#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Queues an operator holds by hand (`sundial queues pause`): JSON in the quotas KV bucket
/// (key `paused`), read by the governor every period. A paused queue's due fires wait in
/// Sundial exactly as behind an open circuit breaker — unclaimed, no attempt spent — until it is
/// resumed.
public struct QueuePauses: Sendable, Hashable, Codable {
    public struct Pause: Sendable, Hashable, Codable {
        /// When it was paused (Unix ms) and by whom (free text, for `queues status`).
        public var sinceMillis: Int64
        public var by: String

        public init(sinceMillis: Int64, by: String) {
            self.sinceMillis = sinceMillis
            self.by = by
        }
    }

    public var queues: [String: Pause]

    public init(queues: [String: Pause] = [:]) {
        self.queues = queues
    }

    /// Most queues that may be paused at once (the value must fit one KV entry).
    public static let maximumQueues = 1000
    /// Longest `by` kept.
    public static let maximumByBytes = 200

    public func jsonBytes() throws -> [UInt8] {
        try StableJSON.encode(self)
    }

    /// Decodes and checks a stored value (a KV entry is untrusted): at most `maximumQueues`
    /// entries, each named by `isValidQueue`.
    public init(jsonBytes: [UInt8], isValidQueue: (String) -> Bool) throws {
        let decoded = try JSONDecoder().decode(QueuePauses.self, from: Data(jsonBytes))
        guard decoded.queues.count <= Self.maximumQueues, decoded.queues.keys.allSatisfy(isValidQueue),
            decoded.queues.values.allSatisfy({ $0.by.utf8.count <= Self.maximumByBytes })
        else {
            throw DecodingError.dataCorrupted(
                DecodingError.Context(codingPath: [], debugDescription: "paused queues: too many, or an invalid name"))
        }
        self = decoded
    }
}
