import Foundation
import SundialContract
import SundialCore
import SundialDispatcher
import SundialExecutor
import SundialFairness
import SundialIngest
import SundialNATS
import SundialPostgres
import SundialProto
import SundialStore
import SundialTestSupport
import Testing

/// What tenants' executors and clients send is untrusted (issue 17): out-of-range results,
/// stale fires after an acknowledged update, requests whose replies would not fit.
@Suite("Integration: hostile input", .serialized)
struct HostileInputIntegrationTests {
    /// Fired messages waiting for the dispatchers' consumer.
    static func firesPending(_ system: TestSystem) async throws -> Int {
        let info = try await system.api.consumerInfo(
            stream: system.namespace.fireStream, durable: system.namespace.dispatcherDurable)
        return (info["num_pending"] as? NSNumber)?.intValue ?? 0
    }

    static func publishResult(_ system: TestSystem, tenant: String, _ payload: [UInt8]) async throws {
        _ = try await system.api.jetStream.publish(
            NATSOutgoingMessage(subject: system.namespace.results(tenant: tenant), payload: payload))
    }

    @Test("out-of-range and foreign results are rejected, kept as poison and reported; the pipeline goes on")
    func hostileResults() async throws {
        try await withTestSystem("hostile-results") { system in
            let dispatcher = try #require(system.dispatcher)
            let events = try await system.api.subscribe(
                subject: system.namespace.event(tenant: "acme", kind: TimerEventKind.resultRejected))
            let worker = try await system.worker(queue: "hostile")
            let created = try await system.client(tenant: "acme").create(.delay(.milliseconds(300), queue: "hostile"))
            // Taken but not completed: this test reports its result by hand.
            var taken: [SundialJob] = []
            let deadline = ContinuousClock.now + .seconds(10)
            while taken.isEmpty, ContinuousClock.now < deadline { taken = try await worker.next(max: 1) }
            let job = try #require(taken.first)

            func result(_ edit: (inout Sundial_V1_JobResult) -> Void) throws -> [UInt8] {
                var result = Sundial_V1_JobResult()
                result.tenant = "acme"
                result.timerID = created.timer.id
                result.occurrence = UInt64(job.occurrence)
                result.attempt = 1
                result.success = true
                edit(&result)
                return try result.serializedBytes()
            }
            // Each of these once trapped a dispatcher or jammed the results consumer.
            try await Self.publishResult(system, tenant: "acme", try result { $0.occurrence = UInt64.max })
            try await Self.publishResult(system, tenant: "acme", try result { $0.occurrence = UInt64(Int64.max) + 1 })
            try await Self.publishResult(system, tenant: "acme", try result { $0.attempt = UInt32.max })
            try await Self.publishResult(system, tenant: "acme", try result { $0.attempt = 0 })
            try await Self.publishResult(system, tenant: "acme", try result { $0.tenant = "globex" })
            try await Self.publishResult(system, tenant: "acme", try result { $0.timerID = "not-a-timer" })
            try await Self.publishResult(system, tenant: "acme", [0xFF, 0xFF, 0xFF, 0x0F, 0x01])
            // A real job's success with an absurd finished_at: applied, with the receive time.
            try await Self.publishResult(
                system, tenant: "acme",
                try result {
                    $0.finishedAt = .init(seconds: Int64.max / 2, nanos: 0)
                })

            try await eventually("the real result is applied") {
                try await system.client(tenant: "acme").get(created.timer.id).state == .succeeded
            }
            try await eventually("seven results rejected") {
                dispatcher.stats.resultsRejected.values.reduce(0, +) == 7
            }
            let rejected = dispatcher.stats.resultsRejected
            print("hostile results: rejected \(rejected.sorted { $0.key < $1.key })")
            #expect(rejected["occurrence_out_of_range"] == 2)
            #expect(rejected["attempt_out_of_range"] == 2)
            #expect(rejected["tenant_mismatch"] == 1)
            #expect(rejected["invalid_timer_id"] == 1)
            #expect(rejected["undecodable"] == 1)
            #expect(dispatcher.stats.count(of: .resultFinishedAtReplaced) == 1)
            let runs = try await system.store.runs(timerID: try #require(TimerID.parse(created.timer.id)))
            let finished = try #require(runs.first?.finishedAt)
            #expect(abs(finished.timeIntervalSinceNow) < 120)

            // Kept on the poison stream with a reason, and told to the tenant.
            try await eventually("poison kept") {
                try await system.api.streamMessageCount(system.namespace.poisonStream) == 7
            }
            let kept = try #require(
                try await system.api.lastMessage(
                    stream: system.namespace.poisonStream, subject: system.namespace.poison(source: "results")))
            #expect(kept.rawHeaders.contains(SundialHeader.poisonReason))
            var seen = 0
            var iterator = events.makeAsyncIterator()
            while seen < 7, let message = await iterator.next() {
                let event = try Sundial_V1_TimerEvent(serializedBytes: message.payload)
                #expect(event.kind == TimerEventKind.resultRejected)
                #expect(!event.run.error.isEmpty)
                seen += 1
            }
            #expect(seen == 7)  // the undecodable one too: its subject names the tenant
            try await eventually("results consumer drained") {
                let info = try await system.api.consumerInfo(
                    stream: system.namespace.resultsStream, durable: system.namespace.resultsDurable)
                return (info["num_ack_pending"] as? NSNumber)?.intValue == 0
                    && (info["num_pending"] as? NSNumber)?.intValue == 0
            }

            // Still applying results: a second timer completes normally.
            let secondWorker = try await system.worker(queue: "hostile2")
            let second = try await system.client(tenant: "acme").create(.delay(.milliseconds(200), queue: "hostile2"))
            let secondJob = try #require(try await collectJobs(secondWorker, count: 1, timeout: .seconds(10)).first?.0)
            #expect(secondJob.timerID == second.timer.id)
            try await eventually("second succeeded") {
                try await system.client(tenant: "acme").get(second.timer.id).state == .succeeded
            }
        }
    }

