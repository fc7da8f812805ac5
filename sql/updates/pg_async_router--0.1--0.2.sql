/* pg_async_router--0.1--0.2.sql: update of pg_async_router from 0.1 to 0.2 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_async_router UPDATE TO '0.2'" to load this file. \quit

/*
 * 0.2: async.invoke and async.invoke_many take a priority, which goes to
 * the shards with each event (NULL: the function's default there).  Their
 * signatures change, and so do those of the PL/Proxy functions under them:
 * each is dropped and created again.
 */
DROP FUNCTION async.invoke(text, jsonb, text, timestamp with time zone);
DROP FUNCTION async._invoke_on(text, jsonb, text, timestamp with time zone);
DROP FUNCTION async.invoke_many(text, jsonb[], text[]);
DROP FUNCTION async._invoke_many_on(integer, text, jsonb[], text[]);
DROP FUNCTION async._invoke_split(text, jsonb[], text[]);

-- @function async._invoke_on(
COMMENT ON FUNCTION async._invoke_on(text, jsonb, text, timestamp with time zone, integer) IS 'internal: async.invoke on the shard of the event_id, with a priority (NULL: the function''s there) (PL/Proxy)';

-- @function async.invoke(
COMMENT ON FUNCTION async.invoke(function text, payload jsonb, event_id text, run_at timestamp with time zone, priority integer) IS 'enqueues one event on the shard of its event_id (one made on the router when NULL) and returns the event_id; with an event_id already taken it enqueues nothing and returns that id.  priority (-32768 to 32767, lower runs first, among the jobs of its shard) defaults to the function''s on the shard.  Commits on the shard at once';

-- @function async._invoke_many_on(
COMMENT ON FUNCTION async._invoke_many_on(integer, text, jsonb[], text[], integer) IS 'internal: async.invoke of each payload with its event_id and the priority (NULL: the function''s there), in one statement on one shard (PL/Proxy)';

-- @function async._invoke_split(
COMMENT ON FUNCTION async._invoke_split(text, jsonb[], text[], integer) IS 'internal: async.invoke of each payload with its event_id and the priority (NULL: the function''s there), each shard''s in one statement there, all shards at once (PL/Proxy SPLIT)';

-- @function async.invoke_many(
COMMENT ON FUNCTION async.invoke_many(function text, payloads jsonb[], event_ids text[], priority integer) IS 'enqueues one event per payload, each on the shard of its event_id (given, or made on the router), in one statement per shard, on all shards at once; returns the event_ids.  priority (lower runs first, among the jobs of each shard) defaults to the function''s on each shard.  A shard that fails does not stop the others: the error names it, and a call again with the same event_ids enqueues only what is missing';

/*
 * async.register_on_all passes the options async.register has gained
 * since 0.1 (priority, max_depth, rate_limit, rate_period,
 * concurrency_key, key_concurrency) to every shard.
 */
DROP FUNCTION async.register_on_all(text, text, integer, interval[], interval, text, interval, integer, text, text);
DROP FUNCTION async._register_on(integer, text, text, integer, interval[], interval, text, interval, integer, text, text);

-- @function async._register_on(
COMMENT ON FUNCTION async._register_on(integer, text, text, integer, interval[], interval, text, interval, integer, text, text, integer, integer, integer, interval, text, integer) IS 'internal: async.register on one shard (PL/Proxy)';

-- @function async.register_on_all(
COMMENT ON FUNCTION async.register_on_all(handler text, name text, max_attempts integer, retry_delays interval[], timeout interval, run_as text, max_event_age interval, concurrency integer, on_success text, on_failure text, priority integer, max_depth integer, rate_limit integer, rate_period interval, concurrency_key text, key_concurrency integer) IS 'async.register on every shard, with the handler given by its signature as text (''public.send_mail(jsonb)'') and run_as by name, and pg_async''s other arguments and bounds; returns the function''s name.  concurrency, rate_limit and key_concurrency hold on each shard by itself: N shards run up to N times as many jobs at once, or per rate_period.  An error lists the shards that did not register it';

/*
 * The shards need pg_async 0.11 or later, for those arguments:
 * async.check_cluster() says which shard has an older one, and an error
 * of a shard that lacks the function called says so.
 */
-- @function async._shard_error(
-- @function async.check_cluster(
COMMENT ON FUNCTION async.check_cluster() IS 'checks the cluster: a power of two of shards numbered from 0, pg_async 0.11 or later on every shard, the same version everywhere, and the same functions registered on every shard; one row per check, ok or critical';
