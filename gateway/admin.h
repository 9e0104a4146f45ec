/*
 * admin.h - the admin listener (--admin ADDR:PORT): HTTP/1.1 on its own
 * thread with its own libev loop, so a slow scraper never delays a query.
 *
 *   GET /metrics  Prometheus text format 0.0.4 (gateway/metrics.h), every
 *                 counter summed over the workers at the moment of the scrape
 *   GET /healthz  200 when every worker's loop stamped its heartbeat within
 *                 GW_ADMIN_HEALTH_MAX_AGE seconds (gateway/wmetrics.h),
 *                 else 503: a loop stuck in a callback is not alive
 *   GET /readyz   200 when the listeners are bound (the admin starts after
 *                 the workers), the certificates in use are valid now, and
 *                 at least one upstream is healthy; 503 at once when a drain
 *                 (SIGTERM) has begun
 *
 * HEAD is answered like GET without the body; other methods get 405, other
 * paths 404. One request per connection (Connection: close): scrapers and
 * probes open one per request anyway, and it keeps the state small.
 * Bounded: GW_ADMIN_MAX_CONNS connections (more are closed at accept), a
 * GW_ADMIN_MAX_HEAD request head (admin_http.h), GW_ADMIN_TIMEOUT seconds
 * per connection from accept to the last byte written, and the response
 * body capped at GW_ADMIN_MAX_BODY.
 *
 * Upstream health is per worker (each worker's pool judges on its own): an
 * upstream counts as healthy when at least one worker has it up. With passive
 * health only, an upstream marked down in every worker comes back when a
 * trial query succeeds, which needs traffic; active probes
 * (upstream.probe.interval_ms) bring it back without any, so use them when
 * /readyz gates traffic.
 *
 * Reads of worker state follow wmetrics.h: relaxed atomic loads of counters
 * only their worker writes; nothing on the query path waits for the admin.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <stddef.h>

#include "certs/certs.h"
#include "gateway/buf.h"
#include "gateway/config.h"
#include "gateway/worker.h"

#define GW_ADMIN_MAX_CONNS 16
#define GW_ADMIN_TIMEOUT 5.0	     /* seconds per connection */
#define GW_ADMIN_MAX_BODY (8u << 20) /* /metrics text */
#define GW_ADMIN_HEALTH_MAX_AGE 2.0  /* seconds since a heartbeat */

typedef struct gw_admin gw_admin_t;

/*
 * Binds conf->admin_addr (call on the main thread, before privileges are
 * dropped). Borrows conf and workers[0..n) (all initialised; they must
 * outlive the admin). NULL with "ADDR:PORT: reason" in err.
 */
gw_admin_t *gw_admin_new(const gw_conf_t *conf, gw_worker_t *workers,
			 unsigned n, char *err, size_t errlen);
/* Starts the admin thread; call after the workers started. 0 or -errno. */
int gw_admin_start(gw_admin_t *a);
/* Stops the thread (if started), closes every socket, frees a. NULL-safe.
 * Call after the workers were joined, so /readyz says 503 while they
 * drain. */
void gw_admin_free(gw_admin_t *a);

/* Renders the whole /metrics exposition into out (bounded by the caller).
 * 0 or a negative GW_E*. Any thread. */
int gw_admin_render_metrics(gw_admin_t *a, gw_buf_t *out);
/* 200 or 503, with a one-line reason (newline-terminated) in why. */
int gw_admin_healthz(gw_admin_t *a, char *why, size_t cap);
int gw_admin_readyz(gw_admin_t *a, char *why, size_t cap);

/* Records the validity window of the certificates in use (the earliest
 * notAfter and latest notBefore of the non-NULL entries) for /metrics and
 * /readyz. Call at start-up and after each successful certificate reload. */
void gw_admin_note_certs(gw_certs_t *const *certs, unsigned n);

#endif
