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
  local script=${BASH_SOURCE[1]} o libdir rev rc
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
    chmod 755 "$BUILDDIR"   # the server runs as postgres
    trap 'rm -rf "$BUILDDIR"' EXIT
    rev=$(git -C "$ES_BENCH_ROOT" rev-parse HEAD)
    echo "building $rev in $BUILDDIR" >&2
    git -C "$ES_BENCH_ROOT" archive "$rev" | tar -x -C "$BUILDDIR"
    make -C "$BUILDDIR" -s -j"$(nproc)" >/dev/null
    make -C "$BUILDDIR" -s install DESTDIR="$BUILDDIR/inst" >/dev/null
    libdir=$(pg_config --pkglibdir)
    opts+=(-o "extension_destdir=$BUILDDIR/inst" -o "dynamic_library_path=$BUILDDIR/inst$libdir:$libdir")
    export ES_BENCH_BUILT="commit $rev (--build: built into a private directory)"
  fi
  unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGCLUSTER PGOPTIONS
  export ES_BENCH_IN_VIRTUALENV=1
  rc=0
  pg_virtualenv -t -v 15 "${opts[@]}" -- bash "$script" "$@" </dev/null || rc=$?
  exit "$rc"
}
