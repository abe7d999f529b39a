# Copyright: event_sourcing contributors
#
# 002_crash_recovery.pl
#	  Crash recovery under concurrent append load.
#
#	  Four clients append batches of 3 events to random streams, one
#	  statement per transaction, with synchronous_commit = on and fsync = on.
#	  Each client records the batches the server acknowledged.  The postmaster
#	  and every one of its children are then killed with SIGKILL at the same
#	  moment (as in a power loss or OOM kill of the whole server) and the
#	  server is restarted, which runs crash recovery.  Afterwards:
#
#	  - every acknowledged batch is stored, all 3 events, at the versions the
#		append returned;
#	  - no batch is partly stored: every (client, seq) present has exactly 3
#		events, in one stream, at consecutive versions, in order;
#	  - every stream has versions 1..max with no gap;
#	  - global_position is unique, and the indexes agree with the heap;
#	  - appending and reading work after the restart.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $nclients   = 4;
my $nstreams   = 20;
my $load_secs  = 4;
my $max_per_client = 100000;	# an upper bound only; the crash ends the load

# PostgreSQL::Test::Cluster sets fsync = off; a crash test needs it on.
my $node = es_node(
	'crash_recovery', qq{
fsync = on
synchronous_commit = on
full_page_writes = on
restart_after_crash = off
log_statement = none
max_connections = 20
});

is($node->safe_psql('postgres', 'SHOW fsync'), 'on', 'fsync is on');
is($node->safe_psql('postgres', 'SHOW synchronous_commit'),
	'on', 'synchronous_commit is on');

$node->safe_psql('postgres', 'CREATE EXTENSION event_sourcing');

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $psql    = $node->installed_command('psql');

#
# Start the clients.  Each one is a generator of SQL piped into psql; psql
# runs in autocommit mode, so each statement is its own transaction, and it
# prints a result line only after the server has reported the statement
# complete, i.e. after the commit (flushed to disk, synchronous_commit = on).
# A printed line "client,seq,stream,version" is therefore an acknowledged
# batch.  When the server dies, psql exits (flushing what it printed), and the
# generator dies of SIGPIPE.
#
my $generator = q{
	my ($client, $nstreams, $max) = @ARGV;
	$| = 0;
	srand($client * 7919 + $$);
	for my $seq (1 .. $max)
	{
		my $k = 1 + int(rand($nstreams));
		my $batch = join(', ',
			map { qq({"type": "A", "data": {"client": $client, "seq": $seq, "i": $_}}) }
			  1 .. 3);
		print "SELECT '$client,$seq,acct-$k,' || es_append('acct-$k', NULL, '[$batch]');\n";
	}
};

my @clients;
for my $c (1 .. $nclients)
{
	my $out = "$tempdir/client_$c.out";
	my $err = "$tempdir/client_$c.err";
	my $h   = IPC::Run::start(
		[ $^X, '-e', $generator, $c, $nstreams, $max_per_client ],
		'|',
		[
			$psql, '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres')
		],
		'>', $out,
		'2>', $err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @clients, { id => $c, h => $h, out => $out, err => $err };
}

# Wait until the load is running, then let it run for a few seconds.
$node->poll_query_until('postgres',
	qq{SELECT count(DISTINCT data->>'client') = $nclients FROM es_events})
  or die 'the clients did not start appending';
sleep($load_secs);

my $before_crash = $node->safe_psql('postgres', 'SELECT count(*) FROM es_events');
note "events stored shortly before the crash: $before_crash";

#
# Crash: SIGKILL the postmaster and all of its children together.
#
# The postmaster is stopped first so that it cannot fork a new child (or
# notice its children dying) between listing and killing them.
#
sub children_of
{
	my ($ppid) = @_;
	my @kids;
	opendir(my $dh, '/proc') or die "cannot read /proc: $!";
	for my $pid (grep { /^\d+$/ } readdir($dh))
	{
		open(my $fh, '<', "/proc/$pid/stat") or next;
		my $stat = <$fh>;
		close($fh);
		next unless defined $stat;
		# pid (comm) state ppid ...; comm may contain anything, so parse
		# from the last parenthesis.
		next unless $stat =~ /.*\)\s+(\S)\s+(\d+)/s;
		push @kids, $pid if $2 == $ppid;
	}
	closedir($dh);
	return @kids;
}

# A process is dead when it is gone or a zombie.
sub is_dead
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return 1;
	my $stat = <$fh>;
	close($fh);
	return 1 unless defined $stat;
	return ($stat =~ /.*\)\s+([ZX])\s/s) ? 1 : 0;
}

my $pidfile = $node->data_dir . '/postmaster.pid';
my $pm      = (split /\n/, PostgreSQL::Test::Utils::slurp_file($pidfile))[0];
chomp $pm;
ok($pm =~ /^\d+$/ && !is_dead($pm), "postmaster $pm is running");

