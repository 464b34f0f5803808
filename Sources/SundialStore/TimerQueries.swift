import Foundation
import SundialCore
import SundialPostgres

/// Every SQL statement of the timer store, named, in one place (River's driver-layer model).
/// Statement names are lowercase: Postgres folds case in DEALLOCATE.
enum TimerQueries {
    static let timerColumns = """
        id, tenant, shard, state, kind, recurring, schedule, next_fire_at, next_nominal_at, occurrence, attempt,
        version, queue, payload, priority, labels::text AS labels, retry_policy, idempotency_key,
        after_timer_id, attempts, occurrences_fired, last_error, created_at, updated_at
        """

    static let timerColumnsQualified = timerColumns.split(separator: ",").map {
        let column = $0.trimmingCharacters(in: .whitespacesAndNewlines)
        return column.hasPrefix("labels::text") ? "t.labels::text AS labels" : "t.\(column)"
    }.joined(separator: ", ")

    /// A run joined with its timer: everything to (re)publish it as a scheduled message.
    static let runFireColumns = """
        r.timer_id AS id, t.tenant, t.shard, r.version, r.scheduled_at AS next_fire_at,
        r.occurrence, r.attempt, t.queue, t.payload, t.priority
        """

    // MARK: create / read

    /// $1 id, $2 tenant, $3 shard, $4 state, $5 kind, $6 schedule, $7 next_fire_at,
    /// $8 next_nominal_at, $9 occurrence, $10 queue, $11 payload, $12 priority, $13 labels,
    /// $14 retry_policy, $15 idempotency_key, $16 request_hash, $17 after_timer_id, $18 recurring.
    /// Does nothing on an idempotency-key conflict.
    static let insertTimer = PostgresQuery(
        name: "sundial_insert_timer",
        sql: """
            INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at,
                                occurrence, queue, payload, priority, labels, retry_policy,
                                idempotency_key, request_hash, after_timer_id, recurring)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18)
            ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING \(timerColumns)
            """)

    /// The common create in one statement (one round trip, implicitly atomic): the timer and,
    /// when $18 (occurrence) is not null, its first run armed at $19. Parameters $1–$17 as in
    /// `insertTimer` minus after_timer_id ($17 here is `recurring`).
    static let insertTimerWithRun = PostgresQuery(
        name: "sundial_insert_timer_with_run",
        sql: """
            WITH t AS (
                INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at,
                                    occurrence, queue, payload, priority, labels, retry_policy,
                                    idempotency_key, request_hash, recurring)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17)
                ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING \(timerColumns)
            ), run AS (
                INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                        outcome, armed_at)
                SELECT id, $18::bigint, 1, tenant, version, $19::timestamptz, shard, \(RunOutcome.armed.sql), now()
                FROM t WHERE $18::bigint IS NOT NULL
            )
            SELECT * FROM t
            """)

    /// An armed run. $1 timer, $2 occurrence, $3 attempt, $4 tenant, $5 version,
    /// $6 scheduled_at, $7 shard, $8 attempts refunded before it.
    static let insertArmedRun = PostgresQuery(
        name: "sundial_insert_armed_run",
        sql: """
            INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                    refunded, outcome, armed_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \(RunOutcome.armed.sql), now())
            ON CONFLICT DO NOTHING
            """)

    /// $1 tenant, $2 idempotency_key.
    static let selectByIdempotencyKey = PostgresQuery(
        name: "sundial_select_timer_by_key",
        sql: "SELECT \(timerColumns), request_hash FROM timers WHERE tenant = $1 AND idempotency_key = $2")

    /// $1 tenant, $2 id. Tenant-scoped: another tenant's id reads as not found.
    static let selectTimer = PostgresQuery(
        name: "sundial_select_timer",
        sql: "SELECT \(timerColumns) FROM timers WHERE tenant = $1 AND id = $2")

    /// Same, locking the row for an update or cancel.
    static let selectTimerForUpdate = PostgresQuery(
        name: "sundial_select_timer_for_update",
        sql: "SELECT \(timerColumns) FROM timers WHERE tenant = $1 AND id = $2 FOR UPDATE")

    /// A tenant's timers in id (= creation) order after cursor $2, filtered by states $3 (empty
    /// = all), queue $4 ('' = all), labels containing $5. Keyset pagination: rows inserted
    /// meanwhile get larger ids and never shift a page. $6 limit.
    static let listTimers = PostgresQuery(
        name: "sundial_list_timers",
        sql: """
            SELECT \(timerColumns) FROM timers
            WHERE tenant = $1 AND id > $2
              AND (cardinality($3::text[]) = 0 OR state = ANY($3::text[]))
              AND ($4 = '' OR queue = $4)
              AND labels @> $5::jsonb
            ORDER BY id
            LIMIT $6
            """)

