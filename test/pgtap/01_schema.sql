-- 01_schema.sql: the catalog shape of event_sourcing (CONTRACT.md).
--
-- The extension is created in the default schema (public, the first existing
-- schema on search_path) inside this transaction; ROLLBACK removes it again.
BEGIN;
SELECT plan(99);

CREATE EXTENSION event_sourcing;

-- ---------------------------------------------------------------------------
-- The extension itself
-- ---------------------------------------------------------------------------
SELECT is(
    (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'event_sourcing'),
    'public',
    'CREATE EXTENSION without SCHEMA puts the extension in the first schema on search_path');
SELECT is(
    (SELECT extrelocatable FROM pg_extension WHERE extname = 'event_sourcing'),
    false,
    'the extension is not relocatable (internal SQL schema-qualifies with @extschema@)');
CREATE SCHEMA regress_elsewhere;
SELECT throws_ok($$ALTER EXTENSION event_sourcing SET SCHEMA regress_elsewhere$$, '0A000', NULL,
                 'ALTER EXTENSION event_sourcing SET SCHEMA is refused');

-- ---------------------------------------------------------------------------
-- es_events: columns, types, NOT NULL
-- ---------------------------------------------------------------------------
SELECT has_table('public', 'es_events', 'es_events is a table');
SELECT is(
    (SELECT count(*) FROM pg_depend
      WHERE classid = 'pg_class'::regclass AND objid = 'public.es_events'::regclass
        AND refclassid = 'pg_extension'::regclass AND deptype = 'e'
        AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'event_sourcing')),
    1::bigint,
    'es_events is a member of the extension');

SELECT col_type_is('public', 'es_events', 'global_position', 'bigint',                   'es_events.global_position is bigint');
SELECT col_type_is('public', 'es_events', 'stream_id',       'text',                     'es_events.stream_id is text');
SELECT col_type_is('public', 'es_events', 'stream_version',  'bigint',                   'es_events.stream_version is bigint');
SELECT col_type_is('public', 'es_events', 'event_id',        'uuid',                     'es_events.event_id is uuid');
SELECT col_type_is('public', 'es_events', 'event_type',      'text',                     'es_events.event_type is text');
SELECT col_type_is('public', 'es_events', 'data',            'jsonb',                    'es_events.data is jsonb');
SELECT col_type_is('public', 'es_events', 'metadata',        'jsonb',                    'es_events.metadata is jsonb');
SELECT col_type_is('public', 'es_events', 'recorded_at',     'timestamp with time zone', 'es_events.recorded_at is timestamptz');
SELECT col_type_is('public', 'es_events', 'schema_version',  'integer',                  'es_events.schema_version is integer');

SELECT col_not_null('public', 'es_events', 'global_position', 'es_events.global_position is NOT NULL');
SELECT col_not_null('public', 'es_events', 'stream_id',       'es_events.stream_id is NOT NULL');
SELECT col_not_null('public', 'es_events', 'stream_version',  'es_events.stream_version is NOT NULL');
SELECT col_not_null('public', 'es_events', 'event_id',        'es_events.event_id is NOT NULL');
SELECT col_not_null('public', 'es_events', 'event_type',      'es_events.event_type is NOT NULL');
SELECT col_not_null('public', 'es_events', 'data',            'es_events.data is NOT NULL');
SELECT col_not_null('public', 'es_events', 'metadata',        'es_events.metadata is NOT NULL');
SELECT col_not_null('public', 'es_events', 'recorded_at',     'es_events.recorded_at is NOT NULL');
SELECT col_not_null('public', 'es_events', 'schema_version',  'es_events.schema_version is NOT NULL');

-- ---------------------------------------------------------------------------
-- Keys and indexes
-- ---------------------------------------------------------------------------
SELECT col_is_pk('public', 'es_events', ARRAY['global_position'], 'global_position is the primary key');
SELECT col_is_unique('public', 'es_events', ARRAY['stream_id', 'stream_version'],
                     '(stream_id, stream_version) is unique');
SELECT col_is_unique('public', 'es_events', ARRAY['event_id'], 'event_id is unique');

