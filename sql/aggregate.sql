--
-- aggregate: es_define_aggregate, es_aggregate, es_aggregate_at, es_execute,
-- es_snapshot_save / es_snapshot_load / es_snapshot_prune, and the snapshots
-- a fold reads and writes.  es_fold_count() (events this session passed to
-- evolve functions) is the evidence of how much each fold did.
--

-- Snapshots are bounded by default (the newest 3 per stream); these tests
-- look at every snapshot a fold stores, so they keep them all until the
-- section on event_sourcing.snapshots_to_keep.
SET event_sourcing.snapshots_to_keep = 0;

-- fold(stream, to_version): es_aggregate's row, and how many events it folded
CREATE FUNCTION regress.fold(s text, v bigint DEFAULT NULL)
RETURNS TABLE(version bigint, state jsonb, folded bigint)
LANGUAGE plpgsql AS $$
DECLARE before bigint := es_fold_count();
BEGIN
    SELECT a.version, a.state INTO version, state FROM es_aggregate(s, v) a;
    folded := es_fold_count() - before;
    RETURN NEXT;
END
$$;
-- snaps(stream): the stored snapshots of a stream (no raw fingerprints)
CREATE FUNCTION regress.snaps(s text)
RETURNS TABLE(version bigint, fingerprint_set boolean, state jsonb)
LANGUAGE sql AS $$
    SELECT version, fingerprint <> 0, state FROM es_snapshots
     WHERE stream_id = s ORDER BY version, created_at
$$;
-- incs(n, first): a batch of n "Inc" events carrying i = first..first+n-1
CREATE FUNCTION regress.incs(n int, first int DEFAULT 1) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object('type', 'Inc', 'data', jsonb_build_object('i', i)) ORDER BY i)
      FROM generate_series(first, first + n - 1) i
$$;

--
-- es_define_aggregate
--

-- the bank account example (from the repository root, where pg_regress runs)
\i examples/bank_account.sql
SELECT category, evolve, initial_state, decide, snapshot_every FROM es_aggregates;

-- a counter: n events, sum of their i
CREATE FUNCTION cnt_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT state || jsonb_build_object('n', (state->>'n')::int + 1,
                                       'sum', (state->>'sum')::int + (event.data->>'i')::int)
$$;
SELECT es_define_aggregate('cnt', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}');
-- the defaults: no decide, a snapshot every 100 events
SELECT category, evolve, initial_state, decide, snapshot_every FROM es_aggregates WHERE category = 'cnt';

