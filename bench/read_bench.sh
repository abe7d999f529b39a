#!/usr/bin/env bash
# bench/read_bench.sh: the read functions against the plain SELECTs of
# issue 14 ("reads at SELECT speed"), both SELECT plans of a stream read
# (the default, and the streaming index scan forced).
#
#   bench/read_bench.sh --build             measure the repository's HEAD
#                                           commit, built into a private directory
#   bench/read_bench.sh -n 10000000         events in the log (default 1,000,000;
#                                           a multiple of 10,000 from 100,000)
#   bench/read_bench.sh -d 5 -r 6           es_load: 6 rounds of 5 s runs
#                                           (default -d 3 -r 5); catch-up:
#                                           CATCHUP_ROUNDS (default 3) passes
#   bench/read_bench.sh --quick             200,000 events, -d 1 -r 1, 1 pass
#   bench/read_bench.sh --existing          the server libpq's environment
#                                           points at (a new database; superuser)
#
# Default: a throwaway PostgreSQL 15 cluster (bench/lib.sh), shared_buffers
# 512MB (as bench/scale_bench.sh: 10M events do not fit), autovacuum off.
# Data: N events inserted directly into es_events (superuser), as
# bench/scale_fill.sql lays them out: position p with p % (N / 10,000) = 0 in
# stream 'load-10000' (spread evenly over the log), the others round-robin
# over 'bench-1' .. 'bench-10000'; VACUUM ANALYZE, CHECKPOINT.
#
# Variants, 1 client, pgbench -M prepared, every row to the client:
#   catch-up   es_read_all(:last, 1000) (bench/catchup_es_read_all.sql) vs
#              the keyset SELECT ... WHERE global_position > :last ORDER BY
#              global_position LIMIT 1000 (bench/catchup_select.sql), a
#              whole-log pass each (-t N/1,000), CATCHUP_ROUNDS rounds
#   es_load    es_load('load-10000') (bench/scale_es_load.sql) vs SELECT *
#              FROM es_events WHERE stream_id = 'load-10000' ORDER BY
#              stream_version (bench/scale_select.sql) under the planner's
#              default (at these sizes a bitmap heap scan and a sort) and
#              with enable_bitmapscan, enable_seqscan and enable_sort off (PGOPTIONS), the streaming
#              index scan of the (stream_id, stream_version) index
# Every round runs each variant once, the order reversed every round; the
# tables show medians, their ratios and the median of the per-round ratios
# (targets: catch-up >= 0.95, es_load >= 0.9 x the index-scan SELECT).
# Report on stdout; logs in a directory printed at the end; progress on
# stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=3
ROUNDS=5
EXISTING=0
BUILD=0
EVENTS=
for a in "$@"; do [[ $a != --quick ]] || { EVENTS=${EVENTS:-200000}; CATCHUP_ROUNDS=${CATCHUP_ROUNDS:-1}; }; done
CATCHUP_ROUNDS=${CATCHUP_ROUNDS:-3}
want_n=0
es_bench_option() {
  if ((want_n)); then EVENTS=$1; want_n=0; return 0; fi
  case $1 in -n|--events) want_n=1 ;; *) return 1 ;; esac
}
es_bench_args "$@"
((want_n == 0)) || { echo "-n needs a number of events" >&2; exit 2; }
EVENTS=${EVENTS:-1000000}
[[ $EVENTS =~ ^[1-9][0-9]*0000$ && $EVENTS -ge 100000 ]] || { echo "-n: a multiple of 10,000 from 100,000" >&2; exit 2; }
PAGES=$((EVENTS / 1000))
PGCONF=(shared_buffers=512MB autovacuum=off max_wal_size=8GB checkpoint_timeout=30min)
CATCHUP_ROUNDS=$CATCHUP_ROUNDS es_bench_virtualenv "$@"

unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_read.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_read_$$"
START=$SECONDS
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
qdb -c "CREATE EXTENSION event_sourcing" >/dev/null

