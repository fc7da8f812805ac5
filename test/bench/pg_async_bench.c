/*-------------------------------------------------------------------------
 *
 * pg_async_bench.c
 *	  Benchmark of pg_async, on libpq.
 *
 * Scenarios (--scenario NAME, repeatable or comma-separated; default all):
 *
 *	drain	 N no-op jobs queued in one transaction; time from its commit until
 *			 every job has succeeded -> jobs/s, the median of three rounds.
 *	enqueue  K connections commit single-row INSERTs for D seconds, into
 *			 async.jobs, into a plain table with the same columns, into one
 *			 that also has the same indexes (alone, and while a bare consumer
 *			 deletes its rows or marks them done), and into async.jobs with
 *			 the jobs due in a day (the enqueue alone), interleaved in four
 *			 rounds -> inserts/s and ratios, the median of the rounds' ratios.
 *	latency  single-row enqueues at a fixed offered rate; the handler logs
 *			 clock_timestamp() at its start -> handler start minus the
 *			 enqueue's commit return, p50/p95/p99/max.
 *	mixed	 producers at 80% of the drain rate (or --rate) for D seconds
 *			 while the workers run -> sustained jobs/s, latency, backlog.
 *	backlog  N jobs, 10% scheduled an hour ahead, 5% failing -> drain rate
 *			 of the ready ones, against the drain rate.
 *	soak	 a fixed rate for D seconds; every interval the sizes of
 *			 async.jobs and its indexes, dead tuples, WAL bytes per job.
 *	held	 N jobs of a function with concurrency 0, then the drain's number
 *			 of no-op jobs behind them -> their drain rate, against drains
 *			 of the same size just before and after, without the held jobs.
 *	held-xmin drains while a snapshot is held -> the last against the one
 *			 before it.
 *	priorities drains of the drain's number of no-op jobs, all of priority
 *			 0 and of priorities -2 to 2 (four in five not 0), alternating
 *			 in five pairs -> the median ratio; then one job of priority
 *			 -10 enqueued behind half as many queued ones -> how many of
 *			 those it overtook.
 *	keys	 drains of the drain's number of no-op jobs spread over
 *			 --key-tenants tenants, of a function without a limit and of one
 *			 with concurrency_key and --key-concurrency (bench_keyed,
 *			 registered for this scenario only), alternating in five pairs
 *			 -> the median ratio.
 *
 * With --rate-limited=N, N more functions (bench_rate_1 to N, bench_noop
 * with rate_limit 1000) are registered before any scenario, and get no job:
 * while any function has a limit, every claim of the workers counts the
 * limits (the full claim), which is what the option measures.
 *
 * With --keyed-later=N, a function with a concurrency_key (bench_later,
 * bench_noop with key_concurrency 1) gets N jobs due in 30 days, each under
 * its own key, queued again after each reset of the queue: what a role's
 * jobs queued for later cost every claim of the workers, whoever's jobs it
 * takes (docs/security.md).
 *
 * The program creates the handlers and tables it needs (bench_noop,
 * bench_latency, bench_fail, bench_latency_log, bench_plain, bench_plain_idx
 * in schema public), truncates async.jobs before each run, and must connect
 * as a superuser of the database that pg_async.database names.  The server
 * must run on the same machine: latency compares the client's
 * CLOCK_REALTIME with the server's clock_timestamp().
 *
 * While the workers drain, the program never holds a transaction or a
 * long statement open (a held snapshot would keep dead index entries alive
 * and slow the queue): it polls async.workers.jobs_done, a shared-memory
 * counter, with short autocommit statements.
 *
 * Progress goes to stderr; the results go to stdout, as a table or, with
 * --json, as one JSON object.
 *
 * test/bench/pg_async_bench.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

#define MAX_FIGURES		256
#define MAX_SETTINGS	24
#define MAX_INDEXES		8
#define MAX_SAMPLES		1024
#define POLL_US			5000	/* how often jobs_done is read */
#define STALL_US		60000000	/* give up when no job finishes for this long */
#define SIZE_FLOOR		(1024 * 1024)	/* soak: smaller sizes count as 1 MB */
#define DEAD_FLOOR		1000	/* soak: fewer dead tuples count as 1000 */
#define DRAIN_ROUNDS	3		/* drain: rounds, of which the median counts */
#define ENQUEUE_ROUNDS	4		/* enqueue: rounds, of which the median counts */

/* scenarios, in the order they run */
enum
{
	SC_DRAIN,
	SC_ENQUEUE,
	SC_LATENCY,
	SC_MIXED,
	SC_BACKLOG,
	SC_SOAK,
	SC_HELD,
	SC_HELD_XMIN,
	SC_PRIORITIES,
	SC_KEYS,
	SC_COUNT
};

static const char *const scenario_names[SC_COUNT] = {
	"drain", "enqueue", "latency", "mixed", "backlog", "soak", "held", "held-xmin",
	"priorities", "keys"
};

/* command-line options; -1 (or a negative rate) means "not given" */
typedef struct Options
{
	const char *conninfo;
	bool		scenarios[SC_COUNT];
	bool		json;
	bool		held_xmin_priorities;	/* held-xmin drains of mixed priorities */
	bool		quick;
	int64_t		n;				/* -n: drain, latency and backlog */
	double		duration;		/* --duration: enqueue, mixed and soak */
	double		rate;			/* --rate: latency, mixed and soak */
	int64_t		drain_jobs;
	int64_t		latency_events;
	int64_t		backlog_jobs;
	int64_t		held_jobs;
	int64_t		held_xmin_jobs;
	int			held_xmin_drains;
	double		enqueue_duration;
	double		mixed_duration;
	double		soak_duration;
	double		latency_rate;
	double		mixed_rate;
	double		soak_rate;
	int			connections;
	int			producers;
	double		soak_interval;
	double		soak_warmup;
	int			soak_retention;
	bool		soak_hold;		/* --soak-hold: a snapshot held for half the soak */
	int			key_tenants;	/* --key-tenants: the keys scenario's tenants */
	int			key_concurrency;	/* --key-concurrency: its limit per tenant */
	int			rate_limited;	/* --rate-limited: idle functions with a rate limit */
	int			keyed_later;	/* --keyed-later: keyed jobs queued for later */
	double		timeout;
} Options;

/* one figure of the results: a number, a flag or a text */
typedef enum FigureKind
{
	FIG_NUM,
	FIG_INT,
	FIG_BOOL,
	FIG_TEXT
} FigureKind;

typedef struct Figure
{
	int			scenario;
	char		key[48];		/* JSON key */
	char		label[48];		/* label in the table */
	FigureKind	kind;
	double		value;
	char		text[64];
	char		target[32];		/* "" when there is no target */
	int			pass;			/* -1: no target, 0: missed, 1: met */
} Figure;

/* one soak sample */
typedef struct SoakSample
{
	double		elapsed;		/* seconds since the soak started */
	int64_t		enqueued;		/* jobs committed by producers in the interval */
	int64_t		done;			/* jobs run by the workers in the interval */
	int64_t		total_size;		/* pg_total_relation_size(async.jobs) */
	int64_t		heap_size;		/* pg_relation_size(async.jobs) */
	int64_t		index_size[MAX_INDEXES];
	int64_t		live_tup;
	int64_t		dead_tup;
	int64_t		autovacuums;
	int64_t		wal_bytes;		/* WAL written in the interval */
	int64_t		ready;			/* ready jobs at the sample */
	bool		held;			/* a snapshot was held through the interval */
} SoakSample;

/* one producer thread of latency, mixed and soak */
typedef struct Producer
{
	pthread_t	thread;
	PGconn	   *conn;
	int			index;			/* this producer's number */
	int			nproducers;
	const char *function;		/* the registered name to enqueue */
	double		rate;			/* offered rate of all producers, jobs/s */
	int64_t		nevents;		/* events of all producers */
	int64_t		t0;				/* start, CLOCK_MONOTONIC microseconds */
	int64_t		deadline;		/* stop then (monotonic us); 0: never */
	int			max_batch;		/* most events per INSERT */
	int64_t    *commit_us;		/* by seq: CLOCK_REALTIME of COMMIT return */
	int64_t		sent;			/* events committed (read while running) */
	int64_t		inserts;		/* INSERT statements */
	int64_t		max_late_us;	/* worst lag behind the schedule */
	int64_t		end;			/* when it stopped (monotonic us) */
} Producer;

/* one inserting thread of enqueue */
typedef struct Inserter
{
	pthread_t	thread;
	PGconn	   *conn;
	const char *stmt;			/* prepared statement to run */
	int			index;
	int64_t		deadline;		/* monotonic us */
	int64_t		count;			/* committed INSERTs */
	int64_t		end;			/* monotonic us */
} Inserter;

/* the consumer of a bare queue in enqueue (see bare_consumer_main) */
typedef struct BareConsumer
{
	pthread_t	thread;
	PGconn	   *conn;
	const char *stmt;			/* prepared statement: take up to 100 rows */
	volatile bool producing;	/* cleared when the inserters have stopped */
	int64_t		taken;			/* rows taken */
	int64_t		transactions;	/* statements that took rows */
} BareConsumer;

/* latency percentiles, in milliseconds */
typedef struct Latency
{
	int64_t		count;
	double		min;
	double		mean;
	double		p50;
	double		p95;
	double		p99;
	double		max;
} Latency;

static Options opts;
static Figure figures[MAX_FIGURES];
static int	nfigures = 0;
static char setting_names[MAX_SETTINGS][64];
static char setting_values[MAX_SETTINGS][128];
static int	nsettings = 0;
static SoakSample *soak_samples;
static int	nsoak_samples = 0;
static char soak_index_names[MAX_INDEXES][64];
static int	nsoak_indexes = 0;
static double drain_rate = 0;	/* jobs/s measured by drain in this run */

static void die(const char *fmt,...)
			__attribute__((format(printf, 1, 2), noreturn));
static void progress(const char *fmt,...)
			__attribute__((format(printf, 1, 2)));
static void vmessage(const char *fmt, va_list ap)
			__attribute__((format(printf, 1, 0)));

/*
 * vmessage prints one "pg_async_bench: " line on stderr.
 */
static void
vmessage(const char *fmt, va_list ap)
{
	fprintf(stderr, "pg_async_bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	fflush(stderr);
}

/*
 * die prints an error message and exits.
 */
static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
	exit(1);
}

/*
 * progress prints a progress line on stderr.
 */
static void
progress(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vmessage(fmt, ap);
	va_end(ap);
}

/*
 * mono_us returns CLOCK_MONOTONIC in microseconds, for durations.
 */
static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * real_us returns CLOCK_REALTIME in microseconds since the Unix epoch, the
 * clock that the server's clock_timestamp() reads.
 */
static int64_t
real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * sleep_until sleeps until the monotonic time t (microseconds).
 */
