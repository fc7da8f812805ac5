/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  pg_async's shared memory: the worker slots, the wake-up handshake,
 *	  the limits found reached, the floors where claims start, and the
 *	  cursors among keys (shmem.c, ready_floor.c, keys.c).
 *
 * IDENTIFICATION
 *	  src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_SHMEM_H
#define PG_ASYNC_SHMEM_H

#include "pg_async.h"

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"

/*
 * One slot per possible worker.  The launcher owns in_use, generation and the
 * restart bookkeeping; the worker fills in the rest under mutex.  'sleeping'
 * is the wake-up handshake: a worker sets it to ASYNC_SLOT_CLAIMING before
 * its last look at the queue, and to ASYNC_SLOT_ASLEEP if that found nothing;
 * a committing backend swaps either to ASYNC_SLOT_AWAKE and sets the latch.
 */
#define ASYNC_SLOT_AWAKE		0
#define ASYNC_SLOT_ASLEEP		1
#define ASYNC_SLOT_CLAIMING		2
#define ASYNC_SLOT_LEAVING		3	/* about to exit: commits do not count on it */

typedef struct AsyncWorkerSlot
{
	/* set by the launcher: readers tell by dboid whose worker it is */
	bool		in_use;
	uint32		generation;
	Oid			dboid;			/* the database the worker serves */
	int			rank;			/* 0 .. pg_async.workers - 1 in it */
	TimestampTz started;		/* when the launcher started it */
	/* the launcher asks it to leave after its batch, for another database */
	pg_atomic_uint32 yield;

	/* worker, under mutex */
	slock_t		mutex;
	pid_t		pid;
	TimestampTz proc_start;		/* when the worker process started */
	Latch	   *latch;
	bool		busy;
	char		function[ASYNC_NAME_SIZE];
	char		event_id[ASYNC_MAX_EVENT_ID + 1];
	int32		attempt;
	TimestampTz started_at;
	uint64		jobs_done;

	pg_atomic_uint32 sleeping;

	/*
	 * While awake: the time (TimestampTz) by which the worker will look at
	 * the queue again, as it estimates; PG_INT64_MAX when it cannot tell
	 * (upkeep, exiting).  A committer need not wake a colleague for a job
	 * that an awake worker will claim within ASYNC_WAKE_SLACK_US anyway.
	 */
	pg_atomic_uint64 next_look_at;

	/*
	 * While the worker claims: for each floor of ready_floor.c, the lowest
	 * key of the jobs made ready since its claim began; the floor is raised
	 * no higher.  0 when it does not claim.
	 */
	pg_atomic_uint64 claim_low[ASYNC_NFLOORS];

	/*
	 * The start (TimestampTz) of the worker's current transaction, or
	 * PG_INT64_MAX: a job it finishes gets a later finished_at, which the
	 * retention's walk relies on (maintenance.c).
	 */
	pg_atomic_uint64 xact_start;
} AsyncWorkerSlot;

/*
 * Where the last claim of a function with a concurrency_key stopped among
 * its keys, whichever worker or consumer of the database made it (keys.c):
 * the next claim goes on from the key after it.  A free entry has function
 * "" and hash 0; hash is that of function, compared first.
 */
#define ASYNC_KEY_CURSORS		16

typedef struct AsyncKeyCursor
{
	uint32		hash;
	char		function[ASYNC_NAME_SIZE];
	char		key[ASYNC_MAX_KEY_VALUE + 1];
	uint64		used;			/* key_cursors_clock when last moved */
} AsyncKeyCursor;

/*
 * What a served database shares: its workers' wake-ups, the limits found
 * reached, the floors where its claims start, and the cursors of its
 * claims among keys.  One entry per database
 * the launcher serves or looks at (databases.c), found by its OID; a
 * backend uses the entry of its own database (pg_async_my_db).  The launcher
 * sets state; the rest belongs to the database's backends and workers.
 */
#define ASYNC_DB_UNKNOWN		0	/* look whether pg_async is installed */
#define ASYNC_DB_SERVED			1	/* installed: its workers run */
#define ASYNC_DB_ABSENT			2	/* not installed: no worker until it is */
#define ASYNC_DB_DROPPING		3	/* DROP DATABASE under way: no worker */

