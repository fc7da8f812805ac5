/* pg_async--0.18--0.19.sql: update of pg_async from 0.18 to 0.19 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.19'" to load this file. \quit

/*
 * 0.19: a consumer's claim and completion are planned once per session.
 * The statement of async._claim_external() takes a generic plan, and
 * updates the jobs it picked by their ids; it and
 * async._complete_external() run with enable_seqscan off.
 * async._next_external_run() is in PL/pgSQL, so that its plan is kept.
 * async._expired_leases() is no longer called (the server has a statement
 * of its own), but stays for a server that still runs the 0.18 library
 * until its restart.
 */
-- @function async._claim_external(
-- @function async._complete_external(
-- @function async._next_external_run(
