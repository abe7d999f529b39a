#!/usr/bin/env bash
# bench/projection_bench.sh: the cost of projections: appending with inline
# projections, async catch-up with es_projection_run, and the latency from
# an append's commit to an async read model updated by the background worker.
#
#   bench/projection_bench.sh             full run (~7 min on 2 cores)
#   bench/projection_bench.sh --quick     smoke test (-d 1 -r 1, ~1 min)
#   bench/projection_bench.sh -d 5 -r 5   5 rounds of 5 s runs (part a), 5
#                                         rounds of part b
#   bench/projection_bench.sh --existing  use the server that PGHOST/PGPORT/
#                                         PGUSER/... point at, not a new one
#                                         (parts a and b only, see below)
#   bench/projection_bench.sh --build     benchmark the repository's HEAD
#                                         commit, built into a private directory
#
# --build exports HEAD (git archive) to a temporary directory, builds it and
# installs it there, and points the throwaway cluster at it (bench/lib.sh),
# so the run measures that one commit even if someone runs make install
# meanwhile; the report names the commit.  Without --build the installed
# extension is measured (make && make install first).
#
# Default: a throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv
# (temporary directory, removed at the end) with the settings in PGCONF below
# (those of append_bench.sh, fsync turned back on, plus the library in
# shared_preload_libraries for the background worker), printed in the
# report.  event_sourcing.worker_databases starts empty (no worker runs);
# the script sets it with ALTER SYSTEM and pg_reload_conf() only for the
# runs that want a worker.  With --existing the server's own settings apply;
# the role must be allowed to CREATE DATABASE and CREATE EXTENSION
# event_sourcing, and the runs that need the worker (part a "idle worker",
# part c) are skipped, since they would change the server's configuration.
# Everything happens in new databases es_pbench_<pid>_app, _run and _lat,
# dropped at the end.
#
# Part a, appending with inline projections.  pgbench, one event per
# transaction, es_append to 'bench-' || random(1, 10000), expected version
# NULL, data {"amount": 10, "currency": "EUR"} (bench/projection_append.sql);
# 1 client and 4 clients with synchronous_commit=off (CPU-bound: where the
# projections' cost shows), and 1 client with synchronous_commit=on.
# Variants (handlers in bench/projection_handlers.sql, read models in
# bench/projection_setup.sql):
#
#   none       no projection: the baseline of every ratio
#   1 SQL      1 inline projection, handler bench_upsert_sql_1, LANGUAGE sql:
#                INSERT INTO bal_1 AS b (stream_id, n) VALUES (e.stream_id, 1)
#                ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1
#   3 SQL      3 inline projections, the same upsert into bal_1, bal_2, bal_3
#   1 PL/pgSQL 1 inline projection, the same upsert in a PL/pgSQL handler
#   3 PL/pgSQL 3 of those
#   manual     no projection; the client runs the same upsert itself, in the
#              statement that appends (bench/projection_append_manual.sql:
#              WITH up AS (INSERT ... ON CONFLICT ... RETURNING 1)
#              SELECT es_append(...) FROM up), prepared once per connection:
#              the work of 1 projection without the projection machinery
#              and without planning a handler, for context
#   worker     no projection, the background worker running for this
#              database (no async projection: it wakes at every commit and
#              finds nothing to do); its CPU time during the run is reported
#              when /proc shows it.  Throwaway cluster only.
#
# Every run starts from an empty store (DROP EXTENSION event_sourcing
# CASCADE, CREATE EXTENSION, handlers created again, read models truncated,
# the variant's projections defined, CHECKPOINT).  After each run the script
# checks that the store holds one event per transaction and that each read
# model in use counts exactly that many events (the others none).
# Ratios: variant / none in the same setting, the median of the per-round
# ratios (paired, as in aggregate_bench.sh: a round's runs are close in time,
# so a change in the machine's speed between rounds cancels out).  Target:
# >= 0.7 for 1 SQL.
#
# Part b, async catch-up.  A store of 100,000 events (1,000 streams of 100,
# appended in 10,000 interleaved batches of 10, bench/projection_store.sql,
# then VACUUM ANALYZE), an async projection defined afresh before each
# measurement (so it starts at position 0, read model truncated, after a
# CHECKPOINT), and the procedure bench_catch_up of
# bench/projection_setup.sql: es_projection_run('c', B) calls, each followed
# by COMMIT (one transaction per call, as the worker does), until a call
# applies nothing; rate = 100,000 / (clock_timestamp() after the last
# COMMIT - clock_timestamp() before the first call), measured in the server,
# in one session.  B = 100,000 (one call, one transaction), 10,000 (10) and
# 1,000 (100 calls: the default max_events, as event_sourcing.worker_max_events).
# Handlers: bench_noop_sql (LANGUAGE sql, empty body) and
# bench_noop_plpgsql (BEGIN END): the cost of reading the log and calling a
# handler; bench_upsert_sql_1 and bench_upsert_plpgsql_1 (the upsert of
# part a).  The script checks that each measurement applied
# 100,000 events, left the projection running with lag 0, and (upserts)
# that the read model counts 100,000 events.  Target: >= 50,000 events/s.
# No background worker runs for this database.
#
# Part c, latency from commit to async read model (throwaway cluster only).
# An async projection 'lat' (handler bench_upsert_sql_1) in its own
# database, the background worker running for it (worker_databases set to
# it, default worker settings: woken by commits, 1,000 events per
# transaction, synchronous_commit as the cluster's, on).  The driver is
# this script with one persistent psql (a bash coprocess, one session,
# synchronous_commit=on), timed with bash's $EPOCHREALTIME: 1,000 times,
#   SELECT es_append('lat-1', NULL, 'Deposited', ...)   (autocommit)
# whose answer (the new stream version v) arrives once the append has
# committed: t_commit; then polls
#   SELECT coalesce((SELECT n FROM bal_1 WHERE stream_id = 'lat-1'), 0)
# back to back until the read model counts v events: t_seen, the arrival of
# that answer.  Latency = t_seen - t_commit: what a client whose commit was
# acknowledged waits until a read of the async read model shows its event.
# It is an upper bound, to within one poll round trip (measured beforehand
# with 200 SELECT 1 and reported).  The driver waits in read() between
# polls, so it leaves a CPU to the worker (a tight polling loop inside the
# server would hold one CPU, and on 2 CPUs the worker, woken on the poller's
# CPU, would then queue behind it for milliseconds).  After every event a
# pause of (i mod 5) ms (SELECT pg_sleep), so that commits find the worker
# both asleep and finishing its previous round; 50 discarded events first.
# Reported: median, p90, p99, max over the 1,000 appends, how many were
# visible at the first poll, the poll round trip, and the median time of
# the es_append call itself (its commit's WAL flush included), for scale.
# Every latency is in latency.log in the log directory.
#
# Method (as append_bench.sh).  All runs in one cluster.  Every variant of a
# setting runs once per round, -r N rounds (default 5 for part a, 3 for part
# b; -r sets both) of -d SEC pgbench runs (default 3 s); the order is
# reversed from one round to the next, so drift and bursts of noise on the
# machine hit the variants alike.  The tables show the median of the rounds;
# every run is listed under "Runs".  A discarded warm-up precedes parts a
# and b.  pgbench -n -M prepared, -j 1 for 1 client and -j 2 for 4.
#
# The report goes to stdout (Markdown), ending with a summary, and, with
# every pgbench log, to a directory printed at the end.  Progress goes to
# stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=3
ROUNDS=
EXISTING=0
BUILD=0
LAT_EVENTS=1000

