/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The pg_async worker: a background worker connected to
 *	  pg_async.database that claims ready jobs in batches and runs them.
 *
 *	  A batch goes through two steps:
 *
 *	  1. The claim.  Up to pg_async.batch_size ready jobs are locked with
 *		 FOR UPDATE SKIP LOCKED and marked 'running' (a HOT update), their
 *		 attempt counted.  This commits before any handler runs, so that a
 *		 handler that kills its worker has still spent an attempt: no endless
 *		 crash loop.  An idle worker claims in a transaction of its own; under
 *		 load the claim is the end of the transaction that ran the previous
 *		 batch, so one commit finishes a batch and claims the next.
 *	  2. The run.  Each handler runs in its own subtransaction; the jobs'
 *		 outcomes are written afterwards in the parent transaction (never in
 *		 the handler's subtransaction, which would create a MultiXact per
 *		 row), and one commit makes every handler's writes and every job's
 *		 new state durable together.  The transaction commits early when 63
 *		 handlers have written, before PGPROC's subxid cache overflows.
 *
 *	  Between batches the worker recovers jobs left running by dead workers
 *	  (async._recover), the worker in slot 0 deletes finished jobs older than
 *	  pg_async.retention, and an idle worker sleeps on its latch until the
 *	  next scheduled job, a commit that enqueued jobs, or ASYNC_MAX_SLEEP_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "optimizer/plancat.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/*
 * how often a worker looks for jobs of dead workers even if none exited, and
 * how often the worker of slot 0 releases stale paused or limited marks
 */
#define ASYNC_RECOVERY_INTERVAL_MS	5000
#define ASYNC_RECOVERY_MAX_INTERVAL_MS	600000
/* how often the worker of slot 0 applies pg_async.retention */
#define ASYNC_RETENTION_INTERVAL_MS	10000
/* how many finished jobs one retention transaction deletes */
#define ASYNC_RETENTION_BATCH		5000
/*
 * How long a batch should take.  Jobs claimed together wait for each other,
 * so a worker whose handlers are slow claims fewer at a time and leaves the
 * rest to its colleagues.
 */
#define ASYNC_BATCH_TARGET_US		100000
/*
 * A claim that finds ASYNC_STREAM_JOBS jobs or more, but fewer than it may
 * take, while jobs have been coming at ASYNC_STREAM_RATE a second or faster
 * (over the last few claims, so that one burst is no stream), was fed by a
 * stream of enqueues: the next claim waits for pg_async.batch_wait.  Slower
 * streams are claimed as each job comes, with a worker's transaction or two
 * per job, which two cores pay for without trouble at such rates, and
 * without a wait in the latency of their jobs.
 */
#define ASYNC_STREAM_JOBS			4
#define ASYNC_STREAM_RATE			2000
/*
 * A worker whose claims get fewer jobs than this on average (the same moving
 * average) is fed one job at a time: jobs that come while it commits are
 * better started by an idle colleague than left to its next claim, unless
 * jobs are committed at ASYNC_HANDOFF_RATE a second or faster in all: two
 * workers that share such a flow each see fewer jobs per claim, and with
 * them sharing 2,000 jobs/s the benchmark's soak saw indexes of async.jobs
 * grow by half.  The rate is taken over ASYNC_RATE_INTERVAL_US or more.
 */
#define ASYNC_SINGLE_JOBS			2.0
#define ASYNC_HANDOFF_RATE			1500
#define ASYNC_RATE_INTERVAL_US		10000
/* most handlers with a subtransaction id in one transaction (PGPROC caches 64) */
#define ASYNC_MAX_SUBXIDS			(PGPROC_MAX_CACHED_SUBXIDS - 1)

static AsyncWorkerSlot *MySlot = NULL;
static int	MySlotIndex = -1;
static uint32 MyGeneration = 0;
static char *MyDatabase = NULL;

static MemoryContext WorkerContext = NULL;	/* the worker's lifetime */
static MemoryContext BatchContext = NULL;	/* one batch; reset every loop */

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr claim_fast_plan = NULL;
static SPIPlanPtr limits_plan = NULL;
static SPIPlanPtr next_run_plan = NULL;
static SPIPlanPtr saturated_plan = NULL;
static SPIPlanPtr success_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr attempts_plan = NULL;
static SPIPlanPtr succeed_plan = NULL;
static SPIPlanPtr release_plan = NULL;

/*
 * Whether some function is paused or has a concurrency limit, as last read
 * from async.functions; limits_known turns false when async.functions
 * changes (every write to it sends a relcache invalidation).
 */
static Oid	functions_relid = InvalidOid;
/* pg_async's pg_extension OID, as extension_ready last found it */
static Oid	extension_oid = InvalidOid;
/* the async.functions found to bind handlers by OID (0.5 and later) */
static Oid	bound_functions_relid = InvalidOid;
static bool limits_known = false;
static bool limits_exist = true;

/* async.jobs, as extension_ready last found it (and checked its columns) */
static Oid	jobs_relid = InvalidOid;

/* average run time of one job, in microseconds (exponential moving average) */
static double avg_job_us = 0;

/* average time a batch's finishing commit takes, WAL flush included (same) */
static double avg_commit_us = 0;

/* the most jobs the last claim could take (batch_limit() then) */
static int	last_claim_limit = 1;

/*
 * When the last claim that got jobs started, and whether the next waits for
 * pg_async.batch_wait after it (claim_due).
 */
static TimestampTz last_claim_at = 0;
static bool last_claim_streaming = false;
static bool last_claim_full = false;

/* jobs per claim, and microseconds between claims (moving averages) */
static double stream_jobs = 0;
static double stream_gap_us = USECS_PER_SEC;

/* jobs made ready a second by all commits (see ASYNC_HANDOFF_RATE) */
static double commit_rate = 0;
static uint64 rate_jobs = 0;		/* AsyncShmem->jobs_committed at rate_since */
static TimestampTz rate_since = 0;

/*
 * The commit that claimed the batch running now, or a later one of the
 * same batch, when it did not wait for its WAL flush (in-flight markers
 * stand in for that); invalid once a flushed commit made the claim durable.
 */
static XLogRecPtr unflushed_claim = InvalidXLogRecPtr;

static uint32 last_recovery_epoch = 0;
static TimestampTz last_recovery = 0;
static int	recovery_interval_ms = ASYNC_RECOVERY_INTERVAL_MS;
static TimestampTz last_retention = 0;
static TimestampTz last_release = 0;

/*
 * Saturated limits (shmem.c).  A transaction of this worker that finished or
 * gave back jobs with reservations sets reservations_released, and its
 * commit bumps limits_epoch.  A full claim lists the functions it found at
 * their limit, with the epoch read before it, and the commit publishes the
 * list.  The statements that release reservations come before the claim in
 * a transaction (run_batch), so the list reflects this transaction's own
 * releases, and its bump need not void it.
 */
static bool reservations_released = false;
static int	nsaturated = -1;		/* -1: this transaction made no list */
static uint64 saturated_epoch;
static char saturated_names[ASYNC_MAX_SATURATED][ASYNC_NAME_SIZE];

/*
 * The end of both claims: mark the picked jobs 'running', count the attempt,
 * and return what the worker needs to run them.
 */
#define CLAIM_UPDATE \
" UPDATE async.jobs j" \
"    SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1," \
"        started_at = pg_catalog.now(), worker_pid = $2, suspect = false, limited = false" \
"   FROM picked p LEFT JOIN async.functions f ON f.name OPERATOR(pg_catalog.=) p.function" \
"  WHERE j.id OPERATOR(pg_catalog.=) p.id" \
" RETURNING j.id, j.event_id, j.function, j.payload, j.attempts," \
"           f.handler::pg_catalog.oid, f.run_as::pg_catalog.oid, f.max_attempts," \
"           (EXTRACT(epoch FROM f.timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.float8," \
"           j.run_at, j.enqueued_at, j.enqueued_by::pg_catalog.oid," \
"           pg_catalog.now() OPERATOR(pg_catalog.-) GREATEST(j.enqueued_at," \
"               CASE WHEN j.errors IS NULL THEN j.run_at" \
"                    ELSE (j.errors OPERATOR(pg_catalog.->) 0 OPERATOR(pg_catalog.->>) 'at')::pg_catalog.timestamptz END)" \
"             OPERATOR(pg_catalog.>) f.max_event_age," \
"           f.max_event_age::pg_catalog.text, f.on_success IS NOT NULL," \
"           f.concurrency IS NOT NULL"

/*
 * The jobs of a claim's CTE src that fit in $3 bytes of payload, as stored,
 * counting the payloads before each in the order src was written (the
 * order of the ready index: a CTE is read back in the order its rows were
 * stored); the first job always fits.  A batch's payloads stay in the
 * worker's memory until it ends, so pg_async.batch_max_bytes bounds them
 * whatever pg_async.batch_size is.  The other jobs stay locked, not
 * claimed, until the claim commits.
 */
