-- bench/projection_append.sql: one event per transaction through es_append
-- (as es_append_1.sql); the inline projections defined fire in it.
\set s random(1, 10000)
SELECT es_append('bench-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
