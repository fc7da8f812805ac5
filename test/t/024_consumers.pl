# Consumers of external functions in real clients: Python with psycopg2
# (Debian's python3-psycopg2) and Node.js with pg from npm, each writing its
# effect and completing the job in one transaction (test/consumers/).
# Consumers are killed with kill -9 at random while the jobs drain, and
# started again.  At the end: lost 0, duplicate database effects 0, no
# effect of a dead event, and every event succeeded or dead-lettered with
# the right attempts.
#
# The packages: test/lib.sh installs python3-psycopg2; test/suite.sh
# installs pg from npm into test/consumers/node_modules of its scratch copy
# where node and npm are (this machine's Debian suite; the roots of the
# other versions have no Node.js, and the Node part is skipped there, as
# it is where npm install could not run).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PgAsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $consumers = "$FindBin::RealBin/../consumers";
my $node_modules = $ENV{PG_ASYNC_NODE_MODULES} // "$consumers/node_modules";

my $python_ok = system('/usr/bin/python3 -c "import psycopg2" 2>/dev/null') == 0;
my $node_ok = -d "$node_modules/pg" && system('node --version >/dev/null 2>&1') == 0;

my $node = pg_async_node('consumers', workers => 1);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text NOT NULL, consumer text NOT NULL,
                             at timestamptz NOT NULL DEFAULT clock_timestamp());
});

# chaos: n events (one in ten asks to fail) for a function whose leases
# last 2 s, drained by $width consumers of which one is killed with kill -9
# every $every seconds and started again
sub chaos
{
	my ($lang, $function, $n, $width, $every, $start) = @_;

	$node->safe_psql('postgres', qq{
SELECT async.register_external('$function', max_attempts => 5, retry_delays => '{0}',
                               timeout => '2 seconds');
INSERT INTO async.jobs (function, event_id, payload)
SELECT '$function', '$function-' || i,
       CASE WHEN i % 10 = 0 THEN '{"fail": true}' ELSE jsonb_build_object('i', i) END
  FROM generate_series(1, $n) i;});

	my @procs = map { $start->() } 1 .. $width;
	my $kills = 0;
	my $deadline = time + 240;
	while (time < $deadline)
	{
		my $left = $node->safe_psql('postgres', qq{
SELECT count(*) FROM async.jobs WHERE function = '$function' AND state IN ('queued', 'running')});
		last if $left == 0;
		if ($every > 0 && $kills < 40)
		{
			my $i = int(rand($width));
			$procs[$i]->signal('KILL');
			$procs[$i]->finish;
			$procs[$i] = $start->();
			$kills++;
			select(undef, undef, undef, $every);
		}
		else
		{
			select(undef, undef, undef, 0.2);
		}
	}
	for my $p (@procs)
	{
		$p->signal('KILL');
		$p->finish;
	}

	my ($accepted, $succeeded, $dead, $lost, $duplicates, $dead_effects, $missing, $bad_attempts, $fail_alive)
	  = split /\|/, $node->safe_psql('postgres', qq{
WITH j AS (SELECT * FROM async.jobs WHERE function = '$function'),
     e AS (SELECT event_id, count(*) AS n FROM public.effects
            WHERE event_id LIKE '$function-%' GROUP BY event_id)
SELECT (SELECT count(*) FROM j),
       (SELECT count(*) FROM j WHERE state = 'succeeded'),
       (SELECT count(*) FROM j WHERE state = 'dead'),
       (SELECT count(*) FROM j WHERE state NOT IN ('succeeded', 'dead')),
       (SELECT coalesce(sum(n - 1), 0) FROM e),
       (SELECT count(*) FROM e JOIN j USING (event_id) WHERE j.state = 'dead'),
       (SELECT count(*) FROM j LEFT JOIN e USING (event_id) WHERE j.state = 'succeeded' AND e.n IS NULL),
       (SELECT count(*) FROM j WHERE state = 'dead' AND (attempts <> 5 OR NOT EXISTS (
            SELECT FROM async.dead_letters d WHERE d.event_id = j.event_id AND d.reason = 'exhausted'))),
       (SELECT count(*) FROM j WHERE payload ? 'fail' AND state <> 'dead')});
	diag("$lang consumers: events $accepted: succeeded $succeeded, dead-lettered $dead; kill -9 $kills");
	diag("$lang consumers: lost = $lost, duplicate effects = $duplicates, effects of dead events = $dead_effects");
	is($accepted, $n, "$lang: every event was accepted");
	is($lost, 0, "$lang: lost 0 (every event succeeded or was dead-lettered)");
	is($duplicates, 0, "$lang: duplicate database effects 0");
	is($dead_effects, 0, "$lang: no effect of a dead event");
	is($missing, 0, "$lang: every succeeded event has its effect");
	is($bad_attempts, 0, "$lang: every dead event spent its 5 attempts and is in the dead letters");
	is($fail_alive, 0, "$lang: every event that asked to fail is dead");
	cmp_ok($kills, '>', 0, "$lang: consumers were killed") if $every > 0;
}

my $connstr = $node->connstr('postgres');
SKIP:
{
	skip 'python3-psycopg2 is not installed', 8 unless $python_ok;
	chaos('Python', 'py', 2000, 3, 0.4, sub {
		IPC::Run::start([ '/usr/bin/python3', "$consumers/consumer.py", $connstr, 'py' ],
			'>', '/dev/null', '2>', '/dev/null');
	});
}

SKIP:
{
	skip 'node, or pg from npm (in test/consumers/node_modules), is not installed', 8
	  unless $node_ok;
	my $url = 'postgresql:///postgres?host=' . $node->host . '&port=' . $node->port;
	local $ENV{NODE_PATH} = $node_modules;
	chaos('Node', 'js', 1000, 2, 1.0, sub {
		IPC::Run::start([ 'node', "$consumers/consumer.js", $url, 'js' ],
			'>', '/dev/null', '2>', '/dev/null');
	});
}

$node->stop;
done_testing();
