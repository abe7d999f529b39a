#!/usr/bin/env bash
# scripts/test.sh: build event_sourcing and run every test suite (`make test`).
#
#   1. deps.sh, then make (-Werror) and make install
#   2. pg_regress (REGRESS)        in a throwaway pg_virtualenv cluster
#   3. isolation  (ISOLATION)      in a throwaway pg_virtualenv cluster that
#                                  preloads the library
#   4. pgTAP      (test/pgtap/*.sql, pg_prove) in a throwaway cluster
#   5. Perl TAP   (test/t/*.pl, PostgreSQL::Test::Cluster); as root these run
#      as the `postgres` user from a copy of the tree, since initdb refuses root
#
# Every suite runs even if an earlier one failed; regression.diffs and TAP
# logs are printed on failure. The last line is "N passed, N failed" (N counts
# test files: .sql, .spec, .pl), and the exit status is non-zero on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Deterministic environment: UTF8 clusters, no stray connection settings.
export LANG=C.UTF-8
unset LC_ALL LANGUAGE ${!LC_@} PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGCLUSTER

section() { printf '\n==================== %s ====================\n' "$*"; }

PASSED=0 FAILED=0
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

summary() { printf '\n%d passed, %d failed\n' "$PASSED" "$FAILED"; }

# Throwaway cluster: temp dir even as root, PostgreSQL 15 only.
in_cluster() { pg_virtualenv -t -v 15 -o max_prepared_transactions=10 "$@" </dev/null; }
# The same with the library preloaded (es_wait sleeps on its shared condition
# variable only then): for the isolation suite.
in_cluster_preload() { pg_virtualenv -t -v 15 -o max_prepared_transactions=10 -o shared_preload_libraries=event_sourcing "$@" </dev/null; }

# run_suite NAME CMD...: run CMD with its output shown and logged, then count
# the tests from the pg_regress ("All N tests passed", "M of N tests failed")
# or TAP harness ("Files=N" minus the "file.. ok" lines) output.
# Returns CMD's exit status.
run_suite() {
  local name=$1 log="$WORK/$1.log" start=$SECONDS rc n f p
  shift
  section "$name"
  set +e
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  n=0 f=0
  if grep -Eq '^ All [0-9]+ tests passed' "$log"; then
    n=$(sed -nE 's/^ All ([0-9]+) tests passed.*/\1/p' "$log" | tail -1)
  elif grep -Eq '^ [0-9]+ of [0-9]+ tests failed' "$log"; then
    f=$(sed -nE 's/^ ([0-9]+) of [0-9]+ tests failed.*/\1/p' "$log" | tail -1)
    n=$(sed -nE 's/^ [0-9]+ of ([0-9]+) tests failed.*/\1/p' "$log" | tail -1)
  elif grep -Eq '^Files=[0-9]+,' "$log"; then
    n=$(sed -nE 's/^Files=([0-9]+),.*/\1/p' "$log" | tail -1)
    f=$((n - $(grep -cE '^[^ ]+ \.+ (ok|skipped)' "$log" || true)))
  fi
  p=$((n - f))
  # A failure no summary line accounts for (crash, setup error) counts as one.
  if ((rc != 0 && f == 0)); then f=1; fi
  if ((rc == 0 && n == 0)); then p=1; fi
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f))
  echo "---- $name: exit $rc, $p passed, $f failed, $((SECONDS - start))s"
  return "$rc"
}

show_diffs() { # show_diffs FILE: print a pg_regress diffs file if present
  if [[ -s $1 ]]; then section "$1"; cat "$1"; fi
}

has_files() { compgen -G "$1" >/dev/null; }

# ---------------------------------------------------------------------------
section "dependencies"
. scripts/deps.sh
echo "PG_CONFIG=$PG_CONFIG ($("$PG_CONFIG" --version))"

section "build"
if ! { make --no-print-directory -j"$(nproc)" PG_CONFIG="$PG_CONFIG" && make --no-print-directory install PG_CONFIG="$PG_CONFIG"; }; then
  echo "---- build failed"
  FAILED=1
  summary
  exit 1
fi

# ---------------------------------------------------------------------------
if has_files 'sql/*.sql'; then
  rm -f regression.diffs
  run_suite "pg_regress" in_cluster make --no-print-directory installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= ISOLATION= \
    || show_diffs regression.diffs
else
  section "pg_regress"; echo "skipped: no sql/*.sql yet"
fi

if has_files 'test/isolation/specs/*.spec'; then
  rm -f output_iso/regression.diffs
  run_suite "isolation" in_cluster_preload make --no-print-directory installcheck PG_CONFIG="$PG_CONFIG" TAP_TESTS= REGRESS= \
    || show_diffs output_iso/regression.diffs
else
  section "isolation"; echo "skipped: no test/isolation/specs/*.spec yet"
fi

if has_files 'test/pgtap/*.sql'; then
  run_suite "pgtap" in_cluster bash -c '
    set -e
    createdb pgtap
    psql -X -q -v ON_ERROR_STOP=1 -d pgtap -c "CREATE EXTENSION pgtap"
    PGOPTIONS="-c client_min_messages=warning" pg_prove -d pgtap test/pgtap/*.sql' || true
else
  section "pgtap"; echo "skipped: no test/pgtap/*.sql yet"
fi

if has_files 'test/t/*.pl'; then
  # initdb refuses root: as root, run from a copy owned by postgres.
  tapdir=$PWD
  tap_as=()
  if [[ $(id -u) -eq 0 ]]; then
    tapdir="$WORK/tap"
    mkdir "$tapdir"
    tar --exclude=./.git --exclude=./tmp_check -cf - . | tar -C "$tapdir" -xf -
    chown -R postgres: "$WORK"
    tap_as=(runuser -u postgres -- env HOME="$tapdir" PATH="$PATH")
  fi
  run_suite "perl-tap" "${tap_as[@]}" make -C "$tapdir" --no-print-directory installcheck \
    PG_CONFIG="$PG_CONFIG" REGRESS= ISOLATION= PROVE_FLAGS="${PROVE_FLAGS:-}" </dev/null || {
    for t in $(sed -nE 's|^test/t/([^ ]+)\.pl \(Wstat.*|\1|p' "$WORK/perl-tap.log"); do
      f="$tapdir/tmp_check/log/regress_log_$t"
      if [[ -e $f ]]; then section "log of failed test/t/$t.pl (tail)"; tail -n 80 "$f"; fi
    done
  }
else
  section "perl-tap"; echo "skipped: no test/t/*.pl yet"
fi

summary
((FAILED == 0))