es_bench_args "$@"
APPEND_ROUNDS=${ROUNDS:-5}
RUN_ROUNDS=${ROUNDS:-3}

# Settings of the throwaway cluster (pg_virtualenv -o): append_bench.sh's,
# plus the library preloaded for the background worker ('$libdir/...', the
# extension's own module_pathname, so that --build preloads the same file).
# shellcheck disable=SC2016
PGCONF=(
  shared_buffers=1GB       # everything stays in memory
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=8GB         # no checkpoint during a run
  min_wal_size=2GB         # WAL segments are recycled, not created, in later runs
  checkpoint_timeout=30min
  autovacuum=off           # the store is emptied before every append run; no background noise
  'shared_preload_libraries=$libdir/event_sourcing'
)

args=(-d "$DURATION")
[[ -z $ROUNDS ]] || args+=(-r "$ROUNDS")
es_bench_virtualenv "${args[@]}"

# ---------------------------------------------------------------------------
# From here on, libpq's environment points at the server to use.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_pbench.XXXXXX)
REPORT="$LOGDIR/report.md"
DB_APP="es_pbench_$$_app"
DB_RUN="es_pbench_$$_run"
DB_LAT="es_pbench_$$_lat"
START=$SECONDS

qdb() { local db=$1; shift; PGOPTIONS='-c client_min_messages=warning' q -d "$db" "$@"; }

