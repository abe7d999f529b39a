--
-- append: es_append, both forms, every row of the contract's "Appending".
--
\pset null '(null)'

-- expected_version 0: the stream must not exist
SELECT es_append('account-1', 0, 'AccountOpened', '{"owner": "alice"}');
SELECT regress.err($$SELECT es_append('account-1', 0, 'AccountOpened', '{"owner": "bob"}')$$);

-- expected_version n: exactly n
SELECT es_append('account-1', 1, 'Deposited', '{"amount": 100}');
SELECT regress.err($$SELECT es_append('account-1', 1, 'Deposited', '{"amount": 100}')$$);
SELECT regress.err($$SELECT es_append('account-1', 7, 'Deposited', '{"amount": 100}')$$);

-- expected_version -1: the stream must exist
SELECT es_append('account-1', -1, 'Withdrawn', '{"amount": 30}');
SELECT regress.err($$SELECT es_append('account-2', -1, 'Deposited', '{"amount": 1}')$$);

-- expected_version NULL: any, including a new stream
SELECT es_append('account-1', NULL, 'Deposited', '{"amount": 5}');
SELECT es_append('account-2', NULL, 'AccountOpened', '{"owner": "carol"}');

-- metadata: default {}, NULL means {}, an object is stored as given
SELECT es_append('meta-1', NULL, 'Noted', '{}');
SELECT es_append('meta-1', NULL, 'Noted', '{}', NULL);
SELECT es_append('meta-1', NULL, 'Noted', '{}', '{"user": "alice", "n": 1}');
SELECT stream_version, metadata FROM es_load('meta-1');

-- the returned version is the stream's new version
SELECT stream_version, event_type, data FROM es_load('account-1');

-- batch: consecutive versions, one call
SELECT es_append('account-3', 0, '[
  {"type": "AccountOpened", "data": {"owner": "dave"}},
  {"type": "Deposited", "data": {"amount": 50}, "metadata": {"by": "teller"}},
  {"type": "Deposited", "data": {"amount": 25}, "metadata": null}
]');
SELECT stream_version, event_type, data, metadata FROM es_load('account-3');
SELECT es_append('account-3', 3, '[{"type": "Withdrawn", "data": {"amount": 5}}]');
SELECT regress.err($$SELECT es_append('account-3', 3, '[{"type": "Withdrawn", "data": {"amount": 5}}]')$$);

-- positions increase with versions inside a stream, and across the store
SELECT bool_and(global_position > lag_pos) AS positions_increase
  FROM (SELECT global_position, lag(global_position, 1, 0::bigint) OVER (ORDER BY stream_version) AS lag_pos
          FROM es_load('account-3')) s;

-- a batch is atomic: a bad event anywhere stores nothing
SELECT regress.store_digest() AS before \gset
SELECT regress.err($$SELECT es_append('account-3', NULL, '[{"type": "Deposited", "data": {"amount": 1}}, {"type": "Deposited", "data": 5}]')$$);
SELECT regress.store_digest() = :'before' AS unchanged;
SELECT es_stream_version('account-3');

-- event ids: generated ones are UUID version 7 and increase; given ones are kept
SELECT es_append('ids-1', NULL, 'Tagged', '{}', '{}', 'a81bc81b-dead-4e5d-abff-90865d1e13b1');
SELECT event_id FROM es_load('ids-1');
SELECT es_append('ids-2', NULL, '[{"type": "T", "data": {}}, {"type": "T", "data": {}}, {"type": "T", "data": {}}]');
SELECT bool_and(substr(event_id::text, 15, 1) = '7') AS version_7,
       bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS rfc_variant,
       bool_and(event_id > lag_id) AS increasing
  FROM (SELECT event_id, lag(event_id, 1, '00000000-0000-0000-0000-000000000000') OVER (ORDER BY stream_version) AS lag_id
          FROM es_load('ids-2')) s;

-- idempotent retry: the same call again stores nothing and returns the version
SELECT es_append('order-1', 0, 'OrderPlaced', '{"total": 10}', '{}', '11111111-1111-4111-8111-111111111111');
SELECT es_append('order-1', 0, 'OrderPlaced', '{"total": 10}', '{}', '11111111-1111-4111-8111-111111111111');
SELECT es_append('order-1', 1, '[{"type": "ItemAdded", "data": {"sku": "a"}, "id": "22222222-2222-4222-8222-222222222222"},
                                 {"type": "ItemAdded", "data": {"sku": "b"}, "id": "33333333-3333-4333-8333-333333333333"}]');
SELECT es_append('order-1', NULL, 'Shipped', '{}');
-- a retry of the batch after the stream moved on still returns where it was stored
SELECT es_append('order-1', 1, '[{"type": "ItemAdded", "data": {"sku": "a"}, "id": "22222222-2222-4222-8222-222222222222"},
                                 {"type": "ItemAdded", "data": {"sku": "b"}, "id": "33333333-3333-4333-8333-333333333333"}]');
