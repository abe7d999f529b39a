#!/usr/bin/env bash
# bench/aggregate_bench.sh: es_aggregate with snapshots over short and long
# streams, and es_aggregate's C fold loop against CREATE AGGREGATE, with
# pgbench.
#
#   bench/aggregate_bench.sh              full run (~7 min on 2 cores: 6 rounds of 3 s runs)
#   bench/aggregate_bench.sh --quick      smoke test (-d 1 -r 1, ~40 s)
#   bench/aggregate_bench.sh -d 5 -r 5    5 rounds of 5 s runs
#   bench/aggregate_bench.sh --existing   use the server that PGHOST/PGPORT/
#                                         PGUSER/... point at, not a new one
#   bench/aggregate_bench.sh --build      benchmark the repository's HEAD
#                                         commit, built into a private directory
#
# --build exports HEAD (git archive) to a temporary directory, builds it and
# installs it there (make install DESTDIR=...), and points the throwaway
# cluster at it (Debian's extension_destdir and dynamic_library_path), so
# the run measures that one commit even if someone runs make install
# meanwhile; the report names the commit.  Without --build the installed
# extension is measured (make && make install first).
#
# Default: a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (temporary directory, removed at the end) with the settings in PGCONF below
# (the same as append_bench.sh: fsync turned back on), printed in the report.
# With --existing the server's own settings apply (also printed); the role
# must be allowed to CREATE DATABASE and CREATE EXTENSION event_sourcing, and
# the C evolve below is skipped unless it is a superuser.  Either way
# everything happens in a new database, es_aggbench_<pid>, dropped at the
# end.  Every connection runs with jit=off (PGOPTIONS): the CREATE AGGREGATE
# queries over 10,000 rows would otherwise pass jit_above_cost and pay for
# compiling, which is no part of folding (es_aggregate never uses JIT).
#
# Part 1, snapshots: fold cost is flat in stream length.  The aggregate of
# category 'acct' is examples/bank_account.sql's bank_evolve (SQL) with
# snapshot_every = 100.  Streams acct-100 and acct-100000 (AccountOpened, then
# MoneyDeposited {"amount": 10}; es_append batches of 1,000 events).  A first
# fold of each, untimed, stores its snapshot (at version 100 and 100,000);
# then, alternating:
#   bench/aggregate_es_acct_100.sql      SELECT * FROM es_aggregate('acct-100')
#   bench/aggregate_es_acct_100000.sql   SELECT * FROM es_aggregate('acct-100000')
#   bench/aggregate_roundtrip.sql        a constant row of the same shape: the
#                                        round-trip floor, for context
# first with 0 events past the snapshot, then again after appending 50 events
# to each stream (fewer than snapshot_every, so those folds store nothing and
# every call folds the same 50 events from the snapshot).  es_fold_count()
# deltas of single calls and the snapshots stored are reported as evidence.
# Target: 100,000-event time / 100-event time within 2x.
#
# Part 2, the fold loop: es_aggregate against CREATE AGGREGATE.  Stream big-1,
# 10,000 events; the aggregate of category 'big' has snapshot_every = 0 (no
# snapshots: every call folds all 10,000 events).  For each evolve, 'big' is
# redefined with it and
#   CREATE AGGREGATE fold_agg(es_events) (SFUNC = <evolve>, STYPE = jsonb,
#                                         INITCOND = '<initial state>')
# and these run alternating:
#   bench/aggregate_es_big.sql             SELECT * FROM es_aggregate('big-1')
#   bench/aggregate_fold_load.sql          SELECT fold_agg(e ORDER BY stream_version) FROM es_load('big-1') e
#   bench/aggregate_fold_load_unordered.sql
#                                          SELECT fold_agg(e) FROM (SELECT * FROM es_load('big-1')) e
#   bench/aggregate_fold_table.sql         SELECT fold_agg(e ORDER BY stream_version) FROM es_events e
#                                          WHERE stream_id = 'big-1'
# Evolves (bench/aggregate_setup.sql, bench/aggregate_c_evolve.sql):
#   bank_evolve          SQL, examples/bank_account.sql (the real work)
#   noop_sql_evolve      SQL, SELECT state
#   noop_plpgsql_evolve  PL/pgSQL, BEGIN RETURN state; END
#   c_evolve             C (superuser only): built-in jsonb_strip_nulls, which
#                        reads only its first argument and returns a copy
# The script checks that all four queries return the same state, and that
# es_aggregate folds 10,000 events per call and stores no snapshot.
# Target: es_aggregate calls/s / CREATE AGGREGATE calls/s >= 1.0.
#
# Part 3, SQL callbacks at expression speed: bank_evolve (SQL, one SELECT
# of a CASE expression: evaluated as that expression, src/inline.c) against
# the same SQL function called through the function manager
# (event_sourcing.inline_sql_callbacks = off in PGOPTIONS) and against the
# same logic in PL/pgSQL (bank_evolve_plpgsql, bench/aggregate_setup.sql).
# 'big' is redefined with bank_evolve; 'bigpl' (stream bigpl-1, the same
# 10,000 events) has bank_evolve_plpgsql; snapshot_every = 0 for both:
#   bench/aggregate_es_big.sql        SELECT * FROM es_aggregate('big-1')      (SQL, inlined)
#   bench/aggregate_es_big_off.sql    the same, with the setting off           (SQL, fmgr)
#   bench/aggregate_es_bigpl.sql      SELECT * FROM es_aggregate('bigpl-1')    (PL/pgSQL)
# The script checks that the three return the same state and, at DEBUG1,
# that bank_evolve is reported "evaluated as an expression" (and not with
# the setting off).
#
# Method.  All runs in one cluster, 1 client, pgbench -n -M prepared -c 1
# -j 1.  Every variant of a comparison runs once per round, -r N rounds
# (default 6) of -d SEC runs (default 3 s); the order is reversed from one
# round to the next, so drift and bursts of noise hit all variants alike.
# The tables show the median of the rounds (calls/s, and ms per call =
# 1000 / calls/s); every run is listed under "Runs".  Ratios are the median
# of the per-round ratios (paired: a round's runs are adjacent in time, so a
# change in the machine's speed from one round to the next cancels out).  A discarded warm-up
# precedes each part.  Streams are built once and VACUUM ANALYZEd; the timed
# calls write nothing.
#
# The report goes to stdout (Markdown) and, with every pgbench log, to a
# directory printed at the end.  Progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=3
ROUNDS=6
EXISTING=0
BUILD=0
CMDLINE="bench/aggregate_bench.sh${*:+ $*}"

