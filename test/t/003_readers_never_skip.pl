# Copyright: event_sourcing contributors
#
# 003_readers_never_skip.pl
#	  The central claim of the global log, under concurrent load: a reader
#	  that pages es_read_all / es_read_category with the last global_position
#	  it saw never skips an event and never sees one twice, whatever
#	  appenders run concurrently.
#
#	  For a few seconds, four appenders run transactions built to commit out
#	  of position order: an append followed by a sleep before COMMIT; a write
#	  to another table first (so the xid is older than the position); appends
#	  to several streams in one transaction; batches; ROLLBACK; a savepoint
#	  rolled back between two appends; PREPARE TRANSACTION followed by COMMIT
#	  PREPARED or ROLLBACK PREPARED.  Three appenders are PL/pgSQL loops that
#	  COMMIT per transaction; the fourth is a psql script (real SAVEPOINTs,
#	  two-phase commit, a client round trip between statements).
#
#	  Meanwhile five readers page the log in tight loops, each logging every
#	  global_position it receives, in order:
#	  - es_read_all(last, 50), autocommit READ COMMITTED;
#	  - es_read_category('acct', last, 50), autocommit READ COMMITTED;
#	  - es_read_all(last, 50), REPEATABLE READ transactions of 3 reads;
#	  - a naive reader, the first negative control: plain SQL
#	      SELECT global_position FROM es_events WHERE global_position > last
#	      ORDER BY global_position LIMIT 50
#	  - a reader with a bound that ignores the appenders in flight, the
#	    second negative control: the same SELECT, also bounded by the
#	    position sequence's last value read before it (in its own
#	    statement, so before the SELECT's snapshot), i.e. the safe bound
#	    min(L, F - 1) of src/position.c without F.
#
#	  After the appenders stop, each reader catches up until a read returns
#	  nothing.  Every real reader's positions must be strictly increasing and
#	  equal to exactly the committed positions (of category acct for the
#	  category reader); no rolled-back position may appear anywhere.  The
#	  REPEATABLE READ reader also checks, after every read, that what it
#	  received is visible to its own transaction snapshot (the README's
#	  "gap-free prefix consistent with its snapshot").
#
#	  The negative controls prove that the same load and the same checks
#	  catch a reader that skips, and in particular a bound that forgets the
#	  appenders in flight.  They do not rely on chance: one appender
#	  regularly sets a trap, an append to a stream of its own that it commits
#	  only once both the naive reader and the last-value reader have
#	  published (in naive_progress, lastvalue_progress) that they have read
#	  past the trap's position.  They have then skipped that position for
#	  good, so the checks must report every trap as missing from both logs.
#	  The real readers see the traps: they wait for them.

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

my $load_secs  = 6;		# how long the appenders run
my $page_size  = 50;	# max_count of every read
my $trap_every = 0.5;	# seconds between two traps

my $t_start = time();

my $node = es_node(
	'readers_never_skip', qq{
max_connections = 30
max_prepared_transactions = 10
log_statement = none
});

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $psql    = $node->installed_command('psql');

#
# Schema: the extension, and helpers shared by the appenders and readers.
#
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION event_sourcing;

-- 3 categories x 6 streams; a trap stream is of its own (acct-trapN)
CREATE TABLE all_streams AS
  SELECT c || '-' || i AS s
  FROM unnest(ARRAY['acct', 'order', 'cart']) c, generate_series(1, 6) i;

CREATE FUNCTION rnd_stream() RETURNS text LANGUAGE sql VOLATILE
  AS $$ SELECT s FROM all_streams ORDER BY random() LIMIT 1 $$;

-- k distinct streams, sorted: transactions that append to several streams
-- lock them in one global order, so appenders never deadlock each other
CREATE FUNCTION rnd_streams(k int) RETURNS text[] LANGUAGE sql VOLATILE
  AS $$ SELECT array_agg(s ORDER BY s)
        FROM (SELECT s FROM all_streams ORDER BY random() LIMIT k) t $$;

CREATE FUNCTION ev(a int, n int, i int) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_build_object('a', a, 'n', n, 'i', i) $$;