static void
sleep_until(int64_t t)
{
	struct timespec ts;

	ts.tv_sec = t / 1000000;
	ts.tv_nsec = (t % 1000000) * 1000;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/*
 * sleep_us sleeps for us microseconds.
 */
static void
sleep_us(int64_t us)
{
	sleep_until(mono_us() + us);
}

/*
 * connect_db opens a connection with the conninfo of -d (or the PG*
 * environment variables) and exits on failure.
 */
static PGconn *
connect_db(void)
{
	const char *keywords[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {opts.conninfo, "pg_async_bench", NULL};
	PGconn	   *conn;

	conn = PQconnectdbParams(keywords, values, 1);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		die("could not connect: %s", conn ? PQerrorMessage(conn) : "out of memory");
	return conn;
}

/*
 * check_result exits with the server's message unless res succeeded.
 */
static void
check_result(PGconn *conn, PGresult *res, const char *what)
{
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		die("%s failed: %s", what, PQerrorMessage(conn));
}

/*
 * exec_command runs one statement and exits on error.
 */
static void
exec_command(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	check_result(conn, res, sql);
	PQclear(res);
}

/*
 * query_int64 runs a query and returns its first value as an integer (0
 * when it is NULL).
 */
static int64_t
query_int64(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	int64_t		v = 0;

	check_result(conn, res, sql);
	if (PQntuples(res) < 1 || PQnfields(res) < 1)
		die("query returned no value: %s", sql);
	if (!PQgetisnull(res, 0, 0))
		v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
}

/*
 * query_text runs a query and copies its first value into buf.
 */
static void
query_text(PGconn *conn, const char *sql, char *buf, size_t len)
{
	PGresult   *res = PQexec(conn, sql);

	check_result(conn, res, sql);
	if (PQntuples(res) < 1 || PQnfields(res) < 1)
		die("query returned no value: %s", sql);
	snprintf(buf, len, "%s", PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
	PQclear(res);
}

/*
 * report_stall prints, before the program gives up on jobs that stopped
 * finishing, what the server is doing: the unfinished jobs by function and
 * state, the reservations, and what each worker and other backend waits
 * on.  A stall is rare and seldom comes again on demand: the report is the
 * evidence.  Errors here are printed, not fatal.
 */
static void
report_stall(PGconn *conn)
{
	static const char *const queries[] = {
		"SELECT function, state, limited, paused, key IS NOT NULL AS keyed, count(*)"
		"  FROM async.jobs WHERE finished_at IS NULL GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2",
		"SELECT function, count(*) AS reserved, count(DISTINCT key) AS keys"
		"  FROM async.running GROUP BY 1",
		"SELECT * FROM async.workers",
		"SELECT pid, backend_type, state, wait_event_type, wait_event,"
		"       now() - xact_start AS xact_age, left(query, 100) AS query"
		"  FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type <> 'checkpointer'"
		" ORDER BY backend_type, pid",
	};
	int			q;

	for (q = 0; q < (int) (sizeof(queries) / sizeof(queries[0])); q++)
	{
		PGresult   *res = PQexec(conn, queries[q]);
		int			r;
		int			c;

		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "pg_async_bench: stall report: %s", PQerrorMessage(conn));
			PQclear(res);
			continue;
		}
		for (c = 0; c < PQnfields(res); c++)
			fprintf(stderr, "%s%s", c ? " | " : "pg_async_bench: stall: ", PQfname(res, c));
		fprintf(stderr, "\n");
		for (r = 0; r < PQntuples(res); r++)
		{
			for (c = 0; c < PQnfields(res); c++)
				fprintf(stderr, "%s%s", c ? " | " : "pg_async_bench: stall: ",
						PQgetisnull(res, r, c) ? "NULL" : PQgetvalue(res, r, c));
			fprintf(stderr, "\n");
		}
		PQclear(res);
	}
	fflush(stderr);
}

/*
 * prepare_stmt prepares a named statement on conn.
 */
static void
prepare_stmt(PGconn *conn, const char *name, const char *sql, int nparams)
{
	PGresult   *res = PQprepare(conn, name, sql, nparams, NULL);

	check_result(conn, res, sql);
	PQclear(res);
}

/*
 * exec_prepared runs a prepared statement with text parameters; exits on
 * error.
 */
static void
exec_prepared(PGconn *conn, const char *name, int nparams,
			  const char *const *values)
{
	PGresult   *res = PQexecPrepared(conn, name, nparams, values, NULL, NULL, 0);

	check_result(conn, res, name);
	PQclear(res);
}

/*
 * add_figure records one figure of the results.  target is "" when the
 * figure has none; pass is then -1.
 */
static Figure *
add_figure(int scenario, const char *key, const char *label, FigureKind kind,
		   double value, const char *target, int pass)
{
	Figure	   *f;

	if (nfigures >= MAX_FIGURES)
		die("too many figures");
	f = &figures[nfigures++];
	f->scenario = scenario;
	snprintf(f->key, sizeof(f->key), "%s", key);
	snprintf(f->label, sizeof(f->label), "%s", label);
	f->kind = kind;
	f->value = value;
	f->text[0] = '\0';
	snprintf(f->target, sizeof(f->target), "%s", target ? target : "");
	f->pass = pass;
	return f;
}

/*
 * add_text records a figure whose value is a text.
 */
static void
add_text(int scenario, const char *key, const char *label, const char *text)
{
	Figure	   *f = add_figure(scenario, key, label, FIG_TEXT, 0, "", -1);

	snprintf(f->text, sizeof(f->text), "%s", text);
}

/*
 * add_latency records the percentiles of a latency distribution, with the
 * targets of issue 3 when with_targets is set.
 */
static void
add_latency(int scenario, const Latency *lat, bool with_targets)
{
	add_figure(scenario, "latency_events", "latency events", FIG_INT,
			   (double) lat->count, "", -1);
	add_figure(scenario, "latency_min_ms", "latency min ms", FIG_NUM, lat->min, "", -1);
	add_figure(scenario, "latency_mean_ms", "latency mean ms", FIG_NUM, lat->mean, "", -1);
	add_figure(scenario, "latency_p50_ms", "latency p50 ms", FIG_NUM, lat->p50,
			   with_targets ? "<= 1 ms" : "",
			   with_targets ? (lat->count > 0 && lat->p50 <= 1.0) : -1);
	add_figure(scenario, "latency_p95_ms", "latency p95 ms", FIG_NUM, lat->p95, "", -1);
	add_figure(scenario, "latency_p99_ms", "latency p99 ms", FIG_NUM, lat->p99,
			   with_targets ? "<= 5 ms" : "",
			   with_targets ? (lat->count > 0 && lat->p99 <= 5.0) : -1);
	add_figure(scenario, "latency_max_ms", "latency max ms", FIG_NUM, lat->max, "", -1);
}

/*
 * jobs_done returns the number of jobs the workers have run since they
 * started, failed attempts included: a shared-memory counter, cheap to read.
 */
static int64_t
jobs_done(PGconn *conn)
{
	return query_int64(conn, "SELECT coalesce(sum(jobs_done), 0)::bigint FROM async.workers");
}

/*
 * ready_predicate is the predicate of jobs_ready_idx, with which queries
 * for ready jobs use that index: without it they would read the whole table
 * every second of a run.  pg_async 0.3 added NOT limited; set_ready_predicate
 * leaves it out for an older installation, so that the program can measure
 * one as well.  The benchmark's own functions (but bench_held) have no
 * concurrency limit, so no job of theirs is limited.
 */
static char ready_predicate[128] = "finished_at IS NULL AND NOT paused AND NOT limited";

/*
 * Whether async.jobs has priorities (0.9 and later): the jobs of priority
 * 0 then wait in jobs_ready_idx, whose predicate adds priority = 0, and
 * the others in jobs_priority_idx; a look for ready jobs that names
 * neither reads the whole table (until this program knew, once a second
 * in every drain, and at its end).
 */
static bool have_priorities = true;

/*
 * Whether async.function_stats counts the jobs that succeed, as far as
 * this session can tell: the view is there and this role may read it,
 * and pg_async.track_stats is on.  wait_for_drain falls back when the
 * counts do not move all the same.
 */
static bool counted_succeeded = true;

static void
set_ready_predicate(PGconn *conn)
{
	if (query_int64(conn,
					"SELECT count(*) FROM pg_attribute WHERE attrelid = 'async.jobs'::regclass"
					" AND attname = 'limited' AND NOT attisdropped") == 0)
		snprintf(ready_predicate, sizeof(ready_predicate),
				 "finished_at IS NULL AND NOT paused");
	have_priorities = query_int64(conn,
								  "SELECT count(*) FROM pg_attribute"
								  " WHERE attrelid = 'async.jobs'::regclass"
								  " AND attname = 'priority' AND NOT attisdropped") > 0;
	counted_succeeded = query_int64(conn,
									"SELECT (to_regclass('async.function_stats') IS NOT NULL"
									" AND has_table_privilege('async.function_stats', 'SELECT')"
									" AND current_setting('pg_async.track_stats', true)"
									" IS DISTINCT FROM 'off')::int") > 0;
}

/*
 * any_ready returns whether a job is ready or running (unfinished, not
 * paused or limited, with run_at passed): a short scan of jobs_ready_idx.
 * With function, only that function's jobs count (before 0.3, the scan
 * walks past those of other functions that are held by a limit).
 */
static bool
any_ready(PGconn *conn, const char *function)
{
	char		filter[256];
	char		sql[1024];

	snprintf(filter, sizeof(filter), "%s AND run_at <= now()%s%s%s", ready_predicate,
			 function ? " AND function = '" : "", function ? function : "",
			 function ? "'" : "");
	if (have_priorities)
		snprintf(sql, sizeof(sql),
				 "SELECT (SELECT count(*) FROM (SELECT 1 FROM async.jobs"
				 "         WHERE priority = 0 AND %s ORDER BY run_at LIMIT 1) s)"
				 "     + (SELECT count(*) FROM (SELECT 1 FROM async.jobs"
				 "         WHERE priority <> 0 AND %s ORDER BY priority, run_at LIMIT 1) s)",
				 filter, filter);
	else
		snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM (SELECT 1 FROM async.jobs"
				 " WHERE %s ORDER BY run_at LIMIT 1) s", filter);
	return query_int64(conn, sql) > 0;
}

/*
 * count_ready counts the queued jobs that are ready to run (through
 * jobs_ready_idx and jobs_priority_idx, as any_ready).
 */
static int64_t
count_ready(PGconn *conn)
{
	char		sql[512];

	if (have_priorities)
		snprintf(sql, sizeof(sql),
				 "SELECT (SELECT count(*) FROM async.jobs WHERE priority = 0 AND %s"
				 "        AND run_at <= now() AND state = 'queued')"
				 "     + (SELECT count(*) FROM async.jobs WHERE priority <> 0 AND %s"
				 "        AND run_at <= now() AND state = 'queued')",
				 ready_predicate, ready_predicate);
	else
		snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM async.jobs WHERE %s"
				 " AND run_at <= now() AND state = 'queued'", ready_predicate);
	return query_int64(conn, sql);
}

/*
 * wait_for_jobs_of waits until the workers have run target jobs since the
 * jobs_done reading base, and then until no job is ready or running (the
 * counter moves before the batch commits); with function, no job of that
 * function.  Every second it also checks the queue itself, in case a worker
 * restarted and its counter with it.  Only short autocommit statements are
 * used.  Returns the monotonic time at which the queue was found empty.
 */
static int64_t
wait_for_jobs_of(PGconn *conn, int64_t base, int64_t target, const char *function)
{
	int64_t		start = mono_us();
	int64_t		last_check = start;
	int64_t		last_progress = start;
	int64_t		last_done = base;
	int64_t		done;
	int64_t		now;

	for (;;)
	{
		now = mono_us();
		done = jobs_done(conn);
		if (done - base >= target)
			break;
		if (done != last_done)
		{
			last_done = done;
			last_progress = now;
		}
		if (now - last_check >= 1000000)
		{
			last_check = now;
			if (!any_ready(conn, function))
				return mono_us();
		}
		if (now - last_progress > STALL_US)
		{
			report_stall(conn);
			die("no job finished for %d s (%" PRId64 " of %" PRId64 " done);"
				" are the workers running? see the server log",
				STALL_US / 1000000, done - base, target);
		}
		if (now - start > (int64_t) (opts.timeout * 1e6))
			die("timed out after %.0f s waiting for %" PRId64 " jobs (%" PRId64 " done)",
				opts.timeout, target, done - base);
		sleep_us(POLL_US);
	}
	for (;;)
	{
		if (!any_ready(conn, function))
			return mono_us();
		if (mono_us() - start > (int64_t) (opts.timeout * 1e6))
			die("timed out after %.0f s waiting for the last batch", opts.timeout);
		sleep_us(1000);
	}
}

/* wait_for_jobs is wait_for_jobs_of for the jobs of every function. */
static int64_t
wait_for_jobs(PGconn *conn, int64_t base, int64_t target)
{
	return wait_for_jobs_of(conn, base, target, NULL);
}

/*
 * A mark taken before a drain queues its jobs: the workers' count of the
 * jobs they ran, and the successes of the drain's function.
 */
typedef struct DrainMark
{
	const char *function;
	bool		keyed;			/* the function has a concurrency_key */
	int64_t		done;			/* jobs_done */
	int64_t		succeeded;		/* jobs_succeeded of function */
} DrainMark;

/*
 * jobs_succeeded returns how many jobs of function have succeeded, as
 * async.function_stats counts them: in shared memory, added to by each
 * transaction that finished jobs once it has committed.
 */
static int64_t
jobs_succeeded(PGconn *conn, const char *function)
{
	char		sql[256];

	snprintf(sql, sizeof(sql),
			 "SELECT coalesce(sum(succeeded), 0)::bigint FROM async.function_stats"
			 " WHERE function = '%s'", function);
	return query_int64(conn, sql);
}

static int64_t wait_for_keyed_jobs(PGconn *conn, int64_t base, int64_t n);

static DrainMark
drain_mark(PGconn *conn, const char *function, bool keyed)
{
	DrainMark	mark;

	mark.function = function;
	mark.keyed = keyed;
	mark.done = jobs_done(conn);
	mark.succeeded = counted_succeeded ? jobs_succeeded(conn, function) : 0;
	return mark;
}

/*
 * wait_for_drain waits until n jobs of the mark's function, no-op jobs
 * queued after the mark that succeed at their first attempt, have
 * succeeded, and returns the monotonic time at which it found them so.
 * It reads the successes of async.function_stats, which a transaction
 * adds to once it has committed, so that the count reached means the
 * jobs' transactions have committed; and reading them costs the same
 * whatever the size of async.jobs.  wait_for_jobs looks for a ready or
 * running job instead, which, while a snapshot holds back the xmin
 * horizon, walks the index entries of every job run since it was taken
 * (and, until this program matched jobs_ready_idx's predicate, read the
 * whole table): the benchmark's own look was timed into the drains of
 * held-xmin.  Without the counters (see counted_succeeded), or when they
 * stay still for STILL_US while the workers run jobs, the look again
 * (wait_for_jobs_of, or wait_for_keyed_jobs for a keyed function).  A
 * crash resets the counters: the drain then ends with an error.
 */
#define STILL_US		3000000

static int64_t
wait_for_drain(PGconn *conn, DrainMark mark, int64_t n)
{
	int64_t		start = mono_us();
	int64_t		last_progress = start;
	int64_t		last = mark.succeeded;
	int64_t		succeeded;

	while (counted_succeeded &&
		   (succeeded = jobs_succeeded(conn, mark.function)) - mark.succeeded < n)
	{
		int64_t		now = mono_us();

		if (succeeded < mark.succeeded)
			die("the counters of async.function_stats went back during a drain of %s"
				" (a crash, or async.stats_reset())", mark.function);
		if (succeeded == mark.succeeded && now - start > STILL_US &&
			jobs_done(conn) > mark.done)
		{
			progress("async.function_stats counts no success of %s: looking for"
					 " ready jobs instead", mark.function);
			counted_succeeded = false;
			break;
		}
		if (succeeded != last)
		{
			last = succeeded;
			last_progress = now;
		}
		if (now - last_progress > STALL_US)
		{
			report_stall(conn);
			die("no job of %s succeeded for %d s (%" PRId64 " of %" PRId64 " succeeded);"
				" are the workers running? see the server log",
				mark.function, STALL_US / 1000000, succeeded - mark.succeeded, n);
		}
		if (now - start > (int64_t) (opts.timeout * 1e6))
			die("timed out after %.0f s waiting for %" PRId64 " jobs of %s"
				" (%" PRId64 " succeeded)",
				opts.timeout, n, mark.function, succeeded - mark.succeeded);
		/* finer near the end, as the look for the last batch was */
		sleep_us(mark.succeeded + n - succeeded <= 2000 ? 1000 : POLL_US);
	}
	if (!counted_succeeded)
		return mark.keyed ? wait_for_keyed_jobs(conn, mark.done, n) :
			wait_for_jobs_of(conn, mark.done, n, mark.function);
	return mono_us();
}

/*
 * setup_objects creates (or replaces) the handlers and tables the scenarios
 * use, and registers the handlers.  Handlers run with search_path =
 * pg_catalog, pg_temp, hence the schema-qualified table.
 */
static void
setup_objects(PGconn *conn)
{
	exec_command(conn, "SET client_min_messages = warning");
	exec_command(conn,
				 "CREATE OR REPLACE FUNCTION public.bench_noop(e jsonb) RETURNS void"
				 " LANGUAGE sql AS 'SELECT'");
	exec_command(conn,
				 "CREATE TABLE IF NOT EXISTS public.bench_latency_log"
				 " (seq bigint NOT NULL, started_at timestamptz NOT NULL)");
	exec_command(conn,
				 "CREATE OR REPLACE FUNCTION public.bench_latency(e jsonb) RETURNS void"
				 " LANGUAGE sql AS $$INSERT INTO public.bench_latency_log (seq, started_at)"
				 " VALUES ((e->>'seq')::bigint, clock_timestamp())$$");
	exec_command(conn,
				 "CREATE OR REPLACE FUNCTION public.bench_fail(e jsonb) RETURNS void"
				 " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'bench_fail fails on purpose';"
				 " END$$");
	exec_command(conn, "SELECT async.register('public.bench_noop(jsonb)')");
	exec_command(conn, "SELECT async.register('public.bench_latency(jsonb)')");
	exec_command(conn,
				 "SELECT async.register('public.bench_fail(jsonb)', max_attempts => 3,"
				 " retry_delays => '{1 hour}')");
	if (opts.rate_limited > 0)
	{
		char		sql[256];

		snprintf(sql, sizeof(sql),
				 "SELECT async.register('public.bench_noop(jsonb)', name => 'bench_rate_' || i,"
				 " rate_limit => 1000) FROM generate_series(1, %d) i", opts.rate_limited);
		exec_command(conn, sql);
	}
	if (opts.keyed_later > 0)
		exec_command(conn,
					 "SELECT async.register('public.bench_noop(jsonb)', name => 'bench_later',"
					 " concurrency_key => 'k', key_concurrency => 1)");
}

/*
 * reset_queue empties the queue, the dead letters and the latency log, and
 * checkpoints, so that each run starts from the same state: with
 * --keyed-later, that of the jobs queued for later too.
 */
static void
reset_queue(PGconn *conn)
{
	exec_command(conn, "TRUNCATE async.jobs, async.dead_letters, public.bench_latency_log");
	if (opts.keyed_later > 0)
	{
		char		sql[256];

		snprintf(sql, sizeof(sql),
				 "INSERT INTO async.jobs (function, payload, run_at)"
				 " SELECT 'bench_later', jsonb_build_object('k', i), now() + interval '30 days'"
				 " FROM generate_series(1, %d) i", opts.keyed_later);
		exec_command(conn, sql);
		exec_command(conn, "VACUUM ANALYZE async.jobs");
	}
	exec_command(conn, "CHECKPOINT");
}

/*
 * read_settings records the server settings that shape the figures.
 */
