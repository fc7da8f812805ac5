# What a claim takes.
#
# 1. The workers' cached plans as the queue grows.  A worker plans its
# statements once and keeps the plans until an invalidation; planned while
# async.jobs was empty (after a TRUNCATE, or an ANALYZE of an empty queue),
# the claim joined the batch to a full scan of async.jobs, which costs
# nothing at ten rows and made every claim walk the whole table at tens of
# thousands: the drain below then took minutes instead of a second or two.
# Autovacuum is off, so that no ANALYZE comes to the rescue; auto_explain
# logs the plans the worker runs.
#
# 1b. The same with statistics that count 0 rows in many pages, as an
# ANALYZE run during a large INSERT leaves them.  In both cases the
# worker's planner is told async.jobs holds at least 100,000 rows.
#
# 2. pg_async.batch_max_bytes: a batch holds its payloads in the worker's
# memory, so a claim stops at that many bytes of payload.
#
# 3. A batch sized by fast jobs that meets slow ones gives the rest back
# once it has run 200 ms, so that colleagues take them.
#
# 4. A paused function's jobs are marked paused, out of the index the
# workers claim from: a large paused backlog ahead of other jobs is not
# walked by every claim.
#
# 5. pg_async.batch_wait: a stream of single-job transactions is claimed in
# batches, which jobs that come one at a time are not made to wait for.
#
# 6. A worker held up by a handler slower than its batch's estimate does
# not keep new jobs from its sleeping colleague.
#
# 7. async.pause() while a claim holds one of the function's jobs: the
# pause neither waits for the claim's lock (it could deadlock with the
# worker) nor returns before the claim commits, so that a job of the
# function that starts afterwards was already running when it returned.
#
# 8. A claim is a HOT update: no index of async.jobs names a column it
# changes (from 0.11 to 0.14 jobs_keyed_idx's predicate named state, and
# no claim was).
#
# 9. A job that expired, in the tail of a batch that overran: given back
# with the tail, uncharged, it is dead-lettered by the claim that takes it
# next, as one that expired in a claim of its own is.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = pg_async_node('plans', workers => 1, preload => 'pg_async, auto_explain', conf => q{
autovacuum = off
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
});
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
SELECT async.register('public.noop(jsonb)');
});
ok(wait_for_workers($node, 1), 'the worker starts');

# The worker claims one job at a time often enough to settle on a generic
# plan (the plan cache plans the first five executions for their
# parameters, and after an invalidation plans the generic one at once).
my $small = 0;
foreach my $i (1 .. 10)
{
	$node->safe_psql('postgres', q{SELECT async.invoke('noop', '{}')});
	$small++
	  if $node->poll_query_until('postgres',
		"SELECT count(*) = $i FROM async.jobs WHERE state = 'succeeded'");
}
is($small, 10, 'ten jobs run one by one');

# Then the queue is emptied and analyzed, and the worker plans its claim
# again on its next look at the empty queue (every few seconds).
my $log_from = -s $node->logfile;
$node->safe_psql('postgres', q{
TRUNCATE async.jobs;
ANALYZE async.jobs;
});
my $looked = 0;
foreach my $try (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	$looked = 1 if slurp_file($node->logfile, $log_from) =~ /FOR UPDATE SKIP LOCKED/;
	last if $looked;
	usleep(100_000);
}
ok($looked, 'the worker claims on the empty queue');

# Then 30,000 jobs at once.
$log_from = -s $node->logfile;
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (function, payload) SELECT 'noop', '{}' FROM generate_series(1, 30000)});
my $started = time;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 30000 FROM async.jobs WHERE state = 'succeeded'"),
	'30,000 jobs drain in time');
note(sprintf('drained in %d s', time - $started));

