# A consumer's claim fails the expired leases of its function before it
# claims, but looks for them only once a lease of the database may have
# expired: not before the first deadline left that the first worker's look
# found, lowered by every claim and heartbeat that commits a nearer one
# (lease_floor, external_wait.c).  With no workers at all, the test makes
# the look itself (async._expire_leases()), so that only a claim can fail
# the leases that expire afterwards: one whose deadline did not lower the
# floor would never be found.  A look that rolls back sets no floor, and
# COMMIT PREPARED of a claim, whose commit counted nothing, makes the floor
# unknown.  Before the floor, a claim reads nothing of async.running (the
# statistics of its scans say so); past it, it does.  A claim that commits
# during a look keeps its deadline in the floor the look sets.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('lease_floor', workers => 0,
	conf => "max_prepared_transactions = 2\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
SELECT async.register_external('ext_long', timeout => '1 hour', retry_delays => '{0}');
SELECT async.register_external('ext_short', timeout => '1 second', retry_delays => '{0}');
SELECT async.invoke('ext_long', '{}', 'long-1');
SELECT async.invoke('ext_short', '{}', 'short-1');
CREATE TABLE public.leases AS SELECT * FROM async.claim('ext_long');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM async.workers'),
	'0', 'no worker serves the database');

# the look: the first deadline left is an hour away
is($node->safe_psql('postgres', 'SELECT async._expire_leases()'),
	'0', 'the look finds no expired lease');

# a claim whose lease expires in a second lowers the floor at its commit
$node->safe_psql('postgres',
	q{INSERT INTO public.leases SELECT * FROM async.claim('ext_short')});
ok( $node->poll_query_until('postgres',
		q{SELECT clock_timestamp() > deadline FROM public.leases c
		   JOIN async.jobs j ON j.id = c.job_id WHERE j.event_id = 'short-1'}),
	'the short lease is past its deadline');
is( $node->safe_psql('postgres',
		q{SELECT event_id, attempt FROM async.claim('ext_short')}),
	'short-1|2',
	'the next claim fails the expired attempt and claims the job again');
is( $node->safe_psql('postgres',
		q{SELECT attempt, outcome, sqlstate FROM async.attempts
		   WHERE event_id = 'short-1' ORDER BY attempt}),
	'1|failed|57014',
	'the first attempt failed with lease expired');

# a heartbeat under a shorter timeout brings a deadline nearer: the floor
# follows it
$node->safe_psql('postgres', q{
SELECT async.complete(j.id, r.lease) FROM async.jobs j JOIN async.running r ON r.job_id = j.id
 WHERE j.event_id = 'short-1';
});
is($node->safe_psql('postgres', 'SELECT async._expire_leases()'),
	'0', 'a second look finds no expired lease');
my $deadline = $node->safe_psql('postgres', q{
SELECT async.configure('ext_long', timeout => '1 second');
SELECT async.heartbeat(job_id, lease) FROM public.leases c
 JOIN async.jobs j ON j.id = c.job_id WHERE j.event_id = 'long-1';
});
like($deadline, qr/\n\d{4}-/, 'the heartbeat moved the deadline');
ok( $node->poll_query_until('postgres',
		q{SELECT clock_timestamp() > r.deadline FROM async.running r
		   JOIN async.jobs j ON j.id = r.job_id WHERE j.event_id = 'long-1'}),
	'the long lease is past its new deadline');
is( $node->safe_psql('postgres',
		q{SELECT event_id, attempt FROM async.claim('ext_long')}),
	'long-1|2', 'the next claim fails it and claims the job again');
$node->safe_psql('postgres', q{
SELECT async.complete(r.job_id, r.lease) FROM async.running r WHERE r.lease IS NOT NULL;
});

# passes the deadline of event_id's lease, then claims function once
sub claim_after_deadline
{
	my ($event_id, $function) = @_;
	$node->poll_query_until('postgres',
		qq{SELECT clock_timestamp() > r.deadline FROM async.running r
		    JOIN async.jobs j ON j.id = r.job_id WHERE j.event_id = '$event_id'})
	  or die "the lease of $event_id did not expire";
	return $node->safe_psql('postgres',
		qq{SELECT event_id, attempt FROM async.claim('$function')});
}

# a look that rolls back sets no floor: the lease it failed is back
$node->safe_psql('postgres', q{
SELECT async.invoke('ext_short', '{}', 'short-2');
SELECT count(*) FROM async.claim('ext_short');
});
is($node->safe_psql('postgres', 'SELECT async._expire_leases()'),
	'0', 'a look before the deadline finds nothing');
