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

--
-- The privilege model (1.2): every definition has an owner, every user
-- callback runs as that owner, restricted, with the search_path the
-- definition keeps.  Each block reproduces an escalation found in review;
-- without the model it makes regress_es_mallory a superuser or plants its
-- data where others read it.
--
CREATE EXTENSION event_sourcing;
CREATE ROLE regress_es_mallory;          -- may define things and append
CREATE ROLE regress_es_alice;            -- an application role
GRANT USAGE ON SCHEMA public, regress TO regress_es_mallory, regress_es_alice;
GRANT CREATE ON SCHEMA public TO regress_es_alice;
GRANT EXECUTE ON FUNCTION
    es_define_upcaster(text, integer, regprocedure, text),
    es_define_aggregate(text, regprocedure, jsonb, regprocedure, integer),
    es_define_projection(text, regprocedure, text[], text, regprocedure),
    es_projection_run(text, integer), es_projection_rebuild(text),
    es_projection_skip(text), es_drop_projection(text),
    es_append(text, bigint, text, jsonb, jsonb, uuid),
    es_load(text, bigint, bigint), es_read_all(bigint, integer),
    es_aggregate(text, bigint), es_execute(text, jsonb, bigint, uuid),
    es_snapshot_save(text, bigint, jsonb), es_snapshot_load(text, bigint)
  TO regress_es_mallory, regress_es_alice;
CREATE SCHEMA mallory AUTHORIZATION regress_es_mallory;
-- who ran what: every trap records current_user and the search_path it saw
CREATE TABLE public.sec_calls (what text, who name, path text, super boolean);
GRANT INSERT, SELECT ON public.sec_calls TO PUBLIC;

