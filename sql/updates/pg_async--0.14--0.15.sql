/* pg_async--0.14--0.15.sql: update of pg_async from 0.14 to 0.15 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.15'" to load this file. \quit

/*
 * 0.15: a claim can be a HOT update again.  Since 0.11 the predicate of
 * jobs_keyed_idx named state, which every claim changes, so that no claim
 * of any job could be a HOT update: each wrote a new entry into every
 * index of async.jobs.  The predicate now names finished_at instead, as
 * the statements that walk the index do; a worker's claim clears the key
 * of a keyed job, which takes it out of the index (async.running keeps
 * the key, and async._succeed gives it back; a retry computes it again),
 * and a consumer's claim leaves it there, passed by its state.
 * The new index is built before the old one is dropped: the build reads
 * async.jobs once and holds off its writes, not its reads, and the table
 * is locked whole only from the drop to the end of the update.
 */
CREATE INDEX jobs_keyed_idx_015 ON async.jobs USING btree (function, key, priority, run_at) WHERE ((key IS NOT NULL) AND (NOT paused) AND (finished_at IS NULL));
DROP INDEX async.jobs_keyed_idx;
ALTER INDEX async.jobs_keyed_idx_015 RENAME TO jobs_keyed_idx;
COMMENT ON INDEX async.jobs_keyed_idx IS 'the queued jobs of functions with a concurrency_key, and those a consumer runs (a worker''s claim clears the key), by key: the claims visit the keys in turn.  Its predicate does not name limited, so that no claim of a key can take jobs_limited_idx for it, nor state, so that a claim can be a HOT update';

COMMENT ON COLUMN async.jobs.key IS 'for a function with a concurrency_key, the value of that key in the payload as text (the empty string when it is missing or null; the md5 of a value longer than 200 bytes): its jobs wait in jobs_keyed_idx by key. NULL for the other functions, and while a worker runs the job (its row in async.running keeps the key, and gives it back when the job ends or is queued again). Set by pg_async, not by the INSERT';

COMMENT ON COLUMN async.running.key IS 'the job''s key, for a function with a concurrency_key: claims count the running jobs of each key. A worker''s claim clears async.jobs.key, and the job gets this one back when it ends';

-- @function async._keyed_jobs(
-- @function async._unpause_jobs(
-- @function async._succeed(
-- @function async._fail(
-- @function async._bury_jobs(
