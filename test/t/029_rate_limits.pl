# Rate limits: at most rate_limit jobs of a function start in any window of
# rate_period, counted from the start times async.attempts shows, across
# the workers and across consumers in several sessions; meanwhile another
# function's jobs run at full speed.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('rates', conf => "pg_async.workers = 2\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.noop(jsonb)', name => 'rated', rate_limit => 50);
SELECT async.register('public.noop(jsonb)', name => 'free');
});
ok(wait_for_workers($node, 2), 'workers start');

# the most starts of function f in any window of 1 second (or $window)
# that begins at one of them: of its handlers (async.attempts), or of its
# claims (async.jobs.started_at)
sub busiest
{
	my ($f, $of, $window) = @_;
	my $from = $of eq 'claims' ? 'async.jobs' : 'async.attempts';
	$window //= '1 second';
	return $node->safe_psql('postgres', qq{
		WITH s AS (SELECT started_at FROM $from WHERE function = '$f')
		SELECT max((SELECT count(*) FROM s s2
					 WHERE s2.started_at >= s1.started_at
					   AND s2.started_at < s1.started_at + interval '$window'))
		  FROM s s1});
}

# how long the jobs of f took, from the first enqueue to the last finish
sub drain_seconds
{
	my ($f) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT extract(epoch FROM max(finished_at) - min(enqueued_at))
		  FROM async.jobs WHERE function = '$f'});
}

# the free function alone, for comparison
$node->safe_psql('postgres',
	"INSERT INTO async.jobs (function, payload) SELECT 'free', '{}' FROM generate_series(1, 20000)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 20000 FROM async.jobs WHERE function = 'free' AND state = 'succeeded'"),
	'20,000 jobs of an unlimited function run');
my $alone = drain_seconds('free');
$node->safe_psql('postgres', "DELETE FROM async.jobs WHERE function = 'free'");

# 300 jobs at 50 a second, and 20,000 unlimited ones, enqueued together
$node->safe_psql('postgres', q{
	INSERT INTO async.jobs (function, payload) SELECT 'rated', '{}' FROM generate_series(1, 300);
	INSERT INTO async.jobs (function, payload) SELECT 'free', '{}' FROM generate_series(1, 20000);
});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 20000 FROM async.jobs WHERE function = 'free' AND state = 'succeeded'"),
	'the unlimited jobs run beside the rate-limited ones');
my $beside = drain_seconds('free');
cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM async.jobs WHERE function = 'rated' AND state = 'succeeded'"),
	'<', 300, 'before the rate-limited ones are done');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 300 FROM async.jobs WHERE function = 'rated' AND state = 'succeeded'"),
	'the 300 rate-limited jobs run');
my $rated = $node->safe_psql('postgres',
	"SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM async.jobs WHERE function = 'rated'");
diag(sprintf('20,000 unlimited jobs: %.2f s alone, %.2f s beside 300 jobs at 50/s; those took %.2f s',
		$alone, $beside, $rated));
cmp_ok($rated, '>=', 5, 'the 300 jobs at 50 a second start over at least 5 seconds');
cmp_ok(busiest('rated', 'claims'), '<=', 50, 'no second claims more than 50 of them');
cmp_ok(busiest('rated', 'handlers'), '<=', 50, 'no second starts more than 50 of their handlers');
cmp_ok($beside, '<=', 2 * $alone + 1, 'the unlimited jobs run at full speed meanwhile');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM async.jobs WHERE function = 'rated' AND attempts <> 1"),
	'0', 'waiting for the limit spent no attempt');

# A handler that would start late, because a slow job ran before it in its
# batch, is given back rather than started (0.17): its claim counted it at
# the claim's time, and another worker's claim one window later would
# start as many again beside it.  Each round puts a job of 150 ms first in
# the batch (priority -1), then the rate-limited jobs, 5 a second (whose
# margin is 100 ms), enqueued together so that one claim takes them.
# The jobs given back, and the starts taken out of the window for them,
# are seen by triggers of the test's own (a batch that overran would give
# jobs back too, and take them out as well, but 150 ms is not an overrun).
# A start is not taken out when its claim has left the window already.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(0.15) $$;
SELECT async.register('public.slow(jsonb)', name => 'slow');
SELECT async.register('public.noop(jsonb)', name => 'bursty', rate_limit => 5);
CREATE TABLE public.taken_out (at timestamptz, n integer);
CREATE FUNCTION public.note_taken_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.taken_out
	SELECT o.s, o.c - w.c
	  FROM unnest(OLD.starts, OLD.counts) o(s, c) JOIN unnest(NEW.starts, NEW.counts) w(s, c) USING (s)
	 WHERE w.c < o.c;
	RETURN NULL;
END $$;
CREATE TRIGGER note_taken_out AFTER UPDATE ON async.rate_windows FOR EACH ROW
	WHEN (NEW.function = 'bursty')
	EXECUTE FUNCTION public.note_taken_out();
});
record_given_back($node, 'given_back', 'bursty');
for my $round (1 .. 8)
{
	# each round with the window empty, so that one claim takes both
	ok($node->poll_query_until('postgres', q{
			SELECT clock_timestamp() > COALESCE(max(started_at), '-infinity') + interval '1200 ms'
			  FROM async.jobs WHERE function = 'bursty'}),
		"round $round: the window of the last round has passed")
	  or last;
	$node->safe_psql('postgres', q{
		BEGIN;
		INSERT INTO async.jobs (function, payload, priority) VALUES ('slow', '{}', -1);
		INSERT INTO async.jobs (function, payload) SELECT 'bursty', '{}' FROM generate_series(1, 10);
		COMMIT;
	});
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM async.jobs WHERE function IN ('slow', 'bursty') AND state <> 'succeeded'"),
		"round $round: the slow job and the 10 rate-limited ones run")
	  or last;
}
cmp_ok(busiest('bursty', 'handlers'), '<=', 5,
	'no second starts more than 5 handlers, though some were claimed before a slow job');
