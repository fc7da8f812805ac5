/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The pg_async launcher: one background worker, started by the
 *	  postmaster, that keeps pg_async.workers workers running in
 *	  pg_async.database and starts again any that exit.
 *
 *	  The launcher connects to no database (only shared catalogs), so that
 *	  a missing or dropped database makes it wait and warn, not crash-loop.
 *	  It never raises an ERROR for exhausted resources: it warns and retries.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "utils/snapmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* how long the launcher waits before starting a worker in the same slot again */
#define ASYNC_RESTART_DELAY_MS	1000
/* how often it repeats a warning that nothing changed */
#define ASYNC_WARN_INTERVAL_MS	60000

/* per slot, in the launcher's memory */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
} LauncherSlot;

static LauncherSlot *launcher_slots = NULL;

/* pg_async_register_launcher registers the launcher with the postmaster. */
void
pg_async_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_async");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_async_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_async launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_async launcher");
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/* launcher_detach forgets the launcher's latch when it exits. */
static void
launcher_detach(int code, Datum arg)
{
	AsyncShmem->launcher_latch = NULL;
	AsyncShmem->launcher_pid = 0;
}

/*
 * database_exists looks pg_async.database up in pg_database; the launcher
 * may read shared catalogs without being connected to a database.
 */
static bool
database_exists(const char *dbname)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	/*
	 * A plain scan of pg_database, as the autovacuum launcher does: an index
	 * scan would need pg_class, which a process without a database cannot
	 * read.
	 */
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), dbname) == 0 && db->datallowconn)
		{
			exists = true;
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/* slot_alive tells whether the worker last started in a slot may still run. */
static bool
slot_alive(int i)
{
	AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
	LauncherSlot *ls = &launcher_slots[i];
	pid_t		pid;

	if (!slot->in_use)
		return false;

	if (ls->handle != NULL)
	{
		if (GetBackgroundWorkerPid(ls->handle, &pid) != BGWH_STOPPED)
			return true;
		pfree(ls->handle);
		ls->handle = NULL;
	}
	else
	{
		/* adopted from a previous launcher: alive while it holds its slot */
		SpinLockAcquire(&slot->mutex);
		pid = slot->pid;
		SpinLockRelease(&slot->mutex);
		if (pid != 0 && kill(pid, 0) == 0)
			return true;
	}

	slot->in_use = false;
	return false;
}

/*
 * start_worker registers a dynamic background worker for slot i.  Returns
 * false, after a rate-limited warning, when the postmaster has no room.
 */
static bool
start_worker(int i, TimestampTz *last_warning)
{
	AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
	LauncherSlot *ls = &launcher_slots[i];
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcxt;

	slot->generation++;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_async");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_async_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_async worker %d", i);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_async worker");
	worker.bgw_main_arg = Int32GetDatum(i);
	memcpy(worker.bgw_extra, &slot->generation, sizeof(uint32));
	worker.bgw_notify_pid = MyProcPid;

	ls->last_start = GetCurrentTimestamp();

	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		MemoryContextSwitchTo(oldcxt);
		if (*last_warning == 0 ||
			TimestampDifferenceExceeds(*last_warning, GetCurrentTimestamp(),
									   ASYNC_WARN_INTERVAL_MS))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pg_async launcher could not start worker %d", i),
					 errdetail("No background worker slot is free."),
					 errhint("Raise max_worker_processes to at least pg_async.workers plus the other background workers, then restart the server.")));
			*last_warning = GetCurrentTimestamp();
		}
		return false;
	}
	MemoryContextSwitchTo(oldcxt);

	ls->handle = handle;
	slot->in_use = true;
	return true;
}

/* stop_worker asks the worker in slot i to exit. */
static void
stop_worker(int i)
{
	AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
	LauncherSlot *ls = &launcher_slots[i];
	pid_t		pid;

	if (ls->handle != NULL)
	{
		TerminateBackgroundWorker(ls->handle);
		return;
	}
	SpinLockAcquire(&slot->mutex);
	pid = slot->pid;
	SpinLockRelease(&slot->mutex);
	if (pid != 0)
		kill(pid, SIGTERM);
}

