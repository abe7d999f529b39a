--
-- robustness: callbacks with SET clauses, errors passing through
-- es_projection_run, failure isolation between async projections, and
-- handlers whose statement cannot run inside a transaction.
--
-- 1. evolve and upcasters with a SET clause (fingerprinting them crashed the
-- server): they fold and upcast like any other
CREATE FUNCTION rb_evolve(s jsonb, e es_events) RETURNS jsonb LANGUAGE sql
    SET work_mem = '64kB' SET search_path = pg_catalog
    AS $$ SELECT jsonb_build_object('n', coalesce((s->>'n')::int, 0) + 1) $$;
CREATE FUNCTION rb_up(d jsonb) RETURNS jsonb LANGUAGE sql SET work_mem = '64kB'
    AS $$ SELECT d || '{"up": true}' $$;
SELECT es_append('rbset-1', 0, 'RbSet', '{}');
SELECT es_define_aggregate('rbset', 'rb_evolve(jsonb, es_events)');
SELECT es_define_upcaster('RbSet', 1, 'rb_up(jsonb)');
SELECT es_append('rbset-1', 1, 'RbSet', '{}');
SELECT version, state FROM es_aggregate('rbset-1');
SELECT stream_version, data FROM es_load('rbset-1');

-- 2. An error passing through es_projection_run leaves no subtransaction
-- behind: the session goes on (this gave 25P02, and ROLLBACK killed it).
CREATE FUNCTION rb_slow(e es_events) RETURNS void LANGUAGE sql
    AS $$ SELECT pg_sleep(0.2) $$;
CREATE FUNCTION rb_serial(e es_events) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$;
SELECT es_define_projection('rb_slow', 'rb_slow(es_events)', '{RbSlow}', 'async');
SELECT es_append('rbslow-1', 0, 'RbSlow', '{}');
SET statement_timeout = '50ms';
\set VERBOSITY terse
SELECT es_projection_run('rb_slow');
\set VERBOSITY default
RESET statement_timeout;
SELECT 1 AS session_usable;
ROLLBACK;
SELECT 2 AS still_connected;
SELECT name, position > 0 AS advanced, status FROM es_projections WHERE name = 'rb_slow';
SELECT es_drop_projection('rb_slow');

-- 3. Failure isolation: a dropped handler, a handler raising 40001 and an
-- upcaster failing on its events fail only their own projection (recorded,
-- with a WARNING); the others advance.  The upcaster fails on type RbBad,
-- which rb_good does not receive.
CREATE TABLE rb_model (name text, pos bigint);
CREATE FUNCTION rb_good(e es_events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO rb_model VALUES ('good', e.global_position) $$;
CREATE FUNCTION rb_gone(e es_events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO rb_model VALUES ('gone', e.global_position) $$;
CREATE FUNCTION rb_bad_up(d jsonb) RETURNS jsonb LANGUAGE plpgsql
    AS $$ BEGIN RAISE EXCEPTION 'cannot upcast %', d; END $$;
SELECT es_append('rbiso-1', 0, 'RbBad', '{"v": 1}');
SELECT es_define_upcaster('RbBad', 1, 'rb_bad_up(jsonb)');
SELECT es_append('rbiso-1', 1, 'RbGood', '{}');
SELECT es_define_projection('rb_a_gone', 'rb_gone(es_events)', NULL, 'async');
SELECT es_define_projection('rb_b_serial', 'rb_serial(es_events)', '{RbGood}', 'async');
SELECT es_define_projection('rb_c_upcast', 'rb_good(es_events)', '{RbBad}', 'async');
SELECT es_define_projection('rb_d_good', 'rb_good(es_events)', '{RbGood}', 'async');
DROP FUNCTION rb_gone(es_events);
SET client_min_messages = error;  -- the WARNINGs name OIDs
SELECT es_projection_run() > 0 AS applied;
RESET client_min_messages;
SELECT name, status, failed_position IS NOT NULL AS at_event,
       regexp_replace(last_error, 'OID \d+', 'OID <oid>') AS last_error
  FROM es_projections WHERE name LIKE 'rb\_%' ORDER BY name;
SELECT count(*) AS good_rows FROM rb_model WHERE name = 'good';
-- skipping: not for a failure outside any event (55000) ...
SELECT regress.err($$SELECT es_projection_skip('rb_a_gone')$$);
-- ... but for the event the upcaster failed on
SELECT es_projection_skip('rb_c_upcast') > 0 AS skipped;
SELECT projection, (event).event_type, error FROM es_dead_letters ORDER BY projection;
SELECT es_drop_projection(name) FROM es_projections WHERE name LIKE 'rb\_%' ORDER BY name;

-- 6. A SQL handler whose statement cannot run inside the append: 0A000 or
-- 2D000 as for a direct call, never XX000, and the append stores nothing.
CREATE FUNCTION rb_commit(e es_events) RETURNS void LANGUAGE sql AS $$ COMMIT $$;
CREATE FUNCTION rb_savepoint(e es_events) RETURNS void LANGUAGE sql AS $$ SAVEPOINT x $$;
CREATE FUNCTION rb_copy(e es_events) RETURNS void LANGUAGE sql AS $$ COPY (SELECT 1) TO STDOUT $$;
SELECT es_define_projection('rb_commit', 'rb_commit(es_events)', '{RbTx}');
SELECT regress.err($$SELECT es_append('rbtx-1', 0, 'RbTx', '{}')$$);
SELECT es_drop_projection('rb_commit');
SELECT es_define_projection('rb_savepoint', 'rb_savepoint(es_events)', '{RbTx}');
SELECT regress.err($$SELECT es_append('rbtx-1', 0, 'RbTx', '{}')$$);
SELECT es_drop_projection('rb_savepoint');
SELECT es_define_projection('rb_copy', 'rb_copy(es_events)', '{RbTx}');
SELECT regress.err($$SELECT es_append('rbtx-1', 0, 'RbTx', '{}')$$);
SELECT es_drop_projection('rb_copy');
SELECT es_stream_version('rbtx-1') AS nothing_stored;
-- 42883 for a dropped evolve names the aggregate
DROP FUNCTION rb_evolve(jsonb, es_events);
SELECT regexp_replace(regress.err($$SELECT * FROM es_aggregate('rbset-1')$$), 'OID \d+', 'OID <oid>');

-- cleanup (the extension is dropped by a later file)
DROP TABLE rb_model;
DROP FUNCTION rb_slow(es_events), rb_serial(es_events), rb_good(es_events),
              rb_commit(es_events), rb_savepoint(es_events), rb_copy(es_events),
              rb_up(jsonb), rb_bad_up(jsonb);
