/*
 * pg_async--0.8-functions.sql: functions as pg_async 0.8 defined them.
 *
 * The updates up to 0.8 take these definitions ("-- @function@0.8" lines,
 * see sql/assemble.sh) where a later version changed a function in a way
 * the schema of their own version cannot hold: a new argument, or a column
 * that does not exist yet.  The update that made the change writes the
 * new definition.  This file is not an install script.
 */

CREATE FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text) RETURNS void
    LANGUAGE sql
    AS $$
	INSERT INTO async.functions AS f
		(name, handler, run_as, max_attempts, retry_delays, timeout, registered_by,
		 max_event_age, concurrency, on_success, on_failure)
	VALUES (p_name, p_handler, p_run_as, p_max_attempts, p_retry_delays, p_timeout, p_registered_by,
			p_max_event_age, p_concurrency, p_on_success, p_on_failure)
	ON CONFLICT (name) DO UPDATE SET
		on_success = excluded.on_success,
		on_failure = excluded.on_failure,
		handler = excluded.handler,
		run_as = excluded.run_as,
		max_attempts = excluded.max_attempts,
		retry_delays = excluded.retry_delays,
		timeout = excluded.timeout,
		max_event_age = excluded.max_event_age,
		concurrency = excluded.concurrency,
		registered_by = excluded.registered_by,
		updated_at = pg_catalog.now();
$$;

CREATE FUNCTION async.invoke(function text, payload jsonb, event_id text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT clock_timestamp()) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_invoke';

CREATE FUNCTION async._bury_jobs(p_ids bigint[], p_reason text, p_message text, p_state text) RETURNS void
    LANGUAGE sql
    AS $$
	WITH dead AS (
		UPDATE async.jobs j SET state = 'dead', finished_at = pg_catalog.now(),
			   last_error = p_message, paused = false, limited = false
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (p_ids) AND j.finished_at IS NULL
		   AND (p_state IS NULL OR j.state OPERATOR(pg_catalog.=) p_state)
		RETURNING j.*),
	released AS (
		DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY (p_ids))
	INSERT INTO async.dead_letters
		(job_id, event_id, function, payload, attempts, errors, reason,
		 last_error, enqueued_at, enqueued_by, dead_at)
	SELECT d.id, d.event_id, d.function, d.payload, d.attempts,
		   COALESCE(d.errors, '[]'::jsonb), p_reason, d.last_error,
		   d.enqueued_at, d.enqueued_by, d.finished_at
	  FROM dead d;
$$;

CREATE FUNCTION async._redrive(p_dead_letter_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_dl async.dead_letters;
	v_handler regprocedure;
	v_registered_at timestamptz;
	v_run_as regrole;
BEGIN
	DELETE FROM async.dead_letters d WHERE d.id OPERATOR(pg_catalog.=) p_dead_letter_id
	RETURNING d.* INTO v_dl;
	IF NOT FOUND THEN
		RETURN false;
	END IF;

	SELECT f.handler, f.registered_at, f.run_as INTO v_handler, v_registered_at, v_run_as
	  FROM async.functions f
	 WHERE f.name OPERATOR(pg_catalog.=) v_dl.function;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'function "%" is not registered with pg_async', v_dl.function
			USING ERRCODE = 'undefined_function',
				  HINT = 'Register it again, then redrive the event.';
	END IF;
	/*
	 * a name registered anew since the event died may belong to someone
	 * else: the event goes to it only if its enqueuer has the rights of
	 * the role the new registration runs as
	 */
	IF v_registered_at OPERATOR(pg_catalog.>) v_dl.dead_at
	   AND NOT COALESCE(pg_catalog.pg_has_role(v_dl.enqueued_by::pg_catalog.oid,
											  v_run_as::pg_catalog.oid, 'USAGE'), false) THEN
		RAISE EXCEPTION 'function "%" was registered again after event "%" was dead-lettered', v_dl.function, v_dl.event_id
			USING ERRCODE = 'object_in_use',
				  DETAIL = pg_catalog.format('Its jobs now run as role %s, whose privileges role %s lacks.',
											 v_run_as, v_dl.enqueued_by),
				  HINT = 'To hand the payload to the new registration, enqueue it again with async.invoke().';
	END IF;
	IF NOT async._may_enqueue(v_dl.enqueued_by, v_handler, v_run_as) THEN
		RAISE EXCEPTION 'role % may not enqueue for function "%"', v_dl.enqueued_by, v_dl.function
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Redriving needs the right to enqueue that the event needed: EXECUTE on the function''s handler, or the privileges of an external function''s run_as role.';
	END IF;

	UPDATE async.jobs j
	   SET state = 'queued', attempts = 0, run_at = pg_catalog.now(),
		   finished_at = NULL, last_error = NULL, errors = NULL, suspect = false,
		   limited = async._is_limited(j.function)
	 WHERE j.id OPERATOR(pg_catalog.=) v_dl.job_id
	   AND j.event_id OPERATOR(pg_catalog.=) v_dl.event_id
	   AND j.state OPERATOR(pg_catalog.=) 'dead';
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM async.jobs j WHERE j.event_id OPERATOR(pg_catalog.=) v_dl.event_id) THEN
			RAISE EXCEPTION 'event_id "%" is taken by another job', v_dl.event_id
				USING ERRCODE = 'unique_violation',
					  HINT = 'Redrive it once that job has finished and pg_async.retention has passed.';
		END IF;
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

