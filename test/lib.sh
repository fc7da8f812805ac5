# test/lib.sh: shared by test/demo.sh and test/run-tests.sh.
# Installs what pg_async needs from Debian's packages, builds and installs
# the extension, and runs commands as a user that initdb accepts.

PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
export PG_CONFIG=$PG_BIN/pg_config

if [ "$(id -u)" = 0 ]; then
	SUDO=
	RUN_USER=postgres
else
	SUDO=sudo
	RUN_USER=$(id -un)
fi

# ensure_packages installs the Debian packages the build and the tests need.
ensure_packages() {
	local pkgs="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-client-$PG_MAJOR libpq-dev libipc-run-perl make gcc"
	local missing=""
	for p in $pkgs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "== installing:$missing"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
	fi
	# Debian's postgresql package creates this user; a bare server package may not.
	id postgres >/dev/null 2>&1 || $SUDO useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
}

# build_and_install builds pg_async in $1 and installs it into PostgreSQL.
build_and_install() {
	echo "== building and installing pg_async"
	make -s -C "$1" PG_CONFIG="$PG_CONFIG" >/dev/null
	$SUDO make -s -C "$1" PG_CONFIG="$PG_CONFIG" install >/dev/null
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
