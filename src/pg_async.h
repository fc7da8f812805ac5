/*-------------------------------------------------------------------------
 *
 * pg_async.h
 *	  Declarations shared by the files of pg_async: limits, settings, and
 *	  the entry points of the files that have no header of their own.
 *	  shmem.h declares the shared memory, stats.h the counters, job.h a
 *	  claimed job and what runs it, worker_internal.h the worker's steps.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_H
#define PG_ASYNC_H

#include "compat.h"

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/guc.h"

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

/* async._try_recovery_lock() took the lock in this backend (recovery.c) */
extern bool pg_async_recovery_locked;
/* ... and async._recovery_incomplete() said it left jobs (recovery.c) */
extern bool pg_async_recovery_left;

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
/* limits by key: the most a key runs at once, a key's name and value */
#define ASYNC_MAX_KEY_CONCURRENCY	10000
#define ASYNC_MAX_KEY_NAME_LEN	127
#define ASYNC_MAX_KEY_VALUE		200

/* A worker never sleeps longer than this without looking at the queue. */
#define ASYNC_MAX_SLEEP_MS		5000
/* how soon an awake worker must be about to claim to take a new job itself */
#define ASYNC_WAKE_SLACK_US		1000

/* settings (pg_async.c) */
extern char *pg_async_database;
extern char *pg_async_databases;
extern int	pg_async_max_databases;
extern int	pg_async_max_workers;
extern int	pg_async_worker_idle_timeout;
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

/* databases.c */
extern bool pg_async_check_databases(char **newval, void **extra, GucSource source);
extern bool pg_async_database_served(const char *dbname);
extern List *pg_async_named_databases(void);
extern void pg_async_note_extension_created(void);
extern void pg_async_databases_end_xact(bool commit);
extern void pg_async_install_utility_hook(void);

/* launcher.c */
extern PGDLLEXPORT void pg_async_launcher_main(Datum main_arg);
extern void pg_async_register_launcher(void);

/* worker.c */
extern PGDLLEXPORT void pg_async_worker_main(Datum main_arg);

/* enqueue.c */
extern void pg_async_xact_callback(XactEvent event, void *arg);
extern void pg_async_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
									  SubTransactionId parentSubid, void *arg);
extern void pg_async_note_enqueued(int njobs);
extern bool pg_async_in_worker;
extern int32 pg_async_current_depth;
extern Datum pg_async_make_event_id(void);

/* finish.c */
extern Datum pg_async_int8_array(int64 *values, int n, Oid typid);

/* consumer_depth.c */
extern int32 pg_async_consumer_depth(void);
extern void pg_async_consumer_note_enqueued(int64 id);
extern void pg_async_consumer_completed(int32 depth);
extern void pg_async_consumer_end_job(void);
extern void pg_async_consumer_end_xact(void);
extern void pg_async_consumer_subxact_abort(SubTransactionId subid);
extern bool pg_async_consumer_raising(void);

/* jobfuncs.c */
extern int16 pg_async_check_priority(int32 priority);

/* registration.c */
typedef struct AsyncRegistration
{
	char		name[ASYNC_NAME_SIZE];	/* hash key */
	Oid			handler;		/* InvalidOid for an external function */
	bool		external;		/* consumers run its jobs (async.claim) */
	Oid			run_as;			/* whose privileges enqueueing for it needs */
	bool		paused;			/* its new jobs are marked paused (async.pause) */
	bool		limited;		/* and limited (a concurrency, rate or key limit) */
	bool		held;			/* the limit is 0: its jobs wake no worker */
	int16		priority;		/* of its jobs enqueued without one */
	char		concurrency_key[ASYNC_NAME_SIZE];	/* payload key, "" for none */
} AsyncRegistration;

extern AsyncRegistration *pg_async_check_registration(const char *function);

/* keys.c */
extern text *pg_async_job_key(Datum payload, text *key_name);
extern void pg_async_advance_key_cursor(const char *function, const char **keys, int nkeys);
extern uint64 pg_async_functions_generation(Oid relid);

/* claim_commit.c */
extern bool pg_async_claim_synchronous_commit;
extern void pg_async_claim_writes_begin(void);
extern void pg_async_claim_writes_end(bool limited);
extern void pg_async_claim_pre_commit(void);
extern void pg_async_claim_commit(void);
extern void pg_async_claim_end_xact(void);

/* worker_xact.c */
extern void pg_async_commit_without_flush(void);
extern int	pg_async_push_planner_settings(void);
extern void pg_async_pop_planner_settings(int nestlevel);

/* external_wait.c */
extern Size pg_async_consumers_shmem_size(void);
extern void pg_async_consumers_shmem_init(void);
extern void pg_async_note_external_ready(const char *function);
extern void pg_async_external_end_xact(bool commit);
extern bool pg_async_leases_to_expire(TimestampTz now);
extern void pg_async_consumer_wait_begin(const char *function);
extern void pg_async_consumer_wait_end(void);
extern void pg_async_note_leases_made(TimestampTz deadline);
extern bool pg_async_leases_may_have_expired(TimestampTz now);
extern uint64 pg_async_lease_look_begin(void);
extern void pg_async_lease_look_end(uint64 look, TimestampTz found_deadline);
extern void pg_async_lease_subxact_abort(void);
extern void pg_async_note_leases_remain(void);

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
extern Datum pg_async_run_as_owner(const char *sql, int nargs, Oid *argtypes,
								   Datum *args, const char *nulls, bool *isnull);
extern bool pg_async_may_act_as(Oid role);
extern bool pg_async_handlers_bound(Oid functions_relid);

/* register.c */
extern void pg_async_check_at_most(Interval *iv, const char *what, const char *max);

#endif							/* PG_ASYNC_H */
