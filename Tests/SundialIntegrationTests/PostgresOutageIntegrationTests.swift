import Foundation
import SundialContract
import SundialCore
import SundialExecutor
import SundialLocalCluster
import SundialNATS
import SundialProto
import SundialStore
import Synchronization
import SundialTestSupport
import Testing

/// Postgres goes away under load (issue 10): creates fail fast with 503 while it is down,
/// nothing acknowledged is lost, and everything drains once it is back — at full speed, also
/// when the executors left during the outage (fairness on, capacity measured).
@Suite("Integration: Postgres outage", .serialized)
struct PostgresOutageIntegrationTests {
    static let outage: Duration = .seconds(60)

    /// Timers due during the outage: the backlog of due fires that must drain once it ends.
    static let backlogTimers = 2000

    @Test("Postgres stopped for 60 s under load while the executors leave: creates answer 503 at once, every acknowledged timer is dispatched once, the backlog drains at full speed")
    func postgresOutage() async throws {
        let postgres = try await TestPostgres.privateServer()
        var options = TestSystem.Options()
        options.postgres = postgres
        options.governor = TestSystem.governorConfig(capacity: nil)
        try await withTestSystem("pg-outage", options) { system in
            let ledger = OutageLedger()
            let stop = Atomic<Bool>(false)
            // The executors leave with the outage (no pulls, no acks: whatever they held is
            // redelivered after its ack wait), and new ones come when it ends.
            let gone = Atomic<Bool>(false)
            func executor(_ worker: SundialWorker, until: @escaping @Sendable () -> Bool) -> Task<Void, Never> {
                Task {
                    while !until() {
                        guard let jobs = try? await worker.next(max: 256, maxWait: .milliseconds(300)) else { continue }
                        for job in jobs {
                            ledger.received(job.timerID)
                            try? await worker.complete(job)
                        }
                    }
                }
            }
            let first = executor(try await system.worker(queue: "outage")) { gone.load(ordering: .relaxed) }
            // A bulk tenant's timers, all due while Postgres will be down.
            let outageAt = Date().addingTimeInterval(15)
            let bulk = try await FairnessIntegrationTests.createDue(
                system, tenant: "bulk", count: Self.backlogTimers, due: outageAt.addingTimeInterval(10), queue: "outage")
            for id in bulk { ledger.acknowledged(id, dueDuringOutage: true) }
            try await eventually("a plan is in force", timeout: .seconds(20)) { system.dispatcher!.currentPlan.generation > 0 }
            let client = system.client(tenant: "steady")
            let creating = Atomic<Bool>(true)
            let creator = Task {
                var index = 0
                while creating.load(ordering: .relaxed) {
                    index += 1
                    let started = ContinuousClock.now
                    do {
                        let created = try await client.create(
                            .delay(.milliseconds(2000 + (index % 40) * 100), queue: "outage", payload: "\(index)"))
                        ledger.acknowledged(created.timer.id)
                    } catch {
                        ledger.failed(error, after: ContinuousClock.now - started, down: ledger.isDown)
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            try await Task.sleep(until: .now + .seconds(max(1, outageAt.timeIntervalSinceNow)), clock: .continuous)
            ledger.setDown(true)
            gone.store(true, ordering: .relaxed)
            await postgres.stop()
            await first.value
            try await Task.sleep(for: Self.outage)
            _ = try await LocalPostgresServer.start(
                dataDirectory: postgres.dataDirectory, port: postgres.port, fsync: false, logger: TestPostgres.logger)
            // Taken before the executors come back: nothing can be dispatched while Postgres is
            // down, so every fire received from here on was drained after the restart.
            let backAt = ContinuousClock.now
            let backAtDate = Date()
            ledger.setDown(false)
            let second = executor(try await system.worker(queue: "outage")) { stop.load(ordering: .relaxed) }
            try await eventually("creates succeed again", timeout: .seconds(30)) { ledger.acknowledgedSinceBack > 0 }
            let firstSuccess = ContinuousClock.now - backAt
            try await Task.sleep(for: .seconds(5))
            creating.store(false, ordering: .relaxed)
            await creator.value
            do {
                try await eventually("every acknowledged timer dispatched", timeout: .seconds(90)) { ledger.missing.isEmpty }
            } catch {
                // Where the missing ones are, for the failure report.
                let missing = ledger.missing
                print("postgres outage: \(missing.count) acknowledged timers not received; dispatcher \(system.dispatcher.map { "\($0.stats.snapshot)" } ?? "-")")
                for id in missing.sorted().prefix(5) {
                    let runs = (try? await system.store.runs(timerID: TimerID.parse(id)!)) ?? []
                    print("postgres outage: missing \(id): runs \(runs.map { "\($0.occurrence)/\($0.attempt) \($0.outcome) due \($0.scheduledAt) fired \($0.firedAt.map { "\($0)" } ?? "-") dispatched \($0.dispatchedAt.map { "\($0)" } ?? "-")" })")
                }
                throw error
            }
            stop.store(true, ordering: .relaxed)
            await second.value
            let report = ledger.report
            let drain = ledger.drain(since: backAtDate)
            print(
                "postgres outage \(Self.outage): acknowledged \(report.acknowledged), received \(report.received) (duplicates \(report.duplicates)); during the outage \(report.downFailures) creates failed (\(report.downCodes)), slowest answer \(report.slowestDownFailure); first create after restart succeeded \(firstSuccess) after it; backlog of \(drain.jobs) fires due during the outage drained \(String(format: "%.2f", drain.seconds)) s after the restart (\(Int(Double(drain.jobs) / max(drain.seconds, 0.001))) jobs/s)")
            #expect(report.downFailures > 0)
            #expect(report.downCodes.keys.allSatisfy { $0 == "503" })
            #expect(report.slowestDownFailure < .seconds(5))
            #expect(ledger.missing.isEmpty)
            #expect(report.duplicates == 0)
            // The backlog drains at full speed: the executors' absence during the outage did
            // not leave a capacity figure behind that throttles it (the run in issue 10 never
            // drained).
            #expect(drain.jobs >= Self.backlogTimers)
            #expect(drain.seconds < 30)
        }
    }
}

private final class OutageLedger: Sendable {
    struct State {
        var acknowledged = Set<String>()
        var received: [String: Int] = [:]
        var down = false
        var downFailures = 0
        var downCodes: [String: Int] = [:]
        var slowestDownFailure: Duration = .zero
        var acknowledgedSinceBack = 0
        var wasDown = false
        var dueDuringOutage = Set<String>()
        var receivedAt: [String: Date] = [:]
    }

    private let state = Mutex(State())

    var isDown: Bool { state.withLock { $0.down } }
    func setDown(_ down: Bool) {
        state.withLock {
            $0.down = down
            if down { $0.wasDown = true }
        }
    }

    func acknowledged(_ id: String, dueDuringOutage: Bool = false) {
        state.withLock {
            $0.acknowledged.insert(id)
            if dueDuringOutage { $0.dueDuringOutage.insert(id) }
            if $0.wasDown, !$0.down { $0.acknowledgedSinceBack += 1 }
        }
    }

    func failed(_ error: any Error, after: Duration, down: Bool) {
        guard down else { return }
        let code = (error as? SundialError).map { String($0.code.rawValue) } ?? "\(type(of: error))"
        state.withLock {
            $0.downFailures += 1
            $0.downCodes[code, default: 0] += 1
            $0.slowestDownFailure = max($0.slowestDownFailure, after)
        }
    }

    func received(_ id: String) {
        state.withLock {
            $0.received[id, default: 0] += 1
            if $0.receivedAt[id] == nil { $0.receivedAt[id] = Date() }
        }
    }

    /// The timers due during the outage that arrived after `back`, and when the last did.
    func drain(since back: Date) -> (jobs: Int, seconds: Double) {
        state.withLock { s in
            let times = s.dueDuringOutage.compactMap { s.receivedAt[$0] }.filter { $0 >= back }
            return (times.count, (times.max() ?? back).timeIntervalSince(back))
        }
    }
    var acknowledgedSinceBack: Int { state.withLock { $0.acknowledgedSinceBack } }
    var missing: Set<String> { state.withLock { $0.acknowledged.subtracting($0.received.keys) } }

    var report: (acknowledged: Int, received: Int, duplicates: Int, downFailures: Int, downCodes: [String: Int], slowestDownFailure: Duration) {
        state.withLock {
            ($0.acknowledged.count, $0.received.count, $0.received.values.filter { $0 > 1 }.count, $0.downFailures,
             $0.downCodes, $0.slowestDownFailure)
        }
    }
}
