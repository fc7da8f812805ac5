/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *	  The upkeep a worker does between batches: recovery of the jobs of
 *	  dead workers and of claims lost in a crash (recovery.c), and, in the
 *	  first worker (rank 0) of each database only, the release of stale
 *	  paused or limited marks, the failure of external jobs whose lease
 *	  expired, and the deletion of finished jobs and old attempts past
 *	  their retention.  Each statement runs in a transaction of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "utils/timestamp.h"

/* how often a database's first worker releases stale paused or limited marks */
#define ASYNC_RELEASE_INTERVAL_MS	5000
/* how often a database's first worker fails the attempts whose lease expired */
#define ASYNC_EXPIRE_INTERVAL_MS	1000
/* how often a database's first worker applies pg_async.retention */
#define ASYNC_RETENTION_INTERVAL_MS	10000
/* how many finished jobs one retention transaction deletes */
#define ASYNC_RETENTION_BATCH		5000
/* how long the worker deletes between two of its batches, at least one transaction */
#define ASYNC_RETENTION_SLICE_MS	10

static TimestampTz last_retention = 0;
static TimestampTz last_release = 0;
static TimestampTz last_expiry = 0;

/*
 * Where the retention's walk of jobs_finished_idx starts.  Under a held xmin
 * horizon the entries of the jobs it deleted stay in that index, and a walk
 * from the start would visit all of them in every round: so a round starts
 * where the jobs still to delete can be, which is no earlier than the
 * cut-off of the round before, nor than the start of the oldest
 * transaction a worker had open then (a job gets its finished_at in the
 * transaction that finishes it, no earlier than its start).  A job
 * finished outside the workers (async.cancel in a long transaction) may
 * still finish earlier: a round walks from the start every
 * ASYNC_RETENTION_FULL_INTERVAL_MS, or 100 times as long as the first
 * transaction of the last such round took, if longer (under a held
 * horizon it walks every job deleted since, for seconds).
 */
#define ASYNC_RETENTION_FULL_INTERVAL_MS	100000
static TimestampTz retention_from = DT_NOBEGIN;
static TimestampTz last_full_round = 0;
static int64 full_round_us = 0;

/*
 * While the xmin horizon is held (a long transaction, a pg_dump, a
 * replication slot, a standby's feedback), no row the retention deletes can
 * be removed: the deletion only writes each job's page again, a page
 * evicted long since when the retention is long, and its WAL; in the
 * held-xmin drains, a round took about 40% of the first worker's time
 * (docs/performance.md).  So a round starts only once the rows the last
 * one deleted can be removed: when the horizon of async.jobs has passed
 * the last transaction that deleted jobs (retention_fxid of the database's
 * entry, which outlives the worker).  Until then the finished jobs are
 * kept past their retention, in the space their dead rows would hold
 * anyway, and the first round after the hold deletes them.  A worker that
 * leaves meanwhile asks for no worker for the retention soon
 * (pg_async_retention_wake).
 *
 * The log says when the rounds start to wait, at most once every
 * ASYNC_RETENTION_LOG_INTERVAL_MS (a handler that runs for minutes holds
 * the horizon too, and the rounds then wait for its end each time), and,
 * when it did, when they go on again.
 */
#define ASYNC_RETENTION_DEFERRED_WAKE_MS	60000
#define ASYNC_RETENTION_DEFERRED_WAKE_MAX_MS	600000
#define ASYNC_RETENTION_LOG_INTERVAL_MS		3600000

/* the round in progress: where its next batch starts, where the next round does */
static bool retention_round = false;
static TimestampTz retention_at;
static TimestampTz retention_next_from;

/*
 * oldest_worker_xact_start is the start of the oldest transaction a worker
 * of this database has open, or PG_INT64_MAX.
 */
static TimestampTz
oldest_worker_xact_start(void)
{
	TimestampTz oldest = PG_INT64_MAX;
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		TimestampTz t;

		if (!pg_async_same_db(&AsyncShmem->slots[i]))
			continue;
		t = (TimestampTz) pg_atomic_read_u64(&AsyncShmem->slots[i].xact_start);
		oldest = Min(oldest, t);
	}
	return oldest;
}

