/*-------------------------------------------------------------------------
 *
 * pg_async_top.c
 *	  Live monitor of pg_async, on libpq.
 *
 * pg_async_top connects to one database and redraws, every interval (one
 * second by default), what pg_async is doing there:
 *
 *	- a header: the time, the database, the server version and the totals;
 *	- the health checks of async.health() whose status is not ok, with
 *	  their detail and hint;
 *	- one line per function, from async.stats and async.function_stats: the
 *	  rate (succeeded and failed attempts per second since the previous
 *	  refresh) with a sparkline of the last refreshes, the backlog (ready
 *	  jobs), held jobs (of paused functions and of functions held with
 *	  concurrency 0), scheduled and running jobs, the age of the oldest
 *	  ready job, the
 *	  95th percentile of the queue wait, the failed attempts and the dead
 *	  jobs;
 *	- one line per worker, from async.workers: its pid and state, the job it
 *	  runs (function, event id, attempt), for how long, and its jobs done.
 *
 * The terminal is driven with plain ANSI escapes (alternate screen, cursor
 * home, clear to end of line) and read in non-canonical mode through
 * termios, so there is no curses dependency.  Keys: q quits, s sorts the
 * functions by the next column, r reverses the order, h or ? shows the
 * help.  The terminal is restored on exit, on SIGINT, SIGTERM, SIGHUP and
 * SIGQUIT, and around a suspension (SIGTSTP).
 *
 * With --once the program prints one plain snapshot (no escapes, no raw
 * mode) and exits; it samples twice, one interval apart, so that the rate
 * means something.
 *
 * async.function_stats, async.workers and async.health() need the
 * privileges of pg_monitor; without them the program shows what the role
 * may read (async.stats) and says what is missing.
 *
 * Errors go to stderr, with exit status 1.
 *
 * bin/pg_async_top.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

/* the extension's default_version, which the Makefile passes */
#ifndef PG_ASYNC_VERSION
#error "PG_ASYNC_VERSION must be defined: build pg_async_top with the Makefile"
#endif
#define HISTORY			20		/* rate samples kept for the sparkline */
#define LINE_MAX_BYTES	2048	/* longest line formatted */
#define NAME_WIDTH_MIN	8		/* the function column is at least this wide */
#define NAME_WIDTH_MAX	32		/* and at most this wide */
#define EVENT_WIDTH_MAX 36		/* the widest event_id column */

/* how the functions can be sorted, in the order "s" cycles through them */
typedef enum SortKey
{
	SORT_NAME,
	SORT_RATE,
	SORT_BACKLOG,
	SORT_OLDEST,
	SORT_WAIT,
	SORT_FAILED,
	SORT_COUNT
} SortKey;

static const char *const sort_names[SORT_COUNT] = {
	"name", "rate", "backlog", "oldest", "p95 wait", "failures"
};

/* command-line options */
typedef struct Options
{
	const char *dbname;			/* -d or the argument: a conninfo or a name */
	const char *host;
	const char *port;
	const char *user;
	double		interval;		/* seconds between refreshes */
	bool		once;
} Options;

/* one function: its queue, its counters and its rate history */
typedef struct FuncRow
{
	char	   *name;
	int64_t		ready;
	int64_t		held;			/* due, but its function is paused or held at 0 */
	int64_t		scheduled;
	int64_t		running;
	int64_t		dead;			/* dead jobs kept in async.jobs */
	double		oldest;			/* seconds; -1 when no job is ready */
	int64_t		done;			/* succeeded + failed attempts (counters) */
	int64_t		failed;			/* failed attempts (counters) */
	double		wait_p95;		/* milliseconds; -1 when unknown */
	double		rate;			/* attempts/s since the last sample; -1 unknown */
	double		history[HISTORY];	/* the last rates, oldest first */
	int			nhistory;
} FuncRow;

static Options opts;
static PGconn *conn;
static char *ext_version;
static bool can_counters;		/* may read async.function_stats */
static bool can_workers;		/* may read async.workers */
static bool can_health;			/* may execute async.health() */
static bool has_held;			/* async.stats has the column held (0.4) */

/* the last sample */
static FuncRow *funcs;
static int	nfuncs;
static PGresult *workers_res;
static PGresult *health_res;
static double sample_time = -1;	/* CLOCK_MONOTONIC seconds; -1: none yet */
static char sample_clock[32];	/* local wall-clock time of the sample */
static char refresh_error[512]; /* why the last refresh failed, or "" */

