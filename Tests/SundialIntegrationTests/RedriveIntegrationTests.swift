import Foundation
import SundialClient
import SundialContract
import SundialCore
import SundialExecutor
import SundialProto
import SundialStore
import SundialTestSupport
import Testing

/// Redrive (`Timers.Retry`): dead-lettered occurrences run again, singly or by label selector.
@Suite("Integration: redrive of dead letters")
struct RedriveIntegrationTests {
    @Test("a dead one-shot reruns with the next attempt number and a fresh round of its retry policy; twice at once arms it once")
    func redriveOneShot() async throws {
        try await withTestSystem("redrive") { system in
            let worker = try await system.worker(queue: "flaky")
            let client = system.client(tenant: "acme")
            var request = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: "flaky", payload: "p")
            request.retryPolicy.maxAttempts = 2
            request.retryPolicy.initialBackoff = .init(seconds: 0, nanos: 100_000_000)
            let created = try await client.create(request)
            let id = created.timer.id
            try await failJobs(worker, timer: id, attempts: [1, 2])
            try await eventually("the timer is dead") { try await client.get(id).state == .dead }

            // Not dead-lettered occurrences and unknown timers are refused.
            #expect(try await sundialError { _ = try await client.retry(id, occurrence: 7) }.code == .conflict)
            #expect(try await sundialError { _ = try await client.retry(TimerID.text(UUID())) }.code == .notFound)

            // Two redrives at once: one arms attempt 3, the other finds nothing left to retry.
            @Sendable func redrive() async -> Result<Sundial_V1_Timer, any Error> {
                do { return .success(try await client.retry(id)) } catch { return .failure(error) }
            }
            async let first = redrive()
            async let second = redrive()
            let outcomes = await [first, second]
            let redriven = outcomes.compactMap { try? $0.get() }
            #expect(redriven.count == 1)
            #expect(redriven.first?.state == .armed)
            let refused = outcomes.compactMap { outcome -> SundialError? in
                if case .failure(let error) = outcome { return error as? SundialError }
                return nil
            }
            #expect(refused.map(\.code) == [.conflict])

            // A fresh round of two attempts: 3 fails and is retried, 4 succeeds.
            try await failJobs(worker, timer: id, attempts: [3])
            let fourth = try #require(try await worker.next(max: 1, maxWait: .seconds(10)).first)
            #expect(fourth.attempt == 4)
            try await worker.complete(fourth)
            try await eventually("the timer succeeded") { try await client.get(id).state == .succeeded }
            let runs = try await system.store.runs(timerID: TimerID.parse(id)!)
            #expect(runs.map(\.attempt) == [1, 2, 3, 4])
            #expect(runs.map(\.outcome) == [.failed, .dead, .failed, .succeeded])
            // Succeeded: nothing to retry.
            #expect(try await sundialError { _ = try await client.retry(id) }.code == .conflict)
            #expect(try await collectJobs(worker, count: 1, timeout: .seconds(1)).isEmpty)
        }
    }

    @Test("redrive by label selector: dead one-shot timers matching every label, a page at a time; a recurring occurrence by number")
    func redriveBySelectorAndOccurrence() async throws {
        try await withTestSystem("redrivesel") { system in
            let worker = try await system.worker(queue: "strict")
            let client = system.client(tenant: "acme")
            var ids: [String: String] = [:]
            for (name, batch) in [("a", "x"), ("b", "x"), ("c", "x"), ("d", "y")] {
                var request = Sundial_V1_CreateTimerRequest.delay(.milliseconds(300), queue: "strict", payload: name)
                request.labels = ["batch": batch]
                ids[name] = try await client.create(request).timer.id
            }
            // Every first attempt fails without retry: all four are dead.
            var failed = 0
            let deadline = ContinuousClock.now + .seconds(20)
            while failed < 4, ContinuousClock.now < deadline {
                for job in try await worker.next(max: 8, maxWait: .milliseconds(500)) {
                    try await worker.fail(job, error: "bad", cause: .job, retryable: false)
                    failed += 1
                }
            }
            for id in ids.values {
                try await eventually("\(id) is dead") { try await client.get(id).state == .dead }
            }

            var selector = Sundial_V1_RetryTimerRequest()
            selector.labels = ["batch": "x"]
            selector.pageSize = 2
            let page1 = try await client.retry(selector)
            #expect(page1.timers.count == 2 && !page1.nextPageToken.isEmpty)
            selector.pageToken = page1.nextPageToken
            let page2 = try await client.retry(selector)
            #expect(page2.timers.count == 1 && page2.nextPageToken.isEmpty)
            let redriven = Set((page1.timers + page2.timers).map(\.id))
            #expect(redriven == [ids["a"]!, ids["b"]!, ids["c"]!])
            let reruns = try await collectJobs(worker, count: 3, timeout: .seconds(10))
            #expect(Set(reruns.map(\.0.timerID)) == redriven)
            #expect(reruns.allSatisfy { $0.0.attempt == 2 })
            try await worker.complete(reruns.map(\.0))
            #expect(try await client.get(ids["d"]!).state == .dead)
            // A selector needs a label; timer_id and labels do not mix.
            #expect(try await sundialError { _ = try await client.retry(Sundial_V1_RetryTimerRequest()) }.code == .invalidArgument)

            // A recurring timer: occurrence 0 dead-lettered, occurrence 1 succeeded; occurrence 0
            // reruns by number while the timer stays as it is.
            var recurring = Sundial_V1_CreateTimerRequest.every(.seconds(1), maxOccurrences: 2, queue: "rec")
            recurring.retryPolicy.maxAttempts = 1
            let timer = try await client.create(recurring).timer
            let recWorker = try await system.worker(queue: "rec")
            var seen = 0
            let recDeadline = ContinuousClock.now + .seconds(20)
            while seen < 2, ContinuousClock.now < recDeadline {
                for job in try await recWorker.next(max: 4, maxWait: .milliseconds(500)) {
                    if job.occurrence == 0 { try await recWorker.fail(job, error: "no") } else { try await recWorker.complete(job) }
                    seen += 1
                }
            }
            try await eventually("occurrence 0 is dead") {
                try await system.store.runs(timerID: TimerID.parse(timer.id)!).contains { $0.occurrence == 0 && $0.outcome == .dead }
            }
            let stateBefore = try await client.get(timer.id).state
            let after = try await client.retry(timer.id, occurrence: 0)
            #expect(after.state == stateBefore)
            let rerun = try #require(try await recWorker.next(max: 1, maxWait: .seconds(10)).first)
            #expect(rerun.occurrence == 0 && rerun.attempt == 2)
            try await recWorker.complete(rerun)
            #expect(try await sundialError { _ = try await client.retry(timer.id, occurrence: 1) }.code == .conflict)
        }
    }

    /// Fails this timer's jobs with the given attempt numbers, in order.
    private func failJobs(_ worker: SundialWorker, timer: String, attempts: [Int]) async throws {
        var seen: [Int] = []
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.count < attempts.count, ContinuousClock.now < deadline {
            for job in try await worker.next(max: 4, maxWait: .milliseconds(500)) {
                #expect(job.timerID == timer)
                seen.append(job.attempt)
                try await worker.fail(job, error: "boom \(job.attempt)")
            }
        }
        #expect(seen == attempts)
    }
}