CREATE FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint) RETURNS SETOF record
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_f async.functions;
	v_n integer;
	/* not now(): a consumer's transaction may have begun before the jobs came */
	v_now timestamp with time zone := pg_catalog.clock_timestamp();
	v_deadline timestamp with time zone;
BEGIN
	SELECT * INTO v_f FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) p_function;
	IF NOT FOUND OR v_f.handler IS NOT NULL OR v_f.paused THEN
		RETURN;
	END IF;
	v_n := p_max;
	v_deadline := v_now OPERATOR(pg_catalog.+) v_f.timeout;
	IF v_f.concurrency IS NOT NULL THEN
		/* the caller holds the function's claim lock: the count is current */
		v_n := LEAST(v_n, v_f.concurrency OPERATOR(pg_catalog.-)
			(SELECT pg_catalog.count(*)::integer FROM async.running x
			  WHERE x.function OPERATOR(pg_catalog.=) p_function));
		IF v_n OPERATOR(pg_catalog.<=) 0 THEN
			RETURN;
		END IF;
	END IF;
	/*
	 * The queued jobs of an external function wait in jobs_limited_idx,
	 * by function, and keep that mark while they run: the workers' claims
	 * and their recovery never see them.
	 */
	FOR job_id, event_id, payload, attempt, deadline, lease, expired, wait_us IN
	WITH picked AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		 ORDER BY j.run_at LIMIT v_n
		   FOR UPDATE SKIP LOCKED),
	claimed AS (
		UPDATE async.jobs j
		   SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1,
			   started_at = v_now, worker_pid = p_pid, suspect = false
		  FROM picked p
		 WHERE j.id OPERATOR(pg_catalog.=) p.id
		RETURNING j.id, j.event_id, j.payload, j.attempts, j.run_at,
			   v_now OPERATOR(pg_catalog.-) GREATEST(j.enqueued_at, CASE WHEN j.errors IS NULL THEN j.run_at
				   ELSE (j.errors OPERATOR(pg_catalog.->) 0 OPERATOR(pg_catalog.->>) 'at')::pg_catalog.timestamptz END)
				 OPERATOR(pg_catalog.>) v_f.max_event_age AS too_old,
			   pg_catalog.gen_random_uuid() AS lease),
	leased AS (
		INSERT INTO async.running (job_id, function, lease, deadline)
		SELECT c.id, p_function, c.lease, v_deadline
		  FROM claimed c WHERE NOT c.too_old)
	SELECT c.id, c.event_id, c.payload, c.attempts,
		   CASE WHEN NOT c.too_old THEN v_deadline END,
		   CASE WHEN NOT c.too_old THEN c.lease END,
		   CASE WHEN c.too_old THEN
				pg_catalog.format('event is older than max_event_age (%s)', v_f.max_event_age) END,
		   (EXTRACT(epoch FROM v_now OPERATOR(pg_catalog.-) c.run_at)
			OPERATOR(pg_catalog.*) 1000000)::bigint
	  FROM claimed c
	 ORDER BY c.run_at, c.id
	LOOP
		/* an event that expired before it ran is dead at once, unrun */
		IF expired IS NOT NULL THEN
			IF pg_catalog.current_setting('pg_async.attempts_retention') OPERATOR(pg_catalog.<>) '0' THEN
				INSERT INTO async.attempt_log
					(job_id, event_id, function, attempt, worker_pid, started_at, duration,
					 outcome, error, sqlstate, enqueued_by)
				SELECT j.id, j.event_id, j.function, j.attempts OPERATOR(pg_catalog.-) 1, p_pid,
					   v_now, NULL, 'expired', expired, NULL, j.enqueued_by
				  FROM async.jobs j WHERE j.id OPERATOR(pg_catalog.=) job_id;
			END IF;
			PERFORM async._fail(job_id, expired, NULL, v_now, 'expired');
		END IF;
		RETURN NEXT;
	END LOOP;
