#!/usr/bin/env bash
# bench/lifecycle_bench.sh: the cost of deleting data (issue 12, version 1.5):
# a retention pass, es_redact_event and es_delete_stream, and what 1.5 costs
# the append path when nothing is deleted.
#
#   bench/lifecycle_bench.sh --build        full run (~15 min on 2 cores)
#   bench/lifecycle_bench.sh --quick        smoke test (100,000-event category,
#                                           5 runs, -d 1 -r 1; ~1 min)
#   bench/lifecycle_bench.sh -d 5 -r 6      part 3: 6 rounds of 5 s runs
#   bench/lifecycle_bench.sh --old REV      part 3's baseline (default 6ad03d8,
#                                           main before issue 12, 1.4)
#   bench/lifecycle_bench.sh --new REV      the commit measured (default HEAD)
#   PARTS="retention remove append" ...     which parts (default all three)
#   STREAMS=10000 STREAM_EVENTS=100 ...     part 1's category (default 10,000
#                                           streams x 100 events = 1,000,000)
#   RETENTION_ROUNDS=3 PASS_SECONDS=30 ...  part 1's rounds and pgbench length
#   RUNS=21 ...                             part 2's runs of each call
#   BATCH=10000 ...                         part 1's es_apply_retention(max_events)
#   WORKER=1 DUTY=50 ...                    part 1 also: the background worker's
#                                           pass at retention_duty_cycle DUTY
#   MODES="preload plain" SYNCS="off on"    part 3's modes and settings
#
# The script always builds (--build is accepted and changes nothing; it
# cannot run against an existing server): both commits are exported (git
# archive), built and installed into private directories (bench/lib.sh
# es_bench_build), each loaded by its own cluster, "new" and "old", created
# side by side in one throwaway pg_virtualenv environment with identical
# settings (PGCONF below, fsync on) apart from extension_destdir and
# dynamic_library_path; the report names the library each server mapped.
# Part 3 runs first (both clusters fresh), its modes in reverse order; then
# parts 1 and 2 on "new" only, in the first mode of MODES; "old" is idle.
# Modes: "preload" = shared_preload_libraries = '$libdir/event_sourcing'
# (es_append reads stream heads from the shared head cache), "plain" = not
# preloaded (the head is read from the index, where 1.5 adds the tombstone
# check); event_sourcing.worker_databases stays empty, so no background
# worker applies retention behind the benchmark's back -- except with
# WORKER=1, where part 1 lists its database for a worker whose
# retention_interval is 0 (off) but during the variant worker+append: the
# same pgbench run while the worker, turned on 2 s after pgbench's start,
# removes the category in its paced batches (retention_duty_cycle DUTY);
# the pass ends when the poll (every 0.1 s, of the audit es_erasures) counts
# every deletion.  (A first version polled count(*) of the category's
# events, a scan that itself took most of a core: 0.57-0.69.)
#
# Part 1, retention: a category 'metric' of STREAMS x STREAM_EVENTS events,
# recorded in 2020, imported with es_import (bench/lifecycle_setup.sql,
# bench/lifecycle_fill.sql), policy es_set_retention('metric', max_age =>
# '30 days').  The pass: es_apply_retention(BATCH) (default 10000), each
# call committed, called until it returns less than BATCH (procedure
# bench_retention_pass);
# it deletes all but each stream's newest event.  Three variants, each from
# a fresh fill (extension re-created, import, VACUUM ANALYZE, CHECKPOINT),
# in an order reversed every round:
#   - pass:        the pass alone;
#   - pass+append: pgbench -c 4 -j 2 -T PASS_SECONDS of bench/es_append_1.sql
#                  (one event to 'bench-' || random(1, 10000)), the pass
#                  starting 2 s after pgbench;
#   - append:      the same pgbench run, no pass.
# Deleted events/s = deleted / the pass's wall time (client-timed).  Append
# throughput from pgbench's per-transaction log (-l): transactions completed
# during the pass (pass+append), or (append) in the same window: from 2 s
# after the start, for the median length of the passes under load.  A pass outlasting pgbench is flagged.
# synchronous_commit on (the default) for both.
#
# Part 2, removal: 2 x (RUNS + 1) streams of 1,000 events imported into a
# fresh store that also holds part 1's filled category; then, in one psql
# session, RUNS + 1 times (the first discarded as warm-up), alternating
# which goes first: es_redact_event of version 500 of a fresh 'redact-<i>'
# stream (paths email and address.street; its id fetched before, untimed),
# and es_delete_stream of a fresh 1,000-event 'gone-<i>' stream; each its
# own autocommitted statement timed by psql's \timing (client round trip
# including the commit, synchronous_commit on).  Median and range, ms.
#
# Part 3, the append path: as bench/append_compare.sh, es_append of one
# event per transaction (bench/es_append_1.sql), pgbench -n -M prepared -c 4
# -j 2 -T DURATION, new and old side by side, new/old order reversed every
# round, each run from an empty store after a CHECKPOINT, row count checked;
# median events/s and new/old (target >= 0.98, i.e. 1.5 costs <= 2%), per
# mode and synchronous_commit setting.
#
# Report on stdout (Markdown) and, with every log, in a directory printed at
# the end; progress on stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=5
ROUNDS=5
EXISTING=0
BUILD=0
QUICK=0
OLD_REV=6ad03d8
NEW_REV=HEAD