static void
read_settings(PGconn *conn)
{
	static const char *const names[] = {
		"server_version", "pg_async.workers", "pg_async.batch_size",
		"pg_async.batch_max_bytes", "pg_async.batch_wait",
		"pg_async.retention", "synchronous_commit", "fsync",
		"shared_buffers", "max_wal_size", "checkpoint_timeout",
		"max_connections", "max_worker_processes", "autovacuum", "wal_level",
		"full_page_writes", NULL
	};
	char		sql[128];
	int			i;

	for (i = 0; names[i] != NULL && nsettings < MAX_SETTINGS - 1; i++)
	{
		snprintf(sql, sizeof(sql), "SHOW %s", names[i]);
		snprintf(setting_names[nsettings], sizeof(setting_names[0]), "%s", names[i]);
		query_text(conn, sql, setting_values[nsettings], sizeof(setting_values[0]));
		nsettings++;
	}
	snprintf(setting_names[nsettings], sizeof(setting_names[0]), "rate_limited_functions");
	snprintf(setting_values[nsettings], sizeof(setting_values[0]), "%d", opts.rate_limited);
	nsettings++;
	snprintf(setting_names[nsettings], sizeof(setting_names[0]), "keyed_later_jobs");
	snprintf(setting_values[nsettings], sizeof(setting_values[0]), "%d", opts.keyed_later);
	nsettings++;
	snprintf(setting_names[nsettings], sizeof(setting_names[0]), "client_cpus");
	snprintf(setting_values[nsettings], sizeof(setting_values[0]), "%ld",
			 sysconf(_SC_NPROCESSORS_ONLN));
	nsettings++;
}

/*
 * drain_once queues n no-op jobs in one transaction and times them from the
 * COMMIT until every one has succeeded.  Returns jobs/s; *insert_secs gets
 * the time of the INSERT.
 */
static double
drain_once(PGconn *conn, int64_t n, double *insert_secs)
{
	char		sql[256];
	DrainMark	mark;
	int64_t		t0;
	int64_t		t1;
	int64_t		t2;
	int64_t		succeeded;

	reset_queue(conn);
	mark = drain_mark(conn, "bench_noop", false);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload)"
			 " SELECT 'bench_noop', '{}' FROM generate_series(1, %" PRId64 ")", n);
	t0 = mono_us();
	exec_command(conn, sql);
	t1 = mono_us();
	t2 = wait_for_drain(conn, mark, n);
	succeeded = query_int64(conn, "SELECT count(*) FROM async.jobs WHERE state = 'succeeded'");
	if (succeeded != n)
		die("drain: %" PRId64 " jobs succeeded, expected %" PRId64, succeeded, n);
	*insert_secs = (t1 - t0) / 1e6;
	return n / ((t2 - t1) / 1e6);
}

