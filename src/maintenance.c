/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *	  The upkeep a worker does between batches: recovery of the jobs of
 *	  dead workers and of claims lost in a crash (recovery.c), and, in the
 *	  worker of slot 0 only, the release of stale paused or limited marks
 *	  and the deletion of finished jobs and old attempts past their
 *	  retention.  Each statement runs in a transaction of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

/* how often the worker of slot 0 releases stale paused or limited marks */
#define ASYNC_RELEASE_INTERVAL_MS	5000
/* how often the worker of slot 0 applies pg_async.retention */
#define ASYNC_RETENTION_INTERVAL_MS	10000
/* how many finished jobs one retention transaction deletes */
#define ASYNC_RETENTION_BATCH		5000

static TimestampTz last_retention = 0;
static TimestampTz last_release = 0;

/*
 * pg_async_maintenance does the upkeep that is due.  Returns true when it
 * queued jobs again.
 */
bool
pg_async_maintenance(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		requeued = false;

	pg_async_recover_lost_claims();
	if (pg_async_recover_dead_workers(now))
		requeued = true;

	/*
	 * Jobs marked paused or limited for what no longer holds (an enqueue, a
	 * retry or a release that raced async.resume, async.configure or
	 * async.unregister): released on a timer of their own, however the
	 * recovery of dead workers is paced, since nothing else would release them.
	 */
	if (MyAsyncSlotIndex == 0 &&
		(last_release == 0 ||
		 TimestampDifferenceExceeds(last_release, now, ASYNC_RELEASE_INTERVAL_MS)))
	{
		last_release = now;
		if (pg_async_run_upkeep_sql("pg_async: releasing paused or limited jobs",
								"SELECT async._unpause_jobs()", 0, NULL, NULL) > 0)
			requeued = true;
	}

	if (MyAsyncSlotIndex == 0 &&
		(last_retention == 0 ||
		 TimestampDifferenceExceeds(last_retention, now, ASYNC_RETENTION_INTERVAL_MS)))
	{
		Oid			types[3] = {INTERVALOID, INT4OID, INTERVALOID};
		Datum		args[3];
		Interval   *retention = palloc0(sizeof(Interval));
		Interval   *attempts_retention = palloc0(sizeof(Interval));
		int			n;

		last_retention = now;
		retention->time = (int64) pg_async_retention * USECS_PER_SEC;
		attempts_retention->time = (int64) Max(pg_async_attempts_retention, 0) * USECS_PER_SEC;
		args[0] = IntervalPGetDatum(retention);
		args[1] = Int32GetDatum(ASYNC_RETENTION_BATCH);
		args[2] = IntervalPGetDatum(attempts_retention);
		do
		{
			CHECK_FOR_INTERRUPTS();
			n = pg_async_run_upkeep_sql("pg_async: deleting finished jobs",
									"SELECT async._purge_finished($1, $2, $3)",
									3, types, args);
		} while (n >= ASYNC_RETENTION_BATCH);

		if (pg_async_attempts_retention > 0)
		{
			(void) pg_async_run_upkeep_sql("pg_async: deleting old attempts",
									   "SELECT async._purge_attempts($1)",
									   1, types + 2, args + 2);
		}
		pfree(attempts_retention);
		pfree(retention);
	}

	return requeued;
}
