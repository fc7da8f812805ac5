# pg_async_top --once against a cluster in a known state: functions with a
# backlog, held jobs of a paused function, scheduled jobs, failures and dead
# jobs, two workers busy with a
# slow handler, and a health check that is not ok.  Then two databases at
# once, and the errors: a bad connection string and a database without the
# extension.
use strict;
use warnings;

use FindBin;
use IPC::Run;
use Time::HiRes;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('top');

# $PG_ASYNC_TOP if set, else the program installed with the server that runs
# (make install puts it into that installation's bindir), else the one built
# in the source tree.
my $top = $ENV{PG_ASYNC_TOP};
my $installed = server_pg_config($node, 'BINDIR') . '/pg_async_top';
$top //= $installed if -x $installed;
$top //= "$FindBin::Bin/../../bin/pg_async_top";
die "pg_async_top is neither installed at $installed nor built at $top (run make)\n"
  unless -x $top;
note "using $top";

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.top_ok(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.top_ok(jsonb)');
CREATE FUNCTION public.top_fail(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'top_fail %', e->>'n'; END $$;
SELECT async.register('public.top_fail(jsonb)', max_attempts => 1);
CREATE FUNCTION public.top_slow(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(600)';
SELECT async.register('public.top_slow(jsonb)', timeout => '1 hour');
SELECT async.register('public.top_ok(jsonb)', name => 'top_paused');
SELECT async.pause('top_paused');
INSERT INTO async.jobs (function) SELECT 'top_paused' FROM generate_series(1, 2);
});
ok(wait_for_workers($node, 2), 'workers start');

# Finished jobs: 5 succeeded, 2 failed once and dead-lettered.
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function) SELECT 'top_ok' FROM generate_series(1, 5);
INSERT INTO async.jobs (function, payload)
SELECT 'top_fail', jsonb_build_object('n', g) FROM generate_series(1, 2) g;
});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM async.dead_letters WHERE function = 'top_fail'"),
	'two dead letters');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 7 FROM async.jobs WHERE state IN ('succeeded', 'dead')"),
	'the first jobs finish');

# Both workers busy with the slow handler, one event each, so that the
# ready jobs enqueued next stay in the backlog.
$node->safe_psql('postgres', q{SELECT async.invoke('top_slow', '{}', 'slow-1')});
ok(wait_for_running($node, 'slow-1'), 'a worker runs slow-1');
$node->safe_psql('postgres', q{SELECT async.invoke('top_slow', '{}', 'slow-2')});
ok(wait_for_running($node, 'slow-2'), 'the other worker runs slow-2');
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function, run_at)
SELECT 'top_ok', now() + interval '1 hour' FROM generate_series(1, 3);
INSERT INTO async.jobs (function) SELECT 'top_ok' FROM generate_series(1, 4);
});

my $connstr = $node->connstr('postgres');
my $default_version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'pg_async'");
command_like([ $top, '--version' ], qr/^pg_async_top \Q$default_version\E$/,
	'--version names the version of the extension it was built with');
my ($out, $err) = ('', '');
IPC::Run::run([ $top, '--once', '-d', $connstr ], '>', \$out, '2>', \$err);
my $rc = $? >> 8;
note "stdout:\n$out";
note "stderr:\n$err";
is($rc, 0, '--once exits 0');
is($err, '', '--once writes nothing to stderr');
unlike($out, qr/\e/, '--once prints no escape sequences');

like( $out,
	qr/^pg_async_top  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  database postgres on \S+  PostgreSQL \d+\.\d+  pg_async \Q$default_version\E$/m,
	'header: time, database, server version');
like( $out,
	qr/^jobs\/s \S+ \(over 1s\)  ready 4  held 2  scheduled 3  running 2  failed 2  dead 2  workers 2\/2 busy  health: 1 warning$/m,
	'header: totals');

# FUNCTION RATE/s READY HELD SCHED RUN OLDEST P95-WAIT FAILED DEAD
my $row = qr/\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)$/m;
like($out, qr/^FUNCTION\s+RATE\/s\s+READY\s+HELD\s+SCHED\s+RUN\s+OLDEST\s+P95 WAIT\s+FAILED\s+DEAD$/m,
	'function table header');
