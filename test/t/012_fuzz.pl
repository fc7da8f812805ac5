# A fuzz pass over every SQL entry point a non-superuser may call: each
# function in schema async that the role may EXECUTE (found in pg_proc, so
# new entry points are fuzzed without an edit here), and INSERT into
# async.jobs, called with extreme and random values of each argument's
# type.  Then the server must still serve, no pg_async process may have
# exited, and another role's queued jobs must be all there, and run.
#
# The seed is printed; PG_ASYNC_FUZZ_SEED=N runs the same calls again.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $seed = $ENV{PG_ASYNC_FUZZ_SEED} // (time() % 100000);
srand($seed);
note("fuzz seed $seed");

my $node = pg_async_node('fuzz', conf => q{
max_worker_processes = 16
});

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE ROLE attacker LOGIN;
CREATE ROLE victim LOGIN;
CREATE SCHEMA attacker AUTHORIZATION attacker;
CREATE SCHEMA victim AUTHORIZATION victim;
SET ROLE victim;
CREATE TABLE victim.t (id int);
CREATE FUNCTION victim.work(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('victim.work(jsonb)', name => 'victim_work');
SELECT async.register('victim.work(jsonb)', name => 'victim_held');
SELECT async.pause('victim_held');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'victim_held', 'held-' || i, jsonb_build_object('card', 4000 + i) FROM generate_series(1, 20) i;
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'victim_work', 'work-' || i, '{}' FROM generate_series(1, 5) i;
RESET ROLE;
SET ROLE attacker;
CREATE TABLE attacker.t (id int);
CREATE FUNCTION attacker.h(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF e ? 'fail' THEN RAISE EXCEPTION 'attacker fails: %', e->>'fail'; END IF;
END $$;
CREATE FUNCTION attacker.h2(e jsonb, ctx async.context) RETURNS jsonb LANGUAGE sql
AS $$ SELECT e $$;
SELECT async.register('attacker.h(jsonb)', name => 'attacker_fn');
SELECT async.register('attacker.h2(jsonb,async.context)', name => 'attacker_fn2');
RESET ROLE;
});
ok(wait_for_workers($node, 2), 'two workers start');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 5 FROM async.jobs WHERE function = 'victim_work' AND state = 'succeeded'"),
	"victim's runnable jobs run");

my $held_before = $node->safe_psql('postgres', q{
SELECT count(*) || ' ' || md5(string_agg(event_id || payload::text, ',' ORDER BY event_id))
  FROM async.jobs WHERE function = 'victim_held' AND state = 'queued'
   AND enqueued_by = 'victim'::regrole});
