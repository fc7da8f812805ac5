/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The shared state of pg_async: the launcher's latch and one slot per
 *	  worker, the commit-time wake-up of sleeping workers, the concurrency
 *	  limits found reached, whose jobs need no wake-up, and room for each
 *	  database's cursors among keys (keys.c).
 *
 *	  Only plain data and latches of PGPROCs live here: nothing that points
 *	  into one process's memory.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"
#include "stats.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

AsyncShared *AsyncShmem = NULL;

/*
 * pg_async_shmem_size is the size of the shared state: one slot per
 * possible worker.  (The counters, stats.c, have their own.)
 */
Size
pg_async_shmem_size(void)
{
	Size		size;

	size = add_size(offsetof(AsyncShared, slots),
					mul_size(max_worker_processes, sizeof(AsyncWorkerSlot)));
	size = MAXALIGN(size);
	return add_size(size, mul_size(pg_async_max_databases, sizeof(AsyncDatabase)));
}

/* init_db gives a database's entry its starting values. */
static void
init_db(AsyncDatabase *db)
{
	int			i;

	pg_atomic_init_u32(&db->state, ASYNC_DB_UNKNOWN);
	pg_atomic_init_u32(&db->created, 0);
	pg_atomic_init_u32(&db->demand, 0);
	pg_atomic_init_u32(&db->idle, 0);
	pg_atomic_init_u64(&db->wake_at, (uint64) PG_INT64_MAX);
	pg_atomic_init_u64(&db->last_work, 0);
	db->waiting_since = 0;
	pg_atomic_init_u32(&db->wake_cursor, 0);
	pg_atomic_init_u32(&db->recovery_epoch, 0);
	pg_atomic_init_u32(&db->recovered_epoch, 0);
	pg_atomic_init_u64(&db->recovered_at, 0);
	pg_atomic_init_u32(&db->recovery_interval_ms, 0);
	pg_atomic_init_u64(&db->recovery_due_at, 0);
	pg_atomic_init_u32(&db->recovery_left_looks, 0);
	pg_atomic_init_u64(&db->jobs_committed, 0);
	pg_atomic_init_u32(&db->inflight_state, 0);
	pg_atomic_init_u64(&db->retention_fxid, 0);
	pg_atomic_init_u64(&db->retention_deferred_since, 0);
	pg_atomic_init_u32(&db->retention_deferral_logged, 0);
	pg_atomic_init_u64(&db->retention_deferral_logged_at, 0);
	/* leases from before a restart expire too */
	pg_atomic_init_u32(&db->leases_exist, 1);
	SpinLockInit(&db->lease_mutex);
	db->lease_floor = 0;
	db->lease_floor_since = PG_INT64_MAX;
	db->lease_look = 0;
	db->backend_local = false;
	pg_atomic_init_u64(&db->limits_epoch, 1);
	SpinLockInit(&db->saturated_mutex);
	db->saturated_epoch = 0;
	db->nsaturated = 0;
	db->saturated_pid = 0;
	db->skipped_wakeups = 0;
	/* no floor: the first claims walk from the start */
	for (i = 0; i < ASYNC_NFLOORS; i++)
		pg_atomic_init_u64(&db->floors[i], 0);
	pg_atomic_init_u64(&db->sweep_end, 0);
	pg_atomic_init_u64(&db->sweep_us, 0);
	SpinLockInit(&db->key_cursors_mutex);
	db->key_cursors_clock = 0;
	memset(db->key_cursors, 0, sizeof(db->key_cursors));
}

/*
 * pg_async_shmem_init creates the shared state in the postmaster (and again
 * after a crash restart, when shared memory is new) or attaches to it.
 */
