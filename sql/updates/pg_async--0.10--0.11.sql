/* pg_async--0.10--0.11.sql: update of pg_async from 0.10 to 0.11 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.11'" to load this file. \quit

/*
 * 0.11: limits by key.  A function's concurrency_key names a payload key,
 * such as tenant_id; at most key_concurrency of its jobs with one value of
 * it run at once, and the claims visit the values in turn.  Each queued
 * job of such a function carries its key (async.jobs.key) and waits in
 * jobs_keyed_idx; each running one has its key in async.running.
 */
ALTER TABLE async.functions
	ADD COLUMN concurrency_key text COLLATE pg_catalog."C",
	ADD COLUMN key_concurrency integer,
	ADD CONSTRAINT functions_concurrency_key_check CHECK (((concurrency_key <> ''::text) AND (octet_length(concurrency_key) <= 127) AND ((concurrency_key IS NULL) = (key_concurrency IS NULL)))),
	ADD CONSTRAINT functions_key_concurrency_check CHECK (((key_concurrency >= 1) AND (key_concurrency <= 10000)));
COMMENT ON COLUMN async.functions.concurrency_key IS 'a key of the payload, such as tenant_id: at most key_concurrency jobs with the same value of it run at once, and claims take the values in turn; NULL: no limit by key';
COMMENT ON COLUMN async.functions.key_concurrency IS 'most jobs of the function with the same value of concurrency_key running at once, across all workers and consumers';

ALTER TABLE async.jobs ADD COLUMN key text COLLATE pg_catalog."C";
COMMENT ON COLUMN async.jobs.key IS 'for a function with a concurrency_key, the value of that key in the payload as text (the empty string when it is missing or null; the md5 of a value longer than 200 bytes): its jobs wait in jobs_keyed_idx by key. NULL for the other functions. Set by pg_async, not by the INSERT';
ALTER TABLE async.running ADD COLUMN key text COLLATE pg_catalog."C";
COMMENT ON COLUMN async.running.key IS 'the job''s key (async.jobs.key), for a function with a concurrency_key: claims count the running jobs of each key';

CREATE INDEX jobs_keyed_idx ON async.jobs USING btree (function, key, priority, run_at) WHERE ((key IS NOT NULL) AND (state = 'queued'::text) AND (NOT paused));
COMMENT ON INDEX async.jobs_keyed_idx IS 'the queued jobs of functions with a concurrency_key, by key: the claims visit the keys in turn.  Its predicate does not name limited, so that no claim of a key can take jobs_limited_idx for it';
DROP INDEX async.running_function_idx;
CREATE INDEX running_function_idx ON async.running USING btree (function, key);

