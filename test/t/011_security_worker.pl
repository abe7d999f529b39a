# Copyright: event_sourcing contributors
#
# 011_security_worker.pl
#	  The privilege model (README, "Privileges") where it matters most: the
#	  background worker connects as the bootstrap superuser and runs every
#	  async projection, so every user callback it calls (projection handler,
#	  upcaster) must run as its definition's owner, restricted, with the
#	  definition's search_path, and leave nothing in the worker's session.
#
#	  One node with a worker for database app; two non-superuser definers,
#	  mallory and alice, each with a schema of their own and the same
#	  EXECUTE grants.  Every callback records who ran it, with which
#	  search_path, in which process.
#
#	  1. mallory registers an upcaster for type Evil (an Evil event already
#		 stored at schema 1, so it is upcast on every read) and an async
#		 projection mallory_p on Evil.  Both callbacks become superuser
#		 (ALTER ROLE mallory SUPERUSER) when they find they run as one; the
#		 handler also plants a session setting (set_config(..., false)) and
#		 tries to create a temporary table.
#	  2. alice defines an async projection alice_p on every type whose
#		 handler records whether it sees mallory's setting or temporary
#		 table.
#	  3. Events appended in several transactions are applied by the worker:
#		 mallory's callbacks ran as mallory (never superuser), alice's as
#		 alice, each with the search_path of its definer plus pg_temp last;
#		 mallory's temporary table was refused (42501, security-restricted
#		 operation); alice never saw the planted setting nor the table.
#	  4. mallory's handler fails on a poison event: mallory_p is failed at
#		 that event, alice_p goes on past it, the worker process is the same.
#	  5. A superuser's es_load of the Evil stream runs the upcaster as
#		 mallory.
#
#	  Every check of 3 to 5 fails before 1.2, where the worker ran callbacks
#	  as itself (a superuser) in its own session.
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/011_security_worker.pl

use strict;
use warnings;

use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use EsTest;

my $t_start = time();

my $node = es_node(
	'security_worker', q{
log_statement = none
shared_preload_libraries = 'event_sourcing'
event_sourcing.worker_databases = 'app'
event_sourcing.worker_idle_interval = 100ms
event_sourcing.worker_retry_interval = 200ms
event_sourcing.worker_restart_interval = 200ms
});

$node->safe_psql('postgres', 'CREATE DATABASE app');

# Run $sql in app connected as $role (which must succeed); returns stdout.
sub as_role
{
	my ($role, $sql) = @_;
	return $node->safe_psql('app', $sql, extra_params => [ '-U', $role ]);
}

sub su
{
	my ($sql) = @_;
	return $node->safe_psql('app', $sql);
}

