# Copyright: event_sourcing contributors
#
# EsFuzz.pm
#	  The fuzz suite of event_sourcing: cases generated deterministically
#	  from a seed over every public SQL function and every callback kind
#	  (evolve, decide, upcast, projection handler, reset), run against a
#	  server, each followed by the same checks.  test/t/009_fuzz.pl runs it
#	  under PostgreSQL::Test::Cluster; see README, "Fuzzing".
#
#	  A case is some setup SQL (callback functions, definitions, events)
#	  and one call under test, in a database of its own (made from a
#	  template holding the extension and test/fuzz/fixtures.sql) or, for the
#	  argument cases, one shared by a group of them.  Its call runs either as
#	  a statement of its own ("auto") or inside BEGIN ... SAVEPOINT ("txn").
#	  After each case:
#	    alive     a new connection answers SELECT 1; the postmaster did not
#	              restart (pg_postmaster_start_time, and the long-lived admin
#	              connection survives); no "terminated by signal" in the log
#	    sqlstate  a failure of the setup or the call has a specific SQLSTATE:
#	              never XX000 (unless a callback raised it on purpose), never
#	              a lost connection
#	    unchanged when the call failed, the store (count, max position and a
#	              checksum of es_events), snapshots, aggregates, upcasters,
#	              projection definitions/checkpoints/status, dead letters and
#	              the read model are as before it
#	    session   the session is usable: after a failure in "auto" SELECT 1
#	              works and ROLLBACK does not kill the connection; in "txn"
#	              ROLLBACK TO SAVEPOINT, SELECT 1 and COMMIT work
#	    settings  the call did not change the caller's session settings
#	              (work_mem, search_path, statement_timeout, role): callbacks
#	              run in their own GUC nest level (CONTRACT.md, privileges)
#
#	  Each finding names its case, check, SQLSTATE and message, and the SQL
#	  that reproduces it.

package EsFuzz;

use strict;
use warnings;

use DBI;
use DBD::Pg;
use Time::HiRes qw(time usleep);

# --------------------------------------------------------------------------
# Deterministic random numbers (Park-Miller): the same seed gives the same
# cases on every machine and Perl.
# --------------------------------------------------------------------------
my $rng_state = 1;

sub rng_seed { $rng_state = ($_[0] % 2147483646) + 1; return; }

sub rnd
{
	my ($n) = @_;
	$rng_state = ($rng_state * 48271) % 2147483647;
	return $rng_state % $n;
}

sub pick { return $_[ rnd(scalar @_) ]; }

# pick from [weight, value] pairs
sub wpick
{
	my $total = 0;
	$total += $_->[0] for @_;
	my $r = rnd($total);
	for (@_)
	{
		return $_->[1] if $r < $_->[0];
		$r -= $_->[0];
	}
	return $_[-1][1];
}

# --------------------------------------------------------------------------
# Value pools for the argument cases: SQL expressions (q(...) is Perl's
# quote operator: q('a') is the SQL literal 'a').
# --------------------------------------------------------------------------
my @TEXT = (
	'NULL', q(''), q('a'), q('s-1'), q('fzok-1'), q('fzok'), q('-'), q('--'),
	q('-x'), q('cat-'), q(' '), q('a b'), q(E'tab\there'), q(E'new\nline'),
	q('it''s'), q(E'back\\\\slash'), q('%s%n%d'), q('pg_temp'),
	q{'x''); DROP TABLE es_events; --'},
	q('ünïcødé-1'), q('🎉-😀'), q('שלום-1'), q('e' || U&'\0301' || '-1'),
	q(U&'\200B-zero-width'), q(U&'\FEFF-bom'), q(U&'\+01F4A9-pile'),
	q(repeat('x', 255)), q(repeat('x', 256)), q(repeat('é', 128)),
	q(repeat('é', 127) || 'x'), q(repeat('x', 100000)), q(repeat('-', 300)),
);
my @BIGINT = (
	'NULL', '0', '1', '-1', '-2', '2', '3', '100', '2147483647', '2147483648',
	'9223372036854775807', '-9223372036854775808', '-2147483648',
	'9223372036854775806',
);
my @INT = (
	'NULL', '0', '1', '-1', '2', '1000', '2147483647', '-2147483648',
);
my @JSON = (
	'NULL', q('{}'), q('[]'), q('1'), q('"s"'), q('null'), q('true'),
	q('{"a": null}'), q('{"é": "ü", "🎉": [1, {"x": "\u00e9"}]}'),
	q('{"n": 1e308}'), q('{"n": -0}'), q('{"n": 123456789012345678901234567890}'),
	q(('[' x 1000) . (']' x 1000)),
	q(('{"a":' x 1000) . '1' . ('}' x 1000)),
	q(jsonb_build_object('big', repeat('x', 1000000))),
	q((SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, 10000) g)),
);
# the JSON values given as expressions, not literals
$_ =~ s/^'(\(.*\)|jsonb_build_object.*)'$/$1/ for @JSON;
my @BATCH = (
	'NULL', q('[]'), q('{}'), q('null'), q('[null]'), q('[[]]'), q('[{}]'),
	q('"x"'), q('[{"type": "FzT", "data": {}}]'),
	q('[{"type": "FzT", "data": {}, "extra": 1}]'),
	q('[{"type": "", "data": {}}]'), q('[{"type": "FzT"}]'),
	q('[{"data": {}}]'), q('[{"type": 7, "data": {}}]'),
	q('[{"type": "FzT", "data": []}]'), q('[{"type": "FzT", "data": null}]'),
	q('[{"type": "FzT", "data": {}, "metadata": null, "id": null}]'),
	q('[{"type": "FzT", "data": {}, "metadata": []}]'),
	q('[{"type": "FzT", "data": {}, "id": "not-a-uuid"}]'),
	q('[{"type": "FzT", "data": {}, "id": 5}]'),
	q('[{"type": "FzT", "data": {}, "id": "00000000-0000-0000-0000-000000000000"}]'),
	q('[{"type": "FzT", "data": {}, "id": "0195f0c2-1111-7000-8000-0000000000aa"}, {"type": "FzT", "data": {}, "id": "0195f0c2-1111-7000-8000-0000000000aa"}]'),
	q('[{"type": "Ünï🎉", "data": {"ключ": "值"}}]'),
	q('[{"type": "$Sys", "data": {}}]'),
	'(SELECT jsonb_agg(jsonb_build_object(\'type\', \'FzT\', \'data\', jsonb_build_object(\'i\', g))) FROM generate_series(1, 5000) g)',
	'jsonb_build_array(jsonb_build_object(\'type\', repeat(\'T\', 256), \'data\', \'{}\'::jsonb))',
);
my @UUID = (
	'NULL', q('00000000-0000-0000-0000-000000000000'),
	q('ffffffff-ffff-ffff-ffff-ffffffffffff'),
	q('0195f0c2-1111-7000-8000-000000000001'), 'gen_random_uuid()',
);
my @TS = (
	'NULL', 'now()', q('infinity'), q('-infinity'), q('epoch'),
	q('4713-01-01 00:00:00+00 BC'), q('294276-12-31 00:00:00+00'),
	q('2000-01-01'),
);
my @TEXTARR = (
	'NULL', q('{}'), q('{NULL}'), q('{""}'), q('{{a},{b}}'), q('{FzT}'),
	q('{FzT,FzT}'), q('{"ü🎉"}'), q('[0:1]={FzT,FzU}'),
	'(SELECT array_agg(\'T\' || g) FROM generate_series(1, 2000) g)',
	'ARRAY[repeat(\'T\', 300)]',
);
# timeouts of the waiting functions: short, or invalid
my @TIMEOUT = ('NULL', '0', '-1', '1', '20', '-2147483648');
my @INTERVAL = (
	'NULL', q('1 day'), q('-1 day'), q('0'), q('1 microsecond'),
	q('178000000 years'), q('1 mon -30 days'),
);
my @PATHS = (
	@TEXTARR, q('{a.b,metadata.x}'), q('{data,metadata}'), q('{..}'), q('{metadata.}'),
	q('{data.0.1}'), q('{"a.b.c.d.e.f.g.h"}'),
);
my @MODE = ('NULL', q('inline'), q('async'), q('INLINE'), q(''), q('sync'), q(' async'));
my @REGPROC_EVOLVE = (
	'NULL', q('fz_evolve_ok(jsonb, es_events)'), q('fz_w_one(jsonb)'),
	q('fz_w_json(json, es_events)'), q('fz_w_text(jsonb, es_events)'),
	q('fz_w_setof(jsonb, es_events)'), q('fz_w_poly(anyelement, es_events)'),
	q('fz_w_variadic(jsonb[])'), q('fz_w_out(jsonb, es_events)'),
	q('fz_w_proc(jsonb, es_events)'), q('fz_w_agg(jsonb)'), q('fz_w_trig()'),
	q('jsonb_concat(jsonb, jsonb)'), q('no_such_fn(jsonb)'), '0', '1',
	'4294967295',
);
my @REGPROC_DECIDE = (
	'NULL', q('fz_decide_ok(jsonb, jsonb)'), q('jsonb_concat(jsonb, jsonb)'),
	q('fz_w_one(jsonb)'), q('fz_evolve_ok(jsonb, es_events)'), q('fz_w_agg(jsonb)'),
	q('jsonb_set(jsonb, text[], jsonb, boolean)'),
);
my @REGPROC_UP = (
	'NULL', q('fz_up_ok(jsonb)'), q('jsonb_strip_nulls(jsonb)'),
	q('jsonb_pretty(jsonb)'), q('fz_w_one(jsonb)'), q('fz_w_agg(jsonb)'),
	q('fz_w_variadic(jsonb[])'), q('to_jsonb(anyelement)'), '0',
);
my @REGPROC_H = (
	'NULL', q('fz_h_ok(es_events)'), q('fz_w_record(record)'),
	q('fz_w_hint(es_events)'), q('fz_evolve_ok(jsonb, es_events)'),
	q('fz_w_trig()'), q('row_to_json(record)'), '0',
);
my @REGPROC_RESET = (
	'NULL', q('fz_reset_ok()'), q('fz_w_reset(integer)'), q('pg_reload_conf()'),
	q('fz_w_trig()'), q('now()'), q('fz_commit_proc()'),
);

