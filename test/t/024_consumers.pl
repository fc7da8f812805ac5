# Consumers of external functions in real clients: Python with psycopg2
# (Debian's python3-psycopg2) and Node.js with pg from npm, each writing its
# effect and completing the job in one transaction (test/consumers/).
# Consumers are killed with kill -9 while the jobs drain, and started again;
# the kills pick consumers that hold leases, so that their jobs are left
# running and must come back by the expiry of their leases.  At the end:
# lost 0, duplicate database effects 0, no effect of a dead event, every
# event succeeded or dead-lettered with the right attempts, every lease
# stranded by a kill expired, and no consumer died of anything but a kill.
#
# The packages: test/lib.sh installs python3-psycopg2 (here and in the
# roots of the other versions).  pg comes from npm, installed by this test
# into its own temporary directory (npm's cache keeps it for the next run);
# PG_ASYNC_NODE_MODULES may name a node_modules that holds it already.
#
# Where the Node part runs: on every version.  On this machine test/suite.sh
# installs Node.js and npm; in the roots of the other versions the root has
# Debian's nodejs, and test/run-tests.sh installs pg from npm into it from
# outside (PG_ASYNC_NODE_MODULES).  Both set PG_ASYNC_NODE_REQUIRED, so that
# a Node part that cannot run fails instead of being skipped.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use POSIX ":sys_wait_h";
use Time::HiRes qw(time);
use PgAsyncTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $consumers = "$FindBin::RealBin/../consumers";
my $max_attempts = 5;

my $python_ok = system('/usr/bin/python3 -c "import psycopg2" 2>/dev/null') == 0;

# node_modules: the one PG_ASYNC_NODE_MODULES names, else pg installed from
# npm into a temporary directory; undef, with the reason in $node_why, if
# node or pg is not to be had
my ($node_modules, $node_why);
if (system('node --version >/dev/null 2>&1') != 0)
{
	$node_why = 'node is not installed';
}
elsif (defined $ENV{PG_ASYNC_NODE_MODULES})
{
	$node_modules = $ENV{PG_ASYNC_NODE_MODULES};
	$node_why = "PG_ASYNC_NODE_MODULES ($node_modules) holds no pg"
	  unless -d "$node_modules/pg";
}
elsif (system('npm --version >/dev/null 2>&1') != 0)
{
	$node_why = 'npm is not installed';
}
else
{
	my $dir = PostgreSQL::Test::Utils::tempdir('npm');
	my $out = `npm install --no-save --no-audit --no-fund --fetch-retries=1 --prefix '$dir' pg\@8 2>&1`;
	if ($? == 0 && -d "$dir/node_modules/pg")
	{
		$node_modules = "$dir/node_modules";
	}
	else
	{
		diag("npm install pg:\n$out");
		$node_why = 'npm install pg failed (its output is above)';
	}
}
undef $node_modules if defined $node_why;

my $node = pg_async_node('consumers', workers => 1);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text NOT NULL, consumer text NOT NULL,
                             at timestamptz NOT NULL DEFAULT clock_timestamp());
});
my $logdir = PostgreSQL::Test::Utils::tempdir('consumers');

# spawn starts a consumer: command and arguments, with PGAPPNAME
# "<function> consumer <its pid>", which its connections carry, and its
# output in a file of $logdir; returns its pid
sub spawn
{
	my ($function, @cmd) = @_;
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# the child leaves by exec or _exit: the END blocks of the test, which
		# stop the cluster, are the parent's
		$ENV{PGAPPNAME} = "$function consumer $$";
		open(STDOUT, '>', "$logdir/$function-$$.log") or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		{ exec(@cmd) }
		print "exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	return $pid;
}

