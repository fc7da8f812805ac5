/* pg_async--0.1--0.2.sql: update of pg_async from 0.1 to 0.2 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.2'" to load this file. \quit

/*
 * 0.2 makes finishing a job cheaper; what users see stays the same.
 *
 * 1. Event ids given by default are time-ordered UUIDs (version 7) instead
 *    of random ones: each job's entry in jobs_event_id_key then lands next
 *    to the previous job's, not on a random page of the index.
 * 2. A successful attempt is no longer a row of its own: the job keeps its
 *    run time (jobs.duration) and async.attempts, now a view, shows it from
 *    there.  Failed, crashed and expired attempts are still appended to a
 *    table, async.attempt_log (the former async.attempts).
 */

/* ------------------------------------------------------------------------
 * 1. Time-ordered event ids
 * ------------------------------------------------------------------------ */
CREATE FUNCTION async.new_event_id()
RETURNS text
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pg_async_new_event_id';
COMMENT ON FUNCTION async.new_event_id() IS
'a new time-ordered UUID (RFC 9562 version 7) as text: the default event_id of a job';

ALTER TABLE async.jobs ALTER COLUMN event_id SET DEFAULT async.new_event_id();
COMMENT ON COLUMN async.jobs.event_id IS
'idempotency key, unique until pg_async.retention after the job finished; a time-ordered UUID (version 7) when not given';

/* ------------------------------------------------------------------------
 * 2. Successful attempts live on the job; the others in async.attempt_log
 * ------------------------------------------------------------------------ */
ALTER TABLE async.jobs ADD COLUMN duration interval;
COMMENT ON COLUMN async.jobs.duration IS
'run time of the handler in the attempt that succeeded';
COMMENT ON COLUMN async.jobs.finished_at IS
'time the job succeeded (its handler returned) or died';

ALTER TABLE async.attempts RENAME TO attempt_log;
ALTER INDEX async.attempts_started_at_idx RENAME TO attempt_log_started_at_idx;
ALTER INDEX async.attempts_event_id_idx RENAME TO attempt_log_event_id_idx;
ALTER POLICY attempts_own ON async.attempt_log RENAME TO attempt_log_own;
COMMENT ON TABLE async.attempt_log IS
'pg_async history: one row per failed, crashed or expired attempt, kept for pg_async.attempts_retention; read it through async.attempts';
COMMENT ON COLUMN async.attempt_log.outcome IS
'failed, crashed (the worker died while it ran) or expired; succeeded for attempts of jobs deleted by pg_async.retention while pg_async.attempts_retention was longer';
COMMENT ON POLICY attempt_log_own ON async.attempt_log IS
'a role sees the attempts of its own jobs; pg_monitor sees all';

/*
 * security_invoker: the policies of async.jobs and async.attempt_log apply
 * to whoever reads the view, so a role sees the attempts of its own jobs.
 */
CREATE VIEW async.attempts WITH (security_invoker = true) AS
	SELECT l.job_id, l.event_id, l.function, l.attempt, l.worker_pid,
		   l.started_at, l.duration, l.outcome, l.error, l.sqlstate, l.enqueued_by
	  FROM async.attempt_log l
	UNION ALL
	SELECT j.id, j.event_id, j.function, j.attempts, j.worker_pid,
		   j.finished_at OPERATOR(pg_catalog.-) j.duration, j.duration,
		   'succeeded'::text, NULL::text, NULL::text, j.enqueued_by
	  FROM async.jobs j
	 WHERE j.state OPERATOR(pg_catalog.=) 'succeeded'
	   AND j.duration IS NOT NULL;
GRANT SELECT ON async.attempts TO PUBLIC;

