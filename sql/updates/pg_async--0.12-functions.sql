/*
 * pg_async--0.12-functions.sql: functions as pg_async 0.12 defined them.
 *
 * The updates up to 0.12 take these definitions ("-- @function@0.12" lines,
 * see sql/assemble.sh) where 0.13 changed a function in a way the schema of
 * their own version cannot hold: 0.13's async._recover() calls
 * async._recovery_incomplete(), which 0.13 adds.  The update to 0.13 writes
 * the new definitions.  This file is not an install script.
 */

CREATE FUNCTION async._recover() RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
	r record;
	n integer := 0;
BEGIN
	/* one recovery at a time, so that a batch is never split between two */
	IF NOT async._try_recovery_lock() THEN
		RETURN 0;
	END IF;
	FOR r IN
		WITH orphans AS (
			SELECT j.id, j.worker_pid, j.started_at
			  FROM async.jobs j
			 /* a running job is never marked paused or limited: this walks jobs_ready_idx */
			 WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			   AND j.state OPERATOR(pg_catalog.=) 'running'
			   AND (j.worker_pid IS NULL OR
					NOT j.worker_pid OPERATOR(pg_catalog.=) ANY (async._live_worker_pids())
					/* the pid was reused by a worker that started after the claim */
					OR async._worker_started_at(j.worker_pid) OPERATOR(pg_catalog.>) j.started_at)
			   FOR UPDATE SKIP LOCKED),
		/*
		 * but a 0.2 library, still running after ALTER EXTENSION UPDATE,
		 * claims limited jobs without clearing the mark: those are found
		 * through their reservations in async.running, a short table
		 */
		marked_orphans AS (
			SELECT j.id, j.worker_pid, j.started_at
			  FROM async.jobs j
			 /* an external job's lease (async.claim) ends at its deadline instead */
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT x.job_id FROM async.running x
														  WHERE x.lease IS NULL))
			   AND j.limited AND j.finished_at IS NULL
			   AND j.state OPERATOR(pg_catalog.=) 'running'
			   AND (j.worker_pid IS NULL OR
					NOT j.worker_pid OPERATOR(pg_catalog.=) ANY (async._live_worker_pids())
					OR async._worker_started_at(j.worker_pid) OPERATOR(pg_catalog.>) j.started_at)
			   FOR UPDATE SKIP LOCKED)
		SELECT o.id, pg_catalog.count(*) OVER (PARTITION BY o.worker_pid, o.started_at) AS batch
		  FROM (SELECT * FROM orphans UNION ALL SELECT * FROM marked_orphans) o
	LOOP
		/* each orphan alone: one that cannot be recovered stops no other */
		BEGIN
			IF r.batch OPERATOR(pg_catalog.>) 1 THEN
				UPDATE async.jobs j
				   SET state = 'queued', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
					   suspect = true, run_at = pg_catalog.now(),
					   limited = async._is_limited(j.function),
					   key = async._job_key(j.function, j.payload)
				 WHERE j.id OPERATOR(pg_catalog.=) r.id;
				DELETE FROM async.running x WHERE x.job_id OPERATOR(pg_catalog.=) r.id;
			ELSE
				PERFORM async._charge_crash(r.id);
			END IF;
		EXCEPTION WHEN OTHERS THEN
			/*
			 * a shortage (a full disk, out of memory), an I/O error, a
			 * conflict or a cancel says nothing of the job: it is left
			 * 'running' for the next recovery rather than dead-lettered
			 */
			IF pg_catalog.left(SQLSTATE, 2) OPERATOR(pg_catalog.=) ANY ('{40,53,57,58,08}'::text[])
			   OR SQLSTATE OPERATOR(pg_catalog.=) '55P03' THEN
				RAISE WARNING 'pg_async could not recover job %: %', r.id, SQLERRM
					USING DETAIL = 'The job is left for the next recovery.';
				CONTINUE;
			END IF;
			RAISE WARNING 'pg_async could not recover job %: %', r.id, SQLERRM
				USING DETAIL = 'The job is dead-lettered with reason error.';
			PERFORM async._bury_jobs(ARRAY[r.id], 'error',
				'pg_async could not recover the job: ' OPERATOR(pg_catalog.||) pg_catalog.left(SQLERRM, 8192),
				NULL);
		END;
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END;
$$;
