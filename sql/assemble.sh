#!/bin/sh
# sql/assemble.sh INSTALL UPDATE: prints the update script UPDATE, with
# each line
#
#   -- @function async.name(
#
# replaced by the definition of the one function of the install script
# INSTALL whose "CREATE FUNCTION" line starts with that text, made
# "CREATE OR REPLACE FUNCTION".  The Makefile runs it for each update of
# sql/updates, so that a function an update changes is written once, in
# the install script of its extension (sql/pg_async.sql, or
# sql/pg_async_router.sql).  The update keeps its DDL, and the comments
# and grants of a new function.  A line
#
#   -- @function@0.8 async.name(
#
# takes the definition from pg_async--0.8-functions.sql, beside UPDATE
# instead: the function as that version had it, for the updates before a
# version that changed it in a way their own schema cannot hold.  (The
# file is named after the extension UPDATE updates, the part of its name
# before the first "--": pg_async_router--0.2-functions.sql for an update
# of pg_async_router.)  A directive that names no function, or more than
# one, fails the build.
# A line
#
#   -- @view async.name WITH
#
# does the same for the view whose "CREATE VIEW" line starts with that
# text, made "CREATE OR REPLACE VIEW".
set -eu

awk -v install="$1" -v update="$2" -v dir="$(dirname "$2")" \
	-v extension="$(basename "$2" | sed 's/--.*//')" '
# load(file) reads file into source[1..n]
function load(file,    line) {
	n = 0
	while ((getline line < file) > 0)
		source[++n] = line
	close(file)
	loaded = file
}

BEGIN {
	load(install)
}

# the definition starting at line i of the install script: up to the first
# line ending in ";" outside its dollar-quoted body ($$ or $tag$)
function definition(i,    out, quotes, text, copy, tag) {
	quotes = 0
	tag = ""
	for (; i <= n; i++) {
		text = source[i]
		if (tag == "" && match(text, /\$[A-Za-z0-9_]*\$/))
			tag = substr(text, RSTART, RLENGTH)
		if (tag != "") {
			copy = text
			quotes += gsub_literal(copy, tag)
		}
		out = out text "\n"
		if (quotes % 2 == 0 && text ~ /;[ \t]*$/)
			return out
	}
	return ""
}

# how many times the string tag stands in text
function gsub_literal(text, tag,    count, at) {
	count = 0
	while ((at = index(text, tag)) > 0) {
		count++
		text = substr(text, at + length(tag))
	}
	return count
}

/^-- @view / {
	from = install
	kind = "VIEW"
	prefix = "CREATE VIEW " substr($0, length("-- @view ") + 1)
}

/^-- @function(@[0-9.]+)? / {
	from = install
	kind = "FUNCTION"
	if (match($0, /^-- @function@[0-9.]+ /)) {
		from = dir "/" extension "--" substr($0, length("-- @function@") + 1,
			RLENGTH - length("-- @function@") - 1) "-functions.sql"
		prefix = "CREATE FUNCTION " substr($0, RLENGTH + 1)
	} else
		prefix = "CREATE FUNCTION " substr($0, length("-- @function ") + 1)
}

/^-- @(function(@[0-9.]+)?|view) / {
	if (loaded != from)
		load(from)
	found = 0
	for (i = 1; i <= n; i++)
		if (index(source[i], prefix) == 1) {
			found++
			at = i
		}
	if (found != 1) {
		printf "%s:%d: %d functions of %s start with \"%s\"\n",
			update, FNR, found, from, prefix > "/dev/stderr"
		exit 1
	}
	text = definition(at)
	if (text == "") {
		printf "%s:%d: the definition of \"%s\" does not end\n",
			update, FNR, prefix > "/dev/stderr"
		exit 1
	}
	sub("^CREATE " kind " ", "CREATE OR REPLACE " kind " ", text)
	printf "%s", text
	next
}

{ print }
' "$2"
