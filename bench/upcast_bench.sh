#!/usr/bin/env bash
# bench/upcast_bench.sh: the cost of upcasting on reads, and of the audit
# metadata settings on appends, with pgbench.
#
#   bench/upcast_bench.sh                 full run (~7 min on 2 cores, plus any wait)
#   bench/upcast_bench.sh --quick         smoke test (-d 1 -r 1, ~1 min)
#   bench/upcast_bench.sh -d 5 -r 5       5 rounds of 5 s runs
#   bench/upcast_bench.sh --existing      use the server that PGHOST/PGPORT/
#                                         PGUSER/... point at, not a new one
#   bench/upcast_bench.sh --build         benchmark the repository's HEAD
#                                         commit, built into a private directory
#   bench/upcast_bench.sh --no-wait       do not wait for other benchmarks
#   bench/upcast_bench.sh --reads-only    part 1 only (no appends)
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
# must be allowed to CREATE DATABASE and CREATE EXTENSION event_sourcing.
# Either way everything happens in three new databases, es_ubench_<pid>_up,
# _none and _app, dropped at the end.
#
# Other benchmarks.  The machine is small and shared: before every measuring
# run the script waits (polling every 10 s) until no other bench/*_bench.sh
# is running, and a run during which another one started is discarded and
# done again.  The report says how long it waited and how many runs it
# redid.  --no-wait turns this off (smoke tests).
#
# Part 1, reading through upcasters (claim: upcasting is cheap enough to read
# through).  The store (bench/upcast_setup.sql) holds three streams of 1,000
# events each, appended in 100 interleaved batches of 10, all with data
# {"amount": 10}: 'plain-1' of type 'Noted', 'up-1' of type 'MoneyDeposited'
# and 'pl-1' of type 'CashDeposited', stored at schema 1.  That database is
# then copied (CREATE DATABASE ... TEMPLATE, so the copy is physically
# identical) into _none, which never gets an upcaster, and _up gets the
# chains of bench/upcast_define.sql: MoneyDeposited 1->2 (SQL function
# `SELECT data || '{"currency": "EUR"}'`) and 2->3 (SQL function
# `jsonb_build_object('value', data->'amount', 'currency', data->'currency')`),
# and CashDeposited with the same two steps written in PL/pgSQL.  Five
# variants, 1 client:
#
#   up      es_load('up-1')    in _up:   every event goes through 2 SQL steps,
#                                        evaluated as expressions (inlined)
#   off     es_load('up-1')    in _up, with event_sourcing.inline_sql_callbacks
#                                        = off: the same SQL steps called
#                                        through the function manager
#   pl      es_load('pl-1')    in _up:   2 PL/pgSQL steps
#   plain   es_load('plain-1') in _up:   upcasters exist, but for other types
#   none    es_load('plain-1') in _none: no upcaster at all in the store
#
# each as `SELECT * FROM es_load(...)` (all rows to the client,
# bench/upcast_read_{up,pl,plain}.sql) and `SELECT count(e) FROM es_load(...)
# e` (server side only, bench/upcast_read_{up,pl,plain}_count.sql).  Ratios:
# up/plain, off/plain and pl/plain (the cost of a 2-step chain), up/off (what
# inlining gains), up/pl, and plain/none (the cost for types without
# upcasters, when other types have some; expected ~1.0).  Before measuring,
# the script checks at DEBUG1 that both SQL steps are reported "evaluated as
# an expression", and that with the setting off none is.
#
# The ceiling: two more variants read up-1's 1,000 rows in _up without
# es_load, by a plain ordered SELECT on es_events (the same index scan):
#
#   sel     the rows as stored (bench/upcast_select{,_count}.sql)
#   selx    the rows with the two steps' expressions written inline in the
#           query, each evaluated once per row, and event_type and
#           schema_version as es_load gives them: the same rows as
#           es_load('up-1') (checked before measuring;
#           bench/upcast_select_expr{,_count}.sql)
#
# A second table gives up/plain again, up/selx (how close the upcast read
# is to computing the same expressions in a query: no implementation can
# avoid computing them), selx/sel (what the expressions themselves cost a
# query) and plain/sel (es_load against a SELECT, without upcasting).
#
# Part 2, appending with the audit metadata settings (claim: set/unset >=
# 0.95).  es_append to 'bench-' || random(1, 10000), expected version NULL,
# data {"amount": 10, "currency": "EUR"}; 1 event per transaction
# (bench/upcast_append_1.sql) or 10-event batches
# (bench/upcast_append_10.sql); events with empty metadata, or with their own
# small object {"source": "web"} (bench/upcast_append_own_{1,10}.sql: merged
# with the audit keys by jsonb ||, while empty metadata simply becomes the
# audit object); 1 client and 4 clients with synchronous_commit=off, and 1
# client with synchronous_commit=on.  Variants:
#
#   unset   PGOPTIONS='-c synchronous_commit=...'
#   set     PGOPTIONS='-c synchronous_commit=... -c event_sourcing.correlation_id=req-123
#                      -c event_sourcing.actor=alice -c event_sourcing.causation_id=cmd-9'
#
# (the settings are placeholders until the library loads at the connection's
# first es_append; the defined settings then take their values).  After every
# run the script checks that the store holds exactly transactions x events
# rows, that with "set" every row's metadata has the three keys with these
# values (and "source" when the event had it), and that with "unset" none
# has any of them; the report shows stored rows of each variant.
#
# Method (as append_bench.sh).  All runs in one cluster.  Every variant of a
# setting runs once per round, -r N rounds (default 5) of -d SEC pgbench runs
# (default 3 s for part 1, 2 s for part 2, or -d for both); the order is
# reversed from one round to the next, so drift and bursts of noise on the
# machine hit the variants alike.  The tables show the median of the rounds;
# every run is listed under "Runs".  Every append run starts from an empty
# store (extension dropped and re-created in _app) after a CHECKPOINT.  A
# discarded warm-up precedes each part.  pgbench -n (no vacuum) -M prepared,
# -j 1 for 1 client and -j 2 for 4.  events/s = tps x events per
# transaction (x 1,000 for reads).
#
# The report goes to stdout (Markdown) and, with every pgbench log, to a
# directory printed at the end.  Progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=
ROUNDS=5
EXISTING=0
BUILD=0
WAIT=1
READS_ONLY=0

