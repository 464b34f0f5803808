import Foundation
import SundialContract
import SundialCore
import SundialPostgres
import SundialProto
import SundialStore
import SundialTestSupport
import Testing

/// Issue 13, retention: the reaper deletes finished timers with their runs (and so their
/// payloads) and old finished runs of timers that go on, never what is still live; batches
/// resume where the last one stopped; one reaper at a time. Time is injected (`now`).
@Suite("Integration: retention", .serialized)
struct RetentionIntegrationTests {
    @Test("finished timers and old finished runs go after the retention; live timers and pending runs stay")
    func reaperDeletesOnlyWhatIsFinished() async throws {
        try await withTestSystem("retention") { system in
            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "r")
            var done: [String] = []
            for index in 0..<5 {
                done.append(try await client.create(.delay(.milliseconds(300 + index * 50), queue: "r", payload: "done-\(index)")).timer.id)
            }
            let cancelled = try await client.create(.delay(.seconds(3600), queue: "r")).timer.id
            _ = try await client.cancel(cancelled)
            let future = try await client.create(.delay(.seconds(3600), queue: "r")).timer.id
            let ticking = try await client.create(.every(.seconds(1), maxOccurrences: 1000, queue: "r", payload: "tick")).timer.id
            // Run the one-shots and two ticks to success.
            var ticks = 0
            let deadline = ContinuousClock.now + .seconds(30)
            var succeeded = Set<String>()
            while (succeeded.count < done.count || ticks < 2), ContinuousClock.now < deadline {
                for job in try await worker.next(max: 16, maxWait: .milliseconds(300)) {
                    try await worker.complete(job)
                    if job.timerID == ticking { ticks += 1 } else { succeeded.insert(job.timerID) }
                }
            }
            #expect(succeeded == Set(done) && ticks >= 2)
            let oneShots = done
            try await eventually("the one-shots are settled") {
                var all = true
                for id in oneShots where try await client.get(id).state != .succeeded { all = false }
                return all
            }
            let tickID = try #require(TimerID.parse(ticking))
            try await eventually("the ticks' runs are finished") {
                try await system.store.runs(timerID: tickID).filter { $0.outcome == .succeeded }.count >= 2
            }

            let store = RetentionStore(pool: system.pool)
            // Within the retention nothing goes.
            var outcome = try await store.reapBatch(now: Date(), retention: .seconds(3600), batchSize: 100)
            #expect(outcome == .caughtUp)
            // Eight days later, with 7 days' retention, in batches of 3 timers.
            let later = Date().addingTimeInterval(8 * 86_400)
            var deleted = 0
            var runs = 0
            var batches = 0
            var attempts = 0
            repeat {
                attempts += 1
                // At most 3 runs per transaction: the walk stays on a batch until its runs are gone.
                outcome = try await store.reapBatch(
                    now: later, retention: .seconds(7 * 86_400), batchSize: 3, runsPerBatch: 3)
                // The system's own planner reaps too (with today's clock): if it holds the lock
                // this instant, try again.
                if outcome == .busy { continue }
                if case .walked(let walked, let timers, let gone) = outcome {
                    #expect(walked <= 3)
                    deleted += timers
                    runs += gone
                }
                batches += 1
            } while outcome != .caughtUp && attempts < 50
            // 8 timers walked in batches of 3 (3 + 3 + 2, then the end), and batches that stayed
            // on timers with more runs than one transaction deletes.
            #expect(batches > 4, "\(batches) batches")
            #expect(deleted == done.count + 1, "the five succeeded one-shots and the cancelled one")
            for id in done + [cancelled] {
                await #expect(throws: (any Error).self) { _ = try await client.get(id) }
                #expect(try await system.store.runs(timerID: TimerID.parse(id)!).isEmpty)
            }
            // What is live stays: the future timer, the recurring one and its pending run; only
            // the recurring timer's finished runs went.
            let futureState = try await client.get(future).state
            #expect(futureState == .armed || futureState == .scheduled)
            #expect(try await client.get(ticking).state != .succeeded)
            let tickRuns = try await system.store.runs(timerID: tickID)
            #expect(!tickRuns.contains { $0.outcome == .succeeded })
            #expect(tickRuns.contains { RunOutcome.open.contains($0.outcome) })
            #expect(runs >= done.count + 2)

            // A timer in a final state whose last run has not fired yet (a `completed`
            // recurring timer whose last occurrence is held, say) is kept until that run is done.
            _ = try await system.pool.withSession { session in
                try session.execute(
                    "UPDATE timers SET state = 'completed', updated_at = now() - interval '30 days' WHERE id = '\(ticking)'")
            }
            var tries = 0
            repeat {
                tries += 1
                outcome = try await store.reapBatch(now: later, retention: .seconds(7 * 86_400), batchSize: 100)
            } while outcome != .caughtUp && tries < 50
            #expect(try await client.get(ticking).state == .completed)
            #expect(try await system.store.runs(timerID: tickID).contains { $0.outcome == .armed || $0.outcome == .dispatched || $0.outcome == .dispatching })
        }
    }

    @Test("a closed day partition whose timers all finished drops whole with its runs; one holding a live timer is left to the walk")
    func finishedDayPartitionDropsWhole() async throws {
        // No planner: its own reaper would create partitions of its period alongside the
        // test's day partitions (the one-shots here are published by Ingest, due within the
        // horizon, and the hour-away timer is never loaded).
        var options = TestSystem.Options()
        options.planner = false
        try await withTestSystem("partitions", options) { system in
            // The migration's first partition covers every id up to the midnight after
            // tomorrow: make way for day partitions from today on (as a schema migrated days
            // ago has them).
            _ = try await system.pool.withSession { session in
                try session.execute("ALTER TABLE timer_runs DETACH PARTITION timer_runs_legacy")
                try session.execute("DROP TABLE timer_runs_legacy")
            }
            let store = RetentionStore(pool: system.pool)
            let week = Duration.seconds(7 * 86_400)
            /// Passes at `now` as the planner runs them (carrying the drain) until nothing more
            /// is to do at once; what they did, summed. A busy lock or a DDL lock timeout is
            /// tried again.
            @Sendable func passes(now: Date, deleteBatch: Int = 5_000) async throws -> (RetentionStore.PartitionWork, calls: Int) {
                var total = RetentionStore.PartitionWork()
                var drain: RetentionStore.PartitionDrain?
                var calls = 0
                for _ in 0..<200 {
                    guard case .done(let work) = try await store.maintainPartitions(
                        now: now, retention: week, lookaheadDays: 2, deleteBatch: deleteBatch,
                        held: Set(total.held), drain: drain)
                    else {
                        try await Task.sleep(for: .milliseconds(50))
                        continue
                    }
                    calls += 1
                    total.created += work.created
                    total.dropped += work.dropped
                    total.held += work.held
                    total.timersDeleted += work.timersDeleted
                    total.runsDeleted += work.runsDeleted
                    drain = work.drain
                    let lockTimedOut = work.failed.values.contains { $0.contains("lock timeout") }
                    if !work.more && !lockTimedOut { return (total, calls) }
                }
                throw SundialError(.unavailable, "the partition passes did not settle")
            }
            @Sendable func partitions() async throws -> [String] {
                try await system.pool.withSession { session in
                    try session.execute(
                        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'timer_runs'::regclass ORDER BY 1"
                    ).compactMap { try $0.string("name") }
                }
            }
            let started = Date()
            _ = try await passes(now: started)
            let today = RunPartitionCalendar.dayStart(started)
            let days = (0...2).map { RunPartitionCalendar.name(day: today.addingTimeInterval(Double($0) * 86_400)) }
            let created = try await partitions()
            #expect(Set(days).isSubset(of: created), "\(created)")

            let client = system.client(tenant: "acme")
            let worker = try await system.worker(queue: "r")
            var done: [String] = []
            for index in 0..<4 {
                done.append(try await client.create(.delay(.milliseconds(200 + index * 50), queue: "r")).timer.id)
            }
            let live = try await client.create(.delay(.seconds(3600), queue: "r")).timer.id
            var succeeded = Set<String>()
            let deadline = ContinuousClock.now + .seconds(30)
            while succeeded.count < done.count, ContinuousClock.now < deadline {
                for job in try await worker.next(max: 16, maxWait: .milliseconds(300)) {
                    try await worker.complete(job)
                    succeeded.insert(job.timerID)
                }
            }
            #expect(succeeded == Set(done))
            let finished = done
            try await eventually("the one-shots are settled") {
                for id in finished where try await client.get(id).state != .succeeded { return false }
                return true
            }
            let ids = (done + [live]).compactMap(TimerID.parse)
            @Sendable func runsByPartition() async throws -> [String: Int] {
                try await system.pool.withSession { session in
                    var counts: [String: Int] = [:]
                    for row in try session.execute(
                        "SELECT tableoid::regclass::text AS p, count(*)::bigint AS n FROM timer_runs WHERE timer_id = ANY($1::uuid[]) GROUP BY 1",
                        [.uuidArray(ids)])
                    {
                        counts[try row.string("p") ?? "?"] = try row.int("n") ?? 0
                    }
                    return counts
                }
            }
            // Every run is in a day partition (two if the test straddles midnight), none in the default.
            let placed = try await runsByPartition()
            #expect(!placed.isEmpty && placed.keys.allSatisfy { $0.hasPrefix("timer_runs_p") }, "\(placed)")
            #expect(placed.values.reduce(0, +) >= done.count, "one run per finished one-shot (the hour-away one is not loaded)")
            let liveDay = RunPartitionCalendar.name(day: Self.creationDay(of: try #require(TimerID.parse(live))))

            // Nine days later (retention 7 d) the creation days are closed, but the live
            // timer's day holds a pending timer: held, not dropped, none of its timers deleted.
            let later = started.addingTimeInterval(9 * 86_400)
            let (first, _) = try await passes(now: later)
            #expect(first.held.contains(liveDay) && !first.dropped.contains(liveDay), "\(first)")
            #expect(try await client.get(live).state == .scheduled)
            for id in done where !first.dropped.contains(RunPartitionCalendar.name(day: Self.creationDay(of: TimerID.parse(id)!))) {
                #expect(try await client.get(id).state == .succeeded)
            }

            // Once it is cancelled, its day goes: timers in batches of 2, then the table.
            _ = try await client.cancel(live)
            let (second, calls) = try await passes(now: later, deleteBatch: 2)
            #expect(first.timersDeleted + second.timersDeleted == done.count + 1, "\(first) \(second)")
            #expect(calls >= 3, "batches of 2: \(calls) calls")
            #expect(Set(placed.keys).isSubset(of: Set(first.dropped + second.dropped)), "\(second)")
            let remaining = try await partitions()
            #expect(placed.keys.allSatisfy { !remaining.contains($0) } && remaining.contains("timer_runs_default"))
            #expect(try await runsByPartition().isEmpty)
            for id in done + [live] {
                await #expect(throws: (any Error).self) { _ = try await client.get(id) }
            }
        }
    }

    /// The UTC day a timer was created (its UUIDv7's millisecond).
    static func creationDay(of id: UUID) -> Date {
        let millis = withUnsafeBytes(of: id.uuid) { bytes in (0..<6).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) } }
        return RunPartitionCalendar.dayStart(Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    @Test("one reaper at a time: while another holds the lock a batch reports busy")
    func oneReaperAtATime() async throws {
        // No planner: its own reaper takes the same lock when it starts, racing the second batch.
        var options = TestSystem.Options()
        options.planner = false
        try await withTestSystem("reaperlock", options) { system in
            let holder = try await TestPostgres.pool(schema: system.schema, size: 1)
            let lock = "hashtext('\(system.schema)' || '.sundial_reaper')"
            _ = try await holder.withSession { try $0.execute("SELECT pg_advisory_lock(\(lock))") }
            let store = RetentionStore(pool: system.pool)
            #expect(try await store.reapBatch(now: Date(), retention: .seconds(60), batchSize: 10) == .busy)
            _ = try await holder.withSession { try $0.execute("SELECT pg_advisory_unlock(\(lock))") }
            #expect(try await store.reapBatch(now: Date(), retention: .seconds(60), batchSize: 10) != .busy)
            await holder.close()
        }
    }
}
