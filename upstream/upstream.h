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
 * Protocol modules (udp.c, tcp.c, later tls.c, https.c, quic.c) sit behind
 * the pool; selection, retries and health live in the pool.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <ev.h>

#include "gateway/config.h"
#include "gateway/query.h"

typedef struct gw_up_pool gw_up_pool_t;

/* Creates the pool for one worker. Borrows loop and conf (they outlive it).
 * NULL with a message in err when an upstream's protocol is not supported. */
gw_up_pool_t *gw_up_pool_new(struct ev_loop *loop, const gw_conf_t *conf,
			     char *err, size_t errlen);
/* Fails every pending query (SERVFAIL) and frees the pool. */
void gw_up_pool_free(gw_up_pool_t *p);

/* Forwards q->wire (q->wire_len bytes; its ID is a placeholder the pool
 * rewrites per attempt). Takes over q's upstream state until it answers. */
void gw_up_pool_send(gw_up_pool_t *p, gw_query_t *q);
/* Forgets q: frees its pending slot and sockets; no callback follows. */
void gw_up_pool_cancel(gw_up_pool_t *p, gw_query_t *q);

/* Number of queries waiting on upstreams (for drain and metrics). */
unsigned gw_up_pool_inflight(const gw_up_pool_t *p);

#endif
