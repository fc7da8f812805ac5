-- privileges: registrations, enqueueing, visibility and redrive across roles
CREATE ROLE regress_alice;
CREATE ROLE regress_bob;
CREATE ROLE regress_watcher IN ROLE pg_monitor;
CREATE SCHEMA regress_alice AUTHORIZATION regress_alice;
CREATE SCHEMA regress_bob AUTHORIZATION regress_bob;
GRANT USAGE ON SCHEMA regress_alice TO regress_bob;

SET ROLE regress_alice;
CREATE FUNCTION regress_alice.handle(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.effects (handler, event, who, session_who, path)
      VALUES ('alice', e, current_user, session_user, current_setting('search_path')) $$;
REVOKE EXECUTE ON FUNCTION regress_alice.handle(jsonb) FROM PUBLIC;
SELECT async.register('regress_alice.handle(jsonb)', name => 'alice_fn');
SELECT run_as, registered_by FROM async.functions WHERE name = 'alice_fn';
-- a non-superuser may not pick another role to run as
SELECT async.register('regress_alice.handle(jsonb)', name => 'alice_as_super', run_as => 'postgres');
CREATE FUNCTION regress_alice.fail(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'alice fails'; END $$;
SELECT async.register('regress_alice.fail(jsonb)', name => 'alice_fail', max_attempts => 1);
SELECT async.invoke('alice_fn', '{"by": "alice"}', 'alice-1');
SELECT async.invoke('alice_fail', '{}', 'alice-dead');
RESET ROLE;
SELECT async.wait_idle();

SET ROLE regress_bob;
-- bob may not register alice's function, nor take over or remove her name
SELECT async.register('regress_alice.handle(jsonb)', name => 'bob_fn');
CREATE FUNCTION regress_bob.handle(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('regress_bob.handle(jsonb)', name => 'alice_fn');
SELECT async.register('regress_bob.handle(jsonb)', name => 'bob_as_alice', run_as => 'regress_alice');
SELECT async.unregister('alice_fn');
-- nor functions of pg_catalog, nor anything unregistered
SELECT async.register('pg_catalog.jsonb_pretty(jsonb)');
INSERT INTO async.jobs (function, payload) VALUES ('pg_read_file', '{}');
-- without EXECUTE on alice's handler bob may not enqueue for it
INSERT INTO async.jobs (function, payload) VALUES ('alice_fn', '{"by": "bob"}');
-- bob sees none of alice's jobs or dead letters, and changes none
SELECT count(*) FROM async.jobs;
SELECT count(*) FROM async.dead_letters;
DELETE FROM async.jobs WHERE event_id = 'alice-1';
UPDATE async.jobs SET state = 'queued' WHERE event_id = 'alice-1';
SELECT async.redrive('alice-dead');
-- nor may he forge the columns the workers own
INSERT INTO async.jobs (function, payload, state) VALUES ('alice_fn', '{}', 'succeeded');
INSERT INTO async.jobs (function, payload, enqueued_by) VALUES ('alice_fn', '{}', 'regress_alice');
-- the registrations themselves are readable, not writable
SELECT count(*) > 0 FROM async.functions;
UPDATE async.functions SET run_as = 'postgres' WHERE name = 'alice_fn';
DELETE FROM async.functions;
-- nor may he call the internal functions
SELECT async._fail(1, 'x', 'XX000', now());
SELECT async._redrive(1);
SELECT async._upsert_registration('x', 'public.note(pg_catalog.jsonb)', 'postgres', 1, '{}', '1 minute', 'postgres', '1 hour', NULL, NULL, NULL, 0::smallint, NULL, NULL, '1 second', NULL, NULL);
RESET ROLE;

-- with EXECUTE granted bob may enqueue; the handler still runs as alice
GRANT EXECUTE ON FUNCTION regress_alice.handle(jsonb) TO regress_bob;
SET ROLE regress_bob;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('alice_fn', 'bob-1', '{"by": "bob"}');
SELECT event_id, enqueued_by FROM async.jobs ORDER BY event_id;
RESET ROLE;
SELECT async.wait_idle();
SELECT event, who, session_who, path FROM public.effects WHERE handler = 'alice' ORDER BY event->>'by';

SET ROLE regress_bob;
SELECT event_id, state, enqueued_by FROM async.jobs ORDER BY event_id;
RESET ROLE;
SET ROLE regress_alice;
SELECT event_id, state, enqueued_by FROM async.jobs ORDER BY event_id;
SELECT event_id FROM async.dead_letters;
RESET ROLE;

-- pg_monitor members see every job and change none
SET ROLE regress_watcher;
SELECT count(*) >= 3 AS sees_all FROM async.jobs WHERE enqueued_by IN ('regress_alice'::regrole, 'regress_bob'::regrole);
DELETE FROM async.jobs WHERE event_id = 'bob-1';
SELECT count(*) FROM async.workers;
SELECT count(*) FROM async.all_workers;
RESET ROLE;
SELECT count(*) AS still_there FROM async.jobs WHERE event_id IN ('bob-1', 'alice-1');
SET ROLE regress_bob;
SELECT count(*) FROM async.workers;
SELECT count(*) FROM async.all_workers;
SELECT count(*) FROM async._all_workers();
RESET ROLE;

-- alice may redrive her own dead letter
SET ROLE regress_alice;
SELECT async.redrive('alice-dead');
RESET ROLE;
SELECT async.wait_idle();
SELECT state, attempts FROM async.jobs WHERE event_id = 'alice-dead';

-- a superuser registering someone else's function runs it as that owner
SELECT async.register('regress_bob.handle(jsonb)', name => 'bob_by_super');
SELECT run_as, registered_by FROM async.functions WHERE name = 'bob_by_super';
SELECT async.unregister('bob_by_super');

SET ROLE regress_alice;
SELECT async.unregister('alice_fn');
SELECT async.unregister('alice_fail');
RESET ROLE;
