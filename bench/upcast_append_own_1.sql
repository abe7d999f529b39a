-- bench/upcast_append_own_1.sql: one event per transaction with its own small
-- metadata object (with the audit settings set, merged with jsonb ||).
\set s random(1, 10000)
SELECT es_append('bench-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}', '{"source": "web"}');
