# With pg_async.claim_synchronous_commit off, a consumer's transaction that
# wrote nothing but its claims of functions without a limit commits
# without waiting for its WAL flush (claim_commit.c); any other write in
# it, before or after the claims, async.complete(), a claim of a function
# with a limit, and the setting on (its default) make the commit wait as
# usual.  The session sets commit_delay to 100 ms (with
# commit_siblings 0 and fsync on, every commit that flushes sleeps that
# long first), and a procedure times each kind of commit from inside.
# Any WAL of the transaction's own before its claim makes it wait, a page
# of the catalogs pruned while the procedure is planned among them: so a
# first transaction only warms up, and a claim alone is timed three times,
# of which the fastest counts (all three waited without the feature).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('claim_commit', workers => 1, conf => "fsync = on\n");
create_timed_commit($node);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
SELECT async.register_external('ext');
SELECT async.register_external('ext_limited', concurrency => 5);
SELECT async.register_external('ext_none');
CREATE TABLE public.effects (job_id bigint);
INSERT INTO async.jobs (function, payload) SELECT 'ext', '{}' FROM generate_series(1, 10);
INSERT INTO async.jobs (function, payload) VALUES ('ext_limited', '{}');

-- one job of fn claimed, if any (public.timed_commit: PgAsyncTest.pm)
CREATE FUNCTION public.claim_one(fn text, OUT job_id bigint, OUT lease uuid)
	LANGUAGE sql AS $$SELECT c.job_id, c.lease FROM async.claim(fn, 1) c$$;

-- milliseconds each commit took, and how many jobs each case claimed
CREATE PROCEDURE public.commit_times(INOUT claim_only float8 DEFAULT NULL,
									 INOUT two_claims float8 DEFAULT NULL,
									 INOUT claim_then_write float8 DEFAULT NULL,
									 INOUT write_then_claim float8 DEFAULT NULL,
									 INOUT complete float8 DEFAULT NULL,
									 INOUT limited float8 DEFAULT NULL,
									 INOUT setting_on float8 DEFAULT NULL,
									 INOUT claimed integer DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	j record;
	ms float8;
BEGIN
	SELECT * INTO j FROM public.claim_one('ext_none');
	CALL public.timed_commit(ms);

	FOR i IN 1 .. 3 LOOP
		SELECT * INTO j FROM public.claim_one('ext');
		claimed := claimed + (j.job_id IS NOT NULL)::integer;
		CALL public.timed_commit(ms);
		claim_only := LEAST(claim_only, ms);
	END LOOP;

	SELECT count(*) + claimed INTO claimed FROM public.claim_one('ext') c WHERE c.job_id IS NOT NULL;
	SELECT count(*) + claimed INTO claimed FROM public.claim_one('ext') c WHERE c.job_id IS NOT NULL;
	CALL public.timed_commit(two_claims);

	SELECT * INTO j FROM public.claim_one('ext');
	claimed := claimed + (j.job_id IS NOT NULL)::integer;
	INSERT INTO public.effects VALUES (j.job_id);
	CALL public.timed_commit(claim_then_write);

	INSERT INTO public.effects VALUES (0);
	SELECT * INTO j FROM public.claim_one('ext');
	claimed := claimed + (j.job_id IS NOT NULL)::integer;
	CALL public.timed_commit(write_then_claim);

	PERFORM async.complete(j.job_id, j.lease);
	CALL public.timed_commit(complete);

	SELECT count(*) + claimed INTO claimed FROM public.claim_one('ext_limited') c WHERE c.job_id IS NOT NULL;
	CALL public.timed_commit(limited);

	PERFORM pg_catalog.set_config('pg_async.claim_synchronous_commit', 'on', true);
	SELECT count(*) + claimed INTO claimed FROM public.claim_one('ext') c WHERE c.job_id IS NOT NULL;
	CALL public.timed_commit(setting_on);
END $$;
});

my ($claim_only, $two_claims, $claim_then_write, $write_then_claim, $complete, $limited,
	$setting_on, $claimed) =
  split /\|/, $node->safe_psql('postgres', q{
SET commit_delay = 100000;
SET commit_siblings = 0;
SET pg_async.claim_synchronous_commit = off;
CALL public.commit_times();
});
diag("commit times (ms) with commit_delay 100 ms: claim only $claim_only, two claims $two_claims, "
	  . "claim then write $claim_then_write, write then claim $write_then_claim, complete $complete, "
	  . "a limited function's claim $limited, with the setting on $setting_on");
is($claimed, 9, 'each case claimed a job');
cmp_ok($claim_only, '<', 100, 'a transaction of one claim does not wait for the flush (the fastest of three)');
cmp_ok($two_claims, '<', 100, 'nor does one of two claims');
cmp_ok($claim_then_write, '>=', 100, 'a claim followed by a write of its own waits');
cmp_ok($write_then_claim, '>=', 100, 'a write followed by a claim waits');
cmp_ok($complete, '>=', 100, 'async.complete() waits');
cmp_ok($limited, '>=', 100, 'a claim of a function with a concurrency limit waits');
cmp_ok($setting_on, '>=', 100, 'a claim waits with pg_async.claim_synchronous_commit on');
is($node->safe_psql('postgres', 'SHOW pg_async.claim_synchronous_commit'), 'on',
	'which is the default');

# A limit given to a function while a claim of it waits counts too: the
# claim's commit waits for the flush, although the function had no limit
# when the claim began.
$node->safe_psql('postgres', q{
SELECT async.register_external('ext_later');
CREATE PROCEDURE public.timed_claim(fn text, INOUT claimed bigint DEFAULT NULL,
									INOUT ms float8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
	SELECT count(*) INTO claimed FROM async.claim(fn, 1, wait => '60 seconds');
	CALL public.timed_commit(ms);
END $$;
});
my ($out, $err) = ('', '');
my $waiter = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
	  '-c', 'SET commit_delay = 100000', '-c', 'SET commit_siblings = 0',
	  '-c', 'SET pg_async.claim_synchronous_commit = off',
	  '-c', "CALL public.timed_claim('ext_later')" ],
	'>', \$out, '2>', \$err);
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgAsyncClaimWait'"
		  . " OR (wait_event = 'Extension' AND query LIKE '%timed_claim(''ext_later'')%')"),
	'a claim of a function without a limit waits');
$node->safe_psql('postgres', q{
SELECT async.configure('ext_later', concurrency => 5);
INSERT INTO async.jobs (function, payload) VALUES ('ext_later', '{}');
});
ok($waiter->finish, 'the claim returns') or diag($err);
my ($late_claimed, $late_ms) = split /\|/, (split /\n/, $out)[-1];
is($late_claimed, 1, 'with the job enqueued under the new limit');
cmp_ok($late_ms // 0, '>=', 100, 'and its commit waits for the flush');

# the claims committed: the jobs are running, with their leases, and the
# completed one succeeded
is($node->safe_psql('postgres', q{
	SELECT string_agg(state || ' ' || n, ', ' ORDER BY state)
	  FROM (SELECT state, count(*) AS n FROM async.jobs GROUP BY state) s}),
	'queued 2, running 9, succeeded 1', 'the claims are there');
is($node->safe_psql('postgres', "SELECT count(*) FROM async.running WHERE lease IS NOT NULL"),
	'9', 'with their leases');

$node->stop;
done_testing();
