# A fuzz pass over every SQL entry point a non-superuser may reach:
#
# - each function in schema async that the role may EXECUTE, called with
#   extreme and random values of each argument's type, positionally and by
#   name with defaulted arguments left out (found in pg_proc, so new entry
#   points and changed signatures are fuzzed without an edit here);
# - every table and view of schema async through the privileges the role
#   has on it (SELECT, INSERT and UPDATE of the columns it may write, DELETE,
#   TRUNCATE), found in the catalogs too;
# - a sweep that gives each argument of each function every value of its
#   type's pool in turn, the others plain, on a registration of the
#   attacker's whose jobs then fail and succeed, so that the workers
#   compute with every setting that gets accepted.
#
# Then the server must still serve, no pg_async process may have exited,
# another role's jobs, dead letters, registrations and counters must be all
# there and unchanged, its views must answer, and its jobs must run.
#
# The seed is printed; PG_ASYNC_FUZZ_SEED=N runs other calls,
# PG_ASYNC_FUZZ_CALLS=N sets the random calls per function (default 40).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use PgAsyncTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $seed = $ENV{PG_ASYNC_FUZZ_SEED} // 20261204;
my $calls_per_function = $ENV{PG_ASYNC_FUZZ_CALLS} // 40;
srand($seed);
note("fuzz seed $seed (PG_ASYNC_FUZZ_SEED=$seed reruns these calls)");
my $started = time();

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
CREATE FUNCTION victim.fail(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'victim fails';
END $$;
-- EXECUTE on a handler is the right to enqueue for it: the victim's are its own
REVOKE EXECUTE ON FUNCTION victim.work(jsonb), victim.fail(jsonb) FROM PUBLIC;
SELECT async.register('victim.work(jsonb)', name => 'victim_work');
SELECT async.register('victim.work(jsonb)', name => 'victim_held');
SELECT async.register('victim.fail(jsonb)', name => 'victim_dead', max_attempts => 1);
SELECT async.pause('victim_held');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'victim_held', 'held-' || i, jsonb_build_object('card', 4000 + i) FROM generate_series(1, 20) i;
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'victim_work', 'work-' || i, '{}' FROM generate_series(1, 5) i;
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'victim_dead', 'dead-' || i, jsonb_build_object('n', i) FROM generate_series(1, 3) i;
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
SELECT async.register('attacker.h(jsonb)', name => 'attacker_sweep');
RESET ROLE;
});
ok(wait_for_workers($node, 2), 'two workers start');
ok( $node->poll_query_until('postgres', q{
SELECT (SELECT count(*) FROM async.jobs WHERE function = 'victim_work' AND state = 'succeeded') = 5
   AND (SELECT count(*) FROM async.dead_letters WHERE function = 'victim_dead') = 3
   AND (SELECT succeeded = 5 FROM async.function_stats WHERE function = 'victim_work')
   AND (SELECT dead_lettered = 3 FROM async.function_stats WHERE function = 'victim_dead')}),
	"victim's runnable jobs run and its failing ones are dead-lettered");

# What the attacker must leave as it is: the victim's held jobs, dead
# letters, registrations, and the counters of its functions that have no
# work to do while the fuzz runs.
my %victim_state = (
	'held jobs' => q{
SELECT count(*) || ' ' || md5(string_agg(concat_ws('|', event_id, function, payload,
		run_at, attempts, state), ',' ORDER BY event_id))
  FROM async.jobs WHERE function = 'victim_held' AND enqueued_by = 'victim'::regrole},
	'dead letters' => q{
SELECT count(*) || ' ' || md5(string_agg(concat_ws('|', job_id, event_id, function, payload,
		attempts, reason, enqueued_by, dead_at), ',' ORDER BY event_id))
  FROM async.dead_letters WHERE enqueued_by = 'victim'::regrole},
	'registrations' => q{
SELECT count(*) || ' ' || md5(string_agg(f::text, ',' ORDER BY name))
  FROM async.functions f WHERE name LIKE 'victim%'},
	'counters' => q{
SELECT string_agg(s.function || ' ' || (SELECT string_agg(k || '=' || v, ' ' ORDER BY k)
		FROM jsonb_each_text(to_jsonb(s)) e(k, v)
	   WHERE k NOT LIKE '%\_ms' AND k NOT IN ('function', 'stats_reset')), '; ' ORDER BY s.function)
  FROM async.function_stats s WHERE s.function IN ('victim_held', 'victim_dead')});
