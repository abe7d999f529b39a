#!/usr/bin/env bash
# scripts/deps.sh: install what building and testing event_sourcing needs on
# Debian 12 (PostgreSQL 15, its PGXS headers, pgTAP, pg_prove, the Perl TAP
# modules, DBD::Pg for the fuzz suite, the example consumers' psycopg 3 and
# Node.js with examples/node_modules), then export PG_CONFIG pointing at
# PostgreSQL 15.
#
# Idempotent and quick: apt-get runs only when a package is missing, npm ci
# only when examples/node_modules is missing or older than
# examples/package-lock.json, so it also works without root when everything
# is already there.
# Run it (`bash scripts/deps.sh`) or source it (`. scripts/deps.sh`) to get
# PG_CONFIG and PATH exported into the calling shell.
set -euo pipefail

PACKAGES=(
  make gcc libc6-dev perl
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
  libdbd-pg-perl
  python3-psycopg
)
# Node.js for examples/consumer.mjs: Debian's, unless a node is installed
# (e.g. a newer one that brings its own npm).
if ! command -v node >/dev/null; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  [[ "$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] \
    || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "deps.sh: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps.sh: missing packages and not root; run as root: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# node-postgres for examples/consumer.mjs, exactly as examples/package-lock.json
# pins it (npm writes node_modules/.package-lock.json last).
EXAMPLES="$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples" && pwd)"
if [[ ! "$EXAMPLES/node_modules/.package-lock.json" -nt "$EXAMPLES/package-lock.json" ]]; then
  echo "deps.sh: npm ci in $EXAMPLES"
  (cd "$EXAMPLES" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error >/dev/null)
fi

# Always build and test against 15, whatever else is installed.
PG_BINDIR=/usr/lib/postgresql/15/bin
export PG_CONFIG="${PG_CONFIG:-$PG_BINDIR/pg_config}"
if ! "$PG_CONFIG" --version | grep -q '^PostgreSQL 15\.'; then
  echo "deps.sh: $PG_CONFIG is not PostgreSQL 15 ($("$PG_CONFIG" --version))" >&2
  exit 1
fi
export PATH="$("$PG_CONFIG" --bindir):$PATH"
