#!/usr/bin/env bash
# bench/reader_lag.sh: reader lag, from the commit of an append to a polling
# es_wait/es_read_all reader returning the event, on the primary and on a
# streaming hot standby (issue 11).
#
#   bench/reader_lag.sh                 10, 200 and 1,000 appends/s, 10 s runs, 2 rounds
#   bench/reader_lag.sh -d 20 -r 3      3 rounds of 20 s runs
#   bench/reader_lag.sh --quick         -d 1 -r 1 (smoke test)
#   bench/reader_lag.sh --build         measure the repository's HEAD commit,
#                                       built into a private directory
#   RATES="200 2000" bench/reader_lag.sh   other rates (appends/s)
#   EXTRA_CONF="wal_writer_delay=10ms" bench/reader_lag.sh
#                                       more settings, both clusters
#
# Always a throwaway PostgreSQL 15 environment made by Debian's
# pg_virtualenv (bench/lib.sh): its cluster is the primary (PGCONF below:
# library preloaded, track_commit_timestamp on, fsync on), with a database
# es_lag listed in event_sourcing.worker_databases, so the log mark writer
# publishes the safe bound in es_log_mark every
# event_sourcing.log_mark_interval ms (its default, printed).  A second
# cluster in the same environment is a streaming hot standby of it
# (pg_basebackup -R -X stream; the same settings; asynchronous replication).
#
# Load: at each rate of RATES (10/s: appends far apart, as in a quiet
# system, where nothing but the mark writer's own commit carries the mark to
# the standby), pgbench -n -M prepared -c 4 -j 2 --rate R -T SEC -l -f
# bench/reader_lag_append.sql (one es_append of one event per transaction,
# the event's data naming the pgbench client), synchronous_commit=on, on the
# primary.
#
# Reader (bench/reader_lag_reader.pl, Perl DBD::Pg, one connection over TCP
# to localhost): from the position before the load, loop es_wait(last, 1000)
# then, when it moved, SELECT * FROM es_read_all(last, 1000) with every row
# fetched to the client; it notes for every event the client's clock when
# the page arrived.  Runs against the primary or the standby, one at a time.
#
# Lag of an event, two ways (same machine, same clock):
#   from COMMIT returned = time the reader received it - time the appending
#     transaction completed at the appender (pgbench -l's per-transaction
#     log, whose transactions count from 1 per client: the n-th event of
#     client c is transaction n of client c); may be
#     negative when the reader is faster than the appender's own round trip.
#     The targets apply to this one: the time a subscriber needs to see what
#     an application has been told is committed.
#   from commit stamp = time the reader received it - pg_xact_commit_timestamp()
#     of the appending transaction (read on the primary; stamped just before
#     the commit record is flushed, so it also counts the appender's own WAL
#     flush, which no reader can beat: on an idle VM a lone fsync takes ms).
# The script checks that the reader got every event of the run exactly once,
# in order, and matched every event with its transaction.  Reported per rate
# and place: p50, p90, p99 and max over every event of every round (pooled),
# and each run.  Targets: p99 <= 5 ms on the primary, <= 50 ms on the
# standby.
# Rounds alternate the order primary/standby.  Report on stdout (Markdown)
# and in a directory printed at the end, with the logs; progress on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=10
ROUNDS=2
EXISTING=0
BUILD=0
es_bench_args "$@"
((EXISTING == 0)) || { echo "--existing is not supported: the script builds a standby and changes event_sourcing.worker_databases" >&2; exit 2; }
RATES=${RATES:-10 200 1000}
perl -MDBD::Pg -e 1 2>/dev/null || { echo "the reader needs Perl's DBD::Pg (apt-get install libdbd-pg-perl)" >&2; exit 1; }

# shellcheck disable=SC2016
PGCONF=(
  shared_buffers=256MB
  fsync=on
  max_wal_size=4GB
  checkpoint_timeout=30min
  track_commit_timestamp=on
  'shared_preload_libraries=$libdir/event_sourcing'
)
EXTRA_CONF=${EXTRA_CONF:-}
# shellcheck disable=SC2206
PGCONF+=($EXTRA_CONF)
RATES="$RATES" EXTRA_CONF="$EXTRA_CONF" es_bench_virtualenv -d "$DURATION" -r "$ROUNDS"

# ---------------------------------------------------------------------------
# Inside the environment: libpq points at the primary.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_lag.XXXXXX)
REPORT="$LOGDIR/report.md"
DB=es_lag
START=$SECONDS
PRIMARY_PORT=$PGPORT
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
es_bench_require_extension
cleanup() {
  [[ -z ${READER:-} ]] || kill "$READER" 2>/dev/null || true
  es_bench_cluster_drop_all
}
trap cleanup EXIT

q -d postgres -c "CREATE DATABASE $DB" >/dev/null
qdb -c "CREATE EXTENSION event_sourcing" >/dev/null
q -d postgres -c "ALTER SYSTEM SET event_sourcing.worker_databases = '$DB'" -c "SELECT pg_reload_conf()" >/dev/null
# one event, so that the mark writer has a bound to publish
qdb -c "SELECT es_append('warm-up', NULL, 'Deposited', '{}')" >/dev/null
for ((i = 0; i < 300; i++)); do
  [[ $(qdb -c "SELECT count(*) FROM es_log_mark WHERE position >= 1") == 1 ]] && break
  sleep 0.1
