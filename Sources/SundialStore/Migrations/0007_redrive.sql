-- Redrive (Timers.Retry): a dead-lettered occurrence runs again with the next attempt number
-- and a fresh round of its retry policy. `attempt_base` is the number of attempts made before
-- the latest redrive, carried on every later attempt's run like `refunded`: the retry policy
-- counts `attempt - attempt_base - refunded`. A constant default: no table rewrite.
ALTER TABLE timer_runs ADD COLUMN IF NOT EXISTS attempt_base int NOT NULL DEFAULT 0;
