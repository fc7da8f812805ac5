/* pg_async--0.6--0.7.sql: update of pg_async from 0.6 to 0.7 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.7'" to load this file. \quit

/*
 * 0.7: the failed, crashed and expired attempts are part of a job's
 * history, and pg_dump keeps them with the jobs (a dump restored into a
 * new major version showed jobs and dead letters without their attempts).
 */
SELECT pg_catalog.pg_extension_config_dump('async.attempt_log', '');

/*
 * A job's run_at defaults to the time of its row's insertion, no longer to
 * the start of its transaction: the jobs of one transaction are due in the
 * order they were enqueued, each at its own time.  Jobs that share a
 * run_at cannot be told apart by the ready floor, and while the xmin
 * horizon was held, each claim of a batch enqueued in one transaction
 * walked the entries of every job of the batch already run.
 */
ALTER TABLE async.jobs ALTER COLUMN run_at SET DEFAULT pg_catalog.clock_timestamp();
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async.invoke(function text, payload jsonb, event_id text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT clock_timestamp()) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_invoke';

/*
 * async.health() on a standby says that it is one.  Its launcher starts
 * only once recovery ends, so its "workers" check said that no launcher
 * runs, with a hint to add pg_async to shared_preload_libraries.
 */
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async.health(ready_age_warning interval DEFAULT '00:01:00'::interval, xmin_age_warning interval DEFAULT '00:05:00'::interval) RETURNS TABLE("check" text, status text, detail text, hint text)
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	v_workers integer;
	v_launcher integer;
	v_age interval;
	v_n bigint;
	v_prev bigint;
	v_names text;
	v_dead bigint;
	v_live bigint;
	v_who text;
	v_slots text;
	v_sweep_ms double precision;
BEGIN
	/* the launcher and the workers, serving this database */
	SELECT count(*) INTO v_launcher FROM pg_stat_activity WHERE backend_type = 'pg_async launcher';
	SELECT count(*) INTO v_workers FROM pg_stat_activity
	 WHERE backend_type = 'pg_async worker' AND datname = current_database();
	"check" := 'workers';
	IF pg_is_in_recovery() THEN
		/* the launcher starts once recovery ends: on a promotion */
		status := 'ok';
		detail := 'a standby: pg_async runs no workers until it is promoted';
		hint := NULL;
	ELSIF v_launcher = 0 THEN
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
			AND j.state = 'queued' AND j.run_at <= now()
			/* from the ready floor, as the claims walk */
			AND j.run_at >= (SELECT r.floor FROM async._ready_floor() r)),
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

	/*
	 * what holds back the xmin horizon, which keeps the dead rows of
	 * async.jobs: the oldest transaction of a session (a standby's
	 * hot_standby_feedback shows as its walsender's) or a prepared one, and
	 * any replication slot that holds an xmin; and what it costs the queue
	 */
	SELECT h.who, h.age INTO v_who, v_age FROM (
		SELECT format('process %s (%s, user %s, application %L, %s)', a.pid, a.backend_type,
					  a.usename, a.application_name, a.state) AS who,
			   now() - COALESCE(a.xact_start, a.backend_start) AS age
		  FROM pg_stat_activity a
		 WHERE a.backend_xmin IS NOT NULL AND a.pid <> pg_backend_pid()
		   AND (a.xact_start IS NOT NULL OR a.backend_type = 'walsender')
		UNION ALL
		SELECT format('prepared transaction %L (owner %s)', p.gid, p.owner), now() - p.prepared
		  FROM pg_prepared_xacts p) h
	 ORDER BY h.age DESC LIMIT 1;
	SELECT string_agg(format('replication slot %L holds it back by %s transactions',
							 s.slot_name, age(s.xmin)), '; ' ORDER BY age(s.xmin) DESC)
	  INTO v_slots FROM pg_replication_slots s WHERE s.xmin IS NOT NULL;
	SELECT t.n_dead_tup INTO v_dead FROM pg_stat_user_tables t WHERE t.relid = 'async.jobs'::regclass;
	SELECT r.sweep_ms INTO v_sweep_ms FROM async._ready_floor() r;
	"check" := 'xmin_horizon';
	IF v_age IS NULL OR v_age <= xmin_age_warning THEN
		status := CASE WHEN v_slots IS NULL THEN 'ok' ELSE 'warning' END;
		detail := COALESCE(v_slots, 'no long transaction holds back vacuum');
		hint := CASE WHEN v_slots IS NULL THEN NULL
				ELSE 'Dead rows of async.jobs cannot be vacuumed while a slot holds back the xmin horizon; drop a slot nobody uses.' END;
	ELSE
		status := CASE WHEN v_age > xmin_age_warning * 12 THEN 'critical' ELSE 'warning' END;
		detail := format('%s has held a snapshot for %s; async.jobs has %s dead rows (%s) that vacuum cannot remove meanwhile; claims skip them, but a walk of every ready job took %s ms',
						 v_who, date_trunc('second', v_age), COALESCE(v_dead, 0),
						 pg_size_pretty(pg_total_relation_size('async.jobs')),
						 round(COALESCE(v_sweep_ms, 0)::numeric, 1))
				  || COALESCE('; ' || v_slots, '');
		hint := 'End that transaction (pg_terminate_backend, or COMMIT PREPARED / ROLLBACK PREPARED): the queue grows until it ends.';
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
$$;

/*
 * Periodic events through pg_cron: async.schedule() makes a pg_cron job
 * that enqueues an event at each tick, async.unschedule() removes it,
 * async.schedules lists them.  pg_cron stays optional: without it the
 * functions raise an error with a hint, and the view is empty.
 */
-- @function async._cron_unusable(
-- @function async._require_cron(
-- @function async._schedules(
-- @function async.schedule(
-- @function async.unschedule(

COMMENT ON FUNCTION async._cron_unusable() IS 'internal: why the caller cannot schedule through pg_cron (not installed, no usage of schema cron), or NULL when it can';
COMMENT ON FUNCTION async._require_cron() IS 'internal: raises an error with a hint when pg_cron is not installed in this database, or the caller may not use it';
COMMENT ON FUNCTION async._schedules() IS 'internal: the schedules of async.schedules, read from pg_cron; none without pg_cron';
COMMENT ON FUNCTION async.schedule(name text, schedule text, function text, payload jsonb) IS 'makes a pg_cron job, named async:<name>, that enqueues an event for the function at each tick of the schedule (a cron line, or pg_cron''s ''N seconds''), with event_id <name>:<tick time in UTC> so that a tick run twice enqueues once; it runs as you, with your right to enqueue. Scheduling again under the same name replaces the schedule. Returns the pg_cron job id';
COMMENT ON FUNCTION async.unschedule(name text) IS 'removes your schedule of that name (its pg_cron job); false when you have none';

CREATE VIEW async.schedules AS
 SELECT s.name, s.schedule, s.function, s.payload, s.active, s.jobid, s.username,
    s.last_start, s.last_end, s.last_status, s.last_message
   FROM async._schedules() s(name, schedule, function, payload, active, jobid, username, last_start, last_end, last_status, last_message);

COMMENT ON VIEW async.schedules IS 'the periodic events made with async.schedule(): yours (every role''s for a superuser), with the last run that pg_cron recorded; empty without pg_cron';

GRANT SELECT ON TABLE async.schedules TO PUBLIC;

/*
 * A full disk, or another error that says nothing of the job, no longer
 * makes recovery dead-letter the job it could not charge: it is left for
 * the next round.
 */
-- @function async._recover(
