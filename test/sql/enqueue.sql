-- enqueue: plain INSERTs, async.invoke, idempotency and refusals
INSERT INTO async.jobs (function, payload) VALUES ('note', '{"n": 1}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', 'enq-2', '{"n": 2}');
SELECT async.wait_idle();
SELECT event, who FROM public.effects WHERE handler = 'note' ORDER BY event->>'n';
SELECT event_id = 'enq-2' AS given, state, attempts, last_error IS NULL AS no_error,
       finished_at IS NOT NULL AS finished, enqueued_by
  FROM async.jobs WHERE function = 'note' ORDER BY id;
-- a generated event_id is a UUID
SELECT count(*) FROM async.jobs WHERE function = 'note' AND event_id ~ '^[0-9a-f-]{36}$';

-- a duplicate event_id: unique_violation, or skipped with ON CONFLICT
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', 'enq-2', '{"n": 22}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', 'enq-2', '{"n": 22}')
ON CONFLICT (event_id) DO NOTHING;
SELECT async.invoke('note', '{"n": 3}', 'enq-3');
SELECT async.invoke('note', '{"n": 33}', 'enq-3');
SELECT async.invoke('note', '{"n": 2}', 'enq-2');
SELECT length(async.invoke('note', '{"n": 4}'));
SELECT async.wait_idle();
SELECT event->>'n' AS n, count(*) FROM public.effects WHERE handler = 'note' GROUP BY 1 ORDER BY 1;

-- a rolled-back INSERT never runs
BEGIN;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', 'enq-rolled-back', '{"n": 5}');
ROLLBACK;
SELECT async.wait_idle();
SELECT count(*) FROM public.effects WHERE event->>'n' = '5';
SELECT count(*) FROM async.jobs WHERE event_id = 'enq-rolled-back';

-- a job runs only after its transaction commits
BEGIN;
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', 'enq-later', '{"n": 6}');
SELECT pg_sleep(0.3);
SELECT count(*) FROM public.effects WHERE event->>'n' = '6';
COMMIT;
SELECT async.wait_idle();
SELECT count(*) FROM public.effects WHERE event->>'n' = '6';

-- run_at in the future: scheduled, not ready
INSERT INTO async.jobs (function, event_id, payload, run_at)
VALUES ('note', 'enq-future', '{"n": 7}', now() + interval '1 hour');
SELECT async.wait_idle();
SELECT state, attempts FROM async.jobs WHERE event_id = 'enq-future';
DELETE FROM async.jobs WHERE event_id = 'enq-future';

-- refusals: nothing is enqueued
INSERT INTO async.jobs (function, payload) VALUES ('no_such_function', '{}');
INSERT INTO async.jobs (function, payload) VALUES (NULL, '{}');
INSERT INTO async.jobs (function, payload) VALUES ('note', NULL);
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', '', '{}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', NULL, '{}');
INSERT INTO async.jobs (function, event_id, payload) VALUES ('note', repeat('x', 256), '{}');
INSERT INTO async.jobs (function, payload, run_at) VALUES ('note', '{}', NULL);
INSERT INTO async.jobs (function, payload) VALUES ('note', 'not json');
SET pg_async.max_payload_size = '1kB';
INSERT INTO async.jobs (function, payload)
VALUES ('note', jsonb_build_object('blob', repeat('x', 2000)));
RESET pg_async.max_payload_size;
SELECT async.invoke('no_such_function', '{}');
SELECT count(*) FROM async.jobs WHERE function <> 'note' OR event_id = '';
