import Foundation
import SundialClient
import SundialContract
import SundialFairness
import SundialMessaging
import SundialProto
import SundialStore
import SundialTestSupport
import Testing

/// Admission control by rate at Ingest: per-tenant token buckets by tier, overridable per
/// tenant, answered with 429 and a retry-after.
@Suite("Integration: admission control")
struct AdmissionIntegrationTests {
    @Test("over its rate a tenant gets 429 with a retry-after, and is admitted after it; overrides and tiers apply")
    func rateLimits() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        options.ingestTuning = { config in
            config.admissionRates.new = 1
            config.admissionRates.standard = 5
            config.admissionBurst = .seconds(1)
        }
        try await withTestSystem("admission", options) { system in
            let tenants = TenantStore(pool: system.pool)
            try await tenants.setFlags(tenant: "vip", trial: nil, pinnedTier: nil, admissionRate: 0)
            try await tenants.setFlags(tenant: "trial", trial: true, pinnedTier: nil)
            let acme = system.client(tenant: "acme")

            // Standard: a burst of 5, then 429.
            for _ in 0..<5 { _ = try await acme.create(.delay(.seconds(600), queue: "q")) }
            let refused = try await sundialError { _ = try await acme.create(.delay(.seconds(600), queue: "q")) }
            #expect(refused.code == .quotaExceeded)
            let wait = try #require(refused.retryAfter)
            #expect(wait > .zero && wait <= .milliseconds(250), "retry after \(wait)")
            // The raw reply carries the header too (whole seconds, rounded up).
            let raw = try await system.api.request(
                subject: system.namespace.request(tenant: "acme", method: .create),
                payload: try Sundial_V1_CreateTimerRequest.delay(.seconds(600), queue: "q").serializedBytes(),
                timeout: .seconds(5))
            #expect(raw.headers[SundialHeader.serviceErrorCode] == "429")
            #expect(raw.headers[SundialHeader.retryAfter] == "1")
            // A request refused for being invalid costs no token (validation comes first).
            let invalid = try await system.api.request(
                subject: system.namespace.request(tenant: "acme", method: .update),
                payload: try Sundial_V1_UpdateTimerRequest().serializedBytes(), timeout: .seconds(5))
            #expect(invalid.headers[SundialHeader.serviceErrorCode] == "400")
            // After the wait, admitted.
            try await Task.sleep(for: wait + .milliseconds(250))
            _ = try await acme.create(.delay(.seconds(600), queue: "q"))

            // A tenant whose own rate is 0 (unlimited) beside the tier default.
            let vip = system.client(tenant: "vip")
            for _ in 0..<20 { _ = try await vip.create(.delay(.seconds(600), queue: "q")) }

            // A trial tenant is `new`: 1 per second.
            let trial = system.client(tenant: "trial")
            _ = try await trial.create(.delay(.seconds(600), queue: "q"))
            #expect(try await sundialError { _ = try await trial.create(.delay(.seconds(600), queue: "q")) }.code == .quotaExceeded)
        }
    }
}
