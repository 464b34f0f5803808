import ArgumentParser
import Foundation
import SundialContract
import SundialNATS
import SundialProto
import SundialSchedule

/// `sundial events tail --tenant T`: a tenant's notifications (failed attempts, dead letters).
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Tenant notifications.", subcommands: [Tail.self])

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a tenant's events (sundial.v1.<tenant>.events.>) as they happen.")

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Tenant.") var tenant: String
        @Option(help: "Stop after this many events.") var count: Int?
        @Flag(help: "Print each event as protobuf JSON.") var json = false

        func run() async throws {
            guard SubjectToken.isValidTenant(tenant) else { throw ValidationError("--tenant is not a valid tenant name") }
            let nats = try await connection.connect(name: "sundial-events-tail", as: .tenant(tenant))
            let subscription = try await nats.subscribe(subject: SundialNamespace.standard.event(tenant: tenant, kind: ">"))
            print("waiting for events of tenant \(tenant)…")
            var seen = 0
            for await message in subscription {
                guard let event = try? Sundial_V1_TimerEvent(serializedBytes: message.payload) else { continue }
                if json {
                    print(try event.jsonString())
                } else {
                    print(
                        "\(RFC3339.format(event.at.date)) \(event.kind) timer=\(event.timer.id) occurrence=\(event.run.occurrence) attempt=\(event.run.attempt) error=\(event.run.error)")
                }
                seen += 1
                if let count, seen >= count { break }
            }
            await nats.close()
        }
    }
}
