/*-------------------------------------------------------------------------
 *
 * pg_async.h
 *	  Declarations shared by the files of pg_async: settings, the shared
 *	  memory layout, and the entry points each file offers the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_H
#define PG_ASYNC_H

#include "compat.h"

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"

/* Longest event_id accepted at enqueue. */
#define ASYNC_MAX_EVENT_ID		255

/*
 * The attempts of an event whose function is not registered (any more):
 * the default of async.register(), which async._fail() applies to it too.
 */
#define ASYNC_DEFAULT_MAX_ATTEMPTS	3

/*
 * Bounds of a registration's settings, checked by async.register() and
 * async.configure() and again by the CHECK constraints of async.functions.
 * They keep every time a worker computes from them (a retry's run_at, an
 * attempt's deadline, an event's expiry) far from the ends of timestamptz
 * and of the millisecond timeout, and the attempt history of a job short.
 */
#define ASYNC_MAX_ATTEMPTS		100
#define ASYNC_MAX_RETRY_DELAYS	100
#define ASYNC_MAX_RETRY_DELAY	"30 days"
#define ASYNC_MAX_TIMEOUT		"1 day"
#define ASYNC_MAX_EVENT_AGE		"30 days"

/*
 * An error message a handler raises is kept (last_error, errors, the dead
 * letter, the attempt history, the log line) cut to this many bytes: a
 * message of any size must not break the jsonb it goes into.
 */
#define ASYNC_MAX_ERROR_BYTES	8192

/* A registered name has fewer bytes than this. */
#define ASYNC_NAME_SIZE			128

/* Functions the shared counters can track, and histogram resolution. */
#define ASYNC_STATS_MAX_FUNCTIONS	1024
#define ASYNC_HIST_BUCKETS		128

/*
 * Sub-ids of the locks on the extension's pg_extension object that
 * serialize the claims of limited functions and async._recover(): no SQL
 * command locks a sub-object of an extension, so no role can take them.
 */
#define ASYNC_CLAIM_LOCK		1
#define ASYNC_RECOVERY_LOCK		2
#define ASYNC_DESTINATIONS_LOCK	3
#define ASYNC_EXTERNAL_CLAIM_LOCK	4	/* with a function's name hash (external.c) */

/*
 * The floors of ready_floor.c: of jobs_ready_idx (the jobs of priority 0,
 * by run_at) and of jobs_priority_idx (the others, by priority and run_at).
 */
#define ASYNC_FLOOR_READY		0
#define ASYNC_FLOOR_PRIORITY	1
#define ASYNC_NFLOORS			2

/* Saturated concurrency limits shared memory remembers (see shmem.c). */
#define ASYNC_MAX_SATURATED		16

/* The deepest chain of events a function may allow (max_depth). */
#define ASYNC_MAX_DEPTH			1000
/* a rate limit's bounds: its window keeps at most that many starts */
#define ASYNC_MAX_RATE_LIMIT	10000
#define ASYNC_MIN_RATE_PERIOD_US	10000

/* A worker never sleeps longer than this without looking at the queue. */
#define ASYNC_MAX_SLEEP_MS		5000
/* how soon an awake worker must be about to claim to take a new job itself */
#define ASYNC_WAKE_SLACK_US		1000

/* settings (pg_async.c) */
extern char *pg_async_database;
extern int	pg_async_workers;
extern int	pg_async_retention;
extern int	pg_async_batch_size;
extern int	pg_async_batch_max_bytes;
extern double pg_async_batch_wait;
extern int	pg_async_max_payload_size;
extern int	pg_async_min_priority;
extern int	pg_async_max_depth;
extern int	pg_async_log_failures;
extern int	pg_async_attempts_retention;
extern bool pg_async_track_stats;
extern bool pg_async_synchronous_commit;
extern int	pg_async_sweep_interval;
extern bool pg_async_preloaded;

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

