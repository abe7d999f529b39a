#!/usr/bin/env bash
# bench/scale_bench.sh: the event store at 0, 1M and 10M stored events
# (issue 14): appends, catch-up, stream loads and bytes per event, each
# against plain SQL on an equal table, with pgbench.
#
#   bench/scale_bench.sh --build            sizes 0, 1M, 10M (about 1 h on 2 cores)
#   bench/scale_bench.sh --build --quick    smoke test: sizes 0, 200k, -d 1 -r 1
#   SIZES="0 1000000" bench/scale_bench.sh  other sizes (0, or multiples of
#                                           10,000 from 100,000; ascending)
#   HEAD_CACHE_SIZE=0 bench/scale_bench.sh  event_sourcing.head_cache_size
#                                           (default 65536; 0: no head cache)
#   SHARED_BUFFERS=2GB bench/scale_bench.sh the throwaway cluster's
#                                           shared_buffers (default 512MB, so
#                                           that 10M events do not fit)
#   SYNC=on bench/scale_bench.sh            synchronous_commit of the appends
#                                           (default off: the CPU and buffer
#                                           cost, not the WAL flush)
#   CATCHUP_ROUNDS=5 bench/scale_bench.sh   rounds of whole-log catch-up
#                                           passes (default 3; --quick 1)
#   bench/scale_bench.sh -d 5 -r 6          6 rounds of 5 s runs (default -d 3 -r 4)
#   bench/scale_bench.sh --existing         the server libpq's environment
#                                           points at (a new database in it)
#   bench/scale_bench.sh --build            measure the repository's HEAD
#                                           commit, built into a private directory
#
# Default: a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (bench/lib.sh) with the settings of PGCONF below, printed in the report;
# everything happens in a new database es_scale_<pid>, dropped at the end.
# Must run as a superuser (the pre-fill inserts into es_events directly).
#
# For each size N, in ascending order, from scratch (extension dropped and
# re-created, baseline tables truncated):
#
# 1. Pre-fill (bench/scale_fill.sql, chunks of 1,000,000): N identical rows
#    in es_events, in bench_insert (LIKE es_events INCLUDING ALL: the same 4
#    indexes; bench/setup.sql) and in pl_events (the PL/pgSQL store of
#    bench/setup.sql), inserted set-based in position order with the indexes
#    in place: streams 'bench-1' .. 'bench-10000' round-robin (contiguous
#    versions), plus 'load-100' and 'load-10000' spread evenly over the log;
#    the three sequences set to N; then VACUUM ANALYZE and CHECKPOINT.
#    The script checks positions 1..N and contiguous versions per stream.
#    Bytes per event = pg_total_relation_size / rows (heap + indexes + TOAST),
#    before any append.
# 2. Reads (N > 0), 1 client, -M prepared, every row to the client:
#    catch-up of the whole log, es_read_all(:last, 1000) vs the keyset
#    SELECT ... WHERE global_position > :last ORDER BY global_position LIMIT
#    1000 (bench/catchup_*.sql, as bench/catchup_bench.sh; -t N/1,000 pages),
#    CATCHUP_ROUNDS rounds of one pass each; then es_load('load-100') and
#    es_load('load-10000') vs SELECT * FROM es_events WHERE stream_id = ...
#    ORDER BY stream_version (bench/scale_es_load.sql, scale_select.sql),
#    -r rounds of -d s runs.
# 3. Appends, 4 clients (-j 2), one event per transaction, synchronous_commit
#    SYNC: es_append (bench/es_append_1.sql) vs plain INSERT into bench_insert
#    (bench/insert_1.sql) vs pl_append (bench/plpgsql_1.sql), random streams
#    'bench-1' .. 'bench-10000' (the pre-filled streams), a discarded warm-up
#    run of each, then -r rounds of one -d s run of each.  The appended rows
#    stay (the store grows by every run; the report gives each table's size
#    range); no checkpoint in between (the report checks none happened).
#
# Every comparison runs its variants once per round, the order reversed from
# one round to the next; the tables show the median of the rounds, every run
# is listed.  Ratios: es_append / INSERT, PL/pgSQL / INSERT at each size, and
# each variant's size-N / size-0 (the sizes run one after the other, so
# drift of the machine between them is not cancelled).
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
QUICK=0
for a in "$@"; do [[ $a != --quick ]] || QUICK=1; done
es_bench_args "$@"
if ((QUICK)); then
  SIZES=${SIZES:-0 200000}
  CATCHUP_ROUNDS=${CATCHUP_ROUNDS:-1}
