-- keys: with concurrency_key and key_concurrency, at most key_concurrency
-- jobs with one value of that payload key run at once, across workers and
-- consumers, and the claims visit the values in turn.
CREATE TABLE public.key_runs (key text, n integer, running integer,
							  at timestamptz DEFAULT clock_timestamp());
-- each run notes how many jobs of its key were running then, itself included
-- (by payload, which is what the handler has)
CREATE FUNCTION public.key_note(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.key_runs (key, n, running)
	SELECT e->>'tenant', (e->>'n')::integer, count(*)::integer
	  FROM async.jobs j
	 WHERE j.function = 'key_note' AND j.state = 'running'
	   AND COALESCE(j.payload->>'tenant', '') = COALESCE(e->>'tenant', '') $$;
CREATE FUNCTION public.key_fail(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'failing on purpose';
END $$;

-- bad input changes nothing
SELECT async.register('public.key_note(jsonb)', concurrency_key => 'tenant');
SELECT async.register('public.key_note(jsonb)', key_concurrency => 1);
SELECT async.register('public.key_note(jsonb)', concurrency_key => '', key_concurrency => 1);
SELECT async.register('public.key_note(jsonb)', concurrency_key => repeat('k', 128), key_concurrency => 1);
SELECT async.register('public.key_note(jsonb)', concurrency_key => 'tenant', key_concurrency => 0);
SELECT async.register('public.key_note(jsonb)', concurrency_key => 'tenant', key_concurrency => -1);
SELECT async.register('public.key_note(jsonb)', concurrency_key => 'tenant', key_concurrency => 10001);
SELECT count(*) FROM async.functions WHERE name = 'key_note';

-- the key of a job: the payload's value as text, '' when missing or null,
-- the md5 of a long one; the INSERT cannot choose it
SELECT async.register('public.key_note(jsonb)', concurrency_key => 'tenant', key_concurrency => 1);
SELECT concurrency_key, key_concurrency, concurrency FROM async.functions WHERE name = 'key_note';
SELECT async.pause('key_note');
INSERT INTO async.jobs (function, event_id, payload) VALUES
	('key_note', 'k-string', '{"tenant": "acme"}'),
	('key_note', 'k-number', '{"tenant": 42}'),
	('key_note', 'k-bool', '{"tenant": true}'),
	('key_note', 'k-null', '{"tenant": null}'),
	('key_note', 'k-missing', '{"other": 1}'),
	('key_note', 'k-object', '{"tenant": {"a": [1, 2]}}'),
	('key_note', 'k-array', '[1, 2]'),
	('key_note', 'k-long', jsonb_build_object('tenant', repeat('x', 201))),
	('key_note', 'k-200', jsonb_build_object('tenant', repeat('y', 200)));
SELECT event_id, left(key, 40) AS key, length(key), key = async._key_value(payload, 'tenant') AS same,
	   limited, paused
  FROM async.jobs WHERE function = 'key_note' ORDER BY id;
INSERT INTO async.jobs (function, payload, key) VALUES ('key_note', '{}', 'mine');
SELECT key FROM async.jobs WHERE function = 'key_note' AND payload = '{}';

-- a new concurrency_key gives the queued jobs their new keys; -1 removes it
SELECT async.configure('key_note', concurrency_key => 'other');
SELECT event_id, key FROM async.jobs WHERE function = 'key_note' AND event_id IN ('k-string', 'k-missing') ORDER BY 1;
SELECT async.configure('key_note', key_concurrency => -1, concurrency_key => 'tenant');
SELECT async.configure('key_note', key_concurrency => -2);
SELECT async.configure('key_note', key_concurrency => -1);
SELECT concurrency_key, key_concurrency FROM async.functions WHERE name = 'key_note';
SELECT count(*) AS keyed, bool_or(limited) AS limited FROM async.jobs
 WHERE function = 'key_note' AND key IS NOT NULL;
SELECT async.configure('key_note', concurrency_key => 'tenant');
SELECT async.configure('key_note', concurrency_key => 'tenant', key_concurrency => 1);
SELECT count(*) FILTER (WHERE key IS NOT NULL) AS keyed, bool_and(limited) AS limited
  FROM async.jobs WHERE function = 'key_note';
DELETE FROM async.jobs WHERE function = 'key_note';

-- one at a time per key: three tenants of five jobs each, and jobs
-- without the key, which share the key ''
INSERT INTO async.jobs (function, payload)
SELECT 'key_note', jsonb_build_object('tenant', t, 'n', n)
  FROM unnest(ARRAY['a', 'b', 'c']) t, generate_series(1, 5) n;
INSERT INTO async.jobs (function, payload) SELECT 'key_note', jsonb_build_object('n', n) FROM generate_series(1, 3) n;
-- one worker claims, so that the order of the runs is that of its claims
-- (the place in the turn of the keys is the database's, and two workers'
-- claims take turns as their timing goes)
ALTER SYSTEM SET pg_async.workers = 1;
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN (SELECT count(*) FROM async.workers) = 1;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) AS workers FROM async.workers;
SELECT async.resume('key_note');
SELECT async.wait_idle();
SELECT COALESCE(key, '') AS key, count(*) AS runs, max(running) AS most_running
  FROM public.key_runs GROUP BY 1 ORDER BY 1;
SELECT state, count(*) FROM async.jobs WHERE function = 'key_note' GROUP BY 1;
SELECT count(*) AS reservations_left FROM async.running WHERE function = 'key_note';
-- the first claim took one job of every key, not the first five of one
SELECT count(DISTINCT COALESCE(key, '')) AS keys_in_first_four
  FROM (SELECT key FROM public.key_runs ORDER BY at LIMIT 4) f;
ALTER SYSTEM RESET pg_async.workers;
SELECT pg_reload_conf();
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN (SELECT count(*) FROM async.workers) = 2;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) AS workers FROM async.workers;

