# Operations: scheduled jobs start on time, finished jobs go with
# pg_async.retention, a missing pg_async.database and too few background
# worker slots give warnings and no crash, and the workers follow a change
# of pg_async.database.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('ops', database => 'jobsdb', conf => q{
pg_async.retention = '2s'
max_worker_processes = 16
});

# 1. pg_async.database names a database that does not exist yet: a warning,
# no worker, no crash loop; creating it starts the workers.
ok( $node->wait_for_log(qr/pg_async\.database "jobsdb" does not exist/),
	'missing database: the launcher warns');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async worker'"),
	'0', 'missing database: no worker runs');
my $stderr;
$node->psql('postgres', 'CREATE EXTENSION pg_async', stderr => \$stderr);
like($stderr, qr/pg_async workers do not serve database "postgres"/,
	'CREATE EXTENSION in another database warns');
$node->safe_psql('postgres', 'DROP EXTENSION pg_async');

$node->safe_psql('postgres', 'CREATE DATABASE jobsdb');
$node->safe_psql('jobsdb', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.effects (event_id) VALUES (e->>'id') $$;
SELECT async.register('public.work(jsonb)');
});
ok(wait_for_workers($node, 2, 'jobsdb'),
	'created database: the workers start');

# 2. A job scheduled two seconds ahead starts within a second of its run_at,
# although nothing wakes the workers at that time.
$node->safe_psql('jobsdb', q{
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('work', 'sched-1', '{"id": "sched-1"}', now() + interval '2 seconds');
});
ok( $node->poll_query_until('jobsdb',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'sched-1'"),
	'scheduled job: runs');
is( $node->safe_psql('jobsdb', q{
SELECT started_at >= run_at AND started_at < run_at + interval '1 second'
  FROM async.jobs WHERE event_id = 'sched-1'}),
	't', 'scheduled job: starts within a second of run_at, not before');

# 3. Retention: finished jobs are deleted after pg_async.retention, and their
# event_id can then be used again; dead letters stay.
$node->safe_psql('jobsdb', q{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'work', 'ret-' || i, jsonb_build_object('id', 'ret-' || i) FROM generate_series(1, 20) i;
});
ok( $node->poll_query_until('jobsdb',
		"SELECT count(*) = 20 FROM async.jobs WHERE event_id LIKE 'ret-%' AND state = 'succeeded'"),
	'retention: jobs succeed');
ok( $node->poll_query_until('jobsdb',
		"SELECT count(*) = 0 FROM async.jobs WHERE event_id LIKE 'ret-%'"),
	'retention: finished jobs are deleted');
$node->safe_psql('jobsdb',
	"INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'ret-1', '{\"id\": \"ret-1b\"}')");
ok( $node->poll_query_until('jobsdb',
		"SELECT count(*) = 1 FROM public.effects WHERE event_id = 'ret-1b'"),
	'retention: the event_id is free again');

# 4. pg_async.workers above what max_worker_processes leaves (4 slots: the
# logical replication launcher, the pg_async launcher and two workers): a
# warning, the workers that fit keep running.
$node->append_conf('postgresql.conf', q{
max_worker_processes = 4
pg_async.workers = 3
});
$node->restart;
ok( $node->wait_for_log(qr/pg_async launcher could not start worker/),
	'too few worker slots: the launcher warns');
ok(wait_for_workers($node, 2, 'jobsdb'),
	'too few worker slots: the workers that fit run');
$node->safe_psql('jobsdb',
	"INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'slots-1', '{\"id\": \"slots-1\"}')");
ok( $node->poll_query_until('jobsdb',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'slots-1'"),
	'too few worker slots: jobs still run');

# 5. Changing pg_async.database with a reload moves the workers.
$node->append_conf('postgresql.conf', q{
max_worker_processes = 16
pg_async.workers = 2
});
$node->restart;
ok(wait_for_workers($node, 2, 'jobsdb'),
	'restart: workers serve jobsdb');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_async');
$node->append_conf('postgresql.conf', "pg_async.database = 'postgres'\n");
$node->reload;
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker' AND datname = 'postgres'}),
	'reload: the workers move to the new database');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async worker' AND datname = 'jobsdb'"),
	'0', 'reload: no worker is left in the old database');

$node->stop;
done_testing();
