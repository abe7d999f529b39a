-- 06_owners.sql: the privilege model of version 1.2 (CONTRACT.md, "Who runs
-- what"): the shape of the owner and search_path columns, what defining
-- records, and the ownership invariants.
--
-- The extension is created in the default schema (public) inside this
-- transaction; ROLLBACK removes it again, with the roles created here.
BEGIN;
SELECT plan(24);

CREATE EXTENSION event_sourcing;
CREATE ROLE regress_own_a NOLOGIN;
CREATE ROLE regress_own_b NOLOGIN;
CREATE ROLE regress_own_team NOLOGIN;
GRANT regress_own_team TO regress_own_a;
GRANT USAGE, CREATE ON SCHEMA public TO regress_own_a, regress_own_b, regress_own_team;
GRANT EXECUTE ON FUNCTION
    es_define_aggregate(text, regprocedure, jsonb, regprocedure, integer),
    es_define_upcaster(text, integer, regprocedure, text),
    es_define_projection(text, regprocedure, text[], text, regprocedure),
    es_snapshot_save(text, bigint, jsonb), es_append(text, bigint, text, jsonb, jsonb, uuid)
  TO regress_own_a, regress_own_b, regress_own_team;

-- shape
SELECT col_type_is('public', 'es_aggregates', 'owner', 'regrole', 'es_aggregates.owner is a regrole');
SELECT col_not_null('public', 'es_aggregates', 'owner', 'es_aggregates.owner is NOT NULL');
SELECT col_type_is('public', 'es_aggregates', 'search_path', 'text', 'es_aggregates.search_path is text');
SELECT col_not_null('public', 'es_aggregates', 'search_path', 'es_aggregates.search_path is NOT NULL');
SELECT col_type_is('public', 'es_upcasters', 'owner', 'regrole', 'es_upcasters.owner is a regrole');
SELECT col_not_null('public', 'es_upcasters', 'owner', 'es_upcasters.owner is NOT NULL');
SELECT col_not_null('public', 'es_upcasters', 'search_path', 'es_upcasters.search_path is NOT NULL');
SELECT col_not_null('public', 'es_projection_defs', 'search_path', 'es_projection_defs.search_path is NOT NULL');
SELECT col_type_is('public', 'es_snapshots', 'owner', 'regrole', 'es_snapshots.owner is a regrole');
SELECT col_is_null('public', 'es_snapshots', 'owner', 'es_snapshots.owner may be NULL (saved before 1.2)');

-- nothing on the tables for PUBLIC or the defining roles: only the functions write them
SELECT is(has_table_privilege('regress_own_a', 'es_aggregates', 'UPDATE'), false,
          'a defining role cannot UPDATE es_aggregates (its owner column) directly');
SELECT is(has_table_privilege('regress_own_a', 'es_upcasters', 'UPDATE'), false,
          'a defining role cannot UPDATE es_upcasters directly');
SELECT is(has_table_privilege('regress_own_a', 'es_snapshots', 'INSERT'), false,
          'a defining role cannot INSERT into es_snapshots directly');

-- what defining records: the caller, and its search_path with pg_temp last
CREATE FUNCTION public.own_evolve(s jsonb, e es_events) RETURNS jsonb LANGUAGE sql AS $$ SELECT s $$;
CREATE FUNCTION public.own_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
CREATE FUNCTION public.own_apply(e es_events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SET LOCAL ROLE regress_own_a;
SET LOCAL search_path = pg_temp, "$user", public;
SELECT es_define_aggregate('owned', 'public.own_evolve(jsonb, es_events)');
SELECT es_define_upcaster('Owned', 1, 'public.own_up(jsonb)');
SELECT es_define_projection('owned_p', 'public.own_apply(es_events)');
RESET ROLE;
SET LOCAL search_path = public;
SELECT is((SELECT owner::text || ' / ' || search_path FROM es_aggregates WHERE category = 'owned'),
          'regress_own_a / "$user", public, pg_temp',
          'es_define_aggregate records the caller and its search_path, pg_temp moved last');
SELECT is((SELECT owner::text || ' / ' || search_path FROM es_upcasters WHERE event_type = 'Owned'),
          'regress_own_a / "$user", public, pg_temp',
          'es_define_upcaster records the caller and its search_path');
SELECT is((SELECT owner::text || ' / ' || search_path FROM es_projections WHERE name = 'owned_p'),
          'regress_own_a / "$user", public, pg_temp',
          'es_define_projection records the caller and its search_path');

-- ownership: non-members are refused, members may, the owner stays
SET LOCAL ROLE regress_own_b;
SELECT throws_ok($$SELECT es_define_aggregate('owned', 'public.own_evolve(jsonb, es_events)', '{"x": 1}')$$,
                 '42501', NULL, 'a non-member cannot redefine an aggregate (42501)');
SELECT throws_ok($$SELECT es_define_upcaster('Owned', 2, 'public.own_up(jsonb)')$$,
                 '42501', NULL, 'a non-member cannot extend an upcaster chain (42501)');
RESET ROLE;
SELECT is((SELECT initial_state::text FROM es_aggregates WHERE category = 'owned'), '{}',
          'the refused redefinition changed nothing');
GRANT regress_own_a TO regress_own_b;
SET LOCAL ROLE regress_own_b;
SELECT lives_ok($$SELECT es_define_aggregate('owned', 'public.own_evolve(jsonb, es_events)', '{"x": 1}')$$,
                'a member of the owner may redefine it');
SELECT lives_ok($$SELECT es_define_upcaster('Owned', 2, 'public.own_up(jsonb)')$$,
                'a member of the owner may extend the chain');
RESET ROLE;
SELECT is((SELECT owner::text || ' ' || initial_state::text FROM es_aggregates WHERE category = 'owned'),
          'regress_own_a {"x": 1}', 'redefinition keeps the owner');
SELECT is((SELECT string_agg(owner::text, ',' ORDER BY from_schema) FROM es_upcasters WHERE event_type = 'Owned'),
          'regress_own_a,regress_own_b', 'each step records who registered it');
-- a snapshot of a category without aggregate belongs to who saved it
SELECT es_append('loose-1', 0, 'Noted', '{}');
SET LOCAL ROLE regress_own_team;
SELECT es_snapshot_save('loose-1', 1, '{"v": 1}');
RESET ROLE;
SELECT is((SELECT owner::text FROM es_snapshots WHERE stream_id = 'loose-1'), 'regress_own_team',
          'es_snapshot_save records the saving role');

SELECT * FROM finish();
ROLLBACK;
