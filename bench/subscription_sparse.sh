#!/usr/bin/env bash
# bench/subscription_sparse.sh: the CPU cost of one poll of a sparse
# subscription (one matching event per 100,000 appended) while 4 clients
# append, interval by interval as the log grows, side by side with the same
# poll hand-rolled on es_events (issue 13: "CPU per poll stays flat as the log
# grows").
#
#   bench/subscription_sparse.sh             10 intervals of 30 s (~5 min,
#                                            the log grows to ~18M events)
#   bench/subscription_sparse.sh --quick     6 intervals of 15 s (~2 min, ~5M)
#   bench/subscription_sparse.sh -i 8 -d 20  8 intervals of 20 s
#   bench/subscription_sparse.sh --build     measure the repository's HEAD
#                                            commit, built into a private directory
#   APPEND_RATE=800 POLL_RATE=10 bench/subscription_sparse.sh
#                                            other rates (defaults 600 batches
#                                            of 100 events/s, 20 polls/s)
#
# Always a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (bench/lib.sh) with the settings of PGCONF below (the script reads the
# pollers' backends' CPU time in /proc, so --existing is refused); one
# database es_sparse_<pid>, dropped at the end.
#
# Load, all at once for the whole run:
#   appenders  pgbench -c 4 -j 2 -R APPEND_RATE bench/subscription_sparse_append.sql
#              (es_append of 100 events to one of 10,000 streams of category
#              'acct'; in one batch of 1,000, the first event is a 'Rare':
#              1 in 100,000 events; synchronous_commit on)
#   subscription poller  pgbench -c 1 -R POLL_RATE bench/subscription_sparse_poll.sql
#              BEGIN; SELECT * FROM es_subscription_read('sparse', 100);
#              when something came, es_subscription_ack('sparse', last); COMMIT
#              (subscription 'sparse': event_types {Rare}, from position 0)
#   naive poller  pgbench -c 1 -R POLL_RATE bench/subscription_sparse_naive.sql
#              the baseline: a checkpoint table of its own (the last match
#              processed) and BEGIN; SELECT * FROM es_events WHERE
#              global_position > :checkpoint AND event_type = 'Rare' ORDER BY
#              global_position LIMIT 100; when something came, UPDATE the
#              checkpoint; COMMIT.  Nothing remembers that the events after
#              its checkpoint held no match, so each poll walks the primary
#              key from the last match to the end: on average half the
#              distance between matches (~50,000 events), however recent the
#              poll before.
# Both pollers poll at the same fixed rate (a consumer polling every
# 1/POLL_RATE s), so each poll of the subscription scans what was appended
# since the one before (APPEND_RATE x 100 / POLL_RATE events).  They run at
# the same time on the same log: side by side, the same noise on both (so
# there are no rounds: -r is ignored).
#
# Measured per interval of -d seconds (-i of them): the log's size at its end
# (max(global_position)), the append rate, and for each poller the polls
# completed (pgbench -l's per-transaction log), the CPU time its backend
# spent (/proc/<pid>/schedstat: time on a CPU, ns, user and system) per
# poll, and the mean wall time of a poll.  The figure of interest is the
# ratio of the last interval's CPU per poll to the first's (flat: ~1.0).
# At the end, with the appenders stopped, one more poll of each, and the
# script checks that both acknowledged the last 'Rare' event.
# Report on stdout (Markdown) and, with the pgbench logs, in a directory
# printed at the end; progress on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=
ROUNDS=
INTERVALS=
EXISTING=0
BUILD=0
APPEND_RATE=${APPEND_RATE:-600}
POLL_RATE=${POLL_RATE:-20}
QUICK=0
for a in "$@"; do [[ $a != --quick ]] || QUICK=1; done
want_i=0
es_bench_option() {
  if ((want_i)); then INTERVALS=$1; want_i=0; return 0; fi
  case $1 in -i|--intervals) want_i=1 ;; *) return 1 ;; esac
}
es_bench_args "$@"
((want_i == 0)) || { echo "-i needs a number of intervals" >&2; exit 2; }
((EXISTING == 0)) || { echo "--existing is not supported: the script reads the server's backends in /proc" >&2; exit 2; }
# --quick sets -d 1 -r 1 (lib.sh): here it means 6 intervals of 15 s
if ((QUICK)); then
  [[ $DURATION != 1 ]] || DURATION=15
  INTERVALS=${INTERVALS:-6}