#define CLAIM_WITHIN_BYTES(src) \
" within_bytes AS (" \
"  SELECT w.* FROM (SELECT s.*, pg_catalog.sum(s.bytes) OVER (ROWS UNBOUNDED PRECEDING)" \
"                              OPERATOR(pg_catalog.-) s.bytes AS before" \
"                     FROM " src " s) w" \
"   WHERE w.before OPERATOR(pg_catalog.<) $3),"

/*
 * The functions that are paused or have a concurrency limit: whether there
 * is any decides between the two claims.
 */
#define LIMITED_FUNCTIONS \
" async.functions f WHERE f.paused OR f.concurrency IS NOT NULL"

/*
 * The CTE limits: each such function, and how many more of its jobs may
 * run (allowance, NULL without a limit), counting its reservations in
 * async.running.
 */
#define LIMITS_CTE \
" limits AS MATERIALIZED (" \
"  SELECT f.name, f.paused, f.concurrency," \
"         f.concurrency OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*)::pg_catalog.int4" \
"            FROM async.running r WHERE r.function OPERATOR(pg_catalog.=) f.name) AS allowance" \
"    FROM" LIMITED_FUNCTIONS ")"

/*
 * The claim.  Functions that are paused, or whose concurrency limit is
 * reached, are left out of the scan itself, so that their jobs wait without
 * spending attempts and without blocking other functions' jobs behind them.
 * The queued jobs of limited functions are not in jobs_ready_idx at all
 * (they are marked limited): each limited function with room left gets at
 * most its remaining allowance from its own range of jobs_limited_idx, so
 * that a large backlog held by a limit is not walked by every claim.  A
 * job of a limited function may still be found in jobs_ready_idx (enqueued
 * by a session that had not yet seen the limit): the allowance counts it
 * too.  Claimed jobs of limited functions are recorded in async.running,
 * which the next claim counts.
 */
static const char *claim_sql =
"WITH" LIMITS_CTE ","
" candidates AS ("
"  SELECT j.id, j.function, j.suspect, j.run_at,"
"         pg_catalog.pg_column_size(j.payload) AS bytes FROM async.jobs j"
"   WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited"
"     AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
"     AND j.state OPERATOR(pg_catalog.=) 'queued'"
"     AND j.function OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT l.name FROM limits l"
"            WHERE l.paused OR l.allowance OPERATOR(pg_catalog.<=) 0))"
"   ORDER BY j.run_at LIMIT $1"
"     FOR UPDATE SKIP LOCKED),"
" lanes AS ("
"  SELECT c.* FROM limits l CROSS JOIN LATERAL ("
"    SELECT j.id, j.function, j.suspect, j.run_at,"
"           pg_catalog.pg_column_size(j.payload) AS bytes FROM async.jobs j"
"     WHERE j.function OPERATOR(pg_catalog.=) l.name"
"       AND j.limited AND NOT j.paused AND j.finished_at IS NULL"
"       AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
"       AND j.state OPERATOR(pg_catalog.=) 'queued'"
"     ORDER BY j.run_at LIMIT LEAST(l.allowance, $1)"
"       FOR UPDATE SKIP LOCKED) c"
"   WHERE NOT l.paused AND l.allowance OPERATOR(pg_catalog.>) 0),"
" allowed AS ("
"  SELECT c.id, c.function, c.suspect, c.bytes, l.concurrency FROM ("
"         SELECT c.*, pg_catalog.row_number() OVER (PARTITION BY c.function ORDER BY c.run_at, c.id) AS nth"
"           FROM (SELECT * FROM candidates UNION ALL SELECT * FROM lanes) c) c"
"    LEFT JOIN limits l ON l.name OPERATOR(pg_catalog.=) c.function"
"   WHERE l.allowance IS NULL OR c.nth OPERATOR(pg_catalog.<=) l.allowance"
"   ORDER BY c.run_at, c.id LIMIT $1),"
CLAIM_WITHIN_BYTES("allowed")
" picked AS ("
"  SELECT a.id, a.function, a.concurrency FROM within_bytes a"
"   WHERE NOT EXISTS (SELECT FROM allowed s WHERE s.suspect)"
"  UNION ALL"
"  (SELECT s.id, s.function, s.concurrency FROM allowed s WHERE s.suspect LIMIT 1)),"
" reserved AS ("
"  INSERT INTO async.running (job_id, function)"
"  SELECT p.id, p.function FROM picked p WHERE p.concurrency IS NOT NULL)"
CLAIM_UPDATE;

/*
 * The claim while no function is paused or limited (the common case): the
 * same, without counting async.running.  Whether some function is limited
 * is cached (any_limits), and the cache can be stale: the invalidation that
 * clears it is processed at the next lock this worker takes, which may come
 * after the claim's snapshot already sees the change, for instance when the
 * claim runs in the transaction of a batch that began before it.  So the
 * claim checks, in its own snapshot, that no function is paused or limited
 * (an InitPlan, run once), and claims nothing otherwise; an empty fast claim
 * then makes the next claim read the limits again.
 */
static const char *claim_fast_sql =
"WITH candidates AS ("
"  SELECT j.id, j.function, j.suspect,"
"         pg_catalog.pg_column_size(j.payload) AS bytes FROM async.jobs j"
"   WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited"
"     AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
"     AND j.state OPERATOR(pg_catalog.=) 'queued'"
"     AND NOT EXISTS (SELECT FROM" LIMITED_FUNCTIONS ")"
"   ORDER BY j.run_at LIMIT $1"
"     FOR UPDATE SKIP LOCKED),"
CLAIM_WITHIN_BYTES("candidates")
" picked AS ("
"  SELECT c.id, c.function FROM within_bytes c"
"   WHERE NOT EXISTS (SELECT FROM candidates s WHERE s.suspect)"
"  UNION ALL"
"  (SELECT s.id, s.function FROM candidates s WHERE s.suspect LIMIT 1))"
CLAIM_UPDATE;

/*
 * The functions at their concurrency limit, after a full claim: their
 * reservations, this claim's among them, leave no allowance.  Paused ones
 * and those held at 0 are left out: their enqueues wake nobody anyway.
 */
static const char *saturated_sql =
"WITH" LIMITS_CTE
" SELECT l.name FROM limits l"
"  WHERE NOT l.paused AND l.concurrency OPERATOR(pg_catalog.>) 0"
"    AND l.allowance OPERATOR(pg_catalog.<=) 0"
"  LIMIT " CppAsString2(ASYNC_MAX_SATURATED);

/* whether the full claim is needed: some function is paused or limited */
static const char *limits_sql =
"SELECT EXISTS (SELECT FROM" LIMITED_FUNCTIONS ")";

/*
 * When the next job is due, leaving out those of paused or saturated
 * functions: the first of jobs_ready_idx, and the first of each limited
 * function with room left in jobs_limited_idx.
 */
static const char *next_run_sql =
"WITH" LIMITS_CTE
" SELECT LEAST("
"  (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"    WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited"
"      AND j.state OPERATOR(pg_catalog.=) 'queued'"
"      AND j.function OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT l.name FROM limits l"
"            WHERE l.paused OR l.allowance OPERATOR(pg_catalog.<=) 0))),"
"  (SELECT pg_catalog.min(x.run_at) FROM limits l CROSS JOIN LATERAL ("
"     SELECT j.run_at FROM async.jobs j"
"      WHERE j.function OPERATOR(pg_catalog.=) l.name"
"        AND j.limited AND NOT j.paused AND j.finished_at IS NULL"
"        AND j.state OPERATOR(pg_catalog.=) 'queued'"
"      ORDER BY j.run_at LIMIT 1) x"
"    WHERE NOT l.paused AND l.allowance OPERATOR(pg_catalog.>) 0))";

/*
 * Successful jobs keep their handler's end and run time: async.attempts
 * shows their attempt from there, so success writes no history row.
 */
static const char *success_sql =
"WITH released AS (DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY ($1))"
" UPDATE async.jobs j SET state = 'succeeded', finished_at = d.finished_at,"
"        duration = d.duration_us OPERATOR(pg_catalog.*) '1 microsecond'::pg_catalog.interval"
"   FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
"                   pg_catalog.unnest($2::pg_catalog.timestamptz[]),"
"                   pg_catalog.unnest($3::pg_catalog.int8[])) AS d(id, finished_at, duration_us)"
"  WHERE j.id OPERATOR(pg_catalog.=) d.id";

/*
 * Jobs claimed but not run, given back: queued again with the attempt the
 * claim counted taken back, at the head of the queue as before, and marked
 * limited again if their function has a concurrency limit.
 */
static const char *release_sql =
"WITH released AS (DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY ($1))"
" UPDATE async.jobs j SET state = 'queued', attempts = j.attempts OPERATOR(pg_catalog.-) 1,"
"        limited = async._is_limited(j.function)"
"  WHERE j.id OPERATOR(pg_catalog.=) ANY ($1) AND j.state OPERATOR(pg_catalog.=) 'running'";

static const char *fail_sql =
"SELECT f.new_state, f.retry_at FROM async._fail($1, $2, $3, $4, $5) f";