-- The same, from pg_index: a unique, valid, non-partial index on exactly those
-- key columns (in that order), whatever it is called.
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'public.es_events'::regclass
       AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
       AND i.indnkeyatts = 2
       AND pg_get_indexdef(i.indexrelid, 1, false) = 'stream_id'
       AND pg_get_indexdef(i.indexrelid, 2, false) = 'stream_version'),
    'a valid unique btree index on (stream_id, stream_version) exists');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'public.es_events'::regclass
       AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
       AND i.indnkeyatts = 1
       AND pg_get_indexdef(i.indexrelid, 1, false) = 'event_id'),
    'a valid unique index on (event_id) exists');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'public.es_events'::regclass
       AND i.indisvalid AND i.indpred IS NULL
       AND i.indnkeyatts = 2
       AND pg_get_indexdef(i.indexrelid, 1, false) = 'split_part(stream_id, ''-''::text, 1)'
       AND pg_get_indexdef(i.indexrelid, 2, false) = 'global_position'),
    'the category index is on (split_part(stream_id, ''-'', 1), global_position)');

-- The constraints are real: raw inserts by the owner that break them fail.
INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id,
                              event_type, data, metadata, recorded_at)
VALUES (1000001, 'raw-1', 1, '00000000-0000-4000-8000-000000000001', 'T', '{}', '{}', now());
SELECT throws_ok(
    $$INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
      VALUES (1000002, 'raw-1', 1, '00000000-0000-4000-8000-000000000002', 'T', '{}', '{}', now())$$,
    '23505', NULL, 'a second row at the same (stream_id, stream_version) is a unique violation');
SELECT throws_ok(
    $$INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
      VALUES (1000003, 'raw-2', 1, '00000000-0000-4000-8000-000000000001', 'T', '{}', '{}', now())$$,
    '23505', NULL, 'a second row with the same event_id is a unique violation');
SELECT throws_ok(
    $$INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
      VALUES (1000001, 'raw-3', 1, '00000000-0000-4000-8000-000000000003', 'T', '{}', '{}', now())$$,
    '23505', NULL, 'a second row at the same global_position is a unique violation');

-- ---------------------------------------------------------------------------
-- The global position sequence
-- ---------------------------------------------------------------------------
SELECT is(
    pg_get_serial_sequence('public.es_events', 'global_position'),
    'public.es_events_global_position_seq',
    'es_events_global_position_seq is OWNED BY es_events.global_position');
SELECT has_sequence('public', 'es_events_global_position_seq', 'the position sequence exists');
SELECT results_eq(
    $$SELECT s.seqtypid::regtype::text, s.seqcache, s.seqincrement, s.seqcycle
        FROM pg_sequence s
       WHERE s.seqrelid = pg_get_serial_sequence('public.es_events', 'global_position')::regclass$$,
    $$VALUES ('bigint'::text, 1::bigint, 1::bigint, false)$$,
    'the position sequence is bigint, CACHE 1, INCREMENT 1, NO CYCLE');
SELECT is(
    (SELECT count(*) FROM pg_depend
      WHERE classid = 'pg_class'::regclass
        AND objid = 'public.es_events_global_position_seq'::regclass
        AND refclassid = 'pg_extension'::regclass AND deptype = 'e'
        AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'event_sourcing')),
    1::bigint,
    'the position sequence is a member of the extension');

-- ---------------------------------------------------------------------------
-- pg_dump: events and positions are dumped with the data
-- ---------------------------------------------------------------------------
SELECT ok(
    (SELECT extconfig @> ARRAY['public.es_events'::regclass::oid,
                               'public.es_events_global_position_seq'::regclass::oid]
       FROM pg_extension WHERE extname = 'event_sourcing'),
    'es_events and the position sequence are registered with pg_extension_config_dump');
SELECT is(
    (SELECT extcondition[array_position(extconfig, 'public.es_events'::regclass::oid)]
       FROM pg_extension WHERE extname = 'event_sourcing'),
    '',
    'pg_dump keeps every row of es_events (empty filter condition)');

