#!/usr/bin/env bash
# test/deb.sh: the Debian package of pg_async, built and used as Debian's
# own extension packages are.
#
# 1. Builds postgresql-NN-pg-async from debian/ with dpkg-buildpackage
#    (pg_buildext, from postgresql-server-dev-all), NN being the PostgreSQL
#    of this machine's suite, without its build-time tests (the suite ran
#    them already: DEB_BUILD_OPTIONS=nocheck).
# 2. Makes, or reuses, a Debian root of this machine's suite that holds
#    PostgreSQL NN and nothing of pg_async: no source tree, no compiler
#    (kept in $PG_ASYNC_ROOTS/deb, see test/roots.sh).
# 3. Installs the package there with dpkg -i, and checks that the files
#    pg_async needs come from it.
# 4. Runs the demo (test/demo.sh --installed) against it.
#
#   test/deb.sh     (as root, or as a user it runs sudo for)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"
become_root "$0" "$@"
. "$src/test/roots.sh"

major=$(pg_host_major)
arch=$(dpkg --print-architecture)
package=postgresql-$major-pg-async

# the build, in a copy of the sources
install_packages debhelper dpkg-dev postgresql-all
work=$(mktemp -d /tmp/pg_async-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
copy_source "$src" "$work/src"
echo "== building $package with dpkg-buildpackage"
if ! (cd "$work/src" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
	tail -n 40 "$work/build.log"
	echo "== the package build FAILED"
	exit 1
fi
deb=$(ls "$work"/"$package"_*_"$arch".deb)
echo "== built $(basename "$deb")"

# a root with PostgreSQL alone
export PG_ASYNC_ROOTS="$PG_ASYNC_ROOTS/deb"
export ROOT_PACKAGES="postgresql-$major"
root=$(root_dir "$major")
root_lock "$major"
root_ensure "$major"
if root_exec "$root" sh -c "dpkg-query -W 'postgresql-*-pg-async' >/dev/null 2>&1"; then
	# a package left by an earlier run that stopped half-way
	root_exec "$root" sh -c "dpkg --purge \$(dpkg-query -W -f '\${Package}\n' 'postgresql-*-pg-async')" >/dev/null
fi
for f in gcc make "usr/include/postgresql/$major/server"; do
	if [ -e "$root/usr/bin/$f" ] || [ -e "$root/$f" ]; then
		echo "== the root has $f: it is not a machine without a source build"
		exit 1
	fi
done

# dpkg -i, then what the package needs from the archive, if anything
cp "$deb" "$root/tmp/"
echo "== dpkg -i $(basename "$deb") in a clean $(pg_suite "$major") root"
root_exec "$root" sh -c "dpkg -i /tmp/$(basename "$deb") || apt-get install -f -y -qq" \
	>"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
rm -f "$root/tmp/$(basename "$deb")"
status=0
for f in "/usr/lib/postgresql/$major/lib/pg_async.so" \
	"/usr/share/postgresql/$major/extension/pg_async.control" \
	"/usr/lib/postgresql/$major/bin/pg_async_top"; do
	owner=$(root_exec "$root" dpkg -S "$f" 2>/dev/null | cut -d: -f1)
	if [ "$owner" != "$package" ]; then
		echo "== $f does not come from $package (${owner:-no package})"
		status=1
	fi
done

# the demo, against the installed package
demo="$root/tmp/pg_async-demo"
rm -rf "$demo"
mkdir -p "$demo/test"
cp "$src/test/demo.sh" "$src/test/demo.sql" "$src/test/lib.sh" "$demo/test/"
echo "== the demo against the package"
if ! root_exec "$root" env PG_MAJOR="$major" bash /tmp/pg_async-demo/test/demo.sh --installed \
	>"$work/demo.log" 2>&1; then
	cat "$work/demo.log"
	echo "== the demo FAILED"
	status=1
elif [ "$(root_exec "$root" "/usr/lib/postgresql/$major/bin/pg_async_top" --version)" != \
	"pg_async_top $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$src/pg_async.control")" ]; then
	echo "== pg_async_top of the package has another version"
	status=1
fi
# the redriven order is charged once, and no dead letter is left
if [ $status -eq 0 ] && ! tail -n 30 "$work/demo.log" | tr -s ' ' |
	grep -Eq '^ succeeded \| [0-9]+$'; then
	tail -n 30 "$work/demo.log"
	echo "== the demo's redriven event did not succeed"
	status=1
fi
rm -rf "$demo"
root_exec "$root" sh -c "dpkg --purge $package" >/dev/null 2>&1 || true

if [ $status -eq 0 ]; then
	echo "== the Debian package builds, installs with dpkg -i, and runs the demo"
fi
exit $status
