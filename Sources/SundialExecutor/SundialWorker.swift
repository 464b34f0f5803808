import Foundation
import SundialContract
import SundialMessaging
import SundialNATS
import SundialProto
import SundialSchedule

/// A job delivered to an executor: the timer's payload plus the Sundial headers.
public struct SundialJob: Sendable {
    public var timerID: String
    public var tenant: String
    public var queue: String
    public var scheduledAt: Date
    public var attempt: Int
    public var occurrence: Int
    public var version: UInt64
    public var priority: String
    public var firedAt: Date?
    public var dispatchedAt: Date?
    public var payload: [UInt8]
    /// 1 on first delivery; more when a previous executor did not acknowledge in time.
    public var deliveries: Int
    public let message: JetStreamMessage

    init(_ message: JetStreamMessage, queue: String) {
        self.message = message
        let headers = message.headers
        timerID = headers[SundialHeader.timerID] ?? ""
        tenant = headers[SundialHeader.tenant] ?? ""
        self.queue = queue
        scheduledAt = headers[SundialHeader.scheduledAt].flatMap(RFC3339.parse) ?? Date(timeIntervalSince1970: 0)
        attempt = headers[SundialHeader.attempt].flatMap { Int($0) } ?? 1
        occurrence = headers[SundialHeader.occurrence].flatMap { Int($0) } ?? 0
        version = headers[SundialHeader.version].flatMap { UInt64($0) } ?? 0
        priority = headers[SundialHeader.priority] ?? "normal"
        firedAt = headers[SundialHeader.firedAt].flatMap(RFC3339.parse)
        dispatchedAt = headers[SundialHeader.dispatchedAt].flatMap(RFC3339.parse)
        payload = message.payload
        deliveries = Int(clamping: message.metadata?.deliveries ?? 1)
    }

    /// Receive time minus due time: what the user experiences as lateness.
    public func lag(receivedAt: Date = Date()) -> TimeInterval {
        receivedAt.timeIntervalSince(scheduledAt)
    }
}

/// Executor-side client: consumes `sundial.work.<queue>` through a durable consumer shared
/// by all executors of that queue. A job not completed within `ackWait` is redelivered to
/// another executor, so an executor that dies loses nothing.
public final class SundialWorker: Sendable {
    public let queue: String
    public let consumer: JetStreamPullConsumer
    public let namespace: SundialNamespace

    public struct Options: Sendable {
        /// Durable consumer name; defaults to `executor-<queue>`.
        public var durable: String? = nil
        /// Time an executor has to finish (or signal progress) before redelivery.
        public var ackWait: Duration = .seconds(30)
        /// Jobs in flight per consumer across all executors.
        public var maxAckPending: Int = 1000
        public var namespace: SundialNamespace = .standard
        /// Replicas of the work stream if this executor is the first to create it (the
        /// services' `SUNDIAL_STREAM_REPLICAS`); an existing stream is left as it is.
        public var streamReplicas: Int = 1

        public init() {}
    }

    /// Ensures the work stream and the queue's durable consumer exist, then binds to it.
    public static func connect(connection: NATSConnection, queue: String, options: Options = Options()) async throws
        -> SundialWorker
    {
        guard SubjectToken.isValidQueue(queue) else {
            throw SundialError.invalid("queue", "must be 1–128 characters of [A-Za-z0-9_-], optionally dot-separated")
        }
        let namespace = options.namespace
        var limits = StreamLimits()
        limits.replicas = options.streamReplicas
        try await connection.createStreamIfAbsent(SundialTopology.workStream(namespace, limits: limits))
        let durable = options.durable ?? namespace.executorDurable(queue: queue)
        var config = JetStreamConsumerConfig(durableName: durable, filterSubjects: [namespace.work(queue: queue)])
        config.ackWait = options.ackWait
        config.maxAckPending = options.maxAckPending
        config.description = "Sundial executors of queue \(queue)"
        try await connection.ensureConsumer(stream: namespace.workStream, config)
        let consumer = try await JetStreamPullConsumer.bind(
            connection: connection, stream: namespace.workStream, durable: durable,
            filterSubject: namespace.work(queue: queue))
        return SundialWorker(queue: queue, consumer: consumer, namespace: namespace)
    }