# The claims made after the queue grew look each job of the batch up by its
# key: the scan of async.jobs in the claim's UPDATE has an index condition.
my $log = slurp_file($node->logfile, $log_from);
my @claims = grep { /FOR UPDATE SKIP LOCKED/ } split /(?=^\S.*LOG:  duration: )/m, $log;
cmp_ok(scalar(@claims), '>', 10, 'the worker claimed in many batches');
my $last = $claims[-1] // '';
like($last, qr/Index Scan using jobs_pkey on jobs j\s+\([^\n]*\n\s+Index Cond: \(id = /,
	'the last claim looks jobs up by id');
my @walks = grep { /Index Scan using jobs_pkey on jobs j\s+\([^\n]*\n(?!\s+Index Cond)/ } @claims;
cmp_ok(scalar(@walks), '<=', 5, 'few claims walk async.jobs (' . scalar(@walks) . ')');

# 1b. Statistics that say the table is empty while it is not: what an
# ANALYZE records when it runs during a large INSERT (0 live rows in many
# pages).  Every plan made from them, however recent, thinks the queue
# empty; the worker's planner is told otherwise.
$node->safe_psql('postgres', q{
TRUNCATE async.jobs;
INSERT INTO async.jobs (function, payload, run_at)
SELECT 'noop', '{}', now() + interval '1 hour' FROM generate_series(1, 30000);
ANALYZE async.jobs;
UPDATE pg_class SET reltuples = 0 WHERE oid = 'async.jobs'::regclass;
});
is($node->safe_psql('postgres', "SELECT relpages > 100 AND reltuples = 0 FROM pg_class WHERE oid = 'async.jobs'::regclass"),
	't', 'the statistics say 0 rows in many pages');
$log_from = -s $node->logfile;
$node->safe_psql('postgres', q{UPDATE async.jobs SET run_at = now()});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 30000 FROM async.jobs WHERE state = 'succeeded'"),
	'30,000 jobs drain in time despite them');
$log = slurp_file($node->logfile, $log_from);
@claims = grep { /FOR UPDATE SKIP LOCKED/ } split /(?=^\S.*LOG:  duration: )/m, $log;
like($claims[-1] // '', qr/Index Scan using jobs_pkey on jobs j\s+\([^\n]*\n\s+Index Cond: \(id = /,
	'the claims look jobs up by id');
@walks = grep { /Index Scan using jobs_pkey on jobs j\s+\([^\n]*\n(?!\s+Index Cond)/ } @claims;
is(scalar(@walks), 0, 'no claim walks async.jobs');

# 2. With batch_max_bytes at 64kB, jobs of about 40kB of stored payload are
# claimed two at a time at most (the second starts under the limit).
$node->append_conf('postgresql.conf', "pg_async.batch_max_bytes = '64kB'\nauto_explain.log_min_duration = -1");
$node->reload;
ok($node->poll_query_until('postgres', "SELECT current_setting('pg_async.batch_max_bytes') = '64kB'"),
	'the limit is set');
# The claim that leaves out paused and limited functions (while one is)
# and the plain one (while none is) both stop there.
my $blob = q{jsonb_build_object('blob', (SELECT string_agg(md5((g * 10000 + i)::text), '')
                                          FROM generate_series(1, 1250) i))};
$node->safe_psql('postgres', qq{
SELECT async.register('public.noop(jsonb)', name => 'held');
SELECT async.pause('held');
SELECT async.pause('noop');
TRUNCATE async.jobs;
INSERT INTO async.jobs (function, payload, event_id)
SELECT 'noop', $blob, 'big-' || g FROM generate_series(1, 20) g;
INSERT INTO async.jobs (function, payload, run_at) VALUES ('held', '{}', now() + interval '1 day');
});
my $stored = $node->safe_psql('postgres',
	"SELECT min(pg_column_size(payload)) FROM async.jobs WHERE function = 'noop'");
cmp_ok($stored, '>', 33 * 1024, "each payload is stored in more than 33kB ($stored)");
my %path = (
	full => q{SELECT async.resume('noop')},
	plain => q{SELECT async.unregister('held', cancel_jobs => true); SELECT async.resume('noop')});
foreach my $claim ('full', 'plain')
{
	$node->safe_psql('postgres', $path{$claim});
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 20 FROM async.jobs WHERE event_id LIKE 'big-%' AND state = 'succeeded'"),
		"$claim claim: the large jobs run");
	# the jobs of one claim share its start time
	my ($batches, $largest) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(*), max(n) FROM (SELECT count(*) AS n FROM async.jobs
	 WHERE event_id LIKE 'big-%' GROUP BY worker_pid, started_at) b});
	is($largest, 2, "$claim claim: no batch holds more than two of them");
	cmp_ok($batches, '>=', 10, "$claim claim: they ran in at least ten batches ($batches)");
	$node->safe_psql('postgres', qq{
	SELECT async.pause('noop');
	DELETE FROM async.jobs WHERE event_id LIKE 'big-%';
	INSERT INTO async.jobs (function, payload, event_id)
	SELECT 'noop', $blob, 'big-' || g FROM generate_series(1, 20) g;
	}) if $claim eq 'full';
}