void
pg_async_shmem_init(void)
{
	bool		found;
	int			i;
	int			f;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	AsyncShmem = ShmemInitStruct("pg_async", pg_async_shmem_size(), &found);
	if (!found)
	{
		AsyncShmem->launcher_pid = 0;
		AsyncShmem->launcher_latch = NULL;
		pg_atomic_init_u32(&AsyncShmem->dbs_waiting, 0);
		pg_atomic_init_u32(&AsyncShmem->extensions_created, 0);
		SpinLockInit(&AsyncShmem->dbs_mutex);
		AsyncShmem->ndbs = pg_async_max_databases;
		AsyncShmem->dbs = (AsyncDatabase *)
			((char *) AsyncShmem +
			 MAXALIGN(add_size(offsetof(AsyncShared, slots),
							   mul_size(max_worker_processes, sizeof(AsyncWorkerSlot)))));
		for (i = 0; i < AsyncShmem->ndbs; i++)
		{
			AsyncShmem->dbs[i].dboid = InvalidOid;
			init_db(&AsyncShmem->dbs[i]);
		}
		AsyncShmem->nslots = max_worker_processes;
		for (i = 0; i < max_worker_processes; i++)
		{
			AsyncWorkerSlot *slot = &AsyncShmem->slots[i];

			memset(slot, 0, sizeof(AsyncWorkerSlot));
			SpinLockInit(&slot->mutex);
			pg_atomic_init_u32(&slot->sleeping, ASYNC_SLOT_AWAKE);
			pg_atomic_init_u64(&slot->next_look_at, PG_INT64_MAX);
			for (f = 0; f < ASYNC_NFLOORS; f++)
				pg_atomic_init_u64(&slot->claim_low[f], 0);
			pg_atomic_init_u64(&slot->xact_start, PG_INT64_MAX);
			pg_atomic_init_u32(&slot->yield, 0);
		}
	}
	pg_async_stats_shmem_init();
	pg_async_consumers_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * pg_async_wake_slack is how much later than at once a job may be claimed
 * by an awake worker, rather than wake another for it: ASYNC_WAKE_SLACK_US,
 * or pg_async.batch_wait if longer.
 */
TimestampTz
pg_async_wake_slack(void)
{
	return Max(ASYNC_WAKE_SLACK_US, (TimestampTz) (pg_async_batch_wait * 1000.0));
}

/*
 * pg_async_slot_looks_by tells whether the worker of slot is awake and will
 * look at the queue by 'by', as it announced (next_look_at).  An
 * announcement overdue by more than the slack is stale: its worker is
 * held up (a handler slower than the batch's estimate) and will not take
 * new jobs soon.
 */
bool
pg_async_slot_looks_by(AsyncWorkerSlot *slot, TimestampTz by, TimestampTz now)
{
	TimestampTz look;

	if (slot->latch == NULL ||
		pg_atomic_read_u32(&slot->sleeping) != ASYNC_SLOT_AWAKE)
		return false;
	look = (TimestampTz) pg_atomic_read_u64(&slot->next_look_at);
	return look <= by && look >= now - pg_async_wake_slack();
}

/*
 * wake_slot wakes the worker of slot if its handshake is in state 'from',
 * and tells whether it did.
 */
static bool
wake_slot(AsyncWorkerSlot *slot, uint32 from)
{
	uint32		expected = from;
	Latch	   *latch;

	if (pg_atomic_read_u32(&slot->sleeping) != from ||
		!pg_atomic_compare_exchange_u32(&slot->sleeping, &expected, ASYNC_SLOT_AWAKE))
		return false;
	latch = slot->latch;
	if (latch != NULL)
		SetLatch(latch);
	return true;
}

/*
 * pg_async_wake_workers wakes enough sleeping workers for njobs new jobs:
 * one per batch, never more than are asleep.  A worker that is awake will
 * look at the queue again before it sleeps, so it needs no wake-up; the
 * 'sleeping' handshake, swapped to ASYNC_SLOT_AWAKE here, makes sure that two
 * committers do not both spend their wake-up on the same worker.
 *
 * Fewer jobs than a batch wake nobody while an awake worker is about to
 * claim again (within ASYNC_WAKE_SLACK_US, or pg_async.batch_wait if that is
 * longer: the wait it announces when it holds back a claim; and not
 * overdue, pg_async_slot_looks_by): it takes them
 * with its next claim, where a woken colleague would spend a transaction and
 * a WAL flush of its own on them.  Nor do they wake a sleeping worker while
 * another is taking its last look before it sleeps: that one is told to look
 * again instead.  A stream of jobs thus stays with one worker, in batches.
 */
void
pg_async_wake_workers(int njobs)
{
	AsyncDatabase *db;
	int			wanted;
	int			nslots;
	int			alive = 0;
	uint32		start;
	int			i;

	if (AsyncShmem == NULL || njobs <= 0)
		return;
	db = pg_async_my_db();
	nslots = AsyncShmem->nslots;
	wanted = (njobs + pg_async_batch_size - 1) / pg_async_batch_size;

	pg_memory_barrier();

	/*
	 * With pg_async.workers at 0, an idle database is still asked out of
	 * idle, so that the workers it gets once the setting is raised claim
	 * these jobs (an idle database gets none until a demand or its
	 * wake_at); one that is not idle needs nothing, and its commits do not
	 * wake the launcher one after the other.
	 */
	if (pg_async_workers <= 0)
	{
		if (pg_atomic_read_u32(&db->idle) != 0)
			pg_async_demand_workers(db);
		return;
	}

	/* an idle database, or one whose workers all left: a cold start */
	for (i = 0; i < nslots; i++)
	{
		if (pg_async_slot_counts(&AsyncShmem->slots[i]))
			alive++;
	}
	if (alive == 0 || pg_atomic_read_u32(&db->idle) != 0)
	{
		pg_async_demand_workers(db);
		if (alive == 0)
			return;
	}

	if (njobs < pg_async_batch_size)
	{
		TimestampTz now = GetCurrentTimestamp();

		for (i = 0; i < nslots; i++)
		{
			if (pg_async_same_db(&AsyncShmem->slots[i]) &&
				pg_async_slot_looks_by(&AsyncShmem->slots[i],
									   now + pg_async_wake_slack(), now))
				return;
		}
		for (i = 0; i < nslots; i++)
		{
			if (pg_async_same_db(&AsyncShmem->slots[i]) &&
				wake_slot(&AsyncShmem->slots[i], ASYNC_SLOT_CLAIMING))
				return;
		}
	}

	start = pg_atomic_fetch_add_u32(&db->wake_cursor, 1);
	for (i = 0; i < nslots && wanted > 0; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[(start + i) % nslots];

		if (!pg_async_same_db(slot))
			continue;
		if (wake_slot(slot, ASYNC_SLOT_ASLEEP) || wake_slot(slot, ASYNC_SLOT_CLAIMING))
			wanted--;
	}

	/* more work than the workers running: the launcher may start others */
	if (wanted > 0 && njobs >= pg_async_batch_size && alive < pg_async_workers)
		pg_async_demand_workers(db);
}

/*
 * pg_async_demand_workers asks the launcher for the workers of a database:
 * it found none to wake, or too few.
 */
void
pg_async_demand_workers(AsyncDatabase *db)
{
	if (pg_atomic_read_u32(&db->demand) == 0 &&
		pg_atomic_exchange_u32(&db->demand, 1) == 0)
		pg_async_wake_launcher();
}

/*
 * pg_async_wake_at tells the launcher that the database needs a worker at
 * 'when' (a job scheduled then, a lease's deadline), in case it is idle
 * by then.
 */
void
pg_async_wake_at(AsyncDatabase *db, TimestampTz when)
{
	uint64		old = pg_atomic_read_u64(&db->wake_at);

	while ((uint64) when < old)
	{
		if (pg_atomic_compare_exchange_u64(&db->wake_at, &old, (uint64) when))
		{
			pg_async_wake_launcher();
			break;
		}
	}
}

/*
 * pg_async_jobs_committed counts njobs jobs made ready by a commit, then
 * wakes workers for them.  Workers read the count to tell how fast jobs come
 * in all, whichever worker claims them.
 */
void
pg_async_jobs_committed(int njobs)
{
	if (AsyncShmem == NULL || njobs <= 0)
		return;
	pg_atomic_fetch_add_u64(&pg_async_my_db()->jobs_committed, njobs);
	pg_async_wake_workers(njobs);
}

/*
 * pg_async_find_db returns the entry of database dboid, or NULL when it has
 * none; with create, it takes a free entry for it first, and returns NULL
 * only when pg_async.max_databases entries are all taken.
 */
AsyncDatabase *
pg_async_find_db(Oid dboid, bool create)
{
	AsyncDatabase *found = NULL;
	AsyncDatabase *free_entry = NULL;
	int			i;

	if (AsyncShmem == NULL || !OidIsValid(dboid))
		return NULL;
	SpinLockAcquire(&AsyncShmem->dbs_mutex);
	for (i = 0; i < AsyncShmem->ndbs && found == NULL; i++)
	{
		AsyncDatabase *db = &AsyncShmem->dbs[i];

		if (db->dboid == dboid)
			found = db;
		else if (!OidIsValid(db->dboid) && free_entry == NULL)
			free_entry = db;
	}
	if (found == NULL && create && free_entry != NULL)
	{
		/* nobody reads an entry before it names their database */
		init_db(free_entry);
		pg_write_barrier();
		free_entry->dboid = dboid;
		found = free_entry;
	}
	SpinLockRelease(&AsyncShmem->dbs_mutex);
	return found;
}

/*
 * pg_async_free_db gives the entry of a database that is gone back; the
 * launcher calls it once no worker of that database is left.
 */
void
pg_async_free_db(AsyncDatabase *db)
{
	SpinLockAcquire(&AsyncShmem->dbs_mutex);
	db->dboid = InvalidOid;
	SpinLockRelease(&AsyncShmem->dbs_mutex);
}

/*
 * pg_async_my_db returns the entry of this backend's database.  When every
 * entry is taken (more databases use pg_async than pg_async.max_databases),
 * it warns once and returns an entry of the backend's own memory: no worker
 * serves that database, and its commits wake nobody.
 */
AsyncDatabase *
pg_async_my_db(void)
{
	static AsyncDatabase *mine = NULL;
	static AsyncDatabase *local = NULL;

	if (mine != NULL && mine->dboid == MyDatabaseId)
		return mine;
	mine = pg_async_find_db(MyDatabaseId, true);
	if (mine != NULL)
		return mine;
	if (local == NULL)
	{
		local = MemoryContextAllocZero(TopMemoryContext, sizeof(AsyncDatabase));
		init_db(local);
		local->dboid = MyDatabaseId;
		local->backend_local = true;
		if (AsyncShmem != NULL && OidIsValid(MyDatabaseId))
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pg_async serves no more than %d databases", AsyncShmem->ndbs),
					 errdetail("Jobs enqueued in this database stay queued."),
					 errhint("Raise pg_async.max_databases and restart the server.")));
	}
	return local;
}

