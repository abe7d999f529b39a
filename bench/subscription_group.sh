#!/usr/bin/env bash
# bench/subscription_group.sh: a consumer group of four members consuming a
# category, total events/s, vs one member consuming it alone (issue 13:
# "Four members of a group consuming 1,000,000 events: total events/s vs one
# member").
#
#   bench/subscription_group.sh              1,000,000 events, 5 rounds (~1.5 min)
#   bench/subscription_group.sh --quick      200,000 events, 3 rounds (~30 s)
#   bench/subscription_group.sh -n 500000 -r 3
#   bench/subscription_group.sh --build      measure the repository's HEAD
#                                            commit, built into a private directory
#
# Always a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (bench/lib.sh) with the settings of PGCONF below (the script reads the
# server's CPU time in /proc, so --existing is refused); one database
# es_group_<pid>, dropped at the end.
#
# Data: N events (-n, default 1,000,000; quick 200,000; a multiple of 1,000)
# appended by es_append in batches of 10 to 10,000 streams of category 'acct'
# in turn ('acct-0' .. 'acct-9999'), then VACUUM ANALYZE and CHECKPOINT.
# Two subscriptions of category 'acct' from position 0: 'one' (group_size 1)
# and 'four' (group_size 4; a stream belongs to member
# es_subscription_member(stream_id, 4)).
#
# Runs (bench/subscription_group_read_ack.sql: BEGIN; read the member's next
# 1,000 events, every row to the client; ack the last; COMMIT), after
# es_subscription_reset(name, 0):
#   one member   pgbench -n -M prepared -c 1 -j 1 -t ceil(N / 1,000) -D sub=one
#   four members pgbench -n -M prepared -c 4 -j 2 -t ceil(largest member's
#                events / 1,000) -D sub=four, client k being member k (each
#                its own connection, all at once; a member done early polls
#                an empty read until the others finish)
#   a quarter    member 0 of 'four' alone: pgbench -c 1 -j 1 -t ceil(its
#                events / 1,000) -D sub=four; it scans the whole category to
#                keep its quarter: its CPU per event it delivers, against
#                one member's, is what the member filter costs
# Each run is checked: every member's checkpoint is its last event.
# events/s = the events delivered (N; a quarter: member 0's) / the run's
# wall time (the last member done).  Also measured:
# the CPU time of the whole server (every backend, background processes,
# from /proc: the postmaster's children and what it reaped) and of the
# pgbench client, per 1,000,000 events: with four members each scans the
# whole category and keeps its quarter, and this (and the quarter run)
# shows what that costs.
# After a discarded warm-up run of each, -r N rounds (default 5) of one run
# of each, the order reversed every round; the table shows the medians and
# four / one.  The machine's CPUs bound the ratio: printed in the header.
# Report on stdout (Markdown) and, with the pgbench logs, in a directory
# printed at the end; progress on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=
ROUNDS=5
EXISTING=0
BUILD=0
EVENTS=
QUICK=0
for a in "$@"; do [[ $a != --quick ]] || QUICK=1; done
want_n=0
es_bench_option() {
  if ((want_n)); then EVENTS=$1; want_n=0; return 0; fi
  case $1 in -n|--events) want_n=1 ;; *) return 1 ;; esac
}
es_bench_args "$@"
((want_n == 0)) || { echo "-n needs a number of events" >&2; exit 2; }
((EXISTING == 0)) || { echo "--existing is not supported: the script reads the server's CPU time in /proc" >&2; exit 2; }
# --quick sets -r 1 (lib.sh): here it means 200,000 events and 3 rounds
if ((QUICK)); then
  EVENTS=${EVENTS:-200000}
  [[ $ROUNDS != 1 ]] || ROUNDS=3
fi
EVENTS=${EVENTS:-1000000}
[[ $EVENTS =~ ^[1-9][0-9]*000$ ]] || { echo "-n: a positive multiple of 1,000" >&2; exit 2; }

PGCONF=(
  shared_buffers=1GB       # the whole log stays in memory
  fsync=on
  max_wal_size=8GB         # no checkpoint while loading
  checkpoint_timeout=30min
  autovacuum=off           # no background noise; the script vacuums
)
es_bench_virtualenv -r "$ROUNDS" -n "$EVENTS"