/*
 * deletions_removable tells, inside a transaction that has found the
 * extension ready (and so locked async.jobs), whether the rows the
 * retention deleted last can be removed now.
 */
static bool
deletions_removable(void)
{
	AsyncDatabase *db = pg_async_my_db();
	uint64		deleted_by = pg_atomic_read_u64(&db->retention_fxid);
	FullTransactionId next;
	TransactionId horizon;
	uint32		distance;
	uint64		full_horizon;
	TimestampTz now;
	TimestampTz logged_at;
	Relation	jobs;

	if (deleted_by == 0)
		return true;
	jobs = relation_open(AsyncJobsRelId, NoLock);
	horizon = GetOldestNonRemovableTransactionId(jobs);
	relation_close(jobs, NoLock);
	/*
	 * the horizon as a full transaction id: never after the next one, read
	 * after it; one before the first (vacuum_defer_cleanup_age, in a young
	 * cluster) counts as the first
	 */
	next = ReadNextFullTransactionId();
	distance = (uint32) (XidFromFullTransactionId(next) - horizon);
	full_horizon = U64FromFullTransactionId(next) > distance ?
		U64FromFullTransactionId(next) - distance : FirstNormalTransactionId;

	if (deleted_by < full_horizon)
	{
		if (pg_atomic_read_u32(&db->retention_deferral_logged))
			ereport(LOG,
					(errmsg("pg_async deletes finished jobs past pg_async.retention again: the xmin horizon has advanced")));
		pg_atomic_write_u32(&db->retention_deferral_logged, 0);
		pg_atomic_write_u64(&db->retention_deferred_since, 0);
		pg_atomic_write_u64(&db->retention_fxid, 0);
		return true;
	}

	now = GetCurrentTimestamp();
	if (pg_atomic_read_u64(&db->retention_deferred_since) == 0)
		pg_atomic_write_u64(&db->retention_deferred_since, (uint64) now);
	logged_at = (TimestampTz) pg_atomic_read_u64(&db->retention_deferral_logged_at);
	if (!pg_atomic_read_u32(&db->retention_deferral_logged) &&
		(logged_at == 0 ||
		 TimestampDifferenceExceeds(logged_at, now, ASYNC_RETENTION_LOG_INTERVAL_MS)))
	{
		ereport(LOG,
				(errmsg("pg_async keeps finished jobs past pg_async.retention while the xmin horizon is held"),
				 errdetail("The jobs it deleted last, in transaction %u, cannot be removed yet; deleting more would only write their pages again.",
						   XidFromFullTransactionId(FullTransactionIdFromU64(deleted_by))),
				 errhint("The xmin_horizon check of async.health() names what holds the horizon.")));
		pg_atomic_write_u32(&db->retention_deferral_logged, 1);
		pg_atomic_write_u64(&db->retention_deferral_logged_at, (uint64) now);
	}
	return false;
}

/*
 * pg_async_retention_wake returns the earliest time a worker should come
 * back for the retention, as far as its waiting goes: DT_NOBEGIN unless its
 * rounds wait for a held xmin horizon (see above).  Then as long from now
 * as they have waited, from ASYNC_RETENTION_DEFERRED_WAKE_MS to
 * ASYNC_RETENTION_DEFERRED_WAKE_MAX_MS: an idle database's workers come
 * back the less often the longer the hold lasts.
 */
TimestampTz
pg_async_retention_wake(void)
{
	TimestampTz since;
	TimestampTz now;
	int64		waited_ms;

	since = (TimestampTz) pg_atomic_read_u64(&pg_async_my_db()->retention_deferred_since);
	if (since == 0)
		return DT_NOBEGIN;
	now = GetCurrentTimestamp();
	waited_ms = (now - since) / 1000;
	return TimestampTzPlusMilliseconds(now,
									   Min(Max(waited_ms, ASYNC_RETENTION_DEFERRED_WAKE_MS),
										   ASYNC_RETENTION_DEFERRED_WAKE_MAX_MS));
}

/*
 * purge_finished deletes, in the transaction open, up to
 * ASYNC_RETENTION_BATCH finished jobs past their retention whose finished_at
 * is from 'from' on, and returns how many; *last is the latest finished_at
 * among them.  A schema older than 0.6 has no bound: the walk starts at the
 * first entry.
 */