$node->poll_query_until('postgres',
	q{SELECT clock_timestamp() > r.deadline FROM async.running r
	   JOIN async.jobs j ON j.id = r.job_id WHERE j.event_id = 'short-2'})
  or die 'the lease of short-2 did not expire';
is( $node->safe_psql('postgres',
		'BEGIN; SELECT async._expire_leases(); ROLLBACK;'),
	'1', 'a look fails the expired lease, then rolls back');
is(claim_after_deadline('short-2', 'ext_short'),
	'short-2|2', 'the next claim fails it and claims the job again');

# a claim's transaction committed by COMMIT PREPARED
$node->safe_psql('postgres', q{
SELECT async.complete(r.job_id, r.lease) FROM async.running r WHERE r.lease IS NOT NULL;
SELECT async._expire_leases();
SELECT async.invoke('ext_short', '{}', 'short-3');
BEGIN;
SELECT count(*) FROM async.claim('ext_short');
PREPARE TRANSACTION 'claimed';
COMMIT PREPARED 'claimed';
});
is(claim_after_deadline('short-3', 'ext_short'),
	'short-3|2', 'a claim fails the lease a prepared transaction made');

# the scans of async.running by one session's statements, flushed
sub running_scans
{
	my ($session) = @_;
	$session->query_safe('SELECT pg_stat_force_next_flush()');
	$session->query_safe('SELECT 1');
	return $session->query_safe(
		q{SELECT pg_stat_clear_snapshot(), coalesce(seq_scan, 0) + coalesce(idx_scan, 0)
		    FROM pg_stat_all_tables WHERE relid = 'async.running'::regclass}) =~ s/^\|//r;
}

# before the floor, a claim does not look at async.running at all; once a
# lease may have expired, it does
$node->safe_psql('postgres', q{
SELECT async.complete(r.job_id, r.lease) FROM async.running r WHERE r.lease IS NOT NULL;
SELECT async.invoke('ext_long', '{}', 'long-2');
SELECT async.configure('ext_long', timeout => '1 hour');
SELECT count(*) FROM async.claim('ext_long');
SELECT async._expire_leases();
});
my $session = $node->background_psql('postgres');
my $before = running_scans($session);
$session->query_safe(q{SELECT count(*) FROM async.claim('ext_short')}) for 1 .. 10;
is(running_scans($session), $before, 'ten claims before the floor scan nothing of async.running');
$node->safe_psql('postgres', q{
SELECT async.invoke('ext_short', '{}', 'short-4');
SELECT count(*) FROM async.claim('ext_short');
});
$node->poll_query_until('postgres',
	q{SELECT clock_timestamp() > r.deadline FROM async.running r
	   JOIN async.jobs j ON j.id = r.job_id WHERE j.event_id = 'short-4'})
  or die 'the lease of short-4 did not expire';
$before = running_scans($session);
is($session->query_safe(q{SELECT event_id FROM async.claim('ext_short')}),
	'short-4', 'past the floor, a claim fails the lease and claims the job again');
cmp_ok(running_scans($session), '>', $before, 'and it looked at async.running');
$session->quit;

# A claim that commits while a look is under way (after the look's
# snapshot, before its commit) keeps its deadline in the floor: the look
# did not see that lease, so the floor it found is no floor for it.
$node->safe_psql('postgres', q{
SELECT async.complete(r.job_id, r.lease) FROM async.running r WHERE r.function = 'ext_short';
SELECT async._expire_leases();
});
my $look = $node->background_psql('postgres');
$look->query_safe('BEGIN');
$look->query_safe('SELECT async._expire_leases()');
$node->safe_psql('postgres', q{
SELECT async.invoke('ext_short', '{}', 'short-5');
SELECT count(*) FROM async.claim('ext_short');
});
$look->query_safe('COMMIT');
$look->quit;
$node->poll_query_until('postgres',
	q{SELECT clock_timestamp() > r.deadline FROM async.running r
	   JOIN async.jobs j ON j.id = r.job_id WHERE j.event_id = 'short-5'})
  or die 'the lease of short-5 did not expire';
is($node->safe_psql('postgres', q{SELECT event_id, attempt FROM async.claim('ext_short')}),
	'short-5|2', 'a lease claimed during a look is looked for once it expires');

done_testing();
