# The workers' cached plans as the queue grows.  A worker plans its
# statements once and keeps the plans until an invalidation; planned while
# async.jobs was empty (after a TRUNCATE, or an ANALYZE of an empty queue),
# the claim joined the batch to a full scan of async.jobs, which costs
# nothing at ten rows and made every claim walk the whole table at tens of
# thousands: the drain below then took minutes instead of a second or two.
# Autovacuum is off, so that no ANALYZE comes to the rescue; auto_explain
# logs the plans the worker runs.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('plans');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_async, auto_explain'
pg_async.database = 'postgres'
pg_async.workers = 1
autovacuum = off
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
SELECT async.register('public.noop(jsonb)');
});
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM async.workers'), 'the worker starts');

# The worker claims one job at a time often enough to settle on a generic
# plan (the plan cache plans the first five executions for their
# parameters, and after an invalidation plans the generic one at once).
my $small = 0;
foreach my $i (1 .. 10)
{
	$node->safe_psql('postgres', q{SELECT async.invoke('noop', '{}')});
	$small++
	  if $node->poll_query_until('postgres',
		"SELECT count(*) = $i FROM async.jobs WHERE state = 'succeeded'");
}
is($small, 10, 'ten jobs run one by one');

# Then the queue is emptied and analyzed, and the worker plans its claim
# again on its next look at the empty queue (every few seconds).
my $log_from = -s $node->logfile;
$node->safe_psql('postgres', q{
TRUNCATE async.jobs;
ANALYZE async.jobs;
});
my $looked = 0;
foreach my $try (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	$looked = 1 if slurp_file($node->logfile, $log_from) =~ /FOR UPDATE SKIP LOCKED/;
	last if $looked;
	usleep(100_000);
}
ok($looked, 'the worker claims on the empty queue');

# Then 30,000 jobs at once.
$log_from = -s $node->logfile;
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (function, payload) SELECT 'noop', '{}' FROM generate_series(1, 30000)});
my $started = time;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 30000 FROM async.jobs WHERE state = 'succeeded'"),
	'30,000 jobs drain in time');
note(sprintf('drained in %d s', time - $started));

# The claims made after the queue grew look each job of the batch up by its
# key: the scan of async.jobs in the claim's UPDATE has an index condition.
my $log = slurp_file($node->logfile, $log_from);
my @claims = grep { /FOR UPDATE SKIP LOCKED/ } split /(?=^\S.*LOG:  duration: )/m, $log;
cmp_ok(scalar(@claims), '>', 10, 'the worker claimed in many batches');
my $last = $claims[-1] // '';
like($last, qr/Index Scan using jobs_pkey on jobs j\s+\([^\n]*\n\s+Index Cond: \(id = /,
	'the last claim looks jobs up by id');
my @walks = grep { /Index Scan using jobs_pkey on jobs j\s+\([^\n]*\n(?!\s+Index Cond)/ } @claims;
cmp_ok(scalar(@walks), '<=', 5, 'few claims walk async.jobs (' . scalar(@walks) . ')');

$node->stop;
done_testing();
