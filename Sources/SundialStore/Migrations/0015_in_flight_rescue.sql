-- Dispatched-but-lost rescue (the Planner's rescue pass, TimerQueries.inFlightOverdue): a run
-- dispatched long ago whose job is neither reported nor still in the work stream is dispatched
-- again. work_sequence is where its job was stored in the work stream (looked up to tell a job
-- still queued or being worked from a lost one); checked_at is when a rescue pass last found it
-- there. The index covers only runs in flight, so the pass never reads armed or finished runs.
-- Adding nullable columns rewrites nothing; the index build reads timer_runs once.
SET LOCAL lock_timeout = '10s';
ALTER TABLE timer_runs ADD COLUMN work_sequence bigint, ADD COLUMN checked_at timestamptz;
CREATE INDEX timer_runs_in_flight ON timer_runs (shard, (coalesce(checked_at, dispatched_at, fired_at)))
    WHERE outcome IN ('dispatching', 'dispatched');
