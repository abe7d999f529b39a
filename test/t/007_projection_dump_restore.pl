# Copyright: event_sourcing contributors
#
# 007_projection_dump_restore.pl
#	  Projections survive pg_dump / pg_restore (custom format) and a plain
#	  pg_dump | psql round trip without their read models being applied twice
#	  (CONTRACT.md, "Projections": rows pg_restore loads are not dispatched).
#
#	  Database src, the extension in schema es, everything defined by a
#	  non-superuser role regress_app:
#	  - account_balances: inline, every event type, an upsert read model with
#		a reset function;
#	  - deposit_log: inline, event_types {MoneyDeposited}, one row per event
#		and no key, so an event applied twice shows as a duplicate row;
#	  - type_counts: async, every type, run to a checkpoint in the middle of
#		the log;
#	  - withdrawal_audit: async, {MoneyWithdrawn}, whose handler refuses
#		withdrawals of 1000000 or more: it failed at one, that one was skipped
#		into es_dead_letters, and it is left failed at a second one;
#	  - idle_counts: async, never run (checkpoint 0);
#	  plus an append rolled back, so the log has a hole and a dead row.
#
#	  After each restore (custom and plain):
#	  - every read model, es_projection_defs, es_projections (definitions,
#		positions, lag, status, errors), es_dead_letters and es_events are
#		identical to src, row for row; the gated dispatch trigger fired for
#		every restored event (track_functions) and called no handler;
#	  - the same new appends in src and in the restored database give the
#		same inline read models, each event dispatched exactly once;
#	  - async runs go on from the restored checkpoints (each event applied
#		once: the counts equal the log), the failed projection retries its
#		event, skip and run continue as in src, the never-run one starts
#		from 0;
#	  - es_projection_rebuild reproduces every read model it is given, and a
#		rebuild that meets a failing handler changes nothing.
#
#	  Negative control (database ctl): the same custom dump restored in
#	  sections, with an ordinary, ungated AFTER INSERT trigger (ENABLE ALWAYS,
#	  as the extension's own) added to es.es_events between pre-data and
#	  data, doubles deposit_log, while the extension's gated trigger, present
#	  and enabled ALWAYS during the same data load, doubles nothing.  So the
#	  comparisons above would catch a dispatch of restored rows.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/007_projection_dump_restore.pl

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

# track_functions: count the calls of the dispatch trigger and the handlers
my $node = es_node(
	'projection_dump_restore', qq{
track_functions = all
log_statement = none
# should a backend crash, come back so that the checks after it still run
restart_after_crash = on
});

my $tempdir = PostgreSQL::Test::Utils::tempdir;

#
# The source database.
#
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
CREATE SCHEMA es;
CREATE EXTENSION event_sourcing SCHEMA es;
CREATE ROLE regress_app NOLOGIN;
GRANT USAGE ON SCHEMA es TO regress_app;
GRANT CREATE ON SCHEMA public TO regress_app;
GRANT EXECUTE ON FUNCTION es.es_append(text, bigint, text, jsonb, jsonb, uuid),
                          es.es_append(text, bigint, jsonb),
                          es.es_define_projection(text, regprocedure, text[], text, regprocedure),
                          es.es_projection_run(text, integer),
                          es.es_projection_skip(text),
                          es.es_projection_rebuild(text),
                          es._es_projection_head()
   TO regress_app;
GRANT SELECT ON es.es_projections, es.es_dead_letters TO regress_app;

SET ROLE regress_app;

