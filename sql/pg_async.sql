/* sql/pg_async.sql: the whole of pg_async, for CREATE EXTENSION; the
 * Makefile installs it as pg_async--<version>.sql.
 *
 * An installation reached from 0.1 by ALTER EXTENSION pg_async UPDATE
 * (pg_async--0.1.sql, then each sql/updates/pg_async--A--B.sql) ends with exactly
 * these objects, definitions, defaults, constraints, indexes, policies,
 * triggers, comments and privileges: test/sql/upgrade.sql compares the
 * catalogs of the two.  The objects come in dependency order: the type,
 * then functions and tables (a function whose signature names a table's
 * row type after that table), views, defaults, constraints, indexes,
 * triggers, policies, and last the privileges.
 */

\echo Use "CREATE EXTENSION pg_async" to load this file. \quit

-- The SQL functions read tables created further down: their bodies are
-- checked when they first run, not here.  The setting ends with the script.
SET check_function_bodies = false;

-- the schema the control file names, created by CREATE EXTENSION
GRANT USAGE ON SCHEMA async TO PUBLIC;


CREATE TYPE async.context AS (
	event_id text,
	function text,
	attempt integer,
	max_attempts integer,
	enqueued_at timestamp with time zone,
	deadline timestamp with time zone
);

COMMENT ON TYPE async.context IS 'second argument of a handler declared f(event jsonb, ctx async.context): event_id, function, attempt (from 1), max_attempts, enqueued_at, and the deadline of this attempt';

CREATE FUNCTION async._bury_jobs(p_ids bigint[], p_reason text, p_message text, p_state text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_job async.jobs;
BEGIN
	DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY (p_ids);
	FOR v_job IN
		UPDATE async.jobs j SET state = 'dead', finished_at = pg_catalog.now(),
			   last_error = p_message, paused = false, limited = false,
			   /* a worker of 0.15 cleared the key of a keyed job it claimed */
			   key = COALESCE(j.key, async._job_key(j.function, j.payload))
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (p_ids) AND j.finished_at IS NULL
		   AND (p_state IS NULL OR j.state OPERATOR(pg_catalog.=) p_state)
		RETURNING j.*
	LOOP
		PERFORM async._dead_letter(v_job, p_reason);
	END LOOP;
END;
$$;

COMMENT ON FUNCTION async._bury_jobs(p_ids bigint[], p_reason text, p_message text, p_state text) IS 'internal: moves the unfinished jobs p_ids (those in state p_state, if given) to the dead letters with reason p_reason and message p_message, touching nothing else: for async.unregister(cancel_jobs), and for a job whose failed attempt could not be recorded (reason error)';

CREATE FUNCTION async._cancel(p_event_id text, p_caller oid) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_id bigint;
BEGIN
	/*
	 * Only a waiting job is locked, and never by waiting: a lock on a
	 * finished or running row, held by an open transaction, would stall
	 * the workers that finish or purge it.
	 */
	SELECT j.id INTO v_id FROM async.jobs j
	 WHERE j.event_id OPERATOR(pg_catalog.=) p_event_id
	   AND j.finished_at IS NULL AND j.state OPERATOR(pg_catalog.=) 'queued'
	   AND pg_catalog.pg_has_role(p_caller, j.enqueued_by::pg_catalog.oid, 'USAGE')
	   FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM async.jobs j
					WHERE j.event_id OPERATOR(pg_catalog.=) p_event_id
					  AND j.state OPERATOR(pg_catalog.=) 'running'
					  AND pg_catalog.pg_has_role(p_caller, j.enqueued_by::pg_catalog.oid, 'USAGE')) THEN
			RAISE EXCEPTION 'event "%" is running and cannot be cancelled', p_event_id
				USING ERRCODE = 'object_in_use',
					  HINT = 'A running attempt ends within its function''s timeout; cancel the event if it is queued for a retry then.';
		END IF;
		RETURN false;
	END IF;
	DELETE FROM async.jobs j WHERE j.id OPERATOR(pg_catalog.=) v_id;
	RETURN true;
END;
$$;

COMMENT ON FUNCTION async._cancel(p_event_id text, p_caller oid) IS 'internal: the delete behind async.cancel(), for the caller p_caller';

CREATE FUNCTION async._charge_crash(p_job_id bigint) RETURNS void
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

COMMENT ON FUNCTION async._charge_crash(p_job_id bigint) IS 'internal: records the crashed attempt of a job whose worker died running it, then retries or dead-letters the job';

CREATE FUNCTION async._check_setup() RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_check_setup';

COMMENT ON FUNCTION async._check_setup() IS 'internal: warns when pg_async is not in shared_preload_libraries or its settings leave this database out, and has the launcher look at this database at commit';

CREATE FUNCTION async._database_served() RETURNS boolean
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'pg_async_database_served_sql';

COMMENT ON FUNCTION async._database_served() IS 'internal: whether pg_async.databases and pg_async.database have the workers serve this database';

CREATE FUNCTION async._database_workers(OUT idle boolean, OUT waiting_since timestamp with time zone) RETURNS record
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_database_workers';

COMMENT ON FUNCTION async._database_workers(OUT idle boolean, OUT waiting_since timestamp with time zone) IS 'internal: whether this database is idle (its workers left, pg_async.worker_idle_timeout), and since when it has waited for a worker slot (pg_async.max_workers), NULL when it does not';

CREATE FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint, OUT reason text) RETURNS SETOF record
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
DECLARE
	v_f async.functions;
	v_n integer;
	/* not now(): a consumer's transaction may have begun before the jobs came */
	v_now timestamp with time zone := pg_catalog.clock_timestamp();
	v_deadline timestamp with time zone;
	v_started integer := 0;
	v_key text;
	v_keys text[] := '{}';
	v_max_depth integer;
BEGIN
	SELECT * INTO v_f FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) p_function;
	IF NOT FOUND OR v_f.handler IS NOT NULL OR v_f.paused THEN
		RETURN;
	END IF;
	v_max_depth := COALESCE(v_f.max_depth,
							pg_catalog.current_setting('pg_async.max_depth')::integer);
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
	 * Under a concurrency_key, the keys are visited in turn instead
	 * (_keyed_jobs).
	 *
	 * The statement's plan is generic (plan_cache_mode above), made once
	 * per session: a plan for each call's values cost more than half of a
	 * claim's time, and consumers claim often, mostly finding one job or
	 * none.  A plan made once must not scan a table whole because it was
	 * small then (enable_seqscan above): every part of the claim has an
	 * index to take.  The jobs are updated by their ids in an array, which
	 * a generic plan takes through jobs_pkey whatever the LIMIT: a join
	 * with picked, of unknown size, could be planned as a hash join.
	 */
	FOR job_id, event_id, payload, attempt, deadline, lease, expired, wait_us, reason, v_key IN
	WITH urgent AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued' AND v_f.key_concurrency IS NULL
		   AND j.priority OPERATOR(pg_catalog.<) 0
		 ORDER BY j.priority, j.run_at LIMIT v_n
		   FOR UPDATE SKIP LOCKED),
	ready AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued' AND v_f.key_concurrency IS NULL
		   AND j.priority OPERATOR(pg_catalog.=) 0
		 ORDER BY j.run_at
		 LIMIT v_n OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM urgent)
		   FOR UPDATE SKIP LOCKED),
	later AS (
		SELECT j.id FROM async.jobs j
		 WHERE j.function OPERATOR(pg_catalog.=) p_function
		   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.run_at OPERATOR(pg_catalog.<=) v_now
		   AND j.state OPERATOR(pg_catalog.=) 'queued' AND v_f.key_concurrency IS NULL
		   AND j.priority OPERATOR(pg_catalog.>) 0
		 ORDER BY j.priority, j.run_at
		 LIMIT v_n OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM urgent)
				   OPERATOR(pg_catalog.-) (SELECT pg_catalog.count(*) FROM ready)
		   FOR UPDATE SKIP LOCKED),
	keyed AS (
		SELECT k.id FROM async._keyed_jobs(p_function, v_f.key_concurrency, v_n, v_now,
										   async._key_cursor(p_function)) k
		 WHERE v_f.key_concurrency IS NOT NULL),
	picked AS (
		SELECT u.id FROM urgent u UNION ALL SELECT r.id FROM ready r
		UNION ALL SELECT l.id FROM later l UNION ALL SELECT k.id FROM keyed k),
	claimed AS (
		UPDATE async.jobs j
		   SET state = 'running', attempts = j.attempts OPERATOR(pg_catalog.+) 1,
			   started_at = v_now, worker_pid = p_pid, suspect = false
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT p.id FROM picked p))
		RETURNING j.id, j.event_id, j.payload, j.attempts, j.run_at, j.priority, j.key,
			   v_now OPERATOR(pg_catalog.-) GREATEST(j.enqueued_at, CASE WHEN j.errors IS NULL THEN j.run_at
				   ELSE (j.errors OPERATOR(pg_catalog.->) 0 OPERATOR(pg_catalog.->>) 'at')::pg_catalog.timestamptz END)
				 OPERATOR(pg_catalog.>) v_f.max_event_age AS too_old,
			   j.depth, j.depth OPERATOR(pg_catalog.>) v_max_depth AS too_deep,
			   pg_catalog.gen_random_uuid() AS lease),
	leased AS (
		INSERT INTO async.running (job_id, function, lease, deadline, key)
		SELECT c.id, p_function, c.lease, v_deadline, c.key
		  FROM claimed c WHERE NOT c.too_old AND NOT c.too_deep)
	SELECT c.id, c.event_id, c.payload, c.attempts,
		   CASE WHEN NOT (c.too_old OR c.too_deep) THEN v_deadline END,
		   CASE WHEN NOT (c.too_old OR c.too_deep) THEN c.lease END,
		   CASE WHEN c.too_old THEN
				pg_catalog.format('event is older than max_event_age (%s)', v_f.max_event_age)
				WHEN c.too_deep THEN
				pg_catalog.format('event is %s deep in a chain of events, past max_depth (%s)',
								  c.depth, v_max_depth) END,
		   (EXTRACT(epoch FROM v_now OPERATOR(pg_catalog.-) c.run_at)
			OPERATOR(pg_catalog.*) 1000000)::bigint,
		   CASE WHEN c.too_old THEN 'expired' WHEN c.too_deep THEN 'loop' END,
		   c.key
	  FROM claimed c
	 ORDER BY c.priority, c.run_at, c.id
	LOOP
		/*
		 * An event that expired before it ran, or came deeper than
		 * max_depth (a loop), is dead at once, unrun.
		 */
		IF expired IS NOT NULL THEN
			IF pg_catalog.current_setting('pg_async.attempts_retention') OPERATOR(pg_catalog.<>) '0' THEN
				INSERT INTO async.attempt_log
					(job_id, event_id, function, attempt, worker_pid, started_at, duration,
					 outcome, error, sqlstate, enqueued_by)
				SELECT j.id, j.event_id, j.function, j.attempts OPERATOR(pg_catalog.-) 1, p_pid,
					   v_now, NULL, reason, expired, NULL, j.enqueued_by
				  FROM async.jobs j WHERE j.id OPERATOR(pg_catalog.=) job_id;
			END IF;
			PERFORM async._fail(job_id, expired, NULL, v_now, reason);
		ELSE
			v_started := v_started OPERATOR(pg_catalog.+) 1;
		END IF;
		v_keys := v_keys OPERATOR(pg_catalog.||) v_key;
		RETURN NEXT;
	END LOOP;
	/* the next claim takes the keys on from where this one stopped */
	IF v_f.key_concurrency IS NOT NULL THEN
		PERFORM async._advance_key_cursor(p_function, v_keys);
	END IF;
	IF v_f.rate_limit IS NOT NULL AND v_started OPERATOR(pg_catalog.>) 0 THEN
		PERFORM async._rate_note(ARRAY[p_function], ARRAY[v_started], v_now);
	END IF;
END;
$$;

COMMENT ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint, OUT reason text) IS 'internal: the claim behind async.claim(): marks up to p_max ready jobs of an external function running and gives each a lease; a job older than max_event_age, or deeper than max_depth, is dead-lettered instead, and returned without a lease, with the error in expired and the reason (expired or loop) in reason';

CREATE FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint, OUT depth integer) RETURNS SETOF record
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
DECLARE
	v_ids bigint[];
	v_results jsonb[];
	v_destinations boolean;
BEGIN
	/*
	 * A lease is the job's while its row in async.running is there: the
	 * rows locked here are deleted by async._succeed.  A lease that an
	 * expiry or another completion took first is not found once its lock
	 * is granted.  The leases are found through running_pkey, here and in
	 * async._succeed (enable_seqscan above): async.running holds few live
	 * rows, so a scan of it looked cheap, but every claim and completion
	 * leaves a dead one, and a consumer completing jobs one by one spent
	 * a quarter of its time passing them.
	 *
	 * The plans of these statements, and of async._succeed's, are generic
	 * (plan_cache_mode above), made once per session: for an array of one
	 * job a custom plan always looked cheaper than the generic one, which
	 * guesses ten, so each completion was planned again, a third of a
	 * consumer's completing time in 0.19.  With every table taken through
	 * its primary key, the generic plan is the same for one job or a
	 * thousand.
	 */
	SELECT pg_catalog.array_agg(x.id), pg_catalog.array_agg(x.result),
		   COALESCE(pg_catalog.bool_or(x.on_success), false)
	  INTO v_ids, v_results, v_destinations
	  FROM (SELECT r.job_id AS id, x.result,
				   EXISTS (SELECT FROM async.functions f
							WHERE f.name OPERATOR(pg_catalog.=) r.function
							  AND f.on_success IS NOT NULL) AS on_success
			  FROM async.running r,
				   ROWS FROM (pg_catalog.unnest(p_ids), pg_catalog.unnest(p_leases),
							  pg_catalog.unnest(p_results)) AS x(id, lease, result)
			 WHERE r.job_id OPERATOR(pg_catalog.=) x.id
			   AND r.lease OPERATOR(pg_catalog.=) x.lease
			   FOR UPDATE OF r) x;
	IF v_ids IS NULL THEN
		RETURN;
	END IF;

	PERFORM async._succeed(v_ids, v_results, v_destinations, NULL, NULL);

	RETURN QUERY
		SELECT j.function,
			   (EXTRACT(epoch FROM j.duration) OPERATOR(pg_catalog.*) 1000000)::bigint,
			   j.depth
		  FROM async.jobs j
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (v_ids);
END;
$$;

COMMENT ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint, OUT depth integer) IS 'internal: the writes behind async.complete() and async.complete_many(): the jobs whose lease is still theirs succeed with their results; returns the function, run time and depth of each';

CREATE FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_job async.jobs;
	v_failed_at timestamp with time zone := pg_catalog.clock_timestamp();
BEGIN
	DELETE FROM async.running r
	 WHERE r.job_id OPERATOR(pg_catalog.=) p_job_id AND r.lease OPERATOR(pg_catalog.=) p_lease
	RETURNING r.function INTO function;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	SELECT * INTO v_job FROM async.jobs j WHERE j.id OPERATOR(pg_catalog.=) p_job_id;
	IF pg_catalog.current_setting('pg_async.attempts_retention') OPERATOR(pg_catalog.<>) '0' THEN
		INSERT INTO async.attempt_log
			(job_id, event_id, function, attempt, worker_pid, started_at, duration,
			 outcome, error, sqlstate, enqueued_by)
		VALUES (v_job.id, v_job.event_id, v_job.function, v_job.attempts, v_job.worker_pid,
				v_job.started_at, v_failed_at OPERATOR(pg_catalog.-) v_job.started_at, 'failed',
				p_message, p_sqlstate, v_job.enqueued_by);
	END IF;
	SELECT f.new_state, f.retry_at INTO new_state, retry_at
	  FROM async._fail(p_job_id, p_message, p_sqlstate, v_failed_at) f;
	IF new_state OPERATOR(pg_catalog.=) 'queued' AND p_retry_after IS NOT NULL THEN
		UPDATE async.jobs j SET run_at = v_failed_at OPERATOR(pg_catalog.+) p_retry_after
		 WHERE j.id OPERATOR(pg_catalog.=) p_job_id
		RETURNING j.run_at INTO retry_at;
	END IF;
END;
$$;

COMMENT ON FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) IS 'internal: the writes behind async.fail() and the expiry of leases: a failed attempt of a job whose lease is still its own, recorded, then retried (after p_retry_after if given) or dead-lettered';

CREATE FUNCTION async._expire_leases() RETURNS integer
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_expire_leases';

COMMENT ON FUNCTION async._expire_leases() IS 'internal: fails the attempts of external jobs whose lease expired, for the worker of slot 0; returns how many';

CREATE FUNCTION async._expired_leases(p_function text, p_limit integer) RETURNS TABLE(job_id bigint, lease uuid)
    LANGUAGE sql
    AS $$
	SELECT r.job_id, r.lease FROM async.running r
	 WHERE r.lease IS NOT NULL
	   AND r.deadline OPERATOR(pg_catalog.<) pg_catalog.clock_timestamp()
	   AND (p_function IS NULL OR r.function OPERATOR(pg_catalog.=) p_function)
	 LIMIT p_limit
	   FOR UPDATE SKIP LOCKED;
$$;

COMMENT ON FUNCTION async._expired_leases(p_function text, p_limit integer) IS 'internal: leases of external jobs past their deadline (of one function, or all), locked, for their attempts to be failed';

CREATE FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) RETURNS timestamp with time zone
    LANGUAGE sql
    AS $$
	UPDATE async.running r
	   SET deadline = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) f.timeout
	  FROM async.functions f
	 WHERE f.name OPERATOR(pg_catalog.=) r.function
	   AND r.job_id OPERATOR(pg_catalog.=) p_job_id
	   AND r.lease OPERATOR(pg_catalog.=) p_lease
	RETURNING r.deadline;
