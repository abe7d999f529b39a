#!/usr/bin/env bash
# bench/worker_latency.sh: latency from an append's commit to the async read
# model updated by the background worker, under a steady append load.
#
#   bench/worker_latency.sh                 500 and 5,000 appends/s, 20 s each
#   bench/worker_latency.sh -d 10           10 s runs
#   bench/worker_latency.sh -r 3            3 rounds of each rate
#   bench/worker_latency.sh --quick         -d 1 -r 1
#   bench/worker_latency.sh --build         measure the repository's HEAD
#                                           commit, built into a private directory
#   RATES="500 2000" bench/worker_latency.sh   other rates (appends/s)
#
# Always a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (bench/lib.sh) with the settings of PGCONF below: the library preloaded,
# track_commit_timestamp on, fsync on.  A database es_wlat_<pid> with an
# async projection 'lat' whose handler records, per event, its position and
# clock_timestamp() (bench/worker_latency_setup.sql); the background worker
# runs for that database with its default settings except
# worker_idle_interval = 5s (so that a lost wake-up shows as a 5 s latency
# instead of being hidden by the default 1 s).
#
# Load: pgbench, 8 clients (-j 2), --rate R, one es_append of one event per
# transaction (bench/es_append_1.sql), synchronous_commit=on.  Latency of
# an event = the handler's clock_timestamp() - the commit timestamp of the
# appending transaction (pg_xact_commit_timestamp(xmin), taken just before
# its commit record is flushed): both server clocks, so it includes the
# WAL flush, the wake-up and the round.  Reported: p50, p90, p99 and max over
# every event of the run, the appends/s achieved, and the CPU use of the
# worker.  Target: p99 <= 10 ms at both rates.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=20
ROUNDS=1
EXISTING=0
BUILD=0
es_bench_args "$@"
((EXISTING == 0)) || { echo "--existing is not supported: the script changes event_sourcing.worker_databases" >&2; exit 2; }
RATES=${RATES:-500 5000}

# shellcheck disable=SC2016
PGCONF=(
  shared_buffers=512MB
  fsync=on
  max_wal_size=8GB
  checkpoint_timeout=30min
  track_commit_timestamp=on
  'shared_preload_libraries=$libdir/event_sourcing'
  event_sourcing.worker_idle_interval=5s
)
args=(-d "$DURATION" -r "$ROUNDS")
RATES="$RATES" es_bench_virtualenv "${args[@]}"

# ---------------------------------------------------------------------------
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_wlat.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_wlat_$$"
START=$SECONDS
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
es_bench_require_extension

cleanup() {
  q -d postgres -c "ALTER SYSTEM RESET event_sourcing.worker_databases" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
  q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

q -d postgres -c "CREATE DATABASE $DB" >/dev/null
qdb -c "CREATE EXTENSION event_sourcing" -f "$HERE/worker_latency_setup.sql" >/dev/null
q -d postgres -c "ALTER SYSTEM SET event_sourcing.worker_databases = '$DB'" -c "SELECT pg_reload_conf()" >/dev/null
for ((i = 0; i < 300; i++)); do
  WPID=$(q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker' AND datname = '$DB'")
  [[ -n $WPID ]] && break
  sleep 0.1
done
[[ -n $WPID ]] || die "the event_sourcing worker did not start for $DB"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

say "es_wlat: logs in $LOGDIR"
out "# event_sourcing background worker: commit -> async read model under load"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(q -d postgres -c 'SELECT version()')"
out "- extension: $(es_bench_extension)"
out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf " -o '%s'" "${PGCONF[@]}")\`"
out "- load: pgbench -n -M prepared -c 8 -j 2 --rate R -T $DURATION -f bench/es_append_1.sql, synchronous_commit=on"
out ""
out "| rate asked | appends/s done | events | p50 | p90 | p99 | max | worker CPU |"
out "|---:|---:|---:|---:|---:|---:|---:|---:|"

for ((r = 1; r <= ROUNDS; r++)); do
  for rate in $RATES; do
    qdb -c "TRUNCATE lat_applied" -c "CHECKPOINT" >/dev/null
    from=$(qdb -c "SELECT coalesce(max(global_position), 0) FROM es_events")
    RUN=$((RUN + 1))
    log=$(printf '%s/%03d-rate%s.log' "$LOGDIR" "$RUN" "$rate")
    say "  run $RUN: --rate $rate, ${DURATION}s"
    t0=$(cpu_ticks "$WPID")
    PGOPTIONS="-c synchronous_commit=on" es_bench_pgbench "$log" -c 8 -j 2 -R "$rate" -T "$DURATION" -f "$HERE/es_append_1.sql" "$DB"
    t1=$(cpu_ticks "$WPID")
    # wait for the worker to catch up
    for ((i = 0; i < 300; i++)); do
      [[ $(qdb -c "SELECT lag FROM es_projections WHERE name = 'lat'") == 0 ]] && break
      sleep 0.1
    done
    res=$(qdb -F ' ' -c "
      SELECT count(*),
             round((1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 2),
             round((1000 * percentile_cont(0.9) WITHIN GROUP (ORDER BY ms))::numeric, 2),
             round((1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 2),
             round((1000 * max(ms))::numeric, 2)
      FROM (SELECT extract(epoch FROM l.applied_at - pg_xact_commit_timestamp(e.xmin)) AS ms
            FROM es_events e JOIN lat_applied l ON l.position = e.global_position
            WHERE e.global_position > $from) s")
    read -r n p50 p90 p99 pmax <<<"$res"
    want=$(qdb -c "SELECT count(*) FROM es_events WHERE global_position > $from")
    ((n == want && n == TX)) || die "rate $rate: $n events in the read model, $want appended, pgbench says $TX"
    cpu=$(awk -v a="$t0" -v b="$t1" -v h="$(getconf CLK_TCK)" -v s="$DURATION" 'BEGIN { printf "%.0f%%", 100 * (b - a) / h / s }')
    out "| $rate | $(printf '%.0f' "$TPS") | $n | $p50 ms | $p90 ms | **$p99 ms** | $pmax ms | $cpu |"
  done
done
out ""
out "Latency: the handler's clock_timestamp() - pg_xact_commit_timestamp() of the appending transaction, every event of the run.  Worker CPU: user + system time of the worker process / run time."
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out ""
out "Logs: $LOGDIR"