/* the screen */
static bool interactive;		/* drawing with escapes (not --once) */
static bool utf8;				/* the locale can show the block characters */
static int	screen_rows = 24;
static int	screen_cols = 80;
static int	lines_out;			/* lines drawn so far in this frame */
static SortKey sort_key = SORT_NAME;
static bool sort_reverse = false;
static bool show_help = false;

/* the terminal state to restore */
static struct termios saved_termios;
static bool termios_saved = false;	/* saved_termios holds stdin's modes */
static bool terminal_raw = false;
static volatile sig_atomic_t got_resize = 0;
static volatile sig_atomic_t got_continue = 0;

static void die(const char *fmt,...)
			__attribute__((format(printf, 1, 2), noreturn));
static void put_line(const char *attr, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
static void enter_screen(void);
static void restore_terminal_atexit(void);

/*
 * die prints an error message on stderr and exits with status 1.
 */
static void
die(const char *fmt,...)
{
	va_list		ap;
	char		msg[1024];
	size_t		len;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* leave the alternate screen first, or the message would vanish with it */
	restore_terminal_atexit();
	/* libpq's messages end with a newline; print exactly one */
	len = strlen(msg);
	while (len > 0 && msg[len - 1] == '\n')
		msg[--len] = '\0';
	fprintf(stderr, "pg_async_top: %s\n", msg);
	exit(1);
}

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
 * mono_seconds returns CLOCK_MONOTONIC in seconds.
 */
static double
mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * sleep_seconds sleeps for secs seconds, resuming after signals.
 */
static void
sleep_seconds(double secs)
{
	struct timespec ts;

	if (secs <= 0)
		return;
	ts.tv_sec = (time_t) secs;
	ts.tv_nsec = (long) ((secs - ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------------------
 * The terminal
 * ------------------------------------------------------------------------ */

/*
 * write_all writes a string to stdout with write(2), which is safe in a
 * signal handler.
 */
static void
write_all(const char *s)
{
	size_t		len = strlen(s);

	while (len > 0)
	{
		ssize_t		n = write(STDOUT_FILENO, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= n;
	}
}

/*
 * restore_terminal leaves the alternate screen, shows the cursor and puts
 * the terminal's modes back.  It is safe in a signal handler and does
 * nothing the second time.
 */
static void
restore_terminal(void)
{
	if (!terminal_raw)
		return;
	terminal_raw = false;
	write_all("\033[0m\033[?25h\033[?1049l");
	if (termios_saved)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
}

/*
 * restore_terminal_atexit is restore_terminal for atexit(): stdio's buffer
 * goes out first, so that no half frame lands on the normal screen.
 */
static void
restore_terminal_atexit(void)
{
	if (terminal_raw)
	{
		fflush(stdout);
		restore_terminal();
	}
}

/*
 * handle_terminating_signal restores the terminal, then dies of the signal
 * with its default action, so that the exit status tells the signal.
 */
static void
handle_terminating_signal(int signo)
{
	sigset_t	mask;

	restore_terminal();
	signal(signo, SIG_DFL);
	sigemptyset(&mask);
	sigaddset(&mask, signo);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);
	raise(signo);
}

/*
 * handle_stop restores the terminal before the process stops (Ctrl-Z); the
 * screen is set up again on SIGCONT.
 */
static void
handle_stop(int signo)
{
	int			saved_errno = errno;
	sigset_t	mask;

	restore_terminal();
	signal(SIGTSTP, SIG_DFL);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTSTP);
	sigprocmask(SIG_UNBLOCK, &mask, NULL);
	raise(SIGTSTP);
	/* continued: the signal is blocked again when the handler returns */
	signal(SIGTSTP, handle_stop);
	got_continue = 1;
	errno = saved_errno;
}

/*
 * handle_resize notes a change of the window size (SIGWINCH).
 */
static void
handle_resize(int signo)
{
	got_resize = 1;
}

/*
 * install_handler sets a signal handler that interrupts system calls.
 */
static void
install_handler(int signo, void (*handler) (int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	sigaction(signo, &sa, NULL);
}

/*
 * read_window_size reads the terminal's size into screen_rows/screen_cols.
 */
static void
read_window_size(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
	{
		screen_rows = ws.ws_row;
		screen_cols = ws.ws_col;
	}
}

/*
 * enter_screen switches to the alternate screen, hides the cursor and
 * turns off line buffering and echo of stdin.  Signals (Ctrl-C) and output
 * processing stay on.
 */
static void
enter_screen(void)
{
	struct termios raw;

	if (isatty(STDIN_FILENO))
	{
		if (tcgetattr(STDIN_FILENO, &saved_termios) != 0)
			die("could not read the terminal's settings: %s", strerror(errno));
		raw = saved_termios;
		raw.c_lflag &= ~(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) != 0)
			die("could not set the terminal's mode: %s", strerror(errno));
		termios_saved = true;
	}
	terminal_raw = true;
	write_all("\033[?1049h\033[?25l\033[H\033[2J");
	read_window_size();
}

/* ------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------ */

/*
 * text_width returns the display width of a UTF-8 string, counting one
 * column per character.
 */
static int
text_width(const char *s)
{
	int			w = 0;

	for (; *s; s++)
		if ((*s & 0xC0) != 0x80)
			w++;
	return w;
}

/*
 * text_cut returns the length in bytes of the first width characters of s
 * (all of s when it is narrower).
 */
static size_t
text_cut(const char *s, int width)
{
	const char *p = s;
	int			w = 0;

	for (; *p; p++)
	{
		if ((*p & 0xC0) != 0x80)
		{
			if (w == width)
				break;
			w++;
		}
	}
	return p - s;
}

/*
 * pad copies src into dst (of size dstsize), cut or padded with spaces on
 * the right to exactly width characters.  NULL prints as "-".
 */
static void
pad(char *dst, size_t dstsize, const char *src, int width)
{
	size_t		len;
	int			w;
	int			fill;

	if (src == NULL)
		src = "-";
	len = text_cut(src, width);
	w = text_width(src);
	fill = w < width ? width - w : 0;
	/* a buffer too small (not with the callers' sizes) gets less */
	if (len + fill + 1 > dstsize)
	{
		fill = 0;
		len = text_cut(src, (int) dstsize / 4 - 1);
	}
	memcpy(dst, src, len);
	memset(dst + len, ' ', fill);
	dst[len + fill] = '\0';
}

/*
 * format_duration writes a duration in seconds the short way: 0.4s, 12s,
 * 3m05s, 2h10m, 4d03h.  A negative one is "-".
 */
static void
format_duration(char *buf, size_t size, double secs)
{
	long		s;

	if (secs < 0)
		snprintf(buf, size, "-");
	else if (secs < 10)
		snprintf(buf, size, "%.1fs", secs);
	else if (secs < 60)
		snprintf(buf, size, "%.0fs", secs);
	else
	{
		s = (long) secs;
		if (s < 3600)
			snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
		else if (s < 86400)
			snprintf(buf, size, "%ldh%02ldm", s / 3600, s % 3600 / 60);
		else
			snprintf(buf, size, "%ldd%02ldh", s / 86400, s % 86400 / 3600);
	}
}

/*
 * format_ms writes a time in milliseconds: 0.42ms, 7.5ms, 340ms, then as
 * format_duration does.  A negative one is "-".
 */
static void
format_ms(char *buf, size_t size, double ms)
{
	if (ms < 0)
		snprintf(buf, size, "-");
	else if (ms < 1)
		snprintf(buf, size, "%.2fms", ms);
	else if (ms < 10)
		snprintf(buf, size, "%.1fms", ms);
	else if (ms < 1000)
		snprintf(buf, size, "%.0fms", ms);
	else
		format_duration(buf, size, ms / 1000);
}

/*
 * format_rate writes a rate in jobs/s; a negative one (not known yet) is
 * "-".
 */
static void
format_rate(char *buf, size_t size, double rate)
{
	if (rate < 0)
		snprintf(buf, size, "-");
	else if (rate < 100)
		snprintf(buf, size, "%.1f", rate);
	else
		snprintf(buf, size, "%.0f", rate);
}

/*
 * sparkline writes f's rate history as HISTORY characters, right-aligned,
 * each one of eight blocks scaled to the highest rate shown.  A rate of
 * zero is the lowest block; any other rate is at least the second.  In a
 * locale that is not UTF-8 the blocks are ASCII characters.
 */
static void
sparkline(char *buf, size_t size, const FuncRow *f)
{
	static const char *const blocks[8] = {
		"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"
	};
	static const char ascii[8] = {'_', '.', '-', '~', '=', '+', '*', '#'};
	double		max = 0;
	size_t		len = 0;
	int			i;

	for (i = 0; i < f->nhistory; i++)
		if (f->history[i] > max)
			max = f->history[i];
	for (i = 0; i < HISTORY - f->nhistory && len + 1 < size; i++)
		buf[len++] = ' ';
	for (i = 0; i < f->nhistory; i++)
	{
		double		v = f->history[i];
		int			level = 0;

		if (v > 0 && max > 0)
		{
			level = (int) (v / max * 7 + 0.999);
			if (level < 1)
				level = 1;
			if (level > 7)
				level = 7;
		}
		if (utf8 && len + 4 < size)
		{
			memcpy(buf + len, blocks[level], 3);
			len += 3;
		}
		else if (!utf8 && len + 1 < size)
			buf[len++] = ascii[level];
	}
	buf[len] = '\0';
}

/*
 * put_line prints one line of the frame.  On the terminal it is cut to the
 * window's width, dropped below its height, and ends with "clear to end
 * of line"; attr, when not NULL, is an escape sequence for the whole line,
 * which then fills the width.  With --once the line is printed as it is,
 * without trailing spaces, and attr is ignored.
 */
static void
put_line(const char *attr, const char *fmt,...)
{
	char		buf[LINE_MAX_BYTES];
	va_list		ap;
	size_t		len;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	if (!interactive)
	{
		len = strlen(buf);
		while (len > 0 && buf[len - 1] == ' ')
			buf[--len] = '\0';
		printf("%s\n", buf);
		return;
	}

	/* the last row stays empty, so that nothing scrolls */
	if (lines_out >= screen_rows - 1)
		return;
	lines_out++;
	len = text_cut(buf, screen_cols);
	buf[len] = '\0';
	if (attr != NULL)
	{
		int			fill = screen_cols - text_width(buf);

		printf("%s%s%*s\033[0m\033[K\n", attr, buf, fill > 0 ? fill : 0, "");
	}
	else
		printf("%s\033[K\n", buf);
}

/* ------------------------------------------------------------------------
 * The database
 * ------------------------------------------------------------------------ */

/*
 * connect_db opens the connection from the options, the PG* environment
 * variables and libpq's defaults, and exits on failure.
 */
static void
connect_db(void)
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
	values[n++] = opts.dbname ? opts.dbname : "";
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
static void
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
static bool
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

/* ------------------------------------------------------------------------
 * The frame
 * ------------------------------------------------------------------------ */

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

	put_line(interactive ? "\033[1m" : NULL,
			 "pg_async_top  %s  database %s on %s:%s  PostgreSQL %d.%d  pg_async %s",
			 sample_clock, PQdb(conn), host && host[0] ? host : "localhost", PQport(conn),
			 server / 10000, server % 10000, ext_version);
	if (opts.once)
		snprintf(overbuf, sizeof(overbuf), " (over %gs)", opts.interval);
	put_line(NULL, "jobs/s %s%s  ready %lld  held %lld  scheduled %lld  running %lld  failed %lld  dead %lld%s%s",
			 ratebuf, overbuf, (long long) ready, (long long) held, (long long) scheduled,
			 (long long) running, (long long) failed, (long long) dead,
			 workersbuf, healthbuf);
	if (!opts.once)
		put_line(NULL, "every %gs  sort %s%s  keys: s sort, r reverse, h help, q quit",
				 opts.interval, sort_names[sort_key], sort_reverse ? " (reversed)" : "");
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
static void
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

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------ */

/*
 * handle_key acts on one key; it returns false when the program should
 * quit.
 */
static bool
handle_key(char c)
{
	if (show_help)
	{
		show_help = false;
		return c != 'q' && c != 'Q';
	}
	switch (c)
	{
		case 'q':
		case 'Q':
			return false;
		case 's':
			sort_key = (sort_key + 1) % SORT_COUNT;
			break;
		case 'r':
			sort_reverse = !sort_reverse;
			break;
		case 'h':
		case '?':
			show_help = true;
			break;
		default:
			break;
	}
	return true;
}

/*
 * run_interactive refreshes and draws every interval until "q", reading
 * keys in between.
 */
static void
run_interactive(void)
{
	bool		stdin_open = isatty(STDIN_FILENO);
	double		next;

	interactive = true;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	atexit(restore_terminal_atexit);
	install_handler(SIGINT, handle_terminating_signal);
	install_handler(SIGTERM, handle_terminating_signal);
	install_handler(SIGHUP, handle_terminating_signal);
	install_handler(SIGQUIT, handle_terminating_signal);
	install_handler(SIGTSTP, handle_stop);
	install_handler(SIGWINCH, handle_resize);
	enter_screen();

	sample();
	draw();
	next = mono_seconds() + opts.interval;
	for (;;)
	{
		double		wait = next - mono_seconds();
		struct timeval tv;
		fd_set		fds;
		int			rc;

		if (got_continue)
		{
			got_continue = 0;
			enter_screen();
			draw();
		}
		if (got_resize)
		{
			got_resize = 0;
			fputs("\033[2J", stdout);
			draw();
		}
		if (wait <= 0)
		{
			sample();
			draw();
			next += opts.interval;
			if (next < mono_seconds())
				next = mono_seconds() + opts.interval;
			continue;
		}

		FD_ZERO(&fds);
		if (stdin_open)
			FD_SET(STDIN_FILENO, &fds);
		tv.tv_sec = (time_t) wait;
		tv.tv_usec = (suseconds_t) ((wait - tv.tv_sec) * 1e6);
		rc = select(stdin_open ? STDIN_FILENO + 1 : 0, &fds, NULL, NULL, &tv);
		if (rc < 0 && errno != EINTR)
			die("select() failed: %s", strerror(errno));
		if (rc > 0 && FD_ISSET(STDIN_FILENO, &fds))
		{
			char		keys[32];
			ssize_t		n = read(STDIN_FILENO, keys, sizeof(keys));
			ssize_t		i;

			if (n == 0)
				stdin_open = false;
			for (i = 0; i < n; i++)
			{
				if (!handle_key(keys[i]))
					return;
			}
			if (n > 0)
				draw();
		}
	}
}

/*
 * run_once samples twice, one interval apart, and prints one snapshot.
 */
static void
run_once(void)
{
	interactive = false;
	if (!sample())
		die("could not read the statistics: %s", refresh_error);
	sleep_seconds(opts.interval);
	if (!sample())
		die("could not read the statistics: %s", refresh_error);
	draw();
}

/*
 * usage prints the options.
 */
static void
usage(void)
{
	printf("pg_async_top: live monitor of pg_async\n\n"
		   "Usage: pg_async_top [OPTION]... [CONNINFO]\n\n"
		   "  -d, --dbname=CONNINFO     database name or libpq connection string\n"
		   "  -h, --host=HOST           server host or socket directory\n"
		   "  -p, --port=PORT           server port\n"
		   "  -U, --username=USER       user name\n"
		   "  -i, --interval=SECONDS    time between refreshes (default 1)\n"
		   "      --once                print one snapshot and exit (the rate is measured\n"
		   "                            over one interval)\n"
		   "  -V, --version             print the version and exit\n"
		   "  -?, --help                show this help and exit\n\n"
		   "Without options, the PG* environment variables and libpq's defaults apply.\n"
		   "Keys: q quit, s sort by the next column, r reverse the order, h or ? help.\n"
		   "Rates, failures, queue waits, workers and health need the privileges of\n"
		   "pg_monitor.\n");
}

/*
 * parse_options reads the command line into opts.
 */
static void
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"username", required_argument, NULL, 'U'},
		{"interval", required_argument, NULL, 'i'},
		{"once", no_argument, NULL, 1},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 2},
		{NULL, 0, NULL, 0}
	};
	int			c;
	char	   *end;

	/* as in PostgreSQL's programs, -? is help when it comes first */
	if (argc > 1 && strcmp(argv[1], "-?") == 0)
	{
		usage();
		exit(0);
	}
	opts.interval = 1;
	while ((c = getopt_long(argc, argv, "d:h:p:U:i:V", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opts.dbname = optarg;
				break;
			case 'h':
				opts.host = optarg;
				break;
			case 'p':
				opts.port = optarg;
				break;
			case 'U':
				opts.user = optarg;
				break;
			case 'i':
				errno = 0;
				opts.interval = strtod(optarg, &end);
				if (errno != 0 || end == optarg || *end != '\0' ||
					!(opts.interval >= 0.1 && opts.interval <= 3600))
					die("invalid interval \"%s\": give seconds between 0.1 and 3600", optarg);
				break;
			case 1:
				opts.once = true;
				break;
			case 'V':
				printf("pg_async_top %s\n", PG_ASYNC_VERSION);
				exit(0);
			case 2:
				usage();
				exit(0);
			default:
				fprintf(stderr, "Try \"pg_async_top --help\" for more information.\n");
				exit(1);
		}
	}
	if (optind < argc)
	{
		if (opts.dbname != NULL)
			die("give the database either with -d or as an argument, not both");
		opts.dbname = argv[optind++];
	}
	if (optind < argc)
		die("too many arguments (the first is \"%s\")", argv[optind]);
}

/*
 * main connects, checks for the extension and monitors.
 */
int
main(int argc, char **argv)
{
	const char *codeset;

	parse_options(argc, argv);
	setlocale(LC_CTYPE, "");
	codeset = nl_langinfo(CODESET);
	utf8 = codeset != NULL && (strcmp(codeset, "UTF-8") == 0 || strcmp(codeset, "utf8") == 0);

	if (!opts.once && !isatty(STDOUT_FILENO))
		die("standard output is not a terminal; use --once for a snapshot");

	connect_db();
	check_extension();
	if (opts.once)
		run_once();
	else
		run_interactive();
	PQfinish(conn);
	return 0;
}
