#!/usr/bin/env bash
# bench/append_bench.sh: es_append and es_load against plain SQL, with pgbench.
#
#   bench/append_bench.sh                 full run (~8 min on 2 cores)
#   bench/append_bench.sh --quick         smoke test (-d 1 -r 1, ~1 min)
#   bench/append_bench.sh -d 5 -r 5       5 rounds of 5 s runs
#   bench/append_bench.sh --existing      use the server that PGHOST/PGPORT/
#                                         PGUSER/... point at, not a new one
#   bench/append_bench.sh --no-extras     only es_append vs INSERT (4 indexes)
#   bench/append_bench.sh --build         benchmark the repository's HEAD commit,
#                                         built into a private directory
#
# --build exports HEAD (git archive) to a temporary directory, builds it and
# installs it there (make install DESTDIR=...), and points the throwaway
# cluster at it (Debian's extension_destdir and dynamic_library_path), so
# the run measures that one commit even if someone runs make install
# meanwhile; the report names the commit.  Without --build the installed
# extension is measured (make && make install first).
#
# Default: a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (temporary directory, removed at the end) with the settings in PGCONF below,
# printed in the report.  pg_virtualenv turns fsync off unless told otherwise;
# this script turns it back on, or synchronous_commit would measure nothing.
# With --existing the server's own settings apply (also printed); the role
# must be allowed to CREATE DATABASE and CREATE EXTENSION event_sourcing.
# Either way everything happens in a new database, es_bench_<pid>, dropped
# at the end.  The extension must be installed (make && make install).
#
# Part 1, appending.  Settings: events per transaction 1 or 10; 1 or 4
# clients; synchronous_commit on or off.  Variants:
#
#   es_append   bench/es_append_{1,10}.sql  SELECT es_append(stream, NULL, ...)
#   INSERT      bench/insert_{1,10}.sql     plain INSERT of the same rows into
#               bench_insert: LIKE es_events INCLUDING ALL, so the same
#               columns, collations, constraints and 4 indexes (pkey on
#               global_position from a CACHE 1 sequence, unique (stream_id,
#               stream_version), unique event_id, category expression
#               index).  stream_version = position (an INSERT cannot compute
#               versions), event_id = lpad(to_hex(position), 32, '0')::uuid
#               (time-ordered like es_append's UUIDv7), recorded_at = now().
#   INSERT-3    the same without the category index            (extra)
#   PL/pgSQL    bench/plpgsql_{1,10}.sql: pl_append() of bench/setup.sql,
#               advisory lock + max(stream_version) + INSERT   (extra)
#
# Streams: 'bench-' || random(1, 10000); expected version NULL; data
# {"amount": 10, "currency": "EUR"}; batches are one stream's 10 events in one
# call (es_append's jsonb array form; INSERT ... SELECT ... generate_series).
#
# Method.  All runs in one cluster.  Every variant of a setting runs once
# per round, -r N rounds (default 4) of -d SEC pgbench runs (default 3 s, so
# 12 s of measuring per variant and setting); the order is reversed from one
# round to the next (es_append, INSERT, INSERT-3, PL/pgSQL, then backwards),
# so drift and bursts of noise on the machine hit all variants alike (on a
# small VM, single runs of the same variant differ by up to 30-50%; many
# short alternating runs and the median are steadier than one long run).
# The table shows the median of the rounds; every run is listed under "Runs".
# Every run starts from empty tables (extension dropped and re-created,
# baseline tables truncated, sequences restarted) after a CHECKPOINT.  A
# discarded warm-up precedes part 1.  pgbench -n (no vacuum) -M prepared
# (extended protocol, each statement prepared once per connection), -j 1 for
# 1 client and -j 2 for 4.  events/s = tps x events per transaction.  After
# each run the script checks that the table holds exactly (transactions x
# events per transaction) rows, and that no transaction failed.
#
# Part 2, reading one 1,000-event stream ('load-1', stored in 100 batches
# interleaved with 10 other streams' batches, 11,000 events in all, then
# VACUUM ANALYZE), 1 client, synchronous_commit=on, same rounds:
#   SELECT * FROM es_load('load-1')          vs  SELECT * FROM es_events
#                                                WHERE stream_id = 'load-1'
#                                                ORDER BY stream_version
#   SELECT count(e) FROM es_load('load-1') e vs  the same count(s) over the
#                                                SQL query (server-side cost
#                                                only; whole-row count so
#                                                every column is fetched)
#
# The report goes to stdout (Markdown) and, with every pgbench log, to a
# directory printed at the end.  Progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=3
ROUNDS=4
EXISTING=0
BUILD=0
EXTRAS=1

# --no-extras, besides the options of es_bench_args (bench/lib.sh).
es_bench_option() { case $1 in --no-extras) EXTRAS=0 ;; *) return 1 ;; esac; }
es_bench_args "$@"

# Settings of the throwaway cluster (pg_virtualenv -o).
PGCONF=(
  shared_buffers=1GB       # everything stays in memory
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=8GB         # no checkpoint during a run
  min_wal_size=2GB         # WAL segments are recycled, not created, in later runs
  checkpoint_timeout=30min
  autovacuum=off           # tables are emptied before every run; no background noise
)

