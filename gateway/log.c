/*
 * log.c - structured logging to stderr, logfmt or JSON.
 *
 * Each call formats its line into a stack buffer and hands it to one write(2):
 * lines shorter than PIPE_BUF never interleave with other threads' lines, and
 * no lock is needed. A line that does not fit is cut at a character boundary
 * (never inside an escape or a UTF-8 sequence), its open string is closed and
 * "truncated=true" is appended, so every line stays parseable.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 2048
/* Kept free for closing a cut string plus the truncation marker and '\n'. */
#define LINE_RESERVE 40

/* Set once at start-up or on reload; read with relaxed atomics by workers. */
static int log_level = GW_LOG_INFO;
static int log_json;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void gw_log_setup(int level, int json)
{
	if (level < GW_LOG_ERROR)
		level = GW_LOG_ERROR;
	if (level > GW_LOG_DEBUG)
		level = GW_LOG_DEBUG;
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
	__atomic_store_n(&log_json, json ? 1 : 0, __ATOMIC_RELAXED);
}

int gw_log_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

int gw_log_level_parse(const char *s)
{
	if (!s)
		return -1;
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	if (strcmp(s, "warning") == 0)
		return GW_LOG_WARN;
	return -1;
}

struct line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	size_t lim;      /* len may pass lim only for the closing bytes */
	bool full;       /* something did not fit: stop adding */
};

/* Appends n bytes as one unit, or nothing and marks the line full. */
static bool put(struct line *l, const char *s, size_t n)
{
	if (l->full || n > l->lim - l->len) {
		l->full = true;
		return false;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	return true;
}

/* Closing bytes go into the reserve, which is sized for them. */
static void put_reserved(struct line *l, const char *s)
{
	size_t n = strlen(s);
	if (n > sizeof(l->buf) - l->len)
		n = sizeof(l->buf) - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned min;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2, min = 0x80, cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, min = 0x800, cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, min = 0x10000, cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and past U+10FFFF are not UTF-8. */
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/*
 * Writes s escaped, without quotes. JSON escapes per RFC 8259 section 7 and
 * replaces invalid UTF-8 with U+FFFD; logfmt uses the same backslash escapes
 * but shows invalid bytes as \xHH so nothing is lost.
 */
static void put_escaped(struct line *l, const char *str, bool json)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);
	char tmp[8];

	while (n > 0 && !l->full) {
		size_t u = utf8_len(s, n);
		const char *out = tmp;
		size_t outlen;

		if (u == 0) {
			if (json)
				out = "\\ufffd", outlen = 6;
			else
				outlen = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", s[0]);
			u = 1;
		} else if (u > 1) {
			out = (const char *)s, outlen = u;
		} else if (s[0] == '"') {
			out = "\\\"", outlen = 2;
		} else if (s[0] == '\\') {
			out = "\\\\", outlen = 2;
		} else if (s[0] == '\n') {
			out = "\\n", outlen = 2;
		} else if (s[0] == '\r') {
			out = "\\r", outlen = 2;
		} else if (s[0] == '\t') {
			out = "\\t", outlen = 2;
		} else if (s[0] < 0x20 || s[0] == 0x7f) {
			outlen = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", s[0]);
		} else {
			out = (const char *)s, outlen = 1;
		}
		if (!put(l, out, outlen))
			break;
		s += u;
		n -= u;
	}
}

/* logfmt values are bare unless they would be ambiguous. */
static bool needs_quotes(const char *s)
{
	if (*s == '\0')
		return true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' ||
		    *p >= 0x7f)
			return true;
	return false;
}

/* Keys come from code, but keep the line parseable if one is odd. */
static void put_key(struct line *l, const char *key, bool json)
{
	char k[64];
	size_t n = 0;

	for (const char *p = key; *p && n < sizeof(k) - 1; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-' ||
			  c == '.';
		k[n++] = ok ? c : '_';
	}
	if (n == 0)
		k[n++] = '_';
	k[n] = '\0';

	char unit[80];
	int len = json ? snprintf(unit, sizeof(unit), ",\"%s\":\"", k)
		       : snprintf(unit, sizeof(unit), " %s=", k);
	put(l, unit, (size_t)len);
}

/* One pair; returns false once the line is full. */
static bool put_pair(struct line *l, const char *key, const char *val, bool json)
{
	size_t before = l->len;
	bool quoted = json || needs_quotes(val);

	put_key(l, key, json);
	if (l->full) {
		l->len = before;
		return false;
	}
	if (!json && quoted && !put(l, "\"", 1)) {
		l->len = before;
		return false;
	}
	put_escaped(l, val, json);
	if (quoted) {
		/* A cut value is still closed: the reserve holds this quote. */
		if (!put(l, "\"", 1))
			put_reserved(l, "\"");
	}
	return !l->full;
}

static void put_ts(struct line *l, bool json)
{
	struct timespec ts;
	struct tm tm;
	char t[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(t + n, sizeof(t) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	if (json) {
		put(l, "{\"ts\":\"", 7);
		put(l, t, strlen(t));
		put(l, "\"", 1);
	} else {
		put(l, "ts=", 3);
		put(l, t, strlen(t));
	}
}

void gw_log(int level, const char *subsystem, const char *msg, ...)
{
	bool json = __atomic_load_n(&log_json, __ATOMIC_RELAXED) != 0;
	struct line l;
	va_list ap;

	if (level > gw_log_level())
		return;
	if (level < GW_LOG_ERROR)
		level = GW_LOG_ERROR;
	l.len = 0;
	l.lim = sizeof(l.buf) - LINE_RESERVE;
	l.full = false;

	put_ts(&l, json);
	put_pair(&l, "level", level_names[level], json);
	put_pair(&l, "subsystem", subsystem ? subsystem : "", json);
	if (!json) {
		/* msg is always quoted in logfmt: it is prose. */
		size_t before = l.len;
		if (put(&l, " msg=\"", 6)) {
			put_escaped(&l, msg ? msg : "", false);
			if (!put(&l, "\"", 1))
				put_reserved(&l, "\"");
		} else {
			l.len = before;
		}
	} else {
		put_pair(&l, "msg", msg ? msg : "", json);
	}

	va_start(ap, msg);
	while (!l.full) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		const char *val = va_arg(ap, const char *);
		/* A NULL value ends the list too: reading on would pass the sentinel. */
		put_pair(&l, key, val ? val : "", json);
		if (!val)
			break;
	}
	va_end(ap);

	if (l.full)
		put_reserved(&l, json ? ",\"truncated\":true}\n" : " truncated=true\n");
	else
		put_reserved(&l, json ? "}\n" : "\n");

	/* One write keeps the line whole; stderr failures have nowhere to go. */
	ssize_t r;
	do {
		r = write(STDERR_FILENO, l.buf, l.len);
	} while (r < 0 && errno == EINTR);
}
