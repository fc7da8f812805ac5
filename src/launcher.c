/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The pg_async launcher: one background worker, started by the
 *	  postmaster, that keeps pg_async.workers workers running in each
 *	  database it serves (databases.c) and starts again any that exit.
 *
 *	  The launcher connects to no database: it reads pg_database, a shared
 *	  catalog, and a database it does not know yet gets one worker, which
 *	  looks for the extension and either stays (the database is served) or
 *	  exits and marks the database as without it.  CREATE EXTENSION pg_async
 *	  wakes the launcher at its commit (databases.c); so does a worker that
 *	  exits.  A missing or dropped database makes the launcher wait and warn,
 *	  not crash-loop.  It never raises an ERROR for exhausted resources: it
 *	  warns and retries.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"
#include "job.h"

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
#include "storage/fd.h"
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

/* how often the launcher reads pg_database when nothing wakes it */
#define ASYNC_RESCAN_INTERVAL_MS	10000

/* per slot, in the launcher's memory */
typedef struct LauncherSlot
{
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
} LauncherSlot;

static LauncherSlot *launcher_slots = NULL;

/* how much earlier than its wake_at an idle database gets its workers */
#define ASYNC_WAKE_EARLY_MS		500
/* how long a database's only worker runs before it yields to a waiting one */
#define ASYNC_FAIR_QUANTUM_MS	500

/* a database the settings serve, as pg_database has it */
typedef struct LauncherDatabase
{
	Oid			dboid;
	char		name[NAMEDATALEN];
	AsyncDatabase *entry;		/* NULL: no shared entry was free */
	int			wants;			/* workers it should have now */
	int			alive;			/* workers it has */
} LauncherDatabase;

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
 * scan_databases reads pg_database: the databases the settings serve, and
 * in *all every database's OID.  A plain scan, as the autovacuum launcher
 * does: an index scan would need pg_class, which a process without a
 * database cannot read.  Templates are left out (a worker connected to one
 * would make CREATE DATABASE fail), and so are databases that accept no
 * connections or that a DROP DATABASE left half dropped.
 */
static List *
scan_databases(List **all)
{
	List	   *served = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext cxt = CurrentMemoryContext;

	*all = NIL;
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database d = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old = MemoryContextSwitchTo(cxt);

		*all = lappend_oid(*all, d->oid);
		if (d->datallowconn && !d->datistemplate && d->datconnlimit != -2 &&
			pg_async_database_served(NameStr(d->datname)))
		{
			LauncherDatabase *ldb = palloc0(sizeof(LauncherDatabase));

			ldb->dboid = d->oid;
			strlcpy(ldb->name, NameStr(d->datname), NAMEDATALEN);
			served = lappend(served, ldb);
		}
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return served;
}

/*
 * warn_missing warns, at most once a minute, of the databases the settings
 * name that pg_database does not have (or that accept no connections).
 */
static void
warn_missing(List *served, TimestampTz *last_warning)
{
	List	   *named = pg_async_named_databases();
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();

	if (*last_warning != 0 &&
		!TimestampDifferenceExceeds(*last_warning, now, ASYNC_WARN_INTERVAL_MS))
		return;
	foreach(lc, named)
	{
		const char *name = (const char *) lfirst(lc);
		ListCell   *lc2;
		bool		found = false;

		foreach(lc2, served)
		{
			if (strcmp(((LauncherDatabase *) lfirst(lc2))->name, name) == 0)
				found = true;
		}
		if (found)
			continue;
		if (strcmp(pg_async_databases, "*") == 0)
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("pg_async.database \"%s\" does not exist", name),
					 errdetail("The pg_async workers are not started until it exists and accepts connections."),
					 errhint("Create the database, or set pg_async.database and reload the configuration.")));
		else
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" of pg_async.databases does not exist", name),
					 errdetail("The pg_async workers are not started in it until it exists and accepts connections."),
					 errhint("Create the database, or change pg_async.databases and reload the configuration.")));
		*last_warning = now;
	}
}

/*
 * forget_gone_databases gives back the shared entries of the databases that
 * pg_database no longer has, once none of their workers is left, and
 * removes their in-flight marker files (inflight.c).
 */
