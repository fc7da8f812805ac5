/*-------------------------------------------------------------------------
 *
 * pg_async.c
 *	  Loading pg_async: the settings (pg_async.*), the guards that keep a
 *	  late or binary-upgrade load harmless, and the registration of the
 *	  shared memory, the launcher and the commit-time wake-up.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"
#include "stats.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/postmaster.h"
#include "utils/memutils.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

char	   *pg_async_database = NULL;
char	   *pg_async_databases = NULL;
int			pg_async_max_databases = 128;
int			pg_async_max_workers = 8;
int			pg_async_worker_idle_timeout = 60000;	/* ms */
int			pg_async_workers = 2;
int			pg_async_retention = 86400;
int			pg_async_batch_size = 1000;
int			pg_async_batch_max_bytes = 16 * 1024;	/* kB */
double		pg_async_batch_wait = 5.0;	/* ms */
int			pg_async_max_payload_size = 1024 * 1024;
int			pg_async_min_priority = PG_INT16_MIN;
int			pg_async_max_depth = 16;
int			pg_async_log_failures = LOG;
int			pg_async_attempts_retention = 86400;
bool		pg_async_track_stats = true;
bool		pg_async_synchronous_commit = true;
int			pg_async_sweep_interval = 1000;	/* ms */

static const struct config_enum_entry log_level_options[] = {
	{"debug5", DEBUG5, false},
	{"debug4", DEBUG4, false},
	{"debug3", DEBUG3, false},
	{"debug2", DEBUG2, false},
	{"debug1", DEBUG1, false},
	{"debug", DEBUG2, true},
	{"info", INFO, false},
	{"notice", NOTICE, false},
	{"warning", WARNING, false},
	{"log", LOG, false},
	{NULL, 0, false}
};

/* true in processes of a server that has pg_async in shared_preload_libraries */
bool		pg_async_preloaded = false;

/*
 * pg_async_define_gucs defines every pg_async.* setting.  Done in every
 * process that loads the library, so that SHOW and the checks work even
 * when the library was not preloaded.
 */
