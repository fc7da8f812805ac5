# Priorities across batches and workers.
#
# One worker runs a paused backlog of mixed priorities, batch after batch,
# in priority order.  Then two workers drain a backlog of 100,000 jobs of
# priority 0, and a job of priority -10 enqueued behind it starts within
# the next claim of each worker: before all but at most a batch per worker
# of the jobs still waiting.  A function's lane (concurrency) does the same
# through its own index.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $batch = 200;
my $node = pg_async_node('priorities', workers => 1,
	conf => "pg_async.batch_size = $batch\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.ran (n bigserial, priority smallint);
CREATE FUNCTION public.logged(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.ran (priority) VALUES ((e->>'p')::smallint)
$$;
CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.logged(jsonb)');
SELECT async.register('public.noop(jsonb)');
});
ok(wait_for_workers($node, 1), 'the worker starts');

# one worker, many batches: the order holds from batch to batch
$node->safe_psql('postgres', q{
SELECT async.pause('logged');
INSERT INTO async.jobs (function, payload, priority)
SELECT 'logged', jsonb_build_object('p', p), p
  FROM (SELECT (ARRAY[0, 7, -4, 0, 3, -1, 0])[1 + i % 7] AS p
          FROM generate_series(1, 3000) i) x;
SELECT async.resume('logged');
});
ok($node->poll_query_until('postgres', 'SELECT count(*) = 3000 FROM public.ran'),
	'the 3,000 jobs ran');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT priority, lag(priority) OVER (ORDER BY n) AS before
                        FROM public.ran) r WHERE r.before > r.priority}),
	'0', 'one worker ran them in priority order, in batches of at most 200');

# a function with a concurrency limit takes its jobs by priority as well
$node->safe_psql('postgres', q{
TRUNCATE public.ran;
SELECT async.configure('logged', concurrency => 3);
SELECT async.pause('logged');
INSERT INTO async.jobs (function, payload, priority)
SELECT 'logged', jsonb_build_object('p', p), p
  FROM (SELECT (ARRAY[2, 0, -6, 0])[1 + i % 4] AS p FROM generate_series(1, 1000) i) x;
SELECT async.resume('logged');
});
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1000 FROM public.ran'),
	'the limited function\'s jobs ran');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT priority, lag(priority) OVER (ORDER BY n) AS before
                        FROM public.ran) r WHERE r.before > r.priority}),
	'0', 'its lane went by priority');
$node->safe_psql('postgres', "SELECT async.configure('logged', concurrency => -1)");

# two workers, a backlog of 100,000, and a job of priority -10 behind it
$node->append_conf('postgresql.conf', "pg_async.workers = 2\n");
$node->restart;
ok(wait_for_workers($node, 2), 'two workers start');
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, payload)
SELECT 'noop', '{}' FROM generate_series(1, 100000);
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 2000 FROM async.jobs WHERE function = 'noop' AND state = 'succeeded'"),
	'the workers are into the backlog');
$node->safe_psql('postgres', q{
SELECT async.invoke('noop', '{}', 'urgent', priority => -10);
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM async.jobs WHERE finished_at IS NULL"),
	'the backlog drains');
my ($waiting, $before, $overtaken) = split /\|/, $node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE j.started_at >= u.enqueued_at),
       count(*) FILTER (WHERE j.started_at >= u.enqueued_at AND j.started_at < u.started_at),
       count(*) FILTER (WHERE j.started_at > u.started_at)
  FROM async.jobs j, async.jobs u
 WHERE u.event_id = 'urgent' AND j.event_id <> 'urgent'});
note("waiting when it came: $waiting; started before it: $before; after it: $overtaken");
cmp_ok($waiting, '>', 10000, 'many jobs still waited when the urgent one came');
cmp_ok($before, '<=', 2 * $batch,
	'it waited at most for the next claim of each worker');
cmp_ok($overtaken, '>', $waiting / 2, 'it started before most of the backlog');

$node->stop;
done_testing();
