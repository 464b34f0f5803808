import ArgumentParser
import Foundation
import SundialClient
import SundialContract
import SundialProto
import SundialSchedule

/// `sundial timers update|cancel|list|history`.
extension TimersCommand {
    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a timer's schedule, payload, priority or labels.",
            discussion: """
                At most one of --in, --at, --cron, --every replaces the schedule. An update acknowledged
                before the fire means only the new version is dispatched; one that loses the race with
                the fire fails with 409 "already fired".
                Examples:
                  sundial timers update --tenant acme --id <id> --in 10m
                  sundial timers update --tenant acme --id <id> --payload v2 --expected-version 3
                  sundial timers update --tenant acme --id <id> --cron '0 9 * * MON-FRI' --time-zone Europe/Berlin
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "Timer id.") var id: String
        @Option(name: .customLong("in"), help: "New schedule: one-shot delay from now, e.g. 10s, 5m, 1h30m.") var delay: String?
        @Option(help: "New schedule: absolute due time, RFC 3339.") var at: String?
        @Option(help: "New schedule: cron (5 or 6 fields, or @hourly/@daily/…).") var cron: String?
        @Option(help: "New schedule: fixed interval from now, e.g. 90m.") var every: String?
        @Option(name: .customLong("time-zone"), help: "IANA time zone of the new schedule (default UTC).") var timeZone: String?
        @Option(help: "New payload text (UTF-8).") var payload: String?
        @Option(help: "New priority: high, normal, low.") var priority: String?
        @Option(help: "Label key=value (repeatable); replaces the timer's labels.") var label: [String] = []
        @Flag(help: "Remove all of the timer's labels (sent with an update_mask).") var clearLabels = false
        @Option(help: "Apply only if the timer is still at this version.") var expectedVersion: UInt64?
        @Flag(help: "Print the reply as protobuf JSON.") var json = false

        func validate() throws {
            if [delay, at, cron, every].compactMap({ $0 }).count > 1 {
                throw ValidationError("give at most one of --in, --at, --cron, --every")
            }
            if timeZone != nil && cron == nil && every == nil {
                throw ValidationError("--time-zone applies to --cron or --every")
            }
            if clearLabels && !label.isEmpty {
                throw ValidationError("give --label or --clear-labels, not both")
            }
        }

        func request() throws -> Sundial_V1_UpdateTimerRequest {
            var request = Sundial_V1_UpdateTimerRequest()
            request.timerID = id
            if let expectedVersion { request.expectedVersion = expectedVersion }
            if let delay {
                guard let duration = ScheduleDuration.parse(delay) else {
                    throw ValidationError("--in: not a duration like 10s, 5m, 3d: \(delay)")
                }
                request.schedule.delay.duration = Google_Protobuf_Duration(rounding: duration)
            } else if let at {
                guard let date = RFC3339.parse(at) else { throw ValidationError("--at: not RFC 3339: \(at)") }
                request.schedule.at.instant = Google_Protobuf_Timestamp(date: date)
            } else if let cron {
                request.schedule.cron.expression = cron
            } else if let every {
                guard let interval = ScheduleDuration.parse(every) else {
                    throw ValidationError("--every: not a duration like 90m, 1h: \(every)")
                }
                request.schedule.every.interval = Google_Protobuf_Duration(rounding: interval)
            }
            if let timeZone { request.schedule.timeZone = timeZone }
            if let payload { request.payload = Data(payload.utf8) }  // set = present = changed
            if let priority { request.priority = try TimersCLIParsing.priority(priority) }
            request.labels = try TimersCLIParsing.labels(label)
            if clearLabels {
                // Empty labels only change anything when a mask names them; the mask then lists
                // every field this update sets.
                request.updateMask.paths = [
                    request.hasSchedule ? "schedule" : nil, request.hasPayload ? "payload" : nil,
                    priority != nil ? "priority" : nil, "labels",
                ].compactMap { $0 }
            }
            return request
        }

        func run() async throws {
            let request = try request()
            try await TimersCLIParsing.withClient(connection, tenant: tenant) { client in
                let timer = try await client.update(request)
                print(json ? try timer.jsonString() : TimerText.describe(timer, created: nil))
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a timer. Idempotent; fails with 409 \"already fired\" if its job was dispatched.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "Timer id.") var id: String
        @Option(help: "Cancel only if the timer is still at this version.") var expectedVersion: UInt64?
        @Flag(help: "Print the reply as protobuf JSON.") var json = false

        func run() async throws {
            try await TimersCLIParsing.withClient(connection, tenant: tenant) { client in
                let timer = try await client.cancel(id, expectedVersion: expectedVersion)
                print(json ? try timer.jsonString() : TimerText.describe(timer, created: nil))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a tenant's timers in creation order, one line each.",
            discussion: """
                Filters combine (all must match). Without --all one page is printed, followed by the
                token of the next page if there is one.
                Example: sundial timers list --tenant acme --state armed --state scheduled --label env=prod --all
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "State filter (repeatable): \(TimersCLIParsing.stateNames.joined(separator: ", ")).") var state: [String] = []
        @Option(help: "Queue filter.") var queue: String?
        @Option(help: "Label filter key=value (repeatable; all must match).") var label: [String] = []
        @Option(help: "Timers per page (server default 50, at most 1000).") var pageSize: UInt32?
        @Option(help: "Continue from this token (printed after a page).") var pageToken: String?
        @Flag(help: "Follow pages until the last.") var all = false
        @Flag(help: "Print each page as protobuf JSON.") var json = false

        func run() async throws {
            var request = Sundial_V1_ListTimersRequest()
            request.states = try state.map(TimersCLIParsing.state)
            if let queue { request.queue = queue }
            request.labels = try TimersCLIParsing.labels(label)
            if let pageSize { request.pageSize = pageSize }
            if let pageToken { request.pageToken = pageToken }
            try await TimersCLIParsing.withClient(connection, tenant: tenant) { client in
                var total = 0
                while true {
                    let page = try await client.list(request)
                    total += page.timers.count
                    if json {
                        print(try page.jsonString())
                    } else {
                        for timer in page.timers { print(TimersCLIParsing.line(timer)) }
                    }
                    guard all, !page.nextPageToken.isEmpty else {
                        if !json {
                            if !page.nextPageToken.isEmpty {
                                print("next page: --page-token \(page.nextPageToken)")
                            } else {
                                print("(\(total) timer\(total == 1 ? "" : "s"))")
                            }
                        }
                        break
                    }
                    request.pageToken = page.nextPageToken
                }
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pause timers: they fire nothing, not even occurrences already loaded, until resumed.",
            discussion: """
                One timer (--id), or every active timer with the given labels (--label, a page at a time).
                409 "already fired" when a one-shot's job was dispatched first.
                Examples:
                  sundial timers pause --tenant acme --id <id>
                  sundial timers pause --tenant acme --label team=billing --all
                """)

        @OptionGroup var selection: TimerSelectionOptions

        func run() async throws {
            try await selection.pages(Sundial_V1_PauseTimerRequest(), verb: "paused") { client, request in
                let page = try await client.pause(request)
                return (page.timers, page.nextPageToken, try page.jsonString())
            }
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resume paused timers: they go on from now; missed occurrences follow each timer's misfire policy.",
            discussion: """
                One timer (--id), or every paused timer with the given labels (--label, a page at a time).
                Examples:
                  sundial timers resume --tenant acme --id <id>
                  sundial timers resume --tenant acme --label team=billing --all
                """)

        @OptionGroup var selection: TimerSelectionOptions

        func run() async throws {
            try await selection.pages(Sundial_V1_ResumeTimerRequest(), verb: "resumed") { client, request in
                let page = try await client.resume(request)
                return (page.timers, page.nextPageToken, try page.jsonString())
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Redrive: run dead-lettered jobs again (one timer, or dead one-shot timers by label).",
            discussion: """
                The occurrence's next attempt is due at once and gets a fresh round of the timer's
                retry policy (attempt numbers continue: a job that died at attempt 5 reruns as 6).
                Examples:
                  sundial timers retry --tenant acme --id <id>                   # its latest dead occurrence
                  sundial timers retry --tenant acme --id <id> --occurrence 12   # a recurring timer's occurrence 12
                  sundial timers retry --tenant acme --label batch=2026-12-07 --all
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "Timer id.") var id: String?
        @Option(help: "With --id: the dead occurrence to rerun (default: the latest).") var occurrence: UInt64?
        @Option(help: "Selector key=value (repeatable; all must match): dead one-shot timers.") var label: [String] = []
        @Option(help: "Timers per page (server default 50, at most 100).") var pageSize: UInt32?
        @Option(help: "Continue from this token (printed after a page).") var pageToken: String?
        @Flag(help: "Follow pages until the last.") var all = false
        @Flag(help: "Print each reply as protobuf JSON.") var json = false

        func validate() throws {
            if (id == nil) == label.isEmpty { throw ValidationError("give --id or --label (not both)") }
            if occurrence != nil && id == nil { throw ValidationError("--occurrence goes with --id") }
        }

        func run() async throws {
            var request = Sundial_V1_RetryTimerRequest()
            if let id { request.timerID = id }
            if let occurrence { request.occurrence = occurrence }
            request.labels = try TimersCLIParsing.labels(label)
            if let pageSize { request.pageSize = pageSize }
            if let pageToken { request.pageToken = pageToken }
            try await TimersCLIParsing.withClient(connection, tenant: tenant) { client in
                var total = 0
                while true {
                    let page = try await client.retry(request)
                    total += page.timers.count
                    if json {
                        print(try page.jsonString())
                    } else {
                        for timer in page.timers { print(TimersCLIParsing.line(timer)) }
                    }
                    guard all, !page.nextPageToken.isEmpty else {
                        if !json {
                            if !page.nextPageToken.isEmpty { print("next page: --page-token \(page.nextPageToken)") }
                            print("(\(total) timer\(total == 1 ? "" : "s") redriven)")
                        }
                        break
                    }
                    request.pageToken = page.nextPageToken
                }
            }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a timer's runs: every occurrence and attempt with its times and outcome.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "Timer id.") var id: String
        @Option(help: "Runs per page (server default 100, at most 1000).") var pageSize: UInt32?
        @Option(help: "Continue from this token (printed after a page).") var pageToken: String?
        @Flag(help: "Follow pages until the last.") var all = false
        @Flag(help: "Print each page as protobuf JSON.") var json = false

        func run() async throws {
            try await TimersCLIParsing.withClient(connection, tenant: tenant) { client in
                var token = pageToken ?? ""
                var total = 0
                while true {
                    let page = try await client.history(id, pageSize: pageSize ?? 0, pageToken: token)
                    total += page.runs.count
                    if json {
                        print(try page.jsonString())
                    } else {
                        for run in page.runs { print(TimersCLIParsing.line(run)) }
                    }
                    guard all, !page.nextPageToken.isEmpty else {
                        if !json {
                            if !page.nextPageToken.isEmpty {
                                print("next page: --page-token \(page.nextPageToken)")
                            } else {
                                print("(\(total) run\(total == 1 ? "" : "s"))")
                            }
                        }
                        break
                    }
                    token = page.nextPageToken
                }
            }
        }
    }
}

/// One timer by id, or a page of timers by label selector (pause, resume).
struct TimerSelectionOptions: ParsableArguments {
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Tenant.") var tenant: String
    @Option(help: "Timer id.") var id: String?
    @Option(help: "With --id: apply only if the timer is still at this version.") var expectedVersion: UInt64?
    @Option(help: "Selector key=value (repeatable; all must match).") var label: [String] = []
    @Option(help: "Timers per page (server default 50, at most 100).") var pageSize: UInt32?
    @Option(help: "Continue from this token (printed after a page).") var pageToken: String?
    @Flag(help: "Follow pages until the last.") var all = false
    @Flag(help: "Print each reply as protobuf JSON.") var json = false

    func validate() throws {
        if (id == nil) == label.isEmpty { throw ValidationError("give --id or --label (not both)") }
        if expectedVersion != nil && id == nil { throw ValidationError("--expected-version goes with --id") }
    }

    /// Fills `request` from the options, sends it and each next page (with --all), and prints
    /// the timers.
    func pages<Request: TimerSelectorRequest>(
        _ empty: Request, verb: String,
        _ send: @escaping (TimersClient, Request) async throws -> ([Sundial_V1_Timer], String, String)
    ) async throws {
        var request = empty
        request.timerID = id ?? ""
        request.expectedVersion = expectedVersion ?? 0
        request.labels = try TimersCLIParsing.labels(label)
        request.pageSize = pageSize ?? 0
        request.pageToken = pageToken ?? ""
        try await TimersCLIParsing.withClient(connection, tenant: tenant) { client in
            var total = 0
            while true {
                let (timers, next, jsonText) = try await send(client, request)
                total += timers.count
                if json {
                    print(jsonText)
                } else {
                    for timer in timers { print(TimersCLIParsing.line(timer)) }
                }
                guard all, !next.isEmpty else {
                    if !json {
                        if !next.isEmpty { print("next page: --page-token \(next)") }
                        print("(\(total) timer\(total == 1 ? "" : "s") \(verb))")
                    }
                    break
                }
                request.pageToken = next
            }
        }
    }
}

/// Pause and Resume requests: one timer, or a page of a label selector.
protocol TimerSelectorRequest {
    var timerID: String { get set }
    var expectedVersion: UInt64 { get set }
    var labels: [String: String] { get set }
    var pageSize: UInt32 { get set }
    var pageToken: String { get set }
}

extension Sundial_V1_PauseTimerRequest: TimerSelectorRequest {}
extension Sundial_V1_ResumeTimerRequest: TimerSelectorRequest {}

/// Flag parsing and output shared by the lifecycle commands.
enum TimersCLIParsing {
    static let states: [(String, Sundial_V1_TimerState)] = [
        ("scheduled", .scheduled), ("armed", .armed), ("dispatched", .dispatched), ("succeeded", .succeeded),
        ("retrying", .retrying), ("dead", .dead), ("cancelled", .cancelled), ("completed", .completed),
        ("waiting", .waiting), ("paused", .paused),
    ]
    static var stateNames: [String] { states.map(\.0) }

    static func state(_ text: String) throws -> Sundial_V1_TimerState {
        guard let match = states.first(where: { $0.0 == text.lowercased() }) else {
            throw ValidationError("--state must be one of \(stateNames.joined(separator: ", ")): \(text)")
        }
        return match.1
    }

    static func stateName(_ state: Sundial_V1_TimerState) -> String {
        states.first { $0.1 == state }?.0 ?? "unknown"
    }

    static func priority(_ text: String) throws -> Sundial_V1_Priority {
        switch text.lowercased() {
        case "high": return .high
        case "normal": return .normal
        case "low": return .low
        default: throw ValidationError("--priority must be high, normal or low")
        }
    }

    static func labels(_ pairs: [String]) throws -> [String: String] {
        var labels: [String: String] = [:]
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("--label must be key=value: \(pair)") }
            labels[String(parts[0])] = String(parts[1])
        }
        return labels
    }

    /// `<id>  <state>  queue=<q>  next=<time>  v<version>`
    static func line(_ timer: Sundial_V1_Timer) -> String {
        var fields = [timer.id, stateName(timer.state).padding(toLength: 10, withPad: " ", startingAt: 0), "queue=\(timer.queue)"]
        fields.append("next=" + (timer.hasNextFireAt ? RFC3339.format(timer.nextFireAt.date) : "-"))
        fields.append("v\(timer.version)")
        if !timer.labels.isEmpty {
            fields.append(timer.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))
        }
        return fields.joined(separator: "  ")
    }

    /// `#<occurrence>.<attempt>  <outcome>  scheduled=… fired=… dispatched=… finished=…  v<version>  [error]`
    static func line(_ run: Sundial_V1_TimerRun) -> String {
        func time(_ present: Bool, _ stamp: Google_Protobuf_Timestamp) -> String {
            present ? RFC3339.format(stamp.date) : "-"
        }
        var text = "#\(run.occurrence).\(run.attempt)  \(run.outcome.padding(toLength: 11, withPad: " ", startingAt: 0))"
        text += "  scheduled=\(time(run.hasScheduledAt, run.scheduledAt))"
        text += "  fired=\(time(run.hasFiredAt, run.firedAt))"
        text += "  dispatched=\(time(run.hasDispatchedAt, run.dispatchedAt))"
        text += "  finished=\(time(run.hasFinishedAt, run.finishedAt))"
        text += "  v\(run.version)"
        if !run.error.isEmpty { text += "  error: \(run.error)" }
        return text
    }

    /// Connects, runs `body`, closes; a `SundialError` is printed as `error: …` with exit code 1.
    static func withClient(
        _ connection: ConnectionOptions, tenant: String, _ body: (TimersClient) async throws -> Void
    ) async throws {
        let nats = try await connection.connect(name: "sundial-cli", as: .tenant(tenant))
        do {
            try await body(TimersClient(connection: nats, tenant: tenant))
        } catch let error as SundialError {
            print("error: \(error)")
            await nats.close()
            throw ExitCode(1)
        } catch {
            await nats.close()
            throw error
        }
        await nats.close()
    }
}
