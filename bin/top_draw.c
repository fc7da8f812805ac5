/*-------------------------------------------------------------------------
 *
 * top_draw.c
 *	  The frame of pg_async_top: the order of the functions, and the
 *	  header, the health checks, the functions, the workers and the help.
 *
 * bin/top_draw.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_async_top.h"

#define NAME_WIDTH_MIN	8		/* the function column is at least this wide */
#define NAME_WIDTH_MAX	32		/* and at most this wide */
#define EVENT_WIDTH_MAX 36		/* the widest event_id column */

static const char *const sort_names[SORT_COUNT] = {
	"name", "rate", "backlog", "oldest", "p95 wait", "failures"
};

/* the order of the functions, and whether the help shows */
SortKey		sort_key = SORT_NAME;
bool		sort_reverse = false;
bool		show_help = false;

/*
 * sort_value returns the number a function is sorted by (not for name).
 */
static double
sort_value(const FuncRow *f)
{
	switch (sort_key)
	{
		case SORT_RATE:
			return f->rate;
		case SORT_BACKLOG:
			return (double) f->ready;
		case SORT_OLDEST:
			return f->oldest;
		case SORT_WAIT:
			return f->wait_p95;
		case SORT_FAILED:
			return (double) f->failed;
		default:
			return 0;
	}
}

/*
 * compare_funcs orders functions for qsort: by name ascending, or by a
 * figure with the largest first; "r" reverses either.  Ties go by name.
 */
static int
compare_funcs(const void *a, const void *b)
{
	const FuncRow *fa = a;
	const FuncRow *fb = b;
	int			cmp = 0;

	if (sort_key != SORT_NAME)
	{
		double		va = sort_value(fa);
		double		vb = sort_value(fb);

		cmp = va > vb ? -1 : va < vb ? 1 : 0;
	}
	if (cmp == 0)
		cmp = strcmp(fa->name, fb->name);
	return sort_reverse ? -cmp : cmp;
}

/*
 * name_width returns the width of the function column: the longest name,
 * within NAME_WIDTH_MIN and NAME_WIDTH_MAX.
 */
static int
name_width(void)
{
	int			w = NAME_WIDTH_MIN;
	int			i;

	for (i = 0; i < nfuncs; i++)
		if (text_width(funcs[i].name) > w)
			w = text_width(funcs[i].name);
	if (workers_res != NULL)
		for (i = 0; i < PQntuples(workers_res); i++)
			if (text_width(PQgetvalue(workers_res, i, 2)) > w)
				w = text_width(PQgetvalue(workers_res, i, 2));
	return w > NAME_WIDTH_MAX ? NAME_WIDTH_MAX : w;
}

/*
 * draw_header prints the time, the connection, the versions and the
 * totals.
 */
static void
draw_header(void)
{
	const char *host = PQhost(conn);
	int			server = PQserverVersion(conn);
	int64_t		ready = 0,
				held = 0,
				scheduled = 0,
				running = 0,
				dead = 0,
				failed = 0;
	double		rate = -1;
	char		ratebuf[32];
	char		workersbuf[64] = "";
	char		healthbuf[64] = "";
	char		overbuf[32] = "";
	char		dbcount[32] = "";
	int			i;

	for (i = 0; i < nfuncs; i++)
	{
		ready += funcs[i].ready;
		held += funcs[i].held;
		scheduled += funcs[i].scheduled;
		running += funcs[i].running;
		dead += funcs[i].dead;
		failed += funcs[i].failed;
		if (funcs[i].rate >= 0)
			rate = (rate < 0 ? 0 : rate) + funcs[i].rate;
	}
	format_rate(ratebuf, sizeof(ratebuf), rate);

	if (workers_res != NULL)
	{
		int			busy = 0;

		for (i = 0; i < PQntuples(workers_res); i++)
			if (strcmp(PQgetvalue(workers_res, i, 1), "idle") != 0)
				busy++;
		snprintf(workersbuf, sizeof(workersbuf), "  workers %d/%d busy",
				 busy, PQntuples(workers_res));
	}
	if (health_res != NULL)
	{
		int			warning = 0,
					critical = 0;

		for (i = 0; i < PQntuples(health_res); i++)
		{
			if (strcmp(PQgetvalue(health_res, i, 1), "critical") == 0)
				critical++;
			else if (strcmp(PQgetvalue(health_res, i, 1), "ok") != 0)
				warning++;
		}
		if (warning == 0 && critical == 0)
			snprintf(healthbuf, sizeof(healthbuf), "  health: ok");
		else if (warning == 0)
			snprintf(healthbuf, sizeof(healthbuf), "  health: %d critical", critical);
		else if (critical == 0)
			snprintf(healthbuf, sizeof(healthbuf), "  health: %d warning", warning);
		else
			snprintf(healthbuf, sizeof(healthbuf), "  health: %d critical, %d warning",
					 critical, warning);
	}

	if (ndatabases > 1)
		snprintf(dbcount, sizeof(dbcount), " (%d of %d)", current_database + 1, ndatabases);
	put_line(interactive ? "\033[1m" : NULL,
			 "pg_async_top  %s  database %s%s on %s:%s  PostgreSQL %d.%d  pg_async %s",
			 sample_clock, PQdb(conn), dbcount, host && host[0] ? host : "localhost",
			 PQport(conn), server / 10000, server % 10000, ext_version);
	if (opts.once)
		snprintf(overbuf, sizeof(overbuf), " (over %gs)", opts.interval);
	put_line(NULL, "jobs/s %s%s  ready %lld  held %lld  scheduled %lld  running %lld  failed %lld  dead %lld%s%s",
			 ratebuf, overbuf, (long long) ready, (long long) held, (long long) scheduled,
			 (long long) running, (long long) failed, (long long) dead,
			 workersbuf, healthbuf);
	if (!opts.once)
		put_line(NULL, "every %gs  sort %s%s  keys: s sort, r reverse,%s h help, q quit",
				 opts.interval, sort_names[sort_key], sort_reverse ? " (reversed)" : "",
				 ndatabases > 1 ? " d database," : "");
	if (refresh_error[0] != '\0')
		put_line(interactive ? "\033[1;31m" : NULL, "refresh failed, showing %s: %s",
				 sample_time >= 0 ? "the last sample" : "nothing yet", refresh_error);
	if (!can_counters || !can_workers || !can_health)
		put_line(NULL, "(rates, failures, waits, workers and health need the privileges of pg_monitor)");
}

