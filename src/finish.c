/*-------------------------------------------------------------------------
 *
 * finish.c
 *	  The finish of a batch: what became of each job, written in the
 *	  transaction that ran its handler (never in the handler's own
 *	  subtransaction, which would create a MultiXact per row).  The jobs
 *	  that succeeded are marked so by one call of async._succeed() for the
 *	  batch, the one place where jobs succeed (async.complete() calls it
 *	  too); a failed attempt goes through async._fail(), which retries the job or
 *	  moves it to the dead letters; failed attempts are kept in
 *	  async.attempt_log and counted, and logged at pg_async.log_failures.
 *	  Jobs claimed but not run are given back.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

static SPIPlanPtr succeed_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr attempts_plan = NULL;
static SPIPlanPtr release_plan = NULL;

/*
 * Jobs claimed but not run, given back: queued again with the attempt the
 * claim counted taken back, at the head of the queue as before, and marked
 * limited again if their function has a concurrency limit, with their key
 * again if it has a concurrency_key (computed again, as every way back to
 * the queue does: the function's concurrency_key may have changed).
 */
static const char *release_sql =
"WITH released AS (DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY ($1))"
" UPDATE async.jobs j SET state = 'queued', attempts = j.attempts OPERATOR(pg_catalog.-) 1,"
"        limited = async._is_limited(j.function), key = async._job_key(j.function, j.payload)"
"  WHERE j.id OPERATOR(pg_catalog.=) ANY ($1) AND j.state OPERATOR(pg_catalog.=) 'running'";

static const char *fail_sql =
"SELECT f.new_state, f.retry_at FROM async._fail($1, $2, $3, $4, $5) f";

static const char *attempts_sql =
"INSERT INTO async.attempt_log"
"  (job_id, event_id, function, attempt, worker_pid, started_at, duration,"
"   outcome, error, sqlstate, enqueued_by)"
" SELECT a.job_id, a.event_id, a.function, a.attempt, $9, a.started_at,"
"        pg_catalog.make_interval(secs => a.duration_us OPERATOR(pg_catalog./) 1000000.0),"
"        a.outcome, a.error, a.sqlstate, a.enqueued_by::pg_catalog.regrole"
"   FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[]),"
"                   pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.int4[]),"
"                   pg_catalog.unnest($5::pg_catalog.timestamptz[]), pg_catalog.unnest($6::pg_catalog.int8[]),"
"                   pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]),"
"                   pg_catalog.unnest($10::pg_catalog.text[]), pg_catalog.unnest($11::pg_catalog.oid[]))"
"     AS a(job_id, event_id, function, attempt, started_at, duration_us,"
"          outcome, error, sqlstate, enqueued_by)";

/* prepare_plans prepares the finish's statements, once. */
static void
prepare_plans(void)
{
	Oid			release_types[1] = {INT8ARRAYOID};
	Oid			fail_types[5] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Oid			attempt_types[11] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT4OID, TEXTARRAYOID, OIDARRAYOID};
	Oid			succeed_types[5] = {INT8ARRAYOID, JSONBARRAYOID, BOOLOID,
	TIMESTAMPTZARRAYOID, INT8ARRAYOID};

	if (succeed_plan != NULL)
		return;
	succeed_plan = pg_async_prepare_plan("SELECT async._succeed($1, $2, $3, $4, $5)", 5,
										 succeed_types);
	fail_plan = pg_async_prepare_plan(fail_sql, 5, fail_types);
	attempts_plan = pg_async_prepare_plan(attempts_sql, 11, attempt_types);
	release_plan = pg_async_prepare_plan(release_sql, 1, release_types);
}

/* text_array builds a text[] from C strings, NULL pointers becoming NULLs. */
static Datum
text_array(char **strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = (strings[i] == NULL);
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(strings[i]);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * pg_async_int8_array builds an int8[] (or, with TIMESTAMPTZOID, a
 * timestamptz[]).
 */
Datum
pg_async_int8_array(int64 *values, int n, Oid typid)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, typid, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* int4_array builds an int4[] (or, with typid OIDOID, an oid[]). */
static Datum
int4_array(int32 *values, int n, Oid typid)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int32GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, typid, sizeof(int32),
										   true, TYPALIGN_INT));
}

/*
 * record_attempts appends a row to async.attempt_log for each job of
 * jobs[0..n-1] that failed or expired, in one statement, unless
 * pg_async.attempts_retention is 0.  A successful attempt needs no row: its
 * job keeps its end and run time, and async.attempts shows it from there.
 */
