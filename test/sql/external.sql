-- external: functions whose jobs consumers outside the server run
-- (async.register_external, async.claim, async.complete, async.fail,
-- async.heartbeat), and the rights each of them needs.
CREATE ROLE regress_ext_app;
CREATE ROLE regress_ext_consumer IN ROLE regress_ext_app;
CREATE ROLE regress_ext_other;
CREATE TABLE public.ext_claims (job_id bigint, event_id text, attempt integer,
                                deadline timestamptz, lease uuid);
GRANT ALL ON public.ext_claims TO PUBLIC;

-- wait_ext(sql): waits until the query sql returns true, for at most 30 s
CREATE FUNCTION public.wait_ext(sql text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 seconds';
	ok boolean;
BEGIN
	LOOP
		EXECUTE sql INTO ok;
		IF ok OR clock_timestamp() > deadline THEN
			RETURN ok;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END;
$$;

-- registering: no handler; run_as defaults to the caller
SET ROLE regress_ext_app;
SELECT async.register_external('ext_mail', retry_delays => '{0}', timeout => '1 minute');
RESET ROLE;
SELECT name, handler, run_as, registered_by FROM async.functions WHERE name = 'ext_mail';
-- a name keeps its kind
CREATE FUNCTION public.ext_sql(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.ext_sql(jsonb)', name => 'ext_mail');
SELECT async.register('public.ext_sql(jsonb)', name => 'ext_sqlfn');
SELECT async.register_external('ext_sqlfn');
-- bounds as async.register
SELECT async.register_external('ext_bad', max_attempts => 0);
SELECT async.register_external('ext_bad', timeout => '2 days');
SELECT async.register_external(NULL);
SELECT async.register_external('');
-- run_as must be a role whose privileges the caller has
SET ROLE regress_ext_other;
SELECT async.register_external('ext_bad', run_as => 'regress_ext_app');
RESET ROLE;

-- enqueueing needs the privileges of run_as
SET ROLE regress_ext_other;
INSERT INTO async.jobs (function, payload, event_id) VALUES ('ext_mail', '{"to": "x"}', 'ext-other');
RESET ROLE;
SET ROLE regress_ext_app;
INSERT INTO async.jobs (function, payload, event_id)
SELECT 'ext_mail', jsonb_build_object('n', n), 'ext-' || n FROM generate_series(1, 3) n;
RESET ROLE;
-- the workers leave them alone: marked limited, out of the index they claim
-- from; async.wait_idle() counts them, due and not yet run, so it times out
SELECT async.wait_idle('2 seconds');
SELECT event_id, state, limited, attempts FROM async.jobs WHERE function = 'ext_mail' ORDER BY id;

-- bad input changes nothing
SELECT * FROM async.claim('ext_mail', 0);
SELECT * FROM async.claim('ext_mail', 1000000);
SELECT * FROM async.claim('ext_mail', 1, '-1 second');
SELECT * FROM async.claim('ext_mail', 1, '2 hours');
SELECT * FROM async.claim(NULL);
SELECT * FROM async.claim('ext_mail', NULL);
SELECT * FROM async.claim('no_such_function');
SELECT * FROM async.claim('ext_sqlfn');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM async.claim('ext_mail', 1, '1 second');
ROLLBACK;
-- without waiting, a REPEATABLE READ transaction may claim
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM async.claim('ext_mail', 1, '0');
ROLLBACK;
-- a role without the privileges of run_as may not claim, nor see the payloads
SET ROLE regress_ext_other;
SELECT * FROM async.claim('ext_mail');
SELECT count(*) AS visible FROM async.jobs WHERE function = 'ext_mail';
RESET ROLE;
SELECT event_id, state, attempts FROM async.jobs WHERE function = 'ext_mail' ORDER BY id;

-- claiming: in run_at order, each with a lease until its deadline
SET ROLE regress_ext_consumer;
INSERT INTO public.ext_claims
SELECT job_id, event_id, attempt, deadline, lease FROM async.claim('ext_mail', 2);
SELECT event_id, attempt, deadline BETWEEN now() + '59 seconds' AND now() + '61 seconds' AS deadline_ok,
       lease IS NOT NULL AS leased
  FROM public.ext_claims ORDER BY event_id;
RESET ROLE;
SELECT event_id, state, attempts FROM async.jobs WHERE function = 'ext_mail' ORDER BY id;

-- another role cannot finish them, even with the lease
SET ROLE regress_ext_other;
SELECT async.complete(job_id, lease) FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.fail(job_id, lease, 'no') FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.heartbeat(job_id, lease) FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.complete_many(array_agg(job_id), array_agg(lease)) FROM public.ext_claims;
RESET ROLE;

-- complete, once
SET ROLE regress_ext_consumer;
SELECT async.heartbeat(job_id, lease) > now() AS extended FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.complete(job_id, lease, '{"sent": true}') FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.complete(job_id, lease, '{"sent": "twice"}') FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.heartbeat(job_id, lease) FROM public.ext_claims WHERE event_id = 'ext-1';
SELECT async.fail(job_id, lease, 'too late') FROM public.ext_claims WHERE event_id = 'ext-1';
-- a lease that is not the job's
SELECT async.complete(job_id, gen_random_uuid()) FROM public.ext_claims WHERE event_id = 'ext-2';
SELECT async.complete(-1, gen_random_uuid());
SELECT async.complete(NULL, gen_random_uuid());
SELECT async.complete(1, NULL);
-- a failed attempt, retried after retry_after; the error is in the history
SELECT async.fail(job_id, lease, 'smtp said 451', '1 hour') FROM public.ext_claims WHERE event_id = 'ext-2';
SELECT async.fail(job_id, lease, 'again') FROM public.ext_claims WHERE event_id = 'ext-2';
SELECT async.fail(job_id, lease, 'x', '-1 second') FROM public.ext_claims WHERE event_id = 'ext-2';
SELECT async.fail(job_id, lease, NULL) FROM public.ext_claims WHERE event_id = 'ext-2';
RESET ROLE;
SELECT event_id, state, attempts, result, last_error,
       run_at BETWEEN now() + '59 minutes' AND clock_timestamp() + '61 minutes' AS retry_later
  FROM async.jobs WHERE function = 'ext_mail' ORDER BY id;
SELECT event_id, attempt, outcome, error, sqlstate FROM async.attempts WHERE function = 'ext_mail';

-- complete_many: the arrays by position, and only leases still the jobs'
TRUNCATE public.ext_claims;
SET ROLE regress_ext_consumer;
INSERT INTO public.ext_claims
SELECT job_id, event_id, attempt, deadline, lease FROM async.claim('ext_mail', 10);
SELECT event_id FROM public.ext_claims;
SELECT async.complete_many(ARRAY[1, 2], ARRAY[gen_random_uuid()]);
SELECT async.complete_many(ARRAY[1], ARRAY[gen_random_uuid()], ARRAY['{}'::jsonb, '{}']);
SELECT async.complete_many(array_fill(1::bigint, ARRAY[10001]), array_fill(gen_random_uuid(), ARRAY[10001]));
SELECT async.complete_many(NULL, NULL);
SELECT async.complete_many(array_agg(job_id) || ARRAY[-1::bigint], array_agg(lease) || gen_random_uuid(),
                           array_agg(jsonb_build_object('done', event_id)) || '{}'::jsonb)
  FROM public.ext_claims;
RESET ROLE;
SELECT event_id, state, result FROM async.jobs WHERE function = 'ext_mail' ORDER BY id;

-- retries exhausted: the dead letters, and a redrive
SELECT async.register_external('ext_flaky', max_attempts => 2, retry_delays => '{0}');
SELECT async.invoke('ext_flaky', '{"n": 1}', 'ext-flaky-1');
SELECT async.fail(job_id, lease, 'first') FROM async.claim('ext_flaky');
SELECT async.fail(job_id, lease, 'second') FROM async.claim('ext_flaky');
SELECT count(*) FROM async.claim('ext_flaky');
SELECT event_id, function, attempts, reason, last_error FROM async.dead_letters WHERE function = 'ext_flaky';
SELECT async.redrive('ext-flaky-1');
SELECT event_id, attempt FROM async.claim('ext_flaky');
SELECT received, started, succeeded, failed, retried, dead_lettered
  FROM async.function_stats WHERE function = 'ext_flaky';

-- pause and concurrency hold the claims too; async.configure changes them
SELECT async.register_external('ext_limited', concurrency => 5);
SELECT async.configure('ext_limited', concurrency => 1, timeout => '5 minutes');
SELECT handler, concurrency, timeout, max_attempts FROM async.functions WHERE name = 'ext_limited';
SELECT async.invoke('ext_limited', jsonb_build_object('n', n), 'ext-lim-' || n) FROM generate_series(1, 3) n;
SELECT async.pause('ext_limited');
SELECT count(*) AS while_paused FROM async.claim('ext_limited', 5);
SELECT async.resume('ext_limited');
TRUNCATE public.ext_claims;
INSERT INTO public.ext_claims
SELECT job_id, event_id, attempt, deadline, lease FROM async.claim('ext_limited', 5);
SELECT event_id FROM public.ext_claims;
SELECT count(*) AS at_limit FROM async.claim('ext_limited', 5);
SELECT async.complete(job_id, lease) FROM public.ext_claims;
SELECT event_id FROM async.claim('ext_limited', 5);

-- a consumer's database writes and its complete commit or roll back together
CREATE TABLE public.ext_effects (event_id text);
SELECT async.invoke('ext_mail', '{}', 'ext-tx');
BEGIN;
CREATE TEMP TABLE c ON COMMIT DROP AS SELECT * FROM async.claim('ext_mail');
COMMIT;
SELECT state FROM async.jobs WHERE event_id = 'ext-tx';
TRUNCATE public.ext_claims;
INSERT INTO public.ext_claims SELECT j.id, j.event_id, j.attempts, r.deadline, r.lease
  FROM async.jobs j JOIN async.running r ON r.job_id = j.id WHERE j.event_id = 'ext-tx';
BEGIN;
INSERT INTO public.ext_effects SELECT event_id FROM public.ext_claims;
SELECT async.complete(job_id, lease) FROM public.ext_claims;
ROLLBACK;
SELECT (SELECT count(*) FROM public.ext_effects) AS effects, state
  FROM async.jobs WHERE event_id = 'ext-tx';
BEGIN;
INSERT INTO public.ext_effects SELECT event_id FROM public.ext_claims;
SELECT async.complete(job_id, lease) FROM public.ext_claims;
COMMIT;
SELECT (SELECT count(*) FROM public.ext_effects) AS effects, state
  FROM async.jobs WHERE event_id = 'ext-tx';

-- an expired lease is a failed attempt, "lease expired" (57014), found by
-- the worker of slot 0 even with no claim of the function
SELECT async.register_external('ext_slow', timeout => '1 second', retry_delays => '{0}');
SELECT async.invoke('ext_slow', '{}', 'ext-slow-1');
TRUNCATE public.ext_claims;
INSERT INTO public.ext_claims SELECT job_id, event_id, attempt, deadline, lease FROM async.claim('ext_slow');
SELECT public.wait_ext($$SELECT state = 'queued' FROM async.jobs WHERE event_id = 'ext-slow-1'$$);
SELECT event_id, attempt, outcome, error, sqlstate FROM async.attempts WHERE function = 'ext_slow';
-- the consumer that comes back late changes nothing
SELECT async.complete(job_id, lease) FROM public.ext_claims;
SELECT c.event_id, c.attempt, async.complete(c.job_id, c.lease) FROM async.claim('ext_slow') c;

-- an event older than max_event_age when claimed is dead-lettered unrun
SELECT async.register_external('ext_stale', max_event_age => '1 second');
SELECT async.invoke('ext_stale', '{}', 'ext-stale-1');
SELECT pg_sleep(1.2);
SELECT count(*) FROM async.claim('ext_stale');
SELECT event_id, reason, attempts FROM async.dead_letters WHERE function = 'ext_stale';

-- a destination may be external; the record then waits for its consumers
SELECT async.register_external('ext_audit');
SELECT async.register_external('ext_src', on_success => 'ext_audit');
SELECT async.invoke('ext_src', '{"k": 1}', 'ext-src-1');
SELECT async.complete(job_id, lease, '{"ok": 1}') FROM async.claim('ext_src');
SELECT payload->'requestContext'->>'condition' AS condition, payload->'responsePayload' AS response
  FROM async.claim('ext_audit');

-- a consumer waiting in async.claim is woken by the commit of an enqueue:
-- dblink is not at hand, so the wait ends at its time limit here, and the
-- TAP tests measure the wake-up
SELECT count(*) FROM async.claim('ext_audit', 1, '0.2 seconds');

-- unregistering, as for SQL functions: not while a job runs
SELECT async.invoke('ext_mail', '{}', 'ext-last');
SELECT event_id FROM async.claim('ext_mail');
SELECT async.unregister('ext_mail', cancel_jobs => true);
SELECT count(async.complete(r.job_id, r.lease)) AS completed FROM async.running r WHERE r.lease IS NOT NULL;
SELECT name, async.unregister(name, cancel_jobs => true)
  FROM async.functions WHERE handler IS NULL ORDER BY name;
SELECT async.wait_idle('5 seconds');
