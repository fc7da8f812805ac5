-- loops: a handler that enqueues for itself, or a chain through handlers
-- and destinations that comes back, is stopped past max_depth (default
-- pg_async.max_depth, 16), as Lambda stops recursive loops: the event is
-- dead-lettered with reason loop instead of running.
CREATE TABLE public.loop_runs (function text, depth integer);
CREATE FUNCTION public.loop_self(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.loop_runs VALUES ('loop_self', (SELECT depth FROM async.jobs WHERE event_id = e->>'id'));
	INSERT INTO async.jobs (function, payload, event_id)
	VALUES ('loop_self', jsonb_build_object('id', e->>'id' || '+'), e->>'id' || '+');
END;
$$;
SELECT async.register('public.loop_self(jsonb)');

-- a direct loop: depths 0 to 16 run, the event of depth 17 is stopped
SELECT async.invoke('loop_self', '{"id": "s"}', 's');
SELECT async.wait_idle();
SELECT count(*) AS runs, min(depth), max(depth) FROM public.loop_runs WHERE function = 'loop_self';
SELECT function, reason, attempts, last_error FROM async.dead_letters WHERE function = 'loop_self';
SELECT state, depth, attempts FROM async.jobs WHERE event_id = 's' || repeat('+', 17);
SELECT outcome, error FROM async.attempts WHERE function = 'loop_self' AND outcome <> 'succeeded';
SELECT loops_stopped, dead_lettered, failed FROM async.function_stats WHERE function = 'loop_self';

-- a redrive starts the chain again from depth 0
SELECT async.pause('loop_self');
SELECT async.redrive('s' || repeat('+', 17));
SELECT state, depth FROM async.jobs WHERE event_id = 's' || repeat('+', 17);
SELECT async.unregister('loop_self', cancel_jobs => true);

-- A -> B -> A through handlers; B allows only 5
CREATE FUNCTION public.loop_a(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.loop_runs VALUES ('loop_a', NULL);
	INSERT INTO async.jobs (function, payload) VALUES ('loop_b', e);
$$;
CREATE FUNCTION public.loop_b(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.loop_runs VALUES ('loop_b', NULL);
	INSERT INTO async.jobs (function, payload) VALUES ('loop_a', e);
$$;
SELECT async.register('public.loop_a(jsonb)');
SELECT async.register('public.loop_b(jsonb)', max_depth => 5);
SELECT name, max_depth FROM async.functions WHERE name LIKE 'loop\_%' ORDER BY name;
SELECT async.invoke('loop_a', '{}', 'ab');
SELECT async.wait_idle();
-- a at 0, 2, 4; b at 1, 3, 5; the b of depth 7 is stopped (b's max_depth
-- is 5: the a of depth 6 runs, its b does not)
SELECT function, count(*) FROM public.loop_runs WHERE function IN ('loop_a', 'loop_b') GROUP BY function ORDER BY function;
SELECT function, reason FROM async.dead_letters WHERE function IN ('loop_a', 'loop_b');

-- through a destination: c succeeds, its record goes to d, whose handler
-- enqueues c again; each step is one deeper
CREATE FUNCTION public.loop_c(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.loop_runs VALUES ('loop_c', NULL);
$$;
CREATE FUNCTION public.loop_d(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.loop_runs VALUES ('loop_d', NULL);
	INSERT INTO async.jobs (function, payload) VALUES ('loop_c', '{}');
$$;
SELECT async.register('public.loop_d(jsonb)');
SELECT async.register('public.loop_c(jsonb)', on_success => 'loop_d');
SELECT async.invoke('loop_c', '{}', 'cd');
SELECT async.wait_idle();
SELECT function, count(*) FROM public.loop_runs WHERE function IN ('loop_c', 'loop_d') GROUP BY function ORDER BY function;
SELECT function, reason FROM async.dead_letters WHERE function IN ('loop_c', 'loop_d');

-- a deeper chain that is meant: max_depth raised for the function
CREATE FUNCTION public.loop_count(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.loop_runs VALUES ('loop_count', (e->>'n')::integer);
	INSERT INTO async.jobs (function, payload)
	SELECT 'loop_count', jsonb_build_object('n', (e->>'n')::integer + 1) WHERE (e->>'n')::integer < 24;
$$;
SELECT async.register('public.loop_count(jsonb)', max_depth => 30);
SELECT async.invoke('loop_count', '{"n": 0}', 'count');
SELECT async.wait_idle();
SELECT count(*) AS runs, max(depth) FROM public.loop_runs WHERE function = 'loop_count';
SELECT count(*) AS stopped FROM async.dead_letters WHERE function = 'loop_count';
-- configure keeps it, or goes back to pg_async.max_depth with -1
SELECT async.configure('loop_count', max_attempts => 2);
SELECT max_depth FROM async.functions WHERE name = 'loop_count';
SELECT async.configure('loop_count', max_depth => -1);
SELECT max_depth FROM async.functions WHERE name = 'loop_count';

-- bad input changes nothing; no role may set a job's depth
SELECT async.register('public.loop_count(jsonb)', max_depth => 0);
SELECT async.register('public.loop_count(jsonb)', max_depth => 1001);
SELECT async.configure('loop_count', max_depth => -2);
SELECT max_depth FROM async.functions WHERE name = 'loop_count';
CREATE ROLE regress_loop_app;
GRANT EXECUTE ON FUNCTION public.loop_count(jsonb) TO regress_loop_app;
SET ROLE regress_loop_app;
INSERT INTO async.jobs (function, payload, depth) VALUES ('loop_count', '{"n": 99}', 500);
RESET ROLE;

-- through an external function: what a transaction enqueues is one deeper
-- than the deepest job it completes, whether it enqueues before or after
-- the completion; a claim stops an event past max_depth as the workers do
SELECT async.register_external('loop_ext', max_depth => 3);
SELECT async.invoke('loop_ext', '{}', 'x0');
SELECT job_id AS jid, lease AS jl FROM async.claim('loop_ext') \gset
BEGIN;
INSERT INTO async.jobs (function, payload, event_id) VALUES ('loop_ext', '{}', 'x1');
SELECT async.complete(:jid, :'jl');
COMMIT;
SELECT job_id AS jid, lease AS jl FROM async.claim('loop_ext') \gset
BEGIN;
SELECT async.complete(:jid, :'jl');
SELECT async.invoke('loop_ext', '{}', 'x2');
COMMIT;
-- the next transaction starts again from 0
SELECT async.invoke('loop_ext', '{}', 'fresh');
SELECT event_id, depth FROM async.jobs WHERE function = 'loop_ext' ORDER BY id;
-- a lease that is no longer the job's completes nothing, and deepens nothing
BEGIN;
SELECT async.invoke('loop_ext', '{}', 'stale');
SELECT async.complete(:jid, :'jl');
COMMIT;
SELECT depth FROM async.jobs WHERE event_id = 'stale';
-- complete_many: one deeper than the deepest of the jobs it completes
SELECT array_agg(job_id ORDER BY event_id) AS jids, array_agg(lease ORDER BY event_id) AS jls
  FROM async.claim('loop_ext', 3) \gset
BEGIN;
INSERT INTO async.jobs (function, payload, event_id)
SELECT 'loop_ext', '{}', 'x3.' || g FROM generate_series(1, 3) g;
SELECT async.complete_many(:'jids', :'jls');
COMMIT;
SELECT event_id, depth FROM async.jobs WHERE event_id LIKE 'x3.%' ORDER BY event_id;
-- x3.* are 3 deep, within max_depth: claimed; what they lead to is 4 deep,
-- past it: the claim dead-letters it unrun
SELECT array_agg(job_id) AS jids, array_agg(lease) AS jls FROM async.claim('loop_ext', 10) \gset
BEGIN;
SELECT async.invoke('loop_ext', '{}', 'x4');
SELECT async.complete_many(:'jids', :'jls');
COMMIT;
SELECT count(*) AS claimed FROM async.claim('loop_ext', 10);
SELECT event_id, reason, last_error FROM async.dead_letters WHERE function = 'loop_ext';
SELECT outcome, error FROM async.attempts WHERE function = 'loop_ext' AND outcome <> 'succeeded';
SELECT loops_stopped, dead_lettered, succeeded FROM async.function_stats WHERE function = 'loop_ext';

-- a completion rolled back to a savepoint takes back the depth it gave
SELECT async.register_external('loop_sp');
SELECT async.invoke('loop_sp', '{}', 'sp0');
SELECT job_id AS jid, lease AS jl FROM async.claim('loop_sp') \gset
BEGIN;
SAVEPOINT s;
SELECT async.complete(:jid, :'jl');
SELECT async.invoke('loop_sp', '{}', 'sp-undone');
ROLLBACK TO SAVEPOINT s;
SELECT async.invoke('loop_sp', '{}', 'sp1');
COMMIT;
SELECT async.complete(:jid, :'jl');
SELECT event_id, depth, state FROM async.jobs WHERE function = 'loop_sp' ORDER BY id;

-- in a worker's batch, what a handler completes as a consumer deepens what
-- that handler enqueues, not what the next handlers of the batch enqueue
SELECT async.register_external('loop_deep');
SELECT async.register_external('loop_sink');
INSERT INTO async.jobs (function, payload, event_id, depth) VALUES ('loop_deep', '{}', 'deep', 10);
CREATE FUNCTION public.loop_batch(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	c record;
BEGIN
	IF e->>'step' = 'consume' THEN
		SELECT * INTO c FROM async.claim('loop_deep');
		PERFORM async.complete(c.job_id, c.lease);
	END IF;
	INSERT INTO async.jobs (function, payload, event_id)
	VALUES ('loop_sink', '{}', 'from-' || (e->>'step'));
END;
$$;
SELECT async.register('public.loop_batch(jsonb)');
SELECT async.pause('loop_batch');
BEGIN;
SELECT async.invoke('loop_batch', '{"step": "consume"}', 'b-consume');
SELECT async.invoke('loop_batch', '{"step": "after"}', 'b-after');
COMMIT;
SELECT async.resume('loop_batch');
-- not wait_idle(): loop_sink's jobs wait for a consumer
DO $$
BEGIN
	FOR i IN 1 .. 3000 LOOP
		EXIT WHEN (SELECT count(*) FROM async.jobs
				   WHERE function = 'loop_batch' AND state = 'succeeded') = 2;
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT event_id, state, depth FROM async.jobs
 WHERE function IN ('loop_deep', 'loop_sink', 'loop_batch') ORDER BY event_id;

SELECT async.unregister(name, cancel_jobs => true) FROM async.functions WHERE name LIKE 'loop\_%' ORDER BY name;
DROP FUNCTION public.loop_self(jsonb), public.loop_a(jsonb), public.loop_b(jsonb),
	public.loop_c(jsonb), public.loop_d(jsonb), public.loop_count(jsonb),
	public.loop_batch(jsonb);
DROP ROLE regress_loop_app;
DROP TABLE public.loop_runs;
