import ArgumentParser
import Foundation
import SundialServer

/// `sundial serve ingest planner dispatcher governor`: run services against existing NATS/Postgres,
/// configured by `SUNDIAL_*` environment variables (see services/*/README.md).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run Sundial services against existing NATS and Postgres.")

    @Argument(help: "Services to run: ingest, planner, dispatcher, governor (default: all).")
    var components: [String] = []

    func run() async throws {
        var chosen: [SundialComponent] = []
        for name in components {
            guard let component = SundialComponent(rawValue: name) else {
                throw ValidationError("unknown service \(name); expected ingest, planner, dispatcher or governor")
            }
            chosen.append(component)
        }
        await ServiceMain.run(chosen.isEmpty ? SundialComponent.allCases : chosen)
    }
}