-- a job queued again keeps its key: a retry, and a redrive
SELECT async.register('public.key_fail(jsonb)', concurrency_key => 'tenant', key_concurrency => 2,
					  max_attempts => 2, retry_delays => '{0}');
SELECT async.invoke('key_fail', '{"tenant": "zed"}', 'key-fail-1');
SELECT async.wait_idle();
SELECT state, attempts, key FROM async.jobs WHERE event_id = 'key-fail-1';
SELECT async.configure('key_fail', max_attempts => 1);
SELECT async.pause('key_fail');
SELECT async.redrive('key-fail-1');
SELECT state, key, limited FROM async.jobs WHERE event_id = 'key-fail-1';
SELECT async.unregister('key_fail', cancel_jobs => true);

-- consumers: an external function's claims take at most key_concurrency of
-- a key until their jobs complete
SELECT async.register_external('key_ext', concurrency_key => 'tenant', key_concurrency => 1);
SELECT count(async.invoke('key_ext', jsonb_build_object('tenant', t, 'n', n)))
  FROM unnest(ARRAY['a', 'b']) t, generate_series(1, 3) n;
CREATE TEMP TABLE leases AS SELECT * FROM async.claim('key_ext', 10);
SELECT payload->>'tenant' AS tenant, count(*) FROM leases GROUP BY 1 ORDER BY 1;
SELECT count(*) AS more FROM async.claim('key_ext', 10);
SELECT async.complete(job_id, lease) FROM leases WHERE payload->>'tenant' = 'a';
SELECT payload->>'tenant' AS tenant, count(*) FROM async.claim('key_ext', 10) GROUP BY 1 ORDER BY 1;
SELECT key, count(*) FROM async.running WHERE function = 'key_ext' GROUP BY 1 ORDER BY 1;
SELECT count(async.complete(job_id, lease)) FROM async.running WHERE function = 'key_ext';
SELECT async.unregister('key_ext', cancel_jobs => true);