static const char *attempts_sql =
"INSERT INTO async.attempt_log"
"  (job_id, event_id, function, attempt, worker_pid, started_at, duration,"
"   outcome, error, sqlstate, enqueued_by)"
" SELECT a.job_id, a.event_id, a.function, a.attempt, $9, a.started_at,"
"        pg_catalog.make_interval(secs => a.duration_us OPERATOR(pg_catalog./) 1000000.0),"
"        a.outcome, a.error, a.sqlstate, a.enqueued_by::pg_catalog.regrole"
"   FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[]),"
"                   pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.int4[]),"
"                   pg_catalog.unnest($5::pg_catalog.timestamptz[]), pg_catalog.unnest($6::pg_catalog.int8[]),"
"                   pg_catalog.unnest($7::pg_catalog.text[]), pg_catalog.unnest($8::pg_catalog.text[]),"
"                   pg_catalog.unnest($10::pg_catalog.text[]), pg_catalog.unnest($11::pg_catalog.oid[]))"
"     AS a(job_id, event_id, function, attempt, started_at, duration_us,"
"          outcome, error, sqlstate, enqueued_by)";

/*
 * worker_detach gives the slot back when the worker exits, however it exits
 * short of a crash (which resets shared memory anyway).  It runs after the
 * transaction was aborted, so that other workers can recover its jobs at once.
 */
static void
worker_detach(int code, Datum arg)
{
	if (MySlot == NULL)
		return;

	pg_atomic_write_u32(&MySlot->sleeping, ASYNC_SLOT_AWAKE);
	pg_atomic_write_u64(&MySlot->next_look_at, (uint64) PG_INT64_MAX);
	SpinLockAcquire(&MySlot->mutex);
	if (MySlot->generation == MyGeneration && MySlot->pid == MyProcPid)
	{
		MySlot->pid = 0;
		MySlot->latch = NULL;
		MySlot->busy = false;
	}
	SpinLockRelease(&MySlot->mutex);

	pg_atomic_fetch_add_u32(&AsyncShmem->recovery_epoch, 1);
	pg_async_wake_launcher();
	/* a sleeping colleague recovers our jobs now rather than in a few seconds */
	pg_async_wake_workers(1);
}

/*
 * worker_attach claims slot MySlotIndex for this process, unless the launcher
 * has since given the slot to another worker.
 */
static bool
worker_attach(void)
{
	bool		ok = false;

	MySlot = &AsyncShmem->slots[MySlotIndex];
	SpinLockAcquire(&MySlot->mutex);
	if (MySlot->generation == MyGeneration && MySlot->pid == 0)
	{
		MySlot->pid = MyProcPid;
		MySlot->proc_start = MyStartTimestamp;
		MySlot->latch = &MyProc->procLatch;
		MySlot->busy = false;
		MySlot->function[0] = '\0';
		MySlot->event_id[0] = '\0';
		MySlot->attempt = 0;
		MySlot->started_at = 0;
		MySlot->jobs_done = 0;
		pg_atomic_write_u64(&MySlot->next_look_at, (uint64) PG_INT64_MAX);
		ok = true;
	}
	SpinLockRelease(&MySlot->mutex);
	if (!ok)
		MySlot = NULL;
	return ok;
}

/*
 * announce_next_look publishes when this worker will look at the queue
 * again (PG_INT64_MAX: it cannot tell), so that committers leave new jobs
 * to it rather than wake a colleague (pg_async_wake_workers).
 */
static void
announce_next_look(TimestampTz when)
{
	pg_atomic_write_u64(&MySlot->next_look_at, (uint64) when);
}

/*
 * warn_older_extension says, once per worker, why the workers wait: the
 * extension in MyDatabase is an older version than the library.
 */
static void
warn_older_extension(bool *warned)
{
	if (*warned)
		return;
	ereport(WARNING,
			(errmsg("pg_async workers wait: the extension installed in database \"%s\" is older than its library",
					MyDatabase),
			 errhint("Run ALTER EXTENSION pg_async UPDATE in that database.")));
	*warned = true;
}

/*
 * extension_ready tells, inside a transaction, whether pg_async is installed
 * in this database and not being dropped.  It takes, without waiting, the
 * locks the worker's statements need on pg_async's tables: a worker that
 * waited for one while holding another could deadlock with DROP EXTENSION,
 * which locks them all exclusively.
 */
static bool
extension_ready(void)
{
	static const char *const tables[] = {"jobs", "functions", "dead_letters",
	"attempt_log", "running"};
	static bool warned_old = false;
	Oid			nsp;
	Oid			jobs = InvalidOid;
	int			i;

	extension_oid = get_extension_oid("pg_async", true);
	if (!OidIsValid(extension_oid))
		return false;
	nsp = get_namespace_oid("async", true);
	if (!OidIsValid(nsp))
		return false;
	for (i = 0; i < lengthof(tables); i++)
	{
		Oid			relid = get_relname_relid(tables[i], nsp);

		if (!OidIsValid(relid))
		{
			/* 0.1 has no async.attempt_log, but a table async.attempts */
			if (get_rel_relkind(get_relname_relid("attempts", nsp)) == RELKIND_RELATION)
				warn_older_extension(&warned_old);
			return false;
		}
		if (!ConditionalLockRelationOid(relid, RowExclusiveLock))
			return false;
		/* locked: make sure it was not dropped meanwhile */
		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			return false;
		if (i == 0)
			jobs = relid;
		/* 0.4 and older held handlers as signatures: the claim reads OIDs */
		if (i == 1 && relid != bound_functions_relid)
		{
			if (!pg_async_handlers_bound(relid))
			{
				warn_older_extension(&warned_old);
				return false;
			}
			bound_functions_relid = relid;
		}
		if (i == 1 && relid != functions_relid)
		{
			/* a new async.functions (the extension was created again) */
			functions_relid = relid;
			limits_known = false;
		}
	}
	/* 0.2 has no async.jobs.limited, a development build of 0.2 no paused */
	if (jobs != jobs_relid)
	{
		if (get_attnum(jobs, "limited") == InvalidAttrNumber &&
			get_attnum(jobs, "paused") != InvalidAttrNumber)
		{
			warn_older_extension(&warned_old);
			return false;
		}
		if (get_attnum(jobs, "paused") == InvalidAttrNumber)
		{
			if (!warned_old)
				ereport(WARNING,
						(errmsg("pg_async workers wait: async.jobs in database \"%s\" has no column \"paused\"",
								MyDatabase),
						 errdetail("The extension was created from an unreleased build of version 0.2."),
						 errhint("Drop and create the extension again.")));
			warned_old = true;
			return false;
		}
		jobs_relid = jobs;
	}
	return true;
}

/* prepare_plan prepares a statement once for the worker's lifetime. */
static SPIPlanPtr
prepare_plan(const char *sql, int nargs, Oid *argtypes)
{
	/* generic plans: replanning each batch would cost more than running it */
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "pg_async: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "pg_async: SPI_keepplan failed");
	return plan;
}

/* begin_work opens a transaction with SPI and a snapshot, as worker_spi does. */
static void
begin_work(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * end_work closes what begin_work opened and commits; then it tells other
 * processes what the commit did to the concurrency limits (see
 * reservations_released).
 */
static void
end_work(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (reservations_released)
	{
		uint64		before = pg_async_limits_released();

		/* a list made after our releases holds, if no one else released */
		if (nsaturated >= 0 && before == saturated_epoch)
			saturated_epoch = before + 1;
		reservations_released = false;
	}
	if (nsaturated >= 0)
		pg_async_publish_saturated(saturated_epoch, saturated_names, nsaturated);
	nsaturated = -1;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * batch_limit is how many jobs to claim next: pg_async.batch_size, fewer when
 * recent jobs were slow, so that one batch lasts about ASYNC_BATCH_TARGET_US.
 */
static int
batch_limit(void)
{
	int			limit = pg_async_batch_size;

	if (avg_job_us * limit > ASYNC_BATCH_TARGET_US)
		limit = Max(1, (int) (ASYNC_BATCH_TARGET_US / avg_job_us));
	return limit;
}

/*
 * prepare_plans prepares the worker's statements, once.
 */
static void
prepare_plans(void)
{
	Oid			claim_types[3] = {INT4OID, INT4OID, INT8OID};
	Oid			release_types[1] = {INT8ARRAYOID};
	Oid			success_types[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID};
	Oid			fail_types[5] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};
	Oid			attempt_types[11] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT4OID, TEXTARRAYOID, OIDARRAYOID};
	Oid			succeed_types[5] = {INT8ARRAYOID, JSONBARRAYOID, BOOLOID,
	TIMESTAMPTZARRAYOID, INT8ARRAYOID};

	if (claim_plan != NULL)
		return;
	claim_plan = prepare_plan(claim_sql, 3, claim_types);
	claim_fast_plan = prepare_plan(claim_fast_sql, 3, claim_types);
	limits_plan = prepare_plan(limits_sql, 0, NULL);
	next_run_plan = prepare_plan(next_run_sql, 0, NULL);
	saturated_plan = prepare_plan(saturated_sql, 0, NULL);
	success_plan = prepare_plan(success_sql, 3, success_types);
	fail_plan = prepare_plan(fail_sql, 5, fail_types);
	attempts_plan = prepare_plan(attempts_sql, 11, attempt_types);
	succeed_plan = prepare_plan("SELECT async._succeed($1, $2, $3, $4, $5)", 5,
								succeed_types);
	release_plan = prepare_plan(release_sql, 1, release_types);
}

