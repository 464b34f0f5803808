import Foundation
import SundialCore
import SundialPostgres
import SundialStore
import SundialTestSupport
import Testing

/// Group commit (`TimerStore.createBatch`): many creates in one statement against real Postgres.
@Suite("Integration: create batch")
struct CreateBatchIntegrationTests {
    static func timer(key: String?, payload: [UInt8], run: Bool, retry: [UInt8]? = nil) -> NewTimer {
        let id = TimerID.make()
        let due = Date().addingTimeInterval(60)
        var timer = NewTimer(
            id: id, tenant: "acme", shard: ShardMap.shard(of: id, count: ShardMap.defaultCount), state: run ? .armed : .scheduled, kind: "delay",
            recurring: false, schedule: [0x0a, 0x00, 0x5c, 0x22], nextFireAt: due, nextNominalAt: due, occurrence: 0,
            armedRun: run ? ArmedRun(occurrence: 0, dueAt: due) : nil, queue: "q", payload: payload, priority: 3,
            labelsJSON: #"{"env":"prod","quote":"a\"b"}"#, retryPolicy: retry, idempotencyKey: key,
            requestHash: Array(payload.prefix(4)) + [UInt8(truncatingIfNeeded: payload.count)], afterTimerID: nil)
        timer.notifySuccess = run
        timer.catchupWindowMs = 1500
        return timer
    }

    @Test("inserts every row with its armed run in one statement; a taken key (earlier or in the same batch) is skipped")
    func batchInsertsAndSkipsTakenKeys() async throws {
        let schema = TestPostgres.freshSchema("createbatch")
        let pool = try await TestPostgres.pool(schema: schema)
        try await SundialDatabase.migrate(pool, schema: schema)
        let store = TimerStore(pool: pool)
        let earlier = Self.timer(key: "k-earlier", payload: [9], run: false)
        guard case .created = try await store.create(earlier) else {
            Issue.record("the first create did not insert")
            return
        }
        let bytes: [UInt8] = [0x00, 0xff, 0x5c, 0x22, 0x7b, 0x2c] + Array(repeating: 0x61, count: 300)
        let plain = Self.timer(key: nil, payload: bytes, run: false, retry: [0x08, 0x03])
        let armed = Self.timer(key: "k-new", payload: [], run: true)
        let sameKey = Self.timer(key: "k-new", payload: [1], run: true)
        let taken = Self.timer(key: "k-earlier", payload: [2], run: false)
        let inserted = try await store.createBatch([plain, armed, sameKey, taken])
        #expect(Set(inserted.keys) == [plain.id, armed.id], "\(inserted.keys)")

        // Every column as the one-row path writes it.
        let stored = try #require(try await store.get(tenant: "acme", id: plain.id))
        #expect(stored.payload == bytes)
        #expect(stored.schedule == plain.schedule)
        #expect(stored.retryPolicy == [0x08, 0x03])
        #expect(stored.priority == 3 && stored.queue == "q" && stored.state == .scheduled)
        #expect(abs((stored.nextFireAt ?? .distantPast).timeIntervalSince(plain.nextFireAt)) < 0.001)
        #expect(try await store.runs(timerID: plain.id).isEmpty)
        let runs = try await store.runs(timerID: armed.id)
        #expect(runs.count == 1 && runs.first?.outcome == .armed && runs.first?.occurrence == 0)
        #expect(try await store.get(tenant: "acme", id: sameKey.id) == nil)
        #expect(try await store.get(tenant: "acme", id: taken.id) == nil)
        // The skipped ones then find out through the one-row path.
        guard case .keyConflict(let first) = try await store.create(sameKey) else {
            Issue.record("a different request with the same key must conflict")
            return
        }
        #expect(first.id == armed.id)
        await pool.close()
    }
}
