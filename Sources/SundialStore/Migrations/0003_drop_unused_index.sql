-- Since 0002 the armed state lives in timer_runs (index timer_runs_armed); nothing reads
-- timers_armed any more, but every one-shot load still paid for maintaining it.
DROP INDEX IF EXISTS timers_armed;
