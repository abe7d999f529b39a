--
-- setup: create the extension and the helpers the other regress files use.
--
CREATE EXTENSION event_sourcing;

SELECT extname, extversion, extrelocatable
  FROM pg_extension WHERE extname = 'event_sourcing';

-- err(sql): run a statement that must fail and show its SQLSTATE, message,
-- DETAIL, HINT and constraint name, one line per case.
CREATE SCHEMA regress;
CREATE FUNCTION regress.err(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hint text; con text;
BEGIN
    EXECUTE sql;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
        det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT, con = CONSTRAINT_NAME;
    RETURN st || ': ' || msg
        || CASE WHEN det <> '' THEN E'\n  DETAIL: ' || det ELSE '' END
        || CASE WHEN hint <> '' THEN E'\n  HINT: ' || hint ELSE '' END
        || CASE WHEN con <> '' THEN E'\n  CONSTRAINT: ' || con ELSE '' END;
END
$$;

-- snapshot of the whole store, to show that a failed call changed nothing
CREATE FUNCTION regress.store_digest() RETURNS text
LANGUAGE sql AS $$
    SELECT count(*) || ' events, digest ' ||
           coalesce(md5(string_agg(global_position || '/' || stream_id || '/' || stream_version
                                   || '/' || event_id || '/' || event_type || '/' || data::text
                                   || '/' || metadata::text, ',' ORDER BY global_position)), '-')
      FROM es_events
$$;
