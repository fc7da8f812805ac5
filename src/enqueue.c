/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *	  What happens when a job is enqueued: the row trigger on async.jobs that
 *	  refuses a job nobody could run (unknown function, no EXECUTE on its
 *	  handler, bad event_id or payload), and the transaction callback that
 *	  wakes sleeping workers once the enqueueing transaction has committed.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(pg_async_jobs_trigger);

/* jobs this transaction enqueued so far; workers are woken at commit */
static int	pending_wakeups = 0;

/* true in pg_async workers: their own retries and recoveries need no wake-up */
bool		pg_async_in_worker = false;

/*
 * The last registration this transaction checked, so that enqueueing many
 * jobs of one function looks the registration up once.  Cleared at the end
 * of every transaction.
 */
static char checked_function[NAMEDATALEN * 4];
static Oid	checked_user = InvalidOid;
static bool checked_valid = false;

static SPIPlanPtr lookup_plan = NULL;

/* pg_async_note_enqueued counts jobs to wake workers for at commit. */
void
pg_async_note_enqueued(int njobs)
{
	pending_wakeups += njobs;
}

/*
 * pg_async_xact_callback wakes workers after a commit that enqueued jobs.
 * At XACT_EVENT_COMMIT the transaction is already visible to others, so a
 * woken worker finds its jobs.
 */
void
pg_async_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending_wakeups > 0)
				pg_async_wake_workers(pending_wakeups);
			pending_wakeups = 0;
			checked_valid = false;
			pg_async_stats_flush(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's jobs are found by the workers' next look */
			pending_wakeups = 0;
			checked_valid = false;
			pg_async_stats_flush(false);
			break;
		default:
			break;
	}
}

/*
 * check_registration raises an error unless 'function' is registered and
 * the current user may EXECUTE its handler.
 */
static void
check_registration(const char *function)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	char	   *handler = NULL;
	Oid			fnoid;
	int			rc;

	if (checked_valid && checked_user == GetUserId() &&
		strcmp(checked_function, function) == 0)
		return;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (lookup_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("SELECT f.handler FROM async.functions f"
									   " WHERE f.name OPERATOR(pg_catalog.=) $1",
									   1, argtypes);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "pg_async: preparing the registration lookup failed");
		lookup_plan = plan;
	}
	args[0] = CStringGetTextDatum(function);
	rc = SPI_execute_plan(lookup_plan, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: registration lookup failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			handler = MemoryContextStrdup(CurTransactionContext,
										  TextDatumGetCString(d));
	}
	SPI_finish();

	if (handler == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function \"%s\" is not registered with pg_async", function),
				 errhint("Register a handler for it with async.register().")));

	fnoid = pg_async_resolve_handler(handler);
	if (!OidIsValid(fnoid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler %s of function \"%s\" does not exist", handler, function),
				 errhint("Create the function again, or register another handler with async.register().")));

	if (pg_async_proc_aclcheck(fnoid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to enqueue for function \"%s\"", function),
				 errdetail("Enqueueing needs EXECUTE on its handler %s.", handler)));

	strlcpy(checked_function, function, sizeof(checked_function));
	checked_user = GetUserId();
	checked_valid = strlen(function) < sizeof(checked_function);
}

/* column_value fetches a column of a job row by name. */
static Datum
column_value(HeapTuple tuple, TupleDesc desc, const char *column, bool *isnull)
{
	int			attnum = SPI_fnumber(desc, column);

	if (attnum <= 0)
		elog(ERROR, "pg_async: async.jobs has no column \"%s\"", column);
	return heap_getattr(tuple, attnum, desc, isnull);
}

/*
 * pg_async_jobs_trigger is the row trigger on async.jobs.  Before INSERT it
 * checks a new job; after an UPDATE of run_at or state it notes that a job
 * may have become ready.  Either way the committing transaction wakes
 * workers.
 */
Datum
pg_async_jobs_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	char	   *state;
	char	   *function;
	char	   *event_id;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "pg_async_jobs_trigger: not called as a trigger");

	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "pg_async_jobs_trigger: must be a row trigger");

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		if (!pg_async_in_worker)
			pg_async_note_enqueued(1);
		return PointerGetDatum(trigdata->tg_newtuple);
	}
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "pg_async_jobs_trigger: must fire before INSERT or after UPDATE");

	tuple = trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);

	/* rows that are not new jobs come from a restore: take them as they are */
	d = column_value(tuple, desc, "state", &isnull);
	state = isnull ? NULL : TextDatumGetCString(d);
	d = column_value(tuple, desc, "attempts", &isnull);
	if (state == NULL || strcmp(state, "queued") != 0 ||
		isnull || DatumGetInt32(d) != 0)
		return PointerGetDatum(tuple);

	d = column_value(tuple, desc, "function", &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("function of a job must not be null"),
				 errhint("Name a function registered with async.register().")));
	function = TextDatumGetCString(d);

	d = column_value(tuple, desc, "event_id", &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("event_id of a job must not be null"),
				 errhint("Leave event_id out to get a generated one.")));
	event_id = TextDatumGetCString(d);
	if (event_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_id of a job must not be empty"),
				 errhint("Leave event_id out to get a generated one.")));
	if (strlen(event_id) > ASYNC_MAX_EVENT_ID)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("event_id of a job is too long"),
				 errdetail("It has %zu bytes; at most %d are allowed.",
						   strlen(event_id), ASYNC_MAX_EVENT_ID)));

	d = column_value(tuple, desc, "payload", &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("payload of a job must not be null"),
				 errhint("Pass '{}' for an event without data.")));
	if (toast_raw_datum_size(d) > (Size) pg_async_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload of a job is too large"),
				 errdetail("It has %zu bytes; pg_async.max_payload_size allows %d.",
						   (Size) toast_raw_datum_size(d), pg_async_max_payload_size),
				 errhint("Store large data in a table and pass its key in the payload.")));

	d = column_value(tuple, desc, "run_at", &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("run_at of a job must not be null"),
				 errhint("Leave run_at out to run the job as soon as possible.")));

	check_registration(function);

	pg_async_note_enqueued(1);
	pg_async_pending(function)->received++;
	return PointerGetDatum(tuple);
}
