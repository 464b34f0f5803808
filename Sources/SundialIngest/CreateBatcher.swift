import Foundation
import SundialCore
import SundialStore

/// Group commit for creates: creates that arrive while earlier ones are being written wait and
/// go together, up to `maxBatch` per statement (`TimerStore.createBatch`: one statement, one
/// commit), with at most `maxFlushes` statements in flight. Nothing waits for a batch to fill:
/// a create that finds a free flush is written at once, alone if it is alone. Every caller is
/// answered only after its timer is committed. A timer the batch did not insert (its idempotency
/// key taken) or a batch that failed goes through `TimerStore.create` one by one, so one bad
/// row fails only its own create. Waiting creates are bounded by the endpoint's concurrency
/// (`IngestConfig.maxConcurrentRequests`). The runs the created timers armed (those due
/// within the horizon) are loaded into JetStream as one batch, one thread hop and one wait
/// for all their acks, before any of the batch is answered.
actor CreateBatcher {
    typealias Waiter = CheckedContinuation<CreateOutcome, any Error>
    /// Loads armed runs into JetStream; best effort (the Planner's rescue pass republishes
    /// what did not get there).
    typealias Publisher = @Sendable (_ runs: [(ArmedRun, StoredTimer)]) async -> Void

    let store: TimerStore
    let maxBatch: Int
    let maxFlushes: Int
    let publish: Publisher
    private var pending: [(NewTimer, Waiter)] = []
    private var flushing = 0

    init(store: TimerStore, maxBatch: Int, maxFlushes: Int, publish: @escaping Publisher) {
        self.store = store
        self.maxBatch = max(1, maxBatch)
        self.maxFlushes = max(1, maxFlushes)
        self.publish = publish
    }

    func create(_ timer: NewTimer) async throws -> CreateOutcome {
        try await withCheckedThrowingContinuation { waiter in
            pending.append((timer, waiter))
            startFlushes()
        }
    }

    private func startFlushes() {
        while flushing < maxFlushes, !pending.isEmpty {
            let batch = Array(pending.prefix(maxBatch))
            pending.removeFirst(batch.count)
            flushing += 1
            Task { await self.flush(batch) }
        }
    }

    private func flush(_ batch: [(NewTimer, Waiter)]) async {
        await Self.write(batch, store: store, publish: publish)
        flushing -= 1
        startFlushes()
    }

    /// Off the actor: the store's calls run on the Postgres pool's own threads.
    private nonisolated static func write(_ batch: [(NewTimer, Waiter)], store: TimerStore, publish: Publisher) async {
        var inserted: [UUID: StoredTimer] = [:]
        if batch.count > 1 {
            inserted = (try? await store.createBatch(batch.map(\.0))) ?? [:]
        }
        var outcomes: [Result<CreateOutcome, any Error>] = []
        outcomes.reserveCapacity(batch.count)
        for (timer, _) in batch {
            if let stored = inserted[timer.id] {
                outcomes.append(.success(.created(stored)))
            } else {
                do { outcomes.append(.success(try await store.create(timer))) } catch { outcomes.append(.failure(error)) }
            }
        }
        var armed: [(ArmedRun, StoredTimer)] = []
        for ((timer, _), outcome) in zip(batch, outcomes) {
            if case .success(.created(let stored)) = outcome, let run = timer.armedRun { armed.append((run, stored)) }
        }
        if !armed.isEmpty { await publish(armed) }
        for ((_, waiter), outcome) in zip(batch, outcomes) { waiter.resume(with: outcome) }
    }
}