static void
pg_async_define_gucs(void)
{
	DefineCustomStringVariable("pg_async.databases",
							   "Databases the pg_async workers serve.",
							   "'*' serves every database that has the extension and accepts connections, templates excepted; a comma-separated list serves those named.",
							   &pg_async_databases,
							   "*",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   pg_async_check_databases, NULL, NULL);

	DefineCustomStringVariable("pg_async.database",
							   "The one database the pg_async workers serve, as before 0.12.",
							   "Used when pg_async.databases is '*'; empty leaves the choice to pg_async.databases.",
							   &pg_async_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.max_databases",
							"Most databases pg_async serves at once.",
							"Each database served has a small entry in shared memory.",
							&pg_async_max_databases,
							128, 1, 10000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.max_workers",
							"Most pg_async worker processes in the cluster, all databases together.",
							"When databases wait for a worker because this many run, the launcher gives each its turn: idle workers leave at once, and busy ones after their batch.",
							&pg_async_max_workers,
							8, 0, MAX_BACKENDS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.worker_idle_timeout",
							"How long a database's workers wait with nothing to run before they exit.",
							"An enqueue's commit, or a job's run_at, starts them again. -1 keeps them running.",
							&pg_async_worker_idle_timeout,
							60000, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.workers",
							"Number of pg_async worker processes in each database served.",
							"Each worker is a background worker; max_worker_processes must leave room for the launcher and the workers of every database served.",
							&pg_async_workers,
							2, 0, MAX_BACKENDS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.retention",
							"How long finished jobs are kept in async.jobs.",
							"Their event_id stays taken for this long.",
							&pg_async_retention,
							86400, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.batch_size",
							"Most jobs a worker claims at once.",
							"Each job runs in its own subtransaction; a batch commits at least every 63 handlers that wrote, and fewer jobs are claimed while handlers are slow.",
							&pg_async_batch_size,
							1000, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.batch_max_bytes",
							"Most payload bytes a worker claims at once.",
							"A batch holds its payloads in the worker's memory until it ends; the first job of a batch is claimed whatever its size.",
							&pg_async_batch_max_bytes,
							16 * 1024, 64, 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomRealVariable("pg_async.batch_wait",
							 "How long a worker fed by a stream of enqueues waits between claims.",
							 "A stream is 2000 jobs a second or more, as single-job transactions; its jobs are then claimed in batches, at most this late. 0 claims each job as it comes.",
							 &pg_async_batch_wait,
							 5.0, 0.0, 1000.0,
							 PGC_SIGHUP,
							 GUC_UNIT_MS,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.max_payload_size",
							"Largest payload accepted at enqueue.",
							NULL,
							&pg_async_max_payload_size,
							1024 * 1024, 1, MaxAllocSize,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.min_priority",
							"Lowest priority (the first to run) a role may give its jobs or functions.",
							"Set per role with ALTER ROLE ... SET, so that only trusted roles can put their jobs ahead of the others'.",
							&pg_async_min_priority,
							PG_INT16_MIN, PG_INT16_MIN, PG_INT16_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.max_depth",
							"Deepest chain of events a function runs, unless its registration says otherwise.",
							"An event enqueued by a handler or a destination is one deeper than the event that led to it; past this depth it is dead-lettered with reason loop instead of running.",
							&pg_async_max_depth,
							16, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("pg_async.log_failures",
							 "Level of the server log line written for each failed attempt.",
							 "The line names the function, event_id, attempt, error, SQLSTATE and what happens next.",
							 &pg_async_log_failures,
							 LOG, log_level_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.attempts_retention",
							"How long async.attempts keeps the history of attempts; 0 keeps none.",
							NULL,
							&pg_async_attempts_retention,
							86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_async.track_stats",
							 "Keeps the counters of async.function_stats.",
							 NULL,
							 &pg_async_track_stats,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_async.synchronous_commit",
							 "Whether the workers' commits wait for their WAL to reach disk.",
							 "on: the workers commit as the server's synchronous_commit says. off: the commits that finish jobs return before their WAL is flushed; a crash of the server or of the operating system can then lose the outcomes of the last jobs run, and those jobs run again.",
							 &pg_async_synchronous_commit,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_async.claim_synchronous_commit",
							 "Whether a transaction of nothing but claims waits for its WAL flush.",
							 "on: it commits as synchronous_commit says, as any transaction. off: a transaction that wrote nothing but async.claim() of functions without a limit commits without waiting for its flush, while the session's other transactions still wait; a crash of the server or of the operating system, or a failover, can then lose its claims, which hands their jobs out again.",
							 &pg_async_claim_synchronous_commit,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pg_async.sweep_interval",
							"How often a claim walks every ready job from the first, at least.",
							"The claims start at the ready floor, past the jobs already run; a job row that another session held locked while the claims passed it is found by this walk. It is made less often while it is expensive (a held xmin horizon): at most 1% of a worker's time.",
							&pg_async_sweep_interval,
							1000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("pg_async");
}

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* pg_async_shmem_request asks for the shared state. */
static void
pg_async_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(add_size(pg_async_shmem_size(), pg_async_stats_shmem_size()),
								    pg_async_consumers_shmem_size()));
	pg_async_stats_request();
}

/* pg_async_shmem_startup creates or attaches the shared state. */
static void
pg_async_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	pg_async_shmem_init();
}

/*
 * _PG_init: define the settings and the commit-time wake-up everywhere; the
 * shared memory and the launcher only when preloaded.
 */
void
_PG_init(void)
{
	/* pg_upgrade's server must not start workers or touch queues */
	if (IsBinaryUpgrade)
		return;

	pg_async_define_gucs();

	/* registered once per process: the callback wakes workers at commit */
	RegisterXactCallback(pg_async_xact_callback, NULL);
	RegisterSubXactCallback(pg_async_subxact_callback, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	pg_async_preloaded = true;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pg_async_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pg_async_shmem_startup;

	pg_async_install_utility_hook();
	pg_async_register_launcher();
}
