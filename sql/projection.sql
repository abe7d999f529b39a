--
-- projection: es_define_projection, es_drop_projection, es_projection_run,
-- es_projection_skip, es_projection_rebuild, the es_projections view and
-- es_dead_letters: inline dispatch from es_append, async runs from a
-- checkpoint, poison events, rebuilds, upcasting, and the role handlers run
-- as (the projection's owner, whoever appends or drives).
--
-- Global positions appear in messages (WARNING, CONTEXT).  So that they do
-- not depend on how many events the earlier files appended, the log goes on
-- from a fixed position: a gap, like the positions of rolled-back appends.
SELECT setval('es_events_global_position_seq', 100000) AS start;

-- pj_log: what every handler (and reset) below was called with, in call order
CREATE TABLE pj_log (
    seq        serial PRIMARY KEY,
    projection text NOT NULL,
    pos        bigint,
    stream_id  text,
    version    bigint,
    event_type text,
    data       jsonb,
    who        text
);
CREATE FUNCTION pj_note(p text, e es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pj_log (projection, pos, stream_id, version, event_type, data, who)
    VALUES (p, e.global_position, e.stream_id, e.stream_version, e.event_type, e.data, current_user)
$$;
-- regress.log(): the log, without who (role names of the superuser vary)
CREATE FUNCTION regress.log()
RETURNS TABLE(projection text, pos bigint, stream_id text, version bigint, event_type text, data jsonb)
LANGUAGE sql AS $$
    SELECT projection, pos, stream_id, version, event_type, data FROM pj_log ORDER BY seq
$$;
-- regress.projections: es_projections without the timestamps; the owner
-- shown as "me" when it is the (superuser) role running this file
CREATE VIEW regress.projections AS
    SELECT name, mode, event_types, position, lag, status, last_error, failed_position,
           handler, reset,
           CASE WHEN owner::text = current_user THEN 'me' ELSE owner::text END AS owner,
           defined_at <= updated_at AS times_ok
      FROM es_projections;

-- The orders read model: one row per stream, from PjOrdered (amount) and
-- PjCancelled events; a PjOrdered with "fail" in its data fails the handler.
CREATE TABLE pj_orders (
    stream_id text PRIMARY KEY,
    total     numeric NOT NULL,
    n         int NOT NULL,
    cancelled boolean NOT NULL DEFAULT false,
    last_pos  bigint NOT NULL
);
CREATE FUNCTION pj_orders_apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pj_note('pj_orders', e);
    IF e.data ? 'fail' THEN
        RAISE EXCEPTION 'order handler refused %/%', e.stream_id, e.stream_version
            USING ERRCODE = 'PJ001', DETAIL = 'a detail from the handler';
    END IF;
    IF e.event_type = 'PjOrdered' THEN
        INSERT INTO pj_orders (stream_id, total, n, last_pos)
        VALUES (e.stream_id, (e.data->>'amount')::numeric, 1, e.global_position)
        ON CONFLICT (stream_id) DO UPDATE
           SET total = pj_orders.total + EXCLUDED.total, n = pj_orders.n + 1,
               last_pos = EXCLUDED.last_pos;
    ELSE
        UPDATE pj_orders SET cancelled = true, n = n + 1, last_pos = e.global_position
         WHERE stream_id = e.stream_id;
    END IF;
END
$$;
CREATE FUNCTION pj_orders_reset() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pj_log (projection) VALUES ('pj_orders reset');
    DELETE FROM pj_orders;
END
$$;

--
-- es_define_projection: argument checks.  None of the failures defines
-- anything.
--
-- wrong handler signatures: handler(es_events) RETURNS void
CREATE FUNCTION pj_bad_jsonb(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pj_bad_ret(e es_events) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION pj_bad_two(e es_events, x int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pj_bad_none() RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pj_bad_srf(e es_events) RETURNS SETOF void LANGUAGE sql AS $$ SELECT $$;
CREATE PROCEDURE pj_bad_proc(e es_events) LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pj_bad_reset_arg(x int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pj_bad_reset_ret() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_bad_jsonb(jsonb)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_bad_ret(es_events)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_bad_two(es_events, int)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_bad_none()')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_bad_srf(es_events)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_bad_proc(es_events)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_reset()')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 0)$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'no_such_handler(es_events)')$$);
-- wrong reset signatures: reset() RETURNS void
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, 'inline', 'pj_bad_reset_arg(int)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, 'inline', 'pj_bad_reset_ret()')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, 'inline', 'pj_orders_apply(es_events)')$$);
-- 22004: NULL name, handler, mode
SELECT regress.err($$SELECT es_define_projection(NULL, 'pj_orders_apply(es_events)')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', NULL)$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, NULL)$$);
-- 22023: empty or over-long name (255 bytes is the limit)
SELECT regress.err($$SELECT es_define_projection('', 'pj_orders_apply(es_events)')$$);
SELECT regress.err($$SELECT es_define_projection(repeat('p', 256), 'pj_orders_apply(es_events)')$$);
SELECT regress.err($$SELECT es_define_projection(repeat('é', 128), 'pj_orders_apply(es_events)')$$);
-- 22023: a mode other than inline or async (case matters)
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, 'sync')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, 'Inline')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', NULL, '')$$);
-- event_types: empty (22023), a NULL element (22004), two dimensions
-- (22023), an empty or over-long element (22023)
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', '{}')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', ARRAY['A', NULL])$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', '{{A},{B}}')$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', ARRAY['A', ''])$$);
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)', ARRAY[repeat('T', 256)])$$);
-- 25006: in a read-only transaction
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_define_projection('pj_bad', 'pj_orders_apply(es_events)')$$);
ROLLBACK;
SELECT count(*) AS defined FROM es_projections;
-- the longest name is accepted (and dropped again)
SELECT es_define_projection(repeat('p', 255), 'pj_orders_apply(es_events)', '{PjNothing}');
SELECT length(name) FROM es_projections;
SELECT es_drop_projection(repeat('p', 255));

