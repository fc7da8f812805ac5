# PgAsyncTest: what the TAP tests of pg_async share.
#
#   use FindBin;
#   use lib $FindBin::RealBin;
#   use PgAsyncTest;
#
#   my $node = pg_async_node('name', workers => 2, conf => 'restart_after_crash = on');
#   ok(wait_for_workers($node, 2), 'workers start');
#   ok(wait_for_running($node, 'event-1'), 'its handler runs');
package PgAsyncTest;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;

our @EXPORT =
  qw(pg_async_node wait_for_workers wait_for_running record_given_back server_pg_config
  create_timed_commit);

# pg_async_node returns a new cluster, started, with pg_async preloaded.
#   database  pg_async.database (default 'postgres')
#   databases pg_async.databases instead ('*', or a list), with no
#             pg_async.database
#   workers   pg_async.workers (default 2)
#   preload   shared_preload_libraries (default 'pg_async')
#   conf      more lines for postgresql.conf
#   allows_streaming  passed to init: the cluster can have standbys
# The extension itself is left to the test to create.
sub pg_async_node
{
	my ($name, %opt) = @_;
	my $database = $opt{database} // 'postgres';
	my $workers = $opt{workers} // 2;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(allows_streaming => $opt{allows_streaming});
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = '" . ($opt{preload} // 'pg_async') . "'\n"
		  . (defined $opt{databases}
			? "pg_async.databases = '$opt{databases}'\n"
			: "pg_async.database = '$database'\n")
		  . "pg_async.workers = $workers\n"
		  . ($opt{conf} // ''));
	$node->start;
	return $node;
}

# wait_for_workers waits until n workers serve database (default 'postgres');
# false if they never do.
sub wait_for_workers
{
	my ($node, $n, $database) = @_;
	return $node->poll_query_until($database // 'postgres',
		"SELECT count(*) = $n FROM async.workers");
}

# wait_for_running waits until a worker runs the handler of event_id in
# database (default 'postgres'); false if none does.
sub wait_for_running
{
	my ($node, $event_id, $database) = @_;
	return $node->poll_query_until($database // 'postgres',
		"SELECT count(*) = 1 FROM async.workers WHERE event_id = '$event_id'");
}

# record_given_back makes a trigger copy into a new table public.<table>
# (LIKE async.jobs) each job of function (of any function if undef) that
# goes from running back to queued in database postgres: a job given back
# uncharged by a claim or a batch that overran, as it happens.  A job queued
# back in a wrong state would be mended by the workers' sweep seconds later,
# so the end state alone cannot show it.  The trigger is named <table>:
# DROP TRIGGER <table> ON async.jobs ends the recording.
sub record_given_back
{
	my ($node, $table, $function) = @_;
	my $only = defined $function ? " AND NEW.function = '$function'" : '';

	$node->safe_psql('postgres', qq{
CREATE TABLE public.$table (LIKE async.jobs);
CREATE FUNCTION public.${table}_note() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	INSERT INTO public.$table SELECT NEW.*;
	RETURN NULL;
END \$\$;
CREATE TRIGGER $table AFTER UPDATE ON async.jobs FOR EACH ROW
	WHEN (OLD.state = 'running' AND NEW.state = 'queued'$only)
	EXECUTE FUNCTION public.${table}_note();
});
	return;
}

# server_pg_config returns a pg_config value (BINDIR, PKGLIBDIR, ...) of the
# installation that node's server runs from, whatever pg_config PATH finds.
sub server_pg_config
{
	my ($node, $name) = @_;
	return $node->safe_psql('postgres',
		"SELECT setting FROM pg_catalog.pg_config WHERE name = '$name'");
}

# create_timed_commit creates, in database postgres, the procedure
# public.timed_commit(INOUT ms float8): it commits the caller's transaction
# (from inside a procedure) and returns how many milliseconds the commit
# took, for the tests of which commits wait for their WAL flush.
sub create_timed_commit
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
CREATE PROCEDURE public.timed_commit(INOUT ms float8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
	t timestamptz := clock_timestamp();
BEGIN
	COMMIT;
	ms := extract(epoch FROM clock_timestamp() - t) * 1000;
END $$;
});
	return;
}

1;