es_bench_args "$@"

# Settings of the throwaway cluster (pg_virtualenv -o), as in append_bench.sh.
PGCONF=(
  shared_buffers=1GB       # everything stays in memory
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=8GB         # no checkpoint during a run
  min_wal_size=2GB
  checkpoint_timeout=30min
  autovacuum=off           # no background noise
)

ES_BENCH_CMDLINE=$CMDLINE es_bench_virtualenv -d "$DURATION" -r "$ROUNDS"

# ---------------------------------------------------------------------------
# From here on, libpq's environment points at the server to use.
CMDLINE=${ES_BENCH_CMDLINE:-$CMDLINE}
export PGOPTIONS='-c jit=off'
LOGDIR=$(mktemp -d -t es_aggbench.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_aggbench_$$"
BANK_INIT='{"status": "new", "balance": 0, "transactions": 0}'
SMALL_INIT='{"n": 0}'

qdb() { PGOPTIONS="$PGOPTIONS -c client_min_messages=warning" q -d "$DB" "$@"; }

es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

qdb -c "CREATE EXTENSION event_sourcing" -f "$HERE/../examples/bank_account.sql" \
    -f "$HERE/aggregate_setup.sql" >/dev/null
EVOLVES=(bank noop_sql noop_plpgsql)
if [[ $(qdb -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == t ]]; then
  qdb -f "$HERE/aggregate_c_evolve.sql" >/dev/null
  EVOLVES+=(c)
fi
declare -A EV_FN=([bank]=bank_evolve [noop_sql]=noop_sql_evolve [noop_plpgsql]=noop_plpgsql_evolve [c]=c_evolve)
declare -A EV_INIT=([bank]=$BANK_INIT [noop_sql]=$SMALL_INIT [noop_plpgsql]=$SMALL_INIT [c]=$SMALL_INIT)
declare -A EV_DESC=([bank]="bank_evolve (SQL, examples/bank_account.sql)" [noop_sql]="noop_sql_evolve (SQL, \`SELECT state\`)"
                    [noop_plpgsql]="noop_plpgsql_evolve (PL/pgSQL, \`RETURN state\`)" [c]="c_evolve (C: built-in jsonb_strip_nulls)")

# pgrun NAME SCRIPT SECONDS: one pgbench run, 1 client, with the script's
# SCRIPT_OPTS added to PGOPTIONS; sets TPS.
declare -A SCRIPT_OPTS=([aggregate_es_big_off.sql]='-c event_sourcing.inline_sql_callbacks=off')
pgrun() {
  local name=$1 script=$2 secs=$3 log
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-%s.log' "$LOGDIR" "$RUN" "$name")
  say "  run $RUN: $name (${secs}s)"
  PGOPTIONS="$PGOPTIONS${SCRIPT_OPTS[$script]:+ ${SCRIPT_OPTS[$script]}}" \
    es_bench_pgbench "$log" -c 1 -j 1 -T "$secs" -f "$HERE/$script" "$DB"
  [[ -n $TPS ]] || die "cannot parse $log"
}

# median VALUE...: here with 3 decimals (lib.sh's rounds to an integer).
median() { median_fmt %.3f "$@"; }
# pratio "A1 A2 ..." "B1 B2 ...": the median over rounds of Ai / Bi (paired:
# the runs of one round are adjacent in time, so a change in the machine's
# speed between rounds cancels out).
pratio() {
  local -a a b rs=()
  local i
  read -ra a <<<"$1"; read -ra b <<<"$2"
  for i in "${!a[@]}"; do rs+=("$(awk -v x="${a[i]}" -v y="${b[i]}" 'BEGIN { printf "%.6f", x / y }')"); done
  median "${rs[@]}" | awk '{ printf "%.2f", $1 }'
}
# cps TPS: calls/s, rounded to what matters; ms TPS: ms per call; us TPS N: us per event.
cps() { awk -v t="$1" 'BEGIN { printf (t >= 100 ? "%.0f" : "%.1f"), t }'; }
ms() { awk -v t="$1" 'BEGIN { m = 1000 / t; printf (m < 1 ? "%.3f" : m < 100 ? "%.2f" : "%.1f"), m }'; }
# above TPS FLOOR_TPS: us per call above the round-trip floor.
above() { awk -v t="$1" -v f="$2" 'BEGIN { printf "%.0f", 1e6 / t - 1e6 / f }'; }
us() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.2f", 1e6 / t / n }'; }
# rounds NAME SCRIPT...: ROUNDS rounds of the scripts, alternating; sets
# MED[script] (median calls/s) and ALL[script] (every run).
declare -A MED=() ALL=()
rounds() {
  local name=$1 r f; shift
  MED=() ALL=()
  for ((r = 1; r <= ROUNDS; r++)); do
    for f in $(order "$r" "$@"); do
      pgrun "$name-${f%.sql}" "$f" "$DURATION"
      ALL[$f]+="$(printf '%.2f' "$TPS") "
    done
  done
  for f in "$@"; do
    # shellcheck disable=SC2086
    MED[$f]=$(median ${ALL[$f]})
  done
}
# probe STREAM: one es_aggregate call in a fresh session; prints
# "events folded (es_fold_count delta)|ms|version".
probe() {
  qdb -F '|' <<EOF
SELECT es_fold_count() AS b, clock_timestamp() AS t \gset
SELECT version AS v FROM es_aggregate('$1') \gset
SELECT es_fold_count() - :b, round(extract(epoch FROM clock_timestamp() - :'t'::timestamptz) * 1000, 1), :v;
EOF
}
# snapshots STREAM: "count (versions)" of the stream's stored snapshots.
snapshots() {
  qdb -c "SELECT count(*) || coalesce(' (at ' || string_agg(version::text, ', ' ORDER BY version) || ')', '') FROM es_snapshots WHERE stream_id = '$1'"
}

# ---------------------------------------------------------------------------
say "es_aggbench: logs in $LOGDIR"
out "# event_sourcing aggregate benchmark"
out ""
out "- command: \`$CMDLINE\`"
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine)"
out "- server: $(qdb -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine, connecting to ${PGHOST:-the default socket}"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), database $DB"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- server settings (sessions run with PGOPTIONS='$PGOPTIONS'): $(qdb -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','fsync','synchronous_commit','work_mem','max_wal_size','checkpoint_timeout','autovacuum','jit')")"
out "- pgbench: \`pgbench -n -M prepared -c 1 -j 1 -T $DURATION -f bench/<script>\`"
out "- $ROUNDS round(s) of one $DURATION s run per variant, the order reversed every round; the tables show the median (calls/s; ms per call = 1000 / calls/s); ratios are the median of the per-round ratios"
out ""

