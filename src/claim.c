/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  The claim: a worker takes up to a batch of ready jobs, locked with
 *	  FOR UPDATE SKIP LOCKED, marks them 'running' (a HOT update) and counts
 *	  their attempt, in a transaction that commits before any handler runs,
 *	  so that a handler that kills its worker has still spent an attempt.
 *	  An idle worker claims in a transaction of its own
 *	  (pg_async_claim_batch); under load the claim ends the transaction
 *	  that ran the previous batch (pg_async_claim_jobs), so that one commit
 *	  finishes a batch and claims the next.
 *
 *	  Functions that are paused or at their concurrency limit are left out
 *	  of the claim itself.  The jobs of limited functions reserve a place
 *	  in async.running; the claim also tells shared memory which limits it
 *	  found reached, so that enqueues of their jobs wake nobody (shmem.c).
 *	  The statements themselves are in claim_sql.c.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "optimizer/plancat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr claim_fast_plan = NULL;
static SPIPlanPtr limits_plan = NULL;
static SPIPlanPtr next_run_plan = NULL;
static SPIPlanPtr saturated_plan = NULL;
static SPIPlanPtr scheduled_plan = NULL;

/*
 * Whether some function is paused or has a concurrency or rate limit, as
 * last read from async.functions, and the generation of that table it was
 * read in (pg_async_functions_generation; 0: read it again).
 */
static uint64 limits_generation = 0;
static bool limits_exist = true;

/*
 * Saturated limits (shmem.c).  A transaction of this worker that finished or
 * gave back jobs with reservations sets reservations_released, and its commit
 * bumps limits_epoch.  A full claim lists the functions it found at their
 * limit, with the epoch read before it, and the commit publishes the list.
 * The statements that release reservations come before the claim in a
 * transaction (worker.c's run_batch), so the list reflects this transaction's
 * own releases, and its bump need not void it.
 */
static bool reservations_released = false;
static int	nsaturated = -1;		/* -1: this transaction made no list */
static uint64 saturated_epoch;
static char saturated_names[ASYNC_MAX_SATURATED][ASYNC_NAME_SIZE];
static TimestampTz saturated_until[ASYNC_MAX_SATURATED];

/*
 * The times the full rate limits in the list this worker published have
 * room again, and the epoch of that list: while it holds, enqueues of
 * those functions wake nobody, so this worker looks at the queue again by
 * each of those times (pg_async_saturated_sleep_ms).  None: no promise.
 */
static TimestampTz rate_look_by[ASYNC_MAX_SATURATED];
static int	nrate_look_by = 0;
static uint64 rate_look_epoch = 0;

/* prepare_plans prepares the claim's statements, once. */
static void
prepare_plans(void)
{
	Oid			claim_types[8] = {INT4OID, INT4OID, INT8OID, TIMESTAMPTZOID,
	INT2OID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID};
	Oid			next_run_types[3] = {TIMESTAMPTZOID, INT2OID, TIMESTAMPTZOID};
	Oid			scheduled_types[3] = {INT2OID, TIMESTAMPTZOID, INT4OID};

	if (claim_plan != NULL)
		return;
	claim_plan = pg_async_prepare_plan(pg_async_claim_sql, 8, claim_types);
	claim_fast_plan = pg_async_prepare_plan(pg_async_claim_fast_sql, 8, claim_types);
	limits_plan = pg_async_prepare_plan(pg_async_limits_sql, 0, NULL);
	next_run_plan = pg_async_prepare_plan(pg_async_next_run_sql, 3, next_run_types);
	saturated_plan = pg_async_prepare_plan(pg_async_saturated_sql, 0, NULL);
	scheduled_plan = pg_async_prepare_plan(pg_async_scheduled_sql, 3, scheduled_types);
}