args=(-d "$DURATION" -r "$ROUNDS")
((EXTRAS)) || args+=(--no-extras)
es_bench_virtualenv "${args[@]}"

# ---------------------------------------------------------------------------
# From here on, libpq's environment points at the server to use.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_bench.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_bench_$$"
PGRUN_DIGITS=2   # run logs NN-NAME.log

qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }

es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

qdb -c "CREATE EXTENSION event_sourcing" -f "$HERE/setup.sql" >/dev/null
CATEGORY_IDX=$(qdb -c "SELECT pg_get_indexdef('bench_insert_category_idx'::regclass)")

# reset: empty every store, restart the sequences, checkpoint.
reset() {
  qdb >/dev/null <<'EOF'
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
TRUNCATE bench_insert, pl_events;
ALTER SEQUENCE bench_insert_seq RESTART;
ALTER SEQUENCE pl_events_seq RESTART;
CHECKPOINT;
EOF
}

# with_category_index yes|no: the baseline with or without its 4th index.
with_category_index() {
  qdb -c "DROP INDEX IF EXISTS bench_insert_category_idx" >/dev/null
  [[ $1 == no ]] || qdb -c "$CATEGORY_IDX" >/dev/null
}

# append_run VARIANT EVENTS CLIENTS SYNC SECONDS: reset, run, check the row
# count; sets EVS (events/s).
append_run() {
  local variant=$1 ev=$2 clients=$3 sync=$4 secs=$5 script table rows
  case $variant in
    es)      script=es_append_$ev.sql table=es_events ;;
    insert)  script=insert_$ev.sql    table=bench_insert ;;
    insert3) script=insert_$ev.sql    table=bench_insert ;;
    plpgsql) script=plpgsql_$ev.sql   table=pl_events ;;
  esac
  reset
  case $variant in
    insert) with_category_index yes ;;
    insert3) with_category_index no ;;
  esac
  pgrun "$variant-$ev-c$clients-sync_$sync" "$script" "$DB" "$clients" "$sync" "$secs"
  rows=$(qdb -c "SELECT count(*) FROM $table")
  if ((rows != TX * ev)); then
    die "$variant: $rows rows stored, expected $TX transactions x $ev events"
  fi
  EVS=$(awk -v t="$TPS" -v e="$ev" 'BEGIN { printf "%.0f", t * e }')
}

# ---------------------------------------------------------------------------
say "es_bench: logs in $LOGDIR"
out "# event_sourcing append/read benchmark"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine)"
out "- server: $(qdb -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine, connecting to ${PGHOST:-the default socket}"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), database $DB"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- server settings: $(qdb -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','fsync','synchronous_commit','wal_sync_method','full_page_writes','wal_level','max_wal_size','min_wal_size','checkpoint_timeout','autovacuum','wal_buffers','jit')")"
out "- pgbench: \`pgbench -n -M prepared -T $DURATION -c C -j J -f bench/<script>\` (J = 1 for 1 client, 2 for 4); synchronous_commit per run with PGOPTIONS='-c synchronous_commit=...'"
out "- $ROUNDS round(s) of one $DURATION s run per variant and setting, the order reversed every round; the tables show the median; every run starts from empty tables after a CHECKPOINT"
out "- 10,000 random streams, expected version NULL, data {\"amount\": 10, \"currency\": \"EUR\"}"
# indexes TABLE: the table's indexes without their names.
indexes() {
  qdb -c "SELECT string_agg(d, '; ' ORDER BY d) FROM (SELECT CASE WHEN indisunique THEN 'unique ' ELSE '' END || regexp_replace(pg_get_indexdef(indexrelid), '^.* USING btree ', '') AS d FROM pg_index WHERE indrelid = '$1'::regclass) i"
}
IDX_ES=$(indexes es_events) IDX_BASE=$(indexes bench_insert)
[[ $IDX_ES == "$IDX_BASE" ]] || die "bench_insert's indexes differ from es_events': $IDX_BASE vs $IDX_ES"
out "- indexes of es_events and of the INSERT baseline (bench_insert, LIKE es_events INCLUDING ALL): $IDX_ES"
out ""

say "warm-up (discarded)"
for v in es insert; do append_run "$v" 10 4 off "$DURATION"; done

say "part 1: appending"
if ((EXTRAS)); then VARIANTS=(es insert insert3 plpgsql); else VARIANTS=(es insert); fi
declare -A NAME=([es]=es_append [insert]=INSERT [insert3]="INSERT, 3 indexes" [plpgsql]=PL/pgSQL)
out "## Appending (events/s; ratio = es_append / INSERT with the same 4 indexes)"
out ""
if ((EXTRAS)); then
  out "| events/tx | clients | synchronous_commit | es_append | INSERT | ratio | INSERT, 3 indexes | ratio | PL/pgSQL store | PL/pgSQL / INSERT |"
  out "|---:|---:|:---|---:|---:|---:|---:|---:|---:|---:|"
else
  out "| events/tx | clients | synchronous_commit | es_append | INSERT | ratio |"
  out "|---:|---:|:---|---:|---:|---:|"
