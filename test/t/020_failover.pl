# Failover: a streaming standby runs no pg_async worker but answers its
# views; promoted while the primary was stopped in immediate mode under
# load, it starts its workers, recovers the jobs that were running, and
# every event it holds ends exactly once.  With synchronous replication no
# acknowledged event is lost; with asynchronous replication only the last
# ones acknowledged may be, as PostgreSQL promises.  The old primary
# rejoins as a standby through pg_rewind and runs no worker.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use File::Copy;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# pg_rewind reads the old primary's WAL from before the point where the
# servers diverged: its end-of-recovery checkpoint must not recycle it
my $conf = q{
shared_buffers = 32MB
max_worker_processes = 16
wal_keep_size = 320MB
};
my $node_a = pg_async_node('node_a', allows_streaming => 1, conf => $conf);

$node_a->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text NOT NULL);
CREATE FUNCTION public.work(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects VALUES (e->>'id');
	PERFORM pg_sleep(0.002);
END $$;
SELECT async.register('public.work(jsonb)', retry_delays => '{1 second}');
});
ok(wait_for_workers($node_a, 2), 'the primary starts its workers');

$node_a->backup('base');
my $node_b = PostgreSQL::Test::Cluster->new('node_b');
$node_b->init_from_backup($node_a, 'base', has_streaming => 1);
$node_b->start;

# The producer: one psql session enqueues batches of five events with
# unique event_ids, each batch a transaction, and prints "ack N" once the
# commit of batch N has returned: the events the client was told are safe.
sub start_producer
{
	my ($node, $prefix) = @_;
	my $p = { prefix => $prefix, sent => 0, in => '', out => '', err => '' };
	$p->{h} = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		  '-d', $node->connstr('postgres') ],
		'<', \$p->{in}, '>', \$p->{out}, '2>', \$p->{err});
	return $p;
}

# produce sends the next batch, and waits for its acknowledgement if asked
sub produce
{
	my ($p, $wait) = @_;
	my $b = ++$p->{sent};
	my $ids = "'$p->{prefix}-$b-' || i";

	$p->{in} .= "INSERT INTO async.jobs (function, event_id, payload)"
	  . " SELECT 'work', $ids, jsonb_build_object('id', $ids) FROM generate_series(1, 5) i;\n"
	  . "\\echo ack $b\n";
	return unless $wait;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while ($p->{out} !~ /^ack $b$/m)
	{
		die "producer: no acknowledgement of batch $b: $p->{err}"
		  if time() > $deadline || !$p->{h}->pumpable;
		$p->{h}->pump_nb;
		select(undef, undef, undef, 0.001) if $p->{out} !~ /^ack $b$/m;
	}
}

# acked returns the numbers of the batches acknowledged, once psql is done
sub acked
{
	my ($p) = @_;
	$p->{h}->finish;
	return [ $p->{out} =~ /^ack (\d+)$/mg ];
}

# sql returns the answer of one query to node
sub sql
{
	my ($node, $query) = @_;
	return $node->safe_psql('postgres', $query);
}

