-- test/demo.sql: a tour of pg_async, run by test/demo.sh against a
-- throwaway cluster (pg_async.database = 'postgres', pg_async.workers = 2).
-- psql echoes each statement before its result.

CREATE EXTENSION pg_async;

-- Wait, with a deadline, until the launcher has started both workers.
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	WHILE (SELECT count(*) FROM async.workers) < 2 LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'the pg_async workers did not start within 30 seconds';
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

SELECT backend_type, count(*)
  FROM pg_stat_activity WHERE backend_type LIKE 'pg_async%'
 GROUP BY backend_type ORDER BY backend_type;

------------------------------------------------------------------------
-- 1. An event that succeeds
------------------------------------------------------------------------
-- A handler is a function taking one jsonb.  It runs with
-- search_path = pg_catalog, pg_temp: schema-qualify what it uses.
CREATE TABLE public.emails_sent (user_id int, email text);

CREATE FUNCTION public.send_welcome(event jsonb) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO public.emails_sent (user_id, email)
	VALUES ((event->>'user_id')::int, event->>'email')
$$;

SELECT async.register('public.send_welcome(jsonb)');

-- Enqueue with a plain INSERT.  The job runs once the transaction commits.
INSERT INTO async.jobs (function, payload)
VALUES ('send_welcome', '{"user_id": 1, "email": "ada@example.com"}');

SELECT async.wait_idle('30 seconds');

SELECT user_id, email FROM public.emails_sent;
SELECT function, state, attempts, last_error FROM async.jobs WHERE function = 'send_welcome';

------------------------------------------------------------------------
-- 2. A duplicate event_id is skipped
------------------------------------------------------------------------
-- The same event sent twice (a client retrying after a timeout, say):
-- the second INSERT inserts nothing ("INSERT 0 0").
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('send_welcome', 'signup-2', '{"user_id": 2, "email": "grace@example.com"}')
ON CONFLICT (event_id) DO NOTHING;
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('send_welcome', 'signup-2', '{"user_id": 2, "email": "grace@example.com"}')
ON CONFLICT (event_id) DO NOTHING;

-- async.invoke does the same and returns the event_id either way.
SELECT async.invoke('send_welcome', '{"user_id": 2, "email": "grace@example.com"}', 'signup-2');

SELECT async.wait_idle('30 seconds');

-- One job, and the handler ran once.
SELECT count(*) AS jobs FROM async.jobs WHERE event_id = 'signup-2';
SELECT user_id, email, count(*) AS emails FROM public.emails_sent
 GROUP BY user_id, email ORDER BY user_id;

------------------------------------------------------------------------
-- 3. An event retried, then dead-lettered
------------------------------------------------------------------------
CREATE TABLE public.charges (order_id int, amount numeric);

-- This handler writes a row and then fails: each failed attempt's writes
-- roll back with it.
CREATE FUNCTION public.charge_card(event jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.charges (order_id, amount)
	VALUES ((event->>'order_id')::int, (event->>'amount')::numeric);
	RAISE EXCEPTION 'card declined for order %', event->>'order_id';
END $$;

-- Three attempts in all, two seconds apart (the default is 3 attempts,
-- 1 minute then 2 minutes apart).
SELECT async.register('public.charge_card(jsonb)', max_attempts => 3,
                      retry_delays => '{2 seconds}');

SELECT async.invoke('charge_card', '{"order_id": 7, "amount": 42.00}', 'order-7');

-- wait_idle returns once nothing is ready or running: here, after the first
-- attempt failed and the second is scheduled two seconds later.
SELECT async.wait_idle('30 seconds');
SELECT state, attempts, last_error, run_at > now() AS retry_scheduled
  FROM async.jobs WHERE event_id = 'order-7';

-- Wait, with a deadline, for the other two attempts.
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	WHILE (SELECT state FROM async.jobs WHERE event_id = 'order-7') IS DISTINCT FROM 'dead' LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'order-7 was not dead-lettered within 60 seconds';
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
END $$;

SELECT state, attempts, last_error FROM async.jobs WHERE event_id = 'order-7';

-- Every failed attempt is recorded, with its SQLSTATE.
SELECT e->>'attempt' AS attempt, e->>'sqlstate' AS sqlstate, e->>'message' AS message
  FROM async.jobs j, jsonb_array_elements(j.errors) e
 WHERE j.event_id = 'order-7'
 ORDER BY (e->>'attempt')::int;
SELECT (errors->1->>'at')::timestamptz - (errors->0->>'at')::timestamptz >= interval '2 seconds'
   AND (errors->2->>'at')::timestamptz - (errors->1->>'at')::timestamptz >= interval '2 seconds'
       AS waited_between_attempts
  FROM async.jobs WHERE event_id = 'order-7';

-- The event is now in the dead-letter table ...
SELECT event_id, function, payload, attempts, reason, last_error FROM async.dead_letters;
-- ... and none of the failed attempts left a charge behind.
SELECT count(*) AS charges FROM public.charges;

------------------------------------------------------------------------
-- 4. Monitoring
------------------------------------------------------------------------
-- async.workers shows what each worker runs right now.
CREATE FUNCTION public.build_report(event jsonb) RETURNS void
LANGUAGE sql AS $$ SELECT pg_catalog.pg_sleep((event->>'seconds')::float8) $$;
SELECT async.register('public.build_report(jsonb)');
SELECT async.invoke('build_report', '{"seconds": 2}', 'report-1');

DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
	WHILE NOT EXISTS (SELECT FROM async.workers WHERE event_id = 'report-1') LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'report-1 did not start within 30 seconds';
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

SELECT state, function, event_id, attempt FROM async.workers ORDER BY state DESC;
SELECT function, ready, scheduled, running, succeeded, dead FROM async.stats ORDER BY function;

SELECT async.wait_idle('30 seconds');

-- Once idle: the counts per function, and both workers idle.
SELECT function, ready, scheduled, running, succeeded, dead FROM async.stats ORDER BY function;
SELECT state, function, event_id, attempt FROM async.workers;

------------------------------------------------------------------------
-- 5. Redrive a dead letter once the cause is fixed
------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.charge_card(event jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.charges (order_id, amount)
	VALUES ((event->>'order_id')::int, (event->>'amount')::numeric);
END $$;

SELECT async.redrive('order-7');
SELECT async.wait_idle('30 seconds');

SELECT state, attempts FROM async.jobs WHERE event_id = 'order-7';
SELECT order_id, amount FROM public.charges;
SELECT count(*) AS dead_letters FROM async.dead_letters;
