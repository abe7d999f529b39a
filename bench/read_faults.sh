#!/usr/bin/env bash
# bench/read_faults.sh: minor page faults and time per call of the read
# functions, against the plain SELECTs they replace (issue 14: "no per-call
# page-fault storm").
#
#   bench/read_faults.sh --build            measure the repository's HEAD
#                                           commit, built into a private directory
#   bench/read_faults.sh -n 500000          events in the log (default 200,000)
#   bench/read_faults.sh --existing         the server libpq's environment
#                                           points at (a new database in it;
#                                           superuser: reads /proc/self/stat)
#
# Default: a throwaway PostgreSQL 15 cluster (bench/lib.sh), shared_buffers
# 512MB.  Data: N events inserted directly into es_events (superuser), as
# bench/scale_fill.sql does: every 20th position (N = 200,000: 10,000 events)
# in stream 'load-10000', the rest round-robin over 'bench-1' .. 'bench-10000'.
#
# Each variant is one psql session (one backend) that runs CALLS statements,
# each its own transaction, rows sent to the client (psql, output to
# /dev/null); the backend's own minor page faults (field 10 of
# /proc/self/stat, read by the backend itself with pg_read_file) are taken
# before and after, after a discarded warm-up of 20 calls in the same
# session:
#   es_read_all   SELECT * FROM es_read_all(<after>, 1000), after = 0, 1000, ...
#   keyset SELECT SELECT * FROM es_events WHERE global_position > <after>
#                 ORDER BY global_position LIMIT 1000
#   es_load       SELECT * FROM es_load('load-10000')
#   SELECT        SELECT * FROM es_events WHERE stream_id = 'load-10000'
#                 ORDER BY stream_version (index scan forced:
#                 enable_bitmapscan = off, enable_sort = off)
# Prints faults per call and ms per call (wall time of the session / CALLS;
# one run each: a rough figure, the ratios belong to catchup_bench.sh and
# scale_bench.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=
ROUNDS=1
EXISTING=0
BUILD=0
EVENTS=200000
want_n=0
es_bench_option() {
  if ((want_n)); then EVENTS=$1; want_n=0; return 0; fi
  case $1 in -n|--events) want_n=1 ;; *) return 1 ;; esac
}
es_bench_args "$@"
[[ $EVENTS =~ ^[1-9][0-9]*0000$ ]] || { echo "-n: a positive multiple of 10,000" >&2; exit 2; }
PGCONF=(shared_buffers=512MB autovacuum=off max_wal_size=8GB)
es_bench_virtualenv -n "$EVENTS"

unset PGOPTIONS
DB="es_faults_$$"
es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
qdb -c "CREATE EXTENSION event_sourcing" >/dev/null
say "loading $EVENTS events"
qdb -v events="$EVENTS" -f "$HERE/read_fill.sql" >/dev/null

FAULTS="SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 10)::bigint AS faults \\gset"
# measure NAME CALLS SETTINGS GEN: GEN I prints the statement of call I.
measure() {
  local name=$1 calls=$2 settings=$3 gen=$4 f0 f1 t0 t1 out
  out=$( {
    echo "$settings"
    for ((i = 0; i < 20; i++)); do $gen "$i"; done
    echo "$FAULTS"
    echo "\\set f0 :faults"
    echo "SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset"
    for ((i = 20; i < 20 + calls; i++)); do $gen "$i"; done
    echo "$FAULTS"
    echo "SELECT extract(epoch FROM clock_timestamp()) AS t1 \\gset"
    echo "\\echo RESULT :f0 :faults :t0 :t1"
  } | PGOPTIONS='-c client_min_messages=warning' psql -X -q -d "$DB" -o /dev/null 2>&1 | grep '^RESULT')
  read -r _ f0 f1 t0 t1 <<<"$out"
  awk -v n="$name" -v c="$calls" -v f0="$f0" -v f1="$f1" -v t0="$t0" -v t1="$t1" \
    'BEGIN { printf "| %s | %d | %.1f | %.3f |\n", n, c, (f1 - f0) / c, (t1 - t0) * 1000 / c }'
}
PAGES=$((EVENTS / 1000 - 20))
gen_read_all() { echo "SELECT * FROM es_read_all($(( ($1 % (EVENTS / 1000)) * 1000 )), 1000);"; }
gen_keyset() { echo "SELECT * FROM es_events WHERE global_position > $(( ($1 % (EVENTS / 1000)) * 1000 )) ORDER BY global_position LIMIT 1000;"; }
gen_load() { echo "SELECT * FROM es_load('load-10000');"; }
gen_select() { echo "SELECT * FROM es_events WHERE stream_id = 'load-10000' ORDER BY stream_version;"; }

echo "# read faults: $(es_bench_extension); $EVENTS events; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo ""
echo "| statement | calls | minor faults per call | ms per call |"
echo "|:---|---:|---:|---:|"
measure "es_read_all(after, 1000)" "$PAGES" "" gen_read_all
measure "keyset SELECT ... LIMIT 1000" "$PAGES" "" gen_keyset
measure "es_load('load-10000')" 100 "" gen_load
measure "SELECT ... ORDER BY stream_version (index scan)" 100 "SET enable_bitmapscan = off; SET enable_sort = off;" gen_select
