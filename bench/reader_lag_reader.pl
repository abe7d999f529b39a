#!/usr/bin/perl
# bench/reader_lag_reader.pl: the polling reader of bench/reader_lag.sh.
#
#   reader_lag_reader.pl PORT DB AFTER OUT READY STOP MAXSEC
#
# Connects (DBD::Pg, host localhost, libpq's PGUSER/PGPASSWORD) to DB on
# PORT and loops, as a catch-up subscriber would:
#     w := es_wait(last, 1000)
#     if w > last: SELECT * FROM es_read_all(last, 1000), every row fetched
#                  to the client; last := the last row's global_position
# starting from last = AFTER.  For every event returned it writes one line
# "global_position<TAB>epoch seconds when the page reached the client"
# (gettimeofday, the clock the server stamps commits with) to OUT.
# Creates the file READY once connected and prepared; stops when the file
# STOP holds a position P and last >= P, or after MAXSEC seconds (exit 1).
use strict;
use warnings;
use DBI;
use Time::HiRes qw(time);

my ($port, $db, $after, $out, $ready, $stop, $maxsec) = @ARGV;
die "usage: $0 PORT DB AFTER OUT READY STOP MAXSEC\n" unless defined $maxsec;

my $dbh = DBI->connect("dbi:Pg:dbname=$db;host=localhost;port=$port",
	$ENV{PGUSER} // 'postgres', $ENV{PGPASSWORD} // '',
	{ AutoCommit => 1, RaiseError => 1, PrintError => 0 });
my $wait = $dbh->prepare('SELECT es_wait(?, 1000)');
my $read = $dbh->prepare('SELECT * FROM es_read_all(?, 1000)');
# prepare on the server now, not at the first execute
$wait->execute($after);
$wait->fetchall_arrayref;

open my $fh, '>', $out or die "$out: $!";
open my $r, '>', $ready or die "$ready: $!";
close $r;

my $deadline = time + $maxsec;
my $last = $after;
my ($target, $pos_col);
my @seen;
while (1)
{
	if (!defined $target && -s $stop)
	{
		open my $s, '<', $stop or die "$stop: $!";
		$target = <$s>;
		close $s;
		chomp $target;
	}
	last if defined $target && $last >= $target;
	if (time > $deadline)
	{
		print STDERR "reader: timed out at position $last"
		  . (defined $target ? ", waiting for $target" : '') . "\n";
		exit 1;
	}
	$wait->execute($last);
	my ($w) = $wait->fetchrow_array;
	$wait->finish;
	next unless $w > $last;
	$read->execute($last);
	my $rows = $read->fetchall_arrayref;
	my $t = time;
	unless (defined $pos_col)
	{
		my %i;
		@i{ @{ $read->{NAME} } } = (0 .. $#{ $read->{NAME} });
		$pos_col = $i{global_position} // die "no global_position column\n";
	}
	for my $row (@$rows)
	{
		push @seen, sprintf("%d\t%.6f\n", $row->[$pos_col], $t);
		$last = $row->[$pos_col];
	}
}
print $fh @seen;
close $fh or die "$out: $!";
$dbh->disconnect;
