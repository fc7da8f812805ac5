/*-------------------------------------------------------------------------
 *
 * external.c
 *	  External functions: jobs that consumers outside the server run.
 *	  async.claim() hands a consumer ready jobs, each with a lease until a
 *	  deadline; async.complete(), async.complete_many(), async.fail() and
 *	  async.heartbeat() act on a job only with its lease; a lease whose
 *	  deadline passes is a failed attempt ("lease expired"), found by the
 *	  claims of its function and by the first worker of the database.
 *
 *	  A consumer with nothing to claim sleeps on its latch, in a slot of
 *	  shared memory that names the function it waits for, until a commit
 *	  made jobs of that function ready (external_wait.c).
 *
 *	  Every entry point checks the caller's rights when it is called (the
 *	  privileges of the function's run_as role), then does its writes as
 *	  the extension's owner through internal SQL functions that PUBLIC may
 *	  not execute.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "job.h"
#include "stats.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(pg_async_claim);
PG_FUNCTION_INFO_V1(pg_async_complete);
PG_FUNCTION_INFO_V1(pg_async_complete_many);
PG_FUNCTION_INFO_V1(pg_async_fail);
PG_FUNCTION_INFO_V1(pg_async_heartbeat);
PG_FUNCTION_INFO_V1(pg_async_expire_leases);

/* Bounds of what a caller controls. */
#define ASYNC_MAX_CLAIM			1000
#define ASYNC_MAX_COMPLETE		10000
#define ASYNC_MAX_CLAIM_WAIT	"1 hour"
#define ASYNC_MAX_RETRY_AFTER	ASYNC_MAX_RETRY_DELAY

/* leases a database's first worker, or one claim, fails at most in one transaction */
#define ASYNC_EXPIRE_BATCH		100

/*
 * How long a waiting claim sleeps at most while jobs are due that it could
 * not take (locked by another claim, or held by the concurrency limit):
 * their release sets its latch too, this is only a backstop.
 */
#define ASYNC_CLAIM_RECHECK_MS	1000

/* The error of an attempt whose lease expired, and of a consumer's failure. */
#define ASYNC_LEASE_EXPIRED		"lease expired"
#define ASYNC_LEASE_EXPIRED_SQLSTATE "57014"
#define ASYNC_CONSUMER_SQLSTATE	"38000"

static uint32 wait_event_claim = 0;

/* the plans of the statements that every claim or finish runs */
static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr leases_plan = NULL;
static SPIPlanPtr lookup_compat_plan = NULL;
static SPIPlanPtr leases_compat_plan = NULL;
static SPIPlanPtr expired_plan = NULL;
static SPIPlanPtr expired_all_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr first_deadline_plan = NULL;
static SPIPlanPtr heartbeat_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr complete_plan = NULL;

/*
 * run_cached runs a statement of this file through a plan prepared once per
 * backend, in *plan (every object it names has its schema, so the plan
 * holds whatever the search_path; the plan cache replans it after DDL).
 * The plan is generic: with the plan cache's default choice, a statement
 * whose custom plan looked cheaper for the values of a call (an array of
 * one job id against the generic guess of ten) was planned again at every
 * call, which was a third of a completing consumer's time in 0.19.  A plan
 * kept for the session must not scan a table whole because it was small
 * when it was made: 'indexed' plans it as the workers' statements are
 * (pg_async_push_planner_settings), for a statement that has an index to
 * take.  The statements that call SQL functions leave that to the
 * functions' own settings.
 */
static int
run_cached(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
		   Datum *args, const char *nulls, bool read_only, long count,
		   bool indexed)
{
	int			nestlevel = indexed ? pg_async_push_planner_settings() : -1;
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare_cursor(sql, nargs, argtypes,
										   CURSOR_OPT_GENERIC_PLAN);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "pg_async: preparing \"%s\" failed: %s", sql,
				 SPI_result_code_string(SPI_result));
		*plan = p;
	}
	/* the execution makes the plan, first or again after an invalidation */
	rc = SPI_execute_plan(*plan, args, nulls, read_only, count);
	if (indexed)
		pg_async_pop_planner_settings(nestlevel);
	return rc;
}

