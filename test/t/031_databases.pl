# Every database: with pg_async.databases = '*', the workers serve each
# database that has the extension, and none that lacks it.
#
# 1. Three databases run their jobs, with the same event_ids in each: a
#    duplicate in one database does not block the id in another.
#    async.all_workers, read in any of them, lists the workers of each.
# 2. A fourth database gets the extension while the others run: its jobs run
#    within 5 seconds of CREATE EXTENSION, with no restart or reload.
# 3. A database without the extension keeps no worker.
# 4. pg_async.databases narrowed by a reload: the databases left out lose
#    their workers, and get them back when it is '*' again.
# 5. A role that does not own a database cannot send its workers away.
# 6. DROP EXTENSION in one database, DROP DATABASE ... WITH (FORCE) of a
#    second and a plain DROP DATABASE of a third, each while its jobs run:
#    none hangs or fails, and the fourth database goes on.
# 7. CREATE EXTENSION after DROP EXTENSION serves the database again.
# async.health() says when the settings leave a database out (4).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pg_async_node('databases', databases => '*', workers => 2,
	conf => "max_worker_processes = 20\n");

# setup_database creates database db with pg_async and a handler that records
# each event it runs; 'slow' events sleep a little first.
sub setup_database
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text, db text DEFAULT current_database());
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF (e->>'slow')::boolean THEN
		PERFORM pg_sleep(0.05);
	END IF;
	INSERT INTO public.effects (event_id) VALUES (e->>'id');
END $$;
SELECT async.register('public.work(jsonb)');
});
	return;
}

# enqueue enqueues n events with ids prefix-1 .. prefix-n in db.
sub enqueue
{
	my ($db, $prefix, $n, $slow) = @_;
	$slow = $slow ? 'true' : 'false';
	$node->safe_psql($db, qq{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'work', '$prefix-' || i, jsonb_build_object('id', '$prefix-' || i, 'slow', $slow)
  FROM generate_series(1, $n) i;
});
	return;
}

# workers_in counts the pg_async workers connected to db.
sub workers_in
{
	my ($db) = @_;
	return $node->safe_psql('postgres', qq{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker' AND datname = '$db'});
}

# 1. Three databases, the same event_ids in each.
setup_database($_) for qw(db1 db2 db3);
enqueue($_, 'same', 200) for qw(db1 db2 db3);
for my $db (qw(db1 db2 db3))
{
	ok( $node->poll_query_until($db,
			"SELECT count(*) = 200 FROM public.effects WHERE event_id LIKE 'same-%'"),
		"$db: its 200 jobs run");
	is( $node->safe_psql($db,
			"SELECT count(*) FROM async.jobs WHERE event_id LIKE 'same-%' AND state = 'succeeded'"),
		'200', "$db: the event_ids the other databases use are free here");
	ok($node->poll_query_until($db, "SELECT count(*) = 2 FROM async.workers"),
		"$db: async.workers lists its own two workers");
}
# async.all_workers, read in any of them, lists the workers of all three,
# each with the database pg_stat_activity says it is connected to
ok( $node->poll_query_until('db2', q{
SELECT string_agg(w.database || ':' || w.n, ',' ORDER BY w.database) = 'db1:2,db2:2,db3:2'
  FROM (SELECT a.database, count(*) AS n
          FROM async.all_workers a JOIN pg_stat_activity s
               ON s.pid = a.pid AND s.datname = a.database AND s.backend_type = 'pg_async worker'
         GROUP BY a.database) w}),
	'async.all_workers lists the two workers of each database, by name');
is($node->safe_psql('db2', 'SELECT count(*) FROM async.all_workers WHERE database IS NULL'),
	'0', 'async.all_workers: no worker without its database');
# a duplicate stays one in its own database
$node->safe_psql('db1', q{
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('work', 'same-1', '{"id": "again"}') ON CONFLICT DO NOTHING});
is($node->safe_psql('db1', "SELECT count(*) FROM async.jobs WHERE event_id = 'same-1'"),
	'1', 'db1: a duplicate event_id is refused in its own database');

# 2. A fourth database, served within 5 seconds of CREATE EXTENSION.
$node->safe_psql('postgres', 'CREATE DATABASE db4');
$node->safe_psql('db4', q{
CREATE TABLE public.effects (event_id text, db text DEFAULT current_database());
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.effects (event_id) VALUES (e->>'id') $$;
});
my $t0 = time;
$node->safe_psql('db4', q{
CREATE EXTENSION pg_async;
SELECT async.register('public.work(jsonb)');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'new-1', '{"id": "new-1"}');
});
my $served = 0;
while (time - $t0 < 30)
{
	if ($node->safe_psql('db4', "SELECT count(*) FROM public.effects WHERE event_id = 'new-1'") eq '1')
	{
		$served = time - $t0;
		last;
	}
	usleep(20_000);
}
ok($served > 0 && $served < 5,
	sprintf('db4: its first job runs %.2f s after CREATE EXTENSION (under 5 s)', $served));
ok($node->poll_query_until('db4', "SELECT count(*) = 2 FROM async.workers"),
	'db4: two workers serve it');

# 3. No worker stays in a database without the extension.
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker' AND datname IN ('postgres', 'template1')}),
	'postgres: no worker stays where the extension is not installed');

