-- upgrade: ALTER EXTENSION pg_async UPDATE from 0.1 keeps jobs, dead
-- letters and the history, and ends with what CREATE EXTENSION installs.
-- It runs in a database of its own, which no worker serves.
CREATE DATABASE regress_upgrade;
\c regress_upgrade
SET client_min_messages = error;
CREATE EXTENSION pg_async VERSION '0.1';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'pg_async';

CREATE FUNCTION public.up_noop(e jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT async.register('public.up_noop(jsonb)');
INSERT INTO async.jobs (event_id, function, payload) VALUES ('up-1', 'up_noop', '{"n": 1}');
-- what 0.1 wrote when a job succeeded: a finished job and a history row
INSERT INTO async.jobs (event_id, function, payload, state, attempts, started_at, finished_at)
VALUES ('up-2', 'up_noop', '{"n": 2}', 'succeeded', 1, now() - interval '1 minute', now());
INSERT INTO async.attempts (job_id, event_id, function, attempt, started_at, duration,
                            outcome, enqueued_by)
SELECT id, event_id, function, 1, started_at, '5 ms', 'succeeded', enqueued_by
  FROM async.jobs WHERE event_id = 'up-2';
-- a function with a concurrency limit, and a job waiting for it
SELECT async.register('public.up_noop(jsonb)', name => 'up_limited', concurrency => 2);
INSERT INTO async.jobs (event_id, function, payload) VALUES ('up-3', 'up_limited', '{"n": 3}');
-- a random UUID as default event_id
WITH i AS (INSERT INTO async.jobs (function) VALUES ('up_noop') RETURNING event_id)
SELECT substr(event_id, 15, 1) AS uuid_version FROM i;

ALTER EXTENSION pg_async UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_async';

-- the data is still there
SELECT event_id, state, payload FROM async.jobs WHERE event_id LIKE 'up-%' ORDER BY event_id;
SELECT name, handler FROM async.functions ORDER BY name;
-- 0.3: the queued job of the limited function is marked limited, the others not
SELECT event_id, limited FROM async.jobs WHERE event_id LIKE 'up-%' ORDER BY event_id;
-- the 0.1 history is read through the view
SELECT event_id, attempt, duration, outcome FROM async.attempts ORDER BY event_id;
-- 0.4: the jobs of a function with concurrency 0 are held, not ready
SELECT async.configure('up_limited', concurrency => 0);
SELECT function, ready, held, running FROM async.stats WHERE function LIKE 'up%' ORDER BY function;
-- new default event ids are time-ordered UUIDs (version 7)
WITH i AS (INSERT INTO async.jobs (function) VALUES ('up_noop') RETURNING event_id)
SELECT substr(event_id, 15, 1) AS uuid_version, event_id::uuid IS NOT NULL AS is_uuid FROM i;
-- ids made one after another sort one after another
SELECT bool_and(a < b) AS ordered
  FROM (SELECT async.new_event_id() AS a, pg_sleep(0.002), async.new_event_id() AS b
          FROM generate_series(1, 5)) s;

-- the updated extension has as many objects as a new installation (which
-- setup.sql checks are all commented)
SELECT count(*) AS objects FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_async')
   AND d.deptype = 'e';

\c contrib_regression
SELECT count(*) AS objects FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_async')
   AND d.deptype = 'e';
DROP DATABASE regress_upgrade;
