#!/usr/bin/env bash
# test/bench/router.sh: what pg_async_router costs, measured on this machine.
#
# Installs the Debian packages it needs (PL/Proxy among them), builds and
# installs pg_async, starts four throwaway shards that run pg_async and a
# router with pg_async_router in front of them, all on this machine, and
# measures, in alternating rounds of one run:
#
#   - the enqueue rate through the router, one event a call
#     (async.invoke) and in batches (async.invoke_many), against the same
#     calls made on one shard directly;
#   - the drain of the same backlog of no-op jobs on 1, 2 and 4 shards,
#     timed from the resume of the function to async.wait_idle() through
#     the router.
#
# All five servers share this machine's cores: more shards cannot drain
# faster here, and the drains show what routing costs, not what sharding
# gains (docs/scaling.md puts the figures on paper).  The clusters are
# removed at the end, whatever happened.
#
#   test/bench/router.sh [--quick] [--seconds N] [--jobs N] [--rounds N] [--no-install]
#
#   --quick        5 s enqueue rounds, drains of 20,000 jobs, one round each
#   --seconds N    length of each enqueue round (default 10)
#   --jobs N       jobs in each drain (default 100000)
#   --rounds N     rounds of each measurement (default 2)
#   --clients N    pgbench clients in the enqueue rounds (default 2)
#   --no-install   use the pg_async installed already
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"

seconds=10
jobs=100000
rounds=2
clients=2
install=1
while [ $# -gt 0 ]; do
	case "$1" in
		--quick) seconds=5; jobs=20000; rounds=1; shift ;;
		--seconds) seconds=$2; shift 2 ;;
		--jobs) jobs=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--clients) clients=$2; shift 2 ;;
		--no-install) install=0; shift ;;
		-h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
		*) echo "router.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case "$seconds$jobs$rounds$clients" in
	*[!0-9]*) echo "router.sh: --seconds, --jobs, --rounds and --clients take numbers" >&2; exit 2 ;;
esac

{
	ensure_packages
	[ "$install" -eq 0 ] || build_and_install "$src"
} >&2

throwaway_cluster router-bench 56432
nshards=4

# node NAME PORT [PRELOAD]: a cluster in $tmp/NAME, started
node() {
	local dir=$tmp/$1
	as_user "$PG_BIN/initdb" -D "$dir" -A trust -E UTF8 --locale=C >/dev/null
	as_user tee -a "$dir/postgresql.conf" >/dev/null <<EOF
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $2
max_connections = 100
shared_buffers = '128MB'
$3
EOF
	as_user "$PG_BIN/pg_ctl" -D "$dir" -l "$tmp/$1.log" -w start >/dev/null
}

# sql PORT QUERY: the answer of a query to the node on PORT
sql() {
	as_user "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$tmp" -p "$1" -d postgres -c "$2"
}

shard_port() { echo $((port + 1 + $1)); }

