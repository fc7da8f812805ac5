/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Differences between the PostgreSQL versions pg_async builds against
 *	  (15 to 18), in one place.  Every other file includes this one instead
 *	  of testing PG_VERSION_NUM itself.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_COMPAT_H
#define PG_ASYNC_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "pg_async supports PostgreSQL 15, 16, 17 and 18"
#endif

#include "catalog/pg_proc.h"
#include "utils/acl.h"

/* PG 16 folded the per-object ACL checks into object_aclcheck. */
#if PG_VERSION_NUM >= 160000
#define pg_async_proc_aclcheck(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#define pg_async_database_ownercheck(db, role) \
	object_ownercheck(DatabaseRelationId, (db), (role))
#else
#define pg_async_proc_aclcheck(proc, role, mode) \
	pg_proc_aclcheck((proc), (role), (mode))
#define pg_async_database_ownercheck(db, role) \
	pg_database_ownercheck((db), (role))
#endif

/*
 * PG 17 added transaction_timeout, which StartTransaction arms in every
 * backend, background workers included, and which ends the process when it
 * fires: a worker's batch outlives it as soon as a handler runs longer.  The
 * workers take no transaction_timeout; the registered timeout bounds each
 * handler instead.
 */
#include "utils/guc.h"
#if PG_VERSION_NUM >= 170000
#define pg_async_disable_transaction_timeout() \
	SetConfigOption("transaction_timeout", "0", PGC_USERSET, PGC_S_SESSION)
#else
#define pg_async_disable_transaction_timeout() ((void) 0)
#endif

/*
 * PG 17 lets an extension name its wait events (WaitEventExtensionNew), so
 * that pg_stat_activity.wait_event says what a pg_async process waits for.
 * Before, every wait of an extension shows as "Extension".  The name is
 * registered in shared memory by the first process that asks, and each
 * process asks once (worker.c, launcher.c).
 */
#if PG_VERSION_NUM >= 170000
#include "utils/wait_event.h"
#define pg_async_wait_event(name)	WaitEventExtensionNew(name)
#else
#define pg_async_wait_event(name)	PG_WAIT_EXTENSION
#endif

/*
 * A library built for another major version must be refused by
 * PostgreSQL's magic block, whose message names both versions
 * ("incompatible library ...: version mismatch"), not by the dynamic
 * loader, which PostgreSQL asks to bind every symbol at load and which
 * fails first on any function the server lacks ("undefined symbol:
 * pg_proc_aclcheck").  The symbols pg_async uses that some of 15 to 18 lack
 * are therefore weak references: a library of another version loads, and
 * the magic block refuses it before anything runs.  test/abi.sh checks
 * that no other symbol differs.  (Functions the headers inline can pull in
 * more: heap_getattr calls heap_datum_check, which recent minor releases
 * of 15 to 17 have and 18 lacks.  pg_async reads tuples through
 * SPI_getbinval instead, so that the library never references it; a weak
 * reference there could be called where a server lacks the function.)
 */
#if PG_VERSION_NUM < 160000
#pragma weak pg_proc_aclcheck
#pragma weak pg_database_ownercheck
#else
#pragma weak object_aclcheck
#pragma weak object_ownercheck
#endif
#if PG_VERSION_NUM >= 170000
#pragma weak WaitEventExtensionNew
#endif
#if PG_VERSION_NUM >= 180000
#pragma weak pqsignal_be
#else
#pragma weak pqsignal
#endif

#endif							/* PG_ASYNC_COMPAT_H */
