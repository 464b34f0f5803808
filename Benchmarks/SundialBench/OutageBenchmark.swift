import Foundation
import SundialClient
import SundialContract
import SundialExecutor
import SundialNATS
import SundialProto
import Synchronization

/// The failing-downstream scenario (issue 18) against one running Sundial: one tenant, two
/// queues. Queue `dep` has `jobs` one-shot timers due over `window` seconds with `attempts`
/// attempts and 1 s backoff doubling to 10 s; its executor's downstream is down for the first
/// `outage` seconds from the first due time (every job fails, classified as downstream), and
/// works after. Queue `ok` has `otherJobs` timers over the same window and always succeeds.
/// Measures attempts spent during the outage, dead letters, time from recovery to the last
/// success, and the other queue's lag.
public struct OutageBenchmark: Sendable {
    public struct Parameters: Sendable, Codable {
        public var jobs = 300
        public var otherJobs = 100
        public var window: Double = 20
        public var outage: Double = 40
        public var attempts = 5
        /// Seconds from the start to the first due time (creating everything).
        public var lead: Double = 8
        /// Give up this long after the outage ends.
        public var drainTimeout: Double = 180
        public init() {}
    }

    public struct Report: Sendable, Codable {
        public var mode: String
        public var attemptsDuringOutage: Int
        public var attemptsPerJobDuringOutage: Double
        public var deadLettered: Int
        public var succeeded: Int
        /// Seconds from the downstream's recovery to the last `dep` success (nil: none after it).
        public var lastSuccessAfterRecovery: Double?
        public var otherLagP95: Double
        public var otherReceived: Int
        public var breakerEvents: [String: Int]
        public var createErrors: Int
    }

    final class Ledger: Sendable {
        struct State {
            var depAttempts: [(at: Date, failed: Bool)] = []
            var depSucceeded = Set<String>()
            var otherLags: [Double] = []
            var deadLettered = Set<String>()
            var events: [String: Int] = [:]
            var createErrors = 0
        }
        let state = Mutex(State())
        let done = Atomic<Bool>(false)
    }

    public let parameters: Parameters
    public let namespace: SundialNamespace

    public init(_ parameters: Parameters, namespace: SundialNamespace = .standard) {
        self.parameters = parameters
        self.namespace = namespace
    }

