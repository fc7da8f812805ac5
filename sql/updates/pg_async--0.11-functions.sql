/*
 * pg_async--0.11-functions.sql: functions as pg_async 0.11 defined them.
 *
 * The updates up to 0.11 take these definitions ("-- @function@0.11" lines,
 * see sql/assemble.sh) where 0.12 changed a function in a way the schema of
 * their own version cannot hold: 0.12's async.health() asks
 * async._database_served(), which 0.12 adds.  The update to 0.12 writes
 * the new definitions.  This file is not an install script.
 */

CREATE FUNCTION async.health(ready_age_warning interval DEFAULT '00:01:00'::interval, xmin_age_warning interval DEFAULT '00:05:00'::interval) RETURNS TABLE("check" text, status text, detail text, hint text)
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
	 * jobs_ready_idx, the first of jobs_priority_idx, and the first of each
	 * other limited function in jobs_limited_idx (of priority 0, and of the
	 * others)
	 */
	SELECT now() - LEAST(
		(SELECT min(j.run_at) FROM async.jobs j
		  WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			AND j.state = 'queued' AND j.run_at <= now() AND j.priority = 0
			/* from the ready floor, as the claims walk */
			AND j.run_at >= (SELECT r.floor FROM async._ready_floor() r)),
		(SELECT min(j.run_at) FROM async.jobs j
		  WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			AND j.state = 'queued' AND j.run_at <= now() AND j.priority <> 0),
		(SELECT min(x.run_at) FROM async.functions f CROSS JOIN LATERAL (
			SELECT j.run_at FROM async.jobs j
			 WHERE j.function = f.name AND j.limited AND NOT j.paused
			   AND j.finished_at IS NULL AND j.state = 'queued' AND j.run_at <= now()
			   AND j.priority = 0
			 ORDER BY j.run_at LIMIT 1) x
		  WHERE f.concurrency > 0 AND NOT f.paused),
		(SELECT min(j.run_at) FROM async.functions f JOIN async.jobs j
			ON j.function = f.name AND j.limited AND NOT j.paused
		   AND j.finished_at IS NULL AND j.state = 'queued' AND j.run_at <= now()
		   AND (j.priority < 0 OR j.priority > 0)
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