say "building the streams"
qdb >/dev/null <<EOF
SELECT es_define_aggregate('acct', 'bank_evolve(jsonb, es_events)', initial_state => '$BANK_INIT', snapshot_every => 100);
SELECT es_define_aggregate('big', 'bank_evolve(jsonb, es_events)', initial_state => '$BANK_INIT', snapshot_every => 0);
SELECT es_define_aggregate('bigpl', 'bank_evolve_plpgsql(jsonb, es_events)', initial_state => '$BANK_INIT', snapshot_every => 0);
SELECT bench_fill('acct-100', 100), bench_fill('acct-100000', 100000), bench_fill('big-1', 10000), bench_fill('bigpl-1', 10000);
VACUUM ANALYZE;
EOF
for s in acct-100:100 acct-100000:100000 big-1:10000 bigpl-1:10000; do
  [[ $(qdb -c "SELECT es_stream_version('${s%%:*}')") == "${s#*:}" ]] || die "${s%%:*} does not have ${s#*:} events"
done

# ---------------------------------------------------------------------------
say "part 1: snapshots"
declare -A FIRST=() SECOND=() SNAP=()
for s in acct-100 acct-100000; do
  FIRST[$s]=$(probe "$s")        # folds everything, stores the snapshot
  SNAP[$s]=$(snapshots "$s")
  SECOND[$s]=$(probe "$s")       # from the snapshot
