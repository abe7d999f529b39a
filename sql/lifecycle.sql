--
-- lifecycle: deleting streams, truncating, redacting, retention, the
-- erasure audit (src/lifecycle.c, src/retention.c); reserved '$' types.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_sourcing;
RESET client_min_messages;
CREATE SCHEMA lc;
SET search_path = lc, public;
\pset null '(null)'

-- regress.err with the deletion time masked (it is the time of the run)
CREATE FUNCTION lc.err(sql text) RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(regress.err(sql), 'deleted at [^;]*;', 'deleted at <time>;')
$$;

-- an inline projection that records every system event it is given
CREATE TABLE lc.seen (stream_id text, version bigint, type text, data jsonb);
CREATE FUNCTION lc.record(e es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO lc.seen VALUES (e.stream_id, e.stream_version, e.event_type, e.data)
$$;
SELECT es_define_projection('lc_system', 'lc.record(es_events)',
                            ARRAY['$StreamDeleted', '$EventRedacted']);

-- an inline projection counting every event per stream, to be rebuilt
CREATE TABLE lc.counts (stream_id text PRIMARY KEY, n int);
CREATE FUNCTION lc.count(e es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO lc.counts VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = lc.counts.n + 1
$$;
CREATE FUNCTION lc.count_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM lc.counts $$;
SELECT es_define_projection('lc_counts', 'lc.count(es_events)',
                            ARRAY['Placed', 'Paid', 'Shipped', '$StreamDeleted'], reset => 'lc.count_reset()');

--
-- Reserved types: nobody appends, imports or upcasts a '$' type.
--
SELECT lc.err($$SELECT es_append('lcord-9', NULL, '$StreamDeleted', '{}')$$);
SELECT lc.err($$SELECT es_append('lcord-9', NULL, '[{"type": "ok", "data": {}}, {"type": "$x", "data": {}}]')$$);
CREATE FUNCTION lc.up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
SELECT lc.err($$SELECT es_define_upcaster('$EventRedacted', 1, 'lc.up(jsonb)')$$);
SELECT lc.err($$SELECT es_define_upcaster('LcThing', 1, 'lc.up(jsonb)', '$Other')$$);
CREATE TABLE lc.src AS
    SELECT 'lcord-9'::text AS stream_id, 1::bigint AS stream_version,
           '$StreamDeleted'::text AS event_type, '{}'::jsonb AS data;
SELECT lc.err($$SELECT es_import('lc.src')$$);
SELECT es_stream_version('lcord-9');

--
-- es_delete_stream
--
SELECT es_append('lcord-1', 0, '[{"type": "Placed", "data": {"n": 1}, "id": "00000000-0000-7000-8000-00000000c001"},
                                 {"type": "Paid", "data": {"n": 2}},
                                 {"type": "Shipped", "data": {"n": 3}}]');
SELECT es_snapshot_save('lcord-1', 2, '{"paid": true}');
-- the expected version is checked as for es_append
SELECT lc.err($$SELECT es_delete_stream('lcord-1', 2)$$);
SELECT lc.err($$SELECT es_delete_stream('lcord-1', -2)$$);
SELECT lc.err($$SELECT es_delete_stream(NULL)$$);
SELECT lc.err($$SELECT es_delete_stream('')$$);
-- a rolled-back deletion leaves everything
BEGIN;
SELECT es_delete_stream('lcord-1');
ROLLBACK;
SELECT stream_version, event_type FROM es_load('lcord-1');
SELECT count(*) AS snapshots FROM es_snapshots WHERE stream_id = 'lcord-1';
SELECT es_delete_stream('lcord-1', 3, 'customer asked (ticket 17)');
-- the tombstone is the only event, at version n+1, in the global log too
SELECT stream_version, event_type, data, metadata FROM es_load('lcord-1');
SELECT es_stream_version('lcord-1');
SELECT stream_version, event_type FROM es_read_category('lcord');
SELECT count(*) AS snapshots FROM es_snapshots WHERE stream_id = 'lcord-1';
-- the inline projection saw it, in the deleting transaction
SELECT * FROM lc.seen;
-- nothing more goes in: appends (also an idempotent retry of a stored id),
-- a second deletion, truncation, redaction
SELECT lc.err($$SELECT es_append('lcord-1', NULL, 'Placed', '{}')$$);
SELECT lc.err($$SELECT es_append('lcord-1', 0, 'Placed', '{"n": 1}', '{}', '00000000-0000-7000-8000-00000000c001')$$);
SELECT lc.err($$SELECT es_delete_stream('lcord-1')$$);
SELECT lc.err($$SELECT es_truncate_stream('lcord-1', 2)$$);
SELECT lc.err($$SELECT es_redact_event(event_id) FROM es_load('lcord-1')$$);
CREATE TABLE lc.more AS
    SELECT 'lcord-1'::text AS stream_id, 5::bigint AS stream_version, 'Placed'::text AS event_type,
           '{}'::jsonb AS data;
SELECT lc.err($$SELECT es_import('lc.more')$$);
-- the removed id is free again, elsewhere
SELECT es_append('lcord-2', 0, 'Placed', '{}', '{}', '00000000-0000-7000-8000-00000000c001');
-- a stream that never existed: its tombstone is version 1
SELECT lc.err($$SELECT es_delete_stream('lcord-3', -1)$$);
SELECT es_delete_stream('lcord-3', 0);
SELECT stream_version, event_type, data FROM es_load('lcord-3');
-- a rebuild replays the log without the removed events
SELECT * FROM lc.counts WHERE stream_id LIKE 'lcord-%' ORDER BY 1;
SELECT es_projection_rebuild('lc_counts') > 0 AS rebuilt;
SELECT * FROM lc.counts WHERE stream_id LIKE 'lcord-%' ORDER BY 1;
SELECT es_drop_projection('lc_counts');
-- the immutability of es_events is untouched
SELECT lc.err($$DELETE FROM es_events WHERE stream_id = 'lcord-2'$$);
SELECT lc.err($$UPDATE es_events SET data = '{}' WHERE stream_id = 'lcord-2'$$);

--
-- An aggregate over deleted, truncated and redacted streams.
--
CREATE FUNCTION lc.acct_evolve(state jsonb, e es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('balance', (state->>'balance')::numeric
                                         + coalesce((e.data->>'amount')::numeric, 0),
                              'n', (state->>'n')::int + 1)
$$;
CREATE FUNCTION lc.acct_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT '[{"type": "Deposited", "data": {"amount": 1}}]'::jsonb $$;
SELECT es_define_aggregate('lcacct', 'lc.acct_evolve(jsonb, es_events)',
                           '{"balance": 0, "n": 0}', 'lc.acct_decide(jsonb, jsonb)', 2);
SELECT es_append('lcacct-1', 0, '[{"type": "Deposited", "data": {"amount": 10}},
                                  {"type": "Deposited", "data": {"amount": 5}}]');
SELECT * FROM es_aggregate('lcacct-1');
SELECT es_delete_stream('lcacct-1');
SELECT lc.err($$SELECT * FROM es_aggregate('lcacct-1')$$);
SELECT lc.err($$SELECT es_execute('lcacct-1', '{}')$$);

--
-- es_truncate_stream
--
SELECT es_append('lcnote-1', 0, '[{"type": "N", "data": {"i": 1}}, {"type": "N", "data": {"i": 2}},
                                  {"type": "N", "data": {"i": 3}}, {"type": "N", "data": {"i": 4}},
                                  {"type": "N", "data": {"i": 5}}]');
SELECT lc.err($$SELECT es_truncate_stream('lcnote-1', 0)$$);
SELECT lc.err($$SELECT es_truncate_stream('lcnote-1', NULL)$$);
SELECT lc.err($$SELECT es_truncate_stream('lcnote-1', 7)$$);
SELECT es_truncate_stream('lcnote-1', 1);
SELECT es_truncate_stream('lcnote-1', 3, 'older notes not needed');
SELECT stream_version, data FROM es_load('lcnote-1');
SELECT es_stream_version('lcnote-1');
-- appends go on after the head
SELECT es_append('lcnote-1', 5, 'N', '{"i": 6}');
-- the newest event always stays
SELECT es_truncate_stream('lcnote-1', 6);
SELECT stream_version, data FROM es_load('lcnote-1');
SELECT es_truncate_stream('lcnote-1', 6);

-- a category with an aggregate: only as far as a usable snapshot reaches
SELECT es_append('lcacct-2', 0, '[{"type": "Deposited", "data": {"amount": 1}},
                                  {"type": "Deposited", "data": {"amount": 2}},
                                  {"type": "Deposited", "data": {"amount": 3}},
                                  {"type": "Deposited", "data": {"amount": 4}},
                                  {"type": "Deposited", "data": {"amount": 5}}]');
SELECT lc.err($$SELECT es_truncate_stream('lcacct-2', 3)$$);
SELECT * FROM es_aggregate('lcacct-2');   -- folds 5 events: stores a snapshot at 5
SELECT es_append('lcacct-2', 5, 'Deposited', '{"amount": 100}');
SELECT lc.err($$SELECT es_truncate_stream('lcacct-2', 7)$$);
SELECT es_truncate_stream('lcacct-2', 6);
SELECT stream_version FROM es_load('lcacct-2');
SELECT * FROM es_aggregate('lcacct-2');   -- from the snapshot, on through version 6
-- a fold that needs what was removed fails, never silently
SELECT lc.err($$SELECT * FROM es_aggregate('lcacct-2', 3)$$);
-- so does one whose snapshots an aggregate redefinition made unusable
SELECT es_define_aggregate('lcacct', 'lc.acct_evolve(jsonb, es_events)',
                           '{"balance": 0, "n": 0}', 'lc.acct_decide(jsonb, jsonb)', 2);
SELECT lc.err($$SELECT * FROM es_aggregate('lcacct-2')$$);
SELECT lc.err($$SELECT es_execute('lcacct-2', '{}')$$);
-- es_aggregate_at and es_stream_version(as_of) over the removed prefix
SELECT es_stream_version('lcacct-2', now() - interval '1 hour');
SELECT es_stream_version('lcacct-2', now());

--
-- es_redact_event
--
SELECT es_append('lcuser-1', 0, 'Registered',
                 '{"name": "Ann", "email": "ann@example.org", "address": {"city": "Oslo", "street": "Main 1"}}',
                 '{"ip": "192.0.2.1", "source": "web"}', '00000000-0000-7000-8000-00000000c101');
SELECT es_append('lcuser-1', 1, 'Renamed', '{"name": "Anne"}', '{}', '00000000-0000-7000-8000-00000000c102');
SELECT lc.err($$SELECT es_redact_event(NULL)$$);
SELECT lc.err($$SELECT es_redact_event('00000000-0000-7000-8000-0000000000ff')$$);
SELECT lc.err($$SELECT es_redact_event('00000000-0000-7000-8000-00000000c101', '{}')$$);
SELECT lc.err($$SELECT es_redact_event('00000000-0000-7000-8000-00000000c101', ARRAY['email', NULL])$$);
SELECT lc.err($$SELECT es_redact_event('00000000-0000-7000-8000-00000000c101', ARRAY['address..street'])$$);
SELECT lc.err($$SELECT es_redact_event('00000000-0000-7000-8000-00000000c101', '{{email}}')$$);
SELECT es_redact_event('00000000-0000-7000-8000-00000000c101',
                       ARRAY['email', 'data.address.street', 'metadata.ip', 'no.such.path'],
                       'erasure request 42');
SELECT stream_version, event_type, data, metadata FROM es_load('lcuser-1');
-- the row itself changed, not only what reads return
SELECT data, metadata FROM es_events WHERE event_id = '00000000-0000-7000-8000-00000000c101';
-- all of data, and all of metadata
SELECT es_redact_event('00000000-0000-7000-8000-00000000c102', ARRAY['data', 'metadata']);
SELECT es_redact_event('00000000-0000-7000-8000-00000000c101');
SELECT stream_version, event_type, data, metadata FROM es_load('lcuser-1', 1, 2);
SELECT stream_id, version, type, data->'paths' AS paths FROM lc.seen WHERE stream_id = 'lcuser-1';

-- snapshots at or after the redacted event go; the fold sees the erased data
SELECT es_append('lcacct-3', 0, '[{"type": "Deposited", "data": {"amount": 10}, "id": "00000000-0000-7000-8000-00000000c201"},
                                  {"type": "Deposited", "data": {"amount": 20}, "id": "00000000-0000-7000-8000-00000000c202"},
                                  {"type": "Deposited", "data": {"amount": 30}}]');
SELECT * FROM es_aggregate('lcacct-3');
SELECT version FROM es_snapshots WHERE stream_id = 'lcacct-3' ORDER BY version;
CREATE TABLE lc.other_snapshots AS
    SELECT count(*) AS n FROM es_snapshots WHERE stream_id <> 'lcacct-3';
SELECT es_redact_event('00000000-0000-7000-8000-00000000c202', ARRAY['amount']);
SELECT version FROM es_snapshots WHERE stream_id = 'lcacct-3' ORDER BY version;
-- other streams' snapshots stay
SELECT count(*) = (SELECT n FROM lc.other_snapshots) AS others_kept
  FROM es_snapshots WHERE stream_id <> 'lcacct-3';
-- evolve never sees the $EventRedacted event: n counts the three deposits
SELECT * FROM es_aggregate('lcacct-3');

--
-- Retention.  es_import gives events old timestamps.
--
CREATE TABLE lc.old AS
    SELECT 'lcmetric-' || s AS stream_id, v::bigint AS stream_version, 'Sampled'::text AS event_type,
           jsonb_build_object('v', v) AS data,
           timestamptz '2020-01-01 00:00:00+00' + v * interval '1 hour' AS recorded_at
      FROM generate_series(1, 2) s, generate_series(1, 4) v;
SELECT es_import('lc.old');
SELECT es_append('lcmetric-1', 4, 'Sampled', '{"v": 5}');
SELECT lc.err($$SELECT es_set_retention('lcmetric-x', '1 day')$$);
SELECT lc.err($$SELECT es_set_retention(NULL, '1 day')$$);
SELECT lc.err($$SELECT es_set_retention('lcmetric', '-1 day')$$);
SELECT lc.err($$SELECT es_set_retention('lcmetric', NULL, 0)$$);
SELECT lc.err($$SELECT es_apply_retention(0)$$);
SELECT es_set_retention('lcmetric', '30 days');
SELECT category, max_age, max_count, owner = current_user::regrole AS mine FROM es_retention_policies;
-- at most max_events a call
SELECT es_apply_retention(3);
SELECT es_apply_retention();
SELECT es_apply_retention();
-- lcmetric-1 keeps its new event, lcmetric-2 its head (an old one)
SELECT stream_id, stream_version, data FROM es_read_category('lcmetric') ORDER BY stream_id;
-- max_count per stream
SELECT es_append('lclog-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Line', 'data', jsonb_build_object('i', i)))
                                  FROM generate_series(1, 10) i));
