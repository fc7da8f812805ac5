# The ready floor (src/ready_floor.c) while a snapshot holds back the xmin
# horizon: the claims start their walk of jobs_ready_idx at the floor, past
# the entries of the jobs already run, which no VACUUM can remove
# meanwhile.  Each way a job becomes ready below the floor must still run
# it: an enqueue with an old run_at, a long enqueueing transaction, a
# resume, a job row another session held locked while claims passed it, an
# aborted DELETE.  A duplicate event_id is still refused inside its window,
# async.health() names the holder, and the retention keeps the finished
# jobs until the snapshot is released, then deletes them; meanwhile it
# does not bring an idle database's workers back for them.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

# no sweep but the first: the jobs below the floor are found because
# their commits lowered it, until case 5 asks for sweeps again
my $node = pg_async_node('held_xmin',
	conf => "pg_async.retention = '2s'\npg_async.sweep_interval = '1h'\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text);
CREATE FUNCTION public.work(e jsonb, c async.context) RETURNS void LANGUAGE sql
AS $$INSERT INTO public.effects VALUES (c.event_id)$$;
SELECT async.register('public.work(jsonb, async.context)', name => 'work');
});
ok(wait_for_workers($node, 2), 'workers start');

# session starts a psql that reads statements from its stdin, so that a
# transaction stays open between them; send() writes one and waits for
# the marker it echoes.
sub session
{
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(600));
	my $n = 0;
	return {
		send => sub {
			my ($sql) = @_;
			$n++;
			$in .= "$sql\n\\echo done-$n\n";
			my $deadline = time + 60;
			while ($out !~ /done-$n/ && time < $deadline)
			{
				$h->pump_nb;
				select(undef, undef, undef, 0.05);
			}
			return $out =~ /done-$n/;
		},
		finish => sub { $in .= "\\q\n"; $h->finish; },
	};
}

# drain enqueues n jobs with prefix and waits until all have run
sub drain
{
	my ($prefix, $n) = @_;
	$node->safe_psql('postgres', qq{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'work', '$prefix-' || i, '{}' FROM generate_series(1, $n) i});
	return $node->poll_query_until('postgres', qq{
SELECT count(*) = $n FROM public.effects WHERE event_id LIKE '$prefix-%'});
}

my $holder = session();
ok($holder->{send}('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;'), 'a snapshot is held');
ok(drain('a', 20000), '20000 jobs run under the held snapshot');

# The jobs of one INSERT are due each at the time of its row, in the order
# of their ids: the floor tells them apart, and a claim starts past those
# of them already run.  (When they shared their transaction's now(), each
# claim walked the entries of every job of the INSERT run before it.)
# Read at once: the retention (2 s) deletes them.
my ($ordered, $a_last) = split /\|/, $node->safe_psql('postgres', q{
SELECT count(DISTINCT run_at) > 1 AND bool_and(run_at >= previous), max(run_at)
  FROM (SELECT run_at, lag(run_at, 1, '-infinity') OVER (ORDER BY id) AS previous
          FROM async.jobs WHERE event_id LIKE 'a-%') j});
is($ordered, 't', 'the jobs of one INSERT are due in the order of their ids, not all at one time');
ok(drain('b', 20000), '20000 more');

# the floor is in use, and has passed the first INSERT's jobs: no claim
# walks their entries any more
ok($node->poll_query_until('postgres', qq{SELECT floor > '$a_last' FROM async._ready_floor()}),
	'the ready floor has passed the jobs run');

# 1. An enqueue with a run_at far below the floor
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('work', 'old-run-at', '{}', now() - interval '1 hour')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.effects WHERE event_id = 'old-run-at'}),
	'a job enqueued with an old run_at runs');

# 2. A transaction that began before the floor rose enqueues, and commits
my $slow = session();
ok($slow->{send}('BEGIN; SELECT now();'), 'a transaction begins');
ok(drain('c', 5000), 'jobs run meanwhile');
ok($node->poll_query_until('postgres', q{
SELECT floor >= (SELECT min(run_at) FROM async.jobs WHERE event_id LIKE 'c-%') FROM async._ready_floor()}),
	'the floor rises to the jobs enqueued after its start');
ok($slow->{send}(q{INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'long-xact', '{}'); COMMIT;}),
	'it enqueues and commits');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.effects WHERE event_id = 'long-xact'}),
	'its job, whose run_at is below the floor, runs');

# 3. A paused function's job, resumed after the floor passed it
$node->safe_psql('postgres', q{SELECT async.pause('work')});
$node->safe_psql('postgres', q{INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'paused', '{}')});
$node->safe_psql('postgres', q{
SELECT async.register('public.work(jsonb, async.context)', name => 'other');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'other', 'd-' || i, '{}' FROM generate_series(1, 2000) i});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 2000 FROM public.effects WHERE event_id LIKE 'd-%'}),
	"another function's jobs run while it is paused");
ok($node->poll_query_until('postgres', q{
SELECT floor > (SELECT run_at FROM async.jobs WHERE event_id = 'paused') FROM async._ready_floor()}),
	'the floor passes the paused job');
$node->safe_psql('postgres', q{SELECT async.resume('work')});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.effects WHERE event_id = 'paused'}),
	'the paused job runs once resumed');

# 4. An aborted DELETE of a job, due meanwhile
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('work', 'undeleted', '{}', now() + interval '2 seconds')});
my $locker = session();
ok($locker->{send}(q{BEGIN; DELETE FROM async.jobs WHERE event_id = 'undeleted';}), 'a session deletes a job');
ok($node->poll_query_until('postgres', q{SELECT run_at < now() FROM async.jobs WHERE event_id = 'undeleted'}),
	'the job is due');
