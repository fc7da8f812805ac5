# Limits by key: tenant A floods a function with 50,000 jobs and tenants B
# to D enqueue 20 each behind them, under key_concurrency 1.  The claims
# visit the keys in turn, so B to D finish within a few seconds while A is
# still draining, and no key ever has two jobs running at once: neither in
# async.running, sampled while they run, nor in the handlers' own start
# and end times.  A alone runs one job at a time: the test pauses it once
# that is seen.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = pg_async_node('keys', conf => "pg_async.workers = 2\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.runs (tenant text, started timestamptz, ended timestamptz);
CREATE FUNCTION public.tenant_job(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	INSERT INTO public.runs VALUES (e->>'tenant', t0, clock_timestamp());
END $$;
SELECT async.register('public.tenant_job(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);
});
ok(wait_for_workers($node, 2), 'workers start');

# A's flood first, then the others' few, all due at once
$node->safe_psql('postgres', q{
SELECT async.pause('tenant_job');
INSERT INTO async.jobs (function, payload)
SELECT 'tenant_job', '{"tenant": "A"}' FROM generate_series(1, 50000);
INSERT INTO async.jobs (function, payload)
SELECT 'tenant_job', jsonb_build_object('tenant', t) FROM unnest(ARRAY['B', 'C', 'D']) t, generate_series(1, 20);
});
my $start = time;
$node->safe_psql('postgres', "SELECT async.resume('tenant_job')");

# sample the running jobs by key until B to D are done
my $most_running = 0;
my $others_done;
while (time - $start < 120)
{
	my ($most, $done) = split /\|/, $node->safe_psql('postgres', q{
		SELECT COALESCE((SELECT max(n) FROM (SELECT count(*) AS n FROM async.running
											  WHERE function = 'tenant_job' GROUP BY key) r), 0),
			   (SELECT count(*) FROM async.jobs WHERE function = 'tenant_job'
				   AND key <> 'A' AND state = 'succeeded')});
	$most_running = $most if $most > $most_running;
	if ($done == 60)
	{
		$others_done = time - $start;
		last;
	}
}
ok(defined $others_done, 'the 60 jobs of B, C and D run');
my $a_done = $node->safe_psql('postgres',
	"SELECT count(*) FROM async.jobs WHERE function = 'tenant_job' AND key = 'A' AND state = 'succeeded'");
diag(sprintf('B, C and D done %.2f s after the start, when %d of A\'s 50,000 jobs had run',
		$others_done // -1, $a_done));
cmp_ok($others_done // 999, '<', 5, 'within a few seconds');
cmp_ok($a_done, '<', 50000, 'while A is still draining');
cmp_ok($most_running, '<=', 1, 'no key had two jobs in async.running at once');

# A drains on, one job at a time; the test stops it after a few seconds
my $a_start = time;
sleep 3;
$node->safe_psql('postgres', "SELECT async.pause('tenant_job')");
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM async.running"),
	'the paused function\'s last jobs end');
my $a_ran = $node->safe_psql('postgres',
	"SELECT count(*) FROM async.jobs WHERE function = 'tenant_job' AND key = 'A' AND state = 'succeeded'");
diag(sprintf('A, one job at a time: %.0f jobs/s', ($a_ran - $a_done) / (time - $a_start)));
cmp_ok($a_ran, '>', $a_done, 'A went on meanwhile');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT started, lag(ended) OVER (PARTITION BY tenant ORDER BY started) AS before
							FROM public.runs) r
	 WHERE started < before}),
	'0', 'no handler of a key started before the one before it had ended');
is($node->safe_psql('postgres', "SELECT count(*) FROM public.runs"),
	$node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE state = 'succeeded'"),
	'each job that succeeded ran once');
is($node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE attempts > 1"), '0',
	'waiting for a key spent no attempt');
# a worker's claim clears async.jobs.key (async.running keeps it): the job
# gets it back when it succeeds
is( $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE key IS DISTINCT FROM payload->>'tenant') || ' of ' || count(*)"
		  . " FROM async.jobs WHERE state = 'succeeded'"),
	'0 of ' . $node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE state = 'succeeded'"),
	'each job that succeeded has its key back');

# A worker's claim of a keyed job keeps its key and limited, and so is a
# HOT update (from 0.16), as a consumer's is: 2,000 jobs of 100 keys,
# counted once the workers have reported their statistics.  Finishes are
# never HOT (finished_at is in the indexes' predicates), so the HOT updates
# are claims.
my ($updates0, $hot0) = split /\|/, $node->safe_psql('postgres',
	"SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'async.jobs'::regclass");
$node->safe_psql('postgres', q{
CREATE FUNCTION public.noop_key(e jsonb) RETURNS void LANGUAGE sql AS $$SELECT$$;
SELECT async.register('public.noop_key(jsonb)', concurrency_key => 'tenant', key_concurrency => 5);
INSERT INTO async.jobs (function, payload)
SELECT 'noop_key', jsonb_build_object('tenant', 't' || i % 100) FROM generate_series(1, 2000) i;
});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 2000 FROM async.jobs WHERE function = 'noop_key' AND state = 'succeeded'"),
	'the 2,000 keyed jobs run');
ok( $node->poll_query_until('postgres',
		"SELECT n_tup_upd - $updates0 >= 4000 FROM pg_stat_user_tables WHERE relid = 'async.jobs'::regclass"),
	'the workers reported the updates of their claims and finishes');
