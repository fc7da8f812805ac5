/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  The claim: a worker takes up to a batch of ready jobs, locked with
 *	  FOR UPDATE SKIP LOCKED, marks them 'running' (a HOT update) and counts
 *	  their attempt, in a transaction that commits before any handler runs,
 *	  so that a handler that kills its worker has still spent an attempt.
 *	  An idle worker claims in a transaction of its own
 *	  (pg_async_claim_batch); under load the claim ends the transaction
 *	  that ran the previous batch (pg_async_claim_jobs), so that one commit
 *	  finishes a batch and claims the next.
 *
 *	  Functions that are paused or at their concurrency limit are left out
 *	  of the claim itself.  The jobs of limited functions reserve a place
 *	  in async.running; the claim also tells shared memory which limits it
 *	  found reached, so that enqueues of their jobs wake nobody (shmem.c).
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "optimizer/plancat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr claim_fast_plan = NULL;
static SPIPlanPtr limits_plan = NULL;
static SPIPlanPtr next_run_plan = NULL;
static SPIPlanPtr saturated_plan = NULL;
static SPIPlanPtr scheduled_plan = NULL;

/*
 * Whether some function is paused or has a concurrency limit, as last read
 * from async.functions (limits_relid); limits_known turns false when
 * async.functions changes (every write to it sends a relcache
 * invalidation).
 */
static Oid	limits_relid = InvalidOid;
static bool limits_known = false;
static bool limits_exist = true;

/*
 * Saturated limits (shmem.c).  A transaction of this worker that finished or
 * gave back jobs with reservations sets reservations_released, and its commit
 * bumps limits_epoch.  A full claim lists the functions it found at their
 * limit, with the epoch read before it, and the commit publishes the list.
 * The statements that release reservations come before the claim in a
 * transaction (worker.c's run_batch), so the list reflects this transaction's
 * own releases, and its bump need not void it.
 */
static bool reservations_released = false;
static int	nsaturated = -1;		/* -1: this transaction made no list */
static uint64 saturated_epoch;
static char saturated_names[ASYNC_MAX_SATURATED][ASYNC_NAME_SIZE];

/*
 * The end of both claims: mark the picked jobs 'running', count the attempt,
 * and return what the worker needs to run them, and, for the ready floor,
 * the first run_at the walk of jobs_ready_idx found, whether it locked
 * jobs it did not take (picked.ready: the job came from that walk, not
 * from another part of the claim), and whether the walk was made at all
 * (not when jobs of a lower priority filled the batch); for the priority
 * floor, the same of the walks of jobs_priority_idx (picked.prio), the
 * first job as its priority and run_at, and whether the walk above 0 was
 * made.
 */
/* the jobs the walks of jobs_priority_idx found */
#define PRIORITY_FOUND \
"(SELECT u.priority, u.run_at FROM urgent u UNION ALL SELECT l.priority, l.run_at FROM later l)"

#define CLAIM_UPDATE \
" UPDATE async.jobs j" \
"    SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1," \
"        started_at = $8, worker_pid = $2, suspect = false, limited = false" \
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
"           f.concurrency IS NOT NULL," \
"           (SELECT pg_catalog.min(c.run_at) FROM candidates c)," \
"           (SELECT pg_catalog.count(*) FROM candidates c) OPERATOR(pg_catalog.>)" \
"             (SELECT pg_catalog.count(*) FROM picked p WHERE p.ready)," \
"           (SELECT pg_catalog.count(*) FROM urgent u) OPERATOR(pg_catalog.<) $1," \
"           j.priority," \
"           (SELECT x.priority FROM " PRIORITY_FOUND " x" \
"             ORDER BY x.priority, x.run_at LIMIT 1)," \
"           (SELECT x.run_at FROM " PRIORITY_FOUND " x" \
"             ORDER BY x.priority, x.run_at LIMIT 1)," \
"           (SELECT pg_catalog.count(*) FROM urgent u) OPERATOR(pg_catalog.+)" \
"             (SELECT pg_catalog.count(*) FROM candidates c) OPERATOR(pg_catalog.<) $1," \
"           (SELECT pg_catalog.count(*) FROM urgent u) OPERATOR(pg_catalog.+)" \
"             (SELECT pg_catalog.count(*) FROM later l) OPERATOR(pg_catalog.>)" \
"             (SELECT pg_catalog.count(*) FROM picked p WHERE p.prio)," \
"           j.depth, COALESCE(f.max_depth, $7), f.rate_limit IS NOT NULL"

