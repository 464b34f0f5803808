import Foundation
import SundialContract
import SundialCore
import SundialPostgres
import SundialStore
import SundialTestSupport
import Testing

/// Shard leases (`LeaseStore`) and the fencing of the planner's due-timer claim
/// (`TimerStore.loadDue`, formerly `claimDue`) against real Postgres.
/// Each test has its own schema, hence its own fresh `shard_leases` rows (epoch 0), one per shard
/// of a new database (`ShardMap.defaultCount`).
@Suite("Integration: shard leases")
struct LeaseStoreIntegrationTests {
    @Test("acquire hands out up to limit shards; live leases are not taken; expired ones are, with a higher epoch")
    func acquireExpireTakeover() async throws {
        let (pool, leases, _) = try await openStore("leases")
        let first = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: 5)
        #expect(first.count == 5)
        #expect(first.map(\.shard) == [0, 1, 2, 3, 4])  // lowest free shards first
        #expect(first.allSatisfy { $0.epoch == 1 })
        #expect(first.allSatisfy { $0.expiresAt > Date().addingTimeInterval(20) })

        let rest = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: 1000)
        #expect(rest.count == ShardMap.defaultCount - 5)
        #expect(Set(rest.map(\.shard)).isDisjoint(with: first.map(\.shard)))
        let held = first + rest
        #expect(Set(held.map(\.shard)) == Set(0..<ShardMap.defaultCount))

        // Everything is leased and live: another owner gets nothing, and neither does A again.
        #expect(try await leases.acquire(owner: "B", ttl: .seconds(30), limit: ShardMap.defaultCount).isEmpty)
        #expect(try await leases.acquire(owner: "A", ttl: .seconds(30), limit: ShardMap.defaultCount).isEmpty)

        // Renewing keeps the epochs; a short TTL makes them lapse soon.
        let renewed = try await leases.renew(owner: "A", leases: held, ttl: .milliseconds(300))
        #expect(renewed.count == ShardMap.defaultCount)
        #expect(Set(renewed.map(\.epoch)) == [1])
        #expect(renewed.allSatisfy { $0.expiresAt < Date().addingTimeInterval(5) })

        // B takes them once they expire (waiting for the database clock to pass the TTL).
        let taken = try await acquireAll(leases, owner: "B", expected: ShardMap.defaultCount)
        #expect(Set(taken.map(\.shard)) == Set(0..<ShardMap.defaultCount))
        #expect(taken.allSatisfy { $0.epoch == 2 })

        // The old owner lost everything: its renew returns nothing and changes nothing.
        #expect(try await leases.renew(owner: "A", leases: held, ttl: .seconds(30)).isEmpty)
        // Nor can A renew by presenting B's current epochs under its own name.
        #expect(try await leases.renew(owner: "A", leases: taken, ttl: .seconds(30)).isEmpty)
        // B still holds all of them, at epoch 2.
        let renewedByB = try await leases.renew(owner: "B", leases: taken, ttl: .seconds(30))
        #expect(renewedByB.count == ShardMap.defaultCount)
        #expect(Set(renewedByB.map(\.epoch)) == [2])
        await pool.close()
    }

    @Test("claiming due timers (loadDue) with a stale epoch claims nothing; the current holder claims the due timer")
    func claimIsFenced() async throws {
        let (pool, leases, timers) = try await openStore("fence")
        let oldLeases = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: ShardMap.defaultCount)
        #expect(oldLeases.count == ShardMap.defaultCount)

        let timerID = UUID()
        let shard = ShardMap.shard(of: timerID, count: ShardMap.defaultCount)
        let due = Date().addingTimeInterval(-2)
        try await insertDueTimer(pool, id: timerID, shard: shard, due: due)
        let staleLease = try #require(oldLeases.first { $0.shard == shard })

        // A hands over by letting its leases lapse; B takes the shard.
        _ = try await leases.renew(owner: "A", leases: oldLeases, ttl: .milliseconds(300))
        let taken = try await acquireAll(leases, owner: "B", expected: ShardMap.defaultCount)
        let currentLease = try #require(taken.first { $0.shard == shard })
        #expect(currentLease.epoch > staleLease.epoch)

        let dueBefore = Date().addingTimeInterval(1)
        // The old holder: stale epoch under its own name.
        #expect(try await claim(timers, lease: staleLease, owner: "A", dueBefore: dueBefore).isEmpty)
        // The new owner's name with the stale epoch is fenced off too (epoch, not just owner).
        #expect(try await claim(timers, lease: staleLease, owner: "B", dueBefore: dueBefore).isEmpty)
        // The current epoch under another owner's name: fenced.
        #expect(try await claim(timers, lease: currentLease, owner: "A", dueBefore: dueBefore).isEmpty)
        #expect(try await timers.get(tenant: "lease-tests", id: timerID)?.state == .scheduled)
        #expect(try await runCount(pool, timerID) == 0)

        let claimed = try await claim(timers, lease: currentLease, owner: "B", dueBefore: dueBefore)
        #expect(claimed.map(\.timerID) == [timerID])
        #expect(claimed.first?.shard == shard)
        #expect(claimed.first?.payload == [1, 2, 3])
        #expect(try await timers.get(tenant: "lease-tests", id: timerID)?.state == .armed)
        #expect(try await runCount(pool, timerID) == 1)
        // Claimed rows are no longer pending.
        #expect(try await claim(timers, lease: currentLease, owner: "B", dueBefore: dueBefore).isEmpty)
        await pool.close()
    }

    /// The dispatcher records a deferred fire's expected return (`recordDeferrals`) so the
    /// planner's rescue pass leaves it alone; re-deferrals in its line must not cost a write
    /// each, so the record only moves `armed_at` forward, and by 10 s or more.
    @Test("deferral records keep an armed run out of the rescue pass; they only move armed_at forward by ≥ 10 s")
    func deferralRecordsGuardTheRescuePass() async throws {
        let (pool, leases, timers) = try await openStore("defer")
        let held = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: ShardMap.defaultCount)
        let timerID = UUID()
        let shard = ShardMap.shard(of: timerID, count: ShardMap.defaultCount)
        try await insertDueTimer(pool, id: timerID, shard: shard, due: Date().addingTimeInterval(-120))
        let lease = try #require(held.first { $0.shard == shard })
        let armed = try #require(try await claim(timers, lease: lease, owner: "A", dueBefore: Date()).first)
        let key = FireKey(id: armed.timerID, occurrence: armed.occurrence, attempt: armed.attempt)
        let now = Date()

        // Deferred until now + 120 s: a rescue pass looking for runs armed before now + 100 s
        // (i.e. overdue by its grace) skips it.
        try await timers.recordDeferrals([(key, now.addingTimeInterval(120))])
        #expect(try await timers.rescueOverdue(lease: lease, owner: "A", overdueBefore: now.addingTimeInterval(100), limit: 10).isEmpty)
        // Re-deferred 5 s later than recorded: no write (within the 10 s the record allows).
        try await timers.recordDeferrals([(key, now.addingTimeInterval(125))])
        // Earlier than recorded: never moves armed_at back.
        try await timers.recordDeferrals([(key, now.addingTimeInterval(30))])
        #expect(try await timers.rescueOverdue(lease: lease, owner: "A", overdueBefore: now.addingTimeInterval(100), limit: 10).isEmpty)
        // So armed_at is still now + 120 s: a pass at now + 122 s finds it (and re-arms it).
        let rescued = try await timers.rescueOverdue(lease: lease, owner: "A", overdueBefore: now.addingTimeInterval(122), limit: 10)
        #expect(rescued.map(\.timerID) == [timerID])
        // The rescue re-armed it at the database's now; a record 200 s ahead moves it again.
        try await timers.recordDeferrals([(key, now.addingTimeInterval(200))])
        #expect(try await timers.rescueOverdue(lease: lease, owner: "A", overdueBefore: now.addingTimeInterval(190), limit: 10).isEmpty)
        await pool.close()
    }

    /// Dispatched-but-lost (`inFlightOverdue`, `noteInFlightSeen`, `redispatch`): a run in
    /// flight too long is found; one seen in the work stream is left for a period; one whose job
    /// is gone is armed again exactly once, only by the lease holder and only at the work
    /// sequence it was looked up at, and what its dispatch added to the timer is taken back.
    @Test("a dispatched run whose job is lost is armed again once, fenced, with the timer's counters taken back")
    func dispatchedButLostIsArmedAgain() async throws {
        let (pool, leases, timers) = try await openStore("redispatch")
        let held = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: ShardMap.defaultCount)
        let timerID = UUID()
        let shard = ShardMap.shard(of: timerID, count: ShardMap.defaultCount)
        let lease = try #require(held.first { $0.shard == shard })
        let longAgo = Date().addingTimeInterval(-120)
        try await insertDueTimer(pool, id: timerID, shard: shard, due: longAgo)
        let armed = try #require(try await claim(timers, lease: lease, owner: "A", dueBefore: Date()).first)
        let key = FireKey(id: armed.timerID, occurrence: armed.occurrence, attempt: armed.attempt)
        #expect(try await timers.claimForDispatch([FiredRun(key: key, version: armed.version, firedAt: longAgo)]).count == 1)
        try await timers.markDispatched([key], workSequences: [42], at: longAgo)
        #expect(try await runState(pool, timerID) == RunSnapshot(outcome: "dispatched", timerState: "dispatched", attempts: 1, fired: 1))

        // Not overdue yet at a 3-minute threshold; overdue at a 1-minute one.
        #expect(try await timers.inFlightOverdue(lease: lease, owner: "A", before: longAgo.addingTimeInterval(-60), limit: 10).isEmpty)
        let overdue = try await timers.inFlightOverdue(lease: lease, owner: "A", before: Date().addingTimeInterval(-60), limit: 10)
        #expect(overdue == [TimerStore.InFlightRun(key: key, workSequence: 42)])
        // Another owner, or the holder with a stale lease, sees and re-arms nothing.
        #expect(try await timers.inFlightOverdue(lease: lease, owner: "B", before: Date(), limit: 10).isEmpty)
        var staleLease = lease
        staleLease.epoch -= 1
        #expect(try await timers.redispatch(overdue, lease: staleLease, owner: "A", before: Date()).isEmpty)
        #expect(try await timers.redispatch(overdue, lease: lease, owner: "B", before: Date()).isEmpty)

        // Its job was found in the work stream: seen now, so it waits a whole period again.
        try await timers.noteInFlightSeen([key])
        #expect(try await timers.inFlightOverdue(lease: lease, owner: "A", before: Date().addingTimeInterval(-60), limit: 10).isEmpty)
        #expect(try await timers.redispatch(overdue, lease: lease, owner: "A", before: Date().addingTimeInterval(-60)).isEmpty)

        // Later (a period after it was seen) the job is gone. A lookup at another sequence
        // (the run moved on since) re-arms nothing; at the looked-up one it is armed again once.
        let later = Date().addingTimeInterval(60)
        let mismatched = [TimerStore.InFlightRun(key: key, workSequence: 41)]
        #expect(try await timers.redispatch(mismatched, lease: lease, owner: "A", before: later).isEmpty)
        let fires = try await timers.redispatch(overdue, lease: lease, owner: "A", before: later)
        #expect(fires.map(\.timerID) == [timerID])
        #expect(fires.first?.version == armed.version)
        #expect(try await runState(pool, timerID) == RunSnapshot(outcome: "armed", timerState: "armed", attempts: 0, fired: 0))
        #expect(try await timers.redispatch(overdue, lease: lease, owner: "A", before: later).isEmpty)

        // The second dispatch counts once, as the first did.
        #expect(try await timers.claimForDispatch([FiredRun(key: key, version: armed.version, firedAt: Date())]).count == 1)
        try await timers.markDispatched([key], workSequences: [43], at: Date())
        #expect(try await runState(pool, timerID) == RunSnapshot(outcome: "dispatched", timerState: "dispatched", attempts: 1, fired: 1))
        await pool.close()
    }

    @Test("a holder whose lease lapsed claims nothing, even if nobody else took the shard")
    func expiredLeaseClaimsNothing() async throws {
        let (pool, leases, timers) = try await openStore("lapsed")
        let timerID = UUID()
        let shard = ShardMap.shard(of: timerID, count: ShardMap.defaultCount)
        try await insertDueTimer(pool, id: timerID, shard: shard, due: Date().addingTimeInterval(-1))
        let all = try await leases.acquire(owner: "A", ttl: .milliseconds(300), limit: ShardMap.defaultCount)
        let lease = try #require(all.first { $0.shard == shard })

        try await eventually("the lease expires by the database clock", timeout: .seconds(10)) {
            try await pool.withSession { session in
                try session.execute(
                    "SELECT expires_at < now() AS lapsed FROM shard_leases WHERE shard = $1", [.int(shard)]
                ).first?.bool("lapsed") ?? false
            }
        }
        #expect(try await claim(timers, lease: lease, owner: "A", dueBefore: Date().addingTimeInterval(1)).isEmpty)
        #expect(try await leases.renew(owner: "A", leases: [lease], ttl: .seconds(30)).isEmpty)

        // Re-acquiring gives a new epoch, which works; the lapsed one still does not. Its own
        // lapsed leases are no takeover.
        let (again, takenOver) = try await leases.acquireCountingTakeovers(owner: "A", ttl: .seconds(30), limit: ShardMap.defaultCount)
        #expect(takenOver == 0)
        let fresh = try #require(again.first { $0.shard == shard })
        #expect(fresh.epoch == lease.epoch + 1)
        #expect(try await claim(timers, lease: lease, owner: "A", dueBefore: Date().addingTimeInterval(1)).isEmpty)
        let claimed = try await claim(timers, lease: fresh, owner: "A", dueBefore: Date().addingTimeInterval(1))
        #expect(claimed.map(\.timerID) == [timerID])
        await pool.close()
    }

    @Test("shards whose lease lapsed under another owner count as taken over; free or released ones do not")
    func takeoversAreCounted() async throws {
        let (pool, leases, _) = try await openStore("takeover")
        let first = try await leases.acquireCountingTakeovers(owner: "A", ttl: .milliseconds(300), limit: 10)
        #expect(first.leases.count == 10 && first.takenOver == 0)  // free shards
        try await leases.release(owner: "A", shards: first.leases.prefix(4).map(\.shard))
        try await eventually("A's other leases lapse", timeout: .seconds(10)) {
            try await pool.withSession { session in
                try session.execute("SELECT count(*) AS n FROM shard_leases WHERE owner = 'A' AND expires_at < now()")
                    .first?.int64("n") == 6
            }
        }
        // B gets the 4 released and 6 lapsed shards first (lowest numbers), then free ones.
        let second = try await leases.acquireCountingTakeovers(owner: "B", ttl: .seconds(30), limit: 12)
        #expect(second.leases.count == 12 && second.takenOver == 6)
        #expect(try await leases.armedRuns() == 0)
        await pool.close()
    }

    @Test("a claim holds at most its byte budget of payloads; the rest follow in later claims, each once")
    func claimsAreBoundedInBytes() async throws {
        let (pool, leases, timers) = try await openStore("budget")
        let held = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: ShardMap.defaultCount)
        let shard = 5
        let lease = try #require(held.first { $0.shard == shard })
        let due = Date().addingTimeInterval(-1)
        var ids = Set<UUID>()
        for index in 0..<20 {
            let id = UUID()
            ids.insert(id)
            try await insertDueTimer(
                pool, id: id, shard: shard, due: due.addingTimeInterval(Double(index) / 1000),
                payload: Array(repeating: UInt8(index), count: 10_000))
        }
        let budget = TimerStore.LoadBudget(bytes: 35_000, runs: 1000)
        var seen: [UUID] = []
        var claims = 0
        while claims < 30 {
            let loaded = try await claimRuns(timers, lease: lease, owner: "A", dueBefore: Date(), budget: budget)
            if loaded.rows.isEmpty { break }
            claims += 1
            // 10,000-byte payloads (+512 per run) under a 35,000-byte budget: three per claim.
            #expect(loaded.rows.count <= 3)
            #expect(loaded.truncated == (seen.count + loaded.rows.count < 20))
            seen += loaded.rows.map(\.timerID)
        }
        #expect(seen.count == 20)
        #expect(Set(seen) == ids)
        #expect(claims == 7)
        // One payload larger than the budget still goes, alone.
        let big = UUID()
        try await insertDueTimer(pool, id: big, shard: shard, due: due, payload: Array(repeating: 9, count: 50_000))
        #expect(try await claim(timers, lease: lease, owner: "A", dueBefore: Date(), budget: budget).map(\.timerID) == [big])
        await pool.close()
    }

    @Test("release makes shards acquirable at once; only the owner can release")
    func releaseHandsOver() async throws {
        let (pool, leases, _) = try await openStore("release")
        let held = try await leases.acquire(owner: "A", ttl: .seconds(60), limit: ShardMap.defaultCount)
        #expect(held.count == ShardMap.defaultCount)

        try await leases.release(owner: "B", shards: Array(0..<ShardMap.defaultCount))  // not B's to give
        #expect(try await leases.acquire(owner: "C", ttl: .seconds(60), limit: ShardMap.defaultCount).isEmpty)

        try await leases.release(owner: "A", shards: [3, 7])
        let taken = try await leases.acquire(owner: "C", ttl: .seconds(60), limit: ShardMap.defaultCount)
        #expect(taken.map(\.shard).sorted() == [3, 7])
        #expect(taken.allSatisfy { $0.epoch == 2 })

        // A kept the others and lost the released ones.
        let renewed = try await leases.renew(owner: "A", leases: held, ttl: .seconds(60))
        #expect(renewed.count == ShardMap.defaultCount - 2)
        #expect(!renewed.contains { [3, 7].contains($0.shard) })
        try await leases.release(owner: "A", shards: [])  // nothing to do
        await pool.close()
    }
}

