/* pg_async--0.8--0.9.sql: update of pg_async from 0.8 to 0.9 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.9'" to load this file. \quit

/*
 * 0.9: priorities, and loop detection.  Each job has a priority (lower runs
 * first); an INSERT that names none takes its function's.  The claims walk
 * three indexes by priority: jobs_priority_idx (below 0), jobs_ready_idx
 * (0, now only those) and jobs_priority_idx again (above 0); the lanes of
 * limited and external functions are ordered by priority too.  The indexes
 * are built again: on a large queue, this update takes as long as building
 * them.  Each job also has a depth, and each function a max_depth, past
 * which a chain of events is stopped as a loop.
 */
ALTER TABLE async.jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
ALTER TABLE async.jobs ALTER COLUMN priority DROP DEFAULT;
COMMENT ON COLUMN async.jobs.priority IS 'lower runs first (ties by run_at, then id); an INSERT that gives none takes the function''s priority. Jobs of priority 0 wait in jobs_ready_idx, the others in jobs_priority_idx';
GRANT INSERT (priority) ON async.jobs TO PUBLIC;

ALTER TABLE async.functions ADD COLUMN priority smallint NOT NULL DEFAULT 0;
COMMENT ON COLUMN async.functions.priority IS 'priority of the jobs enqueued for the function without one (lower runs first)';

ALTER TABLE async.dead_letters ADD COLUMN priority smallint NOT NULL DEFAULT 0;
COMMENT ON COLUMN async.dead_letters.priority IS 'priority of the job, which async.redrive() gives it again';

/*
 * Loop detection: each job's depth in a chain of handlers and destinations
 * that enqueue each other, and each function's deepest (NULL:
 * pg_async.max_depth).
 */
ALTER TABLE async.jobs ADD COLUMN depth integer DEFAULT 0 NOT NULL;
COMMENT ON COLUMN async.jobs.depth IS 'how many events led to this one: 0 for an event enqueued outside the workers, one more than the event whose handler or destination enqueued it. Past the function''s max_depth (pg_async.max_depth) the event is dead-lettered with reason loop instead of running';
ALTER TABLE async.functions ADD COLUMN max_depth integer,
	ADD CONSTRAINT functions_max_depth_check CHECK (max_depth >= 1 AND max_depth <= 1000);
COMMENT ON COLUMN async.functions.max_depth IS 'deepest chain of events (async.jobs.depth) the function runs; a deeper event is dead-lettered with reason loop. NULL: pg_async.max_depth';
COMMENT ON COLUMN async.dead_letters.reason IS 'why the event died: exhausted (every attempt failed), expired (older than max_event_age when claimed), loop (deeper than its function''s max_depth: a chain of handlers or destinations that enqueue each other), unregistered (its function was unregistered with cancel_jobs), error (its failed attempt could not be recorded)';
COMMENT ON COLUMN async.attempt_log.outcome IS 'failed, crashed (the worker died while it ran), expired or loop (not run: deeper than max_depth); succeeded for attempts of jobs deleted by pg_async.retention while pg_async.attempts_retention was longer';
COMMENT ON COLUMN async.attempts.outcome IS 'succeeded, failed, crashed (the worker died while it ran), expired or loop (not run: deeper than max_depth)';

/* the counters gain loops_stopped */
DROP VIEW async.function_stats;
DROP FUNCTION async._function_stats();
-- @function async._function_stats(
COMMENT ON FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) IS 'internal: the shared-memory counters behind async.function_stats';
REVOKE ALL ON FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) TO pg_monitor;
CREATE VIEW async.function_stats AS
 SELECT s.function, s.received, s.started, s.succeeded, s.failed, s.retried,
	s.dead_lettered, s.duplicates_skipped, s.loops_stopped, s.duration_avg_ms,
	s.duration_p50_ms, s.duration_p95_ms, s.duration_max_ms, s.wait_avg_ms,
	s.wait_p50_ms, s.wait_p95_ms, s.wait_max_ms, s.stats_reset
   FROM async._function_stats() s(function, received, started, succeeded, failed, retried, dead_lettered, duplicates_skipped, loops_stopped, duration_avg_ms, duration_p50_ms, duration_p95_ms, duration_max_ms, wait_avg_ms, wait_p50_ms, wait_p95_ms, wait_max_ms, stats_reset);
