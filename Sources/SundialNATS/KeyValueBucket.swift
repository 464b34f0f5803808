import Foundation

/// A JetStream key-value bucket (stream `KV_<bucket>`, subjects `$KV.<bucket>.<key>`),
/// managed through the JetStream API so its config is explicit. Used for quotas that
/// dispatchers read and a governor writes.
public struct KeyValueBucket: Sendable {
    public let name: String
    public let connection: NATSConnection

    var streamName: String { "KV_\(name)" }

    /// A handle on a bucket that exists (or will: reads of a missing bucket fail).
    public init(name: String, connection: NATSConnection) {
        self.name = name
        self.connection = connection
    }

    /// Creates the bucket if missing (or updates its config; with `keepExisting`, an existing
    /// bucket is left as the services made it, e.g. with its replicas). Idempotent.
    public static func ensure(
        _ name: String, history: Int = 1, connection: NATSConnection, storage: JetStreamStreamConfig.Storage = .file,
        replicas: Int = 1, keepExisting: Bool = false
    ) async throws -> KeyValueBucket {
        var config = JetStreamStreamConfig(name: "KV_\(name)", subjects: ["$KV.\(name).>"])
        config.replicas = replicas
        config.maxMessagesPerSubject = history
        config.allowRollup = true
        config.allowDirect = true
        config.denyDelete = true
        config.storage = storage
        if keepExisting {
            try await connection.createStreamIfAbsent(config)
        } else {
            try await connection.ensureStream(config)
        }
        return KeyValueBucket(name: name, connection: connection)
    }

    /// Stores `value`; returns the revision (stream sequence).
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) async throws -> UInt64 {
        try await connection.jetStream.publish(
            NATSOutgoingMessage(subject: "$KV.\(name).\(key)", payload: value)
        ).sequence
    }

    /// Stores `value` only if the key's latest revision is `expectedRevision` (0: the key was
    /// never written) — compare-and-set through `Nats-Expected-Last-Subject-Sequence`. Throws a
    /// `.jetStream` error when another writer got there first.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8], expectedRevision: UInt64) async throws -> UInt64 {
        var headers = NATSHeaders()
        headers["Nats-Expected-Last-Subject-Sequence"] = String(expectedRevision)
        return try await connection.jetStream.publish(
            NATSOutgoingMessage(subject: "$KV.\(name).\(key)", headers: headers, payload: value)
        ).sequence
    }

    /// The subject a core subscriber watches to see every new value of `key` as it is written.
    public func subject(of key: String) -> String { "$KV.\(name).\(key)" }

    /// The latest value, or nil if the key was never written or was deleted.
    public func get(_ key: String) async throws -> (value: [UInt8], revision: UInt64)? {
        guard let stored = try await connection.lastMessage(stream: streamName, subject: "$KV.\(name).\(key)")
        else { return nil }
        if stored.rawHeaders.contains("KV-Operation: DEL") || stored.rawHeaders.contains("KV-Operation: PURGE") {
            return nil
        }
        return (stored.payload, stored.sequence)
    }

    /// Marks the key deleted (a tombstone, as the KV protocol does).
    public func delete(_ key: String) async throws {
        var headers = NATSHeaders()
        headers["KV-Operation"] = "DEL"
        _ = try await connection.jetStream.publish(
            NATSOutgoingMessage(subject: "$KV.\(name).\(key)", headers: headers))
    }
}