fi
SIZES=${SIZES:-0 1000000 10000000}
CATCHUP_ROUNDS=${CATCHUP_ROUNDS:-3}
SYNC=${SYNC:-off}
SHARED_BUFFERS=${SHARED_BUFFERS:-512MB}
HEAD_CACHE_SIZE=${HEAD_CACHE_SIZE:-65536}
[[ $HEAD_CACHE_SIZE =~ ^[0-9]+$ ]] || { echo "HEAD_CACHE_SIZE: a number of entries" >&2; exit 2; }
prev=-1
for n in $SIZES; do
  [[ $n == 0 || ($n =~ ^[1-9][0-9]*0000$ && $n -ge 100000) ]] || { echo "SIZES: 0 or multiples of 10,000 from 100,000" >&2; exit 2; }
  ((n > prev)) || { echo "SIZES: ascending, no repeats" >&2; exit 2; }
  prev=$n
done
[[ $CATCHUP_ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "CATCHUP_ROUNDS: a positive integer" >&2; exit 2; }
[[ $SYNC == on || $SYNC == off ]] || { echo "SYNC: on or off" >&2; exit 2; }

# Settings of the throwaway cluster (pg_virtualenv -o).
PGCONF=(
  "shared_buffers=$SHARED_BUFFERS"  # 512MB: 10M events (about 3 GB) do not fit
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=32GB        # no checkpoint during the measured runs
  min_wal_size=2GB
  checkpoint_timeout=1h
  autovacuum=off           # no background noise; the script vacuums after the pre-fill
  maintenance_work_mem=256MB
  # the build's library (found on dynamic_library_path), preloaded as in
  # production: the shared cache of stream heads (head_cache.c) and the
  # positions' shared slots exist only then
  shared_preload_libraries=event_sourcing
  "event_sourcing.head_cache_size=$HEAD_CACHE_SIZE"
)

SIZES="$SIZES" CATCHUP_ROUNDS="$CATCHUP_ROUNDS" SYNC="$SYNC" SHARED_BUFFERS="$SHARED_BUFFERS" \
  HEAD_CACHE_SIZE="$HEAD_CACHE_SIZE" es_bench_virtualenv -d "$DURATION" -r "$ROUNDS"

# ---------------------------------------------------------------------------
# From here on, libpq's environment points at the server to use.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_scale.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_scale_$$"
START=$SECONDS
CLIENTS=4

qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }

