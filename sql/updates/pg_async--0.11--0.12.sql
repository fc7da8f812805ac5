/* pg_async--0.11--0.12.sql: update of pg_async from 0.11 to 0.12 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.12'" to load this file. \quit

/*
 * 0.12: every database, with workers on demand.  The workers serve the
 * databases pg_async.databases names ('*': every one with the extension),
 * leave a database with nothing to run, and wait for a slot when
 * pg_async.max_workers run elsewhere; async.health() asks the library
 * about this database.
 */
CREATE FUNCTION async._database_served() RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'pg_async_database_served_sql';
COMMENT ON FUNCTION async._database_served() IS 'internal: whether pg_async.databases and pg_async.database have the workers serve this database';
CREATE FUNCTION async._database_workers(OUT idle boolean, OUT waiting_since timestamp with time zone) RETURNS record
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_database_workers';
COMMENT ON FUNCTION async._database_workers(OUT idle boolean, OUT waiting_since timestamp with time zone) IS 'internal: whether this database is idle (its workers left, pg_async.worker_idle_timeout), and since when it has waited for a worker slot (pg_async.max_workers), NULL when it does not';

COMMENT ON FUNCTION async._check_setup() IS 'internal: warns when pg_async is not in shared_preload_libraries or its settings leave this database out, and has the launcher look at this database at commit';

-- @function async.health(

/*
 * async.pause() and async.configure() skip the queued jobs other
 * transactions hold instead of waiting for them: a worker finishing a job
 * it claimed meanwhile deadlocked with them.
 */
-- @function async._set_paused(
-- @function async._functions_limit_changed(
