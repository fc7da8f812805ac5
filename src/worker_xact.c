/*-------------------------------------------------------------------------
 *
 * worker_xact.c
 *	  What every transaction of a pg_async worker shares: the worker's
 *	  slot, how a transaction begins (with SPI, and the checks and locks
 *	  on pg_async's tables that the worker's statements need), its
 *	  prepared statements and planner settings, and how it commits.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* this worker's slot in shared memory, and the database it serves */
AsyncWorkerSlot *MyAsyncSlot = NULL;
int			MyAsyncSlotIndex = -1;
char	   *MyAsyncDatabase = NULL;

/* pg_async's pg_extension OID, async.jobs and async.functions */
Oid			AsyncExtensionId = InvalidOid;
Oid			AsyncJobsRelId = InvalidOid;
Oid			AsyncFunctionsRelId = InvalidOid;
bool		AsyncLeases = false;
bool		AsyncReadyFloor = false;

/* the async.functions found to bind handlers by OID (0.5 and later) */
static Oid	bound_functions_relid = InvalidOid;

/*
 * pg_async_announce_next_look publishes when this worker will look at the
 * queue again (PG_INT64_MAX: it cannot tell), so that committers leave new
 * jobs to it rather than wake a colleague (pg_async_wake_workers).
 */
void
pg_async_announce_next_look(TimestampTz when)
{
	pg_atomic_write_u64(&MyAsyncSlot->next_look_at, (uint64) when);
}

/*
 * Whether AsyncReadyFloor still holds: an ALTER EXTENSION UPDATE that
 * creates the triggers of 0.6 sends an invalidation of async.jobs.
 */
static bool jobs_triggers_known = false;
static bool jobs_callback_set = false;

static void
jobs_changed(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == AsyncJobsRelId)
		jobs_triggers_known = false;
}

/*
 * pg_async_announce_xact_start publishes the start of the transaction the
 * worker just began: whatever job it finishes gets a later finished_at.
 */
void
pg_async_announce_xact_start(void)
{
	pg_atomic_write_u64(&MyAsyncSlot->xact_start,
						(uint64) GetCurrentTransactionStartTimestamp());
}

/*
 * warn_older_extension says, once per worker, why the workers wait: the
 * extension in MyAsyncDatabase is an older version than the library.
 */
static void
warn_older_extension(bool *warned)
{
	if (*warned)
		return;
	ereport(WARNING,
			(errmsg("pg_async workers wait: the extension installed in database \"%s\" is older than its library",
					MyAsyncDatabase),
			 errhint("Run ALTER EXTENSION pg_async UPDATE in that database.")));
	*warned = true;
}

/*
 * pg_async_extension_ready tells, inside a transaction, whether pg_async is
 * installed in this database and not being dropped.  It takes, without
 * waiting, the locks the worker's statements need on pg_async's tables: a
 * worker that waited for one while holding another could deadlock with
 * DROP EXTENSION, which locks them all exclusively.  An extension older
 * than the library (0.4 and older held handlers as signatures, where the
 * claim reads OIDs; 0.8 and older have no priorities, by which it orders)
 * is not ready either: the workers wait for its update.
 */
bool
pg_async_extension_ready(void)
{
	static const char *const tables[] = {"jobs", "functions", "dead_letters",
	"attempt_log", "running"};
	static bool warned_old = false;
	Oid			relids[lengthof(tables)];
	Oid			rate_windows;
	Oid			extension;
	Oid			nsp;
	int			i;

	extension = get_extension_oid("pg_async", true);
	if (!OidIsValid(extension))
		return false;
	AsyncExtensionId = extension;
	nsp = get_namespace_oid("async", true);
	if (!OidIsValid(nsp))
		return false;
	for (i = 0; i < lengthof(tables); i++)
	{
		relids[i] = get_relname_relid(tables[i], nsp);
		if (!OidIsValid(relids[i]))
		{
			/* 0.1 has no async.attempt_log, but a table async.attempts */
			if (get_rel_relkind(get_relname_relid("attempts", nsp)) == RELKIND_RELATION)
				warn_older_extension(&warned_old);
			return false;
		}
		if (!ConditionalLockRelationOid(relids[i], RowExclusiveLock))
			return false;
		/* locked: make sure it was not dropped meanwhile */
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relids[i])))
			return false;
	}
	if (relids[1] != bound_functions_relid)
	{
		if (!pg_async_handlers_bound(relids[1]))
		{
			warn_older_extension(&warned_old);
			return false;
		}
		bound_functions_relid = relids[1];
	}
	/*
	 * the claims order jobs by priority (0.9 and later), count rate limits
	 * (0.10 and later) and limits by key (0.11 and later)
	 */
	if (get_attnum(relids[0], "priority") == InvalidAttrNumber ||
		get_attnum(relids[1], "key_concurrency") == InvalidAttrNumber)
	{
		warn_older_extension(&warned_old);
		return false;
	}
	/* the rate windows, which the claims of rate-limited functions write (0.10) */
	rate_windows = get_relname_relid("rate_windows", nsp);
	if (!OidIsValid(rate_windows) ||
		!ConditionalLockRelationOid(rate_windows, RowExclusiveLock) ||
		!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(rate_windows)))
		return false;
	if (relids[0] != AsyncJobsRelId || !jobs_triggers_known)
	{
		/*
		 * Its triggers report every job made ready below the floor, and
		 * every aborted change of jobs (0.6 and later); before, each claim
		 * walks jobs_ready_idx from the start, as it did.
		 */
		if (!jobs_callback_set)
		{
			CacheRegisterRelcacheCallback(jobs_changed, (Datum) 0);
			jobs_callback_set = true;
		}
		jobs_triggers_known = true;
		AsyncReadyFloor = OidIsValid(get_trigger_oid(relids[0], "jobs_touched", true));
		AsyncJobsRelId = relids[0];
	}
	AsyncFunctionsRelId = relids[1];
	/* 0.8 and later: external functions, whose leases expire */
	AsyncLeases = get_attnum(relids[4], "lease") != InvalidAttrNumber;
	return true;
}

