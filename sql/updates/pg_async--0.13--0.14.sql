/* pg_async--0.13--0.14.sql: update of pg_async from 0.13 to 0.14 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.14'" to load this file. \quit

/*
 * 0.14: loops through external functions are stopped too.  The events a
 * consumer's transaction enqueues are one deeper than the deepest job it
 * completes, so async._complete_external() returns the depth of the jobs
 * it completes; and a claim dead-letters an event deeper than its
 * function's max_depth with reason loop, as the workers do, so
 * async._claim_external() says which of the two reasons an unrun job has.
 * Both get another column: dropped and made again.
 */
DROP FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint);
DROP FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint);

-- @function async._claim_external(
COMMENT ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint, OUT reason text) IS 'internal: the claim behind async.claim(): marks up to p_max ready jobs of an external function running and gives each a lease; a job older than max_event_age, or deeper than max_depth, is dead-lettered instead, and returned without a lease, with the error in expired and the reason (expired or loop) in reason';
REVOKE ALL ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint, OUT reason text) FROM PUBLIC;

-- @function async._complete_external(
COMMENT ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint, OUT depth integer) IS 'internal: the writes behind async.complete() and async.complete_many(): the jobs whose lease is still theirs succeed with their results; returns the function, run time and depth of each';
REVOKE ALL ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint, OUT depth integer) FROM PUBLIC;

COMMENT ON COLUMN async.jobs.depth IS 'how many events led to this one: 0 for an event enqueued outside the workers, one more than the event whose handler or destination enqueued it, or than the deepest job of an external function that the enqueueing transaction completed. Past the function''s max_depth (pg_async.max_depth) the event is dead-lettered with reason loop instead of running';
