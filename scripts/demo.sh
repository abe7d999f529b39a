#!/usr/bin/env bash
# scripts/demo.sh: `make demo`. Installs what is missing, builds and installs
# event_sourcing, then runs examples/demo.sql in a throwaway PostgreSQL 15
# cluster (pg_virtualenv), echoing each statement before its result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export LANG=C.UTF-8
unset LC_ALL LANGUAGE ${!LC_@} PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGCLUSTER

. scripts/deps.sh
make --no-print-directory -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
make --no-print-directory install PG_CONFIG="$PG_CONFIG"

echo
echo "=== examples/demo.sql in a throwaway PostgreSQL 15 cluster ==="
pg_virtualenv -t -v 15 psql -X -a -v ON_ERROR_STOP=1 -f examples/demo.sql </dev/null
