/*-------------------------------------------------------------------------
 *
 * register.c
 *	  The SQL-callable functions that change registrations: register,
 *	  register_external (configure calls them), unregister, pause and
 *	  resume.  Each checks here, with GetUserId(), that the caller may, and
 *	  bounds every value a role gives, then writes as the extension's owner
 *	  through an internal SQL function that PUBLIC may not execute.  A
 *	  SECURITY DEFINER function could not do the check: inside it, the
 *	  caller is no longer known.
 *
 * IDENTIFICATION
 *	  src/register.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "job.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_async_register);
PG_FUNCTION_INFO_V1(pg_async_register_external);
PG_FUNCTION_INFO_V1(pg_async_unregister);
PG_FUNCTION_INFO_V1(pg_async_pause);
PG_FUNCTION_INFO_V1(pg_async_resume);

/* Longest registered name. */
#define ASYNC_MAX_NAME_LEN	(ASYNC_NAME_SIZE - 1)

/*
 * registration_owner looks up who may change the registration 'name': its
 * run_as and registered_by roles, and whether it is external (has no
 * handler; external may be NULL).  Returns false if there is none.
 */
static bool
registration_owner(text *name, Oid *run_as, Oid *registered_by, bool *external)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	bool		found = false;

	args[0] = PointerGetDatum(name);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (SPI_execute_with_args("SELECT f.run_as::pg_catalog.oid, f.registered_by::pg_catalog.oid,"
							  "       f.handler IS NULL"
							  "  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading async.functions failed");
	if (SPI_processed == 1)
	{
		bool		isnull;

		*run_as = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
		*registered_by = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 2, &isnull));
		if (external != NULL)
			*external = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 3, &isnull));
		found = true;
	}
	SPI_finish();
	return found;
}

/*
 * interval_exceeds tells whether iv is longer than the interval written
 * 'bound'.  interval_cmp compares in 128 bits: no value can overflow it.
 */
static bool
interval_exceeds(Interval *iv, const char *bound)
{
	Datum		limit = DirectFunctionCall3(interval_in, CStringGetDatum(bound),
											ObjectIdGetDatum(InvalidOid),
											Int32GetDatum(-1));

	return DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(iv),
											 limit)) > 0;
}

/* interval_text is an interval as text, for messages. */
static char *
interval_text(Interval *iv)
{
	return DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)));
}

/*
 * normalize_retry_delays refuses a retry_delays array with NULLs, negative
 * or over-long delays, more than ASYNC_MAX_RETRY_DELAYS elements or more
 * than one dimension, and returns it with lower bound 1, as the workers
 * index it ('[0:1]={1 hour,2 hours}' would otherwise retry at the wrong
 * times).
 */
static ArrayType *
normalize_retry_delays(ArrayType *delays)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	if (ARR_NDIM(delays) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_delays must be a one-dimensional array")));
	deconstruct_array(delays, INTERVALOID, sizeof(Interval), false, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	if (n > ASYNC_MAX_RETRY_DELAYS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("retry_delays has too many elements"),
				 errdetail("It has %d; at most %d are allowed.", n, ASYNC_MAX_RETRY_DELAYS),
				 errhint("The last delay repeats for the attempts after it.")));
	for (i = 0; i < n; i++)
	{
		Interval   *iv;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("retry_delays must not contain NULL")));
		iv = DatumGetIntervalP(elems[i]);
		if (iv->time < 0 || iv->day < 0 || iv->month < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retry delay %s is negative", interval_text(iv)),
					 errhint("Give delays of zero or more, such as '{1 minute,2 minutes}'.")));
		if (interval_exceeds(iv, ASYNC_MAX_RETRY_DELAY))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retry delay %s is too long", interval_text(iv)),
					 errdetail("A retry delay is at most %s.", ASYNC_MAX_RETRY_DELAY)));
	}
	if (n == 0)
		return construct_empty_array(INTERVALOID);
	return construct_array(elems, n, INTERVALOID, sizeof(Interval), false, TYPALIGN_DOUBLE);
}

/*
 * pg_async_check_at_most refuses a setting 'what' longer than the interval 'max'.
 */
void
pg_async_check_at_most(Interval *iv, const char *what, const char *max)
{
	if (interval_exceeds(iv, max))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at most %s", what, max),
				 errdetail("It was %s.", interval_text(iv))));
}