--
-- The es_projections view: its columns
--
SELECT attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute WHERE attrelid = 'es_projections'::regclass AND attnum > 0 ORDER BY attnum;

--
-- Inline projections
--
-- pj_orders: inline (the default mode), PjOrdered and PjCancelled only, with
-- a reset function.  42710 for a second definition of the name.
SELECT es_define_projection('pj_orders', 'pj_orders_apply(es_events)', '{PjOrdered,PjCancelled}',
                            reset => 'pj_orders_reset()');
SELECT regress.err($$SELECT es_define_projection('pj_orders', 'pj_orders_apply(es_events)', NULL, 'async')$$);
SELECT * FROM regress.projections ORDER BY name;
-- the head moves with the appends; an inline projection is always at it
SELECT es_append('pjorder-1', 0, 'PjOrdered', '{"amount": 10}');
SELECT es_append('pjorder-1', 1, 'PjNoted', '{"note": "not for pj_orders"}');
SELECT es_append('pjorder-2', 0, 'PjOrdered', '{"amount": 5}');
SELECT * FROM pj_orders ORDER BY stream_id;
SELECT * FROM regress.log();
SELECT name, position, lag FROM es_projections ORDER BY name;

-- A batch, with two more projections: pj_all (every type) and pj_aaa
-- (PjCancelled).  Events are dispatched in global order, each to the
-- projections that take its type in name order (pj_aaa, pj_all, pj_orders:
-- not the order they were defined in).
CREATE FUNCTION pj_all_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ SELECT pj_note('pj_all', e) $$;
CREATE FUNCTION pj_aaa_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ SELECT pj_note('pj_aaa', e) $$;
SELECT es_define_projection('pj_all', 'pj_all_apply(es_events)');
SELECT es_define_projection('pj_aaa', 'pj_aaa_apply(es_events)', '{PjCancelled}');
TRUNCATE pj_log;
SELECT es_append('pjorder-1', 2, '[{"type": "PjOrdered", "data": {"amount": 1}},
                                   {"type": "PjNoted", "data": {}},
                                   {"type": "PjOrdered", "data": {"amount": 2}},
                                   {"type": "PjCancelled", "data": {}}]');
SELECT * FROM regress.log();
SELECT * FROM pj_orders ORDER BY stream_id;

-- A handler error fails the append: nothing is stored, no read model nor
-- log row stays (pj_all's and pj_aaa's calls for the earlier events of the
-- batch are rolled back too).  The CONTEXT names the projection and event.
TRUNCATE pj_log;
SELECT es_append('pjorder-3', 0, '[{"type": "PjOrdered", "data": {"amount": 7}},
                                   {"type": "PjCancelled", "data": {}},
                                   {"type": "PjOrdered", "data": {"amount": 8, "fail": true}}]');
SELECT es_stream_version('pjorder-3');
SELECT regress.err($$SELECT es_append('pjorder-2', 1, 'PjOrdered', '{"amount": 1, "fail": true}')$$);
SELECT es_stream_version('pjorder-2');
SELECT * FROM pj_orders ORDER BY stream_id;
SELECT count(*) AS log_rows FROM pj_log;
-- an event type pj_orders does not take is not handed to it, so it appends
SELECT es_append('pjorder-2', 1, 'PjNoted', '{"fail": true}');
SELECT * FROM regress.log();

