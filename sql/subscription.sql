--
-- subscription: durable subscriptions with consumer groups
-- (src/subscription.c, src/subscription_read.c).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_sourcing;
RESET client_min_messages;
CREATE SCHEMA sb;
SET search_path = sb, public;
\pset null '(null)'

-- the events of this file start after what earlier files appended
CREATE TABLE sb.base AS SELECT es_safe_position() AS p;
-- positions relative to that, for stable output
CREATE FUNCTION sb.rel(p bigint) RETURNS bigint LANGUAGE sql AS $$ SELECT p - (SELECT p FROM sb.base) $$;
-- regress.err with the owner's name (the bootstrap superuser's) and, in
-- err_n, every number masked
CREATE FUNCTION sb.err(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regress.err(sql), 'role "[^"]*"', 'role "<owner>"', 'g')
$$;
CREATE FUNCTION sb.err_n(sql text) RETURNS text LANGUAGE sql AS $$
    SELECT regexp_replace(regress.err(sql), '([^0-9A-Z])[0-9]+', '\1N', 'g')
$$;

SELECT es_append('sbord-1', 0, '[{"type": "Placed", "data": {"n": 1}}, {"type": "Paid", "data": {"n": 2}}]');
SELECT es_append('sbinv-1', 0, 'Issued', '{"n": 3}');
SELECT es_append('sbord-2', 0, '[{"type": "Placed", "data": {"n": 4}}, {"type": "Shipped", "data": {"n": 5}}]');
SELECT es_append('sbord-1', 2, 'Shipped', '{"n": 6}');

--
-- es_define_subscription: arguments
--
SELECT regress.err($$SELECT es_define_subscription(NULL)$$);
SELECT regress.err($$SELECT es_define_subscription('')$$);
SELECT regress.err($$SELECT es_define_subscription('x', 'sb-ord')$$);
SELECT regress.err($$SELECT es_define_subscription('x', NULL, '{}')$$);
SELECT regress.err($$SELECT es_define_subscription('x', NULL, ARRAY['A', NULL])$$);
SELECT regress.err($$SELECT es_define_subscription('x', NULL, '{{A}}')$$);
SELECT regress.err($$SELECT es_define_subscription('x', start_position => -1)$$);
SELECT regress.err($$SELECT es_define_subscription('x', start_position => NULL)$$);
SELECT regress.err($$SELECT es_define_subscription('x', group_size => 0)$$);
SELECT regress.err($$SELECT es_define_subscription('x', group_size => 1025)$$);

-- orders of category sbord, placed or shipped (the types are kept sorted,
-- without duplicates), from the start of this file's events
SELECT es_define_subscription('sb_orders', 'sbord', ARRAY['Shipped', 'Placed', 'Shipped'],
                              (SELECT p FROM sb.base));
SELECT regress.err($$SELECT es_define_subscription('sb_orders')$$);
SELECT name, category, event_types, group_size, owner = current_user::regrole AS mine
  FROM es_subscription_defs WHERE name = 'sb_orders';

--
-- Reading and acknowledging
--
SELECT sb.rel(global_position) AS pos, stream_id, stream_version, event_type, data
  FROM es_subscription_read('sb_orders');
-- not acknowledged: the same events again
SELECT sb.rel(global_position) AS pos, event_type FROM es_subscription_read('sb_orders');
-- at most max_count
SELECT sb.rel(global_position) AS pos, event_type FROM es_subscription_read('sb_orders', 2);
SELECT es_subscription_ack('sb_orders', (SELECT p + 4 FROM sb.base));
SELECT sb.rel(global_position) AS pos, event_type FROM es_subscription_read('sb_orders');
SELECT es_subscription_ack('sb_orders', (SELECT p + 6 FROM sb.base));
-- caught up: no rows
SELECT count(*) FROM es_subscription_read('sb_orders');
SELECT member, sb.rel(position) AS position, lag, last_ack_at IS NOT NULL AS acked, filters
  FROM es_subscriptions WHERE name = 'sb_orders';
