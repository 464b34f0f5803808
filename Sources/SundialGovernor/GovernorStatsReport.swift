/// What a governor reports in `$SRV.STATS` (`data`); wire names are the snake_case keys
/// below (services/governor/README.md documents each). Plan fields are absent before the
/// first plan.
public struct GovernorStatsReport: Codable, Sendable, Hashable {
    public var leader: Bool
    public var leaderID: String
    public var reportsReceived: Int
    public var reportsRejected: Int
    public var publishFailures: Int
    public var planTenantsDropped: Int
    public var reportLinesRejected: Int
    /// Queues with a backlog and no live executors: the jobs they hold.
    public var queuesWithoutExecutors: [String: UInt64]
    public var breakersOpened: Int
    public var planGeneration: UInt64?
    public var planBytes: Int?
    public var dispatchers: Int?
    public var tenants: Int?
    public var throttledTenants: Int?
    public var queues: [String: Queue] = [:]

    enum CodingKeys: String, CodingKey {
        case leader, dispatchers, tenants, queues
        case leaderID = "leader_id"
        case reportsReceived = "reports_received"
        case reportsRejected = "reports_rejected"
        case publishFailures = "publish_failures"
        case planTenantsDropped = "plan_tenants_dropped"
        case reportLinesRejected = "report_lines_rejected"
        case queuesWithoutExecutors = "queues_without_executors"
        case breakersOpened = "breakers_opened"
        case planGeneration = "plan_generation"
        case planBytes = "plan_bytes"
        case throttledTenants = "throttled_tenants"
    }

    public init(
        leader: Bool, leaderID: String, reportsReceived: Int, reportsRejected: Int, publishFailures: Int,
        planTenantsDropped: Int, reportLinesRejected: Int, queuesWithoutExecutors: [String: UInt64], breakersOpened: Int
    ) {
        self.leader = leader
        self.leaderID = leaderID
        self.reportsReceived = reportsReceived
        self.reportsRejected = reportsRejected
        self.publishFailures = publishFailures
        self.planTenantsDropped = planTenantsDropped
        self.reportLinesRejected = reportLinesRejected
        self.queuesWithoutExecutors = queuesWithoutExecutors
        self.breakersOpened = breakersOpened
    }

    /// One work queue: its measured capacity, its share of the plan, its breakers.
    public struct Queue: Codable, Sendable, Hashable {
        /// "live" when executors were measured on it, "none" otherwise.
        public var executors = "none"
        public var capacityEstimate: Double?
        public var capacityKnown = false
        public var consumptionRate: Double?
        public var saturated: Bool?
        public var backlog: UInt64?
        /// nil while the queue's capacity is unknown (not throttled).
        public var planCapacity: Double?
        public var tenants: Int?
        public var throttledTenants: Int?
        public var tiers: [String: TierShare]?
        public var breaker: String?
        public var breakerFailureRatio: Double?
        public var paused: Bool?
        public var breakerSettings: BreakerSettings?
        /// Up to 100 tenants whose breaker on this queue is not closed, by tenant.
        public var tenantBreakers: [String: String]?
        public var tenantBreakersNotClosed: Int?

        public init(
            executors: String = "none", capacityEstimate: Double? = nil, capacityKnown: Bool = false,
            consumptionRate: Double? = nil, saturated: Bool? = nil, backlog: UInt64? = nil
        ) {
            self.executors = executors
            self.capacityEstimate = capacityEstimate
            self.capacityKnown = capacityKnown
            self.consumptionRate = consumptionRate
            self.saturated = saturated
            self.backlog = backlog
        }

        enum CodingKeys: String, CodingKey {
            case executors, saturated, backlog, tenants, tiers, breaker, paused
            case capacityEstimate = "capacity_estimate"
            case capacityKnown = "capacity_known"
            case consumptionRate = "consumption_rate"
            case planCapacity = "plan_capacity"
            case throttledTenants = "throttled_tenants"
            case breakerFailureRatio = "breaker_failure_ratio"
            case breakerSettings = "breaker_settings"
            case tenantBreakers = "tenant_breakers"
            case tenantBreakersNotClosed = "tenant_breakers_not_closed"
        }
    }

    /// A tier's share of a queue's plan.
    public struct TierShare: Codable, Sendable, Hashable {
        public var tenants: Int
        public var demand: Double
        public var allocated: Double
        public var defaultRate: Double

        enum CodingKeys: String, CodingKey {
            case tenants, demand, allocated
            case defaultRate = "default_rate"
        }
    }

    /// A queue's circuit-breaker settings in force.
    public struct BreakerSettings: Codable, Sendable, Hashable {
        public var windowSeconds: Double
        public var minimumSamples: Int
        public var failureRatio: Double
        public var coolDownSeconds: Double
        public var maximumCoolDownSeconds: Double
        public var probes: Int
        public var probeTimeoutSeconds: Double

        enum CodingKeys: String, CodingKey {
            case probes
            case windowSeconds = "window_seconds"
            case minimumSamples = "minimum_samples"
            case failureRatio = "failure_ratio"
            case coolDownSeconds = "cool_down_seconds"
            case maximumCoolDownSeconds = "maximum_cool_down_seconds"
            case probeTimeoutSeconds = "probe_timeout_seconds"
        }
    }
}
