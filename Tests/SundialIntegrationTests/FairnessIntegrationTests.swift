import Foundation
@testable import SundialCLI
import SundialContract
import SundialExecutor
import SundialFairness
import SundialGovernor
import SundialLocalCluster
import SundialProto
import SundialStore
import Synchronization
import SundialTestSupport
import Testing

/// Executors with a fixed capacity: completes at most `rate` jobs/s and records when each job
/// arrived. Stops when cancelled.
final class CappedExecutor: Sendable {
    struct Received: Sendable {
        var tenant: String
        var timerID: String
        var lag: TimeInterval
        var at: Date
    }

    let received = Mutex<[Received]>([])
    private let task: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(worker: SundialWorker, rate: Double) {
        let perFetch = max(1, Int(rate / 20))
        let t = Task { [self] in
            var nextSlot = ContinuousClock.now
            while !Task.isCancelled {
                guard let jobs = try? await worker.next(max: perFetch, maxWait: .milliseconds(100)) else { continue }
                let now = Date()
                received.withLock { list in
                    for job in jobs {
                        list.append(
                            Received(
                                tenant: job.tenant, timerID: job.timerID,
                                lag: now.timeIntervalSince(job.scheduledAt), at: now))
                    }
                }
                try? await worker.complete(jobs)
                nextSlot = max(nextSlot, ContinuousClock.now - .milliseconds(100)) + .seconds(Double(jobs.count) / rate)
                try? await Task.sleep(until: nextSlot, clock: .continuous)
            }
        }
        task.withLock { $0 = t }
    }

    func stop() async {
        let t = task.withLock { $0 }
        t?.cancel()
        await t?.value
    }

    func count(_ tenant: String? = nil) -> Int {
        received.withLock { list in tenant.map { t in list.filter { $0.tenant == t }.count } ?? list.count }
    }

    func lags(_ tenant: String) -> [TimeInterval] {
        received.withLock { $0.filter { $0.tenant == tenant }.map(\.lag) }
    }
}

/// Fairness on real NATS and Postgres: a Governor computing quotas, the Dispatcher enforcing them,
/// executors with a capped capacity.
@Suite("Integration: fairness", .serialized)
struct FairnessIntegrationTests {
    static let capacity = 200.0

    /// Creates `count` timers for `tenant`, due at `due` (or evenly over `window` seconds from
    /// it), 16 at a time.
    static func createDue(
        _ system: TestSystem, tenant: String, count: Int, due: Date, over window: TimeInterval = 0, queue: String
    ) async throws -> Set<String> {
        let client = system.client(tenant: tenant)
        return try await withThrowingTaskGroup(of: [String].self) { group in
            for lane in 0..<16 {
                group.addTask {
                    var ids: [String] = []
                    for index in stride(from: lane, to: count, by: 16) {
                        let at = due.addingTimeInterval(window * Double(index) / Double(count))
                        let delay = Duration.seconds(max(0.05, at.timeIntervalSinceNow))
                        ids.append(try await client.create(.delay(delay, queue: queue)).timer.id)
                    }
                    return ids
                }
            }
            var all = Set<String>()
            for try await ids in group { all.formUnion(ids) }
            return all
        }
    }