want_rev=
es_bench_option() {
  if [[ -n $want_rev ]]; then
    printf -v "$want_rev" '%s' "$1"; want_rev=; return 0
  fi
  case $1 in
    --old) want_rev=OLD_REV ;;
    --new) want_rev=NEW_REV ;;
    *) return 1 ;;
  esac
}
for a in "$@"; do [[ $a != --quick ]] || QUICK=1; done
es_bench_args "$@"
[[ -z $want_rev ]] || { echo "--old and --new need a commit" >&2; exit 2; }
((EXISTING == 0)) || { echo "--existing does not apply: the script always builds both commits into throwaway clusters" >&2; exit 2; }
BUILD=0   # --build: accepted, it always builds (below, inside the environment)
if ((QUICK)); then
  STREAMS=${STREAMS:-1000} RETENTION_ROUNDS=${RETENTION_ROUNDS:-1} PASS_SECONDS=${PASS_SECONDS:-10} RUNS=${RUNS:-5}
fi
PARTS=${PARTS:-retention remove append}
STREAMS=${STREAMS:-10000}
STREAM_EVENTS=${STREAM_EVENTS:-100}
RETENTION_ROUNDS=${RETENTION_ROUNDS:-3}
PASS_SECONDS=${PASS_SECONDS:-30}
RUNS=${RUNS:-21}
BATCH=${BATCH:-10000}
# WORKER=1: part 1 also measures the background worker's pass (the library
# preloaded, MODES' first mode preload) at retention_duty_cycle DUTY
WORKER=${WORKER:-0}
DUTY=${DUTY:-50}
MODES=${MODES:-preload plain}
SYNCS=${SYNCS:-off on}
WORKER_VARIANT=
if ((WORKER)); then
  [[ ${MODES%% *} == preload ]] || { echo "WORKER=1 needs MODES' first mode preload" >&2; exit 2; }
  WORKER_VARIANT=worker+append
fi
for v in STREAMS STREAM_EVENTS RETENTION_ROUNDS PASS_SECONDS RUNS BATCH DUTY; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v: a positive integer" >&2; exit 2; }
done
((STREAM_EVENTS >= 2 && PASS_SECONDS >= 5)) || { echo "STREAM_EVENTS >= 2, PASS_SECONDS >= 5" >&2; exit 2; }
for p in $PARTS; do [[ $p == retention || $p == remove || $p == append ]] || { echo "PARTS: retention, remove and/or append" >&2; exit 2; }; done
for m in $MODES; do [[ $m == preload || $m == plain ]] || { echo "MODES: preload and/or plain" >&2; exit 2; }; done
for s in $SYNCS; do [[ $s == on || $s == off ]] || { echo "SYNCS: on and/or off" >&2; exit 2; }; done
OLD_REV=$(git -C "$ES_BENCH_ROOT" rev-parse --verify "$OLD_REV^{commit}")
NEW_REV=$(git -C "$ES_BENCH_ROOT" rev-parse --verify "$NEW_REV^{commit}")

# Settings of both clusters.
PGCONF=(
  shared_buffers=1GB       # the 1M-event store stays in memory
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=16GB        # no checkpoint during a run
  min_wal_size=2GB
  checkpoint_timeout=1h
  autovacuum=off           # every run starts from a fresh store
  maintenance_work_mem=256MB
  work_mem=64MB
)
# The environment's own cluster (15/regress) stays idle: defaults.
PGCONF_ENV=("${PGCONF[@]}")
PGCONF=()
args=(-d "$DURATION" -r "$ROUNDS" --old "$OLD_REV" --new "$NEW_REV")
((QUICK == 0)) || args+=(--quick)
PARTS="$PARTS" STREAMS="$STREAMS" STREAM_EVENTS="$STREAM_EVENTS" RETENTION_ROUNDS="$RETENTION_ROUNDS" \
  PASS_SECONDS="$PASS_SECONDS" RUNS="$RUNS" BATCH="$BATCH" MODES="$MODES" SYNCS="$SYNCS" WORKER="$WORKER" DUTY="$DUTY" \
  es_bench_virtualenv "${args[@]}"