/* compare_double orders doubles for qsort. */
static int
compare_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* median_of_sorted returns the median of n sorted values. */
static double
median_of_sorted(const double *v, int n)
{
	return (n % 2 == 1) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * run_drain measures the drain DRAIN_ROUNDS times and keeps the median:
 * one run on a shared 2-core machine is at the mercy of whatever else ran
 * in those few seconds.  Returns the median jobs/s.
 */
static double
run_drain(PGconn *conn, int64_t n)
{
	double		rates[DRAIN_ROUNDS];
	double		insert_secs[DRAIN_ROUNDS];
	double		rate;
	int			r;

	progress("drain: %" PRId64 " no-op jobs in one transaction, %d rounds", n, DRAIN_ROUNDS);
	for (r = 0; r < DRAIN_ROUNDS; r++)
	{
		rates[r] = drain_once(conn, n, &insert_secs[r]);
		progress("drain: round %d: %.1f jobs/s (%.2f s), enqueued in %.2f s",
				 r + 1, rates[r], n / rates[r], insert_secs[r]);
	}
	qsort(rates, DRAIN_ROUNDS, sizeof(double), compare_double);
	qsort(insert_secs, DRAIN_ROUNDS, sizeof(double), compare_double);
	rate = median_of_sorted(rates, DRAIN_ROUNDS);

	add_figure(SC_DRAIN, "jobs", "jobs", FIG_INT, (double) n, "", -1);
	add_figure(SC_DRAIN, "rounds", "rounds", FIG_INT, DRAIN_ROUNDS, "", -1);
	add_figure(SC_DRAIN, "enqueue_seconds", "INSERT seconds (median)", FIG_NUM,
			   median_of_sorted(insert_secs, DRAIN_ROUNDS), "", -1);
	add_figure(SC_DRAIN, "drain_seconds", "drain seconds (median)", FIG_NUM, n / rate, "", -1);
	add_figure(SC_DRAIN, "min_jobs_per_second", "jobs/s min", FIG_NUM, rates[0], "", -1);
	add_figure(SC_DRAIN, "max_jobs_per_second", "jobs/s max", FIG_NUM,
			   rates[DRAIN_ROUNDS - 1], "", -1);
	add_figure(SC_DRAIN, "jobs_per_second", "jobs/s (median)", FIG_NUM, rate,
			   ">= 50000", rate >= 50000);
	drain_rate = rate;
	return rate;
}

/*
 * measured_drain_rate returns the drain rate of this run, measuring it
 * first when the drain scenario has not run.
 */
static double
measured_drain_rate(PGconn *conn)
{
	if (drain_rate <= 0)
	{
		progress("measuring the drain rate first");
		run_drain(conn, opts.drain_jobs);
	}
	return drain_rate;
}

/*
 * inserter_main commits single-row INSERTs on its connection until the
 * deadline.
 */
static void *
inserter_main(void *arg)
{
	Inserter   *ins = (Inserter *) arg;
	char		payload[64];
	const char *values[1];

	values[0] = payload;
	ins->count = 0;
	while (mono_us() < ins->deadline)
	{
		snprintf(payload, sizeof(payload), "{\"i\": %" PRId64 "}",
				 (int64_t) ins->index * 1000000000 + ins->count);
		exec_prepared(ins->conn, ins->stmt, 1, values);
		ins->count++;
	}
	ins->end = mono_us();
	return NULL;
}

/*
 * bare_consumer_main takes rows from public.bench_plain_idx the way the
 * leanest queue consumer would, running nothing: up to 100 ready rows per
 * transaction, FOR UPDATE SKIP LOCKED, in the order of the ready index,
 * pausing 5 ms (pg_async.batch_wait's default) whenever a take is not full.
 * It stops once the producers have stopped and no ready row is left.
 */
static void *
bare_consumer_main(void *arg)
{
	BareConsumer *c = (BareConsumer *) arg;

	c->taken = 0;
	c->transactions = 0;
	for (;;)
	{
		bool		producing = c->producing;
		PGresult   *res = PQexecPrepared(c->conn, c->stmt, 0, NULL, NULL, NULL, 0);
		int64_t		n;

		check_result(c->conn, res, c->stmt);
		n = strtoll(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		c->taken += n;
		if (n > 0)
			c->transactions++;
		if (n == 0 && !producing)
			break;
		if (n < 100)
			sleep_us(5000);
	}
	return NULL;
}

/*
 * enqueue_phase runs k inserting threads on statement stmt for secs
 * seconds and returns the inserts per second.
 */
static double
enqueue_phase(Inserter *ins, int k, const char *stmt, double secs, int64_t *total)
{
	int64_t		start;
	int64_t		end = 0;
	int64_t		sum = 0;
	int			i;

	start = mono_us();
	for (i = 0; i < k; i++)
	{
		ins[i].stmt = stmt;
		ins[i].deadline = start + (int64_t) (secs * 1e6);
		if (pthread_create(&ins[i].thread, NULL, inserter_main, &ins[i]) != 0)
			die("could not start a thread");
	}
	for (i = 0; i < k; i++)
	{
		pthread_join(ins[i].thread, NULL);
		sum += ins[i].count;
		if (ins[i].end > end)
			end = ins[i].end;
	}
	*total = sum;
	return sum / ((end - start) / 1e6);
}

/* the tables of enqueue, in the order of its even rounds */
enum
{
	EQ_PLAIN,					/* plain table, same columns */
	EQ_PLAIN_IDX,				/* plain table, same columns and indexes */
	EQ_BARE_DELETE,				/* that, consumed by deleting rows */
	EQ_BARE_DONE,				/* that, consumed by marking rows done */
	EQ_LATER,					/* async.jobs, due in a day: nothing run */
	EQ_JOBS,					/* async.jobs, run by the workers */
	EQ_NTABLES
};

/*
 * run_enqueue measures single-row INSERT commits from k connections into a
 * plain table with the columns of async.jobs, into one with its indexes
 * too, into that one again while a bare consumer takes its rows (two ways,
 * see below), into async.jobs due in a day (the enqueue alone, nothing
 * run), and into async.jobs while the workers run, secs seconds each in
 * all.  The bare consumers are the floor of any queue that runs its jobs
 * on the same machine as its producers: one connection taking up to 100
 * ready rows per transaction, in one statement, running nothing; one
 * deletes them (a queue that keeps nothing), the other marks them done as
 * pg_async's finish does (state and finished_at: a non-HOT update).  The
 * phases are interleaved in ENQUEUE_ROUNDS rounds, in reverse order every
 * other round: the insert rate of this machine drifts by a quarter within
 * minutes, and phases run one after the other for 20 s each compared the
 * drift as much as the tables.  The ratio judged is the median of the
 * rounds' ratios, each of async.jobs to the plain table in the same round.
 */
static void
run_enqueue(PGconn *conn, int k, double secs)
{
	static const char *const stmts[EQ_NTABLES] = {
		"plain", "plain_idx", "plain_idx", "plain_idx", "jobs_later", "jobs"
	};
	static const char *const labels[EQ_NTABLES] = {
		"plain table", "plain table with indexes",
		"plain table with indexes, rows deleted by a bare consumer",
		"plain table with indexes, rows marked done by a bare consumer",
		"async.jobs, due tomorrow", "async.jobs"
	};
	Inserter   *ins;
	BareConsumer consumer;
	char		take[256];
	char		sql[512];
	int64_t		n[EQ_NTABLES] = {0};
	double		busy[EQ_NTABLES] = {0};	/* seconds inserting */
	double		ratios[ENQUEUE_ROUNDS];
	double		later_ratios[ENQUEUE_ROUNDS];
	double		delete_ratios[ENQUEUE_ROUNDS];
	double		done_ratios[ENQUEUE_ROUNDS];
	int64_t		bare_taken = 0;
	int64_t		bare_transactions = 0;
	double		phase_secs = secs / ENQUEUE_ROUNDS;
	double		r[EQ_NTABLES];
	double		ratio;
	int			round;
	int			i;

	progress("enqueue: %d connections, %.0f s per table in %d rounds", k, secs, ENQUEUE_ROUNDS);
	reset_queue(conn);
	exec_command(conn, "DROP TABLE IF EXISTS public.bench_plain, public.bench_plain_idx");
	exec_command(conn,
				 "CREATE TABLE public.bench_plain (LIKE async.jobs"
				 " INCLUDING DEFAULTS INCLUDING IDENTITY)");
	exec_command(conn,
				 "CREATE TABLE public.bench_plain_idx (LIKE async.jobs"
				 " INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS"
				 " INCLUDING INDEXES)");
	/*
	 * what the trigger of async.jobs fills in: the function's priority (0.9
	 * and later; an older pg_async has no such column)
	 */
	exec_command(conn,
				 "DO $$ BEGIN"
				 " IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'async.jobs'::regclass"
				 "             AND attname = 'priority') THEN"
				 "  ALTER TABLE public.bench_plain ALTER COLUMN priority SET DEFAULT 0;"
				 "  ALTER TABLE public.bench_plain_idx ALTER COLUMN priority SET DEFAULT 0;"
				 " END IF; END $$");

	memset(&consumer, 0, sizeof(consumer));
	consumer.conn = connect_db();
	/* the bare consumer's take: up to 100 ready rows, through the ready index */
	snprintf(take, sizeof(take),
			 "SELECT id FROM public.bench_plain_idx WHERE %s AND run_at <= now()"
			 " ORDER BY run_at LIMIT 100 FOR UPDATE SKIP LOCKED", ready_predicate);
	snprintf(sql, sizeof(sql),
			 "DELETE FROM public.bench_plain_idx WHERE id IN (%s)", take);
	prepare_stmt(consumer.conn, "bare_delete", sql, 0);
	snprintf(sql, sizeof(sql),
			 "UPDATE public.bench_plain_idx SET state = 'succeeded', finished_at = now()"
			 " WHERE id IN (%s)", take);
	prepare_stmt(consumer.conn, "bare_done", sql, 0);

	ins = calloc(k, sizeof(Inserter));
	if (ins == NULL)
		die("out of memory");
	for (i = 0; i < k; i++)
	{
		ins[i].index = i;
		ins[i].conn = connect_db();
		prepare_stmt(ins[i].conn, "plain",
					 "INSERT INTO public.bench_plain (function, payload)"
					 " VALUES ('bench_noop', $1::jsonb)", 1);
		prepare_stmt(ins[i].conn, "plain_idx",
					 "INSERT INTO public.bench_plain_idx (function, payload)"
					 " VALUES ('bench_noop', $1::jsonb)", 1);
		prepare_stmt(ins[i].conn, "jobs",
					 "INSERT INTO async.jobs (function, payload)"
					 " VALUES ('bench_noop', $1::jsonb)", 1);
		prepare_stmt(ins[i].conn, "jobs_later",
					 "INSERT INTO async.jobs (function, payload, run_at)"
					 " VALUES ('bench_noop', $1::jsonb, now() + interval '1 day')", 1);
	}

	for (round = 0; round < ENQUEUE_ROUNDS; round++)
	{
		double		rate[EQ_NTABLES];
		int			step;

		for (step = 0; step < EQ_NTABLES; step++)
		{
			int			t = (round % 2 == 0) ? step : EQ_NTABLES - 1 - step;
			int64_t		count;
			int64_t		base = 0;

			bool		bare = (t == EQ_BARE_DELETE || t == EQ_BARE_DONE);

			/* the queues start empty; every phase starts after a checkpoint */
			if (t == EQ_JOBS || t == EQ_LATER)
				reset_queue(conn);
			else
			{
				if (t != EQ_PLAIN)
					exec_command(conn, "TRUNCATE public.bench_plain_idx");
				exec_command(conn, "CHECKPOINT");
			}
			if (t == EQ_JOBS)
				base = jobs_done(conn);
			if (bare)
			{
				consumer.stmt = (t == EQ_BARE_DELETE) ? "bare_delete" : "bare_done";
				consumer.producing = true;
				if (pthread_create(&consumer.thread, NULL, bare_consumer_main, &consumer) != 0)
					die("could not start a thread");
			}
			rate[t] = enqueue_phase(ins, k, stmts[t], phase_secs, &count);
			n[t] += count;
			busy[t] += count / rate[t];
			if (t == EQ_JOBS)
				wait_for_jobs(conn, base, count);
			if (bare)
			{
				consumer.producing = false;
				pthread_join(consumer.thread, NULL);
				if (consumer.taken != count)
					die("the bare consumer took %" PRId64 " of %" PRId64 " rows",
						consumer.taken, count);
				bare_taken += consumer.taken;
				bare_transactions += consumer.transactions;
			}
		}
		ratios[round] = rate[EQ_JOBS] / rate[EQ_PLAIN];
		later_ratios[round] = rate[EQ_LATER] / rate[EQ_PLAIN];
		delete_ratios[round] = rate[EQ_BARE_DELETE] / rate[EQ_PLAIN];
		done_ratios[round] = rate[EQ_BARE_DONE] / rate[EQ_PLAIN];
		progress("enqueue: round %d: plain %.0f, plain+indexes %.0f, bare queue deleting %.0f,"
				 " marking done %.0f, due tomorrow %.0f, async.jobs %.0f inserts/s; ratio %.3f",
				 round + 1, rate[EQ_PLAIN], rate[EQ_PLAIN_IDX], rate[EQ_BARE_DELETE],
				 rate[EQ_BARE_DONE], rate[EQ_LATER], rate[EQ_JOBS], ratios[round]);
	}
	reset_queue(conn);
	exec_command(conn, "TRUNCATE public.bench_plain, public.bench_plain_idx");
	PQfinish(consumer.conn);

	for (i = 0; i < k; i++)
		PQfinish(ins[i].conn);
	free(ins);

	for (i = 0; i < EQ_NTABLES; i++)
	{
		r[i] = n[i] / busy[i];
		progress("enqueue: %s %.1f inserts/s", labels[i], r[i]);
	}
	qsort(ratios, ENQUEUE_ROUNDS, sizeof(double), compare_double);
	qsort(later_ratios, ENQUEUE_ROUNDS, sizeof(double), compare_double);
	qsort(delete_ratios, ENQUEUE_ROUNDS, sizeof(double), compare_double);
	qsort(done_ratios, ENQUEUE_ROUNDS, sizeof(double), compare_double);
	ratio = median_of_sorted(ratios, ENQUEUE_ROUNDS);

	add_figure(SC_ENQUEUE, "connections", "connections", FIG_INT, k, "", -1);
	add_figure(SC_ENQUEUE, "seconds_per_table", "seconds per table", FIG_NUM, secs, "", -1);
	add_figure(SC_ENQUEUE, "rounds", "rounds", FIG_INT, ENQUEUE_ROUNDS, "", -1);
	add_figure(SC_ENQUEUE, "plain_inserts", "plain inserts", FIG_INT, (double) n[EQ_PLAIN], "", -1);
	add_figure(SC_ENQUEUE, "plain_inserts_per_second", "plain inserts/s", FIG_NUM,
			   r[EQ_PLAIN], "", -1);
	add_figure(SC_ENQUEUE, "plain_idx_inserts", "plain+indexes inserts", FIG_INT,
			   (double) n[EQ_PLAIN_IDX], "", -1);
	add_figure(SC_ENQUEUE, "plain_idx_inserts_per_second", "plain+indexes inserts/s",
			   FIG_NUM, r[EQ_PLAIN_IDX], "", -1);
	add_figure(SC_ENQUEUE, "bare_delete_inserts_per_second",
			   "bare delete: inserts/s", FIG_NUM, r[EQ_BARE_DELETE], "", -1);
	add_figure(SC_ENQUEUE, "bare_delete_ratio_to_plain",
			   "bare delete: ratio (median)", FIG_NUM,
			   median_of_sorted(delete_ratios, ENQUEUE_ROUNDS), "", -1);
	add_figure(SC_ENQUEUE, "bare_done_inserts_per_second",
			   "bare done: inserts/s", FIG_NUM, r[EQ_BARE_DONE], "", -1);
	add_figure(SC_ENQUEUE, "bare_done_ratio_to_plain",
			   "bare done: ratio (median)", FIG_NUM,
			   median_of_sorted(done_ratios, ENQUEUE_ROUNDS), "", -1);
	add_figure(SC_ENQUEUE, "bare_rows_per_transaction", "bare: rows per transaction",
			   FIG_NUM, bare_transactions > 0 ? (double) bare_taken / bare_transactions : 0,
			   "", -1);
	add_figure(SC_ENQUEUE, "later_inserts_per_second", "not run (due in a day) inserts/s",
			   FIG_NUM, r[EQ_LATER], "", -1);
	add_figure(SC_ENQUEUE, "later_ratio_to_plain", "not run: ratio to plain (median)", FIG_NUM,
			   median_of_sorted(later_ratios, ENQUEUE_ROUNDS), "", -1);
	add_figure(SC_ENQUEUE, "async_inserts", "async.jobs inserts", FIG_INT,
			   (double) n[EQ_JOBS], "", -1);
	add_figure(SC_ENQUEUE, "async_inserts_per_second", "async.jobs inserts/s", FIG_NUM,
			   r[EQ_JOBS], "", -1);
	add_figure(SC_ENQUEUE, "ratio_to_plain_overall", "ratio to plain (all rounds)", FIG_NUM,
			   r[EQ_JOBS] / r[EQ_PLAIN], "", -1);
	add_figure(SC_ENQUEUE, "min_ratio_to_plain", "ratio to plain min", FIG_NUM, ratios[0], "", -1);
	add_figure(SC_ENQUEUE, "max_ratio_to_plain", "ratio to plain max", FIG_NUM,
			   ratios[ENQUEUE_ROUNDS - 1], "", -1);
	add_figure(SC_ENQUEUE, "ratio_to_plain", "ratio to plain (median)", FIG_NUM, ratio,
			   ">= 0.85", ratio >= 0.85);
	add_figure(SC_ENQUEUE, "ratio_to_plain_idx", "ratio to plain+indexes (all rounds)", FIG_NUM,
			   r[EQ_JOBS] / r[EQ_PLAIN_IDX], "", -1);
}

/*
 * producer_main enqueues this producer's share of the events on schedule:
 * event seq (producer index + nproducers * k) is due at t0 + seq / rate.
 * Each INSERT carries every event due by then, at most max_batch of them,
 * and the time its COMMIT returned is recorded for each.
 */
static void *
producer_main(void *arg)
{
	Producer   *p = (Producer *) arg;
	int64_t		k = 0;
	int64_t		kmax;
	char		lo[32];
	char		hi[32];
	char		step[32];
	const char *values[4];

	kmax = (p->nevents - p->index + p->nproducers - 1) / p->nproducers;
	if (kmax < 0)
		kmax = 0;
	snprintf(step, sizeof(step), "%d", p->nproducers);
	values[0] = p->function;
	values[1] = lo;
	values[2] = hi;
	values[3] = step;

	while (k < kmax)
	{
		int64_t		seq = p->index + (int64_t) p->nproducers * k;
		int64_t		due = p->t0 + (int64_t) (seq * 1e6 / p->rate);
		int64_t		now = mono_us();
		int64_t		kend = k;
		int64_t		t;
		int64_t		j;

		if (p->deadline != 0 && now >= p->deadline)
			break;
		if (now < due)
		{
			sleep_until(due);
			now = mono_us();
		}
		else if (now - due > p->max_late_us)
			p->max_late_us = now - due;

		/* every event due by now, up to max_batch */
		while (kend < kmax && kend - k < p->max_batch &&
			   p->t0 + (int64_t) ((p->index + (int64_t) p->nproducers * kend) * 1e6 / p->rate) <= now)
			kend++;
		if (kend == k)
			kend = k + 1;

		snprintf(lo, sizeof(lo), "%" PRId64, seq);
		snprintf(hi, sizeof(hi), "%" PRId64, p->index + (int64_t) p->nproducers * (kend - 1));
		if (kend - k == 1)
			exec_prepared(p->conn, "one", 2, values);
		else
			exec_prepared(p->conn, "many", 4, values);
		t = real_us();
		for (j = k; j < kend; j++)
			p->commit_us[p->index + (int64_t) p->nproducers * j] = t;
		p->inserts++;
		k = kend;
		__atomic_store_n(&p->sent, k, __ATOMIC_RELAXED);
	}
	p->end = mono_us();
	return NULL;
}

/*
 * start_producers connects np producers and starts them on nevents events
 * of function at rate jobs/s, stopping at the deadline secs seconds from
 * now when secs > 0.  commit_us must hold nevents entries, zeroed.
 */
static Producer *
start_producers(int np, const char *function, double rate, int64_t nevents,
				double secs, int max_batch, int64_t *commit_us)
{
	Producer   *p = calloc(np, sizeof(Producer));
	int64_t		t0;
	int			i;

	if (p == NULL)
		die("out of memory");
	for (i = 0; i < np; i++)
	{
		p[i].conn = connect_db();
		prepare_stmt(p[i].conn, "one",
					 "INSERT INTO async.jobs (function, payload)"
					 " VALUES ($1, jsonb_build_object('seq', $2::bigint))", 2);
		prepare_stmt(p[i].conn, "many",
					 "INSERT INTO async.jobs (function, payload)"
					 " SELECT $1, jsonb_build_object('seq', g)"
					 " FROM generate_series($2::bigint, $3::bigint, $4::bigint) g", 4);
	}
	t0 = mono_us() + 10000;
	for (i = 0; i < np; i++)
	{
		p[i].index = i;
		p[i].nproducers = np;
		p[i].function = function;
		p[i].rate = rate;
		p[i].nevents = nevents;
		p[i].t0 = t0;
		p[i].deadline = secs > 0 ? t0 + (int64_t) (secs * 1e6) : 0;
		p[i].max_batch = max_batch;
		p[i].commit_us = commit_us;
		if (pthread_create(&p[i].thread, NULL, producer_main, &p[i]) != 0)
			die("could not start a thread");
	}
	return p;
}

/*
 * producers_sent returns how many events the producers have committed so
 * far.
 */
static int64_t
producers_sent(Producer *p, int np)
{
	int64_t		sum = 0;
	int			i;

	for (i = 0; i < np; i++)
		sum += __atomic_load_n(&p[i].sent, __ATOMIC_RELAXED);
	return sum;
}

/*
 * join_producers waits for the producers and closes their connections.
 * Returns the events sent; *elapsed gets the seconds from the schedule's
 * start to the last producer's end, *inserts the INSERT statements and
 * *max_late the worst lag behind the schedule in ms.
 */
static int64_t
join_producers(Producer *p, int np, double *elapsed, int64_t *inserts,
			   double *max_late)
{
	int64_t		sent = 0;
	int64_t		end = p[0].t0;
	int64_t		late = 0;
	int			i;

	*inserts = 0;
	for (i = 0; i < np; i++)
	{
		pthread_join(p[i].thread, NULL);
		PQfinish(p[i].conn);
		sent += p[i].sent;
		*inserts += p[i].inserts;
		if (p[i].end > end)
			end = p[i].end;
		if (p[i].max_late_us > late)
			late = p[i].max_late_us;
	}
	*elapsed = (end - p[0].t0) / 1e6;
	*max_late = late / 1000.0;
	return sent;
}

/*
 * cmp_int64 orders int64_t values, for qsort.
 */
static int
cmp_int64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

/*
 * percentile returns the nearest-rank percentile pct of the n sorted
 * values, in ms.
 */
static double
percentile(const int64_t *sorted, int64_t n, double pct)
{
	int64_t		rank = (int64_t) ceil(pct / 100.0 * n);

	if (n == 0)
		return 0;
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1] / 1000.0;
}

/*
 * collect_latency reads bench_latency_log, once every job has run, and
 * computes handler start minus COMMIT return for every event the
 * producers committed.  A handler that ran twice counts with its first
 * start.
 */
static void
collect_latency(PGconn *conn, const int64_t *commit_us, int64_t nevents,
				Latency *lat)
{
	PGresult   *res;
	int64_t    *v;
	int64_t		n = 0;
	int64_t		missing = 0;
	double		sum = 0;
	int			rows;
	int			i;

	res = PQexec(conn,
				 "SELECT seq, (extract(epoch FROM min(started_at)) * 1000000)::bigint"
				 " FROM public.bench_latency_log GROUP BY seq");
	check_result(conn, res, "reading bench_latency_log");
	rows = PQntuples(res);
	v = malloc(sizeof(int64_t) * (rows > 0 ? rows : 1));
	if (v == NULL)
		die("out of memory");
	for (i = 0; i < rows; i++)
	{
		int64_t		seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		int64_t		start = strtoll(PQgetvalue(res, i, 1), NULL, 10);

		if (seq < 0 || seq >= nevents || commit_us[seq] == 0)
			continue;
		v[n] = start - commit_us[seq];
		sum += v[n];
		n++;
	}
	PQclear(res);
	for (i = 0; i < nevents; i++)
		if (commit_us[i] != 0)
			missing++;
	missing -= n;
	if (missing > 0)
		die("%" PRId64 " committed events have no row in bench_latency_log", missing);

	qsort(v, n, sizeof(int64_t), cmp_int64);
	lat->count = n;
	lat->min = n > 0 ? v[0] / 1000.0 : 0;
	lat->mean = n > 0 ? sum / n / 1000.0 : 0;
	lat->p50 = percentile(v, n, 50);
	lat->p95 = percentile(v, n, 95);
	lat->p99 = percentile(v, n, 99);
	lat->max = n > 0 ? v[n - 1] / 1000.0 : 0;
	free(v);
}

/*
 * run_latency enqueues nevents single-row jobs at rate per second from np
 * connections, and measures each from its COMMIT's return to its handler's
 * start.
 */
static void
run_latency(PGconn *conn, double rate, int64_t nevents, int np)
{
	int64_t    *commit_us;
	Producer   *p;
	int64_t		base;
	int64_t		sent;
	int64_t		inserts;
	double		elapsed;
	double		max_late;
	Latency		lat;

	progress("latency: %" PRId64 " events at %.0f/s from %d connections", nevents, rate, np);
	reset_queue(conn);
	commit_us = calloc(nevents, sizeof(int64_t));
	if (commit_us == NULL)
		die("out of memory");
	base = jobs_done(conn);
	p = start_producers(np, "bench_latency", rate, nevents, 0, 1, commit_us);
	sent = join_producers(p, np, &elapsed, &inserts, &max_late);
	free(p);
	wait_for_jobs(conn, base, sent);
	collect_latency(conn, commit_us, nevents, &lat);
	free(commit_us);
	progress("latency: p50 %.3f ms, p99 %.3f ms, max %.3f ms", lat.p50, lat.p99, lat.max);

	add_figure(SC_LATENCY, "producers", "connections", FIG_INT, np, "", -1);
	add_figure(SC_LATENCY, "offered_rate", "offered jobs/s", FIG_NUM, rate, "", -1);
	add_figure(SC_LATENCY, "achieved_rate", "achieved jobs/s", FIG_NUM, sent / elapsed, "", -1);
	add_figure(SC_LATENCY, "max_schedule_lag_ms", "max schedule lag ms", FIG_NUM, max_late, "", -1);
	add_latency(SC_LATENCY, &lat, true);
}

/*
 * run_mixed runs producers at rate (by default 80% of the drain rate) for
 * secs seconds while the workers run: sustained jobs/s, latency, backlog.
 */
static void
run_mixed(PGconn *conn, double rate, double secs, int np)
{
	int64_t    *commit_us;
	int64_t		nevents;
	Producer   *p;
	int64_t		base;
	int64_t		done;
	int64_t		backlog;
	int64_t		sent;
	int64_t		inserts;
	int64_t		t_end;
	int64_t		t_drained;
	double		elapsed;
	double		max_late;
	const char *source = "--rate";
	Latency		lat;

	if (rate <= 0)
	{
		rate = 0.8 * measured_drain_rate(conn);
		source = "80% of drain";
	}
	nevents = (int64_t) (rate * secs) + 1;
	progress("mixed: %.0f jobs/s (%s) for %.0f s from %d connections", rate, source, secs, np);
	reset_queue(conn);
	commit_us = calloc(nevents, sizeof(int64_t));
	if (commit_us == NULL)
		die("out of memory");
	base = jobs_done(conn);
	p = start_producers(np, "bench_latency", rate, nevents, secs, 1000, commit_us);
	sleep_until(p[0].deadline);
	done = jobs_done(conn) - base;
	backlog = count_ready(conn);
	sent = join_producers(p, np, &elapsed, &inserts, &max_late);
	free(p);
	t_end = mono_us();
	progress("mixed: %" PRId64 " enqueued, %" PRId64 " run, %" PRId64 " ready at the end;"
			 " waiting for the rest", sent, done, backlog);
	t_drained = wait_for_jobs(conn, base, sent);
	collect_latency(conn, commit_us, nevents, &lat);
	free(commit_us);
	progress("mixed: %.1f jobs/s run, p50 %.3f ms, p99 %.3f ms", done / secs, lat.p50, lat.p99);

	add_text(SC_MIXED, "rate_source", "rate from", source);
	add_figure(SC_MIXED, "producers", "connections", FIG_INT, np, "", -1);
	add_figure(SC_MIXED, "seconds", "seconds", FIG_NUM, secs, "", -1);
	add_figure(SC_MIXED, "offered_rate", "offered jobs/s", FIG_NUM, rate, "", -1);
	add_figure(SC_MIXED, "enqueued", "enqueued", FIG_INT, (double) sent, "", -1);
	add_figure(SC_MIXED, "enqueued_per_second", "enqueued jobs/s", FIG_NUM, sent / elapsed, "", -1);
	add_figure(SC_MIXED, "rows_per_insert", "rows per INSERT", FIG_NUM,
			   inserts > 0 ? (double) sent / inserts : 0, "", -1);
	add_figure(SC_MIXED, "jobs_per_second", "sustained jobs/s", FIG_NUM, done / secs, "", -1);
	add_figure(SC_MIXED, "backlog_at_end", "backlog at end", FIG_INT, (double) backlog, "", -1);
	add_figure(SC_MIXED, "drain_after_seconds", "drain after end s", FIG_NUM,
			   (t_drained - t_end) / 1e6, "", -1);
	add_latency(SC_MIXED, &lat, false);
}

/*
 * compare_with_drains ends a scenario measured at rate jobs/s that a drain
 * of the drain scenario's size preceded (at before jobs/s): it runs the
 * same drain after it and records both drains and the ratio of rate to
 * their mean, with the target min_ratio unless that is negative.  This
 * machine's drain rate drifts by a fifth from one minute to the next, so a
 * scenario is judged against drains run in the same minutes.
 */
static void
compare_with_drains(PGconn *conn, int scenario, double before, double rate,
					double min_ratio)
{
	double		insert_secs;
	double		after;
	double		ratio;
	char		target[32] = "";

	progress("%s: a drain of %" PRId64 " jobs after it", scenario_names[scenario],
			 opts.drain_jobs);
	after = drain_once(conn, opts.drain_jobs, &insert_secs);
	ratio = rate / ((before + after) / 2);
	progress("%s: %.2f of the drains around it (%.1f and %.1f jobs/s)",
			 scenario_names[scenario], ratio, before, after);

	add_figure(scenario, "drain_before_jobs_per_second", "drain just before jobs/s",
			   FIG_NUM, before, "", -1);
	add_figure(scenario, "drain_after_jobs_per_second", "drain just after jobs/s",
			   FIG_NUM, after, "", -1);
	if (min_ratio >= 0)
		snprintf(target, sizeof(target), ">= %.2f", min_ratio);
	add_figure(scenario, "ratio_to_adjacent_drain", "ratio to the drains around it",
			   FIG_NUM, ratio, target, min_ratio >= 0 ? ratio >= min_ratio : -1);
}

/*
 * run_backlog queues n jobs in one transaction: every tenth scheduled an
 * hour ahead, every twentieth failing (bench_fail retries after an hour),
 * the rest no-ops.  Times from the COMMIT until no job is ready, and
 * compares the rate with the drain scenario's rate, and with drains of its
 * size run just before and just after (the target's judge).
 */
static void
run_backlog(PGconn *conn, int64_t n)
{
	char		sql[512];
	int64_t		scheduled = (n + 9) / 10;	/* g % 10 = 1 */
	int64_t		failing = n / 20;	/* g % 20 = 0 */
	int64_t		ready = n - scheduled;
	int64_t		base;
	int64_t		t0;
	int64_t		t1;
	int64_t		t2;
	double		secs;
	double		rate;
	double		drain;
	PGresult   *res;
	int64_t		succeeded;
	int64_t		retrying;
	int64_t		waiting;
	double		before;
	double		insert_secs;

	drain = measured_drain_rate(conn);

	/*
	 * This machine's drain rate drifts by a fifth from one minute to the
	 * next, and the drain scenario may have run many minutes ago: the
	 * backlog is also compared with one drain just before it and one just
	 * after it, in the same minutes.
	 */
	progress("backlog: a drain of %" PRId64 " jobs before it", opts.drain_jobs);
	before = drain_once(conn, opts.drain_jobs, &insert_secs);
	progress("backlog: %" PRId64 " jobs, %" PRId64 " scheduled in an hour, %" PRId64
			 " failing", n, scheduled, failing);
	reset_queue(conn);
	base = jobs_done(conn);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload, run_at)"
			 " SELECT CASE WHEN g %% 20 = 0 THEN 'bench_fail' ELSE 'bench_noop' END, '{}',"
			 " CASE WHEN g %% 10 = 1 THEN now() + interval '1 hour' ELSE now() END"
			 " FROM generate_series(1, %" PRId64 ") g", n);
	t0 = mono_us();
	exec_command(conn, sql);
	t1 = mono_us();
	t2 = wait_for_jobs(conn, base, ready);
	secs = (t2 - t1) / 1e6;
	rate = ready / secs;

	res = PQexec(conn,
				 "SELECT count(*) FILTER (WHERE state = 'succeeded'),"
				 " count(*) FILTER (WHERE state = 'queued' AND attempts = 1),"
				 " count(*) FILTER (WHERE state = 'queued' AND attempts = 0"
				 " AND run_at > now())"
				 " FROM async.jobs");
	check_result(conn, res, "counting the backlog's jobs");
	succeeded = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	retrying = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	waiting = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);
	if (succeeded != ready - failing || retrying != failing || waiting != scheduled)
		die("backlog: %" PRId64 " succeeded, %" PRId64 " awaiting retry, %" PRId64
			" scheduled; expected %" PRId64 ", %" PRId64 ", %" PRId64,
			succeeded, retrying, waiting, ready - failing, failing, scheduled);
	progress("backlog: %.1f jobs/s (%.2f s), %.2f of drain", rate, secs, rate / drain);
	compare_with_drains(conn, SC_BACKLOG, before, rate, 0.80);

	add_figure(SC_BACKLOG, "jobs", "jobs", FIG_INT, (double) n, "", -1);
	add_figure(SC_BACKLOG, "ready", "ready", FIG_INT, (double) ready, "", -1);
	add_figure(SC_BACKLOG, "scheduled", "scheduled (1 hour)", FIG_INT, (double) scheduled, "", -1);
	add_figure(SC_BACKLOG, "failing", "failing", FIG_INT, (double) failing, "", -1);
	add_figure(SC_BACKLOG, "enqueue_seconds", "INSERT seconds", FIG_NUM, (t1 - t0) / 1e6, "", -1);
	add_figure(SC_BACKLOG, "drain_seconds", "drain seconds", FIG_NUM, secs, "", -1);
	add_figure(SC_BACKLOG, "jobs_per_second", "ready jobs/s", FIG_NUM, rate, "", -1);
	add_figure(SC_BACKLOG, "drain_jobs_per_second", "drain jobs/s", FIG_NUM, drain, "", -1);
	add_figure(SC_BACKLOG, "ratio_to_drain", "ratio to drain", FIG_NUM, rate / drain, "", -1);
}