typedef struct AsyncWorkerSlot
{
	/* launcher only */
	bool		in_use;
	uint32		generation;

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

typedef struct AsyncShared
{
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	pg_atomic_uint32 wake_cursor;	/* round robin over sleeping workers */
	pg_atomic_uint32 recovery_epoch;	/* bumped whenever a worker exits */
	pg_atomic_uint64 jobs_committed;	/* jobs made ready by commits, ever */
	/* markers of the last server lifetime: 0 unread, 1 being read, 2 done */
	pg_atomic_uint32 inflight_state;

	/*
	 * Functions whose concurrency limit a claim found reached, so that an
	 * enqueue of their jobs wakes nobody (shmem.c).  limits_epoch is bumped
	 * after every commit that may have given a limit room again; the list
	 * holds only while it is still the epoch read before the claim that
	 * made it.  skipped_wakeups counts the enqueues that relied on a list
	 * since the last bump, which wakes a worker for them.
	 */
	pg_atomic_uint64 limits_epoch;
	slock_t		saturated_mutex;
	uint64		saturated_epoch;
	uint32		skipped_wakeups;
	int			nsaturated;
	char		saturated[ASYNC_MAX_SATURATED][ASYNC_NAME_SIZE];

	/*
	 * The floors (ready_floor.c): no ready job waits below them, as keys;
	 * when the last sweep from the start ended, or, while one is in
	 * progress, when its lease ends (TimestampTz); and how long the last
	 * sweep took (microseconds).
	 */
	pg_atomic_uint64 floors[ASYNC_NFLOORS];
	pg_atomic_uint64 sweep_end;
	pg_atomic_uint64 sweep_us;

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
extern uint64 pg_async_limits_epoch(void);
extern uint64 pg_async_limits_released(void);
extern void pg_async_publish_saturated(uint64 epoch, char (*names)[ASYNC_NAME_SIZE], int n);
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

/* inflight.c: which job each worker runs, surviving a crash restart */
extern void pg_async_inflight_open(int slot);
extern bool pg_async_inflight_available(void);
extern void pg_async_inflight_clear(void);
extern int	pg_async_inflight_read(int64 **job_ids, int32 **attempts);
extern void pg_async_inflight_reset(void);

/* stats.c: cumulative counters per function */
typedef struct AsyncDuration
{
	int64		count;
	double		sum_us;
	int64		max_us;
	uint64		hist[ASYNC_HIST_BUCKETS];
} AsyncDuration;

typedef struct AsyncCounters
{
	int64		received;
	int64		started;
	int64		succeeded;
	int64		failed;			/* failed attempts */
	int64		retried;		/* failed attempts queued again */
	int64		dead;			/* events moved to the dead letters */
	int64		duplicates;		/* async.invoke() with a taken event_id */
	int64		loops;			/* events dead-lettered past max_depth */
	AsyncDuration duration;		/* handler run time */
	AsyncDuration wait;			/* from due (enqueue or run_at) to start */
} AsyncCounters;

extern Size pg_async_stats_shmem_size(void);
extern void pg_async_stats_request(void);
extern void pg_async_stats_shmem_init(void);
extern AsyncCounters *pg_async_pending(const char *function);
extern void pg_async_count_duration(AsyncDuration *d, int64 us);
extern void pg_async_stats_flush(bool commit);
extern void pg_async_count_duplicate(const char *function);

/* launcher.c */
extern PGDLLEXPORT void pg_async_launcher_main(Datum main_arg);
extern void pg_async_register_launcher(void);

/* worker.c */
extern PGDLLEXPORT void pg_async_worker_main(Datum main_arg);

/* One claimed job, as the worker keeps it between claim and finish. */
typedef struct AsyncJob
{
	int64		id;
	char	   *event_id;
	char	   *function;
	Datum		payload;		/* detoasted jsonb */
	int32		attempt;		/* this attempt's number, from 1 */
	TimestampTz due_at;			/* run_at when claimed: when it became due */
	int16		priority;		/* lower runs first */
	int32		depth;			/* events that led to it (async.jobs.depth) */
	TimestampTz enqueued_at;
	Oid			enqueued_by;
	bool		registered;		/* false when no registration was found */
	Oid			handler;		/* the registered function */
	Oid			run_as;
	int32		max_attempts;
	int32		timeout_ms;

	bool		expired;		/* older than max_event_age when claimed: not run */
	bool		looped;			/* deeper than its max_depth when claimed: not run */
	bool		has_destination;	/* its function has an on_success destination */
	bool		reserved;		/* its claim reserved a place in async.running */
	bool		rate_limited;	/* its function has a rate limit (claim.c) */
	Datum		result;			/* what the handler returned, as jsonb, or 0 */

	/* outcome */
	bool		wrote;			/* its subtransaction got an xid and committed */
	bool		failed;
	char	   *error_message;
	char		sqlstate[6];
	TimestampTz started_at;
	TimestampTz failed_at;
	int64		duration_us;
} AsyncJob;

/* executor.c */
extern void pg_async_executor_reset(void);
extern void pg_async_execute_job(AsyncJob *job);
extern void pg_async_check_handler(Oid fnoid);
extern void pg_async_check_run_as(Oid fnoid, Oid run_as, const char *function);
extern char *pg_async_clip_message(const char *message);

/* enqueue.c */
extern void pg_async_xact_callback(XactEvent event, void *arg);
extern void pg_async_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									  SubTransactionId parentSubid, void *arg);
extern void pg_async_note_enqueued(int njobs);
extern bool pg_async_in_worker;
extern int32 pg_async_current_depth;
extern Datum pg_async_make_event_id(void);

/* jobfuncs.c */
extern int16 pg_async_check_priority(int32 priority);

/* external.c */
extern Size pg_async_consumers_shmem_size(void);
extern void pg_async_consumers_shmem_init(void);
extern void pg_async_note_external_ready(const char *function);
extern void pg_async_external_end_xact(bool commit);
extern bool pg_async_leases_to_expire(TimestampTz now);

/* sqlfuncs.c */
typedef struct AsyncOwnerScope
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} AsyncOwnerScope;

extern Oid	pg_async_extension_owner(void);
extern void pg_async_owner_begin(AsyncOwnerScope *scope);
extern void pg_async_owner_end(AsyncOwnerScope *scope);
extern void pg_async_check_at_most(Interval *iv, const char *what, const char *max);
extern Datum pg_async_run_as_owner(const char *sql, int nargs, Oid *argtypes,
								   Datum *args, const char *nulls, bool *isnull);
extern bool pg_async_may_act_as(Oid role);
extern bool pg_async_handlers_bound(Oid functions_relid);

#endif							/* PG_ASYNC_H */
