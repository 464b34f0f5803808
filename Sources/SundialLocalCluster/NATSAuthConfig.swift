import SundialContract

/// Renders the `authorization { users = [...] }` block of a nats-server config that
/// isolates tenants (deploy/README.md "Tenant credentials"):
///
/// - `tenant-<name>` may publish only `<root>.v1.<name>.Timers.>` (its requests) and
///   subscribe only `_INBOX_<name>.>` (its replies: clients set the inbox prefix
///   `_INBOX_<name>`) and `<root>.v1.<name>.events.>` (its notifications). Ingest takes the
///   tenant from the subject, so these permissions are the whole of tenant isolation on NATS.
/// - `sundial-service` (Ingest, Planner, Dispatcher) has `<root>.>`, `$JS.>`, `$SRV.>`,
///   `_INBOX.>`, `$KV.>`, and may answer any request it received (`allow_responses`), which
///   is how its replies reach the tenants' `_INBOX_<name>` inboxes.
/// - `executor` may consume the work stream (its consumers, fetches and acks), publish
///   results, and use `_INBOX.>`; it cannot read the fire stream or the Timers API.
///
/// One global account: JetStream stays in `$G`, so no exports/imports are needed. The
/// output is deterministic (deploy/nats/auth.conf is this renderer's output for the
/// example tenants, and a test keeps them in sync).
public struct NATSAuthConfig: Sendable, Hashable {
    /// A password in the config: a literal (tests, `sundial dev`) or a reference to a
    /// config/environment variable (`password: $NAME`), which keeps secrets out of files.
    /// A literal may also be a bcrypt hash from `nats server passwd` (starts with `$2a$`).
    public enum Secret: Sendable, Hashable {
        case literal(String)
        case variable(String)
    }

    public struct Tenant: Sendable, Hashable {
        public var name: String
        public var password: Secret

        public init(_ name: String, password: Secret) {
            self.name = name
            self.password = password
        }
    }

    public static let serviceUser = "sundial-service"
    public static let executorUser = "executor"

    /// The NATS user of a tenant.
    public static func tenantUser(_ tenant: String) -> String { "tenant-\(tenant)" }

    /// The inbox prefix a tenant's client must use (`NATSConnectionOptions.inboxPrefix`).
    public static func tenantInboxPrefix(_ tenant: String) -> String { "_INBOX_\(tenant)" }

    public var namespace: SundialNamespace
    public var servicePassword: Secret
    /// Nil: no executor user.
    public var executorPassword: Secret?
    public var tenants: [Tenant]
    /// Top-level variables defined before the block (`NAME: "value"`), for `.variable`
    /// secrets; with none defined, nats-server reads the variables from its environment.
    public var variables: [String: String]

    public init(
        namespace: SundialNamespace = .standard, servicePassword: Secret, executorPassword: Secret? = nil,
        tenants: [Tenant] = [], variables: [String: String] = [:]
    ) {
        self.namespace = namespace
        self.servicePassword = servicePassword
        self.executorPassword = executorPassword
        self.tenants = tenants
        self.variables = variables
    }

    /// The deployment example (deploy/nats/auth.conf): every password from the environment.
    public static let deploymentExample = NATSAuthConfig(
        servicePassword: .variable("SUNDIAL_SERVICE_NATS_PASSWORD"),
        executorPassword: .variable("SUNDIAL_EXECUTOR_NATS_PASSWORD"),
        tenants: [
            Tenant("acme", password: .variable("SUNDIAL_TENANT_ACME_NATS_PASSWORD")),
            Tenant("globex", password: .variable("SUNDIAL_TENANT_GLOBEX_NATS_PASSWORD")),
        ])

    public struct Permissions: Sendable, Hashable {
        public var publish: [String]
        public var subscribe: [String]
        /// `allow_responses { max: 1, expires: … }`: may publish one reply to the reply
        /// subject of each message it received, within `expires`.
        public var allowResponses: Bool = false
    }

    public func tenantPermissions(_ tenant: String) -> Permissions {
        Permissions(
            publish: ["\(namespace.subjectRoot).v1.\(tenant).Timers.>"],
            subscribe: [
                "\(Self.tenantInboxPrefix(tenant)).>",
                "\(namespace.subjectRoot).v1.\(tenant).events.>",
            ])
    }

