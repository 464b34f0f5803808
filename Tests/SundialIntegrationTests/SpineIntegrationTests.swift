import Foundation
import SundialContract
import SundialCore
import SundialExecutor
import SundialLocalCluster
import SundialNATS
import SundialPostgres
import SundialProto
import SundialSchedule
import SundialStore
import SundialTestSupport
import Testing

/// A one-shot timer end to end through real nats-server (JetStream scheduling) and Postgres.
@Suite("Integration: spine", .serialized)
struct SpineIntegrationTests {
    @Test("a near-term timer goes Ingest → JetStream → Dispatcher → executor within 2 s of due")
    func nearTermTimerReachesExecutor() async throws {
        try await withTestSystem("nearterm") { system in
            let worker = try await system.worker(queue: "emails")
            let created = try await system.client(tenant: "acme").create(
                .delay(.seconds(2), queue: "emails", payload: "hello"))
            #expect(created.created)
            #expect(created.timer.state == .armed)  // due within the horizon: loaded by Ingest

            let jobs = try await collectJobs(worker, count: 1, timeout: .seconds(15))
            try #require(jobs.count == 1)
            let (job, receivedAt) = jobs[0]
            #expect(job.timerID == created.timer.id)
            #expect(job.tenant == "acme")
            #expect(job.attempt == 1)
            #expect(String(decoding: job.payload, as: UTF8.self) == "hello")
            #expect(job.message.headers[SundialHeader.natsMessageID] == "\(created.timer.id):0:1:1")
            let due = created.timer.nextFireAt.date
            #expect(abs(job.scheduledAt.timeIntervalSince(due)) < 0.002)
            let lag = receivedAt.timeIntervalSince(due)
            print("spine fire lag (near-term path): \(String(format: "%.3f", lag)) s")
            #expect(lag >= -0.05 && lag <= 2.0)

            try await eventually("timer succeeded (the executor completed it)") {
                try await system.client(tenant: "acme").get(created.timer.id).state == .succeeded
            }
            // The forward is recorded right after it is sent; a fast executor's success can be
            // applied a few milliseconds earlier, so wait for the count to settle — at exactly 1.
            try await eventually("the attempt is counted") {
                try await system.client(tenant: "acme").get(created.timer.id).attempts >= 1
            }
            let timer = try await system.client(tenant: "acme").get(created.timer.id)
            #expect(timer.attempts == 1)
            let runs = try await system.store.runs(timerID: TimerID.parse(created.timer.id)!)
            #expect(runs.count == 1)
            #expect(runs.first?.outcome == .succeeded)
            #expect(runs.first?.firedAt != nil)
        }
    }

    @Test("a timer beyond the horizon is stored, then claimed and loaded by the Planner")
    func plannerLoadsFarTimers() async throws {
        var options = TestSystem.Options()
        options.horizon = .seconds(2)
        try await withTestSystem("farpath", options) { system in
            let worker = try await system.worker(queue: "reports")
            let client = system.client(tenant: "globex")
            let created = try await client.create(.delay(.seconds(5), queue: "reports", payload: "later"))
            #expect(created.timer.state == .scheduled)  // beyond the 2 s horizon: left to the planner

            try await eventually("planner arms the timer") {
                try await client.get(created.timer.id).state == .armed
            }
            let jobs = try await collectJobs(worker, count: 1, timeout: .seconds(20))
            try #require(jobs.count == 1)
            let lag = jobs[0].1.timeIntervalSince(created.timer.nextFireAt.date)
            print("spine fire lag (planner path): \(String(format: "%.3f", lag)) s")
            #expect(lag >= -0.05 && lag <= 2.0)
            #expect((system.planner?.stats.published.load(ordering: .relaxed) ?? 0) >= 1)
        }
    }

    @Test("a retried create with the same idempotency key returns the same timer, never a second")
    func idempotentCreate() async throws {
        try await withTestSystem("idem") { system in
            let client = system.client(tenant: "acme")
            let request = Sundial_V1_CreateTimerRequest.delay(.seconds(600), queue: "q", payload: "x", key: "order-42")
            let first = try await client.create(request)
            let second = try await client.create(request)
            #expect(first.created)
            #expect(!second.created)
            #expect(first.timer.id == second.timer.id)

            // Same key, different request: a conflict, not a silent success.
            var different = request
            different.payload = Data("other".utf8)
            await #expect(throws: SundialError.self) { _ = try await client.create(different) }
            do {
                _ = try await client.create(different)
            } catch let error as SundialError {
                #expect(error.code == .conflict)
            }
            // The key is per tenant: another tenant gets its own timer.
            let other = try await system.client(tenant: "initech").create(request)
            #expect(other.created && other.timer.id != first.timer.id)

            let count = try await system.pool.withSession { session in
                try session.execute("SELECT count(*) AS n FROM timers WHERE idempotency_key = 'order-42'")[0].int("n")
            }
            #expect(count == 2)
        }
    }

