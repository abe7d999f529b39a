# bench/lib.sh: shared by the bench/*_bench.sh scripts (sourced, not run).
# shellcheck shell=bash
#
# es_bench_virtualenv [ARG...]
#   Unless the script runs with --existing (EXISTING=1) or already runs
#   inside the throwaway cluster, re-run the calling script, with ARGs, in a
#   throwaway PostgreSQL 15 cluster made by Debian's pg_virtualenv with the
#   settings of the PGCONF array (one -o each), and exit with its status.
#   With --build (BUILD=1), first export the repository's HEAD (git archive)
#   to a temporary directory, build it, install it there (make install
#   DESTDIR=...) and point the cluster at it (Debian's extension_destdir and
#   dynamic_library_path), so that the run measures that one commit even if
#   someone runs make install meanwhile; ES_BENCH_BUILT then names the commit
#   for the report.  libpq's environment (PGHOST, PGPORT, ...) is cleared:
#   pg_virtualenv points it at the new cluster.  Inside,
#   ES_BENCH_IN_VIRTUALENV=1.  Returns, doing nothing, with --existing or
#   inside the cluster.
#
#   Uses EXISTING, BUILD (0|1) and PGCONF (array) of the calling script.
#   Environment assignments on the call (VAR=value es_bench_virtualenv ...)
#   reach the re-run script.  Refuses --build with --existing (exit 2).

ES_BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

es_bench_virtualenv() {
  local script=${BASH_SOURCE[1]} o rev rc
  if ((EXISTING && BUILD)); then
    echo "--build needs the throwaway cluster; it cannot be combined with --existing" >&2; exit 2
  fi
  ((EXISTING == 0)) && [[ -z ${ES_BENCH_IN_VIRTUALENV:-} ]] || return 0

  command -v pg_virtualenv >/dev/null || { echo "pg_virtualenv not found (apt-get install postgresql-common), or use --existing" >&2; exit 1; }
  local opts=()
  for o in "${PGCONF[@]}"; do opts+=(-o "$o"); done
  BUILDDIR=
  if ((BUILD)); then
    BUILDDIR=$(mktemp -d -t es_bench_build.XXXXXX)
    trap 'rm -rf "$BUILDDIR"' EXIT
    rev=$(git -C "$ES_BENCH_ROOT" rev-parse HEAD)
    es_bench_build "$rev" "$BUILDDIR"
    for o in "${ES_BENCH_BUILD_CONF[@]}"; do opts+=(-o "$o"); done
    export ES_BENCH_BUILT="commit $rev (--build: built into a private directory)"
  fi
  unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGCLUSTER PGOPTIONS
  export ES_BENCH_IN_VIRTUALENV=1
  rc=0
  pg_virtualenv -t -v 15 "${opts[@]}" -- bash "$script" "$@" </dev/null || rc=$?
  exit "$rc"
}

# es_bench_build REV DIR: export commit REV of the repository (git archive)
# into DIR/src, build it there and install it into DIR/inst (make install
# DESTDIR=...); DIR must exist and is made readable by the server (postgres).
# Sets ES_BENCH_BUILD_CONF (array): the server settings that make a cluster
# load that build and no other (Debian's extension_destdir for the control
# and SQL files, dynamic_library_path for the library, also for
# shared_preload_libraries = '$libdir/event_sourcing').
es_bench_build() {
  local rev=$1 dir=$2 libdir
  chmod 755 "$dir"
  mkdir -p "$dir/src"
  echo "building $rev in $dir" >&2
  git -C "$ES_BENCH_ROOT" archive "$rev" | tar -x -C "$dir/src"
  make -C "$dir/src" -s -j"$(nproc)" >/dev/null
  make -C "$dir/src" -s install DESTDIR="$dir/inst" >/dev/null
  libdir=$(pg_config --pkglibdir)
  ES_BENCH_BUILD_CONF=("extension_destdir=$dir/inst" "dynamic_library_path=$dir/inst$libdir:$libdir")
}

