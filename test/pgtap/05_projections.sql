-- 05_projections.sql: the catalog shape of projections (CONTRACT.md,
-- "Projections"; version 1.1) and the invariants it guarantees.
--
-- The extension is created in the default schema (public) inside this
-- transaction; ROLLBACK removes it again, with the roles created here.
BEGIN;
SELECT plan(126);

CREATE EXTENSION event_sourcing;
CREATE ROLE regress_app NOLOGIN;

SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'event_sourcing'), '1.5',
          'CREATE EXTENSION installs version 1.5');

-- ---------------------------------------------------------------------------
-- es_projection_defs: columns in order, types, NOT NULL, defaults, keys
-- ---------------------------------------------------------------------------
SELECT has_table('public', 'es_projection_defs', 'es_projection_defs is a table');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull,
             coalesce(pg_get_expr(d.adbin, d.adrelid), '') COLLATE "default"
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = 'public.es_projection_defs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('name'::text,      'text'::text,               true,  ''::text),
             ('handler',         'regprocedure',             true,  ''),
             ('event_types',     'text[]',                   false, ''),
             ('mode',            'text',                     true,  ''),
             ('reset',           'regprocedure',             false, ''),
             ('owner',           'regrole',                  true,  ''),
             ('position',        'bigint',                   true,  '0'),
             ('status',          'text',                     true,  '''running''::text'),
             ('last_error',      'text',                     false, ''),
             ('failed_position', 'bigint',                   false, ''),
             ('defined_at',      'timestamp with time zone', true,  'now()'),
             ('updated_at',      'timestamp with time zone', true,  'now()'),
             ('search_path',     'text',                     true,  '')$$,
    'es_projection_defs: columns in order, with types, NOT NULL and defaults');
SELECT col_is_pk('public', 'es_projection_defs', ARRAY['name'], 'es_projection_defs: name is the primary key');
SELECT is(
    (SELECT array_agg((a.attname::text || ':' || coalesce(c.collname::text, '-')) COLLATE "default" ORDER BY a.attnum)
       FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
      WHERE a.attrelid = 'public.es_projection_defs'::regclass
        AND a.attname IN ('name', 'event_types', 'mode', 'status')),
    ARRAY['name:C', 'event_types:C', 'mode:C', 'status:C'],
    'es_projection_defs: name, event_types, mode and status compare bytewise (COLLATE "C")');
SELECT results_eq(
    $$SELECT conname::text COLLATE "default", pg_get_constraintdef(oid)
        FROM pg_constraint WHERE conrelid = 'public.es_projection_defs'::regclass AND contype = 'c'
       ORDER BY conname$$,
    $$VALUES ('es_projection_defs_mode_check'::text,     'CHECK ((mode = ANY (ARRAY[''inline''::text, ''async''::text])))'::text),
             ('es_projection_defs_position_check',       'CHECK (("position" >= 0))'),
             ('es_projection_defs_status_check',         'CHECK ((status = ANY (ARRAY[''running''::text, ''failed''::text])))')$$,
    'es_projection_defs: CHECK constraints on mode, status and position');

-- ---------------------------------------------------------------------------
-- es_dead_letters
-- ---------------------------------------------------------------------------
SELECT has_table('public', 'es_dead_letters', 'es_dead_letters is a table');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod), a.attnotnull,
             coalesce(pg_get_expr(d.adbin, d.adrelid), '') COLLATE "default"
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE a.attrelid = 'public.es_dead_letters'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       ORDER BY a.attnum$$,
    $$VALUES ('projection'::text, 'text'::text,               true,  ''::text),
             ('event',            'es_events',                true,  ''),
             ('error',            'text',                     false, ''),
             ('time',             'timestamp with time zone', true,  'now()'),
             ('position',         'bigint',                   true,  '')$$,
    'es_dead_letters: columns in order, with types, NOT NULL and defaults');
SELECT is(
    (SELECT atttypid FROM pg_attribute WHERE attrelid = 'public.es_dead_letters'::regclass AND attname = 'event'),
    (SELECT reltype FROM pg_class WHERE oid = 'public.es_events'::regclass),
    'es_dead_letters.event is of the row type of es_events');
SELECT col_is_pk('public', 'es_dead_letters', ARRAY['projection', 'position'],
                 'es_dead_letters: (projection, position) is the primary key');

-- ---------------------------------------------------------------------------
-- The view es_projections
-- ---------------------------------------------------------------------------
SELECT has_view('public', 'es_projections', 'es_projections is a view');
SELECT results_eq(
    $$SELECT a.attname::text COLLATE "default", format_type(a.atttypid, a.atttypmod)
        FROM pg_attribute a
       WHERE a.attrelid = 'public.es_projections'::regclass AND a.attnum > 0
       ORDER BY a.attnum$$,
    $$VALUES ('name'::text,       'text'::text),
             ('mode',             'text'),
             ('event_types',      'text[]'),
             ('position',         'bigint'),
             ('lag',              'bigint'),
             ('status',           'text'),
             ('last_error',       'text'),
             ('failed_position',  'bigint'),
             ('handler',          'regprocedure'),
             ('reset',            'regprocedure'),
             ('owner',            'regrole'),
             ('defined_at',       'timestamp with time zone'),
             ('updated_at',       'timestamp with time zone'),
             ('search_path',      'text')$$,
    'es_projections: columns in order, with types');
SELECT ok(pg_get_viewdef('public.es_projections'::regclass) LIKE '%_es_projection_head()%',
          'es_projections computes the head with _es_projection_head()');

-- ---------------------------------------------------------------------------
-- Functions: signature, defaults, result, volatility, strictness, definer,
-- parallel safety
-- ---------------------------------------------------------------------------
SELECT has_function('public', 'es_define_projection', ARRAY['text', 'regprocedure', 'text[]', 'text', 'regprocedure'],
                    'es_define_projection(text, regprocedure, text[], text, regprocedure) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_define_projection(text,regprocedure,text[],text,regprocedure)')),
          'name text, handler regprocedure, event_types text[] DEFAULT NULL::text[], mode text DEFAULT ''inline''::text, reset regprocedure DEFAULT NULL::regprocedure',
          'es_define_projection: argument names and defaults');
SELECT function_returns('public', 'es_define_projection', ARRAY['text', 'regprocedure', 'text[]', 'text', 'regprocedure'], 'void',
                        'es_define_projection returns void');

SELECT has_function('public', 'es_drop_projection', ARRAY['text'], 'es_drop_projection(text) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_drop_projection(text)')),
          'name text', 'es_drop_projection: argument name, no default');
SELECT function_returns('public', 'es_drop_projection', ARRAY['text'], 'void',
                        'es_drop_projection returns void');

SELECT has_function('public', 'es_projection_run', ARRAY['text', 'integer'], 'es_projection_run(text, integer) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_projection_run(text,integer)')),
          'name text DEFAULT NULL::text, max_events integer DEFAULT 1000',
          'es_projection_run: argument names and defaults');
SELECT function_returns('public', 'es_projection_run', ARRAY['text', 'integer'], 'bigint',
                        'es_projection_run returns bigint');

SELECT has_function('public', 'es_projection_rebuild', ARRAY['text'], 'es_projection_rebuild(text) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_projection_rebuild(text)')),
          'name text', 'es_projection_rebuild: argument name, no default');
SELECT function_returns('public', 'es_projection_rebuild', ARRAY['text'], 'bigint',
                        'es_projection_rebuild returns bigint');

SELECT has_function('public', 'es_projection_skip', ARRAY['text'], 'es_projection_skip(text) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_projection_skip(text)')),
          'name text', 'es_projection_skip: argument name, no default');
SELECT function_returns('public', 'es_projection_skip', ARRAY['text'], 'bigint',
                        'es_projection_skip returns bigint');

SELECT has_function('public', '_es_projection_head', ARRAY[]::name[], '_es_projection_head() exists');
SELECT function_returns('public', '_es_projection_head', ARRAY[]::name[], 'bigint',
                        '_es_projection_head returns bigint');
SELECT has_function('public', '_es_dispatch_inline', ARRAY[]::name[], '_es_dispatch_inline() exists');
SELECT function_returns('public', '_es_dispatch_inline', ARRAY[]::name[], 'trigger',
                        '_es_dispatch_inline returns trigger');

-- every 1.1 function at once: exact overloads, volatile, not strict, not
-- SECURITY DEFINER, PARALLEL UNSAFE, C, a member of the extension
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text, p.provolatile::text, p.proisstrict, p.prosecdef,
             p.proparallel::text, l.lanname::text COLLATE "default",
             EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                        AND e.extname = 'event_sourcing')
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'public'::regnamespace
         AND (p.proname LIKE '%projection%' OR p.proname = '_es_dispatch_inline')
       ORDER BY 1$$,
    $$VALUES ('_es_dispatch_inline()'::text,                                            'v'::text, false, false, 'u'::text, 'c'::text, true),
             ('_es_projection_head()',                                                  'v',       false, false, 'u',       'c',       true),
             ('es_define_projection(text,regprocedure,text[],text,regprocedure)',       'v',       false, false, 'u',       'c',       true),
             ('es_drop_projection(text)',                                               'v',       false, false, 'u',       'c',       true),
             ('es_projection_rebuild(text)',                                            'v',       false, false, 'u',       'c',       true),
             ('es_projection_run(text,integer)',                                        'v',       false, false, 'u',       'c',       true),
             ('es_projection_skip(text)',                                               'v',       false, false, 'u',       'c',       true),
             ('es_projection_wait(text,bigint,integer)',                                'v',       false, false, 'u',       'c',       true)$$,
    'the projection functions: exactly these overloads, VOLATILE, not STRICT, not SECURITY DEFINER, PARALLEL UNSAFE, C, extension members');

-- Not STRICT, and NULL where it has no meaning is 22004, not a NULL result
SELECT throws_ok($$SELECT es_define_projection(NULL, 'es_safe_position()')$$, '22004', NULL,
                 'es_define_projection(NULL name) raises 22004');
SELECT throws_ok($$SELECT es_projection_rebuild(NULL)$$, '22004', NULL,
                 'es_projection_rebuild(NULL) raises 22004');
SELECT throws_ok($$SELECT es_projection_skip(NULL)$$, '22004', NULL,
                 'es_projection_skip(NULL) raises 22004');
SELECT throws_ok($$SELECT es_drop_projection(NULL)$$, '22004', NULL,
                 'es_drop_projection(NULL) raises 22004');
SELECT throws_ok($$SELECT es_projection_run('x', NULL)$$, '22004', NULL,
                 'es_projection_run(max_events NULL) raises 22004');
SELECT is(es_projection_run(), 0::bigint, 'es_projection_run() with no projection applies nothing');

-- ---------------------------------------------------------------------------
-- Members, schema, pg_dump
-- ---------------------------------------------------------------------------
SELECT is(
    (SELECT array_agg(pg_describe_object(d.classid, d.objid, d.objsubid) ORDER BY pg_describe_object(d.classid, d.objid, d.objsubid))
       FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
        AND d.objid IN ('public.es_projection_defs'::regclass, 'public.es_dead_letters'::regclass,
                        'public.es_projections'::regclass)),
    ARRAY['table es_dead_letters', 'table es_projection_defs', 'view es_projections'],
    'es_projection_defs, es_dead_letters and es_projections are members of the extension');
SELECT ok(
    (SELECT extconfig @> ARRAY['public.es_projection_defs'::regclass::oid,
                               'public.es_dead_letters'::regclass::oid]
       FROM pg_extension WHERE extname = 'event_sourcing'),
    'es_projection_defs and es_dead_letters are registered with pg_extension_config_dump');
SELECT is(
    (SELECT array_agg(coalesce(extcondition[array_position(extconfig, c::oid)], '<null>') ORDER BY c)
       FROM pg_extension, unnest(ARRAY['public.es_projection_defs'::regclass, 'public.es_dead_letters'::regclass]) c
      WHERE extname = 'event_sourcing'),
    ARRAY['', ''],
    'pg_dump keeps every row of es_projection_defs and es_dead_letters (empty filter condition)');
SELECT ok(NOT (SELECT extconfig @> ARRAY['public.es_projections'::regclass::oid]
                 FROM pg_extension WHERE extname = 'event_sourcing'),
          'the view es_projections is not a config table');

-- ---------------------------------------------------------------------------
-- The dispatch trigger: AFTER INSERT FOR EACH ROW on es_events, ALWAYS
-- tgtype bits: ROW 1, BEFORE 2, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32, INSTEAD 64
-- ---------------------------------------------------------------------------
SELECT has_trigger('public', 'es_events', 'es_events_inline_projections',
                   'es_events has the trigger es_events_inline_projections');
SELECT trigger_is('public', 'es_events', 'es_events_inline_projections', 'public', '_es_dispatch_inline',
                  'es_events_inline_projections calls _es_dispatch_inline()');
SELECT results_eq(
    $$SELECT tgtype::int, tgenabled::text, tgisinternal, tgnargs::int, tgattr::text, tgqual IS NULL,
             tgconstraint = 0, tgdeferrable, tginitdeferred
        FROM pg_trigger WHERE tgrelid = 'public.es_events'::regclass
         AND tgname = 'es_events_inline_projections'$$,
    $$VALUES (5, 'A'::text, false, 0, ''::text, true, true, false, false)$$,
    'es_events_inline_projections: AFTER INSERT FOR EACH ROW (tgtype 5), ENABLE ALWAYS, no arguments, columns, WHEN or constraint');
SELECT is(
    (SELECT pg_get_triggerdef(oid) FROM pg_trigger
      WHERE tgrelid = 'public.es_events'::regclass AND tgname = 'es_events_inline_projections'),
    'CREATE TRIGGER es_events_inline_projections AFTER INSERT ON public.es_events FOR EACH ROW EXECUTE FUNCTION _es_dispatch_inline()',
    'es_events_inline_projections: its definition');
SELECT is(
    (SELECT array_agg(tgname::text COLLATE "default" ORDER BY tgname) FROM pg_trigger
      WHERE tgrelid = 'public.es_events'::regclass AND NOT tgisinternal),
    ARRAY['es_events_immutable', 'es_events_inline_projections'],
    'es_events has exactly the immutability and the dispatch triggers');
SELECT throws_ok($$SELECT _es_dispatch_inline()$$, '39P01',
                 '_es_dispatch_inline() must be called as an AFTER INSERT row trigger',
                 'the trigger function refuses to be called other than as the AFTER INSERT row trigger');

-- ---------------------------------------------------------------------------
-- Nothing granted to PUBLIC or to a fresh role
-- ---------------------------------------------------------------------------
SELECT table_privs_are('public', 'es_projection_defs', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on es_projection_defs');
SELECT table_privs_are('public', 'es_dead_letters', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on es_dead_letters');
SELECT table_privs_are('public', 'es_projections', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on es_projections');
SELECT table_privs_are('public', 'es_projection_defs', 'regress_app', ARRAY[]::name[],
                       'a fresh role has no privilege on es_projection_defs');
SELECT table_privs_are('public', 'es_dead_letters', 'regress_app', ARRAY[]::name[],
                       'a fresh role has no privilege on es_dead_letters');
SELECT table_privs_are('public', 'es_projections', 'regress_app', ARRAY[]::name[],
                       'a fresh role has no privilege on es_projections');
SELECT ok(NOT has_any_column_privilege('public', 'public.es_projection_defs', 'SELECT, INSERT, UPDATE, REFERENCES')
          AND NOT has_any_column_privilege('public', 'public.es_dead_letters', 'SELECT, INSERT, UPDATE, REFERENCES')
          AND NOT has_any_column_privilege('public', 'public.es_projections', 'SELECT, INSERT, UPDATE, REFERENCES'),
          'PUBLIC has no column privilege on the new relations');
SELECT function_privs_are('public', 'es_define_projection', ARRAY['text', 'regprocedure', 'text[]', 'text', 'regprocedure'],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute es_define_projection');
SELECT function_privs_are('public', 'es_drop_projection', ARRAY['text'],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute es_drop_projection');
SELECT function_privs_are('public', 'es_projection_run', ARRAY['text', 'integer'],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute es_projection_run');
SELECT function_privs_are('public', 'es_projection_rebuild', ARRAY['text'],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute es_projection_rebuild');
SELECT function_privs_are('public', 'es_projection_skip', ARRAY['text'],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute es_projection_skip');
SELECT function_privs_are('public', '_es_projection_head', ARRAY[]::text[],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute _es_projection_head');
SELECT function_privs_are('public', '_es_dispatch_inline', ARRAY[]::text[],
                          'public', ARRAY[]::text[], 'PUBLIC cannot execute _es_dispatch_inline');
SELECT is(
    (SELECT count(*)
       FROM (SELECT relacl AS acl FROM pg_class
              WHERE oid IN ('public.es_projection_defs'::regclass, 'public.es_dead_letters'::regclass,
                            'public.es_projections'::regclass)
             UNION ALL
             SELECT proacl FROM pg_proc
              WHERE pronamespace = 'public'::regnamespace
                AND (proname LIKE '%projection%' OR proname = '_es_dispatch_inline')) o
      WHERE o.acl IS NULL),
    0::bigint, 'every new relation and function has an explicit ACL (NULL would mean the defaults)');
SELECT is(
    (SELECT count(*)
       FROM pg_init_privs i
       CROSS JOIN LATERAL aclexplode(i.initprivs) a
      WHERE a.grantee = 0
        AND ((i.classoid = 'pg_class'::regclass
              AND i.objoid IN ('public.es_projection_defs'::regclass, 'public.es_dead_letters'::regclass,
                               'public.es_projections'::regclass))
          OR (i.classoid = 'pg_proc'::regclass
              AND i.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace
                                 AND (proname LIKE '%projection%' OR proname = '_es_dispatch_inline'))))),
    0::bigint, 'the initial privileges (pg_init_privs) grant PUBLIC nothing on the new objects');
SELECT is(
    (SELECT count(*) FROM pg_init_privs i
      WHERE (i.classoid = 'pg_class'::regclass
             AND i.objoid IN ('public.es_projection_defs'::regclass, 'public.es_dead_letters'::regclass,
                              'public.es_projections'::regclass))
         OR (i.classoid = 'pg_proc'::regclass
             AND i.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'public'::regnamespace
                                AND (proname LIKE '%projection%' OR proname = '_es_dispatch_inline')))),
    11::bigint, 'pg_init_privs records the initial privileges of all 11 new objects (so pg_dump knows them; es_projection_wait is 1.5''s)');

-- a fresh role is refused everything
SET LOCAL ROLE regress_app;
SELECT throws_ok($$SELECT es_define_projection('p', 'es_safe_position()')$$, '42501',
                 'permission denied for function es_define_projection',
                 'fresh role: es_define_projection refused with 42501');
SELECT throws_ok($$SELECT es_projection_run()$$, '42501', 'permission denied for function es_projection_run',
                 'fresh role: es_projection_run refused with 42501');
SELECT throws_ok($$SELECT es_projection_rebuild('p')$$, '42501', 'permission denied for function es_projection_rebuild',
                 'fresh role: es_projection_rebuild refused with 42501');
SELECT throws_ok($$SELECT es_projection_skip('p')$$, '42501', 'permission denied for function es_projection_skip',
                 'fresh role: es_projection_skip refused with 42501');
SELECT throws_ok($$SELECT es_drop_projection('p')$$, '42501', 'permission denied for function es_drop_projection',
                 'fresh role: es_drop_projection refused with 42501');
SELECT throws_ok($$SELECT * FROM es_projections$$, '42501', 'permission denied for view es_projections',
                 'fresh role: SELECT on es_projections refused with 42501');
SELECT throws_ok($$SELECT * FROM es_projection_defs$$, '42501', 'permission denied for table es_projection_defs',
                 'fresh role: SELECT on es_projection_defs refused with 42501');
SELECT throws_ok($$SELECT * FROM es_dead_letters$$, '42501', 'permission denied for table es_dead_letters',
                 'fresh role: SELECT on es_dead_letters refused with 42501');
RESET ROLE;
-- SELECT on the view is not enough: it calls _es_projection_head()
GRANT SELECT ON es_projections TO regress_app;
SET LOCAL ROLE regress_app;
SELECT throws_ok($$SELECT * FROM es_projections$$, '42501', 'permission denied for function _es_projection_head',
                 'SELECT on es_projections without EXECUTE on _es_projection_head is refused with 42501');
RESET ROLE;
GRANT EXECUTE ON FUNCTION _es_projection_head() TO regress_app;
SET LOCAL ROLE regress_app;
SELECT is((SELECT count(*) FROM es_projections), 0::bigint,
          'with SELECT on the view and EXECUTE on _es_projection_head, es_projections can be read');
SELECT throws_ok($$SELECT * FROM es_projection_defs$$, '42501', 'permission denied for table es_projection_defs',
                 'reading the view gives no access to es_projection_defs');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Invariants of es_projection_defs, enforced even for the owner's raw writes
-- ---------------------------------------------------------------------------
CREATE TABLE seen (projection text, global_position bigint, event_type text);
CREATE FUNCTION seen_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO seen VALUES ('seen', e.global_position, e.event_type) $$;
CREATE FUNCTION seen_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM seen WHERE projection = 'seen' $$;
CREATE FUNCTION async_apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'poison' THEN
        RAISE EXCEPTION 'poison at %', e.global_position USING ERRCODE = 'P0001';
    END IF;
    INSERT INTO seen VALUES ('async', e.global_position, e.event_type);
END $$;

SELECT throws_ok(
    $$INSERT INTO es_projection_defs (name, handler, mode, owner, search_path) VALUES ('x', 'seen_apply(es_events)', 'batch', current_user::regrole, 'pg_temp')$$,
    '23514', NULL, 'mode must be inline or async (CHECK, 23514)');
SELECT throws_ok(
    $$INSERT INTO es_projection_defs (name, handler, mode, owner, search_path, status) VALUES ('x', 'seen_apply(es_events)', 'async', current_user::regrole, 'pg_temp', 'paused')$$,
    '23514', NULL, 'status must be running or failed (CHECK, 23514)');
SELECT throws_ok(
    $$INSERT INTO es_projection_defs (name, handler, mode, owner, search_path, position) VALUES ('x', 'seen_apply(es_events)', 'async', current_user::regrole, 'pg_temp', -1)$$,
    '23514', NULL, 'position must not be negative (CHECK, 23514)');
SELECT throws_ok(
    $$INSERT INTO es_projection_defs (name, mode, owner) VALUES ('x', 'async', current_user::regrole)$$,
    '23502', NULL, 'handler is NOT NULL (23502)');
SELECT throws_ok(
    $$INSERT INTO es_projection_defs (name, handler, mode) VALUES ('x', 'seen_apply(es_events)', 'async')$$,
    '23502', NULL, 'owner is NOT NULL (23502)');
SELECT throws_ok(
    $$INSERT INTO es_projection_defs (name, handler, mode, owner) VALUES ('x', 'no_such_function(es_events)', 'async', current_user::regrole)$$,
    '42883', NULL, 'handler must name an existing function (regprocedure, 42883)');

-- es_define_projection stores the row the contract describes
SELECT lives_ok($$SELECT es_define_projection('seen', 'seen_apply(es_events)', reset => 'seen_reset()')$$,
                'es_define_projection with the defaults: inline, every type');
SELECT lives_ok($$SELECT es_define_projection('async_one', 'async_apply(es_events)', ARRAY['B', 'A'], 'async')$$,
                'es_define_projection of an async projection with two event types');
SELECT results_eq(
    $$SELECT name::text COLLATE "default", handler::text COLLATE "default", event_types::text COLLATE "default", mode::text COLLATE "default", coalesce(reset::text, '-'),
             owner::text COLLATE "default", position, status::text COLLATE "default", last_error, failed_position,
             defined_at = now() AND updated_at = now()
        FROM es_projection_defs ORDER BY name$$,
    $$VALUES ('async_one'::text, 'async_apply(es_events)'::text, '{B,A}'::text, 'async'::text, '-'::text,
              current_user::text COLLATE "default", 0::bigint, 'running'::text, NULL::text, NULL::bigint, true),
             ('seen', 'seen_apply(es_events)', NULL, 'inline', 'seen_reset()',
              current_user::text COLLATE "default", 0::bigint, 'running', NULL, NULL, true)$$,
    'es_projection_defs: what es_define_projection stored (owner: the caller; position 0; running)');
SELECT throws_ok($$SELECT es_define_projection('seen', 'seen_apply(es_events)')$$, '42710', NULL,
                 'defining an existing name raises 42710');
SELECT throws_ok($$SELECT es_define_projection('bad_mode', 'seen_apply(es_events)', NULL, 'batch')$$, '22023', NULL,
                 'a mode other than inline or async raises 22023');
SELECT throws_ok($$SELECT es_define_projection('bad_handler', 'es_safe_position()')$$, '42P13', NULL,
                 'a handler that is not (es_events) RETURNS void raises 42P13');
SELECT throws_ok($$SELECT es_define_projection('bad_reset', 'seen_apply(es_events)', reset => 'seen_apply(es_events)')$$, '42P13', NULL,
                 'a reset that is not () RETURNS void raises 42P13');
SELECT throws_ok($$SELECT es_define_projection('no_types', 'seen_apply(es_events)', ARRAY[]::text[])$$, '22023', NULL,
                 'an empty event_types array raises 22023');
SELECT throws_ok($$SELECT es_define_projection('', 'seen_apply(es_events)')$$, '22023', NULL,
                 'an empty name raises 22023');
SELECT is((SELECT count(*) FROM es_projection_defs), 2::bigint, 'the refused definitions stored nothing');

-- ---------------------------------------------------------------------------
-- Inline dispatch: es_append only, once per event, in the appending
-- transaction; rows inserted any other way are not dispatched
-- ---------------------------------------------------------------------------
SELECT is(es_append('a-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]'::jsonb), 2::bigint,
          'append two events');
SELECT results_eq($$SELECT global_position, event_type COLLATE "default" FROM seen WHERE projection = 'seen' ORDER BY 1$$,
                  $$VALUES (1::bigint, 'A'::text), (2, 'B')$$,
                  'the inline projection saw each appended event once, in global order');
INSERT INTO es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
VALUES (nextval('es_events_global_position_seq'), 'raw-1', 1, '00000000-0000-4000-8000-000000000001', 'A', '{}', '{}', now());
SELECT is((SELECT global_position FROM es_events WHERE stream_id = 'raw-1'), 3::bigint,
          'a row INSERTed into es_events directly (as pg_restore does), at position 3');
SELECT is((SELECT count(*) FROM seen WHERE projection = 'seen' AND global_position = 3), 0::bigint,
          'the row INSERTed directly is not dispatched');
SET LOCAL session_replication_role = replica;
SELECT is(es_append('a-1', 2, 'C', '{}'), 3::bigint, 'append under session_replication_role = replica');
RESET session_replication_role;
SELECT is((SELECT count(*) FROM seen WHERE projection = 'seen' AND event_type = 'C'), 1::bigint,
          'ENABLE ALWAYS: dispatch happens under session_replication_role = replica too');
SELECT results_eq($$SELECT position, lag FROM es_projections WHERE name = 'seen'$$,
                  $$SELECT es_safe_position(), 0::bigint$$,
                  'es_projections: an inline projection is at the safe head, lag 0');

-- a failing inline handler fails the append: nothing stored ('seen' is
-- dispatched first, in name order, and its effect goes too)
CREATE FUNCTION refuse_d(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type = 'D' THEN RAISE EXCEPTION 'no D' USING ERRCODE = 'P0001'; END IF;
END $$;
SELECT es_define_projection('z_refuse_d', 'refuse_d(es_events)', ARRAY['D']);
CREATE TEMP TABLE counts AS SELECT (SELECT count(*) FROM es_events) AS events, (SELECT count(*) FROM seen) AS seen;
SELECT throws_ok($$SELECT es_append('a-1', 3, 'D', '{}')$$, 'P0001', 'no D',
                 'an inline handler error fails the append with the handler''s error');
SELECT results_eq($$SELECT (SELECT count(*) FROM es_events), (SELECT count(*) FROM seen)$$,
                  $$SELECT events, seen FROM counts$$,
                  'the failed append stored no event, and no other projection kept its effect');
SELECT es_drop_projection('z_refuse_d');

-- ---------------------------------------------------------------------------
-- Async: checkpoint, failure, skip, dead letters
-- ---------------------------------------------------------------------------
SET LOCAL client_min_messages = error;   -- the failure WARNINGs
SELECT is(es_append('b-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {"poison": true}},
                                {"type": "X", "data": {}}, {"type": "A", "data": {}}]'::jsonb), 4::bigint,
          'append A, poisoned B, X, A');
SELECT is(es_projection_run('async_one', 0), 0::bigint, 'max_events 0 applies nothing');
SELECT throws_ok($$SELECT es_projection_run('async_one', -1)$$, '22023', NULL, 'negative max_events raises 22023');
SELECT throws_ok($$SELECT es_projection_run('seen')$$, '42809', NULL, 'es_projection_run of an inline projection raises 42809');
SELECT throws_ok($$SELECT es_projection_run('nope')$$, '42704', NULL, 'es_projection_run of an unknown name raises 42704');
SELECT throws_ok($$SELECT es_projection_skip('async_one')$$, '55000', NULL,
                 'es_projection_skip of a projection that has not failed raises 55000');
SELECT throws_ok($$SELECT es_projection_skip('seen')$$, '42809', NULL,
                 'es_projection_skip of an inline projection raises 42809');
-- the log: 1 A, 2 B, 3 A (raw), 4 C, (5 rolled back), 6 A, 7 B poisoned, 8 X, 9 A
SELECT results_eq($$SELECT position, lag, status::text COLLATE "default" FROM es_projections WHERE name = 'async_one'$$,
                  $$VALUES (0::bigint, 9::bigint, 'running'::text)$$,
                  'before its first run, async_one is at 0, 9 positions behind');
SELECT is(es_projection_run('async_one'), 4::bigint,
          'the async run applies A, B, A (raw), A and stops at the poisoned B');
SELECT results_eq(
    $$SELECT status::text COLLATE "default", position, failed_position, last_error FROM es_projections WHERE name = 'async_one'$$,
    $$VALUES ('failed'::text, 6::bigint, 7::bigint, 'poison at 7'::text)$$,
    'failed at position 7, checkpoint before it (6), the error recorded');
SELECT results_eq($$SELECT global_position FROM seen WHERE projection = 'async' ORDER BY 1$$,
                  $$VALUES (1::bigint), (2), (3), (6)$$,
                  'the events before the failing one were kept (the raw row too: async reads the log)');
SELECT is(es_projection_run('async_one'), 0::bigint, 'a retry fails at the same event and applies nothing');
SELECT is(es_projection_skip('async_one'), 7::bigint, 'es_projection_skip returns the skipped position');
SELECT results_eq(
    $$SELECT projection::text COLLATE "default", (event).global_position, (event).event_type::text COLLATE "default", error, position
        FROM es_dead_letters$$,
    $$VALUES ('async_one'::text, 7::bigint, 'B'::text, 'poison at 7'::text, 7::bigint)$$,
    'the skipped event is in es_dead_letters with its error');
SELECT results_eq($$SELECT status::text COLLATE "default", position, failed_position, last_error FROM es_projections WHERE name = 'async_one'$$,
                  $$VALUES ('running'::text, 7::bigint, NULL::bigint, NULL::text)$$,
                  'after the skip: running, checkpoint at the skipped event, error cleared');
SELECT is(es_projection_run('async_one'), 1::bigint, 'the next run applies the A after it (X is not of its types)');
SELECT results_eq($$SELECT position, lag FROM es_projections WHERE name = 'async_one'$$,
                  $$SELECT es_safe_position(), 0::bigint$$,
                  'async_one is at the head, lag 0');
SELECT is(es_projection_rebuild('seen'), (SELECT count(*) FROM es_events),
          'the inline rebuild replays every event (the raw row included)');
SELECT is((SELECT count(*) FROM seen WHERE projection = 'seen'), (SELECT count(*) FROM es_events),
          'after the rebuild the inline read model has each event once');

-- es_drop_projection deletes the definition and its dead letters, not the read model
SELECT lives_ok($$SELECT es_drop_projection('async_one')$$, 'es_drop_projection');
SELECT is((SELECT count(*) FROM es_dead_letters), 0::bigint, 'its dead letters are gone');
SELECT is((SELECT count(*) FROM seen WHERE projection = 'async'), 5::bigint, 'its read model is untouched');
SELECT throws_ok($$SELECT es_drop_projection('async_one')$$, '42704', NULL, 'dropping it again raises 42704');

-- the dead-letter key: one per (projection, position)
INSERT INTO es_dead_letters (projection, event, error, position)
SELECT 'p', e, 'x', e.global_position FROM es_events e WHERE global_position = 1;
SELECT throws_ok(
    $$INSERT INTO es_dead_letters (projection, event, error, position)
      SELECT 'p', e, 'x', e.global_position FROM es_events e WHERE global_position = 1$$,
    '23505', NULL, 'es_dead_letters: a second row for the same (projection, position) is a unique violation');

SELECT * FROM finish();
ROLLBACK;
