#!/usr/bin/env bash
# bench/append_compare.sh: es_append of two commits side by side in one run
# (issue 11: the new safe-bound bookkeeping must cost appenders < 2%).
#
#   bench/append_compare.sh                 full run (~10 min on 2 cores)
#   bench/append_compare.sh --quick         smoke test (-d 1 -r 1, ~1 min)
#   bench/append_compare.sh -d 5 -r 6       6 rounds of 5 s runs
#   bench/append_compare.sh --old REV       the baseline (default 5cfebdc,
#                                           main before issue 11)
#   bench/append_compare.sh --new REV       the commit measured (default HEAD)
#   MODES=preload bench/append_compare.sh   only the preloaded mode
#                                           (default MODES="preload plain")
#   EVENTS=1 CLIENTS=4 SYNCS=on bench/append_compare.sh
#                                           only some settings (defaults
#                                           "1 10", "1 4", "on off")
#
# Builds: both commits are exported (git archive), built and installed into
# two private directories (bench/lib.sh es_bench_build), so the run never
# touches the shared installation and measures exactly those two commits
# (named in the report).  One server can load only one event_sourcing.so,
# so each build gets its own cluster, "new" and "old", created side by side
# in one throwaway pg_virtualenv environment with identical settings (PGCONF
# below, as bench/append_bench.sh, fsync on) apart from Debian's
# extension_destdir and dynamic_library_path, which point each at its build.
# The report names the library each server actually mapped.
#
# Modes (MODES): "preload" = shared_preload_libraries = '$libdir/event_sourcing'
# (the new code publishes in-flight appenders in shared-memory slots);
# "plain" = not preloaded (the new code takes private heavyweight locks).
# Both clusters are switched to a mode (postgresql.conf) and restarted
# together; a discarded warm-up run on each follows.
#
# Settings, as part 1 of bench/append_bench.sh: events per transaction 1 or
# 10 (bench/es_append_{1,10}.sql: es_append of one event or of a 10-event
# batch to 'bench-' || random(1, 10000), expected version NULL); 1 or 4
# clients (-j 1 or 2); synchronous_commit on or off.  pgbench -n -M prepared
# -T SEC.
#
# Method: for every mode and setting, -r N rounds (default 4) of one -d SEC
# run (default 3) on each build, new then old in odd rounds and old then new
# in even ones, so that drift and noise on the machine hit both alike; the
# idle cluster does nothing meanwhile.  Every run starts from an empty store
# (DROP and CREATE EXTENSION, then CHECKPOINT, on the cluster about to run);
# after it the script checks that es_events holds exactly (transactions x
# events per transaction) rows and that no transaction failed.  The table
# shows the median events/s of the rounds and new/old (target >= 0.98); every
# run is listed under "Runs".  Report on stdout (Markdown) and, with every
# pgbench log, in a directory printed at the end; progress on stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=3
ROUNDS=4
EXISTING=0
BUILD=0
OLD_REV=5cfebdc
NEW_REV=HEAD
MODES=${MODES:-preload plain}
EVENTS=${EVENTS:-1 10}
CLIENTS=${CLIENTS:-1 4}
SYNCS=${SYNCS:-on off}

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
es_bench_args "$@"
[[ -z $want_rev ]] || { echo "--old and --new need a commit" >&2; exit 2; }
((EXISTING == 0 && BUILD == 0)) || { echo "--existing and --build do not apply: the script always builds both commits into throwaway clusters" >&2; exit 2; }
for m in $MODES; do [[ $m == preload || $m == plain ]] || { echo "MODES: preload and/or plain" >&2; exit 2; }; done
OLD_REV=$(git -C "$ES_BENCH_ROOT" rev-parse --verify "$OLD_REV^{commit}")
NEW_REV=$(git -C "$ES_BENCH_ROOT" rev-parse --verify "$NEW_REV^{commit}")

# Settings of both clusters (those of bench/append_bench.sh).
PGCONF=(
  shared_buffers=1GB       # everything stays in memory
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=8GB         # no checkpoint during a run
  min_wal_size=2GB
  checkpoint_timeout=30min
  autovacuum=off           # the store is emptied before every run
)
# The environment's own cluster (15/regress) stays idle: defaults.
PGCONF_ENV=("${PGCONF[@]}")
PGCONF=()
MODES="$MODES" EVENTS="$EVENTS" CLIENTS="$CLIENTS" SYNCS="$SYNCS" es_bench_virtualenv -d "$DURATION" -r "$ROUNDS" --old "$OLD_REV" --new "$NEW_REV"
PGCONF=("${PGCONF_ENV[@]}")

# ---------------------------------------------------------------------------
# Inside the throwaway environment.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_cmp.XXXXXX)
REPORT="$LOGDIR/report.md"
DB=es_cmp
PGRUN_DIGITS=3
START=$SECONDS
BUILDS=$(mktemp -d -t es_cmp_build.XXXXXX)
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

