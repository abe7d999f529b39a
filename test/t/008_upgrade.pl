# Copyright: event_sourcing contributors
#
# 008_upgrade.pl
#	  ALTER EXTENSION event_sourcing UPDATE from 1.0 (through 1.1 and 1.2)
#	  to 1.5 gives the same extension as CREATE EXTENSION at 1.5, keeps the 1.0
#	  data, and leaves projections working; the library serves a 1.0
#	  schema until then.
#
#	  One node, the library preloaded (background worker for database old).
#	  - Database old: CREATE EXTENSION event_sourcing VERSION '1.0' (schema
#		es), then, with the 1.1 library: single and batch appends, a
#		rolled-back append, an upcaster, an aggregate with snapshots,
#		es_execute, every read function and es_wait work; the 1.1 objects
#		are absent, the projection C functions refuse with 55000, and the
#		worker for old idles without an error.
#	  - pg_extension_update_paths lists 1.0 -> 1.1 (and no way back);
#		ALTER EXTENSION event_sourcing UPDATE TO '1.1', in a session that
#		used the library at 1.0, while another such session stays open.
#	  - Database fresh: CREATE EXTENSION event_sourcing (1.1).
#	  - The extension's objects in old and fresh are compared two ways, and
#		must be identical:
#		1. a catalog listing: every member (pg_describe_object), every
#		   function's full definition, owner, ACL and comment, every
#		   relation's kind, ACL, comment, columns in order (type, collation,
#		   NOT NULL, default), constraints, indexes, triggers with tgenabled,
#		   view definitions, sequence parameters, the pg_extension row,
#		   extconfig/extcondition in order, and pg_init_privs;
#		2. pg_dump --binary-upgrade --schema-only (which dumps every member
#		   object one by one), with OIDs, xids and sequence values
#		   normalized away.
#		Negative controls: copies of fresh with one change each (trigger
#		enabled ORIGIN instead of ALWAYS, a grant to PUBLIC, a volatility, a
#		config table dropped from the extension) differ from fresh under both
#		comparisons.
#	  - Database granted: es_execute(text, jsonb) granted to a role at 1.4;
#		after the update the role may execute the new es_execute, its
#		pg_init_privs are a fresh install's, and pg_dump dumps the grant.
#	  - In old after the update: every 1.0 row (events, aggregates,
#		snapshots, upcasters, sequences) is unchanged; an inline projection
#		is dispatched once per new append (also for the session opened
#		before the update), its rebuild replays the 1.0 history upcast; an
#		async projection run by es_projection_run applies the whole log once;
#		another one is driven by the background worker, to the head and
#		again after new appends.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/008_upgrade.pl

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $node = es_node(
	'upgrade', qq{
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_idle_interval = 100
event_sourcing.worker_retry_interval = 500
event_sourcing.worker_restart_interval = 500
log_statement = none
});

my $tempdir = PostgreSQL::Test::Utils::tempdir;

# Errors, fatal errors and crashes in the server log since $log_offset,
# other than those of this script's own sessions (log_line_prefix shows
# their application_name, the script's name).
my $log_offset = 0;
sub server_errors
{
	return grep { /\b(ERROR|FATAL|PANIC):|terminated by signal/ && !/008_upgrade\.pl/ }
	  split /\n/, slurp_file($node->logfile, $log_offset);
}

$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

#
# old: version 1.0, used with the 1.1 library.
#
$node->safe_psql(
	'old', q{
CREATE SCHEMA es;
CREATE EXTENSION event_sourcing VERSION '1.0' SCHEMA es;
});
is( $node->safe_psql(
		'old', q{SELECT extversion FROM pg_extension WHERE extname = 'event_sourcing'}),
	'1.0', 'old: version 1.0 installed');
is( $node->safe_psql(
		'old', q{
SELECT to_regclass('es.es_projection_defs') IS NULL
   AND to_regclass('es.es_dead_letters') IS NULL
   AND to_regclass('es.es_projections') IS NULL
   AND to_regprocedure('es.es_define_projection(text,regprocedure,text[],text,regprocedure)') IS NULL
   AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'es_events_inline_projections')}),
	't', 'old: none of the 1.1 objects exists at 1.0');

