import SundialPostgres

/// Every SQL statement of the timer store, named, in one place (River's driver-layer model).
/// Statement names are lowercase: Postgres folds case in DEALLOCATE.
enum TimerQueries {
    static let timerColumns = """
        id, tenant, shard, state, kind, schedule, next_fire_at, occurrence, attempt, version, queue,
        payload, priority, labels::text AS labels, retry_policy, idempotency_key, after_timer_id,
        attempts, occurrences_fired, last_error, created_at, updated_at
        """

    static let fireColumns = """
        id, tenant, shard, version, next_fire_at, occurrence, attempt, queue, payload, priority
        """

    /// $1 id, $2 tenant, $3 shard, $4 state, $5 kind, $6 schedule, $7 next_fire_at, $8 queue,
    /// $9 payload, $10 priority, $11 labels, $12 retry_policy, $13 idempotency_key,
    /// $14 request_hash, $15 after_timer_id. Does nothing on an idempotency-key conflict.
    static let insertTimer = PostgresQuery(
        name: "sundial_insert_timer",
        sql: """
            INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, queue, payload,
                                priority, labels, retry_policy, idempotency_key, request_hash,
                                after_timer_id, armed_at)
            VALUES ($1, $2, $3, $4::text, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15,
                    CASE WHEN $4::text = 'armed' THEN now() END)
            ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING \(timerColumns)
            """)

    /// $1 tenant, $2 idempotency_key.
    static let selectByIdempotencyKey = PostgresQuery(
        name: "sundial_select_timer_by_key",
        sql: "SELECT \(timerColumns), request_hash FROM timers WHERE tenant = $1 AND idempotency_key = $2")

    /// $1 tenant, $2 id. Tenant-scoped: another tenant's id reads as not found.
    static let selectTimer = PostgresQuery(
        name: "sundial_select_timer",
        sql: "SELECT \(timerColumns) FROM timers WHERE tenant = $1 AND id = $2")

    /// Claims due rows of one shard and marks them armed. Fenced: does nothing unless the
    /// caller still holds the shard's lease with this epoch.
    /// $1 shard, $2 due-before, $3 limit, $4 owner, $5 epoch.
    static let claimDue = PostgresQuery(
        name: "sundial_claim_due",
        sql: """
            UPDATE timers SET state = 'armed', armed_at = now(), updated_at = now()
            WHERE id IN (
                SELECT id FROM timers
                WHERE shard = $1 AND state = 'scheduled' AND next_fire_at < $2
                ORDER BY next_fire_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
              AND EXISTS (SELECT 1 FROM shard_leases
                          WHERE shard = $1 AND owner = $4 AND epoch = $5 AND expires_at > now())
            RETURNING \(fireColumns)
            """)

    /// Armed rows still in the future (their schedule cannot have fired yet), for
    /// republishing after a shard changes hands. Keyset-paginated on (next_fire_at, id).
    /// $1 shard, $2 after (time), $3 after-id, $4 limit.
    static let armedFuture = PostgresQuery(
        name: "sundial_armed_future",
        sql: """
            SELECT \(fireColumns) FROM timers
            WHERE shard = $1 AND state = 'armed' AND (next_fire_at, id) > ($2::timestamptz, $3::uuid)
            ORDER BY next_fire_at, id
            LIMIT $4
            """)

    /// Armed rows overdue by more than the grace and not touched since: their schedule may
    /// be missing (a crash between commit and publish). Re-arms them for republishing; the
    /// Dispatcher drops the duplicate if the original fire was only slow.
    /// $1 shard, $2 overdue-before, $3 limit.
    static let rescueOverdue = PostgresQuery(
        name: "sundial_rescue_overdue",
        sql: """
            UPDATE timers SET armed_at = now()
            WHERE id IN (
                SELECT id FROM timers
                WHERE shard = $1 AND state = 'armed' AND next_fire_at < $2 AND armed_at < $2
                ORDER BY next_fire_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
            RETURNING \(fireColumns)
            """)

