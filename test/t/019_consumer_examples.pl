# Copyright: event_sourcing contributors
#
# 019_consumer_examples.pl
#	  The example consumers examples/consumer.py (psycopg 3) and
#	  examples/consumer.mjs (node-postgres), run as users run them
#	  (doc/consumers.md, "Example consumers"): two consumer groups under a
#	  command load, every consumer killed with kill -9 twice and restarted,
#	  then stopped with SIGTERM and restarted, lose nothing, keep
#	  per-stream order, and repeat nothing (table sink, same database) or
#	  only the unacknowledged tail of a killed instance's last batch (file
#	  sink).
#
#	  Needs /usr/bin/python3 with psycopg, node and examples/node_modules
#	  (scripts/deps.sh installs them): without them the test fails, it
#	  does not skip.
#
#	  One server with shared_preload_libraries = event_sourcing.
#	  Two subscriptions on category ord, group_size 2, batches of 20:
#		 tbl: member 0 consumer.py, member 1 consumer.mjs, both with the
#			  table sink (table sink in the same database: exactly once);
#		 fil: member 0 consumer.mjs, member 1 consumer.py, each with the
#			  file sink fil-<member>.jsonl (at least once).
#	  The load: 4 sessions each CALL a procedure that loops (until ctl.stop)
#	  es_execute-ing a command of 1 to 3 events on one of its own 5 of 20
#	  streams ord-1 .. ord-20, plus an append to a stream of another
#	  category, one transaction in ten rolled back.
#	  While it runs, each of the four consumers in turn, twice: once its
#	  instance has handled 100 events, it is stopped (SIGSTOP) at a moment
#	  that matters -- its sink differs from its checkpoint (a file sink
#	  ahead of it; a consumer that acknowledges apart from its sink), or
#	  its backend is inside a batch (idle in transaction after a statement
#	  other than BEGIN; in the second round only after 3 s of trying for
#	  the first) -- tried for at most 3 s more, killed with kill -9 and a
#	  new instance started at once.  Then each in turn, once its instance
#	  has handled 20 events, is staged the same way (3 s for the first) and
#	  gets SIGTERM (with SIGCONT): it must finish the batch in hand and
#	  exit with status 0; a new instance is started.
#	  The load stops; once all members have lag 0, the last instances get
#	  SIGTERM and must exit with status 0.  Checked:
#	  - table sink: every event of category ord exactly once, nothing
#		else, with its stream, version, id, type and data; each stream handled
#		by the member es_subscription_member names; in insertion order
#		each stream's versions go 1, 2, 3, ... and each member's global
#		positions increase; each checkpoint is its member's last row;
#	  - file sinks: every event of category ord in them, nothing else,
#		each line the event's stream, version, id and type; each stream in
#		its member's file only; per stream the first occurrences come in
#		version order; each instance's lines have increasing positions,
#		and an instance repeats lines of the one before only after a kill
#		(never after SIGTERM), then only the killed instance's last lines
#		(at most one batch), in the same order; a torn line only where an
#		instance was killed; each checkpoint is its file's last position;
#	  - every killed instance had handled events; at least one kill came
#		inside a batch (how many, the backends' states and the file sinks'
#		redeliveries are reported).
#	  It fails for consumers that acknowledge before their sink, that
#	  acknowledge apart from a table sink's transaction, or that abandon a
#	  batch on SIGTERM (each tried as a mutant of the examples).
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/019_consumer_examples.pl

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $batch    = 20;
my $nclients = 4;

