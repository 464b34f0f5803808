import Foundation
import SundialPostgres

/// What fairness knows about a tenant (table `tenants`, migration 0004).
public struct TenantProfileRow: Sendable, Hashable {
    public var tenant: String
    public var firstSeenAt: Date
    public var trial: Bool
    /// "new" | "standard" | "bulk", or nil (observed).
    public var pinnedTier: String?
    /// Every timer of the tenant publishes `succeeded` events.
    public var notifySuccess: Bool
    /// Create/Update requests per second at each Ingest instance (0: unlimited; nil: the
    /// tier's default).
    public var admissionRate: Double?

    init(row: PostgresRow) throws {
        tenant = try row.required("tenant", row.string)
        firstSeenAt = try row.required("first_seen_at", row.date)
        trial = try row.required("trial", row.bool)
        pinnedTier = try row.string("pinned_tier")
        notifySuccess = try row.bool("notify_success") ?? false
        admissionRate = try row.double("admission_rate")
    }
}

/// Every SQL statement of the tenant store, named, in one place.
enum TenantQueries {
    /// $tenants (text[]). Registers unknown ones, dated by their oldest timer (ids are
    /// UUIDv7, so the first id on `timers_tenant` is the oldest), and returns all of them.
    static let registerAndLoad = PostgresQuery(
        name: "sundial_tenants_register_load",
        sql: """
            WITH wanted AS (SELECT DISTINCT unnest($tenants::text[]) AS tenant),
            added AS (
                INSERT INTO tenants (tenant, first_seen_at)
                SELECT w.tenant,
                       coalesce((SELECT t.created_at FROM timers t WHERE t.tenant = w.tenant ORDER BY t.id LIMIT 1), now())
                FROM wanted w
                WHERE NOT EXISTS (SELECT 1 FROM tenants x WHERE x.tenant = w.tenant)
                ON CONFLICT (tenant) DO NOTHING
                RETURNING tenant, first_seen_at, trial, pinned_tier, notify_success, admission_rate
            )
            SELECT tenant, first_seen_at, trial, pinned_tier, notify_success, admission_rate FROM added
            UNION ALL
            SELECT x.tenant, x.first_seen_at, x.trial, x.pinned_tier, x.notify_success, x.admission_rate
            FROM tenants x JOIN wanted w USING (tenant)
            """)

    /// $trial and $notify_success: bool or NULL = keep; $pinned_tier: text, '' = observed,
    /// NULL = keep; $admission_rate: requests/s, negative = back to the tier's default, NULL = keep.
    static let setFlags = PostgresQuery(
        name: "sundial_tenants_set_flags",
        sql: """
            INSERT INTO tenants (tenant, first_seen_at, trial, pinned_tier, notify_success, admission_rate)
            VALUES ($tenant, now(), coalesce($trial::boolean, false), nullif($pinned_tier, ''),
                    coalesce($notify_success::boolean, false),
                    CASE WHEN $admission_rate::double precision >= 0 THEN $admission_rate::double precision END)
            ON CONFLICT (tenant) DO UPDATE SET
                trial = coalesce($trial::boolean, tenants.trial),
                notify_success = coalesce($notify_success::boolean, tenants.notify_success),
                admission_rate = CASE WHEN $admission_rate::double precision IS NULL THEN tenants.admission_rate
                                      WHEN $admission_rate::double precision < 0 THEN NULL
                                      ELSE $admission_rate::double precision END,
                pinned_tier = CASE WHEN $pinned_tier IS NULL THEN tenants.pinned_tier ELSE nullif($pinned_tier, '') END,
                updated_at = now()
            RETURNING tenant, first_seen_at, trial, pinned_tier, notify_success, admission_rate
            """)

    /// Tenants whose admission rate differs from the `standard` default: an own rate, a
    /// trial or a pinned tier. Read-only (registers nobody); at most $limit.
    static let admissionProfiles = PostgresQuery(
        name: "sundial_tenants_admission_profiles",
        sql: """
            SELECT tenant, first_seen_at, trial, pinned_tier, notify_success, admission_rate FROM tenants
            WHERE admission_rate IS NOT NULL OR trial OR pinned_tier IS NOT NULL
            ORDER BY tenant
            LIMIT $limit
            """)

    /// Every statement above (the statement test prepares each on a real server).
    static let all: [PostgresQuery] = [
        registerAndLoad, setFlags, admissionProfiles,
    ]
}

/// The `tenants` table: first-seen dates, trial flags and pinned tiers for the Governor.
public struct TenantStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// The tenants whose admission rate is not simply the `standard` tier's (own rate, trial
    /// or pinned tier), at most `limit`. Registers nobody.
    public func admissionProfiles(limit: Int = 100_000) async throws -> [String: TenantProfileRow] {
        let rows = try await pool.withSession { session in
            try session.execute(TenantQueries.admissionProfiles, ["limit": .int(limit)]).map(TenantProfileRow.init(row:))
        }
        return Dictionary(rows.map { ($0.tenant, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Profiles of `tenants`, registering the ones seen for the first time.
    public func profiles(_ tenants: [String]) async throws -> [String: TenantProfileRow] {
        guard !tenants.isEmpty else { return [:] }
        let rows = try await pool.withSession { session in
            try session.execute(TenantQueries.registerAndLoad, [
                "tenants": .textArray(tenants),
            ]).map(TenantProfileRow.init(row:))
        }
        return Dictionary(rows.map { ($0.tenant, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Sets a tenant's trial flag, pinned tier and/or completion events (`pinnedTier: ""`
    /// clears the pin; nil leaves a value unchanged).
    @discardableResult
    /// `admissionRate`: requests/s (0 = unlimited), negative = back to the tier's default.
    public func setFlags(
        tenant: String, trial: Bool?, pinnedTier: String?, notifySuccess: Bool? = nil, admissionRate: Double? = nil
    ) async throws
        -> TenantProfileRow
    {
        try await pool.withSession { session in
            try session.execute(
                TenantQueries.setFlags,
                [
                    "tenant": .text(tenant), "trial": .optional(trial.map(PostgresValue.bool)),
                    "pinned_tier": .optional(pinnedTier.map(PostgresValue.text)),
                    "notify_success": .optional(notifySuccess.map(PostgresValue.bool)),
                    "admission_rate": admissionRate.map(PostgresValue.double) ?? .null,
                ]
            ).map(TenantProfileRow.init(row:))
        }[0]
    }
}
