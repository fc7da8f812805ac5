/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pg_async worker: a background worker connected to
 *	  pg_async.database that claims ready jobs in batches and runs them.
 *	  Its loop is claim, run, finish, sleep:
 *
 *	  1. Claim (claim.c).  Up to a batch of ready jobs is marked 'running'
 *		 and their attempt counted, in a commit before any handler runs.
 *		 How many, and when, the batching policy says (batching.c).
 *	  2. Run.  Each handler runs in its own subtransaction (executor.c).
 *		 The transaction commits early when 63 handlers have written,
 *		 before PGPROC's subxid cache overflows.
 *	  3. Finish (finish.c).  The jobs' outcomes are written in the parent
 *		 transaction, and one commit makes every handler's writes and every
 *		 job's new state durable together.  Under load, that commit also
 *		 claims the next batch.
 *	  4. Sleep.  Between batches the worker does its upkeep
 *		 (maintenance.c), and an idle worker sleeps on its latch until the
 *		 next scheduled job, a commit that enqueued jobs, or
 *		 ASYNC_MAX_SLEEP_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* most handlers with a subxid in one transaction (PGPROC caches 64) */
#define ASYNC_MAX_SUBXIDS			(PGPROC_MAX_CACHED_SUBXIDS - 1)

static uint32 MyGeneration = 0;

/*
 * What pg_stat_activity.wait_event shows while the worker waits (on
 * PostgreSQL 17 and later; "Extension" before): for jobs, for
 * pg_async.batch_wait to claim a stream together, or asleep while a
 * colleague claims the stream.
 */
static uint32 WaitEventIdle = PG_WAIT_EXTENSION;
static uint32 WaitEventBatchWait = PG_WAIT_EXTENSION;
static uint32 WaitEventStandby = PG_WAIT_EXTENSION;

static MemoryContext WorkerContext = NULL;	/* the worker's lifetime */
static MemoryContext BatchContext = NULL;	/* one batch; reset every loop */
static AsyncDatabase *MyAsyncDb = NULL;	/* the shared state of its database */
static bool left_clean = false;	/* leaves with no job of its own */

/*
 * worker_detach gives the slot back when the worker exits, however it exits
 * short of a crash (which resets shared memory anyway).  It runs after the
 * transaction was aborted, so that other workers can recover its jobs at once.
 */
static void
worker_detach(int code, Datum arg)
{
	if (MyAsyncSlot == NULL)
		return;

	/*
	 * An exit short of a crash is no handler's crash: the marker goes, and
	 * the jobs left running are async._recover()'s to judge (recovery.c).
	 * A marker left would charge its job at the next restart, and, stale,
	 * the wrong job if that one ran again on the same attempt.  Before the
	 * slot is given back: the marker's place is the slot's, and its next
	 * worker's marker must not be erased.
	 */
	pg_async_inflight_clear();

	pg_atomic_write_u32(&MyAsyncSlot->sleeping, ASYNC_SLOT_AWAKE);
	pg_atomic_write_u64(&MyAsyncSlot->next_look_at, (uint64) PG_INT64_MAX);
	SpinLockAcquire(&MyAsyncSlot->mutex);
	if (MyAsyncSlot->generation == MyGeneration && MyAsyncSlot->pid == MyProcPid)
	{
		MyAsyncSlot->pid = 0;
		MyAsyncSlot->latch = NULL;
		MyAsyncSlot->busy = false;
	}
	SpinLockRelease(&MyAsyncSlot->mutex);

	pg_atomic_write_u64(&MyAsyncSlot->xact_start, (uint64) PG_INT64_MAX);

	/* enqueues that relied on our next look wake a colleague instead */
	pg_async_saturated_forget();

	/*
	 * Jobs left running, or job rows held locked past a colleague's claim,
	 * are for the others to find: the next look for dead workers' jobs
	 * comes at once, the floor goes to the start, and a sleeping colleague
	 * recovers our jobs now rather than in a few seconds.  Not after a
	 * clean leave: every transaction of ours committed with its jobs
	 * finished or given back, and the floor was kept as claims keep it.
	 * In a large backlog, the look for dead workers' jobs walks every
	 * queued job, and the walk from the start every entry of the jobs run.
	 */
	if (!left_clean)
	{
		pg_atomic_fetch_add_u32(&pg_async_my_db()->recovery_epoch, 1);
		pg_async_floor_reset();
		pg_async_wake_workers(1);
	}
	pg_async_wake_launcher();
}

