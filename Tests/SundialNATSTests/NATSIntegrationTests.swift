import Foundation
import SundialLocalCluster
import SundialNATS
import Synchronization
import SundialTestSupport
import Testing

/// The NATS wrapper (SundialNATS) against a real nats-server 2.15. Every test works in its own
/// subjects and streams (random suffix), so the suite runs in parallel on the shared server;
/// only the restart test uses a private server.
@Suite("Integration: NATS wrapper")
struct NATSIntegrationTests {
    // MARK: Core publish/subscribe

    @Test("core pub/sub carries multi-value headers, empty and binary payloads unchanged")
    func coreHeadersAndPayloads() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let publisher = try await connect(server, "hdr-pub-\(id)")
        let subscriber = try await connect(server, "hdr-sub-\(id)")
        let subscription = try await subscriber.subscribe(subject: "core.\(id).>")
        try await subscriber.flush()  // the SUB is registered before anything is published
        let (received, task) = collect(subscription)

        var headers = NATSHeaders()
        headers.add("X-Multi", "first")
        headers.add("X-Multi", "second value, with comma")
        headers.add("X-Multi", "third: with colon")
        headers["X-Single"] = "only"
        let binary = (0...255).map { UInt8($0) } + Array("\r\n\r\nNATS/1.0\r\n".utf8) + [0, 0, 0]
        let large = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

        try await publisher.publish(NATSOutgoingMessage(subject: "core.\(id).empty", headers: headers))
        try await publisher.publish(NATSOutgoingMessage(subject: "core.\(id).binary", payload: binary))
        try await publisher.publish(
            NATSOutgoingMessage(subject: "core.\(id).large", headers: ["X-Size": "1MiB"], payload: large))
        try await publisher.publish(batch: [
            NATSOutgoingMessage(subject: "core.\(id).batch", payload: [1]),
            NATSOutgoingMessage(subject: "core.\(id).batch", payload: [2]),
        ])
        try await publisher.flush()
        try await eventually("5 messages received", timeout: .seconds(10)) { received.count >= 5 }

        let messages = received.all
        #expect(messages.count == 5)
        let empty = try #require(messages.first { $0.subject == "core.\(id).empty" })
        #expect(empty.payload == [])
        #expect(empty.fields("X-Multi") == ["first", "second value, with comma", "third: with colon"])
        #expect(empty.headers["X-Single"] == "only")
        #expect(empty.headers["x-single"] == "only")  // case-insensitive fallback
        #expect(empty.replySubject == nil)
        #expect(!empty.isNoResponders)

        let binaryMessage = try #require(messages.first { $0.subject == "core.\(id).binary" })
        #expect(binaryMessage.payload == binary)
        #expect(binaryMessage.headers.isEmpty)

        let largeMessage = try #require(messages.first { $0.subject == "core.\(id).large" })
        #expect(largeMessage.payload.count == large.count)
        #expect(largeMessage.payload == large)
        #expect(largeMessage.headers["X-Size"] == "1MiB")

        // Messages of one publisher on one subject arrive in publish order.
        #expect(messages.filter { $0.subject == "core.\(id).batch" }.map(\.payload) == [[1], [2]])
        #expect(subscription.droppedMessages == 0)