# Start the worker for old now: at 1.0 it must idle without errors.
$log_offset = -s $node->logfile;
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET event_sourcing.worker_databases = 'old'; SELECT pg_reload_conf()});
$node->wait_for_log(qr/event_sourcing worker started for database "old"/, $log_offset);

# The application side: user objects in schema app.
$node->safe_psql(
	'old', q{
CREATE SCHEMA app;
-- upcaster: MoneyDeposited schema 1 has "amt", schema 2 "amount"
CREATE FUNCTION app.deposit_v2(data jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$ SELECT (data - 'amt') || jsonb_build_object('amount', data->'amt') $$;
CREATE FUNCTION app.evolve(state jsonb, e es.es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE e.event_type
        WHEN 'AccountOpened' THEN jsonb_build_object('owner', e.data->'owner', 'balance', 0, 'n', 1)
        WHEN 'MoneyDeposited' THEN state || jsonb_build_object(
            'balance', (state->>'balance')::numeric + (e.data->>'amount')::numeric,
            'n', (state->>'n')::int + 1)
        WHEN 'MoneyWithdrawn' THEN state || jsonb_build_object(
            'balance', (state->>'balance')::numeric - (e.data->>'amount')::numeric,
            'n', (state->>'n')::int + 1)
        ELSE state END
$$;
CREATE FUNCTION app.decide(state jsonb, command jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_array(jsonb_build_object('type', 'MoneyWithdrawn',
                                                'data', jsonb_build_object('amount', command->'amount')))
$$;
});

# Appends at 1.0: single, batch, with metadata and ids; a rolled-back one.
is( $node->safe_psql(
		'old', q{
SELECT es.es_append('account-1', 0, 'AccountOpened', '{"owner": "ann"}');
SELECT es.es_append('account-1', 1, '[{"type": "MoneyDeposited", "data": {"amt": 100}},
                                      {"type": "MoneyDeposited", "data": {"amt": 20}, "metadata": {"actor": "atm"}}]');
SELECT es.es_append('account-2', NULL, 'AccountOpened', '{"owner": "Zoë ✓"}', '{"k": "v"}',
                    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
SELECT es.es_append('order-1', 0, 'OrderPlaced', '{"sku": "A"}');
}),
	"1\n3\n1\n1",
	'old at 1.0: single and batch appends');
$node->safe_psql('old',
	q{BEGIN; SELECT es.es_append('account-1', NULL, 'MoneyDeposited', '{"amt": 999}'); ROLLBACK;});
is( $node->safe_psql(
		'old', q{SELECT es.es_append('account-2', 1, 'MoneyDeposited', '{"amt": 5}')}),
	'2', 'old at 1.0: append after a rolled-back one');

# Upcaster, aggregate (snapshot every 2 events), es_execute.
$node->safe_psql(
	'old', q{
SELECT es.es_define_upcaster('MoneyDeposited', 1, 'app.deposit_v2(jsonb)');
SELECT es.es_define_aggregate('account', 'app.evolve(jsonb, es.es_events)', '{}',
                              'app.decide(jsonb, jsonb)', 2);
});
is( $node->safe_psql(
		'old', q{SELECT version || ' ' || state FROM es.es_aggregate('account-1')}),
	'3 {"n": 3, "owner": "ann", "balance": 120}',
	'old at 1.0: es_aggregate folds the upcast events');
is($node->safe_psql('old', q{SELECT es.es_execute('account-1', '{"amount": 7}')}),
	'4', 'old at 1.0: es_execute appends the decided event');
is( $node->safe_psql(
		'old', q{SELECT version || ' ' || state FROM es.es_aggregate('account-1')}),
	'4 {"n": 4, "owner": "ann", "balance": 113}',
	'old at 1.0: es_aggregate after es_execute');
$node->safe_psql('old',
	q{SELECT es.es_snapshot_save('order-1', 1, '{"placed": true}')});
cmp_ok($node->safe_psql('old', 'SELECT count(*) FROM es.es_snapshots'),
	'>=', 2, 'old at 1.0: snapshots saved (by es_aggregate and es_snapshot_save)');

# The read functions.
is( $node->safe_psql(
		'old', q{SELECT string_agg(stream_version || ':' || event_type || ':' || data, ' ' ORDER BY stream_version)
		         FROM es.es_load('account-1')}),
	'1:AccountOpened:{"owner": "ann"} 2:MoneyDeposited:{"amount": 100} '
	  . '3:MoneyDeposited:{"amount": 20} 4:MoneyWithdrawn:{"amount": 7}',
	'old at 1.0: es_load, upcast');
is($node->safe_psql('old', q{SELECT es.es_stream_version('account-2')}),
	'2', 'old at 1.0: es_stream_version');
is( $node->safe_psql(
		'old', q{SELECT string_agg(global_position::text, ',') FROM es.es_read_all(0, 100)}),
	'1,2,3,4,5,7,8', 'old at 1.0: es_read_all (position 6 rolled back)');
is( $node->safe_psql(
		'old', q{SELECT string_agg(global_position::text, ',') FROM es.es_read_category('account', 0, 100)}),
	'1,2,3,4,7,8', 'old at 1.0: es_read_category');
is($node->safe_psql('old', q{SELECT es.es_safe_position()}),
	'8', 'old at 1.0: es_safe_position');
is($node->safe_psql('old', q{SELECT es.es_wait(0, 100)}),
	'8', 'old at 1.0: es_wait returns the safe position');

# The projection entry points of the library refuse a 1.0 schema.
$node->safe_psql(
	'old', q{
CREATE FUNCTION app.c_projection_run(text, integer) RETURNS bigint
    AS '$libdir/event_sourcing', 'es_projection_run' LANGUAGE C;
CREATE FUNCTION app.c_define_projection(text, regprocedure, text[], text, regprocedure) RETURNS void
    AS '$libdir/event_sourcing', 'es_define_projection' LANGUAGE C;
CREATE FUNCTION app.noop(e es.es_events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
});
fails_with($node, 'old', q{SELECT app.c_projection_run(NULL, 10)},
	'55000', 'old at 1.0: es_projection_run (C) refuses with 55000');
fails_with($node, 'old',
	q{SELECT app.c_define_projection('p', 'app.noop(es.es_events)', NULL, 'inline', NULL)},
	'55000', 'old at 1.0: es_define_projection (C) refuses with 55000');
$node->safe_psql('old', q{DROP FUNCTION app.c_projection_run, app.c_define_projection});

# The worker idled through all of this without an error.
ok( $node->poll_query_until(
		'old', q{SELECT count(*) > 0 FROM pg_stat_activity
		         WHERE backend_type = 'event_sourcing worker' AND datname = 'old'}),
	'old at 1.0: the worker for old is running');
sleep(1);    # several idle intervals
is(join("\n", server_errors()), '', 'old at 1.0: the worker logged no error');

# What 1.0 stored, to compare after the update (the columns 1.0 has: 1.2
# adds owner and search_path).
my %data_sql = (
	es_events => q{SELECT e::text FROM es.es_events e ORDER BY global_position},
	es_aggregates => q{SELECT (a.category, a.evolve, a.initial_state, a.decide, a.snapshot_every,
	                           a.definition_id, a.defined_at)::text
	                     FROM es.es_aggregates a ORDER BY category},
	es_snapshots =>
	  q{SELECT (s.stream_id, s.version, s.fingerprint, s.state, s.created_at)::text
	      FROM es.es_snapshots s ORDER BY stream_id, fingerprint, version},
	es_upcasters => q{SELECT (u.event_type, u.from_schema, u.upcast, u.to_type, u.defined_at)::text
	                    FROM es.es_upcasters u ORDER BY 1},
	position_seq =>
	  q{SELECT last_value || '/' || is_called FROM es.es_events_global_position_seq},
	aggregate_seq =>
	  q{SELECT last_value || '/' || is_called FROM es.es_aggregate_definition_seq},
	es_load => q{SELECT e::text FROM es.es_load('account-1') e});
my %before = map { $_ => $node->safe_psql('old', $data_sql{$_}) } sort keys %data_sql;
is(scalar(grep { $before{$_} eq '' } keys %before), 0, 'old at 1.0: every compared table has rows');

#
# The update.
#
is( $node->safe_psql(
		'old', q{SELECT coalesce(path, 'none') FROM pg_extension_update_paths('event_sourcing')
		         WHERE source = '1.0' AND target = '1.1'}),
	'1.0--1.1', 'pg_extension_update_paths lists 1.0 -> 1.1');
is( $node->safe_psql(
		'old', q{SELECT coalesce(path, 'none') FROM pg_extension_update_paths('event_sourcing')
		         WHERE source = '1.1' AND target = '1.0'}),
	'none', 'and no path back from 1.1 to 1.0');
is( $node->safe_psql(
		'old', q{SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions
		         WHERE name = 'event_sourcing'}),
	'1.0,1.1,1.2,1.3,1.4,1.5', 'versions 1.0 to 1.5 are available');
is( $node->safe_psql(
		'old', q{SELECT default_version || '/' || installed_version FROM pg_available_extensions
		         WHERE name = 'event_sourcing'}),
	'1.5/1.0', 'default version 1.5, 1.0 installed in old');
is( $node->safe_psql(
		'old', q{SELECT coalesce(path, 'none') FROM pg_extension_update_paths('event_sourcing')
		         WHERE source = '1.0' AND target = '1.5'}),
	'1.0--1.1--1.2--1.3--1.4--1.5', 'pg_extension_update_paths lists 1.0 -> 1.1 -> 1.2 -> 1.3 -> 1.4 -> 1.5');

# A session that used the library at 1.0 and stays open across the update.
my $early = $node->background_psql('old');
is($early->query_safe(q{SELECT es.es_append('account-3', 0, 'AccountOpened', '{"owner": "early"}')}),
	'1', 'early session appends at 1.0');

# The update, in a session that appends first (its catalog cache is built
# at 1.0), then defines a projection and appends again.
is( $node->safe_psql(
		'old', q{
SELECT es.es_append('order-1', 1, 'OrderPaid', '{}');
ALTER EXTENSION event_sourcing UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'event_sourcing';
CREATE TABLE app.deposits (global_position bigint, stream_id text, amount numeric);
CREATE FUNCTION app.deposits_apply(e es.es_events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO app.deposits VALUES (e.global_position, e.stream_id, (e.data->>'amount')::numeric) $$;
CREATE FUNCTION app.deposits_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM app.deposits $$;
SELECT es.es_define_projection('deposits', 'app.deposits_apply(es.es_events)',
                               ARRAY['MoneyDeposited'], reset => 'app.deposits_reset()');
SELECT es.es_append('account-2', 2, 'MoneyDeposited', '{"amount": 1}');
SELECT string_agg(global_position || ':' || amount, ',') FROM app.deposits;
}),
	"2\n1.5\n\n3\n11:1",
	'ALTER EXTENSION UPDATE (1.0 -> 1.5); in the same session an inline projection is dispatched');

# 1.0 definitions get the owner of their function and PostgreSQL's default
# search_path; their callbacks run as that owner from now on
is( $node->safe_psql(
		'old', q{SELECT string_agg(DISTINCT owner::text || ' ' || search_path, ',') FROM (
		           SELECT owner, search_path FROM es.es_aggregates UNION ALL
		           SELECT owner, search_path FROM es.es_upcasters) d}),
	$node->safe_psql('old', q{SELECT current_user}) . ' "$user", public, pg_temp',
	'1.0 aggregates and upcasters: owned by their functions\' owner, default search_path');

#
# fresh: CREATE EXTENSION at the default version.
#
$node->safe_psql(
	'fresh', q{
CREATE SCHEMA es;
CREATE EXTENSION event_sourcing SCHEMA es;
});
is( $node->safe_psql(
		'fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'event_sourcing'}),
	'1.5', 'fresh: CREATE EXTENSION installs 1.5');

#
# The extension's objects, compared.
#
# 1. A catalog listing, one line per fact, sorted; no OIDs.
my $catalog_sql = q{
WITH ext AS (SELECT * FROM pg_extension WHERE extname = 'event_sourcing'),
members AS (
    SELECT d.classid, d.objid, d.objsubid
      FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (
    SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid)
SELECT line FROM (
    SELECT 'extension ' || concat_ws(' ', extname, extversion, extrelocatable,
                                     extnamespace::regnamespace, extowner::regrole) AS line
      FROM ext
    UNION ALL
    SELECT 'extconfig ' || c.ord || ' ' || c.rel::regclass || ' condition ' || quote_literal(coalesce(ext.extcondition[c.ord], '<null>'))
      FROM ext, unnest(ext.extconfig) WITH ORDINALITY AS c(rel, ord)
    UNION ALL
    SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM members
    UNION ALL
    SELECT 'init_privs ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text || ' ' || i.initprivs::text
      FROM pg_init_privs i JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure || ' owner ' || p.proowner::regrole
           || ' acl ' || coalesce(p.proacl::text, '<default>')
           || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '<none>')
           || E'\n' || pg_get_functiondef(p.oid)
      FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    SELECT 'relation ' || c.oid::regclass || ' ' || concat_ws(' ', c.relkind, c.relpersistence,
               c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.reloftype::regtype,
               c.reloptions::text, c.relowner::regrole, 'acl', coalesce(c.relacl::text, '<default>'),
               'type', c.reltype::regtype, 'comment', coalesce(obj_description(c.oid, 'pg_class'), '<none>'))
      FROM rels c
    UNION ALL
    SELECT 'column ' || c.oid::regclass || ' #' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
           || ' ' || concat_ws(' ', a.attname, format_type(a.atttypid, a.atttypmod),
                               'collation', a.attcollation::regcollation, 'notnull', a.attnotnull,
                               'default', pg_get_expr(ad.adbin, ad.adrelid), 'identity', a.attidentity,
                               'generated', a.attgenerated, 'acl', a.attacl::text,
                               'comment', col_description(c.oid, a.attnum))
      FROM rels c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'constraint ' || c.oid::regclass || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
           || ' deferrable ' || k.condeferrable || ' validated ' || k.convalidated
      FROM rels c JOIN pg_constraint k ON k.conrelid = c.oid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' valid ' || i.indisvalid
      FROM rels c JOIN pg_index i ON i.indrelid = c.oid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
      FROM rels c JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
    UNION ALL
    SELECT 'view ' || c.oid::regclass || E'\n' || pg_get_viewdef(c.oid)
      FROM rels c WHERE c.relkind = 'v'
    UNION ALL
    SELECT 'rule ' || pg_get_ruledef(r.oid)
      FROM rels c JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'policy ' || c.oid::regclass || ' ' || pol.polname
      FROM rels c JOIN pg_policy pol ON pol.polrelid = c.oid
    UNION ALL
    SELECT 'sequence ' || s.seqrelid::regclass || ' ' || concat_ws(' ', s.seqtypid::regtype, s.seqstart,
               s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
               'owned by', (SELECT pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
                              FROM pg_depend d
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                               AND d.deptype IN ('a', 'i')))
      FROM rels c JOIN pg_sequence s ON s.seqrelid = c.oid
) facts
ORDER BY line;
};

# 2. pg_dump --binary-upgrade --schema-only, normalized: no OIDs, relfilenodes,
#    xids, attribute LSNs, \restrict keys or sequence values; the extconfig
#    OIDs of binary_upgrade_create_empty_extension become relation names; the
#    dump's entries are compared in sorted order.
sub normalized_dump
{
	my ($db) = @_;
	my $file = "$tempdir/$db.binary_upgrade.sql";
	$node->command_ok(
		[
			'pg_dump', '--binary-upgrade', '--schema-only',
			'--exclude-schema=app', '-f', $file, '-d', $node->connstr($db)
		],
		"pg_dump --binary-upgrade --schema-only of $db");
	my %relname = map { split /\|/ } split /\n/,
	  $node->safe_psql($db,
		q{SELECT c::oid || '|' || c::regclass FROM pg_extension, unnest(extconfig) c
		   WHERE extname = 'event_sourcing'});
	my @out;
	for my $line (split /\n/, slurp_file($file))
	{
		next if $line =~ /^\\(un)?restrict /;
		next if $line =~ /binary_upgrade_set_next_/;
		next if $line =~ /pg_catalog\.setval\(/;
		# emitted once, before whichever table comes first
		next if $line =~ /^SET default_(tablespace|table_access_method) = /;
		next if $line eq '';
		$line =~ s/relfrozenxid = '\d+', relminmxid = '\d+'/relfrozenxid = X, relminmxid = X/;
		$line =~ s/^WHERE oid = '\d+';$/WHERE oid = X;/;
		if ($line =~ /binary_upgrade_create_empty_extension/)
		{
			$line =~ s/\b(\d{4,})\b/exists $relname{$1} ? $relname{$1} : $1/ge;
		}
		push @out, $line;
	}
	# pg_dump's order of the entries (it breaks ties by OID, and it sorts
	# around the dependencies of the user's objects too) is not compared:
	# the entries, each from its "-- Name:" header on, are sorted.
	my @entries = split /(?=^--\n-- Name: )/m, join("\n", @out) . "\n";
	return join('', sort @entries);
}

# The differences between two texts, as a short diff-like listing.
sub differences
{
	my ($a, $b) = @_;
	my %in_a = map { $_ => 1 } split /\n/, $a;
	my %in_b = map { $_ => 1 } split /\n/, $b;
	my @d = ((map { "- $_" } grep { !$in_b{$_} } split /\n/, $a),
		(map { "+ $_" } grep { !$in_a{$_} } split /\n/, $b));
	return join("\n", @d[ 0 .. ($#d < 40 ? $#d : 40) ]);
}

my $old_catalog   = $node->safe_psql('old',   $catalog_sql);
my $fresh_catalog = $node->safe_psql('fresh', $catalog_sql);
is($old_catalog, $fresh_catalog,
	'catalog listing of the extension: updated old = fresh 1.1')
  or diag(differences($old_catalog, $fresh_catalog));
# The listing covers what it claims to.
like($fresh_catalog, qr/^trigger CREATE TRIGGER es_events_inline_projections AFTER INSERT ON es\.es_events FOR EACH ROW EXECUTE FUNCTION es\._es_dispatch_inline\(\) enabled A$/m,
	'the listing shows the dispatch trigger with tgenabled');
like($fresh_catalog, qr/^extconfig \d+ es\.es_dead_letters condition ''$/m,
	'the listing shows the extconfig entries');
like($fresh_catalog, qr/^function es\.es_projection_run\(text,integer\) owner \S+ acl \{\S+\} /m,
	'the listing shows function ACLs');
like($fresh_catalog, qr/^column es\.es_projection_defs #12 updated_at timestamp with time zone/m,
	'the listing shows columns in order');
like($fresh_catalog, qr/^init_privs function es\.es_projection_run\(text,integer\) e /m,
	'the listing shows pg_init_privs');
my $members = () = $fresh_catalog =~ /^member /mg;
cmp_ok($members, '>=', 35, "the listing has every member ($members)");

my $old_dump   = normalized_dump('old');
my $fresh_dump = normalized_dump('fresh');
is($old_dump, $fresh_dump,
	'pg_dump --binary-upgrade --schema-only: updated old = fresh 1.1')
  or diag(differences($old_dump, $fresh_dump));
like($fresh_dump, qr/ALTER EXTENSION event_sourcing ADD FUNCTION es\.es_projection_rebuild\(name text\);/,
	'the binary-upgrade dump lists members one by one');
like($fresh_dump, qr/ENABLE ALWAYS TRIGGER es_events_inline_projections/,
	'the binary-upgrade dump shows ENABLE ALWAYS');

# Negative controls: one change each to a copy of fresh; both comparisons
# must see it.
my %controls = (
	ctl_trigger =>
	  q{ALTER TABLE es.es_events ENABLE TRIGGER es_events_inline_projections},
	ctl_acl => q{GRANT EXECUTE ON FUNCTION es.es_projection_run(text, integer) TO PUBLIC},
	ctl_volatility => q{ALTER FUNCTION es._es_projection_head() STABLE},
	ctl_config => q{ALTER EXTENSION event_sourcing DROP TABLE es.es_dead_letters});
for my $ctl (sort keys %controls)
{
	$node->safe_psql('postgres', "CREATE DATABASE $ctl TEMPLATE fresh");
	$node->safe_psql($ctl, $controls{$ctl});
	isnt($node->safe_psql($ctl, $catalog_sql),
		$fresh_catalog, "control $ctl: the catalog listing differs from fresh");
	isnt(normalized_dump($ctl), $fresh_dump,
		"control $ctl: the normalized binary-upgrade dump differs from fresh");
}

#
# old after the update: the 1.0 data is intact.
#
# (three events were appended around the update: es_events is compared up
# to position 8, the position sequence not at all)
$data_sql{es_events} =
  q{SELECT e::text FROM es.es_events e WHERE global_position <= 8 ORDER BY global_position};
delete $data_sql{position_seq};
for my $t (sort keys %data_sql)
{
	is($node->safe_psql('old', $data_sql{$t}),
		$before{$t}, "old after the update: $t unchanged");
}
is( $node->safe_psql(
		'old', q{SELECT version || ' ' || state FROM es.es_aggregate('account-1')}),
	'4 {"n": 4, "owner": "ann", "balance": 113}',
	'old after the update: es_aggregate as before');
is( $node->safe_psql(
		'old', q{SELECT string_agg(global_position || ':' || stream_id || ':' || event_type, ',' ORDER BY global_position)
		         FROM es.es_events WHERE global_position > 8}),
	'9:account-3:AccountOpened,10:order-1:OrderPaid,11:account-2:MoneyDeposited',
	'old after the update: the appends around the update follow the 1.0 events');

#
# Projections in old after the update.
#
# The session opened at 1.0: its next append is dispatched to the inline
# projection defined by the other session.
is($early->query_safe(q{SELECT es.es_append('account-3', 1, 'MoneyDeposited', '{"amount": 30}')}),
	'2', 'early session appends after the update');
is( $node->safe_psql(
		'old', q{SELECT string_agg(global_position || ':' || amount, ',' ORDER BY global_position) FROM app.deposits}),
	'11:1,12:30', 'the early session\'s append was dispatched, once');
$early->quit;

# Rebuild: the whole history, 1.0 events upcast.
is($node->safe_psql('old', q{SELECT es.es_projection_rebuild('deposits')}),
	'5', 'inline rebuild replays the 5 deposits, 1.0 ones included');
is( $node->safe_psql(
		'old', q{SELECT string_agg(global_position || ':' || stream_id || ':' || amount, ',' ORDER BY global_position)
		         FROM app.deposits}),
	'2:account-1:100,3:account-1:20,7:account-2:5,11:account-2:1,12:account-3:30',
	'the rebuilt read model holds every deposit once, with the upcast amount');

# New appends, single and batch, each dispatched once.
$node->safe_psql(
	'old', q{
SELECT es.es_append('account-1', 4, 'MoneyDeposited', '{"amount": 8}');
SELECT es.es_append('account-2', 3, '[{"type": "MoneyDeposited", "data": {"amount": 9}},
                                      {"type": "MoneyWithdrawn", "data": {"amount": 1}}]');
});
is( $node->safe_psql(
		'old', q{
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM app.deposits)
     = (SELECT array_agg(global_position ORDER BY global_position) FROM es.es_events
         WHERE event_type = 'MoneyDeposited')}),
	't', 'old: the inline read model holds each deposit exactly once');

# Async, run by hand: defined and run in one transaction (the worker cannot
# see it before the commit), it applies the whole log once.
$node->safe_psql(
	'old', q{
CREATE TABLE app.type_counts (event_type text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION app.type_counts_apply(e es.es_events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO app.type_counts AS t VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = t.n + 1 $$;
});
is( $node->safe_psql(
		'old', q{
BEGIN;
SELECT es.es_define_projection('by_hand', 'app.type_counts_apply(es.es_events)', mode => 'async');
SELECT es.es_projection_run('by_hand');
SELECT es.es_projection_run('by_hand');
COMMIT;
}),
	"\n14\n0", 'old: es_projection_run applies all 14 events, then nothing');
is( $node->safe_psql(
		'old', q{
SELECT count(*) FROM (SELECT event_type, count(*) AS n FROM es.es_events GROUP BY 1) l
  FULL JOIN app.type_counts t USING (event_type)
 WHERE t.n IS DISTINCT FROM l.n}),
	'0', 'old: the async read model counts each event once');
is( $node->safe_psql(
		'old', q{SELECT position || '/' || lag || '/' || status FROM es.es_projections WHERE name = 'by_hand'}),
	'15/0/running', 'old: es_projections shows by_hand at the head (position 15)');

# Async, driven by the worker for old.
$node->safe_psql(
	'old', q{
CREATE TABLE app.seen (global_position bigint PRIMARY KEY);
CREATE FUNCTION app.seen_apply(e es.es_events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO app.seen VALUES (e.global_position) $$;
SELECT es.es_define_projection('by_worker', 'app.seen_apply(es.es_events)', mode => 'async');
});
ok( $node->poll_query_until(
		'old', q{SELECT lag = 0 FROM es.es_projections WHERE name = 'by_worker'}),
	'old: the worker brings by_worker to the head');
is( $node->safe_psql(
		'old', q{SELECT (SELECT array_agg(global_position ORDER BY 1) FROM app.seen)
		              = (SELECT array_agg(global_position ORDER BY 1) FROM es.es_events)}),
	't', 'old: by_worker applied every event once');
$node->safe_psql('old', q{SELECT es.es_append('order-2', 0, 'OrderPlaced', '{}')});
ok( $node->poll_query_until(
		'old', q{SELECT count(*) = 15 FROM app.seen}),
	'old: the worker applies a new append');
is( $node->safe_psql(
		'old', q{SELECT position || '/' || lag || '/' || status FROM es.es_projections WHERE name = 'by_worker'}),
	'16/0/running', 'old: by_worker at the head, running');

# Grants that the update carries over stay the user's: es_execute(text,
# jsonb) granted to a role at 1.4 is granted on the new es_execute after
# the update, pg_init_privs holds what a fresh install has (no grant), and
# pg_dump therefore dumps the grant (a restore keeps it).
$node->safe_psql('postgres', 'CREATE ROLE regress_cmd NOLOGIN');
$node->safe_psql('postgres', 'CREATE DATABASE granted');
$node->safe_psql(
	'granted', q{
CREATE SCHEMA es;
CREATE EXTENSION event_sourcing VERSION '1.4' SCHEMA es;
GRANT USAGE ON SCHEMA es TO regress_cmd;
GRANT EXECUTE ON FUNCTION es.es_execute(text, jsonb) TO regress_cmd;
ALTER EXTENSION event_sourcing UPDATE;
});
is( $node->safe_psql(
		'granted',
		q{SELECT has_function_privilege('regress_cmd', 'es.es_execute(text, jsonb, bigint, uuid)', 'EXECUTE')}),
	't', 'granted: the 1.4 grant on es_execute carries over to the new es_execute');
my $init_privs = q{SELECT i.initprivs::text FROM pg_init_privs i
  WHERE i.objoid = 'es.es_execute(text, jsonb, bigint, uuid)'::regprocedure AND i.classoid = 'pg_proc'::regclass};
is($node->safe_psql('granted', $init_privs),
	$node->safe_psql('fresh', $init_privs),
	'granted: es_execute\'s initial privileges are a fresh install\'s (the grant is not one of them)');
my $granted_dump = "$tempdir/granted.sql";
$node->command_ok([ 'pg_dump', '--schema-only', '-f', $granted_dump, '-d', $node->connstr('granted') ],
	'pg_dump --schema-only of granted');
like(slurp_file($granted_dump),
	qr/^GRANT (ALL|EXECUTE) ON FUNCTION es\.es_execute\(stream_id text, command jsonb, expected_version bigint, command_id uuid\) TO regress_cmd;$/m,
	'granted: pg_dump dumps the carried-over grant');

is(join("\n", server_errors()), '', 'no server error, fatal error or crash but this script\'s own');

$node->stop;
done_testing();
