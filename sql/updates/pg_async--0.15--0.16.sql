/* pg_async--0.15--0.16.sql: update of pg_async from 0.15 to 0.16 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.16'" to load this file. \quit

/*
 * 0.16: one cursor among the keys of a keyed function for the whole
 * database, in shared memory, instead of one per session: a claim goes on
 * from where the last claim of the function stopped, by whichever worker
 * or consumer, and no longer visits the keys another worker has just
 * filled.  The functions are the same; their comments say so.  A batch
 * that ends no keyed job no longer looks its keys up (async._succeed).
 * A worker's claim of a keyed job keeps its key and limited, as a
 * consumer's does, and so is a HOT update (the claim is in the server's
 * code: the comments below say what it now does).  A job a worker of 0.15
 * claimed still gets its key back where it ends.  So that such a job,
 * running when pg_dump ran, is recovered after a restore as a job of a
 * dead worker, the dump keeps every reservation, not only the leases;
 * async.wait_idle() counts it while its function is held; and a change of
 * concurrency_key leaves its row alone (only its reservation gets the
 * new key), so that the worker finishing it does not wait on the change.
 */
SELECT pg_catalog.pg_extension_config_dump('async.running', '');
COMMENT ON FUNCTION async._key_cursor(p_function text) IS 'internal: the key of p_function the last claim of it in this database took jobs of last, by any worker or consumer, after which the next claim goes on (NULL: from the first); kept in shared memory for up to 16 functions of each database, those claimed last';

COMMENT ON FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) IS 'internal: moves the database''s cursor among the keys of p_function (async._key_cursor) past the keys of the jobs a claim took, p_keys: to the last of them in the order async._keyed_jobs visited them';

COMMENT ON FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) IS 'internal: locks up to p_max due jobs of a function with a concurrency_key for a claim, visiting its keys in turn from the one after p_from (the database''s cursor, async._key_cursor), and taking of each key no more than p_key_concurrency less its running jobs';

COMMENT ON COLUMN async.jobs.limited IS 'true while the queued job belongs to a function with a concurrency limit: it then waits in jobs_limited_idx, by function, rather than in the index every claim walks. A claim clears it, but for a function with a concurrency_key, and for a consumer''s claim, so that their claims are HOT updates; every way back to the queue sets it again';

COMMENT ON COLUMN async.jobs.key IS 'for a function with a concurrency_key, the value of that key in the payload as text (the empty string when it is missing or null; the md5 of a value longer than 200 bytes): its jobs wait in jobs_keyed_idx by key, and its running jobs count against key_concurrency in async.running. NULL for the other functions (and, in 0.15 only, while a worker ran the job). Set by pg_async, not by the INSERT';

COMMENT ON COLUMN async.running.key IS 'the job''s key, for a function with a concurrency_key: claims count the running jobs of each key. A job that a worker of 0.15 claimed had its async.jobs.key cleared, and gets this one back when it ends';

COMMENT ON INDEX async.jobs_keyed_idx IS 'the queued and running jobs of functions with a concurrency_key, by key: the claims visit the keys in turn, passing the running jobs by their state.  Its predicate does not name limited, so that no claim of a key can take jobs_limited_idx for it, nor state, so that a claim can be a HOT update';

-- @function async._keyed_jobs(
-- @function async._succeed(
-- @function async._fail(
-- @function async._bury_jobs(
-- @function async._recover(
-- @function async._functions_limit_changed(
-- @function async.wait_idle(
