-- priorities: each job has one, lower runs first; an INSERT that names
-- none takes its function's; the workers' claims, the lanes of limited
-- functions and the claims of consumers all go by priority, then run_at;
-- pg_async.min_priority bounds what a role may ask for.
CREATE TABLE public.prio_runs (n serial, tag text, priority smallint);
CREATE FUNCTION public.prio_log(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.prio_runs (tag, priority) VALUES (e->>'tag', (e->>'p')::smallint)
$$;
CREATE ROLE regress_prio_app;
GRANT EXECUTE ON FUNCTION public.prio_log(jsonb) TO regress_prio_app;

-- a function's priority: given at registration, kept by configure
SELECT async.register('public.prio_log(jsonb)', priority => 5);
SELECT name, priority FROM async.functions WHERE name = 'prio_log';
SELECT async.configure('prio_log', max_attempts => 2);
SELECT name, max_attempts, priority FROM async.functions WHERE name = 'prio_log';
SELECT async.configure('prio_log', priority => 0);
SELECT priority FROM async.functions WHERE name = 'prio_log';

-- bad input changes nothing
SELECT async.register('public.prio_log(jsonb)', priority => 40000);
SELECT async.register('public.prio_log(jsonb)', priority => NULL);
SELECT async.configure('prio_log', priority => -40000);
SELECT priority FROM async.functions WHERE name = 'prio_log';
SELECT async.invoke('prio_log', '{}', priority => 32768);
SELECT async.invoke_many('prio_log', ARRAY['{}'::jsonb], priority => -32769);
INSERT INTO async.jobs (function, payload, priority) VALUES ('prio_log', '{}', 40000);
SELECT count(*) FROM async.jobs WHERE function = 'prio_log';

-- where each job's priority comes from, while the function is paused
SELECT async.configure('prio_log', priority => 3);
SELECT async.pause('prio_log');
INSERT INTO async.jobs (function, payload, event_id) VALUES ('prio_log', '{"tag": "default", "p": 3}', 'p-default');
INSERT INTO async.jobs (function, payload, event_id, priority) VALUES ('prio_log', '{"tag": "insert", "p": -1}', 'p-insert', -1);
SELECT async.invoke('prio_log', '{"tag": "invoke", "p": -7}', 'p-invoke', priority => -7);
SELECT async.invoke('prio_log', '{"tag": "invoke-default", "p": 3}', 'p-invoke-default');
SELECT async.invoke_many('prio_log', ARRAY['{"tag": "many", "p": 1}'::jsonb], priority => 1) IS NOT NULL AS enqueued;
SELECT payload->>'tag' AS tag, priority FROM async.jobs WHERE function = 'prio_log' ORDER BY priority, id;

-- they run by priority, then run_at: a backlog of priority 0 enqueued
-- first, and jobs of other priorities behind it
INSERT INTO async.jobs (function, payload, priority)
SELECT 'prio_log', jsonb_build_object('tag', 'backlog', 'p', 0), 0 FROM generate_series(1, 200);
INSERT INTO async.jobs (function, payload, priority)
SELECT 'prio_log', jsonb_build_object('tag', 'mixed', 'p', p), p
  FROM (SELECT (ARRAY[4, -3, 2, -3, 9])[1 + i % 5] AS p FROM generate_series(1, 50) i) x;
SELECT async.resume('prio_log');
SELECT async.wait_idle();
-- (two workers may run parts of the queue side by side: the strict order
-- of one worker, and the jump of an urgent job, are in 027_priorities.pl)
SELECT count(*) AS ran FROM public.prio_runs;
SELECT priority, count(*) FROM public.prio_runs GROUP BY priority ORDER BY priority;
TRUNCATE public.prio_runs;

-- a function with a concurrency limit of 1: its jobs run one by one, and
-- its lane goes by priority
SELECT async.configure('prio_log', concurrency => 1);
SELECT async.pause('prio_log');
INSERT INTO async.jobs (function, payload, priority)
SELECT 'prio_log', jsonb_build_object('tag', 'lane', 'p', p), p
  FROM (SELECT (ARRAY[0, 6, -2, 0, 1])[1 + i % 5] AS p FROM generate_series(1, 40) i) x;
SELECT async.resume('prio_log');
SELECT async.wait_idle();
SELECT count(*) AS ran, count(DISTINCT priority) AS priorities FROM public.prio_runs;
SELECT count(*) AS out_of_order FROM public.prio_runs a JOIN public.prio_runs b
    ON a.n < b.n AND a.priority > b.priority;
SELECT async.configure('prio_log', concurrency => -1);

-- the dead letters keep a job's priority, and a redrive gives it back
CREATE FUNCTION public.prio_fail(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'no';
END;
$$;
SELECT async.register('public.prio_fail(jsonb)', max_attempts => 1);
SELECT async.invoke('prio_fail', '{}', 'p-dead', priority => -4);
SELECT async.wait_idle();
SELECT event_id, priority FROM async.dead_letters WHERE event_id = 'p-dead';
SELECT async.pause('prio_fail');
SELECT async.redrive('p-dead');
SELECT state, priority FROM async.jobs WHERE event_id = 'p-dead';
SELECT async.unregister('prio_fail', cancel_jobs => true);

-- consumers claim an external function's jobs by priority, then run_at
SELECT async.register_external('prio_ext');
INSERT INTO async.jobs (function, payload, priority)
SELECT 'prio_ext', jsonb_build_object('i', i), (ARRAY[0, 2, -5, 0])[1 + i % 4]
  FROM generate_series(1, 12) i;
CREATE TEMP TABLE prio_claimed AS SELECT * FROM async.claim('prio_ext', 5);
SELECT (c.payload->>'i')::int AS i, j.priority FROM prio_claimed c
  JOIN async.jobs j ON j.id = c.job_id ORDER BY c.job_id;
SELECT count(*) AS claimed_out_of_order FROM async.jobs a JOIN async.jobs b
    ON a.function = 'prio_ext' AND b.function = 'prio_ext'
   AND a.state = 'running' AND b.state = 'queued' AND a.priority > b.priority;
SELECT bool_and(async.complete(job_id, lease)) AS completed FROM prio_claimed;
SELECT async.unregister('prio_ext', cancel_jobs => true);

-- pg_async.min_priority: only a superuser sets it (per role, with ALTER
-- ROLE ... SET), and a role may not ask for a priority below it
SET ROLE regress_prio_app;
SET pg_async.min_priority = -100;
RESET ROLE;
SET pg_async.min_priority = 0;
SET ROLE regress_prio_app;
SELECT async.invoke('prio_log', '{}', priority => -1);
INSERT INTO async.jobs (function, payload, priority) VALUES ('prio_log', '{}', -1);
SELECT async.invoke_many('prio_log', ARRAY['{}'::jsonb], priority => -1);
SELECT async.invoke('prio_log', '{"tag": "allowed", "p": 0}', 'p-allowed', priority => 0) AS allowed;
RESET ROLE;
SELECT async.register('public.prio_log(jsonb)', priority => -1);
RESET pg_async.min_priority;
SELECT async.wait_idle();
SELECT count(*) FROM async.jobs WHERE function = 'prio_log' AND enqueued_by = 'regress_prio_app'::regrole;

SELECT async.unregister('prio_log', cancel_jobs => true);
DROP FUNCTION public.prio_log(jsonb);
DROP FUNCTION public.prio_fail(jsonb);
DROP TABLE public.prio_runs;
DROP ROLE regress_prio_app;
