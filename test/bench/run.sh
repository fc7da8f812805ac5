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
#                      held-xmin, priorities, keys, databases or all
#                      (repeatable or comma-separated; default all)
#   --workers N        pg_async.workers (default 2)
#   --batch-size N     pg_async.batch_size (default 1000, the server default)
#   --synchronous-commit on|off
#                      pg_async.synchronous_commit, the workers' own (default
#                      on: they commit as synchronous_commit = on says)
#   --no-install       do not build and install pg_async: use the one
#                      installed already (the program is still built)
#   --extension-version V
#                      CREATE EXTENSION pg_async VERSION 'V' (default: the
#                      installed default_version): the same library with
#                      an older schema, to compare a change of SQL alone.
#                      V's own install script, pg_async--V.sql, must be
#                      installed (a make install of V leaves it): without
#                      it PostgreSQL walks the updates from 0.1, which the
#                      build assembles from the current functions
#   --pg-bin DIR       run the cluster with the PostgreSQL binaries in DIR
#                      (default: those of the PostgreSQL test/lib.sh picks,
#                      PG_CONFIG's, else Debian's of PG_MAJOR, else this
#                      machine's version), for example a relocated copy with
#                      another pg_async build in it; usually with --no-install
#   --database-pairs N the databases scenario's pairs of rounds (default 5;
#                      quick 2)
#   --idle-databases N its idle databases beside postgres (default 9)
#   --cold-starts N    its cold starts (default 50; quick 10)
#   --control          in each of its pairs a round C too (see below)
#
# The databases scenario is this script's own: it runs after those of
# pg_async_bench, and reconfigures the cluster (pg_async.database empty,
# pg_async.databases '*').  In pairs of rounds of one run, each round the
# drain scenario of pg_async_bench in database postgres (the median of
# three drains of -n no-op jobs, 200,000 by default), after every pg_async
# worker has left (pg_async.worker_idle_timeout 2 s, then back to its
# default) and one job has brought the workers of postgres up again:
#   A  postgres is the only database;
#   B  --idle-databases more have the extension (each a registered function,
#      no jobs, vacuumed), are served, and have gone idle (no worker);
#   C  (--control) the same databases, not served (pg_async.databases =
#      'postgres').
# The pairs run A B C, then C B A, and so on (without C: A B, then B A):
# the idle databases are created before the B or C after an A, and
# dropped before the A after them.
# -> each pair's B/A (and C/A), their medians (target: B/A >= 0.95), and
# the pg_async workers found in the idle databases before or after a drain
# (target: none).  Then, with them served, --cold-starts times in one of
# them: wait until it holds no worker, enqueue one job, take its handler's
# start minus the job's enqueued_at -> p50 and p99 (target: p50 <= 250 ms),
# split at the backend_start of the worker that ran it.
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
ext_version=
scenarios=()
json=0
quick=0
database_pairs=
idle_databases=9
cold_starts=
control=0
while [ $# -gt 0 ]; do
	case "$1" in
		-s|--scenario) IFS=, read -r -a words <<<"$2"; scenarios+=("${words[@]}"); shift 2 ;;
		--scenario=*) IFS=, read -r -a words <<<"${1#*=}"; scenarios+=("${words[@]}"); shift ;;
		--json) json=1; bench_args+=("$1"); shift ;;
		--quick) quick=1; bench_args+=("$1"); shift ;;
		--database-pairs) database_pairs=$2; shift 2 ;;
		--database-pairs=*) database_pairs=${1#*=}; shift ;;
		--idle-databases) idle_databases=$2; shift 2 ;;
		--idle-databases=*) idle_databases=${1#*=}; shift ;;
		--cold-starts) cold_starts=$2; shift 2 ;;
		--cold-starts=*) cold_starts=${1#*=}; shift ;;
		--control) control=1; shift ;;
		--workers) workers=$2; shift 2 ;;
		--workers=*) workers=${1#*=}; shift ;;
		--batch-size) batch_size=$2; shift 2 ;;
		--batch-size=*) batch_size=${1#*=}; shift ;;
		--synchronous-commit) worker_sync=$2; shift 2 ;;
		--synchronous-commit=*) worker_sync=${1#*=}; shift ;;
		--no-install) install=0; shift ;;
		--extension-version) ext_version=$2; shift 2 ;;
		--extension-version=*) ext_version=${1#*=}; shift ;;
		--pg-bin) pg_bin=$2; shift 2 ;;
		--pg-bin=*) pg_bin=${1#*=}; shift ;;
		-h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
		*) bench_args+=("$1"); shift ;;
	esac