-- Rows inserted into es_events other than by es_append (pg_restore's COPY,
-- or a superuser's INSERT) are not dispatched; session_replication_role
-- does not matter (the trigger is ENABLE ALWAYS, and es_append still
-- dispatches under replica).
TRUNCATE pj_log;
BEGIN;
INSERT INTO es_events VALUES (99990, 'pjorder-9', 1, 'b81bc81b-0000-4e5d-abff-90865d1e13b1',
                              'PjOrdered', '{"amount": 100}', '{}', now(), 1);
COPY es_events FROM stdin;
99991	pjorder-9	2	b81bc81b-0001-4e5d-abff-90865d1e13b1	PjOrdered	{"amount": 200}	{}	2024-01-01 00:00:00+00	1
\.
SET LOCAL session_replication_role = replica;
INSERT INTO es_events VALUES (99992, 'pjorder-9', 3, 'b81bc81b-0002-4e5d-abff-90865d1e13b1',
                              'PjOrdered', '{"amount": 300}', '{}', now(), 1);
SELECT count(*) AS stored FROM es_events WHERE stream_id = 'pjorder-9';
SELECT count(*) AS log_rows FROM pj_log;
SELECT es_append('pjorder-4', 0, 'PjOrdered', '{"amount": 4}');
SELECT * FROM regress.log();
ROLLBACK;

-- A handler may itself append: the nested append is dispatched too
-- (pj_a_echo answers each PjPing with a PjPong in another stream), and the
-- projections after pj_a_echo in name order (pj_all) still get the outer
-- event, after the nested one.
CREATE FUNCTION pj_echo_apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pj_note('pj_a_echo', e);
    PERFORM es_append('pjpong-' || e.stream_id, NULL, 'PjPong', jsonb_build_object('ping', e.stream_version));
END
$$;
SELECT es_define_projection('pj_a_echo', 'pj_echo_apply(es_events)', '{PjPing}');
TRUNCATE pj_log;
SELECT es_append('pjping-1', 0, '[{"type": "PjPing", "data": {}}, {"type": "PjPing", "data": {}}]');
SELECT * FROM regress.log();
SELECT stream_id, stream_version, event_type, data FROM es_events
 WHERE stream_id LIKE 'pjp%' ORDER BY global_position;
SELECT es_drop_projection('pj_a_echo');

SELECT * FROM regress.projections ORDER BY name;

--
-- es_projection_rebuild of an inline projection: reset() is called, every
-- matching event is replayed from the start of the log in global order,
-- and the read model comes out as the appends had built it.
--
CREATE TABLE pj_orders_before AS SELECT * FROM pj_orders;
TRUNCATE pj_log;
SELECT es_projection_rebuild('pj_orders');
SELECT * FROM regress.log();
(SELECT * FROM pj_orders EXCEPT SELECT * FROM pj_orders_before)
UNION ALL
(SELECT * FROM pj_orders_before EXCEPT SELECT * FROM pj_orders);
SELECT count(*) AS orders FROM pj_orders;
-- the rebuild is what makes history count for a projection defined late:
-- pj_late applies to the appends after it, the rebuild adds the ones before
CREATE TABLE pj_late_model (pos bigint PRIMARY KEY, stream_id text, event_type text);
CREATE FUNCTION pj_late_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO pj_late_model VALUES (e.global_position, e.stream_id, e.event_type) $$;
SELECT es_define_projection('pj_late', 'pj_late_apply(es_events)', '{PjCancelled,PjNoted}');
SELECT count(*) AS late_rows FROM pj_late_model;
SELECT es_append('pjorder-2', 2, 'PjCancelled', '{}');
SELECT * FROM pj_late_model ORDER BY pos;
-- no reset function: the rebuild just replays (the row it already has
-- would now be inserted twice: 23505, and the read model is unchanged)
SELECT regress.err($$SELECT es_projection_rebuild('pj_late')$$);
SELECT * FROM pj_late_model ORDER BY pos;
TRUNCATE pj_late_model;
SELECT es_projection_rebuild('pj_late');
SELECT * FROM pj_late_model ORDER BY pos;
-- A handler error fails the whole rebuild: the reset is undone with it,
-- the read model is as it was (the CONTEXT names the projection and event).
-- The event that fails it is a PjOrdered with "fail" that could be stored
-- while pj_orders was dropped; it is then defined again.
SELECT es_drop_projection('pj_orders');
SELECT es_append('pjorder-5', 0, 'PjOrdered', '{"amount": 50, "fail": true}');
SELECT es_define_projection('pj_orders', 'pj_orders_apply(es_events)', '{PjOrdered,PjCancelled}',
                            reset => 'pj_orders_reset()');
DROP TABLE pj_orders_before;
CREATE TABLE pj_orders_before AS SELECT * FROM pj_orders;
TRUNCATE pj_log;
SELECT es_projection_rebuild('pj_orders');
SELECT regress.err($$SELECT es_projection_rebuild('pj_orders')$$);
(SELECT * FROM pj_orders EXCEPT SELECT * FROM pj_orders_before)
UNION ALL
(SELECT * FROM pj_orders_before EXCEPT SELECT * FROM pj_orders);
SELECT count(*) AS orders, (SELECT count(*) FROM pj_log) AS log_rows FROM pj_orders;
-- inline projections are not run nor skipped (42809)
SELECT regress.err($$SELECT es_projection_run('pj_orders')$$);
SELECT regress.err($$SELECT es_projection_skip('pj_orders')$$);

--
-- Async projections: start at position 0 (they catch up with the history),
-- and move only when es_projection_run drives them.
--
CREATE TABLE pj_totals (stream_id text PRIMARY KEY, total numeric NOT NULL, last_pos bigint NOT NULL);
CREATE FUNCTION pj_totals_apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pj_note('pj_totals', e);
    IF e.data ? 'fail' THEN
        RAISE EXCEPTION 'totals handler refused %/%', e.stream_id, e.stream_version;
    END IF;
    INSERT INTO pj_totals VALUES (e.stream_id, (e.data->>'amount')::numeric, e.global_position)
        ON CONFLICT (stream_id) DO UPDATE
       SET total = pj_totals.total + EXCLUDED.total, last_pos = EXCLUDED.last_pos;
END
$$;
CREATE FUNCTION pj_totals_reset() RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pj_log (projection) VALUES ('pj_totals reset');
    DELETE FROM pj_totals;
$$;
-- only the PjAmount events of the streams below
SELECT es_append('pjamount-1', 0, '[{"type": "PjAmount", "data": {"amount": 1}},
                                    {"type": "PjAmount", "data": {"amount": 2}}]');
SELECT es_append('pjamount-2', 0, '[{"type": "PjAmount", "data": {"amount": 3}},
                                    {"type": "PjOther", "data": {}},
                                    {"type": "PjAmount", "data": {"amount": 4}}]');
SELECT es_define_projection('pj_totals', 'pj_totals_apply(es_events)', '{PjAmount}', 'async', 'pj_totals_reset()');
TRUNCATE pj_log;
-- nothing applied on define or on append (the log only has inline pj_all's
-- call); the lag is the whole log
SELECT es_append('pjamount-1', 2, 'PjAmount', '{"amount": 5}');
SELECT * FROM regress.log();
SELECT * FROM regress.projections WHERE name = 'pj_totals';
-- max_events: 22004 when NULL, 22023 when negative, 0 applies nothing
SELECT regress.err($$SELECT es_projection_run('pj_totals', NULL)$$);
SELECT regress.err($$SELECT es_projection_run('pj_totals', -1)$$);
SELECT regress.err($$SELECT es_projection_run(NULL, -1)$$);
SELECT es_projection_run('pj_totals', 0);
SELECT es_projection_run(NULL, 0);
SELECT name, position, lag FROM es_projections WHERE name = 'pj_totals';
-- 42704: no such projection; 22023: an invalid name; 25006: read-only
SELECT regress.err($$SELECT es_projection_run('pj_nothing')$$);
SELECT regress.err($$SELECT es_projection_run('')$$);
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_projection_run('pj_totals')$$);
ROLLBACK;
-- pages of 2 events: the checkpoint stops at the last event applied, then
-- the last (short) page goes to the head; then there is nothing to do
SELECT es_projection_run('pj_totals', 2);
SELECT name, position, lag FROM es_projections WHERE name = 'pj_totals';
SELECT es_projection_run('pj_totals', 2);
SELECT name, position, lag FROM es_projections WHERE name = 'pj_totals';
SELECT es_projection_run('pj_totals', 2);
SELECT name, position, lag, status FROM es_projections WHERE name = 'pj_totals';
SELECT es_projection_run('pj_totals');
SELECT * FROM regress.log();
SELECT * FROM pj_totals ORDER BY stream_id;
-- rolled back: what a run applied goes with the transaction, checkpoint too
BEGIN;
SELECT es_append('pjamount-2', 3, 'PjAmount', '{"amount": 6}');
SELECT es_projection_run('pj_totals');
SELECT * FROM pj_totals ORDER BY stream_id;
ROLLBACK;
SELECT es_append('pjamount-2', 3, 'PjAmount', '{"amount": 7}');
SELECT name, position, lag FROM es_projections WHERE name = 'pj_totals';
SELECT es_projection_run('pj_totals');
SELECT * FROM pj_totals ORDER BY stream_id;
SELECT name, position, lag FROM es_projections WHERE name = 'pj_totals';

