-- examples/migrate.sql: moving a hand-rolled events table into the event
-- store with es_import, keeping every event's id and timestamp.
--
-- Run it after CREATE EXTENSION event_sourcing (the extension's schema must
-- be on search_path), from the repository root:
--
--   psql -v ON_ERROR_STOP=1 -f examples/migrate.sql
--
-- The table most teams write before they use an event store:
--
--   events (id, aggregate_id, aggregate_type, event_type, data, metadata,
--           version, created_at)
--
-- becomes streams named <aggregate type>-<aggregate id>, so the aggregate
-- type is the stream's category (es_read_category, es_define_aggregate).
-- Four steps: map the columns with a view, check the history, import, and
-- switch the writers over.

CREATE SCHEMA legacy_app;

CREATE TABLE legacy_app.events (
    id             uuid PRIMARY KEY,
    aggregate_id   uuid NOT NULL,
    aggregate_type text NOT NULL,
    event_type     text NOT NULL,
    data           jsonb NOT NULL,
    metadata       jsonb,
    version        int NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (aggregate_id, version)
);

-- Some history: two orders and a customer.  The second order's version 3
-- was written by an application server whose clock was 2 seconds behind:
-- its created_at is earlier than version 2's.
INSERT INTO legacy_app.events VALUES
  ('00000000-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111', 'Order',
   'OrderPlaced', '{"customer": "c-1", "total": 40}', '{"user": "ann"}', 1, '2024-03-01 09:00:00+00'),
  ('00000000-0000-4000-8000-000000000002', '11111111-1111-4111-8111-111111111111', 'Order',
   'ItemAdded', '{"sku": "A-7", "price": 15}', NULL, 2, '2024-03-01 09:01:00+00'),
  ('00000000-0000-4000-8000-000000000003', '22222222-2222-4222-8222-222222222222', 'Order',
   'OrderPlaced', '{"customer": "c-2", "total": 10}', NULL, 1, '2024-03-01 09:00:30+00'),
  ('00000000-0000-4000-8000-000000000004', '22222222-2222-4222-8222-222222222222', 'Order',
   'ItemAdded', '{"sku": "B-2", "price": 5}', NULL, 2, '2024-03-01 09:02:00+00'),
  ('00000000-0000-4000-8000-000000000005', '22222222-2222-4222-8222-222222222222', 'Order',
   'OrderShipped', '{}', NULL, 3, '2024-03-01 09:01:58+00'),
  ('00000000-0000-4000-8000-000000000006', '33333333-3333-4333-8333-333333333333', 'Customer',
   'CustomerRegistered', '{"name": "Ann"}', '{"user": "admin"}', 1, '2024-02-28 12:00:00+00');

-- 1. Map the columns es_import reads (stream_id, stream_version,
--    event_type, data; optionally metadata, event_id, recorded_at).  A
--    stream's recorded_at must never decrease as its versions increase:
--    the running maximum of created_at over the stream's versions keeps the
--    recorded times and repairs clock skew (the original time stays in the
--    metadata).
CREATE VIEW legacy_app.events_to_import AS
SELECT lower(aggregate_type) || '-' || aggregate_id AS stream_id,
       version AS stream_version,
       event_type,
       data,
       coalesce(metadata, '{}') || jsonb_build_object('legacy_created_at', created_at) AS metadata,
       id AS event_id,
       max(created_at) OVER (PARTITION BY aggregate_id ORDER BY version) AS recorded_at
  FROM legacy_app.events;

-- 2. Check the history before importing: every stream's versions must be
--    1, 2, 3 ... without gap (es_import refuses the whole import otherwise,
--    naming the stream).  No rows: nothing to fix.
SELECT aggregate_type, aggregate_id, count(*) AS events, min(version), max(version)
  FROM legacy_app.events
 GROUP BY aggregate_type, aggregate_id
HAVING min(version) <> 1 OR max(version) <> count(*);

-- 3. Import: one statement, all or nothing.  Positions in the global log
--    follow recorded_at (then stream id, then version); ids and times are
--    kept.  Inline projections are not dispatched: rebuild them afterwards
--    (es_projection_rebuild); async projections catch up by themselves.
SELECT es_import('legacy_app.events_to_import') AS imported;

SELECT stream_id, stream_version, event_type,
       recorded_at AT TIME ZONE 'UTC' AS recorded_utc,
       (metadata ->> 'legacy_created_at')::timestamptz AT TIME ZONE 'UTC' AS created_utc
  FROM (SELECT * FROM es_read_category('order', 0, 100)
        UNION ALL
        SELECT * FROM es_read_category('customer', 0, 100)) e
 ORDER BY global_position;

-- 4. Switch the writers over: the old table takes no more events, new
--    events continue the imported streams with es_append.
REVOKE INSERT, UPDATE, DELETE ON legacy_app.events FROM PUBLIC;  -- and from your application's roles
SELECT es_append('order-22222222-2222-4222-8222-222222222222', 3,
                 'OrderDelivered', '{}') AS order_2_version;
SELECT stream_version, event_type FROM es_load('order-22222222-2222-4222-8222-222222222222');

-- Clean up the example's legacy schema (the imported events stay).
DROP SCHEMA legacy_app CASCADE;
