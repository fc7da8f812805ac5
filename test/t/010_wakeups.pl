# Wake-ups for jobs of a function at its concurrency limit.
#
# Such a job cannot run until a running job of its function ends, and the
# worker that ends it claims again.  Waking a sleeping worker for it at the
# enqueue's commit only buys a claim that finds nothing: at a thousand
# enqueues a second, an eighth of a CPU.  A claim that finds a limit reached
# publishes it in shared memory, and an enqueue of a job of that function
# then wakes nobody, until a commit that may give the limit room again
# (a job of it ending, a registration changing) voids the list.
#
# pg_stat_statements counts the workers' claims: the full claim is the
# statement that inserts reservations into async.running.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# pg_stat_statements of the installation the server runs from, whatever
# pg_config PATH finds: preloaded with a restart if it is there.
my $node = pg_async_node('wakeups', workers => 2);
my $pkglibdir = server_pg_config($node, 'PKGLIBDIR');
plan skip_all => "pg_stat_statements is not installed in $pkglibdir"
  unless -e "$pkglibdir/pg_stat_statements.so";
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_async, pg_stat_statements'
pg_stat_statements.track = 'all'
});
$node->restart;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE EXTENSION pg_stat_statements;
CREATE TABLE public.gate (open boolean NOT NULL);
INSERT INTO public.gate VALUES (false);
CREATE TABLE public.ran (event_id text, started timestamptz, ended timestamptz);
GRANT SELECT ON public.gate TO PUBLIC;
GRANT INSERT ON public.ran TO PUBLIC;
-- waits until the test opens the gate, then records when it ran
CREATE FUNCTION public.gated(e jsonb, c async.context) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	WHILE NOT (SELECT g.open FROM public.gate g) LOOP
		PERFORM pg_sleep(0.01);
	END LOOP;
	INSERT INTO public.ran VALUES (c.event_id, t0, clock_timestamp());
END$$;
SELECT async.register('public.gated(jsonb, async.context)', concurrency => 1);
});
ok(wait_for_workers($node, 2), 'two workers start');

# claims: how many full claims the workers have made
sub claims
{
	return $node->safe_psql('postgres', q{
SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
 WHERE query LIKE '%INSERT INTO async.running%'});
}

# 1. One job runs and holds the function's only place.
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (event_id, function, payload) VALUES ('first', 'gated', '{}')});
ok(wait_for_running($node, 'first'), 'the first job runs, at the limit of 1');

# 2. Forty more, one transaction each: they wake nobody.
my $before = claims();
$node->safe_psql('postgres', join("\n", map {
	"INSERT INTO async.jobs (event_id, function, payload) VALUES ('more-$_', 'gated', '{}');"
} 1 .. 40));
my $during = claims() - $before;
cmp_ok($during, '<=', 5,
	"40 enqueues for a function at its limit wake no worker ($during claims)");
is($node->safe_psql('postgres', q{
SELECT count(*) FROM async.jobs WHERE function = 'gated' AND state = 'queued'}),
	'40', 'the forty wait queued');

# 3. The gate opens: each job's end makes room for the next, and the worker
# that ends one claims the next; none is left behind, none overlaps.
$node->safe_psql('postgres', 'UPDATE public.gate SET open = true');
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 41 FROM async.jobs WHERE function = 'gated' AND state = 'succeeded'}),
	'all 41 jobs run once the first ends');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM public.ran a JOIN public.ran b
    ON a.event_id < b.event_id AND a.started < b.ended AND b.started < a.ended}),
	'0', 'never two at once');
# A job left waiting for a wake-up that was skipped would start at a
# worker's next look, up to 5 seconds after the one before it ended.
cmp_ok($node->safe_psql('postgres', q{
SELECT extract(epoch FROM max(gap)) FROM (
    SELECT started - lag(ended) OVER (ORDER BY started) AS gap FROM public.ran) g}),
	'<', 2, 'each job starts as soon as the one before it ends');

# 4. A limit raised while it is reached: the change voids the list, so the
# next enqueue wakes a worker, which runs that job beside the one holding
# the old limit.
$node->safe_psql('postgres', q{
UPDATE public.gate SET open = false;
INSERT INTO async.jobs (event_id, function, payload) VALUES ('holder', 'gated', '{}');
});
ok(wait_for_running($node, 'holder'), 'a job holds the limit of 1 again');
$node->safe_psql('postgres', q{SELECT async.configure('gated', concurrency => 2)});
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (event_id, function, payload) VALUES ('second', 'gated', '{}')});
ok(wait_for_running($node, 'second'), 'with the limit raised to 2, a second job runs beside it');
cmp_ok($node->safe_psql('postgres', q{
SELECT extract(epoch FROM started_at - enqueued_at) FROM async.jobs WHERE event_id = 'second'}),
	'<', 2, 'at once: the raised limit voided the list');
$node->safe_psql('postgres', 'UPDATE public.gate SET open = true');
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM async.jobs WHERE finished_at IS NULL}),
	'both end');

# 5. A job of a limited function that fails gives its place back, and is
# queued again: its retry runs.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.failing(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'no'; END$$;
SELECT async.register('public.failing(jsonb)', concurrency => 1, max_attempts => 2,
                      retry_delays => '{0 seconds}');
INSERT INTO async.jobs (event_id, function, payload) VALUES ('fail-1', 'failing', '{}');
});
ok($node->poll_query_until('postgres', q{
SELECT state = 'dead' FROM async.jobs WHERE event_id = 'fail-1'}),
	'a failed job of a limited function is retried and dead-lettered');
is($node->safe_psql('postgres', 'SELECT count(*) FROM async.running'), '0',
	'no reservation is left');

# 6. A full rate limit: time, not a commit, gives it room again.  The claim
# that finds it full lists it until its window has room, and its worker
# looks again then; enqueues meanwhile wake nobody.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.paced(e jsonb) RETURNS void LANGUAGE sql AS '';
SELECT async.register('public.paced(jsonb)', rate_limit => 1, rate_period => '2.5 seconds');
INSERT INTO async.jobs (event_id, function, payload) VALUES ('pace-0', 'paced', '{}');
});
ok($node->poll_query_until('postgres', q{
SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'pace-0'}),
	'the first paced job runs and fills its window');
# 50 ms apart, so that each would find the workers asleep
$before = claims();
$node->safe_psql('postgres', join("\n", map {
	"INSERT INTO async.jobs (event_id, function, payload) VALUES ('pace-$_', 'paced', '{}');"
	  . " SELECT pg_sleep(0.05);"
} 1 .. 20));
$during = claims() - $before;
cmp_ok($during, '<=', 4,
	"20 enqueues for a function whose rate limit is full wake no worker ($during claims)");
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM async.jobs WHERE function = 'paced' AND state = 'succeeded'}),
	'the next paced job runs once the window has room');
my ($gap) = $node->safe_psql('postgres', q{
SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM async.jobs
 WHERE function = 'paced' AND state = 'succeeded'});
cmp_ok($gap, '>=', 2.4, "not before the window has room ($gap s after the first)");
# a skipped wake-up left unkept would start it at a worker's next look, up
# to 5 s on, or at the upkeep's (every 5 s)
cmp_ok($gap, '<', 3.1, 'but as soon as it has: the worker that found it full looked again then');
$node->safe_psql('postgres', q{SELECT async.unregister('paced', cancel_jobs => true)});

$node->stop;
done_testing();