# One generator per public function: returns the call.
my %API = (
	es_append => sub {
		"SELECT es_append(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@TEXT),
			pick(@JSON), pick(@JSON), pick(@UUID)) . ")";
	},
	es_append_named => sub {
		"SELECT es_append(stream_id => " . pick(@TEXT) . ", expected_version => "
		  . pick(@BIGINT) . ", event_type => " . pick(@TEXT) . ", data => "
		  . pick(@JSON) . ")";
	},
	es_append_batch => sub {
		"SELECT es_append(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@BATCH)) . ")";
	},
	es_load => sub {
		"SELECT * FROM es_load(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@BIGINT)) . ")";
	},
	es_stream_version => sub {
		"SELECT es_stream_version(" . join(', ', pick(@TEXT), pick(@TS)) . ")";
	},
	es_read_all => sub {
		"SELECT * FROM es_read_all(" . join(', ', pick(@BIGINT), pick(@INT)) . ")";
	},
	es_read_category => sub {
		"SELECT * FROM es_read_category(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@INT)) . ")";
	},
	es_safe_position => sub { "SELECT es_safe_position()" },
	es_snapshot_save => sub {
		"SELECT es_snapshot_save(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@JSON)) . ")";
	},
	es_snapshot_load => sub {
		"SELECT * FROM es_snapshot_load(" . join(', ', pick(@TEXT), pick(@BIGINT)) . ")";
	},
	es_snapshot_prune => sub {
		"SELECT es_snapshot_prune(" . join(', ', pick(@INT), pick(@TEXT)) . ")";
	},
	es_define_aggregate => sub {
		"SELECT es_define_aggregate(" . join(', ', pick(@TEXT), pick(@REGPROC_EVOLVE),
			pick(@JSON), pick(@REGPROC_DECIDE), pick(@INT)) . ")";
	},
	es_aggregate => sub {
		"SELECT * FROM es_aggregate(" . join(', ', pick(@TEXT), pick(@BIGINT)) . ")";
	},
	es_aggregate_at => sub {
		"SELECT * FROM es_aggregate_at(" . join(', ', pick(@TEXT), pick(@TS)) . ")";
	},
	es_execute => sub {
		"SELECT es_execute(" . join(', ', pick(@TEXT), pick(@JSON), pick(@BIGINT), pick(@UUID)) . ")";
	},
	es_fold_count => sub { "SELECT es_fold_count()" },
	es_define_upcaster => sub {
		"SELECT es_define_upcaster(" . join(', ', pick(@TEXT), pick(@INT),
			pick(@REGPROC_UP), pick(@TEXT)) . ")";
	},
	es_wait => sub {
		"SELECT es_wait(" . join(', ', pick(@BIGINT), pick('NULL', '0', '-1', '1', '20', '-2147483648')) . ")";
	},
	es_define_projection => sub {
		"SELECT es_define_projection(" . join(', ', pick(@TEXT), pick(@REGPROC_H),
			pick(@TEXTARR), pick(@MODE), pick(@REGPROC_RESET)) . ")";
	},
	es_drop_projection => sub { "SELECT es_drop_projection(" . pick(@TEXT, q('fzp')) . ")" },
	es_projection_run => sub {
		"SELECT es_projection_run(" . join(', ', pick(@TEXT, q('fzp')), pick(@INT)) . ")";
	},
	es_projection_rebuild => sub { "SELECT es_projection_rebuild(" . pick(@TEXT, q('fzp')) . ")" },
	es_projection_skip => sub { "SELECT es_projection_skip(" . pick(@TEXT, q('fzp')) . ")" },
	es_delete_stream => sub {
		"SELECT es_delete_stream(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@TEXT)) . ")";
	},
	es_truncate_stream => sub {
		"SELECT es_truncate_stream(" . join(', ', pick(@TEXT), pick(@BIGINT), pick(@TEXT)) . ")";
	},
	es_redact_event => sub {
		"SELECT es_redact_event(" . join(', ', pick(@UUID, '(SELECT event_id FROM es_events ORDER BY global_position LIMIT 1)'),
			pick(@PATHS), pick(@TEXT)) . ")";
	},
	es_set_retention => sub {
		"SELECT es_set_retention(" . join(', ', pick(@TEXT), pick(@INTERVAL), pick(@BIGINT)) . ")";
	},
	es_apply_retention => sub { "SELECT es_apply_retention(" . pick(@INT) . ")" },
	# subscriptions (1.5): 'fzs' exists when an earlier case defined it
	es_define_subscription => sub {
		"SELECT es_define_subscription(" . join(', ', pick(@TEXT, q('fzs')), pick(@TEXT),
			pick(@TEXTARR), pick(@BIGINT), pick(@INT, '4', '1024', '1025')) . ")";
	},
	es_subscription_read => sub {
		"SELECT * FROM es_subscription_read(" . join(', ', pick(@TEXT, q('fzs')), pick(@INT), pick(@INT)) . ")";
	},
	es_subscription_ack => sub {
		"SELECT es_subscription_ack(" . join(', ', pick(@TEXT, q('fzs')), pick(@BIGINT), pick(@INT)) . ")";
	},
	es_subscription_wait => sub {
		"SELECT es_subscription_wait(" . join(', ', pick(@TEXT, q('fzs')), pick(@INT), pick(@TIMEOUT)) . ")";
	},
	es_subscription_wait_acked => sub {
		"SELECT es_subscription_wait_acked(" . join(', ', pick(@TEXT, q('fzs')), pick(@BIGINT), pick(@TIMEOUT)) . ")";
	},
	es_subscription_reset => sub {
		"SELECT es_subscription_reset(" . join(', ', pick(@TEXT, q('fzs')), pick(@BIGINT), pick(@INT)) . ")";
	},
	es_alter_subscription => sub {
		"SELECT es_alter_subscription(" . join(', ', pick(@TEXT, q('fzs')), pick(@INT, '4', '1025')) . ")";
	},
	es_drop_subscription => sub { "SELECT es_drop_subscription(" . pick(@TEXT, q('fzs')) . ")" },
	es_subscription_release => sub {
		"SELECT es_subscription_release(" . join(', ', pick(@TEXT, q('fzs')), pick(@INT)) . ")";
	},
	es_subscription_member => sub {
		"SELECT es_subscription_member(" . join(', ', pick(@TEXT), pick(@INT, '4', '1024', '1025')) . ")";
	},
	es_last_position => sub { "SELECT es_last_position()" },
	es_projection_wait => sub {
		"SELECT es_projection_wait(" . join(', ', pick(@TEXT, q('fzp')), pick(@BIGINT), pick(@TIMEOUT)) . ")";
	},
);