PGCONF=("${PGCONF_ENV[@]}")

# ---------------------------------------------------------------------------
# Inside the throwaway environment.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_lifecycle.XXXXXX)
chmod 755 "$LOGDIR"
REPORT="$LOGDIR/report.md"
DB=es_lifecycle
PGRUN_DIGITS=3
START=$SECONDS
EVENTS=$((STREAMS * STREAM_EVENTS))
EXPECT_DELETED=$((STREAMS * (STREAM_EVENTS - 1)))
BUILDS=$(mktemp -d -t es_lifecycle_build.XXXXXX)
chmod 755 "$BUILDS"   # the servers run as postgres
cleanup() { es_bench_cluster_drop_all; rm -rf "$BUILDS"; }
trap cleanup EXIT

declare -A REV=([new]=$NEW_REV [old]=$OLD_REV) LIB=() PRE=() EXTV=()
for b in new old; do
  mkdir "$BUILDS/$b"
  es_bench_build "${REV[$b]}" "$BUILDS/$b"
  es_bench_cluster_create "$b" "${PGCONF[@]}" "${ES_BENCH_BUILD_CONF[@]}"
done

# on BUILD CMD...: CMD with libpq pointed at the cluster of BUILD.
on() { local b=$1; shift; PGPORT=${ES_PORT[$b]} "$@"; }
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
# now: the time, seconds since the epoch with microseconds.
now() { date +%s.%6N; }