# 3. Two workers; each has just run fast jobs, so its next claim takes a
# whole batch.  Ten jobs of 300 ms each then come at once.
$node->append_conf('postgresql.conf', "pg_async.workers = 2");
$node->reload;
ok(wait_for_workers($node, 2), 'two workers');
$node->safe_psql('postgres', q{
CREATE FUNCTION public.slow(e jsonb) RETURNS void LANGUAGE sql AS $$SELECT pg_sleep(0.3)$$;
SELECT async.register('public.slow(jsonb)');
TRUNCATE async.jobs;
INSERT INTO async.jobs (function, payload) SELECT 'noop', '{}' FROM generate_series(1, 5000);
});
ok($node->poll_query_until('postgres', "SELECT count(*) = 5000 FROM async.jobs WHERE state = 'succeeded'"),
	'fast jobs run');
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (function, payload) SELECT 'slow', '{}' FROM generate_series(1, 10)});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 10 FROM async.jobs WHERE function = 'slow' AND state = 'succeeded'"),
	'slow jobs run');
is( $node->safe_psql('postgres',
		"SELECT count(DISTINCT worker_pid) || ' workers, attempts ' || min(attempts) || '-' || max(attempts)"
		  . " FROM async.jobs WHERE function = 'slow'"),
	'2 workers, attempts 1-1',
	'both workers ran slow jobs, each job once, the jobs given back not charged');
is($node->safe_psql('postgres', "SELECT count(*) FROM async.attempts WHERE function = 'slow'"),
	'10', 'ten attempts recorded');

# 4. 20,000 jobs of a paused function, due an hour ago, ahead of 50 others.
$node->append_conf('postgresql.conf',
	"auto_explain.log_min_duration = 0\nauto_explain.log_analyze = on");
$node->reload;
ok($node->poll_query_until('postgres', "SELECT current_setting('auto_explain.log_analyze') = 'on'"),
	'auto_explain analyzes');
$node->safe_psql('postgres', q{
SELECT async.register('public.noop(jsonb)', name => 'parked');
SELECT async.pause('parked');
INSERT INTO async.jobs (function, payload, run_at)
SELECT 'parked', '{}', now() - interval '1 hour' FROM generate_series(1, 20000);
});
is($node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE function = 'parked' AND paused"),
	'20000', "a paused function's new jobs are marked paused");
$log_from = -s $node->logfile;
$node->safe_psql('postgres',
	q{INSERT INTO async.jobs (function, payload, event_id) SELECT 'noop', '{}', 'after-' || g FROM generate_series(1, 50) g});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 50 FROM async.jobs WHERE event_id LIKE 'after-%' AND state = 'succeeded'"),
	'the other jobs run');