-- an append that matches, and one that does not
SELECT es_append('sbord-3', 0, 'Placed', '{"n": 7}');
SELECT es_append('sbord-3', 1, 'Paid', '{"n": 8}');
SELECT member, lag FROM es_subscriptions WHERE name = 'sb_orders';
SELECT sb.rel(global_position) AS pos, stream_id, event_type FROM es_subscription_read('sb_orders');

-- errors
SELECT sb.err_n($$SELECT es_subscription_ack('sb_orders', (SELECT p + 5 FROM sb.base))$$);
SELECT sb.err_n($$SELECT es_subscription_ack('sb_orders', es_safe_position() + 1)$$);
SELECT regress.err($$SELECT es_subscription_ack('sb_orders', NULL)$$);
SELECT regress.err($$SELECT * FROM es_subscription_read('sb_nothing')$$);
SELECT regress.err($$SELECT * FROM es_subscription_read('sb_orders', 10, 1)$$);
SELECT regress.err($$SELECT * FROM es_subscription_read('sb_orders', -1)$$);
SELECT regress.err($$SELECT * FROM es_subscription_read('sb_orders', 10, NULL)$$);
SELECT count(*) FROM es_subscription_read('sb_orders', 0);

-- es_subscription_wait: an event is there; after the ack, none within 0 ms
SELECT es_subscription_wait('sb_orders', 0, 0);
SELECT es_subscription_ack('sb_orders', (SELECT max(global_position) FROM es_events WHERE stream_id = 'sbord-3'));
SELECT es_subscription_wait('sb_orders', 0, 0);
SELECT regress.err($$SELECT es_subscription_wait('sb_orders', 0, -1)$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress.err($$SELECT es_subscription_wait('sb_orders', 0, 0)$$);
ROLLBACK;

--
-- Sparse filters: an empty read remembers how far it scanned
--
SELECT es_define_subscription('sb_rare', NULL, ARRAY['SbRare'], (SELECT p FROM sb.base));
SELECT count(*) FROM es_subscription_read('sb_rare');
SELECT sb.rel(position) AS position, sb.rel(scanned_to) AS scanned_to
  FROM es_subscription_members WHERE name = 'sb_rare';
SELECT es_append('sbrare-1', 0, 'SbRare', '{"n": 9}');
SELECT es_append('sbord-4', 0, 'Placed', '{"n": 10}');
SELECT sb.rel(global_position) AS pos, event_type FROM es_subscription_read('sb_rare');
-- the event before the first match is as far as nothing matched
SELECT sb.rel(position) AS position, sb.rel(scanned_to) AS scanned_to
  FROM es_subscription_members WHERE name = 'sb_rare';
SELECT es_subscription_ack('sb_rare', (SELECT max(global_position) FROM es_events WHERE stream_id = 'sbrare-1'));
SELECT count(*) FROM es_subscription_read('sb_rare');
SELECT sb.rel(position) AS position, sb.rel(scanned_to) AS scanned_to
  FROM es_subscription_members WHERE name = 'sb_rare';
-- in a read-only transaction the read works but remembers nothing
SELECT es_append('sbord-4', 1, 'Paid', '{"n": 11}');
BEGIN READ ONLY;
SELECT count(*) FROM es_subscription_read('sb_rare');
SELECT regress.err($$SELECT es_subscription_ack('sb_rare', 1)$$);
ROLLBACK;
SELECT sb.rel(scanned_to) AS scanned_to FROM es_subscription_members WHERE name = 'sb_rare';

--
-- Consumer groups: each stream belongs to one member
--
SELECT s, es_subscription_member(s, 3) AS member
  FROM unnest(ARRAY['sbord-1', 'sbord-2', 'sbord-3', 'sbord-4', 'sbinv-1']) s ORDER BY s;
SELECT regress.err($$SELECT es_subscription_member('x', 0)$$);
SELECT regress.err($$SELECT es_subscription_member(NULL, 2)$$);
SELECT es_define_subscription('sb_group', 'sbord', NULL, (SELECT p FROM sb.base), 3);
SELECT m, string_agg(stream_id || '/' || stream_version, ' ' ORDER BY global_position) AS events
  FROM generate_series(0, 2) m, es_subscription_read('sb_group', 100, m) GROUP BY m ORDER BY m;
-- every event of the category exactly once across the group, each
-- stream's in order
SELECT (SELECT count(*) FROM generate_series(0, 2) m, es_subscription_read('sb_group', 100, m))
     = (SELECT count(*) FROM es_read_category('sbord', (SELECT p FROM sb.base))) AS all_once;
SELECT bool_and(es_subscription_member(stream_id, 3) = m) AS own_streams_only
  FROM generate_series(0, 2) m, es_subscription_read('sb_group', 100, m);

-- members acknowledge separately; resizing restarts every member after the
-- lowest checkpoint (what was acknowledged beyond it comes again)
SELECT es_subscription_ack('sb_group', (SELECT p + 3 FROM sb.base), 0);
SELECT es_subscription_ack('sb_group', (SELECT p + 7 FROM sb.base), 1);
SELECT member, sb.rel(position) AS position FROM es_subscriptions WHERE name = 'sb_group' ORDER BY member;
SELECT regress.err($$SELECT es_alter_subscription('sb_group', 0)$$);
SELECT es_alter_subscription('sb_group', 2);
SELECT member, group_size, sb.rel(position) AS position FROM es_subscriptions WHERE name = 'sb_group' ORDER BY member;
SELECT regress.err($$SELECT * FROM es_subscription_read('sb_group', 100, 2)$$);

-- reset: one member, or all
SELECT es_subscription_reset('sb_group', (SELECT p + 1 FROM sb.base), 1);
SELECT member, sb.rel(position) AS position FROM es_subscriptions WHERE name = 'sb_group' ORDER BY member;
SELECT es_subscription_reset('sb_group', (SELECT p FROM sb.base));
SELECT member, sb.rel(position) AS position FROM es_subscriptions WHERE name = 'sb_group' ORDER BY member;
SELECT regress.err($$SELECT es_subscription_reset('sb_group', -1)$$);
SELECT regress.err($$SELECT es_subscription_reset('sb_group', 0, 5)$$);

--
-- System events reach subscriptions that ask for them
--
SELECT es_define_subscription('sb_deleted', NULL, ARRAY['$StreamDeleted'], (SELECT p FROM sb.base));
SELECT es_delete_stream('sbord-4', reason => 'test');
SELECT stream_id, stream_version, event_type, data FROM es_subscription_read('sb_deleted');

--
-- Read-your-writes: es_subscription_wait_acked, true once every member has
-- acknowledged all of its own events up to the position
--
SELECT es_define_subscription('sb_ryw', 'sbryw', NULL, es_safe_position(), 2);
SELECT s, es_subscription_member(s, 2) AS member
  FROM unnest(ARRAY['sbryw-1', 'sbryw-2', 'sbryw-3']) s ORDER BY s;
-- member 0's event first
SELECT es_append(s, NULL, 'Noted', '{}') FROM unnest(ARRAY['sbryw-2', 'sbryw-1', 'sbryw-3']) s;
SELECT es_safe_position() AS ryw \gset
SELECT es_subscription_wait_acked('sb_ryw', :ryw, 0) AS acked,
       es_subscription_wait_acked('sb_ryw', :ryw - 2, 0) AS acked_first;
-- member 0 acknowledges its events: member 1 has not
SELECT es_subscription_ack('sb_ryw', max(global_position), 0) FROM es_subscription_read('sb_ryw', 100, 0);
SELECT es_subscription_wait_acked('sb_ryw', :ryw, 0) AS acked;
-- up to the first event, member 1 has nothing of its own: done
SELECT es_subscription_wait_acked('sb_ryw', :ryw - 2, 0) AS acked;
SELECT es_subscription_ack('sb_ryw', max(global_position), 1) FROM es_subscription_read('sb_ryw', 100, 1);
SELECT es_subscription_wait_acked('sb_ryw', :ryw, 0) AS acked;
-- events after it that the members have not acknowledged do not matter;
-- other categories and types do not count; the log must reach the position
SELECT es_append('sbryw-1', NULL, 'Noted', '{}');
SELECT es_subscription_wait_acked('sb_ryw', :ryw, 0) AS acked;
SELECT es_subscription_wait_acked('sb_ryw', es_safe_position(), 0) AS acked;
SELECT es_subscription_ack('sb_ryw', max(global_position), m)
  FROM generate_series(0, 1) m, es_subscription_read('sb_ryw', 100, m) GROUP BY m;
SELECT es_append('sbother-1', NULL, 'Noted', '{}');
SELECT es_subscription_wait_acked('sb_ryw', es_safe_position(), 0) AS acked;
SELECT es_subscription_wait_acked('sb_ryw', es_safe_position() + 1, 0) AS acked;
-- a position before the start: nothing to wait for
SELECT es_subscription_wait_acked('sb_ryw', 1, 0) AS acked;
-- errors
SELECT regress.err($$SELECT es_subscription_wait_acked('sb_nothing', 1, 0)$$);
SELECT regress.err($$SELECT es_subscription_wait_acked('sb_ryw', NULL, 0)$$);
SELECT regress.err($$SELECT es_subscription_wait_acked('sb_ryw', 1, -1)$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress.err($$SELECT es_subscription_wait_acked('sb_ryw', 1, 0)$$);
ROLLBACK;
SELECT es_drop_subscription('sb_ryw');

--
-- Leases: this session holds what it read; releasing gives it up
--
SELECT es_subscription_release('sb_group', 0);
SELECT es_subscription_release('sb_group', 0);
SELECT es_subscription_release('sb_nothing', 0);

--
-- Privileges: nothing for PUBLIC; another role's subscription is its own
--
CREATE ROLE regress_es_consumer;
GRANT USAGE ON SCHEMA sb, regress TO regress_es_consumer;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA sb TO regress_es_consumer;
SET ROLE regress_es_consumer;
SELECT regress.err($$SELECT * FROM es_subscription_read('sb_orders')$$);
SELECT regress.err($$SELECT count(*) FROM es_subscriptions$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION es_subscription_read(text, integer, integer),
    es_subscription_ack(text, bigint, integer), es_subscription_wait(text, integer, integer),
    es_define_subscription(text, text, text[], bigint, integer),
    es_drop_subscription(text) TO regress_es_consumer;
GRANT SELECT ON sb.base TO regress_es_consumer;
SET ROLE regress_es_consumer;
SELECT sb.err($$SELECT * FROM es_subscription_read('sb_orders')$$);
SELECT sb.err($$SELECT es_subscription_ack('sb_orders', 1)$$);
SELECT sb.err($$SELECT es_drop_subscription('sb_orders')$$);
-- its own
SELECT es_define_subscription('sb_mine', 'sbord', start_position => (SELECT p FROM sb.base));
SELECT count(*) FROM es_subscription_read('sb_mine');
SELECT es_drop_subscription('sb_mine');
RESET ROLE;

--
-- Dropping
--
SELECT es_drop_subscription('sb_group');
SELECT regress.err($$SELECT es_drop_subscription('sb_group')$$);
SELECT count(*) FROM es_subscription_members WHERE name = 'sb_group';

SELECT es_drop_subscription('sb_orders'), es_drop_subscription('sb_rare'), es_drop_subscription('sb_deleted');
SET client_min_messages = warning;
DROP SCHEMA sb CASCADE;
RESET client_min_messages;
DROP OWNED BY regress_es_consumer;
DROP ROLE regress_es_consumer;