ok(drain('f', 2000), 'jobs behind it run');
ok($node->poll_query_until('postgres', q{
SELECT floor > (SELECT run_at FROM async.jobs WHERE event_id = 'undeleted') FROM async._ready_floor()}),
	'the floor passes the deleted job');
ok($locker->{send}('ROLLBACK;'), 'the DELETE is rolled back');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.effects WHERE event_id = 'undeleted'}),
	'the job runs');

# 5. A job row locked by another session while claims pass it (no trigger
# sees a lock): the sweep finds it.  It is due in 2 s, locked before that,
# and the claims pass it once it is due.  It stays behind until sweeps are
# asked for again.
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('work', 'locked', '{}', now() + interval '2 seconds')});
ok($locker->{send}(q{BEGIN; SELECT id FROM async.jobs WHERE event_id = 'locked' FOR UPDATE;}), 'a session locks a job');
ok($node->poll_query_until('postgres', q{SELECT run_at < now() FROM async.jobs WHERE event_id = 'locked'}),
	'the job is due');
ok(drain('e', 2000), 'jobs behind it run');
ok($node->poll_query_until('postgres', q{
SELECT floor > (SELECT run_at FROM async.jobs WHERE event_id = 'locked') FROM async._ready_floor()}),
	'the floor passes the locked job');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.effects WHERE event_id = 'locked'}), '0',
	'the locked job has not run');
ok($locker->{send}('COMMIT;'), 'the lock is released');
ok(drain('g', 2000), 'more jobs run');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.effects WHERE event_id = 'locked'}), '0',
	'the claims, starting at the floor, do not see the released job');
$node->safe_psql('postgres', q{ALTER SYSTEM SET pg_async.sweep_interval = '1s'; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM public.effects WHERE event_id = 'locked'}),
	'the job runs after the lock is released');

# The retention has deleted jobs under the snapshot (the first drains'),
# and waits now: see case 7
$node->wait_for_log(qr/pg_async keeps finished jobs past pg_async.retention while the xmin horizon is held/);
pass('the log says the retention waits');

# 6. Idempotency: a duplicate inside the window is refused, under the snapshot
ok(drain('dup', 1), 'an event runs');
is($node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'dup-1', '{}')
ON CONFLICT (event_id) DO NOTHING RETURNING id}), '', 'its event_id is refused again');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.effects WHERE event_id = 'dup-1'}), '1',
	'and runs once');

# 7. Under the snapshot, the retention keeps the finished jobs past their
# retention: once a round has deleted jobs (of the first drains), the next
# ones wait until those deletions can be removed, as deleting more would
# only write pages again.  dup-1 finished after the log said so: with no
# snapshot held, a round (every 10 s) would have deleted it within 12 s.
ok($node->poll_query_until('postgres', q{
SELECT COALESCE(clock_timestamp() > (SELECT finished_at + interval '25 seconds'
                                        FROM async.jobs WHERE event_id = 'dup-1'), true)}),
	'25 s pass after a job finished, or it is deleted');
is($node->safe_psql('postgres', q{SELECT state FROM async.jobs WHERE event_id = 'dup-1'}), 'succeeded',
	'the job is kept');
is($node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'dup-1', '{}')
ON CONFLICT (event_id) DO NOTHING RETURNING id}), '', 'and its event_id still refused');

# 8. async.health() names the holder and the cost
my $health = $node->safe_psql('postgres', q{
SELECT status || ': ' || detail FROM async.health(xmin_age_warning => '0') WHERE "check" = 'xmin_horizon'});
like($health, qr/^(warning|critical): process \d+ \(client backend, user \w+, application '[^']*', idle in transaction\)/,
	'health names the session holding the snapshot');
like($health, qr/async\.jobs has \d+ dead rows/, 'and says what it costs');
note $health;

# 9. A database that goes idle while the retention waits is not woken for
# it at once: its kept jobs are past their retention, but no round could
# delete them (the workers would leave and come back in a loop).
$node->safe_psql('postgres', q{ALTER SYSTEM SET pg_async.worker_idle_timeout = '1s'; SELECT pg_reload_conf()});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM async.workers}),
	"the idle database's workers leave");
my $left = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
ok($node->poll_query_until('postgres', qq{
SELECT count(*) > 0 OR clock_timestamp() > '$left'::timestamptz + interval '15 seconds' FROM async.workers}),
	'15 s pass, or a worker comes back');
is($node->safe_psql('postgres', q{SELECT count(*) FROM async.workers}), '0',
	'no worker came back for the kept jobs');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET pg_async.worker_idle_timeout; SELECT pg_reload_conf()});

# 10. Once the snapshot is released, the retention deletes what it kept (a
# job wakes the workers)
my $log_offset = -s $node->logfile;
ok($holder->{send}('COMMIT;'), 'the snapshot is released');
ok(drain('wake', 1), 'a job runs');
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM async.jobs WHERE event_id = 'dup-1' OR event_id LIKE 'a-%'}),
	'the finished jobs kept under it are deleted');
$node->wait_for_log(qr/pg_async deletes finished jobs past pg_async.retention again/, $log_offset);
pass('the log says the retention deletes again');

$holder->{finish}();
$slow->{finish}();
$locker->{finish}();

# no job is left behind
is($node->safe_psql('postgres', q{SELECT count(*) FROM async.jobs WHERE finished_at IS NULL}), '0',
	'every job ran');
$node->stop;
done_testing();