    /// $1 timer id, after ($2 occurrence, $3 attempt), $4 limit.
    static let selectRuns = PostgresQuery(
        name: "sundial_select_runs",
        sql: """
            SELECT occurrence, attempt, version, scheduled_at, fired_at, dispatched_at, finished_at,
                   outcome, error
            FROM timer_runs WHERE timer_id = $1 AND (occurrence, attempt) > ($2::bigint, $3::int)
            ORDER BY occurrence, attempt
            LIMIT $4
            """)

    // MARK: planner

    /// Locks due timers of one shard. Fenced: nothing unless the caller still holds the
    /// shard's lease with this epoch. $1 shard, $2 due-before, $3 limit, $4 owner, $5 epoch.
    /// Due timers of a shard, locked: at most $3 rows, and no more payload bytes than $6
    /// (always at least one row), so a claim's memory is bounded however large the payloads.
    /// Rows locked beyond the byte budget stay untouched and are claimed next time. The outer
    /// `FOR UPDATE` (on rows this statement already holds) reads each at its latest version:
    /// an update that committed after the statement's snapshot is what gets loaded.
    static let selectDueForLoad = PostgresQuery(
        name: "sundial_select_due_for_load",
        sql: """
            WITH locked AS (
                SELECT id, next_fire_at, octet_length(payload) AS size FROM timers
                WHERE shard = $1 AND state = \(StoredTimerState.scheduled.sql) AND next_fire_at < $2
                  AND EXISTS (SELECT 1 FROM shard_leases
                              WHERE shard = $1 AND owner = $4 AND epoch = $5 AND expires_at > now())
                ORDER BY next_fire_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ), budgeted AS (
                SELECT id, sum(size) OVER (ORDER BY next_fire_at, id) - size AS bytes_before FROM locked
            )
            SELECT \(timerColumns) FROM timers
            WHERE id IN (SELECT id FROM budgeted WHERE bytes_before < $6)
            ORDER BY next_fire_at, id
            FOR UPDATE
            """)

    /// Arms one run per loaded timer. Arrays: $1 ids, $2 occurrences, $3 attempts, $4 tenants,
    /// $5 versions, $6 scheduled_at, $7 shards.
    static let insertArmedRuns = PostgresQuery(
        name: "sundial_insert_armed_runs",
        sql: """
            INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                    outcome, armed_at)
            SELECT id, occurrence, attempt, tenant, version, scheduled_at, shard, \(RunOutcome.armed.sql), now()
            FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::text[], $5::bigint[], $6::timestamptz[], $7::int[])
                AS f(id, occurrence, attempt, tenant, version, scheduled_at, shard)
            ON CONFLICT DO NOTHING
            """)

    /// Moves each loaded timer's cursor to its next occurrence (or its final state).
    /// Arrays: $1 ids, $2 states, $3 next_fire_at, $4 next_nominal_at, $5 next occurrence numbers.
    static let advanceTimers = PostgresQuery(
        name: "sundial_advance_timers",
        sql: """
            UPDATE timers t
            SET state = f.state, next_fire_at = f.next_fire_at, next_nominal_at = f.next_nominal_at,
                occurrence = f.occurrence, updated_at = now(),
                last_error = CASE WHEN f.error = '' THEN t.last_error ELSE f.error END
            FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[], $6::text[])
                AS f(id, state, next_fire_at, next_nominal_at, occurrence, error)
            WHERE t.id = f.id
            """)

    /// Armed runs of a shard still in the future (their schedule cannot have fired yet), to
    /// republish after the shard changes hands. Keyset on (scheduled_at, timer_id).
    /// $1 shard, $2 after (time), $3 after-id, $4 limit.
    static let armedFuture = PostgresQuery(
        name: "sundial_armed_future",
        sql: """
            SELECT \(runFireColumns)
            FROM timer_runs r JOIN timers t ON t.id = r.timer_id
            WHERE r.shard = $1 AND r.outcome = \(RunOutcome.armed.sql) AND (r.scheduled_at, r.timer_id) > ($2::timestamptz, $3::uuid)
            ORDER BY r.scheduled_at, r.timer_id
            LIMIT $4
            """)

