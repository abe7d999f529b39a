# Copyright: event_sourcing contributors
#
# 004_standby_aggregates.pl
#	  Aggregates on a physical streaming standby and in read-only
#	  transactions: folding never writes there, it just does not store the
#	  snapshot (CONTRACT.md, "Snapshots and aggregates").
#
#	  The bank account of examples/bank_account.sql gets 350 events on the
#	  primary (10 through es_execute, 340 in one es_append batch), so no fold
#	  has passed snapshot_every = 100 events yet and es_snapshots is empty.
#	  Then:
#
#	  - on the standby, es_aggregate folds all 350 events (more than
#		snapshot_every) without an error and stores nothing, also after more
#		WAL is replayed; es_aggregate with to_version, es_aggregate_at, es_load
#		and es_stream_version work; es_read_all / es_read_category are refused
#		with 0A000 and es_execute / es_append / es_snapshot_save with 25006
#		(so do es_delete_stream, es_truncate_stream, es_redact_event,
#		es_set_retention and es_apply_retention);
#	  - on the primary in a read-only transaction (BEGIN READ ONLY, and
#		default_transaction_read_only = on) es_aggregate folds everything,
#		gives the standby's answer and stores no snapshot;
#	  - a normal fold on the primary stores a snapshot; after replay the
#		standby's folds start from it (only the events after it are folded);
#	  - CREATE OR REPLACE FUNCTION bank_evolve on the primary makes that
#		snapshot unusable on the standby too, in a new session and in one that
#		was open (and had cached the definition) across the replay: the fold
#		gives the new answer, from scratch.
#
#	  Expected states are computed here from the events appended, and
#	  es_fold_count() (events this backend passed to evolve) shows how much
#	  each fold did.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/004_standby_aggregates.pl

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use Time::HiRes qw(time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $t_start = time();

my $example = File::Spec->catfile(dirname(__FILE__), '..', '..', 'examples',
	'bank_account.sql');

my $primary = es_node('primary', undef, allows_streaming => 1);
$primary->safe_psql('postgres', 'CREATE EXTENSION event_sourcing');
$primary->safe_psql('postgres', slurp_file($example));

my $stream = 'account-1';

#
# The events, and the state bank_evolve folds them into: the account is
# opened with 100 (v1), gets deposits of 1..8 (v2..v9) and a withdrawal of 30
# (v10), all through es_execute, then deposits of 1..340 (v11..v350) in one
# es_append batch.  Later 5 deposits of 1000 (v351..v355).
#
my @events = (['open', 100], (map { ['dep', $_] } 1 .. 8), ['wd', 30]);
push @events, map { ['dep', $_] } 1 .. 340;

# The state at version $v, as jsonb prints it; deposits count $dep_factor
# times (2 once bank_evolve is replaced).
sub state_at
{
	my ($v, $dep_factor) = @_;
	$dep_factor //= 1;
	return '{"status": "new", "balance": 0, "transactions": 0}' if $v == 0;
	my $balance = 0;
	for my $e (@events[ 0 .. $v - 1 ])
	{
		my ($kind, $amount) = @$e;
		$balance += $amount if $kind eq 'open';
		$balance += $dep_factor * $amount if $kind eq 'dep';
		$balance -= $amount if $kind eq 'wd';
	}
	return qq({"owner": "Alice", "status": "open", "balance": $balance, "transactions": $v});
}

# Assert that $sql runs without an error or warning; returns its stdout.
sub runs_clean
{
	my ($node, $sql, $name) = @_;
	my ($rc, $out, $err) = run_sql($node, 'postgres', $sql);
	ok($rc == 0 && $err eq '', $name)
	  or diag("exit code $rc\nstdout: $out\nstderr: $err");
	return $out;
}

# Fold in a new session, after the SQL in $setup (e.g. BEGIN READ ONLY), with
# $call a call returning (version, state), e.g. es_aggregate('account-1').
# Asserts that it raises nothing and returns ("version|state", events
# folded).
sub fold
{
	my ($node, $call, $name, $setup) = @_;
	$setup //= '';
	my $out = runs_clean(
		$node, qq{$setup
SELECT es_fold_count() AS before_fold \\gset
SELECT version || '|' || coalesce(state::text, 'NULL') FROM $call;
SELECT es_fold_count() - :before_fold;
}, "$name: no error");
	my @lines = split /\n/, $out;
	return ($lines[0] // '', $lines[1] // -1);
}

sub count_snapshots
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT count(*) FROM es_snapshots');
}

#
# The primary: 10 events through es_execute (no fold there reaches 100
# events, so none stores a snapshot), then 340 in one batch.
#
$primary->safe_psql(
	'postgres', q{
SELECT es_execute('account-1', '{"type": "Open", "owner": "Alice", "amount": 100}');
SELECT es_execute('account-1', jsonb_build_object('type', 'Deposit', 'amount', i))
  FROM generate_series(1, 8) i;
SELECT es_execute('account-1', '{"type": "Withdraw", "amount": 30}');
});
is($primary->safe_psql('postgres', "SELECT es_stream_version('account-1')"),
	'10', 'es_execute appended 10 events');
my $ts10 = $primary->safe_psql('postgres',
	"SELECT recorded_at FROM es_load('account-1', 10, 10)");
# later appends must be recorded strictly after $ts10
$primary->safe_psql('postgres', 'SELECT pg_sleep(0.02)');
is( $primary->safe_psql(
		'postgres', q{
SELECT es_append('account-1', 10,
  (SELECT jsonb_agg(jsonb_build_object('type', 'MoneyDeposited',
                                       'data', jsonb_build_object('amount', i))
                    ORDER BY i)
   FROM generate_series(1, 340) i))}),
	'350',
	'a batch of 340 deposits brings the stream to version 350');
is(count_snapshots($primary), '0',
	'primary: no snapshot stored yet (no fold of 100 events or more)');

#
# The standby.
#
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the standby is in recovery (hot standby)');

#
# Folding on the standby: everything from scratch, nothing stored.
#
my $want350 = '350|' . state_at(350);
my ($got, $folded) = fold($standby, "es_aggregate('$stream')", 'standby: es_aggregate');
is($got, $want350, 'standby: es_aggregate gives version 350 and its state');
is($folded, 350,
	'standby: es_aggregate folded all 350 events (more than snapshot_every, a snapshot would be due)');
is(count_snapshots($standby), '0', 'standby: es_snapshots is still empty after the fold');

# Twice in one session: no snapshot, so the second fold starts over too.
my $out = runs_clean(
	$standby, qq{
SELECT version FROM es_aggregate('$stream');
SELECT version FROM es_aggregate('$stream');
SELECT es_fold_count();
SELECT count(*) FROM es_snapshots;
}, 'standby: two folds in one session raise nothing');
is($out, "350\n350\n700\n0",
	'standby: the second fold in the session folds all 350 events again, nothing stored');

($got, $folded) = fold($standby, "es_aggregate('$stream', 120)",
	'standby: es_aggregate to version 120');
is("$got/$folded", '120|' . state_at(120) . '/120',
	'standby: es_aggregate to version 120 gives its state, 120 events folded');
($got, $folded) = fold($standby, "es_aggregate('$stream', 0)",
	'standby: es_aggregate to version 0');
is("$got/$folded", '0|' . state_at(0) . '/0',
	'standby: es_aggregate to version 0 gives the initial state');

# es_aggregate_at, es_load, es_stream_version
is($standby->safe_psql('postgres', "SELECT es_stream_version('$stream', '$ts10')"),
	'10', 'standby: es_stream_version as of the 10th event is 10');
($got, $folded) = fold($standby, "es_aggregate_at('$stream', '$ts10')",
	'standby: es_aggregate_at the 10th event');
is("$got/$folded", '10|' . state_at(10) . '/10',
	'standby: es_aggregate_at the time of the 10th event gives version 10 and its state');
($got, $folded) = fold($standby, "es_aggregate_at('$stream', now())",
	'standby: es_aggregate_at now()');
is("$got/$folded", "$want350/350",
	'standby: es_aggregate_at now() gives version 350, folded from scratch');
($got, $folded) = fold($standby,
	"es_aggregate_at('$stream', '2000-01-01 00:00:00+00')",
	'standby: es_aggregate_at before the stream');
is($got, '0|' . state_at(0),
	'standby: es_aggregate_at before the first event gives version 0 and the initial state');
is( $standby->safe_psql(
		'postgres', qq{
SELECT count(*), min(stream_version), max(stream_version),
       sum((data->>'amount')::numeric) FILTER (WHERE event_type = 'MoneyDeposited')
FROM es_load('$stream')}),
	'350|1|350|' . (36 + 340 * 341 / 2),
	'standby: es_load returns the 350 events');
is($standby->safe_psql('postgres', "SELECT es_stream_version('$stream')"),
	'350', 'standby: es_stream_version is 350');
is(count_snapshots($standby), '0', 'standby: es_snapshots is still empty');

# What a standby refuses.
fails_with($standby, 'postgres', 'SELECT * FROM es_read_all()', '0A000',
	'standby: es_read_all fails with 0A000');
fails_with($standby, 'postgres', "SELECT * FROM es_read_category('account')", '0A000',
	'standby: es_read_category fails with 0A000');
fails_with($standby, 'postgres', "SELECT es_execute('$stream', '{\"type\": \"Deposit\", \"amount\": 1}')",
	'25006', 'standby: es_execute fails with 25006');
fails_with($standby, 'postgres', "SELECT es_append('$stream', 350, 'MoneyDeposited', '{\"amount\": 1}')",
	'25006', 'standby: es_append fails with 25006');
fails_with($standby, 'postgres', "SELECT es_snapshot_save('$stream', 350, '{}')",
	'25006', 'standby: es_snapshot_save fails with 25006');
# 1.5: nothing is removed or rewritten on a standby either
fails_with($standby, 'postgres', "SELECT es_delete_stream('$stream')",
	'25006', 'standby: es_delete_stream fails with 25006');
fails_with($standby, 'postgres', "SELECT es_truncate_stream('$stream', 2)",
	'25006', 'standby: es_truncate_stream fails with 25006');
fails_with($standby, 'postgres',
	"SELECT es_redact_event(event_id) FROM es_events WHERE stream_id = '$stream' AND stream_version = 1",
	'25006', 'standby: es_redact_event fails with 25006');
fails_with($standby, 'postgres', "SELECT es_set_retention('account', '1 day')",
	'25006', 'standby: es_set_retention fails with 25006');
fails_with($standby, 'postgres', "SELECT es_apply_retention()",
	'25006', 'standby: es_apply_retention fails with 25006');

# More WAL from the primary (another stream): still nothing stored anywhere.
$primary->safe_psql('postgres',
	q{SELECT es_append('audit-1', 0, 'Checked', '{"account": "account-1"}')});
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', q{SELECT es_stream_version('audit-1')}),
	'1', 'standby: replayed the later append');
