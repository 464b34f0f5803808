-- Completion events are opt-in and rare: the success path finds who asked through these
-- partial indexes, which stay (nearly) empty when nobody did, instead of joining every
-- succeeded run with its timer and tenant.
CREATE INDEX IF NOT EXISTS timers_notify_success ON timers (id) WHERE notify_success;
CREATE INDEX IF NOT EXISTS tenants_notify_success ON tenants (tenant) WHERE notify_success;