# 4. A reload narrows the databases served, and widens them again.
$node->append_conf('postgresql.conf', "pg_async.databases = 'db1, db2, db4'\n");
$node->reload;
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker' AND datname = 'db3'}),
	'reload: db3, left out, loses its workers');
is($node->safe_psql('db3', "SELECT status FROM async.health() WHERE \"check\" = 'workers'"),
	'critical', 'health: db3 is told that the settings leave it out');
enqueue('db3', 'late', 5);
$node->append_conf('postgresql.conf', "pg_async.databases = '*'\n");
$node->reload;
ok( $node->poll_query_until('db3',
		"SELECT count(*) = 5 FROM public.effects WHERE event_id LIKE 'late-%'"),
	'reload: db3, served again, runs the jobs it queued meanwhile');
is($node->safe_psql('db3', "SELECT status FROM async.health() WHERE \"check\" = 'workers'"),
	'ok', 'health: db3 is served again');

# 5. A role that does not own db4 cannot send its workers away with a
# command that is then refused: they keep running, with the same pids.
$node->safe_psql('postgres', 'CREATE ROLE regress_mallory LOGIN CREATEDB');
my $pids = $node->safe_psql('db4', 'SELECT string_agg(pid::text, \',\' ORDER BY pid) FROM async.workers');
for my $cmd ('DROP DATABASE db4', 'ALTER DATABASE db4 RENAME TO db4x',
	'CREATE DATABASE db4copy TEMPLATE db4')
{
	my ($r, $o, $e) = $node->psql('postgres', "SET ROLE regress_mallory; $cmd");
	like($e, qr/must be owner|permission denied|being accessed/, "a non-owner's $cmd is refused");
}
is($node->safe_psql('db4', 'SELECT string_agg(pid::text, \',\' ORDER BY pid) FROM async.workers'),
	$pids, "db4's workers were not sent away by the refused commands");

# 6. Drops while jobs run.
enqueue($_, 'busy', 2000, 1) for qw(db1 db2 db3);
for my $db (qw(db1 db2 db3))
{
	ok( $node->poll_query_until($db,
			"SELECT count(*) > 0 FROM async.jobs WHERE event_id LIKE 'busy-%' AND state = 'running'"),
		"$db: its jobs run");
}

my ($ret, $stdout, $stderr);
$t0 = time;
($ret, $stdout, $stderr) = $node->psql('db2', 'DROP EXTENSION pg_async CASCADE',
	timeout => 60);
is($ret, 0, sprintf('DROP EXTENSION while jobs run: done in %.1f s', time - $t0))
  or diag($stderr);
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker' AND datname = 'db2'}),
	'DROP EXTENSION: the workers leave db2');

$t0 = time;
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE db3 WITH (FORCE)',
	timeout => 60);
is($ret, 0, sprintf('DROP DATABASE ... WITH (FORCE) while jobs run: done in %.1f s', time - $t0))
  or diag($stderr);

$t0 = time;
($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE db1', timeout => 60);
is($ret, 0, sprintf('plain DROP DATABASE while jobs run: done in %.1f s', time - $t0))
  or diag($stderr);

enqueue('db4', 'after', 100);
ok( $node->poll_query_until('db4',
		"SELECT count(*) = 100 FROM public.effects WHERE event_id LIKE 'after-%'"),
	'db4 goes on running its jobs');
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'pg_async worker'}),
	'only the two workers of db4 are left');

# 7. CREATE EXTENSION again in db2: served again.
$node->safe_psql('db2', q{
CREATE EXTENSION pg_async;
SELECT async.register('public.work(jsonb)');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('work', 'back-1', '{"id": "back-1"}');
});
ok( $node->poll_query_until('db2',
		"SELECT count(*) = 1 FROM public.effects WHERE event_id = 'back-1'"),
	'db2: CREATE EXTENSION after DROP EXTENSION serves it again');

my $log = slurp_file($node->logfile);
unlike($log, qr/PANIC|server process .* was terminated by signal/,
	'no crash in the server log');

$node->stop;
done_testing();