GRANT SELECT ON async.function_stats TO pg_monitor;
COMMENT ON VIEW async.function_stats IS 'cumulative counters per function since stats_reset: received, started, succeeded, failed attempts, retried, dead-lettered, duplicates skipped (by async.invoke), loops stopped (events dead-lettered deeper than max_depth), handler duration and queue wait (from when the job became due to its start), in milliseconds; kept across clean restarts';

DROP INDEX async.jobs_ready_idx;
CREATE INDEX jobs_ready_idx ON async.jobs USING btree (run_at)
	WHERE priority = 0 AND finished_at IS NULL AND NOT paused AND NOT limited;
CREATE INDEX jobs_priority_idx ON async.jobs USING btree (priority, run_at)
	WHERE priority <> 0 AND finished_at IS NULL AND NOT paused AND NOT limited;
DROP INDEX async.jobs_limited_idx;
CREATE INDEX jobs_limited_idx ON async.jobs USING btree (function, priority, run_at)
	WHERE limited AND NOT paused AND finished_at IS NULL;

/* the entry points that take a priority now */
DROP FUNCTION async.invoke(text, jsonb, text, timestamp with time zone);
-- @function async.invoke(
COMMENT ON FUNCTION async.invoke(function text, payload jsonb, event_id text, run_at timestamp with time zone, priority integer) IS 'enqueues one event for a registered function and returns its event_id; with an event_id already taken it enqueues nothing and returns that id. priority (-32768 to 32767, lower runs first) defaults to the function''s';

-- @function async._priority(
COMMENT ON FUNCTION async._priority(p_priority integer) IS 'internal: p_priority as a job''s priority, or an error when it is out of range (-32768 to 32767); NULL stays NULL (the function''s priority)';

DROP FUNCTION async.invoke_many(text, jsonb[]);
-- @function async.invoke_many(
COMMENT ON FUNCTION async.invoke_many(function text, payloads jsonb[], priority integer) IS 'enqueues one event per payload for a registered function, in one statement; returns their event_ids. priority (lower runs first) defaults to the function''s';

DROP FUNCTION async.register(regprocedure, text, integer, interval[], interval, regrole, interval, integer, text, text);
-- @function@0.9 async.register(
COMMENT ON FUNCTION async.register(handler regprocedure, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer) IS 'registers handler (a function taking jsonb, or jsonb and async.context, not temporary) under name (default: the function''s name), or updates the registration; returns the name. The handler runs as run_as, by default its owner, which must have the privileges of run_as. Bounds: max_attempts 1 to 100, at most 100 retry_delays of 0 to 30 days each, timeout up to 1 day, max_event_age 1 second to 30 days, priority (of the jobs enqueued without one; lower runs first) -32768 to 32767, max_depth (the deepest chain of events it runs; NULL: pg_async.max_depth) 1 to 1000';

DROP FUNCTION async.register_external(text, integer, interval[], interval, regrole, interval, integer, text, text);
-- @function@0.9 async.register_external(
COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';

DROP FUNCTION async.configure(text, integer, interval[], interval, interval, integer, text, text);
-- @function@0.9 async.configure(
COMMENT ON FUNCTION async.configure(name text, max_attempts integer, retry_delays interval[], timeout interval, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer) IS 'changes some settings of a registration and keeps the others; concurrency -1 removes the limit, max_depth -1 goes back to pg_async.max_depth, on_success or on_failure '''' removes a destination. Needs the same rights as async.register().';

DROP FUNCTION async._upsert_registration(text, regprocedure, regrole, integer, interval[], interval, regrole, interval, integer, text, text);
-- @function@0.9 async._upsert_registration(
COMMENT ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer) IS 'internal: writes a registration for async.register()';
REVOKE ALL ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer) FROM PUBLIC;

/* the dead letters keep the priority; the external claims go by it */
-- @function async._destination(
-- @function@0.9 async._bury_jobs(
-- @function@0.9 async._fail(
-- @function async._redrive(
-- @function@0.9 async._claim_external(
-- @function@0.9 async._next_external_run(
-- @function@0.11 async.health(
-- @function async.metrics(
