-- bench/lifecycle_setup.sql: the sources and the retention pass of
-- bench/lifecycle_bench.sh, made once per database (they survive the
-- DROP/CREATE EXTENSION that empties the store).  psql variables: streams
-- and stream_events (the retention category), runs (part 2's streams).

-- Part 1: a category 'metric' of :streams streams of :stream_events events,
-- interleaved in time (stream s's version v at t0 + (v * streams + s) ms),
-- all recorded in 2020: everything is older than a 30-day policy.
CREATE TABLE metric_src AS
SELECT 'metric-' || s AS stream_id, v::bigint AS stream_version,
       'Measured' AS event_type,
       jsonb_build_object('sensor', s, 'n', v, 'value', (s * v) % 1000) AS data,
       timestamptz '2020-01-01' + (v * :streams + s) * interval '1 millisecond' AS recorded_at
  FROM generate_series(1, :streams) s, generate_series(1, :stream_events) v;

-- Part 2: 2 x (:runs + 1) streams of 1,000 events ('gone-<i>' to delete,
-- 'redact-<i>' to redact one event of), each event carrying personal data.
CREATE TABLE remove_src AS
SELECT k || '-' || i AS stream_id, v::bigint AS stream_version,
       'CustomerUpdated' AS event_type,
       jsonb_build_object('email', 'user' || i || '@example.com', 'n', v,
                          'address', jsonb_build_object('street', 'Main St ' || v, 'city', 'Ghent')) AS data,
       timestamptz '2021-01-01' + (v * 1000 + i) * interval '1 millisecond' AS recorded_at
  FROM unnest(ARRAY['gone', 'redact']) k, generate_series(0, :runs) i, generate_series(1, 1000) v;
VACUUM ANALYZE metric_src, remove_src;

-- The retention pass: es_apply_retention(batch), each call its own
-- transaction (COMMIT after each, as the background worker does), called
-- again while it returns batch; returns the events deleted and the calls.
CREATE PROCEDURE bench_retention_pass(batch int, INOUT deleted bigint DEFAULT 0,
                                      INOUT calls int DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    LOOP
        n := es_apply_retention(batch);
        COMMIT;
        deleted := deleted + n;
        calls := calls + 1;
        EXIT WHEN n < batch;
    END LOOP;
END $$;
