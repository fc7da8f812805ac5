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
-- registrations as 0.1 wrote them (its async.register needs a 0.1 library):
-- the handler's signature as text
INSERT INTO async.functions (name, handler, run_as, registered_by)
VALUES ('up_noop', 'public.up_noop(pg_catalog.jsonb)', current_user::regrole, current_user::regrole);
INSERT INTO async.jobs (event_id, function, payload) VALUES ('up-1', 'up_noop', '{"n": 1}');
-- what 0.1 wrote when a job succeeded: a finished job and a history row
INSERT INTO async.jobs (event_id, function, payload, state, attempts, started_at, finished_at)
VALUES ('up-2', 'up_noop', '{"n": 2}', 'succeeded', 1, now() - interval '1 minute', now());
INSERT INTO async.attempts (job_id, event_id, function, attempt, started_at, duration,
                            outcome, enqueued_by)
SELECT id, event_id, function, 1, started_at, '5 ms', 'succeeded', enqueued_by
  FROM async.jobs WHERE event_id = 'up-2';
-- a function with a concurrency limit, and a job waiting for it
INSERT INTO async.functions (name, handler, run_as, registered_by, concurrency)
VALUES ('up_limited', 'public.up_noop(pg_catalog.jsonb)', current_user::regrole, current_user::regrole, 2);
-- settings that 0.5 bounds, a retry_delays array not indexed from 1, and a
-- handler that is gone
INSERT INTO async.functions (name, handler, run_as, registered_by, max_attempts, retry_delays,
                             timeout, max_event_age)
VALUES ('up_wild', 'public.up_noop(pg_catalog.jsonb)', current_user::regrole, current_user::regrole,
        1000, '[0:2]={300000 years,-1 hour,NULL}', '100 years', '10 years'),
       ('up_gone', 'public.up_gone(pg_catalog.jsonb)', current_user::regrole, current_user::regrole,
        3, '{1 minute}', '1 minute', '1 hour');
INSERT INTO async.jobs (event_id, function, payload) VALUES ('up-3', 'up_limited', '{"n": 3}');
-- a random UUID as default event_id
WITH i AS (INSERT INTO async.jobs (function) VALUES ('up_noop') RETURNING event_id)
SELECT substr(event_id, 15, 1) AS uuid_version FROM i;

-- until the update, the library serves the old async.invoke, duplicates and
-- all, but its async._note_duplicate no longer forges counters
SELECT async.invoke('up_noop', '{}', 'up-1') AS duplicate;
SELECT async._note_duplicate('up_forged');
SELECT count(*) AS forged FROM async.function_stats WHERE function = 'up_forged';

ALTER EXTENSION pg_async UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_async';

-- the data is still there
SELECT event_id, state, payload FROM async.jobs WHERE event_id LIKE 'up-%' ORDER BY event_id;
SELECT name, handler FROM async.functions ORDER BY name;
-- 0.5: handlers are bound by OID (a missing one as 0), settings within bounds
SELECT name, handler::oid = 0 AS gone, pg_typeof(handler) FROM async.functions ORDER BY name;
SELECT name, max_attempts, retry_delays, array_lower(retry_delays, 1) AS lower, timeout, max_event_age
  FROM async.functions WHERE name = 'up_wild';
SELECT has_table_privilege('public', 'async.jobs', 'DELETE') AS public_deletes_jobs,
       has_table_privilege('public', 'async.dead_letters', 'DELETE') AS public_deletes_dead_letters;
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
-- 0.9: the jobs, registrations and dead letters of before have priority 0,
-- and a new job takes its function's
SELECT count(*) FILTER (WHERE priority <> 0) AS not_zero, count(*) AS jobs FROM async.jobs;
SELECT bool_and(priority = 0) AS all_zero FROM async.functions;
-- and depth 0, no max_depth of their own
SELECT count(*) FILTER (WHERE depth <> 0) AS deep FROM async.jobs;
SELECT count(max_depth) AS own_max_depth FROM async.functions;
SELECT async.configure('up_noop', priority => 4);
WITH i AS (INSERT INTO async.jobs (function) VALUES ('up_noop') RETURNING priority)
SELECT priority FROM i;
-- 0.10: the registrations of before have no rate limit, a period of a
-- second; a function held by concurrency 0 says so
SELECT count(rate_limit) AS limited, bool_and(rate_period = '1 second') AS second
  FROM async.functions;
SELECT async.configure('up_limited', rate_limit => 1, rate_period => '1 day');
SELECT function, held, held_reason FROM async.stats WHERE function = 'up_limited';
-- 0.11: the jobs of before have no key; a concurrency_key gives the queued
-- ones theirs
SELECT count(key) AS keyed FROM async.jobs;
SELECT async.configure('up_limited', concurrency_key => 'n', key_concurrency => 1);
SELECT key, limited, count(*) FROM async.jobs
 WHERE function = 'up_limited' AND state = 'queued' GROUP BY 1, 2 ORDER BY 1;