is(count_snapshots($standby), '0',
	'standby: es_snapshots is still empty after replaying more WAL');
is(count_snapshots($primary), '0', 'primary: es_snapshots is empty too');

#
# The primary in read-only transactions: folds everything, stores nothing.
#
($got, $folded) = fold($primary, "es_aggregate('$stream')",
	'primary, BEGIN READ ONLY: es_aggregate', 'BEGIN READ ONLY;');
is($got, $want350,
	'primary, BEGIN READ ONLY: es_aggregate gives the standby\'s answer');
is($folded, 350, 'primary, BEGIN READ ONLY: es_aggregate folded all 350 events');
is(count_snapshots($primary), '0', 'primary: no snapshot stored by the read-only transaction');

$out = runs_clean(
	$primary, qq{
BEGIN READ ONLY;
SELECT version FROM es_aggregate('$stream');
SELECT count(*) FROM es_snapshots;
COMMIT;
SET default_transaction_read_only = on;
SELECT version FROM es_aggregate('$stream');
SELECT version FROM es_aggregate_at('$stream', now());
SELECT es_fold_count();
SELECT count(*) FROM es_snapshots;
}, 'primary, read-only: folds raise nothing');
is($out, "350\n0\n350\n350\n1050\n0",
	'primary, read-only: every fold (BEGIN READ ONLY, default_transaction_read_only) folds all events and stores nothing'
);
is(count_snapshots($primary), '0', 'primary: still no snapshot after the read-only folds');
fails_with($primary, 'postgres',
	"BEGIN READ ONLY; SELECT es_execute('$stream', '{\"type\": \"Deposit\", \"amount\": 1}')",
	'25006', 'primary, BEGIN READ ONLY: es_execute fails with 25006');

