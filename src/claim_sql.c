/*-------------------------------------------------------------------------
 *
 * claim_sql.c
 *	  The statements of the claim (claim.c), each built from the parts
 *	  below: the walks of the ready jobs by priority, the lanes of limited
 *	  functions, the limits and their allowances, and the update that
 *	  marks the picked jobs 'running'.  Every name is schema-qualified and
 *	  every operator is written OPERATOR(pg_catalog.x): the workers run
 *	  them with any search_path a role may have set.
 *
 * IDENTIFICATION
 *	  src/claim_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "worker_internal.h"

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
 *
 * The update changes no column an index of async.jobs names, in its key
 * or its predicate, for the jobs of a function without a limit (no key,
 * not marked limited) and for those of a function with a concurrency_key
 * (they keep both): their claim is a HOT update.  A running keyed job so
 * stays in jobs_keyed_idx, as a consumer's does, and the keys' scans pass
 * it by its state; since the claims share one cursor (keys.c), a claim
 * visits the keys no claim has visited for the longest time, whose jobs
 * have mostly ended.  (0.15 cleared the key instead, which took the job
 * out of the index but made the claim write an entry into every index.)
 * The jobs of a function with only a concurrency or rate limit are no
 * longer marked limited: every way back to the queue marks them again.
 */
/* the jobs the walks of jobs_priority_idx found */
#define PRIORITY_FOUND \
"(SELECT u.priority, u.run_at FROM urgent u UNION ALL SELECT l.priority, l.run_at FROM later l)"

#define CLAIM_UPDATE \
" UPDATE async.jobs j" \
"    SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1," \
"        started_at = $8, worker_pid = $2, suspect = false," \
"        limited = f.key_concurrency IS NOT NULL AND j.limited," \
"        key = CASE WHEN f.key_concurrency IS NOT NULL THEN j.key END" \
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
"           f.concurrency IS NOT NULL OR f.key_concurrency IS NOT NULL AS reserves," \
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
"           j.depth, COALESCE(f.max_depth, $7)," \
"           CASE WHEN f.rate_limit IS NOT NULL THEN EXTRACT(epoch FROM" \
"               async._rate_window(f.rate_period) OPERATOR(pg_catalog.-) f.rate_period)::pg_catalog.float8 END," \
"           CASE WHEN f.key_concurrency IS NOT NULL THEN p.key END AS key"

/* what each part of a claim reads of a job */
#define PART_COLUMNS \
" j.id, j.function, j.suspect, j.run_at, j.priority, j.key," \
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
 * The functions that are paused or have a concurrency, key or rate limit:
 * whether there is any decides between the two claims.  External functions are left out:
 * their jobs are never in jobs_ready_idx, and only consumers claim them
 * (external.c).
 */
#define LIMITED_FUNCTIONS \
" async.functions f" \
" WHERE (f.paused OR f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL" \
"        OR f.key_concurrency IS NOT NULL)" \
"   AND f.handler IS NOT NULL"

/*
 * The CTE limits: each such function, and how many more of its jobs may
 * start at time 'at' (allowance, NULL without a limit): within its
 * concurrency limit, counting its reservations in async.running (room),
 * and within its rate limit, counting the starts of the window that ends
 * at 'at' (async.rate_windows).  room_at: when a full rate limit has room
 * again.  A limit by key is applied key by key (async._keyed_jobs); after:
 * the jobs of such a function that wait for time, not for room, are those
 * due after 'at'.  The running jobs are counted only for a concurrency
 * limit, and once: OFFSET 0 keeps the planner from pulling the subquery
 * up, which would count them again for allowance (and the rate window
 * too).
 */
#define LIMITS_CTE(at) \
" limits AS MATERIALIZED (" \
"  SELECT l.*, LEAST(l.room, l.rate_limit OPERATOR(pg_catalog.-) l.rate_used) AS allowance" \
"    FROM (SELECT f.name, f.paused, f.concurrency, f.rate_limit," \
"                 f.concurrency_key, f.key_concurrency," \
"                 CASE WHEN f.key_concurrency IS NOT NULL THEN " at \
"                      ELSE '-infinity'::pg_catalog.timestamptz END AS after," \
"                 CASE WHEN f.concurrency IS NOT NULL" \
"                      THEN f.concurrency OPERATOR(pg_catalog.-)" \
"                        (SELECT pg_catalog.count(*)::pg_catalog.int4 FROM async.running r" \
"                          WHERE r.function OPERATOR(pg_catalog.=) f.name) END AS room," \
"                 CASE WHEN f.rate_limit IS NOT NULL" \
"                      THEN async._rate_used(f.name, f.rate_period, " at ") END AS rate_used," \
"                 CASE WHEN f.rate_limit IS NOT NULL" \
"                      THEN async._rate_room_at(f.name, " at ") END AS room_at" \
"            FROM" LIMITED_FUNCTIONS " OFFSET 0) l)"

