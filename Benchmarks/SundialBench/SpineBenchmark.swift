import Foundation
import Logging
import SundialClient
import SundialContract
import SundialExecutor
import SundialNATS
import SundialProto
import SundialSchedule
import Synchronization

/// Drives a running Sundial: creates `count` one-shot timers at `rate` per second with due
/// times spread uniformly over [dueMin, dueMax] after creation — or, in burst mode, all `at`
/// one instant — while an executor consumes the queue and measures each job's lag three ways:
/// stored in the work stream, received, and reported done (each minus the due time). A ledger
/// of created ids versus received jobs gives lost and duplicate counts.
public struct SpineBenchmark: Sendable {
    public struct Parameters: Sendable {
        public var natsURL: String
        public var tenant = "bench"
        public var queue = "bench-\(UInt32.random(in: 0...UInt32.max))"
        public var count = 60_000
        public var rate = 1000.0
        public var dueMin: Duration = .seconds(5)
        public var dueMax: Duration = .seconds(65)
        /// Creates in flight at once (bounded; beyond it the pacing loop waits).
        public var maxInFlight = 256
        /// After the last due time, how long to wait for stragglers before counting losses.
        public var drainTimeout: Duration = .seconds(30)
        public var payloadBytes = 64
        public var namespace = SundialNamespace.standard
        /// Tenants the timers are spread over, round-robin (`<tenant>-<n>` when more than one).
        public var tenants = 1
        /// Burst mode: every timer is an `at` timer due at this instant (due-min/max unused).
        public var burstAt: Date?
        /// The Planner's horizon, if known: creates answered closer than this to their due time
        /// were published by Ingest, the rest promoted by the Planner (counted in the report).
        public var horizon: Duration?

        public init(natsURL: String) { self.natsURL = natsURL }
    }

    public struct Report: Sendable, Codable {
        public var scenario: String
        public var machine: String
        public var created: Int
        public var createErrors: Int
        public var createRatePerSecondAchieved: Double
        public var createLatencyMs: Percentiles
        public var received: Int
        public var lost: Int
        public var duplicates: Int
        public var tenants: Int?
        /// Creates answered more than the horizon before their due time (promoted by the
        /// Planner rather than published by Ingest); nil when the horizon was not given.
        public var createdBeyondHorizon: Int?
        /// Receive time − due time at the executor (first delivery of each timer).
        public var fireLagMs: Percentiles
        /// Time the job was stored in the work stream − due time.
        public var workStreamLagMs: Percentiles?
        /// Time the executor's report (result published, job acked) completed − due time.
        public var reportedLagMs: Percentiles?
        public var dispatchThroughputPerSecondPeak: Double
        public var lagOverTime: [LagBucket]
        /// CPU seconds per 1,000 created timers of each process on the machine, by role
        /// (`ProcessCPU`), from the first create until the last job was received.
        public var cpuSecondsPer1000Timers: [String: Double]?
    }

    public struct Percentiles: Sendable, Codable {
        public var p50: Double
        public var p95: Double
        public var p99: Double
        public var max: Double
        public var mean: Double

