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

-- Result memory (read.c keeps results in one arena per backend, reused from
-- call to call): every way of holding results open at once gives exactly the
-- rows of the plain SELECT.  3,000 events of ~300 bytes: more than one block.
SELECT count(*) AS appended FROM (
  SELECT es_append('arena-' || (i % 3), NULL,
                   (SELECT jsonb_agg(jsonb_build_object('type', 'Filled',
                              'data', jsonb_build_object('i', i, 'j', j, 'pad', repeat('x', 200))))
                      FROM generate_series(1, 100) j))
    FROM generate_series(1, 30) i) a;
CREATE FUNCTION pg_temp.read_digest(after bigint, n int) RETURNS text
LANGUAGE sql AS $$
  SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY global_position), ''))
    FROM es_read_all(after, n) e $$;
CREATE FUNCTION pg_temp.select_digest(after bigint, n int) RETURNS text
LANGUAGE sql AS $$
  SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY global_position), ''))
    FROM (SELECT * FROM es_events WHERE global_position > after
          ORDER BY global_position LIMIT n) s $$;
CREATE FUNCTION pg_temp.read_digest_plpgsql(after bigint, n int) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT md5(coalesce(string_agg(e::text, '|' ORDER BY global_position), ''))
            FROM es_read_all(after, n) e);
END $$;
SELECT max(global_position) AS max_pos FROM es_events \gset
-- many calls in one query, each a fresh result while the others are gone
SELECT count(*) AS pages,
       bool_and(pg_temp.read_digest(a, 100) = pg_temp.select_digest(a, 100)) AS same
  FROM generate_series(0, :max_pos, 100) a;
-- a function reading per row of an es_read_all result that stays open
SELECT count(*) AS rows,
       bool_and(pg_temp.read_digest_plpgsql(global_position, 7)
                = pg_temp.select_digest(global_position, 7)) AS same
  FROM es_read_all(0, 100000);
-- many calls in one transaction, each its own statement
BEGIN;
SELECT pg_temp.read_digest(0, 1000) = pg_temp.select_digest(0, 1000) AS same;
SELECT pg_temp.read_digest(1000, 1000) = pg_temp.select_digest(1000, 1000) AS same;
SELECT pg_temp.read_digest(0, 100000) = pg_temp.select_digest(0, 100000) AS same;
COMMIT;
-- two results read side by side in one query, and in the target list
SELECT count(*) AS joined, bool_and(a.event_id = c.event_id) AS same
  FROM es_read_all(0, 100000) a JOIN es_read_category('arena', 0, 100000) c USING (global_position);
SELECT count(*) AS projected FROM (SELECT (es_read_all(0, 100000)).global_position) p;
-- results that spill to disk (beyond work_mem)
SET work_mem = '64kB';
SELECT pg_temp.read_digest(0, 100000) = pg_temp.select_digest(0, 100000) AS same_spilled;
RESET work_mem;
-- a cursor fetched in parts while other reads come and go; an error in a
-- savepoint (its result never ended) does not disturb the open cursor
BEGIN;
DECLARE c SCROLL CURSOR FOR
  SELECT global_position, stream_id, stream_version FROM es_read_all(:max_pos - 3000, 100000);
FETCH 2 FROM c;
SELECT pg_temp.read_digest(0, 2000) = pg_temp.select_digest(0, 2000) AS same;
MOVE FORWARD 1500 IN c;
FETCH 2 FROM c;
SAVEPOINT s;
SELECT global_position / (global_position - (:max_pos - 1000)) FROM es_read_all(:max_pos - 3000, 100000);
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.read_digest(0, 3000) = pg_temp.select_digest(0, 3000) AS same;
FETCH 2 FROM c;
FETCH BACKWARD 1 FROM c;
MOVE LAST IN c;
FETCH BACKWARD 1 FROM c;
SELECT count(*) AS rest FROM (SELECT 1 FROM es_read_all(:max_pos - 3000, 100000)) r;
COMMIT;
-- a holdable cursor outlives its transaction
BEGIN;
DECLARE h CURSOR WITH HOLD FOR
  SELECT global_position FROM es_read_all(:max_pos - 10, 100000);
FETCH 3 FROM h;
COMMIT;
SELECT pg_temp.read_digest(0, 5000) = pg_temp.select_digest(0, 5000) AS same;
FETCH ALL FROM h;
CLOSE h;
-- after an aborted transaction, reads are whole
BEGIN;
SELECT 1 / 0 FROM es_read_all(0, 100000);
ROLLBACK;
SELECT pg_temp.read_digest(0, 100000) = pg_temp.select_digest(0, 100000) AS same;
-- the arena itself: what results needed stays for the next calls, which
-- need no new memory, and an aborted read's leftovers are dropped
SELECT count(*) > 3000 AS large FROM es_read_all(0, 100000);
SELECT count(*) = (SELECT count(*) FROM es_events) AS every_event_loaded
  FROM (SELECT DISTINCT stream_id FROM es_read_all(0, 100000)) d,
       LATERAL es_load(d.stream_id) e;
SELECT total_bytes AS arena_bytes FROM pg_backend_memory_contexts
 WHERE name = 'event_sourcing read results' \gset
SELECT :arena_bytes > 1000000 AS kept;
SELECT count(*) AS pages FROM generate_series(0, 3000, 300) a,
       LATERAL (SELECT count(*) FROM es_read_all(a, 1000)) r;
SELECT count(*) > 3000 AS large FROM es_read_all(0, 100000);
SELECT count(*) = (SELECT count(*) FROM es_events) AS every_event_loaded
  FROM (SELECT DISTINCT stream_id FROM es_read_all(0, 100000)) d,
       LATERAL es_load(d.stream_id) e;
SELECT total_bytes = :arena_bytes AS reused FROM pg_backend_memory_contexts
 WHERE name = 'event_sourcing read results';
BEGIN;
SELECT global_position / (global_position - 2000) FROM es_read_all(0, 100000);
ROLLBACK;
SELECT total_bytes < 100000 AS emptied FROM pg_backend_memory_contexts
 WHERE name = 'event_sourcing read results';
SELECT pg_temp.read_digest(0, 100000) = pg_temp.select_digest(0, 100000) AS same;
-- es_load the same way: per row, and against its SELECT
SELECT count(*) AS loads,
       bool_and((SELECT md5(string_agg(e::text, '|' ORDER BY stream_version)) FROM es_load(s) e)
                = (SELECT md5(string_agg(x::text, '|' ORDER BY stream_version))
                     FROM es_events x WHERE x.stream_id = s)) AS same
  FROM (SELECT DISTINCT stream_id AS s FROM es_read_all(0, 100000)) d;

-- max_count at its limits
SELECT count(*) = (SELECT count(*) FROM es_events) AS all_rows FROM es_read_all(0, 2147483647);
SELECT count(*) AS none FROM es_read_all(:max_pos, 2147483647);
SELECT global_position = :max_pos AS last_one FROM es_read_all(:max_pos - 1, 1);
SELECT count(*) AS none FROM es_read_all(:max_pos - 1, 0);
SELECT global_position FROM es_read_all(0, 1);
SELECT count(*) AS one FROM es_read_category('arena', 0, 1);
SELECT count(*) AS none FROM es_read_category('arena', 0, 0);
SELECT count(*) AS none FROM es_read_category('arena', :max_pos, 2147483647);
SELECT es_read_all(0, -2147483648);
SELECT es_read_category('arena', 0, -1);
