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
 */
COMMENT ON FUNCTION async._key_cursor(p_function text) IS 'internal: the key of p_function the last claim of it in this database took jobs of last, by any worker or consumer, after which the next claim goes on (NULL: from the first); kept in shared memory for up to 16 functions of each database, those used last';

COMMENT ON FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) IS 'internal: moves the database''s cursor among the keys of p_function (async._key_cursor) past the keys of the jobs a claim took, p_keys: to the last of them in the order async._keyed_jobs visited them';

COMMENT ON FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) IS 'internal: locks up to p_max due jobs of a function with a concurrency_key for a claim, visiting its keys in turn from the one after p_from (the database''s cursor, async._key_cursor), and taking of each key no more than p_key_concurrency less its running jobs';

-- @function async._keyed_jobs(
-- @function async._succeed(
