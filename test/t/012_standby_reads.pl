# Copyright: event_sourcing contributors
#
# 012_standby_reads.pl
#	  Reading the global log on a physical streaming standby (issue 11): the
#	  standby reads up to the safe bound that the primary's log mark writer
#	  publishes in es_log_mark, so a catch-up reader there never skips an
#	  event and never sees one twice.
#
#	  A. A primary with shared_preload_libraries = event_sourcing and
#		 event_sourcing.worker_databases = 'postgres', and a streaming
#		 standby.  For several seconds pgbench runs 4 appending clients on
#		 the primary (two streams per transaction, a short sleep before
#		 COMMIT so that commits come out of position order, one transaction
#		 in ten rolled back).  Meanwhile a reader ON THE STANDBY pages
#		 es_read_all(last, 100) in a loop, logging every position it gets.
#		 During the load a prepared transaction holds a position p on the
#		 primary: while later events are already replayed on the standby,
#		 the standby's es_safe_position stays below p; then COMMIT PREPARED.
#		 Once the load is over and the standby has caught up
#		 (es_safe_position on the standby equals the primary's), the reader's
#		 positions must be strictly increasing and equal to exactly the
#		 primary's es_events positions, p included.  Negative control: a
#		 naive reader on the standby (plain SELECT on es_events past the last
#		 position it saw), paged while p is pending and after the load,
#		 skips p, and the same checks say so.  Also: es_safe_position on the standby never exceeds
#		 the primary's published mark; es_wait on the standby returns when an
#		 append on the primary is replayed (and times out without one);
#		 es_read_category on the standby returns the primary's category; a
#		 database of the primary that is not in worker_databases has no mark:
#		 es_read_all there fails on the standby with 0A000.
#	  B. A primary that does not preload the library, and its standby:
#		 es_read_all, es_read_category and es_safe_position fail on the
#		 standby with 0A000 and the HINT about shared_preload_libraries;
#		 es_load and es_stream_version work.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/012_standby_reads.pl

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $load_secs = 8;
my $page_size = 100;

my $t_start = time();
my $tempdir = PostgreSQL::Test::Utils::tempdir;

#
# A. The primary preloads the library; its standby.
#
my $primary = es_node(
	'primary', q{
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'postgres'
max_prepared_transactions = 10
max_connections = 30
log_statement = none
}, allows_streaming => 1);
$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION event_sourcing;
-- set once the load is over and the standby caught up: the reader stops
CREATE TABLE ctl (stop bool NOT NULL);
INSERT INTO ctl VALUES (false);
});
# an empty log gets no mark (a mark of 0 says nothing); one event gets one
is($primary->safe_psql('postgres', 'SELECT count(*) FROM es_log_mark'),
	'0', 'primary: no mark while the log is empty');
$primary->safe_psql('postgres',
	q{SELECT es_append('setup-1', NULL, 'Started', '{}')});
$primary->poll_query_until('postgres',
	'SELECT count(*) = 1 AND min(position) = 1 FROM es_log_mark')
  or die 'the log mark writer published nothing';
is( $primary->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing log mark writer' AND datname = 'postgres'}),
	'1',
	'primary: a log mark writer runs for database postgres');

# A database of the primary that is not in worker_databases: no mark.
$primary->safe_psql('postgres', 'CREATE DATABASE other');
$primary->safe_psql('other',
	q{CREATE EXTENSION event_sourcing; SELECT es_append('acct-1', 0, 'E', '{}')});

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->append_conf('postgresql.conf', "hot_standby_feedback = on\nlog_statement = none\n");
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery (hot standby)');

my $err = fails_with($standby, 'other', 'SELECT * FROM es_read_all()', '0A000',
	'standby, database without a log mark writer: es_read_all fails with 0A000');
like($err, qr/HINT:.*worker_databases/,
	'standby, database without a log mark writer: the HINT names worker_databases');

#
# The reader on the standby: es_read_all(last, 100) in a loop, one read a
# transaction, logging the positions of every non-empty read (NOTICE
# "R p1,p2,...").  Once ctl.stop is replayed it reads until a read returns
# nothing, then reports "S reads nonempty".
#
my $reader_sql = qq{DO \$do\$
DECLARE
  after_pos bigint := 0;
  got       bigint[];
  stopping  bool := false;
  reads     bigint := 0;
  nonempty  bigint := 0;
BEGIN
  LOOP
    got := ARRAY(SELECT global_position FROM es_read_all(after_pos, $page_size));
    reads := reads + 1;
    IF cardinality(got) > 0 THEN
      RAISE NOTICE 'R %', array_to_string(got, ',');
      after_pos := got[cardinality(got)];
      nonempty := nonempty + 1;
    ELSIF stopping THEN
      EXIT;
    ELSE
      PERFORM pg_sleep(0.002);
    END IF;
    COMMIT;
    IF NOT stopping THEN
      SELECT stop INTO stopping FROM ctl;
    END IF;
  END LOOP;
  RAISE NOTICE 'S % %', reads, nonempty;
END
\$do\$};

