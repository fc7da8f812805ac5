# Priorities across batches and workers.
#
# One worker runs a paused backlog of mixed priorities, batch after batch,
# in priority order.  Then two workers drain a backlog of 100,000 jobs of
# priority 0, and a job of priority -10 enqueued behind it starts within
# the next claim of each worker: before all but at most a batch per worker
# of the jobs still waiting.  A function's lane (concurrency) does the same
# through its own index.  Last, the priority floor passes no job that is
# scheduled or enqueued below it.
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
# The wait is counted from the commit: a claim that starts after it sees
# the urgent job; one that started between the job's enqueued_at (its
# transaction's start) and its commit may not, and a worker can make
# several such claims while that commit waits for its WAL flush
my $committed = $node->safe_psql('postgres', q{
SELECT async.invoke('noop', '{}', 'urgent', priority => -10);
SELECT clock_timestamp();
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM async.jobs WHERE finished_at IS NULL"),
	'the backlog drains');
($committed) = $committed =~ /(\S+ \S+)\s*$/;
my ($waiting, $before, $overtaken) = split /\|/, $node->safe_psql('postgres', qq{
SELECT count(*) FILTER (WHERE j.started_at >= u.enqueued_at),
       count(*) FILTER (WHERE j.started_at >= '$committed' AND j.started_at < u.started_at),
       count(*) FILTER (WHERE j.started_at > u.started_at)
  FROM async.jobs j, async.jobs u
 WHERE u.event_id = 'urgent' AND j.event_id <> 'urgent'});
note("waiting when it came: $waiting; started after its commit but before it: $before; after it: $overtaken");
cmp_ok($waiting, '>', 10000, 'many jobs still waited when the urgent one came');
cmp_ok($before, '<=', 2 * $batch,
	'once committed, it waited at most for the claim in flight of each worker');
cmp_ok($overtaken, '>', $waiting / 2, 'it started before most of the backlog');

# The priority floor: claims start their walk of jobs_priority_idx past the
# jobs already run, and the floor must pass no job that is scheduled (time
# makes it due with no trigger to lower the floor) nor one enqueued below it.
# Sweeps, which would find a job the floor passed, are made rare here, so
# that such a job would wait and the test fail.
$node->append_conf('postgresql.conf', "pg_async.sweep_interval = '1h'\n");
$node->restart;
ok(wait_for_workers($node, 2), 'the workers start again');
$node->safe_psql('postgres', q{
TRUNCATE public.ran;
INSERT INTO async.jobs (function, payload, priority, run_at, event_id) VALUES
	('logged', '{"p": 1}', 1, clock_timestamp() + interval '1.5 s', 'sched-1'),
	('logged', '{"p": -1}', -1, clock_timestamp() + interval '2.5 s', 'sched-minus-1'),
	('logged', '{"p": 4}', 4, clock_timestamp() + interval '3 s', 'sched-4');
});
# a stream of ready jobs of priority 3 meanwhile: the claims find them
# past the scheduled jobs of priorities -1 and 1, and must not raise the
# floor past those
foreach my $i (1 .. 40)
{
	$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, payload, priority) VALUES ('logged', '{"p": 3}', 3);
SELECT pg_sleep(0.1);
});
}
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 3 FROM async.jobs WHERE event_id LIKE 'sched-%' AND state = 'succeeded'}),
	'the scheduled jobs of other priorities ran');
my $late = $node->safe_psql('postgres', q{
SELECT string_agg(event_id || ' ' || round(extract(epoch FROM started_at - run_at)::numeric, 2), ', ')
  FROM async.jobs WHERE event_id LIKE 'sched-%' AND started_at - run_at > interval '1 second'});
is($late, '', 'each started within a second of its run_at, with no sweep');

# once the queue is empty the claims raise the floor to the top; a job
# enqueued then, of any priority, lowers it again
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM async.jobs WHERE finished_at IS NULL"),
	'the queue empties');
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, payload, priority, event_id) VALUES ('logged', '{"p": 9}', 9, 'after-idle');
});
ok($node->poll_query_until('postgres', q{
SELECT state = 'succeeded' AND started_at - enqueued_at < interval '1 second'
  FROM async.jobs WHERE event_id = 'after-idle'}),
	'a job enqueued into an idle queue runs at once');

# a paused function's jobs of other priorities run after resume
$node->safe_psql('postgres', q{
SELECT async.pause('logged');
INSERT INTO async.jobs (function, payload, priority)
SELECT 'logged', '{"p": -5}', -5 FROM generate_series(1, 100);
SELECT pg_sleep(0.5);
SELECT async.resume('logged');
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM async.jobs WHERE finished_at IS NULL"),
	'a resumed function\'s jobs of priority -5 run');

$node->stop;
done_testing();
