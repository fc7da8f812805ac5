/* pg_async--0.17--0.18.sql: update of pg_async from 0.17 to 0.18 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.18'" to load this file. \quit

/*
 * 0.18: a worker's claim of keyed jobs reserves only the jobs it claimed,
 * and with pg_async.claim_synchronous_commit off a consumer's transaction
 * that wrote nothing but its claims commits without waiting for its WAL
 * flush.  Both are in the server's code; the comment of async.claim()
 * says the second.
 *
 * A 0.17 claim could reserve a keyed job that it did not claim: the job
 * stayed queued with its row in async.running, and its key looked full for
 * good (also once the job was cancelled: the trigger that deletes a
 * deleted job's reservation looks only at running jobs).  A claim inserts
 * a job's reservation and marks it running in one transaction, and
 * whatever ends or deletes the job deletes both in one, so only a running
 * job has a reservation: the others go.
 */
DELETE FROM async.running r
 WHERE NOT EXISTS (SELECT FROM async.jobs j
                    WHERE j.id OPERATOR(pg_catalog.=) r.job_id
                      AND j.state OPERATOR(pg_catalog.=) 'running');

COMMENT ON FUNCTION async.claim(function text, max_jobs integer, wait interval) IS 'claims up to max_jobs (1 to 1000) ready jobs of an external function, in run_at order, each running until its deadline under a lease that async.complete(), async.fail() and async.heartbeat() need; with nothing ready, waits up to wait (at most 1 hour) for an enqueue of the function to commit. Needs the privileges of the function''s run_as role. With pg_async.claim_synchronous_commit off, a transaction that wrote nothing but claims of functions without a limit commits without waiting for its WAL flush';