$$;

COMMENT ON FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) IS 'internal: the write behind async.heartbeat(): the deadline of a lease that is still the job''s moves to now plus the function''s timeout';

CREATE FUNCTION async._lease_roles(p_ids bigint[]) RETURNS TABLE(function text, run_as oid)
    LANGUAGE sql STABLE
    AS $$
	SELECT DISTINCT f.name, f.run_as::pg_catalog.oid
	  FROM async.running r JOIN async.functions f ON f.name OPERATOR(pg_catalog.=) r.function
	 WHERE r.job_id OPERATOR(pg_catalog.=) ANY (p_ids) AND r.lease IS NOT NULL;
$$;

COMMENT ON FUNCTION async._lease_roles(p_ids bigint[]) IS 'internal: the functions of the leased jobs among p_ids, and the roles whose privileges finishing them needs';

CREATE FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
	SELECT CASE
		WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_authid a
						  WHERE a.oid OPERATOR(pg_catalog.=) p_role::pg_catalog.oid) THEN false
		/* an external function: the privileges of its run_as */
		WHEN p_handler IS NULL THEN
			COALESCE(pg_catalog.pg_has_role(p_role::pg_catalog.oid, p_run_as::pg_catalog.oid, 'USAGE'), false)
		ELSE COALESCE(pg_catalog.has_function_privilege(p_role::pg_catalog.oid,
														p_handler::pg_catalog.oid, 'EXECUTE'), false)
	END;
$$;

COMMENT ON FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) IS 'internal: whether a role (that still exists) may enqueue for a registration: EXECUTE on its handler, or for an external function the privileges of its run_as; for destinations and redrives, done by the workers and the owner for that role';

CREATE FUNCTION async._next_external_run(p_function text) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
	/*
	 * by range of priorities, each an index range of jobs_limited_idx; not
	 * before its rate limit has room.  A due job with a key waits for its
	 * key to have room: the completion that gives it wakes the consumers.
	 * In PL/pgSQL for its plan, which the session keeps: a waiting claim
	 * asks each time it finds nothing, and an SQL function would be
	 * planned again at each call.  The rate window is read only for a
	 * function with a rate limit.
	 */
	RETURN (
		SELECT GREATEST(n.due,
						CASE WHEN EXISTS (SELECT FROM async.functions f
										   WHERE f.name OPERATOR(pg_catalog.=) p_function
											 AND f.rate_limit IS NOT NULL)
							 THEN async._rate_room_at(p_function, pg_catalog.clock_timestamp()) END)
		  FROM (WITH keyed AS (
				SELECT CASE WHEN EXISTS (SELECT FROM async.functions f
										  WHERE f.name OPERATOR(pg_catalog.=) p_function
											AND f.concurrency_key IS NOT NULL)
							THEN pg_catalog.clock_timestamp()
							ELSE '-infinity'::pg_catalog.timestamptz END AS after)
				SELECT LEAST(
			(SELECT j.run_at FROM async.jobs j
			  WHERE j.function OPERATOR(pg_catalog.=) p_function
				AND j.limited AND NOT j.paused AND j.finished_at IS NULL
				AND j.state OPERATOR(pg_catalog.=) 'queued'
				AND j.run_at OPERATOR(pg_catalog.>) (SELECT k.after FROM keyed k)
				AND j.priority OPERATOR(pg_catalog.=) 0
			  ORDER BY j.run_at LIMIT 1),
			(SELECT pg_catalog.min(j.run_at) FROM async.jobs j
			  WHERE j.function OPERATOR(pg_catalog.=) p_function
				AND j.limited AND NOT j.paused AND j.finished_at IS NULL
				AND j.state OPERATOR(pg_catalog.=) 'queued'
				AND j.run_at OPERATOR(pg_catalog.>) (SELECT k.after FROM keyed k)
				AND j.priority OPERATOR(pg_catalog.<) 0),
			(SELECT pg_catalog.min(j.run_at) FROM async.jobs j
			  WHERE j.function OPERATOR(pg_catalog.=) p_function
				AND j.limited AND NOT j.paused AND j.finished_at IS NULL
				AND j.state OPERATOR(pg_catalog.=) 'queued'
				AND j.run_at OPERATOR(pg_catalog.>) (SELECT k.after FROM keyed k)
				AND j.priority OPERATOR(pg_catalog.>) 0)) AS due) n
		 WHERE n.due IS NOT NULL);
END;
$$;

COMMENT ON FUNCTION async._next_external_run(p_function text) IS 'internal: when the next queued job of an external function is due, or its rate limit has room for it if later, for async.claim() to wake then';

CREATE FUNCTION async.new_event_id() RETURNS text
    LANGUAGE c PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pg_async_new_event_id';

COMMENT ON FUNCTION async.new_event_id() IS 'a new time-ordered UUID (RFC 9562 version 7) as text: the default event_id of a job';

CREATE TABLE async.jobs (
    id bigint NOT NULL,
    event_id text DEFAULT async.new_event_id() NOT NULL COLLATE pg_catalog."C",
    function text NOT NULL COLLATE pg_catalog."C",
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    run_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    state text DEFAULT 'queued'::text NOT NULL,
    last_error text,
    errors jsonb,
    enqueued_at timestamp with time zone DEFAULT now() NOT NULL,
    enqueued_by regrole DEFAULT ((CURRENT_USER)::text)::regrole NOT NULL,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    worker_pid integer,
    suspect boolean DEFAULT false NOT NULL,
    result jsonb,
    duration interval,
    paused boolean DEFAULT false NOT NULL,
    limited boolean DEFAULT false NOT NULL,
    priority smallint NOT NULL,
    depth integer DEFAULT 0 NOT NULL,
    key text COLLATE pg_catalog."C",
    CONSTRAINT jobs_state_check CHECK ((state = ANY ('{queued,running,succeeded,dead}'::text[])))
)
WITH (fillfactor='50', autovacuum_vacuum_scale_factor='0.02', autovacuum_vacuum_threshold='1000', autovacuum_vacuum_insert_scale_factor='0.05', autovacuum_analyze_scale_factor='0.05', autovacuum_vacuum_cost_delay='0');

COMMENT ON TABLE async.jobs IS 'pg_async queue: one row per event. Enqueue with a plain INSERT (function, payload, optionally event_id and run_at); background workers run the registered handler.';

COMMENT ON COLUMN async.jobs.id IS 'internal job number';

COMMENT ON COLUMN async.jobs.event_id IS 'idempotency key, unique until pg_async.retention after the job finished; a time-ordered UUID (version 7) when not given';

COMMENT ON COLUMN async.jobs.function IS 'registered function name (async.functions.name)';

COMMENT ON COLUMN async.jobs.payload IS 'event passed to the handler';

COMMENT ON COLUMN async.jobs.run_at IS 'earliest time of the next attempt';

COMMENT ON COLUMN async.jobs.attempts IS 'attempts started so far';

COMMENT ON COLUMN async.jobs.state IS 'queued, running, succeeded or dead';

COMMENT ON COLUMN async.jobs.last_error IS 'error message of the last failed attempt';

COMMENT ON COLUMN async.jobs.errors IS 'every failed attempt: attempt, at, message, sqlstate';

COMMENT ON COLUMN async.jobs.enqueued_at IS 'time of the enqueueing transaction';

COMMENT ON COLUMN async.jobs.enqueued_by IS 'role that enqueued the job; it alone (and superusers) may see and change it, pg_monitor may see it';

COMMENT ON COLUMN async.jobs.started_at IS 'start of the current or last attempt';

COMMENT ON COLUMN async.jobs.finished_at IS 'time the job succeeded (its handler returned) or died';

COMMENT ON COLUMN async.jobs.worker_pid IS 'process id of the worker running or that last ran the job';

COMMENT ON COLUMN async.jobs.suspect IS 'true when the job was in a batch whose worker died: it then runs alone so that a crash is charged to the job that caused it';

COMMENT ON COLUMN async.jobs.result IS 'what the handler returned, as jsonb (a value of another type becomes a JSON string); passed to on_success';

COMMENT ON COLUMN async.jobs.duration IS 'run time of the handler in the attempt that succeeded';

COMMENT ON COLUMN async.jobs.paused IS 'true while the job waits for its paused function (async.pause): it is then left out of the index the workers claim from';

COMMENT ON COLUMN async.jobs.limited IS 'true while the queued job belongs to a function with a concurrency limit: it then waits in jobs_limited_idx, by function, rather than in the index every claim walks. A claim clears it, but for a function with a concurrency_key, and for a consumer''s claim, so that their claims are HOT updates; every way back to the queue sets it again';

COMMENT ON COLUMN async.jobs.depth IS 'how many events led to this one: 0 for an event enqueued outside the workers, one more than the event whose handler or destination enqueued it, or than the deepest job of an external function that the enqueueing transaction completed. Past the function''s max_depth (pg_async.max_depth) the event is dead-lettered with reason loop instead of running';

COMMENT ON COLUMN async.jobs.key IS 'for a function with a concurrency_key, the value of that key in the payload as text (the empty string when it is missing or null; the md5 of a value longer than 200 bytes): its jobs wait in jobs_keyed_idx by key, and its running jobs count against key_concurrency in async.running. NULL for the other functions (and, in 0.15 only, while a worker ran the job). Set by pg_async, not by the INSERT';

COMMENT ON COLUMN async.jobs.priority IS 'lower runs first (ties by run_at, then id); an INSERT that gives none takes the function''s priority. Jobs of priority 0 wait in jobs_ready_idx, the others in jobs_priority_idx';

CREATE FUNCTION async._dead_letter(p_job async.jobs, p_reason text) RETURNS void
    LANGUAGE sql
    AS $$
	INSERT INTO async.dead_letters
		(job_id, event_id, function, payload, attempts, errors, reason,
		 last_error, enqueued_at, enqueued_by, dead_at, priority)
	VALUES (p_job.id, p_job.event_id, p_job.function, p_job.payload, p_job.attempts,
			COALESCE(p_job.errors, '[]'::jsonb), p_reason, p_job.last_error,
			p_job.enqueued_at, p_job.enqueued_by, p_job.finished_at, p_job.priority);
$$;

COMMENT ON FUNCTION async._dead_letter(p_job async.jobs, p_reason text) IS 'internal: the one place a job enters async.dead_letters: copies p_job, just made dead, with reason p_reason (exhausted, expired, loop, unregistered, error; see the column''s comment)';

CREATE FUNCTION async._destination(p_job async.jobs, p_condition text, p_response jsonb) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_target text;
	v_handler regprocedure;
	v_run_as regrole;
BEGIN
	SELECT CASE WHEN p_condition OPERATOR(pg_catalog.=) 'Success' THEN f.on_success ELSE f.on_failure END
	  INTO v_target
	  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) p_job.function;
	IF v_target IS NULL THEN
		RETURN;
	END IF;
	SELECT f.handler, f.run_as INTO v_handler, v_run_as
	  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) v_target;
	IF NOT FOUND OR NOT async._may_enqueue(p_job.enqueued_by, v_handler, v_run_as) THEN
		RAISE WARNING 'pg_async: the % record of event "%" is not delivered to destination "%"',
			p_condition, p_job.event_id, v_target
			USING DETAIL = pg_catalog.format('Role %s, which enqueued the event, may not enqueue for that function.',
											 p_job.enqueued_by),
				  ERRCODE = 'insufficient_privilege';
		RETURN;
	END IF;
	BEGIN
	INSERT INTO async.jobs (function, payload, enqueued_by, depth)
	VALUES (v_target, pg_catalog.jsonb_build_object(
		'version', '1.0',
		'timestamp', pg_catalog.now(),
		'requestContext', pg_catalog.jsonb_build_object(
			'requestId', p_job.event_id,
			'function', p_job.function,
			'condition', p_condition,
			'approximateInvokeCount', p_job.attempts),
		'requestPayload', p_job.payload,
		'responseContext', pg_catalog.jsonb_build_object(
			'statusCode', CASE WHEN p_condition OPERATOR(pg_catalog.=) 'Success' THEN 200 ELSE 500 END),
		'responsePayload', p_response), p_job.enqueued_by,
		p_job.depth OPERATOR(pg_catalog.+) 1);
	EXCEPTION WHEN OTHERS THEN
		/* a broken destination must not stop the job from finishing */
		RAISE WARNING 'pg_async: could not enqueue the % record of event "%" for destination "%": %',
			p_condition, p_job.event_id, v_target, SQLERRM;
	END;
END;
$$;

COMMENT ON FUNCTION async._destination(p_job async.jobs, p_condition text, p_response jsonb) IS 'internal: enqueues the invocation record of a finished job for its on_success or on_failure destination';

CREATE FUNCTION async._fail(p_job_id bigint, p_message text, p_sqlstate text, p_failed_at timestamp with time zone, p_reason text DEFAULT NULL::text, OUT new_state text, OUT retry_at timestamp with time zone) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_job async.jobs;
	v_max integer;
	v_delays interval[];
	v_limited boolean;
	v_key_name text;
BEGIN
	DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) p_job_id;

	/*
	 * an event that expired before it ran, or that came too deep in a chain
	 * (a loop), is dead at once, its claim not an attempt
	 */
	IF p_reason IS NOT NULL THEN
		UPDATE async.jobs j SET
			state = 'dead', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
			finished_at = p_failed_at, last_error = p_message,
			/* a worker of 0.15 cleared the key of a keyed job it claimed */
			key = COALESCE(j.key, async._job_key(j.function, j.payload))
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

	/*
	 * the queued jobs of limited and of external functions are marked
	 * limited, with their key under a concurrency_key
	 */
	SELECT f.max_attempts, f.retry_delays,
		   f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL OR
		   f.key_concurrency IS NOT NULL OR f.handler IS NULL,
		   f.concurrency_key
	  INTO v_max, v_delays, v_limited, v_key_name
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
		key = async._key_value(j.payload, v_key_name),
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

COMMENT ON FUNCTION async._fail(p_job_id bigint, p_message text, p_sqlstate text, p_failed_at timestamp with time zone, p_reason text, OUT new_state text, OUT retry_at timestamp with time zone) IS 'internal: records a failed attempt; retries the job after its delay or moves it to async.dead_letters';

CREATE FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) RETURNS SETOF record
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_function_stats';

COMMENT ON FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) IS 'internal: the shared-memory counters behind async.function_stats';

CREATE FUNCTION async._functions_changed() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_functions_changed';

COMMENT ON FUNCTION async._functions_changed() IS 'internal: after a write to async.functions, makes every backend forget the registrations it cached';

CREATE FUNCTION async._functions_limit_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_was boolean := TG_OP OPERATOR(pg_catalog.<>) 'INSERT' AND
		(OLD.concurrency IS NOT NULL OR OLD.rate_limit IS NOT NULL OR
		 OLD.key_concurrency IS NOT NULL);
	v_is boolean := TG_OP OPERATOR(pg_catalog.<>) 'DELETE' AND
		(NEW.concurrency IS NOT NULL OR NEW.rate_limit IS NOT NULL OR
		 NEW.key_concurrency IS NOT NULL);
	v_until timestamptz;