# Further clusters inside pg_virtualenv's throwaway environment (their
# configuration and data under its temporary directory, like its own cluster
# 15/regress).  Only inside the environment (ES_BENCH_IN_VIRTUALENV=1).
#
# es_bench_cluster_create NAME GUC=VALUE...: create (not start) cluster
#   15/NAME with those settings (postgresql.conf), superuser postgres with
#   the environment's password, so libpq's environment (PGHOST, PGUSER,
#   PGPASSWORD) reaches it once PGPORT is its port.  Sets ES_PORT[NAME].
# es_bench_cluster_pgdata NAME: its data directory.
# es_bench_cluster_drop_all: stop (immediate) and drop every cluster created
#   so; call it from the script's EXIT trap, since pg_virtualenv drops only
#   its own.
declare -A ES_PORT=()
ES_BENCH_CLUSTERS=()
es_bench_cluster_create() {
  local name=$1 o opts=()
  shift
  [[ -n ${ES_BENCH_IN_VIRTUALENV:-} && -n ${PG_CLUSTER_CONF_ROOT:-} ]] || { echo "es_bench_cluster_create: only inside pg_virtualenv -t" >&2; exit 1; }
  local work=${PG_CLUSTER_CONF_ROOT%/postgresql}
  for o in "$@"; do opts+=(--pgoption "$o"); done
  (cd / && pg_createcluster --quiet -d "$work/data/15/$name" -l "$work/log/postgresql-15-$name.log" \
     "${opts[@]}" 15 "$name" -- --username=postgres --pwfile="$PGSYSCONFDIR/pwfile" --nosync >/dev/null)
  ES_BENCH_CLUSTERS+=("$name")
  # shellcheck disable=SC2034  # read by the scripts
  ES_PORT[$name]=$(pg_conftool -s 15 "$name" show port)
}
es_bench_cluster_pgdata() { echo "${PG_CLUSTER_CONF_ROOT%/postgresql}/data/15/$1"; }
es_bench_cluster_drop_all() {
  local n
  for n in "${ES_BENCH_CLUSTERS[@]}"; do
    pg_ctlcluster --mode immediate 15 "$n" stop >/dev/null 2>&1 || true
    pg_dropcluster 15 "$n" >/dev/null 2>&1 || true
  done
  ES_BENCH_CLUSTERS=()
}

# es_bench_loaded_library DB: the event_sourcing.so the server maps in a
# session of DB that has called into the extension (read from the backend's
# /proc/self/maps: the run must be root or the server's user).
es_bench_loaded_library() {
  q -d "$1" -c "SELECT count(*) FROM es_read_all(0, 1)" \
    -c "SELECT string_agg(DISTINCT substring(l FROM '/[^ ]*event_sourcing[.]so'), ', ')
        FROM regexp_split_to_table(pg_read_file('/proc/self/maps'), E'\\n') l
        WHERE l LIKE '%event_sourcing.so%'" | tail -1
}

# es_bench_preloaded_library: the event_sourcing.so the postmaster maps,
# i.e. the one loaded by shared_preload_libraries; empty when it is not
# preloaded (read from /proc/<postmaster pid>/maps, as above).
es_bench_preloaded_library() {
  q -d postgres -c "SELECT coalesce(string_agg(DISTINCT substring(l FROM '/[^ ]*event_sourcing[.]so'), ', '), '')
        FROM regexp_split_to_table(pg_read_file('/proc/' || split_part(pg_read_file('postmaster.pid'), E'\\n', 1) || '/maps'), E'\\n') l
        WHERE l LIKE '%event_sourcing.so%'"
}

# ---------------------------------------------------------------------------
# The rest: helpers every script shares once it runs against its server.

