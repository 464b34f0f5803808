import Foundation
import Synchronization

/// A named OS thread that runs submitted closures one at a time, in order.
///
/// libpq and cnats calls block (network round-trips, fsync waits, fetch long-polls). Swift's
/// cooperative pool has one thread per core — two on our machines — so a single blocked call
/// there halves the whole process. Every blocking C call therefore runs on a `DedicatedThread`
/// (or a `DedicatedThreadPool`), and async callers suspend until it is done.
public final class DedicatedThread: Sendable {
    private let queue: JobQueue

    public init(name: String) {
        queue = JobQueue()
        let queue = self.queue
        let thread = Thread {
            nameCurrentThread(name)
            queue.drain()
        }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    deinit { queue.close() }

    /// Runs `body` on this thread and returns its result. The caller suspends meanwhile.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = queue.submit {
                continuation.resume(with: Result { try body() })
            }
            if !accepted { continuation.resume(throwing: DedicatedThreadError.shutDown) }
        }
    }

    /// Non-throwing variant of `run(_:)`.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let accepted = queue.submit { continuation.resume(returning: body()) }
            precondition(accepted, "DedicatedThread used after shutdown")
        }
    }

    /// Submits `body` without waiting for it. Returns false once the thread is shut down.
    @discardableResult
    public func submit(_ body: @escaping @Sendable () -> Void) -> Bool {
        queue.submit(body)
    }

    /// Stops the thread after the already-submitted work has run.
    public func shutdown() { queue.close() }
}

/// A fixed set of dedicated threads sharing one FIFO of work. Use it where calls are
/// independent (e.g. short cnats publishes from many tasks); use `DedicatedThread` where a
/// C handle must stay confined to one thread.
public final class DedicatedThreadPool: Sendable {
    private let queue: JobQueue

    public init(name: String, threads: Int) {
        precondition(threads > 0)
        queue = JobQueue()
        for index in 0..<threads {
            let queue = self.queue
            let thread = Thread {
                nameCurrentThread("\(name)-\(index)")
                queue.drain()
            }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit { queue.close() }

    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = queue.submit {
                continuation.resume(with: Result { try body() })
            }
            if !accepted { continuation.resume(throwing: DedicatedThreadError.shutDown) }
        }
    }

    public func shutdown() { queue.close() }
}

/// Foundation on Linux keeps `Thread.name` to itself, and setting it from the new thread races
/// with `start()`; the kernel's name (at most 15 bytes) is what `top -H`, `perf` and
/// `/proc/<pid>/task/*/comm` show, so the thread writes its own (cnats's own threads inherit
/// the name of the one that started them). Best effort: a thread whose name cannot be set
/// still runs.
private func nameCurrentThread(_ name: String) {
    #if os(Linux)
    var short = ""
    for character in name {
        guard short.utf8.count + character.utf8.count <= 15 else { break }
        short.append(character)
    }
    guard let file = fopen("/proc/thread-self/comm", "w") else { return }
    fputs(short, file)
    fclose(file)
    #else
    Thread.current.name = name
    #endif
}

public enum DedicatedThreadError: Error, Sendable {
    case shutDown
}

/// The shared FIFO behind both thread types: a mutex-protected array and a condition.
final class JobQueue: @unchecked Sendable {
    // NSCondition guards `jobs` and `closed`; it is the only way either is touched.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var head = 0
    private var closed = false
    private static let finished: @Sendable () -> Void = {}

    func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if closed { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// The thread body: run jobs until closed and empty.
    func drain() {
        while true {
            condition.lock()
            while head == jobs.count && !closed { condition.wait() }
            if head == jobs.count && closed {
                condition.unlock()
                return
            }
            let job = jobs[head]
            // Drop the queue's reference now: a run job must not keep what it captured (a
            // publish round holds its whole batch, payloads included) until compaction.
            jobs[head] = JobQueue.finished
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
