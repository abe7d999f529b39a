# Copyright: event_sourcing contributors
#
# 006_projection_worker.pl
#	  The background workers that drive async projections (CONTRACT.md,
#	  "Projections"; src/worker.c): with the library in
#	  shared_preload_libraries, a launcher starts one "event_sourcing worker"
#	  per database in event_sourcing.worker_databases, and the worker applies
#	  the events of every async projection without anybody calling
#	  es_projection_run.
#
#	  One node, worker_databases = 'app, other, plain' (app and other have
#	  the extension, plain has not), worker_retry_interval = 200 ms,
#	  worker_restart_interval = 200 ms.  Every handler records the position
#	  it applied and the backend type of the process that ran it, so the
#	  checks below can tell that the worker applied an event, and that it
#	  applied it exactly once.
#
#	  a. Catch-up after commit: an appended event is applied within 1 s.
#		 Negative control: with worker_databases = '' (reload) the workers
#		 go and nothing is applied for 2 s; listing the databases again
#		 (reload) catches up.
#	  b. Woken by the commit, not by polling: with worker_idle_interval =
#		 60 s, 20 appends are each applied within 1 s of their commit
#		 (median and max reported).  Negative control: COMMIT PREPARED of an
#		 append does not wake the worker (the commit broadcast is the
#		 committer's, and it did not append), so that event waits for the
#		 next wake-up: nothing is applied for 2 s, which shows the idle
#		 interval of 60 s is in force.
#	  c. A handler error: a poison event marks its projection failed
#		 (last_error, failed_position in es_projections, WARNING in the log),
#		 another async projection keeps up, the worker process stays the
#		 same; once the handler is fixed (CREATE OR REPLACE) the worker
#		 retries by itself within the retry interval, the projection is
#		 running again and applies the poison event and later ones exactly
#		 once.
#	  d. Restarts: events appended while no worker ran are applied after a
#		 server restart, from the checkpoint; a worker ended by
#		 pg_terminate_backend is started again by the launcher; the worker
#		 killed with SIGKILL in the middle of a long catch-up (crash restart
#		 of the server), and the server stopped in immediate mode in the
#		 middle of another: the worker comes back and every event is applied
#		 exactly once by every projection.
#	  e. DROP DATABASE other WITH (FORCE) while it is listed: the launcher
#		 and the worker of app go on (same processes) and keep applying, the
#		 log says once that the database does not exist; the worker of plain
#		 (no extension) runs rounds without any error, and picks the
#		 extension up when it is created there.
#	  f. A fast shutdown succeeds promptly, with no process terminated by a
#		 signal and no PANIC in the log.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/006_projection_worker.pl

use strict;
use warnings;

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $t_start = time();

my $node = es_node(
	'projection_worker', q{
track_commit_timestamp = on
max_prepared_transactions = 5
max_worker_processes = 12
restart_after_crash = on
log_statement = none
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'app, other, plain'
event_sourcing.worker_retry_interval = 200ms
event_sourcing.worker_restart_interval = 200ms
});