-- ---------------------------------------------------------------------------
-- Immutability trigger: BEFORE, per statement, UPDATE/DELETE/TRUNCATE, ALWAYS
-- tgtype bits: ROW 1, BEFORE 2, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32
-- ---------------------------------------------------------------------------
SELECT ok(EXISTS (
    SELECT 1 FROM pg_trigger
     WHERE tgrelid = 'public.es_events'::regclass AND NOT tgisinternal
       AND tgenabled = 'A' AND (tgtype & 2) <> 0 AND (tgtype & 16) <> 0),
    'an ENABLE ALWAYS BEFORE UPDATE trigger guards es_events');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_trigger
     WHERE tgrelid = 'public.es_events'::regclass AND NOT tgisinternal
       AND tgenabled = 'A' AND (tgtype & 2) <> 0 AND (tgtype & 8) <> 0),
    'an ENABLE ALWAYS BEFORE DELETE trigger guards es_events');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_trigger
     WHERE tgrelid = 'public.es_events'::regclass AND NOT tgisinternal
       AND tgenabled = 'A' AND (tgtype & 2) <> 0 AND (tgtype & 32) <> 0),
    'an ENABLE ALWAYS BEFORE TRUNCATE trigger guards es_events');
SELECT is(
    (SELECT count(*) FROM pg_trigger
      WHERE tgrelid = 'public.es_events'::regclass AND NOT tgisinternal
        AND (tgtype & (8 | 16 | 32)) <> 0 AND tgenabled <> 'A'),
    0::bigint,
    'no UPDATE/DELETE/TRUNCATE trigger on es_events is enabled only for origin/replica');

-- ---------------------------------------------------------------------------
-- Functions: signature, defaults, result, volatility, strictness, definer
-- ---------------------------------------------------------------------------

-- es_append, single event
SELECT has_function('public', 'es_append', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'],
                    'es_append(text, bigint, text, jsonb, jsonb, uuid) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_append(text,bigint,text,jsonb,jsonb,uuid)')),
          'stream_id text, expected_version bigint, event_type text, data jsonb, metadata jsonb DEFAULT ''{}''::jsonb, event_id uuid DEFAULT NULL::uuid',
          'es_append (single): argument names and defaults');
SELECT function_returns('public', 'es_append', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'], 'bigint',
                        'es_append (single) returns bigint');
SELECT volatility_is('public', 'es_append', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'], 'volatile',
                     'es_append (single) is VOLATILE');

-- es_append, batch
SELECT has_function('public', 'es_append', ARRAY['text', 'bigint', 'jsonb'],
                    'es_append(text, bigint, jsonb) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_append(text,bigint,jsonb)')),
          'stream_id text, expected_version bigint, events jsonb',
          'es_append (batch): argument names, no defaults');
SELECT function_returns('public', 'es_append', ARRAY['text', 'bigint', 'jsonb'], 'bigint',
                        'es_append (batch) returns bigint');
SELECT volatility_is('public', 'es_append', ARRAY['text', 'bigint', 'jsonb'], 'volatile',
                     'es_append (batch) is VOLATILE');

-- es_load
SELECT has_function('public', 'es_load', ARRAY['text', 'bigint', 'bigint'], 'es_load(text, bigint, bigint) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_load(text,bigint,bigint)')),
          'stream_id text, from_version bigint DEFAULT 1, to_version bigint DEFAULT NULL::bigint',
          'es_load: argument names and defaults');
SELECT function_returns('public', 'es_load', ARRAY['text', 'bigint', 'bigint'], 'setof es_events',
                        'es_load returns SETOF es_events');
SELECT volatility_is('public', 'es_load', ARRAY['text', 'bigint', 'bigint'], 'stable',
                     'es_load is STABLE');

-- es_stream_version
SELECT has_function('public', 'es_stream_version', ARRAY['text', 'timestamp with time zone'],
                    'es_stream_version(text, timestamptz) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_stream_version(text,timestamptz)')),
          'stream_id text, as_of timestamp with time zone DEFAULT NULL::timestamp with time zone',
          'es_stream_version: argument names and defaults');
SELECT function_returns('public', 'es_stream_version', ARRAY['text', 'timestamp with time zone'], 'bigint',
                        'es_stream_version returns bigint');
SELECT volatility_is('public', 'es_stream_version', ARRAY['text', 'timestamp with time zone'], 'stable',
                     'es_stream_version is STABLE');

