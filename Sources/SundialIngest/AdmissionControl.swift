import Foundation
import Synchronization
import SundialContract
import SundialFairness
import SundialStore

/// Admission control by rate for Create and Update: the I/O shell around the pure
/// `TenantRateLimiter`. A tenant's limit is its own `admission_rate` (table `tenants`) or its
/// tier's default (`IngestConfig.admissionRates`; tier = pinned, else `new` for a trial
/// tenant, else `standard`). The tenants that differ from `standard` are read in one query at
/// most every `tenantProfileRefresh` (one request waits for it; the others use the previous
/// table); a failed read keeps the previous table and is tried again a second later. Nothing
/// is registered. Everything is per Ingest instance.
final class AdmissionControl: Sendable {
    private struct Profile {
        var rate: Double?
        var tier: Tier
    }

    private struct Table {
        var profiles: [String: Profile] = [:]
        var readAt: ContinuousClock.Instant?
        var reading = false
    }

    private let rates: AdmissionRates
    private let burstSeconds: Double
    private let refresh: Duration
    private let tenants: TenantStore
    private let limiter = Mutex(TenantRateLimiter<ContinuousClock>())
    private let table = Mutex(Table())

    init(config: IngestConfig, tenants: TenantStore) {
        rates = config.admissionRates
        let burst = config.admissionBurst.components
        burstSeconds = Double(burst.seconds) + Double(burst.attoseconds) / 1e18
        refresh = config.tenantProfileRefresh
        self.tenants = tenants
    }

    /// Takes one of `tenant`'s tokens, or throws 429 with when to retry.
    func admit(tenant: String) async throws(SundialError) {
        let now = ContinuousClock.now
        let (profile, due) = table.withLock { table -> (Profile?, Bool) in
            let stale = table.readAt.map { $0.duration(to: now) >= refresh } ?? true
            let due = stale && !table.reading
            if due { table.reading = true }
            return (table.profiles[tenant], due)
        }
        var current = profile
        if due { current = await reload(now: now)[tenant] }
        let rate = current.flatMap { $0.rate } ?? rates[current?.tier ?? .standard]
        let limit = rate > 0 ? TenantRateLimiter<ContinuousClock>.Limit(rate: rate, burst: rate * burstSeconds) : nil
        let decision = limiter.withLock { $0.admit(tenant: tenant, limit: limit, now: now) }
        guard case .limited(let wait) = decision else { return }
        var error = SundialError(
            .quotaExceeded,
            "over this tenant's request rate (\(Self.format(rate))/s at this instance); retry after \(Self.milliseconds(wait)) ms",
            violations: [("tenant", "admission rate \(Self.format(rate))/s exceeded")])
        error.retryAfter = wait
        throw error
    }

    private func reload(now: ContinuousClock.Instant) async -> [String: Profile] {
        let rows = try? await tenants.admissionProfiles()
        return table.withLock { table in
            table.reading = false
            guard let rows else {
                // Keep what we had; try again in a second.
                table.readAt = now - refresh + .seconds(1)
                return table.profiles
            }
            table.profiles = rows.mapValues { row in
                Profile(
                    rate: row.admissionRate,
                    tier: row.pinnedTier.flatMap(Tier.init(rawValue:)) ?? (row.trial ? .new : .standard))
            }
            table.readAt = now
            return table.profiles
        }
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let components = duration.components
        return components.seconds * 1000 + (components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }

    private static func format(_ rate: Double) -> String {
        rate == rate.rounded() ? String(Int(rate)) : String(format: "%.2f", rate)
    }
}
