-- timer_runs partitioned by time, step 3 of 3: one partition per period of UTC days of timer
-- creation (timer_runs_pYYYYMMDD, its first day; SUNDIAL_RUN_PARTITION_DAYS), created ahead by
-- the planners' reaper (RetentionStore.maintainPartitions). The key stays (timer_id,
-- occurrence, attempt), so every statement that names a timer reads one partition and a
-- repeated run is still refused; a period whose timers are all gone drops as one table
-- instead of row by row. Renames and ATTACH take brief exclusive locks: bounded as in 0012.
SET LOCAL lock_timeout = '10s';
ALTER TABLE timer_runs RENAME TO timer_runs_legacy;
ALTER TABLE timer_runs_legacy RENAME CONSTRAINT timer_runs_pkey TO timer_runs_legacy_pkey;
ALTER INDEX timer_runs_armed RENAME TO timer_runs_legacy_armed;
ALTER INDEX timer_runs_open RENAME TO timer_runs_legacy_open;
ALTER INDEX timer_runs_paused RENAME TO timer_runs_legacy_paused;

CREATE TABLE timer_runs (LIKE timer_runs_legacy INCLUDING DEFAULTS) PARTITION BY RANGE (timer_id);
ALTER TABLE timer_runs ADD PRIMARY KEY (timer_id, occurrence, attempt);
CREATE INDEX timer_runs_armed ON timer_runs (shard, scheduled_at) WHERE outcome = 'armed';
CREATE INDEX timer_runs_open ON timer_runs (timer_id) WHERE outcome IN ('armed', 'dispatching', 'dispatched');
CREATE INDEX timer_runs_paused ON timer_runs (timer_id) WHERE outcome = 'paused';

-- The legacy table's indexes match the new ones and its validated CHECK implies the range:
-- attaching reuses the indexes and scans nothing. Then three one-day partitions after it (the
-- reaper creates ahead from there, in its periods), and the default partition for any id no partition
-- covers, so an insert never fails for want of a partition.
DO $$
DECLARE
    bound uuid := (SELECT bound FROM run_partitioning);
    day timestamptz;
    lower_hex text;
    upper_hex text;
BEGIN
    EXECUTE format('ALTER TABLE timer_runs ATTACH PARTITION timer_runs_legacy FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    -- From the bound's day on, so that no gap opens even if 0012 ran on an earlier day.
    FOR offset_days IN 0..2 LOOP
        day := (SELECT bound_day FROM run_partitioning) + make_interval(hours => 24 * offset_days);
        lower_hex := lpad(to_hex(floor(extract(epoch FROM day) * 1000)::bigint), 12, '0');
        upper_hex := lpad(to_hex(floor(extract(epoch FROM day + interval '24 hours') * 1000)::bigint), 12, '0');
        EXECUTE format('CREATE TABLE IF NOT EXISTS timer_runs_p%s PARTITION OF timer_runs FOR VALUES FROM (%L) TO (%L)',
            to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD'),
            substr(lower_hex, 1, 8) || '-' || substr(lower_hex, 9, 4) || '-0000-0000-000000000000',
            substr(upper_hex, 1, 8) || '-' || substr(upper_hex, 9, 4) || '-0000-0000-000000000000');
    END LOOP;
END $$;

CREATE TABLE timer_runs_default PARTITION OF timer_runs DEFAULT;
INSERT INTO timer_runs SELECT * FROM timer_runs_outliers;
DROP TABLE timer_runs_outliers;
DROP TABLE run_partitioning;

-- The walk's position moves to a new table: a planner of an earlier build still running
-- during a rolling upgrade finds no reaper_cursor and its reaper stops, instead of deleting
-- by ctid, which on a partitioned table names rows in every partition.
ALTER TABLE reaper_cursor RENAME TO reaper_position;
