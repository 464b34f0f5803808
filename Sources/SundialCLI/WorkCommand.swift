import ArgumentParser
import Foundation
import SundialExecutor
import SundialSchedule

/// `sundial work tail --queue Q`: an example executor that prints and completes each job.
struct WorkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "work", abstract: "Consume jobs as an executor.", subcommands: [Tail.self])

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print each job of a queue with its fire lag, and complete it.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Queue to consume (sundial.work.<queue>).") var queue: String
        @Option(help: "Durable consumer name shared by this queue's executors.") var durable: String?
        @Option(help: "Stop after this many jobs (default: run until Ctrl-C).") var count: Int?

        func run() async throws {
            let nats = try await connection.connect(name: "sundial-work-tail", as: .executor)
            var options = SundialWorker.Options()
            options.durable = durable
            let worker = try await SundialWorker.connect(connection: nats, queue: queue, options: options)
            print("waiting for jobs on queue \(queue)…")
            var seen = 0
            while count.map({ seen < $0 }) ?? true {
                for job in try await worker.next(max: 64, maxWait: .seconds(1)) {
                    let lag = job.lag()
                    let payload = String(decoding: job.payload.prefix(200), as: UTF8.self)
                    print(
                        String(
                            format: "%@ timer=%@ tenant=%@ attempt=%d lag=%.3fs payload=%@",
                            RFC3339.format(Date()), job.timerID, job.tenant, job.attempt, lag, payload))
                    try await worker.complete(job)
                    seen += 1
                }
            }
            await nats.close()
        }
    }
}
