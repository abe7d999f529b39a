-- 04_invariants.sql: invariants of the store after a mix of appends.
--
-- Single and batch appends to several interleaved streams, idempotent
-- retries, appends rolled back with ROLLBACK TO SAVEPOINT, and appends that
-- fail (wrong expected version, malformed batch, event id stored elsewhere);
-- then the invariants of CONTRACT.md are checked over the whole store:
--   * versions per stream are 1..n without gap
--   * global_position increases with stream_version within each stream
--   * recorded_at never decreases within a stream
--   * event ids are unique; generated ones are UUIDv7, time-based, and
--     increase with global_position within one backend
--   * es_read_category(c) = es_read_all() filtered on the category, and
--     paging with the last position seen returns the same events
BEGIN;
SELECT plan(70);

CREATE EXTENSION event_sourcing;

-- Event ids given by the caller (version 4, so they are told apart from
-- generated ones below).
CREATE TEMP TABLE given_ids (id uuid PRIMARY KEY);
INSERT INTO given_ids VALUES
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
    ('1b4e28ba-2fa1-41d2-883f-0016d3cca427'),
    ('6ba7b810-9dad-41d1-80b4-00c04fd430c8'),
    ('2c1f7e0a-5b3d-4c8e-9a6f-7d2e1b0c9f84');

-- ---------------------------------------------------------------------------
-- The appends
-- ---------------------------------------------------------------------------
SELECT is(es_append('order-1', 0, 'Created', '{"n": 1}'), 1::bigint,
          'order-1: first append with expected 0');
SELECT is(es_append('cart-7', 0, '[{"type": "Added",   "data": {"sku": "a"}},
                                   {"type": "Added",   "data": {"sku": "b"}, "metadata": {"ui": "web"}},
                                   {"type": "Removed", "data": {"sku": "a"}}]'::jsonb),
          3::bigint, 'cart-7: batch of three with expected 0');
SELECT is(es_append('order-1', 1, 'Paid', '{"n": 2}'), 2::bigint,
          'order-1: second append with expected 1');
