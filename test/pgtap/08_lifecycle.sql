-- 08_lifecycle.sql: the schema, privileges and invariants of stream
-- lifecycle (1.5): es_delete_stream, es_truncate_stream, es_redact_event,
-- es_set_retention, es_apply_retention, the es_erasures audit and the
-- retention policies.
BEGIN;
SELECT plan(35);

CREATE EXTENSION event_sourcing;
CREATE ROLE regress_app NOLOGIN;

-- ---------------------------------------------------------------------------
-- Functions: the contract's signatures; not STRICT (NULLs raise 22004),
-- VOLATILE, PARALLEL UNSAFE, not SECURITY DEFINER; nothing for PUBLIC.
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text || ' returns ' || p.prorettype::regtype::text
        FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace
         AND p.proname IN ('es_delete_stream', 'es_truncate_stream', 'es_redact_event',
                           'es_set_retention', 'es_apply_retention')
       ORDER BY 1$$,
    $$VALUES ('es_apply_retention(integer) returns bigint'),
             ('es_delete_stream(text,bigint,text) returns bigint'),
             ('es_redact_event(uuid,text[],text) returns void'),
             ('es_set_retention(text,interval,bigint) returns void'),
             ('es_truncate_stream(text,bigint,text) returns bigint')$$,
    'the five lifecycle functions, one overload each');
SELECT results_eq(
    $$SELECT pg_get_function_arguments(p.oid) FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace
         AND p.proname IN ('es_delete_stream', 'es_truncate_stream', 'es_redact_event',
                           'es_set_retention', 'es_apply_retention')
       ORDER BY p.proname$$,
    $$VALUES ('max_events integer DEFAULT 10000'),
             ('stream_id text, expected_version bigint DEFAULT NULL::bigint, reason text DEFAULT NULL::text'),
             ('event_id uuid, paths text[] DEFAULT NULL::text[], reason text DEFAULT NULL::text'),
             ('category text, max_age interval DEFAULT NULL::interval, max_count bigint DEFAULT NULL::bigint'),
             ('stream_id text, before_version bigint, reason text DEFAULT NULL::text')$$,
    'argument names and defaults as in the contract');
SELECT is(count(*)::int, 0, 'none is STRICT, SECURITY DEFINER, not VOLATILE or parallel safe')
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND p.proname IN ('es_delete_stream', 'es_truncate_stream', 'es_redact_event',
                     'es_set_retention', 'es_apply_retention')
   AND (p.proisstrict OR p.prosecdef OR p.provolatile <> 'v' OR p.proparallel <> 'u');
SELECT ok(NOT has_function_privilege('regress_app', f, 'EXECUTE'), f || ': no EXECUTE without a grant')
  FROM unnest(ARRAY['es_delete_stream(text,bigint,text)', 'es_truncate_stream(text,bigint,text)',
                    'es_redact_event(uuid,text[],text)', 'es_set_retention(text,interval,bigint)',
                    'es_apply_retention(integer)']) f;
SELECT throws_ok($$SELECT public.es_delete_stream(NULL)$$, '22004', NULL, 'es_delete_stream(NULL) raises 22004');
SELECT throws_ok($$SELECT public.es_truncate_stream('x-1', NULL)$$, '22004', NULL, 'es_truncate_stream(.., NULL) raises 22004');
SELECT throws_ok($$SELECT public.es_redact_event(NULL)$$, '22004', NULL, 'es_redact_event(NULL) raises 22004');
SELECT throws_ok($$SELECT public.es_set_retention(NULL)$$, '22004', NULL, 'es_set_retention(NULL) raises 22004');
SELECT throws_ok($$SELECT public.es_apply_retention(NULL)$$, '22004', NULL, 'es_apply_retention(NULL) raises 22004');

-- ---------------------------------------------------------------------------
-- Tables: kept by pg_dump, nothing for PUBLIC, the audit append-only for
-- every role, also under session_replication_role = replica.
-- ---------------------------------------------------------------------------
SELECT ok((SELECT extconfig @> ARRAY['public.es_erasures'::regclass::oid,
                                     'public.es_erasures_erasure_id_seq'::regclass::oid,
                                     'public.es_retention_policies'::regclass::oid]
             FROM pg_extension WHERE extname = 'event_sourcing'),
          'es_erasures, its sequence and es_retention_policies are registered with pg_extension_config_dump');
