/*-------------------------------------------------------------------------
 *
 * jobfuncs.c
 *	  The SQL-callable functions of pg_async written in C that act on jobs
 *	  and dead letters for their caller: async.invoke, async.cancel,
 *	  async.redrive and async.purge_dead_letters; and the check of an
 *	  async.attach condition.
 *
 *	  PUBLIC may not DELETE from async.jobs or async.dead_letters: any table
 *	  privilege but SELECT would let a role LOCK the table against every
 *	  other role.  So these functions check the caller here, with
 *	  GetUserId(), and do their writes as the extension's owner, limited to
 *	  the rows of the roles whose privileges the caller has.  Rows of other
 *	  roles and rows that do not exist get the same answer.
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "stats.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(pg_async_invoke);
PG_FUNCTION_INFO_V1(pg_async_priority);
PG_FUNCTION_INFO_V1(pg_async_cancel);
PG_FUNCTION_INFO_V1(pg_async_redrive);
PG_FUNCTION_INFO_V1(pg_async_purge_dead_letters);
PG_FUNCTION_INFO_V1(pg_async_valid_condition);

/* async.invoke's statement, prepared once per backend */
/* the INSERT of async.invoke: of 0.9 and later, and of 0.8 (no priority) */
static SPIPlanPtr invoke_plan = NULL;
static SPIPlanPtr invoke_plan_08 = NULL;

/*
 * pg_async_check_priority returns priority as a job's priority (smallint),
 * or raises an error when it is out of that range, or below
 * pg_async.min_priority: a role puts its jobs ahead of the others' only as
 * far as the superuser let it (the setting is PGC_SUSET, set per role).
 */
int16
pg_async_check_priority(int32 priority)
{
	if (priority < PG_INT16_MIN || priority > PG_INT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("priority must be between %d and %d", PG_INT16_MIN, PG_INT16_MAX),
				 errdetail("It was %d.", priority),
				 errhint("A lower priority runs first; 0 is the default.")));
	if (priority < pg_async_min_priority)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("priority %d is below pg_async.min_priority (%d)",
						priority, pg_async_min_priority),
				 errhint("A superuser can lower pg_async.min_priority for a role with ALTER ROLE ... SET.")));
	return (int16) priority;
}

/*
 * async._priority(priority): the check of pg_async_check_priority, for
 * async.invoke_many; NULL (the function's priority) stays NULL.
 */
Datum
pg_async_priority(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_INT16(pg_async_check_priority(PG_GETARG_INT32(0)));
}

/*
 * async.invoke(function, payload, event_id, run_at, priority): enqueues one
 * event as the caller, and returns its event_id.  An event_id already
 * taken is skipped (idempotent delivery) and counted as a duplicate.  A
 * NULL priority is the function's (the row trigger fills it in).
 */
