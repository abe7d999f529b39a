-- bench/upcast_append_1.sql: one event per transaction, empty metadata
-- (with the audit settings set, the stored metadata is the audit object).
\set s random(1, 10000)
SELECT es_append('bench-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
