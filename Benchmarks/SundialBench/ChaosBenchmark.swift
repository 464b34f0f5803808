import Foundation
import SundialClient
import SundialContract
import SundialExecutor
import SundialNATS
import SundialProto
import Synchronization

/// The load of `sundial bench chaos`: one-shot timers created at a steady rate over several
/// tenants (each create retried with its idempotency key, as a client would) and one executor
/// receiving every job, while the command injects faults. A ledger of acknowledged creates
/// against received jobs gives lost and duplicates; each create attempt (at its send time) and
/// each job (at its due time) is a sample, good or bad, from which `ChaosRecovery` computes how
/// long each fault hurt.
public final class ChaosLoad: Sendable {
    public struct Parameters: Sendable, Codable {
        public var rate = 1000.0
        public var tenants = 4
        /// Due times spread over this range of seconds after creation.
        public var dueMin = 5.0
        public var dueMax = 20.0
        /// A job received later than this after its due time is a bad sample.
        public var lateThreshold = 1.0
        public var createTimeout = 5.0
        /// Attempts per create (same idempotency key) before it counts as abandoned.
        public var createAttempts = 4
        public var maxInFlight = 1024
        public var payloadBytes = 64
        public init() {}
    }

    struct State {
        var due: [String: Date] = [:]
        var receipts: [String: Int] = [:]
        /// Seconds from the start: create attempts at their send time.
        var createSamples: [ChaosRecovery.Sample] = []
        /// Seconds from the start (due time) and lag of each first receipt.
        var lags: [(due: Double, lag: Double)] = []
        /// Due time and how late the job was stored in the work stream (dispatched), for
        /// telling a stall before the work stream (firing, dispatching) from one after it.
        var storedLags: [(due: Double, lag: Double)] = []
        var createLatencies: [Double] = []
        var attemptsFailed = 0
        var abandoned = 0
        var firstError: String?
        var created = 0
    }

    public let parameters: Parameters
    public let start = Date()
    let queue = "chaos-\(UInt32.random(in: 0...UInt32.max))"
    let state = Mutex(State())
    let creating = Atomic<Bool>(true)
    let receiving = Atomic<Bool>(true)
    let tasks = Mutex<[Task<Void, Never>]>([])
    let connections: [NATSConnection]
    let cpuStart: [String: Double]
    let deferrals = DispatcherDeferralSampler()
    /// Samples the Dispatchers' deferrals until receiving stops.
    let sampler = Mutex<Task<Void, Never>?>(nil)

    /// Connects a client and an executor to `natsURL` (a server list for a cluster) and starts
    /// creating and receiving.
    public static func start(natsURL: String, parameters: Parameters) async throws -> ChaosLoad {
        var clientOptions = NATSConnectionOptions(url: natsURL, name: "sundial-chaos-client")
        clientOptions.sendAsap = true
        let client = try await NATSConnection.connect(clientOptions, logger: BenchLogger.logger)
        let executor = try await NATSConnection.connect(
            NATSConnectionOptions(url: natsURL, name: "sundial-chaos-executor"), logger: BenchLogger.logger)
        let load = ChaosLoad(parameters: parameters, connections: [client, executor])
        var workerOptions = SundialWorker.Options()
        workerOptions.maxAckPending = 20_000
        workerOptions.streamReplicas = 3
        let worker = try await SundialWorker.connect(connection: executor, queue: load.queue, options: workerOptions)
        let clients = (0..<max(1, parameters.tenants)).map {
            TimersClient(connection: client, tenant: "chaos-\($0)", timeout: .seconds(parameters.createTimeout))
        }
        let receiver = Task { await load.receive(worker) }
        let creator = Task { await load.create(clients) }
        let sampler = Task { [start = load.start] in
            await load.deferrals.run(client, since: start) { load.receiving.load(ordering: .relaxed) }
        }
        load.tasks.withLock { $0 = [receiver, creator] }
        load.sampler.withLock { $0 = sampler }
        return load
    }

    init(parameters: Parameters, connections: [NATSConnection]) {
        self.parameters = parameters
        self.connections = connections
        self.cpuStart = ProcessCPU.snapshot()
    }

    /// Seconds since the load started.
    public var elapsed: Double { Date().timeIntervalSince(start) }

    /// Acknowledged creates so far.
    public var created: Int { state.withLock { $0.created } }

