-- bench/projection_setup.sql: read models and the catch-up procedure of
-- projection_bench.sh, run once in each of its databases (before or after
-- CREATE EXTENSION event_sourcing: nothing here depends on the extension's
-- objects, so DROP EXTENSION ... CASCADE leaves it all in place).

-- Read models: events per stream, one table per projection.
CREATE TABLE bal_1 (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE bal_2 (stream_id text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE bal_3 (stream_id text PRIMARY KEY, n bigint NOT NULL);

-- Part b: drive async projection p to the end of the log with
-- es_projection_run(p, batch) calls, one transaction each (COMMIT after each
-- call, as the background worker does), until a call applies nothing; the
-- time is clock_timestamp() before the first call and after the last COMMIT.
CREATE PROCEDURE bench_catch_up(p text, batch int,
                                INOUT applied bigint DEFAULT NULL,
                                INOUT calls int DEFAULT NULL,
                                INOUT seconds float8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    n bigint;
BEGIN
    applied := 0;
    calls := 0;
    t0 := clock_timestamp();
    LOOP
        n := es_projection_run(p, batch);
        COMMIT;
        calls := calls + 1;
        EXIT WHEN n = 0;
        applied := applied + n;
    END LOOP;
    seconds := extract(epoch FROM clock_timestamp() - t0);
END $$;
