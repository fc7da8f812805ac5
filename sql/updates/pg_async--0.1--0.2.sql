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
-- @function async.new_event_id(
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
-- @function@0.10 async._succeed(
REVOKE ALL ON FUNCTION async._succeed(bigint[], jsonb[], boolean, timestamptz[], bigint[]) FROM PUBLIC;
COMMENT ON FUNCTION async._succeed(bigint[], jsonb[], boolean, timestamptz[], bigint[]) IS
'internal: marks jobs succeeded with their handlers'' results and run times, and enqueues on_success records';

/*
 * _charge_crash charges a job that was running when its worker died the
 * attempt it was on: the crashed attempt goes to the log, and the job is
 * retried after its delay or dead-lettered.  Used by _recover, and by the
 * workers for the jobs their in-flight markers name after a crash restart.
 */
-- @function async._charge_crash(
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
			 /* a running job is never marked paused: this walks jobs_ready_idx */
			 WHERE j.finished_at IS NULL AND NOT j.paused
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

-- @function async._purge_attempts(
COMMENT ON FUNCTION async._purge_attempts(interval) IS
'internal: deletes the rows of async.attempt_log older than pg_async.attempts_retention';

/* ------------------------------------------------------------------------
 * Paused jobs: a paused function's queued jobs leave the ready index, so
 * that a large paused backlog is not walked by every claim.
 * ------------------------------------------------------------------------ */
ALTER TABLE async.jobs ADD COLUMN paused boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN async.jobs.paused IS
'true while the job waits for its paused function (async.pause): it is then left out of the index the workers claim from';

/* Unfinished jobs that may be claimed, in the order workers claim them. */
DROP INDEX async.jobs_ready_idx;
CREATE INDEX jobs_ready_idx ON async.jobs (run_at)
	WHERE finished_at IS NULL AND NOT paused;
/* Paused jobs, by function: async.resume() and async._unpause_jobs() find them. */
CREATE INDEX jobs_paused_idx ON async.jobs (function)
	WHERE paused;

CREATE OR REPLACE FUNCTION async._set_paused(p_name text, p_paused boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
	UPDATE async.functions f SET paused = p_paused, updated_at = pg_catalog.now()
	 WHERE f.name OPERATOR(pg_catalog.=) p_name;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	IF p_paused THEN
		UPDATE async.jobs j SET paused = true
		 WHERE j.function OPERATOR(pg_catalog.=) p_name
		   AND j.finished_at IS NULL AND NOT j.paused
		   AND j.state OPERATOR(pg_catalog.=) 'queued';
	ELSE
		UPDATE async.jobs j SET paused = false
		 WHERE j.paused AND j.function OPERATOR(pg_catalog.=) p_name;
	END IF;
	RETURN true;
END;
$$;
COMMENT ON FUNCTION async._set_paused(text, boolean) IS
'internal: the writes behind async.pause() and async.resume(): the flag, and the mark on the function''s queued jobs';

/*
 * An enqueue that read a function as paused just before async.resume()
 * committed, or before async.unregister(), leaves a job paused that nothing
 * would release: the workers call this every few seconds.  It visits each
 * function with paused jobs once (a loose scan of jobs_paused_idx).
 */
CREATE FUNCTION async._unpause_jobs()
RETURNS integer
LANGUAGE sql
AS $$
	WITH RECURSIVE paused_functions(name) AS (
		(SELECT j.function FROM async.jobs j WHERE j.paused ORDER BY j.function LIMIT 1)
		UNION ALL
		SELECT (SELECT j.function FROM async.jobs j
				 WHERE j.paused AND j.function OPERATOR(pg_catalog.>) h.name
				 ORDER BY j.function LIMIT 1)
		  FROM paused_functions h WHERE h.name IS NOT NULL),
	released AS (
		UPDATE async.jobs j SET paused = false
		 WHERE j.paused AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT h.name FROM paused_functions h
				WHERE h.name IS NOT NULL
				  AND NOT EXISTS (SELECT FROM async.functions f
								   WHERE f.name OPERATOR(pg_catalog.=) h.name AND f.paused)))
		RETURNING 1)
	SELECT pg_catalog.count(*)::integer FROM released;
$$;
REVOKE ALL ON FUNCTION async._unpause_jobs() FROM PUBLIC;
COMMENT ON FUNCTION async._unpause_jobs() IS
'internal: releases the paused jobs whose function is no longer paused (or no longer registered)';

CREATE OR REPLACE FUNCTION async.wait_idle(timeout interval DEFAULT '30 seconds')
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_deadline timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) timeout;
	v_now timestamptz;
BEGIN
	LOOP
		/* a running job was due when it was claimed: one index range covers both */
		v_now := pg_catalog.clock_timestamp();
		IF NOT EXISTS (
			SELECT FROM async.jobs j
			 WHERE j.finished_at IS NULL AND NOT j.paused
			   AND j.run_at OPERATOR(pg_catalog.<=) v_now)
		   AND NOT EXISTS (
			SELECT FROM async.jobs j
			 WHERE j.paused AND j.finished_at IS NULL
			   AND j.run_at OPERATOR(pg_catalog.<=) v_now) THEN
			RETURN true;
		END IF;
		IF v_now OPERATOR(pg_catalog.>=) v_deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_catalog.pg_sleep(0.01);
	END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION async.health(
	ready_age_warning interval DEFAULT '1 minute',
	xmin_age_warning interval DEFAULT '5 minutes')
RETURNS TABLE ("check" text, status text, detail text, hint text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v_workers integer;
	v_launcher integer;
	v_age interval;
	v_n bigint;
	v_prev bigint;
	v_names text;
	v_pid integer;
	v_dead bigint;
	v_live bigint;
BEGIN
	/* the launcher and the workers, serving this database */
	SELECT count(*) INTO v_launcher FROM pg_stat_activity WHERE backend_type = 'pg_async launcher';
	SELECT count(*) INTO v_workers FROM pg_stat_activity
	 WHERE backend_type = 'pg_async worker' AND datname = current_database();
	"check" := 'workers';
	IF v_launcher = 0 THEN
		status := 'critical';
		detail := 'no pg_async launcher is running';
		hint := 'Add pg_async to shared_preload_libraries and restart the server.';
	ELSIF current_setting('pg_async.database') <> current_database() THEN
		status := 'critical';
		detail := format('the workers serve database %s, not this one', current_setting('pg_async.database'));
		hint := format('Set pg_async.database = %L and reload the configuration.', current_database());
	ELSIF v_workers < current_setting('pg_async.workers')::integer THEN
		status := CASE WHEN v_workers = 0 THEN 'critical' ELSE 'warning' END;
		detail := format('%s of %s workers running', v_workers, current_setting('pg_async.workers'));
		hint := 'See the server log for why workers do not start; max_worker_processes must leave room for them.';
	ELSE
		status := 'ok';
		detail := format('launcher and %s workers running', v_workers);
		hint := NULL;
	END IF;
	RETURN NEXT;

	/* the oldest job that is due and not yet running, but for paused functions' */
	SELECT now() - min(j.run_at) INTO v_age FROM async.jobs j
	 WHERE j.finished_at IS NULL AND NOT j.paused AND j.state = 'queued' AND j.run_at <= now();
	"check" := 'oldest_ready_job';
	IF v_age IS NULL OR v_age <= ready_age_warning THEN
		status := 'ok';
		detail := CASE WHEN v_age IS NULL THEN 'no job is waiting'
				  ELSE format('the oldest ready job has waited %s', date_trunc('second', v_age)) END;
		hint := NULL;
	ELSE
		status := CASE WHEN v_age > ready_age_warning * 10 THEN 'critical' ELSE 'warning' END;
		detail := format('the oldest ready job has waited %s', date_trunc('second', v_age));
		hint := 'The workers are not keeping up: see async.stats, async.workers and raise pg_async.workers.';
	END IF;
	RETURN NEXT;

	/* dead letters of the last hour, against the hour before */
	SELECT count(*) FILTER (WHERE d.dead_at > now() - interval '1 hour'),
		   count(*) FILTER (WHERE d.dead_at > now() - interval '2 hours'
							  AND d.dead_at <= now() - interval '1 hour')
	  INTO v_n, v_prev FROM async.dead_letters d;
	"check" := 'dead_letters';
	IF v_n = 0 THEN
		status := 'ok';
		detail := 'no event was dead-lettered in the last hour';
		hint := NULL;
	ELSE
		status := CASE WHEN v_n > v_prev AND v_prev > 0 THEN 'critical' ELSE 'warning' END;
		detail := format('%s events dead-lettered in the last hour (%s in the hour before)', v_n, v_prev);
		hint := 'Look at async.dead_letters and async.attempts; fix the handler, then async.redrive().';
	END IF;
	RETURN NEXT;

	/* a transaction holding back the xmin horizon keeps dead queue rows */
	SELECT a.pid, now() - a.xact_start INTO v_pid, v_age FROM pg_stat_activity a
	 WHERE a.backend_xmin IS NOT NULL AND a.xact_start IS NOT NULL
	   AND a.pid <> pg_backend_pid()
	 ORDER BY a.xact_start LIMIT 1;
	"check" := 'xmin_horizon';
	IF v_age IS NULL OR v_age <= xmin_age_warning THEN
		status := 'ok';
		detail := 'no long transaction holds back vacuum';
		hint := NULL;
	ELSE
		status := CASE WHEN v_age > xmin_age_warning * 12 THEN 'critical' ELSE 'warning' END;
		detail := format('process %s has held a snapshot for %s', v_pid, date_trunc('second', v_age));
		hint := 'Dead rows of async.jobs cannot be vacuumed meanwhile and claims slow down; end that transaction.';
	END IF;
	RETURN NEXT;

	/* dead rows in the queue table */
	SELECT t.n_dead_tup, t.n_live_tup INTO v_dead, v_live
	  FROM pg_stat_user_tables t WHERE t.relid = 'async.jobs'::regclass;
	"check" := 'queue_bloat';
	IF COALESCE(v_dead, 0) < 100000 OR v_dead < COALESCE(v_live, 0) THEN
		status := 'ok';
		detail := format('%s dead and %s live rows in async.jobs (%s)', COALESCE(v_dead, 0), COALESCE(v_live, 0),
						 pg_size_pretty(pg_total_relation_size('async.jobs')));
		hint := NULL;
	ELSE
		status := CASE WHEN v_dead > 10 * v_live THEN 'critical' ELSE 'warning' END;
		detail := format('%s dead and %s live rows in async.jobs (%s)', v_dead, v_live,
						 pg_size_pretty(pg_total_relation_size('async.jobs')));
		hint := 'Check autovacuum on async.jobs and the xmin_horizon check; VACUUM async.jobs.';
	END IF;
	RETURN NEXT;

	/* registrations whose handler is gone or no longer a handler */
	SELECT string_agg(f.name, ', ' ORDER BY f.name) INTO v_names
	  FROM async.functions f
	  LEFT JOIN pg_proc p ON p.oid = to_regprocedure(f.handler)
	 WHERE p.oid IS NULL OR p.prokind <> 'f' OR p.proretset
		OR p.proargtypes[0] <> 'jsonb'::regtype
		OR NOT (p.pronargs = 1 OR (p.pronargs = 2 AND p.proargtypes[1] = 'async.context'::regtype));
	"check" := 'handlers';
	IF v_names IS NULL THEN
		status := 'ok';
		detail := format('%s registered handlers exist', (SELECT count(*) FROM async.functions));
		hint := NULL;
	ELSE
		status := 'critical';
		detail := format('handler missing or changed for: %s', v_names);
		hint := 'Create the function again, or register another handler with async.register().';
	END IF;
	RETURN NEXT;
END;
$$;
