-- Sundial schema v2: every loaded fire is a row of timer_runs, so recurring timers, retries,
-- update/cancel races and rescue work per (timer, occurrence, attempt).
--
-- timer_runs.outcome is the run's state:
--   armed        loaded into JetStream as a scheduled message, not yet fired
--   dispatching  claimed by a Dispatcher (compare-and-set); it will be forwarded
--   dispatched   forwarded to the work stream; awaiting the executor's result
--   succeeded | failed (a later attempt follows) | dead (no attempts left)
--   cancelled    the timer was cancelled while this run was armed
--   superseded   the timer was updated while this run was armed (old version)

ALTER TABLE timer_runs ALTER COLUMN outcome SET DEFAULT 'armed';
ALTER TABLE timer_runs ADD COLUMN shard int NOT NULL DEFAULT 0;
ALTER TABLE timer_runs ADD COLUMN armed_at timestamptz;

-- Rescue scan: armed runs overdue and untouched (small: at most the horizon's worth).
CREATE INDEX timer_runs_armed ON timer_runs (shard, scheduled_at) WHERE outcome = 'armed';
-- Dispatched runs waiting for a result, per timer (history, cancel checks).
CREATE INDEX timer_runs_open ON timer_runs (timer_id) WHERE outcome IN ('armed', 'dispatching', 'dispatched');

-- The un-jittered time of the next occurrence, from which the following one is computed.
ALTER TABLE timers ADD COLUMN next_nominal_at timestamptz;
UPDATE timers SET next_nominal_at = next_fire_at;

-- Whether more than one occurrence can follow (cron, every, recurring weekdays, yearly date).
ALTER TABLE timers ADD COLUMN recurring boolean NOT NULL DEFAULT false;

-- Label filters in List.
CREATE INDEX timers_labels ON timers USING gin (labels jsonb_path_ops);

-- Children waiting for a parent's success (dependency chains).
CREATE INDEX timers_after ON timers (after_timer_id) WHERE after_timer_id IS NOT NULL AND state = 'waiting';
