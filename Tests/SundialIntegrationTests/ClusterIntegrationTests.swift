import Foundation
import SundialLocalCluster
import SundialMessaging
import SundialExecutor
import SundialNATS
import SundialProto
import SundialTestSupport
import Testing

/// Sundial on a 3-node JetStream cluster with replicated streams: a node killed with SIGKILL
/// while timers are pending loses none of them, and the node rejoins.
@Suite("Integration: 3-node JetStream cluster")
struct ClusterIntegrationTests {
    @Test("every stream has 3 replicas; a node killed while timers are pending loses none, and rejoins")
    func nodeLossLosesNothing() async throws {
        try await withReplicatedSystem("cluster") { cluster, system in
            let namespace = system.namespace
            for stream in [
                namespace.fireStream, namespace.workStream, namespace.resultsStream, namespace.eventsStream,
                namespace.poisonStream,
            ] {
                let info = try await system.api.streamInfo(stream)
                let replicas = ((info["config"] as? [String: Any])?["num_replicas"] as? NSNumber)?.intValue
                #expect(replicas == 3, "\(stream)")
        }
        let worker = try await system.worker(queue: "cluster")
        let client = system.client(tenant: "acme")
        var ids: Set<String> = []
        for index in 0..<40 {
            let delay = Duration.milliseconds(3000 + 100 * index)
            ids.insert(try await client.create(.delay(delay, queue: "cluster", key: "c\(index)")).timer.id)
        }
        // One node dies before any is due (it may lead some streams: they elect anew).
        await cluster.nodes[1].signal(SIGKILL)
        let jobs = await collectThroughFailover(worker, count: ids.count, timeout: .seconds(60))
        let received = Set(jobs.map(\.0.timerID))
        #expect(received == ids, "lost: \(ids.subtracting(received).count)")
        print("cluster: \(jobs.count) jobs for \(ids.count) timers with a node down (\(jobs.count - received.count) duplicates)")

        // The node comes back and rejoins; timers created now fire as well.
        try await cluster.nodes[1].launch()
        var later: Set<String> = []
        for index in 0..<10 {
            later.insert(try await client.create(.delay(.seconds(1), queue: "cluster", key: "d\(index)")).timer.id)
        }
        let laterJobs = await collectThroughFailover(worker, count: later.count, timeout: .seconds(30))
        #expect(Set(laterJobs.map(\.0.timerID)) == later)
        }
    }
}

extension ClusterIntegrationTests {
    @Test("a 3-replica stream asked for while a node is down is created once the node is back (ensureStream waits out 'no suitable peers')")
    func streamCreationWaitsForPeers() async throws {
        let cluster = try await TestNATS.privateCluster(size: 3)
        do {
            let connection = try await TestNATS.connect(url: cluster.nodes[0].url, name: "peers-wait")
            await cluster.nodes[2].signal(SIGKILL)
            var config = JetStreamStreamConfig(name: "PEERSWAIT_\(UInt32.random(in: 0...UInt32.max))", subjects: ["peerswait.>"])
            config.replicas = 3
            // Placement needs all three peers; the node comes back while the create is retried.
            let relaunch = Task {
                try await Task.sleep(for: .seconds(6))
                try await cluster.nodes[2].launch()
            }
            try await connection.ensureStream(config)
            try await relaunch.value
            let info = try await connection.streamInfo(config.name)
            #expect(((info["config"] as? [String: Any])?["num_replicas"] as? NSNumber)?.intValue == 3)
            await connection.close()
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}

/// A test system on a private 3-node cluster with 3-replica streams (fairness off: these tests
/// are about the streams); the cluster is stopped whatever the body does.
private func withReplicatedSystem(
    _ name: String, _ body: (LocalNATSCluster, TestSystem) async throws -> Void
) async throws {
    let cluster = try await TestNATS.privateCluster(size: 3)
    var options = TestSystem.Options()
    options.natsCluster = cluster
    options.streamLimits.replicas = 3
    options.fairness = false
    do {
        try await withTestSystem(name, options) { system in try await body(cluster, system) }
    } catch {
        await cluster.stop()
        throw error
    }
    await cluster.stop()
}

/// Like `collectJobs`, but a failed fetch is tried again, as an executor would: while a node is
/// down, a consumer whose leader was on it answers nothing until its replicas elect another.
private func collectThroughFailover(_ worker: SundialWorker, count: Int, timeout: Duration) async -> [(SundialJob, Date)] {
    var jobs: [(SundialJob, Date)] = []
    let deadline = ContinuousClock.now + timeout
    while jobs.count < count, ContinuousClock.now < deadline {
        do {
            for job in try await worker.next(max: min(256, count - jobs.count), maxWait: .milliseconds(500)) {
                jobs.append((job, Date()))
                try await worker.complete(job)
            }
        } catch {
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
    return jobs
}

extension ClusterIntegrationTests {
    /// The fire stream's leader runs its schedule timers; killing it moves them to a replica
    /// that must fire everything due meanwhile. A fire held back past the election would show
    /// up as a job far later than the election takes (chaos run 2 saw jobs minutes late).
    @Test("the fire stream's leader killed and restarted while timers fall due: every job arrives, none held beyond the failover")
    func fireLeaderLoss() async throws {
        try await withReplicatedSystem("fireleader") { cluster, system in
            let worker = try await system.worker(queue: "leader")
            let client = system.client(tenant: "acme")
            var ids: Set<String> = []
            for index in 0..<150 {
                let delay = Duration.milliseconds(3000 + 100 * index)
                ids.insert(try await client.create(.delay(delay, queue: "leader", key: "l\(index)")).timer.id)
        }
        let info = try await system.api.streamInfo(system.namespace.fireStreams[0])
        let leader = try #require((info["cluster"] as? [String: Any])?["leader"] as? String)
        let victim = try #require(cluster.nodes.firstIndex { "sundial-dev-\($0.port)" == leader }, "leader \(leader)")
        await cluster.nodes[victim].signal(SIGKILL)
        let killedAt = Date()
        let relaunch = Task {
            try await Task.sleep(for: .seconds(6))
            try await cluster.nodes[victim].launch()
        }
        let jobs = await collectThroughFailover(worker, count: ids.count, timeout: .seconds(90))
        try await relaunch.value
        let received = Set(jobs.map(\.0.timerID))
        let lateness = jobs.map { $0.1.timeIntervalSince(max($0.0.scheduledAt, killedAt)) }.sorted()
        let worst = lateness.last ?? -1
        print("fire leader \(victim) killed: \(jobs.count) jobs for \(ids.count) timers, lateness p50 \(lateness.isEmpty ? -1 : lateness[lateness.count / 2]) s, max \(worst) s")
        #expect(received == ids, "lost: \(ids.subtracting(received).count)")
        // An election takes a few seconds; 30 s is far beyond it and well inside the
        // Planner's 60 s rescue grace, so a held-back fire cannot hide behind a rescue.
        #expect(worst < 30, "a job came \(worst) s after its due time (or the kill)")
        }
    }
}
