-- bench/plpgsql_1.sql: one event through the hand-written PL/pgSQL store
-- (bench/setup.sql: advisory lock, max(stream_version), INSERT).
\set s random(1, 10000)
SELECT pl_append('bench-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}');
