/* pg_async--0.7--0.8.sql: update of pg_async from 0.7 to 0.8 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.8'" to load this file. \quit

/*
 * 0.8: external functions, whose jobs consumers outside the server run
 * (async.register_external, async.claim, async.complete, async.fail,
 * async.heartbeat).  Their registration has no handler; their claimed
 * jobs hold a lease, with its deadline, in async.running.
 */
ALTER TABLE async.functions ALTER COLUMN handler DROP NOT NULL;

COMMENT ON TABLE async.functions IS 'pg_async registrations: which SQL function (handler) runs for a function name, or that consumers outside the server run its jobs, as which role, with which retry policy. Written by async.register(), async.register_external() and async.unregister().';
COMMENT ON COLUMN async.functions.handler IS 'the handler function, bound by OID, or NULL for an external function (async.register_external), whose jobs consumers claim: one dropped and created again, by anyone, is not it, and the jobs then fail until the function is registered again. pg_dump writes it as a signature, which a restore binds again';
COMMENT ON COLUMN async.functions.run_as IS 'role the handler runs as; for an external function, the role whose privileges claiming and enqueueing its jobs need';

ALTER TABLE async.running ADD COLUMN lease uuid, ADD COLUMN deadline timestamp with time zone;

COMMENT ON TABLE async.running IS 'internal: the claimed, unfinished jobs of functions with a concurrency limit, and of external functions; claims count them under one lock';
COMMENT ON COLUMN async.running.lease IS 'the lease of a job claimed with async.claim(): async.complete(), async.fail() and async.heartbeat() act only with it; NULL for a worker''s claim';
COMMENT ON COLUMN async.running.deadline IS 'when the lease of an external job expires: its attempt then fails with "lease expired"';
SELECT pg_catalog.pg_extension_config_dump('async.running', 'WHERE lease IS NOT NULL');

/* the internal functions behind them, run as the extension's owner */
-- @function@0.8 async._claim_external(
COMMENT ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint) IS 'internal: the claim behind async.claim(): marks up to p_max ready jobs of an external function running and gives each a lease; a job older than max_event_age is dead-lettered instead, and returned without a lease, with the reason in expired';
REVOKE ALL ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint) FROM PUBLIC;

-- @function@0.13 async._complete_external(
COMMENT ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint) IS 'internal: the writes behind async.complete() and async.complete_many(): the jobs whose lease is still theirs succeed with their results';
REVOKE ALL ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint) FROM PUBLIC;

-- @function async._expire_leases(
COMMENT ON FUNCTION async._expire_leases() IS 'internal: fails the attempts of external jobs whose lease expired, for the worker of slot 0; returns how many';
REVOKE ALL ON FUNCTION async._expire_leases() FROM PUBLIC;

-- @function async._expired_leases(
COMMENT ON FUNCTION async._expired_leases(p_function text, p_limit integer) IS 'internal: leases of external jobs past their deadline (of one function, or all), locked, for their attempts to be failed';
REVOKE ALL ON FUNCTION async._expired_leases(p_function text, p_limit integer) FROM PUBLIC;

-- @function async._fail_external(
COMMENT ON FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) IS 'internal: the writes behind async.fail() and the expiry of leases: a failed attempt of a job whose lease is still its own, recorded, then retried (after p_retry_after if given) or dead-lettered';
REVOKE ALL ON FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) FROM PUBLIC;

-- @function async._heartbeat_external(
COMMENT ON FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) IS 'internal: the write behind async.heartbeat(): the deadline of a lease that is still the job''s moves to now plus the function''s timeout';
REVOKE ALL ON FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) FROM PUBLIC;

-- @function async._lease_roles(
COMMENT ON FUNCTION async._lease_roles(p_ids bigint[]) IS 'internal: the functions of the leased jobs among p_ids, and the roles whose privileges finishing them needs';
REVOKE ALL ON FUNCTION async._lease_roles(p_ids bigint[]) FROM PUBLIC;

-- @function@0.8 async._next_external_run(
COMMENT ON FUNCTION async._next_external_run(p_function text) IS 'internal: when the next queued job of an external function is due, for async.claim() to wake then';
REVOKE ALL ON FUNCTION async._next_external_run(p_function text) FROM PUBLIC;

/* the API of consumers */
-- @function@0.8 async.register_external(
COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';

-- @function async.claim(
COMMENT ON FUNCTION async.claim(function text, max_jobs integer, wait interval) IS 'claims up to max_jobs (1 to 1000) ready jobs of an external function, in run_at order, each running until its deadline under a lease that async.complete(), async.fail() and async.heartbeat() need; with nothing ready, waits up to wait (at most 1 hour) for an enqueue of the function to commit. Needs the privileges of the function''s run_as role';

-- @function async.complete(
COMMENT ON FUNCTION async.complete(job_id bigint, lease uuid, result jsonb) IS 'a claimed job succeeded, with result (passed to on_success); false, and nothing changed, when the lease is no longer the job''s. Commits or rolls back with the caller''s transaction';

-- @function async.complete_many(
COMMENT ON FUNCTION async.complete_many(job_ids bigint[], leases uuid[], results jsonb[]) IS 'async.complete() for up to 10000 claimed jobs at once, the arrays matched by position (results NULL: no results); returns how many of the leases were still their jobs'', which succeeded';

-- @function async.fail(
COMMENT ON FUNCTION async.fail(job_id bigint, lease uuid, error text, retry_after interval) IS 'a claimed job''s attempt failed with error: it is retried on the function''s schedule (after retry_after, 0 to 30 days, if given), or dead-lettered after max_attempts; false, and nothing changed, when the lease is no longer the job''s';

-- @function async.heartbeat(
COMMENT ON FUNCTION async.heartbeat(job_id bigint, lease uuid) IS 'a claimed job is still being worked on: its deadline moves to now plus the function''s timeout, and is returned; NULL, and nothing changed, when the lease is no longer the job''s';

/* async.configure changes an external function too */
-- @function@0.8 async.configure(

/* an external function can be a destination, and its dead letters redriven */
-- @function async._may_enqueue(
COMMENT ON FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) IS 'internal: whether a role (that still exists) may enqueue for a registration: EXECUTE on its handler, or for an external function the privileges of its run_as; for destinations and redrives, done by the workers and the owner for that role';
REVOKE ALL ON FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) FROM PUBLIC;
-- @function async._destination(
-- @function@0.8 async._redrive(

/*
 * The queued jobs of external functions are marked limited, like those of
 * limited functions, and keep the mark while they run: a failed attempt
 * marks its retry so, a limit lifted leaves it, the recovery of dead
 * workers' jobs passes over leases.
 */
-- @function@0.8 async._fail(
-- @function@0.9 async._functions_limit_changed(
-- @function@0.9 async._is_limited(
COMMENT ON FUNCTION async._is_limited(p_function text) IS 'internal: whether the queued jobs of a function are marked limited: it has a concurrency limit, or is external';
-- @function@0.12 async._recover(