kill('STOP', $pm);
my @backends = children_of($pm);
note 'killing postmaster ' . $pm . ' and ' . scalar(@backends) . ' children';
# client backends: "postgres: ... postgres postgres [local] SELECT"
my @client_backends = grep {
	my $cmd = eval { PostgreSQL::Test::Utils::slurp_file("/proc/$_/cmdline") } // '';
	$cmd =~ /\[local\]|\d+\.\d+\.\d+\.\d+\(\d+\)/;
} @backends;
cmp_ok(scalar(@client_backends), '>=', $nclients,
	'the postmaster has a backend for every client');
kill('KILL', @backends, $pm);
$node->kill9;	# forget the postmaster (sends SIGKILL again, harmlessly)

my $deadline = time() + 30;
while (time() < $deadline && grep { !is_dead($_) } (@backends, $pm))
{
	usleep(50_000);
}
ok(!(grep { !is_dead($_) } (@backends, $pm)), 'no server process survived the crash');

# Where nothing reaps orphans (a container whose init never calls wait()), the
# killed postmaster stays a zombie and its PID, recorded in postmaster.pid and
# in the socket lock file, still "exists", so the new postmaster would refuse
# to start.  After a real crash the process is gone; make the lock files say
# the same.
if (-e "/proc/$pm")
{
	my $socklock = $node->host . '/.s.PGSQL.' . $node->port . '.lock';
	note "postmaster $pm remains a zombie; removing its stale lock files";
	for my $lock ($pidfile, $socklock)
	{
		next unless -e $lock;
		unlink($lock) or die "cannot remove $lock: $!";
	}
}

# The clients notice the lost connection and exit.
for my $cl (@clients)
{
	eval { $cl->{h}->finish; };
	note "client $cl->{id}: finish: $@" if $@;
}

#
# Collect the acknowledged batches.
#
my %acked;	  # "client,seq" => [stream, version]
my $malformed = 0;
for my $cl (@clients)
{
	my $out = PostgreSQL::Test::Utils::slurp_file($cl->{out});
	my $err = PostgreSQL::Test::Utils::slurp_file($cl->{err});
	note "client $cl->{id} stderr: $err" if $err ne '';
	# an error other than the lost connection means the load itself failed
	unlike($err, qr/ERROR:/, "client $cl->{id} had no SQL error before the crash");
	for my $line (split /\n/, $out)
	{
		if ($line =~ /^(\d+),(\d+),(acct-\d+),(\d+)$/)
		{
			$acked{"$1,$2"} = [ $3, $4 ];
		}
		else
		{
			$malformed++;
			diag "unexpected client output line: '$line'";
		}
	}
}
is($malformed, 0, 'every client output line is an acknowledged append');
for my $cl (@clients)
{
	my @seqs = map { (split /,/)[1] } grep { /^$cl->{id},/ } keys %acked;
	my $max = 0;
	$max = ($_ > $max ? $_ : $max) for @seqs;
	ok(@seqs > 0 && $max < $max_per_client,
		"client $cl->{id} had " . scalar(@seqs) . ' acknowledged batches and was still appending at the crash');
}
my $nacked = scalar(keys %acked);
note "acknowledged batches: $nacked";
cmp_ok($nacked, '>', 0, "checked $nacked acknowledged batches");

#
# Restart: crash recovery.
#
$node->start;
ok( $node->log_contains(
		qr/database system was (?:not properly shut down|interrupted); automatic recovery in progress|redo starts at/
	),
	'the restart ran crash recovery');

# Read everything with sequential scans, so that a damaged index cannot hide
# rows from the checks (the indexes are checked separately below).
my $seqscan = 'SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;';

my $rows = $node->safe_psql(
	'postgres', qq{$seqscan
SELECT data->>'client', data->>'seq', data->>'i', stream_id, stream_version, global_position
FROM es_events});

my %stored;	  # "client,seq" => [[i, stream, version], ...]
my $nrows = 0;
for my $line (split /\n/, $rows)
{
	my ($c, $s, $i, $stream, $version, $gp) = split /\|/, $line;
	push @{ $stored{"$c,$s"} }, [ $i, $stream, $version ];
	$nrows++;
}
note "events after recovery: $nrows; batches: " . scalar(keys %stored);
cmp_ok($nrows, '>=', 3 * $nacked,
	'at least as many events as acknowledged ones');

