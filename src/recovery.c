/*-------------------------------------------------------------------------
 *
 * recovery.c
 *	  Jobs left running by a worker that is gone.  After a crash restart,
 *	  the in-flight markers of the last server lifetime (inflight.c) name
 *	  the jobs whose handlers were running, even where the crash lost
 *	  their claim: each is charged the attempt, before any worker claims.
 *	  While the server runs, the jobs of a worker that exited are queued
 *	  again by async._recover(), charged or not as it decides, when a
 *	  worker exits and on a timer in case an exit went unnoticed.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

/*
 * how often a worker looks for jobs of dead workers even if none exited,
 * at least and at most (see pg_async_recover_dead_workers)
 */
#define ASYNC_RECOVERY_INTERVAL_MS	5000
#define ASYNC_RECOVERY_MAX_INTERVAL_MS	600000

/* after a look another worker's held off, the next try comes this late */
#define ASYNC_RECOVERY_RETRY_MS		100

/*
 * after a look that left jobs of dead workers (another transaction held
 * them, or a shortage), the next comes this late, or ten times that look's
 * duration if longer; after each such look in a row twice as late as after
 * the one before, until it is the regular interval again
 */
#define ASYNC_RECOVERY_LEFT_MS		1000

bool		pg_async_recovery_locked = false;
bool		pg_async_recovery_left = false;
static TimestampTz retry_after = 0;

/*
 * A CTE, name, that locks the jobs of the batch of the crashed job $1,
 * claimed on attempt $2, whose limited mark is as 'marked' says.  A
 * worker's claim clears the mark, so the running jobs are in
 * jobs_ready_idx, but for those of a function with a concurrency_key,
 * whose claim leaves it (0.16): those are found through their
 * reservations in async.running ('more'), as async._recover() finds them.
 */
#define BATCH_OF(name, marked, more) \
" " name " AS (SELECT j.id FROM async.jobs j, async.jobs c" \
"  WHERE c.id OPERATOR(pg_catalog.=) $1" \
"    AND c.state OPERATOR(pg_catalog.=) 'running'" \
"    AND c.finished_at IS NULL" \
"    AND c.attempts OPERATOR(pg_catalog.=) $2" \
"    AND j.finished_at IS NULL AND NOT j.paused AND " marked more \
"    AND j.state OPERATOR(pg_catalog.=) 'running'" \
"    AND j.worker_pid IS NOT DISTINCT FROM c.worker_pid" \
"    AND j.started_at IS NOT DISTINCT FROM c.started_at" \
"    FOR UPDATE OF j SKIP LOCKED)"

/*
 * give_back_batch finds job_id still running on attempt 'attempt' (its
 * claim survived the crash), and gives the other jobs of its batch (claimed
 * by the same worker at the same time) back uncharged: its marker clears
 * them of the crash, where async._recover() would hold them all suspect.
 * Returns false if the job is not running on that attempt.  No worker
 * claims before the markers are acted on, so the batch is one of a worker
 * of the last server lifetime.  Rows another transaction holds locked are
 * left to async._recover(), and so is the whole batch if the job is one
 * of them: the claims, which wait for the markers, must not wait for a
 * session's lock.
 */
static bool
give_back_batch(int64 job_id, int32 attempt)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2];
	int64	   *others;
	int			nothers = 0;
	bool		found = false;
	uint64		i;

	args[0] = Int64GetDatum(job_id);
	args[1] = Int32GetDatum(attempt);
	if (SPI_execute_with_args("WITH" BATCH_OF("unmarked", "NOT j.limited", "") ","
							  BATCH_OF("reserved", "j.limited",
									   " AND j.id OPERATOR(pg_catalog.=) ANY (ARRAY("
									   "SELECT r.job_id FROM async.running r"
									   " WHERE r.lease IS NULL))")
							  " SELECT id FROM unmarked UNION ALL SELECT id FROM reserved",
							  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: finding the batch of a crashed job failed");

	others = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));

		if (id == job_id)
			found = true;
		else
			others[nothers++] = id;
	}
	if (!found)
		return false;
	if (nothers > 0)
		pg_async_release_job_ids(others, nothers);
	return true;
}

/*
 * charge_lost_claim charges job_id the attempt 'attempt' that its in-flight
 * marker says was running when the server went down.  If the claim of that
 * attempt did not survive (the job is queued again with one attempt fewer),
 * it marks the job running on that attempt again; if it did, the rest of
 * the job's batch is given back (give_back_batch).  Either way
 * async._charge_crash() then records the crashed attempt and retries or
 * dead-letters the job, as async._recover() does for a job alone in its
 * batch.  Returns 1 if it charged the job; a job another transaction holds
 * locked (an async.cancel() under way) is not charged: queued, it then
 * runs again uncharged, as when the markers cannot be read; running, it
 * is left to async._recover().  A worker's running job is never marked
 * paused, nor limited unless its function has a concurrency_key (then it
 * is reserved in async.running), which async._recover() relies on to find
 * running jobs in jobs_ready_idx: the marks go, should the function have
 * been paused or limited since the crash (the key's job is found through
 * its reservation, which a lost claim never made).
 */
