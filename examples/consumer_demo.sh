#!/usr/bin/env bash
# examples/consumer_demo.sh: part 6 of `make demo`, run after examples/demo.sql
# in the same throwaway cluster -- a consumer outside the database
# (doc/consumers.md): examples/consumer.py exports the account events to a
# file, the application waits until it has them (read-your-writes), and the
# consumer stops gracefully.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out="$dir/account-export.jsonl"
sql() { psql -X -a -q -v ON_ERROR_STOP=1 "$@"; }

cat <<'TXT'

------------------------------------------------------------------------
-- Part 6: a consumer outside the database (doc/consumers.md)
------------------------------------------------------------------------
TXT
sql <<'SQL'
-- A subscription to the account category, from the start of the log.
SELECT es_define_subscription('account-export', 'account');
SQL

echo "\$ /usr/bin/python3 examples/consumer.py account-export 0 file:$out &"
/usr/bin/python3 consumer.py account-export 0 "file:$out" &
consumer=$!

sql <<'SQL'
-- A deposit, and the application waits until the consumer has it
-- (es_last_position: what this session's last transaction appended).
SELECT es_append('account-42', NULL, 'MoneyDeposited', '{"amount": 10}');
SELECT es_subscription_wait_acked('account-export', es_last_position(), 10000) AS exported;
SELECT name, member, position, lag FROM es_subscriptions;
SQL

echo "\$ kill -TERM $consumer   # finishes its batch, closes its connection, exits 0"
kill -TERM "$consumer"
wait "$consumer"
echo "\$ tail -n 2 $out   # one JSON line per event: $(wc -l <"$out") lines"
tail -n 2 "$out"