-- inline, every event type (the handler ignores what is not about money):
-- one row per account, upserted
CREATE TABLE account_balances (
    account_id   text PRIMARY KEY,
    owner        text,
    status       text NOT NULL,
    balance      numeric NOT NULL,
    transactions integer NOT NULL,
    last_version bigint NOT NULL
);
CREATE FUNCTION account_balances_apply(e es.es_events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    amount numeric := coalesce((e.data->>'amount')::numeric, 0);
BEGIN
    IF e.event_type NOT IN ('AccountOpened', 'MoneyDeposited', 'MoneyWithdrawn', 'AccountClosed') THEN
        RETURN;
    END IF;
    INSERT INTO account_balances AS b (account_id, owner, status, balance, transactions, last_version)
    VALUES (e.stream_id, e.data->>'owner', 'open',
            CASE e.event_type WHEN 'MoneyWithdrawn' THEN -amount ELSE amount END,
            1, e.stream_version)
    ON CONFLICT (account_id) DO UPDATE
       SET owner = coalesce(EXCLUDED.owner, b.owner),
           status = CASE e.event_type WHEN 'AccountClosed' THEN 'closed' ELSE b.status END,
           balance = b.balance + EXCLUDED.balance,
           transactions = b.transactions + 1,
           last_version = EXCLUDED.last_version;
END $$;
CREATE FUNCTION account_balances_reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM account_balances $$;
SELECT es.es_define_projection('account_balances', 'account_balances_apply(es.es_events)',
                               reset => 'account_balances_reset()');

-- inline, one event type: one row per event and no key, so an event
-- applied twice is a duplicate row; applied_as: the role the handler ran as
CREATE TABLE deposit_log (
    global_position bigint NOT NULL,
    stream_id       text NOT NULL,
    amount          numeric NOT NULL,
    applied_as      text NOT NULL
);
CREATE FUNCTION deposit_log_apply(e es.es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO deposit_log
    VALUES (e.global_position, e.stream_id, (e.data->>'amount')::numeric, current_user)
$$;
CREATE FUNCTION deposit_log_reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM deposit_log $$;
SELECT es.es_define_projection('deposit_log', 'deposit_log_apply(es.es_events)',
                               ARRAY['MoneyDeposited'], 'inline', 'deposit_log_reset()');

-- async, every type: events per type and the last position seen
CREATE TABLE type_counts (
    event_type    text PRIMARY KEY,
    n             bigint NOT NULL,
    last_position bigint NOT NULL
);
CREATE FUNCTION type_counts_apply(e es.es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO type_counts AS t VALUES (e.event_type, 1, e.global_position)
    ON CONFLICT (event_type) DO UPDATE
       SET n = t.n + 1, last_position = EXCLUDED.last_position
$$;
CREATE FUNCTION type_counts_reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM type_counts $$;
SELECT es.es_define_projection('type_counts', 'type_counts_apply(es.es_events)',
                               mode => 'async', reset => 'type_counts_reset()');

-- async, one type, no reset: refuses withdrawals of 1000000 or more
CREATE TABLE withdrawal_audit (
    global_position bigint PRIMARY KEY,
    stream_id       text NOT NULL,
    amount          numeric NOT NULL
);
CREATE FUNCTION withdrawal_audit_apply(e es.es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF (e.data->>'amount')::numeric >= 1000000 THEN
        RAISE EXCEPTION 'suspicious withdrawal of % from %', e.data->>'amount', e.stream_id;
    END IF;
    INSERT INTO withdrawal_audit VALUES (e.global_position, e.stream_id, (e.data->>'amount')::numeric);
END $$;
SELECT es.es_define_projection('withdrawal_audit', 'withdrawal_audit_apply(es.es_events)',
                               ARRAY['MoneyWithdrawn'], 'async');

-- async, never run: stays at position 0 (it shares type_counts' handler,
-- and is run only at the very end, after type_counts was compared)
SELECT es.es_define_projection('idle_counts', 'type_counts_apply(es.es_events)',
                               mode => 'async');
RESET ROLE;
});

# The events, appended by the superuser (handlers run as regress_app).
# Positions: 1..15 committed, 16 rolled back (a hole and a dead row in
# es_events, before the checkpoints), 17 committed.
$node->safe_psql(
	'src', q{
SELECT es.es_append('account-1', 0, 'AccountOpened', '{"owner": "ann", "amount": 100}');
SELECT es.es_append('account-2', 0, 'AccountOpened', '{"owner": "Zoë Ünïcødé ✓"}');
SELECT es.es_append('order-1', NULL, '[{"type": "OrderPlaced", "data": {"sku": "A"}},
                                       {"type": "OrderPaid", "data": {"amount": 5}}]');
SELECT es.es_append('account-1', 1, '[{"type": "MoneyDeposited", "data": {"amount": 50}},
                                      {"type": "MoneyWithdrawn", "data": {"amount": 30}},
                                      {"type": "MoneyDeposited", "data": {"amount": 12.5}}]');
SELECT es.es_append('account-2', 1, 'MoneyDeposited', '{"amount": 2000000}');
SELECT es.es_append('account-2', 2, 'MoneyWithdrawn', '{"amount": 1500000}');
SELECT es.es_append('account-1', 4, 'MoneyWithdrawn', '{"amount": 7}');
SELECT es.es_append('account-2', 3, 'MoneyWithdrawn', '{"amount": 1000000}');
SELECT es.es_append('account-2', 4, 'MoneyWithdrawn', '{"amount": 1}');
SELECT es.es_append('account-3', 0, '[{"type": "AccountOpened", "data": {"owner": "bob"}},
                                      {"type": "MoneyDeposited", "data": {"amount": 1}},
                                      {"type": "AccountClosed", "data": {}}]');
BEGIN;
SELECT es.es_append('account-1', NULL, 'MoneyDeposited', '{"amount": 999}');
ROLLBACK;
SELECT es.es_append('account-4', 0, 'AccountOpened', '{"owner": "cy"}');
});

is($node->safe_psql('src', 'SELECT count(*) || \'/\' || max(global_position) FROM es.es_events'),
	'16/17', 'src: 16 events, position 16 rolled back');

# The inline read models hold every event once, already.
is( $node->safe_psql(
		'src', q{SELECT string_agg(b::text, ' ' ORDER BY account_id) FROM account_balances b}),
	'(account-1,ann,open,125.5,5,5) (account-2,"Zoë Ünïcødé ✓",open,-500001,5,5) '
	  . '(account-3,bob,closed,1,3,3) (account-4,cy,open,0,1,1)',
	'src: account_balances as expected');
is( $node->safe_psql(
		'src', q{SELECT string_agg(d::text, ' ' ORDER BY global_position) FROM deposit_log d}),
	'(5,account-1,50,regress_app) (7,account-1,12.5,regress_app) '
	  . '(8,account-2,2000000,regress_app) (14,account-3,1,regress_app)',
	'src: deposit_log has one row per deposit, applied as the projection owner');

# Async runs: type_counts to position 7, withdrawal_audit fails at 9, is
# skipped past it, and fails again at 11 (keeping 10).
is($node->safe_psql('src', q{SELECT es.es_projection_run('type_counts', 7)}),
	'7', 'src: type_counts applies 7 events');
my ($out, $err) = succeeds($node, 'src', q{SELECT es.es_projection_run('withdrawal_audit')},
	'src: withdrawal_audit run');
is($out, '1', 'src: withdrawal_audit applies 1 event before the poison one');
like($err, qr/projection "withdrawal_audit" failed at global position 9: suspicious withdrawal of 1500000/,
	'src: WARNING names the failing position and error');
is($node->safe_psql('src', q{SELECT es.es_projection_skip('withdrawal_audit')}),
	'9', 'src: es_projection_skip skips position 9');
($out, $err) = succeeds($node, 'src', q{SELECT es.es_projection_run('withdrawal_audit')},
	'src: withdrawal_audit run after the skip');
is($out, '1', 'src: withdrawal_audit applies position 10, then fails at 11');
like($err, qr/failed at global position 11/, 'src: WARNING for position 11');

is( $node->safe_psql(
		'src',
		q{SELECT string_agg(concat_ws('|', name, mode, event_types, position, lag, status,
		                               last_error, failed_position, handler, reset, owner), E'\n' ORDER BY name)
		    FROM es.es_projections}),
	join("\n",
		'account_balances|inline|17|0|running|account_balances_apply(es.es_events)|account_balances_reset()|regress_app',
		'deposit_log|inline|{MoneyDeposited}|17|0|running|deposit_log_apply(es.es_events)|deposit_log_reset()|regress_app',
		'idle_counts|async|0|17|running|type_counts_apply(es.es_events)|regress_app',
		'type_counts|async|7|10|running|type_counts_apply(es.es_events)|type_counts_reset()|regress_app',
		'withdrawal_audit|async|{MoneyWithdrawn}|10|7|failed|suspicious withdrawal of 1000000 from account-2|11|withdrawal_audit_apply(es.es_events)|regress_app'),
	'src: es_projections shows every definition, position, lag and status');
is( $node->safe_psql(
		'src',
		q{SELECT string_agg(concat_ws('|', projection, (event).global_position, (event).event_type,
		                               (event).data, error, position), E'\n' ORDER BY position)
		    FROM es.es_dead_letters}),
	'withdrawal_audit|9|MoneyWithdrawn|{"amount": 1500000}|suspicious withdrawal of 1500000 from account-2|9',
	'src: one dead letter');

#
# What is compared: every read model, the projection catalog, the log.
#
my %state_sql = (
	account_balances =>
	  q{SELECT b::text FROM account_balances b ORDER BY account_id},
	deposit_log =>
	  q{SELECT d::text FROM deposit_log d ORDER BY global_position, d::text},
	type_counts => q{SELECT t::text FROM type_counts t ORDER BY event_type},
	withdrawal_audit =>
	  q{SELECT w::text FROM withdrawal_audit w ORDER BY global_position},
	es_projection_defs =>
	  q{SELECT p::text FROM es.es_projection_defs p ORDER BY name},
	es_projections => q{SELECT p::text FROM es.es_projections p ORDER BY name},
	es_dead_letters =>
	  q{SELECT d::text FROM es.es_dead_letters d ORDER BY projection, position},
	es_events =>
	  q{SELECT e::text FROM es.es_events e ORDER BY global_position},
	position_seq =>
	  q{SELECT last_value || '/' || is_called FROM es.es_events_global_position_seq});

sub state_of
{
	my ($db) = @_;
	return { map { $_ => $node->safe_psql($db, $state_sql{$_}) } keys %state_sql };
}

# Every key of $want equal in $db.
sub same_state
{
	my ($db, $want, $label) = @_;
	my $got = state_of($db);
	is($got->{$_}, $want->{$_}, "$label: $_ identical")
	  for sort keys %$want;
}

# The inline read models hold exactly what the log says, each event once:
# deposit_log one row per deposit, account_balances the sums and counts of
# each account's events.
sub inline_models_exact
{
	my ($db, $label) = @_;
	is( $node->safe_psql(
			$db, q{
SELECT (SELECT count(*) FROM deposit_log) = (SELECT count(*) FROM es.es_events WHERE event_type = 'MoneyDeposited')
   AND (SELECT array_agg(global_position ORDER BY global_position) FROM deposit_log)
     = (SELECT array_agg(global_position ORDER BY global_position) FROM es.es_events WHERE event_type = 'MoneyDeposited')
   AND (SELECT count(*) FROM deposit_log WHERE applied_as <> 'regress_app') = 0}),
		't', "$label: deposit_log holds each deposit exactly once, applied as regress_app");
	is( $node->safe_psql(
			$db, q{
SELECT count(*) FROM (
  SELECT stream_id,
         sum(CASE event_type WHEN 'MoneyWithdrawn' THEN -1 ELSE 1 END
             * coalesce((data->>'amount')::numeric, 0)) AS balance,
         count(*) AS transactions, max(stream_version) AS last_version
    FROM es.es_events
   WHERE event_type IN ('AccountOpened', 'MoneyDeposited', 'MoneyWithdrawn', 'AccountClosed')
   GROUP BY stream_id) l
  FULL JOIN account_balances b ON b.account_id = l.stream_id
 WHERE b.account_id IS NULL OR l.stream_id IS NULL
    OR (b.balance, b.transactions, b.last_version) IS DISTINCT FROM (l.balance, l.transactions, l.last_version)}),
		'0', "$label: account_balances matches the log (each event once)");
}

# type_counts holds each event up to its checkpoint once.
sub type_counts_exact
{
	my ($db, $label) = @_;
	is( $node->safe_psql(
			$db, q{
SELECT count(*) FROM (
  SELECT event_type, count(*) AS n, max(global_position) AS last_position
    FROM es.es_events
   WHERE global_position <= (SELECT position FROM es.es_projection_defs WHERE name = 'type_counts')
   GROUP BY event_type) l
  FULL JOIN type_counts t USING (event_type)
 WHERE (t.n, t.last_position) IS DISTINCT FROM (l.n, l.last_position)}),
		'0', "$label: type_counts holds each event up to its checkpoint exactly once");
}

# Calls counted by track_functions, as "dispatch trigger calls/handler calls".
sub call_counts
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
SELECT coalesce(sum(calls) FILTER (WHERE funcname = '_es_dispatch_inline'), 0) || '/' ||
       coalesce(sum(calls) FILTER (WHERE funcname LIKE '%\_apply'), 0)
  FROM pg_stat_user_functions});
}

