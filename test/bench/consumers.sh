#!/usr/bin/env bash
# test/bench/consumers.sh: external consumers, measured on this machine.
#
# Installs what it needs (Debian's packages, Node.js if absent; pg and
# graphile-worker from npm into its temporary directory), builds and
# installs pg_async, starts a throwaway cluster with pg_async, and measures,
# in rounds of one run whose order alternates:
#
#   - the drain of JOBS no-op jobs by a Node.js consumer using pg: CONSUMERS
#     connections (default 2) that each claim BATCH jobs (default 1000) at a
#     time, waiting in async.claim, and complete them with complete_many;
#   - the drain of the same number of no-op jobs by Graphile Worker 0.17
#     from npm on the same cluster: 2 worker processes of 8 concurrent jobs,
#     its batching on (a local queue of 500 jobs, batched completions);
#   - the drain of the same number of no-op jobs of an SQL function by
#     pg_async's own workers (pg_async.workers = 2), issue 23's ordinary
#     drain;
#
# then the pick-up latency of a consumer waiting in async.claim, at 1,000
# events a second for 10 seconds: from the call of async.invoke to the
# return of the claim that got the event, with synchronous_commit on, then
# off on the claiming connection (consumers.js says why off is safe for a
# claim), then on with pg_async.claim_synchronous_commit off, after a
# VACUUM of the drains' dead rows.  Prints each
# round, the medians and their ratio.  The cluster is removed at the end,
# whatever happened.
#
#   test/bench/consumers.sh [--quick] [--jobs N] [--rounds N] [--consumers N]
#                           [--batch N] [--no-install]
#
#   --quick        drains of 20,000 jobs, one round, 3 s of latency
#   --jobs N       jobs in each drain (default 100000)
#   --rounds N     rounds of the drains (default 3)
#   --consumers N  connections of the pg_async consumer (default 2)
#   --batch N      jobs a claim asks for (default 1000)
#   --no-install   use the pg_async installed already
set -euo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"

jobs=100000
rounds=3
consumers=2
batch=1000
latency_seconds=10
install=1
while [ $# -gt 0 ]; do
	case "$1" in
		--quick) jobs=20000; rounds=1; latency_seconds=3; shift ;;
		--jobs) jobs=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--consumers) consumers=$2; shift 2 ;;
		--batch) batch=$2; shift 2 ;;
		--no-install) install=0; shift ;;
		-h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
		*) echo "consumers.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case "$jobs$rounds$consumers$batch" in
	*[!0-9]*) echo "consumers.sh: --jobs, --rounds, --consumers and --batch take numbers" >&2; exit 2 ;;
esac

{
	ensure_packages
	ensure_node
	[ "$install" -eq 0 ] || build_and_install "$src"
} >&2

throwaway_cluster consumers-bench 57432
as_user "$PG_BIN/initdb" -D "$data" -A trust -E UTF8 --locale=C >/dev/null
as_user tee -a "$data/postgresql.conf" >/dev/null <<EOF
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $port
max_connections = 100
shared_buffers = '128MB'
shared_preload_libraries = 'pg_async'
pg_async.database = 'postgres'
pg_async.workers = 2
# Graphile Worker deletes a job when it completes: pg_async deletes its
# finished jobs after pg_async.retention, here a second, not a day, so that
# neither queue's table grows from round to round
pg_async.retention = '1s'
EOF
as_user "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w start >/dev/null
as_user "$PG_BIN/psql" -X -q -h "$tmp" -p "$port" -d postgres -c 'CREATE EXTENSION pg_async' >/dev/null

echo "== pg and graphile-worker 0.17 from npm" >&2
as_user npm install --no-save --no-audit --no-fund --prefix "$tmp/node" pg@8 graphile-worker@0.17 >/dev/null 2>&1
url="postgresql:///postgres?host=$tmp&port=$port"
bench() {
	as_user env NODE_PATH="$tmp/node/node_modules" node "$src/test/bench/consumers.js" "$@"
}
rate() { sed -n 's/.*"jobs_per_s":\([0-9.]*\).*/\1/p' | cut -d. -f1; }
# the middle value, or the mean of the two middle ones for an even count
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== PostgreSQL: $("$PG_BIN/postgres" --version); machine: $(nproc) CPUs; synchronous_commit on" >&2
echo "== drains of $jobs no-op jobs: pg_async ($consumers Node consumers claiming $batch at a time), Graphile Worker (2 processes x 8) and pg_async's workers (2)" >&2
pg_rates=()
gw_rates=()
wk_rates=()
for r in $(seq 1 "$rounds"); do
	# the order turns round from one round to the next
	if [ $((r % 2)) -eq 1 ]; then
		p=$(bench drain-pg "$url" "$jobs" "$consumers" "$batch" | rate)
		g=$(bench drain-graphile "$url" "$jobs" 2 8 | rate)
		w=$(bench drain-workers "$url" "$jobs" | rate)
	else
		w=$(bench drain-workers "$url" "$jobs" | rate)
		g=$(bench drain-graphile "$url" "$jobs" 2 8 | rate)
		p=$(bench drain-pg "$url" "$jobs" "$consumers" "$batch" | rate)
	fi
	pg_rates+=("$p")
	gw_rates+=("$g")
	wk_rates+=("$w")
	echo "round $r: pg_async consumers $p jobs/s, Graphile Worker $g jobs/s, pg_async workers $w jobs/s"
done
pm=$(printf '%s\n' "${pg_rates[@]}" | median)
gm=$(printf '%s\n' "${gw_rates[@]}" | median)
wm=$(printf '%s\n' "${wk_rates[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "medians: pg_async consumers $pm jobs/s, Graphile Worker $gm jobs/s, pg_async workers $wm jobs/s"
echo "ratios to Graphile Worker: consumers $(ratio "$pm" "$gm") (issue 18's target: 2), workers $(ratio "$wm" "$gm") (issue 23's target: 2)"

echo "== pick-up latency at 1000 events/s for $latency_seconds s, the claiming connection's synchronous_commit on, then off, then pg_async.claim_synchronous_commit off" >&2
# after a VACUUM: the dead rows the drains left (300,000 jobs with 3 rounds)
# are not what a consumer waiting for a trickle of events meets
as_user "$PG_BIN/psql" -X -q -h "$tmp" -p "$port" -d postgres -c 'VACUUM async.jobs, async.running'
bench latency-pg "$url" 1000 "$latency_seconds" on
bench latency-pg "$url" 1000 "$latency_seconds" off
bench latency-pg "$url" 1000 "$latency_seconds" claims