-- es_read_all
SELECT has_function('public', 'es_read_all', ARRAY['bigint', 'integer'], 'es_read_all(bigint, integer) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_read_all(bigint,integer)')),
          'after_position bigint DEFAULT 0, max_count integer DEFAULT 1000',
          'es_read_all: argument names and defaults');
SELECT function_returns('public', 'es_read_all', ARRAY['bigint', 'integer'], 'setof es_events',
                        'es_read_all returns SETOF es_events');
SELECT volatility_is('public', 'es_read_all', ARRAY['bigint', 'integer'], 'volatile',
                     'es_read_all is VOLATILE (it reads past the statement snapshot)');

-- es_read_category
SELECT has_function('public', 'es_read_category', ARRAY['text', 'bigint', 'integer'],
                    'es_read_category(text, bigint, integer) exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_read_category(text,bigint,integer)')),
          'category text, after_position bigint DEFAULT 0, max_count integer DEFAULT 1000',
          'es_read_category: argument names and defaults');
SELECT function_returns('public', 'es_read_category', ARRAY['text', 'bigint', 'integer'], 'setof es_events',
                        'es_read_category returns SETOF es_events');
SELECT volatility_is('public', 'es_read_category', ARRAY['text', 'bigint', 'integer'], 'volatile',
                     'es_read_category is VOLATILE (it reads past the statement snapshot)');

-- es_safe_position
SELECT has_function('public', 'es_safe_position', ARRAY[]::name[], 'es_safe_position() exists');
SELECT is(pg_get_function_arguments(to_regprocedure('public.es_safe_position()')),
          '',
          'es_safe_position takes no arguments');
SELECT function_returns('public', 'es_safe_position', ARRAY[]::name[], 'bigint',
                        'es_safe_position returns bigint');
SELECT volatility_is('public', 'es_safe_position', ARRAY[]::name[], 'volatile',
                     'es_safe_position is VOLATILE');

-- No other overloads that could capture calls (e.g. es_append with 4 args)
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace
         AND p.proname IN ('es_append', 'es_load', 'es_stream_version', 'es_read_all',
                           'es_read_category', 'es_safe_position')
       ORDER BY 1$$,
    $$VALUES ('es_append(text,bigint,jsonb)'),
             ('es_append(text,bigint,text,jsonb,jsonb,uuid)'),
             ('es_load(text,bigint,bigint)'),
             ('es_read_all(bigint,integer)'),
             ('es_read_category(text,bigint,integer)'),
             ('es_safe_position()'),
             ('es_stream_version(text,timestamp with time zone)')$$,
    'exactly the contract''s overloads of the core functions exist');

-- Not STRICT: a NULL argument must raise 22004 (or mean "any"/"{}"/"generate"),
-- never silently return NULL.
SELECT isnt_strict('public', 'es_append', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'],
                   'es_append (single) is not STRICT (NULL expected_version means any version)');
SELECT isnt_strict('public', 'es_append', ARRAY['text', 'bigint', 'jsonb'],
                   'es_append (batch) is not STRICT');
SELECT isnt_strict('public', 'es_load', ARRAY['text', 'bigint', 'bigint'],
                   'es_load is not STRICT (to_version NULL means to the end)');
SELECT isnt_strict('public', 'es_stream_version', ARRAY['text', 'timestamp with time zone'],
                   'es_stream_version is not STRICT (as_of NULL means now)');
SELECT isnt_strict('public', 'es_read_all', ARRAY['bigint', 'integer'],
                   'es_read_all is not STRICT');
SELECT isnt_strict('public', 'es_read_category', ARRAY['text', 'bigint', 'integer'],
                   'es_read_category is not STRICT');
-- ... and behaviour matches: NULL where NULL has no meaning is 22004
SELECT throws_ok($$SELECT public.es_append(NULL, 0, 'T', '{}')$$, '22004', NULL,
                 'es_append(NULL stream_id) raises 22004 rather than returning NULL');
SELECT throws_ok($$SELECT public.es_append('s-1', 0, NULL::jsonb)$$, '22004', NULL,
                 'es_append(batch NULL) raises 22004 rather than returning NULL');
