/*-------------------------------------------------------------------------
 *
 * top_text.c
 *	  Text for pg_async_top's frame: display width, cutting and padding,
 *	  durations, milliseconds, rates, the sparkline, and put_line, which
 *	  prints one line of the frame.
 *
 * bin/top_text.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pg_async_top.h"

#define LINE_MAX_BYTES	2048	/* longest line formatted */

/* the screen */
bool		interactive;		/* drawing with escapes (not --once) */
bool		utf8;				/* the locale can show the block characters */
int			lines_out;			/* lines drawn so far in this frame */

/*
 * text_width returns the display width of a UTF-8 string, counting one
 * column per character.
 */
int
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
void
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
void
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
void
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
void
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
void
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
void
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
