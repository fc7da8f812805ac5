/*
 * pg_async_router: the enqueue side of pg_async's API, in a router database,
 * routed through PL/Proxy to shards that each run pg_async.
 *
 * The shards are the partitions of one PL/Proxy cluster, defined the SQL/MED
 * way (CREATE SERVER ... FOREIGN DATA WRAPPER plproxy OPTIONS (p0 '...', ...))
 * and named by the setting pg_async_router.cluster (default pg_async).  An
 * event goes to the shard hashtext(event_id) & (shards - 1), PL/Proxy's own
 * mapping, so the same event_id always lands on the same shard, where its
 * UNIQUE event_id makes it run once.
 *
 * Every call runs on the shards as the calling role, through its user
 * mapping: a role gets there exactly the rights it has there.  Each remote
 * call commits on its shard by itself, whatever the router's transaction
 * does afterwards.
 *
 * The functions named _..._on are PL/Proxy functions; each runs one fixed
 * query on one shard (RUN ON a shard number) or on the shard of an event_id.
 * The plpgsql functions around them name the shard that failed.
 *
 * The queries call pg_async's functions with the arguments of pg_async 0.11
 * (priorities, rate limits and limits by key): every shard needs pg_async
 * 0.11 or later, which async.check_cluster() checks.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_async_router" to load this file. \quit

DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_async') THEN
		RAISE EXCEPTION USING
			ERRCODE = 'object_in_use',
			MESSAGE = 'pg_async_router cannot be created in a database that has pg_async',
			HINT = 'Create it in a database of its own, the router''s: its functions have the names of pg_async''s.';
	END IF;
END
$$;

-- the schema the control file names, created by CREATE EXTENSION
GRANT USAGE ON SCHEMA async TO PUBLIC;

/*
 * The cluster and its shards.
 */

CREATE FUNCTION async.cluster_name() RETURNS text
	LANGUAGE sql STABLE
	AS $$
	SELECT COALESCE(NULLIF(pg_catalog.current_setting('pg_async_router.cluster', true), ''), 'pg_async')
$$;

COMMENT ON FUNCTION async.cluster_name() IS 'the PL/Proxy cluster whose partitions are the shards: the setting pg_async_router.cluster, default pg_async';

CREATE FUNCTION async.shards(OUT shard integer, OUT conninfo text) RETURNS SETOF record
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_cluster text := async.cluster_name();
BEGIN
	IF NOT EXISTS (SELECT 1
					 FROM pg_foreign_server s
					 JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
					WHERE s.srvname = v_cluster AND w.fdwname = 'plproxy') THEN
		RAISE EXCEPTION USING
			ERRCODE = 'undefined_object',
			MESSAGE = format('pg_async_router cluster "%s" does not exist', v_cluster),
			DETAIL = 'The shards are the partitions of a PL/Proxy cluster defined with CREATE SERVER.',
			HINT = format('Create it: CREATE SERVER %I FOREIGN DATA WRAPPER plproxy OPTIONS (p0 ''host=... dbname=...'', p1 ...), or name another in pg_async_router.cluster.', v_cluster);
	END IF;
	RETURN QUERY
		SELECT substring(o.option_name FROM '[0-9]+$')::integer, o.option_value
		  FROM pg_foreign_server s, pg_options_to_table(s.srvoptions) o
		 WHERE s.srvname = v_cluster AND o.option_name ~ '^(p|partition_)[0-9]+$'
		 ORDER BY 1;
END
$$;

COMMENT ON FUNCTION async.shards() IS 'the shards: the partitions of the PL/Proxy cluster async.cluster_name(), by number, with their connection strings; an error names a cluster that does not exist';

CREATE FUNCTION async.shard_of(event_id text) RETURNS integer
	LANGUAGE sql STABLE STRICT
	AS $$
	SELECT pg_catalog.hashtext(event_id) & (count(*)::integer - 1) FROM async.shards()
$$;

COMMENT ON FUNCTION async.shard_of(event_id text) IS 'the shard an event_id goes to: hashtext(event_id) & (shards - 1), as PL/Proxy maps it';

CREATE FUNCTION async.new_event_id() RETURNS text
	LANGUAGE sql VOLATILE
	AS $$
	/* a random (version 4) UUID made version 7: its first 48 bits the Unix time in ms */
	SELECT pg_catalog.encode(
			pg_catalog.set_bit(pg_catalog.set_bit(
				overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid())
						PLACING substring(pg_catalog.int8send(
							(extract(epoch FROM pg_catalog.clock_timestamp()) * 1000)::bigint) FROM 3)
						FROM 1 FOR 6),
				52, 1), 53, 1),
			'hex')::uuid::text
$$;

COMMENT ON FUNCTION async.new_event_id() IS 'a new time-ordered UUID (RFC 9562 version 7) as text, made on the router for an event given none, so that a caller can retry with it';