Datum
pg_async_invoke(PG_FUNCTION_ARGS)
{
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			rc;
	bool		with_priority = PG_NARGS() >= 5;
	SPIPlanPtr *plan = with_priority ? &invoke_plan : &invoke_plan_08;

	args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	args[2] = PG_ARGISNULL(2) ? pg_async_make_event_id() : PG_GETARG_DATUM(2);
	/* as the column's default: the time of the call */
	args[3] = PG_ARGISNULL(3) ? TimestampTzGetDatum(GetCurrentTimestamp())
		: PG_GETARG_DATUM(3);
	if (PG_ARGISNULL(0))
		nulls[0] = 'n';
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	if (!with_priority || PG_ARGISNULL(4))
	{
		args[4] = (Datum) 0;
		nulls[4] = 'n';
	}
	else
		args[4] = Int16GetDatum(pg_async_check_priority(PG_GETARG_INT32(4)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_async: SPI_connect failed");
	if (*plan == NULL)
	{
		Oid			argtypes[5] = {TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID, INT2OID};
		SPIPlanPtr	p;

		/*
		 * As the caller: the row trigger checks its right to enqueue.  The
		 * schema of 0.8, before ALTER EXTENSION UPDATE, calls with four
		 * arguments, and its async.jobs has no priority.
		 */
		p = SPI_prepare(with_priority ?
						"INSERT INTO async.jobs (function, payload, event_id, run_at, priority)"
						" VALUES ($1, $2, $3, $4, $5)"
						" ON CONFLICT ON CONSTRAINT jobs_event_id_key DO NOTHING" :
						"INSERT INTO async.jobs (function, payload, event_id, run_at)"
						" VALUES ($1, $2, $3, $4)"
						" ON CONFLICT ON CONSTRAINT jobs_event_id_key DO NOTHING",
						with_priority ? 5 : 4, argtypes);
		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "pg_async: preparing async.invoke failed");
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "pg_async: async.invoke failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		pg_async_count_duplicate(TextDatumGetCString(args[0]));
	SPI_finish();

	PG_RETURN_DATUM(args[2]);
}

/*
 * async.cancel(event_id): removes the caller's job with that event_id if it
 * waits (queued, scheduled, paused or held).  False when the caller has no
 * such job; an error when it is running now.
 */
Datum
pg_async_cancel(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	bool		isnull;
	Datum		result;

	args[0] = PG_GETARG_DATUM(0);
	args[1] = ObjectIdGetDatum(GetUserId());
	result = pg_async_run_as_owner("SELECT async._cancel($1, $2)",
								   2, argtypes, args, NULL, &isnull);
	PG_RETURN_BOOL(!isnull && DatumGetBool(result));
}

/*
 * async.redrive(event_id): puts the caller's latest dead letter with that
 * event_id back in the queue.  A dead letter is taken by its own id, so a
 * dead letter or job of another role with the same event_id is never
 * touched; false when the caller has no such dead letter, whether another
 * role has one or not.
 */
Datum
pg_async_redrive(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	bool		isnull;
	Datum		dead_letter;

	args[0] = PG_GETARG_DATUM(0);
	args[1] = ObjectIdGetDatum(GetUserId());
	dead_letter = pg_async_run_as_owner("SELECT pg_catalog.max(d.id) FROM async.dead_letters d"
										" WHERE d.event_id OPERATOR(pg_catalog.=) $1"
										"   AND pg_catalog.pg_has_role($2, d.enqueued_by::pg_catalog.oid, 'USAGE')",
										2, argtypes, args, NULL, &isnull);
	if (isnull)
		PG_RETURN_BOOL(false);

	argtypes[0] = INT8OID;
	args[0] = dead_letter;
	PG_RETURN_DATUM(pg_async_run_as_owner("SELECT async._redrive($1)",
										  1, argtypes, args, NULL, &isnull));
}

/*
 * async.purge_dead_letters(function, reason, older_than): deletes the
 * caller's dead letters that match every filter given, and returns how many.
 */
Datum
pg_async_purge_dead_letters(PG_FUNCTION_ARGS)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INTERVALOID, OIDOID};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;
	Datum		result;
	int			i;

	for (i = 0; i < 3; i++)
	{
		args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		if (PG_ARGISNULL(i))
			nulls[i] = 'n';
	}
	args[3] = ObjectIdGetDatum(GetUserId());
	result = pg_async_run_as_owner("SELECT async._purge_dead_letters($1, $2, $3, $4)",
								   4, argtypes, args, nulls, &isnull);
	PG_RETURN_INT32(isnull ? 0 : DatumGetInt32(result));
}

/*
 * async._valid_condition(condition): raises an error unless condition is
 * one SQL expression and nothing else.  async.attach writes it into
 * CREATE TRIGGER ... WHEN (condition), where text that closed the
 * parenthesis could append clauses or whole statements.  Parsed as the
 * only target of "SELECT (condition)", anything more than an expression
 * shows: a second statement, a second target, a FROM or any other clause.
 */
Datum
pg_async_valid_condition(PG_FUNCTION_ARGS)
{
	char	   *condition = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext cxt = CurrentMemoryContext;
	List	   *stmts = NIL;
	SelectStmt *select = NULL;

	/* a syntax error is reported as the condition's, not as a query's */
	PG_TRY();
	{
		stmts = raw_parser(psprintf("SELECT (%s)", condition), RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("condition must be a single expression"),
				 errdetail("It was: %s (%s)", condition, edata->message),
				 errhint("Write a boolean expression on OLD and NEW, such as NEW.status <> OLD.status.")));
	}
	PG_END_TRY();
	if (list_length(stmts) == 1 &&
		IsA(((RawStmt *) linitial(stmts))->stmt, SelectStmt))
		select = (SelectStmt *) ((RawStmt *) linitial(stmts))->stmt;
	if (select == NULL || select->op != SETOP_NONE ||
		list_length(select->targetList) != 1 ||
		select->distinctClause != NIL || select->intoClause != NULL ||
		select->fromClause != NIL || select->whereClause != NULL ||
		select->groupClause != NIL || select->havingClause != NULL ||
		select->windowClause != NIL || select->valuesLists != NIL ||
		select->sortClause != NIL || select->limitOffset != NULL ||
		select->limitCount != NULL || select->lockingClause != NIL ||
		select->withClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("condition must be a single expression"),
				 errdetail("It was: %s", condition),
				 errhint("Write a boolean expression on OLD and NEW, such as NEW.status <> OLD.status.")));
	PG_RETURN_VOID();
}