# --no-wait and --reads-only, besides the options of es_bench_args (bench/lib.sh).
es_bench_option() { case $1 in --no-wait) WAIT=0 ;; --reads-only) READS_ONLY=1 ;; *) return 1 ;; esac; }
es_bench_args "$@"
READ_SECS=${DURATION:-3}
APPEND_SECS=${DURATION:-2}

# Settings of the throwaway cluster (pg_virtualenv -o), as append_bench.sh.
PGCONF=(
  shared_buffers=1GB       # everything stays in memory
  fsync=on                 # pg_virtualenv's default is off
  max_wal_size=8GB         # no checkpoint during a run
  min_wal_size=2GB         # WAL segments are recycled, not created, in later runs
  checkpoint_timeout=30min
  autovacuum=off           # the store is emptied before every append run; no background noise
)

args=(-r "$ROUNDS")
[[ -z $DURATION ]] || args+=(-d "$DURATION")
((WAIT)) || args+=(--no-wait)
((READS_ONLY)) && args+=(--reads-only)
es_bench_virtualenv "${args[@]}"

# ---------------------------------------------------------------------------
# From here on, libpq's environment points at the server to use.
unset PGOPTIONS
LOGDIR=$(mktemp -d -t es_ubench.XXXXXX)
REPORT="$LOGDIR/report.md"
DB_UP="es_ubench_$$_up"
DB_NONE="es_ubench_$$_none"
DB_APP="es_ubench_$$_app"
AUDIT_OPTS='-c event_sourcing.correlation_id=req-123 -c event_sourcing.actor=alice -c event_sourcing.causation_id=cmd-9'
START=$SECONDS

qdb() { local db=$1; shift; PGOPTIONS='-c client_min_messages=warning' q -d "$db" "$@"; }

