/// Every NATS subject and stream name Sundial uses, in one place.
///
/// The defaults are the wire contract (docs/architecture.md): requests on `sundial.v1.<tenant>.Timers.<Method>`,
/// work on stream `SUNDIAL_WORK`, subject `sundial.work.<queue>`. A namespace with another root
/// exists so that integration tests can run isolated topologies side by side on one server
/// (JetStream forbids two streams with overlapping subjects).
public struct SundialNamespace: Sendable, Hashable {
    /// First subject token(s), e.g. "sundial".
    public var subjectRoot: String
    /// Stream-name prefix, e.g. "SUNDIAL".
    public var streamPrefix: String
    /// Fire streams, K (`SUNDIAL_FIRE_STREAMS`): shard s fires through stream s mod K, each
    /// stream with its own JetStream firing loop. 1 is one stream named `<prefix>_FIRE`; more
    /// are `<prefix>_FIRE_0` … `<prefix>_FIRE_<K-1>`. Every service must use the same K, and
    /// it is chosen at install: the streams' subjects would overlap with another K's.
    public var fireStreamCount: Int = 1
    /// Shards of the database (`ShardMap`, settled at startup from `shard_settings`; the
    /// default is `ShardMap.defaultCount`, a new database's). With K > 1 fire streams, each
    /// stream's subjects are listed per shard.
    public var shardCount: Int = 256

    public static let standard = SundialNamespace(subjectRoot: "sundial", streamPrefix: "SUNDIAL")

    public init(subjectRoot: String, streamPrefix: String) {
        self.subjectRoot = subjectRoot
        self.streamPrefix = streamPrefix
    }

    /// A unique namespace for one test (`t<id>.sundial…`, `T<ID>_SUNDIAL…`).
    public static func isolated(_ id: String) -> SundialNamespace {
        SundialNamespace(subjectRoot: "t\(id).sundial", streamPrefix: "T\(id.uppercased())_SUNDIAL")
    }

    // MARK: requests (tenant-scoped, the public API)

    /// `sundial.v1.<tenant>.Timers.<method>`
    public func request(tenant: String, method: TimersMethod) -> String {
        "\(subjectRoot).v1.\(tenant).Timers.\(method.rawValue)"
    }

    /// What Ingest subscribes to for `method`, all tenants.
    public func requestWildcard(_ method: TimersMethod) -> String {
        "\(subjectRoot).v1.*.Timers.\(method.rawValue)"
    }

