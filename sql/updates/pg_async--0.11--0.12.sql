/* pg_async--0.11--0.12.sql: update of pg_async from 0.11 to 0.12 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.12'" to load this file. \quit

/*
 * 0.12: every database.  The workers serve the databases pg_async.databases
 * names ('*': every one with the extension), and async.health() asks the
 * library whether this one is among them.
 */
CREATE FUNCTION async._database_served() RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'pg_async_database_served_sql';
COMMENT ON FUNCTION async._database_served() IS 'internal: whether pg_async.databases and pg_async.database have the workers serve this database';

COMMENT ON FUNCTION async._check_setup() IS 'internal: warns when pg_async is not in shared_preload_libraries or its settings leave this database out, and has the launcher look at this database at commit';

-- @function async.health(
