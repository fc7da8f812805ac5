# pg_async_router: four shards that run pg_async and a router in front of
# them, through PL/Proxy, all on this machine.
#
# 1. 20,000 events through the router run once each, on the shard the hash
#    of their event_id names; duplicates are skipped across the shards; the
#    fan-in views and the metrics add up to what each shard says.
# 2. A shard stopped in immediate mode and started again while events come:
#    only its events fail, fast, with an error that names it; retried with
#    the same event_ids they run; nothing is lost or run twice; the fan-in
#    views say which shard did not answer.
# 3. Bad input: an unknown cluster, a shard without pg_async, a function
#    registered on some shards only.
# 4. A role gets on the shards the rights it has there: one refused on a
#    shard is refused there through the router.
# 5. Priorities through invoke and invoke_many, and register_on_all's
#    options of pg_async 0.9 to 0.11, on every shard; a shard with a
#    pg_async older than 0.11.
# 6. ALTER EXTENSION pg_async_router UPDATE from 0.1 ends with what a new
#    installation makes, compared fact by fact (test/schema_facts.sql).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
plan skip_all => "PL/Proxy is not installed ($sharedir/extension/plproxy.control)"
  unless -f "$sharedir/extension/plproxy.control";

my $nshards = 4;
my @shards;
foreach my $i (0 .. $nshards - 1)
{
	my $shard = pg_async_node("shard$i", workers => 1, conf => "pg_async.batch_wait = 0");
	$shard->safe_psql('postgres', qq{
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text NOT NULL, shard int NOT NULL);
GRANT INSERT ON public.effects TO PUBLIC;
CREATE FUNCTION public.record(e jsonb, ctx async.context) RETURNS void LANGUAGE sql
  AS \$\$INSERT INTO public.effects VALUES (ctx.event_id, $i)\$\$;
CREATE FUNCTION public.fail(e jsonb) RETURNS void LANGUAGE plpgsql
  AS \$\$BEGIN RAISE EXCEPTION 'always'; END\$\$;
CREATE ROLE alice LOGIN;
CREATE ROLE mallory LOGIN;
REVOKE EXECUTE ON FUNCTION public.record(jsonb, async.context) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.record(jsonb, async.context) TO alice;
});
	# mallory may enqueue on every shard but shard 2
	$shard->safe_psql('postgres',
		"GRANT EXECUTE ON FUNCTION public.record(jsonb, async.context) TO mallory")
	  unless $i == 2;
	push @shards, $shard;
}

my $router = PostgreSQL::Test::Cluster->new('router');
$router->init;
$router->start;
# conninfo names a node's database (connstr quotes it, which a server option cannot hold)
sub conninfo
{
	my ($node, $db) = @_;
	return 'host=' . $node->host . ' port=' . $node->port . " dbname=$db";
}
my $partitions = join(', ', map { "p$_ '" . conninfo($shards[$_], 'postgres') . "'" } 0 .. $nshards - 1);
$router->safe_psql('postgres', qq{
CREATE DATABASE plain;
CREATE EXTENSION pg_async_router CASCADE;
CREATE SERVER pg_async FOREIGN DATA WRAPPER plproxy OPTIONS (connection_lifetime '600', $partitions);
CREATE USER MAPPING FOR PUBLIC SERVER pg_async;
GRANT USAGE ON FOREIGN SERVER pg_async TO PUBLIC;
CREATE ROLE alice LOGIN;
CREATE ROLE mallory LOGIN;
CREATE TABLE public.results (event_id text, ok boolean, sqlstate text, message text, ms float8);
GRANT ALL ON public.results TO PUBLIC;
});

# sql runs a query on the router (as role, if given)
sub router
{
	my ($query, $role) = @_;
	return $router->safe_psql('postgres', $role ? "SET ROLE $role; $query" : $query);
}

# on_shards runs a query on every shard; returns the answers in shard order
sub on_shards
{
	my ($query) = @_;
	return map { $_->safe_psql('postgres', $query) } @shards;
}

# check_cluster returns the router's check of its cluster, one line each
sub check_cluster
{
	return router("SELECT \"check\" || ': ' || status || ': ' || detail FROM async.check_cluster()");
}