done
[[ ${FIRST[acct-100]%%|*} == 100 && ${FIRST[acct-100000]%%|*} == 100000 ]] || die "first folds: ${FIRST[*]}"
[[ ${SNAP[acct-100]} == "1 (at 100)" && ${SNAP[acct-100000]} == "1 (at 100000)" ]] || die "snapshots after the first folds: ${SNAP[*]}"
[[ ${SECOND[acct-100]%%|*} == 0 && ${SECOND[acct-100000]%%|*} == 0 ]] || die "second folds: ${SECOND[*]}"
qdb -c "VACUUM ANALYZE es_snapshots" >/dev/null

say "warm-up (discarded)"
pgrun warmup aggregate_es_acct_100000.sql "$DURATION"

P1_ROWS=() P1_RUNS=() P1_LOW=()
# part1 PAST: one row of the table.
part1() {
  local past=$1 a b f d100 d100k s100 s100k t
  d100=$(probe acct-100) d100k=$(probe acct-100000)
  [[ ${d100%%|*} == "$past" && ${d100k%%|*} == "$past" ]] || die "with $past events past the snapshot, folds did ${d100%%|*} and ${d100k%%|*} events"
  rounds "past$past" aggregate_roundtrip.sql aggregate_es_acct_100.sql aggregate_es_acct_100000.sql
  a=${MED[aggregate_es_acct_100.sql]} b=${MED[aggregate_es_acct_100000.sql]} f=${MED[aggregate_roundtrip.sql]}
  s100=$(snapshots acct-100) s100k=$(snapshots acct-100000)
  [[ $s100 == "${SNAP[acct-100]}" && $s100k == "${SNAP[acct-100000]}" ]] || die "the timed folds stored snapshots: $s100; $s100k"
  t=$(pratio "${ALL[aggregate_es_acct_100.sql]}" "${ALL[aggregate_es_acct_100000.sql]}")
  P1_ROWS+=("| $past | $(ms "$a") | $(cps "$a") | $(ms "$b") | $(cps "$b") | $t | $(ms "$f") | $(above "$a" "$f") / $(above "$b" "$f") | ${d100%%|*} / ${d100k%%|*} |")
  awk -v t="$t" 'BEGIN { exit !(t > 2) }' && P1_LOW+=("$past past: $t")
  # shellcheck disable=SC2086
  P1_RUNS+=("- $past events past the snapshot: acct-100 $(join ${ALL[aggregate_es_acct_100.sql]}); acct-100000 $(join ${ALL[aggregate_es_acct_100000.sql]}); floor $(join ${ALL[aggregate_roundtrip.sql]})")
}
part1 0
say "appending 50 events to each stream"
qdb -c "SELECT bench_fill('acct-100', 50), bench_fill('acct-100000', 50)" -c "VACUUM ANALYZE es_events" >/dev/null
part1 50