# A read model shared by every projection: one row per (projection, event)
# applied, with the process type that applied it.
my $read_model = q{
CREATE EXTENSION event_sourcing;
CREATE TABLE applied (
  projection text NOT NULL,
  position bigint NOT NULL,
  event_type text NOT NULL,
  applied_by text,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION record(p text, e es_events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO applied (projection, position, event_type, applied_by)
  SELECT p, e.global_position, e.event_type, backend_type
  FROM pg_stat_activity WHERE pid = pg_backend_pid()
$$;
CREATE FUNCTION apply_a(e es_events) RETURNS void LANGUAGE sql
  AS $$ SELECT record('a', e) $$;
SELECT es_define_projection('a', 'apply_a(es_events)', mode => 'async');
};

$node->safe_psql('postgres', 'CREATE DATABASE app; CREATE DATABASE other; CREATE DATABASE plain');
$node->safe_psql('app', $read_model);
$node->safe_psql('other', $read_model);

my $app;	# background session in app, for the short polls

sub open_session
{
	$app = $node->background_psql('app', on_error_stop => 1);
	return;
}

# Run $sql in app every 5 ms until it returns $want, at most $limit seconds.
# Returns the seconds it took, or undef when it never did.
sub poll_app
{
	my ($sql, $want, $limit) = @_;
	my $t0 = time();
	while (1)
	{
		my $got = $app->query_safe($sql);
		return time() - $t0 if $got eq $want;
		return undef if time() - $t0 > $limit;
		usleep(5_000);
	}
}

# Append one event in app (its own transaction) to a new stream; returns
# its global position.
sub append_app
{
	my ($stream, $type, $data) = @_;
	$data //= '{}';
	$app->query_safe(
		"SELECT es_append('$stream', NULL, '$type', '$data'::jsonb)");
	return $app->query_safe(
		"SELECT max(global_position) FROM es_events WHERE stream_id = '$stream'");
}

sub applied_sql
{
	my ($projection, $position) = @_;
	return
	  "SELECT count(*) FROM applied WHERE projection = '$projection' AND position = $position";
}

# "pid per database" of the event_sourcing workers, and the launcher's pid.
sub workers
{
	return $node->safe_psql('postgres',
		q{SELECT coalesce(string_agg(datname || '=' || pid, ' ' ORDER BY datname), '')
		  FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker'});
}

sub worker_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker' AND datname = '$db'"
	);
}

sub launcher_pid
{
	return $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'event_sourcing launcher'});
}

# Wait until there is a worker for each of @dbs and for no other database.
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
		usleep(20_000);
	}
	diag "workers: '$got', wanted databases: @dbs";
	return 0;
}

# Exactly-once check of projection $p in $db against the events matching
# $types (SQL text[] literal or NULL): "applied|duplicated|missing|extra|
# not applied by the worker".
sub once_check
{
	my ($db, $p, $types) = @_;
	$types //= 'NULL';
	return $node->safe_psql(
		$db, qq{
WITH want AS (
  SELECT global_position AS position FROM es_events
  WHERE ${types}::text[] IS NULL OR event_type = ANY (${types}::text[])),
got AS (SELECT * FROM applied WHERE projection = '$p')
SELECT (SELECT count(*) FROM got) || '|' ||
       (SELECT count(*) FROM (SELECT position FROM got GROUP BY position HAVING count(*) > 1) d) || '|' ||
       (SELECT count(*) FROM want WHERE position NOT IN (SELECT position FROM got)) || '|' ||
       (SELECT count(*) FROM got WHERE position NOT IN (SELECT position FROM want)) || '|' ||
       (SELECT count(*) FROM got WHERE applied_by IS DISTINCT FROM 'event_sourcing worker')});
}

sub matching_count
{
	my ($db, $types) = @_;
	$types //= 'NULL';
	return $node->safe_psql($db,
		"SELECT count(*) FROM es_events WHERE ${types}::text[] IS NULL OR event_type = ANY (${types}::text[])"
	);
}

# Wait until projection $p in $db has no lag and is running.
sub wait_caught_up
{
	my ($db, $p) = @_;
	return $node->poll_query_until($db,
		"SELECT lag = 0 AND status = 'running' FROM es_projections WHERE name = '$p'");
}

sub set_conf
{
	my ($lines) = @_;
	$node->append_conf('postgresql.conf', $lines);
	$node->reload;
	return;
}

# Log lines (after $offset) of process $pid at WARNING or worse.
sub bad_log_lines
{
	my ($pid, $offset) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return join("\n", grep { /\[$pid\] .*(?:WARNING|ERROR|FATAL|PANIC):/ } split /\n/, $log);
}

ok(wait_for_workers(qw(app other plain)),
	'setup: the launcher started a worker for each of app, other and plain');
isnt(launcher_pid(), '', 'setup: the launcher runs');
open_session();