/*
 * run_held queues n jobs of bench_held, a function registered with
 * concurrency 0 so that none of them runs, and then drains the drain
 * scenario's number of no-op jobs behind them (their run_at is later):
 * what a backlog held by a concurrency limit costs the other functions.
 * The drain is compared with drains of the same size run just before and
 * just after, without the held jobs.
 */
static void
run_held(PGconn *conn, int64_t n)
{
	char		sql[256];
	DrainMark	mark;
	int64_t		t0;
	int64_t		t1;
	int64_t		t2;
	int64_t		held;
	double		rate;
	double		before;
	double		insert_secs;

	progress("held: a drain of %" PRId64 " jobs before it", opts.drain_jobs);
	before = drain_once(conn, opts.drain_jobs, &insert_secs);
	progress("held: %" PRId64 " jobs of a function with concurrency 0, then %" PRId64
			 " no-op jobs", n, opts.drain_jobs);
	reset_queue(conn);
	exec_command(conn,
				 "SELECT async.register('public.bench_noop(jsonb)', name => 'bench_held',"
				 " concurrency => 0)");
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload)"
			 " SELECT 'bench_held', '{}' FROM generate_series(1, %" PRId64 ")", n);
	t0 = mono_us();
	exec_command(conn, sql);
	insert_secs = (mono_us() - t0) / 1e6;

	mark = drain_mark(conn, "bench_noop", false);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload)"
			 " SELECT 'bench_noop', '{}' FROM generate_series(1, %" PRId64 ")",
			 opts.drain_jobs);
	exec_command(conn, sql);
	t1 = mono_us();
	t2 = wait_for_drain(conn, mark, opts.drain_jobs);
	rate = opts.drain_jobs / ((t2 - t1) / 1e6);

	held = query_int64(conn,
					   "SELECT count(*) FROM async.jobs WHERE function = 'bench_held'"
					   " AND state = 'queued' AND attempts = 0");
	if (held != n)
		die("held: %" PRId64 " of %" PRId64 " held jobs still queued", held, n);
	if (query_int64(conn,
					"SELECT count(*) FROM async.jobs WHERE function = 'bench_noop'"
					" AND state = 'succeeded'") != opts.drain_jobs)
		die("held: not every no-op job succeeded");
	/* emptied first: unregistering would release every held job */
	reset_queue(conn);
	exec_command(conn, "SELECT async.unregister('bench_held')");

	progress("held: %.1f jobs/s (%.2f s)", rate, (t2 - t1) / 1e6);
	add_figure(SC_HELD, "held_jobs", "held jobs", FIG_INT, (double) n, "", -1);
	add_figure(SC_HELD, "held_insert_seconds", "held INSERT seconds", FIG_NUM,
			   insert_secs, "", -1);
	add_figure(SC_HELD, "jobs", "jobs drained", FIG_INT, (double) opts.drain_jobs, "", -1);
	add_figure(SC_HELD, "jobs_per_second", "jobs/s behind the held jobs", FIG_NUM, rate, "", -1);
	compare_with_drains(conn, SC_HELD, before, rate, -1);
}

static void set_retention(PGconn *conn, const char *value);

/*
 * drain_kept queues n no-op jobs in one transaction, without emptying the
 * queue first, and times them from the COMMIT until every one has run.
 * Returns jobs/s.
 */
static double
drain_kept(PGconn *conn, int64_t n)
{
	char		sql[256];
	DrainMark	mark = drain_mark(conn, "bench_noop", false);
	int64_t		t1;
	int64_t		t2;

	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload, priority)"
			 " SELECT 'bench_noop', '{}', %s FROM generate_series(1, %" PRId64 ") i",
			 opts.held_xmin_priorities ? "i % 5 - 2" : "0", n);
	exec_command(conn, sql);
	t1 = mono_us();
	t2 = wait_for_drain(conn, mark, n);
	return n / ((t2 - t1) / 1e6);
}

/* drains with no snapshot held before the held-xmin drains; see run_held_xmin */
#define HELD_XMIN_WARMUP_DRAINS 3

/*
 * run_held_xmin measures what a snapshot held open costs the queue, as a
 * long report, a pg_dump or a session idle in its transaction holds one:
 * HELD_XMIN_WARMUP_DRAINS drains of n no-op jobs with nothing held, the last
 * of them the one before the snapshot, then 'drains' drains while a
 * second connection holds a REPEATABLE READ snapshot (taken by its first
 * query, then left idle in its transaction), then one after its release.
 * pg_async.retention is 1 s meanwhile, so that finished jobs are deleted as
 * they would be in production; the queue is not truncated between drains,
 * which would throw away the dead rows the snapshot keeps.  The figure is
 * the last drain under the snapshot against the one before it (issue 23's
 * target: at least 0.8), with the dead rows and the size of async.jobs
 * then.
 */
static void
run_held_xmin(PGconn *conn, int64_t n, int drains)
{
	PGconn	   *holder;
	double	   *rates = malloc(sizeof(double) * drains);
	double		before = 0;
	double		fresh = 0;
	double		released;
	double		slowest;
	int64_t		dead;
	int64_t		bytes;
	int			i;

	if (rates == NULL)
		die("out of memory");
	reset_queue(conn);
	set_retention(conn, "1s");
	/*
	 * The drains before the snapshot: the first runs on an empty table with
	 * nothing to delete, the later ones, like those under the snapshot,
	 * while the retention deletes the jobs of the drains before them.  The
	 * last is the figure's "before".
	 */
	for (i = 0; i < HELD_XMIN_WARMUP_DRAINS; i++)
	{
		before = drain_kept(conn, n);
		if (i == 0)
			fresh = before;
		progress("held-xmin: drain %d of %d with no snapshot held: %.1f jobs/s",
				 i + 1, HELD_XMIN_WARMUP_DRAINS, before);
	}

	holder = connect_db();
	exec_command(holder, "BEGIN ISOLATION LEVEL REPEATABLE READ");
	exec_command(holder, "SELECT 1");
	slowest = before;
	for (i = 0; i < drains; i++)
	{
		rates[i] = drain_kept(conn, n);
		slowest = rates[i] < slowest ? rates[i] : slowest;
		progress("held-xmin: drain %d of %d under the held snapshot: %.1f jobs/s",
				 i + 1, drains, rates[i]);
	}
	/*
	 * what the held snapshot has cost by now: the dead rows as the
	 * statistics have them (the workers report theirs within a second or
	 * so), and the size
	 */
	exec_command(conn, "SELECT pg_stat_force_next_flush()");
	dead = query_int64(conn,
					   "SELECT n_dead_tup FROM pg_stat_user_tables"
					   " WHERE relid = 'async.jobs'::regclass");
	bytes = query_int64(conn, "SELECT pg_total_relation_size('async.jobs')");
	exec_command(holder, "COMMIT");
	PQfinish(holder);

	released = drain_kept(conn, n);
	progress("held-xmin: after the release: %.1f jobs/s", released);
	set_retention(conn, NULL);
	reset_queue(conn);

	add_figure(SC_HELD_XMIN, "jobs", "jobs per drain", FIG_INT, (double) n, "", -1);
	add_figure(SC_HELD_XMIN, "drains", "drains under the snapshot", FIG_INT, drains, "", -1);
	add_figure(SC_HELD_XMIN, "fresh_jobs_per_second", "jobs/s, first drain, empty table",
			   FIG_NUM, fresh, "", -1);
	add_figure(SC_HELD_XMIN, "before_jobs_per_second", "jobs/s, drain before the snapshot",
			   FIG_NUM, before, "", -1);
	add_figure(SC_HELD_XMIN, "first_jobs_per_second", "jobs/s, first drain under it",
			   FIG_NUM, rates[0], "", -1);
	add_figure(SC_HELD_XMIN, "last_jobs_per_second", "jobs/s, last drain under it",
			   FIG_NUM, rates[drains - 1], "", -1);
	add_figure(SC_HELD_XMIN, "slowest_jobs_per_second", "jobs/s, slowest drain",
			   FIG_NUM, slowest, "", -1);
	add_figure(SC_HELD_XMIN, "ratio_last_to_before", "last drain / drain before",
			   FIG_NUM, rates[drains - 1] / before, ">= 0.8",
			   rates[drains - 1] / before >= 0.8);
	add_figure(SC_HELD_XMIN, "dead_rows", "dead rows of async.jobs then", FIG_INT,
			   (double) dead, "", -1);
	add_figure(SC_HELD_XMIN, "table_bytes", "size of async.jobs then", FIG_INT,
			   (double) bytes, "", -1);
	add_figure(SC_HELD_XMIN, "released_jobs_per_second", "jobs/s after the release",
			   FIG_NUM, released, "", -1);
	free(rates);
}