SELECT es_append('lclog-2', 0, '[{"type": "Line", "data": {}}, {"type": "Line", "data": {}}]');
SELECT es_set_retention('lclog', NULL, 3);
SELECT es_apply_retention();
SELECT stream_id, stream_version FROM es_read_category('lclog');
-- a category with an aggregate keeps what its snapshots do not cover
SELECT es_set_retention('lcacct', NULL, 1);
SELECT es_append('lcacct-4', 0, '[{"type": "Deposited", "data": {"amount": 1}},
                                  {"type": "Deposited", "data": {"amount": 2}},
                                  {"type": "Deposited", "data": {"amount": 3}}]');
SELECT es_apply_retention();
SELECT stream_version FROM es_load('lcacct-4');
SELECT * FROM es_aggregate('lcacct-4');      -- stores a snapshot at 3
SELECT es_apply_retention();
SELECT stream_version FROM es_load('lcacct-4');
SELECT * FROM es_aggregate('lcacct-4');
-- removing a policy
SELECT es_set_retention('lcacct');
SELECT es_set_retention('lcnothing');
SELECT category FROM es_retention_policies ORDER BY category;

--
-- The audit: every operation, with role and reason, never the data.
--
SELECT operation, role = current_user AS by_me, stream_id, event_id, category,
       from_version, to_version, event_count, paths, reason
  FROM es_erasures ORDER BY erasure_id;