fi

LOW=() RUNS=()
for ev in 1 10; do
  for clients in 1 4; do
    for sync in on off; do
      declare -A ALL=() R=()
      for ((r = 1; r <= ROUNDS; r++)); do
        for v in $(order "$r" "${VARIANTS[@]}"); do
          append_run "$v" "$ev" "$clients" "$sync" "$DURATION"
          ALL[$v]+="$EVS "
        done
      done
      line="- events/tx=$ev, clients=$clients, synchronous_commit=$sync:"
      for v in "${VARIANTS[@]}"; do
        # shellcheck disable=SC2086
        R[$v]=$(median ${ALL[$v]})
        # shellcheck disable=SC2086
        line+=" ${NAME[$v]} $(join ${ALL[$v]});"
      done
      RUNS+=("${line%;}")
      row="| $ev | $clients | $sync | ${R[es]} | ${R[insert]} | $(ratio "${R[es]}" "${R[insert]}") |"
      if ((EXTRAS)); then
        row+=" ${R[insert3]} | $(ratio "${R[es]}" "${R[insert3]}") | ${R[plpgsql]} | $(ratio "${R[plpgsql]}" "${R[insert]}") |"
      fi
      out "$row"
      if below "${R[es]}" "${R[insert]}" 0.8; then
        LOW+=("events/tx=$ev, clients=$clients, synchronous_commit=$sync ($(ratio "${R[es]}" "${R[insert]}"))")
      fi
      unset ALL R
    done
  done
done
out ""
if ((${#LOW[@]})); then
  out "es_append below 0.8 x INSERT: $(join "${LOW[@]}")"
else
  out "es_append is at or above 0.8 x INSERT in every setting."
fi
out ""
out "Runs (events/s of each $DURATION s run, in run order):"
out ""
for r in "${RUNS[@]}"; do out "$r"; done
out ""

# ---------------------------------------------------------------------------
say "part 2: reading"
reset
qdb >/dev/null <<'EOF2'
DO $$
DECLARE
    batch jsonb := (SELECT jsonb_agg(jsonb_build_object(
                        'type', 'Deposited',
                        'data', jsonb_build_object('amount', 10, 'currency', 'EUR')))
                    FROM generate_series(1, 10));
BEGIN
    FOR r IN 1..100 LOOP
        PERFORM es_append('load-1', NULL, batch);
        FOR k IN 1..10 LOOP
            PERFORM es_append('other-' || k, NULL, batch);
        END LOOP;
    END LOOP;
END $$;
VACUUM ANALYZE es_events;
EOF2
[[ $(qdb -c "SELECT count(*) FROM es_load('load-1')") == 1000 ]] || die "load-1 does not have 1000 events"
[[ $(qdb -c "SELECT (SELECT array_agg(e ORDER BY stream_version) FROM es_load('load-1') e) = (SELECT array_agg(e ORDER BY stream_version) FROM es_events e WHERE stream_id = 'load-1')") == t ]] \
  || die "es_load and the SELECT return different rows"

RUNS=()
# read_pair SHORT LABEL ES_SCRIPT SQL_SCRIPT: the rounds; prints a table row.
read_pair() {
  local short=$1 label=$2 es=$3 sql=$4 r f e s
  local -A ALL=()
  for ((r = 1; r <= ROUNDS; r++)); do
    for f in $(order "$r" "$es" "$sql"); do
      pgrun "${f%.sql}" "$f" "$DB" 1 on "$DURATION"
      ALL[$f]+="$(printf '%.0f' "$TPS") "
    done
  done
  # shellcheck disable=SC2086
  e=$(median ${ALL[$es]}) s=$(median ${ALL[$sql]})
  out "| $label | $e | $s | $(ratio "$e" "$s") |"
  # shellcheck disable=SC2086
  RUNS+=("- $short: es_load $(join ${ALL[$es]}); SQL $(join ${ALL[$sql]})")
}

out "## Reading one 1,000-event stream (1 client; reads/s; ratio = es_load / SQL)"
out ""
out "| query | es_load | SQL on es_events | ratio |"
out "|:---|---:|---:|---:|"
read_pair "all rows to the client" "all rows to the client: \`SELECT * FROM es_load('load-1')\` vs \`SELECT * FROM es_events WHERE stream_id = 'load-1' ORDER BY stream_version\`" \
  read_es_load.sql read_select.sql
read_pair "server side only" "server side only: \`SELECT count(e) FROM es_load('load-1') e\` vs \`SELECT count(s) FROM (<same SELECT>) s\`" \
  read_es_load_count.sql read_select_count.sql
out ""
out "Runs (reads/s of each $DURATION s run, in run order):"
out ""
for r in "${RUNS[@]}"; do out "$r"; done
out ""
out "Plan of the SQL query (es_events holds 11,000 events of 11 streams):"
out ""
out '```'
qdb -c "EXPLAIN SELECT * FROM es_events WHERE stream_id = 'load-1' ORDER BY stream_version" \
  | sed 's/  (cost=.*//' | tee -a "$REPORT"
out '```'
out ""
out "Logs: $LOGDIR"