/*
 * set_retention sets pg_async.retention with ALTER SYSTEM (value NULL:
 * RESET) and waits until the reload has reached this session.
 */
static void
set_retention(PGconn *conn, const char *value)
{
	char		sql[128];
	char		before[64];
	char		now[64];
	int			i;

	query_text(conn, "SHOW pg_async.retention", before, sizeof(before));
	if (value)
		snprintf(sql, sizeof(sql), "ALTER SYSTEM SET pg_async.retention = '%s'", value);
	else
		snprintf(sql, sizeof(sql), "ALTER SYSTEM RESET pg_async.retention");
	exec_command(conn, sql);
	exec_command(conn, "SELECT pg_reload_conf()");
	for (i = 0; i < 100; i++)
	{
		sleep_us(50000);
		query_text(conn, "SHOW pg_async.retention", now, sizeof(now));
		if (strcmp(now, before) != 0)
			break;
	}
	/* let the workers take the reload too */
	sleep_us(200000);
}

/*
 * soak_sample reads the sizes, dead tuples and WAL position into s; the
 * interval figures are differences with the previous sample.
 */
static void
soak_sample(PGconn *conn, SoakSample *s, int64_t *wal_pos)
{
	PGresult   *res;
	int64_t		wal;
	int			i;

	res = PQexec(conn,
				 "SELECT pg_total_relation_size('async.jobs'), pg_relation_size('async.jobs'),"
				 " s.n_live_tup, s.n_dead_tup, s.autovacuum_count,"
				 " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
				 " FROM pg_stat_user_tables s WHERE s.relid = 'async.jobs'::regclass");
	check_result(conn, res, "reading the sizes of async.jobs");
	s->total_size = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	s->heap_size = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	s->live_tup = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	s->dead_tup = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	s->autovacuums = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	wal = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
	PQclear(res);
	s->wal_bytes = wal - *wal_pos;
	*wal_pos = wal;

	res = PQexec(conn,
				 "SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i"
				 " JOIN pg_class c ON c.oid = i.indexrelid"
				 " WHERE i.indrelid = 'async.jobs'::regclass ORDER BY c.relname");
	check_result(conn, res, "reading the index sizes of async.jobs");
	if (nsoak_indexes == 0)
	{
		nsoak_indexes = PQntuples(res) < MAX_INDEXES ? PQntuples(res) : MAX_INDEXES;
		for (i = 0; i < nsoak_indexes; i++)
			snprintf(soak_index_names[i], sizeof(soak_index_names[0]), "%s",
					 PQgetvalue(res, i, 0));
	}
	for (i = 0; i < nsoak_indexes && i < PQntuples(res); i++)
		s->index_size[i] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	PQclear(res);
	s->ready = count_ready(conn);
}

/*
 * within_growth tells whether last is at most 1.5 times first, both raised
 * to floor first.
 */
static bool
within_growth(int64_t first, int64_t last, int64_t floor)
{
	if (first < floor)
		first = floor;
	if (last < floor)
		last = floor;
	return last <= 1.5 * first;
}

/*
 * dead_trend compares the dead tuples of the later half of the samples with
 * those of the earlier half, by their highest count.  Autovacuum makes the
 * count a sawtooth (from about zero just after a vacuum to its peak just
 * before the next), and a sample can fall anywhere on it: one interval
 * against the next, or even the mean of a few, says little.  Growth shows
 * as higher peaks.  Returns later peak / earlier peak, both raised to
 * DEAD_FLOOR, or 1 with fewer than two samples.
 */
static double
dead_trend(const SoakSample *samples, int n)
{
	double		early = DEAD_FLOOR;
	double		late = DEAD_FLOOR;
	int			half;
	int			i;

	if (n < 2)
		return 1;
	half = n / 2;
	for (i = 0; i < half; i++)
		if (samples[i].dead_tup > early)
			early = (double) samples[i].dead_tup;
	for (i = n - half; i < n; i++)
		if (samples[i].dead_tup > late)
			late = (double) samples[i].dead_tup;
	return late / early;
}

/*
 * soak_hold_figures reports what the snapshot held over the samples from
 * hold_first to hold_last (the release) cost: the sizes and dead tuples it
 * peaked at against the sample before it, the steady level, and how long
 * after the release the table came back within 1.5 times that level (its
 * total size, and its dead tuples raised to DEAD_FLOOR).
 */
static void
soak_hold_figures(int hold_first, int hold_last)
{
	SoakSample *steady = &soak_samples[hold_first - 1];
	SoakSample *release = &soak_samples[hold_last];
	int64_t		peak_size = 0;
	int64_t		peak_dead = 0;
	double		back = -1;
	int			i;

	for (i = hold_first; i <= hold_last; i++)
	{
		if (soak_samples[i].total_size > peak_size)
			peak_size = soak_samples[i].total_size;
		if (soak_samples[i].dead_tup > peak_dead)
			peak_dead = soak_samples[i].dead_tup;
	}
	for (i = hold_last + 1; i < nsoak_samples && back < 0; i++)
		if (within_growth(steady->total_size, soak_samples[i].total_size, SIZE_FLOOR) &&
			within_growth(steady->dead_tup, soak_samples[i].dead_tup, DEAD_FLOOR))
			back = soak_samples[i].elapsed - release->elapsed;
	add_figure(SC_SOAK, "held_seconds", "seconds a snapshot was held", FIG_NUM,
			   release->elapsed - soak_samples[hold_first - 1].elapsed, "", -1);
	add_figure(SC_SOAK, "held_peak_size_growth", "peak total size held / before", FIG_NUM,
			   steady->total_size > 0 ? (double) peak_size / steady->total_size : 0, "", -1);
	add_figure(SC_SOAK, "held_peak_dead_tuples", "peak dead tuples while held", FIG_INT,
			   (double) peak_dead, "", -1);
	add_figure(SC_SOAK, "back_to_steady_seconds",
			   "s to steady after release",
			   FIG_NUM, back, "<= 120", back >= 0 && back <= 120);
}

/*
 * run_soak enqueues no-op jobs at rate per second for warmup + secs seconds,
 * and, after the warm-up, every interval seconds samples the size of
 * async.jobs and its indexes, the dead tuples and the WAL written per job.
 * Finished jobs are kept for retention seconds (set with ALTER SYSTEM for
 * the run, then reset) unless retention is 0.  The warm-up lets the queue
 * fill up to what retention keeps: without it the first sample, to which
 * the last is compared, would catch a table still growing to its size.
 */
static void
run_soak(PGconn *conn, double rate, double secs, double warmup, double interval,
		 int retention, int np, bool hold)
{
	int64_t		nevents = (int64_t) (rate * (warmup + secs)) + 1;
	int64_t    *commit_us;
	Producer   *p;
	int64_t		base;
	int64_t		prev_done;
	int64_t		prev_sent = 0;
	int64_t		wal_pos = 0;
	int64_t		sent;
	int64_t		inserts;
	double		elapsed;
	double		max_late;
	int			nint;
	int			i;
	char		buf[64];
	bool		sizes_ok = true;
	bool		dead_ok;
	double		trend;
	int			grew = 0;
	SoakSample *first;
	SoakSample *last;
	PGconn	   *holder = NULL;
	int			hold_first = -1;	/* the first held interval's sample */
	int			hold_last = -1;		/* the sample at the release */

	if (retention > 0)
	{
		snprintf(buf, sizeof(buf), "%ds", retention);
		set_retention(conn, buf);
	}
	query_text(conn, "SHOW pg_async.retention", buf, sizeof(buf));
	progress("soak: %.0f jobs/s for %.0f s after a warm-up of %.0f s, a sample every %.0f s,"
			 " retention %s", rate, secs, warmup, interval, buf);
	reset_queue(conn);
	commit_us = calloc(nevents, sizeof(int64_t));
	soak_samples = calloc(MAX_SAMPLES, sizeof(SoakSample));
	if (commit_us == NULL || soak_samples == NULL)
		die("out of memory");
	base = jobs_done(conn);
	p = start_producers(np, "bench_noop", rate, nevents, warmup + secs, 1000, commit_us);
	{
		SoakSample	dummy;

		/* the intervals count from the end of the warm-up */
		sleep_until(p[0].t0 + (int64_t) (warmup * 1e6));
		prev_done = jobs_done(conn);
		prev_sent = producers_sent(p, np);
		soak_sample(conn, &dummy, &wal_pos);
	}
	nint = (int) ceil(secs / interval - 1e-9);
	if (nint > MAX_SAMPLES)
		nint = MAX_SAMPLES;
	for (i = 0; i < nint; i++)
	{
		SoakSample *s = &soak_samples[nsoak_samples];
		double		at = (i + 1) * interval < secs ? (i + 1) * interval : secs;
		int64_t		done;
		int64_t		now_sent;

		/*
		 * The held snapshot: from the last sample before a quarter of the
		 * soak to the first at or after three quarters, one REPEATABLE READ
		 * transaction stays open, as a long report or a pg_dump would.
		 */
		if (hold && holder == NULL && hold_first < 0 && at > secs / 4 && at <= 3 * secs / 4)
		{
			holder = connect_db();
			exec_command(holder, "BEGIN ISOLATION LEVEL REPEATABLE READ");
			exec_command(holder, "SELECT 1");
			hold_first = nsoak_samples;
			progress("soak: a snapshot is held from now");
		}
		sleep_until(p[0].t0 + (int64_t) ((warmup + at) * 1e6));
		s->held = (holder != NULL);
		if (holder != NULL && at >= 3 * secs / 4)
		{
			exec_command(holder, "COMMIT");
			PQfinish(holder);
			holder = NULL;
			hold_last = nsoak_samples;
			progress("soak: the snapshot is released");
		}
		done = jobs_done(conn);
		now_sent = producers_sent(p, np);
		soak_sample(conn, s, &wal_pos);
		s->elapsed = (mono_us() - p[0].t0) / 1e6 - warmup;
		s->done = done - prev_done;
		s->enqueued = now_sent - prev_sent;
		prev_done = done;
		prev_sent = now_sent;
		nsoak_samples++;
		progress("soak: %5.0f s: %" PRId64 " enqueued, %" PRId64 " run, total %.1f MB,"
				 " heap %.1f MB, live %" PRId64 ", dead %" PRId64 ", %.0f WAL bytes/job,"
				 " %" PRId64 " ready",
				 s->elapsed, s->enqueued, s->done, s->total_size / 1048576.0,
				 s->heap_size / 1048576.0, s->live_tup, s->dead_tup,
				 s->done > 0 ? (double) s->wal_bytes / s->done : 0.0, s->ready);
	}
	sent = join_producers(p, np, &elapsed, &inserts, &max_late);
	free(p);
	wait_for_jobs(conn, base, sent);
	free(commit_us);
	if (retention > 0)
		set_retention(conn, NULL);

	if (nsoak_samples == 0)
		die("soak: no sample taken");
	first = &soak_samples[0];
	last = &soak_samples[nsoak_samples - 1];
	sizes_ok = within_growth(first->total_size, last->total_size, SIZE_FLOOR) &&
		within_growth(first->heap_size, last->heap_size, SIZE_FLOOR);
	for (i = 0; i < nsoak_indexes; i++)
		sizes_ok = sizes_ok &&
			within_growth(first->index_size[i], last->index_size[i], SIZE_FLOOR);
	trend = dead_trend(soak_samples, nsoak_samples);
	dead_ok = trend <= 1.2;
	for (i = 1; i < nsoak_samples; i++)
		if (soak_samples[i].dead_tup > soak_samples[i - 1].dead_tup)
			grew++;

	add_text(SC_SOAK, "retention", "pg_async.retention", buf);
	add_figure(SC_SOAK, "producers", "connections", FIG_INT, np, "", -1);
	add_figure(SC_SOAK, "warmup_seconds", "warm-up seconds", FIG_NUM, warmup, "", -1);
	add_figure(SC_SOAK, "seconds", "seconds", FIG_NUM, secs, "", -1);
	add_figure(SC_SOAK, "offered_rate", "offered jobs/s", FIG_NUM, rate, "", -1);
	add_figure(SC_SOAK, "enqueued_per_second", "enqueued jobs/s", FIG_NUM, sent / elapsed, "", -1);
	add_figure(SC_SOAK, "sample_seconds", "sample every s", FIG_NUM, interval, "", -1);
	add_figure(SC_SOAK, "samples", "samples", FIG_INT, nsoak_samples, "", -1);
	add_figure(SC_SOAK, "total_size_growth", "total size last/first", FIG_NUM,
			   first->total_size > 0 ? (double) last->total_size / first->total_size : 0,
			   "", -1);
	add_figure(SC_SOAK, "sizes_within_1_5x", "sizes within 1.5x", FIG_BOOL, sizes_ok,
			   "all <= 1.5x", sizes_ok);
	add_figure(SC_SOAK, "dead_tuples_growth", "dead tuples last/first", FIG_NUM,
			   first->dead_tup > 0 ? (double) last->dead_tup / first->dead_tup : 0, "", -1);
	add_figure(SC_SOAK, "dead_tuples_grew_intervals", "intervals dead tuples grew",
			   FIG_INT, grew, "", -1);
	add_figure(SC_SOAK, "dead_tuples_trend", "dead tuples peak late/early", FIG_NUM,
			   trend, "", -1);
	add_figure(SC_SOAK, "dead_tuples_not_growing", "dead tuples not growing", FIG_BOOL,
			   dead_ok, "peaks <= 1.2x", dead_ok);
	if (hold_first > 0 && hold_last > hold_first)
		soak_hold_figures(hold_first, hold_last);
}

/*
 * json_string prints s as a JSON string.
 */
static void
json_string(const char *s)
{
	putchar('"');
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/*
 * json_number prints v as a JSON number (null when not finite).
 */
static void
json_number(double v)
{
	if (!isfinite(v))
		printf("null");
	else if (v == floor(v) && fabs(v) < 1e15)
		printf("%.0f", v);
	else
		printf("%.6g", v);
}

/* pairs of drains (without keys, with) of run_keys */
#define KEY_PAIRS	5

/*
 * wait_for_keyed_jobs waits until the workers have run n jobs since the
 * jobs_done reading base, and then until every job has finished.  Not
 * wait_for_jobs: the queued jobs of a function with a key limit are
 * marked limited, and its look for ready jobs leaves those out.  Returns
 * the monotonic time at which the last job was found finished.
 */
static int64_t
wait_for_keyed_jobs(PGconn *conn, int64_t base, int64_t n)
{
	int64_t		start = mono_us();
	int64_t		last_progress = start;
	int64_t		last_done = base;
	int64_t		done;

	while ((done = jobs_done(conn)) - base < n ||
		   query_int64(conn, "SELECT count(*) FROM (SELECT FROM async.jobs"
					   " WHERE finished_at IS NULL LIMIT 1) s") > 0)
	{
		if (done != last_done)
		{
			last_done = done;
			last_progress = mono_us();
		}
		if (mono_us() - last_progress > STALL_US)
		{
			report_stall(conn);
			die("keys: no job finished for %d s (%" PRId64 " of %" PRId64 " done)",
				STALL_US / 1000000, done - base, n);
		}
		if (mono_us() - start > (int64_t) (opts.timeout * 1e6))
			die("keys: timed out after %.0f s", opts.timeout);
		sleep_us(done - base < n ? POLL_US : 1000);
	}
	return mono_us();
}

/*
 * drain_keys queues n no-op jobs in one transaction, their payloads naming
 * tenants 0 to tenants - 1 in turn, for bench_noop or, with keyed, for
 * bench_keyed, and times them from the COMMIT until every one has
 * succeeded.  Returns jobs/s.
 */
static double
drain_keys(PGconn *conn, int64_t n, int tenants, bool keyed)
{
	char		sql[256];
	int64_t		succeeded;
	DrainMark	mark;
	int64_t		t1;
	int64_t		t2;

	reset_queue(conn);
	mark = drain_mark(conn, keyed ? "bench_keyed" : "bench_noop", keyed);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload)"
			 " SELECT '%s', jsonb_build_object('tenant', i %% %d)"
			 " FROM generate_series(1, %" PRId64 ") i",
			 mark.function, tenants, n);
	exec_command(conn, sql);
	t1 = mono_us();
	t2 = wait_for_drain(conn, mark, n);
	succeeded = query_int64(conn, "SELECT count(*) FROM async.jobs WHERE state = 'succeeded'");
	if (succeeded != n)
		die("keys: %" PRId64 " of the %" PRId64 " jobs of %s succeeded", succeeded, n,
			keyed ? "bench_keyed" : "bench_noop");
	return n / ((t2 - t1) / 1e6);
}

