/*
 * attempt.h - private to upstream/: the per-query state the pool keeps in
 * q->up_ctx, and the seam between the pool (selection, retries, health, the
 * attempt timer) and the protocol modules (udp.c, tcp.c; later tls.c, ...).
 *
 * A query has at most one attempt on the wire at a time. The pool owns the
 * gw_up_query_t and its timer; a protocol module owns uq->fd and uq->io while
 * an attempt of its protocol runs, and reports back with exactly one of
 * gw_up_attempt_answer(), gw_up_attempt_truncated() or gw_up_attempt_error()
 * (or nothing, and the pool's timer ends the attempt). After reporting, the
 * module must not touch uq: the pool may have freed it.
 *
 * Seam for the pooled, pipelined TCP/TLS manager (a later issue): today
 * gw_up_tcp_start() opens one connection per attempt; a shared connection will
 * keep its own gw_up_ids_t and a map ID -> gw_up_query_t, and report through
 * the same three functions.
 */
#ifndef GW_UP_ATTEMPT_H
#define GW_UP_ATTEMPT_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/buf.h"
#include "gateway/dns.h"
#include "gateway/query.h"
#include "select.h"
#include "upstream.h"

typedef struct gw_up_query gw_up_query_t;

typedef enum gw_up_state {
	GW_UPQ_ATTEMPT,    /* on the wire; timer = attempt timeout */
	GW_UPQ_DEFER_ERR,  /* start failed; timer (0 s) reports err next loop */
	GW_UPQ_DEFER_FAIL, /* giving up; timer (0 s) calls fail next loop */
} gw_up_state_t;

struct gw_up_query {
	gw_up_pool_t *pool;
	gw_query_t *q;
	gw_up_query_t *next, *prev; /* pool's pending list */
	gw_up_state_t state;

	uint32_t tried;  /* bit i: upstream i got an attempt */
	int up;          /* current attempt's upstream, -1 before the first */
	bool trial;      /* current attempt is that upstream's health trial */
	bool picked;     /* the current pick awaits gw_up_sel_report() */
	bool has_id;
	uint16_t id;     /* ID on the wire, held in the pool's gw_up_ids_t */
	gw_proto_t proto;/* current attempt's transport (TCP after TC=1) */
	int err;         /* last attempt's error, for the final EDE */
	int fail_ede;
	const char *fail_text;

	gw_dns_msg_t sent; /* the upstream query as parsed, id = wire ID */
	uint8_t *out;      /* 2-byte length prefix, then out_len bytes */
	size_t out_len;

	int fd;
	ev_io io;
	ev_timer timer;

	/* tcp.c */
	size_t wr_off;  /* bytes of out (prefix included) written */
	bool connected;
	gw_buf_t rd;    /* length-prefixed answers, capped at 2 + 65535 */
};

/* --- provided by pool.c for the protocol modules -------------------------- */

struct ev_loop *gw_up_pool_loop(const gw_up_pool_t *p);
const gw_conf_t *gw_up_pool_conf(const gw_up_pool_t *p);
/* The worker's 65535-byte receive buffer (UDP reads, single-threaded). */
uint8_t *gw_up_pool_rbuf(gw_up_pool_t *p);

/* A matched answer (borrowed): the query is answered, uq is freed. */
void gw_up_attempt_answer(gw_up_query_t *uq, const uint8_t *msg, size_t len);
/* A matched TC=1 answer over UDP: the same upstream is asked over TCP. */
void gw_up_attempt_truncated(gw_up_query_t *uq);
/* The attempt failed (negative error): retry elsewhere or fail the query. */
void gw_up_attempt_error(gw_up_query_t *uq, int err);
/* Debug log of one per-query event (cheap when debug is off). */
void gw_up_debug(const gw_up_query_t *uq, const char *msg, const char *detail);

/* --- protocol modules ----------------------------------------------------- */

/*
 * Start an attempt to ep: open the socket, send uq->out, watch for the
 * answer. 0, or a negative error with nothing left open (the pool then
 * reports the error from its next loop iteration, never synchronously).
 */
int gw_up_udp_start(gw_up_query_t *uq, const gw_endpoint_t *ep);
int gw_up_tcp_start(gw_up_query_t *uq, const gw_endpoint_t *ep);
/* Stop watchers and close the socket; idempotent, never calls back. */
void gw_up_udp_stop(gw_up_query_t *uq);
void gw_up_tcp_stop(gw_up_query_t *uq);

/* --- for tests ------------------------------------------------------------ */

/* Where a pool delivers results; defaults to gw_query_answer/gw_query_fail.
 * Tests replace them to drive the pool with hand-made gw_query_t objects. */
typedef struct gw_up_result_ops {
	void (*answer)(gw_query_t *q, const uint8_t *msg, size_t len);
	void (*fail)(gw_query_t *q, int ede, const char *ede_text);
} gw_up_result_ops_t;

void gw_up_pool_set_result_ops(gw_up_pool_t *p, const gw_up_result_ops_t *ops);
/* The pool's health state (read-only view, for tests and metrics). */
const gw_up_sel_t *gw_up_pool_sel(const gw_up_pool_t *p);

#endif
