# Observability across restarts: one server log line per failed attempt,
# counters that survive a clean restart and are reset by a crash, and the
# history of a crashed attempt.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('obs', conf => q{
restart_after_crash = on
});
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.boom(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'boom %', e->>'n' USING ERRCODE = '22012'; END $$;
SELECT async.register('public.boom(jsonb)', max_attempts => 2, retry_delays => '{0}');
CREATE FUNCTION public.ok(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.ok(jsonb)');
CREATE FUNCTION public.hang(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(600)';
SELECT async.register('public.hang(jsonb)', retry_delays => '{1 hour}');
});
ok(wait_for_workers($node, 2), 'workers start');

# 1. One log line per failed attempt, telling what happens next.
$node->safe_psql('postgres', q{SELECT async.invoke('boom', '{"n": 7}', 'boom-7')});
ok( $node->wait_for_log(
		qr/pg_async: function "boom" event "boom-7" attempt 1 of 2 failed: boom 7 \(SQLSTATE 22012\); retry at \d{4}-/),
	'log line for a retried attempt');
ok( $node->wait_for_log(
		qr/pg_async: function "boom" event "boom-7" attempt 2 of 2 failed: boom 7 \(SQLSTATE 22012\); dead-lettered/),
	'log line for the last attempt');

# 2. Counters survive a clean restart.
$node->safe_psql('postgres',
	"INSERT INTO async.jobs (function, payload) SELECT 'ok', '{}' FROM generate_series(1, 50)");
ok( $node->poll_query_until('postgres',
		"SELECT succeeded = 50 FROM async.function_stats WHERE function = 'ok'"),
	'counters count');
my $before = $node->safe_psql('postgres',
	"SELECT received || '/' || succeeded || '/' || stats_reset FROM async.function_stats WHERE function = 'ok'");
$node->restart;
is( $node->safe_psql('postgres',
		"SELECT received || '/' || succeeded || '/' || stats_reset FROM async.function_stats WHERE function = 'ok'"),
	$before, 'counters survive a clean restart');
is( $node->safe_psql('postgres',
		"SELECT failed || '/' || dead_lettered FROM async.function_stats WHERE function = 'boom'"),
	'2/1', 'failure counters survive a clean restart');

# 3. A crash (a worker killed with SIGKILL) resets them; the attempt it
# interrupted is in the history.
$node->safe_psql('postgres', q{SELECT async.invoke('hang', '{}', 'hang-1')});
ok(wait_for_running($node, 'hang-1'), 'a handler runs');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM async.workers WHERE event_id = 'hang-1'");
kill 'KILL', $pid;
ok(wait_for_workers($node, 2),
	'the server restarts after the crash');
is($node->safe_psql('postgres', 'SELECT count(*) FROM async.function_stats WHERE function = \'ok\''),
	'0', 'a crash resets the counters');
ok( $node->poll_query_until('postgres',
		"SELECT outcome = 'crashed' FROM async.attempts WHERE event_id = 'hang-1'"),
	'the interrupted attempt is recorded as crashed');
is( $node->safe_psql('postgres',
		"SELECT state || ' ' || attempts FROM async.jobs WHERE event_id = 'hang-1'"),
	'queued 1', 'the interrupted attempt counts, the retry waits');

$node->stop;
done_testing();