--
-- A poison event: the handler fails on it.  The run applies the events
-- before it and keeps them, marks the projection failed (WARNING, not an
-- error) and stops there; other projections go on.
--
-- pj_count: a second async projection, of every type of the pjamount
-- category, to show es_projection_run(NULL) goes on with it
CREATE TABLE pj_count_model (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION pj_count_apply(e es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pj_count_model SELECT e.stream_id, 1 WHERE e.stream_id LIKE 'pjamount-%'
        ON CONFLICT (stream_id) DO UPDATE SET n = pj_count_model.n + 1
$$;
SELECT es_define_projection('pj_count', 'pj_count_apply(es_events)', '{PjAmount,PjOther}', 'async');
SELECT es_projection_run('pj_count');
SELECT * FROM pj_count_model ORDER BY stream_id;
TRUNCATE pj_log;
SELECT es_append('pjamount-3', 0, '[{"type": "PjAmount", "data": {"amount": 10}},
                                    {"type": "PjAmount", "data": {"amount": 20}},
                                    {"type": "PjAmount", "data": {"amount": 30, "fail": "poison"}},
                                    {"type": "PjAmount", "data": {"amount": 40}}]');
SELECT name, position, lag, status FROM es_projections WHERE mode = 'async' ORDER BY name;
-- NULL: every async projection with work, in name order; the total applied
SELECT es_projection_run(NULL);
SELECT * FROM regress.log();
SELECT * FROM pj_totals ORDER BY stream_id;
SELECT * FROM pj_count_model ORDER BY stream_id;
SELECT * FROM regress.projections WHERE mode = 'async' ORDER BY name;
-- the next run retries the event, and fails again; so does the NULL run
TRUNCATE pj_log;
SELECT es_projection_run('pj_totals');
SELECT es_projection_run();
SELECT * FROM regress.log();
-- a failure at the first event of a run applies nothing and keeps the checkpoint
SELECT name, position, status, last_error, failed_position FROM es_projections WHERE name = 'pj_totals';
-- 55000 for a projection that has not failed, 42809 inline, 42704 unknown,
-- 25006 read-only
SELECT regress.err($$SELECT es_projection_skip('pj_count')$$);
SELECT regress.err($$SELECT es_projection_skip('pj_late')$$);
SELECT regress.err($$SELECT es_projection_skip('pj_nothing')$$);
SELECT regress.err($$SELECT es_projection_skip(NULL)$$);
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_projection_skip('pj_totals')$$);
ROLLBACK;
-- es_projection_skip: the event goes to es_dead_letters with the error;
-- the checkpoint moves to it, the status back to running
SELECT es_projection_skip('pj_totals');
SELECT projection, (event).global_position, (event).stream_id, (event).stream_version,
       (event).event_type, (event).data, (event).schema_version, error, position,
       time IS NOT NULL AS has_time
  FROM es_dead_letters ORDER BY projection, position;
-- the dead letter holds the stored event, every column
SELECT d.event = e AS same_event
  FROM es_dead_letters d JOIN es_events e ON e.global_position = d.position;
SELECT * FROM regress.projections WHERE name = 'pj_totals';
-- skipping again: it has not failed any more
SELECT regress.err($$SELECT es_projection_skip('pj_totals')$$);
-- the run goes on after it
TRUNCATE pj_log;
SELECT es_projection_run('pj_totals');
SELECT * FROM regress.log();
SELECT * FROM pj_totals ORDER BY stream_id;
SELECT name, position, lag, status, last_error, failed_position FROM es_projections WHERE name = 'pj_totals';

--
-- es_projection_rebuild of an async projection: reset(), every matching
-- event again, then the checkpoint at the head.  The poison event fails it
-- (an error, not a WARNING) and nothing changes: read model, checkpoint,
-- dead letters.
--
CREATE TABLE pj_totals_before AS SELECT * FROM pj_totals;
SELECT regress.err($$SELECT es_projection_rebuild('pj_totals')$$);
SELECT * FROM regress.projections WHERE name = 'pj_totals';
(SELECT * FROM pj_totals EXCEPT SELECT * FROM pj_totals_before)
UNION ALL
(SELECT * FROM pj_totals_before EXCEPT SELECT * FROM pj_totals);
-- with a handler that lets the poison event through (CREATE OR REPLACE
-- keeps the function's OID), the rebuild replays every PjAmount event, and
-- pjamount-3 now counts the 30 that was skipped before; the dead letter
-- stays
CREATE OR REPLACE FUNCTION pj_totals_apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pj_note('pj_totals', e);
    INSERT INTO pj_totals VALUES (e.stream_id, (e.data->>'amount')::numeric, e.global_position)
        ON CONFLICT (stream_id) DO UPDATE
       SET total = pj_totals.total + EXCLUDED.total, last_pos = EXCLUDED.last_pos;
END
$$;
TRUNCATE pj_log;
SELECT es_projection_rebuild('pj_totals');
SELECT projection, pos, stream_id, version FROM regress.log();
(SELECT * FROM pj_totals EXCEPT SELECT * FROM pj_totals_before)
UNION ALL
(SELECT * FROM pj_totals_before EXCEPT SELECT * FROM pj_totals);
SELECT * FROM regress.projections WHERE name = 'pj_totals';
SELECT es_projection_run('pj_totals');
-- rebuild: 42704 unknown, 22004 NULL, 25006 read-only
SELECT regress.err($$SELECT es_projection_rebuild('pj_nothing')$$);
SELECT regress.err($$SELECT es_projection_rebuild(NULL)$$);
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_projection_rebuild('pj_totals')$$);
ROLLBACK;

--
-- Runs and rebuilds read the log past the index entries of rolled-back
-- appends, here followed by events with some kilobytes of data: every
-- event is applied once, and nothing else.
--
CREATE TABLE pj_big_model (projection text, pos bigint, len int, PRIMARY KEY (projection, pos));
CREATE FUNCTION pj_big_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO pj_big_model VALUES ('pj_big', e.global_position, length(e.data->>'s')) $$;
CREATE FUNCTION pj_big_inline_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO pj_big_model VALUES ('pj_big_inline', e.global_position, length(e.data->>'s')) $$;
CREATE FUNCTION pj_big_reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM pj_big_model WHERE projection = 'pj_big' $$;
CREATE FUNCTION pj_big_inline_reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM pj_big_model WHERE projection = 'pj_big_inline' $$;
SELECT es_define_projection('pj_big', 'pj_big_apply(es_events)', '{PjBig}', 'async', 'pj_big_reset()');
SELECT es_projection_run('pj_big');
BEGIN;
SELECT es_append('pjbig-1', NULL, 'PjBig', '{"s": "rolled back"}');
ROLLBACK;
SELECT es_append('pjbig-2', NULL, 'PjBig', jsonb_build_object('s', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 150) i)))
  FROM generate_series(1, 3);
