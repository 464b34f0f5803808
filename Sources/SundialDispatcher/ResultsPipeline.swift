import Foundation
import SundialContract
import SundialNATS
import SundialProto
import SundialSchedule
import SundialStore

/// Executor results → finished runs, retries with backoff, dead letters and tenant events,
/// and the start of dependent timers. Runs inside each Dispatcher instance on the shared
/// durable consumer of `SUNDIAL_RESULTS`.
extension DispatcherService {
    func resultsPipeline(_ consumer: JetStreamPullConsumer) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let batch = try await consumer.fetch(batch: 256, maxWait: config.fetchMaxWait)
                backoff = .milliseconds(100)
                if batch.isEmpty { continue }
                await Task { await self.applyResults(batch, consumer) }.value
            } catch {
                if Task.isCancelled { break }
                logger.warning("results fetch failed, retrying in \(backoff): \(error)")
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    private func applyResults(_ batch: [JetStreamMessage], _ consumer: JetStreamPullConsumer) async {
        // Successes — nearly all results — in one set-wise transaction per batch.
        var successes: [(JetStreamMessage, JobOutcome)] = []
        var others: [JetStreamMessage] = []
        for message in batch {
            if let result = try? Sundial_V1_JobResult(serializedBytes: message.payload), result.success,
                let id = TimerID.parse(result.timerID)
            {
                successes.append((message, JobOutcome(
                    key: FireKey(id: id, occurrence: Int64(result.occurrence), attempt: Int(result.attempt)),
                    success: true, error: nil, finishedAt: result.hasFinishedAt ? result.finishedAt.date : Date())))
            } else {
                others.append(message)
            }
        }
        if !successes.isEmpty {
            do {
                let count = try await timers.applySuccesses(successes.map(\.1), childStart: Self.childStart)
                stats.succeeded.add(count, ordering: .relaxed)
                try? await consumer.ack(successes.map(\.0))
            } catch {
                logger.warning("applying \(successes.count) results failed; redelivering: \(error)")
                try? await consumer.nak(successes.map(\.0), delay: config.retryDelay)
            }
        }
        // Failures (retries, dead letters) one transaction each, up to 8 at a time.
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for message in others {
                if running >= 8 {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await self.applyFailure(message, consumer) }
            }
        }
    }

    /// A failure report (successes were applied set-wise) or an undecodable message.
    private func applyFailure(_ message: JetStreamMessage, _ consumer: JetStreamPullConsumer) async {
        guard let result = try? Sundial_V1_JobResult(serializedBytes: message.payload),
            let id = TimerID.parse(result.timerID)
        else {
            logger.error("undecodable job result on \(message.subject); terminating it")
            try? await consumer.term(message)
            return
        }
        let outcome = JobOutcome(
            key: FireKey(id: id, occurrence: Int64(result.occurrence), attempt: Int(result.attempt)),
            success: result.success, error: result.error.isEmpty ? nil : result.error,
            finishedAt: result.hasFinishedAt ? result.finishedAt.date : Date())
        let effects: ResultEffects
        do {
            effects = try await timers.applyFailure(outcome, retryAt: Self.retryTime)
        } catch {
            logger.warning("applying result of \(result.timerID) failed; redelivering: \(error)")
            try? await consumer.nak(message, delay: config.retryDelay)
            return
        }
        if let retry = effects.retry {
            stats.attemptsFailed.add(1, ordering: .relaxed)
            // If this publish fails the retry run stays armed in Postgres: the Planner's
            // rescue pass republishes it.
            let fire = ScheduledFire(
                tenant: retry.tenant, timerID: retry.id, shard: retry.shard, version: retry.version,
                dueAt: retry.nextFireAt, occurrence: retry.occurrence, attempt: retry.attempt, queue: retry.queue,
                payload: retry.payload, priority: retry.priority)
            if let message = try? fire.scheduleMessage(config.namespace),
                case .failure(let error) = await connection.jetStream.publish(batch: [message])[0]
            {
                logger.warning("publishing retry of \(retry.id) failed; rescue will republish it: \(error)")
            }
        }
        for event in effects.events {
            if event.kind == "dead_letter" { stats.deadLettered.add(1, ordering: .relaxed) }
            var proto = Sundial_V1_TimerEvent()
            proto.kind = event.kind
            proto.timer = TimerMapping.proto(event.timer)
            proto.run = TimerMapping.proto(event.run)
            proto.at = Google_Protobuf_Timestamp(date: Date())
            var headers = NATSHeaders()
            headers[SundialHeader.natsMessageID] =
                "\(TimerID.text(event.timer.id)):\(event.run.occurrence):\(event.run.attempt):\(event.kind)"
            if let body = try? proto.serializedBytes() as [UInt8],
                case .failure(let error) = await connection.jetStream.publish(batch: [
                    NATSOutgoingMessage(
                        subject: config.namespace.event(tenant: event.timer.tenant, kind: event.kind),
                        headers: headers, payload: body)
                ])[0]
            {
                logger.warning("publishing \(event.kind) event for \(event.timer.id) failed: \(error)")
            }
        }
        try? await consumer.ack(message)
    }

    /// When the next attempt runs, or nil when the timer's retry policy is exhausted.
    @Sendable static func retryTime(_ timer: StoredTimer, failedAttempt: Int) -> Date? {
        let policy = RetryBackoff(timer.retryPolicy.flatMap { try? Sundial_V1_RetryPolicy(serializedBytes: $0) })
        guard policy.allowsRetry(after: failedAttempt) else { return nil }
        let delay = policy.delay(after: failedAttempt, timerID: TimerID.text(timer.id), occurrence: timer.occurrence)
        return Date().addingTimeInterval(Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
    }

    /// A dependent timer's first fire, its schedule starting when the parent succeeded.
    @Sendable static func childStart(_ child: StoredTimer, parentSucceededAt: Date) -> (fireAt: Date, nominal: Date)? {
        guard let schedule = try? TimerSchedule(proto: Sundial_V1_Schedule(serializedBytes: child.schedule)),
            let first = OccurrenceStepper.first(schedule, timerID: TimerID.text(child.id), createdAt: parentSucceededAt)
        else { return nil }
        return (first.fireAt, first.nominal)
    }
}
