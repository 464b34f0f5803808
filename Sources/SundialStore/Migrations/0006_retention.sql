-- Retention (docs/operations.md#retention): a reaper deletes finished timers, their runs and
-- payloads after the retention, and old finished runs of timers that go on. It walks the
-- timers' primary key (UUIDv7: creation order) in batches from where it stopped, so it needs
-- no index of its own and the hot paths pay nothing for it. One row: the walk's position.
CREATE TABLE IF NOT EXISTS reaper_cursor (
    id        int  PRIMARY KEY CHECK (id = 1),
    position  uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
);
INSERT INTO reaper_cursor (id) VALUES (1) ON CONFLICT DO NOTHING;
