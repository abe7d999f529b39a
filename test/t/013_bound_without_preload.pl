# Copyright: event_sourcing contributors
#
# 013_bound_without_preload.pl
#	  The safe bound of the global log never waits (issue 11), in both of
#	  its modes: without shared_preload_libraries (in-flight appenders
#	  publish themselves in the extension's private heavyweight locks) and
#	  with it (in shared memory; prepared transactions in the locks).
#
#	  One node, first without preloading, then restarted with
#	  shared_preload_libraries = 'event_sourcing'; the same checks run in
#	  each mode.  Every read runs in a new session with statement_timeout =
#	  60 s: a read that waited for an idle transaction would fail with
#	  57014 instead of returning (before issue 11 it waited until that
#	  transaction ended).
#
#	  a. An idle appender (BEGIN; es_append; idle) holding position p while
#		 later appends commit: es_read_all returns exactly the committed
#		 events below p, es_safe_position is p - 1; after its COMMIT the
#		 rest, in order.
#	  b. A savepoint that appended and was rolled back holds nothing back;
#		 appending again in the same transaction holds back from the new
#		 position; COMMIT releases it.
#	  c. PREPARE TRANSACTION after appending at p: the prefix below p; the
#		 server is restarted with the transaction still prepared and still
#		 holds readers below p (while later appends commit); COMMIT PREPARED
#		 releases the rest.
#	  d. A backend killed with SIGKILL in the middle of a 200,000-event
#		 es_append batch: after the crash restart no event of the batch
#		 exists, es_safe_position is the sequence's last value (nobody holds
#		 readers back) and a new append is read at once.
#	  e. A role without any privilege on the extension holds the position
#		 sequence's own lock (BEGIN; SAVEPOINT s; SELECT
#		 pg_sequence_last_value(...) -- fails; ROLLBACK TO s; idle): appends
#		 and reads go on.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/013_bound_without_preload.pl

use strict;
use warnings;

use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $nevents = 200_000;
my $t_start = time();

my $node = es_node(
	'bound', q{
max_prepared_transactions = 10
log_statement = none
restart_after_crash = on
});
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION event_sourcing;
CREATE ROLE mallory LOGIN;
CREATE TABLE batch AS
SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', jsonb_build_object('n', g))
                 ORDER BY g) AS events
  FROM generate_series(1, $nevents) g;
});

my $seq = 0;    # for unique stream names

# Commit one append to a new stream in its own session; returns its position.
sub commit_one
{
	my ($mode) = @_;
	my $s = "$mode-c" . (++$seq);
	return $node->safe_psql(
		'postgres', qq{SET statement_timeout = '60s';
SELECT es_append('$s', 0, 'Committed', '{}') \\g /dev/null
SELECT global_position FROM es_load('$s')});
}

# In a new session with statement_timeout = 60 s, the positions
# es_read_all($after) returns, comma-separated, or the error.
sub read_all
{
	my ($after) = @_;
	my ($rc, $out, $err) = run_sql(
		$node, 'postgres', qq{SET statement_timeout = '60s';
SELECT coalesce(string_agg(global_position::text, ',' ORDER BY global_position), '')
FROM es_read_all($after, 1000000)});
	return $rc == 0 ? $out : "ERROR: $err";
}

sub safe_position
{
	my ($rc, $out, $err) = run_sql($node, 'postgres',
		"SET statement_timeout = '60s'; SELECT es_safe_position()");
	return $rc == 0 ? $out : "ERROR: $err";
}

# The committed positions in ($from, $to), as es_events has them.
sub committed
{
	my ($from, $to) = @_;
	$to //= 'NULL';
	return $node->safe_psql(
		'postgres', qq{
SELECT coalesce(string_agg(global_position::text, ',' ORDER BY global_position), '')
FROM es_events WHERE global_position > $from
  AND global_position < coalesce($to, 9223372036854775807)});
}

sub last_value
{
	return $node->safe_psql('postgres',
		'SELECT last_value FROM es_events_global_position_seq');
}

# How many of the extension's private locks ('userlock', objsubid 17713 "an
# appender is in flight" and 17714 "positions >= N") are held, by $pid (a
# live backend) or by prepared transactions ($pid undef).
sub private_locks
{
	my ($pid) = @_;
	my $who = defined $pid ? "pid = $pid" : 'pid IS NULL';
	return $node->safe_psql(
		'postgres', qq{
SELECT count(*) FROM pg_locks
WHERE locktype = 'userlock' AND objsubid IN (17713, 17714) AND granted AND $who});
}

