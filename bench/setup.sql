-- bench/setup.sql: the comparison tables and the PL/pgSQL store, run by
-- append_bench.sh after CREATE EXTENSION event_sourcing.

-- Baseline: the same columns, collations, defaults, constraints and indexes
-- as es_events (LIKE ... INCLUDING ALL copies the four indexes: the primary
-- key on global_position, unique (stream_id, stream_version), unique
-- event_id and the category expression index), positions from a bigint
-- sequence with CACHE 1 like es_events_global_position_seq.
CREATE TABLE bench_insert (LIKE es_events INCLUDING ALL);
CREATE SEQUENCE bench_insert_seq AS bigint CACHE 1;

-- Give the category index a known name, so the script can run the baseline
-- without it (DROP INDEX) and put it back (CREATE INDEX from its definition).
DO $$
DECLARE
    idx regclass;
BEGIN
    SELECT indexrelid::regclass INTO STRICT idx
    FROM pg_index
    WHERE indrelid = 'bench_insert'::regclass
      AND pg_get_indexdef(indexrelid) LIKE '%split_part%';
    EXECUTE format('ALTER INDEX %s RENAME TO bench_insert_category_idx', idx);
END $$;

-- A hand-written store in PL/pgSQL, for context: the same table shape, one
-- transaction-level advisory lock per stream, the head read with max(), then
-- INSERT.  Expected version semantics as es_append's (NULL, 0, -1, n).
CREATE TABLE pl_events (LIKE es_events INCLUDING ALL);
CREATE SEQUENCE pl_events_seq AS bigint CACHE 1;

CREATE FUNCTION pl_head(p_stream text, p_expected bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    SELECT coalesce(max(stream_version), 0) INTO v
    FROM pl_events WHERE stream_id = p_stream;
    IF p_expected IS NOT NULL
       AND NOT (p_expected = v OR (p_expected = -1 AND v > 0)) THEN
        RAISE EXCEPTION 'wrong expected version for stream "%"', p_stream
            USING ERRCODE = 'serialization_failure',
                  DETAIL = format('expected %s, actual %s', p_expected, v);
    END IF;
    RETURN v;
END $$;

CREATE FUNCTION pl_append(p_stream text, p_expected bigint, p_type text,
                          p_data jsonb, p_metadata jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint := pl_head(p_stream, p_expected);
    p bigint := nextval('pl_events_seq');
BEGIN
    INSERT INTO pl_events (global_position, stream_id, stream_version, event_id,
                           event_type, data, metadata, recorded_at)
    VALUES (p, p_stream, v + 1, ('f' || lpad(to_hex(p), 31, '0'))::uuid,
            p_type, p_data, coalesce(p_metadata, '{}'), clock_timestamp());
    RETURN v + 1;
END $$;

CREATE FUNCTION pl_append(p_stream text, p_expected bigint, p_events jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint := pl_head(p_stream, p_expected);
    t timestamptz := clock_timestamp();
BEGIN
    INSERT INTO pl_events (global_position, stream_id, stream_version, event_id,
                           event_type, data, metadata, recorded_at)
    SELECT p, p_stream, v + o, ('f' || lpad(to_hex(p), 31, '0'))::uuid,
           e->>'type', e->'data', coalesce(e->'metadata', '{}'), t
    FROM (SELECT nextval('pl_events_seq') AS p, e, o
          FROM jsonb_array_elements(p_events) WITH ORDINALITY AS a(e, o)
          ORDER BY o) s;
    RETURN v + jsonb_array_length(p_events);
END $$;