/*
 * functions_have_key_limits says whether async.functions has the columns of
 * the limits (rate_limit from 0.10, key_concurrency from 0.11).  Until
 * ALTER EXTENSION UPDATE brings them, the statements below read them out
 * of the row as jsonb instead (FUNCTIONS_COLUMN_SET), which took 5% of a
 * claiming consumer's backend: so only then.  Columns are never dropped,
 * so a plan that names them stays valid.
 */
#define FUNCTIONS_COLUMN_SET(column) \
	"(pg_catalog.to_jsonb(f) OPERATOR(pg_catalog.->>) '" column "') IS NOT NULL"

static bool
functions_have_key_limits(void)
{
	Oid			relid = get_relname_relid("functions",
										  get_namespace_oid("async", false));

	return OidIsValid(relid) &&
		get_attnum(relid, "key_concurrency") != InvalidAttrNumber;
}

/*
 * run_for_timestamp runs a statement of this file through run_cached, as
 * the extension's owner, and reads the timestamptz in the first column of
 * its one row into *result before the owner scope ends (a timestamptz is
 * passed by reference on some platforms).  False when there is none.
 */
static bool
run_for_timestamp(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
				  Datum *args, TimestampTz *result)
{
	AsyncOwnerScope scope;
	bool		isnull = true;

	pg_async_owner_begin(&scope);
	if (run_cached(plan, sql, nargs, argtypes, args, NULL, false, 1, false) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: \"%s\" failed", sql);
	if (SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			*result = DatumGetTimestampTz(d);
	}
	pg_async_owner_end(&scope);
	return !isnull;
}

/* A registration as a consumer sees it. */
typedef struct ExternalFunction
{
	Oid			run_as;
	bool		limited;		/* it has a concurrency, rate or key limit */
} ExternalFunction;

/*
 * lookup_external finds the registration of an external function, and
 * checks that the caller may consume its jobs: the privileges of its
 * run_as role.  'action' names what the caller wanted, for the error.
 */
static ExternalFunction
lookup_external(const char *function, const char *action)
{
	AsyncOwnerScope scope;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	ExternalFunction f = {InvalidOid, false};
	bool		key_limits = functions_have_key_limits();
	bool		found = false;
	bool		external = false;
	char	   *handler = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	args[0] = CStringGetTextDatum(function);
	pg_async_owner_begin(&scope);
	/*
	 * limited: its claims count under its lock.  Not read-only: in a
	 * snapshot of its own, so that a claim that waited sees the limits of
	 * now (claim_writes_end).
	 */
#define LOOKUP_SQL(rate_limit_set, key_concurrency_set) \
	"SELECT f.handler IS NULL, f.run_as::pg_catalog.oid," \
	"       f.concurrency IS NOT NULL OR " rate_limit_set " OR " key_concurrency_set "," \
	"       f.handler::pg_catalog.text" \
	"  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) $1"
	if (run_cached(key_limits ? &lookup_plan : &lookup_compat_plan,
				   key_limits ?
				   LOOKUP_SQL("f.rate_limit IS NOT NULL", "f.key_concurrency IS NOT NULL") :
				   LOOKUP_SQL(FUNCTIONS_COLUMN_SET("rate_limit"), FUNCTIONS_COLUMN_SET("key_concurrency")),
				   1, argtypes, args, NULL, false, 1, false) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading async.functions failed");
#undef LOOKUP_SQL
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		found = true;
		external = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
		f.run_as = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		f.limited = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		if (!external)
			handler = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 4));
	}
	pg_async_owner_end(&scope);

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("function \"%s\" is not registered with pg_async", function),
				 errhint("Register it with async.register_external().")));
	if (!external)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("function \"%s\" is not external", function),
				 errdetail("Its jobs are run by the pg_async workers, with handler %s.",
						   handler ? handler : "?"),
				 errhint("Consumers claim the jobs of functions registered with async.register_external().")));
	if (!pg_async_may_act_as(f.run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s jobs of function \"%s\"", action, function),
				 errdetail("Consuming its jobs needs the privileges of role \"%s\".",
						   GetUserNameFromId(f.run_as, true) ?
						   GetUserNameFromId(f.run_as, true) : "?")));
	return f;
}