static void
forget_gone_databases(List *all)
{
	int			i;
	int			s;

	for (i = 0; i < AsyncShmem->ndbs; i++)
	{
		AsyncDatabase *db = &AsyncShmem->dbs[i];
		Oid			dboid = db->dboid;
		bool		busy = false;

		if (!OidIsValid(dboid) || list_member_oid(all, dboid))
			continue;
		for (s = 0; s < AsyncShmem->nslots && !busy; s++)
			busy = (AsyncShmem->slots[s].in_use && AsyncShmem->slots[s].dboid == dboid);
		if (!busy)
		{
			pg_async_free_db(db);
			pg_async_inflight_forget(dboid);
		}
	}
}

/*
 * forget_stale_markers removes, once at the launcher's start, the in-flight
 * marker files of databases that no longer exist (dropped while no launcher
 * ran), after the single file of the versions before 0.12 was split into
 * them.
 */
static void
forget_stale_markers(List *all)
{
	DIR		   *dir;
	struct dirent *de;

	pg_async_inflight_migrate();
	dir = AllocateDir("pg_async");
	if (dir == NULL)
		return;
	while ((de = ReadDirExtended(dir, "pg_async", LOG)) != NULL)
	{
		unsigned int dboid;
		char		rest;

		if (sscanf(de->d_name, "inflight.%u%c", &dboid, &rest) == 1 &&
				 !list_member_oid(all, (Oid) dboid))
			pg_async_inflight_forget((Oid) dboid);
	}
	FreeDir(dir);
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
		/*
		 * Adopted from a previous launcher: alive while it holds its slot.
		 * One started but not attached yet must not attach later, in a slot
		 * we now count as free: the new generation turns it away.
		 */
		SpinLockAcquire(&slot->mutex);
		pid = slot->pid;
		if (pid == 0)
			slot->generation++;
		SpinLockRelease(&slot->mutex);
		if (pid != 0 && kill(pid, 0) == 0)
			return true;
	}

	slot->in_use = false;
	return false;
}

/*
 * start_worker registers a dynamic background worker in slot i, for rank
 * 'rank' of database dboid.  Returns false, after a rate-limited warning,
 * when the postmaster has no room.
 */
static bool
start_worker(int i, Oid dboid, int rank, TimestampTz *last_warning)
{
	AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
	LauncherSlot *ls = &launcher_slots[i];
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcxt;

	slot->generation++;
	slot->dboid = dboid;
	slot->rank = rank;
	slot->started = GetCurrentTimestamp();
	pg_atomic_write_u32(&slot->yield, 0);

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
					 errhint("Raise max_worker_processes to at least pg_async.workers times the databases served, plus the launcher and the other background workers, then restart the server.")));
			*last_warning = GetCurrentTimestamp();
		}
		return false;
	}
	MemoryContextSwitchTo(oldcxt);

	ls->handle = handle;
	slot->in_use = true;
	return true;
}

/*
 * ask_to_leave asks the worker in slot i to exit after its batch (worker.c
 * sees the yield, or its own settings): a database no longer served, or a
 * rank past pg_async.workers.  Its running handlers finish.  A database
 * being dropped has its workers terminated by the dropping backend
 * (databases.c), and one without the extension sees it gone.
 */
