import Foundation
import SundialClient
import SundialContract
import SundialCore
import SundialExecutor
import SundialProto
import SundialStore
import SundialTestSupport
import Testing

/// The timer lifecycle through real nats-server and Postgres: recurring timers, cancel and
/// update at every stage (including the instant of the fire), List and History paging, and
/// tenant isolation of the mutating calls.
@Suite("Integration: lifecycle", .serialized)
struct LifecycleIntegrationTests {
    // MARK: 1. recurring

    @Test("every 1s with max_occurrences 4: exactly occurrences 0…3, 1 s apart, then completed")
    func everyIntervalFiresEachOccurrenceOnce() async throws {
        try await withTestSystem("every") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "ticks")
            let created = try await client.create(.every(.seconds(1), maxOccurrences: 4, queue: "ticks", payload: "tick"))
            let id = created.timer.id

            var jobs = try await collectJobs(worker, count: 4, timeout: .seconds(12))
            // A fifth job would be a double fire or an occurrence past the end: wait for it.
            jobs += try await collectJobs(worker, count: 1, timeout: .seconds(2))
            try #require(jobs.count == 4, "got \(jobs.count) jobs")
            let ordered = jobs.map(\.0).sorted { $0.occurrence < $1.occurrence }
            #expect(ordered.allSatisfy { $0.timerID == id })
            #expect(ordered.map(\.occurrence) == [0, 1, 2, 3])
            #expect(Set(ordered.map { $0.message.headers[SundialHeader.natsMessageID] ?? "" }).count == 4)
            // Occurrence 0 was loaded at create; the reply's next fire is occurrence 1.
            #expect(abs(ordered[0].scheduledAt.timeIntervalSince(created.timer.nextFireAt.date) + 1) < 0.002)
            #expect(abs(ordered[0].scheduledAt.timeIntervalSince(created.timer.createdAt.date) - 1) < 0.5)
            for (previous, next) in zip(ordered, ordered.dropFirst()) {
                let gap = next.scheduledAt.timeIntervalSince(previous.scheduledAt)
                #expect(abs(gap - 1) < 0.01, "occurrence \(next.occurrence) is \(gap) s after the previous one")
            }
            for (job, receivedAt) in jobs {
                #expect(receivedAt.timeIntervalSince(job.scheduledAt) > -0.05, "occurrence \(job.occurrence) fired early")
            }

