/* pg_async--0.9--0.10.sql: update of pg_async from 0.9 to 0.10 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.10'" to load this file. \quit

/*
 * 0.10: each transition of a job is written in one place.  A job enters
 * the dead letters through async._dead_letter (new), from async._fail and
 * async._bury_jobs; it succeeds through async._succeed, which the workers
 * now call for every batch and async.complete() calls too.  Nothing a user
 * sees changes.
 */
-- @function async._dead_letter(

COMMENT ON FUNCTION async._dead_letter(p_job async.jobs, p_reason text) IS 'internal: the one place a job enters async.dead_letters: copies p_job, just made dead, with reason p_reason (exhausted, expired, loop, unregistered, error; see the column''s comment)';
REVOKE ALL ON FUNCTION async._dead_letter(p_job async.jobs, p_reason text) FROM PUBLIC;

-- @function async._bury_jobs(
-- @function async._fail(
-- @function async._succeed(
-- @function async._complete_external(

COMMENT ON FUNCTION async._succeed(p_ids bigint[], p_results jsonb[], p_destinations boolean, p_finished timestamp with time zone[], p_duration_us bigint[]) IS 'internal: the one place jobs succeed: marks jobs p_ids succeeded with their handlers'' results (or NULL), end and run times (NULL: now, since their claim), and enqueues their on_success records if p_destinations';