es_bench_require_extension

# The worker runs (part a "worker", part c) need the library preloaded, a
# superuser (ALTER SYSTEM) and a server of our own.
WORKER=1 NO_WORKER_WHY=
if ((EXISTING)); then
  WORKER=0 NO_WORKER_WHY="--existing: the script does not change the server's event_sourcing.worker_databases"
elif [[ $(q -d postgres -c "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") != t ]]; then
  WORKER=0 NO_WORKER_WHY="not a superuser"
elif ! q -d postgres -c "SHOW shared_preload_libraries" | grep -q event_sourcing; then
  WORKER=0 NO_WORKER_WHY="event_sourcing is not in shared_preload_libraries"
fi

WORKER_DB=
# set_worker DB: run the background worker for DB only ('' for none) and
# wait until it runs (or is gone).
set_worker() {
  local db=$1 i want
  [[ $db == "$WORKER_DB" ]] && return 0
  q -d postgres -c "ALTER SYSTEM SET event_sourcing.worker_databases = '$db'" -c "SELECT pg_reload_conf()" >/dev/null
  for ((i = 0; i < 300; i++)); do
    want=$(q -d postgres -c "SELECT count(*) FILTER (WHERE datname = '$db') || ' ' || count(*) FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker'")
    if [[ -z $db && $want == "0 0" ]] || [[ -n $db && $want == "1 1" ]]; then
      WORKER_DB=$db
      return 0
    fi
    sleep 0.1
  done
  die "the event_sourcing worker did not ${db:+start for database $db}${db:-stop} within 30 s (workers: $want)"
}
worker_pid() { q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker' AND datname = '$1'"; }
# cpu_ticks PID: user + system CPU time of a local process, in clock ticks
# (empty when /proc does not show it).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || true; }

cleanup() {
  local db
  if ((WORKER)); then
    q -d postgres -c "ALTER SYSTEM RESET event_sourcing.worker_databases" -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
  fi
  for db in "$DB_APP" "$DB_RUN" "$DB_LAT"; do
    q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
((WORKER == 0)) || set_worker ""

median2() { median_fmt %.2f "$@"; }
atleast() { awk -v a="$1" -v m="$2" 'BEGIN { exit !(a != "-" && a + 0 >= m) }'; }
target() { if atleast "$1" "$2"; then echo "met"; else echo "NOT met"; fi; }

# ---------------------------------------------------------------------------
say "es_pbench: logs in $LOGDIR"
out "# event_sourcing projection benchmark"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
out "- server: $(q -d postgres -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine, connecting to ${PGHOST:-the default socket}"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), databases $DB_APP, $DB_RUN"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf " -o '%s'" "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- server settings: $(q -d postgres -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','fsync','synchronous_commit','wal_sync_method','full_page_writes','wal_level','max_wal_size','min_wal_size','checkpoint_timeout','autovacuum','wal_buffers','jit','shared_preload_libraries','max_worker_processes') OR name LIKE 'event\_sourcing.worker\_%'")"
out "- pgbench: \`pgbench -n -M prepared -T $DURATION -c C -j J -f bench/<script> <db>\` (J = 1 for 1 client, 2 for 4); synchronous_commit per run with PGOPTIONS"
out "- part a: $APPEND_ROUNDS round(s) of one $DURATION s run per variant and setting; part b: $RUN_ROUNDS round(s) of each measurement; the order reversed every round; the tables show the median"
((WORKER)) || out "- skipped: part a \"worker\" and part c ($NO_WORKER_WHY)"
out ""

# ---------------------------------------------------------------------------
# Part a
say "part a: setting up"
q -d postgres -c "CREATE DATABASE $DB_APP" >/dev/null
qdb "$DB_APP" -c "CREATE EXTENSION event_sourcing" -f "$HERE/projection_setup.sql" >/dev/null

VARIANTS=(none sql1 sql3 pl1 pl3 manual)
((WORKER)) && VARIANTS+=(worker)
declare -A VNAME=([none]="none (0 projections)" [sql1]="1 inline, SQL" [sql3]="3 inline, SQL"
                  [pl1]="1 inline, PL/pgSQL" [pl3]="3 inline, PL/pgSQL"
                  [manual]="0, the upsert by the client in the appending statement"
                  [worker]="0, idle background worker on the database")
# defines VARIANT: the es_define_projection calls of a variant.
defines() {
  local k n=0 lang=
  case $1 in
    sql1) n=1 lang=sql ;; sql3) n=3 lang=sql ;;
    pl1) n=1 lang=plpgsql ;; pl3) n=3 lang=plpgsql ;;
  esac
  for ((k = 1; k <= n; k++)); do
    echo "SELECT es_define_projection('p$k', 'bench_upsert_${lang}_$k(es_events)');"
  done
}

