# test/lib.sh: shared by test/demo.sh, test/run-tests.sh, test/suite.sh and
# test/bench/run.sh.
# Installs what pg_async needs from Debian's packages, builds and installs
# the extension, and runs commands as a user that initdb accepts.

# The PostgreSQL versions the suite runs on, each as MAJOR:SUITE, SUITE being
# the Debian suite whose archive carries MAJOR.  A version whose suite is this
# machine's runs on this machine; every other one runs in a root of its suite
# (test/roots.sh).  Testing one more version is one more word here.
PG_VERSIONS="15:bookworm 17:trixie 18:sid"

# pg_majors prints the major versions of PG_VERSIONS.
pg_majors() {
	local v majors=()
	for v in $PG_VERSIONS; do
		majors+=("${v%%:*}")
	done
	echo "${majors[*]}"
}

# pg_suite MAJOR prints the Debian suite of MAJOR in PG_VERSIONS, or fails.
pg_suite() {
	local v
	for v in $PG_VERSIONS; do
		[ "${v%%:*}" != "$1" ] || { echo "${v#*:}"; return 0; }
	done
	return 1
}

# The Debian suite of this machine (empty elsewhere).
HOST_SUITE=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")

# pg_on_host MAJOR succeeds if MAJOR runs on this machine, not in a root.
pg_on_host() {
	[ -n "$HOST_SUITE" ] && [ "$(pg_suite "$1")" = "$HOST_SUITE" ]
}

# pg_host_major prints the version this machine's suite carries (the first of
# PG_VERSIONS if none).
pg_host_major() {
	local m
	for m in $(pg_majors); do
		pg_on_host "$m" && { echo "$m"; return 0; }
	done
	set -- $(pg_majors)
	echo "$1"
}

# The PostgreSQL the scripts build against and run: the one PG_CONFIG names
# if it is set (a relocated copy, for example), else Debian's of PG_MAJOR,
# by default the version of this machine's suite.
if [ -n "${PG_CONFIG:-}" ]; then
	PG_CONFIG_GIVEN=1
	PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	PG_BIN=$("$PG_CONFIG" --bindir)
else
	PG_CONFIG_GIVEN=
	PG_MAJOR=${PG_MAJOR:-$(pg_host_major)}
	PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
	PG_CONFIG=$PG_BIN/pg_config
fi
export PG_CONFIG

# become_root SCRIPT ARGS... runs the calling script again under sudo unless
# it runs as root already, so that its usage is the same whether one is root
# (where sudo may be missing) or a user allowed to sudo.  The settings the
# scripts read are passed on.
become_root() {
	[ "$(id -u)" != 0 ] || return 0
	if ! command -v sudo >/dev/null 2>&1; then
		echo "$(basename "$1"): needs root, and sudo is not installed: run it as root" >&2
		exit 2
	fi
	exec sudo --preserve-env=PG_CONFIG,PG_MAJOR,PG_ASYNC_ROOTS,PG_ASYNC_MIRROR,PG_ASYNC_FUZZ_SEED,PG_ASYNC_FUZZ_CALLS,PG_ASYNC_FUZZ_TIMEOUT -- "$@"
}

# The scripts run as root (become_root); the clusters run as postgres, since
# initdb refuses root.
RUN_USER=postgres

# pg_packages MAJOR prints the Debian packages that the build and the tests
# need with PostgreSQL MAJOR (those of the server only with an argument).
pg_packages() {
	local pkgs="libpq-dev libipc-run-perl perl make gcc prometheus-postgres-exporter curl procps python3-psycopg2"
	[ -z "${1:-}" ] || pkgs="postgresql-$1 postgresql-server-dev-$1 postgresql-client-$1 postgresql-$1-cron postgresql-$1-plproxy $pkgs"
	echo "$pkgs"
}

# install_packages PACKAGE... installs those of the Debian packages that
# are missing.
install_packages() {
	local p missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	fi
}

