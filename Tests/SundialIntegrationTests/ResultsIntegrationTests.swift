import Foundation
import SundialContract
import SundialCore
import SundialDispatcher
import SundialExecutor
import SundialNATS
import SundialProto
import SundialStore
import SundialTestSupport
import Testing

/// Executor results: success, retries with backoff, dead letters and tenant events, and
/// dependency chains, on real NATS and Postgres.
@Suite("Integration: results, retries, dependencies", .serialized)
struct ResultsIntegrationTests {
    @Test("failures retry with growing backoff, then dead-letter and notify the tenant")
    func retryThenDeadLetter() async throws {
        try await withTestSystem("deadletter") { system in
            let worker = try await system.worker(queue: "flaky")
            // The tenant's notification subscription (stream-backed, so it can't miss it).
            let events = try await system.api.subscribe(subject: system.namespace.event(tenant: "acme", kind: ">"))
            var request = Sundial_V1_CreateTimerRequest.delay(.milliseconds(500), queue: "flaky", payload: "p")
            request.retryPolicy.maxAttempts = 3
            request.retryPolicy.initialBackoff = .init(seconds: 0, nanos: 300_000_000)
            request.retryPolicy.maxBackoff = .init(seconds: 2)
            let created = try await system.client(tenant: "acme").create(request)

            var attempts: [(Int, Date)] = []
            let deadline = ContinuousClock.now + .seconds(30)
            while attempts.count < 3, ContinuousClock.now < deadline {
                for job in try await worker.next(max: 8, maxWait: .milliseconds(500)) {
                    #expect(job.timerID == created.timer.id)
                    attempts.append((job.attempt, Date()))
                    try await worker.fail(job, error: "boom \(job.attempt)")
                }
            }
            #expect(attempts.map(\.0) == [1, 2, 3])
            try await eventually("timer is dead") {
                try await system.client(tenant: "acme").get(created.timer.id).state == .dead
            }
            let timer = try await system.client(tenant: "acme").get(created.timer.id)
            #expect(timer.lastError == "boom 3")
            let runs = try await system.store.runs(timerID: TimerID.parse(created.timer.id)!)
            #expect(runs.map(\.outcome) == [.failed, .failed, .dead])
            #expect(runs.map(\.attempt) == [1, 2, 3])
            // Full-jitter backoff: each retry is scheduled within [0, base] (0.3 s, then 0.6 s)
            // after the failure was applied — never before the failure, never beyond its base
            // (plus the time to apply the result).
            for (failed, next, base) in [(runs[0], runs[1], 0.3), (runs[1], runs[2], 0.6)] {
                let gap = next.scheduledAt.timeIntervalSince(try #require(failed.finishedAt))
                #expect(gap >= -0.05 && gap <= base + 2, "retry \(next.attempt) scheduled \(gap) s after the failure")
            }

            var kinds: [String] = []
            var iterator = events.makeAsyncIterator()
            while kinds.count < 3, let message = await iterator.next() {
                let event = try Sundial_V1_TimerEvent(serializedBytes: message.payload)
                #expect(event.timer.id == created.timer.id)
                kinds.append(event.kind)
            }
            #expect(kinds == ["attempt_failed", "attempt_failed", "dead_letter"])
            // Nothing more is delivered for a dead timer.
            #expect(try await collectJobs(worker, count: 1, timeout: .seconds(2)).isEmpty)
        }
    }

    @Test("a repeated result report changes nothing; success settles the timer")
    func successIsIdempotent() async throws {
        try await withTestSystem("success") { system in
            let worker = try await system.worker(queue: "ok")
            let created = try await system.client(tenant: "acme").create(.delay(.milliseconds(300), queue: "ok"))
            let jobs = try await worker.next(max: 1, maxWait: .seconds(10))
            let job = try #require(jobs.first)
            try await worker.complete(job)
            try await eventually("succeeded") {
                try await system.client(tenant: "acme").get(created.timer.id).state == .succeeded
            }
            // A second report of the same job (e.g. an executor retrying after a lost ack).
            var result = Sundial_V1_JobResult()
            result.tenant = "acme"
            result.timerID = created.timer.id
            result.attempt = 1
            result.success = false
            result.error = "late failure"
            _ = try await system.api.jetStream.publish(
                NATSOutgoingMessage(subject: system.namespace.results(tenant: "acme"), payload: try result.serializedBytes()))
            let dispatcher = try #require(system.dispatcher)
            try await eventually("the repeat is ignored") { dispatcher.stats.resultsIgnored.load(ordering: .relaxed) == 1 }
            let timer = try await system.client(tenant: "acme").get(created.timer.id)
            #expect(timer.state == .succeeded)
            #expect(timer.lastError.isEmpty)
        }
    }

    @Test("a failure report naming another version than its run's is ignored: no retry, the real report settles the timer")
    func otherVersionReportIgnored() async throws {
        try await withTestSystem("version") { system in
            let dispatcher = try #require(system.dispatcher)
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "ok")
            let created = try await client.create(.delay(.milliseconds(300), queue: "ok"))
            let job = try #require(try await collectJobs(worker, count: 1, timeout: .seconds(10)).first).0
            // Same timer, occurrence and attempt, another version: stale or forged.
            var result = Sundial_V1_JobResult()
            result.tenant = "acme"
            result.timerID = created.timer.id
            result.occurrence = UInt64(job.occurrence)
            result.attempt = UInt32(job.attempt)
            result.version = job.version + 1
            result.success = false
            result.error = "forged failure"
            _ = try await system.api.jetStream.publish(
                NATSOutgoingMessage(subject: system.namespace.results(tenant: "acme"), payload: try result.serializedBytes()))
            try await eventually("the other version's report is ignored") {
                dispatcher.stats.resultsIgnored.load(ordering: .relaxed) == 1
            }
            #expect(dispatcher.stats.attemptsFailed.load(ordering: .relaxed) == 0)
            #expect(try await client.get(created.timer.id).lastError.isEmpty)
            try await worker.complete(job)
            try await eventually("succeeded") { try await client.get(created.timer.id).state == .succeeded }
            #expect(dispatcher.stats.succeeded.load(ordering: .relaxed) == 1)
            #expect(try await collectJobs(worker, count: 1, timeout: .seconds(2)).isEmpty)
        }
    }