-- wrong signatures (evolve: (jsonb, es_events) returns jsonb; decide: (jsonb, jsonb) returns jsonb)
CREATE FUNCTION bad_args(state jsonb, event jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION bad_one_arg(state jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION bad_three_args(state jsonb, event es_events, extra int) RETURNS jsonb LANGUAGE sql AS $$ SELECT state $$;
CREATE FUNCTION bad_ret(state jsonb, event es_events) RETURNS json LANGUAGE sql AS $$ SELECT state::json $$;
CREATE FUNCTION bad_srf(state jsonb, event es_events) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT state $$;
CREATE PROCEDURE bad_proc(state jsonb, event es_events) LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION bad_agg_step(acc jsonb, state jsonb, event es_events) RETURNS jsonb LANGUAGE sql AS $$ SELECT acc $$;
CREATE AGGREGATE bad_agg(jsonb, es_events) (SFUNC = bad_agg_step, STYPE = jsonb);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_args(jsonb, jsonb)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_one_arg(jsonb)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_three_args(jsonb, es_events, int)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_ret(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_srf(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_proc(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bad_agg(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 0)$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'no_such_function(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'cnt_evolve(jsonb, es_events)', '{}', 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'cnt_evolve(jsonb, es_events)', '{}', 'bad_args(jsonb, jsonb)'::regprocedure, -1)$$);
SELECT regress.err($$SELECT es_define_aggregate('badsig', 'bank_decide(jsonb, jsonb)')$$);
-- nothing was defined by the failed calls
SELECT count(*) AS badsig_defined FROM es_aggregates WHERE category = 'badsig';

-- 22004: NULL arguments (decide may be NULL: no decide function)
SELECT regress.err($$SELECT es_define_aggregate(NULL, 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('nul', NULL)$$);
SELECT regress.err($$SELECT es_define_aggregate('nul', 'cnt_evolve(jsonb, es_events)', NULL)$$);
SELECT regress.err($$SELECT es_define_aggregate('nul', 'cnt_evolve(jsonb, es_events)', '{}', NULL, NULL)$$);

-- 22023: category empty, too long, containing '-'; snapshot_every negative
SELECT regress.err($$SELECT es_define_aggregate('', 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate(repeat('c', 256), 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate(repeat('é', 128), 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('a-b', 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('-', 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_define_aggregate('cnt', 'cnt_evolve(jsonb, es_events)', '{}', NULL, -1)$$);
-- the longest category is accepted
SELECT regress.err($$SELECT es_define_aggregate(repeat('c', 255), 'cnt_evolve(jsonb, es_events)')$$);
SELECT length(category) FROM es_aggregates WHERE category LIKE 'ccc%';
-- none of the failures touched the definition of 'cnt'
SELECT left(category, 10) AS category, evolve, initial_state, decide, snapshot_every FROM es_aggregates ORDER BY category COLLATE "C";

-- redefinition replaces the old definition
SELECT es_define_aggregate('redef', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}');
SELECT es_append('redef-1', 0, regress.incs(3));
SELECT * FROM regress.fold('redef-1');
SELECT es_define_aggregate('redef', 'bank_evolve(jsonb, es_events)', '{"status": "new"}', 'bank_decide(jsonb, jsonb)', 7);
SELECT category, evolve, initial_state, decide, snapshot_every FROM es_aggregates WHERE category = 'redef';
SELECT * FROM regress.fold('redef-1');
SELECT * FROM regress.fold('redef-2');

--
-- es_aggregate
--

-- a stream with no events: version 0 and the initial state
SELECT * FROM regress.fold('account-nobody');
SELECT * FROM regress.fold('cnt-empty');
-- to_version: 0, the middle, the end, beyond the end (the current version)
SELECT es_append('cnt-small', 0, regress.incs(5));
SELECT * FROM regress.fold('cnt-small', 0);
SELECT * FROM regress.fold('cnt-small', 1);
SELECT * FROM regress.fold('cnt-small', 3);
SELECT * FROM regress.fold('cnt-small', 5);
SELECT * FROM regress.fold('cnt-small', 6);
SELECT * FROM regress.fold('cnt-small', 9223372036854775807);
SELECT * FROM regress.fold('cnt-small', NULL);
SELECT * FROM es_aggregate('cnt-small');
SELECT * FROM es_aggregate('cnt-small', to_version => 2);
-- 22023: negative to_version; 22004: NULL stream_id; 22023: bad stream_id
SELECT regress.err($$SELECT * FROM es_aggregate('cnt-small', -1)$$);
SELECT regress.err($$SELECT * FROM es_aggregate(NULL)$$);
SELECT regress.err($$SELECT * FROM es_aggregate('')$$);
SELECT regress.err($$SELECT * FROM es_aggregate(repeat('x', 256))$$);
-- 42704: no aggregate for the category (the part before the first '-')
SELECT regress.err($$SELECT * FROM es_aggregate('nocat-1')$$);
SELECT regress.err($$SELECT * FROM es_aggregate('cart-1')$$);
SELECT regress.err($$SELECT * FROM es_aggregate('cntx-1')$$);
-- a stream id without '-' is its own category
SELECT es_append('cnt', 0, regress.incs(2));
SELECT * FROM regress.fold('cnt');
-- 'cnt-a-b' is in category 'cnt'
SELECT * FROM regress.fold('cnt-a-b');

-- strict evolve returning NULL: the state stays NULL (evolve is not called again)
CREATE FUNCTION nul_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE plpgsql STRICT AS $$
BEGIN
    IF event.event_type = 'Null' THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('n', (state->>'n')::int + 1);
END
$$;
CREATE FUNCTION nul_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql STRICT AS $$ SELECT '[]'::jsonb $$;
SELECT es_define_aggregate('nul', 'nul_evolve(jsonb, es_events)', '{"n": 0}', 'nul_decide(jsonb, jsonb)', 1);
SELECT es_append('nul-1', 0, '[{"type": "Inc", "data": {}}, {"type": "Null", "data": {}}, {"type": "Inc", "data": {}}]');
SELECT * FROM regress.fold('nul-1', 1);
SELECT * FROM regress.fold('nul-1', 2);
SELECT * FROM regress.fold('nul-1');
-- a NULL state is never stored as a snapshot (snapshot_every 1 stored the one at version 1)
SELECT * FROM regress.snaps('nul-1');
-- 22004: a strict decide cannot be given the NULL state
SELECT regress.err($$SELECT es_execute('nul-1', '{"type": "Any"}')$$);
-- a non-strict evolve is called with the NULL state and may leave it
CREATE OR REPLACE FUNCTION nul_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE plpgsql CALLED ON NULL INPUT AS $$
BEGIN
    IF event.event_type = 'Null' THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('n', coalesce((state->>'n')::int, 100) + 1);
END
$$;
SELECT * FROM regress.fold('nul-1');

-- an error raised by evolve propagates, and nothing is stored
CREATE FUNCTION boom_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    IF event.event_type = 'Boom' THEN
        RAISE EXCEPTION 'evolve refused event %', event.stream_version
            USING ERRCODE = 'EV001', DETAIL = 'a detail from evolve', HINT = 'a hint from evolve';
    END IF;
    RETURN jsonb_build_object('n', (state->>'n')::int + 1);
END
$$;
SELECT es_define_aggregate('boom', 'boom_evolve(jsonb, es_events)', '{"n": 0}', NULL, 1);
SELECT es_append('boom-1', 0, '[{"type": "Inc", "data": {}}, {"type": "Inc", "data": {}}, {"type": "Boom", "data": {}}]');
SELECT regress.err($$SELECT * FROM es_aggregate('boom-1')$$);
SELECT regress.err($$SELECT 1/0 FROM es_aggregate('boom-1')$$);
SELECT * FROM regress.snaps('boom-1');
SELECT * FROM regress.fold('boom-1', 2);
SELECT * FROM regress.snaps('boom-1');
-- an error raised by a built-in inside evolve propagates too
SELECT es_append('cnt-badi', 0, '[{"type": "Inc", "data": {"i": "not a number"}}]');
SELECT regress.err($$SELECT * FROM es_aggregate('cnt-badi')$$);

--
-- Snapshots: stored after a fold of snapshot_every (here 100) events or more,
-- and used by the next fold
--
SELECT es_append('cnt-1', 0, regress.incs(250));
SELECT * FROM regress.snaps('cnt-1');
-- 250 events folded from scratch; one snapshot stored, at 250
SELECT * FROM regress.fold('cnt-1');
SELECT * FROM regress.snaps('cnt-1');
-- the next fold starts from it: nothing to fold
SELECT * FROM regress.fold('cnt-1');
-- to_version 150: no snapshot at or below 150, so 150 events from scratch; stored at 150
SELECT * FROM regress.fold('cnt-1', 150);
SELECT * FROM regress.snaps('cnt-1');
-- to_version 200: from the snapshot at 150, 50 events (fewer than 100: nothing stored)
SELECT * FROM regress.fold('cnt-1', 200);
-- to_version 149: before every snapshot: from scratch, and stored at 149
SELECT * FROM regress.fold('cnt-1', 149);
-- to_version 0 and beyond the end fold nothing
SELECT * FROM regress.fold('cnt-1', 0);
SELECT * FROM regress.fold('cnt-1', 1000);
SELECT * FROM regress.snaps('cnt-1');
-- 99 more events: folded from the snapshot at 250, not stored
SELECT es_append('cnt-1', 250, regress.incs(99, 251));
SELECT * FROM regress.fold('cnt-1');
SELECT * FROM regress.fold('cnt-1');
-- one more: 100 events since the snapshot at 250, so stored at 350
SELECT es_append('cnt-1', 349, regress.incs(1, 350));
SELECT * FROM regress.fold('cnt-1');
SELECT * FROM regress.fold('cnt-1');
SELECT version, state FROM regress.snaps('cnt-1');
-- every snapshot agrees with a fold from scratch to its version
SELECT count(*) AS snapshots, count(*) FILTER (WHERE s.state = (SELECT jsonb_build_object('n', s.version, 'sum', s.version * (s.version + 1) / 2))) AS correct
  FROM regress.snaps('cnt-1') s;

-- snapshot_every 0: never stored
SELECT es_define_aggregate('nosnap', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}', NULL, 0);
SELECT es_append('nosnap-1', 0, regress.incs(150));
SELECT * FROM regress.fold('nosnap-1');
SELECT * FROM regress.fold('nosnap-1');
SELECT count(*) AS nosnap_snapshots FROM es_snapshots WHERE stream_id = 'nosnap-1';

--
-- Snapshots are ignored once the fold changes
--

-- CREATE OR REPLACE FUNCTION of evolve with other logic: the new answer, from scratch
CREATE OR REPLACE FUNCTION cnt_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT state || jsonb_build_object('n', (state->>'n')::int + 2,
                                       'sum', (state->>'sum')::int + (event.data->>'i')::int)
$$;
SELECT * FROM regress.fold('cnt-1');
SELECT * FROM regress.fold('cnt-1');
SELECT * FROM regress.fold('cnt-1', 300);
-- the old snapshots remain, but es_snapshot_load and es_aggregate only see the new ones
SELECT version, fingerprint_set, state FROM regress.snaps('cnt-1');
SELECT count(DISTINCT fingerprint) AS fingerprints FROM es_snapshots WHERE stream_id = 'cnt-1';
SELECT * FROM es_snapshot_load('cnt-1');
SELECT * FROM es_snapshot_load('cnt-1', 299);
-- a replacement with the very same source is the same fold: the snapshots stay usable
CREATE OR REPLACE FUNCTION cnt_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT state || jsonb_build_object('n', (state->>'n')::int + 2,
                                       'sum', (state->>'sum')::int + (event.data->>'i')::int)
$$;
SELECT * FROM regress.fold('cnt-1');
-- back to the first source: the fingerprint is that of the first fold again, so the
-- snapshots it made are usable again (the fingerprint hashes the source, not the OID)
CREATE OR REPLACE FUNCTION cnt_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT state || jsonb_build_object('n', (state->>'n')::int + 1,
                                       'sum', (state->>'sum')::int + (event.data->>'i')::int)
$$;
SELECT * FROM regress.fold('cnt-1');
-- es_define_aggregate again, with the same functions: from scratch
SELECT es_define_aggregate('cnt', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}');
SELECT * FROM es_snapshot_load('cnt-1');
SELECT * FROM regress.fold('cnt-1');
SELECT * FROM regress.fold('cnt-1');
SELECT count(DISTINCT fingerprint) AS fingerprints FROM es_snapshots WHERE stream_id = 'cnt-1';
-- a definition changed in another way (initial state) is a new fingerprint too
SELECT es_define_aggregate('cnt', 'cnt_evolve(jsonb, es_events)', '{"n": 1000, "sum": 0}');
SELECT * FROM regress.fold('cnt-1');
SELECT es_define_aggregate('cnt', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}');
SELECT * FROM regress.fold('cnt-1');
SELECT count(*) AS snapshots, count(DISTINCT fingerprint) AS fingerprints FROM es_snapshots WHERE stream_id = 'cnt-1';

--
-- No snapshot is written in a read-only transaction; the fold still works
--
SELECT es_append('cnt-ro', 0, regress.incs(120));
BEGIN READ ONLY;
SELECT * FROM regress.fold('cnt-ro');
SELECT * FROM regress.fold('cnt-ro');
SELECT count(*) AS ro_snapshots FROM es_snapshots WHERE stream_id = 'cnt-ro';
-- 25006: the functions that write refuse
SELECT regress.err($$SELECT es_snapshot_save('cnt-ro', 1, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_prune(0)$$);
SELECT regress.err($$SELECT es_define_aggregate('cnt', 'cnt_evolve(jsonb, es_events)')$$);
SELECT regress.err($$SELECT es_execute('account-ro', '{"type": "Open", "owner": "ro", "amount": 1}')$$);
COMMIT;
SET default_transaction_read_only = on;
SELECT * FROM regress.fold('cnt-ro');
RESET default_transaction_read_only;
SELECT count(*) AS ro_snapshots FROM es_snapshots WHERE stream_id = 'cnt-ro';
-- read-write again: stored
SELECT * FROM regress.fold('cnt-ro');
SELECT * FROM regress.fold('cnt-ro');
SELECT version, state FROM regress.snaps('cnt-ro');

--
-- es_snapshot_save / es_snapshot_load / es_snapshot_prune
--
SELECT es_append('cnt-2', 0, regress.incs(10));
SELECT * FROM es_snapshot_load('cnt-2');
-- a "marked" state saved at version 5: es_aggregate starts from it (5 events folded)
SELECT es_snapshot_save('cnt-2', 5, '{"n": 500, "sum": 0, "marked": true}');
SELECT * FROM es_snapshot_load('cnt-2');
SELECT * FROM regress.fold('cnt-2');
-- to version 4: below the saved snapshot, from scratch
SELECT * FROM regress.fold('cnt-2', 4);
-- to version 5: the saved state as it is
SELECT * FROM regress.fold('cnt-2', 5);
-- saving the same version again replaces the state
SELECT es_snapshot_save('cnt-2', 5, '{"n": 600, "sum": 0, "marked": "again"}');
SELECT * FROM regress.snaps('cnt-2');
SELECT * FROM regress.fold('cnt-2');
-- several snapshots per stream: load gives the newest at or below max_version
SELECT es_snapshot_save('cnt-2', 8, '{"n": 800, "sum": 0}');
SELECT es_snapshot_save('cnt-2', 10, '{"n": 1000, "sum": 0}');
SELECT * FROM es_snapshot_load('cnt-2');
SELECT * FROM es_snapshot_load('cnt-2', NULL);
SELECT * FROM es_snapshot_load('cnt-2', 10);
SELECT * FROM es_snapshot_load('cnt-2', 9);
SELECT * FROM es_snapshot_load('cnt-2', 8);
SELECT * FROM es_snapshot_load('cnt-2', 7);
SELECT * FROM es_snapshot_load('cnt-2', 5);
-- no row when there is none
SELECT count(*) AS none FROM es_snapshot_load('cnt-2', 4);
SELECT count(*) AS none FROM es_snapshot_load('cnt-2', 0);
SELECT count(*) AS none FROM es_snapshot_load('cnt-2', -1);
SELECT count(*) AS none FROM es_snapshot_load('cnt-small');
SELECT count(*) AS none FROM es_snapshot_load('no-such-stream');
SELECT * FROM regress.fold('cnt-2', 9);
SELECT * FROM regress.fold('cnt-2');
-- errors: version 0, negative, beyond the current version, a stream without events,
-- NULL arguments, bad stream ids
SELECT regress.err($$SELECT es_snapshot_save('cnt-2', 0, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_save('cnt-2', -1, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_save('cnt-2', 11, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_save('cnt-none', 1, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_save('cnt-2', 5, NULL)$$);
SELECT regress.err($$SELECT es_snapshot_save('cnt-2', NULL, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_save(NULL, 5, '{}')$$);
SELECT regress.err($$SELECT es_snapshot_save('', 5, '{}')$$);
SELECT regress.err($$SELECT * FROM es_snapshot_load(NULL)$$);
SELECT regress.err($$SELECT * FROM es_snapshot_load('')$$);
SELECT * FROM regress.snaps('cnt-2');

-- a category without aggregate: saved with fingerprint 0, loadable, but no
-- longer once an aggregate is defined for the category
SELECT es_append('plain-1', 0, regress.incs(3));
SELECT es_snapshot_save('plain-1', 2, '{"saved": "by hand"}');
SELECT version, fingerprint = 0 AS no_aggregate, state FROM es_snapshots WHERE stream_id = 'plain-1';
SELECT * FROM es_snapshot_load('plain-1');
SELECT es_define_aggregate('plain', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}');
SELECT count(*) AS none FROM es_snapshot_load('plain-1');
SELECT * FROM regress.fold('plain-1');

-- event_sourcing.snapshots_to_keep = N: storing a snapshot keeps the newest N of the stream
SELECT es_append('cnt-3', 0, regress.incs(10));
SELECT es_snapshot_save('cnt-3', v, jsonb_build_object('n', v, 'sum', v * (v + 1) / 2)) FROM generate_series(1, 6) v;
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-3';
SHOW event_sourcing.snapshots_to_keep;
SET event_sourcing.snapshots_to_keep = 3;
SELECT es_snapshot_save('cnt-3', 7, '{"n": 7, "sum": 28}');
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-3';
-- other streams are not pruned
SELECT count(*) AS cnt_1_snapshots FROM es_snapshots WHERE stream_id = 'cnt-1';
-- snapshots stored by a fold are pruned too
SELECT es_append('cnt-4', 0, regress.incs(400));
SELECT * FROM regress.fold('cnt-4', 100);
SELECT * FROM regress.fold('cnt-4', 200);
SELECT * FROM regress.fold('cnt-4', 300);
SELECT * FROM regress.fold('cnt-4', 400);
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-4';
SET event_sourcing.snapshots_to_keep = 1;
SELECT es_snapshot_save('cnt-3', 8, '{"n": 8, "sum": 36}');
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-3';
-- the default keeps the newest 3
RESET event_sourcing.snapshots_to_keep;
SHOW event_sourcing.snapshots_to_keep;
SELECT es_append('cnt-5', 0, regress.incs(5));
SELECT es_snapshot_save('cnt-5', v, jsonb_build_object('n', v, 'sum', v * (v + 1) / 2)) FROM generate_series(1, 5) v;
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-5';
SELECT regress.err($$SET event_sourcing.snapshots_to_keep = -1$$);
SET event_sourcing.snapshots_to_keep = 0;

-- es_snapshot_prune(keep, stream_id): deletes all but the newest keep; returns how many
SELECT es_snapshot_save('cnt-3', v, jsonb_build_object('n', v, 'sum', v * (v + 1) / 2)) FROM generate_series(1, 7) v;
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-3';
SELECT es_snapshot_prune(5, 'cnt-3') AS deleted;
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-3';
SELECT es_snapshot_prune(5, 'cnt-3') AS deleted;
SELECT es_snapshot_prune(100, 'cnt-3') AS deleted;
SELECT es_snapshot_prune(stream_id => 'cnt-3') AS deleted;
SELECT array_agg(version ORDER BY version) AS kept FROM es_snapshots WHERE stream_id = 'cnt-3';
SELECT es_snapshot_prune(0, 'cnt-3') AS deleted;
SELECT count(*) AS left FROM es_snapshots WHERE stream_id = 'cnt-3';
SELECT es_snapshot_prune(1, 'no-such-stream') AS deleted;
SELECT regress.err($$SELECT es_snapshot_prune(-1)$$);
SELECT regress.err($$SELECT es_snapshot_prune(-1, 'cnt-3')$$);
SELECT regress.err($$SELECT es_snapshot_prune(NULL)$$);
-- keep 2 of every stream (stream_id NULL)
SELECT count(*) FILTER (WHERE n > 2) AS streams_over_2, sum(greatest(n - 2, 0)) AS to_delete
  FROM (SELECT stream_id, count(*) AS n FROM es_snapshots GROUP BY stream_id) s;
SELECT es_snapshot_prune(2) AS deleted;
SELECT count(*) FILTER (WHERE n > 2) AS streams_over_2 FROM (SELECT stream_id, count(*) AS n FROM es_snapshots GROUP BY stream_id) s;
SELECT es_snapshot_prune(2) AS deleted;
-- cnt-1 keeps only the snapshot the current definition can use (the one an
-- earlier definition stored at 350 is deleted), so the fold is still free
SELECT version, state FROM regress.snaps('cnt-1');
SELECT * FROM regress.fold('cnt-1');
-- pruning never changes an answer, only the work
SELECT es_snapshot_prune(0, 'cnt-1') AS deleted;
SELECT * FROM regress.fold('cnt-1', 349);

--
-- es_aggregate_at: the state as of a point in time
--
SELECT es_execute('account-at', '{"type": "Open", "owner": "at", "amount": 100}');
SELECT es_execute('account-at', '{"type": "Deposit", "amount": 50}');
SELECT pg_sleep(0.02);
SELECT clock_timestamp() AS mid \gset
SELECT pg_sleep(0.02);
SELECT es_execute('account-at', '{"type": "Withdraw", "amount": 30}');
SELECT * FROM es_aggregate_at('account-at', :'mid');
SELECT * FROM es_aggregate_at('account-at', (SELECT recorded_at FROM es_events WHERE stream_id = 'account-at' AND stream_version = 1));
SELECT * FROM es_aggregate_at('account-at', (SELECT recorded_at FROM es_events WHERE stream_id = 'account-at' AND stream_version = 1) - interval '1 microsecond');
SELECT * FROM es_aggregate_at('account-at', '-infinity');
SELECT * FROM es_aggregate_at('account-at', 'infinity');
SELECT * FROM es_aggregate_at('account-at', clock_timestamp());
SELECT * FROM es_aggregate_at('account-nobody', clock_timestamp());
SELECT regress.err($$SELECT * FROM es_aggregate_at('account-at', NULL)$$);
SELECT regress.err($$SELECT * FROM es_aggregate_at(NULL, now())$$);
SELECT regress.err($$SELECT * FROM es_aggregate_at('nocat-1', now())$$);

--
-- es_execute
--
SELECT regress.store_digest() AS before \gset
-- the bank account rules, refused before the account exists: nothing stored
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Deposit", "amount": 10}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Withdraw", "amount": 10}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Close"}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Open", "owner": "alice", "amount": 0}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Open", "owner": "alice"}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Freeze"}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"amount": 1}')$$);
SELECT regress.store_digest() = :'before' AS unchanged;
SELECT es_stream_version('account-alice');
-- happy path: each returns the new version
SELECT es_execute('account-alice', '{"type": "Open", "owner": "alice", "amount": 100}');
SELECT es_execute('account-alice', '{"type": "Deposit", "amount": 50}');
SELECT es_execute('account-alice', '{"type": "Withdraw", "amount": 30}');
SELECT stream_version, event_type, data FROM es_load('account-alice');
SELECT * FROM es_aggregate('account-alice');
SELECT regress.store_digest() AS before \gset
-- refusals, with their SQLSTATEs: nothing stored
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Open", "owner": "alice", "amount": 1}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Deposit", "amount": 0}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Deposit", "amount": -5}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Withdraw"}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Withdraw", "amount": 121}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Close"}')$$);
SELECT regress.store_digest() = :'before' AS unchanged;
SELECT * FROM es_aggregate('account-alice');
-- the whole balance may be withdrawn, then the account closed; then it is not open
SELECT es_execute('account-alice', '{"type": "Withdraw", "amount": 120}');
SELECT es_execute('account-alice', '{"type": "Close"}');
SELECT * FROM es_aggregate('account-alice');
SELECT regress.store_digest() AS before \gset
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Deposit", "amount": 1}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Withdraw", "amount": 1}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Close"}')$$);
SELECT regress.err($$SELECT es_execute('account-alice', '{"type": "Open", "owner": "alice", "amount": 1}')$$);
SELECT regress.store_digest() = :'before' AS unchanged;

-- several es_execute in one statement: each sees the previous
SELECT i, es_execute('account-carol', CASE WHEN i = 1 THEN '{"type": "Open", "owner": "carol", "amount": 100}'::jsonb
                                           ELSE jsonb_build_object('type', 'Deposit', 'amount', i) END)
  FROM generate_series(1, 4) i;
SELECT * FROM es_aggregate('account-carol');
-- three withdrawals of 40 from 109: the third is refused, and the statement stores nothing
SELECT regress.store_digest() AS before \gset
SELECT regress.err($$SELECT es_execute('account-carol', '{"type": "Withdraw", "amount": 40}') FROM generate_series(1, 3)$$);
SELECT regress.store_digest() = :'before' AS unchanged;
SELECT es_execute('account-carol', '{"type": "Withdraw", "amount": 40}') FROM generate_series(1, 2);
SELECT * FROM es_aggregate('account-carol');
-- in a transaction, later calls see earlier ones; a rollback leaves nothing
BEGIN;
SELECT es_execute('account-carol', '{"type": "Withdraw", "amount": 29}');
SELECT regress.err($$SELECT es_execute('account-carol', '{"type": "Withdraw", "amount": 1}')$$);
SELECT es_execute('account-carol', '{"type": "Close"}');
SELECT * FROM es_aggregate('account-carol');
ROLLBACK;
SELECT * FROM es_aggregate('account-carol');

-- es_execute folds from snapshots and stores them: 151 commands in one statement
-- (call k folds k-1 events until the fold of 100 events at call 101 stores a
-- snapshot at 100; calls 102..151 fold 1..50 events from it)
SELECT es_fold_count() AS f0 \gset
SELECT max(es_execute('account-dave', CASE WHEN i = 1 THEN '{"type": "Open", "owner": "dave", "amount": 1}'::jsonb
                                           ELSE '{"type": "Deposit", "amount": 1}' END)) AS version
  FROM generate_series(1, 151) i;
SELECT es_fold_count() - :f0 AS folded, 100 * 101 / 2 + 50 * 51 / 2 AS expected;
SELECT version, state FROM regress.snaps('account-dave');
SELECT * FROM regress.fold('account-dave');

-- decide returning [], NULL, a non-array, malformed events: a decide that returns
-- whatever the command carries in "events"
CREATE FUNCTION echo_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT command->'events' $$;
SELECT es_define_aggregate('echo', 'cnt_evolve(jsonb, es_events)', '{"n": 0, "sum": 0}', 'echo_decide(jsonb, jsonb)');
SELECT es_execute('echo-1', '{"events": [{"type": "Inc", "data": {"i": 1}}, {"type": "Inc", "data": {"i": 2}}]}');
SELECT es_execute('echo-1', '{"events": [{"type": "Inc", "data": {"i": 3}, "metadata": {"by": "echo"}}]}');
SELECT stream_version, event_type, data, metadata FROM es_load('echo-1');
SELECT regress.store_digest() AS before \gset
-- []: nothing stored, the current version returned
SELECT es_execute('echo-1', '{"events": []}');
SELECT es_execute('echo-empty', '{"events": []}');
-- 22004: decide returned SQL NULL
SELECT regress.err($$SELECT es_execute('echo-1', '{}')$$);
-- 22023: not an array, malformed events
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": null}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": {"type": "Inc", "data": {"i": 4}}}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": "Inc"}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": 42}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [1]}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [{"data": {}}]}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [{"type": "Inc"}]}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [{"type": "", "data": {}}]}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [{"type": "Inc", "data": [4]}]}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [{"type": "Inc", "data": {"i": 4}}, {"type": "Inc", "data": {}, "extra": 1}]}')$$);
SELECT regress.err($$SELECT es_execute('echo-1', '{"events": [{"type": "Inc", "data": {}, "id": "not-a-uuid"}]}')$$);
SELECT regress.store_digest() = :'before' AS unchanged;
-- 55000: an aggregate without decide
SELECT regress.err($$SELECT es_execute('cnt-1', '{"type": "Any"}')$$);
-- 22004: NULL command or stream_id; 22023: bad stream_id; 42704: no aggregate
SELECT regress.err($$SELECT es_execute('account-alice', NULL)$$);
SELECT regress.err($$SELECT es_execute(NULL, '{"type": "Close"}')$$);
SELECT regress.err($$SELECT es_execute('', '{"type": "Close"}')$$);
SELECT regress.err($$SELECT es_execute('nocat-1', '{"type": "Close"}')$$);
SELECT regress.store_digest() = :'before' AS unchanged;

--
-- Privileges: EXECUTE grants suffice (the internal writes of definitions and
-- snapshots need no privilege on the tables); EXECUTE on the evolve and decide
-- functions is checked at definition and at every use
--
CREATE ROLE regress_es_agg;
GRANT USAGE ON SCHEMA regress TO regress_es_agg;
GRANT EXECUTE ON FUNCTION es_define_aggregate(text, regprocedure, jsonb, regprocedure, integer),
                          es_aggregate(text, bigint), es_aggregate_at(text, timestamptz),
                          es_execute(text, jsonb, bigint, uuid), es_append(text, bigint, jsonb),
                          es_snapshot_save(text, bigint, jsonb), es_snapshot_load(text, bigint),
                          es_snapshot_prune(integer, text), es_fold_count() TO regress_es_agg;
CREATE FUNCTION priv_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('n', (state->>'n')::int + 1) $$;
CREATE FUNCTION priv_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT '[{"type": "Inc", "data": {}}]'::jsonb $$;
REVOKE EXECUTE ON FUNCTION priv_evolve(jsonb, es_events), priv_decide(jsonb, jsonb) FROM PUBLIC;
-- 42501 at definition: no EXECUTE on evolve, then none on decide
SET ROLE regress_es_agg;
SELECT regress.err($$SELECT es_define_aggregate('priv', 'priv_evolve(jsonb, es_events)', '{"n": 0}')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION priv_evolve(jsonb, es_events) TO regress_es_agg;
SET ROLE regress_es_agg;
SELECT regress.err($$SELECT es_define_aggregate('priv', 'priv_evolve(jsonb, es_events)', '{"n": 0}', 'priv_decide(jsonb, jsonb)')$$);
RESET ROLE;
SELECT count(*) AS priv_defined FROM es_aggregates WHERE category = 'priv';
-- with EXECUTE on both, the role defines the aggregate, executes, folds, and
-- stores, saves and prunes snapshots; the tables themselves stay closed to it
GRANT EXECUTE ON FUNCTION priv_decide(jsonb, jsonb) TO regress_es_agg;
SET ROLE regress_es_agg;
SELECT es_define_aggregate('priv', 'priv_evolve(jsonb, es_events)', '{"n": 0}', 'priv_decide(jsonb, jsonb)');
SELECT es_execute('priv-1', '{}');
SELECT es_execute('priv-1', '{}');
SELECT * FROM regress.fold('priv-1');
SELECT es_append('priv-2', 0, regress.incs(150));
SELECT * FROM regress.fold('priv-2');
SELECT * FROM regress.fold('priv-2');
SELECT es_snapshot_save('priv-2', 10, '{"n": 10}');
SELECT * FROM es_snapshot_load('priv-2', 100);
SELECT es_snapshot_prune(1, 'priv-2') AS deleted;
SELECT regress.err($$SELECT * FROM es_snapshots$$);
SELECT regress.err($$SELECT * FROM es_aggregates$$);
SELECT regress.err($$DELETE FROM es_snapshots$$);
RESET ROLE;
SELECT category, evolve, initial_state, decide, snapshot_every FROM es_aggregates WHERE category = 'priv';
SELECT version, state FROM regress.snaps('priv-2');
-- 42501 at fold time once EXECUTE on evolve is revoked, and on decide for es_execute
REVOKE EXECUTE ON FUNCTION priv_evolve(jsonb, es_events) FROM regress_es_agg;
SET ROLE regress_es_agg;
SELECT regress.err($$SELECT * FROM es_aggregate('priv-1')$$);
SELECT regress.err($$SELECT * FROM es_aggregate('priv-1', 0)$$);
SELECT regress.err($$SELECT * FROM es_aggregate_at('priv-1', now())$$);
SELECT regress.err($$SELECT es_execute('priv-1', '{}')$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION priv_evolve(jsonb, es_events) TO regress_es_agg;
REVOKE EXECUTE ON FUNCTION priv_decide(jsonb, jsonb) FROM regress_es_agg;
SET ROLE regress_es_agg;
SELECT * FROM regress.fold('priv-1');
SELECT regress.err($$SELECT es_execute('priv-1', '{}')$$);
RESET ROLE;
SELECT es_stream_version('priv-1');

--
-- changing only evolve's strictness changes the fold (a NULL state is passed on
-- or not), so snapshots made before the change are not used
--
CREATE FUNCTION str_evolve(state jsonb, event es_events) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF event.event_type = 'Null' THEN RETURN NULL; END IF;
    RETURN jsonb_build_object('n', coalesce((state->>'n')::int, 100) + 1);
END $$;
SELECT es_define_aggregate('str', 'str_evolve(jsonb, es_events)', '{"n": 0}', NULL, 1);
SELECT es_append('str-1', 0, '[{"type": "Inc", "data": {}}, {"type": "Null", "data": {}}, {"type": "Inc", "data": {}}]');
SELECT * FROM regress.fold('str-1');
ALTER FUNCTION str_evolve(jsonb, es_events) STRICT;
SELECT * FROM regress.fold('str-1');
SELECT * FROM regress.fold('str-1', 2);

--
-- cleanup: the functions take es_events, so they must go before the extension
-- can be dropped (security drops it)
--
DROP OWNED BY regress_es_agg;
DROP ROLE regress_es_agg;
DROP FUNCTION bank_evolve(jsonb, es_events), bank_decide(jsonb, jsonb),
              cnt_evolve(jsonb, es_events), nul_evolve(jsonb, es_events), nul_decide(jsonb, jsonb),
              boom_evolve(jsonb, es_events), echo_decide(jsonb, jsonb),
              priv_evolve(jsonb, es_events), priv_decide(jsonb, jsonb), str_evolve(jsonb, es_events),
              bad_args(jsonb, jsonb), bad_one_arg(jsonb), bad_three_args(jsonb, es_events, int),
              bad_ret(jsonb, es_events), bad_srf(jsonb, es_events);
DROP PROCEDURE bad_proc(jsonb, es_events);
DROP AGGREGATE bad_agg(jsonb, es_events);
DROP FUNCTION bad_agg_step(jsonb, jsonb, es_events);