static void
record_attempts(AsyncJob *jobs, int n)
{
	int64	   *ids;
	int64	   *starts;
	int64	   *durations;
	int32	   *attempts;
	int32	   *owners;
	char	  **event_ids;
	char	  **functions;
	char	  **outcomes;
	char	  **errors;
	char	  **sqlstates;
	Datum		args[11];
	int			rc;
	int			i;
	int			nfailed = 0;

	if (pg_async_attempts_retention <= 0 || n == 0)
		return;

	ids = palloc(sizeof(int64) * n);
	starts = palloc(sizeof(int64) * n);
	durations = palloc(sizeof(int64) * n);
	attempts = palloc(sizeof(int32) * n);
	owners = palloc(sizeof(int32) * n);
	event_ids = palloc(sizeof(char *) * n);
	functions = palloc(sizeof(char *) * n);
	outcomes = palloc(sizeof(char *) * n);
	errors = palloc(sizeof(char *) * n);
	sqlstates = palloc(sizeof(char *) * n);

	for (i = 0; i < n; i++)
	{
		AsyncJob   *job = &jobs[i];
		int			k = nfailed;

		if (!job->failed)
			continue;
		ids[k] = job->id;
		starts[k] = job->started_at;
		durations[k] = job->duration_us;
		attempts[k] = job->expired || job->looped ? job->attempt - 1 : job->attempt;
		owners[k] = (int32) job->enqueued_by;
		event_ids[k] = job->event_id;
		functions[k] = job->function;
		outcomes[k] = job->expired ? "expired" : job->looped ? "loop" : "failed";
		errors[k] = job->error_message;
		sqlstates[k] = job->sqlstate[0] ? job->sqlstate : NULL;
		nfailed++;
	}
	if (nfailed == 0)
		return;
	args[0] = pg_async_int8_array(ids, nfailed, INT8OID);
	args[1] = text_array(event_ids, nfailed);
	args[2] = text_array(functions, nfailed);
	args[3] = int4_array(attempts, nfailed, INT4OID);
	args[4] = pg_async_int8_array(starts, nfailed, TIMESTAMPTZOID);
	args[5] = pg_async_int8_array(durations, nfailed, INT8OID);
	args[6] = text_array(outcomes, nfailed);
	args[7] = text_array(errors, nfailed);
	args[8] = Int32GetDatum(MyProcPid);
	args[9] = text_array(sqlstates, nfailed);
	args[10] = int4_array(owners, nfailed, OIDOID);
	rc = SPI_execute_plan(attempts_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "pg_async: recording attempts failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * pg_async_log_unrun writes the server log line of a job dead-lettered
 * without running, at pg_async.log_failures: it expired, or it was stopped
 * as a loop (looped).  For the workers' jobs (log_failure) and for those
 * of external functions that async.claim() dead-letters (external.c).
 */
void
pg_async_log_unrun(const char *function, const char *event_id, const char *error,
				   bool looped)
{
	if (looped)
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" stopped as a loop: %s; dead-lettered",
						function, event_id, error),
				 errhint("Raise the function's max_depth if such a chain is meant.")));
	else
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" expired: %s; dead-lettered",
						function, event_id, error)));
}

/*
 * log_failure writes the server log line of a failed attempt, at
 * pg_async.log_failures: what failed, why, and what happens next.
 */
static void
log_failure(AsyncJob *job, bool dead, TimestampTz retry_at)
{
	if (job->expired || job->looped)
		pg_async_log_unrun(job->function, job->event_id, job->error_message,
						   !job->expired);
	else if (dead)
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" attempt %d of %d failed: %s (SQLSTATE %s); dead-lettered",
						job->function, job->event_id, job->attempt,
						job->registered ? job->max_attempts : ASYNC_DEFAULT_MAX_ATTEMPTS,
						job->error_message, job->sqlstate)));
	else
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" attempt %d of %d failed: %s (SQLSTATE %s); retry at %s",
						job->function, job->event_id, job->attempt,
						job->registered ? job->max_attempts : ASYNC_DEFAULT_MAX_ATTEMPTS,
						job->error_message, job->sqlstate,
						timestamptz_to_str(retry_at))));
}

/* What async._fail() made of a failed attempt. */
typedef struct FailOutcome
{
	bool		dead;			/* dead-lettered, not queued again */
	TimestampTz retry_at;		/* when queued again */
} FailOutcome;

/*
 * record_failures records the failed attempts of jobs[0..n-1] (only of
 * jobs[only], if only >= 0) with async._fail(), in a subtransaction of
 * their own, and fills outcomes.  If that fails, it rolls the
 * subtransaction back and returns false, with the error's message in
 * *error when error is not NULL.  SPI is connected.
 */
