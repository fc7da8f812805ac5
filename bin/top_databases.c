/*-------------------------------------------------------------------------
 *
 * top_databases.c
 *	  Several databases watched at once (pg_async serves every database
 *	  that has it): each database keeps its connection and last sample
 *	  here, and the one shown has them in the globals that top_sample.c
 *	  fills and top_draw.c draws.  Switching saves the one and loads the
 *	  other; only the database shown is sampled.
 *
 * bin/top_databases.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "pg_async_top.h"

/* what a database has while another is shown */
typedef struct WatchedDatabase
{
	PGconn	   *conn;
	char	   *ext_version;
	bool		can_counters;
	bool		can_workers;
	bool		can_health;
	bool		has_held;
	FuncRow    *funcs;
	int			nfuncs;
	PGresult   *workers_res;
	PGresult   *health_res;
	double		sample_time;
	char		sample_clock[32];
	char		refresh_error[512];
} WatchedDatabase;

static WatchedDatabase watched[MAX_DATABASES];
int			ndatabases = 0;
int			current_database = -1;

/* save keeps the globals of the database shown in its slot */
static void
save(WatchedDatabase *w)
{
	w->conn = conn;
	w->ext_version = ext_version;
	w->can_counters = can_counters;
	w->can_workers = can_workers;
	w->can_health = can_health;
	w->has_held = has_held;
	w->funcs = funcs;
	w->nfuncs = nfuncs;
	w->workers_res = workers_res;
	w->health_res = health_res;
	w->sample_time = sample_time;
	memcpy(w->sample_clock, sample_clock, sizeof(sample_clock));
	memcpy(w->refresh_error, refresh_error, sizeof(refresh_error));
}

/* load makes a database's slot the globals */
static void
load(const WatchedDatabase *w)
{
	conn = w->conn;
	ext_version = w->ext_version;
	can_counters = w->can_counters;
	can_workers = w->can_workers;
	can_health = w->can_health;
	has_held = w->has_held;
	funcs = w->funcs;
	nfuncs = w->nfuncs;
	workers_res = w->workers_res;
	health_res = w->health_res;
	sample_time = w->sample_time;
	memcpy(sample_clock, w->sample_clock, sizeof(sample_clock));
	memcpy(refresh_error, w->refresh_error, sizeof(refresh_error));
}

/*
 * add_database connects to one more database and checks for the extension
 * there (exiting on failure, as for one database); it is then shown.
 */
void
add_database(const char *dbname)
{
	WatchedDatabase *w;

	if (ndatabases >= MAX_DATABASES)
		die("too many databases: pg_async_top watches at most %d", MAX_DATABASES);
	w = &watched[ndatabases];
	if (current_database >= 0)
		save(&watched[current_database]);
	memset(w, 0, sizeof(*w));
	w->sample_time = -1;
	load(w);
	connect_db(dbname);
	check_extension();
	current_database = ndatabases++;
	save(w);
}

/* show_database makes database i (of those added) the one shown */
void
show_database(int i)
{
	if (i == current_database || i < 0 || i >= ndatabases)
		return;
	save(&watched[current_database]);
	load(&watched[i]);
	current_database = i;
}