done
[ -n "$database_pairs" ] || database_pairs=$((quick ? 2 : 5))
[ -n "$cold_starts" ] || cold_starts=$((quick ? 10 : 50))
for n in "$workers" "$batch_size" "$database_pairs" "$idle_databases" "$cold_starts"; do
	case "$n" in
		''|*[!0-9]*) echo "run.sh: --workers, --batch-size, --database-pairs," \
			"--idle-databases and --cold-starts take numbers" >&2; exit 2 ;;
	esac
done
case "$worker_sync" in
	on|off) ;;
	*) echo "run.sh: --synchronous-commit takes on or off" >&2; exit 2 ;;
esac
if [ "$database_pairs" -lt 1 ] || [ "$idle_databases" -lt 1 ] || [ "$cold_starts" -lt 1 ]; then
	echo "run.sh: --database-pairs, --idle-databases and --cold-starts must be at least 1" >&2
	exit 2
fi
# the scenarios: databases is this script's, the others pg_async_bench's
# (all of them when none is named)
run_bench=1
run_databases=1
bench_scenario_args=()
if [ ${#scenarios[@]} -gt 0 ]; then
	run_bench=0
	run_databases=0
	bench_scenarios=()
	for s in "${scenarios[@]}"; do
		case "$s" in
			databases) run_databases=1 ;;
			all) run_databases=1; bench_scenarios+=(all) ;;
			'') ;;
			*) bench_scenarios+=("$s") ;;
		esac
	done
	if [ ${#bench_scenarios[@]} -gt 0 ]; then
		run_bench=1
		bench_scenario_args=(--scenario "$(IFS=,; echo "${bench_scenarios[*]}")")
	fi
fi
# room for the launcher, the workers and PostgreSQL's own background workers;
# the databases scenario's databases may run pg_async.max_workers (8) in all
most_workers=$workers
[ "$run_databases" -eq 0 ] || [ "$most_workers" -ge 8 ] || most_workers=8
max_worker_processes=$((most_workers + 6 > 8 ? most_workers + 6 : 8))

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

# ---------------------------------------------------------------------------
# The databases scenario (see the top of this file).

idle_dbs=()
for i in $(seq 1 "$idle_databases"); do
	idle_dbs+=("bench_idle_$i")
done
idle_dbs_exist=0
idle_workers_seen=0
first_drain_json=
no_worker="SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pg_async worker')"

# progress prints a progress line of the scenario on stderr.
progress() {
	echo "== databases: $*" >&2
}

# sql DB SQL... runs each SQL in database DB of the cluster, in a
# transaction of its own, and prints the values.
sql() {
	local db=$1 q cmds=()
	shift
	for q in "$@"; do
		cmds+=(-c "$q")
	done
	as_user "$PG_BIN/psql" -X -q -A -t -h "$tmp" -p "$port" -d "$db" -v ON_ERROR_STOP=1 "${cmds[@]}"
}

# wait_until WHAT SECONDS DB SQL polls SQL in DB until it answers true.
# After SECONDS it prints the pg_async processes and what each database
# says of its workers, and ends the run.
wait_until() {
	local deadline=$((SECONDS + $2)) d
	until [ "$(sql "$3" "$4")" = t ]; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			progress "$1: not after $2 s"
			sql postgres "SELECT pid, datname, backend_type, state, backend_start, wait_event
			                FROM pg_stat_activity WHERE backend_type LIKE 'pg_async%'" >&2 || true
			for d in postgres "${idle_dbs[@]}"; do
				progress "$d: idle|waiting_since $(sql "$d" \
					"SELECT idle, waiting_since FROM async._database_workers()" 2>&1 || true)"
			done
			exit 1
		fi
		sleep 0.1
	done
}

# configure NAME VALUE... sets each setting with ALTER SYSTEM (VALUE
# default: RESET), reloads, and waits until a new session sees them all.
configure() {
	local cmds=() check=true
	while [ $# -gt 0 ]; do
		if [ "$2" = default ]; then
			cmds+=("ALTER SYSTEM RESET $1")
			check+=" AND (SELECT setting = boot_val FROM pg_settings WHERE name = '$1')"
		else
			cmds+=("ALTER SYSTEM SET $1 = '$2'")
			check+=" AND (SELECT setting = '$2' FROM pg_settings WHERE name = '$1')"
		fi
		shift 2
	done
	sql postgres "${cmds[@]}" "SELECT pg_reload_conf()" >/dev/null
	wait_until "the settings reloaded" 10 postgres "SELECT $check"
}

# create_idle_databases creates the idle databases, each with the extension
# and a registered function (bench_cold, whose handler logs its start), and
# no jobs.  Each is vacuumed and analyzed (twice: the ANALYZE fills
# pg_statistic), as a database that has been there a while would be: else
# autovacuum would be at work during the drains in the catalog rows that
# CREATE EXTENSION wrote.
create_idle_databases() {
	local d
	progress "creating ${idle_dbs[*]}"
	for d in "${idle_dbs[@]}"; do
		sql postgres "CREATE DATABASE $d"
		sql "$d" "SET client_min_messages = warning" "CREATE EXTENSION pg_async${ext_version:+ VERSION '$ext_version'}" \
			"CREATE TABLE public.bench_cold_log (seq bigint NOT NULL, started_at timestamptz NOT NULL)" \
			"CREATE FUNCTION public.bench_cold(e jsonb) RETURNS void LANGUAGE sql
			     AS \$\$INSERT INTO public.bench_cold_log VALUES ((e->>'seq')::bigint, clock_timestamp())\$\$" \
			"SELECT async.register('public.bench_cold(jsonb)')" "VACUUM (ANALYZE)" "VACUUM" >/dev/null
	done
	idle_dbs_exist=1
}

# drop_idle_databases drops them.
drop_idle_databases() {
	local d
	progress "dropping the idle databases"
	for d in "${idle_dbs[@]}"; do
		sql postgres "DROP DATABASE $d"
	done
	idle_dbs_exist=0
}

# idle_workers prints how many pg_async workers run in the idle databases.
idle_workers() {
	sql postgres "SELECT count(*) FROM pg_stat_activity
	               WHERE backend_type = 'pg_async worker' AND datname LIKE 'bench\_idle\_%'"
}

# autovacuum_runs prints how often autovacuum has vacuumed or analyzed a
# table of the idle databases since they were created (0 without them).
autovacuum_runs() {
	local d n=0
	[ "$idle_dbs_exist" -eq 0 ] || for d in "${idle_dbs[@]}"; do
		n=$((n + $(sql "$d" "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)
		                      FROM pg_stat_all_tables")))
	done
	echo "$n"
}

# quiesce ROUND serves the databases of the round (C: postgres only; A and
# B: every one with the extension) and, with pg_async.worker_idle_timeout at
# 2 s, waits until no pg_async worker runs and, in B, until each idle
# database says it is idle and waits for no worker slot: it is served, and
# needs nothing.  The timeout is left at 2 s.
quiesce() {
	local d
	configure pg_async.databases "$([ "$1" = C ] && echo postgres || echo '*')" \
		pg_async.worker_idle_timeout 2000
	wait_until "no pg_async worker left" 120 postgres "$no_worker"
	if [ "$1" = B ]; then
		for d in "${idle_dbs[@]}"; do
			wait_until "$d idle" 120 "$d" \
				"SELECT idle AND waiting_since IS NULL FROM async._database_workers()"
		done
		wait_until "no pg_async worker left" 120 postgres "$no_worker"
	fi
}

# drain_round ROUND PAIR: quiesce, pg_async.worker_idle_timeout back to its
# default, one job to bring the workers of postgres up (the drain
# scenario's own drains start with them running), and pg_async_bench's
# drain scenario; sets drain_rate to its jobs/s (the median of its three
# drains) and counts the workers found in the idle databases just before
# and after it.
drain_round() {
	local out before after
	quiesce "$1"
	configure pg_async.worker_idle_timeout default
	sql postgres "INSERT INTO async.jobs (function, payload) VALUES ('bench_noop', '{}')" >/dev/null
	wait_until "the workers of postgres up" 60 postgres \
		"SELECT (SELECT count(*) FROM async.workers)
		        >= least($workers, current_setting('pg_async.max_workers')::integer)
		    AND NOT EXISTS (SELECT FROM async.jobs WHERE finished_at IS NULL)"
	before=$(idle_workers)
	progress "pair $2: $1"
	out=$("$bench" -d "$conninfo" "${bench_args[@]}" --scenario drain --json)
	after=$(idle_workers)
	[ -n "$first_drain_json" ] || first_drain_json=$out
	drain_jobs=$(sed -n 's/^ *"jobs": \([0-9]*\),\{0,1\}$/\1/p' <<<"$out")
	drain_rate=$(sed -n 's/^ *"jobs_per_second": \([-0-9.e+]*\),\{0,1\}$/\1/p' <<<"$out")
	[ -n "$drain_rate" ] || { progress "no jobs_per_second in the drain's output"; exit 1; }
	idle_workers_seen=$((idle_workers_seen + before + after))
	progress "pair $2: $1: $drain_rate jobs/s; pg_async workers in the idle databases:" \
		"$before before, $after after; autovacuum runs there: $(autovacuum_runs)"
}

# median prints the median of its arguments.
median() {
	printf '%s\n' "$@" | sort -g |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPR prints what the awk expression EXPR, of numbers, gives.
calc() {
	awk "BEGIN { print ($1) }"
}

# figure KEY LABEL KIND VALUE [TARGET PASS] records a figure as a row of
# the table and as JSON, as pg_async_bench prints its own: KIND int, num or
# list (numbers, space-separated); PASS 1 or 0.
fig_rows=
fig_json=
fig_targets=
figure() {
	local shown json pass=false
	shown=$(awk -v k="$3" -v vs="$4" 'BEGIN {
		n = split(vs, v, " ")
		for (i = 1; i <= n; i++) {
			f = (k == "int") ? "%.0f" : (v[i] >= 100 || v[i] <= -100) ? "%.1f" : "%.3f"
			printf((i > 1 ? " " : "") f, v[i])
		}
		if (n == 0)
			printf("-")
	}')
	json=${4:-null}
	[ "$3" != list ] || json="[${4// /, }]"
	fig_rows+=$(printf '%-9s  %-38s  %14s  %-12s  %s' databases "$2" "$shown" "${5:-}" \
		"$(case "${6:-}" in 1) echo PASS ;; 0) echo FAIL ;; esac)")$'\n'
	fig_json+="${fig_json:+,}"$'\n'"    \"$1\": $json"
	[ "${6:-}" != 1 ] || pass=true
	[ -z "${5:-}" ] ||
		fig_targets+="${fig_targets:+,}"$'\n'"      \"$1\": {\"target\": \"$5\", \"pass\": $pass}"
}

# databases_scenario measures the scenario and records its figures.
databases_scenario() {
	local r round a b c v rates_a=() rates_b=() rates_c=() ratios=() cratios=()

	progress "each round: pg_async_bench ${bench_args[*]} --scenario drain --json"
	configure pg_async.database ''
	# the drains' function, registered as pg_async_bench does, for the first job
	sql postgres "SET client_min_messages = warning" \
		"CREATE OR REPLACE FUNCTION public.bench_noop(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT'" \
		"SELECT async.register('public.bench_noop(jsonb)')" >/dev/null
	for r in $(seq 1 "$database_pairs"); do
		for round in $(case "$control$((r % 2))" in 01) echo A B ;; 00) echo B A ;;
				11) echo A B C ;; 10) echo C B A ;; esac); do
			# the idle databases exist in B and C only
			if [ "$round" = A ] && [ "$idle_dbs_exist" -eq 1 ]; then
				drop_idle_databases
			elif [ "$round" != A ] && [ "$idle_dbs_exist" -eq 0 ]; then
				create_idle_databases
			fi
			drain_round "$round" "$r"
			case "$round" in A) a=$drain_rate ;; B) b=$drain_rate ;; C) c=$drain_rate ;; esac
		done
		rates_a+=("$a")
		rates_b+=("$b")
		ratios+=("$(calc "$b / $a")")
		progress "pair $r: B/A ${ratios[-1]}"
		if [ "$control" -eq 1 ]; then
			rates_c+=("$c")
			cratios+=("$(calc "$c / $a")")
			progress "pair $r: C/A ${cratios[-1]}"
		fi
	done

	figure jobs "jobs per drain" int "$drain_jobs"
	figure idle_databases "idle databases" int "$idle_databases"
	figure pairs "pairs of rounds" int "$database_pairs"
	figure alone_jobs_per_second "jobs/s alone (A), median" num "$(median "${rates_a[@]}")"
	figure beside_idle_jobs_per_second "jobs/s beside idle (B), median" num "$(median "${rates_b[@]}")"
	figure pair_ratios "B/A of each pair" list "${ratios[*]}"
	v=$(median "${ratios[@]}")
	figure ratio "B/A, median of the pairs" num "$v" ">= 0.95" "$(calc "$v >= 0.95")"
	if [ "$control" -eq 1 ]; then
		figure control_jobs_per_second "jobs/s not served (C), median" num "$(median "${rates_c[@]}")"
		figure control_pair_ratios "C/A of each pair" list "${cratios[*]}"
		figure control_ratio "C/A, median of the pairs" num "$(median "${cratios[@]}")"
	fi
	figure idle_workers_seen "workers seen in the idle databases" int "$idle_workers_seen" \
		"0" "$([ "$idle_workers_seen" -eq 0 ] && echo 1 || echo 0)"

	[ "$idle_dbs_exist" -eq 1 ] || create_idle_databases
	quiesce B
	cold_starts
}