/*
 * check_leased_jobs checks that the caller may finish the leased jobs among
 * ids (the privileges of each one's function's run_as role).  Jobs without
 * a lease are left to the statement that acts, which changes nothing for
 * them.  Notes, for a commit that will give a limited function room, that
 * its consumers are to be woken.
 */
static void
check_leased_jobs(Datum ids, const char *action)
{
	AsyncOwnerScope scope;
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];
	int			n;
	int			i;
	char	  **functions;
	Oid		   *roles;
	MemoryContext cxt = CurrentMemoryContext;
	bool		key_limits = functions_have_key_limits();

	args[0] = ids;
	pg_async_owner_begin(&scope);
	/*
	 * A completion gives room under a concurrency or key limit.  The
	 * functions by name, from the distinct functions of the leased jobs,
	 * found through running_pkey whatever the size of async.running when
	 * the plan was made (async._lease_roles, which 0.19 called, joined
	 * async.functions twice, and was planned again at every call).
	 */
#define LEASES_SQL(key_concurrency_set) \
	"SELECT f.name, f.run_as::pg_catalog.oid, f.concurrency IS NOT NULL OR " key_concurrency_set \
	"  FROM async.functions f" \
	" WHERE f.name OPERATOR(pg_catalog.=) ANY (ARRAY(" \
	"       SELECT DISTINCT r.function FROM async.running r" \
	"        WHERE r.job_id OPERATOR(pg_catalog.=) ANY ($1) AND r.lease IS NOT NULL))"
	if (run_cached(key_limits ? &leases_plan : &leases_compat_plan,
				   key_limits ? LEASES_SQL("f.key_concurrency IS NOT NULL") :
				   LEASES_SQL(FUNCTIONS_COLUMN_SET("key_concurrency")),
				   1, argtypes, args, NULL, true, 0, true) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading the leases failed");
#undef LEASES_SQL
	n = (int) SPI_processed;
	functions = MemoryContextAlloc(cxt, sizeof(char *) * Max(n, 1));
	roles = MemoryContextAlloc(cxt, sizeof(Oid) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		functions[i] = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 1));
		roles[i] = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
			pg_async_note_external_ready(functions[i]);
	}
	pg_async_owner_end(&scope);

	/* as the caller again */
	for (i = 0; i < n; i++)
		if (!pg_async_may_act_as(roles[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to %s jobs of function \"%s\"", action, functions[i]),
					 errdetail("Consuming its jobs needs the privileges of role \"%s\".",
							   GetUserNameFromId(roles[i], true) ?
							   GetUserNameFromId(roles[i], true) : "?")));
}

/*
 * count_failure adds a failed attempt of function, which went on to
 * new_state ('queued' or 'dead'), to the counters, and wakes the function's
 * consumers at commit for a retry due at once.
 */
static void
count_failure(const char *function, const char *new_state, bool retry_due)
{
	AsyncCounters *c = pg_async_pending(function);

	c->failed++;
	if (strcmp(new_state, "dead") == 0)
		c->dead++;
	else
	{
		c->retried++;
		if (retry_due)
			pg_async_note_external_ready(function);
	}
}

/*
 * fail_lease records the failed attempt of the job holding lease, inside an
 * owner scope.  Returns false when the lease was no longer the job's.
 */
