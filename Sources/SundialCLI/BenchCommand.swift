import ArgumentParser
import Foundation
import SundialBench

/// `sundial bench`: benchmarks that print figures (never timed tests).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks.", subcommands: [ScheduleBench.self])

    struct ScheduleBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "schedule", abstract: "Next-occurrence computation per schedule kind.")

        @Option(help: "Iterations per kind.") var iterations: Int = 20_000

        func run() throws {
            print(ScheduleBenchmark.run(iterations: iterations))
        }
    }
}