    /// Armed runs overdue by more than the grace and not re-armed since: their schedule may
    /// be missing (a crash between commit and publish). Re-arms them for republishing; the
    /// Dispatcher drops the duplicate if the original fire was only slow.
    /// $1 shard, $2 overdue-before, $3 limit.
    static let rescueOverdue = PostgresQuery(
        name: "sundial_rescue_overdue",
        sql: """
            WITH due AS (
                SELECT timer_id, occurrence, attempt FROM timer_runs
                WHERE shard = $1 AND outcome = \(RunOutcome.armed.sql) AND scheduled_at < $2 AND armed_at < $2
                ORDER BY scheduled_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ), touched AS (
                UPDATE timer_runs r SET armed_at = now()
                FROM due WHERE r.timer_id = due.timer_id AND r.occurrence = due.occurrence
                               AND r.attempt = due.attempt
                RETURNING r.*
            )
            SELECT \(runFireColumns) FROM touched r JOIN timers t ON t.id = r.timer_id
            """)

    // MARK: dispatcher

    /// Compare-and-set: claims fired runs that are still armed at the fired version (or were
    /// claimed before by a dispatcher that died before finishing). A cancel or update that
    /// committed first has moved the run out of 'armed', so its fire is not claimed.
    /// Arrays: $1 ids, $2 occurrences, $3 attempts, $4 versions, $5 fired_at.
    static let claimForDispatch = PostgresQuery(
        name: "sundial_claim_for_dispatch",
        sql: """
            UPDATE timer_runs r
            SET outcome = \(RunOutcome.dispatching.sql), fired_at = coalesce(r.fired_at, f.fired_at)
            FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::bigint[], $5::timestamptz[])
                AS f(id, occurrence, attempt, version, fired_at)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND r.version = f.version AND r.outcome IN (\(RunOutcome.sql(.armed, .dispatching)))
            RETURNING r.timer_id, r.occurrence, r.attempt, r.version
            """)

    /// Records forwarded jobs and updates their timers. Arrays: $1 ids, $2 occurrences,
    /// $3 attempts, $4 dispatched_at.
    /// $1 ids, $2 occurrences, $3 attempts, $4 until. A fire deferred by quota is back in
    /// JetStream until `until`: moving `armed_at` there keeps the rescue pass (which republishes
    /// runs armed long ago and still not dispatched) from republishing it meanwhile.
    /// Only moves `armed_at` forward, and not for less than 10 s: callers leave more slack than
    /// that, and a fire re-deferred in its line must not cost a write each time.
    static let recordDeferrals = PostgresQuery(
        name: "sundial_record_deferrals",
        sql: """
            UPDATE timer_runs r SET armed_at = f.until
            FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::timestamptz[]) AS f(id, occurrence, attempt, until)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND r.outcome = \(RunOutcome.armed.sql) AND r.armed_at < f.until - interval '10 seconds'
            """)

    /// Hands claimed runs back ('dispatching' → 'armed') whose job could not be forwarded
    /// because their queue is full: while they wait a cancel or update still wins, as for any
    /// armed run, and `armed_at` moved to $4 keeps the rescue pass away meanwhile.
    /// $1 ids, $2 occurrences, $3 attempts, $4 until.
    static let releaseClaims = PostgresQuery(
        name: "sundial_release_claims",
        sql: """
            UPDATE timer_runs r SET outcome = \(RunOutcome.armed.sql), armed_at = f.until
            FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::timestamptz[]) AS f(id, occurrence, attempt, until)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND r.outcome = \(RunOutcome.dispatching.sql)
            """)

    static let markDispatched = PostgresQuery(
        name: "sundial_mark_dispatched",
        sql: """
            WITH f AS (
                SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::timestamptz[])
                    AS f(id, occurrence, attempt, dispatched_at)
            ), runs AS (
                -- The executor's result can be applied before this (the job is forwarded first):
                -- then the run is already finished; record the dispatch time but keep its outcome.
                UPDATE timer_runs r
                SET outcome = CASE WHEN r.outcome = \(RunOutcome.dispatching.sql) THEN \(RunOutcome.dispatched.sql) ELSE r.outcome END,
                    dispatched_at = f.dispatched_at
                FROM f
                WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
                  AND r.dispatched_at IS NULL
                  AND r.outcome IN (\(RunOutcome.sql(.dispatching, .succeeded, .failed, .dead)))
                RETURNING r.timer_id, r.attempt, r.outcome = \(RunOutcome.dispatched.sql) AS awaiting_result
            ), counts AS (
                SELECT timer_id, count(*) AS attempts, count(*) FILTER (WHERE attempt = 1) AS occurrences,
                       bool_or(awaiting_result) AS awaiting_result
                FROM runs GROUP BY timer_id
            )
            UPDATE timers t
            SET state = CASE WHEN c.awaiting_result AND t.state IN (\(StoredTimerState.sql(.armed, .retrying))) THEN \(StoredTimerState.dispatched.sql)
                             ELSE t.state END,
                attempts = t.attempts + c.attempts, occurrences_fired = t.occurrences_fired + c.occurrences,
                updated_at = now()
            FROM counts c
            WHERE t.id = c.timer_id
            """)

