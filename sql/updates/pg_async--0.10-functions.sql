/*
 * pg_async--0.10-functions.sql: functions as pg_async 0.10 defined them.
 *
 * The updates up to 0.10 take these definitions ("-- @function@0.10" lines,
 * see sql/assemble.sh) where 0.11 changed a function in a way the schema of
 * their own version cannot hold: 0.11's versions read the columns of limits
 * by key (async.functions.concurrency_key and key_concurrency, async.jobs.key),
 * which 0.11 adds, or have more arguments.  The update to 0.11 writes the new
 * definitions.  async._bury_jobs and async._succeed are here as 0.10 to 0.14
 * had them: 0.15's read async.jobs.key and async.running.key, which 0.11
 * adds, and the update to 0.15 writes theirs.  This file is not an install
 * script.
 */

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

	/*
	 * an event that expired before it ran, or that came too deep in a chain
	 * (a loop), is dead at once, its claim not an attempt
	 */
	IF p_reason IS NOT NULL THEN
		UPDATE async.jobs j SET
			state = 'dead', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
			finished_at = p_failed_at, last_error = p_message
		 WHERE j.id OPERATOR(pg_catalog.=) p_job_id
		   AND j.state OPERATOR(pg_catalog.=) 'running'
		RETURNING j.* INTO v_job;
		IF FOUND THEN
			new_state := 'dead';
			PERFORM async._dead_letter(v_job, p_reason);
			/* a loop stopped goes to no destination, which would carry it on */
			IF p_reason OPERATOR(pg_catalog.=) 'expired' THEN
				PERFORM async._destination(v_job, 'EventAgeExceeded',
					pg_catalog.jsonb_build_object('errorMessage', p_message));
			END IF;
		END IF;
		RETURN;
	END IF;

	/* the queued jobs of limited and of external functions are marked limited */
	SELECT f.max_attempts, f.retry_delays,
		   f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL OR f.handler IS NULL
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
		PERFORM async._dead_letter(v_job, 'exhausted');
		PERFORM async._destination(v_job, 'RetriesExhausted',
			pg_catalog.jsonb_build_object('errorMessage', p_message, 'errorType', p_sqlstate));
	END IF;
END;
$$;

CREATE FUNCTION async._functions_limit_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_was boolean := TG_OP OPERATOR(pg_catalog.<>) 'INSERT' AND
		(OLD.concurrency IS NOT NULL OR OLD.rate_limit IS NOT NULL);
	v_is boolean := TG_OP OPERATOR(pg_catalog.<>) 'DELETE' AND
		(NEW.concurrency IS NOT NULL OR NEW.rate_limit IS NOT NULL);
BEGIN
	IF v_was THEN
		/* an external function's jobs stay marked: only consumers claim them */
		IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' OR
		   (NOT v_is AND NEW.handler IS NOT NULL) THEN
			/* both statements walk an index: jobs_limited_idx, jobs_paused_idx */
			UPDATE async.jobs j SET limited = false
			 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
			   AND j.function OPERATOR(pg_catalog.=) OLD.name;
			UPDATE async.jobs j SET limited = false
			 WHERE j.paused AND j.limited
			   AND j.function OPERATOR(pg_catalog.=) OLD.name;
		END IF;
	ELSIF v_is THEN
		/* the same two indexes: jobs_ready_idx, jobs_paused_idx */
		UPDATE async.jobs j SET limited = true
		 WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		   AND j.function OPERATOR(pg_catalog.=) NEW.name;
		UPDATE async.jobs j SET limited = true
		 WHERE j.paused AND NOT j.limited AND j.finished_at IS NULL
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		   AND j.function OPERATOR(pg_catalog.=) NEW.name;
	END IF;
	/* the starts of a rate limit no longer there are forgotten */
	IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' AND OLD.rate_limit IS NOT NULL AND
	   (TG_OP OPERATOR(pg_catalog.=) 'DELETE' OR NEW.rate_limit IS NULL) THEN
		DELETE FROM async.rate_windows w WHERE w.function OPERATOR(pg_catalog.=) OLD.name;
	END IF;
	RETURN NULL;
END;
$$;

CREATE FUNCTION async._is_limited(p_function text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
	SELECT EXISTS (SELECT FROM async.functions f
					WHERE f.name OPERATOR(pg_catalog.=) p_function
					  AND (f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL
						   OR f.handler IS NULL));
$$;

CREATE FUNCTION async._unpause_jobs() RETURNS integer
    LANGUAGE sql
    AS $$
	WITH unpaused AS (
		UPDATE async.jobs j SET paused = false
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT x.id FROM async.jobs x
				WHERE x.paused AND x.function OPERATOR(pg_catalog.=) ANY (ARRAY(
					  SELECT h.name FROM async._paused_job_functions() h(name)
					   WHERE NOT EXISTS (SELECT FROM async.functions f
										  WHERE f.name OPERATOR(pg_catalog.=) h.name AND f.paused)))
				  FOR UPDATE SKIP LOCKED))
		   AND j.paused
		RETURNING 1),
	unlimited AS (
		UPDATE async.jobs j SET limited = false
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT x.id FROM async.jobs x
				WHERE x.limited AND NOT x.paused AND x.finished_at IS NULL
				  AND x.function OPERATOR(pg_catalog.=) ANY (ARRAY(
					  SELECT h.name FROM async._limited_job_functions() h(name)
					   WHERE NOT async._is_limited(h.name)))
				  FOR UPDATE SKIP LOCKED))
		   AND j.limited AND NOT j.paused
		RETURNING 1)
	SELECT ((SELECT pg_catalog.count(*) FROM unpaused) OPERATOR(pg_catalog.+)
			(SELECT pg_catalog.count(*) FROM unlimited))::integer;
