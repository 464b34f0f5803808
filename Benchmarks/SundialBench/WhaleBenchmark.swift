import Foundation
import SundialClient
import SundialContract
import SundialExecutor
import SundialFairness
import SundialNATS
import SundialProto
import Synchronization

/// The fairness scenario (issue 5) against one running Sundial: executors capped at `capacity`
/// jobs/s; one whale with `whaleTimers` due within `window`; `standardTenants` established tenants
/// with a few timers each spread over the same window; `newTenants` tenants that first appear during
/// the flood and create 10–30 s delays throughout it. Measures lag per tenant class, the whale's
/// share of the capacity the others leave, and lost/duplicate jobs.
///
/// Scenarios (issue 10, capacity per queue):
/// - `one-queue`: the above, everything on one queue.
/// - `two-queues`: a second queue B with executors of `secondCapacity` jobs/s, its own whale
///   (`secondWhaleTimers`) and half of the standard and new tenants: each queue's tenants share
///   that queue's capacity.
/// - `dead-queue`: the one-queue flood plus a tenant with `deadQueueTimers` due throughout it
///   on a queue no executor consumes: nobody else may be slowed by it.
public struct WhaleBenchmark: Sendable {
    public struct Parameters: Sendable, Codable {
        public var capacity = 800.0
        public var whaleTimers = 200_000
        public var window: Double = 60
        public var standardTenants = 500
        public var standardTimersEach = 4
        public var newTenants = 50
        public var newTimersEach = 6
        /// Seconds between the start and the first due time: enough to create everything.
        public var lead: Double = 240
        public var createConcurrency = 64
        /// Give up waiting for stragglers this long after the whale would have drained.
        public var drainSlack: Double = 120
        /// Seconds between two timeline samples.
        public var timelineStep: Double = 5
        /// `one-queue`, `two-queues` or `dead-queue` (see the type's notes).
        public var scenario = "one-queue"
        public var secondCapacity = 200.0
        public var secondWhaleTimers = 20_000
        public var deadQueueTimers = 2_000
        public init() {}

        public static let scenarios = ["one-queue", "two-queues", "dead-queue"]
        var twoQueues: Bool { scenario == "two-queues" }
        var deadQueue: Bool { scenario == "dead-queue" }
        /// Timers created before the flood.
        public var createdBeforeFlood: Int {
            whaleTimers + standardTenants * standardTimersEach + (twoQueues ? secondWhaleTimers : 0)
                + (deadQueue ? deadQueueTimers : 0)
        }
    }

    public struct ModeReport: Sendable, Codable {
        public var mode: String
        public var created: Int
        public var createErrors: Int
        public var createSeconds: Double
        /// Seconds the flood started after the last whale create (negative: creation overran).
        public var creationMargin: Double
        public var lagSeconds: [String: SpineBenchmark.Percentiles]
        public var jobs: [String: Int]
        public var lost: Int
        public var duplicates: Int
        /// Whale jobs ÷ (capacity × busy period − other jobs), busy period = first due → last whale job.
        public var whaleShareOfLeftover: Double
        /// The same on queue B (`two-queues`).
        public var secondWhaleShareOfLeftover: Double?
        /// Jobs waiting on the dead queue at the end (`dead-queue`; nobody consumes it).
        public var deadQueueJobs: Int?
        public var busySeconds: Double
        /// Jobs/s the (first queue's) executors delivered over the busy period.
        public var executorRate: Double
        /// The governor's view at the end (fairness mode): tier of the whale, tenants per tier.
        public var whaleTier: String?
        public var planGeneration: UInt64?
        public var planCapacity: Double?
        /// Standard and new tenants' lag p95 (s) per 10 s of due time from the flood's start
        /// (key: slice start in seconds; negative = before the flood).
        public var smallTenantLagP95BySlice: [Int: Double]?
        /// Samples every `timelineStep` seconds from the flood's start: where the time went.
        public var timeline: [TimelinePoint]?
    }

