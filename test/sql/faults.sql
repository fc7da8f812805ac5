-- faults: handlers that change or misbehave after registration, bad input
-- to every SQL entry point, and attempts to escalate privileges (issue 4).
-- What needs a restart or server settings is in test/t/006_faults.pl.
CREATE SCHEMA faults;
GRANT USAGE ON SCHEMA faults TO PUBLIC;
CREATE TABLE faults.effects (
	tag text,
	event jsonb,
	who text,
	session_who text,
	at timestamptz DEFAULT clock_timestamp()
);
GRANT ALL ON faults.effects TO PUBLIC;
CREATE TABLE faults.uniq (k int PRIMARY KEY);
-- the workers now: every fault below must leave them alive
CREATE TABLE faults.pids AS SELECT pid FROM async.workers;
SELECT count(*) AS workers FROM faults.pids;

CREATE FUNCTION faults.note(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event, who, session_who)
      VALUES ('note', e, current_user, session_user) $$;
SELECT async.register('faults.note(jsonb)', name => 'fault_note', max_attempts => 1);

-- ---------------------------------------------------------------------------
-- A. The handler changes after registration (dropped, and replaced with
-- another signature, are in execute.sql).  A registration is bound to its
-- function's OID: one dropped and created again is another function, whose
-- jobs fail until it is registered again, which checks what it is.
-- ---------------------------------------------------------------------------
CREATE FUNCTION faults.morph(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event) VALUES ('morph', e) $$;
SELECT async.register('faults.morph(jsonb)', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload, run_at)
SELECT 'morph', 'morph-' || k, jsonb_build_object('k', k), now() + interval '1 hour'
  FROM unnest('{proc,setof,agg,int,plpgsql}'::text[]) k;

-- a procedure of the same signature
DROP FUNCTION faults.morph(jsonb);
CREATE PROCEDURE faults.morph(e jsonb) LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event) VALUES ('morph-proc', e) $$;
SELECT async.register('faults.morph(jsonb)', max_attempts => 1);
-- enqueueing checks that the registered handler still exists
INSERT INTO async.jobs (function, event_id, payload) VALUES ('morph', 'morph-proc-new', '{}');
UPDATE async.jobs SET run_at = now() WHERE event_id = 'morph-proc';
SELECT async.wait_idle();

-- a set-returning function
DROP PROCEDURE faults.morph(jsonb);
CREATE FUNCTION faults.morph(e jsonb) RETURNS SETOF int LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event) VALUES ('morph-setof', e) RETURNING 1 $$;
SELECT async.register('faults.morph(jsonb)', max_attempts => 1);
UPDATE async.jobs SET run_at = now() WHERE event_id = 'morph-setof';
SELECT async.wait_idle();

-- an aggregate
DROP FUNCTION faults.morph(jsonb);
CREATE AGGREGATE faults.morph(jsonb) (sfunc = pg_catalog.jsonb_concat, stype = jsonb);
SELECT async.register('faults.morph(jsonb)', max_attempts => 1);
UPDATE async.jobs SET run_at = now() WHERE event_id = 'morph-agg';
SELECT async.wait_idle();

-- a function returning another type: it runs, and its value is kept as the
-- job's result, a JSON string
DROP AGGREGATE faults.morph(jsonb);
CREATE FUNCTION faults.morph(e jsonb) RETURNS int LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event) VALUES ('morph-int', e) RETURNING 42 $$;
SELECT async.register('faults.morph(jsonb)', max_attempts => 1);
UPDATE async.jobs SET run_at = now() WHERE event_id = 'morph-int';
SELECT async.wait_idle();