@Suite("Integration: shard count")
struct ShardCountIntegrationTests {
    @Test("a new database has the default shard count; it changes only while no timer exists, with one lease row per shard")
    func settledOnlyWhileEmpty() async throws {
        let (pool, leases, timers) = try await openStore("shardcount")
        #expect(try await leases.shardCount() == ShardMap.defaultCount)
        #expect(try await leases.settleShardCount(ShardMap.defaultCount) == .unchanged(ShardMap.defaultCount))
        #expect(try await leases.settleShardCount(32) == .changed(from: ShardMap.defaultCount, to: 32))
        #expect(try await leases.shardCount() == 32)
        let held = try await leases.acquire(owner: "A", ttl: .seconds(30), limit: 1000)
        #expect(held.map(\.shard) == Array(0..<32))
        try await leases.release(owner: "A", shards: held.map(\.shard))
        #expect(try await leases.settleShardCount(512) == .changed(from: 32, to: 512))
        #expect(try await leases.acquire(owner: "A", ttl: .seconds(30), limit: 1000).count == 512)

        // A stored timer pins the count: its shard was computed with it.
        let id = UUID()
        let due = Date().addingTimeInterval(3600)
        _ = try await timers.create(
            NewTimer(
                id: id, tenant: "acme", shard: ShardMap.shard(of: id, count: 512), state: .scheduled, kind: "delay",
                recurring: false, schedule: [0x0a, 0x00], nextFireAt: due, nextNominalAt: due, occurrence: 0,
                armedRun: nil, queue: "q", payload: [], priority: 3, labelsJSON: "{}", retryPolicy: nil,
                idempotencyKey: nil, requestHash: [], afterTimerID: nil))
        #expect(try await leases.settleShardCount(64) == .refused(stored: 512))
        #expect(try await leases.shardCount() == 512)
        await pool.close()
    }
}

