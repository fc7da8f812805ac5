# External functions, where several sessions or a restart are needed: a
# consumer waiting in async.claim is woken by the commit of an enqueue (the
# pick-up time is measured and printed), not before it; a consumer holding
# its function's claim lock holds back no other function's claims, and the
# lock's tag is the SHA-256 of the name; a waiting claim checks the
# caller's rights again after each wait; and leases outlive an immediate
# restart, then expire.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PgAsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = pg_async_node('external_waits', workers => 2);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
SELECT async.register_external('hook');
SELECT async.register_external('mine', concurrency => 1);
SELECT async.register_external('theirs', concurrency => 1);
SELECT async.register_external('slow', timeout => '10 seconds', retry_delays => '{0}');
});
ok(wait_for_workers($node, 2), 'workers start');

# session starts a psql that reads statements from its stdin; send() writes
# one and returns, result() waits for the marker it echoes and returns what
# the statement printed.
sub session
{
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(600));
	my $n = 0;
	my $self;
	$self = {
		send => sub {
			my ($sql) = @_;
			$n++;
			$out = '';
			$in .= "$sql\n\\echo done-$n\n";
			$h->pump_nb;
			return $n;
		},
		result => sub {
			my ($deadline) = @_;
			$deadline = time + ($deadline // 60);
			while ($out !~ /done-$n/ && time < $deadline)
			{
				$h->pump_nb;
				select(undef, undef, undef, 0.001);
			}
			return undef unless $out =~ /done-$n/;
			(my $r = $out) =~ s/done-$n\n?//;
			chomp $r;
			return $r;
		},
		error => sub { return $err; },
		finish => sub { $in .= "\\q\n"; $h->finish; },
	};
	return $self;
}

# 1. The pick-up: from the enqueue's commit to the claim's return, for a
# consumer that waits in async.claim.  The claim must not return before the
# commit, and must return well before its wait of 10 s ends.
my $consumer = session();
my $producer = session();
my @pickup;
my $early = 0;
for my $i (1 .. 50)
{
	$consumer->{send}("SELECT event_id FROM async.claim('hook', 1, '10 seconds');");
	# the claim is waiting once its backend sleeps on its latch
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgAsyncClaimWait'"
		  . " OR (wait_event = 'Extension' AND query LIKE '%async.claim(''hook''%')")
	  or die 'the claim does not wait';
	$early++ if defined $consumer->{result}(0);
	my $t0 = time;
	$producer->{send}("SELECT async.invoke('hook', '{}', 'hook-$i');");
	defined $producer->{result}(10) or die 'the enqueue did not return';
	my $got = $consumer->{result}(10);
	my $t1 = time;
	die "the claim returned nothing for hook-$i" unless defined $got && $got eq "hook-$i";
	push @pickup, ($t1 - $t0) * 1000;
}
$node->safe_psql('postgres', q{
SELECT pg_catalog.count(async.complete(r.job_id, r.lease)) FROM async.running r});
my @sorted = sort { $a <=> $b } @pickup;
my ($p50, $p99) = ($sorted[24], $sorted[48]);
diag(sprintf('external pick-up, enqueue call to claim return (enqueue round trip included), '
	  . '50 tries: p50 %.2f ms, p99 %.2f ms', $p50, $p99));
is($early, 0, 'a waiting claim does not return before the enqueue');
cmp_ok($p99, '<', 1000, 'a waiting claim returns within a second of the enqueue, not at its wait');

# a wait that nothing ends lasts its time, and returns nothing
my $t0 = time;
is($node->safe_psql('postgres', q{SELECT count(*) FROM async.claim('hook', 1, '1 second')}),
	'0', 'a wait with nothing enqueued returns nothing');
cmp_ok(time - $t0, '>=', 0.9, 'and lasts its wait');

# a consumer waiting for a paused function is woken by async.resume
$node->safe_psql('postgres', q{
SELECT async.pause('hook');
SELECT async.invoke('hook', '{}', 'hook-paused');});
$consumer->{send}("SELECT event_id FROM async.claim('hook', 1, '30 seconds');");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgAsyncClaimWait'"
	  . " OR (wait_event = 'Extension' AND query LIKE '%async.claim(''hook''%')")
  or die 'the claim does not wait';
$t0 = time;
$node->safe_psql('postgres', q{SELECT async.resume('hook')});
is($consumer->{result}(30), 'hook-paused', 'async.resume hands the held job to a waiting consumer');
cmp_ok(time - $t0, '<', 5, 'at once, not at the end of its wait');
$node->safe_psql('postgres', q{
SELECT pg_catalog.count(async.complete(r.job_id, r.lease)) FROM async.running r});