reset_app() {
  qdb "$DB_APP" >/dev/null <<EOF
DROP EXTENSION event_sourcing CASCADE;
CREATE EXTENSION event_sourcing;
\\i $HERE/projection_handlers.sql
TRUNCATE bal_1, bal_2, bal_3;
$(defines "$1")
CHECKPOINT;
EOF
}

declare -A WORKER_CPU=()
# append_run VARIANT CLIENTS SYNC SECONDS: reset, run, check; sets EVS.
append_run() {
  local v=$1 clients=$2 sync=$3 secs=$4 script=projection_append.sql rows sums want pid t0 t1 hz
  [[ $v == manual ]] && script=projection_append_manual.sql
  ((WORKER == 0)) || set_worker ""
  reset_app "$v"
  [[ $(qdb "$DB_APP" -c "SELECT count(*) FROM es_projections") == "$(defines "$v" | wc -l)" ]] \
    || die "$v: the projections were not defined"
  pid='' t0=''
  if [[ $v == worker ]]; then
    set_worker "$DB_APP"
    pid=$(worker_pid "$DB_APP")
    t0=$(cpu_ticks "$pid")
  fi
  pgrun "$v-c$clients-sync_$sync" "$script" "$DB_APP" "$clients" "$sync" "$secs"
  if [[ -n $t0 ]]; then
    t1=$(cpu_ticks "$pid")
    hz=$(getconf CLK_TCK)
    [[ -n $t1 ]] && WORKER_CPU[c$clients-$sync]+="$(awk -v a="$t0" -v b="$t1" -v h="$hz" -v s="$secs" 'BEGIN { printf "%.0f%%", 100 * (b - a) / h / s }') "
  fi
  rows=$(qdb "$DB_APP" -c "SELECT count(*) FROM es_events")
  sums=$(qdb "$DB_APP" -c "SELECT (SELECT coalesce(sum(n), 0) FROM bal_1) || ' ' || (SELECT coalesce(sum(n), 0) FROM bal_2) || ' ' || (SELECT coalesce(sum(n), 0) FROM bal_3)")
  case $v in
    none|worker) want="0 0 0" ;;
    sql1|pl1|manual) want="$TX 0 0" ;;
    sql3|pl3) want="$TX $TX $TX" ;;
  esac
  ((rows == TX)) || die "$v: $rows events stored, expected $TX (one per transaction)"
  [[ $sums == "$want" ]] || die "$v: the read models bal_1, bal_2, bal_3 count $sums events, expected $want"
  EVS=$(printf '%.0f' "$TPS")
}

