-- bench/es_append_1.sql: one event per transaction through es_append.
\set s random(1, 10000)
SELECT es_append('bench-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