es_bench_require_extension
cleanup() {
  local db
  for db in "$DB_UP" "$DB_NONE" "$DB_APP"; do
    q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Other benchmarks on the machine.
WAITED=0 REDONE=0
# others: pids of other benchmark scripts (bench/*_bench.sh but this one).
# The bracket keeps the pattern from matching pgrep's own command line.
others() {
  local p cmd
  for p in $(pgrep -f '[A-Za-z0-9]_bench[.]sh' || true); do
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    [[ $cmd == *upcast_bench.sh* ]] && continue
    echo "$p"
  done
}
# wait_others: return once no other benchmark runs (poll every 10 s).
wait_others() {
  ((WAIT)) || return 0
  local o
  o=$(others)
  [[ -z $o ]] && return 0
  say "  waiting for other benchmarks to finish (pids ${o//$'\n'/ })"
  while [[ -n $(others) ]]; do sleep 10; WAITED=$((WAITED + 10)); done
}
# disturbed: true when another benchmark runs now (it started during the
# run just made, since wait_others cleared the way before it).
disturbed() {
  ((WAIT)) || return 1
  [[ -n $(others) ]] || return 1
  REDONE=$((REDONE + 1))
  say "  another benchmark started during this run: discarding it"
  return 0
}

# ---------------------------------------------------------------------------
wait_others
say "es_ubench: logs in $LOGDIR"
out "# event_sourcing upcasting and audit metadata benchmark"
out ""
out "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
out "- machine: $(es_bench_machine)"
out "- server: $(q -d postgres -c 'SELECT version()')"
out "- client: $(pgbench --version), on the same machine, connecting to ${PGHOST:-the default socket}"
if ((EXISTING)); then
  out "- cluster: existing server (--existing), databases $DB_UP, $DB_NONE, $DB_APP"
else
  out "- cluster: throwaway, \`pg_virtualenv -t -v 15$(printf ' -o %s' "${PGCONF[@]}")\`"
fi
out "- extension: $(es_bench_extension)"
out "- server settings: $(q -d postgres -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers','fsync','synchronous_commit','wal_sync_method','full_page_writes','wal_level','max_wal_size','min_wal_size','checkpoint_timeout','autovacuum','wal_buffers','jit')")"
out "- pgbench: \`pgbench -n -M prepared -T SEC -c C -j J -f bench/<script> <db>\` (J = 1 for 1 client, 2 for 4); PGOPTIONS per run"
out "- $ROUNDS round(s) of one run per variant and setting ($READ_SECS s runs for reading, $APPEND_SECS s for appending), the order reversed every round; the tables show the median"
out ""

# ---------------------------------------------------------------------------
say "part 1: setting up the read stores"
q -d postgres -c "CREATE DATABASE $DB_UP" >/dev/null
qdb "$DB_UP" -c "CREATE EXTENSION event_sourcing" -f "$HERE/upcast_setup.sql" >/dev/null
q -d postgres -c "CREATE DATABASE $DB_NONE TEMPLATE $DB_UP" >/dev/null
qdb "$DB_UP" -f "$HERE/upcast_define.sql" >/dev/null
for db in "$DB_UP" "$DB_NONE"; do
  [[ $(qdb "$db" -c "SELECT (SELECT count(*) FROM es_load('up-1')) || ' ' || (SELECT count(*) FROM es_load('pl-1')) || ' ' || (SELECT count(*) FROM es_load('plain-1'))") == "1000 1000 1000" ]] \
    || die "$db: up-1, pl-1 and plain-1 must have 1000 events each"
done
[[ $(qdb "$DB_UP" -c "SELECT count(*) FROM es_upcasters") == 4 && $(qdb "$DB_NONE" -c "SELECT count(*) FROM es_upcasters") == 0 ]] \
  || die "expected 4 upcasters in $DB_UP and none in $DB_NONE"
for s in up pl; do
  for inl in on off; do
    [[ $(PGOPTIONS="-c client_min_messages=warning -c event_sourcing.inline_sql_callbacks=$inl" q -d "$DB_UP" -c "SELECT count(*) FROM es_load('$s-1') WHERE schema_version = 3 AND event_type IN ('MoneyDeposited', 'CashDeposited') AND data = '{\"value\": 10, \"currency\": \"EUR\"}'") == 1000 ]] \
      || die "es_load('$s-1') does not return the upcast events (inline_sql_callbacks=$inl)"
  done
done
# the SQL steps are inlined (DEBUG1 reports each compilation), unless turned off
INLINED=$(PGOPTIONS='-c client_min_messages=debug1' q -d "$DB_UP" -c "SELECT count(*) FROM es_load('up-1')" 2>&1 >/dev/null | grep -c 'evaluated as an expression' || true)
NOT_INLINED=$(PGOPTIONS='-c client_min_messages=debug1 -c event_sourcing.inline_sql_callbacks=off' q -d "$DB_UP" -c "SELECT count(*) FROM es_load('up-1')" 2>&1 >/dev/null | grep -c 'evaluated as an expression' || true)
[[ $INLINED == 2 && $NOT_INLINED == 0 ]] \
  || die "expected both SQL upcasters of up-1 evaluated as expressions (got $INLINED), and none with inline_sql_callbacks=off (got $NOT_INLINED)"