    @Test(
        "a whale's flood cannot starve a standard tenant, and a new tenant's short delays fire on time (FIFO shown for contrast)",
        arguments: [true, false])
    func whaleCannotStarveSmallTenants(fairness: Bool) async throws {
        var options = TestSystem.Options()
        options.fairness = fairness
        options.governor = fairness ? TestSystem.governorConfig(capacity: Self.capacity) : nil
        try await withTestSystem(fairness ? "fairon" : "fairoff", options) { system in
            // "shop" is an established tenant; "newcomer" is not in the tenants table: new.
            try await TenantStore(pool: system.pool).setFlags(tenant: "shop", trial: nil, pinnedTier: "standard")
            let executor = CappedExecutor(worker: try await system.worker(queue: "q"), rate: Self.capacity)
            if fairness {
                try await eventually("the dispatcher has a plan") { system.dispatcher!.currentPlan.generation > 0 }
            }
            let whaleCount = 3000
            let floodAt = Date().addingTimeInterval(15)
            let whale = try await Self.createDue(system, tenant: "whale", count: whaleCount, due: floodAt, queue: "q")
            #expect(whale.count == whaleCount)
            let shop = system.client(tenant: "shop")
            for second in 2...6 {
                // (Never negative, also if creating the whale overran on a loaded machine.)
                _ = try await shop.create(.delay(.seconds(max(0.05, floodAt.timeIntervalSinceNow + Double(second))), queue: "q"))
            }
            // The newcomer tries 2-second delays while the flood is on.
            let newcomer = system.client(tenant: "newcomer")
            try await Task.sleep(until: .now + .seconds(max(0, floodAt.timeIntervalSinceNow)), clock: .continuous)
            for _ in 0..<5 {
                _ = try await newcomer.create(.delay(.seconds(2), queue: "q"))
                try await Task.sleep(for: .seconds(1))
            }
            // Mid-flood views (the whale is throttled now; at the end it has drained).
            let planDuringFlood = system.dispatcher!.currentPlan
            let governorDuringFlood = system.governor.map { GovernorService.stats($0.snapshot) }
            try await eventually("all jobs arrive", timeout: .seconds(60)) { executor.count() >= whaleCount + 10 }
            await executor.stop()

            let shopLags = executor.lags("shop")
            let newLags = executor.lags("newcomer")
            let whaleLags = executor.lags("whale")
            #expect(shopLags.count == 5)
            #expect(newLags.count == 5)
            #expect(Set(executor.received.withLock { $0.filter { $0.tenant == "whale" }.map(\.timerID) }) == whale)
            #expect(whaleLags.count == whaleCount, "no duplicates")
            // The flood was real: capacity-bound, the whale's last job is ≥ 10 s late either way.
            #expect((whaleLags.max() ?? 0) >= 10)
            if fairness {
                #expect((shopLags.max() ?? 99) <= 2.5, "standard tenant lags \(shopLags)")
                #expect((newLags.max() ?? 99) <= 1.5, "new tenant lags \(newLags)")
                let plan = system.dispatcher!.currentPlan
                #expect(plan.plan(for: "q")?.tenants["whale"]?.tier == .bulk)
                #expect(system.dispatcher!.stats.deferred.load(ordering: .relaxed) > 0)
                let stats = system.dispatcher!.fairnessStats()
                let bulk = stats.tiers["bulk"]
                #expect((bulk?.deferredTotal ?? 0) > 0)
                #expect(bulk?.lagMs?.p95 != nil)
                // What `sundial tenants quotas` prints for this plan.
                let text = TenantsCommand.Quotas.render(planDuringFlood, revision: 1, lags: nil, limit: 10, only: nil)
                #expect(text.contains("whale"))
                #expect(text.contains("throttled"))
                // The governor's $SRV.STATS data.
                #expect(governorDuringFlood?.leader == true)
                #expect((governorDuringFlood?.throttledTenants ?? 0) >= 1)
                #expect(planDuringFlood.plan(for: "q")?.tenants["whale"].map { $0.allocated < $0.demand } == true)
            } else {
                // Plain FIFO: the shop's jobs wait behind the whale's backlog.
                #expect((shopLags.min() ?? 0) > 4, "FIFO standard lags \(shopLags)")
            }
        }
    }

    static var governorBinary: URL { TestNATS.packageRoot.appendingPathComponent(".build/debug/sundial-governor") }

    func startGovernor(_ system: TestSystem, instance: String, log: URL) async throws -> ChildProcess {
        guard FileManager.default.isExecutableFile(atPath: Self.governorBinary.path) else {
            throw TestFailure("\(Self.governorBinary.path) missing: `make test` builds it before running the tests")
        }
        let env = try await system.serviceEnvironment([
            "SUNDIAL_GOVERNOR_INSTANCE_ID": instance, "SUNDIAL_GOVERNOR_PERIOD": "200ms",
            "SUNDIAL_GOVERNOR_LEASE_TTL": "1s", "SUNDIAL_GOVERNOR_CAPACITY": "100",
            "SUNDIAL_GOVERNOR_BULK_BACKLOG": "300",
        ])
        return try ChildProcess.spawn(
            executable: Self.governorBinary.path, arguments: [], environment: env, output: .file(log.path))
    }

