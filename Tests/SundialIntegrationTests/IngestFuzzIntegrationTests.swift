import Foundation
import SundialContract
import SundialCore
import SundialNATS
import SundialProto
import Synchronization
import SundialTestSupport
import Testing

/// Bad input never crashes Ingest nor corrupts state (docs/limits.md): thousands of random,
/// mutated and absurd requests against a real Ingest, then the service must still answer
/// and Postgres must hold exactly the timers whose creates succeeded.
///
/// Reproduce a run with `SUNDIAL_FUZZ_SEED=<seed printed by the test>`.
@Suite("Integration: ingest fuzz", .serialized)
struct IngestFuzzIntegrationTests {
    static let requests = 3000
    static let concurrency = 32

    @Test("random, mutated and absurd requests get 400/404/409 or success, never 500 or silence")
    func fuzzIngest() async throws {
        let seed = ProcessInfo.processInfo.environment["SUNDIAL_FUZZ_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        print("ingest fuzz seed: \(seed) (rerun with SUNDIAL_FUZZ_SEED=\(seed))")
        var options = TestSystem.Options()
        options.planner = false
        options.dispatcher = false
        try await withTestSystem("fuzz", options) { system in
            let connection = try await TestNATS.connect(system.nats, name: "fuzz-client")
            defer { Task { await connection.close() } }
            let namespace = system.namespace
            let ids = IDPool()
            // One generator per request, seeded from the run seed and the index: the corpus
            // does not depend on scheduling.
            var master = SplitMix64(seed: seed)
            let seeds = (0..<Self.requests).map { _ in master.next() }

            let started = ContinuousClock.now
            let outcomes = await withTaskGroup(of: FuzzOutcome.self, returning: [FuzzOutcome].self) { group in
                var results: [FuzzOutcome] = []
                var next = 0
                func submit(_ index: Int) {
                    let knownIDs = ids.all
                    var rng = SplitMix64(seed: seeds[index])
                    let fuzz = FuzzCase.make(&rng, knownIDs: knownIDs)
                    group.addTask {
                        await Self.send(fuzz, index: index, connection: connection, namespace: namespace, ids: ids)
                    }
                }
                while next < min(Self.concurrency, Self.requests) {
                    submit(next)
                    next += 1
                }
                while let outcome = await group.next() {
                    results.append(outcome)
                    if next < Self.requests {
                        submit(next)
                        next += 1
                    }
                }
                return results
            }
            let elapsed = ContinuousClock.now - started

            var byCode: [String: Int] = [:]
            var byKind: [String: Int] = [:]
            for outcome in outcomes {
                byCode[outcome.code, default: 0] += 1
                byKind["\(outcome.method.rawValue)/\(outcome.kind.prefix { $0 != "-" })", default: 0] += 1
            }
            print("ingest fuzz: \(outcomes.count) requests in \(elapsed): \(byCode.sorted { $0.key < $1.key })")
            print("ingest fuzz cases: \(byKind.sorted { $0.key < $1.key })")
            let acceptedAbsurd = outcomes.filter { $0.code == "ok" && $0.method == .create && $0.kind.hasPrefix("absurd") }
            print("ingest fuzz: absurd creates accepted: \(Dictionary(grouping: acceptedAbsurd, by: \.kind).mapValues(\.count).sorted { $0.key < $1.key })")

            #expect(outcomes.count == Self.requests)
            let bad = outcomes.filter { !["ok", "400", "404", "409"].contains($0.code) }
            for outcome in bad.prefix(20) {
                Issue.record(
                    "seed \(seed) #\(outcome.index) \(outcome.method.rawValue)/\(outcome.kind): \(outcome.code) \(outcome.detail) body[\(outcome.bodySize)] \(outcome.bodyPrefix)")
            }
            #expect(bad.isEmpty, "\(bad.count) requests got no acceptable reply (seed \(seed))")
            #expect(elapsed < .seconds(60))

            // Still serving.
            let client = system.client(tenant: "fuzz")
            let ok = try await client.create(.delay(.seconds(600), queue: "fuzz", payload: "after"))
            #expect(ok.created)
            #expect(try await client.get(ok.timer.id).id == ok.timer.id)

            // Exactly the timers whose creates succeeded; no run without its timer.
            let created = outcomes.filter(\.createdTimer).count + 1
            let (rows, orphans) = try await system.pool.withSession { session in
                (
                    try session.execute("SELECT count(*) AS n FROM timers")[0].int("n"),
                    try session.execute(
                        "SELECT count(*) AS n FROM timer_runs r WHERE NOT EXISTS (SELECT 1 FROM timers t WHERE t.id = r.timer_id)"
                    )[0].int("n")
                )
            }
            print("ingest fuzz: \(created) timers created (incl. the final one), \(rows ?? -1) rows")
            #expect(rows == created)
            #expect(orphans == 0)
        }
    }

    fileprivate static func send(
        _ fuzz: FuzzCase, index: Int, connection: NATSConnection, namespace: SundialNamespace, ids: IDPool
    ) async -> FuzzOutcome {
        var outcome = FuzzOutcome(index: index, method: fuzz.method, kind: fuzz.kind, body: fuzz.body)
        do {
            let reply = try await connection.request(
                subject: namespace.request(tenant: fuzz.tenant, method: fuzz.method), payload: fuzz.body,
                timeout: .seconds(20))
            if reply.headers["X-Injected"] != nil {
                // Request text echoed into an error header must not break the header block.
                outcome.code = "header injection"
                outcome.detail = "\(reply.headers.fields)"
            } else if let code = reply.headers[SundialHeader.serviceErrorCode] {
                outcome.code = code
                outcome.detail = reply.headers[SundialHeader.serviceError] ?? ""
            } else {
                outcome.code = "ok"
                if fuzz.method == .create {
                    if let response = try? Sundial_V1_CreateTimerResponse(serializedBytes: reply.payload) {
                        outcome.createdTimer = response.created
                        if !response.timer.id.isEmpty { ids.add(response.timer.id) }
                    } else {
                        outcome.code = "undecodable success reply"
                    }
                }
            }
        } catch {
            outcome.code = "no reply"
            outcome.detail = "\(error)"
        }
        return outcome
    }
}

/// Ids of timers created during the run, for Get/Update/Cancel/History on real rows.
private final class IDPool: Sendable {
    private let ids = Mutex<[String]>([])
    var all: [String] { ids.withLock { $0 } }
    func add(_ id: String) { ids.withLock { $0.append(id) } }
}

private struct FuzzOutcome: Sendable {
    var index: Int
    var method: TimersMethod
    var kind: String
    var code = ""
    var detail = ""
    var createdTimer = false
    var bodySize: Int
    var bodyPrefix: String

