# Workers on demand: a database with nothing to run holds no worker once
# pg_async.worker_idle_timeout has passed, an enqueue's commit starts one
# (a cold start), a job due later starts within a second of its run_at,
# and with fewer worker slots (pg_async.max_workers) than busy databases,
# none starves.
#
# 1. Idle databases hold no worker after the idle timeout.
# 2. Cold starts: enqueue commit to handler start in an idle database, 50
#    tries; p50 and p99 are printed.
# 3. A job due in 3 s in an idle database starts within a second of run_at;
#    a job of a prepared transaction starts at COMMIT PREPARED, and one
#    enqueued while pg_async.workers is 0 once the setting is raised.
# 4. Fairness: 1,000,000 jobs queued in one database, pg_async.max_workers
#    = 2, and a trickle of jobs in three others: the trickle's jobs start
#    with p99 under 1 s, and the backlog keeps draining.
# 5. 100 databases with the extension, all idle: no worker process, and the
#    launcher's CPU under 1% of a core.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pg_async_node('on_demand', databases => '*', workers => 2, conf => q{
max_worker_processes = 24
pg_async.max_workers = 8
pg_async.worker_idle_timeout = '1s'
max_prepared_transactions = 2
});

# setup_database creates database db with pg_async and a handler that
# records when each event's handler started.
sub setup_database
{
	my ($db, $template) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db" . ($template ? " TEMPLATE $template" : ''));
	return if $template;
	$node->safe_psql($db, q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text, started timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.effects (event_id) VALUES (e->>'id') $$;
CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.work(jsonb)');
SELECT async.register('public.noop(jsonb)');
});
	return;
}

# workers_in counts the pg_async workers connected to db ('' for all).
sub workers_in
{
	my ($db) = @_;
	return $node->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async worker'}
		  . ($db ? " AND datname = '$db'" : ''));
}

# wait_no_worker waits until db holds no worker; false if it still does
# after 30 s.
sub wait_no_worker
{
	my ($db) = @_;
	my $deadline = time + 30;
	while (time < $deadline)
	{
		return 1 if workers_in($db) eq '0';
		usleep(20_000);
	}
	return 0;
}

# percentile of a sorted list
sub percentile
{
	my ($p, @sorted) = @_;
	return $sorted[ int($p * (@sorted - 1) + 0.5) ];
}

# 1. Idle databases hold no worker.
setup_database($_) for qw(cold sched);
$node->safe_psql('cold', q{SELECT async.invoke('work', '{"id": "first"}', 'first')});
ok($node->poll_query_until('cold', "SELECT count(*) = 1 FROM public.effects"),
	'cold: a job runs');
ok(wait_no_worker('cold') && wait_no_worker('sched'),
	'idle databases hold no worker once the idle timeout passed');
is($node->safe_psql('cold', 'SELECT count(*) FROM async.workers'), '0',
	'async.workers is empty in an idle database');
like($node->safe_psql('cold', q{SELECT status || ': ' || detail FROM async.health() WHERE "check" = 'workers'}),
	qr/^ok: idle/, 'health: an idle database is ok, and said to be idle');

# 2. Cold starts.
my @cold;
for my $try (1 .. 50)
{
	wait_no_worker('cold') or last;
	$node->safe_psql('cold',
		"INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'cold-$try', '{\"id\": \"cold-$try\"}')");
	$node->poll_query_until('cold',
		"SELECT count(*) = 1 FROM public.effects WHERE event_id = 'cold-$try'") or last;
	push @cold, $node->safe_psql('cold', qq{
SELECT round(extract(epoch FROM f.started - j.enqueued_at) * 1000, 1)
  FROM public.effects f JOIN async.jobs j ON j.event_id = f.event_id
 WHERE f.event_id = 'cold-$try'});
}
is(scalar @cold, 50, 'cold starts: 50 tries, each from a database holding no worker');
@cold = sort { $a <=> $b } @cold;
my ($cold_p50, $cold_p99) = (percentile(0.5, @cold), percentile(0.99, @cold));
diag("cold start, enqueue commit to handler start, 50 tries: p50 $cold_p50 ms, p99 $cold_p99 ms");
ok($cold_p50 < 1000, "cold start p50 $cold_p50 ms is under a second");

