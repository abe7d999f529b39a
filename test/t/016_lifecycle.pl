# Copyright: event_sourcing contributors
#
# 016_lifecycle.pl
#	  Deleted, truncated and redacted streams, retention policies and the
#	  erasure audit (doc/lifecycle.md; src/lifecycle.c, src/retention.c)
#	  across the things that happen to a database outside a session.
#
#	  One node "store" (wal_level = logical, the library preloaded,
#	  event_sourcing.retention_interval = 1) and a logical subscriber.
#
#	  1. pg_dump -Fc / pg_restore: a database with a deleted stream, a
#		 truncated one (an aggregate's, folded once first), a redacted event,
#		 two retention policies (one applied) and the es_erasures rows all
#		 that produced, plus a rolled-back deletion (its audit id is used up).
#		 After the restore es_events, es_erasures, es_retention_policies
#		 and the audit sequence are identical; appending to the deleted
#		 stream fails with 55000, constraint es_stream_deleted (also as an
#		 idempotent retry of a removed event); a new deletion gets an
#		 erasure_id beyond every restored one and beyond the rolled-back
#		 one; es_aggregate of the truncated stream folds from the restored
#		 snapshot to the source's state; the audit is still append-only.
#	  2. The background worker applies retention: old events (es_import,
#		 recorded in 2020) of a category with a 30-day policy are removed by
#		 the worker alone (nobody calls es_apply_retention), each stream
#		 keeping its newest event; a category without a policy is untouched;
#		 es_erasures says 'retention', the category and how many; the
#		 server log has no ERROR meanwhile.  With retention_interval = 0
#		 (ALTER SYSTEM, reload) new old events of the category are still
#		 there a few seconds later; set back to 1, the worker removes them
#		 (so it was the setting that kept them).
#	  3. Logical replication: es_events published; after the initial copy
#		 a deletion, a truncation and a redaction on the publisher reach the
#		 subscriber (whose es_events keeps its statement-level immutability
#		 trigger enabled ALWAYS): its es_events then equals the publisher's,
#		 every column, and the apply worker reported no error.
#	  4. Crash recovery: a committed transaction that deleted a stream and
#		 redacted an event (after a checkpoint, so recovery replays them),
#		 and an uncommitted deletion (its WAL flushed by a later commit)
#		 open when the server is stopped in mode immediate: after the
#		 restart the committed tombstone, redaction and audit rows are
#		 there; the uncommitted stream has all its events, no tombstone,
#		 no audit row, and takes appends.
#
#	  Negative controls (scratch builds and copies, not committed):
#	  es_erasures and its sequence not in pg_extension_config_dump, es_append
#	  not checking the tombstone, es_snapshots emptied in the restored
#	  database, a worker that never applies retention, or whose passes fail,
#	  or that ignores retention_interval = 0, a row-level immutability
#	  trigger on the subscriber, the open deletion committed, or the
#	  committed transaction rolled back: each fails the checks above that
#	  concern it.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/016_lifecycle.pl

use strict;
use warnings;

use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $t_start = time();

my $node = es_node(
	'store', q{
max_worker_processes = 16
shared_preload_libraries = 'event_sourcing'
event_sourcing.retention_interval = 1
},
	allows_streaming => 'logical');

my $tempdir = PostgreSQL::Test::Utils::tempdir;

# Every column of every row, in order.
my $events_sql = q{SELECT e::text FROM es_events e ORDER BY global_position};
my $erasures_sql = q{SELECT e::text FROM es_erasures e ORDER BY erasure_id};
my $policies_sql =
  q{SELECT p::text FROM es_retention_policies p ORDER BY category};

#
# 1. Dump and restore.
#
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
CREATE EXTENSION event_sourcing;

-- an aggregate over category acct
CREATE FUNCTION acct_evolve(state jsonb, e es_events) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object('balance', (state->>'balance')::numeric
                                         + coalesce((e.data->>'amount')::numeric, 0),
                              'n', (state->>'n')::int + 1)
$$;
CREATE FUNCTION acct_decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT '[{"type": "Deposited", "data": {"amount": 1}}]'::jsonb $$;
SELECT es_define_aggregate('acct', 'acct_evolve(jsonb, es_events)',
                           '{"balance": 0, "n": 0}', 'acct_decide(jsonb, jsonb)', 2);

SELECT es_append('order-1', 0, '[{"type": "Placed", "data": {"n": 1}, "id": "00000000-0000-7000-8000-00000000a001"},
                                 {"type": "Paid", "data": {"n": 2}},
                                 {"type": "Shipped", "data": {"n": 3}}]');