# ---------------------------------------------------------------------------
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_group.XXXXXX)
REPORT="$LOGDIR/report.md"
DB="es_group_$$"
START=$SECONDS
qdb() { PGOPTIONS='-c client_min_messages=warning' q -d "$DB" "$@"; }
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT
es_bench_require_extension
q -d postgres -c "CREATE DATABASE $DB" >/dev/null
qdb -c "CREATE EXTENSION event_sourcing" >/dev/null
PM=$(q -d postgres -c "SELECT split_part(pg_read_file('postmaster.pid'), E'\\n', 1)")
[[ -r /proc/$PM/stat ]] || die "cannot read /proc/$PM/stat (the postmaster)"

say "es_group: logs in $LOGDIR; loading $EVENTS events"
t0=$SECONDS
{
  es_bench_deposits_sql acct 10000 "$((EVENTS / 10))" 10
  echo "SELECT es_define_subscription('one', 'acct', NULL, 0, 1);"
  echo "SELECT es_define_subscription('four', 'acct', NULL, 0, 4);"
} | qdb >/dev/null
LOAD_SECS=$((SECONDS - t0))
[[ $(qdb -c "SELECT count(*) = $EVENTS AND max(global_position) = $EVENTS FROM es_events") == t ]] \
  || die "the log does not hold exactly $EVENTS events at 1..$EVENTS"
# each member's share and last event
qdb -F ' ' -c "SELECT m, count(*), max(global_position) FROM (SELECT es_subscription_member(stream_id, 4) m, global_position FROM es_events) e GROUP BY m ORDER BY m" >"$LOGDIR/members"
declare -A LASTPOS=()
SHARES=() MAXN=0
while read -r m n last; do
  LASTPOS[four.$m]=$last
  SHARES+=("member $m: $n")
  ((n > MAXN)) && MAXN=$n
