#!/usr/bin/env bash
# test/run-tests.sh: the whole pg_async test suite.
#
# Installs the Debian packages it needs, builds and installs pg_async, then
# runs the pg_regress tests and the TAP tests, each against throwaway
# clusters they start and stop themselves.  Exits non-zero on any failure.
#
#   sudo test/run-tests.sh          (or as root)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

ensure_packages
build_and_install "$src"

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

status=0
echo "== pg_regress and TAP tests (in $work)"
if ! as_user make -C "$work" PG_CONFIG="$PG_CONFIG" installcheck PROVE_FLAGS="--timer"; then
	status=1
	for f in "$work/regression.diffs"; do
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