SELECT es_append('order-2', 0, 'Placed', '{"n": 1}');
SELECT es_append('note-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'N', 'data', jsonb_build_object('i', i)))
                               FROM generate_series(1, 5) i));
SELECT es_append('acct-1', 0, (SELECT jsonb_agg(jsonb_build_object('type', 'Deposited',
                                                                   'data', jsonb_build_object('amount', i)))
                               FROM generate_series(1, 5) i));
SELECT es_append('user-1', 0, 'Registered',
                 '{"name": "Ann", "email": "ann@example.org", "city": "Oslo"}',
                 '{"ip": "192.0.2.1", "source": "web"}', '00000000-0000-7000-8000-00000000a101');
SELECT es_append('user-1', 1, 'Renamed', '{"name": "Anne"}');

CREATE TABLE old_src AS
    SELECT 'metric-' || s AS stream_id, v::bigint AS stream_version, 'Sampled'::text AS event_type,
           jsonb_build_object('v', v) AS data,
           timestamptz '2020-01-01 00:00:00+00' + v * interval '1 hour' AS recorded_at
      FROM generate_series(1, 2) s, generate_series(1, 4) v;
SELECT es_import('old_src');
});

# The removals, each audited.
$node->safe_psql(
	'src', q{
SELECT es_delete_stream('order-1', 3, 'erasure request 17');
SELECT es_truncate_stream('note-1', 3, 'old notes');
SELECT * FROM es_aggregate('acct-1');   -- folds once: stores a snapshot at 5
SELECT es_append('acct-1', 5, 'Deposited', '{"amount": 100}');
SELECT es_truncate_stream('acct-1', 5, 'covered by the snapshot');
SELECT es_redact_event('00000000-0000-7000-8000-00000000a101',
                       ARRAY['email', 'metadata.ip'], 'erasure request 18');
SELECT es_set_retention('metric', '30 days');
SELECT es_set_retention('log', NULL, 100);
SELECT es_apply_retention();
});
# A rolled-back deletion uses up an audit id.
$node->safe_psql(
	'src', q{
BEGIN;
SELECT es_delete_stream('order-2');
ROLLBACK;
});

my $src_events   = $node->safe_psql('src', $events_sql);
my $src_erasures = $node->safe_psql('src', $erasures_sql);
my $src_policies = $node->safe_psql('src', $policies_sql);
my $audit_seq_sql =
  q{SELECT last_value || '/' || is_called FROM es_erasures_erasure_id_seq};
my $src_audit_seq = $node->safe_psql('src', $audit_seq_sql);
my $src_max_erasure =
  $node->safe_psql('src', 'SELECT max(erasure_id) FROM es_erasures');
my $src_aggregate =
  $node->safe_psql('src', q{SELECT version, state FROM es_aggregate('acct-1')});

# The source is what the test means it to be.
is( $node->safe_psql(
		'src', q{SELECT string_agg(operation || ':' || coalesce(stream_id, category) || ':' || event_count,
		                           ',' ORDER BY erasure_id) FROM es_erasures}),
	'delete_stream:order-1:3,truncate_stream:note-1:2,truncate_stream:acct-1:4,'
	  . 'redact_event:user-1:1,retention:metric:6',
	'source: one audit row per deletion, truncation, redaction and retention pass');
is( $node->safe_psql(
		'src', q{SELECT string_agg(stream_id || ':' || stream_version || ':' || event_type,
		                           ',' ORDER BY global_position)
		         FROM es_events WHERE stream_id IN ('order-1', 'note-1', 'acct-1')}),
	'note-1:3:N,note-1:4:N,note-1:5:N,acct-1:5:Deposited,order-1:4:$StreamDeleted,'
	  . 'acct-1:6:Deposited',
	'source: order-1 is only its tombstone, note-1 and acct-1 are truncated');
is( $node->safe_psql(
		'src', q{SELECT data::text || ' ' || metadata::text FROM es_events
		         WHERE event_id = '00000000-0000-7000-8000-00000000a101'}),
	'{"city": "Oslo", "name": "Ann"} {"source": "web"}',
	'source: the event is redacted');
is($src_aggregate, '6|{"n": 6, "balance": 115}',
	'source: acct-1 folds from its snapshot after the truncation');
my ($src_seq_last) = split m{/}, $src_audit_seq;
cmp_ok($src_seq_last, '>', $src_max_erasure,
	'source: the audit sequence is ahead of max(erasure_id) (rolled-back deletion)');

