#!/usr/bin/env bash
# bench/catchup_bench.sh: catch-up throughput, es_read_all paged 1,000 at a
# time to the client vs a keyset-paged SELECT of the same rows (issue 11).
#
#   bench/catchup_bench.sh                  1,000,000 events, 9 rounds (~3 min)
#   bench/catchup_bench.sh --quick          100,000 events, 1 round (smoke test)
#   MODES=preload bench/catchup_bench.sh    only with the library preloaded
#                                           (default MODES="plain preload")
#   bench/catchup_bench.sh -n 500000 -r 3   other sizes and rounds
#   bench/catchup_bench.sh --existing       the server libpq's environment
#                                           points at (a new database in it)
#   bench/catchup_bench.sh --build          measure the repository's HEAD
#                                           commit, built into a private directory
#   AGAINST=subscription bench/catchup_bench.sh
#                                           a subscription consumer against
#                                           es_read_all instead (issue 13; what
#                                           bench/subscription_bench.sh runs)
#
# Default: a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (bench/lib.sh) with the settings of PGCONF below; everything happens in a
# new database es_catchup_<pid>, dropped at the end.  Modes (MODES), measured
# one after the other on the same data, the cluster restarted in between:
# "plain" = library not preloaded (es_read_all's bound then looks for the
# private locks of in-flight appenders), "preload" = shared_preload_libraries
# = '$libdir/event_sourcing' (the bound reads the shared-memory slots).
# There is no appender during the reads.  With --existing, only the server's
# own mode (no restart).
#
# Data: N events (-n, default 1,000,000; a multiple of 1,000) appended by
# es_append in batches of 1,000 to 100 streams in turn, data {"amount": k,
# "currency": "EUR"}; then VACUUM ANALYZE and CHECKPOINT.  The script checks
# that the positions are exactly 1..N and that es_read_all and the SELECT
# return the same rows (first, middle and last page, whole rows compared).
#
# Variants, each a pgbench script run by one client (-c 1 -j 1 -n -M
# prepared) for N/1,000 transactions, one page each, starting after 0
# (-D last=0) and moving on by 1,000 (positions are dense), so a run reads the
# whole log once, every row to pgbench (libpq receives and stores each page):
#   es_read_all    bench/catchup_es_read_all.sql
#                  SELECT * FROM es_read_all(:last, 1000)
#   keyset SELECT  bench/catchup_select.sql
#                  SELECT * FROM es_events WHERE global_position > :last
#                  ORDER BY global_position LIMIT 1000
#   or, with AGAINST=subscription, instead of the SELECT, two consumers of
#   subscription 'bench' (every event, one member; its checkpoint is reset
#   to 0 before each run):
#   read + ack, a transaction   bench/subscription_read_ack.sql: BEGIN;
#                  SELECT * FROM es_subscription_read('bench', 1000);
#                  SELECT es_subscription_ack('bench', :last + 1000); COMMIT
#                  (4 round trips: the pattern of a sink in this database)
#   ack + next read, pipelined  bench/subscription_pipelined.sql:
#                  es_subscription_ack('bench', :last) and the next
#                  es_subscription_read('bench', 1000) sent together
#                  (\startpipeline: 1 round trip, one implicit transaction;
#                  the pattern of a sink outside)
#   the same, synchronous_commit off  bench/subscription_pipelined_async.sql
#                  (a lost ack only means a batch delivered again)
#                  the table then shows consumer / es_read_all (target >= 0.9)
# Per mode, after a discarded warm-up pass of each, -r N rounds (default 9)
# of one run of each, the order reversed every round.  events/s = pages/s x 1,000;
# the table shows the median of the rounds and es_read_all / SELECT (target
# >= 0.9).  Report on stdout (Markdown) and, with the pgbench logs, in a
# directory printed at the end; progress on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=
ROUNDS=9
MODES=${MODES:-plain preload}
AGAINST=${AGAINST:-select}
declare -A NAME=([catchup_es_read_all.sql]=es_read_all [catchup_select.sql]="keyset SELECT"
                 [subscription_read_ack.sql]="subscription: read + ack, a transaction"
                 [subscription_pipelined.sql]="subscription: ack + next read, pipelined"
                 [subscription_pipelined_async.sql]="subscription: the same, synchronous_commit off")
case $AGAINST in
  select) OTHERS=(catchup_select.sql) ;;
  subscription) OTHERS=(subscription_read_ack.sql subscription_pipelined.sql subscription_pipelined_async.sql) ;;
  *) echo "AGAINST: select or subscription" >&2; exit 2 ;;
