import Foundation
import SundialClient
import SundialContract
import SundialExecutor
import SundialLocalCluster
import SundialMessaging
import SundialNATS
import SundialProto
import SundialTestSupport
import Testing

/// Tenant isolation enforced by nats-server permissions (deploy/README.md): each test runs a
/// private nats-server with the deployment config (`NATSAuthConfig.deploymentExample`, the
/// content of deploy/nats/auth.conf, its password variables defined in the config), Sundial's
/// services logged in as `sundial-service`, and real tenant connections.
@Suite("Integration: tenant auth", .serialized)
struct TenantAuthIntegrationTests {
    /// A private auth-enabled server plus random passwords for every user.
    struct AuthCluster {
        let server: LocalNATSServer
        let passwords: [String: String]

        static func start() async throws -> AuthCluster {
            func secret() -> String { "pw-" + UUID().uuidString }
            let passwords = [
                NATSAuthConfig.serviceUser: secret(), NATSAuthConfig.executorUser: secret(),
                NATSAuthConfig.tenantUser("acme"): secret(), NATSAuthConfig.tenantUser("globex"): secret(),
            ]
            var config = NATSAuthConfig.deploymentExample
            config.variables = [
                "SUNDIAL_SERVICE_NATS_PASSWORD": passwords[NATSAuthConfig.serviceUser]!,
                "SUNDIAL_EXECUTOR_NATS_PASSWORD": passwords[NATSAuthConfig.executorUser]!,
                "SUNDIAL_TENANT_ACME_NATS_PASSWORD": passwords[NATSAuthConfig.tenantUser("acme")]!,
                "SUNDIAL_TENANT_GLOBEX_NATS_PASSWORD": passwords[NATSAuthConfig.tenantUser("globex")]!,
            ]
            return AuthCluster(server: try await TestNATS.privateAuthServer(config), passwords: passwords)
        }

        /// A tenant's own connection: its user, its password, its inbox prefix.
        func tenant(_ name: String, inboxPrefix: String? = nil) async throws -> NATSConnection {
            try await TestNATS.connect(
                server, name: "tenant-\(name)", user: NATSAuthConfig.tenantUser(name),
                password: passwords[NATSAuthConfig.tenantUser(name)],
                inboxPrefix: inboxPrefix ?? NATSAuthConfig.tenantInboxPrefix(name))
        }

        func executor() async throws -> NATSConnection {
            try await TestNATS.connect(
                server, name: "executor", user: NATSAuthConfig.executorUser,
                password: passwords[NATSAuthConfig.executorUser])
        }

        var serviceOptions: TestSystem.Options {
            var options = TestSystem.Options()
            options.nats = server
            options.natsUser = NATSAuthConfig.serviceUser
            options.natsPassword = passwords[NATSAuthConfig.serviceUser]
            options.namespace = .standard  // a private server: the production subjects
            options.planner = false
            options.dispatcher = false
            return options
        }
    }

    /// Runs `body` against a fresh auth cluster and a Sundial logged in as the service user.
    func withAuthSystem(
        _ name: String, planner: Bool = false,
        _ body: (TestSystem, AuthCluster) async throws -> Void
    ) async throws {
        let cluster = try await AuthCluster.start()
        var options = cluster.serviceOptions
        options.planner = planner
        options.dispatcher = planner
        do {
            try await withTestSystem(name, options) { system in try await body(system, cluster) }
        } catch {
            await cluster.server.stop()
            throw error
        }
        await cluster.server.stop()
    }

    /// Sends a request that the server must refuse, and checks it fails fast as a
    /// permissions violation (not a timeout, not a reply).
    func expectRefused(
        _ connection: NATSConnection, _ subject: String, _ body: [UInt8] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let started = ContinuousClock.now
        do {
            let reply = try await connection.request(subject: subject, payload: body, timeout: .seconds(5))
            Issue.record("\(subject) was answered: \(reply.headers)", sourceLocation: sourceLocation)
        } catch let error as NATSError {
            #expect(error.isPermissionViolation, "\(subject): \(error)", sourceLocation: sourceLocation)
            #expect(error.message.contains(subject), "\(error)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(subject): unexpected \(error)", sourceLocation: sourceLocation)
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed < .seconds(2), "refusal took \(elapsed)", sourceLocation: sourceLocation)
    }

