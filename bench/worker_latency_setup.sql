-- bench/worker_latency_setup.sql: the async projection of worker_latency.sh,
-- run after CREATE EXTENSION event_sourcing.  Its handler records when the
-- background worker applied each event.
CREATE TABLE lat_applied (position bigint PRIMARY KEY, applied_at timestamptz NOT NULL);
CREATE FUNCTION lat_record(e es_events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO lat_applied VALUES (e.global_position, clock_timestamp()) $$;
SELECT es_define_projection('lat', 'lat_record(es_events)', mode => 'async');