    @Test("creates at once are committed together: a key sent 40 times at once makes one timer, 60 distinct creates make 60")
    func concurrentCreatesGroupCommit() async throws {
        try await withTestSystem("groupcommit") { system in
            let client = system.client(tenant: "acme")
            let request = Sundial_V1_CreateTimerRequest.delay(.seconds(600), queue: "q", payload: "x", key: "burst-1")
            let same = try await withThrowingTaskGroup(of: Sundial_V1_CreateTimerResponse.self) { group in
                for _ in 0..<40 { group.addTask { try await client.create(request) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(same.map(\.timer.id)).count == 1)
            #expect(same.filter(\.created).count == 1)
            // (index, response): even indexes are due in 2 s, odd ones in 10 min.
            let distinct = try await withThrowingTaskGroup(of: (Int, Sundial_V1_CreateTimerResponse).self) { group in
                for index in 0..<60 {
                    group.addTask {
                        (index, try await client.create(.delay(.seconds(index % 2 == 0 ? 2 : 600), queue: "gc", payload: "p\(index)")))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }.sorted { $0.0 < $1.0 }.map(\.1)
            #expect(distinct.allSatisfy(\.created) && Set(distinct.map(\.timer.id)).count == 60)
            let stored = try await system.pool.withSession { session in
                try session.execute(
                    """
                    SELECT count(*)::bigint AS timers, (SELECT count(*) FROM timer_runs r JOIN timers t ON t.id = r.timer_id
                                                        WHERE t.queue = 'gc')::bigint AS runs
                    FROM timers WHERE queue = 'gc'
                    """)[0]
            }
            #expect(try stored.int("timers") == 60)
            // The 30 due in 2 s were loaded at create time: each has its armed (or fired) run.
            #expect(try (stored.int("runs") ?? 0) >= 30)
            // And they fire.
            let worker = try await system.worker(queue: "gc")
            var received = Set<String>()
            let deadline = ContinuousClock.now + .seconds(30)
            while received.count < 30, ContinuousClock.now < deadline {
                for job in try await worker.next(max: 64, maxWait: .milliseconds(300)) {
                    received.insert(job.timerID)
                    try await worker.complete(job)
                }
            }
            let soon = Set(distinct.enumerated().filter { $0.offset % 2 == 0 }.map(\.element.timer.id))
            #expect(received == soon)
        }
    }

    @Test("bad input gets the error headers and a Status body, and the service keeps serving")
    func badInputIsRejectedCleanly() async throws {
        try await withTestSystem("badinput") { system in
            let client = system.client(tenant: "acme")

            // Malformed protobuf bytes.
            let garbage = try await client.raw(.create, [0xFF, 0xFF, 0xFF, 0x01, 0x02])
            #expect(garbage.headers[SundialHeader.serviceErrorCode] == "400")
            #expect(garbage.headers[SundialHeader.serviceError]?.contains("malformed") == true)
            let status = try Sundial_V1_Status(serializedBytes: garbage.payload)
            #expect(status.code == 400)

            func rejection(_ request: Sundial_V1_CreateTimerRequest) async throws -> SundialError {
                do {
                    _ = try await client.create(request)
                } catch let error as SundialError {
                    return error
                }
                throw TestFailure("request was accepted")
            }
            var missingQueue = Sundial_V1_CreateTimerRequest.delay(.seconds(5), queue: "")
            missingQueue.queue = ""
            #expect(try await rejection(missingQueue).violations.contains { $0.field == "queue" })

            var noSchedule = Sundial_V1_CreateTimerRequest()
            noSchedule.queue = "q"
            #expect(try await rejection(noSchedule).violations.contains { $0.field == "schedule" })

            var oversized = Sundial_V1_CreateTimerRequest.delay(.seconds(5), queue: "q")
            oversized.payload = Data(count: 300 * 1024)
            let tooBig = try await rejection(oversized)
            #expect(tooBig.code == .invalidArgument)
            #expect(tooBig.violations.contains { $0.field == "payload" })

            var badZone = Sundial_V1_CreateTimerRequest()
            badZone.queue = "q"
            badZone.schedule.date = .with { $0.year = 2099; $0.month = 3; $0.day = 15 }
            badZone.schedule.timeZone = "Mars/Olympus_Mons"
            #expect(try await rejection(badZone).violations.contains { $0.field.contains("time_zone") })

            var past = Sundial_V1_CreateTimerRequest()
            past.queue = "q"
            past.schedule.date = .with { $0.year = 2001; $0.month = 1; $0.day = 1 }
            #expect(try await rejection(past).code == .invalidArgument)

            let unknownID = try await rejection(.delay(.seconds(1), queue: "q.bad..name"))
            #expect(unknownID.code == .invalidArgument)

            // Get with a malformed and an unknown id.
            do {
                _ = try await client.get("not-a-uuid")
                Issue.record("malformed id accepted")
            } catch let error as SundialError {
                #expect(error.code == .invalidArgument)
            }
            do {
                _ = try await client.get(TimerID.text(TimerID.make()))
                Issue.record("unknown id found")
            } catch let error as SundialError {
                #expect(error.code == .notFound)
            }

            // Still serving, and nothing partial was written.
            let ok = try await client.create(.delay(.seconds(60), queue: "q"))
            #expect(ok.created)
            let rows = try await system.pool.withSession { session in
                try session.execute("SELECT count(*) AS n FROM timers")[0].int("n")
            }
            #expect(rows == 1)
        }
    }

    @Test("a tenant cannot read another tenant's timer, even knowing its id")
    func tenantIsolationOnGet() async throws {
        try await withTestSystem("isolation") { system in
            let mine = try await system.client(tenant: "acme").create(.delay(.seconds(600), queue: "q"))
            do {
                _ = try await system.client(tenant: "globex").get(mine.timer.id)
                Issue.record("another tenant read the timer")
            } catch let error as SundialError {
                #expect(error.code == .notFound)
            }
            #expect(try await system.client(tenant: "acme").get(mine.timer.id).id == mine.timer.id)
        }
    }

    @Test("every service answers $SRV.PING, $SRV.INFO and $SRV.STATS")
    func microDiscovery() async throws {
        try await withTestSystem("discovery") { system in
            for name in [
                SundialNamespace.ingestServiceName, SundialNamespace.plannerServiceName,
                SundialNamespace.dispatcherServiceName,
            ] {
                // Services subscribe asynchronously after start: wait until this one answers.
                try await eventually("\(name) answers $SRV.PING") {
                    (try? await system.api.request(subject: "$SRV.PING.\(name)", payload: [], timeout: .milliseconds(500))) != nil
                }
                let ping = try await system.api.request(subject: "$SRV.PING.\(name)", payload: [], timeout: .seconds(2))
                let pingJSON = try #require(try JSONSerialization.jsonObject(with: Data(ping.payload)) as? [String: Any])
                #expect(pingJSON["type"] as? String == "io.nats.micro.v1.ping_response")
                #expect(pingJSON["name"] as? String == name)

                let info = try await system.api.request(subject: "$SRV.INFO.\(name)", payload: [], timeout: .seconds(2))
                let infoJSON = try #require(try JSONSerialization.jsonObject(with: Data(info.payload)) as? [String: Any])
                #expect(infoJSON["type"] as? String == "io.nats.micro.v1.info_response")
            }
            _ = try await system.client(tenant: "acme").create(.delay(.seconds(600), queue: "q"))
            // `$SRV` is not namespaced: every ingest on the shared server answers, other tests'
            // too. Collect the answers; ours (and maybe others') counts the create.
            let inbox = "_INBOX.discovery-\(UInt64.random(in: 1...UInt64.max))"
            let replies = try await system.api.subscribe(subject: inbox)
            try await system.api.publish(
                NATSOutgoingMessage(subject: "$SRV.STATS.\(SundialNamespace.ingestServiceName)", replySubject: inbox))
            var creates: [Int] = []
            while let reply = try await firstMessage(replies, within: .milliseconds(500)) {
                let statsJSON = try #require(try JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any])
                #expect(statsJSON["type"] as? String == "io.nats.micro.v1.stats_response")
                let endpoints = try #require(statsJSON["endpoints"] as? [[String: Any]])
                let create = try #require(endpoints.first { $0["name"] as? String == "Timers.Create" })
                creates.append(create["num_requests"] as? Int ?? 0)
            }
            replies.unsubscribe()
            #expect(creates.contains { $0 >= 1 }, "Create counts per instance: \(creates)")

            // The dispatcher's and planner's typed reports arrive as `data` with their wire names
            // (any instance on the shared server answers; each has every key).
            for (name, keys) in [
                (SundialNamespace.dispatcherServiceName, ["dispatched", "stale_dropped", "results_ignored", "fairness"]),
                (SundialNamespace.plannerServiceName, ["claimed", "published", "held_shards"]),
            ] {
                let reply = try await system.api.request(subject: "$SRV.STATS.\(name)", payload: [], timeout: .seconds(2))
                let json = try #require(try JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any])
                let data = try #require(json["data"] as? [String: Any], "\(name): \(json)")
                for key in keys { #expect(data[key] != nil, "\(name) STATS data lacks \(key): \(data.keys.sorted())") }
                if name == SundialNamespace.dispatcherServiceName {
                    let fairness = try #require(data["fairness"] as? [String: Any])
                    #expect(fairness["tiers"] is [String: Any] && fairness["plan_generation"] != nil)
                }
            }
        }
    }
}
