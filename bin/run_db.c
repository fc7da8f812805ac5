/*-------------------------------------------------------------------------
 *
 * run_db.c
 *	  The database side of pg_async_run: two connections, one that waits in
 *	  async.claim (asynchronously: the runner keeps watching its commands
 *	  meanwhile), the other that finishes jobs with async.complete and
 *	  async.fail; and connecting again after either is lost.
 *
 * bin/run_db.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_async_run.h"

/* note writes a line of the runner's log to stderr */
void
note(const char *fmt,...)
{
	va_list		ap;

	fputs("pg_async_run: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static PGconn *
connect_one(const char *conninfo, bool report)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {conninfo, "pg_async_run", NULL};
	PGconn	   *conn = PQconnectdbParams(keys, values, 1);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		if (report)
		{
			char	   *msg = PQerrorMessage(conn);
			size_t		len = strlen(msg);

			while (len > 0 && msg[len - 1] == '\n')
				len--;
			note("could not connect: %.*s", (int) len, msg);
		}
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* db_connect opens both connections; false (after closing both) if it cannot */
bool
db_connect(Db *db, bool report)
{
	db_disconnect(db);
	db->claim = connect_one(db->conninfo, report);
	if (db->claim != NULL)
		db->finish = connect_one(db->conninfo, report);
	if (db->claim == NULL || db->finish == NULL)
	{
		db_disconnect(db);
		return false;
	}
	return true;
}

void
db_disconnect(Db *db)
{
	if (db->claim)
		PQfinish(db->claim);
	if (db->finish)
		PQfinish(db->finish);
	db->claim = db->finish = NULL;
	db->claiming = false;
}

bool
db_ok(Db *db)
{
	return db->claim != NULL && db->finish != NULL &&
		PQstatus(db->claim) == CONNECTION_OK && PQstatus(db->finish) == CONNECTION_OK;
}

/*
 * db_finish_job records the outcome of a job: async.complete with its
 * result (a standard output that is not valid JSON completes it without
 * one), or async.fail with message.  Returns false if the connection was
 * lost, for the caller to try again once connected; a lease that is no
 * longer the job's (its deadline passed) is logged, and the job dropped.
 */
bool
db_finish_job(Db *db, Job *job, bool succeeded, const char *message)
{
	const char *params[3] = {job->job_id, job->lease, message};
	PGresult   *res;
	const char *sqlstate;

	if (!db_ok(db))
		return false;
	res = PQexecParams(db->finish,
					   succeeded ? "SELECT async.complete($1::bigint, $2::uuid, $3::jsonb)"
					   : "SELECT async.fail($1::bigint, $2::uuid, $3)",
					   3, NULL, params, NULL, NULL, 0);
	sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (succeeded && PQresultStatus(res) == PGRES_FATAL_ERROR && sqlstate != NULL &&
		strcmp(sqlstate, "22P02") == 0)
	{
		/* its output is not JSON: no result */
		PQclear(res);
		params[2] = NULL;
		res = PQexecParams(db->finish, "SELECT async.complete($1::bigint, $2::uuid, $3::jsonb)",
						   3, NULL, params, NULL, NULL, 0);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		bool		lost = PQstatus(db->finish) != CONNECTION_OK;

		if (!lost)
			note("could not record the outcome of event \"%s\": %s",
				 job->event_id, PQresultErrorMessage(res));
		PQclear(res);
		return !lost;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		note("event \"%s\" attempt %s: its lease had expired; the outcome (%s) is not recorded",
			 job->event_id, job->attempt, succeeded ? "success" : "failure");
	PQclear(res);
	return true;
}

/*
 * db_complete_many completes, in one statement and one commit, n jobs whose
 * commands succeeded with no result.  Returns false if the connection was
 * lost; leases that had expired are logged, as a count.
 */
bool
db_complete_many(Db *db, Job **jobs, int n)
{
	size_t		cap = 64 + (size_t) n * 64;
	char	   *ids = malloc(cap);
	char	   *leases = malloc(cap);
	size_t		il = 0,
				ll = 0;
	const char *params[2];
	PGresult   *res;
	int			i;
	bool		ok = true;

	if (ids == NULL || leases == NULL)
	{
		note("out of memory");
		exit(1);
	}
	if (!db_ok(db))
	{
		free(ids);
		free(leases);
		return false;
	}
	/* job ids are digits and leases hexadecimal and dashes: plain array literals */
	ids[il++] = '{';
	leases[ll++] = '{';
	for (i = 0; i < n; i++)
	{
		il += snprintf(ids + il, cap - il, "%s%s", i ? "," : "", jobs[i]->job_id);
		ll += snprintf(leases + ll, cap - ll, "%s%s", i ? "," : "", jobs[i]->lease);
	}
	snprintf(ids + il, cap - il, "}");
	snprintf(leases + ll, cap - ll, "}");
	params[0] = ids;
	params[1] = leases;
	res = PQexecParams(db->finish, "SELECT async.complete_many($1::bigint[], $2::uuid[])",
					   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (PQstatus(db->finish) != CONNECTION_OK)
			ok = false;
		else
			note("could not record the success of %d events: %s", n, PQresultErrorMessage(res));
	}
	else if (atoi(PQgetvalue(res, 0, 0)) < n)
		note("%d of %d events had lost their lease (their deadline passed): their success is not recorded",
			 n - atoi(PQgetvalue(res, 0, 0)), n);
	PQclear(res);
	free(ids);
	free(leases);
	return ok;
}