sub run_checks
{
	my ($mode) = @_;
	my $preloaded = $mode eq 'preloaded';

	is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
		$preloaded ? 'event_sourcing' : '',
		"$mode: shared_preload_libraries is " . ($preloaded ? 'event_sourcing' : 'empty'));
	my $base = last_value();
	commit_one($mode) for 1 .. 3;
	is(safe_position(), last_value(), "$mode: idle log: es_safe_position is the last position");

	#
	# a. An idle appender.
	#
	my $app = $node->background_psql('postgres');
	my $app_pid = $app->query_safe('SELECT pg_backend_pid()');
	my $p = $app->query_safe(qq{BEGIN;
SELECT es_append('$mode-idle', 0, 'Held', '{}') \\g /dev/null
SELECT global_position FROM es_load('$mode-idle');});
	my @later = map { commit_one($mode) } 1 .. 3;
	cmp_ok($later[0], '>', $p, "$mode a: appends after the idle appender's position $p committed");
	is(private_locks($app_pid), $preloaded ? 0 : 2,
		"$mode a: the idle appender holds "
		  . ($preloaded ? 'no private lock (its slot in shared memory)' : 'the two private locks'));
	my $prefix = committed($base, $p);
	isnt($prefix, '', "$mode a: there are committed events below $p");
	is(read_all($base), $prefix,
		"$mode a: es_read_all returns at once with exactly the committed events below the idle appender's $p");
	is(safe_position(), $p - 1, "$mode a: es_safe_position is " . ($p - 1));
	is(read_all($p - 1), '', "$mode a: nothing after " . ($p - 1) . ' yet');
	$app->query_safe('COMMIT');
	is(read_all($base), committed($base),
		"$mode a: after its COMMIT es_read_all returns every event, $p and the later ones in order");
	is(private_locks($app_pid), 0, "$mode a: COMMIT released the private locks");

	#
	# b. A savepoint rolled back: not held back.  Appending again holds back
	# from the new position.
	#
	my $before = last_value();
	my $sp = $app->query_safe(qq{BEGIN;
SAVEPOINT s;
SELECT es_append('$mode-sp', 0, 'Undone', '{}') \\g /dev/null
SELECT global_position FROM es_load('$mode-sp');
ROLLBACK TO SAVEPOINT s;});
	cmp_ok($sp, '>', $before, "$mode b: the savepoint drew position $sp");
	is(private_locks($app_pid), 0, "$mode b: ROLLBACK TO SAVEPOINT released the private locks");
	@later = map { commit_one($mode) } 1 .. 2;
	is(read_all($before), committed($before),
		"$mode b: the rolled-back savepoint holds nothing back: es_read_all returns every later commit");
	is(safe_position(), last_value(), "$mode b: es_safe_position is the last position");
	my $p2 = $app->query_safe(qq{SELECT es_append('$mode-sp2', 0, 'Again', '{}') \\g /dev/null
SELECT global_position FROM es_load('$mode-sp2');});
	commit_one($mode) for 1 .. 2;
	is(read_all($before), committed($before, $p2),
		"$mode b: appending again in the same transaction holds back from its new position $p2");
	is(safe_position(), $p2 - 1, "$mode b: es_safe_position is " . ($p2 - 1));
	$app->query_safe('COMMIT');
	is(read_all($before), committed($before), "$mode b: after COMMIT every event");
	$app->quit;

	#
	# c. A prepared transaction, across a restart.
	#
	$before = last_value();
	commit_one($mode);
	my $prep = $node->background_psql('postgres');
	my $pp = $prep->query_safe(qq{BEGIN;
SELECT es_append('$mode-prep', 0, 'Prepared', '{}') \\g /dev/null
SELECT global_position FROM es_load('$mode-prep');
PREPARE TRANSACTION '$mode-hold';});
	$prep->quit;
	commit_one($mode) for 1 .. 2;
	is(private_locks(undef), 2, "$mode c: the prepared transaction holds the two private locks");
	is(read_all($before), committed($before, $pp),
		"$mode c: es_read_all returns the prefix below the prepared transaction's $pp");
	is(safe_position(), $pp - 1, "$mode c: es_safe_position is " . ($pp - 1));

	$node->restart;
	is($node->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts'),
		"$mode-hold", "$mode c: after a restart the transaction is still prepared");
	is(private_locks(undef), 2, "$mode c: after the restart it holds the two private locks again");
	commit_one($mode) for 1 .. 2;
	is(safe_position(), $pp - 1,
		"$mode c: after the restart, with later appends, es_safe_position is still " . ($pp - 1));
	is(read_all($before), committed($before, $pp),
		"$mode c: after the restart es_read_all returns the prefix below $pp");
	$node->safe_psql('postgres', "COMMIT PREPARED '$mode-hold'");
	my $all = committed($before);
	like($all, qr/(^|,)$pp(,|$)/, "$mode c: $pp committed");
	is(read_all($before), $all, "$mode c: after COMMIT PREPARED es_read_all returns every event");
	is(safe_position(), last_value(), "$mode c: es_safe_position is the last position again");
	is(private_locks(undef), 0, "$mode c: COMMIT PREPARED released the private locks");

	#
	# d. A backend killed with SIGKILL in the middle of a long batch.
	#
	$before = last_value();
	my $committed_before = committed(0);
	my $killed = $node->background_psql('postgres', on_error_stop => 0);
	my $kpid = $killed->query_safe('SELECT pg_backend_pid()');
	$killed->query_until(qr/start/, qq{\\echo start
SELECT es_append('$mode-big', 0, events) FROM batch;
});
	$node->poll_query_until('postgres',
		"SELECT last_value > $before + 1000 FROM es_events_global_position_seq")
	  or die 'the batch did not start drawing positions';
	is($node->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $kpid"),
		'active', "$mode d: the batch is being appended");
	my $log_offset = -s $node->logfile;
	ok(kill('KILL', $kpid), "$mode d: SIGKILL the appending backend");
	$node->wait_for_log(qr/\(PID $kpid\) was terminated by signal 9/, $log_offset);
	$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
	$node->wait_for_log(qr/database system is ready to accept connections/, $log_offset);
	pass("$mode d: the postmaster restarted after the killed backend");
	eval { $killed->quit; };
	is($node->safe_psql('postgres', "SELECT count(*) FROM es_events WHERE stream_id = '$mode-big'"),
		'0', "$mode d: no event of the killed batch exists");
	is(committed(0), $committed_before, "$mode d: the committed events are unchanged");
	is(safe_position(), last_value(),
		"$mode d: es_safe_position is the sequence's last value: nothing holds readers back");
	my $after_crash = commit_one($mode);
	is(read_all($before), committed($before),
		"$mode d: es_read_all returns the new append ($after_crash) at once, no partial batch");

	#
	# e. An unprivileged role holding the position sequence's own lock.
	#
	my $mallory = $node->background_psql(
		'postgres',
		on_error_stop => 0,
		extra_params  => [ '-U', 'mallory' ]);
	my $mpid = $mallory->query_safe('SELECT pg_backend_pid()');
	my ($mout, $merr) = $mallory->query(q{BEGIN;
SAVEPOINT s;
SELECT pg_sequence_last_value('es_events_global_position_seq');
ROLLBACK TO SAVEPOINT s;});
	like($mallory->{stderr}, qr/permission denied for sequence es_events_global_position_seq/,
		"$mode e: the role has no privilege on the sequence (its call failed after taking the lock)");
	is( $node->safe_psql(
			'postgres', qq{
SELECT count(*) FROM pg_locks
WHERE pid = $mpid AND relation = 'es_events_global_position_seq'::regclass AND granted}),
		'1',
		"$mode e: the unprivileged role holds a lock on the position sequence, idle in its transaction");
	$before = last_value();
	my $e1 = commit_one($mode);
	is(read_all($before), $e1,
		"$mode e: an append commits and es_read_all returns it at once despite that lock");
	is(safe_position(), last_value(), "$mode e: es_safe_position is the last position");
	$mallory->quit;
	return;
}

run_checks('plain');

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_sourcing'\n");
$node->restart;
run_checks('preloaded');

$node->stop;
note sprintf('total %.1f s', time() - $t_start);
done_testing();
