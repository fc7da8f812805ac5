/*-------------------------------------------------------------------------
 *
 * pg_async_run.c
 *	  The command runner of pg_async: makes any executable the handler of
 *	  an external function (async.register_external), as Lambda's custom
 *	  runtimes do.
 *
 *	  pg_async_run [-d CONNINFO] -f FUNCTION [-c CONCURRENCY] [--once] -- COMMAND [ARG...]
 *
 * For each job of FUNCTION it runs COMMAND with the payload as JSON on its
 * standard input, and ASYNC_EVENT_ID, ASYNC_FUNCTION, ASYNC_ATTEMPT,
 * ASYNC_MAX_ATTEMPTS and ASYNC_DEADLINE in its environment.  Exit 0
 * completes the job, with a standard output that is valid JSON as its
 * result; any other exit, or death by a signal, fails the attempt with the
 * exit status and the end of standard error; a command still running at
 * its deadline gets SIGTERM, then SIGKILL, and its attempt fails.  Up to
 * CONCURRENCY commands run at once.
 *
 * The loop: claim (on a connection that waits in async.claim for jobs to
 * come, for up to --wait seconds, asking for the free slots), run (start
 * the commands, feed and read them), finish (async.complete or async.fail
 * on a second connection, as each command ends), and sleep in poll() on
 * the claim, the commands' pipes and a pipe that signals write to.  There
 * is no sleep loop: an enqueue's commit ends the claim's wait.
 *
 * SIGTERM or SIGINT: no more claims (the one waiting is cancelled); the
 * running commands go on until they end or their deadline; then exit 0.
 * --once: claim without waiting until nothing is ready and no command
 * runs, then exit 0.  A lost connection is opened again, with a growing
 * delay; the commands go on meanwhile, and their outcomes are recorded
 * once connected (after their deadline, async.complete says the lease
 * expired, and the runner logs it).
 *
 * Exit status: 0, or 1 on an error, or 2 for bad arguments; checks of the
 * function (registered, external, claimable by this role) come before any
 * job is touched.
 *
 * bin/pg_async_run.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pg_async_run.h"

#ifndef PG_ASYNC_VERSION
#error "PG_ASYNC_VERSION must be defined: build pg_async_run with the Makefile"
#endif

#define RUN_MAX_CONCURRENCY		1000
#define RUN_MAX_BACKOFF_S		10.0

static int	signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int signo)
{
	int			save = errno;
	char		c = (char) signo;

	if (signo == SIGTERM || signo == SIGINT)
		stop_requested = 1;
	if (write(signal_pipe[1], &c, 1) < 0)
	{
		/* the pipe is full: the loop wakes anyway */
	}
	errno = save;
}

static void
usage(FILE *out)
{
	fprintf(out,
			"pg_async_run runs a command for each job of an external pg_async function.\n\n"
			"Usage:\n"
			"  pg_async_run [OPTION]... -f FUNCTION -- COMMAND [ARG]...\n\n"
			"Options:\n"
			"  -d, --dbname=CONNINFO      database to connect to (a name or a conninfo string)\n"
			"  -f, --function=FUNCTION    the external function whose jobs to run\n"
			"  -c, --concurrency=N        commands running at once (default 1, at most %d)\n"
			"  -w, --wait=SECONDS         longest wait in async.claim (default 5)\n"
			"      --once                 run what is ready, then exit\n"
			"  -v, --verbose              log every job\n"
			"  -V, --version              print the version, then exit\n"
			"  -?, --help                 show this help, then exit\n\n"
			"The command gets the payload on its standard input and ASYNC_EVENT_ID,\n"
			"ASYNC_FUNCTION, ASYNC_ATTEMPT, ASYNC_MAX_ATTEMPTS and ASYNC_DEADLINE in its\n"
			"environment. Exit 0 completes the job (a JSON standard output is its result);\n"
			"anything else fails the attempt. The usual PG* environment variables apply.\n",
			RUN_MAX_CONCURRENCY);
}

/* executable: whether the command can be found and run */
static bool
executable(const char *cmd)
{
	const char *path;
	char		candidate[PATH_MAX];

	if (strchr(cmd, '/') != NULL)
		return access(cmd, X_OK) == 0;
	path = getenv("PATH");
	while (path && *path)
	{
		const char *end = strchr(path, ':');
		size_t		len = end ? (size_t) (end - path) : strlen(path);
		struct stat st;

		snprintf(candidate, sizeof(candidate), "%.*s/%s", (int) len,
				 len ? path : ".", cmd);
		if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode) && access(candidate, X_OK) == 0)
			return true;
		path = end ? end + 1 : NULL;
	}
	return false;
}

