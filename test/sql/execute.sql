-- execute: how handlers run: search_path, isolation, timeouts, cancels and
-- handlers that changed after registration
SELECT DISTINCT who, session_who, path FROM public.effects WHERE handler = 'note';

-- a failing handler's writes roll back; the other jobs of the batch succeed
CREATE FUNCTION public.half(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects (handler, event) VALUES ('half', e);
	IF (e->>'n')::int % 2 = 1 THEN
		RAISE EXCEPTION 'odd %', e->>'n' USING ERRCODE = 'P0099', HINT = 'even only';
	END IF;
END $$;
SELECT async.register('public.half(jsonb)', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'half', 'half-' || n, jsonb_build_object('n', n) FROM generate_series(1, 10) n;
SELECT async.wait_idle();
SELECT state, count(*), min(last_error) AS error FROM async.jobs WHERE function = 'half' GROUP BY state ORDER BY state;
SELECT array_agg((event->>'n')::int ORDER BY (event->>'n')::int) FROM public.effects WHERE handler = 'half';
SELECT event_id, errors->0->>'sqlstate' AS sqlstate, errors->0->>'message' AS message, reason
  FROM async.dead_letters WHERE function = 'half' ORDER BY event_id LIMIT 2;

-- nothing a handler SETs outlives it; COMMIT is refused; enqueueing from a handler works
CREATE FUNCTION public.meddle(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('search_path', 'public', false);
	PERFORM set_config('work_mem', '77MB', false);
	IF e ? 'commit' THEN
		COMMIT;
	END IF;
	IF e ? 'chain' THEN
		PERFORM async.invoke('note', jsonb_build_object('chained', e->'chain'), 'chained-' || (e->>'chain'));
	END IF;
END $$;
SELECT async.register('public.meddle(jsonb)', max_attempts => 1);
SELECT async.invoke('meddle', '{"commit": true}', 'meddle-commit');
SELECT async.invoke('meddle', '{"chain": 1}', 'meddle-chain');
SELECT async.wait_idle();
SELECT event_id, state, last_error FROM async.jobs WHERE function = 'meddle' ORDER BY event_id;
SELECT state FROM async.jobs WHERE event_id = 'chained-1';
CREATE FUNCTION public.settings(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.effects (handler, event, path)
	VALUES ('settings', e, current_setting('search_path') || ' ' || current_setting('work_mem')) $$;
SELECT async.register('public.settings(jsonb)', max_attempts => 1);
SELECT async.invoke('meddle', '{}', 'meddle-plain');
SELECT async.invoke('settings', '{}', 'settings-1');
SELECT async.wait_idle();
SELECT path FROM public.effects WHERE handler = 'settings';

-- a handler running past its timeout is cancelled
CREATE FUNCTION public.slow(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep((e->>'s')::float8) $$;
SELECT async.register('public.slow(jsonb)', max_attempts => 1, timeout => '200 milliseconds');
SELECT async.invoke('slow', '{"s": 60}', 'slow-1');
SELECT async.wait_idle();
SELECT state, last_error, errors->0->>'sqlstate' AS sqlstate FROM async.jobs WHERE event_id = 'slow-1';

-- pg_cancel_backend on a worker cancels the handler it runs: a failed attempt
SELECT async.register('public.slow(jsonb)', name => 'slow_long', max_attempts => 1, timeout => '5 minutes');
SELECT async.invoke('slow_long', '{"s": 600}', 'slow-cancel');
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM async.workers WHERE event_id = 'slow-cancel');
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT function, event_id, attempt, state FROM async.workers WHERE event_id = 'slow-cancel';
SELECT pg_cancel_backend(pid) FROM async.workers WHERE event_id = 'slow-cancel';
SELECT async.wait_idle();
SELECT state, last_error, errors->0->>'sqlstate' AS sqlstate FROM async.jobs WHERE event_id = 'slow-cancel';
-- the worker survived the cancel
SELECT count(*) FROM async.workers;

-- a handler dropped, or replaced with another signature, after jobs were queued
CREATE FUNCTION public.fleeting(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.fleeting(jsonb)', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('fleeting', 'fleeting-1', '{}', now() + interval '1 hour');
DROP FUNCTION public.fleeting(jsonb);
INSERT INTO async.jobs (function, payload) VALUES ('fleeting', '{}');
UPDATE async.jobs SET run_at = now() WHERE event_id = 'fleeting-1';
SELECT async.wait_idle();
SELECT state, last_error, errors->0->>'sqlstate' AS sqlstate FROM async.jobs WHERE event_id = 'fleeting-1';

CREATE FUNCTION public.shifty(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.shifty(jsonb)', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('shifty', 'shifty-1', '{}', now() + interval '1 hour');
DROP FUNCTION public.shifty(jsonb);
CREATE FUNCTION public.shifty(e jsonb, extra int DEFAULT 0) RETURNS void LANGUAGE sql AS $$ SELECT $$;
UPDATE async.jobs SET run_at = now() WHERE event_id = 'shifty-1';
SELECT async.wait_idle();
SELECT state, last_error FROM async.jobs WHERE event_id = 'shifty-1';

-- a registration deleted while its jobs wait (async.unregister refuses; a
-- superuser can delete the row): the attempt fails and is retried
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('settings', 'settings-orphan', '{}', now() + interval '1 hour');
SELECT async.unregister('settings');
DELETE FROM async.functions WHERE name = 'settings';
UPDATE async.jobs SET run_at = now() WHERE event_id = 'settings-orphan';
SELECT async.wait_idle();
SELECT state, attempts, last_error, run_at > now() + interval '50 seconds' AS retry_later
  FROM async.jobs WHERE event_id = 'settings-orphan';
DELETE FROM async.jobs WHERE event_id = 'settings-orphan';
