--
-- security: the extension in a non-public schema, called under a hostile
-- search_path, and the privileges it grants (none to PUBLIC).
--
DROP EXTENSION event_sourcing;
CREATE SCHEMA es;
CREATE EXTENSION event_sourcing SCHEMA es;

-- A schema full of traps: objects named like the ones the extension uses.
CREATE SCHEMA evil;
CREATE TABLE evil.es_events (LIKE es.es_events);
CREATE SEQUENCE evil.es_events_global_position_seq START 1000000;
CREATE FUNCTION evil.split_part(text, text, integer) RETURNS text
    LANGUAGE sql AS $$ SELECT 'hijacked' $$;
CREATE FUNCTION evil.text_eq_trap(text, text) RETURNS boolean
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'operator trap called'; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, PROCEDURE = evil.text_eq_trap);
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text
    LANGUAGE sql AS $$ SELECT 'object' $$;
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint
    LANGUAGE sql AS $$ SELECT 42::bigint $$;

SET search_path = evil, es, pg_catalog;

SELECT es.es_append('acct-1', 0, 'Opened', '{"owner": "eve"}');
SELECT es.es_append('acct-1', 1, '[{"type": "Deposited", "data": {"amount": 1}}, {"type": "Deposited", "data": {"amount": 2}}]');
SELECT regress.err($$SELECT es.es_append('acct-1', 1, 'Deposited', '{}')$$);
SELECT global_position, stream_id, stream_version, event_type FROM es.es_load('acct-1');
SELECT es.es_stream_version('acct-1');
SELECT global_position, stream_id FROM es.es_read_all();
SELECT global_position, stream_id FROM es.es_read_category('acct');
SELECT es.es_safe_position();
SELECT count(*) AS trap_rows FROM evil.es_events;
SELECT last_value AS trap_seq FROM evil.es_events_global_position_seq;
SELECT regress.err($$DELETE FROM es.es_events$$);

-- Projections under the same search_path: their internal statements use
-- pg_catalog's operators, never evil.= (which would raise "operator trap
-- called", as the extension's owner).
CREATE TABLE es.sec_model (pos bigint PRIMARY KEY, stream_id text);
CREATE FUNCTION es.sec_apply(e es.es_events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO es.sec_model VALUES (e.global_position, e.stream_id) $$;
CREATE FUNCTION es.sec_reset() RETURNS void LANGUAGE sql
    AS $$ DELETE FROM es.sec_model $$;
CREATE FUNCTION es.sec_fail(e es.es_events) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'poison %', e.global_position; END $$;
SELECT es.es_define_projection('sec_inline', 'es.sec_apply(es.es_events)', ARRAY['Deposited'],
                               'inline', 'es.sec_reset()');
SELECT es.es_define_projection('sec_async', 'es.sec_fail(es.es_events)', NULL, 'async');
SELECT es.es_append('acct-1', 3, 'Deposited', '{"amount": 3}');
SELECT pos, stream_id FROM es.sec_model ORDER BY pos;
SELECT es.es_projection_run('sec_async');
SELECT name, status, position, failed_position FROM es.es_projections ORDER BY name;
SELECT es.es_projection_skip('sec_async');
SELECT es.es_projection_rebuild('sec_inline');
SELECT pos, stream_id FROM es.sec_model ORDER BY pos;
SELECT es.es_drop_projection('sec_inline'), es.es_drop_projection('sec_async');
DROP FUNCTION es.sec_apply(es.es_events), es.sec_fail(es.es_events), es.sec_reset();
DROP TABLE es.sec_model;

RESET search_path;

-- Nothing is granted to PUBLIC: a role needs EXECUTE on the functions.
CREATE ROLE regress_es_app;
GRANT USAGE ON SCHEMA es, regress TO regress_es_app;
SET ROLE regress_es_app;
SELECT regress.err($$SELECT es.es_append('acct-2', 0, 'Opened', '{}')$$);
SELECT regress.err($$SELECT * FROM es.es_load('acct-1')$$);
SELECT regress.err($$SELECT * FROM es.es_read_all()$$);
SELECT regress.err($$SELECT * FROM es.es_events$$);
RESET ROLE;

GRANT EXECUTE ON FUNCTION es.es_append(text, bigint, text, jsonb, jsonb, uuid),
                          es.es_load(text, bigint, bigint),
                          es.es_read_all(bigint, integer) TO regress_es_app;
SET ROLE regress_es_app;
SELECT es.es_append('acct-2', 0, 'Opened', '{}');
SELECT stream_id, stream_version FROM es.es_load('acct-2');
SELECT count(*) FROM es.es_read_all();
-- the table itself stays closed: writes only through es_append
SELECT regress.err($$INSERT INTO es.es_events VALUES (999, 'x', 1, gen_random_uuid(), 'T', '{}', '{}', now(), 1)$$);
SELECT regress.err($$UPDATE es.es_events SET data = '{}'$$);
SELECT regress.err($$SELECT * FROM es.es_events$$);
SELECT regress.err($$SELECT es.es_append('acct-2', NULL, '[{"type": "T", "data": {}}]'::jsonb)$$);
RESET ROLE;

DROP OWNED BY regress_es_app;
DROP ROLE regress_es_app;
DROP SCHEMA evil CASCADE;
DROP EXTENSION event_sourcing;
DROP SCHEMA es;