/*
 * check_destination refuses an on_success or on_failure destination that is
 * the function itself, is not registered, or whose handler the caller may
 * not EXECUTE (for an external one: whose run_as role's privileges the
 * caller lacks).  The worker checks again, at delivery, that the role that
 * enqueued the original event may enqueue for the destination.
 */
static void
check_destination(text *name, text *destination, const char *what)
{
	char	   *dest = text_to_cstring(destination);
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	Oid			fnoid = InvalidOid;
	Oid			run_as = InvalidOid;
	bool		found = false;

	if (strcmp(dest, text_to_cstring(name)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s destination of function \"%s\" must be another function", what, dest)));

	/* registrations are readable by everyone */
	args[0] = PointerGetDatum(destination);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (SPI_execute_with_args("SELECT f.handler::pg_catalog.oid, f.run_as::pg_catalog.oid"
							  "  FROM async.functions f"
							  " WHERE f.name OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading async.functions failed");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		found = true;
		if (!isnull)
			fnoid = DatumGetObjectId(d);
		run_as = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_finish();

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s destination \"%s\" is not registered with pg_async", what, dest),
				 errhint("Register the destination function first.")));
	/* an external destination: enqueueing for it needs the privileges of its run_as */
	if (!OidIsValid(fnoid))
	{
		if (!pg_async_may_act_as(run_as))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to use function \"%s\" as %s destination", dest, what),
					 errdetail("An external destination needs the privileges of role \"%s\".",
							   GetUserNameFromId(run_as, true) ? GetUserNameFromId(run_as, true) : "?")));
		return;
	}
	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(fnoid)) ||
		pg_async_proc_aclcheck(fnoid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to use function \"%s\" as %s destination", dest, what),
				 errdetail("A destination needs EXECUTE on its handler.")));
}

/*
 * check_no_cycle refuses destinations through which the records of 'name'
 * would come back to it (A -> B -> A), which would loop forever: it follows
 * the destinations of the registrations, with those of 'name' replaced by
 * the new ones.
 */
static void
check_no_cycle(text *name, Datum on_success, bool success_null,
			   Datum on_failure, bool failure_null)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		args[3];
	char		nulls[3] = {' ', success_null ? 'n' : ' ', failure_null ? 'n' : ' '};
	bool		loops = false;

	if (success_null && failure_null)
		return;

	/*
	 * One change of destinations at a time, each seeing those committed
	 * before it (a new snapshot: read_only false below): two that close a
	 * loop between them must not both pass.  Held until commit.
	 */
	LockDatabaseObject(ExtensionRelationId, get_extension_oid("pg_async", false),
					   ASYNC_DESTINATIONS_LOCK, ExclusiveLock);
	args[0] = PointerGetDatum(name);
	args[1] = on_success;
	args[2] = on_failure;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (SPI_execute_with_args("WITH RECURSIVE reach(name) AS ("
							  "  SELECT d.name FROM (VALUES ($2::pg_catalog.text COLLATE \"C\"), ($3::pg_catalog.text COLLATE \"C\")) d(name)"
							  "   WHERE d.name IS NOT NULL"
							  "  UNION"
							  "  SELECT d.name FROM reach r"
							  "    JOIN async.functions f ON f.name OPERATOR(pg_catalog.=) r.name"
							  "   CROSS JOIN LATERAL (VALUES (f.on_success), (f.on_failure)) d(name)"
							  "   WHERE f.name OPERATOR(pg_catalog.<>) $1 AND d.name IS NOT NULL)"
							  " SELECT EXISTS (SELECT FROM reach r WHERE r.name OPERATOR(pg_catalog.=) $1)",
							  3, argtypes, args, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pg_async: following destinations failed");
	{
		bool		isnull;

		loops = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	if (loops)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("destinations of function \"%s\" would lead back to it",
						text_to_cstring(name)),
				 errdetail("Its invocation records would pass from destination to destination forever."),
				 errhint("Break the chain: remove the destination of one function in it with async.configure(..., on_success => '').")));
}

/*
 * check_name_free refuses to register a name that is not registered now
 * while jobs of an earlier registration of it, enqueued by roles the caller
 * does not have the privileges of, are unfinished: they would run the
 * caller's code with those roles' payloads.
 */