/*
 * worker_attach claims slot MyAsyncSlotIndex for this process, unless the
 * launcher has since given the slot to another worker.
 */
static bool
worker_attach(void)
{
	bool		ok = false;

	MyAsyncSlot = &AsyncShmem->slots[MyAsyncSlotIndex];
	SpinLockAcquire(&MyAsyncSlot->mutex);
	if (MyAsyncSlot->generation == MyGeneration && MyAsyncSlot->pid == 0)
	{
		MyAsyncSlot->pid = MyProcPid;
		MyAsyncSlot->proc_start = MyStartTimestamp;
		MyAsyncSlot->latch = &MyProc->procLatch;
		MyAsyncSlot->busy = false;
		MyAsyncSlot->function[0] = '\0';
		MyAsyncSlot->event_id[0] = '\0';
		MyAsyncSlot->attempt = 0;
		MyAsyncSlot->started_at = 0;
		MyAsyncSlot->jobs_done = 0;
		pg_atomic_write_u64(&MyAsyncSlot->next_look_at, (uint64) PG_INT64_MAX);
		ok = true;
	}
	SpinLockRelease(&MyAsyncSlot->mutex);
	if (!ok)
		MyAsyncSlot = NULL;
	return ok;
}

/* show_job publishes what the worker runs now, for async.workers. */
static void
show_job(AsyncJob *job)
{
	SpinLockAcquire(&MyAsyncSlot->mutex);
	MyAsyncSlot->busy = (job != NULL);
	if (job != NULL)
	{
		strlcpy(MyAsyncSlot->function, job->function, sizeof(MyAsyncSlot->function));
		strlcpy(MyAsyncSlot->event_id, job->event_id, sizeof(MyAsyncSlot->event_id));
		MyAsyncSlot->attempt = job->attempt;
		MyAsyncSlot->started_at = GetCurrentTimestamp();
	}
	else
	{
		MyAsyncSlot->function[0] = '\0';
		MyAsyncSlot->event_id[0] = '\0';
		MyAsyncSlot->attempt = 0;
		MyAsyncSlot->started_at = 0;
	}
	SpinLockRelease(&MyAsyncSlot->mutex);
}

/*
 * begin_run_transaction starts a transaction that runs handlers.  It first
 * takes, without waiting, the worker's locks on pg_async's tables, so that
 * the statements that finish the jobs never wait for DROP EXTENSION while
 * the worker holds locks that DROP EXTENSION waits for.  If it cannot (the
 * extension is being dropped), the worker exits: the claimed jobs go with
 * the extension, or are recovered uncharged by the next worker.
 */
static void
begin_run_transaction(void)
{
	int			tries;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pg_async_announce_xact_start();
	for (tries = 0; !pg_async_extension_ready(); tries++)
	{
		if (tries >= 20)
		{
			AbortCurrentTransaction();
			ereport(LOG,
					(errmsg("pg_async worker exits: pg_async's tables are locked or gone")));
			proc_exit(0);
		}
		CHECK_FOR_INTERRUPTS();
		pg_usleep(50000L);
	}
	pgstat_report_activity(STATE_RUNNING, "pg_async: running handlers");
	pg_async_executor_reset();
	if (!pg_async_synchronous_commit)
		pg_async_commit_without_flush();
}

/*
 * asked_to_leave tells whether the launcher asked this worker to leave its
 * slot (launcher.c): to a database that waits for one, or for the
 * settings.
 */
static inline bool
asked_to_leave(void)
{
	return pg_atomic_read_u32(&MyAsyncSlot->yield) != 0;
}

/*
 * give_back gives back n claimed jobs that were not run, in the current
 * transaction, and takes the starts of the rate-limited ones out of their
 * windows.
 */
static void
give_back(AsyncJob *jobs, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		jobs[i].given_back = true;
	pg_async_release_jobs(jobs, n);
	pg_async_unnote_rate_starts(jobs, n);
}

/*
 * finish_run finishes the n jobs of a batch that the current transaction
 * ran, and gives back those it did not run because they would have started
 * too late for their rate limit (given_back).  These go to the end of jobs.
 */