inline_models_exact('src', 'src');
type_counts_exact('src', 'src');

my $src_state = state_of('src');
is($node->safe_psql('src', 'SELECT count(*) FROM es.es_projection_defs'),
	'5', 'src: five projections to compare');

#
# Custom format: pg_dump -Fc, pg_restore into a new database.
#
my $dumpfile = "$tempdir/src.dump";
dump_restore_custom($node, 'src', 'dst', $dumpfile);

same_state('dst', $src_state, 'custom restore');
inline_models_exact('dst', 'custom restore');
type_counts_exact('dst', 'custom restore');
is( $node->safe_psql(
		'dst', q{SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname)
		         FROM pg_trigger WHERE tgrelid = 'es.es_events'::regclass AND NOT tgisinternal}),
	'es_events_immutable=A,es_events_inline_projections=A',
	'custom restore: the dispatch trigger is restored, enabled ALWAYS');
# The trigger was there while pg_restore loaded es_events (CREATE EXTENSION
# comes first): it fired for every row and called no handler.
is(call_counts('dst'), '16/0',
	'custom restore: the dispatch trigger fired for each of the 16 restored events, no handler was called');

#
# Plain format: pg_dump | psql.
#
my $plainfile = "$tempdir/src.sql";
dump_restore_plain($node, 'src', 'dst_plain', $plainfile);