# 3. A job due later, in an idle database, starts within a second of run_at.
ok(wait_no_worker('sched'), 'sched: idle');
$node->safe_psql('sched', q{
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('work', 'later', '{"id": "later"}', clock_timestamp() + interval '3 seconds')});
ok(wait_no_worker('sched'), 'sched: still no worker before the job is due');
ok($node->poll_query_until('sched', "SELECT count(*) = 1 FROM public.effects"),
	'sched: the job due later runs');
my $late = $node->safe_psql('sched', q{
SELECT round(extract(epoch FROM f.started - j.run_at) * 1000)
  FROM public.effects f JOIN async.jobs j ON j.event_id = f.event_id});
ok($late >= 0 && $late < 1000, "sched: it starts $late ms after its run_at (0 to 1000)");

# A job enqueued in a prepared transaction wakes nobody at PREPARE: its
# COMMIT PREPARED starts an idle database's workers.
ok(wait_no_worker('sched'), 'sched: idle again');
$node->safe_psql('sched', q{
BEGIN;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'prepared', '{"id": "prepared"}');
PREPARE TRANSACTION 'enqueue';
});
$node->safe_psql('sched', q{COMMIT PREPARED 'enqueue'});
my $t0 = time;
ok($node->poll_query_until('sched', "SELECT count(*) = 1 FROM public.effects WHERE event_id = 'prepared'"),
	'sched: the job of a prepared transaction runs after COMMIT PREPARED');
ok(time - $t0 < 3, sprintf('sched: within %.2f s of COMMIT PREPARED (under 3 s)', time - $t0));

# A job enqueued in an idle database while pg_async.workers is 0: its
# commit still asks the launcher for workers, which takes the database out
# of idle, so that it gets them once the setting is raised.  Before, the
# commit asked for nothing, and the job waited for the next enqueue.
ok(wait_no_worker('sched'), 'sched: idle before pg_async.workers goes to 0');
ok($node->poll_query_until('sched', 'SELECT idle FROM async._database_workers()'),
	'sched: marked idle');
$node->append_conf('postgresql.conf', "pg_async.workers = 0\n");
$node->reload;
$node->poll_query_until('sched', "SELECT current_setting('pg_async.workers') = '0'")
  or die 'pg_async.workers did not become 0';
$node->safe_psql('sched',
	q{INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'zero', '{"id": "zero"}')});
ok($node->poll_query_until('sched', 'SELECT NOT idle FROM async._database_workers()'),
	'sched: the commit takes the database out of idle');
$node->append_conf('postgresql.conf', "pg_async.workers = 2\n");
$node->reload;
ok($node->poll_query_until('sched', "SELECT count(*) = 1 FROM public.effects WHERE event_id = 'zero'"),
	'sched: a job enqueued while pg_async.workers was 0 runs once it is raised');

# 4. Fairness: one backlog, three trickles, two worker slots in all.
$node->append_conf('postgresql.conf', "pg_async.max_workers = 2\n");
$node->reload;
setup_database($_) for qw(backlog t1 t2 t3);
$node->safe_psql('backlog', q{
INSERT INTO async.jobs (function, payload)
SELECT 'noop', '{}' FROM generate_series(1, 1000000)});
ok($node->poll_query_until('backlog',
		"SELECT count(*) > 1000 FROM async.jobs WHERE state = 'succeeded'"),
	'backlog: draining');