/*
 * push_planner_settings keeps the planner on the worker's intended plans,
 * until pop_planner_settings: the claim must walk jobs_ready_idx in run_at
 * order and stop after a batch, and the finishing statements must look jobs
 * up one by one by their primary key.  Without statistics (a new or
 * truncated queue) the planner would rather sort every ready job, or hash
 * the batch and scan the whole table: cheap for the empty table it planned
 * for, and then kept as the generic plan while the queue fills up.
 * These are session settings of the worker for the duration of its own
 * statements only: handlers run with the defaults.
 */
static int
push_planner_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/* pop_planner_settings undoes push_planner_settings. */
static void
pop_planner_settings(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/* functions_changed forgets limits_exist when async.functions changes. */
static void
functions_changed(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == functions_relid)
		limits_known = false;
}

/*
 * any_limits tells whether some function is paused or has a concurrency
 * limit, reading async.functions only after it changed.  The flag is set
 * before the query, so that an invalidation that arrives while it runs
 * makes the next claim ask again.
 */
static bool
any_limits(void)
{
	int			rc;
	bool		isnull;

	if (limits_known)
		return limits_exist;
	limits_known = true;
	rc = SPI_execute_plan(limits_plan, NULL, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_async: reading the limits failed: %s",
			 SPI_result_code_string(rc));
	limits_exist = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	return limits_exist;
}

/*
 * ASYNC_JOBS_MIN_ROWS is the fewest rows the worker's planner believes
 * async.jobs holds (jobs_rows_floor).
 */
#define ASYNC_JOBS_MIN_ROWS		100000

static get_relation_info_hook_type prev_get_relation_info_hook = NULL;

/*
 * jobs_rows_floor, the worker's get_relation_info_hook, makes the worker's
 * planner believe async.jobs holds at least ASYNC_JOBS_MIN_ROWS rows.  Its
 * statements are built for index plans: the claim walks jobs_ready_idx and
 * looks each claimed job up by its key, the finishing statements look jobs
 * up one by one.  Believing the table nearly empty, the planner would
 * rather scan all of it once and join the batch to it, which is ruinous at
 * a million rows (one claim took 364 s).  Statistics say "nearly empty"
 * more often than one would think: an ANALYZE (autovacuum's too) that runs
 * while a large INSERT is in progress sees no live row and records 0 rows
 * in however many pages, and from then on every plan, old or new, counts 0
 * rows per page, until the next ANALYZE.  Only the worker's own planning
 * is touched (the hook is set in the worker process), and only the size of
 * async.jobs and of its full indexes.
 */
static void
jobs_rows_floor(PlannerInfo *root, Oid relid, bool inhparent, RelOptInfo *rel)
{
	if (prev_get_relation_info_hook)
		prev_get_relation_info_hook(root, relid, inhparent, rel);

	if (relid == jobs_relid && OidIsValid(relid) && rel->tuples < ASYNC_JOBS_MIN_ROWS)
	{
		ListCell   *lc;

		rel->tuples = ASYNC_JOBS_MIN_ROWS;
		foreach(lc, rel->indexlist)
		{
			IndexOptInfo *index = (IndexOptInfo *) lfirst(lc);

			if (index->indpred == NIL)
				index->tuples = rel->tuples;
		}
	}
}

/*
 * claim_due returns when the next claim may start.  Jobs enqueued in a
 * stream, one transaction each, would otherwise be claimed a few at a time,
 * as they commit: every batch costs transactions of the worker's, which on a
 * small machine take the processor from the very sessions enqueueing.  So
 * after a claim fed by a stream (ASYNC_STREAM_RATE), the next waits until
 * pg_async.batch_wait after it, and takes what came meanwhile together.
 * Without a stream jobs are claimed as soon as they come; after a full claim
 * more are waiting, and the next claim is due at once.
 */
static TimestampTz
claim_due(void)
{
	if (!last_claim_streaming || pg_async_batch_wait <= 0)
		return 0;
	return last_claim_at + (TimestampTz) (pg_async_batch_wait * 1000.0);
}

/*
 * record_claim notes a claim that got n jobs, started at claim_start, for
 * claim_due: whether it was fed by a stream.  The rate the jobs came at is
 * taken over the last few claims, as the ratio of the moving averages of
 * jobs per claim and of time between claims (an average of each claim's own
 * rate would make a stream of close pairs out of jobs that come at random).
 * A full claim found a backlog, not a stream: the claim after it, which
 * takes the rest of the backlog, does not count as one either.
 */
static void
record_claim(int n, TimestampTz claim_start)
{
	bool		full = (n >= last_claim_limit);

	stream_jobs = 0.8 * stream_jobs + 0.2 * (double) n;
	stream_gap_us = 0.8 * stream_gap_us +
		0.2 * (double) Min(claim_start - last_claim_at, USECS_PER_SEC);
	last_claim_streaming = (n >= ASYNC_STREAM_JOBS && !full && !last_claim_full &&
							stream_jobs * USECS_PER_SEC >=
							ASYNC_STREAM_RATE * stream_gap_us);
	last_claim_full = full;
	last_claim_at = claim_start;
}

/*
 * keeps_new_jobs tells, at now, whether jobs committed while this worker
 * finishes its batch should be left to its next claim rather than to an
 * idle colleague (see ASYNC_SINGLE_JOBS): while it batches a stream, while
 * its claims get several jobs each, or while jobs come fast in all.
 */
static bool
keeps_new_jobs(TimestampTz now)
{
	if (now - rate_since >= ASYNC_RATE_INTERVAL_US)
	{
		uint64		committed = pg_atomic_read_u64(&AsyncShmem->jobs_committed);

		if (rate_since > 0)
			commit_rate = (double) (committed - rate_jobs) * USECS_PER_SEC /
				(double) (now - rate_since);
		rate_jobs = committed;
		rate_since = now;
	}
	return claim_due() > 0 || stream_jobs >= ASYNC_SINGLE_JOBS ||
		commit_rate >= ASYNC_HANDOFF_RATE;
}

/*
 * colleague_claims_first tells whether a worker in a lower slot is awake
 * and will claim by 'when'.  Only lower slots count, so that two workers
 * never both leave the jobs to the other.  An awake worker takes a new
 * snapshot for a claim before it sleeps, so jobs committed before we sleep
 * are not left behind, even those whose committer left them to us.  A
 * colleague taking its last look (ASYNC_SLOT_CLAIMING) does not count: its
 * snapshot may be older than such a job.
 */
static bool
colleague_claims_first(TimestampTz when)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < MySlotIndex; i++)
	{
		if (pg_async_slot_looks_by(&AsyncShmem->slots[i], when, now))
			return true;
	}
	return false;
}

/*
 * wait_for_claim waits until claim_due(), publishing that as the worker's
 * next look, so that committers leave new jobs to it.
 */
static void
wait_for_claim(void)
{
	TimestampTz due = claim_due();

	if (due <= GetCurrentTimestamp())
		return;
	announce_next_look(due);
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
							 remaining / 1000, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * list_saturated lists the functions at their concurrency limit after a
 * full claim, for end_work to publish once the claim is committed: an
 * enqueue of their jobs then wakes nobody.  epoch is limits_epoch as read
 * before the claim.
 */
static void
list_saturated(uint64 epoch)
{
	int			rc;
	uint64		i;

	/*
	 * Not read-only: SPI then takes a new snapshot, after the epoch was read
	 * and seeing this transaction's own reservations and releases, rather
	 * than reuse the transaction's first one.
	 */
	rc = SPI_execute_plan(saturated_plan, NULL, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading the saturated limits failed: %s",
			 SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed && i < ASYNC_MAX_SATURATED; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);

		strlcpy(saturated_names[i], isnull ? "" : TextDatumGetCString(d), ASYNC_NAME_SIZE);
	}
	nsaturated = (int) i;
	saturated_epoch = epoch;
}

/*
 * copy_claimed_jobs copies the n jobs a claim returned (SPI_tuptable) into
 * cxt, as *jobs_out.
 */
