/*
 * attempt.h - private to upstream/: the per-query state the pool keeps in
 * q->up_ctx, and the seam between the pool (selection, retries, health, the
 * attempt timer) and the protocol modules (udp.c, tcp.c; later tls.c, ...).
 *
 * A query has at most one attempt on the wire at a time. The pool owns the
 * gw_up_query_t and its timer; a protocol module owns its part of uq (udp.c
 * uq->usock, tcp.c uq->conn, ...) while an attempt of its protocol runs,
 * and reports back with exactly one of gw_up_attempt_answer(),
 * gw_up_attempt_truncated() or gw_up_attempt_error() (or nothing, and the
 * pool's timer ends the attempt). After reporting, the
 * module must not touch uq: the pool may have freed it.
 *
 * Stream protocols (tcp://, tls://, and the TCP leg of a truncated UDP
 * answer) go through the pooled connection manager in tcp.c: per worker and
 * upstream a bounded set of pipelined connections, each with its own table of
 * IDs in flight (pending.h). gw_up_tcp_start() queues the query on a
 * connection; when that connection dies under it the manager calls
 * gw_up_attempt_reissue() instead of gw_up_attempt_error().
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
	GW_UPQ_DEFER_REFUSE, /* client over its cap: REFUSED next loop */
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
	uint16_t id;     /* ID on the wire, held in the socket's or connection's
			  * pending table (udp.c, tcp.c; 0 on https/quic) */
	gw_proto_t proto;/* current attempt's transport (TCP after TC=1) */
	int err;         /* last attempt's error, for the final EDE */
	int fail_ede;
	const char *fail_text;

	gw_dns_msg_t sent; /* the upstream query as parsed, id = wire ID */
	uint8_t *out;      /* 2-byte length prefix, then out_len bytes */
	size_t out_len;

	struct usock *usock; /* udp.c: the shared socket the attempt is on */
	ev_timer timer;
	double t_sent;   /* monotonic time the attempt started (latency) */

	/* tcp.c: the pooled connection the attempt is queued on; its ID is
	 * held in that connection's pending table, not in the pool's */
	struct gw_up_conn *conn;
	bool reissued;   /* already retried once after a connection died */
	bool counted;    /* counted in the upstream's in-flight gauge */
	bool timed_out;  /* some attempt timed out (final EDE 22, not 23) */
	/* https.c / quic.c: the stream carrying the attempt */
	struct h2st *h2st;
	struct qst *qst;
	/* tcp.c, https.c, quic.c: the upstream wait queue (connset.h) uq
	 * waits in for a connection (wnext/wprev), NULL when none */
	struct gw_up_cgroup *wq;
	int probe_up;    /* >= 0: an active health probe of that upstream */
	int client_bucket; /* slot in the pool's per-client counters, or -1 */
	gw_up_query_t *wnext, *wprev;
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
/* The connection carrying the attempt died (closed, reset, TLS failure)
 * before an answer: no health verdict for the query (the connection manager
 * reports the connection's failure once); the query is sent again once
 * without using up an attempt, preferably elsewhere, else it fails. */
void gw_up_attempt_reissue(gw_up_query_t *uq, int err);
/* Debug log of one per-query event (cheap when debug is off). */
void gw_up_debug(const gw_up_query_t *uq, const char *msg, const char *detail);

/* Monotonic seconds (health and backoff deadlines). */
double gw_up_now(void);
gw_up_rng_t *gw_up_pool_rng(gw_up_pool_t *p);
/* Seconds of one attempt (conf upstream.timeout_ms, default 2 s). */
double gw_up_pool_timeout(const gw_up_pool_t *p);
/* A connection-level verdict on upstream i (connect refused or timed out,
 * TLS authentication failure, or a connection that came up): one report
 * for the connection rather than one per query riding on it. */
void gw_up_pool_conn_report(gw_up_pool_t *p, unsigned i, bool trial,
			    gw_up_outcome_t o);
/* Writable counters of upstream i (metrics hooks). */
gw_up_metrics_t *gw_up_pool_metrics_w(gw_up_pool_t *p, unsigned i);

/* --- protocol modules ----------------------------------------------------- */