/* what each part of a claim reads of a job */
#define PART_COLUMNS \
" j.id, j.function, j.suspect, j.run_at, j.priority," \
" pg_catalog.pg_column_size(j.payload) AS bytes"

/* a job that is due and waits, outside the lanes of limited functions */
#define READY_JOB \
" j.finished_at IS NULL AND NOT j.paused AND NOT j.limited" \
" AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
" AND j.state OPERATOR(pg_catalog.=) 'queued'"

/*
 * The walk of the ready jobs by priority, as three CTEs that each take what
 * the ones before left of the batch ($1): urgent, the jobs of a priority
 * below 0 (jobs_priority_idx, from the priority floor ($5, $6)); candidates,
 * those of priority 0 (jobs_ready_idx, from the ready floor $4), the common
 * case; later, those above 0 (jobs_priority_idx, from the priority floor).
 * Each walk stops at the batch, so that jobs of priority 0 never have a
 * walk of an index with other priorities in their way.  cond leaves out
 * the jobs of paused and saturated functions.
 */
#define READY_PARTS(cond) \
" urgent AS (" \
"  SELECT" PART_COLUMNS " FROM async.jobs j" \
"   WHERE" READY_JOB " AND j.priority OPERATOR(pg_catalog.<>) 0" \
"     AND j.priority OPERATOR(pg_catalog.<) 0" \
"     AND (j.priority, j.run_at) OPERATOR(pg_catalog.>=) ($5, $6) AND " cond \
"   ORDER BY j.priority, j.run_at LIMIT $1" \
"     FOR UPDATE SKIP LOCKED)," \
" candidates AS (" \
"  SELECT" PART_COLUMNS " FROM async.jobs j" \
"   WHERE" READY_JOB " AND j.priority OPERATOR(pg_catalog.=) 0" \
"     AND j.run_at OPERATOR(pg_catalog.>=) $4 AND " cond \
"   ORDER BY j.run_at" \
"   LIMIT $1 OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM urgent)" \
"     FOR UPDATE SKIP LOCKED)," \
" later AS (" \
"  SELECT" PART_COLUMNS " FROM async.jobs j" \
"   WHERE" READY_JOB " AND j.priority OPERATOR(pg_catalog.<>) 0" \
"     AND j.priority OPERATOR(pg_catalog.>) 0" \
"     AND (j.priority, j.run_at) OPERATOR(pg_catalog.>=) ($5, $6) AND " cond \
"   ORDER BY j.priority, j.run_at" \
"   LIMIT $1 OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM urgent)" \
"            OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM candidates)" \
"     FOR UPDATE SKIP LOCKED),"

/*
 * the parts of READY_PARTS, with whether each came from jobs_ready_idx
 * (ready) or from jobs_priority_idx (prio)
 */
#define READY_UNION \
" SELECT *, false AS ready, true AS prio FROM urgent" \
" UNION ALL SELECT *, true, false FROM candidates" \
" UNION ALL SELECT *, false, true FROM later"

/*
 * The jobs of a claim's CTE src that fit in $3 bytes of payload, as stored,
 * counting the payloads before each in the order of the claim (priority,
 * run_at, id); the first job always fits.  A batch's payloads stay in the
 * worker's memory until it ends, so pg_async.batch_max_bytes bounds them
 * whatever pg_async.batch_size is.  The other jobs stay locked, not
 * claimed, until the claim commits.
 */
#define CLAIM_WITHIN_BYTES(src) \
" within_bytes AS (" \
"  SELECT w.* FROM (SELECT s.*, pg_catalog.sum(s.bytes) OVER (ORDER BY s.priority, s.run_at, s.id" \
"                                                     ROWS UNBOUNDED PRECEDING)" \
"                              OPERATOR(pg_catalog.-) s.bytes AS before" \
"                     FROM " src " s) w" \
"   WHERE w.before OPERATOR(pg_catalog.<) $3),"

/*
 * The functions that are paused or have a concurrency or rate limit: whether
 * there is any decides between the two claims.  External functions are left out:
 * their jobs are never in jobs_ready_idx, and only consumers claim them
 * (external.c).
 */
#define LIMITED_FUNCTIONS \
" async.functions f" \
" WHERE (f.paused OR f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL)" \
"   AND f.handler IS NOT NULL"