dump_restore_custom($node, 'src', 'dst', "$tempdir/src.dump");

is($node->safe_psql('dst', $events_sql),
	$src_events, 'restored: es_events identical, every column');
is($node->safe_psql('dst', $erasures_sql),
	$src_erasures, 'restored: es_erasures identical, every column');
is($node->safe_psql('dst', $policies_sql),
	$src_policies, 'restored: es_retention_policies identical, every column');
is($node->safe_psql('dst', $audit_seq_sql),
	$src_audit_seq, 'restored: the audit sequence');
is($node->safe_psql('dst', 'SELECT count(*) FROM es_erasures'),
	'5', 'restored: the five audit rows');
is($node->safe_psql('dst', 'SELECT count(*) FROM es_retention_policies'),
	'2', 'restored: the two policies');

# The tombstone still refuses appends.
my $err = fails_with($node, 'dst',
	q{SELECT es_append('order-1', NULL, 'Placed', '{}')},
	'55000', 'restored: appending to the deleted stream fails with 55000');
like($err, qr/CONSTRAINT NAME:\s+es_stream_deleted/,
	'restored: the constraint is es_stream_deleted');
$err = fails_with($node, 'dst',
	q{SELECT es_append('order-1', 0, 'Placed', '{"n": 1}', '{}', '00000000-0000-7000-8000-00000000a001')},
	'55000',
	'restored: an idempotent retry of a removed event of the deleted stream fails with 55000');
like($err, qr/CONSTRAINT NAME:\s+es_stream_deleted/,
	'restored: ... also with constraint es_stream_deleted');

# The aggregate folds from the restored snapshot.
my ($rc, $out);
($rc, $out, $err) = run_sql($node, 'dst',
	q{SELECT version, state FROM es_aggregate('acct-1')});
is($out, $src_aggregate,
	'restored: es_aggregate of the truncated stream gives the source\'s state')
  or diag($err);

# New audit rows come after the restored ones.
is($node->safe_psql('dst', q{SELECT es_delete_stream('order-2', 1, 'after restore')}),
	'1', 'restored: a new deletion');
my $new_id = $node->safe_psql('dst',
	q{SELECT erasure_id FROM es_erasures WHERE stream_id = 'order-2'});
cmp_ok($new_id, '>', $src_max_erasure,
	'restored: the new deletion\'s erasure_id is beyond every restored one');
cmp_ok($new_id, '>', $src_seq_last,
	'restored: ... and beyond the id the rolled-back deletion used up');

# Still append-only.
fails_with($node, 'dst', q{DELETE FROM es_erasures}, '55000',
	'restored: DELETE on es_erasures fails with 55000');
fails_with($node, 'dst', q{UPDATE es_events SET data = '{}' WHERE stream_id = 'note-1'},
	'55000', 'restored: UPDATE on es_events fails with 55000');

is($node->safe_psql('src', $events_sql), $src_events, 'source: unchanged');

#
# 2. The background worker applies retention.
#
my $t_part2 = time();
$node->safe_psql('postgres', 'CREATE DATABASE retain');
$node->safe_psql(
	'retain', q{
CREATE EXTENSION event_sourcing;
CREATE TABLE old_src AS
    SELECT c || '-' || s AS stream_id, v::bigint AS stream_version, 'Sampled'::text AS event_type,
           jsonb_build_object('v', v) AS data,
           timestamptz '2020-01-01 00:00:00+00' + v * interval '1 hour' AS recorded_at
      FROM unnest(ARRAY['metric', 'keep']) c, generate_series(1, 3) s, generate_series(1, 5) v;
SELECT es_import('old_src');
SELECT es_append('metric-3', 5, 'Sampled', '{"v": 6}');
});
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET event_sourcing.worker_databases = 'retain'});
$node->reload;
ok( $node->poll_query_until(
		'postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing worker' AND datname = 'retain'}),
	'the worker runs in database retain');

my $log_offset = -s $node->logfile;
is($node->safe_psql('retain', 'SELECT count(*) FROM es_events'),
	'31', 'retain: 30 old events and a new one');
$node->safe_psql('retain', q{SELECT es_set_retention('metric', '30 days')});