-- ids made one after another sort one after another
SELECT bool_and(a < b) AS ordered
  FROM (SELECT async.new_event_id() AS a, pg_sleep(0.002), async.new_event_id() AS b
          FROM generate_series(1, 5)) s;

-- The updated extension is the one a new installation (sql/pg_async.sql)
-- makes: the same members, and in schema async the same functions (their
-- definitions, privileges and comments), relations, columns (type,
-- position, default, privileges, comment), indexes, views, constraints,
-- triggers, policies, sequences, types and dump configuration.  Each fact
-- is a line (test/schema_facts.sql, not echoed here); the test prints
-- the lines found on one side only.  The
-- schema's row and array types are members on PostgreSQL 17 and later,
-- on both sides alike.
\set ECHO none
\i test/schema_facts.sql
\set ECHO all

SELECT count(*) > 300 AS many_facts, string_agg(fact, E'\x1e' ORDER BY fact) AS facts
  FROM public.schema_facts \gset upgraded_
\echo :upgraded_many_facts

-- 0.18: the update removes the reservations of jobs that are not running,
-- which a 0.17 claim of keyed jobs could leave (of a queued job, and of one
-- cancelled since), and keeps those of running jobs
DROP EXTENSION pg_async CASCADE;
SET client_min_messages = error;
CREATE EXTENSION pg_async VERSION '0.17';
RESET client_min_messages;
CREATE FUNCTION public.keyed(e jsonb) RETURNS void LANGUAGE sql AS $$SELECT$$;
SELECT async.register('public.keyed(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);
INSERT INTO async.jobs (function, event_id, payload)
VALUES ('keyed', 'stray', '{"tenant": "a"}'), ('keyed', 'running', '{"tenant": "b"}'),
       ('keyed', 'cancelled', '{"tenant": "c"}');
UPDATE async.jobs SET state = 'running', attempts = 1, started_at = now()
 WHERE event_id = 'running';
INSERT INTO async.running (job_id, function, key)
SELECT id, function, key FROM async.jobs WHERE function = 'keyed';
SELECT async.cancel('cancelled');
SELECT count(*) AS reservations, count(j.id) AS of_jobs
  FROM async.running r LEFT JOIN async.jobs j ON j.id = r.job_id;
ALTER EXTENSION pg_async UPDATE TO '0.18';
SELECT r.key, j.event_id, j.state FROM async.running r LEFT JOIN async.jobs j ON j.id = r.job_id;

-- 0.20: consumers of a function registered before the library's update are
-- served while the schema is older than 0.11 (no key_concurrency): the
-- server reads the limits out of the rows as jsonb.  The row is the one an
-- async.register_external() of 0.10 made; this library registers nothing
-- in an older schema.
DROP EXTENSION pg_async CASCADE;
SET client_min_messages = error;
CREATE EXTENSION pg_async VERSION '0.10';
RESET client_min_messages;
INSERT INTO async.functions (name, handler, run_as, registered_by, concurrency)
VALUES ('ext10', NULL, current_user::regrole, current_user::regrole, 1);
INSERT INTO async.jobs (function, payload, event_id)
VALUES ('ext10', '{"n": 1}', 'ext10-1'), ('ext10', '{"n": 2}', 'ext10-2');
-- one, under concurrency 1
CREATE TEMP TABLE claimed AS SELECT * FROM async.claim('ext10', 5);
SELECT c.event_id, c.attempt FROM claimed c;
SELECT async.complete(c.job_id, c.lease, '{"ok": true}') FROM claimed c;
SELECT event_id, state, result FROM async.jobs ORDER BY event_id;
SELECT event_id, attempt FROM async.claim('ext10', 5);

\c contrib_regression
\set ECHO none
\i test/schema_facts.sql
\set ECHO all
SELECT extversion FROM pg_extension WHERE extname = 'pg_async';
-- every kind of fact is compared, and there are many of them
SELECT string_agg(DISTINCT split_part(fact, ' ', 1), ' ') AS kinds,
       count(*) FILTER (WHERE fact LIKE 'function %') >= 50 AS functions,
       count(*) FILTER (WHERE fact LIKE 'column async.jobs.%') >= 15 AS columns_of_jobs
  FROM public.schema_facts;
-- found only in the upgraded installation
SELECT fact FROM regexp_split_to_table(:'upgraded_facts', E'\x1e') fact
EXCEPT SELECT fact FROM public.schema_facts ORDER BY 1;
-- found only in the new installation
SELECT fact FROM public.schema_facts
EXCEPT SELECT fact FROM regexp_split_to_table(:'upgraded_facts', E'\x1e') fact ORDER BY 1;
DROP VIEW public.schema_facts;
DROP DATABASE regress_upgrade;