# --------------------------------------------------------------------------
# Callback behaviours.  Each has statements run first ("side", SQL; in
# PL/pgSQL a SELECT becomes PERFORM) and, for the jsonb kinds, the value
# returned ("value", default: the kind's well-behaved value).  %s in side or
# value is the case's prefix (c<N>), %S its stream, %P its projection, %F
# the callback's own signature, %T its event type.
# --------------------------------------------------------------------------
my %OKVALUE = (
	evolve => q{coalesce(state, '{}'::jsonb) || jsonb_build_object('n', coalesce((state->>'n')::int, 0) + 1)},
	decide => q{'[{"type": "FzDecided", "data": {"ok": true}}]'::jsonb},
	upcast => q{data || '{"up": 1}'::jsonb},
);
my %OKSTMT = (
	handler => q{INSERT INTO fz_rm VALUES ('%s', to_jsonb(e.data))},
	reset => q{DELETE FROM fz_rm WHERE k = '%s'},
);

my @RAISE = qw(40001 40P01 57014 55P03 XX000 P0001 22012 23505 42501 53200 54001 0A000 25006 08006 57P01);

my @BEHAVIOURS = (
	{ name => 'ok' },
	{ name => 'null', value => 'NULL::jsonb', kinds => [qw(evolve decide upcast)] },
	{ name => 'array', value => q{'[1, [2], {"a": 3}]'::jsonb}, kinds => [qw(evolve decide upcast)] },
	{ name => 'scalar', value => q{'42'::jsonb}, kinds => [qw(evolve decide upcast)] },
	{ name => 'string', value => q{'"fz"'::jsonb}, kinds => [qw(evolve decide upcast)] },
	{ name => 'jsonnull', value => q{'null'::jsonb}, kinds => [qw(evolve decide upcast)] },
	{ name => 'nested', value => q{(repeat('{"a":', 3000) || '1' || repeat('}', 3000))::jsonb}, kinds => [qw(evolve decide upcast)] },
	{ name => 'huge', value => q{jsonb_build_object('big', repeat('x', 3000000))}, kinds => [qw(evolve upcast)] },
	{ name => 'manykeys', value => q{(SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, 20000) g)}, kinds => [qw(evolve upcast)] },
	(map { { name => "decide_$_->[0]", value => "'$_->[1]'::jsonb", kinds => ['decide'] } }
		[ empty => '[]' ],
		[ object => '{"type": "FzT", "data": {}}' ],
		[ nodata => '[{"type": "FzT"}]' ],
		[ extrakey => '[{"type": "FzT", "data": {}, "x": 1}]' ],
		[ emptytype => '[{"type": "", "data": {}}]' ],
		[ numtype => '[{"type": 7, "data": {}}]' ],
		[ dataarray => '[{"type": "FzT", "data": []}]' ],
		[ badid => '[{"type": "FzT", "data": {}, "id": "nope"}]' ],
		[ dupid => '[{"type": "FzT", "data": {}, "id": "0195f0c2-1111-7000-8000-0000000000bb"}, {"type": "FzT", "data": {}, "id": "0195f0c2-1111-7000-8000-0000000000bb"}]' ],
		[ nullelem => '[null]' ],
		[ unicode => '[{"type": "Ünï🎉", "data": {"ключ": "值"}}]' ],
		[ reserved => '[{"type": "$Sys", "data": {}}]' ]),
	{ name => 'decide_many', value => q{(SELECT jsonb_agg(jsonb_build_object('type', 'FzT', 'data', jsonb_build_object('i', g))) FROM generate_series(1, 3000) g)}, kinds => ['decide'] },
	{ name => 'decide_longtype', value => q{jsonb_build_array(jsonb_build_object('type', repeat('T', 256), 'data', '{}'::jsonb))}, kinds => ['decide'] },
	(map { { name => "raise_$_", side => ["SELECT fz_raise('$_')"], raises => $_ } } @RAISE),
	{ name => 'div0', side => ['SELECT 1/0'] },
	{ name => 'timeout', side => ['SELECT pg_sleep(2)'], timeout => 300 },
	{ name => 'set_config', side => [q{SELECT set_config('work_mem', '3MB', false)}] },
	{ name => 'set_config_path', side => [q{SELECT set_config('search_path', 'pg_catalog', false)}] },
	{ name => 'set_config_timeout', side => [q{SELECT set_config('statement_timeout', '1', false)}] },
	{ name => 'set_local', side => [q{SET LOCAL work_mem = '5MB'}] },
	{ name => 'set_session', side => [q{SET work_mem = '6MB'}] },
	{ name => 'set_role', side => [q{SET ROLE fz_nobody}] },
	{ name => 'reset_all', side => [q{RESET ALL}] },
	{ name => 'temp_table', side => [q{CREATE TEMP TABLE fz_tmp_%s (x int)}] },
	{ name => 'commit', side => ['COMMIT'] },
	{ name => 'rollback', side => ['ROLLBACK'] },
	{ name => 'savepoint', side => ['SAVEPOINT fz_sp'] },
	{ name => 'release', side => ['RELEASE SAVEPOINT fz_sp'] },
	{ name => 'copy_out', side => ['COPY (SELECT 1) TO STDOUT'] },
	{ name => 'copy_in', side => ['COPY fz_rm FROM STDIN'] },
	{ name => 'vacuum', side => ['VACUUM fz_rm'] },
	{ name => 'listen', side => ['LISTEN fz_chan'] },
	{ name => 'notify', side => ['NOTIFY fz_chan'] },
	{ name => 'discard', side => ['DISCARD ALL'] },
	{ name => 'prepare_txn', side => [q{PREPARE TRANSACTION 'fz'}] },
	{ name => 'set_txn', side => ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE'] },
	{ name => 'call_commit', side => ['CALL fz_commit_proc()'] },
	{ name => 'lock_events', side => ['LOCK TABLE es_events IN ACCESS EXCLUSIVE MODE'] },
	{ name => 'wait', side => ['SELECT es_wait(0, 10)'] },
	# recursion into the API
	{ name => 'rec_agg_self', kinds => ['evolve'], value => q{(SELECT a.state FROM es_aggregate(e.stream_id) a)} },
	{ name => 'rec_agg_other', kinds => [qw(evolve decide upcast handler reset)], side => [q{SELECT es_aggregate('fzok-1')}] },
	{ name => 'rec_append_self', kinds => [qw(evolve handler)], side => [q{SELECT es_append(e.stream_id, NULL, 'FzSide', '{}')}] },
	{ name => 'rec_append_other', kinds => [qw(evolve decide upcast handler reset)], side => [q{SELECT es_append('fzside-1', NULL, 'FzSide', '{}')}] },
	{ name => 'rec_append_stream', kinds => [qw(decide upcast reset)], side => [q{SELECT es_append('%S', NULL, 'FzSide', '{}')}] },
	{ name => 'rec_execute_self', kinds => ['decide'], side => [q{SELECT es_execute('%S', command)}] },
	{ name => 'rec_execute_other', kinds => [qw(evolve decide handler)], side => [q{SELECT es_execute('fzok-1', '{}')}] },
	{ name => 'rec_snapshot', kinds => [qw(evolve upcast)], side => [q{SELECT es_snapshot_save('%S', 1, '{"forged": true}')}, q{SELECT es_snapshot_prune(0)}] },
	{ name => 'rec_redefine_agg', kinds => [qw(evolve decide)], side => [q{SELECT es_define_aggregate('%s', 'fz_evolve_ok(jsonb, es_events)', snapshot_every => 1)}] },
	{ name => 'rec_define_upcaster', kinds => [qw(upcast evolve handler)], side => [q{SELECT es_define_upcaster('%T2', 1, 'fz_up_ok(jsonb)')}, q{SELECT count(*) FROM es_load('%S')}] },
	{ name => 'rec_extend_chain', kinds => [qw(upcast handler)], side => [q{SELECT es_define_upcaster('%T', 2, 'fz_up_ok(jsonb)')}, q{SELECT count(*) FROM es_load('%S')}] },
	{ name => 'rec_read', kinds => [qw(upcast evolve handler reset)], side => [q{SELECT count(*) FROM es_read_all()}, q{SELECT count(*) FROM es_read_category('%s')}] },
	{ name => 'rec_run', kinds => [qw(handler reset evolve upcast)], side => [q{SELECT es_projection_run()}] },
	{ name => 'rec_rebuild_self', kinds => [qw(handler reset)], side => [q{SELECT es_projection_rebuild('%P')}] },
	{ name => 'rec_drop_self', kinds => [qw(handler reset)], side => [q{SELECT es_drop_projection('%P')}] },
	{ name => 'rec_skip_self', kinds => [qw(handler)], side => [q{SELECT es_projection_skip('%P')}] },
	{ name => 'rec_define_proj', kinds => [qw(handler reset evolve upcast)], side => [q{SELECT es_define_projection('%P_x', 'fz_h_ok(es_events)')}] },
	{ name => 'rec_replace_self', kinds => [qw(evolve upcast handler)], side => [q{SELECT count(*) FROM (SELECT 1) x}], replace => 1 },
);

