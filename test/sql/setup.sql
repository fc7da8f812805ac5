-- setup: install pg_async and wait for its workers.
CREATE EXTENSION pg_async;

SELECT extname, extversion, extnamespace::regnamespace FROM pg_extension WHERE extname = 'pg_async';
SHOW pg_async.database;

-- every object of the extension carries a comment
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS object
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_async')
   AND d.deptype = 'e'
   AND d.classid IN ('pg_class'::regclass, 'pg_proc'::regclass)
   AND obj_description(d.objid, d.classid::regclass::name) IS NULL
   AND NOT EXISTS (SELECT FROM pg_class c WHERE d.classid = 'pg_class'::regclass
                   AND c.oid = d.objid AND c.relkind IN ('S', 'i'));

-- wait (with a deadline) until the launcher has both workers running
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN (SELECT count(*) FROM async.workers) = 2;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) AS workers, bool_and(state = 'idle') AS all_idle FROM async.workers;
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async worker' AND datname = current_database();
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_async launcher';

-- a table the test handlers write their effects to
CREATE TABLE public.effects (
	handler text,
	event jsonb,
	who text,
	session_who text,
	path text,
	at timestamptz DEFAULT clock_timestamp()
);
GRANT ALL ON public.effects TO PUBLIC;
