#!/usr/bin/env bash
# scripts/demo.sh: `make demo`. Installs what is missing, builds and installs
# event_sourcing, then runs examples/demo.sql and examples/consumer_demo.sh
# (a consumer outside the database) in a throwaway PostgreSQL 15 cluster
# (pg_virtualenv), echoing each statement before its result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export LANG=C.UTF-8
unset LC_ALL LANGUAGE ${!LC_@} PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSERVICE PGCLUSTER

. scripts/deps.sh
make --no-print-directory -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
make --no-print-directory install PG_CONFIG="$PG_CONFIG"

echo
echo "=== examples/demo.sql and examples/consumer_demo.sh in a throwaway PostgreSQL 15 cluster ==="
pg_virtualenv -t -v 15 bash -c 'psql -X -a -v ON_ERROR_STOP=1 -f examples/demo.sql && bash examples/consumer_demo.sh' </dev/null
