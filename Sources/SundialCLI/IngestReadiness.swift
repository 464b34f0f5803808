import Foundation
import Logging
import SundialClient
import SundialNATS

/// A benchmark starts `sundial serve` processes and must not offer load before Ingest answers:
/// it subscribes asynchronously after it starts.
enum IngestReadiness {
    /// True once `client` has an answer to a Get (any reply, an error one too), asking every
    /// 100 ms for at most `limit`.
    static func wait(_ client: TimersClient, limit: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if (try? await client.raw(.get, [])) != nil { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// The same over a connection of its own; throws when Ingest did not answer within `limit`.
    static func wait(natsURL: String, limit: Duration = .seconds(60), logger: Logger) async throws {
        let connection = try await NATSConnection.connect(NATSConnectionOptions(url: natsURL, name: "bench-probe"), logger: logger)
        let probe = TimersClient(connection: connection, tenant: "probe", timeout: .seconds(1))
        let ready = try await wait(probe, limit: limit)
        await connection.close()
        guard ready else { throw IngestNotAnswering(limit: limit) }
    }
}

struct IngestNotAnswering: Error, CustomStringConvertible {
    var limit: Duration
    var description: String { "ingest did not answer within \(limit)" }
}