typedef struct AsyncDatabase
{
	Oid			dboid;			/* InvalidOid: a free entry; under dbs_mutex */
	pg_atomic_uint32 state;		/* ASYNC_DB_* */
	pg_atomic_uint32 created;	/* commits of CREATE EXTENSION pg_async */

	/*
	 * Workers on demand (launcher.c).  demand: a commit found no worker of
	 * the database to wake, or wants more, or a worker gave its slot to
	 * another database with work left.  idle: the first worker found
	 * nothing to do for pg_async.worker_idle_timeout; the workers leave,
	 * and the launcher starts others at the next demand, or at wake_at
	 * (TimestampTz; PG_INT64_MAX: never), when a scheduled job, a lease's
	 * deadline or the retention next needs one.  waiting_since is the
	 * launcher's: since when the database has waited for a slot (0: it
	 * does not).
	 */
	pg_atomic_uint32 demand;
	pg_atomic_uint32 idle;
	pg_atomic_uint64 wake_at;
	pg_atomic_uint64 last_work;	/* when a worker last claimed jobs */
	TimestampTz waiting_since;
	pg_atomic_uint32 wake_cursor;	/* round robin over sleeping workers */
	pg_atomic_uint32 recovery_epoch;	/* bumped when a worker exits unclean */

	/*
	 * The last look for dead workers' jobs that ran (recovery.c), whichever
	 * worker made it: the recovery_epoch read before it, when it began (0:
	 * none yet), and the interval its cost sets for the next.  When it left
	 * jobs of dead workers (another transaction held them, or a shortage)
	 * and the next look comes before the regular interval, recovery_due_at
	 * says when (else 0): the workers stay for it.  recovery_left_looks
	 * counts the looks in a row that left jobs.
	 */
	pg_atomic_uint32 recovered_epoch;
	pg_atomic_uint64 recovered_at;
	pg_atomic_uint32 recovery_interval_ms;
	pg_atomic_uint64 recovery_due_at;
	pg_atomic_uint32 recovery_left_looks;
	pg_atomic_uint64 jobs_committed;	/* jobs made ready by commits, ever */
	/* markers of the last server lifetime: 0 unread, 1 being read, 2 done */
	pg_atomic_uint32 inflight_state;

	/*
	 * The retention (maintenance.c), whichever worker of the database runs
	 * it: the last transaction that deleted finished jobs, as a
	 * FullTransactionId (0: none whose rows are not yet known to be
	 * removable); since when its rounds wait for them to be (a
	 * TimestampTz; 0: they do not), which makes a worker that leaves ask
	 * for no worker for the retention soon (pg_async_retention_wake);
	 * whether the log said so for this wait, and when it last did.
	 */
	pg_atomic_uint64 retention_fxid;
	pg_atomic_uint64 retention_deferred_since;
	pg_atomic_uint32 retention_deferral_logged;
	pg_atomic_uint64 retention_deferral_logged_at;

	/*
	 * 0 once the database's first worker found no lease left, and no claim
	 * that made leases has committed since: it then skips its look for
	 * expired ones (external_wait.c).
	 */
	pg_atomic_uint32 leases_exist;

	/*
	 * No lease of the database expires before lease_floor (0: unknown, as
	 * after a start), so that a claim looks for expired leases of its
	 * function only from then on.  The commit of a claim or heartbeat
	 * lowers it to its first deadline, and lease_floor_since with it; the
	 * commit of a look at every lease (the first worker's, or a claim's)
	 * sets it to the first deadline left, or to what commits lowered
	 * lease_floor_since to since the look began (lease_look counts the
	 * looks: one that another overtook sets nothing).  Under lease_mutex
	 * (external_wait.c).
	 */
	slock_t		lease_mutex;
	TimestampTz lease_floor;
	TimestampTz lease_floor_since;
	uint64		lease_look;
	bool		backend_local;	/* an entry of the backend's own memory */

	/*
	 * Functions whose concurrency limit a claim found reached, so that an
	 * enqueue of their jobs wakes nobody (shmem.c).  limits_epoch is bumped
	 * after every commit that may have given a limit room again; the list
	 * holds only while it is still the epoch read before the claim that
	 * made it.  skipped_wakeups counts the enqueues that relied on a list
	 * since the last bump, which wakes a worker for them.  A function whose
	 * rate limit is full is listed with the time its window has room again
	 * (saturated_until; 0 for a concurrency limit): its entry holds only
	 * until then, and only while the worker that made the list
	 * (saturated_pid) will look at the queue again by then.
	 */
	pg_atomic_uint64 limits_epoch;
	slock_t		saturated_mutex;
	uint64		saturated_epoch;
	uint32		skipped_wakeups;
	int			nsaturated;
	pid_t		saturated_pid;
	char		saturated[ASYNC_MAX_SATURATED][ASYNC_NAME_SIZE];
	TimestampTz saturated_until[ASYNC_MAX_SATURATED];

	/*
	 * The floors (ready_floor.c): no ready job waits below them, as keys;
	 * when the last sweep from the start ended, or, while one is in
	 * progress, when its lease ends (TimestampTz); and how long the last
	 * sweep took (microseconds).
	 */
	pg_atomic_uint64 floors[ASYNC_NFLOORS];
	pg_atomic_uint64 sweep_end;
	pg_atomic_uint64 sweep_us;

	/*
	 * The cursors among keys (keys.c), under key_cursors_mutex: a function
	 * not listed starts from its first key, and a new one takes the entry
	 * of the function claimed least recently.
	 */
	slock_t		key_cursors_mutex;
	uint64		key_cursors_clock;
	AsyncKeyCursor key_cursors[ASYNC_KEY_CURSORS];
} AsyncDatabase;