/*
 * pg_async_launcher_main is the launcher's entry point and loop: every time
 * its latch is set (a worker exited, a setting changed) or a second passed,
 * it makes the set of running workers match pg_async.workers.
 */
void
pg_async_launcher_main(Datum main_arg)
{
	char	   *served_db = NULL;
	bool		db_ok = false;
	TimestampTz last_db_check = 0;
	TimestampTz last_db_warning = 0;
	TimestampTz last_slot_warning = 0;
	uint32		wait_event;
	int			i;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	AsyncShmem->launcher_pid = MyProcPid;
	AsyncShmem->launcher_latch = &MyProc->procLatch;
	on_shmem_exit(launcher_detach, (Datum) 0);

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pg_async launcher");
	wait_event = pg_async_wait_event("PgAsyncLauncherMain");

	launcher_slots = MemoryContextAllocZero(TopMemoryContext,
											sizeof(LauncherSlot) * AsyncShmem->nslots);

	/*
	 * Workers started by a launcher that exited are still running: keep those
	 * that still hold their slot, and free the others.
	 */
	for (i = 0; i < AsyncShmem->nslots; i++)
		(void) slot_alive(i);

	served_db = MemoryContextStrdup(TopMemoryContext, pg_async_database);

	ereport(LOG,
			(errmsg("pg_async launcher started"),
			 errdetail("Serving database \"%s\" with %d workers.",
					   pg_async_database, pg_async_workers)));

	for (;;)
	{
		TimestampTz now;
		long		timeout = 10000;
		int			want;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(served_db, pg_async_database) != 0)
			{
				/* workers of the old database exit by themselves on reload */
				pfree(served_db);
				served_db = MemoryContextStrdup(TopMemoryContext, pg_async_database);
				last_db_check = 0;
				last_db_warning = 0;
			}
		}

		now = GetCurrentTimestamp();
		if (!db_ok || last_db_check == 0 ||
			TimestampDifferenceExceeds(last_db_check, now, 10000))
		{
			db_ok = database_exists(served_db);
			last_db_check = now;
			if (!db_ok && (last_db_warning == 0 ||
						   TimestampDifferenceExceeds(last_db_warning, now,
													  ASYNC_WARN_INTERVAL_MS)))
			{
				ereport(WARNING,
						(errcode(ERRCODE_UNDEFINED_DATABASE),
						 errmsg("pg_async.database \"%s\" does not exist", served_db),
						 errdetail("The pg_async workers are not started until it exists."),
						 errhint("Create the database, or set pg_async.database and reload the configuration.")));
				last_db_warning = now;
			}
		}

		if (!db_ok)
			timeout = ASYNC_RESTART_DELAY_MS;
		want = db_ok ? Min(pg_async_workers, AsyncShmem->nslots) : 0;
		for (i = 0; i < AsyncShmem->nslots; i++)
		{
			bool		alive = slot_alive(i);

			if (alive && i >= want)
				stop_worker(i);
			else if (!alive && i < want)
			{
				LauncherSlot *ls = &launcher_slots[i];
				long		since = 0;

				if (ls->last_start != 0)
				{
					long		secs;
					int			usecs;

					TimestampDifference(ls->last_start, now, &secs, &usecs);
					since = secs * 1000 + usecs / 1000;
				}
				if (ls->last_start == 0 || since >= ASYNC_RESTART_DELAY_MS)
				{
					/*
					 * A worker that exited may have found its database gone
					 * (DROP DATABASE ... WITH (FORCE)): look again before
					 * starting another, rather than restart it in a loop.
					 */
					if (ls->last_start != 0 && !database_exists(served_db))
					{
						db_ok = false;
						last_db_check = now;
						break;
					}
					if (!start_worker(i, &last_slot_warning))
						timeout = Min(timeout, ASYNC_RESTART_DELAY_MS);
				}
				else
					timeout = Min(timeout, ASYNC_RESTART_DELAY_MS - since);
			}
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 10),
						 wait_event);
		ResetLatch(MyLatch);
	}
}