/*
 * the jobs of paused or saturated functions, which the full claim leaves;
 * but not those of a function with a concurrency_key: in these indexes
 * they are jobs scheduled for later (enqueue.c, unkey_scheduled), which
 * the claim that finds them due keys (rekeyed) whatever the limits, so
 * that none lies in the walks' way
 */
#define NOT_HELD \
"j.function OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT l.name FROM limits l" \
"   WHERE (l.paused OR l.allowance OPERATOR(pg_catalog.<=) 0)" \
"     AND l.key_concurrency IS NULL))"

/* a queued job in the lane of limited function l, in jobs_limited_idx */
#define LANE_JOB \
" j.function OPERATOR(pg_catalog.=) l.name" \
" AND j.limited AND NOT j.paused AND j.finished_at IS NULL" \
" AND j.state OPERATOR(pg_catalog.=) 'queued'"

/*
 * A part of the lanes: for each limited function with room left and no
 * concurrency_key, its ready jobs whose priority passes test, in the given
 * order, up to limit, in the function's range of jobs_limited_idx.  As in
 * READY_PARTS, three parts by priority each take what the ones before left.
 */
#define LANE_PART(name, test, order, limit) \
" " name " AS (" \
"  SELECT c.* FROM limits l CROSS JOIN LATERAL (" \
"    SELECT" PART_COLUMNS " FROM async.jobs j" \
"     WHERE" LANE_JOB " AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()" \
"       AND j.priority " test \
"     ORDER BY " order " LIMIT " limit \
"       FOR UPDATE SKIP LOCKED) c" \
"   WHERE NOT l.paused AND l.allowance OPERATOR(pg_catalog.>) 0" \
"     AND l.key_concurrency IS NULL),"

/*
 * The lane of each function with a concurrency_key and room left: its keys
 * visited in turn from where the last claim of it stopped, each
 * giving what it has room for (async._keyed_jobs; claim.c moves the cursor
 * on, from the keys of the jobs claimed).
 */
#define LANE_KEYED \
" lane_keyed AS (" \
"  SELECT c.* FROM limits l CROSS JOIN LATERAL" \
"         async._keyed_jobs(l.name, l.key_concurrency," \
"                           COALESCE(LEAST(l.allowance, $1), $1), $8," \
"                           async._key_cursor(l.name)) c" \
"   WHERE NOT l.paused AND l.key_concurrency IS NOT NULL" \
"     AND COALESCE(l.allowance, 1) OPERATOR(pg_catalog.>) 0),"

#define LANE_ALLOWANCE "LEAST(l.allowance, $1)"
#define LANE_TAKEN(part) \
" OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM " part " t" \
"   WHERE t.function OPERATOR(pg_catalog.=) l.name)"

/*
 * A row of the full claim that is no job (its id is NULL), as many columns
 * as CLAIM_UPDATE returns: the claim keyed jobs it found due and claimed
 * none (claim.c claims again at once).
 */
#define CLAIM_NO_JOB \
"NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL," \
" NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL," \
" NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"

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
 * too, but one of a function with a concurrency_key is not taken: it has
 * no key yet, and the claim marks it and gives it its key (rekeyed).  So
 * are the jobs of such a function that were scheduled for later, which
 * wait unkeyed until they are due (enqueue.c, unkey_scheduled).  No job of
 * such a function is taken from those walks, whatever key it has: only
 * the walk of its keys counts their room.
 * Claimed jobs of functions with a concurrency or key limit are recorded
 * in async.running, which the next claim counts: those the update claimed,
 * not all that were picked.  The walk of the keys is a PL/pgSQL function
 * whose queries take newer snapshots than the claim's, so it can lock and
 * return a job committed after the claim began (one enqueued by a
 * transaction that began before it, so due), which the update does not
 * see: reserved, such a job stayed queued and its key full for good (up
 * to 0.17).  It is left locked, for the next claim.  Every part goes by
 * priority, then run_at.
 */