/* pg_async_same_db tells whether a worker slot serves this backend's database. */
bool
pg_async_same_db(AsyncWorkerSlot *slot)
{
	return slot->in_use && slot->dboid == MyDatabaseId;
}

/*
 * pg_async_slot_counts tells whether a worker of this database runs and no
 * commit must do without it: attached, and not leaving (idle.c).
 */
bool
pg_async_slot_counts(AsyncWorkerSlot *slot)
{
	return pg_async_same_db(slot) && slot->latch != NULL &&
		pg_atomic_read_u32(&slot->sleeping) != ASYNC_SLOT_LEAVING;
}

/* pg_async_wake_launcher sets the launcher's latch, if there is a launcher. */
void
pg_async_wake_launcher(void)
{
	Latch	   *latch;

	if (AsyncShmem == NULL)
		return;
	latch = AsyncShmem->launcher_latch;
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Saturated limits.  A job of a function whose concurrency limit is reached
 * cannot run until one of its running jobs ends; waking a worker for it
 * only buys a claim that finds nothing.  So a worker's claim that counts
 * the reservations of limited functions (the full claim) publishes the
 * functions it found at their limit, and a committing enqueue of such a
 * function's job wakes nobody.
 *
 * What makes that safe is limits_epoch.  Every commit that may give a limit
 * room again (a job of a limited function finished, failed or given back,
 * the jobs of a dead worker recovered, a registration changed) bumps it,
 * after the commit.  A published list holds only while limits_epoch is
 * still the value read before the snapshot that found it.  So if an
 * enqueue, after its commit, finds its function in a list that holds, the
 * room that will run its job comes from a commit whose bump is still to
 * come.  A bump that follows such skipped wake-ups wakes a worker (the one
 * that bumped may have a batch to run before it claims again), and that
 * worker's claim, after the bump, sees the jobs.  If their function is at
 * its limit again by then, they wait for its next release, whose worker
 * claims in the releasing transaction or right after it.  Getting it wrong
 * would delay a job until a worker's next look (ASYNC_MAX_SLEEP_MS), never
 * lose it.  A skip and a bump are ordered by saturated_mutex, so that no
 * skip goes uncounted by the bump that ends it.
 */

/* pg_async_limits_epoch reads limits_epoch, before a claim's snapshot. */
uint64
pg_async_limits_epoch(void)
{
	pg_memory_barrier();
	return pg_atomic_read_u64(&pg_async_my_db()->limits_epoch);
}

/*
 * pg_async_limits_released tells, after a commit, that a concurrency limit
 * may have room again: every published list of saturated limits is void.
 * Returns limits_epoch as it was before.
 */
uint64
pg_async_limits_released(void)
{
	AsyncDatabase *db;
	uint64		before;
	uint32		skipped;

	if (AsyncShmem == NULL)
		return 0;
	db = pg_async_my_db();
	SpinLockAcquire(&db->saturated_mutex);
	before = pg_atomic_fetch_add_u64(&db->limits_epoch, 1);
	skipped = db->skipped_wakeups;
	db->skipped_wakeups = 0;
	SpinLockRelease(&db->saturated_mutex);
	if (skipped > 0)
		pg_async_wake_workers(1);
	return before;
}

/*
 * pg_async_publish_saturated publishes the functions names[0..n-1] as at
 * their limit, as found by a claim whose snapshot followed the read of
 * limits_epoch 'epoch': at their concurrency limit where until[i] is 0,
 * else with their rate limit full until until[i].  A list made at a later
 * epoch is kept: this one would be void anyway.  Names beyond
 * ASYNC_MAX_SATURATED are left out, which only costs their enqueues a
 * wake-up.
 */
void
pg_async_publish_saturated(uint64 epoch, char (*names)[ASYNC_NAME_SIZE],
						   TimestampTz *until, int n)
{
	AsyncDatabase *db = pg_async_my_db();
	int			i;

	n = Min(n, ASYNC_MAX_SATURATED);
	SpinLockAcquire(&db->saturated_mutex);
	if (epoch >= db->saturated_epoch)
	{
		db->saturated_epoch = epoch;
		db->saturated_pid = MyProcPid;
		for (i = 0; i < n; i++)
		{
			strlcpy(db->saturated[i], names[i], ASYNC_NAME_SIZE);
			db->saturated_until[i] = until[i];
		}
		db->nsaturated = n;
	}
	SpinLockRelease(&db->saturated_mutex);
}

/*
 * publisher_looks_by tells whether the worker with pid serves this
 * database still and will look at the queue by 'by': it is taking a look
 * now, or sleeps until then at the latest (it announces when it wakes
 * before it sleeps), or is awake and said it looks by then
 * (pg_async_slot_looks_by).  Not a worker held up in a long handler.  A
 * slot's pid is read without its mutex: a pid is read whole, and a stale
 * answer costs at worst one wake-up, or a job started at the next look of
 * a worker that has just left.
 */
static bool
publisher_looks_by(pid_t pid, TimestampTz by, TimestampTz now)
{
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		uint32		state;

		if (slot->pid != pid || !pg_async_same_db(slot))
			continue;
		state = pg_atomic_read_u32(&slot->sleeping);
		if (state == ASYNC_SLOT_CLAIMING)
			return true;
		if (state == ASYNC_SLOT_ASLEEP)
			return (TimestampTz) pg_atomic_read_u64(&slot->next_look_at) <= by;
		return pg_async_slot_looks_by(slot, by, now);
	}
	return false;
}

