/*-------------------------------------------------------------------------
 *
 * job.h
 *	  One claimed job, as the worker keeps it between claim and finish, and
 *	  what runs it (executor.c) and marks it in flight (inflight.c).
 *
 * IDENTIFICATION
 *	  src/job.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_JOB_H
#define PG_ASYNC_JOB_H

#include "pg_async.h"

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
	TimestampTz claimed_at;		/* its claim's time, at which a rate limit
								 * counted its start */
	int64		rate_margin_us; /* rate-limited: how long after its batch's
								 * first handler it may start (worker.c) */
	bool		given_back;		/* claimed, not run, and given back */
	char	   *key;			/* its key, if its function has a concurrency_key */
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

/* finish.c, for external.c too */
extern void pg_async_log_unrun(const char *function, const char *event_id,
							   const char *error, bool looped);

/* inflight.c: which job each worker runs, surviving a crash restart */
extern void pg_async_inflight_open(int slot);
extern bool pg_async_inflight_available(void);
extern void pg_async_inflight_clear(void);
extern int	pg_async_inflight_read(int64 **job_ids, int32 **attempts);
extern void pg_async_inflight_reset(void);
extern void pg_async_inflight_forget(Oid dboid);
extern void pg_async_inflight_migrate(void);

#endif							/* PG_ASYNC_JOB_H */