typedef struct AsyncShared
{
	pid_t		launcher_pid;
	Latch	   *launcher_latch;

	/* databases waiting for a worker slot: idle workers leave at once */
	pg_atomic_uint32 dbs_waiting;
	/* commits of CREATE EXTENSION pg_async, in any database */
	pg_atomic_uint32 extensions_created;

	slock_t		dbs_mutex;		/* protects the dboid of every entry */
	int			ndbs;
	AsyncDatabase *dbs;			/* pg_async.max_databases entries */

	int			nslots;
	AsyncWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} AsyncShared;

/* shmem.c */
extern AsyncShared *AsyncShmem;
extern Size pg_async_shmem_size(void);
extern void pg_async_shmem_init(void);
extern void pg_async_wake_workers(int njobs);
extern void pg_async_jobs_committed(int njobs);
extern TimestampTz pg_async_wake_slack(void);
extern bool pg_async_slot_looks_by(AsyncWorkerSlot *slot, TimestampTz by,
								   TimestampTz now);
extern void pg_async_wake_launcher(void);
extern AsyncDatabase *pg_async_my_db(void);
extern AsyncDatabase *pg_async_find_db(Oid dboid, bool create);
extern void pg_async_free_db(AsyncDatabase *db);
extern bool pg_async_same_db(AsyncWorkerSlot *slot);
extern bool pg_async_slot_counts(AsyncWorkerSlot *slot);
extern void pg_async_demand_workers(AsyncDatabase *db);
extern void pg_async_wake_at(AsyncDatabase *db, TimestampTz when);
extern void pg_async_leases_unknown(AsyncDatabase *db);
extern uint64 pg_async_limits_epoch(void);
extern uint64 pg_async_limits_released(void);
extern void pg_async_publish_saturated(uint64 epoch, char (*names)[ASYNC_NAME_SIZE],
									   TimestampTz *until, int n);
extern bool pg_async_limit_saturated(const char *function);

/* ready_floor.c: where claims start their walk of the ready jobs */
extern void pg_async_floor_note(TimestampTz run_at);
extern void pg_async_priority_floor_note(int16 priority, TimestampTz run_at);
extern void pg_async_floor_note_start(void);
extern void pg_async_floor_note_touched(void);
extern void pg_async_floor_end_xact(bool commit);
extern void pg_async_floor_subxact_abort(void);
extern void pg_async_floor_reset(void);
extern TimestampTz pg_async_floor_claim_begin(AsyncWorkerSlot *slot,
											  int16 *priority, TimestampTz *priority_run_at);
extern TimestampTz pg_async_floor_current(void);
extern void pg_async_floor_claim_end(AsyncWorkerSlot *slot, bool raise,
									 TimestampTz first_run_at, TimestampTz claim_now);
extern uint64 pg_async_priority_floor_key(int16 priority, TimestampTz run_at);
extern void pg_async_priority_floor_claim_end(AsyncWorkerSlot *slot, uint64 key);
extern void pg_async_priority_floor_current(int16 *priority, TimestampTz *run_at);

#endif							/* PG_ASYNC_SHMEM_H */