[[ $(qdb "$DB_UP" -c "SELECT count(*) FROM es_events WHERE schema_version = 1") == 3000 ]] \
  || die "the stored events must all be at schema 1"
[[ $(qdb "$DB_NONE" -c "SELECT count(*) FROM es_load('up-1') WHERE schema_version = 1 AND data = '{\"amount\": 10}'") == 1000 ]] \
  || die "$DB_NONE must return up-1 as stored"
[[ $(qdb "$DB_UP" -c "SELECT (SELECT array_agg(e ORDER BY stream_version) FROM es_load('plain-1') e) = (SELECT array_agg(e ORDER BY stream_version) FROM es_events e WHERE stream_id = 'plain-1')") == t ]] \
  || die "es_load('plain-1') must return the stored rows"
# the inline-expression SELECT returns what es_load('up-1') returns, row for row
[[ $(qdb "$DB_UP" -c "SELECT (SELECT array_agg(x::text) FROM ($(grep -v '^--' "$HERE/upcast_select_expr.sql" | tr '\n' ' ' | sed 's/; *$//')) x) = (SELECT array_agg(e::text) FROM es_load('up-1') e)") == t ]] \
  || die "bench/upcast_select_expr.sql must return the rows of es_load('up-1')"

VARIANTS=(up off pl plain none sel selx)
declare -A RDB=([up]=$DB_UP [off]=$DB_UP [pl]=$DB_UP [plain]=$DB_UP [none]=$DB_NONE [sel]=$DB_UP [selx]=$DB_UP)
# the script of each variant: bench/<name>.sql, bench/<name>_count.sql
declare -A RSCRIPT=([up]=upcast_read_up [off]=upcast_read_up [pl]=upcast_read_pl [plain]=upcast_read_plain
                    [none]=upcast_read_plain [sel]=upcast_select [selx]=upcast_select_expr)
declare -A ROPTS=([off]='-c event_sourcing.inline_sql_callbacks=off')
RUNS=() CEILING=()
# read_group KIND LABEL: the rounds of every variant for one query kind
# ("" = all rows, "_count" = server side); prints a table row.
read_group() {
  local kind=$1 label=$2 r v
  local -A ALL=() R=()
  for ((r = 1; r <= ROUNDS; r++)); do
    for v in $(order "$r" "${VARIANTS[@]}"); do
      while :; do
        wait_others
        pgrun "read-$v${kind}" "${RSCRIPT[$v]}${kind}.sql" "${RDB[$v]}" 1 on "$READ_SECS" "${ROPTS[$v]:-}"
        disturbed || break
      done
      ALL[$v]+="$(printf '%.0f' "$TPS") "
    done
  done
  for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    R[$v]=$(median ${ALL[$v]})
  done
  out "| $label | ${R[up]} | ${R[off]} | ${R[pl]} | ${R[plain]} | **$(ratio "${R[up]}" "${R[plain]}")** | $(ratio "${R[off]}" "${R[plain]}") | $(ratio "${R[pl]}" "${R[plain]}") | **$(ratio "${R[up]}" "${R[off]}")** | $(ratio "${R[up]}" "${R[pl]}") | ${R[none]} | $(ratio "${R[plain]}" "${R[none]}") |"
  CEILING+=("| $label | ${R[up]} | ${R[plain]} | ${R[sel]} | ${R[selx]} | **$(ratio "${R[up]}" "${R[plain]}")** | **$(ratio "${R[up]}" "${R[selx]}")** | $(ratio "${R[selx]}" "${R[sel]}") | $(ratio "${R[plain]}" "${R[sel]}") |")
  # shellcheck disable=SC2086
  RUNS+=("- $label: up $(join ${ALL[up]}); off $(join ${ALL[off]}); pl $(join ${ALL[pl]}); plain $(join ${ALL[plain]}); none $(join ${ALL[none]}); sel $(join ${ALL[sel]}); selx $(join ${ALL[selx]})")
}

say "part 1: warm-up (discarded)"
for v in "${VARIANTS[@]}"; do pgrun "warmup-read-$v" "${RSCRIPT[$v]}_count.sql" "${RDB[$v]}" 1 on 1 "${ROPTS[$v]:-}"; done