/*
 * draw_health prints the checks of async.health() that are not ok.
 */
static void
draw_health(void)
{
	int			i;
	int			shown = 0;

	if (health_res == NULL)
		return;
	for (i = 0; i < PQntuples(health_res); i++)
	{
		const char *status = PQgetvalue(health_res, i, 1);
		char		statusbuf[16];
		char		checkbuf[64];

		if (strcmp(status, "ok") == 0)
			continue;
		if (shown++ == 0)
			put_line(NULL, "%s", "");
		pad(statusbuf, sizeof(statusbuf), status, 8);
		pad(checkbuf, sizeof(checkbuf), PQgetvalue(health_res, i, 0), 16);
		put_line(!interactive ? NULL :
				 strcmp(status, "critical") == 0 ? "\033[1;31m" : "\033[1;33m",
				 "%s  %s  %s", statusbuf, checkbuf, PQgetvalue(health_res, i, 2));
		if (!PQgetisnull(health_res, i, 3))
			put_line(NULL, "%28s%s", "hint: ", PQgetvalue(health_res, i, 3));
	}
}

/*
 * draw_functions prints the table of functions, sorted.
 */
static void
draw_functions(void)
{
	int			nw = name_width();
	char		namebuf[NAME_WIDTH_MAX * 4 + 1];
	char		trendbuf[HISTORY * 4 + 1];
	char		ratebuf[32];
	char		oldestbuf[32];
	char		waitbuf[32];
	const char *trend_head = opts.once ? "" : "  TREND               ";
	int			i;

	qsort(funcs, nfuncs, sizeof(FuncRow), compare_funcs);
	put_line(NULL, "%s", "");
	pad(namebuf, sizeof(namebuf), "FUNCTION", nw);
	put_line(interactive ? "\033[7m" : NULL,
			 "%s  %7s%s  %7s  %6s  %7s  %5s  %7s  %8s  %7s  %7s",
			 namebuf, "RATE/s", trend_head, "READY", "HELD", "SCHED", "RUN", "OLDEST",
			 "P95 WAIT", "FAILED", "DEAD");
	if (nfuncs == 0)
		put_line(NULL, "(no function is registered)");
	for (i = 0; i < nfuncs; i++)
	{
		FuncRow    *f = &funcs[i];

		pad(namebuf, sizeof(namebuf), f->name, nw);
		format_rate(ratebuf, sizeof(ratebuf), f->rate);
		format_duration(oldestbuf, sizeof(oldestbuf), f->oldest);
		format_ms(waitbuf, sizeof(waitbuf), f->wait_p95);
		if (!opts.once)
		{
			trendbuf[0] = ' ';
			trendbuf[1] = ' ';
			sparkline(trendbuf + 2, sizeof(trendbuf) - 2, f);
		}
		else
			trendbuf[0] = '\0';
		if (!can_counters)
		{
			put_line(NULL, "%s  %7s%s  %7lld  %6lld  %7lld  %5lld  %7s  %8s  %7s  %7lld",
					 namebuf, "-", trendbuf, (long long) f->ready, (long long) f->held,
					 (long long) f->scheduled, (long long) f->running, oldestbuf,
					 "-", "-", (long long) f->dead);
			continue;
		}
		put_line(NULL, "%s  %7s%s  %7lld  %6lld  %7lld  %5lld  %7s  %8s  %7lld  %7lld",
				 namebuf, ratebuf, trendbuf, (long long) f->ready, (long long) f->held,
				 (long long) f->scheduled, (long long) f->running, oldestbuf,
				 waitbuf, (long long) f->failed, (long long) f->dead);
	}
}

