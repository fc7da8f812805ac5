#!/usr/bin/env bash
# test/suite.sh: the whole pg_async test suite on one PostgreSQL version,
# the one test/lib.sh picks (PG_CONFIG, else PG_MAJOR, else this machine's).
# test/run-tests.sh runs it for every version, here or in a root.
#
# Installs the Debian packages it needs, builds and installs pg_async (a
# compiler warning fails the run), then runs the pg_regress tests and the
# TAP tests, each against throwaway clusters they start and stop themselves.
# Exits non-zero on any failure.
#
#   PG_MAJOR=15 test/suite.sh     (as root, or as a user it runs sudo for)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"

echo "== $("$PG_CONFIG" --version 2>/dev/null || echo "PostgreSQL $PG_MAJOR (not installed yet)"), $PG_CONFIG"
ensure_packages
# Node.js for the Node consumers of test/t/024_consumers.pl, on this machine,
# where they must then run; in a root, test/run-tests.sh provides it and says
# so (PG_ASYNC_NODE_MODULES, PG_ASYNC_NODE_REQUIRED)
if [ -z "${PG_ASYNC_IN_ROOT:-}" ]; then
	ensure_node
	export PG_ASYNC_NODE_REQUIRED=1
fi
# built again from nothing: objects of another version are not reused, and
# every warning shows
make -s -C "$src" PG_CONFIG="$PG_CONFIG" clean >/dev/null
build_log=$(mktemp)
if ! build_and_install "$src" 2>"$build_log"; then
	cat "$build_log"
	rm -f "$build_log"
	echo "== the build of pg_async FAILED"
	exit 1
fi
if grep -q 'warning:' "$build_log"; then
	cat "$build_log"
	rm -f "$build_log"
	echo "== the build of pg_async has warnings"
	exit 1
fi
rm -f "$build_log"
echo "== built without warnings"

work=$(scratch_copy "$src")
small=
cleanup() {
	[ -z "$small" ] || umount "$small" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# The disk-full case of test/t/006_faults.pl needs a small file system that
# the cluster user can write; as root we mount a 24 MB tmpfs for it.  Where
# mounting is not allowed, that case is skipped (and says so).
if [ "$(id -u)" = 0 ]; then
	d="$work/small_fs"
	mkdir -p "$d"
	if mount -t tmpfs -o size=24m tmpfs "$d" 2>/dev/null; then
		chown "$RUN_USER" "$d"
		small=$d
		export PG_ASYNC_TEST_TMPFS="$d"
	fi
fi
if [ -n "$small" ]; then
	echo "== the disk-full case runs on a 24 MB tmpfs"
else
	echo "== the disk-full case is skipped: no tmpfs could be mounted"
fi

status=0
echo "== pg_regress and TAP tests (in $work)"
if ! as_user make -C "$work" PG_CONFIG="$PG_CONFIG" installcheck PROVE_FLAGS="--timer"; then
	status=1
	for f in "$work/regression.diffs" "$work/output_iso/regression.diffs"; do
		[ -f "$f" ] && { echo "== $f"; cat "$f"; }
	done
	for f in "$work"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] && { echo "== tail of $f"; tail -n 60 "$f"; }
	done
fi

if [ $status -eq 0 ]; then
	echo "== all pg_async tests passed"
else
	echo "== pg_async tests FAILED"
fi
exit $status