same_state('dst_plain', $src_state, 'plain restore');
inline_models_exact('dst_plain', 'plain restore');
type_counts_exact('dst_plain', 'plain restore');
is(call_counts('dst_plain'), '16/0',
	'plain restore: the dispatch trigger fired for each restored event, no handler was called');

# Nothing above changed the source.
same_state('src', $src_state, 'src after the dumps');

#
# After the restore: the same work in src, dst and dst_plain gives the same
# results.
#
my @dbs = ('src', 'dst', 'dst_plain');

# New appends are dispatched to the inline projections exactly once.
for my $db (@dbs)
{
	is( $node->safe_psql(
			$db, q{
SELECT es.es_append('account-4', 1, '[{"type": "MoneyDeposited", "data": {"amount": 40}},
                                      {"type": "MoneyWithdrawn", "data": {"amount": 4}}]');
SELECT es.es_append('account-5', 0, '[{"type": "AccountOpened", "data": {"owner": "dee"}},
                                      {"type": "MoneyDeposited", "data": {"amount": 10}}]');
SELECT string_agg(global_position::text, ',' ORDER BY global_position)
  FROM es.es_events WHERE global_position > 17}),
		"3\n2\n18,19,20,21",
		"$db: new appends continue at version and global position");
	inline_models_exact($db, "$db after new appends");
	is( $node->safe_psql(
			$db, q{SELECT string_agg(d::text, ' ' ORDER BY global_position) FROM deposit_log d
			       WHERE global_position > 17}),
		'(18,account-4,40,regress_app) (21,account-5,10,regress_app)',
		"$db: each new deposit dispatched once to deposit_log");
}
for my $db ('dst', 'dst_plain')
{
	for my $t ('account_balances', 'deposit_log', 'es_projections')
	{
		is($node->safe_psql($db, $state_sql{$t}),
			$node->safe_psql('src', $state_sql{$t}),
			"$db: $t identical to src after the same appends");
	}
}