# cold_starts: in the first idle database, cold_starts times, wait until it
# holds no worker (pg_async.worker_idle_timeout at 2 s), enqueue one job,
# wait for its handler: all in one procedure there, which commits between
# its statements (it holds no snapshot while it waits), so that no client
# process starts in between.  The time runs from the job's enqueued_at
# (its transaction's start) to its handler's clock_timestamp(), split at
# the backend_start of the worker that ran it.
cold_starts() {
	local d=${idle_dbs[0]} n nfork p50 p99 max commit_p50 fork_p50 run_p50
	progress "$cold_starts cold starts in $d"
	sql "$d" "CREATE TABLE public.bench_cold_result (seq integer, enqueued_at timestamptz,
			committed_at timestamptz, worker_start timestamptz, started_at timestamptz)" \
		"CREATE PROCEDURE public.bench_cold_starts(p_n integer, p_timeout double precision)
		LANGUAGE plpgsql AS \$\$
		DECLARE
			v_deadline timestamptz;
			v_committed timestamptz;
		BEGIN
			FOR i IN 1 .. p_n LOOP
				v_deadline := clock_timestamp() + make_interval(secs => p_timeout);
				WHILE EXISTS (SELECT FROM pg_stat_activity
							   WHERE datname = current_database()
								 AND backend_type = 'pg_async worker') LOOP
					IF clock_timestamp() > v_deadline THEN
						RAISE EXCEPTION 'cold start %: the workers did not leave in % s', i, p_timeout;
					END IF;
					PERFORM pg_sleep(0.02);
					COMMIT;
				END LOOP;
				INSERT INTO async.jobs (function, payload, event_id)
				VALUES ('bench_cold', jsonb_build_object('seq', i), 'bench-cold-' || i);
				COMMIT;
				v_committed := clock_timestamp();
				v_deadline := clock_timestamp() + make_interval(secs => p_timeout);
				WHILE NOT EXISTS (SELECT FROM public.bench_cold_log WHERE seq = i) LOOP
					IF clock_timestamp() > v_deadline THEN
						RAISE EXCEPTION 'cold start %: the job did not start in % s', i, p_timeout;
					END IF;
					PERFORM pg_sleep(0.01);
					COMMIT;
				END LOOP;
				INSERT INTO public.bench_cold_result
				SELECT i, j.enqueued_at, v_committed, a.backend_start, l.started_at
				  FROM async.jobs j
				  JOIN public.bench_cold_log l ON l.seq = i
				  LEFT JOIN pg_stat_activity a ON a.pid = j.worker_pid
				 WHERE j.event_id = 'bench-cold-' || i;
				COMMIT;
			END LOOP;
		END
		\$\$" \
		"CALL public.bench_cold_starts($cold_starts, 60)" >/dev/null
	# nearest-rank percentiles, as pg_async_bench's
	IFS='|' read -r n nfork p50 p99 max commit_p50 fork_p50 run_p50 < <(sql "$d" \
		"SELECT count(*), count(fork_ms),
			round(percentile_disc(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3),
			round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 3),
			round(max(ms)::numeric, 3),
			round(percentile_disc(0.5) WITHIN GROUP (ORDER BY commit_ms)::numeric, 3),
			round(percentile_disc(0.5) WITHIN GROUP (ORDER BY fork_ms)::numeric, 3),
			round(percentile_disc(0.5) WITHIN GROUP (ORDER BY run_ms)::numeric, 3)
		  FROM (SELECT extract(epoch FROM started_at - enqueued_at) * 1000 AS ms,
					   extract(epoch FROM committed_at - enqueued_at) * 1000 AS commit_ms,
					   extract(epoch FROM worker_start - committed_at) * 1000 AS fork_ms,
					   extract(epoch FROM started_at - worker_start) * 1000 AS run_ms
				  FROM public.bench_cold_result) s")
	progress "cold starts: p50 $p50 ms, p99 $p99 ms, max $max ms; p50s: enqueued_at to the" \
		"commit's return $commit_p50 ms, to the worker's start $fork_p50 ms more, to the" \
		"handler $run_p50 ms more ($nfork of $n with the worker's start)"
	figure cold_starts "cold starts" int "$n"
	figure cold_start_p50_ms "cold start p50 ms" num "$p50" "<= 250 ms" "$(calc "$p50 <= 250")"
	figure cold_start_p99_ms "cold start p99 ms" num "$p99"
	figure cold_start_max_ms "cold start max ms" num "$max"
	figure enqueue_commit_p50_ms "enqueued_at to commit return p50 ms" num "$commit_p50"
	figure worker_process_p50_ms "commit return to worker start p50 ms" num "$fork_p50"
	figure worker_to_handler_p50_ms "worker start to handler p50 ms" num "$run_p50"
}

