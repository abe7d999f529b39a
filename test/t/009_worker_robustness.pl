# Copyright: event_sourcing contributors
#
# 009_worker_robustness.pl
#	  The background worker under the conditions that used to break it
#	  (src/worker.c, src/wait.c; README "The background worker"):
#
#	  a. No lost wake-up: with worker_idle_interval = 60 s, an append that
#		 commits while the worker is in the middle of a round makes the worker
#		 go again at once: the event reaches the read model within seconds,
#		 not after the idle interval.  Three times a round that waits for an
#		 appending transaction in flight (a lock wait, which resets the
#		 process latch) and in the end applies nothing; once a round whose
#		 handler sleeps 2 s.
#	  b. A round that fails (the handler of a projection was dropped, so
#		 every round that reaches it raises an error): with
#		 worker_retry_interval = 1 s, over 6 s of appends the worker logs the
#		 failure about once a second (at most 12 times, not thousands), stays
#		 the same process, and another async projection keeps applying each
#		 new event; once the broken projection is dropped, the errors stop.
#	  c. Launcher restarts: the launcher is ended with pg_terminate_backend
#		 three times; each time the postmaster starts it again, and each time
#		 there is exactly one worker per listed database, the same processes
#		 as before.  Then worker_databases = '' and a reload: no worker is
#		 left.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/009_worker_robustness.pl

use strict;
use warnings;

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $node = es_node(
	'worker_robustness', q{
max_worker_processes = 12
log_statement = none
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'app, other'
event_sourcing.worker_idle_interval = 60s
event_sourcing.worker_retry_interval = 60s
event_sourcing.worker_restart_interval = 200ms
});

$node->safe_psql('postgres', 'CREATE DATABASE app; CREATE DATABASE other');
for my $db ('app', 'other')
{
	$node->safe_psql(
		$db, q{
CREATE EXTENSION event_sourcing;
CREATE TABLE applied (
  projection text NOT NULL,
  position bigint NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
-- Tick events
CREATE FUNCTION apply_a(e es_events) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO applied (projection, position) VALUES ('a', e.global_position) $$;
SELECT es_define_projection('a', 'apply_a(es_events)', ARRAY['Tick'], 'async');
});
}

# "datname=pid ..." of the event_sourcing workers.
sub workers
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce(string_agg(datname || '=' || pid, ' ' ORDER BY datname), '')
		  FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker'});
}

sub launcher_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_sourcing launcher'});
}

sub worker_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker' AND datname = '$db'"
	);
}

# Wait until the workers are exactly one for each of @dbs.
sub wait_for_workers
{
	my @dbs = @_;
	my $re = join(' ', map { "\Q$_\E=\\d+" } sort @dbs);
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	my $got;
	while (time() < $deadline)
	{
		$got = workers();
		return 1 if $got =~ /^$re$/;
		usleep(50_000);
	}
	diag "workers: '$got', wanted one for each of: @dbs";
	return 0;
}

# Seconds until $sql in app returns $want (polls every 20 ms), undef when
# it did not within $limit seconds.
sub seconds_until
{
	my ($sql, $want, $limit) = @_;
	my $t0 = time();
	while (1)
	{
		return time() - $t0 if $node->safe_psql('app', $sql) eq $want;
		return undef if time() - $t0 > $limit;
		usleep(20_000);
	}
}

# The same in database $db.
sub seconds_until_in
{
	my ($db, $sql, $want, $limit) = @_;
	my $t0 = time();
	while (1)
	{
		return time() - $t0 if $node->safe_psql($db, $sql) eq $want;
		return undef if time() - $t0 > $limit;
		usleep(20_000);
	}
}

sub append
{
	my ($db, $stream, $type) = @_;
	$node->safe_psql($db, "SELECT es_append('$stream', NULL, '$type', '{}')");
	return $node->safe_psql($db,
		"SELECT max(global_position) FROM es_events WHERE stream_id = '$stream'");
}

