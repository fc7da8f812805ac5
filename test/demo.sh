#!/usr/bin/env bash
# test/demo.sh: see pg_async work, from nothing.
#
# Installs the Debian packages it needs, builds and installs pg_async, starts
# a throwaway PostgreSQL cluster in a temporary directory with pg_async
# preloaded, runs test/demo.sql against it with psql (every statement is
# echoed before its result), then stops the cluster and removes the
# directory, whatever happened.
#
#   test/demo.sh     (as root, or as a user it runs sudo for)
#   test/demo.sh --installed     against the pg_async installed already
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"

# --installed: run against the pg_async installed already (from its Debian
# package, say), building and installing nothing
case "${1:-}" in
	"") ensure_packages; build_and_install "$src" ;;
	--installed) ;;
	*) echo "usage: test/demo.sh [--installed]" >&2; exit 2 ;;
esac

throwaway_cluster demo 54321

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