say "part a: warm-up (discarded)"
for v in none sql1; do append_run "$v" 4 off 1; done
WORKER_CPU=()

say "part a: appending"
SETTINGS=("1 off" "4 off" "1 on")
declare -A RES=() RAT=()
RUNS=()
for setting in "${SETTINGS[@]}"; do
  read -r clients sync <<<"$setting"
  declare -A ALL=() EV_R=()
  for ((r = 1; r <= APPEND_ROUNDS; r++)); do
    for v in $(order "$r" "${VARIANTS[@]}"); do
      append_run "$v" "$clients" "$sync" "$DURATION"
      ALL[$v]+="$EVS "
      EV_R[$v,$r]=$EVS
    done
  done
  for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    RES[$v,$clients,$sync]=$(median ${ALL[$v]})
    rts=()
    for ((r = 1; r <= APPEND_ROUNDS; r++)); do rts+=("$(ratio "${EV_R[$v,$r]}" "${EV_R[none,$r]}")"); done
    RAT[$v,$clients,$sync]=$(median2 "${rts[@]}")
  done
  runs="- $clients client(s), synchronous_commit=$sync:"
  for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    runs+=" $v $(join ${ALL[$v]});"
  done
  RUNS+=("${runs%;}")
  unset ALL EV_R
done
((WORKER == 0)) || set_worker ""

out "## a. Appending with inline projections (events/s, one es_append of one event per transaction)"
out ""
out "events/s: median of the rounds; ratio = variant / none in the same setting, the median of the per-round ratios (paired: a round's runs are close in time, so a change in the machine's speed between rounds cancels out); target for 1 inline SQL projection: >= 0.7.  Handlers: an upsert into a read-model table, \`INSERT INTO bal_K AS b (stream_id, n) VALUES (e.stream_id, 1) ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1\` (bench/projection_handlers.sql)."
out ""
hdr="| projections |" sep="|:---|"
for setting in "${SETTINGS[@]}"; do
  read -r clients sync <<<"$setting"
  hdr+=" $clients client(s), sync $sync | ratio |"
  sep+="---:|---:|"
done
out "$hdr"
out "$sep"
for v in "${VARIANTS[@]}"; do
  row="| ${VNAME[$v]} |"
  for setting in "${SETTINGS[@]}"; do
    read -r clients sync <<<"$setting"
    rt=${RAT[$v,$clients,$sync]}
    [[ $v == sql1 ]] && rt="**$rt**"
    row+=" ${RES[$v,$clients,$sync]} | $rt |"
  done
  out "$row"
