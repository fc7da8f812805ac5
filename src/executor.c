/*-------------------------------------------------------------------------
 *
 * executor.c
 *	  Running one job's handler: resolve the registration to a function,
 *	  check it may run, and call it in a subtransaction as the registered
 *	  role, with a safe search_path and the registered timeout.  An error of
 *	  any kind becomes data on the job (message, SQLSTATE); the worker goes
 *	  on with the next job.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "job.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "funcapi.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/elog.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

/* The search_path every handler starts with. */
#define ASYNC_HANDLER_SEARCH_PATH	"pg_catalog, pg_temp"

/*
 * A handler still running at its deadline is cancelled (statement_timeout);
 * one that catches the cancel, as PL/pgSQL can (EXCEPTION WHEN
 * query_canceled), is cancelled again every ASYNC_OVERDUE_REPEAT_MS, and
 * ASYNC_OVERDUE_GRACE_MS after the deadline its worker is terminated, which
 * no handler can catch.  The crash accounting then charges the attempt
 * (worker.c, async._recover).
 */
#define ASYNC_OVERDUE_REPEAT_MS		100
#define ASYNC_OVERDUE_GRACE_MS		1000

/* the timeout that repeats the cancel, registered at the first handler */
static TimeoutId overdue_timeout = MAX_TIMEOUTS;
/* when the running handler's worker is terminated */
static TimestampTz overdue_kill_at = 0;
/* the worker is being terminated for an overdue handler: which one */
static volatile sig_atomic_t overdue_killed = false;
/* true only while a handler's function is being called */
static volatile sig_atomic_t in_handler = false;
static char overdue_function[ASYNC_NAME_SIZE];
static char overdue_event_id[ASYNC_MAX_EVENT_ID + 1];
static int	overdue_timeout_ms = 0;

/* A registration resolved to a callable function, valid for one batch. */
typedef struct ResolvedHandler
{
	char	   *function;
	Oid			handler;
	Oid			run_as;
	bool		run_as_superuser;
	int			nargs;			/* 1: (jsonb); 2: (jsonb, async.context) */
	Oid			rettype;
	FmgrInfo	flinfo;
} ResolvedHandler;

/*
 * context_type_oid is the OID of the composite type async.context, or
 * InvalidOid when the extension is not installed.
 */
static Oid
context_type_oid(void)
{
	Oid			nsp = get_namespace_oid("async", true);

	if (!OidIsValid(nsp))
		return InvalidOid;
	return GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
						   CStringGetDatum("context"), ObjectIdGetDatum(nsp));
}

/* resolved handlers of the current batch, in its transaction's memory */
static List *resolved = NIL;

/* pg_async_executor_reset forgets the handlers resolved for the last batch. */
void
pg_async_executor_reset(void)
{
	resolved = NIL;
}

/*
 * pg_async_check_handler raises an error unless fnoid is a function a
 * handler can be: a plain function (not a procedure, aggregate or window
 * function) that takes (jsonb) or (jsonb, async.context), returns no set,
 * and is not temporary: a temporary function goes with its session, and a
 * later session that gets the same pg_temp schema must not find its own
 * code run as the registrant.
 */
void
pg_async_check_handler(Oid fnoid)
{
	HeapTuple	tup;
	Form_pg_proc proc;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", fnoid)));
	proc = (Form_pg_proc) GETSTRUCT(tup);

	if (isAnyTempNamespace(proc->pronamespace))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("a temporary function cannot be a handler"),
				 errdetail("%s is dropped with its session.", format_procedure(fnoid)),
				 errhint("Create the handler in a permanent schema.")));
	if (proc->prokind != PROKIND_FUNCTION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s is not a plain function", format_procedure(fnoid)),
				 errdetail("Procedures, aggregates and window functions cannot be handlers."),
				 errhint("A handler is a function taking one argument of type jsonb.")));
	if (proc->proretset)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler %s must not return a set", format_procedure(fnoid))));
	if (proc->pronargs < 1 || proc->pronargs > 2 ||
		proc->proargtypes.values[0] != JSONBOID ||
		(proc->pronargs == 2 && proc->proargtypes.values[1] != context_type_oid()))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("handler %s must take (jsonb) or (jsonb, async.context)",
						format_procedure(fnoid)),
				 errhint("Declare it as f(event jsonb) or f(event jsonb, ctx async.context).")));

	ReleaseSysCache(tup);
}

