import Foundation
import SundialCore
import SundialPostgres

/// Every SQL statement of the timer store, named, in one place (River's driver-layer model).
/// Statement names are lowercase: Postgres folds case in DEALLOCATE.
enum TimerQueries {
    static let timerColumns = """
        id, tenant, shard, state, kind, recurring, schedule, next_fire_at, next_nominal_at, occurrence, attempt,
        version, queue, payload, priority, labels::text AS labels, retry_policy, idempotency_key,
        after_timer_id, attempts, occurrences_fired, last_error, created_at, updated_at, paused_state,
        misfire_policy, catchup_window_ms, occurrences_skipped, notify_success
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

    /// A new timer; each parameter is the column of its name. Does nothing on an idempotency-key conflict.
    static let insertTimer = PostgresQuery(
        name: "sundial_insert_timer",
        sql: """
            INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at,
                                occurrence, queue, payload, priority, labels, retry_policy,
                                idempotency_key, request_hash, after_timer_id, recurring, misfire_policy,
                                catchup_window_ms, notify_success)
            VALUES ($id, $tenant, $shard, $state, $kind, $schedule, $next_fire_at, $next_nominal_at, $occurrence,
                    $queue, $payload, $priority, $labels::jsonb, $retry_policy, $idempotency_key, $request_hash,
                    $after_timer_id, $recurring, $misfire_policy, $catchup_window_ms, $notify_success)
            ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING \(timerColumns)
            """)

    /// The common create in one statement (one round trip, implicitly atomic): the timer and,
    /// when $run_occurrence is not null, its first run armed at $run_scheduled_at. The timer's
    /// parameters are `insertTimer`'s but after_timer_id (a dependent timer is created apart).
    static let insertTimerWithRun = PostgresQuery(
        name: "sundial_insert_timer_with_run",
        sql: """
            WITH t AS (
                INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at,
                                    occurrence, queue, payload, priority, labels, retry_policy,
                                    idempotency_key, request_hash, recurring, misfire_policy, catchup_window_ms,
                                    notify_success)
                VALUES ($id, $tenant, $shard, $state, $kind, $schedule, $next_fire_at, $next_nominal_at, $occurrence,
                        $queue, $payload, $priority, $labels::jsonb, $retry_policy, $idempotency_key, $request_hash,
                        $recurring, $misfire_policy, $catchup_window_ms, $notify_success)
                ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING \(timerColumns)
            ), run AS (
                INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                        outcome, armed_at)
                SELECT id, $run_occurrence::bigint, 1, tenant, version, $run_scheduled_at::timestamptz, shard,
                       \(RunOutcome.armed.sql), now()
                FROM t WHERE $run_occurrence::bigint IS NOT NULL
            )
            SELECT * FROM t
            """)

    /// Many creates in one statement (group commit; `TimerStore.createBatch`): every parameter
    /// is an array, one element per timer, of `insertTimerWithRun`'s columns. Rows whose
    /// idempotency key is taken (also by an earlier row of the same batch) are skipped and not
    /// returned.
    static let insertTimersWithRuns = PostgresQuery(
        name: "sundial_insert_timers_with_runs",
        sql: """
            WITH input AS (
                SELECT * FROM unnest(
                    $id::uuid[], $tenant::text[], $shard::int[], $state::text[], $kind::text[], $schedule::bytea[],
                    $next_fire_at::timestamptz[], $next_nominal_at::timestamptz[], $occurrence::bigint[],
                    $queue::text[], $payload::bytea[], $priority::smallint[], $labels::jsonb[],
                    $retry_policy::bytea[], $idempotency_key::text[], $request_hash::bytea[], $recurring::boolean[],
                    $misfire_policy::text[], $catchup_window_ms::bigint[], $notify_success::boolean[],
                    $run_occurrence::bigint[], $run_scheduled_at::timestamptz[])
                AS i(id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at, occurrence, queue,
                     payload, priority, labels, retry_policy, idempotency_key, request_hash, recurring,
                     misfire_policy, catchup_window_ms, notify_success, run_occurrence, run_scheduled_at)
            ), t AS (
                INSERT INTO timers (id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at,
                                    occurrence, queue, payload, priority, labels, retry_policy,
                                    idempotency_key, request_hash, recurring, misfire_policy, catchup_window_ms,
                                    notify_success)
                SELECT id, tenant, shard, state, kind, schedule, next_fire_at, next_nominal_at, occurrence, queue,
                       payload, priority, labels, retry_policy, idempotency_key, request_hash, recurring,
                       misfire_policy, catchup_window_ms, notify_success
                FROM input
                ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                RETURNING \(timerColumns)
            ), run AS (
                INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                        outcome, armed_at)
                SELECT t.id, i.run_occurrence, 1, t.tenant, t.version, i.run_scheduled_at, t.shard,
                       \(RunOutcome.armed.sql), now()
                FROM t JOIN input i ON i.id = t.id
                WHERE i.run_occurrence IS NOT NULL
            )
            SELECT * FROM t
            """)

    /// An armed run; each parameter is the column of its name ($refunded: attempts refunded
    /// before it; $attempt_base: attempts before the occurrence's latest redrive).
    static let insertArmedRun = PostgresQuery(
        name: "sundial_insert_armed_run",
        sql: """
            INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                    refunded, attempt_base, outcome, armed_at)
            VALUES ($timer_id, $occurrence, $attempt, $tenant, $version, $scheduled_at, $shard, $refunded,
                    $attempt_base, \(RunOutcome.armed.sql), now())
            ON CONFLICT DO NOTHING
            """)

    /// The timer a tenant created under an idempotency key.
    static let selectByIdempotencyKey = PostgresQuery(
        name: "sundial_select_timer_by_key",
        sql: """
            SELECT \(timerColumns), request_hash FROM timers
            WHERE tenant = $tenant AND idempotency_key = $idempotency_key
            """)

    /// Tenant-scoped: another tenant's id reads as not found.
    static let selectTimer = PostgresQuery(
        name: "sundial_select_timer",
        sql: "SELECT \(timerColumns) FROM timers WHERE tenant = $tenant AND id = $id")

    /// Same, locking the row for an update or cancel.
    static let selectTimerForUpdate = PostgresQuery(
        name: "sundial_select_timer_for_update",
        sql: "SELECT \(timerColumns) FROM timers WHERE tenant = $tenant AND id = $id FOR UPDATE")

    /// A tenant's timers in id (= creation) order after cursor $after_id, filtered by states $states (empty
    /// = all), queue $queue ('' = all), labels containing $labels, at most $limit. Keyset pagination:
    /// rows inserted meanwhile get larger ids and never shift a page.
    static let listTimers = PostgresQuery(
        name: "sundial_list_timers",
        sql: """
            SELECT \(timerColumns) FROM timers
            WHERE tenant = $tenant AND id > $after_id
              AND (cardinality($states::text[]) = 0 OR state = ANY($states::text[]))
              AND ($queue = '' OR queue = $queue)
              AND labels @> $labels::jsonb
            ORDER BY id
            LIMIT $limit
            """)

    /// A timer's runs after ($after_occurrence, $after_attempt), at most $limit.
    static let selectRuns = PostgresQuery(
        name: "sundial_select_runs",
        sql: """
            SELECT occurrence, attempt, version, scheduled_at, fired_at, dispatched_at, finished_at,
                   outcome, error
            FROM timer_runs WHERE timer_id = $timer_id AND (occurrence, attempt) > ($after_occurrence::bigint,
                                                                                    $after_attempt::int)
            ORDER BY occurrence, attempt
            LIMIT $limit
            """)

    // MARK: planner

    /// Locks due timers of one shard. Fenced: nothing unless the caller still holds the
    /// shard's lease ($owner at $epoch).
    /// Due timers of a shard, locked: at most $limit rows, and no more payload bytes than $max_bytes
    /// (always at least one row), so a claim's memory is bounded however large the payloads.
    /// Rows locked beyond the byte budget stay untouched and are claimed next time. The outer
    /// `FOR UPDATE` (on rows this statement already holds) reads each at its latest version:
    /// an update that committed after the statement's snapshot is what gets loaded.
    static let selectDueForLoad = PostgresQuery(
        name: "sundial_select_due_for_load",
        sql: """
            WITH locked AS (
                SELECT id, next_fire_at, octet_length(payload) AS size FROM timers
                WHERE shard = $shard AND state = \(StoredTimerState.scheduled.sql) AND next_fire_at < $due_before
                  AND EXISTS (SELECT 1 FROM shard_leases
                              WHERE shard = $shard AND owner = $owner AND epoch = $epoch AND expires_at > now())
                ORDER BY next_fire_at
                LIMIT $limit
                FOR UPDATE SKIP LOCKED
            ), budgeted AS (
                SELECT id, sum(size) OVER (ORDER BY next_fire_at, id) - size AS bytes_before FROM locked
            )
            SELECT \(timerColumns) FROM timers
            WHERE id IN (SELECT id FROM budgeted WHERE bytes_before < $max_bytes)
            ORDER BY next_fire_at, id
            FOR UPDATE
            """)

    /// Which of $shards have a timer due before $due_before: one index probe per shard
    /// (`timers_due`) in one statement, so a tick claims only shards with work — an idle claim
    /// would cost a transaction per shard. Read-only and unfenced: the claim itself is fenced,
    /// and a timer stored just after the probe is found by the next tick's.
    static let shardsWithDue = PostgresQuery(
        name: "sundial_shards_with_due",
        sql: """
            SELECT s.shard FROM unnest($shards::int[]) AS s(shard)
            WHERE EXISTS (SELECT 1 FROM timers t
                          WHERE t.shard = s.shard AND t.state = \(StoredTimerState.scheduled.sql)
                            AND t.next_fire_at < $due_before)
            """)

    /// Arms one run per loaded timer; every parameter is an array, one element per run.
    static let insertArmedRuns = PostgresQuery(
        name: "sundial_insert_armed_runs",
        sql: """
            INSERT INTO timer_runs (timer_id, occurrence, attempt, tenant, version, scheduled_at, shard,
                                    outcome, armed_at)
            SELECT id, occurrence, attempt, tenant, version, scheduled_at, shard, \(RunOutcome.armed.sql), now()
            FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[], $tenants::text[], $versions::bigint[],
                        $scheduled_at::timestamptz[], $shards::int[])
                AS f(id, occurrence, attempt, tenant, version, scheduled_at, shard)
            ON CONFLICT DO NOTHING
            """)

    /// Moves each loaded timer's cursor to its next occurrence (or its final state).
    /// Arrays, one element per timer ($occurrences: the next occurrence numbers; $errors: '' or
    /// why a schedule ended; $skipped: missed occurrences the misfire policy skipped).
    static let advanceTimers = PostgresQuery(
        name: "sundial_advance_timers",
        sql: """
            UPDATE timers t
            SET state = f.state, next_fire_at = f.next_fire_at, next_nominal_at = f.next_nominal_at,
                occurrence = f.occurrence, updated_at = now(),
                last_error = CASE WHEN f.error = '' THEN t.last_error ELSE f.error END,
                occurrences_skipped = t.occurrences_skipped + f.skipped
            FROM unnest($ids::uuid[], $states::text[], $next_fire_at::timestamptz[], $next_nominal_at::timestamptz[],
                        $occurrences::bigint[], $errors::text[], $skipped::bigint[])
                AS f(id, state, next_fire_at, next_nominal_at, occurrence, error, skipped)
            WHERE t.id = f.id
            """)

    /// Armed runs of a shard still in the future (their schedule cannot have fired yet), to
    /// republish after the shard changes hands. Keyset on (scheduled_at, timer_id).
    /// After ($after_time, $after_id), at most $limit.
    static let armedFuture = PostgresQuery(
        name: "sundial_armed_future",
        sql: """
            SELECT \(runFireColumns)
            FROM timer_runs r JOIN timers t ON t.id = r.timer_id
            WHERE r.shard = $shard AND r.outcome = \(RunOutcome.armed.sql)
              AND (r.scheduled_at, r.timer_id) > ($after_time::timestamptz, $after_id::uuid)
            ORDER BY r.scheduled_at, r.timer_id
            LIMIT $limit
            """)

    /// Armed runs overdue by more than the grace and not re-armed since: their schedule may
    /// be missing (a crash between commit and publish). Re-arms them for republishing; the
    /// Dispatcher drops the duplicate if the original fire was only slow.
    /// Runs of $shard due before $overdue_before, at most $limit. Fenced by the shard's lease
    /// ($owner at $epoch): a planner that lost the shard republishes nothing.
    static let rescueOverdue = PostgresQuery(
        name: "sundial_rescue_overdue",
        sql: """
            WITH due AS (
                SELECT timer_id, occurrence, attempt FROM timer_runs
                WHERE shard = $shard AND outcome = \(RunOutcome.armed.sql)
                  AND scheduled_at < $overdue_before AND armed_at < $overdue_before AND \(holdsLease)
                ORDER BY scheduled_at
                LIMIT $limit
                FOR UPDATE SKIP LOCKED
            ), touched AS (
                UPDATE timer_runs r SET armed_at = now()
                FROM due WHERE r.timer_id = due.timer_id AND r.occurrence = due.occurrence
                               AND r.attempt = due.attempt
                RETURNING r.*
            )
            SELECT \(runFireColumns) FROM touched r JOIN timers t ON t.id = r.timer_id
            """)

    /// The lease fence of the rescue statements: true while $owner holds $shard at $epoch.
    private static let holdsLease = """
        EXISTS (SELECT 1 FROM shard_leases
                WHERE shard = $shard AND owner = $owner AND epoch = $epoch AND expires_at > now())
        """

    /// Runs of $shard in flight (claimed or dispatched) and not seen since $before — neither
    /// reported nor found in the work stream by an earlier pass — oldest first, at most
    /// $limit. Fenced by the shard's lease. Reads only; `redispatchRuns` re-checks each.
    static let inFlightOverdue = PostgresQuery(
        name: "sundial_in_flight_overdue",
        sql: """
            SELECT timer_id, occurrence, attempt, coalesce(work_sequence, 0) AS work_sequence FROM timer_runs
            WHERE shard = $shard AND outcome IN (\(RunOutcome.sql(.dispatching, .dispatched)))
              AND coalesce(checked_at, dispatched_at, fired_at) < $before AND \(holdsLease)
            ORDER BY coalesce(checked_at, dispatched_at, fired_at)
            LIMIT $limit
            """)

    /// Runs still in flight whose job was found in the work stream (queued or being worked):
    /// seen now, so the next look at them is a whole rescue period away. Arrays, one per run.
    static let noteInFlightSeen = PostgresQuery(
        name: "sundial_note_in_flight_seen",
        sql: """
            UPDATE timer_runs r SET checked_at = now()
            FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[]) AS f(id, occurrence, attempt)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND \(RunOutcome.byKey("r", .dispatching, .dispatched))
            """)

    /// Dispatched-but-lost: arms again runs still in flight at the work sequence the caller
    /// looked up ($work_sequences, 0: none) and still unseen since $before, at the timer's
    /// current version, unless the timer was cancelled, paused or ended meanwhile; takes back what their dispatch added to the timer's counters (the next
    /// dispatch adds it again) and the timer's `dispatched` state. Fenced by the shard's lease.
    /// Returns the fires to republish. Arrays, one element per run.
    static let redispatchRuns = PostgresQuery(
        name: "sundial_redispatch_runs",
        sql: """
            WITH f AS (
                SELECT * FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[], $work_sequences::bigint[])
                    AS f(id, occurrence, attempt, work_sequence)
            ), lost AS (
                SELECT r.timer_id, r.occurrence, r.attempt, r.outcome AS was, t.version AS current_version
                FROM timer_runs r JOIN f ON r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
                     JOIN timers t ON t.id = r.timer_id
                WHERE r.shard = $shard AND \(RunOutcome.byKey("r", .dispatching, .dispatched))
                  AND t.state IN (\(StoredTimerState.sql(.scheduled, .armed, .dispatched, .retrying)))
                  AND coalesce(r.work_sequence, 0) = f.work_sequence
                  AND coalesce(r.checked_at, r.dispatched_at, r.fired_at) < $before AND \(holdsLease)
                FOR UPDATE OF r
            ), runs AS (
                UPDATE timer_runs r
                SET outcome = \(RunOutcome.armed.sql), armed_at = now(), version = lost.current_version,
                    dispatched_at = NULL, work_sequence = NULL, checked_at = NULL
                FROM lost
                WHERE r.timer_id = lost.timer_id AND r.occurrence = lost.occurrence AND r.attempt = lost.attempt
                RETURNING r.*, lost.was
            ), counts AS (
                SELECT timer_id, count(*) FILTER (WHERE was = \(RunOutcome.dispatched.sql)) AS marked,
                       count(*) FILTER (WHERE was = \(RunOutcome.dispatched.sql) AND attempt = 1) AS marked_first,
                       max(attempt) AS attempt
                FROM runs GROUP BY timer_id
            ), timers_back AS (
                UPDATE timers t
                SET state = CASE WHEN t.state = \(StoredTimerState.dispatched.sql)
                                 THEN CASE WHEN c.attempt > 1 THEN \(StoredTimerState.retrying.sql) ELSE \(StoredTimerState.armed.sql) END
                                 ELSE t.state END,
                    attempts = greatest(0, t.attempts - c.marked),
                    occurrences_fired = greatest(0, t.occurrences_fired - c.marked_first), updated_at = now()
                FROM counts c
                WHERE t.id = c.timer_id
            )
            SELECT \(runFireColumns) FROM runs r JOIN timers t ON t.id = r.timer_id
            """)

    // MARK: dispatcher

    /// Compare-and-set: claims fired runs that are still armed at the fired version (or were
    /// claimed before by a dispatcher that died before finishing). A cancel or update that
    /// committed first has moved the run out of 'armed', so its fire is not claimed.
    /// Arrays, one element per fire.
    static let claimForDispatch = PostgresQuery(
        name: "sundial_claim_for_dispatch",
        sql: """
            UPDATE timer_runs r
            SET outcome = \(RunOutcome.dispatching.sql), fired_at = coalesce(r.fired_at, f.fired_at)
            FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[], $versions::bigint[],
                        $fired_at::timestamptz[])
                AS f(id, occurrence, attempt, version, fired_at)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND r.version = f.version AND \(RunOutcome.byKey("r", .armed, .dispatching))
            RETURNING r.timer_id, r.occurrence, r.attempt, r.version
            """)

    /// Arrays, one element per run. A fire deferred by quota is back in
    /// JetStream until `until`: moving `armed_at` there keeps the rescue pass (which republishes
    /// runs armed long ago and still not dispatched) from republishing it meanwhile.
    /// Only moves `armed_at` forward, and not for less than 10 s: callers leave more slack than
    /// that, and a fire re-deferred in its line must not cost a write each time.
    static let recordDeferrals = PostgresQuery(
        name: "sundial_record_deferrals",
        sql: """
            UPDATE timer_runs r SET armed_at = f.until
            FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[],
                        $until::timestamptz[]) AS f(id, occurrence, attempt, until)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND \(RunOutcome.byKey("r", .armed)) AND r.armed_at < f.until - interval '10 seconds'
            """)

    /// Hands claimed runs back ('dispatching' → 'armed') whose job could not be forwarded
    /// because their queue is full: while they wait a cancel or update still wins, as for any
    /// armed run, and `armed_at` moved to $until keeps the rescue pass away meanwhile.
    /// Arrays, one element per run.
    static let releaseClaims = PostgresQuery(
        name: "sundial_release_claims",
        sql: """
            UPDATE timer_runs r SET outcome = \(RunOutcome.armed.sql), armed_at = f.until
            FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[],
                        $until::timestamptz[]) AS f(id, occurrence, attempt, until)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND \(RunOutcome.byKey("r", .dispatching))
            """)

    /// Records forwarded jobs and updates their timers. Arrays, one element per run.
    static let markDispatched = PostgresQuery(
        name: "sundial_mark_dispatched",
        sql: """
            WITH f AS (
                SELECT * FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[],
                                     $dispatched_at::timestamptz[], $work_sequences::bigint[])
                    AS f(id, occurrence, attempt, dispatched_at, work_sequence)
            ), runs AS (
                -- The executor's result can be applied before this (the job is forwarded first):
                -- then the run is already finished; record the dispatch time but keep its outcome.
                UPDATE timer_runs r
                SET outcome = CASE WHEN r.outcome = \(RunOutcome.dispatching.sql) THEN \(RunOutcome.dispatched.sql) ELSE r.outcome END,
                    dispatched_at = f.dispatched_at, work_sequence = nullif(f.work_sequence, 0)
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

    /// Locks a run and its timer for applying an executor's result. $version is
    /// the version the result names (0: not given).
    static let selectRunForResult = PostgresQuery(
        name: "sundial_select_run_for_result",
        sql: """
            SELECT r.outcome AS run_outcome, r.scheduled_at AS run_scheduled_at, r.refunded AS run_refunded,
                   r.attempt_base AS run_attempt_base,
                   \(timerColumnsQualified)
            FROM timer_runs r JOIN timers t ON t.id = r.timer_id
            WHERE r.timer_id = $timer_id AND r.occurrence = $occurrence AND r.attempt = $attempt
              AND ($version::bigint = 0 OR r.version = $version::bigint)
            FOR UPDATE OF r, t
            """)

    /// Successful results, set-wise: finishes the runs still awaiting a result and returns
    /// their timers. Arrays, one element per result; $versions are the
    /// versions the results name (0: not given). Returns each run (for completion events).
    static let succeedRuns = PostgresQuery(
        name: "sundial_succeed_runs",
        sql: """
            UPDATE timer_runs r SET outcome = \(RunOutcome.succeeded.sql), finished_at = f.finished_at
            FROM unnest($ids::uuid[], $occurrences::bigint[], $attempts::int[], $finished_at::timestamptz[],
                        $versions::bigint[])
                AS f(id, occurrence, attempt, finished_at, version)
            WHERE r.timer_id = f.id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND (f.version = 0 OR r.version = f.version)
              AND \(RunOutcome.byKey("r", .dispatched, .dispatching))
            RETURNING r.timer_id, r.tenant, r.occurrence, r.attempt, r.version, r.scheduled_at, r.fired_at,
                      r.dispatched_at, r.finished_at, r.outcome, r.error
            """)

    /// Of the timers $ids (of tenants $tenants, element for element), those that asked for
    /// `succeeded` events, themselves or through their tenant: two scans of partial indexes
    /// that are (nearly) empty when nobody asked.
    static let selectNotifiedTimers = PostgresQuery(
        name: "sundial_select_notified_timers",
        sql: """
            SELECT id FROM timers WHERE notify_success AND id = ANY($ids::uuid[])
            UNION
            SELECT f.id FROM unnest($ids::uuid[], $tenants::text[]) AS f(id, tenant)
            WHERE f.tenant IN (SELECT tenant FROM tenants WHERE notify_success)
            """)

    /// Timers by id (after a batch of results, for their events).
    static let selectTimersByID = PostgresQuery(
        name: "sundial_select_timers_by_id",
        sql: "SELECT \(timerColumns) FROM timers WHERE id = ANY($ids::uuid[])")

    /// One-shot timers among $ids whose job succeeded.
    static let settleSucceeded = PostgresQuery(
        name: "sundial_settle_succeeded",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.succeeded.sql), updated_at = now()
            WHERE id = ANY($ids::uuid[]) AND NOT recurring
            """)

    /// Waiting children of any of the parents $parents, locked for starting them.
    static let selectWaitingChildrenOfAny = PostgresQuery(
        name: "sundial_select_waiting_children_of_any",
        sql: "SELECT \(timerColumns) FROM timers WHERE after_timer_id = ANY($parents::uuid[]) AND state = \(StoredTimerState.waiting.sql) FOR UPDATE")

    /// Finishes one run with $outcome.
    static let finishRun = PostgresQuery(
        name: "sundial_finish_run",
        sql: """
            UPDATE timer_runs SET outcome = $outcome, error = $error, finished_at = $finished_at
            WHERE timer_id = $timer_id AND occurrence = $occurrence AND attempt = $attempt
            RETURNING occurrence, attempt, version, scheduled_at, fired_at, dispatched_at, finished_at, outcome, error
            """)

    /// A one-shot timer's state after a result ($last_error, $next_fire_at: NULL keeps the old).
    static let settleTimer = PostgresQuery(
        name: "sundial_settle_timer",
        sql: """
            UPDATE timers SET state = $state, last_error = coalesce($last_error, last_error),
                              next_fire_at = coalesce($next_fire_at, next_fire_at), updated_at = now()
            WHERE id = $id
            RETURNING \(timerColumns)
            """)

    /// Records the last error of a recurring timer without changing its state.
    static let noteTimerError = PostgresQuery(
        name: "sundial_note_timer_error",
        sql: "UPDATE timers SET last_error = $error, updated_at = now() WHERE id = $id RETURNING \(timerColumns)")

    /// Starts a waiting child at its first fire.
    static let startChild = PostgresQuery(
        name: "sundial_start_child",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.scheduled.sql), next_fire_at = $next_fire_at,
                              next_nominal_at = $next_nominal_at, occurrence = 0, updated_at = now()
            WHERE id = $id
            """)

    /// Cancels a parent's waiting children (the parent was dead-lettered or cancelled).
    static let cancelWaitingChildren = PostgresQuery(
        name: "sundial_cancel_waiting_children",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.cancelled.sql), version = version + 1,
                              last_error = 'parent timer ' || $parent::text || ' ended without success', updated_at = now()
            WHERE after_timer_id = $parent AND state = \(StoredTimerState.waiting.sql)
            """)

    /// A tenant's active timers and their payload bytes of $tenant, for per-tenant limits.
    static let tenantActiveUsage = PostgresQuery(
        name: "sundial_tenant_active_usage",
        sql: """
            SELECT count(*)::bigint AS timers, coalesce(sum(octet_length(payload)), 0)::bigint AS bytes
            FROM timers
            WHERE tenant = $tenant
              AND state IN (\(StoredTimerState.sql(.scheduled, .armed, .dispatched, .retrying, .waiting, .paused)))
            """)

    /// The parent of a new dependent timer, shared-locked so its outcome cannot change while
    /// the child is inserted.
    static let selectParentForChild = PostgresQuery(
        name: "sundial_select_parent_for_child",
        sql: """
            SELECT t.state, EXISTS (
                SELECT 1 FROM timer_runs r WHERE r.timer_id = t.id AND r.outcome = \(RunOutcome.succeeded.sql)
            ) AS has_succeeded
            FROM timers t WHERE t.tenant = $tenant AND t.id = $id FOR SHARE OF t
            """)

    // MARK: redrive

    /// A timer's dead-lettered occurrence to run again: the latest attempt of occurrence
    /// $occurrence (-1: of the latest occurrence with one), when that attempt is `dead`.
    static let selectDeadRun = PostgresQuery(
        name: "sundial_select_dead_run",
        sql: """
            SELECT r.occurrence, r.attempt FROM timer_runs r
            WHERE r.timer_id = $timer_id AND r.outcome = \(RunOutcome.dead.sql)
              AND ($occurrence::bigint < 0 OR r.occurrence = $occurrence::bigint)
              AND NOT EXISTS (SELECT 1 FROM timer_runs later
                              WHERE later.timer_id = r.timer_id AND later.occurrence = r.occurrence
                                AND later.attempt > r.attempt)
            ORDER BY r.occurrence DESC
            LIMIT 1
            """)

    /// Marks a timer changed now (a redrive of a recurring timer, whose state stays).
    static let touchTimer = PostgresQuery(
        name: "sundial_touch_timer", sql: "UPDATE timers SET updated_at = now() WHERE id = $id")

    /// A redriven one-shot timer is armed again, due at $next_fire_at. Bumps the version.
    static let rearmTimer = PostgresQuery(
        name: "sundial_rearm_timer",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.armed.sql), next_fire_at = $next_fire_at,
                              version = version + 1, updated_at = now()
            WHERE id = $id
            RETURNING \(timerColumns)
            """)

    // MARK: update / cancel

    /// Takes a timer's armed (and paused) runs out of play ($outcome: 'cancelled', 'superseded'
    /// or 'paused'); locks them against a concurrent dispatcher claim. Returns the runs touched.
    static let retireArmedRuns = PostgresQuery(
        name: "sundial_retire_armed_runs",
        sql: """
            UPDATE timer_runs
            SET outcome = $outcome,
                finished_at = CASE WHEN $outcome = \(RunOutcome.paused.sql) THEN NULL ELSE now() END
            WHERE timer_id = $timer_id AND outcome IN (\(RunOutcome.sql(.armed, .paused)))
            RETURNING occurrence, attempt
            """)

    /// Moves a timer's armed runs to version $version (an update that keeps the schedule: they are
    /// republished with the new payload on the same subjects, replacing the old schedules).
    static let reversionArmedRuns = PostgresQuery(
        name: "sundial_reversion_armed_runs",
        sql: """
            UPDATE timer_runs SET version = $version, armed_at = now()
            WHERE timer_id = $timer_id AND outcome = \(RunOutcome.armed.sql)
            RETURNING occurrence, attempt, scheduled_at
            """)

    /// Runs a dispatcher has claimed or forwarded and that have no result yet.
    static let inFlightRuns = PostgresQuery(
        name: "sundial_in_flight_runs",
        sql: """
            SELECT count(*) AS n, count(*) FILTER (WHERE outcome = \(RunOutcome.dispatching.sql)) AS claiming,
                   coalesce(max(occurrence), -1) AS max_occurrence
            FROM timer_runs
            WHERE timer_id = $timer_id AND outcome IN (\(RunOutcome.sql(.dispatching, .dispatched)))
            """)

    /// An update's new content; each parameter is the column of its name. Bumps the version.
    static let rewriteTimer = PostgresQuery(
        name: "sundial_rewrite_timer",
        sql: """
            UPDATE timers
            SET state = $state, next_fire_at = $next_fire_at, next_nominal_at = $next_nominal_at,
                occurrence = $occurrence, schedule = $schedule, kind = $kind, payload = $payload,
                priority = $priority, labels = $labels::jsonb, recurring = $recurring, paused_state = $paused_state,
                version = version + 1,
                updated_at = now()
            WHERE id = $id
            RETURNING \(timerColumns)
            """)

    /// Bumps the version.
    static let cancelTimer = PostgresQuery(
        name: "sundial_cancel_timer",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.cancelled.sql), paused_state = NULL, version = version + 1,
                              updated_at = now()
            WHERE id = $id
            RETURNING \(timerColumns)
            """)

    // MARK: pause / resume

    /// Pauses a timer, keeping the state to return to. Bumps the version.
    static let pauseTimer = PostgresQuery(
        name: "sundial_pause_timer",
        sql: """
            UPDATE timers SET state = \(StoredTimerState.paused.sql), paused_state = $paused_state,
                              version = version + 1, updated_at = now()
            WHERE id = $id
            RETURNING \(timerColumns)
            """)

    /// A paused timer's paused runs, locked, in occurrence order.
    static let selectPausedRuns = PostgresQuery(
        name: "sundial_select_paused_runs",
        sql: """
            SELECT occurrence, attempt, scheduled_at FROM timer_runs
            WHERE timer_id = $timer_id AND outcome = \(RunOutcome.paused.sql)
            ORDER BY occurrence, attempt
            FOR UPDATE
            """)

    /// Paused runs armed again at the resumed timer's version $version (arrays: one element per run).
    static let rearmPausedRuns = PostgresQuery(
        name: "sundial_rearm_paused_runs",
        sql: """
            UPDATE timer_runs r SET outcome = \(RunOutcome.armed.sql), version = $version, armed_at = now()
            FROM unnest($occurrences::bigint[], $attempts::int[]) AS f(occurrence, attempt)
            WHERE r.timer_id = $timer_id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND r.outcome = \(RunOutcome.paused.sql)
            """)

    /// Paused runs the misfire policy skips on resume.
    static let skipPausedRuns = PostgresQuery(
        name: "sundial_skip_paused_runs",
        sql: """
            UPDATE timer_runs r SET outcome = \(RunOutcome.skipped.sql), finished_at = now()
            FROM unnest($occurrences::bigint[], $attempts::int[]) AS f(occurrence, attempt)
            WHERE r.timer_id = $timer_id AND r.occurrence = f.occurrence AND r.attempt = f.attempt
              AND r.outcome = \(RunOutcome.paused.sql)
            """)

    /// Resumes a paused timer into $state, counting $skipped occurrences. Bumps the version.
    static let resumeTimer = PostgresQuery(
        name: "sundial_resume_timer",
        sql: """
            UPDATE timers SET state = $state, paused_state = NULL, version = version + 1,
                              occurrences_skipped = occurrences_skipped + $skipped, updated_at = now()
            WHERE id = $id AND state = \(StoredTimerState.paused.sql)
            RETURNING \(timerColumns)
            """)

    /// A retry armed for a paused timer's occurrence (its job was in flight when it was
    /// paused) waits paused too.
    static let pauseRun = PostgresQuery(
        name: "sundial_pause_run",
        sql: """
            UPDATE timer_runs SET outcome = \(RunOutcome.paused.sql)
            WHERE timer_id = $timer_id AND occurrence = $occurrence AND attempt = $attempt
              AND outcome = \(RunOutcome.armed.sql)
            """)

    // MARK: shard leases

    /// Takes up to $limit free or expired shards for owner $owner for $ttl_ms milliseconds.
    static let acquireLeases = PostgresQuery(
        name: "sundial_acquire_leases",
        sql: """
            WITH picked AS (
                SELECT shard, owner AS previous FROM shard_leases
                WHERE owner IS NULL OR expires_at < now()
                ORDER BY shard
                LIMIT $limit
                FOR UPDATE SKIP LOCKED)
            UPDATE shard_leases l
            SET owner = $owner, epoch = l.epoch + 1, expires_at = now() + $ttl_ms * interval '1 millisecond',
                acquired_at = now()
            FROM picked WHERE l.shard = picked.shard
            RETURNING l.shard, l.epoch, l.expires_at, picked.previous
            """)

    /// Armed runs: loaded into JetStream, waiting to fire (counted from the partial index).
    static let countArmedRuns = PostgresQuery(
        name: "sundial_count_armed_runs", sql: "SELECT count(*) AS armed FROM timer_runs WHERE outcome = \(RunOutcome.armed.sql)")

    /// Extends the leases owner $owner still holds at the given epochs ($shards and $epochs: arrays).
    static let renewLeases = PostgresQuery(
        name: "sundial_renew_leases",
        sql: """
            UPDATE shard_leases l
            SET expires_at = now() + $ttl_ms * interval '1 millisecond'
            FROM unnest($shards::int[], $epochs::bigint[]) AS h(shard, epoch)
            WHERE l.shard = h.shard AND l.epoch = h.epoch AND l.owner = $owner AND l.expires_at > now()
            RETURNING l.shard, l.epoch, l.expires_at
            """)

    /// Gives shards back (graceful shutdown, or more than this planner's share) so a peer
    /// takes them at once.
    static let releaseLeases = PostgresQuery(
        name: "sundial_release_leases",
        sql: """
            UPDATE shard_leases SET owner = NULL, expires_at = '-infinity'
            WHERE owner = $owner AND shard = ANY($shards::int[])
            """)

    /// A planner's heartbeat: writes its row, deletes rows silent for 20 lease periods, and
    /// returns the planners heard from within one lease period ($ttl_ms), this one included,
    /// sorted (the order `ShardShare` ranks them in).
    static let heartbeatPlanners = PostgresQuery(
        name: "sundial_heartbeat_planners",
        sql: """
            WITH beat AS (
                INSERT INTO planner_members (owner, heartbeat_at) VALUES ($owner, now())
                ON CONFLICT (owner) DO UPDATE SET heartbeat_at = now()
            ), silent AS (
                DELETE FROM planner_members WHERE heartbeat_at < now() - 20 * $ttl_ms * interval '1 millisecond'
            )
            SELECT owner FROM planner_members
            WHERE heartbeat_at > now() - $ttl_ms * interval '1 millisecond' AND owner <> $owner
            UNION ALL SELECT $owner::text
            ORDER BY 1
            """)

    /// A planner leaving (graceful shutdown): its peers count one fewer at their next heartbeat.
    static let leavePlanners = PostgresQuery(
        name: "sundial_leave_planners", sql: "DELETE FROM planner_members WHERE owner = $owner")

    /// The database's shard count (migration 0017), locked until the transaction ends, and
    /// whether any timer exists (the count may change only while none does).
    static let shardSettings = PostgresQuery(
        name: "sundial_shard_settings",
        sql: """
            SELECT shard_count, EXISTS (SELECT 1 FROM timers) AS holds_timers
            FROM shard_settings FOR UPDATE OF shard_settings
            """)

    /// Sets the shard count of a database without timers: one lease row per shard.
    static let setShardCount = PostgresQuery(
        name: "sundial_set_shard_count",
        sql: """
            WITH settings AS (
                UPDATE shard_settings SET shard_count = $count
            ), dropped AS (
                DELETE FROM shard_leases WHERE shard >= $count
            )
            INSERT INTO shard_leases (shard) SELECT generate_series(0, $count::int - 1)
            ON CONFLICT (shard) DO NOTHING
            """)

    /// Every statement above (the statement test prepares each on a real server).
    static let all: [PostgresQuery] = [
        insertTimer, insertTimerWithRun, insertTimersWithRuns, insertArmedRun, selectByIdempotencyKey, selectTimer,
        selectTimerForUpdate, listTimers, selectRuns, selectDueForLoad, insertArmedRuns, advanceTimers,
        armedFuture, rescueOverdue, inFlightOverdue, noteInFlightSeen, redispatchRuns, claimForDispatch, recordDeferrals, releaseClaims, markDispatched,
        selectRunForResult, succeedRuns, selectNotifiedTimers, selectTimersByID, settleSucceeded, selectWaitingChildrenOfAny, finishRun, settleTimer,
        noteTimerError, startChild, cancelWaitingChildren, tenantActiveUsage, selectParentForChild, selectDeadRun,
        touchTimer, rearmTimer, pauseTimer, selectPausedRuns, rearmPausedRuns, skipPausedRuns, resumeTimer, pauseRun,
        retireArmedRuns, reversionArmedRuns, inFlightRuns, rewriteTimer, cancelTimer, acquireLeases,
        countArmedRuns, renewLeases, releaseLeases, heartbeatPlanners, leavePlanners,
        shardSettings, setShardCount, shardsWithDue,
    ]
}