static void
copy_claimed_jobs(MemoryContext cxt, AsyncJob **jobs_out, int n, TimestampTz claim_start)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	AsyncJob   *jobs = palloc0(sizeof(AsyncJob) * n);
	TupleDesc	desc = SPI_tuptable->tupdesc;
	uint64		i;

	record_claim(n, claim_start);

	for (i = 0; i < (uint64) n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		AsyncJob   *job = &jobs[i];
		bool		isnull;
		Datum		d;

		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->event_id = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		job->function = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		job->payload = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		job->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		job->registered = !isnull;
		if (job->registered)
		{
			job->handler = DatumGetObjectId(d);
			job->run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
			job->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
			job->timeout_ms = (int32) Min(DatumGetFloat8(SPI_getbinval(tup, desc, 9, &isnull)),
										  (double) INT_MAX);
			if (job->timeout_ms < 1)
				job->timeout_ms = 1;
		}
		job->due_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 10, &isnull));
		job->enqueued_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 11, &isnull));
		job->enqueued_by = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
		d = SPI_getbinval(tup, desc, 15, &isnull);
		job->has_destination = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, desc, 16, &isnull);
		job->reserved = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, desc, 13, &isnull);
		if (!isnull && DatumGetBool(d))
		{
			job->expired = true;
			job->error_message = psprintf("event is older than max_event_age (%s)",
										  TextDatumGetCString(SPI_getbinval(tup, desc, 14, &isnull)));
		}
	}
	*jobs_out = jobs;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * claim_jobs marks up to batch_limit() ready jobs 'running' and counts their
 * attempt, in the caller's transaction, with SPI connected.  The jobs are
 * copied into cxt.  With no job ready it reports when the next one is due
 * (0 if none).
 */
static int
claim_jobs(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at)
{
	Datum		args[3];
	int			rc;
	int			n;
	int			save_nestlevel;
	bool		limited;
	TimestampTz claim_start;
	uint64		epoch;

	*jobs_out = NULL;
	*next_run_at = 0;

	/* no claim until the markers of a crash have been acted on */
	if (pg_atomic_read_u32(&AsyncShmem->inflight_state) != 2)
	{
		*next_run_at = GetCurrentTimestamp();
		return 0;
	}

	prepare_plans();
	save_nestlevel = push_planner_settings();

	limited = any_limits();
	/*
	 * Claims that count running jobs of limited functions are serialized,
	 * so that each sees the jobs the previous one reserved: the lock is
	 * taken before the claim statement takes its snapshot, whenever the
	 * full claim runs, even if only some function is paused (a function
	 * given a limit between the lock and the claim would otherwise be
	 * claimed unserialized).  It is ASYNC_CLAIM_LOCK (pg_async.h), which no
	 * role can hold to stop the claims, as any role could hold the
	 * advisory lock used before 0.5.
	 */
	if (limited)
		LockDatabaseObject(ExtensionRelationId, extension_oid, ASYNC_CLAIM_LOCK,
						   ExclusiveLock);

	last_claim_limit = batch_limit();
	claim_start = GetCurrentTimestamp();
	/* before the claim's snapshot: see shmem.c */
	epoch = pg_async_limits_epoch();
	args[0] = Int32GetDatum(last_claim_limit);
	args[1] = Int32GetDatum(MyProcPid);
	args[2] = Int64GetDatum((int64) pg_async_batch_max_bytes * 1024);
	rc = SPI_execute_plan(limited ? claim_plan : claim_fast_plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "pg_async: claiming jobs failed: %s",
			 SPI_result_code_string(rc));

	n = (int) SPI_processed;

	/* perhaps a limit the cache has not heard of yet (see claim_fast_sql) */
	if (n == 0 && !limited)
		limits_known = false;

	if (n > 0)
		copy_claimed_jobs(cxt, jobs_out, n, claim_start);
	else
	{
		/* in a new snapshot, for the same reasons as list_saturated's */
		rc = SPI_execute_plan(next_run_plan, NULL, NULL, false, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				*next_run_at = DatumGetTimestampTz(d);
		}
	}
	if (limited)
		list_saturated(epoch);
	pop_planner_settings(save_nestlevel);
	return n;
}

/*
 * commit_without_flush makes the current transaction's commit return
 * before its WAL is flushed.
 */
static void
commit_without_flush(void)
{
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * note_claim_commit follows a commit that claimed a batch or ran part of
 * one.  If that commit did not wait for its WAL flush (an idle claim,
 * pg_async.synchronous_commit = off, or the server's own synchronous_commit),
 * the claim may be lost in a crash: the handlers to come write in-flight
 * markers until a flushed commit makes it durable.
 */
static void
note_claim_commit(void)
{
	if (XactLastCommitEnd > GetFlushRecPtr(NULL))
		unflushed_claim = XactLastCommitEnd;
	else
		unflushed_claim = InvalidXLogRecPtr;
}

/*
 * claim_batch claims jobs in a transaction of its own: how an idle worker
 * starts.  *ready is false when pg_async is not installed here.
 */
static int
claim_batch(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at,
			bool *ready)
{
	int			n = 0;

	*jobs_out = NULL;
	*next_run_at = 0;

	begin_work("pg_async: claiming jobs");
	*ready = extension_ready();
	if (*ready)
		n = claim_jobs(cxt, jobs_out, next_run_at);

	/*
	 * The handlers need not wait for this commit to reach the disk: each
	 * writes its in-flight marker first, which tells after a crash restart
	 * which job ran even if the claim was lost (inflight.c).  The batch's
	 * own commit, when synchronous, makes the claim durable.
	 */
	if (n > 0 && pg_async_inflight_available())
		commit_without_flush();
	end_work();
	note_claim_commit();
	return n;
}

/*
 * mark_inflight records that job's handler starts, while the claim of its
 * batch may not be on disk yet; if the marker cannot be written, it flushes
 * the claim instead.
 */
static void
mark_inflight(AsyncJob *job)
{
	if (XLogRecPtrIsInvalid(unflushed_claim))
		return;
	if (!pg_async_inflight_mark(job->id, job->attempt))
	{
		XLogFlush(unflushed_claim);
		unflushed_claim = InvalidXLogRecPtr;
	}
}

/* show_job publishes what the worker runs now, for async.workers. */
static void
show_job(AsyncJob *job)
{
	SpinLockAcquire(&MySlot->mutex);
	MySlot->busy = (job != NULL);
	if (job != NULL)
	{
		strlcpy(MySlot->function, job->function, ASYNC_FUNCTION_LEN);
		strlcpy(MySlot->event_id, job->event_id, ASYNC_EVENT_ID_LEN);
		MySlot->attempt = job->attempt;
		MySlot->started_at = GetCurrentTimestamp();
	}
	else
	{
		MySlot->function[0] = '\0';
		MySlot->event_id[0] = '\0';
		MySlot->attempt = 0;
		MySlot->started_at = 0;
	}
	SpinLockRelease(&MySlot->mutex);
}

/* text_array builds a text[] from C strings, NULL pointers becoming NULLs. */
static Datum
text_array(char **strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = (strings[i] == NULL);
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(strings[i]);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  TEXTOID, -1, false, TYPALIGN_INT));
}

/* int8_array builds an int8[] (or, with typid TIMESTAMPTZOID, a timestamptz[]). */
static Datum
int8_array(int64 *values, int n, Oid typid)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, typid, sizeof(int64),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* int4_array builds an int4[] (or, with typid OIDOID, an oid[]). */
static Datum
int4_array(int32 *values, int n, Oid typid)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int32GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, typid, sizeof(int32),
										   true, TYPALIGN_INT));
}

/*
 * record_attempts appends a row to async.attempt_log for each job of
 * jobs[0..n-1] that failed or expired, in one statement, unless
 * pg_async.attempts_retention is 0.  A successful attempt needs no row: its
 * job keeps its end and run time, and async.attempts shows it from there.
 */
static void
record_attempts(AsyncJob *jobs, int n)
{
	int64	   *ids;
	int64	   *starts;
	int64	   *durations;
	int32	   *attempts;
	int32	   *owners;
	char	  **event_ids;
	char	  **functions;
	char	  **outcomes;
	char	  **errors;
	char	  **sqlstates;
	Datum		args[11];
	int			rc;
	int			i;
	int			nfailed = 0;

	if (pg_async_attempts_retention <= 0 || n == 0)
		return;

	ids = palloc(sizeof(int64) * n);
	starts = palloc(sizeof(int64) * n);
	durations = palloc(sizeof(int64) * n);
	attempts = palloc(sizeof(int32) * n);
	owners = palloc(sizeof(int32) * n);
	event_ids = palloc(sizeof(char *) * n);
	functions = palloc(sizeof(char *) * n);
	outcomes = palloc(sizeof(char *) * n);
	errors = palloc(sizeof(char *) * n);
	sqlstates = palloc(sizeof(char *) * n);

	for (i = 0; i < n; i++)
	{
		AsyncJob   *job = &jobs[i];
		int			k = nfailed;

		if (!job->failed)
			continue;
		ids[k] = job->id;
		starts[k] = job->started_at;
		durations[k] = job->duration_us;
		attempts[k] = job->expired ? job->attempt - 1 : job->attempt;
		owners[k] = (int32) job->enqueued_by;
		event_ids[k] = job->event_id;
		functions[k] = job->function;
		outcomes[k] = job->expired ? "expired" : "failed";
		errors[k] = job->error_message;
		sqlstates[k] = job->sqlstate[0] ? job->sqlstate : NULL;
		nfailed++;
	}
	if (nfailed == 0)
		return;
	args[0] = int8_array(ids, nfailed, INT8OID);
	args[1] = text_array(event_ids, nfailed);
	args[2] = text_array(functions, nfailed);
	args[3] = int4_array(attempts, nfailed, INT4OID);
	args[4] = int8_array(starts, nfailed, TIMESTAMPTZOID);
	args[5] = int8_array(durations, nfailed, INT8OID);
	args[6] = text_array(outcomes, nfailed);
	args[7] = text_array(errors, nfailed);
	args[8] = Int32GetDatum(MyProcPid);
	args[9] = text_array(sqlstates, nfailed);
	args[10] = int4_array(owners, nfailed, OIDOID);
	rc = SPI_execute_plan(attempts_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "pg_async: recording attempts failed: %s",
			 SPI_result_code_string(rc));
}

