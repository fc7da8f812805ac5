# contrib/postgres_exporter.yml works with Debian's postgres_exporter
# (package prometheus-postgres-exporter, which test/lib.sh installs): the
# exporter is started against a cluster with jobs done and dead-lettered,
# scraped with curl, and its pg_async metrics must show them.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $exporter = '/usr/bin/prometheus-postgres-exporter';
my $queries = "$FindBin::RealBin/../../contrib/postgres_exporter.yml";
plan skip_all => "$exporter is not installed (Debian package prometheus-postgres-exporter)"
  unless -x $exporter;
plan skip_all => 'curl is not installed' unless system('curl --version >/dev/null 2>&1') == 0;

my $node = pg_async_node('exporter', workers => 2);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE FUNCTION public.exp_ok(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE FUNCTION public.exp_fail(e jsonb) RETURNS void LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'no'; END$$;
SELECT async.register('public.exp_ok(jsonb)');
SELECT async.register('public.exp_fail(jsonb)', max_attempts => 1);
INSERT INTO async.jobs (function) SELECT 'exp_ok' FROM generate_series(1, 3);
INSERT INTO async.jobs (function, event_id) VALUES ('exp_fail', 'exp-fail-1');
SELECT async.wait_idle();
});
ok(wait_for_workers($node, 2), 'the workers serve');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM async.dead_letters WHERE event_id = 'exp-fail-1'"),
	'1', 'one event dead-lettered');

my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($out, $err) = ('', '');
local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d user=%s dbname=postgres sslmode=disable',
	$node->host, $node->port, scalar getpwuid($<));
my $h = IPC::Run::start(
	[
		$exporter, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$queries", '--disable-settings-metrics'
	],
	'>', \$out, '2>', \$err);

# scrape until the exporter answers with our metrics, or give up
my $metrics = '';
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while (time() < $deadline)
{
	$metrics = `curl -s --max-time 10 http://127.0.0.1:$port/metrics`;
	last if $metrics =~ /^pg_async_function_succeeded/m;
	usleep(200_000);
}
$h->kill_kill;
note "exporter stderr:\n$err";

# a metric line: name{labels} value, the labels in any order
sub metric
{
	my ($name, $label, $value) = @_;
	return qr/^\Q$name\E\{(?:[^}]*,)?\Q$label\E(?:,[^}]*)?\} \Q$value\E$/m;
}

like($metrics, metric('pg_async_function_succeeded', 'function="exp_ok"', '3'),
	'succeeded jobs per function');
like($metrics, metric('pg_async_function_received', 'function="exp_ok"', '3'),
	'received events per function');
like($metrics, metric('pg_async_function_dead_lettered', 'function="exp_fail"', '1'),
	'dead-lettered events per function');
like($metrics, metric('pg_async_queue_succeeded', 'function="exp_ok"', '3'),
	'the queue by function and state');
like($metrics, metric('pg_async_queue_dead', 'function="exp_fail"', '1'),
	'dead jobs kept');
like($metrics, metric('pg_async_workers_count', 'state="idle"', '2'),
	'idle workers');
like($metrics, qr/^pg_async_health_status\{[^}]*check="workers"[^}]*\} 0$/m,
	'the health checks');
like($metrics, qr/^pg_exporter_user_queries_load_error\{[^}]*\} 0$/m,
	'the queries file loads without error');
unlike($metrics, qr/^pg_exporter_last_scrape_error \s*1/m, 'the last scrape had no error');

$node->stop;
done_testing();
