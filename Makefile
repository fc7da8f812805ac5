# Makefile for pg_async (PGXS)

EXTENSION = pg_async pg_async_router
MODULE_big = pg_async
OBJS = \
	src/pg_async.o \
	src/shmem.o \
	src/launcher.o \
	src/databases.o \
	src/idle.o \
	src/worker.o \
	src/worker_xact.o \
	src/batching.o \
	src/claim.o \
	src/claim_sql.o \
	src/ready_floor.o \
	src/executor.o \
	src/finish.o \
	src/recovery.o \
	src/maintenance.o \
	src/enqueue.o \
	src/registration.o \
	src/keys.o \
	src/sqlfuncs.o \
	src/register.o \
	src/stats.o \
	src/inflight.o \
	src/jobfuncs.o \
	src/external.o \
	src/claim_commit.o \
	src/consumer_depth.o \
	src/external_wait.o

# The scripts CREATE EXTENSION and ALTER EXTENSION ... UPDATE run, made into
# build/: the install script of the current version is sql/pg_async.sql;
# each update sql/updates/pg_async--A--B.sql takes the functions it changes
# from there (sql/assemble.sh), so that each is written once.  The install
# script of 0.1 starts the update chain that upgrade tests walk.
PG_ASYNC_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(dir $(firstword $(MAKEFILE_LIST)))pg_async.control)
# pg_async_router (pg_async_router.control), the PL/Proxy router in front of
# shards that run pg_async: its install script is sql/pg_async_router.sql,
# its updates sql/updates/pg_async_router--A--B.sql, made the same way from
# it, and the install script of its 0.1 starts their chain.
PG_ASYNC_ROUTER_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(dir $(firstword $(MAKEFILE_LIST)))pg_async_router.control)
SQL_UPDATES = $(notdir $(wildcard $(srcdir)/sql/updates/pg_async--*--*.sql))
ROUTER_UPDATES = $(notdir $(wildcard $(srcdir)/sql/updates/pg_async_router--*--*.sql))
DATA_built = build/pg_async--$(PG_ASYNC_VERSION).sql $(addprefix build/,$(SQL_UPDATES)) \
	build/pg_async_router--$(PG_ASYNC_ROUTER_VERSION).sql $(addprefix build/,$(ROUTER_UPDATES))
DATA = sql/pg_async--0.1.sql sql/pg_async_router--0.1.sql
PGFILEDESC = "pg_async - durable asynchronous invocation of SQL functions"
# installed into $(docdir)/extension: the custom queries of postgres_exporter
DOCS = contrib/postgres_exporter.yml

# pg_regress: a throwaway instance with the library preloaded.
REGRESS = setup register enqueue execute retry privileges monitoring observability lambda external priorities loops rates keys faults security upgrade
REGRESS_OPTS = --inputdir=$(srcdir)/test --temp-config=$(srcdir)/test/regress.conf --temp-instance=tmp_check_regress
# isolation tests (test/specs): concurrent sessions, in a database that no
# worker serves (regress.conf serves contrib_regression only)
ISOLATION = pause_skips_held_jobs
ISOLATION_OPTS = --inputdir=$(srcdir)/test --temp-config=$(srcdir)/test/regress.conf --temp-instance=tmp_check_iso

# TAP tests (PostgreSQL::Test::Cluster) for restarts, crashes and kills.
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

PG_CPPFLAGS = -I$(srcdir)/src

# The benchmark program (test/bench), a libpq client.  The libpq clients
# link with PGXS's $(LDFLAGS), which start with -L$(libdir): the libpq of the
# installation PG_CONFIG names (and its rpath, where it was built with one).
BENCH = test/bench/pg_async_bench
EXTRA_CLEAN = $(BENCH) $(TOP) $(RUN) pg_async-*.zip build
PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Built by plain "make" too: an extra prerequisite of PGXS's "all".
all: $(BENCH)

$(BENCH): $(BENCH).c
	$(CC) $(CFLAGS) -I$(includedir) $< -o $@ $(LDFLAGS) $(LDFLAGS_EX) -lpq -lpthread -lm

