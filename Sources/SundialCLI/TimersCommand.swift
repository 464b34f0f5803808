import ArgumentParser
import Foundation
import SundialClient
import SundialContract
import SundialCore
import SundialProto
import SundialSchedule

/// `sundial timers create|get|update|cancel|list|history`: the Timers API from the shell.
struct TimersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timers", abstract: "Create and inspect timers.",
        subcommands: [
            Create.self, Get.self, Update.self, Cancel.self, List.self, History.self, Pause.self, Resume.self, Retry.self,
        ])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a timer of any kind; --dry-run prints its next fire times instead.",
            discussion: """
                Give exactly one kind: --in, --at, --cron, --weekdays, --date, --every or --schedule-json.
                Examples:
                  sundial timers create --tenant acme --queue emails --in 10s --payload hi
                  sundial timers create --tenant acme --queue reports --cron '0 9 * * MON-FRI' --time-zone Europe/Berlin
                  sundial timers create --tenant acme --queue ticks --every 5m --max-occurrences 12 --dry-run
                  sundial timers create --tenant acme --queue follow-up --in 1h --after <timer id>
                See docs/schedules.md for the semantics.
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant (the subject prefix sundial.v1.<tenant>).") var tenant: String
        @OptionGroup var schedule: ScheduleOptions
        @Option(help: "Work queue: jobs go to sundial.work.<queue>.") var queue: String
        @Option(help: "Payload text (UTF-8).") var payload: String = ""
        @Option(help: "Idempotency key: a retried create returns the same timer.") var idempotencyKey: String?
        @Option(help: "Priority: high, normal, low.") var priority: String = "normal"
        @Option(help: "Label key=value (repeatable).") var label: [String] = []
        @Option(help: "Retry policy: attempts in all, including the first (default 5).") var maxAttempts: UInt32?
        @Option(help: "Retry policy: first backoff, e.g. 1s (default 1s).") var initialBackoff: String?
        @Option(help: "Retry policy: longest backoff, e.g. 10m (default 10m).") var maxBackoff: String?
        @Option(help: "Start the schedule when this timer's job succeeds (a dependency).") var after: String?
        @Option(help: "Recurring: missed occurrences fire_all, fire_once (default) or skip.") var misfirePolicy: String?
        @Flag(help: "Publish a `succeeded` event when a job of this timer succeeds.") var notifySuccess = false
        @Option(help: "Recurring: missed occurrences older than this are skipped, e.g. 1h (default: no limit).")
        var catchupWindow: String?
        @Flag(help: "Print the next fire times (the preview) and create nothing.") var dryRun = false
        @Option(help: "With --dry-run: how many fire times to print.") var count: Int = 10
        @Flag(help: "Print the reply as protobuf JSON.") var json = false

        /// The request these options describe (checked as the CLI can; Ingest checks again).
        func request() throws -> Sundial_V1_CreateTimerRequest {
            let built = try schedule.buildSchedule()
            var request = Sundial_V1_CreateTimerRequest()
            request.schedule = built.proto
            request.queue = queue
            request.payload = Data(payload.utf8)
            if let idempotencyKey { request.idempotencyKey = idempotencyKey }
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
            if let maxAttempts { request.retryPolicy.maxAttempts = maxAttempts }
            if let initialBackoff {
                request.retryPolicy.initialBackoff = Google_Protobuf_Duration(
                    rounding: try ScheduleOptions.duration(initialBackoff, "--initial-backoff"))
            }
            if let maxBackoff {
                request.retryPolicy.maxBackoff = Google_Protobuf_Duration(
                    rounding: try ScheduleOptions.duration(maxBackoff, "--max-backoff"))
            }
            if let after {
                guard TimerID.parse(after) != nil else { throw ValidationError("--after: not a timer id: \(after)") }
                request.afterTimerID = after
            }
            switch misfirePolicy {
            case nil: break
            case "fire_all": request.misfirePolicy = .fireAll
            case "fire_once": request.misfirePolicy = .fireOnce
            case "skip": request.misfirePolicy = .skip
            default: throw ValidationError("--misfire-policy must be fire_all, fire_once or skip")
            }
            request.notifySuccess = notifySuccess
            if let catchupWindow {
                request.catchupWindow = Google_Protobuf_Duration(
                    rounding: try ScheduleOptions.duration(catchupWindow, "--catchup-window"))
            }
            return request
        }

        func run() async throws {
            let request: Sundial_V1_CreateTimerRequest
            do {
                request = try self.request()
                if dryRun {
                    let built = try schedule.buildSchedule()
                    try built.validate(now: Date())
                    if after != nil { print("(starts when timer \(after!) succeeds; times below are as if that were now)") }
                    for line in ScheduleOptions.preview(built, createdAt: Date(), timerID: "dry-run", count: count) {
                        print(line)
                    }
                    return
                }
            } catch let error as ScheduleValidationError {
                ScheduleOptions.report(error)
                throw ExitCode(2)
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
        case .paused: return "paused"
        default: return "unknown"
        }
    }
}
