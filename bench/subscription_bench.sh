#!/usr/bin/env bash
# bench/subscription_bench.sh: consumers of a subscription reading 1,000
# events at a time to the client and acknowledging each batch -- in one
# transaction with the read (4 round trips), or together with the next read
# (1 round trip, pipelined) -- vs es_read_all paging the same events (issue
# 13; target >= 0.9).
# It is bench/catchup_bench.sh with AGAINST=subscription (same options:
# --quick, -n, -r, --build, --existing, MODES=...); see there.
exec env AGAINST=subscription bash "$(dirname "${BASH_SOURCE[0]}")/catchup_bench.sh" "$@"
