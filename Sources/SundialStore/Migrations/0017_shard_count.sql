-- The shard count (ShardMap), fixed per database: a timer's shard is its id's hash modulo this
-- count, stored with the timer, and `shard_leases` holds one row per shard. A database without
-- timers starts with 256 shards (enough for tens of planners); one that already holds timers
-- keeps the 64 it was created with. LeaseStore.settleShardCount changes it (SUNDIAL_SHARDS) only
-- while no timer exists.
CREATE TABLE shard_settings (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    shard_count int     NOT NULL CHECK (shard_count BETWEEN 1 AND 4096)
);
INSERT INTO shard_settings (shard_count)
SELECT CASE WHEN EXISTS (SELECT 1 FROM timers) THEN (SELECT count(*) FROM shard_leases)::int ELSE 256 END;
INSERT INTO shard_leases (shard)
SELECT generate_series(0, (SELECT shard_count FROM shard_settings) - 1)
ON CONFLICT (shard) DO NOTHING;