-- the place in the turn of the keys is the database's: a claim in another
-- session goes on from the key after the last one claimed, whoever claimed
-- it (0.16; before, each session started from the first key)
SELECT async.register_external('key_turn', concurrency_key => 'tenant', key_concurrency => 10);
SELECT count(async.invoke('key_turn', jsonb_build_object('tenant', t, 'n', n)))
  FROM unnest(ARRAY['a', 'b', 'c']) t, generate_series(1, 2) n;
SELECT payload->>'tenant' AS tenant FROM async.claim('key_turn', 1);
\c
SELECT payload->>'tenant' AS tenant FROM async.claim('key_turn', 1);
\c
SELECT payload->>'tenant' AS tenant FROM async.claim('key_turn', 2);
SELECT async._key_cursor('key_turn');
-- a key longer than any job's (pg_async_job_key) does not move it
SELECT async._advance_key_cursor('key_turn', ARRAY[repeat('z', 201)]);
SELECT async._key_cursor('key_turn');
-- 16 functions are remembered, those claimed last (a read does not count)
SELECT count(async._advance_key_cursor('key_turn_' || i, '{k}')) FROM generate_series(1, 15) i;
SELECT async._key_cursor('key_turn') AS still_known;
SELECT count(async._advance_key_cursor('key_turn_x' || i, '{k}')) FROM generate_series(1, 16) i;
SELECT async._key_cursor('key_turn') AS forgotten, async._key_cursor('key_turn_x16') AS known;
SELECT count(async.complete(job_id, lease)) FROM async.running WHERE function = 'key_turn';
SELECT async.unregister('key_turn', cancel_jobs => true);

-- a job that an enqueue racing a change of concurrency_key left without
-- its key, or with a key its function no longer has, is mended by the
-- workers' sweep (async._unpause_jobs), which finds it in an index range;
-- no trigger saw the race (replica mode here), and the job mended is one
-- due in an hour, which waits unkeyed and unmarked (0.23)
SELECT async.register('public.key_fail(jsonb)', name => 'key_plain', concurrency => 1);
INSERT INTO async.jobs (function, event_id, payload, run_at) VALUES
	('key_note', 'k-race', '{"tenant": "acme"}', now() + interval '1 hour'),
	('key_plain', 'k-plain', '{"tenant": "acme"}', now() + interval '1 hour');
SET session_replication_role = replica;
UPDATE async.jobs SET key = NULL, limited = true WHERE event_id = 'k-race';
UPDATE async.jobs SET key = 'stale' WHERE event_id = 'k-plain';
RESET session_replication_role;
SELECT event_id, key, limited FROM async.jobs WHERE event_id IN ('k-race', 'k-plain') ORDER BY 1;
SELECT async._unpause_jobs() >= 0 AS swept;
SELECT event_id, key, limited FROM async.jobs WHERE event_id IN ('k-race', 'k-plain') ORDER BY 1;
DELETE FROM async.jobs WHERE event_id IN ('k-race', 'k-plain');
SELECT async.unregister('key_plain');

