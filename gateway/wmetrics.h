/*
 * wmetrics.h - per-worker counters of the query pipeline and front-ends,
 * plus the few process-wide ones (reloads, certificate dates), for the admin
 * listener's /metrics, /healthz and /readyz (gateway/admin.h).
 *
 * No locks on the hot path: each gw_worker_t embeds one gw_worker_metrics_t
 * that only its own thread writes. Writes are a relaxed load plus a relaxed
 * store (gw_wm_add: the same instructions as a plain increment on x86-64 and
 * arm64, no lock prefix, no read-modify-write); the admin thread reads with
 * relaxed loads (gw_wm_load). Every 64-bit word is read whole, never torn;
 * words of one struct may be read at slightly different moments, which only
 * means a scrape is a near-instant rather than an instant snapshot (a
 * histogram's _count may lag its buckets by an observation or two between
 * scrapes — Prometheus tolerates that, rate() does not care).
 *
 * The writer side is callable only from the owning worker's thread; the
 * readers from any thread.
 */
#ifndef GW_WMETRICS_H
#define GW_WMETRICS_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "gateway/config.h"

#define GW_WM_TRANSPORTS 6 /* gw_proto_t values (listener side) */
#define GW_WM_QTYPES 23	   /* named query types + "other" */
#define GW_WM_RCODES 16	   /* header RCODE */
/* Request latency buckets: 0.25 ms doubling to 8.192 s, as CoreDNS's
 * coredns_dns_request_duration_seconds; one more bucket for +Inf. */
#define GW_WM_LAT_BOUNDS 16
#define GW_WM_HEARTBEAT_S 0.5 /* how often each worker stamps its heartbeat */

/* Why the policy turned a client or a query away (dnsgw_refusals_total). */
typedef enum gw_wm_refusal {
	GW_WM_REFUSE_ACL,	/* denied by an ACL */
	GW_WM_REFUSE_CONN_RATE, /* new connections per second per client */
	GW_WM_REFUSE_QPS,	/* queries per second: REFUSED or dropped */
	GW_WM_REFUSE_CONN_CAP,	/* per-client or global connection cap */
	GW_WM_REFUSE_PROXY,	/* PROXY v2 header bad, missing or late */
	GW_WM_REFUSALS
} gw_wm_refusal_t;

typedef struct gw_worker_metrics {
	uint64_t requests[GW_WM_TRANSPORTS][GW_WM_QTYPES];
	uint64_t responses[GW_WM_RCODES];
	uint64_t latency[GW_WM_TRANSPORTS][GW_WM_LAT_BOUNDS + 1];
	uint64_t latency_sum_ns[GW_WM_TRANSPORTS];
	/* front-end connections (TCP, DoT, DoH, h2c, DoQ) */
	uint64_t conns_opened[GW_WM_TRANSPORTS];
	uint64_t conns_closed[GW_WM_TRANSPORTS];
	uint64_t handshakes[GW_WM_TRANSPORTS];	       /* TLS/QUIC completed */
	uint64_t handshake_failures[GW_WM_TRANSPORTS]; /* closed before that */
	uint64_t refusals[GW_WM_TRANSPORTS][GW_WM_REFUSALS];
	/* CLOCK_MONOTONIC milliseconds of the worker's last timer tick */
	uint64_t heartbeat_ms;
	ev_timer heartbeat; /* owned by the worker's loop */
} gw_worker_metrics_t;

extern const double gw_wm_lat_bounds[GW_WM_LAT_BOUNDS];

/* --- writer side: the owning worker thread only ------------------------- */

static inline void gw_wm_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
			 __ATOMIC_RELAXED);
}

/* A query arrived on transport t with this QTYPE (0 when unparsable). */
void gw_wm_request(gw_worker_metrics_t *m, gw_proto_t t, uint16_t qtype);
/* An answer left with this RCODE after `seconds`. */
void gw_wm_response(gw_worker_metrics_t *m, gw_proto_t t, unsigned rcode,
		    double seconds);
/* A front-end connection opened / closed; a handshake ended. */
void gw_wm_conn_open(gw_worker_metrics_t *m, gw_proto_t t);
void gw_wm_conn_close(gw_worker_metrics_t *m, gw_proto_t t);
void gw_wm_handshake(gw_worker_metrics_t *m, gw_proto_t t, bool ok);
/* The policy refused a connection, datagram or query on transport t. */
void gw_wm_refusal(gw_worker_metrics_t *m, gw_proto_t t, gw_wm_refusal_t why);

/* Stamps the heartbeat now and every GW_WM_HEARTBEAT_S from a timer on loop
 * (which does not keep the loop alive). Call on the worker's thread before
 * ev_run(). */
void gw_wm_start(gw_worker_metrics_t *m, struct ev_loop *loop);

/* --- reader side: any thread -------------------------------------------- */

static inline uint64_t gw_wm_load(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* The index of a QTYPE in requests[][] and its label ("A", ..., "other"). */
unsigned gw_wm_qtype_index(uint16_t qtype);
const char *gw_wm_qtype_name(unsigned idx);
/* "NOERROR", "SERVFAIL", ...; numbers for the unnamed ones. */
const char *gw_wm_rcode_name(unsigned rcode);
/* Refusal reason label: "acl", "conn_rate", "qps", "conn_cap", "proxy". */
const char *gw_wm_refusal_name(gw_wm_refusal_t why);
/* Listener transport label: "udp", "tcp", "dot", "doh", "h2c", "doq". */
const char *gw_wm_transport_name(gw_proto_t t);

/* CLOCK_MONOTONIC in milliseconds (the heartbeat's clock). */
uint64_t gw_wm_now_ms(void);

/* --- process-wide -------------------------------------------------------- */

/* A configuration or certificate reload ended: ok or rejected. */
void gw_metrics_reload_inc(bool ok);
uint64_t gw_metrics_reloads(bool ok);

/* The validity of the certificates in use (earliest notAfter, latest
 * notBefore over all of them; 0, 0 when there are none). Set at start-up
 * and after each successful certificate reload. */
void gw_metrics_cert_set(time_t not_before, time_t not_after);
void gw_metrics_cert_get(time_t *not_before, time_t *not_after);

#endif
