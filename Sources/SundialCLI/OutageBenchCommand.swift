import ArgumentParser
import Foundation
import Logging
import SundialBench

/// `sundial bench outage`: a queue's downstream down for a while (issue 18), run on a private
/// Sundial per mode — the services from this binary ("after") and, with `--before-binary`, from
/// another build ("before") — and printed side by side.
struct OutageBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outage",
        abstract: "A queue's downstream down: attempts spent, dead letters, recovery, the other queue's lag; before/after.")

    @Option(help: "Timers on the failing queue (dep).") var jobs: Int = 300
    @Option(help: "Timers on the healthy queue (ok).") var otherJobs: Int = 100
    @Option(help: "Seconds the timers are due over.") var window: Double = 20
    @Option(help: "Seconds the downstream is down, from the first due time.") var outage: Double = 40
    @Option(help: "Attempts per job (retry policy).") var attempts: Int = 5
    @Option(help: "A sundial binary of an earlier build to run as \"before\" (e.g. the previous main).") var beforeBinary: String?
    @Option(help: "Data folder (wiped per mode).") var data: String = ".sundial/bench-outage"
    @Option(help: "Write the report as JSON here.") var json: String = "bench-results/outage.json"

    func run() async throws {
        guard jobs > 0, jobs <= 100_000, otherJobs >= 0, otherJobs <= 100_000, window > 0, outage > 0,
            (1...100).contains(attempts)
        else { throw ValidationError("jobs 1…100000, other jobs 0…100000, window and outage > 0, attempts 1…100") }
        var p = OutageBenchmark.Parameters()
        p.jobs = jobs
        p.otherJobs = otherJobs
        p.window = window
        p.outage = outage
        p.attempts = attempts
        p.lead = max(8, Double(jobs + otherJobs) / 300 + 5)
        var logger = Logger(label: "sundial.bench")
        logger.logLevel = .warning
        let modes: [(name: String, binary: String?)] = (beforeBinary.map { [("before", $0)] } ?? []) + [("after", nil)]
        var reports: [OutageBenchmark.Report] = []
        for mode in modes {
            let report = try await PrivateStack.run(
                root: URL(fileURLWithPath: data).appendingPathComponent(mode.name),
                components: ["ingest", "planner", "dispatcher", "governor"], environment: [:],
                servicesBinary: mode.binary, logger: logger
            ) { natsURL in
                try await OutageBenchmark(p).run(natsURL: natsURL, mode: mode.name) { print($0) }
            }
            reports.append(report)
            print(OutageBenchmark.table(reports, parameters: p))
        }
        let url = URL(fileURLWithPath: json)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        struct Output: Encodable {
            var parameters: OutageBenchmark.Parameters
            var modes: [OutageBenchmark.Report]
        }
        try encoder.encode(Output(parameters: p, modes: reports)).write(to: url)
        print("report written to \(url.path)")
    }
}
