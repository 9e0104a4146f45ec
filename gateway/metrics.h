/*
 * metrics.h - a writer for the Prometheus text exposition format 0.0.4.
 *
 * Sans-I/O: it appends text to a bounded gw_buf_t and knows nothing of
 * where the numbers come from (gateway/admin.c collects them). The format
 * (https://prometheus.io/docs/instrumenting/exposition_formats/):
 *
 *   # HELP dnsgw_requests_total Queries received.
 *   # TYPE dnsgw_requests_total counter
 *   dnsgw_requests_total{transport="dot",type="A"} 42
 *
 * One family is written at a time: gw_prom_family() writes its HELP and TYPE
 * lines, then samples follow. Names are checked against the format's grammar
 * (metric [a-zA-Z_:][a-zA-Z0-9_:]*, label [a-zA-Z_][a-zA-Z0-9_]*, labels
 * starting "__" are reserved); label values are escaped (backslash, double
 * quote, line feed) and HELP text too (backslash, line feed). Errors are
 * sticky: the first one is kept, later calls do nothing, and
 * gw_prom_finish() returns it, so a collector need not check every call.
 *
 * Labels are passed as a NULL-terminated array of name, value pairs:
 *   (const char *const[]){"transport", "dot", "type", "A", NULL}
 * or NULL for none.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/buf.h"

typedef enum gw_prom_type {
	GW_PROM_COUNTER,
	GW_PROM_GAUGE,
	GW_PROM_HISTOGRAM,
} gw_prom_type_t;

#define GW_PROM_MAX_NAME 128

typedef struct gw_prom {
	gw_buf_t *out; /* borrowed */
	int err;       /* sticky: 0 or the first GW_E* */
	gw_prom_type_t type;
	char family[GW_PROM_MAX_NAME]; /* "" before the first family */
} gw_prom_t;

/* Writes into out (borrowed; the caller owns and frees it). */
void gw_prom_init(gw_prom_t *p, gw_buf_t *out);

/* Starts a family: HELP (escaped) and TYPE lines. GW_EINVAL for a bad name
 * (the caller keeps names unique: each family is written once). */
void gw_prom_family(gw_prom_t *p, const char *name, gw_prom_type_t type,
		    const char *help);

/* One sample of the current counter or gauge family. */
void gw_prom_u64(gw_prom_t *p, const char *const *labels, uint64_t v);
void gw_prom_double(gw_prom_t *p, const char *const *labels, double v);

/*
 * One histogram of the current histogram family: counts[0..n] are the
 * per-bucket (not cumulative) counts for the n ascending upper bounds in
 * bounds (seconds), counts[n] the observations above the last bound. Writes
 * cumulative _bucket lines (le="..." added after labels, ending with
 * le="+Inf"), then _sum and _count. GW_EINVAL when bounds do not ascend.
 */
void gw_prom_histogram(gw_prom_t *p, const char *const *labels,
		       const double *bounds, const uint64_t *counts, size_t n,
		       double sum);

/* The sticky error (0 when everything was written). */
int gw_prom_finish(const gw_prom_t *p);

/* Formats v as the format's floats: "+Inf", "-Inf", "NaN", or the shortest
 * of %.15g/%.17g that reads back as v. Returns the length (< cap) or
 * GW_ENOSPC. */
int gw_prom_fmt_double(double v, char *buf, size_t cap);

/* True if s is a valid metric name / label name. */
int gw_prom_valid_metric_name(const char *s);
int gw_prom_valid_label_name(const char *s);

#endif