/*
 * _shard_error re-raises an error that a call to a shard raised, naming the
 * shard.  PL/Proxy raises its own errors, connection failures among them,
 * as internal_error; those become connection_failure, the shard did not
 * answer.  A shard without pg_async lacks the schema, or the views called;
 * one with a pg_async older than 0.11 has the schema but lacks the
 * functions called with the arguments given (pg_async's own
 * undefined_function, a function not registered, names no object of
 * schema async).  Any other
 * error is the shard's own and keeps its SQLSTATE (a role refused on the
 * shard is refused through the router with insufficient_privilege).
 */
CREATE FUNCTION async._shard_error(p_shard integer, p_sqlstate text, p_message text, p_detail text, p_hint text)
	RETURNS void
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_cluster text := async.cluster_name();
BEGIN
	IF p_sqlstate = 'XX000' AND p_message LIKE 'PL/Proxy function %' THEN
		RAISE EXCEPTION USING
			ERRCODE = 'connection_failure',
			MESSAGE = format('shard %s of cluster "%s" did not answer', p_shard, v_cluster),
			DETAIL = p_message,
			HINT = 'Events of the other shards are accepted.  Retry with the same event_id once the shard is back: an event_id runs once.';
	ELSIF p_sqlstate = '3F000' OR
		  (p_sqlstate = '42P01' AND p_message ~ 'REMOTE ERROR: relation "?async[.]') THEN
		RAISE EXCEPTION USING
			ERRCODE = 'undefined_function',
			MESSAGE = format('shard %s of cluster "%s" does not have pg_async', p_shard, v_cluster),
			DETAIL = p_message,
			HINT = 'CREATE EXTENSION pg_async on every shard; async.check_cluster() lists what each shard has.';
	ELSIF p_sqlstate = '42883' AND p_message ~ 'REMOTE ERROR: function "?async[.]' THEN
		RAISE EXCEPTION USING
			ERRCODE = 'undefined_function',
			MESSAGE = format('shard %s of cluster "%s" does not have pg_async 0.11 or later', p_shard, v_cluster),
			DETAIL = p_message,
			HINT = 'pg_async_router calls the functions of pg_async 0.11: ALTER EXTENSION pg_async UPDATE on the shard; async.check_cluster() lists what each shard has.';
	END IF;

	/* the shard's own error, without PL/Proxy's "function(nargs): [dbname] REMOTE ERROR: " */
	p_message := regexp_replace(p_message, '^[^ ]+\([0-9]+\): \[[^]]*\] REMOTE ERROR: ', '');
	p_detail := concat_ws(E'\n', format('On shard %s of cluster "%s".', p_shard, v_cluster),
						  regexp_replace(p_detail, '^Remote detail: ', ''));
	IF p_hint IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, DETAIL = p_detail;
	END IF;
	RAISE EXCEPTION USING ERRCODE = p_sqlstate, MESSAGE = p_message, DETAIL = p_detail,
		HINT = regexp_replace(p_hint, '^Remote hint: ', '');
END
$$;

COMMENT ON FUNCTION async._shard_error(integer, text, text, text, text) IS 'internal: raises an error of a shard again, naming the shard';

/*
 * Enqueueing and redriving, on the shard of each event_id.
 */

CREATE FUNCTION async._invoke_on(p_function text, p_payload jsonb, p_event_id text, p_run_at timestamp with time zone,
								 p_priority integer)
	RETURNS text
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON pg_catalog.hashtext(p_event_id);
	SELECT async.invoke(p_function, p_payload, p_event_id, p_run_at, p_priority);
$$;

COMMENT ON FUNCTION async._invoke_on(text, jsonb, text, timestamp with time zone, integer) IS 'internal: async.invoke on the shard of the event_id, with a priority (NULL: the function''s there) (PL/Proxy)';

