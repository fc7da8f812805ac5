/* pg_async--0.7--0.8.sql: update of pg_async from 0.7 to 0.8 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.8'" to load this file. \quit

/*
 * 0.8: external functions, whose jobs consumers outside the server run
 * (async.register_external, async.claim, async.complete, async.fail,
 * async.heartbeat).  Their registration has no handler; their claimed
 * jobs hold a lease, with its deadline, in async.running.
 */
ALTER TABLE async.functions ALTER COLUMN handler DROP NOT NULL;

COMMENT ON TABLE async.functions IS 'pg_async registrations: which SQL function (handler) runs for a function name, or that consumers outside the server run its jobs, as which role, with which retry policy. Written by async.register(), async.register_external() and async.unregister().';
COMMENT ON COLUMN async.functions.handler IS 'the handler function, bound by OID, or NULL for an external function (async.register_external), whose jobs consumers claim: one dropped and created again, by anyone, is not it, and the jobs then fail until the function is registered again. pg_dump writes it as a signature, which a restore binds again';
COMMENT ON COLUMN async.functions.run_as IS 'role the handler runs as; for an external function, the role whose privileges claiming and enqueueing its jobs need';

ALTER TABLE async.running ADD COLUMN lease uuid, ADD COLUMN deadline timestamp with time zone;

COMMENT ON TABLE async.running IS 'internal: the claimed, unfinished jobs of functions with a concurrency limit, and of external functions; claims count them under one lock';
COMMENT ON COLUMN async.running.lease IS 'the lease of a job claimed with async.claim(): async.complete(), async.fail() and async.heartbeat() act only with it; NULL for a worker''s claim';
COMMENT ON COLUMN async.running.deadline IS 'when the lease of an external job expires: its attempt then fails with "lease expired"';
SELECT pg_catalog.pg_extension_config_dump('async.running', 'WHERE lease IS NOT NULL');

/* the internal functions behind them, run as the extension's owner */
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint) RETURNS SETOF record
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
COMMENT ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint) IS 'internal: the claim behind async.claim(): marks up to p_max ready jobs of an external function running and gives each a lease; a job older than max_event_age is dead-lettered instead, and returned without a lease, with the reason in expired';
REVOKE ALL ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint) FROM PUBLIC;

-- @function async._complete_external(
COMMENT ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint) IS 'internal: the writes behind async.complete() and async.complete_many(): the jobs whose lease is still theirs succeed with their results';
REVOKE ALL ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint) FROM PUBLIC;

-- @function async._expire_leases(
COMMENT ON FUNCTION async._expire_leases() IS 'internal: fails the attempts of external jobs whose lease expired, for the worker of slot 0; returns how many';
REVOKE ALL ON FUNCTION async._expire_leases() FROM PUBLIC;

-- @function async._expired_leases(
COMMENT ON FUNCTION async._expired_leases(p_function text, p_limit integer) IS 'internal: leases of external jobs past their deadline (of one function, or all), locked, for their attempts to be failed';
REVOKE ALL ON FUNCTION async._expired_leases(p_function text, p_limit integer) FROM PUBLIC;

-- @function async._fail_external(
COMMENT ON FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) IS 'internal: the writes behind async.fail() and the expiry of leases: a failed attempt of a job whose lease is still its own, recorded, then retried (after p_retry_after if given) or dead-lettered';
REVOKE ALL ON FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) FROM PUBLIC;

-- @function async._heartbeat_external(
COMMENT ON FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) IS 'internal: the write behind async.heartbeat(): the deadline of a lease that is still the job''s moves to now plus the function''s timeout';
REVOKE ALL ON FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) FROM PUBLIC;

