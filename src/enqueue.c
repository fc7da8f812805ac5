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
#include "shmem.h"
#include "stats.h"
#include "worker_internal.h"

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
#include "catalog/namespace.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/inval.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_FUNCTION_INFO_V1(pg_async_jobs_trigger);
PG_FUNCTION_INFO_V1(pg_async_functions_changed);
PG_FUNCTION_INFO_V1(pg_async_new_event_id);
PG_FUNCTION_INFO_V1(pg_async_jobs_touched);

/* jobs this transaction enqueued so far; workers are woken at commit */
static int	pending_wakeups = 0;

/*
 * The earliest run_at of the jobs this transaction scheduled too far ahead
 * to wake a worker for: at commit, an idle database's launcher learns it
 * (pg_async_wake_at).
 */
static TimestampTz pending_scheduled = PG_INT64_MAX;

/*
 * Jobs of functions with a concurrency limit are counted apart, by
 * function: at commit, those whose limit a worker found reached wake nobody
 * (pg_async_limit_saturated).  Past ASYNC_PENDING_LIMITED functions in one
 * transaction, jobs are counted as any others.
 */
#define ASYNC_PENDING_LIMITED	4
typedef struct PendingLimited
{
	char		function[ASYNC_NAME_SIZE];
	int			njobs;
} PendingLimited;
static PendingLimited pending_limited[ASYNC_PENDING_LIMITED];
static int	npending_limited = 0;

/* this transaction changed async.functions: a limit may have room now */
static bool limits_changed = false;

/* true in pg_async workers: their own retries and recoveries need no wake-up */
bool		pg_async_in_worker = false;

/*
 * While a worker runs a handler, the depth of its job (async.jobs.depth),
 * else -1: what the handler enqueues, itself or through a table it
 * changes, is one deeper.
 */
int32		pg_async_current_depth = -1;

/* pg_async_note_enqueued counts jobs to wake workers for at commit. */
void
pg_async_note_enqueued(int njobs)
{
	pending_wakeups += njobs;
}

/*
 * note_enqueued_limited counts a job of a function with a concurrency
 * limit above 0, to wake workers for at commit unless that limit is found
 * reached then.
 */
static void
note_enqueued_limited(const char *function)
{
	int			i;

	for (i = 0; i < npending_limited; i++)
	{
		if (strcmp(pending_limited[i].function, function) == 0)
		{
			pending_limited[i].njobs++;
			return;
		}
	}
	if (npending_limited == ASYNC_PENDING_LIMITED)
	{
		pg_async_note_enqueued(1);
		return;
	}
	strlcpy(pending_limited[npending_limited].function, function, ASYNC_NAME_SIZE);
	pending_limited[npending_limited].njobs = 1;
	npending_limited++;
}

/*
 * wakeups_at_commit is how many jobs the committed transaction needs
 * workers woken for.  It runs after the commit made the jobs visible, as
 * pg_async_limit_saturated requires.
 */
static int
wakeups_at_commit(void)
{
	int			njobs = pending_wakeups;
	int			i;

	for (i = 0; i < npending_limited; i++)
		if (!pg_async_limit_saturated(pending_limited[i].function))
			njobs += pending_limited[i].njobs;
	return njobs;
}

/*
 * pg_async_xact_callback wakes workers after a commit that enqueued jobs.
 * At XACT_EVENT_COMMIT the transaction is already visible to others, so a
 * woken worker finds its jobs.  Before the commit, a transaction that
 * wrote nothing but a consumer's claims is told not to wait for its flush
 * (claim_commit.c).
 */