    init(index: Int, method: TimersMethod, kind: String, body: [UInt8]) {
        self.index = index
        self.method = method
        self.kind = kind
        bodySize = body.count
        bodyPrefix = body.prefix(48).map { String(format: "%02x", $0) }.joined()
    }
}

/// One request of the corpus: where it goes and its raw body.
private struct FuzzCase: Sendable {
    var method: TimersMethod
    var tenant: String
    var kind: String
    var body: [UInt8]

    static func make(_ rng: inout SplitMix64, knownIDs: [String]) -> FuzzCase {
        let method = TimersMethod.allCases.randomElement(using: &rng)!
        let tenant = rng.chance(0.9) ? "fuzz" : ["fuzz2", "a", "tenant_with-dash", String(repeating: "t", count: 64)]
            .randomElement(using: &rng)!
        let roll = Int.random(in: 0..<100, using: &rng)
        let kind: String
        let body: [UInt8]
        switch roll {
        case 0..<15:
            kind = "random"
            body = rng.bytes(count: rng.length(max: 4096))
        case 15..<45:
            kind = "mutated"
            body = mutate(validBody(method, &rng, knownIDs: knownIDs), &rng)
        case 45..<55:
            kind = "raw-wire"
            body = rawWire(method, &rng)
        case 55..<70:
            kind = "valid"  // real rows for the others to hit, and concurrent updates/cancels
            body = validBody(method, &rng, knownIDs: knownIDs)
        default:
            (kind, body) = absurdBody(method, &rng, knownIDs: knownIDs)
        }
        return FuzzCase(method: method, tenant: tenant, kind: kind, body: body)
    }

    // MARK: valid requests