/* The pooled stream connections of one pool (tcp.c). NULL + err when a TLS
 * context cannot be built (e.g. an unreadable CA file). */
typedef struct gw_up_conns gw_up_conns_t;
gw_up_conns_t *gw_up_conns_new(gw_up_pool_t *p, char *err, size_t errlen);
/* Closes every connection; pending queries must be detached already. */
void gw_up_conns_free(gw_up_conns_t *cs);
gw_up_conns_t *gw_up_pool_conns(const gw_up_pool_t *p);
/* Pooled connections of upstream i not yet closed (tests, metrics). */
unsigned gw_up_conns_open(const gw_up_conns_t *cs, unsigned i);
/* Debug log of a connection event of upstream i. */
void gw_up_debug_conn(gw_up_pool_t *p, unsigned i, const char *msg,
		      const char *detail);

/*
 * Start a UDP attempt to ep: a random ID on one of the worker's shared
 * sockets to that upstream (udp.c), send uq->out, watch for the answer. 0,
 * or a negative error with nothing left for uq (the pool then reports the
 * error from its next loop iteration, never synchronously).
 */
int gw_up_udp_start(gw_up_query_t *uq, const gw_endpoint_t *ep);
/* The pool's shared UDP sockets (udp.c), created on first use: the pool
 * keeps the pointer and frees the set with gw_up_udps_free() after every
 * query is detached. */
typedef struct gw_up_udps gw_up_udps_t;
gw_up_udps_t **gw_up_pool_udps(gw_up_pool_t *p);
void gw_up_udps_free(gw_up_udps_t *us);
/* Tests: sockets per upstream (1..4), queries and seconds before a socket
 * is retired, seconds idle before it closes. 0 or GW_EINVAL/GW_ENOMEM. */
int gw_up_udp_set_limits(gw_up_pool_t *p, unsigned socks, unsigned max_queries,
			 double max_age, double idle);
/* Shared UDP sockets of upstream up open now (tests, metrics). */
unsigned gw_up_udp_open(gw_up_pool_t *p, unsigned up);
/* Queues uq on a pooled connection to upstream uq->up (TCP, or TLS for
 * tls:// upstreams). GW_EAGAIN: reconnect backoff in force; GW_ENOSPC:
 * every connection full, the cap reached and the upstream's wait queue
 * (upstream.max_waiting_per_upstream, default connections x in-flight)
 * full too (neither says anything about the upstream's health). */
/* A non-blocking, close-on-exec TCP socket with TCP_NODELAY whose connect()
 * to sa has started (EINPROGRESS). Returns the fd or -errno. Shared by the
 * TCP/DoT and DoH upstream connections. */
int gw_up_connect_stream(const struct sockaddr *sa, socklen_t salen);
int gw_up_tcp_start(gw_up_query_t *uq, const gw_endpoint_t *ep);
/* Leave the socket (udp) or the connection (tcp) with the ID kept busy
 * until the upstream answers it or the socket/connection closes;
 * idempotent, never calls back. */
void gw_up_udp_stop(gw_up_query_t *uq);
void gw_up_tcp_stop(gw_up_query_t *uq);

/* DoH (https.c) and DoQ (quic.c) upstreams: per pool, NULL when no
 * upstream of that scheme is configured (or with err set on failure). Same
 * contract as gw_up_tcp_start()/gw_up_tcp_stop(): a query goes on a stream
 * of a pooled connection (ID 0 on the wire, RFC 8484 4.1, RFC 9250 4.2.1),
 * or waits in a bounded per-upstream queue; GW_EAGAIN during the reconnect
 * backoff, GW_ENOSPC when even the queue is full. */