void
pg_async_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			pg_async_claim_pre_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			{
				int			njobs;

				/* before the workers are woken: they look from the floor */
				pg_async_floor_end_xact(true);
				/* before the jobs' own test of the lists, which it voids */
				if (limits_changed)
					pg_async_limits_released();
				njobs = wakeups_at_commit();
				if (njobs > 0)
					pg_async_jobs_committed(njobs);
				if (pending_scheduled != PG_INT64_MAX && AsyncShmem != NULL)
					pg_async_wake_at(pg_async_my_db(), pending_scheduled);
			}
			pending_wakeups = 0;
			pending_scheduled = PG_INT64_MAX;
			npending_limited = 0;
			limits_changed = false;
			pg_async_external_end_xact(true);
			pg_async_claim_commit();
			pg_async_consumer_end_xact();
			pg_async_stats_flush(true);
			pg_async_databases_end_xact(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's jobs are found by the workers' next look */
			pending_wakeups = 0;
			pending_scheduled = PG_INT64_MAX;
			npending_limited = 0;
			limits_changed = false;
			pg_async_external_end_xact(false);
			pg_async_claim_end_xact();
			pg_async_consumer_end_xact();
			pg_async_stats_flush(false);
			pg_async_databases_end_xact(false);
			/* a prepared transaction's jobs are left to the next sweep too */
			pg_async_floor_end_xact(false);
			break;
		default:
			break;
	}
}

/*
 * pg_async_subxact_callback: an aborted subtransaction gives back the job
 * rows it locked (ready_floor.c), and the leases it failed.
 */
void
pg_async_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		pg_async_floor_subxact_abort();
		pg_async_consumer_subxact_abort(mySubid);
		pg_async_lease_subxact_abort();
	}
}

/*
 * pg_async_functions_changed is the statement trigger on async.functions:
 * it makes every backend forget the registrations it cached, and at commit
 * voids the lists of limits found reached (a limit raised or lifted).
 */
Datum
pg_async_functions_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "pg_async_functions_changed: not called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	limits_changed = true;

	/*
	 * A pause lifted, or a limit, lets the claims take jobs they skipped,
	 * some perhaps below the floor; and a claim that ran while a function
	 * was paused or limited may have walked nothing at all (claim.c).  The
	 * commit lowers the floor to the start.
	 */
	pg_async_floor_note_start();
	return PointerGetDatum(NULL);
}

/*
 * The columns of async.jobs the trigger reads.  Their numbers are looked up
 * by name once per shape of the table (its row type and number of
 * attributes: an extension update adds columns and never renumbers them),
 * not for every row.  Those added after 0.1 may be missing until ALTER
 * EXTENSION UPDATE.
 */
typedef enum JobColumn
{
	JOB_ID,
	JOB_STATE,
	JOB_ATTEMPTS,
	JOB_ENQUEUED_AT,
	JOB_FUNCTION,
	JOB_EVENT_ID,
	JOB_PAYLOAD,
	JOB_RUN_AT,
	JOB_PAUSED,					/* from 0.2 */
	JOB_LIMITED,				/* from 0.3 */
	JOB_PRIORITY,				/* from 0.9 */
	JOB_DEPTH,					/* from 0.9 */
	JOB_KEY,					/* from 0.11 */
	JOB_NCOLUMNS
} JobColumn;

static const char *const job_column_names[JOB_NCOLUMNS] = {
	"id", "state", "attempts", "enqueued_at", "function", "event_id", "payload",
	"run_at", "paused", "limited", "priority", "depth", "key"
};

static Oid	job_columns_type = InvalidOid;
static int	job_columns_natts = -1;
static AttrNumber job_columns[JOB_NCOLUMNS];

/*
 * job_attnum is the number of column col of async.jobs, as desc describes
 * it, or InvalidAttrNumber where an older schema lacks it (before ALTER
 * EXTENSION UPDATE, enqueues go on as they did).
 */
static AttrNumber
job_attnum(TupleDesc desc, JobColumn col)
{
	if (desc->tdtypeid != job_columns_type || desc->natts != job_columns_natts)
	{
		int			i;

		for (i = 0; i < JOB_NCOLUMNS; i++)
		{
			int			attnum = SPI_fnumber(desc, job_column_names[i]);

			job_columns[i] = attnum > 0 ? (AttrNumber) attnum : InvalidAttrNumber;
		}
		job_columns_type = desc->tdtypeid;
		job_columns_natts = desc->natts;
	}
	return job_columns[col];
}