static void
ask_to_leave(int i)
{
	AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
	Latch	   *latch;

	if (pg_atomic_read_u32(&slot->yield) != 0)
		return;
	pg_atomic_write_u32(&slot->yield, 1);
	latch = slot->latch;
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * workers_wanted: how many workers a database gets now, by what is known of
 * it.  A served database gets pg_async.workers, unless it is idle (idle.c);
 * a demand or its wake_at makes it busy again.  *timeout is lowered to the
 * time until an idle database's wake_at.
 */
static int
workers_wanted(AsyncDatabase *entry, TimestampTz now, long *timeout)
{
	TimestampTz wake;

	if (entry == NULL)
		return 0;
	switch (pg_atomic_read_u32(&entry->state))
	{
		case ASYNC_DB_SERVED:
			if (pg_atomic_exchange_u32(&entry->demand, 0) != 0)
				pg_atomic_write_u32(&entry->idle, 0);
			wake = (TimestampTz) pg_atomic_read_u64(&entry->wake_at);
			if (wake != PG_INT64_MAX)
			{
				if (wake <= TimestampTzPlusMilliseconds(now, ASYNC_WAKE_EARLY_MS))
				{
					pg_atomic_write_u64(&entry->wake_at, (uint64) PG_INT64_MAX);
					pg_atomic_write_u32(&entry->idle, 0);
				}
				else if (pg_atomic_read_u32(&entry->idle) != 0)
					*timeout = Min(*timeout,
								   (long) ((wake - now) / 1000) - ASYNC_WAKE_EARLY_MS);
			}
			return pg_atomic_read_u32(&entry->idle) != 0 ? 0 : pg_async_workers;
		case ASYNC_DB_UNKNOWN:
			/* one worker looks whether the extension is there */
			return Min(pg_async_workers, 1);
		default:
			return 0;
	}
}

/*
 * stays_running tells whether a worker of that database and rank keeps
 * running: not in a database no longer served, or that lost the extension
 * or is being dropped, nor past pg_async.workers.  An idle database's
 * workers leave by themselves.
 */
static bool
stays_running(LauncherDatabase *ldb, int rank)
{
	uint32		state;

	if (ldb == NULL || ldb->entry == NULL || rank >= pg_async_workers)
		return false;
	state = pg_atomic_read_u32(&ldb->entry->state);
	return state == ASYNC_DB_SERVED || (state == ASYNC_DB_UNKNOWN && rank == 0);
}

/* has_colleague tells whether another worker of slot i's database runs */
static bool
has_colleague(bool *alive, int i)
{
	int			k;

	for (k = 0; k < AsyncShmem->nslots; k++)
		if (k != i && alive[k] && AsyncShmem->slots[k].dboid == AsyncShmem->slots[i].dboid)
			return true;
	return false;
}

/*
 * pick_yielder chooses the worker to leave its slot to a database that waits
 * for one: a worker asleep, else one beside others of its database, else
 * the one that has run longest, once it has run ASYNC_FAIR_QUANTUM_MS.
 * Returns its slot, or -1 (and lowers *timeout to when one may be asked).
 */
static int
pick_yielder(bool *alive, TimestampTz now, long *timeout)
{
	int			best = -1;
	int			best_class = 0;
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
		int			class;

		if (!alive[i] || slot->latch == NULL || pg_atomic_read_u32(&slot->yield) != 0)
			continue;
		/* not a first worker before its colleagues: it does the upkeep */
		if (pg_atomic_read_u32(&slot->sleeping) == ASYNC_SLOT_ASLEEP &&
			(slot->rank > 0 || !has_colleague(alive, i)))
			class = 3;
		else if (slot->rank > 0)
			class = 2;
		else if (TimestampDifferenceExceeds(slot->started, now, ASYNC_FAIR_QUANTUM_MS))
			class = 1;
		else
		{
			long		secs;
			int			usecs;

			TimestampDifference(now, TimestampTzPlusMilliseconds(slot->started,
																   ASYNC_FAIR_QUANTUM_MS),
								&secs, &usecs);
			*timeout = Min(*timeout, secs * 1000 + usecs / 1000 + 1);
			continue;
		}
		if (class > best_class ||
			(class == best_class && slot->started < AsyncShmem->slots[best].started))
		{
			best = i;
			best_class = class;
		}
	}
	return best;
}

/* waiting_order sorts the databases by how long they have waited for a slot */
static int
waiting_order(const ListCell *a, const ListCell *b)
{
	AsyncDatabase *ea = ((LauncherDatabase *) lfirst(a))->entry;
	AsyncDatabase *eb = ((LauncherDatabase *) lfirst(b))->entry;
	TimestampTz wa = (ea != NULL && ea->waiting_since != 0) ? ea->waiting_since : PG_INT64_MAX;
	TimestampTz wb = (eb != NULL && eb->waiting_since != 0) ? eb->waiting_since : PG_INT64_MAX;

	return (wa > wb) - (wa < wb);
}

/* find_database finds dboid among the databases served, or returns NULL. */
static LauncherDatabase *
find_database(List *served, Oid dboid)
{
	ListCell   *lc;

	foreach(lc, served)
	{
		LauncherDatabase *ldb = (LauncherDatabase *) lfirst(lc);

		if (ldb->dboid == dboid)
			return ldb;
	}
	return NULL;
}

/*
 * start_rank starts the worker of rank 'rank' of a database, in the slot that
 * last ran it if that slot is free (after ASYNC_RESTART_DELAY_MS, so that a
 * worker that keeps failing is not restarted in a loop), else in any free
 * slot.  Returns how long to wait before trying again, or 0.
 */