sub worker_pid
{
	return su(
		q{SELECT coalesce(string_agg(pid::text, ' '), '') FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing worker' AND datname = 'app'});
}

# Wait until projection $p has applied everything up to the head (lag 0)
# with status $status ('running' by default).
sub wait_projection
{
	my ($p, $status) = @_;
	$status //= 'running';
	return $node->poll_query_until('app',
		"SELECT lag = 0 AND status = '$status' FROM es_projections WHERE name = '$p'");
}

#
# Setup, as a superuser: the extension, the two roles and their grants.
#
su(q{
CREATE EXTENSION event_sourcing;
CREATE ROLE mallory LOGIN;
CREATE ROLE alice LOGIN;
GRANT EXECUTE ON FUNCTION
    es_define_upcaster(text, integer, regprocedure, text),
    es_define_projection(text, regprocedure, text[], text, regprocedure),
    es_drop_projection(text), es_projection_run(text, integer),
    es_projection_rebuild(text), es_projection_skip(text),
    es_append(text, bigint, text, jsonb, jsonb, uuid),
    es_append(text, bigint, jsonb),
    es_load(text, bigint, bigint), es_read_all(bigint, integer)
  TO mallory, alice;
CREATE SCHEMA mallory AUTHORIZATION mallory;
CREATE SCHEMA alice AUTHORIZATION alice;
});

ok($node->poll_query_until('app',
		q{SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'event_sourcing worker' AND datname = 'app'}),
	'setup: the worker of app runs');
my $worker = worker_pid();
is( su(q{SELECT rolsuper FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
		 WHERE a.pid = } . $worker),
	't',
	'setup: the worker is connected as a superuser');

# Three Evil events stored at schema 1, before mallory registers its
# upcaster: every read of them calls it (later ones are stored at schema 2).
su(q{SELECT es_append('evil-1', NULL, 'Evil', '{"n": 0}');
	 SELECT es_append('evil-1', NULL, 'Evil', '{"n": 1}');
	 SELECT es_append('evil-1', NULL, 'Evil', '{"n": 2}')});

#
# 1. mallory: an upcaster and an async projection, both hostile.  The
#	 callbacks qualify their tables, so that they run whatever search_path
#	 they get (before 1.2, the worker's): the checks then show who ran them
#	 and what they did, not a lookup error.
#
as_role('mallory', q{
CREATE TABLE mallory.calls (
  what text, who name, sess name, path text, super boolean, pid int,
  pos bigint, upcast text, planted text, temp_state text,
  at timestamptz DEFAULT clock_timestamp());

CREATE FUNCTION mallory.up(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    su boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    INSERT INTO mallory.calls (what, who, sess, path, super, pid)
    VALUES ('upcast', current_user, session_user,
            current_setting('search_path'), su, pg_backend_pid());
    IF su THEN
        ALTER ROLE mallory SUPERUSER;
    END IF;
    RETURN d || '{"up": true}';
END $$;

CREATE FUNCTION mallory.handle(e es_events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    su boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
    planted text;
    temp_state text := 'created';
BEGIN
    IF e.data ? 'poison' THEN
        RAISE EXCEPTION 'mallory: poison at %', e.global_position;
    END IF;
    BEGIN
        PERFORM set_config('myapp.planted', 'yes', false);
        planted := current_setting('myapp.planted', true);
    EXCEPTION WHEN OTHERS THEN
        planted := 'error ' || SQLSTATE;
    END;
    BEGIN
        CREATE TEMP TABLE planted (x int);
    EXCEPTION WHEN OTHERS THEN
        temp_state := SQLSTATE;
    END;
    INSERT INTO mallory.calls (what, who, sess, path, super, pid, pos, upcast, planted, temp_state)
    VALUES ('handler', current_user, session_user, current_setting('search_path'),
            su, pg_backend_pid(), e.global_position, e.data->>'up', planted, temp_state);
    IF su THEN
        ALTER ROLE mallory SUPERUSER;
    END IF;
END $$;

SET search_path = mallory, public;
SELECT es_define_upcaster('Evil', 1, 'mallory.up(jsonb)');
SELECT es_define_projection('mallory_p', 'mallory.handle(es_events)', ARRAY['Evil'], 'async');
});

#
# 2. alice: an async projection on every type, watching for what mallory
#	 could leave in the worker's session.
#
as_role('alice', q{
CREATE TABLE alice.seen (
  who name, path text, planted text, temp_table boolean, pid int,
  pos bigint, event_type text, upcast text,
  at timestamptz DEFAULT clock_timestamp());

CREATE FUNCTION alice.handle(e es_events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO alice.seen (who, path, planted, temp_table, pid, pos, event_type, upcast)
    VALUES (current_user, current_setting('search_path'),
            current_setting('myapp.planted', true),
            to_regclass('pg_temp.planted') IS NOT NULL,
            pg_backend_pid(), e.global_position, e.event_type, e.data->>'up');
END $$;

SET search_path = alice, public;
SELECT es_define_projection('alice_p', 'alice.handle(es_events)', NULL, 'async');
});

#
# 3. Events in several transactions, applied by the worker.
#
for my $i (1 .. 4)
{
	as_role('alice',
		qq{SELECT es_append('evil-1', NULL, 'Evil', '{"n": $i}');
		   SELECT es_append('order-$i', 0, 'Ordered', '{"n": $i}')});
	usleep(150_000);    # so that the worker applies them in several rounds
}
ok(wait_projection('mallory_p'), '3: the worker brought mallory_p to the head');
ok(wait_projection('alice_p'),   '3: the worker brought alice_p to the head');

my $n_evil = su(q{SELECT count(*) FROM es_events WHERE event_type = 'Evil'});
my $n_all  = su(q{SELECT count(*) FROM es_events});

is( su(q{SELECT count(*) FILTER (WHERE what = 'handler') || '|' ||
		 count(DISTINCT pos) FILTER (WHERE what = 'handler') || '|' ||
		 count(*) FILTER (WHERE what = 'handler' AND pid = } . $worker . q{)
		 FROM mallory.calls}),
	"$n_evil|$n_evil|$n_evil",
	'3: mallory_p applied every Evil event once, all in the worker');
is( su(q{SELECT count(*) || '|' || count(*) FILTER (WHERE pid = } . $worker . q{)
		 FROM alice.seen}),
	"$n_all|$n_all",
	'3: alice_p applied every event once, all in the worker');
cmp_ok(su(q{SELECT count(*) FROM mallory.calls WHERE what = 'upcast' AND pid = } . $worker),
	'>', 0, '3: the worker ran mallory\'s upcaster');
is( su(q{SELECT string_agg(coalesce(s.upcast, '-') || coalesce(c.upcast, '-'), ',' ORDER BY e.global_position)
		 FROM es_events e
		 JOIN alice.seen s ON s.pos = e.global_position
		 JOIN mallory.calls c ON c.what = 'handler' AND c.pos = e.global_position
		 WHERE e.event_type = 'Evil' AND e.schema_version = 1}),
	'truetrue,truetrue,truetrue',
	'3: both projections received the three Evil events of schema 1 upcast');

is( su(q{SELECT coalesce(string_agg(DISTINCT what || ':' || who || ':' || super, ' '), '')
		 FROM mallory.calls}),
	'handler:mallory:false upcast:mallory:false',
	'3: mallory\'s upcaster and handler ran as mallory, never as a superuser');
is(su(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', '3: mallory is not a superuser');
is( su(q{SELECT coalesce(string_agg(DISTINCT path, ' / '), '') FROM mallory.calls}),
	'mallory, public, pg_temp',
	'3: mallory\'s callbacks saw the search_path mallory defined them with, pg_temp last');
is( su(q{SELECT coalesce(string_agg(DISTINCT who || ':' || path, ' / '), '') FROM alice.seen}),
	'alice:alice, public, pg_temp',
	'3: alice\'s handler ran as alice with her search_path, pg_temp last');
is( su(q{SELECT coalesce(string_agg(DISTINCT planted || ':' || temp_state, ' '), '')
		 FROM mallory.calls WHERE what = 'handler'}),
	'yes:42501',
	'3: mallory\'s handler could set a setting for itself, but not create a temporary table (42501)');
is( su(q{SELECT count(*) FROM alice.seen WHERE coalesce(planted, '') <> '' OR temp_table}),
	'0',
	'3: alice\'s handler never saw the setting or the temporary table mallory\'s handler tried to leave'
);
cmp_ok(
	su(q{SELECT count(*) FROM alice.seen WHERE at >
		   (SELECT min(at) FROM mallory.calls WHERE what = 'handler')}),
	'>', 0,
	'3: (the check is not vacuous: alice_p applied events after mallory_p\'s handler had run)');

#
# 4. A poison event fails mallory_p only.
#
as_role('alice', q{SELECT es_append('evil-2', 0, 'Evil', '{"poison": true}')});
my $poison = su(q{SELECT global_position FROM es_events WHERE stream_id = 'evil-2'});
for my $i (5 .. 7)
{
	as_role('alice',
		qq{SELECT es_append('order-$i', 0, 'Ordered', '{"n": $i}')});
}
ok($node->poll_query_until('app',
		"SELECT status = 'failed' AND failed_position = $poison FROM es_projections WHERE name = 'mallory_p'"),
	'4: mallory_p is failed at the poison event');
ok(wait_projection('alice_p'), '4: alice_p went on past the poison event to the head');
is(su(qq{SELECT count(*) FROM alice.seen WHERE pos >= $poison}),
	'4', '4: alice_p applied the poison event and the three after it');
is(su(q{SELECT last_error FROM es_projections WHERE name = 'mallory_p'}) =~ /mallory: poison at $poison/
	  ? 'yes' : 'no',
	'yes', '4: last_error of mallory_p is the handler\'s error');
is(worker_pid(), $worker, '4: the worker process is the same');
is(su(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', '4: mallory is still not a superuser');

#
# 5. A superuser's es_load runs mallory's upcaster as mallory.
#
my $loaded = su(q{
SELECT string_agg(data->>'up', ',' ORDER BY stream_version) FROM es_load('evil-1');
SELECT coalesce(string_agg(DISTINCT who || ':' || sess || ':' || super, ' '), '')
  FROM mallory.calls WHERE what = 'upcast' AND pid = pg_backend_pid();
SELECT session_user;
});
my ($ups, $calls, $sess) = split /\n/, $loaded;
is($ups, 'true,true,true', '5: the superuser\'s es_load returns the Evil events of schema 1 upcast');
is($calls, "mallory:$sess:false",
	'5: the upcaster ran as mallory (not a superuser) in the superuser\'s session');
is(su(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}),
	'f', '5: mallory is still not a superuser');

note sprintf('total %.1f s', time() - $t_start);

done_testing();
