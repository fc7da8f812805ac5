-- test/schema_facts.sql: the view public.schema_facts, one row (fact) per
-- thing pg_async's installation consists of: its members, and in schema
-- async the functions (definitions, privileges, comments), relations,
-- columns (type, position, default, privileges, comment), indexes, views,
-- constraints, triggers, policies, sequences, types, the dump
-- configuration and the schema's privileges.  Two installations are the
-- same if their facts are.  Read by test/sql/upgrade.sql and
-- test/t/018_upgrade_paths.pl.
CREATE VIEW public.schema_facts AS
WITH ext AS (SELECT e.oid, e.extnamespace AS nsp, e.extconfig, e.extcondition
               FROM pg_extension e WHERE e.extname = 'pg_async')
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid) AS fact
  FROM pg_depend d, ext
 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
UNION ALL
SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, '-')
       || ' comment ' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
  FROM pg_namespace n, ext WHERE n.oid = ext.nsp
UNION ALL
SELECT 'config ' || ext.extconfig[i]::regclass || ' where ' || ext.extcondition[i]
  FROM ext, generate_subscripts(ext.extconfig, 1) i
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' acl ' || coalesce(p.proacl::text, '-')
       || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
       || E'\n' || pg_get_functiondef(p.oid)
  FROM pg_proc p, ext WHERE p.pronamespace = ext.nsp
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' kind ' || c.relkind::text
       || ' acl ' || coalesce(c.relacl::text, '-')
       || ' rls ' || c.relrowsecurity || ' force ' || c.relforcerowsecurity
       || ' options ' || coalesce(c.reloptions::text, '-')
       || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
       || CASE c.relkind WHEN 'v' THEN E'\n' || pg_get_viewdef(c.oid)
                         WHEN 'i' THEN E'\n' || pg_get_indexdef(c.oid)
                         ELSE '' END
  FROM pg_class c, ext WHERE c.relnamespace = ext.nsp
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname
       || ' position ' || rank() OVER (PARTITION BY a.attrelid ORDER BY a.attnum)
       || ' type ' || format_type(a.atttypid, a.atttypmod)
       || ' not null ' || a.attnotnull || ' identity ' || a.attidentity::text
       || ' generated ' || a.attgenerated::text
       || ' collation ' || coalesce((SELECT l.collname FROM pg_collation l WHERE l.oid = a.attcollation), '-')
       || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
       || ' acl ' || coalesce(a.attacl::text, '-')
       || ' comment ' || coalesce(col_description(a.attrelid, a.attnum), '-')
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum, ext
 WHERE c.relnamespace = ext.nsp AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || coalesce(r.conrelid::regclass::text, r.contypid::regtype::text)
       || ' ' || r.conname || ' ' || pg_get_constraintdef(r.oid)
       || ' comment ' || coalesce(obj_description(r.oid, 'pg_constraint'), '-')
  FROM pg_constraint r, ext
 -- NOT NULL is compared as a column's, not by the name PostgreSQL 18 gives
 -- its constraint: a table renamed since (async.attempts, 0.1) keeps names
 -- made from its old name
 WHERE r.connamespace = ext.nsp AND r.contype <> 'n'
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
       || ' comment ' || coalesce(obj_description(t.oid, 'pg_trigger'), '-')
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid, ext
 WHERE c.relnamespace = ext.nsp AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || y.polrelid::regclass || ' ' || y.polname || ' command ' || y.polcmd::text
       || ' permissive ' || y.polpermissive
       || ' roles ' || (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1)
                          FROM unnest(y.polroles) r)
       || ' using ' || coalesce(pg_get_expr(y.polqual, y.polrelid), '-')
       || ' check ' || coalesce(pg_get_expr(y.polwithcheck, y.polrelid), '-')
  FROM pg_policy y JOIN pg_class c ON c.oid = y.polrelid, ext
 WHERE c.relnamespace = ext.nsp
UNION ALL
SELECT 'sequence ' || q.seqrelid::regclass || ' ' || q.seqtypid::regtype || ' start ' || q.seqstart
       || ' increment ' || q.seqincrement || ' min ' || q.seqmin || ' max ' || q.seqmax
       || ' cache ' || q.seqcache || ' cycle ' || q.seqcycle
  FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid, ext
 WHERE c.relnamespace = ext.nsp
UNION ALL
SELECT 'type ' || t.oid::regtype || ' kind ' || t.typtype::text
       || ' acl ' || coalesce(t.typacl::text, '-')
       || ' comment ' || coalesce(obj_description(t.oid, 'pg_type'), '-')
  FROM pg_type t, ext WHERE t.typnamespace = ext.nsp;
