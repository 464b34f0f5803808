-- Pause/resume and misfire policy (docs/lifecycle.md#pause-and-resume).
--   paused_state         the state a paused timer returns to when resumed (NULL unless paused)
--   misfire_policy       'fire_all' | 'fire_once' | 'skip': recurring timers' missed occurrences
--   catchup_window_ms    missed occurrences older than this are skipped whatever the policy (0: no limit)
--   occurrences_skipped  missed occurrences the policy skipped
-- timer_runs.outcome gains 'paused' (armed when its timer was paused; armed again or skipped
-- on resume) and 'skipped'. Constant defaults: catalogue-only changes, no table rewrite.
ALTER TABLE timers ADD COLUMN IF NOT EXISTS paused_state text;
-- Timers created before this migration keep what they were promised (missed occurrences fired
-- back to back: 'fire_all'); new ones default to one catch-up. Ingest always writes the column.
ALTER TABLE timers ADD COLUMN IF NOT EXISTS misfire_policy text NOT NULL DEFAULT 'fire_all';
ALTER TABLE timers ALTER COLUMN misfire_policy SET DEFAULT 'fire_once';
ALTER TABLE timers ADD COLUMN IF NOT EXISTS catchup_window_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE timers ADD COLUMN IF NOT EXISTS occurrences_skipped bigint NOT NULL DEFAULT 0;
-- Paused runs of a timer, found on resume (few at any time: at most a horizon's worth each).
CREATE INDEX IF NOT EXISTS timer_runs_paused ON timer_runs (timer_id) WHERE outcome = 'paused';
