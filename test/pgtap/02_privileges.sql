-- 02_privileges.sql: nothing is granted to PUBLIC; the functions are the API.
--
-- The extension is created in a non-public schema, es, which is not on the
-- search_path of the application role: every call below is schema-qualified,
-- and it must work without es on search_path.  Roles are cluster-wide, so
-- they are created inside the transaction and roll back with it.
BEGIN;
SELECT plan(63);

CREATE SCHEMA es;
CREATE EXTENSION event_sourcing SCHEMA es;
CREATE ROLE regress_app NOLOGIN;
CREATE ROLE regress_other NOLOGIN;

SELECT is(
    (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'event_sourcing'),
    'es', 'CREATE EXTENSION ... SCHEMA es puts the extension in es');
SELECT is(
    (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'es\_%'),
    0::bigint, 'no es_ function was created in public');
SELECT hasnt_table('public', 'es_events', 'es_events was not created in public');

-- stream_id and event_type may carry a column collation ("C"); results_eq
-- compares whole rows, so text columns are compared under the default
-- collation (COLLATE "default") against the VALUES lists below.

-- ---------------------------------------------------------------------------
-- PUBLIC (and so a fresh role) has no privilege on anything
-- ---------------------------------------------------------------------------
-- every function of the extension, API and helpers alike
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
       FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE has_function_privilege('public', p.oid, 'EXECUTE')),
    NULL, 'PUBLIC has EXECUTE on no function of the extension');
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
       FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE has_function_privilege('regress_app', p.oid, 'EXECUTE')),
    NULL, 'a fresh role has EXECUTE on no function of the extension');
-- the check above is not vacuous: it covered the whole API
SELECT is(
    (SELECT count(*) FROM pg_proc p
      WHERE p.pronamespace = 'es'::regnamespace
        AND p.oid IN (to_regprocedure('es.es_append(text,bigint,text,jsonb,jsonb,uuid)'),
                      to_regprocedure('es.es_append(text,bigint,jsonb)'),
                      to_regprocedure('es.es_load(text,bigint,bigint)'),
                      to_regprocedure('es.es_stream_version(text,timestamptz)'),
                      to_regprocedure('es.es_read_all(bigint,integer)'),
                      to_regprocedure('es.es_read_category(text,bigint,integer)'),
                      to_regprocedure('es.es_safe_position()'))
        AND EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                     WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.deptype = 'e' AND e.extname = 'event_sourcing')),
    7::bigint, 'the 7 API functions are members of the extension (so the checks above covered them)');
-- no ACL entry for PUBLIC (grantee 0) on any function, relation or sequence
SELECT is(
    (SELECT count(*)
       FROM pg_depend d
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
       LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
       LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
       CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, c.relacl)) a
      WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
        AND a.grantee = 0),
    0::bigint, 'no ACL of an extension object has an entry for PUBLIC');
SELECT is(
    (SELECT count(*) FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE p.proacl IS NULL),
    0::bigint, 'every function has an explicit ACL (a NULL ACL would mean EXECUTE for PUBLIC)');

