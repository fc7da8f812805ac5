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