/*
 * The CTE limits: each such function, and how many more of its jobs may
 * start at time 'at' (allowance, NULL without a limit): within its
 * concurrency limit, counting its reservations in async.running (room),
 * and within its rate limit, counting the starts of the window that ends
 * at 'at' (async.rate_windows).  room_at: when a full rate limit has room
 * again.
 */
#define LIMITS_CTE(at) \
" limits AS MATERIALIZED (" \
"  SELECT l.*, LEAST(l.room, l.rate_limit OPERATOR(pg_catalog.-) l.rate_used) AS allowance" \
"    FROM (SELECT f.name, f.paused, f.concurrency, f.rate_limit," \
"                 f.concurrency OPERATOR(pg_catalog.-)" \
"                   (SELECT pg_catalog.count(*)::pg_catalog.int4 FROM async.running r" \
"                     WHERE r.function OPERATOR(pg_catalog.=) f.name) AS room," \
"                 CASE WHEN f.rate_limit IS NOT NULL" \
"                      THEN async._rate_used(f.name, f.rate_period, " at ") END AS rate_used," \
"                 CASE WHEN f.rate_limit IS NOT NULL" \
"                      THEN async._rate_room_at(f.name, " at ") END AS room_at" \
"            FROM" LIMITED_FUNCTIONS ") l)"

/* the jobs of paused or saturated functions, which the full claim leaves */
#define NOT_HELD \
"j.function OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT l.name FROM limits l" \
"   WHERE l.paused OR l.allowance OPERATOR(pg_catalog.<=) 0))"

/* a queued job in the lane of limited function l, in jobs_limited_idx */
#define LANE_JOB \
" j.function OPERATOR(pg_catalog.=) l.name" \
" AND j.limited AND NOT j.paused AND j.finished_at IS NULL" \
" AND j.state OPERATOR(pg_catalog.=) 'queued'"

/*
 * A part of the lanes: for each limited function with room left, its ready
 * jobs whose priority passes test, in the given order, up to limit, in
 * the function's range of jobs_limited_idx.  As in READY_PARTS, three
 * parts by priority each take what the ones before left.
 */
#define LANE_PART(name, test, order, limit) \
" " name " AS (" \
"  SELECT c.* FROM limits l CROSS JOIN LATERAL (" \
"    SELECT" PART_COLUMNS " FROM async.jobs j" \
"     WHERE" LANE_JOB " AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
"       AND j.priority " test \
"     ORDER BY " order " LIMIT " limit \
"       FOR UPDATE SKIP LOCKED) c" \
"   WHERE NOT l.paused AND l.allowance OPERATOR(pg_catalog.>) 0),"

#define LANE_ALLOWANCE "LEAST(l.allowance, $1)"
#define LANE_TAKEN(part) \
" OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM " part " t" \
"   WHERE t.function OPERATOR(pg_catalog.=) l.name)"

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
 * which the next claim counts.  Every part goes by priority, then run_at.
 */
static const char *claim_sql =
"WITH" LIMITS_CTE("$8") ","
READY_PARTS(NOT_HELD)
LANE_PART("lane_urgent", "OPERATOR(pg_catalog.<) 0", "j.priority, j.run_at", LANE_ALLOWANCE)
LANE_PART("lane_ready", "OPERATOR(pg_catalog.=) 0", "j.run_at",
		  LANE_ALLOWANCE LANE_TAKEN("lane_urgent"))
LANE_PART("lane_later", "OPERATOR(pg_catalog.>) 0", "j.priority, j.run_at",
		  LANE_ALLOWANCE LANE_TAKEN("lane_urgent") LANE_TAKEN("lane_ready"))
