import ArgumentParser
import Foundation
import SundialContract
import SundialFairness
import SundialNATS

/// `sundial queues status | pause | resume`: work queues as operators see them — capacity,
/// circuit breakers, held tenants — and holding a queue by hand (the same holding path as an
/// open breaker: due fires wait in Sundial, unclaimed, until it is resumed).
struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues", abstract: "Work queues: status (capacity, breakers), pause and resume by hand.",
        subcommands: [Status.self, Pause.self, Resume.self])

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
            print(QueuesCommand.render(plan, paused: paused ?? QueuePauses()))
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
            try await QueuesCommand.update(connection) { pauses in
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
            try await QueuesCommand.update(connection) { pauses in pauses.queues[queue] = nil }
            print("queue \(queue) resumed: its held fires go out as they return (≤ 1 min)")
        }
    }

    /// Read-modify-write of the paused list, compare-and-set on its revision (two operators at
    /// once: one retries).
    static func update(_ connection: ConnectionOptions, _ change: (inout QueuePauses) throws -> Void) async throws {
        let nats = try await connection.connect(name: "sundial-queues", as: .service)
        defer { Task { await nats.close() } }
        let bucket = try await KeyValueBucket.ensure(SundialNamespace.standard.quotasBucket, connection: nats)
        for _ in 0..<5 {
            let stored = try await bucket.get(SundialNamespace.pausedQueuesKey)
            var pauses = try stored.flatMap {
                $0.value.isEmpty ? nil : try QueuePauses(jsonBytes: $0.value, isValidQueue: SubjectToken.isValidQueue)
            } ?? QueuePauses()
            try change(&pauses)
            do {
                _ = try await bucket.put(SundialNamespace.pausedQueuesKey, try pauses.jsonBytes(), expectedRevision: stored?.revision ?? 0)
                return
            } catch let error as NATSError where error.jetStreamErrorCode == 10071 {
                continue  // wrong last sequence: someone else changed it meanwhile
            }
        }
        throw ValidationError("the paused-queues list kept changing; try again")
    }

    static func render(_ plan: FairnessPlan?, paused: QueuePauses) -> String {
        var lines = ["queue                          executors  capacity/s  breaker      held tenants  paused"]
        let queues = Set(plan?.queues.keys.map { $0 } ?? []).union(paused.queues.keys).union(plan?.queuesWithoutExecutors?.keys.map { $0 } ?? [])
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
        return lines.joined(separator: "\n")
    }
}
