-- 07_log_bound.sql: how appenders publish what they hold, and es_log_mark.
--
-- This suite's cluster does not preload the library, so an appending
-- transaction publishes its lowest position in two private heavyweight locks
-- (LOCKTAG_USERLOCK, shown in pg_locks as locktype 'userlock'): one per
-- database saying "an appender is in flight" (objsubid 17713) and one whose
-- tag holds a lower bound of its positions (objsubid 17714, the bound in
-- classid:objid).  Checked here: they are taken by the first append of a
-- transaction and by nothing else, no advisory lock is used, a rolled-back
-- savepoint releases them, a later append takes them again, and the
-- transaction's own reads see its own events.  Then the es_log_mark table
-- (1.3): shape, constraints, membership, no dump, no privileges.
BEGIN;
SELECT plan(27);

CREATE EXTENSION event_sourcing;

CREATE FUNCTION pg_temp.userlocks() RETURNS TABLE (kind int, lowest bigint)
LANGUAGE sql AS $$
    SELECT objsubid::int, (classid::bigint << 32) | objid::bigint
      FROM pg_locks
     WHERE locktype = 'userlock' AND pid = pg_backend_pid() AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
     ORDER BY 1
$$;

-- ---------------------------------------------------------------------------
-- The private locks
-- ---------------------------------------------------------------------------
SELECT is((SELECT count(*) FROM pg_temp.userlocks()), 0::bigint,
          'no private lock before the first append');
SELECT is(es_safe_position(), 0::bigint, 'empty log: safe position 0');

SAVEPOINT a;
SELECT is(es_append('lock-1', NULL, 'Happened', '{}'), 1::bigint, 'an append in a savepoint');
SELECT is((SELECT array_agg(kind) FROM pg_temp.userlocks()), ARRAY[17713, 17714],
          'the first append takes both private locks');
SELECT is((SELECT lowest FROM pg_temp.userlocks() WHERE kind = 17714), 1::bigint,
          'the second one names a lower bound of the positions drawn (here exactly the first)');
SELECT is((SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (1, 2)), 0::bigint,
          'no lock that pg_advisory_* functions can take (they use objsubid 1 and 2) is involved');
SELECT is(es_append('lock-1', 1, '[{"type": "Happened", "data": {}}, {"type": "Happened", "data": {}}]'::jsonb), 3::bigint, 'more appends');
SELECT is((SELECT count(*) FROM pg_temp.userlocks()), 2::bigint,
          'later appends of the transaction take no further lock');
SELECT is((SELECT array_agg(global_position ORDER BY global_position) FROM es_read_all(0)),
          ARRAY[1, 2, 3]::bigint[],
          'the transaction reads its own events (nobody else is in flight)');
SELECT is(es_safe_position(), 3::bigint, 'and its safe position includes them');
ROLLBACK TO SAVEPOINT a;

SELECT is((SELECT count(*) FROM pg_temp.userlocks()), 0::bigint,
          'ROLLBACK TO SAVEPOINT releases the locks with the positions');
SELECT is(es_safe_position(), 3::bigint, 'rolled-back positions count as done');
SELECT is((SELECT count(*) FROM es_read_all(0)), 0::bigint, 'and are never read');

SAVEPOINT b;
SELECT is(es_append('lock-2', NULL, 'Happened', '{}'), 1::bigint, 'an append after the rollback');
SELECT is((SELECT lowest FROM pg_temp.userlocks() WHERE kind = 17714), 4::bigint,
          'takes the locks again, with the new lower bound');
RELEASE SAVEPOINT b;
SELECT is((SELECT count(*) FROM pg_temp.userlocks()), 2::bigint,
          'RELEASE SAVEPOINT hands the locks to the transaction');
SELECT is((SELECT array_agg(global_position) FROM es_read_all(0)), ARRAY[4]::bigint[],
          'the released event is read');

-- ---------------------------------------------------------------------------
-- es_log_mark
-- ---------------------------------------------------------------------------
SELECT has_table('public', 'es_log_mark', 'es_log_mark is a table');
SELECT is(
    (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''),
                       ', ' ORDER BY a.attnum)
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = 'public.es_log_mark'::regclass AND a.attnum > 0 AND NOT a.attisdropped),
    'id boolean not null default true, position bigint not null, published_at timestamp with time zone not null',
    'es_log_mark: columns in order, with types, NOT NULL and defaults');
SELECT col_is_pk('public', 'es_log_mark', ARRAY['id'], 'es_log_mark: id is the primary key');
SELECT is((SELECT count(*) FROM es_log_mark), 0::bigint,
          'es_log_mark is empty until a log mark writer publishes (the library is not preloaded here)');
SELECT throws_ok($$INSERT INTO es_log_mark VALUES (false, 1, now())$$, '23514', NULL,
                 'es_log_mark holds at most one row (id must be true)');
SELECT throws_ok($$INSERT INTO es_log_mark VALUES (true, -1, now())$$, '23514', NULL,
                 'a mark is never negative');
SELECT ok(EXISTS (SELECT 1 FROM pg_depend d, pg_extension e
                   WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                     AND e.extname = 'event_sourcing' AND d.deptype = 'e'
                     AND d.classid = 'pg_class'::regclass AND d.objid = 'public.es_log_mark'::regclass),
          'es_log_mark is a member of the extension');
SELECT ok(NOT (SELECT 'public.es_log_mark'::regclass::oid = ANY (extconfig)
                 FROM pg_extension WHERE extname = 'event_sourcing'),
          'es_log_mark is not dumped (a restored database publishes its own mark)');
SELECT table_privs_are('public', 'es_log_mark', 'public', ARRAY[]::name[],
                       'PUBLIC has no privilege on es_log_mark');
SELECT is(current_setting('event_sourcing.log_mark_interval'), '10ms',
          'event_sourcing.log_mark_interval defaults to 10 ms');

SELECT * FROM finish();
ROLLBACK;