@Suite("Integration: due-shard probe")
struct DueShardProbeIntegrationTests {
    @Test("shardsWithDue names exactly the shards holding a scheduled timer due before the bound")
    func namesTheShardsWithWork() async throws {
        let (pool, _, timers) = try await openStore("dueprobe")
        func store(shard: Int, dueIn seconds: Double, state: StoredTimerState = .scheduled) async throws {
            let id = UUID()
            let due = Date().addingTimeInterval(seconds)
            _ = try await timers.create(
                NewTimer(
                    id: id, tenant: "acme", shard: shard, state: state, kind: "delay", recurring: false,
                    schedule: [0x0a, 0x00], nextFireAt: due, nextNominalAt: due, occurrence: 0, armedRun: nil, queue: "q",
                    payload: [], priority: 3, labelsJSON: "{}", retryPolicy: nil, idempotencyKey: nil, requestHash: [],
                    afterTimerID: nil))
        }
        try await store(shard: 3, dueIn: 10)
        try await store(shard: 7, dueIn: -5)  // overdue counts
        try await store(shard: 9, dueIn: 3600)  // beyond the bound
        try await store(shard: 11, dueIn: 10, state: .waiting)  // not loadable
        let due = try await timers.shardsWithDue([3, 5, 7, 9, 11], dueBefore: Date().addingTimeInterval(300))
        #expect(due == [3, 7])
        #expect(try await timers.shardsWithDue([], dueBefore: Date()).isEmpty)
        await pool.close()
    }
}

