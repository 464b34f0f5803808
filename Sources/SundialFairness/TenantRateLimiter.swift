/// Admission control by rate: one token bucket per tenant, taken once per request (Create and
/// Update at Ingest). Pure and lazy like `TokenBucket`: every call passes the current instant.
/// A refused request learns how long until a token is there (its retry-after).
///
/// Bounded: at most `maximumTenants` buckets. Past that, buckets that are full again are
/// forgotten — a full bucket is what a new one starts as, so forgetting it changes nothing —
/// and if most are still busy, arbitrary ones down to half (they start again full: a burst
/// early); either sweep is rare, so admission stays O(1) amortised.
public struct TenantRateLimiter<C: Clock>: Sendable where C.Duration == Duration {
    /// Requests per second, and how many may come at once (the bucket's size).
    public struct Limit: Sendable, Hashable {
        public var rate: Double
        public var burst: Double

        /// `burst` defaults to one second's worth (at least 1).
        public init(rate: Double, burst: Double? = nil) {
            self.rate = rate
            self.burst = max(1, burst ?? rate)
        }
    }

    public enum Decision: Sendable, Hashable {
        case admitted
        case limited(retryAfter: Duration)
    }

    public let maximumTenants: Int
    private var buckets: [String: TokenBucket<C>] = [:]

    public init(maximumTenants: Int = 100_000) {
        self.maximumTenants = max(1, maximumTenants)
    }

    public var tenantCount: Int { buckets.count }

    /// Takes one token of `tenant`'s bucket at `now`. `limit` nil, or a rate of 0 or less:
    /// unlimited (nothing is kept). A changed limit reconfigures the tenant's bucket.
    public mutating func admit(tenant: String, limit: Limit?, now: C.Instant) -> Decision {
        guard let limit, limit.rate > 0, limit.rate.isFinite else {
            buckets[tenant] = nil
            return .admitted
        }
        var bucket = buckets[tenant] ?? TokenBucket(rate: limit.rate, burst: limit.burst, now: now)
        if bucket.rate != limit.rate || bucket.burst != limit.burst {
            bucket.reconfigure(rate: limit.rate, burst: limit.burst, now: now)
        }
        let admitted = bucket.tryTake(1, now: now)
        let wait = admitted ? Duration.zero : bucket.timeUntilAvailable(1, now: now)
        if buckets[tenant] == nil, buckets.count >= maximumTenants { forgetFull(now: now) }
        buckets[tenant] = bucket
        return admitted ? .admitted : .limited(retryAfter: wait)
    }

    private mutating func forgetFull(now: C.Instant) {
        buckets = buckets.filter { $0.value.tokens(at: now) < $0.value.burst - 1e-9 }
        if buckets.count > maximumTenants * 3 / 4 {
            buckets = Dictionary(uniqueKeysWithValues: buckets.prefix(maximumTenants / 2).map { ($0.key, $0.value) })
        }
    }
}
