/*-------------------------------------------------------------------------
 *
 * top_sample.c
 *	  The database side of pg_async_top: the connection, the checks of the
 *	  extension and of the role's privileges, and the sample of the
 *	  statistics each refresh takes.
 *
 * bin/top_sample.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_async_top.h"

PGconn	   *conn;
char	   *ext_version;
bool		can_counters;		/* may read async.function_stats */
bool		can_workers;		/* may read async.workers */
bool		can_health;			/* may execute async.health() */
bool		has_held;			/* async.stats has the column held (0.4) */

/* the last sample */
FuncRow    *funcs;
int			nfuncs;
PGresult   *workers_res;
PGresult   *health_res;
double		sample_time = -1;	/* CLOCK_MONOTONIC seconds; -1: none yet */
char		sample_clock[32];	/* local wall-clock time of the sample */
char		refresh_error[512]; /* why the last refresh failed, or "" */

/*
 * strdup_or_die copies a string and exits when memory runs out.
 */
static char *
strdup_or_die(const char *s)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
		die("out of memory");
	return copy;
}

/*
 * connect_db opens the connection to dbname (a name or a connection
 * string) from the options, the PG* environment variables and libpq's
 * defaults, and exits on failure.
 */
void
connect_db(const char *dbname)
{
	const char *keywords[6];
	const char *values[6];
	int			n = 0;

	if (opts.host)
	{
		keywords[n] = "host";
		values[n++] = opts.host;
	}
	if (opts.port)
	{
		keywords[n] = "port";
		values[n++] = opts.port;
	}
	if (opts.user)
	{
		keywords[n] = "user";
		values[n++] = opts.user;
	}
	keywords[n] = "fallback_application_name";
	values[n++] = "pg_async_top";
	/* last, so that a connection string in it overrides the options above */
	keywords[n] = "dbname";
	values[n++] = dbname ? dbname : "";
	keywords[n] = NULL;
	values[n] = NULL;

	conn = PQconnectdbParams(keywords, values, 1);
	if (conn == NULL)
		die("could not connect: out of memory");
	if (PQstatus(conn) != CONNECTION_OK)
		die("could not connect to the database: %s", PQerrorMessage(conn));
}

/*
 * check_extension exits when pg_async is not installed in the database,
 * and finds out which of the monitoring objects the role may read.
 */
void
check_extension(void)
{
	PGresult   *res;

	res = PQexec(conn,
				 "SELECT e.extversion,"
				 " pg_catalog.has_table_privilege('async.function_stats', 'SELECT')"
				 "  AND pg_catalog.has_function_privilege('async._function_stats()', 'EXECUTE'),"
				 " pg_catalog.has_table_privilege('async.workers', 'SELECT')"
				 "  AND pg_catalog.has_function_privilege('async._workers()', 'EXECUTE'),"
				 " pg_catalog.has_function_privilege('async.health(interval, interval)', 'EXECUTE'),"
				 " EXISTS (SELECT FROM pg_catalog.pg_attribute a"
				 "  WHERE a.attrelid = pg_catalog.to_regclass('async.stats')"
				 "    AND a.attname = 'held' AND NOT a.attisdropped)"
				 " FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_async'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		die("could not check for the pg_async extension: %s", PQerrorMessage(conn));
	if (PQntuples(res) == 0)
		die("the extension pg_async is not installed in database \"%s\"", PQdb(conn));
	ext_version = strdup_or_die(PQgetvalue(res, 0, 0));
	can_counters = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	can_workers = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	can_health = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
	has_held = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
	PQclear(res);
}

/*
 * query runs one statement that returns rows.  On failure it keeps the
 * message in refresh_error and returns NULL.
 */
static PGresult *
query(const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *nl;

		snprintf(refresh_error, sizeof(refresh_error), "%s", PQerrorMessage(conn));
		if ((nl = strchr(refresh_error, '\n')) != NULL)
			*nl = '\0';
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * find_func returns the function called name in rows, or NULL.
 */
static FuncRow *
find_func(FuncRow *rows, int n, const char *name)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(rows[i].name, name) == 0)
			return &rows[i];
	return NULL;
}

/*
 * free_funcs frees an array of functions.
 */
static void
free_funcs(FuncRow *rows, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		free(rows[i].name);
	free(rows);
}

/*
 * sample reads the functions, the workers and the health checks, and
 * computes each function's rate from the counters of the previous sample.
 * It returns false, with the reason in refresh_error, when a query fails;
 * the previous sample then stays.  A broken connection is reset first.
 */
