/*-------------------------------------------------------------------------
 *
 * registration.c
 *	  The registrations each backend has looked up, cached by function
 *	  name, for the enqueue trigger (enqueue.c): whether a function is
 *	  registered, who may enqueue for it, and how its new jobs are marked.
 *	  Also the one relcache callback for async.functions, which tells this
 *	  cache and the claims' (claim.c) that the table changed.
 *
 * IDENTIFICATION
 *	  src/registration.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

/*
 * Registrations this backend looked up, by function name: the handler's
 * OID.  Any write to async.functions sends a relcache invalidation of that
 * table (its statement trigger), which empties the cache; so does DROP
 * EXTENSION.  A handler dropped since is noticed by its missing OID.
 */
static HTAB *registrations = NULL;
static uint64 registrations_generation = 0;
static Oid	functions_relid = InvalidOid;

/*
 * The one relcache callback for async.functions: it counts the changes of
 * the table (every write to it sends a relcache invalidation, as does DROP
 * EXTENSION), for this file's cache and for the claims' (claim.c).  It only
 * counts: invalidations are processed in the middle of catalog and SPI
 * calls, while a caller may hold an entry, so each cache is emptied at the
 * start of its next look-up instead.
 */
static uint64 functions_generation = 1;
static Oid	watched_relid = InvalidOid;
static bool functions_callback_set = false;

static void
functions_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == watched_relid)
		functions_generation++;
}

/*
 * pg_async_functions_generation returns a number that changes whenever
 * async.functions, whose OID is relid, may have changed since the last
 * call: a cache of what it holds is good while the number stays.
 */
uint64
pg_async_functions_generation(Oid relid)
{
	if (!functions_callback_set)
	{
		CacheRegisterRelcacheCallback(functions_invalidate, (Datum) 0);
		functions_callback_set = true;
	}
	if (relid != watched_relid)
	{
		/* a new async.functions: the extension was created again */
		watched_relid = relid;
		functions_generation++;
	}
	return functions_generation;
}

/* the registration lookup, and the one for a schema older than 0.5 */
static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr lookup_010_plan = NULL;
static SPIPlanPtr lookup_09_plan = NULL;
static SPIPlanPtr lookup_08_plan = NULL;
static SPIPlanPtr lookup_legacy_plan = NULL;

/*
 * prepare_lookup prepares, for the backend's lifetime, the look-up of a
 * registration whose handler's OID is the expression 'handler', its
 * jobs' default priority the expression 'priority', whether it has a
 * rate or key limit the expression 'rated', and its concurrency_key the
 * expression 'key'.
 */
static SPIPlanPtr
prepare_lookup(const char *handler, const char *priority, const char *rated,
			   const char *key)
{
	Oid			argtypes[1] = {TEXTOID};
	SPIPlanPtr	plan;

	plan = SPI_prepare(psprintf("SELECT %s, f.paused, f.concurrency,"
								"       f.handler IS NULL, f.run_as::pg_catalog.oid, %s, %s, %s"
								"  FROM async.functions f"
								" WHERE f.name OPERATOR(pg_catalog.=) $1", handler, priority,
								rated, key),
					   1, argtypes);
	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "pg_async: preparing the registration lookup failed");
	return plan;
}

/*
 * lookup_registration returns the cache entry of 'function', looking the
 * registration up in async.functions when the cache has none, or NULL
 * when the function is not registered.
 */
