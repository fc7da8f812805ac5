/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The shared state of pg_async: the launcher's latch and one slot per
 *	  worker, and the commit-time wake-up of sleeping workers.
 *
 *	  Only plain data and latches of PGPROCs live here: nothing that points
 *	  into one process's memory.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

AsyncShared *AsyncShmem = NULL;

/*
 * pg_async_shmem_init creates the shared state in the postmaster (and again
 * after a crash restart, when shared memory is new) or attaches to it.
 */
void
pg_async_shmem_init(void)
{
	bool		found;
	int			i;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	AsyncShmem = ShmemInitStruct("pg_async",
								 add_size(offsetof(AsyncShared, slots),
										  mul_size(max_worker_processes,
												   sizeof(AsyncWorkerSlot))),
								 &found);
	if (!found)
	{
		AsyncShmem->launcher_pid = 0;
		AsyncShmem->launcher_latch = NULL;
		pg_atomic_init_u32(&AsyncShmem->wake_cursor, 0);
		pg_atomic_init_u32(&AsyncShmem->recovery_epoch, 0);
		pg_atomic_init_u64(&AsyncShmem->jobs_committed, 0);
		pg_atomic_init_u32(&AsyncShmem->inflight_state, 0);
		AsyncShmem->nslots = max_worker_processes;
		for (i = 0; i < max_worker_processes; i++)
		{
			AsyncWorkerSlot *slot = &AsyncShmem->slots[i];

			memset(slot, 0, sizeof(AsyncWorkerSlot));
			SpinLockInit(&slot->mutex);
			pg_atomic_init_u32(&slot->sleeping, ASYNC_SLOT_AWAKE);
			pg_atomic_init_u64(&slot->next_look_at, PG_INT64_MAX);
		}
	}
	pg_async_stats_shmem_init();
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
	int			wanted;
	int			nslots;
	uint32		start;
	int			i;

	if (AsyncShmem == NULL || njobs <= 0)
		return;

	nslots = Min(AsyncShmem->nslots, pg_async_workers);
	if (nslots <= 0)
		return;
	wanted = (njobs + pg_async_batch_size - 1) / pg_async_batch_size;

	pg_memory_barrier();
	if (njobs < pg_async_batch_size)
	{
		TimestampTz now = GetCurrentTimestamp();

		for (i = 0; i < nslots; i++)
		{
			if (pg_async_slot_looks_by(&AsyncShmem->slots[i],
									   now + pg_async_wake_slack(), now))
				return;
		}
		for (i = 0; i < nslots; i++)
		{
			if (wake_slot(&AsyncShmem->slots[i], ASYNC_SLOT_CLAIMING))
				return;
		}
	}

	start = pg_atomic_fetch_add_u32(&AsyncShmem->wake_cursor, 1);
	for (i = 0; i < nslots && wanted > 0; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[(start + i) % nslots];

		if (wake_slot(slot, ASYNC_SLOT_ASLEEP) || wake_slot(slot, ASYNC_SLOT_CLAIMING))
			wanted--;
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
	pg_atomic_fetch_add_u64(&AsyncShmem->jobs_committed, njobs);
	pg_async_wake_workers(njobs);
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
