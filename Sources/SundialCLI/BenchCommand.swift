import ArgumentParser
import Foundation
import SundialBench
import SundialSchedule

/// `sundial bench`: benchmarks that print figures (never timed tests).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks.", subcommands: [SpineBench.self, ScheduleBench.self, WhaleBench.self, PlannerLoadBench.self, OutageBench.self, StorageBench.self])

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
            let url = URL(fileURLWithPath: json)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: url)
            print("report written to \(url.path)")
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