/*
 * listed_saturated tells whether function is in db's list of saturated
 * limits, and if the list still holds, with the time its entry holds until
 * (0: until the next bump).  The caller holds saturated_mutex.
 */
static bool
listed_saturated(AsyncDatabase *db, const char *function, TimestampTz *until)
{
	int			i;

	if (db->saturated_epoch != pg_atomic_read_u64(&db->limits_epoch))
		return false;
	for (i = 0; i < db->nsaturated; i++)
	{
		if (strcmp(db->saturated[i], function) == 0)
		{
			*until = db->saturated_until[i];
			return true;
		}
	}
	return false;
}

/*
 * pg_async_limit_saturated tells whether function is at its limit by a
 * list that still holds: at its concurrency limit, or with its rate limit
 * full for a while yet, as long as the worker that found it so will look
 * again when the window has room (pg_async_saturated_sleep_ms).
 * Call it after the commit that made its jobs visible.
 */
bool
pg_async_limit_saturated(const char *function)
{
	AsyncDatabase *db;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz until = 0;
	TimestampTz again = 0;
	pid_t		publisher;
	bool		saturated;

	if (AsyncShmem == NULL)
		return false;
	db = pg_async_my_db();
	SpinLockAcquire(&db->saturated_mutex);
	saturated = listed_saturated(db, function, &until);
	publisher = db->saturated_pid;
	if (saturated && until == 0)
		db->skipped_wakeups++;
	SpinLockRelease(&db->saturated_mutex);
	if (!saturated || until == 0)
		return saturated;

	/*
	 * A full rate limit: only until its window has room, and while the
	 * worker that will look then lives.  The skip is counted under the
	 * mutex, by the list it relies on, as above: a bump, or a new list, in
	 * between makes it look again.
	 */
	if (now >= until ||
		!publisher_looks_by(publisher, until + pg_async_wake_slack(), now))
		return false;
	SpinLockAcquire(&db->saturated_mutex);
	saturated = listed_saturated(db, function, &again) && again == until &&
		db->saturated_pid == publisher;
	if (saturated)
		db->skipped_wakeups++;
	SpinLockRelease(&db->saturated_mutex);
	return saturated;
}