-- with expected_version NULL or -1 a retry is recognised wherever the run of ids is
SELECT es_append('order-1', NULL, '[{"type": "ItemAdded", "data": {"sku": "a"}, "id": "22222222-2222-4222-8222-222222222222"},
                                    {"type": "ItemAdded", "data": {"sku": "b"}, "id": "33333333-3333-4333-8333-333333333333"}]');
SELECT es_append('order-1', -1, '[{"type": "ItemAdded", "data": {"sku": "a"}, "id": "22222222-2222-4222-8222-222222222222"},
                                  {"type": "ItemAdded", "data": {"sku": "b"}, "id": "33333333-3333-4333-8333-333333333333"}]');
-- but -1 could not have stored the stream's first event: not a retry
SELECT regress.err($$SELECT es_append('order-1', -1, 'OrderPlaced', '{"total": 10}', '{}', '11111111-1111-4111-8111-111111111111')$$);
SELECT count(*) AS order_events FROM es_load('order-1');
-- an id stored anywhere else is a unique violation (23505)
SELECT regress.err($$SELECT es_append('order-2', NULL, 'OrderPlaced', '{}', '{}', '11111111-1111-4111-8111-111111111111')$$);
SELECT regress.err($$SELECT es_append('order-1', 3, 'OrderPlaced', '{}', '{}', '11111111-1111-4111-8111-111111111111')$$);
SELECT regress.err($$SELECT es_append('order-1', 0, '[{"type": "ItemAdded", "data": {"sku": "b"}, "id": "33333333-3333-4333-8333-333333333333"}]')$$);
-- part of a stored batch plus a new event is not a retry
SELECT regress.err($$SELECT es_append('order-1', 1, '[{"type": "ItemAdded", "data": {"sku": "a"}, "id": "22222222-2222-4222-8222-222222222222"},
                                                      {"type": "ItemAdded", "data": {"sku": "c"}, "id": "44444444-4444-4444-8444-444444444444"}]')$$);
-- a stored id next to a generated one is not a retry either
SELECT regress.err($$SELECT es_append('order-1', 1, '[{"type": "ItemAdded", "data": {"sku": "a"}, "id": "22222222-2222-4222-8222-222222222222"},
                                                      {"type": "ItemAdded", "data": {"sku": "c"}}]')$$);
SELECT count(*) AS order_events FROM es_load('order-1');

-- recorded_at never decreases within a stream
SELECT bool_and(recorded_at >= lag_at) AS monotonic
  FROM (SELECT recorded_at, lag(recorded_at, 1, '-infinity') OVER (ORDER BY stream_version) AS lag_at
          FROM es_load('account-1')) s;

-- several appends to one stream in one transaction and one statement
BEGIN;
SELECT es_append('tx-1', NULL, 'A', '{}');
SELECT es_append('tx-1', 1, 'B', '{}');
SELECT es_append('tx-1', NULL, 'C', jsonb_build_object('i', i)) FROM generate_series(1, 3) i;
SELECT es_stream_version('tx-1');
ROLLBACK;
SELECT es_stream_version('tx-1') AS after_rollback;

-- a savepoint rolled back takes its events with it
BEGIN;
SELECT es_append('sp-1', 0, 'A', '{}');
SAVEPOINT s;
SELECT es_append('sp-1', 1, 'B', '{}');
ROLLBACK TO SAVEPOINT s;
SELECT es_append('sp-1', 1, 'B2', '{}');
COMMIT;
SELECT stream_version, event_type FROM es_load('sp-1');

-- stream ids and types: any text up to 255 bytes, multibyte included
SELECT es_append(repeat('x', 255), NULL, repeat('T', 255), '{}');
SELECT es_append('café-☕', NULL, 'Ordered', '{"drink": "☕"}');
SELECT stream_id, event_type, data FROM es_load('café-☕');

-- the events of a batch share a type and the empty metadata in memory: each
-- row still gets its own type, metadata, audit keys and generated id
BEGIN;
SET LOCAL event_sourcing.actor = 'batcher';
SELECT es_append('share-1', 0, '[{"type": "A", "data": {"n": 1}},
                                 {"type": "A", "data": {"n": 2}, "metadata": null},
                                 {"type": "B", "data": {"n": 3}, "metadata": {}},
                                 {"type": "A", "data": {"n": 4}, "metadata": {"k": 1}},
                                 {"type": "A", "data": {"n": 5}}]');
COMMIT;
SELECT stream_version, event_type, data, metadata FROM es_load('share-1');
SELECT count(DISTINCT event_id) AS distinct_ids FROM es_load('share-1');

-- a retry of a batch of 100 events; the same ids for another stream,
-- whose name differs only in its last byte, are a unique violation
SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', jsonb_build_object('g', g),
                                    'id', md5('retry-' || g)::uuid) ORDER BY g) AS hundred
  FROM generate_series(1, 100) g \gset
SELECT es_append('retry-1', 0, :'hundred');
SELECT es_append('retry-1', 0, :'hundred');
SELECT regress.err($$SELECT es_append('retry-2', 0, $$ || quote_literal(:'hundred') || $$)$$);
SELECT es_stream_version('retry-1') AS retry_1, es_stream_version('retry-2') AS retry_2;
