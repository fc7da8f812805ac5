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

/* PG 16 folded the per-object ACL helpers into object_aclcheck/ownercheck. */
#if PG_VERSION_NUM >= 160000
#define pg_async_proc_aclcheck(proc, role, mode) \
	object_aclcheck(ProcedureRelationId, (proc), (role), (mode))
#define pg_async_proc_ownercheck(proc, role) \
	object_ownercheck(ProcedureRelationId, (proc), (role))
#else
#define pg_async_proc_aclcheck(proc, role, mode) \
	pg_proc_aclcheck((proc), (role), (mode))
#define pg_async_proc_ownercheck(proc, role) \
	pg_proc_ownercheck((proc), (role))
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

#endif							/* PG_ASYNC_COMPAT_H */
