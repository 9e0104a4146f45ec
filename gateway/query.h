/*
 * query.h - one DNS query from arrival to answer.
 *
 * The path of every query, whatever the transport:
 *
 *   front-end codec -> gw_query_new() + gw_query_start()
 *       -> local answer (FORMERR/NOTIMP/REFUSED), or
 *       -> gw_up_pool_send() -> upstream protocol -> gw_query_answer()
 *   -> gw_dns_finish_answer() (ID restored, keepalive, padding, TC)
 *   -> client ops->on_answer() -> front-end writes it -> query freed
 *
 * Ownership: the pipeline owns the query from gw_query_new() on and frees it
 * after on_answer() returns. A front-end whose client goes away calls
 * gw_query_cancel(): the query leaves the upstream (its slot is freed) and is
 * freed at once; on_answer() is never called for it. A front-end must not
 * touch q after on_answer() or gw_query_cancel().
 *
 * on_answer() may run inside gw_query_start() (local answers), so a front-end
 * must be ready for that before calling it.
 */
#ifndef GW_QUERY_H
#define GW_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "config.h"
#include "dns.h"

typedef struct gw_worker gw_worker_t;
typedef struct gw_query gw_query_t;

/* Front-end callbacks. */
typedef struct gw_query_client_ops {
	/* The final answer for the client (borrowed; valid during the call). */
	void (*on_answer)(gw_query_t *q, const uint8_t *msg, size_t len);
} gw_query_client_ops_t;

struct gw_query {
	gw_worker_t *worker;
	const gw_query_client_ops_t *ops;
	void *client;    /* front-end's per-query or per-connection context */
	uint32_t client_tag; /* front-end's own use (e.g. stream id) */
	gw_proto_t transport;
	struct sockaddr_storage client_addr;
	/* udp behind a PROXY v2 header (transports/do53.c): the proxy, where
	 * the answer goes; sa_family 0 otherwise (answer client_addr) */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} reply_to;

	/* the client's query, parsed */
	gw_dns_msg_t msg;
	bool encrypted;       /* transport is DoT/DoH/DoQ: padding applies */
	bool stream;          /* TCP-like: keepalive applies, no TC */

	/* what goes upstream: ID rewritten, hop-by-hop options removed */
	uint8_t *wire;
	size_t wire_len;

	double t_start; /* worker clock at arrival */
	const char *upstream; /* URL of the upstream that answered (conf's),
			       * NULL for local answers: for the query log */
	bool cache_hit;       /* answered from the cache: for the query log */
	bool ecs_added;       /* policy.ecs.add put a client subnet upstream */

	/* upstream side (owned by upstream/): pending state, attempt count,
	 * and the pool it was sent to (after a reload it may no longer be
	 * the worker's current one) */
	void *up_ctx;
	struct gw_up_pool *up_pool;
	unsigned attempts;

	/* list link for the front-end's per-connection list */
	gw_query_t *next, *prev;
};

/* Allocates a query for a front-end. NULL when out of memory. */
gw_query_t *gw_query_new(gw_worker_t *w, gw_proto_t transport,
			 const gw_query_client_ops_t *ops, void *client,
			 const struct sockaddr *addr, socklen_t addrlen);

/*
 * Parses and checks msg (borrowed), then answers locally or forwards it.
 * Always ends in on_answer() (now or later) unless cancelled; never fails.
 */
void gw_query_start(gw_query_t *q, const uint8_t *msg, size_t len);

/* Front-end's client went away: abandon the work and free q at once. */
void gw_query_cancel(gw_query_t *q);

/* --- called by upstream/ ------------------------------------------------ */

/* An upstream answered (msg borrowed, already matched to the query). */
void gw_query_answer(gw_query_t *q, const uint8_t *msg, size_t len);
/* Every attempt failed: answer SERVFAIL with this Extended DNS Error. */
void gw_query_fail(gw_query_t *q, int ede, const char *ede_text);

/* Local answer with rcode (and EDE when >= 0); frees q. */
void gw_query_answer_local(gw_query_t *q, int rcode, int ede,
			   const char *text);

#endif