static int
charge_lost_claim(int64 job_id, int32 attempt)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2];
	int			rc;

	args[0] = Int64GetDatum(job_id);
	args[1] = Int32GetDatum(attempt);
	rc = SPI_execute_with_args("UPDATE async.jobs j"
							   "   SET state = 'running', attempts = $2, paused = false, limited = false,"
							   "       started_at = pg_catalog.now(), worker_pid = NULL"
							   "  FROM (SELECT l.id FROM async.jobs l"
							   "         WHERE l.id OPERATOR(pg_catalog.=) $1"
							   "           AND l.state OPERATOR(pg_catalog.=) 'queued'"
							   "           AND l.finished_at IS NULL"
							   "           AND l.attempts OPERATOR(pg_catalog.=) ($2 OPERATOR(pg_catalog.-) 1)"
							   "           FOR UPDATE SKIP LOCKED) l"
							   " WHERE j.id OPERATOR(pg_catalog.=) l.id",
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "pg_async: charging a lost claim failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed != 1 && !give_back_batch(job_id, attempt))
		return 0;

	rc = SPI_execute_with_args("SELECT async._charge_crash($1)",
							   1, types, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: charging a lost claim failed: %s",
			 SPI_result_code_string(rc));
	return 1;
}

/*
 * Whether this worker is acting on the markers: if it exits meanwhile (a
 * FATAL error, pg_terminate_backend), abandon_markers leaves them to the
 * next worker, which the claims and the look for jobs of dead workers of
 * the database wait for (inflight_state).
 */
static bool acting_on_markers = false;
static bool abandon_registered = false;

static void
abandon_markers(int code, Datum arg)
{
	uint32		expected = 1;

	if (acting_on_markers)
		(void) pg_atomic_compare_exchange_u32(&pg_async_my_db()->inflight_state,
											  &expected, 0);
}

/*
 * pg_async_recover_lost_claims acts on the in-flight markers the workers of
 * the last server lifetime left (inflight.c), once per lifetime and before any
 * worker claims: one worker does it while the others wait.  While pg_async is
 * installed but its tables are locked (or it still is 0.1), it tries again at
 * the next upkeep.  If it fails, the queue must not stop: the error is logged
 * and the markers dropped, and the jobs they name run again without being
 * charged.
 */
void
pg_async_recover_lost_claims(void)
{
	uint32		expected = 0;
	int			charged = 0;
	bool		busy = false;
	MemoryContext cxt = CurrentMemoryContext;

	if (pg_atomic_read_u32(&pg_async_my_db()->inflight_state) == 2 ||
		!pg_atomic_compare_exchange_u32(&pg_async_my_db()->inflight_state, &expected, 1))
		return;
	if (!abandon_registered)
	{
		on_shmem_exit(abandon_markers, (Datum) 0);
		abandon_registered = true;
	}
	acting_on_markers = true;

	pg_async_announce_next_look(PG_INT64_MAX);
	PG_TRY();
	{
		pg_async_begin_work("pg_async: charging the jobs a crash interrupted");
		if (pg_async_extension_ready())
		{
			int64	   *job_ids;
			int32	   *attempts;
			int			n = pg_async_inflight_read(&job_ids, &attempts);
			int			i;

			for (i = 0; i < n; i++)
				charged += charge_lost_claim(job_ids[i], attempts[i]);
		}
		else if (OidIsValid(get_extension_oid("pg_async", true)))
		{
			/* installed but locked (or an older version): try again later */
			busy = true;
		}
		pg_async_end_work();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errmsg("pg_async could not charge the jobs a crash interrupted"),
				 errdetail("Their in-flight markers are dropped: those jobs run again without spending an attempt.")));
		charged = 0;
	}
	PG_END_TRY();
	acting_on_markers = false;
	if (busy)
	{
		/* claims keep waiting (inflight_state) until the markers are done */
		pg_atomic_write_u32(&pg_async_my_db()->inflight_state, 0);
		return;
	}
	pg_async_inflight_reset();
	pg_atomic_write_u32(&pg_async_my_db()->inflight_state, 2);

	if (charged > 0)
		ereport(LOG,
				(errmsg("pg_async charged %d job%s an attempt: %s running when the server went down",
						charged, charged == 1 ? "" : "s", charged == 1 ? "it was" : "they were")));
}

