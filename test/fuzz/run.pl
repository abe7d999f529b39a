#!/usr/bin/perl
# Copyright: event_sourcing contributors
#
# test/fuzz/run.pl
#	  Run the fuzz suite against an existing server (libpq environment:
#	  PGHOST, PGPORT; a superuser), without the TAP harness: prints every
#	  failing case with its reproduction, then the findings by check.
#	  The server's log file, if given, lets crashes be told from other
#	  lost connections.  Creates and drops databases fz_*.
#
#	    perl test/fuzz/run.pl [--log=/path/to/server.log] [--seed=N] [--cases=N] [--only=1,2]
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use Getopt::Long;
use EsFuzz;

my ($log, $seed, $cases, $only, $verbose) = (undef, $ENV{FUZZ_SEED} // 20240601, $ENV{FUZZ_CASES} // 480, '', 0);
GetOptions('log=s' => \$log, 'seed=i' => \$seed, 'cases=i' => \$cases, 'only=s' => \$only, 'verbose' => \$verbose)
  or die "usage: $0 [--log=FILE] [--seed=N] [--cases=N] [--only=LIST] [--verbose]\n";
my %only = map { $_ => 1 } split /,/, $only;
print "fuzz: seed $seed, $cases cases\n";
my $fz = EsFuzz->new(
	host => $ENV{PGHOST} // '/var/run/postgresql',
	port => $ENV{PGPORT} // 5432,
	logfile => $log,
	fixtures => "$FindBin::RealBin/fixtures.sql");
$fz->prepare;
my (%by, $failed);
for my $c (EsFuzz::generate($seed, $cases))
{
	next if %only && !$only{ $c->{id} };
	my @f = $fz->run_case($c);
	printf("case %d: %s -> %s (%.2f s)\n", $c->{id}, $c->{what}, $c->{outcome}, $c->{seconds}) if $verbose;
	next unless @f;
	$failed++;
	push @{ $by{"$_->{check} $_->{state}"} }, $c->{id} for @f;
	print EsFuzz::report($seed, $c, @f), "\n";
}
print "findings by check (check SQLSTATE: cases):\n", map { "  $_: @{ $by{$_} }\n" } sort keys %by;
print "fuzz: ", ($failed // 0), " failing cases\n";
$fz->cleanup;
exit($failed ? 1 : 0);