" allowed AS ("
"  SELECT c.id, c.function, c.suspect, c.run_at, c.priority, c.bytes, c.ready, c.prio,"
"         l.concurrency FROM ("
"         SELECT c.*, pg_catalog.row_number() OVER (PARTITION BY c.function"
"                                                    ORDER BY c.priority, c.run_at, c.id) AS nth"
"           FROM (" READY_UNION
"                 UNION ALL SELECT *, false, false FROM lane_urgent"
"                 UNION ALL SELECT *, false, false FROM lane_ready"
"                 UNION ALL SELECT *, false, false FROM lane_later) c) c"
"    LEFT JOIN limits l ON l.name OPERATOR(pg_catalog.=) c.function"
"   WHERE l.allowance IS NULL OR c.nth OPERATOR(pg_catalog.<=) l.allowance"
"   ORDER BY c.priority, c.run_at, c.id LIMIT $1),"
CLAIM_WITHIN_BYTES("allowed")
" picked AS ("
"  SELECT a.id, a.function, a.concurrency, a.ready, a.prio FROM within_bytes a"
"   WHERE NOT EXISTS (SELECT FROM allowed s WHERE s.suspect)"
"  UNION ALL"
"  (SELECT s.id, s.function, s.concurrency, s.ready, s.prio FROM allowed s WHERE s.suspect LIMIT 1)),"
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
"WITH"
READY_PARTS("NOT EXISTS (SELECT FROM" LIMITED_FUNCTIONS ")")
" ready AS (" READY_UNION "),"
CLAIM_WITHIN_BYTES("ready")
" picked AS ("
"  SELECT c.id, c.function, c.ready, c.prio FROM within_bytes c"
"   WHERE NOT EXISTS (SELECT FROM ready s WHERE s.suspect)"
"  UNION ALL"
"  (SELECT s.id, s.function, s.ready, s.prio FROM ready s WHERE s.suspect LIMIT 1))"
CLAIM_UPDATE;

/*
 * The functions at their concurrency limit, after a full claim: their
 * reservations, this claim's among them, leave no room.  Paused ones
 * and those held at 0 are left out: their enqueues wake nobody anyway.
 * So are full rate limits: time, not a commit, gives them room again (a
 * claim's next_run_at then wakes a worker for their jobs).
 */
static const char *saturated_sql =
"WITH" LIMITS_CTE("pg_catalog.clock_timestamp()")
" SELECT l.name FROM limits l"
"  WHERE NOT l.paused AND l.concurrency OPERATOR(pg_catalog.>) 0"
"    AND l.room OPERATOR(pg_catalog.<=) 0"
"  LIMIT " CppAsString2(ASYNC_MAX_SATURATED);

/* whether the full claim is needed: some function is paused or limited */
static const char *limits_sql =
"SELECT EXISTS (SELECT FROM" LIMITED_FUNCTIONS ")";

/* a queued job outside the lanes, not held by a pause or a limit */
#define WAITING_JOB \
" j.finished_at IS NULL AND NOT j.paused AND NOT j.limited" \
" AND j.state OPERATOR(pg_catalog.=) 'queued' AND " NOT_HELD

/*
 * When the next job is due, leaving out those of paused or saturated
 * functions: the first of jobs_ready_idx from the ready floor ($1), the
 * first of jobs_priority_idx from the priority floor ($2, $3), the
 * first of each limited function with room left in jobs_limited_idx, in
 * each range of priorities, and when each full rate limit with jobs
 * waiting has room again.
 */
static const char *next_run_sql =
"WITH" LIMITS_CTE("pg_catalog.clock_timestamp()")
" SELECT LEAST("
"  (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"    WHERE" WAITING_JOB " AND j.priority OPERATOR(pg_catalog.=) 0"
"      AND j.run_at OPERATOR(pg_catalog.>=) $1),"
"  (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"    WHERE" WAITING_JOB " AND j.priority OPERATOR(pg_catalog.<>) 0"
"      AND (j.priority, j.run_at) OPERATOR(pg_catalog.>=) ($2, $3)),"
"  (SELECT pg_catalog.min(x.run_at) FROM limits l CROSS JOIN LATERAL ("
"     SELECT j.run_at FROM async.jobs j"
"      WHERE" LANE_JOB " AND j.priority OPERATOR(pg_catalog.=) 0"
"      ORDER BY j.run_at LIMIT 1) x"
"    WHERE NOT l.paused AND l.allowance OPERATOR(pg_catalog.>) 0),"
"  (SELECT pg_catalog.min(x.run_at) FROM limits l CROSS JOIN LATERAL ("
"     SELECT pg_catalog.min(j.run_at) AS run_at FROM async.jobs j"
"      WHERE" LANE_JOB " AND j.priority OPERATOR(pg_catalog.<) 0"
"     UNION ALL"
"     SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"      WHERE" LANE_JOB " AND j.priority OPERATOR(pg_catalog.>) 0) x"
"    WHERE NOT l.paused AND l.allowance OPERATOR(pg_catalog.>) 0),"
"  (SELECT pg_catalog.min(l.room_at) FROM limits l"
"    WHERE NOT l.paused AND l.room_at IS NOT NULL"
"      AND EXISTS (SELECT FROM async.jobs j WHERE" LANE_JOB ")))";

