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
        @Option(help: "Show only this work queue.") var queue: String?
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
            let plan = try FairnessPlan(jsonBytes: stored.value)
            if json {
                print(String(decoding: stored.value, as: UTF8.self))
                return
            }
            let lags = try? await Self.dispatcherTierLags(nats)
            print(Self.render(plan, revision: stored.revision, lags: lags, limit: limit, only: tenant, queue: queue))
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
            _ plan: FairnessPlan, revision: UInt64, lags: [String: [String: Double]]?, limit: Int, only: String?,
            queue onlyQueue: String? = nil
        ) -> String {
            var lines: [String] = []
            let issued = Date(timeIntervalSince1970: Double(plan.issuedAtMillis) / 1000)
            let age = Date().timeIntervalSince(issued)
            lines.append(
                "plan generation \(plan.generation) (KV revision \(revision)), issued \(String(format: "%.1f", age)) s ago, "
                    + "dispatchers \(plan.dispatchers ?? 1)" + (age > 10 ? "  — STALE: is a governor running?" : ""))
            if let lags, !lags.isEmpty {
                let text = Tier.allCases.compactMap { tier -> String? in
                    guard let l = lags[tier.rawValue], let samples = l["samples"], samples > 0 else { return nil }
                    return "\(tier.rawValue) " + [l["p50"], l["p95"], l["p99"], l["max"]].map { String(format: "%.0f", $0 ?? 0) }
                        .joined(separator: "/") + " (\(Int(samples)) jobs)"
                }
                if !text.isEmpty { lines.append("lag p50/p95/p99/max ms (one dispatcher, all queues): " + text.joined(separator: ", ")) }
            }
            for (queue, held) in (plan.queuesWithoutExecutors ?? [:]).sorted(by: { $0.key < $1.key })
            where onlyQueue == nil || onlyQueue == queue {
                lines.append("queue \(queue): no live executors, \(held) jobs waiting in the work queue (not throttled)")
            }
            var sections = plan.queues.sorted { $0.key < $1.key }.map { (name: $0.key, plan: $0.value) }
            if let other = plan.otherQueues { sections.append((name: "(every other queue)", plan: other)) }
            if let onlyQueue { sections = sections.filter { $0.name == onlyQueue } }
            if sections.isEmpty { lines.append("no queue has demand: nothing is throttled") }
            for section in sections {
                lines.append("")
                lines.append(contentsOf: renderQueue(section.name, section.plan, limit: limit, only: only))
            }
            return lines.joined(separator: "\n")
        }

        /// One queue's share-out: its capacity, the tiers and the tenants on it.
        static func renderQueue(_ queue: String, _ plan: QuotaPlan, limit: Int, only: String?) -> [String] {
            func f(_ x: Double) -> String {
                if x >= 1e8 { return "∞" }
                return x >= 100 ? String(format: "%.0f", x) : String(format: "%.2f", x)
            }
            var lines: [String] = []
            let capacity = plan.capacity >= 1e8
                ? "capacity unknown (executors not measured saturated: nobody throttled)"
                : "capacity shared \(f(plan.capacity)) jobs/s"
                    + (plan.capacityEstimate.map { " (estimate \(f($0)), backlog \(plan.workBacklog ?? 0))" } ?? "")
                    + ", level \(plan.level.map(f) ?? "— (nobody throttled)")"
            lines.append("queue \(queue): " + capacity)
            lines.append("  tier      tenants    demand/s  allocated/s  default rate/burst")
            for tier in Tier.allCases {
                let total = plan.byTier[tier] ?? .init()
                let d = plan.tierDefaults[tier]
                lines.append(
                    "  " + tier.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)
                        + String(total.tenants).leftPad(7) + f(total.demand).leftPad(12) + f(total.allocated).leftPad(13)
                        + "  \(d.map { "\(f($0.rate))/\(f($0.burst))" } ?? "—")")
            }
            var rows = plan.tenants.sorted { ($0.value.demand, $0.key) > ($1.value.demand, $1.key) }
            if let only { rows = rows.filter { $0.key == only } }
            lines.append("  tenant                        tier       demand/s  allocated/s     rate/s    burst")
            for (name, q) in rows.prefix(limit) {
                let throttled = q.allocated + 1e-9 < q.demand ? "  throttled" : ""
                lines.append(
                    "  " + name.padding(toLength: 30, withPad: " ", startingAt: 0)
                        + q.tier.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0) + f(q.demand).leftPad(10)
                        + f(q.allocated).leftPad(13) + f(q.rate).leftPad(11) + f(q.burst).leftPad(9) + throttled)
            }
            if rows.count > limit { lines.append("  … \(rows.count - limit) more (--limit)") }
            if let only, rows.isEmpty {
                lines.append("  \(only): not listed — it gets its tier's default here (unknown tenants count as new)")
            }
            return lines
        }
    }

    struct SetFlags: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Flag a tenant as a trial (counts as new), pin its tier (the governor reads it within 30 s), or turn on `succeeded` events for all its timers.")

        @Argument(help: "Tenant.") var tenant: String
        @Option(help: "Pin the tier: new, standard or bulk; auto = observed by age and volume.") var tier: String?
        @Option(help: "Trial tenant: true or false.") var trial: Bool?
        @Option(help: "Publish a `succeeded` event for every job of the tenant that succeeds: true or false.")
        var notifySuccess: Bool?
        @Option(help: "Create/Update requests per second at each Ingest instance (0 = unlimited), or `default` (the tier's).")
        var admissionRate: String?
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
            var rate: Double?
            if let admissionRate {
                if admissionRate == "default" {
                    rate = -1
                } else if let value = Double(admissionRate), value >= 0, value <= 1_000_000 {
                    rate = value
                } else {
                    throw ValidationError("--admission-rate must be 0 … 1000000 or default")
                }
            }
            guard pinned != nil || trial != nil || notifySuccess != nil || rate != nil else {
                throw ValidationError("nothing to set: give --tier, --trial, --notify-success and/or --admission-rate")
            }
            let url = postgres ?? ProcessInfo.processInfo.environment["SUNDIAL_POSTGRES_URL"]
                ?? DevEnvironmentFile.read()["SUNDIAL_POSTGRES_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
            var config = try PostgresConfiguration(url: url)
            config.searchPath = "\"\(schema)\""
            let pool = PostgresPool(configuration: config, size: 1, logger: CLILogger.shared)
            defer { Task { await pool.close() } }
            let row = try await TenantStore(pool: pool).setFlags(
                tenant: tenant, trial: trial, pinnedTier: pinned, notifySuccess: notifySuccess, admissionRate: rate)
            print(
                "\(row.tenant): trial=\(row.trial) tier=\(row.pinnedTier ?? "auto") notify-success=\(row.notifySuccess) admission-rate=\(row.admissionRate.map { $0 == 0 ? "unlimited" : "\($0)/s" } ?? "tier default") first seen \(row.firstSeenAt)")
        }
    }
}

extension String {
    fileprivate func leftPad(_ width: Int) -> String {
        count >= width ? " " + self : String(repeating: " ", count: width - count) + self
    }
}