/*
 * check_function makes sure, before any job is touched, that the function
 * is registered, external, and that this role may claim its jobs; and
 * returns its max_attempts.
 */
static char *
check_function(PGconn *conn, const char *function)
{
	const char *params[1] = {function};
	PGresult   *res;
	char	   *max_attempts;

	res = PQexecParams(conn,
					   "SELECT f.handler IS NULL, f.max_attempts,"
					   "       pg_catalog.pg_has_role(f.run_as, 'USAGE')"
					   "       OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r"
					   "            WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER),"
					   "       f.run_as::pg_catalog.text, f.handler::pg_catalog.text"
					   "  FROM async.functions f WHERE f.name OPERATOR(pg_catalog.=) $1",
					   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		note("could not read the registration of function \"%s\": %s", function,
			 PQresultErrorMessage(res));
		note("is pg_async installed in this database?");
		exit(1);
	}
	if (PQntuples(res) == 0)
	{
		note("function \"%s\" is not registered with pg_async", function);
		exit(1);
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
	{
		note("function \"%s\" is not external: the pg_async workers run its jobs, with handler %s",
			 function, PQgetvalue(res, 0, 4));
		note("register a function for pg_async_run with async.register_external()");
		exit(1);
	}
	if (strcmp(PQgetvalue(res, 0, 2), "t") != 0)
	{
		note("role \"%s\" may not claim the jobs of function \"%s\": that needs the privileges of role \"%s\"",
			 PQuser(conn), function, PQgetvalue(res, 0, 3));
		exit(1);
	}
	max_attempts = strdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	return max_attempts;
}

static char *
xstrdup(const char *s)
{
	char	   *d = strdup(s);

	if (d == NULL)
	{
		note("out of memory");
		exit(1);
	}
	return d;
}

/* log_outcome logs a failed attempt, and with -v every one */
static void
log_outcome(Job *job, const char *max_attempts, bool succeeded, const char *outcome,
			bool verbose)
{
	if (verbose || !succeeded)
		note("event \"%s\" attempt %s of %s: %s (%.0f ms)%s%s",
			 job->event_id, job->attempt, max_attempts,
			 succeeded ? "succeeded" : "failed",
			 (now_seconds() - job->started) * 1000,
			 succeeded ? "" : ": ", succeeded ? "" : outcome);
}

static void
job_clear(Job *job)
{
	free(job->job_id);
	free(job->event_id);
	free(job->lease);
	free(job->attempt);
	free(job->deadline_text);
	free(job->payload);
	free(job->out);
	memset(job, 0, sizeof(*job));
	job->stdin_fd = job->stdout_fd = job->stderr_fd = -1;
}

int
main(int argc, char **argv)
{
	static struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"function", required_argument, NULL, 'f'},
		{"concurrency", required_argument, NULL, 'c'},
		{"wait", required_argument, NULL, 'w'},
		{"once", no_argument, NULL, 1},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, '?'},
		{NULL, 0, NULL, 0}
	};
	Db			db = {0};
	const char *function = NULL;
	int			concurrency = 1;
	double		wait = 5;
	bool		once = false;
	bool		verbose = false;
	char	  **command;
	char	   *max_attempts;
	Job		   *jobs;
	Job		  **quiet;			/* ended with success and no result */
	int			nquiet;
	int			running = 0;
	bool		once_drained = false;
	bool		claim_again = true;	/* --once: the last claim found jobs */
	bool		fatal = false;
	double		reconnect_at = 0;
	double		backoff = 0.5;
	double		claim_after = 0;	/* after a claim that failed */
	int			c;
	int			i;
	struct sigaction sa;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0))
	{
		usage(stdout);
		return 0;
	}
	while ((c = getopt_long(argc, argv, "d:f:c:w:vV?", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				db.conninfo = optarg;
				break;
			case 'f':
				function = optarg;
				break;
			case 'c':
				concurrency = atoi(optarg);
				if (concurrency < 1 || concurrency > RUN_MAX_CONCURRENCY)
				{
					note("concurrency must be between 1 and %d", RUN_MAX_CONCURRENCY);
					return 2;
				}
				break;
			case 'w':
				wait = atof(optarg);
				if (wait < 0 || wait > 3600)
				{
					note("wait must be between 0 and 3600 seconds");
					return 2;
				}
				break;
			case 1:
				once = true;
				break;
			case 'v':
				verbose = true;
				break;
			case 'V':
				printf("pg_async_run (pg_async) %s\n", PG_ASYNC_VERSION);
				return 0;
			default:
				fprintf(stderr, "Try \"pg_async_run --help\" for more information.\n");
				return 2;
		}
	}
	if (function == NULL)
	{
		note("no function given (-f)");
		fprintf(stderr, "Try \"pg_async_run --help\" for more information.\n");
		return 2;
	}
	if (optind >= argc)
	{
		note("no command given: put it after \"--\"");
		fprintf(stderr, "Try \"pg_async_run --help\" for more information.\n");
		return 2;
	}
	command = argv + optind;
	if (!executable(command[0]))
	{
		note("command \"%s\" is not found or not executable", command[0]);
		return 2;
	}
	if (db.conninfo == NULL)
		db.conninfo = "";

	/* signals: a pipe wakes poll(); SIGPIPE is an error of write() */
	if (!cloexec_pipe(signal_pipe, true))
	{
		note("could not create a pipe: %s", strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!db_connect(&db, true))
		return 1;
	max_attempts = check_function(db.finish, function);

	jobs = calloc(concurrency, sizeof(Job));
	quiet = calloc(concurrency, sizeof(Job *));
	if (jobs == NULL || quiet == NULL)
	{
		note("out of memory");
		return 1;
	}
	for (i = 0; i < concurrency; i++)
		job_clear(&jobs[i]);

	for (;;)
	{
		double		now = now_seconds();
		double		timeout_s = 1.0;
		struct pollfd fds[2 + 3 * RUN_MAX_CONCURRENCY];
		int			nfds = 0;
		int			ended = 0;
		double		last_deadline = 0;

		/* run: feed, read and reap the commands; kill those past their deadline */
		child_reap(jobs, concurrency);
		for (i = 0; i < concurrency; i++)
		{
			Job		   *job = &jobs[i];

			if (!job->in_use)
				continue;
			child_write_payload(job);
			child_collect(job);
			child_enforce_deadline(job, now);
		}

		/*
		 * finish: record the outcome of every command that ended; the
		 * successes without a result together, in one commit
		 */
		nquiet = 0;
		for (i = 0; i < concurrency; i++)
		{
			Job		   *job = &jobs[i];
			bool		succeeded;
			char	   *outcome;

			if (!job->in_use || !child_done(job))
				continue;
			outcome = child_outcome(job, &succeeded);
			if (succeeded && outcome == NULL)
			{
				quiet[nquiet++] = job;
				continue;
			}
			if (!db_finish_job(&db, job, succeeded, outcome))
			{
				free(outcome);
				continue;		/* after connecting again */
			}
			log_outcome(job, max_attempts, succeeded, outcome, verbose);
			free(outcome);
			job_clear(job);
			running--;
		}
		if (nquiet > 0 && db_complete_many(&db, quiet, nquiet))
		{
			for (i = 0; i < nquiet; i++)
			{
				log_outcome(quiet[i], max_attempts, true, NULL, verbose);
				job_clear(quiet[i]);
				running--;
			}
		}

		/*
		 * The end: after a stop, once the commands have ended and their
		 * outcomes are recorded.  Without a connection (a server restart
		 * under way), the runner goes on connecting until the last deadline
		 * of the ended commands: until then their leases hold and their
		 * outcomes can still be recorded; after it, the leases expire and
		 * the jobs are retried anyway.
		 */
		for (i = 0; i < concurrency; i++)
		{
			if (!jobs[i].in_use)
				continue;
			if (jobs[i].pid == 0)
				ended++;
			if (jobs[i].deadline > last_deadline)
				last_deadline = jobs[i].deadline;
		}
		if ((stop_requested || fatal || once_drained) && !db.claiming &&
			(running == 0 ||
			 (!db_ok(&db) && ended == running && now >= last_deadline)))
		{
			if (running > 0)
				note("exiting without a connection: %d outcomes are not recorded", running);
			break;
		}

		/* a lost connection: open both again, with a growing delay */
		if (!db_ok(&db) && now >= reconnect_at)
		{
			if (db_connect(&db, false))
			{
				note("connected again");
				backoff = 0.5;
			}
			else
			{
				reconnect_at = now + backoff;
				backoff = backoff * 2 > RUN_MAX_BACKOFF_S ? RUN_MAX_BACKOFF_S : backoff * 2;
			}
			continue;
		}

		/* a stop: cancel the claim that waits */
		if ((stop_requested || fatal) && db.claiming)
		{
			PGcancel   *cancel = PQgetCancel(db.claim);
			char		errbuf[256];

			if (cancel)
			{
				(void) PQcancel(cancel, errbuf, sizeof(errbuf));
				PQfreeCancel(cancel);
			}
		}
		/* claim: as many jobs as there are free slots */
		if (!stop_requested && !fatal && !once_drained && db_ok(&db) && !db.claiming &&
			running < concurrency && (!once || claim_again || running == 0) &&
			now >= claim_after)
		{
			char		max_jobs[16];
			char		waits[32];
			const char *params[3] = {function, max_jobs, waits};

			snprintf(max_jobs, sizeof(max_jobs), "%d", concurrency - running);
			snprintf(waits, sizeof(waits), "%g seconds", once ? 0.0 : wait);
			if (PQsendQueryParams(db.claim,
								  "SELECT c.job_id, c.event_id, c.payload, c.attempt, c.deadline,"
								  "       EXTRACT(epoch FROM c.deadline OPERATOR(pg_catalog.-)"
								  "                          pg_catalog.clock_timestamp()),"
								  "       c.lease"
								  "  FROM async.claim($1, $2::integer, $3::interval) c",
								  3, NULL, params, NULL, NULL, 0))
				db.claiming = true;
		}

		/* a claim's answer: start a command for each job */
		if (db.claiming && PQconsumeInput(db.claim) && !PQisBusy(db.claim))
		{
			PGresult   *res;

			while ((res = PQgetResult(db.claim)) != NULL)
			{
				if (PQresultStatus(res) == PGRES_TUPLES_OK)
				{
					int			n = PQntuples(res);
					int			k;

					if (once)
						claim_again = n > 0;
					if (once && n == 0 && running == 0)
						once_drained = true;
					for (k = 0; k < n; k++)
					{
						Job		   *job = NULL;

						for (i = 0; i < concurrency; i++)
							if (!jobs[i].in_use)
							{
								job = &jobs[i];
								break;
							}
						if (job == NULL)
							break;	/* cannot happen: it asked for the free slots */
						job->in_use = true;
						job->job_id = xstrdup(PQgetvalue(res, k, 0));
						job->event_id = xstrdup(PQgetvalue(res, k, 1));
						job->payload = xstrdup(PQgetvalue(res, k, 2));
						job->payload_len = strlen(job->payload);
						job->attempt = xstrdup(PQgetvalue(res, k, 3));
						job->deadline_text = xstrdup(PQgetvalue(res, k, 4));
						job->deadline = now_seconds() + atof(PQgetvalue(res, k, 5));
						job->lease = xstrdup(PQgetvalue(res, k, 6));
						running++;
						if (!child_start(job, command, function, max_attempts))
							job->status = 127 << 8;
					}
				}
				else if (!stop_requested && PQstatus(db.claim) == CONNECTION_OK)
				{
					const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

					note("claiming failed: %s", PQresultErrorMessage(res));
					claim_after = now_seconds() + 1;
					/* the function is gone, changed, or this role lost its rights */
					if (sqlstate && (strcmp(sqlstate, "42704") == 0 ||
									 strcmp(sqlstate, "42809") == 0 ||
									 strcmp(sqlstate, "42501") == 0))
						fatal = true;
				}
				PQclear(res);
			}
			db.claiming = false;
			continue;
		}
		if (db.claiming && PQstatus(db.claim) != CONNECTION_OK)
		{
			note("the connection was lost; connecting again");
			db_disconnect(&db);
			continue;
		}

		/* sleep: until a signal, the claim's answer, output, or a deadline */
		fds[nfds].fd = signal_pipe[0];
		fds[nfds++].events = POLLIN;
		if (db.claiming)
		{
			fds[nfds].fd = PQsocket(db.claim);
			fds[nfds++].events = POLLIN;
		}
		for (i = 0; i < concurrency; i++)
		{
			Job		   *job = &jobs[i];

			if (!job->in_use)
				continue;
			if (job->stdin_fd >= 0)
			{
				fds[nfds].fd = job->stdin_fd;
				fds[nfds++].events = POLLOUT;
			}
			if (job->stdout_fd >= 0)
			{
				fds[nfds].fd = job->stdout_fd;
				fds[nfds++].events = POLLIN;
			}
			if (job->stderr_fd >= 0)
			{
				fds[nfds].fd = job->stderr_fd;
				fds[nfds++].events = POLLIN;
			}
			if (job->pid != 0)
			{
				double		next = job->term_at != 0 ?
					job->term_at + RUN_KILL_GRACE_MS / 1000.0 : job->deadline;

				if (next - now < timeout_s)
					timeout_s = next - now;
			}
			else
				timeout_s = 0.1;	/* reaped, its pipes held open by another */
		}
		if (!db_ok(&db) && reconnect_at - now < timeout_s)
			timeout_s = reconnect_at - now;
		if (claim_after > now && claim_after - now < timeout_s)
			timeout_s = claim_after - now;
		if (timeout_s < 0)
			timeout_s = 0;
		if (poll(fds, nfds, (int) (timeout_s * 1000) + 1) > 0 && (fds[0].revents & POLLIN))
		{
			char		buf[64];

			while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
				;
		}
	}

	db_disconnect(&db);
	return fatal ? 1 : 0;
}
