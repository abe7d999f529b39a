-- bench/projection_handlers.sql: the projection handlers of
-- projection_bench.sh, created after every CREATE EXTENSION event_sourcing
-- (they take es_events, so DROP EXTENSION ... CASCADE drops them).
--
-- bench_upsert_sql_K / bench_upsert_plpgsql_K: count the event in read model
-- bal_K, one row per stream (an upsert: INSERT ... ON CONFLICT DO UPDATE).
-- bench_noop_sql / bench_noop_plpgsql: do nothing (the cost of the
-- projection machinery alone).

CREATE FUNCTION bench_upsert_sql_1(e es_events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO bal_1 AS b (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1 $$;
CREATE FUNCTION bench_upsert_sql_2(e es_events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO bal_2 AS b (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1 $$;
CREATE FUNCTION bench_upsert_sql_3(e es_events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO bal_3 AS b (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1 $$;

CREATE FUNCTION bench_upsert_plpgsql_1(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bal_1 AS b (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1;
END $$;
CREATE FUNCTION bench_upsert_plpgsql_2(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bal_2 AS b (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1;
END $$;
CREATE FUNCTION bench_upsert_plpgsql_3(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bal_3 AS b (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = b.n + 1;
END $$;

CREATE FUNCTION bench_noop_sql(e es_events) RETURNS void LANGUAGE sql AS $$ $$;
CREATE FUNCTION bench_noop_plpgsql(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
END $$;