/* column_value fetches column col of a job row; every version has it. */
static Datum
column_value(HeapTuple tuple, TupleDesc desc, JobColumn col, bool *isnull)
{
	AttrNumber	attnum = job_attnum(desc, col);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "pg_async: async.jobs has no column \"%s\"", job_column_names[col]);
	return SPI_getbinval(tuple, desc, attnum, isnull);
}

/* is_paused tells whether a job row is marked paused (async.jobs.paused). */
static bool
is_paused(HeapTuple tuple, TupleDesc desc)
{
	AttrNumber	attnum = job_attnum(desc, JOB_PAUSED);
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return false;
	d = SPI_getbinval(tuple, desc, attnum, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * note_if_ready notes, for the floors, the run_at of a queued job row that
 * is in jobs_ready_idx or jobs_priority_idx: unfinished, neither paused nor
 * limited.  Those of priority 0 go to the ready floor, the others to the
 * priority floor, with their priority.
 */
static void
note_if_ready(HeapTuple tuple, TupleDesc desc)
{
	AttrNumber	attnum = job_attnum(desc, JOB_LIMITED);
	AttrNumber	priority_attnum = job_attnum(desc, JOB_PRIORITY);
	int16		priority = 0;
	TimestampTz run_at;
	bool		isnull;
	Datum		d;

	if (is_paused(tuple, desc))
		return;
	if (attnum != InvalidAttrNumber)
	{
		d = SPI_getbinval(tuple, desc, attnum, &isnull);
		if (!isnull && DatumGetBool(d))
			return;
	}
	if (priority_attnum != InvalidAttrNumber)
	{
		d = SPI_getbinval(tuple, desc, priority_attnum, &isnull);
		priority = isnull ? PG_INT16_MIN : DatumGetInt16(d);
	}
	d = column_value(tuple, desc, JOB_RUN_AT, &isnull);
	run_at = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	if (priority == 0)
		pg_async_floor_note(run_at);
	else
		pg_async_priority_floor_note(priority, run_at);
}

/* set_column returns a copy of a job row with column attnum set to value. */
static HeapTuple
set_column(HeapTuple tuple, TupleDesc desc, AttrNumber attnum, Datum value)
{
	int			cols[1] = {attnum};
	bool		null = false;

	return heap_modify_tuple_by_cols(tuple, desc, 1, cols, &value, &null);
}

/*
 * set_mark sets the mark column (JOB_PAUSED or JOB_LIMITED) of a new job to
 * value, whatever the INSERT said.
 */
static HeapTuple
set_mark(HeapTuple tuple, TupleDesc desc, JobColumn column, bool value)
{
	AttrNumber	attnum = job_attnum(desc, column);
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return tuple;
	d = SPI_getbinval(tuple, desc, attnum, &isnull);
	if (isnull || DatumGetBool(d) != value)
		tuple = set_column(tuple, desc, attnum, BoolGetDatum(value));
	return tuple;
}

/*
 * set_key sets the key of a job row to the key of its payload under the
 * payload key key_name, or to none when key_name is NULL or empty.
 */
static HeapTuple
set_key(HeapTuple tuple, TupleDesc desc, const char *key_name)
{
	AttrNumber	attnum = job_attnum(desc, JOB_KEY);
	bool		isnull;
	int			cols[1];
	Datum		value = (Datum) 0;
	bool		null = true;

	if (attnum == InvalidAttrNumber)
		return tuple;
	if (key_name != NULL && key_name[0] != '\0')
	{
		Datum		payload = column_value(tuple, desc, JOB_PAYLOAD, &isnull);

		value = PointerGetDatum(pg_async_job_key(payload, cstring_to_text(key_name)));
		null = false;
	}
	else
	{
		(void) SPI_getbinval(tuple, desc, attnum, &isnull);
		if (isnull)
			return tuple;
	}
	cols[0] = attnum;
	return heap_modify_tuple_by_cols(tuple, desc, 1, cols, &value, &null);
}

/*
 * is_scheduled tells whether a job row is due only after now, by the clock
 * (a job enqueued with the default run_at, clock_timestamp(), is not).
 */
static bool
is_scheduled(HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d = column_value(tuple, desc, JOB_RUN_AT, &isnull);

	return !isnull && DatumGetTimestampTz(d) > GetCurrentTimestamp();
}

/*
 * A queued job of a function with a concurrency_key is keyed (marked
 * limited, with its key) only once it is due.  Until then it waits
 * unmarked and without a key, in jobs_ready_idx or jobs_priority_idx by
 * its run_at, where no claim passes it before it is due; the claim that
 * finds it due gives it its key and marks it (claim_sql.c, rekeyed), and
 * the next claims take it key by key.  Keyed, a job scheduled for later
 * would lie in jobs_keyed_idx, among the due jobs, and every claim's walk
 * of the keys would pass it: until 0.22, a role that queued 100,000 jobs
 * for later under keys of a function of its own made each claim of the
 * workers, whoever's jobs it took, cost about 5 ms instead of 0.05 ms
 * (docs/security.md).  An external function's jobs stay keyed: only its
 * own consumers walk its keys.
 */
static HeapTuple
unkey_scheduled(HeapTuple tuple, TupleDesc desc)
{
	tuple = set_mark(tuple, desc, JOB_LIMITED, false);
	return set_key(tuple, desc, NULL);
}

/*
 * keys_when_due tells whether the schema keeps a job scheduled for later
 * unkeyed until it is due: from 0.23, whose trigger jobs_schedule keeps a
 * job an UPDATE puts back in the queue for later unkeyed too (the claims
 * key it once due).  Before ALTER EXTENSION UPDATE, new jobs are keyed as
 * they were.
 */
static bool
keys_when_due(Relation rel)
{
	int			i;

	if (rel->trigdesc == NULL)
		return false;
	for (i = 0; i < rel->trigdesc->numtriggers; i++)
		if (strcmp(rel->trigdesc->triggers[i].tgname, "jobs_schedule") == 0)
			return true;
	return false;
}

/*
 * schedule_keyed applies that rule to a job row that an UPDATE left queued
 * and unpaused, marked limited or keyed, and either due after the
 * transaction's start or keyed but unmarked (the trigger jobs_schedule,
 * after the UPDATE, names those): a retry, the keys given anew by a
 * changed registration, a job resumed.  Scheduled for later by
 * the clock, a job of a function with a concurrency_key (and a handler) is
 * unkeyed; due, keyed but unmarked (keys given to paused jobs), it is
 * marked, so that the claims take it by key.  An AFTER trigger, which
 * writes such a row again: a BEFORE ROW trigger on UPDATE makes the
 * executor lock every row any UPDATE of async.jobs writes before it
 * writes it, the finish of every job included.  The function's
 * registration is read afresh: the row may be written by the trigger that
 * follows a change of it.
 */
static void
schedule_keyed(HeapTuple tuple, TupleDesc desc)
{
	static SPIPlanPtr lookup = NULL;
	static SPIPlanPtr update = NULL;
	Datum		args[2];
	bool		isnull;
	bool		keyed;
	int			rc;

	args[0] = column_value(tuple, desc, JOB_ID, &isnull);
	if (isnull)
		return;
	args[1] = column_value(tuple, desc, JOB_FUNCTION, &isnull);
	if (isnull)
		return;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (lookup == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		lookup = pg_async_prepare_plan("SELECT FROM async.functions f"
									   " WHERE f.name OPERATOR(pg_catalog.=) $1"
									   "   AND f.handler IS NOT NULL"
									   "   AND f.key_concurrency IS NOT NULL",
									   1, argtypes);
	}
	rc = SPI_execute_plan(lookup, &args[1], NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: concurrency_key look-up failed: %s",
			 SPI_result_code_string(rc));
	keyed = SPI_processed == 1;

	if (keyed)
	{
		if (update == NULL)
		{
			Oid			argtypes[2] = {INT8OID, BOOLOID};

			update = pg_async_prepare_plan("UPDATE async.jobs j"
										   "   SET limited = NOT $2,"
										   "       key = CASE WHEN NOT $2 THEN j.key END"
										   " WHERE j.id OPERATOR(pg_catalog.=) $1"
										   "   AND j.state OPERATOR(pg_catalog.=) 'queued'"
										   "   AND NOT j.paused AND j.finished_at IS NULL"
										   "   AND (j.limited IS DISTINCT FROM NOT $2"
										   "        OR $2 AND j.key IS NOT NULL)",
										   2, argtypes);
		}
		/* scheduled: unkey it; due: mark it, with the key it has */
		args[1] = BoolGetDatum(is_scheduled(tuple, desc));
		rc = SPI_execute_plan(update, args, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "pg_async: keying a job failed: %s",
				 SPI_result_code_string(rc));
	}
	SPI_finish();
}

/*
 * fill_priority gives a job whose INSERT named no priority (NULL) the
 * priority dflt.
 */
static HeapTuple
fill_priority(HeapTuple tuple, TupleDesc desc, int16 dflt)
{
	AttrNumber	attnum = job_attnum(desc, JOB_PRIORITY);
	bool		isnull;

	if (attnum == InvalidAttrNumber)
		return tuple;
	(void) SPI_getbinval(tuple, desc, attnum, &isnull);
	if (isnull)
		tuple = set_column(tuple, desc, attnum, Int16GetDatum(dflt));
	return tuple;
}

/*
 * set_depth makes a job enqueued while a worker runs a handler one deeper
 * than that handler's job, whatever the INSERT said; and one enqueued by a
 * transaction that completed jobs of external functions one deeper than
 * the deepest of those (consumer_depth.c).  Outside the workers, it notes
 * the job for the completions that come after it.
 */
static HeapTuple
set_depth(HeapTuple tuple, TupleDesc desc)
{
	AttrNumber	attnum = job_attnum(desc, JOB_DEPTH);
	int32		current = Max(pg_async_current_depth, pg_async_consumer_depth());
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return tuple;
	if (!pg_async_in_worker)
	{
		d = column_value(tuple, desc, JOB_ID, &isnull);
		if (!isnull)
			pg_async_consumer_note_enqueued(DatumGetInt64(d));
	}
	if (current < 0)
		return tuple;
	d = SPI_getbinval(tuple, desc, attnum, &isnull);
	if (isnull || DatumGetInt32(d) <= current)
		tuple = set_column(tuple, desc, attnum, Int32GetDatum(current + 1));
	return tuple;
}

/*
 * check_priority raises an error when a new job names a priority below
 * what pg_async.min_priority allows the enqueueing role.  The function's
 * own priority, which fill_priority gives a job that names none, was
 * checked when it was registered.
 */
static void
check_priority(HeapTuple tuple, TupleDesc desc)
{
	AttrNumber	attnum = job_attnum(desc, JOB_PRIORITY);
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return;
	d = SPI_getbinval(tuple, desc, attnum, &isnull);
	if (!isnull)
		(void) pg_async_check_priority(DatumGetInt16(d));
}

/*
 * due_soon tells whether a job due at run_at needs a worker woken for it: a
 * sleeping worker looks at the queue at least every ASYNC_MAX_SLEEP_MS, and
 * then sees a job due later than that in time.  Jobs scheduled further
 * ahead thus wake nobody, rather than a worker that would find nothing due.
 */
static bool
due_soon(HeapTuple tuple, TupleDesc desc, bool held)
{
	bool		isnull;
	Datum		d;

	/*
	 * a job held by a pause or by concurrency 0 waits for async.resume() or
	 * a raised limit, which wake the workers themselves
	 */
	if (held)
		return false;
	d = column_value(tuple, desc, JOB_RUN_AT, &isnull);
	if (isnull ||
		DatumGetTimestampTz(d) <= GetCurrentTimestamp() + (TimestampTz) ASYNC_MAX_SLEEP_MS * 1000)
		return true;
	pending_scheduled = Min(pending_scheduled, DatumGetTimestampTz(d));
	return false;
}

/*
 * pg_async_jobs_trigger is the row trigger on async.jobs.  Before INSERT it
 * checks a new job; after an UPDATE it notes that a job may have become
 * ready, or, as jobs_schedule, keys or unkeys a job of a function with a
 * concurrency_key (schedule_keyed).  Either way the committing transaction wakes
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
	AsyncRegistration *entry;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "pg_async_jobs_trigger: not called as a trigger");

	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "pg_async_jobs_trigger: must be a row trigger");

	/* a completion raising the depth of this transaction's own new jobs */
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) && pg_async_consumer_raising())
		return PointerGetDatum(trigdata->tg_newtuple);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		TRIGGER_FIRED_AFTER(trigdata->tg_event) &&
		strcmp(trigdata->tg_trigger->tgname, "jobs_schedule") == 0)
	{
		schedule_keyed(trigdata->tg_newtuple, RelationGetDescr(trigdata->tg_relation));
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		note_if_ready(trigdata->tg_newtuple, RelationGetDescr(trigdata->tg_relation));
		if (!pg_async_in_worker &&
			due_soon(trigdata->tg_newtuple, RelationGetDescr(trigdata->tg_relation),
					 is_paused(trigdata->tg_newtuple, RelationGetDescr(trigdata->tg_relation))))
			pg_async_note_enqueued(1);
		return PointerGetDatum(trigdata->tg_newtuple);
	}
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		elog(ERROR, "pg_async_jobs_trigger: must fire before INSERT or after UPDATE");

	tuple = trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);

	/*
	 * Rows that are not new jobs come from a restore: take them as they are.
	 * So do a superuser's rows enqueued before this transaction began (a
	 * parallel pg_restore may load jobs before their registrations).
	 */
	d = column_value(tuple, desc, JOB_STATE, &isnull);
	state = isnull ? NULL : TextDatumGetCString(d);
	d = column_value(tuple, desc, JOB_ATTEMPTS, &isnull);
	if (state == NULL || strcmp(state, "queued") != 0 ||
		isnull || DatumGetInt32(d) != 0)
	{
		tuple = fill_priority(tuple, desc, 0);
		if (state != NULL && strcmp(state, "queued") == 0)
			note_if_ready(tuple, desc);
		return PointerGetDatum(tuple);
	}
	d = column_value(tuple, desc, JOB_ENQUEUED_AT, &isnull);
	if (!isnull && DatumGetTimestampTz(d) < GetCurrentTransactionStartTimestamp() &&
		superuser())
	{
		tuple = fill_priority(tuple, desc, 0);
		note_if_ready(tuple, desc);
		if (due_soon(tuple, desc, is_paused(tuple, desc)))
			pg_async_note_enqueued(1);
		return PointerGetDatum(tuple);
	}

	d = column_value(tuple, desc, JOB_FUNCTION, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("function of a job must not be null"),
				 errhint("Name a function registered with async.register().")));
	function = TextDatumGetCString(d);

	d = column_value(tuple, desc, JOB_EVENT_ID, &isnull);
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

	d = column_value(tuple, desc, JOB_PAYLOAD, &isnull);
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

	d = column_value(tuple, desc, JOB_RUN_AT, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("run_at of a job must not be null"),
				 errhint("Leave run_at out to run the job as soon as possible.")));

	entry = pg_async_check_registration(function);

	/*
	 * A paused function's new job is marked paused, and a limited
	 * function's limited: left out of the index every claim walks, so that
	 * a backlog they hold does not lie in every claim's path.  That is
	 * decided here, whatever the INSERT said.
	 */
	tuple = set_mark(tuple, desc, JOB_PAUSED, entry->paused);
	tuple = set_mark(tuple, desc, JOB_LIMITED, entry->limited || entry->external);
	tuple = set_key(tuple, desc, entry->concurrency_key);
	if (!entry->external && entry->concurrency_key[0] != '\0' &&
		is_scheduled(tuple, desc) && keys_when_due(trigdata->tg_relation))
		tuple = unkey_scheduled(tuple, desc);
	check_priority(tuple, desc);
	tuple = fill_priority(tuple, desc, entry->priority);
	tuple = set_depth(tuple, desc);
	note_if_ready(tuple, desc);
	pg_async_pending(function)->received++;

	/*
	 * An external function's job wakes its waiting consumers, never a
	 * worker; even one due later, which a consumer sleeps until.
	 */
	if (entry->external)
	{
		if (!entry->paused && !entry->held)
			pg_async_note_external_ready(function);
		return PointerGetDatum(tuple);
	}

	/*
	 * A job held with concurrency 0, like a paused one, would wake a worker
	 * for nothing: async.configure wakes them when the limit is raised.  So
	 * would one whose limit is reached, which the commit finds out.
	 */
	if (due_soon(tuple, desc, entry->paused || entry->held))
	{
		if (entry->limited)
			note_enqueued_limited(function);
		else
			pg_async_note_enqueued(1);
	}
	return PointerGetDatum(tuple);
}

