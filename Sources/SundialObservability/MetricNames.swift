/// Every metric Sundial exports, in one place (Prometheus conventions: `sundial_` prefix, base
/// units, `_total` for counters; labels never name a tenant or a timer — tier, queue, method,
/// code, outcome, connection only). deploy/grafana and deploy/prometheus query these names, and
/// a test checks that each name they use is served.
public enum MetricName {
    // Dispatcher
    /// Histogram {tier, queue}: forwarded to the work stream − due time.
    public static let fireLag = "sundial_fire_lag_seconds"
    public static let fires = "sundial_fires_total"
    public static let dispatched = "sundial_dispatched_total"
    /// Deferrals by quota or breaker (each return counted).
    public static let deferred = "sundial_deferred_total"
    /// Fires dropped at claim: cancelled, superseded, or already forwarded.
    public static let staleDropped = "sundial_stale_dropped_total"
    /// Results applied {outcome = succeeded | retried | dead_letter | ignored}.
    public static let results = "sundial_results_total"
    public static let resultsRejected = "sundial_results_rejected_total"
    public static let attemptsRefunded = "sundial_attempts_refunded_total"
    public static let breakerHeld = "sundial_breaker_held_total"
    public static let retriesOverBudget = "sundial_retries_over_budget_total"
    /// Gauge: fires this dispatcher keeps deferred now.
    public static let deferredNow = "sundial_deferred_fires"
    /// Gauge: messages of the fire consumer not yet delivered (the dispatchers' backlog).
    public static let fireConsumerPending = "sundial_fire_consumer_pending"

    // Governor
    /// Gauge: 1 on the instance that leads (publishes plans), else 0.
    public static let governorLeader = "sundial_governor_leader"
    public static let planGeneration = "sundial_governor_plan_generation"
    /// Gauge {queue}: measured executor capacity (jobs per second); 0 while unknown.
    public static let queueCapacity = "sundial_queue_capacity_jobs_per_second"
    /// Gauge {queue}: jobs in the work stream not yet acknowledged by an executor (waiting or
    /// in progress; also on a queue without live executors).
    public static let workBacklog = "sundial_work_backlog"
    /// Gauge {queue}: throttled tenants on the queue in the plan in force.
    public static let throttledTenants = "sundial_throttled_tenants"
    /// Gauge {queue}: the queue's circuit breaker: 0 closed, 1 half-open, 2 open, 3 paused.
    public static let breakerState = "sundial_breaker_state"
    /// Gauge {queue}: tenants on the queue whose own breaker is not closed.
    public static let tenantBreakersNotClosed = "sundial_tenant_breakers_not_closed"
    /// Gauge {queue}: the queue breaker's downstream failure ratio (its window while closed,
    /// the ratio that opened it otherwise; 0 when it has no recent outcomes).
    public static let breakerFailureRatio = "sundial_breaker_failure_ratio"
    public static let breakersOpened = "sundial_breakers_opened_total"

    // Planner
    /// Gauge: shards this planner holds; `shards`: how many exist (the same on every planner).
    public static let shardsHeld = "sundial_planner_shards_held"
    public static let shards = "sundial_planner_shards"
    public static let leaseAcquisitions = "sundial_planner_lease_acquisitions_total"
    /// Of those, shards taken over: their lease had expired under another planner.
    public static let leaseTakeovers = "sundial_planner_lease_takeovers_total"
    /// Shards handed back because they were beyond this planner's share (others joined).
    public static let shardsReleased = "sundial_planner_shards_released_total"
    /// Gauge: live planners this one counts (heard from within a lease period), itself included.
    public static let livePlanners = "sundial_planner_live_planners"
    /// Gauge: armed runs in the whole store (loaded into JetStream, waiting to fire); the same
    /// figure on every planner (take the max), refreshed every 30 s.
    public static let armedRuns = "sundial_armed_runs"
    public static let published = "sundial_planner_published_total"
    public static let rescued = "sundial_planner_rescued_total"
    public static let redispatched = "sundial_planner_redispatched_total"
    public static let publishFailures = "sundial_planner_publish_failures_total"
    /// Deleted by the reaper after the retention: timers (with their runs), and runs.
    public static let reapedTimers = "sundial_retention_deleted_timers_total"
    public static let reapedRuns = "sundial_retention_deleted_runs_total"
    public static let partitionsDropped = "sundial_retention_dropped_partitions_total"

    // Ingest (its Timers endpoints)
    /// Counter {method, code}: answered requests; code 200 or the error contract's code.
    public static let requests = "sundial_requests_total"
    /// Histogram {method}: from arrival to answer, of requests that ran (not those refused on
    /// arrival, which are only counted).
    public static let requestDuration = "sundial_request_duration_seconds"

    // Every process
    public static let natsReconnects = "sundial_nats_reconnects_total"
    /// Gauge {connection}: 1 while connected.
    public static let natsConnected = "sundial_nats_connected"
    /// Callers that had to wait for a Postgres connection (all were busy), and their total wait.
    public static let postgresPoolWait = "sundial_postgres_pool_wait_seconds_total"
    public static let postgresPoolWaits = "sundial_postgres_pool_waits_total"
    /// Gauge: 1 while the pool considers Postgres down (fail-fast mode).
    public static let postgresDown = "sundial_postgres_down"

    /// Histogram buckets that reach minutes (a tenant held back by fairness or a breaker waits
    /// that long on purpose).
    public static let lagBuckets: [Duration] = [
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
        .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600),
    ]
    public static let requestBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2),
        .seconds(5),
    ]
}
