# Copyright: event_sourcing contributors
#
# 009_fuzz.pl
#	  The fuzz suite (test/fuzz/EsFuzz.pm; README, "Fuzzing"): cases
#	  generated from a seed over every public SQL function and every
#	  callback kind, each followed by the checks that the server is alive
#	  and did not restart, that a failure has a specific SQLSTATE (never
#	  XX000, never a lost connection), that a failed call changed nothing,
#	  that the session is usable afterwards and that its settings are
#	  unchanged.  One test per case; a failing one prints the case number,
#	  the check, the SQLSTATE and message, and the SQL that reproduces it.
#
#	  FUZZ_SEED=n    the seed (default: 20240601; the seed is printed)
#	  FUZZ_CASES=n   how many cases (default 480)
#	  FUZZ_LONG=1    a deeper run: 2000 cases
#	  FUZZ_ONLY=a,b  run only these case numbers (of the same seed)
#
#	  Run as a non-root user (initdb refuses root), e.g. from a copy of the
#	  tree owned by postgres, as scripts/test.sh does:
#	    make installcheck REGRESS= ISOLATION= PROVE_TESTS=test/t/009_fuzz.pl

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use lib "$FindBin::RealBin/../fuzz";
use EsTest;

BEGIN
{
	eval { require DBD::Pg; 1 }
	  or plan skip_all => 'DBD::Pg is not installed (scripts/deps.sh installs libdbd-pg-perl)';
}
use EsFuzz;

# ==========================================================================
# KNOWN DEFECTS: the classes of findings below were found in 1.1 and are
# fixed in 1.2; they now label regressions.  Every finding is labelled with
# the first class whose test matches it.
# A failing case all of whose findings belong to a class listed in
# @TOLERATED is reported as TODO (it does not fail the suite).  @TOLERATED
# is empty: everything is checked.  To keep a branch green until a fix
# lands, add the class name here, and remove it with the fix.
# ==========================================================================
my @TOLERATED = ();

my %KNOWN = (
	# es_function_fingerprint (callback.c) calls array_out through
	# DirectFunctionCall1 when the function has a SET clause: signal 11.
	'set-clause-crash' => sub {
		my ($c, $f) = @_;
		return $f->{check} eq 'alive' && ($c->{setc} // '') ne '';
	},
	# es_projection_run re-throws an error from its internal subtransaction
	# without ending it: the session is left in an aborted subtransaction
	# (25P02 afterwards; ROLLBACK ends the connection).
	'projection-run-dangling-subxact' => sub {
		my ($c, $f) = @_;
		return $c->{call} =~ /es_projection_run/
		  && ($f->{check} eq 'session' || ($f->{check} eq 'sqlstate' && $f->{state} eq 'connection lost'));
	},
	# SQL handlers run through SPI: a COMMIT, SAVEPOINT, COPY TO STDOUT ...
	# statement gives XX000 "SPI_ERROR_TRANSACTION" / "SPI_ERROR_COPY".
	'sql-handler-spi-error' => sub {
		my ($c, $f) = @_;
		return $f->{check} eq 'sqlstate' && $f->{state} eq 'XX000' && ($f->{msg} // '') =~ /SPI_ERROR/;
	},
	# Callbacks changing session settings (set_config(..., false), SET)
	# leak into the caller's session: no GUC nest level of their own.
	'callback-settings-leak' => sub {
		my ($c, $f) = @_;
		return $f->{check} eq 'settings';
	},
);
# ==========================================================================

my $seed = $ENV{FUZZ_SEED} // 20240601;
my $ncases = $ENV{FUZZ_CASES} // ($ENV{FUZZ_LONG} ? 2000 : 480);
my %only = map { $_ => 1 } grep { /^\d+$/ } split /,/, ($ENV{FUZZ_ONLY} // '');
diag("fuzz: FUZZ_SEED=$seed FUZZ_CASES=$ncases");

my $node = es_node(
	'fuzz', q{
restart_after_crash = on
log_statement = none
log_min_error_statement = panic
log_min_messages = warning
max_prepared_transactions = 0
});

my $fz = EsFuzz->new(
	host => $node->host,
	port => $node->port,
	logfile => $node->logfile,
	fixtures => "$FindBin::RealBin/../fuzz/fixtures.sql");
$fz->prepare;

my %tolerated = map { $_ => 1 } @TOLERATED;
my (%by_class, $t0);
$t0 = time;
for my $c (EsFuzz::generate($seed, $ncases))
{
	next if %only && !$only{ $c->{id} };
	my @f = $fz->run_case($c);
	my $name = "case $c->{id}: $c->{what} -> $c->{outcome}";
	for my $f (@f)
	{
		($f->{class}) = grep { $KNOWN{$_}->($c, $f) } sort keys %KNOWN;
		$f->{class} //= 'new';
		push @{ $by_class{"$f->{class}: $f->{check} $f->{state}"} }, $c->{id};
	}
	my $all_tolerated = @f && !grep { !$tolerated{ $_->{class} } } @f;
	local $TODO = $all_tolerated ? 'known defect: ' . join(', ', map { $_->{class} } @f) : undef;
	ok(!@f, $name) or diag(EsFuzz::report($seed, $c, @f));
}
diag(sprintf("fuzz: %d cases in %.0f s", scalar(%only ? keys %only : $ncases), time - $t0));
diag("fuzz: findings by class (class: check SQLSTATE: cases)\n"
	  . join('', map { "  $_: " . join(' ', @{ $by_class{$_} }) . "\n" } sort keys %by_class))
  if %by_class;

$fz->cleanup;
$node->stop('fast');
done_testing();
