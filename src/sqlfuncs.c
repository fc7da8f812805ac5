/*-------------------------------------------------------------------------
 *
 * sqlfuncs.c
 *	  The SQL-callable functions of pg_async written in C: those that must
 *	  know who calls them (register, unregister, redrive) and those that read
 *	  shared memory (the workers view, the live worker pids, the set-up
 *	  check).
 *
 *	  The first kind check the caller here, with GetUserId(), and then do
 *	  their writes as the extension's owner through an internal SQL function
 *	  that PUBLIC may not execute.  A SECURITY DEFINER function could not do
 *	  the check: inside it, the caller is no longer known.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
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

PG_FUNCTION_INFO_V1(pg_async_register);
PG_FUNCTION_INFO_V1(pg_async_unregister);
PG_FUNCTION_INFO_V1(pg_async_pause);
PG_FUNCTION_INFO_V1(pg_async_resume);
PG_FUNCTION_INFO_V1(pg_async_redrive);
PG_FUNCTION_INFO_V1(pg_async_workers_view);
PG_FUNCTION_INFO_V1(pg_async_live_worker_pids);
PG_FUNCTION_INFO_V1(pg_async_worker_started_at);
PG_FUNCTION_INFO_V1(pg_async_check_setup);

/* Longest registered name. */
#define ASYNC_MAX_NAME_LEN	(ASYNC_NAME_SIZE - 1)

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
 * run_as_owner runs one statement as the extension's owner, with a safe
 * search_path, and returns the first column of its first row (by-value
 * types only; *isnull is set when there is none).
 */
static Datum
run_as_owner(const char *sql, int nargs, Oid *argtypes, Datum *args,
			 const char *nulls, bool *isnull)
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Datum		result = (Datum) 0;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(pg_async_extension_owner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	rc = SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 1);
	if (rc < 0)
		elog(ERROR, "pg_async: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	*isnull = true;
	if (SPI_processed > 0 && SPI_tuptable != NULL)
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
	SPI_finish();

	AtEOXact_GUC(true, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return result;
}

/*
 * registration_owner looks up who may change the registration 'name': its
 * run_as and registered_by roles.  Returns false if there is none.
 */
static bool
registration_owner(text *name, Oid *run_as, Oid *registered_by)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		found = false;

	args[0] = PointerGetDatum(name);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (SPI_execute_with_args("SELECT f.run_as::pg_catalog.oid, f.registered_by::pg_catalog.oid"
							  "  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading async.functions failed");
	if (SPI_processed == 1)
	{
		bool		isnull;

		*run_as = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
		*registered_by = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 2, &isnull));
		found = true;
	}
	SPI_finish();
	return found;
}

/* may_act_as: the current user has the privileges of 'role', or is superuser. */
static bool
may_act_as(Oid role)
{
	return superuser() || has_privs_of_role(GetUserId(), role);
}

/* check_retry_delays refuses a retry_delays array with NULLs or negative delays. */
static void
check_retry_delays(ArrayType *delays)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (ARR_NDIM(delays) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_delays must be a one-dimensional array")));
	deconstruct_array(delays, INTERVALOID, sizeof(Interval), false, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		Interval   *iv;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("retry_delays must not contain NULL")));
		iv = DatumGetIntervalP(elems[i]);
		if (iv->time < 0 || iv->day < 0 || iv->month < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retry delay %s is negative",
							DatumGetCString(DirectFunctionCall1(interval_out, elems[i]))),
					 errhint("Give delays of zero or more, such as '{1 minute,2 minutes}'.")));
	}
}

/*
 * check_destination refuses an on_success or on_failure destination that is
 * the function itself (an endless chain), is not registered, or whose
 * handler the caller may not EXECUTE: the worker enqueues the records, so
 * the caller must be allowed to enqueue for the destination.
 */
