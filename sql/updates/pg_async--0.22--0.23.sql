/* pg_async--0.22--0.23.sql: update of pg_async from 0.22 to 0.23 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.23'" to load this file. \quit

/*
 * 0.23.  A queued job of a function with a concurrency_key (and a
 * handler) is keyed only once it is due: scheduled for later, it waits
 * unmarked and without a key, in jobs_ready_idx or jobs_priority_idx by
 * its run_at, and the claim that finds it due keys it (src/enqueue.c,
 * unkey_scheduled; src/claim_sql.c, rekeyed).  Keyed, such jobs lay in
 * jobs_keyed_idx among the due ones, and every claim's walk of the keys
 * passed them.  The library keys or unkeys a new job itself; this trigger
 * does the same, after the UPDATE, for a job that an UPDATE puts back in
 * the queue for later (a retry, keys given anew by a changed
 * registration), and marks a due job that has a key but no mark.
 * Not a BEFORE trigger: with one, every UPDATE of async.jobs locks each
 * row before writing it, the finish of every job included.
 */
CREATE TRIGGER jobs_schedule AFTER UPDATE ON async.jobs FOR EACH ROW
	WHEN (NEW.state = 'queued' AND NOT NEW.paused AND (NEW.limited OR NEW.key IS NOT NULL)
		  AND (NEW.run_at > now() OR (NEW.key IS NOT NULL AND NOT NEW.limited)))
	EXECUTE FUNCTION async._jobs_trigger();

-- the comment in the walk's body says what the keys' scans now pass
-- @function async._keyed_jobs(

/*
 * A function that keeps a concurrency or rate limit but loses its
 * concurrency_key marks its queued jobs limited, those scheduled for later
 * included, as a function newly limited does.
 */
-- @function async._functions_limit_changed(

/* the keyed jobs already scheduled for later wait as new ones do */
UPDATE async.jobs j SET limited = false, key = NULL
 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
   AND j.state OPERATOR(pg_catalog.=) 'queued'
   AND j.run_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
   AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
		 SELECT f.name FROM async.functions f
		  WHERE f.handler IS NOT NULL AND f.key_concurrency IS NOT NULL));
