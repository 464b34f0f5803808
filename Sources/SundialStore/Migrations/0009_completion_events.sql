-- Completion events (docs/lifecycle.md#retries-dead-letters-notifications): a `succeeded`
-- event when a job succeeds, opted into per timer or for every timer of a tenant. Constant
-- defaults: catalogue-only changes.
ALTER TABLE timers ADD COLUMN IF NOT EXISTS notify_success boolean NOT NULL DEFAULT false;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS notify_success boolean NOT NULL DEFAULT false;
