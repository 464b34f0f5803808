-- Admission control by rate (services/ingest/README.md#admission-control): a tenant's own
-- Create/Update rate per Ingest instance, overriding its tier's default. NULL: the tier's
-- default; 0: unlimited.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS admission_rate double precision
    CHECK (admission_rate IS NULL OR (admission_rate >= 0 AND admission_rate <= 1000000));
