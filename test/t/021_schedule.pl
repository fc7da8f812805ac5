# Periodic events through pg_cron (Debian's postgresql-NN-cron): a schedule
# enqueues one event per tick, as the role that made it and with its right
# to enqueue; a tick run twice enqueues once; async.schedules shows a role
# its own schedules with pg_cron's last run; unschedule removes them.
# Without the pg_cron extension, async.schedule() says how to get it.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('schedule',
	preload => 'pg_async,pg_cron',
	conf => q{
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 24
});

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE TABLE public.beats (event_id text, payload jsonb, enqueued_by regrole);
CREATE FUNCTION public.beat(e jsonb, c async.context) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.beats
	SELECT c.event_id, e, j.enqueued_by FROM async.jobs j WHERE j.event_id = c.event_id
$$;
REVOKE EXECUTE ON FUNCTION public.beat(jsonb, async.context) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.beat(jsonb, async.context) TO alice;
SELECT async.register('public.beat(jsonb, async.context)');
});
ok(wait_for_workers($node, 2), 'the workers start');

# as ROLE, the answer of a query, or its error
sub as_role
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE $role; $sql");
	return $rc == 0 ? $out : $err;
}

# 1. Without the extension pg_cron, the entry points say what to do.
like(as_role('alice', q{SELECT async.schedule('beat', '* * * * *', 'beat')}),
	qr/ERROR:  pg_cron is not installed in database postgres.*HINT:  Install pg_cron/s,
	'without pg_cron: async.schedule() says so, with a hint');
like(as_role('alice', q{SELECT async.unschedule('beat')}),
	qr/pg_cron is not installed/, 'without pg_cron: async.unschedule() too');
is(as_role('alice', 'SELECT count(*) FROM async.schedules'), '0',
	'without pg_cron: async.schedules is empty');

$node->safe_psql('postgres', q{
CREATE EXTENSION pg_cron;
GRANT USAGE ON SCHEMA cron TO alice, bob;
});
# pg_cron 1.5 and later tick in seconds; 1.4 (Debian 12) once a minute
my $cron_version = $node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'");
my ($major, $minor) = $cron_version =~ /^(\d+)\.(\d+)/;
my $seconds = $major > 1 || $minor >= 5;
my $schedule = $seconds ? '2 seconds' : '* * * * *';
note("pg_cron $cron_version: schedule '$schedule'");

# 2. Bad input: a clear error, and nothing scheduled.
like(as_role('alice', q{SELECT async.schedule('', '* * * * *', 'beat')}),
	qr/invalid schedule name ''/, 'an empty name is refused');
like(as_role('alice', "SELECT async.schedule(repeat('x', 51), '* * * * *', 'beat')"),
	qr/invalid schedule name.*1 to 50 bytes/s, 'a name longer than 50 bytes is refused');
like(as_role('alice', q{SELECT async.schedule('beat', NULL, 'beat')}),
	qr/must not be null/, 'a NULL schedule is refused');
like(as_role('alice', q{SELECT async.schedule('beat', '* * * * *', 'nosuch')}),
	qr/function "nosuch" is not registered/, 'an unregistered function is refused');
like(as_role('alice', q{SELECT async.schedule('beat', 'every now and then', 'beat')}),
	qr/ERROR/, "a schedule pg_cron cannot read is refused by pg_cron");
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0',
	'bad input schedules nothing');

# 3. A schedule: one event per tick, enqueued by the role that scheduled it.
like(as_role('alice', qq{SELECT async.schedule('beat', '$schedule', 'beat', '{"n": 1}')}),
	qr/^\d+$/, 'alice schedules a beat');
is($node->safe_psql('postgres',
		"SELECT jobname || ' ' || username || ' ' || schedule FROM cron.job"),
	"async:beat alice $schedule", 'it is a pg_cron job of alice');
like(as_role('alice', qq{SELECT async.schedule('beat', '$schedule', 'beat', '{"n": 2}')}),
	qr/^\d+$/, 'scheduling the same name again');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '1',
	'replaces the schedule');
# a tick of the first schedule may fall between the two calls
my $replaced_at = $node->safe_psql('postgres', 'SELECT clock_timestamp()');

my $ticks = $seconds ? 2 : 1;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) >= $ticks FROM public.beats"
		  . " WHERE event_id LIKE 'beat:%' AND payload = '{\"n\": 2}'"),
	"the schedule's ticks run the handler ($ticks)");