/*
 * raise_priority_floor raises the priority floor after a claim that began
 * at it, (floor_priority, floor_run_at), as far as the claim's walks of
 * jobs_priority_idx tell: no ready job it could take lies below the first
 * it found (found, with found_priority and found_run_at), or, if it found
 * none, below the end of what it walked (the end of the priorities below 0
 * when the walk above 0 was not made, else the end of all).  Time makes
 * scheduled jobs ready with no trigger to lower the floor, so it may not
 * pass a scheduled job either: between the walk's start and the first job
 * found, within the first priority walked, every job has a run_at below
 * that job's, and is due; past that priority, the first scheduled job is
 * looked up (pg_async_scheduled_sql), and the floor goes no higher than its
 * priority at claim_now.
 */
static void
raise_priority_floor(int16 floor_priority, TimestampTz floor_run_at, bool found,
					 int16 found_priority, TimestampTz found_run_at, bool walked_all,
					 TimestampTz claim_now)
{
	uint64		floor_key = pg_async_priority_floor_key(floor_priority, floor_run_at);
	uint64		target;
	int32		bound;
	Datum		args[3];
	int			rc;

	if (found)
	{
		target = pg_async_priority_floor_key(found_priority, found_run_at);
		if (found_priority == floor_priority)
		{
			pg_async_priority_floor_claim_end(MyAsyncSlot, target);
			return;
		}
		bound = found_priority;
	}
	else if (walked_all)
	{
		target = pg_async_priority_floor_key(PG_INT16_MAX, claim_now);
		bound = PG_INT16_MAX + 1;
	}
	else
	{
		target = pg_async_priority_floor_key(1, DT_NOBEGIN);
		bound = 1;
	}
	if (target <= floor_key)
		return;

	args[0] = Int16GetDatum(floor_priority);
	args[1] = TimestampTzGetDatum(claim_now);
	args[2] = Int32GetDatum(bound);
	/* in a new snapshot, as list_saturated's */
	rc = SPI_execute_plan(scheduled_plan, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading the scheduled jobs failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		int16		priority = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1, &isnull));

		target = Min(target, pg_async_priority_floor_key(priority, claim_now));
	}
	pg_async_priority_floor_claim_end(MyAsyncSlot, target);
}

/*
 * read_limits tells whether some function is paused or has a concurrency
 * limit: in the transaction's snapshot when read_only, else in a new one
 * (SPI takes one for a statement that is not read-only).
 */
