import CNats
import SundialThreads
import Synchronization

/// A core NATS subscription delivered as an `AsyncSequence` of copied messages.
/// Iterate it from one task. Ends when unsubscribed or the connection closes.
public final class NATSSubscription: AsyncSequence, @unchecked Sendable {
    // @unchecked: `handle` is a thread-safe cnats object destroyed only in deinit.
    public typealias Element = NATSMessage

    enum SinkKind {
        case stream(bufferLimit: Int)
        case requestReplies(RequestMux)
    }

    private let handle: OpaquePointer
    private let stream: AsyncStream<NATSMessage>
    private let sink: SubscriptionSink
    private let thread: DedicatedThread
    public let subject: String

    /// Must run on `thread` (the connection's): the SUB is written under cnats's connection
    /// lock and may flush the socket.
    static func subscribe(
        connection: OpaquePointer, subject: String, queue: String?, sink kind: SinkKind, thread: DedicatedThread
    ) throws(NATSError) -> NATSSubscription {
        let sink: SubscriptionSink
        let stream: AsyncStream<NATSMessage>
        switch kind {
        case .stream(let limit):
            let (s, continuation) = AsyncStream<NATSMessage>.makeStream(
                bufferingPolicy: .bufferingOldest(limit))
            stream = s
            sink = SubscriptionSink(continuation: continuation, mux: nil)
        case .requestReplies(let mux):
            let (s, continuation) = AsyncStream<NATSMessage>.makeStream()
            stream = s
            sink = SubscriptionSink(continuation: continuation, mux: mux)
        }
        // The sink is retained until cnats reports the subscription complete.
        let closure = Unmanaged.passRetained(sink).toOpaque()
        var sub: OpaquePointer? = nil
        let status: natsStatus
        if let queue {
            status = natsConnection_QueueSubscribe(&sub, connection, subject, queue, deliverToSink, closure)
        } else {
            status = natsConnection_Subscribe(&sub, connection, subject, deliverToSink, closure)
        }
        guard status == NATS_OK, let sub else {
            Unmanaged<SubscriptionSink>.fromOpaque(closure).release()
            throw NATSError(status: status, context: "subscribe \(subject)")
        }
        _ = natsSubscription_SetOnCompleteCB(sub, subscriptionComplete, closure)
        // cnats's own limits sit behind our hand-off; raise them so they never bind first.
        _ = natsSubscription_SetPendingLimits(sub, 1_000_000, 1 << 30)
        return NATSSubscription(handle: sub, stream: stream, sink: sink, subject: subject, thread: thread)
    }

    private init(
        handle: OpaquePointer, stream: AsyncStream<NATSMessage>, sink: SubscriptionSink, subject: String,
        thread: DedicatedThread
    ) {
        self.handle = handle
        self.thread = thread
        self.stream = stream
        self.sink = sink
        self.subject = subject
    }

    deinit {
        releaseSubscription(handle, on: thread)
    }

    /// Stops delivery; the sequence ends after buffered messages. Callable from synchronous
    /// code (cancellation handlers, `defer`): the UNSUB is handed to the connection's thread.
    public func unsubscribe() {
        let handle = CHandle(handle)
        thread.submit { _ = natsSubscription_Unsubscribe(handle.raw) }
        sink.continuation.finish()
    }

    /// Messages dropped because the hand-off buffer was full.
    public var droppedMessages: Int { sink.dropped.load(ordering: .relaxed) }

    public func makeAsyncIterator() -> AsyncStream<NATSMessage>.Iterator {
        stream.makeAsyncIterator()
    }
}

final class SubscriptionSink: Sendable {
    let continuation: AsyncStream<NATSMessage>.Continuation
    let mux: RequestMux?
    let dropped = Atomic<Int>(0)

    init(continuation: AsyncStream<NATSMessage>.Continuation, mux: RequestMux?) {
        self.continuation = continuation
        self.mux = mux
    }
}

/// cnats message callback: copy, destroy, hand off. Nothing else runs here.
private let deliverToSink: natsMsgHandler = { _, _, msg, closure in
    guard let msg, let closure else { return }
    let sink = Unmanaged<SubscriptionSink>.fromOpaque(closure).takeUnretainedValue()
    let message = NATSMessage(copying: msg)
    natsMsg_Destroy(msg)
    if let mux = sink.mux {
        mux.deliver(message)
    } else if case .dropped = sink.continuation.yield(message) {
        sink.dropped.add(1, ordering: .relaxed)
    }
}

private let subscriptionComplete: natsOnCompleteCB = { closure in
    guard let closure else { return }
    let sink = Unmanaged<SubscriptionSink>.fromOpaque(closure).takeRetainedValue()
    sink.continuation.finish()
}

/// Unsubscribes and destroys a cnats subscription on the connection's thread, like every cnats
/// call that writes to the socket (deinit may run on Swift's cooperative pool); inline only if
/// that thread is gone.
func releaseSubscription(_ subscription: OpaquePointer, on thread: DedicatedThread) {
    let handle = CHandle(subscription)
    let release: @Sendable () -> Void = {
        _ = natsSubscription_Unsubscribe(handle.raw)
        natsSubscription_Destroy(handle.raw)
    }
    if !thread.submit(release) { release() }
}