const char *const pg_async_claim_sql =
"WITH" LIMITS_CTE("$8") ","
READY_PARTS(NOT_HELD)
LANE_PART("lane_urgent", "OPERATOR(pg_catalog.<) 0", "j.priority, j.run_at", LANE_ALLOWANCE)
LANE_PART("lane_ready", "OPERATOR(pg_catalog.=) 0", "j.run_at",
		  LANE_ALLOWANCE LANE_TAKEN("lane_urgent"))
LANE_PART("lane_later", "OPERATOR(pg_catalog.>) 0", "j.priority, j.run_at",
		  LANE_ALLOWANCE LANE_TAKEN("lane_urgent") LANE_TAKEN("lane_ready"))
LANE_KEYED
" rekeyed AS ("
"  UPDATE async.jobs j SET limited = true,"
"         key = async._key_value(j.payload, l.concurrency_key)"
"    FROM (" READY_UNION ") c JOIN limits l ON l.name OPERATOR(pg_catalog.=) c.function"
"   WHERE j.id OPERATOR(pg_catalog.=) c.id AND l.concurrency_key IS NOT NULL"
"  RETURNING j.id),"
" allowed AS ("
"  SELECT c.id, c.function, c.suspect, c.run_at, c.priority, c.key, c.bytes, c.ready, c.prio,"
"         l.concurrency, l.key_concurrency FROM ("
"         SELECT c.*, pg_catalog.row_number() OVER (PARTITION BY c.function"
"                                                    ORDER BY c.priority, c.run_at, c.id) AS nth"
"           FROM (" READY_UNION
"                 UNION ALL SELECT *, false, false FROM lane_urgent"
"                 UNION ALL SELECT *, false, false FROM lane_ready"
"                 UNION ALL SELECT *, false, false FROM lane_later"
"                 UNION ALL SELECT *, false, false FROM lane_keyed) c) c"
"    LEFT JOIN limits l ON l.name OPERATOR(pg_catalog.=) c.function"
"   WHERE (l.allowance IS NULL OR c.nth OPERATOR(pg_catalog.<=) l.allowance)"
"     AND (l.key_concurrency IS NULL OR NOT (c.ready OR c.prio))"
"   ORDER BY c.priority, c.run_at, c.id LIMIT $1),"
CLAIM_WITHIN_BYTES("allowed")
" picked AS ("
"  SELECT a.id, a.function, a.concurrency, a.key_concurrency, a.key, a.ready, a.prio"
"    FROM within_bytes a"
"   WHERE NOT EXISTS (SELECT FROM allowed s WHERE s.suspect)"
"  UNION ALL"
"  (SELECT s.id, s.function, s.concurrency, s.key_concurrency, s.key, s.ready, s.prio"
"     FROM allowed s WHERE s.suspect LIMIT 1)),"
" claimed AS (" CLAIM_UPDATE "),"
" reserved AS ("
"  INSERT INTO async.running (job_id, function, key)"
"  SELECT c.id, c.function, c.key FROM claimed c WHERE c.reserves)"
" SELECT * FROM claimed"
" UNION ALL"
" SELECT " CLAIM_NO_JOB
"  WHERE NOT EXISTS (SELECT FROM claimed) AND EXISTS (SELECT FROM rekeyed)";

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
const char *const pg_async_claim_fast_sql =
"WITH"
READY_PARTS("NOT EXISTS (SELECT FROM" LIMITED_FUNCTIONS ")")
" ready AS (" READY_UNION "),"
CLAIM_WITHIN_BYTES("ready")
" picked AS ("
"  SELECT c.id, c.function, c.key, c.ready, c.prio FROM within_bytes c"
"   WHERE NOT EXISTS (SELECT FROM ready s WHERE s.suspect)"
"  UNION ALL"
"  (SELECT s.id, s.function, s.key, s.ready, s.prio FROM ready s WHERE s.suspect LIMIT 1))"
CLAIM_UPDATE;

/*
 * The functions at their concurrency limit, after a full claim: their
 * reservations, this claim's among them, leave no room; and those whose
 * rate limit is full, with the time its window has room again (NULL for
 * the others: a commit, not time, gives them room).  Paused ones and
 * those held at 0 are left out: their enqueues wake nobody anyway.
 */
