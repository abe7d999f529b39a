#!/usr/bin/env bash
# bench/subscription_bench.sh: a consumer of a subscription, reading 1,000
# events at a time to the client and acknowledging each batch in the same
# transaction, vs es_read_all paging the same events (issue 13; target >= 0.9).
# It is bench/catchup_bench.sh with AGAINST=subscription (same options:
# --quick, -n, -r, --build, --existing, MODES=...); see there.
exec env AGAINST=subscription bash "$(dirname "${BASH_SOURCE[0]}")/catchup_bench.sh" "$@"
