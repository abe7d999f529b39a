# Copyright: event_sourcing contributors
#
# 014_logical_replica.pl
#	  Reading the global log on a logical replica (README, "Logical
#	  replication"; src/mark.c): the subscriber reads es_events up to the
#	  safe bound the publisher's log mark writer publishes in es_log_mark,
#	  which arrives in the same subscription as the events.
#
#	  Publisher: wal_level = logical, the library preloaded, the test
#	  database in event_sourcing.worker_databases (so its log mark writer
#	  publishes es_log_mark), an async projection "counter" (per-stream
#	  counts, and one row per applied position whose primary key makes a
#	  second application fail) and an inline projection "inline_watch".
#	  Subscriber: its own cluster, the library preloaded, the same read
#	  model and definitions, and a trigger (ENABLE ALWAYS) on es_log_mark
#	  that records the backend type of every process writing the mark.
#	  CREATE PUBLICATION p FOR TABLE es_events, es_log_mark; CREATE
#	  SUBSCRIPTION on the subscriber (after a few events, so the initial copy
#	  carries some); only then is the database added to the subscriber's
#	  event_sourcing.worker_databases (reload), so its worker runs "counter"
#	  there and its log mark writer runs (and must stay silent).
#
#	  a. Out of position order, deterministically: a transaction holds
#		 position p1 open, a prepared transaction holds p2, later appends
#		 commit (p3, p5) and one rolls back (p4).  Once p3 and p5 are applied
#		 on the subscriber (visible in es_events), es_safe_position() there
#		 stays below p1 and es_read_all does not return them; after COMMIT
#		 of p1 the subscriber reads p1 and nothing more; after COMMIT
#		 PREPARED it reads p2, p3, p5 in order, never p4.
#	  b. A load on the publisher (three appenders: slow commits, xid taken
#		 before appending, several streams a transaction, batches,
#		 rollbacks, savepoints rolled back) while two catch-up readers on the
#		 subscriber page es_read_all and es_read_category('acct').  Each sees
#		 every event exactly once, in order, none rolled back (the checker
#		 of 003_readers_never_skip.pl).
#	  c. After catch-up (es_safe_position() equal on both sides, counter's
#		 checkpoint at the end on both): the subscriber's es_read_all paging
#		 returns exactly the publisher's events (every column, in order);
#		 counter's read model on the subscriber equals the publisher's;
#		 inline_watch saw every event on the publisher and none on the
#		 subscriber; es_log_mark on the subscriber was only ever written by
#		 logical replication workers (its own log mark writer runs but does
#		 not publish) and equals the publisher's; es_append on the subscriber
#		 fails with 55000.
#	  d. Misconfigurations, each in a database of its own on the subscriber:
#		 a subscription carrying es_events but not es_log_mark, and
#		 es_events and es_log_mark in two subscriptions: es_read_all fails
#		 with 0A000 and a HINT about publishing both tables in one
#		 publication.  A subscription created disabled (tables in state
#		 'i'): 0A000 about the initial copy; after ENABLE and the initial
#		 copy, the same session (its cached answer invalidated) reads the
#		 publisher's log.  A database listed in the subscriber's
#		 worker_databases, with the extension, before it subscribes (the
#		 natural order): its log mark writer runs but never stores a mark
#		 for its empty local log, so the initial copy of es_log_mark does
#		 not collide with a local row.
#
#	  Negative controls (scratch builds, not committed): es_log_is_remote()
#	  false for the logical case fails a. and the initial sync; a logical
#	  replica reading up to whatever was applied (no mark) fails a. and the
#	  catch-up readers (they skip events); a log mark writer that publishes
#	  on a logical replica fails the es_log_mark writer check of c.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/014_logical_replica.pl

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

my $load_secs = 4;	# how long the appenders run
my $page_size = 50;	# max_count of the catch-up readers

my $t_start = time();

my $pub = es_node(
	'publisher', q{
max_connections = 40
max_prepared_transactions = 10
max_worker_processes = 16
log_statement = none
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'postgres'
},
	allows_streaming => 'logical');