# Async: type_counts goes on from its restored checkpoint 7.
for my $db (@dbs)
{
	is( $node->safe_psql(
			$db, q{SELECT count(*) FROM es.es_events WHERE global_position > 7}),
		'13', "$db: 13 events after type_counts' checkpoint");
	is($node->safe_psql($db, q{SELECT es.es_projection_run('type_counts')}),
		'13', "$db: type_counts applies exactly those 13 events");
	is( $node->safe_psql(
			$db, q{SELECT position || '/' || lag || '/' || status FROM es.es_projections WHERE name = 'type_counts'}),
		'21/0/running', "$db: type_counts is at the head");
	type_counts_exact($db, "$db after the run");
	is( $node->safe_psql(
			$db, q{SELECT sum(n) = (SELECT count(*) FROM es.es_events) FROM type_counts}),
		't', "$db: type_counts counted every event once");
	is($node->safe_psql($db, q{SELECT es.es_projection_run('type_counts')}),
		'0', "$db: a second run of type_counts applies nothing");
}

# Async: withdrawal_audit retries position 11, is skipped past it, and goes
# on; the dead letters add up.
for my $db (@dbs)
{
	($out, $err) = succeeds($node, $db, q{SELECT es.es_projection_run('withdrawal_audit')},
		"$db: withdrawal_audit run retries the failed event");
	is($out, '0', "$db: withdrawal_audit applies nothing: it fails at 11 again");
	like($err, qr/failed at global position 11: suspicious withdrawal of 1000000/,
		"$db: WARNING for position 11 again");
	is($node->safe_psql($db, q{SELECT es.es_projection_skip('withdrawal_audit')}),
		'11', "$db: skip position 11");
	is($node->safe_psql($db, q{SELECT es.es_projection_run('withdrawal_audit')}),
		'2', "$db: withdrawal_audit applies positions 12 and 19");
	is( $node->safe_psql(
			$db, q{SELECT string_agg(global_position::text, ',' ORDER BY 1) FROM withdrawal_audit}),
		'6,10,12,19', "$db: withdrawal_audit holds every acceptable withdrawal once");
	is( $node->safe_psql(
			$db,
			q{SELECT string_agg(concat_ws('|', projection, (event).global_position, error, position), ','
			                    ORDER BY position) FROM es.es_dead_letters}),
		'withdrawal_audit|9|suspicious withdrawal of 1500000 from account-2|9,'
		  . 'withdrawal_audit|11|suspicious withdrawal of 1000000 from account-2|11',
		"$db: both dead letters");
}
for my $db ('dst', 'dst_plain')
{
	for my $t ('type_counts', 'withdrawal_audit')
	{
		is($node->safe_psql($db, $state_sql{$t}),
			$node->safe_psql('src', $state_sql{$t}),
			"$db: $t identical to src after the same runs");
	}
	my $q = q{SELECT string_agg(concat_ws('|', projection, event, error, position), E'\n'
	                            ORDER BY projection, position) FROM es.es_dead_letters};
	is($node->safe_psql($db, $q), $node->safe_psql('src', $q),
		"$db: es_dead_letters identical to src (but for the time of the new skip)");
	$q = q{SELECT string_agg(concat_ws('|', name, mode, event_types, position, lag, status,
	                                   last_error, failed_position, handler, reset, owner, defined_at),
	                         E'\n' ORDER BY name) FROM es.es_projections};
	is($node->safe_psql($db, $q), $node->safe_psql('src', $q),
		"$db: es_projections identical to src (but for updated_at)");
}