is( router(q{
SELECT count(*) FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_async_router'
 WHERE d.deptype = 'e' AND d.classid IN ('pg_proc'::regclass, 'pg_class'::regclass)
   AND obj_description(d.objid, d.classid::regclass::name) IS NULL}),
	'0', 'every function and view of pg_async_router has a comment');

like( router("SELECT async.register_on_all('public.record(jsonb, async.context)', max_attempts => 5)"),
	qr/^record$/, 'register_on_all registers the handler on every shard');
router("SELECT async.register_on_all('public.fail(jsonb)', max_attempts => 1)");
is_deeply([ on_shards("SELECT string_agg(name || ' ' || max_attempts, ', ' ORDER BY name) FROM async.functions") ],
	[ ('fail 1, record 5') x $nshards ], 'every shard has both registrations');
is(check_cluster(),
	"shards: ok: cluster \"pg_async\" has 4 shards\n"
	  . join('', map { "shard $_: ok: pg_async " . $shards[0]->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'pg_async'") . "\n" } 0 .. 3)
	  . "versions: ok: every shard runs pg_async " . $shards[0]->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'pg_async'") . "\n"
	  . "functions: ok: 2 functions registered on every shard that answered",
	'check_cluster: four shards, pg_async of one version on each, the same functions');

# 1. 20,000 events: 19,000 in batches of 1,000 with event_ids of the
# caller's, 500 one at a time with event_ids, 500 one at a time with none.
my $t0 = time;
foreach my $b (0 .. 18)
{
	router("SELECT cardinality(async.invoke_many('record',"
		  . " ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series($b * 1000 + 1, $b * 1000 + 1000) i),"
		  . " ARRAY(SELECT 'ev-' || i FROM generate_series($b * 1000 + 1, $b * 1000 + 1000) i)))");
}
router(q{DO $$BEGIN FOR i IN 19001 .. 19500 LOOP PERFORM async.invoke('record', '{}', 'ev-' || i); END LOOP; END$$});
my $made = router(q{
CREATE TABLE public.made AS SELECT async.invoke('record', '{}') AS event_id FROM generate_series(1, 500);
SELECT count(DISTINCT event_id) FROM public.made WHERE event_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7'});
is($made, 500, 'events given no event_id get one from the router, a version 7 UUID each');
note(sprintf("20,000 events through the router in %.1f s", time - $t0));

# duplicates: 1,000 of the same event_ids again, in a batch and one by one
is( router("SELECT async.invoke_many('record', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 250)),"
		  . " ARRAY(SELECT 'ev-' || i FROM generate_series(1, 250) i)) = ARRAY(SELECT 'ev-' || i FROM generate_series(1, 250) i)"),
	't', 'invoke_many returns the event_ids it was given');
router(q{SELECT count(async.invoke('record', '{}', event_id)) FROM public.made UNION ALL
		 SELECT count(async.invoke('record', '{}', 'ev-' || i)) FROM generate_series(19001, 19250) i});

is(router("SELECT async.wait_idle('60 s')"), 't', 'wait_idle through the router: every shard drains');
my @per_shard = on_shards("SELECT count(*) || ' ' || count(DISTINCT event_id) FROM public.effects");
my ($effects, $distinct) = (0, 0);
foreach (@per_shard)
{
	my ($n, $d) = split / /;
	$effects += $n;
	$distinct += $d;
}
note("effects per shard (all, distinct): " . join(', ', @per_shard));
is("$effects $distinct", '20000 20000', 'each of the 20,000 events ran once, duplicates skipped');
my $all_ids = join(',', on_shards("SELECT string_agg(event_id, ',') FROM public.effects"));
is( router("SELECT count(*) FROM unnest(string_to_array('$all_ids', ',')) id WHERE id LIKE 'ev-%' OR id IN (SELECT event_id FROM public.made)"),
	'20000', 'the effects are those of the events sent');
my @wrong = map {
	my $ids = $shards[$_]->safe_psql('postgres', "SELECT string_agg(event_id, ',') FROM public.effects");
	router("SELECT count(*) FROM unnest(string_to_array('$ids', ',')) id WHERE async.shard_of(id) <> $_");
} 0 .. $nshards - 1;
is_deeply(\@wrong, [ (0) x $nshards ], 'each event ran on the shard its hash names');
cmp_ok((sort { $a <=> $b } map { (split / /)[0] } @per_shard)[0], '>', 4000, 'every shard got its share');

# the fan-in views add up to what each shard says
is( router("SELECT string_agg(shard || ':' || succeeded, ' ' ORDER BY shard) FROM async.stats WHERE function = 'record'"),
	join(' ', map { "$_:" . $shards[$_]->safe_psql('postgres', "SELECT succeeded FROM async.stats WHERE function = 'record'") } 0 .. 3),
	'async.stats: each shard\'s row is that shard\'s');
is( router("SELECT sum(succeeded) || ' ' || sum(duplicates_skipped) || ' ' || count(*) FILTER (WHERE error IS NOT NULL) FROM async.function_stats WHERE function = 'record'"),
	'20000 1000 0', 'async.function_stats: 20,000 succeeded, 1,000 duplicates skipped, no shard missing');

# dead letters: redriven through the router by event_id and in bulk
router(q{SELECT async.invoke_many('fail', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 16)),
                                  ARRAY(SELECT 'dead-' || i FROM generate_series(1, 16) i))});
ok($router->poll_query_until('postgres', "SELECT count(*) = 16 FROM async.dead_letters WHERE function = 'fail'"),
	'async.dead_letters: the 16 dead letters of every shard');
is(router("SELECT count(DISTINCT shard) > 1 FROM async.dead_letters WHERE function = 'fail'"), 't', 'from several shards');
is(router("SELECT async.redrive('dead-1')"), 't', 'redrive by event_id, on its shard');
is(router("SELECT async.redrive('no-such-event')"), 'f', 'redrive of no dead letter: false');
ok($router->poll_query_until('postgres', "SELECT count(*) = 16 FROM async.dead_letters WHERE function = 'fail'"),
	'the redriven event died again');
is(router("SELECT async.redrive_many('fail')"), '16', 'redrive_many: the dead letters of every shard');

# metrics: one text, each family once, each sample with its shard
my $metrics = router("SELECT async.metrics()");
my %help;
$help{$_}++ foreach ($metrics =~ /^# HELP (\S+)/mg);
is(scalar(grep { $_ > 1 } values %help), 0, 'metrics: each family has one HELP line');
is(scalar(grep { !/^#/ && !/\{shard="\d"[,}]/ } split /\n/, $metrics), 0, 'every sample has a shard label');
my $sum = 0;
$sum += $_ foreach ($metrics =~ /^pg_async_succeeded_total\{shard="\d",function="record"\} (\d+)$/mg);
is($sum, 20000, 'the shards\' succeeded counters add up to the 20,000 events');
is(join(' ', $metrics =~ /^pg_async_router_shard_up\{shard="(\d)"\} 1$/mg), '0 1 2 3', 'every shard is up');
# the families' samples are together: no family name comes back after another
my @seen = map { /^([a-z_]+?)(?:_sum|_count)?\{/ ? $1 : () } split /\n/, $metrics;
my ($back, $last, %done) = (0, '');
foreach (@seen)
{
	next if $_ eq $last;
	$back++ if $done{$_};
	$done{$last} = 1;
	$last = $_;
}
is($back, 0, 'each family\'s samples come together');
is(router("SELECT count(DISTINCT shard) FROM async.health()"), $nshards, 'async.health(): every shard\'s checks');

# 2. A shard stopped in immediate mode while events come, and started again.
# A DO block on the router sends one event at a time and records, for
# each, whether it was accepted, its error and how long the call took.
sub send_events
{
	my ($from, $to) = @_;
	router(qq{DO \$\$
DECLARE t timestamptz;
BEGIN
	FOR i IN $from .. $to LOOP
		t := clock_timestamp();
		BEGIN
			PERFORM async.invoke('record', '{}', 'down-' || i);
			INSERT INTO public.results VALUES ('down-' || i, true, NULL, NULL,
				extract(epoch FROM clock_timestamp() - t) * 1000);
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO public.results VALUES ('down-' || i, false, SQLSTATE, SQLERRM,
				extract(epoch FROM clock_timestamp() - t) * 1000);
		END;
	END LOOP;
END\$\$});
}
send_events(1, 600);
$shards[2]->stop('immediate');
send_events(601, 1200);
is( router("SELECT count(*) FILTER (WHERE NOT ok AND async.shard_of(event_id) <> 2)"
		  . " || ' ' || count(*) FILTER (WHERE ok AND async.shard_of(event_id) = 2)"
		  . " FROM public.results WHERE substring(event_id FROM 6)::int BETWEEN 601 AND 1200"),
	'0 0', 'while shard 2 is down, only its events fail, and all of them');
my ($failed, $states, $message, $slowest) = split /\|/, router(
	"SELECT count(*), string_agg(DISTINCT sqlstate, ','), min(message), round(max(ms)) FROM public.results WHERE NOT ok");
cmp_ok($failed, '>', 100, "shard 2's events failed ($failed)");
is($states, '08006', 'with connection_failure');
like($message, qr/^shard 2 of cluster "pg_async" did not answer$/, 'and an error that names the shard');
cmp_ok($slowest, '<', 1000, "fast: the slowest failure took $slowest ms");
note("while shard 2 was down: $failed events refused, the slowest in $slowest ms");

is( router("SELECT string_agg(shard || ' ' || (error IS NOT NULL), ', ' ORDER BY shard) FROM async.stats WHERE function = 'record' OR error IS NOT NULL"),
	'0 false, 1 false, 2 true, 3 false', 'async.stats says which shard did not answer, and has the others');
like(router("SELECT detail FROM async.health() WHERE shard = 2"), qr/^the shard did not answer: /,
	'async.health(): a critical check for the shard that did not answer');
like(router("SELECT async.metrics()"), qr/^pg_async_router_shard_up\{shard="2"\} 0$/m, 'metrics: shard 2 is down');
my ($ret, $out, $err) = $router->psql('postgres', "SELECT async.wait_idle('1 s')");
is($out, 'f', 'wait_idle: false while a shard does not answer');
like($err, qr/wait_idle: shard 2 of cluster "pg_async" did not answer/, 'with a warning naming it');
($ret, $out, $err) = $router->psql('postgres',
	"SELECT async.invoke_many('record', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 100)), ARRAY(SELECT 'many-' || i FROM generate_series(1, 100) i))");
like($err, qr/ERROR:  shard 2 of cluster "pg_async" did not answer/, 'invoke_many: an error naming the shard');
like($err, qr/NOTICE:  invoke_many: \d+ of 100 events were not enqueued, those of shards 2; the others were/,
	'and how many of its events were not enqueued');

$shards[2]->start;
send_events(1201, 1800);
# the refused events again, with the same event_ids; and the batch
router(q{SELECT count(async.invoke('record', '{}', event_id)) FROM public.results WHERE NOT ok});
router("SELECT async.invoke_many('record', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 100)), ARRAY(SELECT 'many-' || i FROM generate_series(1, 100) i))");
is(router("SELECT count(*) FROM public.results WHERE NOT ok AND substring(event_id FROM 6)::int NOT BETWEEN 601 AND 1200"),
	'0', 'before and after the stop, every event was accepted');
is(router("SELECT async.wait_idle('60 s')"), 't', 'every shard drains, shard 2 too');
my ($lost, $dups) = (0, 0);
my %ran;
foreach my $i (0 .. $nshards - 1)
{
	foreach (split /\n/, $shards[$i]->safe_psql('postgres',
		"SELECT event_id || ' ' || count(*) FROM public.effects WHERE event_id LIKE 'down-%' OR event_id LIKE 'many-%' GROUP BY event_id"))
	{
		my ($id, $n) = split / /;
		$ran{$id} = $n;
	}
}
foreach my $id ((map { "down-$_" } 1 .. 1800), (map { "many-$_" } 1 .. 100))
{
	$lost++ unless $ran{$id};
	$dups++ if ($ran{$id} // 0) > 1;
}
note("a shard stopped and started: 1,900 events, lost $lost, duplicate effects $dups");
is("$lost $dups", '0 0', 'lost 0, duplicates 0');

# 3. Bad input
($ret, $out, $err) = $router->psql('postgres',
	"SET pg_async_router.cluster = 'nowhere'; SELECT async.invoke('record', '{}')");
like($err, qr/ERROR:  pg_async_router cluster "nowhere" does not exist/, 'an unknown cluster: a clear error');
# a cluster of two: shard 0, and a database without pg_async
$router->safe_psql('postgres',
	"CREATE SERVER partial FOREIGN DATA WRAPPER plproxy OPTIONS (p0 '" . conninfo($shards[0], 'postgres')
	  . "', p1 '" . conninfo($router, 'plain') . "');"
	  . "CREATE USER MAPPING FOR PUBLIC SERVER partial");
($ret, $out, $err) = $router->psql('postgres', q{
SET pg_async_router.cluster = 'partial';
SELECT async.invoke('record', '{}', i::text) FROM generate_series(1, 10) i WHERE async.shard_of(i::text) = 1});
like($err, qr/ERROR:  shard 1 of cluster "partial" does not have pg_async/, 'a shard without pg_async: a clear error');
like( $router->safe_psql('postgres', "SET pg_async_router.cluster = 'partial'; SELECT detail FROM async.check_cluster() WHERE \"check\" = 'shard 1'"),
	qr/^pg_async is not installed$/, 'check_cluster names it');
$shards[1]->safe_psql('postgres',
	"CREATE FUNCTION public.only1(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT'; SELECT async.register('public.only1(jsonb)')");
like((check_cluster())[-1], qr/^functions: critical: registered on some shards only: only1 \(on shards 1 only\)$/m,
	'check_cluster: a function registered on some shards only');
my $elsewhere = router("SELECT i::text FROM generate_series(1, 100) i WHERE async.shard_of(i::text) = 3 LIMIT 1");
($ret, $out, $err) = $router->psql('postgres', "SELECT async.invoke('only1', '{}', '$elsewhere')");
like($err, qr/ERROR:  .*function "only1" is not registered with pg_async\nDETAIL:  On shard 3 of cluster "pg_async"/,
	'its event on another shard: the shard\'s error, naming the shard');

# 4. Rights are the caller's on each shard: mallory may enqueue everywhere
# but on shard 2, alice everywhere.
router(q{SELECT count(async.invoke('record', '{}', 'alice-' || i)) FROM generate_series(1, 40) i}, 'alice');
is( router("SELECT count(*) FILTER (WHERE function = 'record' AND succeeded + ready + running > 0)"
		  . " || ' ' || count(*) FILTER (WHERE error IS NOT NULL) FROM async.stats", 'alice'),
	'4 0', 'alice enqueues on every shard, and sees her jobs there');
($ret, $out, $err) = $router->psql('postgres',
	"SET ROLE mallory; SELECT async.invoke('record', '{}', i::text) FROM generate_series(1, 100) i WHERE async.shard_of(i::text) = 2 LIMIT 1");
like($err, qr/ERROR:  permission denied.*\nDETAIL:  On shard 2 of cluster "pg_async"/s,
	'mallory, refused on shard 2, is refused there through the router');
is( router("SELECT count(async.invoke('record', '{}', 'mallory-' || i)) FROM generate_series(1, 200) i WHERE async.shard_of('mallory-' || i) <> 2", 'mallory'),
	router("SELECT count(*) FROM generate_series(1, 200) i WHERE async.shard_of('mallory-' || i) <> 2"),
	'and accepted on the shards that allow her');
is( router("SELECT count(*) FILTER (WHERE event_id IS NOT NULL) || ' ' || count(*) FILTER (WHERE error IS NOT NULL)"
		  . " FROM async.dead_letters", 'mallory'),
	'0 0', 'she sees none of the dead letters of others, and every shard answered her');
is(router("SELECT count(*) FROM async.dead_letters WHERE event_id IS NOT NULL"), '16', 'which a superuser sees');

# 5. Priorities, and the options of register_on_all.  noop is registered
# with priority 3: a job enqueued without one gets it on its shard.
on_shards("CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT'");
is(router("SELECT async.register_on_all('public.noop(jsonb)', priority => 3)"), 'noop',
	'register_on_all with a priority');
is_deeply([ on_shards("SELECT priority FROM async.functions WHERE name = 'noop'") ],
	[ (3) x $nshards ], 'every shard has the function\'s priority');

# priority_of returns event_id:priority of the jobs whose event_id has the
# prefix, on every shard, and on which shard each is: "id:priority@shard"
sub priority_of
{
	my ($prefix) = @_;
	my @rows;
	foreach my $i (0 .. $nshards - 1)
	{
		push @rows, map { "$_\@$i" } split /\n/, $shards[$i]->safe_psql('postgres',
			"SELECT event_id || ':' || priority FROM async.jobs WHERE event_id LIKE '$prefix%'");
	}
	return join(' ', sort @rows);
}

router("SELECT async.invoke('noop', '{}', 'prio-1', priority => -5)");
router("SELECT async.invoke('noop', '{}', 'prio-2', clock_timestamp(), NULL)");
is(priority_of('prio-'),
	'prio-1:-5@' . router("SELECT async.shard_of('prio-1')")
	  . ' prio-2:3@' . router("SELECT async.shard_of('prio-2')"),
	'invoke: priority -5 lands on the event\'s shard with it; NULL takes the function\'s, 3');

router("SELECT async.invoke_many('noop', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 16)),"
	  . " ARRAY(SELECT 'batch-prio-' || i FROM generate_series(1, 16) i), priority => -7)");
router("SELECT async.invoke_many('noop', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 16)),"
	  . " ARRAY(SELECT 'batch-default-' || i FROM generate_series(1, 16) i))");
is(priority_of('batch-'),
	join(' ', sort map { my $id = $_; "$id:" . ($id =~ /prio/ ? -7 : 3) . '@' . router("SELECT async.shard_of('$id')") }
		  (map { "batch-prio-$_" } 1 .. 16), (map { "batch-default-$_" } 1 .. 16)),
	'invoke_many: priority -7 on every shard; without one, the function\'s');
my @spread = split /\n/, router("SELECT DISTINCT async.shard_of('batch-prio-' || i) FROM generate_series(1, 16) i");
cmp_ok(scalar @spread, '>', 1, 'the batch spanned several shards');

# the shard-by-shard way, taken when a shard fails: cluster partial's shard
# 1 has no pg_async, and shard 0 (shard 0 of pg_async) takes its events
# with their priority
($ret, $out, $err) = $router->psql('postgres', q{
SET pg_async_router.cluster = 'partial';
SELECT async.invoke_many('noop', ARRAY(SELECT '{}'::jsonb FROM generate_series(1, 16)),
                         ARRAY(SELECT 'partial-' || i FROM generate_series(1, 16) i), priority => -9)});
like($err, qr/ERROR:  shard 1 of cluster "partial" does not have pg_async\n/,
	'invoke_many with a shard without pg_async: the error names it');
is( $shards[0]->safe_psql('postgres',
		"SELECT string_agg(DISTINCT priority::text, ',') || ' ' || count(*) FROM async.jobs WHERE event_id LIKE 'partial-%'"),
	'-9 ' . router("SET pg_async_router.cluster = 'partial'; SELECT count(*) FROM generate_series(1, 16) i WHERE async.shard_of('partial-' || i) = 0"),
	'and the other shard enqueued its events, shard by shard, with priority -9');

is( router(q{SELECT async.register_on_all('public.noop(jsonb)', name => 'limited', concurrency => 4,
                                          priority => -2, max_depth => 5, rate_limit => 7,
                                          rate_period => '2 seconds', concurrency_key => 'tenant',
                                          key_concurrency => 2)}),
	'limited', 'register_on_all with the options of pg_async 0.9 to 0.11');
is_deeply(
	[ on_shards("SELECT concat_ws(' ', concurrency, priority, max_depth, rate_limit, rate_period, concurrency_key, key_concurrency)"
		  . " FROM async.functions WHERE name = 'limited'") ],
	[ ('4 -2 5 7 00:00:02 tenant 2') x $nshards ],
	'every shard has them');
($ret, $out, $err) = $router->psql('postgres',
	"SELECT async.register_on_all('public.noop(jsonb)', name => 'limited', key_concurrency => 2)");
like($err, qr/ERROR:  4 of 4 shards did not register limited\nDETAIL:  shard 0: .*key_concurrency needs a concurrency_key$/m,
	'a bound a shard refuses (key_concurrency without concurrency_key): every shard\'s error');

# a shard whose pg_async is older than 0.11 (0.8, which has no priorities):
# check_cluster says so, and an event sent there gets an error that says so
$shards[3]->safe_psql('postgres', 'CREATE DATABASE old');
$shards[3]->safe_psql('old', "SET client_min_messages = error; CREATE EXTENSION pg_async VERSION '0.8'");
$router->safe_psql('postgres',
	"CREATE SERVER old FOREIGN DATA WRAPPER plproxy OPTIONS (p0 '" . conninfo($shards[3], 'old') . "');"
	  . "CREATE USER MAPPING FOR PUBLIC SERVER old");
is( router("SET pg_async_router.cluster = 'old'; SELECT status || ': ' || detail FROM async.check_cluster() WHERE \"check\" = 'shard 0'"),
	'critical: pg_async 0.8, older than 0.11, which pg_async_router needs',
	'check_cluster: a shard with pg_async 0.8 is critical');
($ret, $out, $err) = $router->psql('postgres',
	"SET pg_async_router.cluster = 'old'; SELECT async.invoke('noop', '{}', 'old-1')");
like($err, qr/ERROR:  shard 0 of cluster "old" does not have pg_async 0.11 or later\nDETAIL:  .*function async.invoke\(/,
	'invoke on it: an error that says the shard\'s pg_async is too old');

# 6. ALTER EXTENSION pg_async_router UPDATE from 0.1.  The facts of
# test/schema_facts.sql, of pg_async_router's installation instead of
# pg_async's.
my $facts_sql = slurp_file("$FindBin::RealBin/../schema_facts.sql");
$facts_sql =~ s/e\.extname = 'pg_async'/e.extname = 'pg_async_router'/
  or die 'test/schema_facts.sql does not name pg_async as expected';

# router_facts returns the facts of pg_async_router's installation in db
sub router_facts
{
	my ($db) = @_;
	$router->safe_psql($db, "DROP VIEW IF EXISTS public.schema_facts; $facts_sql");
	return { map { $_ => 1 } split /\x1e/,
		  $router->safe_psql($db, "SELECT string_agg(fact, E'\\x1e' ORDER BY fact) FROM public.schema_facts") };
}

# differences returns the facts only one of two installations has
sub differences
{
	my ($a, $b) = @_;
	return [ sort((grep { !$b->{$_} } keys %$a), (grep { !$a->{$_} } keys %$b)) ];
}

my $version = router("SELECT extversion FROM pg_extension WHERE extname = 'pg_async_router'");
is($version, '0.2', 'a new installation is 0.2');
my $fresh = router_facts('postgres');
cmp_ok(scalar keys %$fresh, '>', 50, 'a new installation has its facts');

$router->safe_psql('postgres', 'CREATE DATABASE updated');
$router->safe_psql('updated', "SET client_min_messages = error; CREATE EXTENSION pg_async_router VERSION '0.1' CASCADE");
is($router->safe_psql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'pg_async_router'"),
	'0.1', '0.1 installs');
cmp_ok(scalar @{ differences(router_facts('updated'), $fresh) }, '>', 0,
	'0.1 differs from a new installation');
$router->safe_psql('updated', 'ALTER EXTENSION pg_async_router UPDATE');
is($router->safe_psql('updated', "SELECT extversion FROM pg_extension WHERE extname = 'pg_async_router'"),
	'0.2', '0.1 updates to 0.2');
is_deeply(differences(router_facts('updated'), $fresh), [],
	'the updated installation is a new one, fact by fact');

$router->safe_psql('updated', qq{
CREATE SERVER pg_async FOREIGN DATA WRAPPER plproxy OPTIONS ($partitions);
CREATE USER MAPPING FOR PUBLIC SERVER pg_async;
});
$router->safe_psql('updated', "SELECT async.invoke('noop', '{}', 'updated-1', priority => -4)");
$router->safe_psql('updated', "SELECT async.invoke_many('noop', '{\"{}\",\"{}\"}', '{updated-2,updated-3}', priority => -6)");
is(priority_of('updated-'),
	join(' ', map { "updated-$_->[0]:$_->[1]\@" . router("SELECT async.shard_of('updated-$_->[0]')") } ([1, -4], [2, -6], [3, -6])),
	'after the update, invoke and invoke_many take a priority');

$_->stop foreach (@shards, $router);
done_testing();