#
# A normal fold on the primary stores the snapshot; the standby uses it.
#
($got, $folded) = fold($primary, "es_aggregate('$stream')", 'primary: es_aggregate');
is("$got/$folded", "$want350/350", 'primary: es_aggregate folds all 350 events');
is( $primary->safe_psql('postgres', 'SELECT stream_id, version FROM es_snapshots'),
	"$stream|350",
	'primary: es_aggregate stored one snapshot, at version 350');
($got, $folded) = fold($primary, "es_aggregate('$stream')", 'primary: es_aggregate again');
is("$got/$folded", "$want350/0", 'primary: the next fold starts from the snapshot');

$primary->wait_for_catchup($standby);
is( $standby->safe_psql('postgres', 'SELECT stream_id, version FROM es_snapshots'),
	"$stream|350", 'standby: the snapshot arrived by replay');
is($standby->safe_psql('postgres', "SELECT version FROM es_snapshot_load('$stream')"),
	'350', 'standby: es_snapshot_load finds it usable');
($got, $folded) = fold($standby, "es_aggregate('$stream')",
	'standby: es_aggregate with the snapshot');
is("$got/$folded", "$want350/0", 'standby: es_aggregate starts from the snapshot (0 events folded)');
($got, $folded) = fold($standby, "es_aggregate('$stream', 349)",
	'standby: es_aggregate to version 349');
