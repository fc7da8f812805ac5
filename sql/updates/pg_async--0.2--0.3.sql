/* pg_async--0.2--0.3.sql: update of pg_async from 0.2 to 0.3 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.3'" to load this file. \quit

/*
 * 0.3 takes the queued jobs of functions with a concurrency limit out of
 * the index every claim walks; what users see stays the same.
 *
 * Before, a limited function's backlog lay in jobs_ready_idx among every
 * other function's jobs, and while the function ran at its limit each claim
 * walked over all of it, reading every job only to leave it: a backlog of
 * 100,000 such jobs cut the drain rate of the other functions by two
 * thirds.  Now such jobs are marked limited and wait in an index of their
 * own, by function, and a claim takes from it only what each function's
 * allowance permits, with one short index range per function.
 */

/* ------------------------------------------------------------------------
 * The mark and the indexes
 * ------------------------------------------------------------------------ */
ALTER TABLE async.jobs ADD COLUMN limited boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN async.jobs.limited IS
'true while the queued job belongs to a function with a concurrency limit: it then waits in jobs_limited_idx, by function, rather than in the index every claim walks';

UPDATE async.jobs j SET limited = true
 WHERE j.finished_at IS NULL AND j.state OPERATOR(pg_catalog.=) 'queued'
   AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
	   SELECT f.name FROM async.functions f WHERE f.concurrency IS NOT NULL));

/* Unfinished jobs that any claim may take, in the order workers claim them. */
DROP INDEX async.jobs_ready_idx;
CREATE INDEX jobs_ready_idx ON async.jobs (run_at)
	WHERE finished_at IS NULL AND NOT paused AND NOT limited;
/* Queued jobs of limited functions, by function, in the order they are claimed. */
CREATE INDEX jobs_limited_idx ON async.jobs (function, run_at)
	WHERE limited AND NOT paused AND finished_at IS NULL;

/*
 * A function that gets a limit has its queued jobs marked; one that loses
 * it, or its registration, has them released into jobs_ready_idx.
 */
-- @function@0.9 async._functions_limit_changed(
REVOKE ALL ON FUNCTION async._functions_limit_changed() FROM PUBLIC;
COMMENT ON FUNCTION async._functions_limit_changed() IS
'internal: marks the queued jobs of a function that gets a concurrency limit limited, and releases them when it loses the limit or its registration';

CREATE TRIGGER functions_limit_changed
	AFTER INSERT OR UPDATE OF concurrency OR DELETE ON async.functions
	FOR EACH ROW EXECUTE FUNCTION async._functions_limit_changed();

/*
 * _is_limited tells whether jobs of 'function' wait for a concurrency
 * limit: how a job put back in the queue is marked.
 */
-- @function@0.9 async._is_limited(
REVOKE ALL ON FUNCTION async._is_limited(text) FROM PUBLIC;
COMMENT ON FUNCTION async._is_limited(text) IS
'internal: whether the jobs of a function wait for a concurrency limit (are marked limited when queued)';

/* ------------------------------------------------------------------------
 * Jobs put back in the queue are marked as new ones are
 * ------------------------------------------------------------------------ */
-- @function@0.8 async._fail(

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
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT x.job_id FROM async.running x))
			   AND j.limited AND j.finished_at IS NULL
			   AND j.state OPERATOR(pg_catalog.=) 'running'
			   AND (j.worker_pid IS NULL OR
					NOT j.worker_pid OPERATOR(pg_catalog.=) ANY (async._live_worker_pids())
					OR async._worker_started_at(j.worker_pid) OPERATOR(pg_catalog.>) j.started_at)
			   FOR UPDATE SKIP LOCKED)
		SELECT o.id, pg_catalog.count(*) OVER (PARTITION BY o.worker_pid, o.started_at) AS batch
		  FROM (SELECT * FROM orphans UNION ALL SELECT * FROM marked_orphans) o
	LOOP
		IF r.batch OPERATOR(pg_catalog.>) 1 THEN
			UPDATE async.jobs j
			   SET state = 'queued', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
				   suspect = true, run_at = pg_catalog.now(),
				   limited = async._is_limited(j.function)
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

CREATE OR REPLACE FUNCTION async._redrive(p_event_id text)
RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
	v_dl async.dead_letters;