say "es_read: logs in $LOGDIR; loading $EVENTS events"
t0=$SECONDS
qdb -v events="$EVENTS" -f "$HERE/read_fill.sql" >/dev/null
LOAD_SECS=$((SECONDS - t0))
[[ $(qdb -c "SELECT (SELECT count(*) FROM es_load('load-10000')) = 10000
                AND (SELECT array_agg(e::text ORDER BY global_position) FROM es_read_all($((EVENTS / 2)), 1000) e)
                  = (SELECT array_agg(s::text ORDER BY global_position) FROM (SELECT * FROM es_events WHERE global_position > $((EVENTS / 2)) ORDER BY global_position LIMIT 1000) s)") == t ]] \
  || die "the data is not as planned, or es_read_all and the SELECT differ"

out "# event_sourcing: reads vs plain SELECTs (issue 14)"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(qdb -c 'SELECT version()')"
if ((EXISTING)); then out "- cluster: existing server (--existing), database $DB"
else out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"; fi
out "- extension: $(es_bench_extension)"
out "- log: $EVENTS events (loaded in $LOAD_SECS s), es_events $(qdb -c "SELECT pg_size_pretty(pg_total_relation_size('es_events'))") with its indexes"
out "- catch-up: $CATCHUP_ROUNDS round(s) of one whole-log pass (\`-t $PAGES -D last=0\`); es_load: $ROUNDS round(s) of ${DURATION} s runs; medians"
out ""

# rmedian "A..." "B...": the median of the per-round ratios A[i] / B[i] (the
# runs of one round are adjacent, so this follows the machine's load better
# than the ratio of the medians when other work comes and goes).
rmedian() {
  local a=($1) b=($2) i r=()
  for ((i = 0; i < ${#a[@]}; i++)); do r+=("$(awk -v x="${a[i]}" -v y="${b[i]}" 'BEGIN { printf "%.4f", x / y }')"); done
  median_fmt %.2f "${r[@]}"
}

# prun NAME PGOPTS ARG...: one pgbench run; sets TPS, TX.
prun() {
  local name=$1 opts=$2 log
  shift 2
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-%s.log' "$LOGDIR" "$RUN" "$name")
  say "  run $RUN: $name"
  PGOPTIONS=$opts es_bench_pgbench "$log" -c 1 -j 1 "$@" "$DB"
}

declare -A CU=()
say "catch-up (warm-up pass of each, discarded)"
for f in catchup_es_read_all catchup_select; do prun "warm-$f" "" -t "$PAGES" -D last=0 -f "$HERE/$f.sql"; done
for ((r = 1; r <= CATCHUP_ROUNDS; r++)); do
  for f in $(order "$r" catchup_es_read_all catchup_select); do
    prun "$f" "" -t "$PAGES" -D last=0 -f "$HERE/$f.sql"
    [[ $TX == "$PAGES" ]] || die "$f: $TX pages, expected $PAGES"
    CU[$f]+="$(awk -v t="$TPS" 'BEGIN { printf "%.0f", t * 1000 }') "
  done
done
# shellcheck disable=SC2086
E=$(median ${CU[catchup_es_read_all]}) S=$(median ${CU[catchup_select]})
out "| catch-up, 1,000 a page | es_read_all (events/s) | keyset SELECT (events/s) | es_read_all / SELECT | median of the rounds' ratios |"
out "|:---|---:|---:|---:|---:|"
out "| $EVENTS events | $E | $S | $(ratio "$E" "$S") | **$(rmedian "${CU[catchup_es_read_all]}" "${CU[catchup_select]}")** |"
out ""

IDX='-c enable_bitmapscan=off -c enable_seqscan=off -c enable_sort=off'
declare -A LD=()
say "es_load (warm-up run of each, discarded)"
prun warm-es_load "" -T 1 -D stream=load-10000 -f "$HERE/scale_es_load.sql"
prun warm-select "" -T 1 -D stream=load-10000 -f "$HERE/scale_select.sql"
prun warm-select-index "$IDX" -T 1 -D stream=load-10000 -f "$HERE/scale_select.sql"
for ((r = 1; r <= ROUNDS; r++)); do
  for v in $(order "$r" es_load select select-index); do
    case $v in
      es_load) prun "$v" "" -T "$DURATION" -D stream=load-10000 -f "$HERE/scale_es_load.sql" ;;
      select) prun "$v" "" -T "$DURATION" -D stream=load-10000 -f "$HERE/scale_select.sql" ;;
      select-index) prun "$v" "$IDX" -T "$DURATION" -D stream=load-10000 -f "$HERE/scale_select.sql" ;;
    esac
    LD[$v]+="$(printf '%.2f' "$TPS") "
  done
done
# shellcheck disable=SC2086
L=$(median_fmt %.2f ${LD[es_load]}) P=$(median_fmt %.2f ${LD[select]}) I=$(median_fmt %.2f ${LD[select-index]})
out "| es_load of a 10,000-event stream (loads/s) | es_load | SELECT, default plan | SELECT, index scan | es_load / default plan | es_load / index scan |"
out "|:---|---:|---:|---:|---:|---:|"
out "| $EVENTS events, medians | $L | $P | $I | $(ratio "$L" "$P") | $(ratio "$L" "$I") |"
out "| median of the rounds' ratios | | | | **$(rmedian "${LD[es_load]}" "${LD[select]}")** | **$(rmedian "${LD[es_load]}" "${LD[select-index]}")** |"
out ""
out "Runs, in run order:"
out ""
# shellcheck disable=SC2086
out "- catch-up (events/s): es_read_all $(join ${CU[catchup_es_read_all]}); keyset SELECT $(join ${CU[catchup_select]})"
# shellcheck disable=SC2086
out "- es_load (loads/s): es_load $(join ${LD[es_load]}); SELECT default plan $(join ${LD[select]}); SELECT index scan $(join ${LD[select-index]})"
out ""
out "Plans of the stream SELECT (default; bitmap scan, seq scan and sort off):"
out ""
out '```'
qdb -c "EXPLAIN SELECT * FROM es_events WHERE stream_id = 'load-10000' ORDER BY stream_version" | sed 's/  (cost=.*//' | tee -a "$REPORT"
echo "--" | tee -a "$REPORT"
PGOPTIONS="$IDX" q -d "$DB" -c "EXPLAIN SELECT * FROM es_events WHERE stream_id = 'load-10000' ORDER BY stream_version" | sed 's/  (cost=.*//' | tee -a "$REPORT"
out '```'
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