build/pg_async--$(PG_ASYNC_VERSION).sql: sql/pg_async.sql
	$(MKDIR_P) build
	cp $< $@

build/pg_async_router--$(PG_ASYNC_ROUTER_VERSION).sql: sql/pg_async_router.sql
	$(MKDIR_P) build
	cp $< $@

$(addprefix build/,$(SQL_UPDATES)): build/%: sql/updates/% sql/pg_async.sql sql/assemble.sh $(wildcard $(srcdir)/sql/updates/pg_async--*-functions.sql)
	$(MKDIR_P) build
	$(SHELL) $(srcdir)/sql/assemble.sh $(srcdir)/sql/pg_async.sql $< > $@.tmp
	mv $@.tmp $@

$(addprefix build/,$(ROUTER_UPDATES)): build/%: sql/updates/% sql/pg_async_router.sql sql/assemble.sh $(wildcard $(srcdir)/sql/updates/pg_async_router--*-functions.sql)
	$(MKDIR_P) build
	$(SHELL) $(srcdir)/sql/assemble.sh $(srcdir)/sql/pg_async_router.sql $< > $@.tmp
	mv $@.tmp $@

# every object depends on the shared headers
$(OBJS): src/pg_async.h src/compat.h src/worker_internal.h src/shmem.h src/stats.h src/job.h

# pg_async_top (bin/pg_async_top.c and the files bin/pg_async_top.h lists),
# the live monitor: a libpq client, not part of the module (it is not in
# OBJS), installed into bindir.
TOP = bin/pg_async_top
TOP_SRCS = \
	bin/pg_async_top.c \
	bin/top_terminal.c \
	bin/top_text.c \
	bin/top_sample.c \
	bin/top_databases.c \
	bin/top_draw.c

all: $(TOP)

# pg_async_run (bin/pg_async_run.c and the files bin/pg_async_run.h lists),
# the command runner of external functions: a libpq client too, installed
# beside pg_async_top.
RUN = bin/pg_async_run
RUN_SRCS = \
	bin/pg_async_run.c \
	bin/run_db.c \
	bin/run_child.c

all: $(RUN)

$(RUN): $(RUN_SRCS) bin/pg_async_run.h pg_async.control
	$(CC) $(CFLAGS) -DPG_ASYNC_VERSION='"$(PG_ASYNC_VERSION)"' -I$(includedir) $(filter %.c,$^) -o $@ $(LDFLAGS) $(LDFLAGS_EX) -lpq

# its --version is the extension's version (PG_ASYNC_VERSION, above)
$(TOP): $(TOP_SRCS) bin/pg_async_top.h pg_async.control
	$(CC) $(CFLAGS) -DPG_ASYNC_VERSION='"$(PG_ASYNC_VERSION)"' -I$(includedir) $(filter %.c,$^) -o $@ $(LDFLAGS) $(LDFLAGS_EX) -lpq -lm

install: install-top

install-top: $(TOP) $(RUN)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(TOP) '$(DESTDIR)$(bindir)/'
	$(INSTALL_PROGRAM) $(RUN) '$(DESTDIR)$(bindir)/'

uninstall: uninstall-top

uninstall-top:
	rm -f '$(DESTDIR)$(bindir)/pg_async_top' '$(DESTDIR)$(bindir)/pg_async_run'

.PHONY: install-top uninstall-top

# make dist: the release zip for PGXN, pg_async-VERSION.zip with its files
# under pg_async-VERSION/, VERSION being META.json's.  It holds the
# committed tree at HEAD (git archive), without what .gitattributes marks
# export-ignore.
PG_ASYNC_DIST = pg_async-$(shell sed -n 's/^   "version": "\(.*\)",$$/\1/p' $(srcdir)/META.json)

dist:
	git -C $(srcdir) archive --format=zip --prefix=$(PG_ASYNC_DIST)/ \
		-o $(abspath $(PG_ASYNC_DIST).zip) HEAD

.PHONY: dist
