import ArgumentParser
import Foundation
import Logging
import SundialContract
import SundialFairness
import SundialNATS
import SundialPostgres
import SundialStore

/// `sundial tenants quotas | set`: fairness as operators see it.
struct TenantsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenants", abstract: "Tenants' tiers and quotas (fairness).", subcommands: [Quotas.self, SetFlags.self])

    struct Quotas: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the quota plan in force: capacity, per-tier totals and lag, per-tenant tier, demand and bucket.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Show at most this many tenants (largest demand first).") var limit = 30
        @Option(help: "Show only this tenant.") var tenant: String?
        @Flag(help: "Print the plan as JSON (as stored in KV).") var json = false

        func run() async throws {
            let nats = try await connection.connect(name: "sundial-tenants-quotas", as: .service)
            defer { Task { await nats.close() } }
            let namespace = SundialNamespace.standard
            let bucket = KeyValueBucket(name: namespace.quotasBucket, connection: nats)
            guard let stored = try? await bucket.get(SundialNamespace.quotaPlanKey) else {
                print("no quota plan yet (no governor has published one): nothing is throttled")
                return
            }
            let plan = try QuotaPlan(jsonBytes: stored.value)
            if json {
                print(String(decoding: stored.value, as: UTF8.self))
                return
            }
            let lags = try? await Self.dispatcherTierLags(nats)
            print(Self.render(plan, revision: stored.revision, lags: lags, limit: limit, only: tenant))
        }

        /// Per-tier dispatch lag from one dispatcher's `$SRV.STATS` (the first to answer).
        static func dispatcherTierLags(_ nats: NATSConnection) async throws -> [String: [String: Double]] {
            let reply = try await nats.request(
                NATSOutgoingMessage(subject: "$SRV.STATS.\(SundialNamespace.dispatcherServiceName)"),
                timeout: .seconds(2))
            guard let object = try JSONSerialization.jsonObject(with: Data(reply.payload)) as? [String: Any],
                let data = object["data"] as? [String: Any], let fairness = data["fairness"] as? [String: Any],
                let tiers = fairness["tiers"] as? [String: Any]
            else { return [:] }
            var out: [String: [String: Double]] = [:]
            for (tier, value) in tiers {
                guard let entry = value as? [String: Any], let lag = entry["lag_ms"] as? [String: Any] else { continue }
                out[tier] = lag.compactMapValues { ($0 as? NSNumber)?.doubleValue }
            }
            return out
        }

        static func render(
            _ plan: QuotaPlan, revision: UInt64, lags: [String: [String: Double]]?, limit: Int, only: String?
        ) -> String {
            func f(_ x: Double) -> String {
                if x >= 1e8 { return "∞" }
                return x >= 100 ? String(format: "%.0f", x) : String(format: "%.2f", x)
            }
            var lines: [String] = []
            let issued = Date(timeIntervalSince1970: Double(plan.issuedAtMillis) / 1000)
            let age = Date().timeIntervalSince(issued)
            lines.append(
                "plan generation \(plan.generation) (KV revision \(revision)), issued \(String(format: "%.1f", age)) s ago"
                    + (age > 10 ? "  — STALE: is a governor running?" : ""))
            let capacity = plan.capacity >= 1e8
                ? "capacity unknown (executors not saturated yet: nobody throttled), "
                : "capacity shared \(f(plan.capacity)) jobs/s"
                    + (plan.capacityEstimate.map { " (estimate \(f($0)), work backlog \(plan.workBacklog ?? 0))" } ?? "") + ", "
            lines.append(
                capacity
                    + "level \(plan.level.map(f) ?? "— (nobody throttled)"), dispatchers \(plan.dispatchers ?? 1), "
                    + "weights new \(f(plan.weights.new)) / standard \(f(plan.weights.standard)) / bulk \(f(plan.weights.bulk))")
            lines.append("")
            lines.append(
                "tier      tenants    demand/s  allocated/s  default rate/burst   lag p50/p95/p99/max ms (one dispatcher)")
            for tier in Tier.allCases {
                let total = plan.byTier[tier] ?? .init()
                let d = plan.tierDefaults[tier]
                var lag = "—"
                if let l = lags?[tier.rawValue], let samples = l["samples"], samples > 0 {
                    lag = [l["p50"], l["p95"], l["p99"], l["max"]].map { String(format: "%.0f", $0 ?? 0) }
                        .joined(separator: "/") + " (\(Int(samples)) jobs)"
                }
                lines.append(
                    tier.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                        + String(total.tenants).leftPad(7) + f(total.demand).leftPad(12) + f(total.allocated).leftPad(13)
                        + "  \(d.map { "\(f($0.rate))/\(f($0.burst))" } ?? "—")".padding(toLength: 21, withPad: " ", startingAt: 0)
                        + lag)
            }
            lines.append("")
            var rows = plan.tenants.sorted { ($0.value.demand, $0.key) > ($1.value.demand, $1.key) }
            if let only { rows = rows.filter { $0.key == only } }
            lines.append("tenant                        tier       demand/s  allocated/s     rate/s    burst")
            for (name, q) in rows.prefix(limit) {
                let throttled = q.allocated + 1e-9 < q.demand ? "  throttled" : ""
                lines.append(
                    name.padding(toLength: 30, withPad: " ", startingAt: 0)
                        + q.tier.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0) + f(q.demand).leftPad(10)
                        + f(q.allocated).leftPad(13) + f(q.rate).leftPad(11) + f(q.burst).leftPad(9) + throttled)
            }
            if rows.count > limit { lines.append("… \(rows.count - limit) more (--limit)") }
            if let only, rows.isEmpty {
                lines.append("\(only): not listed — it gets its tier's default (unknown tenants count as new)")
            } else if only == nil {
                lines.append("(standard tenants at or above the standard default are not listed; they get the default)")
            }
            return lines.joined(separator: "\n")
        }
    }

    struct SetFlags: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Flag a tenant as a trial (counts as new) or pin its tier (table tenants; the governor reads it within 30 s).")

        @Argument(help: "Tenant.") var tenant: String
        @Option(help: "Pin the tier: new, standard or bulk; auto = observed by age and volume.") var tier: String?
        @Option(help: "Trial tenant: true or false.") var trial: Bool?
        @Option(help: "Postgres URL (default: SUNDIAL_POSTGRES_URL or .sundial/dev.env).") var postgres: String?
        @Option(help: "Postgres schema.") var schema = "sundial"

        func run() async throws {
            guard SubjectToken.isValidTenant(tenant) else { throw ValidationError("not a valid tenant name: \(tenant)") }
            var pinned: String?
            if let tier {
                guard tier == "auto" || Tier(rawValue: tier) != nil else {
                    throw ValidationError("--tier must be new, standard, bulk or auto")
                }
                pinned = tier == "auto" ? "" : tier
            }
            guard pinned != nil || trial != nil else { throw ValidationError("nothing to set: give --tier and/or --trial") }
            let url = postgres ?? ProcessInfo.processInfo.environment["SUNDIAL_POSTGRES_URL"]
                ?? DevEnvironmentFile.read()["SUNDIAL_POSTGRES_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
            var config = try PostgresConfiguration(url: url)
            config.searchPath = "\"\(schema)\""
            let pool = PostgresPool(configuration: config, size: 1, logger: CLILogger.shared)
            defer { Task { await pool.close() } }
            let row = try await TenantStore(pool: pool).setFlags(tenant: tenant, trial: trial, pinnedTier: pinned)
            print("\(row.tenant): trial=\(row.trial) tier=\(row.pinnedTier ?? "auto") first seen \(row.firstSeenAt)")
        }
    }
}

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? " " + self : String(repeating: " ", count: width - count) + self
    }
}