    /// One sample of the system during the flood.
    public struct TimelinePoint: Sendable, Codable {
        /// Seconds since the flood started.
        public var t: Double
        /// Jobs received so far: all, and the whale's.
        public var received: Int
        public var whaleReceived: Int
        /// Messages left on the work stream (queued + in flight at the executors).
        public var workBacklog: Int?
        /// Fires delivered to the dispatchers and not yet acked (deferred ones included).
        public var fireAckPending: Int?
        /// The quota plan in force: capacity shared, the whale's bucket rate.
        public var planCapacity: Double?
        public var whaleRate: Double?
    }

    /// What a job was created as; the `B` kinds are on the second queue.
    enum Kind: String, CaseIterable {
        case whale = "bulk (whale)", standard, new
        case whaleB = "B bulk (whale)", standardB = "B standard", newB = "B new"

        var isWhale: Bool { self == .whale || self == .whaleB }
        var onSecondQueue: Bool { self == .whaleB || self == .standardB || self == .newB }
    }

    final class Ledger: Sendable {
        struct State {
            var expected: [String: Kind] = [:]
            var receipts: [String: Int] = [:]
            var lags: [Kind: [Double]] = [:]
            var lastWhaleAt: Date?
            var lastSecondWhaleAt: Date?
            var deadCreated = 0
            /// Jobs received from queue B (`two-queues`).
            var receivedSecond = 0
            /// (seconds from the flood start to the due time, lag) of standard and new jobs.
            var smallByDue: [(Double, Double)] = []
            var received = 0
            var createErrors = 0
            var firstError: String?
        }
        let state = Mutex(State())
        /// Set when the run is over: the executors and the timeline sampler stop.
        let done = Atomic<Bool>(false)
    }

    public let parameters: Parameters
    public let namespace: SundialNamespace

    public init(_ parameters: Parameters, namespace: SundialNamespace = .standard) {
        self.parameters = parameters
        self.namespace = namespace
    }

