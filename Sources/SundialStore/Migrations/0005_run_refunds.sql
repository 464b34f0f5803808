-- Attempts of an occurrence given back because they failed against a downstream whose
-- circuit breaker was tripping or open (docs/failures.md): carried on each later attempt's
-- run, so `attempt - refunded` attempts count against the retry policy. A constant default
-- makes this a catalogue-only change: no table rewrite.
ALTER TABLE timer_runs ADD COLUMN IF NOT EXISTS refunded int NOT NULL DEFAULT 0;
