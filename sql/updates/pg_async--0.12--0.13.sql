/* pg_async--0.12--0.13.sql: update of pg_async from 0.12 to 0.13 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.13'" to load this file. \quit

/*
 * 0.13: async.all_workers lists the workers of every database, with the
 * database each serves.
 */
-- @function async._all_workers(
COMMENT ON FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) IS 'internal: the worker slots of every database in shared memory, behind the view async.all_workers';
REVOKE ALL ON FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) TO pg_monitor;
-- @view async.all_workers AS
COMMENT ON VIEW async.all_workers IS 'one row per pg_async worker process of every database in the cluster: its database, idle or running, and what it runs now';
GRANT SELECT ON TABLE async.all_workers TO pg_monitor;

/*
 * A look for jobs of dead workers that leaves some (another
 * transaction holds them, or recovering them failed for a shortage) says
 * so, and the workers look again within a second or so instead of at
 * their next regular look (5 s or more, longer in a large backlog).
 */
-- @function async._recovery_incomplete(
COMMENT ON FUNCTION async._recovery_incomplete() IS 'internal: tells the worker that runs async._recover() that it left jobs of dead workers (held by another transaction, or failing for a shortage), so that it looks again soon';
REVOKE ALL ON FUNCTION async._recovery_incomplete() FROM PUBLIC;

-- @function async._recover(
