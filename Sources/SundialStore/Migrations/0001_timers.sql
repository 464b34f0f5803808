-- Sundial schema v1: timers, their run history, and planner shard leases.
-- Applied by PostgresMigrator inside the target schema (search_path), in one transaction.

CREATE TABLE timers (
    id                uuid        PRIMARY KEY,           -- UUIDv7: time-ordered
    tenant            text        NOT NULL,
    shard             int         NOT NULL,              -- ShardMap.shard(of: id), 0..63
    -- scheduled | armed | dispatched | succeeded | retrying | dead | cancelled | completed
    state             text        NOT NULL,
    kind              text        NOT NULL,              -- delay | at | weekdays | date | cron | every
    schedule          bytea       NOT NULL,              -- sundial.v1.Schedule (protobuf)
    next_fire_at      timestamptz,                       -- due instant of `occurrence` (jitter applied)
    occurrence        bigint      NOT NULL DEFAULT 0,    -- 0-based occurrence number of next_fire_at
    attempt           int         NOT NULL DEFAULT 1,    -- 1-based attempt of that occurrence
    version           bigint      NOT NULL DEFAULT 1,    -- bumped by every update/cancel
    queue             text        NOT NULL,
    payload           bytea       NOT NULL,
    priority          smallint    NOT NULL DEFAULT 2,    -- sundial.v1.Priority
    labels            jsonb       NOT NULL DEFAULT '{}',
    retry_policy      bytea,                             -- sundial.v1.RetryPolicy (protobuf)
    idempotency_key   text,
    request_hash      bytea,                             -- detects a key reused for another request
    after_timer_id    uuid,
    attempts          int         NOT NULL DEFAULT 0,
    occurrences_fired bigint      NOT NULL DEFAULT 0,
    last_error        text,
    armed_at          timestamptz,                       -- when last loaded into JetStream
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A retried create with the same key finds the first timer.
CREATE UNIQUE INDEX timers_idempotency ON timers (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The due scan. Partial on pending rows, so claimed rows leave the index and each claim
-- batch costs the same however many timers are stored (a plain index degrades quadratically).
CREATE INDEX timers_due ON timers (shard, next_fire_at) WHERE state = 'scheduled';

-- Loaded-but-not-yet-dispatched rows: republish on shard takeover, rescue when overdue.
-- Small: at most the planning horizon's worth of timers.
CREATE INDEX timers_armed ON timers (shard, next_fire_at) WHERE state = 'armed';

-- Tenant-scoped listing in id (= creation) order.
CREATE INDEX timers_tenant ON timers (tenant, id);

CREATE TABLE timer_runs (
    timer_id      uuid        NOT NULL,
    occurrence    bigint      NOT NULL,
    attempt       int         NOT NULL,
    tenant        text        NOT NULL,
    version       bigint      NOT NULL,
    scheduled_at  timestamptz NOT NULL,
    fired_at      timestamptz,
    dispatched_at timestamptz,
    finished_at   timestamptz,
    outcome       text        NOT NULL,                  -- dispatched | succeeded | failed | dead
    error         text,
    PRIMARY KEY (timer_id, occurrence, attempt)          -- one row per attempt: dedupes redeliveries
);

CREATE TABLE shard_leases (
    shard       int         PRIMARY KEY,
    owner       text,
    epoch       bigint      NOT NULL DEFAULT 0,          -- fencing token, bumped on every acquisition
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at timestamptz
);

-- ShardMap.count (SundialContract) logical shards.
INSERT INTO shard_leases (shard) SELECT generate_series(0, 63);