SELECT es_projection_run('pj_big');
BEGIN;
SELECT es_append('pjbig-1', NULL, 'PjBig', '{"s": "rolled back"}');
ROLLBACK;
SELECT es_append('pjbig-2', NULL, 'PjBig', jsonb_build_object('s', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 150) i)))
  FROM generate_series(1, 3);
SELECT es_projection_rebuild('pj_big');
SELECT es_define_projection('pj_big_inline', 'pj_big_inline_apply(es_events)', '{PjBig}', 'inline', 'pj_big_inline_reset()');
BEGIN;
SELECT es_append('pjbig-1', NULL, 'PjBig', '{"s": "rolled back"}');
ROLLBACK;
SELECT es_append('pjbig-2', NULL, 'PjBig', jsonb_build_object('s', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 150) i)))
  FROM generate_series(1, 3);
SELECT es_projection_rebuild('pj_big_inline');
SELECT es_projection_run('pj_big');
SELECT projection, pos, len FROM pj_big_model ORDER BY projection, pos;
SELECT es_drop_projection('pj_big');
SELECT es_drop_projection('pj_big_inline');

--
-- Upcasting: handlers get events upcast, as es_load returns them, and
-- event_types match the upcast type.  PjTemp events stored in schema 1
-- (celsius) are renamed PjTemperature with kelvin by the upcaster.
--
SELECT es_append('pjtemp-1', 0, 'PjTemp', '{"celsius": 20}');
CREATE FUNCTION pj_temp_1_to_2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_build_object('kelvin', (data->>'celsius')::numeric + 273) $$;
SELECT es_define_upcaster('PjTemp', 1, 'pj_temp_1_to_2(jsonb)', 'PjTemperature');
CREATE FUNCTION pj_temp_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ SELECT pj_note('pj_temp', e) $$;
CREATE FUNCTION pj_temp_old_apply(e es_events) RETURNS void
LANGUAGE sql AS $$ SELECT pj_note('pj_temp_old', e) $$;
SELECT es_define_projection('pj_temp', 'pj_temp_apply(es_events)', '{PjTemperature}');
SELECT es_define_projection('pj_temp_old', 'pj_temp_old_apply(es_events)', '{PjTemp}');
SELECT es_define_projection('pj_temp_async', 'pj_temp_apply(es_events)', '{PjTemperature}', 'async');
TRUNCATE pj_log;
-- inline: an append of the old type is dispatched upcast; one of the new type as is
SELECT es_append('pjtemp-1', 1, 'PjTemp', '{"celsius": 30}');
SELECT es_append('pjtemp-1', 2, 'PjTemperature', '{"kelvin": 1}');
-- rebuild and async run: the history, upcast
SELECT es_projection_rebuild('pj_temp');
SELECT es_projection_rebuild('pj_temp_old');
SELECT es_projection_run('pj_temp_async');
SELECT * FROM regress.log();
-- what the handlers got is what es_load returns; the stored rows are unchanged
SELECT count(*) AS calls, count(*) FILTER (WHERE (l.event_type, l.data) = (r.event_type, r.data)) AS as_es_load
  FROM pj_log l JOIN es_load('pjtemp-1') r ON r.global_position = l.pos;