-- dropped and created again, in another language: it keeps working
DROP FUNCTION faults.morph(jsonb);
CREATE FUNCTION faults.morph(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN INSERT INTO faults.effects (tag, event) VALUES ('morph-plpgsql', e); END $$;
SELECT async.register('faults.morph(jsonb)', max_attempts => 1);
UPDATE async.jobs SET run_at = now() WHERE event_id = 'morph-plpgsql';
SELECT async.wait_idle();

SELECT event_id, state, last_error, errors->0->>'sqlstate' AS sqlstate, result
  FROM async.jobs WHERE function = 'morph' ORDER BY event_id;
SELECT tag, event FROM faults.effects WHERE tag LIKE 'morph%' ORDER BY tag;

-- the role a handler runs as loses EXECUTE, then is dropped
CREATE ROLE regress_fault_runner;
CREATE FUNCTION faults.whoami(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event, who, session_who)
      VALUES (e->>'tag', e, current_user, session_user) $$;
SELECT async.register('faults.whoami(jsonb)', name => 'fault_runner', max_attempts => 1,
                      run_as => 'regress_fault_runner');
SELECT async.invoke('fault_runner', '{"tag": "runner"}', 'runner-1');
SELECT async.wait_idle();
SELECT who, session_who FROM faults.effects WHERE tag = 'runner';
REVOKE EXECUTE ON FUNCTION faults.whoami(jsonb) FROM PUBLIC;
SELECT async.invoke('fault_runner', '{"tag": "runner-revoked"}', 'runner-2');
SELECT async.wait_idle();
SELECT state, last_error, errors->0->>'sqlstate' AS sqlstate FROM async.jobs WHERE event_id = 'runner-2';
GRANT EXECUTE ON FUNCTION faults.whoami(jsonb) TO PUBLIC;
-- nothing stops DROP ROLE: the registration keeps the role's OID, attempts fail
DROP ROLE regress_fault_runner;
SELECT async.invoke('fault_runner', '{"tag": "runner-dropped"}', 'runner-3');
SELECT async.wait_idle();
SELECT state, regexp_replace(last_error, 'OID \d+', 'OID n') AS last_error,
       errors->0->>'sqlstate' AS sqlstate
  FROM async.jobs WHERE event_id = 'runner-3';
SELECT count(*) AS runner_effects FROM faults.effects WHERE tag LIKE 'runner-%';
SELECT async.unregister('fault_runner');

-- ---------------------------------------------------------------------------
-- B. Handlers that misbehave (COMMIT, enqueueing, a plain timeout, a cancel
-- and one custom SQLSTATE are in execute.sql)
-- ---------------------------------------------------------------------------

-- recursion without end through async.invoke: stopped by the stack depth
-- limit; the jobs enqueued on the way down roll back with the attempt
CREATE FUNCTION faults.deep(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO faults.effects (tag, event) VALUES ('deep', e);
	PERFORM async.invoke('deep', '{"child": true}');
	PERFORM faults.deep(e);
END $$;
SELECT async.register('faults.deep(jsonb)', max_attempts => 1);
SELECT async.invoke('deep', '{}', 'deep-1');
SELECT async.wait_idle();
SELECT state, last_error, errors->0->>'sqlstate' AS sqlstate FROM async.jobs WHERE event_id = 'deep-1';
SELECT count(*) AS jobs FROM async.jobs WHERE function = 'deep';
SELECT count(*) AS effects FROM faults.effects WHERE tag = 'deep';

-- a chain without end: every run enqueues the next event.  Only its
-- max_depth (here the largest, 1000; see loops.sql) bounds it; it runs one
-- job after another until the function is paused.  Then it can be
-- unregistered, its waiting event moved to the dead letters.
CREATE FUNCTION faults.forever(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO faults.effects (tag, event) VALUES ('forever', e);
	PERFORM async.invoke('forever', jsonb_build_object('n', (e->>'n')::int + 1),
	                     'forever-' || ((e->>'n')::int + 1));
END $$;
SELECT async.register('faults.forever(jsonb)', max_depth => 1000);
SELECT async.invoke('forever', '{"n": 1}', 'forever-1');
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM async.jobs WHERE event_id = 'forever-50' AND state = 'succeeded');
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
-- while a job of it runs, or waits, it cannot be unregistered (which of
-- the two the refusal finds depends on the moment)
DO $$
BEGIN
	PERFORM async.unregister('forever');
	RAISE EXCEPTION 'function "forever" was unregistered while its chain went on';
EXCEPTION WHEN object_in_use THEN
	RAISE NOTICE 'refused: %', CASE WHEN SQLERRM ~ 'has 1 (running|unfinished) jobs$'
									THEN 'a job of it runs or waits' ELSE SQLERRM END;
END $$;
SELECT async.pause('forever');
SELECT async.wait_idle();
SELECT async.unregister('forever');
SELECT async.unregister('forever', cancel_jobs => true);
SELECT count(*) >= 50 AS ran_on FROM async.jobs WHERE function = 'forever' AND state = 'succeeded';
SELECT state, attempts, last_error
  FROM async.jobs WHERE function = 'forever' AND state <> 'succeeded';
SELECT reason, last_error FROM async.dead_letters WHERE function = 'forever';
DELETE FROM async.dead_letters WHERE function = 'forever';
-- no event ran twice
SELECT count(*) AS duplicates
  FROM (SELECT event FROM faults.effects WHERE tag = 'forever' GROUP BY event HAVING count(*) > 1) d;
DELETE FROM async.jobs WHERE function = 'forever';

-- assorted errors and SQLSTATEs: each is one failed attempt with its
-- SQLSTATE; the handler's writes roll back; the worker carries on
CREATE FUNCTION faults.raise(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO faults.effects (tag, event) VALUES ('raise', e);
	CASE e->>'how'
	WHEN 'division' THEN PERFORM 1 / 0;
	WHEN 'unique' THEN INSERT INTO faults.uniq VALUES (1), (1);
	WHEN 'not_null' THEN INSERT INTO faults.uniq VALUES (NULL);
	WHEN 'cast' THEN PERFORM 'x'::int;
	WHEN 'assert' THEN ASSERT false, 'assertion in a handler';
	WHEN 'long' THEN RAISE EXCEPTION '%', repeat('m', 100000);
	WHEN 'bad_sqlstate' THEN RAISE EXCEPTION 'bad' USING ERRCODE = 'no_such_condition';
	WHEN 'caught' THEN
		BEGIN
			PERFORM 1 / 0;
		EXCEPTION WHEN division_by_zero THEN
			NULL;
		END;
	WHEN 'warning' THEN RAISE WARNING 'only a warning';
	ELSE RAISE EXCEPTION 'raised %', e->>'how' USING ERRCODE = e->>'how';
	END CASE;
END $$;
SELECT async.register('faults.raise(jsonb)', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'raise', 'raise-' || how, jsonb_build_object('how', how)
  FROM unnest('{division,unique,not_null,cast,assert,long,bad_sqlstate,caught,warning,
                P0001,22023,40001,40P01,53100,53200,54001,55P03,57014,57P01,57P02,57P03,
                58030,XX000,XX001,XX002,AB123}'::text[]) how;
SELECT async.wait_idle();
SELECT payload->>'how' AS how, state, errors->0->>'sqlstate' AS sqlstate,
       left(last_error, 50) AS error, length(last_error) AS length
  FROM async.jobs WHERE function = 'raise' ORDER BY 1;
SELECT event->>'how' AS how, count(*) FROM faults.effects WHERE tag = 'raise' GROUP BY 1 ORDER BY 1;
SELECT count(*) AS dead_letters FROM async.dead_letters WHERE function = 'raise';

-- handlers that never return: sleeping forever, spinning, waiting for a
-- lock, and allocating without limit (a string of up to 500 MB, cancelled
-- long before that).  The timeout cancels each.
CREATE FUNCTION faults.stall(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO faults.effects (tag, event) VALUES ('stall', e);
	CASE e->>'how'
	WHEN 'sleep' THEN PERFORM pg_sleep('infinity');
	WHEN 'spin' THEN LOOP END LOOP;
	WHEN 'lock' THEN PERFORM pg_advisory_xact_lock(4242);
	WHEN 'memory' THEN
		PERFORM length(string_agg('0123456789', ''))
		   FROM (SELECT generate_series(1, 50000000)) s;
	END CASE;
END $$;
SELECT async.register('faults.stall(jsonb)', max_attempts => 1, timeout => '300 milliseconds');
SELECT pg_advisory_lock(4242);
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'stall', 'stall-' || how, jsonb_build_object('how', how)
  FROM unnest('{sleep,spin,lock,memory}'::text[]) how;
SELECT async.wait_idle();
SELECT pg_advisory_unlock(4242);
SELECT event_id, state, last_error, errors->0->>'sqlstate' AS sqlstate
  FROM async.jobs WHERE function = 'stall' ORDER BY event_id;
SELECT count(*) AS effects FROM faults.effects WHERE tag = 'stall';

-- ---------------------------------------------------------------------------
-- C. Invalid arguments to every entry point (the refusals of register.sql
-- and enqueue.sql are not repeated)
-- ---------------------------------------------------------------------------

-- async.register
SELECT async.register('faults.note(jsonb)', retry_delays => NULL);
SELECT async.register('faults.note(jsonb)', timeout => NULL);
SELECT async.register('faults.note(jsonb)', max_attempts => -1);
SELECT async.register('faults.note(jsonb)', run_as => '-');
SELECT async.register('faults.note(jsonb)', retry_delays => '{{1 second},{2 seconds}}');
SELECT async.register('faults.note(jsonb)', retry_delays => '{-1 s}');
-- a delay with a negative part is refused even when its total is positive
SELECT async.register('faults.note(jsonb)', retry_delays => '{1 day -1 hour}');
SELECT async.register('faults.note(jsonb)', timeout => '1 day -1 hour');
SELECT async.register('faults.note(jsonb)', name => repeat('n', 128));
SELECT async.register('faults.note(jsonb)', name => repeat('é', 64));
SELECT count(*) AS registered FROM async.functions WHERE handler::text LIKE '%faults.note%';
-- refused: past the bounds (at most 100 attempts, 100 delays of up to 30 days,
-- a timeout up to a day, max_event_age up to 30 days)
SELECT async.register('faults.raise(jsonb)', name => 'fault_century', max_attempts => 101);
SELECT async.register('faults.raise(jsonb)', name => 'fault_century', retry_delays => '{30 days 1 second}');
SELECT async.register('faults.raise(jsonb)', name => 'fault_century', retry_delays => '{300000 years}');
SELECT async.register('faults.raise(jsonb)', name => 'fault_century',
                      retry_delays => array_fill('1 second'::interval, ARRAY[101]));
SELECT async.register('faults.raise(jsonb)', name => 'fault_century', timeout => '1 day 1 second');
SELECT async.register('faults.raise(jsonb)', name => 'fault_century', max_event_age => '31 days');
-- accepted: the longest name, the longest delay, the largest max_attempts, no delays at all
SELECT length(async.register('faults.note(jsonb)', name => repeat('n', 127))) AS name_length;
SELECT async.unregister(repeat('n', 127));
SELECT async.register('faults.raise(jsonb)', name => 'fault_century', max_attempts => 100,
                      retry_delays => '{30 days}', timeout => '1 day', max_event_age => '30 days');
SELECT async.register('faults.raise(jsonb)', name => 'fault_at_once', retry_delays => '{}');
CREATE FUNCTION faults.nap(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(0.1) $$;
SELECT async.register('faults.nap(jsonb)', name => 'fault_tiny_timeout', max_attempts => 1,
                      timeout => '1 microsecond');
SELECT name, max_attempts, retry_delays, timeout FROM async.functions
 WHERE name IN ('fault_century', 'fault_at_once', 'fault_tiny_timeout') ORDER BY name;
SELECT async.invoke('fault_century', '{"how": "P0001"}', 'century-1');
SELECT async.invoke('fault_at_once', '{"how": "P0001"}', 'at-once-1');
SELECT async.invoke('fault_tiny_timeout', '{}', 'tiny-timeout-1');
SELECT async.wait_idle();
-- 30 days: queued for next month; no delay: three attempts at once;
-- a timeout under a millisecond still cancels
SELECT event_id, state, attempts,
       run_at = (errors->0->>'at')::timestamptz + interval '30 days' AS in_30_days,
       errors->-1->>'sqlstate' AS sqlstate
  FROM async.jobs WHERE event_id IN ('century-1', 'at-once-1', 'tiny-timeout-1') ORDER BY event_id;
DELETE FROM async.jobs WHERE event_id = 'century-1';

-- async.unregister and async.redrive
SELECT async.unregister(NULL);
SELECT async.unregister('');
SELECT async.unregister(repeat('x', 100000));
SELECT async.redrive(NULL);
SELECT async.redrive('');
SELECT async.redrive(repeat('x', 100000));

-- async.invoke
SELECT async.invoke(NULL, '{}');
SELECT async.invoke('fault_note', NULL);
SELECT async.invoke('fault_note', '{}', '');
SELECT async.invoke('fault_note', '{}', repeat('x', 256));
SELECT async.invoke('fault_note', '{}', repeat('é', 128));
SELECT async.invoke('fault_note', '{}', repeat('x', 100000));
DO $$
BEGIN
	PERFORM async.invoke(repeat('f', 100000), '{}');
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'refused: % (SQLSTATE %)', left(SQLERRM, 30), SQLSTATE;
END $$;
SELECT length(async.invoke('fault_note', '{"k": "generated id"}', NULL)) AS generated;
SELECT length(async.invoke('fault_note', '{"k": "255 bytes"}', repeat('x', 255))) AS id_length;
SELECT octet_length(async.invoke('fault_note', '{"k": "254 bytes"}', repeat('é', 127))) AS id_bytes;
SELECT async.invoke('fault_note', '{"k": "blank"}', ' ');
SELECT async.invoke('fault_note', '{"k": "null run_at"}', 'inv-null-run-at', NULL);
SELECT async.invoke('fault_note', '{"k": "-infinity"}', 'inv-minus-infinity', '-infinity');
SELECT async.invoke('fault_note', '{"k": "infinity"}', 'inv-infinity', 'infinity');
-- JSON scalars are payloads too; the handler receives them as they are
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('fault_note', 'scalar-null', 'null'), ('fault_note', 'scalar-number', '42'),
       ('fault_note', 'scalar-string', '"s"'), ('fault_note', 'scalar-array', '[]');
-- one bad row refuses the whole statement
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('fault_note', 'multi-1', '{}'), ('fault_note', '', '{}');
SELECT async.wait_idle();
SELECT event_id, state, attempts FROM async.jobs
 WHERE function = 'fault_note' AND event_id NOT LIKE 'x%' AND event_id NOT LIKE 'é%'
   AND payload->>'k' IS DISTINCT FROM 'generated id'
 ORDER BY event_id;
SELECT event FROM faults.effects WHERE tag = 'note' AND jsonb_typeof(event) <> 'object'
 ORDER BY event::text;
SELECT count(*) AS ran FROM faults.effects
 WHERE tag = 'note' AND event->>'k' IN ('generated id', '255 bytes', '254 bytes', 'blank', 'null run_at', '-infinity');
DELETE FROM async.jobs WHERE event_id = 'inv-infinity';

-- payloads of 10 MB and 100 MB: refused with a clear error, and the server
-- goes on serving
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('fault_note', 'big-10', jsonb_build_object('blob', repeat('x', 10 * 1024 * 1024)));
SELECT async.invoke('fault_note', jsonb_build_object('blob', repeat('x', 100 * 1024 * 1024)), 'big-100');
SELECT count(*) AS big_jobs FROM async.jobs WHERE event_id LIKE 'big-%';
SELECT async.invoke('fault_note', '{"k": "after big"}', 'after-big');
SELECT async.wait_idle();
SELECT state FROM async.jobs WHERE event_id = 'after-big';

-- async.wait_idle: a negative timeout returns at once; NULL waits without a
-- deadline (here until statement_timeout)
SELECT async.wait_idle(NULL) AS idle_null;
SELECT async.register('faults.nap(jsonb)', name => 'fault_nap', max_attempts => 1);
CREATE OR REPLACE FUNCTION faults.nap(e jsonb) RETURNS void LANGUAGE sql
AS $$ SELECT pg_sleep(COALESCE((e->>'s')::float8, 0.1)) $$;
SELECT async.invoke('fault_nap', '{"s": 3}', 'nap-1');
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM async.workers WHERE event_id = 'nap-1');
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT async.wait_idle('-1 second') AS idle_negative;
SET statement_timeout = '300ms';
-- the timeout may strike in the look or in the sleep: leave out the context
\set VERBOSITY terse
SELECT async.wait_idle(NULL);
\set VERBOSITY default
RESET statement_timeout;
SELECT async.wait_idle() AS idle;

-- async.health with NULL thresholds still answers every check
SELECT "check" FROM async.health(NULL, NULL);

-- async.configure, pause and resume
SELECT async.configure(NULL);
SELECT async.configure('fault_nosuch');
SELECT async.configure('fault_note', max_attempts => 0);
SELECT async.configure('fault_note', concurrency => -2);
SELECT async.configure('fault_note', max_event_age => '0.5 seconds');
SELECT async.configure('fault_note', retry_delays => '{-1 s}');
SELECT async.configure('fault_note', timeout => '-1 s');
SELECT async.configure('fault_note', on_success => 'fault_nosuch');
SELECT async.register('faults.note(jsonb)', name => 'fault_note2', max_event_age => NULL);
SELECT async.register('faults.note(jsonb)', name => 'fault_note2', concurrency => -1);
SELECT async.register('faults.note(jsonb)', name => 'fault_note2', on_failure => '');
SELECT count(*) AS registered FROM async.functions WHERE name = 'fault_note2';
SELECT name, max_attempts, timeout, max_event_age, concurrency, on_success
  FROM async.functions WHERE name = 'fault_note';
SELECT async.pause(NULL) AS pause_null, async.pause('') AS pause_empty,
       async.resume('fault_nosuch') AS resume_unknown;

-- async.invoke_many
SELECT async.invoke_many('fault_note', NULL);
SELECT async.invoke_many('fault_note', '{}');
SELECT async.invoke_many(NULL, ARRAY['{}'::jsonb]);
SELECT async.invoke_many('fault_note', ARRAY['{}'::jsonb, NULL]);
SELECT async.invoke_many('fault_nosuch', ARRAY['{}'::jsonb]);
SELECT async.invoke_many('fault_note', ARRAY[jsonb_build_object('blob', repeat('x', 2 * 1024 * 1024))]);

-- async.attach and async.detach
SELECT async.attach('faults.uniq', 'fault_nosuch');
SELECT async.attach('faults.uniq', 'fault_note', '{}');
SELECT async.attach('faults.uniq', 'fault_note', '{TRUNCATE}');
SELECT async.attach('faults.uniq', 'fault_note', NULL);
SELECT async.attach(NULL, 'fault_note');
SELECT async.attach('faults.uniq', NULL);
SELECT async.attach('faults.uniq', 'fault_note', condition => 'no_such_column > 0');
SELECT count(*) AS sources FROM async.sources WHERE source = 'faults.uniq'::regclass;
SELECT async.detach(NULL, NULL) AS detach_null, async.detach('faults.uniq', 'fault_note') AS detach_none;

-- async.redrive_many and async.purge_dead_letters: filters that match nothing
SELECT async.redrive_many(function => 'fault_nosuch') AS unknown_function,
       async.redrive_many(reason => 'no such reason') AS unknown_reason,
       async.redrive_many(function => 'raise', dead_after => now() + interval '1 day') AS future,
       async.redrive_many(function => 'raise', dead_after => now(), dead_before => now() - interval '1 day') AS empty_range;
SELECT async.purge_dead_letters(function => 'fault_nosuch') AS unknown_function,
       async.purge_dead_letters(function => 'raise', older_than => '100 years') AS too_old;
SELECT count(*) AS raise_dead_letters FROM async.dead_letters WHERE function = 'raise';

-- ---------------------------------------------------------------------------
-- D. Privileges (see also privileges.sql)
-- ---------------------------------------------------------------------------
CREATE ROLE regress_fault_inserter;
CREATE ROLE regress_fault_victim;
CREATE ROLE regress_fault_attacker;

-- a role that may only enqueue (EXECUTE on one handler) can do nothing more
REVOKE EXECUTE ON FUNCTION faults.note(jsonb), faults.raise(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION faults.note(jsonb) TO regress_fault_inserter;
SET ROLE regress_fault_inserter;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('fault_note', 'ins-1', '{"by": "inserter"}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('fault_note', 'ins-1', '{}')
ON CONFLICT (event_id) DO UPDATE SET run_at = now();
UPDATE async.jobs SET run_at = now() + interval '1 day' WHERE event_id = 'ins-1';
INSERT INTO async.jobs (id, function, payload) VALUES (1, 'fault_note', '{}');
INSERT INTO async.jobs (function, payload, attempts) VALUES ('fault_note', '{}', 3);
INSERT INTO async.jobs (function, payload, worker_pid) VALUES ('fault_note', '{}', 1);
INSERT INTO async.jobs (function, payload, suspect) VALUES ('fault_note', '{}', true);
INSERT INTO async.dead_letters (job_id, event_id, function, payload, attempts, errors, enqueued_at, enqueued_by)
VALUES (1, 'forged', 'fault_note', '{}', 1, '[]', now(), 'regress_fault_inserter');
TRUNCATE async.jobs;
SET pg_async.max_payload_size = '1GB';
SELECT async.register('faults.note(jsonb)', name => 'inserter_note');
SELECT async._recover();
SELECT async._purge_finished('0', 1000, '0', '-infinity');
SELECT async._live_worker_pids();
SELECT async.stats_reset();
SELECT count(*) FROM async.workers;
-- and no other handler: EXECUTE on one is not EXECUTE on another
INSERT INTO async.jobs (function, payload) VALUES ('raise', '{}');
SELECT event_id, enqueued_by FROM async.jobs ORDER BY event_id;
RESET ROLE;
SELECT async.wait_idle();
-- the handler ran as its run_as, not as the role that enqueued
SELECT who = current_user AS as_run_as, who <> 'regress_fault_inserter' AS not_as_enqueuer
  FROM faults.effects WHERE event->>'by' = 'inserter';
GRANT EXECUTE ON FUNCTION faults.note(jsonb), faults.raise(jsonb) TO PUBLIC;

-- search_path hijack: the handler of fault_app calls lower() and = on
-- varchar; an attacker who may create in public shadows both with better
-- matching ones.  Called directly with the default search_path, the hijack
-- works; run by a worker (search_path = pg_catalog, pg_temp) it does not.
CREATE SCHEMA fault_app AUTHORIZATION regress_fault_victim;
GRANT CREATE ON SCHEMA public TO regress_fault_attacker;
SET ROLE regress_fault_victim;
CREATE TABLE fault_app.seen (via text, name text, lowered text, is_bob boolean, who text);
CREATE FUNCTION fault_app.handle(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO fault_app.seen (via, name, lowered, is_bob, who)
      VALUES (e->>'via', e->>'name', lower((e->>'name')::varchar),
              (e->>'name')::varchar = 'Bob'::varchar, current_user) $$;
SELECT async.register('fault_app.handle(jsonb)', name => 'fault_app');
RESET ROLE;
SET ROLE regress_fault_attacker;
CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql
AS $$ SELECT 'hijacked as ' || current_user $$;
CREATE FUNCTION public.fault_always(varchar, varchar) RETURNS boolean LANGUAGE sql
AS $$ SELECT true $$;
CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.fault_always);
-- the attacker enqueues an event for the victim's handler
SELECT async.invoke('fault_app', '{"via": "worker", "name": "Alice"}', 'hijack-1');
RESET ROLE;
SET ROLE regress_fault_victim;
SELECT fault_app.handle('{"via": "direct call", "name": "Alice"}');
RESET ROLE;
SELECT async.wait_idle();
SELECT via, name, lowered, is_bob, who FROM fault_app.seen ORDER BY via;
DROP OPERATOR public.= (varchar, varchar);
DROP FUNCTION public.lower(varchar), public.fault_always(varchar, varchar);
REVOKE CREATE ON SCHEMA public FROM regress_fault_attacker;

-- escalation through a SECURITY DEFINER function of a superuser that the
-- attacker may execute: registering it needs its owner's privileges, with
-- any run_as, and a superuser's registration of it cannot be taken over
CREATE FUNCTION faults.definer(e jsonb) RETURNS void LANGUAGE sql SECURITY DEFINER
AS $$ INSERT INTO faults.effects (tag, event, who, session_who)
      VALUES ('definer', e, current_user, session_user) $$;
REVOKE EXECUTE ON FUNCTION faults.definer(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION faults.definer(jsonb) TO regress_fault_attacker;
SELECT async.register('faults.definer(jsonb)', name => 'fault_definer');
GRANT CREATE ON SCHEMA public TO regress_fault_attacker;
SET ROLE regress_fault_attacker;
SELECT async.register('faults.definer(jsonb)', name => 'fault_escalate');
SELECT async.register('faults.definer(jsonb)', name => 'fault_escalate', run_as => 'regress_fault_attacker');
CREATE FUNCTION public.fault_mine(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.fault_mine(jsonb)', name => 'fault_definer');
SELECT async.register('public.fault_mine(jsonb)', name => 'fault_mine', run_as => 'regress_fault_victim');
SELECT async.unregister('fault_definer');
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM regress_fault_attacker;
SELECT name, handler FROM async.functions WHERE name IN ('fault_definer', 'fault_escalate', 'fault_mine');

-- escalation through a destination: the attacker may not enqueue for
-- fault_secret (no EXECUTE on its handler), so neither may a registration of
-- hers send it on_success or on_failure records with payloads she chose
CREATE FUNCTION faults.secret(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO faults.effects (tag, event, who) VALUES ('secret', e, current_user) $$;
REVOKE EXECUTE ON FUNCTION faults.secret(jsonb) FROM PUBLIC;
SELECT async.register('faults.secret(jsonb)', name => 'fault_secret');
GRANT CREATE ON SCHEMA public TO regress_fault_attacker;
SET ROLE regress_fault_attacker;
INSERT INTO async.jobs (function, payload) VALUES ('fault_secret', '{"direct": true}');
CREATE FUNCTION public.fault_relay(e jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF e ? 'fail' THEN
		RAISE EXCEPTION 'relay fails on purpose';
	END IF;
	RETURN '{"relayed": true}';
END $$;
DO $$
BEGIN
	PERFORM async.register('public.fault_relay(jsonb)', name => 'fault_relay', max_attempts => 1,
	                       on_success => 'fault_secret', on_failure => 'fault_secret');
	PERFORM async.invoke('fault_relay', '{"chosen by": "attacker"}', 'relay-ok');
	PERFORM async.invoke('fault_relay', '{"chosen by": "attacker", "fail": true}', 'relay-fail');
EXCEPTION WHEN OTHERS THEN
	NULL;		-- refusing the registration is one way to fix it
END $$;
RESET ROLE;
REVOKE CREATE ON SCHEMA public FROM regress_fault_attacker;
SELECT async.wait_idle();
-- the secret handler never ran for her
SELECT count(*) AS secret_runs FROM faults.effects WHERE tag = 'secret';
SELECT count(*) AS secret_jobs_succeeded FROM async.jobs
 WHERE function = 'fault_secret' AND state = 'succeeded';
DELETE FROM async.jobs WHERE function IN ('fault_secret', 'fault_relay');

-- who a handler runs as: current_user and session_user are both run_as; a
-- SECURITY DEFINER handler changes current_user to its owner only; a handler
-- may not change role
CREATE FUNCTION faults.become(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	CASE e->>'how'
	WHEN 'set_role' THEN EXECUTE format('SET ROLE %I', e->>'role');
	WHEN 'set_session' THEN EXECUTE format('SET SESSION AUTHORIZATION %I', e->>'role');
	WHEN 'set_config' THEN PERFORM set_config('role', e->>'role', false);
	WHEN 'reset' THEN RESET ROLE;
	ELSE NULL;
	END CASE;
	INSERT INTO faults.effects (tag, event, who, session_who)
	VALUES ('become', e, current_user, session_user);
END $$;
ALTER FUNCTION faults.become(jsonb) OWNER TO regress_fault_victim;
-- run_as defaults to the owner, also when a superuser registers it
SELECT async.register('faults.become(jsonb)', name => 'fault_become', max_attempts => 1);
SELECT run_as FROM async.functions WHERE name = 'fault_become';
ALTER FUNCTION faults.whoami(jsonb) OWNER TO regress_fault_attacker;
ALTER FUNCTION faults.whoami(jsonb) SECURITY DEFINER;
-- not as a role whose privileges the owner lacks, even registered by a superuser
SELECT async.register('faults.whoami(jsonb)', name => 'fault_whoami_definer', max_attempts => 1,
                      run_as => 'regress_fault_victim');
ALTER FUNCTION faults.whoami(jsonb) OWNER TO CURRENT_USER;
SELECT async.register('faults.whoami(jsonb)', name => 'fault_whoami_definer', max_attempts => 1,
                      run_as => 'regress_fault_victim');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'fault_become', 'become-' || how, jsonb_build_object('how', how, 'role', r)
  FROM (VALUES ('plain', ''), ('set_role', current_user), ('set_session', current_user),
               ('set_config', current_user), ('reset', '')) v(how, r);
SELECT async.invoke('fault_whoami_definer', '{"tag": "whoami-definer"}', 'whoami-definer');
SELECT async.wait_idle();
SELECT event_id, state, last_error FROM async.jobs
 WHERE event_id LIKE 'become-%' OR event_id = 'whoami-definer' ORDER BY event_id;
SELECT coalesce(event->>'how', tag) AS how, who, session_who FROM faults.effects
 WHERE tag IN ('become', 'whoami-definer') ORDER BY 1;

-- ---------------------------------------------------------------------------
-- Every fault above left the workers alive
-- ---------------------------------------------------------------------------
SELECT count(*) AS same_workers FROM async.workers WHERE pid IN (SELECT pid FROM faults.pids);

-- clean up
SELECT count(async.unregister(name, cancel_jobs => true)) >= 14 AS unregistered FROM async.functions
 WHERE name IN ('fault_note', 'morph', 'deep', 'raise', 'stall', 'fault_century', 'fault_at_once',
                'fault_tiny_timeout', 'fault_nap', 'fault_app', 'fault_definer', 'fault_mine',
                'fault_become', 'fault_whoami_definer', 'fault_secret', 'fault_relay');
DELETE FROM async.jobs WHERE enqueued_by IN ('regress_fault_inserter'::regrole, 'regress_fault_attacker'::regrole);
DELETE FROM async.dead_letters WHERE enqueued_by IN ('regress_fault_inserter'::regrole, 'regress_fault_attacker'::regrole);
DROP SCHEMA fault_app CASCADE;
DROP OWNED BY regress_fault_inserter, regress_fault_victim, regress_fault_attacker;
DROP ROLE regress_fault_inserter, regress_fault_victim, regress_fault_attacker;
