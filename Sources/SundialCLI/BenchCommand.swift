import ArgumentParser
import Foundation
import SundialBench
import SundialSchedule

/// `sundial bench`: benchmarks that print figures (never timed tests).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks.", subcommands: [SpineBench.self, BurstBench.self, RampBench.self, ScheduleBench.self, WhaleBench.self, PlannerLoadBench.self, OutageBench.self, StorageBench.self, ChaosBench.self, ScaleBench.self])

    struct SpineBench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "spine",
            abstract: "Create timers at a target rate against a running Sundial; report create latency, fire lag, losses.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Timers to create.") var count: Int = 60_000
        @Option(help: "Creates per second.") var rate: Double = 1000
        @Option(help: "Earliest due time after creation.") var dueMin: String = "5s"
        @Option(help: "Latest due time after creation.") var dueMax: String = "65s"
        @Option(help: "Creates in flight at once.") var maxInFlight: Int = 256
        @Option(help: "Extra wait for stragglers after the last due time.") var drain: String = "30s"
        @Option(help: "Write the report as JSON here.") var json: String = "bench-results/spine.json"

        func run() async throws {
            guard let dueMin = ScheduleDuration.parse(dueMin), let dueMax = ScheduleDuration.parse(dueMax),
                let drain = ScheduleDuration.parse(drain), dueMin <= dueMax
            else { throw ValidationError("--due-min/--due-max/--drain must be durations with min ≤ max") }
            guard count > 0, count <= 20_000_000, rate > 0 else { throw ValidationError("count must be 1…20M, rate > 0") }
            var parameters = SpineBenchmark.Parameters(natsURL: connection.resolvedURL())
            parameters.count = count
            parameters.rate = rate
            parameters.dueMin = dueMin
            parameters.dueMax = dueMax
            parameters.maxInFlight = maxInFlight
            parameters.drainTimeout = drain
            let report = try await SpineBenchmark(parameters).run { print($0) }
            print(report.text)
            try BenchReportFile.write(report, to: json)
        }
    }

    struct BurstBench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "burst",
            abstract: "Many `at` timers due at one instant across tenants, against a running Sundial; report how late the last job was.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Timers, all due at one instant.") var count: Int = 100_000
        @Option(help: "Tenants the timers are spread over.") var tenants: Int = 20
        @Option(help: "Creates per second.") var rate: Double = 3000
        @Option(help: "Creates in flight at once.") var maxInFlight: Int = 256
        @Option(help: "From the start to the due instant (default: the creating time at --rate, doubled, plus 15 s; beyond the horizon: plus the horizon).")
        var lead: String?
        @Flag(help: "Create every timer more than the horizon ahead, so the Planner promotes them (not Ingest).")
        var beyondHorizon = false
        @Option(help: "The Planner's horizon (SUNDIAL_HORIZON of the Sundial under test).") var horizon: String = "300s"
        @Option(help: "Extra wait for stragglers after the due instant.") var drain: String = "60s"
        @Option(help: "Write the report as JSON here.") var json: String = "bench-results/burst.json"

        func run() async throws {
            guard let horizon = ScheduleDuration.parse(horizon), let drain = ScheduleDuration.parse(drain) else {
                throw ValidationError("--horizon and --drain must be durations")
            }
            guard count > 0, count <= 5_000_000, rate > 0, (1...10_000).contains(tenants) else {
                throw ValidationError("count must be 1…5M, rate > 0, tenants 1…10,000")
            }
            var lead = Duration.seconds(Double(count) / rate * 2 + 15)
            if beyondHorizon { lead += horizon }
            if let text = self.lead {
                guard let parsed = ScheduleDuration.parse(text) else { throw ValidationError("--lead must be a duration") }
                lead = parsed
            }
            var parameters = SpineBenchmark.Parameters(natsURL: connection.resolvedURL())
            parameters.count = count
            parameters.rate = rate
            parameters.maxInFlight = maxInFlight
            parameters.tenants = tenants
            parameters.horizon = horizon
            parameters.drainTimeout = drain
            // A whole second, so the instant reads the same in every log and report.
            parameters.burstAt = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + lead.seconds).rounded(.up))
            let report = try await SpineBenchmark(parameters).run { print($0) }
            print(report.text)
            if beyondHorizon, let beyond = report.createdBeyondHorizon, beyond < report.created {
                print("note: \(report.created - beyond) creates were answered inside the horizon; raise --lead")
            }
            try BenchReportFile.write(report, to: json)
        }
    }

    struct RampBench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ramp",
            abstract: "Raise the create rate step by step against a running Sundial until lag or create latency breaks; print the knee.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "First step's creates per second.") var start: Double = 500
        @Option(help: "Rate added per step.") var step: Double = 500
        @Option(help: "Highest rate tried.") var max: Double = 6000
        @Option(help: "Seconds of creating per step.") var stepSeconds: Double = 30
        @Option(help: "Earliest due time after creation.") var dueMin: String = "5s"
        @Option(help: "Latest due time after creation.") var dueMax: String = "35s"
        @Option(help: "Limit: fire lag p95, ms.") var lagP95: Double = 500
        @Option(help: "Limit: fire lag p99, ms.") var lagP99: Double = 1000
        @Option(help: "Limit: create latency p99, ms.") var createP99: Double = 50
        @Option(help: "Write the report as JSON here.") var json: String = "bench-results/ramp.json"

        func run() async throws {
            guard let dueMin = ScheduleDuration.parse(dueMin), let dueMax = ScheduleDuration.parse(dueMax), dueMin <= dueMax else {
                throw ValidationError("--due-min/--due-max must be durations with min ≤ max")
            }
            guard start > 0, step > 0, max >= start, stepSeconds >= 1, Double(max) * stepSeconds <= 5_000_000 else {
                throw ValidationError("need 0 < start ≤ max, step > 0, step-seconds ≥ 1, max × step-seconds ≤ 5M")
            }
            var spine = SpineBenchmark.Parameters(natsURL: connection.resolvedURL())
            spine.dueMin = dueMin
            spine.dueMax = dueMax
            var parameters = RampBenchmark.Parameters(spine: spine)
            parameters.startRate = start
            parameters.stepRate = step
            parameters.maxRate = max
            parameters.stepSeconds = stepSeconds
            parameters.limits.fireLagP95Ms = lagP95
            parameters.limits.fireLagP99Ms = lagP99
            parameters.limits.createP99Ms = createP99
            let report = try await RampBenchmark(parameters).run { print($0) }
            print(report.text)
            try BenchReportFile.write(report, to: json)
        }
    }

    struct ScheduleBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "schedule", abstract: "Next-occurrence computation per schedule kind.")

        @Option(help: "Iterations per kind.") var iterations: Int = 20_000

        func run() throws {
            print(ScheduleBenchmark.run(iterations: iterations))
        }
    }
}

/// Where a benchmark's JSON report goes.
enum BenchReportFile {
    static func write(_ report: some Encodable, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: url)
        print("report written to \(url.path)")
    }
}