# print_databases prints the scenario's figures after pg_async_bench's: in
# JSON, into its object (without its closing brace), or, when its scenarios
# did not run, after the settings of the first drain.
print_databases() {
	if [ "$json" -eq 1 ]; then
		if [ -n "$bench_out" ]; then
			sed '$d' <<<"$bench_out" | sed '$s/$/,/'
		else
			sed -n '1,/^  }/p' <<<"$first_drain_json"
		fi
		printf '  "databases": {%s,\n    "targets": {%s\n    }\n  }\n}\n' "$fig_json" "$fig_targets"
		return 0
	fi
	if [ "$run_bench" -eq 0 ]; then
		printf 'pg_async benchmark\n\nsettings (of the first drain):\n'
		sed -n '1,/^  }/s/^    "\([^"]*\)": "\(.*\)",\{0,1\}$/\1\t\2/p' <<<"$first_drain_json" |
			awk -F '\t' '{ printf "  %-24s %s\n", $1, $2 }'
	fi
	printf '\n%-9s  %-38s  %14s  %-12s  %s\n' scenario figure value target result
	printf '%-9s  %-38s  %14s  %-12s  %s\n' --------- -------------------------------------- \
		-------------- ------------ ------
	printf '%s' "$fig_rows"
	echo "(pg_async.databases '*', in C 'postgres'; pg_async.worker_idle_timeout its default," \
		"2 s while the databases go idle and for the cold starts)"
}

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
case "$ext_version" in
	*[!0-9.]*) echo "run.sh: --extension-version takes a version such as 0.21" >&2; exit 2 ;;
esac
sql postgres "CREATE EXTENSION pg_async${ext_version:+ VERSION '$ext_version'}" >&2
echo "== pg_async $(sql postgres "SELECT extversion FROM pg_extension WHERE extname = 'pg_async'")" >&2
echo "== PostgreSQL: $("$PG_BIN/postgres" --version); machine: $(nproc) CPUs," \
	"$(awk '/MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo) RAM" >&2

conninfo="host=$tmp port=$port dbname=postgres user=$RUN_USER"
bench_out=
if [ "$run_bench" -eq 1 ]; then
	echo "== running: pg_async_bench ${bench_args[*]} ${bench_scenario_args[*]}" >&2
	if [ "$run_databases" -eq 1 ] && [ "$json" -eq 1 ]; then
		# one JSON object with the databases scenario's figures
		bench_out=$("$bench" -d "$conninfo" "${bench_args[@]}" "${bench_scenario_args[@]}")
	else
		"$bench" -d "$conninfo" "${bench_args[@]}" "${bench_scenario_args[@]}"
	fi
fi
if [ "$run_databases" -eq 1 ]; then
	databases_scenario
	print_databases
fi
echo "== benchmark finished; stopping and removing the cluster" >&2
