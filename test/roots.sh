# test/roots.sh: Debian roots for the PostgreSQL versions this machine's
# suite does not carry.  Sourced by test/run-tests.sh, after test/lib.sh.
#
# A root is made with debootstrap from the archive this machine's apt uses,
# with the packages of pg_packages installed (or those of ROOT_PACKAGES, for
# a root that is to hold PostgreSQL alone), and kept in $PG_ASYNC_ROOTS
# (default /var/cache/pg_async/roots) as <suite>-<major>.  The file
# .pg_async-root in it, written last, says it is complete: a root without it,
# or one whose pg_config does not run, is made again.  Runs hold a lock per
# root, so that two checkouts never install into the same root at once.

PG_ASYNC_ROOTS=${PG_ASYNC_ROOTS:-/var/cache/pg_async/roots}
ROOT_MARKER=.pg_async-root

# debian_mirror prints the address of the Debian archive that this machine's
# apt uses for its own suite: PG_ASYNC_MIRROR if set.
debian_mirror() {
	if [ -n "${PG_ASYNC_MIRROR:-}" ]; then
		echo "$PG_ASYNC_MIRROR"
		return 0
	fi
	local m
	# deb822 sources: the URIs of the first stanza whose Suites has ours
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$HOST_SUITE" '
		/^[[:space:]]*$/ { if (uri != "" && hit && deb) { print uri; exit } uri = ""; hit = 0; deb = 0; next }
		/^#/ { next }
		tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
		tolower($1) == "uris:" { uri = $2 }
		tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) hit = 1 }
		END { if (uri != "" && hit && deb) print uri }' | head -n 1)
	# one-line sources
	[ -n "$m" ] || m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -E 's/\[[^]]*\]//' | awk -v suite="$HOST_SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
	if [ -z "$m" ]; then
		echo "no Debian archive for $HOST_SUITE in this machine's apt sources; set PG_ASYNC_MIRROR" >&2
		return 1
	fi
	echo "$m"
}

# root_dir MAJOR prints the path of the root of MAJOR.
root_dir() {
	echo "$PG_ASYNC_ROOTS/$(pg_suite "$1")-$1"
}

# root_packages MAJOR prints the packages a root of MAJOR gets: for the
# tests, Debian's nodejs too, for the Node consumers of
# test/t/024_consumers.pl (their pg comes from npm, installed by
# run-tests.sh from outside: Debian's npm is 363 packages).
root_packages() {
	echo "${ROOT_PACKAGES:-$(pg_packages "$1") nodejs} mount"
}

# root_marker_text MAJOR prints what the marker of a complete root of MAJOR
# holds: a root made for another package list is made again.
root_marker_text() {
	local sources="its own"
	[ "$(pg_suite "$1")" != "$HOST_SUITE" ] || sources="this machine's"
	echo "suite $(pg_suite "$1"), $sources apt sources, packages $(root_packages "$1")"
}

# root_ok MAJOR succeeds if the root of MAJOR is complete and works.
root_ok() {
	local root
	root=$(root_dir "$1")
	[ -f "$root/$ROOT_MARKER" ] &&
		[ "$(cat "$root/$ROOT_MARKER")" = "$(root_marker_text "$1")" ] &&
		chroot "$root" "/usr/lib/postgresql/$1/bin/pg_config" --version >/dev/null 2>&1
}

# root_remove DIR removes a root, unless something is still mounted in it.
root_remove() {
	local dir
	dir=$(realpath -m "$1")
	if awk -v d="$dir/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
		echo "$dir has file systems mounted in it; not removing it" >&2
		return 1
	fi
	rm -rf --one-file-system "$dir"
}

# root_exec ROOT COMMAND... runs COMMAND as root in ROOT, with a clean
# environment, /proc, /dev, /dev/pts and /dev/shm mounted.  The mounts live
# in a mount namespace of their own, which ends with the command; they are
# also unmounted on exit, whatever happened.
root_exec() {
	unshare --mount --propagation private -- bash -c '
		set -eu
		root=$1
		shift
		mounted=()
		unmount_all() {
			local i
			for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
				umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
			done
		}
		trap unmount_all EXIT
		trap "exit 129" HUP
		trap "exit 130" INT
		trap "exit 143" TERM
		mkdir -p "$root/proc" "$root/dev"
		mount -t proc proc "$root/proc"; mounted+=("$root/proc")
		mount --bind /dev "$root/dev"; mounted+=("$root/dev")
		mount --bind /dev/pts "$root/dev/pts"; mounted+=("$root/dev/pts")
		mount --bind /dev/shm "$root/dev/shm"; mounted+=("$root/dev/shm")
		rc=0
		chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
			PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			DEBIAN_FRONTEND=noninteractive PG_ASYNC_IN_ROOT=1 "$@" || rc=$?
		exit $rc
	' root_exec "$@"
}