my @trickles;
for my $db (qw(t1 t2 t3))
{
	push @trickles, IPC::Run::start(
		[ 'psql', '-X', '-q', '-d', $node->connstr($db), '-c', q{
DO $$
BEGIN
	FOR i IN 1 .. 100 LOOP
		INSERT INTO async.jobs (function, event_id, payload)
		VALUES ('work', 'trickle-' || i, jsonb_build_object('id', 'trickle-' || i));
		COMMIT;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$} ],
		'>', \my $out, '2>', \my $err);
}
$_->finish for @trickles;
my @trickle;
for my $db (qw(t1 t2 t3))
{
	ok($node->poll_query_until($db, "SELECT count(*) = 100 FROM public.effects"),
		"$db: its 100 trickle jobs run");
	push @trickle, split /\n/, $node->safe_psql($db, q{
SELECT round(extract(epoch FROM f.started - j.enqueued_at) * 1000, 1)
  FROM public.effects f JOIN async.jobs j ON j.event_id = f.event_id});
}
@trickle = sort { $a <=> $b } @trickle;
my ($t_p50, $t_p99) = (percentile(0.5, @trickle), percentile(0.99, @trickle));
my $left = $node->safe_psql('backlog', "SELECT count(*) FROM async.jobs WHERE state = 'queued'");
diag("fairness, 2 workers in all: trickle jobs (300, 3 databases) start after p50 $t_p50 ms, "
	  . "p99 $t_p99 ms, max $trickle[-1] ms; backlog: $left of 1,000,000 still queued");
ok($t_p99 < 1000, "fairness: the trickle's p99 $t_p99 ms is under 1 s");
ok($left < 1000000 && $left > 0, 'fairness: the backlog drained meanwhile, and was not done');
cmp_ok(workers_in(''), '<=', 2, 'pg_async.max_workers holds: at most 2 workers');
$node->safe_psql('backlog', q{SELECT async.pause('noop')});

# With no worker slot at all, a database waits, and health says so.
$node->append_conf('postgresql.conf', "pg_async.max_workers = 0\n");
$node->reload;
ok(wait_no_worker(''), 'max_workers 0: no worker runs');
$node->safe_psql('t1', q{SELECT async.invoke('work', '{"id": "starved"}', 'starved')});
ok( $node->poll_query_until('t1',
		q{SELECT status = 'warning' AND detail LIKE 'waiting % for a worker%' FROM async.health() WHERE "check" = 'workers'}),
	'health: a database waiting for a worker slot gets a warning');

# 5. 100 idle databases.
$node->append_conf('postgresql.conf', "pg_async.max_workers = 8\n");
$node->reload;
ok($node->poll_query_until('t1', "SELECT count(*) = 1 FROM public.effects WHERE event_id = 'starved'"),
	'slots again: the waiting job runs');
setup_database('tmpl');
setup_database("idle$_", 'tmpl') for 1 .. 100;
ok(wait_no_worker(''), '100 idle databases: no worker process is left');
is( $node->safe_psql('postgres', q{
SELECT count(*) FROM pg_database d WHERE d.datname LIKE 'idle%'}),
	'100', 'the 100 databases exist');
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_async launcher'");
# cpu_ticks reads a process's user and system time, in clock ticks
sub cpu_ticks
{
	my @f = split / /, slurp_file("/proc/$launcher/stat") =~ s/^.*\) //r;
	return $f[11] + $f[12];
}
my $c0;
($t0, $c0) = (time, cpu_ticks());
sleep 10;
my ($t1, $c1) = (time, cpu_ticks());
my $cpu = ($c1 - $c0) / 100 / ($t1 - $t0) * 100;
diag(sprintf('launcher with 100 idle databases: %.2f%% of a core over %.0f s', $cpu, $t1 - $t0));
ok($cpu < 1, 'the launcher uses under 1% of a core');
is(workers_in(''), '0', 'still no worker');
# and one of them still gets a worker on demand
$node->safe_psql('idle42', q{SELECT async.invoke('work', '{"id": "wake"}', 'wake')});
ok($node->poll_query_until('idle42', "SELECT count(*) = 1 FROM public.effects"),
	'idle42: its job runs on demand');

$node->stop;
done_testing();
