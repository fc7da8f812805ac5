# META.json is what PGXN reads from the release zip (make dist): the
# fields its meta spec 1.0.0 requires, versions in the semantic form it
# wants and in step with pg_async.control, a license it knows, and files
# that exist.  No cluster is needed.
use strict;
use warnings;

use FindBin;
use JSON::PP;
use Test::More;

my $root = "$FindBin::RealBin/../..";
open(my $fh, '<', "$root/META.json") or die "cannot read META.json: $!";
my $meta = eval { decode_json(do { local $/; <$fh> }) };
close($fh);
ok(defined $meta, 'META.json is JSON') or diag($@);
$meta //= {};

foreach my $key (qw(name abstract version maintainer license provides meta-spec))
{
	ok(defined $meta->{$key}, "META.json has $key");
}
is($meta->{'meta-spec'}{version}, '1.0.0', 'meta spec 1.0.0');
is($meta->{name}, 'pg_async', 'the distribution is pg_async');

my $semver = qr/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;
like($meta->{version}, $semver, 'the distribution version is semantic');

open($fh, '<', "$root/pg_async.control") or die "cannot read pg_async.control: $!";
my ($default_version) = map { /^default_version\s*=\s*'([^']+)'/ ? $1 : () } <$fh>;
close($fh);
ok(defined $default_version, 'pg_async.control has a default_version');
# PGXN wants three parts; the extension's versions have two
(my $expected = $default_version // '') =~ s/^(\d+\.\d+)$/$1.0/;
is($meta->{version}, $expected, 'the distribution version is default_version');

my $ext = $meta->{provides}{pg_async} // {};
is($ext->{version}, $expected, 'the extension it provides has that version');
ok(-f "$root/$ext->{file}", "its file $ext->{file} exists") if defined $ext->{file};
is($ext->{file}, 'sql/pg_async.sql',
	'its file is the install script of the current version');
ok(-f "$root/$ext->{docfile}", "its docfile $ext->{docfile} exists")
  if defined $ext->{docfile};

# the router, a second extension of the same distribution
open($fh, '<', "$root/pg_async_router.control") or die "cannot read pg_async_router.control: $!";
my ($router_version) = map { /^default_version = '([^']+)'/ ? $1 : () } <$fh>;
close $fh;
my $router = $meta->{provides}{pg_async_router} // {};
is($router->{version}, "$router_version.0", 'it provides pg_async_router, at its control file\'s version');
is($router->{file}, 'sql/pg_async_router.sql', 'whose file is its install script');
ok(-f "$root/$router->{docfile}", "and whose docfile $router->{docfile} exists");

# the licenses of the spec; PostgreSQL's is the project's (LICENSE)
my %licenses = map { $_ => 1 }
  qw(agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd gfdl_1_2
  gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1
  openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted
  unrestricted unknown);
ok($licenses{ $meta->{license} // '' }, 'a license the spec names');
is($meta->{license}, 'postgresql', 'the PostgreSQL License, as in LICENSE');

like($meta->{prereqs}{runtime}{requires}{PostgreSQL} // '', $semver,
	'it names the oldest PostgreSQL it runs on');
ok(($meta->{release_status} // 'stable') =~ /^(stable|testing|unstable)$/,
	'a release status the spec names');

done_testing();
