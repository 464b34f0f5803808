import Foundation

/// Timer ids are UUID version 7: time-ordered (good B-tree locality for inserts, stable
/// cursor order for listing), random in the low bits (unguessable across tenants).
public enum TimerID {
    public static func make(now: Date = Date()) -> UUID {
        var bytes = [UInt8](repeating: 0, count: 16)
        var random = SystemRandomNumberGenerator()
        for index in 6..<16 { bytes[index] = UInt8.random(in: 0...255, using: &random) }
        bytes[6] = (bytes[6] & 0x0F) | 0x70  // version 7
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        return uuid(millisecondOf: now, rest: bytes)
    }

    /// `rest` with its first 6 bytes replaced by `instant`'s Unix milliseconds (big-endian).
    private static func uuid(millisecondOf instant: Date, rest: [UInt8]) -> UUID {
        var bytes = rest
        let millis = UInt64(max(0, instant.timeIntervalSince1970 * 1000))
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: millis >> (8 * (5 - index))) }
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// The smallest id a timer created at `instant` can have (its millisecond, every other bit
    /// zero): ids below it were created before.
    public static func lowerBound(at instant: Date) -> UUID {
        uuid(millisecondOf: instant, rest: [UInt8](repeating: 0, count: 16))
    }

    /// Parses a client-supplied id; nil if it is not a UUID.
    public static func parse(_ text: String) -> UUID? { UUID(uuidString: text) }

    /// The canonical lowercase text form used in subjects, headers and replies.
    public static func text(_ id: UUID) -> String { id.uuidString.lowercased() }
}

/// Logical shards of the timer table. Planners lease shards, not timers. The count is fixed per
/// database (`shard_settings`, migration 0017): a timer's shard is its id's hash modulo the count,
/// computed once at create and stored with the timer; every service learns the count at startup
/// (`SundialNamespace.shardCount`).
public enum ShardMap {
    /// Shards of a new database: about ten each for twenty-five planners. (A database that held
    /// timers before migration 0017 keeps the 64 it was created with.)
    public static let defaultCount = 256
    public static let maximumCount = 4096

    /// FNV-1a over the id's bytes: stable across processes and versions (unlike Hasher).
    public static func shard(of id: UUID, count: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        withUnsafeBytes(of: id.uuid) { bytes in
            for byte in bytes {
                hash ^= UInt64(byte)
                hash &*= 0x100_0000_01b3
            }
        }
        return Int(hash % UInt64(max(1, count)))
    }
}