$$;

CREATE FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval) RETURNS void
    LANGUAGE sql
    AS $$
	INSERT INTO async.functions AS f
		(name, handler, run_as, max_attempts, retry_delays, timeout, registered_by,
		 max_event_age, concurrency, on_success, on_failure, priority, max_depth,
		 rate_limit, rate_period)
	VALUES (p_name, p_handler, p_run_as, p_max_attempts, p_retry_delays, p_timeout, p_registered_by,
			p_max_event_age, p_concurrency, p_on_success, p_on_failure, p_priority, p_max_depth,
			p_rate_limit, p_rate_period)
	ON CONFLICT (name) DO UPDATE SET
		rate_limit = excluded.rate_limit,
		rate_period = excluded.rate_period,
		priority = excluded.priority,
		max_depth = excluded.max_depth,
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

CREATE FUNCTION async.register(handler regprocedure, name text DEFAULT NULL::text, max_attempts integer DEFAULT 3, retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[], timeout interval DEFAULT '00:01:00'::interval, run_as regrole DEFAULT NULL::regrole, max_event_age interval DEFAULT '06:00:00'::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text, priority integer DEFAULT 0, max_depth integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT '00:00:01'::interval) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_register';

CREATE FUNCTION async.register_external(name text, max_attempts integer DEFAULT 3, retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[], timeout interval DEFAULT '00:01:00'::interval, run_as regrole DEFAULT NULL::regrole, max_event_age interval DEFAULT '06:00:00'::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text, priority integer DEFAULT 0, max_depth integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT '00:00:01'::interval) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_register_external';