typedef struct gw_up_https gw_up_https_t;
typedef struct gw_up_quic gw_up_quic_t;
gw_up_https_t *gw_up_https_new(gw_up_pool_t *p, char *err, size_t errlen);
void gw_up_https_free(gw_up_https_t *hs);
int gw_up_https_start(gw_up_query_t *uq, const gw_endpoint_t *ep);
void gw_up_https_stop(gw_up_query_t *uq);
unsigned gw_up_https_open(const gw_up_https_t *hs, unsigned i);
gw_up_quic_t *gw_up_quic_new(gw_up_pool_t *p, char *err, size_t errlen);
void gw_up_quic_free(gw_up_quic_t *qs);
int gw_up_quic_start(gw_up_query_t *uq, const gw_endpoint_t *ep);
void gw_up_quic_stop(gw_up_query_t *uq);
unsigned gw_up_quic_open(const gw_up_quic_t *qs, unsigned i);
gw_up_https_t *gw_up_pool_https(const gw_up_pool_t *p);
gw_up_quic_t *gw_up_pool_quic(const gw_up_pool_t *p);

/* The address to connect to for upstream i: the URL's, or for a host name
 * the one the bootstrap resolver returned last (bootstrap.c). NULL when a
 * name has no address. */
const struct sockaddr *gw_up_pool_addr(gw_up_pool_t *p, unsigned i,
				       socklen_t *len);

/* Bootstrap resolution of host names in upstream URLs (bootstrap.c).
 * gw_up_boot_new() resolves every such name once, blocking (start-up; a
 * name the seed has an address for is taken from it instead), via
 * upstream.bootstrap (default: the first nameserver of /etc/resolv.conf),
 * and re-resolves each when its TTL runs out without blocking the loop.
 * NULL without err[0] when no upstream needs it; NULL with err on failure. */
typedef struct gw_up_boot gw_up_boot_t;
gw_up_boot_t *gw_up_boot_new(gw_up_pool_t *p, const gw_up_seed_t *seed,
			      char *err, size_t errlen);
void gw_up_boot_free(gw_up_boot_t *b);
void gw_up_boot_seed(const gw_up_boot_t *b, gw_up_seed_t *out);
const struct sockaddr *gw_up_boot_addr(const gw_up_boot_t *b, unsigned i,
				       socklen_t *len);

/* Sans-I/O halves of the bootstrap resolver, for the unit tests. query:
 * a recursive query for name/qtype with id into out; its length or
 * GW_EINVAL. parse: the first address of type qtype in the answer to that
 * query (ID and question checked) into *addr (4 or 16 bytes) and the
 * smallest TTL of the answer records into *ttl; 0, GW_EMALFORMED, or
 * GW_EAGAIN when the answer has no such address (rcode != 0 too). */
int gw_up_boot_query(uint8_t *out, size_t cap, const char *name,
		     uint16_t qtype, uint16_t id);
int gw_up_boot_parse(const uint8_t *msg, size_t len, const char *name,
		     uint16_t qtype, uint16_t id, uint8_t *addr,
		     uint32_t *ttl);

/* The TLS messages a QUIC upstream sends after the handshake (1-RTT CRYPTO
 * data, in order, in chunks of any size): only NewSessionTicket (RFC 8446
 * 4.6.1) may come. RFC 9001 6 forbids KeyUpdate, which wolfSSL would turn
 * into new keys installed under ngtcp2, aborting the process on ngtcp2's
 * assertion. Feed each chunk; 0, or -1 at the first other message type. */
typedef struct gw_up_tls_msgs {
	uint32_t left;  /* body bytes of the current message still to come */
	uint8_t hdr[4]; /* type and 24-bit length, as they arrive */
	uint8_t have;
} gw_up_tls_msgs_t;
int gw_up_tls_tickets_only(gw_up_tls_msgs_t *m, const uint8_t *p, size_t n);

/* --- for tests ------------------------------------------------------------ */

/* Where a pool delivers results; defaults to gw_query_answer/gw_query_fail.
 * Tests replace them to drive the pool with hand-made gw_query_t objects. */
typedef struct gw_up_result_ops {
	void (*answer)(gw_query_t *q, const uint8_t *msg, size_t len);
	void (*fail)(gw_query_t *q, int ede, const char *ede_text);
	/* client over limits.max_waiting_per_client; NULL: fail is used */
	void (*refuse)(gw_query_t *q);
} gw_up_result_ops_t;

void gw_up_pool_set_result_ops(gw_up_pool_t *p, const gw_up_result_ops_t *ops);
/* The pool's health state (read-only view, for tests and metrics). */
const gw_up_sel_t *gw_up_pool_sel(const gw_up_pool_t *p);

#endif