static bool
fail_lease(Datum job_id, Datum lease, const char *message, const char *sqlstate,
		   Datum retry_after, bool has_retry_after)
{
	Oid			argtypes[5] = {INT8OID, UUIDOID, TEXTOID, TEXTOID, INTERVALOID};
	Datum		args[5];
	char		nulls[5] = "     ";
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *function;
	char	   *new_state;
	Datum		retry_at;

	args[0] = job_id;
	args[1] = lease;
	args[2] = CStringGetTextDatum(message);
	args[3] = CStringGetTextDatum(sqlstate);
	args[4] = retry_after;
	if (!has_retry_after)
		nulls[4] = 'n';
	if (SPI_execute_with_args("SELECT f.function, f.new_state, f.retry_at"
							  "  FROM async._fail_external($1, $2, $3, $4, $5) f",
							  5, argtypes, args, nulls, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "pg_async: recording a failed attempt failed");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	function = SPI_getvalue(tup, desc, 1);
	if (function == NULL)
		return false;
	new_state = SPI_getvalue(tup, desc, 2);
	retry_at = SPI_getbinval(tup, desc, 3, &isnull);
	count_failure(function, new_state ? new_state : "queued",
				  !isnull && DatumGetTimestampTz(retry_at) <=
				  GetCurrentTimestamp() + (TimestampTz) ASYNC_MAX_SLEEP_MS * 1000);
	return true;
}

/*
 * expire_leases fails the attempts of up to ASYNC_EXPIRE_BATCH leases past
 * their deadline, of one function (or all when function is NULL), inside an
 * owner scope.  Returns how many.  A claim looks first, once a lease of the
 * database may have expired (pg_async_leases_may_have_expired): the
 * reservations of async.running churn with the claims, and the scan of its
 * index passed every dead entry until vacuum removed them.  The statement
 * is run through a plan the session keeps, rather than through an SQL
 * function (async._expired_leases, which 0.18 called), which would be
 * planned again at each call.
 */
static int
expire_leases(const char *function)
{
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		args[2];
	int			spi_rc;
	int64		ids[ASYNC_EXPIRE_BATCH];
	pg_uuid_t	leases[ASYNC_EXPIRE_BATCH];
	int			n;
	int			i;
	int			expired = 0;

	args[0] = function ? CStringGetTextDatum(function) : (Datum) 0;
	args[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	/* a function's leases through running_function_idx; all by a scan */
	if (function != NULL)
		spi_rc = run_cached(&expired_plan,
							"SELECT r.job_id, r.lease FROM async.running r"
							" WHERE r.function OPERATOR(pg_catalog.=) $1"
							"   AND r.lease IS NOT NULL AND r.deadline OPERATOR(pg_catalog.<) $2"
							" LIMIT " CppAsString2(ASYNC_EXPIRE_BATCH) " FOR UPDATE SKIP LOCKED",
							2, argtypes, args, NULL, false, 0, true);
	else
		spi_rc = run_cached(&expired_all_plan,
							"SELECT r.job_id, r.lease FROM async.running r"
							" WHERE r.lease IS NOT NULL AND r.deadline OPERATOR(pg_catalog.<) $1"
							" LIMIT " CppAsString2(ASYNC_EXPIRE_BATCH) " FOR UPDATE SKIP LOCKED",
							1, argtypes + 1, args + 1, NULL, false, 0, false);
	if (spi_rc != SPI_OK_SELECT)
		elog(ERROR, "pg_async: reading the expired leases failed");
	n = (int) Min(SPI_processed, ASYNC_EXPIRE_BATCH);
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		leases[i] = *DatumGetUUIDP(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}
	for (i = 0; i < n; i++)
		if (fail_lease(Int64GetDatum(ids[i]), UUIDPGetDatum(&leases[i]),
					   ASYNC_LEASE_EXPIRED, ASYNC_LEASE_EXPIRED_SQLSTATE, (Datum) 0, false))
			expired++;
	return expired;
}

/*
 * look_at_leases fails the expired leases of function (of every function
 * when NULL), inside an owner scope, then reads the first deadline of the
 * leases left, in a snapshot of its own taken after the look began, for
 * the floor before which claims need not look (external_wait.c).  Returns
 * how many it failed, and in *left whether leases are left.
 */
static int
look_at_leases(const char *function, bool *left)
{
	uint64		look = pg_async_lease_look_begin();
	int			n;
	Datum		first;
	bool		isnull;

	n = expire_leases(function);
	if (run_cached(&first_deadline_plan,
				   "SELECT pg_catalog.min(r.deadline) FROM async.running r"
				   " WHERE r.lease IS NOT NULL",
				   0, NULL, NULL, NULL, false, 1, false) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_async: reading the leases failed");
	first = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	pg_async_lease_look_end(look, isnull ? PG_INT64_MAX : DatumGetTimestampTz(first));
	*left = !isnull;
	return n;
}

/*
 * async._expire_leases(): the first worker of the database fails the
 * attempts whose lease expired, whoever claimed them (maintenance.c), and
 * notes whether leases remain.
 */
Datum
pg_async_expire_leases(PG_FUNCTION_ARGS)
{
	AsyncOwnerScope scope;
	int			n;
	bool		left;

	pg_async_owner_begin(&scope);
	/* in snapshots taken after the flag was cleared */
	n = look_at_leases(NULL, &left);
	if (left)
		pg_async_note_leases_remain();
	pg_async_owner_end(&scope);
	PG_RETURN_INT32(n);
}

/*
 * claim_lock serializes the claims of a function with a concurrency limit,
 * so that each counts the jobs the one before reserved.  Only claims of
 * that function take it, and only consumers of that function can hold it:
 * a lock no SQL command takes, held until the end of the claiming
 * transaction, or given back at once by a claim that took nothing.  Its
 * tag holds the first 64 bits of the SHA-256 of the function's name, the
 * first 32 as its class and the next as its object (big-endian), so that
 * a role cannot make up a name whose claims would share another
 * function's lock: until 0.22 the tag was the name's hash_bytes_extended,
 * which is not meant to resist that, and a name built to collide with a
 * limited function's let a role that held its own claim open hold back
 * every claim of that function.
 */
static void
claim_lock(const char *function, bool lock)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	uint32		classid;
	uint32		objid;

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) function, strlen(function)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "pg_async: could not hash the name of function \"%s\": %s", function,
			 ctx ? pg_cryptohash_error(ctx) : "out of memory");
	pg_cryptohash_free(ctx);
	classid = ((uint32) digest[0] << 24) | ((uint32) digest[1] << 16) |
		((uint32) digest[2] << 8) | digest[3];
	objid = ((uint32) digest[4] << 24) | ((uint32) digest[5] << 16) |
		((uint32) digest[6] << 8) | digest[7];

	if (lock)
		LockDatabaseObject(classid, objid, ASYNC_EXTERNAL_CLAIM_LOCK, ExclusiveLock);
	else
		UnlockDatabaseObject(classid, objid, ASYNC_EXTERNAL_CLAIM_LOCK, ExclusiveLock);
}