static void
check_destination(text *name, text *destination, const char *what)
{
	char	   *dest = text_to_cstring(destination);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *handler = NULL;
	Oid			fnoid;

	if (strcmp(dest, text_to_cstring(name)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s destination of function \"%s\" must be another function", what, dest)));

	/* registrations are readable by everyone */
	args[0] = PointerGetDatum(destination);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (SPI_execute_with_args("SELECT f.handler FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading async.functions failed");
	if (SPI_processed == 1)
	{
		char	   *value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
			handler = MemoryContextStrdup(caller_cxt, value);
	}
	SPI_finish();

	if (handler == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s destination \"%s\" is not registered with pg_async", what, dest),
				 errhint("Register the destination function first.")));
	fnoid = pg_async_resolve_handler(handler);
	if (!OidIsValid(fnoid) ||
		pg_async_proc_aclcheck(fnoid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to use function \"%s\" as %s destination", dest, what),
				 errdetail("A destination needs EXECUTE on its handler.")));
}

/*
 * async.register(handler, name, max_attempts, retry_delays, timeout, run_as)
 *
 * Registers handler under name, or updates the registration.  A caller who
 * is not superuser must have the privileges of the handler's owner and of
 * run_as, and of the roles of a registration it replaces; run_as defaults to
 * the handler's owner, so a handler never runs with more rights than the
 * role that can change its code.
 */
Datum
pg_async_register(PG_FUNCTION_ARGS)
{
	Oid			handler;
	HeapTuple	tup;
	Form_pg_proc proc;
	text	   *name;
	int32		max_attempts;
	ArrayType  *retry_delays;
	Interval   *timeout;
	Oid			run_as;
	Oid			proowner;
	Oid			old_run_as;
	Oid			old_registered_by;
	char	   *signature;
	Oid			argtypes[11] = {TEXTOID, TEXTOID, REGROLEOID, INT4OID,
		INTERVALARRAYOID, INTERVALOID, REGROLEOID, INTERVALOID, INT4OID, TEXTOID, TEXTOID};
	Datum		args[11];
	char		nulls[12] = "           ";
	Interval   *max_event_age;
	bool		isnull;
	int			i;

	for (i = 0; i < 5; i++)
		if (PG_ARGISNULL(i) && i != 1)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							i == 0 ? "handler" : i == 2 ? "max_attempts" :
							i == 3 ? "retry_delays" : "timeout")));

	handler = PG_GETARG_OID(0);
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", handler)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	proowner = proc->proowner;
	name = PG_ARGISNULL(1) ? cstring_to_text(NameStr(proc->proname)) : PG_GETARG_TEXT_PP(1);
	ReleaseSysCache(tup);

	pg_async_check_handler(handler);

	if (VARSIZE_ANY_EXHDR(name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must not be empty")));
	if (VARSIZE_ANY_EXHDR(name) > ASYNC_MAX_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("name is too long"),
				 errdetail("A name has at most %d bytes.", ASYNC_MAX_NAME_LEN)));

	max_attempts = PG_GETARG_INT32(2);
	if (max_attempts < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be at least 1"),
				 errdetail("It was %d.", max_attempts)));

	retry_delays = PG_GETARG_ARRAYTYPE_P(3);
	check_retry_delays(retry_delays);

	timeout = PG_GETARG_INTERVAL_P(4);
	if (timeout->time <= 0 && timeout->day <= 0 && timeout->month <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive")));
	if (timeout->time < 0 || timeout->day < 0 || timeout->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not have negative parts")));

	if (PG_ARGISNULL(6))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_event_age must not be null")));
	max_event_age = PG_GETARG_INTERVAL_P(6);
	if (max_event_age->month < 0 || max_event_age->day < 0 || max_event_age->time < 0 ||
		(max_event_age->month == 0 && max_event_age->day == 0 &&
		 max_event_age->time < USECS_PER_SEC))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_event_age must be at least 1 second")));
	if (!PG_ARGISNULL(7) && PG_GETARG_INT32(7) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be NULL (no limit), 0 (hold the jobs) or more"),
				 errdetail("It was %d.", PG_GETARG_INT32(7))));

	run_as = PG_ARGISNULL(5) ? proowner : PG_GETARG_OID(5);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run_as)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", run_as)));

	if (!may_act_as(proowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of function %s to register it", format_procedure(handler)),
				 errdetail("Its owner is role \"%s\".", GetUserNameFromId(proowner, false))));
	if (!may_act_as(run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to run handlers as role \"%s\"",
						GetUserNameFromId(run_as, false)),
				 errdetail("Only superusers and roles with the privileges of \"%s\" may.",
						   GetUserNameFromId(run_as, false))));
	if (pg_async_proc_aclcheck(handler, run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute %s",
						GetUserNameFromId(run_as, false), format_procedure(handler))));

	if (registration_owner(name, &old_run_as, &old_registered_by) &&
		!may_act_as(old_run_as) && !may_act_as(old_registered_by))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function \"%s\" is registered by role \"%s\"",
						text_to_cstring(name),
						GetUserNameFromId(old_registered_by, true) ?
						GetUserNameFromId(old_registered_by, true) : "?"),
				 errhint("Choose another name, or ask that role to unregister it.")));

	/* the signature, every part schema-qualified: search_path cannot redirect it */
	signature = format_procedure_extended(handler, FORMAT_PROC_FORCE_QUALIFY);

	args[0] = PointerGetDatum(name);
	args[1] = CStringGetTextDatum(signature);
	args[2] = ObjectIdGetDatum(run_as);
	args[3] = Int32GetDatum(max_attempts);
	args[4] = PointerGetDatum(retry_delays);
	args[5] = IntervalPGetDatum(timeout);
	args[6] = ObjectIdGetDatum(GetUserId());
	args[7] = IntervalPGetDatum(max_event_age);
	args[8] = PG_ARGISNULL(7) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(7));
	if (PG_ARGISNULL(7))
		nulls[8] = 'n';
	for (i = 8; i <= 9; i++)
	{
		if (PG_ARGISNULL(i))
		{
			nulls[i + 1] = 'n';
			args[i + 1] = (Datum) 0;
			continue;
		}
		args[i + 1] = PointerGetDatum(PG_GETARG_TEXT_PP(i));
		check_destination(name, PG_GETARG_TEXT_PP(i), i == 8 ? "on_success" : "on_failure");
	}
	(void) run_as_owner("SELECT async._upsert_registration($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
						11, argtypes, args, nulls, &isnull);

	/* a lifted limit may have made held jobs ready: wake the workers at commit */
	pg_async_note_enqueued(pg_async_batch_size);

	PG_RETURN_TEXT_P(name);
}

