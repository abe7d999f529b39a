# Copyright: event_sourcing contributors
#
# EsTest.pm
#	  Helpers shared by the Perl TAP tests test/t/*.pl (a module, not a
#	  test: PROVE_TESTS only runs test/t/*.pl).  Load it with
#
#	    use FindBin;
#	    use lib $FindBin::RealBin;
#	    use EsTest;
#
#	  which finds it next to the test whatever the current directory.
#	  Every helper that talks to a server takes the node as its first
#	  argument.

package EsTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(es_node run_sql fails_with succeeds dump_restore_custom
  dump_restore_plain median max_of es_check_log first_few es_time_until
  es_ord_aggregate_sql);

# es_node($name, $conf, %init): a new node $name, initialized with %init
# (e.g. allows_streaming => 1), $conf (if defined) appended to its
# postgresql.conf, and started.
sub es_node
{
	my ($name, $conf, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf', $conf) if defined $conf;
	$node->start;
	return $node;
}

# Run SQL in database $db of $node and return (exit code, stdout, stderr),
# with verbose error reports so that stderr carries the SQLSTATE.
sub run_sql
{
	my ($node, $db, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql(
		$db, "\\set VERBOSITY verbose\n$sql",
		stdout => \$out,
		stderr => \$err);
	return ($rc, $out, $err);
}

# Assert that $sql fails with SQLSTATE $state in $db; returns its stderr.
sub fails_with
{
	my ($node, $db, $sql, $state, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($rc, $out, $err) = run_sql($node, $db, $sql);
	ok($rc != 0 && $err =~ /ERROR:\s+$state:/, $name)
	  or diag("exit code $rc\nstdout: $out\nstderr: $err");
	return $err;
}

# Run $sql in $db, which must succeed; return (stdout, stderr).
sub succeeds
{
	my ($node, $db, $sql, $name) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($rc, $out, $err) = run_sql($node, $db, $sql);
	ok($rc == 0, $name) or diag("exit code $rc\nstdout: $out\nstderr: $err");
	return ($out, $err);
}

# Dump database $src of $node with pg_dump -Fc into $dumpfile, create
# database $dst and pg_restore the dump into it: two command_ok tests.
sub dump_restore_custom
{
	my ($node, $src, $dst, $dumpfile) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->command_ok(
		[ 'pg_dump', '-Fc', '-f', $dumpfile, '-d', $node->connstr($src) ],
		'pg_dump -Fc of the source database');
	$node->safe_psql('postgres', "CREATE DATABASE $dst");
	$node->command_ok(
		[ 'pg_restore', '--exit-on-error', '-d', $node->connstr($dst), $dumpfile ],
		'pg_restore into a new database');
	return;
}

# The same with a plain-format dump into $plainfile, loaded with psql.
sub dump_restore_plain
{
	my ($node, $src, $dst, $plainfile) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	$node->command_ok(
		[ 'pg_dump', '-Fp', '-f', $plainfile, '-d', $node->connstr($src) ],
		'plain-format pg_dump of the source database');
	$node->safe_psql('postgres', "CREATE DATABASE $dst");
	$node->command_ok(
		[
			'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr($dst),
			'-f', $plainfile
		],
		'plain-format dump loads with psql');
	return;
}

sub median
{
	my @s = sort { $a <=> $b } @_;
	return @s % 2 ? $s[ $#s / 2 ] : ($s[ @s / 2 - 1 ] + $s[ @s / 2 ]) / 2;
}

sub max_of { my $m = shift; for (@_) { $m = $_ if $_ > $m } return $m; }

# es_check_log(\@log, \@expected, \%doomed): one catch-up reader's log (the
# global positions it received, in order) against the positions it should
# have received, and the rolled-back positions (keys of %doomed, optional)
# it must never receive.  Returns { received, repeats, backwards, missing,
# extra, doomed, ok }: counts, lists of positions (sorted), and whether the
# log is exactly the expected positions, each once, in order.
sub es_check_log
{
	my ($log, $expected, $doomed) = @_;
	my (%seen, $prev);
	my ($repeats, $backwards) = (0, 0);
	for my $p (@$log)
	{
		$repeats++ if $seen{$p}++;
		$backwards++ if defined $prev && $p < $prev;
		$prev = $p;
	}
	my %want = map { $_ => 1 } @$expected;
	my @missing = grep { !$seen{$_} } @$expected;
	my @extra   = sort { $a <=> $b } grep { !$want{$_} } keys %seen;
	my @doomed  = sort { $a <=> $b } grep { $seen{$_} } keys %{ $doomed // {} };
	return {
		received  => scalar(@$log),
		repeats   => $repeats,
		backwards => $backwards,
		missing   => \@missing,
		extra     => \@extra,
		doomed    => \@doomed,
		ok        => ($repeats == 0 && $backwards == 0 && !@missing && !@extra && !@doomed),
	};
}

# first_few(@list): its first ten elements, comma-separated, for a diag.
sub first_few { my @l = @_; return join(',', @l[ 0 .. ($#l < 9 ? $#l : 9) ]); }

# es_time_until($t0, $secs, $cond): poll $cond->() every 5 ms until it is
# true (returns the seconds since $t0) or $secs after $t0 have passed
# (returns undef).
sub es_time_until
{
	my ($t0, $secs, $cond) = @_;
	while (time() < $t0 + $secs)
	{
		return time() - $t0 if $cond->();
		usleep(5_000);
	}
	return undef;
}

# es_ord_aggregate_sql(): the command side of the subscription tests --
# aggregate 'ord', whose command {"events": k} appends k Step events
# (es_execute('ord-<n>', ...)).
sub es_ord_aggregate_sql
{
	return q{
CREATE FUNCTION ord_evolve(state jsonb, e es_events) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('n', (state->>'n')::int + 1)
$$;
CREATE FUNCTION ord_decide(state jsonb, command jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_agg(jsonb_build_object('type', 'Step', 'data', jsonb_build_object('k', k, 'n', state->'n')))
      FROM generate_series(1, (command->>'events')::int) k
$$;
SELECT es_define_aggregate('ord', 'ord_evolve(jsonb, es_events)', '{"n": 0}', 'ord_decide(jsonb, jsonb)');
};
}

1;
