# Worker-side attacks by a non-superuser role (the security review's items
# 6 to 9): advisory locks held against the claims and the recovery, one
# job's bad data in a worker's transaction and in the recovery, an error
# message too large for jsonb, and a handler that catches its timeout.
# Each must leave other roles' jobs running.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('hardening', conf => q{
max_worker_processes = 16
restart_after_crash = on
});

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE ROLE mallory LOGIN;
CREATE ROLE victim LOGIN;
CREATE SCHEMA mallory AUTHORIZATION mallory;
CREATE SCHEMA victim AUTHORIZATION victim;
CREATE TABLE public.effects (event_id text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT, SELECT ON public.effects TO PUBLIC;
SET ROLE victim;
CREATE FUNCTION victim.work(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects (event_id) VALUES (e->>'id');
	PERFORM pg_sleep(COALESCE((e->>'s')::float8, 0));
END $$;
SELECT async.register('victim.work(jsonb)', name => 'victim_work', retry_delays => '{1 hour}');
SELECT async.register('victim.work(jsonb)', name => 'victim_limited', concurrency => 1);
RESET ROLE;
});
ok(wait_for_workers($node, 2), 'two workers start');

# the pids of the workers, to tell whether one exited
sub worker_pids
{
	return $node->safe_psql('postgres', q{
SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker'});
}

# victim enqueues n jobs of function with ids prefix-1..n; true once all succeed
sub victim_jobs_run
{
	my ($function, $prefix, $n) = @_;
	$node->safe_psql('postgres', qq{
SET ROLE victim;
INSERT INTO async.jobs (function, event_id, payload)
SELECT '$function', '$prefix-' || i, jsonb_build_object('id', '$prefix-' || i)
  FROM generate_series(1, $n) i;
});
	return $node->poll_query_until('postgres', qq{
SELECT count(*) = $n FROM async.jobs WHERE event_id LIKE '$prefix-%' AND state = 'succeeded'});
}

# ---------------------------------------------------------------------------
# 9. mallory holds the advisory locks that serialized the claims and the
# recovery before 0.5: claims of a limited function and the recovery of a
# killed worker's job go on.
# ---------------------------------------------------------------------------
my ($in, $out, $err) = ('', '', '');
my $holder = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres') . ' user=mallory',
	  '-c', 'SELECT pg_advisory_lock(7370716173796564), pg_advisory_lock(7370716173796563)',
	  '-c', 'SELECT pg_sleep(600)' ],
	'<', \$in, '>', \$out, '2>', \$err);
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND a.usename = 'mallory'}),
	'mallory holds both advisory locks');
ok(victim_jobs_run('victim_limited', 'limited', 5),
	"a limited function's jobs are claimed while mallory holds the claim's old lock");

$node->safe_psql('postgres', q{
SET ROLE victim;
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('victim_work', 'sleeper', '{"id": "sleeper", "s": 60}');
});
ok(wait_for_running($node, 'sleeper'), 'a long job of victim runs');
$node->safe_psql('postgres', q{
SELECT pg_terminate_backend(pid) FROM async.workers WHERE event_id = 'sleeper'});
ok( $node->poll_query_until('postgres', q{
SELECT state = 'queued' AND last_error = 'worker process exited while running the handler'
  FROM async.jobs WHERE event_id = 'sleeper'}),
	"the killed worker's job is recovered while mallory holds the recovery's old lock");
$holder->kill_kill;
$node->safe_psql('postgres', q{DELETE FROM async.jobs WHERE event_id = 'sleeper'});
ok(wait_for_workers($node, 2), 'two workers again');

# ---------------------------------------------------------------------------
# 6. Bad data: recording mallory's failed attempt fails (a fault injected
# on async.dead_letters).  The worker survives, her job alone is settled as
# a dead letter with reason 'error', and victim's jobs run.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.event_id LIKE 'poison%' AND NEW.reason <> 'error' THEN
		RAISE EXCEPTION 'bad data of %', NEW.event_id;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON async.dead_letters
	FOR EACH ROW EXECUTE FUNCTION public.poison();
