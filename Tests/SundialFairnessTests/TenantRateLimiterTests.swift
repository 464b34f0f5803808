import Testing

@testable import SundialFairness

@Suite("Unit: admission control by rate")
struct TenantRateLimiterTests {
    @Test("a tenant gets its burst at once, then its rate; a refusal says how long to wait; tenants are apart")
    func burstThenRate() {
        let clock = ManualClock()
        var limiter = TenantRateLimiter<ManualClock>()
        let limit = TenantRateLimiter<ManualClock>.Limit(rate: 10, burst: 5)
        for _ in 0..<5 { #expect(limiter.admit(tenant: "a", limit: limit, now: clock.now) == .admitted) }
        guard case .limited(let wait) = limiter.admit(tenant: "a", limit: limit, now: clock.now) else {
            Issue.record("the sixth request at once was admitted")
            return
        }
        #expect(wait > .zero && wait <= .milliseconds(100))
        // Another tenant is not affected.
        #expect(limiter.admit(tenant: "b", limit: limit, now: clock.now) == .admitted)
        // After the wait it is admitted, and exactly one more is.
        clock.advance(by: wait)
        #expect(limiter.admit(tenant: "a", limit: limit, now: clock.now) == .admitted)
        #expect(limiter.admit(tenant: "a", limit: limit, now: clock.now) != .admitted)
        // Over 10 s at 10/s: about 100 admitted of 1000 tried (plus nothing left of the burst).
        var admitted = 0
        for _ in 0..<1000 {
            clock.advance(by: .milliseconds(10))
            if limiter.admit(tenant: "a", limit: limit, now: clock.now) == .admitted { admitted += 1 }
        }
        #expect((99...101).contains(admitted), "admitted \(admitted)")
    }

    @Test("no limit or a rate of 0 admits everything; a changed limit applies at once")
    func unlimitedAndChanges() {
        let clock = ManualClock()
        var limiter = TenantRateLimiter<ManualClock>()
        for _ in 0..<1000 { #expect(limiter.admit(tenant: "a", limit: nil, now: clock.now) == .admitted) }
        let zero = TenantRateLimiter<ManualClock>.Limit(rate: 0)
        for _ in 0..<1000 { #expect(limiter.admit(tenant: "a", limit: zero, now: clock.now) == .admitted) }
        #expect(limiter.tenantCount == 0)
        let tight = TenantRateLimiter<ManualClock>.Limit(rate: 1, burst: 1)
        #expect(limiter.admit(tenant: "a", limit: tight, now: clock.now) == .admitted)
        #expect(limiter.admit(tenant: "a", limit: tight, now: clock.now) != .admitted)
        // Raised: from the change on tokens accrue at the new rate (0.1 token was there; the
        // rest of one comes within a millisecond).
        let loose = TenantRateLimiter<ManualClock>.Limit(rate: 1000, burst: 1000)
        clock.advance(by: .milliseconds(100))
        guard case .limited(let wait) = limiter.admit(tenant: "a", limit: loose, now: clock.now) else {
            Issue.record("admitted with 0.1 token")
            return
        }
        #expect(wait <= .milliseconds(1))
        clock.advance(by: wait)
        #expect(limiter.admit(tenant: "a", limit: loose, now: clock.now) == .admitted)
    }

    @Test("bounded: past maximumTenants, full buckets are forgotten first")
    func bounded() {
        let clock = ManualClock()
        var limiter = TenantRateLimiter<ManualClock>(maximumTenants: 100)
        let limit = TenantRateLimiter<ManualClock>.Limit(rate: 1, burst: 1)
        for index in 0..<1000 {
            _ = limiter.admit(tenant: "t\(index)", limit: limit, now: clock.now)
            #expect(limiter.tenantCount <= 100)
            clock.advance(by: .milliseconds(50))
        }
    }
}