/*
 * pg_async_check_run_as raises an error unless a handler may run as run_as:
 * a handler runs with at most the rights of every role that can change its
 * code, that is its owner and whoever has the owner's privileges.  So the
 * owner must have the privileges of run_as (a superuser has every role's).
 * Checked when a function is registered and again before each batch runs
 * it, so that a later ALTER FUNCTION ... OWNER TO or REVOKE takes effect.
 */
void
pg_async_check_run_as(Oid fnoid, Oid run_as, const char *function)
{
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler of function \"%s\" does not exist", function)));
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);

	if (owner != run_as && !has_privs_of_role(owner, run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("handler %s of function \"%s\" may not run as role \"%s\"",
						format_procedure(fnoid), function,
						GetUserNameFromId(run_as, false)),
				 errdetail("Its owner \"%s\" does not have the privileges of role \"%s\", and a handler never runs with more rights than the roles that can change its code.",
						   GetUserNameFromId(owner, false),
						   GetUserNameFromId(run_as, false)),
				 errhint("Register the function again with a run_as role that its owner has the privileges of.")));
}

/*
 * resolve_handler finds the function behind a job's registration and checks
 * that it can run: still there (the registration is bound to the function's
 * OID, so a function dropped and created again, by anyone, is not it), still
 * of a handler's signature, allowed to run as run_as, and executable by it.
 * Errors here fail the attempt.
 */
static ResolvedHandler *
resolve_handler(AsyncJob *job)
{
	ListCell   *lc;
	ResolvedHandler *rh;
	Oid			fnoid = job->handler;

	if (!job->registered)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function \"%s\" is not registered with pg_async", job->function),
				 errhint("Register a handler for it with async.register().")));

	foreach(lc, resolved)
	{
		rh = (ResolvedHandler *) lfirst(lc);
		if (rh->run_as == job->run_as && rh->handler == fnoid &&
			strcmp(rh->function, job->function) == 0)
			return rh;
	}

	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(fnoid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler of function \"%s\" does not exist", job->function),
				 errdetail("The function it was registered with was dropped; one created again with the same name is another function."),
				 errhint("Register the function again with async.register().")));
	pg_async_check_handler(fnoid);

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(job->run_as)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u that function \"%s\" runs as does not exist",
						job->run_as, job->function),
				 errhint("Register the function again with async.register().")));

	pg_async_check_run_as(fnoid, job->run_as, job->function);

	if (pg_async_proc_aclcheck(fnoid, job->run_as, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute handler %s of function \"%s\"",
						GetUserNameFromId(job->run_as, false),
						format_procedure(fnoid), job->function)));

	rh = palloc0(sizeof(ResolvedHandler));
	rh->function = pstrdup(job->function);
	rh->handler = fnoid;
	rh->run_as = job->run_as;
	rh->run_as_superuser = superuser_arg(job->run_as);
	rh->nargs = get_func_nargs(fnoid);
	rh->rettype = get_func_rettype(fnoid);
	fmgr_info(fnoid, &rh->flinfo);
	resolved = lappend(resolved, rh);
	return rh;
}

/*
 * pg_async_clip_message returns message, cut to ASYNC_MAX_ERROR_BYTES at a
 * character boundary, with a note of how much was cut.
 */
char *
pg_async_clip_message(const char *message)
{
	int			len = strlen(message);
	int			kept;

	if (len <= ASYNC_MAX_ERROR_BYTES)
		return pstrdup(message);
	kept = pg_mbcliplen(message, len, ASYNC_MAX_ERROR_BYTES);
	return psprintf("%.*s... (%d bytes cut)", kept, message, len - kept);
}