/*
 * claim_once claims up to max_jobs jobs of function into the result of
 * async.claim(), after failing the expired leases of that function if a
 * lease of the database may have expired.  Returns how many it handed out.
 * *f is the registration as the caller last read it, for whether the
 * function is limited; with recheck (the claim has waited since), it is
 * read again first.  The rights are checked again, as a new call would,
 * whenever the claim may have waited since: after a wait on the latch, and
 * after the claim lock, which another consumer's transaction can hold for
 * as long as it lasts.  Meanwhile the function may have been unregistered
 * and its name registered by a role whose jobs the caller may not take, or
 * given a limit (up to 0.21 a claim went on with what it had checked at
 * its start).
 */
static int
claim_once(ReturnSetInfo *rsinfo, const char *function, int max_jobs,
		   ExternalFunction *f, bool recheck)
{
	AsyncOwnerScope scope;
	Oid			argtypes[3] = {TEXTOID, INT4OID, INT4OID};
	Datum		args[3];
	uint64		i;
	int			n = 0;
	int			reason_col;
	bool		left;
	bool		locked = false;

	if (recheck)
		*f = lookup_external(function, "claim");
	if (f->limited)
	{
		claim_lock(function, true);
		locked = true;
		*f = lookup_external(function, "claim");
	}

	args[0] = CStringGetTextDatum(function);
	args[1] = Int32GetDatum(max_jobs);
	args[2] = Int32GetDatum(MyProcPid);
	pg_async_owner_begin(&scope);
	if (pg_async_leases_may_have_expired(GetCurrentTimestamp()))
		(void) look_at_leases(function, &left);
	/*
	 * c.*: job_id, event_id, payload, attempt, deadline, lease, expired,
	 * wait_us, and from 0.14 reason; before ALTER EXTENSION UPDATE, an
	 * unrun job can only have expired.
	 */
	if (run_cached(&claim_plan, "SELECT c.* FROM async._claim_external($1, $2, $3) c",
				   3, argtypes, args, NULL, false, 0, false) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: claiming jobs failed");
	reason_col = SPI_fnumber(SPI_tuptable->tupdesc, "reason");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AsyncCounters *c = pg_async_pending(function);
		Datum		values[6];
		bool		nulls[6];
		bool		isnull;
		int			k;

		(void) SPI_getbinval(tup, desc, 7, &isnull);
		if (!isnull)
		{
			/* expired, or a loop: dead-lettered unrun */
			const char *reason = reason_col > 0 ? SPI_getvalue(tup, desc, reason_col) : NULL;

			if (reason == NULL)
				reason = "expired";
			pg_async_log_unrun(function, SPI_getvalue(tup, desc, 2),
							   SPI_getvalue(tup, desc, 7), strcmp(reason, "loop") == 0);
			if (strcmp(reason, "loop") == 0)
				c->loops++;
			c->dead++;
			continue;
		}
		for (k = 0; k < 6; k++)
			values[k] = SPI_getbinval(tup, desc, k + 1, &nulls[k]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pg_async_note_leases_made(nulls[4] ? PG_INT64_MAX : DatumGetTimestampTz(values[4]));
		c->started++;
		pg_async_count_duration(&c->wait,
								Max(DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull)), 0));
		n++;
	}
	pg_async_owner_end(&scope);

	/* nothing reserved: let the other consumers of the function claim meanwhile */
	if (locked && n == 0)
		claim_lock(function, false);
	return n;
}

