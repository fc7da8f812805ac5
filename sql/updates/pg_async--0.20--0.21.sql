/* pg_async--0.20--0.21.sql: update of pg_async from 0.20 to 0.21 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.21'" to load this file. \quit

/*
 * 0.21 changes no SQL object.  Its library keeps finished jobs past
 * pg_async.retention while the xmin horizon is held (src/maintenance.c),
 * and deletes them once the rows it deleted last can be removed.
 */