# pg_async_processes counts the pg_async launcher and workers of node
sub pg_async_processes
{
	my ($node) = @_;
	return sql($node,
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_async%'");
}

# standby_checks: a standby runs no pg_async process, and its views answer
sub standby_checks
{
	my ($node, $what) = @_;
	is(sql($node, 'SELECT pg_is_in_recovery()'), 't', "$what: in recovery");
	is(pg_async_processes($node), '0', "$what: no pg_async process runs");
	is(sql($node, 'SELECT count(*) FROM async.workers'), '0',
		"$what: async.workers answers, with no worker");
	my ($rc, $out, $err) = $node->psql('postgres',
		q{SELECT status || ': ' || detail FROM async.health() WHERE "check" = 'workers'});
	is("$rc $out $err", '0 ok: a standby: pg_async runs no workers until it is promoted ',
		"$what: async.health() answers, and says that it is a standby");
	like(sql($node, 'SELECT count(*) FROM async.jobs'), qr/^\d+$/,
		"$what: async.jobs is readable");
}

# replayed waits until a standby whose primary is gone has replayed all the
# WAL it received: every complete record.  A primary stopped in immediate
# mode may have sent part of a record, which the standby received (its
# receive position counts it) and can never replay; so replay that stays at
# one place for two seconds has replayed all it can.  False if it is still
# behind, and moving, after the default timeout.
sub replayed
{
	my ($node) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	my ($last, $since) = ('', time());

	while (time() < $deadline)
	{
		my ($done, $at) = split /\|/, $node->safe_psql('postgres',
			'SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()');
		return 1 if $done eq 't';
		($last, $since) = ($at, time()) if $at ne $last;
		return 1 if time() - $since >= 2;
		usleep(100_000);
	}
	return 0;
}

# load_and_fail: a producer fills the primary, whose workers run jobs while
# the standby's do not; the primary is stopped in immediate mode while jobs run and batches are still
# being sent.  Returns the numbers of the batches acknowledged.
sub load_and_fail
{
	my ($primary, $standby, $prefix) = @_;
	my $p = start_producer($primary, $prefix);

	produce($p, 1) for 1 .. 150;
	produce($p, 0) for 1 .. 50;
	$p->{h}->pump_nb;
	ok( $primary->poll_query_until('postgres',
			"SELECT count(*) > 0 FROM async.jobs WHERE state = 'running' AND event_id LIKE '$prefix-%'"),
		"$prefix: jobs run on the primary");
	is(pg_async_processes($standby), '0', "$prefix: meanwhile no pg_async process runs on the standby");
	$primary->stop('immediate');
	my $acked = acked($p);
	cmp_ok(scalar(@$acked), '>=', 150, "$prefix: the producer's commits were acknowledged");
	return $acked;
}

# in_flight returns, on a standby that replayed everything, the jobs left
# running: "id attempts batch", batch being how many jobs their claim took
sub in_flight
{
	my ($node, $prefix) = @_;
	return [ split /\n/, sql($node, qq{
SELECT id || ' ' || attempts || ' ' || count(*) OVER (PARTITION BY worker_pid, started_at)
  FROM async.jobs WHERE state = 'running' AND event_id LIKE '$prefix-%' ORDER BY id}) ];
}

# promote_and_drain promotes node, and waits for its workers and for every
# job of the prefix to end; returns how long the workers took to start
sub promote_and_drain
{
	my ($node, $prefix) = @_;
	my $t0 = time();
	$node->promote;
	ok(wait_for_workers($node, 2), "$prefix: the promoted standby starts its workers");
	my $took = time() - $t0;
	cmp_ok($took, '<', 30, "$prefix: within seconds of the promotion");
	ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 0 FROM async.jobs
 WHERE event_id LIKE '$prefix-%' AND state IN ('queued', 'running')}),
		"$prefix: every job ends");
	return $took;
}

# check_outcomes: each event of the prefix that the new primary holds ended
# exactly once; those in flight at the promotion were recovered by the
# rules of a crash (a claim of one job is charged its attempt, a claim of
# several is not); returns [present batches, in flight, recovered,
# duplicate effects, stuck]
sub check_outcomes
{
	my ($node, $prefix, $running) = @_;

	my $dup = sql($node, qq{
SELECT count(*) FROM (SELECT event_id FROM public.effects WHERE event_id LIKE '$prefix-%'
                      GROUP BY event_id HAVING count(*) > 1) d});
	is($dup, '0', "$prefix: no effect runs twice");
	is( sql($node, qq{
SELECT count(*) FROM async.jobs j
 WHERE j.event_id LIKE '$prefix-%'
   AND (j.state = 'succeeded') <> EXISTS (SELECT FROM public.effects e WHERE e.event_id = j.event_id)}),
		'0', "$prefix: every succeeded job has its effect, and no other job has one");
	is( sql($node, qq{
SELECT count(*) FROM public.effects e WHERE e.event_id LIKE '$prefix-%'
   AND NOT EXISTS (SELECT FROM async.jobs j WHERE j.event_id = e.event_id)}),
		'0', "$prefix: no effect without its job");
	is( sql($node, qq{
SELECT count(*) FROM async.dead_letters WHERE event_id LIKE '$prefix-%'}),
		'0', "$prefix: no event is dead-lettered");
	my $stuck = sql($node, qq{
SELECT count(*) FROM async.jobs WHERE event_id LIKE '$prefix-%' AND state <> 'succeeded'});
	is($stuck, '0', "$prefix: nothing is stuck");

	my $recovered = 0;
	foreach my $r (@$running)
	{
		my ($id, $attempts, $batch) = split / /, $r;
		my $expect = $batch > 1 ? $attempts : $attempts + 1;
		$recovered++
		  if sql($node, "SELECT state || ' ' || attempts FROM async.jobs WHERE id = $id")
		  eq "succeeded $expect";
	}
	is($recovered, scalar(@$running),
		"$prefix: the jobs running at the promotion are recovered as after a crash");

	my @batches = split /\n/, sql($node, qq{
SELECT DISTINCT split_part(event_id, '-', 2)::int AS b FROM async.jobs
 WHERE event_id LIKE '$prefix-%' ORDER BY b});
	is( sql($node, qq{
SELECT count(*) FROM (SELECT split_part(event_id, '-', 2) FROM async.jobs
 WHERE event_id LIKE '$prefix-%' GROUP BY 1 HAVING count(*) <> 5) b}),
		'0', "$prefix: each batch is there whole or not at all");
	return [ \@batches, scalar(@$running), $recovered, $dup, $stuck ];
}