static void
finish_run(AsyncJob *jobs, int n)
{
	AsyncJob   *late;
	int			nlate = 0;
	int			nrun = 0;
	int			i;

	/* the common case: every job ran, and none moves */
	for (i = 0; i < n && !jobs[i].given_back; i++)
		;
	if (i == n)
	{
		pg_async_finish_jobs(jobs, n);
		return;
	}

	late = palloc(sizeof(AsyncJob) * n);
	for (i = 0; i < n; i++)
	{
		if (jobs[i].given_back)
			late[nlate++] = jobs[i];
		else
			jobs[nrun++] = jobs[i];
	}
	memcpy(jobs + nrun, late, sizeof(AsyncJob) * nlate);
	pfree(late);

	pg_async_finish_jobs(jobs, nrun);
	if (nlate > 0)
		give_back(jobs + nrun, nlate);
}

/*
 * run_batch runs a claimed batch: every handler in its own subtransaction,
 * then the jobs' outcomes in the parent transaction.  One transaction holds
 * at most ASYNC_MAX_SUBXIDS handlers that wrote (and so have a subtransaction
 * id): past that, PGPROC's subxid cache overflows and every snapshot in the
 * cluster gets slower, so the jobs run so far are committed and the batch
 * goes on in a new transaction.  When next_cxt is given, the last
 * transaction also claims the next batch into it, so that under load one
 * commit both finishes a batch and durably marks the next one 'running'
 * before any of its handlers starts.  Returns the size of the next batch;
 * *gave_back tells whether jobs of this batch were given back, not run,
 * and *claimed whether the next claim ran.
 */
static int
run_batch(AsyncJob *jobs, int n, MemoryContext next_cxt, AsyncJob **next_jobs,
		  bool *gave_back, bool *claimed)
{
	int			nnext = 0;
	int			first = 0;		/* first job of the current transaction */
	int			nrelease = 0;	/* jobs at the end given back, not run */
	int			nlate = 0;		/* jobs given back for starting late */
	TimestampTz first_start = 0;	/* when the batch's first handler started */
	int			i;
	TimestampTz next_run_at;
	TimestampTz batch_start = GetCurrentTimestamp();

	*next_jobs = NULL;

	/* the next claim comes after these handlers, as long as they usually take */
	pg_async_announce_next_look(pg_async_batch_expected_end(batch_start, n));
	begin_run_transaction();

	for (i = 0; i < n; i++)
	{
		AsyncJob   *job = &jobs[i];
		AsyncCounters *c = pg_async_pending(job->function);

		job->started_at = GetCurrentTimestamp();
		if (job->expired || job->looped)
		{
			/* not run: it goes to the dead letters as expired, or as a loop */
			job->failed = true;
			job->failed_at = job->started_at;
			job->duration_us = 0;
			continue;
		}
		if (job->rate_limited && first_start != 0 &&
			job->started_at - first_start > job->rate_margin_us)
		{
			/*
			 * Not run: the handlers before it took so long that it would
			 * start outside the window its claim counted it in, which is
			 * longer than the period by this margin for the time from a
			 * claim to its handlers.  It is given back, and the next claim
			 * counts it again.  The margin is counted from the batch's
			 * first handler, which always runs: the time from the claim to
			 * it (the claim's commit, the upkeep) is the same for every
			 * job of the batch, and counting it would give back whole
			 * batches, claim after claim, when the margin is short.
			 */
			job->given_back = true;
			nlate++;
			continue;
		}
		if (first_start == 0)
			first_start = job->started_at;
		show_job(job);
		pg_async_inflight_before_run(job);
		/* what the handler enqueues is one deeper (enqueue.c) */
		pg_async_current_depth = job->depth;
		pg_async_execute_job(job);
		pg_async_current_depth = -1;
		pg_async_consumer_end_job();
		CommandCounterIncrement();
		job->duration_us = GetCurrentTimestamp() - job->started_at;
		pg_async_batch_note_job(job->duration_us);

		c->started++;
		pg_async_count_duration(&c->duration, job->duration_us);
		pg_async_count_duration(&c->wait, job->started_at - job->due_at);

		/*
		 * A batch that overran is cut short: the rest is given back
		 * (give_back), in the transaction that finishes the jobs run so
		 * far; the next claim is sized by the slow jobs, and
		 * wakes a colleague when it is full.  So is the batch of a worker
		 * the launcher asks to leave: a database waiting for its slot
		 * waits for one handler, not for a batch.
		 */
		if (i + 1 < n &&
			(pg_async_batch_overran(batch_start, job->started_at + job->duration_us) ||
			 asked_to_leave()))
		{
			nrelease = n - i - 1;
			n = i + 1;
			break;
		}

		if (jobs[i].wrote && i + 1 < n &&
			(MyProc->subxidStatus.count >= ASYNC_MAX_SUBXIDS ||
			 MyProc->subxidStatus.overflowed))
		{
			finish_run(jobs + first, i + 1 - first);
			pg_async_commit_batch();
			first = i + 1;
			begin_run_transaction();
		}
	}
	show_job(NULL);

	finish_run(jobs + first, n - first);
	if (nrelease > 0)
		give_back(jobs + n, nrelease);
	*gave_back = nrelease > 0 || nlate > 0;

	/*
	 * begin_run_transaction() took the locks on pg_async's tables in this
	 * transaction: the extension cannot have gone since.
	 */
	*claimed = next_cxt != NULL && !asked_to_leave() &&
		GetCurrentTimestamp() >= pg_async_claim_due();
	if (*claimed)
		nnext = pg_async_claim_jobs(next_cxt, next_jobs, &next_run_at);

	/*
	 * A job committed from here on is not seen until the next claim: after
	 * this commit and its WAL flush, and after the batch just claimed, if
	 * any, or the wait for batch_wait.  While our claims get several jobs
	 * each (a stream, or one building up), committers leave their jobs to
	 * us if that is soon enough (pg_async_wake_slack), rather than wake a
	 * colleague to claim them in a transaction of its own: so a stream stays
	 * with one worker, which then batches it.  While jobs come one at a
	 * time, and not fast in all, a job that comes now goes to a sleeping
	 * colleague instead, who starts it at once rather than after our flush
	 * (pg_async_batch_next_look).
	 */
	{
		TimestampTz commit_start = GetCurrentTimestamp();

		pg_async_announce_next_look(pg_async_batch_next_look(commit_start, nnext));
		pg_async_commit_batch();
		pg_async_batch_note_commit(GetCurrentTimestamp() - commit_start);
	}
	pg_async_inflight_clear();

	/* session-level advisory locks taken by a handler end with its batch */
	LockReleaseSession(USER_LOCKMETHOD);

	return nnext;
}

