#!/usr/bin/env bash
# test/demo.sh: see pg_async work, from nothing.
#
# Installs the Debian packages it needs, builds and installs pg_async, starts
# a throwaway PostgreSQL cluster in a temporary directory with pg_async
# preloaded, runs test/demo.sql against it with psql (every statement is
# echoed before its result), then stops the cluster and removes the
# directory, whatever happened.
#
#   sudo test/demo.sh          (or as root)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

ensure_packages
build_and_install "$src"

# A port that no local server answers on; the socket lives in the temporary
# directory and the cluster listens on no TCP address, so this only keeps the
# demo clear of servers that share the default socket directories.
port=
for try in $(seq 0 99); do
	p=$((54321 + ($$ + try) % 1000))
	answered=0
	for host in /var/run/postgresql /tmp localhost; do
		rc=0
		"$PG_BIN/pg_isready" -q -h "$host" -p "$p" -t 2 || rc=$?
		# 2 means no response; 0, 1 and 3 mean something is there or odd
		[ "$rc" -eq 2 ] || { answered=1; break; }
	done
	if [ "$answered" -eq 0 ]; then
		port=$p
		break
	fi
done
[ -n "$port" ] || { echo "demo: no free port found" >&2; exit 1; }

tmp=$(mktemp -d /tmp/pg_async_demo.XXXXXX)
chmod 700 "$tmp"
[ "$(id -un)" = "$RUN_USER" ] || chown "$RUN_USER" "$tmp"
data=$tmp/data
log=$tmp/server.log

cleanup() {
	local rc=$?
	if [ -f "$data/postmaster.pid" ]; then
		as_user "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$log" ]; then
		echo "== demo failed; end of the server log:"
		tail -n 40 "$log"
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT

echo "== creating a throwaway cluster in $tmp (port $port)"
as_user "$PG_BIN/initdb" -D "$data" -A trust -E UTF8 --locale=C >/dev/null
as_user tee -a "$data/postgresql.conf" >/dev/null <<EOF

# pg_async demo
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $port
shared_preload_libraries = 'pg_async'
pg_async.database = 'postgres'
pg_async.workers = 2
EOF
as_user "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w start >/dev/null

# the cluster user must be able to read the script
cp "$src/test/demo.sql" "$tmp/demo.sql"
[ "$(id -un)" = "$RUN_USER" ] || chown "$RUN_USER" "$tmp/demo.sql"

echo "== running test/demo.sql"
echo
as_user "$PG_BIN/psql" -X -h "$tmp" -p "$port" -d postgres \
	-v ON_ERROR_STOP=1 --echo-all -f "$tmp/demo.sql"
echo
echo "== demo finished; stopping and removing the cluster"
