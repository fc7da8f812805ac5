/* pg_async--0.3--0.4.sql: update of pg_async from 0.3 to 0.4 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.4'" to load this file. \quit

/*
 * 0.4 fixes async.wait_idle, which could return true while a job was due.
 *
 * It read the clock, and then its query took a snapshot.  A job made due
 * in between, by a commit the snapshot saw, could have a run_at later than
 * that clock reading: a retry queued with a delay of 0 is due at the
 * moment its handler failed, which can fall after the reading when the
 * waiting session is preempted between the two.  Such a job looked
 * scheduled for later, and wait_idle returned while it was still to run.
 * Now each look compares run_at with the clock read by the query itself
 * (an InitPlan, run after the query's snapshot was taken), which is still
 * a parameter of the index scan.
 */
CREATE OR REPLACE FUNCTION async.wait_idle(timeout interval DEFAULT '30 seconds')
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_deadline timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) timeout;
BEGIN
	LOOP
		/* a running job was due when it was claimed: one index range covers both */
		IF NOT EXISTS (
			SELECT FROM async.jobs j
			 WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			   AND j.run_at OPERATOR(pg_catalog.<=) (SELECT pg_catalog.clock_timestamp()))
		   AND NOT EXISTS (
			/* the first due job of each limited function, in jobs_limited_idx */
			SELECT FROM async.functions f CROSS JOIN LATERAL (
				SELECT FROM async.jobs j
				 WHERE j.function OPERATOR(pg_catalog.=) f.name
				   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
				   AND j.run_at OPERATOR(pg_catalog.<=) (SELECT pg_catalog.clock_timestamp())
				 LIMIT 1) x
			 WHERE f.concurrency IS NOT NULL)
		   AND NOT EXISTS (
			SELECT FROM async.jobs j
			 WHERE j.paused AND j.finished_at IS NULL
			   AND j.run_at OPERATOR(pg_catalog.<=) (SELECT pg_catalog.clock_timestamp())) THEN
			RETURN true;
		END IF;
		IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_catalog.pg_sleep(0.01);
	END LOOP;
END;
$$;