fi
DURATION=${DURATION:-30}
INTERVALS=${INTERVALS:-10}
[[ $INTERVALS =~ ^[1-9][0-9]*$ ]] || { echo "-i: a positive integer" >&2; exit 2; }
[[ $APPEND_RATE =~ ^[1-9][0-9]*$ && $POLL_RATE =~ ^[1-9][0-9]*$ ]] || { echo "APPEND_RATE and POLL_RATE: positive integers" >&2; exit 2; }

PGCONF=(
  shared_buffers=1GB
  fsync=on
  max_wal_size=16GB        # no checkpoint during the run
  checkpoint_timeout=30min
  autovacuum=off           # no background noise
)
APPEND_RATE=$APPEND_RATE POLL_RATE=$POLL_RATE es_bench_virtualenv -d "$DURATION" -i "$INTERVALS"

# ---------------------------------------------------------------------------
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_sparse.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_sparse_$$"
START=$SECONDS
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
BGPIDS=()
cleanup() {
  local p
  for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT
es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
qdb >/dev/null <<'EOF'
CREATE EXTENSION event_sourcing;
CREATE SEQUENCE sparse_batch;
CREATE TABLE sparse_naive_checkpoint (position bigint NOT NULL);
INSERT INTO sparse_naive_checkpoint VALUES (0);
SELECT es_define_subscription('sparse', event_types => '{Rare}');
EOF

TOTAL=$((INTERVALS * DURATION))
out "# event_sourcing: a sparse subscription (1 event in 100,000) polled while 4 clients append, CPU per poll as the log grows"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(qdb -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine"
out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
out "- extension: $(es_bench_extension)"
out "- appenders: \`pgbench -n -M prepared -c 4 -j 2 -R $APPEND_RATE -T $TOTAL -f bench/subscription_sparse_append.sql\` ($APPEND_RATE batches of 100 events/s, one 'Rare' event per 100,000)"
out "- pollers, at the same time: \`pgbench -n -M prepared -c 1 -R $POLL_RATE -f bench/subscription_sparse_poll.sql\` (es_subscription_read('sparse', 100) + ack) and the same with bench/subscription_sparse_naive.sql (SELECT ... FROM es_events WHERE global_position > :checkpoint AND event_type = 'Rare' ORDER BY global_position LIMIT 100 + UPDATE of its checkpoint table)"
out "- $INTERVALS intervals of $DURATION s; CPU = the poller's backend's time on a CPU (/proc/<pid>/schedstat) per poll completed in the interval"
out ""

# the pollers first, on the empty log; then the appenders
say "es_sparse: logs in $LOGDIR; $INTERVALS intervals of $DURATION s"
for p in sub naive; do
  script=subscription_sparse_poll.sql
  [[ $p == sub ]] || script=subscription_sparse_naive.sql
  PGAPPNAME="es_sparse_$p" pgbench -n -M prepared -c 1 -j 1 -R "$POLL_RATE" -T $((TOTAL + 5)) \
    -l --log-prefix="$LOGDIR/poll_$p" -f "$HERE/$script" "$DB" >"$LOGDIR/poll_$p.out" 2>&1 &
  BGPIDS+=($!)
done
declare -A BPID=()
for ((t = 0; t < 100; t++)); do
  for p in sub naive; do
    BPID[$p]=$(qdb -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'es_sparse_$p' AND datname = current_database()")
  done
  [[ -n ${BPID[sub]} && -n ${BPID[naive]} ]] && break
  sleep 0.1
done
[[ -n ${BPID[sub]} && -n ${BPID[naive]} ]] || die "the pollers' backends did not show up"
PGOPTIONS="-c synchronous_commit=on" pgbench -n -M prepared -c 4 -j 2 -R "$APPEND_RATE" -T "$TOTAL" \
  -f "$HERE/subscription_sparse_append.sql" "$DB" >"$LOGDIR/append.out" 2>&1 &
APID=$!
BGPIDS+=("$APID")

# sample: one line "epoch size cpu_sub_ns cpu_naive_ns" into $LOGDIR/samples
sample() {
  local t cs cn size
  t=$(date +%s.%N)
  cs=$(cut -d' ' -f1 "/proc/${BPID[sub]}/schedstat")
  cn=$(cut -d' ' -f1 "/proc/${BPID[naive]}/schedstat")
  size=$(qdb -c "SELECT coalesce(max(global_position), 0) FROM es_events")
  echo "$t $size $cs $cn" >>"$LOGDIR/samples"
}
sample
for ((i = 1; i <= INTERVALS; i++)); do
  sleep "$DURATION"
  sample
  say "  interval $i: log $(tail -1 "$LOGDIR/samples" | cut -d' ' -f2) events"
done
wait "$APID" || die "the appenders failed: $(cat "$LOGDIR/append.out")"
for p in "${BGPIDS[@]}"; do [[ $p == "$APID" ]] || wait "$p" || die "a poller failed: $(cat "$LOGDIR"/poll_*.out)"; done
BGPIDS=()
for f in append poll_sub poll_naive; do
  failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$LOGDIR/$f.out")
  [[ $failed == 0 ]] || die "$f: failed transactions: $(cat "$LOGDIR/$f.out")"
done

# the appenders stopped: one more poll of each, then both must have
# acknowledged the last 'Rare' event
for s in subscription_sparse_poll.sql subscription_sparse_naive.sql; do
  es_bench_pgbench "$LOGDIR/final_${s%.sql}.log" -c 1 -t 1 -f "$HERE/$s" "$DB"
done
read -r RARE LASTRARE SUBPOS NAIVEPOS < <(qdb -F ' ' -c "SELECT count(*), max(global_position),
    (SELECT position FROM es_subscription_members WHERE name = 'sparse'), (SELECT position FROM sparse_naive_checkpoint)
  FROM es_events WHERE event_type = 'Rare'")
[[ $SUBPOS == "$LASTRARE" && $NAIVEPOS == "$LASTRARE" ]] \
  || die "last 'Rare' event at $LASTRARE, but the subscription acknowledged $SUBPOS and the naive consumer $NAIVEPOS"

# polls per interval and their mean latency, from pgbench -l (fields: client,
# transaction, latency us, script, epoch s, us)
cat "$LOGDIR"/poll_sub.* >"$LOGDIR/tx_sub"
cat "$LOGDIR"/poll_naive.* >"$LOGDIR/tx_naive"
# interval_stats FILE T0 T1: "polls mean_latency_ms" of the polls that ended in (T0, T1]
interval_stats() {
  awk -v a="$2" -v b="$3" '{ t = $5 + $6 / 1e6; if (t > a && t <= b) { n++; l += $3 } }
    END { printf "%d %.3f\n", n, n ? l / n / 1000 : 0 }' "$1"
}
mapfile -t S <"$LOGDIR/samples"
out "| interval | log size at the end | appended (events/s) | subscription: polls | CPU µs per poll | wall ms per poll | naive: polls | CPU µs per poll | wall ms per poll | naive / subscription (CPU) |"
out "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
FIRST_S="" FIRST_N="" LAST_S="" LAST_N=""
for ((i = 1; i < ${#S[@]}; i++)); do
  read -r t0 z0 s0 n0 <<<"${S[i - 1]}"
  read -r t1 z1 s1 n1 <<<"${S[i]}"
  read -r ps ls < <(interval_stats "$LOGDIR/tx_sub" "$t0" "$t1")
  read -r pn ln < <(interval_stats "$LOGDIR/tx_naive" "$t0" "$t1")
  rate=$(awk -v a="$z0" -v b="$z1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", (b - a) / (e - s) }')
  cs=$(awk -v a="$s0" -v b="$s1" -v n="$ps" 'BEGIN { printf "%.0f", n ? (b - a) / n / 1000 : 0 }')
  cn=$(awk -v a="$n0" -v b="$n1" -v n="$pn" 'BEGIN { printf "%.0f", n ? (b - a) / n / 1000 : 0 }')
  out "| $i | $z1 | $rate | $ps | $cs | $ls | $pn | $cn | $ln | $(ratio "$cn" "$cs") |"
  [[ -n $FIRST_S ]] || FIRST_S=$cs FIRST_N=$cn
  LAST_S=$cs LAST_N=$cn
done
out ""
out "CPU per poll, last interval / first: subscription **$(ratio "$LAST_S" "$FIRST_S")**, naive $(ratio "$LAST_N" "$FIRST_N")."
out ""
out "- $RARE 'Rare' events in $(qdb -c "SELECT max(global_position) FROM es_events") events; after the run both consumers had acknowledged the last one (position $LASTRARE)"
out "- appenders: $(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$LOGDIR/append.out") batches/s (target $APPEND_RATE); es_events $(qdb -c "SELECT pg_size_pretty(pg_total_relation_size('es_events'))") with its indexes at the end"
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
