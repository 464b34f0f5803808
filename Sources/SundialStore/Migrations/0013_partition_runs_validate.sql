-- timer_runs partitioned by time, step 2 of 3: check the stored runs against the legacy
-- bound. A full scan, under SHARE UPDATE EXCLUSIVE: creates, fires and results go on.
ALTER TABLE timer_runs VALIDATE CONSTRAINT timer_runs_legacy_bound;