/*
 * log_failure writes the server log line of a failed attempt, at
 * pg_async.log_failures: what failed, why, and what happens next.
 */
static void
log_failure(AsyncJob *job, bool dead, TimestampTz retry_at)
{
	if (job->expired)
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" expired: %s; dead-lettered",
						job->function, job->event_id, job->error_message)));
	else if (dead)
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" attempt %d of %d failed: %s (SQLSTATE %s); dead-lettered",
						job->function, job->event_id, job->attempt,
						job->registered ? job->max_attempts : 3,
						job->error_message, job->sqlstate)));
	else
		ereport(pg_async_log_failures,
				(errmsg("pg_async: function \"%s\" event \"%s\" attempt %d of %d failed: %s (SQLSTATE %s); retry at %s",
						job->function, job->event_id, job->attempt,
						job->registered ? job->max_attempts : 3,
						job->error_message, job->sqlstate,
						timestamptz_to_str(retry_at))));
}

/* What async._fail() made of a failed attempt. */
typedef struct FailOutcome
{
	bool		dead;			/* dead-lettered, not queued again */
	TimestampTz retry_at;		/* when queued again */
} FailOutcome;

/*
 * record_failures records the failed attempts of jobs[0..n-1] (only of
 * jobs[only], if only >= 0) with async._fail(), in a subtransaction of
 * their own, and fills outcomes.  If that fails, it rolls the
 * subtransaction back and returns false, with the error's message in
 * *error when error is not NULL.  SPI is connected.
 */