BEGIN
	IF v_was THEN
		/* an external function's jobs stay marked: only consumers claim them */
		IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' OR
		   (NOT v_is AND NEW.handler IS NOT NULL) THEN
			/*
			 * both statements walk an index: jobs_limited_idx,
			 * jobs_paused_idx; the first skips the jobs other
			 * transactions hold, as async._set_paused() does, and
			 * async._unpause_jobs() releases those later
			 */
			UPDATE async.jobs j SET limited = false, key = NULL
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
				   SELECT x.id FROM async.jobs x
					WHERE x.limited AND NOT x.paused AND x.finished_at IS NULL
					  AND x.function OPERATOR(pg_catalog.=) OLD.name
					  FOR UPDATE SKIP LOCKED))
			   AND j.limited AND NOT j.paused;
			UPDATE async.jobs j SET limited = false, key = NULL
			 WHERE j.paused AND j.limited
			   AND j.function OPERATOR(pg_catalog.=) OLD.name;
		END IF;
	END IF;
	/*
	 * a function newly limited, or one that keeps a limit but loses its
	 * concurrency_key, whose jobs scheduled for later waited unmarked
	 * (src/enqueue.c, unkey_scheduled)
	 */
	IF v_is AND (NOT v_was OR OLD.key_concurrency IS NOT NULL AND NEW.key_concurrency IS NULL) THEN
		/*
		 * the same two indexes: jobs_ready_idx, jobs_paused_idx; a job
		 * skipped here (held by another transaction) is claimed within
		 * the limit all the same
		 */
		UPDATE async.jobs j SET limited = true
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT x.id FROM async.jobs x
				WHERE x.finished_at IS NULL AND NOT x.paused AND NOT x.limited
				  AND x.state OPERATOR(pg_catalog.=) 'queued'
				  AND x.function OPERATOR(pg_catalog.=) NEW.name
				  FOR UPDATE SKIP LOCKED))
		   AND j.state OPERATOR(pg_catalog.=) 'queued' AND NOT j.paused AND NOT j.limited;
		UPDATE async.jobs j SET limited = true
		 WHERE j.paused AND NOT j.limited AND j.finished_at IS NULL
		   AND j.state OPERATOR(pg_catalog.=) 'queued'
		   AND j.function OPERATOR(pg_catalog.=) NEW.name;
	END IF;
	/*
	 * a new concurrency_key gives each queued job its key, and the
	 * reservation of each running one, so that the next claims count
	 * them (a running job gets its key again if it goes back to the
	 * queue; its row is left alone, so that the worker finishing it never
	 * waits for this transaction, nor this one for it)
	 */
	IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' AND NEW.concurrency_key IS NOT NULL OR
	   TG_OP OPERATOR(pg_catalog.=) 'UPDATE' AND
	   NEW.concurrency_key IS DISTINCT FROM OLD.concurrency_key THEN
		/* claims leave paused jobs alone (a recheck's hold is brief) */
		UPDATE async.jobs j SET key = async._key_value(j.payload, NEW.concurrency_key)
		 WHERE j.paused AND j.function OPERATOR(pg_catalog.=) NEW.name
		   AND j.finished_at IS NULL
		   AND j.key IS DISTINCT FROM async._key_value(j.payload, NEW.concurrency_key);
		/*
		 * The other jobs, and the reservations, skip what another
		 * transaction holds, as async._set_paused() does, and are tried
		 * again: a claim or a heartbeat holds a job or a reservation for
		 * milliseconds, and nothing else would give it the new key.
		 */
		LOOP
			UPDATE async.jobs j SET key = async._key_value(j.payload, NEW.concurrency_key)
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
				   SELECT x.id FROM async.jobs x
					WHERE x.limited AND NOT x.paused AND x.finished_at IS NULL
					  AND x.state OPERATOR(pg_catalog.=) 'queued'
					  AND x.function OPERATOR(pg_catalog.=) NEW.name
					  AND x.key IS DISTINCT FROM async._key_value(x.payload, NEW.concurrency_key)
					  FOR UPDATE SKIP LOCKED))
			   AND j.limited AND NOT j.paused AND j.state OPERATOR(pg_catalog.=) 'queued';
			UPDATE async.running r SET key = async._key_value(j.payload, NEW.concurrency_key)
			  FROM async.jobs j
			 WHERE r.job_id OPERATOR(pg_catalog.=) ANY (ARRAY(
				   SELECT x.job_id FROM async.running x
					JOIN async.jobs y ON y.id OPERATOR(pg_catalog.=) x.job_id
					WHERE x.function OPERATOR(pg_catalog.=) NEW.name
					  AND x.key IS DISTINCT FROM async._key_value(y.payload, NEW.concurrency_key)
					  FOR UPDATE OF x SKIP LOCKED))
			   AND j.id OPERATOR(pg_catalog.=) r.job_id;
			EXIT WHEN NOT EXISTS (
					SELECT FROM async.jobs j
					 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
					   AND j.state OPERATOR(pg_catalog.=) 'queued'
					   AND j.function OPERATOR(pg_catalog.=) NEW.name
					   AND j.key IS DISTINCT FROM async._key_value(j.payload, NEW.concurrency_key))
				AND NOT EXISTS (
					SELECT FROM async.running r
					  JOIN async.jobs j ON j.id OPERATOR(pg_catalog.=) r.job_id
					 WHERE r.function OPERATOR(pg_catalog.=) NEW.name
					   AND r.key IS DISTINCT FROM async._key_value(j.payload, NEW.concurrency_key));
			/* for a second from the end of the first pass, however long it took */
			v_until := COALESCE(v_until, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) '1 second'::pg_catalog.interval);
			IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_until THEN
				RAISE WARNING 'some jobs of function "%" keep the key of its former concurrency_key', NEW.name
					USING DETAIL = 'Other transactions held them for a second; the limit by key counts them under that key until they finish.';
				EXIT;
			END IF;
			PERFORM pg_catalog.pg_sleep(0.01);
		END LOOP;
	END IF;
	/* the starts of a rate limit no longer there are forgotten */
	IF TG_OP OPERATOR(pg_catalog.<>) 'INSERT' AND OLD.rate_limit IS NOT NULL AND
	   (TG_OP OPERATOR(pg_catalog.=) 'DELETE' OR NEW.rate_limit IS NULL) THEN
		DELETE FROM async.rate_windows w WHERE w.function OPERATOR(pg_catalog.=) OLD.name;
	END IF;
	RETURN NULL;
END;
$$;

COMMENT ON FUNCTION async._functions_limit_changed() IS 'internal: marks the queued jobs of a function that gets a concurrency, key or rate limit limited, gives them their key when its concurrency_key changes, and releases them when it loses its limits or its registration';

CREATE FUNCTION async._is_limited(p_function text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $$
	SELECT EXISTS (SELECT FROM async.functions f
					WHERE f.name OPERATOR(pg_catalog.=) p_function
					  AND (f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL
						   OR f.key_concurrency IS NOT NULL OR f.handler IS NULL));
$$;

COMMENT ON FUNCTION async._is_limited(p_function text) IS 'internal: whether the queued jobs of a function are marked limited: it has a concurrency, key or rate limit, or is external';

CREATE FUNCTION async._job_key(p_function text, p_payload jsonb) RETURNS text
    LANGUAGE sql STABLE
    AS $$
	SELECT async._key_value(p_payload, f.concurrency_key)
	  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) p_function;
$$;

COMMENT ON FUNCTION async._job_key(p_function text, p_payload jsonb) IS 'internal: the key (async.jobs.key) of a job of p_function with p_payload, by the function''s concurrency_key; NULL when it has none';

CREATE FUNCTION async._key_value(p_payload jsonb, p_key text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT
    AS 'MODULE_PATHNAME', 'pg_async_key_value';

COMMENT ON FUNCTION async._key_value(p_payload jsonb, p_key text) IS 'internal: the value of payload key p_key as a job''s key: p_payload ->> p_key, the empty string when that is NULL, and ''md5:'' and the md5 of a value of more than 200 bytes';

CREATE FUNCTION async._key_cursor(p_function text) RETURNS text
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_key_cursor';

COMMENT ON FUNCTION async._key_cursor(p_function text) IS 'internal: the key of p_function the last claim of it in this database took jobs of last, by any worker or consumer, after which the next claim goes on (NULL: from the first); kept in shared memory for up to 16 functions of each database, those claimed last';

CREATE FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) RETURNS void
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_advance_key_cursor_sql';

COMMENT ON FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) IS 'internal: moves the database''s cursor among the keys of p_function (async._key_cursor) past the keys of the jobs a claim took, p_keys: to the last of them in the order async._keyed_jobs visited them';

CREATE FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) RETURNS TABLE(id bigint, function text, suspect boolean, run_at timestamp with time zone, priority smallint, key text, bytes integer)
    LANGUAGE plpgsql
    AS $$
BEGIN
	/*
	 * The keys with a queued job in order, each once, going round from the
	 * key after p_from (the cursor of the function, shared by the
	 * database's claims) to p_from itself (after, then
	 * upto: loose scans of jobs_keyed_idx, one descent each); of each, as
	 * many of its due jobs as it has room for under p_key_concurrency,
	 * counting its running ones in async.running; until p_max.  The
	 * executor pulls the scans only as far as the jobs taken need.  The
	 * caller holds the claim lock of the function, so that the running
	 * jobs counted are all there are.  In PL/pgSQL for its plan, which
	 * the session keeps: an SQL function would be planned again at each
	 * claim, from statistics that a large enqueue has not reached yet.
	 * No qual names limited: jobs_limited_idx, whose predicate would then
	 * hold too, costs the same as jobs_keyed_idx while the statistics say
	 * the queue is small, and a plan that took it walked the function's
	 * whole lane for each key.  The index keeps the running jobs too
	 * (from 0.16 those of workers as well as of consumers): the scans pass
	 * them by their state.  The walks list only the keys with a due job
	 * (run_at, the index's last column, is tested in the index, without
	 * reading the job): until 0.21 they listed every key with a queued
	 * job, and a role that queued jobs for later under 100,000 keys of a
	 * function of its own made every claim of the workers, whoever's jobs
	 * it claimed, take 100,000 descents (a drain of other jobs ran at a
	 * fortieth to a fiftieth of its speed).  Since 0.23 such jobs are not
	 * in the index at all until they are due (they wait unkeyed, by
	 * run_at: src/enqueue.c, unkey_scheduled), so the scans pass only due
	 * and running jobs; in 0.22 passing their entries made each claim cost
	 * about 5 ms instead of 0.05 (docs/security.md).
	 */
	RETURN QUERY
		WITH RECURSIVE after(key) AS (
			(SELECT j.key FROM async.jobs j
			  WHERE j.function OPERATOR(pg_catalog.=) p_function
				AND j.key IS NOT NULL AND j.state OPERATOR(pg_catalog.=) 'queued'
				AND NOT j.paused AND j.finished_at IS NULL
				AND j.run_at OPERATOR(pg_catalog.<=) p_at
				AND j.key OPERATOR(pg_catalog.>) p_from
			  ORDER BY j.key LIMIT 1)
			UNION ALL
			SELECT (SELECT j.key FROM async.jobs j
					 WHERE j.function OPERATOR(pg_catalog.=) p_function
					   AND j.key IS NOT NULL AND j.state OPERATOR(pg_catalog.=) 'queued'
					   AND NOT j.paused AND j.finished_at IS NULL
					   AND j.run_at OPERATOR(pg_catalog.<=) p_at
					   AND j.key OPERATOR(pg_catalog.>) a.key
					 ORDER BY j.key LIMIT 1)
			  FROM after a WHERE a.key IS NOT NULL),
		upto(key) AS (
			(SELECT j.key FROM async.jobs j
			  WHERE j.function OPERATOR(pg_catalog.=) p_function
				AND j.key IS NOT NULL AND j.state OPERATOR(pg_catalog.=) 'queued'
				AND NOT j.paused AND j.finished_at IS NULL
				AND j.run_at OPERATOR(pg_catalog.<=) p_at
			  ORDER BY j.key LIMIT 1)
			UNION ALL
			SELECT (SELECT j.key FROM async.jobs j
					 WHERE j.function OPERATOR(pg_catalog.=) p_function
					   AND j.key IS NOT NULL AND j.state OPERATOR(pg_catalog.=) 'queued'
					   AND NOT j.paused AND j.finished_at IS NULL
					   AND j.run_at OPERATOR(pg_catalog.<=) p_at
					   AND j.key OPERATOR(pg_catalog.>) u.key
					 ORDER BY j.key LIMIT 1)
			  FROM upto u
			 WHERE u.key IS NOT NULL AND (p_from IS NULL OR u.key OPERATOR(pg_catalog.<) p_from)),
		keys AS (
			SELECT a.key FROM after a WHERE a.key IS NOT NULL
			UNION ALL
			SELECT u.key FROM upto u
			 WHERE u.key IS NOT NULL AND (p_from IS NULL OR u.key OPERATOR(pg_catalog.<=) p_from))
		SELECT c.* FROM (SELECT k.key FROM keys k LIMIT 100000) k CROSS JOIN LATERAL (
			SELECT j.id, j.function, j.suspect, j.run_at, j.priority, j.key,
				   pg_catalog.pg_column_size(j.payload)
			  FROM async.jobs j
			 WHERE j.function OPERATOR(pg_catalog.=) p_function
			   AND j.key OPERATOR(pg_catalog.=) k.key
			   AND j.state OPERATOR(pg_catalog.=) 'queued'
			   AND NOT j.paused AND j.finished_at IS NULL
			   AND j.run_at OPERATOR(pg_catalog.<=) p_at
			 ORDER BY j.priority, j.run_at
			 LIMIT GREATEST(0, p_key_concurrency OPERATOR(pg_catalog.-)
					(SELECT pg_catalog.count(*)::integer FROM async.running r
					  WHERE r.function OPERATOR(pg_catalog.=) p_function
						AND r.key OPERATOR(pg_catalog.=) k.key))
			   FOR UPDATE SKIP LOCKED) c
		LIMIT p_max;
END;
$$;

COMMENT ON FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) IS 'internal: locks up to p_max due jobs of a function with a concurrency_key for a claim, visiting its keys in turn from the one after p_from (the database''s cursor, async._key_cursor), and taking of each key no more than p_key_concurrency less its running jobs';

CREATE FUNCTION async._jobs_trigger() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_jobs_trigger';

COMMENT ON FUNCTION async._jobs_trigger() IS 'internal: checks a job at INSERT (registered function, EXECUTE on its handler, event_id and payload) and wakes an idle worker when the transaction commits';

CREATE FUNCTION async._jobs_touched() RETURNS trigger
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_jobs_touched';

COMMENT ON FUNCTION async._jobs_touched() IS 'internal: notes, before an UPDATE or DELETE of async.jobs outside the workers, that job rows are locked: if the transaction aborts, the claims walk the ready jobs from the start again';

CREATE FUNCTION async._ready_floor(OUT floor timestamp with time zone, OUT sweep_ms double precision) RETURNS record
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_ready_floor';

COMMENT ON FUNCTION async._ready_floor(OUT floor timestamp with time zone, OUT sweep_ms double precision) IS 'internal: the run_at below which no ready job waits, where the claims start their walk of the ready jobs (-infinity: from the start), and how long the last walk from the start took';

CREATE FUNCTION async._limited_job_functions() RETURNS SETOF text
    LANGUAGE sql STABLE
    AS $$
	WITH RECURSIVE n(name) AS (
		(SELECT j.function FROM async.jobs j
		  WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
		  ORDER BY j.function LIMIT 1)
		UNION ALL
		SELECT (SELECT j.function FROM async.jobs j
				 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
				   AND j.function OPERATOR(pg_catalog.>) n.name
				 ORDER BY j.function LIMIT 1)
		  FROM n WHERE n.name IS NOT NULL)
	SELECT n.name FROM n WHERE n.name IS NOT NULL;
$$;

COMMENT ON FUNCTION async._limited_job_functions() IS 'internal: the functions that have unfinished jobs marked limited and not paused (a loose scan of jobs_limited_idx)';

CREATE FUNCTION async._live_worker_pids() RETURNS integer[]
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_live_worker_pids';

COMMENT ON FUNCTION async._live_worker_pids() IS 'internal: process ids of the pg_async workers alive now, read from shared memory';

CREATE FUNCTION async._paused_job_functions() RETURNS SETOF text
    LANGUAGE sql STABLE
    AS $$
	WITH RECURSIVE n(name) AS (
		(SELECT j.function FROM async.jobs j WHERE j.paused ORDER BY j.function LIMIT 1)
		UNION ALL
		SELECT (SELECT j.function FROM async.jobs j
				 WHERE j.paused AND j.function OPERATOR(pg_catalog.>) n.name
				 ORDER BY j.function LIMIT 1)
		  FROM n WHERE n.name IS NOT NULL)
	SELECT n.name FROM n WHERE n.name IS NOT NULL;
$$;

COMMENT ON FUNCTION async._paused_job_functions() IS 'internal: the functions that have jobs marked paused (a loose scan of jobs_paused_idx)';

CREATE FUNCTION async._prometheus_label(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
	SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(value, E'\\', E'\\\\'),
												 '"', E'\\"'), E'\n', E'\\n')
$$;

COMMENT ON FUNCTION async._prometheus_label(value text) IS 'internal: escapes a Prometheus label value';

CREATE FUNCTION async._priority(p_priority integer) RETURNS smallint
    LANGUAGE c IMMUTABLE
    AS 'MODULE_PATHNAME', 'pg_async_priority';

COMMENT ON FUNCTION async._priority(p_priority integer) IS 'internal: p_priority as a job''s priority, or an error when it is out of range (-32768 to 32767); NULL stays NULL (the function''s priority)';

CREATE FUNCTION async._purge_attempts(p_older_than interval) RETURNS integer
    LANGUAGE sql
    AS $$
	WITH gone AS (
		DELETE FROM async.attempt_log a
		 WHERE a.started_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) p_older_than)
		RETURNING 1)
	SELECT pg_catalog.count(*)::integer FROM gone;
$$;

COMMENT ON FUNCTION async._purge_attempts(p_older_than interval) IS 'internal: deletes the rows of async.attempt_log older than pg_async.attempts_retention';

CREATE FUNCTION async._purge_dead_letters(p_function text, p_reason text, p_older_than interval, p_caller oid) RETURNS integer
    LANGUAGE sql
    AS $$
	WITH gone AS (
		DELETE FROM async.dead_letters d
		 WHERE pg_catalog.pg_has_role(p_caller, d.enqueued_by::pg_catalog.oid, 'USAGE')
		   AND (p_function IS NULL OR d.function OPERATOR(pg_catalog.=) p_function)
		   AND (p_reason IS NULL OR d.reason OPERATOR(pg_catalog.=) p_reason)
		   AND (p_older_than IS NULL
				OR d.dead_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) p_older_than))
		RETURNING 1)
	SELECT pg_catalog.count(*)::integer FROM gone;
$$;

COMMENT ON FUNCTION async._purge_dead_letters(p_function text, p_reason text, p_older_than interval, p_caller oid) IS 'internal: the delete behind async.purge_dead_letters(), for the caller p_caller';

CREATE FUNCTION async._purge_finished(p_older_than interval, p_limit integer, p_attempts_older_than interval, p_from timestamp with time zone, OUT purged integer, OUT last_finished_at timestamp with time zone) RETURNS record
    LANGUAGE sql
    AS $$
	WITH gone AS (
		DELETE FROM async.jobs j
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
				SELECT f.id FROM async.jobs f
				 WHERE f.finished_at IS NOT NULL
				   AND f.finished_at OPERATOR(pg_catalog.>=) p_from
				   AND f.finished_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) p_older_than)
				 ORDER BY f.finished_at
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
	SELECT pg_catalog.count(*)::integer, pg_catalog.max(g.finished_at) FROM gone g;
$$;

COMMENT ON FUNCTION async._purge_finished(p_older_than interval, p_limit integer, p_attempts_older_than interval, p_from timestamp with time zone, OUT purged integer, OUT last_finished_at timestamp with time zone) IS 'internal: deletes, oldest first, at most p_limit jobs that finished from p_from on and more than p_older_than ago (pg_async.retention), keeping in async.attempt_log the successful attempts younger than p_attempts_older_than (pg_async.attempts_retention); returns how many and the last finished_at deleted, where the next batch starts';

