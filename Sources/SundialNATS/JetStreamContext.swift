import CNats
import Foundation
import SundialThreads
import Synchronization

/// A successful JetStream publish acknowledgement.
public struct JetStreamPubAck: Sendable, Hashable {
    public var stream: String
    public var sequence: UInt64
    /// The stream's dedupe window already held this `Nats-Msg-Id`.
    public var duplicate: Bool
}

/// JetStream publishing and API access over one connection.
///
/// Publishing uses `js_PublishMsgAsync` with a per-context ack handler: each message is
/// keyed by its cnats pointer until its ack (or error) arrives, and a batch resumes its one
/// waiting task when its last ack is in. Retryable failures — the cnats stall timeout (the
/// message was *not* sent), ack timeouts, "no responders" while a stream is unavailable,
/// disconnects — are retried with the same headers (so `Nats-Msg-Id` dedupes a resend)
/// until `jetStreamRetryBudget` runs out; then the caller gets an explicit error. Nothing is
/// dropped silently.
public final class JetStreamContext: @unchecked Sendable {
    // @unchecked: `handle` (jsCtx*) is thread-safe in cnats; it is destroyed in deinit.
    private let handle: OpaquePointer
    private let connection: OpaquePointer
    private let acks: Unmanaged<AckRouter>
    private let publisher: DedicatedThread
    private let ackTimeout: Duration
    private let retryBudget: Duration
    /// Set when the connection starts closing: the publisher thread stops submitting (and
    /// stops waiting out stalls) so `close()`, queued behind it, is not held up for minutes
    /// while an unreachable server leaves the in-flight limit full.
    private let closing = Atomic<Bool>(false)

    init(
        connection: OpaquePointer, options: NATSConnectionOptions, publisher: DedicatedThread
    ) throws(NATSError) {
        self.connection = connection
        self.publisher = publisher
        ackTimeout = options.jetStreamAckTimeout
        retryBudget = options.jetStreamRetryBudget
        let router = Unmanaged.passRetained(AckRouter())
        var jsOpts = jsOptions()
        jsOptions_Init(&jsOpts)
        jsOpts.Wait = 5000
        jsOpts.PublishAsync.MaxPending = Int64(options.maxPendingJetStreamPublishes)
        jsOpts.PublishAsync.StallWait = 200
        jsOpts.PublishAsync.AckHandler = routeAck
        jsOpts.PublishAsync.AckHandlerClosure = router.toOpaque()
        var js: OpaquePointer? = nil
        let status = natsConnection_JetStream(&js, connection, &jsOpts)
        guard status == NATS_OK, let js else {
            router.release()
            throw NATSError(status: status, context: "natsConnection_JetStream")
        }
        handle = js
        acks = router
    }

    deinit {
        jsCtx_Destroy(handle)
        acks.release()
    }

    func shutdown() {
        acks.takeUnretainedValue().failAll()
    }

    /// Called first thing in `NATSConnection.close()`.
    func beginClose() { closing.store(true, ordering: .releasing) }

    private var isClosing: Bool { closing.load(ordering: .acquiring) }

    // MARK: publishing

    /// Publishes one message and returns its ack. Throws the JetStream error for a
    /// non-retryable rejection (e.g. a failed `Nats-Expected-Last-Subject-Sequence`).
    public func publish(_ message: NATSOutgoingMessage) async throws -> JetStreamPubAck {
        try await publish(batch: [message])[0].get()
    }