SELECT table_privs_are('es', 'es_events', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on es.es_events');
SELECT table_privs_are('es', 'es_events', 'regress_app', ARRAY[]::name[],
                       'a fresh role has no privilege on es.es_events');
SELECT ok(NOT has_any_column_privilege('public', 'es.es_events', 'SELECT, INSERT, UPDATE, REFERENCES'),
          'PUBLIC has no column privilege on es.es_events');
SELECT sequence_privs_are('es', 'es_events_global_position_seq', 'public', ARRAY[]::name[],
                          'PUBLIC has no privilege on the position sequence');
SELECT sequence_privs_are('es', 'es_events_global_position_seq', 'regress_app', ARRAY[]::name[],
                          'a fresh role has no privilege on the position sequence');

-- ---------------------------------------------------------------------------
-- A fresh role cannot call anything
-- ---------------------------------------------------------------------------
-- without USAGE on es even the schema is closed
SET LOCAL ROLE regress_app;
SELECT throws_ok($$SELECT es.es_append('acct-1', 0, 'Opened', '{}')$$,
                 '42501', 'permission denied for schema es',
                 'no USAGE on es: es_append refused with 42501');
RESET ROLE;

GRANT USAGE ON SCHEMA es TO regress_app, regress_other;
SET LOCAL ROLE regress_app;
-- with USAGE on the schema, the function itself is refused
SELECT throws_ok($$SELECT es.es_append('acct-1', 0, 'Opened', '{}')$$,
                 '42501', 'permission denied for function es_append',
                 'fresh role: es_append (single) refused with 42501');
SELECT throws_ok($$SELECT es.es_append('acct-1', 0, '[{"type": "Opened", "data": {}}]'::jsonb)$$,
                 '42501', 'permission denied for function es_append',
                 'fresh role: es_append (batch) refused with 42501');
SELECT throws_ok($$SELECT * FROM es.es_load('acct-1')$$,
                 '42501', 'permission denied for function es_load',
                 'fresh role: es_load refused with 42501');
SELECT throws_ok($$SELECT es.es_stream_version('acct-1')$$,
                 '42501', 'permission denied for function es_stream_version',
                 'fresh role: es_stream_version refused with 42501');
SELECT throws_ok($$SELECT * FROM es.es_read_all()$$,
                 '42501', 'permission denied for function es_read_all',
                 'fresh role: es_read_all refused with 42501');
SELECT throws_ok($$SELECT * FROM es.es_read_category('acct')$$,
                 '42501', 'permission denied for function es_read_category',
                 'fresh role: es_read_category refused with 42501');
SELECT throws_ok($$SELECT es.es_safe_position()$$,
                 '42501', 'permission denied for function es_safe_position',
                 'fresh role: es_safe_position refused with 42501');
-- nor can it reach the store or the sequence directly
SELECT throws_ok($$SELECT * FROM es.es_events$$, '42501', 'permission denied for table es_events',
                 'fresh role: SELECT on es_events refused with 42501');
SELECT throws_ok($$SELECT nextval('es.es_events_global_position_seq')$$, '42501', NULL,
                 'fresh role: nextval on the position sequence refused with 42501');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Read-only grant: reading works, appending still does not
-- ---------------------------------------------------------------------------
SELECT is(es.es_append('acct-1', 0, 'Opened', '{"owner": "ann"}'), 1::bigint,
          'the owner appends the first event');

GRANT EXECUTE ON FUNCTION es.es_load(text, bigint, bigint),
                          es.es_stream_version(text, timestamptz),
                          es.es_read_all(bigint, integer),
                          es.es_read_category(text, bigint, integer),
                          es.es_safe_position()
   TO regress_other;
SET LOCAL ROLE regress_other;
SELECT results_eq($$SELECT stream_id COLLATE "default", stream_version, event_type COLLATE "default", data FROM es.es_load('acct-1')$$,
                  $$VALUES ('acct-1'::text, 1::bigint, 'Opened'::text, '{"owner": "ann"}'::jsonb)$$,
                  'reader role: es_load returns the stream');
SELECT throws_ok($$SELECT es.es_append('acct-1', 1, 'Deposited', '{}')$$,
                 '42501', 'permission denied for function es_append',
                 'reader role: EXECUTE on the readers does not allow es_append');
SELECT throws_ok($$SELECT es.es_append('acct-1', 1, '[{"type": "Deposited", "data": {}}]'::jsonb)$$,
                 '42501', 'permission denied for function es_append',
                 'reader role: nor the batch es_append');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- After GRANT EXECUTE the application role appends and reads, with es not on
-- its search_path, and without any privilege on the table or the sequence
-- ---------------------------------------------------------------------------
GRANT EXECUTE ON FUNCTION es.es_append(text, bigint, text, jsonb, jsonb, uuid),
                          es.es_append(text, bigint, jsonb),
                          es.es_load(text, bigint, bigint),
                          es.es_stream_version(text, timestamptz),
                          es.es_read_all(bigint, integer),
                          es.es_read_category(text, bigint, integer),
                          es.es_safe_position()
   TO regress_app;

SET LOCAL ROLE regress_app;
SET LOCAL search_path = public;
SELECT is(current_user::text, 'regress_app', 'running as regress_app');
SELECT is(es.es_append('acct-1', 1, 'Deposited', '{"amount": 10}'), 2::bigint,
          'regress_app: es_append (single) appends at version 2');
SELECT is(es.es_append('acct-1', 2, '[{"type": "Deposited", "data": {"amount": 5}},
                                        {"type": "Withdrawn", "data": {"amount": 3}, "metadata": {"by": "atm"}}]'::jsonb),
          4::bigint, 'regress_app: es_append (batch) appends versions 3 and 4');
SELECT is(es.es_append('shop-9', NULL, 'Opened', '{}', NULL, 'b4c9a4a0-4d5b-4a6e-9f3a-2d1c0e9b8a71'),
          1::bigint, 'regress_app: es_append with metadata NULL and a given event id');
SELECT is(es.es_append('shop-9', 0, 'Opened', '{}', NULL, 'b4c9a4a0-4d5b-4a6e-9f3a-2d1c0e9b8a71'),
          1::bigint, 'regress_app: an idempotent retry returns the stored version');
SELECT throws_ok($$SELECT es.es_append('acct-1', 2, 'Deposited', '{}')$$, '40001', NULL,
                 'regress_app: wrong expected version is 40001, not a privilege error');
SELECT throws_ok($$SELECT es.es_append('acct-1', NULL, 'Deposited', '{}', '{}', 'b4c9a4a0-4d5b-4a6e-9f3a-2d1c0e9b8a71')$$,
                 '23505', NULL,
                 'regress_app: an event id stored elsewhere is 23505');

SELECT results_eq(
    $$SELECT stream_version, event_type COLLATE "default", data, metadata FROM es.es_load('acct-1')$$,
    $$VALUES (1::bigint, 'Opened'::text,    '{"owner": "ann"}'::jsonb, '{}'::jsonb),
             (2::bigint, 'Deposited'::text, '{"amount": 10}'::jsonb,   '{}'::jsonb),
             (3::bigint, 'Deposited'::text, '{"amount": 5}'::jsonb,    '{}'::jsonb),
             (4::bigint, 'Withdrawn'::text, '{"amount": 3}'::jsonb,    '{"by": "atm"}'::jsonb)$$,
    'regress_app: es_load returns what was appended, in version order');
SELECT is(es.es_stream_version('acct-1'), 4::bigint, 'regress_app: es_stream_version');
SELECT results_eq(
    $$SELECT stream_id COLLATE "default", stream_version FROM es.es_read_all()$$,
    $$VALUES ('acct-1'::text, 1::bigint), ('acct-1', 2), ('acct-1', 3), ('acct-1', 4), ('shop-9', 1)$$,
    'regress_app: es_read_all returns the whole log in global order');
SELECT results_eq(
    $$SELECT stream_id COLLATE "default", stream_version FROM es.es_read_category('shop')$$,
    $$VALUES ('shop-9'::text, 1::bigint)$$,
    'regress_app: es_read_category returns the category');
SELECT is(es.es_safe_position(),
          (SELECT max(global_position) FROM es.es_read_all()),
          'regress_app: es_safe_position is the last position');
SELECT is((SELECT event_id FROM es.es_load('shop-9')), 'b4c9a4a0-4d5b-4a6e-9f3a-2d1c0e9b8a71'::uuid,
          'regress_app: the given event id was stored');

-- still no direct access to the store or the sequence
SELECT throws_ok($$SELECT * FROM es.es_events$$, '42501', 'permission denied for table es_events',
                 'regress_app: SELECT on es_events refused with 42501');
SELECT throws_ok($$SELECT count(*) FROM es.es_events$$, '42501', 'permission denied for table es_events',
                 'regress_app: SELECT count(*) on es_events refused with 42501');
SELECT throws_ok(
    $$INSERT INTO es.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
      VALUES (999, 'acct-1', 5, '6f1c2b44-0d8e-4b6a-8a1e-3c5d7e9f0a12', 'Forged', '{}', '{}', now())$$,
    '42501', 'permission denied for table es_events',
    'regress_app: INSERT into es_events refused with 42501');
SELECT throws_ok($$UPDATE es.es_events SET data = '{"amount": 1000}' WHERE stream_id = 'acct-1'$$,
                 '42501', 'permission denied for table es_events',
                 'regress_app: UPDATE of es_events refused with 42501');
SELECT throws_ok($$UPDATE es.es_events SET data = data WHERE false$$,
                 '42501', 'permission denied for table es_events',
                 'regress_app: UPDATE of es_events matching no row refused with 42501');
SELECT throws_ok($$DELETE FROM es.es_events WHERE stream_id = 'acct-1'$$,
                 '42501', 'permission denied for table es_events',
                 'regress_app: DELETE from es_events refused with 42501');
SELECT throws_ok($$TRUNCATE es.es_events$$,
                 '42501', 'permission denied for table es_events',
                 'regress_app: TRUNCATE of es_events refused with 42501');
SELECT throws_ok($$SELECT nextval('es.es_events_global_position_seq')$$,
                 '42501', 'permission denied for sequence es_events_global_position_seq',
                 'regress_app: nextval on the position sequence refused with 42501');
SELECT throws_ok($$SELECT setval('es.es_events_global_position_seq', 1)$$,
                 '42501', 'permission denied for sequence es_events_global_position_seq',
                 'regress_app: setval on the position sequence refused with 42501');
SELECT throws_ok($$ALTER SEQUENCE es.es_events_global_position_seq CACHE 20$$,
                 '42501', NULL,
                 'regress_app: ALTER SEQUENCE on the position sequence refused with 42501');
-- the immutability trigger function is not callable by the application
SELECT ok(NOT has_function_privilege('regress_app', 'es._es_refuse_change()', 'EXECUTE')
          OR to_regprocedure('es._es_refuse_change()') IS NULL,
          'regress_app: no EXECUTE on the trigger function');
RESET ROLE;
RESET search_path;

-- ---------------------------------------------------------------------------
-- The failed attempts changed nothing; the role's grants did not leak
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT stream_id COLLATE "default", stream_version, event_type COLLATE "default", data
        FROM es.es_events ORDER BY global_position$$,
    $$VALUES ('acct-1'::text, 1::bigint, 'Opened'::text,    '{"owner": "ann"}'::jsonb),
             ('acct-1',       2,         'Deposited',       '{"amount": 10}'),
             ('acct-1',       3,         'Deposited',       '{"amount": 5}'),
             ('acct-1',       4,         'Withdrawn',       '{"amount": 3}'),
             ('shop-9',       1,         'Opened',          '{}')$$,
    'the store holds exactly the appended events (no forged, changed or removed row)');
