/*-------------------------------------------------------------------------
 *
 * run_child.c
 *	  The commands of pg_async_run: each job's command is started
 *	  (posix_spawn) in a process group of its own, with the payload on its
 *	  standard input and the job in its environment; its standard output (the result) and the
 *	  end of its standard error are collected through non-blocking pipes;
 *	  at its deadline it gets SIGTERM, and SIGKILL RUN_KILL_GRACE_MS later;
 *	  and how it ended becomes the job's outcome.
 *
 * bin/run_child.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pg_async_run.h"

#define lengthof(array) (sizeof(array) / sizeof((array)[0]))

/* now_seconds: the monotonic clock, in seconds */
double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL);

	if (flags >= 0)
		(void) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/*
 * cloexec_pipe makes a pipe whose ends the commands do not inherit, both
 * ends non-blocking if asked.
 */
bool
cloexec_pipe(int fds[2], bool nonblocking)
{
	int			i;

	if (pipe(fds) != 0)
		return false;
	for (i = 0; i < 2; i++)
	{
		(void) fcntl(fds[i], F_SETFD, FD_CLOEXEC);
		if (nonblocking)
			set_nonblocking(fds[i]);
	}
	return true;
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/*
 * child_env: the environment of a command, this process's with the job's
 * ASYNC_ variables in place of any of the same names.  malloc'd, as are
 * the job's strings in it.
 */
static char **
child_env(Job *job, const char *function, const char *max_attempts)
{
	extern char **environ;
	const char *names[] = {"ASYNC_EVENT_ID", "ASYNC_FUNCTION", "ASYNC_ATTEMPT",
	"ASYNC_MAX_ATTEMPTS", "ASYNC_DEADLINE"};
	const char *values[] = {job->event_id, function, job->attempt, max_attempts,
	job->deadline_text};
	int			n = 0;
	int			k = 0;
	int			i;
	char	  **env;

	while (environ[n])
		n++;
	env = malloc(sizeof(char *) * (n + lengthof(names) + 1));
	if (env == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if (strncmp(environ[i], "ASYNC_", 6) != 0)
			env[k++] = environ[i];
	for (i = 0; i < (int) lengthof(names); i++)
	{
		size_t		len = strlen(names[i]) + strlen(values[i]) + 2;

		env[k] = malloc(len);
		if (env[k] == NULL)
			return NULL;
		snprintf(env[k++], len, "%s=%s", names[i], values[i]);
	}
	env[k] = NULL;
	job->env = env;
	job->env_own = k - lengthof(names);
	return env;
}

/* child_env_free frees what child_env made */
static void
child_env_free(Job *job)
{
	int			i;

	if (job->env == NULL)
		return;
	for (i = job->env_own; job->env[i]; i++)
		free(job->env[i]);
	free(job->env);
	job->env = NULL;
}

/*
 * child_start starts the command of a claimed job, with posix_spawn (a
 * vfork: the runner's memory is not copied): in a process group of its
 * own, so that a kill reaches what it started, with the signals this
 * process catches back to their defaults.  Returns false, with the reason
 * in the job's standard error, if it could not be started.
 */
bool
child_start(Job *job, char **command, const char *function, const char *max_attempts)
{
	int			in[2] = {-1, -1},
				out[2] = {-1, -1},
				err[2] = {-1, -1};
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t	defaults;
	sigset_t	none;
	pid_t		pid;
	int			rc;
	char	  **env;

	job->stdin_fd = job->stdout_fd = job->stderr_fd = -1;
	job->started = now_seconds();
	if (!cloexec_pipe(in, false) || !cloexec_pipe(out, false) || !cloexec_pipe(err, false) ||
		(env = child_env(job, function, max_attempts)) == NULL)
	{
		rc = errno;
		goto failed;
	}

	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
	posix_spawnattr_init(&attr);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	sigaddset(&defaults, SIGTERM);
	sigaddset(&defaults, SIGINT);
	sigaddset(&defaults, SIGCHLD);
	sigemptyset(&none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
							 POSIX_SPAWN_SETSIGMASK);
	rc = posix_spawnp(&pid, command[0], &actions, &attr, command, env);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	child_env_free(job);
	if (rc != 0)
		goto failed;

	close(in[0]);
	close(out[1]);
	close(err[1]);
	job->pid = pid;
	job->stdin_fd = in[1];
	job->stdout_fd = out[0];
	job->stderr_fd = err[0];
	set_nonblocking(job->stdin_fd);
	set_nonblocking(job->stdout_fd);
	set_nonblocking(job->stderr_fd);
	child_write_payload(job);
	return true;

failed:
	child_env_free(job);
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&out[0]);
	close_fd(&out[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	snprintf(job->err, sizeof(job->err),
			 "pg_async_run: could not run \"%s\": %s", command[0], strerror(rc));
	job->err_len = strlen(job->err);
	job->pid = 0;
	return false;
}

/* child_write_payload writes what it can of the payload to the command. */
void
child_write_payload(Job *job)
{
	while (job->stdin_fd >= 0 && job->payload_sent < job->payload_len)
	{
		ssize_t		n = write(job->stdin_fd, job->payload + job->payload_sent,
							  job->payload_len - job->payload_sent);

		if (n > 0)
			job->payload_sent += n;
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && errno == EAGAIN)
			return;
		else
			break;				/* EPIPE: it does not read its input */
	}
	close_fd(&job->stdin_fd);
}

/* keep_err keeps the end of what the command wrote to its standard error */
static void
keep_err(Job *job, const char *buf, size_t n)
{
	if (n >= RUN_STDERR_TAIL)
	{
		memcpy(job->err, buf + n - RUN_STDERR_TAIL, RUN_STDERR_TAIL);
		job->err_len = RUN_STDERR_TAIL;
		job->err_cut = true;
		return;
	}
	if (job->err_len + n > 2 * RUN_STDERR_TAIL)
	{
		size_t		keep = RUN_STDERR_TAIL - n;

		memmove(job->err, job->err + job->err_len - keep, keep);
		job->err_len = keep;
		job->err_cut = true;
	}
	memcpy(job->err + job->err_len, buf, n);
	job->err_len += n;
}

/* child_collect reads what the command has written so far. */
void
child_collect(Job *job)
{
	char		buf[65536];
	ssize_t		n;

	while (job->stdout_fd >= 0)
	{
		n = read(job->stdout_fd, buf, sizeof(buf));
		if (n > 0)
		{
			size_t		room = RUN_MAX_RESULT - job->out_len;

			if ((size_t) n > room)
			{
				job->out_truncated = true;
				n = room;
			}
			if (n > 0)
			{
				job->out = realloc(job->out, job->out_len + n + 1);
				if (job->out == NULL)
				{
					fprintf(stderr, "pg_async_run: out of memory\n");
					exit(1);
				}
				memcpy(job->out + job->out_len, buf, n);
				job->out_len += n;
				job->out[job->out_len] = '\0';
			}
		}
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && errno == EAGAIN)
			break;
		else
			close_fd(&job->stdout_fd);
	}
	while (job->stderr_fd >= 0)
	{
		n = read(job->stderr_fd, buf, sizeof(buf));
		if (n > 0)
			keep_err(job, buf, n);
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && errno == EAGAIN)
			break;
		else
			close_fd(&job->stderr_fd);
	}
}