# ensure_packages installs the Debian packages the build and the tests need:
# those of the server too unless PG_CONFIG named an installation.
ensure_packages() {
	local pkgs
	if [ -n "$PG_CONFIG_GIVEN" ]; then
		pkgs=$(pg_packages)
	else
		pkgs=$(pg_packages "$PG_MAJOR")
	fi
	install_packages $pkgs
	# Debian's postgresql package creates this user; a bare server package may not.
	id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
}

# ensure_node makes sure node and npm are here, for the Node consumers of
# test/t/024_consumers.pl (which installs pg from npm itself) and
# test/bench/consumers.sh: Debian's nodejs and npm, unless a Node.js with its
# npm is installed already (a machine's image may carry a newer one).
ensure_node() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && return 0
	install_packages nodejs npm
}

# build_and_install builds pg_async in $1 and installs it into PostgreSQL.
build_and_install() {
	echo "== building and installing pg_async"
	make -s -C "$1" PG_CONFIG="$PG_CONFIG" >/dev/null
	make -s -C "$1" PG_CONFIG="$PG_CONFIG" install >/dev/null
}

# as_user runs a command as the user that owns the test clusters.
as_user() {
	if [ "$(id -un)" = "$RUN_USER" ]; then
		"$@"
	else
		runuser -u "$RUN_USER" -- "$@"
	fi
}

# scratch_copy copies the source tree $1 into a new directory that the
# cluster user can write (pg_regress and prove write next to the sources),
# and prints its path.
scratch_copy() {
	local dir
	dir=$(mktemp -d /tmp/pg_async.XXXXXX)
	tar -C "$1" --exclude=.git --exclude='*.o' --exclude='*.so' -cf - . | tar -C "$dir" -xf -
	chmod 755 "$dir"
	[ "$(id -un)" = "$RUN_USER" ] || chown -R "$RUN_USER" "$dir"
	echo "$dir"
}

# free_port BASE prints a port near BASE that no local server answers on.
# The clusters listen on no TCP address and keep their socket in their own
# directory; this only keeps them clear of servers in the default socket
# directories.
free_port() {
	local base=$1 try p host rc answered
	for try in $(seq 0 99); do
		p=$((base + ($$ + try) % 1000))
		answered=0
		for host in /var/run/postgresql /tmp localhost; do
			rc=0
			"$PG_BIN/pg_isready" -q -h "$host" -p "$p" -t 2 || rc=$?
			# 2 means no response; 0, 1 and 3 mean something is there or odd
			[ "$rc" -eq 2 ] || { answered=1; break; }
		done
		if [ "$answered" -eq 0 ]; then
			echo "$p"
			return 0
		fi
	done
	echo "no free port found near $base" >&2
	return 1
}

# throwaway_cluster NAME BASE sets port, tmp, data and log for a cluster in a
# new directory that the cluster user owns, and arranges for the cluster to
# be stopped and the directory removed on exit, showing the end of the
# server log if the script failed.
throwaway_cluster() {
	port=$(free_port "$2")
	tmp=$(mktemp -d "/tmp/pg_async_$1.XXXXXX")
	chmod 700 "$tmp"
	[ "$(id -un)" = "$RUN_USER" ] || chown "$RUN_USER" "$tmp"
	data=$tmp/data
	log=$tmp/server.log
	cluster_name=$1
	trap throwaway_cluster_cleanup EXIT
}

throwaway_cluster_cleanup() {
	local rc=$?
	if [ -f "$data/postmaster.pid" ]; then
		as_user "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$log" ]; then
		echo "== $cluster_name failed; end of the server log:" >&2
		tail -n 40 "$log" >&2
	fi
	rm -rf "$tmp"
	exit "$rc"
}

# copy_source FROM DIR copies the sources in FROM, without build or test
# outputs, into DIR.
copy_source() {
	local from=$1
	shift
	if git -C "$from" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$from" ls-files -z --cached --others --exclude-standard |
			tar -C "$from" --null -T - --ignore-failed-read -cf - 2>/dev/null
	else
		tar -C "$from" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
			--exclude=bin/pg_async_top --exclude=test/bench/pg_async_bench \
			--exclude='tmp_check*' --exclude=results --exclude='regression.*' -cf - .
	fi | tar -C "$1" -xf -
}
