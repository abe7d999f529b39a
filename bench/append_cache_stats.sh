#!/usr/bin/env bash
# bench/append_cache_stats.sh: what one append costs in buffers, head reads
# and WAL on a large store, es_append against the plain INSERT (issue 14:
# what grows with the store's size).  Counts, not only times: the shared
# buffer accesses per event of each relation of the table (heap and each
# index), the reads of a stream's head from the (stream_id, stream_version)
# index (the head cache's misses: each is one scan of that index, which
# nothing else in an append without event ids makes), and WAL records,
# full-page images and bytes per event.
#
#   bench/append_cache_stats.sh --build             1M events, -d 5 -r 3
#   SIZE=10000000 bench/append_cache_stats.sh --build
#                                                   10M (fill about 6 min)
#   HEAD_CACHE_SIZE=0 bench/append_cache_stats.sh   no head cache (every
#                                                   append reads the index)
#   SHARED_BUFFERS=2GB bench/append_cache_stats.sh  (default 512MB)
#   bench/append_cache_stats.sh -d 10 -r 4          4 rounds of 10 s runs
#   bench/append_cache_stats.sh --existing          the server libpq's
#                                                   environment points at
#
# Default: a throwaway PostgreSQL 15 cluster (bench/lib.sh, pg_virtualenv)
# with the settings of bench/scale_bench.sh (the library preloaded, fsync on,
# autovacuum off, no checkpoint during the runs), a database es_cstats_<pid>
# dropped at the end.  Must run as a superuser (the pre-fill inserts into
# es_events directly).
#
# 1. Pre-fill as bench/scale_bench.sh (bench/scale_fill.sql): SIZE identical
#    rows in es_events and bench_insert (and pl_events, unused here), 10,000
#    streams round-robin; VACUUM ANALYZE, CHECKPOINT.
# 2. One discarded warm-up run of each variant (it also fills the head cache
#    and takes the first full-page images after the checkpoint), then -r
#    rounds of one -d s run of each, the order reversed every round: 4
#    clients (-j 2), one event per transaction, synchronous_commit off,
#    bench/es_append_1.sql vs bench/insert_1.sql (random streams 'bench-1'
#    .. 'bench-10000').  Around each run the counters of pg_statio_user_tables,
#    pg_statio_user_indexes, pg_stat_user_indexes (idx_scan) and pg_stat_wal
#    are read, after the run's backends have exited (their statistics are
#    flushed at exit), and the CPU time of the postmaster's exited children
#    (/proc/<postmaster>/stat cutime + cstime: the run's backends); divided
#    by the events the run stored.
#
# Prints, per variant, the median of the rounds: events/s, buffer accesses
# per event (hits + reads) of the heap and each index, of which reads (from
# the kernel), head reads per append, WAL per event.  Every round is listed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=5
ROUNDS=3
EXISTING=0
BUILD=0
es_bench_args "$@"
SIZE=${SIZE:-1000000}
SHARED_BUFFERS=${SHARED_BUFFERS:-512MB}
HEAD_CACHE_SIZE=${HEAD_CACHE_SIZE:-65536}
[[ $SIZE =~ ^[1-9][0-9]*0000$ && $SIZE -ge 100000 ]] || { echo "SIZE: a multiple of 10,000 from 100,000" >&2; exit 2; }
[[ $HEAD_CACHE_SIZE =~ ^[0-9]+$ ]] || { echo "HEAD_CACHE_SIZE: a number of entries" >&2; exit 2; }

PGCONF=(
  "shared_buffers=$SHARED_BUFFERS"
  fsync=on
  max_wal_size=32GB
  min_wal_size=2GB
  checkpoint_timeout=1h
  autovacuum=off
  maintenance_work_mem=256MB
  shared_preload_libraries=event_sourcing
  "event_sourcing.head_cache_size=$HEAD_CACHE_SIZE"
)

SIZE="$SIZE" SHARED_BUFFERS="$SHARED_BUFFERS" HEAD_CACHE_SIZE="$HEAD_CACHE_SIZE" \
  es_bench_virtualenv -d "$DURATION" -r "$ROUNDS"