# The calling script (the bottom of the source stack), for usage.
ES_BENCH_SCRIPT=${BASH_SOURCE[${#BASH_SOURCE[@]} - 1]}

# usage: the calling script's header comment, from line 2 to `set -euo`.
usage() { sed -n '2,/^set -euo/p' "$ES_BENCH_SCRIPT" | sed '$d; s/^# \{0,1\}//'; }

# es_bench_args ARG...: parse the options every script takes:
#   -d|--duration SEC, -r|--rounds N, --quick (-d 1 -r 1), --existing,
#   --build, -h|--help.
# Sets DURATION, ROUNDS, EXISTING and BUILD (defaults: the caller's values;
# DURATION or ROUNDS may be left empty, "the script's default").  Any other
# argument goes to the caller's function es_bench_option, if it has one,
# which handles it (a flag without a value) or returns 1: unknown argument,
# exit 2.  DURATION and ROUNDS, when set, must be positive integers (exit 2).
es_bench_args() {
  while (($#)); do
    case $1 in
      -d|--duration) DURATION=${2:?}; shift 2 ;;
      -r|--rounds) ROUNDS=${2:?}; shift 2 ;;
      --quick) DURATION=1 ROUNDS=1; shift ;;
      --existing) EXISTING=1; shift ;;
      --build) BUILD=1; shift ;;
      -h|--help) usage; exit 0 ;;
      *)
        if declare -F es_bench_option >/dev/null && es_bench_option "$1"; then
          shift
        else
          echo "unknown argument: $1 (see --help)" >&2; exit 2
        fi ;;
    esac
  done
  [[ -z $DURATION || $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "duration must be a positive integer" >&2; exit 2; }
  [[ -z $ROUNDS || $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "rounds must be a positive integer" >&2; exit 2; }
}

# Progress to stderr; report lines to stdout and $REPORT; psql.
say() { printf '%s\n' "$*" >&2; }
out() { printf '%s\n' "$*" | tee -a "$REPORT"; }
die() { say "$*"; exit 1; }
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# es_bench_require_extension: exit 1 unless the server has event_sourcing.
es_bench_require_extension() {
  if [[ $(q -d postgres -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'event_sourcing'") != 1 ]]; then
    die "event_sourcing is not installed on this server: run 'make && make install' first"
  fi
}

# es_bench_machine: CPUs, model, RAM and kernel, for the report.
es_bench_machine() {
  echo "$(nproc) CPUs ($(lscpu 2>/dev/null | sed -nE 's/^Model name: *//p' | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
}

# es_bench_extension: the extension measured, for the report: the commit
# built by --build, or the installed build and the repository's HEAD.
es_bench_extension() {
  if [[ -n ${ES_BENCH_BUILT:-} ]]; then
    echo "$ES_BENCH_BUILT"
  else
    echo "the installed build; repository HEAD is $(git -C "$ES_BENCH_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$ES_BENCH_ROOT" diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ', with uncommitted changes')"
  fi
}

RUN=0
# es_bench_pgbench LOG ARG...: run number RUN (the caller counts it) of
# `pgbench -n -M prepared ARG...`, its output in LOG; exit 1 when pgbench
# fails or reports failed transactions.  Sets TPS and TX (transactions
# processed), empty when pgbench does not report them.
es_bench_pgbench() {
  local log=$1 failed
  shift
  if ! pgbench -n -M prepared "$@" >"$log" 2>&1; then
    say "pgbench failed:"; cat "$log" >&2; exit 1
  fi
  failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$log")
  if [[ -n $failed && $failed != 0 ]]; then
    say "pgbench reports $failed failed transactions:"; cat "$log" >&2; exit 1
  fi
  TPS=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' "$log")
  TX=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$log")
}

# pgrun NAME SCRIPT DB CLIENTS SYNC SECONDS [PGOPTIONS]: one pgbench run of
# bench/SCRIPT in DB, -c CLIENTS -j 1 (2 for more than 1 client), -T
# SECONDS, with synchronous_commit=SYNC and PGOPTIONS; its log is
# $LOGDIR/NNN-NAME.log, NNN the run's number in PGRUN_DIGITS (default 3)
# digits.  Sets TPS and TX.
pgrun() {
  local name=$1 script=$2 db=$3 clients=$4 sync=$5 secs=$6 extra=${7:-} jobs=1 log
  ((clients > 1)) && jobs=2
  RUN=$((RUN + 1))
  log=$(printf '%s/%0*d-%s.log' "$LOGDIR" "${PGRUN_DIGITS:-3}" "$RUN" "$name")
  say "  run $RUN: $name (-c $clients, synchronous_commit=$sync, ${secs}s)"
  PGOPTIONS="-c synchronous_commit=$sync${extra:+ $extra}" \
    es_bench_pgbench "$log" -c "$clients" -j "$jobs" -T "$secs" -f "$HERE/$script" "$db"
  [[ -n $TPS && -n $TX ]] || die "cannot parse $log"
}

# median_fmt FORMAT VALUE...: the median, printed with the awk FORMAT;
# median VALUE...: the same, rounded to an integer.
median_fmt() { local f=$1; shift; printf '%s\n' "$@" | sort -g | awk -v f="$f" '{ v[NR] = $1 } END { printf f, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median() { median_fmt %.0f "$@"; }
# es_bench_deposits_sql PREFIX STREAMS BATCHES SIZE: SQL that appends
# BATCHES batches of SIZE 'Deposited' events with es_append, batch b to
# stream PREFIX-(b % STREAMS) with amounts b * SIZE + 1 .. b * SIZE + SIZE
# (so positions are dense: 1 .. BATCHES * SIZE), then VACUUM ANALYZE and
# CHECKPOINT.  The store of catchup_bench.sh and subscription_group.sh.
es_bench_deposits_sql() {
  cat <<EOF
DO \$\$
BEGIN
    FOR b IN 0..$3 - 1 LOOP
        PERFORM es_append('$1-' || (b % $2), NULL,
                          (SELECT jsonb_agg(jsonb_build_object(
                                      'type', 'Deposited',
                                      'data', jsonb_build_object('amount', b * $4 + i, 'currency', 'EUR')))
                           FROM generate_series(1, $4) i));
    END LOOP;
END \$\$;
VACUUM ANALYZE es_events;
CHECKPOINT;
EOF
}
# ratio A B: A / B, 2 decimals ("-" when B is not positive).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
# below A B M: true when A / B < M.
below() { awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { exit !(b > 0 && a / b < m) }'; }
join() { local o="" x; for x in "$@"; do o+="${o:+, }$x"; done; echo "$o"; }
# order ROUND NAME...: the names, reversed in even rounds.
order() {
  local r=$1 i; shift
  local a=("$@")
  if ((r % 2)); then echo "${a[@]}"; else for ((i = ${#a[@]} - 1; i >= 0; i--)); do printf '%s ' "${a[i]}"; done; echo; fi
}