static bool
read_limits(bool read_only)
{
	int			rc;
	bool		isnull;

	rc = SPI_execute_plan(limits_plan, NULL, NULL, read_only, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_async: reading the limits failed: %s",
			 SPI_result_code_string(rc));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * any_limits tells whether some function is paused or has a concurrency
 * limit, reading async.functions only after it changed.  The flag is set
 * before the query, so that an invalidation that arrives while it runs
 * makes the next claim ask again.
 */
static bool
any_limits(void)
{
	uint64		generation = pg_async_functions_generation(AsyncFunctionsRelId);

	if (limits_generation == generation)
		return limits_exist;
	limits_generation = generation;
	limits_exist = read_limits(true);
	return limits_exist;
}

/*
 * ASYNC_JOBS_MIN_ROWS is the fewest rows the worker's planner believes
 * async.jobs holds (jobs_rows_floor).
 */
#define ASYNC_JOBS_MIN_ROWS		100000

static get_relation_info_hook_type prev_get_relation_info_hook = NULL;

/*
 * jobs_rows_floor, the worker's get_relation_info_hook, makes the worker's
 * planner believe async.jobs holds at least ASYNC_JOBS_MIN_ROWS rows.  Its
 * statements are built for index plans: the claim walks jobs_ready_idx and
 * looks each claimed job up by its key, the finishing statements look jobs
 * up one by one.  Believing the table nearly empty, the planner would
 * rather scan all of it once and join the batch to it, which is ruinous at
 * a million rows (one claim took 364 s).  Statistics say "nearly empty"
 * more often than one would think: an ANALYZE (autovacuum's too) that runs
 * while a large INSERT is in progress sees no live row and records 0 rows
 * in however many pages, and from then on every plan, old or new, counts 0
 * rows per page, until the next ANALYZE.  Only the worker's own planning
 * is touched (the hook is set in the worker process), and only the size of
 * async.jobs and of its full indexes.
 */
static void
jobs_rows_floor(PlannerInfo *root, Oid relid, bool inhparent, RelOptInfo *rel)
{
	if (prev_get_relation_info_hook)
		prev_get_relation_info_hook(root, relid, inhparent, rel);

	if (relid == AsyncJobsRelId && OidIsValid(relid) && rel->tuples < ASYNC_JOBS_MIN_ROWS)
	{
		ListCell   *lc;

		rel->tuples = ASYNC_JOBS_MIN_ROWS;
		foreach(lc, rel->indexlist)
		{
			IndexOptInfo *index = (IndexOptInfo *) lfirst(lc);

			if (index->indpred == NIL)
				index->tuples = rel->tuples;
		}
	}
}

/*
 * list_saturated lists the functions at their concurrency limit, or with
 * their rate limit full (until its window has room), after a full claim,
 * for pg_async_commit_batch to publish once the claim is committed: an
 * enqueue of their jobs then wakes nobody.  epoch is limits_epoch as read
 * before the claim.
 */
static void
list_saturated(uint64 epoch)
{
	int			rc;
	uint64		i;

	/*
	 * Not read-only: SPI then takes a new snapshot, after the epoch was read
	 * and seeing this transaction's own reservations and releases, rather
	 * than reuse the transaction's first one.
	 */
	rc = SPI_execute_plan(saturated_plan, NULL, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading the saturated limits failed: %s",
			 SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed && i < ASYNC_MAX_SATURATED; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		strlcpy(saturated_names[i], isnull ? "" : TextDatumGetCString(d), ASYNC_NAME_SIZE);
		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		saturated_until[i] = isnull ? 0 : DatumGetTimestampTz(d);
	}
	nsaturated = (int) i;
	saturated_epoch = epoch;
}

/* job_order orders claimed jobs as the claim took them */
static int
job_order(const void *a, const void *b)
{
	const AsyncJob *x = (const AsyncJob *) a;
	const AsyncJob *y = (const AsyncJob *) b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

/*
 * copy_claimed_jobs copies the n jobs a claim returned (SPI_tuptable) into
 * cxt, as *jobs_out, in the order the batch runs them: by priority, then
 * run_at and id (an UPDATE returns its rows in no particular order).
 */
static void
copy_claimed_jobs(MemoryContext cxt, AsyncJob **jobs_out, int n, TimestampTz claim_start)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	AsyncJob   *jobs = palloc0(sizeof(AsyncJob) * n);
	TupleDesc	desc = SPI_tuptable->tupdesc;
	uint64		i;

	pg_async_batch_note_claim(n, claim_start);

	for (i = 0; i < (uint64) n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		AsyncJob   *job = &jobs[i];
		bool		isnull;
		Datum		d;

		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->event_id = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		job->function = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		job->payload = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		job->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		job->registered = !isnull;
		if (job->registered)
		{
			job->handler = DatumGetObjectId(d);
			job->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
			job->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
			job->timeout_ms = (int32) Min(DatumGetFloat8(SPI_getbinval(tup, desc, 9, &isnull)),
										  (double) INT_MAX);
			if (job->timeout_ms < 1)
				job->timeout_ms = 1;
		}
		job->due_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 10, &isnull));
		job->priority = DatumGetInt16(SPI_getbinval(tup, desc, 20, &isnull));
		job->depth = DatumGetInt32(SPI_getbinval(tup, desc, 25, &isnull));
		job->enqueued_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 11, &isnull));
		job->enqueued_by = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
		d = SPI_getbinval(tup, desc, 15, &isnull);
		job->has_destination = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, desc, 16, &isnull);
		job->reserved = !isnull && DatumGetBool(d);
		job->claimed_at = claim_start;
		d = SPI_getbinval(tup, desc, 27, &isnull);
		job->rate_limited = !isnull;
		if (job->rate_limited)
			job->rate_margin_us = (int64) (DatumGetFloat8(d) * USECS_PER_SEC);
		d = SPI_getbinval(tup, desc, 28, &isnull);
		job->key = isnull ? NULL : TextDatumGetCString(d);
		d = SPI_getbinval(tup, desc, 13, &isnull);
		if (!isnull && DatumGetBool(d))
		{
			job->expired = true;
			job->error_message = psprintf("event is older than max_event_age (%s)",
										  TextDatumGetCString(SPI_getbinval(tup, desc, 14, &isnull)));
		}
		else if (job->registered)
		{
			int32		max_depth = DatumGetInt32(SPI_getbinval(tup, desc, 26, &isnull));

			/* a loop of handlers or destinations that enqueue each other */
			if (job->depth > max_depth)
			{
				job->looped = true;
				job->error_message = psprintf("event is %d deep in a chain of events, past max_depth (%d)",
											  job->depth, max_depth);
			}
		}
	}
	qsort(jobs, n, sizeof(AsyncJob), job_order);
	*jobs_out = jobs;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * rate_counts counts, by function, the jobs of rate-limited functions among
 * the n given whose starts their claim noted: those it will run, not those
 * that expired or looped (they never start); with given_back, only those
 * of them given back.  Returns how many functions, with their names and
 * counts as arrays in *names and *counts, or 0.
 */