    static func validBody(_ method: TimersMethod, _ rng: inout SplitMix64, knownIDs: [String]) -> [UInt8] {
        let bytes: [UInt8]?
        switch method {
        case .create: bytes = try? validCreate(&rng).serializedBytes()
        case .get: bytes = try? Sundial_V1_GetTimerRequest.with { $0.timerID = id(&rng, knownIDs) }.serializedBytes()
        case .cancel:
            bytes = try? Sundial_V1_CancelTimerRequest.with {
                $0.timerID = id(&rng, knownIDs)
                if rng.chance(0.3) { $0.expectedVersion = UInt64.random(in: 0...3, using: &rng) }
            }.serializedBytes()
        case .update:
            bytes = try? Sundial_V1_UpdateTimerRequest.with {
                $0.timerID = id(&rng, knownIDs)
                if rng.chance(0.5) { $0.schedule = validSchedule(&rng) }
                if rng.chance(0.5) {
                    // Old clients flag the payload; new ones rely on field presence.
                    if rng.chance(0.5) { $0.updatePayload = true }
                    $0.payload = Data(rng.bytes(count: rng.length(max: 64)))
                }
                if rng.chance(0.3) { $0.priority = [.high, .low, .normal].randomElement(using: &rng)! }
                if rng.chance(0.3) { $0.labels = ["env": "prod", "team": "x"] }
            }.serializedBytes()
        case .list:
            bytes = try? Sundial_V1_ListTimersRequest.with {
                if rng.chance(0.3) { $0.states = [.armed, .scheduled] }
                if rng.chance(0.3) { $0.queue = "fuzz" }
                if rng.chance(0.3) { $0.labels = ["env": "prod"] }
                $0.pageSize = UInt32.random(in: 0...50, using: &rng)
            }.serializedBytes()
        case .history:
            bytes = try? Sundial_V1_TimerHistoryRequest.with {
                $0.timerID = id(&rng, knownIDs)
                $0.pageSize = UInt32.random(in: 0...20, using: &rng)
            }.serializedBytes()
        case .retry:
            bytes = try? Sundial_V1_RetryTimerRequest.with {
                if rng.chance(0.7) {
                    $0.timerID = id(&rng, knownIDs)
                    if rng.chance(0.3) { $0.occurrence = UInt64.random(in: 0...3, using: &rng) }
                } else {
                    $0.labels = ["env": "prod"]
                    $0.pageSize = UInt32.random(in: 0...20, using: &rng)
                }
            }.serializedBytes()
        case .pause, .resume:
            // Both requests have the same fields and numbers.
            bytes = try? Sundial_V1_PauseTimerRequest.with {
                if rng.chance(0.7) {
                    $0.timerID = id(&rng, knownIDs)
                    if rng.chance(0.3) { $0.expectedVersion = UInt64.random(in: 0...3, using: &rng) }
                } else {
                    $0.labels = ["team": "x"]
                    $0.pageSize = UInt32.random(in: 0...20, using: &rng)
                }
            }.serializedBytes()
        }
        return bytes ?? []
    }

    static func id(_ rng: inout SplitMix64, _ knownIDs: [String]) -> String {
        if !knownIDs.isEmpty, rng.chance(0.7) { return knownIDs.randomElement(using: &rng)! }
        return TimerID.text(TimerID.make())
    }

    static func validCreate(_ rng: inout SplitMix64) -> Sundial_V1_CreateTimerRequest {
        var request = Sundial_V1_CreateTimerRequest()
        request.queue = ["fuzz", "emails", "a.b.c"].randomElement(using: &rng)!
        request.schedule = validSchedule(&rng)
        request.payload = Data(rng.bytes(count: rng.length(max: 256)))
        if rng.chance(0.3) { request.idempotencyKey = "key-\(Int.random(in: 0..<50, using: &rng))" }
        if rng.chance(0.3) { request.priority = [.high, .low, .normal].randomElement(using: &rng)! }
        if rng.chance(0.3) { request.labels = ["env": "prod", "n": String(Int.random(in: 0..<5, using: &rng))] }
        if rng.chance(0.2) {
            request.retryPolicy = .with {
                $0.maxAttempts = UInt32.random(in: 0...10, using: &rng)
                $0.initialBackoff = .init(seconds: 1)
                $0.maxBackoff = .init(seconds: 60)
            }
        }
        return request
    }

