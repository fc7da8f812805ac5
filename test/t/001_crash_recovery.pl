# Crash recovery: jobs survive an immediate shutdown, a worker killed with
# SIGKILL mid-handler, a worker terminated by an administrator (with its
# job held by another session when the look for it comes), and a
# handler that terminates its own backend; a full three-attempt run ends in
# the dead-letter table.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = pg_async_node('crash', conf => q{
max_worker_processes = 16
restart_after_crash = on
});

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text, at timestamptz DEFAULT clock_timestamp());
-- how long each event's handler sleeps; changed by the test while jobs run
CREATE TABLE public.plan (event_id text PRIMARY KEY, seconds float8);
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects (event_id) VALUES (e->>'id');
	PERFORM pg_sleep(COALESCE((SELECT p.seconds FROM public.plan p WHERE p.event_id = e->>'id'),
	                          (e->>'s')::float8, 0));
END $$;
SELECT async.register('public.work(jsonb)', retry_delays => '{1 second}');
CREATE FUNCTION public.suicide(e jsonb) RETURNS void LANGUAGE sql
AS $$ SELECT pg_terminate_backend(pg_backend_pid()) $$;
SELECT async.register('public.suicide(jsonb)', retry_delays => '{1 second}');
CREATE FUNCTION public.always_fail(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'no luck' USING ERRCODE = '22023'; END $$;
SELECT async.register('public.always_fail(jsonb)', retry_delays => '{1 second,2 seconds}');
});

ok(wait_for_workers($node, 2),
	'two workers start');

# enqueue n jobs of 'work' with ids prefix-1..n sleeping s seconds
sub enqueue_work
{
	my ($prefix, $n, $s) = @_;
	$node->safe_psql('postgres', qq{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'work', '$prefix-' || i, jsonb_build_object('id', '$prefix-' || i, 's', $s)
  FROM generate_series(1, $n) i;
});
}

# check that every job with the prefix succeeded with exactly one effect row
sub check_exactly_once
{
	my ($prefix, $n, $what) = @_;
	ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = $n FROM async.jobs WHERE event_id LIKE '$prefix-%' AND state = 'succeeded'}),
		"$what: every job succeeds");
	is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM (SELECT event_id FROM public.effects WHERE event_id LIKE '$prefix-%'
                      GROUP BY event_id HAVING count(*) <> 1) d}),
		'0', "$what: no effect lost or duplicated");
	is( $node->safe_psql('postgres', qq{
SELECT count(DISTINCT event_id) FROM public.effects WHERE event_id LIKE '$prefix-%'}),
		$n, "$what: one effect per event");
}

# wait until a worker runs the given event, and return the worker's pid
sub running_pid
{
	my ($event_id) = @_;
	wait_for_running($node, $event_id) or die "event $event_id never ran";
	return $node->safe_psql('postgres',
		"SELECT pid FROM async.workers WHERE event_id = '$event_id'");
}

# 1. Immediate shutdown while jobs run: they are recovered after restart.
enqueue_work('imm', 40, 0.2);
running_pid('imm-1');
$node->stop('immediate');
$node->start;
check_exactly_once('imm', 40, 'immediate shutdown');
is($node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE state = 'running'"),
	'0', 'immediate shutdown: no job left running');

# 2. kill -9 of a worker mid-handler: the server restarts, the job is retried.
$node->safe_psql('postgres', "INSERT INTO public.plan VALUES ('k9-1', 600)");
enqueue_work('k9', 1, 0);
my $pid = running_pid('k9-1');
$node->safe_psql('postgres', "UPDATE public.plan SET seconds = 0 WHERE event_id = 'k9-1'");
kill 'KILL', $pid;
check_exactly_once('k9', 1, 'kill -9 of a worker');
is( $node->safe_psql('postgres', q{
SELECT attempts || ' ' || (errors->0->>'message')
  FROM async.jobs WHERE event_id = 'k9-1'}),
	'2 worker process exited while running the handler',
	'kill -9 of a worker: the killed attempt counts, the retry succeeds');
ok(wait_for_workers($node, 2),
	'kill -9 of a worker: the workers are back');

# 3. pg_terminate_backend of a worker mid-handler: only that worker restarts.
$node->safe_psql('postgres', "INSERT INTO public.plan VALUES ('term-1', 600)");
enqueue_work('term', 1, 0);
$pid = running_pid('term-1');
$node->safe_psql('postgres', "UPDATE public.plan SET seconds = 0 WHERE event_id = 'term-1'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
check_exactly_once('term', 1, 'terminated worker');
is($node->safe_psql('postgres', "SELECT attempts FROM async.jobs WHERE event_id = 'term-1'"),
	'2', 'terminated worker: the attempt counts once');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM async.workers WHERE pid <> $pid"),
	'terminated worker: the launcher starts a new one');