        subscription.unsubscribe()
        try await eventually("subscription sequence ends after unsubscribe") { task.isFinishedFlag }
        await publisher.close()
        await subscriber.close()
    }

    @Test("two subscribers in one queue group: each message is delivered exactly once")
    func queueGroupDeliversOnce() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let publisher = try await connect(server, "qg-pub-\(id)")
        let memberA = try await connect(server, "qg-a-\(id)")
        let memberB = try await connect(server, "qg-b-\(id)")
        let subA = try await memberA.subscribe(subject: "qg.\(id).work", queue: "workers")
        let subB = try await memberB.subscribe(subject: "qg.\(id).work", queue: "workers")
        try await memberA.flush()
        try await memberB.flush()
        let (receivedA, _) = collect(subA)
        let (receivedB, _) = collect(subB)

        let count = 200
        try await publisher.publish(
            batch: (0..<count).map { NATSOutgoingMessage(subject: "qg.\(id).work", payload: Array("\($0)".utf8)) })
        try await publisher.flush()
        try await eventually("all \(count) delivered", timeout: .seconds(10)) {
            receivedA.count + receivedB.count >= count
        }
        // Everything the server routed to the members is in their sockets before their PONGs.
        try await memberA.flush()
        try await memberB.flush()

        let all = (receivedA.all + receivedB.all).map { String(decoding: $0.payload, as: UTF8.self) }
        #expect(all.count == count)
        #expect(Set(all) == Set((0..<count).map(String.init)))
        // Both members got work (a 2^-199 chance of a false failure if distribution were fair).
        #expect(receivedA.count > 0)
        #expect(receivedB.count > 0)
        for connection in [publisher, memberA, memberB] { await connection.close() }
    }

    @Test("a subscription's hand-off buffer keeps the oldest messages and counts the dropped ones")
    func subscriptionBufferLimit() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let publisher = try await connect(server, "bl-pub-\(id)")
        let subscriber = try await connect(server, "bl-sub-\(id)")
        let subscription = try await subscriber.subscribe(subject: "bl.\(id)", bufferLimit: 10)
        try await subscriber.flush()
        // Nobody iterates yet: everything beyond 10 buffered messages must be dropped.
        try await publisher.publish(
            batch: (0..<100).map { NATSOutgoingMessage(subject: "bl.\(id)", payload: Array("\($0)".utf8)) })
        try await publisher.flush()
        try await eventually("90 drops counted", timeout: .seconds(10)) { subscription.droppedMessages >= 90 }
        #expect(subscription.droppedMessages == 90)
        subscription.unsubscribe()
        var kept: [String] = []
        for await message in subscription { kept.append(String(decoding: message.payload, as: UTF8.self)) }
        #expect(kept == (0..<10).map(String.init))
        await publisher.close()
        await subscriber.close()
    }

    @Test("a payload above the server's max_payload fails fast, core and JetStream, and the connection survives")
    func oversizedPayload() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "big-\(id)")
        let name = "BIG_\(id.uppercased())"
        var config = JetStreamStreamConfig(name: name, subjects: ["big.\(id).>"])
        config.storage = .memory
        try await connection.ensureStream(config)
        let tooBig = [UInt8](repeating: 7, count: 9 << 20)  // the harness server allows 8 MB

        await #expect(throws: NATSError.self) {
            try await connection.publish(NATSOutgoingMessage(subject: "big.\(id).core", payload: tooBig))
        }
        let start = ContinuousClock.now
        let result = try await outcome(within: .seconds(10), "oversized JetStream publish returns") {
            try await connection.jetStream.publish(NATSOutgoingMessage(subject: "big.\(id).js", payload: tooBig))
        }
        #expect(result.natsError != nil)
        #expect(result.natsError?.isRetryable == false)
        #expect(ContinuousClock.now - start < .seconds(3))  // not retried for the budget

        // The failed publishes left nothing behind: the in-flight accounting still works.
        let ack = try await connection.jetStream.publish(NATSOutgoingMessage(subject: "big.\(id).js", payload: [1]))
        #expect(ack.sequence == 1)
        try await connection.deleteStream(name)
        await connection.close()
    }

    // MARK: Request/reply

    @Test("request/reply: reply received; timeout when the responder stays silent; a late reply is dropped")
    func requestReplyAndTimeout() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let requester = try await connect(server, "rr-req-\(id)")
        let responder = try await connect(server, "rr-rsp-\(id)")
        let subscription = try await responder.subscribe(subject: "rr.\(id).>")
        try await responder.flush()
        let held = ReceivedMessages()
        let echo = Task {
            for await message in subscription {
                guard let reply = message.replySubject else { continue }
                if String(decoding: message.payload, as: UTF8.self) == "hold" {
                    held.append(message)  // never answered in time
                    continue
                }
                var headers = NATSHeaders()
                headers["X-Reply-To-Subject"] = message.subject
                try? await responder.publish(
                    NATSOutgoingMessage(subject: reply, headers: headers, payload: Array("echo:".utf8) + message.payload))
            }
        }

        let reply = try await requester.request(
            subject: "rr.\(id).echo", payload: Array("ping".utf8), headers: ["X-Req": "1"], timeout: .seconds(5))
        #expect(String(decoding: reply.payload, as: UTF8.self) == "echo:ping")
        #expect(reply.headers["X-Reply-To-Subject"] == "rr.\(id).echo")

        let start = ContinuousClock.now
        do {
            _ = try await requester.request(subject: "rr.\(id).slow", payload: Array("hold".utf8), timeout: .milliseconds(300))
            Issue.record("a request nobody answers must time out")
        } catch let error as NATSError {
            #expect(error.kind == .timeout)
        }
        let waited = ContinuousClock.now - start
        #expect(waited >= .milliseconds(290))
        #expect(waited < .seconds(3))
        let lateReplySubject = try #require(held.all.first?.replySubject)

        // The responder answers after the requester gave up: the reply must not leak into
        // the next request on the same connection.
        try await responder.publish(NATSOutgoingMessage(subject: lateReplySubject, payload: Array("late".utf8)))
        try await responder.flush()
        let next = try await requester.request(subject: "rr.\(id).echo", payload: Array("again".utf8), timeout: .seconds(5))
        #expect(String(decoding: next.payload, as: UTF8.self) == "echo:again")

        echo.cancel()
        subscription.unsubscribe()
        await requester.close()
        await responder.close()
    }

    @Test("a request with no subscriber fails fast with .noResponders")
    func requestNoResponders() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let requester = try await connect(server, "nr-\(id)")
        let start = ContinuousClock.now
        do {
            _ = try await requester.request(subject: "nobody.\(id).home", payload: [1], timeout: .seconds(5))
            Issue.record("expected no responders")
        } catch let error as NATSError {
            #expect(error.kind == .noResponders)
        }
        #expect(ContinuousClock.now - start < .seconds(2))  // the 503 status, not the timeout
        await requester.close()
    }

    @Test("200 concurrent requests on one connection are each answered with their own reply")
    func concurrentRequests() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let requester = try await connect(server, "cr-req-\(id)")
        let responder = try await connect(server, "cr-rsp-\(id)")
        let subscription = try await responder.subscribe(subject: "cr.\(id).svc")
        try await responder.flush()
        let echo = Task {
            await withTaskGroup(of: Void.self) { group in
                for await message in subscription {
                    guard let reply = message.replySubject else { continue }
                    group.addTask {
                        let text = String(decoding: message.payload, as: UTF8.self)
                        try? await responder.publish(
                            NATSOutgoingMessage(subject: reply, payload: Array(text.replacingOccurrences(of: "req-", with: "rep-").utf8)))
                    }
                }
            }
        }

        let count = 200
        let replies = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for index in 0..<count {
                group.addTask {
                    let reply = try await requester.request(
                        subject: "cr.\(id).svc", payload: Array("req-\(index)".utf8), timeout: .seconds(15))
                    return (index, String(decoding: reply.payload, as: UTF8.self))
                }
            }
            var replies: [Int: String] = [:]
            for try await (index, text) in group { replies[index] = text }
            return replies
        }
        #expect(replies.count == count)
        let mismatched = (0..<count).filter { replies[$0] != "rep-\($0)" }
        #expect(mismatched.isEmpty, "requests answered with another request's reply: \(mismatched.prefix(10))")

        echo.cancel()
        subscription.unsubscribe()
        await requester.close()
        await responder.close()
    }

    // MARK: JetStream streams and publishing

    @Test("ensureStream is idempotent and updates a changed config in place")
    func ensureStreamIdempotentAndUpdates() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "es-\(id)") { $0.jetStreamRetryBudget = .seconds(3) }
        let name = "ES_\(id.uppercased())"
        var config = JetStreamStreamConfig(name: name, subjects: ["es.\(id).a"])
        config.storage = .memory
        try await connection.ensureStream(config)
        try await connection.ensureStream(config)  // same config again: no error, no change
        let first = try await connection.jetStream.publish(NATSOutgoingMessage(subject: "es.\(id).a", payload: [1]))
        #expect(first.stream == name)
        #expect(first.sequence == 1)

        config.subjects.append("es.\(id).b")
        config.maxMessagesPerSubject = 5
        try await connection.ensureStream(config)  // differs → update
        let info = try await connection.streamInfo(name)
        let stored = try #require(info["config"] as? [String: Any])
        #expect(stored["subjects"] as? [String] == ["es.\(id).a", "es.\(id).b"])
        #expect((stored["max_msgs_per_subject"] as? NSNumber)?.intValue == 5)
        #expect(try await connection.streamMessageCount(name) == 1)  // an update keeps the data
        let onNewSubject = try await connection.jetStream.publish(
            NATSOutgoingMessage(subject: "es.\(id).b", payload: [2]))
        #expect(onNewSubject.sequence == 2)

        // A change the server refuses on update (storage type) surfaces as a JetStream error.
        config.storage = .file
        do {
            try await connection.ensureStream(config)
            Issue.record("changing storage type must be rejected")
        } catch let error as NATSError {
            #expect(error.kind == .jetStream)
            #expect(error.jetStreamErrorCode != nil)
        }
        try await connection.deleteStream(name)
        await connection.close()
    }

    @Test("publish acks carry stream and sequence; Nats-Msg-Id dedupes; wrong expected sequence is 10071")
    func publishAcksDedupeAndExpectedSequence() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "pa-\(id)")
        let name = "PA_\(id.uppercased())"
        var config = JetStreamStreamConfig(name: name, subjects: ["pa.\(id).>"])
        config.storage = .memory
        try await connection.ensureStream(config)
        let js = connection.jetStream

        let acks = try await (1...3).asyncMap { index in
            try await js.publish(NATSOutgoingMessage(subject: "pa.\(id).seq", payload: [UInt8(index)]))
        }
        #expect(acks.map(\.stream) == [name, name, name])
        #expect(acks.map(\.sequence) == [1, 2, 3])
        #expect(acks.allSatisfy { !$0.duplicate })

        // Duplicate id within the window: acked as duplicate with the original's sequence.
        let withID = NATSOutgoingMessage(subject: "pa.\(id).dup", headers: ["Nats-Msg-Id": "m-1"], payload: [9])
        let original = try await js.publish(withID)
        let again = try await js.publish(withID)
        #expect(!original.duplicate)
        #expect(again.duplicate)
        #expect(again.sequence == original.sequence)
        #expect(try await connection.streamMessageCount(name) == 4)

        // Compare-and-set on the subject's last sequence.
        let cas = try await js.publish(NATSOutgoingMessage(subject: "pa.\(id).cas", payload: [1]))
        let start = ContinuousClock.now
        do {
            _ = try await js.publish(
                NATSOutgoingMessage(
                    subject: "pa.\(id).cas", headers: ["Nats-Expected-Last-Subject-Sequence": "\(cas.sequence - 1)"],
                    payload: [2]))
            Issue.record("a wrong expected last subject sequence must be rejected")
        } catch let error as NATSError {
            #expect(error.kind == .jetStream)
            #expect(error.jetStreamErrorCode == 10071)
            #expect(!error.isRetryable)
        }
        #expect(ContinuousClock.now - start < .seconds(2))  // rejected at once, not retried
        let updated = try await js.publish(
            NATSOutgoingMessage(
                subject: "pa.\(id).cas", headers: ["Nats-Expected-Last-Subject-Sequence": "\(cas.sequence)"],
                payload: [3]))
        #expect(updated.sequence == cas.sequence + 1)

        // In one batch, each message gets its own result, in order.
        let results = await js.publish(batch: [
            NATSOutgoingMessage(subject: "pa.\(id).mix", payload: [1]),
            NATSOutgoingMessage(
                subject: "pa.\(id).cas", headers: ["Nats-Expected-Last-Subject-Sequence": "0"], payload: [4]),
            NATSOutgoingMessage(subject: "pa.\(id).mix", payload: [2]),
        ])
        #expect(results.count == 3)
        let firstOK = try #require(try? results[0].get())
        let lastOK = try #require(try? results[2].get())
        #expect(lastOK.sequence > firstOK.sequence)
        if case .failure(let error) = results[1] {
            #expect(error.jetStreamErrorCode == 10071)
        } else {
            Issue.record("the create-only publish on an existing subject must fail")
        }
        try await connection.deleteStream(name)
        await connection.close()
    }

    @Test("a publish no stream captures fails with .noResponders once the retry budget is spent")
    func publishWithoutStreamExhaustsBudget() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "ns-\(id)") { $0.jetStreamRetryBudget = .seconds(1) }
        let start = ContinuousClock.now
        let result = try await outcome(within: .seconds(10), "publish gives up") {
            try await connection.jetStream.publish(NATSOutgoingMessage(subject: "nostream.\(id).x", payload: [1]))
        }
        let elapsed = ContinuousClock.now - start
        #expect(result.natsError?.kind == .noResponders)
        #expect(elapsed >= .seconds(1))  // retried for the whole budget…
        #expect(elapsed < .seconds(6))  // …and not much longer
        await connection.close()
    }

    @Test("a batch of 20,000 with 256 in flight stalls, yet every message is acked once, in order")
    func batchPublishUnderBackpressure() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "bp-\(id)") {
            $0.sendAsap = false
            $0.maxPendingJetStreamPublishes = 256
        }
        let name = "BP_\(id.uppercased())"
        try await connection.ensureStream(JetStreamStreamConfig(name: name, subjects: ["bp.\(id).>"]))
        let count = 20_000
        let messages = (0..<count).map {
            NATSOutgoingMessage(subject: "bp.\(id).m", payload: Array(String(format: "%06d", $0).utf8))
        }
        let start = ContinuousClock.now
        let results = await connection.jetStream.publish(batch: messages)
        let elapsed = ContinuousClock.now - start
        print("20k JetStream batch with MaxPending 256: \(elapsed)")

        #expect(results.count == count)
        let failures = results.enumerated().compactMap { index, result -> String? in
            if case .failure(let error) = result { return "\(index): \(error)" } else { return nil }
        }
        #expect(failures.isEmpty, "failed: \(failures.prefix(5))")
        let sequences = results.compactMap { try? $0.get().sequence }
        #expect(sequences == Array(1...UInt64(count)))
        #expect(results.allSatisfy { (try? $0.get().duplicate) == false })
        #expect(try await connection.streamMessageCount(name) == UInt64(count))
        let last = try #require(try await connection.lastMessage(stream: name, subject: "bp.\(id).m"))
        #expect(last.sequence == UInt64(count))
        #expect(String(decoding: last.payload, as: UTF8.self) == String(format: "%06d", count - 1))
        try await connection.deleteStream(name)
        await connection.close()
    }

    @Test("a publish while the server is down succeeds once it is back, stored exactly once")
    func publishAcrossServerRestart() async throws {
        let server = try await TestNATS.privateServer()
        let id = uniqueID()
        let connection = try await connect(server, "rs-\(id)") {
            $0.reconnectWait = .milliseconds(100)
            $0.jetStreamAckTimeout = .seconds(1)
            $0.jetStreamRetryBudget = .seconds(20)
        }
        let name = "RS_\(id.uppercased())"
        try await connection.ensureStream(JetStreamStreamConfig(name: name, subjects: ["rs.\(id).>"]))
        let message = NATSOutgoingMessage(subject: "rs.\(id).x", headers: ["Nats-Msg-Id": "restart-1"], payload: [42])

        await server.stop()
        let box = ResultBox<JetStreamPubAck>()
        let publishing = Task {
            do { box.set(.success(try await connection.jetStream.publish(message))) } catch { box.set(.failure(error)) }
        }
        // The outage itself (not a synchronisation wait): the publish and at least one ack
        // timeout (1 s) happen while nothing listens on the port.
        try await Task.sleep(for: .milliseconds(1500))
        #expect(box.get() == nil, "the publish cannot have succeeded while the server was down")
        try await server.launch()

        try await eventually("publish completes after restart", timeout: .seconds(20)) { box.get() != nil }
        let ack = try #require(try box.get()?.get())
        #expect(ack.stream == name)
        #expect(ack.sequence == 1)
        #expect(try await connection.streamMessageCount(name) == 1)
        let again = try await connection.jetStream.publish(message)
        #expect(again.duplicate)
        #expect(try await connection.streamMessageCount(name) == 1)
        publishing.cancel()
        await connection.close()
        await server.stop()
    }

    @Test("a server frozen (SIGSTOP) past the ack timeout mid-batch: stalls and retries lose and duplicate nothing")
    func batchSurvivesFrozenServer() async throws {
        let server = try await TestNATS.privateServer()
        let id = uniqueID()
        let connection = try await connect(server, "fz-\(id)") {
            $0.sendAsap = false
            $0.maxPendingJetStreamPublishes = 256
            $0.jetStreamAckTimeout = .seconds(1)
            $0.jetStreamRetryBudget = .seconds(30)
        }
        let name = "FZ_\(id.uppercased())"
        try await connection.ensureStream(JetStreamStreamConfig(name: name, subjects: ["fz.\(id).>"]))
        let count = 20_000
        let messages = (0..<count).map {
            NATSOutgoingMessage(subject: "fz.\(id).m", headers: ["Nats-Msg-Id": "fz-\($0)"], payload: Array("\($0)".utf8))
        }
        let pid = try serverPID(server)
        let box = ResultBox<[Result<JetStreamPubAck, NATSError>]>()
        let publishing = Task { box.set(.success(await connection.jetStream.publish(batch: messages))) }
        // Freeze as soon as the first acks are stored, i.e. mid-batch.
        try await eventually("the batch is under way", timeout: .seconds(10)) {
            ((try? await connection.streamMessageCount(name)) ?? 0) > 0
        }
        kill(pid, SIGSTOP)
        // The freeze itself (the scenario, not a synchronisation wait): longer than the
        // 1 s ack timeout, so in-flight publishes time out and are resent.
        try await Task.sleep(for: .milliseconds(2500))
        kill(pid, SIGCONT)
        try await eventually("the batch completes", timeout: .seconds(30)) { box.get() != nil }
        let results = try #require(try box.get()?.get())
        let failures = results.filter { if case .failure = $0 { return true } else { return false } }
        #expect(failures.isEmpty, "failed: \(failures.prefix(3))")
        let sequences = Set(results.compactMap { try? $0.get().sequence })
        #expect(sequences.count == count)  // one distinct stored message per publish
        #expect(try await connection.streamMessageCount(name) == UInt64(count))
        publishing.cancel()
        await connection.close()
        await server.stop()
    }

    @Test("a batch larger than the in-flight limit during a long outage fails once the retry budget is spent")
    func batchOutageHonoursRetryBudget() async throws {
        let server = try await TestNATS.privateServer()
        let id = uniqueID()
        let connection = try await connect(server, "ob-\(id)") {
            $0.sendAsap = false
            $0.maxPendingJetStreamPublishes = 64
            $0.jetStreamAckTimeout = .seconds(1)
            $0.jetStreamRetryBudget = .seconds(3)
        }
        let name = "OB_\(id.uppercased())"
        try await connection.ensureStream(JetStreamStreamConfig(name: name, subjects: ["ob.\(id).>"]))
        await server.stop()  // and it stays down
        let start = ContinuousClock.now
        let results = try await outcome(within: .seconds(15), "the batch gives up") {
            await connection.jetStream.publish(
                batch: (0..<2_000).map { NATSOutgoingMessage(subject: "ob.\(id).m", payload: Array("\($0)".utf8)) })
        }.get()
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .seconds(3))
        #expect(elapsed < .seconds(8), "2,000 messages / 64 in flight × 1 s ack timeout would be ~31 s")
        #expect(results.count == 2_000)
        #expect(results.allSatisfy { if case .failure = $0 { return true } else { return false } })
        await connection.close()
    }

    @Test("close() fails a JetStream publish still waiting for its ack with .closed, promptly")
    func closeFailsInFlightJetStreamPublish() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "cj-\(id)") { $0.jetStreamAckTimeout = .seconds(30) }
        // A core subscriber (no stream) receives the publish, so the server sends no
        // "no responders" and the publish waits for an ack that never comes.
        let observer = try await connect(server, "cj-obs-\(id)")
        let subscription = try await observer.subscribe(subject: "cj.\(id)")
        try await observer.flush()
        let (seen, _) = collect(subscription)
        let box = ResultBox<JetStreamPubAck>()
        let publishing = Task {
            do { box.set(.success(try await connection.jetStream.publish(NATSOutgoingMessage(subject: "cj.\(id)", payload: [1])))) }
            catch { box.set(.failure(error)) }
        }
        try await eventually("the publish reached the server") { seen.count == 1 }
        let closing = try await outcome(within: .seconds(10), "close() returns") { await connection.close() }
        #expect((try? closing.get()) != nil)
        try await eventually("the in-flight publish fails", timeout: .seconds(5)) { box.get() != nil }
        #expect(box.get()?.natsError?.kind == .closed)
        publishing.cancel()
        await observer.close()
    }

    @Test("close() during a batch stalled by a server outage returns promptly and fails the batch")
    func closeDuringStalledBatch() async throws {
        let server = try await TestNATS.privateServer()
        let id = uniqueID()
        let connection = try await connect(server, "cs-\(id)") {
            $0.sendAsap = false
            $0.maxPendingJetStreamPublishes = 64
            $0.jetStreamAckTimeout = .seconds(2)
        }
        let name = "CS_\(id.uppercased())"
        try await connection.ensureStream(JetStreamStreamConfig(name: name, subjects: ["cs.\(id).>"]))
        await server.stop()
        let box = ResultBox<[Result<JetStreamPubAck, NATSError>]>()
        let publishing = Task {
            box.set(.success(await connection.jetStream.publish(
                batch: (0..<5_000).map { NATSOutgoingMessage(subject: "cs.\(id).m", payload: Array("\($0)".utf8)) })))
        }
        // No event tells that the publisher thread is stalled on MaxPending (64 messages are
        // written in microseconds); give it a moment. The assertions hold either way.
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        let closing = try await outcome(within: .seconds(15), "close() returns") { await connection.close() }
        #expect((try? closing.get()) != nil)
        #expect(ContinuousClock.now - start < .seconds(5))
        try await eventually("the batch returns", timeout: .seconds(10)) { box.get() != nil }
        let results = try #require(try box.get()?.get())
        #expect(results.count == 5_000)
        #expect(results.allSatisfy { if case .failure = $0 { return true } else { return false } })
        publishing.cancel()
    }

    // MARK: JetStream message scheduling

    @Test("an @at schedule fires on its target at the due time, not before")
    func scheduleFiresAtDueTime() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "sc-\(id)")
        let (stream, consumer) = try await scheduleStream(connection, id)

        let due = millisecondPrecision(Date().addingTimeInterval(1.5))
        let ack = try await publishSchedule(
            connection, subject: "sch.\(id).s.1", target: "sch.\(id).f.1", at: due, body: "wake up",
            headers: ["X-User": "kept"])
        #expect(ack.stream == stream)

        let early = due.timeIntervalSinceNow - 0.4
        if early > 0.1 {
            let before = try await consumer.fetch(batch: 10, maxWait: .milliseconds(Int64(early * 1000)))
            #expect(before.isEmpty, "the schedule fired before its due time")
        }
        let fired = try await consumer.fetch(batch: 10, maxWait: .seconds(6))
        let receivedAt = Date()
        try #require(fired.count == 1)
        let message = fired[0]
        #expect(message.subject == "sch.\(id).f.1")
        #expect(String(decoding: message.payload, as: UTF8.self) == "wake up")
        #expect(message.headers["X-User"] == "kept")
        #expect(message.headers["Nats-Scheduler"] == "sch.\(id).s.1")
        #expect(message.headers["Nats-Schedule"] == nil)  // stripped on fire
        let storedAt = try #require(message.metadata).timestampNanos
        #expect(storedAt >= Int64(due.timeIntervalSince1970 * 1e9), "stored before due")
        #expect(receivedAt >= due)
        #expect(receivedAt.timeIntervalSince(due) < 3)
        try await consumer.ack(message)
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("republishing a schedule subject replaces it: only the latest body fires")
    func scheduleReplacement() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "sr-\(id)")
        let (stream, consumer) = try await scheduleStream(connection, id)

        let firstDue = millisecondPrecision(Date().addingTimeInterval(1.2))
        let secondDue = millisecondPrecision(Date().addingTimeInterval(1.6))
        _ = try await publishSchedule(
            connection, subject: "sch.\(id).s.1", target: "sch.\(id).f.1", at: firstDue, body: "v1")
        _ = try await publishSchedule(
            connection, subject: "sch.\(id).s.1", target: "sch.\(id).f.1", at: secondDue, body: "v2")

        let fired = try await consumer.fetch(batch: 10, maxWait: .seconds(6))
        try #require(fired.count == 1)
        #expect(String(decoding: fired[0].payload, as: UTF8.self) == "v2")
        // Fired at the replacement's time: the first schedule (earlier) never fired.
        #expect(try #require(fired[0].metadata).timestampNanos >= Int64(secondDue.timeIntervalSince1970 * 1e9))
        try await consumer.ack(fired[0])
        let more = try await consumer.fetch(batch: 10, maxWait: .seconds(1))
        #expect(more.isEmpty, "a replaced schedule fired too: \(more.map { String(decoding: $0.payload, as: UTF8.self) })")
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("purging a schedule subject cancels it; an untouched schedule still fires")
    func schedulePurgeCancels() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "sp-\(id)")
        let (stream, consumer) = try await scheduleStream(connection, id)

        let due = millisecondPrecision(Date().addingTimeInterval(1.0))
        _ = try await publishSchedule(
            connection, subject: "sch.\(id).s.cancel", target: "sch.\(id).f.cancel", at: due, body: "cancelled")
        _ = try await publishSchedule(
            connection, subject: "sch.\(id).s.keep", target: "sch.\(id).f.keep", at: due, body: "kept")
        #expect(try await connection.purge(stream: stream, subject: "sch.\(id).s.cancel") == 1)

        var fired: [JetStreamMessage] = []
        let deadline = due.addingTimeInterval(1.5)
        while Date() < deadline || fired.isEmpty {
            let wait = max(deadline.timeIntervalSinceNow, 0.2)
            let batch = try await consumer.fetch(batch: 10, maxWait: .milliseconds(Int64(wait * 1000)))
            fired += batch
            if Date() > deadline.addingTimeInterval(5) { break }
        }
        #expect(fired.map(\.subject) == ["sch.\(id).f.keep"], "only the kept schedule may fire")
        #expect(try await connection.lastMessage(stream: stream, subject: "sch.\(id).f.cancel") == nil)
        try await consumer.ack(fired)
        try await connection.deleteStream(stream)
        await connection.close()
    }

    // MARK: Pull consumers

    @Test("fetch on an empty consumer returns [] after maxWait")
    func fetchEmpty() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "fe-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id)
        let start = ContinuousClock.now
        let batch = try await consumer.fetch(batch: 10, maxWait: .milliseconds(600))
        let waited = ContinuousClock.now - start
        #expect(batch.isEmpty)
        #expect(waited >= .milliseconds(500))
        #expect(waited < .seconds(3))
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("a fetch waits its full maxWait even when earlier fetches expired (stale 408s are not its own)")
    func fetchIgnoresStaleExpiries() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "sx-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id)
        var early: [Duration] = []
        for _ in 0..<10 {
            // Expires on the server about when the client gives up: its 408 often arrives
            // after this fetch returned, while the next one is waiting.
            _ = try await consumer.fetch(batch: 1, maxWait: .milliseconds(12))
            let start = ContinuousClock.now
            let batch = try await consumer.fetch(batch: 1, maxWait: .milliseconds(250))
            let waited = ContinuousClock.now - start
            #expect(batch.isEmpty)
            if waited < .milliseconds(225) { early.append(waited) }  // stale 408s ended it at ~1 ms
        }
        #expect(early.isEmpty, "fetch(maxWait: 250 ms) returned [] early: \(early)")

        // And a message published while a fetch waits is delivered, not cut off by a stale 408.
        _ = try await consumer.fetch(batch: 1, maxWait: .milliseconds(12))
        let publisher = Task {
            try await Task.sleep(for: .milliseconds(400))  // the fetch below is long in flight by then
            return try await connection.jetStream.publish(NATSOutgoingMessage(subject: "pull.\(id).late", payload: [1]))
        }
        let got = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        #expect(got.map(\.subject) == ["pull.\(id).late"])
        _ = try await publisher.value
        try await connection.deleteStream(stream)
        await connection.close()
    }

    /// cnats 3.4.1's `natsSubscription_Fetch` wrote past its array when a fetch started with
    /// more than half a batch left over from an earlier one (nats.c #749) — this pattern: a
    /// long poll for 200 that returns at the first delivery, and small fetches after it.
    @Test("deliveries left over from an earlier long poll are returned by later fetches, each exactly once")
    func fetchLeftovers() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "lo-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id)
        let total = 600
        let publisher = Task {
            try await Task.sleep(for: .milliseconds(300))  // the long poll below is waiting by then
            _ = await connection.jetStream.publish(
                batch: (0..<total).map { NATSOutgoingMessage(subject: "pull.\(id).m", payload: Array(String($0).utf8)) })
        }
        var seen: [Int: Int] = [:]
        var fetches = 0
        let first = try await consumer.fetch(batch: 200, maxWait: .seconds(5))
        #expect(!first.isEmpty)
        var batch = first
        let deadline = ContinuousClock.now + .seconds(20)
        while seen.count < total, ContinuousClock.now < deadline {
            for message in batch { seen[Int(String(decoding: message.payload, as: UTF8.self))!, default: 0] += 1 }
            try await consumer.ack(batch)
            fetches += 1
            // Small batches with short waits: each starts with whatever the long poll left.
            batch = try await consumer.fetch(batch: fetches % 3 == 0 ? 3 : 17, maxWait: .milliseconds(fetches % 2 == 0 ? 5 : 40))
        }
        for message in batch { seen[Int(String(decoding: message.payload, as: UTF8.self))!, default: 0] += 1 }
        _ = try await publisher.value
        #expect(seen.count == total)
        #expect(seen.values.allSatisfy { $0 == 1 }, "duplicates: \(seen.filter { $0.value > 1 }.count)")
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("ack removes the message; metadata names stream, consumer and sequences")
    func ackAndMetadata() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "ak-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id, ackWait: .seconds(1))
        _ = try await connection.jetStream.publish(NATSOutgoingMessage(subject: "pull.\(id).a", payload: [0]))
        let ack = try await connection.jetStream.publish(
            NATSOutgoingMessage(subject: "pull.\(id).b", headers: ["X-K": "v"], payload: [1, 2]))
        let publishedAt = Date()

        let fetched = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        try #require(fetched.count == 1)
        let first = fetched[0]
        #expect(first.subject == "pull.\(id).a")
        let meta = try #require(first.metadata, "unparsed ack subject \(first.ackSubject)")
        #expect(meta.stream == stream)
        #expect(meta.consumer == consumer.durable)
        #expect(meta.deliveries == 1)
        #expect(meta.streamSequence == 1)
        #expect(meta.consumerSequence == 1)
        #expect(meta.pending == 1)  // the second message is still waiting
        #expect(abs(Double(meta.timestampNanos) / 1e9 - publishedAt.timeIntervalSince1970) < 10)

        let second = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        try #require(second.count == 1)
        #expect(second[0].headers["X-K"] == "v")
        #expect(second[0].payload == [1, 2])
        #expect(second[0].metadata?.streamSequence == ack.sequence)
        #expect(second[0].metadata?.consumerSequence == 2)
        #expect(second[0].metadata?.pending == 0)

        try await consumer.ack(fetched + second)
        try await eventually("acks reach the server") {
            let info = try await connection.consumerInfo(stream: stream, durable: consumer.durable)
            return (info["num_ack_pending"] as? NSNumber)?.intValue == 0
        }
        // ack_wait is 1 s: an unacknowledged message would be redelivered inside this wait.
        let after = try await consumer.fetch(batch: 10, maxWait: .milliseconds(1500))
        #expect(after.isEmpty)
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("nak redelivers at once with deliveries == 2")
    func nakRedelivers() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "nk-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id)  // ack_wait 30 s
        _ = try await connection.jetStream.publish(NATSOutgoingMessage(subject: "pull.\(id).x", payload: [7]))
        let first = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        try #require(first.count == 1)
        #expect(first[0].metadata?.deliveries == 1)
        try await consumer.nak(first[0])
        let start = ContinuousClock.now
        let again = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        try #require(again.count == 1)
        #expect(ContinuousClock.now - start < .seconds(3))  // the nak, not the 30 s ack wait
        #expect(again[0].payload == [7])
        #expect(again[0].metadata?.deliveries == 2)
        #expect(again[0].metadata?.streamSequence == first[0].metadata?.streamSequence)
        #expect(again[0].metadata?.consumerSequence == 2)
        try await consumer.ack(again[0])
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("nak with a delay is not redelivered before the delay")
    func nakWithDelay() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "nd-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id)
        _ = try await connection.jetStream.publish(NATSOutgoingMessage(subject: "pull.\(id).x", payload: [8]))
        let first = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        try #require(first.count == 1)
        let nakAt = ContinuousClock.now
        try await consumer.nak(first[0], delay: .milliseconds(1500))
        // Pull until it is back, however late this process gets to ask (a busy machine), and
        // judge by when it came: never before the delay.
        var after: [JetStreamMessage] = []
        while after.isEmpty, ContinuousClock.now - nakAt < .seconds(20) {
            after = try await consumer.fetch(batch: 1, maxWait: .milliseconds(500))
        }
        let redeliveredAfter = ContinuousClock.now - nakAt
        try #require(after.count == 1)
        #expect(redeliveredAfter >= .milliseconds(1400), "redelivered \(redeliveredAfter) after a nak delayed by 1.5 s")
        #expect(after[0].metadata?.deliveries == 2)
        try await consumer.ack(after[0])
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("term is never redelivered")
    func termNeverRedelivers() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "tm-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id, ackWait: .milliseconds(500))
        _ = try await connection.jetStream.publish(NATSOutgoingMessage(subject: "pull.\(id).x", payload: [9]))
        let first = try await consumer.fetch(batch: 1, maxWait: .seconds(5))
        try #require(first.count == 1)
        try await consumer.term(first[0])
        // With ack_wait 500 ms an un-terminated message would come back twice in this window.
        let later = try await consumer.fetch(batch: 1, maxWait: .milliseconds(1500))
        #expect(later.isEmpty)
        let info = try await connection.consumerInfo(stream: stream, durable: consumer.durable)
        #expect((info["num_ack_pending"] as? NSNumber)?.intValue == 0)
        #expect((info["num_redelivered"] as? NSNumber)?.intValue == 0)
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("messages() yields in stream order across fetch batches and ends when cancelled")
    func messagesSequenceInOrder() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "ms-\(id)")
        let (stream, consumer) = try await pullSetup(connection, id)
        let count = 40
        let results = await connection.jetStream.publish(
            batch: (0..<count).map { NATSOutgoingMessage(subject: "pull.\(id).n", payload: Array("\($0)".utf8)) })
        #expect(results.allSatisfy { (try? $0.get()) != nil })

        let received = try await outcome(within: .seconds(15), "\(count) messages through messages()") {
            var payloads: [String] = []
            var sequences: [UInt64] = []
            for try await message in consumer.messages(prefetch: 7, maxWait: .milliseconds(500)) {
                payloads.append(String(decoding: message.payload, as: UTF8.self))
                sequences.append(message.metadata?.streamSequence ?? 0)
                try await consumer.ack(message)
                if payloads.count == count { break }
            }
            return (payloads, sequences)
        }.get()
        #expect(received.0 == (0..<count).map(String.init))
        #expect(received.1 == Array(1...UInt64(count)))

        // With nothing left, the sequence polls until its task is cancelled, then ends.
        let idle = Task { () throws -> Int in
            var seen = 0
            for try await _ in consumer.messages(maxWait: .milliseconds(300)) { seen += 1 }
            return seen
        }
        idle.cancel()
        let ended = try await outcome(within: .seconds(5), "messages() ends on cancellation") { try await idle.value }
        #expect(try ended.get() == 0)
        try await connection.deleteStream(stream)
        await connection.close()
    }

    @Test("ack metadata parses the v1 and the v2 (domain, account hash) ack subject forms")
    func metadataForms() {
        let v1 = JetStreamMessageMetadata(ackSubject: "$JS.ACK.ORDERS.worker.3.120.45.1700000000123456789.7")
        #expect(v1?.stream == "ORDERS")
        #expect(v1?.consumer == "worker")
        #expect(v1?.deliveries == 3)
        #expect(v1?.streamSequence == 120)
        #expect(v1?.consumerSequence == 45)
        #expect(v1?.timestampNanos == 1_700_000_000_123_456_789)
        #expect(v1?.pending == 7)
        let v2 = JetStreamMessageMetadata(
            ackSubject: "$JS.ACK.hub.ACCHASH.ORDERS.worker.3.120.45.1700000000123456789.7.Xy12")
        #expect(v2 == v1)
        let v2NoToken = JetStreamMessageMetadata(ackSubject: "$JS.ACK._.ACCHASH.ORDERS.worker.1.2.3.4.5")
        #expect(v2NoToken?.stream == "ORDERS")
        #expect(v2NoToken?.pending == 5)
        #expect(JetStreamMessageMetadata(ackSubject: "_INBOX.abc.def") == nil)
        #expect(JetStreamMessageMetadata(ackSubject: "$JS.ACK.S.C.x.2.3.4.5") == nil)
    }

    // MARK: Key-value

    @Test("KV: put/get round trip, revisions increase, missing and deleted keys read nil")
    func keyValue() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "kv-\(id)")
        let bucket = try await KeyValueBucket.ensure("kv\(id)", connection: connection, storage: .memory)
        _ = try await KeyValueBucket.ensure("kv\(id)", connection: connection, storage: .memory)  // idempotent

        let r1 = try await bucket.put("quota.tenant-a", Array("100".utf8))
        let got1 = try #require(try await bucket.get("quota.tenant-a"))
        #expect(got1.value == Array("100".utf8))
        #expect(got1.revision == r1)

        let r2 = try await bucket.put("quota.tenant-a", Array("250".utf8))
        #expect(r2 > r1)
        let got2 = try #require(try await bucket.get("quota.tenant-a"))
        #expect(got2.value == Array("250".utf8))
        #expect(got2.revision == r2)

        let binary: [UInt8] = [0, 255, 13, 10, 0]
        _ = try await bucket.put("blob", binary)
        #expect(try await bucket.get("blob")?.value == binary)
        _ = try await bucket.put("empty", [])
        #expect(try await bucket.get("empty")?.value == [])

        #expect(try await bucket.get("missing") == nil)
        try await bucket.delete("quota.tenant-a")
        #expect(try await bucket.get("quota.tenant-a") == nil)
        #expect(try await bucket.get("blob")?.value == binary)  // other keys unaffected

        let r3 = try await bucket.put("quota.tenant-a", Array("7".utf8))
        #expect(r3 > r2)
        #expect(try await bucket.get("quota.tenant-a")?.value == Array("7".utf8))
        try await connection.deleteStream("KV_kv\(id)")
        await connection.close()
    }

    // MARK: Micro services

    @Test("MicroService: endpoint replies, error headers, and $SRV PING/INFO/STATS discovery")
    func microService() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let serviceConnection = try await connect(server, "ms-svc-\(id)")
        let client = try await connect(server, "ms-cli-\(id)")
        let name = "svc-\(id)"
        let service = MicroService(
            identity: .init(name: name, version: "1.2.3", description: "test service", metadata: ["k": "v"]),
            connection: serviceConnection,
            endpoints: [
                MicroEndpoint(name: "Echo", subject: "micro.\(id).echo") { message in
                    MicroReply(payload: Array("echo:".utf8) + message.payload, headers: ["X-Handled": "yes"])
                },
                MicroEndpoint(name: "Fail", subject: "micro.\(id).fail") {
                    (_: NATSMessage) async throws(MicroServiceError) -> MicroReply in
                    throw MicroServiceError(code: 409, description: "conflict here", body: Array("details".utf8))
                },
            ],
            logger: TestNATS.logger)
        let stopped = ResultBox<Void>()
        let running = Task {
            do { try await service.run(); stopped.set(.success(())) } catch { stopped.set(.failure(error)) }
        }
        try await eventually("service answers PING", timeout: .seconds(10)) {
            (try? await client.request(subject: "$SRV.PING.\(name)", payload: [], timeout: .milliseconds(500))) != nil
        }

        for text in ["a", "b", "c"] {
            let reply = try await client.request(subject: "micro.\(id).echo", payload: Array(text.utf8), timeout: .seconds(5))
            #expect(String(decoding: reply.payload, as: UTF8.self) == "echo:\(text)")
            #expect(reply.headers["X-Handled"] == "yes")
            #expect(reply.headers["Nats-Service-Error"] == nil)
        }
        for _ in 0..<2 {
            let failed = try await client.request(subject: "micro.\(id).fail", payload: [1], timeout: .seconds(5))
            #expect(failed.headers["Nats-Service-Error"] == "conflict here")
            #expect(failed.headers["Nats-Service-Error-Code"] == "409")
            #expect(String(decoding: failed.payload, as: UTF8.self) == "details")
        }

        let ping = try json(try await client.request(subject: "$SRV.PING.\(name)", payload: [], timeout: .seconds(5)))
        #expect(ping["type"] as? String == "io.nats.micro.v1.ping_response")
        #expect(ping["name"] as? String == name)
        #expect(ping["id"] as? String == service.id)
        #expect(ping["version"] as? String == "1.2.3")
        let byID = try json(
            try await client.request(subject: "$SRV.PING.\(name).\(service.id)", payload: [], timeout: .seconds(5)))
        #expect(byID["id"] as? String == service.id)

        let info = try json(try await client.request(subject: "$SRV.INFO.\(name)", payload: [], timeout: .seconds(5)))
        #expect(info["type"] as? String == "io.nats.micro.v1.info_response")
        #expect(info["description"] as? String == "test service")
        #expect((info["metadata"] as? [String: String]) == ["k": "v"])
        let endpoints = try #require(info["endpoints"] as? [[String: Any]])
        #expect(endpoints.compactMap { $0["name"] as? String } == ["Echo", "Fail"])
        #expect(endpoints.compactMap { $0["subject"] as? String } == ["micro.\(id).echo", "micro.\(id).fail"])
        #expect(endpoints.compactMap { $0["queue_group"] as? String } == ["q", "q"])

        let stats = try json(try await client.request(subject: "$SRV.STATS.\(name)", payload: [], timeout: .seconds(5)))
        #expect(stats["type"] as? String == "io.nats.micro.v1.stats_response")
        let endpointStats = try #require(stats["endpoints"] as? [[String: Any]])
        let echo = try #require(endpointStats.first { $0["name"] as? String == "Echo" })
        let fail = try #require(endpointStats.first { $0["name"] as? String == "Fail" })
        #expect((echo["num_requests"] as? NSNumber)?.intValue == 3)
        #expect((echo["num_errors"] as? NSNumber)?.intValue == 0)
        #expect((fail["num_requests"] as? NSNumber)?.intValue == 2)
        #expect((fail["num_errors"] as? NSNumber)?.intValue == 2)
        #expect(fail["last_error"] as? String == "409:conflict here")

        // Cancelling run() stops serving: the endpoints go away.
        running.cancel()
        try await eventually("run() returns after cancellation", timeout: .seconds(5)) { stopped.get() != nil }
        #expect((try? stopped.get()?.get()) != nil)
        do {
            _ = try await client.request(subject: "micro.\(id).echo", payload: [1], timeout: .seconds(2))
            Issue.record("a stopped service must not answer")
        } catch let error as NATSError {
            #expect(error.kind == .noResponders)
        }
        await serviceConnection.close()
        await client.close()
    }

    @Test("MicroService deadline: each request gets one reply, from its handler or else from its deadline; a late handler's reply never goes out")
    func microServiceDeadline() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let serviceConnection = try await connect(server, "msd-svc-\(id)")
        let client = try await connect(server, "msd-cli-\(id)")
        // Slow handlers wait for the gate; the test opens it once the deadline has answered them.
        let gate = Gate()
        let slowFinished = Mutex(0)
        let endpoint = MicroEndpoint(
            name: "Maybe", subject: "micro.\(id).maybe",
            share: .init(limit: 100, partition: { _ in "t" }, refusal: MicroServiceError(code: 429, description: "full")),
            deadline: .init(after: .milliseconds(300), refusal: MicroServiceError(code: 503, description: "too slow"))
        ) { message in
            if message.payload == [1] {
                await gate.passed()
                slowFinished.withLock { $0 += 1 }
            }
            return MicroReply(payload: Array("done".utf8))
        }
        let service = MicroService(
            identity: .init(name: "msd-\(id)", version: "1.0.0", description: "deadline test"),
            connection: serviceConnection, endpoints: [endpoint], logger: TestNATS.logger)
        let running = Task { try await service.run() }
        try await eventually("service answers PING", timeout: .seconds(10)) {
            (try? await client.request(subject: "$SRV.PING.msd-\(id)", payload: [], timeout: .milliseconds(500))) != nil
        }

        // Every reply lands on its own subject: request i answers on replies.<id>.<i>.
        let replies = try await client.subscribe(subject: "replies.\(id).>")
        try await client.flush()
        let answers = Mutex<[String: [String]]>([:])
        let collector = Task {
            for await reply in replies {
                let index = String(reply.subject.split(separator: ".").last!)
                answers.withLock { $0[index, default: []].append(reply.headers["Nats-Service-Error-Code"] ?? "ok") }
            }
        }
        let slow = Set(0..<10)
        let started = ContinuousClock.now
        for index in 0..<30 {
            try await client.publish(
                NATSOutgoingMessage(
                    subject: "micro.\(id).maybe", replySubject: "replies.\(id).\(index)", payload: [slow.contains(index) ? 1 : 0]))
        }
        try await eventually("every request is answered", timeout: .seconds(10)) { answers.withLock { $0.count } == 30 }
        let waited = ContinuousClock.now - started
        for index in 0..<30 {
            #expect(answers.withLock { $0[String(index)] } == [slow.contains(index) ? "503" : "ok"], "request \(index)")
        }
        #expect(waited < .seconds(3))  // 300 ms and one sweep, with room for a loaded machine

        // The slow handlers now finish; their replies are dropped. A request sent after they
        // returned is answered, and nothing else arrives.
        gate.open()
        try await eventually("the slow handlers finish") { slowFinished.withLock { $0 } == slow.count }
        try await client.publish(
            NATSOutgoingMessage(subject: "micro.\(id).maybe", replySubject: "replies.\(id).sentinel", payload: [0]))
        try await eventually("the last request is answered", timeout: .seconds(10)) {
            answers.withLock { $0["sentinel"] } != nil
        }
        let all = answers.withLock { $0 }
        #expect(all.count == 31)
        #expect(all.values.allSatisfy { $0.count == 1 })
        collector.cancel()

        running.cancel()
        _ = await running.result
        replies.unsubscribe()
        await serviceConnection.close()
        await client.close()
    }

    // MARK: Close

    @Test("close() fails pending requests with .closed; later calls throw; subscriptions end")
    func closeFailsPendingAndLaterCalls() async throws {
        let server = try await TestNATS.server()
        let id = uniqueID()
        let connection = try await connect(server, "cl-\(id)")
        let silent = try await connect(server, "cl-silent-\(id)")
        let sink = try await silent.subscribe(subject: "close.\(id).>")
        try await silent.flush()
        let (arrived, _) = collect(sink)
        let ownSubscription = try await connection.subscribe(subject: "own.\(id)")
        let (_, ownTask) = collect(ownSubscription)

        let pending = ResultBox<NATSMessage>()
        let start = ContinuousClock.now
        let requestTask = Task {
            do {
                pending.set(.success(try await connection.request(subject: "close.\(id).q", payload: [1], timeout: .seconds(60))))
            } catch { pending.set(.failure(error)) }
        }
        try await eventually("the request reached the silent responder") { arrived.count == 1 }
        await connection.close()
        try await eventually("the pending request fails", timeout: .seconds(5)) { pending.get() != nil }
        #expect(pending.get()?.natsError?.kind == .closed)
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(connection.isClosed)
        try await eventually("subscriptions of the closed connection end", timeout: .seconds(5)) { ownTask.isFinishedFlag }

        await #expect(throws: NATSError.self) {
            try await connection.publish(NATSOutgoingMessage(subject: "close.\(id).p", payload: [1]))
        }
        do {
            _ = try await connection.request(subject: "close.\(id).q", payload: [2], timeout: .seconds(1))
            Issue.record("request after close must throw")
        } catch let error as NATSError {
            #expect(error.kind == .closed)
        }
        await #expect(throws: NATSError.self) { _ = try await connection.subscribe(subject: "close.\(id).s") }
        await #expect(throws: NATSError.self) { try await connection.flush() }
        let jsAfterClose = try await outcome(within: .seconds(10), "JetStream publish after close returns") {
            try await connection.jetStream.publish(NATSOutgoingMessage(subject: "close.\(id).js", payload: [1]))
        }
        #expect(jsAfterClose.natsError != nil)
        #expect(jsAfterClose.natsError?.isRetryable == false)
        await connection.close()  // a second close is a no-op
        requestTask.cancel()
        await silent.close()
    }
}