done <"$LOGDIR/members"
LASTPOS[one.0]=$EVENTS
LASTPOS[quarter.0]=${LASTPOS[four.0]}
((${#SHARES[@]} == 4)) || die "expected 4 members, got: $(cat "$LOGDIR/members")"
N0=$(awk '$1 == 0 { print $2 }' "$LOGDIR/members")
declare -A SUB=([one]=one [four]=four [quarter]=four) CLIENTS=([one]=1 [four]=4 [quarter]=1)
declare -A TXS=([one]=$(((EVENTS + 999) / 1000)) [four]=$(((MAXN + 999) / 1000)) [quarter]=$(((N0 + 999) / 1000)))
declare -A NEV=([one]=$EVENTS [four]=$EVENTS [quarter]=$N0)
declare -A NAME=([one]="one member" [four]="four members" [quarter]="member 0 of four, alone")

# server_ticks: CPU time (clock ticks, user + system) of the server so far:
# the postmaster's own and its reaped children's, and its live children's
server_ticks() {
  local p f total
  read -r -a f <"/proc/$PM/stat"
  total=$((f[13] + f[14] + f[15] + f[16]))
  for p in $(ps -o pid= --ppid "$PM"); do
    if read -r -a f <"/proc/$p/stat" 2>/dev/null; then total=$((total + f[13] + f[14])); fi
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# run NAME: one run of variant NAME (one, four, quarter) from position 0,
# checked; sets EVS (events/s), SCPU and CCPU (server and client CPU s per
# 1M events delivered)
run() {
  local name=$1 sub=${SUB[$1]} n=${NEV[$1]} log s0 s1 t0 t1 cu cs m want got
  RUN=$((RUN + 1))
  log=$(printf '%s/%03d-%s.log' "$LOGDIR" "$RUN" "$name")
  say "  run $RUN: ${NAME[$name]}, -c ${CLIENTS[$name]} -t ${TXS[$name]}"
  qdb -c "SELECT es_subscription_reset('$sub', 0)" >/dev/null
  sleep 0.5                      # the psql backends are gone and reaped
  s0=$(server_ticks)
  t0=$(date +%s.%N)
  if ! /usr/bin/time -f '%U %S' -o "$log.time" pgbench -n -M prepared -c "${CLIENTS[$name]}" -j "$(( CLIENTS[$name] > 1 ? 2 : 1 ))" \
       -t "${TXS[$name]}" -D sub="$sub" -f "$HERE/subscription_group_read_ack.sql" "$DB" >"$log" 2>&1; then
    say "pgbench failed:"; cat "$log" >&2; exit 1
  fi
  t1=$(date +%s.%N)
  sleep 0.5
  s1=$(server_ticks)
  grep -q '^number of failed transactions: 0 ' "$log" || die "$log: failed transactions"
  for ((m = 0; m < CLIENTS[$name]; m++)); do
    want=${LASTPOS[$name.$m]}
    got=$(qdb -c "SELECT position FROM es_subscription_members WHERE name = '$sub' AND member = $m")
    [[ $got == "$want" ]] || die "$log: member $m of $sub acknowledged $got, its last event is $want"
  done
  read -r cu cs <"$log.time"
  EVS=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
  SCPU=$(awk -v d=$((s1 - s0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
  CCPU=$(awk -v u="$cu" -v s="$cs" -v n="$n" 'BEGIN { printf "%.2f", (u + s) * 1e6 / n }')
}

out "# event_sourcing: a consumer group, four members at once vs one member, reading 1,000 events + ack a transaction"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(qdb -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine"
out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
out "- extension: $(es_bench_extension)"
out "- log: $EVENTS events of category 'acct' (es_append, 10-event batches, 10,000 streams in turn; loaded in $LOAD_SECS s), es_events $(qdb -c "SELECT pg_size_pretty(pg_total_relation_size('es_events'))") with its indexes; members' shares of 'four': $(join "${SHARES[@]}")"
out "- each run: \`pgbench -n -M prepared -c C -j J -t T -D sub=NAME -f bench/subscription_group_read_ack.sql\` from checkpoint 0 to the end; a discarded warm-up run of each, then $ROUNDS round(s), the order reversed every round; the table shows the median"
out ""

say "warm-up (discarded)"
for n in one four quarter; do run "$n"; done
declare -A E=() S=() C=()
for ((r = 1; r <= ROUNDS; r++)); do
  for n in $(order "$r" one four quarter); do
    run "$n"
    E[$n]+="$EVS " S[$n]+="$SCPU " C[$n]+="$CCPU "
  done
done
declare -A ME=() MS=() MC=()
for n in one four quarter; do
  # shellcheck disable=SC2086
  ME[$n]=$(median ${E[$n]}) MS[$n]=$(median_fmt %.2f ${S[$n]}) MC[$n]=$(median_fmt %.2f ${C[$n]})
done
out "| consumers | events delivered | events/s (total) | server CPU s per 1M events delivered | client CPU s per 1M events delivered |"
out "|:---|---:|---:|---:|---:|"
out "| one member (group_size 1) | $EVENTS | ${ME[one]} | ${MS[one]} | ${MC[one]} |"
out "| four members (group_size 4), at once | $EVENTS | ${ME[four]} | ${MS[four]} | ${MC[four]} |"
out "| **four / one** | | **$(ratio "${ME[four]}" "${ME[one]}")** | $(ratio "${MS[four]}" "${MS[one]}") | $(ratio "${MC[four]}" "${MC[one]}") |"
out "| member 0 of four, alone (scans all $EVENTS) | $N0 | ${ME[quarter]} | ${MS[quarter]} | ${MC[quarter]} |"
out "| member 0 alone / one member | | $(ratio "${ME[quarter]}" "${ME[one]}") | $(ratio "${MS[quarter]}" "${MS[one]}") | $(ratio "${MC[quarter]}" "${MC[one]}") |"
out ""
out "$(nproc) CPUs: four members run on at most $(nproc) at a time, with their pgbench client on the same ones."
((ROUNDS >= 3)) || out "(only $ROUNDS round(s): a smoke test, not a measurement)"
out ""
out "Runs (events/s; server CPU s per 1M events), in run order of each:"
out ""
for n in one four quarter; do
  # shellcheck disable=SC2086
  out "- ${NAME[$n]}: $(join ${E[$n]}); $(join ${S[$n]})"
done
out ""
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total time $((SECONDS - START)) s"
out "Logs: $LOGDIR"