$log = slurp_file($node->logfile, $log_from);
my @scans = ($log =~ /Index Scan using jobs_ready_idx on jobs j_\d+ .*\n(?:\s+(?:Index Cond|Filter|Rows Removed by Filter).*\n)*/g);
my @removed = map { /Rows Removed by Filter: (\d+)/ ? $1 : 0 } @scans;
my $walked = 0;
foreach (@removed) { $walked = $_ if $_ > $walked; }
cmp_ok(scalar(@scans), '>', 0, 'claims were logged (' . scalar(@scans) . ')');
cmp_ok($walked, '<', 100, "no claim walked the paused backlog (most rows passed over: $walked)");
$node->safe_psql('postgres', q{SELECT async.resume('parked')});
is($node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE paused"), '0',
	'async.resume releases them');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 20000 FROM async.jobs WHERE function = 'parked' AND state = 'succeeded'"),
	'and they run');

# 5. Jobs that come one at a time are claimed at once, however long
# batch_wait is.
$node->append_conf('postgresql.conf',
	"auto_explain.log_min_duration = -1\npg_async.batch_wait = '1s'");
$node->reload;
ok( $node->poll_query_until('postgres',
		"SELECT setting::float8 = 1000 FROM pg_settings WHERE name = 'pg_async.batch_wait'"),
	'batch_wait set to 1 s, its most');
foreach my $i (1 .. 5)
{
	$node->safe_psql('postgres',
		"INSERT INTO async.jobs (function, payload, event_id) VALUES ('noop', '{}', 'lone-$i')");
	$node->poll_query_until('postgres',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'lone-$i'");
}
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM async.jobs WHERE event_id LIKE 'lone-%'"
		  . " AND state = 'succeeded' AND finished_at - enqueued_at < interval '500 ms'"),
	'5', 'jobs enqueued one at a time do not wait for batch_wait');

# A stream: 10,000 single-row transactions, committed at 5,000 a second
# (synchronous_commit off), well above the 2,000 jobs a second that make a
# stream, and well below what one worker drains.  A claim marks its jobs
# started at its transaction's start, so the distinct started_at of the
# stream's jobs are the claims.  Once the worker has recognised the stream
# (a few dozen claims at most), it waits batch_wait between claims: with
# 100 ms, a gap of that order between two claims, where claiming as the
# jobs come leaves gaps of a millisecond or two.  The producer is paced:
# one that outruns the worker makes its claims full, and a full claim finds
# a backlog, not a stream, so that a slow moment of the worker's decided
# whether it waited at all.  (Counting the workers' transactions instead,
# with and without batch_wait, proved no test for the same reason.)
$node->safe_psql('postgres', q{
CREATE PROCEDURE public.stream(p_prefix text, p_n int, p_rate int) LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	ahead float8;
BEGIN
	FOR i IN 1 .. p_n LOOP
		INSERT INTO async.jobs (function, payload, event_id) VALUES ('noop', '{}', p_prefix || i);
		COMMIT;
		ahead := i::float8 / p_rate - extract(epoch FROM clock_timestamp() - t0);
		IF ahead > 0.001 THEN
			PERFORM pg_sleep(ahead);
		END IF;
	END LOOP;
END$$;
});
$node->append_conf('postgresql.conf', "pg_async.batch_wait = '100ms'");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT setting::float8 = 100 FROM pg_settings WHERE name = 'pg_async.batch_wait'")
  or die "batch_wait not set to 100ms";
$node->safe_psql('postgres', "SET synchronous_commit = off; CALL public.stream('stream-', 10000, 5000)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 10000 FROM async.jobs WHERE event_id LIKE 'stream-%' AND state = 'succeeded'"),
	'the stream runs');
my ($rate, $claims, $longest_gap_ms) = split /\|/, $node->safe_psql('postgres', q{
SELECT (SELECT round(count(*) / extract(epoch FROM max(enqueued_at) - min(enqueued_at)))
          FROM async.jobs WHERE event_id LIKE 'stream-%'),
       count(*), round(max(gap_ms))
  FROM (SELECT extract(epoch FROM started_at - lag(started_at) OVER (ORDER BY started_at)) * 1000 AS gap_ms
          FROM (SELECT DISTINCT started_at FROM async.jobs WHERE event_id LIKE 'stream-%') c) g});
note("10,000 streamed jobs at $rate a second: $claims claims, longest gap between claims $longest_gap_ms ms");
cmp_ok($longest_gap_ms, '>=', 70,
	"the worker waited for batch_wait between claims of the stream ($longest_gap_ms ms)");
