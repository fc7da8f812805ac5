/*-------------------------------------------------------------------------
 *
 * idle.c
 *	  Workers on demand, the workers' side.  A database whose workers have
 *	  had nothing to run for pg_async.worker_idle_timeout goes idle: its
 *	  first worker marks it so, its workers leave, and it leaves in shared
 *	  memory when it will need one again (wake_at: the next scheduled job,
 *	  lease deadline or retention).  The launcher starts workers again at
 *	  that time, or at once when a commit finds no worker to wake
 *	  (shmem.c).  A worker also leaves when the launcher gives its slot to
 *	  a database that waits for one (pg_async.max_workers), and an idle
 *	  worker at once when any database waits.
 *
 * IDENTIFICATION
 *	  src/idle.c
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

/*
 * A job an async.pause() left unmarked (it skips the jobs other
 * transactions hold) waits like a marked one: no claim takes it.
 */
#define NOT_PAUSED \
" AND NOT EXISTS (SELECT FROM async.functions f" \
"                  WHERE f.name OPERATOR(pg_catalog.=) j.function AND f.paused)"

/*
 * What the idle database needs next, from a snapshot taken after it was
 * marked idle: -infinity when a job is ready now (a commit that found the
 * database not yet idle and woke nobody, or a colleague that did not
 * claim it), else the earliest of the next scheduled job, lease deadline
 * and retention (NULL: none); the retention no sooner than $2, a time in
 * the future while its rounds wait for a held xmin horizon
 * (pg_async_retention_wake).  Jobs of external functions are the
 * consumers', and those of a function held at concurrency 0 wait for a
 * change of the limit, which wakes the workers itself.
 */
static const char *const wake_at_sql =
"SELECT CASE WHEN EXISTS ("
"   SELECT FROM async.jobs j"
"    WHERE j.priority OPERATOR(pg_catalog.=) 0 AND j.finished_at IS NULL"
"      AND NOT j.paused AND NOT j.limited"
"      AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
"      AND j.state OPERATOR(pg_catalog.=) 'queued'" NOT_PAUSED ")"
" OR EXISTS ("
"   SELECT FROM async.jobs j"
"    WHERE j.priority OPERATOR(pg_catalog.<>) 0 AND j.finished_at IS NULL"
"      AND NOT j.paused AND NOT j.limited"
"      AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
"      AND j.state OPERATOR(pg_catalog.=) 'queued'" NOT_PAUSED ")"
" OR EXISTS ("
"   SELECT FROM async.jobs j JOIN async.functions f"
"       ON f.name OPERATOR(pg_catalog.=) j.function"
"    WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL"
"      AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
"      AND j.state OPERATOR(pg_catalog.=) 'queued'"
"      AND f.handler IS NOT NULL AND NOT f.paused"
"      AND f.concurrency IS DISTINCT FROM 0)"
/* a job left marked paused after its function's resume, for the sweep */
" OR EXISTS ("
"   SELECT FROM async.jobs j JOIN async.functions f"
"       ON f.name OPERATOR(pg_catalog.=) j.function"
"    WHERE j.paused AND NOT f.paused AND j.finished_at IS NULL"
"      AND j.state OPERATOR(pg_catalog.=) 'queued'"
"      AND f.handler IS NOT NULL"
"      AND f.concurrency IS DISTINCT FROM 0)"
" THEN '-infinity'::pg_catalog.timestamptz"
" ELSE LEAST("
"   (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"     WHERE j.priority OPERATOR(pg_catalog.=) 0 AND j.finished_at IS NULL"
"       AND NOT j.paused AND NOT j.limited"
"       AND j.run_at OPERATOR(pg_catalog.>) pg_catalog.now()" NOT_PAUSED "),"
"   (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"     WHERE j.priority OPERATOR(pg_catalog.<>) 0 AND j.finished_at IS NULL"
"       AND NOT j.paused AND NOT j.limited"
"       AND j.run_at OPERATOR(pg_catalog.>) pg_catalog.now()" NOT_PAUSED "),"
"   (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"     WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL"
"       AND j.run_at OPERATOR(pg_catalog.>) pg_catalog.now()" NOT_PAUSED "),"
"   (SELECT pg_catalog.min(r.deadline) FROM async.running r"
"     WHERE r.lease IS NOT NULL),"
"   (SELECT GREATEST(f.finished_at OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $1), $2)"
"      FROM (SELECT j.finished_at FROM async.jobs j"
"             WHERE j.finished_at IS NOT NULL ORDER BY j.finished_at LIMIT 1) f))"
" END";

/*
 * colleagues_asleep tells whether every other worker of this database
 * sleeps with nothing to run: only then may the first one take the
 * database idle.
 */
static bool
colleagues_asleep(void)
{
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		uint32		sleeping;

		if (slot == MyAsyncSlot || !pg_async_same_db(slot) || slot->latch == NULL)
			continue;
		sleeping = pg_atomic_read_u32(&slot->sleeping);
		if (sleeping != ASYNC_SLOT_ASLEEP && sleeping != ASYNC_SLOT_LEAVING)
			return false;
	}
	return true;
}

/* pg_async_colleague_alive tells whether another worker serves this database. */
bool
pg_async_colleague_alive(void)
{
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];

		if (slot != MyAsyncSlot && pg_async_slot_counts(slot))
			return true;
	}
	return false;
}