my $streams_sql = q{
SELECT string_agg(stream_id || ':' || stream_version, ',' ORDER BY stream_id, stream_version)
FROM es_events WHERE stream_id LIKE $1 || '-%'};
(my $metric_sql = $streams_sql) =~ s/\$1/'metric'/;
(my $keep_sql   = $streams_sql) =~ s/\$1/'keep'/;
ok( $node->poll_query_until('retain', $metric_sql, 'metric-1:5,metric-2:5,metric-3:6'),
	'retain: the worker removed the old events of category metric, each stream keeps its newest'
) or diag('left: ' . $node->safe_psql('retain', $metric_sql));
is( $node->safe_psql('retain', $keep_sql),
	join(',', map { my $s = $_; map { "keep-$s:$_" } 1 .. 5 } 1 .. 3),
	'retain: category keep (no policy) is untouched');
is( $node->safe_psql(
		'retain', q{SELECT string_agg(DISTINCT operation || '/' || category, ','),
		                   sum(event_count), bool_and(stream_id IS NULL AND event_id IS NULL),
		                   bool_and(reason LIKE '%30 days%')
		            FROM es_erasures}),
	'retention/metric|13|t|t',
	'retain: es_erasures records the retention of 13 events of category metric');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/ERROR/, 'retain: no ERROR in the server log while the worker applied retention')
  or diag($log);
my $erasures_before = $node->safe_psql('retain', 'SELECT count(*) FROM es_erasures');

# Turned off: new old events stay.
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET event_sourcing.retention_interval = 0});
$node->reload;
# let the worker take the reload (it sleeps at most the 1 s interval, and
# the reload wakes it)
sleep 2;
$node->safe_psql(
	'retain', q{
CREATE TABLE old_src2 AS
    SELECT 'metric-9' AS stream_id, v::bigint AS stream_version, 'Sampled'::text AS event_type,
           jsonb_build_object('v', v) AS data,
           timestamptz '2020-02-01 00:00:00+00' + v * interval '1 hour' AS recorded_at
      FROM generate_series(1, 4) v;
SELECT es_import('old_src2');
});
sleep 3;
is( $node->safe_psql('retain', q{SELECT count(*) FROM es_events WHERE stream_id = 'metric-9'}),
	'4', 'retain: with retention_interval = 0 the new old events are still there after 3 s');
is($node->safe_psql('retain', 'SELECT count(*) FROM es_erasures'),
	$erasures_before, 'retain: and no new retention pass was audited');

# Turned on again: the worker removes them (so the setting kept them).
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET event_sourcing.retention_interval = 1});
$node->reload;
ok( $node->poll_query_until(
		'retain', q{SELECT string_agg(stream_version::text, ',') FROM es_events WHERE stream_id = 'metric-9'},
		'4'),
	'retain: with retention_interval = 1 again the worker removes them, keeping the head');
$log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/ERROR/, 'retain: no ERROR in the server log throughout')
  or diag($log);

# A backlog larger than a batch: after each full batch the worker pauses so
# that retention takes retention_duty_cycle percent of its time (20: four
# times as long as the batch took), and says so at DEBUG1.
$node->safe_psql('postgres', q{ALTER SYSTEM SET event_sourcing.retention_duty_cycle = 20});
$node->safe_psql('postgres', q{ALTER SYSTEM SET log_min_messages = debug1});
$node->reload;
$log_offset = -s $node->logfile;
$node->safe_psql(
	'retain', q{
CREATE TABLE bulk_src AS
    SELECT 'bulk-' || s AS stream_id, v::bigint AS stream_version, 'Sampled'::text AS event_type,
           '{}'::jsonb AS data, timestamptz '2020-03-01 00:00:00+00' + v * interval '1 minute' AS recorded_at
      FROM generate_series(1, 250) s, generate_series(1, 100) v;
SELECT es_import('bulk_src');
SELECT es_set_retention('bulk', '30 days');
});
ok( $node->poll_query_until(
		'retain', q{SELECT count(*) = 250 AND min(stream_version) = 100 FROM es_events WHERE stream_id LIKE 'bulk-%'}),
	'retain: the worker removes a backlog of 24,750 events (three batches), keeping each stream\'s newest');
$log = slurp_file($node->logfile, $log_offset);
my @paced = $log =~ /retention batch of 10000 events took (\d+) ms; the next follows in (\d+) ms \(retention_duty_cycle 20\)/g;
is(scalar(@paced), 4, 'retain: the worker logged a pause after each of the two full batches');
for (my $i = 0; $i + 1 < @paced; $i += 2)
{
	is($paced[ $i + 1 ], int($paced[$i] * 80 / 20),
		"retain: batch took $paced[$i] ms, the pause is four times that ($paced[$i + 1] ms)");
}
# the next batch began no earlier than the pause after the one before
my @at = split /\n/, $node->safe_psql('retain',
	q{SELECT extract(epoch FROM erased_at) FROM es_erasures WHERE category = 'bulk' ORDER BY erasure_id});
