/* pg_async--0.21--0.22.sql: update of pg_async from 0.21 to 0.22 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.22'" to load this file. \quit

/*
 * 0.22.  Its library also checks a waiting claim's rights after each wait,
 * and tags the claim lock of a limited external function with the SHA-256
 * of its name (src/external.c); neither needs an SQL change.
 *
 * The walks of the keys in async._keyed_jobs list only the keys with a due
 * job: a role's jobs queued for later under many keys no longer make every
 * claim of the workers visit each of those keys.
 */
-- @function async._keyed_jobs(

/*
 * The functions of the rate windows are in PL/pgSQL, so that their plans
 * are kept for the session; as SQL functions they were parsed and planned
 * at each call, by every claim of the workers while any function had a
 * rate limit.  A consumer's wait reads the rate window only of a function
 * with a rate limit.  Same arguments, same results.
 */
-- @function async._rate_note(
-- @function async._rate_room_at(
-- @function async._rate_used(
-- @function async._next_external_run(