    /// Waits (bounded) until `connection` has reported its `number`th permission violation
    /// and checks that one's text. After a flush the server has sent the violation; cnats
    /// delivers it to the error callback on its own thread shortly after.
    func expectViolation(
        _ connection: NATSConnection, number: Int, _ text: String, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        try await connection.flush()
        try await eventually("violation #\(number) (\(text))", timeout: .seconds(3)) {
            connection.permissionViolations.count >= number
        }
        let violations = connection.permissionViolations
        #expect(violations.count == number, "\(violations)", sourceLocation: sourceLocation)
        #expect(violations.last?.contains(text) == true, "\(violations)", sourceLocation: sourceLocation)
    }

    /// Checks that nothing sent so far on `connection` was refused: sends one publish that
    /// every user is refused and expects it to be the first violation reported (the server
    /// reports violations in order).
    func expectNoViolations(_ connection: NATSConnection, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await connection.publish(NATSOutgoingMessage(subject: "_MARKER.refused"))
        try await expectViolation(connection, number: 1, "Publish to \"_MARKER.refused\"", sourceLocation: sourceLocation)
    }

    @Test("a tenant's credentials create, read, list, update, cancel and page history of its own timers")
    func tenantUsesItsOwnPrefix() async throws {
        try await withAuthSystem("authown") { system, cluster in
            let acme = try await cluster.tenant("acme")
            defer { Task { await acme.close() } }
            let client = TimersClient(connection: acme, tenant: "acme", namespace: system.namespace)

            let created = try await client.create(.delay(.seconds(600), queue: "emails", payload: "mine"))
            #expect(created.created)
            #expect(created.timer.tenant == "acme")
            #expect(try await client.get(created.timer.id).id == created.timer.id)

            let list: Sundial_V1_ListTimersResponse = try await client.authCall(.list, Sundial_V1_ListTimersRequest())
            #expect(list.timers.map(\.id) == [created.timer.id])

            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = created.timer.id
            update.priority = .high
            let updated: Sundial_V1_UpdateTimerResponse = try await client.authCall(.update, update)
            #expect(updated.timer.priority == .high)

            var history = Sundial_V1_TimerHistoryRequest()
            history.timerID = created.timer.id
            let _: Sundial_V1_TimerHistoryResponse = try await client.authCall(.history, history)

            var cancel = Sundial_V1_CancelTimerRequest()
            cancel.timerID = created.timer.id
            let cancelled: Sundial_V1_CancelTimerResponse = try await client.authCall(.cancel, cancel)
            #expect(cancelled.timer.state == .cancelled)

            // Its own notifications are open to it.
            let events = try await acme.subscribe(subject: system.namespace.event(tenant: "acme", kind: ">"))
            defer { events.unsubscribe() }
            try await expectNoViolations(acme)
        }
    }

