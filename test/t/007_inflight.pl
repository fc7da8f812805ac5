# In-flight markers (src/inflight.c).  An idle worker's claim commits
# without waiting for the WAL flush; the job's marker, written before its
# handler starts, is what charges the attempt if the server goes down before
# the claim reached the disk.  A real crash within that window cannot be
# timed from a test, so this test leaves the markers such a crash leaves,
# with the jobs in the state the lost claim leaves them in, and restarts.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pg_async_node('inflight');
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text);
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE sql
AS $$INSERT INTO public.effects VALUES (e->>'id')$$;
SELECT async.register('public.work(jsonb)', max_attempts => 2, retry_delays => '{0}');
SELECT async.register('public.work(jsonb)', name => 'kwork', concurrency_key => 'id',
					  key_concurrency => 1);
});
ok(wait_for_workers($node, 2), 'workers start');

# 1. Jobs run through the idle claim write markers, and clear them when
# their batch commits.
$node->safe_psql('postgres', q{SELECT async.invoke('work', '{"id": "warm"}', 'warm')});
ok($node->poll_query_until('postgres', "SELECT count(*) = 1 FROM public.effects"), 'a job runs');
my $dboid = $node->safe_psql('postgres',
	"SELECT oid FROM pg_database WHERE datname = 'postgres'");
my $file = $node->data_dir . "/pg_async/inflight.$dboid";
ok(-e $file, 'the marker file exists');
ok( $node->poll_query_until('postgres', "SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'warm'"),
	'the job succeeded');
my $marked = 1;
foreach my $try (1 .. 100)
{
	my $data = slurp_file($file);
	$marked = ($data =~ /[^\0]/) ? 1 : 0;
	last unless $marked;
	usleep(100_000);
}
is($marked, 0, 'the marker is cleared once the batch commits');

# 2. Leave what a crash leaves: three jobs, each with a marker.
#  lost-1: its claim did not reach the disk (queued, attempts 0), marker says attempt 1
#  lost-2: the same on its last attempt (attempts 1 of 2), marker says attempt 2
#  kept-1: its claim survived (running, attempts 1, worker gone), marker says attempt 1
#  done-1: finished long ago, a stale marker says attempt 1
#  kept-2, kept-3: a batch whose claim survived (both running, attempts 1,
#           worker gone), the marker says kept-2 was running: kept-2 is
#           charged, kept-3 given back uncharged and not suspect
#  kkept-2, kkept-3: keyed jobs of the same batch, which the claim left
#           marked limited and reserved in async.running (0.16): given
#           back uncharged too
$node->safe_psql('postgres', q{
SELECT async.pause('work');
INSERT INTO async.jobs (event_id, function, payload) VALUES
	('lost-1', 'work', '{"id": "lost-1"}'), ('lost-2', 'work', '{"id": "lost-2"}'),
	('kept-1', 'work', '{"id": "kept-1"}'), ('kept-2', 'work', '{"id": "kept-2"}'),
	('kept-3', 'work', '{"id": "kept-3"}');
SELECT async.pause('kwork');
INSERT INTO async.jobs (event_id, function, payload) VALUES
	('kkept-2', 'kwork', '{"id": "kkept-2"}'), ('kkept-3', 'kwork', '{"id": "kkept-3"}');
});
$node->stop('immediate');
$node->start;
# The claims that survived are a live worker's until the stop below, so
# that the workers' own look for jobs of dead workers leaves them alone
# meanwhile: two batches, told apart by their start.
ok(wait_for_workers($node, 2), 'workers start again');
$node->safe_psql('postgres', q{
UPDATE async.jobs SET attempts = 1, errors = '[{"attempt": 1, "message": "earlier"}]'
 WHERE event_id = 'lost-2';
-- as a claim leaves it: claims take only jobs not marked paused (pause() above marked them)
UPDATE async.jobs SET state = 'running', attempts = 1, paused = false,
       worker_pid = (SELECT min(p) FROM unnest(async._live_worker_pids()) p),
       started_at = clock_timestamp()
 WHERE event_id = 'kept-1';
UPDATE async.jobs SET state = 'running', attempts = 1, paused = false,
       worker_pid = (SELECT min(p) FROM unnest(async._live_worker_pids()) p),
       started_at = now()
 WHERE event_id IN ('kept-2', 'kept-3', 'kkept-2', 'kkept-3');
INSERT INTO async.running (job_id, function, key)
SELECT id, function, key FROM async.jobs WHERE event_id IN ('kkept-2', 'kkept-3');
});
is( $node->safe_psql('postgres', q{
SELECT string_agg(event_id || ' ' || limited || ' ' || key, ', ' ORDER BY event_id)
  FROM async.jobs WHERE function = 'kwork'}),
	'kkept-2 true kkept-2, kkept-3 true kkept-3', 'the keyed jobs are running as a claim leaves them');
