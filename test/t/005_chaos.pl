# Chaos: producers enqueue events with unique event_ids into two databases
# at once (pg_async.databases = '*': each has its own workers), while the
# test kills workers of either database and the launcher with SIGKILL,
# cancels and terminates workers, and restarts the server in immediate mode
# mid-batch.  Handlers fail at random and some run past their timeout.  At
# the end every accepted event, in each database, must be exactly one of:
#   succeeded, with exactly one effect row;
#   dead-lettered, with no effect row and attempts = max_attempts;
#   still queued, with a future run_at and no effect row.
#
# The chaos phase lasts 150 seconds, about three minutes for the whole test;
# PG_ASYNC_CHAOS_SECONDS=N sets another length for a long run.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use List::Util qw(max);

my $chaos_seconds = $ENV{PG_ASYNC_CHAOS_SECONDS} || 150;
my $max_attempts = 3;
my $batch_events = 10;    # events per producer transaction
# one producer per database; the blows hit the whole cluster, so a crash
# or restart interrupts both databases' batches at once
my @databases = ('postgres', 'chaos2');
my $nproducers = scalar @databases;

# room for 2 databases x 2 workers, the launcher and the logical
# replication launcher
my $node = pg_async_node('chaos', databases => '*', workers => 2, conf => q{
max_worker_processes = 16
restart_after_crash = on
log_statement = none
});

$node->safe_psql('postgres', 'CREATE DATABASE chaos2');

# effects has no unique constraint: a duplicate would show as a second row
for my $db (@databases)
{
	$node->safe_psql($db, qq{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text, pid int, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.chaos(e jsonb) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE
	kind text := e->>'kind';
BEGIN
	-- the effect first: a failure below must roll it back
	INSERT INTO public.effects (event_id, pid) VALUES (e->>'id', pg_backend_pid());
	PERFORM pg_sleep(random() * 0.006);
	IF kind = 'slow' OR (kind = 'sometimes_slow' AND random() < 0.3) THEN
		PERFORM pg_sleep(1);		-- past the timeout of 200 ms
	END IF;
	IF kind = 'doomed' OR (kind = 'flaky' AND random() < 0.5) OR random() < 0.05 THEN
		RAISE EXCEPTION 'chaos: event % fails', e->>'id';
	END IF;
END \$\$;
SELECT async.register('public.chaos(jsonb)', max_attempts => $max_attempts,
                      retry_delays => '{0.2 seconds}', timeout => '200 milliseconds');
});
}
ok(wait_for_workers($node, 2, $_), "$_: two workers start") for @databases;

# ---------------------------------------------------------------------------
# Producers: shell loops of psql, producer N into database $databases[N-1].
# Each transaction enqueues the events p<N>-<batch>-1..10.  A failed INSERT
# (the server restarting) is retried with the same event_ids and ON
# CONFLICT DO NOTHING until it succeeds: only then is the batch written to
# the producer's list of accepted batches.  A producer stops at the next
# batch once the stop file exists.
# ---------------------------------------------------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir;
my $stopfile = "$dir/stop";
my $psql = $node->installed_command('psql');

my $producer_script = "$dir/producer.sh";
open my $fh, '>', $producer_script or die "cannot write $producer_script: $!";
print $fh <<'EOS';
#!/bin/bash
# producer.sh N PSQL CONNSTR STOPFILE ACCEPTED LOG
n=$1; psql=$2; connstr=$3; stop=$4; accepted=$5
exec >>"$6" 2>&1
export PGCONNECT_TIMEOUT=5 PGOPTIONS='-c statement_timeout=60s'
b=0
while [ ! -e "$stop" ]; do
	b=$((b + 1))
	sql="INSERT INTO async.jobs (function, event_id, payload)
SELECT 'chaos', s.id, jsonb_build_object('id', s.id, 'kind',
       CASE WHEN s.i = 1 AND $b % 10 = 0 THEN 'slow'
            WHEN s.i = 2 AND $b % 5 = 0 THEN 'doomed'
            WHEN s.i = 3 THEN 'flaky'
            WHEN s.i = 4 THEN 'sometimes_slow'
            ELSE 'ok' END)
  FROM (SELECT i, 'p$n-$b-' || i AS id FROM generate_series(1, BATCH) i) s
ON CONFLICT (event_id) DO NOTHING"
	tries=0
	until "$psql" -X -q -v ON_ERROR_STOP=1 -d "$connstr" -c "$sql" >/dev/null; do
		tries=$((tries + 1))
		if [ $tries -gt 600 ]; then echo "producer $n: batch $b never committed"; exit 1; fi
		sleep 0.2
	done
	# committed: the batch is accepted
	echo $b >> "$accepted"
	sleep 0.2