/*
 * handler_overdue is the timeout handler that fires every
 * ASYNC_OVERDUE_REPEAT_MS past a handler's deadline: it cancels the handler
 * again, as StatementTimeoutHandler does, and past the grace period asks the
 * worker to exit.  It runs in the signal handler: it only sets flags.
 */
static void
handler_overdue(void)
{
	if (!in_handler)
		return;
	if (GetCurrentTimestamp() >= overdue_kill_at)
	{
		overdue_killed = true;
		ProcDiePending = true;
	}
	else
		QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * report_overdue logs, as the worker exits, that it exits because a handler
 * ignored its timeout.
 */
static void
report_overdue(int code, Datum arg)
{
	if (overdue_killed)
		ereport(LOG,
				(errmsg("pg_async: the handler of function \"%s\" event \"%s\" ignored its timeout of %d ms; its worker exits",
						overdue_function, overdue_event_id, overdue_timeout_ms),
				 errdetail("A handler that catches the cancel of its timeout loses its worker %d ms after its deadline; the attempt counts as crashed.",
						   ASYNC_OVERDUE_GRACE_MS)));
}

/*
 * arm_timeouts arms a handler's deadline: the cancel at the deadline, and
 * the repeated cancels and the termination after it.
 */
static void
arm_timeouts(AsyncJob *job)
{
	TimestampTz deadline;

	if (overdue_timeout == MAX_TIMEOUTS)
	{
		overdue_timeout = RegisterTimeout(USER_TIMEOUT, handler_overdue);
		before_shmem_exit(report_overdue, (Datum) 0);
	}
	strlcpy(overdue_function, job->function, sizeof(overdue_function));
	strlcpy(overdue_event_id, job->event_id, sizeof(overdue_event_id));
	overdue_timeout_ms = job->timeout_ms;

	deadline = GetCurrentTimestamp() + (TimestampTz) job->timeout_ms * 1000;
	overdue_kill_at = deadline + (TimestampTz) ASYNC_OVERDUE_GRACE_MS * 1000;
	enable_timeout_after(STATEMENT_TIMEOUT, job->timeout_ms);
	enable_timeout_every(overdue_timeout,
						 deadline + (TimestampTz) ASYNC_OVERDUE_REPEAT_MS * 1000,
						 ASYNC_OVERDUE_REPEAT_MS);
}

/* disarm_timeouts disarms what arm_timeouts armed. */
static void
disarm_timeouts(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (overdue_timeout != MAX_TIMEOUTS)
		disable_timeout(overdue_timeout, false);
}

/*
 * make_context builds the async.context value of a job's attempt: what the
 * handler may know about it, like Lambda's context object.
 */
static Datum
make_context(AsyncJob *job)
{
	Oid			typid = context_type_oid();
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};
	HeapTuple	tuple;

	if (!OidIsValid(typid))
		elog(ERROR, "pg_async: type async.context does not exist");
	values[0] = CStringGetTextDatum(job->event_id);
	values[1] = CStringGetTextDatum(job->function);
	values[2] = Int32GetDatum(job->attempt);
	values[3] = Int32GetDatum(job->max_attempts);
	values[4] = TimestampTzGetDatum(job->enqueued_at);
	values[5] = TimestampTzGetDatum(GetCurrentTimestamp() + (int64) job->timeout_ms * 1000);
	tupdesc = lookup_rowtype_tupdesc(typid, -1);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	ReleaseTupleDesc(tupdesc);
	return HeapTupleGetDatum(tuple);
}

/*
 * result_to_jsonb keeps what a handler returned as jsonb: jsonb as it is,
 * json parsed, any other type as a JSON string of its text form.
 */