es_bench_require_extension
[[ $(q -d postgres -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == t ]] \
  || die "the pre-fill inserts into es_events directly: run as a superuser"
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
qdb -c "CREATE EXTENSION event_sourcing" -f "$HERE/setup.sql" >/dev/null

# reset: empty every store, restart the sequences.
reset() {
  qdb >/dev/null <<'EOF'
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
TRUNCATE bench_insert, pl_events;
ALTER SEQUENCE bench_insert_seq RESTART;
ALTER SEQUENCE pl_events_seq RESTART;
EOF
}

# fill N: the pre-fill of part 1, checked; sets FILL_SECS.
fill() {
  local n=$1 lo hi t0 ts
  local chunk=1000000
  ts=$(qdb -c "SELECT now() - interval '1 hour' - $n * interval '1 millisecond'")
  t0=$SECONDS
  for ((lo = 1; lo <= n; lo += chunk)); do
    hi=$((lo + chunk - 1)); ((hi <= n)) || hi=$n
    say "  pre-fill $lo..$hi of $n"
    qdb -v n="$n" -v lo="$lo" -v hi="$hi" -v t0="$ts" -f "$HERE/scale_fill.sql" >/dev/null
  done
  if ((n > 0)); then
    qdb -c "SELECT setval('es_events_global_position_seq', $n), setval('bench_insert_seq', $n), setval('pl_events_seq', $n)" >/dev/null
  fi
  say "  VACUUM ANALYZE, CHECKPOINT"
  qdb -c "VACUUM ANALYZE es_events" -c "VACUUM ANALYZE bench_insert" -c "VACUUM ANALYZE pl_events" -c "CHECKPOINT" >/dev/null
  FILL_SECS=$((SECONDS - t0))
  local t
  for t in es_events bench_insert pl_events; do
    [[ $(qdb -c "SELECT count(*) = $n AND coalesce(min(global_position), 1) = 1 AND coalesce(max(global_position), 0) = $n FROM $t") == t ]] \
      || die "$t: the positions are not exactly 1..$n"
  done
  [[ $(qdb -c "SELECT coalesce(bool_and(c = m), true) FROM (SELECT count(*) c, max(stream_version) m FROM es_events GROUP BY stream_id) s") == t ]] \
    || die "es_events: versions not contiguous"
  if ((n > 0)); then
    [[ $(qdb -c "SELECT (SELECT count(*) FROM es_load('load-100')) = 100 AND (SELECT count(*) FROM es_load('load-10000')) = 10000 AND (SELECT count(DISTINCT stream_id) FROM es_events) = 10002") == t ]] \
      || die "es_events: the load streams or the 10,000 bench streams are not as planned"
  fi
}

# bytes TABLE: total bytes per row (heap + indexes + TOAST), heap bytes per row.
bytes() {
  qdb -c "SELECT CASE WHEN c = 0 THEN '- | -' ELSE round(pg_total_relation_size('$1') / c::numeric) || ' | ' || round(pg_table_size('$1') / c::numeric) END
          FROM (SELECT count(*) c FROM $1) s"
}

# pg_run NAME ARG...: one pgbench run (numbered), its log kept; sets TPS, TX, LAT.
pg_run() {
  local name=$1 log
  shift
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-%s.log' "$LOGDIR" "$RUN" "$name")
  say "  run $RUN: $name"
  es_bench_pgbench "$log" "$@" "$DB"
  [[ -n $TPS && -n $TX ]] || die "cannot parse $log"
  LAT=$(sed -nE 's/^latency average = ([0-9.]+) ms$/\1/p' "$log")
}

# top TABLE: its last position (positions are dense: = its rows).
top() { qdb -c "SELECT coalesce(max(global_position), 0) FROM $1"; }
checkpoints() { qdb -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }

declare -A SCRIPT=([es]=es_append_1.sql [insert]=insert_1.sql [plpgsql]=plpgsql_1.sql)
declare -A TABLE=([es]=es_events [insert]=bench_insert [plpgsql]=pl_events)
declare -A APPEND=()     # APPEND[size,variant] = median events/s
APPEND_ROWS=() READ_ROWS=() LOAD_ROWS=() BYTES_ROWS=() RUNS=() NOTES=()

# ---------------------------------------------------------------------------
say "es_scale: logs in $LOGDIR"
out "# event_sourcing at scale: appends, catch-up, stream loads and bytes per event by store size"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(qdb -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine, connecting to ${PGHOST:-the default socket}"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), database $DB"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- server settings: $(qdb -c "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','fsync','synchronous_commit','wal_sync_method','full_page_writes','wal_level','max_wal_size','checkpoint_timeout','autovacuum','jit')")"
out "- command: \`$(printf '%q ' SIZES="$SIZES" HEAD_CACHE_SIZE="$HEAD_CACHE_SIZE" SHARED_BUFFERS="$SHARED_BUFFERS" SYNC="$SYNC" CATCHUP_ROUNDS="$CATCHUP_ROUNDS" bench/scale_bench.sh -d "$DURATION" -r "$ROUNDS")$([[ -z ${ES_BENCH_BUILT:-} ]] || echo '--build')\`"
out "- sizes: $SIZES; pre-fill: bench/scale_fill.sql (10,000 streams round-robin + 'load-100' and 'load-10000' spread over the log), identical rows in es_events, bench_insert and pl_events, then VACUUM ANALYZE and CHECKPOINT"
out "- appends: $CLIENTS clients (-j 2), 1 event/tx, synchronous_commit=$SYNC, \`pgbench -n -M prepared -T $DURATION\`, a discarded warm-up run of each, then $ROUNDS round(s) of es_append / INSERT / PL/pgSQL, order reversed every round; median"
out "- reads: 1 client; catch-up: $CATCHUP_ROUNDS round(s) of one whole-log pass each (\`-t N/1000 -D last=0\`); es_load: $ROUNDS round(s) of ${DURATION} s runs; median"
out ""

for N in $SIZES; do
  say "size $N"
  reset
  fill "$N"
  BYTES_ROWS+=("| $N | $(bytes es_events) | $(bytes bench_insert) | $(bytes pl_events) | $(qdb -c "SELECT pg_size_pretty(pg_total_relation_size('es_events'))") | $FILL_SECS |")

  # -- reads -----------------------------------------------------------------
  if ((N > 0)); then
    PAGES=$((N / 1000))
    declare -A ALL=() ALAT=()
    for ((r = 1; r <= CATCHUP_ROUNDS; r++)); do
      for f in $(order "$r" catchup_es_read_all.sql catchup_select.sql); do
        pg_run "n$N-${f%.sql}" -c 1 -j 1 -t "$PAGES" -D last=0 -f "$HERE/$f"
        [[ $TX == "$PAGES" ]] || die "$f: $TX pages read, expected $PAGES"
        ALL[$f]+="$(awk -v t="$TPS" 'BEGIN { printf "%.0f", t * 1000 }') " ALAT[$f]+="$LAT "
      done
    done
    # shellcheck disable=SC2086
    E=$(median ${ALL[catchup_es_read_all.sql]}) S=$(median ${ALL[catchup_select.sql]})
    # shellcheck disable=SC2086
    READ_ROWS+=("| $N | $E | $S | **$(ratio "$E" "$S")** | $(median_fmt %.3f ${ALAT[catchup_es_read_all.sql]}) | $(median_fmt %.3f ${ALAT[catchup_select.sql]}) |")
    # shellcheck disable=SC2086
    RUNS+=("- size $N, catch-up (events/s): es_read_all $(join ${ALL[catchup_es_read_all.sql]}); keyset SELECT $(join ${ALL[catchup_select.sql]})")
    unset ALL ALAT

    for stream in load-100 load-10000; do
      declare -A ALL=()
      for ((r = 1; r <= ROUNDS; r++)); do
        for f in $(order "$r" scale_es_load.sql scale_select.sql); do
          pg_run "n$N-${f%.sql}-$stream" -c 1 -j 1 -T "$DURATION" -D stream="$stream" -f "$HERE/$f"
          ALL[$f]+="$(printf '%.1f' "$TPS") "
        done
      done
      # shellcheck disable=SC2086
      E=$(median_fmt %.1f ${ALL[scale_es_load.sql]}) S=$(median_fmt %.1f ${ALL[scale_select.sql]})
      ev=${stream#load-}
      LOAD_ROWS+=("| $N | $ev | $E | $S | **$(ratio "$E" "$S")** | $(awk -v t="$E" -v e="$ev" 'BEGIN { printf "%.0f", t * e }') | $(awk -v t="$S" -v e="$ev" 'BEGIN { printf "%.0f", t * e }') |")
      # shellcheck disable=SC2086
      RUNS+=("- size $N, $stream (loads/s): es_load $(join ${ALL[scale_es_load.sql]}); SELECT $(join ${ALL[scale_select.sql]})")
      unset ALL
    done
  fi

  # -- appends ---------------------------------------------------------------
  declare -A ALL=() FROM=() TO=()
  for v in es insert plpgsql; do FROM[$v]=$(top "${TABLE[$v]}"); done
  say "  append warm-up (discarded)"
  for v in es insert plpgsql; do
    PGOPTIONS="-c synchronous_commit=$SYNC" pg_run "n$N-warmup-$v" -c "$CLIENTS" -j 2 -T "$DURATION" -f "$HERE/${SCRIPT[$v]}"
  done
  CK0=$(checkpoints)
  for ((r = 1; r <= ROUNDS; r++)); do
    for v in $(order "$r" es insert plpgsql); do
      before=$(top "${TABLE[$v]}")
      PGOPTIONS="-c synchronous_commit=$SYNC" pg_run "n$N-append-$v" -c "$CLIENTS" -j 2 -T "$DURATION" -f "$HERE/${SCRIPT[$v]}"
      after=$(top "${TABLE[$v]}")
      ((after - before == TX)) || die "$v: $((after - before)) rows stored, expected $TX"
      ALL[$v]+="$(printf '%.0f' "$TPS") "
    done
  done
  CK1=$(checkpoints)
  ((CK1 == CK0)) || NOTES+=("size $N: $((CK1 - CK0)) checkpoint(s) during the measured appends")
  for v in es insert plpgsql; do
    TO[$v]=$(top "${TABLE[$v]}")
    # shellcheck disable=SC2086
    APPEND[$N,$v]=$(median ${ALL[$v]})
  done
  APPEND_ROWS+=("| $N | ${APPEND[$N,es]} | ${APPEND[$N,insert]} | **$(ratio "${APPEND[$N,es]}" "${APPEND[$N,insert]}")** | ${APPEND[$N,plpgsql]} | $(ratio "${APPEND[$N,plpgsql]}" "${APPEND[$N,insert]}") | $(ratio "${APPEND[$N,es]}" "${APPEND[$N,plpgsql]}") | ${FROM[es]}..${TO[es]}, ${FROM[insert]}..${TO[insert]}, ${FROM[plpgsql]}..${TO[plpgsql]} |")
  # shellcheck disable=SC2086
  RUNS+=("- size $N, appends (events/s): es_append $(join ${ALL[es]}); INSERT $(join ${ALL[insert]}); PL/pgSQL $(join ${ALL[plpgsql]})")
  unset ALL FROM TO
done

# ---------------------------------------------------------------------------
out "## Appending ($CLIENTS clients, 1 event/tx, synchronous_commit=$SYNC; events/s)"
out ""
out "| stored events | es_append | INSERT | es_append / INSERT | PL/pgSQL | PL/pgSQL / INSERT | es_append / PL/pgSQL | rows during the runs (es, INSERT, PL/pgSQL) |"
out "|---:|---:|---:|---:|---:|---:|---:|:---|"
for l in "${APPEND_ROWS[@]}"; do out "$l"; done
out ""
read -r FIRST _ <<<"$SIZES"
out "Each variant at size N / its own speed at size $FIRST:"
out ""
out "| stored events | es_append | INSERT | PL/pgSQL |"
out "|---:|---:|---:|---:|"
for N in $SIZES; do
  out "| $N | $(ratio "${APPEND[$N,es]}" "${APPEND[$FIRST,es]}") | $(ratio "${APPEND[$N,insert]}" "${APPEND[$FIRST,insert]}") | $(ratio "${APPEND[$N,plpgsql]}" "${APPEND[$FIRST,plpgsql]}") |"
done
out ""
if ((${#READ_ROWS[@]})); then
  out "## Catch-up of the whole log, 1,000 events a page to the client (1 client)"
  out ""
  out "| stored events | es_read_all (events/s) | keyset SELECT (events/s) | es_read_all / SELECT | ms per page: es_read_all | SELECT |"
  out "|---:|---:|---:|---:|---:|---:|"
  for l in "${READ_ROWS[@]}"; do out "$l"; done
  out ""
  out "## Loading one stream, every row to the client (1 client)"
  out ""
  out "| stored events | stream events | es_load (loads/s) | SELECT ... ORDER BY stream_version (loads/s) | es_load / SELECT | es_load events/s | SELECT events/s |"
  out "|---:|---:|---:|---:|---:|---:|---:|"
  for l in "${LOAD_ROWS[@]}"; do out "$l"; done
  out ""
fi
out "## Bytes per event after the pre-fill (total = heap + TOAST + 4 indexes; heap = heap + TOAST)"
out ""
out "| stored events | es_events total | heap | bench_insert total | heap | pl_events total | heap | es_events size | pre-fill + VACUUM (s) |"
out "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for l in "${BYTES_ROWS[@]}"; do out "$l"; done
out ""
for l in "${NOTES[@]}"; do out "Note: $l"; done
((ROUNDS >= 3 && CATCHUP_ROUNDS >= 2)) || out "(only $ROUNDS round(s) / $CATCHUP_ROUNDS catch-up round(s): a smoke test, not a measurement)"
out ""
out "Runs (in run order):"
out ""
for l in "${RUNS[@]}"; do out "$l"; done
out ""
if ((${#READ_ROWS[@]})); then
  out "Plans of the SELECTs at the last size (the plan pgbench -M prepared runs: EXPLAIN EXECUTE after 6 executions of the prepared statement):"
  out ""
  out '```'
  for stream in load-100 load-10000; do
    echo "stream $stream:" | tee -a "$REPORT"
    { echo "PREPARE s(text) AS SELECT * FROM es_events WHERE stream_id = \$1 ORDER BY stream_version;"
      for _ in 1 2 3 4 5 6; do echo "EXECUTE s('$stream');"; done
      echo "\\o"
      echo "EXPLAIN EXECUTE s('$stream');"; } \
      | qdb -o /dev/null | sed 's/  (cost=.*//' | tee -a "$REPORT"
  done
  qdb -c "EXPLAIN SELECT * FROM es_events WHERE global_position > $((N / 2)) ORDER BY global_position LIMIT 1000" | sed 's/  (cost=.*//' | tee -a "$REPORT"
  out '```'
  out ""
fi
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
