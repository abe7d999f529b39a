# Copyright: event_sourcing contributors
#
# 015_head_cache.pl
#	  The shared cache of stream heads (src/head_cache.c) with one entry
#	  (event_sourcing.head_cache_size = 1): every stream, in every database,
#	  maps to the same entry, so each append evicts the previous stream's
#	  head and the entry is compared in full (database, es_events, stream
#	  id) and by its transaction's status.  Versions must come out as
#	  without the cache.  Also: the entry is trusted across sessions (a
#	  superuser's direct INSERT, which bypasses the cache, makes the next
#	  es_append fail on the unique index, the documented caveat), and a
#	  restart empties the cache.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $node = es_node(
	'head_cache', qq{
shared_preload_libraries = 'event_sourcing'
event_sourcing.head_cache_size = 1
max_prepared_transactions = 5
});

is($node->safe_psql('postgres', 'SHOW event_sourcing.head_cache_size'),
	'1', 'one entry');
$node->safe_psql('postgres', 'CREATE DATABASE other');
for my $db ('postgres', 'other')
{
	$node->safe_psql($db, 'CREATE EXTENSION event_sourcing');
}

sub append
{
	my ($db, $stream) = @_;
	return $node->safe_psql($db,
		"SELECT es_append('$stream', NULL, 'E', '{}')");
}

sub versions
{
	my ($db, $stream) = @_;
	return $node->safe_psql($db,
		"SELECT string_agg(stream_version::text, ',' ORDER BY stream_version) FROM es_events WHERE stream_id = '$stream'"
	);
}

# Streams a and b (and a in the other database) take turns in the one entry.
is(append('postgres', 'a'), '1', 'a: 1');
is(append('postgres', 'a'), '2', 'a: 2 (from the entry)');
is(append('postgres', 'b'), '1', 'b: 1 (a evicted)');
is(append('other',    'a'), '1', 'a in the other database: 1');
is(append('postgres', 'a'), '3', 'a: 3 (the other database\'s a is not ours)');
is(append('other',    'a'), '2', 'a in the other database: 2');

# A rolled-back append leaves its entry behind: not taken as the head.
is( $node->safe_psql(
		'postgres', q{
BEGIN;
SELECT es_append('a', NULL, 'E', '{}');
ROLLBACK;
}), '4', 'a: 4 appended and rolled back');
is(append('postgres', 'a'), '4', 'a: 4 again after the rollback');

# A rolled-back savepoint's append, with other streams in between.
is( $node->safe_psql(
		'postgres', q{
BEGIN;
SELECT es_append('a', NULL, 'E', '{}');
SAVEPOINT s;
SELECT es_append('a', NULL, 'E', '{}');
SELECT es_append('b', NULL, 'E', '{}');
SELECT es_append('a', NULL, 'E', '{}');
ROLLBACK TO SAVEPOINT s;
SELECT es_append('a', NULL, 'E', '{}');
COMMIT;
}), "5\n6\n2\n7\n6", 'a: the savepoint\'s 6 and 7 rolled back, 6 again');
is(append('postgres', 'b'), '2', 'b: 2 (its 2 was rolled back)');
is(append('postgres', 'a'), '7', 'a: 7');

# A prepared transaction's entry, then another stream's, then the outcome.
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT es_append('a', NULL, 'E', '{}');
PREPARE TRANSACTION 'p1';
});
is(append('postgres', 'b'), '3', 'b: 3 while a is prepared');
$node->safe_psql('postgres', "COMMIT PREPARED 'p1'");
is(append('postgres', 'a'), '9', 'a: 9 after COMMIT PREPARED of 8');
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT es_append('a', NULL, 'E', '{}');
PREPARE TRANSACTION 'p2';
});
$node->safe_psql('postgres', "ROLLBACK PREPARED 'p2'");
is(append('postgres', 'a'), '10', 'a: 10 after ROLLBACK PREPARED of 10');

is(versions('postgres', 'a'), join(',', 1 .. 10), 'a: 1..10');
is(versions('postgres', 'b'), '1,2,3', 'b: 1..3');
is(versions('other', 'a'), '1,2', 'a in the other database: 1..2');

# DROP and CREATE EXTENSION: the new es_events (a new OID, same slot) does
# not take the old one's entry.
is(append('postgres', 'd'), '1', 'd: 1');
is(append('postgres', 'd'), '2', 'd: 2');
$node->safe_psql('postgres',
	'DROP EXTENSION event_sourcing; CREATE EXTENSION event_sourcing');
is(append('postgres', 'd'), '1', 'd: 1 in the new es_events');

# The entry is used: a row inserted behind es_append's back (as a superuser
# may) is not seen, and the next append collides with it (the caveat the
# README documents); after a restart the cache is empty and the append
# continues after it.
is(append('postgres', 'c'), '1', 'c: 1');
$node->safe_psql(
	'postgres', q{
INSERT INTO es_events (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at, schema_version)
VALUES (nextval('es_events_global_position_seq'), 'c', 2, gen_random_uuid(), 'E', '{}', '{}', clock_timestamp(), 1);
});
fails_with($node, 'postgres', "SELECT es_append('c', NULL, 'E', '{}')",
	'23505', 'c: the cached head 1 collides with the row inserted directly');
$node->restart;
is(append('postgres', 'c'), '3', 'c: 3 after a restart (the cache is empty)');
is(versions('postgres', 'c'), '1,2,3', 'c: 1..3');

$node->stop;
done_testing();