    init(queue: String, consumer: JetStreamPullConsumer, namespace: SundialNamespace) {
        self.queue = queue
        self.consumer = consumer
        self.namespace = namespace
    }

    /// Up to `max` jobs, waiting at most `maxWait` when none are ready.
    public func next(max: Int = 64, maxWait: Duration = .seconds(1)) async throws -> [SundialJob] {
        try await consumer.fetch(batch: max, maxWait: maxWait).map { SundialJob($0, queue: queue) }
    }

    /// All jobs as they come, until the task is cancelled.
    public func jobs(prefetch: Int = 64) -> AsyncThrowingMapSequence<JetStreamPullConsumer.Messages, SundialJob> {
        let queue = self.queue
        return consumer.messages(prefetch: prefetch).map { SundialJob($0, queue: queue) }
    }

    /// The job succeeded. Reports it (durably, to the results stream), then acknowledges the
    /// job so it is not delivered again. If this throws, the job stays unacknowledged and is
    /// redelivered: report again then (a repeated report is ignored).
    public func complete(_ job: SundialJob) async throws { try await complete([job]) }

    public func complete(_ jobs: [SundialJob]) async throws {
        try await report(jobs.map { ($0, nil) })
    }

    /// What failed, for `fail`: the job itself, the downstream it calls, or not said.
    public enum FailureCause: Sendable {
        /// Not said: counts against the job's attempts and towards the queue's circuit breaker.
        case unspecified
        /// The job itself (bad input, a 4xx other than 408/429): its attempts only.
        case job
        /// The downstream (connection error, timeout, 429, 502/503/504): it counts towards the
        /// circuit breaker of this queue (and of this tenant on it), which holds the queue's
        /// due jobs in Sundial while the downstream is down.
        case downstream

        var wire: Sundial_V1_FailureClass {
            switch self {
            case .unspecified: return .unspecified
            case .job: return .job
            case .downstream: return .downstream
            }
        }
    }

    /// The job failed: Sundial retries it with backoff under the timer's retry policy, or
    /// dead-letters it (and notifies the tenant) after the last attempt.
    /// `retryable: false` dead-letters it at once, whatever attempts are left (a request that
    /// can never succeed).
    public func fail(_ job: SundialJob, error: String, cause: FailureCause = .unspecified, retryable: Bool = true) async throws {
        try await report([(job, error)], cause: cause, retryable: retryable)
    }

    private func report(_ outcomes: [(SundialJob, String?)], cause: FailureCause = .unspecified, retryable: Bool = true)
        async throws
    {
        guard !outcomes.isEmpty else { return }
        let now = Date()
        var messages: [NATSOutgoingMessage] = []
        for (job, error) in outcomes {
            var result = Sundial_V1_JobResult()
            result.tenant = job.tenant
            result.timerID = job.timerID
            // Header values are whatever was on the message: convert with clamps, never trap.
            result.occurrence = UInt64(clamping: max(0, job.occurrence))
            result.attempt = UInt32(clamping: max(1, job.attempt))
            result.version = job.version
            result.success = error == nil
            result.error = error ?? ""
            result.finishedAt = Google_Protobuf_Timestamp(date: now)
            result.queue = queue
            if error != nil {
                result.failureClass = cause.wire
                if !retryable { result.retryable = false }
            }
            var headers = NATSHeaders()
            headers[SundialHeader.natsMessageID] = HeaderValue.sanitized(
                "\(job.timerID):\(job.occurrence):\(job.attempt):result", maximumBytes: 256)
            messages.append(
                NATSOutgoingMessage(
                    subject: namespace.results(tenant: SubjectToken.isValidTenant(job.tenant) ? job.tenant : "unknown"),
                    headers: headers, payload: try result.serializedBytes()))
        }
        for result in await consumer.connection.jetStream.publish(batch: messages) {
            _ = try result.get()
        }
        try await consumer.ack(outcomes.map(\.0.message))
    }

    /// Give the job back for redelivery after `delay`.
    public func release(_ job: SundialJob, delay: Duration? = nil) async throws {
        try await consumer.nak(job.message, delay: delay)
    }

    /// Still working: resets the redelivery timer.
    public func extend(_ job: SundialJob) async throws { try await consumer.inProgress(job.message) }
}
