-- Live planners, so that they share the shards (PlannerStateMachine, ShardShare): each writes its
-- row every acquire interval, and the same statement deletes rows not written for 20 lease
-- periods, so the table holds about as many rows as planners run.
CREATE TABLE planner_members (
    owner        text        PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL
);