my %f;
for my $name (qw(top_ok top_fail top_slow top_paused))
{
	if ($out =~ /^$name$row/m)
	{
		$f{$name} = { rate => $1, ready => $2, held => $3, scheduled => $4, running => $5,
			oldest => $6, wait => $7, failed => $8, dead => $9 };
	}
	ok(defined $f{$name}, "a line for $name");
}
is( join(' ', map { $f{top_ok}{$_} // '?' } qw(ready scheduled running failed dead)),
	'4 3 0 0 0', 'top_ok: 4 ready, 3 scheduled');
like($f{top_ok}{oldest} // '', qr/^\d[\d.mhd]*s?$/, 'top_ok: the age of its oldest ready job');
like($f{top_ok}{rate} // '', qr/^\d+\.\d$/, 'top_ok: a rate');
like($f{top_ok}{wait} // '', qr/^\d+(\.\d+)?(ms|s)$/, 'top_ok: a p95 queue wait');
is( join(' ', map { $f{top_fail}{$_} // '?' } qw(ready scheduled running failed dead)),
	'0 0 0 2 2', 'top_fail: 2 failures, 2 dead');
is($f{top_fail}{oldest} // '', '-', 'top_fail: nothing ready');
is( join(' ', map { $f{top_slow}{$_} // '?' } qw(ready scheduled running failed dead)),
	'0 0 2 0 0', 'top_slow: 2 running');
is( join(' ', map { $f{top_paused}{$_} // '?' } qw(ready held scheduled running)),
	'0 2 0 0', 'top_paused: 2 held, none ready');
is($f{top_ok}{held} // '', '0', 'top_ok: none held');

# PID STATE FUNCTION EVENT_ID ATTEMPT RUNNING-FOR JOBS-DONE
like($out, qr/^\s+PID\s+STATE\s+FUNCTION\s+EVENT_ID\s+ATTEMPT\s+RUNNING FOR\s+JOBS DONE$/m,
	'worker table header');
for my $event (qw(slow-1 slow-2))
{
	like($out, qr/^\s+\d+\s+running\s+top_slow\s+\Q$event\E\s+1\s+\d\S*\s+\d+$/m,
		"a worker line for $event");
}

like( $out,
	qr/^warning\s+dead_letters\s+2 events dead-lettered in the last hour \(0 in the hour before\)$/m,
	'the dead_letters check, not ok');
like($out, qr/^\s+hint: Look at async\.dead_letters/m, 'with its hint');
unlike($out, qr/^ok\s/m, 'no check that is ok');

# A rate: jobs that finish between the two samples of --once (taken 4 s
# apart; the jobs are enqueued after the first).
$node->safe_psql('postgres',
	q{SELECT pg_cancel_backend(pid) FROM async.workers WHERE event_id IN ('slow-1', 'slow-2')});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM async.workers WHERE state = 'running'"),
	'the slow handlers are cancelled');
my $h = IPC::Run::start(
	[ $top, '--once', '-i', '4', '-d', "$connstr application_name=top_rate" ],
	'>', \$out, '2>', \$err);
# the first sample is taken once this pg_async_top has queried
# async.health(), the sample's last query, and waits
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE application_name = 'top_rate' AND state = 'idle'
   AND query LIKE '%async.health()%'}),
	'pg_async_top took its first sample')
  or diag($node->safe_psql('postgres',
	q{SELECT application_name, state, query FROM pg_stat_activity WHERE backend_type = 'client backend'}));
$node->safe_psql('postgres', q{
INSERT INTO async.jobs (function) SELECT 'top_ok' FROM generate_series(1, 200);
SELECT async.wait_idle();
});
$h->finish;
note "stdout:\n$out";
is($? >> 8, 0, 'second --once exits 0');
ok($out =~ /^top_ok$row/m && $1 > 0, 'top_ok: a rate above 0 while jobs finish')
  or diag "rate: " . ($1 // 'none');

# Several databases: one snapshot of each, in the order given.
$node->safe_psql('postgres', 'CREATE DATABASE second');
$node->safe_psql('second', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.second_fn(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.second_fn(jsonb)');
});
IPC::Run::run([ $top, '--once', '-i', '0.1', '-d', $connstr, $node->connstr('second') ],
	'>', \$out, '2>', \$err);
is($? >> 8, 0, 'two databases: --once exits 0');
like($out, qr/database postgres \(1 of 2\) .*database second \(2 of 2\) /s,
	'two databases: a snapshot of each, in the order given');
like($out, qr/database second .*^second_fn\b/ms,
	"two databases: the second one's functions, under its header");
unlike($out, qr/database second .*^top_ok\b/ms,
	"two databases: the first one's functions stay under its own header");

# Errors: exit 1 and a message on stderr.
command_checks_all(
	[ $top, '--once', '-d', 'host=/nonexistent/socket/dir port=1 dbname=postgres' ],
	1, [qr/^$/], [qr/^pg_async_top: could not connect to the database: /],
	'a bad connection string');
$node->safe_psql('postgres', 'CREATE DATABASE plain');
command_checks_all(
	[ $top, '--once', '-d', $node->connstr('plain') ],
	1, [qr/^$/], [qr/^pg_async_top: the extension pg_async is not installed in database "plain"$/],
	'a database without pg_async');
command_checks_all(
	[ $top, '-d', $connstr ],
	1, [qr/^$/], [qr/standard output is not a terminal; use --once/],
	'the live view needs a terminal');

$node->stop;
done_testing();