SELECT is(es_append('order-2', NULL, 'Created', '{}', '{"k": "v"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
          1::bigint, 'order-2: append with a given event id, any version');

-- idempotent retries (single)
CREATE TEMP TABLE counts AS SELECT 'before single retry'::text AS label, count(*) AS n FROM es_events;
SELECT is(es_append('order-2', NULL, 'Created', '{}', '{"k": "v"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
          1::bigint, 'order-2: identical retry returns the stored version');
SELECT is(es_append('order-2', 0, 'Created', '{}', '{"k": "v"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
          1::bigint, 'order-2: retry with expected 0 (what the first call would have needed) returns 1');
SELECT is((SELECT count(*) FROM es_events), (SELECT n FROM counts WHERE label = 'before single retry'),
          'the single-event retries stored nothing');

SELECT is(es_append('order', NULL, 'Note', '{"i": 1}'), 1::bigint,
          'order (no dash, category "order"): first append');
SELECT is(es_append('orders-1', 0, 'Created', '{}'), 1::bigint,
          'orders-1 (category "orders", not "order"): first append');

-- batch with given ids, and its retry
SELECT is(es_append('cart-7', 3, '[{"type": "CheckedOut", "data": {}, "id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427"},
                                   {"type": "Closed",     "data": {}, "id": "6ba7b810-9dad-41d1-80b4-00c04fd430c8"}]'::jsonb),
          5::bigint, 'cart-7: batch with given ids at versions 4..5');
INSERT INTO counts SELECT 'before batch retry', count(*) FROM es_events;
SELECT is(es_append('cart-7', 3, '[{"type": "CheckedOut", "data": {}, "id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427"},
                                   {"type": "Closed",     "data": {}, "id": "6ba7b810-9dad-41d1-80b4-00c04fd430c8"}]'::jsonb),
          5::bigint, 'cart-7: identical batch retry returns 5');
SELECT is((SELECT count(*) FROM es_events), (SELECT n FROM counts WHERE label = 'before batch retry'),
          'the batch retry stored nothing');

-- appends rolled back with ROLLBACK TO SAVEPOINT leave no trace
SAVEPOINT rolled_back;
DO $$
BEGIN
    PERFORM es_append('order-1', 2, 'Cancelled', '{}');
    PERFORM es_append('ghost-1', 0, 'Boo', '{}', '{}', '2c1f7e0a-5b3d-4c8e-9a6f-7d2e1b0c9f84');
    PERFORM es_append('cart-7', 5, '[{"type": "Reopened", "data": {}}, {"type": "Added", "data": {"sku": "z"}}]'::jsonb);
END
$$;
ROLLBACK TO SAVEPOINT rolled_back;
RELEASE SAVEPOINT rolled_back;
SELECT is(es_stream_version('order-1'), 2::bigint, 'order-1 is back at version 2 after ROLLBACK TO SAVEPOINT');
SELECT is(es_stream_version('ghost-1'), 0::bigint, 'ghost-1 does not exist after ROLLBACK TO SAVEPOINT');
SELECT is(es_append('orders-1', 1, 'Shipped', '{}', '{}', '2c1f7e0a-5b3d-4c8e-9a6f-7d2e1b0c9f84'), 2::bigint,
          'an event id used only by a rolled-back append can be used in another stream');

-- a failed append (wrong expected version) inside a savepoint
INSERT INTO counts SELECT 'before failures', count(*) FROM es_events;
SAVEPOINT conflict;
SELECT throws_ok($$SELECT es_append('order-1', 1, 'Late', '{}')$$, '40001', NULL,
                 'order-1: append with a stale expected version (1, actual 2) raises 40001');
SELECT throws_ok($$SELECT es_append('order-1', 0, '[{"type": "Late", "data": {}}]'::jsonb)$$, '40001', NULL,
                 'order-1: batch with expected 0 on an existing stream raises 40001');
SELECT throws_ok($$SELECT es_append('no-such-1', -1, 'Late', '{}')$$, '40001', NULL,
                 'expected -1 on a stream without events raises 40001');
RELEASE SAVEPOINT conflict;

-- the error carries the contract's constraint name and names the versions
CREATE TEMP TABLE conflict_error (state text, constraint_name text, message text, detail text);
SAVEPOINT conflict_diag;
DO $$
DECLARE
    st text; cn text; msg text; det text;
BEGIN
    PERFORM es_append('order-1', 1, 'Late', '{}');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, cn = CONSTRAINT_NAME,
                            msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    INSERT INTO conflict_error VALUES (st, cn, msg, det);
END
$$;
RELEASE SAVEPOINT conflict_diag;
SELECT results_eq($$SELECT state, constraint_name FROM conflict_error$$,
                  $$VALUES ('40001'::text, 'es_wrong_expected_version'::text)$$,
                  'wrong expected version: SQLSTATE 40001, constraint es_wrong_expected_version');
SELECT ok((SELECT message ~ 'wrong expected version' AND detail ~ 'order-1' AND detail ~ '1' AND detail ~ '2'
             FROM conflict_error),
          'wrong expected version: message says so, DETAIL names the stream and both versions');

-- failed batches store nothing, not even their valid events
SELECT throws_ok($$SELECT es_append('cart-7', 5, '[{"type": "Reopened", "data": {}},
                                                  {"type": "Added", "data": {}, "bogus": 1}]'::jsonb)$$,
                 '22023', NULL, 'cart-7: batch with an unknown key raises 22023');
SELECT throws_ok($$SELECT es_append('cart-8', 0, '[{"type": "Added", "data": {}},
                                                  {"type": "Added", "data": {}, "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]'::jsonb)$$,
                 '23505', NULL, 'cart-8: batch reusing an event id of order-2 raises 23505');
SELECT throws_ok($$SELECT es_append('order-2', 1, 'Created', '{}', '{"k": "v"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')$$,
                 '23505', NULL, 'order-2: same id at a later version is not a retry: 23505');
SELECT is((SELECT count(*) FROM es_events), (SELECT n FROM counts WHERE label = 'before failures'),
          'the failed appends stored nothing');
SELECT is(es_stream_version('cart-8'), 0::bigint, 'cart-8 does not exist');

-- the streams go on where they were
SELECT is(es_append('order-1', 2, 'Shipped', '{}'), 3::bigint,
          'order-1: the next append after the failures gets version 3');
SELECT is(es_append('order-1', -1, '[{"type": "Delivered", "data": {}}, {"type": "Archived", "data": {}}]'::jsonb),
          5::bigint, 'order-1: batch with expected -1 gets versions 4..5');
SAVEPOINT kept;
DO $$ BEGIN PERFORM es_append('order-2', 1, 'Paid', '{}'); END $$;
RELEASE SAVEPOINT kept;
SELECT is(es_stream_version('order-2'), 2::bigint, 'order-2: an append in a released savepoint is kept');
SELECT is(es_append('order', 1, 'Note', '{"i": 2}'), 2::bigint, 'order: second append');

-- many interleaved appends to two more streams
DO $$
BEGIN
    FOR i IN 1..10 LOOP
        PERFORM es_append('cart-9', NULL, 'Tick', jsonb_build_object('i', i));
        PERFORM es_append('order-3', i - 1, 'Tock', jsonb_build_object('i', i));
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Invariant: versions per stream are 1..n without gap
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT stream_id COLLATE "default", count(*), max(stream_version)
        FROM es_events GROUP BY stream_id ORDER BY stream_id COLLATE "C"$$,
    $$VALUES ('cart-7'::text, 5::bigint, 5::bigint),
             ('cart-9',   10, 10),
             ('order',     2,  2),
             ('order-1',   5,  5),
             ('order-2',   2,  2),
             ('order-3',  10, 10),
             ('orders-1',  2,  2)$$,
    'each stream holds exactly the events appended to it (no ghost, no cart-8, no retry duplicates)');
SELECT is(
    (SELECT count(*) FROM (
        SELECT stream_id, array_agg(stream_version ORDER BY stream_version) AS versions, count(*) AS n
          FROM es_events GROUP BY stream_id) s
      WHERE s.versions <> ARRAY(SELECT generate_series(1::bigint, s.n))),
    0::bigint,
    'in every stream the versions are exactly 1..n');
SELECT is(
    (SELECT count(*) FROM (
        SELECT stream_id FROM es_events GROUP BY stream_id
        HAVING array_agg(stream_version ORDER BY global_position)
            <> array_agg(stream_version ORDER BY stream_version)) bad),
    0::bigint,
    'within every stream, global_position order is stream_version order');
SELECT is(
    (SELECT count(*) FROM (
        SELECT global_position - lag(global_position) OVER w AS d
          FROM es_events WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) x
      WHERE d <= 0),
    0::bigint,
    'global_position strictly increases with stream_version within each stream');
SELECT is(
    (SELECT count(*) FROM (
        SELECT recorded_at < lag(recorded_at) OVER w AS decreased
          FROM es_events WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) x
      WHERE decreased),
    0::bigint,
    'recorded_at never decreases within a stream');
SELECT is(
    (SELECT count(*) FROM es_events WHERE recorded_at > clock_timestamp() OR recorded_at < transaction_timestamp()),
    0::bigint,
    'recorded_at lies between the start of this transaction and now');
SELECT is(
    (SELECT count(DISTINCT recorded_at) FROM es_events WHERE stream_id = 'cart-7' AND stream_version <= 3),
    1::bigint,
    'the events of one batch share one recorded_at');

-- es_load and es_stream_version agree with the table
SELECT is(
    (SELECT count(*) FROM (SELECT DISTINCT stream_id FROM es_events) s
      WHERE es_stream_version(s.stream_id)
            <> (SELECT max(stream_version) FROM es_events e WHERE e.stream_id = s.stream_id)),
    0::bigint,
    'es_stream_version equals the highest stored version of every stream');
SELECT results_eq($$SELECT * FROM es_load('order-1')$$,
                  $$SELECT * FROM es_events WHERE stream_id = 'order-1' ORDER BY stream_version$$,
                  'es_load(order-1) returns the stream''s rows in version order');
SELECT results_eq($$SELECT * FROM es_load('cart-7')$$,
                  $$SELECT * FROM es_events WHERE stream_id = 'cart-7' ORDER BY stream_version$$,
                  'es_load(cart-7) returns the stream''s rows in version order');
SELECT results_eq($$SELECT * FROM es_load('order-3', 4, 6)$$,
                  $$SELECT * FROM es_events WHERE stream_id = 'order-3' AND stream_version BETWEEN 4 AND 6
                     ORDER BY stream_version$$,
                  'es_load(order-3, 4, 6) returns versions 4..6 inclusive');
SELECT results_eq(
    $$SELECT stream_version, event_type COLLATE "default", data, metadata FROM es_load('cart-7')$$,
    $$VALUES (1::bigint, 'Added'::text,    '{"sku": "a"}'::jsonb, '{}'::jsonb),
             (2::bigint, 'Added'::text,    '{"sku": "b"}'::jsonb, '{"ui": "web"}'::jsonb),
             (3::bigint, 'Removed'::text,  '{"sku": "a"}'::jsonb, '{}'::jsonb),
             (4::bigint, 'CheckedOut'::text, '{}'::jsonb,          '{}'::jsonb),
             (5::bigint, 'Closed'::text,   '{}'::jsonb,           '{}'::jsonb)$$,
    'cart-7 holds the batches in order, metadata {} when not given');
SELECT results_eq(
    $$SELECT stream_version, event_type COLLATE "default" FROM es_load('order-1')$$,
    $$VALUES (1::bigint, 'Created'::text), (2, 'Paid'), (3, 'Shipped'), (4, 'Delivered'), (5, 'Archived')$$,
    'order-1 holds no trace of the rolled-back or failed appends');

-- ---------------------------------------------------------------------------
-- Invariant: event ids
-- ---------------------------------------------------------------------------
SELECT is((SELECT count(DISTINCT event_id) FROM es_events), (SELECT count(*) FROM es_events),
          'event ids are unique across the store');
SELECT results_eq(
    $$SELECT stream_id COLLATE "default", stream_version FROM es_events
       WHERE event_id IN (SELECT id FROM given_ids) ORDER BY global_position$$,
    $$VALUES ('order-2'::text, 1::bigint), ('cart-7', 4), ('cart-7', 5), ('orders-1', 2)$$,
    'given event ids are stored as given, once each');
SELECT is((SELECT count(*) FROM es_events WHERE event_id NOT IN (SELECT id FROM given_ids)), 32::bigint,
          '32 events have generated ids');
SELECT is(
    (SELECT count(*) FROM es_events
      WHERE event_id NOT IN (SELECT id FROM given_ids)
        AND substr(event_id::text, 15, 1) <> '7'),
    0::bigint,
    'every generated event id is version 7 (15th character of the text form is 7)');
SELECT is(
    (SELECT count(*) FROM es_events
      WHERE event_id NOT IN (SELECT id FROM given_ids)
        AND substr(event_id::text, 20, 1) NOT IN ('8', '9', 'a', 'b')),
    0::bigint,
    'every generated event id has the RFC 9562 variant (10xx)');
SELECT is(
    (SELECT count(*) FROM (
        SELECT event_id <= lag(event_id) OVER (ORDER BY global_position) AS not_increasing
          FROM es_events WHERE event_id NOT IN (SELECT id FROM given_ids)) x
      WHERE not_increasing),
    0::bigint,
    'generated event ids strictly increase with global_position (one backend)');
SELECT is(
    (SELECT count(*) FROM es_events
      WHERE event_id NOT IN (SELECT id FROM given_ids)
        AND abs(('x' || left(replace(event_id::text, '-', ''), 12))::bit(48)::bigint
                - (extract(epoch FROM recorded_at) * 1000)::bigint) > 2000),
    0::bigint,
    'the timestamp in every generated id is the append time (within 2 s of recorded_at)');

-- ---------------------------------------------------------------------------
-- Invariant: the global log and categories
-- ---------------------------------------------------------------------------
SELECT results_eq($$SELECT * FROM es_read_all()$$,
                  $$SELECT * FROM es_events ORDER BY global_position$$,
                  'es_read_all() returns every event in global_position order');
SELECT results_eq($$SELECT * FROM es_read_all(0, 5)$$,
                  $$SELECT * FROM es_events ORDER BY global_position LIMIT 5$$,
                  'es_read_all(0, 5) returns the first 5 events');
SELECT results_eq($$SELECT * FROM es_read_all((SELECT global_position FROM es_events ORDER BY global_position OFFSET 9 LIMIT 1), 7)$$,
                  $$SELECT * FROM es_events ORDER BY global_position OFFSET 10 LIMIT 7$$,
                  'es_read_all(after the 10th event, 7) returns events 11..17');
SELECT is_empty($$SELECT * FROM es_read_all((SELECT max(global_position) FROM es_events))$$,
                'es_read_all after the last position returns nothing');
SELECT is_empty($$SELECT * FROM es_read_all(0, 0)$$, 'es_read_all(0, 0) returns nothing');
SELECT is(es_safe_position(), (SELECT max(global_position) FROM es_events),
          'es_safe_position equals the last stored position');

SELECT results_eq($$SELECT * FROM es_read_category('order')$$,
                  $$SELECT * FROM es_read_all() WHERE split_part(stream_id, '-', 1) = 'order'$$,
                  'es_read_category(order) = es_read_all() filtered on category order');
SELECT results_eq($$SELECT * FROM es_read_category('cart')$$,
                  $$SELECT * FROM es_read_all() WHERE split_part(stream_id, '-', 1) = 'cart'$$,
                  'es_read_category(cart) = es_read_all() filtered on category cart');
SELECT results_eq($$SELECT * FROM es_read_category('orders')$$,
                  $$SELECT * FROM es_read_all() WHERE split_part(stream_id, '-', 1) = 'orders'$$,
                  'es_read_category(orders) = es_read_all() filtered on category orders');
SELECT is_empty($$SELECT * FROM es_read_category('ghost')$$,
                'es_read_category(ghost): the rolled-back stream has no events');
SELECT is_empty($$SELECT * FROM es_read_category('ord')$$,
                'es_read_category(ord): a prefix of a category is not the category');
SELECT results_eq(
    $$SELECT DISTINCT stream_id COLLATE "default" FROM es_read_category('order') ORDER BY 1$$,
    $$VALUES ('order'::text), ('order-1'), ('order-2'), ('order-3')$$,
    'category order is order, order-1, order-2, order-3 (not orders-1)');
SELECT is(
    (SELECT count(*) FROM es_read_category('order')) + (SELECT count(*) FROM es_read_category('orders'))
      + (SELECT count(*) FROM es_read_category('cart')),
    (SELECT count(*) FROM es_read_all()),
    'the categories partition the log');
SELECT results_eq(
    $$SELECT * FROM es_read_category('order',
                   (SELECT global_position FROM es_events WHERE stream_id = 'order-1' AND stream_version = 3), 4)$$,
    $$SELECT * FROM es_read_all() WHERE split_part(stream_id, '-', 1) = 'order'
         AND global_position > (SELECT global_position FROM es_events WHERE stream_id = 'order-1' AND stream_version = 3)
       LIMIT 4$$,
    'es_read_category with after_position and max_count = filtered es_read_all, same window');

-- Paging with the last position seen returns the log exactly once
CREATE FUNCTION pg_temp.page_through(category text, page int)
    RETURNS SETOF public.es_events
    LANGUAGE plpgsql AS $$
DECLARE
    after bigint := 0;
    r public.es_events;
    got int;
BEGIN
    LOOP
        got := 0;
        FOR r IN SELECT * FROM (SELECT * FROM public.es_read_all(after, page) WHERE category IS NULL
                                UNION ALL
                                SELECT * FROM public.es_read_category(category, after, page) WHERE category IS NOT NULL) s
                  ORDER BY global_position
        LOOP
            RETURN NEXT r;
            after := r.global_position;
            got := got + 1;
        END LOOP;
        EXIT WHEN got < page;
    END LOOP;
END
$$;
SELECT results_eq($$SELECT * FROM pg_temp.page_through(NULL, 4)$$,
                  $$SELECT * FROM es_read_all()$$,
                  'paging es_read_all 4 at a time returns the whole log once, in order');
SELECT results_eq($$SELECT * FROM pg_temp.page_through(NULL, 1)$$,
                  $$SELECT * FROM es_read_all()$$,
                  'paging es_read_all 1 at a time returns the whole log once, in order');
SELECT results_eq($$SELECT * FROM pg_temp.page_through('order', 3)$$,
                  $$SELECT * FROM es_read_category('order')$$,
                  'paging es_read_category 3 at a time returns the category once, in order');

-- ---------------------------------------------------------------------------
-- Invariants hold across later appends too (positions keep increasing)
-- ---------------------------------------------------------------------------
INSERT INTO counts SELECT 'max position', max(global_position) FROM es_events;
SELECT is(es_append('cart-7', 5, 'Reopened', '{}'), 6::bigint, 'cart-7: one more append');
SELECT cmp_ok((SELECT global_position FROM es_load('cart-7', 6)), '>',
              (SELECT n FROM counts WHERE label = 'max position'),
              'a new event gets a position above every earlier one');
SELECT results_eq(
    $$SELECT stream_version FROM es_read_all((SELECT n FROM counts WHERE label = 'max position'))$$,
    $$VALUES (6::bigint)$$,
    'a reader that saw the old last position gets exactly the new event');
SELECT ok(substr((SELECT event_id FROM es_load('cart-7', 6))::text, 15, 1) = '7'
          AND (SELECT event_id FROM es_load('cart-7', 6)) >
              (SELECT event_id FROM es_events WHERE event_id NOT IN (SELECT id FROM given_ids)
                 AND NOT (stream_id = 'cart-7' AND stream_version = 6) ORDER BY event_id DESC LIMIT 1),
          'the new generated id is v7 and above every earlier generated id');

SELECT * FROM finish();
ROLLBACK;