my $given = $node->safe_psql('postgres', 'SELECT count(*) FROM public.given_back');
cmp_ok($given, '>', 0, 'jobs claimed before the slow job were given back');
my $taken = $node->safe_psql('postgres', 'SELECT COALESCE(sum(n), 0) FROM public.taken_out');
ok($taken > 0 && $taken <= $given,
	"their starts were taken out of the window, for a later claim to count again ($taken of $given)");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM async.jobs WHERE function = 'bursty' AND attempts <> 1"),
	'0', 'a job given back for starting late spent no attempt');
$node->safe_psql('postgres', 'DROP TRIGGER given_back ON async.jobs');
$node->safe_psql('postgres', 'DROP TRIGGER note_taken_out ON async.rate_windows');

# pg_dump keeps the windows (0.17): a function allowed 3 jobs an hour, that
# has started them, still holds its other jobs once restored.
$node->safe_psql('postgres', q{
SELECT async.register('public.noop(jsonb)', name => 'hourly', rate_limit => 3,
					  rate_period => '1 hour');
INSERT INTO async.jobs (function, payload) SELECT 'hourly', '{}' FROM generate_series(1, 5);
});
ok($node->poll_query_until('postgres', q{
		SELECT count(*) FILTER (WHERE state = 'succeeded') = 3
		   AND (SELECT held FROM async.stats WHERE function = 'hourly') = 2
		  FROM async.jobs WHERE function = 'hourly'}),
	'3 jobs of the hourly limit run, and 2 are held');
my $dump = $node->basedir . '/rates_dump.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'psql', '-XqAt', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'),
		'-f', $dump ], 'the dump is restored');
is($node->safe_psql('restored', q{
		SELECT held || ' ' || held_reason FROM async.stats WHERE function = 'hourly'}),
	'2 rate limit', 'the restored function still holds its 2 jobs for its window');

# consumers in three sessions share one limit of 30 a second
$node->safe_psql('postgres', q{
SELECT async.register_external('ext', rate_limit => 30);
CREATE PROCEDURE public.consume() LANGUAGE plpgsql AS $$
DECLARE
	j record;
	idle_since timestamptz := clock_timestamp();
BEGIN
	WHILE clock_timestamp() - idle_since < interval '3 seconds' LOOP
		FOR j IN SELECT * FROM async.claim('ext', 10, wait => '1 second') LOOP
			PERFORM async.complete(j.job_id, j.lease);
			idle_since := clock_timestamp();
		END LOOP;
		COMMIT;
	END LOOP;
END;
$$;
INSERT INTO async.jobs (function, payload) SELECT 'ext', '{}' FROM generate_series(1, 120);
});
my @consumers = map {
	IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
			'-c', 'CALL public.consume()' ], '>', \my $out, '2>', \my $err)
} 1 .. 3;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 120 FROM async.jobs WHERE function = 'ext' AND state = 'succeeded'"),
	'three consumers complete the 120 jobs');
is(join(',', map { $_->finish ? 'ok' : 'failed' } @consumers), 'ok,ok,ok',
	'the consumers ended without error');
cmp_ok($node->safe_psql('postgres',
		"SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM async.jobs WHERE function = 'ext'"),
	'>=', 3, 'the 120 jobs at 30 a second start over at least 3 seconds');
cmp_ok(busiest('ext', 'claims'), '<=', 30, 'no second starts more than 30 of them, across the sessions');

# A worker takes its lock on async.rate_windows without waiting, with those
# on the other tables, before it starts: one that waited for it while
# holding the others could deadlock with DROP EXTENSION, which takes them
# all.  With one worker, and the table locked as DROP EXTENSION would, a
# rated job's wake-up finds pg_async not ready: the worker ends its
# transaction and tries again after its longest sleep (5 s), twice here,
# the job still queued, where one that waited for the lock in its claim
# would still be in that transaction.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET pg_async.workers = 1;
SELECT pg_reload_conf();
});
ok(wait_for_workers($node, 1), 'one worker left');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE async.rate_windows IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (function, payload, event_id) VALUES ('rated', '{}', 'rated-locked')});
my $since = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
foreach my $round (1, 2)
{
	ok($node->poll_query_until('postgres', qq{
		SELECT a.state = 'idle' AND a.state_change > '$since'
		   AND (SELECT state FROM async.jobs WHERE event_id = 'rated-locked') = 'queued'
		  FROM pg_stat_activity a WHERE a.backend_type = 'pg_async worker'}),
		"with async.rate_windows locked, the worker ends its transaction ($round)");
	$since = $node->safe_psql('postgres',
		q{SELECT state_change FROM pg_stat_activity WHERE backend_type = 'pg_async worker'});
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE a.backend_type = 'pg_async worker' AND NOT l.granted}),
	'0', 'and waits for no lock');
$locker->query_safe('COMMIT');
$locker->quit;
ok($node->poll_query_until('postgres',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'rated-locked'"),
	'the rated job runs once the lock is gone');

$node->stop;
done_testing();
