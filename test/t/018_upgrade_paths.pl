# ALTER EXTENSION pg_async UPDATE from every earlier version ends with what
# a new installation makes, compared fact by fact (test/schema_facts.sql):
# each version pg_available_extension_versions offers is installed in a
# database of its own and updated.  test/sql/upgrade.sql does the same from
# 0.1 with data in the tables; this covers the other starting points.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $facts_sql = slurp_file("$FindBin::RealBin/../schema_facts.sql");

# no worker serves these databases: the updates run alone
my $node = pg_async_node('paths', database => 'none');

# facts_of returns the facts of pg_async's installation in database db
sub facts_of
{
	my ($db) = @_;
	$node->safe_psql($db, $facts_sql);
	my %facts = map { $_ => 1 } split /\x1e/,
	  $node->safe_psql($db,
		"SELECT string_agg(fact, E'\\x1e' ORDER BY fact) FROM public.schema_facts");
	return \%facts;
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'SET client_min_messages = error; CREATE EXTENSION pg_async');
my $default = $node->safe_psql('fresh',
	"SELECT extversion FROM pg_extension WHERE extname = 'pg_async'");
my $fresh = facts_of('fresh');
cmp_ok(scalar keys %$fresh, '>', 300, "a new installation of $default has its facts");

my @versions = split /\n/, $node->safe_psql('postgres', q{
SELECT version FROM pg_available_extension_versions
 WHERE name = 'pg_async' AND version <> (SELECT default_version FROM pg_available_extensions
                                          WHERE name = 'pg_async')
 ORDER BY string_to_array(version, '.')::int[]});
cmp_ok(scalar @versions, '>=', 4, 'earlier versions: ' . join(' ', @versions));

foreach my $v (@versions)
{
	(my $db = "from_$v") =~ tr/./_/;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db,
		"SET client_min_messages = error; CREATE EXTENSION pg_async VERSION '$v'");
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_async'"),
		$v, "$v installs");
	$node->safe_psql($db, 'SET client_min_messages = error; ALTER EXTENSION pg_async UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_async'"),
		$default, "$v updates to $default");
	my $updated = facts_of($db);
	my @only_updated = sort grep { !$fresh->{$_} } keys %$updated;
	my @only_fresh = sort grep { !$updated->{$_} } keys %$fresh;
	is_deeply(\@only_updated, [], "from $v: nothing that a new installation lacks");
	is_deeply(\@only_fresh, [], "from $v: nothing missing that a new installation has");
}

$node->stop;
done_testing();