static void
check_name_free(text *name)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	bool		isnull;
	Datum		taken;

	args[0] = PointerGetDatum(name);
	args[1] = ObjectIdGetDatum(GetUserId());
	taken = pg_async_run_as_owner("SELECT EXISTS (SELECT FROM async.jobs j"
								  " WHERE j.function OPERATOR(pg_catalog.=) $1 AND j.finished_at IS NULL"
								  "   AND NOT pg_catalog.pg_has_role($2, j.enqueued_by::pg_catalog.oid, 'USAGE'))",
								  2, argtypes, args, NULL, &isnull);
	if (!isnull && DatumGetBool(taken))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("function name \"%s\" still has unfinished jobs of other roles",
						text_to_cstring(name)),
				 errdetail("They were enqueued for an earlier registration of that name."),
				 errhint("Choose another name, or wait until those jobs have finished.")));
}

/*
 * check_key_limit checks the limit by key that arguments 'at' and 'at' + 1
 * of fcinfo give: concurrency_key, a payload key, and key_concurrency, how
 * many jobs with one value of it may run at once; both or neither.
 */
static void
check_key_limit(FunctionCallInfo fcinfo, int at)
{
	if (!PG_ARGISNULL(at))
	{
		text	   *key = PG_GETARG_TEXT_PP(at);

		if (VARSIZE_ANY_EXHDR(key) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("concurrency_key must not be empty"),
					 errhint("Name the payload key whose values are limited, such as 'tenant_id'.")));
		if (VARSIZE_ANY_EXHDR(key) > ASYNC_MAX_KEY_NAME_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("concurrency_key is too long"),
					 errdetail("A concurrency_key has at most %d bytes.", ASYNC_MAX_KEY_NAME_LEN)));
	}
	if (!PG_ARGISNULL(at + 1) &&
		(PG_GETARG_INT32(at + 1) < 1 || PG_GETARG_INT32(at + 1) > ASYNC_MAX_KEY_CONCURRENCY))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_concurrency must be NULL (no limit by key) or between 1 and %d",
						ASYNC_MAX_KEY_CONCURRENCY),
				 errdetail("It was %d.", PG_GETARG_INT32(at + 1)),
				 errhint("To hold a function's jobs, use async.pause() or concurrency => 0.")));
	if (PG_ARGISNULL(at) != PG_ARGISNULL(at + 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(PG_ARGISNULL(at) ? "key_concurrency needs a concurrency_key" :
						"concurrency_key needs a key_concurrency"),
				 errhint("Give both, for instance concurrency_key => 'tenant_id', key_concurrency => 1.")));
}

/*
 * register_function writes the registration 'name' of handler, or of an
 * external function when handler is InvalidOid, after checking the options
 * that async.register() and async.register_external() share: the
 * arguments of fcinfo from 'first' on are max_attempts, retry_delays,
 * timeout, run_as, max_event_age, concurrency, on_success, on_failure,
 * priority, max_depth, rate_limit, rate_period, concurrency_key and
 * key_concurrency.
 * run_as defaults to default_run_as, for a handler its owner, whose
 * privileges the caller must have.  A name keeps its kind: a function
 * registered with a handler is not made external, nor the reverse, since
 * the jobs queued for it were enqueued under the rights of the other kind.
 */
