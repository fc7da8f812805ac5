# Faults that need a server of their own (issue 4); the others are in
# test/sql/faults.sql.
#
#  1. DROP EXTENSION and CREATE EXTENSION again while slow jobs run: no hang,
#     no deadlock, no crash; the workers serve the new installation.
#  2. DROP DATABASE ... WITH (FORCE) of the served database while jobs run:
#     no crash and no crash loop; a new database of that name is served.
#  3. pg_dump and pg_restore keep registrations, queued and scheduled jobs
#     and dead letters, and the workers pick up after the restore.
#  4. Enqueueing while registrations change: no backend crashes.
#  5. A job left 'running' under the pid of a process that started after it
#     was claimed (a pid reused after a restart) is recovered.
#  6. The disk fills up: a tablespace on a small file system.  This needs a
#     directory on a small file system that the test user can write, made
#     by the harness as root (mount -t tmpfs -o size=24m tmpfs DIR; chown
#     postgres DIR), named by PG_ASYNC_TEST_TMPFS; without it, it is skipped.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = pg_async_node('faults', database => 'app', conf => q{
max_worker_processes = 16
restart_after_crash = on
log_statement = none
});
$node->safe_psql('postgres', 'CREATE DATABASE app');

# the extension, an effects table and the handlers of these tests
sub install
{
	$node->safe_psql('app', q{
CREATE EXTENSION IF NOT EXISTS pg_async;
CREATE TABLE IF NOT EXISTS public.effects (event_id text, at timestamptz DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION public.slow(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects (event_id) VALUES (e->>'id');
	PERFORM pg_sleep(COALESCE((e->>'s')::float8, 0));
	IF e ? 'chain' THEN
		-- enqueueing from a handler takes a lock on async.jobs in the batch
		PERFORM async.invoke('slow', jsonb_build_object('id', (e->>'id') || '-next'));
	END IF;
END $$;
SELECT async.register('public.slow(jsonb)', retry_delays => '{1 second}');
});
}
install();
ok(wait_for_workers($node, 2, 'app'), 'two workers start');

sub log_offset { return -s $node->logfile; }

sub log_since
{
	my ($offset) = @_;
	my $log = slurp_file($node->logfile);
	return substr($log, $offset);
}

# enqueue slow jobs and wait until a worker runs one
sub start_slow_jobs
{
	my ($prefix, $n, $seconds) = @_;
	$node->safe_psql('app', qq{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'slow', '$prefix-' || i,
       jsonb_build_object('id', '$prefix-' || i, 's', $seconds)
       || CASE WHEN i % 2 = 0 THEN '{"chain": true}' ELSE '{}' END::jsonb
  FROM generate_series(1, $n) i});
	$node->poll_query_until('app',
		"SELECT count(*) > 0 FROM async.workers WHERE state = 'running'")
	  or die "no job of $prefix started";
}


sub diag_disk_full
{
	my @q = (
		q{SELECT event_id, state, attempts, run_at, finished_at, paused, limited, worker_pid, left(last_error, 200), left(errors::text, 400) FROM async.jobs
 WHERE (event_id LIKE 'due-%' AND state <> 'succeeded') OR (finished_at IS NULL AND run_at <= now())
    OR (state = 'succeeded' AND function = 'disk' AND (SELECT count(*) FROM public.disk_effects d WHERE d.event_id = async.jobs.event_id) <> 1)
 ORDER BY event_id LIMIT 60},
		q{SELECT state, function, count(*), min(run_at), max(run_at), now() FROM async.jobs GROUP BY 1, 2},
		q{SELECT event_id, reason, left(last_error, 300) FROM async.dead_letters WHERE function = 'disk'},
		q{SELECT * FROM async.workers},
		q{SELECT * FROM async.health()},
		q{SELECT * FROM async._ready_floor()},
		q{SELECT now()});
	for my $q (@q)
	{
		my ($r, $o, $e) = $node->psql('app', $q);
		diag("$q\n$o\n$e");
	}
	my $log = slurp_file($node->logfile);
	diag("server log tail:\n" . substr($log, -20000));
}

# a job enqueued now succeeds with one effect
sub served
{
	my ($event_id) = @_;
	$node->safe_psql('app', qq{
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('slow', '$event_id', '{"id": "$event_id"}')});
	return $node->poll_query_until('app', qq{
SELECT state = 'succeeded' AND (SELECT count(*) FROM public.effects WHERE event_id = '$event_id') = 1
  FROM async.jobs WHERE event_id = '$event_id'});
}

# ---------------------------------------------------------------------------
# 1. DROP EXTENSION and CREATE EXTENSION while slow jobs run
# ---------------------------------------------------------------------------
my $offset = log_offset();
for my $round (1 .. 3)
{
	start_slow_jobs("drop$round", 6, 0.5);
	my $t0 = time;
	my ($ret, $stdout, $stderr) = $node->psql('app',
		"SET statement_timeout = '60s'; DROP EXTENSION pg_async");
	my $took = time - $t0;
	is($ret, 0, "round $round: DROP EXTENSION succeeds while jobs run")
	  or diag($stderr);
	cmp_ok($took, '<', 30, "round $round: DROP EXTENSION does not hang");
	note(sprintf('round %d: DROP EXTENSION took %.2f s', $round, $took));
	install();
	ok(served("after-drop$round"),
		"round $round: after CREATE EXTENSION the workers run jobs again");
}
my $log = log_since($offset);
unlike($log, qr/deadlock detected/, 'DROP EXTENSION: no deadlock');
unlike($log, qr/terminated by signal|reinitializing/, 'DROP EXTENSION: no crash');
is($node->safe_psql('app',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async worker'"),
	'2', 'DROP EXTENSION: two workers');

# ---------------------------------------------------------------------------
# 2. DROP DATABASE ... WITH (FORCE) of the served database while jobs run
# ---------------------------------------------------------------------------
start_slow_jobs('dropdb', 6, 2);
$offset = log_offset();
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE app WITH (FORCE)');
is($ret, 0, 'DROP DATABASE WITH (FORCE) of the served database succeeds') or diag($stderr);
# the workers were terminated; once the launcher says the database is
# gone, watch for 5 seconds: no worker, no restarts
$node->wait_for_log(qr/pg_async\.database "app" does not exist/, $offset);
my $quiet_offset = log_offset();
my $max_workers = 0;
for (1 .. 20)
{
	my $n = $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async worker'");
	$max_workers = $n if $n > $max_workers;
	usleep(250_000);
}
is($max_workers, 0, 'DROP DATABASE: no worker runs while the database is missing');
$log = log_since($offset);
my $burst = () = $log =~ /background worker "pg_async worker" \(PID \d+\) exited/g;
my $later = () = log_since($quiet_offset) =~ /background worker "pg_async worker" \(PID \d+\) exited/g;
note("DROP DATABASE: $burst worker exits before the launcher noticed, $later in the 5 seconds after");
is($later, 0, 'DROP DATABASE: the workers do not restart in a loop');
unlike($log, qr/terminated by signal|reinitializing/, 'DROP DATABASE: no crash');
$node->safe_psql('postgres', 'CREATE DATABASE app');
install();
ok(wait_for_workers($node, 2, 'app'),
	'DROP DATABASE: the workers serve the new database');
ok(served('after-dropdb'), 'DROP DATABASE: jobs of the new database run');

# ---------------------------------------------------------------------------
# 3. pg_dump and pg_restore
# ---------------------------------------------------------------------------
$node->safe_psql('app', q{
CREATE FUNCTION public.refuse(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'refused %', e->>'id' USING ERRCODE = '22023'; END $$;
SELECT async.register('public.refuse(jsonb)', max_attempts => 2, retry_delays => '{1 hour}');
CREATE FUNCTION public.keep(e jsonb) RETURNS jsonb LANGUAGE sql
AS $$ INSERT INTO public.effects (event_id) VALUES (e->>'id') RETURNING jsonb_build_object('kept', e->>'id') $$;
SELECT async.register('public.keep(jsonb)', max_attempts => 5, retry_delays => '{1 second,1 hour}',
                      timeout => '5 seconds', max_event_age => '2 days', concurrency => 3);
INSERT INTO async.jobs (function, event_id, payload) VALUES ('keep', 'done-1', '{"id": "done-1"}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('refuse', 'dl-1', '{"id": "dl-1"}');
});
ok( $node->poll_query_until('app', q{
SELECT count(*) = 2 FROM async.jobs j
 WHERE (event_id = 'done-1' AND state = 'succeeded')
    OR (event_id = 'dl-1' AND state = 'queued' AND attempts = 1)}),
	'dump: a job succeeded and one failed once');
# the second attempt of dl-1 now, to the dead letters
$node->safe_psql('app', "UPDATE async.jobs SET run_at = now() WHERE event_id = 'dl-1'");
ok( $node->poll_query_until('app',
		"SELECT count(*) = 1 FROM async.dead_letters WHERE event_id = 'dl-1'"),
	'dump: a dead letter');
$node->safe_psql('app', q{
INSERT INTO async.jobs (function, event_id, payload) VALUES ('refuse', 'retry-1', '{"id": "retry-1"}');
});
ok( $node->poll_query_until('app',
		"SELECT state = 'queued' AND attempts = 1 FROM async.jobs WHERE event_id = 'retry-1'"),
	'dump: a job waiting for its retry');
# 'keep' paused: its ready jobs wait through the dump and restore
$node->safe_psql('app', q{
SELECT async.pause('keep');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'keep', 'ready-' || i, jsonb_build_object('id', 'ready-' || i) FROM generate_series(1, 3) i;
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('keep', 'later-1', '{"id": "later-1"}', now() + interval '1 hour');
});

my $snapshot_sql = q{
SELECT x.kind, x.row FROM (
	SELECT 'f' AS kind, to_jsonb(f) - 'updated_at' - 'registered_at' AS row FROM async.functions f
	UNION ALL SELECT 'j', to_jsonb(j) FROM async.jobs j
	UNION ALL SELECT 'a', to_jsonb(a) FROM async.attempts a
	UNION ALL SELECT 'd', to_jsonb(d) FROM async.dead_letters d
	UNION ALL SELECT 's', to_jsonb(s) FROM (SELECT last_value FROM async.jobs_id_seq) s
	UNION ALL SELECT 's', to_jsonb(s) FROM (SELECT last_value FROM async.dead_letters_id_seq) s) x
 ORDER BY x.kind, x.row::text};
my $before = $node->safe_psql('app', $snapshot_sql);
my $jobs_before = $node->safe_psql('app', 'SELECT count(*) FROM async.jobs');

my $dir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok(
	[ 'pg_dump', '-Fc', '-f', "$dir/app.dump", '-d', $node->connstr('app') ],
	'pg_dump of a database using pg_async');
$node->safe_psql('postgres', 'DROP DATABASE app WITH (FORCE)');
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('app'), "$dir/app.dump" ],
	'pg_restore');
my $after = $node->safe_psql('app', $snapshot_sql);
is($after, $before, 'restore: the same registrations, jobs, attempts, dead letters and job sequence');
is($node->safe_psql('app', 'SELECT count(*) FROM async.jobs'), $jobs_before,
	"restore: $jobs_before jobs");

ok(wait_for_workers($node, 2, 'app'),
	'restore: the workers serve the restored database');
$node->safe_psql('app', q{SELECT async.resume('keep')});
ok( $node->poll_query_until('app', q{
SELECT count(*) = 3 FROM async.jobs j
 WHERE event_id LIKE 'ready-%' AND state = 'succeeded' AND result = jsonb_build_object('kept', event_id)
   AND (SELECT count(*) FROM public.effects f WHERE f.event_id = j.event_id) = 1}),
	'restore: queued jobs run once after the restore');
is($node->safe_psql('app', q{
SELECT string_agg(event_id || ' ' || state || ' ' || attempts || ' ' || (run_at > now()), ', ' ORDER BY event_id)
  FROM async.jobs WHERE event_id IN ('later-1', 'retry-1')}),
	'later-1 queued 0 true, retry-1 queued 1 true',
	'restore: scheduled jobs and retries wait for their run_at');
$node->safe_psql('app', q{
INSERT INTO async.jobs (function, event_id, payload) VALUES ('keep', 'new-1', '{"id": "new-1"}');
SELECT async.redrive('dl-1');
});
ok( $node->poll_query_until('app', q{
SELECT (SELECT state FROM async.jobs WHERE event_id = 'new-1') = 'succeeded'
   AND (SELECT state || ' ' || attempts FROM async.jobs WHERE event_id = 'dl-1') = 'queued 1'
   AND (SELECT count(*) FROM async.dead_letters WHERE event_id = 'dl-1') = 0}),
	'restore: new jobs get new ids, and a dead letter can be redriven');

# a parallel restore may load async.jobs before async.functions
$node->safe_psql('postgres', 'CREATE DATABASE app_copy');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-j', '2', '-d', $node->connstr('app_copy'), "$dir/app.dump" ],
	'pg_restore -j 2');
is($node->safe_psql('app_copy', 'SELECT count(*) FROM async.jobs'), $jobs_before,
	"pg_restore -j 2: $jobs_before jobs");
$node->safe_psql('postgres', 'DROP DATABASE app_copy');

# ---------------------------------------------------------------------------
# 4. Enqueueing while registrations change: every registration change makes
# the backends drop their cached registrations; no enqueue may crash
# ---------------------------------------------------------------------------
$offset = log_offset();
$node->safe_psql('app', q{
CREATE PROCEDURE public.enqueue_for(seconds float8) LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => seconds);
	n integer := 0;
BEGIN
	WHILE clock_timestamp() < deadline AND n < 20000 LOOP
		n := n + 1;
		INSERT INTO async.jobs (function, payload, run_at)
		VALUES ('slow', '{"id": "race"}', now() + interval '1 day');
		COMMIT;
	END LOOP;
END $$;
CREATE PROCEDURE public.reregister_for(seconds float8) LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
	WHILE clock_timestamp() < deadline LOOP
		PERFORM async.configure('slow', max_attempts => 3);
		COMMIT;
	END LOOP;
END $$;
});
my @racers;
for my $call ('CALL public.enqueue_for(10)', 'CALL public.reregister_for(10)')
{
	my ($out, $err) = ('', '');
	push @racers, [
		IPC::Run::start(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('app'), '-c', $call ],
			'>', \$out, '2>', \$err, IPC::Run::timeout(120)),
		\$out, \$err, $call ];
}
for my $r (@racers)
{
	my ($h, $out, $err, $call) = @$r;
	eval { $h->finish; };
	is($h->result(0), 0, "registration race: $call completes") or diag($$err);
}
$log = log_since($offset);
unlike($log, qr/terminated by signal|reinitializing/,
	'registration race: no backend crashed');