// MARK: - Helpers

/// Holds tasks until opened.
private final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func passed() async {
        await withCheckedContinuation { continuation in
            let open = state.withLock { state in
                if !state.open { state.waiting.append(continuation) }
                return state.open
            }
            if open { continuation.resume() }
        }
    }

    func open() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }
}

private func uniqueID() -> String {
    String(UInt64.random(in: 0...UInt64.max), radix: 36)
}

private func connect(
    _ server: LocalNATSServer, _ name: String, _ configure: (inout NATSConnectionOptions) -> Void = { _ in }
) async throws -> NATSConnection {
    var options = NATSConnectionOptions(url: server.url, name: name)
    options.sendAsap = true
    options.jetStreamRetryBudget = .seconds(20)
    configure(&options)
    return try await NATSConnection.connect(options, logger: TestNATS.logger)
}

/// A stream `SCH_<id>` over `sch.<id>.>` allowing schedules, and a pull consumer on the fired
/// subjects `sch.<id>.f.>`.
private func scheduleStream(_ connection: NATSConnection, _ id: String) async throws
    -> (String, JetStreamPullConsumer)
{
    let name = "SCH_\(id.uppercased())"
    var config = JetStreamStreamConfig(name: name, subjects: ["sch.\(id).>"])
    config.allowMessageSchedules = true
    config.storage = .memory
    try await connection.ensureStream(config)
    try await connection.ensureStream(config)  // idempotent with scheduling on, too
    let filter = "sch.\(id).f.>"
    try await connection.ensureConsumer(stream: name, JetStreamConsumerConfig(durableName: "fired", filterSubjects: [filter]))
    let consumer = try await JetStreamPullConsumer.bind(
        connection: connection, stream: name, durable: "fired", filterSubject: filter)
    return (name, consumer)
}