# 3b. The job of a terminated worker that another session holds locked when
# the look for it comes: the look leaves it, and the next comes about a
# second later, not at the regular interval (5 s).  The session holds it for
# 0.8 s from the termination: the look comes at once (the exiting worker
# wakes a colleague), so recovery within 4 s shows the early look.
$node->safe_psql('postgres', "INSERT INTO public.plan VALUES ('lock-1', 600)");
enqueue_work('lock', 1, 0);
$pid = running_pid('lock-1');
$node->safe_psql('postgres', "UPDATE public.plan SET seconds = 0 WHERE event_id = 'lock-1'");
my $holder = IPC::Run::start(
	[ $node->installed_command('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1',
	  '-d', $node->connstr('postgres'), '-c', qq{
BEGIN;
SELECT FROM async.jobs WHERE event_id = 'lock-1' FOR UPDATE;
SELECT pg_terminate_backend($pid);
SELECT pg_sleep(0.8);
COMMIT;} ],
	'>', \my $holder_out, '2>', \my $holder_err);
my $terminated = time();
$holder->finish or die "the session holding the job failed: $holder_err";
ok( $node->poll_query_until('postgres', q{
SELECT state <> 'running' FROM async.jobs WHERE event_id = 'lock-1'}),
	'held orphan: recovered once the lock goes');
my $took = sprintf('%.2f', time() - $terminated);
cmp_ok($took, '<', 4, "held orphan: recovered $took s after its worker went (not 5 s after the look)");
check_exactly_once('lock', 1, 'held orphan');

# 4. A handler that terminates its own backend, enqueued with innocent jobs in
# one transaction: it ends dead-lettered after 3 attempts, the others succeed
# on their first charged attempt.
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'work', 'inn-' || i, jsonb_build_object('id', 'inn-' || i) FROM generate_series(1, 5) i;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('suicide', 'suicide-1', '{}');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'work', 'inn-' || i, jsonb_build_object('id', 'inn-' || i) FROM generate_series(6, 10) i;
COMMIT;
});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM async.dead_letters WHERE event_id = 'suicide-1'"),
	'self-terminating handler: dead-lettered');
is( $node->safe_psql('postgres', q{
SELECT d.attempts || ' ' || jsonb_array_length(d.errors) || ' ' || j.state
  FROM async.dead_letters d JOIN async.jobs j USING (event_id) WHERE event_id = 'suicide-1'}),
	'3 3 dead', 'self-terminating handler: 3 attempts, each recorded');
check_exactly_once('inn', 10, 'jobs batched with a self-terminating handler');
is($node->safe_psql('postgres',
	"SELECT string_agg(DISTINCT attempts::text, ',') FROM async.jobs WHERE event_id LIKE 'inn-%'"),
	'1', 'jobs batched with a self-terminating handler: not charged for its crashes');

# 5. A full three-attempt run to the dead-letter table, delays shortened.
$node->safe_psql('postgres',
	"INSERT INTO async.jobs (function, event_id, payload) VALUES ('always_fail', 'af-1', '{\"x\": 1}')");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM async.dead_letters WHERE event_id = 'af-1'"),
	'three failures: dead-lettered');
is( $node->safe_psql('postgres', q{
SELECT attempts, reason, payload, errors->2->>'sqlstate',
       (errors->1->>'at')::timestamptz - (errors->0->>'at')::timestamptz >= interval '1 second',
       (errors->2->>'at')::timestamptz - (errors->1->>'at')::timestamptz >= interval '2 seconds'
  FROM async.dead_letters WHERE event_id = 'af-1'}),
	'3|exhausted|{"x": 1}|22023|t|t', 'three failures: attempts, reason and delays');
is($node->safe_psql('postgres', "SELECT state, attempts FROM async.jobs WHERE event_id = 'af-1'"),
	'dead|3', 'three failures: the job row stays, dead');

# 6. kill -9 of the launcher: the server restarts and so do the workers.
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_async launcher'");
kill 'KILL', $launcher;
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_async launcher' AND pid <> $launcher")
  or die 'launcher did not come back';
ok(wait_for_workers($node, 2),
	'kill -9 of the launcher: workers are back');
enqueue_work('after', 5, 0);
check_exactly_once('after', 5, 'after the launcher crash');

$node->stop;
done_testing();
