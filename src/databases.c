/*-------------------------------------------------------------------------
 *
 * databases.c
 *	  Which databases pg_async serves, and the commands that tell the
 *	  launcher about them: CREATE EXTENSION pg_async in a database (at its
 *	  commit), and the commands that need a database without connections
 *	  (DROP DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, CREATE
 *	  DATABASE ... TEMPLATE), which first send that database's workers away.
 *
 *	  pg_async.databases is '*' (every connectable database that is not a
 *	  template and has the extension) or a list of names.  pg_async.database,
 *	  the setting of the versions before 0.12, names one database; it is
 *	  used when pg_async.databases is left at '*'.
 *
 * IDENTIFICATION
 *	  src/databases.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_async.h"
#include "shmem.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

/* how long a command waits for the workers of its database to exit */
#define ASYNC_HOLD_WAIT_MS		10000

/* this transaction ran CREATE EXTENSION pg_async (async._check_setup) */
static bool extension_created = false;

/* this transaction created a database: the launcher looks at its commit */
static bool database_created = false;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * pg_async_check_databases is the check hook of pg_async.databases: '*' or
 * a comma-separated list of names, taken as written (a name with a comma
 * or spaces between double quotes).
 */
bool
pg_async_check_databases(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *names;
	bool		ok;

	if (strcmp(*newval, "*") == 0)
		return true;
	copy = pstrdup(*newval);
	ok = SplitGUCList(copy, ',', &names);
	if (ok && names == NIL)
	{
		GUC_check_errdetail("The list names no database; \"*\" serves every database.");
		ok = false;
	}
	else if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	list_free(names);
	pfree(copy);
	return ok;
}

/*
 * pg_async_database_served tells whether the settings have pg_async serve the
 * database of that name.
 */
bool
pg_async_database_served(const char *dbname)
{
	List	   *names = pg_async_named_databases();
	ListCell   *lc;

	/* no names: every database */
	if (names == NIL)
		return true;
	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), dbname) == 0)
			return true;
	}
	return false;
}

/*
 * pg_async_named_databases returns the names the settings give, or NIL when
 * they serve every database.  (The check hook refuses a list that names
 * none, or does not parse.)
 */
List *
pg_async_named_databases(void)
{
	char	   *copy;
	List	   *names = NIL;

	if (pg_async_databases == NULL || strcmp(pg_async_databases, "*") == 0)
	{
		if (pg_async_database != NULL && pg_async_database[0] != '\0')
			return list_make1(pstrdup(pg_async_database));
		return NIL;
	}
	copy = pstrdup(pg_async_databases);
	if (!SplitGUCList(copy, ',', &names))
		return NIL;
	return names;
}

/*
 * pg_async_note_extension_created: CREATE EXTENSION pg_async runs in this
 * transaction; at its commit the launcher looks at this database again.
 */
void
pg_async_note_extension_created(void)
{
	/* async._check_setup() called by hand is only a check */
	if (creating_extension)
		extension_created = true;
}

/* pg_async_databases_end_xact: a committed CREATE EXTENSION, to the launcher */
void
pg_async_databases_end_xact(bool commit)
{
	AsyncDatabase *db;

	if (database_created)
	{
		database_created = false;
		if (commit)
			pg_async_wake_launcher();
	}
	if (!extension_created)
		return;
	extension_created = false;
	if (!commit || (db = pg_async_find_db(MyDatabaseId, true)) == NULL)
		return;
	/*
	 * A database known to be without the extension is looked at again.  The
	 * count tells a worker looking right now, with a snapshot older than
	 * this commit, to look again too (worker.c).
	 */
	pg_atomic_fetch_add_u32(&db->created, 1);
	pg_atomic_fetch_add_u32(&AsyncShmem->extensions_created, 1);
	{
		uint32		expected = ASYNC_DB_ABSENT;

		(void) pg_atomic_compare_exchange_u32(&db->state, &expected, ASYNC_DB_UNKNOWN);
	}
	pg_async_wake_launcher();
}

/*
 * hold_workers sends the workers of database dboid away and keeps the
 * launcher from starting others (ASYNC_DB_DROPPING), then waits up to
 * ASYNC_HOLD_WAIT_MS for them to exit.  Returns the database's entry, or
 * NULL when pg_async has none for it (all entries taken).  The caller
 * gives the database back (ASYNC_DB_UNKNOWN) if its command fails.
 */
static AsyncDatabase *
hold_workers(Oid dboid)
{
	AsyncDatabase *db = pg_async_find_db(dboid, true);
	TimestampTz start = GetCurrentTimestamp();

	if (db == NULL)
		return NULL;
	pg_atomic_write_u32(&db->state, ASYNC_DB_DROPPING);
	pg_memory_barrier();

	for (;;)
	{
		int			alive = 0;
		int			i;

		for (i = 0; i < AsyncShmem->nslots; i++)
		{
			AsyncWorkerSlot *slot = &AsyncShmem->slots[i];
			pid_t		pid;

			if (slot->dboid != dboid)
				continue;
			SpinLockAcquire(&slot->mutex);
			pid = slot->pid;
			SpinLockRelease(&slot->mutex);
			if (pid == 0)
				continue;
			alive++;
			(void) kill(pid, SIGTERM);
		}
		if (alive == 0 ||
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), ASYNC_HOLD_WAIT_MS))
			break;
		CHECK_FOR_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	return db;
}