private func publishSchedule(
    _ connection: NATSConnection, subject: String, target: String, at due: Date, body: String,
    headers extra: NATSHeaders = NATSHeaders()
) async throws -> JetStreamPubAck {
    var headers = extra
    headers["Nats-Schedule"] = "@at \(rfc3339(due))"
    headers["Nats-Schedule-Target"] = target
    return try await connection.jetStream.publish(
        NATSOutgoingMessage(subject: subject, headers: headers, payload: Array(body.utf8)))
}

/// A stream `PULL_<id>` over `pull.<id>.>` and a bound durable pull consumer on all of it.
private func pullSetup(_ connection: NATSConnection, _ id: String, ackWait: Duration = .seconds(30)) async throws
    -> (String, JetStreamPullConsumer)
{
    let name = "PULL_\(id.uppercased())"
    var config = JetStreamStreamConfig(name: name, subjects: ["pull.\(id).>"])
    config.storage = .memory
    try await connection.ensureStream(config)
    var consumerConfig = JetStreamConsumerConfig(durableName: "c\(id)", filterSubjects: ["pull.\(id).>"])
    consumerConfig.ackWait = ackWait
    try await connection.ensureConsumer(stream: name, consumerConfig)
    try await connection.ensureConsumer(stream: name, consumerConfig)  // idempotent
    let consumer = try await JetStreamPullConsumer.bind(
        connection: connection, stream: name, durable: "c\(id)", filterSubject: "pull.\(id).>")
    return (name, consumer)
}

