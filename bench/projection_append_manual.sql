-- bench/projection_append_manual.sql: no projection; the client updates the
-- read model itself, in the same statement (so the same one round trip) as
-- the append, with the statement of bench_upsert_sql_1, prepared once per
-- connection (pgbench -M prepared): the work an inline projection does,
-- without the projection machinery and without planning a handler.
\set s random(1, 10000)
WITH up AS (INSERT INTO bal_1 AS b (stream_id, n) VALUES ('bench-' || :s, 1)
                ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1
            RETURNING 1)
SELECT es_append('bench-' || :s, NULL, 'Deposited', '{"amount": 10, "currency": "EUR"}') FROM up;