my $psql = $standby->installed_command('psql');
my ($reader_out, $reader_err) = ('', '');
my $reader = IPC::Run::start(
	[
		$psql, '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $standby->connstr('postgres') . ' application_name=standby_reader',
		'-c', $reader_sql
	],
	'<', \'',
	'>', \$reader_out,
	'2>', \$reader_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$standby->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE application_name = 'standby_reader' AND state = 'active'})
  or die 'the standby reader did not start';

#
# The load: pgbench, 4 clients on the primary.  Each transaction appends to
# a stream of category acct, sleeps a little (so commits come out of
# position order), appends to a stream of category cart (every transaction
# locks acct before cart: no deadlock), and commits, or one time in ten
# rolls back (positions that never become events).
#
my $script = "$tempdir/load.sql";
append_to_file(
	$script, q{\set s random(1, 12)
\set t random(1, 12)
\set rb random(0, 9)
BEGIN;
SELECT es_append('acct-' || :s, NULL, 'Deposited', jsonb_build_object('c', :client_id));
SELECT pg_sleep(random() * 0.005);
SELECT es_append('cart-' || :t, NULL, 'Added', jsonb_build_object('c', :client_id));
\if :rb = 0
ROLLBACK;
\else
COMMIT;
\endif
});
my ($bench_out, $bench_err) = ('', '');
my $bench = IPC::Run::start(
	[
		$primary->installed_command('pgbench'), '-n', '-c', '4', '-j', '2',
		'-T', $load_secs, '-f', $script, $primary->connstr('postgres')
	],
	'<', \'',
	'>', \$bench_out,
	'2>', \$bench_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
my $t_load = time();

# es_safe_position on the standby, then the primary's published mark and
# sequence: the standby is never ahead of what the primary published.
my @ahead;
sub sample_safe
{
	my $s = $standby->safe_psql('postgres', 'SELECT es_safe_position()');
	my ($mark, $last) = split /\|/,
	  $primary->safe_psql('postgres',
		q{SELECT (SELECT position FROM es_log_mark),
		         (SELECT last_value FROM es_events_global_position_seq)});
	push @ahead, "$s > mark $mark / last $last" if $s > $mark || $s > $last;
	return $s;
}

#
# A prepared transaction holds position p during the load.
#
$primary->poll_query_until('postgres', 'SELECT count(*) > 50 FROM es_events')
  or die 'the load did not start';
sample_safe();
my $prep = $primary->background_psql('postgres');
my $p = $prep->query_safe(q{BEGIN;
SELECT es_append('acct-prepared', 0, 'Prepared', '{}') \g /dev/null
SELECT global_position FROM es_load('acct-prepared');
PREPARE TRANSACTION 'hold';});
like($p, qr/^\d+$/, "a prepared transaction holds position $p");

# Later events commit and are replayed on the standby while p is pending.
$primary->poll_query_until('postgres',
	"SELECT count(*) >= 100 FROM es_events WHERE global_position > $p")
  or die 'the load did not go past the prepared position';
sample_safe();
$primary->wait_for_catchup($standby);
my ($replayed_after, $standby_safe) = split /\|/,
  $standby->safe_psql('postgres',
	"SELECT (SELECT count(*) FROM es_events WHERE global_position > $p), es_safe_position()");
cmp_ok($replayed_after, '>=', 100,
	'standby: events after the prepared position are replayed while it is pending');
cmp_ok($standby_safe, '<', $p,
	"standby: es_safe_position ($standby_safe) stays below the pending prepared position");
is($standby->safe_psql('postgres',
	"SELECT count(*) FROM es_read_all($p - 1, 100000)"),
	'0', 'standby: es_read_all past p - 1 returns nothing while p is pending');
sample_safe();

# The naive reader pages the standby's es_events now (to the end: that is
# every page it would read in a loop), skipping p.
my @naive = split /\n/,
  $standby->safe_psql('postgres',
	'SELECT global_position FROM es_events ORDER BY global_position');

$primary->safe_psql('postgres', q{COMMIT PREPARED 'hold'});
$prep->quit;
my $bench_ok = $bench->finish;
ok($bench_ok, 'pgbench ran without error')
  or diag("stdout:\n$bench_out\nstderr:\n$bench_err");
my $t_loaded = time();
note 'pgbench: ' . join(' ', grep { /tps|processed|failed/ } split /\n/, $bench_out);

# The naive reader's last pages, once the load is over and replayed.
$primary->wait_for_catchup($standby);
push @naive, split /\n/,
  $standby->safe_psql('postgres',
	"SELECT global_position FROM es_events WHERE global_position > $naive[-1] ORDER BY global_position"
  );

#
# The load is over: the primary's bound reaches the sequence's last value,
# the writer publishes it, the standby replays it.
#
my $final = $primary->safe_psql('postgres',
	'SELECT last_value FROM es_events_global_position_seq');
$primary->poll_query_until('postgres',
	"SELECT es_safe_position() = $final AND (SELECT position FROM es_log_mark) = $final")
  or die 'the primary did not publish its final bound';
$primary->wait_for_catchup($standby);
ok($standby->poll_query_until('postgres', "SELECT es_safe_position() = $final"),
	"the standby's es_safe_position reaches the primary's final bound $final");
is( $standby->safe_psql('postgres', 'SELECT es_safe_position()'),
	$primary->safe_psql('postgres', 'SELECT es_safe_position()'),
	"once caught up, es_safe_position on the standby equals the primary's ($final)");
is(scalar(@ahead), 0,
	'during the load, es_safe_position on the standby never exceeded the primary\'s mark')
  or diag(join("\n", @ahead));

$primary->safe_psql('postgres', 'UPDATE ctl SET stop = true');
$primary->wait_for_catchup($standby);
ok($reader->finish, 'the standby reader ran without error')
  or diag("stderr:\n" . substr($reader_err, -3000));
my (@log, $reads, $nonempty);
for my $line (split /\n/, $reader_err)
{
	push @log, split /,/, $1 if $line =~ /NOTICE:\s+R ([\d,]+)$/;
	($reads, $nonempty) = ($1, $2) if $line =~ /NOTICE:\s+S (\d+) (\d+)$/;
}
my $t_read = time();

#
# The truth: the primary's events.
#
my @committed = split /\n/,
  $primary->safe_psql('postgres',
	'SELECT global_position FROM es_events ORDER BY global_position');
note sprintf('%d events committed, sequence at %d (%d positions rolled back)',
	scalar(@committed), $final, $final - scalar(@committed));
cmp_ok(scalar(@committed), '>', 300, 'the load committed a sizeable number of events');
cmp_ok($final - scalar(@committed), '>', 0, 'the load rolled back some positions');

my $c = es_check_log(\@log, \@committed);
note sprintf(
	'standby reader: %d positions in %s reads (%s non-empty); %d missing, %d repeated, %d going back, %d extra',
	$c->{received}, $reads // '?', $nonempty // '?', scalar(@{ $c->{missing} }),
	$c->{repeats}, $c->{backwards}, scalar(@{ $c->{extra} }));
ok(defined $reads, 'the standby reader reported its statistics');
cmp_ok($nonempty // 0, '>', 10, 'the standby reader read while the load ran (many non-empty reads)');
is($c->{repeats} + $c->{backwards}, 0,
	'standby reader: positions strictly increasing (no repeat, never back)');
is(scalar(@{ $c->{missing} }), 0,
	'standby reader: no event of the primary skipped (' . scalar(@committed) . ' expected)')
  or diag('first missing: ' . first_few(@{ $c->{missing} }));
is(scalar(@{ $c->{extra} }), 0, 'standby reader: nothing received that the primary does not have')
  or diag('first extra: ' . first_few(@{ $c->{extra} }));
is($c->{received}, scalar(@committed), 'standby reader: every event received exactly once');
ok((grep { $_ == $p } @log), "standby reader: received the prepared transaction's position $p");

# Negative control: the same checks catch the naive reader's skip.
my $n = es_check_log(\@naive, \@committed);
ok(!$n->{ok}, 'negative control: the checks fail the naive standby reader');
ok((grep { $_ == $p } @{ $n->{missing} }),
	'negative control: the checks report the prepared position as skipped by the naive standby reader ('
	  . scalar(@{ $n->{missing} }) . ' skipped in all)')
  or diag('naive missing: ' . first_few(@{ $n->{missing} }));
is($n->{repeats} + $n->{backwards} + scalar(@{ $n->{extra} }),
	0, 'negative control: the naive standby reader fails only by skipping');

#
# es_read_category on the standby.
#
is( $standby->safe_psql(
		'postgres',
		q{SELECT string_agg(global_position::text, ',' ORDER BY global_position)
		  FROM es_read_category('acct', 0, 1000000)}),
	$primary->safe_psql(
		'postgres',
		q{SELECT string_agg(global_position::text, ',' ORDER BY global_position)
		  FROM es_events WHERE stream_id LIKE 'acct-%'}),
	'standby: es_read_category(acct) returns exactly the primary\'s acct events, in order');

#
# es_wait on the standby: times out without an append; returns once an
# append on the primary is replayed.
#
is($standby->safe_psql('postgres', "SELECT es_wait($final, 300)"),
	$final, 'standby: es_wait with nothing new times out and returns its argument');
my ($wait_out, $wait_err) = ('', '');
my $waiter = IPC::Run::start(
	[
		$psql, '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
		'-d', $standby->connstr('postgres') . ' application_name=standby_waiter',
		'-c', "SELECT es_wait($final, 170000)"
	],
	'<', \'',
	'>', \$wait_out,
	'2>', \$wait_err,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$standby->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE application_name = 'standby_waiter' AND state = 'active'})
  or die 'the standby waiter did not start';
my $t_wait = time();
my $new = $primary->safe_psql('postgres',
	q{SELECT es_append('acct-late', 0, 'Late', '{}') \g /dev/null
	  SELECT global_position FROM es_load('acct-late')});
ok($waiter->finish, 'standby: es_wait ran without error') or diag($wait_err);
chomp $wait_out;
note sprintf('es_wait on the standby returned %.2f s after the append', time() - $t_wait);
cmp_ok($wait_out, '>=', $new,
	"standby: es_wait returned (with $wait_out) once the append at $new on the primary was replayed, before its timeout");
is($standby->safe_psql('postgres', "SELECT global_position FROM es_read_all($final, 10)"),
	$new, 'standby: es_read_all then returns the new event');

$standby->stop;
$primary->stop;

#
# B. A primary without the library preloaded: its standby cannot read the
# global log, and says why.
#
my $plain = es_node('plain', "log_statement = none\n", allows_streaming => 1);
$plain->safe_psql(
	'postgres', q{CREATE EXTENSION event_sourcing;
SELECT es_append('acct-1', 0, 'Opened', '{}');
SELECT es_append('acct-1', 1, 'Deposited', '{}');});
$plain->backup('backup');
my $plain_standby = PostgreSQL::Test::Cluster->new('plain_standby');
$plain_standby->init_from_backup($plain, 'backup', has_streaming => 1);
$plain_standby->start;
$plain->safe_psql('postgres', q{SELECT es_append('acct-1', 2, 'Deposited', '{}')});
$plain->safe_psql('postgres', 'CREATE DATABASE empty');
$plain->safe_psql('empty', 'CREATE EXTENSION event_sourcing');
$plain->wait_for_catchup($plain_standby);

# no mark, but nothing to read either: an empty log reads as empty
is( $plain_standby->safe_psql(
		'empty', q{SELECT count(*) || ' ' || es_safe_position() FROM es_read_all()}),
	'0 0', 'standby of a primary without preloading: an empty log reads as empty');

is($plain->safe_psql('postgres', 'SELECT count(*) FROM es_log_mark'),
	'0', 'primary without preloading: es_log_mark is empty');
for my $call (
	'SELECT * FROM es_read_all()',
	q{SELECT * FROM es_read_category('acct')},
	'SELECT es_safe_position()')
{
	$err = fails_with($plain_standby, 'postgres', $call, '0A000',
		"standby of a primary without preloading: $call fails with 0A000");
	like($err, qr/cannot be read on this hot standby/,
		"standby of a primary without preloading: $call says the log cannot be read on this standby");
	like($err, qr/HINT:.*shared_preload_libraries/,
		"standby of a primary without preloading: $call has the HINT about shared_preload_libraries");
}
is( $plain_standby->safe_psql(
		'postgres',
		q{SELECT string_agg(event_type, ',' ORDER BY stream_version) FROM es_load('acct-1')}),
	'Opened,Deposited,Deposited',
	'standby of a primary without preloading: es_load works');
is($plain_standby->safe_psql('postgres', q{SELECT es_stream_version('acct-1')}),
	'3', 'standby of a primary without preloading: es_stream_version works');

$plain_standby->stop;
$plain->stop;

note sprintf('timings: setup %.1f s, load %.1f s, catching up %.1f s, total %.1f s',
	$t_load - $t_start, $t_loaded - $t_load, $t_read - $t_loaded, time() - $t_start);
done_testing();
