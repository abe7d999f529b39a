# Copyright: event_sourcing contributors
#
# 017_head_cache_sets.pl
#	  The shared cache of stream heads (src/head_cache.c) keeps a stream in
#	  any entry of its set and evicts the least recently used one.  With
#	  event_sourcing.head_cache_size = 2 the cache is one set of two
#	  entries: any two streams appended to in turn both keep their heads
#	  (with one entry per hash, two of any three streams would share an
#	  entry and evict each other), and a third stream evicts the one used
#	  least recently.
#
#	  Whether an append took its head from the cache is read from the
#	  statistics of its own transaction: reading the head from es_events
#	  is one scan of the (stream_id, stream_version) index, which nothing
#	  else in an append without event ids makes.  Each probe runs in a new
#	  session, so the count holds only that transaction's scans.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $node = es_node(
	'head_cache_sets', qq{
shared_preload_libraries = 'event_sourcing'
event_sourcing.head_cache_size = 2
});
$node->safe_psql('postgres', 'CREATE EXTENSION event_sourcing');

# append(stream): the new version, in a transaction of its own.
sub append
{
	my ($stream) = @_;
	return $node->safe_psql('postgres',
		"SELECT es_append('$stream', NULL, 'E', '{}')");
}

# probe(stream): "version/scans": the new version and the scans of the
# stream index the append made (0: head from the cache, 1: from the index).
sub probe
{
	my ($stream) = @_;
	return $node->safe_psql(
		'postgres', qq{
BEGIN;
SELECT es_append('$stream', NULL, 'E', '{}') || '/'
       || pg_stat_get_xact_numscans('es_events_stream_version_key'::regclass);
COMMIT;
});
}

is(probe('a'), '1/1', 'a: 1, head read from the index (a new stream)');
is(probe('a'), '2/0', 'a: 2, head from the cache');

# Every pair of a, b and c, appended to in turn, keeps both heads.  (One
# pair of the three shares its entry when each hash has one entry: one of
# these checks then finds a miss.)
my %v = (a => 2, b => 0, c => 0);
for my $pair ([ 'a', 'b' ], [ 'a', 'c' ], [ 'b', 'c' ])
{
	my ($x, $y) = @$pair;
	# load both (the first of each may read the index)
	append($x);
	append($y);
	$v{$x}++;
	$v{$y}++;
	for my $round (1 .. 2)
	{
		for my $s ($x, $y)
		{
			$v{$s}++;
			is(probe($s), "$v{$s}/0",
				"$x and $y in turn, round $round: $s from the cache");
		}
	}
}

# Least recently used: after c, a, b, a the set holds a and b, b used less
# recently; c evicts b, and a keeps its head.
append('c');
append('a');
append('b');
append('a');
$v{c}++;
$v{a} += 2;
$v{b}++;
$v{c}++;
is(probe('c'), "$v{c}/1", 'c: evicted, read from the index; evicts b');
$v{a}++;
is(probe('a'), "$v{a}/0", 'a: kept (used more recently than b)');
$v{b}++;
is(probe('b'), "$v{b}/1", 'b: evicted by c, read from the index');

# The versions are those of appends without a cache.
for my $s ('a', 'b', 'c')
{
	is( $node->safe_psql(
			'postgres',
			"SELECT string_agg(stream_version::text, ',' ORDER BY stream_version) FROM es_events WHERE stream_id = '$s'"
		),
		join(',', 1 .. $v{$s}),
		"$s: 1..$v{$s}");
}

$node->stop;
done_testing();