say "part 1: reading"
out "## 1. Reading a 1,000-event stream through a 2-step upcaster chain (1 client)"
out ""
out "reads/s (events/s = reads/s x 1,000).  up = \`es_load('up-1')\`, MoneyDeposited stored at schema 1, upcast 1->2->3 by two SQL functions, evaluated as expressions (inlined); off = the same with \`event_sourcing.inline_sql_callbacks = off\` (regular calls through the function manager); pl = \`es_load('pl-1')\`, CashDeposited, the same two steps in PL/pgSQL; plain = \`es_load('plain-1')\`, type Noted, in the same store (upcasters exist for other types); none = \`es_load('plain-1')\` in a copy of the store without any upcaster.  Checked before measuring: at DEBUG1 both SQL steps reported \"evaluated as an expression\" ($INLINED), none with the setting off ($NOT_INLINED)."
out ""
out "| query | up (SQL inlined) | off (SQL, fmgr) | pl (PL/pgSQL) | plain | up / plain | off / plain | pl / plain | up / off | up / pl | none | plain / none |"
out "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
read_group "_count" "server side: \`SELECT count(e) FROM es_load(...) e\`"
read_group "" "all rows to the client: \`SELECT * FROM es_load(...)\`"
out ""
out "The ceiling: up-1's rows by a plain ordered SELECT on es_events in $DB_UP, without es_load.  sel = the rows as stored (\`SELECT * FROM es_events WHERE stream_id = 'up-1' ORDER BY stream_version\`); selx = the same SELECT evaluating the two steps' expressions written inline, each once per row (\`jsonb_build_object('value', data->'amount', 'currency', data->'currency')\` over a subquery computing \`data || '{\"currency\": \"EUR\"}'\`, OFFSET 0), returning the rows of es_load('up-1') (checked).  up / selx: the upcast read against computing the same expressions in a query; selx / sel: what the expressions cost that query."
out ""
out "| query | up (SQL inlined) | plain | sel | selx | up / plain | up / selx | selx / sel | plain / sel |"
out "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${CEILING[@]}"; do out "$r"; done
out ""
out "Runs (reads/s of each $READ_SECS s run, in run order):"
out ""
for r in "${RUNS[@]}"; do out "$r"; done
out ""
out "What the reads return (first 2 events of each stream, in $DB_UP):"
out ""
out '```'
qdb "$DB_UP" -c "(SELECT stream_id, stream_version, event_type, schema_version, data FROM es_load('up-1', 1, 2)) UNION ALL (SELECT stream_id, stream_version, event_type, schema_version, data FROM es_load('pl-1', 1, 2)) UNION ALL (SELECT stream_id, stream_version, event_type, schema_version, data FROM es_load('plain-1', 1, 2))" \
  | tee -a "$REPORT"
out '```'
out ""

if ((READS_ONLY)); then
  out "(--reads-only: part 2 skipped.)  Waited ${WAITED} s for other benchmarks; $REDONE run(s) discarded and done again. Total time $((SECONDS - START)) s."
  out ""
  out "Logs: $LOGDIR"
  exit 0
fi

# ---------------------------------------------------------------------------
say "part 2: setting up the append store"
q -d postgres -c "CREATE DATABASE $DB_APP" >/dev/null
qdb "$DB_APP" -c "CREATE EXTENSION event_sourcing" >/dev/null

reset_app() {
  qdb "$DB_APP" >/dev/null <<'EOF'
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
CHECKPOINT;
EOF
}