    @Test("a dependent timer starts its delay when the parent's job succeeds; a dead parent cancels it")
    func dependencyChains() async throws {
        try await withTestSystem("chains") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "chain")
            let parent = try await client.create(.delay(.milliseconds(500), queue: "chain", payload: "parent"))
            var childRequest = Sundial_V1_CreateTimerRequest.delay(.seconds(1), queue: "chain", payload: "child")
            childRequest.afterTimerID = parent.timer.id
            let child = try await client.create(childRequest)
            #expect(child.timer.state == .waiting)

            let first = try await collectJobs(worker, count: 1, timeout: .seconds(10))
            try #require(first.count == 1)
            #expect(String(decoding: first[0].0.payload, as: UTF8.self) == "parent")
            let parentDone = first[0].1
            let second = try await collectJobs(worker, count: 1, timeout: .seconds(15))
            try #require(second.count == 1)
            #expect(String(decoding: second[0].0.payload, as: UTF8.self) == "child")
            // The child's 1 s delay started when the parent succeeded, not when it was created.
            #expect(second[0].1.timeIntervalSince(parentDone) >= 0.9)

            // A parent that dead-letters cancels its waiting child.
            var doomed = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: "chain", payload: "doomed")
            doomed.retryPolicy.maxAttempts = 1
            let doomedParent = try await client.create(doomed)
            var orphan = Sundial_V1_CreateTimerRequest.delay(.seconds(1), queue: "chain")
            orphan.afterTimerID = doomedParent.timer.id
            let orphanChild = try await client.create(orphan)
            let doomedJob = try #require(try await worker.next(max: 1, maxWait: .seconds(10)).first)
            try await worker.fail(doomedJob, error: "no")
            try await eventually("orphan cancelled") {
                try await client.get(orphanChild.timer.id).state == .cancelled
            }
            // A dependency on a dead timer is refused; on an unknown one too.
            var late = Sundial_V1_CreateTimerRequest.delay(.seconds(1), queue: "chain")
            late.afterTimerID = doomedParent.timer.id
            await #expect(throws: SundialError.self) { _ = try await client.create(late) }
            late.afterTimerID = TimerID.text(TimerID.make())
            do {
                _ = try await client.create(late)
                Issue.record("unknown parent accepted")
            } catch let error as SundialError {
                #expect(error.code == .notFound)
            }
        }
    }

    @Test("completion events: a succeeded event for a timer that asked, and for every timer of a tenant that asked; none otherwise")
    func completionEvents() async throws {
        try await withTestSystem("succeeded") { system in
            let worker = try await system.worker(queue: "done")
            let acmeEvents = try await system.api.subscribe(subject: system.namespace.event(tenant: "acme", kind: ">"))
            let globexEvents = try await system.api.subscribe(subject: system.namespace.event(tenant: "globex", kind: ">"))
            let acme = system.client(tenant: "acme")
            let globex = system.client(tenant: "globex")
            try await TenantStore(pool: system.pool).setFlags(tenant: "globex", trial: nil, pinnedTier: nil, notifySuccess: true)

            var asked = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: "done", payload: "a")
            asked.notifySuccess = true
            let notified = try await acme.create(asked).timer
            #expect(notified.notifySuccess)
            let quiet = try await acme.create(.delay(.milliseconds(300), queue: "done", payload: "q")).timer
            let tenantWide = try await globex.create(.delay(.milliseconds(300), queue: "done", payload: "g")).timer
            let jobs = try await collectJobs(worker, count: 3, timeout: .seconds(10)).map(\.0)
            #expect(jobs.count == 3)
            // The quiet timer's result is applied first: had it produced an event, that event
            // would come before the notified timer's.
            try await worker.complete(jobs.filter { $0.timerID == quiet.id })
            try await eventually("the quiet timer succeeded") { try await acme.get(quiet.id).state == .succeeded }
            try await worker.complete(jobs.filter { $0.timerID != quiet.id })

            let event = try #require(try await firstMessage(acmeEvents, within: .seconds(10)))
            let decoded = try Sundial_V1_TimerEvent(serializedBytes: event.payload)
            #expect(event.subject == system.namespace.event(tenant: "acme", kind: TimerEventKind.succeeded))
            #expect(decoded.kind == TimerEventKind.succeeded)
            // The first acme event is the notified timer's: the quiet one (applied before) had none.
            #expect(decoded.timer.id == notified.id && decoded.timer.state == .succeeded)
            #expect(decoded.run.outcome == "succeeded" && decoded.run.attempt == 1 && decoded.run.hasFinishedAt)
            let wide = try #require(try await firstMessage(globexEvents, within: .seconds(10)))
            #expect(try Sundial_V1_TimerEvent(serializedBytes: wide.payload).timer.id == tenantWide.id)
        }
    }

    @Test("a failure reported as not retryable dead-letters at once, with attempts left")
    func nonRetryableFailureDeadLettersAtOnce() async throws {
        try await withTestSystem("noretry") { system in
            let events = try await system.api.subscribe(subject: system.namespace.event(tenant: "acme", kind: ">"))
            let worker = try await system.worker(queue: "strict")
            let client = system.client(tenant: "acme")
            var request = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: "strict", payload: "bad input")
            request.retryPolicy.maxAttempts = 5
            let created = try await client.create(request)
            let job = try #require(try await worker.next(max: 1, maxWait: .seconds(10)).first)
            try await worker.fail(job, error: "400 Bad Request", cause: .job, retryable: false)
            let event = try #require(try await firstMessage(events, within: .seconds(10)))
            let decoded = try Sundial_V1_TimerEvent(serializedBytes: event.payload)
            #expect(decoded.kind == TimerEventKind.deadLetter)
            #expect(decoded.run.attempt == 1)
            #expect(try await client.get(created.timer.id).state == .dead)
            #expect(try await collectJobs(worker, count: 1, timeout: .seconds(2)).isEmpty)
        }
    }

    @Test("an executor that dies without reporting: the job is redelivered after ack_wait")
    func unreportedJobIsRedelivered() async throws {
        try await withTestSystem("redeliver") { system in
            var options = SundialWorker.Options()
            options.namespace = system.namespace
            options.ackWait = .seconds(1)
            let worker = try await SundialWorker.connect(connection: system.api, queue: "crashy", options: options)
            let created = try await system.client(tenant: "acme").create(.delay(.milliseconds(200), queue: "crashy"))
            let first = try #require(try await worker.next(max: 1, maxWait: .seconds(10)).first)
            #expect(first.deliveries == 1)
            // The "executor" vanishes: no report, no ack. The job must come back.
            let again = try #require(try await worker.next(max: 1, maxWait: .seconds(10)).first)
            #expect(again.timerID == created.timer.id)
            #expect(again.deliveries == 2)
            #expect(again.attempt == 1)  // the same attempt, redelivered — not a retry
            try await worker.complete(again)
            try await eventually("succeeded") {
                try await system.client(tenant: "acme").get(created.timer.id).state == .succeeded
            }
        }
    }

    @Test("with a backlog, high-priority jobs are dispatched before low-priority ones")
    func priorityUnderBacklog() async throws {
        var options = TestSystem.Options()
        options.dispatcher = false
        try await withTestSystem("priority", options) { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "prio")
            var ids: [String: Sundial_V1_Priority] = [:]
            for index in 0..<60 {
                var request = Sundial_V1_CreateTimerRequest.delay(.milliseconds(800), queue: "prio")
                request.priority = index < 30 ? .low : .high
                ids[try await client.create(request).timer.id] = request.priority
            }
            // All fired while no dispatcher runs: a backlog of 60 on the dispatcher consumer.
            try await eventually("60 fires pending") {
                let info = try await system.api.consumerInfo(stream: system.namespace.fireStream, durable: system.namespace.dispatcherDurable)
                return (info["num_pending"] as? Int ?? 0) >= 60
            }
            var config = DispatcherConfig()
            config.namespace = system.namespace
            config.pipelines = 1
            config.fetchBatch = 100
            let dispatcher = try DispatcherService(config: config, connection: system.bulk, timers: system.store, logger: TestNATS.logger)
            let running = Task { try? await dispatcher.run() }
            let jobs = try await collectJobs(worker, count: 60, timeout: .seconds(20))
            running.cancel()
            _ = await running.value
            try #require(jobs.count == 60)
            let order = jobs.map { $0.0.priority }
            #expect(Array(order.prefix(30)) == Array(repeating: "high", count: 30), "\(order)")
            #expect(jobs.allSatisfy { ids[$0.0.timerID] != nil })
        }
    }
}

