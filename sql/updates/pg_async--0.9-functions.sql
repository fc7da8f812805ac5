/*
 * pg_async--0.9-functions.sql: functions as pg_async 0.9 defined them.
 *
 * The updates up to 0.9 take these definitions ("-- @function@0.9" lines,
 * see sql/assemble.sh) where 0.10 changed a function in a way the schema of
 * their own version cannot hold: 0.10's versions call async._dead_letter,
 * which 0.10 adds.  The update to 0.10 writes the new definitions.  This
 * file is not an install script.
 */

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
		 last_error, enqueued_at, enqueued_by, dead_at, priority)
	SELECT d.id, d.event_id, d.function, d.payload, d.attempts,
		   COALESCE(d.errors, '[]'::jsonb), p_reason, d.last_error,
		   d.enqueued_at, d.enqueued_by, d.finished_at, d.priority
	  FROM dead d;
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
			INSERT INTO async.dead_letters
				(job_id, event_id, function, payload, attempts, errors, reason,
				 last_error, enqueued_at, enqueued_by, dead_at, priority)
			VALUES (v_job.id, v_job.event_id, v_job.function, v_job.payload,
					v_job.attempts, COALESCE(v_job.errors, '[]'::jsonb), p_reason, p_message,
					v_job.enqueued_at, v_job.enqueued_by, p_failed_at, v_job.priority);
			/* a loop stopped goes to no destination, which would carry it on */
			IF p_reason OPERATOR(pg_catalog.=) 'expired' THEN
				PERFORM async._destination(v_job, 'EventAgeExceeded',
					pg_catalog.jsonb_build_object('errorMessage', p_message));
			END IF;
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
			 last_error, enqueued_at, enqueued_by, dead_at, priority)
		VALUES (v_job.id, v_job.event_id, v_job.function, v_job.payload,
				v_job.attempts, v_job.errors, 'exhausted', v_job.last_error,
				v_job.enqueued_at, v_job.enqueued_by, p_failed_at, v_job.priority);
		PERFORM async._destination(v_job, 'RetriesExhausted',
			pg_catalog.jsonb_build_object('errorMessage', p_message, 'errorType', p_sqlstate));
	END IF;
END;
$$;