// MARK: - Helpers

private func openStore(_ name: String) async throws -> (PostgresPool, LeaseStore, TimerStore) {
    let schema = TestPostgres.freshSchema(name)
    let pool = try await TestPostgres.pool(schema: schema)
    try await SundialDatabase.migrate(pool, schema: schema)
    return (pool, LeaseStore(pool: pool), TimerStore(pool: pool))
}

/// Acquires for `owner` until it holds `expected` shards: the leases it waits for expire by
/// the database clock, which only time passing can bring about.
private func acquireAll(_ leases: LeaseStore, owner: String, expected: Int) async throws -> [ShardLease] {
    let collected = LeaseCollector()
    try await eventually("\(owner) holds \(expected) shards", timeout: .seconds(10)) {
        let got = try await leases.acquire(owner: owner, ttl: .seconds(30), limit: expected)
        return collected.add(got) >= expected
    }
    return collected.all
}

private final class LeaseCollector: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var leases: [ShardLease] = []

    func add(_ more: [ShardLease]) -> Int {
        lock.lock()
        defer { lock.unlock() }
        leases += more
        return leases.count
    }

    var all: [ShardLease] {
        lock.lock()
        defer { lock.unlock() }
        return leases
    }
}

/// A due one-shot timer, inserted directly (only the columns every schema version requires).
private func insertDueTimer(
    _ pool: PostgresPool, id: UUID, shard: Int, due: Date, payload: [UInt8] = [1, 2, 3]
) async throws {
    _ = try await pool.withSession { session in
        try session.execute(
            """
            INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, queue, payload)
            VALUES ($1, 'lease-tests', $2, 'scheduled', 'delay', ''::bytea, $3, 'q', $4)
            """,
            [.uuid(id), .int(shard), .timestamp(due), .bytes(payload)]
        ).affectedRows
    }
}

