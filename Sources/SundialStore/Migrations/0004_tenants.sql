-- Tenants as fairness sees them (issue 5). A row appears when the Fairness-Governor first
-- sees a tenant's fires, dated by the tenant's oldest timer; operators set the flags.
CREATE TABLE tenants (
    tenant        text        PRIMARY KEY,
    -- Age for the `new` tier counts from here.
    first_seen_at timestamptz NOT NULL,
    -- A trial tenant counts as `new` whatever its age (unless its volume makes it bulk).
    trial         boolean     NOT NULL DEFAULT false,
    -- An operator's fixed tier; NULL = observed (new / standard / bulk by age and volume).
    pinned_tier   text        CHECK (pinned_tier IN ('new', 'standard', 'bulk')),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