    public func run(natsURL: String, mode: String, progress: @escaping @Sendable (String) -> Void) async throws
        -> ModeReport
    {
        let p = parameters
        var options = NATSConnectionOptions(url: natsURL, name: "whale-bench-client")
        options.sendAsap = true
        let clientConnection = try await NATSConnection.connect(options, logger: BenchLogger.logger)
        var executorOptions = NATSConnectionOptions(url: natsURL, name: "whale-bench-executor")
        executorOptions.sendAsap = false
        let executorConnection = try await NATSConnection.connect(executorOptions, logger: BenchLogger.logger)
        var workerOptions = SundialWorker.Options()
        workerOptions.namespace = namespace
        workerOptions.maxAckPending = 20_000
        let queue = "whale-bench"
        let secondQueue = "whale-bench-b"
        let deadQueue = "whale-bench-nobody"
        let ledger = Ledger()
        let start = Date()
        let floodAt = start.addingTimeInterval(p.lead)

        // Executors capped at `capacity` jobs/s: fetch at most 1/20 s of work at a time, pace.
        func executor(queue: String, capacity: Double) async throws -> Task<Void, Never> {
            let worker = try await SundialWorker.connect(connection: executorConnection, queue: queue, options: workerOptions)
            return Task {
                let perFetch = max(1, Int(capacity / 20))
                var nextSlot = ContinuousClock.now
                while !ledger.done.load(ordering: .relaxed) {
                    guard let jobs = try? await worker.next(max: perFetch, maxWait: .milliseconds(100)), !jobs.isEmpty
                    else { continue }
                    let now = Date()
                    ledger.state.withLock { s in
                        for job in jobs {
                            s.receipts[job.timerID, default: 0] += 1
                            s.received += 1
                            if queue == secondQueue { s.receivedSecond += 1 }
                            guard s.receipts[job.timerID] == 1, let kind = s.expected[job.timerID] else { continue }
                            s.lags[kind, default: []].append(now.timeIntervalSince(job.scheduledAt))
                            if kind == .whale {
                                s.lastWhaleAt = now
                            } else if kind == .whaleB {
                                s.lastSecondWhaleAt = now
                            } else {
                                s.smallByDue.append((job.scheduledAt.timeIntervalSince(floodAt), now.timeIntervalSince(job.scheduledAt)))
                            }
                        }
                    }
                    try? await worker.complete(jobs)
                    nextSlot = max(nextSlot, ContinuousClock.now - .milliseconds(100)) + .seconds(Double(jobs.count) / capacity)
                    try? await Task.sleep(until: nextSlot, clock: .continuous)
                }
            }
        }
        var executors = [try await executor(queue: queue, capacity: p.capacity)]
        if p.twoQueues { executors.append(try await executor(queue: secondQueue, capacity: p.secondCapacity)) }

        func create(_ tenant: String, _ kind: Kind?, due: Date) async {
            let client = TimersClient(connection: clientConnection, tenant: tenant, namespace: namespace, timeout: .seconds(30))
            var request = Sundial_V1_CreateTimerRequest()
            request.queue = kind == nil ? deadQueue : kind!.onSecondQueue ? secondQueue : queue
            request.payload = Data("x".utf8)
            let delay = max(0.05, due.timeIntervalSinceNow)
            request.schedule.delay.duration = Google_Protobuf_Duration(
                seconds: Int64(delay.rounded(.down)), nanos: Int32((delay - delay.rounded(.down)) * 1e9))
            do {
                let response = try await client.create(request)
                if let kind {
                    ledger.state.withLock { $0.expected[response.timer.id] = kind }
                } else {
                    ledger.state.withLock { $0.deadCreated += 1 }
                }
            } catch {
                ledger.state.withLock { s in
                    s.createErrors += 1
                    if s.firstError == nil { s.firstError = "\(error)" }
                }
            }
        }
        /// Runs `count` creates `concurrency` at a time.
        func createMany(_ count: Int, _ make: @escaping @Sendable (Int) -> (String, Kind?, Date)) async {
            await withTaskGroup(of: Void.self) { group in
                for lane in 0..<p.createConcurrency {
                    group.addTask {
                        for index in stride(from: lane, to: count, by: p.createConcurrency) {
                            let (tenant, kind, due) = make(index)
                            await create(tenant, kind, due: due)
                            if index > 0, index % 20_000 == 0 { progress("  \(index) created") }
                        }
                    }
                }
            }
        }

        progress("[\(mode)] \(p.scenario): creating \(p.standardTenants)×\(p.standardTimersEach) standard timers, then \(p.whaleTimers) whale timers, all due in a \(Int(p.window)) s window starting in \(Int(p.lead)) s")
        let window = p.window
        let twoQueues = p.twoQueues
        await createMany(p.standardTenants * p.standardTimersEach) { i in
            let tenant = i % p.standardTenants
            return ("std\(tenant)", twoQueues && tenant % 2 == 1 ? .standardB : .standard,
                    floodAt.addingTimeInterval(Double.random(in: 0..<window)))
        }
        if p.deadQueue {
            // Due throughout the flood, from 10 s before it: a typo in a queue name.
            progress("[\(mode)] creating \(p.deadQueueTimers) timers on a queue nobody consumes")
            await createMany(p.deadQueueTimers) { _ in
                ("typo", nil, floodAt.addingTimeInterval(Double.random(in: -10..<window)))
            }
        }
        if p.twoQueues {
            progress("[\(mode)] creating \(p.secondWhaleTimers) whale timers on queue B (executors \(Int(p.secondCapacity)) jobs/s)")
            await createMany(p.secondWhaleTimers) { _ in
                ("whale-b", .whaleB, floodAt.addingTimeInterval(Double.random(in: 0..<window)))
            }
        }
        await createMany(p.whaleTimers) { _ in ("whale", .whale, floodAt.addingTimeInterval(Double.random(in: 0..<window))) }
        let createSeconds = Date().timeIntervalSince(start)
        let margin = floodAt.timeIntervalSinceNow
        progress(String(format: "[\(mode)] created in %.0f s; flood starts in %.0f s", createSeconds, margin))

        // Sampled from the flood's start (the new tenants below arrive during it).
        let timeline = Task { await sampleTimeline(connection: clientConnection, ledger: ledger, floodAt: floodAt) }
        // New tenants appear from 10 s before the flood to its end, each trying 10–30 s delays.
        let newStart = floodAt.addingTimeInterval(-10)
        if newStart > Date() { try await Task.sleep(for: .seconds(newStart.timeIntervalSinceNow)) }
        let newTotal = p.newTenants * p.newTimersEach
        let span = window + 10
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<newTotal {
                let at = newStart.addingTimeInterval(span * Double(index) / Double(max(1, newTotal)))
                if at > Date() { try? await Task.sleep(for: .seconds(at.timeIntervalSinceNow)) }
                let tenant = index % p.newTenants
                group.addTask {
                    await create(
                        "new\(tenant)", twoQueues && tenant % 2 == 1 ? .newB : .new,
                        due: Date().addingTimeInterval(Double.random(in: 10...30)))
                }
            }
        }
        progress("[\(mode)] flood under way; waiting for every job")

