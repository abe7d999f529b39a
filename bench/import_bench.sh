#!/usr/bin/env bash
# bench/import_bench.sh: es_import (bulk import of historical events, issue
# 14) against INSERT ... SELECT of the same rows into an equal plain table.
#
#   bench/import_bench.sh --build           1,000,000 events, 3 rounds
#   EVENTS=10000000 bench/import_bench.sh   another size (a multiple of 10)
#   STREAM_EVENTS=100 bench/import_bench.sh events per stream (default 10)
#   bench/import_bench.sh -r 5              rounds (default 3)
#   bench/import_bench.sh --quick           100,000 events, 1 round
#   bench/import_bench.sh --existing        the server libpq's environment
#                                           points at (a new database in it)
#   bench/import_bench.sh --build           measure the repository's HEAD
#                                           commit, built into a private directory
#
# Default: a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (bench/lib.sh) with the settings of PGCONF below; everything happens in a
# new database es_import_<pid>, dropped at the end.
#
# The source: table legacy, EVENTS rows with es_events' column names
# (stream_id, stream_version, event_type, data, metadata, event_id,
# recorded_at), EVENTS / STREAM_EVENTS streams 'order-<n>' whose events
# interleave in time (stream s's version v at t0 + (v * streams + s) ms), in
# random physical order.  Every round runs, from an empty store each time
# (extension dropped and re-created, baseline truncated, CHECKPOINT before
# each variant), in an order reversed every round, each as one statement
# timed by the client:
#   - es_import:        SELECT es_import('legacy')
#   - INSERT ... SELECT: INSERT INTO bench_insert SELECT nextval(...), ...
#                        FROM legacy, unordered (the issue's baseline)
#   - INSERT ... SELECT ORDER BY: the same in es_import's order (recorded_at,
#                        stream_id COLLATE "C", stream_version), like for like
#   - es_append batches: es_append(stream_id, 0, jsonb_agg(...)) per stream
#                        (GROUP BY stream_id), committing every 1,000 streams
#                        (one transaction for all would need a lock per
#                        stream: "out of shared memory" at 100,000 streams),
#                        what a migration without es_import does (positions
#                        per stream, not in time)
# bench_insert is LIKE es_events INCLUDING ALL (bench/setup.sql): the same
# four indexes.  Results: median events/s and the ratios to INSERT ... SELECT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=
ROUNDS=3
EXISTING=0
BUILD=0
QUICK=0
for a in "$@"; do [[ $a != --quick ]] || QUICK=1; done
es_bench_args "$@"
((QUICK == 0)) || { EVENTS=${EVENTS:-100000}; ROUNDS=1; }
EVENTS=${EVENTS:-1000000}
STREAM_EVENTS=${STREAM_EVENTS:-10}
[[ $EVENTS =~ ^[1-9][0-9]*$ && $STREAM_EVENTS =~ ^[1-9][0-9]*$ ]] || { echo "EVENTS, STREAM_EVENTS: positive integers" >&2; exit 2; }
((EVENTS % STREAM_EVENTS == 0)) || { echo "EVENTS must be a multiple of STREAM_EVENTS" >&2; exit 2; }

PGCONF=(
  shared_buffers=512MB
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=32GB        # no checkpoint during a measured statement
  checkpoint_timeout=1h
  autovacuum=off
  maintenance_work_mem=256MB
  work_mem=64MB
)

EVENTS="$EVENTS" STREAM_EVENTS="$STREAM_EVENTS" es_bench_virtualenv -r "$ROUNDS"

# ---------------------------------------------------------------------------
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_import.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_import_$$"
STREAMS=$((EVENTS / STREAM_EVENTS))

qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }

es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
qdb -c "CREATE EXTENSION event_sourcing" -f "$HERE/setup.sql" >/dev/null

