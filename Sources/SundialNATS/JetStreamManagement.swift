import Foundation

/// Stream settings. Built as raw JSON because cnats 3.4.1's `jsStreamConfig` lacks
/// `allow_msg_schedules` (message scheduling needs NATS 2.12 or later).
public struct JetStreamStreamConfig: Sendable {
    public enum Retention: String, Sendable { case limits, interest, workqueue }
    public enum Storage: String, Sendable { case file, memory }

    public var name: String
    public var subjects: [String]
    public var retention: Retention = .limits
    public var storage: Storage = .file
    /// 0 = unlimited. Never shorter than the scheduling horizon on a schedule stream:
    /// an evicted schedule is a lost timer.
    public var maxAge: Duration = .zero
    public var duplicateWindow: Duration = .seconds(120)
    public var replicas: Int = 1
    public var allowMessageSchedules: Bool = false
    public var allowRollup: Bool = false
    public var allowDirect: Bool = false
    public var maxMessagesPerSubject: Int = -1
    /// -1 = unlimited. File-storage bytes are reserved against the server's `max_file_store`.
    public var maxMessages: Int = -1
    public var maxBytes: Int = -1
    /// Largest message accepted (-1 = the server's `max_payload`).
    public var maxMessageSize: Int = -1
    /// `.new` refuses publishes at a limit (the publisher gets an error and keeps the message);
    /// `.old` evicts the oldest.
    public enum Discard: String, Sendable { case old, new }
    public var discard: Discard = .old
    /// With `.new` and `maxMessagesPerSubject`: only the full subject refuses, others go on.
    public var discardNewPerSubject: Bool = false
    public var denyDelete: Bool = false

    public init(name: String, subjects: [String]) {
        self.name = name
        self.subjects = subjects
    }

    var json: [String: Any] {
        var object: [String: Any] = [
            "name": name, "subjects": subjects, "retention": retention.rawValue,
            "storage": storage.rawValue, "max_age": maxAge.nanoseconds,
            "duplicate_window": duplicateWindow.nanoseconds, "num_replicas": replicas,
            "max_msgs_per_subject": maxMessagesPerSubject, "discard": discard.rawValue,
            "max_msgs": maxMessages, "max_bytes": maxBytes, "max_msg_size": maxMessageSize,
            "allow_direct": allowDirect, "deny_delete": denyDelete,
        ]
        if discardNewPerSubject { object["discard_new_per_subject"] = true }
        if allowMessageSchedules { object["allow_msg_schedules"] = true }
        if allowRollup || allowMessageSchedules { object["allow_rollup_hdrs"] = true }
        return object
    }
}

/// Durable pull-consumer settings.
public struct JetStreamConsumerConfig: Sendable {
    public var durableName: String
    public var filterSubjects: [String]
    /// Redelivery after this long without ack/nak/in-progress.
    public var ackWait: Duration = .seconds(30)
    /// -1 = unlimited redeliveries: a fired timer must not vanish after N failures.
    public var maxDeliver: Int = -1
    /// Bounds un-acked messages per consumer: the flow-control limit.
    public var maxAckPending: Int = 20_000
    public var maxWaiting: Int = 512
    public var description: String = ""

    public init(durableName: String, filterSubjects: [String]) {
        self.durableName = durableName
        self.filterSubjects = filterSubjects
    }

    var json: [String: Any] {
        var config: [String: Any] = [
            "durable_name": durableName, "ack_policy": "explicit", "deliver_policy": "all",
            "replay_policy": "instant", "ack_wait": ackWait.nanoseconds,
            "max_deliver": maxDeliver, "max_ack_pending": maxAckPending,
            "max_waiting": maxWaiting, "description": description,
        ]
        if filterSubjects.count == 1 {
            config["filter_subject"] = filterSubjects[0]
        } else {
            config["filter_subjects"] = filterSubjects
        }
        return config
    }
}

extension NATSConnection {
    /// Sends a JetStream API request (`$JS.API.<path>`) and returns the decoded JSON reply,
    /// throwing the server's error object as `.jetStream` with its `err_code`.
    @discardableResult
    public func jetStreamAPI(
        _ path: String, json: [String: Any]? = nil, timeout: Duration = .seconds(5)
    ) async throws -> [String: Any] {
        let body = try json.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        let reply = try await request(
            subject: "$JS.API.\(path)", payload: [UInt8](body), timeout: timeout)
        guard
            let object = try? JSONSerialization.jsonObject(with: Data(reply.payload))
                as? [String: Any]
        else {
            throw NATSError(
                kind: .protocolViolation, message: "undecodable reply to $JS.API.\(path)")
        }
        if let error = object["error"] as? [String: Any] {
            throw NATSError(
                kind: .jetStream, status: Int32((error["code"] as? Int) ?? 0),
                jetStreamErrorCode: error["err_code"] as? Int,
                message: "$JS.API.\(path): \(error["description"] as? String ?? "error")")
        }
        return object
    }