SELECT ok(NOT has_table_privilege('regress_app', t, p), t || ': no ' || p || ' for a role without grants')
  FROM unnest(ARRAY['public.es_erasures', 'public.es_retention_policies']) t,
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p;
SELECT is((SELECT tgenabled::text FROM pg_trigger
            WHERE tgrelid = 'public.es_erasures'::regclass AND tgname = 'es_erasures_immutable'),
          'A', 'the audit''s immutability trigger fires ALWAYS');
SELECT es_append('tap-1', 0, 'A', '{}');
SELECT es_delete_stream('tap-1', 1, 'tap');
SELECT throws_ok($$UPDATE public.es_erasures SET reason = 'x'$$, '55000', NULL, 'owner: UPDATE of es_erasures raises 55000');
SELECT throws_ok($$DELETE FROM public.es_erasures$$, '55000', NULL, 'owner: DELETE of es_erasures raises 55000');
SELECT throws_ok($$TRUNCATE public.es_erasures$$, '55000', NULL, 'owner: TRUNCATE of es_erasures raises 55000');
SET LOCAL session_replication_role = replica;
SELECT throws_ok($$DELETE FROM public.es_erasures$$, '55000', NULL, 'replica role: DELETE of es_erasures raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events$$, '55000', NULL, 'replica role: DELETE of es_events still raises 55000');
RESET session_replication_role;
SELECT is((SELECT count(*)::int FROM public.es_erasures), 1, 'the audit row is still there');

-- ---------------------------------------------------------------------------
-- Invariants after every kind of removal: each stream keeps its newest
-- event (the head), versions stay contiguous from the first stored one,
-- global positions stay unique and the tombstone is a deleted stream's only
-- event.
-- ---------------------------------------------------------------------------
SELECT es_append('inv-' || s, 0, (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('i', i)))
                                    FROM generate_series(1, 20) i))
  FROM generate_series(1, 10) s;
CREATE TEMP TABLE heads AS SELECT stream_id, max(stream_version) AS head FROM es_events GROUP BY stream_id;
SELECT es_truncate_stream('inv-1', 10);
SELECT es_truncate_stream('inv-2', 20);
SELECT es_delete_stream('inv-3');
SELECT es_redact_event(event_id) FROM es_events WHERE stream_id = 'inv-4' AND stream_version = 5;
SELECT es_set_retention('inv', NULL, 4);
SELECT es_apply_retention(25);
SELECT es_apply_retention();
SELECT is((SELECT count(*)::int FROM heads h
            WHERE NOT EXISTS (SELECT 1 FROM es_events e WHERE e.stream_id = h.stream_id
                                                          AND e.stream_version >= h.head)),
          0, 'every stream still has its head (or a tombstone after it)');
SELECT is((SELECT count(*)::int FROM (
             SELECT stream_id FROM es_events GROUP BY stream_id
             HAVING max(stream_version) - min(stream_version) + 1 <> count(*)) gaps),
          0, 'versions are contiguous from the first stored one');
SELECT results_eq($$SELECT stream_version, event_type::text COLLATE "default" FROM es_events WHERE stream_id = 'inv-3'$$,
                  $$VALUES (21::bigint, '$StreamDeleted'::text)$$, 'a deleted stream holds its tombstone only');
SELECT results_eq($$SELECT stream_id::text COLLATE "default", count(*)::int FROM es_events
                    WHERE stream_id IN ('inv-1', 'inv-2', 'inv-4', 'inv-5') GROUP BY stream_id ORDER BY 1$$,
                  $$VALUES ('inv-1', 4), ('inv-2', 1), ('inv-4', 4), ('inv-5', 4)$$,
                  'retention left the newest 4 of each stream (or fewer, all it had)');
SELECT is((SELECT sum(event_count)::int FROM es_erasures WHERE operation = 'retention'),
          7 + 17 + 16 * 6, 'the audit counts what retention removed');
SELECT is((SELECT count(*)::int FROM es_events e WHERE e.event_type LIKE '$%'
             AND e.event_type NOT IN ('$StreamDeleted', '$EventRedacted')), 0,
          'the only $ types are the extension''s own');

SELECT * FROM finish();
ROLLBACK;