ok(wait_for_workers($node, 2, 'app'), 'registration race: workers up');
note('registration race: '
	  . $node->safe_psql('app', "SELECT count(*) FROM async.jobs WHERE payload->>'id' = 'race'")
	  . ' jobs enqueued');
$node->safe_psql('app', "DELETE FROM async.jobs WHERE payload->>'id' = 'race'");
$node->safe_psql('app', 'VACUUM FULL async.jobs');

# ---------------------------------------------------------------------------
# 5. A job 'running' under a pid that a younger process holds now, as after
# a restart that reused the pid of the worker that claimed it: that process
# cannot be running it, so recovery must take it back
# ---------------------------------------------------------------------------
my $wpid = $node->safe_psql('app', 'SELECT min(pid) FROM async.workers');
$node->safe_psql('app', qq{
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('slow', 'reused-pid', '{"id": "reused-pid"}', now() + interval '1 hour');
UPDATE async.jobs
   SET state = 'running', attempts = 1, worker_pid = $wpid,
       started_at = (SELECT backend_start FROM pg_stat_activity WHERE pid = $wpid) - interval '1 hour'
 WHERE event_id = 'reused-pid';
});
my $recovered = 0;
my $deadline = time + 12;
while (time < $deadline)
{
	$recovered = 1 if $node->safe_psql('app',
		"SELECT state <> 'running' FROM async.jobs WHERE event_id = 'reused-pid'") eq 't';
	last if $recovered;
	usleep(250_000);
}
ok($recovered,
	'a job claimed before its worker_pid\'s process started is recovered (pid reuse)');