/*
 * The first job of jobs_priority_idx after ($1, $2), of a priority below
 * $3, that is scheduled after $2: the priority floor may rise past no such
 * job (see raise_priority_floor).  Jobs a claim could not see may be found
 * (the statement takes a new snapshot), which only holds the floor lower.
 */
static const char *scheduled_sql =
"SELECT j.priority, j.run_at FROM async.jobs j"
" WHERE j.priority OPERATOR(pg_catalog.<>) 0 AND j.finished_at IS NULL"
"   AND NOT j.paused AND NOT j.limited AND j.state OPERATOR(pg_catalog.=) 'queued'"
"   AND (j.priority, j.run_at) OPERATOR(pg_catalog.>) ($1, $2)"
"   AND j.priority OPERATOR(pg_catalog.<) $3 AND j.run_at OPERATOR(pg_catalog.>) $2"
" ORDER BY j.priority, j.run_at LIMIT 1";

/* prepare_plans prepares the claim's statements, once. */
static void
prepare_plans(void)
{
	Oid			claim_types[8] = {INT4OID, INT4OID, INT8OID, TIMESTAMPTZOID,
	INT2OID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID};
	Oid			next_run_types[3] = {TIMESTAMPTZOID, INT2OID, TIMESTAMPTZOID};
	Oid			scheduled_types[3] = {INT2OID, TIMESTAMPTZOID, INT4OID};

	if (claim_plan != NULL)
		return;
	claim_plan = pg_async_prepare_plan(claim_sql, 8, claim_types);
	claim_fast_plan = pg_async_prepare_plan(claim_fast_sql, 8, claim_types);
	limits_plan = pg_async_prepare_plan(limits_sql, 0, NULL);
	next_run_plan = pg_async_prepare_plan(next_run_sql, 3, next_run_types);
	saturated_plan = pg_async_prepare_plan(saturated_sql, 0, NULL);
	scheduled_plan = pg_async_prepare_plan(scheduled_sql, 3, scheduled_types);
}

/*
 * raise_priority_floor raises the priority floor after a claim that began
 * at it, (floor_priority, floor_run_at), as far as the claim's walks of
 * jobs_priority_idx tell: no ready job it could take lies below the first
 * it found (found, with found_priority and found_run_at), or, if it found
 * none, below the end of what it walked (the end of the priorities below 0
 * when the walk above 0 was not made, else the end of all).  Time makes
 * scheduled jobs ready with no trigger to lower the floor, so it may not
 * pass a scheduled job either: between the walk's start and the first job
 * found, within the first priority walked, every job has a run_at below
 * that job's, and is due; past that priority, the first scheduled job is
 * looked up (scheduled_sql), and the floor goes no higher than its
 * priority at claim_now.
 */
static void
raise_priority_floor(int16 floor_priority, TimestampTz floor_run_at, bool found,
					 int16 found_priority, TimestampTz found_run_at, bool walked_all,
					 TimestampTz claim_now)
{
	uint64		floor_key = pg_async_priority_floor_key(floor_priority, floor_run_at);
	uint64		target;
	int32		bound;
	Datum		args[3];
	int			rc;

	if (found)
	{
		target = pg_async_priority_floor_key(found_priority, found_run_at);
		if (found_priority == floor_priority)
		{
			pg_async_priority_floor_claim_end(MyAsyncSlot, target);
			return;
		}
		bound = found_priority;
	}
	else if (walked_all)
	{
		target = pg_async_priority_floor_key(PG_INT16_MAX, claim_now);
		bound = PG_INT16_MAX + 1;
	}
	else
	{
		target = pg_async_priority_floor_key(1, DT_NOBEGIN);
		bound = 1;
	}
	if (target <= floor_key)
		return;

	args[0] = Int16GetDatum(floor_priority);
	args[1] = TimestampTzGetDatum(claim_now);
	args[2] = Int32GetDatum(bound);
	/* in a new snapshot, as list_saturated's */
	rc = SPI_execute_plan(scheduled_plan, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading the scheduled jobs failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		int16		priority = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1, &isnull));

		target = Min(target, pg_async_priority_floor_key(priority, claim_now));
	}
	pg_async_priority_floor_claim_end(MyAsyncSlot, target);
}