/*
 * pg_async_recover_dead_workers queues again, through async._recover(), the
 * jobs of dead workers: when a worker exited unclean (worker.c), at the
 * database's first start, and every recovery interval in case a worker's
 * exit went unnoticed (a pid reused after a restart).  Returns true when it
 * queued jobs again.  The last look that ran is the database's, in shared
 * memory, whichever worker made it: a worker that starts, as workers on
 * demand do at every turn (launcher.c), does not look again.
 *
 * The periodic look for jobs left running reads every unfinished job (no
 * index leads to the running ones alone: marking a job running must stay a
 * HOT update): 0.2 to 0.8 s with a backlog of a million jobs, which every
 * 5 s took a quarter of each worker's time while it drained that backlog.
 * So the interval grows with what the look costs: at least
 * ASYNC_RECOVERY_INTERVAL_MS, and 100 times the last look's duration,
 * keeping it to about 1% of a worker.  A look that left jobs of dead workers
 * (async._recovery_incomplete(): held by another transaction, or a
 * shortage) makes the next come sooner (ASYNC_RECOVERY_LEFT_MS), whichever
 * worker makes it, and the database's workers stay for it; a lock held
 * long brings the looks back to the regular interval within a few.
 */
bool
pg_async_recover_dead_workers(TimestampTz now)
{
	AsyncDatabase *db = pg_async_my_db();
	uint32		epoch = pg_atomic_read_u32(&db->recovery_epoch);
	TimestampTz last;
	Datum		value;
	bool		isnull;
	bool		ran;
	int			n;
	int64		took_ms;
	uint32		interval_ms;
	TimestampTz due = 0;

	if (now < retry_after)
		return false;
	/*
	 * The markers of a crash come first: they tell which job of a batch
	 * was running, where async._recover() could only hold the whole batch
	 * suspect (charge_lost_claim).
	 */
	if (pg_atomic_read_u32(&db->inflight_state) != 2)
		return false;
	/* recovered_at is written last: the epoch and interval read are its */
	last = (TimestampTz) pg_atomic_read_u64(&db->recovered_at);
	pg_read_barrier();
	if (last != 0 && epoch == pg_atomic_read_u32(&db->recovered_epoch) &&
		!TimestampDifferenceExceeds(last, now,
									(int) pg_atomic_read_u32(&db->recovery_interval_ms)))
		return false;

	pg_async_recovery_locked = false;
	pg_async_recovery_left = false;
	value = pg_async_upkeep_value("pg_async: recovering jobs of dead workers",
								  "SELECT async._recover()", 0, NULL, NULL,
								  &isnull, &ran);
	if (!ran || !pg_async_recovery_locked)
	{
		/* another worker's look is under way, or this one failed */
		retry_after = TimestampTzPlusMilliseconds(now, ASYNC_RECOVERY_RETRY_MS);
		return false;
	}
	took_ms = (GetCurrentTimestamp() - now) / 1000;
	interval_ms = (uint32) Min(Max(100 * took_ms, ASYNC_RECOVERY_INTERVAL_MS),
							   ASYNC_RECOVERY_MAX_INTERVAL_MS);
	if (pg_async_recovery_left)
	{
		/* 1 s, 2 s, 4 s ... as looks in a row leave jobs */
		uint32		looks = pg_atomic_read_u32(&db->recovery_left_looks);
		int64		soon = Max(10 * took_ms,
							   (int64) ASYNC_RECOVERY_LEFT_MS << Min(looks, 16));

		pg_atomic_write_u32(&db->recovery_left_looks, looks + 1);
		if (soon < interval_ms)
		{
			interval_ms = (uint32) soon;
			due = TimestampTzPlusMilliseconds(now, interval_ms);
		}
	}
	else
		pg_atomic_write_u32(&db->recovery_left_looks, 0);
	pg_atomic_write_u32(&db->recovery_interval_ms, interval_ms);
	pg_atomic_write_u64(&db->recovery_due_at, (uint64) due);
	pg_atomic_write_u32(&db->recovered_epoch, epoch);
	pg_write_barrier();
	pg_atomic_write_u64(&db->recovered_at, (uint64) now);
	n = isnull ? 0 : DatumGetInt32(value);
	if (n == 0)
		return false;

	/* their reservations went with them */
	(void) pg_async_limits_released();
	ereport(LOG,
			(errmsg("pg_async recovered %d job%s left running by a worker that exited",
					n, n == 1 ? "" : "s")));
	return true;
}

/*
 * pg_async_recovery_due returns when the database's next look for dead
 * workers' jobs is due, if the last look left some and it comes before the
 * regular interval; else 0.
 */
TimestampTz
pg_async_recovery_due(void)
{
	return (TimestampTz) pg_atomic_read_u64(&pg_async_my_db()->recovery_due_at);
}

/*
 * pg_async_recovery_sleep_ms bounds the sleep of ms of the database's first
 * worker so that it wakes for that look (at least ASYNC_RECOVERY_RETRY_MS
 * from now: another worker's look may be under way).
 */
long
pg_async_recovery_sleep_ms(long ms)
{
	TimestampTz due = pg_async_recovery_due();

	if (due == 0 || MyAsyncSlot->rank != 0)
		return ms;
	return Min(ms, Max((long) ((due - GetCurrentTimestamp() + 999) / 1000),
					   ASYNC_RECOVERY_RETRY_MS));
}