/*
 * wait_for_claim waits until pg_async_claim_due(), publishing that as the
 * worker's next look, so that committers leave new jobs to it.
 */
static void
wait_for_claim(void)
{
	TimestampTz due = pg_async_claim_due();

	if (due <= GetCurrentTimestamp())
		return;
	pg_async_announce_next_look(due);
	for (;;)
	{
		long		remaining = (long) (due - GetCurrentTimestamp());

		if (remaining <= 0 || ConfigReloadPending)
			break;
		if (remaining < 1000)
			pg_usleep(remaining);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 remaining / 1000, WaitEventBatchWait);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * sleep_time is how long an idle worker may sleep: until the next scheduled
 * job, at most ASYNC_MAX_SLEEP_MS.
 */
static long
sleep_time(TimestampTz next_run_at)
{
	long		ms = ASYNC_MAX_SLEEP_MS;

	/* upkeep left half done goes on at once */
	if (pg_async_maintenance_pending())
		return 0;
	if (next_run_at != 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		/*
		 * A job that is due but was not claimed is locked by a colleague
		 * claiming it right now, or was keyed by claims that could not take
		 * it yet (claim.c): look again shortly, without spinning.
		 */
		if (next_run_at <= now)
			return 50;
		ms = Min(ms, (long) ((next_run_at - now + 999) / 1000));
	}
	return ms;
}

/*
 * extension_present tells whether pg_async is installed in the worker's
 * database, and publishes the answer in the database's state: served, or
 * without the extension, which stops its workers until CREATE EXTENSION
 * (databases.c).  It also learns the database's name.
 */
static bool
extension_present(void)
{
	uint32		created = pg_atomic_read_u32(&MyAsyncDb->created);
	uint32		state;
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (MyAsyncDatabase == NULL)
		MyAsyncDatabase = MemoryContextStrdup(WorkerContext,
											  get_database_name(MyDatabaseId));
	present = OidIsValid(get_extension_oid("pg_async", true));
	CommitTransactionCommand();

	state = pg_atomic_read_u32(&MyAsyncDb->state);
	if (state == ASYNC_DB_DROPPING)
		return present;
	if (present)
	{
		if (state == ASYNC_DB_UNKNOWN &&
			pg_atomic_compare_exchange_u32(&MyAsyncDb->state, &state, ASYNC_DB_SERVED))
			pg_async_wake_launcher();	/* the other workers can start */
		return true;
	}
	if (pg_atomic_compare_exchange_u32(&MyAsyncDb->state, &state, ASYNC_DB_ABSENT))
	{
		/* a CREATE EXTENSION our snapshot missed: look again */
		pg_memory_barrier();
		if (pg_atomic_read_u32(&MyAsyncDb->created) != created)
		{
			state = ASYNC_DB_ABSENT;
			(void) pg_atomic_compare_exchange_u32(&MyAsyncDb->state, &state,
												  ASYNC_DB_UNKNOWN);
		}
		ereport(DEBUG1,
				(errmsg("pg_async worker exits: database \"%s\" has no pg_async extension",
						MyAsyncDatabase)));
	}
	return false;
}

/*
 * pg_async_worker_main is a worker's entry point and loop.
 */
void
pg_async_worker_main(Datum main_arg)
{
	MyAsyncSlotIndex = DatumGetInt32(main_arg);
	pg_async_in_worker = true;
	memcpy(&MyGeneration, MyBgworkerEntry->bgw_extra, sizeof(uint32));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	WorkerContext = AllocSetContextCreate(TopMemoryContext, "pg_async worker",
										  ALLOCSET_DEFAULT_SIZES);
	BatchContext = AllocSetContextCreate(WorkerContext, "pg_async batch",
										 ALLOCSET_DEFAULT_SIZES);
	if (MyAsyncSlotIndex < 0 || MyAsyncSlotIndex >= AsyncShmem->nslots)
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(AsyncShmem->slots[MyAsyncSlotIndex].dboid,
											  InvalidOid, 0);

	/*
	 * Take the slot once connected, so that async.workers lists only workers
	 * that serve the database.  worker_detach is an on_shmem_exit callback:
	 * it runs after the transaction was aborted.
	 */
	if (!worker_attach())
		proc_exit(0);			/* the launcher gave this slot to another */
	on_shmem_exit(worker_detach, (Datum) 0);
	MyAsyncDb = pg_async_my_db();
	if (!extension_present())
		proc_exit(0);

	pg_async_claim_init();
	pg_async_inflight_open(MyAsyncSlotIndex);
	WaitEventIdle = pg_async_wait_event("PgAsyncWorkerIdle");
	WaitEventBatchWait = pg_async_wait_event("PgAsyncBatchWait");
	WaitEventStandby = pg_async_wait_event("PgAsyncWorkerStandby");

	SetConfigOption("application_name", "pg_async worker", PGC_USERSET, PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	pg_async_disable_transaction_timeout();

	/* a cancel request only ever cancels a handler (executor.c) */
	HOLD_CANCEL_INTERRUPTS();

	/* two batch contexts: one for the batch running, one for the next */
	{
		MemoryContext batch_cxt[2];
		int			cur = 0;
		AsyncJob   *jobs = NULL;
		int			n = 0;
		bool		served = pg_async_database_served(MyAsyncDatabase);
		TimestampTz idle_since = 0; /* since when its claims find nothing */
		bool		jobs_left = false;	/* the last batch knew of more */

		batch_cxt[0] = BatchContext;
		batch_cxt[1] = AllocSetContextCreate(WorkerContext, "pg_async next batch",
											 ALLOCSET_DEFAULT_SIZES);

		for (;;)
		{
			TimestampTz next_run_at;
			TimestampTz now;
			long		sleep_ms;
			bool		ready;
			bool		leaving = false;
			bool		yielding = false;
			bool		following = false;	/* the first worker took it idle */

			CHECK_FOR_INTERRUPTS();

			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
				served = pg_async_database_served(MyAsyncDatabase);
			}
			/* the launcher starts workers for other databases or counts */
			if (!served || MyAsyncSlot->rank >= pg_async_workers ||
				pg_atomic_read_u32(&MyAsyncDb->state) != ASYNC_DB_SERVED)
				leaving = true;
			/* the launcher gives our slot to a database that waits for one */
			if (asked_to_leave())
				leaving = yielding = true;
			/* the first worker took the database idle (idle.c) */
			if (MyAsyncSlot->rank != 0 && pg_atomic_read_u32(&MyAsyncDb->idle) != 0)
				leaving = following = true;

			if (n > 0)
			{
				AsyncJob   *next_jobs;
				MemoryContext next_cxt = batch_cxt[1 - cur];
				bool		full = pg_async_batch_was_full(n);
				bool		gave_back;
				bool		claimed;

				/* a full batch: there may be more, let a colleague help */
				if (full)
					pg_async_wake_workers(pg_async_batch_size);

				MemoryContextReset(next_cxt);
				n = run_batch(jobs, n, leaving ? NULL : next_cxt, &next_jobs,
							  &gave_back, &claimed);
				/* a claim that ran tells for itself: its batch runs next */
				jobs_left = gave_back || (full && !claimed);
				jobs = next_jobs;
				cur = 1 - cur;
				(void) pg_async_maintenance();
				continue;
			}

			if (leaving)
			{
				/*
				 * Jobs left behind (ready ones, or a retry its last batch
				 * scheduled): the database asks for its turn, or leaves
				 * when it needs a worker next.  A worker that yields with
				 * jobs it gave back, or after a full batch, knows there
				 * are: it asks without a look at the queue, which in a
				 * large backlog walks the entries of the jobs just run.
				 */
				if (yielding && jobs_left)
				{
					pg_async_stop_counting();
					pg_async_demand_workers(MyAsyncDb);
				}
				else if ((yielding || following) &&
						 !pg_async_prepare_leave(yielding && !pg_async_colleague_alive(), 0))
					pg_async_demand_workers(MyAsyncDb);
				left_clean = true;
				proc_exit(0);
			}

			MemoryContextReset(batch_cxt[cur]);

			if (pg_async_maintenance())
				continue;

			/* a stream of jobs is one worker's to batch */
			if (pg_async_batch_leave_to_colleague())
			{
				sleep_ms = pg_async_saturated_sleep_ms(ASYNC_MAX_SLEEP_MS);
				pg_async_announce_next_look(GetCurrentTimestamp() + sleep_ms * 1000);
				pg_atomic_write_u32(&MyAsyncSlot->sleeping, ASYNC_SLOT_ASLEEP);
				pg_memory_barrier();
				pg_async_batch_forget_stream(); /* once woken, claim at once */
				(void) WaitLatch(MyLatch,
								 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 sleep_ms, WaitEventStandby);
				ResetLatch(MyLatch);
				continue;
			}
			wait_for_claim();

			/* from here, a commit that enqueues jobs must wake us */
			pg_async_announce_next_look(GetCurrentTimestamp());
			pg_atomic_write_u32(&MyAsyncSlot->sleeping, ASYNC_SLOT_CLAIMING);
			pg_memory_barrier();

			n = pg_async_claim_batch(batch_cxt[cur], &jobs, &next_run_at, &ready);
			jobs_left = false;
			if (n > 0)
			{
				pg_atomic_write_u32(&MyAsyncSlot->sleeping, ASYNC_SLOT_AWAKE);
				idle_since = 0;
				pg_atomic_write_u64(&MyAsyncDb->last_work, (uint64) GetCurrentTimestamp());
				continue;
			}

			/*
			 * Asleep from here, unless a committer has already swapped the
			 * handshake: then we look again at once.  Not by its latch
			 * alone: the claim may have waited for a lock, and that wait
			 * consumed the latch the committer set.  Sleeping then, with
			 * the handshake swapped, no committer could wake us, and its
			 * jobs waited for our next look (5 s).
			 */
			{
				uint32		expected = ASYNC_SLOT_CLAIMING;

				if (!pg_atomic_compare_exchange_u32(&MyAsyncSlot->sleeping, &expected,
													ASYNC_SLOT_ASLEEP))
					continue;
			}
			/* DROP EXTENSION pg_async: leave, and the database unserved */
			if (!ready && !extension_present())
				proc_exit(0);

			/* nothing to run for a while, or a database waits: leave */
			now = GetCurrentTimestamp();
			if (idle_since == 0)
				idle_since = now;
			if (ready && pg_async_leave_idle(idle_since, now))
			{
				bool		take_idle = MyAsyncSlot->rank == 0 ||
					!pg_async_colleague_alive();

				if (pg_async_prepare_leave(take_idle, next_run_at))
				{
					left_clean = true;
					proc_exit(0);
				}
				idle_since = 0;
				continue;
			}

			sleep_ms = ready ? sleep_time(next_run_at) : ASYNC_MAX_SLEEP_MS;
			sleep_ms = pg_async_idle_sleep_ms(idle_since, sleep_ms);
			sleep_ms = pg_async_recovery_sleep_ms(sleep_ms);
			sleep_ms = pg_async_saturated_sleep_ms(sleep_ms);
			pg_async_announce_next_look(now + sleep_ms * 1000);
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, WaitEventIdle);
			ResetLatch(MyLatch);
		}
	}
}
