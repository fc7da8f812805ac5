/* pg_async--0.9--0.10.sql: update of pg_async from 0.9 to 0.10 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.10'" to load this file. \quit

/*
 * 0.10: rate limits, and each transition of a job written in one place.
 *
 * Rate limits: a function's rate_limit jobs at most start in any window of
 * its rate_period.  Its queued jobs wait in jobs_limited_idx as those of a
 * function with a concurrency limit do; the starts of the window are kept
 * in async.rate_windows.
 */
ALTER TABLE async.functions
	ADD COLUMN rate_limit integer,
	ADD COLUMN rate_period interval DEFAULT '00:00:01'::interval NOT NULL,
	ADD CONSTRAINT functions_rate_limit_check CHECK (((rate_limit >= 1) AND (rate_limit <= 10000))),
	ADD CONSTRAINT functions_rate_period_check CHECK (((rate_period >= '00:00:00.01'::interval) AND (rate_period <= '1 day'::interval)));
COMMENT ON COLUMN async.functions.rate_limit IS 'most jobs of the function started in any window of rate_period, across all workers and consumers; NULL: no limit';
COMMENT ON COLUMN async.functions.rate_period IS 'the window of rate_limit';

CREATE TABLE async.rate_windows (
    function text NOT NULL COLLATE pg_catalog."C",
    starts timestamp with time zone[] NOT NULL,
    counts integer[] NOT NULL
);
ALTER TABLE ONLY async.rate_windows
    ADD CONSTRAINT rate_windows_pkey PRIMARY KEY (function);
COMMENT ON TABLE async.rate_windows IS 'internal: for each function with a rate limit, the starts of its last rate_period: claims read and write it under the function''s claim lock';
COMMENT ON COLUMN async.rate_windows.starts IS 'when each claim of the window took jobs of the function, in order';
COMMENT ON COLUMN async.rate_windows.counts IS 'how many jobs each of those claims started';