/*
 * run_keys measures what a limit by key costs the drain (issue 21's
 * target: a drain with keys at 0.8 of one without or better), in
 * alternating pairs of drains of the same jobs, spread over the same
 * tenants.
 */
static void
run_keys(PGconn *conn, int64_t n)
{
	double		plain[KEY_PAIRS];
	double		keyed[KEY_PAIRS];
	double		ratios[KEY_PAIRS];
	char		sql[256];
	int			r;

	/* registered here: the other scenarios run without a limit in the way */
	snprintf(sql, sizeof(sql),
			 "SELECT async.register('public.bench_noop(jsonb)', name => 'bench_keyed',"
			 " concurrency_key => 'tenant', key_concurrency => %d)", opts.key_concurrency);
	exec_command(conn, sql);
	progress("keys: %d pairs of drains of %" PRId64 " jobs of %d tenants, without and with"
			 " key_concurrency %d", KEY_PAIRS, n, opts.key_tenants, opts.key_concurrency);
	for (r = 0; r < KEY_PAIRS; r++)
	{
		plain[r] = drain_keys(conn, n, opts.key_tenants, false);
		keyed[r] = drain_keys(conn, n, opts.key_tenants, true);
		ratios[r] = keyed[r] / plain[r];
		progress("keys: pair %d: %.1f jobs/s without, %.1f jobs/s with, ratio %.3f",
				 r + 1, plain[r], keyed[r], ratios[r]);
	}
	qsort(plain, KEY_PAIRS, sizeof(double), compare_double);
	qsort(keyed, KEY_PAIRS, sizeof(double), compare_double);
	qsort(ratios, KEY_PAIRS, sizeof(double), compare_double);

	reset_queue(conn);
	exec_command(conn, "SELECT async.unregister('bench_keyed')");

	add_figure(SC_KEYS, "jobs", "jobs per drain", FIG_INT, (double) n, "", -1);
	add_figure(SC_KEYS, "tenants", "tenants (keys)", FIG_INT, opts.key_tenants, "", -1);
	add_figure(SC_KEYS, "key_concurrency", "key_concurrency", FIG_INT, opts.key_concurrency, "", -1);
	add_figure(SC_KEYS, "pairs", "pairs of drains", FIG_INT, KEY_PAIRS, "", -1);
	add_figure(SC_KEYS, "plain_jobs_per_second", "jobs/s, no limit (median)",
			   FIG_NUM, median_of_sorted(plain, KEY_PAIRS), "", -1);
	add_figure(SC_KEYS, "keyed_jobs_per_second", "jobs/s, limited by key (median)",
			   FIG_NUM, median_of_sorted(keyed, KEY_PAIRS), "", -1);
	add_figure(SC_KEYS, "ratio", "with keys / without (median of the pairs)", FIG_NUM,
			   median_of_sorted(ratios, KEY_PAIRS), ">= 0.8",
			   median_of_sorted(ratios, KEY_PAIRS) >= 0.8);
}

/* pairs of drains (all priority 0, mixed priorities) of run_priorities */
#define PRIORITY_PAIRS	5

/*
 * drain_priorities queues n no-op jobs in one transaction, of priority 0
 * or, with mixed, of priorities -2 to 2 in turn, and times them from the
 * COMMIT until every one has succeeded.  Returns jobs/s.
 */
static double
drain_priorities(PGconn *conn, int64_t n, bool mixed)
{
	char		sql[256];
	DrainMark	mark;
	int64_t		t1;
	int64_t		t2;

	reset_queue(conn);
	mark = drain_mark(conn, "bench_noop", false);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload, priority)"
			 " SELECT 'bench_noop', '{}', %s FROM generate_series(1, %" PRId64 ") i",
			 mixed ? "i % 5 - 2" : "0", n);
	exec_command(conn, sql);
	t1 = mono_us();
	t2 = wait_for_drain(conn, mark, n);
	if (query_int64(conn, "SELECT count(*) FROM async.jobs WHERE state = 'succeeded'") != n)
		die("priorities: not every job succeeded");
	return n / ((t2 - t1) / 1e6);
}

/*
 * run_priorities measures what priorities cost the drain (issue 21's
 * target: mixed priorities drain at 0.9 of none or better), in
 * alternating pairs of drains, and how far a job of priority -10 jumps a
 * queue of n / 2 jobs of priority 0 that the workers are draining: the
 * share of the jobs still waiting when it was enqueued that it started
 * before (started_at is when a job's claim began).
 */
static void
run_priorities(PGconn *conn, int64_t n)
{
	double		plain[PRIORITY_PAIRS];
	double		mixed[PRIORITY_PAIRS];
	double		ratios[PRIORITY_PAIRS];
	char		sql[512];
	int64_t		base;
	int64_t		waiting;
	int64_t		overtaken;
	int			r;

	progress("priorities: %d pairs of drains of %" PRId64 " jobs, without and with priorities",
			 PRIORITY_PAIRS, n);
	for (r = 0; r < PRIORITY_PAIRS; r++)
	{
		plain[r] = drain_priorities(conn, n, false);
		mixed[r] = drain_priorities(conn, n, true);
		ratios[r] = mixed[r] / plain[r];
		progress("priorities: pair %d: %.1f jobs/s all 0, %.1f jobs/s mixed, ratio %.3f",
				 r + 1, plain[r], mixed[r], ratios[r]);
	}
	qsort(plain, PRIORITY_PAIRS, sizeof(double), compare_double);
	qsort(mixed, PRIORITY_PAIRS, sizeof(double), compare_double);
	qsort(ratios, PRIORITY_PAIRS, sizeof(double), compare_double);

	/* the jump: wait until the workers are into the backlog, then enqueue */
	reset_queue(conn);
	base = jobs_done(conn);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO async.jobs (function, payload)"
			 " SELECT 'bench_noop', '{}' FROM generate_series(1, %" PRId64 ")", n / 2);
	exec_command(conn, sql);
	while (jobs_done(conn) - base < (n / 20 < 1000 ? n / 20 : 1000))
		usleep(POLL_US);
	exec_command(conn, "INSERT INTO async.jobs (function, payload, priority, event_id)"
				 " VALUES ('bench_noop', '{}', -10, 'bench-urgent')");
	wait_for_jobs(conn, base, n / 2 + 1);
	snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM async.jobs j, async.jobs u"
			 " WHERE u.event_id = 'bench-urgent' AND j.event_id <> 'bench-urgent'"
			 "   AND j.started_at >= u.enqueued_at");
	waiting = query_int64(conn, sql);
	snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM async.jobs j, async.jobs u"
			 " WHERE u.event_id = 'bench-urgent' AND j.event_id <> 'bench-urgent'"
			 "   AND j.started_at > u.started_at");
	overtaken = query_int64(conn, sql);
	progress("priorities: the job of priority -10 started before %" PRId64 " of the %" PRId64
			 " jobs waiting when it came", overtaken, waiting);

	add_figure(SC_PRIORITIES, "jobs", "jobs per drain", FIG_INT, (double) n, "", -1);
	add_figure(SC_PRIORITIES, "pairs", "pairs of drains", FIG_INT, PRIORITY_PAIRS, "", -1);
	add_figure(SC_PRIORITIES, "plain_jobs_per_second", "jobs/s, all priority 0 (median)",
			   FIG_NUM, median_of_sorted(plain, PRIORITY_PAIRS), "", -1);
	add_figure(SC_PRIORITIES, "mixed_jobs_per_second", "jobs/s, priorities -2 to 2 (median)",
			   FIG_NUM, median_of_sorted(mixed, PRIORITY_PAIRS), "", -1);
	add_figure(SC_PRIORITIES, "ratio", "mixed / all 0 (median of the pairs)", FIG_NUM,
			   median_of_sorted(ratios, PRIORITY_PAIRS), ">= 0.9",
			   median_of_sorted(ratios, PRIORITY_PAIRS) >= 0.9);
	add_figure(SC_PRIORITIES, "urgent_waiting", "jobs waiting when the -10 job came",
			   FIG_INT, (double) waiting, "", -1);
	add_figure(SC_PRIORITIES, "urgent_overtaken", "of them started after it", FIG_INT,
			   (double) overtaken, "most", waiting > 0 && overtaken * 2 > waiting);
}

/*
 * print_json prints every setting and figure as one JSON object.
 */
static void
print_json(void)
{
	int			i;
	int			sc;
	bool		first;

	printf("{\n  \"settings\": {");
	for (i = 0; i < nsettings; i++)
	{
		printf("%s\n    ", i > 0 ? "," : "");
		json_string(setting_names[i]);
		printf(": ");
		json_string(setting_values[i]);
	}
	printf("\n  }");
	for (sc = 0; sc < SC_COUNT; sc++)
	{
		bool		any = false;

		for (i = 0; i < nfigures; i++)
			if (figures[i].scenario == sc)
				any = true;
		if (!any)
			continue;
		printf(",\n  ");
		json_string(scenario_names[sc]);
		printf(": {");
		first = true;
		for (i = 0; i < nfigures; i++)
		{
			Figure	   *f = &figures[i];

			if (f->scenario != sc)
				continue;
			printf("%s\n    ", first ? "" : ",");
			first = false;
			json_string(f->key);
			printf(": ");
			if (f->kind == FIG_TEXT)
				json_string(f->text);
			else if (f->kind == FIG_BOOL)
				printf("%s", f->value != 0 ? "true" : "false");
			else
				json_number(f->value);
		}
		printf(",\n    \"targets\": {");
		first = true;
		for (i = 0; i < nfigures; i++)
		{
			Figure	   *f = &figures[i];

			if (f->scenario != sc || f->pass < 0)
				continue;
			printf("%s\n      ", first ? "" : ",");
			first = false;
			json_string(f->key);
			printf(": {\"target\": ");
			json_string(f->target);
			printf(", \"pass\": %s}", f->pass ? "true" : "false");
		}
		printf("%s}", first ? "" : "\n    ");
		if (sc == SC_SOAK)
		{
			int			j;
			int			k;

			printf(",\n    \"samples\": [");
			for (j = 0; j < nsoak_samples; j++)
			{
				SoakSample *s = &soak_samples[j];

				printf("%s\n      {\"elapsed_seconds\": ", j > 0 ? "," : "");
				json_number(s->elapsed);
				printf(", \"enqueued\": %" PRId64 ", \"jobs_done\": %" PRId64
					   ", \"total_size\": %" PRId64 ", \"heap_size\": %" PRId64
					   ", \"index_sizes\": {",
					   s->enqueued, s->done, s->total_size, s->heap_size);
				for (k = 0; k < nsoak_indexes; k++)
				{
					printf("%s", k > 0 ? ", " : "");
					json_string(soak_index_names[k]);
					printf(": %" PRId64, s->index_size[k]);
				}
				printf("}, \"n_live_tup\": %" PRId64 ", \"n_dead_tup\": %" PRId64
					   ", \"autovacuum_count\": %" PRId64 ", \"wal_bytes\": %" PRId64
					   ", \"wal_bytes_per_job\": ",
					   s->live_tup, s->dead_tup, s->autovacuums, s->wal_bytes);
				json_number(s->done > 0 ? (double) s->wal_bytes / s->done : 0);
				printf(", \"ready\": %" PRId64 ", \"held\": %s}", s->ready,
					   s->held ? "true" : "false");
			}
			printf("%s]", nsoak_samples > 0 ? "\n    " : "");
		}
		printf("\n  }");
	}
	printf("\n}\n");
}

/*
 * print_table prints the settings, the figures and the soak samples for
 * people.
 */
static void
print_table(void)
{
	int			i;

	printf("pg_async benchmark\n\nsettings:\n");
	for (i = 0; i < nsettings; i++)
		printf("  %-24s %s\n", setting_names[i], setting_values[i]);

	printf("\n%-8s  %-28s  %14s  %-12s  %s\n", "scenario", "figure", "value", "target", "result");
	printf("%-8s  %-28s  %14s  %-12s  %s\n", "--------", "----------------------------",
		   "--------------", "------------", "------");
	for (i = 0; i < nfigures; i++)
	{
		Figure	   *f = &figures[i];
		char		val[64];

		if (f->kind == FIG_TEXT)
			snprintf(val, sizeof(val), "%s", f->text);
		else if (f->kind == FIG_BOOL)
			snprintf(val, sizeof(val), "%s", f->value != 0 ? "yes" : "no");
		else if (f->kind == FIG_INT)
			snprintf(val, sizeof(val), "%.0f", f->value);
		else if (fabs(f->value) >= 100)
			snprintf(val, sizeof(val), "%.1f", f->value);
		else
			snprintf(val, sizeof(val), "%.3f", f->value);
		printf("%-8s  %-28s  %14s  %-12s  %s\n", scenario_names[f->scenario], f->label, val,
			   f->target, f->pass < 0 ? "" : (f->pass ? "PASS" : "FAIL"));
	}

	if (nsoak_samples > 0)
	{
		printf("\nsoak samples (sizes in kB; WAL per job run in the interval):\n");
		printf("%8s %9s %9s %9s %9s", "seconds", "enqueued", "run", "total", "heap");
		for (i = 0; i < nsoak_indexes; i++)
			printf(" %*s", (int) (strlen(soak_index_names[i]) > 9 ? strlen(soak_index_names[i]) : 9),
				   soak_index_names[i]);
		printf(" %9s %9s %5s %9s %9s %4s\n", "live", "dead", "avac", "WAL/job", "ready", "held");
		for (i = 0; i < nsoak_samples; i++)
		{
			SoakSample *s = &soak_samples[i];
			int			k;

			printf("%8.0f %9" PRId64 " %9" PRId64 " %9" PRId64 " %9" PRId64,
				   s->elapsed, s->enqueued, s->done, s->total_size / 1024, s->heap_size / 1024);
			for (k = 0; k < nsoak_indexes; k++)
				printf(" %*" PRId64,
					   (int) (strlen(soak_index_names[k]) > 9 ? strlen(soak_index_names[k]) : 9),
					   s->index_size[k] / 1024);
			printf(" %9" PRId64 " %9" PRId64 " %5" PRId64 " %9.0f %9" PRId64 " %4s\n",
				   s->live_tup, s->dead_tup, s->autovacuums,
				   s->done > 0 ? (double) s->wal_bytes / s->done : 0.0, s->ready,
				   s->held ? "yes" : "");
		}
	}
}