SELECT stream_version, event_type, data, schema_version FROM es_events
 WHERE stream_id = 'pjtemp-1' ORDER BY stream_version;
-- the dead letter of an upcast event holds it upcast (as es_load returns it)
CREATE FUNCTION pj_temp_refuse(e es_events) RETURNS void
LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refusing %', e.event_type; END $$;
SELECT es_define_projection('pj_temp_dead', 'pj_temp_refuse(es_events)', '{PjTemperature}', 'async');
SELECT es_projection_run('pj_temp_dead');
SELECT es_projection_skip('pj_temp_dead');
SELECT projection, (event).stream_id, (event).stream_version, (event).event_type,
       (event).data, (event).schema_version, error, position
  FROM es_dead_letters WHERE projection = 'pj_temp_dead';
SELECT d.event = r AS as_es_load
  FROM es_dead_letters d JOIN es_load('pjtemp-1') r ON r.global_position = d.position
 WHERE d.projection = 'pj_temp_dead';
SELECT es_drop_projection('pj_temp');
SELECT es_drop_projection('pj_temp_old');
SELECT es_drop_projection('pj_temp_async');

--
-- es_drop_projection: the definition and its dead letters go, the read
-- model stays; then the name is unknown (42704).
--
SELECT projection, count(*) FROM es_dead_letters GROUP BY projection ORDER BY projection;
SELECT es_drop_projection('pj_temp_dead');
SELECT projection, count(*) FROM es_dead_letters GROUP BY projection ORDER BY projection;
SELECT regress.err($$SELECT es_drop_projection('pj_temp_dead')$$);
SELECT regress.err($$SELECT es_projection_run('pj_temp_dead')$$);
SELECT regress.err($$SELECT es_projection_skip('pj_temp_dead')$$);
SELECT regress.err($$SELECT es_projection_rebuild('pj_temp_dead')$$);
SELECT regress.err($$SELECT es_drop_projection(NULL)$$);
SELECT regress.err($$SELECT es_drop_projection('')$$);
BEGIN READ ONLY;
SELECT regress.err($$SELECT es_drop_projection('pj_totals')$$);
ROLLBACK;
SELECT es_drop_projection('pj_totals');
SELECT count(*) AS dead_letters FROM es_dead_letters WHERE projection = 'pj_totals';
SELECT count(*) AS totals_rows FROM pj_totals;
SELECT regress.err($$SELECT es_projection_run('pj_totals')$$);
-- a dropped inline projection is no longer dispatched
SELECT es_drop_projection('pj_aaa');
TRUNCATE pj_log;
SELECT es_append('pjorder-6', 0, 'PjCancelled', '{}');
SELECT * FROM regress.log();
SELECT name, mode FROM es_projections ORDER BY name;