CREATE FUNCTION async.invoke(function text, payload jsonb, event_id text DEFAULT NULL,
							 run_at timestamp with time zone DEFAULT clock_timestamp(),
							 priority integer DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_event_id text := COALESCE(invoke.event_id, async.new_event_id());
	v_state text;
	v_message text;
	v_detail text;
	v_hint text;
BEGIN
	RETURN async._invoke_on(invoke.function, invoke.payload, v_event_id, invoke.run_at, invoke.priority);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
	PERFORM async._shard_error(async.shard_of(v_event_id), v_state, v_message, v_detail, v_hint);
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION async.invoke(function text, payload jsonb, event_id text, run_at timestamp with time zone, priority integer) IS 'enqueues one event on the shard of its event_id (one made on the router when NULL) and returns the event_id; with an event_id already taken it enqueues nothing and returns that id.  priority (-32768 to 32767, lower runs first, among the jobs of its shard) defaults to the function''s on the shard.  Commits on the shard at once';

CREATE FUNCTION async._invoke_many_on(p_shard integer, p_function text, p_payloads jsonb[], p_event_ids text[],
									  p_priority integer)
	RETURNS SETOF text
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT async.invoke(p_function, u.payload, u.event_id, priority => p_priority)
	  FROM ROWS FROM (pg_catalog.unnest(p_payloads), pg_catalog.unnest(p_event_ids)) AS u(payload, event_id);
$$;

COMMENT ON FUNCTION async._invoke_many_on(integer, text, jsonb[], text[], integer) IS 'internal: async.invoke of each payload with its event_id and the priority (NULL: the function''s there), in one statement on one shard (PL/Proxy)';

CREATE FUNCTION async._invoke_split(p_function text, p_payloads jsonb[], p_event_ids text[], p_priority integer)
	RETURNS SETOF text
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	SPLIT p_payloads, p_event_ids;
	RUN ON pg_catalog.hashtext(p_event_ids);
	SELECT async.invoke(p_function, u.payload, u.event_id, priority => p_priority)
	  FROM ROWS FROM (pg_catalog.unnest(p_payloads), pg_catalog.unnest(p_event_ids)) AS u(payload, event_id);
$$;

COMMENT ON FUNCTION async._invoke_split(text, jsonb[], text[], integer) IS 'internal: async.invoke of each payload with its event_id and the priority (NULL: the function''s there), each shard''s in one statement there, all shards at once (PL/Proxy SPLIT)';

CREATE FUNCTION async.invoke_many(function text, payloads jsonb[], event_ids text[] DEFAULT NULL,
								  priority integer DEFAULT NULL)
	RETURNS text[]
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_ids text[];
	v_part record;
	v_mask integer;
	v_failed integer[] := '{}';
	v_lost integer := 0;
	v_state text;
	v_message text;
	v_detail text;
	v_hint text;
	v_first record;
BEGIN
	IF payloads IS NULL OR pg_catalog.cardinality(payloads) = 0 THEN
		RETURN '{}';
	END IF;
	IF event_ids IS NULL THEN
		v_ids := ARRAY(SELECT async.new_event_id() FROM pg_catalog.generate_subscripts(payloads, 1));
	ELSIF pg_catalog.cardinality(event_ids) <> pg_catalog.cardinality(payloads) THEN
		RAISE EXCEPTION USING
			ERRCODE = 'invalid_parameter_value',
			MESSAGE = format('invoke_many was given %s event_ids for %s payloads',
							 pg_catalog.cardinality(event_ids), pg_catalog.cardinality(payloads)),
			HINT = 'Give one event_id per payload, or none.';
	ELSIF pg_catalog.array_position(event_ids, NULL) IS NOT NULL THEN
		RAISE EXCEPTION USING
			ERRCODE = 'null_value_not_allowed',
			MESSAGE = 'invoke_many was given a NULL event_id';
	ELSE
		v_ids := event_ids;
	END IF;

	/* each shard's events in one statement there, all shards at once */
	BEGIN
		PERFORM async._invoke_split(invoke_many.function, payloads, v_ids, invoke_many.priority);
		RETURN v_ids;
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;

	/*
	 * A shard failed, and the others may have enqueued theirs: go shard by
	 * shard, so that a shard that fails does not stop the others, and the
	 * error names it.  The events enqueued already are skipped as duplicates
	 * (and counted so in duplicates_skipped).
	 */
	SELECT count(*)::integer - 1 INTO v_mask FROM async.shards();
	FOR v_part IN
		SELECT pg_catalog.hashtext(u.event_id) & v_mask AS shard,
			   pg_catalog.array_agg(u.payload ORDER BY u.n) AS payloads,
			   pg_catalog.array_agg(u.event_id ORDER BY u.n) AS event_ids
		  FROM ROWS FROM (pg_catalog.unnest(payloads), pg_catalog.unnest(v_ids)) WITH ORDINALITY AS u(payload, event_id, n)
		 GROUP BY 1 ORDER BY 1
	LOOP
		BEGIN
			PERFORM async._invoke_many_on(v_part.shard, invoke_many.function, v_part.payloads, v_part.event_ids,
										  invoke_many.priority);
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
				v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
			IF v_first IS NULL THEN
				SELECT v_part.shard AS shard, v_state AS state, v_message AS message,
					   v_detail AS detail, v_hint AS hint INTO v_first;
			END IF;
			v_failed := v_failed || v_part.shard;
			v_lost := v_lost + pg_catalog.cardinality(v_part.event_ids);
		END;
	END LOOP;

	IF v_first IS NOT NULL THEN
		RAISE NOTICE 'invoke_many: % of % events were not enqueued, those of shards %; the others were',
			v_lost, pg_catalog.cardinality(payloads), pg_catalog.array_to_string(v_failed, ', ');
		PERFORM async._shard_error(v_first.shard, v_first.state, v_first.message, v_first.detail, v_first.hint);
	END IF;
	RETURN v_ids;
END
$$;

COMMENT ON FUNCTION async.invoke_many(function text, payloads jsonb[], event_ids text[], priority integer) IS 'enqueues one event per payload, each on the shard of its event_id (given, or made on the router), in one statement per shard, on all shards at once; returns the event_ids.  priority (lower runs first, among the jobs of each shard) defaults to the function''s on each shard.  A shard that fails does not stop the others: the error names it, and a call again with the same event_ids enqueues only what is missing';

CREATE FUNCTION async._redrive_on(p_event_id text) RETURNS boolean
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON pg_catalog.hashtext(p_event_id);
	SELECT async.redrive(p_event_id);
$$;

COMMENT ON FUNCTION async._redrive_on(text) IS 'internal: async.redrive on the shard of the event_id (PL/Proxy)';

CREATE FUNCTION async.redrive(event_id text) RETURNS boolean
	LANGUAGE plpgsql STRICT
	AS $$
DECLARE
	v_state text;
	v_message text;
	v_detail text;
	v_hint text;
BEGIN
	RETURN async._redrive_on(redrive.event_id);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
		v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
	PERFORM async._shard_error(async.shard_of(redrive.event_id), v_state, v_message, v_detail, v_hint);
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION async.redrive(event_id text) IS 'async.redrive on the shard of the event_id: puts your latest dead letter with this event_id back in its queue; false when you have none there';

CREATE FUNCTION async._redrive_many_on(p_shard integer, p_function text, p_reason text,
									   p_dead_after timestamp with time zone, p_dead_before timestamp with time zone)
	RETURNS integer
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT async.redrive_many(p_function, p_reason, p_dead_after, p_dead_before);
$$;

COMMENT ON FUNCTION async._redrive_many_on(integer, text, text, timestamp with time zone, timestamp with time zone) IS 'internal: async.redrive_many on one shard (PL/Proxy)';

CREATE FUNCTION async.redrive_many(function text DEFAULT NULL, reason text DEFAULT NULL,
								   dead_after timestamp with time zone DEFAULT NULL,
								   dead_before timestamp with time zone DEFAULT NULL)
	RETURNS integer
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_shard integer;
	v_total integer := 0;
BEGIN
	FOR v_shard IN SELECT s.shard FROM async.shards() s LOOP
		BEGIN
			v_total := v_total + async._redrive_many_on(v_shard, redrive_many.function, redrive_many.reason,
														redrive_many.dead_after, redrive_many.dead_before);
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'redrive_many: shard % of cluster "%" did not redrive: %', v_shard, async.cluster_name(), SQLERRM
				USING HINT = 'Call it again once the shard answers: what was redriven is not redriven twice.';
		END;
	END LOOP;
	RETURN v_total;
END
$$;

COMMENT ON FUNCTION async.redrive_many(function text, reason text, dead_after timestamp with time zone, dead_before timestamp with time zone) IS 'async.redrive_many on every shard; returns how many dead letters went back to their queues.  A shard that fails gets a warning, and the others are redriven';

/*
 * Registering on every shard.
 */

CREATE FUNCTION async._register_on(p_shard integer, p_handler text, p_name text, p_max_attempts integer,
								   p_retry_delays interval[], p_timeout interval, p_run_as text,
								   p_max_event_age interval, p_concurrency integer,
								   p_on_success text, p_on_failure text, p_priority integer,
								   p_max_depth integer, p_rate_limit integer, p_rate_period interval,
								   p_concurrency_key text, p_key_concurrency integer)
	RETURNS text
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT async.register(p_handler::pg_catalog.regprocedure, p_name, p_max_attempts, p_retry_delays,
						  p_timeout, p_run_as::pg_catalog.regrole, p_max_event_age, p_concurrency,
						  p_on_success, p_on_failure, p_priority, p_max_depth, p_rate_limit,
						  p_rate_period, p_concurrency_key, p_key_concurrency);
$$;

COMMENT ON FUNCTION async._register_on(integer, text, text, integer, interval[], interval, text, interval, integer, text, text, integer, integer, integer, interval, text, integer) IS 'internal: async.register on one shard (PL/Proxy)';

CREATE FUNCTION async.register_on_all(handler text, name text DEFAULT NULL, max_attempts integer DEFAULT 3,
									  retry_delays interval[] DEFAULT '{1 minute,2 minutes}',
									  timeout interval DEFAULT '1 minute', run_as text DEFAULT NULL,
									  max_event_age interval DEFAULT '6 hours', concurrency integer DEFAULT NULL,
									  on_success text DEFAULT NULL, on_failure text DEFAULT NULL,
									  priority integer DEFAULT 0, max_depth integer DEFAULT NULL,
									  rate_limit integer DEFAULT NULL, rate_period interval DEFAULT '1 second',
									  concurrency_key text DEFAULT NULL, key_concurrency integer DEFAULT NULL)
	RETURNS text
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_shard integer;
	v_name text;
	v_got text;
	v_failed text[] := '{}';
BEGIN
	FOR v_shard IN SELECT s.shard FROM async.shards() s LOOP
		BEGIN
			v_got := async._register_on(v_shard, handler, register_on_all.name, max_attempts, retry_delays,
										timeout, run_as, max_event_age, concurrency, on_success, on_failure,
										priority, max_depth, rate_limit, rate_period, concurrency_key,
										key_concurrency);
			IF v_name IS NOT NULL AND v_got IS DISTINCT FROM v_name THEN
				RAISE EXCEPTION 'it was named "%" there, "%" on the shards before', v_got, v_name;
			END IF;
			v_name := COALESCE(v_name, v_got);
		EXCEPTION WHEN OTHERS THEN
			v_failed := v_failed || format('shard %s: %s', v_shard, SQLERRM);
		END;
	END LOOP;
	IF pg_catalog.cardinality(v_failed) > 0 THEN
		RAISE EXCEPTION USING
			ERRCODE = 'object_not_in_prerequisite_state',
			MESSAGE = format('%s of %s shards did not register %s', pg_catalog.cardinality(v_failed),
							 (SELECT count(*) FROM async.shards()), COALESCE(register_on_all.name, handler)),
			DETAIL = pg_catalog.array_to_string(v_failed, E'\n'),
			HINT = 'The others did.  Registering again is harmless: call it again once every shard can.';
	END IF;
	RETURN v_name;
END
$$;

COMMENT ON FUNCTION async.register_on_all(handler text, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as text, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'async.register on every shard, with the handler given by its signature as text (''public.send_mail(jsonb)'') and run_as by name, and pg_async''s other arguments and bounds; returns the function''s name.  concurrency, rate_limit and key_concurrency hold on each shard by itself: N shards run up to N times as many jobs at once, or per rate_period.  An error lists the shards that did not register it';

/*
 * Gathering from every shard.  Each _..._on runs one of pg_async's views or
 * functions on one shard, its rows as jsonb; _fan_in asks each shard in turn
 * and, for a shard that did not answer, returns its error in place of its
 * rows.
 */

CREATE FUNCTION async._stats_on(p_shard integer) RETURNS SETOF jsonb
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT pg_catalog.to_jsonb(s) FROM async.stats s;
$$;

COMMENT ON FUNCTION async._stats_on(integer) IS 'internal: async.stats of one shard (PL/Proxy)';

CREATE FUNCTION async._function_stats_on(p_shard integer) RETURNS SETOF jsonb
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT pg_catalog.to_jsonb(f) FROM async.function_stats f;
$$;

COMMENT ON FUNCTION async._function_stats_on(integer) IS 'internal: async.function_stats of one shard (PL/Proxy)';

CREATE FUNCTION async._dead_letters_on(p_shard integer) RETURNS SETOF jsonb
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT pg_catalog.to_jsonb(d) FROM async.dead_letters d;
$$;

COMMENT ON FUNCTION async._dead_letters_on(integer) IS 'internal: async.dead_letters of one shard (PL/Proxy)';

CREATE FUNCTION async._health_on(p_shard integer, p_ready_age_warning interval, p_xmin_age_warning interval)
	RETURNS SETOF jsonb
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT pg_catalog.to_jsonb(h) FROM async.health(p_ready_age_warning, p_xmin_age_warning) h;
$$;

COMMENT ON FUNCTION async._health_on(integer, interval, interval) IS 'internal: async.health() of one shard (PL/Proxy)';

CREATE FUNCTION async._metrics_on(p_shard integer) RETURNS SETOF jsonb
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT pg_catalog.to_jsonb(async.metrics());
$$;

COMMENT ON FUNCTION async._metrics_on(integer) IS 'internal: async.metrics() of one shard, as a jsonb string (PL/Proxy)';

CREATE FUNCTION async._version_on(p_shard integer) RETURNS text
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_async');
$$;

COMMENT ON FUNCTION async._version_on(integer) IS 'internal: the version of pg_async on one shard, NULL without it (PL/Proxy)';

CREATE FUNCTION async._functions_on(p_shard integer) RETURNS SETOF text
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT f.name FROM async.functions f;
$$;

COMMENT ON FUNCTION async._functions_on(integer) IS 'internal: the names registered on one shard (PL/Proxy)';

CREATE FUNCTION async._fan_in(p_source text, p_args jsonb DEFAULT '{}')
	RETURNS TABLE (shard integer, item jsonb, error text)
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_shard integer;
BEGIN
	FOR v_shard IN SELECT s.shard FROM async.shards() s LOOP
		BEGIN
			CASE p_source
				WHEN 'stats' THEN
					RETURN QUERY SELECT v_shard, r, NULL::text FROM async._stats_on(v_shard) r;
				WHEN 'function_stats' THEN
					RETURN QUERY SELECT v_shard, r, NULL::text FROM async._function_stats_on(v_shard) r;
				WHEN 'dead_letters' THEN
					RETURN QUERY SELECT v_shard, r, NULL::text FROM async._dead_letters_on(v_shard) r;
				WHEN 'health' THEN
					RETURN QUERY SELECT v_shard, r, NULL::text
						FROM async._health_on(v_shard, (p_args ->> 'ready_age_warning')::interval,
											  (p_args ->> 'xmin_age_warning')::interval) r;
				WHEN 'metrics' THEN
					RETURN QUERY SELECT v_shard, r, NULL::text FROM async._metrics_on(v_shard) r;
			END CASE;
		EXCEPTION WHEN OTHERS THEN
			RETURN QUERY SELECT v_shard, NULL::jsonb, SQLERRM;
		END;
	END LOOP;
END
$$;

COMMENT ON FUNCTION async._fan_in(text, jsonb) IS 'internal: the rows of one of pg_async''s views or functions on every shard; a shard that did not answer gives one row with its error';

CREATE VIEW async.stats WITH (security_invoker = true) AS
	SELECT f.shard, x.function, x.ready, x.scheduled, x.running, x.succeeded, x.dead,
		   x.oldest_ready_age, x.held, f.error
	  FROM async._fan_in('stats') f
	  LEFT JOIN LATERAL pg_catalog.jsonb_to_record(f.item)
		   AS x(function text, ready bigint, scheduled bigint, running bigint, succeeded bigint,
				dead bigint, oldest_ready_age interval, held bigint) ON true;

COMMENT ON VIEW async.stats IS 'async.stats of every shard, one row per shard and function, counting the jobs the caller may see there; a shard that did not answer gives one row with its error and no function';

GRANT SELECT ON async.stats TO PUBLIC;

CREATE VIEW async.function_stats WITH (security_invoker = true) AS
	SELECT f.shard, x.function, x.received, x.started, x.succeeded, x.failed, x.retried,
		   x.dead_lettered, x.duplicates_skipped, x.duration_avg_ms, x.duration_p50_ms,
		   x.duration_p95_ms, x.duration_max_ms, x.wait_avg_ms, x.wait_p50_ms, x.wait_p95_ms,
		   x.wait_max_ms, x.stats_reset, f.error
	  FROM async._fan_in('function_stats') f
	  LEFT JOIN LATERAL pg_catalog.jsonb_to_record(f.item)
		   AS x(function text, received bigint, started bigint, succeeded bigint, failed bigint,
				retried bigint, dead_lettered bigint, duplicates_skipped bigint,
				duration_avg_ms double precision, duration_p50_ms double precision,
				duration_p95_ms double precision, duration_max_ms double precision,
				wait_avg_ms double precision, wait_p50_ms double precision,
				wait_p95_ms double precision, wait_max_ms double precision,
				stats_reset timestamp with time zone) ON true;

COMMENT ON VIEW async.function_stats IS 'async.function_stats of every shard: cumulative counters per shard and function; a shard that did not answer gives one row with its error and no function';

GRANT SELECT ON async.function_stats TO PUBLIC;

CREATE VIEW async.dead_letters WITH (security_invoker = true) AS
	SELECT f.shard, x.id, x.job_id, x.event_id, x.function, x.payload, x.attempts, x.errors,
		   x.reason, x.last_error, x.enqueued_at, x.enqueued_by, x.dead_at, f.error
	  FROM async._fan_in('dead_letters') f
	  LEFT JOIN LATERAL pg_catalog.jsonb_to_record(f.item)
		   AS x(id bigint, job_id bigint, event_id text, function text, payload jsonb, attempts integer,
				errors jsonb, reason text, last_error text, enqueued_at timestamp with time zone,
				enqueued_by text, dead_at timestamp with time zone) ON true;

COMMENT ON VIEW async.dead_letters IS 'async.dead_letters of every shard, those the caller may see there (enqueued_by is the role''s name); a shard that did not answer gives one row with its error and no event';

GRANT SELECT ON async.dead_letters TO PUBLIC;

CREATE FUNCTION async.health(ready_age_warning interval DEFAULT '1 minute', xmin_age_warning interval DEFAULT '5 minutes')
	RETURNS TABLE (shard integer, "check" text, status text, detail text, hint text)
	LANGUAGE sql
	AS $$
	SELECT f.shard,
		   COALESCE(x."check", 'shard'),
		   COALESCE(x.status, 'critical'),
		   COALESCE(x.detail, 'the shard did not answer: ' || f.error),
		   CASE WHEN f.error IS NULL THEN x.hint
				ELSE 'Start the shard, or see why the router cannot reach it; its events fail until it answers.' END
	  FROM async._fan_in('health', pg_catalog.jsonb_build_object('ready_age_warning', ready_age_warning,
																 'xmin_age_warning', xmin_age_warning)) f
	  LEFT JOIN LATERAL pg_catalog.jsonb_to_record(f.item)
		   AS x("check" text, status text, detail text, hint text) ON true
	 ORDER BY f.shard
$$;

COMMENT ON FUNCTION async.health(ready_age_warning interval, xmin_age_warning interval) IS 'async.health() of every shard, one row per shard and check; a shard that did not answer is a critical check named shard';

CREATE FUNCTION async.metrics() RETURNS text
	LANGUAGE sql
	AS $$
	/*
	 * Each shard's text, its samples labelled with the shard, one family at a
	 * time, in the order the families first come: Prometheus wants a
	 * family's HELP and TYPE once, and its samples together.  A sample
	 * belongs to the family of the last HELP or TYPE line before it.
	 */
	WITH answers AS (
		SELECT f.shard, f.item #>> '{}' AS body, f.error FROM async._fan_in('metrics') f
	), lines AS (
		SELECT a.shard, l.n, l.line,
			   max(l.n) FILTER (WHERE l.line LIKE '# %') OVER (PARTITION BY a.shard ORDER BY l.n) AS header_n
		  FROM answers a,
			   pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.rtrim(a.body, E'\n'), E'\n'))
				   WITH ORDINALITY AS l(line, n)
		 WHERE a.error IS NULL AND l.line <> ''
	), tagged AS (
		SELECT l.shard, l.n, l.line, l.line LIKE '# %' AS header,
			   pg_catalog.split_part(h.line, ' ', 3) AS family
		  FROM lines l JOIN lines h ON h.shard = l.shard AND h.n = l.header_n
	), families AS (
		SELECT t.family, min(t.shard::bigint * 1000000000 + t.n) AS first FROM tagged t GROUP BY t.family
	), output AS (
		SELECT 0::bigint AS first, 0 AS part, 0 AS shard, 0::bigint AS n,
			   E'# HELP pg_async_router_shard_up Whether the shard answered: 1 yes, 0 no.\n'
			   '# TYPE pg_async_router_shard_up gauge' AS line
		UNION ALL
		SELECT 0, 1, a.shard, 0,
			   pg_catalog.format('pg_async_router_shard_up{shard="%s"} %s', a.shard,
								 CASE WHEN a.error IS NULL THEN 1 ELSE 0 END)
		  FROM answers a
		UNION ALL
		SELECT fa.first, 0, 0, min(t.n), t.line
		  FROM tagged t JOIN families fa USING (family)
		 WHERE t.header
		 GROUP BY fa.first, t.line
		UNION ALL
		SELECT fa.first, 1, t.shard, t.n,
			   CASE WHEN t.line ~ '^[^ {]+[{]'
					THEN pg_catalog.regexp_replace(t.line, '^([^ {]+)[{]', pg_catalog.format('\1{shard="%s",', t.shard))
					ELSE pg_catalog.regexp_replace(t.line, '^([^ ]+) ', pg_catalog.format('\1{shard="%s"} ', t.shard)) END
		  FROM tagged t JOIN families fa USING (family)
		 WHERE NOT t.header
	)
	SELECT pg_catalog.string_agg(o.line || E'\n', '' ORDER BY o.first, o.part, o.shard, o.n) FROM output o