/*
 * pg_async_jobs_touched is the statement trigger before an UPDATE or DELETE
 * of async.jobs: outside the workers, it notes that the transaction locks
 * job rows, which claims skip meanwhile; if it aborts, the ready floor
 * goes back to the start (ready_floor.c).  The workers' own statements
 * are accounted for by the workers (a worker that exits unclean lowers the
 * floor to the start).
 */
Datum
pg_async_jobs_touched(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "pg_async_jobs_touched: not called as a trigger");
	/* the rows a completion deepens are new in this transaction: none to skip */
	if (!pg_async_in_worker && !pg_async_consumer_raising())
		pg_async_floor_note_touched();
	return PointerGetDatum(NULL);
}

/*
 * pg_async_new_event_id returns a new UUID of version 7 (RFC 9562) as text:
 * the default event_id of a job.  Its first 48 bits are the Unix time in
 * milliseconds and the next 12 the fraction of the millisecond, so ids made
 * one after another sort one after another: each job's entry then goes next
 * to the last one in jobs_event_id_key (a random UUID would land on a random
 * page of that index, at enqueue and again when the job finishes).  The
 * remaining 62 bits are random.
 */
Datum
pg_async_new_event_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(pg_async_make_event_id());
}

/*
 * Random bytes for the event_ids, drawn from pg_strong_random() a block at a
 * time: a call per id cost the bulk enqueue about a third of its time
 * (OpenSSL's per-call checks; docs/performance.md, "What 0.14 changes"),
 * and the bytes are as unpredictable taken in blocks.
 * They must be: a role that could guess another's next event_id could take
 * it first, and the other's enqueue would be skipped as a duplicate.  A
 * process that was forked (its pid changed) draws a new block.
 */
