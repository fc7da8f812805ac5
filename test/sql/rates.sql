-- rates: a function's rate_limit jobs at most start in any window of its
-- rate_period, across workers and consumers; the jobs held back spend no
-- attempt and do not hold up other functions' jobs.
CREATE TABLE public.rate_runs (function text, n integer, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.rate_note(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.rate_runs (function, n) VALUES ('rate_note', (e->>'n')::integer) $$;
CREATE FUNCTION public.rate_free(e jsonb) RETURNS void LANGUAGE sql AS $$
	INSERT INTO public.rate_runs (function, n) VALUES ('rate_free', (e->>'n')::integer) $$;

-- bad input changes nothing
SELECT async.register('public.rate_note(jsonb)', rate_limit => 0);
SELECT async.register('public.rate_note(jsonb)', rate_limit => -1);
SELECT async.register('public.rate_note(jsonb)', rate_limit => 10001);
SELECT async.register('public.rate_note(jsonb)', rate_limit => 5, rate_period => NULL);
SELECT async.register('public.rate_note(jsonb)', rate_limit => 5, rate_period => '5 milliseconds');
SELECT async.register('public.rate_note(jsonb)', rate_limit => 5, rate_period => '2 days');
SELECT async.register('public.rate_note(jsonb)', rate_limit => 5, rate_period => '-1 second');
SELECT count(*) FROM async.functions WHERE name = 'rate_note';

-- three starts an hour: the first three of five jobs run, the others wait,
-- marked limited, without spending an attempt
SELECT async.register('public.rate_note(jsonb)', rate_limit => 3, rate_period => '1 hour');
SELECT async.register('public.rate_free(jsonb)');
SELECT rate_limit, rate_period FROM async.functions WHERE name = 'rate_note';
SELECT count(async.invoke('rate_note', jsonb_build_object('n', n), 'rate-' || n)) FROM generate_series(1, 5) n;
SELECT async.wait_idle();
SELECT count(*) AS ran FROM public.rate_runs WHERE function = 'rate_note';
SELECT state, limited, attempts, count(*) FROM async.jobs WHERE function = 'rate_note'
 GROUP BY 1, 2, 3 ORDER BY 1;
-- (one claim or several, as the two workers' wake-ups fall)
SELECT cardinality(starts) BETWEEN 1 AND 3 AS claims, (SELECT sum(c) FROM unnest(counts) c) AS started
  FROM async.rate_windows WHERE function = 'rate_note';
SELECT ready, held, held_reason FROM async.stats WHERE function = 'rate_note';

-- meanwhile another function's jobs run at once
SELECT count(async.invoke('rate_free', jsonb_build_object('n', n))) FROM generate_series(1, 20) n;
SELECT async.wait_idle();
SELECT count(*) AS free_ran FROM public.rate_runs WHERE function = 'rate_free';

-- a larger limit gives room at once: two more run
SELECT async.configure('rate_note', rate_limit => 5);
SELECT async.wait_idle();
SELECT count(*) AS ran FROM public.rate_runs WHERE function = 'rate_note';
SELECT ready, held, held_reason FROM async.stats WHERE function = 'rate_note';

-- configure: -1 removes the limit and forgets the window, below -1 fails
SELECT async.configure('rate_note', rate_limit => -2);
SELECT count(async.invoke('rate_note', jsonb_build_object('n', n))) FROM generate_series(6, 7) n;
SELECT async.configure('rate_note', rate_limit => -1);
SELECT async.wait_idle();
SELECT count(*) AS ran FROM public.rate_runs WHERE function = 'rate_note';
SELECT rate_limit, count(j.id) AS limited_jobs FROM async.functions f
  LEFT JOIN async.jobs j ON j.function = f.name AND j.limited
 WHERE f.name = 'rate_note' GROUP BY 1;
SELECT count(*) AS windows FROM async.rate_windows;

-- a limit set while jobs wait marks them limited; unregistering forgets it
SELECT async.pause('rate_note');
SELECT count(async.invoke('rate_note', jsonb_build_object('n', n))) FROM generate_series(8, 9) n;
SELECT async.configure('rate_note', rate_limit => 1, rate_period => '1 day');
SELECT limited, count(*) FROM async.jobs WHERE function = 'rate_note' AND state = 'queued' GROUP BY 1;
SELECT async.resume('rate_note');
SELECT async.wait_idle();
SELECT count(*) AS ran FROM public.rate_runs WHERE function = 'rate_note';
SELECT async.unregister('rate_note', cancel_jobs => true);
SELECT count(*) AS windows FROM async.rate_windows;

-- the window is internal: no role but the extension's reads or writes it
CREATE ROLE regress_rate_mallory;
SET ROLE regress_rate_mallory;
SELECT * FROM async.rate_windows;
INSERT INTO async.rate_windows VALUES ('rate_free', '{}', '{}');
SELECT async._rate_note(ARRAY['rate_free'], ARRAY[10000], now());
RESET ROLE;
DROP ROLE regress_rate_mallory;
SELECT async.unregister('rate_free');
DROP TABLE public.rate_runs;
DROP FUNCTION public.rate_note(jsonb), public.rate_free(jsonb);