done
exit 0
EOS
close $fh;
{
	# the batch size, written into the script
	my $text = slurp_file($producer_script);
	$text =~ s/BATCH/$batch_events/;
	open my $out, '>', $producer_script or die;
	print $out $text;
	close $out;
}

my @producers;
for my $n (1 .. $nproducers)
{
	push @producers,
	  IPC::Run::start([
		  'bash', $producer_script, $n, $psql,
		  $node->connstr($databases[ $n - 1 ]), $stopfile,
		  "$dir/accepted_$n", "$dir/producer_$n.log"
	  ]);
}

# ---------------------------------------------------------------------------
# Chaos
# ---------------------------------------------------------------------------
my %count = (
	kill_worker => 0,
	kill_launcher => 0,
	terminate => 0,
	cancel => 0,
	restart => 0);
# blows at workers (kill, terminate, cancel), by the database they served
my %hits = map { $_ => 0 } @databases;

# query: the output of a query in database db (default 'postgres'), or undef
# when the server does not answer
sub query
{
	my ($sql, $db) = @_;
	my ($stdout, $stderr, $timed_out);
	my $ret = $node->psql($db // 'postgres', $sql,
		stdout => \$stdout, stderr => \$stderr,
		timeout => 30, timed_out => \$timed_out);
	return (defined $ret && $ret == 0) ? $stdout : undef;
}

sub postmaster_pid
{
	open my $pf, '<', $node->data_dir . '/postmaster.pid' or return 0;
	my $line = <$pf>;
	close $pf;
	chomp $line if defined $line;
	return $line // 0;
}

# is_ours: $pid is still a child of this node's postmaster (the pid was read
# from the server a moment ago; never signal a process that took it since)
sub is_ours
{
	my ($pid) = @_;
	my $pm = postmaster_pid();
	return 0 unless $pm && $pid;
	open my $sf, '<', "/proc/$pid/status" or return 0;
	while (my $l = <$sf>)
	{
		if ($l =~ /^PPid:\s+(\d+)/)
		{
			close $sf;
			return $1 == $pm;
		}
	}
	close $sf;
	return 0;
}

# a worker pid to hit and its database: a database at random (async.workers
# lists only the workers of the database it is read in), and there
# preferably a worker running a handler
sub pick_worker
{
	my $db = $databases[ int(rand(@databases)) ];
	my $out = query(q{
SELECT COALESCE((SELECT pid FROM async.workers WHERE state = 'running' ORDER BY random() LIMIT 1),
                (SELECT pid FROM async.workers ORDER BY random() LIMIT 1))}, $db);
	return (defined $out && $out =~ /^(\d+)$/) ? ($1, $db) : ();
}

sub kill_worker
{
	my ($pid, $db) = pick_worker();
	return unless $pid && is_ours($pid);
	if (kill('KILL', $pid))
	{
		$count{kill_worker}++;
		$hits{$db}++;
	}
}

sub kill_launcher
{
	my $out = query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_async launcher'");
	return unless defined $out && $out =~ /^(\d+)$/ && is_ours($1);
	$count{kill_launcher}++ if kill('KILL', $1);
}

sub signal_worker
{
	my ($how) = @_;
	my ($pid, $db) = pick_worker();
	return unless $pid;
	my $out = query("SELECT pg_${how}_backend($pid)");
	if (defined $out && $out eq 't')
	{
		$count{$how}++;
		$hits{$db}++;
	}
}

# immediate shutdown while a batch runs, in either database, then start again
sub restart_immediate
{
	my $deadline = time + 10;
	RUNNING: while (time < $deadline)
	{
		for my $db (@databases)
		{
			my $out = query("SELECT count(*) > 0 FROM async.workers WHERE state = 'running'", $db);
			last RUNNING if defined $out && $out eq 't';
		}
		usleep(20_000);
	}
	$node->stop('immediate');
	$node->start;
	$count{restart}++;
}

my $start = time;
my $end = $start + $chaos_seconds;
my $nrestarts = max(3, int($chaos_seconds / 40));
my @restart_at = map { $start + $chaos_seconds * $_ / ($nrestarts + 1) } 1 .. $nrestarts;
# every kind of blow once early on, then at random
my @first = (\&kill_worker, sub { signal_worker('terminate') },
	sub { signal_worker('cancel') }, \&kill_launcher);
while (time < $end)
{
	if (@restart_at && time >= $restart_at[0])
	{
		shift @restart_at;
		restart_immediate();
		next;
	}
	usleep(int((0.5 + rand(2.0)) * 1_000_000));
	if (@first)
	{
		(shift @first)->();
		next;
	}
	my $r = rand();
	if    ($r < 0.25) { kill_worker(); }
	elsif ($r < 0.35) { kill_launcher(); }
	elsif ($r < 0.65) { signal_worker('terminate'); }
	else              { signal_worker('cancel'); }
}
restart_immediate() while @restart_at;

