import Foundation
import SundialContract
import SundialExecutor
import SundialLocalCluster
import SundialNATS
import SundialProto
import Synchronization
import Testing

/// Postgres goes away under load (issue 10): creates fail fast with 503 while it is down,
/// nothing acknowledged is lost, and everything drains once it is back.
@Suite("Integration: Postgres outage", .serialized)
struct PostgresOutageIntegrationTests {
    static let outage: Duration = .seconds(60)

    @Test("Postgres stopped for 60 s under load: creates answer 503 at once, every acknowledged timer is dispatched once")
    func postgresOutage() async throws {
        let postgres = try await TestPostgres.privateServer()
        var options = TestSystem.Options()
        options.postgres = postgres
        options.fairness = false
        try await withTestSystem("pg-outage", options) { system in
            let worker = try await system.worker(queue: "outage")
            let ledger = OutageLedger()
            let stop = Atomic<Bool>(false)
            let executor = Task {
                while !stop.load(ordering: .relaxed) {
                    guard let jobs = try? await worker.next(max: 256, maxWait: .milliseconds(300)) else { continue }
                    for job in jobs {
                        ledger.received(job.timerID)
                        try? await worker.complete(job)
                    }
                }
            }
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
            try await Task.sleep(for: .seconds(5))
            ledger.setDown(true)
            await postgres.stop()
            try await Task.sleep(for: Self.outage)
            _ = try await LocalPostgresServer.start(
                dataDirectory: postgres.dataDirectory, port: postgres.port, fsync: false, logger: TestPostgres.logger)
            ledger.setDown(false)
            let backAt = ContinuousClock.now
            try await eventually("creates succeed again", timeout: .seconds(30)) { ledger.acknowledgedSinceBack > 0 }
            let firstSuccess = ContinuousClock.now - backAt
            try await Task.sleep(for: .seconds(5))
            creating.store(false, ordering: .relaxed)
            await creator.value
            try await eventually("every acknowledged timer dispatched", timeout: .seconds(90)) { ledger.missing.isEmpty }
            stop.store(true, ordering: .relaxed)
            await executor.value
            let report = ledger.report
            print(
                "postgres outage \(Self.outage): acknowledged \(report.acknowledged), received \(report.received) (duplicates \(report.duplicates)); during the outage \(report.downFailures) creates failed (\(report.downCodes)), slowest answer \(report.slowestDownFailure); first create after restart succeeded \(firstSuccess) after it")
            #expect(report.downFailures > 0)
            #expect(report.downCodes.keys.allSatisfy { $0 == "503" })
            #expect(report.slowestDownFailure < .seconds(5))
            #expect(ledger.missing.isEmpty)
            #expect(report.duplicates == 0)
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
    }

    private let state = Mutex(State())

    var isDown: Bool { state.withLock { $0.down } }
    func setDown(_ down: Bool) {
        state.withLock {
            $0.down = down
            if down { $0.wasDown = true }
        }
    }

    func acknowledged(_ id: String) {
        state.withLock {
            $0.acknowledged.insert(id)
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

    func received(_ id: String) { state.withLock { $0.received[id, default: 0] += 1 } }
    var acknowledgedSinceBack: Int { state.withLock { $0.acknowledgedSinceBack } }
    var missing: Set<String> { state.withLock { $0.acknowledged.subtracting($0.received.keys) } }

    var report: (acknowledged: Int, received: Int, duplicates: Int, downFailures: Int, downCodes: [String: Int], slowestDownFailure: Duration) {
        state.withLock {
            ($0.acknowledged.count, $0.received.count, $0.received.values.filter { $0 > 1 }.count, $0.downFailures,
             $0.downCodes, $0.slowestDownFailure)
        }
    }
}
