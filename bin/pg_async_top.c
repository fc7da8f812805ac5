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
 * This file holds main(), the options and the interactive loop;
 * pg_async_top.h lists the other files.
 *
 * bin/pg_async_top.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "pg_async_top.h"

/* the extension's default_version, which the Makefile passes */
#ifndef PG_ASYNC_VERSION
#error "PG_ASYNC_VERSION must be defined: build pg_async_top with the Makefile"
#endif

Options		opts;

/*
 * die prints an error message on stderr and exits with status 1.
 */
void
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
 * mono_seconds returns CLOCK_MONOTONIC in seconds.
 */
double
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
		case 'd':
		case 'D':
			/* the next (or previous) database watched, sampled at once */
			show_database((current_database + (c == 'd' ? 1 : ndatabases - 1)) % ndatabases);
			sample();
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
 * run_once samples every database watched twice, one interval apart, and
 * prints one snapshot of each.
 */
static void
run_once(void)
{
	int			i;

	interactive = false;
	for (i = 0; i < ndatabases; i++)
	{
		show_database(i);
		if (!sample())
			die("could not read the statistics of database \"%s\": %s",
				PQdb(conn), refresh_error);
	}
	sleep_seconds(opts.interval);
	for (i = 0; i < ndatabases; i++)
	{
		show_database(i);
		if (!sample())
			die("could not read the statistics of database \"%s\": %s",
				PQdb(conn), refresh_error);
		if (i > 0)
			putchar('\n');
		draw();
	}
}

/*
 * usage prints the options.
 */
static void
usage(void)
{
	printf("pg_async_top: live monitor of pg_async\n\n"
		   "Usage: pg_async_top [OPTION]... [CONNINFO]...\n\n"
		   "  -d, --dbname=CONNINFO     database name or libpq connection string; give\n"
		   "                            several (or several arguments) to watch several\n"
		   "                            databases, \"d\" switching between them\n"
		   "  -h, --host=HOST           server host or socket directory\n"
		   "  -p, --port=PORT           server port\n"
		   "  -U, --username=USER       user name\n"
		   "  -i, --interval=SECONDS    time between refreshes (default 1)\n"
		   "      --once                print one snapshot and exit (the rate is measured\n"
		   "                            over one interval)\n"
		   "  -V, --version             print the version and exit\n"
		   "  -?, --help                show this help and exit\n\n"
		   "Without options, the PG* environment variables and libpq's defaults apply.\n"
		   "Keys: q quit, s sort by the next column, r reverse the order, d (D) the next\n"
		   "(previous) database, h or ? help.\n"
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
				if (opts.ndbnames >= MAX_DATABASES)
					die("too many databases: pg_async_top watches at most %d", MAX_DATABASES);
				opts.dbnames[opts.ndbnames++] = optarg;
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
	/* databases as arguments too, after those of -d */
	while (optind < argc)
	{
		if (opts.ndbnames >= MAX_DATABASES)
			die("too many databases: pg_async_top watches at most %d", MAX_DATABASES);
		opts.dbnames[opts.ndbnames++] = argv[optind++];
	}
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

	if (opts.ndbnames == 0)
		add_database(NULL);
	for (int i = 0; i < opts.ndbnames; i++)
		add_database(opts.dbnames[i]);
	show_database(0);
	if (opts.once)
		run_once();
	else
		run_interactive();
	return 0;
}