$$;

COMMENT ON FUNCTION async.metrics() IS 'async.metrics() of every shard in one Prometheus text: each family once, each sample labelled shard="N", and pg_async_router_shard_up per shard';

CREATE FUNCTION async._wait_idle_on(p_shard integer, p_timeout interval) RETURNS boolean
	LANGUAGE plproxy
	AS $$
	CLUSTER async.cluster_name();
	RUN ON p_shard;
	SELECT async.wait_idle(p_timeout);
$$;

COMMENT ON FUNCTION async._wait_idle_on(integer, interval) IS 'internal: async.wait_idle on one shard (PL/Proxy)';

CREATE FUNCTION async.wait_idle(timeout interval DEFAULT '30 seconds') RETURNS boolean
	LANGUAGE plpgsql
	AS $$
DECLARE
	v_deadline timestamp with time zone := pg_catalog.clock_timestamp() + timeout;
	v_shard integer;
	v_idle boolean := true;
BEGIN
	FOR v_shard IN SELECT s.shard FROM async.shards() s LOOP
		BEGIN
			IF NOT async._wait_idle_on(v_shard, GREATEST(v_deadline - pg_catalog.clock_timestamp(), '0'::interval)) THEN
				RETURN false;
			END IF;
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'wait_idle: shard % of cluster "%" did not answer: %', v_shard, async.cluster_name(), SQLERRM;
			v_idle := false;
		END;
	END LOOP;
	RETURN v_idle;