/*
 * usage prints the options.
 */
static void
usage(void)
{
	printf("pg_async_bench: benchmark of pg_async\n\n"
		   "Usage: pg_async_bench [OPTION]...\n\n"
		   "  -d, --dbname=CONNINFO     libpq connection string or database name (default: PG* variables)\n"
		   "  -s, --scenario=NAME       drain, enqueue, latency, mixed, backlog, soak, held,\n"
		   "                            held-xmin, priorities, keys or all\n"
		   "                            (repeatable or comma-separated; default all)\n"
		   "  -n, --jobs=N              jobs of drain (200000) and backlog (1000000), events of latency (10000)\n"
		   "      --duration=SECONDS    enqueue per table (20), mixed (60), soak (600)\n"
		   "      --rate=JOBS_PER_S     latency (1000), mixed (80%% of drain), soak (2000)\n"
		   "  -c, --connections=K       enqueue connections (8)\n"
		   "  -p, --producers=P         producer connections of latency, mixed, soak (4)\n"
		   "      --drain-jobs=N, --latency-events=N, --backlog-jobs=N, --held-jobs=N,\n"
		   "      --held-xmin-jobs=N    (100000; quick 10000)\n"
		   "      --held-xmin-drains=N  drains of held-xmin under the held snapshot (10)\n"
		   "      --held-xmin-priorities  held-xmin drains jobs of priorities -2 to 2, not 0\n"
		   "      --key-tenants=N       tenants of the keys scenario's jobs (1000)\n"
		   "      --key-concurrency=N   its key_concurrency (5)\n"
		   "      --rate-limited=N      N idle functions with a rate limit registered first,\n"
		   "                            so that every claim counts the limits (0)\n"
		   "      --keyed-later=N       N jobs due in 30 days, each under its own key, of a\n"
		   "                            function with a concurrency_key, queued first (0)\n"
		   "      --enqueue-duration=S, --mixed-duration=S, --soak-duration=S\n"
		   "      --latency-rate=R, --mixed-rate=R, --soak-rate=R\n"
		   "                            the same, for one scenario\n"
		   "      --soak-interval=S     seconds between soak samples (60)\n"
		   "      --soak-warmup=S       seconds at the soak rate before the first interval (60;\n"
		   "                            quick 15): the queue reaches the size retention keeps\n"
		   "                            it at before the sizes are compared\n"
		   "      --soak-retention=S    pg_async.retention during soak, set with ALTER SYSTEM\n"
		   "                            and reset afterwards; 0 leaves it alone (30; quick 10)\n"
		   "      --soak-hold           hold one snapshot open for the middle half of the soak,\n"
		   "                            and report how long the sizes take to come back\n"
		   "      --timeout=S           longest wait for the workers (1800)\n"
		   "      --quick               scaled down: drain 20000, enqueue 3 s, latency 2000,\n"
		   "                            mixed 10 s, backlog 50000, soak 60 s at 500/s every 15 s,\n"
		   "                            held 50000, held-xmin 10 drains of 10000\n"
		   "                            (a smoke test: too short for the soak targets)\n"
		   "      --json                print the results as JSON\n"
		   "  -h, --help                show this help\n");
}

/*
 * parse_scenarios marks the scenarios named in a comma-separated list.
 */
static void
parse_scenarios(const char *list)
{
	char	   *copy = strdup(list);
	char	   *tok;
	char	   *save = NULL;
	int			i;

	if (copy == NULL)
		die("out of memory");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		bool		found = false;

		for (i = 0; i < SC_COUNT; i++)
		{
			if (strcmp(tok, "all") == 0 || strcmp(tok, scenario_names[i]) == 0)
			{
				opts.scenarios[i] = true;
				found = true;
			}
		}
		if (!found)
			die("unknown scenario \"%s\"", tok);
	}
	free(copy);
}

/*
 * parse_number parses a positive number option.
 */
static double
parse_number(const char *name, const char *arg)
{
	char	   *end;
	double		v = strtod(arg, &end);

	if (end == arg || *end != '\0' || v < 0)
		die("invalid value for %s: \"%s\"", name, arg);
	return v;
}

/*
 * pick returns the first of the values that was given (not negative).
 */
static double
pick(double specific, double general, double quick, double dflt)
{
	if (specific >= 0)
		return specific;
	if (general >= 0)
		return general;
	if (opts.quick)
		return quick;
	return dflt;
}

/*
 * parse_options reads the command line into opts.
 */
static void
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"scenario", required_argument, NULL, 's'},
		{"jobs", required_argument, NULL, 'n'},
		{"connections", required_argument, NULL, 'c'},
		{"producers", required_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{"duration", required_argument, NULL, 1},
		{"rate", required_argument, NULL, 2},
		{"drain-jobs", required_argument, NULL, 3},
		{"latency-events", required_argument, NULL, 4},
		{"backlog-jobs", required_argument, NULL, 5},
		{"enqueue-duration", required_argument, NULL, 6},
		{"mixed-duration", required_argument, NULL, 7},
		{"soak-duration", required_argument, NULL, 8},
		{"latency-rate", required_argument, NULL, 9},
		{"mixed-rate", required_argument, NULL, 10},
		{"soak-rate", required_argument, NULL, 11},
		{"soak-interval", required_argument, NULL, 12},
		{"soak-retention", required_argument, NULL, 13},
		{"timeout", required_argument, NULL, 14},
		{"quick", no_argument, NULL, 15},
		{"json", no_argument, NULL, 16},
		{"soak-warmup", required_argument, NULL, 17},
		{"held-jobs", required_argument, NULL, 18},
		{"held-xmin-jobs", required_argument, NULL, 19},
		{"held-xmin-drains", required_argument, NULL, 20},
		{"soak-hold", no_argument, NULL, 21},
		{"held-xmin-priorities", no_argument, NULL, 22},
		{"key-tenants", required_argument, NULL, 23},
		{"key-concurrency", required_argument, NULL, 24},
		{"rate-limited", required_argument, NULL, 25},
		{"keyed-later", required_argument, NULL, 26},
		{NULL, 0, NULL, 0}
	};
	double		n = -1;
	double		duration = -1;
	double		rate = -1;
	double		drain_jobs = -1;
	double		key_tenants = -1;
	double		key_concurrency = -1;
	double		rate_limited = 0;
	double		keyed_later = 0;
	double		latency_events = -1;
	double		backlog_jobs = -1;
	double		held_jobs = -1;
	double		held_xmin_jobs = -1;
	double		held_xmin_drains = -1;
	double		enqueue_duration = -1;
	double		mixed_duration = -1;
	double		soak_duration = -1;
	double		latency_rate = -1;
	double		mixed_rate = -1;
	double		soak_rate = -1;
	double		connections = -1;
	double		producers = -1;
	double		soak_interval = -1;
	double		soak_warmup = -1;
	double		soak_retention = -1;
	double		timeout = -1;
	bool		any_scenario = false;
	int			c;
	int			i;

	opts.conninfo = "";
	while ((c = getopt_long(argc, argv, "d:s:n:c:p:h", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opts.conninfo = optarg;
				break;
			case 's':
				parse_scenarios(optarg);
				any_scenario = true;
				break;
			case 'n':
				n = parse_number("-n", optarg);
				break;
			case 'c':
				connections = parse_number("-c", optarg);
				break;
			case 'p':
				producers = parse_number("-p", optarg);
				break;
			case 'h':
				usage();
				exit(0);
			case 1:
				duration = parse_number("--duration", optarg);
				break;
			case 2:
				rate = parse_number("--rate", optarg);
				break;
			case 3:
				drain_jobs = parse_number("--drain-jobs", optarg);
				break;
			case 4:
				latency_events = parse_number("--latency-events", optarg);
				break;
			case 5:
				backlog_jobs = parse_number("--backlog-jobs", optarg);
				break;
			case 6:
				enqueue_duration = parse_number("--enqueue-duration", optarg);
				break;
			case 7:
				mixed_duration = parse_number("--mixed-duration", optarg);
				break;
			case 8:
				soak_duration = parse_number("--soak-duration", optarg);
				break;
			case 9:
				latency_rate = parse_number("--latency-rate", optarg);
				break;
			case 10:
				mixed_rate = parse_number("--mixed-rate", optarg);
				break;
			case 11:
				soak_rate = parse_number("--soak-rate", optarg);
				break;
			case 12:
				soak_interval = parse_number("--soak-interval", optarg);
				break;
			case 13:
				soak_retention = parse_number("--soak-retention", optarg);
				break;
			case 17:
				soak_warmup = parse_number("--soak-warmup", optarg);
				break;
			case 18:
				held_jobs = parse_number("--held-jobs", optarg);
				break;
			case 19:
				held_xmin_jobs = parse_number("--held-xmin-jobs", optarg);
				break;
			case 21:
				opts.soak_hold = true;
				break;
			case 22:
				opts.held_xmin_priorities = true;
				break;
			case 23:
				key_tenants = parse_number("--key-tenants", optarg);
				break;
			case 24:
				key_concurrency = parse_number("--key-concurrency", optarg);
				break;
			case 25:
				rate_limited = parse_number("--rate-limited", optarg);
				break;
			case 26:
				keyed_later = parse_number("--keyed-later", optarg);
				break;
			case 20:
				held_xmin_drains = parse_number("--held-xmin-drains", optarg);
				break;
			case 14:
				timeout = parse_number("--timeout", optarg);
				break;
			case 15:
				opts.quick = true;
				break;
			case 16:
				opts.json = true;
				break;
			default:
				fprintf(stderr, "Try \"pg_async_bench --help\".\n");
				exit(2);
		}
	}
	if (optind < argc)
		die("unexpected argument \"%s\"", argv[optind]);
	if (!any_scenario)
		for (i = 0; i < SC_COUNT; i++)
			opts.scenarios[i] = true;

	opts.drain_jobs = (int64_t) pick(drain_jobs, n, 20000, 200000);
	opts.latency_events = (int64_t) pick(latency_events, n, 2000, 10000);
	opts.backlog_jobs = (int64_t) pick(backlog_jobs, n, 50000, 1000000);
	opts.held_jobs = (int64_t) pick(held_jobs, -1, 50000, 1000000);
	opts.held_xmin_jobs = (int64_t) pick(held_xmin_jobs, -1, 10000, 100000);
	opts.held_xmin_drains = (int) pick(held_xmin_drains, -1, 10, 10);
	opts.enqueue_duration = pick(enqueue_duration, duration, 3, 20);
	opts.mixed_duration = pick(mixed_duration, duration, 10, 60);
	opts.soak_duration = pick(soak_duration, duration, 60, 600);
	opts.latency_rate = pick(latency_rate, rate, 1000, 1000);
	opts.mixed_rate = pick(mixed_rate, rate, -1, -1);	/* -1: 80% of drain */
	opts.soak_rate = pick(soak_rate, rate, 500, 2000);
	opts.connections = (int) pick(connections, -1, 8, 8);
	opts.producers = (int) pick(producers, -1, 4, 4);
	opts.soak_interval = pick(soak_interval, -1, 15, 60);
	opts.soak_warmup = pick(soak_warmup, -1, 15, 60);
	opts.soak_retention = (int) pick(soak_retention, -1, 10, 30);
	opts.timeout = pick(timeout, -1, 1800, 1800);
	opts.key_tenants = (int) pick(key_tenants, -1, 100, 1000);
	opts.key_concurrency = (int) pick(key_concurrency, -1, 5, 5);
	if (rate_limited > 1000)
		die("--rate-limited takes at most 1000 functions");
	opts.rate_limited = (int) rate_limited;
	if (keyed_later > 10000000)
		die("--keyed-later takes at most 10000000 jobs");
	opts.keyed_later = (int) keyed_later;
	opts.n = (int64_t) n;
	opts.duration = duration;
	opts.rate = rate;

	if (opts.drain_jobs < 1 || opts.latency_events < 1 || opts.backlog_jobs < 1 ||
		opts.held_jobs < 1 || opts.held_xmin_jobs < 1 || opts.held_xmin_drains < 1)
		die("job counts must be at least 1");
	if (opts.connections < 1 || opts.producers < 1)
		die("-c and -p must be at least 1");
	if (opts.key_tenants < 1 || opts.key_concurrency < 1 || opts.key_concurrency > 10000)
		die("--key-tenants must be at least 1, --key-concurrency 1 to 10000");
	if (opts.enqueue_duration <= 0 || opts.mixed_duration <= 0 || opts.soak_duration <= 0 ||
		opts.soak_interval <= 0 || opts.soak_warmup < 0)
		die("durations must be positive");
	if (opts.latency_rate <= 0 || opts.soak_rate <= 0 || opts.mixed_rate == 0)
		die("rates must be positive");
}

/*
 * check_served stops the program unless the workers serve this database, as
 * async.health() says: it may hold no worker yet, just after CREATE
 * EXTENSION, or none at all while idle (workers on demand), so a
 * 'critical' status counts only once it has lasted 10 seconds.
 */
static void
check_served(PGconn *conn)
{
	static const char *const sql =
		"SELECT CASE WHEN status = 'critical' THEN detail END"
		"  FROM async.health() WHERE \"check\" = 'workers'";
	int64_t		deadline = mono_us() + 10 * 1000000;
	char		detail[512];

	for (;;)
	{
		query_text(conn, sql, detail, sizeof(detail));
		if (detail[0] == '\0')
			return;
		if (mono_us() >= deadline)
			die("no pg_async worker serves this database: %s", detail);
		sleep_us(100 * 1000);
	}
}

/*
 * main parses the options, prepares the database and runs the chosen
 * scenarios in order.
 */
int
main(int argc, char **argv)
{
	PGconn	   *conn;

	parse_options(argc, argv);
	conn = connect_db();
	if (query_int64(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_async'") != 1)
		die("pg_async is not installed in this database");
	check_served(conn);
	setup_objects(conn);
	set_ready_predicate(conn);
	read_settings(conn);

	if (opts.scenarios[SC_DRAIN])
		run_drain(conn, opts.drain_jobs);
	if (opts.scenarios[SC_ENQUEUE])
		run_enqueue(conn, opts.connections, opts.enqueue_duration);
	if (opts.scenarios[SC_LATENCY])
		run_latency(conn, opts.latency_rate, opts.latency_events, opts.producers);
	if (opts.scenarios[SC_MIXED])
		run_mixed(conn, opts.mixed_rate, opts.mixed_duration, opts.producers);
	if (opts.scenarios[SC_BACKLOG])
		run_backlog(conn, opts.backlog_jobs);
	if (opts.scenarios[SC_SOAK])
		run_soak(conn, opts.soak_rate, opts.soak_duration, opts.soak_warmup,
				 opts.soak_interval, opts.soak_retention, opts.producers, opts.soak_hold);
	if (opts.scenarios[SC_HELD])
		run_held(conn, opts.held_jobs);
	if (opts.scenarios[SC_HELD_XMIN])
		run_held_xmin(conn, opts.held_xmin_jobs, opts.held_xmin_drains);
	if (opts.scenarios[SC_PRIORITIES])
		run_priorities(conn, opts.drain_jobs);
	if (opts.scenarios[SC_KEYS])
		run_keys(conn, opts.drain_jobs);

	/* leave the queue empty behind us */
	exec_command(conn, "TRUNCATE async.jobs, async.dead_letters, public.bench_latency_log");
	PQfinish(conn);

	if (opts.json)
		print_json();
	else
		print_table();
	return 0;
}