    @Test("requests on another tenant's subjects are refused by the server, and its timers stay untouched")
    func crossTenantRequestsAreRefused() async throws {
        try await withAuthSystem("authcross") { system, cluster in
            let acme = try await cluster.tenant("acme")
            let globex = try await cluster.tenant("globex")
            defer { Task { await acme.close(); await globex.close() } }
            let globexClient = TimersClient(connection: globex, tenant: "globex", namespace: system.namespace)
            let theirs = try await globexClient.create(.delay(.seconds(600), queue: "billing", payload: "secret"))

            // Every method, with a body naming globex's real timer id.
            var get = Sundial_V1_GetTimerRequest()
            get.timerID = theirs.timer.id
            var cancel = Sundial_V1_CancelTimerRequest()
            cancel.timerID = theirs.timer.id
            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = theirs.timer.id
            update.priority = .low
            var history = Sundial_V1_TimerHistoryRequest()
            history.timerID = theirs.timer.id
            let bodies: [TimersMethod: [UInt8]] = [
                .get: try get.serializedBytes(), .cancel: try cancel.serializedBytes(),
                .update: try update.serializedBytes(), .history: try history.serializedBytes(),
                .list: try Sundial_V1_ListTimersRequest().serializedBytes(),
                .create: try Sundial_V1_CreateTimerRequest.delay(.seconds(60), queue: "billing").serializedBytes(),
            ]
            for method in TimersMethod.allCases {
                await expectRefused(acme, system.namespace.request(tenant: "globex", method: method), bodies[method] ?? [])
            }
            // Nor a subject that merely looks like one of its own (another tenant token).
            await expectRefused(acme, "sundial.v1.acme2.Timers.Get", bodies[.get]!)
            // Nor the JetStream API (which would expose every tenant's payloads), discovery,
            // the work stream, or forged notifications on its own event subjects.
            await expectRefused(acme, "$JS.API.STREAM.MSG.GET.SUNDIAL_FIRE", Array(#"{"seq":1}"#.utf8))
            await expectRefused(acme, "$JS.API.STREAM.INFO.SUNDIAL_WORK")
            await expectRefused(acme, "$SRV.PING")
            await expectRefused(acme, system.namespace.event(tenant: "acme", kind: "dead_letter"))
            await expectRefused(acme, system.namespace.results(tenant: "globex"))

            // The refusals did not disturb acme's connection, nor globex's timer.
            let own = TimersClient(connection: acme, tenant: "acme", namespace: system.namespace)
            #expect(try await own.create(.delay(.seconds(600), queue: "emails")).created)
            let after = try await globexClient.get(theirs.timer.id)
            #expect(after.state == theirs.timer.state)
            #expect(after.version == theirs.timer.version)
            #expect(after.priority == theirs.timer.priority)
            let globexList: Sundial_V1_ListTimersResponse = try await globexClient.authCall(.list, Sundial_V1_ListTimersRequest())
            #expect(globexList.timers.map(\.id) == [theirs.timer.id])  // acme created nothing there
        }
    }

    @Test("a tenant cannot subscribe to another tenant's subjects, events or reply inboxes")
    func crossTenantSubscriptionsAreRefused() async throws {
        try await withAuthSystem("authsub") { system, cluster in
            let acme = try await cluster.tenant("acme")
            let globex = try await cluster.tenant("globex")
            defer { Task { await acme.close(); await globex.close() } }
            let namespace = system.namespace

            let forbidden = [
                "sundial.v1.globex.>", namespace.event(tenant: "globex", kind: ">"), "sundial.v1.*.Timers.Get",
                "_INBOX.>", "_INBOX_globex.>", ">", "sundial.work.>", "$JS.>",
            ]
            // One at a time: cnats 3.4.1 hands the error callback only the connection's last
            // error text, so violations are told apart by waiting for each one.
            var snoops: [NATSSubscription] = []
            defer { for snoop in snoops { snoop.unsubscribe() } }
            for (index, subject) in forbidden.enumerated() {
                snoops.append(try await acme.subscribe(subject: subject))
                try await expectViolation(acme, number: index + 1, "Subscription to \"\(subject)\"")
            }

            // Traffic on those subjects: globex's requests and replies, and a globex event.
            let globexEvents = try await globex.subscribe(subject: namespace.event(tenant: "globex", kind: ">"))
            defer { globexEvents.unsubscribe() }
            try await expectNoViolations(globex)
            let globexClient = TimersClient(connection: globex, tenant: "globex", namespace: namespace)
            let theirs = try await globexClient.create(.delay(.seconds(600), queue: "billing", payload: "secret"))
            _ = try await globexClient.get(theirs.timer.id)
            try await system.api.publish(
                NATSOutgoingMessage(subject: namespace.event(tenant: "globex", kind: "dead_letter"), payload: Array("evt".utf8)))
            try await system.api.flush()

            // globex gets its event …
            let received = try await firstMessage(globexEvents, within: .seconds(5))
            #expect(received?.payload == Array("evt".utf8))
            // … and by then acme's refused subscriptions have delivered nothing.
            try await Task.sleep(for: .milliseconds(200))
            for (subject, snoop) in zip(forbidden, snoops) {
                #expect(try await firstMessage(snoop, within: .milliseconds(50)) == nil, "acme read \(subject)")
            }
        }
    }

    @Test("without its inbox prefix a tenant gets no replies: _INBOX.> is not its to read")
    func defaultInboxPrefixIsRefused() async throws {
        try await withAuthSystem("authinbox") { system, cluster in
            let acme = try await cluster.tenant("acme", inboxPrefix: "_INBOX")
            defer { Task { await acme.close() } }
            try await expectViolation(acme, number: 1, "Subscription to \"_INBOX.")
            var client = TimersClient(connection: acme, tenant: "acme", namespace: system.namespace)
            client.timeout = .seconds(1)
            await #expect(throws: NATSError.self) { try await client.get("tmr_nope") }
        }
    }

    @Test("a wrong password is refused at connect")
    func wrongPasswordIsRefused() async throws {
        try await withAuthSystem("authlogin") { _, cluster in
            let started = ContinuousClock.now
            await #expect(throws: NATSError.self) {
                _ = try await TestNATS.connect(
                    cluster.server, name: "intruder", user: NATSAuthConfig.tenantUser("acme"),
                    password: cluster.passwords[NATSAuthConfig.tenantUser("globex")],
                    inboxPrefix: NATSAuthConfig.tenantInboxPrefix("acme"))
            }
            await #expect(throws: NATSError.self) {
                _ = try await TestNATS.connect(cluster.server, name: "anonymous")
            }
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }

    @Test("guessing another tenant's timer id through one's own prefix reads as not found")
    func guessedIdsAreNotFound() async throws {
        try await withAuthSystem("authguess") { system, cluster in
            let acme = try await cluster.tenant("acme")
            let globex = try await cluster.tenant("globex")
            defer { Task { await acme.close(); await globex.close() } }
            let acmeClient = TimersClient(connection: acme, tenant: "acme", namespace: system.namespace)
            let globexClient = TimersClient(connection: globex, tenant: "globex", namespace: system.namespace)
            let mine = try await acmeClient.create(.delay(.seconds(600), queue: "emails", payload: "mine"))
            let id = mine.timer.id

            func expectNotFound<Reply: SwiftProtobuf.Message>(
                _ method: TimersMethod, _ request: some SwiftProtobuf.Message, as: Reply.Type
            ) async {
                do {
                    let _: Reply = try await globexClient.authCall(method, request)
                    Issue.record("globex's \(method) of acme's timer succeeded")
                } catch let error as SundialError {
                    #expect(error.code == .notFound, "\(method): \(error)")
                } catch {
                    Issue.record("\(method): \(error)")
                }
            }
            var get = Sundial_V1_GetTimerRequest()
            get.timerID = id
            await expectNotFound(.get, get, as: Sundial_V1_GetTimerResponse.self)
            var update = Sundial_V1_UpdateTimerRequest()
            update.timerID = id
            update.updatePayload = true
            update.payload = Data("stolen".utf8)
            await expectNotFound(.update, update, as: Sundial_V1_UpdateTimerResponse.self)
            var cancel = Sundial_V1_CancelTimerRequest()
            cancel.timerID = id
            await expectNotFound(.cancel, cancel, as: Sundial_V1_CancelTimerResponse.self)
            var history = Sundial_V1_TimerHistoryRequest()
            history.timerID = id
            await expectNotFound(.history, history, as: Sundial_V1_TimerHistoryResponse.self)
            let list: Sundial_V1_ListTimersResponse = try await globexClient.authCall(.list, Sundial_V1_ListTimersRequest())
            #expect(list.timers.isEmpty)

            let after = try await acmeClient.get(id)
            #expect(after.version == mine.timer.version)
            #expect(after.state == mine.timer.state)
            #expect(after.payload == Data("mine".utf8))
            try await expectNoViolations(globex)
        }
    }

    @Test("executor credentials consume and acknowledge jobs, but cannot read the fire stream or the API")
    func executorPermissions() async throws {
        try await withAuthSystem("authexec", planner: true) { system, cluster in
            let acme = try await cluster.tenant("acme")
            let executor = try await cluster.executor()
            defer { Task { await acme.close(); await executor.close() } }
            let worker = try await SundialWorker.connect(connection: executor, queue: "emails")
            let client = TimersClient(connection: acme, tenant: "acme", namespace: system.namespace)
            let created = try await client.create(.delay(.seconds(1), queue: "emails", payload: "job"))

            let jobs = try await collectJobs(worker, count: 1, timeout: .seconds(15))
            try #require(jobs.count == 1)
            #expect(jobs[0].0.timerID == created.timer.id)
            #expect(jobs[0].0.payload == Array("job".utf8))
            try await expectNoViolations(executor)

            await expectRefused(executor, "$JS.API.STREAM.MSG.GET.SUNDIAL_FIRE", Array(#"{"seq":1}"#.utf8))
            await expectRefused(executor, "$JS.API.STREAM.DELETE.SUNDIAL_FIRE")
            await expectRefused(executor, "$JS.API.CONSUMER.MSG.NEXT.SUNDIAL_FIRE.dispatcher")
            await expectRefused(executor, system.namespace.request(tenant: "acme", method: .get))
        }
    }

    @Test("deploy/nats/auth.conf is the generator's deployment example, verbatim")
    func deploymentExampleIsInSync() throws {
        let file = TestNATS.packageRoot.appendingPathComponent("deploy/nats/auth.conf")
        let text = try String(contentsOf: file, encoding: .utf8)
        let rendered = NATSAuthConfig.deploymentExample.render()
        #expect(
            text.hasSuffix(rendered),
            "deploy/nats/auth.conf drifted from NATSAuthConfig.deploymentExample; regenerate it:\n\(rendered)")
    }
}

extension TimersClient {
    /// A typed call through the public `raw` (the client's own `call` is internal).
    fileprivate func authCall<Reply: SwiftProtobuf.Message>(_ method: TimersMethod, _ request: some SwiftProtobuf.Message)
        async throws -> Reply
    {
        let reply = try await raw(method, try request.serializedBytes())
        if let error = SundialError(reply: reply) { throw error }
        return try Reply(serializedBytes: reply.payload)
    }
}