/*
 * check_may_change raises an error unless the caller may change the
 * registration 'name' (the privileges of its run_as or registered_by role,
 * or superuser).  Returns false when there is no such registration.
 */
static bool
check_may_change(text *name, const char *action)
{
	Oid			run_as;
	Oid			registered_by;

	if (!registration_owner(name, &run_as, &registered_by))
		return false;
	if (!may_act_as(run_as) && !may_act_as(registered_by))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s function \"%s\"",
						action, text_to_cstring(name)),
				 errdetail("It was registered by role \"%s\".",
						   GetUserNameFromId(registered_by, true) ?
						   GetUserNameFromId(registered_by, true) : "?")));
	return true;
}

/* set_paused is async.pause() and async.resume(). */
static Datum
set_paused(text *name, bool paused)
{
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		args[2];
	bool		isnull;

	if (!check_may_change(name, paused ? "pause" : "resume"))
		return BoolGetDatum(false);
	args[0] = PointerGetDatum(name);
	args[1] = BoolGetDatum(paused);
	(void) run_as_owner("SELECT async._set_paused($1, $2)", 2, argtypes, args, NULL, &isnull);
	/* resumed jobs are ready now: wake the workers at commit */
	if (!paused)
		pg_async_note_enqueued(pg_async_batch_size);
	return BoolGetDatum(true);
}

/* async.pause(name): holds the jobs of a function. */
Datum
pg_async_pause(PG_FUNCTION_ARGS)
{
	return set_paused(PG_GETARG_TEXT_PP(0), true);
}

/* async.resume(name): lets the jobs of a paused function run again. */
Datum
pg_async_resume(PG_FUNCTION_ARGS)
{
	return set_paused(PG_GETARG_TEXT_PP(0), false);
}

/*
 * async.unregister(name): removes a registration.  The caller must have the
 * privileges of its run_as or registered_by role, or be superuser.
 */
Datum
pg_async_unregister(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;

	if (!check_may_change(name, "unregister"))
		PG_RETURN_BOOL(false);

	args[0] = PointerGetDatum(name);
	(void) run_as_owner("DELETE FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) $1",
						1, argtypes, args, NULL, &isnull);
	PG_RETURN_BOOL(true);
}

/*
 * async.redrive(event_id): puts a dead-lettered event back in the queue.
 * The caller must have the privileges of the role that enqueued it.
 */
