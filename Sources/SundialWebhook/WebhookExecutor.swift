import Foundation
import SundialExecutor

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Settings of a webhook executor; validated before it starts.
public struct WebhookConfig: Sendable {
    /// Where each job is POSTed (http or https).
    public var url: URL
    /// The shared HMAC secret (at least 16 bytes).
    public var secret: [UInt8]
    /// How long one request may take; past it the attempt fails with retry. Below the work
    /// consumer's `ack_wait` (30 s), so a slow endpoint never gets the job redelivered too.
    public var timeout: Duration = .seconds(10)
    /// Requests in flight at once.
    public var concurrency: Int = 16

    public init(url: URL, secret: [UInt8]) {
        self.url = url
        self.secret = secret
    }

    public func validate() throws(WebhookConfigError) {
        guard let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil else {
            throw WebhookConfigError("the URL must be http(s)://host…, got \(url.absoluteString)")
        }
        guard secret.count >= 16 else { throw WebhookConfigError("the secret must be at least 16 bytes") }
        guard timeout >= .milliseconds(100), timeout <= .seconds(25) else {
            throw WebhookConfigError("the timeout must be 100ms … 25s (below the work consumer's 30 s ack wait)")
        }
        guard (1...1024).contains(concurrency) else { throw WebhookConfigError("concurrency must be 1 … 1024") }
    }
}

public struct WebhookConfigError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// An executor that POSTs each job of a queue to a URL (`sundial work webhook`): signed
/// (`WebhookRequest`), `concurrency` at a time; the answer settles the job — 2xx completes it,
/// a 4xx (but 408/429) fails it without retry, 5xx/408/429/no answer fail it with retry as a
/// downstream failure (so the queue's circuit breaker sees an endpoint that is down).
public final class WebhookExecutor: Sendable {
    public let worker: SundialWorker
    public let config: WebhookConfig
    private let session: URLSession

    public init(worker: SundialWorker, config: WebhookConfig) throws {
        try config.validate()
        self.worker = worker
        self.config = config
        let configuration = URLSessionConfiguration.ephemeral
        let seconds = Double(config.timeout.components.seconds) + Double(config.timeout.components.attoseconds) / 1e18
        configuration.timeoutIntervalForRequest = seconds
        configuration.timeoutIntervalForResource = seconds
        configuration.httpMaximumConnectionsPerHost = config.concurrency
        session = URLSession(configuration: configuration)
    }

    /// What happened to one job.
    public struct Delivery: Sendable {
        public var job: SundialJob
        public var verdict: WebhookRequest.Verdict
    }

    /// Consumes jobs until cancelled, or until `count` jobs were settled; `observe` sees each.
    public func run(count: Int? = nil, observe: @escaping @Sendable (Delivery) -> Void = { _ in }) async throws {
        var settled = 0
        while !Task.isCancelled, count.map({ settled < $0 }) ?? true {
            let wanted = min(config.concurrency, count.map { $0 - settled } ?? config.concurrency)
            let jobs = try await worker.next(max: wanted, maxWait: .seconds(1))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for job in jobs {
                    group.addTask {
                        let delivery = Delivery(job: job, verdict: await self.deliver(job))
                        try await self.settle(delivery)
                        observe(delivery)
                    }
                }
                try await group.waitForAll()
            }
            settled += jobs.count
        }
    }

    /// POSTs one job and judges the answer.
    public func deliver(_ job: SundialJob) async -> WebhookRequest.Verdict {
        var request = URLRequest(url: config.url)
        request.httpMethod = "POST"
        let timestamp = Int64(Date().timeIntervalSince1970)
        for (name, value) in WebhookRequest.headers(for: job, secret: config.secret, timestamp: timestamp) {
            request.setValue(value, forHTTPHeaderField: name)
        }
        request.httpBody = Data(job.payload)
        let (status, error) = await post(request)
        return WebhookRequest.verdict(status: status, transportError: error)
    }

    private func settle(_ delivery: Delivery) async throws {
        switch delivery.verdict {
        case .succeeded:
            try await worker.complete(delivery.job)
        case .failed(let reason, let retryable, let downstream):
            try await worker.fail(delivery.job, error: reason, cause: downstream ? .downstream : .job, retryable: retryable)
        }
    }

    /// The completion handler runs on URLSession's own queue and only hands the answer over.
    private func post(_ request: URLRequest) async -> (Int?, String?) {
        await withCheckedContinuation { continuation in
            session.dataTask(with: request) { _, response, error in
                if let error {
                    continuation.resume(returning: (nil, error.localizedDescription))
                } else {
                    continuation.resume(returning: ((response as? HTTPURLResponse)?.statusCode, nil))
                }
            }.resume()
        }
    }
}
