# Copyright: event_sourcing contributors
#
# 005_wait_notify.pl
#	  es_wait wakes up promptly when an append commits, with and without the
#	  library in shared_preload_libraries, and event_sourcing.notify_channel
#	  sends one NOTIFY per category per committed transaction (CONTRACT.md,
#	  "Schema evolution, metadata, notifications").
#
#	  One node, track_commit_timestamp = on, run twice:
#
#	  1. event_sourcing in shared_preload_libraries, so es_wait sleeps on the
#		 shared condition variable broadcast at commit.  wait_poll_interval is
#		 set to 10 s there: should es_wait poll instead, the wake-up latencies
#		 would be seconds, not milliseconds.
#		 - 20 rounds: a session sleeps in es_wait(p, 30000) (seen in
#		   pg_stat_activity as wait event Extension), another appends one
#		   event and commits 0-25 ms later (at a random phase of the polling
#		   interval); es_wait returns its position, and the latency,
#		   from the commit timestamp of the event to the moment es_wait
#		   returned, is reported (median, max) and bounded;
#		 - with nothing appended es_wait(p, 1500) returns p after 1.5 s, also
#		   when meanwhile a transaction that did not append commits and an
#		   append rolls back;
#		 - an append that rolls back does not end the wait; the next one that
#		   commits does, and es_wait returns its position;
#		 - COMMIT PREPARED of an appending transaction (no broadcast: its
#		   committer did not append) is seen by the once-a-second recheck;
#		 - query cancel and statement_timeout interrupt es_wait (57014);
#		 - LISTEN: a transaction appending to account-1, account-2, order-1
#		   (and to cart-1 in a savepoint rolled back) sends exactly two
#		   notifications, "account" and "order"; a rolled-back transaction and
#		   one committed with notify_channel unset send none.
#	  2. restarted without preloading (es_wait polls every
#		 event_sourcing.wait_poll_interval = 20 ms): the same 20 rounds with a
#		 looser bound, the timeout, cancel and statement_timeout.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/005_wait_notify.pl

use strict;
use warnings;

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $rounds = 20;

my $t_start = time();

my $node = es_node(
	'wait_notify', qq{
track_commit_timestamp = on
max_prepared_transactions = 5
log_statement = none
shared_preload_libraries = 'event_sourcing'
event_sourcing.wait_poll_interval = 10000
});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION event_sourcing;

-- es_wait, reported as "position|ms waited|ms from the commit of the event
-- at that position until es_wait returned" (empty when there is no event)
CREATE FUNCTION timed_wait(after bigint, timeout_ms int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  t0 timestamptz := clock_timestamp();
  pos bigint;
  t1 timestamptz;
  committed timestamptz;
BEGIN
  pos := es_wait(after, timeout_ms);
  t1 := clock_timestamp();
  SELECT pg_xact_commit_timestamp(xmin) INTO committed
    FROM es_events WHERE global_position = pos;
  RETURN format('%s|%s|%s', pos,
                round(1000 * extract(epoch FROM t1 - t0), 3),
                round(1000 * extract(epoch FROM t1 - committed), 3));
END $$;

CREATE TABLE other_work (i int);
});

# Sessions of the current run: the waiter, and "other" that appends and
# watches the waiter.
my ($waiter, $other, $waiter_pid);

sub open_sessions
{
	$waiter = $node->background_psql('postgres', on_error_stop => 0);
	$other = $node->background_psql('postgres', on_error_stop => 0);
	$waiter_pid = $waiter->query_safe('SELECT pg_backend_pid()');
	$waiter->query_safe('\set VERBOSITY verbose');
	return;
}

sub close_sessions
{
	$_->quit for ($waiter, $other);
	return;
}

sub safe_position { return $other->query_safe('SELECT es_safe_position()'); }

# Start a statement in the waiter and return once it sleeps in es_wait (wait
# event Extension), not before.
sub start_waiting
{
	my ($sql) = @_;
	$waiter->query_until(qr/started\n/, "\\echo started\n$sql;\n");
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return
		  if $other->query_safe(
			"SELECT wait_event_type = 'Extension' AND wait_event = 'Extension' FROM pg_stat_activity WHERE pid = $waiter_pid"
		  ) eq 't';
		usleep(2_000);
	}
	die "the waiter did not start waiting: $sql";
}

# The result of the statement started by start_waiting: for timed_wait, the
# list (position, ms waited, ms from the commit to the return).
sub finish_waiting
{
	my ($out, $err) = $waiter->query("SELECT 'finished'");
	my $stderr = $waiter->{stderr};
	$waiter->{stderr} = '';
	die "the waiter failed: $stderr" if $err;
	$out =~ /^(\d+)\|([\d.]+)\|([\d.-]*)\nfinished$/
	  or die "unexpected output of the waiter: $out";
	return ($1, $2, $3 eq '' ? undef : $3);
}