/*
 * child_reap collects the exit status of every command that ended.  A
 * command that ended leaves its pipes to be read to their end, unless
 * something it started holds them open: then they are closed a moment
 * later (child_done).
 */
void
child_reap(Job *jobs, int njobs)
{
	for (;;)
	{
		int			status;
		pid_t		pid = waitpid(-1, &status, WNOHANG);
		int			i;

		if (pid <= 0)
			return;
		for (i = 0; i < njobs; i++)
		{
			if (jobs[i].in_use && jobs[i].pid == pid)
			{
				jobs[i].pid = 0;
				jobs[i].status = status;
				jobs[i].reaped_at = now_seconds();
				break;
			}
		}
	}
}

/* child_done: the command ended and its output is read */
bool
child_done(Job *job)
{
	if (job->pid != 0)
		return false;
	child_collect(job);
	if ((job->stdout_fd >= 0 || job->stderr_fd >= 0) &&
		now_seconds() - job->reaped_at < 0.5)
		return false;
	close_fd(&job->stdin_fd);
	close_fd(&job->stdout_fd);
	close_fd(&job->stderr_fd);
	return true;
}

/* child_enforce_deadline: SIGTERM at the deadline, SIGKILL after the grace */
void
child_enforce_deadline(Job *job, double now)
{
	if (job->pid == 0)
		return;
	if (job->term_at == 0 && now >= job->deadline)
	{
		job->term_at = now;
		(void) kill(-job->pid, SIGTERM);
	}
	else if (job->term_at != 0 && !job->killed &&
			 now >= job->term_at + RUN_KILL_GRACE_MS / 1000.0)
	{
		job->killed = true;
		(void) kill(-job->pid, SIGKILL);
	}
}

/*
 * err_tail: the end of the command's standard error, at most
 * RUN_STDERR_TAIL bytes, from the start of a line where it was cut, without
 * its final newlines.  What keep_err kept may itself begin mid-line, even
 * when the final newlines leave less than RUN_STDERR_TAIL bytes.
 */
static const char *
err_tail(Job *job)
{
	size_t		len = job->err_len;
	char	   *start = job->err;
	char	   *nl;

	while (len > 0 && job->err[len - 1] == '\n')
		len--;
	job->err[len] = '\0';
	if (len > RUN_STDERR_TAIL || job->err_cut)
	{
		if (len > RUN_STDERR_TAIL)
			start = job->err + len - RUN_STDERR_TAIL;
		if ((nl = strchr(start, '\n')) != NULL)
			start = nl + 1;
	}
	return start;
}

/*
 * child_outcome says how the command ended: *succeeded, and then returns
 * its standard output (the result, or NULL if empty or too long), or the
 * error of the failed attempt.  The string is malloc'd.
 */
char *
child_outcome(Job *job, bool *succeeded)
{
	char		head[256];
	const char *tail = err_tail(job);
	char	   *msg;
	int			st = job->status;

	*succeeded = false;
	if (job->term_at != 0)
		snprintf(head, sizeof(head),
				 "timed out: still running at its deadline (%s), killed by %s",
				 job->deadline_text, job->killed ? "SIGKILL" : "SIGTERM");
	else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
	{
		*succeeded = true;
		if (job->out_truncated)
		{
			note("event \"%s\": its standard output is longer than %d bytes: the job is completed without a result",
				 job->event_id, RUN_MAX_RESULT);
			/* said once, though the outcome is asked again after a reconnect */
			job->out_truncated = false;
			job->out_len = 0;
		}
		if (job->out_len == 0)
			return NULL;
		return strdup(job->out);
	}
	else if (WIFEXITED(st))
		snprintf(head, sizeof(head), "command exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(head, sizeof(head), "command was killed by signal %d (%s)",
				 WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(head, sizeof(head), "command ended with wait status %d", st);

	msg = malloc(strlen(head) + strlen(tail) + 2);
	if (msg == NULL)
	{
		fprintf(stderr, "pg_async_run: out of memory\n");
		exit(1);
	}
	if (*tail)
		sprintf(msg, "%s\n%s", head, tail);
	else
		strcpy(msg, head);
	return msg;
}