# Every acknowledged batch is stored, whole, where the append said.
my @missing;
for my $key (sort keys %acked)
{
	my ($stream, $version) = @{ $acked{$key} };
	my $ev = $stored{$key} // [];
	my $want = join(' ',
		map { "$_:$stream:" . ($version - 3 + $_) } 1 .. 3);
	my $have = join(' ',
		map { "$_->[0]:$_->[1]:$_->[2]" } sort { $a->[0] <=> $b->[0] } @$ev);
	push @missing, "$key want [$want] have [$have]" if $have ne $want;
}
is(scalar(@missing), 0,
	"all $nacked acknowledged batches are stored with their 3 events at the returned versions"
) or diag(join("\n", @missing[ 0 .. ($#missing < 9 ? $#missing : 9) ]));

# No batch is partly stored (acknowledged or not).
my @partial;
for my $key (sort keys %stored)
{
	my @ev = sort { $a->[2] <=> $b->[2] } @{ $stored{$key} };
	my $ok = @ev == 3
	  && $ev[0][1] eq $ev[1][1]
	  && $ev[1][1] eq $ev[2][1]
	  && $ev[1][2] == $ev[0][2] + 1
	  && $ev[2][2] == $ev[1][2] + 1
	  && join(',', map { $_->[0] } @ev) eq '1,2,3';
	push @partial,
	  "$key: " . join(' ', map { "i=$_->[0] $_->[1] v$_->[2]" } @ev)
	  unless $ok;
}
is(scalar(@partial), 0,
	'every stored batch has exactly 3 events at consecutive versions of one stream')
  or diag(join("\n", @partial[ 0 .. ($#partial < 9 ? $#partial : 9) ]));

# Streams: versions 1..max with no gap and no duplicate.
is( $node->safe_psql(
		'postgres', qq{$seqscan
SELECT count(*) FROM (
  SELECT stream_id FROM es_events GROUP BY stream_id
  HAVING min(stream_version) <> 1
      OR max(stream_version) <> count(*)
      OR count(DISTINCT stream_version) <> count(*)) bad}),
	'0',
	'every stream has versions 1..max with no gap');

is( $node->safe_psql(
		'postgres', qq{$seqscan
SELECT count(*) FROM (
  SELECT global_position < lag(global_position) OVER w AS pos_back,
         recorded_at < lag(recorded_at) OVER w AS time_back
  FROM es_events WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) s
WHERE pos_back OR time_back}),
	'0',
	'within every stream, global_position and recorded_at follow version order');

is( $node->safe_psql(
		'postgres', qq{$seqscan
SELECT count(*) - count(DISTINCT global_position) FROM es_events}),
	'0',
	'global_position is unique');
is( $node->safe_psql(
		'postgres', qq{$seqscan
SELECT count(*) - count(DISTINCT event_id) FROM es_events}),
	'0',
	'event_id is unique');

# The indexes of the store agree with the heap after recovery.
$node->safe_psql('postgres', 'CREATE EXTENSION amcheck');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (
  SELECT bt_index_check(indexrelid, true)
  FROM pg_index WHERE indrelid = 'es_events'::regclass) c}),
	'4',
	'amcheck: the 4 indexes of es_events are consistent with the heap');

# The read functions agree with the table.
my $streams = $node->safe_psql('postgres', qq{$seqscan
SELECT string_agg(stream_id || '=' || v, ',' ORDER BY stream_id)
FROM (SELECT stream_id, max(stream_version) v FROM es_events GROUP BY 1) s});
is( $node->safe_psql(
		'postgres', q{
SELECT string_agg(stream_id || '=' || es_stream_version(stream_id), ',' ORDER BY stream_id)
FROM (SELECT DISTINCT stream_id FROM es_events) s}),
	$streams,
	'es_stream_version matches the stored maximum of every stream');
is( $node->safe_psql(
		'postgres',
		q{SELECT count(*) FROM es_read_all(0, 1000000)}),
	$nrows,
	'es_read_all returns every recovered event');

# Appending works after the restart, at the next version and at a global
# position after every recovered one.
my ($v3, $maxgp) = split /\|/,
  $node->safe_psql('postgres',
	q{SELECT es_stream_version('acct-3'), (SELECT max(global_position) FROM es_events)});
is( $node->safe_psql(
		'postgres',
		qq{SELECT es_append('acct-3', $v3, '[{"type": "B", "data": {}}, {"type": "B", "data": {}}]')}
	),
	$v3 + 2,
	'batch append after recovery continues at the stream version');
is( $node->safe_psql(
		'postgres', qq{SELECT es_append('acct-new', 0, 'B', '{"x": 1}')}),
	'1',
	'append to a new stream after recovery');
is( $node->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM es_events WHERE global_position > $maxgp}),
	'3',
	'new events take global positions after every recovered one');
my ($rc, $out, $err) = $node->psql(
	'postgres',
	qq{\\set VERBOSITY verbose
SELECT es_append('acct-3', $v3, 'B', '{}')});
ok($rc != 0 && $err =~ /ERROR:\s+40001:/,
	'stale expected version after recovery fails with 40001')
  or diag("rc $rc stderr $err");

$node->stop;
done_testing();
