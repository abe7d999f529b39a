# Copyright: event_sourcing contributors
#
# 001_dump_restore.pl
#	  The event store survives pg_dump / pg_restore (custom format) and a
#	  plain-format pg_dump | psql round trip, with the extension created in a
#	  non-public schema: every stored row, the global position sequence, the
#	  read functions, stream versions for later appends, the expected-version
#	  check, event-id uniqueness and immutability all carry over.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $node = es_node('dump_restore');

my $tempdir = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src',
	'CREATE SCHEMA es; CREATE EXTENSION event_sourcing SCHEMA es');

#
# Fill the store in db src: single and batch appends, with and without
# metadata and explicit event ids, several categories, unicode and nested
# JSON, and a rolled-back append that consumes global positions (so the
# sequence is ahead of max(global_position)).
#
$node->safe_psql(
	'src', q{
SELECT es.es_append('order-1', 0, 'OrderPlaced', '{"sku": "A-1", "qty": 2}');
SELECT es.es_append('order-1', 1, 'OrderPaid', '{"amount": 19.90}',
                    '{"actor": "alice", "correlation_id": "c-1"}');
SELECT es.es_append('order-1', 2, 'OrderShipped', '{"carrier": "DHL"}',
                    '{"actor": "bob"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
SELECT es.es_append('order-2', NULL, '[
  {"type": "OrderPlaced", "data": {"sku": "B-7", "qty": 1}},
  {"type": "OrderPaid", "data": {"amount": 5}, "metadata": {"actor": "carol"}},
  {"type": "OrderCancelled", "data": {"reason": "changed mind"},
   "metadata": {"actor": "carol", "nested": {"a": [1, 2, {"b": null}]}},
   "id": "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a22"}
]');
SELECT es.es_append('account-7', 0, '[
  {"type": "Opened", "data": {"owner": "Zoë Ünïcødé ✓"}, "id": "c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a33"},
  {"type": "Deposited", "data": {"amount": 100}, "id": "c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a34"}
]');
SELECT es.es_append('singleton', 0, 'Created', '{}', NULL);
});

# Some volume: 20 streams x 10 events, mixing both forms.
$node->safe_psql(
	'src', q{
DO $$
BEGIN
  FOR i IN 1..10 LOOP
    FOR s IN 1..20 LOOP
      IF i % 2 = 0 THEN
        PERFORM es.es_append('load-' || s, i - 1, 'Tick',
                             jsonb_build_object('i', i, 's', s),
                             jsonb_build_object('source', 'single'));
      ELSE
        PERFORM es.es_append('load-' || s, i - 1,
                             jsonb_build_array(jsonb_build_object(
                               'type', 'Tick',
                               'data', jsonb_build_object('i', i, 's', s),
                               'metadata', jsonb_build_object('source', 'batch'))));
      END IF;
    END LOOP;
  END LOOP;
END $$;
});

# Rolled back, last: takes global positions that are then never used.
$node->safe_psql(
	'src', q{
BEGIN;
SELECT es.es_append('order-1', NULL, '[{"type": "Ghost", "data": {}}, {"type": "Ghost", "data": {}}]');
ROLLBACK;
});

my $full_dump_sql =
  q{SELECT e::text FROM es.es_events e ORDER BY global_position};
my $seq_sql =
  q{SELECT last_value || '/' || is_called FROM es.es_events_global_position_seq};

my $src_rows  = $node->safe_psql('src', $full_dump_sql);
my $src_count = $node->safe_psql('src', 'SELECT count(*) FROM es.es_events');
my $src_max =
  $node->safe_psql('src', 'SELECT max(global_position) FROM es.es_events');
my $src_seq  = $node->safe_psql('src', $seq_sql);
my $src_load = $node->safe_psql('src',
	q{SELECT e::text FROM es.es_load('order-2') e});

is($src_count, 3 + 3 + 2 + 1 + 200, 'source store holds every appended event');
my ($src_last) = split m{/}, $src_seq;
cmp_ok($src_last, '>', $src_max,
	'source sequence is ahead of max(global_position) (rolled-back append)');

#
# Custom-format dump, restore into a new database.
#
my $dumpfile = "$tempdir/src.dump";
dump_restore_custom($node, 'src', 'dst', $dumpfile);

is( $node->safe_psql('dst',
		q{SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'event_sourcing'}),
	'es',
	'extension restored in its schema');

my $dst_rows = $node->safe_psql('dst', $full_dump_sql);
is($dst_rows, $src_rows, 'every row of es.es_events is identical after restore');
is($node->safe_psql('dst', 'SELECT count(*) FROM es.es_events'),
	$src_count, 'row count identical after restore');
is($node->safe_psql('dst', $seq_sql),
	$src_seq, 'global position sequence last_value restored');

# Read functions work in the restored database.
is($node->safe_psql('dst', q{SELECT e::text FROM es.es_load('order-2') e}),
	$src_load, 'es_load in dst returns the same events as in src');
is($node->safe_psql('dst', q{SELECT es.es_stream_version('order-1')}),
	'3', 'es_stream_version in dst');
is($node->safe_psql('dst', q{SELECT e::text FROM es.es_read_all(0, 100000) e}),
	$src_rows, 'es_read_all in dst returns the whole restored log');
is( $node->safe_psql(
		'dst', q{SELECT count(*) FROM es.es_read_category('load', 0, 100000)}),
	'200',
	'es_read_category in dst');

# Appending in dst continues at the right version and global position.
is($node->safe_psql('dst',
		q{SELECT es.es_append('order-1', 3, 'OrderDelivered', '{"at": "door"}')}),
	'4', 'append in dst with the restored version as expected version gives version 4');
fails_with($node, 'dst',
	q{SELECT es.es_append('order-1', 3, 'OrderDelivered', '{}')},
	'40001', 'stale expected version in dst fails with 40001');
fails_with($node, 'dst',
	q{SELECT es.es_append('account-7', 0, 'Opened', '{}')},
	'40001', 'expected version 0 on a restored stream fails with 40001');
is($node->safe_psql('dst',
		q{SELECT es.es_append('load-5', 10, '[{"type": "Tick", "data": {}}, {"type": "Tick", "data": {}}]')}),
	'12', 'batch append in dst continues at the restored version');

my $new_min = $node->safe_psql('dst',
	qq{SELECT min(global_position) FROM es.es_events WHERE global_position > $src_max});
my $new_count = $node->safe_psql('dst',
	qq{SELECT count(*) FROM es.es_events WHERE global_position > $src_max});
is($new_count, '3', 'new events in dst are after every restored position');
cmp_ok($new_min, '>', $src_last,
	'new global positions in dst are beyond the restored sequence value');
is($node->safe_psql('dst',
		q{SELECT count(*) = count(DISTINCT global_position) FROM es.es_events}),
	't', 'global positions unique in dst');
is( $node->safe_psql(
		'dst', q{SELECT string_agg(stream_version::text, ',' ORDER BY stream_version)
		         FROM es.es_load('order-1')}),
	'1,2,3,4',
	'es_load sees restored and new events in order');

# Event ids carry over: an idempotent retry is recognised, a reuse elsewhere
# is a unique violation.
is( $node->safe_psql(
		'dst',
		q{SELECT es.es_append('order-1', 2, 'OrderShipped', '{"carrier": "DHL"}',
		                      '{"actor": "bob"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')}),
	'3',
	'idempotent retry of a restored event is recognised in dst');
fails_with($node, 'dst',
	q{SELECT es.es_append('other-1', NULL, 'X', '{}', '{}', 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a22')},
	'23505', 'restored event id reused in another stream fails with 23505');

# Immutability survives the restore.
is( $node->safe_psql(
		'dst', q{SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname)
		         FROM pg_trigger WHERE tgrelid = 'es.es_events'::regclass
		         AND NOT tgisinternal}),
	'es_events_immutable=A,es_events_inline_projections=A',
	'immutability and inline projection triggers restored, enabled ALWAYS');
my $before = $node->safe_psql('dst', $full_dump_sql);
fails_with($node, 'dst', q{UPDATE es.es_events SET data = '{}' WHERE stream_id = 'order-1'},
	'55000', 'UPDATE on es.es_events in dst fails with 55000');
fails_with($node, 'dst', q{DELETE FROM es.es_events WHERE stream_id = 'order-2'},
	'55000', 'DELETE on es.es_events in dst fails with 55000');
fails_with($node, 'dst', q{TRUNCATE es.es_events},
	'55000', 'TRUNCATE on es.es_events in dst fails with 55000');
fails_with($node, 'dst',
	q{SET session_replication_role = replica; DELETE FROM es.es_events},
	'55000', 'DELETE in dst fails with 55000 under session_replication_role = replica');
is($node->safe_psql('dst', $full_dump_sql),
	$before, 'store unchanged by the refused statements');

# The source was not touched by any of this.
is($node->safe_psql('src', $full_dump_sql), $src_rows, 'source store unchanged');

#
# Plain-format dump piped through psql.
#
my $plainfile = "$tempdir/src.sql";
dump_restore_plain($node, 'src', 'dst_plain', $plainfile);

is($node->safe_psql('dst_plain', 'SELECT count(*) FROM es.es_events'),
	$src_count, 'plain round trip: row count identical');
is( $node->safe_psql(
		'dst_plain',
		q{SELECT string_agg(stream_id || ':' || n, ',' ORDER BY stream_id)
		  FROM (SELECT stream_id, count(*) n FROM es.es_events GROUP BY 1) s}),
	$node->safe_psql(
		'src',
		q{SELECT string_agg(stream_id || ':' || n, ',' ORDER BY stream_id)
		  FROM (SELECT stream_id, count(*) n FROM es.es_events GROUP BY 1) s}),
	'plain round trip: per-stream row counts identical');
is($node->safe_psql('dst_plain', $full_dump_sql),
	$src_rows, 'plain round trip: every row identical');
is($node->safe_psql('dst_plain', $seq_sql),
	$src_seq, 'plain round trip: sequence restored');
is($node->safe_psql('dst_plain',
		q{SELECT es.es_append('order-2', 3, 'OrderArchived', '{}')}),
	'4', 'plain round trip: append continues at the restored version');

$node->stop;
done_testing();