    /// Creates the stream, or updates it to `config` if it exists. Idempotent.
    public func ensureStream(_ config: JetStreamStreamConfig) async throws {
        do {
            // A cluster still forming, or missing a peer, cannot place the replicas yet: the meta
            // leader answers 10005 (no suitable peers), or nothing while it still counts on a
            // peer that just died. Ask again (the same create is idempotent) for up to 12 tries.
            var attempt = 0
            while true {
                do {
                    try await jetStreamAPI("STREAM.CREATE.\(config.name)", json: config.json)
                    break
                } catch let error as NATSError
                    where (error.jetStreamErrorCode == 10005 || error.kind == .timeout) && attempt < 12
                {
                    attempt += 1
                    try await Task.sleep(for: .seconds(1))
                }
            }
        } catch let error as NATSError where error.jetStreamErrorCode == 10058 {
            // 10058: name in use with a different config → update in place. Changing the replica
            // count in a cluster moves data between nodes: give it longer than a plain request.
            try await jetStreamAPI("STREAM.UPDATE.\(config.name)", json: config.json, timeout: .seconds(30))
        }
    }

    /// Creates the stream if there is none by that name; an existing one is left as it is
    /// (for clients such as executors, which must not overwrite the operator's limits).
    public func createStreamIfAbsent(_ config: JetStreamStreamConfig) async throws {
        do {
            try await jetStreamAPI("STREAM.CREATE.\(config.name)", json: config.json)
        } catch let error as NATSError where error.jetStreamErrorCode == 10058 {
            return
        }
    }

    public func deleteStream(_ name: String) async throws {
        try await jetStreamAPI("STREAM.DELETE.\(name)")
    }

    public func streamInfo(_ name: String) async throws -> [String: Any] {
        try await jetStreamAPI("STREAM.INFO.\(name)")
    }

    /// Messages stored per subject matching `subjects` (wildcards allowed): `state.subjects`
    /// of `STREAM.INFO` with a subjects filter (first page, up to the server's page size).
    public func messageCounts(stream name: String, subjects: String) async throws -> [String: UInt64] {
        let info = try await jetStreamAPI("STREAM.INFO.\(name)", json: ["subjects_filter": subjects])
        let counts = (info["state"] as? [String: Any])?["subjects"] as? [String: Any] ?? [:]
        return counts.compactMapValues { ($0 as? NSNumber)?.uint64Value }
    }

    /// Messages currently stored in the stream.
    public func streamMessageCount(_ name: String) async throws -> UInt64 {
        let info = try await streamInfo(name)
        return ((info["state"] as? [String: Any])?["messages"] as? NSNumber)?.uint64Value ?? 0
    }

    /// Creates or updates a durable consumer. Idempotent.
    public func ensureConsumer(stream: String, _ config: JetStreamConsumerConfig) async throws {
        try await jetStreamAPI(
            "CONSUMER.CREATE.\(stream).\(config.durableName)",
            json: ["stream_name": stream, "config": config.json])
    }

    /// Every consumer of `stream` (`CONSUMER.LIST`, all pages; at most `limit` consumers).
    public func consumers(of stream: String, limit: Int = 10_000) async throws -> [[String: Any]] {
        var all: [[String: Any]] = []
        while all.count < limit {
            let page = try await jetStreamAPI("CONSUMER.LIST.\(stream)", json: ["offset": all.count])
            let consumers = page["consumers"] as? [[String: Any]] ?? []
            all += consumers
            let total = (page["total"] as? NSNumber)?.intValue ?? 0
            if consumers.isEmpty || all.count >= total { break }
        }
        return all
    }

    public func consumerInfo(stream: String, durable: String) async throws -> [String: Any] {
        try await jetStreamAPI("CONSUMER.INFO.\(stream).\(durable)")
    }

    /// Removes all messages on subjects matching `subject` (wildcards allowed).
    /// Returns how many were purged.
    @discardableResult
    public func purge(stream: String, subject: String) async throws -> UInt64 {
        let reply = try await jetStreamAPI("STREAM.PURGE.\(stream)", json: ["filter": subject])
        return (reply["purged"] as? NSNumber)?.uint64Value ?? 0
    }

    /// The last message stored on `subject`, or nil.
    public func lastMessage(stream: String, subject: String) async throws -> StoredMessage? {
        do {
            let reply = try await jetStreamAPI(
                "STREAM.MSG.GET.\(stream)", json: ["last_by_subj": subject])
            guard let message = reply["message"] as? [String: Any] else { return nil }
            return StoredMessage(json: message)
        } catch let error as NATSError where error.jetStreamErrorCode == 10037 {
            return nil  // no message found
        }
    }

    /// The message stored at `sequence` in `stream`, or nil if there is none (never stored,
    /// acked off a work-queue stream, purged or deleted).
    public func storedMessage(stream: String, sequence: UInt64) async throws -> StoredMessage? {
        do {
            let reply = try await jetStreamAPI("STREAM.MSG.GET.\(stream)", json: ["seq": NSNumber(value: sequence)])
            guard let message = reply["message"] as? [String: Any] else { return nil }
            return StoredMessage(json: message)
        } catch let error as NATSError where error.jetStreamErrorCode == 10037 {
            return nil  // no message found
        }
    }
}

/// A message read back from a stream through the API.
public struct StoredMessage: Sendable {
    public var subject: String
    public var sequence: UInt64
    public var payload: [UInt8]
    public var rawHeaders: String

    init(json: [String: Any]) {
        subject = json["subject"] as? String ?? ""
        sequence = (json["seq"] as? NSNumber)?.uint64Value ?? 0
        payload = (json["data"] as? String).flatMap { Data(base64Encoded: $0) }.map { [UInt8]($0) } ?? []
        rawHeaders =
            (json["hdrs"] as? String).flatMap { Data(base64Encoded: $0) }
            .map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
}