# set_mode MODE: both clusters in MODE, restarted.
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
    PRE[$b]=$(on "$b" es_bench_preloaded_library)
    [[ ($1 == preload && ${PRE[$b]} == "$BUILDS/$b/inst/"*) || ($1 == plain && -z ${PRE[$b]}) ]] \
      || die "$b: mode $1, but the postmaster maps '${PRE[$b]}'"
    LIB[$b]=$(on "$b" es_bench_loaded_library "$DB")
    [[ ${LIB[$b]} == "$BUILDS/$b/inst/"* ]] || die "$b maps ${LIB[$b]:-no event_sourcing.so}, not its own build under $BUILDS/$b"
    EXTV[$b]=$(on "$b" qdb -c "SELECT extversion FROM pg_extension WHERE extname = 'event_sourcing'")
  done
}

# run BUILD EVENTS CLIENTS SYNC: reset the store of BUILD's cluster, one
# pgbench run, check the row count; sets EVS (events/s).
run() {
  local b=$1 ev=$2 clients=$3 sync=$4 rows
  on "$b" qdb >/dev/null <<'EOF'
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
CHECKPOINT;
EOF
  PGPORT=${ES_PORT[$b]} pgrun "$b-$MODE-$ev-c$clients-sync_$sync" "es_append_$ev.sql" "$DB" "$clients" "$sync" "$DURATION"
  rows=$(on "$b" qdb -c "SELECT count(*) FROM es_events")
  ((rows == TX * ev)) || die "$b: $rows rows stored, expected $TX transactions x $ev events"
  EVS=$(awk -v t="$TPS" -v e="$ev" 'BEGIN { printf "%.0f", t * e }')
}

say "es_cmp: logs in $LOGDIR"
out "# event_sourcing: es_append, $(git -C "$ES_BENCH_ROOT" rev-parse --short "$NEW_REV") (new) vs $(git -C "$ES_BENCH_ROOT" rev-parse --short "$OLD_REV") (old), side by side"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(q -d postgres -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine, TCP to localhost"
out "- new: commit $NEW_REV ($(git -C "$ES_BENCH_ROOT" log -1 --format=%s "$NEW_REV" | cut -c1-80)...)"
out "- old: commit $OLD_REV ($(git -C "$ES_BENCH_ROOT" log -1 --format=%s "$OLD_REV" | cut -c1-80)...)"
out "- both built into private directories and loaded through extension_destdir/dynamic_library_path; two throwaway clusters (pg_virtualenv environment, pg_createcluster 15 new|old) with \`$(printf -- '--pgoption %s ' "${PGCONF[@]}")\`"
out "- pgbench: \`pgbench -n -M prepared -T $DURATION -c C -j J -f bench/es_append_{1,10}.sql\` (J = 1 for 1 client, 2 for 4); synchronous_commit per run with PGOPTIONS"
out "- $ROUNDS round(s) of one $DURATION s run per build, mode and setting, new/old order reversed every round; the table shows the median; every run starts from an empty store after a CHECKPOINT"
out ""
out "| mode | events/tx | clients | synchronous_commit | new (events/s) | old (events/s) | new/old |"
out "|:---|---:|---:|:---|---:|---:|---:|"

LOW=() RUNS=() MAPPED=()
for MODE in $MODES; do
  say "mode $MODE: restarting both clusters"
  set_mode "$MODE"
  MAPPED+=("- mode $MODE: new maps ${LIB[new]} (extension ${EXTV[new]}; preloaded: ${PRE[new]:-no}), old maps ${LIB[old]} (extension ${EXTV[old]}; preloaded: ${PRE[old]:-no})")
  say "warm-up (discarded)"
  for b in new old; do run "$b" 10 4 off; done
  for ev in $EVENTS; do
    for clients in $CLIENTS; do
      for sync in $SYNCS; do
        declare -A ALL=() R=()
        for ((r = 1; r <= ROUNDS; r++)); do
          for b in $(order "$r" new old); do
            run "$b" "$ev" "$clients" "$sync"
            ALL[$b]+="$EVS "
          done
        done
        # shellcheck disable=SC2086
        R[new]=$(median ${ALL[new]}) R[old]=$(median ${ALL[old]})
        out "| $MODE | $ev | $clients | $sync | ${R[new]} | ${R[old]} | **$(ratio "${R[new]}" "${R[old]}")** |"
        # shellcheck disable=SC2086
        RUNS+=("- $MODE, events/tx=$ev, clients=$clients, synchronous_commit=$sync: new $(join ${ALL[new]}); old $(join ${ALL[old]})")
        if below "${R[new]}" "${R[old]}" 0.98; then
          LOW+=("$MODE, events/tx=$ev, clients=$clients, synchronous_commit=$sync ($(ratio "${R[new]}" "${R[old]}"))")
        fi
        unset ALL R
      done
    done
  done
done
out ""
if ((${#LOW[@]})); then
  out "new/old below 0.98: $(join "${LOW[@]}")"
else
  out "new/old is at or above 0.98 in every setting."
fi
((ROUNDS >= 3)) || out "(only $ROUNDS round(s): a smoke test, not a measurement)"
out ""
out "Libraries the servers mapped:"
out ""
for m in "${MAPPED[@]}"; do out "$m"; done
out ""
out "Runs (events/s of each $DURATION s run, in run order):"
out ""
for r in "${RUNS[@]}"; do out "$r"; done
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