    private func receive(_ worker: SundialWorker) async {
        while receiving.load(ordering: .relaxed) {
            // A fetch fails while the executor's server or the consumer's leader moves: retry.
            guard let jobs = try? await worker.next(max: 500, maxWait: .milliseconds(200)), !jobs.isEmpty else { continue }
            let now = Date()
            state.withLock { s in
                for job in jobs {
                    s.receipts[job.timerID, default: 0] += 1
                    if s.receipts[job.timerID] == 1 {
                        let due = job.scheduledAt.timeIntervalSince(start)
                        s.lags.append((due, now.timeIntervalSince(job.scheduledAt)))
                        if let stored = job.message.metadata?.timestampNanos {
                            s.storedLags.append((due, Double(stored) / 1e9 - job.scheduledAt.timeIntervalSince1970))
                        }
                    }
                }
            }
            // Unacked jobs come again after the ack wait: a failed ack is retried by redelivery.
            _ = try? await worker.complete(jobs)
        }
    }

    private func create(_ clients: [TimersClient]) async {
        let p = parameters
        let clock = ContinuousClock()
        let begin = clock.now
        let payload = Data(repeating: 0x61, count: p.payloadBytes)
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            var index = 0
            while creating.load(ordering: .relaxed) {
                try? await Task.sleep(until: begin + .seconds(Double(index) / p.rate), clock: clock)
                if inFlight >= p.maxInFlight {
                    await group.next()
                    inFlight -= 1
                }
                inFlight += 1
                var request = Sundial_V1_CreateTimerRequest()
                request.queue = queue
                request.payload = payload
                request.idempotencyKey = "chaos-\(index)"
                let delay = p.dueMin + (p.dueMax - p.dueMin) * Double.random(in: 0..<1)
                request.schedule.delay.duration = Google_Protobuf_Duration(
                    seconds: Int64(delay), nanos: Int32((delay - delay.rounded(.down)) * 1e9))
                let client = clients[index % clients.count]
                index += 1
                group.addTask { await self.createOne(request, client: client) }
            }
        }
    }

    private func createOne(_ request: Sundial_V1_CreateTimerRequest, client: TimersClient) async {
        let first = Date()
        for attempt in 1...parameters.createAttempts {
            let sent = Date()
            do {
                let response = try await client.create(request)
                let done = Date()
                state.withLock { s in
                    s.createSamples.append(.init(at: sent.timeIntervalSince(start), good: true))
                    s.due[response.timer.id] = response.timer.nextFireAt.date
                    s.createLatencies.append(done.timeIntervalSince(first) * 1000)
                    s.created += 1
                }
                return
            } catch {
                state.withLock { s in
                    s.createSamples.append(.init(at: sent.timeIntervalSince(start), good: false))
                    s.attemptsFailed += 1
                    if s.firstError == nil { s.firstError = "\(error)" }
                    if attempt == parameters.createAttempts { s.abandoned += 1 }
                }
                // Back off (1 s, 2 s, …) unless the attempt already took its timeout.
                if attempt < parameters.createAttempts, Date().timeIntervalSince(sent) < 1 {
                    try? await Task.sleep(for: .seconds(Double(attempt)))
                }
            }
        }
    }

    /// Stops creating (creates in flight finish).
    public func stopCreating() async {
        creating.store(false, ordering: .relaxed)
        let creator = tasks.withLock { $0.last }
        await creator?.value
    }

    /// Waits until every acknowledged timer was received or `timeout` passed after the last
    /// due time; then a short tail for late duplicates, and stops receiving.
    public func drain(timeout: Double, progress: @Sendable (String) -> Void) async {
        let lastDue = state.withLock { $0.due.values.max() } ?? Date()
        let deadline = lastDue.addingTimeInterval(timeout)
        var missing = 0
        while Date() < deadline {
            missing = state.withLock { s in s.due.keys.reduce(0) { $0 + (s.receipts[$1] == nil ? 1 : 0) } }
            if missing == 0 && Date() > lastDue { break }
            try? await Task.sleep(for: .seconds(1))
        }
        progress("drained: \(missing) acknowledged timers not received")
        try? await Task.sleep(for: .seconds(3))
        receiving.store(false, ordering: .relaxed)
        let receiver = tasks.withLock { $0.first }
        await receiver?.value
        await sampler.withLock { $0 }?.value
        for connection in connections { await connection.close() }
    }

    /// One injected fault: what, when it began, when the command undid it (restart), and
    /// where its observation window ends (the next fault).
    public struct Fault: Sendable, Codable {
        public var name: String
        public var at: Double
        public var undoneAt: Double
        public var windowEnd: Double
        public init(name: String, at: Double, undoneAt: Double, windowEnd: Double) {
            self.name = name
            self.at = at
            self.undoneAt = undoneAt
            self.windowEnd = windowEnd
        }
    }

    public struct FaultReport: Sendable, Codable {
        public var name: String
        public var atSeconds: Double
        public var downSeconds: Double
        public var createAttemptsFailed: Int
        /// Largest lag of a job due in the window, received or not (lost: until the end).
        public var maxLagSeconds: Double
        /// Jobs due in the window, and those of them later than the late threshold.
        public var jobsDue: Int
        public var lateJobs: Int
        /// Largest lag at which a received job due in the window was stored in the work stream:
        /// near `maxLagSeconds`, the delay was before dispatch (firing, the Dispatcher); far
        /// below it, between the work stream and the executor.
        public var maxWorkStreamLagSeconds: Double
        /// From the fault until creates succeed and jobs arrive within the late threshold
        /// again for good; nil: not within the window.
        public var recoverySeconds: Double?
        /// Fires the Dispatchers deferred for fairness during the window, and the most held
        /// deferred at once (from their `$SRV.STATS`, sampled each second); nil: no sample.
        public var fairnessDeferrals: Int?
        public var maxDeferredAtOnce: Int?
    }

    public struct Report: Sendable, Codable {
        public var parameters: Parameters
        public var machine: String
        public var seconds: Double
        public var created: Int
        public var achievedCreatesPerSecond: Double
        public var createAttemptsFailed: Int
        public var createsAbandoned: Int
        public var createLatencyMsP50: Double
        public var createLatencyMsP99: Double
        public var received: Int
        public var lost: Int
        public var duplicates: Int
        /// Received jobs whose create was never acknowledged (the reply was lost).
        public var receivedUnacknowledged: Int
        public var lagSecondsP50: Double
        public var lagSecondsP99: Double
        public var maxLagSeconds: Double
        public var faults: [FaultReport]
        /// By due time, 10-second slices: jobs due, not received, lag p50 and max.
        public var lagOverTime: [Slice]
        public var firstCreateError: String?
        public var cpuSecondsPer1000Timers: [String: Double]
        /// Dispatcher stats samples taken, the most Dispatchers that answered one, and the
        /// fairness deferrals over the run (the faults' columns come from these).
        public var dispatcherStatsSamples: Int
        public var dispatchersAnswering: Int
        public var fairnessDeferrals: Int
    }

    public struct Slice: Sendable, Codable {
        public var fromSecond: Int
        public var due: Int
        public var missing: Int
        public var lagP50: Double
        public var lagMax: Double
    }

    public func report(faults: [Fault]) -> Report {
        let cpuEnd = ProcessCPU.snapshot()
        let s = state.withLock { $0 }
        let end = elapsed
        var lostSamples: [(due: Double, lag: Double)] = []
        for (id, due) in s.due where s.receipts[id] == nil {
            let dueAt = due.timeIntervalSince(start)
            lostSamples.append((dueAt, end - dueAt))
        }
        let jobs = s.lags + lostSamples
        let samples = s.createSamples + jobs.map { ChaosRecovery.Sample(at: $0.due, good: $0.lag <= parameters.lateThreshold) }
        let deferralSamples = deferrals.samples.withLock { $0 }
        let faultReports = faults.map { fault in
            let window = jobs.filter { $0.due >= fault.at && $0.due < fault.windowEnd }
            let sampled = deferralSamples.filter { $0.at >= fault.at && $0.at < fault.windowEnd }
            let before = deferralSamples.last { $0.at < fault.at }
            return FaultReport(
                name: fault.name, atSeconds: fault.at, downSeconds: fault.undoneAt - fault.at,
                createAttemptsFailed: s.createSamples.filter { !$0.good && $0.at >= fault.at && $0.at < fault.windowEnd }.count,
                maxLagSeconds: window.map(\.lag).max() ?? 0, jobsDue: window.count,
                lateJobs: window.filter { $0.lag > parameters.lateThreshold }.count,
                maxWorkStreamLagSeconds: s.storedLags.filter { $0.due >= fault.at && $0.due < fault.windowEnd }.map(\.lag).max() ?? 0,
                recoverySeconds: ChaosRecovery.seconds(faultAt: fault.at, windowEnd: fault.windowEnd, samples: samples),
                fairnessDeferrals: sampled.last.map { $0.total - (before?.total ?? 0) },
                maxDeferredAtOnce: sampled.map(\.deferredNow).max())
        }
        let received = s.due.keys.reduce(0) { $0 + (s.receipts[$1] == nil ? 0 : 1) }
        let lags = s.lags.map(\.lag).sorted()
        let latencies = s.createLatencies.sorted()
        func at(_ sorted: [Double], _ q: Double) -> Double {
            sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
        }
        let creatingSeconds = s.createSamples.map(\.at).max() ?? 1
        var slices: [Int: (lags: [Double], missing: Int)] = [:]
        for job in s.lags { slices[Int(job.due / 10) * 10, default: ([], 0)].lags.append(job.lag) }
        for job in lostSamples { slices[Int(job.due / 10) * 10, default: ([], 0)].missing += 1 }
        let lagOverTime = slices.keys.sorted().map { key in
            let lags = slices[key]!.lags.sorted()
            return Slice(
                fromSecond: key, due: lags.count + slices[key]!.missing, missing: slices[key]!.missing,
                lagP50: at(lags, 0.5), lagMax: lags.last ?? 0)
        }
        return Report(
            parameters: parameters,
            machine: "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB",
            seconds: end, created: s.due.count, achievedCreatesPerSecond: Double(s.due.count) / max(creatingSeconds, 1),
            createAttemptsFailed: s.attemptsFailed, createsAbandoned: s.abandoned,
            createLatencyMsP50: at(latencies, 0.5), createLatencyMsP99: at(latencies, 0.99),
            received: received, lost: s.due.count - received,
            duplicates: s.receipts.values.reduce(0) { $0 + max(0, $1 - 1) },
            receivedUnacknowledged: s.receipts.keys.reduce(0) { $0 + (s.due[$1] == nil ? 1 : 0) },
            lagSecondsP50: at(lags, 0.5), lagSecondsP99: at(lags, 0.99), maxLagSeconds: jobs.map(\.lag).max() ?? 0,
            faults: faultReports, lagOverTime: lagOverTime, firstCreateError: s.firstError,
            cpuSecondsPer1000Timers: ProcessCPU.perThousand(from: cpuStart, to: cpuEnd, timers: s.due.count),
            dispatcherStatsSamples: deferralSamples.count, dispatchersAnswering: deferralSamples.map(\.instances).max() ?? 0,
            fairnessDeferrals: deferralSamples.last?.total ?? 0)
    }
}

