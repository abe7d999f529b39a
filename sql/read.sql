--
-- read: es_load, es_stream_version, es_read_all, es_read_category.
--
SELECT es_append('cart-1', 0, '[{"type": "Created", "data": {}}, {"type": "Added", "data": {"n": 1}},
                                {"type": "Added", "data": {"n": 2}}, {"type": "Added", "data": {"n": 3}},
                                {"type": "CheckedOut", "data": {}}]');
SELECT es_append('cart-2', 0, 'Created', '{}');
SELECT es_append('cartography-1', 0, 'Mapped', '{}');
SELECT es_append('cart', 0, 'NoDash', '{}');

-- es_load: ordered by version, bounds inclusive
SELECT stream_version, event_type FROM es_load('cart-1');
SELECT stream_version, event_type FROM es_load('cart-1', 2);
SELECT stream_version, event_type FROM es_load('cart-1', 2, 4);
SELECT stream_version, event_type FROM es_load('cart-1', 4, 4);
SELECT stream_version, event_type FROM es_load('cart-1', 4, 2);
SELECT stream_version, event_type FROM es_load('cart-1', 6);
SELECT stream_version, event_type FROM es_load('cart-1', to_version => 2);
SELECT count(*) FROM es_load('no-such-stream');
-- the row type is es_events
SELECT pg_typeof(e) FROM es_load('cart-2') e;
SELECT (es_load('cart-2')).event_type;

-- es_stream_version: current, and as of a time
SELECT es_stream_version('cart-1'), es_stream_version('cart-2'), es_stream_version('no-such-stream');
SELECT es_stream_version('cart-1', '-infinity'), es_stream_version('cart-1', 'infinity'),
       es_stream_version('cart-1', NULL), es_stream_version('no-such-stream', now());

-- as_of picks the last version recorded at or before the time
SELECT es_append('clock-1', NULL, 'Tick', jsonb_build_object('i', i)) FROM generate_series(1, 3) i;
SELECT pg_sleep(0.02);
SELECT clock_timestamp() AS mid \gset
SELECT pg_sleep(0.02);
SELECT es_append('clock-1', NULL, 'Tick', jsonb_build_object('i', i)) FROM generate_series(4, 10) i;
SELECT es_stream_version('clock-1', :'mid') AS as_of_mid;
SELECT es_stream_version('clock-1', recorded_at) AS as_of_v7
  FROM es_events WHERE stream_id = 'clock-1' AND stream_version = 7;
SELECT es_stream_version('clock-1', (SELECT recorded_at FROM es_events WHERE stream_id = 'clock-1' AND stream_version = 1) - interval '1 microsecond') AS before_first;

-- es_read_all: global order after a position, limited
SELECT max(global_position) AS last_pos FROM es_events \gset
SELECT stream_id, stream_version FROM es_read_all(:last_pos - 3);
SELECT stream_id, stream_version FROM es_read_all(:last_pos - 3, 2);
SELECT count(*) FROM es_read_all(:last_pos);
SELECT count(*) FROM es_read_all(:last_pos + 100);
SELECT count(*) FROM es_read_all(0, 0);
SELECT count(*) = (SELECT count(*) FROM es_events) AS defaults_read_everything FROM es_read_all();
-- paging through the whole log with the last position seen gives every event once
WITH RECURSIVE pages(after_pos, n, total) AS (
    SELECT 0::bigint, 0, 0::bigint
  UNION ALL
    SELECT p.last, pages.n + 1, pages.total + p.cnt
      FROM pages, LATERAL (SELECT max(global_position) AS last, count(*) AS cnt
                             FROM es_read_all(pages.after_pos, 7)) p
     WHERE p.cnt > 0
)
SELECT max(total) = (SELECT count(*) FROM es_events) AS every_event_once FROM pages;

-- es_read_category: the part of the stream id before the first '-'
SELECT stream_id, stream_version, event_type FROM es_read_category('cart');
SELECT stream_id, stream_version FROM es_read_category('cart', 0, 2);
SELECT stream_id, stream_version FROM es_read_category('cartography');
SELECT count(*) FROM es_read_category('no_such_category');
SELECT count(*) FROM es_read_category('cart', :last_pos);
-- the category read equals a filter of the whole log
SELECT array_agg(global_position ORDER BY global_position) =
       (SELECT array_agg(global_position ORDER BY global_position) FROM es_read_all(0, 100000)
         WHERE split_part(stream_id, '-', 1) = 'account') AS same_as_filter
  FROM es_read_category('account', 0, 100000);

-- es_safe_position: the high-water mark, equal to the last position when idle
SELECT es_safe_position() = (SELECT max(global_position) FROM es_events) AS idle_mark;

-- reading inside REPEATABLE READ: results agree with the transaction snapshot
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) AS seen FROM es_read_all(0, 100000) \gset
SELECT count(*) = :seen AS stable_in_snapshot FROM es_read_all(0, 100000);
ROLLBACK;
