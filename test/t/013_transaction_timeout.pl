# transaction_timeout (PostgreSQL 17) is armed at the start of every
# transaction, a background worker's too, and ends the process when it
# fires.  A server-wide setting shorter than a handler's own timeout must
# neither end a worker nor fail the job: the registered timeout bounds a
# handler, and the workers do not take transaction_timeout.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('txtimeout', workers => 1);
plan skip_all => 'transaction_timeout is new in PostgreSQL 17'
  if $node->safe_psql('postgres', 'SHOW server_version_num') < 170000;

# set before the workers start: they connect with it
$node->append_conf('postgresql.conf', "transaction_timeout = '1s'\n");
$node->restart;
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.slow(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT pg_sleep(3)';
SELECT async.register('public.slow(jsonb)', timeout => '1 minute');
});
ok(wait_for_workers($node, 1), 'the worker starts');
my $pid = $node->safe_psql('postgres', 'SELECT pid FROM async.workers');

$node->safe_psql('postgres', q{SELECT async.invoke('slow', '{}', 'slow-1')});
ok( $node->poll_query_until('postgres',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'slow-1'"),
	'a handler of 3 s succeeds under a transaction_timeout of 1 s');
is($node->safe_psql('postgres', "SELECT attempts FROM async.jobs WHERE event_id = 'slow-1'"),
	'1', 'in one attempt');
is($node->safe_psql('postgres', 'SELECT pid FROM async.workers'),
	$pid, 'by the same worker');
unlike(slurp_file($node->logfile), qr/transaction timeout/,
	'no process ended at the transaction timeout');

$node->stop;
done_testing();