/* functions_changed forgets limits_exist when async.functions changes. */
static void
functions_changed(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == limits_relid)
		limits_known = false;
}

/*
 * read_limits tells whether some function is paused or has a concurrency
 * limit: in the transaction's snapshot when read_only, else in a new one
 * (SPI takes one for a statement that is not read-only).
 */
static bool
read_limits(bool read_only)
{
	int			rc;
	bool		isnull;

	rc = SPI_execute_plan(limits_plan, NULL, NULL, read_only, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_async: reading the limits failed: %s",
			 SPI_result_code_string(rc));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
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
	/* a new async.functions (the extension was created again) */
	if (AsyncFunctionsRelId != limits_relid)
	{
		limits_relid = AsyncFunctionsRelId;
		limits_known = false;
	}
	if (limits_known)
		return limits_exist;
	limits_known = true;
	limits_exist = read_limits(true);
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

	if (relid == AsyncJobsRelId && OidIsValid(relid) && rel->tuples < ASYNC_JOBS_MIN_ROWS)
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
 * list_saturated lists the functions at their concurrency limit after a
 * full claim, for pg_async_commit_batch to publish once the claim is
 * committed: an
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

/* job_order orders claimed jobs as the claim took them */
static int
job_order(const void *a, const void *b)
{
	const AsyncJob *x = (const AsyncJob *) a;
	const AsyncJob *y = (const AsyncJob *) b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	if (x->due_at != y->due_at)
		return x->due_at < y->due_at ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

/*
 * copy_claimed_jobs copies the n jobs a claim returned (SPI_tuptable) into
 * cxt, as *jobs_out, in the order the batch runs them: by priority, then
 * run_at and id (an UPDATE returns its rows in no particular order).
 */
static void
copy_claimed_jobs(MemoryContext cxt, AsyncJob **jobs_out, int n, TimestampTz claim_start)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	AsyncJob   *jobs = palloc0(sizeof(AsyncJob) * n);
	TupleDesc	desc = SPI_tuptable->tupdesc;
	uint64		i;

	pg_async_batch_note_claim(n, claim_start);

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
		job->priority = DatumGetInt16(SPI_getbinval(tup, desc, 20, &isnull));
		job->depth = DatumGetInt32(SPI_getbinval(tup, desc, 25, &isnull));
		job->enqueued_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 11, &isnull));
		job->enqueued_by = DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull));
		d = SPI_getbinval(tup, desc, 15, &isnull);
		job->has_destination = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, desc, 16, &isnull);
		job->reserved = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, desc, 27, &isnull);
		job->rate_limited = !isnull && DatumGetBool(d);
		d = SPI_getbinval(tup, desc, 13, &isnull);
		if (!isnull && DatumGetBool(d))
		{
			job->expired = true;
			job->error_message = psprintf("event is older than max_event_age (%s)",
										  TextDatumGetCString(SPI_getbinval(tup, desc, 14, &isnull)));
		}
		else if (job->registered)
		{
			int32		max_depth = DatumGetInt32(SPI_getbinval(tup, desc, 26, &isnull));

			/* a loop of handlers or destinations that enqueue each other */
			if (job->depth > max_depth)
			{
				job->looped = true;
				job->error_message = psprintf("event is %d deep in a chain of events, past max_depth (%d)",
											  job->depth, max_depth);
			}
		}
	}
	qsort(jobs, n, sizeof(AsyncJob), job_order);
	*jobs_out = jobs;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * note_rate_starts records in the rate windows the jobs of rate-limited
 * functions that the claim at claim_start will run (not those that expired
 * or looped), in its transaction, under the claim lock that made the
 * claim count the window.  The recorded time is the jobs' started_at.
 */