/// The pid of a private server's process (our child, found by its config file), for
/// SIGSTOP/SIGCONT, which `LocalNATSServer.signal` cannot send (it waits for the exit).
private func serverPID(_ server: LocalNATSServer) throws -> pid_t {
    let config = server.storeDirectory.appendingPathComponent("nats.conf").path
    for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
        guard let pid = pid_t(entry),
            let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
            cmdline.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == config }),
            let stat = FileManager.default.contents(atPath: "/proc/\(entry)/stat")
        else { continue }
        // Field 4 of /proc/<pid>/stat is the parent pid (after the parenthesised name).
        let fields = String(decoding: stat, as: UTF8.self).split(separator: ")").last?.split(separator: " ")
        if let parent = fields.flatMap({ $0.count > 1 ? pid_t($0[1]) : nil }), parent == getpid() { return pid }
    }
    throw TestFailure("no nats-server process of ours uses \(config)")
}

private func millisecondPrecision(_ date: Date) -> Date {
    Date(timeIntervalSince1970: (date.timeIntervalSince1970 * 1000).rounded(.down) / 1000)
}

private func rfc3339(_ date: Date) -> String {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    formatter.timeZone = TimeZone(identifier: "UTC")
    return formatter.string(from: date)
}

private func json(_ message: NATSMessage) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(message.payload)) as? [String: Any])
}