static int
purge_finished(Datum *args, TimestampTz from, TimestampTz *last)
{
	Oid			types[4] = {INTERVALOID, INT4OID, INTERVALOID, TIMESTAMPTZOID};
	bool		bounded = AsyncReadyFloor;
	int			rc;
	int			n;
	bool		isnull;
	Datum		d;

	args[3] = TimestampTzGetDatum(from);
	rc = SPI_execute_with_args(bounded ?
							   "SELECT p.purged, p.last_finished_at"
							   "  FROM async._purge_finished($1, $2, $3, $4) p" :
							   "SELECT async._purge_finished($1, $2, $3), NULL::pg_catalog.timestamptz",
							   bounded ? 4 : 3, types, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_async: deleting finished jobs failed: %s",
			 SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	n = isnull ? 0 : DatumGetInt32(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		*last = DatumGetTimestampTz(d);
	if (n > 0)
	{
		FullTransactionId xid = GetTopFullTransactionIdIfAny();

		pg_atomic_write_u64(&pg_async_my_db()->retention_fxid,
							U64FromFullTransactionId(xid));
	}
	return n;
}

/*
 * purge_batch runs purge_finished in a transaction of its own, and returns
 * how many jobs it deleted; *last is where the next batch starts.  The
 * first batch of a round (first) deletes nothing and returns -1 while the
 * deletions of the round before cannot be removed.
 */
static int
purge_batch(Datum *args, TimestampTz from, bool first, TimestampTz *last)
{
	int			n = 0;

	*last = from;
	pg_async_announce_next_look(PG_INT64_MAX);
	pg_async_begin_work("pg_async: deleting finished jobs");
	if (pg_async_extension_ready())
		n = (first && !deletions_removable()) ? -1 : purge_finished(args, from, last);
	pg_async_end_work();
	return n;
}

/*
 * apply_retention deletes the finished jobs past pg_async.retention, in
 * transactions of ASYNC_RETENTION_BATCH jobs for ASYNC_RETENTION_SLICE_MS per
 * call, so that a worker spends tens of milliseconds on it between its
 * batches rather than seconds at once; a round goes on at the next call
 * until a batch comes back short.  The attempt history past pg_async.attempts_retention goes at
 * the end of each round.  Returns true while the round goes on.
 */
static bool
apply_retention(TimestampTz now)
{
	Datum		args[4];
	Interval	retention;
	Interval	attempts_retention;
	TimestampTz last;
	TimestampTz last_full_before = last_full_round;
	bool		first = !retention_round;
	int			n;

	memset(&retention, 0, sizeof(retention));
	memset(&attempts_retention, 0, sizeof(attempts_retention));
	retention.time = (int64) pg_async_retention * USECS_PER_SEC;
	attempts_retention.time = (int64) Max(pg_async_attempts_retention, 0) * USECS_PER_SEC;
	args[0] = IntervalPGetDatum(&retention);
	args[1] = Int32GetDatum(ASYNC_RETENTION_BATCH);
	args[2] = IntervalPGetDatum(&attempts_retention);

	if (!retention_round)
	{
		TimestampTz cutoff = now - (TimestampTz) pg_async_retention * USECS_PER_SEC;

		retention_round = true;
		retention_at = retention_from;
		if (last_full_round == 0 ||
			TimestampDifferenceExceeds(last_full_round, now,
									   (int) Min(Max(full_round_us / 10, ASYNC_RETENTION_FULL_INTERVAL_MS),
												 PG_INT32_MAX)))
		{
			retention_at = DT_NOBEGIN;
			last_full_round = now;
		}
		retention_next_from = Min(cutoff, oldest_worker_xact_start());
	}

	/* batches for up to ASYNC_RETENTION_SLICE_MS, then the worker's own */
	for (;;)
	{
		bool		full = (retention_at == DT_NOBEGIN);
		TimestampTz start = GetCurrentTimestamp();

		CHECK_FOR_INTERRUPTS();
		n = purge_batch(args, retention_at, first, &last);
		if (n < 0)
		{
			/* deferred: the same round is tried again at the next interval */
			retention_round = false;
			last_full_round = last_full_before;
			return false;
		}
		first = false;
		if (full)
			full_round_us = GetCurrentTimestamp() - start;
		/* the next batch goes on from the last job deleted */
		retention_at = last;
		if (n < ASYNC_RETENTION_BATCH)
			break;
		if (TimestampDifferenceExceeds(now, GetCurrentTimestamp(), ASYNC_RETENTION_SLICE_MS))
			return true;
	}

	retention_round = false;
	retention_from = retention_next_from;
	if (pg_async_attempts_retention > 0)
	{
		Oid			types[1] = {INTERVALOID};

		(void) pg_async_run_upkeep_sql("pg_async: deleting old attempts",
									   "SELECT async._purge_attempts($1)",
									   1, types, args + 2);
	}
	return false;
}

/* pg_async_maintenance_pending: a retention round goes on at the next call */
bool
pg_async_maintenance_pending(void)
{
	return retention_round;
}

/*
 * release_stray_reservations deletes the reservations in async.running of
 * jobs that are not running (queued, finished or deleted), and returns how
 * many.  A claim reserves a job in the transaction that marks it running,
 * and whatever ends, gives back or deletes the job deletes its reservation
 * in the same one, so there should be none: but one would make its
 * function or key look full for good (as the keyed claims of 0.17 could
 * leave, claiming jobs committed during their walk; a queued job deleted
 * with async.cancel() then left its reservation behind), so the first
 * worker of the database looks, and says so when it finds any.  Both
 * tables are read in one snapshot: a claim committing meanwhile shows the
 * running job and its reservation, or neither.
 */
static int
release_stray_reservations(void)
{
	int			n;

	n = pg_async_run_upkeep_sql("pg_async: releasing reservations of jobs not running",
								"WITH stray AS ("
								" DELETE FROM async.running r"
								"  WHERE NOT EXISTS (SELECT FROM async.jobs j"
								"                     WHERE j.id OPERATOR(pg_catalog.=) r.job_id"
								"                       AND j.state OPERATOR(pg_catalog.=) 'running')"
								" RETURNING r.job_id)"
								" SELECT pg_catalog.count(*)::pg_catalog.int4 FROM stray",
								0, NULL, NULL);
	if (n > 0)
		ereport(WARNING,
				(errmsg_plural("pg_async released %d reservation of a job that is not running",
							   "pg_async released %d reservations of jobs that are not running",
							   n, n),
				 errdetail("A job that is not running held a place of its function's concurrency or key limit."),
				 errhint("This is a bug of pg_async: please report it, with the server log around this line.")));
	return n;
}

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
	if (MyAsyncSlot->rank == 0 &&
		(last_release == 0 ||
		 TimestampDifferenceExceeds(last_release, now, ASYNC_RELEASE_INTERVAL_MS)))
	{
		last_release = now;
		if (pg_async_run_upkeep_sql("pg_async: releasing paused or limited jobs",
								"SELECT async._unpause_jobs()", 0, NULL, NULL) > 0)
			requeued = true;
		if (release_stray_reservations() > 0)
			requeued = true;
	}

	/*
	 * Leases of external jobs past their deadline: their consumers died or
	 * hang.  The claims of each function fail them too, but a function may
	 * have no consumer left.  Not before ALTER EXTENSION UPDATE to 0.8, as
	 * the last look at the extension found.
	 */
	if (MyAsyncSlot->rank == 0 && AsyncLeases &&
		(last_expiry == 0 ||
		 TimestampDifferenceExceeds(last_expiry, now, ASYNC_EXPIRE_INTERVAL_MS)) &&
		pg_async_leases_to_expire(now))
	{
		last_expiry = now;
		if (pg_async_run_upkeep_sql("pg_async: failing the attempts whose lease expired",
								"SELECT async._expire_leases()", 0, NULL, NULL) > 0)
			requeued = true;
	}

	if (MyAsyncSlot->rank == 0 &&
		(retention_round || last_retention == 0 ||
		 TimestampDifferenceExceeds(last_retention, now, ASYNC_RETENTION_INTERVAL_MS)))
	{
		if (!retention_round)
			last_retention = now;
		(void) apply_retention(now);
	}

	return requeued;
}