END;
$$;

CREATE FUNCTION async._next_external_run(p_function text) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
	SELECT j.run_at FROM async.jobs j
	 WHERE j.function OPERATOR(pg_catalog.=) p_function
	   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
	   AND j.state OPERATOR(pg_catalog.=) 'queued'
	 ORDER BY j.run_at LIMIT 1;
$$;

CREATE FUNCTION async.register_external(name text, max_attempts integer DEFAULT 3, retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[], timeout interval DEFAULT '00:01:00'::interval, run_as regrole DEFAULT NULL::regrole, max_event_age interval DEFAULT '06:00:00'::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_register_external';

CREATE FUNCTION async.configure(name text, max_attempts integer DEFAULT NULL::integer, retry_delays interval[] DEFAULT NULL::interval[], timeout interval DEFAULT NULL::interval, max_event_age interval DEFAULT NULL::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	f async.functions;
BEGIN
	SELECT * INTO f FROM async.functions x WHERE x.name OPERATOR(pg_catalog.=) configure.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'function "%" is not registered with pg_async', configure.name
			USING ERRCODE = 'undefined_function',
				  HINT = 'Register it with async.register().';
	END IF;
	IF configure.concurrency OPERATOR(pg_catalog.<) -1 THEN
		RAISE EXCEPTION 'concurrency must be -1 (no limit), 0 (hold) or more'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	f.max_attempts := COALESCE(configure.max_attempts, f.max_attempts);
	f.retry_delays := COALESCE(configure.retry_delays, f.retry_delays);
	f.timeout := COALESCE(configure.timeout, f.timeout);
	f.max_event_age := COALESCE(configure.max_event_age, f.max_event_age);
	f.concurrency := CASE WHEN configure.concurrency IS NULL THEN f.concurrency
						  WHEN configure.concurrency OPERATOR(pg_catalog.=) -1 THEN NULL
						  ELSE configure.concurrency END;
	f.on_success := NULLIF(COALESCE(configure.on_success, f.on_success), '');
	f.on_failure := NULLIF(COALESCE(configure.on_failure, f.on_failure), '');
	/* an external function has no handler */
	IF f.handler IS NULL THEN
		RETURN async.register_external(f.name, f.max_attempts, f.retry_delays, f.timeout,
			f.run_as, f.max_event_age, f.concurrency, f.on_success, f.on_failure);
	END IF;
	RETURN async.register(f.handler::pg_catalog.regprocedure, f.name, f.max_attempts,
		f.retry_delays, f.timeout, f.run_as, f.max_event_age, f.concurrency,
		f.on_success, f.on_failure);
END;
$$;

CREATE FUNCTION async._fail(p_job_id bigint, p_message text, p_sqlstate text, p_failed_at timestamp with time zone, p_reason text DEFAULT NULL::text, OUT new_state text, OUT retry_at timestamp with time zone) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_job async.jobs;
	v_max integer;
	v_delays interval[];
	v_limited boolean;
BEGIN
	DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) p_job_id;

	/* an event that expired before it ran is dead at once, its claim not an attempt */
	IF p_reason IS NOT NULL THEN
		UPDATE async.jobs j SET
			state = 'dead', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
			finished_at = p_failed_at, last_error = p_message
		 WHERE j.id OPERATOR(pg_catalog.=) p_job_id
		   AND j.state OPERATOR(pg_catalog.=) 'running'
		RETURNING j.* INTO v_job;
		IF FOUND THEN
			new_state := 'dead';
			INSERT INTO async.dead_letters
				(job_id, event_id, function, payload, attempts, errors, reason,
				 last_error, enqueued_at, enqueued_by, dead_at)
			VALUES (v_job.id, v_job.event_id, v_job.function, v_job.payload,
					v_job.attempts, COALESCE(v_job.errors, '[]'::jsonb), p_reason, p_message,
					v_job.enqueued_at, v_job.enqueued_by, p_failed_at);
			PERFORM async._destination(v_job, 'EventAgeExceeded',
				pg_catalog.jsonb_build_object('errorMessage', p_message));
		END IF;
		RETURN;
	END IF;

	/* the queued jobs of limited and of external functions are marked limited */
	SELECT f.max_attempts, f.retry_delays, f.concurrency IS NOT NULL OR f.handler IS NULL
	  INTO v_max, v_delays, v_limited
	  FROM async.jobs j JOIN async.functions f ON f.name OPERATOR(pg_catalog.=) j.function
	 WHERE j.id OPERATOR(pg_catalog.=) p_job_id;
	/* an unregistered function keeps the default policy */
	v_max := COALESCE(v_max, 3);
	v_delays := COALESCE(v_delays, '{1 minute,2 minutes}'::interval[]);

	UPDATE async.jobs j SET
		state = CASE WHEN j.attempts OPERATOR(pg_catalog.>=) v_max THEN 'dead' ELSE 'queued' END,
		run_at = CASE WHEN j.attempts OPERATOR(pg_catalog.>=) v_max THEN j.run_at
				 ELSE p_failed_at OPERATOR(pg_catalog.+) COALESCE(
						v_delays[LEAST(j.attempts, pg_catalog.cardinality(v_delays))],
						'0'::interval) END,
		finished_at = CASE WHEN j.attempts OPERATOR(pg_catalog.>=) v_max THEN p_failed_at END,
		limited = j.attempts OPERATOR(pg_catalog.<) v_max AND COALESCE(v_limited, false),
		last_error = p_message,
		errors = COALESCE(j.errors, '[]'::jsonb) OPERATOR(pg_catalog.||)
			pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
				'attempt', j.attempts, 'at', p_failed_at,
				'message', p_message, 'sqlstate', p_sqlstate))
	 WHERE j.id OPERATOR(pg_catalog.=) p_job_id
	   AND j.state OPERATOR(pg_catalog.=) 'running'
	RETURNING j.* INTO v_job;

	IF NOT FOUND THEN
		RETURN;
	END IF;
	new_state := v_job.state;
	IF v_job.state OPERATOR(pg_catalog.=) 'queued' THEN
		retry_at := v_job.run_at;
	END IF;

	IF v_job.state OPERATOR(pg_catalog.=) 'dead' THEN
		INSERT INTO async.dead_letters
			(job_id, event_id, function, payload, attempts, errors, reason,
			 last_error, enqueued_at, enqueued_by, dead_at)
		VALUES (v_job.id, v_job.event_id, v_job.function, v_job.payload,
				v_job.attempts, v_job.errors, 'exhausted', v_job.last_error,
				v_job.enqueued_at, v_job.enqueued_by, p_failed_at);
		PERFORM async._destination(v_job, 'RetriesExhausted',
			pg_catalog.jsonb_build_object('errorMessage', p_message, 'errorType', p_sqlstate));
	END IF;
END;
$$;