--
-- Roles.  Handlers and reset run as the projection's owner (the role that
-- defined it), whoever appends, runs, rebuilds; only members of the owner
-- role may drop, rebuild or skip it (42501); defining one takes EXECUTE on
-- the handler and reset (42501).
--
CREATE ROLE regress_es_powner;
CREATE ROLE regress_es_pother;
CREATE ROLE regress_es_papp;
GRANT USAGE ON SCHEMA regress TO regress_es_powner, regress_es_pother, regress_es_papp;
GRANT EXECUTE ON FUNCTION es_define_projection(text, regprocedure, text[], text, regprocedure),
                          es_drop_projection(text), es_projection_run(text, integer),
                          es_projection_rebuild(text), es_projection_skip(text),
                          es_append(text, bigint, text, jsonb, jsonb, uuid)
   TO regress_es_powner, regress_es_pother;
GRANT EXECUTE ON FUNCTION es_append(text, bigint, text, jsonb, jsonb, uuid),
                          es_projection_run(text, integer) TO regress_es_papp;
-- the owner's schema, read model, handler and reset; nobody else may use them
CREATE SCHEMA pj_owned AUTHORIZATION regress_es_powner;
SET ROLE regress_es_powner;
CREATE TABLE pj_owned.model (stream_id text, version bigint, who text);
CREATE FUNCTION pj_owned.apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'peek' THEN
        PERFORM count(*) FROM pj_secret;   -- the owner may not read it
    END IF;
    IF e.data ? 'escape' THEN
        RESET ROLE;                        -- back to the session user?
    END IF;
    INSERT INTO pj_owned.model VALUES (e.stream_id, e.stream_version, current_user);