/*
 * pg_async_leave_idle tells whether this worker, whose claims have found
 * nothing since idle_since, should leave now: after
 * pg_async.worker_idle_timeout without a claim of jobs in its database, or
 * at once when a database waits for a slot.  The first worker then takes
 * the whole database idle (pg_async_prepare_leave); the others leave only
 * for a waiting database, and otherwise when the first one has marked the
 * database idle.  The first does not time out while the last look for dead
 * workers' jobs left some and the next is due soon (recovery.c), so none
 * leaves but for a waiting database.
 */
bool
pg_async_leave_idle(TimestampTz idle_since, TimestampTz now)
{
	bool		timed_out;

	/* idle since the database's last claim, whichever worker made it */
	idle_since = Max(idle_since,
					 (TimestampTz) pg_atomic_read_u64(&pg_async_my_db()->last_work));
	timed_out = pg_async_worker_idle_timeout >= 0 &&
		TimestampDifferenceExceeds(idle_since, now, pg_async_worker_idle_timeout) &&
		pg_async_recovery_due() == 0;
	if (pg_atomic_read_u32(&AsyncShmem->dbs_waiting) > 0)
		return MyAsyncSlot->rank > 0 || colleagues_asleep();
	return timed_out && MyAsyncSlot->rank == 0 && colleagues_asleep();
}

/*
 * pg_async_idle_sleep_ms bounds a worker's sleep so that it wakes up when
 * its idle timeout ends.
 */
long
pg_async_idle_sleep_ms(TimestampTz idle_since, long ms)
{
	TimestampTz end;
	TimestampTz now;

	if (pg_async_worker_idle_timeout < 0 || MyAsyncSlot->rank != 0)
		return ms;
	idle_since = Max(idle_since,
					 (TimestampTz) pg_atomic_read_u64(&pg_async_my_db()->last_work));
	end = TimestampTzPlusMilliseconds(idle_since, pg_async_worker_idle_timeout);
	now = GetCurrentTimestamp();
	/* past it, a colleague is still busy: its next look is soon enough */
	if (end <= now)
		return ms;
	return Min(ms, (long) ((end - now + 999) / 1000));
}

/*
 * pg_async_stop_counting makes this worker, about to leave, one that no
 * commit counts on any longer: a commit that reads the mark from now on asks
 * the launcher for a worker instead of waking this one.
 */
void
pg_async_stop_counting(void)
{
	pg_atomic_write_u64(&MyAsyncSlot->next_look_at, (uint64) PG_INT64_MAX);
	pg_atomic_write_u32(&MyAsyncSlot->sleeping, ASYNC_SLOT_LEAVING);
	pg_memory_barrier();
}

/*
 * pg_async_prepare_leave makes this worker one that no commit counts on any
 * longer (pg_async_stop_counting), then looks, with a new snapshot, whether
 * a job is ready that a commit left to it; returns true when none is, and
 * the worker may leave.
 * With take_idle, the worker (the first of its database) also takes the
 * database idle, and publishes when it needs a worker again: the next job
 * due (next_run_at, if not 0, from the worker's last claim: a limit's
 * window, for instance), lease deadline, retention, or the next look for
 * dead workers' jobs when the last left some.  When a job is
 * ready, the caller stays (the database is not idle after all), or, if it
 * must go, asks the launcher for a worker in its place.
 */
bool
pg_async_prepare_leave(bool take_idle, TimestampTz next_run_at)
{
	AsyncDatabase *db = pg_async_my_db();
	Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};
	Datum		args[2];
	Datum		value;
	bool		isnull;
	bool		ran;
	TimestampTz wake;
	TimestampTz due;

	/*
	 * The marks first: a commit that reads them from now on asks the
	 * launcher for a worker, and one that read them unset committed before
	 * our look below, which then sees its jobs.
	 */
	if (take_idle)
	{
		pg_atomic_write_u64(&db->wake_at, (uint64) PG_INT64_MAX);
		pg_atomic_write_u32(&db->idle, 1);
	}
	pg_async_stop_counting();

	args[0] = Int64GetDatum((int64) pg_async_retention);
	args[1] = TimestampTzGetDatum(pg_async_retention_wake());
	value = pg_async_upkeep_value("pg_async: leaving", wake_at_sql, 2,
								  argtypes, args, &isnull, &ran);
	wake = isnull ? PG_INT64_MAX : DatumGetTimestampTz(value);
	/* a look that could not run (the tables locked) may have missed one */
	if (!ran || wake == DT_NOBEGIN)
	{
		/* a job is ready */
		pg_atomic_write_u32(&MyAsyncSlot->sleeping, ASYNC_SLOT_AWAKE);
		if (take_idle)
			pg_atomic_write_u32(&db->idle, 0);
		return false;
	}
	/* what the database needs next, in case it is idle by then */
	if (next_run_at != 0 && next_run_at > GetCurrentTimestamp())
		wake = Min(wake, next_run_at);
	/*
	 * a look for dead workers' jobs due soon (the last left some): the
	 * workers stay for it unless they go for a waiting database, and then
	 * one comes back for it, no sooner than a second from now
	 */
	due = pg_async_recovery_due();
	if (due > 0)
		wake = Min(wake, Max(due, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000)));
	if (wake != PG_INT64_MAX)
		pg_async_wake_at(db, wake);
	if (take_idle)
	{
		/* the colleagues asleep see the mark now, and leave too */
		for (int i = 0; i < AsyncShmem->nslots; i++)
		{
			AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
			Latch	   *latch = slot->latch;

			if (slot != MyAsyncSlot && pg_async_same_db(slot) && latch != NULL)
				SetLatch(latch);
		}
		ereport(DEBUG1,
				(errmsg("pg_async: database \"%s\" goes idle", MyAsyncDatabase)));
	}
	return true;
}
