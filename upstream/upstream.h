/*
 * upstream.h - the resolver-facing side, as the query pipeline sees it.
 *
 * One gw_up_pool_t per worker thread (no locks): it holds that worker's
 * sockets and pending queries for every configured upstream. The pipeline
 * hands it a query with gw_up_pool_send(); the pool later calls exactly one of
 * gw_query_answer() or gw_query_fail() for it, never from inside
 * gw_up_pool_send() itself (failures are deferred to the loop), unless
 * gw_up_pool_cancel() was called first, after which it never touches q again.
 *
 * Protocol modules sit behind the pool: udp.c (a few shared sockets),
 * tcp.c (pooled, pipelined TCP and TLS connections), https.c (HTTP/2
 * streams) and quic.c (QUIC streams); host names in URLs are resolved by
 * bootstrap.c. Selection, retries and health live in the pool.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <ev.h>

#include "gateway/config.h"
#include "gateway/query.h"

typedef struct gw_up_pool gw_up_pool_t;

/* Creates the pool for one worker. Borrows loop and conf (they outlive it).
 * Resolves host names in upstream URLs through the bootstrap resolver
 * (blocking, bounded by the attempt timeout). NULL with a message in err
 * when an upstream cannot be used (nothing to verify a TLS upstream
 * against, an unreadable CA file, a name that does not resolve). */
gw_up_pool_t *gw_up_pool_new(struct ev_loop *loop, const gw_conf_t *conf,
			     char *err, size_t errlen);

/* The addresses a pool's bootstrap resolver found for the host names of
 * its upstreams, with the seconds each has left, indexed as conf->upstream
 * (addrlen 0: a literal address, or nothing known). A pool made from the
 * same conf with a seed starts with them instead of asking again, so a
 * name is resolved once per process, not once per worker, and a worker
 * taking a reload's upstreams never blocks its loop on a lookup (the main
 * thread's check resolved them). */
typedef struct gw_up_seed {
	struct {
		struct sockaddr_storage addr;
		socklen_t addrlen;
		double ttl;
	} e[GW_CONF_MAX_UPSTREAM];
} gw_up_seed_t;
void gw_up_pool_seed(const gw_up_pool_t *p, gw_up_seed_t *out);
/* gw_up_pool_new with a seed from a pool of the same conf (NULL: none). */
gw_up_pool_t *gw_up_pool_new_seeded(struct ev_loop *loop,
				    const gw_conf_t *conf,
				    const gw_up_seed_t *seed, char *err,
				    size_t errlen);
/* Fails every pending query (SERVFAIL) and frees the pool. */
void gw_up_pool_free(gw_up_pool_t *p);

/* Forwards q->wire (q->wire_len bytes; its ID is a placeholder the pool
 * rewrites per attempt). Takes over q's upstream state until it answers. */
void gw_up_pool_send(gw_up_pool_t *p, gw_query_t *q);
/* Forgets q: frees its pending slot and sockets; no callback follows. */
void gw_up_pool_cancel(gw_up_pool_t *p, gw_query_t *q);

/* Number of queries waiting on upstreams (for drain and metrics). */
unsigned gw_up_pool_inflight(const gw_up_pool_t *p);

/* The configuration p was made from (its upstream list and settings). */
const gw_conf_t *gw_up_pool_conf(const gw_up_pool_t *p);

/* --- configuration reload (gateway/worker.c) ------------------------------ */

/* p is replaced by a pool made from a new configuration: it takes no new
 * query and stops its health probes; the queries it has finish here (answer,
 * retry within its own list, or fail) and its owner frees it once
 * gw_up_pool_inflight() is 0. Queries remember their pool (q->up_pool), so
 * cancelling one reaches the right pool. */
void gw_up_pool_retire(gw_up_pool_t *p);
/* Carries the counters (not the gauges nor the health) of every upstream
 * of old whose URL is also in p over to p, so /metrics counters of an
 * upstream kept across a reload do not restart from zero. Call on the
 * owning worker's thread before p takes queries. */
void gw_up_pool_inherit(gw_up_pool_t *p, const gw_up_pool_t *old);

/* --- metrics hooks -------------------------------------------------------- */

/* Latency histogram: bucket k counts attempts answered within
 * gw_up_lat_bounds_ms[k] ms (and above the previous bound); the last bucket
 * has no upper bound. */
#define GW_UP_LAT_BUCKETS 12
extern const unsigned gw_up_lat_bounds_ms[GW_UP_LAT_BUCKETS - 1];

/* Counters of one upstream in one worker (sum over workers for totals).
 * Plain integers written by the worker's thread only. */
typedef struct gw_up_metrics {
	uint64_t queries;      /* attempts sent to it */
	uint64_t answers[16];  /* matched answers by header RCODE */
	uint64_t timeouts;     /* attempts that timed out */
	uint64_t errors;       /* attempts that failed otherwise */
	uint64_t ignored;      /* messages dropped: wrong ID/question, junk */
	uint64_t latency[GW_UP_LAT_BUCKETS];
	uint64_t latency_sum_us; /* sum of the answered attempts' latency */
	uint64_t conns_opened; /* pooled connections opened (TCP/TLS) */
	uint64_t conn_failures;/* connects/handshakes that failed */
	uint64_t tls_resumed;  /* TLS handshakes that resumed a session */
	uint64_t probes_sent, probes_failed; /* active health probes */
	unsigned conns_open;   /* gauge: pooled connections open now */
	unsigned inflight;     /* gauge: attempts on the wire now */
	bool down;             /* health state */
} gw_up_metrics_t;

/* Copies the counters of upstream i into out. 0 or GW_EINVAL. Callable
 * from any thread (the admin listener's): each field is read with a relaxed
 * atomic load while the owning worker keeps writing plain increments, so a
 * field is never torn but fields may be read a moment apart (a benign race:
 * counters only grow, gauges are approximate by nature). */
int gw_up_pool_metrics(const gw_up_pool_t *p, unsigned i,
		       gw_up_metrics_t *out);

#endif