CREATE FUNCTION batch(a int, n int, k int) RETURNS jsonb LANGUAGE sql
  AS $$ SELECT jsonb_agg(jsonb_build_object('type', 'Batched', 'data', ev(a, n, i)))
        FROM generate_series(1, k) i $$;

-- positions of the last k events of stream s, which end at version v, as
-- this transaction sees them (used for appends about to be rolled back)
CREATE FUNCTION doomed(s text, v bigint, k int) RETURNS text LANGUAGE sql
  AS $$ SELECT string_agg(global_position::text, ',' ORDER BY stream_version)
        FROM es_load(s, v - k + 1, v) $$;

-- another table, for transactions that take their xid before appending
CREATE TABLE side (a int, n int);

-- set when the appenders are done: readers then catch up and stop
CREATE TABLE ctl (stop bool NOT NULL);
INSERT INTO ctl VALUES (false);

-- the naive reader's progress, committed after each read that moved it
CREATE TABLE naive_progress (pos bigint NOT NULL);
INSERT INTO naive_progress VALUES (0);
-- the same for the reader whose bound ignores the appenders in flight
CREATE TABLE lastvalue_progress (pos bigint NOT NULL);
INSERT INTO lastvalue_progress VALUES (0);
});

my $deadline = $node->safe_psql('postgres',
	"SELECT now() + interval '$load_secs s' + interval '0.5 s'");

# Start a psql running one command (after some SET commands), with output to
# files.  Every command below is a single statement, run in autocommit mode,
# so DO blocks may COMMIT.
sub start_psql
{
	my ($name, $sets, @args) = @_;
	my $out = "$tempdir/$name.out";
	my $err = "$tempdir/$name.err";
	my $h   = IPC::Run::start(
		[
			$psql, '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres') . " application_name=$name",
			(map { ('-c', $_) } @$sets), @args
		],
		'<', \'',
		'>', $out,
		'2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return { name => $name, h => $h, out => $out, err => $err };
}