/*
 * may_create_database tells whether the current role has CREATEDB (or is a
 * superuser), as CREATE DATABASE requires.
 */
static bool
may_create_database(void)
{
	HeapTuple	tup;
	bool		createdb;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return false;
	createdb = ((Form_pg_authid) GETSTRUCT(tup))->rolcreatedb;
	ReleaseSysCache(tup);
	return createdb;
}

/*
 * held_database tells which database a utility command needs without
 * connections, and whether it goes away (DROP DATABASE).  Only when the
 * command may succeed: the caller owns that database (and may create
 * databases, to copy it), and the command is not in a transaction block,
 * where those commands fail.  Otherwise any role could send another
 * database's workers away, running jobs and all, with a command that is
 * then refused.  A served database is never a template, which anyone with
 * CREATEDB may copy.
 */
static Oid
held_database(Node *parsetree, bool *drops)
{
	ListCell   *lc;
	Oid			dboid = InvalidOid;
	bool		creates = false;

	*drops = false;
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			*drops = true;
			dboid = get_database_oid(((DropdbStmt *) parsetree)->dbname, true);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				dboid = get_database_oid(((RenameStmt *) parsetree)->subname, true);
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					dboid = get_database_oid(((AlterDatabaseStmt *) parsetree)->dbname, true);
			}
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *opt = (DefElem *) lfirst(lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					dboid = get_database_oid(defGetString(opt), true);
			}
			creates = true;
			break;
		default:
			break;
	}
	if (!OidIsValid(dboid) || dboid == MyDatabaseId || IsTransactionBlock() ||
		!pg_async_database_ownercheck(dboid, GetUserId()) ||
		(creates && !may_create_database()))
		return InvalidOid;
	return dboid;
}

/*
 * pg_async_process_utility: the commands above send the workers of their
 * database away first, so that they neither wait for them nor fail; the
 * launcher starts them again after the command, unless the database is
 * gone.
 */
static void
pg_async_process_utility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	AsyncDatabase *volatile db = NULL;
	bool		drops = false;
	Oid			dboid;
	Node	   *parsetree = pstmt->utilityStmt;

	dboid = held_database(parsetree, &drops);

	PG_TRY();
	{
		/* in here: a cancel while the workers leave gives the database back */
		if (OidIsValid(dboid))
			db = hold_workers(dboid);
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (db != NULL && db->dboid == dboid)
			pg_atomic_write_u32(&db->state, ASYNC_DB_UNKNOWN);
		pg_async_wake_launcher();
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* a dropped database stays held until the launcher frees its entry */
	if (db != NULL && !drops && db->dboid == dboid)
		pg_atomic_write_u32(&db->state, ASYNC_DB_UNKNOWN);
	if (db != NULL)
		pg_async_wake_launcher();
	/* a new database, perhaps a copy of one with pg_async: once committed */
	if (IsA(parsetree, CreatedbStmt))
		database_created = true;

	/*
	 * COMMIT PREPARED makes jobs ready whose enqueue woke nobody (its PREPARE
	 * could not): an idle database would not look at them.
	 */
	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
	{
		AsyncDatabase *mine = pg_async_find_db(MyDatabaseId, false);

		if (mine != NULL)
		{
			pg_async_demand_workers(mine);
			/* and leases whose claim's commit could not count them */
			pg_async_leases_unknown(mine);
		}
	}
}

/* pg_async_install_utility_hook installs the hook above (preloaded only). */
void
pg_async_install_utility_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pg_async_process_utility;
}

PG_FUNCTION_INFO_V1(pg_async_database_served_sql);

/*
 * async._database_served(): whether the settings have the workers serve
 * this database, for async.health().
 */
Datum
pg_async_database_served_sql(PG_FUNCTION_ARGS)
{
	char	   *dbname = get_database_name(MyDatabaseId);

	PG_RETURN_BOOL(dbname != NULL && pg_async_database_served(dbname));
}

PG_FUNCTION_INFO_V1(pg_async_database_workers);

/*
 * async._database_workers(): whether this database is idle, and since when
 * it has waited for a worker slot (NULL: it does not), for async.health().
 */
Datum
pg_async_database_workers(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, true};
	AsyncDatabase *db = pg_async_find_db(MyDatabaseId, false);

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pg_async_database_workers: return type must be a row type");
	values[0] = BoolGetDatum(db != NULL && pg_atomic_read_u32(&db->idle) != 0);
	if (db != NULL && db->waiting_since != 0)
	{
		values[1] = TimestampTzGetDatum(db->waiting_since);
		nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