    @Test(
        "an acknowledged update (payload only, or a new schedule) is what runs, with both fires in one batch or in two",
        arguments: [(250, false), (1, false), (250, true), (1, true)])
    func updateAfterFireRunsNewPayload(fetchBatch: Int, newSchedule: Bool) async throws {
        var options = TestSystem.Options()
        options.dispatcher = false
        try await withTestSystem("stale-\(fetchBatch)-\(newSchedule)", options) { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "stale")
            let created = try await client.create(.delay(.milliseconds(200), queue: "stale", payload: "old"))
            // The old version fires while no dispatcher runs…
            try await eventually("old version fired") { try await Self.firesPending(system) == 1 }
            // …then a payload-only update is acknowledged and its re-versioned schedule fires too.
            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = created.timer.id
            update.updatePayload = true
            update.payload = Data("new".utf8)
            if newSchedule { update.schedule.delay.duration = .init(seconds: 0, nanos: 300_000_000) }
            let updated = try await client.update(update)
            #expect(updated.version > created.timer.version)
            try await eventually("new version fired") { try await Self.firesPending(system) == 2 }

            let (dispatcher, _) = try system.startDispatcher(fetchBatch: fetchBatch)
            let jobs = try await collectJobs(worker, count: 2, timeout: .seconds(4))
            #expect(jobs.map { String(decoding: $0.0.payload, as: UTF8.self) } == ["new"])
            #expect(jobs.first?.0.version == updated.version)
            try await eventually("both fires handled") { try await Self.firesPending(system) == 0 }
            #expect(dispatcher.stats.count(of: .supersededDropped) + dispatcher.stats.staleDropped.load(ordering: .relaxed) >= 1)
        }
    }

    @Test("an acknowledged cancel after the fire means no dispatch")
    func cancelAfterFireRunsNothing() async throws {
        var options = TestSystem.Options()
        options.dispatcher = false
        try await withTestSystem("stale-cancel", options) { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "stale")
            let created = try await client.create(.delay(.milliseconds(200), queue: "stale", payload: "x"))
            try await eventually("fired") { try await Self.firesPending(system) == 1 }
            _ = try await client.cancel(created.timer.id)
            _ = try system.startDispatcher()
            try await eventually("fire handled") { try await Self.firesPending(system) == 0 }
            #expect(try await collectJobs(worker, count: 1, timeout: .seconds(2)).isEmpty)
        }
    }

    @Test("a List page whose reply would outgrow max_payload ends early with a next-page token")
    func listReplyFitsMaxPayload() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        try await withTestSystem("big-list", options) { system in
            let client = system.client(tenant: "acme")
            let payload = String(repeating: "p", count: 200 * 1024)
            for _ in 0..<12 {
                _ = try await client.create(.delay(.seconds(3600), queue: "big", payload: payload))
            }
            var request = Sundial_V1_ListTimersRequest()
            request.pageSize = 50
            var seen = 0
            var pages = 0
            while pages < 20 {
                let reply = try await system.api.request(
                    subject: system.namespace.request(tenant: "acme", method: .list),
                    payload: try request.serializedBytes(), timeout: .seconds(10))
                #expect(reply.headers[SundialHeader.serviceErrorCode] == nil)
                #expect(reply.payload.count <= 1024 * 1024)
                let page = try Sundial_V1_ListTimersResponse(serializedBytes: reply.payload)
                seen += page.timers.count
                pages += 1
                if page.nextPageToken.isEmpty { break }
                request.pageToken = page.nextPageToken
            }
            print("big list: 12 timers of 200 KiB in \(pages) pages")
            #expect(seen == 12)
            #expect(pages >= 3)
        }
    }

    @Test("error text that echoes control characters and megabytes still answers with sane headers")
    func errorHeadersAreSanitised() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        try await withTestSystem("headers", options) { system in
            var get = Sundial_V1_GetTimerRequest()
            get.timerID = "x\r\nX-Injected: 1\r\n" + String(repeating: "y", count: 2 << 20)
            let bodies: [(TimersMethod, [UInt8])] = [
                (.get, try get.serializedBytes()),
                (.cancel, (0..<(1_800_000)).map { UInt8(truncatingIfNeeded: $0 &* 31) }),
                (.list, Array(repeating: 0xFF, count: 16)),
                (.history, [0x0A, 0x10] + Array(repeating: 0x41, count: 16)),
            ]
            for (method, body) in bodies {
                let reply = try await system.api.request(
                    subject: system.namespace.request(tenant: "acme", method: method), payload: body,
                    timeout: .seconds(10))
                #expect(reply.headers["X-Injected"] == nil)
                let code = reply.headers[SundialHeader.serviceErrorCode]
                #expect(code == "400" || code == "404", "\(method): \(code ?? "no code")")
                #expect((reply.headers[SundialHeader.serviceError]?.utf8.count ?? 0) <= HeaderValue.maximumBytes)
            }
        }
    }

    @Test("a governor that cannot read the stored plan still outranks the old leader's generations")
    func governorFailoverEpochs() async throws {
        try await withTestSystem("epochs") { system in
            let dispatcher = try #require(system.dispatcher)
            let bucket = try await KeyValueBucket.ensure(system.namespace.quotasBucket, connection: system.api)
            var old = QuotaPlan.unthrottled()
            old.generation = 1_000_000
            old.issuedAtMillis = 1
            _ = try await bucket.put(SundialNamespace.quotaPlanKey, try old.jsonBytes())
            try await eventually("the old leader's plan applies") { dispatcher.currentPlan.generation == 1_000_000 }
            // The stored plan becomes unreadable; a new governor starts its generations over.
            _ = try await bucket.put(SundialNamespace.quotaPlanKey, Array("not a plan".utf8))
            let (governor, _) = try system.startGovernor(TestSystem.governorConfig(capacity: 1000))
            try await eventually("the new leader's plan applies") {
                dispatcher.currentPlan.epoch != nil && dispatcher.currentPlan.generation < 1_000_000
            }
            #expect(governor.snapshot.leader)
            print("epochs: dispatcher follows epoch \(dispatcher.currentPlan.epoch ?? 0) generation \(dispatcher.currentPlan.generation)")
        }
    }

    @Test("a child of a finished recurring parent starts at once if any occurrence succeeded, else is refused")
    func childOfFinishedRecurringParent() async throws {
        try await withTestSystem("finished-parent") { system in
            let client = system.client(tenant: "acme")
            let good = try await system.worker(queue: "good")
            let bad = try await system.worker(queue: "bad")
            func recurring(_ queue: String) -> Sundial_V1_CreateTimerRequest {
                var request = Sundial_V1_CreateTimerRequest()
                request.queue = queue
                request.schedule.every.interval = .init(seconds: 1)
                request.schedule.end.maxOccurrences = 2
                request.retryPolicy.maxAttempts = 1
                return request
            }
            let succeeding = try await client.create(recurring("good"))
            let failing = try await client.create(recurring("bad"))
            var goodJobs = 0
            var badJobs = 0
            let deadline = ContinuousClock.now + .seconds(20)
            while goodJobs + badJobs < 4, ContinuousClock.now < deadline {
                for job in try await good.next(max: 8, maxWait: .milliseconds(200)) {
                    try await good.complete(job)
                    goodJobs += 1
                }
                for job in try await bad.next(max: 8, maxWait: .milliseconds(200)) {
                    try await bad.fail(job, error: "no")
                    badJobs += 1
                }
            }
            try await eventually("both parents completed") {
                let first = try await client.get(succeeding.timer.id).state
                let second = try await client.get(failing.timer.id).state
                return first == .completed && second == .completed
            }
            var child = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: "good", payload: "child")
            child.afterTimerID = succeeding.timer.id
            let created = try await client.create(child)
            #expect(created.timer.state != .waiting)
            let jobs = try await collectJobs(good, count: 1, timeout: .seconds(10))
            #expect(jobs.map { String(decoding: $0.0.payload, as: UTF8.self) } == ["child"])

            child.afterTimerID = failing.timer.id
            await #expect(throws: (any Error).self) { _ = try await client.create(child) }
        }
    }

    @Test("Ingest refuses to start with a payload limit that cannot fit the server's max_payload once wrapped")
    func payloadLimitIncludesTheEnvelope() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        try await withTestSystem("payload-limit", options) { system in
            var config = IngestConfig()
            config.namespace = system.namespace
            config.maxPayloadBytes = system.api.serverMaxPayload
            config.maxReplyBytes = config.maxPayloadBytes + 8192
            let ingest = try IngestService(config: config, connection: system.api, store: system.store, logger: TestNATS.logger)
            await #expect(throws: SundialError.self) { try await ingest.run() }
        }
    }

    @Test("a recurring timer whose stored time zone no longer loads ends dead with a reason, not completed")
    func unloadableTimeZoneFailsTheTimer() async throws {
        try await withTestSystem("bad-zone") { system in
            let client = system.client(tenant: "acme")
            var request = Sundial_V1_CreateTimerRequest()
            request.queue = "zones"
            request.schedule.every.interval = .init(seconds: 3600)
            request.schedule.every.start = .init(date: Date().addingTimeInterval(7200))
            let created = try await client.create(request)
            #expect(created.timer.state == .scheduled)
            // The stored schedule now names a zone this machine cannot load, and it is due.
            var broken = request.schedule
            broken.timeZone = "Mars/Olympus_Mons"
            let id = try #require(TimerID.parse(created.timer.id))
            let brokenBytes: [UInt8] = try broken.serializedBytes()
            try await system.pool.withSession { session in
                try session.execute(
                    "UPDATE timers SET schedule = $2, next_fire_at = now() + interval '1 second', next_nominal_at = now() + interval '1 second' WHERE id = $1",
                    [.uuid(id), .bytes(brokenBytes)])
            }
            try await eventually("the timer fails with a reason") {
                let timer = try await client.get(created.timer.id)
                return timer.state == .dead && timer.lastError.contains("time zone")
            }
        }
    }

    @Test("per-tenant limits on active timers and payload bytes answer 429 to that tenant only")
    func tenantLimits() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        options.ingestTuning = {
            $0.maxActiveTimersPerTenant = 5
            $0.maxPayloadBytesPerTenant = 1000
            $0.tenantUsageRefresh = .milliseconds(100)
        }
        try await withTestSystem("tenant-limits", options) { system in
            let capped = system.client(tenant: "capped")
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try await capped.create(.delay(.seconds(3600), queue: "q", payload: "x")).timer.id) }
            @Sendable func code(_ request: Sundial_V1_CreateTimerRequest, _ tenant: String) async throws -> String? {
                let reply = try await system.api.request(
                    subject: system.namespace.request(tenant: tenant, method: .create),
                    payload: try request.serializedBytes(), timeout: .seconds(10))
                return reply.headers[SundialHeader.serviceErrorCode]
            }
            #expect(try await code(.delay(.seconds(3600), queue: "q", payload: "x"), "capped") == "429")
            // Another tenant is not affected; a large payload passes the byte limit alone.
            #expect(try await code(.delay(.seconds(3600), queue: "q", payload: "x"), "free") == nil)
            let big = String(repeating: "b", count: 1500)
            #expect(try await code(.delay(.seconds(3600), queue: "q", payload: big), "free") == "429")
            // A cancelled timer frees its place (after the next usage read).
            _ = try await capped.cancel(ids[0])
            try await eventually("a place is free again") {
                try await code(.delay(.seconds(3600), queue: "q", payload: "x"), "capped") == nil
            }
        }
    }

    @Test("a tenant flooding Ingest gets 429 beyond its waiting share; another tenant's requests are served")
    func ingestFairShare() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        options.ingestTuning = {
            $0.maxConcurrentRequests = 2
            $0.maxQueuedPerTenant = 16
        }
        try await withTestSystem("ingest-share", options) { system in
            let body: [UInt8] = try Sundial_V1_CreateTimerRequest.delay(.seconds(3600), queue: "q").serializedBytes()
            @Sendable func send(_ tenant: String) async -> String {
                guard let reply = try? await system.api.request(
                    subject: system.namespace.request(tenant: tenant, method: .create), payload: body,
                    timeout: .seconds(20))
                else { return "no reply" }
                return reply.headers[SundialHeader.serviceErrorCode] ?? "ok"
            }
            let (whale, small) = await withTaskGroup(of: (String, String).self) { group in
                for _ in 0..<400 { group.addTask { ("whale", await send("whale")) } }
                for _ in 0..<10 { group.addTask { ("small", await send("small")) } }
                var whale: [String: Int] = [:]
                var small: [String: Int] = [:]
                for await (tenant, code) in group {
                    if tenant == "whale" { whale[code, default: 0] += 1 } else { small[code, default: 0] += 1 }
                }
                return (whale, small)
            }
            print("ingest share: whale \(whale.sorted { $0.key < $1.key }), small \(small.sorted { $0.key < $1.key })")
            #expect((whale["429"] ?? 0) > 0)
            #expect(whale["no reply"] == nil)
            #expect(small == ["ok": 10])
        }
    }

    @Test("a request stuck on its dependency is answered 503 within the deadline; a retry with its key finds the timer")
    func stuckRequestsAreAnswered() async throws {
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        options.ingestTuning = { $0.answerWithin = .milliseconds(300) }
        try await withTestSystem("deadline", options) { system in
            // Another session holds an exclusive lock on the timers table: creates block on it.
            // (The pool's session runs on its own thread, so waiting there blocks nobody else.)
            let locker = try await TestPostgres.pool(schema: system.schema, size: 1)
            let locked = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            let holder = Task {
                try await locker.withSession { session in
                    try session.execute("BEGIN")
                    try session.execute("LOCK TABLE timers IN ACCESS EXCLUSIVE MODE")
                    locked.signal()
                    _ = release.wait(timeout: .now() + 20)
                    try session.execute("ROLLBACK")
                }
            }
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                Thread.detachNewThread {
                    _ = locked.wait(timeout: .now() + 20)
                    done.resume()
                }
            }
            let request = Sundial_V1_CreateTimerRequest.delay(.seconds(3600), queue: "q", payload: "p", key: "stuck-1")
            let started = ContinuousClock.now
            let reply = try await system.api.request(
                subject: system.namespace.request(tenant: "acme", method: .create),
                payload: try request.serializedBytes(), timeout: .seconds(10))
            let waited = ContinuousClock.now - started
            print("deadline: answered \(reply.headers[SundialHeader.serviceErrorCode] ?? "ok") after \(waited)")
            #expect(reply.headers[SundialHeader.serviceErrorCode] == "503")
            #expect(waited < .seconds(3))
            release.signal()
            try await holder.value
            await locker.close()
            // The blocked create went through once the lock was gone; a retry returns it.
            try await eventually("the retry finds one timer") {
                let retried = try await system.client(tenant: "acme").create(request)
                return !retried.timer.id.isEmpty
            }
            let count = try await system.pool.withSession { session in
                try session.execute("SELECT count(*)::int AS n FROM timers WHERE idempotency_key = 'stuck-1'")[0].int("n")
            }
            #expect(count == 1)
        }
    }
}
