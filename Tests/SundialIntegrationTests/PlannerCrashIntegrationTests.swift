import Foundation
import SundialContract
import SundialLocalCluster
import SundialPostgres
import SundialProto
import SundialTestSupport
import Testing

/// The planner as a real process (the `sundial-planner` executable), killed with SIGKILL.
@Suite("Integration: planner crash", .serialized)
struct PlannerCrashIntegrationTests {
    static var plannerBinary: URL {
        TestNATS.packageRoot.appendingPathComponent(".build/debug/sundial-planner")
    }

    func startPlanner(_ system: TestSystem, instance: String, log: URL, extra: [String: String] = [:]) async throws -> ChildProcess {
        let binary = Self.plannerBinary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestFailure("\(binary.path) missing: `make test` builds it before running the tests")
        }
        let env = try await system.serviceEnvironment([
            "SUNDIAL_PLANNER_INSTANCE_ID": instance, "SUNDIAL_HORIZON": "2s",
            "SUNDIAL_PLANNER_LEASE_TTL": "2s", "SUNDIAL_PLANNER_CLAIM_INTERVAL": "200ms",
            "SUNDIAL_PLANNER_RESCUE_GRACE": "5s",
        ].merging(extra) { _, new in new })
        return try ChildProcess.spawn(executable: binary.path, arguments: [], environment: env, output: .file(log.path))
    }

    @Test("SUNDIAL_SHARDS: a database holding timers keeps its count and a planner asking for another exits 2; the same count starts")
    func shardCountIsKeptOnceTimersExist() async throws {
        var options = TestSystem.Options()
        options.planner = false
        try await withTestSystem("shardsrefused", options) { system in
            let logs = try TestPostgres.temporaryDirectory("planner-shard-logs")
            _ = try await system.client(tenant: "acme").create(.delay(.seconds(3600), queue: "shards"))
            let refused = try await startPlanner(
                system, instance: "p-shards", log: logs.appendingPathComponent("refused.log"), extra: ["SUNDIAL_SHARDS": "64"])
            #expect(await refused.waitForExit() == 2)
            let text = try String(contentsOf: logs.appendingPathComponent("refused.log"), encoding: .utf8)
            #expect(text.contains("SUNDIAL_SHARDS"))
            // The database's own count is accepted: the planner runs until stopped.
            let accepted = try await startPlanner(
                system, instance: "p-shards-2", log: logs.appendingPathComponent("accepted.log"),
                extra: ["SUNDIAL_SHARDS": String(system.namespace.shardCount)])
            try await eventually("the planner holds every shard", timeout: .seconds(30)) {
                try await system.pool.withSession { session in
                    try session.execute("SELECT count(*) AS n FROM shard_leases WHERE owner = 'p-shards-2'")[0].int64("n")
                } == Int64(system.namespace.shardCount)
            }
            accepted.signal(SIGTERM)
            #expect(await accepted.waitForExit() == 0)
        }
    }

    @Test("a planner killed with SIGKILL and replaced before the due times: every timer fires exactly once")
    func plannerKilledAndReplaced() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.horizon = .seconds(2)
        try await withTestSystem("plannercrash", options) { system in
            let logs = try TestPostgres.temporaryDirectory("planner-logs")
            let worker = try await system.worker(queue: "crash")
            let client = system.client(tenant: "acme")

            var ids: Set<String> = []
            for second in 3...8 {
                ids.insert(try await client.create(.delay(.seconds(second), queue: "crash")).timer.id)
            }
            let first = try await startPlanner(system, instance: "planner-a", log: logs.appendingPathComponent("a.log"))
            // Kill it once it demonstrably holds loaded timers (at least one armed by it).
            try await eventually("planner A arms a timer", timeout: .seconds(20)) {
                let armed = try await system.pool.withSession { session in
                    try session.execute("SELECT count(*) AS n FROM timers WHERE state = 'armed'")[0].int("n") ?? 0
                }
                return armed > 0
            }
            first.signal(SIGKILL)
            #expect(await first.waitForExit() == 128 + SIGKILL)

            let second = try await startPlanner(system, instance: "planner-b", log: logs.appendingPathComponent("b.log"))
            let jobs = try await collectJobs(worker, count: ids.count, timeout: .seconds(40))
            #expect(Set(jobs.map(\.0.timerID)) == ids)
            #expect(jobs.count == ids.count)
            // Nothing more arrives: no duplicates from the takeover's republish.
            let extra = try await collectJobs(worker, count: 1, timeout: .seconds(3))
            #expect(extra.isEmpty, "duplicate jobs: \(extra.map(\.0.timerID))")

            let owners = try await system.pool.withSession { session in
                try session.execute("SELECT DISTINCT owner FROM shard_leases WHERE expires_at > now()").map { try $0.string("owner") ?? "" }
            }
            #expect(owners == ["planner-b"])
            let runs = try await system.pool.withSession { session in
                try session.execute("SELECT count(*) AS n FROM timer_runs")[0].int("n")
            }
            #expect(runs == ids.count)
            second.signal(SIGTERM)
            #expect(await second.waitForExit() == 0)
        }
    }

    @Test("after an 8 s planner outage, recurring timers follow their misfire policy: fire_all catches up every missed occurrence, fire_once one, skip none")
    func misfireAcrossPlannerOutage() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.horizon = .seconds(2)
        options.misfireThreshold = .seconds(1)
        try await withTestSystem("misfireoutage", options) { system in
            let logs = try TestPostgres.temporaryDirectory("planner-logs")
            let client = system.client(tenant: "acme")
            var ids: [Sundial_V1_MisfirePolicy: String] = [:]
            for policy in [Sundial_V1_MisfirePolicy.fireAll, .fireOnce, .skip] {
                var request = Sundial_V1_CreateTimerRequest()
                request.queue = "outage"
                request.schedule.every.interval = .init(seconds: 1)
                request.misfirePolicy = policy
                // Ingest arms the first occurrence; every later one waits for a planner.
                ids[policy] = try await client.create(request).timer.id
            }
            try await Task.sleep(for: .seconds(8))  // the outage: no planner at all
            let planner = try await startPlanner(
                system, instance: "planner-late", log: logs.appendingPathComponent("late.log"),
                extra: ["SUNDIAL_MISFIRE_THRESHOLD": "1s"])
            // Armed late = caught up: a run armed more than the threshold after its due time.
            func caughtUp(_ id: String) async throws -> (runs: Int, late: Int, skipped: Int64) {
                try await system.pool.withSession { session in
                    let row = try session.execute(
                        """
                        SELECT count(*) AS runs,
                               count(*) FILTER (WHERE armed_at > scheduled_at + interval '1 second') AS late,
                               (SELECT occurrences_skipped FROM timers WHERE id = $1::uuid) AS skipped
                        FROM timer_runs WHERE timer_id = $1::uuid
                        """, [.text(id)])[0]
                    return (try row.int("runs") ?? 0, try row.int("late") ?? 0, try row.int64("skipped") ?? 0)
                }
            }
            // Loaded once the cursor is back ahead of time: a run due in the future exists.
            for id in ids.values {
                try await eventually("\(id) is loaded past the outage", timeout: .seconds(20)) {
                    try await system.pool.withSession { session in
                        try session.execute(
                            "SELECT count(*) AS n FROM timer_runs WHERE timer_id = $1::uuid AND scheduled_at > now()", [.text(id)]
                        )[0].int("n") ?? 0
                    } > 0
                }
            }
            let all = try await caughtUp(ids[.fireAll]!)
            let once = try await caughtUp(ids[.fireOnce]!)
            let skip = try await caughtUp(ids[.skip]!)
            print("misfire after outage: fire_all \(all), fire_once \(once), skip \(skip)")
            // About 8 occurrences came due in the outage; the last one or two are not yet 1 s late.
            #expect(all.skipped == 0 && all.late >= 5)
            #expect(once.late == 1 && once.skipped >= 4)
            #expect(skip.late == 0 && skip.skipped >= 5)
            planner.signal(SIGTERM)
            #expect(await planner.waitForExit() == 0)
        }
    }

    @Test("a planner killed while holding loaded recurring timers: every occurrence fires once, none skipped")
    func plannerKilledWithRecurringTimers() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.horizon = .seconds(2)
        try await withTestSystem("recurcrash", options) { system in
            let logs = try TestPostgres.temporaryDirectory("planner-logs")
            let worker = try await system.worker(queue: "every")
            var request = Sundial_V1_CreateTimerRequest()
            request.queue = "every"
            request.schedule.every.interval = .init(seconds: 1)
            request.schedule.end.maxOccurrences = 8
            let created = try await system.client(tenant: "acme").create(request)
            let first = try await startPlanner(system, instance: "planner-a", log: logs.appendingPathComponent("a.log"))
            // Kill it while it holds loaded (armed, not yet fired) occurrences.
            try await eventually("planner A loads occurrences ahead", timeout: .seconds(20)) {
                let armed = try await system.pool.withSession { session in
                    try session.execute("SELECT count(*) AS n FROM timer_runs WHERE outcome = 'armed' AND occurrence > 0")[0].int("n") ?? 0
                }
                return armed > 0
            }
            first.signal(SIGKILL)
            _ = await first.waitForExit()
            let second = try await startPlanner(system, instance: "planner-b", log: logs.appendingPathComponent("b.log"))

            let jobs = try await collectJobs(worker, count: 8, timeout: .seconds(40))
            let occurrences = jobs.map(\.0.occurrence)
            #expect(occurrences.sorted() == Array(0..<8), "occurrences: \(occurrences)")
            #expect(jobs.allSatisfy { $0.0.timerID == created.timer.id })
            let extra = try await collectJobs(worker, count: 1, timeout: .seconds(3))
            #expect(extra.isEmpty, "extra jobs: \(extra.map(\.0.occurrence))")
            try await eventually("timer completed") {
                try await system.client(tenant: "acme").get(created.timer.id).state == .completed
            }
            second.signal(SIGTERM)
            _ = await second.waitForExit()
        }
    }
}