static bool
record_failures(AsyncJob *jobs, int n, int only, FailOutcome *outcomes, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		int			i;

		for (i = (only >= 0 ? only : 0); i < (only >= 0 ? only + 1 : n); i++)
		{
			AsyncJob   *job = &jobs[i];
			Datum		args[5];
			bool		isnull;
			Datum		d;
			int			rc;

			if (!job->failed)
				continue;
			args[0] = Int64GetDatum(job->id);
			args[1] = CStringGetTextDatum(job->error_message);
			args[2] = CStringGetTextDatum(job->sqlstate);
			args[3] = TimestampTzGetDatum(job->failed_at);
			args[4] = CStringGetTextDatum("expired");
			rc = SPI_execute_plan(fail_plan, args, job->expired ? NULL : "    n", false, 0);
			if (rc != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "pg_async: recording a failed attempt failed: %s",
					 SPI_result_code_string(rc));
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			outcomes[i].dead = !isnull && strcmp(TextDatumGetCString(d), "dead") == 0;
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			outcomes[i].retry_at = isnull ? 0 : DatumGetTimestampTz(d);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (error != NULL)
			*error = pg_async_clip_message(edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * settle_error dead-letters a job whose failed attempt could not be
 * recorded, with reason 'error', by async._bury_jobs(), which touches
 * nothing but the job's own row, reservation and dead letter.
 */
static void
settle_error(AsyncJob *job, const char *error)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	int			rc;

	args[0] = Int64GetDatum(job->id);
	args[1] = CStringGetTextDatum(psprintf("pg_async could not record the failed attempt: %s",
										   error));
	rc = SPI_execute_with_args("SELECT async._bury_jobs(ARRAY[$1], 'error', $2, NULL)", 2, types, args,
							   NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: settling a job failed: %s", SPI_result_code_string(rc));
}

/*
 * finish_jobs writes the outcomes of jobs[0..n-1] in the current
 * transaction: one UPDATE for those that succeeded, async._fail() for each
 * that failed, their history in async.attempt_log, and their counts.  It
 * leaves SPI connected, for end_work().
 */
static void
finish_jobs(AsyncJob *jobs, int n)
{
	int64	   *ok_ids;
	int64	   *ok_finished;
	int64	   *ok_durations;
	Datum	   *results;
	bool	   *result_nulls;
	bool		with_results = false;
	bool		with_destinations = false;
	int			nok = 0;
	int			i;
	int			save_nestlevel;
	FailOutcome *outcomes;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	prepare_plans();
	save_nestlevel = push_planner_settings();

	for (i = 0; i < n; i++)
		if (jobs[i].reserved)
			reservations_released = true;

	ok_ids = palloc(sizeof(int64) * Max(n, 1));
	ok_finished = palloc(sizeof(int64) * Max(n, 1));
	ok_durations = palloc(sizeof(int64) * Max(n, 1));
	results = palloc(sizeof(Datum) * Max(n, 1));
	result_nulls = palloc(sizeof(bool) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!jobs[i].failed)
		{
			ok_finished[nok] = jobs[i].started_at + jobs[i].duration_us;
			ok_durations[nok] = jobs[i].duration_us;
			results[nok] = jobs[i].result;
			result_nulls[nok] = (jobs[i].result == (Datum) 0);
			if (!result_nulls[nok])
				with_results = true;
			if (jobs[i].has_destination)
				with_destinations = true;
			ok_ids[nok++] = jobs[i].id;
			pg_async_pending(jobs[i].function)->succeeded++;
		}

	if (nok > 0 && !with_results && !with_destinations)
	{
		/* the common case: one UPDATE, nothing else to keep */
		Datum		args[3];
		int			rc;

		args[0] = int8_array(ok_ids, nok, INT8OID);
		args[1] = int8_array(ok_finished, nok, TIMESTAMPTZOID);
		args[2] = int8_array(ok_durations, nok, INT8OID);
		rc = SPI_execute_plan(success_plan, args, NULL, false, 0);

		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "pg_async: finishing jobs failed: %s",
				 SPI_result_code_string(rc));
	}
	else if (nok > 0)
	{
		Datum		args[5];
		int			dims[1] = {nok};
		int			lbs[1] = {1};
		int			rc;

		args[0] = int8_array(ok_ids, nok, INT8OID);
		args[1] = PointerGetDatum(construct_md_array(results, result_nulls, 1, dims, lbs,
													 JSONBOID, -1, false, TYPALIGN_INT));
		args[2] = BoolGetDatum(with_destinations);
		args[3] = int8_array(ok_finished, nok, TIMESTAMPTZOID);
		args[4] = int8_array(ok_durations, nok, INT8OID);
		rc = SPI_execute_plan(succeed_plan, args, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "pg_async: finishing jobs failed: %s",
				 SPI_result_code_string(rc));
	}

	/*
	 * The failures, in a subtransaction: one job's bad data must not stop
	 * the others' (nor, through a worker that dies on it at every attempt,
	 * every other role's).  If it fails, each failure is recorded in one of
	 * its own, and a job whose failure cannot be recorded is settled alone
	 * as a dead letter with reason 'error'.
	 */
	outcomes = palloc0(sizeof(FailOutcome) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (jobs[i].failed)
			break;
	if (i < n && !record_failures(jobs, n, -1, outcomes, NULL))
	{
		for (i = 0; i < n; i++)
		{
			char	   *error = NULL;

			if (!jobs[i].failed || record_failures(jobs, n, i, outcomes, &error))
				continue;
			ereport(WARNING,
					(errmsg("pg_async could not record the failed attempt of function \"%s\" event \"%s\": %s",
							jobs[i].function, jobs[i].event_id, error),
					 errdetail("The event is dead-lettered with reason error.")));
			settle_error(&jobs[i], error);
			outcomes[i].dead = true;
		}
	}

	for (i = 0; i < n; i++)
	{
		AsyncJob   *job = &jobs[i];
		AsyncCounters *c;

		if (!job->failed)
			continue;
		c = pg_async_pending(job->function);
		if (!job->expired)
			c->failed++;
		if (outcomes[i].dead)
			c->dead++;
		else
			c->retried++;
		log_failure(job, outcomes[i].dead, outcomes[i].retry_at);
	}

	record_attempts(jobs, n);
	pop_planner_settings(save_nestlevel);

	SpinLockAcquire(&MySlot->mutex);
	MySlot->jobs_done += n;
	SpinLockRelease(&MySlot->mutex);
}

/*
 * release_jobs gives back n claimed jobs that were not run, in the current
 * transaction: see run_batch.
 */
static void
release_jobs(AsyncJob *jobs, int n)
{
	int64	   *ids = palloc(sizeof(int64) * n);
	Datum		args[1];
	int			save_nestlevel;
	int			rc;
	int			i;

	for (i = 0; i < n; i++)
	{
		ids[i] = jobs[i].id;
		if (jobs[i].reserved)
			reservations_released = true;
	}
	args[0] = int8_array(ids, n, INT8OID);
	save_nestlevel = push_planner_settings();
	rc = SPI_execute_plan(release_plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "pg_async: giving back claimed jobs failed: %s",
			 SPI_result_code_string(rc));
	pop_planner_settings(save_nestlevel);
	elog(DEBUG1, "pg_async: gave back %d claimed jobs after a batch overran", n);
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
	for (tries = 0; !extension_ready(); tries++)
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
		commit_without_flush();
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
 * before any of its handlers starts.  Returns the size of the next batch.
 */
static int
run_batch(AsyncJob *jobs, int n, MemoryContext next_cxt, AsyncJob **next_jobs)
{
	int			nnext = 0;
	int			first = 0;		/* first job of the current transaction */
	int			nrelease = 0;	/* jobs at the end given back, not run */
	int			i;
	TimestampTz next_run_at;
	TimestampTz batch_start = GetCurrentTimestamp();

	*next_jobs = NULL;

	/* the next claim comes after these handlers, as long as they usually take */
	announce_next_look(batch_start + (TimestampTz) (n * avg_job_us));
	begin_run_transaction();

	for (i = 0; i < n; i++)
	{
		AsyncJob   *job = &jobs[i];
		AsyncCounters *c = pg_async_pending(job->function);

		job->started_at = GetCurrentTimestamp();
		if (job->expired)
		{
			/* not run: it goes to the dead letters as expired */
			job->failed = true;
			job->failed_at = job->started_at;
			job->duration_us = 0;
			continue;
		}
		show_job(job);
		mark_inflight(job);
		pg_async_execute_job(job);
		CommandCounterIncrement();
		job->duration_us = GetCurrentTimestamp() - job->started_at;
		avg_job_us = 0.8 * avg_job_us + 0.2 * (double) job->duration_us;

		c->started++;
		pg_async_count_duration(&c->duration, job->duration_us);
		pg_async_count_duration(&c->wait, job->started_at - job->due_at);

		/*
		 * The batch was sized by the run time of recent jobs, which says
		 * little when slow jobs follow fast ones: a worker fresh from
		 * no-op jobs claims a full batch of one-second jobs and runs them
		 * one after the other while its colleagues sleep.  Once the batch
		 * has taken twice as long as it should, the rest is given back
		 * (release_jobs), in the transaction that finishes the jobs run so
		 * far; the next claim is sized by the slow jobs, and wakes a
		 * colleague when it is full.
		 */
		if (i + 1 < n &&
			job->started_at + job->duration_us - batch_start > 2 * ASYNC_BATCH_TARGET_US)
		{
			nrelease = n - i - 1;
			n = i + 1;
			break;
		}

		if (jobs[i].wrote && i + 1 < n &&
			(pg_async_subxids_cached() >= ASYNC_MAX_SUBXIDS ||
			 pg_async_subxids_overflowed()))
		{
			finish_jobs(jobs + first, i + 1 - first);
			end_work();
			note_claim_commit();
			first = i + 1;
			begin_run_transaction();
		}
	}
	show_job(NULL);

	finish_jobs(jobs + first, n - first);
	if (nrelease > 0)
		release_jobs(jobs + n, nrelease);

	/*
	 * begin_run_transaction() took the locks on pg_async's tables in this
	 * transaction: the extension cannot have gone since.
	 */
	if (next_cxt != NULL && GetCurrentTimestamp() >= claim_due())
		nnext = claim_jobs(next_cxt, next_jobs, &next_run_at);

	/*
	 * A job committed from here on is not seen until the next claim: after
	 * this commit and its WAL flush, and after the batch just claimed, if
	 * any, or the wait for batch_wait.  While our claims get several jobs
	 * each (a stream, or one building up), committers leave their jobs to
	 * us if that is soon enough (pg_async_wake_slack), rather than wake a
	 * colleague to claim them in a transaction of its own: so a stream stays
	 * with one worker, which then batches it.  While jobs come one at a
	 * time, and not fast in all (ASYNC_HANDOFF_RATE), a job that comes now
	 * goes to a sleeping colleague instead, who starts it at once rather
	 * than after our flush.
	 */
	{
		TimestampTz commit_start = GetCurrentTimestamp();

		if (keeps_new_jobs(commit_start))
			announce_next_look(Max(commit_start +
								   (TimestampTz) (avg_commit_us + nnext * avg_job_us),
								   claim_due()));
		else
			announce_next_look(PG_INT64_MAX);
		end_work();
		avg_commit_us = 0.8 * avg_commit_us +
			0.2 * (double) (GetCurrentTimestamp() - commit_start);
	}
	note_claim_commit();
	pg_async_inflight_clear();

	/* session-level advisory locks taken by a handler end with its batch */
	LockReleaseSession(USER_LOCKMETHOD);

	return nnext;
}

/*
 * run_maintenance_sql runs one statement of upkeep in a transaction of its
 * own and returns its integer result (0 when pg_async is not installed).
 */
static int
run_maintenance_sql(const char *activity, const char *sql, int nargs,
					Oid *argtypes, Datum *args)
{
	int			result = 0;

	announce_next_look(PG_INT64_MAX);
	begin_work(activity);
	if (extension_ready())
	{
		int			rc = SPI_execute_with_args(sql, nargs, argtypes, args, NULL,
											   false, 1);
		bool		isnull;

		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pg_async: \"%s\" failed: %s", sql,
				 SPI_result_code_string(rc));
		result = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
			result = 0;
	}
	end_work();
	return result;
}

/*
 * charge_lost_claim charges job_id the attempt 'attempt' that its in-flight
 * marker says was running when the server went down, if the claim of that
 * attempt did not survive (the job is queued again with one attempt fewer):
 * it marks the job running on that attempt again, and async._charge_crash()
 * records the crashed attempt and retries or dead-letters the job, as
 * async._recover() does when the claim survived.  Returns 1 if it did.
 * A running job is never marked paused or limited (a claim clears the
 * marks), which async._recover() relies on to find running jobs in
 * jobs_ready_idx: the marks go, should the function have been paused or
 * limited since the crash.
 */
static int
charge_lost_claim(int64 job_id, int32 attempt)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2];
	int			rc;

	args[0] = Int64GetDatum(job_id);
	args[1] = Int32GetDatum(attempt);
	rc = SPI_execute_with_args("UPDATE async.jobs j"
							   "   SET state = 'running', attempts = $2, paused = false, limited = false,"
							   "       started_at = pg_catalog.now(), worker_pid = NULL"
							   " WHERE j.id OPERATOR(pg_catalog.=) $1"
							   "   AND j.state OPERATOR(pg_catalog.=) 'queued'"
							   "   AND j.finished_at IS NULL"
							   "   AND j.attempts OPERATOR(pg_catalog.=) ($2 OPERATOR(pg_catalog.-) 1)",
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "pg_async: charging a lost claim failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed != 1)
		return 0;

	rc = SPI_execute_with_args("SELECT async._charge_crash($1)",
							   1, types, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: charging a lost claim failed: %s",
			 SPI_result_code_string(rc));
	return 1;
}

/*
 * recover_lost_claims acts on the in-flight markers the workers of the last
 * server lifetime left (inflight.c), once per lifetime and before any
 * worker claims: one worker does it while the others wait.  While pg_async
 * is installed but its tables are locked (or it still is 0.1), it tries
 * again at the next upkeep.  If it fails, the queue must not stop: the
 * error is logged and the markers dropped, and the jobs they name run again
 * without being charged.
 */
static void
recover_lost_claims(void)
{
	uint32		expected = 0;
	int			charged = 0;
	bool		busy = false;
	MemoryContext cxt = CurrentMemoryContext;

	if (pg_atomic_read_u32(&AsyncShmem->inflight_state) == 2 ||
		!pg_atomic_compare_exchange_u32(&AsyncShmem->inflight_state, &expected, 1))
		return;

	announce_next_look(PG_INT64_MAX);
	PG_TRY();
	{
		begin_work("pg_async: charging the jobs a crash interrupted");
		if (extension_ready())
		{
			int64	   *job_ids;
			int32	   *attempts;
			int			n = pg_async_inflight_read(&job_ids, &attempts);
			int			i;

			for (i = 0; i < n; i++)
				charged += charge_lost_claim(job_ids[i], attempts[i]);
		}
		else if (OidIsValid(get_extension_oid("pg_async", true)))
		{
			/* installed but locked (or an older version): try again later */
			busy = true;
		}
		end_work();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(WARNING,
				(errmsg("pg_async could not charge the jobs a crash interrupted"),
				 errdetail("Their in-flight markers are dropped: those jobs run again without spending an attempt.")));
		charged = 0;
	}
	PG_END_TRY();
	if (busy)
	{
		/* claims keep waiting (inflight_state) until the markers are done */
		pg_atomic_write_u32(&AsyncShmem->inflight_state, 0);
		return;
	}
	pg_async_inflight_reset();
	pg_atomic_write_u32(&AsyncShmem->inflight_state, 2);

	if (charged > 0)
		ereport(LOG,
				(errmsg("pg_async charged %d job%s an attempt: %s running when the server went down",
						charged, charged == 1 ? "" : "s", charged == 1 ? "it was" : "they were")));
}

/*
 * maintenance recovers the jobs of dead workers when a worker exited, after
 * a start, and every recovery_interval_ms in case a worker's exit went
 * unnoticed (a pid reused after a restart), and in slot 0 applies
 * pg_async.retention.  Returns true when it queued jobs again.
 *
 * The periodic look for jobs left running reads every unfinished job (no
 * index leads to the running ones alone: marking a job running must stay a
 * HOT update): 0.2 to 0.8 s with a backlog of a million jobs, which every
 * 5 s took a quarter of each worker's time while it drained that backlog.
 * So the interval grows with what the look costs: at least
 * ASYNC_RECOVERY_INTERVAL_MS, and 100 times the last look's duration,
 * keeping it to about 1% of a worker.
 */
static bool
maintenance(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		epoch = pg_atomic_read_u32(&AsyncShmem->recovery_epoch);
	bool		requeued = false;

	recover_lost_claims();

	if (epoch != last_recovery_epoch || last_recovery == 0 ||
		TimestampDifferenceExceeds(last_recovery, now, recovery_interval_ms))
	{
		int			n;
		int64		took_ms;

		last_recovery_epoch = epoch;
		last_recovery = now;
		n = run_maintenance_sql("pg_async: recovering jobs of dead workers",
								"SELECT async._recover()", 0, NULL, NULL);
		took_ms = (GetCurrentTimestamp() - now) / 1000;
		recovery_interval_ms = (int) Min(Max(100 * took_ms, ASYNC_RECOVERY_INTERVAL_MS),
										 ASYNC_RECOVERY_MAX_INTERVAL_MS);
		if (n > 0)
		{
			/* their reservations went with them */
			(void) pg_async_limits_released();
			ereport(LOG,
					(errmsg("pg_async recovered %d job%s left running by a worker that exited",
							n, n == 1 ? "" : "s")));
			requeued = true;
		}
	}

	/*
	 * Jobs marked paused or limited for what no longer holds (an enqueue, a
	 * retry or a release that raced async.resume, async.configure or
	 * async.unregister): released on a timer of their own, however the
	 * recovery look above is paced, since nothing else would release them.
	 */
	if (MySlotIndex == 0 &&
		(last_release == 0 ||
		 TimestampDifferenceExceeds(last_release, now, ASYNC_RECOVERY_INTERVAL_MS)))
	{
		last_release = now;
		if (run_maintenance_sql("pg_async: releasing paused or limited jobs",
								"SELECT async._unpause_jobs()", 0, NULL, NULL) > 0)
			requeued = true;
	}

	if (MySlotIndex == 0 &&
		(last_retention == 0 ||
		 TimestampDifferenceExceeds(last_retention, now, ASYNC_RETENTION_INTERVAL_MS)))
	{
		Oid			types[3] = {INTERVALOID, INT4OID, INTERVALOID};
		Datum		args[3];
		Interval   *retention = palloc0(sizeof(Interval));
		Interval   *attempts_retention = palloc0(sizeof(Interval));
		int			n;

		last_retention = now;
		retention->time = (int64) pg_async_retention * USECS_PER_SEC;
		attempts_retention->time = (int64) Max(pg_async_attempts_retention, 0) * USECS_PER_SEC;
		args[0] = IntervalPGetDatum(retention);
		args[1] = Int32GetDatum(ASYNC_RETENTION_BATCH);
		args[2] = IntervalPGetDatum(attempts_retention);
		do
		{
			CHECK_FOR_INTERRUPTS();
			n = run_maintenance_sql("pg_async: deleting finished jobs",
									"SELECT async._purge_finished($1, $2, $3)",
									3, types, args);
		} while (n >= ASYNC_RETENTION_BATCH);

		if (pg_async_attempts_retention > 0)
		{
			(void) run_maintenance_sql("pg_async: deleting old attempts",
									   "SELECT async._purge_attempts($1)",
									   1, types + 2, args + 2);
		}
		pfree(attempts_retention);
		pfree(retention);
	}

	return requeued;
}

/*
 * sleep_time is how long an idle worker may sleep: until the next scheduled
 * job, at most ASYNC_MAX_SLEEP_MS.
 */
static long
sleep_time(TimestampTz next_run_at)
{
	long		ms = ASYNC_MAX_SLEEP_MS;

	if (next_run_at != 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		/*
		 * A job that is due but was not claimed is locked by a colleague
		 * claiming it right now: look again shortly, without spinning.
		 */
		if (next_run_at <= now)
			return 50;
		ms = Min(ms, (long) ((next_run_at - now + 999) / 1000));
	}
	return ms;
}

/*
 * pg_async_worker_main is a worker's entry point and loop.
 */
void
pg_async_worker_main(Datum main_arg)
{
	MySlotIndex = DatumGetInt32(main_arg);
	pg_async_in_worker = true;
	memcpy(&MyGeneration, MyBgworkerEntry->bgw_extra, sizeof(uint32));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	WorkerContext = AllocSetContextCreate(TopMemoryContext, "pg_async worker",
										  ALLOCSET_DEFAULT_SIZES);
	BatchContext = AllocSetContextCreate(WorkerContext, "pg_async batch",
										 ALLOCSET_DEFAULT_SIZES);
	MyDatabase = MemoryContextStrdup(WorkerContext, pg_async_database);

	BackgroundWorkerInitializeConnection(MyDatabase, NULL, 0);

	/*
	 * Take the slot once connected, so that async.workers lists only workers
	 * that serve the database.  worker_detach is an on_shmem_exit callback:
	 * it runs after the transaction was aborted.
	 */
	if (MySlotIndex < 0 || MySlotIndex >= AsyncShmem->nslots || !worker_attach())
		proc_exit(0);			/* the launcher gave this slot to another */
	on_shmem_exit(worker_detach, (Datum) 0);

	CacheRegisterRelcacheCallback(functions_changed, (Datum) 0);
	prev_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = jobs_rows_floor;
	pg_async_inflight_open(MySlotIndex);

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

		batch_cxt[0] = BatchContext;
		batch_cxt[1] = AllocSetContextCreate(WorkerContext, "pg_async next batch",
											 ALLOCSET_DEFAULT_SIZES);

		for (;;)
		{
			TimestampTz next_run_at;
			bool		ready;
			bool		leaving = false;

			CHECK_FOR_INTERRUPTS();

			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			/* the launcher starts workers for a new database or count */
			if (strcmp(MyDatabase, pg_async_database) != 0 ||
				MySlotIndex >= pg_async_workers)
				leaving = true;

			if (n > 0)
			{
				AsyncJob   *next_jobs;
				MemoryContext next_cxt = batch_cxt[1 - cur];

				/*
				 * A full batch: there may be more, let a colleague help.
				 * Full by the limit of this claim, which is smaller than
				 * pg_async.batch_size while handlers are slow: that is when
				 * help matters most.
				 */
				if (n >= last_claim_limit)
					pg_async_wake_workers(pg_async_batch_size);

				MemoryContextReset(next_cxt);
				n = run_batch(jobs, n, leaving ? NULL : next_cxt, &next_jobs);
				jobs = next_jobs;
				cur = 1 - cur;
				(void) maintenance();
				continue;
			}

			if (leaving)
				proc_exit(0);

			MemoryContextReset(batch_cxt[cur]);

			if (maintenance())
				continue;

			/*
			 * A stream of jobs is one worker's to batch: rather than wait to
			 * claim its share of it, a worker sleeps while a colleague in a
			 * lower slot is awake and claims first.  That one wakes it when
			 * its claims come back full.
			 */
			if (claim_due() > GetCurrentTimestamp() &&
				colleague_claims_first(claim_due() + pg_async_wake_slack()))
			{
				pg_atomic_write_u32(&MySlot->sleeping, ASYNC_SLOT_ASLEEP);
				pg_memory_barrier();
				last_claim_streaming = false;	/* once woken, claim at once */
				(void) WaitLatch(MyLatch,
								 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 ASYNC_MAX_SLEEP_MS, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				continue;
			}
			wait_for_claim();

			/* from here, a commit that enqueues jobs must wake us */
			announce_next_look(GetCurrentTimestamp());
			pg_atomic_write_u32(&MySlot->sleeping, ASYNC_SLOT_CLAIMING);
			pg_memory_barrier();

			n = claim_batch(batch_cxt[cur], &jobs, &next_run_at, &ready);
			if (n > 0)
			{
				pg_atomic_write_u32(&MySlot->sleeping, ASYNC_SLOT_AWAKE);
				continue;
			}

			/*
			 * Asleep from here, unless a committer has already swapped the
			 * handshake and set the latch: then we look again at once.
			 */
			{
				uint32		expected = ASYNC_SLOT_CLAIMING;

				(void) pg_atomic_compare_exchange_u32(&MySlot->sleeping, &expected,
													  ASYNC_SLOT_ASLEEP);
			}

			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ready ? sleep_time(next_run_at) : ASYNC_MAX_SLEEP_MS,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