        let expectedTotal = ledger.state.withLock { $0.expected.count }
        let drainBy = floodAt.addingTimeInterval(
            window + max(Double(p.whaleTimers) / p.capacity, p.twoQueues ? Double(p.secondWhaleTimers) / p.secondCapacity : 0) * 1.2
                + p.drainSlack)
        var lastReport = Date()
        var lastGot = 0
        var lastProgress = Date()
        // Past the planned drain time, keep waiting while jobs still arrive (a slower machine or
        // build), so "lost" means never delivered, not late; 10 minutes at most.
        while Date() < drainBy || (Date().timeIntervalSince(lastProgress) < 30 && Date() < drainBy.addingTimeInterval(600)) {
            let got = ledger.state.withLock { s in s.expected.keys.filter { s.receipts[$0] != nil }.count }
            if got >= expectedTotal { break }
            if got > lastGot {
                lastGot = got
                lastProgress = Date()
            }
            if Date().timeIntervalSince(lastReport) >= 20 {
                progress("[\(mode)]   \(got)/\(expectedTotal) jobs received")
                lastReport = Date()
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        try await Task.sleep(for: .seconds(2))  // late duplicates
        ledger.done.store(true, ordering: .relaxed)
        for executor in executors { await executor.value }
        let points = await timeline.value
        var deadQueueJobs: Int?
        if p.deadQueue {
            let counts = try? await clientConnection.messageCounts(
                stream: namespace.workStream, subjects: namespace.work(queue: deadQueue))
            deadQueueJobs = Int(clamping: counts?.values.reduce(0, +) ?? 0)
            progress("[\(mode)] dead queue: \(ledger.state.withLock { $0.deadCreated }) timers created, \(deadQueueJobs ?? 0) jobs waiting in its work queue")
        }

        var whaleTier: String?
        var generation: UInt64?
        var planCapacity: Double?
        if let stored = try? await KeyValueBucket(name: namespace.quotasBucket, connection: clientConnection)
            .get(SundialNamespace.quotaPlanKey), let plan = try? FairnessPlan(jsonBytes: stored.value)
        {
            whaleTier = plan.plan(for: queue)?.tenants["whale"]?.tier.rawValue
            generation = plan.generation
            planCapacity = plan.plan(for: queue)?.capacity
        }
        await clientConnection.close()
        await executorConnection.close()

        let s = ledger.state.withLock { $0 }
        if let e = s.firstError { progress("[\(mode)] first create error: \(e)") }
        let receivedUnique = s.expected.keys.filter { s.receipts[$0] != nil }.count
        let duplicates = s.receipts.values.reduce(0) { $0 + max(0, $1 - 1) }
        let busy = max(1, (s.lastWhaleAt ?? Date()).timeIntervalSince(floodAt))
        let whaleJobs = s.lags[.whale]?.count ?? 0
        let others = (s.lags[.standard]?.count ?? 0) + (s.lags[.new]?.count ?? 0)
        var secondShare: Double?
        if p.twoQueues {
            let busyB = max(1, (s.lastSecondWhaleAt ?? Date()).timeIntervalSince(floodAt))
            let othersB = (s.lags[.standardB]?.count ?? 0) + (s.lags[.newB]?.count ?? 0)
            secondShare = Double(s.lags[.whaleB]?.count ?? 0) / max(1, p.secondCapacity * busyB - Double(othersB))
        }
        var lags: [String: SpineBenchmark.Percentiles] = [:]
        var jobs: [String: Int] = [:]
        for kind in Kind.allCases where !kind.onSecondQueue || p.twoQueues {
            lags[kind.rawValue] = SpineBenchmark.Percentiles(s.lags[kind] ?? [])
            jobs[kind.rawValue] = s.lags[kind]?.count ?? 0
        }
        var slices: [Int: [Double]] = [:]
        for (due, lag) in s.smallByDue { slices[Int((due / 10).rounded(.down)) * 10, default: []].append(lag) }
        return ModeReport(
            mode: mode, created: s.expected.count, createErrors: s.createErrors, createSeconds: createSeconds,
            creationMargin: margin, lagSeconds: lags, jobs: jobs, lost: s.expected.count - receivedUnique,
            duplicates: duplicates,
            whaleShareOfLeftover: Double(whaleJobs) / max(1, p.capacity * busy - Double(others)),
            secondWhaleShareOfLeftover: secondShare, deadQueueJobs: deadQueueJobs, busySeconds: busy,
            executorRate: Double(s.received - s.receivedSecond) / busy, whaleTier: whaleTier, planGeneration: generation,
            planCapacity: planCapacity,
            smallTenantLagP95BySlice: slices.mapValues { SpineBenchmark.Percentiles($0).p95 }, timeline: points)
    }

    /// Samples the work stream, the dispatcher consumer and the quota plan every
    /// `timelineStep` seconds until the run is done.
    func sampleTimeline(connection: NATSConnection, ledger: Ledger, floodAt: Date) async
        -> [TimelinePoint]
    {
        var points: [TimelinePoint] = []
        let plans = KeyValueBucket(name: namespace.quotasBucket, connection: connection)
        var next = max(floodAt, Date())
        while !ledger.done.load(ordering: .relaxed) {
            if next > Date() { try? await Task.sleep(for: .seconds(min(next.timeIntervalSinceNow, 1))) }
            if next > Date() { continue }
            next = next.addingTimeInterval(parameters.timelineStep)
            let (received, whale) = ledger.state.withLock { ($0.received, $0.lags[.whale]?.count ?? 0) }
            var point = TimelinePoint(t: Date().timeIntervalSince(floodAt), received: received, whaleReceived: whale)
            if let info = try? await connection.streamInfo(namespace.workStream),
                let state = info["state"] as? [String: Any]
            {
                point.workBacklog = (state["messages"] as? NSNumber)?.intValue
            }
            if let info = try? await connection.consumerInfo(stream: namespace.fireStream, durable: namespace.dispatcherDurable) {
                point.fireAckPending = (info["num_ack_pending"] as? NSNumber)?.intValue
            }
            if let stored = try? await plans.get(SundialNamespace.quotaPlanKey), let plan = try? FairnessPlan(jsonBytes: stored.value),
                let queuePlan = plan.plan(for: "whale-bench")
            {
                point.planCapacity = queuePlan.capacity
                point.whaleRate = queuePlan.tenants["whale"]?.rate
            }
            points.append(point)
        }
        return points
    }

    /// Both modes side by side.
    public static func table(_ reports: [ModeReport], parameters p: Parameters) -> String {
        var lines: [String] = []
        lines.append(
            "whale benchmark (\(p.scenario)): capacity \(Int(p.capacity)) jobs/s; whale \(p.whaleTimers) timers due within \(Int(p.window)) s; "
                + "\(p.standardTenants) standard tenants × \(p.standardTimersEach); \(p.newTenants) new tenants × \(p.newTimersEach) (10–30 s delays)")
        if p.twoQueues {
            lines.append(
                "queue B: executors \(Int(p.secondCapacity)) jobs/s, whale B \(p.secondWhaleTimers) timers in the same window, "
                    + "every odd-numbered standard and new tenant (the `B` rows)")
        }
        if p.deadQueue {
            lines.append("dead queue: \(p.deadQueueTimers) timers of one more tenant due throughout the flood on a queue nobody consumes")
        }
        lines.append(
            "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB; all components on this box")
        let header = "".padding(toLength: 34, withPad: " ", startingAt: 0)
            + reports.map { $0.mode.padding(toLength: 36, withPad: " ", startingAt: 0) }.joined()
        lines.append(header)
        func row(_ label: String, _ value: (ModeReport) -> String) {
            lines.append(
                label.padding(toLength: 34, withPad: " ", startingAt: 0)
                    + reports.map { value($0).padding(toLength: 36, withPad: " ", startingAt: 0) }.joined())
        }
        for kind in Kind.allCases where reports.contains(where: { $0.lagSeconds[kind.rawValue] != nil }) {
            row("lag \(kind.rawValue) p50/p95/p99/max s") { r in
                guard let l = r.lagSeconds[kind.rawValue] else { return "—" }
                return String(format: "%.2f / %.2f / %.2f / %.1f", l.p50, l.p95, l.p99, l.max)
            }
        }
        row("jobs whale / standard / new") { r in
            "\(r.jobs[Kind.whale.rawValue] ?? 0) / \(r.jobs[Kind.standard.rawValue] ?? 0) / \(r.jobs[Kind.new.rawValue] ?? 0)"
        }
        if p.twoQueues {
            row("jobs B whale / standard / new") { r in
                "\(r.jobs[Kind.whaleB.rawValue] ?? 0) / \(r.jobs[Kind.standardB.rawValue] ?? 0) / \(r.jobs[Kind.newB.rawValue] ?? 0)"
            }
        }
        row("whale share of leftover (nominal C)") { String(format: "%.1f %%", $0.whaleShareOfLeftover * 100) }
        if p.twoQueues {
            row("B whale share of leftover (nominal)") { r in
                r.secondWhaleShareOfLeftover.map { String(format: "%.1f %%", $0 * 100) } ?? "—"
            }
        }
        if p.deadQueue { row("jobs waiting on the dead queue") { r in r.deadQueueJobs.map(String.init) ?? "—" } }
        // FIFO keeps the executors saturated, so its throughput is what they can really do
        // (pacing and result publishing keep it a little under the nominal C).
        if let fifo = reports.first(where: { $0.mode.hasPrefix("FIFO") }) {
            row("… of leftover at FIFO's measured C") { r in
                let whaleJobs = Double(r.jobs[Kind.whale.rawValue] ?? 0)
                let others = Double((r.jobs[Kind.standard.rawValue] ?? 0) + (r.jobs[Kind.new.rawValue] ?? 0))
                let share = whaleJobs / max(1, fifo.executorRate * r.busySeconds - others)
                return String(format: "%.1f %% (C ≈ %.0f/s)", min(share, 1) * 100, fifo.executorRate)
            }
        }
        row("busy period (flood → last whale)") { String(format: "%.0f s (%.0f jobs/s)", $0.busySeconds, $0.executorRate) }
        row("lost / duplicates") { "\($0.lost) / \($0.duplicates)" }
        row("created (errors), create time") { String(format: "%d (%d), %.0f s", $0.created, $0.createErrors, $0.createSeconds) }
        row("flood began after creation by") { String(format: "%.0f s", $0.creationMargin) }
        row("governor: whale tier, plan gen") { r in
            r.planGeneration.map { "\(r.whaleTier ?? "—"), \($0), C≈\(Int(r.planCapacity ?? 0))" } ?? "no governor (FIFO)"
        }
        for r in reports {
            guard let slices = r.smallTenantLagP95BySlice, !slices.isEmpty else { continue }
            lines.append(
                "\(r.mode): standard+new lag p95 by due time (s from flood start): "
                    + slices.keys.sorted().map { String(format: "%d…%d: %.1f", $0, $0 + 10, slices[$0]!) }.joined(separator: " · "))
        }
        for r in reports {
            guard let timeline = r.timeline, timeline.count > 1 else { continue }
            lines.append("\(r.mode): timeline (t s: whale jobs/s since previous · work backlog · fires pending · plan C / whale rate)")
            var row: [String] = []
            for (previous, point) in zip(timeline, timeline.dropFirst()) {
                let rate = Double(point.whaleReceived - previous.whaleReceived) / max(point.t - previous.t, 1e-3)
                let plan = point.planCapacity.map { c in String(format: "%.0f/%.0f", c, point.whaleRate ?? 0) } ?? "—"
                row.append(String(format: "%4.0f: %4.0f · %5d · %6d · %@", point.t, rate, point.workBacklog ?? -1, point.fireAckPending ?? -1, plan))
                if row.count == 3 {
                    lines.append("  " + row.joined(separator: "   "))
                    row = []
                }
            }
            if !row.isEmpty { lines.append("  " + row.joined(separator: "   ")) }
        }
        return lines.joined(separator: "\n")
    }
}
