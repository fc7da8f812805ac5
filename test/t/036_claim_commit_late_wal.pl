# A transaction of claims that pg_async lets commit without waiting for its
# WAL flush (pg_async.claim_synchronous_commit off, claim_commit.c) still
# flushes before the client hears of the commit when another module's
# pre-commit callback, run after pg_async's, wrote WAL: the module
# test/modules/late_wal.c, built here and loaded before pg_async, writes a
# logical decoding message at every pre-commit while late_wal.enabled is
# on.  As in 034_claim_commit.pl, commit_delay is 100 ms (commit_siblings
# 0, fsync on), which every XLogFlush that finds the WAL not yet flushed
# sleeps first, and a procedure times the commits from inside: the fastest
# of three claims without the module's record does not wait, the fastest
# of three with it waits (50 ms or more, against hundredths of one
# without: pg_usleep may end early on a signal).  wal_writer_delay is
# 10 s, so that the WAL writer, which sleeps no commit_delay, never
# enters its low-power mode, where each asynchronous commit would wake it
# to flush, perhaps before the backend does.
use strict;
use warnings;

use File::Spec;
use FindBin;
use IPC::Run;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = pg_async_node('claim_commit_late_wal', workers => 1,
	conf => "fsync = on\nwal_writer_delay = '10s'\n");

# the module, built with the compiler and headers of the installation the
# server runs from, then loaded before pg_async
my $so = File::Spec->rel2abs(
	File::Spec->catfile($PostgreSQL::Test::Utils::tmp_check, 'late_wal.so'));
my @cc = (
	(map { split(' ', server_pg_config($node, $_)) } qw(CC CPPFLAGS CFLAGS CFLAGS_SL)),
	'-shared', '-I' . server_pg_config($node, 'INCLUDEDIR-SERVER'),
	'-o', $so, "$FindBin::RealBin/../modules/late_wal.c");
my ($cc_out, $cc_err) = ('', '');
unless (ok(IPC::Run::run(\@cc, '>', \$cc_out, '2>', \$cc_err), 'the module builds'))
{
	diag("cannot build late_wal.c: $cc_err");
	done_testing();
	exit;
}
$node->append_conf('postgresql.conf', "shared_preload_libraries = '$so,pg_async'\n");
$node->restart;

create_timed_commit($node);
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_async;
SELECT async.register_external('ext');
SELECT async.register_external('ext_none');
INSERT INTO async.jobs (function, payload) SELECT 'ext', '{}' FROM generate_series(1, 6);

CREATE FUNCTION public.claim_one(fn text) RETURNS bigint
	LANGUAGE sql AS $$SELECT count(*) FROM async.claim(fn, 1)$$;

-- the fastest commit of three claims without the module's record, and of
-- three with it; and how many jobs they claimed
CREATE PROCEDURE public.commit_times(INOUT without_record float8 DEFAULT NULL,
									 INOUT with_record float8 DEFAULT NULL,
									 INOUT claimed bigint DEFAULT 0)
LANGUAGE plpgsql AS $$
DECLARE
	ms float8;
BEGIN
	-- a first transaction only warms up (034_claim_commit.pl says why)
	PERFORM public.claim_one('ext_none');
	CALL public.timed_commit(ms);

	FOR i IN 1 .. 3 LOOP
		claimed := claimed + public.claim_one('ext');
		CALL public.timed_commit(ms);
		without_record := LEAST(without_record, ms);
	END LOOP;

	PERFORM pg_catalog.set_config('late_wal.enabled', 'on', false);
	FOR i IN 1 .. 3 LOOP
		claimed := claimed + public.claim_one('ext');
		CALL public.timed_commit(ms);
		with_record := LEAST(with_record, ms);
	END LOOP;
	PERFORM pg_catalog.set_config('late_wal.enabled', 'off', false);
END $$;
});

my ($without_record, $with_record, $claimed) =
  split /\|/, $node->safe_psql('postgres', q{
SET commit_delay = 100000;
SET commit_siblings = 0;
SET pg_async.claim_synchronous_commit = off;
CALL public.commit_times();
});
diag("commit times (ms) with commit_delay 100 ms: claim only $without_record, "
	  . "claim and another module's record at pre-commit $with_record");
is($claimed, 6, 'each claim took a job');
cmp_ok($without_record, '<', 100,
	'a transaction of one claim does not wait for the flush (the fastest of three)');
cmp_ok($with_record, '>=', 50,
	'with WAL written after pg_async\'s pre-commit it waits (the fastest of three)');

# the six claims committed, and are there after an immediate stop
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', q{SELECT count(*) FROM async.running WHERE lease IS NOT NULL}),
	'6', 'the claims are there after a crash');

$node->stop;
done_testing();