static long
start_rank(bool *alive, LauncherDatabase *ldb, int rank, TimestampTz now,
		   TimestampTz *last_slot_warning)
{
	int			free_slot = -1;
	int			i;

	for (i = 0; i < AsyncShmem->nslots; i++)
	{
		AsyncWorkerSlot *slot = &AsyncShmem->slots[i];

		if (alive[i])
			continue;
		if (slot->dboid == ldb->dboid && slot->rank == rank &&
			launcher_slots[i].last_start != 0)
		{
			long		secs;
			int			usecs;
			long		since;

			TimestampDifference(launcher_slots[i].last_start, now, &secs, &usecs);
			since = secs * 1000 + usecs / 1000;
			if (since < ASYNC_RESTART_DELAY_MS)
				return ASYNC_RESTART_DELAY_MS - since;
			free_slot = i;
			break;
		}
		if (free_slot < 0)
			free_slot = i;
	}
	if (free_slot < 0)
	{
		if (*last_slot_warning == 0 ||
			TimestampDifferenceExceeds(*last_slot_warning, now, ASYNC_WARN_INTERVAL_MS))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pg_async launcher could not start a worker in database \"%s\"",
							ldb->name),
					 errdetail("All %d worker slots are taken.", AsyncShmem->nslots),
					 errhint("Raise max_worker_processes, then restart the server.")));
			*last_slot_warning = now;
		}
		return ASYNC_RESTART_DELAY_MS;
	}
	if (!start_worker(free_slot, ldb->dboid, rank, last_slot_warning))
		return ASYNC_RESTART_DELAY_MS;
	alive[free_slot] = true;
	return 0;
}

/*
 * pg_async_launcher_main is the launcher's entry point and loop: every time
 * its latch is set (a worker exited, a setting changed, a database or the
 * extension was created) or ten seconds passed, it reads pg_database and
 * makes the set of running workers match what each database served wants.
 */