# ---------------------------------------------------------------------------
# Stop the producers; wait for the queue to settle
# ---------------------------------------------------------------------------
open my $sfh, '>', $stopfile or die;
close $sfh;
for my $h (@producers)
{
	my $deadline = time + 180;
	while ($h->pumpable && time < $deadline)
	{
		# the producer may exit between pumpable and pump_nb: IPC::Run
		# then dies with "process ended prematurely", which means done
		last unless eval { $h->pump_nb; 1 };
		usleep(100_000);
	}
	if ($h->pumpable)
	{
		$h->kill_kill;
		fail('producer stops');
	}
	else
	{
		$h->finish;
		is($h->result(0), 0, 'producer stops after its last batch committed');
	}
}

ok(wait_for_workers($node, 2, $_), "$_: the workers are back after the chaos")
  for @databases;

# first until nothing is ready or running, then (a little longer) until
# the retries have run too; queued jobs with a future run_at are allowed.
# Both databases drain at the same time, each with its own workers, so
# waiting for one after the other costs little more than the slower one.
for my $db (@databases)
{
	my $settled = 0;
	my $deadline = time + 120;
	while (time < $deadline)
	{
		my $out = query(q{
SELECT count(*) FILTER (WHERE state = 'running' OR run_at <= now()) || ' ' || count(*)
  FROM async.jobs WHERE finished_at IS NULL}, $db);
		if (defined $out && $out =~ /^(\d+) (\d+)$/)
		{
			$settled = 1 if $1 == 0;
			last if $2 == 0;
		}
		usleep(200_000);
	}
	ok($settled, "$db: the queue settles: no job ready or running");
}

# ---------------------------------------------------------------------------
# Check every accepted event, database by database
# ---------------------------------------------------------------------------
my @names = qw(accepted succeeded dead queued_later lost duplicates effects_of_dead
  stuck running ready doomed_succeeded dead_total over_attempts phantom_effects unaccepted_jobs);

# check_database loads the batches accepted by db's producers into
# public.accepted of db and returns the figures of @names for it
sub check_database
{
	my ($db) = @_;
	my @values;
	for my $n (1 .. $nproducers)
	{
		next unless $databases[ $n - 1 ] eq $db;
		my $file = "$dir/accepted_$n";
		next unless -e $file;
		for my $b (split /\n/, slurp_file($file))
		{
			push @values, "($n, $b)" if $b =~ /^\d+$/;
		}
	}
	$node->safe_psql($db, 'CREATE TABLE public.accepted (event_id text PRIMARY KEY)');
	while (my @chunk = splice(@values, 0, 1000))
	{
		$node->safe_psql($db, qq{
INSERT INTO public.accepted
SELECT 'p' || p || '-' || b || '-' || i
  FROM (VALUES @{[ join(',', @chunk) ]}) v(p, b), generate_series(1, $batch_events) i});
	}

	my $result = $node->safe_psql($db, qq{
WITH e AS (SELECT event_id, count(*) AS n FROM public.effects GROUP BY event_id),
d AS (SELECT event_id, count(*) AS n, min(attempts) AS attempts FROM async.dead_letters GROUP BY event_id),
c AS (
	SELECT a.event_id, j.state, j.attempts, j.run_at, j.payload->>'kind' AS kind,
		   COALESCE(e.n, 0) AS effects, COALESCE(d.n, 0) AS dead_letters, d.attempts AS dl_attempts,
		   j.worker_pid = ANY (async._live_worker_pids()) AS live_worker
	  FROM public.accepted a
	  LEFT JOIN async.jobs j ON j.event_id = a.event_id
	  LEFT JOIN e ON e.event_id = a.event_id
	  LEFT JOIN d ON d.event_id = a.event_id)
SELECT count(*) AS accepted,
       count(*) FILTER (WHERE state = 'succeeded' AND effects = 1 AND dead_letters = 0) AS succeeded,
       count(*) FILTER (WHERE state = 'dead' AND effects = 0 AND attempts = $max_attempts
                          AND dead_letters = 1 AND dl_attempts = $max_attempts) AS dead,
       count(*) FILTER (WHERE state = 'queued' AND run_at > now() AND effects = 0
                          AND dead_letters = 0) AS queued_later,
       count(*) FILTER (WHERE state IS NULL) AS lost,
       count(*) FILTER (WHERE effects > 1) AS duplicates,
       count(*) FILTER (WHERE state = 'dead' AND effects > 0) AS effects_of_dead,
       count(*) FILTER (WHERE state = 'running' AND NOT COALESCE(live_worker, false)) AS stuck,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'queued' AND run_at <= now()) AS ready,
       count(*) FILTER (WHERE kind IN ('slow', 'doomed') AND state = 'succeeded') AS doomed_succeeded,
       count(*) FILTER (WHERE state = 'dead') AS dead_total,
       (SELECT count(*) FROM async.jobs j WHERE j.attempts > $max_attempts) AS over_attempts,
       (SELECT count(*) FROM public.effects f
         WHERE NOT EXISTS (SELECT FROM public.accepted a WHERE a.event_id = f.event_id)) AS phantom_effects,
       (SELECT count(*) FROM async.jobs j
         WHERE NOT EXISTS (SELECT FROM public.accepted a WHERE a.event_id = j.event_id)) AS unaccepted_jobs
  FROM c});
	my %r;
	@r{@names} = split /\|/, $result;
	return \%r;
}
my %result = map { $_ => check_database($_) } @databases;