            try await eventually("all four runs recorded as dispatched") {
                let runs = try await client.history(id).runs
                return runs.count == 4 && runs.allSatisfy(\.hasDispatchedAt)
            }
            let timer = try await client.get(id)
            #expect(timer.state == .completed)
            #expect(timer.occurrencesFired == 4)
            let runs = try await client.history(id).runs
            #expect(runs.map(\.occurrence) == [0, 1, 2, 3])
            #expect(runs.allSatisfy { $0.attempt == 1 && $0.hasFiredAt })
        }
    }

    @Test("a 6-field cron */2 fires every 2 s with distinct occurrences; a cancel stops it")
    func cronFiresThenCancelStopsIt() async throws {
        try await withTestSystem("cron") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "cron")
            let created = try await client.create(.cron("*/2 * * * * *", queue: "cron"))
            let id = created.timer.id

            let jobs = try await collectJobs(worker, count: 3, timeout: .seconds(9))
            try #require(jobs.count >= 3, "only \(jobs.count) fires in 9 s")
            let ordered = jobs.map(\.0).sorted { $0.occurrence < $1.occurrence }
            #expect(ordered.allSatisfy { $0.timerID == id })
            #expect(Set(ordered.map(\.occurrence)).count == ordered.count, "an occurrence fired twice")
            for job in ordered {
                let seconds = job.scheduledAt.timeIntervalSince1970
                #expect(seconds.rounded() == seconds && Int(seconds) % 2 == 0, "\(job.scheduledAt) is not an even second")
            }
            for (previous, next) in zip(ordered, ordered.dropFirst()) {
                #expect(abs(next.scheduledAt.timeIntervalSince(previous.scheduledAt) - 2) < 0.01)
            }

            // Usually the next fire is ~2 s away, but on a loaded machine the jobs can reach us
            // late and the cancel meet the next occurrence in flight: 409 "already fired", as the
            // contract says; retry, as a client would. That occurrence then goes out once.
            var cancelled: Sundial_V1_Timer?
            for _ in 0..<10 where cancelled == nil {
                do {
                    cancelled = try await client.cancel(id)
                } catch let error as SundialError where error.code == .conflict && error.message.contains("already fired") {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            let acknowledgedAt = Date()
            #expect(try #require(cancelled).state == .cancelled)
            // What was dispatched before the cancel was acknowledged may still arrive; nothing
            // due after it may (two more would be due within the 4 s watched).
            let inFlight = try await collectJobs(worker, count: 10, timeout: .seconds(4))
            #expect(inFlight.allSatisfy { $0.0.timerID == id })
            for (job, _) in inFlight {
                #expect(job.scheduledAt < acknowledgedAt, "occurrence \(job.occurrence) due \(job.scheduledAt) came after the cancel acknowledged at \(acknowledgedAt)")
            }
            let dispatched = ordered + inFlight.map(\.0)
            #expect(Set(dispatched.map(\.occurrence)).count == dispatched.count, "an occurrence fired twice")
            #expect(try await client.get(id).state == .cancelled)

            // History: the dispatched ones are exactly the jobs received; everything loaded
            // beyond them (the planner runs ahead within its horizon) was cancelled.
            let expectedOccurrences = Set(dispatched.map { UInt64($0.occurrence) })
            do {
                try await eventually("dispatches recorded") {
                    Set(try await client.history(id, pageSize: 1000).runs.filter(\.hasDispatchedAt).map(\.occurrence))
                        == expectedOccurrences
                }
            } catch {
                let runs = try await client.history(id, pageSize: 1000).runs
                Issue.record("jobs \(dispatched.map(\.occurrence)); runs \(runs.map { "\($0.occurrence):\($0.outcome):\($0.hasDispatchedAt)" })")
                throw error
            }
            let runs = try await client.history(id, pageSize: 1000).runs
            #expect(runs.filter { !$0.hasDispatchedAt }.allSatisfy { $0.outcome == "cancelled" })
        }
    }

    @Test("a recurring timer whose every occurrence is loaded (completed) can still be cancelled before they fire")
    func cancelFullyLoadedRecurringTimer() async throws {
        try await withTestSystem("cancelloaded") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "loaded")
            let created = try await client.create(.every(.seconds(3), maxOccurrences: 2, queue: "loaded"))
            let id = created.timer.id
            try await eventually("both occurrences loaded", timeout: .seconds(2)) {
                try await client.get(id).state == .completed
            }
            #expect(try await client.history(id).runs.map(\.outcome) == ["armed", "armed"])
            let cancelled = try await client.cancel(id)
            #expect(cancelled.state == .cancelled)
            let jobs = try await collectJobs(worker, count: 1, timeout: .seconds(6 + 2))
            #expect(jobs.isEmpty, "occurrences \(jobs.map(\.0.occurrence)) dispatched after the cancel")
            #expect(try await client.history(id).runs.map(\.outcome) == ["cancelled", "cancelled"])
        }
    }

    // MARK: 2. cancel

    @Test("cancel before load, after load (Planner and Ingest paths), idempotently, and after dispatch")
    func cancelAtEachStage() async throws {
        var options = TestSystem.Options()
        options.horizon = .seconds(2)
        try await withTestSystem("cancel", options) { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "cancel")

            // Not loaded yet: beyond the horizon.
            let unloaded = try await client.create(.delay(.seconds(4), queue: "cancel", payload: "unloaded"))
            #expect(unloaded.timer.state == .scheduled)
            let cancelledUnloaded = try await client.cancel(unloaded.timer.id)
            #expect(cancelledUnloaded.state == .cancelled)
            #expect(cancelledUnloaded.version == unloaded.timer.version + 1)

            // Loaded by the Ingest (due within the horizon).
            let nearTerm = try await client.create(.delay(.milliseconds(1500), queue: "cancel", payload: "near"))
            #expect(nearTerm.timer.state == .armed)
            #expect(try await client.cancel(nearTerm.timer.id).state == .cancelled)

            // Loaded by the Planner (2 s before its due time).
            let planned = try await client.create(.delay(.seconds(3), queue: "cancel", payload: "planned"))
            #expect(planned.timer.state == .scheduled)
            try await eventually("the planner loads it", timeout: .seconds(3)) {
                try await client.get(planned.timer.id).state == .armed
            }
            #expect(try await client.cancel(planned.timer.id).state == .cancelled)

            // Idempotent, and compare-and-set on the version.
            let again = try await client.cancel(unloaded.timer.id)
            #expect(again.state == .cancelled)
            #expect(again.version == cancelledUnloaded.version)
            let far = try await client.create(.delay(.seconds(600), queue: "cancel"))
            let mismatch = try await sundialError { _ = try await client.cancel(far.timer.id, expectedVersion: far.timer.version + 5) }
            #expect(mismatch.code == .conflict)
            #expect(try await client.get(far.timer.id).state == .scheduled)
            #expect(try await client.cancel(far.timer.id, expectedVersion: far.timer.version).state == .cancelled)

            // None of them is ever dispatched: wait past the last due time plus 3 s.
            let lastDue = [unloaded, nearTerm, planned].map(\.timer.nextFireAt.date).max()!
            let jobs = try await collectJobs(worker, count: 1, timeout: .seconds(lastDue.timeIntervalSinceNow + 3))
            #expect(jobs.isEmpty, "cancelled timers dispatched: \(jobs.map(\.0.timerID))")
            #expect(try await client.history(unloaded.timer.id).runs.isEmpty)
            for loaded in [nearTerm, planned] {
                let runs = try await client.history(loaded.timer.id).runs
                #expect(runs.map(\.outcome) == ["cancelled"], "runs of \(loaded.timer.id): \(runs.map(\.outcome))")
                #expect(runs.allSatisfy { !$0.hasDispatchedAt })
                #expect(try await client.get(loaded.timer.id).state == .cancelled)
            }

            // After the dispatch: the cancel lost, and says so.
            let fired = try await client.create(.delay(.seconds(1), queue: "cancel", payload: "fired"))
            let firedJobs = try await collectJobs(worker, count: 1, timeout: .seconds(10))
            try #require(firedJobs.count == 1)
            #expect(firedJobs[0].0.timerID == fired.timer.id)
            let late = try await sundialError { _ = try await client.cancel(fired.timer.id) }
            #expect(late.code == .conflict)
            #expect(late.message.contains("already fired"), "message: \(late.message)")
            try await eventually("the state says it fired") {
                [.dispatched, .succeeded].contains(try await client.get(fired.timer.id).state)
            }
            let firedRuns = try await client.history(fired.timer.id).runs
            #expect(firedRuns.count == 1 && firedRuns.allSatisfy { ["dispatched", "succeeded"].contains($0.outcome) })
        }
    }

    // MARK: 3. update

    @Test("update after load: only the new payload and version go out; a new schedule fires at the new time")
    func updateAfterLoad() async throws {
        try await withTestSystem("update") { system in
            let client = system.client(tenant: "acme")
            let payloadWorker = try await system.worker(queue: "upd-payload")
            let scheduleWorker = try await system.worker(queue: "upd-schedule")

            let payloadTimer = try await client.create(.delay(.seconds(3), queue: "upd-payload", payload: "v1"))
            let scheduleTimer = try await client.create(.delay(.seconds(3), queue: "upd-schedule", payload: "s"))
            #expect(payloadTimer.timer.state == .armed && scheduleTimer.timer.state == .armed)

            var payloadUpdate = Sundial_V1_UpdateTimerRequest()
            payloadUpdate.timerID = payloadTimer.timer.id
            payloadUpdate.payload = Data("v2".utf8)
            payloadUpdate.updatePayload = true
            let updated = try await client.update(payloadUpdate)
            #expect(updated.version == payloadTimer.timer.version + 1)
            #expect(updated.state == .armed)
            #expect(String(decoding: updated.payload, as: UTF8.self) == "v2")
            // A payload-only update keeps the due time.
            #expect(abs(updated.nextFireAt.date.timeIntervalSince(payloadTimer.timer.nextFireAt.date)) < 0.002)

            var scheduleUpdate = Sundial_V1_UpdateTimerRequest()
            scheduleUpdate.timerID = scheduleTimer.timer.id
            scheduleUpdate.expectedVersion = scheduleTimer.timer.version
            scheduleUpdate.schedule = Sundial_V1_CreateTimerRequest.delay(.seconds(6), queue: "x").schedule
            let rescheduled = try await client.update(scheduleUpdate)
            let oldDue = scheduleTimer.timer.nextFireAt.date
            let newDue = rescheduled.nextFireAt.date
            #expect(newDue.timeIntervalSince(oldDue) > 2.5, "new due \(newDue), old \(oldDue)")
            #expect(rescheduled.version == scheduleTimer.timer.version + 1)

            // Payload: exactly one job, the new payload at the new version.
            var jobs = try await collectJobs(payloadWorker, count: 1, timeout: .seconds(10))
            jobs += try await collectJobs(payloadWorker, count: 1, timeout: .seconds(2))
            try #require(jobs.count == 1, "got \(jobs.count) jobs for the payload update")
            let job = jobs[0].0
            #expect(String(decoding: job.payload, as: UTF8.self) == "v2")
            #expect(job.message.headers[SundialHeader.version] == String(updated.version))
            #expect(abs(job.scheduledAt.timeIntervalSince(payloadTimer.timer.nextFireAt.date)) < 0.002)
            try await eventually("the dispatch is recorded") {
                try await client.history(payloadTimer.timer.id).runs.contains(where: \.hasDispatchedAt)
            }
            let payloadRuns = try await client.history(payloadTimer.timer.id).runs
            // A field-only update keeps the occurrence: its one run moved to the new version.
            #expect(payloadRuns.count == 1)
            #expect(payloadRuns.filter(\.hasDispatchedAt).map(\.version) == [updated.version])

            // Schedule: nothing at the old time, one job at the new one.
            var moved = try await collectJobs(scheduleWorker, count: 1, timeout: .seconds(newDue.timeIntervalSinceNow + 5))
            moved += try await collectJobs(scheduleWorker, count: 1, timeout: .seconds(2))
            try #require(moved.count == 1, "got \(moved.count) jobs for the rescheduled timer")
            let (movedJob, receivedAt) = moved[0]
            #expect(receivedAt >= newDue.addingTimeInterval(-0.05), "received \(receivedAt), new due \(newDue)")
            #expect(abs(movedJob.scheduledAt.timeIntervalSince(newDue)) < 0.002)
            #expect(movedJob.message.headers[SundialHeader.version] == String(rescheduled.version))
        }
    }

    @Test("update: expected_version mismatch is 409, an empty update 400, an update after dispatch 409 already fired")
    func updateRejections() async throws {
        try await withTestSystem("updatebad") { system in
            let client = system.client(tenant: "acme")
            let far = try await client.create(.delay(.seconds(600), queue: "q", payload: "v1"))

            var stale = Sundial_V1_UpdateTimerRequest()
            stale.timerID = far.timer.id
            stale.expectedVersion = far.timer.version + 1
            stale.payload = Data("v2".utf8)
            stale.updatePayload = true
            let mismatch = try await sundialError { _ = try await client.update(stale) }
            #expect(mismatch.code == .conflict)
            #expect(mismatch.violations.contains { $0.field == "expected_version" })

            var empty = Sundial_V1_UpdateTimerRequest()
            empty.timerID = far.timer.id
            let nothing = try await sundialError { _ = try await client.update(empty) }
            #expect(nothing.code == .invalidArgument)

            var badSchedule = Sundial_V1_UpdateTimerRequest()
            badSchedule.timerID = far.timer.id
            badSchedule.schedule.cron.expression = "not a cron"
            #expect(try await sundialError { _ = try await client.update(badSchedule) }.code == .invalidArgument)

            let unchanged = try await client.get(far.timer.id)
            #expect(unchanged.version == far.timer.version)
            #expect(String(decoding: unchanged.payload, as: UTF8.self) == "v1")

            let worker = try await system.worker(queue: "fired")
            let fired = try await client.create(.delay(.seconds(1), queue: "fired", payload: "v1"))
            try #require(try await collectJobs(worker, count: 1, timeout: .seconds(10)).count == 1)
            var late = Sundial_V1_UpdateTimerRequest()
            late.timerID = fired.timer.id
            late.payload = Data("v2".utf8)
            late.updatePayload = true
            let lost = try await sundialError { _ = try await client.update(late) }
            #expect(lost.code == .conflict)
            #expect(lost.message.contains("already fired"), "message: \(lost.message)")
        }
    }

    @Test("update field presence: a set payload applies without the old flag; update_mask sets exactly what it names, empty values included")
    func updateFieldPresence() async throws {
        try await withTestSystem("updmask") { system in
            let client = system.client(tenant: "acme")
            var create = Sundial_V1_CreateTimerRequest.delay(.seconds(600), queue: "q", payload: "v1")
            create.labels = ["env": "prod", "team": "billing"]
            create.priority = .high
            let timer = try await client.create(create).timer

            // Presence: payload set, no update_payload flag (the protobuf way).
            var present = Sundial_V1_UpdateTimerRequest()
            present.timerID = timer.id
            present.payload = Data("v2".utf8)
            let v2 = try await client.update(present)
            #expect(String(decoding: v2.payload, as: UTF8.self) == "v2")
            #expect(v2.labels == ["env": "prod", "team": "billing"] && v2.priority == .high)

            // Presence of an empty payload is a change too (old clients said so with the flag).
            var emptied = Sundial_V1_UpdateTimerRequest()
            emptied.timerID = timer.id
            emptied.payload = Data()
            #expect(try await client.update(emptied).payload.isEmpty)

            // The mask: exactly labels and priority; labels cleared, priority unspecified = normal;
            // the payload given alongside is not named, so it stays empty.
            var masked = Sundial_V1_UpdateTimerRequest()
            masked.timerID = timer.id
            masked.payload = Data("ignored".utf8)
            masked.updateMask.paths = ["labels", "priority"]
            let cleared = try await client.update(masked)
            #expect(cleared.labels.isEmpty)
            #expect(cleared.priority == .normal)
            #expect(cleared.payload.isEmpty)

            // The mask names the payload: set to the value given.
            var maskPayload = Sundial_V1_UpdateTimerRequest()
            maskPayload.timerID = timer.id
            maskPayload.payload = Data("v3".utf8)
            maskPayload.updateMask.paths = ["payload"]
            #expect(String(decoding: try await client.update(maskPayload).payload, as: UTF8.self) == "v3")

            // Refused, changing nothing: an unknown path; a schedule named but not given; an
            // empty mask.
            var unknown = Sundial_V1_UpdateTimerRequest()
            unknown.timerID = timer.id
            unknown.updateMask.paths = ["payload", "queue"]
            let unknownError = try await sundialError { _ = try await client.update(unknown) }
            #expect(unknownError.code == .invalidArgument)
            #expect(unknownError.violations.contains { $0.field == "update_mask" && $0.description_p.contains("queue") })
            var noSchedule = Sundial_V1_UpdateTimerRequest()
            noSchedule.timerID = timer.id
            noSchedule.updateMask.paths = ["schedule"]
            let noScheduleError = try await sundialError { _ = try await client.update(noSchedule) }
            #expect(noScheduleError.violations.contains { $0.field == "schedule" })
            var emptyMask = Sundial_V1_UpdateTimerRequest()
            emptyMask.timerID = timer.id
            emptyMask.payload = Data("v4".utf8)
            emptyMask.updateMask.paths = []  // present, naming nothing
            #expect(try await sundialError { _ = try await client.update(emptyMask) }.code == .invalidArgument)
            let final = try await client.get(timer.id)
            #expect(String(decoding: final.payload, as: UTF8.self) == "v3")
            #expect(final.version == timer.version + 4)
        }
    }

    // MARK: 4. the race with the fire

    @Test("cancel at the fire instant, 40 times: acknowledged → never dispatched; already fired → exactly once")
    func cancelRacesTheFire() async throws {
        try await withTestSystem("racecancel") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "race-cancel")
            let results = try await race(client, queue: "race-cancel", iterations: 40) { id in
                try await client.cancel(id)
            }
            let jobs = try await collectUntilQuiet(worker, quiet: .seconds(3), timeout: .seconds(30)) { jobs in
                Set(results.filter { !$0.acknowledged }.map(\.id)).isSubset(of: Set(jobs.map(\.0.timerID)))
            }
            let byTimer = Dictionary(grouping: jobs.map(\.0), by: \.timerID)
            let ids = Set(results.map(\.id))
            #expect(byTimer.keys.allSatisfy(ids.contains), "jobs of unknown timers")
            var violations = 0
            for result in results {
                let count = byTimer[result.id]?.count ?? 0
                if result.acknowledged ? count != 0 : count != 1 {
                    violations += 1
                    Issue.record(
                        "timer \(result.id): cancel \(result.acknowledged ? "acknowledged" : "already fired") at offset \(result.offsetMs) ms, \(count) jobs")
                }
            }
            let acknowledged = results.filter(\.acknowledged).count
            print(
                "race cancel: \(results.count) races, \(acknowledged) cancels acknowledged (no job), \(results.count - acknowledged) already fired (one job each), \(violations) violations")
            try await eventually("the states say what happened") {
                for result in results {
                    let state = try await client.get(result.id).state
                    let expected: [Sundial_V1_TimerState] = result.acknowledged ? [.cancelled] : [.dispatched, .succeeded]
                    if !expected.contains(state) { return false }
                }
                return true
            }
        }
    }

    @Test("pause at the fire instant, 40 times: acknowledged → nothing while paused, exactly one job once resumed; already fired → exactly once")
    func pauseRacesTheFire() async throws {
        try await withTestSystem("racepause") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "race-pause")
            let results = try await race(client, queue: "race-pause", iterations: 40) { id in
                try await client.pause(id)
            }
            let paused = results.filter(\.acknowledged)
            let whilePaused = try await collectUntilQuiet(worker, quiet: .seconds(3), timeout: .seconds(30)) { jobs in
                Set(results.filter { !$0.acknowledged }.map(\.id)).isSubset(of: Set(jobs.map(\.0.timerID)))
            }
            let firedWhilePaused = Set(whilePaused.map(\.0.timerID)).intersection(paused.map(\.id))
            #expect(firedWhilePaused.isEmpty, "paused timers dispatched: \(firedWhilePaused.sorted())")
            for result in paused {
                let timer = try await client.get(result.id)
                #expect(timer.state == .paused)
                #expect(timer.version == result.createdVersion + 1)
                #expect(try await client.pause(result.id).version == timer.version)  // idempotent
            }
            // Resumed: each paused one-shot fires once now (its time has passed).
            for result in paused { #expect(try await client.resume(result.id).state == .armed) }
            let afterResume = try await collectUntilQuiet(worker, quiet: .seconds(3), timeout: .seconds(30)) { jobs in
                Set(paused.map(\.id)).isSubset(of: Set(jobs.map(\.0.timerID)))
            }
            let byTimer = Dictionary(grouping: (whilePaused + afterResume).map(\.0), by: \.timerID)
            var violations = 0
            for result in results where byTimer[result.id]?.count != 1 {
                violations += 1
                Issue.record("timer \(result.id): pause \(result.acknowledged ? "acknowledged" : "already fired"), \(byTimer[result.id]?.count ?? 0) jobs")
            }
            for job in afterResume.map(\.0) where paused.contains(where: { $0.id == job.timerID }) {
                // The job of the resumed version, its scheduled time unchanged.
                #expect(job.message.headers[SundialHeader.version] == String(paused.first { $0.id == job.timerID }!.createdVersion + 2))
            }
            print("race pause: \(results.count) races, \(paused.count) pauses acknowledged, \(violations) violations")
        }
    }

    @Test("pause/resume of recurring timers: nothing fires while paused; on resume fire_all catches up every missed occurrence, fire_once one, skip none")
    func pauseResumeMisfire() async throws {
        var options = TestSystem.Options()
        options.misfireThreshold = .seconds(1)
        options.horizon = .seconds(20)
        try await withTestSystem("pausemisfire", options) { system in
            let client = system.client(tenant: "acme")
            var timers: [MisfirePolicy: (id: String, worker: SundialWorker)] = [:]
            for (policy, wire) in [(MisfirePolicy.fireAll, Sundial_V1_MisfirePolicy.fireAll), (.fireOnce, .fireOnce), (.skip, .skip)] {
                var request = Sundial_V1_CreateTimerRequest.every(.seconds(1), maxOccurrences: 0, queue: "pm-\(policy.rawValue)")
                request.schedule.clearEnd()
                request.misfirePolicy = wire
                let worker = try await system.worker(queue: "pm-\(policy.rawValue)")
                let timer = try await client.create(request).timer
                #expect(timer.misfirePolicy == wire)
                timers[policy] = (timer.id, worker)
            }
            // Running: two jobs each, then pause all three.
            for (_, timer) in timers {
                let jobs = try await collectJobs(timer.worker, count: 2, timeout: .seconds(10))
                try await timer.worker.complete(jobs.map(\.0))
            }
            for (_, timer) in timers {
                // A recurring timer whose occurrence is being forwarded this very millisecond
                // answers 409 "already fired": retry, as the error says.
                var paused: Sundial_V1_Timer?
                for _ in 0..<5 where paused == nil {
                    do { paused = try await client.pause(timer.id) } catch let error as SundialError where error.code == .conflict {}
                }
                #expect(paused?.state == .paused)
            }
            let pausedAt = Date()
            // Drain what was dispatched before the pause was acknowledged; then nothing may come.
            for (_, timer) in timers {
                for (job, received) in try await collectJobs(timer.worker, count: 2, timeout: .seconds(1)) {
                    #expect(received.timeIntervalSince(pausedAt) < 1, "a job came \(received.timeIntervalSince(pausedAt)) s into the pause")
                    try await timer.worker.complete(job)
                }
            }
            for (_, timer) in timers {
                #expect(try await collectJobs(timer.worker, count: 1, timeout: .seconds(1)).isEmpty)
            }
            // About 6 s paused: the occurrences due in it are more than 1 s late when resumed.
            var caughtUp: [MisfirePolicy: Int] = [:]
            for (policy, timer) in timers {
                let resumedAt = Date()
                let resumed = try await client.resume(timer.id)
                #expect(resumed.state == .scheduled)
                let jobs = try await collectJobs(timer.worker, count: 6, timeout: .seconds(8))
                try await timer.worker.complete(jobs.map(\.0))
                // Catch-ups: jobs of occurrences due while paused, more than the threshold late.
                caughtUp[policy] = jobs.filter { $0.0.scheduledAt < resumedAt.addingTimeInterval(-1) }.count
                let runs = try await system.store.runs(timerID: TimerID.parse(timer.id)!)
                let skipped = runs.filter { $0.outcome == .skipped }.count
                let stored = try await client.get(timer.id)
                #expect(stored.occurrencesSkipped == UInt64(skipped), "\(policy): skipped runs vs counter")
                #expect(runs.allSatisfy { $0.outcome != .paused }, "\(policy): a run stayed paused")
                switch policy {
                case .fireAll: #expect(skipped == 0)
                case .fireOnce: #expect(skipped >= 1)
                case .skip: #expect(skipped >= 2)
                }
            }
            #expect((caughtUp[.fireAll] ?? 0) >= 2, "fire_all caught up \(caughtUp[.fireAll] ?? 0)")
            #expect(caughtUp[.fireOnce] == 1)
            #expect(caughtUp[.skip] == 0)
        }
    }

    @Test("pause and resume by label selector, a page at a time; a waiting or finished timer is refused")
    func pauseResumeBySelector() async throws {
        try await withTestSystem("pausesel") { system in
            let client = system.client(tenant: "acme")
            var team: [String: String] = [:]
            for (index, label) in ["x", "x", "x", "y"].enumerated() {
                var request = Sundial_V1_CreateTimerRequest.delay(.seconds(600 + index), queue: "q")
                request.labels = ["team": label]
                team[try await client.create(request).timer.id] = label
            }
            let xs = Set(team.filter { $0.value == "x" }.keys)
            var pause = Sundial_V1_PauseTimerRequest()
            pause.labels = ["team": "x"]
            pause.pageSize = 2
            let first = try await client.pause(pause)
            #expect(first.timers.count == 2 && !first.nextPageToken.isEmpty)
            pause.pageToken = first.nextPageToken
            let second = try await client.pause(pause)
            #expect(second.timers.count == 1 && second.nextPageToken.isEmpty)
            #expect(Set((first.timers + second.timers).map(\.id)) == xs)
            for (id, label) in team {
                #expect(try await client.get(id).state == (label == "x" ? .paused : .scheduled))
            }
            // A selector needs a label; expected_version goes with one timer.
            #expect(try await sundialError { _ = try await client.pause(Sundial_V1_PauseTimerRequest()) }.code == .invalidArgument)

            var resume = Sundial_V1_ResumeTimerRequest()
            resume.labels = ["team": "x"]
            let resumed = try await client.resume(resume)
            #expect(Set(resumed.timers.map(\.id)) == xs && resumed.nextPageToken.isEmpty)
            #expect(resumed.timers.allSatisfy { $0.state == .scheduled })

            // Refused: a timer waiting for its parent; a cancelled one.
            let parent = try await client.create(.delay(.seconds(600), queue: "q")).timer
            var child = Sundial_V1_CreateTimerRequest.delay(.seconds(1), queue: "q")
            child.afterTimerID = parent.id
            let waiting = try await client.create(child).timer
            #expect(waiting.state == .waiting)
            let refused = try await sundialError { _ = try await client.pause(waiting.id) }
            #expect(refused.code == .conflict && refused.message.contains("parent"))
            _ = try await client.cancel(parent.id)
            #expect(try await sundialError { _ = try await client.pause(parent.id) }.code == .conflict)
        }
    }

    @Test("update at the fire instant, 40 times: acknowledged → only v2 goes out; already fired → exactly one v1")
    func updateRacesTheFire() async throws {
        try await withTestSystem("raceupdate") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "race-update")
            let results = try await race(client, queue: "race-update", iterations: 40) { id in
                var request = Sundial_V1_UpdateTimerRequest()
                request.timerID = id
                request.payload = Data("v2".utf8)
                request.updatePayload = true
                return try await client.update(request)
            }
            // Every timer dispatches exactly once either way.
            let jobs = try await collectUntilQuiet(worker, quiet: .seconds(3), timeout: .seconds(30)) { jobs in
                Set(results.map(\.id)).isSubset(of: Set(jobs.map(\.0.timerID)))
            }
            let byTimer = Dictionary(grouping: jobs.map(\.0), by: \.timerID)
            var violations = 0
            for result in results {
                let got = byTimer[result.id] ?? []
                let payloads = got.map { String(decoding: $0.payload, as: UTF8.self) }
                let versions = got.map { $0.message.headers[SundialHeader.version] ?? "" }
                let ok = result.acknowledged
                    ? payloads == ["v2"] && versions == [String(result.version)]
                    : payloads == ["v1"] && versions == [String(result.createdVersion)]
                if !ok {
                    violations += 1
                    Issue.record(
                        "timer \(result.id): update \(result.acknowledged ? "acknowledged" : "already fired") at offset \(result.offsetMs) ms, jobs \(payloads) versions \(versions)")
                }
            }
            let acknowledged = results.filter(\.acknowledged).count
            print(
                "race update: \(results.count) races, \(acknowledged) updates acknowledged (v2 only), \(results.count - acknowledged) already fired (v1 once), \(violations) violations")
        }
    }

    // MARK: 5. List

    @Test("List: keyset pages in id order, filters, stable under concurrent inserts, limits")
    func listPagesAndFilters() async throws {
        try await withTestSystem("list") { system in
            let a = system.client(tenant: "acme")
            let b = system.client(tenant: "globex")
            var originals: [String] = []
            for index in 0..<25 {
                var request = Sundial_V1_CreateTimerRequest.delay(.seconds(600), queue: index % 2 == 0 ? "q1" : "q2")
                if index % 3 == 0 { request.labels = ["env": "prod"] } else { request.labels = ["env": "dev"] }
                request.labels["n"] = String(index)
                originals.append(try await a.create(request).timer.id)
            }
            var others: Set<String> = []
            for _ in 0..<5 {
                var request = Sundial_V1_CreateTimerRequest.delay(.seconds(600), queue: "q1")
                request.labels = ["env": "prod"]
                others.insert(try await b.create(request).timer.id)
            }
            for index in 1...3 { _ = try await a.cancel(originals[index]) }

            // Pages of 10: 10, 10, 5, in id order, no duplicates, only this tenant's.
            var request = Sundial_V1_ListTimersRequest()
            request.pageSize = 10
            var pages: [[Sundial_V1_Timer]] = []
            while pages.count < 10 {
                let page = try await a.list(request)
                pages.append(page.timers)
                if page.nextPageToken.isEmpty { break }
                request.pageToken = page.nextPageToken
            }
            #expect(pages.map(\.count) == [10, 10, 5])
            let listed = pages.flatMap { $0 }
            #expect(listed.map(\.id) == originals.sorted())
            #expect(listed.allSatisfy { $0.tenant == "acme" && !others.contains($0.id) })

            func all(_ configure: (inout Sundial_V1_ListTimersRequest) -> Void) async throws -> [Sundial_V1_Timer] {
                var request = Sundial_V1_ListTimersRequest()
                request.pageSize = 4
                configure(&request)
                var timers: [Sundial_V1_Timer] = []
                for _ in 0..<50 {
                    let page = try await a.list(request)
                    timers += page.timers
                    if page.nextPageToken.isEmpty { return timers }
                    request.pageToken = page.nextPageToken
                }
                throw TestFailure("List never ended")
            }
            func label(_ timer: Sundial_V1_Timer) -> Int { Int(timer.labels["n"] ?? "") ?? -1 }
            #expect(try await all { $0.states = [.cancelled] }.map(label).sorted() == [1, 2, 3])
            #expect(try await all { $0.states = [.scheduled] }.count == 22)
            #expect(try await all { $0.states = [.scheduled, .cancelled] }.count == 25)
            #expect(try await all { $0.states = [.armed] }.isEmpty)
            let q1 = try await all { $0.queue = "q1" }
            #expect(q1.map(label).sorted() == Array(stride(from: 0, to: 25, by: 2)))
            let prod = try await all { $0.labels = ["env": "prod"] }
            #expect(prod.map(label).sorted() == Array(stride(from: 0, to: 25, by: 3)))
            let both = try await all {
                $0.queue = "q1"
                $0.labels = ["env": "prod"]
                $0.states = [.scheduled]
            }
            #expect(both.map(label).sorted() == [0, 6, 12, 18, 24])
            #expect(try await all { $0.labels = ["env": "staging"] }.isEmpty)
            #expect(try await all { $0.queue = "nope" }.isEmpty)

            // Paging while timers are created: a concurrent creator plus creates between pages.
            // The traversal never repeats a row, stays in id order and has every original; the
            // full pages of originals read before are unchanged when read again.
            let creator = Task {
                var created: [String] = []
                for _ in 0..<20 { created.append(try await a.create(.delay(.seconds(600), queue: "q3")).timer.id) }
                return created
            }
            var cursor = Sundial_V1_ListTimersRequest()
            cursor.pageSize = 7
            var read: [(token: String, ids: [String])] = []
            var interleaved: [String] = []
            for _ in 0..<20 {
                let page = try await a.list(cursor)
                read.append((cursor.pageToken, page.timers.map(\.id)))
                interleaved.append(try await a.create(.delay(.seconds(600), queue: "q4")).timer.id)
                if page.nextPageToken.isEmpty { break }
                cursor.pageToken = page.nextPageToken
            }
            let concurrent = try await creator.value
            let traversal = read.flatMap(\.ids)
            #expect(Set(traversal).count == traversal.count, "a row was returned twice")
            #expect(traversal == traversal.sorted(), "not in id order")
            #expect(Set(originals).isSubset(of: Set(traversal)))
            #expect(Set(traversal).isSubset(of: Set(originals + concurrent + interleaved)))
            let originalSet = Set(originals)
            for page in read where page.ids.count == 7 && page.ids.allSatisfy(originalSet.contains) {
                var again = Sundial_V1_ListTimersRequest()
                again.pageSize = 7
                again.pageToken = page.token
                #expect(try await a.list(again).timers.map(\.id) == page.ids, "page at token '\(page.token)' changed")
            }
            let everything = try await all { _ in }
            #expect(everything.count == 25 + concurrent.count + interleaved.count)

            // Limits.
            var huge = Sundial_V1_ListTimersRequest()
            huge.pageSize = 5000
            let tooBig = try await sundialError { _ = try await a.list(huge) }
            #expect(tooBig.code == .invalidArgument)
            #expect(tooBig.violations.contains { $0.field == "page_size" })
            for token in ["!!!", "AAAA", "bm90LWEtdG9rZW4"] {
                var bad = Sundial_V1_ListTimersRequest()
                bad.pageToken = token
                let rejected = try await sundialError { _ = try await a.list(bad) }
                #expect(rejected.code == .invalidArgument, "token \(token)")
            }
            // The other tenant sees only its own five.
            #expect(Set(try await b.list(Sundial_V1_ListTimersRequest()).timers.map(\.id)) == others)
        }
    }

    // MARK: 6. History paging

    @Test("History pages of 2 over a recurring timer's runs")
    func historyPagination() async throws {
        try await withTestSystem("history") { system in
            let client = system.client(tenant: "acme")
            let created = try await client.create(.every(.seconds(1), maxOccurrences: 6, queue: "hist"))
            let id = created.timer.id
            // The planner loads each occurrence as a run, well ahead of its due time.
            try await eventually("six runs loaded", timeout: .seconds(10)) {
                try await client.history(id, pageSize: 1000).runs.count == 6
            }
            var token = ""
            var pages: [[Sundial_V1_TimerRun]] = []
            repeat {
                let page = try await client.history(id, pageSize: 2, pageToken: token)
                pages.append(page.runs)
                token = page.nextPageToken
            } while !token.isEmpty && pages.count < 10
            #expect(pages.allSatisfy { $0.count <= 2 })
            #expect(pages.prefix(3).map(\.count) == [2, 2, 2])
            let runs = pages.flatMap { $0 }
            #expect(runs.map(\.occurrence) == [0, 1, 2, 3, 4, 5])
            #expect(runs.allSatisfy { $0.attempt == 1 && $0.version == created.timer.version && $0.hasScheduledAt })
            for (previous, next) in zip(runs, runs.dropFirst()) {
                #expect(abs(next.scheduledAt.date.timeIntervalSince(previous.scheduledAt.date) - 1) < 0.01)
            }

            let tooBig = try await sundialError { _ = try await client.history(id, pageSize: 5000) }
            #expect(tooBig.code == .invalidArgument)
            let badToken = try await sundialError { _ = try await client.history(id, pageSize: 2, pageToken: "!!") }
            #expect(badToken.code == .invalidArgument)
            let badID = try await sundialError { _ = try await client.history("nope") }
            #expect(badID.code == .invalidArgument)
        }
    }

    // MARK: 7. isolation

    @Test("another tenant gets 404 from Update, Cancel and History for a timer it does not own")
    func tenantIsolationOnMutations() async throws {
        try await withTestSystem("isolate") { system in
            let owner = system.client(tenant: "acme")
            let intruder = system.client(tenant: "globex")
            // Due within the horizon: loaded, so it has an armed run to protect.
            let mine = try await owner.create(.delay(.seconds(120), queue: "q", payload: "mine"))
            let id = mine.timer.id

            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = id
            update.payload = Data("stolen".utf8)
            update.updatePayload = true
            #expect(try await sundialError { _ = try await intruder.update(update) }.code == .notFound)
            #expect(try await sundialError { _ = try await intruder.cancel(id) }.code == .notFound)
            #expect(try await sundialError { _ = try await intruder.history(id) }.code == .notFound)
            #expect(try await sundialError { _ = try await intruder.get(id) }.code == .notFound)
            #expect(try await intruder.list(Sundial_V1_ListTimersRequest()).timers.isEmpty)

            let after = try await owner.get(id)
            #expect(after.version == mine.timer.version)
            #expect(after.state == mine.timer.state)
            #expect(String(decoding: after.payload, as: UTF8.self) == "mine")
            #expect(try await owner.history(id).runs.map(\.outcome) == ["armed"])
            // The owner still can.
            #expect(try await owner.cancel(id).state == .cancelled)
        }
    }
}