/* next_due: when the next queued job of function is due, or 0 if none is queued */
static TimestampTz
next_due(const char *function)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	TimestampTz due;

	args[0] = CStringGetTextDatum(function);
	if (!run_for_timestamp(&next_due_plan, "SELECT async._next_external_run($1)",
						   1, argtypes, args, &due))
		return 0;
	return due;
}

/*
 * interval_us: an interval of at most ASYNC_MAX_CLAIM_WAIT (checked before)
 * in microseconds.
 */
static int64
interval_us(Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/*
 * claim_writes_end tells claim_commit.c that the claims of function are
 * written, and whether it has a limit.  A limit given to it since the
 * claim looked it up (async.configure, while the claim waited) counts too:
 * whether the commit may skip its flush is read again in a newer snapshot,
 * when it could.
 */
static void
claim_writes_end(const char *function, bool limited)
{
	if (!limited && !pg_async_claim_synchronous_commit)
		limited = lookup_external(function, "claim").limited;
	pg_async_claim_writes_end(limited);
}

/*
 * async.claim(function, max_jobs, wait): up to max_jobs ready jobs of an
 * external function, each now running under a lease until its deadline.
 * With nothing ready and wait > 0, the backend sleeps on its latch until a
 * commit makes jobs of the function ready, or their run_at comes, or wait
 * has passed, then claims again.
 */
Datum
pg_async_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *function;
	int32		max_jobs;
	Interval   *wait;
	int64		wait_us;
	TimestampTz until;
	ExternalFunction f;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null",
						PG_ARGISNULL(0) ? "function" : PG_ARGISNULL(1) ? "max_jobs" : "wait")));
	function = text_to_cstring(PG_GETARG_TEXT_PP(0));
	max_jobs = PG_GETARG_INT32(1);
	if (max_jobs < 1 || max_jobs > ASYNC_MAX_CLAIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_jobs must be between 1 and %d", ASYNC_MAX_CLAIM),
				 errdetail("It was %d.", max_jobs)));
	wait = PG_GETARG_INTERVAL_P(2);
	if (wait->time < 0 || wait->day < 0 || wait->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wait must not be negative")));
	pg_async_check_at_most(wait, "wait", ASYNC_MAX_CLAIM_WAIT);
	wait_us = interval_us(wait);
	if (wait_us > 0 && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("async.claim cannot wait in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errdetail("The transaction's snapshot would not see the jobs enqueued while it waits."),
				 errhint("Claim in a READ COMMITTED transaction, or with wait => '0'.")));

	/* what the claim writes need not be flushed at commit (claim_commit.c) */
	pg_async_claim_writes_begin();
	f = lookup_external(function, "claim");

	InitMaterializedSRF(fcinfo, 0);
	if (wait_event_claim == 0)
		wait_event_claim = pg_async_wait_event("PgAsyncClaimWait");

	if (wait_us == 0)
	{
		(void) claim_once(rsinfo, function, max_jobs, &f, false);
		claim_writes_end(function, f.limited);
		return (Datum) 0;
	}

	until = GetCurrentTimestamp() + wait_us;
	pg_async_consumer_wait_begin(function);
	PG_TRY();
	{
		bool		waited = false;

		for (;;)
		{
			TimestampTz now;
			TimestampTz due;
			long		ms;

			if (claim_once(rsinfo, function, max_jobs, &f, waited) > 0)
				break;
			now = GetCurrentTimestamp();
			if (now >= until)
				break;
			ms = (long) ((until - now + 999) / 1000);
			due = next_due(function);
			if (due != 0 && due <= now)
				ms = Min(ms, ASYNC_CLAIM_RECHECK_MS);
			else if (due != 0)
				ms = Min(ms, (long) ((due - now + 999) / 1000));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ms, wait_event_claim);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			waited = true;
		}
	}
	PG_FINALLY();
	{
		pg_async_consumer_wait_end();
	}
	PG_END_TRY();
	claim_writes_end(function, f.limited);
	return (Datum) 0;
}

