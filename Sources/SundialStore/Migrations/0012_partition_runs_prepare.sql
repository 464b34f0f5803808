-- timer_runs partitioned by time, step 1 of 3 (0012–0014; docs/operations.md#retention).
-- Timer ids are UUIDv7: their first 48 bits are the creation millisecond, so a range of ids
-- is a span of creation time. The runs stored so far will become the first partition,
-- timer_runs_legacy: every id before the UTC midnight a week ahead (`bound`), fixed here.
-- New rows are checked against it at once (NOT VALID: a brief lock, no scan); 0013 checks the
-- stored ones under a lock that lets writes go on, so that 0014's ATTACH needs no scan. The
-- week is how long 0013 and 0014 may take to follow (a failed start retries them): after the
-- bound, new runs would fail the check until 0014 is in. A lock not granted within 10 s fails
-- the migration (the service's start, which retries) instead of queueing every write behind it.
SET LOCAL lock_timeout = '10s';
-- Runs with ids at or past the bound (not UUIDv7: no Ingest makes them) wait aside in
-- timer_runs_outliers until 0014 puts them in the default partition.
CREATE TABLE run_partitioning (bound_day timestamptz NOT NULL, bound uuid NOT NULL);
INSERT INTO run_partitioning (bound_day, bound)
SELECT day, (substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-0000-0000-000000000000')::uuid
FROM (SELECT day, lpad(to_hex(floor(extract(epoch FROM day) * 1000)::bigint), 12, '0') AS hex
      FROM (SELECT (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '7 days') AT TIME ZONE 'UTC' AS day) AS d) AS b;

CREATE TABLE timer_runs_outliers (LIKE timer_runs INCLUDING DEFAULTS);
WITH moved AS (DELETE FROM timer_runs WHERE timer_id >= (SELECT bound FROM run_partitioning) RETURNING *)
INSERT INTO timer_runs_outliers SELECT * FROM moved;

DO $$
BEGIN
    EXECUTE format('ALTER TABLE timer_runs ADD CONSTRAINT timer_runs_legacy_bound CHECK (timer_id < %L) NOT VALID',
                   (SELECT bound FROM run_partitioning));
END $$;
