# Loops through a table: a handler that changes a table whose row changes
# enqueue events for it (async.attach) is a loop too, and is stopped at
# pg_async.max_depth, with a line in the server log.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('loops', conf => "pg_async.max_depth = 5\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.counter (n integer NOT NULL);
INSERT INTO public.counter VALUES (0);
CREATE FUNCTION public.bump(e jsonb) RETURNS void LANGUAGE sql AS $$
	UPDATE public.counter SET n = n + 1
$$;
SELECT async.register('public.bump(jsonb)');
SELECT async.attach('public.counter', 'bump', '{UPDATE}');
});
ok(wait_for_workers($node, 2), 'workers start');
my $log_from = -s $node->logfile;
$node->safe_psql('postgres', 'UPDATE public.counter SET n = n + 1');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM async.dead_letters WHERE function = 'bump' AND reason = 'loop'"),
	'the loop through the table is stopped');
# the event of the UPDATE above has depth 0; those of depths 0 to 5 ran
is($node->safe_psql('postgres', 'SELECT n FROM public.counter'), '7',
	'its events of depths 0 to 5 ran, each bumping the counter once');
ok($node->poll_query_until('postgres',
		"SELECT loops_stopped = 1 FROM async.function_stats WHERE function = 'bump'"),
	'async.function_stats counts it');
like(slurp_file($node->logfile, $log_from),
	qr/function "bump" event "[^"]+" stopped as a loop: event is 6 deep in a chain of events, past max_depth \(5\); dead-lettered/,
	'the server log says so');
like($node->safe_psql('postgres', 'SELECT async.metrics()'),
	qr/^pg_async_loops_stopped_total\{function="bump"\} 1$/m, 'and so does async.metrics()');

$node->stop;
done_testing();
