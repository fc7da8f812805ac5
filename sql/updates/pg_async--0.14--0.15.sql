/* pg_async--0.14--0.15.sql: update of pg_async from 0.14 to 0.15 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.15'" to load this file. \quit

/*
 * 0.15: a claim can be a HOT update again.  Since 0.11 the predicate of
 * jobs_keyed_idx named state, which every claim changes, so that no claim
 * of any job could be a HOT update: each wrote a new entry into every
 * index of async.jobs.  The index now keeps the running jobs of keyed
 * functions too, until they finish, and the statements that walk it say
 * finished_at IS NULL, which its predicate now names.  Building the index
 * reads async.jobs once and holds off enqueues meanwhile.
 */
DROP INDEX async.jobs_keyed_idx;
CREATE INDEX jobs_keyed_idx ON async.jobs USING btree (function, key, priority, run_at) WHERE ((key IS NOT NULL) AND (NOT paused) AND (finished_at IS NULL));
COMMENT ON INDEX async.jobs_keyed_idx IS 'the queued and running jobs of functions with a concurrency_key, by key: the claims visit the keys in turn.  Its predicate does not name limited, so that no claim of a key can take jobs_limited_idx for it, nor state, so that a claim can be a HOT update';

-- @function async._keyed_jobs(
-- @function async._unpause_jobs(
