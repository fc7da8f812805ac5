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
 * A job's run_at defaults to the time of its row's insertion, no longer to
 * the start of its transaction: the jobs of one transaction are due in the
 * order they were enqueued, each at its own time.  Jobs that share a
 * run_at cannot be told apart by the ready floor, and while the xmin
 * horizon was held, each claim of a batch enqueued in one transaction
 * walked the entries of every job of the batch already run.
 */
ALTER TABLE async.jobs ALTER COLUMN run_at SET DEFAULT pg_catalog.clock_timestamp();
-- @function@0.8 async.invoke(

/*
 * async.health() on a standby says that it is one.  Its launcher starts
 * only once recovery ends, so its "workers" check said that no launcher
 * runs, with a hint to add pg_async to shared_preload_libraries.
 */
-- @function@0.8 async.health(

/*
 * Periodic events through pg_cron: async.schedule() makes a pg_cron job
 * that enqueues an event at each tick, async.unschedule() removes it,
 * async.schedules lists them.  pg_cron stays optional: without it the
 * functions raise an error with a hint, and the view is empty.
 */
-- @function async._cron_unusable(
-- @function async._require_cron(
-- @function async._schedules(
-- @function async.schedule(
-- @function async.unschedule(

COMMENT ON FUNCTION async._cron_unusable() IS 'internal: why the caller cannot schedule through pg_cron (not installed, no usage of schema cron), or NULL when it can';
COMMENT ON FUNCTION async._require_cron() IS 'internal: raises an error with a hint when pg_cron is not installed in this database, or the caller may not use it';
COMMENT ON FUNCTION async._schedules() IS 'internal: the schedules of async.schedules, read from pg_cron; none without pg_cron';
COMMENT ON FUNCTION async.schedule(name text, schedule text, function text, payload jsonb) IS 'makes a pg_cron job, named async:<name>, that enqueues an event for the function at each tick of the schedule (a cron line, or pg_cron''s ''N seconds''), with event_id <name>:<tick time in UTC> so that a tick run twice enqueues once; it runs as you, with your right to enqueue. Scheduling again under the same name replaces the schedule. Returns the pg_cron job id';
COMMENT ON FUNCTION async.unschedule(name text) IS 'removes your schedule of that name (its pg_cron job); false when you have none';

CREATE VIEW async.schedules AS
 SELECT s.name, s.schedule, s.function, s.payload, s.active, s.jobid, s.username,
    s.last_start, s.last_end, s.last_status, s.last_message
   FROM async._schedules() s(name, schedule, function, payload, active, jobid, username, last_start, last_end, last_status, last_message);

COMMENT ON VIEW async.schedules IS 'the periodic events made with async.schedule(): yours (every role''s for a superuser), with the last run that pg_cron recorded; empty without pg_cron';

GRANT SELECT ON TABLE async.schedules TO PUBLIC;

/*
 * A full disk, or another error that says nothing of the job, no longer
 * makes recovery dead-letter the job it could not charge: it is left for
 * the next round.
 */
-- @function@0.12 async._recover(