        init(_ values: [Double]) {
            let sorted = values.sorted()
            func at(_ q: Double) -> Double {
                sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int((Double(sorted.count) * q).rounded(.down)))]
            }
            p50 = at(0.50)
            p95 = at(0.95)
            p99 = at(0.99)
            max = sorted.last ?? 0
            mean = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
        }
    }

    /// Fire lag per 5-second slice of due time: the "plot of lag over time" in numbers.
    public struct LagBucket: Sendable, Codable {
        public var secondsFromStart: Int
        public var jobs: Int
        public var p50Ms: Double
        public var p99Ms: Double
    }

    public let parameters: Parameters

    public init(_ parameters: Parameters) { self.parameters = parameters }

    final class Ledger: Sendable {
        struct State {
            var due: [String: Date] = [:]
            var receipts: [String: Int] = [:]
            var lags: [(due: Date, lag: Double)] = []
            var streamLags: [Double] = []
            var reportedLags: [Double] = []
            var receiveTimes: [Date] = []
            var createLatencies: [Double] = []
            var createErrors = 0
            var beyondHorizon = 0
            var firstError: String?
        }
        let state = Mutex(State())
    }

    public func run(progress: @Sendable (String) -> Void) async throws -> Report {
        let p = parameters
        var options = NATSConnectionOptions(url: p.natsURL, name: "sundial-bench-client")
        options.sendAsap = true
        let clientConnection = try await NATSConnection.connect(options, logger: BenchLogger.logger)
        var executorOptions = NATSConnectionOptions(url: p.natsURL, name: "sundial-bench-executor")
        executorOptions.sendAsap = false
        let executorConnection = try await NATSConnection.connect(executorOptions, logger: BenchLogger.logger)
        var workerOptions = SundialWorker.Options()
        workerOptions.namespace = p.namespace
        workerOptions.maxAckPending = 20_000
        let worker = try await SundialWorker.connect(connection: executorConnection, queue: p.queue, options: workerOptions)
        let tenantNames = p.tenants <= 1 ? [p.tenant] : (0..<p.tenants).map { "\(p.tenant)-\($0)" }
        let clients = tenantNames.map {
            TimersClient(connection: clientConnection, tenant: $0, namespace: p.namespace, timeout: .seconds(10))
        }
        let ledger = Ledger()
        let stop = Atomic<Bool>(false)

        // The executor: receive, timestamp, complete.
        let executor = Task {
            while !stop.load(ordering: .relaxed) {
                guard let jobs = try? await worker.next(max: 1000, maxWait: .milliseconds(200)), !jobs.isEmpty else { continue }
                let now = Date()
                let firsts = ledger.state.withLock { state in
                    var firsts: [Date] = []
                    for job in jobs {
                        state.receipts[job.timerID, default: 0] += 1
                        state.receiveTimes.append(now)
                        if state.receipts[job.timerID] == 1 {
                            firsts.append(job.scheduledAt)
                            state.lags.append((job.scheduledAt, now.timeIntervalSince(job.scheduledAt)))
                            if let stored = job.message.metadata?.timestampNanos {
                                state.streamLags.append(Double(stored) / 1e9 - job.scheduledAt.timeIntervalSince1970)
                            }
                        }
                    }
                    return firsts
                }
                guard (try? await worker.complete(jobs)) != nil else { continue }
                let done = Date()
                ledger.state.withLock { state in
                    for due in firsts { state.reportedLags.append(done.timeIntervalSince(due)) }
                }
            }
        }

        if let burstAt = p.burstAt {
            progress("creating \(p.count) timers at \(Int(p.rate))/s on queue \(p.queue) for \(tenantNames.count) tenants, all due at \(RFC3339.format(burstAt))")
        } else {
            progress("creating \(p.count) timers at \(Int(p.rate))/s on queue \(p.queue), due \(p.dueMin)…\(p.dueMax) out")
        }
        let payload = Data(repeating: 0x61, count: p.payloadBytes)
        let clock = ContinuousClock()
        let cpuStart = ProcessCPU.snapshot()
        let start = clock.now
        let wallStart = Date()
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            for index in 0..<p.count {
                try? await Task.sleep(until: start + .seconds(Double(index) / p.rate), clock: clock)
                if inFlight >= p.maxInFlight {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                var request = Sundial_V1_CreateTimerRequest()
                request.queue = p.queue
                request.payload = payload
                request.idempotencyKey = "bench-\(index)-\(p.queue)"
                if let burstAt = p.burstAt {
                    request.schedule.at.instant = Google_Protobuf_Timestamp(date: burstAt)
                } else {
                    let delay = p.dueMin + (p.dueMax - p.dueMin) * Double.random(in: 0..<1)
                    request.schedule.delay.duration = Google_Protobuf_Duration(
                        seconds: delay.components.seconds, nanos: Int32(delay.components.attoseconds / 1_000_000_000))
                }
                let client = clients[index % clients.count]
                group.addTask {
                    let sent = clock.now
                    do {
                        let response = try await client.create(request)
                        let latency = (clock.now - sent).seconds * 1000
                        let due = response.timer.nextFireAt.date
                        let beyond = p.horizon.map { due.timeIntervalSinceNow > $0.seconds } ?? false
                        ledger.state.withLock { state in
                            state.due[response.timer.id] = due
                            state.createLatencies.append(latency)
                            if beyond { state.beyondHorizon += 1 }
                        }
                    } catch {
                        ledger.state.withLock { state in
                            state.createErrors += 1
                            if state.firstError == nil { state.firstError = "\(error)" }
                        }
                    }
                }
                if index > 0 && index % 10_000 == 0 { progress("  \(index) created") }
            }
        }
        let createSeconds = (clock.now - start).seconds
        let lastDue = ledger.state.withLock { $0.due.values.max() } ?? Date()
        progress(String(format: "created in %.1f s; waiting for the last due time (%@) plus up to %@ of drain", createSeconds, RFC3339.format(lastDue), "\(p.drainTimeout)"))

        // Wait until every created timer was received, or the drain deadline passed.
        let drainDeadline = lastDue.addingTimeInterval(p.drainTimeout.seconds)
        while Date() < drainDeadline {
            let missing = ledger.state.withLock { state in state.due.keys.filter { state.receipts[$0] == nil }.count }
            if missing == 0 && Date() > lastDue { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        let cpuEnd = ProcessCPU.snapshot()
        // A short tail to catch late duplicates.
        try await Task.sleep(for: .seconds(2))
        stop.store(true, ordering: .relaxed)
        await executor.value
        await clientConnection.close()
        await executorConnection.close()

        let state = ledger.state.withLock { $0 }
        if let firstError = state.firstError { progress("first create error: \(firstError)") }
        let received = state.due.keys.filter { state.receipts[$0] != nil }.count
        let duplicates = state.receipts.values.reduce(0) { $0 + max(0, $1 - 1) }
        // Peak dispatch throughput: the busiest second of receipts.
        var perSecond: [Int: Int] = [:]
        for time in state.receiveTimes { perSecond[Int(time.timeIntervalSince1970), default: 0] += 1 }
        var buckets: [Int: [Double]] = [:]
        for (due, lag) in state.lags {
            buckets[Int(due.timeIntervalSince(wallStart) / 5) * 5, default: []].append(lag * 1000)
        }
        let lagOverTime = buckets.keys.sorted().map { key -> LagBucket in
            let stats = Percentiles(buckets[key]!)
            return LagBucket(secondsFromStart: key, jobs: buckets[key]!.count, p50Ms: stats.p50, p99Ms: stats.p99)
        }
        let scenario =
            p.burstAt == nil
            ? "\(p.count) one-shot timers created at \(Int(p.rate))/s, due \(p.dueMin)–\(p.dueMax) after creation, payload \(p.payloadBytes) B, \(tenantNames.count) tenant(s), 1 executor"
            : "burst: \(p.count) `at` timers due at one instant, created at \(Int(p.rate))/s over \(tenantNames.count) tenant(s), payload \(p.payloadBytes) B, 1 executor"
        return Report(
            scenario: scenario,
            machine: "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB",
            created: state.due.count, createErrors: state.createErrors,
            createRatePerSecondAchieved: Double(state.due.count) / max(createSeconds, 0.001),
            createLatencyMs: Percentiles(state.createLatencies), received: received,
            lost: state.due.count - received, duplicates: duplicates, tenants: tenantNames.count,
            createdBeyondHorizon: p.horizon == nil ? nil : state.beyondHorizon,
            fireLagMs: Percentiles(state.lags.map { $0.lag * 1000 }),
            workStreamLagMs: Percentiles(state.streamLags.map { $0 * 1000 }),
            reportedLagMs: Percentiles(state.reportedLags.map { $0 * 1000 }),
            dispatchThroughputPerSecondPeak: Double(perSecond.values.max() ?? 0), lagOverTime: lagOverTime,
            cpuSecondsPer1000Timers: ProcessCPU.perThousand(from: cpuStart, to: cpuEnd, timers: state.due.count))
    }
}

extension SpineBenchmark.Report {
    public var text: String {
        func row(_ name: String, _ p: SpineBenchmark.Percentiles) -> String {
            String(format: "%@ p50 %.1f  p95 %.1f  p99 %.1f  max %.1f  mean %.1f ms", name, p.p50, p.p95, p.p99, p.max, p.mean)
        }
        var lines = [
            "scenario: \(scenario)", "machine:  \(machine)",
            String(format: "created:  %d (errors %d), achieved %.0f creates/s", created, createErrors, createRatePerSecondAchieved)
                + (createdBeyondHorizon.map { ", \($0) beyond the horizon (promoted by the Planner)" } ?? ""),
            row("create latency:", createLatencyMs),
            row("fire lag:      ", fireLagMs),
        ]
        if let stream = workStreamLagMs { lines.append(row("in work stream:", stream)) }
        if let reported = reportedLagMs { lines.append(row("reported done: ", reported)) }
        lines += [
            String(format: "received: %d   lost: %d   duplicates: %d   peak dispatch: %.0f jobs/s", received, lost, duplicates, dispatchThroughputPerSecondPeak),
            "lag over time (by due time, 5 s slices): second  jobs  p50 ms  p99 ms",
        ]
        for bucket in lagOverTime {
            lines.append(String(format: "  %4d  %6d  %7.1f  %7.1f", bucket.secondsFromStart, bucket.jobs, bucket.p50Ms, bucket.p99Ms))
        }
        if let cpu = cpuSecondsPer1000Timers, !cpu.isEmpty { lines.append(ProcessCPU.table(cpu)) }
        return lines.joined(separator: "\n")
    }
}

enum BenchLogger {
    static let logger: Logger = {
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        return logger
    }()
}