SET ROLE mallory;
CREATE FUNCTION mallory.fail(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(COALESCE((e->>'s')::float8, 0));
	RAISE EXCEPTION 'mallory fails';
END $$;
SELECT async.register('mallory.fail(jsonb)', name => 'mallory_fail', max_attempts => 1);
});
my $pids = worker_pids();
$node->safe_psql('postgres', q{
SET ROLE mallory;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('mallory_fail', 'poison-1', '{}');
});
ok( $node->poll_query_until('postgres', q{
SELECT reason = 'error' AND last_error LIKE 'pg_async could not record the failed attempt: bad data of poison-1%'
  FROM async.dead_letters WHERE event_id = 'poison-1'}),
	'a failure that cannot be recorded is settled alone, with reason error');
ok(victim_jobs_run('victim_work', 'after-poison', 5), "victim's jobs run after it");
is(worker_pids(), $pids, 'no worker exited for it');

# the same in the recovery of a killed worker's job
$node->safe_psql('postgres', q{
SET ROLE mallory;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('mallory_fail', 'poison-2', '{"s": 60}');
});
ok(wait_for_running($node, 'poison-2'), "mallory's long job runs");
$node->safe_psql('postgres', q{
SELECT pg_terminate_backend(pid) FROM async.workers WHERE event_id = 'poison-2'});
ok( $node->poll_query_until('postgres', q{
SELECT reason = 'error' AND last_error LIKE 'pg_async could not recover the job: bad data of poison-2%'
  FROM async.dead_letters WHERE event_id = 'poison-2'}),
	'a job the recovery cannot charge is settled alone, with reason error');
ok(victim_jobs_run('victim_work', 'after-poison-2', 5), "victim's jobs run after it");
$node->safe_psql('postgres', q{DROP TRIGGER poison ON async.dead_letters});
ok(wait_for_workers($node, 2), 'two workers again');

# ---------------------------------------------------------------------------
# 7. An error message larger than jsonb allows (256 MB).
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
SET ROLE mallory;
CREATE FUNCTION mallory.huge(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '%', repeat('x', 300 * 1024 * 1024);
END $$;
SELECT async.register('mallory.huge(jsonb)', name => 'mallory_huge', max_attempts => 2,
                      retry_delays => '{0}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('mallory_huge', 'huge-1', '{}');
});
$pids = worker_pids();
ok( $node->poll_query_until('postgres', q{
SELECT state = 'dead' AND attempts = 2 FROM async.jobs WHERE event_id = 'huge-1'}),
	'a handler raising a 300 MB message is retried and dead-lettered');
is( $node->safe_psql('postgres', q{
SELECT octet_length(last_error) BETWEEN 8192 AND 8300 AND last_error LIKE 'xxx%bytes cut)'
  FROM async.dead_letters WHERE event_id = 'huge-1'}),
	't', 'its message is kept cut to 8 kB');
is(worker_pids(), $pids, 'no worker exited for it');
ok(victim_jobs_run('victim_work', 'after-huge', 5), "victim's jobs run after it");

# ---------------------------------------------------------------------------
# 8. A handler that catches the cancel of its timeout, again and again: it
# loses its worker, the attempts are charged, and victim's jobs run.
# ---------------------------------------------------------------------------
my $offset = -s $node->logfile;
$node->safe_psql('postgres', q{
SET ROLE mallory;
CREATE FUNCTION mallory.stubborn(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	LOOP
		BEGIN
			PERFORM pg_sleep(0.05);
		EXCEPTION WHEN query_canceled THEN
			NULL;
		END;
	END LOOP;
END $$;
SELECT async.register('mallory.stubborn(jsonb)', name => 'mallory_stubborn', max_attempts => 2,
                      retry_delays => '{0}', timeout => '300 ms');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('mallory_stubborn', 'stubborn-1', '{}');
});
ok(victim_jobs_run('victim_work', 'beside-stubborn', 5), "victim's jobs run beside it");
ok( $node->poll_query_until('postgres', q{
SELECT state = 'dead' AND attempts = 2 FROM async.jobs WHERE event_id = 'stubborn-1'}),
	'a handler that catches its timeout is stopped, charged and dead-lettered');
like(slurp_file($node->logfile, $offset),
	qr/the handler of function "mallory_stubborn" event "stubborn-1" ignored its timeout of 300 ms; its worker exits/,
	'the server log says why its worker exited');
ok(victim_jobs_run('victim_work', 'after-stubborn', 5), "victim's jobs run after it");

$node->stop;
done_testing();