static void
register_function(FunctionCallInfo fcinfo, int first, text *name, Oid handler,
				  Oid default_run_as)
{
	int32		max_attempts;
	ArrayType  *retry_delays;
	Interval   *timeout;
	Interval   *max_event_age;
	Oid			run_as;
	Oid			old_run_as;
	Oid			old_registered_by;
	bool		old_external;
	Oid			argtypes[17] = {TEXTOID, REGPROCEDUREOID, REGROLEOID, INT4OID,
		INTERVALARRAYOID, INTERVALOID, REGROLEOID, INTERVALOID, INT4OID, TEXTOID, TEXTOID,
	INT2OID, INT4OID, INT4OID, INTERVALOID, TEXTOID, INT4OID};
	Datum		args[17];
	char		nulls[18] = "                 ";
	Interval   *rate_period;
	int16		priority;
	bool		isnull;
	int			i;

	for (i = 0; i < 3; i++)
		if (PG_ARGISNULL(first + i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							i == 0 ? "max_attempts" : i == 1 ? "retry_delays" : "timeout")));

	/* the schema of 0.10 and older, until ALTER EXTENSION UPDATE */
	if (PG_NARGS() <= first + 13 ||
		!pg_async_handlers_bound(get_relname_relid("functions",
												   get_namespace_oid("async", false))))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pg_async extension in this database is older than its library"),
				 errhint("Run ALTER EXTENSION pg_async UPDATE.")));

	if (VARSIZE_ANY_EXHDR(name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name must not be empty")));
	if (VARSIZE_ANY_EXHDR(name) > ASYNC_MAX_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("name is too long"),
				 errdetail("A name has at most %d bytes.", ASYNC_MAX_NAME_LEN)));

	max_attempts = PG_GETARG_INT32(first);
	if (max_attempts < 1 || max_attempts > ASYNC_MAX_ATTEMPTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be between 1 and %d", ASYNC_MAX_ATTEMPTS),
				 errdetail("It was %d.", max_attempts)));

	retry_delays = normalize_retry_delays(PG_GETARG_ARRAYTYPE_P(first + 1));

	timeout = PG_GETARG_INTERVAL_P(first + 2);
	if (timeout->time <= 0 && timeout->day <= 0 && timeout->month <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be positive")));
	if (timeout->time < 0 || timeout->day < 0 || timeout->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not have negative parts")));
	pg_async_check_at_most(timeout, "timeout", ASYNC_MAX_TIMEOUT);

	if (PG_ARGISNULL(first + 4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_event_age must not be null")));
	max_event_age = PG_GETARG_INTERVAL_P(first + 4);
	if (max_event_age->month < 0 || max_event_age->day < 0 || max_event_age->time < 0 ||
		(max_event_age->month == 0 && max_event_age->day == 0 &&
		 max_event_age->time < USECS_PER_SEC))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_event_age must be at least 1 second")));
	pg_async_check_at_most(max_event_age, "max_event_age", ASYNC_MAX_EVENT_AGE);
	if (!PG_ARGISNULL(first + 5) && PG_GETARG_INT32(first + 5) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be NULL (no limit), 0 (hold the jobs) or more"),
				 errdetail("It was %d.", PG_GETARG_INT32(first + 5))));

	if (PG_ARGISNULL(first + 8))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("priority must not be null"),
				 errhint("0 is the default priority; a lower one runs first.")));
	priority = pg_async_check_priority(PG_GETARG_INT32(first + 8));
	if (!PG_ARGISNULL(first + 9) &&
		(PG_GETARG_INT32(first + 9) < 1 || PG_GETARG_INT32(first + 9) > ASYNC_MAX_DEPTH))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_depth must be NULL (pg_async.max_depth) or between 1 and %d",
						ASYNC_MAX_DEPTH),
				 errdetail("It was %d.", PG_GETARG_INT32(first + 9))));
	if (!PG_ARGISNULL(first + 10) &&
		(PG_GETARG_INT32(first + 10) < 1 || PG_GETARG_INT32(first + 10) > ASYNC_MAX_RATE_LIMIT))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate_limit must be NULL (no limit) or between 1 and %d",
						ASYNC_MAX_RATE_LIMIT),
				 errdetail("It was %d.", PG_GETARG_INT32(first + 10)),
				 errhint("To hold a function's jobs, use async.pause() or concurrency => 0.")));
	if (PG_ARGISNULL(first + 11))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("rate_period must not be null")));
	rate_period = PG_GETARG_INTERVAL_P(first + 11);
	if (rate_period->month < 0 || rate_period->day < 0 || rate_period->time < 0 ||
		(rate_period->month == 0 && rate_period->day == 0 &&
		 rate_period->time < ASYNC_MIN_RATE_PERIOD_US))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rate_period must be at least 10 milliseconds")));
	pg_async_check_at_most(rate_period, "rate_period", "1 day");
	check_key_limit(fcinfo, first + 12);

	run_as = PG_ARGISNULL(first + 3) ? default_run_as : PG_GETARG_OID(first + 3);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(run_as)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", run_as)));
	if (OidIsValid(handler) && !pg_async_may_act_as(default_run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of function %s to register it", format_procedure(handler)),
				 errdetail("Its owner is role \"%s\".", GetUserNameFromId(default_run_as, false))));
	if (!pg_async_may_act_as(run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg(OidIsValid(handler) ?
						"permission denied to run handlers as role \"%s\"" :
						"permission denied to consume jobs as role \"%s\"",
						GetUserNameFromId(run_as, false)),
				 errdetail("Only superusers and roles with the privileges of \"%s\" may.",
						   GetUserNameFromId(run_as, false))));
	if (OidIsValid(handler))
	{
		pg_async_check_run_as(handler, run_as, text_to_cstring(name));
		if (pg_async_proc_aclcheck(handler, run_as, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" may not execute %s",
							GetUserNameFromId(run_as, false), format_procedure(handler))));
	}

	if (registration_owner(name, &old_run_as, &old_registered_by, &old_external))
	{
		/*
		 * only with the rights of the role its jobs run as now: a role
		 * that registered it but has lost those rights could otherwise
		 * point the name, and the payloads queued for it, at its own code
		 */
		if (!pg_async_may_act_as(old_run_as))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("function \"%s\" is registered by role \"%s\"",
							text_to_cstring(name),
							GetUserNameFromId(old_registered_by, true) ?
							GetUserNameFromId(old_registered_by, true) : "?"),
					 errhint("Choose another name, or ask that role to unregister it.")));
		if (old_external != !OidIsValid(handler))
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg(old_external ?
							"function \"%s\" is registered as an external function" :
							"function \"%s\" is registered with a handler",
							text_to_cstring(name)),
					 errhint("Unregister it first with async.unregister(), or choose another name.")));
	}
	else
		check_name_free(name);

	args[0] = PointerGetDatum(name);
	args[1] = ObjectIdGetDatum(handler);
	if (!OidIsValid(handler))
		nulls[1] = 'n';
	args[2] = ObjectIdGetDatum(run_as);
	args[3] = Int32GetDatum(max_attempts);
	args[4] = PointerGetDatum(retry_delays);
	args[5] = IntervalPGetDatum(timeout);
	args[6] = ObjectIdGetDatum(GetUserId());
	args[7] = IntervalPGetDatum(max_event_age);
	args[8] = PG_ARGISNULL(first + 5) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(first + 5));
	if (PG_ARGISNULL(first + 5))
		nulls[8] = 'n';
	for (i = 0; i <= 1; i++)
	{
		if (PG_ARGISNULL(first + 6 + i))
		{
			nulls[9 + i] = 'n';
			args[9 + i] = (Datum) 0;
			continue;
		}
		args[9 + i] = PointerGetDatum(PG_GETARG_TEXT_PP(first + 6 + i));
		check_destination(name, PG_GETARG_TEXT_PP(first + 6 + i),
						  i == 0 ? "on_success" : "on_failure");
	}
	check_no_cycle(name, args[9], nulls[9] == 'n', args[10], nulls[10] == 'n');
	args[11] = Int16GetDatum(priority);
	args[12] = PG_ARGISNULL(first + 9) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(first + 9));
	if (PG_ARGISNULL(first + 9))
		nulls[12] = 'n';
	args[13] = PG_ARGISNULL(first + 10) ? (Datum) 0 : Int32GetDatum(PG_GETARG_INT32(first + 10));
	if (PG_ARGISNULL(first + 10))
		nulls[13] = 'n';
	args[14] = IntervalPGetDatum(rate_period);
	for (i = 0; i <= 1; i++)
	{
		nulls[15 + i] = PG_ARGISNULL(first + 12 + i) ? 'n' : ' ';
		args[15 + i] = PG_ARGISNULL(first + 12 + i) ? (Datum) 0 : PG_GETARG_DATUM(first + 12 + i);
	}
	(void) pg_async_run_as_owner("SELECT async._upsert_registration($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
								 17, argtypes, args, nulls, &isnull);

	/* a lifted limit may have made held jobs ready: wake whoever runs them at commit */
	if (OidIsValid(handler))
		pg_async_note_enqueued(pg_async_batch_size);
	else
		pg_async_note_external_ready(text_to_cstring(name));
}

