import Foundation
import SundialStore

/// Group commit for creates: creates that arrive while earlier ones are being written wait and
/// go together, up to `maxBatch` per statement (`TimerStore.createBatch`: one statement, one
/// commit), with at most `maxFlushes` statements in flight. Nothing waits for a batch to fill:
/// a create that finds a free flush is written at once, alone if it is alone. Every caller is
/// answered only after its timer is committed. A timer the batch did not insert (its idempotency
/// key taken) or a batch that failed goes through `TimerStore.create` one by one, so one bad
/// row fails only its own create. Waiting creates are bounded by the endpoint's concurrency
/// (`IngestConfig.maxConcurrentRequests`).
actor CreateBatcher {
    typealias Waiter = CheckedContinuation<CreateOutcome, any Error>

    let store: TimerStore
    let maxBatch: Int
    let maxFlushes: Int
    private var pending: [(NewTimer, Waiter)] = []
    private var flushing = 0

    init(store: TimerStore, maxBatch: Int, maxFlushes: Int) {
        self.store = store
        self.maxBatch = max(1, maxBatch)
        self.maxFlushes = max(1, maxFlushes)
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
        await Self.write(batch, store: store)
        flushing -= 1
        startFlushes()
    }

    /// Off the actor: the store's calls run on the Postgres pool's own threads.
    private nonisolated static func write(_ batch: [(NewTimer, Waiter)], store: TimerStore) async {
        var inserted: [UUID: StoredTimer] = [:]
        if batch.count > 1 {
            inserted = (try? await store.createBatch(batch.map(\.0))) ?? [:]
        }
        for (timer, waiter) in batch {
            if let stored = inserted[timer.id] {
                waiter.resume(returning: .created(stored))
                continue
            }
            do {
                waiter.resume(returning: try await store.create(timer))
            } catch {
                waiter.resume(throwing: error)
            }
        }
    }
}
