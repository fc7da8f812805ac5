/* pg_async--0.4--0.5.sql: update of pg_async from 0.4 to 0.5 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.5'" to load this file. \quit

/*
 * 0.5 closes what a review of pg_async by a hostile non-superuser role
 * found: ways to run code with another role's rights, to stop every role's
 * jobs, and to take another role's payloads.  The numbers are the items of
 * that review; README.md's "Security model" states the rules that follow.
 */

/* ------------------------------------------------------------------------
 * 1-4. A registration is bound to its function's OID.  The rule that a
 * handler runs only as a role whose privileges its owner has is checked by
 * async.register() and by the workers before every batch (C).
 * ------------------------------------------------------------------------ */
ALTER TABLE async.functions ALTER COLUMN handler TYPE pg_catalog.regprocedure
	USING COALESCE(pg_catalog.to_regprocedure(handler),
				   (0)::pg_catalog.oid::pg_catalog.regprocedure);
COMMENT ON COLUMN async.functions.handler IS
'the handler function, bound by OID: one dropped and created again, by anyone, is not it, and the jobs then fail until the function is registered again. pg_dump writes it as a signature, which a restore binds again';

DROP FUNCTION async._upsert_registration(text, text, regrole, integer, interval[], interval, regrole, interval, integer, text, text);
-- @function@0.8 async._upsert_registration(
REVOKE ALL ON FUNCTION async._upsert_registration(text, regprocedure, regrole, integer, interval[], interval, regrole, interval, integer, text, text) FROM PUBLIC;
COMMENT ON FUNCTION async._upsert_registration(text, regprocedure, regrole, integer, interval[], interval, regrole, interval, integer, text, text) IS
'internal: writes a registration for async.register()';

COMMENT ON FUNCTION async.register(regprocedure, text, integer, interval[], interval, regrole, interval, integer, text, text) IS
'registers handler (a function taking jsonb, or jsonb and async.context, not temporary) under name (default: the function''s name), or updates the registration; returns the name. The handler runs as run_as, by default its owner, which must have the privileges of run_as. Bounds: max_attempts 1 to 100, at most 100 retry_delays of 0 to 30 days each, timeout up to 1 day, max_event_age 1 second to 30 days';

/* ------------------------------------------------------------------------
 * 6, 19. Bounded settings, and retry_delays indexed from 1.  Registrations
 * made before are brought within the bounds first.
 * ------------------------------------------------------------------------ */
UPDATE async.functions f SET
	max_attempts = LEAST(GREATEST(f.max_attempts, 1), 100),
	retry_delays = ARRAY(SELECT LEAST(GREATEST(u.d, '0'::interval), '30 days'::interval)
						   FROM unnest(f.retry_delays) WITH ORDINALITY u(d, n)
						  WHERE u.d IS NOT NULL ORDER BY u.n LIMIT 100),
	timeout = LEAST(f.timeout, '1 day'::interval),
	max_event_age = LEAST(f.max_event_age, '30 days'::interval)
 WHERE f.max_attempts > 100
	OR cardinality(f.retry_delays) > 100
	OR array_lower(f.retry_delays, 1) <> 1
	OR array_ndims(f.retry_delays) > 1
	OR array_position(f.retry_delays, NULL) IS NOT NULL
	OR NOT ('0'::interval <= ALL (f.retry_delays) AND '30 days'::interval >= ALL (f.retry_delays))
	OR f.timeout > '1 day'::interval
	OR f.max_event_age > '30 days'::interval;

ALTER TABLE async.functions
	DROP CONSTRAINT functions_max_attempts_check,
	ADD CONSTRAINT functions_max_attempts_check
		CHECK (max_attempts OPERATOR(pg_catalog.>=) 1 AND max_attempts OPERATOR(pg_catalog.<=) 100),
	ADD CONSTRAINT functions_retry_delays_check
		CHECK (pg_catalog.cardinality(retry_delays) OPERATOR(pg_catalog.<=) 100
			   AND (pg_catalog.cardinality(retry_delays) OPERATOR(pg_catalog.=) 0
					OR (pg_catalog.array_ndims(retry_delays) OPERATOR(pg_catalog.=) 1
						AND pg_catalog.array_lower(retry_delays, 1) OPERATOR(pg_catalog.=) 1))
			   AND pg_catalog.array_position(retry_delays, NULL) IS NULL
			   AND '0'::pg_catalog.interval OPERATOR(pg_catalog.<=) ALL (retry_delays)
			   AND '30 days'::pg_catalog.interval OPERATOR(pg_catalog.>=) ALL (retry_delays)),
	DROP CONSTRAINT functions_timeout_check,
	ADD CONSTRAINT functions_timeout_check
		CHECK (timeout OPERATOR(pg_catalog.>) '0'::pg_catalog.interval
			   AND timeout OPERATOR(pg_catalog.<=) '1 day'::pg_catalog.interval),
	DROP CONSTRAINT functions_max_event_age_check,
	ADD CONSTRAINT functions_max_event_age_check
		CHECK (max_event_age OPERATOR(pg_catalog.>=) '1 second'::pg_catalog.interval
			   AND max_event_age OPERATOR(pg_catalog.<=) '30 days'::pg_catalog.interval);

/* ------------------------------------------------------------------------
 * 5. A destination's record is delivered only if the role that enqueued
 * the original event may enqueue for the destination: checked when the
 * record is delivered, not only when the destination was set.
 * ------------------------------------------------------------------------ */
-- @function async._destination(

/* ------------------------------------------------------------------------
 * 10. PUBLIC may no longer DELETE jobs or dead letters: any table privilege
 * but SELECT lets a role LOCK the table against everyone.  Deleting goes
 * through async.cancel() and async.purge_dead_letters(), which check the
 * caller and write as the extension's owner.
 * ------------------------------------------------------------------------ */
REVOKE DELETE ON async.jobs FROM PUBLIC;
REVOKE DELETE ON async.dead_letters FROM PUBLIC;

-- @function async._cancel(
REVOKE ALL ON FUNCTION async._cancel(text, oid) FROM PUBLIC;
COMMENT ON FUNCTION async._cancel(text, oid) IS
'internal: the delete behind async.cancel(), for the caller p_caller';

-- @function async.cancel(
COMMENT ON FUNCTION async.cancel(text) IS
'removes your job with this event_id if it waits (queued, scheduled, paused or held), freeing the event_id; false when you have no such job; an error while it runs';

-- @function async._purge_dead_letters(
REVOKE ALL ON FUNCTION async._purge_dead_letters(text, text, interval, oid) FROM PUBLIC;
COMMENT ON FUNCTION async._purge_dead_letters(text, text, interval, oid) IS
'internal: the delete behind async.purge_dead_letters(), for the caller p_caller';

-- @function async.purge_dead_letters(
COMMENT ON FUNCTION async.purge_dead_letters(text, text, interval) IS
'deletes your dead letters that match every filter given (function, reason, dead longer ago than older_than); returns how many';

/* ------------------------------------------------------------------------
 * 11. async.invoke counts duplicates itself: the function that let any
 * role forge counters for any name is gone, and the counters' table in
 * shared memory has a fixed size (C).
 * ------------------------------------------------------------------------ */
-- @function@0.8 async.invoke(
DROP FUNCTION async._note_duplicate(text);

/* ------------------------------------------------------------------------
 * 12. A reservation of a concurrency limit goes with its job, however the
 * job is deleted.
 * ------------------------------------------------------------------------ */
-- @function async._release_deleted(
REVOKE ALL ON FUNCTION async._release_deleted() FROM PUBLIC;
COMMENT ON FUNCTION async._release_deleted() IS
'internal: deletes the reservation in async.running of a running job that is deleted';
CREATE TRIGGER jobs_release_deleted
	AFTER DELETE ON async.jobs
	FOR EACH ROW WHEN (OLD.state OPERATOR(pg_catalog.=) 'running')
	EXECUTE FUNCTION async._release_deleted();
/* reservations already left behind */
DELETE FROM async.running r
 WHERE NOT EXISTS (SELECT FROM async.jobs j
					WHERE j.id = r.job_id AND j.state = 'running');

/* ------------------------------------------------------------------------
 * 13. A name stays bound to its jobs: async.unregister refuses while jobs
 * of the function run, wait (unless cancel_jobs moves them to the dead
 * letters) or tables are attached to it, and clears it as a destination
 * of other registrations.  async.register refuses a free name while other
 * roles' jobs of an earlier registration of it are unfinished (C).
 * ------------------------------------------------------------------------ */
-- @function@0.8 async._bury_jobs(
REVOKE ALL ON FUNCTION async._bury_jobs(bigint[], text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION async._bury_jobs(bigint[], text, text, text) IS
'internal: moves the unfinished jobs p_ids (those in state p_state, if given) to the dead letters with reason p_reason and message p_message, touching nothing else: for async.unregister(cancel_jobs), and for a job whose failed attempt could not be recorded (reason error)';

DROP FUNCTION async.unregister(text);
-- @function async.unregister(
COMMENT ON FUNCTION async.unregister(text, boolean) IS
'removes a registration; refused while its jobs run, while tables are attached to it, and while its jobs wait unless cancel_jobs moves them to async.dead_letters (reason unregistered). Returns false when no such name is registered.';

-- @function async._unregister(
REVOKE ALL ON FUNCTION async._unregister(text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION async._unregister(text, boolean) IS
'internal: the checks and writes behind async.unregister()';


/* ------------------------------------------------------------------------
 * 14, 16. Redrive takes a dead letter by its own id, and only the
 * caller's: another role's dead letter or job with the same event_id is
 * never touched, and is answered as a missing one is.  The enqueuer must
 * still be allowed to enqueue for the function.
 * ------------------------------------------------------------------------ */
DROP FUNCTION async._redrive(text);
-- @function@0.8 async._redrive(
REVOKE ALL ON FUNCTION async._redrive(bigint) FROM PUBLIC;
COMMENT ON FUNCTION async._redrive(bigint) IS
'internal: puts the dead letter with this id back in the queue, for async.redrive()';
COMMENT ON FUNCTION async.redrive(text) IS
'puts your latest dead letter with this event_id back in the queue with fresh attempts; false when you have none (whether or not another role has one). Needs the privileges of the role that enqueued it, which must still be allowed to enqueue for the function';

/* ------------------------------------------------------------------------
 * 15. async.stats is a security barrier: a leaky function in a query on
 * it sees no other role's jobs.
 * ------------------------------------------------------------------------ */
ALTER VIEW async.stats SET (security_barrier = true);

/* ------------------------------------------------------------------------
 * 17, 18. async.attach's condition must be one expression; the functions
 * that run as their caller resolve operators in pg_catalog only.
 * ------------------------------------------------------------------------ */
-- @function async._valid_condition(
COMMENT ON FUNCTION async._valid_condition(text) IS
'internal: raises an error unless condition is a single SQL expression, for async.attach()';

-- @function async.attach(

ALTER FUNCTION async.detach(regclass, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION async.configure(text, integer, interval[], interval, interval, integer, text, text)
	SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION async.redrive_many(text, text, timestamptz, timestamptz)
	SET search_path = pg_catalog, pg_temp;

/* ------------------------------------------------------------------------
 * Health: a registration whose handler may no longer run as its run_as is
 * reported with the missing handlers.
 * ------------------------------------------------------------------------ */
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

	/*
	 * registrations whose handler is gone or no longer a handler, or whose
	 * owner no longer has the privileges of the role it runs as
	 */
	SELECT string_agg(f.name, ', ' ORDER BY f.name) INTO v_names
	  FROM async.functions f
	  LEFT JOIN pg_proc p ON p.oid = f.handler
	 WHERE p.oid IS NULL OR p.prokind <> 'f' OR p.proretset
		OR p.proargtypes[0] <> 'jsonb'::regtype
		OR NOT (p.pronargs = 1 OR (p.pronargs = 2 AND p.proargtypes[1] = 'async.context'::regtype))
		OR NOT pg_has_role(p.proowner, f.run_as, 'USAGE')
		OR NOT has_function_privilege(f.run_as, p.oid, 'EXECUTE');
	"check" := 'handlers';
	IF v_names IS NULL THEN
		status := 'ok';
		detail := format('%s registered handlers exist', (SELECT count(*) FROM async.functions));
		hint := NULL;
	ELSE
		status := 'critical';
		detail := format('handler missing, changed or not allowed to run for: %s', v_names);
		hint := 'Register the function again with async.register(); a handler runs as a role whose privileges its owner has, and that role needs EXECUTE on it.';
	END IF;
	RETURN NEXT;
END;
$$
;

/* ------------------------------------------------------------------------
 * 6. One job's bad data cannot stop the others': a failure that cannot be
 * recorded settles that job alone as a dead letter with reason 'error', in
 * a worker's batch (C) and in the recovery of dead workers' jobs.
 * 9. The recovery runs one at a time under a lock no role can take (the
 * advisory lock any role could hold made it skip silently).
 * ------------------------------------------------------------------------ */
-- @function async._try_recovery_lock(
REVOKE ALL ON FUNCTION async._try_recovery_lock() FROM PUBLIC;
COMMENT ON FUNCTION async._try_recovery_lock() IS
'internal: takes, without waiting and until the end of the transaction, the lock that lets one async._recover() run at a time; a lock no SQL command can take';

-- @function@0.12 async._recover(

COMMENT ON COLUMN async.dead_letters.reason IS
'why the event died: exhausted (every attempt failed), expired (older than max_event_age when claimed), unregistered (its function was unregistered with cancel_jobs), error (its failed attempt could not be recorded)';

/* ------------------------------------------------------------------------
 * 3 (review). The maintenance of worker slot 0 skips rows another
 * transaction has locked, rather than wait for it: an open transaction
 * of any role must not stall retention or the release of marks.
 * ------------------------------------------------------------------------ */
CREATE OR REPLACE FUNCTION async._purge_finished(p_older_than interval, p_limit integer,
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
				 LIMIT p_limit
				   FOR UPDATE SKIP LOCKED))
		   AND j.finished_at IS NOT NULL
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

-- @function@0.10 async._unpause_jobs(
