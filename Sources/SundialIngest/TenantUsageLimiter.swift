import Foundation
import Synchronization
import SundialContract
import SundialStore

/// Per-tenant limits on active timers and their payload bytes (`IngestConfig`, 0 = none).
/// Usage is read from Postgres at most every `refresh` per tenant and counted forward
/// locally between reads, so a create costs no count query; the limit is exact up to the
/// creates other instances accept within one refresh.
final class TenantUsageLimiter: Sendable {
    struct Usage {
        var timers: Int
        var bytes: Int
        var readAt: ContinuousClock.Instant
    }

    let maxTimers: Int
    let maxBytes: Int
    let refresh: Duration
    private let store: TimerStore
    private let cache = Mutex([String: Usage]())

    init(config: IngestConfig, store: TimerStore) {
        maxTimers = config.maxActiveTimersPerTenant
        maxBytes = config.maxPayloadBytesPerTenant
        refresh = config.tenantUsageRefresh
        self.store = store
    }

    var enabled: Bool { maxTimers > 0 || maxBytes > 0 }

    /// Throws 429 when one more timer of `payloadBytes` would pass a limit.
    func admit(tenant: String, payloadBytes: Int) async throws {
        guard enabled else { return }
        let now = ContinuousClock.now
        var usage = cache.withLock { $0[tenant] }
        if usage == nil || usage!.readAt.duration(to: now) >= refresh {
            let read = try await store.activeUsage(tenant: tenant)
            usage = Usage(timers: read.timers, bytes: read.bytes, readAt: now)
            // Bounded: forget the oldest readings when many tenants are active.
            cache.withLock { cache in
                if cache.count >= 100_000 { cache = cache.filter { $0.value.readAt.duration(to: now) < refresh } }
                cache[tenant] = usage
            }
        }
        guard let usage else { return }
        if maxTimers > 0, usage.timers + 1 > maxTimers {
            throw SundialError(
                .quotaExceeded, "the tenant has \(usage.timers) active timers; the limit is \(maxTimers)",
                violations: [("tenant", "active timer limit \(maxTimers) reached")])
        }
        if maxBytes > 0, usage.bytes + payloadBytes > maxBytes {
            throw SundialError(
                .quotaExceeded, "the tenant's active timers hold \(usage.bytes) payload bytes; the limit is \(maxBytes)",
                violations: [("payload", "tenant payload limit \(maxBytes) bytes reached")])
        }
    }

    /// Counts a created timer until the next read.
    func created(tenant: String, payloadBytes: Int) {
        guard enabled else { return }
        cache.withLock { cache in
            cache[tenant]?.timers += 1
            cache[tenant]?.bytes += payloadBytes
        }
    }
}
