-- 03_immutability.sql: stored events never change (CONTRACT.md, "Events are
-- immutable"): UPDATE, DELETE and TRUNCATE are refused with 55000 for every
-- role, the owner (a superuser here) included, whatever the statement matches
-- and whatever session_replication_role says; roles without table privileges
-- get 42501 first.
BEGIN;
SELECT plan(51);

CREATE EXTENSION event_sourcing;
CREATE ROLE regress_app NOLOGIN;
CREATE ROLE regress_writer NOLOGIN;

SELECT ok((SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
          'these checks run as a superuser (owner of es_events)');
SELECT is((SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.es_events'::regclass),
          current_user::text, 'the current user owns es_events');

-- ---------------------------------------------------------------------------
-- An empty store: refused even though nothing would change
-- ---------------------------------------------------------------------------
SELECT throws_ok($$TRUNCATE public.es_events$$, '55000', NULL,
                 'owner: TRUNCATE of an empty es_events raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events$$, '55000', NULL,
                 'owner: DELETE on an empty es_events raises 55000');
SELECT throws_ok($$UPDATE public.es_events SET data = '{}'$$, '55000', NULL,
                 'owner: UPDATE on an empty es_events raises 55000');

-- ---------------------------------------------------------------------------
-- A populated store
-- ---------------------------------------------------------------------------
SELECT is(public.es_append('acct-1', 0, 'Opened', '{"owner": "ann"}'), 1::bigint, 'append acct-1 v1');
SELECT is(public.es_append('acct-1', 1, '[{"type": "Deposited", "data": {"amount": 10}},
                                         {"type": "Deposited", "data": {"amount": 20}, "metadata": {"src": "atm"}}]'::jsonb),
          3::bigint, 'append acct-1 v2..v3 as a batch');
SELECT is(public.es_append('acct-2', 0, 'Opened', '{"owner": "bob"}'), 1::bigint, 'append acct-2 v1');

CREATE TEMP TABLE before_rows AS SELECT * FROM public.es_events;
SELECT is((SELECT count(*) FROM before_rows), 4::bigint, 'four events stored');

-- plain statements, matching all, some or no rows
SELECT throws_ok($$UPDATE public.es_events SET data = '{"amount": 1000}'$$, '55000',
                 'events are immutable: UPDATE of "es_events" is not allowed',
                 'owner: UPDATE of every row raises 55000 with the documented message');
SELECT throws_ok($$UPDATE public.es_events SET data = '{"amount": 1000}' WHERE stream_id = 'acct-1' AND stream_version = 2$$,
                 '55000', NULL, 'owner: UPDATE of one row raises 55000');
SELECT throws_ok($$UPDATE public.es_events SET stream_version = stream_version + 10 WHERE stream_id = 'acct-2'$$,
                 '55000', NULL, 'owner: renumbering a stream raises 55000');
SELECT throws_ok($$UPDATE public.es_events SET data = data WHERE false$$,
                 '55000', NULL, 'owner: UPDATE matching no row (WHERE false) raises 55000');
SELECT throws_ok($$UPDATE public.es_events SET data = data WHERE stream_id = 'no-such-stream'$$,
                 '55000', NULL, 'owner: UPDATE of a stream that does not exist raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events$$, '55000',
                 'events are immutable: DELETE of "es_events" is not allowed',
                 'owner: DELETE of every row raises 55000 with the documented message');
SELECT throws_ok($$DELETE FROM public.es_events WHERE stream_id = 'acct-2'$$,
                 '55000', NULL, 'owner: DELETE of one stream raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events WHERE false$$,
                 '55000', NULL, 'owner: DELETE matching no row (WHERE false) raises 55000');
SELECT throws_ok($$TRUNCATE public.es_events$$, '55000',
                 'events are immutable: TRUNCATE of "es_events" is not allowed',
                 'owner: TRUNCATE raises 55000 with the documented message');
SELECT throws_ok($$TRUNCATE ONLY public.es_events$$, '55000', NULL,
                 'owner: TRUNCATE ONLY raises 55000');
SELECT throws_ok($$TRUNCATE public.es_events RESTART IDENTITY CASCADE$$, '55000', NULL,
                 'owner: TRUNCATE RESTART IDENTITY CASCADE raises 55000');

-- other statement forms that update or delete
SELECT throws_ok($$WITH d AS (DELETE FROM public.es_events RETURNING 1) SELECT count(*) FROM d$$,
                 '55000', NULL, 'owner: DELETE in a writable CTE raises 55000');
SELECT throws_ok($$WITH u AS (UPDATE public.es_events SET metadata = '{"x": 1}' RETURNING 1) SELECT count(*) FROM u$$,
                 '55000', NULL, 'owner: UPDATE in a writable CTE raises 55000');
SELECT throws_ok(
    $$INSERT INTO public.es_events
      SELECT global_position, stream_id, stream_version, event_id, event_type,
             '{"amount": 1000}'::jsonb, metadata, recorded_at, schema_version
        FROM public.es_events
      ON CONFLICT (global_position) DO UPDATE SET data = EXCLUDED.data$$,
    '55000', NULL, 'owner: INSERT ... ON CONFLICT DO UPDATE raises 55000');
SELECT throws_ok(
    $$MERGE INTO public.es_events e
      USING (SELECT 'acct-1'::text AS s) src ON e.stream_id = src.s
      WHEN MATCHED THEN UPDATE SET data = '{"amount": 1000}'$$,
    '55000', NULL, 'owner: MERGE ... WHEN MATCHED THEN UPDATE raises 55000');
SELECT throws_ok(
    $$MERGE INTO public.es_events e
      USING (SELECT 'acct-2'::text AS s) src ON e.stream_id = src.s
      WHEN MATCHED THEN DELETE$$,
    '55000', NULL, 'owner: MERGE ... WHEN MATCHED THEN DELETE raises 55000');
CREATE TEMP VIEW events_view AS SELECT * FROM public.es_events;
SELECT throws_ok($$UPDATE events_view SET data = '{}'$$, '55000', NULL,
                 'owner: UPDATE through an auto-updatable view raises 55000');
SELECT throws_ok($$DELETE FROM events_view$$, '55000', NULL,
                 'owner: DELETE through an auto-updatable view raises 55000');

-- ---------------------------------------------------------------------------
-- session_replication_role = replica (and local) does not disable the guard
-- ---------------------------------------------------------------------------
SET LOCAL session_replication_role = replica;
SELECT is(current_setting('session_replication_role'), 'replica', 'session_replication_role is replica');
SELECT throws_ok($$UPDATE public.es_events SET data = '{"amount": 1000}'$$,
                 '55000', NULL, 'replica: UPDATE raises 55000');
SELECT throws_ok($$UPDATE public.es_events SET data = data WHERE false$$,
                 '55000', NULL, 'replica: UPDATE matching no row raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events$$,
                 '55000', NULL, 'replica: DELETE raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events WHERE false$$,
                 '55000', NULL, 'replica: DELETE matching no row raises 55000');
SELECT throws_ok($$TRUNCATE public.es_events$$,
                 '55000', NULL, 'replica: TRUNCATE raises 55000');
SET LOCAL session_replication_role = local;
SELECT throws_ok($$DELETE FROM public.es_events$$,
                 '55000', NULL, 'session_replication_role = local: DELETE raises 55000');
SELECT throws_ok($$TRUNCATE public.es_events$$,
                 '55000', NULL, 'session_replication_role = local: TRUNCATE raises 55000');
SET LOCAL session_replication_role = origin;

-- ---------------------------------------------------------------------------
-- A non-owner granted UPDATE/DELETE/TRUNCATE is refused by the trigger (55000)
-- ---------------------------------------------------------------------------
GRANT SELECT, UPDATE, DELETE, TRUNCATE ON public.es_events TO regress_writer;
SET LOCAL ROLE regress_writer;
SELECT throws_ok($$UPDATE public.es_events SET data = '{}'$$, '55000', NULL,
                 'role with UPDATE privilege: UPDATE raises 55000');
SELECT throws_ok($$DELETE FROM public.es_events WHERE stream_id = 'acct-1'$$, '55000', NULL,
                 'role with DELETE privilege: DELETE raises 55000');
SELECT throws_ok($$TRUNCATE public.es_events$$, '55000', NULL,
                 'role with TRUNCATE privilege: TRUNCATE raises 55000');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- A role with only EXECUTE on the functions cannot write the table directly
-- ---------------------------------------------------------------------------
GRANT EXECUTE ON FUNCTION public.es_append(text, bigint, text, jsonb, jsonb, uuid),
                          public.es_append(text, bigint, jsonb),
                          public.es_load(text, bigint, bigint),
                          public.es_read_all(bigint, integer)
   TO regress_app;
SET LOCAL ROLE regress_app;
SELECT throws_ok(
    $$INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
      VALUES (1000, 'acct-1', 4, '0f0e0d0c-0b0a-4908-8706-050403020100', 'Forged', '{}', '{}', now())$$,
    '42501', 'permission denied for table es_events',
    'EXECUTE-only role: raw INSERT into es_events raises 42501');
SELECT throws_ok(
    $$INSERT INTO public.es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
      SELECT global_position + 1000, stream_id, stream_version + 100, gen_random_uuid(), event_type, data, metadata, recorded_at
        FROM public.es_read_all()$$,
    '42501', 'permission denied for table es_events',
    'EXECUTE-only role: INSERT ... SELECT from es_read_all into es_events raises 42501');
SELECT throws_ok($$UPDATE public.es_events SET data = '{}'$$, '42501', NULL,
                 'EXECUTE-only role: UPDATE raises 42501');
SELECT throws_ok($$DELETE FROM public.es_events$$, '42501', NULL,
                 'EXECUTE-only role: DELETE raises 42501');
SELECT throws_ok($$TRUNCATE public.es_events$$, '42501', NULL,
                 'EXECUTE-only role: TRUNCATE raises 42501');
-- ... while the API works for it
SELECT is(public.es_append('acct-2', 1, 'Closed', '{}'), 2::bigint,
          'EXECUTE-only role: es_append works');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Nothing changed: the stored rows are exactly those from before, plus the
-- one event appended through the API
-- ---------------------------------------------------------------------------
SELECT set_eq(
    $$SELECT * FROM public.es_events WHERE NOT (stream_id = 'acct-2' AND stream_version = 2)$$,
    $$SELECT * FROM before_rows$$,
    'every stored row is unchanged, column for column');
SELECT is((SELECT count(*) FROM public.es_events), 5::bigint,
          'no row was removed or forged: 4 earlier events + 1 appended');
SELECT results_eq(
    $$SELECT stream_id COLLATE "default", stream_version, event_type COLLATE "default", data
        FROM public.es_read_all()$$,
    $$VALUES ('acct-1'::text, 1::bigint, 'Opened'::text, '{"owner": "ann"}'::jsonb),
             ('acct-1', 2, 'Deposited', '{"amount": 10}'),
             ('acct-1', 3, 'Deposited', '{"amount": 20}'),
             ('acct-2', 1, 'Opened',    '{"owner": "bob"}'),
             ('acct-2', 2, 'Closed',    '{}')$$,
    'es_read_all shows the original events in the original order');
SELECT is(public.es_stream_version('acct-1'), 3::bigint, 'acct-1 is still at version 3');
SELECT ok(EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'public.es_events'::regclass AND tgenabled = 'A' AND NOT tgisinternal),
          'the guard trigger is still enabled ALWAYS');

-- The store still works after all the refused statements
SELECT is(public.es_append('acct-1', 3, 'Deposited', '{"amount": 1}'), 4::bigint,
          'es_append continues the stream after the refused statements');
SELECT results_eq($$SELECT stream_version FROM public.es_load('acct-1')$$,
                  $$VALUES (1::bigint), (2), (3), (4)$$,
                  'acct-1 versions are 1..4');

SELECT * FROM finish();
ROLLBACK;