say "es_import: source of $EVENTS events in $STREAMS streams; logs in $LOGDIR"
qdb >/dev/null <<EOF
CREATE TABLE legacy AS
SELECT 'order-' || s AS stream_id, v::bigint AS stream_version,
       CASE WHEN v = 1 THEN 'OrderPlaced' WHEN v % 3 = 0 THEN 'ItemAdded' ELSE 'PriceChanged' END AS event_type,
       jsonb_build_object('order', s, 'n', v, 'amount', (s * v) % 1000, 'currency', 'EUR') AS data,
       jsonb_build_object('source', 'legacy') AS metadata,
       gen_random_uuid() AS event_id,
       timestamptz '2020-01-01' + (v * $STREAMS + s) * interval '1 millisecond' AS recorded_at
  FROM generate_series(1, $STREAMS) s, generate_series(1, $STREAM_EVENTS) v
 ORDER BY random();
VACUUM ANALYZE legacy;
EOF

declare -A VARIANT=(
  [es_import]="SELECT es_import('legacy')"
  [insert_select]="INSERT INTO bench_insert SELECT nextval('bench_insert_seq'), stream_id, stream_version, event_id, event_type, data, metadata, recorded_at, 1 FROM legacy"
  [insert_select_ordered]="INSERT INTO bench_insert SELECT nextval('bench_insert_seq'), stream_id, stream_version, event_id, event_type, data, metadata, recorded_at, 1 FROM (SELECT * FROM legacy ORDER BY recorded_at, stream_id COLLATE \"C\", stream_version) s"
  [es_append_batches]="DO \$\$ DECLARE r record; i int := 0; BEGIN FOR r IN SELECT stream_id, jsonb_agg(jsonb_build_object('type', event_type, 'data', data, 'metadata', metadata, 'id', event_id) ORDER BY stream_version) b FROM legacy GROUP BY stream_id LOOP PERFORM es_append(r.stream_id, 0, r.b); i := i + 1; IF i % 1000 = 0 THEN COMMIT; END IF; END LOOP; END \$\$"
)
NAMES=(es_import insert_select insert_select_ordered es_append_batches)
declare -A EPS=()

# reset: empty both stores, restart the sequences, flush.
reset() {
  qdb >/dev/null <<'EOF'
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
TRUNCATE bench_insert;
ALTER SEQUENCE bench_insert_seq RESTART;
CHECKPOINT;
EOF
}

# check NAME: the variant stored exactly the source.
check() {
  local t=es_events
  [[ $1 == insert_* ]] && t=bench_insert
  [[ $(qdb -c "SELECT count(*) = $EVENTS AND count(DISTINCT stream_id) = $STREAMS AND max(stream_version) = $STREAM_EVENTS FROM $t") == t ]] \
    || die "$1: the store does not hold the source"
}

for ((r = 1; r <= ROUNDS; r++)); do
  for name in $(order "$r" "${NAMES[@]}"); do
    reset
    say "  round $r: $name"
    t0=$(date +%s.%N)
    qdb -c "${VARIANT[$name]}" >"$LOGDIR/$r-$name.log"
    t1=$(date +%s.%N)
    check "$name"
    EPS[$name]+="$(awk -v n="$EVENTS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }') "
  done
done

out "# es_import vs INSERT ... SELECT"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
out "- server: $(qdb -c 'SELECT version()')"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), database $DB"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- command: \`$(printf '%q ' EVENTS="$EVENTS" STREAM_EVENTS="$STREAM_EVENTS" bench/import_bench.sh -r "$ROUNDS")$([[ -z ${ES_BENCH_BUILT:-} ]] || echo '--build')\`"
out "- source: $EVENTS events, $STREAMS streams of $STREAM_EVENTS, interleaved in time, random physical order; each variant from an empty store, $ROUNDS round(s), order reversed every round; median"
out ""
out "| variant | events/s (median) | / INSERT ... SELECT | / INSERT ... SELECT ORDER BY | every round |"
out "|---|---:|---:|---:|---|"
# shellcheck disable=SC2086
BASE=$(median ${EPS[insert_select]})
# shellcheck disable=SC2086
BASE_O=$(median ${EPS[insert_select_ordered]})
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  m=$(median ${EPS[$name]})
  # shellcheck disable=SC2086
  out "| $name | $m | **$(ratio "$m" "$BASE")** | $(ratio "$m" "$BASE_O") | $(join ${EPS[$name]}) |"
done
out ""
say "report: $REPORT"