/* the key of a job, and where a session's claims stopped among the keys */
-- @function async._key_value(
-- @function async._job_key(
-- @function async._key_cursor(
-- @function async._advance_key_cursor(
-- @function async._keyed_jobs(
COMMENT ON FUNCTION async._key_value(p_payload jsonb, p_key text) IS 'internal: the value of payload key p_key as a job''s key: p_payload ->> p_key, the empty string when that is NULL, and ''md5:'' and the md5 of a value of more than 200 bytes';
COMMENT ON FUNCTION async._job_key(p_function text, p_payload jsonb) IS 'internal: the key (async.jobs.key) of a job of p_function with p_payload, by the function''s concurrency_key; NULL when it has none';
COMMENT ON FUNCTION async._key_cursor(p_function text) IS 'internal: the key of p_function this session''s last claim took jobs of last, after which its next claim goes on (NULL: from the first)';
COMMENT ON FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) IS 'internal: moves this session''s cursor among the keys of p_function past the keys of the jobs its claim took, p_keys: to the last of them in the order async._keyed_jobs visited them';
COMMENT ON FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) IS 'internal: locks up to p_max due jobs of a function with a concurrency_key for a claim, visiting its keys in turn from the one after p_from (the session''s cursor, async._key_cursor), and taking of each key no more than p_key_concurrency less its running jobs';
REVOKE ALL ON FUNCTION async._key_value(p_payload jsonb, p_key text) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._job_key(p_function text, p_payload jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._key_cursor(p_function text) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) FROM PUBLIC;

/* register, register_external, configure: concurrency_key and key_concurrency */
DROP FUNCTION async.configure(text, integer, interval[], interval, interval, integer, text, text, integer, integer, integer, interval);
DROP FUNCTION async.register(regprocedure, text, integer, interval[], interval, regrole, interval, integer, text, text, integer, integer, integer, interval);
DROP FUNCTION async.register_external(text, integer, interval[], interval, regrole, interval, integer, text, text, integer, integer, integer, interval);
DROP FUNCTION async._upsert_registration(text, regprocedure, regrole, integer, interval[], interval, regrole, interval, integer, text, text, smallint, integer, integer, interval);
-- @function async._upsert_registration(
-- @function async.register(
-- @function async.register_external(
-- @function async.configure(
REVOKE ALL ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval, p_concurrency_key text, p_key_concurrency integer) FROM PUBLIC;
COMMENT ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval, p_concurrency_key text, p_key_concurrency integer) IS 'internal: writes a registration for async.register()';
COMMENT ON FUNCTION async.register(handler regprocedure, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'registers handler (a function taking jsonb, or jsonb and async.context, not temporary) under name (default: the function''s name), or updates the registration; returns the name. The handler runs as run_as, by default its owner, which must have the privileges of run_as. Bounds: max_attempts 1 to 100, at most 100 retry_delays of 0 to 30 days each, timeout up to 1 day, max_event_age 1 second to 30 days, priority (of the jobs enqueued without one; lower runs first) -32768 to 32767, max_depth (the deepest chain of events it runs; NULL: pg_async.max_depth) 1 to 1000, rate_limit (the most jobs started in any window of rate_period; NULL: no limit) 1 to 10000, rate_period 10 milliseconds to 1 day, concurrency_key (a key of the payload; NULL: none) 1 to 127 bytes, and with it key_concurrency (the most jobs with the same value of that key running at once) 1 to 10000';
COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';
COMMENT ON FUNCTION async.configure(name text, max_attempts integer, retry_delays interval[], timeout interval, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'changes some settings of a registration and keeps the others; concurrency -1, rate_limit -1 and key_concurrency -1 (with its concurrency_key) remove those limits, max_depth -1 goes back to pg_async.max_depth, on_success or on_failure '''' removes a destination. Needs the same rights as async.register().';

/* a limit by key holds jobs as a concurrency limit does, key by key */
-- @function async._is_limited(
-- @function async._functions_limit_changed(
COMMENT ON FUNCTION async._is_limited(p_function text) IS 'internal: whether the queued jobs of a function are marked limited: it has a concurrency, key or rate limit, or is external';
COMMENT ON FUNCTION async._functions_limit_changed() IS 'internal: marks the queued jobs of a function that gets a concurrency, key or rate limit limited, gives them their key when its concurrency_key changes, and releases them when it loses its limits or its registration';
DROP TRIGGER functions_limit_changed ON async.functions;
CREATE TRIGGER functions_limit_changed AFTER INSERT OR DELETE OR UPDATE OF concurrency, rate_limit, concurrency_key, key_concurrency ON async.functions FOR EACH ROW EXECUTE FUNCTION async._functions_limit_changed();
-- @function async._unpause_jobs(
COMMENT ON FUNCTION async._unpause_jobs() IS 'internal: releases the paused jobs whose function is no longer paused, and the limited jobs whose function no longer has a concurrency limit (or either, no longer registered), and gives a queued job the key its function''s concurrency_key gives it when an enqueue that raced a change of it did not';

/* a job queued again takes its key again */
-- @function async._fail(
-- @function@0.12 async._recover(
-- @function async._redrive(
-- @function@0.13 async._claim_external(
-- @function async._next_external_run(