/*
 * draw_workers prints the table of workers.
 */
static void
draw_workers(void)
{
	int			nw = name_width();
	int			ew = 8;
	char		namebuf[NAME_WIDTH_MAX * 4 + 1];
	char		eventbuf[EVENT_WIDTH_MAX * 4 + 1];
	char		forbuf[32];
	int			i;

	if (workers_res == NULL)
		return;
	for (i = 0; i < PQntuples(workers_res); i++)
		if (text_width(PQgetvalue(workers_res, i, 3)) > ew)
			ew = text_width(PQgetvalue(workers_res, i, 3));
	if (ew > EVENT_WIDTH_MAX)
		ew = EVENT_WIDTH_MAX;

	put_line(NULL, "%s", "");
	pad(namebuf, sizeof(namebuf), "FUNCTION", nw);
	pad(eventbuf, sizeof(eventbuf), "EVENT_ID", ew);
	put_line(interactive ? "\033[7m" : NULL, "%8s  %-8s  %s  %s  %7s  %11s  %9s",
			 "PID", "STATE", namebuf, eventbuf, "ATTEMPT", "RUNNING FOR", "JOBS DONE");
	if (PQntuples(workers_res) == 0)
		put_line(NULL, "(no worker serves this database)");
	for (i = 0; i < PQntuples(workers_res); i++)
	{
		bool		idle = PQgetisnull(workers_res, i, 2);

		pad(namebuf, sizeof(namebuf), idle ? NULL : PQgetvalue(workers_res, i, 2), nw);
		pad(eventbuf, sizeof(eventbuf), idle ? NULL : PQgetvalue(workers_res, i, 3), ew);
		format_duration(forbuf, sizeof(forbuf),
						PQgetisnull(workers_res, i, 5) ? -1 :
						strtod(PQgetvalue(workers_res, i, 5), NULL));
		put_line(NULL, "%8s  %-8s  %s  %s  %7s  %11s  %9s",
				 PQgetvalue(workers_res, i, 0), PQgetvalue(workers_res, i, 1),
				 namebuf, eventbuf,
				 PQgetisnull(workers_res, i, 4) ? "-" : PQgetvalue(workers_res, i, 4),
				 forbuf, PQgetvalue(workers_res, i, 6));
	}
}

/*
 * draw_help prints the keys and what the columns mean.
 */
static void
draw_help(void)
{
	static const char *const lines[] = {
		"Keys",
		"  q          quit",
		"  s          sort the functions by the next column:",
		"             name, rate, backlog, oldest, p95 wait, failures",
		"  r          reverse the order",
		"  d, D       the next, the previous database watched (-d given more than once)",
		"  h, ?       show or hide this help",
		"",
		"Functions (async.stats and async.function_stats)",
		"  RATE/s     attempts finished (succeeded or failed) per second since the last refresh",
		"  TREND      the rate of the last 20 refreshes, scaled to their highest",
		"  READY      jobs that are due and wait for a worker: the backlog",
		"  SCHED      jobs queued for later, retries waiting out their delay included",
		"  RUN        jobs running now",
		"  OLDEST     how long the oldest ready job has waited",
		"  P95 WAIT   95th percentile of the queue wait (from due to start), since the last reset",
		"  FAILED     failed attempts since the last reset of the counters",
		"  DEAD       dead jobs still in async.jobs (see async.dead_letters)",
		"",
		"Workers (async.workers): the job each one runs, for how long, and its jobs done",
		"Health: the checks of async.health() that are not ok",
		"",
		"Press any key to go back.",
		NULL
	};
	int			i;

	put_line(NULL, "%s", "");
	for (i = 0; lines[i] != NULL; i++)
		put_line(NULL, "%s", lines[i]);
}

/*
 * draw draws one frame: on the terminal from the top left corner, clearing
 * what the previous frame left below it.
 */
void
draw(void)
{
	lines_out = 0;
	if (interactive)
	{
		read_window_size();
		fputs("\033[H", stdout);
	}
	draw_header();
	if (show_help)
		draw_help();
	else
	{
		draw_health();
		draw_functions();
		draw_workers();
	}
	if (interactive)
		fputs("\033[J", stdout);
	fflush(stdout);
}