my $pids_sql = q{
SELECT string_agg(backend_type || ':' || pid, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE backend_type IN ('pg_async worker', 'pg_async launcher')};
my $pids_before = $node->safe_psql('postgres', $pids_sql);
my $log_offset = -s $node->logfile;

# Values of each type, as SQL expressions.  Large ones are built by the
# server, so that the statements stay short.
my @names = ("'attacker_fn'", "'attacker_fn2'", "'victim_work'", "'victim_held'",
	"'no_such_fn'", "''", "repeat('n', 127)", "repeat('n', 128)", "repeat('é', 100)");
my %pool = (
	'text' => [ @names, "'held-1'", "'work-1'", "'x'", "repeat('x', 1000000)",
		"repeat('x', 10000000)", "E'a\\\\b\"c''d'", q{'''); DROP TABLE victim.t; --'},
		q{'true) EXECUTE FUNCTION attacker.h(); --'}, "'NEW.id > 0'", "'exhausted'",
		"'expired'", "'1 hour'" ],
	'jsonb' => [ "'{}'", "'null'", "'[]'", "'{\"fail\": \"yes\"}'", "'\"s\"'",
		"repeat('[', 5000) || repeat(']', 5000)",
		"(SELECT jsonb_object_agg(i::text, repeat('v', 100)) FROM generate_series(1, 20000) i)",
		"jsonb_build_object('fail', repeat('f', 2000000))" ],
	'interval' => [ "'300000 years'", "'-178000000 years'", "'1 microsecond'", "'0'",
		"'1 day'", "'30 days'", "'31 days'", "'-1 second'", "'2147483647 days'",
		"'2147483647 months'", "'1 day -25 hours'", "'6 hours'" ],
	'interval[]' => [ "'{}'", "'{NULL}'", "'{300000 years}'", "'[0:1]={1 hour,2 hours}'",
		"'[-5:-4]={0,0}'", "'{{1 second},{2 seconds}}'",
		"array_fill('1 second'::interval, ARRAY[10000])", "'{0,0}'", "'{1 minute,-1 second}'" ],
	'integer' => [ "0", "-1", "1", "2", "100", "101", "2147483647", "-2147483648" ],
	'bigint' => [ "0", "-1", "1", "9223372036854775807", "-9223372036854775808" ],
	'timestamp with time zone' => [ "'infinity'", "'-infinity'", "'4713-01-01 00:00 BC'",
		"'294276-12-31 23:59:59'", "now()", "now() - interval '1 hour'",
		"now() + interval '1 second'" ],
	'regprocedure' => [ "'attacker.h(jsonb)'", "'attacker.h2(jsonb,async.context)'",
		"'victim.work(jsonb)'", "'pg_catalog.pg_sleep(float8)'", "'pg_catalog.jsonb_pretty(jsonb)'",
		"'-'" ],
	'regclass' => [ "'attacker.t'", "'victim.t'", "'async.jobs'", "'pg_catalog.pg_class'", "'-'" ],
	'regrole' => [ "'attacker'", "'victim'", "'postgres'", "'pg_monitor'", "'-'" ],
	'boolean' => [ "true", "false" ],
	'text[]' => [ "'{}'", "'{NULL}'", "'{INSERT}'", "'{insert,update,delete}'", "'{TRUNCATE}'",
		"array_fill('INSERT'::text, ARRAY[10000])", "'[0:0]={UPDATE}'" ],
	'jsonb[]' => [ "'{}'", "ARRAY['{}'::jsonb]", "ARRAY[NULL::jsonb]",
		"array_fill('{}'::jsonb, ARRAY[5000])", "ARRAY['{\"fail\": 1}'::jsonb, '{}']" ],
	'bytea' => [ "'\\x00'", "''", "'\\x616200'" ]);

sub pick
{
	my ($type) = @_;
	my $choices = $pool{$type};
	# NULL for one argument in eight, and for types without a pool
	return "NULL::$type" if !$choices || rand() < 0.125;
	return '(' . $choices->[ int(rand(@$choices)) ] . ")::$type";
}

# every function the attacker may call, with its argument types
my @functions = map { [ split /\|/, $_, -1 ] } split /\n/, $node->safe_psql('postgres', q{
SELECT p.proname, coalesce(string_agg(format_type(t.type, NULL), ';' ORDER BY t.n), '')
  FROM pg_proc p
  LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY t(type, n) ON true
 WHERE p.pronamespace = 'async'::regnamespace
   AND p.prorettype <> 'trigger'::regtype
   AND has_function_privilege('attacker', p.oid, 'EXECUTE')
 GROUP BY p.oid, p.proname ORDER BY p.proname});
cmp_ok(scalar(@functions), '>=', 15, 'the attacker may call ' . scalar(@functions) . ' functions');

my @statements;
foreach my $f (@functions)
{
	my ($name, $types) = @$f;
	my @types = $types eq '' ? () : split /;/, $types;
	for my $i (1 .. 40)
	{
		push @statements,
		  "SELECT async.$name(" . join(', ', map { pick($_) } @types) . ');';
	}
}
for my $i (1 .. 60)
{
	push @statements,
	  'INSERT INTO async.jobs (event_id, function, payload, run_at) VALUES ('
	  . join(', ', pick('text'), pick('text'), pick('jsonb'), pick('timestamp with time zone'))
	  . ');';
}
# and every extreme setting, systematically, on a registration of the
# attacker's whose jobs fail, so that the workers compute with each
foreach my $delays (@{ $pool{'interval[]'} })
{
	push @statements,
	  "SELECT async.configure('attacker_fn', retry_delays => ($delays)::interval[]);",
	  q{SELECT async.invoke('attacker_fn', '{"fail": "delays"}');};
}
foreach my $iv (@{ $pool{'interval'} })
{
	foreach my $setting ('timeout', 'max_event_age')
	{
		push @statements,
		  "SELECT async.configure('attacker_fn', $setting => ($iv)::interval);",
		  q{SELECT async.invoke('attacker_fn', '{"fail": "settings"}');};
	}
}
# in a random order
for (my $i = $#statements; $i > 0; $i--)
{
	my $j = int(rand($i + 1));
	@statements[ $i, $j ] = @statements[ $j, $i ];
}

my $script = "SET statement_timeout = '300ms';\n\\set VERBOSITY sqlstate\n"
  . join("\n", @statements) . "\n";
my ($stdout, $stderr);
$node->psql('postgres', $script,
	stdout => \$stdout, stderr => \$stderr,
	extra_params => [ '-U', 'attacker' ], on_error_stop => 0);
my %sqlstates;
$sqlstates{$1}++ while $stderr =~ /^(?:psql:\S+ )?ERROR:\s+(\w{5})/mg;
my $errors = 0;
$errors += $_ foreach values %sqlstates;
note(sprintf('%d statements, %d errors by SQLSTATE: %s', scalar(@statements), $errors,
	join(' ', map { "$_=$sqlstates{$_}" } sort keys %sqlstates)));
ok(!exists $sqlstates{XX000}, 'no internal error (XX000)')
  or diag(join("\n", grep { /XX000/ } split /\n/, $stderr));

# let the workers run what the attacker got enqueued, with whatever
# registrations were accepted
$node->safe_psql('postgres', "SELECT async.wait_idle('20 seconds')");

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still serves');
is($node->safe_psql('postgres', $pids_sql), $pids_before,
	'no pg_async worker or launcher exited');
unlike(slurp_file($node->logfile, $log_offset),
	qr/(?:pg_async (?:worker|launcher)".*(?:exited with exit code|terminated by signal))|server process .* was terminated/,
	'the server log shows no pg_async process exit');
is( $node->safe_psql('postgres', q{
SELECT count(*) || ' ' || md5(string_agg(event_id || payload::text, ',' ORDER BY event_id))
  FROM async.jobs WHERE function = 'victim_held' AND state = 'queued'
   AND enqueued_by = 'victim'::regrole}),
	$held_before, "victim's held jobs are all there, unchanged");
$node->safe_psql('postgres', "SET ROLE victim; SELECT async.resume('victim_held')");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 20 FROM async.jobs WHERE function = 'victim_held' AND state = 'succeeded'"
		  . " AND enqueued_by = 'victim'::regrole"),
	"victim's held jobs run once resumed");

$node->stop;
done_testing();