    // MARK: results

    /// Locks a run and its timer for applying an executor's result. $1 timer, $2 occurrence,
    /// $3 attempt, $4 the version the result names (0: not given).
    static let selectRunForResult = PostgresQuery(
        name: "sundial_select_run_for_result",
        sql: """
            SELECT r.outcome AS run_outcome, r.scheduled_at AS run_scheduled_at, r.refunded AS run_refunded,
                   \(timerColumnsQualified)
            FROM timer_runs r JOIN timers t ON t.id = r.timer_id
            WHERE r.timer_id = $1 AND r.occurrence = $2 AND r.attempt = $3 AND ($4::bigint = 0 OR r.version = $4::bigint)
            FOR UPDATE OF r, t
            """)

    /// Successful results, set-wise: finishes the runs still awaiting a result and returns
    /// their timers. Arrays: $1 ids, $2 occurrences, $3 attempts, $4 finished_at, $5 the
    /// versions the results name (0: not given).
    static let succeedRuns = PostgresQuery(
        name: "sundial_succeed_runs",
        sql: """
            UPDATE timer_runs r SET outcome = \(RunOutcome.succeeded.sql), finished_at = f.finished_at
            FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::timestamptz[], $5::bigint[])
                AS f(id, occurrence, attempt, finished_at, version)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND (f.version = 0 OR r.version = f.version)
              AND r.outcome IN (\(RunOutcome.sql(.dispatched, .dispatching)))
            RETURNING r.timer_id
            """)

