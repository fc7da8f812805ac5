/* pg_async--0.19--0.20.sql: update of pg_async from 0.19 to 0.20 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.20'" to load this file. \quit

/*
 * 0.20: a consumer's completion is planned once per session.
 * async._complete_external() runs its statements, and those of
 * async._succeed() that it calls, with generic plans.  The server no
 * longer calls async._lease_roles(), but it stays for a server that still
 * runs the 0.19 library until its restart.
 */
-- @function async._complete_external(
