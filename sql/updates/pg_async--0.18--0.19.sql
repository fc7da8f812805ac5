/* pg_async--0.18--0.19.sql: update of pg_async from 0.18 to 0.19 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.19'" to load this file. \quit

/*
 * 0.19: a consumer's claim is planned once per session.  The statement of
 * async._claim_external() takes a generic plan, and updates the jobs it
 * picked by their ids; the server looks for expired leases with a
 * statement of its own, so async._expired_leases() goes.
 */
-- @function async._claim_external(

DROP FUNCTION async._expired_leases(text, integer);
-- @function async._next_external_run(
-- @function async._complete_external(