Datum
pg_async_redrive(PG_FUNCTION_ARGS)
{
	text	   *event_id = PG_GETARG_TEXT_PP(0);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		isnull;
	Datum		enqueued_by;

	args[0] = PointerGetDatum(event_id);
	enqueued_by = run_as_owner("SELECT d.enqueued_by::pg_catalog.oid FROM async.dead_letters d"
							   " WHERE d.event_id OPERATOR(pg_catalog.=) $1"
							   " ORDER BY d.id DESC LIMIT 1",
							   1, argtypes, args, NULL, &isnull);
	if (isnull)
		PG_RETURN_BOOL(false);
	if (!may_act_as(DatumGetObjectId(enqueued_by)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to redrive event \"%s\"", text_to_cstring(event_id)),
				 errdetail("Only the role that enqueued it, and superusers, may.")));

	PG_RETURN_DATUM(run_as_owner("SELECT async._redrive($1)", 1, argtypes, args, NULL, &isnull));
}

/*
 * pg_async_materialize sets up a set-returning function to return its rows
 * in a tuplestore, the way the SQL-callable readers of shared memory do.
 */
Tuplestorestate *
pg_async_materialize(FunctionCallInfo fcinfo, TupleDesc *tupdesc)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *tupstore;
	MemoryContext oldcxt;
	TupleDesc	desc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTupleDescCopy(desc);
	tupstore = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = desc;
	MemoryContextSwitchTo(oldcxt);

	*tupdesc = desc;
	return tupstore;
}

/*
 * async._workers(): one row per live worker slot, copied under its spinlock.
 */
Datum
pg_async_workers_view(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore = pg_async_materialize(fcinfo, &tupdesc);
	int			i;

	for (i = 0; AsyncShmem != NULL && i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		AsyncWorkerSlot copy;
		Datum		values[7];
		bool		nulls[7] = {false};

		SpinLockAcquire(&slot->mutex);
		copy.pid = slot->pid;
		copy.busy = slot->busy;
		memcpy(copy.function, slot->function, ASYNC_FUNCTION_LEN);
		memcpy(copy.event_id, slot->event_id, ASYNC_EVENT_ID_LEN);
		copy.attempt = slot->attempt;
		copy.started_at = slot->started_at;
		copy.jobs_done = slot->jobs_done;
		SpinLockRelease(&slot->mutex);

		if (copy.pid == 0)
			continue;

		values[0] = Int32GetDatum(copy.pid);
		values[1] = CStringGetTextDatum(copy.busy ? "running" : "idle");
		if (copy.busy)
		{
			values[2] = CStringGetTextDatum(copy.function);
			values[3] = CStringGetTextDatum(copy.event_id);
			values[4] = Int32GetDatum(copy.attempt);
			values[5] = TimestampTzGetDatum(copy.started_at);
		}
		else
			nulls[2] = nulls[3] = nulls[4] = nulls[5] = true;
		values[6] = Int64GetDatum((int64) copy.jobs_done);
		tuplestore_putvalues(tupstore, tupdesc, values, nulls);
	}

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
		match = (slot->pid != 0 && slot->pid == pid);
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
		if (pid != 0)
			pids[n++] = Int32GetDatum(pid);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(pids, n, INT4OID, sizeof(int32), true,
										  TYPALIGN_INT));
}

/*
 * async._check_setup(): run by CREATE EXTENSION, warns when no worker will
 * serve this database.
 */
Datum
pg_async_check_setup(PG_FUNCTION_ARGS)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	if (!pg_async_preloaded)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async is not in shared_preload_libraries: no worker will run jobs"),
				 errdetail("Jobs can be enqueued, but they stay queued until workers run."),
				 errhint("Add pg_async to shared_preload_libraries in postgresql.conf and restart the server.")));
	else if (dbname != NULL && strcmp(dbname, pg_async_database) != 0)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async workers serve database \"%s\", not \"%s\"",
						pg_async_database, dbname),
				 errdetail("Jobs enqueued in this database stay queued."),
				 errhint("Set pg_async.database = '%s' and reload the configuration.", dbname)));
	else if (pg_async_workers == 0)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_async.workers is 0: no worker will run jobs"),
				 errhint("Set pg_async.workers to 1 or more and reload the configuration.")));
	PG_RETURN_VOID();
}
