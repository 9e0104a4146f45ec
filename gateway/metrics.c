/*
 * metrics.c - Prometheus text exposition format 0.0.4 writer.
 */
#include "metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/error.h"

void gw_prom_init(gw_prom_t *p, gw_buf_t *out)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
}

int gw_prom_finish(const gw_prom_t *p)
{
	return p->err;
}

static void put(gw_prom_t *p, const char *s, size_t n)
{
	if (p->err)
		return;
	int r = gw_buf_append(p->out, s, n);
	if (r < 0)
		p->err = r;
}

static void puts_(gw_prom_t *p, const char *s)
{
	put(p, s, strlen(s));
}

static void fail(gw_prom_t *p, int err)
{
	if (!p->err)
		p->err = err;
}

static int is_alpha_(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

int gw_prom_valid_metric_name(const char *s)
{
	if (!s || !*s || strlen(s) >= GW_PROM_MAX_NAME)
		return 0;
	if (!is_alpha_(*s) && *s != ':')
		return 0;
	for (s++; *s; s++)
		if (!is_alpha_(*s) && !is_digit(*s) && *s != ':')
			return 0;
	return 1;
}

int gw_prom_valid_label_name(const char *s)
{
	if (!s || !*s || strlen(s) >= GW_PROM_MAX_NAME || !is_alpha_(*s))
		return 0;
	/* names beginning with __ are reserved for Prometheus itself */
	if (s[0] == '_' && s[1] == '_')
		return 0;
	for (s++; *s; s++)
		if (!is_alpha_(*s) && !is_digit(*s))
			return 0;
	return 1;
}

int gw_prom_fmt_double(double v, char *buf, size_t cap)
{
	int n;
	if (isnan(v))
		n = snprintf(buf, cap, "NaN");
	else if (isinf(v))
		n = snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
	else {
		/* shortest text that parses back to the same double */
		n = snprintf(buf, cap, "%.15g", v);
		if (n > 0 && (size_t)n < cap && strtod(buf, NULL) != v)
			n = snprintf(buf, cap, "%.17g", v);
	}
	if (n < 0 || (size_t)n >= cap)
		return GW_ENOSPC;
	return n;
}

/* Escapes for HELP (quote=0: \\ and \n) or label values (quote=1: also "). */
static void put_escaped(gw_prom_t *p, const char *s, int quote)
{
	const char *run = s;
	for (; *s; s++) {
		const char *esc = NULL;
		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (quote && *s == '"')
			esc = "\\\"";
		if (!esc)
			continue;
		put(p, run, (size_t)(s - run));
		puts_(p, esc);
		run = s + 1;
	}
	put(p, run, (size_t)(s - run));
}

void gw_prom_family(gw_prom_t *p, const char *name, gw_prom_type_t type,
		    const char *help)
{
	static const char *const types[] = {"counter", "gauge", "histogram"};
	if (p->err)
		return;
	if (!gw_prom_valid_metric_name(name) || (unsigned)type > 2) {
		fail(p, GW_EINVAL);
		return;
	}
	strcpy(p->family, name);
	p->type = type;
	if (help) {
		puts_(p, "# HELP ");
		puts_(p, name);
		puts_(p, " ");
		put_escaped(p, help, 0);
		puts_(p, "\n");
	}
	puts_(p, "# TYPE ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, types[type]);
	puts_(p, "\n");
}

/* name{labels[,le="x"]} - the part of a sample line before the value. */
static void put_series(gw_prom_t *p, const char *suffix,
		       const char *const *labels, const char *le)
{
	puts_(p, p->family);
	if (suffix)
		puts_(p, suffix);
	if ((!labels || !labels[0]) && !le)
		return;
	puts_(p, "{");
	int first = 1;
	for (size_t i = 0; labels && labels[i]; i += 2) {
		if (!labels[i + 1] || !gw_prom_valid_label_name(labels[i]) ||
		    (le && strcmp(labels[i], "le") == 0)) {
			fail(p, GW_EINVAL);
			return;
		}
		if (!first)
			puts_(p, ",");
		first = 0;
		puts_(p, labels[i]);
		puts_(p, "=\"");
		put_escaped(p, labels[i + 1], 1);
		puts_(p, "\"");
	}
	if (le) {
		if (!first)
			puts_(p, ",");
		puts_(p, "le=\"");
		puts_(p, le);
		puts_(p, "\"");
	}
	puts_(p, "}");
}

static void put_u64(gw_prom_t *p, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), " %" PRIu64 "\n", v);
	put(p, num, (size_t)n);
}

static void put_double(gw_prom_t *p, double v)
{
	char num[40];
	int n = gw_prom_fmt_double(v, num, sizeof(num));
	if (n < 0) {
		fail(p, n);
		return;
	}
	puts_(p, " ");
	put(p, num, (size_t)n);
	puts_(p, "\n");
}

static int sample_ok(gw_prom_t *p)
{
	if (p->err)
		return 0;
	if (!p->family[0] || p->type == GW_PROM_HISTOGRAM) {
		fail(p, GW_EINVAL);
		return 0;
	}
	return 1;
}

void gw_prom_u64(gw_prom_t *p, const char *const *labels, uint64_t v)
{
	if (!sample_ok(p))
		return;
	put_series(p, NULL, labels, NULL);
	put_u64(p, v);
}

void gw_prom_double(gw_prom_t *p, const char *const *labels, double v)
{
	if (!sample_ok(p))
		return;
	put_series(p, NULL, labels, NULL);
	put_double(p, v);
}

void gw_prom_histogram(gw_prom_t *p, const char *const *labels,
		       const double *bounds, const uint64_t *counts, size_t n,
		       double sum)
{
	if (p->err)
		return;
	if (p->type != GW_PROM_HISTOGRAM || !p->family[0]) {
		fail(p, GW_EINVAL);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(bounds[i]) ||
		    (i > 0 && bounds[i] <= bounds[i - 1])) {
			fail(p, GW_EINVAL);
			return;
		}
	uint64_t cum = 0;
	char le[40];
	for (size_t i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n) {
			if (gw_prom_fmt_double(bounds[i], le, sizeof(le)) < 0) {
				fail(p, GW_ENOSPC);
				return;
			}
		} else {
			strcpy(le, "+Inf");
		}
		put_series(p, "_bucket", labels, le);
		put_u64(p, cum);
	}
	put_series(p, "_sum", labels, NULL);
	put_double(p, sum);
	put_series(p, "_count", labels, NULL);
	put_u64(p, cum);
}
