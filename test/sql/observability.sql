-- observability: cumulative counters, the history of attempts, health and metrics
SELECT async.stats_reset();
SELECT count(*) FROM async.function_stats;

CREATE FUNCTION public.obs_fail(e jsonb) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'obs failed %', e->>'n' USING ERRCODE = '22023'; END $$;
SELECT async.register('public.note(jsonb)', name => 'obs_ok');
SELECT async.register('public.obs_fail(jsonb)', name => 'obs_fail', max_attempts => 2, retry_delays => '{0}');
INSERT INTO async.jobs (function, event_id, payload)
SELECT 'obs_ok', 'obs-ok-' || n, jsonb_build_object('n', n) FROM generate_series(1, 3) n;
SELECT async.invoke('obs_fail', '{"n": 1}', 'obs-fail-1');
SELECT async.invoke('obs_ok', '{"n": 1}', 'obs-ok-1');
SELECT async.wait_idle();

SELECT function, received, started, succeeded, failed, retried, dead_lettered, duplicates_skipped,
       duration_p50_ms <= duration_p95_ms AND duration_p95_ms <= duration_max_ms + 0.001 AS duration_ordered,
       wait_p50_ms <= wait_p95_ms AND wait_p95_ms <= wait_max_ms + 0.001 AS wait_ordered,
       stats_reset <= now() AS reset_known
  FROM async.function_stats WHERE function LIKE 'obs%' ORDER BY function;

-- one row per attempt
SELECT event_id, attempt, outcome, error, sqlstate, duration >= '0' AS timed, worker_pid > 0 AS has_pid
  FROM async.attempts WHERE function LIKE 'obs%' ORDER BY event_id, attempt;

-- health: one row per check
SELECT "check", status FROM async.health();
SELECT detail, hint FROM async.health() WHERE "check" = 'handlers';

-- metrics in the Prometheus text format
SELECT line FROM regexp_split_to_table(async.metrics(), E'\n') AS line
 WHERE line LIKE '%function="obs_%' AND line NOT LIKE '%seconds%' ORDER BY line;
SELECT count(*) > 0 AS has_help_and_type FROM regexp_split_to_table(async.metrics(), E'\n') AS line
 WHERE line = '# TYPE pg_async_handler_duration_seconds summary';
-- every sample line follows its family's TYPE line
WITH l AS (SELECT line, ordinality AS n FROM regexp_split_to_table(async.metrics(), E'\n') WITH ORDINALITY AS line)
SELECT count(*) AS samples_outside_their_family
  FROM l s
 WHERE s.line LIKE 'pg_async_%'
   AND NOT EXISTS (SELECT FROM l t
                    WHERE t.n < s.n AND t.line LIKE '# TYPE %'
                      AND split_part(s.line, '{', 1) LIKE split_part(t.line, ' ', 3) || '%'
                      AND NOT EXISTS (SELECT FROM l u WHERE u.n > t.n AND u.n < s.n AND u.line LIKE '# TYPE %'));
SELECT async._prometheus_label(E'a"b\\c\nd');

-- DBAs in pg_monitor see all of it; other roles do not
SET ROLE regress_watcher;
SELECT count(*) > 0 FROM async.function_stats;
SELECT count(*) FROM async.health();
SELECT length(async.metrics()) > 0;
SELECT count(*) > 0 FROM async.attempts WHERE function LIKE 'obs%';
RESET ROLE;
SET ROLE regress_bob;
SELECT count(*) FROM async.function_stats;
SELECT async.metrics();
SELECT async.stats_reset();
SELECT count(*) FROM async.attempts WHERE function LIKE 'obs%';
RESET ROLE;

-- a successful attempt is kept on its job (no row in the log), with its run time
SELECT j.duration IS NOT NULL AS has_duration,
       a.started_at = j.finished_at - j.duration AS started_matches,
       (SELECT count(*) FROM async.attempt_log l WHERE l.event_id = j.event_id) AS log_rows
  FROM async.jobs j JOIN async.attempts a ON a.job_id = j.id
 WHERE j.event_id = 'obs-ok-2';
-- retention deletes the job; its attempt moves to the log while the history is kept longer
SELECT (async._purge_finished('0', 1000, '1 day', '-infinity')).purged >= 1 AS purged;
SELECT outcome, attempt, duration >= '0' AS timed FROM async.attempts WHERE event_id = 'obs-ok-2';
SELECT count(*) FROM async.attempt_log WHERE event_id = 'obs-ok-2';
-- and is dropped with the job when the history is no longer than retention
INSERT INTO async.jobs (function, event_id) VALUES ('obs_ok', 'obs-ok-short');
SELECT async.wait_idle();
SELECT (async._purge_finished('0', 1000, '0', '-infinity')).purged >= 1 AS purged;
SELECT count(*) FROM async.attempts WHERE event_id = 'obs-ok-short';

SELECT async.unregister('obs_ok');
SELECT async.unregister('obs_fail');
