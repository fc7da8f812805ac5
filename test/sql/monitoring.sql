-- monitoring: async.stats, async.workers and async.wait_idle
SELECT async.register('public.note(jsonb)', name => 'mon');
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('mon', 'mon-later', '{}', now() + interval '1 hour');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('mon', 'mon-now', '{}');
SELECT async.wait_idle();
SELECT function, ready, scheduled, running, succeeded, dead, oldest_ready_age
  FROM async.stats WHERE function = 'mon';
SELECT function, ready, scheduled, running, succeeded, dead FROM async.stats ORDER BY function;

-- a running job: seen in both views; wait_idle times out until it is done
SELECT async.invoke('slow_long', '{"s": 2}', 'mon-slow');
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM async.workers WHERE event_id = 'mon-slow');
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT state, function, event_id, attempt, started_at <= now() AS started FROM async.workers
 WHERE event_id = 'mon-slow';
-- async.all_workers: the same workers, with their database (the only one served)
SELECT database = current_database() AS this_database, state, function, event_id
  FROM async.all_workers WHERE event_id = 'mon-slow';
SELECT (SELECT count(*) FROM async.all_workers) = (SELECT count(*) FROM async.workers) AS same_workers,
       (SELECT count(*) FROM async.all_workers WHERE database = current_database()) AS here;
SELECT running FROM async.stats WHERE function = 'slow_long';
SELECT async.wait_idle('100 milliseconds');
SELECT async.wait_idle();
SELECT state FROM async.jobs WHERE event_id = 'mon-slow';

-- the longest name (127 bytes) and event id (255 bytes) show whole
SELECT length(async.register('public.slow(jsonb)', name => repeat('n', 127), max_attempts => 1)) AS name_bytes;
SELECT length(async.invoke(repeat('n', 127), '{"s": 1}', repeat('e', 255))) AS event_id_bytes;
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM async.workers WHERE event_id = repeat('e', 255));
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT function = repeat('n', 127) AS whole_name, event_id = repeat('e', 255) AS whole_event_id
  FROM async.workers WHERE event_id LIKE 'eee%';
SELECT async.wait_idle();
SELECT async.unregister(repeat('n', 127));

-- idle workers, each with the jobs it has done
SELECT count(*) AS workers, bool_and(state = 'idle') AS idle, bool_and(function IS NULL) AS no_function,
       sum(jobs_done) > 10 AS worked
  FROM async.workers;
DELETE FROM async.jobs WHERE function = 'mon';
SELECT async.unregister('mon');
