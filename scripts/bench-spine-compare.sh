#!/usr/bin/env bash
# Same-run before/after of the spine benchmark: two release binaries of `sundial`, run
# alternately (A B B A A B …: the order flips every run) so the machine's noise hits both alike. Each run starts a fresh
# `sundial dev --no-demo` of that binary (its own data folder), runs
# `bench spine` against it, and stops it. Reports land in bench-results/spine-<label>-<n>.json.
#
#   scripts/bench-spine-compare.sh BEFORE_BINARY AFTER_BINARY [RUNS] [extra bench spine options]
#
# FIRST_RUN=N numbers the runs from N (to add runs to an earlier series).
# EXTRA_RUN_PARTITIONS=N adds N empty future day partitions to `timer_runs` before each run of
# a build that partitions it (migrations 0012–0014), so a fresh database has as many partitions as a
# deployment in steady state (retention days + lookahead + legacy + default).
#
# BENCH_CLIENT=PATH drives every run with that build's `bench spine` (the measuring side, e.g.
# one that reports CPU per process) instead of each run's own binary.
# DEV_OPTIONS="--processes" passes options to `sundial dev` (only to builds that have them).
#
# A binary needs its `sundial_SundialStore.resources` folder beside it (the migrations).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1
after=$2
runs=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
extra=("$@")
port=19464

run_one() {
    local binary=$1 label=$2 n=$3
    local data
    data=$(mktemp -d /tmp/sundial-spine-XXXXXX)
    chmod 755 "$data"  # Postgres runs as the postgres user
    # shellcheck disable=SC2086 # DEV_OPTIONS is a list of options
    "$binary" dev --no-demo --data-dir "$data" --metrics-port "$port" --log-level warning ${DEV_OPTIONS:-} > "$data/dev.log" 2>&1 &
    local dev=$!
    # Ready when /readyz answers 200 (at most 120 s).
    for _ in $(seq 1 240); do
        if curl -fsS "http://127.0.0.1:$port/readyz" > /dev/null 2>&1; then break; fi
        sleep 0.5
    done
    if (( ${EXTRA_RUN_PARTITIONS:-0} > 0 )); then add_partitions "$data/dev.env" "$EXTRA_RUN_PARTITIONS"; fi
    SUNDIAL_DEV_ENV="$data/dev.env" "${BENCH_CLIENT:-$binary}" bench spine --count 60000 --rate 1000 --due-min 5s --due-max 65s \
        --json "bench-results/spine-$label-$n.json" "${extra[@]}" | grep -v '^  *[0-9]' | tail -n 16
    kill -INT "$dev"
    wait "$dev" || true
    rm -rf "$data"
}

# Day partitions 10 … 10+N days ahead (the planners create today … +3), if timer_runs is partitioned.
add_partitions() {
    local url
    url=$(sed -n 's/^SUNDIAL_POSTGRES_URL=//p' "$1")
    psql "$url" -q -v ON_ERROR_STOP=1 -c "SET search_path TO sundial" -c "
        DO \$\$
        DECLARE d int; lo timestamptz; l uuid; h uuid; hex text;
        BEGIN
          IF (SELECT relkind FROM pg_class WHERE oid = 'timer_runs'::regclass) <> 'p' THEN RETURN; END IF;
          FOR d IN 10..(9 + $2) LOOP
            lo := (date_trunc('day', now() AT TIME ZONE 'UTC') + make_interval(days => d)) AT TIME ZONE 'UTC';
            hex := lpad(to_hex(floor(extract(epoch FROM lo) * 1000)::bigint), 12, '0');
            l := (substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-0000-0000-000000000000')::uuid;
            hex := lpad(to_hex(floor(extract(epoch FROM lo + interval '1 day') * 1000)::bigint), 12, '0');
            h := (substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-0000-0000-000000000000')::uuid;
            EXECUTE format('CREATE TABLE timer_runs_p%s PARTITION OF timer_runs FOR VALUES FROM (%L) TO (%L)',
                           to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD'), l, h);
          END LOOP;
        END \$\$;"
}

first=${FIRST_RUN:-1}
for n in $(seq "$first" $((first + runs - 1))); do
    if (( n % 2 == 1 )); then
        echo "== run $n: before ($before)"; run_one "$before" before "$n"
        echo "== run $n: after ($after)"; run_one "$after" after "$n"
    else
        echo "== run $n: after ($after)"; run_one "$after" after "$n"
        echo "== run $n: before ($before)"; run_one "$before" before "$n"
    fi
done