CREATE FUNCTION async.configure(name text, max_attempts integer DEFAULT NULL::integer, retry_delays interval[] DEFAULT NULL::interval[], timeout interval DEFAULT NULL::interval, max_event_age interval DEFAULT NULL::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text, priority integer DEFAULT NULL::integer, max_depth integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT NULL::interval) RETURNS text
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
	IF configure.rate_limit OPERATOR(pg_catalog.<) -1 THEN
		RAISE EXCEPTION 'rate_limit must be -1 (no limit) or 1 to 10000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	f.rate_limit := CASE WHEN configure.rate_limit IS NULL THEN f.rate_limit
						 WHEN configure.rate_limit OPERATOR(pg_catalog.=) -1 THEN NULL
						 ELSE configure.rate_limit END;
	f.rate_period := COALESCE(configure.rate_period, f.rate_period);
	f.max_depth := CASE WHEN configure.max_depth IS NULL THEN f.max_depth
						WHEN configure.max_depth OPERATOR(pg_catalog.=) -1 THEN NULL
						ELSE configure.max_depth END;
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
			f.run_as, f.max_event_age, f.concurrency, f.on_success, f.on_failure,
			COALESCE(configure.priority, f.priority), f.max_depth, f.rate_limit, f.rate_period);
	END IF;
	RETURN async.register(f.handler::pg_catalog.regprocedure, f.name, f.max_attempts,
		f.retry_delays, f.timeout, f.run_as, f.max_event_age, f.concurrency,
		f.on_success, f.on_failure, COALESCE(configure.priority, f.priority), f.max_depth,
		f.rate_limit, f.rate_period);
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
	v_started integer := 0;
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
	IF v_f.rate_limit IS NOT NULL THEN
		/* the same lock keeps the window's count current */
		v_n := LEAST(v_n, v_f.rate_limit OPERATOR(pg_catalog.-)
			async._rate_used(p_function, v_f.rate_period, v_now));
		IF v_n OPERATOR(pg_catalog.<=) 0 THEN
			RETURN;
		END IF;
	END IF;
	/*
	 * The queued jobs of an external function wait in jobs_limited_idx,
	 * by function and priority, and keep that mark while they run: the
	 * workers' claims and their recovery never see them.  As the workers'
	 * claims, three walks by priority each take what the ones before
	 * left, so that the jobs of priority 0 have no other in their way.
	 */
	FOR job_id, event_id, payload, attempt, deadline, lease, expired, wait_us IN
	WITH urgent AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		   AND j.priority OPERATOR(pg_catalog.<) 0
		 ORDER BY j.priority, j.run_at LIMIT v_n
		   FOR UPDATE SKIP LOCKED),
	ready AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		   AND j.priority OPERATOR(pg_catalog.=) 0
		 ORDER BY j.run_at
		 LIMIT v_n OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM urgent)
		   FOR UPDATE SKIP LOCKED),
	later AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		   AND j.priority OPERATOR(pg_catalog.>) 0
		 ORDER BY j.priority, j.run_at
		 LIMIT v_n OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM urgent)
				   OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM ready)
		   FOR UPDATE SKIP LOCKED),
	picked AS (
		SELECT u.id FROM urgent u UNION ALL SELECT r.id FROM ready r
		UNION ALL SELECT l.id FROM later l),
	claimed AS (
		UPDATE async.jobs j
		   SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1,
			   started_at = v_now, worker_pid = p_pid, suspect = false
		  FROM picked p
		 WHERE j.id OPERATOR(pg_catalog.=) p.id
		RETURNING j.id, j.event_id, j.payload, j.attempts, j.run_at, j.priority,
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
	 ORDER BY c.priority, c.run_at, c.id
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
		ELSE
			v_started := v_started OPERATOR(pg_catalog.+) 1;
		END IF;
		RETURN NEXT;
	END LOOP;
	IF v_f.rate_limit IS NOT NULL AND v_started OPERATOR(pg_catalog.>) 0 THEN
		PERFORM async._rate_note(ARRAY[p_function], ARRAY[v_started], v_now);
	END IF;
END;
$$;

CREATE FUNCTION async._next_external_run(p_function text) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
	/*
	 * by range of priorities, each an index range of jobs_limited_idx; not
	 * before its rate limit has room
	 */
	SELECT GREATEST(n.due, async._rate_room_at(p_function, pg_catalog.clock_timestamp()))
	  FROM (SELECT LEAST(
		(SELECT j.run_at FROM async.jobs j
		  WHERE j.function OPERATOR(pg_catalog.=) p_function
			AND j.limited AND NOT j.paused AND j.finished_at IS NULL
			AND j.state OPERATOR(pg_catalog.=) 'queued'
			AND j.priority OPERATOR(pg_catalog.=) 0
		  ORDER BY j.run_at LIMIT 1),
		(SELECT pg_catalog.min(j.run_at) FROM async.jobs j
		  WHERE j.function OPERATOR(pg_catalog.=) p_function
			AND j.limited AND NOT j.paused AND j.finished_at IS NULL
			AND j.state OPERATOR(pg_catalog.=) 'queued'
			AND j.priority OPERATOR(pg_catalog.<) 0),
		(SELECT pg_catalog.min(j.run_at) FROM async.jobs j
		  WHERE j.function OPERATOR(pg_catalog.=) p_function
			AND j.limited AND NOT j.paused AND j.finished_at IS NULL
			AND j.state OPERATOR(pg_catalog.=) 'queued'
			AND j.priority OPERATOR(pg_catalog.>) 0)) AS due) n
	 WHERE n.due IS NOT NULL;
$$;

CREATE FUNCTION async._bury_jobs(p_ids bigint[], p_reason text, p_message text, p_state text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_job async.jobs;
BEGIN
	DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY (p_ids);
	FOR v_job IN
		UPDATE async.jobs j SET state = 'dead', finished_at = pg_catalog.now(),
			   last_error = p_message, paused = false, limited = false
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (p_ids) AND j.finished_at IS NULL
		   AND (p_state IS NULL OR j.state OPERATOR(pg_catalog.=) p_state)
		RETURNING j.*
	LOOP
		PERFORM async._dead_letter(v_job, p_reason);
	END LOOP;
END;
$$;

CREATE FUNCTION async._succeed(p_ids bigint[], p_results jsonb[], p_destinations boolean, p_finished timestamp with time zone[], p_duration_us bigint[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_now timestamp with time zone := pg_catalog.clock_timestamp();
	v_done bigint[];
BEGIN
	/*
	 * The one place where jobs succeed: a worker's batch, with the end and
	 * run time of each handler, and async.complete(), whose jobs end now
	 * (p_finished and p_duration_us NULL).  One statement when no
	 * destination waits: the rows the update returns are kept only for
	 * those.
	 */
	WITH released AS (
		DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY (p_ids)),
	done AS (
		UPDATE async.jobs j SET state = 'succeeded',
			   finished_at = COALESCE(d.finished_at, v_now),
			   duration = COALESCE(d.duration_us OPERATOR(pg_catalog.*) '1 microsecond'::interval,
								   v_now OPERATOR(pg_catalog.-) j.started_at),
			   result = d.result
		  FROM ROWS FROM (pg_catalog.unnest(p_ids), pg_catalog.unnest(p_results),
						  pg_catalog.unnest(p_finished), pg_catalog.unnest(p_duration_us))
			   AS d(id, result, finished_at, duration_us)
		 WHERE j.id OPERATOR(pg_catalog.=) d.id
		RETURNING j.id)
	SELECT pg_catalog.array_agg(d.id) INTO v_done FROM done d WHERE p_destinations;

	IF v_done IS NOT NULL THEN
		PERFORM async._destination(j, 'Success', j.result)
		   FROM async.jobs j
		  WHERE j.id OPERATOR(pg_catalog.=) ANY (v_done)
		  ORDER BY j.id;
	END IF;
END;
$$;