/*
 * async.register(handler, name, max_attempts, retry_delays, timeout, run_as,
 *				  max_event_age, concurrency, on_success, on_failure, priority,
 *				  max_depth, rate_limit, rate_period, concurrency_key,
 *				  key_concurrency)
 *
 * Registers handler under name, or updates the registration.  A caller who
 * is not superuser must have the privileges of the handler's owner and of
 * run_as, and of the roles of a registration it replaces.  Whoever calls,
 * the handler's owner must have the privileges of run_as (which defaults to
 * the owner): a handler never runs with more rights than the roles that can
 * change its code.  The workers check that rule again before each batch.
 * The registration is bound to the function's OID.
 */
Datum
pg_async_register(PG_FUNCTION_ARGS)
{
	Oid			handler;
	HeapTuple	tup;
	Form_pg_proc proc;
	text	   *name;
	Oid			proowner;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("handler must not be null")));
	handler = PG_GETARG_OID(0);
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function with OID %u does not exist", handler)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	proowner = proc->proowner;
	name = PG_ARGISNULL(1) ? cstring_to_text(NameStr(proc->proname)) : PG_GETARG_TEXT_PP(1);
	ReleaseSysCache(tup);

	pg_async_check_handler(handler);
	register_function(fcinfo, 2, name, handler, proowner);
	PG_RETURN_TEXT_P(name);
}

