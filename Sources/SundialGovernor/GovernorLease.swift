import Foundation
import SundialNATS
import SundialSchedule

/// The governor leader lease: one key in the quotas KV bucket holding `{owner, expiresAtMillis}`,
/// taken and renewed with compare-and-set on the key's revision. Whoever holds an unexpired lease
/// publishes plans; the others stand by and take over when it expires (or is released on a
/// graceful shutdown). Expiry is by the writers' wall clocks, so governors' clocks must agree to
/// well within the TTL (NTP).
struct GovernorLease: Sendable {
    struct Record: Codable, Sendable {
        var owner: String
        var expiresAtMillis: Int64
    }

    let bucket: KeyValueBucket
    let key: String
    let owner: String
    let ttl: Duration

    enum Outcome: Sendable, Equatable {
        /// Holds the lease; `revision` is the KV revision of this renewal.
        case leader(revision: UInt64)
        /// Someone else holds it (nil: unknown, e.g. NATS unreachable).
        case follower(String?)
    }

    /// Takes or renews the lease if it is free, expired or ours.
    func tick(now: Date = Date()) async -> Outcome {
        do {
            let current = try await bucket.get(key)
            var expected: UInt64 = 0
            if let current {
                expected = current.revision
                if let record = try? JSONDecoder().decode(Record.self, from: Data(current.value)),
                    record.owner != owner, record.expiresAtMillis > Self.millis(now)
                {
                    return .follower(record.owner)
                }
            }
            let record = Record(owner: owner, expiresAtMillis: Self.millis(now) + ttl.wholeMilliseconds)
            let revision = try await bucket.put(key, Array(try JSONEncoder().encode(record)), expectedRevision: expected)
            return .leader(revision: revision)
        } catch {
            return .follower(nil)
        }
    }

    /// Gives the lease up (an expired record), so a standby takes over at its next tick.
    func release() async {
        guard let current = try? await bucket.get(key),
            let record = try? JSONDecoder().decode(Record.self, from: Data(current.value)), record.owner == owner
        else { return }
        let expired = Record(owner: owner, expiresAtMillis: 0)
        _ = try? await bucket.put(key, Array(try JSONEncoder().encode(expired)), expectedRevision: current.revision)
    }

    static func millis(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
}