cmp_ok($claims, '<', 500,
	"and took it in batches ($claims claims; as the jobs came, two thousand and more)");

# 6. The worker running 'nap' announced its next look for after its
# batch's handlers at their average run time (that of no-op jobs): long
# overdue, that no longer keeps a committer from waking the other worker.
$node->append_conf('postgresql.conf', "pg_async.batch_wait = 0");
$node->reload;
$node->poll_query_until('postgres',
	"SELECT setting::float8 = 0 FROM pg_settings WHERE name = 'pg_async.batch_wait'")
  or die "batch_wait not set to 0";
$node->safe_psql('postgres', q{
CREATE FUNCTION public.nap(e jsonb) RETURNS void LANGUAGE sql AS $$SELECT pg_sleep(8)$$;
SELECT async.register('public.nap(jsonb)');
INSERT INTO async.jobs (function, payload, event_id) VALUES ('nap', '{}', 'nap');
});
# its announcement overdue by far more than the 1 ms slack
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM async.workers"
		  . " WHERE function = 'nap' AND clock_timestamp() - started_at > interval '100 ms'"),
	'a worker naps');
$node->safe_psql('postgres',
	"INSERT INTO async.jobs (function, payload, event_id) VALUES ('noop', '{}', 'beside-nap')");
ok( $node->poll_query_until('postgres',
		"SELECT state = 'succeeded' FROM async.jobs WHERE event_id = 'beside-nap'"),
	'the job enqueued meanwhile runs');
is( $node->safe_psql('postgres',
		"SELECT (b.finished_at - b.enqueued_at < interval '1 second') || ' ' || n.state"
		  . " FROM async.jobs b, async.jobs n WHERE b.event_id = 'beside-nap' AND n.event_id = 'nap'"),
	'true running', 'at once, by the other worker, while the nap goes on');

# 7. A session stands for a claim under way: it holds one of the jobs of
# 'held' for 0.4 s, then marks it running and commits.  The jobs are due
# in an hour, so that no worker takes them.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.held(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.held(jsonb)');
INSERT INTO async.jobs (function, payload, event_id, run_at)
SELECT 'held', '{}', 'held-' || i, now() + interval '1 hour' FROM generate_series(1, 3) i;
});
my $claim = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', q{
BEGIN;
SELECT FROM async.jobs WHERE event_id = 'held-2' FOR UPDATE;
SELECT pg_sleep(0.4);
UPDATE async.jobs SET state = 'running', started_at = clock_timestamp() WHERE event_id = 'held-2';
COMMIT;} ],
	'>', \my $claim_out, '2>', \my $claim_err);
$node->poll_query_until('postgres',
	"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%pg_sleep(0.4)%')")
  or die 'the claim did not start';
my $pause_end = $node->safe_psql('postgres',
	q{WITH p AS MATERIALIZED (SELECT async.pause('held')) SELECT clock_timestamp() FROM p});
$claim->finish or die "the claim failed: $claim_err";
is( $node->safe_psql('postgres',
		"SELECT '$pause_end'::timestamptz >= started_at FROM async.jobs WHERE event_id = 'held-2'"),
	't', 'pause returned after the claim committed');
is( $node->safe_psql('postgres',
		"SELECT string_agg(event_id || ' ' || state || ' ' || paused, ', ' ORDER BY event_id)"
		  . " FROM async.jobs WHERE function = 'held'"),
	'held-1 queued true, held-2 running false, held-3 queued true',
	'the claimed job runs, the others are marked paused');

# 8. the claims of 2,000 jobs, counted once the workers have reported
# their statistics: finishes are never HOT (finished_at is in the indexes'
# predicates), so the HOT updates are claims
my ($updates0, $hot0) = split /\|/, $node->safe_psql('postgres',
	"SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'async.jobs'::regclass");