END
$$;
CREATE FUNCTION pj_owned.reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM pj_owned.model $$;
REVOKE EXECUTE ON FUNCTION pj_owned.apply(es_events), pj_owned.reset() FROM PUBLIC;
RESET ROLE;
CREATE TABLE pj_secret (x int);
-- 42501: defining needs EXECUTE on the handler, and on reset
CREATE FUNCTION pj_guarded(e es_events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pj_guarded_reset() RETURNS void LANGUAGE sql AS $$ SELECT $$;
REVOKE EXECUTE ON FUNCTION pj_guarded(es_events), pj_guarded_reset() FROM PUBLIC;
SET ROLE regress_es_powner;
SELECT regress.err($$SELECT es_define_projection('pj_owned', 'pj_guarded(es_events)', '{PjOwned}')$$);
SELECT regress.err($$SELECT es_define_projection('pj_owned', 'pj_owned.apply(es_events)', '{PjOwned}', 'inline', 'pj_guarded_reset()')$$);
RESET ROLE;
SELECT count(*) AS defined FROM es_projections WHERE name = 'pj_owned';
SET ROLE regress_es_powner;
-- with them, the role defines an inline and an async projection
SELECT es_define_projection('pj_owned', 'pj_owned.apply(es_events)', '{PjOwned}', 'inline', 'pj_owned.reset()');
SELECT es_define_projection('pj_owned_async', 'pj_owned.apply(es_events)', '{PjOwnedAsync}', 'async');
RESET ROLE;
SELECT name, owner FROM regress.projections WHERE name LIKE 'pj_owned%' ORDER BY name;
-- regress_es_papp has no privilege on the read model, yet its appends
-- update it: the handler runs as regress_es_powner
SET ROLE regress_es_papp;
SELECT regress.err($$SELECT * FROM pj_owned.model$$);
SELECT es_append('pjowned-1', 0, 'PjOwned', '{}');
SELECT es_append('pjowned-2', 0, 'PjOwnedAsync', '{}');
-- 42501: running it by name needs membership in its owner (checked before
-- the row is locked); es_projection_run(NULL) passes it over
SELECT regress.err($$SELECT es_projection_run('pj_owned_async')$$);
SELECT es_projection_run() AS run_by_app;
RESET ROLE;
SELECT es_projection_run('pj_owned_async');
-- and so do the superuser's: not as the superuser
SELECT es_append('pjowned-1', 1, 'PjOwned', '{}');
SELECT * FROM pj_owned.model ORDER BY stream_id, version;
-- nor with the superuser's privileges: the owner may not read pj_secret
SELECT regress.err($$SELECT es_append('pjowned-1', 2, 'PjOwned', '{"peek": true}')$$);
SELECT es_stream_version('pjowned-1');
-- nor may a handler change role: RESET ROLE would make it the session user
SELECT regress.err($$SELECT es_append('pjowned-1', 2, 'PjOwned', '{"escape": true}')$$);
SELECT es_stream_version('pjowned-1');
GRANT SELECT ON pj_secret TO regress_es_powner;
SELECT es_append('pjowned-1', 2, 'PjOwned', '{"peek": true}');
-- the same for an async run by the superuser
SELECT es_append('pjowned-2', 1, 'PjOwnedAsync', '{"peek": true}');
REVOKE SELECT ON pj_secret FROM regress_es_powner;
SELECT es_projection_run('pj_owned_async');
SELECT name, position, status, last_error, failed_position FROM es_projections WHERE name = 'pj_owned_async';
GRANT SELECT ON pj_secret TO regress_es_powner;
SELECT es_projection_run('pj_owned_async');
SELECT * FROM pj_owned.model ORDER BY stream_id, version;
-- once the owner may no longer execute its handler, dispatch fails (42501)
REVOKE EXECUTE ON FUNCTION pj_owned.apply(es_events) FROM regress_es_powner;
SELECT regress.err($$SELECT es_append('pjowned-1', 3, 'PjOwned', '{}')$$);
GRANT EXECUTE ON FUNCTION pj_owned.apply(es_events) TO regress_es_powner;
SELECT es_append('pjowned-1', 3, 'PjOwned', '{}');
-- 42501: another role may not drop, rebuild or skip it ...
SET ROLE regress_es_pother;
SELECT regress.err($$SELECT es_drop_projection('pj_owned')$$);
SELECT regress.err($$SELECT es_projection_rebuild('pj_owned')$$);
SELECT regress.err($$SELECT es_projection_skip('pj_owned_async')$$);
-- ... nor the superuser's (whose name varies: shown as <superuser>)
SELECT replace(regress.err($$SELECT es_drop_projection('pj_orders')$$), session_user, '<superuser>');
SELECT replace(regress.err($$SELECT es_projection_rebuild('pj_count')$$), session_user, '<superuser>');
SELECT replace(regress.err($$SELECT es_projection_skip('pj_count')$$), session_user, '<superuser>');
RESET ROLE;
SELECT name FROM es_projections WHERE name LIKE 'pj_owned%' ORDER BY name;
-- a member of the owner role may; reset and handler run as the owner
GRANT regress_es_powner TO regress_es_pother;
SET ROLE regress_es_pother;
SELECT es_projection_rebuild('pj_owned');
RESET ROLE;
SELECT * FROM pj_owned.model ORDER BY stream_id, version;
-- the superuser may too
SELECT es_projection_rebuild('pj_owned_async');
SELECT * FROM pj_owned.model ORDER BY stream_id, version;
-- es_projections: SELECT on the view and EXECUTE on _es_projection_head
SET ROLE regress_es_pother;
SELECT regress.err($$SELECT name FROM es_projections$$);
RESET ROLE;
GRANT SELECT ON es_projections TO regress_es_pother;
SET ROLE regress_es_pother;
SELECT regress.err($$SELECT name FROM es_projections$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION _es_projection_head() TO regress_es_pother;
SET ROLE regress_es_pother;
SELECT name, mode, owner FROM es_projections WHERE name LIKE 'pj_owned%' ORDER BY name;
SELECT es_drop_projection('pj_owned');
RESET ROLE;
SELECT es_drop_projection('pj_owned_async');
SELECT name FROM es_projections WHERE name LIKE 'pj_owned%';
-- dropped: the read model stays
SELECT count(*) AS owned_rows FROM pj_owned.model;

--
-- cleanup: the projections, roles, and every function that takes es_events
-- (the extension is dropped by a later file)
--
SELECT es_drop_projection(name) FROM es_projections ORDER BY name;
SELECT count(*) AS projections, (SELECT count(*) FROM es_dead_letters) AS dead_letters FROM es_projections;
DROP VIEW regress.projections;
DROP OWNED BY regress_es_powner, regress_es_pother, regress_es_papp;
DROP ROLE regress_es_powner, regress_es_pother, regress_es_papp;
DROP FUNCTION pj_note(text, es_events), pj_orders_apply(es_events), pj_bad_ret(es_events),
              pj_bad_two(es_events, int), pj_bad_srf(es_events), pj_all_apply(es_events),
              pj_aaa_apply(es_events), pj_echo_apply(es_events), pj_late_apply(es_events),
              pj_totals_apply(es_events), pj_count_apply(es_events), pj_temp_apply(es_events),
              pj_temp_old_apply(es_events), pj_temp_refuse(es_events), pj_guarded(es_events),
              pj_big_apply(es_events), pj_big_inline_apply(es_events);
DROP PROCEDURE pj_bad_proc(es_events);