done
out ""
if ((WORKER)) && ((${#WORKER_CPU[@]})); then
  cpu=()
  for setting in "${SETTINGS[@]}"; do
    read -r clients sync <<<"$setting"
    cpu+=("$clients client(s), sync $sync: ${WORKER_CPU[c$clients-$sync]% }")
  done
  out "CPU time of the idle background worker during the \"worker\" runs (% of one core, per run): $(join "${cpu[@]}")."
  out ""
fi
out "Runs (events/s of each $DURATION s run, in run order):"
out ""
for r in "${RUNS[@]}"; do out "$r"; done
out ""

# ---------------------------------------------------------------------------
# Part b
say "part b: setting up the 100,000-event store"
q -d postgres -c "CREATE DATABASE $DB_RUN" >/dev/null
qdb "$DB_RUN" -c "CREATE EXTENSION event_sourcing" -f "$HERE/projection_setup.sql" \
    -f "$HERE/projection_handlers.sql" -f "$HERE/projection_store.sql" >/dev/null
[[ $(qdb "$DB_RUN" -c "SELECT count(*) || ' ' || count(DISTINCT stream_id) || ' ' || max(global_position) FROM es_events") == "100000 1000 100000" ]] \
  || die "the store of part b must hold 100,000 events of 1,000 streams at positions 1..100,000"

HANDLERS=(bench_noop_sql bench_noop_plpgsql bench_upsert_sql_1 bench_upsert_plpgsql_1)
BATCHES=(100000 10000 1000)
declare -A HNAME=([bench_noop_sql]="no-op, SQL (empty body)" [bench_noop_plpgsql]="no-op, PL/pgSQL (BEGIN END)" [bench_upsert_sql_1]="upsert, SQL" [bench_upsert_plpgsql_1]="upsert, PL/pgSQL")
declare -A BNAME=([100000]="1 call of 100,000 (1 transaction)" [10000]="10 calls of 10,000" [1000]="100 calls of 1,000 (the default)")

# catchup_run HANDLER BATCH: define c afresh, drive it to the end; sets RATE.
catchup_run() {
  local h=$1 b=$2 res applied calls secs state want=0
  qdb "$DB_RUN" >/dev/null <<EOF
SELECT es_drop_projection(name) FROM es_projections WHERE name = 'c';
TRUNCATE bal_1;
SELECT es_define_projection('c', '$h(es_events)', mode => 'async');
CHECKPOINT;
EOF
  RUN=$((RUN + 1))
  say "  run $RUN: catch-up, $h, max_events $b"
  res=$(qdb "$DB_RUN" -F ' ' -c "CALL bench_catch_up('c', $b)")
  read -r applied calls secs <<<"$res"
  echo "$h $b: $res" >>"$LOGDIR/catchup.log"
  [[ $h == bench_noop_* ]] || want=100000
  state=$(qdb "$DB_RUN" -c "SELECT p.lag || ' ' || p.status || ' ' || (SELECT coalesce(sum(n), 0) FROM bal_1) FROM es_projections p WHERE name = 'c'")
  ((applied == 100000)) || die "$h/$b: es_projection_run applied $applied events, expected 100000"
  [[ $state == "0 running $want" ]] || die "$h/$b: lag, status, events in the read model are $state, expected 0 running $want"
  RATE=$(awk -v n="$applied" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  CALLS=$calls
}

COMBOS=()
for h in "${HANDLERS[@]}"; do for b in "${BATCHES[@]}"; do COMBOS+=("$h:$b"); done; done
say "part b: warm-up (discarded)"
catchup_run bench_upsert_sql_1 10000
say "part b: catching up"
declare -A CALL_N=()
declare -A BALL=()
for ((r = 1; r <= RUN_ROUNDS; r++)); do
  for c in $(order "$r" "${COMBOS[@]}"); do
    catchup_run "${c%%:*}" "${c##*:}"
    BALL[$c]+="$RATE "
    CALL_N[$c]=$CALLS
  done
done
declare -A BRES=()
for c in "${COMBOS[@]}"; do
  # shellcheck disable=SC2086
  BRES[$c]=$(median ${BALL[$c]})
done

out "## b. Async catch-up: es_projection_run over 100,000 stored events (events/s)"
out ""
out "One session, a procedure calling es_projection_run('c', max_events) and COMMITting after each call until one applies nothing (the calls include that last, empty one); the time is taken with clock_timestamp() in the server.  Target: >= 50,000 events/s."
out ""
hdr="| handler |" sep="|:---|"
for b in "${BATCHES[@]}"; do hdr+=" ${BNAME[$b]} |"; sep+="---:|"; done
out "$hdr"
out "$sep"
for h in "${HANDLERS[@]}"; do
  row="| ${HNAME[$h]} |"
  for b in "${BATCHES[@]}"; do row+=" ${BRES[$h:$b]} |"; done
  out "$row"
done
out ""
calls=()
for b in "${BATCHES[@]}"; do calls+=("max_events $b: ${CALL_N[bench_noop_sql:$b]}"); done
out "Runs (events/s of each measurement, in run order; calls per measurement: $(join "${calls[@]}")):"
out ""
for c in "${COMBOS[@]}"; do
  # shellcheck disable=SC2086
  out "- ${c%%:*}, max_events ${c##*:}: $(join ${BALL[$c]})"
done
out ""

# ---------------------------------------------------------------------------
# Part c
# us_now: $EPOCHREALTIME in microseconds.
us_now() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }
# lq SQL: one query through the latency driver's psql; its one-line answer
# in REPLY.
lq() {
  printf '%s\n' "$1" >&"${LATQ[1]}"
  IFS= read -r REPLY <&"${LATQ[0]}" || die "part c: the driver's psql ended (query: $1)"
}
# lat_measure STREAM N LOG: N appends, each timed until the read model shows
# it; writes "i latency_us polls append_us" lines to LOG.
lat_measure() {
  local s=$1 n=$2 log=$3 i v ta tc ts polls
  : >"$log"
  for ((i = 1; i <= n; i++)); do
    ta=${EPOCHREALTIME/[.,]/}
    lq "SELECT es_append('$s', NULL, 'Deposited', '{\"amount\": 10, \"currency\": \"EUR\"}');"
    tc=${EPOCHREALTIME/[.,]/}
    v=$REPLY
    [[ $v =~ ^[0-9]+$ ]] || die "part c: es_append answered '$v'"
    polls=0
    while :; do
      lq "SELECT coalesce((SELECT n FROM bal_1 WHERE stream_id = '$s'), 0);"
      ts=${EPOCHREALTIME/[.,]/}
      polls=$((polls + 1))
      [[ $REPLY =~ ^[0-9]+$ ]] || die "part c: the poll answered '$REPLY'"
      ((REPLY >= v)) && break
      ((ts - tc < 10000000)) || die "part c: event $v of $s not in the read model after 10 s: is the event_sourcing worker running?"
    done
    echo "$i $((ts - tc)) $polls $((tc - ta))" >>"$log"
    if ((i % 5)); then lq "SELECT pg_sleep(0.00$((i % 5)));"; fi
  done
}
# pct P FILE COLUMN: the P-th percentile (nearest rank) of a column, /1000
# (microseconds to ms), 2 decimals.
pct() { sort -k"$3" -g "$2" | awk -v p="$1" -v c="$3" '{ v[NR] = $c } END { r = int(p * NR / 100); if (r < p * NR / 100) r++; if (r < 1) r = 1; printf "%.2f", v[r] / 1000 }'; }

LAT_SUMMARY="skipped ($NO_WORKER_WHY)"
if ((WORKER)); then
  say "part c: latency from commit to the async read model"
  q -d postgres -c "CREATE DATABASE $DB_LAT" >/dev/null
  qdb "$DB_LAT" -c "CREATE EXTENSION event_sourcing" -f "$HERE/projection_setup.sql" \
      -f "$HERE/projection_handlers.sql" \
      -c "SELECT es_define_projection('lat', 'bench_upsert_sql_1(es_events)', mode => 'async')" >/dev/null
  set_worker "$DB_LAT"
  coproc LATQ { PGOPTIONS='-c client_min_messages=warning -c synchronous_commit=on' psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB_LAT" 2>&1; }
  # shellcheck disable=SC2153  # set by coproc
  latq_pid=$LATQ_PID
  lq "SELECT current_setting('synchronous_commit');"
  [[ $REPLY == on ]] || die "part c: the driver's session has synchronous_commit=$REPLY"
  t0=$(us_now)
  for ((i = 0; i < 200; i++)); do lq "SELECT 1;"; done
  RTT=$(awk -v a="$t0" -v b="$(us_now)" 'BEGIN { printf "%.3f", (b - a) / 200 / 1000 }')
  say "  warm-up: 50 events (discarded)"
  lat_measure lat-0 50 "$LOGDIR/latency_warmup.log"
  say "  $LAT_EVENTS events"
  lat_measure lat-1 "$LAT_EVENTS" "$LOGDIR/latency.log"
  printf '\\q\n' >&"${LATQ[1]}"
  wait "$latq_pid" || die "part c: the driver's psql failed"
  state=$(qdb "$DB_LAT" -c "SELECT p.lag || ' ' || p.status || ' ' || (SELECT n FROM bal_1 WHERE stream_id = 'lat-1') FROM es_projections p WHERE name = 'lat'")
  [[ $state == "0 running $LAT_EVENTS" && $(wc -l <"$LOGDIR/latency.log") == "$LAT_EVENTS" ]] \
    || die "part c: lag, status, events of lat-1 in the read model are $state, expected 0 running $LAT_EVENTS"
  set_worker ""
  P50=$(pct 50 "$LOGDIR/latency.log" 2) P90=$(pct 90 "$LOGDIR/latency.log" 2)
  P99=$(pct 99 "$LOGDIR/latency.log" 2) PMAX=$(pct 100 "$LOGDIR/latency.log" 2)
  PMIN=$(pct 0 "$LOGDIR/latency.log" 2) APP=$(pct 50 "$LOGDIR/latency.log" 4)
  FIRST=$(awk '$3 == 1' "$LOGDIR/latency.log" | wc -l)

  out "## c. Latency from an append's commit to the async read model (background worker)"
  out ""
  out "$LAT_EVENTS appends of one event through one psql session (synchronous_commit=on), each followed by polls of the read model until it shows the event; latency = arrival of that poll's answer - arrival of es_append's answer (bash \$EPOCHREALTIME; an upper bound, to within one poll round trip).  Handler bench_upsert_sql_1; default worker settings."
  out ""
  out "| median | p90 | p99 | max | min | visible at the first poll | poll round trip | es_append call (with its commit) |"
  out "|---:|---:|---:|---:|---:|---:|---:|---:|"
  out "| **$P50 ms** | $P90 ms | **$P99 ms** | $PMAX ms | $PMIN ms | $FIRST of $LAT_EVENTS | $RTT ms | $APP ms (median) |"
  out ""
  out "Every latency: $LOGDIR/latency.log (i, latency in us, polls, es_append call in us)."
  out ""
  LAT_SUMMARY="median $P50 ms, p99 $P99 ms over $LAT_EVENTS appends (max $PMAX ms; poll round trip $RTT ms; es_append call median $APP ms)"
fi

# ---------------------------------------------------------------------------
out "## Summary"
out ""
line="- a. appending, 1 inline SQL projection / none:"
for setting in "${SETTINGS[@]}"; do
  read -r clients sync <<<"$setting"
  rt=${RAT[sql1,$clients,$sync]}
  line+=" $rt ($clients client(s), sync $sync; target >= 0.7 $(target "$rt" 0.7)),"
done
out "${line%,}"
for v in sql3 pl1 pl3 manual worker; do
  [[ -n ${VNAME[$v]:-} && -n ${RES[$v,1,off]:-} ]] || continue
  line="  - ${VNAME[$v]} / none:"
  for setting in "${SETTINGS[@]}"; do
    read -r clients sync <<<"$setting"
    line+=" ${RAT[$v,$clients,$sync]} ($clients, $sync),"
  done
  out "${line%,}"
done
out "  - none: $(for s in "${SETTINGS[@]}"; do read -r c y <<<"$s"; printf '%s events/s (%s, %s), ' "${RES[none,$c,$y]}" "$c" "$y"; done | sed 's/, $//')"
out "- b. catch-up, upsert SQL handler: ${BRES[bench_upsert_sql_1:100000]} events/s in 1 call of 100,000, ${BRES[bench_upsert_sql_1:10000]} in calls of 10,000, ${BRES[bench_upsert_sql_1:1000]} in calls of 1,000 (default) (target >= 50,000: $(target "${BRES[bench_upsert_sql_1:1000]}" 50000) with the default, $(target "${BRES[bench_upsert_sql_1:100000]}" 50000) in one call)"
out "  - upsert PL/pgSQL: ${BRES[bench_upsert_plpgsql_1:100000]} / ${BRES[bench_upsert_plpgsql_1:10000]} / ${BRES[bench_upsert_plpgsql_1:1000]}; no-op SQL: ${BRES[bench_noop_sql:100000]} / ${BRES[bench_noop_sql:10000]} / ${BRES[bench_noop_sql:1000]}; no-op PL/pgSQL: ${BRES[bench_noop_plpgsql:100000]} / ${BRES[bench_noop_plpgsql:10000]} / ${BRES[bench_noop_plpgsql:1000]} events/s (1 call / calls of 10,000 / calls of 1,000)"
out "- c. commit -> async read model updated by the worker: $LAT_SUMMARY"
out "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes these figures noisy); total time $((SECONDS - START)) s"
out ""
out "Logs: $LOGDIR"
