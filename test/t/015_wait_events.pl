# What pg_stat_activity shows while pg_async's processes wait.  From
# PostgreSQL 17 on, each wait has a name of its own (WaitEventExtensionNew):
# an idle worker waits in PgAsyncWorkerIdle, a worker that batches a
# stream in PgAsyncBatchWait, one that leaves the stream to a colleague in
# PgAsyncWorkerStandby, and the launcher in PgAsyncLauncherMain.  Before 17
# every one of them shows as "Extension".
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('waits', workers => 2);
my $named = $node->safe_psql('postgres', 'SHOW server_version_num') >= 170000;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_async');
ok(wait_for_workers($node, 2), 'the workers start');

my ($idle, $launcher) =
  $named ? ('PgAsyncWorkerIdle', 'PgAsyncLauncherMain') : ('Extension', 'Extension');

ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 2 FROM pg_stat_activity
 WHERE backend_type = 'pg_async worker'
   AND wait_event_type = 'Extension' AND wait_event = '$idle'}),
	"idle workers wait in $idle");
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_type = 'pg_async launcher'
   AND wait_event_type = 'Extension' AND wait_event = '$launcher'}),
	"the launcher waits in $launcher");

SKIP:
{
	skip 'wait events are named from PostgreSQL 17 on', 1 unless $named;
	# the names are registered once, whatever the number of processes
	is( $node->safe_psql('postgres', q{
SELECT string_agg(DISTINCT wait_event, ',' ORDER BY wait_event) FROM pg_stat_activity
 WHERE backend_type LIKE 'pg_async%'}),
		'PgAsyncLauncherMain,PgAsyncWorkerIdle',
		'no other wait while idle');
}

# a worker that runs a job waits in the handler's own events, not ours
$node->safe_psql('postgres', q{
CREATE FUNCTION public.nap(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(30)';
SELECT async.register('public.nap(jsonb)');
SELECT async.invoke('nap', '{}', 'nap-1');
});
ok(wait_for_running($node, 'nap-1'), 'a handler runs');
ok( $node->poll_query_until('postgres', q{
SELECT wait_event = 'PgSleep' FROM pg_stat_activity
 WHERE pid = (SELECT pid FROM async.workers WHERE event_id = 'nap-1')}),
	'its worker waits in PgSleep');
$node->stop('immediate');
done_testing();