CREATE FUNCTION async._rate_window(p_period interval) RETURNS interval
    LANGUAGE sql IMMUTABLE
    AS $$
	/*
	 * The claims count the starts of rate_period and a tenth more (at most
	 * 100 ms): a start is recorded at its claim, and a handler starts after
	 * the claim commits, a few milliseconds later, by an amount that varies
	 * from batch to batch; the margin keeps the handlers' start times, not
	 * only the claims', within the limit.
	 */
	SELECT p_period OPERATOR(pg_catalog.+)
		   LEAST(p_period OPERATOR(pg_catalog./) 10, '00:00:00.1'::interval);
$$;

COMMENT ON FUNCTION async._rate_window(p_period interval) IS 'internal: the window a rate limit counts its starts in: rate_period, and a tenth more (at most 100 ms) for the time from a claim to its handler''s start; PUBLIC may execute it, for async.stats';

CREATE FUNCTION async._rate_note(p_functions text[], p_counts integer[], p_at timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
	/*
	 * a claim at p_at started p_counts[i] jobs of p_functions[i]: the
	 * window keeps its starts, without those that left it.  The three
	 * functions of the rate windows are in PL/pgSQL for their plans, which
	 * the session keeps: as SQL functions (up to 0.21) they were parsed
	 * and planned at each call, and every claim of the workers, while
	 * any function had a rate limit, called two of them for each such
	 * function, about 0.2 ms in all.
	 */
	INSERT INTO async.rate_windows AS w (function, starts, counts)
	SELECT x.function, ARRAY[p_at], ARRAY[x.n]
	  FROM ROWS FROM (pg_catalog.unnest(p_functions), pg_catalog.unnest(p_counts)) AS x(function, n)
	 WHERE x.n OPERATOR(pg_catalog.>) 0
	ON CONFLICT (function) DO UPDATE SET (starts, counts) = (
		SELECT pg_catalog.array_agg(y.s ORDER BY y.s), pg_catalog.array_agg(y.c ORDER BY y.s)
		  FROM (SELECT z.s, z.c
				  FROM ROWS FROM (pg_catalog.unnest(w.starts), pg_catalog.unnest(w.counts)) AS z(s, c)
				 WHERE z.s OPERATOR(pg_catalog.>) (p_at OPERATOR(pg_catalog.-)
					   (SELECT async._rate_window(f.rate_period) FROM async.functions f
						 WHERE f.name OPERATOR(pg_catalog.=) w.function))
				UNION ALL
				SELECT p_at, excluded.counts[1]) AS y(s, c));
END;
$$;

COMMENT ON FUNCTION async._rate_note(p_functions text[], p_counts integer[], p_at timestamp with time zone) IS 'internal: records in async.rate_windows that a claim at p_at started p_counts[i] jobs of each rate-limited function p_functions[i]';

CREATE FUNCTION async._rate_room_at(p_function text, p_at timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
	/*
	 * the window is full while the latest starts fill it: it has room again
	 * once the oldest of them leaves it (in PL/pgSQL, see _rate_note)
	 */
	RETURN (SELECT x.s OPERATOR(pg_catalog.+) async._rate_window(f.rate_period)
	  FROM async.functions f, async.rate_windows w,
		   LATERAL (SELECT y.s, pg_catalog.sum(y.c) OVER (ORDER BY y.s DESC) AS used
					  FROM ROWS FROM (pg_catalog.unnest(w.starts), pg_catalog.unnest(w.counts)) AS y(s, c)
					 WHERE y.s OPERATOR(pg_catalog.>)
						   (p_at OPERATOR(pg_catalog.-) async._rate_window(f.rate_period))) x
	 WHERE f.name OPERATOR(pg_catalog.=) p_function
	   AND w.function OPERATOR(pg_catalog.=) p_function
	   AND x.used OPERATOR(pg_catalog.>=) f.rate_limit
	 ORDER BY x.s DESC LIMIT 1);
END;
$$;

COMMENT ON FUNCTION async._rate_room_at(p_function text, p_at timestamp with time zone) IS 'internal: when the rate limit of p_function, full at p_at, has room again; NULL when it has room at p_at';

CREATE FUNCTION async._rate_used(p_function text, p_period interval, p_at timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
	/* in PL/pgSQL, see _rate_note */
	RETURN (SELECT COALESCE(pg_catalog.sum(y.c), 0)::integer
	  FROM async.rate_windows w, ROWS FROM (pg_catalog.unnest(w.starts), pg_catalog.unnest(w.counts)) AS y(s, c)
	 WHERE w.function OPERATOR(pg_catalog.=) p_function
	   AND y.s OPERATOR(pg_catalog.>) (p_at OPERATOR(pg_catalog.-) async._rate_window(p_period)));
END;
$$;

COMMENT ON FUNCTION async._rate_used(p_function text, p_period interval, p_at timestamp with time zone) IS 'internal: how many jobs of p_function started in the window of length p_period that ends at p_at';

CREATE FUNCTION async._recover() RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
	g record;
	v_locked bigint[];
	v_still integer;
	v_id bigint;
	n integer := 0;
	v_left boolean := false;
BEGIN
	/* one recovery at a time, so that a batch is never split between two */
	IF NOT async._try_recovery_lock() THEN
		RETURN 0;
	END IF;
	/*
	 * The walk locks nothing: the jobs of each batch are locked below,
	 * without waiting, and a batch another transaction holds a job of is
	 * left whole, so that it is recovered as one batch later; the worker
	 * then looks again soon (async._recovery_incomplete), not at its next
	 * regular look.
	 */
	FOR g IN
		WITH orphans AS (
			SELECT j.id, j.worker_pid, j.started_at
			  FROM async.jobs j
			 /* a worker's running job is never marked paused, nor limited but a keyed
			    one (found below): this walks jobs_ready_idx */
			 WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			   AND j.state OPERATOR(pg_catalog.=) 'running'
			   AND (j.worker_pid IS NULL OR
					NOT j.worker_pid OPERATOR(pg_catalog.=) ANY (async._live_worker_pids())
					/* the pid was reused by a worker that started after the claim */
					OR async._worker_started_at(j.worker_pid) OPERATOR(pg_catalog.>) j.started_at)),
		/*
		 * but a worker's claim of a keyed job leaves the mark (0.16), as a
		 * 0.2 library, still running after ALTER EXTENSION UPDATE, did for
		 * any limited job: those are found through their reservations in
		 * async.running, a short table
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
					OR async._worker_started_at(j.worker_pid) OPERATOR(pg_catalog.>) j.started_at))
		SELECT o.worker_pid, o.started_at, pg_catalog.array_agg(o.id) AS ids
		  FROM (SELECT * FROM orphans UNION ALL SELECT * FROM marked_orphans) o
		 GROUP BY o.worker_pid, o.started_at
	LOOP
		/* the batch's jobs still on that attempt, and nobody else's now */
		BEGIN
			SELECT pg_catalog.array_agg(l.id) INTO v_locked
			  FROM (SELECT j.id FROM async.jobs j
					 WHERE j.id OPERATOR(pg_catalog.=) ANY (g.ids)
					   AND j.state OPERATOR(pg_catalog.=) 'running' AND j.finished_at IS NULL
					   AND j.worker_pid IS NOT DISTINCT FROM g.worker_pid
					   AND j.started_at IS NOT DISTINCT FROM g.started_at
					   FOR UPDATE SKIP LOCKED) l;
			SELECT pg_catalog.count(*) INTO v_still
			  FROM async.jobs j
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (g.ids)
			   AND j.state OPERATOR(pg_catalog.=) 'running' AND j.finished_at IS NULL
			   AND j.worker_pid IS NOT DISTINCT FROM g.worker_pid
			   AND j.started_at IS NOT DISTINCT FROM g.started_at;
		EXCEPTION WHEN serialization_failure OR lock_not_available THEN
			/* a transaction isolation above READ COMMITTED, or a lock_timeout */
			v_left := true;
			CONTINUE;
		END;
		IF COALESCE(pg_catalog.cardinality(v_locked), 0) OPERATOR(pg_catalog.<) v_still THEN
			/* another transaction holds one of them */
			v_left := true;
			CONTINUE;
		END IF;
		FOREACH v_id IN ARRAY COALESCE(v_locked, '{}')
		LOOP
			/* each orphan alone: one that cannot be recovered stops no other */
			BEGIN
				IF pg_catalog.cardinality(g.ids) OPERATOR(pg_catalog.>) 1 THEN
					UPDATE async.jobs j
					   SET state = 'queued', attempts = j.attempts OPERATOR(pg_catalog.-) 1,
						   suspect = true, run_at = pg_catalog.now(),
						   limited = async._is_limited(j.function),
						   key = async._job_key(j.function, j.payload)
					 WHERE j.id OPERATOR(pg_catalog.=) v_id;
					DELETE FROM async.running x WHERE x.job_id OPERATOR(pg_catalog.=) v_id;
				ELSE
					PERFORM async._charge_crash(v_id);
				END IF;
			EXCEPTION WHEN OTHERS THEN
				/*
				 * a shortage (a full disk, out of memory), an I/O error, a
				 * conflict or a cancel says nothing of the job: it is left
				 * 'running' for the next recovery rather than dead-lettered
				 */
				IF pg_catalog.left(SQLSTATE, 2) OPERATOR(pg_catalog.=) ANY ('{40,53,57,58,08}'::text[])
				   OR SQLSTATE OPERATOR(pg_catalog.=) '55P03' THEN
					RAISE WARNING 'pg_async could not recover job %: %', v_id, SQLERRM
						USING DETAIL = 'The job is left for the next recovery.';
					v_left := true;
					CONTINUE;
				END IF;
				RAISE WARNING 'pg_async could not recover job %: %', v_id, SQLERRM
					USING DETAIL = 'The job is dead-lettered with reason error.';
				PERFORM async._bury_jobs(ARRAY[v_id], 'error',
					'pg_async could not recover the job: ' OPERATOR(pg_catalog.||) pg_catalog.left(SQLERRM, 8192),
					NULL);
			END;
			n := n OPERATOR(pg_catalog.+) 1;
		END LOOP;
	END LOOP;
	IF v_left THEN
		PERFORM async._recovery_incomplete();
	END IF;
	RETURN n;
END;
$$;

COMMENT ON FUNCTION async._recover() IS 'internal: recovers jobs left running by a worker that died or by a server crash';

CREATE FUNCTION async._recovery_incomplete() RETURNS void
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_recovery_incomplete';

COMMENT ON FUNCTION async._recovery_incomplete() IS 'internal: tells the worker that runs async._recover() that it left jobs of dead workers (held by another transaction, or failing for a shortage), so that it looks again soon';

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
	   SET state = 'queued', attempts = 0, run_at = pg_catalog.now(), depth = 0,
		   finished_at = NULL, last_error = NULL, errors = NULL, suspect = false,
		   limited = async._is_limited(j.function),
		   key = async._job_key(j.function, j.payload)
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
								priority, paused, limited, key)
		VALUES (v_dl.event_id, v_dl.function, v_dl.payload, v_dl.enqueued_at, v_dl.enqueued_by,
				v_dl.priority,
				EXISTS (SELECT FROM async.functions f
						 WHERE f.name OPERATOR(pg_catalog.=) v_dl.function AND f.paused),
				async._is_limited(v_dl.function),
				async._job_key(v_dl.function, v_dl.payload));
	END IF;
	RETURN true;
END;
$$;

COMMENT ON FUNCTION async._redrive(p_dead_letter_id bigint) IS 'internal: puts the dead letter with this id back in the queue, for async.redrive()';

CREATE FUNCTION async._release_deleted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
	DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) OLD.id;
	RETURN NULL;
END;
$$;

COMMENT ON FUNCTION async._release_deleted() IS 'internal: deletes the reservation in async.running of a running job that is deleted';

CREATE FUNCTION async._require_cron() RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
	CASE async._cron_unusable()
		WHEN 'not installed' THEN
			RAISE EXCEPTION 'pg_cron is not installed in database %', pg_catalog.current_database()
				USING ERRCODE = 'feature_not_supported',
					  DETAIL = 'pg_async schedules events through pg_cron, which it does not require otherwise.',
					  HINT = 'Install pg_cron (Debian: postgresql-NN-cron), add it to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
		WHEN 'no usage' THEN
			RAISE EXCEPTION 'permission denied for schema cron'
				USING ERRCODE = 'insufficient_privilege',
					  HINT = pg_catalog.format('A superuser can allow it: GRANT USAGE ON SCHEMA cron TO %I.', current_user);
		ELSE
			NULL;
	END CASE;
END;
$$;

COMMENT ON FUNCTION async._require_cron() IS 'internal: raises an error with a hint when pg_cron is not installed in this database, or the caller may not use it';

CREATE FUNCTION async._cron_unusable() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
	SELECT CASE
		WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron')
			THEN 'not installed'
		WHEN NOT pg_catalog.has_schema_privilege('cron', 'USAGE')
			THEN 'no usage'
	END
$$;

COMMENT ON FUNCTION async._cron_unusable() IS 'internal: why the caller cannot schedule through pg_cron (not installed, no usage of schema cron), or NULL when it can';

CREATE FUNCTION async._schedules() RETURNS TABLE(name text, schedule text, function text, payload jsonb, active boolean, jobid bigint, username text, last_start timestamp with time zone, last_end timestamp with time zone, last_status text, last_message text)
    LANGUAGE plpgsql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
BEGIN
	IF async._cron_unusable() IS NOT NULL THEN
		/* a role that may not use pg_cron has no schedule to show */
		RETURN;
	END IF;
	/*
	 * pg_cron's row security shows a role its own jobs; a superuser sees
	 * every role's.  The function and payload are read back from the
	 * command that async.schedule() wrote.
	 */
	RETURN QUERY EXECUTE $q$
		SELECT pg_catalog.substr(j.jobname::text, 7), j.schedule,
			   pg_catalog.replace(CASE WHEN c.m[1] OPERATOR(pg_catalog.=) 'E'
									   THEN pg_catalog.replace(c.m[2], '\\', '\') ELSE c.m[2] END,
								  '''''', ''''),
			   pg_catalog.replace(CASE WHEN c.m[3] OPERATOR(pg_catalog.=) 'E'
									   THEN pg_catalog.replace(c.m[4], '\\', '\') ELSE c.m[4] END,
								  '''''', '''')::jsonb,
			   j.active, j.jobid, j.username::text,
			   r.start_time, r.end_time, r.status, r.return_message
		  FROM cron.job j
		 /* the literals quote_literal() wrote: E'...' when they hold a backslash */
		 CROSS JOIN LATERAL (SELECT pg_catalog.regexp_match(j.command,
				'^SELECT async\.invoke\((E?)''((?:[^'']|'''')*)'', (E?)''((?:[^'']|'''')*)''::jsonb') AS m) c
		  LEFT JOIN LATERAL (SELECT d.start_time, d.end_time, d.status, d.return_message
							   FROM cron.job_run_details d
							  WHERE d.jobid OPERATOR(pg_catalog.=) j.jobid
							  ORDER BY d.runid DESC LIMIT 1) r ON true
		 WHERE j.jobname::text LIKE 'async:%'
		 ORDER BY 1, j.username$q$;
END;
$_$;

COMMENT ON FUNCTION async._schedules() IS 'internal: the schedules of async.schedules, read from pg_cron; none without pg_cron';

CREATE FUNCTION async._set_paused(p_name text, p_paused boolean) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_until timestamptz;
BEGIN
	UPDATE async.functions f SET paused = p_paused, updated_at = pg_catalog.now()
	 WHERE f.name OPERATOR(pg_catalog.=) p_name;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	/*
	 * The marks skip the jobs another transaction holds: a job the workers
	 * claimed since this statement's snapshot is locked again, in its
	 * latest version, to be rechecked, and a worker that then finishes it
	 * waits for this transaction; had this one waited for the worker's
	 * claim in turn, the two would deadlock.  A claim skips the jobs of a
	 * paused function whether or not they are marked; the mark keeps them
	 * out of the indexes the claims walk.  But a claim under way, which
	 * holds the jobs it takes, does not see the pause before its commit:
	 * the marks are tried again until no unmarked job is left (for a
	 * second after the first pass at most; a claim holds its jobs for
	 * milliseconds), so that
	 * every job of the function that starts after this returns was
	 * already running when it did.
	 */
	IF p_paused THEN
		LOOP
			/* the queued jobs in jobs_ready_idx, then those in jobs_limited_idx */
			UPDATE async.jobs j SET paused = true
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
				   SELECT x.id FROM async.jobs x
					WHERE x.finished_at IS NULL AND NOT x.paused AND NOT x.limited
					  AND x.state OPERATOR(pg_catalog.=) 'queued'
					  AND x.function OPERATOR(pg_catalog.=) p_name
					  FOR UPDATE SKIP LOCKED))
			   AND j.state OPERATOR(pg_catalog.=) 'queued' AND NOT j.paused;
			UPDATE async.jobs j SET paused = true
			 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
				   SELECT x.id FROM async.jobs x
					WHERE x.function OPERATOR(pg_catalog.=) p_name
					  AND x.limited AND NOT x.paused AND x.finished_at IS NULL
					  AND x.state OPERATOR(pg_catalog.=) 'queued'
					  FOR UPDATE SKIP LOCKED))
			   AND j.state OPERATOR(pg_catalog.=) 'queued' AND NOT j.paused;
			/* for a second from the end of the first pass, however long it took */
			v_until := COALESCE(v_until, pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) '1 second'::pg_catalog.interval);
			EXIT WHEN pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_until OR NOT EXISTS (
				SELECT FROM async.jobs x
				 WHERE x.function OPERATOR(pg_catalog.=) p_name
				   AND x.finished_at IS NULL AND NOT x.paused
				   AND x.state OPERATOR(pg_catalog.=) 'queued');
			PERFORM pg_catalog.pg_sleep(0.01);
		END LOOP;
	ELSE
		/* claims leave paused jobs alone (a recheck's hold is brief) */
		UPDATE async.jobs j SET paused = false
		 WHERE j.paused AND j.function OPERATOR(pg_catalog.=) p_name;
	END IF;
	RETURN true;