my $crash_restarts = () = slurp_file($node->logfile) =~
  /all server processes terminated; reinitializing/g;
my $log = slurp_file($node->logfile);

diag(sprintf('chaos: %d s, kills %d (workers %d, launcher %d), terminates %d, cancels %d, '
	  . 'immediate restarts %d, crash restarts %d',
	$chaos_seconds, $count{kill_worker} + $count{kill_launcher}, $count{kill_worker},
	$count{kill_launcher}, $count{terminate}, $count{cancel}, $count{restart},
	$crash_restarts));
for my $db (@databases)
{
	my %r = %{ $result{$db} };
	diag(sprintf('%s: events accepted %d: succeeded %d, dead-lettered %d, queued for later %d; '
		  . 'its workers hit %d times',
		$db, $r{accepted}, $r{succeeded}, $r{dead}, $r{queued_later}, $hits{$db}));
	diag(sprintf('%s: lost = %d, duplicate effects = %d, effects of dead events = %d, '
		  . 'stuck jobs = %d (running %d, ready %d)',
		$db, $r{lost}, $r{duplicates}, $r{effects_of_dead}, $r{stuck}, $r{running}, $r{ready}));
}

cmp_ok($count{kill_worker}, '>=', 1, 'workers killed with SIGKILL');
cmp_ok($count{kill_launcher}, '>=', 1, 'launcher killed with SIGKILL');
cmp_ok($count{terminate}, '>=', 1, 'workers terminated');
cmp_ok($count{cancel}, '>=', 1, 'workers cancelled');
cmp_ok($count{restart}, '>=', 3, 'immediate restarts');
for my $db (@databases)
{
	my %r = %{ $result{$db} };
	cmp_ok($r{accepted}, '>=', 500, "$db: events accepted");
	cmp_ok($hits{$db}, '>=', 1, "$db: its workers were killed, terminated or cancelled");
	is($r{lost}, 0, "$db: lost = 0");
	is($r{duplicates}, 0, "$db: duplicate effects = 0");
	is($r{effects_of_dead}, 0, "$db: no effect of a dead-lettered event");
	is($r{stuck}, 0, "$db: stuck jobs = 0");
	is($r{running} + $r{ready}, 0, "$db: no job left running or ready");
	is($r{succeeded} + $r{dead} + $r{queued_later}, $r{accepted},
		"$db: every accepted event: succeeded once, dead-lettered without effect, or queued for later");
	is($r{dead}, $r{dead_total}, "$db: every dead event: no effect, attempts = max_attempts, one dead letter");
	is($r{doomed_succeeded}, 0, "$db: events whose handler always fails never succeed");
	is($r{over_attempts}, 0, "$db: no job ran more than max_attempts charged attempts");
	is($r{phantom_effects}, 0, "$db: no effect of an event that was never accepted");
	is($r{unaccepted_jobs}, 0, "$db: no job that no producer saw committed");

	next if $r{accepted} == $r{succeeded} + $r{dead} + $r{queued_later};
	diag("$db: events that are none of the three:\n" . $node->safe_psql($db, q{
SELECT a.event_id, j.state, j.attempts, j.run_at > now() AS later, j.payload->>'kind' AS kind,
       (SELECT count(*) FROM public.effects f WHERE f.event_id = a.event_id) AS effects,
       (SELECT count(*) FROM async.dead_letters d WHERE d.event_id = a.event_id) AS dead_letters,
       j.errors
  FROM public.accepted a LEFT JOIN async.jobs j USING (event_id)
 WHERE j.state IS NULL
    OR (j.state = 'succeeded' AND (SELECT count(*) FROM public.effects f WHERE f.event_id = a.event_id) <> 1)
    OR (j.state = 'dead' AND ((SELECT count(*) FROM public.effects f WHERE f.event_id = a.event_id) <> 0
                              OR j.attempts <> 3))
    OR j.state = 'running' OR (j.state = 'queued' AND j.run_at <= now())
 LIMIT 20}));
}
unlike($log, qr/terminated by signal (?!9)\d+|PANIC|TRAP:/,
	'no process crashed except those killed with SIGKILL');

$node->stop;
done_testing();