    public var servicePermissions: Permissions {
        let subjects = ["\(namespace.subjectRoot).>", "$JS.>", "$SRV.>", "_INBOX.>", "$KV.>"]
        return Permissions(publish: subjects, subscribe: subjects, allowResponses: true)
    }

    public var executorPermissions: Permissions {
        let work = namespace.workStream
        return Permissions(
            publish: [
                "$JS.API.INFO",
                // SundialWorker.connect ensures the work stream and its queue's durable.
                "$JS.API.STREAM.INFO.\(work)", "$JS.API.STREAM.CREATE.\(work)", "$JS.API.STREAM.UPDATE.\(work)",
                "$JS.API.CONSUMER.CREATE.\(work).>", "$JS.API.CONSUMER.DURABLE.CREATE.\(work).>",
                "$JS.API.CONSUMER.INFO.\(work).>", "$JS.API.CONSUMER.MSG.NEXT.\(work).>",
                "$JS.ACK.\(work).>",
                namespace.resultsWildcard,
            ],
            subscribe: ["_INBOX.>"])
    }

    /// Throws for a tenant name that is not one subject token (or repeated), or a secret
    /// that cannot be written into the config.
    public func validate() throws {
        var seen = Set<String>()
        for tenant in tenants {
            guard SubjectToken.isValidTenant(tenant.name) else {
                throw LocalClusterError.startFailed("tenant name \"\(tenant.name)\" must be 1–64 characters of [A-Za-z0-9_-]")
            }
            guard seen.insert(tenant.name).inserted else {
                throw LocalClusterError.startFailed("tenant \(tenant.name) is listed twice")
            }
        }
        for secret in [servicePassword, executorPassword].compactMap({ $0 }) + tenants.map(\.password) {
            if case .variable(let name) = secret, !Self.isVariableName(name) {
                throw LocalClusterError.startFailed("variable name \(name) must be [A-Za-z_][A-Za-z0-9_]*")
            }
            if case .literal(let text) = secret, text.isEmpty || text.contains(where: \.isNewline) {
                throw LocalClusterError.startFailed("a password must be non-empty and on one line")
            }
        }
        for name in variables.keys where !Self.isVariableName(name) {
            throw LocalClusterError.startFailed("variable name \(name) must be [A-Za-z_][A-Za-z0-9_]*")
        }
    }

    /// The config text: variable definitions (if any), then the `authorization` block.
    public func render() -> String {
        var lines: [String] = []
        for (name, value) in variables.sorted(by: { $0.key < $1.key }) {
            lines.append("\(name): \(Self.quoted(value))")
        }
        if !variables.isEmpty { lines.append("") }
        lines.append("authorization {")
        lines.append("  users = [")
        var users: [(String, Secret, Permissions, String)] = [
            (Self.serviceUser, servicePassword, servicePermissions, "Ingest, Planner, Dispatcher")
        ]
        if let executorPassword {
            users.append((Self.executorUser, executorPassword, executorPermissions, "executors (SundialWorker)"))
        }
        for tenant in tenants {
            users.append(
                (Self.tenantUser(tenant.name), tenant.password, tenantPermissions(tenant.name),
                 "tenant \(tenant.name): inbox prefix \(Self.tenantInboxPrefix(tenant.name))"))
        }
        for (user, secret, permissions, comment) in users {
            lines.append("    # \(comment)")
            lines.append("    {")
            lines.append("      user: \(Self.quoted(user))")
            switch secret {
            case .literal(let text): lines.append("      password: \(Self.quoted(text))")
            case .variable(let name): lines.append("      password: $\(name)")
            }
            lines.append("      permissions: {")
            lines.append("        publish: { allow: \(Self.list(permissions.publish)) }")
            lines.append("        subscribe: { allow: \(Self.list(permissions.subscribe)) }")
            if permissions.allowResponses {
                lines.append("        allow_responses: { max: 1, expires: \"2m\" }")
            }
            lines.append("      }")
            lines.append("    }")
        }
        lines.append("  ]")
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func list(_ subjects: [String]) -> String {
        "[" + subjects.map(quoted).joined(separator: ", ") + "]"
    }

    /// A double-quoted config string (`$` inside quotes is not a variable reference).
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    private static func isVariableName(_ name: String) -> Bool {
        guard let first = name.utf8.first, first == UInt8(ascii: "_") || (first | 0x20 >= 0x61 && first | 0x20 <= 0x7a)
        else { return false }
        return name.utf8.allSatisfy {
            $0 == UInt8(ascii: "_") || ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a)
        }
    }
}