# Wait for a psql started by start_psql; returns (exit code, stdout, stderr).
sub finish_psql
{
	my ($p) = @_;
	my $rc = $p->{h}->finish ? 0 : ($p->{h}->result // 'killed');
	return ($rc, slurp_file($p->{out}), slurp_file($p->{err}));
}

# The lines of a psql's output that are not position logs, for diagnostics.
sub not_logs
{
	my ($text) = @_;
	my @l = grep { !/NOTICE:\s+(?:R|DOOMED|TRAP) / && !/^DOOMED / && /\S/ }
	  split /\n/, $text;
	return join("\n", @l[ 0 .. ($#l < 29 ? $#l : 29) ]);
}

#
# Readers.  Each is a PL/pgSQL loop that runs one read per iteration with
# the last position it received, logs the positions of every non-empty read
# (NOTICE "R p1,p2,..."), and COMMITs after every read (autocommit) or every
# $per_xact reads.  The statement $before_read, if any, runs before each read.  Once ctl.stop is set, it reads until a read returns
# nothing, then reports "S reads nonempty slow maxms invisible": reads done,
# reads that returned rows, reads that took more than 2 ms (about the number
# of reads that waited for appends in flight; CPU contention also counts),
# the slowest read in ms, and (for the REPEATABLE READ reader, which checks
# it after every read) how many events it received that its own transaction
# snapshot cannot see.
#
sub reader_do
{
	my ($query, $per_xact, $on_progress, $before_read) = @_;
	my $sql = q{DO $do$
DECLARE
  after_pos bigint := 0;
  got       bigint[];
  stopping  bool := false;
  reads     bigint := 0;
  nonempty  bigint := 0;
  slow      bigint := 0;
  maxms     float8 := 0;
  ms        float8;
  t0        timestamptz;
  in_xact   int := 0;
  vis       bigint;
  invisible bigint := 0;
  bound     bigint;
BEGIN
  LOOP
    t0 := clock_timestamp();
    @BEFORE_READ@
    got := ARRAY(@QUERY@);
    ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    reads := reads + 1;
    IF ms > 2 THEN slow := slow + 1; END IF;
    maxms := greatest(maxms, ms);
    IF cardinality(got) > 0 THEN
      RAISE NOTICE 'R %', array_to_string(got, ',');
      after_pos := got[cardinality(got)];
      nonempty := nonempty + 1;
      @ON_PROGRESS@
    ELSIF stopping THEN
      EXIT;
    END IF;
    in_xact := in_xact + 1;
    IF in_xact >= @PER_XACT@ THEN
      COMMIT;
      in_xact := 0;
    ELSE
      PERFORM pg_sleep(0.002);
    END IF;
    IF NOT stopping THEN
      SELECT stop INTO stopping FROM ctl;
    END IF;
  END LOOP;
  COMMIT;
  RAISE NOTICE 'S % % % % %', reads, nonempty, slow, round(maxms::numeric, 1), invisible;
END
$do$};
	$sql =~ s/\@QUERY\@/$query/;
	$sql =~ s/\@PER_XACT\@/$per_xact/;
	$sql =~ s/\@ON_PROGRESS\@/$on_progress/;
	$sql =~ s/\@BEFORE_READ\@/$before_read/;
	return $sql;
}

my %readers = (
	all => {
		desc  => "es_read_all(last, $page_size), READ COMMITTED",
		sets  => [],
		query => "SELECT global_position FROM es_read_all(after_pos, $page_size)",
		per_xact => 1,
	},
	category => {
		desc  => "es_read_category('acct', last, $page_size), READ COMMITTED",
		sets  => [],
		query =>
		  "SELECT global_position FROM es_read_category('acct', after_pos, $page_size)",
		per_xact => 1,
	},
	rr => {
		desc  => "es_read_all(last, $page_size), REPEATABLE READ, 3 reads a transaction",
		sets  => ["SET default_transaction_isolation = 'repeatable read'"],
		query => "SELECT global_position FROM es_read_all(after_pos, $page_size)",
		per_xact => 3,
		# what it received must be visible to its transaction snapshot
		on_progress => q{SELECT count(*) INTO vis FROM es_events WHERE global_position = ANY (got);
      invisible := invisible + cardinality(got) - vis;},
	},
	naive => {
		desc => "naive SELECT ... WHERE global_position > last ORDER BY 1 LIMIT $page_size",
		sets => [],
		query =>
		  "SELECT global_position FROM es_events WHERE global_position > after_pos ORDER BY global_position LIMIT $page_size",
		per_xact    => 1,
		on_progress => 'UPDATE naive_progress SET pos = after_pos;',
	},
	lastvalue => {
		desc => "the same, bounded by the sequence's last value read before (no in-flight appenders)",
		sets => [],
		before_read =>
		  'SELECT last_value INTO bound FROM es_events_global_position_seq;',
		query =>
		  "SELECT global_position FROM es_events WHERE global_position > after_pos AND global_position <= bound ORDER BY global_position LIMIT $page_size",
		per_xact    => 1,
		on_progress => 'UPDATE lastvalue_progress SET pos = after_pos;',
	},
);
my @reader_names = qw(all category rr naive lastvalue);

for my $r (@reader_names)
{
	my $def = $readers{$r};
	$def->{psql} = start_psql(
		"reader_$r", $def->{sets}, '-c',
		reader_do(
			$def->{query}, $def->{per_xact},
			$def->{on_progress} // '', $def->{before_read} // ''));
}
$node->poll_query_until('postgres',
	q{SELECT count(*) = 5 FROM pg_stat_activity
	  WHERE application_name LIKE 'reader_%' AND state = 'active'})
  or die 'the readers did not start';

#
# Appenders 1-3: PL/pgSQL loops, one transaction per iteration, the kind of
# transaction cycling through every variant.  Rolled-back positions are
# reported as NOTICE "DOOMED <why> p1,p2".  Appender 1 also sets the traps of
# the negative controls (NOTICE "TRAP p").
#
sub appender_do
{
	my ($me, $traps) = @_;
	my $sql = q{DO $do$
DECLARE
  deadline  timestamptz := '@DEADLINE@';
  me        int := @ME@;
  traps     bool := @TRAPS@;
  n         int := 0;
  kind      int;
  s         text;
  ss        text[];
  v         bigint;
  p         bigint;
  cur       bigint;
  t0        timestamptz;
  next_trap timestamptz := clock_timestamp() + interval '0.3 s';
BEGIN
  WHILE clock_timestamp() < deadline LOOP
    n := n + 1;

    IF traps AND clock_timestamp() >= next_trap
       AND clock_timestamp() < deadline - interval '2 s' THEN
      -- The trap: commit only once the naive and the last-value readers
      -- have both read past p.
      s := 'acct-trap' || n;
      PERFORM es_append(s, 0, 'Trap', ev(me, n, 1));
      SELECT global_position INTO p FROM es_load(s);
      RAISE NOTICE 'TRAP %', p;
      t0 := clock_timestamp();
      LOOP
        SELECT least(n.pos, l.pos) INTO cur FROM naive_progress n, lastvalue_progress l;
        EXIT WHEN cur > p;
        IF clock_timestamp() > t0 + interval '20 s' THEN
          RAISE NOTICE 'TRAPTIMEOUT %', p;
          EXIT;
        END IF;
        PERFORM pg_sleep(0.002);
      END LOOP;
      COMMIT;
      next_trap := clock_timestamp() + interval '@TRAP_EVERY@ s';
      CONTINUE;
    END IF;

    kind := (n * 7 + me) % 10;
    CASE
    WHEN kind IN (0, 1) THEN
      -- append, then hold the position a while before committing
      PERFORM es_append(rnd_stream(), NULL, 'Slow', ev(me, n, 1));
      PERFORM pg_sleep(random() * 0.05);
      COMMIT;
    WHEN kind = 2 THEN
      -- take an xid first by writing another table, then append
      INSERT INTO side VALUES (me, n);
      PERFORM pg_sleep(random() * 0.02);
      PERFORM es_append(rnd_stream(), NULL, 'AfterXid', ev(me, n, 1));
      PERFORM pg_sleep(random() * 0.01);
      COMMIT;
    WHEN kind IN (3, 4) THEN
      -- two or three streams in one transaction
      FOREACH s IN ARRAY rnd_streams(2 + n % 2) LOOP
        PERFORM es_append(s, NULL, 'Multi', ev(me, n, 1));
        PERFORM pg_sleep(random() * 0.01);
      END LOOP;
      COMMIT;
    WHEN kind = 5 THEN
      -- a batch
      PERFORM es_append(rnd_stream(), NULL, batch(me, n, 2 + n % 3));
      PERFORM pg_sleep(random() * 0.02);
      COMMIT;
    WHEN kind = 6 THEN
      -- rolled back
      s := rnd_stream();
      v := es_append(s, NULL, batch(me, n, 2));
      RAISE NOTICE 'DOOMED rollback %', doomed(s, v, 2);
      PERFORM pg_sleep(random() * 0.03);
      ROLLBACK;
    WHEN kind = 7 THEN
      -- a subtransaction (savepoint) rolled back between two kept appends
      ss := rnd_streams(3);
      PERFORM es_append(ss[1], NULL, 'Kept', ev(me, n, 1));
      BEGIN
        v := es_append(ss[2], NULL, 'Undone', ev(me, n, 2));
        RAISE NOTICE 'DOOMED savepoint %', doomed(ss[2], v, 1);
        PERFORM pg_sleep(random() * 0.01);
        RAISE EXCEPTION 'undo';
      EXCEPTION WHEN raise_exception THEN
        NULL;
      END;
      PERFORM es_append(ss[3], NULL, 'Kept', ev(me, n, 3));
      PERFORM pg_sleep(random() * 0.02);
      COMMIT;
    WHEN kind = 8 THEN
      -- two appends to one stream, far apart in position
      s := rnd_stream();
      PERFORM es_append(s, NULL, 'First', ev(me, n, 1));
      PERFORM pg_sleep(random() * 0.02);
      PERFORM es_append(s, NULL, 'Second', ev(me, n, 2));
      COMMIT;
    ELSE
      -- a quick one
      PERFORM es_append(rnd_stream(), NULL, 'Quick', ev(me, n, 1));
      COMMIT;
    END CASE;
  END LOOP;
END
$do$};
	$sql =~ s/\@DEADLINE\@/$deadline/;
	$sql =~ s/\@ME\@/$me/;
	$sql =~ s/\@TRAPS\@/$traps ? 'true' : 'false'/e;
	$sql =~ s/\@TRAP_EVERY\@/$trap_every/;
	return $sql;
}

#
# Appender 4: a psql script, so with client round trips between statements,
# real SAVEPOINTs and two-phase commit.  Rolled-back positions are printed as
# "DOOMED <why> p1,p2".  Before each transaction it checks the deadline.
#
sub appender_script
{
	my ($me, $ntx) = @_;
	srand(20240917);
	my @streams;
	for my $c (qw(acct cart order))
	{
		push @streams, "$c-$_" for 1 .. 6;
	}
	my $pick = sub {
		my ($k) = @_;
		my %s;
		$s{ $streams[ int(rand(@streams)) ] } = 1 while keys %s < $k;
		return sort keys %s;
	};
	my $sql = '';
	for my $n (1 .. $ntx)
	{
		my $sleep = sprintf('%.3f', rand(0.04));
		my ($s1, $s2) = $pick->(2);
		my $gid = "a${me}_$n";
		$sql .= qq{SELECT clock_timestamp() < '$deadline' AS go \\gset
\\if :go
\\else
\\q
\\endif
};
		my $kind = $n % 6;
		if ($kind == 0)
		{
			$sql .= qq{BEGIN;
SELECT es_append('$s1', NULL, 'Slow', ev($me, $n, 1)) \\g /dev/null
SELECT pg_sleep($sleep) \\g /dev/null
COMMIT;
};
		}
		elsif ($kind == 1)
		{
			$sql .= qq{BEGIN;
SELECT es_append('$s1', NULL, 'Kept', ev($me, $n, 1)) \\g /dev/null
SAVEPOINT sp;
SELECT es_append('$s2', NULL, batch($me, $n, 2)) AS v \\gset
SELECT 'DOOMED savepoint ' || doomed('$s2', :v, 2);
ROLLBACK TO SAVEPOINT sp;
SELECT pg_sleep($sleep) \\g /dev/null
COMMIT;
};
		}
		elsif ($kind == 2)
		{
			$sql .= qq{BEGIN;
SELECT es_append('$s1', NULL, 'Prepared', ev($me, $n, 1)) \\g /dev/null
SELECT es_append('$s2', NULL, 'Prepared', ev($me, $n, 2)) \\g /dev/null
PREPARE TRANSACTION '$gid';
SELECT pg_sleep($sleep) \\g /dev/null
COMMIT PREPARED '$gid';
};
		}
		elsif ($kind == 3)
		{
			$sql .= qq{BEGIN;
SELECT es_append('$s1', NULL, batch($me, $n, 2)) AS v \\gset
SELECT 'DOOMED 2pc ' || doomed('$s1', :v, 2);
PREPARE TRANSACTION '$gid';
SELECT pg_sleep($sleep) \\g /dev/null
ROLLBACK PREPARED '$gid';
};
		}
		elsif ($kind == 4)
		{
			$sql .= qq{BEGIN;
INSERT INTO side VALUES ($me, $n);
SELECT pg_sleep($sleep) \\g /dev/null
SELECT es_append('$s1', NULL, 'AfterXid', ev($me, $n, 1)) \\g /dev/null
COMMIT;
};
		}
		else
		{
			$sql .= qq{BEGIN;
SELECT es_append('$s1', NULL, 'Undone', ev($me, $n, 1)) AS v \\gset
SELECT 'DOOMED rollback ' || doomed('$s1', :v, 1);
SELECT pg_sleep($sleep) \\g /dev/null
ROLLBACK;
};
		}
	}
	return $sql;
}

my $script = "$tempdir/appender_4.sql";
append_to_file($script, appender_script(4, 5000));

my $t_appenders = time();
my @appenders;
push @appenders, start_psql("appender_$_", [], '-c', appender_do($_, $_ == 1))
  for 1 .. 3;
push @appenders, start_psql('appender_4', [], '-f', $script);

#
# Wait for the appenders, then tell the readers to catch up and stop.
#
my (%doomed, @traps, $trap_timeouts, %doomed_kinds);
$trap_timeouts = 0;
for my $a (@appenders)
{
	my ($rc, $out, $err) = finish_psql($a);
	is($rc, 0, "$a->{name} ran without error")
	  or diag("stdout:\n" . not_logs($out) . "\nstderr:\n" . not_logs($err));
	for my $line (split /\n/, "$out\n$err")
	{
		if ($line =~ /DOOMED (\w+) ([\d,]+)/)
		{
			$doomed{$_} = $1 for split /,/, $2;
			$doomed_kinds{$1} += scalar(split /,/, $2);
		}
		push @traps, $1 if $line =~ /NOTICE:\s+TRAP (\d+)/;
		$trap_timeouts++ if $line =~ /TRAPTIMEOUT/;
	}
}
my $t_load = time();
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'no prepared transaction left over');
$node->safe_psql('postgres', 'UPDATE ctl SET stop = true');

for my $r (@reader_names)
{
	my $def = $readers{$r};
	my ($rc, $out, $err) = finish_psql($def->{psql});
	is($rc, 0, "reader $r ran without error")
	  or diag("stderr:\n" . not_logs($err));
	my @log;
	for my $line (split /\n/, $err)
	{
		if ($line =~ /NOTICE:\s+R ([\d,]+)$/)
		{
			push @log, split /,/, $1;
		}
		elsif ($line =~ /NOTICE:\s+S (\d+) (\d+) (\d+) ([\d.]+) (\d+)$/)
		{
			@{$def}{qw(reads nonempty slow maxms invisible)} = ($1, $2, $3, $4, $5);
		}
	}
	$def->{log} = \@log;
}
my $t_readers = time();

#
# The truth: every committed event, once every appender has ended.
#
my @committed = split /\n/,
  $node->safe_psql('postgres',
	'SELECT global_position FROM es_events ORDER BY global_position');
my @committed_acct = split /\n/,
  $node->safe_psql(
	'postgres', q{SELECT global_position FROM es_events
	              WHERE split_part(stream_id, '-', 1) = 'acct'
	              ORDER BY global_position});
my $seq_last = $node->safe_psql('postgres',
	'SELECT last_value FROM es_events_global_position_seq');

note sprintf(
	'load: %d committed events (%d in category acct), sequence at %d, %d rolled-back positions %s, %d traps',
	scalar(@committed), scalar(@committed_acct), $seq_last,
	scalar(keys %doomed),
	'(' . join(', ', map { "$_ $doomed_kinds{$_}" } sort keys %doomed_kinds) . ')',
	scalar(@traps));

# The workload is what it claims to be.
cmp_ok(scalar(@committed), '>', 300, 'the appenders committed a sizeable load');
for my $kind (qw(rollback savepoint 2pc))
{
	cmp_ok($doomed_kinds{$kind} // 0, '>', 0,
		"the load rolled back positions ($kind)");
}
is( $node->safe_psql(
		'postgres',
		'SELECT count(*) FROM es_events WHERE global_position IN ('
		  . (join(',', sort { $a <=> $b } keys %doomed) || '0') . ')'),
	'0',
	'no rolled-back position is in es_events');
cmp_ok(scalar(@committed) + scalar(keys %doomed), '<=', $seq_last,
	'committed and rolled-back positions all come from the sequence');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (
  SELECT global_position < lag(global_position) OVER w AS back
  FROM es_events WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) s
WHERE back}),
	'0',
	'within every stream, global order follows version order');

#
# The real readers never skip and never repeat.
#
my %expected_of = (
	all      => \@committed,
	category => \@committed_acct,
	rr       => \@committed,
	naive    => \@committed,
	lastvalue => \@committed);
for my $r (@reader_names)
{
	my $def = $readers{$r};
	my $c = $def->{check} = es_check_log($def->{log}, $expected_of{$r}, \%doomed);
	note sprintf(
		'reader %-9s %s: %d positions received, %d reads (%d non-empty, %d over 2 ms, slowest %s ms); %d missing, %d repeated, %d going back, %d extra, %d rolled back%s',
		$r, $def->{desc}, $c->{received},
		$def->{reads} // -1, $def->{nonempty} // -1, $def->{slow} // -1,
		$def->{maxms} // '?',
		scalar(@{ $c->{missing} }), $c->{repeats}, $c->{backwards},
		scalar(@{ $c->{extra} }), scalar(@{ $c->{doomed} }),
		$r eq 'rr' ? ", " . ($def->{invisible} // '?') . " not visible to its snapshot" : '');
}

for my $r (qw(all category rr))
{
	my $c = $readers{$r}{check};
	my $n = scalar(@{ $expected_of{$r} });
	ok(defined $readers{$r}{reads}, "reader $r reported its statistics");
	is($c->{repeats} + $c->{backwards}, 0,
		"reader $r: positions strictly increasing (no repeat, never back)");
	is(scalar(@{ $c->{missing} }), 0,
		"reader $r: no committed event skipped ($n expected)")
	  or diag('first missing: ' . first_few(@{ $c->{missing} }));
	is(scalar(@{ $c->{extra} }), 0,
		"reader $r: nothing received that is not committed")
	  or diag('first extra: ' . first_few(@{ $c->{extra} }));
	is(scalar(@{ $c->{doomed} }), 0, "reader $r: no rolled-back position received")
	  or diag('first: ' . first_few(@{ $c->{doomed} }));
	is($c->{received}, $n, "reader $r received exactly the $n committed events");
}
is($readers{rr}{invisible}, 0,
	'reader rr: every event it received is visible to its transaction snapshot');

#
# Negative controls: the naive reader and the last-value reader under the
# same load.  The traps make them skip deterministically; the same checks
# must say so.  The last-value reader is the safe bound without its second
# half (the appenders in flight): the checks catch that bound too.
#
cmp_ok(scalar(@traps), '>=', 3, 'the load set at least 3 traps');
is($trap_timeouts, 0, 'every trap saw the naive and the last-value readers read past it');
for my $r (qw(naive lastvalue))
{
	my $what = $r eq 'naive' ? 'the naive reader' : 'the last-value reader (a bound ignoring in-flight appenders)';
	my $c = $readers{$r}{check};
	my %missing = map { $_ => 1 } @{ $c->{missing} };
	is(scalar(grep { !$missing{$_} } @traps), 0, "$what skipped every trap position")
	  or diag('traps: ' . join(',', @traps) . "; $r missing: " . first_few(@{ $c->{missing} }));
	cmp_ok(scalar(@{ $c->{missing} }), '>=', scalar(@traps),
		"the checks report $what as skipping events ("
		  . scalar(@{ $c->{missing} }) . ' skipped, '
		  . (scalar(@{ $c->{missing} }) - scalar(@traps)) . ' besides the traps)');
	ok(!$c->{ok}, "the checks that pass the real readers fail $what");
	is($c->{repeats} + $c->{backwards} + scalar(@{ $c->{extra} }),
		0, "$what fails only by skipping");
}
my %all_log = map { $_ => 1 } @{ $readers{all}{log} };
is(scalar(grep { !$all_log{$_} } @traps),
	0, 'the es_read_all reader received every trap position');

my $t_end = time();
note sprintf(
	'timings: setup %.1f s, load %.1f s, readers catching up %.1f s, checks %.1f s, total %.1f s',
	$t_appenders - $t_start, $t_load - $t_appenders,
	$t_readers - $t_load, $t_end - $t_readers, $t_end - $t_start);

$node->stop;
done_testing();
