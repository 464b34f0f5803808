/// What a dispatcher reports in `$SRV.STATS` (`data`): its counters since start and, under
/// `fairness`, the gate's view. Field names on the wire are the snake_case keys below
/// (services/dispatcher/README.md documents each).
public struct DispatcherStatsReport: Codable, Sendable, Hashable {
    public var fired: Int
    public var dispatched: Int
    public var staleDropped: Int
    public var undecodable: Int
    public var retried: Int
    public var succeeded: Int
    public var attemptsFailed: Int
    public var attemptsRefunded: Int
    public var resultsIgnored: Int
    public var deadLettered: Int
    public var deferred: Int
    public var averageFireLagMs: Double
    /// Refused results by reason (`JobResultRejection.kind`).
    public var resultsRejected: [String: Int]
    public var resultsPoisoned: Int
    public var resultsFinishedAtReplaced: Int
    public var supersededDropped: Int
    public var queueFullDeferred: Int
    public var fairness: Fairness?

    enum CodingKeys: String, CodingKey {
        case fired, dispatched, undecodable, retried, succeeded, deferred, fairness
        case staleDropped = "stale_dropped"
        case attemptsFailed = "attempts_failed"
        case attemptsRefunded = "attempts_refunded"
        case resultsIgnored = "results_ignored"
        case deadLettered = "dead_lettered"
        case averageFireLagMs = "average_fire_lag_ms"
        case resultsRejected = "results_rejected"
        case resultsPoisoned = "results_poisoned"
        case resultsFinishedAtReplaced = "results_finished_at_replaced"
        case supersededDropped = "superseded_dropped"
        case queueFullDeferred = "queue_full_deferred"
    }

    /// The fairness gate: the plan in force, per-tier and per-queue counts.
    public struct Fairness: Codable, Sendable, Hashable {
        public var enforce: Bool
        public var planGeneration: UInt64
        /// −1 before the first plan.
        public var planAgeSeconds: Double
        public var planApplied: Bool
        public var planIssuedAtMs: Int64
        public var dispatchers: Int
        public var activeTenants: Int
        public var deferredNow: Int
        public var overflowDispatched: Int
        /// By tier name.
        public var tiers: [String: TierCounts]
        /// By queue name.
        public var queues: [String: Queue]
        public var breakerHeldTotal: Int
        public var retriesOverBudgetTotal: Int

        enum CodingKeys: String, CodingKey {
            case enforce, dispatchers, tiers, queues
            case planGeneration = "plan_generation"
            case planAgeSeconds = "plan_age_seconds"
            case planApplied = "plan_applied"
            case planIssuedAtMs = "plan_issued_at_ms"
            case activeTenants = "active_tenants"
            case deferredNow = "deferred_now"
            case overflowDispatched = "overflow_dispatched"
            case breakerHeldTotal = "breaker_held_total"
            case retriesOverBudgetTotal = "retries_over_budget_total"
        }

        public struct TierCounts: Codable, Sendable, Hashable {
            public var tenants: Int
            public var deferredNow: Int
            public var dispatchedTotal: Int
            public var deferredTotal: Int
            /// Recent dispatch lag; absent before the tier's first dispatch.
            public var lagMs: Lag?

            enum CodingKeys: String, CodingKey {
                case tenants
                case deferredNow = "deferred_now"
                case dispatchedTotal = "dispatched_total"
                case deferredTotal = "deferred_total"
                case lagMs = "lag_ms"
            }
        }

        public struct Lag: Codable, Sendable, Hashable {
            public var p50: Double
            public var p95: Double
            public var p99: Double
            public var max: Double
            public var samples: Int
        }

        public struct Queue: Codable, Sendable, Hashable {
            public var tenants: Int
            public var deferredNow: Int
            public var throttled: Bool
            public var planCapacity: Double

            enum CodingKeys: String, CodingKey {
                case tenants, throttled
                case deferredNow = "deferred_now"
                case planCapacity = "plan_capacity"
            }
        }
    }
}