-- @function async._rate_window(
-- @function async._rate_note(
-- @function async._rate_room_at(
-- @function async._rate_used(
COMMENT ON FUNCTION async._rate_note(p_functions text[], p_counts integer[], p_at timestamp with time zone) IS 'internal: records in async.rate_windows that a claim at p_at started p_counts[i] jobs of each rate-limited function p_functions[i]';
COMMENT ON FUNCTION async._rate_room_at(p_function text, p_at timestamp with time zone) IS 'internal: when the rate limit of p_function, full at p_at, has room again; NULL when it has room at p_at';
COMMENT ON FUNCTION async._rate_used(p_function text, p_period interval, p_at timestamp with time zone) IS 'internal: how many jobs of p_function started in the window of length p_period that ends at p_at';
COMMENT ON FUNCTION async._rate_window(p_period interval) IS 'internal: the window a rate limit counts its starts in: rate_period, and a tenth more (at most 100 ms) for the time from a claim to its handler''s start; PUBLIC may execute it, for async.stats';
REVOKE ALL ON FUNCTION async._rate_note(p_functions text[], p_counts integer[], p_at timestamp with time zone) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._rate_room_at(p_function text, p_at timestamp with time zone) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._rate_used(p_function text, p_period interval, p_at timestamp with time zone) FROM PUBLIC;

/* register, register_external, configure: rate_limit and rate_period */
DROP FUNCTION async.configure(text, integer, interval[], interval, interval, integer, text, text, integer, integer);
DROP FUNCTION async.register(regprocedure, text, integer, interval[], interval, regrole, interval, integer, text, text, integer, integer);
DROP FUNCTION async.register_external(text, integer, interval[], interval, regrole, interval, integer, text, text, integer, integer);
DROP FUNCTION async._upsert_registration(text, regprocedure, regrole, integer, interval[], interval, regrole, interval, integer, text, text, smallint, integer);
-- @function@0.10 async._upsert_registration(
-- @function@0.10 async.register(
-- @function@0.10 async.register_external(
-- @function@0.10 async.configure(
REVOKE ALL ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval) FROM PUBLIC;
COMMENT ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval) IS 'internal: writes a registration for async.register()';
COMMENT ON FUNCTION async.register(handler regprocedure, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval) IS 'registers handler (a function taking jsonb, or jsonb and async.context, not temporary) under name (default: the function''s name), or updates the registration; returns the name. The handler runs as run_as, by default its owner, which must have the privileges of run_as. Bounds: max_attempts 1 to 100, at most 100 retry_delays of 0 to 30 days each, timeout up to 1 day, max_event_age 1 second to 30 days, priority (of the jobs enqueued without one; lower runs first) -32768 to 32767, max_depth (the deepest chain of events it runs; NULL: pg_async.max_depth) 1 to 1000, rate_limit (the most jobs started in any window of rate_period; NULL: no limit) 1 to 10000, rate_period 10 milliseconds to 1 day';
COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';
COMMENT ON FUNCTION async.configure(name text, max_attempts integer, retry_delays interval[], timeout interval, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval) IS 'changes some settings of a registration and keeps the others; concurrency -1 and rate_limit -1 remove those limits, max_depth -1 goes back to pg_async.max_depth, on_success or on_failure '''' removes a destination. Needs the same rights as async.register().';

/* a rate limit holds jobs as a concurrency limit does */
-- @function@0.10 async._is_limited(
-- @function@0.10 async._functions_limit_changed(
COMMENT ON FUNCTION async._is_limited(p_function text) IS 'internal: whether the queued jobs of a function are marked limited: it has a concurrency or rate limit, or is external';
COMMENT ON FUNCTION async._functions_limit_changed() IS 'internal: marks the queued jobs of a function that gets a concurrency or rate limit limited, and releases them when it loses its limits or its registration';
DROP TRIGGER functions_limit_changed ON async.functions;
CREATE TRIGGER functions_limit_changed AFTER INSERT OR DELETE OR UPDATE OF concurrency, rate_limit ON async.functions FOR EACH ROW EXECUTE FUNCTION async._functions_limit_changed();
-- @function async.wait_idle(
COMMENT ON FUNCTION async.wait_idle(timeout interval) IS 'waits until no job that can run is ready or running (jobs of paused functions, of functions with concurrency 0, and of functions whose rate limit is full for now do not count); false when timeout passes first. Meant for tests and scripts; call it outside an explicit REPEATABLE READ transaction.';
-- @function@0.10 async._claim_external(
-- @function@0.10 async._next_external_run(
COMMENT ON FUNCTION async._next_external_run(p_function text) IS 'internal: when the next queued job of an external function is due, or its rate limit has room for it if later, for async.claim() to wake then';

-- @view async.stats WITH
COMMENT ON VIEW async.stats IS 'one row per function: jobs ready to run, scheduled for later (retries included), running, succeeded and dead, the age of the oldest ready job, and jobs held (due, but their function is paused, has concurrency 0, or has started as many jobs as its rate limit allows in the current window), with held_reason (paused, concurrency 0, rate limit; NULL when none is held); counts the jobs the caller may see';

/*
 * Each transition of a job is written in one place.  A job enters
 * the dead letters through async._dead_letter (new), from async._fail and
 * async._bury_jobs; it succeeds through async._succeed, which the workers
 * now call for every batch and async.complete() calls too.  Nothing a user
 * sees changes.
 */
-- @function async._dead_letter(

COMMENT ON FUNCTION async._dead_letter(p_job async.jobs, p_reason text) IS 'internal: the one place a job enters async.dead_letters: copies p_job, just made dead, with reason p_reason (exhausted, expired, loop, unregistered, error; see the column''s comment)';
REVOKE ALL ON FUNCTION async._dead_letter(p_job async.jobs, p_reason text) FROM PUBLIC;

-- @function@0.10 async._bury_jobs(
-- @function@0.10 async._fail(
-- @function@0.10 async._succeed(
-- @function@0.13 async._complete_external(

COMMENT ON FUNCTION async._succeed(p_ids bigint[], p_results jsonb[], p_destinations boolean, p_finished timestamp with time zone[], p_duration_us bigint[]) IS 'internal: the one place jobs succeed: marks jobs p_ids succeeded with their handlers'' results (or NULL), end and run times (NULL: now, since their claim), and enqueues their on_success records if p_destinations';