/// Messages a subscription delivered, collected by a background task.
final class ReceivedMessages: Sendable {
    private let messages = Mutex<[NATSMessage]>([])
    func append(_ message: NATSMessage) { messages.withLock { $0.append(message) } }
    var all: [NATSMessage] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }
}

/// A task's completion, observable without awaiting it (so a hang fails a bounded wait).
final class TaskHandle: Sendable {
    private let finished = Atomic<Bool>(false)
    func markFinished() { finished.store(true, ordering: .releasing) }
    var isFinishedFlag: Bool { finished.load(ordering: .acquiring) }
}

private func collect(_ subscription: NATSSubscription) -> (ReceivedMessages, TaskHandle) {
    let received = ReceivedMessages()
    let handle = TaskHandle()
    Task {
        for await message in subscription { received.append(message) }
        handle.markFinished()
    }
    return (received, handle)
}

/// The outcome of an async call, set once, readable from a polling check.
final class ResultBox<T: Sendable>: Sendable {
    private let value = Mutex<Result<T, any Error>?>(nil)
    func set(_ result: Result<T, any Error>) { value.withLock { if $0 == nil { $0 = result } } }
    func get() -> Result<T, any Error>? { value.withLock { $0 } }
}

/// Runs `body` in its own task and waits for its outcome, failing (and cancelling it) after
/// `timeout`: a call that hangs fails the test instead of hanging the suite.
private func outcome<T: Sendable>(
    within timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T
) async throws -> Result<T, any Error> {
    let box = ResultBox<T>()
    let task = Task {
        do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
    }
    do {
        try await eventually(what, timeout: timeout) { box.get() != nil }
    } catch {
        task.cancel()
        throw error
    }
    return box.get()!
}

extension Result {
    fileprivate var natsError: NATSError? {
        if case .failure(let error) = self { return error as? NATSError }
        return nil
    }
}

extension NATSMessage {
    /// All values of header `name`, in order.
    fileprivate func fields(_ name: String) -> [String] {
        headers.fields.filter { $0.name == name }.map(\.value)
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