SELECT throws_ok($$SELECT public.es_stream_version(NULL)$$, '22004', NULL,
                 'es_stream_version(NULL) raises 22004 rather than returning NULL');
SELECT throws_ok($$SELECT * FROM public.es_read_all(NULL)$$, '22004', NULL,
                 'es_read_all(NULL) raises 22004 rather than returning nothing');

-- Writers must never run in parallel workers.
SELECT is(
    (SELECT proparallel::text FROM pg_proc WHERE oid = to_regprocedure('public.es_append(text,bigint,text,jsonb,jsonb,uuid)')),
    'u', 'es_append (single) is PARALLEL UNSAFE');
SELECT is(
    (SELECT proparallel::text FROM pg_proc WHERE oid = to_regprocedure('public.es_append(text,bigint,jsonb)')),
    'u', 'es_append (batch) is PARALLEL UNSAFE');

-- es_import (1.4): one overload, not STRICT (NULL source is 22004), a writer
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text || ' returns ' || p.prorettype::regtype::text
       FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname = 'es_import'$$,
    $$VALUES ('es_import(regclass) returns bigint')$$,
    'es_import(source regclass) RETURNS bigint is the only es_import');
SELECT isnt_strict('public', 'es_import', ARRAY['regclass'], 'es_import is not STRICT');
SELECT throws_ok($$SELECT public.es_import(NULL)$$, '22004', NULL,
                 'es_import(NULL) raises 22004 rather than returning NULL');
SELECT is(
    (SELECT proparallel::text || provolatile::text FROM pg_proc WHERE oid = to_regprocedure('public.es_import(regclass)')),
    'uv', 'es_import is VOLATILE and PARALLEL UNSAFE');

-- SECURITY DEFINER: none, neither the API nor any helper of the extension
SELECT isnt_definer('public', 'es_append', ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'],
                    'es_append (single) is not SECURITY DEFINER');
SELECT isnt_definer('public', 'es_append', ARRAY['text', 'bigint', 'jsonb'],
                    'es_append (batch) is not SECURITY DEFINER');
SELECT isnt_definer('public', 'es_load', ARRAY['text', 'bigint', 'bigint'],
                    'es_load is not SECURITY DEFINER');
SELECT isnt_definer('public', 'es_stream_version', ARRAY['text', 'timestamp with time zone'],
                    'es_stream_version is not SECURITY DEFINER');
SELECT isnt_definer('public', 'es_read_all', ARRAY['bigint', 'integer'],
                    'es_read_all is not SECURITY DEFINER');
SELECT isnt_definer('public', 'es_read_category', ARRAY['text', 'bigint', 'integer'],
                    'es_read_category is not SECURITY DEFINER');
SELECT isnt_definer('public', 'es_safe_position', ARRAY[]::name[],
                    'es_safe_position is not SECURITY DEFINER');
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1)
       FROM pg_proc p
       JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                       AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE p.prosecdef),
    NULL,
    'no function of the extension is SECURITY DEFINER');
SELECT cmp_ok(
    (SELECT count(*)
       FROM pg_depend d
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
      WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
        AND d.deptype = 'e'),
    '>=', 7::bigint,
    'the SECURITY DEFINER check above covered at least the 7 API functions');

-- Every object of the extension lives in its schema
SELECT is(
    (SELECT count(*) FROM pg_depend d
       JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'event_sourcing'
       LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
       LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
      WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
        AND coalesce(c.relnamespace, p.pronamespace) <> e.extnamespace),
    0::bigint,
    'every relation and function of the extension is in the extension''s schema');

-- The row type the read functions return is es_events'
SELECT is(
    (SELECT prorettype FROM pg_proc WHERE oid = to_regprocedure('public.es_read_all(bigint,integer)')),
    (SELECT reltype FROM pg_class WHERE oid = 'public.es_events'::regclass),
    'es_read_all returns the row type of es_events');
SELECT is(
    (SELECT prorettype FROM pg_proc WHERE oid = to_regprocedure('public.es_read_category(text,bigint,integer)')),
    (SELECT reltype FROM pg_class WHERE oid = 'public.es_events'::regclass),
    'es_read_category returns the row type of es_events');

SELECT * FROM finish();
ROLLBACK;
