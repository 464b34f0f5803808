import Foundation
import SundialCore
import SundialMessaging
import SundialNATS
import SundialProto
import SundialTestSupport
import Testing

/// K fire streams: each holds the shards s with s mod K = its number; timers of every shard
/// fire once, and a cancel or an update finds its schedule in the right stream.
@Suite("Integration: sharded firing")
struct ShardedFiringIntegrationTests {
    @Test("with 4 fire streams, timers of every stream fire once; cancel and update reach the right stream")
    func fourFireStreams() async throws {
        var options = TestSystem.Options()
        options.fireStreams = 4
        options.fairness = false
        try await withTestSystem("sharded", options) { system in
            let namespace = system.namespace
            #expect(namespace.fireStreams.count == 4)
            for (index, stream) in namespace.fireStreams.enumerated() {
                let info = try await system.api.streamInfo(stream)
                let subjects = (info["config"] as? [String: Any])?["subjects"] as? [String] ?? []
                #expect(subjects.count == 2 * ShardMap.defaultCount / 4, "\(stream)")
                #expect(subjects.contains(namespace.fired(shard: index)))
                #expect(!subjects.contains(namespace.fired(shard: index + 1)))
            }
            let worker = try await system.worker(queue: "sharded")
            let client = system.client(tenant: "acme")
            var ids: Set<String> = []
            var streamsUsed: Set<Int> = []
            for index in 0..<60 {
                let created = try await client.create(
                    .delay(.milliseconds(2500 + 20 * index), queue: "sharded", payload: "p", key: "s\(index)"))
                ids.insert(created.timer.id)
                streamsUsed.insert(ShardMap.shard(of: UUID(uuidString: created.timer.id)!, count: ShardMap.defaultCount) % 4)
            }
            #expect(streamsUsed.count == 4)
            // One cancelled, one updated, both before they are due.
            let cancelled = try #require(ids.first)
            // Its schedule is in its shard's stream (Ingest published it, due within the horizon)
            // and the cancel purges it from there.
            let shard = ShardMap.shard(of: try #require(UUID(uuidString: cancelled)), count: ShardMap.defaultCount)
            let stream = namespace.fireStream(shard: shard)
            func pending() async throws -> Int {
                var found = 0
                for occurrence in Int64(0)...1 {
                    let subject = namespace.schedule(shard: shard, timerID: cancelled, occurrence: occurrence, attempt: 1)
                    if try await system.api.lastMessage(stream: stream, subject: subject) != nil { found += 1 }
                }
                return found
            }
            #expect(try await pending() == 1)
            _ = try await client.cancel(cancelled)
            #expect(try await pending() == 0)
            ids.remove(cancelled)
            let updated = try #require(ids.first)
            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = updated
            update.payload = Data("v2".utf8)
            update.updatePayload = true
            _ = try await client.update(update)

            let jobs = try await collectJobs(worker, count: ids.count, timeout: .seconds(30))
            #expect(Set(jobs.map(\.0.timerID)) == ids)
            #expect(jobs.count == ids.count)
            #expect(jobs.first { $0.0.timerID == updated }.map { String(decoding: $0.0.payload, as: UTF8.self) } == "v2")
            let extra = try await collectJobs(worker, count: 1, timeout: .seconds(2))
            #expect(extra.isEmpty, "unexpected: \(extra.map(\.0.timerID)) (cancelled: \(cancelled))")
        }
    }
}