SELECT table_privs_are('es', 'es_events', 'regress_app', ARRAY[]::name[],
                       'GRANT EXECUTE gave regress_app no privilege on es_events');
SELECT sequence_privs_are('es', 'es_events_global_position_seq', 'regress_app', ARRAY[]::name[],
                          'GRANT EXECUTE gave regress_app no privilege on the sequence');
SELECT is(
    (SELECT count(*) FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE has_function_privilege('public', p.oid, 'EXECUTE')),
    0::bigint, 'granting to regress_app gave PUBLIC nothing');

-- ---------------------------------------------------------------------------
-- A hostile search_path cannot redirect the functions: with look-alike
-- objects in public and es off the path, they still use es.es_events
-- ---------------------------------------------------------------------------
CREATE TABLE public.es_events (LIKE es.es_events INCLUDING ALL);
CREATE SEQUENCE public.es_events_global_position_seq;
INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
VALUES (100, 'acct-1', 5, '9d5b0c3e-1a2f-4e6d-8c7b-0a1b2c3d4e5f', 'Decoy', '{}', '{}', now());
GRANT ALL ON public.es_events, public.es_events_global_position_seq TO regress_app;
SET LOCAL ROLE regress_app;
SET LOCAL search_path = public;
SELECT is(es.es_stream_version('acct-1'), 4::bigint,
          'hostile search_path: es_stream_version reads es.es_events, not public.es_events');
