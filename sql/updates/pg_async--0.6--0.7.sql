/* pg_async--0.6--0.7.sql: update of pg_async from 0.6 to 0.7 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.7'" to load this file. \quit

/*
 * 0.7: the failed, crashed and expired attempts are part of a job's
 * history, and pg_dump keeps them with the jobs (a dump restored into a
 * new major version showed jobs and dead letters without their attempts).
 */
SELECT pg_catalog.pg_extension_config_dump('async.attempt_log', '');

/*
 * async.health() on a standby says that it is one.  Its launcher starts
 * only once recovery ends, so its "workers" check said that no launcher
 * runs, with a hint to add pg_async to shared_preload_libraries.
 */
-- @function async.health(