# $rounds times: es_wait in the waiter, one append committed by "other".
# Checks every returned position; returns the wake-up latencies (ms).
sub wake_rounds
{
	my ($label) = @_;
	my (@lat, $bad);
	for my $i (1 .. $rounds)
	{
		my $before = safe_position();
		start_waiting("SELECT timed_wait($before, 30000)");
		# commit at a random phase of the polling interval
		usleep(int(rand(25_000)));
		$other->query_safe(
			"SELECT es_append('wake-$i', NULL, 'Tick', jsonb_build_object('round', $i))");
		my ($pos, $waited, $lat) = finish_waiting();
		my $want = $before + 1;
		if ($pos != $want || !defined $lat)
		{
			$bad //= "round $i: es_wait($before) returned $pos, expected $want";
			next;
		}
		push @lat, $lat;
	}
	is($bad, undef,
		"$label: in $rounds rounds es_wait returned the position appended");
	note sprintf(
		'%s: wake-up latency from commit to es_wait returning, %d rounds: median %.3f ms, max %.3f ms, min %.3f ms (all: %s)',
		$label, scalar(@lat), median(@lat), max_of(@lat),
		-max_of(map { -$_ } @lat), join(' ', map { sprintf('%.1f', $_) } @lat));
	return @lat;
}

# es_wait in the waiter cancelled by pg_cancel_backend, and interrupted by
# statement_timeout: 57014, promptly.
sub interrupt_checks
{
	my ($label) = @_;
	my $p = safe_position();

	start_waiting("SELECT es_wait($p, 60000)");
	my $t0 = time();
	$other->query_safe("SELECT pg_cancel_backend($waiter_pid)");
	my ($out, $err) = $waiter->query("SELECT 'finished'");
	my $elapsed = time() - $t0;
	like($waiter->{stderr}, qr/ERROR:\s+57014: canceling statement due to user request/,
		"$label: query cancel interrupts es_wait with 57014");
	cmp_ok($elapsed, '<', 5, "$label: promptly (" . sprintf('%.3f', $elapsed) . ' s)');
	is($out, 'finished', "$label: the session goes on after the cancel");
	$waiter->{stderr} = '';

	$t0 = time();
	($out, $err) = $waiter->query(
		"SET statement_timeout = '300ms';\nSELECT es_wait($p, 60000);\nRESET statement_timeout;\nSELECT 'finished'");
	$elapsed = time() - $t0;
	like($waiter->{stderr},
		qr/ERROR:\s+57014: canceling statement due to statement timeout/,
		"$label: statement_timeout interrupts es_wait with 57014");
	ok($elapsed >= 0.3 && $elapsed < 5,
		"$label: after the statement timeout (" . sprintf('%.3f', $elapsed) . ' s)');
	is($out, 'finished', "$label: the session goes on after the timeout");
	$waiter->{stderr} = '';
	return;
}

#
# 1. Preloaded: es_wait sleeps on the condition variable.
#
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'event_sourcing', 'preloaded');
open_sessions();

my @lat_cv = wake_rounds('preloaded');
cmp_ok(median(@lat_cv), '<', 50,
	'preloaded: median wake-up latency under 50 ms');
cmp_ok(max_of(@lat_cv), '<', 300,
	'preloaded: every wake-up within 300 ms of the commit');

# The timeout, while a transaction that did not append commits and an
# append rolls back.
{
	my $p = safe_position();
	start_waiting("SELECT timed_wait($p, 1500)");
	$other->query_safe('INSERT INTO other_work VALUES (1)');
	$other->query_safe(
		"BEGIN; SELECT es_append('doomed-1', NULL, 'Doomed', jsonb_build_object()); ROLLBACK");
	my ($pos, $waited) = finish_waiting();
	is($pos, $p, 'preloaded: es_wait returns after_position on timeout');
	ok($waited >= 1500 && $waited < 3000,
		"preloaded: after roughly timeout_ms = 1500 ($waited ms), though a transaction without appends committed and an append rolled back meanwhile"
	);
}