# set_mode MODE: both clusters in MODE, restarted (as append_compare.sh).
set_mode() {
  local b
  for b in new old; do
    if [[ $1 == preload ]]; then
      # shellcheck disable=SC2016
      pg_conftool 15 "$b" set shared_preload_libraries '$libdir/event_sourcing'
    else
      pg_conftool 15 "$b" remove shared_preload_libraries 2>/dev/null || true
    fi
    pg_ctlcluster 15 "$b" restart 2>/dev/null || pg_ctlcluster 15 "$b" start
    if [[ $(on "$b" q -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DB'") == 0 ]]; then
      on "$b" q -d postgres -c "CREATE DATABASE $DB" >/dev/null
      on "$b" qdb -c "CREATE EXTENSION event_sourcing" >/dev/null
    fi
    [[ $(on "$b" qdb -c "SHOW shared_preload_libraries") == "$([[ $1 == preload ]] && echo "\$libdir/event_sourcing")" ]] \
      || die "$b: shared_preload_libraries is not as mode $1 wants"
    [[ -z $(on "$b" qdb -c "SELECT current_setting('event_sourcing.worker_databases', true)") ]] \
      || die "$b: event_sourcing.worker_databases is set"
    PRE[$b]=$(on "$b" es_bench_preloaded_library)
    [[ ($1 == preload && ${PRE[$b]} == "$BUILDS/$b/inst/"*) || ($1 == plain && -z ${PRE[$b]}) ]] \
      || die "$b: mode $1, but the postmaster maps '${PRE[$b]}'"
    LIB[$b]=$(on "$b" es_bench_loaded_library "$DB")
    [[ ${LIB[$b]} == "$BUILDS/$b/inst/"* ]] || die "$b maps ${LIB[$b]:-no event_sourcing.so}, not its own build under $BUILDS/$b"
    EXTV[$b]=$(on "$b" qdb -c "SELECT extversion FROM pg_extension WHERE extname = 'event_sourcing'")
  done
  MAPPED+=("- mode $1: new maps ${LIB[new]} (extension ${EXTV[new]}; preloaded: ${PRE[new]:-no}), old maps ${LIB[old]} (extension ${EXTV[old]}; preloaded: ${PRE[old]:-no})")
}

# ---------------------------------------------------------------------------
# Part 1: retention.

# fill: a fresh store on "new" with the filled category; checks it.
fill() {
  local t0 t1
  t0=$(now)
  on new qdb -f "$HERE/lifecycle_fill.sql" >/dev/null
  t1=$(now)
  FILL_S+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') "
  [[ $(on new qdb -c "SELECT count(*) FROM es_events") == "$EVENTS" ]] || die "fill: es_events does not hold $EVENTS events"
}

# pass LOG: the retention pass on "new"; sets P0, P1 (epoch times),
# DELETED, CALLS and checks what stays.
pass() {
  local log=$1 res
  P0=$(now)
  res=$(on new qdb -c "CALL bench_retention_pass($BATCH)" 2>"$log.err") || { cat "$log.err" >&2; die "the retention pass failed"; }
  P1=$(now)
  echo "$res" >"$log"
  DELETED=${res%|*} CALLS=${res#*|}
  ((DELETED == EXPECT_DELETED)) || die "the pass deleted $DELETED events, expected $EXPECT_DELETED"
  [[ $(on new qdb -c "SELECT count(*) = $STREAMS AND min(stream_version) = $STREAM_EVENTS FROM es_events WHERE stream_id LIKE 'metric-%'") == t ]] \
    || die "after the pass, 'metric' does not hold each stream's newest event only"
}

# append_run NAME: pgbench -T PASS_SECONDS of es_append_1.sql on "new",
# 4 clients, with a per-transaction log; sets A0 (its start, epoch) and
# PGLOG (the log files' prefix).  Runs in the foreground.
append_run() {
  RUN=$((RUN + 1))
  PGLOG=$(printf '%s/%03d-%s-tx' "$LOGDIR" "$RUN" "$1")
  say "  run $RUN: $1 (pgbench -c 4 -T $PASS_SECONDS)"
  PGPORT=${ES_PORT[new]} PGOPTIONS="-c synchronous_commit=on" \
    es_bench_pgbench "$PGLOG.log" -c 4 -j 2 -T "$PASS_SECONDS" -l --log-prefix="$PGLOG" \
    -f "$HERE/es_append_1.sql" "$DB"
}

# tx_between FROM TO: transactions of the last pgbench run (PGLOG)
# completed in [FROM, TO] (epoch seconds), per second.
tx_between() {
  cat "$PGLOG".[0-9]* | awk -v a="$1" -v b="$2" '
    { t = $5 + $6 / 1e6; if (t >= a && t <= b) n++ }
    END { printf "%.0f", (b > a) ? n / (b - a) : 0 }'
}
# tx_end: the completion time of the last transaction in PGLOG.
tx_end() { cat "$PGLOG".[0-9]* | awk '{ t = $5 + $6 / 1e6; if (t > m) m = t } END { printf "%.6f", m }'; }

# worker_retention SECONDS: event_sourcing.retention_interval on "new" (0:
# off), reloaded; the worker for DB takes it at once (a reload wakes it).
worker_retention() {
  on new q -d postgres -c "ALTER SYSTEM SET event_sourcing.retention_interval = $1" >/dev/null
  on new q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
}

# worker_pass LOG: the background worker's retention pass on "new": turned
# on (interval 1 s, retention_duty_cycle as configured), polled every 0.1 s
# until the audit (es_erasures, a few rows: the poll costs nothing next to
# the appenders) counts every expected deletion, turned off again; sets P0,
# P1 (epoch times), DELETED (the expected count), CALLS (-) and checks what
# stays.
worker_pass() {
  local log=$1 done
  P0=$(now)
  worker_retention 1
  while :; do
    done=$(on new qdb -c "SELECT coalesce(sum(event_count), 0) >= $EXPECT_DELETED FROM es_erasures WHERE operation = 'retention'")
    [[ $done != t ]] || break
    sleep 0.1
  done
  P1=$(now)
  DELETED=$EXPECT_DELETED CALLS=-
  worker_retention 0
  on new qdb -c "SELECT count(*), sum(event_count) FROM es_erasures WHERE operation = 'retention'" >"$log"
  [[ $(on new qdb -c "SELECT count(*) = $STREAMS AND min(stream_version) = $STREAM_EVENTS FROM es_events WHERE stream_id LIKE 'metric-%'") == t ]] \
    || die "after the worker's pass, 'metric' does not hold each stream's newest event only"
}

# pass_during_appends VARIANT PASS NAME: the pgbench run of VARIANT with the
# pass function PASS (pass or worker_pass; its log NAME) started 2 s after
# pgbench; records the appends during the pass (until pgbench ended, if the
# pass outlasted it), the deleted events/s and the pass's length under
# VARIANT in TPS_DURING, DPS and PASS_S; sets CALLS.
pass_during_appends() {
  local variant=$1 fn=$2 name=$3 pid end
  # shellcheck disable=SC2030,SC2031  # the subshell's run number, the parent counts it after
  ( sleep 2; "$fn" "$(printf '%s/%03d-%s' "$LOGDIR" "$((RUN + 2))" "$name")"; echo "$P0 $P1 $DELETED $CALLS" >"$LOGDIR/pass-times" ) &
  pid=$!
  append_run "$variant"
  wait "$pid" || die "the pass ($fn) during pgbench failed"
  RUN=$((RUN + 1))
  read -r P0 P1 DELETED CALLS <"$LOGDIR/pass-times"
  end=$(tx_end)
  if awk -v a="$P1" -v b="$end" 'BEGIN { exit !(a > b) }'; then
    OUTLASTED=1
    say "  the pass ($fn) outlasted pgbench: appends measured until pgbench ended"
  else
    end=$P1
  fi
  TPS_DURING[$variant]+="$(tx_between "$P0" "$end") "
  DPS[$variant]+="$(awk -v n="$DELETED" -v a="$P0" -v b="$P1" 'BEGIN { printf "%.0f", n / (b - a) }') "
  PASS_S[$variant]+="$(awk -v a="$P0" -v b="$P1" 'BEGIN { printf "%.1f", b - a }') "
}

part_retention() {
  local r v
  declare -gA DPS=() TPS_DURING=() TPS_ALONE=() PASS_S=()
  FILL_S='' OUTLASTED=0 CALLS_ALL='' ALONE_RUNS=()
  say "part 1: retention of a $EVENTS-event category, $RETENTION_ROUNDS round(s)"
  for ((r = 1; r <= RETENTION_ROUNDS; r++)); do
    for v in $(order "$r" pass pass+append append $WORKER_VARIANT); do
      say "  round $r: $v (fill)"
      fill
      case $v in
        pass)
          RUN=$((RUN + 1))
          say "  run $RUN: the pass alone"
          pass "$(printf '%s/%03d-pass' "$LOGDIR" "$RUN")"
          CALLS_ALL+="$CALLS "
          DPS[pass]+="$(awk -v n="$DELETED" -v a="$P0" -v b="$P1" 'BEGIN { printf "%.0f", n / (b - a) }') "
          PASS_S[pass]+="$(awk -v a="$P0" -v b="$P1" 'BEGIN { printf "%.1f", b - a }') "
          ;;
        pass+append)
          pass_during_appends pass+append pass pass-during
          CALLS_ALL+="$CALLS "
          ;;
        worker+append)
          pass_during_appends worker+append worker_pass worker-pass
          ;;
        append)
          A0=$(now)
          append_run append
          ALONE_RUNS+=("$A0 $PGLOG")
          ;;
      esac
    done
  done
  # appends alone: over the same window as during a pass, from 2 s after
  # pgbench's start for the median length of the passes under load
  local a0 len x
  # shellcheck disable=SC2086
  len=$(median_fmt %.6f ${PASS_S[pass+append]})
  for x in "${ALONE_RUNS[@]}"; do
    a0=${x%% *} PGLOG=${x#* }
    TPS_ALONE[x]+="$(tx_between "$(awk -v a="$a0" 'BEGIN { printf "%.6f", a + 2 }')" "$(awk -v a="$a0" -v l="$len" 'BEGIN { printf "%.6f", a + 2 + l }')") "
  done
  local dps_alone dps_during tps_d tps_a
  # shellcheck disable=SC2086
  dps_alone=$(median ${DPS[pass]}) dps_during=$(median ${DPS[pass+append]}) tps_d=$(median ${TPS_DURING[pass+append]}) tps_a=$(median ${TPS_ALONE[x]})
  out "## 1. Retention pass on a $EVENTS-event category"
  out ""
  # shellcheck disable=SC2086
  out "- category 'metric': $STREAMS streams x $STREAM_EVENTS events recorded in 2020, es_import'ed (fill: $(join $FILL_S) s), \`es_set_retention('metric', max_age => '30 days')\`; the pass deletes $EXPECT_DELETED events (each stream keeps its newest) with \`es_apply_retention($BATCH)\` called (each call committed) until it returns less than $BATCH ($(join $CALLS_ALL) calls)"
  out "- appends: \`pgbench -n -M prepared -c 4 -j 2 -T $PASS_SECONDS -f bench/es_append_1.sql\` (one event to 'bench-' || random(1, 10000)), synchronous_commit on; the pass starts 2 s after pgbench; events/s from pgbench's transaction log: completed during the pass (pass+append), or (append) from 2 s after the start for the median length of the passes under load"
  out "- mode ${MODES%% *}; each variant from a fresh fill, $RETENTION_ROUNDS round(s), order reversed every round; medians"
  out ""
  out "| variant | pass (s) | deleted events/s | appended events/s | / append alone |"
  out "|:---|---:|---:|---:|---:|"
  # shellcheck disable=SC2086
  out "| pass alone | $(median_fmt %.1f ${PASS_S[pass]}) | $dps_alone | - | - |"
  # shellcheck disable=SC2086
  out "| pass + 4 appenders | $(median_fmt %.1f ${PASS_S[pass+append]}) | $dps_during | $tps_d | **$(ratio "$tps_d" "$tps_a")** |"
  if [[ -n $WORKER_VARIANT ]]; then
    local tps_w
    # shellcheck disable=SC2086
    tps_w=$(median ${TPS_DURING[worker+append]})
    # shellcheck disable=SC2086
    out "| the worker's pass (retention_duty_cycle $DUTY) + 4 appenders | $(median_fmt %.1f ${PASS_S[worker+append]}) | $(median ${DPS[worker+append]}) | $tps_w | **$(ratio "$tps_w" "$tps_a")** |"
    # shellcheck disable=SC2086
    RUNS_TXT+=("- part 1, the worker's pass: $(join ${DPS[worker+append]}) deleted/s; appends during it $(join ${TPS_DURING[worker+append]}) events/s")
  fi
  out "| 4 appenders alone | - | - | $tps_a | 1.00 |"
  out ""
  # shellcheck disable=SC2086
  RUNS_TXT+=("- part 1, every round: pass alone $(join ${DPS[pass]}) deleted/s; pass during appends $(join ${DPS[pass+append]}) deleted/s; appends during the pass $(join ${TPS_DURING[pass+append]}) events/s; appends alone $(join ${TPS_ALONE[x]}) events/s; during/alone per round $(paste -d' ' <(tr ' ' '\n' <<<"${TPS_DURING[pass+append]}") <(tr ' ' '\n' <<<"${TPS_ALONE[x]}") | awk 'NF == 2 { printf "%s%.2f", s, $1 / $2; s = ", " }')")
  if ((OUTLASTED)); then
    out "(a pass outlasted its pgbench run of $PASS_SECONDS s: the appends were measured until pgbench ended; raise PASS_SECONDS)"
    out ""
  fi
  below "$tps_d" "$tps_a" 0.8 && LOW+=("part 1: appends during the pass / alone = $(ratio "$tps_d" "$tps_a") (< 0.8)")
  return 0
}

# ---------------------------------------------------------------------------
# Part 2: es_redact_event and es_delete_stream.

part_remove() {
  local i script="$LOGDIR/remove.sql" res
  say "part 2: es_redact_event and es_delete_stream, $RUNS runs (+1 warm-up)"
  fill
  on new qdb -c "SELECT es_import('remove_src')" >/dev/null
  on new qdb -c "VACUUM ANALYZE es_events" -c "CHECKPOINT" >/dev/null
  {
    for ((i = 0; i <= RUNS; i++)); do
      echo "SELECT event_id AS id FROM es_events WHERE stream_id = 'redact-$i' AND stream_version = 500 \\gset"
      for op in $(order "$i" redact delete); do
        printf '\\echo %s %s\n' "$op" "$i"
        printf '\\timing on\n'
        if [[ $op == redact ]]; then
          echo "SELECT es_redact_event(:'id', ARRAY['email', 'address.street'], 'bench');"
        else
          echo "SELECT es_delete_stream('gone-$i', NULL, 'bench');"
        fi
        printf '\\timing off\n'
      done
    done
  } >"$script"
  RUN=$((RUN + 1))
  say "  run $RUN: $((2 * (RUNS + 1))) timed calls"
  PGPORT=${ES_PORT[new]} PGOPTIONS='-c client_min_messages=warning -c synchronous_commit=on' \
    psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" -f "$script" >"$LOGDIR/remove.log"
  # op i ms, warm-up (i = 0) dropped
  res=$(awk '/^(redact|delete) [0-9]+$/ { op = $1; i = $2 } /^Time: / { if (i > 0) print op, $2 }' "$LOGDIR/remove.log")
  [[ $(grep -c . <<<"$res") == $((2 * RUNS)) ]] || die "part 2: cannot parse $LOGDIR/remove.log"
  [[ $(on new qdb -c "SELECT count(*) FROM es_events WHERE event_type = '\$StreamDeleted' AND stream_id LIKE 'gone-%'") == $((RUNS + 1)) &&
     $(on new qdb -c "SELECT count(*) FROM es_events WHERE stream_id LIKE 'gone-%'") == $((RUNS + 1)) &&
     $(on new qdb -c "SELECT count(*) FROM es_events WHERE event_type = '\$EventRedacted'") == $((RUNS + 1)) &&
     $(on new qdb -c "SELECT count(*) FROM es_events WHERE stream_id LIKE 'redact-%' AND stream_version = 500 AND data ? 'email'") == 0 ]] \
    || die "part 2: the store does not show $((RUNS + 1)) deletions and redactions"
  local redact delete
  redact=$(awk '$1 == "redact" { print $2 }' <<<"$res") delete=$(awk '$1 == "delete" { print $2 }' <<<"$res")
  out "## 2. es_redact_event and es_delete_stream"
  out ""
  out "- store: the filled 'metric' category ($EVENTS events) and $((2 * (RUNS + 1))) streams of 1,000 events; mode ${MODES%% *}, synchronous_commit on"
  out "- one psql session, each call its own statement timed by \`\\timing\` (round trip and commit), on a fresh stream each time; $RUNS runs after one warm-up, the two calls alternating which goes first"
  out ""
  out "| call | median (ms) | min (ms) | max (ms) |"
  out "|:---|---:|---:|---:|"
  # shellcheck disable=SC2046,SC2086
  out "| \`es_redact_event(id, ARRAY['email', 'address.street'])\` (version 500 of 1,000) | $(median_fmt %.2f $redact) | $(sort -g <<<"$redact" | head -1) | $(sort -g <<<"$redact" | tail -1) |"
  # shellcheck disable=SC2046,SC2086
  out "| \`es_delete_stream\` of a 1,000-event stream | $(median_fmt %.2f $delete) | $(sort -g <<<"$delete" | head -1) | $(sort -g <<<"$delete" | tail -1) |"
  out ""
  # shellcheck disable=SC2086
  RUNS_TXT+=("- part 2, ms in run order: es_redact_event $(join $redact); es_delete_stream $(join $delete)")
}

# ---------------------------------------------------------------------------
# Part 3: the append path, new vs old (as bench/append_compare.sh).

# run BUILD SYNC: reset the store of BUILD's cluster, one pgbench run, check
# the row count; sets EVS (events/s).
run() {
  local b=$1 sync=$2 rows
  on "$b" qdb >/dev/null <<'EOF'
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
CHECKPOINT;
EOF
  PGPORT=${ES_PORT[$b]} pgrun "$b-$MODE-1-c4-sync_$sync" es_append_1.sql "$DB" 4 "$sync" "$DURATION"
  rows=$(on "$b" qdb -c "SELECT count(*) FROM es_events")
  ((rows == TX)) || die "$b: $rows rows stored, expected $TX"
  EVS=$(awk -v t="$TPS" 'BEGIN { printf "%.0f", t }')
}

part_append_mode() {
  local sync r b
  say "part 3, mode $MODE: warm-up (discarded)"
  for b in new old; do run "$b" off; done
  for sync in $SYNCS; do
    declare -A ALL=() R=()
    for ((r = 1; r <= ROUNDS; r++)); do
      for b in $(order "$r" new old); do
        run "$b" "$sync"
        ALL[$b]+="$EVS "
      done
    done
    # shellcheck disable=SC2086
    R[new]=$(median ${ALL[new]}) R[old]=$(median ${ALL[old]})
    APPEND_ROWS+=("| $MODE | $sync | ${R[new]} | ${R[old]} | **$(ratio "${R[new]}" "${R[old]}")** |")
    # shellcheck disable=SC2086
    RUNS_TXT+=("- part 3, $MODE, synchronous_commit=$sync, events/s: new $(join ${ALL[new]}); old $(join ${ALL[old]})")
    below "${R[new]}" "${R[old]}" 0.98 && LOW+=("part 3: $MODE, synchronous_commit=$sync: new/old = $(ratio "${R[new]}" "${R[old]}") (< 0.98)")
    unset ALL R
  done
}

# ---------------------------------------------------------------------------
say "es_lifecycle: logs in $LOGDIR"
out "# event_sourcing: deleting data (1.5), $(git -C "$ES_BENCH_ROOT" rev-parse --short "$NEW_REV")"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(q -d postgres -c 'SELECT version()')"
out "- client: $(pgbench --version), psql, on the same machine, TCP to localhost"
out "- new: commit $NEW_REV ($(git -C "$ES_BENCH_ROOT" log -1 --format=%s "$NEW_REV" | cut -c1-80)...)"
out "- old (part 3 only): commit $OLD_REV ($(git -C "$ES_BENCH_ROOT" log -1 --format=%s "$OLD_REV" | cut -c1-80)...)"
out "- both built into private directories and loaded through extension_destdir/dynamic_library_path; two throwaway clusters (pg_virtualenv environment, pg_createcluster 15 new|old) with \`$(printf -- '--pgoption %s ' "${PGCONF[@]}")\`"
out "- command: \`$(printf '%q ' PARTS="$PARTS" STREAMS="$STREAMS" STREAM_EVENTS="$STREAM_EVENTS" RETENTION_ROUNDS="$RETENTION_ROUNDS" PASS_SECONDS="$PASS_SECONDS" RUNS="$RUNS" BATCH="$BATCH" MODES="$MODES" SYNCS="$SYNCS" bench/lifecycle_bench.sh -d "$DURATION" -r "$ROUNDS" --old "$(git -C "$ES_BENCH_ROOT" rev-parse --short "$OLD_REV")")\`"
out ""

LOW=() RUNS_TXT=() MAPPED=() APPEND_ROWS=()
FIRST_MODE=${MODES%% *}
# Part 3 first, while both clusters are equally fresh (parts 1 and 2 write
# gigabytes of WAL on "new"), its modes in reverse order, so that the first
# mode is the current one for parts 1 and 2.
if [[ " $PARTS " == *" append "* ]]; then
  # shellcheck disable=SC2086
  for MODE in $(order 2 $MODES); do
    say "mode $MODE: restarting both clusters"
    set_mode "$MODE"
    part_append_mode
  done
fi
if [[ " $PARTS " == *" retention "* || " $PARTS " == *" remove "* ]]; then
  if [[ " $PARTS " != *" append "* || $MODE != "$FIRST_MODE" ]]; then
    say "mode $FIRST_MODE: restarting both clusters"
    set_mode "$FIRST_MODE"
  fi
  on new qdb -v streams="$STREAMS" -v stream_events="$STREAM_EVENTS" -v runs="$RUNS" -f "$HERE/lifecycle_setup.sql" >/dev/null
  if [[ " $PARTS " == *" retention "* && -n $WORKER_VARIANT ]]; then
    # the worker for DB on "new", retention off until a worker pass turns it on
    on new q -d postgres -c "ALTER SYSTEM SET event_sourcing.retention_interval = 0" \
      -c "ALTER SYSTEM SET event_sourcing.retention_duty_cycle = $DUTY" \
      -c "ALTER SYSTEM SET event_sourcing.worker_databases = '$DB'" >/dev/null
    on new q -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  fi
  [[ " $PARTS " != *" retention "* ]] || part_retention
  [[ " $PARTS " != *" remove "* ]] || part_remove
fi
if [[ " $PARTS " == *" append "* ]]; then
  out "## 3. The append path when nothing is deleted: 1.5 (new) vs 1.4 (old)"
  out ""
  out "- \`pgbench -n -M prepared -c 4 -j 2 -T $DURATION -f bench/es_append_1.sql\` (one event per transaction to 'bench-' || random(1, 10000)); every run from an empty store after a CHECKPOINT; $ROUNDS round(s) of one run per build, new/old order reversed every round; medians"
  out ""
  out "| mode | synchronous_commit | new (events/s) | old (events/s) | new/old |"
  out "|:---|:---|---:|---:|---:|"
  for row in "${APPEND_ROWS[@]}"; do out "$row"; done
  out ""
fi

if ((${#LOW[@]})); then
  out "Below target: $(join "${LOW[@]}")"
else
  out "Every ratio is at or above its target (appends during a pass >= 0.8 of alone; new/old >= 0.98)."
fi
((ROUNDS >= 3 && RETENTION_ROUNDS >= 3)) || out "(few rounds: a smoke test, not a measurement)"
out ""
out "Libraries the servers mapped:"
out ""
for m in "${MAPPED[@]}"; do out "$m"; done
out ""
out "Runs:"
out ""
for r in "${RUNS_TXT[@]}"; do out "$r"; done
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