END
$$;

COMMENT ON FUNCTION async.wait_idle(timeout interval) IS 'waits until no shard has a job that can run, as async.wait_idle on each in turn within the one timeout; false at the timeout or when a shard did not answer (with a warning naming it)';

/*
 * The cluster's check.
 */

CREATE FUNCTION async.check_cluster()
	RETURNS TABLE ("check" text, status text, detail text)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
	AS $$
DECLARE
	v_cluster text := async.cluster_name();
	v_count integer;
	v_numbers integer[];
	v_versions text[] := '{}';
	v_answered integer[] := '{}';
	v_shard integer;
	v_version text;
	v_error text;
	v_partial text;
	v_reg_shards integer[] := '{}';
	v_reg_names text[] := '{}';
BEGIN
	SELECT count(*), array_agg(s.shard ORDER BY s.shard) INTO v_count, v_numbers FROM async.shards() s;
	"check" := 'shards';
	IF v_count = 0 OR (v_count & (v_count - 1)) <> 0 THEN
		status := 'critical';
		detail := format('cluster "%s" has %s partitions: PL/Proxy maps hashes to a power of two', v_cluster, v_count);
	ELSIF v_numbers <> ARRAY(SELECT generate_series(0, v_count - 1)) THEN
		status := 'critical';
		detail := format('cluster "%s" numbers its partitions %s, not 0 to %s', v_cluster, v_numbers, v_count - 1);
	ELSIF EXISTS (SELECT 1 FROM pg_foreign_server s, pg_options_to_table(s.srvoptions) o
				   WHERE s.srvname = v_cluster AND o.option_name = 'modular_mapping' AND o.option_value <> '0') THEN
		status := 'critical';
		detail := format('cluster "%s" sets modular_mapping, which async.shard_of does not follow', v_cluster);
	ELSE
		status := 'ok';
		detail := format('cluster "%s" has %s shards', v_cluster, v_count);
	END IF;
	RETURN NEXT;

	FOR v_shard IN SELECT unnest(v_numbers) LOOP
		"check" := format('shard %s', v_shard);
		v_error := NULL;
		v_version := NULL;
		BEGIN
			v_version := async._version_on(v_shard);
			IF v_version IS NOT NULL THEN
				SELECT v_reg_shards || array_agg(v_shard), v_reg_names || array_agg(n)
				  INTO v_reg_shards, v_reg_names
				  FROM async._functions_on(v_shard) n;
			END IF;
		EXCEPTION WHEN OTHERS THEN
			v_error := SQLERRM;
		END;
		IF v_error IS NOT NULL THEN
			status := 'critical';
			detail := 'did not answer: ' || v_error;
		ELSIF v_version IS NULL THEN
			status := 'critical';
			detail := 'pg_async is not installed';
		ELSE
			IF (regexp_match(v_version, '^([0-9]+)[.]([0-9]+)'))::integer[] < '{0,11}' THEN
				status := 'critical';
				detail := format('pg_async %s, older than 0.11, which pg_async_router needs', v_version);
			ELSE
				status := 'ok';
				detail := 'pg_async ' || v_version;
			END IF;
			v_versions := v_versions || v_version;
			v_answered := v_answered || v_shard;
		END IF;
		RETURN NEXT;
	END LOOP;

	"check" := 'versions';
	IF (SELECT count(DISTINCT v) FROM unnest(v_versions) v) > 1 THEN
		status := 'critical';
		detail := 'the shards run different versions of pg_async: ' ||
			(SELECT string_agg(format('shard %s %s', s, v), ', ' ORDER BY s)
			   FROM unnest(v_answered, v_versions) u(s, v));
	ELSIF cardinality(v_answered) < v_count THEN
		status := 'critical';
		detail := format('only %s of %s shards have pg_async and answered', cardinality(v_answered), v_count);
	ELSE
		status := 'ok';
		detail := format('every shard runs pg_async %s', v_versions[1]);
	END IF;
	RETURN NEXT;

	"check" := 'functions';
	SELECT string_agg(format('%s (on shards %s only)', r.name, r.shards), ', ' ORDER BY r.name) INTO v_partial
	  FROM (SELECT u.name, string_agg(u.shard::text, ', ' ORDER BY u.shard) AS shards, count(*) AS n
			  FROM unnest(v_reg_shards, v_reg_names) u(shard, name) GROUP BY u.name) r
	 WHERE r.n < cardinality(v_answered);
	IF v_partial IS NOT NULL THEN
		status := 'critical';
		detail := 'registered on some shards only: ' || v_partial;
	ELSE
		status := 'ok';
		detail := format('%s functions registered on every shard that answered',
						 (SELECT count(DISTINCT n) FROM unnest(v_reg_names) n));
	END IF;
	RETURN NEXT;
END
$$;

COMMENT ON FUNCTION async.check_cluster() IS 'checks the cluster: a power of two of shards numbered from 0, pg_async 0.11 or later on every shard, the same version everywhere, and the same functions registered on every shard; one row per check, ok or critical';