-- 1. An upcaster runs as its owner, never as the reader.
SELECT es_append('secthing-1', 0, 'SecThing', '{}');
SET ROLE regress_es_mallory;
CREATE FUNCTION mallory.up(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_calls
        SELECT 'upcast', current_user, current_setting('search_path'), rolsuper
          FROM pg_roles WHERE rolname = current_user;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER ROLE regress_es_mallory SUPERUSER;
    END IF;
    RETURN d || '{"up": true}';
END $$;
SET search_path = mallory, public;
SELECT es_define_upcaster('SecThing', 1, 'mallory.up(jsonb)');
RESET search_path;
RESET ROLE;
SELECT event_type, from_schema, owner, search_path FROM es_upcasters;
SELECT data FROM es_load('secthing-1');            -- read by a superuser
SELECT rolsuper AS mallory_is_superuser FROM pg_roles WHERE rolname = 'regress_es_mallory';
SELECT what, who, path, super FROM public.sec_calls;
-- nobody else may extend mallory's chain (42501), not even with a function
-- of their own
CREATE FUNCTION public.alice_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
SET ROLE regress_es_alice;
SELECT regress.err($$SELECT es_define_upcaster('SecThing', 2, 'public.alice_up(jsonb)')$$);
RESET ROLE;
SELECT count(*) AS steps FROM es_upcasters WHERE event_type = 'SecThing';

-- 1b. A read holds the upcasters' scope across events (callback.c): each
-- call still runs as its own upcaster's owner when owners alternate, what
-- one owner's call sets is gone when the other owner's call runs, and the
-- reader gets its user and settings back at the end of the read.  (The
-- events are stored before the upcasters exist, so at schema 1.)
SELECT es_append('held-1', 0, '[{"type": "HeldA", "data": {}}, {"type": "HeldA", "data": {}},
                                {"type": "HeldB", "data": {}}, {"type": "HeldA", "data": {}}]');
SET ROLE regress_es_mallory;
CREATE FUNCTION mallory.held_a(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_calls
        SELECT 'held_a saw ' || coalesce(current_setting('regress.held', true), ''), current_user, NULL, NULL;
    PERFORM set_config('regress.held', 'set by held_a', true);
    RETURN d;
END $$;
SELECT es_define_upcaster('HeldA', 1, 'mallory.held_a(jsonb)');
RESET ROLE;
SET ROLE regress_es_alice;
CREATE FUNCTION public.held_b(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_calls
        SELECT 'held_b saw ' || coalesce(current_setting('regress.held', true), ''), current_user, NULL, NULL;
    RETURN d;
END $$;
SELECT es_define_upcaster('HeldB', 1, 'public.held_b(jsonb)');
RESET ROLE;
DELETE FROM public.sec_calls;
SET regress.held = 'the reader''s';
SET ROLE regress_es_alice;
SELECT count(*) AS read FROM es_load('held-1');
SELECT current_user AS reader, current_setting('regress.held') AS reader_setting;
RESET ROLE;
SELECT count(*) AS read FROM (SELECT * FROM es_read_all(0, 1000) WHERE stream_id = 'held-1') r;
SELECT current_user AS reader, current_setting('regress.held') AS reader_setting;
SELECT what, who FROM public.sec_calls;
RESET regress.held;
DELETE FROM public.sec_calls;

-- 2. Aggregates have an owner: another role cannot redefine the category
-- (with a decide that forges events), and evolve runs as the owner.
SET ROLE regress_es_alice;
CREATE FUNCTION public.acct_evolve(s jsonb, e es_events) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_object('balance', (s->>'balance')::numeric + (e.data->>'amount')::numeric) $$;
CREATE FUNCTION public.acct_decide(s jsonb, c jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT jsonb_build_array(jsonb_build_object('type', 'Deposited', 'data', c)) $$;
SELECT es_define_aggregate('acct', 'public.acct_evolve(jsonb, es_events)', '{"balance": 0}',
                           'public.acct_decide(jsonb, jsonb)', 2);
RESET ROLE;
SET ROLE regress_es_mallory;
CREATE FUNCTION mallory.forge(s jsonb, c jsonb) RETURNS jsonb LANGUAGE sql
    AS $$ SELECT '[{"type": "Withdrawn", "data": {"amount": 999999}}]'::jsonb $$;
SELECT regress.err($$SELECT es_define_aggregate('acct', 'public.acct_evolve(jsonb, es_events)', '{}', 'mallory.forge(jsonb, jsonb)')$$);
RESET ROLE;
SELECT category, decide, owner FROM es_aggregates;
SET ROLE regress_es_alice;
SELECT es_execute('acct-1', '{"amount": 100}');
SELECT event_type, data FROM es_load('acct-1');
RESET ROLE;

-- 5. Snapshot poisoning: a caller's search_path cannot change what evolve
-- computes (its own "+" is never used), and nobody but the aggregate's
-- owner may save a snapshot for it.
CREATE FUNCTION mallory.fake_add(numeric, numeric) RETURNS numeric LANGUAGE sql
    AS $$ SELECT 1000000::numeric $$;
ALTER FUNCTION mallory.fake_add(numeric, numeric) OWNER TO regress_es_mallory;
CREATE OPERATOR mallory.+ (LEFTARG = numeric, RIGHTARG = numeric, PROCEDURE = mallory.fake_add);
SET ROLE regress_es_mallory;
SET search_path = mallory, pg_catalog, public;
SELECT es_append('acct-1', NULL, 'Deposited', '{"amount": 30}');
SELECT es_append('acct-1', NULL, 'Deposited', '{"amount": 1}');
SELECT version, state FROM es_aggregate('acct-1');  -- folds 3 events, stores a snapshot
SELECT regress.err($$SELECT es_snapshot_save('acct-1', 3, '{"balance": 500000}')$$);
RESET search_path;
RESET ROLE;
SELECT version, state, owner FROM es_snapshots WHERE stream_id = 'acct-1';
SET ROLE regress_es_alice;
SELECT version, state FROM es_aggregate('acct-1');
-- the owner may save one; for a category without aggregate the saver owns it
SELECT es_snapshot_save('acct-1', 3, '{"balance": 131}');
SELECT es_append('notes-1', 0, 'Noted', '{}');
SELECT es_snapshot_save('notes-1', 1, '{"n": 1}');
RESET ROLE;
SET ROLE regress_es_mallory;
SELECT regress.err($$SELECT es_snapshot_save('notes-1', 1, '{"n": 666}')$$);
RESET ROLE;
SELECT stream_id, version, state, owner FROM es_snapshots ORDER BY stream_id, version;

-- 3. and 4. Handlers resolve names with the definition's search_path
-- (pg_temp last), run restricted, and leave nothing in the session.
SET ROLE regress_es_alice;
CREATE TABLE public.balances (stream_id text PRIMARY KEY, n int);
CREATE FUNCTION public.balances_apply(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO balances VALUES (e.stream_id, 1)
        ON CONFLICT (stream_id) DO UPDATE SET n = balances.n + 1;
    INSERT INTO public.sec_calls VALUES ('handler', current_user, current_setting('search_path'), false);
    PERFORM set_config('search_path', 'mallory', false);
    PERFORM set_config('work_mem', '64kB', false);
END $$;
SELECT es_define_projection('balances', 'public.balances_apply(es_events)', '{Deposited}');
RESET ROLE;
SET ROLE regress_es_mallory;
-- a temporary table shadowing the read model, with a trigger that would
-- run as the handler's owner
CREATE TEMP TABLE balances (stream_id text PRIMARY KEY, n int);
CREATE FUNCTION mallory.steal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.sec_calls VALUES ('temp trigger', current_user, current_setting('search_path'), false);
    RETURN NEW;
END $$;
CREATE TRIGGER steal BEFORE INSERT ON pg_temp.balances FOR EACH ROW EXECUTE FUNCTION mallory.steal();
SET search_path = pg_temp, mallory, public;
SELECT es_append('acct-2', 0, 'Deposited', '{"amount": 5}');
SELECT current_setting('search_path') AS mallory_path, current_setting('work_mem') AS mallory_work_mem;
SELECT count(*) AS shadow_rows FROM pg_temp.balances;
RESET search_path;
RESET ROLE;
SELECT * FROM public.balances;
SELECT what, who, path FROM public.sec_calls WHERE what <> 'upcast' ORDER BY what;
-- a handler cannot create temporary objects in the appender's session (42501)
CREATE FUNCTION public.plant(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE planted (x int);
END $$;
ALTER FUNCTION public.plant(es_events) OWNER TO regress_es_alice;
SET ROLE regress_es_alice;
SELECT es_define_projection('planter', 'public.plant(es_events)', '{Planted}');
RESET ROLE;
SELECT regress.err($$SELECT es_append('plant-1', 0, 'Planted', '{}')$$);
SELECT es_drop_projection('planter');

-- 6. An upcaster that registers another upcaster and reads again: the
-- registry it is running from stays alive (this crashed the server).
CREATE TABLE public.reentry (n int);
INSERT INTO public.reentry VALUES (0);
CREATE FUNCTION public.up_reentrant(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k int;
BEGIN
    UPDATE public.reentry SET n = n + 1 RETURNING reentry.n INTO k;
    PERFORM es_define_upcaster('Reentered' || k, 1, 'public.alice_up(jsonb)');
    PERFORM count(*) FROM es_load('secthing-1');
    RETURN d || jsonb_build_object('pass', k);
END $$;
SELECT es_append('reentrant-1', 0, '[{"type": "Reentrant", "data": {}}, {"type": "Reentrant", "data": {}},
                                    {"type": "Other", "data": {}}, {"type": "Reentrant", "data": {}}]');
SELECT es_define_upcaster('Reentrant', 1, 'public.up_reentrant(jsonb)');
SELECT stream_version, event_type, data FROM es_load('reentrant-1');
SELECT count(*) AS registered FROM es_upcasters WHERE event_type LIKE 'Reentered%';

-- 8. Names in hints are quoted literals.
CREATE FUNCTION public.up_gone(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
SELECT es_append('quoted-1', 0, $$It's$$, '{}');
SELECT es_define_upcaster($$It's$$, 1, 'public.up_gone(jsonb)');
DROP FUNCTION public.up_gone(jsonb);
SELECT regexp_replace(regress.err($$SELECT * FROM es_load('quoted-1')$$), 'OID \d+', 'OID <oid>');

SELECT rolsuper AS mallory_is_superuser FROM pg_roles WHERE rolname = 'regress_es_mallory';
DROP EXTENSION event_sourcing CASCADE;
DROP TABLE public.sec_calls, public.balances, public.reentry;
DROP FUNCTION public.alice_up(jsonb), public.up_reentrant(jsonb);
DROP SCHEMA mallory CASCADE;
DROP OWNED BY regress_es_mallory, regress_es_alice;
DROP ROLE regress_es_mallory, regress_es_alice;