/*
 * complete_jobs: the jobs among ids whose lease in leases is still theirs
 * succeed, with results (a NULL array: none).  Returns how many.
 */
static int
complete_jobs(Datum ids, Datum leases, Datum results, bool results_null)
{
	AsyncOwnerScope scope;
	Oid			argtypes[3] = {INT8ARRAYOID, UUIDARRAYOID, JSONBARRAYOID};
	Datum		args[3];
	char		nulls[3] = "   ";
	uint64		i;
	int			n;
	int32		depth = -1;
	int			depth_col;

	check_leased_jobs(ids, "complete");

	args[0] = ids;
	args[1] = leases;
	args[2] = results;
	if (results_null)
		nulls[2] = 'n';
	pg_async_owner_begin(&scope);
	/* c.*: function, duration_us, and from 0.14 depth */
	if (run_cached(&complete_plan, "SELECT c.* FROM async._complete_external($1, $2, $3) c",
				   3, argtypes, args, nulls, false, 0, false) != SPI_OK_SELECT)
		elog(ERROR, "pg_async: completing jobs failed");
	depth_col = SPI_fnumber(SPI_tuptable->tupdesc, "depth");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		AsyncCounters *c = pg_async_pending(SPI_getvalue(tup, SPI_tuptable->tupdesc, 1));
		Datum		d = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);

		c->succeeded++;
		if (!isnull)
			pg_async_count_duration(&c->duration, Max(DatumGetInt64(d), 0));
		if (depth_col > 0)
		{
			d = SPI_getbinval(tup, SPI_tuptable->tupdesc, depth_col, &isnull);
			if (!isnull)
				depth = Max(depth, DatumGetInt32(d));
		}
	}
	n = (int) SPI_processed;
	/* what this transaction enqueues follows from the jobs it completed */
	pg_async_consumer_completed(depth);
	pg_async_owner_end(&scope);
	return n;
}

