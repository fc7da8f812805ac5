-- retry: the default schedule (1 minute, then 2 minutes), dead letters, redrive
CREATE FUNCTION public.flaky(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.effects (handler, event) VALUES ('flaky', e);
	IF NOT EXISTS (SELECT FROM public.effects WHERE handler = 'flaky-fixed') THEN
		RAISE EXCEPTION 'flaky failed on %', e->>'k' USING ERRCODE = '40001';
	END IF;
END $$;
SELECT async.register('public.flaky(jsonb)');
SELECT max_attempts, retry_delays FROM async.functions WHERE name = 'flaky';

SELECT async.invoke('flaky', '{"k": "a"}', 'flaky-a');
SELECT async.wait_idle();
-- attempt 1 failed: queued again 1 minute after the failure
SELECT state, attempts, last_error,
       run_at - (errors->0->>'at')::timestamptz AS delay,
       errors->0->>'sqlstate' AS sqlstate
  FROM async.jobs WHERE event_id = 'flaky-a';
SELECT function, ready, scheduled, running, dead FROM async.stats WHERE function = 'flaky';

-- pretend the minute passed
UPDATE async.jobs SET run_at = now() WHERE event_id = 'flaky-a';
SELECT async.wait_idle();
-- attempt 2 failed: queued again 2 minutes after the failure
SELECT state, attempts, run_at - (errors->1->>'at')::timestamptz AS delay,
       jsonb_array_length(errors) AS failures
  FROM async.jobs WHERE event_id = 'flaky-a';

UPDATE async.jobs SET run_at = now() WHERE event_id = 'flaky-a';
SELECT async.wait_idle();
-- attempt 3 failed: dead, in the same transaction as the move to dead letters
SELECT state, attempts, finished_at IS NOT NULL AS finished FROM async.jobs WHERE event_id = 'flaky-a';
SELECT event_id, function, payload, attempts, reason, last_error,
       jsonb_array_length(errors) AS failures,
       (SELECT array_agg(x->>'attempt' ORDER BY x->>'attempt') FROM jsonb_array_elements(errors) x) AS attempts_seen,
       dead_at = (errors->2->>'at')::timestamptz AS dead_at_last_failure
  FROM async.dead_letters WHERE event_id = 'flaky-a';
SELECT count(*) AS handler_runs FROM public.effects WHERE handler = 'flaky';

-- the event_id stays taken while the job is dead
INSERT INTO async.jobs (function, event_id, payload) VALUES ('flaky', 'flaky-a', '{}');
SELECT async.invoke('flaky', '{}', 'flaky-a');

-- a shorter list repeats its last delay
SELECT async.register('public.flaky(jsonb)', name => 'flaky5', max_attempts => 4, retry_delays => '{0, 7 seconds}');
SELECT async.invoke('flaky5', '{"k": "b"}', 'flaky-b');
SELECT async.wait_idle();
UPDATE async.jobs SET run_at = now() WHERE event_id = 'flaky-b';
SELECT async.wait_idle();
SELECT attempts, state,
       (errors->1->>'at')::timestamptz - (errors->0->>'at')::timestamptz >= interval '0' AS ordered,
       run_at - (errors->2->>'at')::timestamptz AS third_delay
  FROM async.jobs WHERE event_id = 'flaky-b';

-- redrive: fixed handler, the dead event runs again with attempts reset
INSERT INTO public.effects (handler) VALUES ('flaky-fixed');
SELECT async.redrive('flaky-a');
SELECT async.redrive('flaky-a');
SELECT async.redrive('no-such-event');
SELECT async.wait_idle();
SELECT state, attempts, errors IS NULL AS errors_cleared FROM async.jobs WHERE event_id = 'flaky-a';
SELECT count(*) FROM async.dead_letters WHERE event_id = 'flaky-a';
DELETE FROM async.jobs WHERE event_id = 'flaky-b';