/*
 * async.register_external(name, max_attempts, retry_delays, timeout,
 *						   run_as, max_event_age, concurrency, on_success,
 *						   on_failure, priority, max_depth, rate_limit,
 *						   rate_period, concurrency_key, key_concurrency)
 *
 * Registers a function whose jobs consumers outside the server claim
 * (external.c), or updates its registration.  run_as defaults to the
 * caller, who must have its privileges; so must whoever claims or enqueues
 * its jobs.
 */
Datum
pg_async_register_external(PG_FUNCTION_ARGS)
{
	text	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("name must not be null")));
	name = PG_GETARG_TEXT_PP(0);
	register_function(fcinfo, 1, name, InvalidOid, GetUserId());
	PG_RETURN_TEXT_P(name);
}

/*
 * check_may_change raises an error unless the caller may change the
 * registration 'name' (the privileges of its run_as or registered_by role,
 * or superuser).  Returns false when there is no such registration.
 */
static bool
check_may_change(text *name, const char *action)
{
	Oid			run_as;
	Oid			registered_by;

	if (!registration_owner(name, &run_as, &registered_by, NULL))
		return false;
	if (!pg_async_may_act_as(run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s function \"%s\"",
						action, text_to_cstring(name)),
				 errdetail("Its jobs run as role \"%s\"; changing it needs that role's privileges.",
						   GetUserNameFromId(run_as, true) ?
						   GetUserNameFromId(run_as, true) : "?")));
	return true;
}

/* set_paused is async.pause() and async.resume(). */
static Datum
set_paused(text *name, bool paused)
{
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		args[2];
	bool		isnull;

	if (!check_may_change(name, paused ? "pause" : "resume"))
		return BoolGetDatum(false);
	args[0] = PointerGetDatum(name);
	args[1] = BoolGetDatum(paused);
	(void) pg_async_run_as_owner("SELECT async._set_paused($1, $2)", 2, argtypes, args, NULL, &isnull);
	/* resumed jobs are ready now: wake the workers, or its consumers, at commit */
	if (!paused)
	{
		pg_async_note_enqueued(pg_async_batch_size);
		pg_async_note_external_ready(text_to_cstring(name));
	}
	return BoolGetDatum(true);
}

/* async.pause(name): holds the jobs of a function. */
Datum
pg_async_pause(PG_FUNCTION_ARGS)
{
	return set_paused(PG_GETARG_TEXT_PP(0), true);
}

/* async.resume(name): lets the jobs of a paused function run again. */
Datum
pg_async_resume(PG_FUNCTION_ARGS)
{
	return set_paused(PG_GETARG_TEXT_PP(0), false);
}

/*
 * async.unregister(name, cancel_jobs): removes a registration.  The caller
 * must have the privileges of its run_as or registered_by role, or be
 * superuser.  A name stays bound to its jobs: async._unregister refuses
 * while jobs of the function run, or wait unless cancel_jobs moves them to
 * the dead letters, or while tables are attached to it, so that no one who
 * registers the name later receives them.
 */
Datum
pg_async_unregister(PG_FUNCTION_ARGS)
{
	text	   *name;
	Oid			argtypes[2] = {TEXTOID, BOOLOID};
	Datum		args[2];
	bool		isnull;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	name = PG_GETARG_TEXT_PP(0);
	if (!check_may_change(name, "unregister"))
		PG_RETURN_BOOL(false);

	args[0] = PointerGetDatum(name);
	args[1] = BoolGetDatum(!PG_ARGISNULL(1) && PG_GETARG_BOOL(1));
	(void) pg_async_run_as_owner("SELECT async._unregister($1, $2)",
								 2, argtypes, args, NULL, &isnull);
	PG_RETURN_BOOL(true);
}
