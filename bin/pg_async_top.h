/*-------------------------------------------------------------------------
 *
 * pg_async_top.h
 *	  Declarations shared by the files of pg_async_top, the live monitor:
 *
 *	  pg_async_top.c  main(), the options, the interactive loop and its
 *	                  keys
 *	  top_terminal.c  the terminal: raw mode, alternate screen, its
 *	                  restoring on exit and on signals, the window size
 *	  top_text.c      text: display width, padding, durations, rates, the
 *	                  sparkline, and put_line, which prints a line of the
 *	                  frame
 *	  top_sample.c    the database: connection, checks of the extension and
 *	                  of the privileges, and the sample of the statistics
 *	  top_databases.c several databases watched: each one's connection and
 *	                  last sample, and the switch between them
 *	  top_draw.c      the frame: the sort, the header, the health checks,
 *	                  the functions, the workers and the help
 *
 * bin/pg_async_top.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_TOP_H
#define PG_ASYNC_TOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libpq-fe.h"

#define HISTORY			20		/* rate samples kept for the sparkline */

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

#define MAX_DATABASES	32		/* databases one pg_async_top watches */

/* command-line options */
typedef struct Options
{
	/* -d (repeated) or the arguments: conninfos or names */
	const char *dbnames[MAX_DATABASES];
	int			ndbnames;
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

/* pg_async_top.c: the options */
extern Options opts;

/* top_sample.c: the connection and what the role may read */
extern PGconn *conn;
extern char *ext_version;
extern bool can_counters;		/* may read async.function_stats */
extern bool can_workers;		/* may read async.workers */
extern bool can_health;			/* may execute async.health() */
extern bool has_held;			/* async.stats has the column held (0.4) */

/* top_sample.c: the last sample */
extern FuncRow *funcs;
extern int	nfuncs;
extern PGresult *workers_res;
extern PGresult *health_res;
extern double sample_time;		/* CLOCK_MONOTONIC seconds; -1: none yet */
extern char sample_clock[32];	/* local wall-clock time of the sample */
extern char refresh_error[512]; /* why the last refresh failed, or "" */

/* top_text.c: the screen */
extern bool interactive;		/* drawing with escapes (not --once) */
extern bool utf8;				/* the locale can show the block characters */
extern int	lines_out;			/* lines drawn so far in this frame */

/* top_terminal.c: the window's size, and signals the loop acts on */
extern int	screen_rows;
extern int	screen_cols;
extern volatile sig_atomic_t got_resize;
extern volatile sig_atomic_t got_continue;

/* top_draw.c: the order of the functions, and the help */
extern SortKey sort_key;
extern bool sort_reverse;
extern bool show_help;

/* pg_async_top.c */
extern void die(const char *fmt,...)
			__attribute__((format(printf, 1, 2), noreturn));
extern double mono_seconds(void);

/* top_terminal.c */
extern void restore_terminal_atexit(void);
extern void handle_terminating_signal(int signo);
extern void handle_stop(int signo);
extern void handle_resize(int signo);
extern void install_handler(int signo, void (*handler) (int));
extern void read_window_size(void);
extern void enter_screen(void);

/* top_text.c */
extern int	text_width(const char *s);
extern void pad(char *dst, size_t dstsize, const char *src, int width);
extern void format_duration(char *buf, size_t size, double secs);
extern void format_ms(char *buf, size_t size, double ms);
extern void format_rate(char *buf, size_t size, double rate);
extern void sparkline(char *buf, size_t size, const FuncRow *f);
extern void put_line(const char *attr, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* top_databases.c: the database shown, of how many */
extern int	current_database;
extern int	ndatabases;

/* top_sample.c */
extern void connect_db(const char *dbname);
extern void check_extension(void);
extern bool sample(void);

/* top_databases.c */
extern void add_database(const char *dbname);
extern void show_database(int i);

/* top_draw.c */
extern void draw(void);

#endif							/* PG_ASYNC_TOP_H */