static int
rate_counts(AsyncJob *jobs, int n, bool given_back, Datum *names, Datum *counts)
{
	const char **functions = palloc(sizeof(char *) * n);
	int32	   *nstarts = palloc(sizeof(int32) * n);
	Datum	   *name_datums = palloc(sizeof(Datum) * n);
	Datum	   *count_datums = palloc(sizeof(Datum) * n);
	int			nfunctions = 0;
	int			i;
	int			k;

	for (i = 0; i < n; i++)
	{
		if (!jobs[i].rate_limited || jobs[i].expired || jobs[i].looped ||
			(given_back && !jobs[i].given_back))
			continue;
		for (k = 0; k < nfunctions; k++)
			if (strcmp(functions[k], jobs[i].function) == 0)
				break;
		if (k == nfunctions)
		{
			functions[nfunctions] = jobs[i].function;
			nstarts[nfunctions++] = 0;
		}
		nstarts[k]++;
	}
	for (k = 0; k < nfunctions; k++)
	{
		name_datums[k] = CStringGetTextDatum(functions[k]);
		count_datums[k] = Int32GetDatum(nstarts[k]);
	}
	if (nfunctions > 0)
	{
		*names = PointerGetDatum(construct_array(name_datums, nfunctions, TEXTOID,
												 -1, false, TYPALIGN_INT));
		*counts = PointerGetDatum(construct_array(count_datums, nfunctions, INT4OID,
												  sizeof(int32), true, TYPALIGN_INT));
	}
	return nfunctions;
}

/*
 * note_rate_starts records in the rate windows the jobs of rate-limited
 * functions that the claim at claim_start will run (not those that expired
 * or looped), in its transaction, under the claim lock that made the
 * claim count the window.  The recorded time is the jobs' started_at.
 */
