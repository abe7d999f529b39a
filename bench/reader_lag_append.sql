-- bench/reader_lag_append.sql: the appender of reader_lag.sh, one event per
-- transaction; the event names its pgbench client, so that the script can
-- match each event with its transaction in pgbench's per-transaction log
-- (the n-th event of a client is its n-th transaction).
\set s random(1, 10000)
SELECT es_append('bench-' || :s, NULL, 'Deposited', jsonb_build_object('amount', 10, 'currency', 'EUR', 'client', :client_id::int));