cmp_ok(
	$node->safe_psql('postgres',
		"SELECT n_tup_hot_upd - $hot0 FROM pg_stat_user_tables WHERE relid = 'async.jobs'::regclass"),
	'>=', 1000, 'at least half of the 2,000 keyed claims were HOT updates');

# A batch that overran gives the jobs it has not run back (finish.c): they
# are queued again uncharged, with their key computed again and marked
# limited, so that the next claim of their keys finds them.  The workers
# have just run fast jobs, so that a claim takes all ten slow ones, and
# gives nine back after the first, which record_given_back sees as they
# happen.
record_given_back($node, 'given_back');
$node->safe_psql('postgres', q{
SELECT async.pause('tenant_job');
CREATE FUNCTION public.slow_job(e jsonb) RETURNS void LANGUAGE sql AS $$SELECT pg_sleep(0.3)$$;
SELECT async.register('public.slow_job(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);
INSERT INTO async.jobs (function, payload)
SELECT 'slow_job', jsonb_build_object('tenant', 's' || i) FROM generate_series(1, 10) i;
});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 10 FROM async.jobs WHERE function = 'slow_job' AND state = 'succeeded'"),
	'the slow jobs run');
my ($given, $wrong) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*), count(*) FILTER (WHERE key IS DISTINCT FROM payload->>'tenant' OR NOT limited)
	  FROM public.given_back});
cmp_ok($given, '>', 0, "a batch that overran gave jobs back ($given)");
is($wrong, '0', 'each job given back was queued with its key, and limited');
is( $node->safe_psql('postgres',
		"SELECT min(attempts) || '-' || max(attempts) FROM async.jobs WHERE function = 'slow_job'"),
	'1-1', 'the jobs given back were not charged');
$node->safe_psql('postgres', 'DROP TRIGGER given_back ON async.jobs');

# Two workers that claim at the same moment find the same keys with room:
# the second skips the jobs the first locked, and would take each key's
# next one, but the claims are serialized by the claim lock, so that the
# second counts the first's reservations.  Both workers sleep until the
# same run_at, wake together and claim from the same cursor; a trigger of
# the test's own checks each reservation, in the claim that makes it,
# against those there already are.  Three rounds of 50 keys with 20 jobs
# each, under key_concurrency 1.
$node->safe_psql('postgres', q{
CREATE TABLE public.overlaps (key text, running bigint);
CREATE FUNCTION public.note_overlap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.overlaps
	SELECT NEW.key, count(*) FROM async.running r
	 WHERE r.function = NEW.function AND r.key = NEW.key HAVING count(*) > 1;
	RETURN NULL;
END $$;
CREATE TRIGGER note_overlap AFTER INSERT ON async.running
	FOR EACH ROW WHEN (NEW.function = 'race_job') EXECUTE FUNCTION public.note_overlap();
CREATE FUNCTION public.race_job(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(0.005) $$;
SELECT async.register('public.race_job(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);
});
for my $round (1 .. 3)
{
	$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, payload, run_at)
SELECT 'race_job', jsonb_build_object('tenant', 'k' || (i % 50)), now() + interval '2 seconds'
  FROM generate_series(1, 1000) i;
});
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM async.jobs WHERE function = 'race_job' AND state <> 'succeeded'"),
		"round $round: the 1,000 jobs of 50 keys succeed");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM public.overlaps"),
	'0', 'no claim reserved a second job of a key with key_concurrency 1');
$node->safe_psql('postgres', 'DROP TRIGGER note_overlap ON async.running');

# A keyed job a worker runs stays marked limited (0.16).  async.wait_idle()
# counts it while its function is paused, and pg_dump keeps its
# reservation, by which async._recover() finds it after a restore as a
# job of a dead worker.
$node->safe_psql('postgres', q{
CREATE TABLE public.gate (open boolean NOT NULL);
INSERT INTO public.gate VALUES (false);
CREATE FUNCTION public.gated(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	WHILE NOT (SELECT g.open FROM public.gate g) LOOP
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT async.register('public.gated(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);
SELECT async.invoke('gated', '{"tenant": "g"}', 'gated-1');
});
ok( $node->poll_query_until('postgres', q{
	SELECT j.limited AND j.key = 'g' FROM async.running r JOIN async.jobs j ON j.id = r.job_id
	 WHERE j.event_id = 'gated-1' AND j.state = 'running' AND r.lease IS NULL}),
	'the gated job runs, marked limited, with its key and its reservation');
$node->safe_psql('postgres', "SELECT async.pause('gated')");
is( $node->safe_psql('postgres', "SELECT async.wait_idle('0.5 seconds')"),
	'f', 'wait_idle counts the running job of a paused keyed function');
my $dump = $node->basedir . '/keys_dump.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ],
	'pg_dump while the job runs');
my $gated = $node->safe_psql('postgres', "SELECT id FROM async.jobs WHERE event_id = 'gated-1'");
like(slurp_file($dump), qr/^COPY async\.running\b[^\n]*\n(?:[^\n]+\n)*?$gated\tgated\t/m,
	'the dump keeps the reservation of the running keyed job');
$node->safe_psql('postgres', "UPDATE public.gate SET open = true; SELECT async.resume('gated')");
is($node->safe_psql('postgres', "SELECT async.wait_idle('30 seconds')"),
	't', 'wait_idle returns once the job has ended');
is($node->safe_psql('postgres', "SELECT state FROM async.jobs WHERE event_id = 'gated-1'"),
	'succeeded', 'the gated job succeeded');

$node->stop;
done_testing();