END;
$$;

COMMENT ON FUNCTION async._set_paused(p_name text, p_paused boolean) IS 'internal: the writes behind async.pause() and async.resume(): the flag, and the mark on the function''s queued jobs';

CREATE FUNCTION async._source_function(tgargs bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$
	SELECT pg_catalog.convert_from(pg_catalog.substr(tgargs, 1,
		pg_catalog.position(tgargs, '\x00'::bytea) OPERATOR(pg_catalog.-) 1), 'UTF8')
$$;

COMMENT ON FUNCTION async._source_function(tgargs bytea) IS 'internal: the function name stored as the first argument of a source trigger';

CREATE FUNCTION async._source_trigger() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
	PERFORM async.invoke(TG_ARGV[0], pg_catalog.jsonb_build_object(
		'operation', TG_OP,
		'schema', TG_TABLE_SCHEMA,
		'table', TG_TABLE_NAME,
		'old', CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN pg_catalog.to_jsonb(OLD) END,
		'new', CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN pg_catalog.to_jsonb(NEW) END,
		'time', pg_catalog.clock_timestamp()));
	RETURN NULL;
END;
$$;

COMMENT ON FUNCTION async._source_trigger() IS 'internal: the row trigger async.attach() installs; enqueues the change as an event for the function named by its argument';

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
	 * those.  A worker of 0.15 cleared the key of a keyed job it claimed:
	 * it comes back from the job's row in async.running, through one jsonb object
	 * by job id (the planner cannot know how many rows the deletion
	 * returns, and a nested loop over them took 190 ms a batch of 1,000);
	 * a batch without a keyed job skips that lookup.
	 */
	WITH released AS (
		DELETE FROM async.running r WHERE r.job_id OPERATOR(pg_catalog.=) ANY (p_ids)
		RETURNING r.job_id, r.key),
	keys AS MATERIALIZED (
		SELECT pg_catalog.jsonb_object_agg(x.job_id::pg_catalog.text, x.key) AS keys
		  FROM released x WHERE x.key IS NOT NULL),
	done AS (
		UPDATE async.jobs j SET state = 'succeeded',
			   finished_at = COALESCE(d.finished_at, v_now),
			   duration = COALESCE(d.duration_us OPERATOR(pg_catalog.*) '1 microsecond'::interval,
								   v_now OPERATOR(pg_catalog.-) j.started_at),
			   result = d.result,
			   key = CASE WHEN k.keys IS NULL THEN j.key
						  ELSE COALESCE(j.key, k.keys OPERATOR(pg_catalog.->>) j.id::pg_catalog.text) END
		  FROM ROWS FROM (pg_catalog.unnest(p_ids), pg_catalog.unnest(p_results),
						  pg_catalog.unnest(p_finished), pg_catalog.unnest(p_duration_us))
			   AS d(id, result, finished_at, duration_us),
			   keys k
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

COMMENT ON FUNCTION async._succeed(p_ids bigint[], p_results jsonb[], p_destinations boolean, p_finished timestamp with time zone[], p_duration_us bigint[]) IS 'internal: the one place jobs succeed: marks jobs p_ids succeeded with their handlers'' results (or NULL), end and run times (NULL: now, since their claim), and enqueues their on_success records if p_destinations';

CREATE FUNCTION async._try_recovery_lock() RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_try_recovery_lock';

COMMENT ON FUNCTION async._try_recovery_lock() IS 'internal: takes, without waiting and until the end of the transaction, the lock that lets one async._recover() run at a time; a lock no SQL command can take';

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
	/*
	 * Each part goes function by function (a LATERAL subquery that locks
	 * rows is not flattened: a nested loop, one index range per function),
	 * so that a part with no function to act on reads no job.
	 */
	unlimited AS (
		UPDATE async.jobs j SET limited = false, key = NULL
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT x.id FROM async._limited_job_functions() h(name) CROSS JOIN LATERAL (
					  SELECT x.id FROM async.jobs x
					   WHERE x.function OPERATOR(pg_catalog.=) h.name
						 AND x.limited AND NOT x.paused AND x.finished_at IS NULL
						 FOR UPDATE SKIP LOCKED) x
				WHERE NOT async._is_limited(h.name)))
		   AND j.limited AND NOT j.paused
		RETURNING 1),
	/*
	 * a job enqueued under a change of concurrency_key by a session that
	 * had not seen it yet: without a key, a function with one never
	 * claims it (a walk of the function's lane in jobs_limited_idx, which
	 * only functions with a concurrency_key pay for); with a key, a
	 * function without one leaves it in jobs_keyed_idx (an index range,
	 * empty but for that race).  10,000 of either a sweep.
	 */
	keyless AS (
		UPDATE async.jobs j SET key = async._job_key(j.function, j.payload)
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT x.id FROM async.functions f CROSS JOIN LATERAL (
					  SELECT x.id FROM async.jobs x
					   WHERE x.function OPERATOR(pg_catalog.=) f.name
						 AND x.limited AND NOT x.paused AND x.finished_at IS NULL
						 AND x.state OPERATOR(pg_catalog.=) 'queued' AND x.key IS NULL
					   ORDER BY x.priority, x.run_at LIMIT 10000
						 FOR UPDATE SKIP LOCKED) x
				WHERE f.concurrency_key IS NOT NULL))
		   AND j.state OPERATOR(pg_catalog.=) 'queued' AND NOT j.paused
		RETURNING 1),
	unkeyed AS (
		UPDATE async.jobs j SET key = NULL
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT x.id FROM async.functions f CROSS JOIN LATERAL (
					  SELECT x.id FROM async.jobs x
					   WHERE x.function OPERATOR(pg_catalog.=) f.name AND x.key IS NOT NULL
						 AND x.state OPERATOR(pg_catalog.=) 'queued'
						 AND NOT x.paused AND x.finished_at IS NULL
					   ORDER BY x.key, x.priority, x.run_at LIMIT 10000
						 FOR UPDATE SKIP LOCKED) x
				WHERE f.concurrency_key IS NULL))
		   AND j.state OPERATOR(pg_catalog.=) 'queued' AND NOT j.paused
		RETURNING 1)
	SELECT ((SELECT pg_catalog.count(*) FROM unpaused) OPERATOR(pg_catalog.+)
			(SELECT pg_catalog.count(*) FROM unlimited) OPERATOR(pg_catalog.+)
			(SELECT pg_catalog.count(*) FROM keyless) OPERATOR(pg_catalog.+)
			(SELECT pg_catalog.count(*) FROM unkeyed))::integer;
$$;

COMMENT ON FUNCTION async._unpause_jobs() IS 'internal: releases the paused jobs whose function is no longer paused, and the limited jobs whose function no longer has a concurrency limit (or either, no longer registered), and gives a queued job the key its function''s concurrency_key gives it when an enqueue that raced a change of it did not';

CREATE FUNCTION async._unregister(p_name text, p_cancel_jobs boolean) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
	v_n bigint;
	v_tables text;
BEGIN
	/* one change of the registration at a time */
	PERFORM FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) p_name FOR UPDATE;

	SELECT pg_catalog.string_agg(s.source::pg_catalog.text, ', ' ORDER BY s.source::pg_catalog.text)
	  INTO v_tables FROM async.sources s WHERE s.function OPERATOR(pg_catalog.=) p_name;
	IF v_tables IS NOT NULL THEN
		RAISE EXCEPTION 'function "%" has tables attached', p_name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = pg_catalog.format('Attached: %s.', v_tables),
				  HINT = 'Detach them with async.detach() first.';
	END IF;

	SELECT pg_catalog.count(*) INTO v_n FROM async.jobs j
	 WHERE j.finished_at IS NULL AND j.function OPERATOR(pg_catalog.=) p_name
	   AND j.state OPERATOR(pg_catalog.=) 'running';
	IF v_n OPERATOR(pg_catalog.>) 0 THEN
		RAISE EXCEPTION 'function "%" has % running jobs', p_name, v_n
			USING ERRCODE = 'object_in_use',
				  HINT = 'Pause it with async.pause(), and unregister it when they have finished.';
	END IF;

	IF p_cancel_jobs THEN
		PERFORM async._bury_jobs(ARRAY(
			SELECT j.id FROM async.jobs j
			 WHERE j.finished_at IS NULL AND j.function OPERATOR(pg_catalog.=) p_name
			   AND j.state OPERATOR(pg_catalog.=) 'queued'),
			'unregistered', 'function was unregistered', 'queued');
	ELSE
		SELECT pg_catalog.count(*) INTO v_n FROM async.jobs j
		 WHERE j.finished_at IS NULL AND j.function OPERATOR(pg_catalog.=) p_name;
		IF v_n OPERATOR(pg_catalog.>) 0 THEN
			RAISE EXCEPTION 'function "%" has % unfinished jobs', p_name, v_n
				USING ERRCODE = 'object_in_use',
					  DETAIL = 'Whoever registers the name next would run them.',
					  HINT = 'Wait until they have run, or pass cancel_jobs => true to move them to async.dead_letters.';
		END IF;
	END IF;

	UPDATE async.functions f SET on_success = NULL, updated_at = pg_catalog.now()
	 WHERE f.on_success OPERATOR(pg_catalog.=) p_name;
	UPDATE async.functions f SET on_failure = NULL, updated_at = pg_catalog.now()
	 WHERE f.on_failure OPERATOR(pg_catalog.=) p_name;
	DELETE FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) p_name;
END;
$$;

COMMENT ON FUNCTION async._unregister(p_name text, p_cancel_jobs boolean) IS 'internal: the checks and writes behind async.unregister()';

CREATE FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval, p_concurrency_key text, p_key_concurrency integer) RETURNS void
    LANGUAGE sql
    AS $$
	INSERT INTO async.functions AS f
		(name, handler, run_as, max_attempts, retry_delays, timeout, registered_by,
		 max_event_age, concurrency, on_success, on_failure, priority, max_depth,
		 rate_limit, rate_period, concurrency_key, key_concurrency)
	VALUES (p_name, p_handler, p_run_as, p_max_attempts, p_retry_delays, p_timeout, p_registered_by,
			p_max_event_age, p_concurrency, p_on_success, p_on_failure, p_priority, p_max_depth,
			p_rate_limit, p_rate_period, p_concurrency_key, p_key_concurrency)
	ON CONFLICT (name) DO UPDATE SET
		concurrency_key = excluded.concurrency_key,
		key_concurrency = excluded.key_concurrency,
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

COMMENT ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval, p_concurrency_key text, p_key_concurrency integer) IS 'internal: writes a registration for async.register()';

CREATE FUNCTION async._valid_condition(condition text) RETURNS void
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_valid_condition';

COMMENT ON FUNCTION async._valid_condition(condition text) IS 'internal: raises an error unless condition is a single SQL expression, for async.attach()';

CREATE FUNCTION async._worker_started_at(pid integer) RETURNS timestamp with time zone
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_worker_started_at';

COMMENT ON FUNCTION async._worker_started_at(pid integer) IS 'internal: when the live pg_async worker with this pid started, NULL if none has it';

CREATE FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) RETURNS SETOF record
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_all_workers_view';

COMMENT ON FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) IS 'internal: the worker slots of every database in shared memory, behind the view async.all_workers';

CREATE FUNCTION async._workers(OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) RETURNS SETOF record
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_workers_view';

COMMENT ON FUNCTION async._workers(OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) IS 'internal: the worker slots in shared memory, behind the view async.workers';

CREATE FUNCTION async.attach(source regclass, function text, events text[] DEFAULT '{INSERT,UPDATE,DELETE}'::text[], condition text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	v_trigger text := 'async_' || left(attach.function, 48) || '_'
					  || left(md5(attach.function), 8);
	v_events text[];
BEGIN
	IF NOT EXISTS (SELECT FROM async.functions f WHERE f.name = attach.function) THEN
		RAISE EXCEPTION 'function "%" is not registered with pg_async', attach.function
			USING ERRCODE = 'undefined_function', HINT = 'Register it with async.register() first.';
	END IF;
	/* an attachment holds the name (async.unregister refuses): only enqueuers may */
	IF NOT COALESCE(has_function_privilege((SELECT f.handler FROM async.functions f
											 WHERE f.name = attach.function)::oid, 'EXECUTE'), false) THEN
		RAISE EXCEPTION 'permission denied to attach function "%"', attach.function
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Attaching needs the right to enqueue for it: EXECUTE on its handler.';
	END IF;
	SELECT array_agg(DISTINCT upper(e)) INTO v_events FROM unnest(attach.events) e;
	IF v_events IS NULL OR NOT v_events <@ '{INSERT,UPDATE,DELETE}'::text[] THEN
		RAISE EXCEPTION 'events must be a non-empty list of INSERT, UPDATE and DELETE'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF attach.condition IS NOT NULL THEN
		PERFORM async._valid_condition(attach.condition);
	END IF;
	/* run as the caller: creating the trigger needs the TRIGGER privilege on the table */
	EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION async._source_trigger(%L)',
		v_trigger, array_to_string(v_events, ' OR '), attach.source,
		CASE WHEN attach.condition IS NOT NULL THEN 'WHEN (' || attach.condition || ')' ELSE '' END,
		attach.function);
	RETURN v_trigger;
END;
$$;

COMMENT ON FUNCTION async.attach(source regclass, function text, events text[], condition text) IS 'makes each matching row change of source enqueue one event for function (operation, schema, table, old and new row as jsonb, time), in the changing transaction; needs the TRIGGER privilege on source. Returns the trigger name.';

CREATE FUNCTION async.cancel(event_id text) RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_cancel';

COMMENT ON FUNCTION async.cancel(event_id text) IS 'removes your job with this event_id if it waits (queued, scheduled, paused or held), freeing the event_id; false when you have no such job; an error while it runs';

CREATE FUNCTION async.claim(function text, max_jobs integer DEFAULT 1, wait interval DEFAULT '00:00:00'::interval) RETURNS TABLE(job_id bigint, event_id text, payload jsonb, attempt integer, deadline timestamp with time zone, lease uuid)
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_claim';

COMMENT ON FUNCTION async.claim(function text, max_jobs integer, wait interval) IS 'claims up to max_jobs (1 to 1000) ready jobs of an external function, in run_at order, each running until its deadline under a lease that async.complete(), async.fail() and async.heartbeat() need; with nothing ready, waits up to wait (at most 1 hour) for an enqueue of the function to commit. Needs the privileges of the function''s run_as role. With pg_async.claim_synchronous_commit off, a transaction that wrote nothing but claims of functions without a limit commits without waiting for its WAL flush';

CREATE FUNCTION async.complete(job_id bigint, lease uuid, result jsonb DEFAULT NULL::jsonb) RETURNS boolean
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_complete';

COMMENT ON FUNCTION async.complete(job_id bigint, lease uuid, result jsonb) IS 'a claimed job succeeded, with result (passed to on_success); false, and nothing changed, when the lease is no longer the job''s. Commits or rolls back with the caller''s transaction';

CREATE FUNCTION async.complete_many(job_ids bigint[], leases uuid[], results jsonb[] DEFAULT NULL::jsonb[]) RETURNS integer
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_complete_many';

COMMENT ON FUNCTION async.complete_many(job_ids bigint[], leases uuid[], results jsonb[]) IS 'async.complete() for up to 10000 claimed jobs at once, the arrays matched by position (results NULL: no results); returns how many of the leases were still their jobs'', which succeeded';

CREATE FUNCTION async.fail(job_id bigint, lease uuid, error text, retry_after interval DEFAULT NULL::interval) RETURNS boolean
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_fail';

COMMENT ON FUNCTION async.fail(job_id bigint, lease uuid, error text, retry_after interval) IS 'a claimed job''s attempt failed with error: it is retried on the function''s schedule (after retry_after, 0 to 30 days, if given), or dead-lettered after max_attempts; false, and nothing changed, when the lease is no longer the job''s';

CREATE FUNCTION async.heartbeat(job_id bigint, lease uuid) RETURNS timestamp with time zone
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_heartbeat';

COMMENT ON FUNCTION async.heartbeat(job_id bigint, lease uuid) IS 'a claimed job is still being worked on: its deadline moves to now plus the function''s timeout, and is returned; NULL, and nothing changed, when the lease is no longer the job''s';

CREATE FUNCTION async.configure(name text, max_attempts integer DEFAULT NULL::integer, retry_delays interval[] DEFAULT NULL::interval[], timeout interval DEFAULT NULL::interval, max_event_age interval DEFAULT NULL::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text, priority integer DEFAULT NULL::integer, max_depth integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT NULL::interval, concurrency_key text DEFAULT NULL::text, key_concurrency integer DEFAULT NULL::integer) RETURNS text
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
	IF configure.key_concurrency OPERATOR(pg_catalog.<) -1 THEN
		RAISE EXCEPTION 'key_concurrency must be -1 (no limit by key) or 1 to 10000'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	/* key_concurrency -1 removes the limit by key, and its key with it */
	IF configure.key_concurrency OPERATOR(pg_catalog.=) -1 THEN
		IF configure.concurrency_key IS NOT NULL THEN
			RAISE EXCEPTION 'key_concurrency -1 removes the concurrency_key: give none'
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		f.concurrency_key := NULL;
		f.key_concurrency := NULL;
	ELSE
		f.concurrency_key := COALESCE(configure.concurrency_key, f.concurrency_key);
		f.key_concurrency := COALESCE(configure.key_concurrency, f.key_concurrency);
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
			COALESCE(configure.priority, f.priority), f.max_depth, f.rate_limit, f.rate_period,
			f.concurrency_key, f.key_concurrency);
	END IF;
	RETURN async.register(f.handler::pg_catalog.regprocedure, f.name, f.max_attempts,
		f.retry_delays, f.timeout, f.run_as, f.max_event_age, f.concurrency,
		f.on_success, f.on_failure, COALESCE(configure.priority, f.priority), f.max_depth,
		f.rate_limit, f.rate_period, f.concurrency_key, f.key_concurrency);