static Datum
result_to_jsonb(Datum value, Oid rettype)
{
	Oid			typoutput;
	bool		isvarlena;
	char	   *text;
	StringInfoData buf;

	if (rettype == JSONBOID)
		return PointerGetDatum(PG_DETOAST_DATUM_COPY(value));
	getTypeOutputInfo(rettype, &typoutput, &isvarlena);
	text = OidOutputFunctionCall(typoutput, value);
	if (rettype == JSONOID)
		return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
	initStringInfo(&buf);
	escape_json(&buf, text);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * call_handler runs the handler of one job, inside the caller's
 * subtransaction: as the registered role (session and current user both),
 * in a security-restricted operation, with search_path reset, a fresh
 * snapshot and the registered timeout armed.  Only here can a cancel
 * request interrupt the worker.
 */
static void
call_handler(AsyncJob *job, Oid worker_user)
{
	ResolvedHandler *rh = resolve_handler(job);
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;

	Datum		context = (Datum) 0;
	Datum		result;

	LOCAL_FCINFO(fcinfo, 2);

	if (rh->nargs == 2)
		context = make_context(job);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetSessionAuthorization(rh->run_as, rh->run_as_superuser);
	SetUserIdAndSecContext(rh->run_as,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	/*
	 * The worker's session already has this search_path, and the nest level
	 * undoes whatever a handler SETs; setting it again for every job would
	 * only make the next name lookup recompute the path.
	 */
	save_nestlevel = NewGUCNestLevel();
	if (namespace_search_path == NULL ||
		strcmp(namespace_search_path, ASYNC_HANDLER_SEARCH_PATH) != 0)
		(void) set_config_option("search_path", ASYNC_HANDLER_SEARCH_PATH,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

	PushActiveSnapshot(GetTransactionSnapshot());

	InitFunctionCallInfoData(*fcinfo, &rh->flinfo, rh->nargs, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = job->payload;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = context;
	fcinfo->args[1].isnull = false;

	QueryCancelPending = false;
	RESUME_CANCEL_INTERRUPTS();
	arm_timeouts(job);

	in_handler = true;
	result = FunctionCallInvoke(fcinfo);
	in_handler = false;

	disarm_timeouts();
	HOLD_CANCEL_INTERRUPTS();

	if (!fcinfo->isnull && rh->rettype != VOIDOID)
		job->result = result_to_jsonb(result, rh->rettype);

	PopActiveSnapshot();

	/* nothing the handler SET outlives it */
	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SetSessionAuthorization(worker_user, true);
}

/*
 * pg_async_execute_job runs one job's handler in a subtransaction and records
 * the outcome on the job: on success the subtransaction is kept, on error it
 * is rolled back and the error's message and SQLSTATE are kept instead.
 */
void
pg_async_execute_job(AsyncJob *job)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			worker_user = GetSessionUserId();

	job->failed = false;
	job->wrote = false;
	job->result = (Datum) 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);

	PG_TRY();
	{
		call_handler(job, worker_user);
		job->wrote = TransactionIdIsValid(GetCurrentTransactionIdIfAny());
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* error recovery zeroed the holdoff counts: only the handler may be cancelled */
		in_handler = false;
		disarm_timeouts();
		QueryCancelPending = false;
		QueryCancelHoldoffCount = 1;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;

		/* the subtransaction restored the current user, not the session user */
		SetSessionAuthorization(worker_user, true);

		job->failed = true;
		/* a repeated cancel past the deadline is the timeout's too */
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			GetCurrentTimestamp() >=
			overdue_kill_at - (TimestampTz) ASYNC_OVERDUE_GRACE_MS * 1000)
			job->error_message = pstrdup("canceling statement due to statement timeout");
		else
			job->error_message = pg_async_clip_message(edata->message ? edata->message : "unknown error");
		strlcpy(job->sqlstate, unpack_sql_state(edata->sqlerrcode), sizeof(job->sqlstate));
		job->failed_at = GetCurrentTimestamp();
		FreeErrorData(edata);
	}
	PG_END_TRY();
}