esac
EXISTING=0
BUILD=0
EVENTS=
for a in "$@"; do [[ $a != --quick ]] || EVENTS=${EVENTS:-100000}; done
want_n=0
es_bench_option() {
  if ((want_n)); then EVENTS=$1; want_n=0; return 0; fi
  case $1 in -n|--events) want_n=1 ;; *) return 1 ;; esac
}
es_bench_args "$@"
((want_n == 0)) || { echo "-n needs a number of events" >&2; exit 2; }
EVENTS=${EVENTS:-1000000}
[[ $EVENTS =~ ^[1-9][0-9]*000$ ]] || { echo "-n: a positive multiple of 1,000" >&2; exit 2; }
PAGES=$((EVENTS / 1000))

PGCONF=(
  shared_buffers=1GB       # the whole log stays in memory
  fsync=on
  max_wal_size=8GB         # no checkpoint while loading
  checkpoint_timeout=30min
  autovacuum=off           # no background noise; the script vacuums
)
for m in $MODES; do [[ $m == preload || $m == plain ]] || { echo "MODES: plain and/or preload" >&2; exit 2; }; done
MODES="$MODES" AGAINST="$AGAINST" es_bench_virtualenv -r "$ROUNDS" -n "$EVENTS"

# ---------------------------------------------------------------------------
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_catchup.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_catchup_$$"
START=$SECONDS
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
qdb -c "CREATE EXTENSION event_sourcing" >/dev/null

say "es_catchup: logs in $LOGDIR; loading $EVENTS events"
t0=$SECONDS
es_bench_deposits_sql load 100 "$PAGES" 1000 | qdb >/dev/null
LOAD_SECS=$((SECONDS - t0))
[[ $(qdb -c "SELECT count(*) = $EVENTS AND min(global_position) = 1 AND max(global_position) = $EVENTS FROM es_events") == t ]] \
  || die "the positions are not exactly 1..$EVENTS"
