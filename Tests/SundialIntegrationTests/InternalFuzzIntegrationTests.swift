import Foundation
import SundialContract
import SundialCore
import SundialDispatcher
import SundialExecutor
import SundialFairness
import SundialGovernor
import SundialNATS
import SundialProto
import Synchronization
import SundialTestSupport
import Testing

/// Messages between services come from code we do not control (issue 17): a fuzzer sends
/// job results, demand reports, quota plans, fired messages and work messages with random,
/// mutated and extreme contents while real timers come due. Every service must stay up and
/// keep answering, and every real timer must be dispatched exactly once.
@Suite("Integration: internal message fuzz", .serialized)
struct InternalFuzzIntegrationTests {
    static let messages = 3000

    @Test("fuzzed results, demand reports, plans, fires and work messages: services stay up, nothing lost")
    func fuzzInternalMessages() async throws {
        let seed = ProcessInfo.processInfo.environment["SUNDIAL_FUZZ_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        print("internal fuzz seed: \(seed) (rerun with SUNDIAL_FUZZ_SEED=\(seed))")
        var options = TestSystem.Options()
        // A fixed capacity: how the work stream's capacity is measured is not what this test is
        // about (a backlog of hostile work messages would read as saturation).
        options.governor = TestSystem.governorConfig(capacity: 100_000)
        try await withTestSystem("ifuzz", options) { system in
            let dispatcher = try #require(system.dispatcher)
            let governor = try #require(system.governor)
            let namespace = system.namespace
            let client = system.client(tenant: "real")
            let worker = try await system.worker(queue: "real")
            let bucket = try await KeyValueBucket.ensure(namespace.quotasBucket, connection: system.api)

            // Real timers due while the fuzz runs.
            var created = Set<String>()
            for index in 0..<60 {
                let timer = try await client.create(
                    .delay(.milliseconds(1500 + 50 * index), queue: "real", payload: "real-\(index)"))
                created.insert(timer.timer.id)
            }
            let expected = created
            let knownID = try #require(expected.first)

            // The executor completes everything it gets, hostile work messages included, while
            // the fuzz runs.
            let received = ReceivedJobs()
            let executor = Task {
                let deadline = ContinuousClock.now + .seconds(60)
                while ContinuousClock.now < deadline, !Task.isCancelled, !expected.isSubset(of: received.ids) {
                    guard let jobs = try? await worker.next(max: 256, maxWait: .milliseconds(300)) else { continue }
                    for job in jobs {
                        received.add(job.timerID)
                        try? await worker.complete(job)
                    }
                }
            }

            var rng = SplitMix64(seed: seed)
            var kinds: [String: Int] = [:]
            let started = ContinuousClock.now
            for _ in 0..<Self.messages {
                let roll = Int.random(in: 0..<100, using: &rng)
                switch roll {
                case 0..<35:
                    kinds["result", default: 0] += 1
                    var result = Sundial_V1_JobResult()
                    result.tenant = rng.chance(0.8) ? "real" : ["", "other", "x\r\ny"].randomElement(using: &rng)!
                    result.timerID = rng.chance(0.5) ? knownID : TimerID.text(TimerID.make())
                    result.occurrence = rng.chance(0.5) ? UInt64.random(in: 0...3, using: &rng) : rng.next()
                    result.attempt = rng.chance(0.5) ? UInt32.random(in: 0...3, using: &rng) : UInt32(truncatingIfNeeded: rng.next())
                    result.version = rng.next()
                    result.success = rng.chance(0.5)
                    result.error = String(repeating: "e", count: rng.length(max: 5000))
                    result.finishedAt = .init(seconds: Int64(bitPattern: rng.next()), nanos: Int32(truncatingIfNeeded: rng.next()))
                    let body = (try? result.serializedBytes()) ?? []
                    let payload = rng.chance(0.3) ? rng.mutate(body) : body
                    let tenant = rng.chance(0.9) ? "real" : "fuzz\(Int.random(in: 0..<5, using: &rng))"
                    _ = await system.api.jetStream.publish(batch: [
                        NATSOutgoingMessage(subject: namespace.results(tenant: tenant), payload: payload)
                    ])
                case 35..<55:
                    kinds["demand", default: 0] += 1
                    var report = Sundial_V1_DemandReport()
                    report.dispatcherID = rng.chance(0.8) ? "fuzz-dispatcher" : String(repeating: "d", count: rng.length(max: 400))
                    report.intervalMs = UInt32(truncatingIfNeeded: rng.next())
                    report.planGeneration = rng.next()
                    report.tenants = (0..<rng.length(max: 50)).map { _ in
                        var line = Sundial_V1_TenantDemand()
                        line.tenant = rng.chance(0.7) ? "t\(Int.random(in: 0..<20, using: &rng))" : "bad tenant.\u{0}"
                        line.due = rng.next()
                        line.deferred = rng.next()
                        line.dispatched = rng.next()
                        return line
                    }
                    let body = (try? report.serializedBytes()) ?? []
                    try await system.api.publish(
                        NATSOutgoingMessage(
                            subject: namespace.fairnessDemand, payload: rng.chance(0.3) ? rng.mutate(body) : body))
                case 55..<62:
                    kinds["plan", default: 0] += 1
                    // Undecodable or implausible plans: dispatchers must ignore them. (A
                    // well-formed plan with a forged epoch is a trusted writer's act, not input.)
                    var plan = QuotaPlan.unthrottled()
                    plan.tenants["real"] = TenantQuota(tier: .bulk, rate: -1, burst: -1, demand: 1, allocated: 0)
                    // A format-1 plan, or a per-queue plan with the same bad entry on the real queue.
                    let valid = (try? rng.chance(0.5)
                        ? plan.jsonBytes()
                        : FairnessPlan(generation: 1, issuedAtMillis: 0, queues: ["real": plan]).jsonBytes()) ?? []
                    let bytes = rng.chance(0.5) ? Array(valid.prefix(rng.length(max: valid.count))) : valid
                    _ = try? await bucket.put(SundialNamespace.quotaPlanKey, rng.chance(0.5) ? rng.bytes(count: rng.length(max: 2000)) : bytes)
                case 62..<85:
                    kinds["fired", default: 0] += 1
                    var envelope = Sundial_V1_FireEnvelope()
                    envelope.tenant = rng.chance(0.7) ? "real" : String(repeating: "t", count: rng.length(max: 100))
                    envelope.timerID = rng.chance(0.5) ? knownID : TimerID.text(TimerID.make())
                    if rng.chance(0.5) {
                        // In range: reaches the claim, which must find no run at that version.
                        envelope.version = UInt64.random(in: 1000...2000, using: &rng)
                        envelope.attempt = UInt32.random(in: 1...3, using: &rng)
                        envelope.occurrence = UInt64.random(in: 0...3, using: &rng)
                    } else {
                        envelope.version = rng.next()
                        envelope.attempt = UInt32(truncatingIfNeeded: rng.next())
                        envelope.occurrence = rng.next()
                    }
                    envelope.queue = rng.chance(0.5) ? "real" : "fuzzq"
                    envelope.payload = Data(rng.bytes(count: rng.length(max: 256)))
                    envelope.scheduledAt = .init(seconds: Int64(bitPattern: rng.next()) >> 20, nanos: 0)
                    let body = (try? envelope.serializedBytes()) ?? []
                    var headers = NATSHeaders()
                    if rng.chance(0.3) { headers["Sundial-Attempt"] = String(rng.next()) }
                    _ = await system.api.jetStream.publish(batch: [
                        NATSOutgoingMessage(
                            subject: namespace.fired(shard: Int.random(in: 0..<ShardMap.defaultCount, using: &rng)),
                            headers: headers, payload: rng.chance(0.3) ? rng.mutate(body) : body)
                    ])
                default:
                    kinds["work", default: 0] += 1
                    // Work messages with hostile headers on the executors' own queue.
                    var headers = NATSHeaders()
                    headers[SundialHeader.attempt] = rng.chance(0.5) ? String(rng.next()) : "-\(rng.next())"
                    headers[SundialHeader.occurrence] = String(rng.next())
                    headers[SundialHeader.version] = "x\(rng.next())"
                    headers[SundialHeader.scheduledAt] = rng.chance(0.5) ? "99999-99-99T99:99:99Z" : "2026-01-01T00:00:00Z"
                    headers[SundialHeader.tenant] = rng.chance(0.5) ? "a.b.>" : "x y"
                    headers[SundialHeader.timerID] = "fuzz"
                    headers[SundialHeader.natsMessageID] = "fuzz-\(rng.next())"
                    _ = await system.api.jetStream.publish(batch: [
                        NATSOutgoingMessage(subject: namespace.work(queue: "real"), headers: headers, payload: rng.bytes(count: 8))
                    ])
                }
            }
            print("internal fuzz: \(Self.messages) messages in \(ContinuousClock.now - started): \(kinds.sorted { $0.key < $1.key })")

            await executor.value
            let real = received.counts.filter { expected.contains($0.key) }
            print("internal fuzz: executor done after \(ContinuousClock.now - started); deferred \(dispatcher.stats.deferred.load(ordering: .relaxed)), stale \(dispatcher.stats.staleDropped.load(ordering: .relaxed)), dispatched \(dispatcher.stats.dispatched.load(ordering: .relaxed)), plan dispatchers \(dispatcher.currentPlan.dispatchers ?? 0), real quota \(dispatcher.currentPlan.plan(for: "real").map { plan in plan.tenants["real"].map { "\($0.tier) \($0.rate)/\($0.burst)" } ?? "default \(plan.tierDefaults[.new].map { "\($0.rate)/\($0.burst)" } ?? "-")" } ?? "none (not throttled)")")
            print("internal fuzz: \(real.count) of \(expected.count) real timers received; dispatcher rejected \(dispatcher.stats.resultsRejected.sorted { $0.key < $1.key }), undecodable fires \(dispatcher.stats.undecodable.load(ordering: .relaxed)); governor \(GovernorService.stats(governor.snapshot).reportsRejected) reports rejected")
            #expect(Set(real.keys) == expected, "lost: \(expected.subtracting(real.keys).count)")
            #expect(real.values.allSatisfy { $0 == 1 }, "duplicates: \(real.filter { $0.value > 1 }.count)")

            // Every service still answers; the governor's plans still reach the dispatcher.
            let generation = dispatcher.currentPlan.generation
            try await eventually("plans keep flowing") { dispatcher.currentPlan.generation > generation }
            print("internal fuzz: plans flowing after \(ContinuousClock.now - started)")
            let after = try await client.create(.delay(.milliseconds(200), queue: "real", payload: "after"))
            // Hostile work messages may still be queued ahead of it: take jobs until it comes.
            var arrived = false
            let deadline = ContinuousClock.now + .seconds(15)
            while !arrived, ContinuousClock.now < deadline {
                for job in try await worker.next(max: 256, maxWait: .milliseconds(300)) {
                    if job.timerID == after.timer.id { arrived = true }
                    try await worker.complete(job)
                }
            }
            #expect(arrived)
            for name in [
                SundialNamespace.ingestServiceName, SundialNamespace.dispatcherServiceName,
                SundialNamespace.plannerServiceName, SundialNamespace.governorServiceName,
            ] {
                let reply = try await system.api.request(subject: "$SRV.PING.\(name)", payload: [], timeout: .seconds(5))
                #expect(!reply.payload.isEmpty, "\(name) answers")
            }
        }
    }
}

private final class ReceivedJobs: Sendable {
    private let state = Mutex([String: Int]())
    func add(_ id: String) { state.withLock { $0[id, default: 0] += 1 } }
    var counts: [String: Int] { state.withLock { $0 } }
    var ids: Set<String> { Set(counts.keys) }
}