static void
note_rate_starts(AsyncJob *jobs, int n, TimestampTz claim_start)
{
	Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID};
	Datum		args[3];

	if (rate_counts(jobs, n, false, &args[0], &args[1]) == 0)
		return;
	args[2] = TimestampTzGetDatum(claim_start);
	if (SPI_execute_with_args("SELECT async._rate_note($1, $2, $3)", 3, argtypes, args,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: recording the starts of rate limits failed");
}

/*
 * pg_async_unnote_rate_starts takes out of the rate windows the starts that
 * the claim of the n jobs given back (worker.c) noted for them, in the
 * current transaction, with SPI connected, so that the windows have room
 * for them again once it commits.  All of them come from one claim.  The
 * window's row is written in the claims' order: the claim lock, then the
 * row.  A start whose claim has left the window is not counted any more,
 * and stays as it is.  Two claims noted at the same microsecond (a clock
 * stepped back) share the subtraction, which only the first entry shows:
 * both leave the window together, so the sum counted stays right.
 */
void
pg_async_unnote_rate_starts(AsyncJob *jobs, int n)
{
	Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID};
	Datum		args[3];

	if (rate_counts(jobs, n, true, &args[0], &args[1]) == 0)
		return;
	args[2] = TimestampTzGetDatum(jobs[0].claimed_at);
	LockDatabaseObject(ExtensionRelationId, AsyncExtensionId, ASYNC_CLAIM_LOCK,
					   ExclusiveLock);
	if (SPI_execute_with_args(
			"UPDATE async.rate_windows w"
			"   SET counts[pg_catalog.array_position(w.starts, $3)] ="
			"       w.counts[pg_catalog.array_position(w.starts, $3)] OPERATOR(pg_catalog.-) x.n"
			"  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS x(function, n)"
			" WHERE w.function OPERATOR(pg_catalog.=) x.function"
			"   AND pg_catalog.array_position(w.starts, $3) IS NOT NULL",
			3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pg_async: taking back the starts of rate limits failed");
	/* colleagues that found the limits full look again at this commit */
	pg_async_note_reservations_released();
}

/*
 * note_key_turns moves the database's cursor among the keys of each
 * function with a concurrency_key past the keys of its jobs just claimed,
 * so that the next claim takes the keys on from there (keys.c).
 */
static void
note_key_turns(AsyncJob *jobs, int n)
{
	const char **keys = palloc(sizeof(char *) * n);
	bool	   *done = palloc0(sizeof(bool) * n);
	int			i;
	int			k;

	for (i = 0; i < n; i++)
	{
		int			nkeys = 0;

		if (jobs[i].key == NULL || done[i])
			continue;
		for (k = i; k < n; k++)
			if (jobs[k].key != NULL && !done[k] &&
				strcmp(jobs[k].function, jobs[i].function) == 0)
			{
				keys[nkeys++] = jobs[k].key;
				done[k] = true;
			}
		pg_async_advance_key_cursor(jobs[i].function, keys, nkeys);
	}
}

/* claims in a row that may key jobs and take none before the worker rests */
#define ASYNC_KEYING_CLAIMS		4

/*
 * claim_once is one claim of pg_async_claim_jobs, of up to limit jobs.
 * *keyed tells whether it claimed none but keyed jobs that its walks of
 * the ready jobs found due (jobs scheduled for later of a function with a
 * concurrency_key, which wait unkeyed until then: enqueue.c,
 * unkey_scheduled), which it does not take itself.
 */
static int
claim_once(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at, bool *keyed,
		   int limit)
{
	Datum		args[8];
	Datum		next_run_args[3];
	int			rc;
	int			n;
	int			save_nestlevel;
	bool		limited;
	bool		informed;
	TimestampTz claim_start;
	TimestampTz claim_now = GetCurrentTransactionStartTimestamp();
	TimestampTz floor;
	int16		prio_floor = PG_INT16_MIN;
	TimestampTz prio_floor_run_at = DT_NOBEGIN;
	TimestampTz first_run_at = DT_NOEND;
	bool		walked = true;
	bool		prio_found = false;
	int16		prio_first = 0;
	TimestampTz prio_first_run_at = 0;
	bool		prio_walked_all = true;
	uint64		epoch;

	*jobs_out = NULL;
	*next_run_at = 0;
	*keyed = false;

	/* no claim until the markers of a crash have been acted on */
	if (pg_atomic_read_u32(&pg_async_my_db()->inflight_state) != 2)
	{
		*next_run_at = GetCurrentTimestamp();
		return 0;
	}

	prepare_plans();
	save_nestlevel = pg_async_push_planner_settings();

	limited = any_limits();
	/*
	 * Claims that count running jobs of limited functions are serialized,
	 * so that each sees the jobs the previous one reserved: the lock is
	 * taken before the claim statement takes its snapshot, whenever the
	 * full claim runs, even if only some function is paused (a function
	 * given a limit between the lock and the claim would otherwise be
	 * claimed unserialized).  It is ASYNC_CLAIM_LOCK (pg_async.h), which no
	 * role can hold to stop the claims, as any role could hold the
	 * advisory lock used before 0.5.
	 */
	if (limited)
		LockDatabaseObject(ExtensionRelationId, AsyncExtensionId, ASYNC_CLAIM_LOCK,
						   ExclusiveLock);

	claim_start = GetCurrentTimestamp();
	/* before the claim's snapshot: see shmem.c and ready_floor.c */
	epoch = pg_async_limits_epoch();
	floor = AsyncReadyFloor ?
		pg_async_floor_claim_begin(MyAsyncSlot, &prio_floor, &prio_floor_run_at) : DT_NOBEGIN;
	args[0] = Int32GetDatum(limit);
	args[1] = Int32GetDatum(MyProcPid);
	args[2] = Int64GetDatum((int64) pg_async_batch_max_bytes * 1024);
	args[3] = TimestampTzGetDatum(floor);
	args[4] = Int16GetDatum(prio_floor);
	args[5] = TimestampTzGetDatum(prio_floor_run_at);
	args[6] = Int32GetDatum(pg_async_max_depth);
	args[7] = TimestampTzGetDatum(claim_start);
	rc = SPI_execute_plan(limited ? claim_plan : claim_fast_plan, args, NULL, false, 0);
	/* the full claim's update is a CTE, which its reservations read */
	if (rc != (limited ? SPI_OK_SELECT : SPI_OK_UPDATE_RETURNING))
		elog(ERROR, "pg_async: claiming jobs failed: %s",
			 SPI_result_code_string(rc));

	n = (int) SPI_processed;

	/* the full claim's row that is no job: it keyed jobs and claimed none */
	if (limited && n == 1)
	{
		bool		isnull;

		(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
		{
			*keyed = true;
			n = 0;
		}
	}

	/* perhaps a limit the cache has not heard of yet (see pg_async_claim_fast_sql) */
	if (n == 0 && !limited)
		limits_generation = 0;

	if (n > 0)
	{
		HeapTuple	first = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d = SPI_getbinval(first, desc, 17, &isnull);

		if (!isnull)
			first_run_at = DatumGetTimestampTz(d);

		/*
		 * Jobs the walk locked but the claim left (past the byte limit or
		 * the allowance) were skipped by other claims meanwhile: they
		 * lower the floor again when this transaction commits.
		 */
		d = SPI_getbinval(first, desc, 18, &isnull);
		if (!isnull && DatumGetBool(d))
			pg_async_floor_note(first_run_at);

		/* jobs of a lower priority filled the batch before the walk began */
		d = SPI_getbinval(first, desc, 19, &isnull);
		walked = isnull || DatumGetBool(d);

		/* the same of the walks of jobs_priority_idx */
		d = SPI_getbinval(first, desc, 21, &isnull);
		if (!isnull)
		{
			prio_found = true;
			prio_first = DatumGetInt16(d);
			prio_first_run_at = DatumGetTimestampTz(SPI_getbinval(first, desc, 22, &isnull));
		}
		d = SPI_getbinval(first, desc, 23, &isnull);
		prio_walked_all = isnull || DatumGetBool(d);
		d = SPI_getbinval(first, desc, 24, &isnull);
		if (prio_found && !isnull && DatumGetBool(d))
			pg_async_priority_floor_note(prio_first, prio_first_run_at);

		copy_claimed_jobs(cxt, jobs_out, n, claim_start);
		if (limited)
		{
			note_rate_starts(*jobs_out, n, claim_start);
			note_key_turns(*jobs_out, n);
		}
	}

	/*
	 * The floors rise to the first job the walks found, or to now() if
	 * they found none (see raise_priority_floor for the priority floor).  A
	 * fast claim that claimed nothing may not have walked at all (a limit
	 * it had not heard of): it may raise the floors only if no function is
	 * paused or limited even now, in a later snapshot.  (One that was, and
	 * no longer is, was changed by a commit that lowered the floors to the
	 * start, and this claim's claim_low with them: enqueue.c's
	 * pg_async_functions_changed.)  That costs a statement, which an idle
	 * worker's claims spend only when they walked from the start (a
	 * sweep): between sweeps, the floors stay at the last jobs claimed.  A
	 * claim that did not walk jobs_ready_idx at all tells nothing of it;
	 * nor does one that claimed nothing but keyed jobs: its walks may have
	 * stopped at the batch before more such jobs.
	 */
	if (AsyncReadyFloor)
	{
		informed = n > 0 ||
			(!*keyed && (limited || (floor == DT_NOBEGIN && !read_limits(false))));
		if (informed)
			raise_priority_floor(prio_floor, prio_floor_run_at, prio_found, prio_first,
								 prio_first_run_at, prio_walked_all, claim_now);
		pg_async_floor_claim_end(MyAsyncSlot, walked && informed, first_run_at, claim_now);
	}

	if (n == 0 && !*keyed)
	{
		/* in a new snapshot, for the same reasons as list_saturated's */
		/* from the floors as they are now, if a commit lowered them meanwhile */
		next_run_args[0] = TimestampTzGetDatum(AsyncReadyFloor ?
											   Min(floor, pg_async_floor_current()) : floor);
		if (AsyncReadyFloor)
			pg_async_priority_floor_current(&prio_floor, &prio_floor_run_at);
		next_run_args[1] = Int16GetDatum(prio_floor);
		next_run_args[2] = TimestampTzGetDatum(prio_floor_run_at);
		rc = SPI_execute_plan(next_run_plan, next_run_args, NULL, false, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_run_at = DatumGetTimestampTz(d);
		}
	}
	if (limited)
		list_saturated(epoch);
	pg_async_pop_planner_settings(save_nestlevel);
	return n;
}

/*
 * pg_async_claim_jobs marks up to pg_async_batch_limit() ready jobs 'running'
 * and counts their attempt, in the caller's transaction, with SPI connected.
 * The jobs are copied into cxt.  With no job ready it reports when the next
 * one is due (0 if none).  A claim that keyed jobs it found due and took
 * none is followed at once by another, which takes them by key (the
 * transaction sees its own keys).  The jobs a claim keys count against
 * its batch, so while slow handlers make the batches small, many such
 * jobs due at once are keyed a batch at a time, and the jobs behind them
 * wait meanwhile (a larger batch for these claims would hold the jobs it
 * took from the lanes too).  Past ASYNC_KEYING_CLAIMS of them in a row (a
 * function whose limits hold the jobs it keys), the worker looks again
 * shortly.
 */
int
pg_async_claim_jobs(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at)
{
	int			limit = pg_async_batch_limit();
	int			i;

	for (i = 0;; i++)
	{
		bool		keyed;
		int			n = claim_once(cxt, jobs_out, next_run_at, &keyed, limit);

		if (n > 0 || !keyed)
			return n;
		if (i + 1 >= ASYNC_KEYING_CLAIMS)
		{
			*next_run_at = GetCurrentTimestamp();
			return 0;
		}
	}
}

/*
 * pg_async_claim_batch claims jobs in a transaction of its own: how an idle
 * worker starts.  *ready is false when pg_async is not installed here.
 */
int
pg_async_claim_batch(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at,
					 bool *ready)
{
	int			n = 0;

	*jobs_out = NULL;
	*next_run_at = 0;

	pg_async_begin_work("pg_async: claiming jobs");
	*ready = pg_async_extension_ready();
	if (*ready)
		n = pg_async_claim_jobs(cxt, jobs_out, next_run_at);

	/*
	 * The handlers need not wait for this commit to reach the disk: each
	 * writes its in-flight marker first, which tells after a crash restart
	 * which job ran even if the claim was lost (inflight.c).  The batch's
	 * own commit, when synchronous, makes the claim durable.
	 */
	if (n > 0 && pg_async_inflight_available())
		pg_async_commit_without_flush();
	pg_async_commit_batch();
	return n;
}

/*
 * pg_async_note_reservations_released notes that the current transaction
 * finished or gave back jobs with a reservation in async.running: its
 * commit may give their limits room again.
 */
void
pg_async_note_reservations_released(void)
{
	reservations_released = true;
}

/*
 * pg_async_commit_batch commits a transaction that claimed jobs, ran them
 * or both, then tells other processes what it did to the concurrency
 * limits (see reservations_released) and notes whether its claim is on
 * disk yet (inflight.c).
 */
void
pg_async_commit_batch(void)
{
	pg_async_end_work();
	if (reservations_released)
	{
		uint64		before = pg_async_limits_released();

		/* a list made after our releases holds, if no one else released */
		if (nsaturated >= 0 && before == saturated_epoch)
			saturated_epoch = before + 1;
		reservations_released = false;
	}
	if (nsaturated >= 0)
	{
		int			i;

		pg_async_publish_saturated(saturated_epoch, saturated_names, saturated_until,
								   nsaturated);
		nrate_look_by = 0;
		rate_look_epoch = saturated_epoch;
		for (i = 0; i < nsaturated; i++)
		{
			if (saturated_until[i] != 0)
				rate_look_by[nrate_look_by++] = saturated_until[i];
		}
	}
	nsaturated = -1;
	pg_async_inflight_note_commit();
}

/*
 * pg_async_claim_init sets up, once per worker, what keeps the claim's
 * plans right: the planner's floor for the size of async.jobs.
 */
void
pg_async_claim_init(void)
{
	prev_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = jobs_rows_floor;
}

/*
 * pg_async_saturated_sleep_ms bounds a sleep of ms milliseconds by the time
 * a full rate limit this worker listed has room again, while its list
 * holds: enqueues of that function woke nobody, on the promise that this
 * worker looks then.
 */
long
pg_async_saturated_sleep_ms(long ms)
{
	TimestampTz now;
	TimestampTz next = 0;
	int			i;
	int			kept = 0;

	if (nrate_look_by == 0)
		return ms;
	if (pg_async_limits_epoch() != rate_look_epoch)
	{
		/* voided by a bump: the enqueues since have woken workers */
		nrate_look_by = 0;
		return ms;
	}

	/*
	 * A time that has passed is kept by the look this returns 0 for (no
	 * enqueue relies on it any more); the others stand until a claim of
	 * ours publishes a new list.
	 */
	now = GetCurrentTimestamp();
	for (i = 0; i < nrate_look_by; i++)
	{
		if (rate_look_by[i] <= now)
		{
			ms = 0;
			continue;
		}
		rate_look_by[kept++] = rate_look_by[i];
		if (next == 0 || rate_look_by[i] < next)
			next = rate_look_by[i];
	}
	nrate_look_by = kept;
	if (next == 0)
		return ms;
	return Min(ms, (long) ((next - now + 999) / 1000));
}

/*
 * pg_async_saturated_forget, as the worker leaves, takes back the promise
 * behind its list of full rate limits: the list is voided, and if an
 * enqueue relied on it meanwhile, a worker is woken for its job.
 */
void
pg_async_saturated_forget(void)
{
	if (nrate_look_by > 0 && pg_async_limits_epoch() == rate_look_epoch)
		(void) pg_async_limits_released();
	nrate_look_by = 0;
}
