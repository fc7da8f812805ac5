/*-------------------------------------------------------------------------
 *
 * worker_internal.h
 *	  Declarations shared by the files of the worker, one per step of a
 *	  job's path through it:
 *
 *	  worker.c       the loop: claim, run, finish, sleep
 *	  claim.c        the claim: which ready jobs a worker takes, and the
 *	                 concurrency and rate limits it keeps
 *	  claim_sql.c    the statements of the claim
 *	  batching.c     the batching policy: how many jobs a claim takes, when
 *	                 it waits to take more, and who claims new jobs
 *	  finish.c       the finish: success, retry, dead letter, history,
 *	                 destinations, and jobs given back unrun
 *	  recovery.c     jobs whose worker died, or whose claim a crash lost
 *	  maintenance.c  the upkeep between batches: recovery, retention,
 *	                 stale marks
 *	  worker_xact.c  what every worker transaction shares: the worker's
 *	                 slot, the checks and locks at its start, its commit
 *
 *	  executor.c runs one handler and inflight.c keeps the in-flight
 *	  markers (job.h declares them), and ready_floor.c where claims start
 *	  their walk of the ready jobs (shmem.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_WORKER_INTERNAL_H
#define PG_ASYNC_WORKER_INTERNAL_H

#include "pg_async.h"
#include "job.h"
#include "shmem.h"
#include "stats.h"

#include "executor/spi.h"
#include "utils/palloc.h"

/* claim_sql.c: the statements of the claim */
extern const char *const pg_async_claim_sql;
extern const char *const pg_async_claim_fast_sql;
extern const char *const pg_async_saturated_sql;
extern const char *const pg_async_limits_sql;
extern const char *const pg_async_next_run_sql;
extern const char *const pg_async_scheduled_sql;

/* worker_xact.c: this worker, and its transactions */
extern AsyncWorkerSlot *MyAsyncSlot;
extern int	MyAsyncSlotIndex;
extern char *MyAsyncDatabase;

/* pg_async's objects, as pg_async_extension_ready last found them */
extern Oid	AsyncExtensionId;
extern Oid	AsyncJobsRelId;
extern Oid	AsyncFunctionsRelId;
extern bool AsyncLeases;		/* async.running holds leases (0.8 and later) */
/* whether its schema keeps the ready floor up to date (0.6 and later) */
extern bool AsyncReadyFloor;

extern void pg_async_announce_next_look(TimestampTz when);
extern void pg_async_announce_xact_start(void);
extern bool pg_async_extension_ready(void);
extern SPIPlanPtr pg_async_prepare_plan(const char *sql, int nargs, Oid *argtypes);
extern void pg_async_begin_work(const char *activity);
extern void pg_async_end_work(void);
/* idle.c */
extern bool pg_async_leave_idle(TimestampTz idle_since, TimestampTz now);
extern long pg_async_idle_sleep_ms(TimestampTz idle_since, long ms);
extern void pg_async_stop_counting(void);
extern bool pg_async_prepare_leave(bool take_idle, TimestampTz next_run_at);
extern bool pg_async_colleague_alive(void);

extern Datum pg_async_upkeep_value(const char *activity, const char *sql, int nargs,
								   Oid *argtypes, Datum *args, bool *isnull,
								   bool *ran);
extern int	pg_async_run_upkeep_sql(const char *activity, const char *sql,
									int nargs, Oid *argtypes, Datum *args);

/* batching.c: the batching policy */
extern int	pg_async_batch_limit(void);
extern bool pg_async_batch_was_full(int njobs);
extern void pg_async_batch_note_claim(int njobs, TimestampTz claim_start);
extern TimestampTz pg_async_claim_due(void);
extern void pg_async_batch_forget_stream(void);
extern bool pg_async_batch_leave_to_colleague(void);
extern void pg_async_batch_note_job(int64 duration_us);
extern TimestampTz pg_async_batch_expected_end(TimestampTz start, int njobs);
extern bool pg_async_batch_overran(TimestampTz batch_start, TimestampTz now);
extern TimestampTz pg_async_batch_next_look(TimestampTz commit_start, int nnext);
extern void pg_async_batch_note_commit(int64 commit_us);

/* claim.c: the claim */
extern void pg_async_claim_init(void);
extern int	pg_async_claim_jobs(MemoryContext cxt, AsyncJob **jobs_out,
								TimestampTz *next_run_at);
extern int	pg_async_claim_batch(MemoryContext cxt, AsyncJob **jobs_out,
								 TimestampTz *next_run_at, bool *ready);
extern void pg_async_note_reservations_released(void);
extern void pg_async_unnote_rate_starts(AsyncJob *jobs, int n);
extern void pg_async_commit_batch(void);
extern long pg_async_saturated_sleep_ms(long ms);
extern void pg_async_saturated_forget(void);

/* finish.c: the finish */
extern void pg_async_finish_jobs(AsyncJob *jobs, int njobs);
extern void pg_async_release_jobs(AsyncJob *jobs, int njobs);
extern void pg_async_release_job_ids(int64 *ids, int n);

/* recovery.c: lost claims and dead workers */
extern void pg_async_recover_lost_claims(void);
extern bool pg_async_recover_dead_workers(TimestampTz now);
extern TimestampTz pg_async_recovery_due(void);
extern long pg_async_recovery_sleep_ms(long ms);

/* inflight.c: the markers that stand in for a claim not yet on disk */
extern void pg_async_inflight_note_commit(void);
extern void pg_async_inflight_before_run(AsyncJob *job);

/* maintenance.c: the upkeep between batches */
extern bool pg_async_maintenance(void);
extern bool pg_async_maintenance_pending(void);
extern TimestampTz pg_async_retention_wake(void);

#endif							/* PG_ASYNC_WORKER_INTERNAL_H */