void
pg_async_launcher_main(Datum main_arg)
{
	TimestampTz last_db_warning = 0;
	TimestampTz last_slot_warning = 0;
	TimestampTz last_entry_warning = 0;
	List	   *absent = NIL;	/* databases found without the extension */
	uint32		last_created = 0;
	uint32		created;
	MemoryContext loop_cxt;
	uint32		wait_event;
	bool	   *alive;
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
	alive = MemoryContextAllocZero(TopMemoryContext, sizeof(bool) * AsyncShmem->nslots);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_async launcher loop",
									 ALLOCSET_DEFAULT_SIZES);

	/*
	 * Workers started by a launcher that exited are still running: keep those
	 * that still hold their slot, and free the others.
	 */
	for (i = 0; i < AsyncShmem->nslots; i++)
		(void) slot_alive(i);

	ereport(LOG,
			(errmsg("pg_async launcher started"),
			 errdetail("Serving databases \"%s\" with %d workers each.",
					   (pg_async_databases != NULL && strcmp(pg_async_databases, "*") == 0 &&
						pg_async_database[0] != '\0') ? pg_async_database : pg_async_databases,
					   pg_async_workers)));

	for (;;)
	{
		List	   *served;
		List	   *all;
		ListCell   *lc;
		TimestampTz now;
		long		timeout = ASYNC_RESCAN_INTERVAL_MS;
		int			total = 0;
		int			cap;
		int			maxwants = 0;
		int			nwaiting;
		int			rank;
		static bool markers_checked = false;

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			/* workers of databases no longer served are stopped below */
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			last_db_warning = 0;
		}

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		now = GetCurrentTimestamp();
		served = scan_databases(&all);
		warn_missing(served, &last_db_warning);
		forget_gone_databases(all);
		if (!markers_checked)
		{
			forget_stale_markers(all);
			markers_checked = true;
		}

		/*
		 * The databases found without the extension keep no shared entry
		 * (any role with CREATEDB can make many), only a place in
		 * 'absent' here, until a CREATE EXTENSION pg_async commits
		 * anywhere.
		 */
		created = pg_atomic_read_u32(&AsyncShmem->extensions_created);
		if (created != last_created)
		{
			list_free(absent);
			absent = NIL;
			last_created = created;
		}
		foreach(lc, served)
		{
			LauncherDatabase *ldb = (LauncherDatabase *) lfirst(lc);
			bool		busy = false;

			ldb->entry = pg_async_find_db(ldb->dboid, false);
			if (ldb->entry != NULL &&
				pg_atomic_read_u32(&ldb->entry->state) == ASYNC_DB_ABSENT)
			{
				for (i = 0; i < AsyncShmem->nslots && !busy; i++)
					busy = (AsyncShmem->slots[i].in_use &&
							AsyncShmem->slots[i].dboid == ldb->dboid);
				if (!busy)
				{
					MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

					absent = lappend_oid(absent, ldb->dboid);
					MemoryContextSwitchTo(old);
					pg_async_free_db(ldb->entry);
					ldb->entry = NULL;
				}
				continue;
			}
			if (ldb->entry == NULL && list_member_oid(absent, ldb->dboid))
				continue;
			if (ldb->entry == NULL)
				ldb->entry = pg_async_find_db(ldb->dboid, true);
			if (ldb->entry == NULL &&
				(last_entry_warning == 0 ||
				 TimestampDifferenceExceeds(last_entry_warning, now, ASYNC_WARN_INTERVAL_MS)))
			{
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("pg_async does not serve database \"%s\"", ldb->name),
						 errdetail("pg_async serves no more than %d databases.", AsyncShmem->ndbs),
						 errhint("Raise pg_async.max_databases, or narrow pg_async.databases, then restart the server.")));
				last_entry_warning = now;
			}
		}

		/* the workers no longer wanted go */
		for (i = 0; i < AsyncShmem->nslots; i++)
		{
			AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
			LauncherDatabase *ldb;

			alive[i] = slot_alive(i);
			if (!alive[i])
				continue;
			total++;
			ldb = find_database(served, slot->dboid);
			if (!stays_running(ldb, slot->rank))
				ask_to_leave(i);
			else
				ldb->alive++;
		}

		/*
		 * The workers missing start, within pg_async.max_workers: rank 0 of
		 * every database first, then rank 1, and so on, the databases that
		 * have waited longest for a slot first.
		 */
		foreach(lc, served)
		{
			LauncherDatabase *ldb = (LauncherDatabase *) lfirst(lc);

			ldb->wants = workers_wanted(ldb->entry, now, &timeout);
			maxwants = Max(maxwants, ldb->wants);
		}
		list_sort(served, waiting_order);
		cap = Min(pg_async_max_workers, AsyncShmem->nslots);
		for (rank = 0; rank < maxwants; rank++)
		{
			foreach(lc, served)
			{
				LauncherDatabase *ldb = (LauncherDatabase *) lfirst(lc);
				bool		running = false;
				long		retry;

				if (rank >= ldb->wants)
					continue;
				for (i = 0; i < AsyncShmem->nslots && !running; i++)
					running = alive[i] && AsyncShmem->slots[i].dboid == ldb->dboid &&
						AsyncShmem->slots[i].rank == rank;
				if (running || total >= cap)
					continue;
				retry = start_rank(alive, ldb, rank, now, &last_slot_warning);
				if (retry > 0)
					timeout = Min(timeout, retry);
				else
				{
					total++;
					ldb->alive++;
				}
			}
		}

		/*
		 * A database that wants workers and has none waits for a slot:
		 * idle workers of the others leave at once meanwhile, and one busy
		 * worker per waiting database is asked to yield its slot.  (Not for
		 * a database that has fewer workers than it wants: that would
		 * start and stop workers without end when pg_async.workers exceeds
		 * pg_async.max_workers.)
		 */
		nwaiting = 0;
		foreach(lc, served)
		{
			LauncherDatabase *ldb = (LauncherDatabase *) lfirst(lc);

			if (ldb->entry == NULL)
				continue;
			if (ldb->wants > 0 && ldb->alive == 0)
			{
				if (ldb->entry->waiting_since == 0)
					ldb->entry->waiting_since = now;
				nwaiting++;
			}
			else
				ldb->entry->waiting_since = 0;
		}
		pg_atomic_write_u32(&AsyncShmem->dbs_waiting,
							(uint32) (total >= cap ? nwaiting : 0));
		if (nwaiting > 0 && total >= cap)
		{
			int			yielding = 0;

			for (i = 0; i < AsyncShmem->nslots; i++)
				if (alive[i] && pg_atomic_read_u32(&AsyncShmem->slots[i].yield) != 0)
					yielding++;
			for (; yielding < nwaiting; yielding++)
			{
				int			victim = pick_yielder(alive, now, &timeout);
				Latch	   *latch;

				if (victim < 0)
					break;
				pg_atomic_write_u32(&AsyncShmem->slots[victim].yield, 1);
				latch = AsyncShmem->slots[victim].latch;
				if (latch != NULL)
					SetLatch(latch);
			}
		}
		MemoryContextSwitchTo(TopMemoryContext);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 10),
						 wait_event);
		ResetLatch(MyLatch);
	}
}