my $unit = $seconds ? '\d\d' : '00';
is( $node->safe_psql('postgres', qq{
SELECT count(*) FROM public.beats
 WHERE CASE WHEN event_id ~ '^beat:\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:${unit}Z\$'
			THEN payload <> '{"n": 2}'
				 AND (payload <> '{"n": 1}'
					  OR substr(event_id, 6)::timestamptz > '$replaced_at')
			ELSE true END
    OR enqueued_by <> 'alice'::regrole}),
	'0', 'each event: the name and the tick in UTC, the payload (the second '
	  . 'schedule\'s, or the first\'s for a tick before the second), enqueued by alice');

# 4. A tick run twice (a retry, a clock stepped back) enqueues once.
my $command = $node->safe_psql('postgres',
	"SELECT command FROM cron.job WHERE jobname = 'async:beat'");
my @ids = split /\n/, as_role('alice', "BEGIN; $command; $command; COMMIT;");
is(scalar(@ids), 2, 'a duplicate tick by hand');
is($ids[0], $ids[1], 'a duplicate tick: the same event_id');
is($node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE event_id = '$ids[0]'"),
	'1', 'a duplicate tick: one job');

# 5. async.schedules: a role's own schedules, with the last run.
ok( $node->poll_query_until('postgres',
		"SELECT last_status = 'succeeded' FROM async.schedules WHERE name = 'beat'"),
	'async.schedules shows the last run');
is($node->safe_psql('postgres', 'SELECT string_agg(username, \' \') FROM async.schedules'),
	'alice', 'a superuser sees the schedules of every role');
is( as_role('alice', q{
SELECT name || ' ' || schedule || ' ' || function || ' ' || payload || ' ' || username || ' ' || active
  FROM async.schedules}),
	"beat $schedule beat {\"n\": 2} alice true", 'async.schedules: the schedule of alice');
my $odd = q{{"s": "it's a \\\\path\\n"}};
like(as_role('alice', qq{SELECT async.schedule('odd''s', '0 3 * * *', 'beat', \$j\$$odd\$j\$)}),
	qr/^\d+$/, 'a schedule whose name and payload hold quotes and backslashes');
is(as_role('alice', qq{SELECT payload = \$j\$$odd\$j\$::jsonb FROM async.schedules WHERE name = 'odd''s'}),
	't', 'async.schedules reads its payload back');
is(as_role('alice', q{SELECT async.unschedule('odd''s')}), 't', 'and it is unscheduled');
is(as_role('bob', 'SELECT count(*) FROM async.schedules'), '0',
	'bob does not see the schedule of alice');
is(as_role('bob', q{SELECT async.unschedule('beat')}), 'f',
	'bob cannot unschedule it');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '1',
	'it is still there');

# 6. The command runs with the rights of the role that scheduled it: bob
# may not enqueue for beat, and neither may his schedule.
like(as_role('bob', qq{SELECT async.schedule('sneak', '$schedule', 'beat')}),
	qr/^\d+$/, 'bob schedules events for beat');
my $bob_command = $node->safe_psql('postgres',
	"SELECT command FROM cron.job WHERE jobname = 'async:sneak' AND username = 'bob'");
like(as_role('bob', $bob_command), qr/permission denied/,
	"bob's tick runs with bob's rights, which do not allow enqueueing for beat");
if ($seconds)
{
	ok( $node->poll_query_until('postgres', q{
SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
 WHERE j.jobname = 'async:sneak' AND d.status = 'failed' AND d.return_message LIKE '%permission denied%'}),
		"pg_cron runs bob's ticks as bob: they fail");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM async.jobs WHERE event_id LIKE 'sneak:%'"),
	'0', 'no event of bob is enqueued');
is(as_role('bob', q{SELECT async.unschedule('sneak')}), 't', 'bob unschedules his');

# A role without USAGE on schema cron: no schedule to see, and a clear
# error where it would act.
$node->safe_psql('postgres', 'CREATE ROLE carol LOGIN');
is(as_role('carol', 'SELECT count(*) FROM async.schedules'), '0',
	'a role that may not use pg_cron sees no schedule, and no error');
like(as_role('carol', q{SELECT async.unschedule('beat')}),
	qr/permission denied for schema cron.*HINT:  A superuser can allow it: GRANT USAGE ON SCHEMA cron TO carol/s,
	'nor may it unschedule: a hint says what to grant');
like(as_role('carol', q{SELECT async.schedule('beat', '* * * * *', 'beat')}),
	qr/permission denied for schema cron.*HINT:  A superuser can allow it/s,
	'nor schedule');

# 7. Unschedule.
is(as_role('alice', q{SELECT async.unschedule('beat')}), 't', 'alice unschedules the beat');
is($node->safe_psql('postgres', 'SELECT count(*) FROM cron.job'), '0',
	'its pg_cron job is gone');
is(as_role('alice', q{SELECT async.unschedule('beat')}), 'f',
	'unscheduling it again: false');

$node->stop;
done_testing();
