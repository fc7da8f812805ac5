#!/usr/bin/env bash
# test/bench/run.sh: reproduce the benchmark figures of pg_async.
#
# Installs the Debian packages it needs, builds and installs pg_async (and
# builds test/bench/pg_async_bench), starts a throwaway PostgreSQL cluster in
# a temporary directory with pg_async preloaded and every setting written
# into postgresql.conf (and echoed), runs the benchmark program, then stops
# the cluster and removes the directory, whatever happened.
#
#   test/bench/run.sh [OPTION]... [PG_ASYNC_BENCH OPTION]...
#
#   --quick            every scenario scaled down, for smoke tests
#   --json             results as one JSON object on stdout
#   --scenario NAME    drain, enqueue, latency, mixed, backlog, soak, held,
#                      held-xmin, priorities, keys or all
#                      (repeatable or comma-separated; default all)
#   --workers N        pg_async.workers (default 2)
#   --batch-size N     pg_async.batch_size (default 1000, the server default)
#   --synchronous-commit on|off
#                      pg_async.synchronous_commit, the workers' own (default
#                      on: they commit as synchronous_commit = on says)
#   --no-install       do not build and install pg_async: use the one
#                      installed already (the program is still built)
#   --pg-bin DIR       run the cluster with the PostgreSQL binaries in DIR
#                      (default: those of the PostgreSQL test/lib.sh picks,
#                      PG_CONFIG's, else Debian's of PG_MAJOR, else this
#                      machine's version), for example a relocated copy with
#                      another pg_async build in it; usually with --no-install
#
# Every other option goes to pg_async_bench (see its --help), for example
#   test/bench/run.sh --scenario drain -n 500000
#
# Only the results go to stdout; everything else goes to stderr, so that
#   test/bench/run.sh --json > results.json
# writes valid JSON.
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"

workers=2
batch_size=1000
worker_sync=on
install=1
pg_bin=
bench_args=()
while [ $# -gt 0 ]; do
	case "$1" in
		--workers) workers=$2; shift 2 ;;
		--workers=*) workers=${1#*=}; shift ;;
		--batch-size) batch_size=$2; shift 2 ;;
		--batch-size=*) batch_size=${1#*=}; shift ;;
		--synchronous-commit) worker_sync=$2; shift 2 ;;
		--synchronous-commit=*) worker_sync=${1#*=}; shift ;;
		--no-install) install=0; shift ;;
		--pg-bin) pg_bin=$2; shift 2 ;;
		--pg-bin=*) pg_bin=${1#*=}; shift ;;
		-h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
		*) bench_args+=("$1"); shift ;;
	esac
done
case "$workers$batch_size" in
	*[!0-9]*) echo "run.sh: --workers and --batch-size take numbers" >&2; exit 2 ;;
esac
case "$worker_sync" in
	on|off) ;;
	*) echo "run.sh: --synchronous-commit takes on or off" >&2; exit 2 ;;
esac
# room for the launcher, the workers and PostgreSQL's own background workers
max_worker_processes=$((workers + 6 > 8 ? workers + 6 : 8))

{
	ensure_packages
	if [ "$install" -eq 1 ]; then
		build_and_install "$src"
	fi
	echo "== building test/bench/pg_async_bench"
	make -s -C "$src" PG_CONFIG="$PG_CONFIG" test/bench/pg_async_bench
} >&2
bench=$src/test/bench/pg_async_bench
[ -z "$pg_bin" ] || PG_BIN=$pg_bin

throwaway_cluster bench 55432

echo "== creating a throwaway cluster in $tmp (port $port)" >&2
as_user "$PG_BIN/initdb" -D "$data" -A trust -E UTF8 --locale=C >/dev/null
conf=$(cat <<EOF

# pg_async benchmark (test/bench/run.sh)
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $port
shared_preload_libraries = 'pg_async'
pg_async.database = 'postgres'
pg_async.workers = $workers
pg_async.batch_size = $batch_size
pg_async.synchronous_commit = $worker_sync
pg_async.retention = '1d'
pg_async.max_payload_size = '1MB'
max_worker_processes = $max_worker_processes
max_connections = 100
shared_buffers = '256MB'
synchronous_commit = on
fsync = on
full_page_writes = on
wal_level = replica
max_wal_size = '4GB'
checkpoint_timeout = '15min'
autovacuum = on
EOF
)
echo "$conf" | as_user tee -a "$data/postgresql.conf" >/dev/null
echo "== settings added to postgresql.conf:$conf" | sed '/^$/d' >&2
as_user "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w start >/dev/null
as_user "$PG_BIN/psql" -X -q -h "$tmp" -p "$port" -d postgres -v ON_ERROR_STOP=1 \
	-c "CREATE EXTENSION pg_async" >&2
echo "== PostgreSQL: $("$PG_BIN/postgres" --version); machine: $(nproc) CPUs," \
	"$(awk '/MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo) RAM" >&2

echo "== running: pg_async_bench ${bench_args[*]}" >&2
"$bench" -d "host=$tmp port=$port dbname=postgres user=$RUN_USER" "${bench_args[@]}"
echo "== benchmark finished; stopping and removing the cluster" >&2