###
### 1. Synchronous replication: no acknowledged event is lost.
###
$node_a->append_conf('postgresql.conf', "synchronous_standby_names = '*'\n");
$node_a->reload;
ok( $node_a->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_replication WHERE sync_state = 'sync'"),
	'the standby is synchronous');
standby_checks($node_b, 'standby');

my $acked = load_and_fail($node_a, $node_b, 'sync');
ok(replayed($node_b), 'sync: the standby replays what it received');
my $running = in_flight($node_b, 'sync');
my $took = promote_and_drain($node_b, 'sync');
my ($present, $in_flight, $recovered, $dup, $stuck) =
  @{ check_outcomes($node_b, 'sync', $running) };
my %present = map { $_ => 1 } @$present;
my $lost = grep { !$present{$_} } @$acked;
is($lost, 0, 'sync: no acknowledged event is lost');
diag(sprintf('synchronous failover: accepted %d, in flight at the promotion %d, '
	  . 'recovered %d, lost %d, duplicate effects %d, stuck %d; workers after %.1f s',
	5 * @$acked, $in_flight, $recovered, 5 * $lost, $dup, $stuck, $took));

###
### 2. The old primary rejoins through pg_rewind, and runs no worker.
###
# the promotion's checkpoint writes the new timeline into the control file
# that pg_rewind reads; it may not have ended yet
sql($node_b, 'CHECKPOINT');
# pg_rewind copies the new primary's configuration, and removes what it
# does not have: the old primary's own is kept outside its data directory
my $conf_a = $node_a->data_dir . '/postgresql.conf';
my $kept = $node_a->basedir . '/postgresql.conf.kept';
copy($conf_a, $kept) or die "could not keep $conf_a: $!";
command_ok(
	[ 'pg_rewind', '--target-pgdata', $node_a->data_dir,
	  '--source-server', $node_b->connstr('postgres') ],
	'pg_rewind makes the old primary follow the new one');
move($kept, $conf_a) or die "could not restore $conf_a: $!";
$node_a->append_conf('postgresql.conf', "synchronous_standby_names = ''\n");
$node_a->enable_streaming($node_b);
$node_a->start;
$node_b->wait_for_catchup($node_a);
standby_checks($node_a, 'rewound old primary');
is( sql($node_a, "SELECT count(*) FROM async.jobs WHERE event_id LIKE 'sync-%'"),
	sql($node_b, "SELECT count(*) FROM async.jobs WHERE event_id LIKE 'sync-%'"),
	'rewound old primary: it holds the new primary\'s jobs');

###
### 3. Asynchronous replication: only the last acknowledged events may be
### lost; nothing else is lost, stuck or run twice.
###
is(sql($node_b, 'SHOW synchronous_standby_names'), '',
	'the new primary replicates asynchronously');
$acked = load_and_fail($node_b, $node_a, 'async');
ok(replayed($node_a), 'async: the standby replays what it received');
$running = in_flight($node_a, 'async');
$took = promote_and_drain($node_a, 'async');
($present, $in_flight, $recovered, $dup, $stuck) =
  @{ check_outcomes($node_a, 'async', $running) };
# one session's commits reach the standby in order: the batches there are
# the first ones, with no gap, and only acknowledged batches after them
# can be missing
my $n_present = scalar(@$present);
is("@$present", join(' ', 1 .. $n_present),
	'async: the batches that survived are the first ones, without a gap');
$lost = grep { $_ > $n_present } @$acked;
diag(sprintf('asynchronous failover: accepted %d, in flight at the promotion %d, '
	  . 'recovered %d, lost with the old primary %d, duplicate effects %d, stuck %d; '
	  . 'workers after %.1f s',
	5 * @$acked, $in_flight, $recovered, 5 * $lost, $dup, $stuck, $took));

done_testing();