/// How long a fault hurt, from good and bad samples (pure).
public enum ChaosRecovery {
    public struct Sample: Sendable, Hashable {
        /// Seconds from the start of the run.
        public var at: Double
        public var good: Bool
        public init(at: Double, good: Bool) {
            self.at = at
            self.good = good
        }
    }

    /// Seconds from `faultAt` to the last bad sample in [faultAt, windowEnd) — 0 when there
    /// is none; nil when the window ends less than `settle` seconds after it (not seen to
    /// recover) or no good sample follows it in the window.
    public static func seconds(faultAt: Double, windowEnd: Double, settle: Double = 3, samples: [Sample]) -> Double? {
        let window = samples.filter { $0.at >= faultAt && $0.at < windowEnd }
        guard let lastBad = window.filter({ !$0.good }).map(\.at).max() else { return 0 }
        guard windowEnd - lastBad >= settle, window.contains(where: { $0.good && $0.at > lastBad }) else { return nil }
        return lastBad - faultAt
    }
}

extension ChaosLoad.Report {
    public var text: String {
        var lines = [
            "machine: \(machine); \(String(format: "%.0f", seconds)) s; offered \(Int(parameters.rate)) creates/s over \(parameters.tenants) tenants, due \(Int(parameters.dueMin))–\(Int(parameters.dueMax)) s out",
            String(format: "created %d (achieved %.0f/s), create attempts failed %d, abandoned %d, create p50 %.1f ms p99 %.1f ms",
                created, achievedCreatesPerSecond, createAttemptsFailed, createsAbandoned, createLatencyMsP50, createLatencyMsP99),
            String(format: "received %d   LOST %d   duplicates %d   received unacknowledged %d", received, lost, duplicates, receivedUnacknowledged),
            String(format: "lag p50 %.2f s  p99 %.2f s  max %.1f s", lagSecondsP50, lagSecondsP99, maxLagSeconds),
            "| fault | at s | down s | create attempts failed | jobs due (late > 1 s) | max lag s (in work stream) | time to recover s | fairness deferrals (most at once) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for fault in faults {
            let deferrals = fault.fairnessDeferrals.map { "\($0) (\(fault.maxDeferredAtOnce ?? 0))" } ?? "not sampled"
            lines.append(String(format: "| %@ | %.0f | %.0f | %d | %d (%d) | %.1f (%.1f) | %@ | %@ |", fault.name, fault.atSeconds, fault.downSeconds,
                fault.createAttemptsFailed, fault.jobsDue, fault.lateJobs, fault.maxLagSeconds, fault.maxWorkStreamLagSeconds,
                fault.recoverySeconds.map { String(format: "%.1f", $0) } ?? "not within window", deferrals))
        }
        lines.append("lag by due time (10 s slices): second  due  not received  p50 s  max s")
        for slice in lagOverTime {
            lines.append(String(format: "  %4d  %6d  %6d  %6.2f  %6.1f", slice.fromSecond, slice.due, slice.missing, slice.lagP50, slice.lagMax))
        }
        if let firstCreateError { lines.append("first create error: \(firstCreateError)") }
        lines.append(
            "fairness deferrals in all: \(fairnessDeferrals) (dispatcher stats sampled \(dispatcherStatsSamples) times, "
                + "up to \(dispatchersAnswering) dispatchers answering)")
        if !cpuSecondsPer1000Timers.isEmpty { lines.append(ProcessCPU.table(cpuSecondsPer1000Timers)) }
        return lines.joined(separator: "\n")
    }
}