COMMENT ON VIEW async.attempts IS
'pg_async history: one row per attempt (succeeded, failed, crashed or expired). A successful attempt is shown from its job while pg_async.retention keeps the job (and, when pg_async.attempts_retention is longer, from async.attempt_log after that); the others are kept for pg_async.attempts_retention';
COMMENT ON COLUMN async.attempts.job_id IS 'id of the job (async.jobs.id)';
COMMENT ON COLUMN async.attempts.event_id IS 'event_id of the job';
COMMENT ON COLUMN async.attempts.function IS 'registered function name';
COMMENT ON COLUMN async.attempts.attempt IS 'attempt number, from 1';
COMMENT ON COLUMN async.attempts.worker_pid IS 'process id of the worker that ran it';
COMMENT ON COLUMN async.attempts.started_at IS 'when the handler started';
COMMENT ON COLUMN async.attempts.duration IS 'run time of the handler';
COMMENT ON COLUMN async.attempts.outcome IS 'succeeded, failed, crashed (the worker died while it ran) or expired';
COMMENT ON COLUMN async.attempts.error IS 'error message of a failed attempt';
COMMENT ON COLUMN async.attempts.sqlstate IS 'SQLSTATE of a failed attempt';
COMMENT ON COLUMN async.attempts.enqueued_by IS 'role that enqueued the job';

/* _succeed also records when each handler returned and how long it ran */
DROP FUNCTION async._succeed(bigint[], jsonb[], boolean);
CREATE FUNCTION async._succeed(p_ids bigint[], p_results jsonb[], p_destinations boolean,
							   p_finished timestamptz[], p_duration_us bigint[])
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	v_job async.jobs;
BEGIN
	DELETE FROM async.running x WHERE x.job_id OPERATOR(pg_catalog.=) ANY (p_ids);
	FOR v_job IN
		UPDATE async.jobs j SET state = 'succeeded', finished_at = r.finished_at,
			   duration = r.duration_us OPERATOR(pg_catalog.*) '1 microsecond'::interval,
			   result = r.result
		  FROM ROWS FROM (pg_catalog.unnest(p_ids), pg_catalog.unnest(p_results),
						  pg_catalog.unnest(p_finished), pg_catalog.unnest(p_duration_us))
			   AS r(id, result, finished_at, duration_us)
		 WHERE j.id OPERATOR(pg_catalog.=) r.id
		RETURNING j.*
	LOOP
		IF p_destinations THEN
			PERFORM async._destination(v_job, 'Success', v_job.result);
		END IF;
	END LOOP;
END;
$$;
REVOKE ALL ON FUNCTION async._succeed(bigint[], jsonb[], boolean, timestamptz[], bigint[]) FROM PUBLIC;
COMMENT ON FUNCTION async._succeed(bigint[], jsonb[], boolean, timestamptz[], bigint[]) IS
'internal: marks jobs succeeded with their handlers'' results and run times, and enqueues on_success records';

/*
 * _charge_crash charges a job that was running when its worker died the
 * attempt it was on: the crashed attempt goes to the log, and the job is
 * retried after its delay or dead-lettered.  Used by _recover, and by the
 * workers for the jobs their in-flight markers name after a crash restart.
 */
