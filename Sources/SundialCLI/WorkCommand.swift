import ArgumentParser
import Foundation
import SundialExecutor
import SundialSchedule
import SundialWebhook

/// `sundial work tail --queue Q`: an example executor that prints and completes each job;
/// `sundial work webhook --queue Q --url URL`: POSTs each job to an HTTP endpoint.
struct WorkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "work", abstract: "Consume jobs as an executor.", subcommands: [Tail.self, Webhook.self])

    struct Webhook: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "POST each job of a queue to a URL, signed with HMAC-SHA256 (docs/webhooks.md).",
            discussion: """
                The secret comes from SUNDIAL_WEBHOOK_SECRET (at least 16 bytes). 2xx completes a job;
                408, 429, 5xx, a timeout or no connection fail it with retry (as the endpoint's failure);
                any other 4xx fails it without retry.
                Example: SUNDIAL_WEBHOOK_SECRET=… sundial work webhook --queue emails --url https://example.com/hooks/sundial
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Queue to consume (sundial.work.<queue>).") var queue: String
        @Option(help: "Endpoint each job is POSTed to (http or https).") var url: String
        @Option(help: "Durable consumer name shared by this queue's executors.") var durable: String?
        @Option(help: "How long one request may take, e.g. 10s (100ms … 25s).") var timeout: String = "10s"
        @Option(help: "Requests in flight at once.") var concurrency: Int = 16
        @Option(help: "Stop after this many jobs (default: run until Ctrl-C).") var count: Int?

        func run() async throws {
            guard let secret = ProcessInfo.processInfo.environment["SUNDIAL_WEBHOOK_SECRET"], !secret.isEmpty else {
                throw ValidationError("set SUNDIAL_WEBHOOK_SECRET (the HMAC secret shared with the endpoint)")
            }
            guard let endpoint = URL(string: url) else { throw ValidationError("--url: not a URL: \(url)") }
            var config = WebhookConfig(url: endpoint, secret: Array(secret.utf8))
            guard let limit = ScheduleDuration.parse(timeout) else { throw ValidationError("--timeout: not a duration: \(timeout)") }
            config.timeout = limit
            config.concurrency = concurrency
            do {
                try config.validate()
            } catch {
                throw ValidationError(error.description)
            }
            let nats = try await connection.connect(name: "sundial-work-webhook", as: .executor)
            var options = SundialWorker.Options()
            options.durable = durable
            let worker = try await SundialWorker.connect(connection: nats, queue: queue, options: options)
            let executor = try WebhookExecutor(worker: worker, config: config)
            print("POSTing jobs of queue \(queue) to \(endpoint.absoluteString)…")
            try await executor.run(count: count) { delivery in
                let outcome: String
                switch delivery.verdict {
                case .succeeded: outcome = "ok"
                case .failed(let reason, let retryable, _): outcome = "\(reason)\(retryable ? " (will retry)" : " (no retry)")"
                }
                print("\(RFC3339.format(Date())) timer=\(delivery.job.timerID) attempt=\(delivery.job.attempt) \(outcome)")
            }
            await nats.close()
        }
    }

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