is(scalar(@at), 3, 'retain: three retention passes of bulk are audited');
for my $k (0, 1)
{
	cmp_ok(($at[ $k + 1 ] - $at[$k]) * 1000, '>=', $paced[ 2 * $k + 1 ],
		'retain: batch ' . ($k + 2) . ' began after the pause (' . $paced[ 2 * $k + 1 ] . ' ms) that followed batch ' . ($k + 1));
}
$node->safe_psql('postgres', q{ALTER SYSTEM RESET event_sourcing.retention_duty_cycle});
$node->safe_psql('postgres', q{ALTER SYSTEM RESET log_min_messages});
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET event_sourcing.retention_interval = 0});
$node->reload;

#
# 3. Logical replication applies the removals.
#
my $t_part3 = time();
my $sub = es_node('subscriber', q{
max_logical_replication_workers = 4
max_worker_processes = 16
});
my $setup = q{
CREATE EXTENSION event_sourcing;
};
$node->safe_psql('postgres', 'CREATE DATABASE logical');
$sub->safe_psql('postgres', 'CREATE DATABASE logical');
$node->safe_psql('logical', $setup);
$sub->safe_psql('logical', $setup);
$node->safe_psql(
	'logical', q{
SELECT es_append('p-' || s, 0, (SELECT jsonb_agg(jsonb_build_object('type', 'E',
                                                                    'data', jsonb_build_object('s', s, 'i', i)))
                                FROM generate_series(1, 5) i))
  FROM generate_series(1, 4) s;
SELECT es_append('u-1', 0, 'Registered', '{"name": "Ann", "email": "ann@example.org"}',
                 '{"ip": "192.0.2.1"}', '00000000-0000-7000-8000-00000000b101');
CREATE PUBLICATION p FOR TABLE es_events;
});
my $pub_conn = $node->connstr . ' dbname=logical';
$sub->safe_psql('logical',
	"CREATE SUBSCRIPTION s CONNECTION '$pub_conn' PUBLICATION p");
$sub->wait_for_subscription_sync($node, 's', 'logical');
is($sub->safe_psql('logical', $events_sql),
	$node->safe_psql('logical', $events_sql),
	'subscriber: the initial copy equals the publisher\'s es_events');
is( $sub->safe_psql(
		'logical', q{SELECT tgenabled FROM pg_trigger
		             WHERE tgrelid = 'es_events'::regclass AND tgname = 'es_events_immutable'}),
	'A', 'subscriber: es_events\' immutability trigger is enabled ALWAYS');

$node->safe_psql(
	'logical', q{
SELECT es_delete_stream('p-1', 5, 'gone');
SELECT es_truncate_stream('p-2', 4);
SELECT es_redact_event('00000000-0000-7000-8000-00000000b101', ARRAY['email', 'metadata.ip']);
SELECT es_append('p-3', 5, 'E', '{"after": true}');
});
# (an apply worker whose change fails retries it forever: a failed wait is a
# failed check, not the end of the test)
ok(eval { $node->wait_for_catchup('s'); 1 },
	'subscriber: caught up with the deletion, truncation and redaction');
my $pub_events = $node->safe_psql('logical', $events_sql);
my $sub_events = $sub->safe_psql('logical', $events_sql);
is($sub_events, $pub_events,
	'subscriber: es_events equals the publisher\'s after the deletion, truncation and redaction');
is( $sub->safe_psql(
		'logical', q{SELECT string_agg(stream_id || ':' || stream_version, ',' ORDER BY global_position)
		             FROM es_events WHERE stream_id IN ('p-1', 'p-2')}),
	'p-2:4,p-2:5,p-1:6',
	'subscriber: p-1 is only its tombstone, p-2 starts at version 4');
is( $sub->safe_psql(
		'logical', q{SELECT data::text || ' ' || metadata::text FROM es_events
		             WHERE event_id = '00000000-0000-7000-8000-00000000b101'}),
	'{"name": "Ann"} {}',
	'subscriber: the event is redacted there too');
is( $sub->safe_psql(
		'logical', q{SELECT apply_error_count FROM pg_stat_subscription_stats WHERE subname = 's'}),
	'0', 'subscriber: the apply worker reported no error');
fails_with($sub, 'logical', q{SELECT es_delete_stream('p-3')}, '55000',
	'subscriber: es_delete_stream on the replica fails with 55000');