/* pg_async_prepare_plan prepares a statement once for the worker's lifetime. */
SPIPlanPtr
pg_async_prepare_plan(const char *sql, int nargs, Oid *argtypes)
{
	/* generic plans: replanning each batch would cost more than running it */
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "pg_async: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "pg_async: SPI_keepplan failed");
	return plan;
}

/*
 * pg_async_begin_work opens a transaction with SPI and a snapshot, as
 * worker_spi does.
 */
void
pg_async_begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pg_async_announce_xact_start();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* pg_async_end_work closes what pg_async_begin_work opened, and commits. */
void
pg_async_end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pg_atomic_write_u64(&MyAsyncSlot->xact_start, (uint64) PG_INT64_MAX);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * pg_async_push_planner_settings keeps the planner on the worker's intended
 * plans, until pg_async_pop_planner_settings: the claim must walk
 * jobs_ready_idx in run_at order and stop after a batch, and the finishing
 * statements must look jobs up one by one by their primary key.  Without
 * statistics (a new or truncated queue) the planner would rather sort every
 * ready job, or hash the batch and scan the whole table: cheap for the empty
 * table it planned for, and then kept as the generic plan while the queue
 * fills up.  These are session settings of the worker for the duration of its
 * own statements only: handlers run with the defaults.  The statements that
 * a consumer's session keeps a plan for take them too (external.c).
 */
int
pg_async_push_planner_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* pg_async_pop_planner_settings undoes pg_async_push_planner_settings. */
void
pg_async_pop_planner_settings(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * pg_async_commit_without_flush makes the current transaction's commit return
 * before its WAL is flushed.
 */
void
pg_async_commit_without_flush(void)
{
	/* a failure only loses the saving: WARNING, not ERROR */
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, WARNING, false);
}

/*
 * pg_async_upkeep_value runs one statement of upkeep in a transaction of
 * its own and returns its result, a value passed by value (*isnull when it
 * is NULL, or when the statement did not run: *ran is false when pg_async
 * is not installed, or its tables are locked).  Without JIT: the upkeep
 * statements walk a few index ranges, but their estimates, from a queue of
 * any size, may pass jit_above_cost, and their compilation then took a
 * worker 1 to 2 s every few seconds of a drain.
 */
Datum
pg_async_upkeep_value(const char *activity, const char *sql, int nargs,
					  Oid *argtypes, Datum *args, bool *isnull, bool *ran)
{
	Datum		result = (Datum) 0;

	*isnull = true;
	*ran = false;
	pg_async_announce_next_look(PG_INT64_MAX);
	pg_async_begin_work(activity);
	if (pg_async_extension_ready())
	{
		int			nestlevel = NewGUCNestLevel();
		int			rc;

		(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		rc = SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 1);

		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pg_async: \"%s\" failed: %s", sql,
				 SPI_result_code_string(rc));
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
							   isnull);
		*ran = true;
		AtEOXact_GUC(true, nestlevel);
	}
	pg_async_end_work();
	return result;
}

/*
 * pg_async_run_upkeep_sql runs one statement of upkeep (as above) and returns
 * its integer result, 0 when it is NULL or pg_async is not installed.
 */
int
pg_async_run_upkeep_sql(const char *activity, const char *sql, int nargs,
						Oid *argtypes, Datum *args)
{
	bool		isnull;
	bool		ran;
	Datum		result = pg_async_upkeep_value(activity, sql, nargs, argtypes,
											   args, &isnull, &ran);

	return isnull ? 0 : DatumGetInt32(result);
}