    /// One-shot timers among $1 whose job succeeded.
    static let settleSucceeded = PostgresQuery(
        name: "sundial_settle_succeeded",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.succeeded.sql), updated_at = now()
            WHERE id = ANY($1::uuid[]) AND NOT recurring
            """)

    /// Waiting children of any of the parents $1, locked for starting them.
    static let selectWaitingChildrenOfAny = PostgresQuery(
        name: "sundial_select_waiting_children_of_any",
        sql: "SELECT \(timerColumns) FROM timers WHERE after_timer_id = ANY($1::uuid[]) AND state = \(StoredTimerState.waiting.sql) FOR UPDATE")

    /// $1 timer, $2 occurrence, $3 attempt, $4 outcome, $5 error, $6 finished_at.
    static let finishRun = PostgresQuery(
        name: "sundial_finish_run",
        sql: """
            UPDATE timer_runs SET outcome = $4, error = $5, finished_at = $6
            WHERE timer_id = $1 AND occurrence = $2 AND attempt = $3
            RETURNING occurrence, attempt, version, scheduled_at, fired_at, dispatched_at, finished_at, outcome, error
            """)

    /// A one-shot timer's state after a result: $1 id, $2 state, $3 last_error, $4 next_fire_at.
    static let settleTimer = PostgresQuery(
        name: "sundial_settle_timer",
        sql: """
            UPDATE timers SET state = $2, last_error = coalesce($3, last_error),
                              next_fire_at = coalesce($4, next_fire_at), updated_at = now()
            WHERE id = $1
            RETURNING \(timerColumns)
            """)

    /// Records the last error of a recurring timer without changing its state. $1 id, $2 error.
    static let noteTimerError = PostgresQuery(
        name: "sundial_note_timer_error",
        sql: "UPDATE timers SET last_error = $2, updated_at = now() WHERE id = $1 RETURNING \(timerColumns)")

    /// Starts a waiting child: $1 id, $2 next_fire_at, $3 next_nominal_at.
    static let startChild = PostgresQuery(
        name: "sundial_start_child",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.scheduled.sql), next_fire_at = $2, next_nominal_at = $3, occurrence = 0,
                              updated_at = now()
            WHERE id = $1
            """)

    /// Cancels a parent's waiting children (the parent was dead-lettered or cancelled).
    static let cancelWaitingChildren = PostgresQuery(
        name: "sundial_cancel_waiting_children",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.cancelled.sql), version = version + 1,
                              last_error = 'parent timer ' || $1::text || ' ended without success', updated_at = now()
            WHERE after_timer_id = $1 AND state = \(StoredTimerState.waiting.sql)
            """)

    /// The parent of a new dependent timer, shared-locked so its outcome cannot change while
    /// the child is inserted. $1 tenant, $2 id.
    /// A tenant's active timers and their payload bytes ($1 tenant), for per-tenant limits.
    static let tenantActiveUsage = PostgresQuery(
        name: "sundial_tenant_active_usage",
        sql: """
            SELECT count(*)::bigint AS timers, coalesce(sum(octet_length(payload)), 0)::bigint AS bytes
            FROM timers WHERE tenant = $1 AND state IN (\(StoredTimerState.sql(.scheduled, .armed, .dispatched, .retrying, .waiting)))
            """)

    static let selectParentForChild = PostgresQuery(
        name: "sundial_select_parent_for_child",
        sql: """
            SELECT t.state, EXISTS (
                SELECT 1 FROM timer_runs r WHERE r.timer_id = t.id AND r.outcome = \(RunOutcome.succeeded.sql)
            ) AS has_succeeded
            FROM timers t WHERE t.tenant = $1 AND t.id = $2 FOR SHARE OF t
            """)

    // MARK: update / cancel

    /// Takes a timer's armed runs out of play ($2: 'cancelled' or 'superseded'); locks them
    /// against a concurrent dispatcher claim. Returns the runs touched.
    static let retireArmedRuns = PostgresQuery(
        name: "sundial_retire_armed_runs",
        sql: """
            UPDATE timer_runs SET outcome = $2, finished_at = now()
            WHERE timer_id = $1 AND outcome = \(RunOutcome.armed.sql)
            RETURNING occurrence, attempt
            """)

    /// Moves a timer's armed runs to version $2 (an update that keeps the schedule: they are
    /// republished with the new payload on the same subjects, replacing the old schedules).
    static let reversionArmedRuns = PostgresQuery(
        name: "sundial_reversion_armed_runs",
        sql: """
            UPDATE timer_runs SET version = $2, armed_at = now()
            WHERE timer_id = $1 AND outcome = \(RunOutcome.armed.sql)
            RETURNING occurrence, attempt, scheduled_at
            """)

    /// Runs a dispatcher has claimed or forwarded and that have no result yet.
    static let inFlightRuns = PostgresQuery(
        name: "sundial_in_flight_runs",
        sql: """
            SELECT count(*) AS n, count(*) FILTER (WHERE outcome = \(RunOutcome.dispatching.sql)) AS claiming,
                   coalesce(max(occurrence), -1) AS max_occurrence
            FROM timer_runs
            WHERE timer_id = $1 AND outcome IN (\(RunOutcome.sql(.dispatching, .dispatched)))
            """)

    /// $1 id, $2 state, $3 next_fire_at, $4 next_nominal_at, $5 occurrence, $6 schedule,
    /// $7 kind, $8 payload, $9 priority, $10 labels, $11 recurring. Bumps the version.
    static let rewriteTimer = PostgresQuery(
        name: "sundial_rewrite_timer",
        sql: """
            UPDATE timers
            SET state = $2, next_fire_at = $3, next_nominal_at = $4, occurrence = $5, schedule = $6,
                kind = $7, payload = $8, priority = $9, labels = $10::jsonb, recurring = $11,
                version = version + 1,
                updated_at = now()
            WHERE id = $1
            RETURNING \(timerColumns)
            """)

    /// $1 id. Bumps the version.
    static let cancelTimer = PostgresQuery(
        name: "sundial_cancel_timer",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.cancelled.sql), version = version + 1, updated_at = now()
            WHERE id = $1
            RETURNING \(timerColumns)
            """)

    // MARK: shard leases

    /// Takes up to $3 free or expired shards for owner $1 for $2 milliseconds.
    static let acquireLeases = PostgresQuery(
        name: "sundial_acquire_leases",
        sql: """
            WITH picked AS (
                SELECT shard, owner AS previous FROM shard_leases
                WHERE owner IS NULL OR expires_at < now()
                ORDER BY shard
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
            UPDATE shard_leases l
            SET owner = $1, epoch = l.epoch + 1, expires_at = now() + $2 * interval '1 millisecond',
                acquired_at = now()
            FROM picked WHERE l.shard = picked.shard
            RETURNING l.shard, l.epoch, l.expires_at, picked.previous
            """)

    /// Armed runs: loaded into JetStream, waiting to fire (counted from the partial index).
    static let countArmedRuns = PostgresQuery(
        name: "sundial_count_armed_runs", sql: "SELECT count(*) AS armed FROM timer_runs WHERE outcome = \(RunOutcome.armed.sql)")

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