my %victim_before = map { $_ => $node->safe_psql('postgres', $victim_state{$_}) } keys %victim_state;
note("victim before the fuzz: $_: $victim_before{$_}") foreach sort keys %victim_before;

# and more runnable jobs, that run while the fuzz goes on
$node->safe_psql('postgres', q{
SET ROLE victim;
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'victim_work', 'during-' || i, '{}' FROM generate_series(1, 20) i});

my $pids_sql = q{
SELECT string_agg(backend_type || ':' || pid, ',' ORDER BY pid) FROM pg_stat_activity
 WHERE backend_type IN ('pg_async worker', 'pg_async launcher')};
my $pids_before = $node->safe_psql('postgres', $pids_sql);
my $log_offset = -s $node->logfile;

# ---------------------------------------------------------------------------
# Values of each type, as SQL expressions.  Large ones are built by the
# server, so that the statements stay short (and on one line each).
# ---------------------------------------------------------------------------
my @names = ("'attacker_fn'", "'attacker_fn2'", "'attacker_sweep'", "'victim_work'",
	"'victim_held'", "'victim_dead'", "'no_such_fn'", "''", "repeat('n', 127)",
	"repeat('n', 128)", "repeat('é', 100)", "repeat('n', 100000)");
my %pool = (
	'text' => [ @names, "'held-1'", "'work-1'", "'dead-1'", "'x'", "' '", "repeat('x', 1000000)",
		"repeat('x', 10000000)", "E'a\\\\b\"c''d'", "E'\\\\x00\\\\u0000'", "chr(1) || chr(127)",
		q{'''); DROP TABLE victim.t; --'}, q{'true) EXECUTE FUNCTION attacker.h(); --'},
		"'NEW.id > 0'", "'exhausted'", "'expired'", "'1 hour'", "'victim.work(jsonb)'",
		"'pg_catalog.pg_sleep(float8)'", "'%s%n'" ],
	'jsonb' => [ "'{}'", "'null'", "'[]'", "'0'", "'{\"fail\": \"yes\"}'", "'\"s\"'",
		"repeat('[', 5000) || repeat(']', 5000)",
		"(repeat('{\"a\":', 1000) || '1' || repeat('}', 1000))",
		"(SELECT jsonb_object_agg(i::text, repeat('v', 100)) FROM generate_series(1, 20000) i)",
		"jsonb_build_object('fail', repeat('f', 2000000))",
		"jsonb_build_object('big', repeat('b', 10000000))",
		"'{\"fail\": null, \"\\\\u0000\": 1}'" ],
	'interval' => [ "'300000 years'", "'-178000000 years'", "'1 microsecond'", "'0'",
		"'1 day'", "'30 days'", "'31 days'", "'-1 second'", "'2147483647 days'",
		"'2147483647 months'", "'-2147483648 days -2147483648 months'", "'1 day -25 hours'",
		"'6 hours'", "'100000000 hours'" ],
	'interval[]' => [ "'{300000 years}'", "'[0:1]={1 hour,2 hours}'", "'[-5:-4]={0,0}'",
		"'{{1 second},{2 seconds}}'", "'{0,0}'", "'{1 minute,-1 second}'",
		"'{1 second,NULL,300000 years}'", "'[2147483647:2147483647]={1 hour}'" ],
	'integer' => [ "0", "-1", "1", "2", "100", "101", "2147483647", "-2147483648" ],
	'smallint' => [ "0", "-1", "1", "32767", "-32768" ],
	'bigint' => [ "0", "-1", "1", "9223372036854775807", "-9223372036854775808" ],
	'double precision' => [ "0", "-1", "1e308", "'NaN'", "'Infinity'", "'-Infinity'", "1e-308" ],
	'numeric' => [ "0", "-1", "'NaN'", "1e1000", "'Infinity'" ],
	'timestamp with time zone' => [ "'infinity'", "'-infinity'", "'4713-01-01 00:00 BC'",
		"'294276-12-31 23:59:59'", "now()", "now() - interval '1 hour'",
		"now() + interval '1 second'", "'epoch'" ],
	'regprocedure' => [ "'attacker.h(jsonb)'", "'attacker.h2(jsonb,async.context)'",
		"'victim.work(jsonb)'", "'victim.fail(jsonb)'", "'pg_catalog.pg_sleep(float8)'",
		"'pg_catalog.jsonb_pretty(jsonb)'", "'pg_catalog.pg_terminate_backend(integer,bigint)'",
		"'async.register(regprocedure,text,integer,interval[],interval,regrole,interval,integer,text,text)'",
		"'-'", "0" ],
	'regclass' => [ "'attacker.t'", "'victim.t'", "'async.jobs'", "'async.functions'",
		"'pg_catalog.pg_class'", "'pg_catalog.pg_authid'", "'-'", "0" ],
	'regrole' => [ "'attacker'", "'victim'", "'postgres'", "'pg_monitor'",
		"'pg_read_server_files'", "'-'", "0" ],
	'boolean' => [ "true", "false" ],
	'text[]' => [ "'{INSERT}'", "'{insert,update,delete}'", "'{TRUNCATE}'", "'[0:0]={UPDATE}'",
		"'{{INSERT},{DELETE}}'" ],
	'bytea' => [ "'\\x00'", "''", "'\\x616200'", "decode(repeat('00', 1000000), 'hex')" ]);
# types that share another's values
$pool{$_->[0]} = $pool{ $_->[1] } foreach (
	[ 'character varying', 'text' ], [ 'name', 'text' ], [ 'character', 'text' ],
	[ 'json', 'jsonb' ], [ 'real', 'double precision' ], [ 'oid', 'bigint' ]);
# values of any type without a pool of its own, for composites and new types
my @any_values = ("''", "'()'", "'(,)'", "'{}'", "'0'", "'-1'");

# a value of type, without the huge ones: what arrays are filled with
sub small_value
{
	my ($type) = @_;
	my @small = grep { !/\d{6,}|generate_series|repeat\('\[', 5000\)/ } @{ $pool{$type} };
	return undef unless @small;
	return '(' . $small[ int(rand(@small)) ] . ")::$type";
}

# every value to try for type, NULL first
sub values_of
{
	my ($type) = @_;
	my @v = ("NULL::$type");
	if ($type =~ /^(.*)\[\]$/)
	{
		my $elem = $1;
		push @v, map { "($_)::$type" } @{ $pool{$type} // [] };
		push @v, "'{}'::$type", "ARRAY[NULL]::$type";
		if ($pool{$elem})
		{
			my ($e1, $e2) = (small_value($elem), small_value($elem));
			push @v, "ARRAY[$e1, NULL, $e2]::$type",
			  "array_fill($e1, ARRAY[10000])::$type",         # huge
			  "array_fill($e1, ARRAY[2], ARRAY[0])::$type",   # lower bound 0
			  "array_fill($e1, ARRAY[2], ARRAY[-2147483647])::$type",
			  "array_fill($e1, ARRAY[2,2])::$type",           # two dimensions
			  "array_fill($e1, ARRAY[1,1,1,1,1,1])::$type";   # six
		}
	}
	elsif ($pool{$type})
	{
		push @v, map { "($_)::$type" } @{ $pool{$type} };
	}
	else
	{
		push @v, map { "($_)::$type" } @any_values;
	}
	return @v;
}

# a random value of type: NULL one time in eight
sub pick
{
	my ($type) = @_;
	my @v = values_of($type);
	return rand() < 0.125 ? $v[0] : $v[ 1 + int(rand(@v - 1)) ];
}

# ---------------------------------------------------------------------------
# The entry points: every function the attacker may call, with its input
# arguments' types and names and how many have defaults.
# ---------------------------------------------------------------------------
my @functions;
foreach my $row (split /\n/, $node->safe_psql('postgres', q{
SELECT p.proname, p.prokind, p.pronargdefaults, p.provariadic <> 0,
	   (SELECT coalesce(string_agg(format_type(t, NULL), ';' ORDER BY n), '')
		  FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, n)),
	   array_to_string(p.proargnames, ';', ''),
	   array_to_string(p.proargmodes::text[], ';', '')
  FROM pg_proc p
 WHERE p.pronamespace = 'async'::regnamespace
   AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
   AND p.prokind IN ('f', 'p', 'a')
   AND has_function_privilege('attacker', p.oid, 'EXECUTE')
 ORDER BY p.proname, p.oid}))
{
	my ($name, $kind, $ndefaults, $variadic, $types, $argnames, $modes) = split /\|/, $row, -1;
	my @types = $types eq '' ? () : split /;/, $types, -1;
	my @allnames = split /;/, $argnames, -1;
	my @modes = $modes eq '' ? ('i') x @allnames : split /;/, $modes, -1;
	# the names of the input arguments, in order
	my @names = map { $allnames[$_] // '' } grep { $modes[$_] =~ /[ibv]/ } 0 .. $#modes;
	push @functions, {
		name => $name, kind => $kind, types => \@types, names => \@names,
		required => scalar(@types) - $ndefaults, variadic => $variadic eq 't',
		label => "$name(" . join(',', @types) . ')' };
}
cmp_ok(scalar(@functions), '>=', 15, 'the attacker may call ' . scalar(@functions) . ' functions');
note('functions: ' . join(' ', map { $_->{label} } @functions));

# the SQL of a call of f with the given arguments: an entry per input
# argument, the value or undef to leave a defaulted argument out
sub call_sql
{
	my ($f, @args) = @_;
	my @out;
	my $named = 0;
	for my $i (0 .. $#args)
	{
		if (!defined $args[$i])
		{
			$named = 1;
			next;
		}
		my $v = $args[$i];
		$v = "VARIADIC $v" if $f->{variadic} && $i == $#args && !$named;
		# after an argument left out, the others go by name
		if ($named && $f->{names}[$i] ne '')
		{
			push @out, "\"$f->{names}[$i]\" => $args[$i]";
		}
		elsif ($named)
		{
			return undef;    # cannot leave out an argument before an unnamed one
		}
		else
		{
			push @out, $v;
		}
	}
	return ($f->{kind} eq 'p' ? 'CALL' : 'SELECT') . " async.\"$f->{name}\"(" . join(', ', @out) . ');';
}

# statements as [label, sql], each run on its own as the attacker
my (@random, @sweep);

foreach my $f (@functions)
{
	my @types = @{ $f->{types} };
	my $made = 0;
	while ($made < $calls_per_function)
	{
		# half the calls give every argument, half leave out defaulted ones
		my $omit = rand() < 0.5 ? 0 : 0.4;
		my @args = map { $_ >= $f->{required} && rand() < $omit ? undef : pick($types[$_]) }
		  0 .. $#types;
		my $sql = call_sql($f, @args);
		next unless defined $sql;
		push @random, [ $f->{label}, $sql ];
		$made++;
	}
}

# the tables and views, through every privilege the attacker has on them
my @relations = map { [ split /\|/, $_, -1 ] } split /\n/, $node->safe_psql('postgres', q{
SELECT c.oid::regclass,
	   has_table_privilege('attacker', c.oid, 'SELECT'),
	   has_table_privilege('attacker', c.oid, 'DELETE'),
	   has_table_privilege('attacker', c.oid, 'TRUNCATE'),
	   (SELECT string_agg(quote_ident(a.attname) || ':' || format_type(a.atttypid, NULL), ';' ORDER BY a.attnum)
		  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
	   (SELECT string_agg(quote_ident(a.attname), ';' ORDER BY a.attnum)
		  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		   AND has_column_privilege('attacker', c.oid, a.attnum, 'INSERT')),
	   (SELECT string_agg(quote_ident(a.attname), ';' ORDER BY a.attnum)
		  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		   AND has_column_privilege('attacker', c.oid, a.attnum, 'UPDATE'))
  FROM pg_class c
 WHERE c.relnamespace = 'async'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
   AND (has_any_column_privilege('attacker', c.oid, 'SELECT, INSERT, UPDATE')
		OR has_table_privilege('attacker', c.oid, 'DELETE, TRUNCATE'))
 ORDER BY 1});
my @readable;
foreach my $r (@relations)
{
	my ($rel, $select, $delete, $truncate, $columns, $insert, $update) = @$r;
	my %type_of = map { split /:/, $_, 2 } split /;/, $columns;
	my @columns = map { (split /:/, $_, 2)[0] } split /;/, $columns;
	my @insert = split /;/, $insert;
	my @update = split /;/, $update;
	my $predicate = sub {
		return 'true' if rand() < 0.3;
		my $c = $columns[ int(rand(@columns)) ];
		return "$c = " . pick($type_of{$c});
	};
	my @privileges = (($select eq 't' ? 'SELECT' : ()),
		(@insert ? 'INSERT (' . join(',', @insert) . ')' : ()),
		(@update ? 'UPDATE (' . join(',', @update) . ')' : ()),
		($delete eq 't' ? 'DELETE' : ()), ($truncate eq 't' ? 'TRUNCATE' : ()));
	note("$rel: the attacker may " . join(', ', @privileges));
	if ($select eq 't')
	{
		push @readable, $rel;
		push @random, [ "SELECT $rel", "SELECT count(*) FROM (SELECT * FROM $rel WHERE " . $predicate->() . ') s;' ]
		  for 1 .. 10;
	}
	for (1 .. ($calls_per_function * 2))
	{
		last unless @insert;
		my @cols = grep { rand() < 0.7 } @insert;
		@cols = ($insert[ int(rand(@insert)) ]) unless @cols;
		push @random, [ "INSERT $rel",
			"INSERT INTO $rel (" . join(', ', @cols) . ') VALUES ('
			  . join(', ', map { pick($type_of{$_}) } @cols) . ');' ];
	}
	for (1 .. $calls_per_function)
	{
		last unless @update;
		my $c = $update[ int(rand(@update)) ];
		push @random, [ "UPDATE $rel", "UPDATE $rel SET $c = " . pick($type_of{$c})
			  . ' WHERE ' . $predicate->() . ';' ];
	}
	if ($delete eq 't')
	{
		push @random, [ "DELETE $rel", "DELETE FROM $rel WHERE " . $predicate->() . ';' ]
		  for 1 .. 10;
	}
	push @random, [ "TRUNCATE $rel", "TRUNCATE $rel;" ] if $truncate eq 't';
}

# in a random order
for (my $i = $#random; $i > 0; $i--)
{
	my $j = int(rand($i + 1));
	@random[ $i, $j ] = @random[ $j, $i ];
}

# The sweep: each argument of each function gets every value of its pool
# in turn; required arguments are plain, and defaulted ones left out but
# for a registration's name, so that settings land on attacker_sweep.
# Each call is followed by a job of attacker_sweep that fails and one that
# succeeds, for the workers to run with whatever the call left.
my %plain = (
	'text' => "'attacker_sweep'", 'regprocedure' => "'attacker.h(jsonb)'",
	'jsonb' => "'{\"fail\": \"sweep\"}'", 'regclass' => "'attacker.t'", 'regrole' => "'attacker'");
my @jobs = ([ 'sweep jobs', q{INSERT INTO async.jobs (function, payload) VALUES ('attacker_sweep', '{"fail": "sweep"}'), ('attacker_sweep', '{}');} ]);
foreach my $f (@functions)
{
	my @types = @{ $f->{types} };
	# a fresh registration to start from
	push @sweep, [ 'sweep reset', q{SELECT async.register('attacker.h(jsonb)', name => 'attacker_sweep');} ],
	  [ 'sweep reset', q{SELECT async.resume('attacker_sweep');} ];
	foreach my $k (0 .. $#types)
	{
		foreach my $v (values_of($types[$k]))
		{
			my @args = map {
				$_ == $k ? $v
				  : $_ < $f->{required} ? ($plain{ $types[$_] } ? "($plain{$types[$_]})::$types[$_]" : "NULL::$types[$_]")
				  : $f->{names}[$_] =~ /^(name|function)$/ ? "('attacker_sweep')::$types[$_]"
				  : undef
			} 0 .. $#types;
			my $sql = call_sql($f, @args);
			push @sweep, [ $f->{label}, $sql ], @jobs if defined $sql;
		}
	}
}

# ---------------------------------------------------------------------------
# Run them all, one statement a line, as the attacker; psql names the line
# of each error, which tells the statement that raised it.
# ---------------------------------------------------------------------------
my @statements = (@random, @sweep);
my $timeout = $ENV{PG_ASYNC_FUZZ_TIMEOUT} // '1s';
my @header = ("SET statement_timeout = '$timeout';", '\set VERBOSITY sqlstate',
	'\echo fuzz start');
my $script = join("\n", @header, (map { $_->[1] } @statements), '\echo fuzz end') . "\n";
my ($stdout, $stderr) = ('', '');
my $fuzz_started = time();
$node->psql('postgres', $script,
	stdout => \$stdout, stderr => \$stderr,
	extra_params => [ '-U', 'attacker' ], on_error_stop => 0);
my $fuzz_seconds = time() - $fuzz_started;

my (%by_label, %by_sqlstate, @internal);
$by_label{ $_->[0] }{calls}++ foreach @statements;
while ($stderr =~ /^psql:[^:]*:(\d+): ERROR:\s+(\w{5})/mg)
{
	my ($line, $sqlstate) = ($1, $2);
	my $s = $statements[ $line - @header - 1 ] or next;
	$by_label{ $s->[0] }{$sqlstate}++;
	$by_sqlstate{$sqlstate}++;
	push @internal, "$sqlstate from $s->[1]" if $sqlstate =~ /^XX/;
}
my $errors = 0;
$errors += $_ foreach values %by_sqlstate;
note(sprintf('%d statements in %.1f s, %d errors by SQLSTATE: %s', scalar(@statements),
	$fuzz_seconds, $errors, join(' ', map { "$_=$by_sqlstate{$_}" } sort keys %by_sqlstate)));
foreach my $label (sort keys %by_label)
{
	my $h = $by_label{$label};
	note(sprintf('  %-60s %4d calls: %s', $label, $h->{calls},
		join(' ', map { "$_=$h->{$_}" } grep { $_ ne 'calls' } sort keys %$h) || 'no errors'));
}

like($stdout, qr/fuzz end/, 'the fuzz session ran to its last statement')
  or diag('psql stopped; its last words: ' . substr($stderr, -2000));
is(scalar(@internal), 0, 'no internal error (XX...)')
  or diag(join("\n", map { substr($_, 0, 400) } @internal));

# let the workers run what the attacker got enqueued, with whatever
# registrations were accepted
$node->psql('postgres', "SELECT async.wait_idle('20 seconds')");

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server still serves');
is($node->safe_psql('postgres', $pids_sql), $pids_before,
	'no pg_async worker or launcher exited');

# the exits in the server log, each with the last errors of its process;
# line by line, as the log holds lines of megabytes
my (@exits, %errors_of);
open(my $log, '<', $node->logfile) or die "cannot open the server log: $!";
seek($log, $log_offset, 0);
while (my $line = <$log>)
{
	if ($line =~ /^[^\[]{0,60}\[(\d+)\] (?:\S+ )?(?:ERROR|FATAL|PANIC):/)
	{
		my $e = $errors_of{$1} //= [];
		push @$e, substr($line, 0, 300) =~ s/\n?$/\n/r;
		shift @$e while @$e > 2;
	}
	if ($line =~ /background worker "(pg_async (?:worker|launcher))" \(PID (\d+)\) (?:exited with exit code|was terminated by signal)|server process \(PID (\d+)\) was terminated by signal|PANIC:|TRAP:/)
	{
		my $pid = $2 // $3;
		push @exits, join('', substr($line, 0, 300) =~ s/\n?$/\n/r,
			map { "    last error of PID $pid: $_" } @{ $errors_of{ $pid // '' } // [] });
	}
}
close($log);
is(scalar(@exits), 0, 'the server log shows no pg_async process exit and no crash')
  or diag(scalar(@exits) . " exits; the first:\n" . join('', @exits[ 0 .. ($#exits < 5 ? $#exits : 5) ]));

foreach my $what (sort keys %victim_state)
{
	is($node->safe_psql('postgres', $victim_state{$what}), $victim_before{$what},
		"victim's $what are unchanged by the attacker");
}
foreach my $rel (@readable)
{
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE victim; SELECT count(*) FROM $rel");
	is($rc, 0, "$rel still answers the victim") or diag($err);
}
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 20 FROM async.jobs WHERE event_id LIKE 'during-%' AND state = 'succeeded'
   AND enqueued_by = 'victim'::regrole}),
	"victim's jobs enqueued before the fuzz ran");
$node->safe_psql('postgres', "SET ROLE victim; SELECT async.resume('victim_held')");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 20 FROM async.jobs WHERE function = 'victim_held' AND state = 'succeeded'"
		  . " AND enqueued_by = 'victim'::regrole"),
	"victim's held jobs run once resumed");

note(sprintf('fuzz seed %d; the whole test took %.1f s', $seed, time() - $started));
$node->stop;
done_testing();
