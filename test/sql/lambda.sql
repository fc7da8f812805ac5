-- lambda: per-function settings from Lambda's asynchronous invocation:
-- configure, pause and resume, concurrency, max_event_age
CREATE TABLE public.spans (function text, event text, started timestamptz, ended timestamptz);
CREATE FUNCTION public.span(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
	PERFORM pg_sleep((e->>'s')::float8);
	INSERT INTO public.spans VALUES (e->>'f', e->>'id', t0, clock_timestamp());
END $$;

-- configure changes some settings and keeps the others
SELECT async.register('public.span(jsonb)', name => 'span_one', max_attempts => 4, concurrency => 1);
SELECT async.configure('span_one', timeout => '10 seconds');
SELECT name, max_attempts, timeout, max_event_age, concurrency, paused FROM async.functions WHERE name = 'span_one';
SELECT async.configure('span_one', concurrency => -1);
SELECT concurrency FROM async.functions WHERE name = 'span_one';
SELECT async.configure('span_one', concurrency => 1);
SELECT async.configure('no_such_function', timeout => '1 second');
SELECT async.configure('span_one', concurrency => -5);
SELECT async.register('public.span(jsonb)', name => 'bad', concurrency => -1);
SELECT async.register('public.span(jsonb)', name => 'bad', max_event_age => '0.5 seconds');

-- concurrency 1: six jobs, never two at once, none charged for waiting
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'span_one', 'one-' || i, jsonb_build_object('f', 'span_one', 'id', 'one-' || i, 's', 0.1)
  FROM generate_series(1, 6) i;
SELECT async.wait_idle();
SELECT count(*) AS ran, max(attempts) AS max_attempts FROM async.jobs WHERE function = 'span_one' AND state = 'succeeded';
SELECT count(*) AS overlaps
  FROM public.spans a JOIN public.spans b ON a.event < b.event AND a.function = b.function
 WHERE a.function = 'span_one' AND a.started < b.ended AND b.started < a.ended;
SELECT count(*) FROM async.running;

-- concurrency 0 holds the jobs; other functions' jobs run meanwhile
SELECT async.register('public.span(jsonb)', name => 'span_held', concurrency => 0);
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('span_held', 'held-1', '{"f": "span_held", "id": "held-1", "s": 0}');
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('note', 'not-held-1', '{"n": 100}');
SELECT async.wait_idle();
SELECT event_id, state, attempts FROM async.jobs WHERE event_id IN ('held-1', 'not-held-1') ORDER BY 1;
-- held, not ready: it waits on purpose
SELECT ready, held, oldest_ready_age IS NULL AS none_ready FROM async.stats WHERE function = 'span_held';
SELECT async.configure('span_held', concurrency => -1);
SELECT async.wait_idle();
SELECT state, attempts FROM async.jobs WHERE event_id = 'held-1';

-- pause and resume; a paused function's queued jobs are marked paused (out
-- of the claim's index), those queued before the pause and those enqueued
-- during it
SELECT async.pause('span_held');
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('span_held', 'held-2', '{"f": "span_held", "id": "held-2", "s": 0}');
-- what the INSERT says about paused does not count
INSERT INTO async.jobs (function, event_id, payload, paused)
VALUES ('note', 'not-held-2', '{"n": 101}', true);
SELECT async.wait_idle();
SELECT ready, held FROM async.stats WHERE function = 'span_held';
SELECT paused FROM async.functions WHERE name = 'span_held';
SELECT event_id, state, attempts, paused FROM async.jobs
 WHERE event_id IN ('held-2', 'not-held-2') ORDER BY 1;
SELECT async.resume('span_held');
SELECT async.wait_idle();
SELECT state, attempts, paused FROM async.jobs WHERE event_id = 'held-2';
-- a paused function whose registration is deleted with a job queued (by a
-- superuser: async.unregister refuses): the job is no longer held, and
-- wait_idle waits for its attempt (which fails: not registered)
SELECT async.register('public.span(jsonb)', name => 'span_gone');
SELECT async.pause('span_gone');
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('span_gone', 'gone-1', '{"f": "span_gone", "id": "gone-1", "s": 0}');
DELETE FROM async.functions WHERE name = 'span_gone';
SELECT async.wait_idle();
SELECT state, attempts, paused, last_error FROM async.jobs WHERE event_id = 'gone-1';
DELETE FROM async.jobs WHERE event_id = 'gone-1';
BEGIN;
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('span_held', 'held-3', '{"f": "span_held", "id": "held-3", "s": 0}', now() + interval '1 hour');
SELECT async.pause('span_held');
SELECT paused FROM async.jobs WHERE event_id = 'held-3';
SELECT async.resume('span_held');
SELECT paused FROM async.jobs WHERE event_id = 'held-3';
ROLLBACK;
-- a job marked paused whose function is not (an enqueue that raced a
-- resume) is released by async._unpause_jobs(), which the workers call
BEGIN;
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('span_held', 'held-4', '{"f": "span_held", "id": "held-4", "s": 0}', now() + interval '1 hour');
UPDATE async.jobs SET paused = true WHERE event_id = 'held-4';
SELECT async._unpause_jobs() AS released;
SELECT paused FROM async.jobs WHERE event_id = 'held-4';
ROLLBACK;
SELECT async.pause('no_such_function');
SET ROLE regress_bob;
SELECT async.pause('span_held');
RESET ROLE;

-- a limited function's queued jobs are marked limited: they wait in an index
-- of their own (jobs_limited_idx), out of the one every claim walks
SELECT async.register('public.span(jsonb)', name => 'span_lim', concurrency => 0);
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'span_lim', 'lim-' || i, jsonb_build_object('f', 'span_lim', 'id', 'lim-' || i, 's', 0)
  FROM generate_series(1, 3) i;
-- what the INSERT says about limited does not count
INSERT INTO async.jobs (function, event_id, payload, limited)
VALUES ('note', 'not-lim-1', '{"n": 102}', true);
SELECT async.wait_idle();
SELECT event_id, state, attempts, limited FROM async.jobs
 WHERE event_id IN ('lim-1', 'lim-2', 'lim-3', 'not-lim-1') ORDER BY 1;
-- lifting the limit releases them, and they run
SELECT async.configure('span_lim', concurrency => -1);
SELECT count(*) AS still_limited FROM async.jobs WHERE function = 'span_lim' AND limited;
SELECT async.wait_idle();
SELECT state, count(*), bool_or(limited) AS limited FROM async.jobs
 WHERE function = 'span_lim' GROUP BY state;
-- a limit given to a function marks its queued jobs, paused ones too;
-- resuming keeps the mark
SELECT async.pause('span_lim');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'span_lim', 'lim-' || i, jsonb_build_object('f', 'span_lim', 'id', 'lim-' || i, 's', 0)
  FROM generate_series(4, 5) i;
SELECT async.configure('span_lim', concurrency => 0);
SELECT event_id, paused, limited FROM async.jobs WHERE event_id IN ('lim-4', 'lim-5') ORDER BY 1;
SELECT async.resume('span_lim');
SELECT event_id, paused, limited FROM async.jobs WHERE event_id IN ('lim-4', 'lim-5') ORDER BY 1;
-- deleting the registration releases them: the workers take them, and they
-- fail as not registered
DELETE FROM async.functions WHERE name = 'span_lim';
SELECT async.wait_idle();
SELECT event_id, state, attempts, limited, last_error FROM async.jobs
 WHERE event_id IN ('lim-4', 'lim-5') ORDER BY 1;
DELETE FROM async.jobs WHERE event_id IN ('lim-4', 'lim-5');
-- a failed job of a limited function goes back to the queue marked again
SELECT async.register('public.obs_fail(jsonb)', name => 'lim_fail', concurrency => 1,
                      max_attempts => 2, retry_delays => '{1 hour}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('lim_fail', 'lim-fail-1', '{}');
SELECT async.wait_idle();
SELECT state, attempts, limited, run_at > now() + interval '50 minutes' AS retry_later
  FROM async.jobs WHERE event_id = 'lim-fail-1';
DELETE FROM async.functions WHERE name = 'lim_fail';
SELECT limited FROM async.jobs WHERE event_id = 'lim-fail-1';
DELETE FROM async.jobs WHERE event_id = 'lim-fail-1';
-- a dead-lettered event of a limited function redriven after retention
-- deleted its job is enqueued marked, as the INSERT trigger would have
SELECT async.register('public.obs_fail(jsonb)', name => 'lim_dead', concurrency => 1,
                      max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload) VALUES ('lim_dead', 'lim-dead-1', '{}');
SELECT async.wait_idle();
SELECT state FROM async.jobs WHERE event_id = 'lim-dead-1';
DELETE FROM async.jobs WHERE event_id = 'lim-dead-1';
SELECT async.configure('lim_dead', concurrency => 0, max_attempts => 2);
SELECT async.redrive('lim-dead-1');
SELECT state, attempts, paused, limited FROM async.jobs WHERE event_id = 'lim-dead-1';
-- a job left running and still marked limited (claimed by a 0.2 library
-- after the update) is found by async._recover() through its reservation;
-- the advisory lock is _recover's own, so that no worker's recovery runs
-- meanwhile
BEGIN;
SELECT pg_advisory_xact_lock(7370716173796563);
UPDATE async.jobs SET state = 'running', attempts = 1, worker_pid = 999999, started_at = now()
 WHERE event_id = 'lim-dead-1';
INSERT INTO async.running (job_id, function)
SELECT id, function FROM async.jobs WHERE event_id = 'lim-dead-1';
SELECT async._recover() AS recovered;
SELECT state, attempts, limited, last_error FROM async.jobs WHERE event_id = 'lim-dead-1';
SELECT count(*) AS reserved FROM async.running;
ROLLBACK;
SELECT async.unregister('lim_dead', cancel_jobs => true);
DELETE FROM async.jobs WHERE event_id = 'lim-dead-1';
DELETE FROM async.dead_letters WHERE event_id = 'lim-dead-1';
-- the oldest_ready_job health check counts the jobs that wait for a
-- concurrency limit, not those held with concurrency 0
CREATE TABLE public.lim_gate (open bool);
CREATE FUNCTION public.lim_gated(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	WHILE NOT EXISTS (SELECT FROM public.lim_gate) LOOP
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT async.register('public.lim_gated(jsonb)', name => 'lim_gated', concurrency => 0);
INSERT INTO async.jobs (function, event_id, payload, run_at)
SELECT 'lim_gated', 'lim-gated-' || i, '{}', now() - interval '1 hour' FROM generate_series(1, 3) i;
SELECT status FROM async.health(ready_age_warning => '30 minutes') WHERE "check" = 'oldest_ready_job';
SELECT async.configure('lim_gated', concurrency => 1);
DO $$
DECLARE deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	WHILE NOT EXISTS (SELECT FROM async.jobs WHERE function = 'lim_gated' AND state = 'running') LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'no lim_gated job started';
		END IF;
		PERFORM pg_sleep(0.01);
	END LOOP;
END $$;
SELECT status, hint FROM async.health(ready_age_warning => '30 minutes') WHERE "check" = 'oldest_ready_job';
INSERT INTO public.lim_gate VALUES (true);
SELECT async.wait_idle();
SELECT state, count(*) FROM async.jobs WHERE function = 'lim_gated' GROUP BY state;
SELECT async.unregister('lim_gated');
-- a job marked limited whose function has no limit (an enqueue that raced
-- the lifting of the limit) is released by async._unpause_jobs() too
BEGIN;
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('note', 'not-lim-2', '{"n": 103}', now() + interval '1 hour');
UPDATE async.jobs SET limited = true WHERE event_id = 'not-lim-2';
SELECT async._unpause_jobs() AS released;
SELECT limited FROM async.jobs WHERE event_id = 'not-lim-2';
ROLLBACK;

-- max_event_age: an event older than that when claimed is not run
SELECT async.configure('span_held', max_event_age => '1 hour');
INSERT INTO async.jobs (function, event_id, payload, enqueued_at, run_at)
VALUES ('span_held', 'old-1', '{"f": "span_held", "id": "old-1", "s": 0}',
        now() - interval '2 hours', now() - interval '2 hours');
-- the age counts from when an event became due: one scheduled far ahead is young when it is due
INSERT INTO async.jobs (function, event_id, payload, enqueued_at, run_at)
VALUES ('span_held', 'old-but-scheduled', '{"f": "span_held", "id": "old-but-scheduled", "s": 0}',
        now() - interval '2 hours', now());
SELECT async.wait_idle();
SELECT state, attempts, last_error FROM async.jobs WHERE event_id = 'old-1';
SELECT state FROM async.jobs WHERE event_id = 'old-but-scheduled';
SELECT reason, attempts, last_error FROM async.dead_letters WHERE event_id = 'old-1';
SELECT count(*) FROM public.spans WHERE event = 'old-1';
SELECT outcome FROM async.attempts WHERE event_id = 'old-1';

SELECT async.unregister('span_one');
SELECT async.unregister('span_held');

-- bulk operations
SELECT async.register('public.obs_fail(jsonb)', name => 'bulk_fail', max_attempts => 1);
SELECT cardinality(async.invoke_many('bulk_fail', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[]));
SELECT async.invoke_many('bulk_fail', '{}');
SELECT async.invoke_many('no_such_function', ARRAY['{}']::jsonb[]);
SELECT async.wait_idle();
SELECT count(*) FROM async.dead_letters WHERE function = 'bulk_fail';
SELECT async.redrive_many(function => 'bulk_fail', reason => 'exhausted', dead_after => now() - interval '1 hour');
SELECT async.redrive_many(function => 'bulk_fail', reason => 'expired');
SELECT async.wait_idle();
SELECT count(*) FROM async.dead_letters WHERE function = 'bulk_fail';
SELECT async.purge_dead_letters(function => 'bulk_fail', older_than => '1 hour');
SELECT async.purge_dead_letters(function => 'bulk_fail');
SELECT count(*) FROM async.dead_letters WHERE function = 'bulk_fail';
SELECT async.unregister('bulk_fail');

-- event sources: row changes enqueue events in the changing transaction
CREATE TABLE public.orders (id int PRIMARY KEY, cents int, status text);
CREATE TABLE public.seen (event jsonb);
CREATE FUNCTION public.on_order(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.seen VALUES (e - 'time') $$;
SELECT async.register('public.on_order(jsonb)');
SELECT async.attach('public.orders', 'on_order', '{INSERT,UPDATE}', 'NEW.cents > 0');
SELECT async.attach('public.orders', 'on_order_missing');
SELECT async.attach('public.orders', 'on_order', '{TRUNCATE}');
SELECT source, function, events, condition FROM async.sources;
INSERT INTO public.orders VALUES (1, 990, 'new'), (2, 0, 'free');
BEGIN;
INSERT INTO public.orders VALUES (3, 500, 'rolled back');
ROLLBACK;
UPDATE public.orders SET status = 'paid' WHERE id = 1;
DELETE FROM public.orders WHERE id = 1;
SELECT async.wait_idle();
SELECT event->>'operation' AS op, event->>'table' AS tbl, event->'old'->>'status' AS old_status,
       event->'new'->>'status' AS new_status
  FROM public.seen ORDER BY event->>'operation' DESC;
SET ROLE regress_bob;
SELECT async.attach('public.orders', 'on_order');
RESET ROLE;
SELECT async.detach('public.orders', 'on_order');
SELECT async.detach('public.orders', 'on_order');
SELECT count(*) FROM async.sources;
-- a dropped source table takes its attachment with it
SELECT async.attach('public.orders', 'on_order');
DROP TABLE public.orders;
SELECT count(*) FROM async.sources;
SELECT async.unregister('on_order');

-- a handler may take async.context, like Lambda's context; its return value is kept
CREATE FUNCTION public.ctx_handler(e jsonb, ctx async.context) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('event_id', ctx.event_id, 'function', ctx.function,
                                'attempt', ctx.attempt, 'max_attempts', ctx.max_attempts,
                                'enqueued_ok', ctx.enqueued_at <= now(),
                                'deadline_ok', ctx.deadline > now() AND ctx.deadline <= now() + interval '31 seconds',
                                'doubled', (e->>'n')::int * 2) $$;
SELECT async.register('public.ctx_handler(jsonb, async.context)', name => 'ctx', max_attempts => 2, timeout => '30 seconds');
CREATE FUNCTION public.answer(e jsonb) RETURNS int LANGUAGE sql AS 'SELECT 42';
SELECT async.register('public.answer(jsonb)');
CREATE FUNCTION public.wrong_ctx(e jsonb, ctx text) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.wrong_ctx(jsonb, text)');
SELECT async.invoke('ctx', '{"n": 21}', 'ctx-1');
SELECT async.invoke('answer', '{}', 'answer-1');
SELECT async.wait_idle();
SELECT state, result FROM async.jobs WHERE event_id IN ('ctx-1', 'answer-1') ORDER BY event_id;

-- destinations: an invocation record per finished job, in the same transaction
CREATE TABLE public.records (record jsonb);
CREATE FUNCTION public.record(e jsonb) RETURNS void LANGUAGE sql AS $$ INSERT INTO public.records VALUES (e) $$;
SELECT async.register('public.record(jsonb)');
SELECT async.configure('ctx', on_success => 'record', on_failure => 'record');
SELECT async.configure('ctx', on_failure => 'no_such_destination');
SELECT async.configure('ctx', on_success => 'ctx');
-- a destination needs EXECUTE on its handler: no routing events into another role's function
SET ROLE regress_bob;
CREATE FUNCTION regress_bob.src(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
RESET ROLE;
REVOKE EXECUTE ON FUNCTION public.record(jsonb) FROM PUBLIC;
SET ROLE regress_bob;
SELECT async.register('regress_bob.src(jsonb)', name => 'bob_src', on_success => 'record');
RESET ROLE;
GRANT EXECUTE ON FUNCTION public.record(jsonb) TO PUBLIC;
SELECT on_success, on_failure FROM async.functions WHERE name = 'ctx';
SELECT async.invoke('ctx', '{"n": 5}', 'ctx-2');
SELECT async.invoke('ctx', '{"n": "not a number"}', 'ctx-3');
SELECT async.wait_idle();
UPDATE async.jobs SET run_at = now() WHERE event_id = 'ctx-3';
SELECT async.wait_idle();
SELECT record->'requestContext'->>'requestId' AS request, record->'requestContext'->>'condition' AS condition,
       record->'requestContext'->>'approximateInvokeCount' AS invokes, record->'requestPayload' AS payload,
       record->'responseContext'->>'statusCode' AS status,
       record->'responsePayload'->>'doubled' AS doubled, record->'responsePayload'->>'errorType' AS error_type
  FROM public.records ORDER BY 1;
-- an expired event goes to on_failure as EventAgeExceeded
INSERT INTO async.jobs (function, event_id, payload, enqueued_at, run_at)
VALUES ('ctx', 'ctx-old', '{"n": 1}', now() - interval '7 hours', now() - interval '7 hours');
SELECT async.wait_idle();
SELECT record->'requestContext'->>'condition' FROM public.records
 WHERE record->'requestContext'->>'requestId' = 'ctx-old';
-- a destination that fails is retried and dead-lettered on its own
SELECT async.register('public.obs_fail(jsonb)', name => 'bad_destination', max_attempts => 1);
SELECT async.configure('answer', on_success => 'bad_destination');
SELECT async.invoke('answer', '{}', 'answer-2');
SELECT async.wait_idle();
SELECT state FROM async.jobs WHERE event_id = 'answer-2';
SELECT function, reason, payload->'requestContext'->>'requestId' AS request FROM async.dead_letters
 WHERE function = 'bad_destination';
SELECT async.unregister('answer');
SELECT async.unregister('bad_destination');
SELECT async.unregister('ctx');
SELECT async.unregister('record');