    public func run(natsURL: String, mode: String, progress: @escaping @Sendable (String) -> Void) async throws -> Report {
        let p = parameters
        let tenant = "outage-bench"
        let client = try await NATSConnection.connect(NATSConnectionOptions(url: natsURL, name: "outage-bench-client"), logger: BenchLogger.logger)
        let executors = try await NATSConnection.connect(NATSConnectionOptions(url: natsURL, name: "outage-bench-executor"), logger: BenchLogger.logger)
        var options = SundialWorker.Options()
        options.namespace = namespace
        let dep = try await SundialWorker.connect(connection: executors, queue: "dep", options: options)
        let ok = try await SundialWorker.connect(connection: executors, queue: "ok", options: options)
        let ledger = Ledger()
        let events = try await client.subscribe(subject: namespace.event(tenant: tenant, kind: ">"))
        let eventTask = Task {
            for await message in events {
                guard let event = try? Sundial_V1_TimerEvent(serializedBytes: message.payload) else { continue }
                ledger.state.withLock { s in
                    s.events[event.kind, default: 0] += 1
                    if event.kind == TimerEventKind.deadLetter, event.timer.queue == "dep" { s.deadLettered.insert(event.timer.id) }
                }
            }
        }
        let start = Date()
        let firstDue = start.addingTimeInterval(p.lead)
        let recovery = firstDue.addingTimeInterval(p.outage)

        let depTask = Task {
            while !ledger.done.load(ordering: .relaxed) {
                guard let jobs = try? await dep.next(max: 64, maxWait: .milliseconds(200)) else { continue }
                for job in jobs {
                    let now = Date()
                    let down = now < recovery
                    ledger.state.withLock { s in
                        s.depAttempts.append((now, down))
                        if !down { s.depSucceeded.insert(job.timerID) }
                    }
                    if down {
                        try? await dep.fail(job, error: "503 Service Unavailable", cause: .downstream)
                    } else {
                        try? await dep.complete(job)
                    }
                }
            }
        }
        let okTask = Task {
            while !ledger.done.load(ordering: .relaxed) {
                guard let jobs = try? await ok.next(max: 64, maxWait: .milliseconds(200)) else { continue }
                let now = Date()
                ledger.state.withLock { s in for job in jobs { s.otherLags.append(job.lag(receivedAt: now)) } }
                try? await ok.complete(jobs)
            }
        }

        progress("[\(mode)] creating \(p.jobs) timers on dep and \(p.otherJobs) on ok, due over \(Int(p.window)) s from \(Int(p.lead)) s; dep's downstream down for \(Int(p.outage)) s")
        let timers = TimersClient(connection: client, tenant: tenant, namespace: namespace, timeout: .seconds(10))
        func create(queue: String, index: Int, count: Int) async {
            var request = Sundial_V1_CreateTimerRequest()
            request.queue = queue
            request.payload = Data("\(queue)-\(index)".utf8)
            let due = firstDue.addingTimeInterval(p.window * Double(index) / Double(max(1, count)))
            request.schedule.at.instant = Google_Protobuf_Timestamp(date: due)
            request.retryPolicy.maxAttempts = UInt32(clamping: p.attempts)
            request.retryPolicy.initialBackoff = .init(seconds: 1)
            request.retryPolicy.maxBackoff = .init(seconds: 10)
            if (try? await timers.create(request)) == nil { ledger.state.withLock { $0.createErrors += 1 } }
        }
        await withTaskGroup(of: Void.self) { group in
            for lane in 0..<16 {
                group.addTask {
                    for index in stride(from: lane, to: p.jobs, by: 16) { await create(queue: "dep", index: index, count: p.jobs) }
                    for index in stride(from: lane, to: p.otherJobs, by: 16) { await create(queue: "ok", index: index, count: p.otherJobs) }
                }
            }
        }
        let created = p.jobs - ledger.state.withLock { $0.createErrors }
        progress(String(format: "[\(mode)] created in %.1f s; waiting for the outage to end and every job to settle", Date().timeIntervalSince(start)))
        let deadline = recovery.addingTimeInterval(p.drainTimeout)
        while Date() < deadline {
            let (settled, other) = ledger.state.withLock { ($0.depSucceeded.union($0.deadLettered).count, $0.otherLags.count) }
            if Date() > recovery, settled >= created, other >= p.otherJobs { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        try await Task.sleep(for: .seconds(1))  // late events
        ledger.done.store(true, ordering: .relaxed)
        await depTask.value
        await okTask.value
        events.unsubscribe()
        eventTask.cancel()
        await client.close()
        await executors.close()

        let s = ledger.state.withLock { $0 }
        let during = s.depAttempts.filter { $0.at < recovery }.count
        let lastSuccess = s.depAttempts.filter { !$0.failed }.map(\.at).max()
        let lags = s.otherLags.sorted()
        return Report(
            mode: mode, attemptsDuringOutage: during, attemptsPerJobDuringOutage: Double(during) / Double(max(1, p.jobs)),
            deadLettered: s.deadLettered.count, succeeded: s.depSucceeded.count,
            lastSuccessAfterRecovery: lastSuccess.map { $0.timeIntervalSince(recovery) },
            otherLagP95: lags.isEmpty ? -1 : lags[min(lags.count - 1, lags.count * 95 / 100)], otherReceived: lags.count,
            breakerEvents: s.events.filter { $0.key.hasPrefix("queue_breaker") }, createErrors: s.createErrors)
    }

    /// The modes side by side.
    public static func table(_ reports: [Report], parameters p: Parameters) -> String {
        var lines: [String] = []
        lines.append(
            "outage benchmark: \(p.jobs) timers on queue dep due over \(Int(p.window)) s, \(p.attempts) attempts, backoff 1 s doubling to 10 s; dep's downstream down \(Int(p.outage)) s from the first due time; \(p.otherJobs) timers on queue ok (same tenant)")
        lines.append("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB; all components on this box")
        lines.append("".padding(toLength: 36, withPad: " ", startingAt: 0) + reports.map { $0.mode.padding(toLength: 24, withPad: " ", startingAt: 0) }.joined())
        func row(_ label: String, _ value: (Report) -> String) {
            lines.append(label.padding(toLength: 36, withPad: " ", startingAt: 0) + reports.map { value($0).padding(toLength: 24, withPad: " ", startingAt: 0) }.joined())
        }
        row("attempts during the outage") { "\($0.attemptsDuringOutage)" }
        row("attempts per job during it") { String(format: "%.2f", $0.attemptsPerJobDuringOutage) }
        row("jobs dead-lettered") { "\($0.deadLettered)" }
        row("jobs succeeded") { "\($0.succeeded) of \(p.jobs)" }
        row("last success after recovery") { r in r.lastSuccessAfterRecovery.map { String(format: "%.1f s", $0) } ?? "—" }
        row("queue ok p95 lag") { String(format: "%.2f s (%d jobs)", $0.otherLagP95, $0.otherReceived) }
        row("breaker events") { r in r.breakerEvents.isEmpty ? "none" : r.breakerEvents.sorted { $0.key < $1.key }.map { "\($0.key.replacingOccurrences(of: "queue_breaker_", with: "")) \($0.value)" }.joined(separator: ", ") }
        row("create errors") { "\($0.createErrors)" }
        return lines.joined(separator: "\n")
    }
}