done
[[ $(qdb -c "SELECT count(*) FROM es_log_mark WHERE position >= 1") == 1 ]] || die "the log mark writer did not publish the bound for $DB"

say "creating the standby"
STANDBY_CONF=("${PGCONF[@]}" hot_standby=on)
for s in extension_destdir dynamic_library_path; do
  v=$(q -d postgres -c "SHOW $s")
  # shellcheck disable=SC2016
  [[ -z $v || $v == '$libdir' ]] || STANDBY_CONF+=("$s=$v")
done
es_bench_cluster_create standby "${STANDBY_CONF[@]}"
SDATA=$(es_bench_cluster_pgdata standby)
rm -rf "${SDATA:?}"/*
runuser -u postgres -- pg_basebackup -h localhost -p "$PRIMARY_PORT" -U postgres -D "$SDATA" -R -X stream -c fast
pg_ctlcluster 15 standby start
STANDBY_PORT=${ES_PORT[standby]}
for ((i = 0; i < 300; i++)); do
  [[ $(PGPORT=$STANDBY_PORT qdb -c "SELECT count(*) FROM es_read_all(0, 10)" 2>/dev/null) == 1 ]] && break
  sleep 0.1
done
[[ $(PGPORT=$STANDBY_PORT qdb -c "SELECT pg_is_in_recovery()") == t ]] || die "the standby is not in recovery"
[[ $(PGPORT=$STANDBY_PORT qdb -c "SELECT count(*) FROM es_read_all(0, 10)") == 1 ]] || die "the standby cannot read the log"

qdb >/dev/null <<'EOF'
CREATE TABLE lag_samples (rate int, place text, round int, position bigint, ms float8, stamp_ms float8);
CREATE TABLE lag_recv (position bigint, t float8);
CREATE TABLE lag_tx (client int, txno bigint, latency_us bigint, script int, epoch bigint, us bigint, sched_us bigint);
EOF

say "es_lag: logs in $LOGDIR"
out "# event_sourcing: reader lag, commit -> polling reader (es_wait + es_read_all), primary and standby"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(q -d postgres -c 'SELECT version()')"
out "- extension: $(es_bench_extension)"
out "- primary: throwaway, \`pg_virtualenv -t -v 15$(printf " -o '%s'" "${PGCONF[@]}")\`, event_sourcing.worker_databases = '$DB'; $(qdb -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('event_sourcing.log_mark_interval', 'event_sourcing.wait_poll_interval', 'synchronous_commit', 'wal_level')")"
out "- standby: pg_basebackup -R -X stream of the primary, hot_standby=on, same settings, asynchronous streaming replication"
out "- load: \`pgbench -n -M prepared -c 4 -j 2 --rate R -T $DURATION -l -f bench/reader_lag_append.sql\`, synchronous_commit=on, on the primary"
out "- reader: bench/reader_lag_reader.pl (DBD::Pg, TCP localhost): es_wait(last, 1000), then SELECT * FROM es_read_all(last, 1000), all rows to the client"
out "- lag from COMMIT returned = the reader's clock when the page arrived - the end of the appending transaction at pgbench (pgbench -l); lag from commit stamp = the same - pg_xact_commit_timestamp() of the appending transaction (includes the appender's own commit flush); $ROUNDS round(s) of $DURATION s, primary/standby order reversed every round"
out ""

# one_run RATE PLACE ROUND: a reader on PLACE, the load at RATE; the lag of
# every event into lag_samples.
one_run() {
  local rate=$1 place=$2 round=$3 port from to n log rdir
  port=$([[ $place == primary ]] && echo "$PRIMARY_PORT" || echo "$STANDBY_PORT")
  qdb -c "CHECKPOINT" >/dev/null
  from=$(qdb -c "SELECT coalesce(max(global_position), 0) FROM es_events")
  # the standby has replayed up to there
  for ((i = 0; i < 300; i++)); do
    [[ $(PGPORT=$port qdb -c "SELECT es_safe_position() >= $from") == t ]] && break
    sleep 0.1
  done
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-rate%s-%s' "$LOGDIR" "$RUN" "$rate" "$place")
  rdir="$log.reader"
  mkdir "$rdir"
  say "  run $RUN: --rate $rate, reader on the $place, ${DURATION}s"
  perl "$HERE/reader_lag_reader.pl" "$port" "$DB" "$from" "$rdir/recv.tsv" "$rdir/ready" "$rdir/stop" $((DURATION + 60)) 2>"$rdir/stderr" &
  READER=$!
  for ((i = 0; i < 300; i++)); do [[ -e $rdir/ready ]] && break; sleep 0.05; done
  [[ -e $rdir/ready ]] || die "the reader did not start: $(cat "$rdir/stderr")"
  PGOPTIONS="-c synchronous_commit=on" es_bench_pgbench "$log.log" -c 4 -j 2 -R "$rate" -T "$DURATION" \
    -l --log-prefix="$rdir/tx" -f "$HERE/reader_lag_append.sql" "$DB"
  to=$(qdb -c "SELECT max(global_position) FROM es_events")
  echo "$to" >"$rdir/stop.tmp" && mv "$rdir/stop.tmp" "$rdir/stop"
  wait "$READER" || die "the reader failed: $(cat "$rdir/stderr")"
  READER=
  cat "$rdir"/tx.* >"$rdir/tx.txt"
  qdb -c "TRUNCATE lag_recv, lag_tx" -c "\\copy lag_recv FROM '$rdir/recv.tsv'" \
    -c "\\copy lag_tx FROM '$rdir/tx.txt' (DELIMITER ' ')" >/dev/null
  n=$(qdb -c "SELECT count(*) FROM lag_recv")
  ((n == to - from)) || die "the reader returned $n events, $((to - from)) were appended"
  [[ $(qdb -c "SELECT count(DISTINCT position) = count(*) AND min(position) = $from + 1 AND max(position) = $to FROM lag_recv") == t ]] \
    || die "the reader's events are not exactly positions $((from + 1))..$to"
  n=$(qdb -c "
    WITH ev AS (SELECT global_position, xmin AS x, (data->>'client')::int AS client,
                       row_number() OVER (PARTITION BY data->>'client' ORDER BY global_position) AS txno
                FROM es_events WHERE global_position > $from AND global_position <= $to),
         ins AS (INSERT INTO lag_samples
                 SELECT $rate, '$place', $round, r.position,
                        1000 * (r.t - (x.epoch + x.us / 1e6)),
                        1000 * (r.t - extract(epoch FROM pg_xact_commit_timestamp(ev.x)))
                 FROM lag_recv r
                 JOIN ev ON ev.global_position = r.position
                 JOIN lag_tx x ON x.client = ev.client AND x.txno = ev.txno
                 RETURNING 1)
    SELECT count(*) FROM ins")
  ((n == to - from)) || die "only $n of $((to - from)) events matched a transaction of pgbench's log"
  DONE_RATE=$(printf '%.0f' "$TPS")
  APPEND_LAT=$(sed -nE 's/^latency average = (.*)$/\1/p' "$log.log")
}

# stats WHERE [COLUMN]: "n p50 p90 p99 max" (ms) of COLUMN (default ms, the
# lag from COMMIT returned; stamp_ms: from the commit stamp) over the samples
# matching WHERE.
stats() {
  local c=${2:-ms}
  qdb -F ' ' -c "
    SELECT count(*),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY $c)::numeric, 2),
           round(percentile_cont(0.9) WITHIN GROUP (ORDER BY $c)::numeric, 2),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY $c)::numeric, 2),
           round(max($c)::numeric, 2)
    FROM lag_samples WHERE $1"
}

RUNS=()
for ((r = 1; r <= ROUNDS; r++)); do
  for rate in $RATES; do
    for place in $(order "$r" primary standby); do
      one_run "$rate" "$place" "$r"
      read -r n p50 p90 p99 pmax <<<"$(stats "rate = $rate AND place = '$place' AND round = $r")"
      read -r _ s50 _ s99 smax <<<"$(stats "rate = $rate AND place = '$place' AND round = $r" stamp_ms)"
      RUNS+=("- round $r, rate $rate, $place: $DONE_RATE appends/s done, append latency $APPEND_LAT on average, $n events; from COMMIT returned p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $pmax ms; from commit stamp p50 $s50 ms, p99 $s99 ms, max $smax ms")
    done
  done
done

out "Lag from COMMIT returned (the targets), and from the commit stamp:"
out ""
out "| rate asked (appends/s) | reader on | events | p50 | p90 | p99 | max | p99 target | from commit stamp: p50 | p99 | max |"
out "|---:|:---|---:|---:|---:|---:|---:|:---|---:|---:|---:|"
MISS=()
for rate in $RATES; do
  for place in primary standby; do
    read -r n p50 p90 p99 pmax <<<"$(stats "rate = $rate AND place = '$place'")"
    read -r _ s50 _ s99 smax <<<"$(stats "rate = $rate AND place = '$place'" stamp_ms)"
    target=$([[ $place == primary ]] && echo 5 || echo 50)
    ok=$(awk -v p="$p99" -v t="$target" 'BEGIN { print (p <= t) ? "met" : "MISSED" }')
    [[ $ok == met ]] || MISS+=("rate $rate, $place: p99 $p99 ms > $target ms")
    out "| $rate | $place | $n | $p50 ms | $p90 ms | **$p99 ms** | $pmax ms | <= $target ms: $ok | $s50 ms | $s99 ms | $smax ms |"
  done
done
out ""
if ((${#MISS[@]})); then out "Targets missed: $(join "${MISS[@]}")"; else out "Every p99 meets its target."; fi
((ROUNDS * DURATION >= 10)) || out "(only $ROUNDS round(s) of $DURATION s: a smoke test, not a measurement)"
out ""
out "Runs:"
out ""
for l in "${RUNS[@]}"; do out "$l"; done
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
