# A claim of keyed jobs reserves only the jobs it claimed.  The walk of the
# keys (async._keyed_jobs) is a PL/pgSQL function, and its queries take
# snapshots newer than the claim statement's: it can lock and return jobs
# committed after the claim began, which the claim's UPDATE does not see.
# Up to 0.17 the claim reserved every job the walk returned: such a job
# stayed queued, its key looked full for good, and its jobs never ran.
#
# The test holds a worker's claim inside the walk (the walk is wrapped in a
# function that first waits for an advisory lock the test holds).  Jobs of
# ten new keys, enqueued by a transaction that began before the claim (so
# they are due at the claim's time), commit meanwhile, and the claim goes
# on: every job must run, and no reservation may be left.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = pg_async_node('keyed_race', workers => 1);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.keyed(e jsonb) RETURNS void LANGUAGE sql AS $$SELECT$$;
SELECT async.register('public.keyed(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);

-- the walk, made to wait for the test's advisory lock 4242 first
ALTER FUNCTION async._keyed_jobs(text, integer, integer, timestamptz, text)
	RENAME TO _keyed_jobs_walk;
CREATE FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer,
								  p_at timestamptz, p_from text)
	RETURNS TABLE (id bigint, function text, suspect boolean, run_at timestamptz,
				   priority smallint, key text, bytes integer)
	LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_catalog.pg_advisory_lock_shared(4242);
	PERFORM pg_catalog.pg_advisory_unlock_shared(4242);
	RETURN QUERY SELECT * FROM async._keyed_jobs_walk(p_function, p_key_concurrency, p_max,
													  p_at, p_from);
END $$;
});
# the worker prepares its claims afresh, with the wrapper
$node->restart;
ok(wait_for_workers($node, 1), 'the worker starts');

# the test's session takes the lock, and enqueues jobs of ten new keys in
# a transaction it keeps open until told
my ($in, $out, $err) = ('', '', '');
my $holder = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$in .= q{
SELECT pg_advisory_lock(4242);
BEGIN;
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'keyed', 'late-' || i, jsonb_build_object('tenant', 'k' || i) FROM generate_series(1, 10) i;
\echo ready
};
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
$holder->pump_nb while $out !~ /ready/ && $holder->pumpable && time < $deadline;
like($out, qr/ready/, 'the test holds the lock and ten jobs uncommitted');

# a job wakes the worker, whose claim waits in the walk
$node->safe_psql('postgres',
	"INSERT INTO async.jobs (function, event_id, payload) VALUES ('keyed', 'first', '{\"tenant\": \"x\"}')");
ok( $node->poll_query_until('postgres', q{
	SELECT EXISTS (SELECT FROM pg_locks l JOIN async.workers w ON w.pid = l.pid
					WHERE l.locktype = 'advisory' AND l.objid = 4242 AND NOT l.granted)}),
	'a claim waits inside the walk of the keys');

# the ten jobs commit after the claim's snapshot, before its walk
$in .= "COMMIT;\nSELECT pg_advisory_unlock(4242);\n\\q\n";
ok($holder->finish, 'the test lets the claim go on') or diag($err);

ok( $node->poll_query_until('postgres', q{
	SELECT count(*) = 11 FROM async.jobs WHERE function = 'keyed' AND state = 'succeeded'}),
	'every job runs, those committed during the claim too');
is( $node->safe_psql('postgres', q{
	SELECT string_agg(j.event_id || ' ' || j.state, ', ' ORDER BY j.id)
	  FROM async.running r JOIN async.jobs j ON j.id = r.job_id}),
	'', 'no reservation is left behind');
is($node->safe_psql('postgres', "SELECT max(attempts) FROM async.jobs WHERE function = 'keyed'"),
	'1', 'each ran on its first attempt');
# the first worker releases a reservation a queued job holds (below), and
# the jobs would then run: so the race must not have made one
ok(!$node->log_contains('released \\d+ reservations? of (a job|jobs) that (is|are) not running'),
	'the workers found no reservation of a queued job to release');

# A reservation that a queued job holds, as 0.17 could leave, is released
# by the first worker of the database within seconds (every 5 s), with a
# warning, and the key's job runs.
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
SELECT async.pause('keyed');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('keyed', 'held', '{"tenant": "z"}');
INSERT INTO async.running (job_id, function, key)
SELECT id, function, key FROM async.jobs WHERE event_id = 'held';
SELECT async.resume('keyed');
});
ok($node->wait_for_log(qr/WARNING:  pg_async released 1 reservation of a job that is not running/, $log_offset),
	'a stray reservation is released, with a warning');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'held'"),
	'and its key\'s job runs');

$node->stop;
done_testing();