#
# es_projection_rebuild in the restored databases reproduces the read models.
#
for my $db ('dst', 'dst_plain')
{
	my %before = map { $_ => $node->safe_psql($db, $state_sql{$_}) }
	  qw(account_balances deposit_log type_counts withdrawal_audit);
	is($node->safe_psql($db, q{SELECT es.es_projection_rebuild('account_balances')}),
		'20', "$db: rebuild of account_balances replays all 20 events");
	is($node->safe_psql($db, q{SELECT es.es_projection_rebuild('deposit_log')}),
		'6', "$db: rebuild of deposit_log replays the 6 deposits");
	is($node->safe_psql($db, q{SELECT es.es_projection_rebuild('type_counts')}),
		'20', "$db: rebuild of type_counts replays all 20 events");
	for my $t ('account_balances', 'deposit_log', 'type_counts')
	{
		is($node->safe_psql($db, $state_sql{$t}),
			$before{$t}, "$db: $t after rebuild identical to before");
	}
	inline_models_exact($db, "$db after rebuilds");
	type_counts_exact($db, "$db after rebuilds");

	# withdrawal_audit has no reset function: its rebuild meets its existing
	# rows (unique violation at position 6), fails as a whole, and leaves the
	# read model as it was.
	fails_with($node, $db, q{SELECT es.es_projection_rebuild('withdrawal_audit')},
		'23505', "$db: rebuild of withdrawal_audit fails with the handler's 23505");
	is($node->safe_psql($db, $state_sql{withdrawal_audit}),
		$before{withdrawal_audit}, "$db: withdrawal_audit unchanged by the failed rebuild");
	is( $node->safe_psql(
			$db, q{SELECT position || '/' || status FROM es.es_projections WHERE name = 'withdrawal_audit'}),
		'21/running', "$db: withdrawal_audit's checkpoint unchanged by the failed rebuild");

	# idle_counts, never run before the dump, starts at position 0: it adds
	# every event once more to type_counts (the handler they share).
	is($node->safe_psql($db, q{SELECT es.es_projection_run('idle_counts')}),
		'20', "$db: idle_counts starts from position 0 and applies all 20 events");
	is( $node->safe_psql(
			$db, q{SELECT sum(n) = 2 * (SELECT count(*) FROM es.es_events) FROM type_counts}),
		't', "$db: type_counts now counts every event twice (type_counts + idle_counts)");
}