SELECT lc.err($$UPDATE es_erasures SET reason = 'x'$$);
SELECT lc.err($$DELETE FROM es_erasures$$);
SELECT lc.err($$TRUNCATE es_erasures$$);

--
-- Privileges: nothing granted to PUBLIC; a data_protection role.
--
CREATE ROLE regress_es_app;
CREATE ROLE regress_es_dpo;
GRANT USAGE ON SCHEMA lc, regress TO regress_es_app, regress_es_dpo;
GRANT EXECUTE ON FUNCTION es_append(text, bigint, text, jsonb, jsonb, uuid) TO regress_es_app;
-- (es_set_retention too, for the owner check below)
GRANT EXECUTE ON FUNCTION es_delete_stream(text, bigint, text), es_truncate_stream(text, bigint, text),
    es_redact_event(uuid, text[], text), es_set_retention(text, interval, bigint),
    es_apply_retention(integer) TO regress_es_dpo;
GRANT SELECT ON es_erasures TO regress_es_dpo;
SET ROLE regress_es_app;
SELECT es_append('lcpriv-1', 0, 'A', '{"secret": 1}');
SELECT lc.err($$SELECT es_delete_stream('lcpriv-1')$$);
SELECT lc.err($$SELECT es_truncate_stream('lcpriv-1', 1)$$);
SELECT lc.err($$SELECT es_redact_event(gen_random_uuid())$$);
SELECT lc.err($$SELECT es_set_retention('lcpriv', '1 day')$$);
SELECT lc.err($$SELECT es_apply_retention()$$);
SELECT lc.err($$SELECT count(*) FROM es_erasures$$);
RESET ROLE;
SET ROLE regress_es_dpo;
SELECT es_delete_stream('lcpriv-1', 1, 'by the DPO');
SELECT es_set_retention('lcdpo', '1 year');
SELECT operation, role, session_role = session_user AS by_session, stream_id, reason FROM es_erasures ORDER BY erasure_id DESC LIMIT 1;
RESET ROLE;
-- a policy set by another role is that role's
GRANT EXECUTE ON FUNCTION es_set_retention(text, interval, bigint) TO regress_es_app;
SET ROLE regress_es_app;
SELECT lc.err($$SELECT es_set_retention('lcdpo', NULL, 5)$$);
SELECT lc.err($$SELECT es_set_retention('lcdpo')$$);
RESET ROLE;
SELECT category, max_age, max_count, owner FROM es_retention_policies WHERE category = 'lcdpo';

-- read-only transactions: 25006
BEGIN READ ONLY;
SELECT lc.err($$SELECT es_delete_stream('lcord-2')$$);
SELECT lc.err($$SELECT es_truncate_stream('lcord-2', 1)$$);
SELECT lc.err($$SELECT es_redact_event('00000000-0000-7000-8000-00000000c001')$$);
SELECT lc.err($$SELECT es_set_retention('lcord', '1 day')$$);
SELECT lc.err($$SELECT es_apply_retention()$$);
ROLLBACK;

-- examples/gdpr.sql runs as the README says (in a transaction it rolls back)
-- (terse: the deletion time in the DETAIL of its one error is the run's)
SET search_path = public;
\set VERBOSITY terse
\i examples/gdpr.sql
\set VERBOSITY default
SET search_path = lc, public;

SELECT es_drop_projection('lc_system');
SELECT es_set_retention('lclog');
SELECT es_set_retention('lcmetric');
SELECT es_set_retention('lcdpo');
SET client_min_messages = warning;
DROP SCHEMA lc CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_es_app;
DROP OWNED BY regress_es_dpo;
DROP ROLE regress_es_app;
DROP ROLE regress_es_dpo;