/* check_job_and_lease refuses a NULL job_id or lease. */
static void
check_job_and_lease(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "job_id" : "lease"),
				 errhint("Pass the job_id and lease that async.claim() returned.")));
}

/* one_element: a one-element array of a by-reference or by-value datum */
static Datum
one_element(Datum value, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(&value, 1, type, typlen, typbyval, typalign));
}

/* async.complete(job_id, lease, result) */
Datum
pg_async_complete(PG_FUNCTION_ARGS)
{
	check_job_and_lease(fcinfo);
	PG_RETURN_BOOL(complete_jobs(one_element(PG_GETARG_DATUM(0), INT8OID),
								 one_element(PG_GETARG_DATUM(1), UUIDOID),
								 PG_ARGISNULL(2) ? (Datum) 0 :
								 one_element(PG_GETARG_DATUM(2), JSONBOID),
								 PG_ARGISNULL(2)) > 0);
}

/* array_length_1d: the length of a one-dimensional array argument, checked */
static int
array_length_1d(ArrayType *a, const char *what)
{
	if (ARR_NDIM(a) == 0)
		return 0;
	if (ARR_NDIM(a) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	return ARR_DIMS(a)[0];
}

/* async.complete_many(job_ids, leases, results) */
Datum
pg_async_complete_many(PG_FUNCTION_ARGS)
{
	int			n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "job_ids" : "leases")));
	n = array_length_1d(PG_GETARG_ARRAYTYPE_P(0), "job_ids");
	if (n > ASYNC_MAX_COMPLETE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("async.complete_many completes at most %d jobs at once", ASYNC_MAX_COMPLETE),
				 errdetail("It was given %d.", n)));
	if (array_length_1d(PG_GETARG_ARRAYTYPE_P(1), "leases") != n ||
		(!PG_ARGISNULL(2) && array_length_1d(PG_GETARG_ARRAYTYPE_P(2), "results") != n))
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("job_ids, leases and results must have as many elements")));
	if (n == 0)
		PG_RETURN_INT32(0);
	PG_RETURN_INT32(complete_jobs(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1),
								  PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2),
								  PG_ARGISNULL(2)));
}

/* async.fail(job_id, lease, error, retry_after) */
Datum
pg_async_fail(PG_FUNCTION_ARGS)
{
	AsyncOwnerScope scope;
	bool		failed;
	char	   *message;

	check_job_and_lease(fcinfo);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("error must not be null"),
				 errhint("Say why the attempt failed; it is kept in the job's history.")));
	if (!PG_ARGISNULL(3))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(3);

		if (iv->time < 0 || iv->day < 0 || iv->month < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("retry_after must not be negative")));
		pg_async_check_at_most(iv, "retry_after", ASYNC_MAX_RETRY_AFTER);
	}
	message = pg_async_clip_message(text_to_cstring(PG_GETARG_TEXT_PP(2)));

	check_leased_jobs(one_element(PG_GETARG_DATUM(0), INT8OID), "fail");
	pg_async_owner_begin(&scope);
	failed = fail_lease(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), message,
						ASYNC_CONSUMER_SQLSTATE,
						PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3), !PG_ARGISNULL(3));
	pg_async_owner_end(&scope);
	PG_RETURN_BOOL(failed);
}

/* async.heartbeat(job_id, lease) */
Datum
pg_async_heartbeat(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {INT8OID, UUIDOID};
	Datum		args[2];
	TimestampTz deadline;

	check_job_and_lease(fcinfo);
	check_leased_jobs(one_element(PG_GETARG_DATUM(0), INT8OID), "heartbeat");
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_GETARG_DATUM(1);
	if (!run_for_timestamp(&heartbeat_plan, "SELECT async._heartbeat_external($1, $2)",
						   2, argtypes, args, &deadline))
		PG_RETURN_NULL();
	/* a shorter timeout since the claim can bring the deadline nearer */
	pg_async_note_leases_made(deadline);
	PG_RETURN_TIMESTAMPTZ(deadline);
}