my $t_start  = time();
my $tempdir  = PostgreSQL::Test::Utils::tempdir;
my $examples = "$FindBin::RealBin/../../examples";
my $python   = '/usr/bin/python3';
my ($node_bin) = grep { -x } map { "$_/node" } split(/:/, $ENV{PATH} // ''), '/usr/bin';

#
# Prerequisites: scripts/deps.sh installs them, so their absence fails.
#
my $have_py = ok(system($python, '-c', 'import psycopg') == 0,
	"$python imports psycopg (Debian python3-psycopg, installed by scripts/deps.sh)");
my $have_js = ok(defined $node_bin
	  && system($node_bin, '-e', "require('$examples/node_modules/pg')") == 0,
	'node loads examples/node_modules/pg (npm ci in examples/, run by scripts/deps.sh)');
unless ($have_py && $have_js)
{
	diag 'run scripts/deps.sh (as root) to install them';
	done_testing();
	exit 1;
}

my $server = es_node(
	'server', q{
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'postgres'
max_connections = 40
log_statement = none
});
$server->safe_psql('postgres',
	"CREATE EXTENSION event_sourcing;\n" . es_ord_aggregate_sql() . q{
-- the load: one session per client, until ctl.stop
CREATE TABLE ctl (stop bool NOT NULL);
INSERT INTO ctl VALUES (false);
CREATE PROCEDURE load(client int) LANGUAGE plpgsql AS $$
BEGIN
    WHILE NOT (SELECT stop FROM ctl) LOOP
        PERFORM es_execute('ord-' || (client * 5 + 1 + floor(random() * 5)::int),
                           jsonb_build_object('events', 1 + floor(random() * 3)::int),
                           command_id => gen_random_uuid());
        PERFORM es_append('inv-' || client, NULL, 'Issued', '{}');
        IF random() < 0.1 THEN
            ROLLBACK;
        ELSE
            COMMIT;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END $$;
-- the table sink; n is the insertion order, app the consumer instance
CREATE TABLE sink (
    n               bigserial PRIMARY KEY,
    global_position bigint NOT NULL,
    stream_id       text NOT NULL,
    stream_version  bigint NOT NULL,
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    data            jsonb NOT NULL,
    app             text NOT NULL DEFAULT current_setting('application_name'));
SELECT es_define_subscription('tbl', 'ord', group_size => 2);
SELECT es_define_subscription('fil', 'ord', group_size => 2);
});

# A monitoring session.
my $mon = $server->background_psql('postgres');
sub mon { return $mon->query_safe(shift); }

# Poll until $cond->() is true or $secs pass (EsTest): the time it took, or undef.
sub time_until { return es_time_until(@_); }

# The consumers: subscription, member, language, sink.
my @consumers = (
	{ sub => 'tbl', member => 0, lang => 'py' },
	{ sub => 'tbl', member => 1, lang => 'js' },
	{ sub => 'fil', member => 0, lang => 'js' },
	{ sub => 'fil', member => 1, lang => 'py' },);
for my $c (@consumers)
{
	$c->{name} = "$c->{sub}$c->{member}";
	$c->{file} = "$tempdir/fil-$c->{member}.jsonl" if $c->{sub} eq 'fil';
	$c->{sink} = $c->{file} ? "file:$c->{file}" : 'table:sink';
	$c->{gen}  = 0;
	$c->{boundaries} = [];    # file sink: { line, kind } where an instance ended
	$c->{killed}     = [];    # instances killed: { app, handled, state, query, diverged }
}

# The lines of a file sink (each with its newline; a torn last line without).
sub file_lines
{
	my $file = shift;
	return () unless -e $file;
	return split /(?<=\n)/, slurp_file($file);
}

# How many complete lines a file sink has.
sub complete_lines { return scalar grep { /\n\z/ } file_lines(shift); }

# The global position of the last complete line of a file sink (0: none).
sub file_last
{
	my @l = grep { /\n\z/ } file_lines(shift);
	return 0 unless @l;
	my $p = eval { decode_json($l[-1])->{global_position} };
	return $p // -1;
}

# Events the current instance of consumer $c has handled (sunk) so far.
sub handled
{
	my $c = shift;
	return $c->{file}
	  ? complete_lines($c->{file}) - $c->{inst}{from_line}
	  : mon("SELECT count(*) FROM sink WHERE app = '$c->{inst}{app}'");
}

# The checkpoint of consumer $c's member, and the last position its sink
# has committed: equal between batches for a correct consumer.
sub checkpoint
{
	my $c = shift;
	return mon(
		"SELECT position FROM es_subscription_members WHERE name = '$c->{sub}' AND member = $c->{member}");
}

sub sink_last
{
	my $c = shift;
	return file_last($c->{file}) if $c->{file};
	return mon(
		"SELECT coalesce(max(global_position), 0) FROM sink WHERE app LIKE '$c->{name}-%'");
}

# Start a new instance of consumer $c (application_name <sub><member>-<lang>-g<n>).
sub start_instance
{
	my $c   = shift;
	my $app = sprintf('%s-%s-g%d', $c->{name}, $c->{lang}, ++$c->{gen});
	my @cmd =
	  $c->{lang} eq 'py'
	  ? ($python, "$examples/consumer.py")
	  : ($node_bin, "$examples/consumer.mjs");
	local $ENV{PGHOST}     = $server->host;
	local $ENV{PGPORT}     = $server->port;
	local $ENV{PGDATABASE} = 'postgres';
	local $ENV{PGUSER}     = scalar getpwuid($<);
	local $ENV{PGAPPNAME}  = $app;
	delete local $ENV{DATABASE_URL};
	# (the timer only counts while the test waits for the instance to end:
	# stop_instance and kill_instance restart it)
	my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	my $h = IPC::Run::start(
		[ @cmd, $c->{sub}, $c->{member}, $c->{sink}, $batch ],
		'<', '/dev/null',
		'>', "$tempdir/$app.out",
		'2>', "$tempdir/$app.err",
		$timer);
	$c->{inst} = {
		app       => $app,
		h         => $h,
		timer     => $timer,
		pid       => $h->{KIDS}[0]{PID},
		from_line => $c->{file} ? complete_lines($c->{file}) : 0
	};
	return;
}

# The state and query of the backend of application_name $app.
sub backend_state
{
	my $app = shift;
	my ($state, $query) = split /\|/,
	  mon("SELECT state, regexp_replace(left(query, 100), '\\s+', ' ', 'g') FROM pg_stat_activity WHERE application_name = '$app'"), 2;
	return ($state // '', $query // '');
}

# Stop (SIGSTOP) the current instance of consumer $c, once it has handled
# $min events, at a moment that matters: preferably while its sink and
# checkpoint differ (a file sink ahead of its checkpoint; a consumer that
# acknowledges apart from its sink) for $diverge_secs, then also while its
# backend is inside a batch (idle in transaction after a statement other
# than BEGIN), for 3 s more at most.  Returns { app, handled, state, query,
# diverged } with the instance stopped.
sub stage
{
	my ($c, $min, $diverge_secs) = @_;
	my $inst = $c->{inst};
	time_until(time(), 60, sub { handled($c) >= $min });
	my %k = (app => $inst->{app}, handled => handled($c));
	my $t0 = time();
	while (1)
	{
		kill 'STOP', $inst->{pid};
		# let the backend finish its statement (a wait may go on)
		usleep(20_000);
		@k{qw(state query)} = backend_state($inst->{app});
		$k{diverged} = sink_last($c) != checkpoint($c);
		last
		  if $k{diverged}
		  || ($k{state} eq 'idle in transaction' && $k{query} !~ /^\s*BEGIN/i && time() > $t0 + $diverge_secs)
		  || time() > $t0 + $diverge_secs + 3;
		kill 'CONT', $inst->{pid};
		usleep(int(rand(30_000)));
	}
	return \%k;
}

# Wait for the current instance of consumer $c to end, note where its lines
# end in a file sink (a boundary of kind $kind), and return its exit status.
sub reap
{
	my ($c, $kind) = @_;
	my $inst = $c->{inst};
	$inst->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	eval { $inst->{h}->finish; 1 } or note "waiting for $inst->{app}: $@";
	push @{ $c->{boundaries} }, { line => complete_lines($c->{file}), kind => $kind }
	  if $c->{file};
	return $inst->{h}->result(0);
}

# kill -9 the current instance of consumer $c once it has handled 5 batches,
# staged as above, and start the next one at once.
sub kill_instance
{
	my ($c, $diverge_secs) = @_;
	my $k = stage($c, 5 * $batch, $diverge_secs);
	kill 'KILL', $c->{inst}{pid};
	reap($c, 'kill');
	push @{ $c->{killed} }, $k;
	start_instance($c);
	return;
}

# SIGTERM the current instance of consumer $c: it must exit with status 0.
# With $restart, during the load: staged as above (a batch in hand, which
# it must finish: no line of it comes again), then a new instance.
sub stop_instance
{
	my ($c, $restart) = @_;
	my $inst = $c->{inst};
	my $k = $restart ? stage($c, $batch, 3) : { state => 'caught up', query => '' };
	kill 'TERM', $inst->{pid};
	kill 'CONT', $inst->{pid};
	is(reap($c, 'term'), 0,
		"$inst->{app}: SIGTERM ($k->{state}: " . substr($k->{query}, 0, 40)
		  . ($k->{diverged} ? '; sink ahead of checkpoint' : '') . '), it exits with status 0')
	  or diag(slurp_file("$tempdir/$inst->{app}.err"));
	start_instance($c) if $restart;
	return;
}

#
# The run.
#
start_instance($_) for @consumers;
my $load_timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my @load_out = ('') x $nclients;
my @load = map {
	IPC::Run::start(
		[
			$server->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $server->connstr('postgres'), '-c', "CALL load($_)"
		],
		'<', \'', '>&', \$load_out[$_], $load_timer)
} 0 .. $nclients - 1;
my $t_load = time();

kill_instance($_, 0) for @consumers;
kill_instance($_, 3) for @consumers;
stop_instance($_, 1) for @consumers;

$server->safe_psql('postgres', 'UPDATE ctl SET stop = true');
$load_timer->start($PostgreSQL::Test::Utils::timeout_default);
my $load_ok = 1;
for (@load) { $load_ok = 0 unless $_->finish; }
ok($load_ok, 'the load ran without error') or diag(join("\n", @load_out));
my $t_loaded = time();

my $final = $server->safe_psql('postgres',
	'SELECT last_value FROM es_events_global_position_seq');
ok( $server->poll_query_until(
		'postgres',
		qq{SELECT es_safe_position() = $final
		      AND (SELECT count(*) = 4 AND bool_and(lag = 0) FROM es_subscriptions)}),
	'all members of tbl and fil catch up (lag 0) after the load');
my $t_caught = time();
stop_instance($_, 0) for @consumers;

#
# Kills.
#
my @killed = map { @{ $_->{killed} } } @consumers;
my ($inside, $diverged) = (0, 0);
for my $k (@killed)
{
	my $in = $k->{state} eq 'idle in transaction' && $k->{query} !~ /^\s*BEGIN/i;
	$inside++   if $in;
	$diverged++ if $k->{diverged};
	note sprintf('kill -9 of %s after %d events: backend %s (%s)%s',
		$k->{app}, $k->{handled}, $k->{state}, substr($k->{query}, 0, 50),
		$k->{diverged} ? ', sink and checkpoint differ' : '');
}
is(scalar(grep { $_->{handled} < 1 } @killed), 0,
	'every killed instance had handled events (' . join(',', map { $_->{handled} } @killed) . ')');
cmp_ok($inside, '>', 0, "kills inside a batch: $inside of " . scalar(@killed));

#
# The table sink.
#
my %ord;    # global_position => [stream, version, event_id, event_type]
for (split /\n/,
	$server->safe_psql('postgres',
		q{SELECT global_position, stream_id, stream_version, event_id, event_type
		    FROM es_events WHERE stream_id LIKE 'ord-%'}))
{
	my ($p, @rest) = split /\|/;
	$ord{$p} = \@rest;
}
my $nevents = keys %ord;
note "$nevents events of category ord, sequence at $final";
cmp_ok($nevents, '>', 500, 'the load appended a sizeable number of ord events');

my ($missing, $dup, $extra, $wrong) = split /\|/,
  $server->safe_psql(
	'postgres', q{
WITH e AS (SELECT * FROM es_events WHERE stream_id LIKE 'ord-%'),
     s AS (SELECT global_position, count(*) AS c FROM sink GROUP BY 1)
SELECT (SELECT count(*) FROM e LEFT JOIN s USING (global_position) WHERE s.c IS NULL),
       (SELECT count(*) FROM s WHERE c > 1),
       (SELECT count(*) FROM sink WHERE global_position NOT IN (SELECT global_position FROM e)),
       (SELECT count(*) FROM sink JOIN e USING (global_position)
         WHERE (sink.stream_id, sink.stream_version, sink.event_id, sink.event_type, sink.data)
               IS DISTINCT FROM (e.stream_id, e.stream_version, e.event_id, e.event_type, e.data))});
is($missing, 0, 'table sink: no event of category ord missing');
is($dup,     0, 'table sink: no event twice');
is($extra,   0, 'table sink: nothing that is not an event of category ord');
is($wrong,   0, 'table sink: every row has its event\'s stream, version, id, type and data');
is($server->safe_psql('postgres', 'SELECT count(*) FROM sink'),
	$nevents, "table sink: every event of category ord exactly once ($nevents rows)");

my ($not_theirs, $order, $gorder, $ckpt) = split /\|/,
  $server->safe_psql(
	'postgres', q{
WITH s AS (SELECT *, right(split_part(app, '-', 1), 1)::int AS member FROM sink)
SELECT (SELECT count(*) FROM s WHERE member <> es_subscription_member(stream_id, 2)),
       (SELECT count(*) FROM (SELECT stream_version,
                                     lag(stream_version) OVER (PARTITION BY stream_id ORDER BY n) AS prev
                                FROM s) x
         WHERE stream_version <> coalesce(prev, 0) + 1),
       (SELECT count(*) FROM (SELECT global_position,
                                     lag(global_position) OVER (PARTITION BY member ORDER BY n) AS prev
                                FROM s) x
         WHERE global_position <= prev),
       (SELECT count(*) FROM es_subscriptions m
         WHERE name = 'tbl'
           AND position IS DISTINCT FROM (SELECT max(global_position) FROM s WHERE s.member = m.member))});
is($not_theirs, 0, 'table sink: each stream handled by the member es_subscription_member names');
is($order, 0, 'table sink: in insertion order each stream\'s versions go 1, 2, 3, ...');
is($gorder, 0, 'table sink: in insertion order each member\'s global positions increase');
is($ckpt, 0, 'table sink: each member\'s checkpoint is its last row');
note 'table sink rows by instance: '
  . $server->safe_psql('postgres',
	q{SELECT string_agg(app || ':' || c, ' ' ORDER BY app) FROM (SELECT app, count(*) AS c FROM sink GROUP BY 1) x});

#
# The file sinks.
#
my %member_of = map { split /\|/ } split /\n/,
  $server->safe_psql('postgres',
	q{SELECT stream_id, es_subscription_member(stream_id, 2)
	    FROM (SELECT DISTINCT stream_id FROM es_events WHERE stream_id LIKE 'ord-%') x});
my %in_files;
for my $c (grep { $_->{file} } @consumers)
{
	my $m     = $c->{member};
	my @lines = file_lines($c->{file});
	# where each instance's lines begin ('kill' wins when two instances
	# ended at the same line: the one in between handled nothing)
	my %bound;
	$bound{ $_->{line} } = $_->{kind} eq 'kill' ? 'kill' : $bound{ $_->{line} } // 'term'
	  for @{ $c->{boundaries} };
	my (@pos, %seen, %first_version, @problems);
	my ($torn, $redelivered, $redeliveries) = (0, 0, 0);
	my $seg_start = 0;    # index in @pos where the current instance's lines begin
	for my $i (0 .. $#lines)
	{
		my $kind = $bound{$i};
		my $e    = eval { decode_json($lines[$i]) };
		if (!$e)
		{
			# a torn line: only the last one of a killed instance (which the
			# next instance ended with a newline); the next instance's lines
			# begin after it
			if (($kind // '') eq 'kill')
			{
				$torn++;
				$bound{ $i + 1 } = 'kill';
			}
			else { push @problems, "line $i is not an event: $lines[$i]"; }
			next;
		}
		my $p = $e->{global_position};
		my $o = $ord{$p};
		if (!$o
			|| join('|', @$o) ne
			join('|', map { $_ // '' } @$e{qw(stream_id stream_version event_id event_type)}))
		{
			push @problems, "line $i is not the ord event at position $p";
			next;
		}
		$in_files{$p}++;
		push @problems, "line $i: stream $o->[0] belongs to member $member_of{$o->[0]}"
		  if $member_of{ $o->[0] } != $m;
		# order of first occurrences per stream
		if (!$seen{$p}++)
		{
			my $want = ($first_version{ $o->[0] } // 0) + 1;
			push @problems, "line $i: first occurrence of $o->[0] version $o->[1], expected $want"
			  if $o->[1] != $want;
			$first_version{ $o->[0] } = $o->[1];
		}
		if (defined $kind)
		{
			# a new instance: it goes on after the one before, or (after a
			# kill only) repeats that one's last lines, at most a batch
			my @prev = @pos[ $seg_start .. $#pos ];
			$seg_start = @pos;
			if (@prev && $p <= $prev[-1])
			{
				my ($j) = grep { $prev[$_] == $p } 0 .. $#prev;
				my $tail = defined $j ? @prev - $j : 0;
				my @next = map { my $x = eval { decode_json($lines[ $i + $_ ]) }; $x ? $x->{global_position} : -1 }
				  0 .. $tail - 1;
				if ($kind ne 'kill') { push @problems, "line $i: position $p again after SIGTERM"; }
				elsif (!defined $j) { push @problems, "line $i: position $p, not one of the killed instance's"; }
				elsif ($tail > $batch) { push @problems, "line $i: $tail lines again, more than a batch"; }
				elsif ("@next" ne "@prev[$j .. $#prev]")
				{
					push @problems, "line $i: repeats @next, not the killed instance's tail @prev[$j .. $#prev]";
				}
				else { $redelivered += $tail; $redeliveries++; }
			}
		}
		elsif (@pos > $seg_start && $p <= $pos[-1])
		{
			push @problems, "line $i: position $p after $pos[-1] in one instance";
		}
		push @pos, $p;
	}
	note sprintf('file sink of fil member %d: %d lines, %d after kills again (%d kills repeated lines), %d torn',
		$m, scalar(@lines), $redelivered, $redeliveries, $torn);
	is(scalar(@problems), 0,
		"file sink of fil member $m: events of its streams only, first occurrences in stream order, repeats only of a killed instance's tail")
	  or diag(join("\n", first_few(@problems)));
	is(@pos ? $pos[-1] : 0, checkpoint($c), "file sink of fil member $m: its checkpoint is its last line");
}
my @file_missing = grep { !$in_files{$_} } sort { $a <=> $b } keys %ord;
is(scalar(@file_missing), 0, 'file sinks: every event of category ord at least once')
  or diag('missing: ' . first_few(@file_missing));

$mon->quit;
$server->stop;

note sprintf('timings: setup %.1f s, load %.1f s, catching up %.1f s, total %.1f s',
	$t_load - $t_start, $t_loaded - $t_load, $t_caught - $t_loaded, time() - $t_start);
done_testing();