// MARK: - helpers

extension LifecycleIntegrationTests {
    struct RaceResult: Sendable {
        var id: String
        var acknowledged: Bool
        var createdVersion: UInt64
        /// The version the acknowledged request left.
        var version: UInt64
        var offsetMs: Int
    }

    /// Creates one-shots due 1.5 s out and runs `action` on each at its due time ± 150 ms
    /// (the aim is the input of the race, not synchronisation), ten at a time. An action
    /// that loses must fail with 409 "already fired"; anything else fails the test.
    func race(
        _ client: TimersClient, queue: String, iterations: Int,
        _ action: @escaping @Sendable (String) async throws -> Sundial_V1_Timer
    ) async throws -> [RaceResult] {
        var results: [RaceResult] = []
        for batch in stride(from: 0, to: iterations, by: 10) {
            try await withThrowingTaskGroup(of: RaceResult.self) { group in
                for _ in batch..<min(batch + 10, iterations) {
                    group.addTask {
                        let created = try await client.create(.delay(.milliseconds(1500), queue: queue, payload: "v1"))
                        let offsetMs = Int.random(in: -150...150)
                        let aim = created.timer.nextFireAt.date.addingTimeInterval(Double(offsetMs) / 1000)
                        let wait = aim.timeIntervalSinceNow
                        if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
                        do {
                            let timer = try await action(created.timer.id)
                            return RaceResult(
                                id: created.timer.id, acknowledged: true, createdVersion: created.timer.version,
                                version: timer.version, offsetMs: offsetMs)
                        } catch let error as SundialError where error.code == .conflict && error.message.contains("already fired") {
                            return RaceResult(
                                id: created.timer.id, acknowledged: false, createdVersion: created.timer.version,
                                version: created.timer.version, offsetMs: offsetMs)
                        }
                    }
                }
                for try await result in group { results.append(result) }
            }
        }
        return results
    }