declare -A SAMPLE=() ROWSIZE=()
# append_run VARIANT EVENTS META CLIENTS SYNC SECONDS: reset, run, check the
# rows; sets EVS (events/s).  VARIANT set|unset, META empty|own.
append_run() {
  local variant=$1 ev=$2 meta=$3 clients=$4 sync=$5 secs=$6 script extra="" check
  if [[ $meta == own ]]; then script=upcast_append_own_$ev.sql; else script=upcast_append_$ev.sql; fi
  [[ $variant == set ]] && extra=$AUDIT_OPTS
  reset_app
  pgrun "$variant-$meta-$ev-c$clients-sync_$sync" "$script" "$DB_APP" "$clients" "$sync" "$secs" "$extra"
  # rows, rows with all three audit values, rows with any audit key, rows with own metadata
  check=$(qdb "$DB_APP" -F ' ' -c "SELECT count(*),
      count(*) FILTER (WHERE metadata @> '{\"correlation_id\": \"req-123\", \"causation_id\": \"cmd-9\", \"actor\": \"alice\"}'),
      count(*) FILTER (WHERE metadata ?| array['correlation_id', 'causation_id', 'actor']),
      count(*) FILTER (WHERE metadata @> '{\"source\": \"web\"}')
    FROM es_events")
  read -r rows full any own <<<"$check"
  local want_full=0 want_own=0
  [[ $variant == set ]] && want_full=$rows
  [[ $meta == own ]] && want_own=$rows
  if ((rows != TX * ev || full != want_full || any != want_full || own != want_own)); then
    say "$variant/$meta: $rows rows (expected $TX transactions x $ev events), $full with all audit values (expected $want_full), $any with some audit key, $own with own metadata (expected $want_own)"
    exit 1
  fi
  local k="$variant-$meta"
  if [[ -z ${SAMPLE[$k]:-} ]]; then
    SAMPLE[$k]=$(qdb "$DB_APP" -F ' | ' -c "SELECT stream_id, stream_version, metadata FROM es_events ORDER BY global_position DESC LIMIT 2")
    ROWSIZE[$k]=$(qdb "$DB_APP" -c "SELECT round(avg(pg_column_size(metadata))) || ' B metadata, ' || round(avg(pg_column_size(e))) || ' B row' FROM es_events e")
  fi
  EVS=$(awk -v t="$TPS" -v e="$ev" 'BEGIN { printf "%.0f", t * e }')
}

say "part 2: warm-up (discarded)"
for v in unset set; do append_run "$v" 10 own 4 off 1; done
SAMPLE=() ROWSIZE=()

say "part 2: appending"
out "## 2. Appending with the audit metadata settings set vs unset"
out ""
out "events/s; set = PGOPTIONS='$AUDIT_OPTS' (plus synchronous_commit), unset = no such option; ratio = set / unset (target >= 0.95).  empty = events without metadata of their own; own = each event with {\"source\": \"web\"}."
out ""
out "| events/tx | metadata | clients | synchronous_commit | unset | set | set / unset |"
out "|---:|:---|---:|:---|---:|---:|---:|"
LOW=() RUNS=()
for ev in 1 10; do
  for meta in empty own; do
    for setting in "1 off" "4 off" "1 on"; do
      read -r clients sync <<<"$setting"
      declare -A ALL=() R=()
      for ((r = 1; r <= ROUNDS; r++)); do
        for v in $(order "$r" unset set); do
          while :; do
            wait_others
            append_run "$v" "$ev" "$meta" "$clients" "$sync" "$APPEND_SECS"
            disturbed || break
          done
          ALL[$v]+="$EVS "
        done
      done
      # shellcheck disable=SC2086
      R[unset]=$(median ${ALL[unset]}) R[set]=$(median ${ALL[set]})
      out "| $ev | $meta | $clients | $sync | ${R[unset]} | ${R[set]} | **$(ratio "${R[set]}" "${R[unset]}")** |"
      # shellcheck disable=SC2086
      RUNS+=("- events/tx=$ev, metadata=$meta, clients=$clients, synchronous_commit=$sync: unset $(join ${ALL[unset]}); set $(join ${ALL[set]})")
      if below "${R[set]}" "${R[unset]}" 0.95; then
        LOW+=("events/tx=$ev, metadata=$meta, clients=$clients, synchronous_commit=$sync ($(ratio "${R[set]}" "${R[unset]}"))")
      fi
      unset ALL R
    done
  done
done
out ""
if ((${#LOW[@]})); then
  out "set / unset below 0.95: $(join "${LOW[@]}")"
else
  out "set / unset is at or above 0.95 in every setting."
fi
out ""
out "Runs (events/s of each $APPEND_SECS s run, in run order):"
out ""
for r in "${RUNS[@]}"; do out "$r"; done
out ""
out "Stored rows (the last 2 of the first measured run of each variant; every run was checked: with set, all rows carry the 3 audit values, with unset none has an audit key):"
out ""
out '```'
for k in unset-empty set-empty unset-own set-own; do
  out "$k (avg ${ROWSIZE[$k]}):"
  out "${SAMPLE[$k]}"
done
out '```'
out ""
out "Waited ${WAITED} s for other benchmarks; $REDONE run(s) discarded and done again because another benchmark started during them. Total time $((SECONDS - START)) s."
out ""
out "Logs: $LOGDIR"
