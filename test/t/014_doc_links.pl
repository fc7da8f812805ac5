# Every link in README.md, CHANGELOG.md and docs/*.md resolves: a relative
# link names a file or directory of the source tree, and an anchor
# (#section) names a heading of the file it points into, as GitHub makes
# anchors of headings.  Addresses with a scheme (https:, mailto:) are not
# followed: these machines reach no web.  No cluster is needed.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use FindBin;
use Test::More;

my $root = File::Spec->rel2abs("$FindBin::RealBin/../..");
my @files = ('README.md', 'CHANGELOG.md');
opendir(my $dh, "$root/docs") or die "no docs directory in $root: $!";
push @files, map { "docs/$_" } sort grep { /\.md\z/ } readdir($dh);
closedir($dh);

# anchors_of returns the anchors of a Markdown file's headings, outside
# fenced code, as GitHub makes them: lower case, anything but letters,
# digits, '_', '-' and spaces dropped, spaces as '-', repeats numbered.
my %anchor_cache;
sub anchors_of
{
	my ($path) = @_;
	return $anchor_cache{$path} if $anchor_cache{$path};
	my (%anchors, %seen);
	open(my $fh, '<', $path) or die "cannot read $path: $!";
	my $fenced = 0;
	while (my $line = <$fh>)
	{
		if ($line =~ /^\s*```/) { $fenced = !$fenced; next; }
		next if $fenced;
		next unless $line =~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
		my $anchor = lc $1;
		$anchor =~ s/[^\w\- ]//g;
		$anchor =~ tr/ /-/;
		my $n = $seen{$anchor}++;
		$anchors{$n ? "$anchor-$n" : $anchor} = 1;
	}
	close($fh);
	return $anchor_cache{$path} = \%anchors;
}

# links_of returns [line, target] for each inline link of a file, outside
# fenced code and code spans.
sub links_of
{
	my ($path) = @_;
	my @links;
	open(my $fh, '<', $path) or die "cannot read $path: $!";
	my $fenced = 0;
	while (my $line = <$fh>)
	{
		if ($line =~ /^\s*```/) { $fenced = !$fenced; next; }
		next if $fenced;
		$line =~ s/`[^`]*`//g;
		push @links, [ $., $1 ] while $line =~ /\]\(([^)\s]+)\)/g;
	}
	close($fh);
	return @links;
}

my $checked = 0;
foreach my $file (@files)
{
	my $path = "$root/$file";
	ok(-f $path, "$file exists");
	foreach my $link (links_of($path))
	{
		my ($line, $target) = @$link;
		next if $target =~ /^[a-z][a-z0-9+.-]*:/i;
		my ($target_file, $anchor) = split /#/, $target, 2;
		my $dest = $target_file eq ''
		  ? $path
		  : File::Spec->canonpath(dirname($path) . "/$target_file");
		$checked++;
		if (!-e $dest)
		{
			fail("$file:$line: $target: no such file");
			next;
		}
		next unless defined $anchor && $anchor ne '';
		if (-d $dest || $dest !~ /\.md\z/)
		{
			fail("$file:$line: $target: an anchor into a file that is not Markdown");
			next;
		}
		ok(anchors_of($dest)->{$anchor},
			"$file:$line: $target: the heading exists")
		  or diag("headings of $dest: "
			  . join(' ', sort keys %{ anchors_of($dest) }));
	}
}
# the test can fail: the documentation has links, and each was checked
cmp_ok($checked, '>', 20, "$checked links checked");

done_testing();
