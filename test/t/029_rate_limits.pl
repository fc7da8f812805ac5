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

# the most starts of function f in any window of 1 second that begins at
# one of them: of its handlers (async.attempts), or of its claims
# (async.jobs.started_at)
sub busiest_second
{
	my ($f, $of) = @_;
	my $from = $of eq 'claims' ? 'async.jobs' : 'async.attempts';
	return $node->safe_psql('postgres', qq{
		WITH s AS (SELECT started_at FROM $from WHERE function = '$f')
		SELECT max((SELECT count(*) FROM s s2
					 WHERE s2.started_at >= s1.started_at
					   AND s2.started_at < s1.started_at + interval '1 second'))
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
cmp_ok(busiest_second('rated', 'claims'), '<=', 50, 'no second claims more than 50 of them');
cmp_ok(busiest_second('rated', 'handlers'), '<=', 50, 'no second starts more than 50 of their handlers');
cmp_ok($beside, '<=', 2 * $alone + 1, 'the unlimited jobs run at full speed meanwhile');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM async.jobs WHERE function = 'rated' AND attempts <> 1"),
	'0', 'waiting for the limit spent no attempt');

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
cmp_ok(busiest_second('ext', 'claims'), '<=', 30, 'no second starts more than 30 of them, across the sessions');

$node->stop;
done_testing();
