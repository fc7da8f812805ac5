/*-------------------------------------------------------------------------
 *
 * sqlfuncs.c
 *	  What the SQL-callable C functions share: acting as the extension's
 *	  owner, and who may act as a role.  And the SQL-callable functions
 *	  that read shared memory (the workers view, the live worker pids, the
 *	  set-up check).  Those that change registrations are in register.c,
 *	  those acting on jobs and dead letters in jobfuncs.c.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "storage/lmgr.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(pg_async_workers_view);
PG_FUNCTION_INFO_V1(pg_async_all_workers_view);
PG_FUNCTION_INFO_V1(pg_async_live_worker_pids);
PG_FUNCTION_INFO_V1(pg_async_worker_started_at);
PG_FUNCTION_INFO_V1(pg_async_check_setup);
PG_FUNCTION_INFO_V1(pg_async_try_recovery_lock);
PG_FUNCTION_INFO_V1(pg_async_recovery_incomplete);

/*
 * pg_async_extension_owner returns the owner of pg_async's tables, the role
 * the privileged internal functions run as.
 */
Oid
pg_async_extension_owner(void)
{
	Oid			nsp = get_namespace_oid("async", false);
	Oid			relid = get_relname_relid("functions", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async is not installed correctly"),
				 errdetail("Table async.functions is missing."),
				 errhint("Run DROP EXTENSION pg_async; CREATE EXTENSION pg_async;")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * pg_async_handlers_bound tells whether async.functions (functions_relid)
 * binds each handler by its OID, as from 0.5 on; before, it held their
 * signatures as text.
 */
bool
pg_async_handlers_bound(Oid functions_relid)
{
	AttrNumber	attnum = get_attnum(functions_relid, "handler");

	return attnum != InvalidAttrNumber &&
		get_atttype(functions_relid, attnum) == REGPROCEDUREOID;
}

/*
 * pg_async_owner_begin makes the extension's owner the current user, with a
 * safe search_path, and connects to SPI: the privileged internal functions
 * run as that role.  pg_async_owner_end undoes both; an error undoes them
 * too, with its transaction.
 */
void
pg_async_owner_begin(AsyncOwnerScope *scope)
{
	GetUserIdAndSecContext(&scope->save_userid, &scope->save_sec_context);
	SetUserIdAndSecContext(pg_async_extension_owner(),
						   scope->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	scope->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
}

void
pg_async_owner_end(AsyncOwnerScope *scope)
{
	SPI_finish();
	AtEOXact_GUC(true, scope->save_nestlevel);
	SetUserIdAndSecContext(scope->save_userid, scope->save_sec_context);
}

/*
 * pg_async_run_as_owner runs one statement as the extension's owner, with a
 * safe search_path, and returns the first column of its first row (by-value
 * types only; *isnull is set when there is none).
 */
Datum
pg_async_run_as_owner(const char *sql, int nargs, Oid *argtypes, Datum *args,
			 const char *nulls, bool *isnull)
{
	AsyncOwnerScope scope;
	Datum		result = (Datum) 0;
	int			rc;

	pg_async_owner_begin(&scope);
	rc = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 1);
	if (rc < 0)
		elog(ERROR, "pg_async: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	*isnull = true;
	if (SPI_processed > 0 && SPI_tuptable != NULL)
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	pg_async_owner_end(&scope);
	return result;
}

/* pg_async_may_act_as: the current user has the privileges of 'role', or is superuser. */
bool
pg_async_may_act_as(Oid role)
{
	return superuser() || has_privs_of_role(GetUserId(), role);
}

/*
 * workers_rows puts one row per live worker into the caller's tuplestore,
 * copied under its slot's spinlock: the workers of this database, or with
 * all those of every database, with the database's name (NULL for a
 * database dropped meanwhile) in front.
 */
static void
workers_rows(FunctionCallInfo fcinfo, bool all)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; AsyncShmem != NULL && i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		AsyncWorkerSlot copy;
		Datum		values[8];
		bool		nulls[8] = {false};
		int			c = 0;

		SpinLockAcquire(&slot->mutex);
		copy.pid = slot->pid;
		copy.dboid = slot->dboid;
		copy.busy = slot->busy;
		memcpy(copy.function, slot->function, sizeof(copy.function));
		memcpy(copy.event_id, slot->event_id, sizeof(copy.event_id));
		copy.attempt = slot->attempt;
		copy.started_at = slot->started_at;
		copy.jobs_done = slot->jobs_done;
		SpinLockRelease(&slot->mutex);

		if (copy.pid == 0 || !slot->in_use || (!all && copy.dboid != MyDatabaseId))
			continue;

		if (all)
		{
			char	   *datname = get_database_name(copy.dboid);

			if (datname != NULL)
				values[c] = DirectFunctionCall1(namein, CStringGetDatum(datname));
			else
				nulls[c] = true;
			c++;
		}
		values[c] = Int32GetDatum(copy.pid);
		values[c + 1] = CStringGetTextDatum(copy.busy ? "running" : "idle");
		if (copy.busy)
		{
			values[c + 2] = CStringGetTextDatum(copy.function);
			values[c + 3] = CStringGetTextDatum(copy.event_id);
			values[c + 4] = Int32GetDatum(copy.attempt);
			values[c + 5] = TimestampTzGetDatum(copy.started_at);
		}
		else
			nulls[c + 2] = nulls[c + 3] = nulls[c + 4] = nulls[c + 5] = true;
		values[c + 6] = Int64GetDatum((int64) copy.jobs_done);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/* async._workers(): the workers of this database, behind async.workers */
Datum
pg_async_workers_view(PG_FUNCTION_ARGS)
{
	workers_rows(fcinfo, false);
	return (Datum) 0;
}

/*
 * async._all_workers(): the workers of every database, behind
 * async.all_workers
 */
Datum
pg_async_all_workers_view(PG_FUNCTION_ARGS)
{
	workers_rows(fcinfo, true);
	return (Datum) 0;
}

/*
 * async._worker_started_at(pid): when the live worker with this pid started,
 * or NULL when no worker has it.  A job claimed before that moment was
 * claimed by an earlier process that had the same pid.
 */
Datum
pg_async_worker_started_at(PG_FUNCTION_ARGS)
{
	int32		pid = PG_GETARG_INT32(0);
	int			i;

	for (i = 0; AsyncShmem != NULL && i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		TimestampTz started = 0;
		bool		match;

		SpinLockAcquire(&slot->mutex);
		match = (slot->pid != 0 && slot->pid == pid && pg_async_same_db(slot));
		if (match)
			started = slot->proc_start;
		SpinLockRelease(&slot->mutex);
		if (match)
			PG_RETURN_TIMESTAMPTZ(started);
	}
	PG_RETURN_NULL();
}

/*
 * async._live_worker_pids(): the pids of the workers alive now.  Called by
 * async._recover() while it runs, so that a worker that claimed jobs before
 * the recovery's snapshot is surely in the list.
 */
Datum
pg_async_live_worker_pids(PG_FUNCTION_ARGS)
{
	Datum	   *pids;
	int			n = 0;
	int			i;

	if (AsyncShmem == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT4OID));

	pids = palloc(sizeof(Datum) * AsyncShmem->nslots);
	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		pid_t		pid;

		SpinLockAcquire(&slot->mutex);
		pid = slot->pid;
		SpinLockRelease(&slot->mutex);
		if (pid != 0 && pg_async_same_db(slot))
			pids[n++] = Int32GetDatum(pid);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(pids, n, INT4OID, sizeof(int32), true,
										  TYPALIGN_INT));
}

/*
 * async._check_setup(): run by CREATE EXTENSION, warns when no worker will
 * serve this database; at commit, the launcher looks at it again.
 */
Datum
pg_async_check_setup(PG_FUNCTION_ARGS)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	pg_async_note_extension_created();

	if (!pg_async_preloaded)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async is not in shared_preload_libraries: no worker will run jobs"),
				 errdetail("Jobs can be enqueued, but they stay queued until workers run."),
				 errhint("Add pg_async to shared_preload_libraries in postgresql.conf and restart the server.")));
	else if (dbname != NULL && !pg_async_database_served(dbname))
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async workers do not serve database \"%s\"", dbname),
				 errdetail("pg_async.databases is \"%s\" and pg_async.database is \"%s\"; jobs enqueued in this database stay queued.",
						   pg_async_databases, pg_async_database),
				 errhint("Add the database to pg_async.databases (or set it to '*' and pg_async.database to '') and reload the configuration.")));
	else if (pg_async_workers == 0)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async.workers is 0: no worker will run jobs"),
				 errhint("Set pg_async.workers to 1 or more and reload the configuration.")));
	PG_RETURN_VOID();
}

/*
 * async._try_recovery_lock(): takes, without waiting, the lock that lets
 * one async._recover() run at a time, for the rest of the transaction.
 * False when another transaction holds it.  Like the claims' lock
 * (worker.c), it is a lock on a sub-object of the extension, which no SQL
 * command takes: no role can hold it to stop the recovery of others' jobs.
 */
Datum
pg_async_try_recovery_lock(PG_FUNCTION_ARGS)
{
	if (!ConditionalLockDatabaseObject(ExtensionRelationId,
									   get_extension_oid("pg_async", false),
									   ASYNC_RECOVERY_LOCK, ExclusiveLock))
		PG_RETURN_BOOL(false);
	pg_async_recovery_locked = true;
	PG_RETURN_BOOL(true);
}

/*
 * async._recovery_incomplete(): async._recover() left jobs of dead workers
 * it found (another transaction held them, or recovering them failed for a
 * shortage): the worker that ran it looks again soon (recovery.c).
 */
Datum
pg_async_recovery_incomplete(PG_FUNCTION_ARGS)
{
	pg_async_recovery_left = true;
	PG_RETURN_VOID();
}
