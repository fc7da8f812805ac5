/* pg_async--0.3--0.4.sql: update of pg_async from 0.3 to 0.4 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async UPDATE TO '0.4'" to load this file. \quit

/*
 * 0.4 tells held jobs from ready ones, and fixes async.wait_idle.
 *
 * Held jobs are queued, due jobs that wait on purpose: of a paused function,
 * or of one with concurrency 0.  async.stats counted them as ready, so a
 * paused backlog looked like workers falling behind; they now have a
 * column of their own, and a metric.  async.wait_idle waited for them, so
 * it returned false at its timeout whenever a function was paused; it now
 * waits only for jobs that can run.
 *
 * async.wait_idle could also return true while a job was due.  It read the
 * clock, and then its query took a snapshot.  A job made due in between,
 * by a commit the snapshot saw, could have a run_at later than that clock
 * reading: a retry queued with a delay of 0 is due at the moment its
 * handler failed, which can fall after the reading when the waiting
 * session is preempted between the two.  Such a job looked scheduled for
 * later.  Now each look compares run_at with the clock read by the query
 * itself (an InitPlan, run after the query's snapshot was taken), which is
 * still a parameter of the index scan.
 *
 * wait_idle and _unpause_jobs both visit the functions that have marked
 * jobs: the loose scans that find them are now functions of their own.
 */

/*
 * held: whether a queued job waits on purpose.  A job of a paused function
 * may not be marked yet (its enqueue raced async.pause), and a marked one
 * may belong to a function resumed since (released within seconds): the
 * function decides, as it does for the claim.
 */
CREATE OR REPLACE VIEW async.stats AS
	SELECT n.name AS function,
		   pg_catalog.count(*) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'queued'
								AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()
								AND NOT h.held) AS ready,
		   pg_catalog.count(*) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'queued'
								AND j.run_at OPERATOR(pg_catalog.>) pg_catalog.now()) AS scheduled,
		   pg_catalog.count(*) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'running') AS running,
		   pg_catalog.count(*) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'succeeded') AS succeeded,
		   pg_catalog.count(*) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'dead') AS dead,
		   pg_catalog.now() OPERATOR(pg_catalog.-)
			   pg_catalog.min(j.run_at) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'queued'
								AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()
								AND NOT h.held) AS oldest_ready_age,
		   pg_catalog.count(*) FILTER (WHERE j.state OPERATOR(pg_catalog.=) 'queued'
								AND j.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()
								AND h.held) AS held
	  FROM (SELECT f.name FROM async.functions f
			UNION
			SELECT DISTINCT x.function FROM async.jobs x
			 WHERE pg_catalog.pg_has_role(x.enqueued_by, 'USAGE')
				OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')) n
	  LEFT JOIN async.functions f ON f.name OPERATOR(pg_catalog.=) n.name
	  LEFT JOIN async.jobs j
		ON j.function OPERATOR(pg_catalog.=) n.name
	   AND (pg_catalog.pg_has_role(j.enqueued_by, 'USAGE')
			OR pg_catalog.pg_has_role('pg_monitor', 'USAGE'))
	 CROSS JOIN LATERAL (SELECT COALESCE(f.paused OR f.concurrency OPERATOR(pg_catalog.=) 0,
										 false) AS held) h
	 GROUP BY n.name;

COMMENT ON VIEW async.stats IS
'one row per function: jobs ready to run, scheduled for later (retries included), running, succeeded and dead, the age of the oldest ready job, and jobs held (due, but their function is paused or has concurrency 0); counts the jobs the caller may see';

/*
 * The functions that have jobs marked paused, and those that have unfinished
 * jobs marked limited: loose scans of jobs_paused_idx and jobs_limited_idx,
 * one index descent per name, however many jobs each holds.
 */
-- @function async._paused_job_functions(
REVOKE ALL ON FUNCTION async._paused_job_functions() FROM PUBLIC;
COMMENT ON FUNCTION async._paused_job_functions() IS
'internal: the functions that have jobs marked paused (a loose scan of jobs_paused_idx)';

-- @function async._limited_job_functions(
REVOKE ALL ON FUNCTION async._limited_job_functions() FROM PUBLIC;
COMMENT ON FUNCTION async._limited_job_functions() IS
'internal: the functions that have unfinished jobs marked limited and not paused (a loose scan of jobs_limited_idx)';

/* the same releases as in 0.3, on the shared scans */
CREATE OR REPLACE FUNCTION async._unpause_jobs()
RETURNS integer
LANGUAGE sql
AS $$
	WITH unpaused AS (
		UPDATE async.jobs j SET paused = false
		 WHERE j.paused AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT h.name FROM async._paused_job_functions() h(name)
				WHERE NOT EXISTS (SELECT FROM async.functions f
								   WHERE f.name OPERATOR(pg_catalog.=) h.name AND f.paused)))
		RETURNING 1),
	unlimited AS (
		UPDATE async.jobs j SET limited = false
		 WHERE j.limited AND NOT j.paused AND j.finished_at IS NULL
		   AND j.function OPERATOR(pg_catalog.=) ANY (ARRAY(
			   SELECT h.name FROM async._limited_job_functions() h(name)
				WHERE NOT async._is_limited(h.name)))
		RETURNING 1)
	SELECT ((SELECT pg_catalog.count(*) FROM unpaused) OPERATOR(pg_catalog.+)
			(SELECT pg_catalog.count(*) FROM unlimited))::integer;
$$;

/*
 * wait_idle waits for the jobs that can run: neither those of a paused
 * function nor those of one with concurrency 0 (a running job counts,
 * whatever its function became).  Each look is one query, which reads the
 * clock after its snapshot (an InitPlan, still a parameter of the index
 * scans) and stops at the first job it finds:
 * - in jobs_ready_idx, running jobs and the due jobs of functions not held;
 * - per function with marked jobs and not held, its first due job in
 *   jobs_limited_idx or jobs_paused_idx: a function that lost its limit,
 *   its pause or its registration may still have marked jobs, which run
 *   once a worker releases them.
 */
-- @function@0.9 async.wait_idle(
COMMENT ON FUNCTION async.wait_idle(interval) IS
'waits until no job that can run is ready or running (jobs of paused functions and of functions with concurrency 0 do not count); false when timeout passes first. Meant for tests and scripts; call it outside an explicit REPEATABLE READ transaction.';

/* the held jobs get a sample of their own in pg_async_jobs */
CREATE OR REPLACE FUNCTION async.metrics()
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
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
			('duplicates_skipped', 'Events skipped by async.invoke() for a taken event_id.')) m(name, help) LOOP
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
$$;
