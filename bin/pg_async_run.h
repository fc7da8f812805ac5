/*-------------------------------------------------------------------------
 *
 * pg_async_run.h
 *	  Declarations shared by the files of pg_async_run, the command runner
 *	  that makes any executable the handler of an external function:
 *
 *	  pg_async_run.c  main(), the options, the checks before any job is
 *	                  touched, and the loop: claim, run, finish, wait
 *	  run_db.c        the two connections (one waits in async.claim, the
 *	                  other finishes jobs), and reconnecting
 *	  run_child.c     the commands: start one with the payload on its
 *	                  standard input, collect its output, kill it at its
 *	                  deadline, and say how it ended
 *
 * bin/pg_async_run.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_ASYNC_RUN_H
#define PG_ASYNC_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "libpq-fe.h"

/* what a command's standard output may hold to become the result */
#define RUN_MAX_RESULT		(1024 * 1024)
/* the end of its standard error kept for the error of a failed attempt */
#define RUN_STDERR_TAIL		4096
/* from SIGTERM at the deadline to SIGKILL */
#define RUN_KILL_GRACE_MS	2000

/* one claimed job and the command running it */
typedef struct Job
{
	bool		in_use;
	char	   *job_id;			/* as text, as libpq gives it */
	char	   *event_id;
	char	   *lease;
	char	   *attempt;
	char	   *deadline_text;	/* the deadline as the server printed it */
	double		deadline;		/* the same, on this machine's monotonic clock */

	pid_t		pid;			/* 0 once reaped */
	int			status;			/* its wait status, once reaped */
	double		reaped_at;
	int			stdin_fd;		/* -1 once the payload is written */
	int			stdout_fd;		/* -1 at end of file */
	int			stderr_fd;
	char	   *payload;
	size_t		payload_len;
	size_t		payload_sent;
	char	   *out;			/* standard output, up to RUN_MAX_RESULT */
	size_t		out_len;
	bool		out_truncated;
	char		err[2 * RUN_STDERR_TAIL + 1];	/* the end of standard error,
												 * and room for a terminator */
	size_t		err_len;
	bool		err_cut;		/* err lost its beginning: it starts mid-line */
	double		term_at;		/* when SIGTERM was sent, or 0 */
	bool		killed;			/* SIGKILL sent */
	double		started;
	char	  **env;			/* its environment, while it is started */
	int			env_own;		/* where the entries child_env made begin */
} Job;

/* run_child.c */
extern bool cloexec_pipe(int fds[2], bool nonblocking);
extern bool child_start(Job *job, char **command, const char *function,
						const char *max_attempts);
extern void child_collect(Job *job);
extern void child_write_payload(Job *job);
extern bool child_done(Job *job);
extern void child_enforce_deadline(Job *job, double now);
extern char *child_outcome(Job *job, bool *succeeded);
extern void child_reap(Job *jobs, int njobs);
extern double now_seconds(void);

/* run_db.c */
typedef struct Db
{
	const char *conninfo;
	PGconn	   *claim;			/* waits in async.claim, asynchronously */
	PGconn	   *finish;			/* complete and fail, synchronously */
	bool		claiming;		/* a claim is in flight on 'claim' */
} Db;

extern bool db_connect(Db *db, bool report);
extern void db_disconnect(Db *db);
extern bool db_ok(Db *db);
extern bool db_finish_job(Db *db, Job *job, bool succeeded, const char *message);
extern bool db_complete_many(Db *db, Job **jobs, int n);

extern void note(const char *fmt,...) __attribute__((format(printf, 1, 2)));

#endif							/* PG_ASYNC_RUN_H */
