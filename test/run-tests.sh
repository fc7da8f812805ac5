#!/usr/bin/env bash
# test/run-tests.sh: the whole pg_async test suite, on every PostgreSQL
# version of PG_VERSIONS in test/lib.sh, one after the other.
#
# A version that this machine's Debian suite carries runs here, as
# test/suite.sh.  Every other one runs in a Debian root of its suite
# (test/roots.sh), made the first time and kept in /var/cache/pg_async/roots:
# the sources are copied into it, then built, installed and tested inside it
# by the same test/suite.sh.  Prints how long each version took and whether
# it passed; exits non-zero if any version failed.  Runs as root; as another
# user it runs itself again through sudo.
#
#   test/run-tests.sh              every version, then test/abi.sh,
#                                  test/major_upgrade.sh and the Debian
#                                  package
#   test/run-tests.sh --pg 17      one version (repeatable, or --pg 15,18)
#   test/run-tests.sh --deb        the Debian package only (test/deb.sh)
#
# PG_CONFIG=/path/to/pg_config tests that installation instead of Debian's,
# for the version of this machine.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"
. "$src/test/roots.sh"

usage() {
	sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

majors=
deb=
while [ $# -gt 0 ]; do
	case "$1" in
		--pg) [ $# -ge 2 ] || { usage >&2; exit 2; }; majors="$majors ${2//,/ }"; shift 2 ;;
		--pg=*) v=${1#*=}; majors="$majors ${v//,/ }"; shift ;;
		--deb) deb=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "run-tests.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
# a full run: every version, the cross-version loads, the Debian package
explicit=${majors}${deb}
if [ -z "$majors" ] && [ -z "$deb" ]; then
	majors=$(pg_majors)
	deb=1
fi
for m in $majors; do
	if ! pg_suite "$m" >/dev/null; then
		echo "run-tests.sh: PostgreSQL $m is not in PG_VERSIONS of test/lib.sh ($(pg_majors))" >&2
		exit 2
	fi
	if pg_on_host "$m" && [ -n "$PG_CONFIG_GIVEN" ] && [ "$PG_MAJOR" != "$m" ]; then
		echo "run-tests.sh: PG_CONFIG names PostgreSQL $PG_MAJOR, not $m" >&2
		exit 2
	fi
done

# duration SECONDS prints it as minutes and seconds.
duration() {
	printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# run_on_host MAJOR runs the suite here.
run_on_host() {
	if [ -n "$PG_CONFIG_GIVEN" ]; then
		"$src/test/suite.sh"
	else
		env -u PG_CONFIG PG_MAJOR="$1" "$src/test/suite.sh"
	fi
}

# run_in_root MAJOR runs the suite in the root of MAJOR, made or reused,
# holding the root's lock throughout; it sets root_seconds.  Run it in a
# subshell: the lock and the copy of the sources go with it.
run_in_root() {
	local root t0
	root=$(root_dir "$1")
	root_lock "$1"
	t0=$SECONDS
	root_ensure "$1" || { echo "== no root for PostgreSQL $1"; return 1; }
	echo "== root ready in $(duration $((SECONDS - t0)))"
	root_src=$(mktemp -d "$root/tmp/pg_async-src.XXXXXX") || return 1
	trap 'rm -rf "$root_src"' EXIT
	copy_source "$src" "$root_src" || return 1
	root_node_modules "$root" || return 1
	root_exec "$root" env PG_MAJOR="$1" PG_ASYNC_NODE_MODULES="$ROOT_NODE_MODULES" \
		PG_ASYNC_NODE_REQUIRED=1 bash "${root_src#"$root"}/test/suite.sh"
}

# The Node consumers of test/t/024_consumers.pl run in the roots too, with
# the root's Node.js (Debian's nodejs, root_packages) and pg from npm,
# installed once into the root by this machine's npm: the root has no npm.
ROOT_NODE_MODULES=/opt/pg_async-node/node_modules

# root_node_modules ROOT installs pg 8 (as test/t/024_consumers.pl does)
# from npm into ROOT's ROOT_NODE_MODULES, unless it is there already: into
# a directory beside it first, so that an install cut short is not taken
# for one that is done.
root_node_modules() {
	local dir="$1${ROOT_NODE_MODULES%/node_modules}" log
	[ ! -d "$dir/node_modules/pg" ] || return 0
	ensure_node || return 1
	rm -rf "$dir.new"
	mkdir -p "$dir.new"
	log=$(mktemp)
	if ! npm install --no-save --no-audit --no-fund --prefix "$dir.new" pg@8 >"$log" 2>&1 ||
		[ ! -d "$dir.new/node_modules/pg" ]; then
		cat "$log"
		rm -f "$log"
		echo "== npm install pg into $dir failed"
		return 1
	fi
	rm -f "$log"
	chmod -R a+rX "$dir.new" || return 1
	rm -rf "$dir"
	mv "$dir.new" "$dir"
}

status=0
summary=()

# record WHAT WHERE RC START prints and keeps the result of a stage that
# started at START (in $SECONDS) and exited with RC.
record() {
	local result=passed took
	took=$(duration $((SECONDS - $4)))
	if [ "$3" -ne 0 ]; then
		result=FAILED
		status=1
	fi
	echo "==== $1: $result in $took"
	summary+=("$1 ($2): $result in $took")
}

t_all=$SECONDS
for m in $majors; do
	t0=$SECONDS
	rc=0
	if pg_on_host "$m"; then
		where="on this machine"
		echo "==== PostgreSQL $m, $where"
		run_on_host "$m" || rc=$?
	else
		where="in a Debian $(pg_suite "$m") root"
		echo "==== PostgreSQL $m, $where"
		(run_in_root "$m") || rc=$?
	fi
	record "PostgreSQL $m" "$where" "$rc" "$t0"
done

# run_script WHAT SCRIPT runs test/SCRIPT as a stage of its own.
run_script() {
	local t0=$SECONDS rc=0
	echo "==== $1"
	"$src/test/$2" || rc=$?
	record "$1" "test/$2" "$rc" "$t0"
}

# with every version built: each one's library is refused by the others
[ -n "$explicit" ] || run_script "libraries loaded by another version" abi.sh
# and a database dumped from this machine's version restores into the others
[ -n "$explicit" ] || run_script "a dump restored into newer versions" major_upgrade.sh
[ -z "$deb" ] || run_script "the Debian package" deb.sh

echo
echo "==== summary ($(duration $((SECONDS - t_all))) in all)"
printf '%s\n' "${summary[@]}"
exit $status
