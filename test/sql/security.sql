-- security: attacks by non-superuser roles on each other, and what stops
-- them (README.md, "Security model").  Items are numbered as in the review
-- that found them; the worker-side ones (6: bad data in a worker's
-- transaction, 7: huge errors, 8: a handler that catches its timeout, 9:
-- the workers' locks) are in test/t/011_worker_hardening.pl.
CREATE ROLE regress_sec_admins;
CREATE ROLE regress_sec_alice IN ROLE regress_sec_admins;
CREATE ROLE regress_sec_bob IN ROLE regress_sec_alice, regress_sec_admins;
CREATE ROLE regress_sec_carol;
CREATE SCHEMA sec_alice AUTHORIZATION regress_sec_alice;
CREATE SCHEMA sec_bob AUTHORIZATION regress_sec_bob;
CREATE SCHEMA sec_carol AUTHORIZATION regress_sec_carol;
CREATE SCHEMA sec_evil AUTHORIZATION regress_sec_bob;
CREATE SCHEMA sec_shared;
GRANT USAGE, CREATE ON SCHEMA sec_shared TO PUBLIC;
-- what only admins may read, and where handlers note who they ran as
CREATE TABLE public.sec_admins_only (secret text);
INSERT INTO public.sec_admins_only VALUES ('admins only');
REVOKE ALL ON public.sec_admins_only FROM PUBLIC;
GRANT SELECT ON public.sec_admins_only TO regress_sec_admins;
CREATE TABLE public.sec_effects (tag text, who text, note text);
GRANT INSERT, SELECT ON public.sec_effects TO PUBLIC;

-- ---------------------------------------------------------------------------
-- 1. run_as is tied to who controls the code: the handler's owner must have
-- the privileges of run_as, checked at register and before every run.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_alice;
CREATE FUNCTION sec_alice.f(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('alice.f', current_user, e->>'n') $$;
SELECT async.register('sec_alice.f(jsonb)', name => 'sec_f', run_as => 'regress_sec_admins',
                      max_attempts => 1);
SELECT async.invoke('sec_f', '{"n": "as member"}', 'sec-f-1');
RESET ROLE;
SELECT async.wait_idle();
SELECT tag, who, note FROM public.sec_effects ORDER BY note;
-- alice leaves admins, then edits her code to read what only admins may
REVOKE regress_sec_admins FROM regress_sec_alice;
SET ROLE regress_sec_alice;
CREATE OR REPLACE FUNCTION sec_alice.f(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects SELECT 'alice.f', current_user, secret FROM public.sec_admins_only $$;
SELECT async.invoke('sec_f', '{"n": "after revoke"}', 'sec-f-2');
RESET ROLE;
SELECT async.wait_idle();
SELECT state, last_error FROM async.jobs WHERE event_id = 'sec-f-2';
SELECT count(*) AS leaked FROM public.sec_effects WHERE note = 'admins only';
-- the health check names the registration too
SELECT status, detail FROM async.health() WHERE "check" = 'handlers';
-- and alice, who registered it, no longer controls it: its jobs run as
-- admins, whose privileges she lost (she cannot point it at other code)
SET ROLE regress_sec_alice;
SELECT async.pause('sec_f');
CREATE FUNCTION sec_alice.g(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('sec_alice.g(jsonb)', name => 'sec_f');
RESET ROLE;
-- bob, a member of alice and of admins, may not give alice's code admins' rights
SET ROLE regress_sec_bob;
SELECT async.register('sec_alice.f(jsonb)', name => 'sec_f_by_bob', run_as => 'regress_sec_admins');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 2. Ownership changed after registration: the superuser's registration
-- does not lend its rights to the new owner.
-- ---------------------------------------------------------------------------
CREATE FUNCTION sec_shared.maint(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('maint', current_user, 'maintenance') $$;
SELECT async.register('sec_shared.maint(jsonb)', name => 'sec_maint', max_attempts => 1);
SELECT run_as FROM async.functions WHERE name = 'sec_maint';
ALTER FUNCTION sec_shared.maint(jsonb) OWNER TO regress_sec_alice;
SET ROLE regress_sec_alice;
CREATE OR REPLACE FUNCTION sec_shared.maint(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('maint', current_user, 'as superuser?') $$;
SELECT async.invoke('sec_maint', '{}', 'sec-maint-1');
RESET ROLE;
SELECT async.wait_idle();
SELECT state, last_error FROM async.jobs WHERE event_id = 'sec-maint-1';
SELECT count(*) AS ran_as_superuser FROM public.sec_effects WHERE note = 'as superuser?';

-- ---------------------------------------------------------------------------
-- 3. A handler dropped and created again by someone else is not the
-- registered one: the registration is bound to the function's OID.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
CREATE FUNCTION sec_shared.sink(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('bob.sink', current_user, e->>'n') $$;
SELECT async.register('sec_shared.sink(jsonb)', name => 'sec_sink', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('sec_sink', 'sec-sink-1', '{"n": "bob data"}', now() + interval '1 hour');
DROP FUNCTION sec_shared.sink(jsonb);
RESET ROLE;
SET ROLE regress_sec_carol;
CREATE FUNCTION sec_shared.sink(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('carol.sink', current_user, e->>'n') $$;
RESET ROLE;
UPDATE async.jobs SET run_at = now() WHERE event_id = 'sec-sink-1';
SELECT async.wait_idle();
SELECT state, last_error FROM async.jobs WHERE event_id = 'sec-sink-1';
SELECT count(*) AS carol_ran FROM public.sec_effects WHERE tag = 'carol.sink';

-- ---------------------------------------------------------------------------
-- 4. Temporary functions are refused.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_carol;
CREATE FUNCTION pg_temp.h(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
\set VERBOSITY terse
SELECT async.register('pg_temp.h(jsonb)', name => 'sec_temp');
\set VERBOSITY default
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 5. Destinations: the record is delivered only if the enqueuer may still
-- enqueue for the destination when the job finishes.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_carol;
CREATE FUNCTION sec_carol.collect(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('carol.collect', current_user, e->'requestPayload'->>'n') $$;
SELECT async.register('sec_carol.collect(jsonb)', name => 'sec_collect');
GRANT EXECUTE ON FUNCTION sec_carol.collect(jsonb) TO regress_sec_bob;
RESET ROLE;
SET ROLE regress_sec_bob;
CREATE FUNCTION sec_bob.work(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_work', on_success => 'sec_collect');
RESET ROLE;
SET ROLE regress_sec_carol;
REVOKE EXECUTE ON FUNCTION sec_carol.collect(jsonb) FROM regress_sec_bob, PUBLIC;
RESET ROLE;
SET ROLE regress_sec_bob;
SELECT async.invoke('sec_work', '{"n": "for carol?"}', 'sec-work-1');
RESET ROLE;
SELECT async.wait_idle();
SELECT state FROM async.jobs WHERE event_id = 'sec-work-1';
SELECT count(*) AS delivered FROM async.jobs WHERE function = 'sec_collect';

-- ---------------------------------------------------------------------------
-- 6, 19. Settings a role controls are bounded, and retry_delays is indexed
-- from 1 (more bounds are tested in faults.sql).
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_bounds', retry_delays => '{300000 years}');
SELECT async.configure('sec_work', retry_delays => '{1 hour, 300000 years}');
SELECT async.configure('sec_work', timeout => '1000 years');
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_bounds', retry_delays => '[0:1]={1 hour,2 hours}');
SELECT retry_delays, array_lower(retry_delays, 1) AS lower FROM async.functions WHERE name = 'sec_bounds';
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 10. PUBLIC may not lock the queue against others: no DELETE, no LOCK but
-- ACCESS SHARE.  A role cancels its waiting jobs and purges its dead
-- letters through functions.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_carol;
BEGIN;
LOCK TABLE async.jobs IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
BEGIN;
LOCK TABLE async.dead_letters IN SHARE MODE;
ROLLBACK;
BEGIN;
LOCK TABLE async.jobs IN ROW EXCLUSIVE MODE;
ROLLBACK;
DELETE FROM async.jobs;
DELETE FROM async.dead_letters;
RESET ROLE;
SET ROLE regress_sec_bob;
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('sec_work', 'sec-cancel-1', '{}', now() + interval '1 hour');
RESET ROLE;
SET ROLE regress_sec_carol;
-- another role's job and a missing one get the same answer
SELECT async.cancel('sec-cancel-1') AS other_role, async.cancel('sec-no-such-event') AS missing;
RESET ROLE;
SET ROLE regress_sec_bob;
SELECT async.cancel('sec-cancel-1') AS own_queued, async.cancel('sec-cancel-1') AS again;
RESET ROLE;
-- cancel locks no finished row: an open transaction holding one would
-- stall the worker that purges it
CREATE EXTENSION pgrowlocks;
SELECT async.wait_idle();
BEGIN;
SET LOCAL ROLE regress_sec_bob;
SELECT async.cancel('sec-work-1') AS finished_job;
RESET ROLE;
SELECT count(*) AS row_locks FROM pgrowlocks('async.jobs');
ROLLBACK;
DROP EXTENSION pgrowlocks;

-- ---------------------------------------------------------------------------
-- 11. No role can forge counters or fill shared memory through
-- async._note_duplicate: it is gone, and async.invoke counts duplicates.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_carol;
SELECT async._note_duplicate('x');
RESET ROLE;
SET ROLE regress_sec_bob;
SELECT async.invoke('sec_work', '{}', 'sec-dup') = async.invoke('sec_work', '{}', 'sec-dup') AS same_id;
RESET ROLE;
SELECT async.wait_idle();
SELECT duplicates_skipped FROM async.function_stats WHERE function = 'sec_work';

-- ---------------------------------------------------------------------------
-- 12. A reservation goes with its job, however the job is deleted; a role
-- cannot cancel its running job.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_limited', concurrency => 1);
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('sec_limited', 'sec-limited-1', '{}', now() + interval '1 hour');
RESET ROLE;
BEGIN;
-- a claim, as a worker makes it
UPDATE async.jobs SET state = 'running', attempts = 1, limited = false, started_at = now()
 WHERE event_id = 'sec-limited-1';
INSERT INTO async.running (job_id, function)
SELECT id, function FROM async.jobs WHERE event_id = 'sec-limited-1';
SET LOCAL ROLE regress_sec_bob;
SAVEPOINT s;
SELECT async.cancel('sec-limited-1');
ROLLBACK TO s;
RESET ROLE;
DELETE FROM async.jobs WHERE event_id = 'sec-limited-1';
SELECT count(*) AS reservations_left FROM async.running;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- 13. A name stays bound to its jobs: no one who registers it next gets
-- the payloads, the attached rows or the destination records of the last
-- owner.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
CREATE FUNCTION sec_bob.keep(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
REVOKE EXECUTE ON FUNCTION sec_bob.keep(jsonb) FROM PUBLIC;
SELECT async.register('sec_bob.keep(jsonb)', name => 'sec_keep');
SELECT async.pause('sec_keep');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('sec_keep', 'sec-keep-1', '{"card": "4111"}');
SELECT async.configure('sec_work', on_failure => 'sec_keep');
CREATE TABLE sec_bob.orders (id int);
SELECT async.attach('sec_bob.orders', 'sec_keep') IS NOT NULL AS attached;
RESET ROLE;
-- a role that may not enqueue for it cannot attach to it (and so hold it)
SET ROLE regress_sec_carol;
CREATE TABLE sec_carol.t (id int);
SELECT async.attach('sec_carol.t', 'sec_keep');
RESET ROLE;
SET ROLE regress_sec_bob;
-- refused while a table is attached, then while a job waits
SELECT async.unregister('sec_keep');
SELECT async.detach('sec_bob.orders', 'sec_keep');
SELECT async.unregister('sec_keep');
-- moved to the dead letters, and the name cleared as a destination
SELECT async.unregister('sec_keep', cancel_jobs => true);
SELECT state FROM async.jobs WHERE event_id = 'sec-keep-1';
SELECT reason FROM async.dead_letters WHERE event_id = 'sec-keep-1';
SELECT on_failure FROM async.functions WHERE name = 'sec_work';
RESET ROLE;
-- carol takes the name: nothing of bob's reaches her
SET ROLE regress_sec_carol;
CREATE FUNCTION sec_carol.squat(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.sec_effects VALUES ('carol.squat', current_user, e::text) $$;
SELECT async.register('sec_carol.squat(jsonb)', name => 'sec_keep');
SELECT async.redrive('sec-keep-1');
RESET ROLE;
-- nor can bob send it to her by redriving, though he may enqueue for her
-- handler: the name was registered again after his event died
SET ROLE regress_sec_bob;
SELECT async.redrive('sec-keep-1');
RESET ROLE;
SELECT async.wait_idle();
SELECT count(*) AS carol_got FROM public.sec_effects WHERE tag = 'carol.squat';
SET ROLE regress_sec_carol;
SELECT async.unregister('sec_keep');
RESET ROLE;
-- a registration deleted under its waiting jobs (only a superuser can):
-- the name is refused to roles whose privileges the jobs' enqueuer lacks
SET ROLE regress_sec_bob;
SELECT async.register('sec_bob.keep(jsonb)', name => 'sec_orphan');
SELECT async.pause('sec_orphan');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('sec_orphan', 'sec-orphan-1', '{}');
RESET ROLE;
DELETE FROM async.functions WHERE name = 'sec_orphan';
SET ROLE regress_sec_carol;
SELECT async.register('sec_carol.squat(jsonb)', name => 'sec_orphan');
RESET ROLE;
DELETE FROM async.jobs WHERE event_id = 'sec-orphan-1';

-- ---------------------------------------------------------------------------
-- 14, 16. Redrive takes the caller's own dead letter by its id: another
-- role's dead letter or job with the same event_id is never touched, and
-- another role's event is answered as a missing one is.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_alice;
CREATE FUNCTION sec_alice.fail(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'fails'; END $$;
SELECT async.register('sec_alice.fail(jsonb)', name => 'sec_fail', max_attempts => 1);
INSERT INTO async.jobs (function, event_id, payload) VALUES ('sec_fail', 'sec-same-id', '{"by": "alice"}');
RESET ROLE;
SELECT async.wait_idle();
-- retention deletes alice's job row; the event_id is free for bob's event
DELETE FROM async.jobs WHERE event_id = 'sec-same-id';
SET ROLE regress_sec_bob;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('sec_fail', 'sec-same-id', '{"by": "bob"}');
RESET ROLE;
SELECT async.wait_idle();
SELECT payload, enqueued_by FROM async.dead_letters WHERE event_id = 'sec-same-id' ORDER BY id;
SET ROLE regress_sec_alice;
SELECT async.redrive('sec-same-id');
RESET ROLE;
SELECT payload, enqueued_by FROM async.dead_letters WHERE event_id = 'sec-same-id' ORDER BY id;
SELECT state, payload, enqueued_by FROM async.jobs WHERE event_id = 'sec-same-id';
SET ROLE regress_sec_carol;
SELECT async.redrive('sec-same-id') AS other_role, async.redrive('sec-no-such-event') AS missing;
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 15. async.stats is a security barrier: a leaky function sees no names
-- from other roles' jobs.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
SELECT async.register('sec_bob.keep(jsonb)', name => 'sec_hidden_name');
SELECT async.pause('sec_hidden_name');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('sec_hidden_name', 'sec-hidden-1', '{}');
RESET ROLE;
DELETE FROM async.functions WHERE name = 'sec_hidden_name';
SET ROLE regress_sec_carol;
-- cheap and immutable, so that the planner would push it down and run it
-- before the view's own filter
CREATE FUNCTION sec_carol.leak(t text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE COST 0.0000001
AS $$ BEGIN IF t LIKE 'sec\_hidden%' THEN RAISE NOTICE 'leaked: %', t; END IF; RETURN true; END $$;
SELECT count(*) >= 0 AS queried FROM async.stats WHERE sec_carol.leak(function);
RESET ROLE;
DELETE FROM async.jobs WHERE event_id = 'sec-hidden-1';

-- ---------------------------------------------------------------------------
-- 17. async.attach's condition is one expression, nothing more.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
CREATE FUNCTION sec_bob.evil() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN INSERT INTO public.sec_effects VALUES ('evil', current_user, 'trigger'); RETURN NULL; END $$;
SELECT async.attach('sec_bob.orders', 'sec_work', condition => 'true) EXECUTE FUNCTION sec_bob.evil(); --');
SELECT async.attach('sec_bob.orders', 'sec_work', condition => 'true); DROP TABLE sec_bob.orders; SELECT (1');
SELECT async.attach('sec_bob.orders', 'sec_work', condition => 'true) FROM pg_class WHERE (true');
SELECT async.attach('sec_bob.orders', 'sec_work', condition => '1), (2');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'sec_bob.orders'::regclass;
SELECT async.attach('sec_bob.orders', 'sec_work', '{insert}',
                    condition => 'NEW.id > 0 AND (NEW.id % 2) = 0') IS NOT NULL AS attached;
SELECT condition FROM async.sources WHERE source = 'sec_bob.orders'::regclass;
SELECT async.detach('sec_bob.orders', 'sec_work');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- 18. The functions that run as their caller use pg_catalog's operators,
-- whatever the caller's search_path puts first.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
CREATE FUNCTION sec_evil.trap(a text, b text) RETURNS boolean LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'shadowed operator called'; END $$;
CREATE FUNCTION sec_evil.trap_cat(a text, b text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'shadowed operator called'; END $$;
CREATE OPERATOR sec_evil.= (leftarg = text, rightarg = text, function = sec_evil.trap);
CREATE OPERATOR sec_evil.<> (leftarg = text, rightarg = text, function = sec_evil.trap);
CREATE OPERATOR sec_evil.|| (leftarg = text, rightarg = text, function = sec_evil.trap_cat);
SET search_path = sec_evil, pg_catalog, public;
SELECT async.configure('sec_work', on_success => '', max_attempts => 2) AS configured;
SELECT async.attach('sec_bob.orders', 'sec_work', '{insert}') IS NOT NULL AS attached;
INSERT INTO sec_bob.orders VALUES (1);
SELECT async.detach('sec_bob.orders', 'sec_work') AS detached;
SELECT async.invoke('sec_work', '{}', 'sec-shadow-1') AS invoked;
SELECT cardinality(async.invoke_many('sec_work', ARRAY['{}'::jsonb, '{}'])) AS invoked_many;
SELECT async.cancel('sec-no-such-event') AS cancelled;
SELECT async.redrive_many(function => 'sec_work') AS redriven;
SELECT async.purge_dead_letters(function => 'sec_work') AS purged;
RESET search_path;
RESET ROLE;
SELECT async.wait_idle();

-- ---------------------------------------------------------------------------
-- 20. Destination cycles are refused.
-- ---------------------------------------------------------------------------
SET ROLE regress_sec_bob;
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_a');
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_b', on_success => 'sec_a');
SELECT async.register('sec_bob.work(jsonb)', name => 'sec_c', on_failure => 'sec_b');
SELECT async.configure('sec_a', on_success => 'sec_b');
SELECT async.configure('sec_a', on_failure => 'sec_c');
SELECT async.configure('sec_a', on_success => 'sec_work');
RESET ROLE;

-- clean up
DROP FUNCTION pg_temp.h(jsonb);
DELETE FROM async.jobs WHERE function LIKE 'sec\_%';
DELETE FROM async.dead_letters WHERE function LIKE 'sec\_%';
DELETE FROM async.functions WHERE name LIKE 'sec\_%';
DROP SCHEMA sec_alice, sec_bob, sec_carol, sec_shared, sec_evil CASCADE;
DROP TABLE public.sec_admins_only, public.sec_effects;
DROP ROLE regress_sec_admins, regress_sec_alice, regress_sec_bob, regress_sec_carol;