/// The planner's fenced claim of due timers (`TimerStore.loadDue`); the timers here are
/// one-shots: one armed run for the current occurrence, the timer moved to `armed`.
private func claim(
    _ timers: TimerStore, lease: ShardLease, owner: String, dueBefore: Date,
    budget: TimerStore.LoadBudget = TimerStore.LoadBudget()
) async throws -> [ScheduledFire] {
    try await claimRuns(timers, lease: lease, owner: owner, dueBefore: dueBefore, budget: budget).rows
}

private func claimRuns(
    _ timers: TimerStore, lease: ShardLease, owner: String, dueBefore: Date,
    budget: TimerStore.LoadBudget = TimerStore.LoadBudget()
) async throws -> TimerStore.LoadedRuns {
    try await timers.loadDue(lease: lease, owner: owner, dueBefore: dueBefore, limit: 10, budget: budget)
}

/// Runs (armed or later) recorded for a timer: a fenced-off claim must leave none.
private struct RunSnapshot: Equatable {
    var outcome: String
    var timerState: String
    var attempts: Int
    var fired: Int
}

/// A one-run timer's run outcome and the timer's state and dispatch counters.
private func runState(_ pool: PostgresPool, _ id: UUID) async throws -> RunSnapshot? {
    try await pool.withSession { session in
        guard
            let row = try session.execute(
                """
                SELECT r.outcome, t.state, t.attempts, t.occurrences_fired::int AS fired
                FROM timer_runs r JOIN timers t ON t.id = r.timer_id WHERE t.id = $1
                """, [.uuid(id)]
            ).first
        else { return nil }
        return RunSnapshot(
            outcome: try row.string("outcome") ?? "", timerState: try row.string("state") ?? "",
            attempts: try row.int("attempts") ?? -1, fired: try row.int("fired") ?? -1)
    }
}

private func runCount(_ pool: PostgresPool, _ id: UUID) async throws -> Int {
    try await pool.withSession { session in
        try session.execute("SELECT count(*)::int AS n FROM timer_runs WHERE timer_id = $1", [.uuid(id)]).first?.int("n") ?? -1
    }
}