# chaos: n events (one in ten asks to fail) for a function whose leases
# last 2 s, enqueued while $width consumers drain them; every $every
# seconds, up to $max times, a consumer that holds leases is killed with
# kill -9 and another started; at least $min_kills kills are expected
sub chaos
{
	my ($lang, $function, $n, $width, $every, $min_kills, $max, @cmd) = @_;
	my $psql = sub { $node->safe_psql('postgres', $_[0]) };

	$psql->(qq{
SELECT async.register_external('$function', max_attempts => $max_attempts,
                               retry_delays => '{0}', timeout => '2 seconds');});
	my %procs = map { spawn($function, @cmd) => 1 } 1 .. $width;

	# the producer: the events in batches of 100, one every 0.3 s, so that
	# the drain lasts long enough for the kills
	my $producer = fork;
	die "fork: $!" unless defined $producer;
	if ($producer == 0)
	{
		eval { $psql->(qq{
DO \$\$
BEGIN
	FOR b IN 0 .. $n / 100 - 1 LOOP
		INSERT INTO async.jobs (function, event_id, payload)
		SELECT '$function', '$function-' || i,
		       CASE WHEN i % 10 = 0 THEN '{"fail": true}' ELSE jsonb_build_object('i', i) END
		  FROM generate_series(b * 100 + 1, b * 100 + 100) i;
		COMMIT;
		PERFORM pg_sleep(0.3);
	END LOOP;
END \$\$;}); };
		print STDERR $@ if $@;
		POSIX::_exit($@ ? 1 : 0);
	}
	my ($kills, $stranded, $died, @died_logs) = (0, 0, 0);
	my $deadline = time + 180;
	my $next_kill = time;
	while (time < $deadline)
	{
		# a consumer that exits on its own is a failure; start another
		for my $pid (keys %procs)
		{
			next unless waitpid($pid, WNOHANG) == $pid;
			delete $procs{$pid};
			$died++;
			push @died_logs, "$logdir/$function-$pid.log";
			$procs{ spawn($function, @cmd) } = 1;
		}
		if ($producer && waitpid($producer, WNOHANG) == $producer)
		{
			die "the producer failed" if $?;
			$producer = 0;
		}
		last if !$producer && $psql->(qq{
SELECT count(*) = 0 FROM async.jobs WHERE function = '$function' AND state IN ('queued', 'running')}) eq 't';
		# kills while the producer runs (about 0.3 s per 100 events): a job
		# left running by a kill comes back 2 s later, so no job is left
		# running by kills for the 5 attempts that would dead-letter it
		if ($kills < $max && $producer && time >= $next_kill)
		{
			# a consumer whose claiming connection holds leases now
			my ($victim, $backend) = split /\|/, $psql->(qq{
SELECT split_part(a.application_name, ' ', 3), a.pid
  FROM pg_stat_activity a
 WHERE a.application_name LIKE '$function consumer %'
   AND a.pid IN (SELECT worker_pid FROM async.jobs WHERE function = '$function' AND state = 'running')
 ORDER BY random() LIMIT 1});
			if ($victim && $procs{$victim})
			{
				kill 'KILL', $victim;
				waitpid($victim, 0);
				delete $procs{$victim};
				$kills++;
				# once its backends are gone (a commit sent before the kill
				# is done), the jobs its backend still holds are stranded
				my $app = "$function consumer $victim";
				$node->poll_query_until('postgres', qq{
SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = '$app'})
				  or die "the backends of $app do not end";
				$stranded += $psql->(qq{
SELECT count(*) FROM async.jobs j
 WHERE function = '$function' AND state = 'running'
   AND worker_pid = $backend});
				$procs{ spawn($function, @cmd) } = 1;
				$next_kill = time + $every;
				next;
			}
		}
		select(undef, undef, undef, 0.05);
	}
	kill 'KILL', keys %procs, $producer || ();
	waitpid($_, 0) for keys %procs, $producer || ();

	my ($accepted, $succeeded, $dead, $lost, $duplicates, $dead_effects, $missing,
		$bad_attempts, $fail_alive, $ok_dead, $expired)
	  = split /\|/, $psql->(qq{
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
       (SELECT count(*) FROM j WHERE state = 'dead' AND (attempts <> $max_attempts OR NOT EXISTS (
            SELECT FROM async.dead_letters d WHERE d.event_id = j.event_id AND d.reason = 'exhausted'))),
       (SELECT count(*) FROM j WHERE payload ? 'fail' AND state <> 'dead'),
       (SELECT count(*) FROM j WHERE NOT payload ? 'fail' AND state = 'dead'),
       (SELECT count(*) FROM async.attempts
         WHERE function = '$function' AND error = 'lease expired' AND sqlstate = '57014')});
	diag("$lang consumers: events $accepted: succeeded $succeeded, dead-lettered $dead; "
		  . "kill -9 $kills, leases stranded $stranded, attempts expired $expired; died $died");
	diag("$lang consumers: lost = $lost, duplicate effects = $duplicates, effects of dead events = $dead_effects");
	for my $f (@died_logs)
	{
		diag("$f:\n" . slurp_file($f));
	}
	is($accepted, $n, "$lang: every event was accepted");
	is($lost, 0, "$lang: lost 0 (every event succeeded or was dead-lettered)");
	is($duplicates, 0, "$lang: duplicate database effects 0");
	is($dead_effects, 0, "$lang: no effect of a dead event");
	is($missing, 0, "$lang: every succeeded event has its effect");
	is($bad_attempts, 0, "$lang: every dead event spent its $max_attempts attempts and is in the dead letters");
	is($fail_alive, 0, "$lang: every event that asked to fail is dead");
	is($ok_dead, 0, "$lang: no other event is dead");
	is($died, 0, "$lang: no consumer died but by kill -9");
	cmp_ok($kills, '>=', $min_kills, "$lang: at least $min_kills consumers holding leases were killed");
	cmp_ok($stranded, '>', 0, "$lang: the kills left leases running");
	cmp_ok($expired, '>=', $stranded, "$lang: every stranded lease expired (an attempt 'lease expired', 57014)");
}

my $connstr = $node->connstr('postgres');
SKIP:
{
	skip 'python3-psycopg2 is not installed', 12 unless $python_ok;
	chaos('Python', 'py', 2000, 3, 0.3, 5, 20,
		'/usr/bin/python3', "$consumers/consumer.py", $connstr, 'py');
}

SKIP:
{
	if (!defined $node_modules)
	{
		fail("Node consumers: $node_why") if $ENV{PG_ASYNC_NODE_REQUIRED};
		skip "Node consumers: $node_why", 12;
	}
	my $url = 'postgresql:///postgres?host=' . $node->host . '&port=' . $node->port;
	local $ENV{NODE_PATH} = $node_modules;
	chaos('Node', 'js', 1000, 2, 0, 1, 1,
		'node', "$consumers/consumer.js", $url, 'js');
}

$node->stop;
done_testing();