-- a claim changes no column that an index of async.jobs names, in its
-- key or its predicate, so that it can be a HOT update (0.11 to 0.14 named
-- state in jobs_keyed_idx's predicate, and no claim was): of a keyed
-- function's job and of any other, here through async.claim
SELECT i.indexrelid::regclass AS index_naming_a_claimed_column
  FROM pg_index i, pg_attribute a
 WHERE i.indrelid = 'async.jobs'::regclass AND a.attrelid = i.indrelid
   AND a.attname IN ('state', 'attempts', 'started_at', 'worker_pid', 'suspect')
   AND (a.attnum = ANY (i.indkey)
        OR pg_get_expr(i.indpred, i.indrelid) ~ ('\m' || a.attname || '\M')
        OR pg_get_expr(i.indexprs, i.indrelid) ~ ('\m' || a.attname || '\M'));
SELECT async.register_external('key_ext', concurrency_key => 'tenant', key_concurrency => 1);
SELECT async.register_external('plain_ext');
INSERT INTO async.jobs (function, payload) VALUES
	('key_ext', '{"tenant": "acme"}'), ('plain_ext', '{}');
BEGIN;
-- (the counts are this session's not yet reported: the claims add to them)
SELECT pg_stat_get_xact_tuples_updated('async.jobs'::regclass) AS updates_before,
       pg_stat_get_xact_tuples_hot_updated('async.jobs'::regclass) AS hot_before \gset
SELECT count(*) AS claimed FROM async.claim('key_ext', 10);
SELECT count(*) AS claimed FROM async.claim('plain_ext', 10);
SELECT pg_stat_get_xact_tuples_updated('async.jobs'::regclass) - :updates_before AS updates,
       pg_stat_get_xact_tuples_hot_updated('async.jobs'::regclass) - :hot_before AS hot_updates;
ROLLBACK;
SELECT async.unregister('key_ext', cancel_jobs => true);
SELECT async.unregister('plain_ext', cancel_jobs => true);

-- the keys are pg_async's: a role neither sets a job's key nor calls the
-- claim's internals
CREATE ROLE regress_key_mallory;
GRANT EXECUTE ON FUNCTION public.key_note(jsonb) TO regress_key_mallory;
SET ROLE regress_key_mallory;
INSERT INTO async.jobs (function, payload, key) VALUES ('key_note', '{"tenant": "a"}', 'b');
SELECT * FROM async._keyed_jobs('key_note', 100, 100, now(), NULL);
SELECT async._advance_key_cursor('key_note', '{z}');
SELECT async._key_cursor('key_note');
SELECT async._job_key('key_note', '{}');
SELECT async._key_value('{}', 'tenant');
UPDATE async.running SET key = 'x';
RESET ROLE;

-- jobs queued for later cost the walk of the keys no visit of their keys:
-- with 2,000 keys whose jobs are due tomorrow and one key with a job due
-- now, the walk takes a few scans of jobs_keyed_idx, not one for each key
-- (any role may queue such jobs for a function of its own, and every claim
-- of the workers walks the keys of every keyed function with room)
BEGIN;
SELECT async.register('public.key_note(jsonb)', name => 'key_walk',
					  concurrency_key => 'tenant', key_concurrency => 1);
INSERT INTO async.jobs (function, payload, run_at)
SELECT 'key_walk', jsonb_build_object('tenant', 'later-' || g), now() + interval '1 day'
  FROM generate_series(1, 2000) g;
INSERT INTO async.jobs (function, payload) VALUES ('key_walk', '{"tenant": "now"}');
SELECT pg_stat_get_xact_numscans('async.jobs_keyed_idx'::regclass) AS scans_before \gset
SELECT key FROM async._keyed_jobs('key_walk', 1, 10, clock_timestamp(), NULL);
SELECT pg_stat_get_xact_numscans('async.jobs_keyed_idx'::regclass) - :scans_before < 20 AS few_scans;
-- nor do the scans pass their entries (0.22 passed them all in every
-- claim, about 5 ms a claim with 100,000 of them): until they are due they
-- wait unkeyed and unmarked, out of jobs_keyed_idx, in jobs_ready_idx by
-- their run_at; only the job due now is keyed
SELECT count(*) FILTER (WHERE key IS NOT NULL) AS keyed,
	   count(*) FILTER (WHERE limited) AS marked, count(*) AS jobs
  FROM async.jobs WHERE function = 'key_walk';
-- keys given anew by a changed registration, and a limit added, leave them so
SELECT async.configure('key_walk', concurrency_key => 'other');
SELECT async.configure('key_walk', concurrency_key => 'tenant', concurrency => 5);
SELECT count(*) FILTER (WHERE key IS NOT NULL) AS keyed,
	   count(*) FILTER (WHERE limited) AS marked
  FROM async.jobs WHERE function = 'key_walk';
-- without the concurrency_key they are ordinary jobs of a limited function
SELECT async.configure('key_walk', key_concurrency => -1);
SELECT count(*) FILTER (WHERE key IS NOT NULL) AS keyed,
	   count(*) FILTER (WHERE limited) AS marked
  FROM async.jobs WHERE function = 'key_walk';
ROLLBACK;

-- a retry due later waits unkeyed too, and an external function's jobs
-- stay keyed (only its own consumers walk its keys)
SELECT async.register('public.key_fail(jsonb)', name => 'key_retry', concurrency_key => 'tenant',
					  key_concurrency => 1, max_attempts => 2, retry_delays => '{1 hour}');
SELECT async.invoke('key_retry', '{"tenant": "r"}', 'key-retry-1');
DO $$
BEGIN
	FOR i IN 1..1200 LOOP
		EXIT WHEN (SELECT attempts FROM async.jobs WHERE event_id = 'key-retry-1') = 1
			  AND (SELECT state FROM async.jobs WHERE event_id = 'key-retry-1') = 'queued';
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT state, attempts, key, limited, run_at > now() + interval '50 minutes' AS later
  FROM async.jobs WHERE event_id = 'key-retry-1';
SELECT async.unregister('key_retry', cancel_jobs => true);
SELECT async.register_external('key_ext_later', concurrency_key => 'tenant', key_concurrency => 1);
INSERT INTO async.jobs (function, payload, run_at)
VALUES ('key_ext_later', '{"tenant": "e"}', now() + interval '1 day');
SELECT key, limited FROM async.jobs WHERE function = 'key_ext_later';
SELECT async.unregister('key_ext_later', cancel_jobs => true);

-- once due, a job queued for later is keyed by a claim and runs within
-- its key's limit: three jobs of one tenant due in a second, one at a time
TRUNCATE public.key_runs;
INSERT INTO async.jobs (function, payload, run_at)
SELECT 'key_note', jsonb_build_object('tenant', 'soon', 'n', n), clock_timestamp() + interval '1 second'
  FROM generate_series(1, 3) n;
SELECT count(*) FILTER (WHERE key IS NULL AND NOT limited) AS waiting_unkeyed
  FROM async.jobs WHERE function = 'key_note' AND payload->>'tenant' = 'soon';
DO $$
BEGIN
	FOR i IN 1..1200 LOOP
		EXIT WHEN (SELECT count(*) FROM public.key_runs WHERE key = 'soon') = 3;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT async.wait_idle();
SELECT count(*) AS runs, max(running) AS most_running FROM public.key_runs WHERE key = 'soon';
SELECT state, key, count(*) FROM async.jobs
 WHERE function = 'key_note' AND payload->>'tenant' = 'soon' GROUP BY 1, 2;

-- a paused job queued for later that a changed concurrency_key keys while
-- it waits, and that is resumed once due, is marked again: unmarked, with
-- a key, the walks of the ready jobs would have found it, and claims
-- would have run it whatever its key's room (in one transaction, which the
-- workers do not see)
BEGIN;
SELECT async.pause('key_note');
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('key_note', 'k-resume', '{"tenant": "resumed"}', clock_timestamp() + interval '0.2 seconds');
SELECT async.configure('key_note', concurrency_key => 'other');
SELECT async.configure('key_note', concurrency_key => 'tenant');
SELECT paused, limited, key FROM async.jobs WHERE event_id = 'k-resume';
DO $$
BEGIN
	WHILE clock_timestamp() <= (SELECT run_at FROM async.jobs WHERE event_id = 'k-resume') LOOP
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT async.resume('key_note');
SELECT paused, limited, key FROM async.jobs WHERE event_id = 'k-resume';
ROLLBACK;

DROP OWNED BY regress_key_mallory;
DROP ROLE regress_key_mallory;
SELECT async.unregister('key_note');
DROP TABLE public.key_runs;
DROP FUNCTION public.key_note(jsonb), public.key_fail(jsonb);