    /// Extracts the tenant token from a request subject, or nil if it is not one.
    public func tenant(fromRequestSubject subject: String) -> String? {
        let prefix = "\(subjectRoot).v1."
        guard subject.hasPrefix(prefix) else { return nil }
        let rest = subject.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: ".") else { return nil }
        return String(rest[..<dot])
    }

    /// Tenant notification events (dead letters, failures): `sundial.v1.<tenant>.events.<kind>`.
    public func event(tenant: String, kind: String) -> String {
        "\(subjectRoot).v1.\(tenant).events.\(kind)"
    }

    // MARK: the fire stream (internal)

    /// Holds the JetStream scheduled messages and the messages they fire (the first of the
    /// fire streams; the only one when `fireStreamCount` is 1).
    public var fireStream: String { fireStream(index: 0) }
    /// Fire stream number `index` (0 ..< `fireStreamCount`).
    public func fireStream(index: Int) -> String {
        fireStreamCount == 1 ? "\(streamPrefix)_FIRE" : "\(streamPrefix)_FIRE_\(index)"
    }
    /// The fire stream holding a shard's schedules and fires: the one place this is chosen.
    public func fireStream(shard: Int) -> String { fireStream(index: shard % max(1, fireStreamCount)) }
    public var fireStreams: [String] { (0..<max(1, fireStreamCount)).map { fireStream(index: $0) } }
    /// Subjects of fire stream `index`: all schedules and fires for a single stream; else its
    /// shards' (listed one by one: subjects have no ranges).
    public func fireSubjects(index: Int) -> [String] {
        guard fireStreamCount > 1 else { return [scheduleWildcard, firedWildcard] }
        return stride(from: index, to: shardCount, by: fireStreamCount).flatMap {
            ["\(subjectRoot).sched.\($0).>", fired(shard: $0)]
        }
    }
    /// One schedule per run (timer, occurrence, attempt): republishing the same run replaces
    /// it (rollup by subject), so a re-plan never duplicates.
    public func schedule(shard: Int, timerID: String, occurrence: Int64, attempt: Int) -> String {
        "\(subjectRoot).sched.\(shard).\(timerID).\(occurrence).\(attempt)"
    }
    /// Every pending schedule of one timer (purged on cancel and update).
    public func schedules(shard: Int, timerID: String) -> String {
        "\(subjectRoot).sched.\(shard).\(timerID).>"
    }
    public var scheduleWildcard: String { "\(subjectRoot).sched.>" }
    /// Where a shard's schedules fire to (same stream, no wildcard, as JetStream requires).
    public func fired(shard: Int) -> String { "\(subjectRoot).fired.\(shard)" }
    public var firedWildcard: String { "\(subjectRoot).fired.>" }
    /// The Dispatcher's shared durable consumer on the fired subjects.
    public var dispatcherDurable: String { "dispatcher" }

    // MARK: results and events

    /// Executors report job outcomes here (stream `<prefix>_RESULTS`).
    public var resultsStream: String { "\(streamPrefix)_RESULTS" }
    public func results(tenant: String) -> String { "\(subjectRoot).results.\(tenant)" }
    public var resultsWildcard: String { "\(subjectRoot).results.>" }
    public var resultsDurable: String { "results" }
    /// The tenant token of a results subject, if it is one and the token is a valid tenant.
    public func tenant(fromResultsSubject subject: String) -> String? {
        let prefix = "\(subjectRoot).results."
        guard subject.hasPrefix(prefix) else { return nil }
        let tenant = String(subject.dropFirst(prefix.count))
        return SubjectToken.isValidTenant(tenant) ? tenant : nil
    }
    /// Tenant notifications are kept in `<prefix>_EVENTS` so subscribers can catch up.
    public var eventsStream: String { "\(streamPrefix)_EVENTS" }
    public var eventsWildcard: String { "\(subjectRoot).v1.*.events.>" }

    /// Messages a service refused to process, kept with their reason (`<root>.poison.<source>`,
    /// source `results` or `fired`), in a bounded limits stream for operators.
    public var poisonStream: String { "\(streamPrefix)_POISON" }
    public func poison(source: String) -> String { "\(subjectRoot).poison.\(source)" }
    public var poisonWildcard: String { "\(subjectRoot).poison.>" }

    // MARK: the work stream (executors)

    public var workStream: String { "\(streamPrefix)_WORK" }
    /// `sundial.work.<queue>`
    public func work(queue: String) -> String { "\(subjectRoot).work.\(queue)" }
    public var workWildcard: String { "\(subjectRoot).work.>" }
    /// Default durable consumer name for a queue's executors. Consumer names allow no dots:
    /// a queue without dots keeps its name (`executor-<queue>`); a dotted one gets another
    /// prefix and a hash of the exact name (`executor_<queue, dots as _>_<fnv64 hex>`), so
    /// `a.b` and `a_b` (or `a.b_c` and `a_b.c`) never share a consumer.
    public func executorDurable(queue: String) -> String {
        guard queue.contains(".") else { return "executor-" + queue }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in queue.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "executor_" + queue.replacingOccurrences(of: ".", with: "_") + "_"
            + String(repeating: "0", count: 16 - hex.count) + hex
    }

    // MARK: fairness (internal)

    /// Dispatchers publish a `DemandReport` here every report interval (core NATS).
    public var fairnessDemand: String { "\(subjectRoot).fairness.demand" }
    /// The JetStream KV bucket holding the quota plan and the governor's leader lease.
    public var quotasBucket: String { "\(streamPrefix)_QUOTAS" }
    /// Key of the current `QuotaPlan` (JSON) in `quotasBucket`.
    public static let quotaPlanKey = "plan"
    /// Key of the governor leader lease in `quotasBucket`.
    public static let governorLeaderKey = "leader"
    /// Key of the queues an operator paused (`QueuePauses` JSON) in `quotasBucket`.
    public static let pausedQueuesKey = "paused"
    /// Key of the per-queue circuit breaker settings (`QueueBreakerSettings` JSON) in `quotasBucket`.
    public static let breakerSettingsKey = "breakers"

    // MARK: service discovery names ($SRV.PING.<name>)

    public static let ingestServiceName = "sundial-ingest"
    public static let plannerServiceName = "sundial-planner"
    public static let dispatcherServiceName = "sundial-dispatcher"
    public static let governorServiceName = "sundial-governor"
}

/// Methods of the `Timers` service.
public enum TimersMethod: String, Sendable, CaseIterable {
    case create = "Create"
    case get = "Get"
    case list = "List"
    case update = "Update"
    case cancel = "Cancel"
    case history = "History"
    /// Redrive: run dead-lettered occurrences again.
    case retry = "Retry"
    case pause = "Pause"
    case resume = "Resume"
}

/// Name rules shared by validation and subject building.
public enum SubjectToken {
    /// Tenants: 1–64 of [A-Za-z0-9_-]; one subject token.
    public static func isValidTenant(_ tenant: String) -> Bool {
        (1...64).contains(tenant.utf8.count) && tenant.utf8.allSatisfy(isNameByte)
    }

    /// Queues: 1–128 bytes of [A-Za-z0-9_-], optionally dotted into non-empty tokens.
    public static func isValidQueue(_ queue: String) -> Bool {
        guard (1...128).contains(queue.utf8.count) else { return false }
        return queue.split(separator: ".", omittingEmptySubsequences: false).allSatisfy {
            !$0.isEmpty && $0.utf8.allSatisfy(isNameByte)
        }
    }

    private static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}