# utility statements (no sql_atomic body for them)
my $UTILITY = qr/^(COMMIT|ROLLBACK|SAVEPOINT|RELEASE|COPY|VACUUM|LISTEN|NOTIFY|DISCARD|PREPARE|SET|RESET|CALL|LOCK|CREATE)/;

my %SIG = (
	evolve => [ '(state jsonb, e es_events)', 'jsonb', '(jsonb, es_events)' ],
	decide => [ '(state jsonb, command jsonb)', 'jsonb', '(jsonb, jsonb)' ],
	upcast => [ '(data jsonb)', 'jsonb', '(jsonb)' ],
	handler => [ '(e es_events)', 'void', '(es_events)' ],
	reset => [ '()', 'void', '()' ],
);

sub subst
{
	my ($s, $c) = @_;
	$s =~ s/%s/$c->{p}/g;
	$s =~ s/%S/$c->{stream}/g;
	$s =~ s/%P/$c->{proj}/g;
	$s =~ s/%T/$c->{type}/g;
	$s =~ s/%F/$c->{fn}/g;
	return $s;
}

# CREATE FUNCTION for a callback of kind $kind with behaviour $b.
sub callback_sql
{
	my ($c, $kind, $b, $lang, $attrs) = @_;
	my ($args, $ret) = @{ $SIG{$kind} };
	my @side = map { subst($_, $c) } @{ $b->{side} // [] };
	my $value;
	if ($ret eq 'jsonb')
	{
		$value = subst($b->{value} // $OKVALUE{$kind}, $c);
	}
	else
	{
		push @side, subst($OKSTMT{$kind}, $c) if $b->{name} eq 'ok' || !@side;
	}
	my $body;
	if ($lang eq 'plpgsql')
	{
		my @st = map { s/^SELECT /PERFORM /r } @side;
		push @st, "RETURN $value" if defined $value;
		$body = "AS \$fz\$ BEGIN " . join('; ', @st) . "; END \$fz\$";
	}
	elsif ($lang eq 'sql_atomic')
	{
		my @st = @side;
		push @st, "SELECT $value" if defined $value;
		$body = "BEGIN ATOMIC " . join('; ', @st) . "; END";
	}
	else
	{
		my @st = @side;
		push @st, "SELECT $value" if defined $value;
		$body = "AS \$fz\$ " . join('; ', @st) . " \$fz\$";
	}
	my $l = $lang eq 'sql_atomic' ? 'sql' : $lang;
	return "CREATE FUNCTION $c->{fn}$args RETURNS $ret LANGUAGE $l $attrs $body";
}

# The behaviours that apply to a kind, in a fixed order.
sub behaviours_of
{
	my ($kind) = @_;
	return grep { !$_->{kinds} || grep { $_ eq $kind } @{ $_->{kinds} } } @BEHAVIOURS;
}

# --------------------------------------------------------------------------
# Case generation
# --------------------------------------------------------------------------

# The kinds in the order cases cycle through them; 'args' and 'wrongsig'
# need no behaviour.
my @KINDS = qw(evolve handler upcast args decide handler reset evolve upcast args wrongsig handler);

# generate($seed, $n): the cases, in order.
sub generate
{
	my ($seed, $n) = @_;
	rng_seed($seed);
	my %next;    # per kind: position in its behaviour cycle
	my %beh = map { $_ => [ behaviours_of($_) ] } qw(evolve decide upcast handler reset);
	# each kind starts its cycle at a seed-dependent place
	$next{$_} = rnd(scalar @{ $beh{$_} }) for sort keys %beh;
	my @api = sort keys %API;
	my $api_next = rnd(scalar @api);
	my @cases;
	for my $i (1 .. $n)
	{
		my $kind = $KINDS[ ($i - 1) % @KINDS ];
		my $c = {
			id => $i,
			kind => $kind,
			p => "c$i",
			stream => "c$i-1",
			proj => "c${i}_p",
			type => "C${i}Ev",
			fn => "fz_c${i}_cb",
			setup => [],
			wrap => wpick([ 3, 'auto' ], [ 1, 'txn' ]),
		};
		if ($kind eq 'args')
		{
			my $f = $api[ $api_next++ % @api ];
			$c->{what} = $f;
			$c->{fresh} = 0;
			$c->{call} = $API{$f}->();
			$c->{timeout} = 1000 if $f =~ /_wait/;
			push @{ $c->{setup} },
			  "SELECT es_append('s-1', NULL, '[{\"type\": \"FzT\", \"data\": {}}, {\"type\": \"FzT\", \"data\": {}}]')"
			  if rnd(2);
		}
		elsif ($kind eq 'wrongsig')
		{
			gen_wrongsig($c);
		}
		else
		{
			my $b = $beh{$kind}[ $next{$kind}++ % @{ $beh{$kind} } ];
			gen_callback_case($c, $kind, $b);
		}
		push @cases, $c;
	}
	return @cases;
}

sub gen_wrongsig
{
	my ($c) = @_;
	$c->{fresh} = 1;
	my $which = pick(qw(evolve decide upcast handler reset));
	my $p = $c->{p};
	if ($which eq 'evolve')
	{
		$c->{call} = "SELECT es_define_aggregate('$p', " . pick(@REGPROC_EVOLVE[1..$#REGPROC_EVOLVE]) . ")";
	}
	elsif ($which eq 'decide')
	{
		$c->{call} = "SELECT es_define_aggregate('$p', 'fz_evolve_ok(jsonb, es_events)', decide => "
		  . pick(@REGPROC_DECIDE[1..$#REGPROC_DECIDE]) . ")";
	}
	elsif ($which eq 'upcast')
	{
		$c->{call} = "SELECT es_define_upcaster('$c->{type}', 1, " . pick(@REGPROC_UP[1..$#REGPROC_UP]) . ")";
	}
	elsif ($which eq 'handler')
	{
		$c->{call} = "SELECT es_define_projection('$c->{proj}', " . pick(@REGPROC_H[1..$#REGPROC_H])
		  . ", mode => " . pick(q('inline'), q('async')) . ")";
	}
	else
	{
		$c->{call} = "SELECT es_define_projection('$c->{proj}', 'fz_h_ok(es_events)', reset => "
		  . pick(@REGPROC_RESET[1..$#REGPROC_RESET]) . ")";
	}
	$c->{what} = "wrongsig $which";
	return;
}

sub gen_callback_case
{
	my ($c, $kind, $b) = @_;
	my $lang = wpick([ 10, 'sql' ], [ 7, 'plpgsql' ], [ 3, 'sql_atomic' ]);
	$lang = 'sql' if $lang eq 'sql_atomic'
	  && (grep { /$UTILITY/ } @{ $b->{side} // [] });
	$lang = 'plpgsql' if $lang eq 'sql_atomic' && $kind eq 'handler' && 0;
	my @attrs;
	my $setc = wpick([ 10, '' ], [ 1, q{SET work_mem = '64kB'} ], [ 1, q{SET search_path = pg_catalog, public} ]);
	push @attrs, $setc if $setc ne '';
	push @attrs, 'SECURITY DEFINER' if rnd(6) == 0;
	push @attrs, 'STRICT' if rnd(6) == 0;
	push @attrs, wpick([ 8, '' ], [ 1, 'STABLE' ], [ 1, 'IMMUTABLE' ]);
	my $attrs = join(' ', grep { $_ ne '' } @attrs);
	# an evolve or decide case touches its own category only
	$c->{fresh} = $kind eq 'evolve' || $kind eq 'decide' ? 0 : 1;
	$c->{behaviour} = $b->{name};
	$c->{lang} = $lang;
	$c->{attrs} = $attrs;
	$c->{setc} = $setc;
	$c->{raises} = $b->{raises};
	$c->{timeout} = $b->{timeout};
	my $fndef = callback_sql($c, $kind, $b, $lang, $attrs);
	my $sig = "$c->{fn}$SIG{$kind}[2]";
	my ($p, $s, $t, $pr) = @$c{qw(p stream type proj)};
	my @setup = ($fndef);
	my $ev3 = "'[{\"type\": \"$t\", \"data\": {\"i\": 1}}, {\"type\": \"$t\", \"data\": {\"i\": 2}}, {\"type\": \"$t\", \"data\": {\"i\": 3}}]'";
	my $call;

	if ($kind eq 'evolve')
	{
		my $init = pick(q('{}'), q('{"n": 0}'), q('[]'), q('1'), q('null'));
		my $every = pick(0, 1, 2, 100);
		push @setup, "SELECT es_define_aggregate('$p', '$sig', $init, 'fz_decide_ok(jsonb, jsonb)', $every)";
		push @setup, "SELECT es_append('$s', NULL, $ev3)";
		push @setup, "SELECT es_snapshot_save('$s', 1, '{\"snap\": 1}')" if rnd(3) == 0;
		$call = pick(
			"SELECT * FROM es_aggregate('$s')",
			"SELECT * FROM es_aggregate('$s', 2)",
			"SELECT * FROM es_aggregate('$s', 9223372036854775807)",
			"SELECT * FROM es_aggregate_at('$s', now())",
			"SELECT es_execute('$s', '{\"cmd\": 1}')");
	}
	elsif ($kind eq 'decide')
	{
		push @setup, "SELECT es_define_aggregate('$p', 'fz_evolve_ok(jsonb, es_events)', '{}', '$sig', " . pick(0, 1, 100) . ")";
		push @setup, "SELECT es_append('$s', NULL, $ev3)" if rnd(3);
		$call = "SELECT es_execute('$s', " . pick(q('{"cmd": 1}'), q('[]'), q('null'), q('{"é": "🎉"}')) . ")";
	}
	elsif ($kind eq 'upcast')
	{
		my $to = pick('NULL', 'NULL', "'${t}New'");
		push @setup, "SELECT es_append('$s', NULL, '$t', '{\"i\": 1}')";
		push @setup, "SELECT es_define_upcaster('$t', 1, '$sig', $to)";
		push @setup, "SELECT es_append('$s', NULL, '$t', '{\"i\": 2}')";
		my $target = pick(qw(load read_all read_category aggregate execute run rebuild));
		if ($target eq 'aggregate' || $target eq 'execute')
		{
			push @setup, "SELECT es_define_aggregate('$p', 'fz_evolve_ok(jsonb, es_events)', '{}', 'fz_decide_ok(jsonb, jsonb)', " . pick(0, 1, 100) . ")";
		}
		if ($target eq 'run' || $target eq 'rebuild')
		{
			push @setup, "SELECT es_define_projection('$pr', 'fz_h_ok(es_events)', " . pick('NULL', "ARRAY['$t']", "ARRAY['${t}New']")
			  . ", " . ($target eq 'run' ? q('async') : pick(q('async'), q('inline'))) . ")";
		}
		$call = {
			load => "SELECT * FROM es_load('$s')",
			read_all => "SELECT * FROM es_read_all((SELECT min(global_position) - 1 FROM es_events WHERE stream_id = '$s'))",
			read_category => "SELECT * FROM es_read_category('$p')",
			aggregate => "SELECT * FROM es_aggregate('$s')",
			execute => "SELECT es_execute('$s', '{}')",
			run => "SELECT es_projection_run('$pr')",
			rebuild => "SELECT es_projection_rebuild('$pr')",
		}->{$target};
	}
	elsif ($kind eq 'handler')
	{
		my $mode = pick('inline', 'async');
		my $types = pick('NULL', "ARRAY['$t']");
		push @setup, "SELECT es_append('$s', NULL, $ev3)" if $mode eq 'async' || rnd(2);
		push @setup, "SELECT es_define_projection('$pr', '$sig', $types, '$mode', 'fz_reset_ok()')";
		if ($mode eq 'async')
		{
			$call = pick("SELECT es_projection_run('$pr')", "SELECT es_projection_run(NULL, 2)",
				"SELECT es_projection_rebuild('$pr')");
		}
		else
		{
			push @setup, "SELECT es_define_aggregate('$p', 'fz_evolve_ok(jsonb, es_events)', '{}', 'fz_decide_ok(jsonb, jsonb)')";
			$call = pick("SELECT es_append('$s', NULL, '$t', '{\"i\": 9}')", "SELECT es_append('$s', NULL, $ev3)",
				"SELECT es_execute('$s', '{}')", "SELECT es_projection_rebuild('$pr')");
		}
	}
	elsif ($kind eq 'reset')
	{
		my $mode = pick('inline', 'async');
		push @setup, "SELECT es_append('$s', NULL, $ev3)";
		push @setup, "SELECT es_define_projection('$pr', 'fz_h_ok(es_events)', ARRAY['$t'], '$mode', '$sig')";
		$call = "SELECT es_projection_rebuild('$pr')";
	}
	# CREATE OR REPLACE of the callback in between (its own body again)
	push @setup, $fndef =~ s/^CREATE FUNCTION/CREATE OR REPLACE FUNCTION/r if $b->{replace};
	$c->{setup} = \@setup;
	$c->{call} = $call;
	$c->{what} = "$kind $b->{name} $lang" . ($attrs ne '' ? " [$attrs]" : '');
	return;
}

# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

# The state of the database that a failed call must leave as it was.
my $STATE_SQL = q{
SELECT concat_ws(' # ',
  (SELECT count(*) || '/' || coalesce(max(global_position), 0) || '/' ||
          md5(coalesce(string_agg(e::text, '|' ORDER BY global_position), ''))
     FROM es_events e),
  (SELECT 'snap ' || md5(coalesce(string_agg(concat_ws(',', stream_id, version, fingerprint, state), '|'
          ORDER BY stream_id, fingerprint, version), '')) FROM es_snapshots),
  (SELECT 'agg ' || md5(coalesce(string_agg(concat_ws(',', category, evolve, initial_state, decide, snapshot_every, definition_id), '|'
          ORDER BY category), '')) FROM es_aggregates),
  (SELECT 'up ' || md5(coalesce(string_agg(concat_ws(',', event_type, from_schema, upcast, to_type), '|'
          ORDER BY event_type, from_schema), '')) FROM es_upcasters),
  (SELECT 'proj ' || coalesce(string_agg(concat_ws(',', name, mode, position, status, failed_position, md5(coalesce(last_error, ''))), '|'
          ORDER BY name), '') FROM es_projection_defs),
  (SELECT 'dead ' || count(*) FROM es_dead_letters),
  (SELECT 'rm ' || count(*) || '/' || md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM fz_rm r))
};

# The session settings a call must not change.
my $GUC_SQL = q{SELECT concat_ws(' | ', current_setting('work_mem'), current_setting('search_path'),
  current_setting('statement_timeout'), current_user, session_user)};

my $CRASH_RE = qr/terminated by signal|terminated by exception|exited with exit code [1-9]|PANIC:/;

sub new
{
	my ($class, %o) = @_;
	my $self = bless {
		host => $o{host},
		port => $o{port},
		logfile => $o{logfile},
		fixtures => $o{fixtures},
		group_size => $o{group_size} // 25,
		guard_timeout => $o{guard_timeout} // '20s',
		log => $o{log} // sub { print STDERR "$_[0]\n" },
		dbseq => 0,
	}, $class;
	return $self;
}

sub connect_db
{
	my ($self, $db, %opt) = @_;
	my $dsn = "dbi:Pg:dbname=$db;host=$self->{host};port=$self->{port}";
	$dsn .= ";options='-c statement_timeout=$self->{guard_timeout}'" unless $opt{no_guard};
	my $dbh = DBI->connect($dsn, '', '',
		{ AutoCommit => 1, RaiseError => 0, PrintError => 0, PrintWarn => 1, pg_server_prepare => 0,
		  pg_errorlevel => 2 });
	return $dbh;
}

# Connect, retrying while the server recovers from a crash (up to $secs).
sub connect_wait
{
	my ($self, $db, $secs) = @_;
	my $t0 = time();
	while (1)
	{
		my $dbh = $self->connect_db($db);
		return $dbh if $dbh;
		# only a server starting up (57P03) or not answering yet is waited for
		return undef if time() - $t0 > $secs
		  || ($DBI::errstr // '') !~ /starting up|recovery|Connection refused|No such file|shutting down|terminating/;
		usleep(100_000);
	}
}

# Run one statement; returns {ok, state, msg, lost, warnings}.  Messages
# are verbose (SQLSTATE and LOCATION).
sub exec_sql
{
	my ($dbh, $sql) = @_;
	return { ok => 0, state => 'no connection', msg => 'no connection', lost => 1 } unless $dbh;
	my @w;
	local $SIG{__WARN__} = sub { push @w, $_[0] };
	my $rv = $dbh->do($sql);
	return { ok => 1, warnings => \@w } if defined $rv;
	my $state = $dbh->state // '';
	my $msg = $dbh->errstr // '';
	my $lost = $dbh->pg_ping < 0 ? 1 : 0;
	$state = 'connection lost' if $lost && ($state eq '' || $state =~ /^(S8006|08)/);
	$msg =~ s/\s+$//;
	return { ok => 0, state => $state, msg => $msg, lost => $lost, warnings => \@w };
}

sub admin_value
{
	my ($self, $sql) = @_;
	my $r = $self->{admin} ? $self->{admin}->selectrow_array($sql) : undef;
	return $r;
}

# Set up the template database and the admin connection.
sub prepare
{
	my ($self) = @_;
	my $pg = $self->connect_wait('postgres', 30) or die "cannot connect: $DBI::errstr";
	open(my $fh, '<', $self->{fixtures}) or die "$self->{fixtures}: $!";
	my $fix = do { local $/; <$fh> };
	close $fh;
	# what an interrupted run left
	for my $d (@{ $pg->selectcol_arrayref(q{SELECT datname FROM pg_database WHERE datname LIKE 'fz\\_%'}) })
	{
		$pg->do(qq{DROP DATABASE "$d" WITH (FORCE)}) or die $pg->errstr;
	}
	$pg->do('CREATE DATABASE fz_template') or die $pg->errstr;
	my $t = $self->connect_db('fz_template') or die $DBI::errstr;
	$t->do('CREATE EXTENSION event_sourcing') or die $t->errstr;
	$t->do($fix) or die "fixtures: " . $t->errstr;
	$t->disconnect;
	$pg->disconnect;
	$self->reconnect_admin;
	$self->{start_time} = $self->admin_value('SELECT pg_postmaster_start_time()');
	return;
}

sub reconnect_admin
{
	my ($self) = @_;
	$self->{admin} = $self->connect_wait('postgres', 60)
	  or die "server does not come back: $DBI::errstr";
	return;
}

sub logpos
{
	my ($self) = @_;
	return $self->{logfile} ? (-s $self->{logfile} // 0) : 0;
}

sub log_since
{
	my ($self, $pos) = @_;
	return '' unless $self->{logfile};
	open(my $fh, '<', $self->{logfile}) or return '';
	seek($fh, $pos, 0);
	local $/;
	my $s = <$fh> // '';
	close $fh;
	return $s;
}

# A database for a case: its own one (fresh) or the current group's.
sub case_db
{
	my ($self, $c) = @_;
	my $admin = $self->{admin};
	if ($c->{fresh} || !$self->{group_db} || $self->{group_left} <= 0)
	{
		$self->{observer}->disconnect if $self->{observer};
		delete $self->{observer};
		if ($c->{fresh})
		{
			# drop the previous fresh database
			if ($self->{fresh_db})
			{
				$admin->do("DROP DATABASE IF EXISTS $self->{fresh_db} WITH (FORCE)");
				delete $self->{fresh_db};
			}
		}
		elsif ($self->{group_db})
		{
			$admin->do("DROP DATABASE IF EXISTS $self->{group_db} WITH (FORCE)");
		}
		my $name = sprintf('fz_%s_%d', $c->{fresh} ? 'case' : 'group', ++$self->{dbseq});
		$admin->do("CREATE DATABASE $name TEMPLATE fz_template")
		  or die "CREATE DATABASE $name: " . $admin->errstr;
		if ($c->{fresh})
		{
			$self->{fresh_db} = $name;
		}
		else
		{
			$self->{group_db} = $name;
			$self->{group_left} = $self->{group_size};
		}
	}
	$self->{group_left}-- unless $c->{fresh};
	return $c->{fresh} ? $self->{fresh_db} : $self->{group_db};
}

# The SQL that reproduces a case, for reports.
sub repro
{
	my ($c) = @_;
	my @s = @{ $c->{setup} };
	my @pre = $c->{timeout} ? ("SET statement_timeout = '$c->{timeout}ms'") : ();
	my $call = $c->{call};
	my $txt = join('', map { "$_;\n" } @s, @pre);
	if ($c->{wrap} eq 'txn')
	{
		$txt .= "BEGIN;\nSAVEPOINT fz;\n$call;\n-- on error: ROLLBACK TO SAVEPOINT fz;\nSELECT 1;\nCOMMIT;\n";
	}
	else
	{
		$txt .= "$call;\nSELECT 1;\nROLLBACK;\n";
	}
	return $txt;
}

# Shorten long SQL for the report (repeat('x', 100000) literals are fine,
# but literal JSON of 1000 brackets is not).
sub shorten
{
	my ($s) = @_;
	$s =~ s/([\[\]\{\}"a:]{40})[\[\]\{\}"a:1]{200,}/$1.../g;
	return length($s) > 4000 ? substr($s, 0, 4000) . '...' : $s;
}

# run_case($c): run one case and check it; returns the list of findings
# (each {check, state, msg, step}).
sub run_case
{
	my ($self, $c) = @_;
	my @f;
	my $t0 = time();
	my $db = $self->case_db($c);
	my $logpos = $self->logpos;
	my $s = $self->connect_db($db);
	unless ($s)
	{
		push @f, { check => 'alive', step => 'connect', state => '', msg => "cannot connect to $db: $DBI::errstr" };
		return @f;
	}
	my $failed_step;

	# setup: every statement must succeed or fail specifically
	for my $sql (@{ $c->{setup} })
	{
		my $r = exec_sql($s, $sql);
		next if $r->{ok};
		$failed_step = { step => 'setup', sql => $sql, %$r };
		last;
	}

	my ($before, $gucs_before, $r);
	unless ($failed_step)
	{
		exec_sql($s, "SET statement_timeout = '$c->{timeout}ms'") if $c->{timeout};
		$before = state_of($self, $db);
		$gucs_before = $s->selectrow_array($GUC_SQL);
		if ($c->{wrap} eq 'txn')
		{
			exec_sql($s, 'BEGIN');
			exec_sql($s, 'SAVEPOINT fz');
		}
		$r = exec_sql($s, $c->{call});
		$failed_step = { step => 'call', sql => $c->{call}, %$r } unless $r->{ok};
	}

	# (4) the session: usable after the failure
	if ($failed_step && !$failed_step->{lost})
	{
		my @probe = $c->{wrap} eq 'txn' && $failed_step->{step} eq 'call'
		  ? ('ROLLBACK TO SAVEPOINT fz', 'SELECT 1', 'COMMIT', 'SELECT 1')
		  : ('SELECT 1', 'ROLLBACK', 'SELECT 1');
		for my $p (@probe)
		{
			my $pr = exec_sql($s, $p);
			next if $pr->{ok};
			push @f, { check => 'session', step => "$p after the failure", state => $pr->{state}, msg => $pr->{msg} };
			# and whether the way out works
			my $rb = exec_sql($s, 'ROLLBACK');
			push @f, { check => 'session', step => 'ROLLBACK after that', state => $rb->{state}, msg => $rb->{msg} }
			  unless $rb->{ok};
			last;
		}
	}
	elsif (!$failed_step && $c->{wrap} eq 'txn')
	{
		my $pr = exec_sql($s, 'COMMIT');
		push @f, { check => 'session', step => 'COMMIT after the call', state => $pr->{state}, msg => $pr->{msg} }
		  unless $pr->{ok};
	}

	# (1) the server: alive, not restarted.  A crash ends every backend,
	# the admin connection included, but not at once: after a lost
	# connection, look for a while.
	my $crashed = 0;
	# (a backend ended by FATAL is no crash: its message says so)
	my $lost = ($failed_step && $failed_step->{lost} && $failed_step->{msg} !~ /FATAL/)
	  || (!$failed_step && (!$s || $s->pg_ping < 0));
	my $deadline = time() + ($lost ? 3 : 0);
	my ($admin_ok, $log);
	while (1)
	{
		$admin_ok = $self->{admin} && defined $self->{admin}->selectrow_array('SELECT 1');
		$log = $self->log_since($logpos);
		last if !$admin_ok || $log =~ $CRASH_RE || time() >= $deadline;
		usleep(100_000);
	}
	if (!$admin_ok || $log =~ $CRASH_RE)
	{
		$crashed = 1;
		my ($line) = $log =~ /^(.*$CRASH_RE.*)$/m;
		push @f, { check => 'alive', step => 'server', state => 'crash',
			msg => 'the server restarted' . ($line ? ": $line" : '') };
		$self->reconnect_admin;
		$self->{start_time} = $self->admin_value('SELECT pg_postmaster_start_time()');
	}
	else
	{
		my $st = $self->admin_value('SELECT pg_postmaster_start_time()');
		if (!defined $st || $st ne $self->{start_time})
		{
			push @f, { check => 'alive', step => 'server', state => 'restart',
				msg => "pg_postmaster_start_time changed: $self->{start_time} -> " . ($st // 'none') };
			$self->{start_time} = $st;
		}
		my $n = $self->connect_db('postgres');
		my $one = $n ? $n->selectrow_array('SELECT 1') : undef;
		push @f, { check => 'alive', step => 'new connection', state => '', msg => 'a new connection does not answer SELECT 1' }
		  unless defined $one && $one == 1;
		$n->disconnect if $n;
	}

	# (2) the SQLSTATE
	if ($failed_step && !$crashed)
	{
		my $st = $failed_step->{state};
		if ($failed_step->{lost})
		{
			push @f, { check => 'sqlstate', step => $failed_step->{step}, state => 'connection lost', msg => $failed_step->{msg}, sql => $failed_step->{sql} };
		}
		elsif ($st eq 'XX000' && !(($c->{raises} // '') eq 'XX000' && $failed_step->{msg} =~ /fuzz-raised XX000/))
		{
			push @f, { check => 'sqlstate', step => $failed_step->{step}, state => $st, msg => $failed_step->{msg}, sql => $failed_step->{sql} };
		}
	}

	# (2) also for an error a call reports as a WARNING (an async projection's
	# poison event carries its handler's SQLSTATE)
	for my $w (@{ $r ? $r->{warnings} // [] : [] })
	{
		next unless $w =~ /^WARNING:\s+XX000:/ && $w !~ /fuzz-raised XX000/;
		$w =~ s/\s+$//;
		push @f, { check => 'sqlstate', step => 'call (its WARNING)', state => 'XX000', msg => $w, sql => $c->{call} };
	}

	# (3) unchanged after a failed call; (5) session settings unchanged
	if (!$crashed && defined $before)
	{
		my $s2 = ($s && $s->pg_ping > 0) ? $s : undef;
		if ($failed_step)
		{
			my $after = state_of($self, $db);
			if (!defined $after)
			{
				push @f, { check => 'unchanged', step => 'state', state => '', msg => 'cannot read the state after the call' };
			}
			elsif ($after ne $before)
			{
				push @f, { check => 'unchanged', step => 'state', state => $failed_step->{state},
					msg => "the failed call changed the database:\n  before: $before\n  after:  $after" };
			}
		}
		if ($s2)
		{
			my $g = $s2->selectrow_array($GUC_SQL);
			if (defined $g && $g ne $gucs_before)
			{
				push @f, { check => 'settings', step => 'call', state => $failed_step ? $failed_step->{state} : 'ok',
					msg => "session settings changed by the call:\n  before: $gucs_before\n  after:  $g" };
			}
		}
	}
	$s->disconnect if $s && $s->pg_ping > 0;
	if (!$c->{fresh} && !$crashed)
	{
		# the next case of the group starts without this one's projections
		my $o = $self->{observer};
		$o->do('SELECT es_drop_projection(name) FROM es_projection_defs')
		  if $o && $o->{pg_db} eq $db && $o->pg_ping > 0;
	}
	$c->{seconds} = time() - $t0;
	$c->{outcome} = $failed_step ? "$failed_step->{step} failed $failed_step->{state}" : 'ok';
	$c->{error} = $failed_step->{msg} if $failed_step;
	return @f;
}

# The checked state, read by an observer session of $db (so that the case
# session's settings and transaction state do not matter).
sub state_of
{
	my ($self, $db) = @_;
	my $o = $self->{observer};
	unless ($o && $o->{pg_db} eq $db && $o->pg_ping > 0)
	{
		$o->disconnect if $o;
		$o = $self->{observer} = $self->connect_db($db) or return undef;
	}
	return scalar $o->selectrow_array($STATE_SQL);
}

# report($seed, $case, @findings): what a failing case prints.
sub report
{
	my ($seed, $c, @f) = @_;
	my $out = "case $c->{id} (seed $seed, $c->{kind}: $c->{what}, $c->{wrap})\n";
	$out .= "  call outcome: $c->{outcome}" . (defined $c->{error} ? "\n  error: $c->{error}" : '') . "\n";
	for my $f (@f)
	{
		$out .= "  FAILED check '$f->{check}'" . ($f->{class} ? " [$f->{class}]" : '')
		  . " at $f->{step}: SQLSTATE $f->{state}\n    $f->{msg}\n";
		$out .= "    statement: " . shorten($f->{sql}) . "\n" if $f->{sql};
	}
	$out .= "  reproduce (in a database with the extension and test/fuzz/fixtures.sql):\n";
	$out .= join('', map { "    $_\n" } split /\n/, shorten(repro($c)));
	return $out;
}

sub cleanup
{
	my ($self) = @_;
	my $admin = $self->{admin} or return;
	$self->{observer}->disconnect if $self->{observer};
	for my $db (grep { defined } $self->{fresh_db}, $self->{group_db})
	{
		$admin->do("DROP DATABASE IF EXISTS $db WITH (FORCE)");
	}
	$admin->do('DROP DATABASE IF EXISTS fz_template');
	$admin->disconnect;
	return;
}

1;