    /// Publishes many messages with one thread hop per attempt round; results are in order.
    public func publish(batch messages: [NATSOutgoingMessage]) async
        -> [Result<JetStreamPubAck, NATSError>]
    {
        guard !messages.isEmpty else { return [] }
        var results = [Result<JetStreamPubAck, NATSError>?](repeating: nil, count: messages.count)
        var outstanding = Array(messages.indices)
        let giveUp = ContinuousClock.now + retryBudget
        var backoff = Duration.milliseconds(50)
        while true {
            // A round may run until the budget ends, but always gets one ack timeout: the last
            // attempt after the backoff still reports the server's answer, not a bare timeout.
            let round = await submitRound(
                outstanding.map { messages[$0] }, giveUp: max(giveUp, ContinuousClock.now + ackTimeout))
            var retry: [Int] = []
            for (position, result) in zip(outstanding, round) {
                switch result {
                case .failure(let error) where error.isRetryable && ContinuousClock.now < giveUp:
                    retry.append(position)
                default:
                    results[position] = result
                }
            }
            if retry.isEmpty { break }
            outstanding = retry
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(2))
        }
        return results.map { $0! }
    }

    /// One attempt for each message: submit on the publisher thread, await all acks.
    /// Messages not yet submitted when `giveUp` passes (a long stall behind an unreachable
    /// server) fail unsent with `.timeout`, so a batch larger than the in-flight limit still
    /// returns within about the retry budget.
    private func submitRound(_ messages: [NATSOutgoingMessage], giveUp: ContinuousClock.Instant) async
        -> [Result<JetStreamPubAck, NATSError>]
    {
        let js = CHandle(handle)
        let router = acks.takeUnretainedValue()
        let maxWait = ackTimeout.milliseconds
        return await withCheckedContinuation { continuation in
            let batch = AckBatch(count: messages.count, continuation: continuation)
            let accepted = publisher.submit {
                var options = jsPubOptions()
                jsPubOptions_Init(&options)
                options.MaxWait = maxWait
                for (index, message) in messages.enumerated() {
                    if self.isClosing {
                        batch.complete(index, .failure(NATSError(kind: .closed, message: "connection closed")))
                        continue
                    }
                    if ContinuousClock.now >= giveUp {
                        batch.complete(
                            index, .failure(NATSError(kind: .timeout, message: "publish \(message.subject): retry budget spent before it could be sent")))
                        continue
                    }
                    let msg: OpaquePointer
                    do throws(NATSError) {
                        msg = try message.makeNATSMessage()
                    } catch {
                        batch.complete(index, .failure(error))
                        continue
                    }
                    router.register(msg, batch: batch, index: index)
                    var owned: OpaquePointer? = msg
                    var status = js_PublishMsgAsync(js.raw, &owned, &options)
                    // NATS_TIMEOUT here means the in-flight limit stayed full for StallWait:
                    // the message was not sent and is still ours. Wait and try again.
                    var stalls = 0
                    while status == NATS_TIMEOUT && stalls < 300 && !self.isClosing && ContinuousClock.now < giveUp {
                        stalls += 1
                        status = js_PublishMsgAsync(js.raw, &owned, &options)
                    }
                    if status != NATS_OK {
                        router.unregister(msg)
                        if let owned { natsMsg_Destroy(owned) }
                        let error =
                            status == NATS_TIMEOUT && self.isClosing
                            ? NATSError(kind: .closed, message: "connection closed")
                            : NATSError(status: status, context: "publish \(message.subject)")
                        batch.complete(index, .failure(error))
                    }
                }
            }
            if !accepted {
                for index in messages.indices {
                    batch.complete(index, .failure(NATSError(kind: .closed, message: "connection closed")))
                }
            }
        }
    }

    var rawHandle: OpaquePointer { handle }
}

extension NATSError {
    /// The stream refused the message at one of its limits (messages per subject, messages,
    /// bytes, with discard new): resending succeeds once consumers make room.
    public var isStreamLimitReached: Bool {
        guard kind == .jetStream else { return false }
        let text = message.lowercased()
        return text.contains("maximum messages") || text.contains("maximum bytes")
    }