static bool
record_failures(AsyncJob *jobs, int n, int only, FailOutcome *outcomes, char **error,
				int *sqlerrcode)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		int			i;

		for (i = (only >= 0 ? only : 0); i < (only >= 0 ? only + 1 : n); i++)
		{
			AsyncJob   *job = &jobs[i];
			Datum		args[5];
			bool		isnull;
			Datum		d;
			int			rc;

			if (!job->failed)
				continue;
			args[0] = Int64GetDatum(job->id);
			args[1] = CStringGetTextDatum(job->error_message);
			args[2] = CStringGetTextDatum(job->sqlstate);
			args[3] = TimestampTzGetDatum(job->failed_at);
			args[4] = CStringGetTextDatum(job->looped ? "loop" : "expired");
			rc = SPI_execute_plan(fail_plan, args,
								  job->expired || job->looped ? NULL : "    n", false, 0);
			if (rc != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "pg_async: recording a failed attempt failed: %s",
					 SPI_result_code_string(rc));
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			outcomes[i].dead = !isnull && strcmp(TextDatumGetCString(d), "dead") == 0;
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			outcomes[i].retry_at = isnull ? 0 : DatumGetTimestampTz(d);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (error != NULL)
			*error = pg_async_clip_message(edata->message ? edata->message : "unknown error");
		if (sqlerrcode != NULL)
			*sqlerrcode = edata->sqlerrcode;
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * transient_error: whether an error that kept a failed attempt from being
 * recorded says nothing of the job (a full disk or another shortage, an
 * I/O error, a conflict, a cancel, a shutdown), so that the job must not
 * be dead-lettered for it.
 */
static bool
transient_error(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_INSUFFICIENT_RESOURCES ||	/* 53: disk full, OOM */
		category == ERRCODE_SYSTEM_ERROR ||	/* 58: I/O error */
		category == ERRCODE_TRANSACTION_ROLLBACK ||	/* 40 */
		category == ERRCODE_OPERATOR_INTERVENTION ||	/* 57: cancel, shutdown */
		category == ERRCODE_CONNECTION_EXCEPTION ||	/* 08 */
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * settle_error dead-letters a job whose failed attempt could not be
 * recorded, with reason 'error', by async._bury_jobs(), which touches
 * nothing but the job's own row, reservation and dead letter.
 */
static void
settle_error(AsyncJob *job, const char *error)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	int			rc;

	args[0] = Int64GetDatum(job->id);
	args[1] = CStringGetTextDatum(psprintf("pg_async could not record the failed attempt: %s",
										   error));
	rc = SPI_execute_with_args("SELECT async._bury_jobs(ARRAY[$1], 'error', $2, NULL)", 2, types, args,
							   NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: settling a job failed: %s", SPI_result_code_string(rc));
}

/*
 * pg_async_finish_jobs writes the outcomes of jobs[0..n-1] in the current
 * transaction: one UPDATE for those that succeeded, async._fail() for each
 * that failed, their history in async.attempt_log, and their counts.  It
 * leaves SPI connected, for pg_async_commit_batch().
 */
void
pg_async_finish_jobs(AsyncJob *jobs, int n)
{
	int64	   *ok_ids;
	int64	   *ok_finished;
	int64	   *ok_durations;
	Datum	   *results;
	bool	   *result_nulls;
	bool		with_results = false;
	bool		with_destinations = false;
	int			nok = 0;
	int			i;
	int			save_nestlevel;
	FailOutcome *outcomes;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	prepare_plans();
	save_nestlevel = pg_async_push_planner_settings();

	for (i = 0; i < n; i++)
		if (jobs[i].reserved)
			pg_async_note_reservations_released();

	ok_ids = palloc(sizeof(int64) * Max(n, 1));
	ok_finished = palloc(sizeof(int64) * Max(n, 1));
	ok_durations = palloc(sizeof(int64) * Max(n, 1));
	results = palloc(sizeof(Datum) * Max(n, 1));
	result_nulls = palloc(sizeof(bool) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!jobs[i].failed)
		{
			ok_finished[nok] = jobs[i].started_at + jobs[i].duration_us;
			ok_durations[nok] = jobs[i].duration_us;
			results[nok] = jobs[i].result;
			result_nulls[nok] = (jobs[i].result == (Datum) 0);
			if (!result_nulls[nok])
				with_results = true;
			if (jobs[i].has_destination)
				with_destinations = true;
			ok_ids[nok++] = jobs[i].id;
			pg_async_pending(jobs[i].function)->succeeded++;
		}

	if (nok > 0)
	{
		/*
		 * Successful jobs keep their handler's end and run time: async.attempts
		 * shows their attempt from there, so success writes no history row.
		 */
		Datum		args[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
		int			dims[1] = {nok};
		int			lbs[1] = {1};
		int			rc;

		args[0] = pg_async_int8_array(ok_ids, nok, INT8OID);
		if (with_results)
			args[1] = PointerGetDatum(construct_md_array(results, result_nulls, 1, dims, lbs,
														 JSONBOID, -1, false, TYPALIGN_INT));
		else
		{
			args[1] = (Datum) 0;
			nulls[1] = 'n';
		}
		args[2] = BoolGetDatum(with_destinations);
		args[3] = pg_async_int8_array(ok_finished, nok, TIMESTAMPTZOID);
		args[4] = pg_async_int8_array(ok_durations, nok, INT8OID);
		rc = SPI_execute_plan(succeed_plan, args, nulls, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "pg_async: finishing jobs failed: %s",
				 SPI_result_code_string(rc));
	}

	/*
	 * The failures, in a subtransaction: one job's bad data must not stop
	 * the others' (nor, through a worker that dies on it at every attempt,
	 * every other role's).  If it fails, each failure is recorded in one of
	 * its own, and a job whose failure cannot be recorded is settled alone
	 * as a dead letter with reason 'error'.
	 */
	outcomes = palloc0(sizeof(FailOutcome) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (jobs[i].failed)
			break;
	if (i < n && !record_failures(jobs, n, -1, outcomes, NULL, NULL))
	{
		for (i = 0; i < n; i++)
		{
			char	   *error = NULL;
			int			sqlerrcode = 0;

			if (!jobs[i].failed ||
				record_failures(jobs, n, i, outcomes, &error, &sqlerrcode))
				continue;

			/*
			 * A full disk is no fault of the job: the batch's transaction
			 * is aborted, the worker exits, and its jobs, still 'running',
			 * are recovered by the next worker once the error has passed.
			 */
			if (transient_error(sqlerrcode))
				ereport(ERROR,
						(errcode(sqlerrcode),
						 errmsg("pg_async could not record the failed attempt of function \"%s\" event \"%s\": %s",
								jobs[i].function, jobs[i].event_id, error),
						 errdetail("The batch is rolled back; its jobs are recovered by the next worker.")));
			ereport(WARNING,
					(errmsg("pg_async could not record the failed attempt of function \"%s\" event \"%s\": %s",
							jobs[i].function, jobs[i].event_id, error),
					 errdetail("The event is dead-lettered with reason error.")));
			settle_error(&jobs[i], error);
			outcomes[i].dead = true;
		}
	}

	for (i = 0; i < n; i++)
	{
		AsyncJob   *job = &jobs[i];
		AsyncCounters *c;

		if (!job->failed)
			continue;
		c = pg_async_pending(job->function);
		if (job->looped)
			c->loops++;
		else if (!job->expired)
			c->failed++;
		if (outcomes[i].dead)
			c->dead++;
		else
			c->retried++;
		log_failure(job, outcomes[i].dead, outcomes[i].retry_at);
	}

	record_attempts(jobs, n);
	pg_async_pop_planner_settings(save_nestlevel);

	SpinLockAcquire(&MyAsyncSlot->mutex);
	MyAsyncSlot->jobs_done += n;
	SpinLockRelease(&MyAsyncSlot->mutex);
}

/*
 * pg_async_release_jobs gives back n claimed jobs that were not run, in the
 * current transaction: see worker.c's run_batch.
 */
void
pg_async_release_jobs(AsyncJob *jobs, int n)
{
	int64	   *ids = palloc(sizeof(int64) * n);
	int			i;

	for (i = 0; i < n; i++)
	{
		ids[i] = jobs[i].id;
		if (jobs[i].reserved)
			pg_async_note_reservations_released();
	}
	pg_async_release_job_ids(ids, n);
	elog(DEBUG1, "pg_async: gave back %d claimed jobs (a batch that overran, a worker leaving, or jobs too late for their rate limit)", n);
}

/*
 * pg_async_release_job_ids gives back the n claimed jobs ids, in the current
 * transaction, with SPI connected: pg_async_release_jobs, and the jobs that
 * shared a crashed handler's batch (recovery.c).
 */
void
pg_async_release_job_ids(int64 *ids, int n)
{
	Datum		args[1];
	int			save_nestlevel;
	int			rc;

	args[0] = pg_async_int8_array(ids, n, INT8OID);
	prepare_plans();
	save_nestlevel = pg_async_push_planner_settings();
	rc = SPI_execute_plan(release_plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "pg_async: giving back claimed jobs failed: %s",
			 SPI_result_code_string(rc));
	pg_async_pop_planner_settings(save_nestlevel);
}