# An append that rolls back does not end the wait; the next one committed
# does.
{
	my $p = safe_position();
	start_waiting("SELECT timed_wait($p, 30000)");
	$other->query_safe(
		"BEGIN; SELECT es_append('doomed-2', NULL, 'Doomed', jsonb_build_object()); ROLLBACK");
	usleep(300_000);
	$other->query_safe(
		"SELECT es_append('kept-1', NULL, 'Kept', jsonb_build_object())");
	my ($pos, $waited, $lat) = finish_waiting();
	is($pos, $p + 2,
		'preloaded: a rolled-back append does not end es_wait, the next committed one does');
	ok(defined $lat && $lat >= 0 && $lat < 300,
		'preloaded: woken by that commit (' . ($lat // 'undef') . ' ms after it)');
	cmp_ok($waited, '>=', 300, "preloaded: after the rollback and the pause ($waited ms)");
}

# COMMIT PREPARED: no broadcast; the recheck once a second sees it.
{
	my $p = safe_position();
	start_waiting("SELECT timed_wait($p, 30000)");
	$other->query_safe(
		"BEGIN; SELECT es_append('prepared-1', NULL, 'Prepared', jsonb_build_object()); PREPARE TRANSACTION 'w1'");
	$other->query_safe("COMMIT PREPARED 'w1'");
	my ($pos, $waited, $lat) = finish_waiting();
	is($pos, $p + 1, 'preloaded: COMMIT PREPARED of an append ends es_wait');
	ok(defined $lat && $lat >= 0 && $lat < 3000,
		'preloaded: within the once-a-second recheck (' . ($lat // 'undef') . ' ms after the commit)');
}

interrupt_checks('preloaded');

# LISTEN / notify_channel
{
	my $listener = $node->background_psql('postgres');
	$listener->query_safe('LISTEN es_events');
	my $sender_pid = $other->query_safe('SELECT pg_backend_pid()');

	# The notifications the listener receives up to one with payload $marker,
	# which the sender sends last: notifications arrive in commit order.
	my $received_until = sub {
		my ($marker) = @_;
		my $got = '';
		my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
		until ($got =~ /payload "\Q$marker\E"/ || time() > $deadline)
		{
			$got .= $listener->query_safe('SELECT 1') . "\n";
			usleep(10_000);
		}
		my @n;
		while ($got =~ /Asynchronous notification "([^"]+)" with payload "([^"]*)" received from server process with PID (\d+)\./g)
		{
			last if $2 eq $marker;
			push @n, "$1:$2" . ($3 == $sender_pid ? '' : " (from $3)");
		}
		die "no notification $marker" unless $got =~ /payload "\Q$marker\E"/;
		return join(', ', sort @n);
	};

	$other->query_safe(q{SET event_sourcing.notify_channel = 'es_events'});
	$other->query_safe(
		q{BEGIN;
SELECT es_append('account-1', NULL, 'Opened', jsonb_build_object());
SELECT es_append('account-2', NULL, 'Opened', jsonb_build_object());
SELECT es_append('order-1', NULL, 'Placed', jsonb_build_object());
SAVEPOINT s;
SELECT es_append('cart-1', NULL, 'Created', jsonb_build_object());
ROLLBACK TO SAVEPOINT s;
COMMIT});
	$other->query_safe(q{NOTIFY es_events, 'marker-1'});
	is($received_until->('marker-1'), 'es_events:account, es_events:order',
		'one committed transaction appending to account-1, account-2, order-1 (cart-1 rolled back to a savepoint): exactly the notifications "account" and "order"'
	);

	$other->query_safe(
		q{BEGIN;
SELECT es_append('account-3', NULL, 'Opened', jsonb_build_object());
SELECT es_append('order-2', NULL, 'Placed', jsonb_build_object());
ROLLBACK});
	$other->query_safe(q{NOTIFY es_events, 'marker-2'});
	is($received_until->('marker-2'), '', 'a rolled-back transaction sends none');

	$other->query_safe(q{RESET event_sourcing.notify_channel});
	$other->query_safe(
		q{BEGIN;
SELECT es_append('account-4', NULL, 'Opened', jsonb_build_object());
SELECT es_append('order-3', NULL, 'Placed', jsonb_build_object());
COMMIT});
	$other->query_safe(q{NOTIFY es_events, 'marker-3'});
	is($received_until->('marker-3'), '',
		'a transaction committed with notify_channel unset sends none');
	is( $node->safe_psql(
			'postgres',
			q{SELECT string_agg(stream_id, ',' ORDER BY global_position) FROM es_events
			  WHERE stream_id ~ '^(account|order|cart)-'}),
		'account-1,account-2,order-1,account-4,order-3',
		'the appends of those transactions are as expected');
	$listener->quit;
}

close_sessions();

#
# 2. Not preloaded: es_wait polls every wait_poll_interval = 20 ms.
#
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = ''
event_sourcing.wait_poll_interval = 20
});
$node->restart;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'restarted without preloading');
open_sessions();
is($waiter->query_safe('LOAD \'event_sourcing\'; SHOW event_sourcing.wait_poll_interval'),
	'20ms', 'polling: wait_poll_interval = 20 ms');

my @lat_poll = wake_rounds('polling');
cmp_ok(median(@lat_poll), '<', 100,
	'polling: median wake-up latency under 100 ms');
cmp_ok(max_of(@lat_poll), '<', 300,
	'polling: every wake-up within 300 ms of the commit');

{
	my $p = safe_position();
	my ($pos, $waited) = split /\|/,
	  $waiter->query_safe("SELECT timed_wait($p, 300)");
	is($pos, $p, 'polling: es_wait returns after_position on timeout');
	ok($waited >= 300 && $waited < 1800,
		"polling: after roughly timeout_ms = 300 ($waited ms)");
}

interrupt_checks('polling');

close_sessions();
$node->stop;

note sprintf(
	'summary: preloaded median %.3f ms / max %.3f ms; polling (20 ms) median %.3f ms / max %.3f ms; total %.1f s',
	median(@lat_cv), max_of(@lat_cv), median(@lat_poll), max_of(@lat_poll),
	time() - $t_start);

done_testing();