stop_all() {
	local d
	for d in "$tmp"/*/; do
		[ -f "$d/postmaster.pid" ] && as_user "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
	done
}
trap 'rc=$?; stop_all; (exit $rc); throwaway_cluster_cleanup' EXIT

echo "== starting $nshards shards and a router in $tmp" >&2
for i in $(seq 0 $((nshards - 1))); do
	node "shard$i" "$(shard_port "$i")" "shared_preload_libraries = 'pg_async'
pg_async.database = 'postgres'
pg_async.workers = 2"
	sql "$(shard_port "$i")" "
CREATE EXTENSION pg_async;
CREATE FUNCTION public.noop(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
CREATE FUNCTION public.sink(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';" >/dev/null
done
node router "$port" ""
partitions() {
	local i out=""
	for i in $(seq 0 $(($1 - 1))); do
		out="$out${out:+, }p$i 'host=$tmp port=$(shard_port "$i") dbname=postgres'"
	done
	echo "$out"
}
sql "$port" "
CREATE EXTENSION pg_async_router CASCADE;
CREATE SERVER pg_async FOREIGN DATA WRAPPER plproxy OPTIONS ($(partitions 4));
CREATE SERVER two FOREIGN DATA WRAPPER plproxy OPTIONS ($(partitions 2));
CREATE SERVER one FOREIGN DATA WRAPPER plproxy OPTIONS ($(partitions 1));
CREATE USER MAPPING FOR PUBLIC SERVER pg_async;
CREATE USER MAPPING FOR PUBLIC SERVER two;
CREATE USER MAPPING FOR PUBLIC SERVER one;
SELECT async.register_on_all('public.noop(jsonb)');
SELECT async.register_on_all('public.sink(jsonb)');" >/dev/null 2>&1
# the enqueue rounds' jobs stay queued: sink is paused throughout
for i in $(seq 0 $((nshards - 1))); do
	sql "$(shard_port "$i")" "SELECT async.pause('sink')" >/dev/null
done
echo "== PostgreSQL: $("$PG_BIN/postgres" --version); machine: $(nproc) CPUs; $nshards shards with 2 workers each" >&2

# pgbench_rate PORT QUERY: transactions a second of $clients clients
# sending QUERY for $seconds seconds
pgbench_rate() {
	local script
	script=$(mktemp "$tmp/pgbench.XXXXXX")
	echo "$2" >"$script"
	chown "$RUN_USER" "$script"
	as_user "$PG_BIN/pgbench" -n -h "$tmp" -p "$1" -c "$clients" -j "$clients" -T "$seconds" \
		-f "$script" postgres 2>/dev/null |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1
}

# median of the arguments
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A rate
single="SELECT async.invoke('sink', '{}');"
batch="SELECT async.invoke_many('sink', array_fill('{}'::jsonb, ARRAY[100]));"
for r in $(seq 1 "$rounds"); do
	echo "== enqueue round $r" >&2
	for kind in single batch; do
		[ "$kind" = single ] && q=$single || q=$batch
		rate[router_$kind]+=" $(pgbench_rate "$port" "$q")"
		rate[router1_$kind]+=" $(pgbench_rate "$port" "SET pg_async_router.cluster = 'one'; $q")"
		rate[direct_$kind]+=" $(pgbench_rate "$(shard_port 0)" "$q")"
	done
done

# drain SHARDS: enqueue $jobs no-op jobs through the router on the first
# SHARDS shards with noop paused, then resume it and time the drain
drain() {
	local n=$1 cluster i t0 t1
	case "$n" in 1) cluster=one ;; 2) cluster=two ;; *) cluster=pg_async ;; esac
	for i in $(seq 0 $((n - 1))); do sql "$(shard_port "$i")" "SELECT async.pause('noop')" >/dev/null; done
	sql "$port" "SET pg_async_router.cluster = '$cluster';
SELECT count(async.invoke_many('noop', array_fill('{}'::jsonb, ARRAY[1000]))) FROM generate_series(1, $jobs / 1000)" >/dev/null
	t0=$(date +%s.%N)
	for i in $(seq 0 $((n - 1))); do sql "$(shard_port "$i")" "SELECT async.resume('noop')" >/dev/null; done
	[ "$(sql "$port" "SET pg_async_router.cluster = '$cluster'; SELECT async.wait_idle('10 min')")" = t ] ||
		{ echo "router.sh: the drain on $n shards did not finish" >&2; exit 1; }
	t1=$(date +%s.%N)
	awk -v n="$jobs" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}

declare -A drains
order="1 2 4"
for r in $(seq 1 "$rounds"); do
	for n in $order; do
		echo "== drain round $r, $n shards" >&2
		drains[$n]+=" $(drain "$n")"
	done
	# alternate the order from round to round
	order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
done

# events N PER: N calls a second of PER events each, as events a second
events() { awk -v a="$1" -v p="$2" 'BEGIN { printf "%.0f", a * p }'; }
echo "pg_async_router on $(nproc) cores, $nshards shards and the router on one machine; $clients pgbench clients, ${seconds} s rounds"
for kind in single batch; do
	per=1
	label="one event a call (async.invoke)"
	[ "$kind" = single ] || { per=100; label="batches of 100 (async.invoke_many)"; }
	# shellcheck disable=SC2086
	r=$(median ${rate[router_$kind]})
	# shellcheck disable=SC2086
	r1=$(median ${rate[router1_$kind]})
	# shellcheck disable=SC2086
	d=$(median ${rate[direct_$kind]})
	echo "enqueue, $label, events/s (medians; rounds in calls/s):"
	echo "  through the router to 4 shards: $(events "$r" $per) (${rate[router_$kind]# })"
	echo "  through the router to 1 shard:  $(events "$r1" $per) (${rate[router1_$kind]# })"
	echo "  on that shard directly:         $(events "$d" $per) (${rate[direct_$kind]# })"
	echo "  ratios to direct: 4 shards $(awk -v a="$r" -v b="$d" 'BEGIN { printf "%.2f", a / b }')," \
		"1 shard $(awk -v a="$r1" -v b="$d" 'BEGIN { printf "%.2f", a / b }')"
done
for n in 1 2 4; do
	# shellcheck disable=SC2086
	echo "drain of $jobs no-op jobs on $n shard(s): $(median ${drains[$n]}) jobs/s (rounds:${drains[$n]})"
done