out "## 1. Fold cost with snapshots (snapshot_every = 100, bank_evolve): 100 vs 100,000 events"
out ""
out "Category 'acct' = examples/bank_account.sql's bank_evolve (SQL), initial state \`$BANK_INIT\`, snapshot_every = 100."
out "First folds (untimed, one call each in a new session; they store the snapshots): acct-100 folded ${FIRST[acct-100]%%|*} events in $(cut -d'|' -f2 <<<"${FIRST[acct-100]}") ms,"
out "acct-100000 folded ${FIRST[acct-100000]%%|*} events in $(cut -d'|' -f2 <<<"${FIRST[acct-100000]}") ms; snapshots then: acct-100 ${SNAP[acct-100]}, acct-100000 ${SNAP[acct-100000]}."
out "Second folds: ${SECOND[acct-100]%%|*} and ${SECOND[acct-100000]%%|*} events folded. After the 50 appends the timed folds store nothing (50 < snapshot_every); the snapshots were checked unchanged after every block of runs."
out ""
out "Floor = bench/aggregate_roundtrip.sql, \`SELECT 100::bigint AS version, '{...}'::jsonb AS state\` (a constant row of the same shape), run in the same rounds: the client/server round trip that every call pays; \"above floor\" = ms/call minus the floor's, in µs."
out ""
out "| events past the snapshot | acct-100 ms/call | acct-100 calls/s | acct-100000 ms/call | acct-100000 calls/s | ratio (100,000 time / 100 time; median of per-round ratios) | floor ms/call | above floor, µs (100 / 100,000) | es_fold_count delta per call (100 / 100,000) |"
out "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${P1_ROWS[@]}"; do out "$r"; done
out ""
if ((${#P1_LOW[@]})); then
  out "Ratio above 2x (target missed): $(join "${P1_LOW[@]}")"
else
  out "The 100,000-event stream is within 2x of the 100-event stream in both cases."
fi
out ""
out "Runs (calls/s of each $DURATION s run, in run order):"
out ""
for r in "${P1_RUNS[@]}"; do out "$r"; done
out ""

# ---------------------------------------------------------------------------
say "part 2: es_aggregate vs CREATE AGGREGATE"
P2_SCRIPTS=(aggregate_es_big.sql aggregate_fold_load.sql aggregate_fold_load_unordered.sql aggregate_fold_table.sql)
P2_ROWS=() P2_US=() P2_EVID=() P2_RUNS=() P2_LOW=()
first=1
for ev in "${EVOLVES[@]}"; do
  fn=${EV_FN[$ev]} init=${EV_INIT[$ev]}
  say " evolve $fn"
  qdb >/dev/null <<EOF
SELECT es_define_aggregate('big', '$fn(jsonb, es_events)', initial_state => '$init', snapshot_every => 0);
DROP AGGREGATE IF EXISTS fold_agg(es_events);
CREATE AGGREGATE fold_agg(es_events) (SFUNC = $fn, STYPE = jsonb, INITCOND = '$init');
EOF
  p1=$(probe big-1) p2=$(probe big-1)
  [[ ${p1%%|*} == 10000 && ${p2%%|*} == 10000 ]] || die "$fn: es_aggregate('big-1') folded ${p1%%|*} and ${p2%%|*} events, not 10000"
  same=$(qdb -c "SELECT count(DISTINCT s) FROM (
      SELECT (SELECT state FROM es_aggregate('big-1')) UNION ALL
      SELECT (SELECT fold_agg(e ORDER BY stream_version) FROM es_load('big-1') e) UNION ALL
      SELECT (SELECT fold_agg(e) FROM (SELECT * FROM es_load('big-1')) e) UNION ALL
      SELECT (SELECT fold_agg(e ORDER BY stream_version) FROM es_events e WHERE stream_id = 'big-1')) x(s)
    WHERE s IS NOT NULL")
  [[ $same == 1 ]] || die "$fn: the four queries return different states"
  state=$(qdb -c "SELECT state FROM es_aggregate('big-1')")
  if ((first)); then
    say "warm-up (discarded)"
    for f in "${P2_SCRIPTS[@]}"; do pgrun "warmup-${f%.sql}" "$f" 1; done
    first=0
  fi
  rounds "$ev" "${P2_SCRIPTS[@]}"
  snaps=$(snapshots big-1)
  [[ $snaps == 0 ]] || die "$fn: snapshots of big-1 were stored: $snaps"
  e=${MED[aggregate_es_big.sql]} l=${MED[aggregate_fold_load.sql]} u=${MED[aggregate_fold_load_unordered.sql]} t=${MED[aggregate_fold_table.sql]}
  E=${ALL[aggregate_es_big.sql]}
  rl=$(pratio "$E" "${ALL[aggregate_fold_load.sql]}") ru=$(pratio "$E" "${ALL[aggregate_fold_load_unordered.sql]}") rt=$(pratio "$E" "${ALL[aggregate_fold_table.sql]}")
  P2_ROWS+=("| $fn | $(cps "$e") ($(ms "$e") ms) | $(cps "$l") ($(ms "$l") ms) | $rl | $(cps "$u") ($(ms "$u") ms) | $ru | $(cps "$t") ($(ms "$t") ms) | $rt |")
  P2_US+=("| $fn | $(us "$e" 10000) | $(us "$l" 10000) | $(us "$u" 10000) | $(us "$t" 10000) |")
  P2_EVID+=("| $fn | \`$init\` | ${p1%%|*}, ${p2%%|*} | $snaps | \`$state\` |")
  awk -v r="$rl" 'BEGIN { exit !(r < 1) }' && P2_LOW+=("$fn vs es_load ORDER BY ($rl)")
  awk -v r="$ru" 'BEGIN { exit !(r < 1) }' && P2_LOW+=("$fn vs es_load unordered ($ru)")
  # shellcheck disable=SC2086
  P2_RUNS+=("- $fn: es_aggregate $(join ${ALL[aggregate_es_big.sql]}); es_load ORDER BY $(join ${ALL[aggregate_fold_load.sql]}); es_load unordered $(join ${ALL[aggregate_fold_load_unordered.sql]}); es_events ORDER BY $(join ${ALL[aggregate_fold_table.sql]})")
done

out "## 2. The C fold loop vs CREATE AGGREGATE (snapshot_every = 0, one 10,000-event stream)"
out ""
out "calls/s (ms per call), medians of the rounds; ratio = es_aggregate calls/s / that query's calls/s, the median of the per-round ratios (>= 1.0: es_aggregate at least as fast)."
out "Queries: es_aggregate = \`SELECT * FROM es_aggregate('big-1')\`; es_load ORDER BY = \`SELECT fold_agg(e ORDER BY stream_version) FROM es_load('big-1') e\`;"
out "es_load unordered = \`SELECT fold_agg(e) FROM (SELECT * FROM es_load('big-1')) e\`; es_events ORDER BY = \`SELECT fold_agg(e ORDER BY stream_version) FROM es_events e WHERE stream_id = 'big-1'\`;"
out "\`fold_agg\` = \`CREATE AGGREGATE fold_agg(es_events) (SFUNC = <evolve>, STYPE = jsonb, INITCOND = '<initial state>')\`, recreated for each evolve with 'big' redefined to the same evolve."
out ""
out "| evolve | es_aggregate | es_load ORDER BY | ratio | es_load unordered | ratio | es_events ORDER BY | ratio |"
out "|:---|---:|---:|---:|---:|---:|---:|---:|"
for r in "${P2_ROWS[@]}"; do out "$r"; done
out ""
if ((${#P2_LOW[@]})); then
  out "es_aggregate slower than CREATE AGGREGATE over es_load: $(join "${P2_LOW[@]}")"
else
  out "es_aggregate is at least as fast as CREATE AGGREGATE over es_load with every evolve."
fi
out ""
out "µs per event (ms per call / 10,000):"
out ""
out "| evolve | es_aggregate | es_load ORDER BY | es_load unordered | es_events ORDER BY |"
out "|:---|---:|---:|---:|---:|"
for r in "${P2_US[@]}"; do out "$r"; done
out ""
out "Evidence (es_fold_count deltas of two single es_aggregate calls, each in a new session; snapshots of big-1 after the runs; all four queries checked to return the same state):"
out ""
out "| evolve | initial state | events folded per es_aggregate call | snapshots of big-1 | state |"
out "|:---|:---|---:|---:|:---|"
for r in "${P2_EVID[@]}"; do out "$r"; done
out ""
out "Evolves: $(for ev in "${EVOLVES[@]}"; do printf '%s; ' "${EV_DESC[$ev]}"; done | sed 's/; $//')."
((${#EVOLVES[@]} == 4)) || out "(c_evolve skipped: not a superuser.)"
out ""
out "Runs (calls/s of each $DURATION s run, in run order):"
out ""
for r in "${P2_RUNS[@]}"; do out "$r"; done
out ""
out "Plans of the CREATE AGGREGATE queries (in PostgreSQL 15 an aggregate's ORDER BY is a sort inside the Aggregate node, not shown, even when the input is already in order):"
out ""
out '```'
for f in aggregate_fold_load.sql aggregate_fold_load_unordered.sql aggregate_fold_table.sql; do
  qdb -c "EXPLAIN $(grep -v '^--' "$HERE/$f")" | sed 's/  (cost=.*//' | tee -a "$REPORT"
  out ""
done
out '```'
out ""
# ---------------------------------------------------------------------------
say "part 3: bank_evolve inlined vs not inlined vs PL/pgSQL"
qdb >/dev/null <<EOF
SELECT es_define_aggregate('big', 'bank_evolve(jsonb, es_events)', initial_state => '$BANK_INIT', snapshot_every => 0);
EOF
P3_SCRIPTS=(aggregate_es_big.sql aggregate_es_big_off.sql aggregate_es_bigpl.sql)
same=$(qdb -c "SELECT count(DISTINCT s) FROM (
    SELECT (SELECT state FROM es_aggregate('big-1')) UNION ALL
    SELECT (SELECT state FROM es_aggregate('bigpl-1'))) x(s)")
same_off=$(PGOPTIONS="$PGOPTIONS -c client_min_messages=warning -c event_sourcing.inline_sql_callbacks=off" q -d "$DB" \
  -c "SELECT (SELECT state FROM es_aggregate('big-1')) = (SELECT state FROM es_aggregate('bigpl-1'))")
[[ $same == 1 && $same_off == t ]] || die "bank_evolve (inlined, not inlined) and bank_evolve_plpgsql fold big-1 and bigpl-1 to different states"
INLINED=$(PGOPTIONS="$PGOPTIONS -c client_min_messages=debug1" q -d "$DB" -c "SELECT version FROM es_aggregate('big-1')" 2>&1 >/dev/null | grep -c 'bank_evolve(jsonb,es_events) is evaluated as an expression' || true)
NOT_INLINED=$(PGOPTIONS="$PGOPTIONS -c client_min_messages=debug1 -c event_sourcing.inline_sql_callbacks=off" q -d "$DB" -c "SELECT version FROM es_aggregate('big-1')" 2>&1 >/dev/null | grep -c 'is evaluated as an expression' || true)
[[ $INLINED == 1 && $NOT_INLINED == 0 ]] || die "expected bank_evolve evaluated as an expression ($INLINED), and not with the setting off ($NOT_INLINED)"
say "warm-up (discarded)"
for f in "${P3_SCRIPTS[@]}"; do pgrun "warmup-${f%.sql}" "$f" 1; done
rounds inline "${P3_SCRIPTS[@]}"
i=${MED[aggregate_es_big.sql]} o=${MED[aggregate_es_big_off.sql]} p=${MED[aggregate_es_bigpl.sql]}
out "## 3. SQL evolve inlined vs called through the function manager vs PL/pgSQL (one 10,000-event stream, snapshot_every = 0)"
out ""
out "calls/s of \`es_aggregate\` (µs per event); ratios are medians of the per-round ratios.  inlined = bank_evolve (SQL), evaluated as an expression; off = the same with \`event_sourcing.inline_sql_callbacks = off\`; PL/pgSQL = bank_evolve_plpgsql, the same logic.  Checked: the three fold to the same state; at DEBUG1 bank_evolve was reported \"evaluated as an expression\" ($INLINED), not with the setting off ($NOT_INLINED)."
out ""
out "| SQL inlined | SQL, inlining off | PL/pgSQL | inlined / off | inlined / PL/pgSQL | PL/pgSQL / off |"
out "|---:|---:|---:|---:|---:|---:|"
out "| $(cps "$i") ($(us "$i" 10000)) | $(cps "$o") ($(us "$o" 10000)) | $(cps "$p") ($(us "$p" 10000)) | **$(pratio "${ALL[aggregate_es_big.sql]}" "${ALL[aggregate_es_big_off.sql]}")** | **$(pratio "${ALL[aggregate_es_big.sql]}" "${ALL[aggregate_es_bigpl.sql]}")** | $(pratio "${ALL[aggregate_es_bigpl.sql]}" "${ALL[aggregate_es_big_off.sql]}") |"
out ""
# shellcheck disable=SC2086
out "Runs (calls/s, in run order): inlined $(join ${ALL[aggregate_es_big.sql]}); off $(join ${ALL[aggregate_es_big_off.sql]}); PL/pgSQL $(join ${ALL[aggregate_es_bigpl.sql]})"
out ""
out "Logs: $LOGDIR"