CREATE FUNCTION async._charge_crash(p_job_id bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	IF pg_catalog.current_setting('pg_async.attempts_retention') OPERATOR(pg_catalog.<>) '0' THEN
		INSERT INTO async.attempt_log
			(job_id, event_id, function, attempt, worker_pid, started_at, duration,
			 outcome, error, sqlstate, enqueued_by)
		SELECT j.id, j.event_id, j.function, j.attempts, j.worker_pid, j.started_at,
			   pg_catalog.now() OPERATOR(pg_catalog.-) j.started_at, 'crashed',
			   'worker process exited while running the handler', '57P01', j.enqueued_by
		  FROM async.jobs j
		 WHERE j.id OPERATOR(pg_catalog.=) p_job_id;
	END IF;
	PERFORM async._fail(p_job_id,
		'worker process exited while running the handler', '57P01',
		pg_catalog.now());
END;
$$;
REVOKE ALL ON FUNCTION async._charge_crash(bigint) FROM PUBLIC;
COMMENT ON FUNCTION async._charge_crash(bigint) IS
'internal: records the crashed attempt of a job whose worker died running it, then retries or dead-letters the job';

/* _recover charges its crashed attempts through _charge_crash */
CREATE OR REPLACE FUNCTION async._recover()
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
	r record;
	n integer := 0;
BEGIN
	/* one recovery at a time, so that a batch is never split between two */
	IF NOT pg_catalog.pg_try_advisory_xact_lock(7370716173796563) THEN
		RETURN 0;
	END IF;
	FOR r IN
		WITH orphans AS (
			SELECT j.id, j.worker_pid, j.started_at
			  FROM async.jobs j
			 WHERE j.finished_at IS NULL
			   AND j.state OPERATOR(pg_catalog.=) 'running'
			   AND (j.worker_pid IS NULL OR
					NOT j.worker_pid OPERATOR(pg_catalog.=) ANY (async._live_worker_pids())
					/* the pid was reused by a worker that started after the claim */
					OR async._worker_started_at(j.worker_pid) OPERATOR(pg_catalog.>) j.started_at)
			   FOR UPDATE SKIP LOCKED)
		SELECT o.id, pg_catalog.count(*) OVER (PARTITION BY o.worker_pid, o.started_at) AS batch
		  FROM orphans o
	LOOP
		IF r.batch OPERATOR(pg_catalog.>) 1 THEN
			UPDATE async.jobs j
			   SET state = 'queued', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
				   suspect = true, run_at = pg_catalog.now()
			 WHERE j.id OPERATOR(pg_catalog.=) r.id;
			DELETE FROM async.running x WHERE x.job_id OPERATOR(pg_catalog.=) r.id;
		ELSE
			PERFORM async._charge_crash(r.id);
		END IF;
		n := n OPERATOR(pg_catalog.+) 1;
	END LOOP;
	RETURN n;
END;
$$;

/*
 * _purge_finished keeps the successful attempts of the jobs it deletes in
 * async.attempt_log when the history is to outlive the jobs.
 */
DROP FUNCTION async._purge_finished(interval, integer);
CREATE FUNCTION async._purge_finished(p_older_than interval, p_limit integer,
									  p_attempts_older_than interval)
RETURNS integer
LANGUAGE sql
AS $$
	WITH gone AS (
		DELETE FROM async.jobs j
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
				SELECT f.id FROM async.jobs f
				 WHERE f.finished_at IS NOT NULL
				   AND f.finished_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) p_older_than)
				 LIMIT p_limit))
		RETURNING j.*),
	kept AS (
		INSERT INTO async.attempt_log
			(job_id, event_id, function, attempt, worker_pid, started_at, duration,
			 outcome, enqueued_by)
		SELECT g.id, g.event_id, g.function, g.attempts, g.worker_pid,
			   g.finished_at OPERATOR(pg_catalog.-) g.duration, g.duration,
			   'succeeded', g.enqueued_by
		  FROM gone g
		 WHERE g.state OPERATOR(pg_catalog.=) 'succeeded'
		   AND g.duration IS NOT NULL
		   AND g.finished_at OPERATOR(pg_catalog.>=)
			   (pg_catalog.now() OPERATOR(pg_catalog.-) p_attempts_older_than))
	SELECT pg_catalog.count(*)::integer FROM gone;
$$;
REVOKE ALL ON FUNCTION async._purge_finished(interval, integer, interval) FROM PUBLIC;
COMMENT ON FUNCTION async._purge_finished(interval, integer, interval) IS
'internal: deletes at most p_limit jobs that finished more than p_older_than ago (pg_async.retention), keeping in async.attempt_log the successful attempts younger than p_attempts_older_than (pg_async.attempts_retention)';

CREATE OR REPLACE FUNCTION async._purge_attempts(p_older_than interval)
RETURNS integer
LANGUAGE sql
AS $$
	WITH gone AS (
		DELETE FROM async.attempt_log a
		 WHERE a.started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) p_older_than)
		RETURNING 1)
	SELECT pg_catalog.count(*)::integer FROM gone;
$$;
COMMENT ON FUNCTION async._purge_attempts(interval) IS
'internal: deletes the rows of async.attempt_log older than pg_async.attempts_retention';
