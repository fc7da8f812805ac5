# Loops through a table: a handler that changes a table whose row changes
# enqueue events for it (async.attach) is a loop too, and is stopped at
# pg_async.max_depth, with a line in the server log.  So is a loop through
# a consumer of an external function, in Python with psycopg2 (Debian's
# python3-psycopg2, which test/lib.sh installs): it claims in one session
# and enqueues and completes in another.
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

# A -> B -> A, where A is an external function whose consumer passes each
# event on to B, and B's handler enqueues for A again.  The consumer's
# enqueue is one deeper than the job it completes in the same transaction:
# A at 0, 2, 4 and B at 1, 3, 5 run; the A of depth 6 is stopped.
SKIP:
{
	skip 'python3-psycopg2 is not installed', 5
	  unless system('/usr/bin/python3 -c "import psycopg2" 2>/dev/null') == 0;
	$node->safe_psql('postgres', q{
CREATE FUNCTION public.relay_b(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO async.jobs (function, payload) VALUES ('relay_a', e);
$$;
SELECT async.register('public.relay_b(jsonb)');
SELECT async.register_external('relay_a');
SELECT async.invoke('relay_a', '{"chain": 1}', 'relay-0');
});
	$log_from = -s $node->logfile;
	my $relay = "$FindBin::RealBin/../consumers/relay.py";
	system('/usr/bin/python3', $relay, $node->connstr('postgres'), 'relay_a', 'relay_b', '60') == 0
	  or die "relay.py failed: $?";
	is($node->safe_psql('postgres', q{
SELECT string_agg(function || ':' || depth || ':' || state, ' ' ORDER BY id) FROM async.jobs
 WHERE function LIKE 'relay\_%'}),
		'relay_a:0:succeeded relay_b:1:succeeded relay_a:2:succeeded relay_b:3:succeeded '
		  . 'relay_a:4:succeeded relay_b:5:succeeded relay_a:6:dead',
		'each event through the consumer is one deeper than the job it completed');
	is($node->safe_psql('postgres',
			"SELECT reason FROM async.dead_letters WHERE function = 'relay_a'"),
		'loop', 'the claim stops the A of depth 6 as a loop');
	is($node->safe_psql('postgres',
			"SELECT outcome FROM async.attempts WHERE function = 'relay_a' AND outcome <> 'succeeded'"),
		'loop', 'async.attempts shows it as a loop, not run');
	ok($node->poll_query_until('postgres',
			"SELECT loops_stopped = 1 FROM async.function_stats WHERE function = 'relay_a'"),
		'async.function_stats counts it');
	like(slurp_file($node->logfile, $log_from),
		qr/function "relay_a" event "[^"]+" stopped as a loop: event is 6 deep in a chain of events, past max_depth \(5\); dead-lettered/,
		'the server log says so');
}

$node->stop;
done_testing();
