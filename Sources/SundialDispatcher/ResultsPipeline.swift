import Foundation
import SundialContract
import SundialCore
import SundialFairness
import SundialMessaging
import SundialNATS
import SundialPostgres
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
        // Every result is parsed with checks first; a refused one is terminated on its own
        // and never holds back the rest of the batch.
        let receivedAt = Date()
        var successes: [(JetStreamMessage, JobOutcome)] = []
        var failures: [(JetStreamMessage, ParsedJobResult)] = []
        var outcomes: [QueueTenant: (succeeded: Int, failed: Int, failedFirst: Int)] = [:]
        for message in batch {
            let tenant = config.namespace.tenant(fromResultsSubject: message.subject)
            switch JobResultParser.parse(message.payload, subjectTenant: tenant, receivedAt: receivedAt) {
            case .failure(let rejection):
                await rejectResult(message, rejection, tenant: tenant, consumer)
            case .success(let parsed):
                if parsed.finishedAtReplaced { stats.count(.resultFinishedAtReplaced) }
                // The downstream's health, once per result (not again on a redelivery).
                if (message.metadata?.deliveries ?? 1) == 1, SubjectToken.isValidTenant(parsed.tenant) {
                    let key = QueueTenant(queue: parsed.queue, tenant: parsed.tenant)
                    outcomes[key, default: (0, 0, 0)].succeeded += parsed.outcome.success ? 1 : 0
                    outcomes[key, default: (0, 0, 0)].failed += parsed.downstreamFailure ? 1 : 0
                    outcomes[key, default: (0, 0, 0)].failedFirst +=
                        parsed.downstreamFailure && parsed.outcome.key.attempt == 1 ? 1 : 0
                }
                if parsed.outcome.success {
                    successes.append((message, parsed.outcome))
                } else {
                    failures.append((message, parsed))
                }
            }
        }
        // Counted before the failures are applied: whether a failure's attempt is given back
        // depends on the downstream's window including it.
        let now = ContinuousClock.now
        gate.withLock { gate in
            for (key, o) in outcomes {
                gate.recordResults(
                    queue: key.queue, tenant: key.tenant, succeeded: o.succeeded, failedDownstream: o.failed,
                    failedFirstAttempts: o.failedFirst, now: now)
            }
        }
        // Successes — nearly all results — in one set-wise transaction per batch.
        if !successes.isEmpty {
            do {
                let effects = try await timers.applySuccesses(successes.map(\.1))
                stats.succeeded.add(effects.applied, ordering: .relaxed)
                stats.resultsIgnored.add(successes.count - effects.applied, ordering: .relaxed)
                await publishEvents(effects.events)
                try? await consumer.ack(successes.map(\.0))
            } catch let error as PostgresError where error.isConnectionFailure {
                logger.warning("applying \(successes.count) results failed; redelivering: \(error)")
                try? await consumer.nak(successes.map(\.0), delay: config.retryDelay)
            } catch {
                // Not the database being away: find the result that cannot be applied by
                // applying each alone, so the others go through.
                logger.warning("applying \(successes.count) results set-wise failed; one by one: \(error)")
                for (message, outcome) in successes {
                    do {
                        let effects = try await timers.applySuccesses([outcome])
                        stats.succeeded.add(effects.applied, ordering: .relaxed)
                        stats.resultsIgnored.add(1 - effects.applied, ordering: .relaxed)
                        await publishEvents(effects.events)
                        try? await consumer.ack(message)
                    } catch {
                        await resultNotApplied(message, error, consumer)
                    }
                }
            }
        }
        // Failures (retries, dead letters) one transaction each, up to 8 at a time.
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for (message, outcome) in failures {
                if running >= 8 {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await self.applyFailure(message, outcome, consumer) }
            }
        }
    }

    /// A result that could not be applied: the database being away is waited out (nak with
    /// a delay, never poisoned); any other error is retried a few times, then poisoned.
    private func resultNotApplied(_ message: JetStreamMessage, _ error: any Error, _ consumer: JetStreamPullConsumer)
        async
    {
        // Transient: the database away or shutting down, a deadlock or serialization failure.
        // Those naks do not count toward poisoning (JetStream's delivery count would include
        // an outage's redeliveries), so failures are counted here, per stream sequence.
        if let pg = error as? PostgresError, pg.isConnectionFailure || pg.isSerializationFailure || pg.kind == .closed {
            logger.warning("applying a result on \(message.subject) failed; redelivering: \(error)")
            try? await consumer.nak(message, delay: config.retryDelay)
            return
        }
        let sequence = message.metadata?.streamSequence ?? 0
        let deliveries = UInt64(resultFailures.withLock { failures -> Int in
            if failures.count > 10_000 { failures.removeAll() }  // bounded; a lost count only delays poisoning
            failures[sequence, default: 0] += 1
            return failures[sequence]!
        })
        if deliveries >= UInt64(config.poisonAfterDeliveries) {
            resultFailures.withLock { _ = $0.removeValue(forKey: sequence) }
            stats.count(.resultPoisoned)
            logger.error("a result on \(message.subject) failed \(deliveries) times; poisoned: \(error)")
            await poison(message, reason: "could not be applied after \(deliveries) deliveries: \(error)", consumer)
        } else {
            logger.warning("applying a result on \(message.subject) failed (delivery \(deliveries)): \(error)")
            try? await consumer.nak(message, delay: config.retryDelay * Int(min(deliveries, 30)))
        }
    }

    /// Terminates a refused result: counted, logged, kept on the poison subject with its
    /// reason, and reported to the tenant as a `result_rejected` event.
    private func rejectResult(
        _ message: JetStreamMessage, _ rejection: JobResultRejection, tenant: String?, _ consumer: JetStreamPullConsumer
    ) async {
        stats.countRejection(rejection.kind)
        logger.error("rejected a job result on \(message.subject.prefix(200)): \(rejection.reason)")
        if let tenant {
            var event = Sundial_V1_TimerEvent()
            event.kind = TimerEventKind.resultRejected
            event.run.error = rejection.reason
            event.run.outcome = "rejected"
            if let result = try? Sundial_V1_JobResult(serializedBytes: message.payload) {
                if TimerID.parse(result.timerID) != nil { event.timer.id = result.timerID }
                event.run.occurrence = result.occurrence
                event.run.attempt = result.attempt
            }
            event.timer.tenant = tenant
            event.at = Google_Protobuf_Timestamp(date: Date())
            var headers = NATSHeaders()
            if let sequence = message.metadata?.streamSequence {
                headers[SundialHeader.natsMessageID] = "result-rejected:\(config.namespace.resultsStream):\(sequence)"
            }
            if let body = try? event.serializedBytes() as [UInt8],
                case .failure(let error) = await connection.jetStream.publish(batch: [
                    NATSOutgoingMessage(
                        subject: config.namespace.event(tenant: tenant, kind: TimerEventKind.resultRejected),
                        headers: headers, payload: body)
                ])[0]
            {
                logger.warning("publishing a result_rejected event for \(tenant) failed: \(error)")
            }
        }
        await poison(message, reason: rejection.reason, consumer)
    }

    /// Keeps a message we will not process on `<root>.poison.<source>` (stream
    /// `<prefix>_POISON`, bounded) with its reason, then terminates it.
    func poison(_ message: JetStreamMessage, reason: String, _ consumer: JetStreamPullConsumer) async {
        var headers = NATSHeaders()
        headers[SundialHeader.poisonReason] = HeaderValue.sanitized(reason)
        headers[SundialHeader.poisonSubject] = HeaderValue.sanitized(message.subject)
        if let metadata = message.metadata {
            headers[SundialHeader.natsMessageID] = "poison:\(metadata.stream):\(metadata.streamSequence)"
        }
        let source = message.subject.hasPrefix(config.namespace.subjectRoot + ".results.") ? "results" : "fired"
        let published = await connection.jetStream.publish(batch: [
            NATSOutgoingMessage(subject: config.namespace.poison(source: source), headers: headers, payload: message.payload)
        ])[0]
        if case .failure(let error) = published {
            logger.warning("keeping a poison message failed (terminated anyway): \(error)")
        }
        try? await consumer.term(message)
    }

    /// A failure report, parsed (successes were applied set-wise). A failure that counts
    /// towards the downstream's breaker while it trips or is open gets its attempt back.
    private func applyFailure(
        _ message: JetStreamMessage, _ parsed: ParsedJobResult, _ consumer: JetStreamPullConsumer
    ) async {
        let outcome = parsed.outcome
        let judgement = parsed.downstreamFailure && outcome.retryable
            ? gate.withLock { $0.judgeFailure(queue: parsed.queue, tenant: parsed.tenant, now: .now) } : .healthy
        let effects: ResultEffects
        do {
            effects = try await timers.applyFailure(
                outcome,
                handling: FailureHandling(
                    refund: judgement == .tripping, suspected: judgement == .suspected,
                    maximumRefunds: config.maximumRefunds))
        } catch {
            await resultNotApplied(message, error, consumer)
            return
        }
        if effects.ignored { stats.resultsIgnored.add(1, ordering: .relaxed) }
        if effects.refunded { stats.attemptsRefunded.add(1, ordering: .relaxed) }
        if let retry = effects.retry {
            stats.attemptsFailed.add(1, ordering: .relaxed)
            // If this publish fails the retry run stays armed in Postgres: the Planner's
            // rescue pass republishes it.
            let fire = retry
            if let message = try? fire.scheduleMessage(config.namespace),
                case .failure(let error) = await connection.jetStream.publish(batch: [message])[0]
            {
                logger.warning("publishing retry of \(retry.timerID) failed; rescue will republish it: \(error)")
            }
        }
        for event in effects.events where event.kind == TimerEventKind.deadLetter {
            stats.deadLettered.add(1, ordering: .relaxed)
        }
        await publishEvents(
            effects.events,
            detail: effects.refunded
                ? "attempt refunded: the queue's downstream was failing (circuit breaker tripping or open)" : nil)
        try? await consumer.ack(message)
    }

    /// Publishes tenant events about runs in one batch (deduplicated by timer, occurrence,
    /// attempt and kind). `detail` goes on `attempt_failed` events. A failed publish is logged:
    /// the run's state in Postgres and History still say what happened.
    private func publishEvents(
        _ events: [(kind: String, timer: StoredTimer, run: StoredRun)], detail: String? = nil
    ) async {
        guard !events.isEmpty else { return }
        var messages: [NATSOutgoingMessage] = []
        for event in events {
            var proto = Sundial_V1_TimerEvent()
            proto.kind = event.kind
            proto.timer = TimerMapping.proto(event.timer)
            proto.run = TimerMapping.proto(event.run)
            proto.at = Google_Protobuf_Timestamp(date: Date())
            if let detail, event.kind == TimerEventKind.attemptFailed { proto.detail = detail }
            var headers = NATSHeaders()
            headers[SundialHeader.natsMessageID] =
                "\(TimerID.text(event.timer.id)):\(event.run.occurrence):\(event.run.attempt):\(event.kind)"
            guard let body = try? proto.serializedBytes() as [UInt8] else { continue }
            messages.append(
                NATSOutgoingMessage(
                    subject: config.namespace.event(tenant: event.timer.tenant, kind: event.kind),
                    headers: headers, payload: body))
        }
        for (message, result) in zip(messages, await connection.jetStream.publish(batch: messages)) {
            if case .failure(let error) = result {
                logger.warning("publishing the event on \(message.subject) failed: \(error)")
            }
        }
    }
}