# ---------------------------------------------------------------------------
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_cstats.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_cstats_$$"
START=$SECONDS

qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }

es_bench_require_extension
[[ $(q -d postgres -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == t ]] \
  || die "the pre-fill inserts into es_events directly: run as a superuser"
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
qdb -c "CREATE EXTENSION event_sourcing" -f "$HERE/setup.sql" >/dev/null

# counters TABLE: "name value" lines: per relation of TABLE (heap, each
# index, by a role name) hits and reads, the stream index's scans, WAL.
counters() {
  qdb -F ' ' <<EOF
SELECT 'heap_hit', heap_blks_hit FROM pg_statio_user_tables WHERE relid = '$1'::regclass
UNION ALL SELECT 'heap_read', heap_blks_read FROM pg_statio_user_tables WHERE relid = '$1'::regclass
UNION ALL SELECT CASE WHEN indexrelname ~ 'pkey\$' THEN 'pkey' WHEN indexrelname ~ 'category' THEN 'category'
                      WHEN indexrelname ~ 'event_id' THEN 'event_id' ELSE 'stream' END || '_hit', idx_blks_hit
  FROM pg_statio_user_indexes WHERE relid = '$1'::regclass
UNION ALL SELECT CASE WHEN indexrelname ~ 'pkey\$' THEN 'pkey' WHEN indexrelname ~ 'category' THEN 'category'
                      WHEN indexrelname ~ 'event_id' THEN 'event_id' ELSE 'stream' END || '_read', idx_blks_read
  FROM pg_statio_user_indexes WHERE relid = '$1'::regclass
UNION ALL SELECT 'stream_scans', idx_scan FROM pg_stat_user_indexes
  WHERE relid = '$1'::regclass AND indexrelname ~ 'stream'
UNION ALL SELECT 'wal_records', wal_records FROM pg_stat_wal
UNION ALL SELECT 'wal_fpi', wal_fpi FROM pg_stat_wal
UNION ALL SELECT 'wal_bytes', wal_bytes FROM pg_stat_wal
UNION ALL SELECT 'cpu_ticks', split_part(st, ' ', 16)::bigint + split_part(st, ' ', 17)::bigint
  FROM pg_read_file('/proc/' || split_part(pg_read_file('postmaster.pid'), E'\\n', 1) || '/stat') st
ORDER BY 1
EOF
}

# idle: wait until no other backend is connected to DB (pgbench's have
# flushed their statistics at exit).
idle() {
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $(qdb -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()") == 0 ]] && return
    sleep 0.1
  done
  die "pgbench's backends did not exit"
}

top() { qdb -c "SELECT coalesce(max(global_position), 0) FROM $1"; }

declare -A SCRIPT=([es]=es_append_1.sql [insert]=insert_1.sql)
declare -A TABLE=([es]=es_events [insert]=bench_insert)
KEYS=(tps cpu_us heap stream event_id pkey category reads head_reads wal_records wal_fpi wal_bytes)
declare -A VAL=()   # VAL[variant,key] = "round values "

# measure VARIANT [warmup]: one run with its counters.
measure() {
  local v=$1 log before after tx
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-%s.log' "$LOGDIR" "$RUN" "$v")
  say "  run $RUN: $v${2:+ (warm-up)}"
  idle
  before=$(counters "${TABLE[$v]}")
  local top0; top0=$(top "${TABLE[$v]}")
  PGOPTIONS="-c synchronous_commit=off" es_bench_pgbench "$log" -c 4 -j 2 -T "$DURATION" -f "$HERE/${SCRIPT[$v]}" "$DB"
  idle
  after=$(counters "${TABLE[$v]}")
  tx=$(($(top "${TABLE[$v]}") - top0))
  ((tx == TX)) || die "$v: $tx rows stored, pgbench reports $TX"
  [[ -n ${2:-} ]] && return
  # per event: join the two snapshots by name
  local line
  line=$(command join -j 1 <(sort <<<"$before") <(sort <<<"$after") | awk -v tx="$tx" -v tps="$TPS" -v ticks="$(getconf CLK_TCK)" '
    { d[$1] = ($3 - $2) / tx }
    END {
      printf "tps=%.0f heap=%.3f stream=%.3f event_id=%.3f pkey=%.3f category=%.3f ", tps,
        d["heap_hit"] + d["heap_read"], d["stream_hit"] + d["stream_read"], d["event_id_hit"] + d["event_id_read"],
        d["pkey_hit"] + d["pkey_read"], d["category_hit"] + d["category_read"]
      printf "cpu_us=%.2f ", d["cpu_ticks"] * 1e6 / ticks
      printf "reads=%.4f head_reads=%.4f wal_records=%.3f wal_fpi=%.4f wal_bytes=%.0f\n",
        d["heap_read"] + d["stream_read"] + d["event_id_read"] + d["pkey_read"] + d["category_read"],
        d["stream_scans"], d["wal_records"], d["wal_fpi"], d["wal_bytes"] }')
  local kv
  for kv in $line; do VAL[$v,${kv%%=*}]+="${kv#*=} "; done
}

say "es_cstats: logs in $LOGDIR"
out "# es_append vs INSERT: buffers, head reads and WAL per event at $SIZE stored events"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(qdb -c 'SELECT version()')"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), database $DB"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- command: \`$(printf '%q ' SIZE="$SIZE" HEAD_CACHE_SIZE="$HEAD_CACHE_SIZE" SHARED_BUFFERS="$SHARED_BUFFERS" bench/append_cache_stats.sh -d "$DURATION" -r "$ROUNDS")$([[ -z ${ES_BENCH_BUILT:-} ]] || echo '--build')\`"
out "- appends: 4 clients (-j 2), 1 event/tx, synchronous_commit=off, \`pgbench -n -M prepared -T $DURATION\`, a discarded warm-up run of each, then $ROUNDS round(s), order reversed every round; median of the rounds"
out ""

ts=$(qdb -c "SELECT now() - interval '1 hour' - $SIZE * interval '1 millisecond'")
for ((lo = 1; lo <= SIZE; lo += 1000000)); do
  hi=$((lo + 999999)); ((hi <= SIZE)) || hi=$SIZE
  say "  pre-fill $lo..$hi of $SIZE"
  qdb -v n="$SIZE" -v lo="$lo" -v hi="$hi" -v t0="$ts" -f "$HERE/scale_fill.sql" >/dev/null
done
qdb -c "SELECT setval('es_events_global_position_seq', $SIZE), setval('bench_insert_seq', $SIZE), setval('pl_events_seq', $SIZE)" >/dev/null
say "  VACUUM ANALYZE, CHECKPOINT"
qdb -c "VACUUM ANALYZE es_events" -c "VACUUM ANALYZE bench_insert" -c "CHECKPOINT" >/dev/null

for v in es insert; do measure "$v" warmup; done
for ((r = 1; r <= ROUNDS; r++)); do
  for v in $(order "$r" es insert); do measure "$v"; done
done

out "| per event | es_append | INSERT |"
out "|---|---:|---:|"
for k in "${KEYS[@]}"; do
  # shellcheck disable=SC2086
  f=%.3f
  case $k in tps | wal_bytes) f=%.0f ;; cpu_us) f=%.1f ;; reads | head_reads | wal_fpi) f=%.4f ;; esac
  out "| $k | $(median_fmt $f ${VAL[es,$k]}) | $(median_fmt $f ${VAL[insert,$k]}) |"
done
out ""
out "(tps: events/s; cpu_us: CPU time of the server's backends per event (user + system, of the processes that exited during the run: pgbench's sessions and the script's own, read from the postmaster's cutime and cstime; less noisy than tps when other work shares the machine); heap, stream, event_id, pkey, category: shared buffer accesses (hits + reads) of the heap and each index; reads: of those, not found in shared buffers; head_reads: scans of the (stream_id, stream_version) index, i.e. head cache misses of es_append; wal_*: records, full-page images, bytes)"
out ""
out "Rounds (in order):"
out ""
for v in es insert; do
  for k in "${KEYS[@]}"; do
    # shellcheck disable=SC2086
    out "- $v $k: $(join ${VAL[$v,$k]})"
  done
done
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
