#!/usr/bin/env bash
# test/major_upgrade.sh: a database that uses pg_async, dumped with pg_dump
# from this machine's PostgreSQL and restored into every newer version of
# PG_VERSIONS that test/run-tests.sh built (each in its root, reached over
# TCP on localhost), picks up where it left off there: the same
# registrations, jobs with their attempt history, dead letters and
# sequences; its queued jobs run, its scheduled jobs and retries keep their
# time, and its dead letters can be redriven.
#
# The dump is made by the newer version's pg_dump, as PostgreSQL advises.
# pg_upgrade is not tested: it needs the old and the new server in one
# root, and each Debian suite carries one PostgreSQL (see docs/operations.md).
#
#   test/major_upgrade.sh     (as root, or as a user it runs sudo for)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"
. "$src/test/roots.sh"

old=$(pg_host_major)
news=()
for m in $(pg_built_majors); do
	[ "$m" -le "$old" ] || news+=("$m")
done
if [ ! -f "/usr/lib/postgresql/$old/lib/pg_async.so" ] || [ ${#news[@]} -eq 0 ]; then
	echo "== pg_async is not built for $old and a newer version: nothing to upgrade"
	exit 0
fi

export PGTZ=UTC
dir=/tmp/pg_async-major
started=()
declare -A server_pid
status=0

# dir_of MAJOR prints the directory of MAJOR's cluster, as seen from here
dir_of() {
	echo "$(pg_prefix "$1")$dir-$1"
}

# start_server MAJOR PORT [WORKERS] makes and starts a cluster of MAJOR that
# serves database app with WORKERS workers (2) and listens on 127.0.0.1:PORT
start_server() {
	local m=$1 bin=/usr/lib/postgresql/$1/bin workers=${3:-2}
	run_as_postgres "$m" "rm -rf $dir-$m && mkdir -m 700 $dir-$m &&
		$bin/initdb -D $dir-$m/data -A trust -U postgres >/dev/null"
	cat >>"$(dir_of "$m")/data/postgresql.conf" <<-EOF
		listen_addresses = '127.0.0.1'
		port = $2
		unix_socket_directories = '$dir-$m'
		shared_preload_libraries = 'pg_async'
		pg_async.database = 'app'
		pg_async.workers = $workers
	EOF
	started+=("$m")
	# in the foreground of a command that lasts as long as the server: the
	# mounts of a root (its /dev/shm) live as long as the command
	run_as_postgres "$m" "exec $bin/postgres -D $dir-$m/data >$dir-$m/server.log 2>&1" &
	server_pid[$m]=$!
	local deadline=$((SECONDS + 60))
	until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$2"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "== PostgreSQL $m did not start"
			return 1
		fi
		sleep 0.1
	done
}

# stop_server MAJOR stops MAJOR's cluster and removes it
stop_server() {
	run_as_postgres "$1" "/usr/lib/postgresql/$1/bin/pg_ctl -D $dir-$1/data -m fast -w stop >/dev/null" || true
	wait "${server_pid[$1]}" || true
	rm -rf "$(dir_of "$1")"
}

cleanup() {
	local rc=$? m
	for m in "${started[@]}"; do
		if [ "$rc" -ne 0 ] && [ -f "$(dir_of "$m")/server.log" ]; then
			echo "== end of the server log of PostgreSQL $m:"
			tail -n 30 "$(dir_of "$m")/server.log"
		fi
		[ ! -d "$(dir_of "$m")" ] || stop_server "$m"
	done
	exit "$rc"
}
trap cleanup EXIT

# sql PORT QUERY prints the answer of database app on 127.0.0.1:PORT
sql() {
	"$PG_BIN/psql" -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d app -c "$2"
}

# wait_until PORT QUERY waits up to two minutes for QUERY to answer t
wait_until() {
	local deadline=$((SECONDS + 120))
	until [ "$(sql "$1" "$2" 2>/dev/null)" = t ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

# check WHAT COMMAND... runs the command, and prints whether WHAT held
check() {
	local what=$1
	shift
	if "$@"; then
		echo "== $what: ok"
	else
		echo "== $what: FAILED"
		status=1
	fi
}

# same PORT_A PORT_B QUERY succeeds if QUERY answers the same on both, and
# prints the difference if not
same() {
	local a b
	a=$(sql "$1" "$3") && b=$(sql "$2" "$3") || return 1
	[ -n "$a" ] || return 1
	[ "$a" != "$b" ] || return 0
	diff <(echo "$a") <(echo "$b") | sed 's/^/    /'
	return 1
}

# the database on the old version: a job run, a dead letter, a job waiting
# for its retry, then, with the workers stopped, ready and scheduled jobs
old_port=$(free_port 26400)
start_server "$old" "$old_port"
"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$old_port" -U postgres -d postgres \
	-c 'CREATE DATABASE app'
sql "$old_port" "
CREATE EXTENSION pg_async;
CREATE TABLE public.effects (event_id text NOT NULL);
CREATE FUNCTION public.refuse(e jsonb) RETURNS void LANGUAGE plpgsql
AS \$\$ BEGIN RAISE EXCEPTION 'refused %', e->>'id' USING ERRCODE = '22023'; END \$\$;
SELECT async.register('public.refuse(jsonb)', max_attempts => 2, retry_delays => '{1 hour}');
CREATE FUNCTION public.keep(e jsonb) RETURNS jsonb LANGUAGE sql
AS \$\$ INSERT INTO public.effects VALUES (e->>'id') RETURNING jsonb_build_object('kept', e->>'id') \$\$;
SELECT async.register('public.keep(jsonb)', max_attempts => 5, retry_delays => '{1 second,1 hour}',
                      timeout => '5 seconds', max_event_age => '2 days', concurrency => 3);
INSERT INTO async.jobs (function, event_id, payload) VALUES ('keep', 'done-1', '{\"id\": \"done-1\"}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('refuse', 'dl-1', '{\"id\": \"dl-1\"}');
" >/dev/null
wait_until "$old_port" "SELECT count(*) = 2 FROM async.jobs
	WHERE (event_id = 'done-1' AND state = 'succeeded') OR (event_id = 'dl-1' AND state = 'queued' AND attempts = 1)"
sql "$old_port" "UPDATE async.jobs SET run_at = now() WHERE event_id = 'dl-1'" >/dev/null
wait_until "$old_port" "SELECT count(*) = 1 FROM async.dead_letters WHERE event_id = 'dl-1'"
sql "$old_port" "INSERT INTO async.jobs (function, event_id, payload) VALUES ('refuse', 'retry-1', '{\"id\": \"retry-1\"}')" >/dev/null
wait_until "$old_port" "SELECT state = 'queued' AND attempts = 1 FROM async.jobs WHERE event_id = 'retry-1'"
echo "pg_async.workers = 0" >>"$(dir_of "$old")/data/postgresql.conf"
sql "$old_port" "SELECT pg_reload_conf()" >/dev/null
wait_until "$old_port" "SELECT count(*) = 0 FROM async.workers"
sql "$old_port" "
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'keep', 'ready-' || i, jsonb_build_object('id', 'ready-' || i) FROM generate_series(1, 3) i;
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('keep', 'later-1', '{\"id\": \"later-1\"}', now() + interval '1 hour');
" >/dev/null
echo "== PostgreSQL $old: a database with registrations, jobs run, ready, scheduled and retried, and a dead letter"

# what must come back whole
snapshot="
SELECT string_agg(x.kind || ' ' || x.row, E'\n' ORDER BY x.kind, x.row::text) FROM (
	SELECT 'f' AS kind, (to_jsonb(f) - 'updated_at' - 'registered_at')::text AS row FROM async.functions f
	UNION ALL SELECT 'j', to_jsonb(j)::text FROM async.jobs j
	UNION ALL SELECT 'a', to_jsonb(a)::text FROM async.attempts a
	UNION ALL SELECT 'd', to_jsonb(d)::text FROM async.dead_letters d
	UNION ALL SELECT 'e', event_id FROM public.effects
	UNION ALL SELECT 's', last_value::text FROM async.jobs_id_seq
	UNION ALL SELECT 's', last_value::text FROM async.dead_letters_id_seq) x"

for new in "${news[@]}"; do
	bin=/usr/lib/postgresql/$new/bin
	port=$(free_port 27400)
	# no worker until the restored database has been compared with the
	# old one: they would run its queued jobs meanwhile
	start_server "$new" "$port" 0
	"$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
		-c 'CREATE DATABASE app'
	# The PostgreSQL 15 and 17 of the Debian archive this runs against give
	# every column of a user's table an attribute option pg_attver, which
	# the pg_dump of 18 writes out and the server of 18 refuses
	# ("unrecognized parameter"): the restore goes through pg_restore's
	# script, without those options.  pg_async's own tables are made by
	# CREATE EXTENSION, and only their rows are in the dump.
	run_as_postgres "$new" "$bin/pg_dump -Fc -h 127.0.0.1 -p $old_port -U postgres -d app -f $dir-$new/app.dump &&
		$bin/pg_restore -f $dir-$new/app.sql $dir-$new/app.dump"
	script=$(dir_of "$new")/app.sql
	left_out=$(grep -cE '^ALTER TABLE ONLY .* SET \(pg_attver=[0-9]+\);$' "$script" || true)
	sed -i -E '/^ALTER TABLE ONLY .* SET \(pg_attver=[0-9]+\);$/d' "$script"
	run_as_postgres "$new" "$bin/psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $port -U postgres -d app \
		-f $dir-$new/app.sql >/dev/null"
	echo "== PostgreSQL $old to $new: dumped by pg_dump $new, restored by pg_restore $new" \
		"($left_out pg_attver column options left out)"
	check "$new: the same registrations, jobs, attempts, dead letters, effects and sequences" \
		same "$old_port" "$port" "$snapshot"
	check "$new: the same pg_async version" \
		same "$old_port" "$port" "SELECT extversion FROM pg_extension WHERE extname = 'pg_async'"
	echo "pg_async.workers = 2" >>"$(dir_of "$new")/data/postgresql.conf"
	sql "$port" "SELECT pg_reload_conf()" >/dev/null
	check "$new: the workers serve the restored database" \
		wait_until "$port" "SELECT count(*) = 2 FROM async.workers"
	check "$new: the queued jobs run, once each" \
		wait_until "$port" "SELECT count(*) = 3 FROM async.jobs j
			WHERE event_id LIKE 'ready-%' AND state = 'succeeded' AND result = jsonb_build_object('kept', event_id)
			  AND (SELECT count(*) FROM public.effects f WHERE f.event_id = j.event_id) = 1"
	check "$new: the scheduled job and the retry wait for their run_at" \
		wait_until "$port" "SELECT string_agg(event_id || ' ' || state || ' ' || attempts || ' ' || (run_at > now()), ', '
			ORDER BY event_id) = 'later-1 queued 0 true, retry-1 queued 1 true'
			FROM async.jobs WHERE event_id IN ('later-1', 'retry-1')"
	sql "$port" "
INSERT INTO async.jobs (function, event_id, payload) VALUES ('keep', 'new-1', '{\"id\": \"new-1\"}');
SELECT async.redrive('dl-1');" >/dev/null
	check "$new: a new job gets a new id and runs, and the dead letter is redriven" \
		wait_until "$port" "SELECT (SELECT state FROM async.jobs WHERE event_id = 'new-1') = 'succeeded'
			AND (SELECT id FROM async.jobs WHERE event_id = 'new-1') > (SELECT max(id) FROM async.jobs WHERE event_id NOT IN ('new-1', 'dl-1'))
			AND (SELECT state || ' ' || attempts FROM async.jobs WHERE event_id = 'dl-1') = 'queued 1'
			AND (SELECT count(*) FROM async.dead_letters WHERE event_id = 'dl-1') = 0"
	stop_server "$new"
done
exit $status