is("$got/$folded", '349|' . state_at(349) . '/349',
	'standby: to version 349 the snapshot at 350 is not used');

# 5 more deposits: the standby folds only those.
push @events, map { ['dep', 1000] } 1 .. 5;
is( $primary->safe_psql(
		'postgres', qq{
SELECT max(es_execute('$stream', '{"type": "Deposit", "amount": 1000}'))
FROM generate_series(1, 5)}),
	'355',
	'primary: 5 more deposits through es_execute');
is(count_snapshots($primary), '1', 'primary: those small folds stored no further snapshot');
$primary->wait_for_catchup($standby);
my $want355 = '355|' . state_at(355);
($got, $folded) = fold($standby, "es_aggregate('$stream')",
	'standby: es_aggregate after 5 more events');
is($got, $want355, 'standby: es_aggregate gives version 355 and its state');
is($folded, 5, 'standby: es_aggregate folded only the 5 events after the snapshot');
($got, $folded) = fold($standby, "es_aggregate_at('$stream', now())",
	'standby: es_aggregate_at now() after 5 more events');
is("$got/$folded", "$want355/5", 'standby: es_aggregate_at also starts from the snapshot');
is(count_snapshots($standby), '1', 'standby: still just the one snapshot');

#
# CREATE OR REPLACE FUNCTION bank_evolve on the primary (deposits now count
# twice): the standby ignores the old snapshot, in a new session and in a
# session that had the definition cached before the replay.
#
my $session = $standby->background_psql('postgres');
is( $session->query_safe(qq{
SELECT es_fold_count() AS before_fold \\gset
SELECT version || '|' || state::text FROM es_aggregate('$stream');
SELECT es_fold_count() - :before_fold;
}),
	"$want355\n5",
	'standby, long-lived session: folds from the snapshot before the replacement');

my $evolve_src = slurp_file($example);
$evolve_src =~ s/.*?(CREATE FUNCTION bank_evolve.*?\$\$;).*/$1/s
  or die "bank_evolve not found in $example";
my $replaced = $evolve_src;
$replaced =~ s/CREATE FUNCTION/CREATE OR REPLACE FUNCTION/;
$replaced =~ s/\(state->>'balance'\)::numeric \+ \(event\.data->>'amount'\)::numeric/(state->>'balance')::numeric + 2 * (event.data->>'amount')::numeric/
  or die 'could not rewrite the deposit in bank_evolve';
$primary->safe_psql('postgres', $replaced);
$primary->wait_for_catchup($standby);

my $want355x2 = '355|' . state_at(355, 2);
isnt($want355x2, $want355, 'the replaced evolve gives a different state');
($got, $folded) = fold($standby, "es_aggregate('$stream')",
	'standby: es_aggregate after the replacement');
is($got, $want355x2, 'standby: es_aggregate gives the new evolve\'s state');
is($folded, 355, 'standby: es_aggregate folded all 355 events from scratch');
is($session->query_safe(qq{
SELECT es_fold_count() AS before_fold \\gset
SELECT version || '|' || state::text FROM es_aggregate('$stream');
SELECT es_fold_count() - :before_fold;
}),
	"$want355x2\n355",
	'standby, long-lived session: the new state, from scratch, after replaying the replacement');
is($standby->safe_psql('postgres', "SELECT count(*) FROM es_snapshot_load('$stream')"),
	'0', 'standby: es_snapshot_load finds no usable snapshot');
is(count_snapshots($standby), '1', 'standby: the old snapshot is still stored (unused), nothing new');

# The primary agrees, and its next fold stores a snapshot the standby uses.
($got, $folded) = fold($primary, "es_aggregate('$stream')",
	'primary: es_aggregate after the replacement');
is("$got/$folded", "$want355x2/355",
	'primary: es_aggregate gives the same new state, from scratch');
is(count_snapshots($primary), '1',
	'primary: a snapshot for the new evolve is stored, and the unusable old one pruned (snapshots_to_keep defaults to 3)');
$primary->wait_for_catchup($standby);
is($session->query_safe(qq{
SELECT es_fold_count() AS before_fold \\gset
SELECT version || '|' || state::text FROM es_aggregate('$stream');
SELECT es_fold_count() - :before_fold;
}),
	"$want355x2\n0",
	'standby, long-lived session: starts from the new snapshot after replay');
$session->quit;

$standby->stop;
$primary->stop;

note sprintf('total %.1f s', time() - $t_start);
done_testing();
