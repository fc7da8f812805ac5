#!/usr/bin/env bash
# test/abi.sh: a library built for one PostgreSQL version, loaded by a
# server of another, is refused with PostgreSQL's own message, which names
# both versions ("incompatible library ...: version mismatch"), and not by
# the dynamic loader for a symbol that version lacks (see src/compat.h).
#
# It takes the pg_async library that test/run-tests.sh built and installed
# for each version of PG_VERSIONS (on this machine, or in its root), and
# loads each into a throwaway server of every other version.  Versions not
# built yet are left out, and so are pairs where the library needs a newer
# C library than the server's suite has (built in sid, loaded on bookworm):
# a package for that suite would be built against its own.
#
#   test/abi.sh     (as root, or as a user it runs sudo for)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"
. "$src/test/roots.sh"

read -r -a built <<<"$(pg_built_majors)"
if [ ${#built[@]} -lt 2 ]; then
	echo "== fewer than two versions built (${built[*]:-none}): nothing to cross-load"
	exit 0
fi

status=0
for server in "${built[@]}"; do
	bin=/usr/lib/postgresql/$server/bin
	lib=$(pg_prefix "$server")/usr/lib/postgresql/$server/lib
	loads=""
	for other in "${built[@]}"; do
		[ "$other" != "$server" ] || continue
		cp "$(pg_prefix "$other")/usr/lib/postgresql/$other/lib/pg_async.so" "$lib/pg_async_pg$other.so"
		loads="$loads -c \"LOAD 'pg_async_pg$other'\""
	done
	dir=/tmp/pg_async-abi-$server
	out=$(run_as_postgres "$server" "rm -rf $dir && mkdir $dir &&
		$bin/initdb -D $dir/data -A trust >/dev/null &&
		$bin/pg_ctl -D $dir/data -o \"-k $dir -c listen_addresses=''\" -l $dir/log -w start >/dev/null &&
		$bin/psql -X -h $dir -d postgres $loads;
		$bin/pg_ctl -D $dir/data -w stop >/dev/null; rm -rf $dir" 2>&1) || true
	for other in "${built[@]}"; do
		[ "$other" != "$server" ] || continue
		rm -f "$lib/pg_async_pg$other.so"
		if grep -q "incompatible library \".*pg_async_pg$other.so\": version mismatch" <<<"$out" &&
			grep -q "Server is version $server, library is version $other\." <<<"$out"; then
			echo "== the library of $other, loaded by $server: refused, version mismatch"
		elif grep -q "version \`GLIBC_[0-9.]*' not found (required by .*pg_async_pg$other.so)" <<<"$out"; then
			# built in a Debian suite with a newer C library than the
			# server's: no package of that version would be built so
			echo "== the library of $other, loaded by $server: not comparable (built against a newer C library)"
		else
			echo "== the library of $other, loaded by $server: NOT refused with the version mismatch"
			echo "$out"
			status=1
		fi
	done
done
exit $status