BEGIN
	DELETE FROM async.dead_letters d
	 WHERE d.id OPERATOR(pg_catalog.=) (
			SELECT max(x.id) FROM async.dead_letters x
			 WHERE x.event_id OPERATOR(pg_catalog.=) p_event_id)
	RETURNING d.* INTO v_dl;
	IF NOT FOUND THEN
		RETURN false;
	END IF;

	UPDATE async.jobs j
	   SET state = 'queued', attempts = 0, run_at = pg_catalog.now(),
		   finished_at = NULL, last_error = NULL, errors = NULL, suspect = false,
		   limited = async._is_limited(j.function)
	 WHERE j.event_id OPERATOR(pg_catalog.=) p_event_id
	   AND j.state OPERATOR(pg_catalog.=) 'dead';
	IF NOT FOUND THEN
		/*
		 * the job row went with pg_async.retention: enqueue the event anew.
		 * The INSERT trigger takes a row with an earlier enqueued_at as a
		 * restore, as it is: so the marks are set here.
		 */
		INSERT INTO async.jobs (event_id, function, payload, enqueued_at, enqueued_by,
								paused, limited)
		VALUES (v_dl.event_id, v_dl.function, v_dl.payload, v_dl.enqueued_at, v_dl.enqueued_by,
				EXISTS (SELECT FROM async.functions f
						 WHERE f.name OPERATOR(pg_catalog.=) v_dl.function AND f.paused),
				async._is_limited(v_dl.function));
	END IF;
	RETURN true;
END;
$$;

/*
 * An enqueue that read a function's registration just before it changed
 * can leave a job marked for what no longer holds: paused after
 * async.resume(), limited after the limit was lifted, either after
 * async.unregister().  Nothing else would release such a job, so the
 * workers call this every few seconds.  It visits each function with
 * paused or limited jobs once (loose scans of jobs_paused_idx and
 * jobs_limited_idx).
 */
CREATE OR REPLACE FUNCTION async._unpause_jobs()
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
	limited_functions(name) AS (
		(SELECT j.function FROM async.jobs j
		  WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
		  ORDER BY j.function LIMIT 1)
		UNION ALL
		SELECT (SELECT j.function FROM async.jobs j
				 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
				   AND j.function OPERATOR(pg_catalog.>) h.name
				 ORDER BY j.function LIMIT 1)
		  FROM limited_functions h WHERE h.name IS NOT NULL),
	unpaused AS (
		UPDATE async.jobs j SET paused = false
		 WHERE j.paused AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT h.name FROM paused_functions h
				WHERE h.name IS NOT NULL
				  AND NOT EXISTS (SELECT FROM async.functions f
								   WHERE f.name OPERATOR(pg_catalog.=) h.name AND f.paused)))
		RETURNING 1),
	unlimited AS (
		UPDATE async.jobs j SET limited = false
		 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT h.name FROM limited_functions h
				WHERE h.name IS NOT NULL
				  AND NOT async._is_limited(h.name)))
		RETURNING 1)
	SELECT ((SELECT pg_catalog.count(*) FROM unpaused) OPERATOR(pg_catalog.+)
			(SELECT pg_catalog.count(*) FROM unlimited))::integer;
$$;
COMMENT ON FUNCTION async._unpause_jobs() IS
'internal: releases the paused jobs whose function is no longer paused, and the limited jobs whose function no longer has a concurrency limit (or either, no longer registered)';

/* ------------------------------------------------------------------------
 * Readers of jobs_ready_idx name its new predicate, so as to use it
 * ------------------------------------------------------------------------ */
-- @function async._set_paused(

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
			 WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			   AND j.run_at OPERATOR(pg_catalog.<=) v_now)
		   AND NOT EXISTS (
			/* the first due job of each limited function, in jobs_limited_idx */
			SELECT FROM async.functions f CROSS JOIN LATERAL (
				SELECT FROM async.jobs j
				 WHERE j.function OPERATOR(pg_catalog.=) f.name
				   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
				   AND j.run_at OPERATOR(pg_catalog.<=) v_now
				 LIMIT 1) x
			 WHERE f.concurrency IS NOT NULL)
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

	/*
	 * the oldest job that is due and not yet running, but for the jobs of
	 * paused functions and of those held with concurrency 0: the first of
	 * jobs_ready_idx, and the first of each other limited function in
	 * jobs_limited_idx
	 */
	SELECT now() - LEAST(
		(SELECT min(j.run_at) FROM async.jobs j
		  WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			AND j.state = 'queued' AND j.run_at <= now()),
		(SELECT min(x.run_at) FROM async.functions f CROSS JOIN LATERAL (
			SELECT j.run_at FROM async.jobs j
			 WHERE j.function = f.name AND j.limited AND NOT j.paused
			   AND j.finished_at IS NULL AND j.state = 'queued' AND j.run_at <= now()
			 ORDER BY j.run_at LIMIT 1) x
		  WHERE f.concurrency > 0 AND NOT f.paused))
	  INTO v_age;
	"check" := 'oldest_ready_job';
	IF v_age IS NULL OR v_age <= ready_age_warning THEN
		status := 'ok';
		detail := CASE WHEN v_age IS NULL THEN 'no job is waiting'
				  ELSE format('the oldest ready job has waited %s', date_trunc('second', v_age)) END;
		hint := NULL;
	ELSE
		status := CASE WHEN v_age > ready_age_warning * 10 THEN 'critical' ELSE 'warning' END;
		detail := format('the oldest ready job has waited %s', date_trunc('second', v_age));
		hint := 'The workers, or a function''s concurrency limit, are not keeping up: see async.stats and async.workers, and raise pg_async.workers or the limit.';
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
