import Foundation
import SundialContract
import SundialExecutor
import SundialLocalCluster
import SundialProto
import SundialTestSupport
import Testing

/// The dispatcher as a real process (the `sundial-dispatcher` executable), killed with SIGKILL
/// in the middle of a stream of fires and replaced.
@Suite("Integration: dispatcher crash", .serialized)
struct DispatcherCrashIntegrationTests {
    static var dispatcherBinary: URL {
        TestNATS.packageRoot.appendingPathComponent(".build/debug/sundial-dispatcher")
    }

    func startDispatcher(_ system: TestSystem, instance: String, log: URL) async throws -> ChildProcess {
        let binary = Self.dispatcherBinary
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestFailure("\(binary.path) missing: `make test` builds it before running the tests")
        }
        let env = try await system.serviceEnvironment([
            "SUNDIAL_DISPATCHER_INSTANCE_ID": instance, "SUNDIAL_DISPATCHER_FAIRNESS": "off",
        ])
        return try ChildProcess.spawn(executable: binary.path, arguments: [], environment: env, output: .file(log.path))
    }

    @Test("a dispatcher killed with SIGKILL mid-stream and replaced: every timer's job arrives, duplicates bounded")
    func dispatcherKilledAndReplaced() async throws {
        var options = TestSystem.Options()
        options.dispatcher = false
        options.fairness = false
        try await withTestSystem("dispatchercrash", options) { system in
            let logs = try TestPostgres.temporaryDirectory("dispatcher-logs")
            let worker = try await system.worker(queue: "crash")
            let client = system.client(tenant: "acme")
            var ids: Set<String> = []
            for index in 0..<300 {
                let delay = Duration.milliseconds(2000 + 20 * index)  // due over 2–8 s
                ids.insert(try await client.create(.delay(delay, queue: "crash", key: "k\(index)")).timer.id)
            }
            let first = try await startDispatcher(system, instance: "dispatcher-a", log: logs.appendingPathComponent("a.log"))
            // Kill it once it has demonstrably forwarded part of the stream.
            var jobs = try await collectJobs(worker, count: 60, timeout: .seconds(30))
            #expect(jobs.count == 60)
            first.signal(SIGKILL)
            #expect(await first.waitForExit() == 128 + SIGKILL)

            let second = try await startDispatcher(system, instance: "dispatcher-b", log: logs.appendingPathComponent("b.log"))
            // Fires the first one held unacked come back after their ack wait (30 s).
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                let missing = ids.subtracting(jobs.map(\.0.timerID)).count
                if missing == 0 { break }
                jobs += try await collectJobs(worker, count: missing, timeout: .seconds(2))
            }
            let received = Set(jobs.map(\.0.timerID))
            #expect(received == ids, "lost: \(ids.subtracting(received).count)")
            let duplicates = jobs.count - received.count
            print("dispatcher crash: \(jobs.count) jobs for \(ids.count) timers, \(duplicates) duplicates")
            // At most what one fetch of the killed dispatcher held could come twice.
            #expect(duplicates <= 250)
            second.signal(SIGTERM)
            #expect(await second.waitForExit() == 0)
        }
    }
}

/// Ingest as a real process (`sundial-ingest`), killed with SIGKILL while creates stream in: every
/// create that was answered fires, and a create retried with its idempotency key after the crash
/// is the same timer.
@Suite("Integration: ingest crash", .serialized)
struct IngestCrashIntegrationTests {
    @Test("an ingest killed with SIGKILL between creates and replaced: every acknowledged timer fires once")
    func ingestKilledAndReplaced() async throws {
        var options = TestSystem.Options()
        options.ingest = false
        options.fairness = false
        try await withTestSystem("ingestcrash", options) { system in
            let binary = TestNATS.packageRoot.appendingPathComponent(".build/debug/sundial-ingest")
            guard FileManager.default.isExecutableFile(atPath: binary.path) else {
                throw TestFailure("\(binary.path) missing: `make test` builds it before running the tests")
            }
            let logs = try TestPostgres.temporaryDirectory("ingest-logs")
            func start(_ name: String) async throws -> ChildProcess {
                try ChildProcess.spawn(
                    executable: binary.path, arguments: [], environment: try await system.serviceEnvironment(),
                    output: .file(logs.appendingPathComponent("\(name).log").path))
            }
            let worker = try await system.worker(queue: "crash")
            let client = system.client(tenant: "acme")
            var ingest = try await start("a")
            var acknowledged: [String: String] = [:]  // idempotency key → timer id
            var killed = false
            for index in 0..<120 {
                let key = "k\(index)"
                if index == 60 {
                    ingest.signal(SIGKILL)
                    #expect(await ingest.waitForExit() == 128 + SIGKILL)
                    killed = true
                }
                // Retried with the same key until an instance answers (the replacement starts
                // after a few refused tries, as a supervisor would restart it).
                var failures = 0
                while acknowledged[key] == nil {
                    do {
                        acknowledged[key] = try await client.create(.delay(.seconds(3), queue: "crash", key: key)).timer.id
                    } catch {
                        failures += 1
                        if killed, failures == 3 {
                            ingest = try await start("b")
                            killed = false
                        }
                        try await Task.sleep(for: .milliseconds(200))
                        #expect(failures < 200, "no ingest answered")
                        if failures >= 200 { break }
                    }
                }
            }
            let ids = Set(acknowledged.values)
            #expect(ids.count == 120)
            var jobs: [(SundialJob, Date)] = []
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, !ids.isSubset(of: Set(jobs.map(\.0.timerID))) {
                jobs += try await collectJobs(worker, count: ids.count - Set(jobs.map(\.0.timerID)).count, timeout: .seconds(2))
            }
            #expect(Set(jobs.map(\.0.timerID)) == ids)
            #expect(jobs.count == ids.count, "duplicates: \(jobs.count - ids.count)")
            ingest.signal(SIGTERM)
            _ = await ingest.waitForExit()
        }
    }
}