    static func validSchedule(_ rng: inout SplitMix64) -> Sundial_V1_Schedule {
        var schedule = Sundial_V1_Schedule()
        switch Int.random(in: 0..<6, using: &rng) {
        case 0: schedule.delay.duration = .init(seconds: Int64.random(in: 1...100_000, using: &rng))
        case 1: schedule.at.instant = .init(date: Date().addingTimeInterval(Double.random(in: 10...1e7, using: &rng)))
        case 2:
            schedule.weekdays = .with {
                $0.days = [.monday, .friday]
                $0.timeOfDay = .with { $0.hour = 9 }
                $0.recurring = rng.chance(0.5)
            }
        case 3: schedule.date = .with { $0.year = 2099; $0.month = 2; $0.day = 28 }
        case 4: schedule.cron.expression = ["*/5 * * * *", "@daily", "0 0 9 * * MON-FRI", "0 12 1 * *"].randomElement(using: &rng)!
        default: schedule.every.interval = .init(seconds: Int64.random(in: 1...86_400, using: &rng))
        }
        if rng.chance(0.3) { schedule.timeZone = ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"].randomElement(using: &rng)! }
        return schedule
    }

    // MARK: mutations

    static func mutate(_ original: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        rng.mutate(original)
    }

    // MARK: hand-built wire bytes (what SwiftProtobuf would never encode)

    static func rawWire(_ method: TimersMethod, _ rng: inout SplitMix64) -> [UInt8] {
        let invalidUTF8: [[UInt8]] = [[0xC3, 0x28], [0xFF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0x80, 0x80], [0xE2, 0x82]]
        let bad = invalidUTF8.randomElement(using: &rng)! + Array("abc".utf8)
        switch method {
        case .create:
            switch Int.random(in: 0..<5, using: &rng) {
            case 0:  // queue = invalid UTF-8, valid delay schedule
                return field(3, bad) + field(2, field(1, field(1, [0x08, 0x3C])))
            case 1:  // schedule.time_zone invalid UTF-8
                return field(3, Array("q".utf8)) + field(2, field(1, field(1, [0x08, 0x3C])) + field(10, bad))
            case 2:  // labels map entry with invalid UTF-8 key
                return field(3, Array("q".utf8)) + field(2, field(1, field(1, [0x08, 0x3C]))) + field(7, field(1, bad) + field(2, Array("v".utf8)))
            case 3:  // two schedule kinds in one message (oneof: last one wins) + a cron
                return field(3, Array("q".utf8)) + field(2, field(1, field(1, [0x08, 0x3C])) + field(5, field(1, Array("junk cron".utf8))) + field(6, []))
            default:  // idempotency_key invalid, priority as a huge varint, unknown fields
                return field(1, bad) + [0x30] + varint(UInt64.max) + [0xF8, 0x07, 0x01] + field(3, Array("q".utf8))
            }
        case .get, .cancel, .history, .pause, .resume:
            return field(1, bad)
        case .retry:
            return field(3, field(1, bad) + field(2, Array("v".utf8))) + [0x10] + varint(UInt64.max)
        case .update:
            return field(1, Array(TimerID.text(TimerID.make()).utf8)) + field(3, field(10, bad)) + [0x30] + varint(UInt64(Int.random(in: 4...1000, using: &rng)))
        case .list:
            return [0x08] + varint(UInt64.random(in: 0...UInt64.max, using: &rng)) + field(2, bad) + [0x20] + varint(UInt64.max)
        }
    }

    // MARK: absurd values in well-formed messages

    /// (kind, body); for creates the kind names the absurdities applied.
    static func absurdBody(_ method: TimersMethod, _ rng: inout SplitMix64, knownIDs: [String]) -> (String, [UInt8]) {
        switch method {
        case .create:
            var request = validCreate(&rng)
            var applied: [Int] = []
            for _ in 0..<Int.random(in: 1...3, using: &rng) { applied.append(absurdify(&request, &rng)) }
            return ("absurd" + applied.map { "-\($0)" }.joined(), (try? request.serializedBytes()) ?? [])
        default:
            return ("absurd", absurdOther(method, &rng, knownIDs: knownIDs))
        }
    }

    static func absurdOther(_ method: TimersMethod, _ rng: inout SplitMix64, knownIDs: [String]) -> [UInt8] {
        switch method {
        case .create:
            return []
        case .update:
            var request = Sundial_V1_UpdateTimerRequest()
            request.timerID = rng.chance(0.8) ? id(&rng, knownIDs) : absurdString(&rng)
            request.expectedVersion = rng.chance(0.5) ? UInt64.max : UInt64.random(in: 0...5, using: &rng)
            var create = validCreate(&rng)
            absurdify(&create, &rng)
            request.schedule = create.schedule
            if rng.chance(0.3) { request.updatePayload = true; request.payload = create.payload }
            if rng.chance(0.3) { request.labels = create.labels }
            if rng.chance(0.2) { request.priority = .UNRECOGNIZED(Int.random(in: 4...1_000_000, using: &rng)) }
            if rng.chance(0.2) {
                request.updateMask.paths = (0..<Int.random(in: 0...40, using: &rng)).map { _ in
                    rng.chance(0.5) ? ["schedule", "payload", "priority", "labels"].randomElement(using: &rng)! : absurdString(&rng)
                }
            }
            return (try? request.serializedBytes()) ?? []
        case .list:
            var request = Sundial_V1_ListTimersRequest()
            request.pageSize = [UInt32.max, 1001, 1000, 0, 1].randomElement(using: &rng)!
            request.pageToken = rng.chance(0.5) ? absurdString(&rng) : ""
            if rng.chance(0.4) { request.states = [.UNRECOGNIZED(42), .unspecified, .dead] }
            if rng.chance(0.4) { request.queue = absurdString(&rng) }
            if rng.chance(0.4) { request.labels = manyLabels(&rng) }
            return (try? request.serializedBytes()) ?? []
        case .history:
            var request = Sundial_V1_TimerHistoryRequest()
            request.timerID = rng.chance(0.6) ? id(&rng, knownIDs) : absurdString(&rng)
            request.pageSize = [UInt32.max, 1001, 0].randomElement(using: &rng)!
            request.pageToken = rng.chance(0.7) ? absurdString(&rng) : ""
            return (try? request.serializedBytes()) ?? []
        case .get, .cancel:
            let text = rng.chance(0.2) ? id(&rng, knownIDs) : absurdString(&rng)
            return (try? Sundial_V1_GetTimerRequest.with { $0.timerID = text }.serializedBytes()) ?? []
        case .retry:
            var request = Sundial_V1_RetryTimerRequest()
            if rng.chance(0.5) { request.timerID = rng.chance(0.5) ? id(&rng, knownIDs) : absurdString(&rng) }
            if rng.chance(0.5) { request.occurrence = [UInt64.max, UInt64(Int64.max) + 1, 0].randomElement(using: &rng)! }
            if rng.chance(0.5) { request.labels = manyLabels(&rng) }
            request.pageSize = [UInt32.max, 101, 100, 0].randomElement(using: &rng)!
            request.pageToken = rng.chance(0.5) ? absurdString(&rng) : ""
            return (try? request.serializedBytes()) ?? []
        case .pause, .resume:
            var request = Sundial_V1_PauseTimerRequest()
            if rng.chance(0.5) { request.timerID = rng.chance(0.5) ? id(&rng, knownIDs) : absurdString(&rng) }
            request.expectedVersion = rng.chance(0.5) ? UInt64.max : UInt64.random(in: 0...5, using: &rng)
            if rng.chance(0.5) { request.labels = manyLabels(&rng) }
            request.pageSize = [UInt32.max, 101, 100, 0].randomElement(using: &rng)!
            request.pageToken = rng.chance(0.5) ? absurdString(&rng) : ""
            return (try? request.serializedBytes()) ?? []
        }
    }

    /// Applies one absurdity and returns its number (printed for accepted ones).
    @discardableResult
    static func absurdify(_ request: inout Sundial_V1_CreateTimerRequest, _ rng: inout SplitMix64) -> Int {
        let extremes: [Int64] = [Int64.max, Int64.min, -1, 0, 253_402_300_800, -62_135_596_801, 1 << 40, -(1 << 40)]
        func extremeDuration() -> Google_Protobuf_Duration {
            .init(
                seconds: extremes.randomElement(using: &rng)!,
                nanos: [0, -1, 999_999_999, Int32.max, Int32.min].randomElement(using: &rng)!)
        }
        func extremeTimestamp() -> Google_Protobuf_Timestamp {
            .init(
                seconds: extremes.randomElement(using: &rng)!,
                nanos: [0, -1, 999_999_999, Int32.max].randomElement(using: &rng)!)
        }
        let choice = Int.random(in: 0..<22, using: &rng)
        switch choice {
        case 0: request.schedule.delay.duration = extremeDuration()
        case 1: request.schedule.at.instant = extremeTimestamp()
        case 2:
            request.schedule.date = .with {
                $0.year = [0, 1, 99999, UInt32.max, 2100].randomElement(using: &rng)!
                $0.month = [0, 2, 13, UInt32.max].randomElement(using: &rng)!
                $0.day = [0, 29, 30, 31, 32, UInt32.max].randomElement(using: &rng)!
                $0.timeOfDay = .with { $0.hour = 25; $0.minute = 61; $0.second = UInt32.max }
            }
        case 3:
            request.schedule.cron.expression = [
                "", "* * * * * * *", "60 * * * *", "*/0 * * * *", "1-0 * * * *", "@never", "0 0 31 2 *",
                String(repeating: "*/1,", count: 5000), "\u{0}\u{1} * * *", "0 0 * * 8", "1,2,3,,4 * * * *",
                "-1 * * * *", "999999999999999999999 * * * *", "0 0 29 2 MON", "@yearly junk", "🕐 * * * *",
                "*/1-2 * * * *", "0 0 L * *", "0 0 ? * *", "0 0 * * *\r\nX-Injected: 1", "\n",
            ].randomElement(using: &rng)!
        case 4:
            request.schedule.every = .with {
                $0.interval = rng.chance(0.5) ? .init(seconds: 0) : extremeDuration()
                if rng.chance(0.5) { $0.start = extremeTimestamp() }
                if rng.chance(0.5) { $0.end = extremeTimestamp() }
            }
        case 5:
            request.schedule.timeZone = [
                String(repeating: "Europe/Berlin", count: 1000), "../../../../etc/passwd", "Mars/Olympus_Mons",
                "UTC\u{0}", "+25:00", "Etc/GMT+99", " ", "Europe/", "/", "Europe//Berlin", "posixrules",
                "right/UTC", "Factory", "EST5EDT,M3.2.0,M11.1.0", "Europe/Berlin\r\nX-Injected: 1",
            ].randomElement(using: &rng)!
        case 6: request.labels = manyLabels(&rng)
        case 7: request.payload = Data(count: [300 * 1024, 256 * 1024 + 1, 256 * 1024].randomElement(using: &rng)!)
        case 8: request.priority = .UNRECOGNIZED([4, -1, Int(Int32.max), Int(Int32.min)].randomElement(using: &rng)!)
        case 9:
            request.schedule.weekdays = .with {
                $0.days = [.UNRECOGNIZED(8), .UNRECOGNIZED(-3), .unspecified, .monday]
                $0.timeOfDay = .with { $0.hour = UInt32.max }
                $0.recurring = true
            }
        case 10: request.schedule.weekdays = .with { $0.days = []; $0.recurring = true }
        case 11: request.schedule.jitter = extremeDuration()
        case 12:
            request.schedule.end = .with {
                $0.until = extremeTimestamp()
                $0.maxOccurrences = [0, 1, UInt32.max].randomElement(using: &rng)!
            }
        case 13:
            request.retryPolicy = .with {
                $0.maxAttempts = [UInt32.max, 101, 0].randomElement(using: &rng)!
                $0.initialBackoff = extremeDuration()
                $0.maxBackoff = extremeDuration()
            }
        case 14: request.idempotencyKey = absurdString(&rng)
        case 15: request.queue = absurdString(&rng)
        case 16: request.afterTimerID = rng.chance(0.5) ? TimerID.text(TimerID.make()) : absurdString(&rng)
        case 17: request.clearSchedule()
        case 18: request.schedule = Sundial_V1_Schedule()  // present but no kind
        case 19: request.labels = [absurdString(&rng): absurdString(&rng)]
        case 20:
            request.schedule.delay.duration = .init(seconds: 100 * 366 * 86_400 + Int64.random(in: -2...2, using: &rng) * 86_400)
        default:
            request.schedule.at.instant = .init(date: Date().addingTimeInterval(-Double.random(in: 0...1e9, using: &rng)))
        }
        return choice
    }

    static func manyLabels(_ rng: inout SplitMix64) -> [String: String] {
        let count = [33, 1000, 10_000].randomElement(using: &rng)!
        var labels: [String: String] = [:]
        for i in 0..<count { labels["k\(i)"] = "v" }
        return labels
    }

    static func absurdString(_ rng: inout SplitMix64) -> String {
        [
            "", " ", "\u{0}", String(repeating: "x", count: 100_000), "q.bad..name", "*", ">", "sundial.>",
            "'; DROP TABLE timers; --", "\u{202E}evil", "🕐🕑🕒", "%00", "\\", "\"", "tmr_", "-", "..",
            "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
            String(repeating: "é", count: 300), "Ω", "a\r\nX-Injected: 1", "\r\n\r\n", "line\nbreak", "tab\there",
            "nul\u{0}inside", String(repeating: "\u{0}", count: 10),
        ].randomElement(using: &rng)!
    }

    // MARK: wire helpers

    static func varint(_ value: UInt64) -> [UInt8] { ProtobufWire.varint(value) }

    /// A length-delimited field.
    static func field(_ number: UInt64, _ payload: [UInt8]) -> [UInt8] {
        varint(number << 3 | 2) + varint(UInt64(payload.count)) + payload
    }
}