    /// Collects jobs until `done` holds and then no job came for `quiet`, or `timeout` passed.
    func collectUntilQuiet(
        _ worker: SundialWorker, quiet: Duration, timeout: Duration,
        done: ([(SundialJob, Date)]) -> Bool
    ) async throws -> [(SundialJob, Date)] {
        var jobs: [(SundialJob, Date)] = []
        let deadline = ContinuousClock.now + timeout
        var satisfied = done(jobs)
        var lastChange = ContinuousClock.now
        while ContinuousClock.now < deadline {
            let batch = try await worker.next(max: 256, maxWait: .milliseconds(250))
            for job in batch {
                jobs.append((job, Date()))
                try await worker.complete(job)
            }
            if !batch.isEmpty { lastChange = .now }
            if !satisfied, done(jobs) {
                satisfied = true
                lastChange = .now
            }
            if satisfied, ContinuousClock.now - lastChange >= quiet { break }
        }
        if !satisfied { Issue.record("not all expected jobs arrived within \(timeout)") }
        return jobs
    }
}

extension Sundial_V1_CreateTimerRequest {
    static func every(_ interval: Duration, maxOccurrences: UInt32, queue: String, payload: String = "") -> Self {
        var request = Sundial_V1_CreateTimerRequest()
        request.queue = queue
        request.payload = Data(payload.utf8)
        request.schedule.every.interval = Google_Protobuf_Duration(
            seconds: interval.components.seconds, nanos: Int32(interval.components.attoseconds / 1_000_000_000))
        request.schedule.end.maxOccurrences = maxOccurrences
        return request
    }

    static func cron(_ expression: String, queue: String, payload: String = "") -> Self {
        var request = Sundial_V1_CreateTimerRequest()
        request.queue = queue
        request.payload = Data(payload.utf8)
        request.schedule.cron.expression = expression
        return request
    }
}