@Suite("Integration: field-only updates of recurring timers", .serialized)
struct RecurringUpdateIntegrationTests {
    @Test("a payload-only update keeps the cadence and the occurrence count; later jobs carry the new payload")
    func payloadUpdateKeepsCadence() async throws {
        try await withTestSystem("recurupdate") { system in
            let worker = try await system.worker(queue: "tick")
            let client = system.client(tenant: "acme")
            let created = try await client.create(.every(.seconds(1), maxOccurrences: 6, queue: "tick", payload: "v1"))
            let early = try await collectJobs(worker, count: 2, timeout: .seconds(10))
            try #require(early.count == 2)
            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = created.timer.id
            update.payload = Data("v2".utf8)
            update.updatePayload = true
            // An occurrence being dispatched at this instant answers 409 ("retry to change the
            // later ones"), as the contract says: retry, as a client would.
            var updated: Sundial_V1_Timer?
            for _ in 0..<10 where updated == nil {
                do {
                    updated = try await client.update(update)
                } catch let error as SundialError where error.code == .conflict {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect((try #require(updated)).version > created.timer.version)
            let acknowledgedAt = Date()
            let rest = try await collectJobs(worker, count: 4, timeout: .seconds(12))
            // In due order: fires that reach a dispatcher in one batch (on a loaded machine)
            // may land on the work stream in any order among themselves.
            let jobs = (early + rest).sorted { $0.0.occurrence < $1.0.occurrence }
            // Still exactly occurrences 0…5 — the update used up none of max_occurrences —
            // and one second apart, the cadence unchanged.
            #expect(jobs.map(\.0.occurrence) == Array(0..<6))
            let times = jobs.map(\.0.scheduledAt.timeIntervalSince1970)
            for (a, b) in zip(times, times.dropFirst()) { #expect(abs(b - a - 1.0) < 0.01, "\(times)") }
            let payloads = jobs.map { String(decoding: $0.0.payload, as: UTF8.self) }
            // The jobs taken before the update was sent carry the old payload.
            #expect(early.allSatisfy { String(decoding: $0.0.payload, as: UTF8.self) == "v1" })
            // Every occurrence due after the update was acknowledged carries the new payload
            // (how many that is depends on how long the 409s lasted on a loaded machine).
            let afterAck = jobs.filter { $0.0.scheduledAt > acknowledgedAt }.map { String(decoding: $0.0.payload, as: UTF8.self) }
            #expect(!afterAck.isEmpty && afterAck.allSatisfy { $0 == "v2" }, "\(payloads)")
            #expect(try await collectJobs(worker, count: 1, timeout: .seconds(2)).isEmpty)
        }
    }
}
