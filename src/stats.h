/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  The cumulative counters per function behind async.function_stats
 *	  (stats.c).
 *
 * IDENTIFICATION
 *	  src/stats.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_STATS_H
#define PG_ASYNC_STATS_H

#include "pg_async.h"

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

#endif							/* PG_ASYNC_STATS_H */
