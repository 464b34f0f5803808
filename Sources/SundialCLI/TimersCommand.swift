import ArgumentParser
import Foundation
import SundialContract
import SundialProto
import SundialSchedule

/// `sundial timers create|get|update|cancel|list|history`: the Timers API from the shell.
struct TimersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timers", abstract: "Create and inspect timers.",
        subcommands: [Create.self, Get.self, Update.self, Cancel.self, List.self, History.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a one-shot timer.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant (the subject prefix sundial.v1.<tenant>).") var tenant: String
        @Option(name: .customLong("in"), help: "Delay from now, e.g. 10s, 5m, 3d, 1h30m.") var delay: String?
        @Option(help: "Absolute due time, RFC 3339.") var at: String?
        @Option(help: "Work queue: jobs go to sundial.work.<queue>.") var queue: String
        @Option(help: "Payload text (UTF-8).") var payload: String = ""
        @Option(help: "Idempotency key: a retried create returns the same timer.") var idempotencyKey: String?
        @Option(help: "Priority: high, normal, low.") var priority: String = "normal"
        @Option(help: "Label key=value (repeatable).") var label: [String] = []
        @Flag(help: "Print the reply as protobuf JSON.") var json = false

        func run() async throws {
            var request = Sundial_V1_CreateTimerRequest()
            request.queue = queue
            request.payload = Data(payload.utf8)
            if let idempotencyKey { request.idempotencyKey = idempotencyKey }
            switch (delay, at) {
            case (let text?, nil):
                guard let duration = ScheduleDuration.parse(text) else {
                    throw ValidationError("--in: not a duration like 10s, 5m, 3d: \(text)")
                }
                request.schedule.delay.duration = Google_Protobuf_Duration(rounding: duration)
            case (nil, let text?):
                guard let date = RFC3339.parse(text) else { throw ValidationError("--at: not RFC 3339: \(text)") }
                request.schedule.at.instant = Google_Protobuf_Timestamp(date: date)
            default:
                throw ValidationError("give exactly one of --in or --at")
            }
            switch priority {
            case "high": request.priority = .high
            case "low": request.priority = .low
            case "normal": request.priority = .normal
            default: throw ValidationError("--priority must be high, normal or low")
            }
            for pair in label {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { throw ValidationError("--label must be key=value: \(pair)") }
                request.labels[String(parts[0])] = String(parts[1])
            }
            let nats = try await connection.connect(name: "sundial-cli", as: .tenant(tenant))
            let client = TimersClient(connection: nats, tenant: tenant)
            do {
                let response = try await client.create(request)
                print(json ? try response.jsonString() : TimerText.describe(response.timer, created: response.created))
            } catch let error as SundialError {
                print("error: \(error)")
                await nats.close()
                throw ExitCode(1)
            }
            await nats.close()
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one timer.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "Timer id.") var id: String
        @Flag(help: "Print the reply as protobuf JSON.") var json = false

        func run() async throws {
            let nats = try await connection.connect(name: "sundial-cli", as: .tenant(tenant))
            do {
                let timer = try await TimersClient(connection: nats, tenant: tenant).get(id)
                print(json ? try timer.jsonString() : TimerText.describe(timer, created: nil))
            } catch let error as SundialError {
                print("error: \(error)")
                await nats.close()
                throw ExitCode(1)
            }
            await nats.close()
        }
    }
}

enum TimerText {
    static func describe(_ timer: Sundial_V1_Timer, created: Bool?) -> String {
        var lines = ["timer \(timer.id)" + (created == false ? " (existing: idempotency key matched)" : "")]
        lines.append("  tenant:     \(timer.tenant)")
        lines.append("  state:      \(stateName(timer.state))")
        lines.append("  queue:      \(timer.queue)")
        if timer.hasNextFireAt { lines.append("  next fire:  \(RFC3339.format(timer.nextFireAt.date))") }
        lines.append("  version:    \(timer.version)")
        lines.append("  attempts:   \(timer.attempts)")
        if !timer.lastError.isEmpty { lines.append("  last error: \(timer.lastError)") }
        lines.append("  created:    \(RFC3339.format(timer.createdAt.date))")
        return lines.joined(separator: "\n")
    }

    static func stateName(_ state: Sundial_V1_TimerState) -> String {
        switch state {
        case .scheduled: return "scheduled"
        case .armed: return "armed (loaded into JetStream)"
        case .dispatched: return "dispatched"
        case .succeeded: return "succeeded"
        case .retrying: return "retrying"
        case .dead: return "dead"
        case .cancelled: return "cancelled"
        case .completed: return "completed"
        case .waiting: return "waiting (for its parent timer's success)"
        default: return "unknown"
        }
    }
}