[[ $AGAINST == select ]] || qdb -c "SELECT es_define_subscription('bench')" >/dev/null
for after in 0 $(((PAGES / 2) * 1000)) $((EVENTS - 1000)); do
  if [[ $AGAINST == select ]]; then
    page="SELECT * FROM es_events WHERE global_position > $after ORDER BY global_position LIMIT 1000"
  else
    page="SELECT * FROM es_subscription_read('bench', 1000)"
    qdb -c "SELECT es_subscription_reset('bench', $after)" >/dev/null
  fi
  [[ $(qdb -c "SELECT (SELECT array_agg(e::text ORDER BY global_position) FROM es_read_all($after, 1000) e)
                    = (SELECT array_agg(s::text ORDER BY global_position) FROM ($page) s)
                 AND (SELECT count(*) FROM es_read_all($after, 1000)) = 1000") == t ]] \
    || die "es_read_all and the ${NAME[${OTHERS[0]}]} differ on the page after $after"
done

# run SCRIPT: one pass (pgbench -t PAGES), checked; sets EVS and LAT.
run() {
  local log
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-%s.log' "$LOGDIR" "$RUN" "${1%.sql}")
  say "  run $RUN: ${NAME[$1]}, $PAGES pages"
  [[ $1 != subscription_* ]] || qdb -c "SELECT es_subscription_reset('bench', 0)" >/dev/null
  es_bench_pgbench "$log" -c 1 -j 1 -t "$PAGES" -D last=0 -f "$HERE/$1" "$DB"
  [[ $TX == "$PAGES" ]] || die "$log: $TX pages read, expected $PAGES"
  EVS=$(awk -v t="$TPS" 'BEGIN { printf "%.0f", t * 1000 }')
  LAT=$(sed -nE 's/^latency average = ([0-9.]+) ms$/\1/p' "$log")
}

if [[ $AGAINST == select ]]; then
  out "# event_sourcing: catch-up, es_read_all vs keyset SELECT, 1,000 events a page to the client"
else
  out "# event_sourcing: subscription consumers (1,000 events a batch, each batch acknowledged) vs es_read_all paging, every row to the client"
fi
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
out "- log: $EVENTS events (es_append, 1,000-event batches, 100 streams; loaded in $LOAD_SECS s), es_events $(qdb -c "SELECT pg_size_pretty(pg_total_relation_size('es_events'))") with its indexes"
out "- each run: \`pgbench -n -M prepared -c 1 -j 1 -t $PAGES -D last=0 -f bench/<script>\`, one page per transaction, the whole log once; per mode a discarded warm-up pass of each, then $ROUNDS round(s), the order reversed every round; the table shows the median"
out ""

# set_mode MODE: the cluster in MODE (ALTER SYSTEM, restart); prints the mode
# actually in force and the library mapped.
set_mode() {
  if ((EXISTING == 0)); then
    if [[ $1 == preload ]]; then
      # shellcheck disable=SC2016
      q -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = '\$libdir/event_sourcing'" >/dev/null
    else
      q -d postgres -c "ALTER SYSTEM RESET shared_preload_libraries" >/dev/null
    fi
    pg_ctlcluster 15 regress restart
  fi
  local spl lib="" pre
  spl=$(qdb -c "SHOW shared_preload_libraries")
  if ((EXISTING == 0)); then
    pre=$(es_bench_preloaded_library)
    [[ ($1 == preload && -n $pre) || ($1 == plain && -z $pre) ]] || die "mode $1, but the postmaster maps '$pre'"
    lib="; the postmaster maps ${pre:-no event_sourcing.so}; a backend maps $(es_bench_loaded_library "$DB")"
  fi
  echo "shared_preload_libraries = '$spl'$lib"
}

((EXISTING == 0)) || MODES=current
ROWS=() RUNS=() LOW=()
for MODE in $MODES; do
  say "mode $MODE"
  INFO=$(set_mode "$MODE") || exit 1
  say "warm-up (discarded)"
  for f in catchup_es_read_all.sql "${OTHERS[@]}"; do run "$f"; done
  declare -A ALL=() ALAT=()
  for ((r = 1; r <= ROUNDS; r++)); do
    for f in $(order "$r" catchup_es_read_all.sql "${OTHERS[@]}"); do
      run "$f"
      ALL[$f]+="$EVS " ALAT[$f]+="$LAT "
    done
  done
  # shellcheck disable=SC2086
  E=$(median ${ALL[catchup_es_read_all.sql]})
  # shellcheck disable=SC2086
  EL=$(median_fmt %.3f ${ALAT[catchup_es_read_all.sql]})
  # shellcheck disable=SC2086
  LINE="- $MODE ($INFO): es_read_all $(join ${ALL[catchup_es_read_all.sql]})"
  for OTHER in "${OTHERS[@]}"; do
    # shellcheck disable=SC2086
    S=$(median ${ALL[$OTHER]}) SL=$(median_fmt %.3f ${ALAT[$OTHER]})
    if [[ $AGAINST == select ]]; then
      # es_read_all is the one measured against the SELECT
      ROWS+=("| $MODE | $EVENTS | $E | $S | **$(ratio "$E" "$S")** | $EL | $SL |")
      below "$E" "$S" 0.9 && LOW+=("$MODE ($(ratio "$E" "$S"))")
    else
      # the consumer is the one measured against es_read_all
      ROWS+=("| $MODE | ${NAME[$OTHER]#subscription: } | $S | $E | **$(ratio "$S" "$E")** | $SL | $EL |")
      below "$S" "$E" 0.9 && LOW+=("$MODE, ${NAME[$OTHER]#subscription: } ($(ratio "$S" "$E"))")
    fi
    # shellcheck disable=SC2086
    LINE+="; ${NAME[$OTHER]} $(join ${ALL[$OTHER]})"
  done
  RUNS+=("$LINE")
  unset ALL ALAT
done
if [[ $AGAINST == select ]]; then
  out "| mode | events | es_read_all (events/s) | keyset SELECT (events/s) | es_read_all / SELECT | ms per page: es_read_all | SELECT |"
else
  out "| mode | consumer ($EVENTS events) | consumer (events/s) | es_read_all (events/s) | consumer / es_read_all | ms per batch: consumer | es_read_all |"
fi
out "|:---|---:|---:|---:|---:|---:|---:|"
for l in "${ROWS[@]}"; do out "$l"; done
out ""
if [[ $AGAINST == select ]]; then
  if ((${#LOW[@]})); then out "es_read_all below 0.9 x the SELECT: $(join "${LOW[@]}")"; else out "es_read_all is at or above 0.9 x the SELECT in every mode."; fi
elif ((${#LOW[@]})); then out "consumers below 0.9 x es_read_all: $(join "${LOW[@]}")"; else out "Every consumer is at or above 0.9 x es_read_all in every mode."; fi
((ROUNDS >= 3)) || out "(only $ROUNDS round(s): a smoke test, not a measurement)"
out ""
out "Runs (events/s of each pass, in run order):"
out ""
for l in "${RUNS[@]}"; do out "$l"; done
if [[ $AGAINST == select ]]; then
  out ""
  out "Plan of the SELECT (page after $(((PAGES / 2) * 1000))):"
  out ""
  out '```'
  qdb -c "EXPLAIN SELECT * FROM es_events WHERE global_position > $(((PAGES / 2) * 1000)) ORDER BY global_position LIMIT 1000" \
    | sed 's/  (cost=.*//' | tee -a "$REPORT"
  out '```'
fi
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