static AsyncRegistration *
lookup_registration(const char *function)
{
	Datum		args[1];
	char		key[ASYNC_NAME_SIZE];
	Oid			handler = InvalidOid;
	bool		external = false;
	Oid			run_as = InvalidOid;
	bool		paused = false;
	bool		limited = false;
	bool		held = false;
	int16		priority = 0;
	char		concurrency_key[ASYNC_NAME_SIZE] = "";
	AsyncRegistration *entry;
	bool		found;
	int			rc;
	SPIPlanPtr	plan;

	if (strlen(function) >= ASYNC_NAME_SIZE)
		return NULL;			/* longer than any registered name */

	if (registrations != NULL &&
		pg_async_functions_generation(functions_relid) != registrations_generation)
	{
		hash_destroy(registrations);
		registrations = NULL;
	}
	if (registrations == NULL)
	{
		HASHCTL		info;

		functions_relid = get_relname_relid("functions", get_namespace_oid("async", false));
		registrations_generation = pg_async_functions_generation(functions_relid);

		memset(&info, 0, sizeof(info));
		info.keysize = ASYNC_NAME_SIZE;
		info.entrysize = sizeof(AsyncRegistration);
		info.hcxt = TopMemoryContext;
		registrations = hash_create("pg_async registrations", 64, &info,
									HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}

	memset(key, 0, sizeof(key));
	strlcpy(key, function, sizeof(key));
	entry = hash_search(registrations, key, HASH_FIND, NULL);
	if (entry != NULL &&
		(entry->external ||
		 SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(entry->handler))))
		return entry;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (pg_async_handlers_bound(functions_relid) &&
		get_attnum(functions_relid, "key_concurrency") != InvalidAttrNumber)
	{
		if (lookup_plan == NULL)
			lookup_plan = prepare_lookup("f.handler::pg_catalog.oid", "f.priority",
										 "f.rate_limit IS NOT NULL OR f.key_concurrency IS NOT NULL",
										 "f.concurrency_key");
		plan = lookup_plan;
	}
	else if (pg_async_handlers_bound(functions_relid) &&
			 get_attnum(functions_relid, "rate_limit") != InvalidAttrNumber)
	{
		/* 0.10, until ALTER EXTENSION UPDATE: no limits by key */
		if (lookup_010_plan == NULL)
			lookup_010_plan = prepare_lookup("f.handler::pg_catalog.oid", "f.priority",
											 "f.rate_limit IS NOT NULL", "NULL::pg_catalog.text");
		plan = lookup_010_plan;
	}
	else if (pg_async_handlers_bound(functions_relid) &&
			 get_attnum(functions_relid, "priority") != InvalidAttrNumber)
	{
		/* 0.9, until ALTER EXTENSION UPDATE: no rate limits */
		if (lookup_09_plan == NULL)
			lookup_09_plan = prepare_lookup("f.handler::pg_catalog.oid", "f.priority", "false",
											"NULL::pg_catalog.text");
		plan = lookup_09_plan;
	}
	else if (pg_async_handlers_bound(functions_relid))
	{
		/* 0.5 to 0.8, until ALTER EXTENSION UPDATE: no priorities */
		if (lookup_08_plan == NULL)
			lookup_08_plan = prepare_lookup("f.handler::pg_catalog.oid", "0::pg_catalog.int2",
											"false", "NULL::pg_catalog.text");
		plan = lookup_08_plan;
	}
	else
	{
		/*
		 * 0.4 and older, until ALTER EXTENSION UPDATE: the signature, as
		 * those versions resolved it
		 */
		if (lookup_legacy_plan == NULL)
			lookup_legacy_plan =
				prepare_lookup("pg_catalog.to_regprocedure(f.handler)::pg_catalog.oid",
							   "0::pg_catalog.int2", "false", "NULL::pg_catalog.text");
		plan = lookup_legacy_plan;
	}
	args[0] = CStringGetTextDatum(function);
	rc = SPI_execute_plan(plan, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: registration lookup failed: %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			handler = DatumGetObjectId(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		paused = !isnull && DatumGetBool(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		limited = !isnull;
		held = !isnull && DatumGetInt32(d) == 0;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull);
		/* a signature of 0.4 that no longer resolves is not external */
		external = !isnull && DatumGetBool(d) &&
			plan != lookup_legacy_plan;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);
		run_as = isnull ? InvalidOid : DatumGetObjectId(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull);
		priority = isnull ? 0 : DatumGetInt16(d);
		/* a rate or key limit holds jobs as a concurrency limit does */
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull);
		if (!isnull && DatumGetBool(d))
			limited = true;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull);
		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(d), concurrency_key,
								   sizeof(concurrency_key));
	}
	SPI_finish();

	if (!OidIsValid(handler) && !external)
	{
		if (entry != NULL)
			(void) hash_search(registrations, key, HASH_REMOVE, NULL);
		return NULL;
	}

	/* bound to the function's OID: one dropped and created again is another */
	if (!external && !SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(handler)))
	{
		if (entry != NULL)
			(void) hash_search(registrations, key, HASH_REMOVE, NULL);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler of function \"%s\" does not exist", function),
				 errdetail("The function it was registered with was dropped; one created again with the same name is another function."),
				 errhint("Register the function again with async.register().")));
	}

	entry = hash_search(registrations, key, HASH_ENTER, &found);
	entry->handler = handler;
	entry->external = external;
	entry->run_as = run_as;
	entry->paused = paused;
	entry->limited = limited;
	entry->held = held;
	entry->priority = priority;
	strlcpy(entry->concurrency_key, concurrency_key, ASYNC_NAME_SIZE);
	return entry;
}

/*
 * pg_async_check_registration raises an error unless 'function' is registered and
 * the current user may EXECUTE its handler (for an external function: has
 * the privileges of its run_as role), and returns its registration.
 */
AsyncRegistration *
pg_async_check_registration(const char *function)
{
	AsyncRegistration *entry = lookup_registration(function);

	if (entry == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function \"%s\" is not registered with pg_async", function),
				 errhint("Register a handler for it with async.register().")));

	if (entry->external)
	{
		if (!pg_async_may_act_as(entry->run_as))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to enqueue for function \"%s\"", function),
					 errdetail("Enqueueing for an external function needs the privileges of role \"%s\".",
							   GetUserNameFromId(entry->run_as, true) ?
							   GetUserNameFromId(entry->run_as, true) : "?")));
		return entry;
	}
	if (pg_async_proc_aclcheck(entry->handler, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to enqueue for function \"%s\"", function),
				 errdetail("Enqueueing needs EXECUTE on its handler %s.",
						   format_procedure(entry->handler))));
	return entry;
}