#
# a. Catch-up after commit, and the negative control.
#
{
	my $p = append_app('tick-1', 'Tick');
	my $took = poll_app(applied_sql('a', $p), '1', 1);
	ok(defined $took,
		'a: the event appended is applied by the worker within 1 s, nobody calling es_projection_run');
	note sprintf('a: applied %.1f ms after the append returned', 1000 * ($took // 99));
	is($app->query_safe("SELECT applied_by FROM applied WHERE projection = 'a' AND position = $p"),
		'event_sourcing worker', 'a: by the event_sourcing worker process');
	ok(wait_caught_up('app', 'a'), 'a: es_projections shows projection a caught up');

	# the same in other: its own worker
	my $po = $node->safe_psql('other', q{SELECT es_append('tick-1', NULL, 'Tick', '{}')});
	ok( $node->poll_query_until('other',
			"SELECT count(*) = 1 FROM applied WHERE position = $po AND applied_by = 'event_sourcing worker'"),
		'a: database other has its own worker applying its projection');

	# negative control: no database listed
	my $launcher = launcher_pid();
	set_conf("event_sourcing.worker_databases = ''\n");
	ok(wait_for_workers(), "a: worker_databases = '' (reload): the launcher stops every worker");
	is(launcher_pid(), $launcher, 'a: the launcher itself goes on');
	my $q = append_app('tick-2', 'Tick');
	usleep(2_000_000);
	is($app->query_safe(applied_sql('a', $q)), '0',
		'a: negative control: with no worker, the event is not applied in 2 s');
	is($app->query_safe("SELECT lag > 0 FROM es_projections WHERE name = 'a'"),
		't', 'a: es_projections shows the lag');

	set_conf("event_sourcing.worker_databases = 'app, other, plain'\n");
	$took = poll_app(applied_sql('a', $q), '1', 5);
	ok(defined $took,
		'a: listing the databases again (reload) starts the workers, which catch up');
	note sprintf('a: caught up %.1f ms after the reload', 1000 * ($took // 99));
	ok(wait_for_workers(qw(app other plain)), 'a: a worker for each database again');
}

#
# b. Woken by the commit of an append, with a 60 s idle interval.
#
my (@lat_client, @lat_server);
{
	set_conf("event_sourcing.worker_idle_interval = '60s'\n");
	# The worker reads the new setting at the start of its next round, after
	# the 1 s it may still be sleeping; that round still sleeps the old
	# interval (sleep_ms is taken before the reload), so wait for two.
	usleep(2_300_000);

	# COMMIT PREPARED: no broadcast, so no wake-up for 60 s
	$app->query_safe(
		q{BEGIN; SELECT es_append('prepared-1', NULL, 'Tick', '{}'); PREPARE TRANSACTION 'p1'});
	$app->query_safe(q{COMMIT PREPARED 'p1'});
	my $pp = $app->query_safe(
		q{SELECT global_position FROM es_events WHERE stream_id = 'prepared-1'});
	usleep(2_000_000);
	is($app->query_safe(applied_sql('a', $pp)), '0',
		'b: negative control: an event committed by COMMIT PREPARED (no wake-up) waits, not applied in 2 s: the 60 s idle interval is in force'
	);

	my $bad;
	for my $i (1 .. 20)
	{
		usleep(int(rand(100_000)));
		my $p = append_app("wake-$i", 'Tick', qq({"round": $i}));
		my $took = poll_app(applied_sql('a', $p), '1', 1);
		if (!defined $took)
		{
			$bad //= "round $i: event $p not applied within 1 s";
			next;
		}
		push @lat_client, 1000 * $took;
		push @lat_server, $app->query_safe(
			qq{SELECT round(1000 * extract(epoch FROM a.applied_at - pg_xact_commit_timestamp(e.xmin)), 3)
			   FROM applied a JOIN es_events e ON e.global_position = a.position
			   WHERE a.projection = 'a' AND a.position = $p});
		if ($i == 1)
		{
			is($app->query_safe(applied_sql('a', $pp)), '1',
				'b: the commit of the next append wakes the worker, which also applies the prepared one');
		}
	}
	is($bad, undef,
		'b: with worker_idle_interval = 60 s, each of 20 appends is applied within 1 s of its commit');
	cmp_ok(median(@lat_server), '<', 250,
		'b: median latency from the commit to the handler under 250 ms');
	note sprintf(
		'b: from commit to handler (server clock), %d appends: median %.3f ms, max %.3f ms (all: %s)',
		scalar(@lat_server), median(@lat_server), max_of(@lat_server),
		join(' ', map { sprintf('%.1f', $_) } @lat_server));
	note sprintf(
		'b: from the append returning to the client seeing the row (5 ms polls): median %.1f ms, max %.1f ms',
		median(@lat_client), max_of(@lat_client));
}

#
# c. A handler error (the 60 s idle interval still in force).
#
{
	my $worker = worker_pid('app');
	my $offset = -s $node->logfile;
	$app->query_safe(
		q{CREATE FUNCTION apply_orders(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.data ? 'poison' THEN
    RAISE EXCEPTION 'poison order at %', e.global_position;
  END IF;
  PERFORM record('orders', e);
END $$});
	$app->query_safe(
		q{SELECT es_define_projection('orders', 'apply_orders(es_events)', ARRAY['Order'], 'async')});
	my $o1 = append_app('order-1', 'Order');
	my $o2 = append_app('order-2', 'Order', '{"poison": true}');
	my $o3 = append_app('order-3', 'Order');

	ok( defined poll_app(
			q{SELECT status FROM es_projections WHERE name = 'orders'}, 'failed', 3),
		'c: the poison event makes projection orders failed');
	is( $app->query_safe(
			q{SELECT position || '|' || failed_position || '|' || last_error FROM es_projections WHERE name = 'orders'}),
		"$o1|$o2|poison order at $o2",
		'c: es_projections: checkpoint before the poison event, failed_position and last_error');
	is( $app->query_safe(
			q{SELECT string_agg(position::text, ',' ORDER BY position) FROM applied WHERE projection = 'orders'}),
		$o1, 'c: the event before the poison one is applied, none after it');
	ok( $node->log_contains(
			qr/WARNING:  projection "orders" failed at global position $o2: poison order at $o2/,
			$offset),
		'c: the failure is logged as a WARNING');

	# the other async projection keeps up, woken by each commit
	my $kept = 1;
	for my $i (1 .. 3)
	{
		my $p = append_app("tick-c$i", 'Tick');
		$kept &&= defined poll_app(applied_sql('a', $p), '1', 1);
	}
	ok($kept && defined poll_app(applied_sql('a', $o3), '1', 0),
		'c: projection a keeps applying every event within 1 s meanwhile');
	is($app->query_safe(q{SELECT status FROM es_projections WHERE name = 'orders'}),
		'failed', 'c: orders stays failed while its handler fails');
	is(worker_pid('app'), $worker, 'c: the worker process of app is the same one');

	# fix the handler; no append: the worker retries by itself
	$app->query_safe(
		q{CREATE OR REPLACE FUNCTION apply_orders(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM record('orders', e);
END $$});
	my $took = poll_app(
		q{SELECT status || '|' || lag FROM es_projections WHERE name = 'orders'},
		'running|0', 20);
	# 20 s: generous for a loaded machine, and still far below the 60 s idle
	# interval, so only the retry interval (200 ms) can have brought it back
	ok(defined $took,
		'c: after the handler is fixed the worker retries by itself (no append to wake it) and orders is running again, caught up, within 20 s (retry interval 200 ms, idle interval 60 s)'
	);
	if (defined $took)
	{
		note sprintf('c: recovered %.1f ms after the fix', 1000 * $took);
	}
	else
	{
		# see whether a wake-up by an append is what it takes
		my $p = append_app('tick-wake', 'Tick');
		my $t2 = poll_app(
			q{SELECT status || '|' || lag FROM es_projections WHERE name = 'orders'},
			'running|0', 3);
		diag(defined $t2
			? sprintf('c: orders recovered only after an append woke the worker (%.1f ms later)', 1000 * $t2)
			: 'c: orders did not recover even after an append');
	}
	is($app->query_safe(q{SELECT last_error IS NULL AND failed_position IS NULL FROM es_projections WHERE name = 'orders'}),
		't', 'c: last_error and failed_position are cleared');

	my $o4 = append_app('order-4', 'Order');
	my $o5 = append_app('order-5', 'Order');
	ok(defined poll_app(applied_sql('orders', $o5), '1', 1), 'c: later events are applied');
	is( $app->query_safe(
			q{SELECT string_agg(position::text, ',' ORDER BY position) FROM applied WHERE projection = 'orders'}),
		"$o1,$o2,$o3,$o4,$o5",
		'c: orders applied every order exactly once, the poison one included');
	is(worker_pid('app'), $worker, 'c: still the same worker process');
	is(bad_log_lines($worker, $offset) =~ s/.*WARNING:  projection "orders" failed at global position \d+: poison order at \d+\n?//gr,
		'', 'c: the worker logged nothing at WARNING or worse but the failures of orders');
}

#
# d. Restarts.
#
{
	set_conf("event_sourcing.worker_idle_interval = '1s'\n");

	# events appended while no worker runs, then a restart
	set_conf("event_sourcing.worker_databases = ''\n");
	ok(wait_for_workers(), 'd: no worker');
	my @pending = map { append_app("pending-$_", ($_ % 2 ? 'Order' : 'Tick')) } 1 .. 6;
	$app->quit;
	$node->append_conf('postgresql.conf', "event_sourcing.worker_databases = 'app, other, plain'\n");
	$node->restart;
	open_session();
	ok(wait_for_workers(qw(app other plain)), 'd: after a restart, a worker for each database');
	ok(wait_caught_up('app', 'a') && wait_caught_up('app', 'orders'),
		'd: after the restart the worker catches up on the events appended before it');
	is(once_check('app', 'a'), matching_count('app') . '|0|0|0|0',
		'd: restart: projection a applied every event exactly once, all by the worker');
	is(once_check('app', 'orders', q{'{Order}'}),
		matching_count('app', q{'{Order}'}) . '|0|0|0|0',
		'd: restart: projection orders applied every Order exactly once');

	# a worker ended by pg_terminate_backend: the launcher starts it again
	my $old = worker_pid('app');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");
	my $p = append_app('tick-d1', 'Tick');
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker' AND datname = 'app' AND pid <> $old"
		),
		'd: a worker ended by pg_terminate_backend is started again by the launcher');
	ok(defined poll_app(applied_sql('a', $p), '1', 3), 'd: and applies what was appended meanwhile');

	# long catch-ups, 20 events per projection and round, a slow handler
	$app->query_safe(
		q{CREATE FUNCTION apply_slow(e es_events) RETURNS void LANGUAGE sql AS $$
  SELECT pg_sleep(0.005); SELECT record('slow', e) $$});
	set_conf("event_sourcing.worker_max_events = 20\n");
	usleep(1_200_000);	# the worker takes it at its next round
	$app->query_safe(
		q{SELECT es_define_projection('slow', 'apply_slow(es_events)', ARRAY['Bulk'], 'async')});

	my $total = 0;
	for my $how ('kill -9 of the worker', 'immediate stop')
	{
		$app->query_safe(
			q{SELECT count(es_append('bulk-' || i, NULL, 'Bulk', jsonb_build_object('i', i))) FROM generate_series(1, 300) i});
		$total += 300;
		my $base = $total - 300;
		ok( defined poll_app(
				"SELECT count(*) >= $base + 60 FROM applied WHERE projection = 'slow'",
				't', 10),
			"d: $how: the worker is applying the batch (some rounds committed)");
		my $applied_before = $app->query_safe(q{SELECT count(*) FROM applied WHERE projection = 'slow'});
		ok($applied_before < $total, "d: $how: in the middle of it ($applied_before of $total)");
		my $pid = worker_pid('app');
		ok( defined poll_app(
				"SELECT wait_event FROM pg_stat_activity WHERE pid = $pid", 'PgSleep', 5),
			"d: $how: caught inside a handler (a round in progress, not committed)");
		my $offset = -s $node->logfile;
		$app->quit;
		if ($how eq 'immediate stop')
		{
			$node->stop('immediate');
			$node->start;
		}
		else
		{
			kill 'KILL', $pid;
			ok( $node->poll_query_until('postgres',
					"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'event_sourcing worker' AND datname = 'app' AND pid <> $pid"
				),
				"d: $how: the server restarts after the crash, and so does the worker");
			ok( $node->log_contains(
					qr/background worker "event_sourcing worker" \(PID $pid\) was terminated by signal 9.*\n(?:.*\n)*.*all server processes terminated; reinitializing/,
					$offset),
				"d: $how: the log shows the worker killed and the crash restart");
		}
		open_session();
		ok(wait_for_workers(qw(app other plain)), "d: $how: a worker for each database afterwards");
		ok( wait_caught_up('app', 'slow') && wait_caught_up('app', 'a')
			  && wait_caught_up('app', 'orders'),
			"d: $how: the worker catches up from the checkpoints");
		is(once_check('app', 'slow', q{'{Bulk}'}), "$total|0|0|0|0",
			"d: $how: projection slow applied each of the $total events exactly once");
		is(once_check('app', 'a'), matching_count('app') . '|0|0|0|0',
			"d: $how: projection a applied every event exactly once");
		is(once_check('app', 'orders', q{'{Order}'}),
			matching_count('app', q{'{Order}'}) . '|0|0|0|0',
			"d: $how: projection orders applied every Order exactly once");
	}
	is(once_check('other', 'a'), matching_count('other') . '|0|0|0|0',
		'd: in other too, every event applied exactly once');
}

#
# e. A dropped database, and one without the extension.
#
{
	set_conf("event_sourcing.worker_idle_interval = '100ms'\n");
	my $launcher = launcher_pid();
	my $app_worker = worker_pid('app');
	my $plain_worker = worker_pid('plain');
	my $offset = -s $node->logfile;

	my ($rc, $out, $err) =
	  $node->psql('postgres', 'DROP DATABASE other WITH (FORCE)');
	is($rc, 0, 'e: DROP DATABASE other WITH (FORCE) succeeds while other is listed')
	  or diag $err;
	my $missing =
	  qr/event_sourcing: database "other" in event_sourcing.worker_databases does not exist/;
	my $found = eval { $node->wait_for_log($missing, $offset); 1 };
	ok($found, 'e: the log says database "other" does not exist');
	ok(wait_for_workers(qw(app plain)), 'e: workers for app and plain only');
	is(launcher_pid(), $launcher, 'e: the launcher is the same process');
	is(worker_pid('app'), $app_worker, 'e: the worker of app is the same process');

	my $p = append_app('tick-e1', 'Tick');
	ok(defined poll_app(applied_sql('a', $p), '1', 1), 'e: app keeps applying');
	usleep(1_000_000);    # several rounds of the launcher
	my @n = slurp_file($node->logfile, $offset) =~ /$missing/g;
	is(scalar(@n), 1, 'e: the missing database is logged once, not at every round');
	is(once_check('app', 'a'), matching_count('app') . '|0|0|0|0',
		'e: projection a still has every event exactly once');

	# plain: its worker has run many rounds (100 ms idle) without the extension
	is(worker_pid('plain'), $plain_worker, 'e: the worker of plain (no extension) is the same process');
	is(bad_log_lines($plain_worker, 0), '', 'e: and it never logged a warning or an error');

	$node->safe_psql('plain', $read_model);
	my $pp = $node->safe_psql('plain', q{SELECT es_append('tick-1', NULL, 'Tick', '{}')});
	ok( $node->poll_query_until('plain',
			"SELECT count(*) = 1 FROM applied WHERE position = $pp AND applied_by = 'event_sourcing worker'"),
		'e: once the extension is created in plain, its worker applies its projection');
	is(worker_pid('plain'), $plain_worker, 'e: the same worker process');
}

#
# f. A fast shutdown.
#
{
	$app->quit;
	my $offset = -s $node->logfile;
	my $t0 = time();
	ok($node->stop('fast', fail_ok => 1), 'f: a fast shutdown succeeds');
	my $took = time() - $t0;
	cmp_ok($took, '<', 10, sprintf('f: promptly (%.2f s)', $took));
	my $log = slurp_file($node->logfile, $offset);
	like($log, qr/database system is shut down/, 'f: the log says the server shut down');
	unlike($log, qr/terminated by signal|PANIC/,
		'f: no process terminated by a signal, no PANIC');
}

note sprintf(
	'summary: commit-to-handler latency with a 60 s idle interval: median %.3f ms, max %.3f ms; total %.1f s',
	median(@lat_server), max_of(@lat_server), time() - $t_start);

done_testing();