bool
sample(void)
{
	/* the held jobs are column 9; before 0.4, ready counted them */
	static const char *const funcs_sql =
		"SELECT COALESCE(s.function, c.function),"
		" COALESCE(s.ready, 0), COALESCE(s.scheduled, 0), COALESCE(s.running, 0),"
		" COALESCE(s.dead, 0),"
		" COALESCE(EXTRACT(epoch FROM s.oldest_ready_age), -1),"
		" COALESCE(c.succeeded + c.failed, 0), COALESCE(c.failed, 0),"
		" CASE WHEN c.started > 0 THEN c.wait_p95_ms ELSE -1 END, COALESCE(%s, 0)"
		" FROM async.stats s FULL JOIN async.function_stats c ON c.function = s.function";
	static const char *const funcs_nocounters_sql =
		"SELECT s.function, s.ready, s.scheduled, s.running, s.dead,"
		" COALESCE(EXTRACT(epoch FROM s.oldest_ready_age), -1), 0, 0, -1, %s"
		" FROM async.stats s";
	char		funcs_buf[1024];
	static const char *const workers_sql =
		"SELECT w.pid, w.state, w.function, w.event_id, w.attempt,"
		" EXTRACT(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) w.started_at),"
		" w.jobs_done FROM async.workers w ORDER BY w.pid";
	static const char *const health_sql =
		"SELECT h.\"check\", h.status, h.detail, h.hint FROM async.health() h";
	PGresult   *fres;
	PGresult   *wres = NULL;
	PGresult   *hres = NULL;
	FuncRow    *rows;
	int			n;
	int			i;
	double		now;
	double		dt;
	time_t		wall;

	refresh_error[0] = '\0';
	if (PQstatus(conn) == CONNECTION_BAD)
	{
		PQreset(conn);
		if (PQstatus(conn) != CONNECTION_OK)
		{
			char	   *nl;

			snprintf(refresh_error, sizeof(refresh_error), "connection lost: %s",
					 PQerrorMessage(conn));
			if ((nl = strchr(refresh_error, '\n')) != NULL)
				*nl = '\0';
			return false;
		}
	}

	snprintf(funcs_buf, sizeof(funcs_buf),
			 can_counters ? funcs_sql : funcs_nocounters_sql, has_held ? "s.held" : "0");
	fres = query(funcs_buf);
	if (fres == NULL)
		return false;
	if (can_workers && (wres = query(workers_sql)) == NULL)
	{
		PQclear(fres);
		return false;
	}
	if (can_health && (hres = query(health_sql)) == NULL)
	{
		PQclear(fres);
		PQclear(wres);
		return false;
	}
	now = mono_seconds();
	dt = sample_time >= 0 ? now - sample_time : -1;

	n = PQntuples(fres);
	rows = calloc(n > 0 ? n : 1, sizeof(FuncRow));
	if (rows == NULL)
		die("out of memory");
	for (i = 0; i < n; i++)
	{
		FuncRow    *f = &rows[i];
		FuncRow    *prev;

		f->name = strdup_or_die(PQgetvalue(fres, i, 0));
		f->ready = strtoll(PQgetvalue(fres, i, 1), NULL, 10);
		f->scheduled = strtoll(PQgetvalue(fres, i, 2), NULL, 10);
		f->running = strtoll(PQgetvalue(fres, i, 3), NULL, 10);
		f->dead = strtoll(PQgetvalue(fres, i, 4), NULL, 10);
		f->oldest = strtod(PQgetvalue(fres, i, 5), NULL);
		f->done = strtoll(PQgetvalue(fres, i, 6), NULL, 10);
		f->failed = strtoll(PQgetvalue(fres, i, 7), NULL, 10);
		f->wait_p95 = strtod(PQgetvalue(fres, i, 8), NULL);
		f->held = strtoll(PQgetvalue(fres, i, 9), NULL, 10);
		f->rate = -1;

		prev = find_func(funcs, nfuncs, f->name);
		if (prev != NULL)
		{
			memcpy(f->history, prev->history, sizeof(f->history));
			f->nhistory = prev->nhistory;
		}
		if (can_counters && dt > 0)
		{
			int64_t		before = prev ? prev->done : 0;

			/* after async.stats_reset() the counters start again from 0 */
			f->rate = (f->done >= before ? f->done - before : f->done) / dt;
			if (f->nhistory == HISTORY)
				memmove(f->history, f->history + 1, sizeof(double) * (HISTORY - 1));
			else
				f->nhistory++;
			f->history[f->nhistory - 1] = f->rate;
		}
	}
	PQclear(fres);

	free_funcs(funcs, nfuncs);
	funcs = rows;
	nfuncs = n;
	PQclear(workers_res);
	workers_res = wres;
	PQclear(health_res);
	health_res = hres;
	sample_time = now;
	wall = time(NULL);
	strftime(sample_clock, sizeof(sample_clock), "%Y-%m-%d %H:%M:%S", localtime(&wall));
	return true;
}