-- @function async._lease_roles(
COMMENT ON FUNCTION async._lease_roles(p_ids bigint[]) IS 'internal: the functions of the leased jobs among p_ids, and the roles whose privileges finishing them needs';
REVOKE ALL ON FUNCTION async._lease_roles(p_ids bigint[]) FROM PUBLIC;

/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async._next_external_run(p_function text) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    AS $$
	SELECT j.run_at FROM async.jobs j
	 WHERE j.function OPERATOR(pg_catalog.=) p_function
	   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
	   AND j.state OPERATOR(pg_catalog.=) 'queued'
	 ORDER BY j.run_at LIMIT 1;
$$;
COMMENT ON FUNCTION async._next_external_run(p_function text) IS 'internal: when the next queued job of an external function is due, for async.claim() to wake then';
REVOKE ALL ON FUNCTION async._next_external_run(p_function text) FROM PUBLIC;

/* the API of consumers */
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async.register_external(name text, max_attempts integer DEFAULT 3, retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[], timeout interval DEFAULT '00:01:00'::interval, run_as regrole DEFAULT NULL::regrole, max_event_age interval DEFAULT '06:00:00'::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_register_external';
COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';

-- @function async.claim(
COMMENT ON FUNCTION async.claim(function text, max_jobs integer, wait interval) IS 'claims up to max_jobs (1 to 1000) ready jobs of an external function, in run_at order, each running until its deadline under a lease that async.complete(), async.fail() and async.heartbeat() need; with nothing ready, waits up to wait (at most 1 hour) for an enqueue of the function to commit. Needs the privileges of the function''s run_as role';

-- @function async.complete(
COMMENT ON FUNCTION async.complete(job_id bigint, lease uuid, result jsonb) IS 'a claimed job succeeded, with result (passed to on_success); false, and nothing changed, when the lease is no longer the job''s. Commits or rolls back with the caller''s transaction';

-- @function async.complete_many(
COMMENT ON FUNCTION async.complete_many(job_ids bigint[], leases uuid[], results jsonb[]) IS 'async.complete() for up to 10000 claimed jobs at once, the arrays matched by position (results NULL: no results); returns how many of the leases were still their jobs'', which succeeded';

-- @function async.fail(
COMMENT ON FUNCTION async.fail(job_id bigint, lease uuid, error text, retry_after interval) IS 'a claimed job''s attempt failed with error: it is retried on the function''s schedule (after retry_after, 0 to 30 days, if given), or dead-lettered after max_attempts; false, and nothing changed, when the lease is no longer the job''s';

-- @function async.heartbeat(
COMMENT ON FUNCTION async.heartbeat(job_id bigint, lease uuid) IS 'a claimed job is still being worked on: its deadline moves to now plus the function''s timeout, and is returned; NULL, and nothing changed, when the lease is no longer the job''s';

/* async.configure changes an external function too */
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async.configure(name text, max_attempts integer DEFAULT NULL::integer, retry_delays interval[] DEFAULT NULL::interval[], timeout interval DEFAULT NULL::interval, max_event_age interval DEFAULT NULL::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text) RETURNS text
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

/* an external function can be a destination, and its dead letters redriven */
-- @function async._may_enqueue(
COMMENT ON FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) IS 'internal: whether a role (that still exists) may enqueue for a registration: EXECUTE on its handler, or for an external function the privileges of its run_as; for destinations and redrives, done by the workers and the owner for that role';
REVOKE ALL ON FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) FROM PUBLIC;
-- @function async._destination(
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async._redrive(p_dead_letter_id bigint) RETURNS boolean
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

/*
 * The queued jobs of external functions are marked limited, like those of
 * limited functions, and keep the mark while they run: a failed attempt
 * marks its retry so, a limit lifted leaves it, the recovery of dead
 * workers' jobs passes over leases.
 */
/* as of 0.8: 0.9 changed it, and its update writes it again */
CREATE OR REPLACE FUNCTION async._fail(p_job_id bigint, p_message text, p_sqlstate text, p_failed_at timestamp with time zone, p_reason text DEFAULT NULL::text, OUT new_state text, OUT retry_at timestamp with time zone) RETURNS record
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
-- @function async._functions_limit_changed(
-- @function async._is_limited(
COMMENT ON FUNCTION async._is_limited(p_function text) IS 'internal: whether the queued jobs of a function are marked limited: it has a concurrency limit, or is external';
-- @function async._recover(