sub applied_sql
{
	my ($projection, $position) = @_;
	return
	  "SELECT count(*) FROM applied WHERE projection = '$projection' AND position = $position";
}

ok(wait_for_workers('app', 'other'), 'setup: one worker for each of app and other');
ok($node->poll_query_until('app', q{SELECT lag = 0 FROM es_projections WHERE name = 'a'}),
	'setup: projection a is caught up');

#
# a. No lost wake-up.
#
# a1-a3: a round that takes 2 s and in the end applies nothing.  Projection
# a applies Tick events only; a new projection slow<i> receives only the
# Old<i> event appended with it, and its handler sleeps 2 s (pg_sleep, which
# resets the process latch), then fails: the round applies nothing (slow<i>
# is marked failed) and has read the log only up to its high-water mark.
# A Tick committed during those 2 s must reach a at once, not after the
# 60 s idle interval.
{
	$node->safe_psql(
		'app', q{
CREATE FUNCTION slow_fail(e es_events) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN PERFORM pg_sleep(2); RAISE EXCEPTION 'slow and failing'; END $$;
});
	my $worker = worker_pid('app');
	for my $i (1 .. 3)
	{
		$node->safe_psql('app',
			"SELECT es_append('old-$i', NULL, 'Old$i', '{}'); SELECT es_define_projection('slow$i', 'slow_fail(es_events)', ARRAY['Old$i'], 'async')"
		);
		my $sleeping = seconds_until_in('postgres',
			"SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $worker", 't', 10);
		ok(defined $sleeping,
			"a$i: the worker is in the middle of a round, in the slow handler of slow$i");
		my $tick = append('app', "tick-a$i", 'Tick');
		is($node->safe_psql('postgres', "SELECT wait_event FROM pg_stat_activity WHERE pid = $worker"),
			'PgSleep', "a$i: a Tick committed while that round still runs");
		my $took = seconds_until(applied_sql('a', $tick), '1', 20);
		ok(defined $took && $took < 15,
			"a$i: the commit during the round makes the worker go again at once: applied within 15 s, not after the 60 s idle interval"
		);
		note sprintf('a%d: applied %.3f s after its commit (the round takes 2 s)', $i, $took // -1);
		$node->safe_psql('app', "SELECT es_drop_projection('slow$i')");
	}

	# a4: a commit while a handler sleeps 2 s (a round that applies events)
	$node->safe_psql(
		'app', q{
CREATE FUNCTION apply_slow(e es_events) RETURNS void LANGUAGE sql
  AS $$ SELECT pg_sleep(2); INSERT INTO applied (projection, position) VALUES ('slow', e.global_position) $$;
SELECT es_define_projection('slow', 'apply_slow(es_events)', ARRAY['Slow'], 'async');
});
	ok($node->poll_query_until('app', q{SELECT lag = 0 FROM es_projections WHERE name = 'slow'}),
		'a4: projection slow has caught up');
	append('app', 'slow-1', 'Slow');
	ok( $node->poll_query_until('postgres',
			"SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $worker"),
		'a4: the worker is inside the slow handler, in the middle of a round');
	my $tick = append('app', 'tick-a4', 'Tick');
	my $took = seconds_until(applied_sql('a', $tick), '1', 20);
	ok(defined $took && $took < 15,
		'a4: an event committed during a slow round is applied right after it');
	note sprintf('a4: applied %.3f s after its commit (the slow handler takes 2 s)', $took // -1);
	is(worker_pid('app'), $worker, 'a: the same worker process throughout');
}

#
# b. A round that fails: the handler of a projection is dropped.
#
{
	$node->append_conf('postgresql.conf',
		"event_sourcing.worker_retry_interval = 1s\nevent_sourcing.worker_idle_interval = 60s\n");
	$node->reload;
	$node->safe_psql(
		'app', q{
CREATE FUNCTION apply_broken(e es_events) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO applied (projection, position) VALUES ('broken', e.global_position) $$;
SELECT es_define_projection('broken', 'apply_broken(es_events)', mode => 'async');
});
	ok($node->poll_query_until('app', q{SELECT lag = 0 FROM es_projections WHERE name = 'broken'}),
		'b: projection broken has caught up');
	my $worker = worker_pid('app');
	my $offset = -s $node->logfile;
	$node->safe_psql('app', 'DROP FUNCTION apply_broken(es_events)');

	# 6 s of appends, one every 100 ms; each must reach projection a
	my $t0 = time();
	my ($n, $late) = (0, 0);
	my @pending;
	while (time() - $t0 < 6)
	{
		push @pending, append('app', "tick-b$n", 'Tick');
		$n++;
		usleep(100_000);
	}
	my $seconds = time() - $t0;
	my $last = $pending[-1];
	my $took = seconds_until(applied_sql('a', $last), '1', 10);
	ok(defined $took,
		"b: projection a keeps applying: the last of $n events appended meanwhile is applied within 10 s"
	);
	is( $node->safe_psql('app',
			"SELECT count(*) FROM applied WHERE projection = 'a' AND position IN (" . join(',', @pending) . ')'),
		$n, "b: projection a applied each of the $n events");
	usleep(500_000);
	my $log = slurp_file($node->logfile, $offset);
	my $errors =
	  () = $log =~ /\[$worker\] .*(?:ERROR|WARNING):  .*the handler of projection "broken" no longer exists/g;
	note sprintf('b: %d error lines for projection broken in %.1f s of appends, retry interval 1 s',
		$errors, $seconds);
	cmp_ok($errors, '>=', 1, 'b: the failure is logged');
	cmp_ok($errors, '<=', 12,
		sprintf('b: about once per retry interval: %d lines in %.1f s, at most 12', $errors, $seconds));
	my $bytes = length($log);
	cmp_ok($bytes, '<', 100_000, "b: the log grew by $bytes bytes, under 100 kB");
	is(worker_pid('app'), $worker, 'b: the worker is the same process');
	is(launcher_pid() ne '' ? 1 : 0, 1, 'b: the launcher runs');

	# drop the broken projection: the errors stop
	$node->safe_psql('app', q{SELECT es_drop_projection('broken')});
	usleep(1_500_000);
	$offset = -s $node->logfile;
	my $p = append('app', 'tick-b-after', 'Tick');
	ok(defined seconds_until(applied_sql('a', $p), '1', 10), 'b: after es_drop_projection, a goes on');
	usleep(2_500_000);
	unlike(slurp_file($node->logfile, $offset), qr/\[$worker\] .*(?:ERROR|WARNING):/,
		'b: and the worker logs no error any more');
	is(worker_pid('app'), $worker, 'b: still the same worker process');
}

#
# c. Launcher restarts.
#
{
	ok(wait_for_workers('app', 'other'), 'c: one worker for each of app and other');
	my $before = workers();
	for my $i (1 .. 3)
	{
		my $launcher = launcher_pid();
		$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
		# the postmaster starts it again after bgw_restart_time (10 s)
		ok( $node->poll_query_until('postgres',
				"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'event_sourcing launcher' AND pid <> $launcher"
			),
			"c$i: the launcher is back after pg_terminate_backend");
		# give the new launcher time to act (its rounds are 200 ms apart)
		usleep(2_000_000);
		is(workers(), $before,
			"c$i: exactly one worker per listed database, the same processes as before ($before)");
	}

	my $launcher = launcher_pid();
	$node->append_conf('postgresql.conf', "event_sourcing.worker_databases = ''\n");
	$node->reload;
	ok(wait_for_workers(), "c: worker_databases = '' (reload): no worker is left");
	is(launcher_pid(), $launcher, 'c: the launcher goes on');

	$node->append_conf('postgresql.conf', "event_sourcing.worker_databases = 'app'\n");
	$node->reload;
	ok(wait_for_workers('app'), "c: worker_databases = 'app' (reload): one worker, for app");
	my $p = append('app', 'tick-c', 'Tick');
	ok(defined seconds_until(applied_sql('a', $p), '1', 10), 'c: which applies new events');
}

$node->stop('fast');
done_testing();