$sub->safe_psql('logical', 'DROP SUBSCRIPTION s');
$sub->stop;

#
# 4. Crash recovery.
#
my $t_part4 = time();
$node->safe_psql('postgres', 'CREATE DATABASE crash');
$node->safe_psql(
	'crash', q{
CREATE EXTENSION event_sourcing;
SELECT es_append('c-' || s, 0, (SELECT jsonb_agg(jsonb_build_object('type', 'E',
                                                                    'data', jsonb_build_object('s', s, 'i', i)))
                                FROM generate_series(1, 4) i))
  FROM generate_series(1, 3) s;
SELECT es_append('c-user', 0, 'Registered', '{"name": "Ann", "email": "ann@example.org"}',
                 '{}', '00000000-0000-7000-8000-00000000c101');
CHECKPOINT;
});

$node->safe_psql(
	'crash', q{
BEGIN;
SELECT es_delete_stream('c-1', 4, 'committed');
SELECT es_redact_event('00000000-0000-7000-8000-00000000c101', ARRAY['email'], 'committed');
COMMIT;
});
my $committed_events = $node->safe_psql('crash', $events_sql);
my $crash_sql = q{SELECT e::text FROM es_events e WHERE NOT e.data ? 'later'
                  ORDER BY global_position};

my $open = $node->background_psql('crash', on_error_stop => 1);
$open->query_safe(q{BEGIN; SELECT es_delete_stream('c-3', 4, 'never committed')});
# a later commit flushes the open transaction's WAL too
$node->safe_psql('crash', q{SELECT es_append('c-2', 4, 'E', '{"later": true}')});
is( $node->safe_psql('crash', q{SELECT count(*) FROM es_events WHERE stream_id = 'c-3'}),
	'4', 'crash: the open deletion is not visible to others before the crash');

$node->stop('immediate');
$open->quit;
$node->start;

is( $node->safe_psql(
		'crash', q{SELECT stream_version || ':' || event_type || ':' || data::text
		           FROM es_events WHERE stream_id = 'c-1'}),
	'5:$StreamDeleted:{"reason": "committed", "last_version": 4}',
	'crash: after recovery the committed deletion left only its tombstone');
is( $node->safe_psql(
		'crash', q{SELECT data::text FROM es_events WHERE event_id = '00000000-0000-7000-8000-00000000c101'}),
	'{"name": "Ann"}',
	'crash: after recovery the committed redaction holds');
is( $node->safe_psql(
		'crash', q{SELECT string_agg(operation || ':' || stream_id || ':' || reason, ',' ORDER BY erasure_id)
		           FROM es_erasures}),
	'delete_stream:c-1:committed,redact_event:c-user:committed',
	'crash: after recovery the audit has the committed rows only');
is( $node->safe_psql(
		'crash', q{SELECT string_agg(stream_version || ':' || event_type, ',' ORDER BY stream_version)
		           FROM es_events WHERE stream_id = 'c-3'}),
	'1:E,2:E,3:E,4:E',
	'crash: the uncommitted deletion left all events of its stream and no tombstone');
is( $node->safe_psql(
		'crash', q{SELECT string_agg(stream_version::text, ',' ORDER BY stream_version)
		           FROM es_events WHERE stream_id = 'c-2'}),
	'1,2,3,4,5',
	'crash: the commit after the open deletion survived');
is($node->safe_psql('crash', $crash_sql), $committed_events,
	'crash: es_events is exactly what was committed (every column)');
$err = fails_with($node, 'crash', q{SELECT es_append('c-1', NULL, 'E', '{}')},
	'55000', 'crash: the recovered tombstone refuses appends');
like($err, qr/CONSTRAINT NAME:\s+es_stream_deleted/,
	'crash: ... with constraint es_stream_deleted');
is($node->safe_psql('crash', q{SELECT es_append('c-3', 4, 'E', '{"after": "crash"}')}),
	'5', 'crash: the stream of the uncommitted deletion takes appends at version 5');
is($node->safe_psql('crash', q{SELECT es_delete_stream('c-3', 5, 'now')}),
	'5', 'crash: and can be deleted now');

my $t_end = time();
note sprintf('timings: dump/restore %.1f s, retention worker %.1f s, logical %.1f s, crash %.1f s, total %.1f s',
	$t_part2 - $t_start, $t_part3 - $t_part2, $t_part4 - $t_part3,
	$t_end - $t_part4, $t_end - $t_start);

$node->stop;
done_testing();