#
# Negative control: an ungated trigger doubles the read model on restore.
#
# Restore the custom dump in sections into ctl; between pre-data (which
# creates the extension, and with it the gated dispatch trigger) and data,
# add an ordinary AFTER INSERT trigger, ENABLE ALWAYS as the extension's,
# that applies deposits to deposit_log the naive way.
$node->safe_psql('postgres', 'CREATE DATABASE ctl');
$node->command_ok(
	[
		'pg_restore', '--exit-on-error', '--section=pre-data',
		'-d', $node->connstr('ctl'), $dumpfile
	],
	'control: pg_restore --section=pre-data');
is( $node->safe_psql(
		'ctl', q{SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname)
		         FROM pg_trigger WHERE tgrelid = 'es.es_events'::regclass AND NOT tgisinternal}),
	'es_events_immutable=A,es_events_inline_projections=A',
	'control: before the data is loaded, the gated dispatch trigger is there, enabled ALWAYS');
$node->safe_psql(
	'ctl', q{
CREATE FUNCTION public.naive_dispatch() RETURNS trigger
LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
    PERFORM public.deposit_log_apply(NEW);
    RETURN NULL;
END $$;
CREATE TRIGGER naive_deposit_log AFTER INSERT ON es.es_events
    FOR EACH ROW WHEN (NEW.event_type = 'MoneyDeposited')
    EXECUTE FUNCTION public.naive_dispatch();
ALTER TABLE es.es_events ENABLE ALWAYS TRIGGER naive_deposit_log;
});
$node->command_ok(
	[
		'pg_restore', '--exit-on-error', '--section=data',
		'-d', $node->connstr('ctl'), $dumpfile
	],
	'control: pg_restore --section=data');
$node->command_ok(
	[
		'pg_restore', '--exit-on-error', '--section=post-data',
		'-d', $node->connstr('ctl'), $dumpfile
	],
	'control: pg_restore --section=post-data');

is($node->safe_psql('ctl', 'SELECT count(*) FROM deposit_log'),
	2 * $node->safe_psql('src', 'SELECT count(*) FROM deposit_log WHERE global_position <= 17'),
	'control: the ungated trigger doubled deposit_log (restored rows + applied again)');
