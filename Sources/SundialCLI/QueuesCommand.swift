import ArgumentParser
import Foundation
import SundialContract
import SundialFairness
import SundialNATS
import SundialSchedule

/// `sundial queues status | pause | resume | configure`: work queues as operators see them —
/// capacity, circuit breakers, held tenants — holding a queue by hand (the same holding path
/// as an open breaker: due fires wait in Sundial, unclaimed, until it is resumed), and a
/// queue's own circuit breaker settings.
struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues", abstract: "Work queues: status (capacity, breakers), pause and resume by hand.",
        subcommands: [Status.self, Pause.self, Resume.self, Configure.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the queues in the plan in force with their capacity, breaker state and held tenants.")

        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let nats = try await connection.connect(name: "sundial-queues-status", as: .service)
            defer { Task { await nats.close() } }
            let bucket = KeyValueBucket(name: SundialNamespace.standard.quotasBucket, connection: nats)
            let plan = try await (try? bucket.get(SundialNamespace.quotaPlanKey)).flatMap { try FairnessPlan(jsonBytes: $0.value) }
            let paused = try await (try? bucket.get(SundialNamespace.pausedQueuesKey)).flatMap {
                $0.value.isEmpty ? nil : try QueuePauses(jsonBytes: $0.value, isValidQueue: SubjectToken.isValidQueue)
            }
            let settings = try await (try? bucket.get(SundialNamespace.breakerSettingsKey)).flatMap {
                $0.value.isEmpty ? nil : try QueueBreakerSettings(jsonBytes: $0.value, isValidQueue: SubjectToken.isValidQueue)
            }
            print(QueuesCommand.render(plan, paused: paused ?? QueuePauses(), settings: settings ?? QueueBreakerSettings()))
        }
    }

    struct Configure: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a queue's own circuit breaker settings (unset ones keep the governor's defaults).",
            discussion: """
                Applied by the governor from its next period, to the queue's breaker and its tenants' \
                breakers on it. Settings it cannot use are refused here; `--reset` returns the \
                queue to the defaults (SUNDIAL_GOVERNOR_BREAKER_*).
                """)

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Queue.") var queue: String
        @Option(help: "Outcomes are judged over this long, e.g. 20s.") var window: String?
        @Option(help: "Least outcomes in the window before it may trip.") var minimumSamples: Int?
        @Option(help: "Downstream failures ÷ outcomes at or above which it trips, in (0, 1].") var failureRatio: Double?
        @Option(help: "First cool-down while open, e.g. 5s.") var coolDown: String?
        @Option(help: "Longest cool-down after failed probe rounds, e.g. 15s.") var maximumCoolDown: String?
        @Option(help: "Jobs let through per half-open round.") var probes: Int?
        @Option(help: "A half-open round without enough answers ends after this long, e.g. 30s.") var probeTimeout: String?
        @Flag(help: "Drop the queue's own settings.") var reset = false

        func override() throws -> QueueBreakerSettings.Override {
            func seconds(_ text: String?, _ flag: String) throws -> Double? {
                guard let text else { return nil }
                guard let d = ScheduleDuration.parse(text) else {
                    throw ValidationError("--\(flag): \"\(text)\" is not a duration (e.g. 500ms, 10s, 5m)")
                }
                return d.seconds
            }
            return QueueBreakerSettings.Override(
                windowSeconds: try seconds(window, "window"), minimumSamples: minimumSamples, failureRatio: failureRatio,
                coolDownSeconds: try seconds(coolDown, "cool-down"),
                maximumCoolDownSeconds: try seconds(maximumCoolDown, "maximum-cool-down"), probes: probes,
                probeTimeoutSeconds: try seconds(probeTimeout, "probe-timeout"))
        }

        func run() async throws {
            guard SubjectToken.isValidQueue(queue) else { throw ValidationError("not a valid queue name: \(queue)") }
            let override = try override()
            guard reset != !override.isEmpty else {
                throw ValidationError("give either --reset or at least one setting")
            }
            // Checked against the documented defaults (merged with what is stored, below); the
            // governor checks again against its own defaults and keeps those for a queue whose
            // settings it cannot use.
            if !reset, override.applied(to: CircuitBreaker<ContinuousClock>.Configuration()) == nil {
                throw ValidationError(
                    "these settings are unusable: ratio in (0, 1], samples ≥ 1, probes 1…10000, durations positive and at most a day, cool-down ≤ its maximum")
            }
            try await QueuesCommand.update(
                connection, key: SundialNamespace.breakerSettingsKey,
                decode: { try QueueBreakerSettings(jsonBytes: $0, isValidQueue: SubjectToken.isValidQueue) },
                empty: QueueBreakerSettings(), encode: { try $0.jsonBytes() }
            ) { settings in
                if reset {
                    settings.queues[queue] = nil
                    return
                }
                guard settings.queues[queue] != nil || settings.queues.count < QueueBreakerSettings.maximumQueues else {
                    throw ValidationError("at most \(QueueBreakerSettings.maximumQueues) queues can have their own settings")
                }
                var merged = settings.queues[queue] ?? .init()
                if let v = override.windowSeconds { merged.windowSeconds = v }
                if let v = override.minimumSamples { merged.minimumSamples = v }
                if let v = override.failureRatio { merged.failureRatio = v }
                if let v = override.coolDownSeconds { merged.coolDownSeconds = v }
                if let v = override.maximumCoolDownSeconds { merged.maximumCoolDownSeconds = v }
                if let v = override.probes { merged.probes = v }
                if let v = override.probeTimeoutSeconds { merged.probeTimeoutSeconds = v }
                // The settings the queue ends up with must be usable together (a cool-down set
                // earlier above a maximum given now would make the governor drop them all).
                guard merged.applied(to: CircuitBreaker<ContinuousClock>.Configuration()) != nil else {
                    throw ValidationError(
                        "together with the queue's stored settings these are unusable (e.g. a cool-down above its maximum); `--reset` first")
                }
                settings.queues[queue] = merged
            }
            print(
                reset
                    ? "queue \(queue) uses the default breaker settings from the governor's next period (≤ 1 s)"
                    : "queue \(queue)'s breaker settings apply from the governor's next period (≤ 1 s)")
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hold a queue: its due fires wait in Sundial (no attempts spent) until `queues resume`.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Queue.") var queue: String
        @Option(help: "Who or why, shown by `queues status`.") var by: String = ProcessInfo.processInfo.environment["USER"] ?? "operator"

        func run() async throws {
            guard SubjectToken.isValidQueue(queue) else { throw ValidationError("not a valid queue name: \(queue)") }
            // Whole characters within the byte limit (the stored value is checked in bytes).
            var by = self.by
            while by.utf8.count > QueuePauses.maximumByBytes { by.removeLast() }
            try await QueuesCommand.updatePauses(connection) { pauses in
                guard pauses.queues[queue] == nil else { return }
                guard pauses.queues.count < QueuePauses.maximumQueues else {
                    throw ValidationError("at most \(QueuePauses.maximumQueues) queues can be paused at once")
                }
                pauses.queues[queue] = .init(sinceMillis: Int64(Date().timeIntervalSince1970 * 1000), by: by)
            }
            print("queue \(queue) paused: the governor holds it from its next plan (≤ 1 s); `sundial queues resume \(queue)` lets it go")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let a paused queue's fires go again.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Queue.") var queue: String

        func run() async throws {
            try await QueuesCommand.updatePauses(connection) { pauses in pauses.queues[queue] = nil }
            print("queue \(queue) resumed: its held fires go out as they return (≤ 1 min)")
        }
    }

    static func updatePauses(_ connection: ConnectionOptions, _ change: (inout QueuePauses) throws -> Void) async throws {
        try await update(
            connection, key: SundialNamespace.pausedQueuesKey,
            decode: { try QueuePauses(jsonBytes: $0, isValidQueue: SubjectToken.isValidQueue) }, empty: QueuePauses(),
            encode: { try $0.jsonBytes() }, change)
    }

    /// Read-modify-write of one operator-set KV value, compare-and-set on its revision (two
    /// operators at once: one retries).
    static func update<Value>(
        _ connection: ConnectionOptions, key: String, decode: ([UInt8]) throws -> Value, empty: Value,
        encode: (Value) throws -> [UInt8], _ change: (inout Value) throws -> Void
    ) async throws {
        let nats = try await connection.connect(name: "sundial-queues", as: .service)
        defer { Task { await nats.close() } }
        let bucket = try await KeyValueBucket.ensure(
            SundialNamespace.standard.quotasBucket, connection: nats, keepExisting: true)
        for _ in 0..<5 {
            let stored = try await bucket.get(key)
            var value = try stored.flatMap { $0.value.isEmpty ? nil : try decode($0.value) } ?? empty
            try change(&value)
            do {
                _ = try await bucket.put(key, try encode(value), expectedRevision: stored?.revision ?? 0)
                return
            } catch let error as NATSError where error.jetStreamErrorCode == 10071 {
                continue  // wrong last sequence: someone else changed it meanwhile
            }
        }
        throw ValidationError("the stored \(key) value kept changing; try again")
    }

    static func render(_ plan: FairnessPlan?, paused: QueuePauses, settings: QueueBreakerSettings = .init()) -> String {
        var lines = ["queue                          executors  capacity/s  breaker      held tenants  paused"]
        let queues = Set(plan?.queues.keys.map { $0 } ?? []).union(paused.queues.keys)
            .union(plan?.queuesWithoutExecutors?.keys.map { $0 } ?? []).union(settings.queues.keys)
        for queue in queues.sorted() {
            let queuePlan = plan?.queues[queue]
            let executors = plan?.queuesWithoutExecutors?[queue] != nil ? "none" : queuePlan?.capacityEstimate != nil ? "live" : "?"
            let capacity = queuePlan?.capacityEstimate.map { String(format: "%.0f", $0) } ?? "unknown"
            var breaker = queuePlan?.breaker.map { $0.paused == true ? "paused" : $0.state.rawValue } ?? "closed"
            if let status = queuePlan?.breaker, status.state == .open, status.paused != true, let left = status.reopensInMillis {
                breaker += String(format: " %.0fs", Double(left) / 1000)
            }
            let held = queuePlan?.tenants.filter { $0.value.breaker != nil }.map(\.key).sorted() ?? []
            let heldText = held.isEmpty ? "—" : held.prefix(3).joined(separator: ",") + (held.count > 3 ? " +\(held.count - 3)" : "")
            let pause = paused.queues[queue].map { "by \($0.by)" } ?? "—"
            lines.append(
                queue.padding(toLength: 31, withPad: " ", startingAt: 0) + executors.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + capacity.padding(toLength: 12, withPad: " ", startingAt: 0) + breaker.padding(toLength: 13, withPad: " ", startingAt: 0)
                    + heldText.padding(toLength: 14, withPad: " ", startingAt: 0) + pause)
        }
        if queues.isEmpty { lines.append("(no queue in the plan: no governor yet, or no demand)") }
        for (queue, o) in settings.queues.sorted(by: { $0.key < $1.key }) {
            func s(_ v: Double?) -> String? { v.map { String(format: "%gs", $0) } }
            let parts: [String?] = [
                s(o.windowSeconds).map { "window \($0)" }, o.minimumSamples.map { "minimum samples \($0)" },
                o.failureRatio.map { "failure ratio \($0)" }, s(o.coolDownSeconds).map { "cool-down \($0)" },
                s(o.maximumCoolDownSeconds).map { "maximum cool-down \($0)" }, o.probes.map { "probes \($0)" },
                s(o.probeTimeoutSeconds).map { "probe timeout \($0)" },
            ]
            lines.append("breaker settings of \(queue): " + parts.compactMap { $0 }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