$node->safe_psql('postgres', q{
SELECT async.register('public.noop(jsonb)', name => 'hot');
INSERT INTO async.jobs (function, payload) SELECT 'hot', '{}' FROM generate_series(1, 2000);
});
$node->poll_query_until('postgres',
	"SELECT count(*) = 2000 FROM async.jobs WHERE function = 'hot' AND state = 'succeeded'")
  or die 'the 2,000 jobs did not run';
$node->poll_query_until('postgres',
	"SELECT n_tup_upd - $updates0 >= 4000 FROM pg_stat_user_tables WHERE relid = 'async.jobs'::regclass")
  or die 'the workers did not report the updates of their claims and finishes';
cmp_ok(
	$node->safe_psql('postgres',
		"SELECT n_tup_hot_upd - $hot0 FROM pg_stat_user_tables WHERE relid = 'async.jobs'::regclass"),
	'>=', 1000, 'at least half of the 2,000 claims were HOT updates');

# 9. One worker, started with the jobs waiting: its first claim takes a
# slow job, due an hour ago, and three jobs past their max_event_age behind
# it.  The slow one runs 300 ms, past the 200 ms of an overrun, and the
# expired ones are given back with the rest of the batch (record_given_back
# in PgAsyncTest.pm records each give-back).  They end as a job that
# expired in a claim of its own does: dead-lettered as expired, with the
# same attempts in the dead letter and in the history.
sub set_workers
{
	my ($n) = @_;
	$node->append_conf('postgresql.conf', "pg_async.workers = $n");
	$node->reload;
	ok(wait_for_workers($node, $n), "$n workers");
}

# enqueue runs sql with no worker, and starts one once the jobs of 'aged'
# are past their max_event_age
sub enqueue_aged
{
	my ($sql) = @_;
	set_workers(0);
	$node->safe_psql('postgres', $sql);
	$node->poll_query_until('postgres', q{
		SELECT bool_and(clock_timestamp() > enqueued_at + interval '1.5 seconds')
		  FROM async.jobs WHERE function = 'aged' AND state = 'queued'})
	  or die 'the aged jobs did not age';
	set_workers(1);
}

$node->safe_psql('postgres', q{
SELECT async.register('public.noop(jsonb)', name => 'aged', max_event_age => '1 second');
});
record_given_back($node, 'aged_given_back', 'aged');
enqueue_aged(q{
INSERT INTO async.jobs (function, payload, event_id, run_at)
VALUES ('slow', '{}', 'tail-slow', now() - interval '1 hour');
INSERT INTO async.jobs (function, payload, event_id)
SELECT 'aged', '{}', 'tail-aged-' || g FROM generate_series(1, 3) g;
});
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) = 3 FROM async.dead_letters WHERE event_id LIKE 'tail-aged-%'}),
	'the expired jobs of the tail are dead-lettered');
is( $node->safe_psql('postgres',
		q{SELECT count(DISTINCT event_id) FROM public.aged_given_back WHERE event_id LIKE 'tail-aged-%'}),
	'3', 'after they were given back with the tail of the batch that overran');
is($node->safe_psql('postgres', q{SELECT state FROM async.jobs WHERE event_id = 'tail-slow'}),
	'succeeded', 'which ran the slow job');

enqueue_aged(q{INSERT INTO async.jobs (function, payload, event_id) VALUES ('aged', '{}', 'alone-aged')});
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM async.dead_letters WHERE event_id = 'alone-aged'}),
	'a job that expired in a claim of its own is dead-lettered');
is( $node->safe_psql('postgres', q{
		SELECT string_agg(DISTINCT d.reason || ', attempts ' || d.attempts || ', history ' ||
						  (SELECT string_agg(a.attempt || ' ' || a.outcome, ' ') FROM async.attempts a
						    WHERE a.event_id = d.event_id), '; ')
		  FROM async.dead_letters d
		 WHERE d.event_id LIKE 'tail-aged-%' OR d.event_id = 'alone-aged'}),
	'expired, attempts 0, history 0 expired',
	'the expired jobs of the tail end as that one does, uncharged');

$node->stop;
done_testing();