static void
note_rate_starts(AsyncJob *jobs, int n, TimestampTz claim_start)
{
	Datum	   *names = palloc(sizeof(Datum) * n);
	Datum	   *counts = palloc(sizeof(Datum) * n);
	int			nfunctions = 0;
	int			i;
	int			k;
	Oid			argtypes[3] = {TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID};
	Datum		args[3];

	for (i = 0; i < n; i++)
	{
		if (!jobs[i].rate_limited || jobs[i].expired || jobs[i].looped)
			continue;
		for (k = 0; k < nfunctions; k++)
			if (strcmp(TextDatumGetCString(names[k]), jobs[i].function) == 0)
				break;
		if (k == nfunctions)
		{
			names[nfunctions] = CStringGetTextDatum(jobs[i].function);
			counts[nfunctions++] = Int32GetDatum(0);
		}
		counts[k] = Int32GetDatum(DatumGetInt32(counts[k]) + 1);
	}
	if (nfunctions == 0)
		return;

	args[0] = PointerGetDatum(construct_array(names, nfunctions, TEXTOID, -1, false,
											  TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(counts, nfunctions, INT4OID, sizeof(int32),
											  true, TYPALIGN_INT));
	args[2] = TimestampTzGetDatum(claim_start);
	if (SPI_execute_with_args("SELECT async._rate_note($1, $2, $3)", 3, argtypes, args,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: recording the starts of rate limits failed");
}

/*
 * pg_async_claim_jobs marks up to pg_async_batch_limit() ready jobs 'running'
 * and counts their attempt, in the caller's transaction, with SPI connected.
 * The jobs are copied into cxt.  With no job ready it reports when the next
 * one is due (0 if none).
 */
int
pg_async_claim_jobs(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at)
{
	Datum		args[8];
	Datum		next_run_args[3];
	int			rc;
	int			n;
	int			save_nestlevel;
	bool		limited;
	bool		informed;
	TimestampTz claim_start;
	TimestampTz claim_now = GetCurrentTransactionStartTimestamp();
	TimestampTz floor;
	int16		prio_floor = PG_INT16_MIN;
	TimestampTz prio_floor_run_at = DT_NOBEGIN;
	TimestampTz first_run_at = DT_NOEND;
	bool		walked = true;
	bool		prio_found = false;
	int16		prio_first = 0;
	TimestampTz prio_first_run_at = 0;
	bool		prio_walked_all = true;
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
	save_nestlevel = pg_async_push_planner_settings();

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
		LockDatabaseObject(ExtensionRelationId, AsyncExtensionId, ASYNC_CLAIM_LOCK,
						   ExclusiveLock);

	claim_start = GetCurrentTimestamp();
	/* before the claim's snapshot: see shmem.c and ready_floor.c */
	epoch = pg_async_limits_epoch();
	floor = AsyncReadyFloor ?
		pg_async_floor_claim_begin(MyAsyncSlot, &prio_floor, &prio_floor_run_at) : DT_NOBEGIN;
	args[0] = Int32GetDatum(pg_async_batch_limit());
	args[1] = Int32GetDatum(MyProcPid);
	args[2] = Int64GetDatum((int64) pg_async_batch_max_bytes * 1024);
	args[3] = TimestampTzGetDatum(floor);
	args[4] = Int16GetDatum(prio_floor);
	args[5] = TimestampTzGetDatum(prio_floor_run_at);
	args[6] = Int32GetDatum(pg_async_max_depth);
	args[7] = TimestampTzGetDatum(claim_start);
	rc = SPI_execute_plan(limited ? claim_plan : claim_fast_plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "pg_async: claiming jobs failed: %s",
			 SPI_result_code_string(rc));

	n = (int) SPI_processed;

	/* perhaps a limit the cache has not heard of yet (see claim_fast_sql) */
	if (n == 0 && !limited)
		limits_known = false;

	if (n > 0)
	{
		HeapTuple	first = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d = SPI_getbinval(first, desc, 17, &isnull);

		if (!isnull)
			first_run_at = DatumGetTimestampTz(d);

		/*
		 * Jobs the walk locked but the claim left (past the byte limit or
		 * the allowance) were skipped by other claims meanwhile: they
		 * lower the floor again when this transaction commits.
		 */
		d = SPI_getbinval(first, desc, 18, &isnull);
		if (!isnull && DatumGetBool(d))
			pg_async_floor_note(first_run_at);

		/* jobs of a lower priority filled the batch before the walk began */
		d = SPI_getbinval(first, desc, 19, &isnull);
		walked = isnull || DatumGetBool(d);

		/* the same of the walks of jobs_priority_idx */
		d = SPI_getbinval(first, desc, 21, &isnull);
		if (!isnull)
		{
			prio_found = true;
			prio_first = DatumGetInt16(d);
			prio_first_run_at = DatumGetTimestampTz(SPI_getbinval(first, desc, 22, &isnull));
		}
		d = SPI_getbinval(first, desc, 23, &isnull);
		prio_walked_all = isnull || DatumGetBool(d);
		d = SPI_getbinval(first, desc, 24, &isnull);
		if (prio_found && !isnull && DatumGetBool(d))
			pg_async_priority_floor_note(prio_first, prio_first_run_at);

		copy_claimed_jobs(cxt, jobs_out, n, claim_start);
		if (limited)
			note_rate_starts(*jobs_out, n, claim_start);
	}

	/*
	 * The floors rise to the first job the walks found, or to now() if
	 * they found none (see raise_priority_floor for the priority floor).  A
	 * fast claim that claimed nothing may not have walked at all (a limit
	 * it had not heard of): it may raise the floors only if no function is
	 * paused or limited even now, in a later snapshot.  (One that was, and
	 * no longer is, was changed by a commit that lowered the floors to the
	 * start, and this claim's claim_low with them: enqueue.c's
	 * pg_async_functions_changed.)  That costs a statement, which an idle
	 * worker's claims spend only when they walked from the start (a
	 * sweep): between sweeps, the floors stay at the last jobs claimed.  A
	 * claim that did not walk jobs_ready_idx at all tells nothing of it.
	 */
	if (AsyncReadyFloor)
	{
		informed = n > 0 || limited || (floor == DT_NOBEGIN && !read_limits(false));
		if (informed)
			raise_priority_floor(prio_floor, prio_floor_run_at, prio_found, prio_first,
								 prio_first_run_at, prio_walked_all, claim_now);
		pg_async_floor_claim_end(MyAsyncSlot, walked && informed, first_run_at, claim_now);
	}

	if (n == 0)
	{
		/* in a new snapshot, for the same reasons as list_saturated's */
		/* from the floors as they are now, if a commit lowered them meanwhile */
		next_run_args[0] = TimestampTzGetDatum(AsyncReadyFloor ?
											   Min(floor, pg_async_floor_current()) : floor);
		if (AsyncReadyFloor)
			pg_async_priority_floor_current(&prio_floor, &prio_floor_run_at);
		next_run_args[1] = Int16GetDatum(prio_floor);
		next_run_args[2] = TimestampTzGetDatum(prio_floor_run_at);
		rc = SPI_execute_plan(next_run_plan, next_run_args, NULL, false, 1);
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
	pg_async_pop_planner_settings(save_nestlevel);
	return n;
}

/*
 * pg_async_claim_batch claims jobs in a transaction of its own: how an idle
 * worker starts.  *ready is false when pg_async is not installed here.
 */
int
pg_async_claim_batch(MemoryContext cxt, AsyncJob **jobs_out, TimestampTz *next_run_at,
					 bool *ready)
{
	int			n = 0;

	*jobs_out = NULL;
	*next_run_at = 0;

	pg_async_begin_work("pg_async: claiming jobs");
	*ready = pg_async_extension_ready();
	if (*ready)
		n = pg_async_claim_jobs(cxt, jobs_out, next_run_at);

	/*
	 * The handlers need not wait for this commit to reach the disk: each
	 * writes its in-flight marker first, which tells after a crash restart
	 * which job ran even if the claim was lost (inflight.c).  The batch's
	 * own commit, when synchronous, makes the claim durable.
	 */
	if (n > 0 && pg_async_inflight_available())
		pg_async_commit_without_flush();
	pg_async_commit_batch();
	return n;
}

/*
 * pg_async_note_reservations_released notes that the current transaction
 * finished or gave back jobs with a reservation in async.running: its
 * commit may give their limits room again.
 */
void
pg_async_note_reservations_released(void)
{
	reservations_released = true;
}

/*
 * pg_async_commit_batch commits a transaction that claimed jobs, ran them
 * or both, then tells other processes what it did to the concurrency
 * limits (see reservations_released) and notes whether its claim is on
 * disk yet (inflight.c).
 */
void
pg_async_commit_batch(void)
{
	pg_async_end_work();
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
	pg_async_inflight_note_commit();
}

/*
 * pg_async_claim_init sets up, once per worker, what keeps the claim's
 * plans right: the cache of whether limits exist, and the planner's floor
 * for the size of async.jobs.
 */
void
pg_async_claim_init(void)
{
	CacheRegisterRelcacheCallback(functions_changed, (Datum) 0);
	prev_get_relation_info_hook = get_relation_info_hook;
	get_relation_info_hook = jobs_rows_floor;
}
