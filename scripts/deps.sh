#!/usr/bin/env bash
# scripts/deps.sh: install what building and testing event_sourcing needs on
# Debian 12 (PostgreSQL 15, its PGXS headers, pgTAP, pg_prove, the Perl TAP
# modules, DBD::Pg for the fuzz suite), then export PG_CONFIG pointing at PostgreSQL 15.
#
# Idempotent and quick: apt-get runs only when a package is missing, so it
# also works without root when everything is already there.
# Run it (`bash scripts/deps.sh`) or source it (`. scripts/deps.sh`) to get
# PG_CONFIG and PATH exported into the calling shell.
set -euo pipefail

PACKAGES=(
  make gcc libc6-dev perl
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
  libdbd-pg-perl
)

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

# Always build and test against 15, whatever else is installed.
PG_BINDIR=/usr/lib/postgresql/15/bin
export PG_CONFIG="${PG_CONFIG:-$PG_BINDIR/pg_config}"
if ! "$PG_CONFIG" --version | grep -q '^PostgreSQL 15\.'; then
  echo "deps.sh: $PG_CONFIG is not PostgreSQL 15 ($("$PG_CONFIG" --version))" >&2
  exit 1
fi
export PATH="$("$PG_CONFIG" --bindir):$PATH"
