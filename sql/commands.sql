--
-- commands: es_execute with an expected version and a command id, and
-- read-your-writes (es_last_position, es_projection_wait).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_sourcing;
RESET client_min_messages;
CREATE SCHEMA cm;
SET search_path = cm, public;
\pset null '(null)'
-- regress.err with positions masked (they depend on earlier files)
CREATE FUNCTION cm.err_n(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regress.err(sql), '([^0-9A-Z])[0-9]+', '\1N', 'g')
$$;

CREATE FUNCTION cm.evolve(state jsonb, e es_events) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('balance', (state->>'balance')::numeric + (e.data->>'amount')::numeric)
$$;
CREATE FUNCTION cm.decide(state jsonb, command jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (state->>'balance')::numeric + (command->>'amount')::numeric < 0 THEN
        RAISE EXCEPTION 'insufficient funds' USING ERRCODE = 'P0001';
    END IF;
    RETURN jsonb_build_array(jsonb_build_object('type', 'Moved', 'data', jsonb_build_object('amount', command->'amount')),
                             jsonb_build_object('type', 'Noted', 'data', '{"amount": 0}'::jsonb));
END
$$;
SELECT es_define_aggregate('cmacct', 'cm.evolve(jsonb, es_events)', '{"balance": 0}', 'cm.decide(jsonb, jsonb)');

--
-- es_execute(stream_id, command): as in 1.x
--
SELECT es_execute('cmacct-1', '{"amount": 10}');

--
-- expected_version: If-Match
--
SELECT es_execute('cmacct-1', '{"amount": 5}', 2);
SELECT regress.err($$SELECT es_execute('cmacct-1', '{"amount": 5}', 2)$$);
SELECT regress.err($$SELECT es_execute('cmacct-2', '{"amount": 5}', -1)$$);
SELECT regress.err($$SELECT es_execute('cmacct-1', '{"amount": 5}', 0)$$);
SELECT regress.err($$SELECT es_execute('cmacct-1', '{"amount": 5}', -2)$$);
SELECT es_execute('cmacct-2', '{"amount": 1}', 0);
SELECT es_execute('cmacct-2', '{"amount": 1}', -1);
-- the actual version on a conflict, without reading DETAIL
SELECT es_stream_version('cmacct-1');

--
-- command_id: a resent command is an idempotent replay
--
SELECT es_execute('cmacct-3', '{"amount": 100}', command_id => '0193a2c4-7e1a-7000-8000-0000000c0001');
SELECT stream_version, event_type, event_id FROM es_load('cmacct-3');
-- the ids: UUID version 3 of "0", "1", ... in the command id's namespace
SELECT event_id = (SELECT (overlay(overlay(md5(decode('0193a2c47e1a700080000000000c0001', 'hex') || convert_to((stream_version - 1)::text, 'UTF8'))
                                           placing '3' from 13 for 1)
                                   placing to_hex((('x' || substr(md5(decode('0193a2c47e1a700080000000000c0001', 'hex') || convert_to((stream_version - 1)::text, 'UTF8')), 17, 1))::bit(4)::int & 3) | 8)
                                   from 17 for 1))::uuid) AS as_specified
  FROM es_load('cmacct-3');
-- resent after a lost reply: the stored version, nothing appended, even
-- though the state changed since (another command), and even where the
-- decision would now be different
SELECT es_execute('cmacct-3', '{"amount": -100}');
SELECT es_execute('cmacct-3', '{"amount": 100}', command_id => '0193a2c4-7e1a-7000-8000-0000000c0001');
SELECT count(*) FROM es_load('cmacct-3');
-- with the expected version it was sent with: still the replay, not 40001
SELECT es_execute('cmacct-3', '{"amount": 100}', 0, '0193a2c4-7e1a-7000-8000-0000000c0001');
-- the same command id on another stream
SELECT regress.err($$SELECT es_execute('cmacct-4', '{"amount": 1}', command_id => '0193a2c4-7e1a-7000-8000-0000000c0001')$$);
-- a refused command stores nothing; resending it decides again
SELECT regress.err($$SELECT es_execute('cmacct-3', '{"amount": -500}', command_id => '0193a2c4-7e1a-7000-8000-0000000c0002')$$);
SELECT es_execute('cmacct-3', '{"amount": 50}', command_id => '0193a2c4-7e1a-7000-8000-0000000c0002');

--
-- es_last_position: this transaction's last event, else this session's
-- last committed one
--
BEGIN;
SELECT es_append('cmpos-1', 0, 'A', '{}');
SELECT es_last_position() = (SELECT global_position FROM es_events WHERE stream_id = 'cmpos-1') AS this_transaction;
COMMIT;
SELECT es_last_position() = (SELECT global_position FROM es_events WHERE stream_id = 'cmpos-1') AS last_committed;
BEGIN;
SELECT es_append('cmpos-2', 0, 'A', '{}');
ROLLBACK;
SELECT es_last_position() = (SELECT global_position FROM es_events WHERE stream_id = 'cmpos-1') AS rolled_back_one_ignored;

--
-- es_projection_wait
--
CREATE TABLE cm.seen (n int);
INSERT INTO cm.seen VALUES (0);
CREATE FUNCTION cm.count(e es_events) RETURNS void LANGUAGE sql AS $$ UPDATE cm.seen SET n = n + 1 $$;
CREATE FUNCTION cm.refuse(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refusing %', e.event_type; END $$;
SELECT es_define_projection('cm_inline', 'cm.count(es_events)', ARRAY['CmWaited']);
SELECT es_define_projection('cm_async', 'cm.count(es_events)', ARRAY['CmWaited'], 'async');
SELECT es_projection_run('cm_async', 1000000) >= 0 AS ran;
SELECT es_append('cmwait-1', 0, 'CmWaited', '{}');
-- an inline projection has applied it once it committed
SELECT es_projection_wait('cm_inline', es_last_position(), 0);
-- an async one after its next run
SELECT es_projection_wait('cm_async', es_last_position(), 0);
SELECT es_projection_run('cm_async', 1000000);
SELECT es_projection_wait('cm_async', es_last_position(), 0);
-- errors
SELECT regress.err($$SELECT es_projection_wait('cm_nothing', 1, 0)$$);
SELECT regress.err($$SELECT es_projection_wait('cm_async', NULL, 0)$$);
SELECT regress.err($$SELECT es_projection_wait('cm_async', 1, -1)$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress.err($$SELECT es_projection_wait('cm_async', 1, 0)$$);
ROLLBACK;
-- a projection that failed before the position: waiting would not help
SET client_min_messages = error;
SELECT es_define_projection('cm_failing', 'cm.refuse(es_events)', ARRAY['CmWaited'], 'async');
SELECT es_projection_run('cm_failing', 1000000) >= 0 AS ran;
RESET client_min_messages;
SELECT cm.err_n($$SELECT es_projection_wait('cm_failing', es_last_position(), 0)$$);

SELECT es_drop_projection('cm_inline'), es_drop_projection('cm_async'), es_drop_projection('cm_failing');
SET client_min_messages = warning;
DROP SCHEMA cm CASCADE;
RESET client_min_messages;