# 2. A consumer that holds the claim lock of its limited function (its
# claim's transaction is open) holds back the claims of that function, and
# of no other.
$node->safe_psql('postgres', q{
SELECT async.invoke('mine', '{}', 'mine-1'), async.invoke('mine', '{}', 'mine-2');
SELECT async.invoke('theirs', '{}', 'theirs-1');
});
my $holder = session();
$holder->{send}("BEGIN; SELECT event_id FROM async.claim('mine');");
is($holder->{result}(), 'mine-1', 'a claim of a limited function in an open transaction');
# The tag of that lock: the first 64 bits of the SHA-256 of the name, so
# that no role can make up a name whose claims would wait for it (until
# 0.22 a hash that a name could be built to collide with).
is($node->safe_psql('postgres', q{
SELECT l.classid::bigint = ('x' || substr(encode(sha256('mine'::bytea), 'hex'), 1, 8))::bit(32)::bigint
   AND l.objid::bigint = ('x' || substr(encode(sha256('mine'::bytea), 'hex'), 9, 8))::bit(32)::bigint
  FROM pg_locks l WHERE l.locktype = 'object' AND l.objsubid = 4 AND l.granted}),
	't', 'the claim lock is tagged with the SHA-256 of the function\'s name');
is($node->safe_psql('postgres', q{
SET statement_timeout = '5s';
SELECT event_id FROM async.claim('theirs');}), 'theirs-1',
	'another limited function is claimed meanwhile');
my ($rc, $stdout, $stderr) = $node->psql('postgres', q{
SET statement_timeout = '1s';
SELECT event_id FROM async.claim('mine');});
like($stderr, qr/statement timeout/, 'a second claim of the same function waits for it');
$holder->{send}('COMMIT;');
defined $holder->{result}() or die 'the commit did not return';
is($node->safe_psql('postgres', q{SELECT count(*) FROM async.claim('mine')}), '0',
	'its limit, 1, is taken by the committed claim');

# 2b. A claim that waits checks the caller's rights again after each wait.
# mallory waits for jobs of her own function 'invoices', then unregisters
# it; alice registers the name for herself and enqueues a payload.  The
# waiting claim, woken by alice's commit, must not hand mallory alice's job
# (up to 0.21 it did: it had checked mallory's rights at its start only).
$node->safe_psql('postgres', q{
CREATE ROLE regress_mallory LOGIN;
CREATE ROLE regress_alice LOGIN;
SET ROLE regress_mallory;
SELECT async.register_external('invoices');});
my $mallory = session();
$mallory->{send}("SET ROLE regress_mallory;");
defined $mallory->{result}() or die 'SET ROLE did not return';
$mallory->{send}("SELECT event_id FROM async.claim('invoices', 10, '20 seconds');");
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgAsyncClaimWait'"
	  . " OR (wait_event = 'Extension' AND query LIKE '%async.claim(''invoices''%')")
  or die 'the claim does not wait';
$node->safe_psql('postgres', q{
SET ROLE regress_mallory;
SELECT async.unregister('invoices');
SET ROLE regress_alice;
SELECT async.register_external('invoices');
SELECT async.invoke('invoices', '{"card": "alice"}', 'alice-invoice');});
is($mallory->{result}(30), '', 'the waiting claim of a role that lost the name gets nothing');
like($mallory->{error}(), qr/permission denied to claim jobs of function "invoices"/,
	'it fails, as a new call would');
is($node->safe_psql('postgres', q{
SELECT state || ' ' || attempts || ' '
       || (SELECT count(*) FROM async.running r WHERE r.job_id = j.id)
  FROM async.jobs j WHERE event_id = 'alice-invoice'}),
	'queued 0 0', "alice's job is still queued, unclaimed, with no lease");
is($node->safe_psql('postgres', q{
SET ROLE regress_alice;
SELECT event_id FROM async.claim('invoices');}), 'alice-invoice', 'and alice claims it');
$mallory->{finish}();

# 3. Leases outlive an immediate restart, and expire after it: the job is
# failed with "lease expired" and claimed again.
$node->safe_psql('postgres', q{SELECT async.invoke('slow', '{}', 'slow-1')});
is($node->safe_psql('postgres', q{SELECT event_id FROM async.claim('slow')}), 'slow-1',
	'a job of a function with a 10 s lease is claimed');
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', q{
SELECT count(*) FROM async.running WHERE function = 'slow' AND lease IS NOT NULL}),
	'1', 'the lease outlived the restart');
ok(wait_for_workers($node, 2), 'workers start again');
ok($node->poll_query_until('postgres', q{
SELECT state = 'queued' AND last_error = 'lease expired' FROM async.jobs WHERE event_id = 'slow-1'}),
	'it expires after the restart, with no claim of its function');
is($node->safe_psql('postgres', q{
SELECT c.attempt || ' ' || async.complete(c.job_id, c.lease) FROM async.claim('slow') c}),
	'2 true', 'the job is claimed again, as its second attempt');

$consumer->{finish}();
$producer->{finish}();
$holder->{finish}();
$node->stop;
done_testing();
