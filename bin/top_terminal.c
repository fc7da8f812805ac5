/*-------------------------------------------------------------------------
 *
 * top_terminal.c
 *	  The terminal of pg_async_top: raw mode and the alternate screen, put
 *	  back on exit, on the terminating signals and around a suspension;
 *	  the window's size.
 *
 * bin/top_terminal.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "pg_async_top.h"

/* the window's size */
int			screen_rows = 24;
int			screen_cols = 80;

/* the terminal state to restore */
static struct termios saved_termios;
static bool termios_saved = false;	/* saved_termios holds stdin's modes */
static bool terminal_raw = false;
volatile sig_atomic_t got_resize = 0;
volatile sig_atomic_t got_continue = 0;

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
void
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
void
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
void
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
void
handle_resize(int signo)
{
	got_resize = 1;
}

/*
 * install_handler sets a signal handler that interrupts system calls.
 */
void
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
void
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
void
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