my %id = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	"SELECT event_id || '|' || id FROM async.jobs WHERE event_id IN ('lost-1', 'lost-2', 'kept-1', 'kept-2', 'warm')");

# records: magic "pgas", attempt, job id, database, timeline; one per worker slot
my $db = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'postgres'");
my $other_db = $node->safe_psql('postgres', "SELECT oid FROM pg_database WHERE datname = 'template1'");
sub marker
{
	my ($attempt, $job, $dboid, $tli) = @_;
	return pack('V l< q< V V', 0x70676173, $attempt, $job, $dboid, $tli // 1);
}
$node->stop('immediate');
my $records = marker(1, $id{'lost-1'}, $db)
  . marker(2, $id{'lost-2'}, $db)
  . marker(1, $id{'kept-1'}, $db)
  . marker(1, $id{'kept-2'}, $db)
  . marker(1, $id{'warm'}, $db)
  # the same job id in another database is none of this database's business
  . marker(2, $id{'lost-1'}, $other_db)
  # nor is a marker of another timeline (a promoted copy of this server)
  . marker(2, $id{'lost-1'}, $db, 2);
open(my $fh, '>', $file) or die "could not write $file: $!";
binmode $fh;
print $fh $records;
close $fh;

my $log_offset = -s $node->logfile;
$node->start;
ok( $node->wait_for_log(
		qr/pg_async charged 4 jobs an attempt: they were running when the server went down/,
		$log_offset),
	'the jobs whose claims were lost are charged, and those of the claims that survived');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM async.attempt_log WHERE event_id = 'kept-1' AND outcome = 'crashed'"),
	'the job alone in its batch whose claim survived is charged as before');

is( $node->safe_psql('postgres', q{
SELECT string_agg(event_id || ' ' || state || ' ' || attempts, ', ' ORDER BY event_id)
  FROM async.jobs WHERE event_id IN ('lost-1', 'lost-2', 'kept-1', 'kept-2', 'kept-3', 'kkept-2',
									  'kkept-3', 'warm')}),
	'kept-1 queued 1, kept-2 queued 1, kept-3 queued 0, kkept-2 queued 0, kkept-3 queued 0,'
	  . ' lost-1 queued 1, lost-2 dead 2, warm succeeded 1',
	'each interrupted attempt is charged once; the finished job is left alone');
is( $node->safe_psql('postgres',
		"SELECT string_agg(event_id, ',' ORDER BY event_id) FROM async.jobs WHERE suspect"),
	'', 'the marker clears the rest of a batch of suspicion');
is( $node->safe_psql('postgres', q{
SELECT string_agg(event_id || ' ' || attempt || ' ' || outcome || ' ' || sqlstate, ', ' ORDER BY event_id)
  FROM async.attempts WHERE outcome = 'crashed'}),
	'kept-1 1 crashed 57P01, kept-2 1 crashed 57P01, lost-1 1 crashed 57P01, lost-2 2 crashed 57P01',
	'the crashed attempts are in the history');
is( $node->safe_psql('postgres', "SELECT reason FROM async.dead_letters WHERE event_id = 'lost-2'"),
	'exhausted', 'a lost claim on the last attempt dead-letters the event');
is( $node->safe_psql('postgres', q{
SELECT string_agg(event_id || ' ' || limited || ' ' || key, ', ' ORDER BY event_id)
  FROM async.jobs WHERE function = 'kwork'}) . ', '
	  . $node->safe_psql('postgres', "SELECT count(*) FROM async.running WHERE function = 'kwork'"),
	'kkept-2 true kkept-2, kkept-3 true kkept-3, 0',
	'the keyed jobs given back keep their keys and marks, and leave their reservations');
is(-s $file, 0, 'the markers are emptied once acted on');

# 3. After that the jobs run normally, once each.
$node->safe_psql('postgres', q{SELECT async.resume('work'); SELECT async.resume('kwork');
UPDATE async.jobs SET run_at = now() WHERE state = 'queued'});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 6 FROM async.jobs WHERE event_id IN ('lost-1', 'kept-1', 'kept-2', 'kept-3', 'kkept-2', 'kkept-3') AND state = 'succeeded'"),
	'the charged jobs run again');
is( $node->safe_psql('postgres',
		"SELECT string_agg(event_id, ',' ORDER BY event_id) FROM public.effects WHERE event_id <> 'warm'"),
	'kept-1,kept-2,kept-3,kkept-2,kkept-3,lost-1', 'one effect each');

