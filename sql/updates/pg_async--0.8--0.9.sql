/* pg_async--0.8--0.9.sql: update of pg_async from 0.8 to 0.9 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.9'" to load this file. \quit

/*
 * 0.9: priorities.  Each job has one (lower runs first); an INSERT that
 * names none takes its function's.  The claims walk three indexes by
 * priority: jobs_priority_idx (below 0), jobs_ready_idx (0, now only those)
 * and jobs_priority_idx again (above 0); the lanes of limited and external
 * functions are ordered by priority too.  The indexes are built again: on
 * a large queue, this update takes as long as building them.
 */
ALTER TABLE async.jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0;
ALTER TABLE async.jobs ALTER COLUMN priority DROP DEFAULT;
COMMENT ON COLUMN async.jobs.priority IS 'lower runs first (ties by run_at, then id); an INSERT that gives none takes the function''s priority. Jobs of priority 0 wait in jobs_ready_idx, the others in jobs_priority_idx';
GRANT INSERT (priority) ON async.jobs TO PUBLIC;

ALTER TABLE async.functions ADD COLUMN priority smallint NOT NULL DEFAULT 0;
COMMENT ON COLUMN async.functions.priority IS 'priority of the jobs enqueued for the function without one (lower runs first)';

ALTER TABLE async.dead_letters ADD COLUMN priority smallint NOT NULL DEFAULT 0;
COMMENT ON COLUMN async.dead_letters.priority IS 'priority of the job, which async.redrive() gives it again';

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
-- @function async.register(
COMMENT ON FUNCTION async.register(handler regprocedure, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer) IS 'registers handler (a function taking jsonb, or jsonb and async.context, not temporary) under name (default: the function''s name), or updates the registration; returns the name. The handler runs as run_as, by default its owner, which must have the privileges of run_as. Bounds: max_attempts 1 to 100, at most 100 retry_delays of 0 to 30 days each, timeout up to 1 day, max_event_age 1 second to 30 days, priority (of the jobs enqueued without one; lower runs first) -32768 to 32767';

DROP FUNCTION async.register_external(text, integer, interval[], interval, regrole, interval, integer, text, text);
-- @function async.register_external(
COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';

DROP FUNCTION async.configure(text, integer, interval[], interval, interval, integer, text, text);
-- @function async.configure(
COMMENT ON FUNCTION async.configure(name text, max_attempts integer, retry_delays interval[], timeout interval, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer) IS 'changes some settings of a registration and keeps the others; concurrency -1 removes the limit, on_success or on_failure '''' removes a destination. Needs the same rights as async.register().';

DROP FUNCTION async._upsert_registration(text, regprocedure, regrole, integer, interval[], interval, regrole, interval, integer, text, text);
-- @function async._upsert_registration(
COMMENT ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint) IS 'internal: writes a registration for async.register()';
REVOKE ALL ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint) FROM PUBLIC;

/* the dead letters keep the priority; the external claims go by it */
-- @function async._bury_jobs(
-- @function async._fail(
-- @function async._redrive(
-- @function async._claim_external(
-- @function async._next_external_run(
-- @function async.health(
