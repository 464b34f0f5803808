import Foundation
import SundialPostgres
import SundialCore

/// A planner's hold on one logical shard. `epoch` is the fencing token: every write the
/// holder makes under the lease names it, so a holder that lost the lease writes nothing.
public struct ShardLease: Sendable, Hashable {
    public var shard: Int
    public var epoch: Int64
    /// Expiry by the database's clock.
    public var expiresAt: Date

    public init(shard: Int, epoch: Int64, expiresAt: Date) {
        self.shard = shard
        self.epoch = epoch
        self.expiresAt = expiresAt
    }

    init(row: PostgresRow) throws {
        shard = try row.required("shard", row.int)
        epoch = try row.required("epoch", row.int64)
        expiresAt = try row.required("expires_at", row.date)
    }
}

/// Shard leases in `shard_leases`. Expiry uses the database clock, so planners' clocks
/// need not agree.
public struct LeaseStore: Sendable {
    public let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    /// Takes up to `limit` shards that are free or whose lease expired.
    public func acquire(owner: String, ttl: Duration, limit: Int) async throws -> [ShardLease] {
        try await acquireCountingTakeovers(owner: owner, ttl: ttl, limit: limit).leases
    }

    /// `acquire`, also telling how many of the shards were taken over: their lease had expired
    /// while another owner held it (a planner that died or lost Postgres), rather than being
    /// free or released.
    public func acquireCountingTakeovers(owner: String, ttl: Duration, limit: Int) async throws
        -> (leases: [ShardLease], takenOver: Int)
    {
        try await pool.withSession { session in
            let rows = try session.execute(
                TimerQueries.acquireLeases, [
                    "owner": .text(owner), "ttl_ms": .int64(ttl.wholeMilliseconds), "limit": .int(limit),
                ])
            let takenOver = try rows.filter { row in try row.string("previous").map { $0 != owner } ?? false }.count
            return (try rows.map(ShardLease.init(row:)), takenOver)
        }
    }

    /// Armed runs in the whole table (all shards): what is loaded into JetStream and waiting.
    public func armedRuns() async throws -> Int {
        try await pool.withSession { session in
            Int(try session.execute(TimerQueries.countArmedRuns).first?.int64("armed") ?? 0)
        }
    }

    /// Extends held leases; a lease missing from the result was lost.
    public func renew(owner: String, leases: [ShardLease], ttl: Duration) async throws -> [ShardLease] {
        guard !leases.isEmpty else { return [] }
        return try await pool.withSession { session in
            try session.execute(
                TimerQueries.renewLeases,
                [
                    "owner": .text(owner), "ttl_ms": .int64(ttl.wholeMilliseconds),
                    "shards": .intArray(leases.map(\.shard)), "epochs": .int64Array(leases.map(\.epoch)),
                ]
            ).map(ShardLease.init(row:))
        }
    }

    /// The database's shard count (`ShardMap`; migration 0017).
    public func shardCount() async throws -> Int {
        try await pool.withSession { session in
            let row = try session.execute(TimerQueries.shardSettings)[0]
            return try row.required("shard_count", row.int)
        }
    }

    /// What `settleShardCount` found.
    public enum ShardCountSettlement: Sendable, Equatable {
        case unchanged(Int)
        /// The database held no timer: it now has `to` shards.
        case changed(from: Int, to: Int)
        /// The database holds timers sharded `stored` ways; nothing changed.
        case refused(stored: Int)
    }

    /// Gives a database `requested` shards if it has another count and holds no timer yet;
    /// a database with timers keeps its count (a timer's shard is stored with it). Every
    /// starter runs this under the settings row's lock, so concurrent starts agree.
    public func settleShardCount(_ requested: Int) async throws -> ShardCountSettlement {
        guard (1...ShardMap.maximumCount).contains(requested) else { return .refused(stored: try await shardCount()) }
        return try await pool.withSession { session in
            try session.transaction { session in
                let row = try session.execute(TimerQueries.shardSettings)[0]
                let stored = try row.required("shard_count", row.int)
                if stored == requested { return .unchanged(stored) }
                if try row.required("holds_timers", row.bool) { return .refused(stored: stored) }
                _ = try session.execute(TimerQueries.setShardCount, ["count": .int(requested)])
                return .changed(from: stored, to: requested)
            }
        }
    }

    /// Records that `owner` is alive; returns the live planners (heard from within `ttl`),
    /// `owner` included, sorted.
    public func heartbeat(owner: String, ttl: Duration) async throws -> [String] {
        try await pool.withSession { session in
            try session.execute(
                TimerQueries.heartbeatPlanners, ["owner": .text(owner), "ttl_ms": .int64(ttl.wholeMilliseconds)]
            ).map { try $0.required("owner", $0.string) }
        }
    }

    /// `owner` stops counting as a live planner (graceful shutdown).
    public func leave(owner: String) async throws {
        _ = try await pool.withSession { session in
            try session.execute(TimerQueries.leavePlanners, ["owner": .text(owner)]).affectedRows
        }
    }

    public func release(owner: String, shards: [Int]) async throws {
        guard !shards.isEmpty else { return }
        _ = try await pool.withSession { session in
            try session.execute(TimerQueries.releaseLeases, [
                "owner": .text(owner), "shards": .intArray(shards),
            ]).affectedRows
        }
    }
}
