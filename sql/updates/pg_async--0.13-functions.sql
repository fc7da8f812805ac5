/*
 * pg_async--0.13-functions.sql: functions as pg_async 0.13 defined them.
 *
 * The updates up to 0.13 take these definitions ("-- @function@0.13" lines,
 * see sql/assemble.sh) where 0.14 changed a function in a way the schema of
 * their own version cannot hold: 0.14 gives async._claim_external() and
 * async._complete_external() another column, which CREATE OR REPLACE
 * FUNCTION cannot add.  The update to 0.14 drops them and writes the new
 * definitions.  This file is not an install script.
 */

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
	v_key text;
	v_keys text[] := '{}';
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
	 * Under a concurrency_key, the keys are visited in turn instead
	 * (_keyed_jobs).
	 */
	FOR job_id, event_id, payload, attempt, deadline, lease, expired, wait_us, v_key IN
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
		  FROM picked p
		 WHERE j.id OPERATOR(pg_catalog.=) p.id
		RETURNING j.id, j.event_id, j.payload, j.attempts, j.run_at, j.priority, j.key,
			   v_now OPERATOR(pg_catalog.-) GREATEST(j.enqueued_at, CASE WHEN j.errors IS NULL THEN j.run_at
				   ELSE (j.errors OPERATOR(pg_catalog.->) 0 OPERATOR(pg_catalog.->>) 'at')::pg_catalog.timestamptz END)
				 OPERATOR(pg_catalog.>) v_f.max_event_age AS too_old,
			   pg_catalog.gen_random_uuid() AS lease),
	leased AS (
		INSERT INTO async.running (job_id, function, lease, deadline, key)
		SELECT c.id, p_function, c.lease, v_deadline, c.key
		  FROM claimed c WHERE NOT c.too_old)
	SELECT c.id, c.event_id, c.payload, c.attempts,
		   CASE WHEN NOT c.too_old THEN v_deadline END,
		   CASE WHEN NOT c.too_old THEN c.lease END,
		   CASE WHEN c.too_old THEN
				pg_catalog.format('event is older than max_event_age (%s)', v_f.max_event_age) END,
		   (EXTRACT(epoch FROM v_now OPERATOR(pg_catalog.-) c.run_at)
			OPERATOR(pg_catalog.*) 1000000)::bigint,
		   c.key
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

CREATE FUNCTION async._complete_external(p_ids bigint[], p_leases uuid[], p_results jsonb[], OUT function text, OUT duration_us bigint) RETURNS SETOF record
    LANGUAGE plpgsql
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
	 * is granted.
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
			   (EXTRACT(epoch FROM j.duration) OPERATOR(pg_catalog.*) 1000000)::bigint
		  FROM async.jobs j
		 WHERE j.id OPERATOR(pg_catalog.=) ANY (v_ids);
END;
$$;