SELECT is(es.es_append('acct-1', 4, 'Deposited', '{"amount": 1}'), 5::bigint,
          'hostile search_path: es_append checks the version in es.es_events');
SELECT results_eq(
    $$SELECT stream_version, event_type COLLATE "default" FROM es.es_load('acct-1', 4)$$,
    $$VALUES (4::bigint, 'Withdrawn'::text), (5::bigint, 'Deposited'::text)$$,
    'hostile search_path: es_load reads es.es_events');
SELECT is((SELECT count(*) FROM es.es_read_all() WHERE event_type = 'Decoy'), 0::bigint,
          'hostile search_path: es_read_all does not see the decoy table');
RESET ROLE;
SELECT results_eq($$SELECT count(*), max(event_type COLLATE "default") FROM public.es_events$$,
                  $$VALUES (1::bigint, 'Decoy'::text)$$,
                  'hostile search_path: the decoy table was not written');
SELECT is(pg_sequence_last_value('public.es_events_global_position_seq'), NULL,
          'hostile search_path: the decoy sequence was not used');
SELECT is((SELECT count(*) FROM es.es_events), 6::bigint,
          'hostile search_path: the event went to es.es_events');
RESET search_path;

-- After REVOKE the role is locked out again
REVOKE EXECUTE ON FUNCTION es.es_read_all(bigint, integer) FROM regress_app;
SET LOCAL ROLE regress_app;
SELECT throws_ok($$SELECT * FROM es.es_read_all()$$,
                 '42501', 'permission denied for function es_read_all',
                 'after REVOKE, es_read_all is refused again');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