# 4. pg_async.synchronous_commit = off: the commits that finish a batch, and
# so claim the next one, return before their WAL is flushed too.  A job
# claimed by such a commit gets its marker as an idle claim's job does
# (wal_writer_delay keeps the WAL writer from flushing the claim meanwhile),
# and a handler that kills its worker, and so restarts the server and loses
# the WAL not yet written, is charged an attempt for every crash.
$node->append_conf('postgresql.conf', q{
pg_async.synchronous_commit = off
pg_async.workers = 1
wal_writer_delay = 10s
restart_after_crash = on
});
$node->reload;
ok(wait_for_workers($node, 1),
	'synchronous_commit off: one worker left');
$node->safe_psql('postgres', q{
CREATE TABLE public.gate (event_id text PRIMARY KEY, open boolean NOT NULL DEFAULT false);
CREATE FUNCTION public.hold(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects VALUES (e->>'id');
	WHILE NOT (SELECT g.open FROM public.gate g WHERE g.event_id = e->>'id') LOOP
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT async.register('public.hold(jsonb)', retry_delays => '{0}');
CREATE FUNCTION public.crash(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'kill -9 ' || pg_backend_pid());
END $$;
SELECT async.register('public.crash(jsonb)', max_attempts => 2, retry_delays => '{0}');
INSERT INTO public.gate VALUES ('hold-1'), ('hold-2'), ('hold-3');
SELECT async.invoke('hold', '{"id": "hold-1"}', 'hold-1');
});

# the jobs named by the marker file's records, as "id/attempt"
sub markers
{
	my $data = -e $file ? slurp_file($file) : '';
	my @found;
	for (my $off = 0; $off + 24 <= length($data); $off += 24)
	{
		my ($magic, $attempt, $job) = unpack('V l< q<', substr($data, $off, 24));
		push @found, "$job/$attempt" if $magic == 0x70676173;
	}
	return join(',', @found);
}

ok(wait_for_running($node, 'hold-1'), 'synchronous_commit off: the first job runs');
# due before hold-1's run transaction began, so that its finishing commit,
# which claims what was due when that transaction began, takes it
$node->safe_psql('postgres', q{
SELECT async.invoke('hold', '{"id": "hold-2"}', 'hold-2', now() - interval '1 hour');
UPDATE public.gate SET open = true WHERE event_id = 'hold-1';
});
ok(wait_for_running($node, 'hold-2'), 'synchronous_commit off: the job queued behind it runs next');
my $hold2 = $node->safe_psql('postgres', "SELECT id FROM async.jobs WHERE event_id = 'hold-2'");
is(markers(), "$hold2/1",
	'synchronous_commit off: a job claimed by a finishing commit has its marker');

# the crashing job comes behind hold-3, so the commit that finishes hold-3
# claims it without a flush
$node->safe_psql('postgres', q{
SELECT async.invoke('hold', '{"id": "hold-3"}', 'hold-3');
UPDATE public.gate SET open = true WHERE event_id = 'hold-2';
});
ok(wait_for_running($node, 'hold-3'), 'synchronous_commit off: the third job runs');
$log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{
SELECT async.invoke('crash', '{}', 'crash-1', now() - interval '1 hour');
UPDATE public.gate SET open = true WHERE event_id = 'hold-3';
});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM async.dead_letters WHERE event_id = 'crash-1'"),
	'synchronous_commit off: the crashing handler is dead-lettered');
is( $node->safe_psql('postgres', q{
SELECT d.attempts || ' ' || jsonb_array_length(d.errors) || ' ' || d.reason
  FROM async.dead_letters d WHERE event_id = 'crash-1'}),
	'2 2 exhausted', 'synchronous_commit off: each crash charged one attempt');
my $crashes = () = slurp_file($node->logfile, $log_offset) =~ /terminated by signal 9/g;
is($crashes, 2, 'synchronous_commit off: two attempts, two crashes, not more');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM async.jobs WHERE event_id LIKE 'hold-%' AND state = 'succeeded'"),
	'synchronous_commit off: the held jobs succeed');
is( $node->safe_psql('postgres', q{
SELECT string_agg(event_id || ' ' || n, ', ' ORDER BY event_id)
  FROM (SELECT event_id, count(*) n FROM public.effects WHERE event_id LIKE 'hold-%' GROUP BY 1) e}),
	'hold-1 1, hold-2 1, hold-3 1',
	'synchronous_commit off: one effect each, whatever the crashes took');

$node->stop;
done_testing();