    /// Current state of fired timers and whether this (occurrence, attempt) was already
    /// dispatched. $1 ids, $2 occurrences, $3 attempts.
    static let dispatchStatus = PostgresQuery(
        name: "sundial_dispatch_status",
        sql: """
            SELECT f.id, t.version, t.state,
                   EXISTS (SELECT 1 FROM timer_runs r
                           WHERE r.timer_id = f.id AND r.occurrence = f.occurrence
                             AND r.attempt = f.attempt) AS dispatched
            FROM unnest($1::uuid[], $2::bigint[], $3::int[]) AS f(id, occurrence, attempt)
            JOIN timers t ON t.id = f.id
            """)

    /// Records forwarded jobs (idempotent per attempt) and moves one-shot timers to
    /// dispatched. $1 ids, $2 occurrences, $3 attempts, $4 versions, $5 scheduled_at,
    /// $6 fired_at, $7 dispatched_at.
    static let recordDispatches = PostgresQuery(
        name: "sundial_record_dispatches",
        sql: """
            WITH f AS (
                SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::bigint[],
                                     $5::timestamptz[], $6::timestamptz[], $7::timestamptz[])
                    AS f(id, occurrence, attempt, version, scheduled_at, fired_at, dispatched_at)
            ), runs AS (
                INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at,
                                        fired_at, dispatched_at, outcome)
                SELECT f.id, f.occurrence, f.attempt, t.tenant, f.version, f.scheduled_at,
                       f.fired_at, f.dispatched_at, 'dispatched'
                FROM f JOIN timers t ON t.id = f.id
                ON CONFLICT DO NOTHING
                RETURNING timer_id
            )
            UPDATE timers t
            SET state = 'dispatched', attempts = t.attempts + 1,
                occurrences_fired = t.occurrences_fired + 1, updated_at = now()
            FROM f
            WHERE t.id = f.id AND t.version = f.version AND t.state = 'armed'
            """)

    /// $1 timer id. Runs in (occurrence, attempt) order.
    static let selectRuns = PostgresQuery(
        name: "sundial_select_runs",
        sql: """
            SELECT occurrence, attempt, version, scheduled_at, fired_at, dispatched_at, finished_at,
                   outcome, error
            FROM timer_runs WHERE timer_id = $1 ORDER BY occurrence, attempt
            """)

    // MARK: shard leases

    /// Takes up to $3 free or expired shards for owner $1 for $2 milliseconds.
    static let acquireLeases = PostgresQuery(
        name: "sundial_acquire_leases",
        sql: """
            UPDATE shard_leases
            SET owner = $1, epoch = epoch + 1, expires_at = now() + $2 * interval '1 millisecond',
                acquired_at = now()
            WHERE shard IN (
                SELECT shard FROM shard_leases
                WHERE owner IS NULL OR expires_at < now()
                ORDER BY shard
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
            RETURNING shard, epoch, expires_at
            """)

    /// Extends the leases owner $1 still holds at the given epochs. $3 shards, $4 epochs.
    static let renewLeases = PostgresQuery(
        name: "sundial_renew_leases",
        sql: """
            UPDATE shard_leases l
            SET expires_at = now() + $2 * interval '1 millisecond'
            FROM unnest($3::int[], $4::bigint[]) AS h(shard, epoch)
            WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $1 AND l.expires_at > now()
            RETURNING l.shard, l.epoch, l.expires_at
            """)

    /// Gives shards back on graceful shutdown so a peer takes them at once. $1 owner, $2 shards.
    static let releaseLeases = PostgresQuery(
        name: "sundial_release_leases",
        sql: """
            UPDATE shard_leases SET owner = NULL, expires_at = '-infinity'
            WHERE owner = $1 AND shard = ANY($2::int[])
            """)
}