    /// Failures where resending the same message is safe and may succeed.
    public var isRetryable: Bool {
        switch kind {
        case .timeout, .noResponders: return true
        case .client:
            return status == Int32(NATS_CONNECTION_DISCONNECTED.rawValue)
                || status == Int32(NATS_INSUFFICIENT_BUFFER.rawValue)
                || status == Int32(NATS_TIMEOUT.rawValue)
                || status == Int32(NATS_NO_SERVER.rawValue)
                || status == Int32(NATS_STALE_CONNECTION.rawValue)
        case .jetStream:
            // 503-class: stream temporarily unavailable (leader election, restart).
            return status == 503
        case .protocolViolation, .closed: return false
        }
    }
}

/// Collects the results of one submitted round and resumes its waiter when all are in.
final class AckBatch: Sendable {
    private struct State {
        var results: [Result<JetStreamPubAck, NATSError>?]
        var remaining: Int
        var continuation: CheckedContinuation<[Result<JetStreamPubAck, NATSError>], Never>?
    }

    private let state: Mutex<State>

    init(count: Int, continuation: CheckedContinuation<[Result<JetStreamPubAck, NATSError>], Never>) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count, continuation: continuation))
    }

    func complete(_ index: Int, _ result: Result<JetStreamPubAck, NATSError>) {
        let finished: (CheckedContinuation<[Result<JetStreamPubAck, NATSError>], Never>, [Result<JetStreamPubAck, NATSError>])? =
            state.withLock { state in
                guard state.results[index] == nil else { return nil }
                state.results[index] = result
                state.remaining -= 1
                guard state.remaining == 0, let continuation = state.continuation else { return nil }
                state.continuation = nil
                return (continuation, state.results.map { $0! })
            }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }
}

/// Maps in-flight cnats message pointers to their batch slot.
final class AckRouter: Sendable {
    private struct Slot {
        let batch: AckBatch
        let index: Int
    }

    private let slots = Mutex<[UInt: Slot]>([:])

    func register(_ msg: OpaquePointer, batch: AckBatch, index: Int) {
        slots.withLock { $0[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg)))] = Slot(batch: batch, index: index) }
    }

    func unregister(_ msg: OpaquePointer) {
        _ = slots.withLock { $0.removeValue(forKey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg)))) }
    }

    /// Removes the slot before the caller destroys the message, so a reused address can't
    /// be confused with this one.
    func take(_ msg: OpaquePointer) -> (AckBatch, Int)? {
        slots.withLock { $0.removeValue(forKey: UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(msg)))) }
            .map { ($0.batch, $0.index) }
    }

    func failAll() {
        let all = slots.withLock { slots in
            defer { slots.removeAll() }
            return Array(slots.values)
        }
        for slot in all {
            slot.batch.complete(slot.index, .failure(NATSError(kind: .closed, message: "connection closed")))
        }
    }
}

/// cnats ack callback: copy the outcome, destroy the message, resume the batch.
private let routeAck: jsPubAckHandler = { _, msg, pubAck, pubAckErr, closure in
    guard let closure, let msg else { return }
    let router = Unmanaged<AckRouter>.fromOpaque(closure).takeUnretainedValue()
    let slot = router.take(msg)
    let result: Result<JetStreamPubAck, NATSError>
    if let pubAck {
        result = .success(
            JetStreamPubAck(
                stream: pubAck.pointee.Stream.map { String(cString: $0) } ?? "",
                sequence: pubAck.pointee.Sequence, duplicate: pubAck.pointee.Duplicate))
    } else if let pubAckErr {
        let err = pubAckErr.pointee
        let text = err.ErrText.map { String(cString: $0) } ?? String(cString: natsStatus_GetText(err.Err))
        if err.ErrCode.rawValue != 0 {
            result = .failure(
                NATSError(
                    kind: .jetStream, status: Int32(bitPattern: err.Err.rawValue),
                    jetStreamErrorCode: Int(err.ErrCode.rawValue), message: text))
        } else {
            result = .failure(NATSError(status: err.Err, context: "publish ack"))
        }
    } else {
        result = .failure(NATSError(kind: .protocolViolation, message: "empty publish ack"))
    }
    natsMsg_Destroy(msg)
    if let (batch, index) = slot { batch.complete(index, result) }
}
