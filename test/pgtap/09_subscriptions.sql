-- 09_subscriptions.sql: the schema and privileges of subscriptions and
-- client commands (1.5): signatures, volatility, nothing for PUBLIC, the
-- tables kept by pg_dump, and the invariants of a consumer group.
BEGIN;
SELECT plan(26);

CREATE EXTENSION event_sourcing;
CREATE ROLE regress_app NOLOGIN;

-- ---------------------------------------------------------------------------
-- Functions
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT p.oid::regprocedure::text || ' -> ' || pg_get_function_result(p.oid)
              || ' ' || p.provolatile::text || p.proparallel::text || CASE WHEN p.proisstrict THEN ' strict' ELSE '' END
              || CASE WHEN p.prosecdef THEN ' definer' ELSE '' END
        FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace
         AND (p.proname LIKE '%subscription%' OR p.proname IN ('es_last_position', 'es_execute'))
       ORDER BY 1$$,
    $$VALUES ('_es_subscription_lag(text,integer) -> bigint vu'),
             ('es_alter_subscription(text,integer) -> void vu'),
             ('es_define_subscription(text,text,text[],bigint,integer) -> void vu'),
             ('es_drop_subscription(text) -> void vu'),
             ('es_execute(text,jsonb,bigint,uuid) -> bigint vu'),
             ('es_last_position() -> bigint vu'),
             ('es_subscription_ack(text,bigint,integer) -> void vu'),
             ('es_subscription_member(text,integer) -> integer is'),
             ('es_subscription_read(text,integer,integer) -> SETOF es_events vu'),
             ('es_subscription_release(text,integer) -> boolean vu'),
             ('es_subscription_reset(text,bigint,integer) -> void vu'),
             ('es_subscription_wait(text,integer,integer) -> boolean vu'),
             ('es_subscription_wait_acked(text,bigint,integer) -> boolean vu')$$,
    'the subscription functions and es_execute: exactly these overloads, volatility and parallel safety, none STRICT or SECURITY DEFINER');
SELECT results_eq(
    $$SELECT pg_get_function_arguments(p.oid) FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace
         AND p.proname IN ('es_define_subscription', 'es_subscription_read', 'es_subscription_ack',
                           'es_subscription_wait', 'es_subscription_reset', 'es_alter_subscription',
                           'es_drop_subscription', 'es_execute', 'es_projection_wait',
                           'es_subscription_wait_acked')
       ORDER BY p.proname$$,
    $$VALUES ('name text, group_size integer'),
             ('name text, category text DEFAULT NULL::text, event_types text[] DEFAULT NULL::text[], start_position bigint DEFAULT 0, group_size integer DEFAULT 1'),
             ('name text'),
             ('stream_id text, command jsonb, expected_version bigint DEFAULT NULL::bigint, command_id uuid DEFAULT NULL::uuid'),
             ('name text, "position" bigint, timeout_ms integer DEFAULT 10000'),
             ('name text, "position" bigint, member integer DEFAULT 0'),
             ('name text, max_count integer DEFAULT 100, member integer DEFAULT 0'),
             ('name text, "position" bigint, member integer DEFAULT NULL::integer'),
             ('name text, member integer DEFAULT 0, timeout_ms integer DEFAULT 10000'),
             ('name text, "position" bigint, timeout_ms integer DEFAULT 10000')$$,
    'argument names and defaults as in the contract');
SELECT ok(NOT has_function_privilege('regress_app', p.oid, 'EXECUTE'),
          p.oid::regprocedure::text || ': no EXECUTE without a grant')
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND (p.proname LIKE '%subscription%' OR p.proname IN ('es_last_position', 'es_execute', 'es_projection_wait'))
 ORDER BY p.oid::regprocedure::text;

-- ---------------------------------------------------------------------------
-- Tables and view
-- ---------------------------------------------------------------------------
SELECT ok((SELECT extconfig @> ARRAY['public.es_subscription_defs'::regclass::oid,
                                     'public.es_subscription_members'::regclass::oid]
             FROM pg_extension WHERE extname = 'event_sourcing'),
          'es_subscription_defs and es_subscription_members are registered with pg_extension_config_dump');
SELECT ok(NOT has_table_privilege('regress_app', t, 'SELECT'), t || ': no SELECT for a role without grants')
  FROM unnest(ARRAY['public.es_subscription_defs', 'public.es_subscription_members', 'public.es_subscriptions']) t;
SELECT ok(NOT (SELECT extconfig @> ARRAY['public.es_subscriptions'::regclass::oid]
                 FROM pg_extension WHERE extname = 'event_sourcing'),
          'the es_subscriptions view is not a configuration table');

-- ---------------------------------------------------------------------------
-- Invariants: a group partitions the streams, whatever its size
-- ---------------------------------------------------------------------------
SELECT es_append('grp-' || i, 0, 'E', '{}') FROM generate_series(1, 200) i;
SELECT is((SELECT count(*)::int FROM generate_series(1, 200) i, generate_series(1, 8) g
            WHERE es_subscription_member('grp-' || i, g) NOT BETWEEN 0 AND g - 1),
          0, 'every stream maps to a member of the group');
SELECT is((SELECT count(DISTINCT es_subscription_member('grp-' || i, 4))::int FROM generate_series(1, 200) i),
          4, '200 streams spread over all 4 members');
SELECT es_define_subscription('grp', 'grp', group_size => 4);
SELECT is((SELECT count(*)::int FROM generate_series(0, 3) m, es_subscription_read('grp', 1000, m)),
          200, 'the members of a group together read every event once');
SELECT is((SELECT count(*)::int FROM generate_series(0, 3) m, es_subscription_read('grp', 1000, m)
            WHERE es_subscription_member(stream_id, 4) <> m),
          0, 'each member reads only its own streams');
SELECT is((SELECT count(*)::int FROM es_subscriptions WHERE name = 'grp'), 4, 'the view has a row per member');

SELECT * FROM finish();
ROLLBACK;