is( $node->safe_psql(
		'ctl', q{SELECT count(*) FROM (SELECT global_position FROM deposit_log
		                               GROUP BY 1 HAVING count(*) = 2) d}),
	'4', 'control: each of the 4 restored deposits is in deposit_log twice');
isnt($node->safe_psql('ctl', $state_sql{deposit_log}),
	$src_state->{deposit_log}, 'control: the deposit_log comparison tells the difference');
is($node->safe_psql('ctl', $state_sql{account_balances}),
	$src_state->{account_balances},
	'control: in the same restore, the gated trigger left account_balances as in src');
is(call_counts('ctl'), '16/4',
	'control: the gated trigger fired for 16 rows; only the naive one called a handler (4 deposits)');

#
# Runs and rebuilds that are the first to meet the dead row of a rolled-back
# append (src had one, at position 16, but its index entry had been marked
# dead by other index scans before a projection read past it; a restored
# database has none).  Last, since a crash here ends the node.
#
$node->safe_psql('postgres', 'CREATE DATABASE holes');
$node->safe_psql(
	'holes', q{
CREATE EXTENSION event_sourcing;
CREATE TABLE seen (projection text, p bigint, n int NOT NULL DEFAULT 1, PRIMARY KEY (projection, p));
CREATE FUNCTION seen_async(e es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO seen AS s VALUES ('async', e.global_position)
    ON CONFLICT (projection, p) DO UPDATE SET n = s.n + 1 $$;
CREATE FUNCTION seen_inline(e es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO seen AS s VALUES ('inline', e.global_position)
    ON CONFLICT (projection, p) DO UPDATE SET n = s.n + 1 $$;
CREATE FUNCTION seen_inline_reset() RETURNS void
LANGUAGE sql AS $$ DELETE FROM seen WHERE projection = 'inline' $$;
SELECT es_define_projection('seen_async', 'seen_async(es_events)', mode => 'async');
SELECT es_define_projection('seen_inline', 'seen_inline(es_events)', reset => 'seen_inline_reset()');
SELECT es_append('a-1', NULL, 'A', '{}');
});
$node->safe_psql('holes',
	q{BEGIN; SELECT es_append('a-1', NULL, 'A', '{}'); ROLLBACK;});
$node->safe_psql('holes',
	q{SELECT es_append('a-1', NULL, 'B', '{}') FROM generate_series(1, 3)});
($out, $err) = succeeds($node, 'holes', q{SELECT es_projection_run('seen_async')},
	'holes: an async run across the dead row of a rolled-back append succeeds');
is($out, '4', 'holes: it applies the 4 committed events');
$node->poll_query_until('holes', 'SELECT true');
$node->safe_psql('holes',
	q{BEGIN; SELECT es_append('a-1', NULL, 'A', '{}'); ROLLBACK;});
$node->safe_psql('holes', q{SELECT es_append('a-1', NULL, 'B', '{}')});
($out, $err) = succeeds($node, 'holes', q{SELECT es_projection_rebuild('seen_inline')},
	'holes: an inline rebuild across the dead row of a rolled-back append succeeds');
is($out, '5', 'holes: it replays the 5 committed events');
$node->poll_query_until('holes', 'SELECT true');
is( $node->safe_psql(
		'holes', q{SELECT string_agg(projection || ':' || p || 'x' || n, ',' ORDER BY projection, p) FROM seen}),
	'async:1x1,async:3x1,async:4x1,async:5x1,inline:1x1,inline:3x1,inline:4x1,inline:5x1,inline:7x1',
	'holes: both read models hold each committed event once');
is($node->safe_psql('holes', q{SELECT es_projection_run('seen_async')}),
	'1', 'holes: the next async run applies position 7 only');
$node->poll_query_until('holes', 'SELECT true');

ok(!$node->log_contains(qr/terminated by signal/),
	'no server process crashed during the test')
  or diag(join '', grep { /terminated by signal|Failed process/ } split /^/m,
	slurp_file($node->logfile));

$node->stop;
done_testing();