END;
$$;

COMMENT ON FUNCTION async.configure(name text, max_attempts integer, retry_delays interval[], timeout interval, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'changes some settings of a registration and keeps the others; concurrency -1, rate_limit -1 and key_concurrency -1 (with its concurrency_key) remove those limits, max_depth -1 goes back to pg_async.max_depth, on_success or on_failure '''' removes a destination. Needs the same rights as async.register().';

CREATE FUNCTION async.detach(source regclass, function text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	v_trigger name;
BEGIN
	SELECT t.tgname INTO v_trigger FROM pg_catalog.pg_trigger t
	 WHERE t.tgrelid OPERATOR(pg_catalog.=) detach.source
	   AND t.tgfoid OPERATOR(pg_catalog.=) 'async._source_trigger()'::pg_catalog.regprocedure
	   AND async._source_function(t.tgargs)
		   OPERATOR(pg_catalog.=) detach.function;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', v_trigger, detach.source);
	RETURN true;
END;
$$;

COMMENT ON FUNCTION async.detach(source regclass, function text) IS 'removes what async.attach() installed on source for function; false when there is none';

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
	ELSIF NOT async._database_served() THEN
		status := 'critical';
		detail := format('pg_async.databases (%s) and pg_async.database (%s) leave this database out',
						 current_setting('pg_async.databases'), current_setting('pg_async.database'));
		hint := format('Add %I to pg_async.databases and reload the configuration.', current_database());
	ELSIF (SELECT w.waiting_since FROM async._database_workers() w) IS NOT NULL THEN
		status := 'warning';
		detail := format('waiting %s for a worker: pg_async.max_workers (%s) workers run in other databases',
						 date_trunc('second', now() - (SELECT w.waiting_since FROM async._database_workers() w)),
						 current_setting('pg_async.max_workers'));
		hint := 'Raise pg_async.max_workers (and max_worker_processes) if this lasts; the databases take turns meanwhile.';
	ELSIF v_workers = 0 AND (SELECT w.idle FROM async._database_workers() w) THEN
		status := 'ok';
		detail := 'idle: no worker runs until a job is enqueued or comes due (pg_async.worker_idle_timeout)';
		hint := NULL;
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
			AND j.run_at >= (SELECT r.floor FROM async._ready_floor() r)
			/* a job async.pause() skipped is held all the same */
			AND NOT EXISTS (SELECT FROM async.functions f WHERE f.name = j.function AND f.paused)),
		(SELECT min(j.run_at) FROM async.jobs j
		  WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
			AND j.state = 'queued' AND j.run_at <= now() AND j.priority <> 0
			AND NOT EXISTS (SELECT FROM async.functions f WHERE f.name = j.function AND f.paused)),
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

COMMENT ON FUNCTION async.health(ready_age_warning interval, xmin_age_warning interval) IS 'one row per check of pg_async (workers, oldest_ready_job, dead_letters, xmin_horizon, queue_bloat, handlers) with status ok, warning or critical, a detail and a hint';

CREATE FUNCTION async.invoke(function text, payload jsonb, event_id text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT clock_timestamp(), priority integer DEFAULT NULL::integer) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_invoke';

COMMENT ON FUNCTION async.invoke(function text, payload jsonb, event_id text, run_at timestamp with time zone, priority integer) IS 'enqueues one event for a registered function and returns its event_id; with an event_id already taken it enqueues nothing and returns that id. priority (-32768 to 32767, lower runs first) defaults to the function''s';

CREATE FUNCTION async.invoke_many(function text, payloads jsonb[], priority integer DEFAULT NULL::integer) RETURNS text[]
    LANGUAGE sql
    AS $$
	WITH enqueued AS (
		INSERT INTO async.jobs (function, payload, priority)
		SELECT invoke_many.function, p.payload, async._priority(invoke_many.priority)
		  FROM pg_catalog.unnest(invoke_many.payloads) WITH ORDINALITY AS p(payload, n)
		 ORDER BY p.n
		RETURNING event_id)
	SELECT COALESCE(pg_catalog.array_agg(e.event_id), '{}') FROM enqueued e;
$$;

COMMENT ON FUNCTION async.invoke_many(function text, payloads jsonb[], priority integer) IS 'enqueues one event per payload for a registered function, in one statement; returns their event_ids. priority (lower runs first) defaults to the function''s';

CREATE FUNCTION async.metrics() RETURNS text
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
	v_out text := '';
	r record;
BEGIN
	v_out := v_out || E'# HELP pg_async_jobs Jobs in async.jobs by function and state (ready, held, scheduled, running, succeeded, dead).\n# TYPE pg_async_jobs gauge\n';
	FOR r IN SELECT * FROM async.stats ORDER BY function LOOP
		v_out := v_out
			|| format(E'pg_async_jobs{function="%s",state="ready"} %s\n', async._prometheus_label(r.function), r.ready)
			|| format(E'pg_async_jobs{function="%s",state="held"} %s\n', async._prometheus_label(r.function), r.held)
			|| format(E'pg_async_jobs{function="%s",state="scheduled"} %s\n', async._prometheus_label(r.function), r.scheduled)
			|| format(E'pg_async_jobs{function="%s",state="running"} %s\n', async._prometheus_label(r.function), r.running)
			|| format(E'pg_async_jobs{function="%s",state="succeeded"} %s\n', async._prometheus_label(r.function), r.succeeded)
			|| format(E'pg_async_jobs{function="%s",state="dead"} %s\n', async._prometheus_label(r.function), r.dead);
	END LOOP;

	v_out := v_out || E'# HELP pg_async_oldest_ready_age_seconds Age of the oldest job that is due and waits.\n# TYPE pg_async_oldest_ready_age_seconds gauge\n';
	FOR r IN SELECT function, COALESCE(extract(epoch FROM oldest_ready_age), 0) AS age FROM async.stats ORDER BY function LOOP
		v_out := v_out || format(E'pg_async_oldest_ready_age_seconds{function="%s"} %s\n',
								 async._prometheus_label(r.function), r.age);
	END LOOP;

	v_out := v_out || E'# HELP pg_async_dead_letters Events in async.dead_letters.\n# TYPE pg_async_dead_letters gauge\n';
	FOR r IN SELECT d.function, count(*) AS n FROM async.dead_letters d GROUP BY d.function ORDER BY 1 LOOP
		v_out := v_out || format(E'pg_async_dead_letters{function="%s"} %s\n', async._prometheus_label(r.function), r.n);
	END LOOP;

	/* one family per counter, each with all its samples together */
	FOR r IN SELECT * FROM (VALUES
			('received', 'Events enqueued.'),
			('started', 'Attempts started.'),
			('succeeded', 'Attempts that succeeded.'),
			('failed', 'Attempts that failed.'),
			('retried', 'Failed attempts queued again.'),
			('dead_lettered', 'Events moved to the dead letters.'),
			('duplicates_skipped', 'Events skipped by async.invoke() for a taken event_id.'),
			('loops_stopped', 'Events dead-lettered for coming deeper than max_depth in a chain (a loop).')) m(name, help) LOOP
		v_out := v_out || format(E'# HELP pg_async_%1$s_total %2$s\n# TYPE pg_async_%1$s_total counter\n',
								 r.name, r.help);
		v_out := v_out || COALESCE((
			SELECT string_agg(format(E'pg_async_%s_total{function="%s"} %s\n', r.name,
									 async._prometheus_label(f.function),
									 to_jsonb(f) ->> r.name), '' ORDER BY f.function)
			  FROM async.function_stats f), '');
	END LOOP;

	/* two summaries from the histograms: handler duration and queue wait */
	FOR r IN SELECT * FROM (VALUES
			('handler_duration', 'duration', 'Run time of handlers.'),
			('queue_wait', 'wait', 'Time from when a job is due to the start of its attempt.')) m(metric, col, help) LOOP
		v_out := v_out || format(E'# HELP pg_async_%1$s_seconds %2$s\n# TYPE pg_async_%1$s_seconds summary\n',
								 r.metric, r.help);
		v_out := v_out || COALESCE((
			SELECT string_agg(format(E'pg_async_%1$s_seconds{function="%2$s",quantile="0.5"} %3$s\n'
									  'pg_async_%1$s_seconds{function="%2$s",quantile="0.95"} %4$s\n'
									  'pg_async_%1$s_seconds{function="%2$s",quantile="1"} %5$s\n'
									  'pg_async_%1$s_seconds_sum{function="%2$s"} %6$s\n'
									  'pg_async_%1$s_seconds_count{function="%2$s"} %7$s\n',
									  r.metric, async._prometheus_label(f.function),
									  (j ->> (r.col || '_p50_ms'))::float8 / 1000,
									  (j ->> (r.col || '_p95_ms'))::float8 / 1000,
									  (j ->> (r.col || '_max_ms'))::float8 / 1000,
									  (j ->> (r.col || '_avg_ms'))::float8 * f.started / 1000,
									  f.started), '' ORDER BY f.function)
			  FROM async.function_stats f, LATERAL to_jsonb(f) j), '');
	END LOOP;

	v_out := v_out || E'# HELP pg_async_workers Worker processes by state.\n# TYPE pg_async_workers gauge\n';
	FOR r IN SELECT s.state, count(w.pid) AS n
			   FROM (VALUES ('idle'), ('running')) s(state)
			   LEFT JOIN async.workers w ON w.state = s.state
			  GROUP BY s.state ORDER BY s.state LOOP
		v_out := v_out || format(E'pg_async_workers{state="%s"} %s\n', r.state, r.n);
	END LOOP;

	v_out := v_out || E'# HELP pg_async_health Health checks: 0 ok, 1 warning, 2 critical.\n# TYPE pg_async_health gauge\n';
	FOR r IN SELECT h."check", h.status FROM async.health() h LOOP
		v_out := v_out || format(E'pg_async_health{check="%s"} %s\n', r."check",
								 CASE r.status WHEN 'ok' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END);
	END LOOP;
	RETURN v_out;
END;
$_$;

COMMENT ON FUNCTION async.metrics() IS 'everything pg_async counts, in the Prometheus text exposition format, one metric family per figure with function labels';

CREATE FUNCTION async.pause(name text) RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_pause';

COMMENT ON FUNCTION async.pause(name text) IS 'holds the jobs of a function: they wait, without spending attempts and without blocking other functions, until async.resume()';

CREATE FUNCTION async.purge_dead_letters(function text DEFAULT NULL::text, reason text DEFAULT NULL::text, older_than interval DEFAULT NULL::interval) RETURNS integer
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_purge_dead_letters';

COMMENT ON FUNCTION async.purge_dead_letters(function text, reason text, older_than interval) IS 'deletes your dead letters that match every filter given (function, reason, dead longer ago than older_than); returns how many';

CREATE FUNCTION async.redrive(event_id text) RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_redrive';

COMMENT ON FUNCTION async.redrive(event_id text) IS 'puts your latest dead letter with this event_id back in the queue with fresh attempts; false when you have none (whether or not another role has one). Needs the privileges of the role that enqueued it, which must still be allowed to enqueue for the function';

CREATE FUNCTION async.redrive_many(function text DEFAULT NULL::text, reason text DEFAULT NULL::text, dead_after timestamp with time zone DEFAULT NULL::timestamp with time zone, dead_before timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	v_event_id text;
	n integer := 0;
BEGIN
	FOR v_event_id IN
		SELECT DISTINCT d.event_id FROM async.dead_letters d
		 WHERE (redrive_many.function IS NULL OR d.function OPERATOR(pg_catalog.=) redrive_many.function)
		   AND (redrive_many.reason IS NULL OR d.reason OPERATOR(pg_catalog.=) redrive_many.reason)
		   AND (redrive_many.dead_after IS NULL OR d.dead_at OPERATOR(pg_catalog.>=) redrive_many.dead_after)
		   AND (redrive_many.dead_before IS NULL OR d.dead_at OPERATOR(pg_catalog.<) redrive_many.dead_before)
		   AND pg_catalog.pg_has_role(d.enqueued_by, 'USAGE')
	LOOP
		IF async.redrive(v_event_id) THEN
			n := n OPERATOR(pg_catalog.+) 1;
		END IF;
	END LOOP;
	RETURN n;
END;
$$;

COMMENT ON FUNCTION async.redrive_many(function text, reason text, dead_after timestamp with time zone, dead_before timestamp with time zone) IS 'redrives every dead letter of the caller that matches function, reason and dead_at range (NULL matches all); returns how many';

CREATE FUNCTION async.register(handler regprocedure, name text DEFAULT NULL::text, max_attempts integer DEFAULT 3, retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[], timeout interval DEFAULT '00:01:00'::interval, run_as regrole DEFAULT NULL::regrole, max_event_age interval DEFAULT '06:00:00'::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text, priority integer DEFAULT 0, max_depth integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT '00:00:01'::interval, concurrency_key text DEFAULT NULL::text, key_concurrency integer DEFAULT NULL::integer) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_register';

COMMENT ON FUNCTION async.register(handler regprocedure, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'registers handler (a function taking jsonb, or jsonb and async.context, not temporary) under name (default: the function''s name), or updates the registration; returns the name. The handler runs as run_as, by default its owner, which must have the privileges of run_as. Bounds: max_attempts 1 to 100, at most 100 retry_delays of 0 to 30 days each, timeout up to 1 day, max_event_age 1 second to 30 days, priority (of the jobs enqueued without one; lower runs first) -32768 to 32767, max_depth (the deepest chain of events it runs; NULL: pg_async.max_depth) 1 to 1000, rate_limit (the most jobs started in any window of rate_period; NULL: no limit) 1 to 10000, rate_period 10 milliseconds to 1 day, concurrency_key (a key of the payload; NULL: none) 1 to 127 bytes, and with it key_concurrency (the most jobs with the same value of that key running at once) 1 to 10000';

CREATE FUNCTION async.register_external(name text, max_attempts integer DEFAULT 3, retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[], timeout interval DEFAULT '00:01:00'::interval, run_as regrole DEFAULT NULL::regrole, max_event_age interval DEFAULT '06:00:00'::interval, concurrency integer DEFAULT NULL::integer, on_success text DEFAULT NULL::text, on_failure text DEFAULT NULL::text, priority integer DEFAULT 0, max_depth integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT '00:00:01'::interval, concurrency_key text DEFAULT NULL::text, key_concurrency integer DEFAULT NULL::integer) RETURNS text
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_register_external';

COMMENT ON FUNCTION async.register_external(name text, max_attempts integer, retry_delays interval[], timeout interval, run_as regrole, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'registers a function whose jobs consumers outside the server run (async.claim()), or updates its registration; returns the name. Claiming and enqueueing its jobs need the privileges of run_as, by default the caller. timeout is the lease of each attempt. Bounds as async.register()';

CREATE FUNCTION async.resume(name text) RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_resume';

COMMENT ON FUNCTION async.resume(name text) IS 'lets the jobs of a paused function run again';

CREATE FUNCTION async.schedule(name text, schedule text, function text, payload jsonb DEFAULT '{}'::jsonb) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
	v_unit text;
	v_command text;
	v_jobid bigint;
BEGIN
	PERFORM async._require_cron();
	IF name IS NULL OR name OPERATOR(pg_catalog.=) '' OR pg_catalog.octet_length(name) OPERATOR(pg_catalog.>) 50
	   OR name OPERATOR(pg_catalog.~) '[[:cntrl:]]' THEN
		RAISE EXCEPTION 'invalid schedule name %', COALESCE(pg_catalog.quote_literal(name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A schedule name has 1 to 50 bytes and no control characters.';
	END IF;
	IF schedule IS NULL OR payload IS NULL THEN
		RAISE EXCEPTION 'the schedule and the payload of a schedule must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) schedule.function) THEN
		RAISE EXCEPTION 'function "%" is not registered with pg_async', function
			USING ERRCODE = 'undefined_function',
				  HINT = 'Register it with async.register() first.';
	END IF;
	/*
	 * Each tick enqueues one event whose event_id is the name and the
	 * tick's time in UTC: to the second for pg_cron's interval schedules
	 * ("30 seconds"), to the minute for a cron line.  A tick run twice
	 * (a retry, a clock stepped back) makes the same event_id, which
	 * async.invoke() enqueues once.  The command runs as the role that
	 * scheduled it, whose right to enqueue is checked at each tick.
	 */
	v_unit := CASE WHEN schedule OPERATOR(pg_catalog.~*) '^\s*[0-9]+\s+seconds?\s*$' THEN 'second' ELSE 'minute' END;
	v_command := pg_catalog.format(
		'SELECT async.invoke(%L, %L::jsonb, %L OPERATOR(pg_catalog.||) pg_catalog.to_char('
		'pg_catalog.date_trunc(%L, pg_catalog.timezone(''UTC'', pg_catalog.now())), ''YYYY-MM-DD"T"HH24:MI:SS"Z"''))',
		function, payload::text, name OPERATOR(pg_catalog.||) ':', v_unit);
	EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO v_jobid
		USING 'async:' OPERATOR(pg_catalog.||) name, schedule, v_command;
	RETURN v_jobid;
END;
$_$;

COMMENT ON FUNCTION async.schedule(name text, schedule text, function text, payload jsonb) IS 'makes a pg_cron job, named async:<name>, that enqueues an event for the function at each tick of the schedule (a cron line, or pg_cron''s ''N seconds''), with event_id <name>:<tick time in UTC> so that a tick run twice enqueues once; it runs as you, with your right to enqueue. Scheduling again under the same name replaces the schedule. Returns the pg_cron job id';

CREATE FUNCTION async.stats_reset() RETURNS void
    LANGUAGE c
    AS 'MODULE_PATHNAME', 'pg_async_stats_reset';

COMMENT ON FUNCTION async.stats_reset() IS 'resets every counter of async.function_stats; superusers only unless granted';

CREATE FUNCTION async.unregister(name text, cancel_jobs boolean DEFAULT false) RETURNS boolean
    LANGUAGE c STRICT
    AS 'MODULE_PATHNAME', 'pg_async_unregister';

COMMENT ON FUNCTION async.unregister(name text, cancel_jobs boolean) IS 'removes a registration; refused while its jobs run, while tables are attached to it, and while its jobs wait unless cancel_jobs moves them to async.dead_letters (reason unregistered). Returns false when no such name is registered.';

CREATE FUNCTION async.unschedule(name text) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	v_found boolean;
BEGIN
	PERFORM async._require_cron();
	EXECUTE 'SELECT EXISTS (SELECT FROM cron.job j WHERE j.jobname OPERATOR(pg_catalog.=) $1'
			' AND j.username OPERATOR(pg_catalog.=) CURRENT_USER)'
		INTO v_found USING 'async:' OPERATOR(pg_catalog.||) name;
	IF NOT v_found THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT cron.unschedule($1)' USING 'async:' OPERATOR(pg_catalog.||) name;
	RETURN true;
END;
$$;

COMMENT ON FUNCTION async.unschedule(name text) IS 'removes your schedule of that name (its pg_cron job); false when you have none';

CREATE FUNCTION async.wait_idle(timeout interval DEFAULT '00:00:30'::interval) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
	v_deadline timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) timeout;
BEGIN
	LOOP
		IF NOT EXISTS (
			WITH look AS MATERIALIZED (
				SELECT pg_catalog.clock_timestamp() AS now,
					   ARRAY(SELECT f.name FROM async.functions f
							  WHERE f.paused OR f.concurrency OPERATOR(pg_catalog.=) 0
								 OR async._rate_used(f.name, f.rate_period, pg_catalog.clock_timestamp())
									OPERATOR(pg_catalog.>=) f.rate_limit) AS held)
			(SELECT FROM async.jobs j
			  WHERE j.finished_at IS NULL AND NOT j.paused AND NOT j.limited
				AND j.run_at OPERATOR(pg_catalog.<=) (SELECT l.now FROM look l)
				AND (j.state OPERATOR(pg_catalog.=) 'running'
					 OR j.function OPERATOR(pg_catalog.<>) ALL ((SELECT l.held FROM look l)::pg_catalog.text[]))
			  LIMIT 1)
			UNION ALL
			SELECT FROM async._limited_job_functions() n(name) CROSS JOIN LATERAL (
				SELECT FROM async.jobs j
				 WHERE j.function OPERATOR(pg_catalog.=) n.name
				   AND j.limited AND NOT j.paused AND j.finished_at IS NULL
				   AND j.run_at OPERATOR(pg_catalog.<=) (SELECT l.now FROM look l)
				   /*
				    * a held function's queued jobs wait, but its running
				    * ones count: a worker's claim of a keyed job leaves it
				    * limited (0.16)
				    */
				   AND (j.state OPERATOR(pg_catalog.=) 'running'
						OR n.name OPERATOR(pg_catalog.<>) ALL ((SELECT l.held FROM look l)::pg_catalog.text[]))
				 LIMIT 1) x
			UNION ALL
			SELECT FROM async._paused_job_functions() n(name) CROSS JOIN LATERAL (
				SELECT FROM async.jobs j
				 WHERE j.function OPERATOR(pg_catalog.=) n.name
				   AND j.paused AND j.finished_at IS NULL
				   AND j.run_at OPERATOR(pg_catalog.<=) (SELECT l.now FROM look l)
				   /* a held function's jobs are not even looked at */
				   AND n.name OPERATOR(pg_catalog.<>) ALL ((SELECT l.held FROM look l)::pg_catalog.text[])
				 LIMIT 1) x) THEN
			RETURN true;
		END IF;
		IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>=) v_deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_catalog.pg_sleep(0.01);
	END LOOP;
END;
$$;

COMMENT ON FUNCTION async.wait_idle(timeout interval) IS 'waits until no job that can run is ready or running (jobs of paused functions, of functions with concurrency 0, and of functions whose rate limit is full for now do not count); false when timeout passes first. Meant for tests and scripts; call it outside an explicit REPEATABLE READ transaction.';

CREATE TABLE async.attempt_log (
    job_id bigint NOT NULL,
    event_id text NOT NULL COLLATE pg_catalog."C",
    function text NOT NULL COLLATE pg_catalog."C",
    attempt integer NOT NULL,
    worker_pid integer,
    started_at timestamp with time zone NOT NULL,
    duration interval,
    outcome text NOT NULL,
    error text,
    sqlstate text,
    enqueued_by regrole NOT NULL
);

COMMENT ON TABLE async.attempt_log IS 'pg_async history: one row per failed, crashed or expired attempt, kept for pg_async.attempts_retention; read it through async.attempts';

COMMENT ON COLUMN async.attempt_log.attempt IS 'attempt number, from 1';

COMMENT ON COLUMN async.attempt_log.worker_pid IS 'process id of the worker that ran it';

COMMENT ON COLUMN async.attempt_log.duration IS 'run time of the handler';

COMMENT ON COLUMN async.attempt_log.outcome IS 'failed, crashed (the worker died while it ran), expired or loop (not run: deeper than max_depth); succeeded for attempts of jobs deleted by pg_async.retention while pg_async.attempts_retention was longer';

COMMENT ON COLUMN async.attempt_log.error IS 'error message of a failed attempt';

COMMENT ON COLUMN async.attempt_log.sqlstate IS 'SQLSTATE of a failed attempt';

CREATE VIEW async.all_workers AS
 SELECT w.database,
    w.pid,
    w.state,
    w.function,
    w.event_id,
    w.attempt,
    w.started_at,
    w.jobs_done
   FROM async._all_workers() w(database, pid, state, function, event_id, attempt, started_at, jobs_done);

COMMENT ON VIEW async.all_workers IS 'one row per pg_async worker process of every database in the cluster: its database, idle or running, and what it runs now';

CREATE VIEW async.attempts WITH (security_invoker='true') AS
 SELECT l.job_id,
    l.event_id,
    l.function,
    l.attempt,
    l.worker_pid,
    l.started_at,
    l.duration,
    l.outcome,
    l.error,
    l.sqlstate,
    l.enqueued_by
   FROM async.attempt_log l
UNION ALL
 SELECT j.id AS job_id,
    j.event_id,
    j.function,
    j.attempts AS attempt,
    j.worker_pid,
    (j.finished_at - j.duration) AS started_at,
    j.duration,
    'succeeded'::text AS outcome,
    NULL::text AS error,
    NULL::text AS sqlstate,
    j.enqueued_by
   FROM async.jobs j
  WHERE ((j.state = 'succeeded'::text) AND (j.duration IS NOT NULL));

COMMENT ON VIEW async.attempts IS 'pg_async history: one row per attempt (succeeded, failed, crashed or expired). A successful attempt is shown from its job while pg_async.retention keeps the job (and, when pg_async.attempts_retention is longer, from async.attempt_log after that); the others are kept for pg_async.attempts_retention';

COMMENT ON COLUMN async.attempts.job_id IS 'id of the job (async.jobs.id)';

COMMENT ON COLUMN async.attempts.event_id IS 'event_id of the job';

COMMENT ON COLUMN async.attempts.function IS 'registered function name';

COMMENT ON COLUMN async.attempts.attempt IS 'attempt number, from 1';

COMMENT ON COLUMN async.attempts.worker_pid IS 'process id of the worker that ran it';

COMMENT ON COLUMN async.attempts.started_at IS 'when the handler started';

COMMENT ON COLUMN async.attempts.duration IS 'run time of the handler';

COMMENT ON COLUMN async.attempts.outcome IS 'succeeded, failed, crashed (the worker died while it ran), expired or loop (not run: deeper than max_depth)';

COMMENT ON COLUMN async.attempts.error IS 'error message of a failed attempt';

COMMENT ON COLUMN async.attempts.sqlstate IS 'SQLSTATE of a failed attempt';

COMMENT ON COLUMN async.attempts.enqueued_by IS 'role that enqueued the job';

CREATE TABLE async.dead_letters (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    event_id text NOT NULL COLLATE pg_catalog."C",
    function text NOT NULL COLLATE pg_catalog."C",
    payload jsonb NOT NULL,
    attempts integer NOT NULL,
    errors jsonb NOT NULL,
    reason text DEFAULT 'exhausted'::text NOT NULL,
    last_error text,
    enqueued_at timestamp with time zone NOT NULL,
    enqueued_by regrole NOT NULL,
    dead_at timestamp with time zone DEFAULT now() NOT NULL,
    priority smallint DEFAULT 0 NOT NULL
);

COMMENT ON TABLE async.dead_letters IS 'pg_async dead-letter table: events that failed every attempt. async.redrive() puts one back in the queue.';

COMMENT ON COLUMN async.dead_letters.job_id IS 'async.jobs.id of the job';

COMMENT ON COLUMN async.dead_letters.priority IS 'priority of the job, which async.redrive() gives it again';

COMMENT ON COLUMN async.dead_letters.errors IS 'every attempt''s failure: attempt, at, message, sqlstate';

COMMENT ON COLUMN async.dead_letters.reason IS 'why the event died: exhausted (every attempt failed), expired (older than max_event_age when claimed), loop (deeper than its function''s max_depth: a chain of handlers or destinations that enqueue each other), unregistered (its function was unregistered with cancel_jobs), error (its failed attempt could not be recorded)';

COMMENT ON COLUMN async.dead_letters.dead_at IS 'time the last attempt failed';

ALTER TABLE async.dead_letters ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME async.dead_letters_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE VIEW async.function_stats AS
 SELECT s.function,
    s.received,
    s.started,
    s.succeeded,
    s.failed,
    s.retried,
    s.dead_lettered,
    s.duplicates_skipped,
    s.loops_stopped,
    s.duration_avg_ms,
    s.duration_p50_ms,
    s.duration_p95_ms,
    s.duration_max_ms,
    s.wait_avg_ms,
    s.wait_p50_ms,
    s.wait_p95_ms,
    s.wait_max_ms,
    s.stats_reset
   FROM async._function_stats() s(function, received, started, succeeded, failed, retried, dead_lettered, duplicates_skipped, loops_stopped, duration_avg_ms, duration_p50_ms, duration_p95_ms, duration_max_ms, wait_avg_ms, wait_p50_ms, wait_p95_ms, wait_max_ms, stats_reset);

COMMENT ON VIEW async.function_stats IS 'cumulative counters per function since stats_reset: received, started, succeeded, failed attempts, retried, dead-lettered, duplicates skipped (by async.invoke), loops stopped (events dead-lettered deeper than max_depth), handler duration and queue wait (from when the job became due to its start), in milliseconds; kept across clean restarts';

CREATE TABLE async.functions (
    name text NOT NULL COLLATE pg_catalog."C",
    handler regprocedure,
    run_as regrole NOT NULL,
    max_attempts integer DEFAULT 3 NOT NULL,
    retry_delays interval[] DEFAULT '{00:01:00,00:02:00}'::interval[] NOT NULL,
    timeout interval DEFAULT '00:01:00'::interval NOT NULL,
    max_event_age interval DEFAULT '06:00:00'::interval NOT NULL,
    concurrency integer,
    paused boolean DEFAULT false NOT NULL,
    on_success text COLLATE pg_catalog."C",
    on_failure text COLLATE pg_catalog."C",
    registered_by regrole NOT NULL,
    registered_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    max_depth integer,
    rate_limit integer,
    rate_period interval DEFAULT '00:00:01'::interval NOT NULL,
    concurrency_key text COLLATE pg_catalog."C",
    key_concurrency integer,
    CONSTRAINT functions_concurrency_check CHECK ((concurrency >= 0)),
    CONSTRAINT functions_concurrency_key_check CHECK (((concurrency_key <> ''::text) AND (octet_length(concurrency_key) <= 127) AND ((concurrency_key IS NULL) = (key_concurrency IS NULL)))),
    CONSTRAINT functions_key_concurrency_check CHECK (((key_concurrency >= 1) AND (key_concurrency <= 10000))),
    CONSTRAINT functions_max_depth_check CHECK (((max_depth >= 1) AND (max_depth <= 1000))),
    CONSTRAINT functions_max_attempts_check CHECK (((max_attempts >= 1) AND (max_attempts <= 100))),
    CONSTRAINT functions_max_event_age_check CHECK (((max_event_age >= '00:00:01'::interval) AND (max_event_age <= '30 days'::interval))),
    CONSTRAINT functions_name_check CHECK (((name <> ''::text) AND (octet_length(name) <= 127))),
    CONSTRAINT functions_rate_limit_check CHECK (((rate_limit >= 1) AND (rate_limit <= 10000))),
    CONSTRAINT functions_rate_period_check CHECK (((rate_period >= '00:00:00.01'::interval) AND (rate_period <= '1 day'::interval))),
    CONSTRAINT functions_retry_delays_check CHECK (((cardinality(retry_delays) <= 100) AND ((cardinality(retry_delays) = 0) OR ((array_ndims(retry_delays) = 1) AND (array_lower(retry_delays, 1) = 1))) AND (array_position(retry_delays, NULL::interval) IS NULL) AND ('00:00:00'::interval <= ALL (retry_delays)) AND ('30 days'::interval >= ALL (retry_delays)))),
    CONSTRAINT functions_timeout_check CHECK (((timeout > '00:00:00'::interval) AND (timeout <= '1 day'::interval)))
);

COMMENT ON TABLE async.functions IS 'pg_async registrations: which SQL function (handler) runs for a function name, or that consumers outside the server run its jobs, as which role, with which retry policy. Written by async.register(), async.register_external() and async.unregister().';

COMMENT ON COLUMN async.functions.name IS 'name that jobs use in async.jobs.function';

COMMENT ON COLUMN async.functions.handler IS 'the handler function, bound by OID, or NULL for an external function (async.register_external), whose jobs consumers claim: one dropped and created again, by anyone, is not it, and the jobs then fail until the function is registered again. pg_dump writes it as a signature, which a restore binds again';

COMMENT ON COLUMN async.functions.run_as IS 'role the handler runs as; for an external function, the role whose privileges claiming and enqueueing its jobs need';

COMMENT ON COLUMN async.functions.max_attempts IS 'attempts in total before the event moves to async.dead_letters';

COMMENT ON COLUMN async.functions.retry_delays IS 'wait after failure k is retry_delays[k]; the last element repeats';

COMMENT ON COLUMN async.functions.timeout IS 'an attempt running longer than this is cancelled and counts as failed';

COMMENT ON COLUMN async.functions.max_event_age IS 'an event older than this when a worker claims it is not run: it moves to async.dead_letters with reason expired';

COMMENT ON COLUMN async.functions.concurrency IS 'most jobs of the function running at once across all workers; NULL: no limit; 0: hold its jobs';

COMMENT ON COLUMN async.functions.paused IS 'true: its jobs wait, without spending attempts, until async.resume()';

COMMENT ON COLUMN async.functions.on_success IS 'registered function that gets an invocation record (condition Success) when a job succeeds';

COMMENT ON COLUMN async.functions.on_failure IS 'registered function that gets an invocation record (condition RetriesExhausted or EventAgeExceeded) when an event is dead-lettered';

COMMENT ON COLUMN async.functions.max_depth IS 'deepest chain of events (async.jobs.depth) the function runs; a deeper event is dead-lettered with reason loop. NULL: pg_async.max_depth';

COMMENT ON COLUMN async.functions.rate_limit IS 'most jobs of the function started in any window of rate_period, across all workers and consumers; NULL: no limit';

COMMENT ON COLUMN async.functions.rate_period IS 'the window of rate_limit';

COMMENT ON COLUMN async.functions.concurrency_key IS 'a key of the payload, such as tenant_id: at most key_concurrency jobs with the same value of it run at once, and claims take the values in turn; NULL: no limit by key';

COMMENT ON COLUMN async.functions.key_concurrency IS 'most jobs of the function with the same value of concurrency_key running at once, across all workers and consumers';

COMMENT ON COLUMN async.functions.priority IS 'priority of the jobs enqueued for the function without one (lower runs first)';

COMMENT ON COLUMN async.functions.registered_by IS 'role that last called async.register() for this name';

ALTER TABLE async.jobs ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME async.jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE async.running (
    job_id bigint NOT NULL,
    function text NOT NULL COLLATE pg_catalog."C",
    lease uuid,
    deadline timestamp with time zone,
    key text COLLATE pg_catalog."C"
);

COMMENT ON TABLE async.running IS 'internal: the claimed, unfinished jobs of functions with a concurrency limit, and of external functions; claims count them under one lock';

COMMENT ON COLUMN async.running.lease IS 'the lease of a job claimed with async.claim(): async.complete(), async.fail() and async.heartbeat() act only with it; NULL for a worker''s claim';

COMMENT ON COLUMN async.running.key IS 'the job''s key, for a function with a concurrency_key: claims count the running jobs of each key. A job that a worker of 0.15 claimed had its async.jobs.key cleared, and gets this one back when it ends';

COMMENT ON COLUMN async.running.deadline IS 'when the lease of an external job expires: its attempt then fails with "lease expired"';

CREATE TABLE async.rate_windows (
    function text NOT NULL COLLATE pg_catalog."C",
    starts timestamp with time zone[] NOT NULL,
    counts integer[] NOT NULL
);

COMMENT ON TABLE async.rate_windows IS 'internal: for each function with a rate limit, the starts of its last rate_period: claims read and write it under a claim lock, and a worker that gives back jobs of its batch without running them takes their starts out of it; pg_dump keeps it';

COMMENT ON COLUMN async.rate_windows.starts IS 'when each claim of the window took jobs of the function, in order';

COMMENT ON COLUMN async.rate_windows.counts IS 'how many jobs each of those claims started';

CREATE VIEW async.schedules AS
 SELECT s.name,
    s.schedule,
    s.function,
    s.payload,
    s.active,
    s.jobid,
    s.username,
    s.last_start,
    s.last_end,
    s.last_status,
    s.last_message
   FROM async._schedules() s(name, schedule, function, payload, active, jobid, username, last_start, last_end, last_status, last_message);

COMMENT ON VIEW async.schedules IS 'the periodic events made with async.schedule(): yours (every role''s for a superuser), with the last run that pg_cron recorded; empty without pg_cron';

CREATE VIEW async.sources AS
 SELECT (t.tgrelid)::regclass AS source,
    async._source_function(t.tgargs) AS function,
    ARRAY( SELECT v.e
           FROM ( VALUES (4,'INSERT'::text), (16,'UPDATE'::text), (8,'DELETE'::text)) v("bit", e)
          WHERE (((t.tgtype)::integer & v."bit") <> 0)) AS events,
    "substring"(pg_get_triggerdef(t.oid), 'WHEN \((.*)\) EXECUTE'::text) AS condition,
    t.tgname AS trigger,
    (t.tgenabled <> 'D'::"char") AS enabled
   FROM pg_trigger t
  WHERE (t.tgfoid = ('async._source_trigger()'::regprocedure)::oid);

COMMENT ON VIEW async.sources IS 'tables attached with async.attach(): source, function, events, condition, trigger';

CREATE VIEW async.stats WITH (security_barrier='true') AS
 SELECT n.name AS function,
    count(*) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at <= now()) AND (NOT h.held))) AS ready,
    count(*) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at > now()))) AS scheduled,
    count(*) FILTER (WHERE (j.state = 'running'::text)) AS running,
    count(*) FILTER (WHERE (j.state = 'succeeded'::text)) AS succeeded,
    count(*) FILTER (WHERE (j.state = 'dead'::text)) AS dead,
    (now() - min(j.run_at) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at <= now()) AND (NOT h.held)))) AS oldest_ready_age,
    count(*) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at <= now()) AND h.held)) AS held,
    min(h.held_reason) FILTER (WHERE ((j.state = 'queued'::text) AND (j.run_at <= now()) AND h.held)) AS held_reason
   FROM ((((( SELECT f_1.name
           FROM async.functions f_1
        UNION
         SELECT DISTINCT x.function
           FROM async.jobs x
          WHERE (pg_has_role((x.enqueued_by)::oid, 'USAGE'::text) OR pg_has_role('pg_monitor'::name, 'USAGE'::text))) n
     LEFT JOIN async.functions f ON ((f.name = n.name)))
     LEFT JOIN ( SELECT w.function,
            sum(y.c) AS used
           FROM async.rate_windows w
             JOIN async.functions g ON ((g.name = w.function)),
            LATERAL ROWS FROM (unnest(w.starts), unnest(w.counts)) y(s, c)
          WHERE (y.s > (now() - async._rate_window(g.rate_period)))
          GROUP BY w.function) u ON ((u.function = n.name)))
     LEFT JOIN async.jobs j ON (((j.function = n.name) AND (pg_has_role((j.enqueued_by)::oid, 'USAGE'::text) OR pg_has_role('pg_monitor'::name, 'USAGE'::text)))))
     CROSS JOIN LATERAL ( SELECT r.held_reason IS NOT NULL AS held,
            r.held_reason
           FROM ( SELECT
                        CASE
                            WHEN f.paused THEN 'paused'::text
                            WHEN (f.concurrency = 0) THEN 'concurrency 0'::text
                            WHEN (u.used >= f.rate_limit) THEN 'rate limit'::text
                            ELSE NULL::text
                        END AS held_reason) r) h)
  GROUP BY n.name;

COMMENT ON VIEW async.stats IS 'one row per function: jobs ready to run, scheduled for later (retries included), running, succeeded and dead, the age of the oldest ready job, and jobs held (due, but their function is paused, has concurrency 0, or has started as many jobs as its rate limit allows in the current window), with held_reason (paused, concurrency 0, rate limit; NULL when none is held); counts the jobs the caller may see';

CREATE VIEW async.workers AS
 SELECT w.pid,
    w.state,
    w.function,
    w.event_id,
    w.attempt,
    w.started_at,
    w.jobs_done
   FROM async._workers() w(pid, state, function, event_id, attempt, started_at, jobs_done);

COMMENT ON VIEW async.workers IS 'one row per pg_async worker process: idle or running, and what it runs now';

ALTER TABLE ONLY async.dead_letters
    ADD CONSTRAINT dead_letters_pkey PRIMARY KEY (id);

ALTER TABLE ONLY async.functions
    ADD CONSTRAINT functions_pkey PRIMARY KEY (name);

ALTER TABLE ONLY async.rate_windows
    ADD CONSTRAINT rate_windows_pkey PRIMARY KEY (function);

ALTER TABLE ONLY async.jobs
    ADD CONSTRAINT jobs_event_id_key UNIQUE (event_id);

ALTER TABLE ONLY async.jobs REPLICA IDENTITY USING INDEX jobs_event_id_key;

ALTER TABLE ONLY async.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY async.running
    ADD CONSTRAINT running_pkey PRIMARY KEY (job_id);

CREATE INDEX attempt_log_event_id_idx ON async.attempt_log USING btree (event_id);

CREATE INDEX attempt_log_started_at_idx ON async.attempt_log USING brin (started_at);

CREATE INDEX dead_letters_event_id_idx ON async.dead_letters USING btree (event_id);

CREATE INDEX dead_letters_function_idx ON async.dead_letters USING btree (function, dead_at);

CREATE INDEX jobs_finished_idx ON async.jobs USING btree (finished_at) WHERE (finished_at IS NOT NULL);

CREATE INDEX jobs_limited_idx ON async.jobs USING btree (function, priority, run_at) WHERE (limited AND (NOT paused) AND (finished_at IS NULL));

CREATE INDEX jobs_keyed_idx ON async.jobs USING btree (function, key, priority, run_at) WHERE ((key IS NOT NULL) AND (NOT paused) AND (finished_at IS NULL));

COMMENT ON INDEX async.jobs_keyed_idx IS 'the queued and running jobs of functions with a concurrency_key, by key: the claims visit the keys in turn, passing the running jobs by their state.  Its predicate does not name limited, so that no claim of a key can take jobs_limited_idx for it, nor state, so that a claim can be a HOT update';

CREATE INDEX jobs_paused_idx ON async.jobs USING btree (function) WHERE paused;

CREATE INDEX jobs_priority_idx ON async.jobs USING btree (priority, run_at) WHERE ((priority <> 0) AND (finished_at IS NULL) AND (NOT paused) AND (NOT limited));

CREATE INDEX jobs_ready_idx ON async.jobs USING btree (run_at) WHERE ((priority = 0) AND (finished_at IS NULL) AND (NOT paused) AND (NOT limited));

CREATE INDEX running_function_idx ON async.running USING btree (function, key);

CREATE TRIGGER functions_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON async.functions FOR EACH STATEMENT EXECUTE FUNCTION async._functions_changed();

CREATE TRIGGER functions_limit_changed AFTER INSERT OR DELETE OR UPDATE OF concurrency, rate_limit, concurrency_key, key_concurrency ON async.functions FOR EACH ROW EXECUTE FUNCTION async._functions_limit_changed();

CREATE TRIGGER jobs_enqueue BEFORE INSERT ON async.jobs FOR EACH ROW EXECUTE FUNCTION async._jobs_trigger();

CREATE TRIGGER jobs_release_deleted AFTER DELETE ON async.jobs FOR EACH ROW WHEN ((old.state = 'running'::text)) EXECUTE FUNCTION async._release_deleted();

CREATE TRIGGER jobs_touched BEFORE DELETE OR UPDATE ON async.jobs FOR EACH STATEMENT EXECUTE FUNCTION async._jobs_touched();

CREATE TRIGGER jobs_schedule AFTER UPDATE ON async.jobs FOR EACH ROW WHEN (((new.state = 'queued'::text) AND (NOT new.paused) AND (new.limited OR (new.key IS NOT NULL)) AND ((new.run_at > now()) OR ((new.key IS NOT NULL) AND (NOT new.limited))))) EXECUTE FUNCTION async._jobs_trigger();

CREATE TRIGGER jobs_reschedule AFTER UPDATE ON async.jobs FOR EACH ROW WHEN (((new.state = 'queued'::text) AND (NOT new.paused) AND (NOT new.limited))) EXECUTE FUNCTION async._jobs_trigger();

ALTER TABLE async.attempt_log ENABLE ROW LEVEL SECURITY;

CREATE POLICY attempt_log_own ON async.attempt_log FOR SELECT USING ((pg_has_role((enqueued_by)::oid, 'USAGE'::text) OR pg_has_role('pg_monitor'::name, 'USAGE'::text)));

COMMENT ON POLICY attempt_log_own ON async.attempt_log IS 'a role sees the attempts of its own jobs; pg_monitor sees all';

ALTER TABLE async.dead_letters ENABLE ROW LEVEL SECURITY;

CREATE POLICY dead_letters_monitor ON async.dead_letters FOR SELECT USING (pg_has_role('pg_monitor'::name, 'USAGE'::text));

COMMENT ON POLICY dead_letters_monitor ON async.dead_letters IS 'members of pg_monitor see every dead letter';

CREATE POLICY dead_letters_own ON async.dead_letters USING (pg_has_role((enqueued_by)::oid, 'USAGE'::text));

COMMENT ON POLICY dead_letters_own ON async.dead_letters IS 'a role sees and deletes its own dead letters';

ALTER TABLE async.jobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY jobs_monitor ON async.jobs FOR SELECT USING (pg_has_role('pg_monitor'::name, 'USAGE'::text));

COMMENT ON POLICY jobs_monitor ON async.jobs IS 'members of pg_monitor see every job';

CREATE POLICY jobs_own ON async.jobs USING (pg_has_role((enqueued_by)::oid, 'USAGE'::text));

COMMENT ON POLICY jobs_own ON async.jobs IS 'a role sees and changes the jobs it (or a role it inherits) enqueued';

REVOKE ALL ON FUNCTION async._bury_jobs(p_ids bigint[], p_reason text, p_message text, p_state text) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._cancel(p_event_id text, p_caller oid) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._charge_crash(p_job_id bigint) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._claim_external(p_function text, p_max integer, p_pid integer, OUT job_id bigint, OUT event_id text, OUT payload jsonb, OUT attempt integer, OUT deadline timestamp with time zone, OUT lease uuid, OUT expired text, OUT wait_us bigint, OUT reason text) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint, OUT depth integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._expire_leases() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._expired_leases(p_function text, p_limit integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._fail_external(p_job_id bigint, p_lease uuid, p_message text, p_sqlstate text, p_retry_after interval, OUT function text, OUT new_state text, OUT retry_at timestamp with time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._heartbeat_external(p_job_id bigint, p_lease uuid) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._lease_roles(p_ids bigint[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._may_enqueue(p_role regrole, p_handler regprocedure, p_run_as regrole) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._next_external_run(p_function text) FROM PUBLIC;

GRANT SELECT ON TABLE async.jobs TO PUBLIC;

GRANT INSERT(event_id) ON TABLE async.jobs TO PUBLIC;

GRANT INSERT(function) ON TABLE async.jobs TO PUBLIC;

GRANT INSERT(payload) ON TABLE async.jobs TO PUBLIC;

GRANT INSERT(priority) ON TABLE async.jobs TO PUBLIC;

GRANT INSERT(run_at) ON TABLE async.jobs TO PUBLIC;

REVOKE ALL ON FUNCTION async._dead_letter(p_job async.jobs, p_reason text) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._destination(p_job async.jobs, p_condition text, p_response jsonb) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._fail(p_job_id bigint, p_message text, p_sqlstate text, p_failed_at timestamp with time zone, p_reason text, OUT new_state text, OUT retry_at timestamp with time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION async._function_stats(OUT function text, OUT received bigint, OUT started bigint, OUT succeeded bigint, OUT failed bigint, OUT retried bigint, OUT dead_lettered bigint, OUT duplicates_skipped bigint, OUT loops_stopped bigint, OUT duration_avg_ms double precision, OUT duration_p50_ms double precision, OUT duration_p95_ms double precision, OUT duration_max_ms double precision, OUT wait_avg_ms double precision, OUT wait_p50_ms double precision, OUT wait_p95_ms double precision, OUT wait_max_ms double precision, OUT stats_reset timestamp with time zone) TO pg_monitor;

REVOKE ALL ON FUNCTION async._functions_limit_changed() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._is_limited(p_function text) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._job_key(p_function text, p_payload jsonb) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._key_value(p_payload jsonb, p_key text) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._key_cursor(p_function text) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._advance_key_cursor(p_function text, p_keys text[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._keyed_jobs(p_function text, p_key_concurrency integer, p_max integer, p_at timestamp with time zone, p_from text) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._limited_job_functions() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._live_worker_pids() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._paused_job_functions() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._purge_attempts(p_older_than interval) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._purge_dead_letters(p_function text, p_reason text, p_older_than interval, p_caller oid) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._purge_finished(p_older_than interval, p_limit integer, p_attempts_older_than interval, p_from timestamp with time zone, OUT purged integer, OUT last_finished_at timestamp with time zone) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._rate_note(p_functions text[], p_counts integer[], p_at timestamp with time zone) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._rate_room_at(p_function text, p_at timestamp with time zone) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._rate_used(p_function text, p_period interval, p_at timestamp with time zone) FROM PUBLIC;
REVOKE ALL ON FUNCTION async._recover() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._recovery_incomplete() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._redrive(p_dead_letter_id bigint) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._jobs_touched() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._ready_floor(OUT floor timestamp with time zone, OUT sweep_ms double precision) FROM PUBLIC;
GRANT ALL ON FUNCTION async._ready_floor(OUT floor timestamp with time zone, OUT sweep_ms double precision) TO pg_monitor;

REVOKE ALL ON FUNCTION async._release_deleted() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._set_paused(p_name text, p_paused boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._succeed(p_ids bigint[], p_results jsonb[], p_destinations boolean, p_finished timestamp with time zone[], p_duration_us bigint[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._try_recovery_lock() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._unpause_jobs() FROM PUBLIC;

REVOKE ALL ON FUNCTION async._unregister(p_name text, p_cancel_jobs boolean) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._upsert_registration(p_name text, p_handler regprocedure, p_run_as regrole, p_max_attempts integer, p_retry_delays interval[], p_timeout interval, p_registered_by regrole, p_max_event_age interval, p_concurrency integer, p_on_success text, p_on_failure text, p_priority smallint, p_max_depth integer, p_rate_limit integer, p_rate_period interval, p_concurrency_key text, p_key_concurrency integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._worker_started_at(pid integer) FROM PUBLIC;

REVOKE ALL ON FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION async._all_workers(OUT database name, OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) TO pg_monitor;

REVOKE ALL ON FUNCTION async._workers(OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION async._workers(OUT pid integer, OUT state text, OUT function text, OUT event_id text, OUT attempt integer, OUT started_at timestamp with time zone, OUT jobs_done bigint) TO pg_monitor;

REVOKE ALL ON FUNCTION async.health(ready_age_warning interval, xmin_age_warning interval) FROM PUBLIC;
GRANT ALL ON FUNCTION async.health(ready_age_warning interval, xmin_age_warning interval) TO pg_monitor;

REVOKE ALL ON FUNCTION async.metrics() FROM PUBLIC;
GRANT ALL ON FUNCTION async.metrics() TO pg_monitor;

REVOKE ALL ON FUNCTION async.stats_reset() FROM PUBLIC;

GRANT SELECT ON TABLE async.attempt_log TO PUBLIC;

GRANT SELECT ON TABLE async.attempts TO PUBLIC;

GRANT SELECT ON TABLE async.all_workers TO pg_monitor;

GRANT SELECT ON TABLE async.dead_letters TO PUBLIC;

GRANT SELECT ON TABLE async.function_stats TO pg_monitor;

GRANT SELECT ON TABLE async.functions TO PUBLIC;

GRANT SELECT ON TABLE async.schedules TO PUBLIC;

GRANT SELECT ON TABLE async.sources TO PUBLIC;

GRANT SELECT ON TABLE async.stats TO PUBLIC;

GRANT SELECT ON TABLE async.workers TO pg_monitor;


-- pg_dump keeps the registrations, the queue, the history of attempts, the
-- dead letters and their sequences with the extension
SELECT pg_catalog.pg_extension_config_dump('async.functions', '');
SELECT pg_catalog.pg_extension_config_dump('async.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('async.attempt_log', '');
-- the reservations: the leases of external jobs, which expire after a
-- restore as they would have, and those of workers' jobs, by which
-- async._recover() finds the keyed jobs a worker ran (0.16: its claim
-- leaves them marked limited) as jobs of a dead worker
SELECT pg_catalog.pg_extension_config_dump('async.running', '');
SELECT pg_catalog.pg_extension_config_dump('async.rate_windows', '');
SELECT pg_catalog.pg_extension_config_dump('async.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('async.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('async.dead_letters_id_seq', '');

-- warn now if no worker will run this database's jobs
SELECT async._check_setup();