    @Test("governor killed: dispatch continues on the last quotas; restarted: quotas resume where they were")
    func governorKilledAndRestarted() async throws {
        try await withTestSystem("govcrash") { system in
            let logs = try TestPostgres.temporaryDirectory("governor-logs")
            let dispatcher = system.dispatcher!
            let executor = CappedExecutor(worker: try await system.worker(queue: "g"), rate: 100)
            let first = try await startGovernor(system, instance: "governor-a", log: logs.appendingPathComponent("a.log"))
            try await eventually("a plan from governor A", timeout: .seconds(20)) { dispatcher.currentPlan.generation > 0 }

            let whale = try await Self.createDue(
                system, tenant: "whale", count: 1500, due: Date().addingTimeInterval(4), queue: "g")
            try await eventually("the whale is throttled as bulk", timeout: .seconds(20)) {
                dispatcher.currentPlan.plan(for: "g")?.tenants["whale"]?.tier == .bulk
                    && dispatcher.stats.deferred.load(ordering: .relaxed) > 0
            }
            first.signal(SIGKILL)
            #expect(await first.waitForExit() == 128 + SIGKILL)
            let frozen = dispatcher.currentPlan.generation
            let before = executor.count()
            // No governor: the last plan stays in force — jobs keep flowing at the quota, the
            // rest stays deferred in JetStream (not dumped on the work stream as FIFO would).
            try await eventually("dispatch continues without a governor", timeout: .seconds(10)) {
                executor.count() >= before + 150
            }
            #expect(dispatcher.currentPlan.generation == frozen)
            #expect(dispatcher.currentPlan.plan(for: "g")?.tenants["whale"]?.tier == .bulk)
            #expect(dispatcher.deferredNow > 0)
            let workBacklog = try await system.bulk.streamMessageCount(system.namespace.workStream)
            #expect(workBacklog < 300, "work stream backlog \(workBacklog)")

            let second = try await startGovernor(system, instance: "governor-b", log: logs.appendingPathComponent("b.log"))
            try await eventually("governor B publishes after A's plan", timeout: .seconds(20)) {
                dispatcher.currentPlan.generation > frozen
            }
            // Seeded from the plan in KV, B keeps the whale bulk from its first plan on.
            #expect(dispatcher.currentPlan.plan(for: "g")?.tenants["whale"]?.tier == .bulk)
            try await eventually("every whale job arrives", timeout: .seconds(60)) { executor.count("whale") >= whale.count }
            await executor.stop()
            let ids = executor.received.withLock { $0.map(\.timerID) }
            #expect(Set(ids) == whale)
            #expect(ids.count == whale.count, "no duplicates")
            second.signal(SIGTERM)
            #expect(await second.waitForExit() == 0)
        }
    }

    @Test("one governor leads, a standby takes over when it stops, and generations continue")
    func leaderAndStandby() async throws {
        var options = TestSystem.Options()
        options.ingest = false
        options.planner = false
        try await withTestSystem("govlease", options) { system in
            let config = TestSystem.governorConfig(capacity: 500)
            var a = config
            a.instanceID = "gov-a"
            var b = config
            b.instanceID = "gov-b"
            let (govA, taskA) = try system.startGovernor(a)
            try await eventually("A leads") { govA.snapshot.leader }
            let (govB, taskB) = try system.startGovernor(b)
            try await eventually("B sees A as leader") { govB.snapshot.leaderID == "gov-a" }
            #expect(!govB.snapshot.leader)
            let dispatcher = system.dispatcher!
            try await eventually("the dispatcher follows A's plans") { dispatcher.currentPlan.generation >= 2 }
            taskA.cancel()
            await taskA.value
            let last = dispatcher.currentPlan.generation
            try await eventually("B takes over", timeout: .seconds(10)) { govB.snapshot.leader }
            try await eventually("B's plans continue the generations") { dispatcher.currentPlan.generation > last }
            #expect(govB.snapshot.plan.map { $0.generation > last } == true)
            taskB.cancel()
            await taskB.value
        }
    }
}
