import SundialContract
import SundialCore
import SundialFairness
import SundialMessaging

/// Ingest settings. Defaults are production values; executables may override them from the
/// environment (see services/ingest/README.md).
public struct IngestConfig: Sendable {
    /// Subjects and stream names (the wire contract's by default).
    public var namespace: SundialNamespace = .standard
    /// Stream bounds, applied when this service creates or updates the streams at startup.
    public var streamLimits = StreamLimits()
    /// Timers due within this window are published to JetStream by Ingest at create time,
    /// so a 10-second delay does not wait for a planner tick. Must equal the Planner's horizon.
    public var horizon: Duration = .seconds(300)
    /// A paused timer's occurrence resumed more than this late is missed: its misfire policy
    /// decides. Same value as the Planner's.
    public var misfireThreshold: Duration = MisfireRule.defaultThreshold
    /// Largest accepted payload. Bigger data goes by reference (a URL or object key). With
    /// `envelopeAllowance` it must fit the NATS server's `max_payload` (checked at startup):
    /// the payload travels inside a fire envelope and then a job with headers.
    public var maxPayloadBytes: Int = 256 * 1024
    /// Room kept beside the payload for the fire envelope's fields and the job's headers.
    public static let envelopeAllowance = 8 * 1024
    public var maxIdempotencyKeyBytes: Int = 256
    public var maxLabels: Int = 32
    public var maxLabelKeyBytes: Int = 64
    public var maxLabelValueBytes: Int = 256
    /// A List page ends early rather than build a reply larger than this (NATS's default
    /// max_payload is 1 MiB; a larger reply is never delivered).
    public var maxReplyBytes: Int = 900 * 1024
    /// Requests handled concurrently per endpoint per instance.
    public var maxConcurrentRequests: Int = 128
    /// Group commit: creates written together in one statement and commit, at most this many
    /// (`SUNDIAL_INGEST_CREATE_BATCH`; 1 writes each create alone).
    public var createBatch: Int = 64
    /// Create statements in flight at once per instance (`SUNDIAL_INGEST_CREATE_FLUSHES`).
    public var createFlushes: Int = 4
    /// Every request is answered within this (503 "took longer; retry" past it), below the
    /// client's usual 5 s timeout, so a stuck dependency never leaves a caller without an
    /// answer. A Create answered 503 may still commit: retry it with the same idempotency key.
    public var answerWithin: Duration = .seconds(4)
    /// Requests of one tenant that may wait per endpoint per instance; beyond, 429 at once.
    /// Waiting requests are served round-robin across tenants.
    public var maxQueuedPerTenant: Int = 2048
    /// Active timers (scheduled, armed, dispatched, retrying, waiting) per tenant; 0 = unlimited.
    /// Checked against a count refreshed every `tenantUsageRefresh`, so creates within that
    /// window (per Ingest instance) can pass it slightly.
    public var maxActiveTimersPerTenant: Int = 0
    /// Payload bytes of a tenant's active timers; 0 = unlimited. Checked like the count.
    public var maxPayloadBytesPerTenant: Int = 0
    public var tenantUsageRefresh: Duration = .seconds(1)
    /// Admission control: Create and Update requests per second per tenant at this instance,
    /// by the tenant's tier (pinned tier; else `new` for a trial tenant, `standard` otherwise);
    /// 0 = unlimited (the default). A tenant's own `admission_rate` (table `tenants`) overrides
    /// its tier's. Beyond: 429 with a retry-after.
    public var admissionRates = AdmissionRates()
    /// How many requests may come at once: this many seconds' worth of the rate (at least 1).
    public var admissionBurst: Duration = .seconds(1)
    /// How often a tenant's admission rate is read again from Postgres.
    public var tenantProfileRefresh: Duration = .seconds(30)
    /// Furthest accepted due time (guards against absurd schedules).
    public var maxScheduleAhead: Duration = .seconds(100 * 366 * 86_400)

    public init() {}

    public func validate() throws(SundialError) {
        try streamLimits.validate()
        guard horizon >= .seconds(1) else { throw .invalid("ingest.horizon", "must be at least 1s") }
        guard misfireThreshold >= .seconds(1) else { throw .invalid("ingest.misfire_threshold", "must be at least 1s") }
        guard maxPayloadBytes > 0, maxPayloadBytes <= 8 << 20 else {
            throw .invalid("ingest.max_payload_bytes", "must be in 1…8 MiB (the NATS max_payload)")
        }
        guard maxReplyBytes >= maxPayloadBytes + 4096 else {
            throw .invalid("ingest.max_reply_bytes", "must exceed max_payload_bytes by at least 4 KiB")
        }
        guard answerWithin >= .milliseconds(100) else { throw .invalid("ingest.answer_within", "must be at least 100ms") }
        guard maxQueuedPerTenant > 0 else { throw .invalid("ingest.max_queued_per_tenant", "must be positive") }
        guard maxActiveTimersPerTenant >= 0, maxPayloadBytesPerTenant >= 0 else {
            throw .invalid("ingest.tenant_limits", "must be ≥ 0 (0 = unlimited)")
        }
        guard tenantUsageRefresh >= .milliseconds(10) else {
            throw .invalid("ingest.tenant_usage_refresh", "must be at least 10ms")
        }
        guard [admissionRates.new, admissionRates.standard, admissionRates.bulk].allSatisfy({ $0 >= 0 && $0 <= 1_000_000 }) else {
            throw .invalid("ingest.admission_rates", "must be 0 (unlimited) … 1,000,000 per second")
        }
        guard admissionBurst >= .milliseconds(1), admissionBurst <= .seconds(3600) else {
            throw .invalid("ingest.admission_burst", "must be 1ms … 1h")
        }
        guard tenantProfileRefresh >= .milliseconds(10) else {
            throw .invalid("ingest.tenant_profile_refresh", "must be at least 10ms")
        }
        guard maxConcurrentRequests > 0 else {
            throw .invalid("ingest.max_concurrent_requests", "must be positive")
        }
        guard (1...1000).contains(createBatch) else {
            throw .invalid("ingest.create_batch", "must be 1…1000")
        }
        guard (1...64).contains(createFlushes) else {
            throw .invalid("ingest.create_flushes", "must be 1…64")
        }
    }
}

/// Admission rates by tier: Create + Update requests per second per tenant at one Ingest
/// instance; 0 = unlimited.
public struct AdmissionRates: Sendable, Hashable {
    public var new: Double = 0
    public var standard: Double = 0
    public var bulk: Double = 0

    public init() {}

    public subscript(tier: Tier) -> Double {
        get {
            switch tier {
            case .new: return new
            case .standard: return standard
            case .bulk: return bulk
            }
        }
        set {
            switch tier {
            case .new: new = newValue
            case .standard: standard = newValue
            case .bulk: bulk = newValue
            }
        }
    }
}
