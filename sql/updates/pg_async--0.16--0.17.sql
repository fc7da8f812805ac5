/* pg_async--0.16--0.17.sql: update of pg_async from 0.16 to 0.17 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.17'" to load this file. \quit

/*
 * 0.17: rate limits hold when a handler would start late, and across a
 * dump and restore.  A worker whose batch ran so long before a
 * rate-limited job that the job would start outside the window its claim
 * counted it in gives it back, and takes its start out of the window (in
 * the server's code, under the claim lock, as the claims write it; the
 * table's comment says so).  pg_dump keeps the windows, so that a function
 * with a long rate_period does not start as many jobs again right after a
 * restore.
 */
SELECT pg_catalog.pg_extension_config_dump('async.rate_windows', '');

COMMENT ON TABLE async.rate_windows IS 'internal: for each function with a rate limit, the starts of its last rate_period: claims read and write it under a claim lock, and a worker that gives back jobs of its batch without running them takes their starts out of it; pg_dump keeps it';
