import Foundation
import Synchronization
import SundialContract
import SundialFairness
import SundialStore

/// Admission control by rate for Create and Update: the I/O shell around the pure
/// `TenantRateLimiter`. A tenant's limit is its own `admission_rate` (table `tenants`) or its
/// tier's default (`IngestConfig.admissionRates`); profiles are read at most every
/// `tenantProfileRefresh` per tenant (a read that fails counts as "no override" until then).
/// Everything is per Ingest instance: with n instances a tenant may send n times the rate.
final class AdmissionControl: Sendable {
    private struct Profile {
        var rate: Double?
        var tier: Tier
        var readAt: ContinuousClock.Instant
    }

    private let rates: [Tier: Double]
    private let burstSeconds: Double
    private let refresh: Duration
    private let tenants: TenantStore
    private let limiter = Mutex(TenantRateLimiter<ContinuousClock>())
    private let profiles = Mutex([String: Profile]())

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
        var profile = profiles.withLock { $0[tenant] }
        if profile == nil || profile!.readAt.duration(to: now) >= refresh {
            profile = await read(tenant, now: now)
        }
        let rate = profile.flatMap { $0.rate } ?? rates[profile?.tier ?? .standard] ?? 0
        guard rate > 0 else { return }
        let limit = TenantRateLimiter<ContinuousClock>.Limit(rate: rate, burst: rate * burstSeconds)
        let decision = limiter.withLock { $0.admit(tenant: tenant, limit: limit, now: now) }
        guard case .limited(let wait) = decision else { return }
        var error = SundialError(
            .quotaExceeded,
            "over this tenant's request rate (\(Self.format(rate))/s at this instance); retry after \(Self.milliseconds(wait)) ms",
            violations: [("tenant", "admission rate \(Self.format(rate))/s exceeded")])
        error.retryAfter = wait
        throw error
    }

    private func read(_ tenant: String, now: ContinuousClock.Instant) async -> Profile {
        var profile = Profile(rate: nil, tier: .standard, readAt: now)
        if let row = try? await tenants.profiles([tenant])[tenant] {
            profile.rate = row.admissionRate
            profile.tier = row.pinnedTier.flatMap(Tier.init(rawValue:)) ?? (row.trial ? .new : .standard)
        }
        profiles.withLock { profiles in
            // Bounded: forget stale readings when many tenants are active.
            if profiles.count >= 100_000 { profiles = profiles.filter { $0.value.readAt.duration(to: now) < refresh } }
            profiles[tenant] = profile
        }
        return profile
    }

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let components = duration.components
        return components.seconds * 1000 + (components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }

    private static func format(_ rate: Double) -> String {
        rate == rate.rounded() ? String(Int(rate)) : String(format: "%.2f", rate)
    }
}