$node->safe_psql('app', "DELETE FROM async.jobs WHERE event_id = 'reused-pid'");

# ---------------------------------------------------------------------------
# 6. The disk fills up
# ---------------------------------------------------------------------------
SKIP:
{
	my $small = $ENV{PG_ASYNC_TEST_TMPFS};
	skip 'the disk-full test needs PG_ASYNC_TEST_TMPFS: a directory on a small file system '
	  . '(e.g. a 24 MB tmpfs mounted by root) that the test user can write', 8
	  unless defined $small && -d $small && -w $small;

	my $ts = "$small/ts_$$";
	mkdir $ts or die "mkdir $ts: $!";
	$offset = log_offset();
	$node->safe_psql('app', qq{
CREATE TABLESPACE small LOCATION '$ts';
CREATE TABLE public.disk_effects (event_id text, pad text) TABLESPACE small;
CREATE TABLE public.filler (pad text) TABLESPACE small;
ALTER TABLE public.filler ALTER pad SET STORAGE plain;
CREATE FUNCTION public.disk(e jsonb) RETURNS void LANGUAGE sql
AS \$\$ INSERT INTO public.disk_effects VALUES (e->>'id', repeat(md5(e->>'id'), 30)) \$\$;
SELECT async.register('public.disk(jsonb)', max_attempts => 100, retry_delays => '{1 second}');
});
	# fill the file system, 1 MB at a time
	my $filled = 0;
	for (1 .. 1000)
	{
		my ($r, $o, $e) = $node->psql('app', q{
INSERT INTO public.filler
SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 250), generate_series(1, 128) g GROUP BY g});
		if ($r != 0)
		{
			$filled = ($e =~ /No space left on device|could not extend/);
			diag("filling: $e") unless $filled;
			last;
		}
	}
	ok($filled, 'disk full: the tablespace is full');

	# handlers cannot write: failed attempts, the server goes on
	$node->safe_psql('app', q{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'disk', 'disk-' || i, jsonb_build_object('id', 'disk-' || i) FROM generate_series(1, 20) i});
	ok( $node->poll_query_until('app', q{
SELECT count(*) > 0 FROM async.jobs WHERE function = 'disk' AND errors @> '[{"sqlstate": "53100"}]'}),
		'disk full: attempts fail with disk_full (53100)');
	is($node->safe_psql('app', "SELECT count(*) FROM async.jobs WHERE function = 'disk' AND state = 'succeeded'"),
		'0', 'disk full: no job succeeds without its effect');

	# free the space (TRUNCATE would need room for new files): every job
	# succeeds once
	$node->safe_psql('app', 'DROP TABLE public.filler');
	ok( $node->poll_query_until('app', q{
SELECT count(*) = 20 FROM async.jobs j
 WHERE function = 'disk' AND state = 'succeeded'
   AND (SELECT count(*) FROM public.disk_effects d WHERE d.event_id = j.event_id) = 1}),
		'disk full: after space is freed every job succeeds, with one effect');

	# async.jobs itself on a full disk: enqueueing fails with an error, the
	# workers survive, and the queue works again once there is room
	# jobs that become due while the disk is full
	$node->safe_psql('app', q{
ALTER TABLE async.jobs SET TABLESPACE small;
CREATE TABLE public.filler (pad text) TABLESPACE small;
ALTER TABLE public.filler ALTER pad SET STORAGE plain;
INSERT INTO async.jobs (function, event_id, payload, run_at)
SELECT 'disk', 'due-' || g,
       jsonb_build_object('id', 'due-' || g,
                          'pad', (SELECT string_agg(md5(random()::text || g || x), '') FROM generate_series(1, 60) x)),
       now() + interval '4 seconds'
  FROM generate_series(1, 30) g;
});
	for (1 .. 1000)
	{
		my ($r, $o, $e) = $node->psql('app', q{
INSERT INTO public.filler
SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 250), generate_series(1, 128) g GROUP BY g});
		last if $r != 0;
	}
	my ($r, $o, $e);
	for my $i (1 .. 200)
	{
		($r, $o, $e) = $node->psql('app', qq{
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'disk', 'full-$i-' || g,
       jsonb_build_object('id', 'full-$i-' || g,
                          'pad', (SELECT string_agg(md5(random()::text || g || x), '') FROM generate_series(1, 60) x))
  FROM generate_series(1, 50) g});
		last if $r != 0;
	}
	like($e, qr/No space left on device|could not extend/, 'queue on a full disk: enqueueing fails with an error');
	# the workers meet the full disk too: the jobs due in 4 seconds are
	# claimed from the full tablespace, or a worker fails trying
	my $met = 0;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (!$met && time() < $deadline)
	{
		$met = $node->safe_psql('app',
			"SELECT count(*) > 0 FROM async.jobs WHERE event_id LIKE 'due-%' AND attempts > 0") eq 't'
		  || log_since($offset) =~ /background worker "pg_async worker" \(PID \d+\) exited with exit code 1/;
		usleep(100_000) unless $met;
	}
	ok($met, 'queue on a full disk: the workers meet it too');
	$node->safe_psql('app', 'DROP TABLE public.filler');
	ok( $node->poll_query_until('app', q{
SELECT (SELECT count(*) FROM async.jobs WHERE event_id LIKE 'due-%' AND state = 'succeeded') = 30
   AND NOT EXISTS (SELECT FROM async.jobs WHERE finished_at IS NULL AND run_at <= now())
   AND NOT EXISTS (SELECT FROM async.jobs j WHERE state = 'succeeded' AND function = 'disk'
                    AND (SELECT count(*) FROM public.disk_effects d WHERE d.event_id = j.event_id) <> 1)}),
		'queue on a full disk: once there is room every job runs, once') or diag_disk_full();
	ok(served('after-disk-full'), 'queue on a full disk: new jobs run');
	$log = log_since($offset);
	unlike($log, qr/terminated by signal|reinitializing|PANIC/, 'disk full: no crash');
	$node->safe_psql('app', q{
ALTER TABLE async.jobs SET TABLESPACE pg_default;
DROP TABLE public.disk_effects;
DROP TABLESPACE small;
});
}

$node->stop;
done_testing();