my $sub = es_node(
	'subscriber', q{
max_connections = 40
max_worker_processes = 24
max_logical_replication_workers = 12
max_sync_workers_per_subscription = 2
log_statement = none
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'precreated'
event_sourcing.worker_idle_interval = 200ms
});
$sub->safe_psql('postgres', 'CREATE DATABASE precreated');

my $tempdir = PostgreSQL::Test::Utils::tempdir;

# The read model and the projections, the same on both sides.
my $schema = q{
CREATE EXTENSION event_sourcing;

CREATE TABLE counts (
  stream_id text PRIMARY KEY,
  n bigint NOT NULL,
  last_position bigint NOT NULL);
-- one row per event counter applied: a second application fails
CREATE TABLE applied (position bigint PRIMARY KEY, seq bigserial);
CREATE FUNCTION count_event(e es_events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO counts VALUES (e.stream_id, 1, e.global_position)
  ON CONFLICT (stream_id) DO UPDATE
    SET n = counts.n + 1, last_position = excluded.last_position;
  INSERT INTO applied (position) VALUES (e.global_position);
$$;
SELECT es_define_projection('counter', 'count_event(es_events)', mode => 'async');

CREATE TABLE inline_seen (position bigint NOT NULL);
CREATE FUNCTION see_inline(e es_events) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO inline_seen VALUES (e.global_position) $$;
SELECT es_define_projection('inline_watch', 'see_inline(es_events)');

-- for the appenders and readers
CREATE TABLE all_streams AS
  SELECT c || '-' || i AS s
  FROM unnest(ARRAY['acct', 'order', 'cart']) c, generate_series(1, 5) i;
CREATE FUNCTION rnd_stream() RETURNS text LANGUAGE sql VOLATILE
  AS $$ SELECT s FROM all_streams ORDER BY random() LIMIT 1 $$;
CREATE FUNCTION rnd_streams(k int) RETURNS text[] LANGUAGE sql VOLATILE
  AS $$ SELECT array_agg(s ORDER BY s)
        FROM (SELECT s FROM all_streams ORDER BY random() LIMIT k) t $$;
CREATE FUNCTION ev(a int, n int, i int) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_build_object('a', a, 'n', n, 'i', i) $$;
CREATE FUNCTION batch(a int, n int, k int) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_agg(jsonb_build_object('type', 'Batched', 'data', ev(a, n, i)))
        FROM generate_series(1, k) i $$;
CREATE FUNCTION doomed(s text, v bigint, k int) RETURNS text LANGUAGE sql
  AS $$ SELECT string_agg(global_position::text, ',' ORDER BY stream_version)
        FROM es_load(s, v - k + 1, v) $$;
CREATE TABLE side (a int, n int);
CREATE TABLE ctl (stop bool NOT NULL);
INSERT INTO ctl VALUES (false);
};

$pub->safe_psql('postgres', $schema);
$sub->safe_psql('postgres', $schema);

# Who writes es_log_mark on the subscriber.
$sub->safe_psql(
	'postgres', q{
CREATE TABLE mark_writes (
  position bigint,
  writer text,
  at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION note_mark_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- apply and table sync workers run with an empty search_path
  INSERT INTO public.mark_writes (position, writer)
  SELECT NEW.position, coalesce(
    (SELECT backend_type FROM pg_catalog.pg_stat_activity
     WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()), '?');
  RETURN NULL;
END $$;
CREATE TRIGGER mark_writes AFTER INSERT OR UPDATE ON es_log_mark
  FOR EACH ROW EXECUTE FUNCTION note_mark_write();
ALTER TABLE es_log_mark ENABLE ALWAYS TRIGGER mark_writes;
});

# The log mark writer of database $db runs on $node.
sub writer_runs
{
	my ($node, $db) = @_;
	return $node->poll_query_until(
		'postgres', qq{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing log mark writer' AND datname = '$db'});
}
ok(writer_runs($pub, 'postgres'), 'publisher: the log mark writer runs');

# A few events before subscribing: the initial copy carries them.
$pub->safe_psql('postgres',
	q{SELECT es_append(s, NULL, 'Before', jsonb_build_object('s', s)) FROM all_streams});
ok( $pub->poll_query_until(
		'postgres',
		q{SELECT position = (SELECT max(global_position) FROM es_events) FROM es_log_mark}),
	'publisher: the mark reached the first events');

$pub->safe_psql('postgres', 'CREATE PUBLICATION p FOR TABLE es_events, es_log_mark');
my $pub_conn = $pub->connstr . ' dbname=postgres';

# Wait until $n tables of database $db on the subscriber are ready.
sub wait_ready
{
	my ($db, $n) = @_;
	my $ok = $sub->poll_query_until($db,
		"SELECT count(*) = $n FROM pg_subscription_rel WHERE srsubstate = 'r'");
	diag("$db: "
		  . $sub->safe_psql($db,
			q{SELECT string_agg(srrelid::regclass::text || ' ' || srsubstate::text, ', ') FROM pg_subscription_rel}))
	  unless $ok;
	return $ok;
}

$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION s CONNECTION '$pub_conn' PUBLICATION p");
# Only now list the database on the subscriber: before the subscription
# existed its log mark writer would publish a local mark, which breaks the
# initial copy of es_log_mark (see d. below).
$sub->safe_psql('postgres',
	q{ALTER SYSTEM SET event_sourcing.worker_databases = 'postgres, precreated'});
$sub->reload;
ok(writer_runs($sub, 'postgres'), 'subscriber: the log mark writer runs');
ok(wait_ready('postgres', 2), 'subscriber: es_events and es_log_mark are ready');

# Poll the subscriber until es_safe_position() there is the publisher's.
sub caught_up
{
	my $want = $pub->safe_psql('postgres', 'SELECT es_safe_position()');
	return $sub->poll_query_until('postgres',
		"SELECT es_safe_position() >= $want");
}

ok(caught_up(), 'subscriber: es_safe_position() reaches the publisher\'s');
is( $sub->safe_psql('postgres', 'SELECT count(*) FROM es_read_all(0, 1000)'),
	'15', 'subscriber: es_read_all returns the 15 events of the initial copy');

#
# a. Out of position order, deterministically.
#
my $held = $pub->background_psql('postgres', on_error_stop => 1);
$held->query_safe(q{BEGIN; SELECT es_append('ord-1', NULL, 'Held', '{}')});
my $p1 = $held->query_safe(
	q{SELECT global_position FROM es_events WHERE stream_id = 'ord-1'});
my $prep = $pub->background_psql('postgres', on_error_stop => 1);
$prep->query_safe(q{BEGIN; SELECT es_append('ord-2', NULL, 'Prepared', '{}')});
my $p2 = $prep->query_safe(
	q{SELECT global_position FROM es_events WHERE stream_id = 'ord-2'});
$prep->query_safe(q{PREPARE TRANSACTION 'held2'});
$pub->safe_psql('postgres', q{SELECT es_append('ord-3', NULL, 'Later', '{}')});
my $p4 = $pub->safe_psql(
	'postgres', q{
BEGIN;
SELECT es_append('ord-4', NULL, 'Undone', '{}') \g /dev/null
SELECT global_position FROM es_events WHERE stream_id = 'ord-4';
ROLLBACK;});
$pub->safe_psql('postgres', q{SELECT es_append('ord-5', NULL, 'Later', '{}')});
my ($p3, $p5) = split /\n/,
  $pub->safe_psql('postgres',
	q{SELECT global_position FROM es_events WHERE stream_id IN ('ord-3', 'ord-5') ORDER BY 1});
ok($p1 < $p2 && $p2 < $p3 && $p3 < $p4 && $p4 < $p5,
	"positions drawn in order: held $p1, prepared $p2, committed $p3, rolled back $p4, committed $p5");

ok( $sub->poll_query_until(
		'postgres',
		"SELECT count(*) = 2 FROM es_events WHERE global_position IN ($p3, $p5)"),
	'subscriber: the events committed after the held positions are applied');
my $before = $p1 - 1;
is( $sub->safe_psql(
		'postgres', qq{SELECT es_safe_position() < $p1,
		  (SELECT count(*) FROM es_read_all($before, 1000)),
		  (SELECT count(*) FROM es_read_category('ord', 0, 1000))}),
	't|0|0',
	'subscriber: es_safe_position() stays below the held position, es_read_all and es_read_category return none of the applied later events'
);

$held->query_safe('COMMIT');
ok( $sub->poll_query_until('postgres', "SELECT es_safe_position() >= $p1"),
	'subscriber: the safe position reaches the committed held position');
is( $sub->safe_psql(
		'postgres', qq{SELECT es_safe_position() < $p2,
		  (SELECT string_agg(global_position::text, ',' ORDER BY global_position)
		   FROM es_read_all($before, 1000))}),
	"t|$p1",
	'subscriber: the prepared position still holds back the rest; es_read_all returns the held event only'
);

$pub->safe_psql('postgres', q{COMMIT PREPARED 'held2'});
ok(caught_up(), 'subscriber: caught up after COMMIT PREPARED');
is( $sub->safe_psql(
		'postgres', qq{SELECT string_agg(global_position::text, ',' ORDER BY global_position)
		  FROM es_read_all($before, 1000)}),
	"$p1,$p2,$p3,$p5",
	'subscriber: es_read_all returns the held, prepared and later events in order, not the rolled-back one'
);
$held->quit;
$prep->quit;

#
# b. A load on the publisher while catch-up readers page on the subscriber.
#
my $psql = $sub->installed_command('psql');

sub start_psql
{
	my ($node, $name, @args) = @_;
	my $out = "$tempdir/$name.out";
	my $err = "$tempdir/$name.err";
	my $h   = IPC::Run::start(
		[
			$psql, '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres') . " application_name=$name", @args
		],
		'<', \'',
		'>', $out,
		'2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return { name => $name, h => $h, out => $out, err => $err };
}

sub finish_psql
{
	my ($p) = @_;
	my $rc = $p->{h}->finish ? 0 : ($p->{h}->result // 'killed');
	return ($rc, slurp_file($p->{out}), slurp_file($p->{err}));
}

sub not_logs
{
	my ($text) = @_;
	my @l = grep { !/NOTICE:\s+(?:R|DOOMED) / && /\S/ } split /\n/, $text;
	return join("\n", @l[ 0 .. ($#l < 29 ? $#l : 29) ]);
}

# A reader: pages with the last position it received, logs each non-empty
# read (NOTICE "R p1,p2,..."), commits after each read; once ctl.stop is
# set it reads until a read returns nothing.
sub reader_do
{
	my ($query) = @_;
	my $sql = q{DO $do$
DECLARE
  after_pos bigint := 0;
  got       bigint[];
  stopping  bool := false;
  reads     bigint := 0;
  nonempty  bigint := 0;
BEGIN
  LOOP
    got := ARRAY(@QUERY@);
    reads := reads + 1;
    IF cardinality(got) > 0 THEN
      RAISE NOTICE 'R %', array_to_string(got, ',');
      after_pos := got[cardinality(got)];
      nonempty := nonempty + 1;
    ELSIF stopping THEN
      EXIT;
    END IF;
    COMMIT;
    PERFORM pg_sleep(0.002);
    IF NOT stopping THEN
      SELECT stop INTO stopping FROM ctl;
    END IF;
  END LOOP;
  RAISE NOTICE 'S % %', reads, nonempty;
END
$do$};
	$sql =~ s/\@QUERY\@/$query/;
	return $sql;
}

my %readers = (
	all => {
		query => "SELECT global_position FROM es_read_all(after_pos, $page_size)",
	},
	category => {
		query =>
		  "SELECT global_position FROM es_read_category('acct', after_pos, $page_size)",
	},);
my @reader_names = qw(all category);
for my $r (@reader_names)
{
	$readers{$r}{psql} =
	  start_psql($sub, "reader_$r", '-c', reader_do($readers{$r}{query}));
}
ok( $sub->poll_query_until(
		'postgres', q{SELECT count(*) = 2 FROM pg_stat_activity
		  WHERE application_name LIKE 'reader_%' AND state = 'active'}),
	'subscriber: the catch-up readers run');

my $deadline = $pub->safe_psql('postgres',
	"SELECT now() + interval '$load_secs s' + interval '0.5 s'");

sub appender_do
{
	my ($me) = @_;
	my $sql = q{DO $do$
DECLARE
  deadline  timestamptz := '@DEADLINE@';
  me        int := @ME@;
  n         int := 0;
  kind      int;
  s         text;
  ss        text[];
  v         bigint;
BEGIN
  WHILE clock_timestamp() < deadline LOOP
    n := n + 1;
    kind := (n * 7 + me) % 8;
    CASE
    WHEN kind IN (0, 1) THEN
      -- hold the position a while before committing
      PERFORM es_append(rnd_stream(), NULL, 'Slow', ev(me, n, 1));
      PERFORM pg_sleep(random() * 0.03);
      COMMIT;
    WHEN kind = 2 THEN
      -- take an xid first, then append
      INSERT INTO side VALUES (me, n);
      PERFORM pg_sleep(random() * 0.01);
      PERFORM es_append(rnd_stream(), NULL, 'AfterXid', ev(me, n, 1));
      COMMIT;
    WHEN kind = 3 THEN
      FOREACH s IN ARRAY rnd_streams(2 + n % 2) LOOP
        PERFORM es_append(s, NULL, 'Multi', ev(me, n, 1));
        PERFORM pg_sleep(random() * 0.005);
      END LOOP;
      COMMIT;
    WHEN kind = 4 THEN
      PERFORM es_append(rnd_stream(), NULL, batch(me, n, 2 + n % 3));
      PERFORM pg_sleep(random() * 0.01);
      COMMIT;
    WHEN kind = 5 THEN
      s := rnd_stream();
      v := es_append(s, NULL, batch(me, n, 2));
      RAISE NOTICE 'DOOMED rollback %', doomed(s, v, 2);
      PERFORM pg_sleep(random() * 0.02);
      ROLLBACK;
    WHEN kind = 6 THEN
      ss := rnd_streams(3);
      PERFORM es_append(ss[1], NULL, 'Kept', ev(me, n, 1));
      BEGIN
        v := es_append(ss[2], NULL, 'Undone', ev(me, n, 2));
        RAISE NOTICE 'DOOMED savepoint %', doomed(ss[2], v, 1);
        RAISE EXCEPTION 'undo';
      EXCEPTION WHEN raise_exception THEN
        NULL;
      END;
      PERFORM es_append(ss[3], NULL, 'Kept', ev(me, n, 3));
      PERFORM pg_sleep(random() * 0.01);
      COMMIT;
    ELSE
      PERFORM es_append(rnd_stream(), NULL, 'Quick', ev(me, n, 1));
      COMMIT;
    END CASE;
  END LOOP;
END
$do$};
	$sql =~ s/\@DEADLINE\@/$deadline/;
	$sql =~ s/\@ME\@/$me/;
	return $sql;
}

my $t_load = time();
my @appenders =
  map { start_psql($pub, "appender_$_", '-c', appender_do($_)) } 1 .. 3;
my (%doomed, %doomed_kinds);
for my $a (@appenders)
{
	my ($rc, $out, $err) = finish_psql($a);
	is($rc, 0, "publisher: $a->{name} ran without error")
	  or diag("stderr:\n" . not_logs($err));
	for my $line (split /\n/, "$out\n$err")
	{
		if ($line =~ /DOOMED (\w+) ([\d,]+)/)
		{
			$doomed{$_} = $1 for split /,/, $2;
			$doomed_kinds{$1} += scalar(split /,/, $2);
		}
	}
}
$doomed{$p4} = 'deterministic';
my $t_appended = time();

#
# c. Catch-up, then the subscriber's log and read model against the
# publisher's.
#
ok(caught_up(), 'subscriber: es_safe_position() equals the publisher\'s after the load');
my $t_caught_up = time();
is( $sub->safe_psql('postgres', 'SELECT es_safe_position()'),
	$pub->safe_psql('postgres', 'SELECT es_safe_position()'),
	'es_safe_position() is the same on both sides');

$sub->safe_psql('postgres', 'UPDATE ctl SET stop = true');
for my $r (@reader_names)
{
	my ($rc, $out, $err) = finish_psql($readers{$r}{psql});
	is($rc, 0, "subscriber: reader $r ran without error")
	  or diag("stderr:\n" . not_logs($err));
	my @log;
	for my $line (split /\n/, $err)
	{
		push @log, split /,/, $1 if $line =~ /NOTICE:\s+R ([\d,]+)$/;
		@{ $readers{$r} }{qw(reads nonempty)} = ($1, $2)
		  if $line =~ /NOTICE:\s+S (\d+) (\d+)$/;
	}
	$readers{$r}{log} = \@log;
}

# The truth, on the publisher.
my @committed = split /\n/,
  $pub->safe_psql('postgres', 'SELECT global_position FROM es_events ORDER BY 1');
my @committed_acct = split /\n/,
  $pub->safe_psql(
	'postgres', q{SELECT global_position FROM es_events
	              WHERE split_part(stream_id, '-', 1) = 'acct' ORDER BY 1});
note sprintf(
	'load: %d committed events (%d in category acct), %d rolled-back positions (%s) in %.1f s; subscriber caught up %.1f s later',
	scalar(@committed), scalar(@committed_acct), scalar(keys %doomed),
	join(', ', map { "$_ $doomed_kinds{$_}" } sort keys %doomed_kinds),
	$t_appended - $t_load, $t_caught_up - $t_appended);
cmp_ok(scalar(@committed), '>', 200, 'the appenders committed a sizeable load');
for my $kind (qw(rollback savepoint))
{
	cmp_ok($doomed_kinds{$kind} // 0, '>', 0, "the load rolled back positions ($kind)");
}

my %expected_of = (all => \@committed, category => \@committed_acct);
for my $r (@reader_names)
{
	my $c = es_check_log($readers{$r}{log}, $expected_of{$r}, \%doomed);
	my $n = scalar(@{ $expected_of{$r} });
	note sprintf('subscriber reader %s: %d positions in %d reads (%d non-empty)',
		$r, $c->{received}, $readers{$r}{reads} // -1, $readers{$r}{nonempty} // -1);
	ok(defined $readers{$r}{reads}, "subscriber reader $r reported its statistics");
	cmp_ok($readers{$r}{nonempty} // 0, '>', 3,
		"subscriber reader $r read during the load, not only at the end");
	is($c->{repeats} + $c->{backwards}, 0,
		"subscriber reader $r: positions strictly increasing");
	is(scalar(@{ $c->{missing} }), 0, "subscriber reader $r: nothing skipped ($n expected)")
	  or diag('first missing: ' . first_few(@{ $c->{missing} }));
	is(scalar(@{ $c->{extra} }), 0, "subscriber reader $r: nothing that is not committed")
	  or diag('first extra: ' . first_few(@{ $c->{extra} }));
	is(scalar(@{ $c->{doomed} }), 0, "subscriber reader $r: no rolled-back position")
	  or diag('first: ' . first_few(@{ $c->{doomed} }));
	is($c->{received}, $n, "subscriber reader $r received exactly the $n events");
}

# The whole log through es_read_all paging, every column.
sub read_all_paged
{
	my ($node) = @_;
	my ($after, $out) = (0, '');
	while (1)
	{
		my $page = $node->safe_psql(
			'postgres', qq{
SELECT global_position, stream_id, stream_version, event_type, data::text,
       metadata::text, event_id, recorded_at
FROM es_read_all($after, 400)});
		last if $page eq '';
		$out .= "$page\n";
		($after) = (split /\n/, $page)[-1] =~ /^(\d+)\|/;
	}
	return $out;
}
my $pub_log = read_all_paged($pub);
my $sub_log = read_all_paged($sub);
my $pub_table = $pub->safe_psql(
	'postgres', q{
SELECT global_position, stream_id, stream_version, event_type, data::text,
       metadata::text, event_id, recorded_at
FROM es_events ORDER BY global_position}) . "\n";
is($pub_log, $pub_table, 'publisher: es_read_all paging returns es_events in order');
ok($sub_log eq $pub_log,
	'subscriber: es_read_all paging returns exactly the publisher\'s events, in order')
  or diag(sprintf('publisher %d lines, subscriber %d lines',
	scalar(split /\n/, $pub_log), scalar(split /\n/, $sub_log)));
is(scalar(split /\n/, $sub_log), scalar(@committed),
	'subscriber: es_read_all paged through every committed event');

# counter, async, on both sides.
for my $node ($pub, $sub)
{
	ok( $node->poll_query_until(
			'postgres', q{SELECT position >= (SELECT max(global_position) FROM es_events)
			  AND status = 'running' FROM es_projections WHERE name = 'counter'}),
		$node->name . ': counter\'s checkpoint reaches the end of the log');
}
my $model_sql = q{
SELECT (SELECT string_agg(stream_id || ':' || n || ':' || last_position, ',' ORDER BY stream_id) FROM counts),
       (SELECT string_agg(position::text, ',' ORDER BY seq) FROM applied)};
my $pub_model = $pub->safe_psql('postgres', $model_sql);
my $sub_model = $sub->safe_psql('postgres', $model_sql);
ok($sub_model eq $pub_model, 'subscriber: counter\'s read model equals the publisher\'s')
  or diag("publisher: $pub_model\nsubscriber: $sub_model");
is( $sub->safe_psql('postgres', 'SELECT string_agg(position::text, \',\' ORDER BY seq) FROM applied'),
	join(',', @committed),
	'subscriber: counter applied every event once, in global order');
is( $sub->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing worker' AND datname = 'postgres'}),
	'1',
	'subscriber: its event_sourcing worker runs (it drove counter there)');

# inline_watch fires on the publisher only.
is($pub->safe_psql('postgres', 'SELECT count(*) FROM inline_seen'),
	scalar(@committed), 'publisher: inline_watch saw every event');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM inline_seen'),
	'0', 'subscriber: inline_watch did not fire for applied rows');

# es_log_mark on the subscriber: only replication writes it.
my $writes = $sub->safe_psql('postgres',
	'SELECT writer, count(*) FROM mark_writes GROUP BY 1 ORDER BY 1');
note "subscriber es_log_mark writes: $writes";
like($writes, qr/^logical replication worker\|(\d+)$/,
	'subscriber: es_log_mark was written only by logical replication workers');
is( $sub->safe_psql('postgres', 'SELECT count(*) > 5 FROM mark_writes'),
	't', 'subscriber: the mark arrived many times');
is( $sub->safe_psql(
		'postgres',
		q{SELECT count(*) FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing log mark writer' AND datname = 'postgres'}),
	'1',
	'subscriber: its log mark writer still runs (and did not publish)');
is( $sub->safe_psql('postgres', 'SELECT position, published_at FROM es_log_mark'),
	$pub->safe_psql('postgres', 'SELECT position, published_at FROM es_log_mark'),
	'subscriber: es_log_mark equals the publisher\'s');

# Appending on the subscriber is refused.
my $err = fails_with($sub, 'postgres',
	q{SELECT es_append('acct-1', NULL, 'Local', '{}')},
	'55000', 'subscriber: es_append fails with 55000');
like($err, qr/replicated from another server/,
	'subscriber: the error says the log is replicated');
is($sub->safe_psql('postgres', 'SELECT count(*) FROM es_events'),
	scalar(@committed), 'subscriber: es_events unchanged by the refused append');

#
# d. Misconfigurations on the subscriber, each in a database of its own.
#
$pub->safe_psql(
	'postgres', q{
CREATE PUBLICATION p_events FOR TABLE es_events;
CREATE PUBLICATION p_mark FOR TABLE es_log_mark;
});
for my $db (qw(half split early))
{
	$sub->safe_psql('postgres', "CREATE DATABASE $db");
	$sub->safe_psql($db, 'CREATE EXTENSION event_sourcing');
}

# es_events without es_log_mark.
$sub->safe_psql('half',
	"CREATE SUBSCRIPTION s_half CONNECTION '$pub_conn' PUBLICATION p_events");
ok(wait_ready('half', 1), 'half: es_events is ready');
$err = fails_with($sub, 'half', 'SELECT count(*) FROM es_read_all()', '0A000',
	'half (es_events subscribed without es_log_mark): es_read_all fails with 0A000');
like($err, qr/HINT:\s+Publish es_events and es_log_mark in one publication/,
	'half: the HINT says to publish both tables in one publication');
fails_with($sub, 'half', q{SELECT es_append('acct-1', NULL, 'Local', '{}')},
	'55000', 'half: es_append fails with 55000 there too');
$sub->safe_psql('half', 'DROP SUBSCRIPTION s_half');

# es_events and es_log_mark in two subscriptions.
$sub->safe_psql(
	'split', qq{
CREATE SUBSCRIPTION s_split_events CONNECTION '$pub_conn' PUBLICATION p_events;
CREATE SUBSCRIPTION s_split_mark CONNECTION '$pub_conn' PUBLICATION p_mark;
});
ok(wait_ready('split', 2), 'split: es_events and es_log_mark are ready');
$err = fails_with($sub, 'split', 'SELECT count(*) FROM es_read_all()', '0A000',
	'split (es_events and es_log_mark in two subscriptions): es_read_all fails with 0A000');
like($err, qr/HINT:\s+Publish es_events and es_log_mark in one publication/,
	'split: the HINT says to publish both tables in one publication');
$sub->safe_psql('split', 'DROP SUBSCRIPTION s_split_events; DROP SUBSCRIPTION s_split_mark');

# Before the initial copy: the subscription created disabled.
$sub->safe_psql('early',
	"CREATE SUBSCRIPTION s_early CONNECTION '$pub_conn' PUBLICATION p WITH (enabled = false)");
is( $sub->safe_psql('early',
		'SELECT string_agg(srsubstate::text, \',\') FROM pg_subscription_rel'),
	'i,i', 'early: both tables are subscribed, in state i');
my $early = $sub->background_psql('early', on_error_stop => 0);
$early->query(q{\set VERBOSITY verbose});
my $early_err = $early->query('SELECT count(*) FROM es_read_all()');
$early_err = $early->{stderr};
like($early_err, qr/ERROR:\s+0A000: the global log cannot be read in this database yet/,
	'early: es_read_all before the initial copy fails with 0A000');
like($early_err, qr/initial copy/, 'early: the error is about the initial copy');
$early->{stderr} = '';
$sub->safe_psql('early', 'ALTER SUBSCRIPTION s_early ENABLE');
ok(wait_ready('early', 2), 'early: es_events and es_log_mark are ready after ENABLE');
ok( $sub->poll_query_until('early',
		'SELECT es_safe_position() >= ' . $committed[-1]),
	'early: es_safe_position() reaches the end of the publisher\'s log');
my $early_count = $early->query('SELECT count(*) FROM es_read_all(0, 100000)');
is($early_count, scalar(@committed),
	'early: the session that failed before now reads the whole log (its cached answer was invalidated)')
  or diag("stderr: $early->{stderr}");
$early->quit;
$sub->safe_psql('early', 'DROP SUBSCRIPTION s_early');

# The database existed, with the extension, and was listed in
# event_sourcing.worker_databases before subscribing: the natural order.
# Its log mark writer runs before the subscription exists; it must not store
# a mark for its empty local log, or the initial copy of es_log_mark would
# fail on that row (duplicate key) forever.
$sub->safe_psql('precreated', 'CREATE EXTENSION event_sourcing');
ok(writer_runs($sub, 'precreated'), 'precreated: the log mark writer runs');
# give it its once-a-second chance to publish (a slower machine can only
# hide the bug, not fail the check)
sleep 2;
note 'precreated: es_log_mark before subscribing: '
  . $sub->safe_psql('precreated', 'SELECT position FROM es_log_mark');
$sub->safe_psql('precreated',
	"CREATE SUBSCRIPTION s_pre CONNECTION '$pub_conn' PUBLICATION p");
is($sub->safe_psql('precreated', 'SELECT count(*) FROM es_log_mark'),
	'0', 'precreated: the writer stored no mark for the empty local log');
{
	local $PostgreSQL::Test::Utils::timeout_default = 60;
	ok(wait_ready('precreated', 2),
		'precreated: es_events and es_log_mark are ready');
	my ($rc, $out, $e) = run_sql($sub, 'precreated',
		'SELECT count(*) FROM es_read_all(0, 100000)');
	is($out, scalar(@committed),
		'precreated: es_read_all returns the publisher\'s log')
	  or diag("stderr: $e");
}
$sub->safe_psql('precreated', 'DROP SUBSCRIPTION s_pre');

my $t_end = time();
note sprintf('timings: setup and a. %.1f s, load %.1f s, catch-up %.1f s, rest %.1f s, total %.1f s',
	$t_load - $t_start, $t_appended - $t_load, $t_caught_up - $t_appended,
	$t_end - $t_caught_up, $t_end - $t_start);

$sub->stop;
$pub->stop;
done_testing();