const char *const pg_async_saturated_sql =
"WITH" LIMITS_CTE("pg_catalog.clock_timestamp()")
" SELECT l.name,"
"        CASE WHEN l.concurrency OPERATOR(pg_catalog.>) 0"
"                  AND l.room OPERATOR(pg_catalog.<=) 0 THEN NULL"
"             ELSE l.room_at END"
"   FROM limits l"
"  WHERE NOT l.paused AND l.concurrency IS DISTINCT FROM 0"
"    AND ((l.concurrency OPERATOR(pg_catalog.>) 0 AND l.room OPERATOR(pg_catalog.<=) 0)"
"         OR l.room_at IS NOT NULL)"
"  LIMIT " CppAsString2(ASYNC_MAX_SATURATED);

/* whether the full claim is needed: some function is paused or limited */
const char *const pg_async_limits_sql =
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
 * waiting has room again.  A due job of a function with a concurrency_key
 * waits for its key to have room, which only the finish of a job of that
 * key gives, and the worker that finishes it claims again: so for those
 * functions only the jobs due later count.  The first of jobs_ready_idx is
 * the first entry that passes the filters, in the index's order: as min()
 * the planner read the whole range, and 100,000 jobs scheduled for later
 * made each idle worker's look cost 25 ms (0.22).
 */
const char *const pg_async_next_run_sql =
"WITH" LIMITS_CTE("pg_catalog.clock_timestamp()")
" SELECT LEAST("
"  (SELECT j.run_at FROM async.jobs j"
"    WHERE" WAITING_JOB " AND j.priority OPERATOR(pg_catalog.=) 0"
"      AND j.run_at OPERATOR(pg_catalog.>=) $1"
"    ORDER BY j.run_at LIMIT 1),"
"  (SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"    WHERE" WAITING_JOB " AND j.priority OPERATOR(pg_catalog.<>) 0"
"      AND (j.priority, j.run_at) OPERATOR(pg_catalog.>=) ($2, $3)),"
"  (SELECT pg_catalog.min(x.run_at) FROM limits l CROSS JOIN LATERAL ("
"     SELECT j.run_at FROM async.jobs j"
"      WHERE" LANE_JOB " AND j.priority OPERATOR(pg_catalog.=) 0"
"        AND j.run_at OPERATOR(pg_catalog.>) l.after"
"      ORDER BY j.run_at LIMIT 1) x"
"    WHERE NOT l.paused AND COALESCE(l.allowance, 1) OPERATOR(pg_catalog.>) 0),"
"  (SELECT pg_catalog.min(x.run_at) FROM limits l CROSS JOIN LATERAL ("
"     SELECT pg_catalog.min(j.run_at) AS run_at FROM async.jobs j"
"      WHERE" LANE_JOB " AND j.priority OPERATOR(pg_catalog.<) 0"
"        AND j.run_at OPERATOR(pg_catalog.>) l.after"
"     UNION ALL"
"     SELECT pg_catalog.min(j.run_at) FROM async.jobs j"
"      WHERE" LANE_JOB " AND j.priority OPERATOR(pg_catalog.>) 0"
"        AND j.run_at OPERATOR(pg_catalog.>) l.after) x"
"    WHERE NOT l.paused AND COALESCE(l.allowance, 1) OPERATOR(pg_catalog.>) 0),"
"  (SELECT pg_catalog.min(l.room_at) FROM limits l"
"    WHERE NOT l.paused AND l.room_at IS NOT NULL"
"      AND EXISTS (SELECT FROM async.jobs j WHERE" LANE_JOB ")))";

/*
 * The first job of jobs_priority_idx after ($1, $2), of a priority below
 * $3, that is scheduled after $2: the priority floor may rise past no such
 * job (see raise_priority_floor).  Jobs a claim could not see may be found
 * (the statement takes a new snapshot), which only holds the floor lower.
 */
const char *const pg_async_scheduled_sql =
"SELECT j.priority, j.run_at FROM async.jobs j"
" WHERE j.priority OPERATOR(pg_catalog.<>) 0 AND j.finished_at IS NULL"
"   AND NOT j.paused AND NOT j.limited AND j.state OPERATOR(pg_catalog.=) 'queued'"
"   AND (j.priority, j.run_at) OPERATOR(pg_catalog.>) ($1, $2)"
"   AND j.priority OPERATOR(pg_catalog.<) $3 AND j.run_at OPERATOR(pg_catalog.>) $2"
" ORDER BY j.priority, j.run_at LIMIT 1";