# root_make MAJOR makes the root of MAJOR from nothing.
root_make() {
	local major=$1 root suite mirror
	root=$(root_dir "$major")
	suite=$(pg_suite "$major")
	mirror=$(debian_mirror)
	if ! command -v debootstrap >/dev/null 2>&1; then
		echo "== installing: debootstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	fi
	root_remove "$root"
	mkdir -p "$root"
	echo "== making the $suite root for PostgreSQL $major in $root"
	# debootstrap mounts /proc and /sys in the root: in a namespace of its own
	if ! unshare --mount --propagation private -- \
		debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1; then
		tail -n 30 "$root.log" >&2
		echo "debootstrap of $suite failed (log: $root.log)" >&2
		return 1
	fi
	# No service starts in the root, no cluster is made by the packages, and
	# a snapshot of the archive may have a Release file past its Valid-Until.
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
	chmod 755 "$root/usr/sbin/policy-rc.d"
	mkdir -p "$root/etc/postgresql-common"
	echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.conf"
	echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99pg-async-no-valid-until"
	[ -f "$root/etc/resolv.conf" ] || cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	if [ "$suite" = "$HOST_SUITE" ]; then
		# this machine's own apt sources (its suite's updates and security
		# fixes too), so that the root's packages have this machine's
		# versions: a package built here depends on them
		cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
			"$root/etc/apt/sources.list.d/" 2>/dev/null || true
		[ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$root/etc/apt/sources.list"
		[ -f /etc/apt/sources.list ] || : >"$root/etc/apt/sources.list"
	fi
	if ! root_exec "$root" sh -c "apt-get update -qq &&
		apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
			$(root_packages "$major")" >>"$root.log" 2>&1; then
		tail -n 30 "$root.log" >&2
		echo "installing PostgreSQL $major in the $suite root failed (log: $root.log)" >&2
		return 1
	fi
	root_exec "$root" apt-get clean >/dev/null 2>&1 || true
	root_marker_text "$major" >"$root/$ROOT_MARKER"
	rm -f "$root.log"
}

# root_lock MAJOR takes the lock of the root of MAJOR on file descriptor 9,
# waiting for another run that holds it.
root_lock() {
	local lock
	mkdir -p "$PG_ASYNC_ROOTS"
	lock="$PG_ASYNC_ROOTS/$(pg_suite "$1")-$1.lock"
	exec 9>"$lock"
	if ! flock -n 9; then
		echo "== waiting for another run that uses the root of PostgreSQL $1"
		flock 9
	fi
}

# root_ensure MAJOR makes the root of MAJOR unless a complete one is there.
root_ensure() {
	if root_ok "$1"; then
		echo "== reusing the root $(root_dir "$1")"
	else
		root_make "$1" && root_ok "$1"
	fi
}

# pg_prefix MAJOR prints the directory that holds MAJOR's installation: / on
# this machine, else its root.
pg_prefix() {
	if pg_on_host "$1"; then
		echo /
	else
		root_dir "$1"
	fi
}

# pg_built_majors prints the versions of PG_VERSIONS for which pg_async is
# built and installed, here or in their roots.
pg_built_majors() {
	local m built=()
	for m in $(pg_majors); do
		if [ -f "$(pg_prefix "$m")/usr/lib/postgresql/$m/lib/pg_async.so" ]; then
			built+=("$m")
		fi
	done
	echo "${built[*]}"
}

# run_as_postgres MAJOR COMMAND runs a shell command as postgres where MAJOR
# runs: on this machine, or in its root.
run_as_postgres() {
	if pg_on_host "$1"; then
		runuser -u postgres -- bash -c "$2"
	else
		root_exec "$(root_dir "$1")" su postgres -s /bin/bash -c "$2"
	fi
}
