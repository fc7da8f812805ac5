# The benchmark program (test/bench/pg_async_bench) runs every scenario,
# scaled down, against a live server and reports each figure: a smoke test,
# so that the program the README's performance figures come from keeps
# working.  The figures are not judged against targets here (the full run
# is test/bench/run.sh), but each must agree with what its scenario was
# asked to do.
use strict;
use warnings;

use FindBin;
use JSON::PP;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $bench = 'test/bench/pg_async_bench';
# "make" builds it (the Makefile's all); without it this test fails, not skips.
BAIL_OUT("$bench is not built: run make first") unless -x $bench;

my $node = pg_async_node('bench');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_async');
ok(wait_for_workers($node, 2), 'workers start');

my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[
		$bench, '-d', $node->connstr('postgres'), '--json',
		'--scenario', 'drain,enqueue,latency,mixed,backlog,soak,held,held-xmin,priorities,keys',
		'--key-tenants', '100',
		'--drain-jobs', '3000', '--enqueue-duration', '2', '--connections', '4',
		'--latency-events', '300', '--latency-rate', '300',
		'--mixed-duration', '2', '--mixed-rate', '2000',
		'--backlog-jobs', '4000', '--held-jobs', '4000',
		'--held-xmin-jobs', '2000', '--held-xmin-drains', '2',
		'--soak-duration', '4', '--soak-interval', '2', '--soak-warmup', '1',
		'--soak-rate', '300', '--soak-retention', '2',
		'--timeout', '120'
	],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'the benchmark runs its scenarios') or diag($stderr);

my $r = eval { decode_json($stdout) };
ok(defined $r, 'its --json output is one JSON object') or diag($@, $stdout);
$r //= {};

# Every scenario reports its main figures, and they are real measurements.
my %figures = (
	drain => [qw(jobs_per_second)],
	enqueue => [
		qw(plain_inserts_per_second async_inserts_per_second ratio_to_plain
		  bare_delete_ratio_to_plain bare_done_ratio_to_plain later_ratio_to_plain)
	],
	latency => [qw(latency_events achieved_rate)],
	mixed => [qw(jobs_per_second enqueued)],
	backlog => [qw(jobs_per_second ratio_to_drain ratio_to_adjacent_drain)],
	soak => [qw(samples enqueued_per_second)],
	held => [qw(held_jobs jobs_per_second ratio_to_adjacent_drain)],
	'held-xmin' => [
		qw(before_jobs_per_second first_jobs_per_second last_jobs_per_second
		  ratio_last_to_before table_bytes released_jobs_per_second)
	],
	priorities => [qw(plain_jobs_per_second mixed_jobs_per_second ratio)],
	keys => [qw(plain_jobs_per_second keyed_jobs_per_second ratio)]);
foreach my $scenario (sort keys %figures)
{
	foreach my $key (@{ $figures{$scenario} })
	{
		my $v = $r->{$scenario}{$key};
		ok(defined $v && $v > 0, "$scenario reports $key")
		  or diag("$scenario.$key: " . ($v // 'missing'));
	}
}
is($r->{latency}{latency_events}, 300, 'latency timed every event');
is($r->{held}{held_jobs}, 4000, 'held queued the jobs it was asked for');
is($r->{'held-xmin'}{drains}, 2, 'held-xmin drained under the snapshot as often as asked');
ok(defined $r->{'held-xmin'}{dead_rows} && $r->{'held-xmin'}{dead_rows} >= 0,
	'held-xmin reports the dead rows');
cmp_ok(abs(($r->{'held-xmin'}{ratio_last_to_before} // 0)
	  - ($r->{'held-xmin'}{last_jobs_per_second} // 0)
	  / ($r->{'held-xmin'}{before_jobs_per_second} || 1)), '<', 0.001,
	'held-xmin: its ratio is the last drain over the one before');
cmp_ok($r->{soak}{samples} // 0, '>=', 2, 'soak took a sample every interval');
is($r->{priorities}{pairs}, 5, 'priorities drained in five pairs');
ok(defined $r->{priorities}{urgent_waiting}
	  && defined $r->{priorities}{urgent_overtaken}
	  && $r->{priorities}{urgent_overtaken} <= $r->{priorities}{urgent_waiting},
	'priorities: the urgent job overtook no more jobs than were waiting')
  or diag(explain($r->{priorities}));

is($r->{keys}{tenants}, 100, 'keys spread its jobs over the tenants asked for');
is($r->{keys}{pairs}, 5, 'keys drained in five pairs');

# The figures are measurements, not placeholders: each agrees with what the
# scenario was asked to do and with the others.
my $lat = $r->{latency} // {};
ok( defined $lat->{latency_p50_ms}
	  && $lat->{latency_min_ms} <= $lat->{latency_p50_ms}
	  && $lat->{latency_p50_ms} <= $lat->{latency_p95_ms}
	  && $lat->{latency_p95_ms} <= $lat->{latency_p99_ms}
	  && $lat->{latency_p99_ms} <= $lat->{latency_max_ms},
	'latency: min <= p50 <= p95 <= p99 <= max')
  or diag(explain($lat));
ok(($lat->{achieved_rate} // 0) > 30 && $lat->{achieved_rate} < 600,
	'latency: events sent near the rate asked (300/s)')
  or diag('achieved ' . ($lat->{achieved_rate} // 'none'));
ok(($r->{mixed}{enqueued} // 0) > 400 && $r->{mixed}{enqueued} <= 6000,
	'mixed: about 2 s of producers at 2,000 jobs/s')
  or diag('enqueued ' . ($r->{mixed}{enqueued} // 'none'));
# 3,000 jobs take some time: a rate of a million jobs/s would be a timer bug
ok(($r->{drain}{jobs_per_second} // 0) < 1_000_000, 'drain: a plausible rate')
  or diag('drain ' . ($r->{drain}{jobs_per_second} // 'none'));
foreach my $key (qw(ratio_to_plain bare_delete_ratio_to_plain bare_done_ratio_to_plain later_ratio_to_plain))
{
	my $v = $r->{enqueue}{$key} // 0;
	ok($v > 0.05 && $v < 20, "enqueue: $key is a ratio of two measured rates")
	  or diag("$key $v");
}
ok(($r->{enqueue}{bare_rows_per_transaction} // 0) >= 1,
	'the bare consumer took rows');

# The benchmark leaves no job behind, and the workers are still there.
is($node->safe_psql('postgres',
		'SELECT count(*) FROM async.jobs WHERE finished_at IS NULL'),
	'0', 'no unfinished job is left');
is($node->safe_psql('postgres', 'SELECT count(*) FROM async.workers'),
	'2', 'both workers still run');

$node->stop;
done_testing();