#define ASYNC_RANDOM_BLOCK	512
static uint8 random_block[ASYNC_RANDOM_BLOCK];
static int	random_used = ASYNC_RANDOM_BLOCK;
static int	random_pid = 0;

/* random_bytes fills buf with n (at most ASYNC_RANDOM_BLOCK) strong random bytes */
static void
random_bytes(uint8 *buf, int n)
{
	Assert(n <= ASYNC_RANDOM_BLOCK);
	if (random_used + n > ASYNC_RANDOM_BLOCK || random_pid != MyProcPid)
	{
		if (!pg_strong_random(random_block, ASYNC_RANDOM_BLOCK))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		random_used = 0;
		random_pid = MyProcPid;
	}
	memcpy(buf, random_block + random_used, n);
	/* no byte is handed out twice */
	memset(random_block + random_used, 0, n);
	random_used += n;
}

/* pg_async_make_event_id makes the UUID of async.new_event_id(), as text. */
Datum
pg_async_make_event_id(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	uint64		unix_us;
	uint64		unix_ms;
	uint32		sub_ms;
	int			i;

	unix_us = (uint64) now +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC;
	unix_ms = unix_us / 1000;
	/* microseconds of the millisecond, scaled to 12 bits */
	sub_ms = (uint32) ((unix_us % 1000) * 4096 / 1000);

	random_bytes(uuid->data + 8, 8);
	for (i = 0; i < 6; i++)
		uuid->data[i] = (uint8) (unix_ms >> (40 - 8 * i));
	uuid->data[6] = (uint8) (0x70 | (sub_ms >> 8));	/* version 7 */
	uuid->data[7] = (uint8) sub_ms;
	uuid->data[8] = (uint8) ((uuid->data[8] & 0x3F) | 0x80);	/* variant 10 */

	return DirectFunctionCall1(textin,
							   DirectFunctionCall1(uuid_out, UUIDPGetDatum(uuid)));
}
