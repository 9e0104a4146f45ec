/*
 * policy.h - who may talk to the gateway and how much (docs/policy.md):
 * ACLs, per-client rate limits, the PROXY v2 preamble (on stream
 * listeners before the first byte, on datagram listeners before every
 * datagram), and the optional query log. The glue around the sans-I/O cores
 * gateway/acl.h, gateway/ratelimit.h and transports/proxy2.h.
 *
 * Where each check runs, the same for every transport:
 *   - stream listeners (tcp, dot, doh, h2c): gw_policy_accept() in the
 *     shared accept loop, before TLS; a refused connection is closed at once.
 *   - udp: gw_policy_admit_dgram() per datagram; a refused one is dropped.
 *   - doq: gw_policy_admit_conn() on a client's first Initial; a refused one
 *     is dropped (no CONNECTION_CLOSE, so nothing is reflected).
 *   - every query: gw_policy_query() in the pipeline (queries per second).
 *
 * One gw_policy_t per worker (its rate tables and the connections waiting
 * for a PROXY header); everything runs on the worker's thread. The policy
 * reads w->conf at each check, so a configuration swap applies at once.
 */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gateway/config.h"

typedef struct gw_policy gw_policy_t;
typedef struct gw_worker gw_worker_t;
typedef struct gw_listener gw_listener_t;
typedef struct gw_query gw_query_t;

/* For w (its loop and conf). NULL when out of memory. */
gw_policy_t *gw_policy_new(gw_worker_t *w);
/* After a configuration reload (w->conf swapped): when the rate settings
 * (policy.qps, qps_burst, conn_rate, conn_burst, ratelimit_clients) differ
 * from those p's tables were made with, makes new empty tables (the
 * buckets' state is lost: every client starts with a full burst). 1 when
 * rebuilt, 0 when nothing changed, GW_ENOMEM with the old tables kept.
 * Worker's thread. */
int gw_policy_reconf(gw_policy_t *p);
/* Closes connections still waiting for a PROXY header, frees the tables.
 * Call before the loop is destroyed. NULL is a no-op. */
void gw_policy_free(gw_policy_t *p);

/* Every policy.listener_acl and proxy_protocol.listeners entry names a
 * configured listener: 0, or GW_ECONFIG with "URL: reason" in err. */
int gw_policy_check_conf(const gw_conf_t *c, char *err, size_t errlen);

/* The ACL in force on listener endpoint ep (an override or the global). */
const gw_acl_t *gw_policy_acl(const gw_conf_t *c, const gw_endpoint_t *ep);

/*
 * A stream connection was accepted on l from addr. Returns true when the
 * caller goes on with it (connection cap, then l->on_conn). Returns false
 * when the policy took the descriptor: closed (ACL, connection rate) or,
 * on a PROXY listener from a trusted peer, waiting for the header; once the
 * header is read the policy applies the checks to the client it names,
 * takes the connection-cap slot and calls l->on_conn itself.
 */
bool gw_policy_accept(gw_listener_t *l, int fd,
		      const struct sockaddr_storage *addr, socklen_t alen);

/*
 * PROXY v2 on datagram listeners (udp, doq): the header prefixes every
 * datagram of a trusted proxy (as dnsdist and HAProxy send it).
 *
 * gw_policy_proxy_listener(): ep is in policy.proxy_protocol.listeners.
 * The list only changes with a restart, so front-ends ask once at start and
 * keep a flag: a listener without PROXY pays nothing per datagram.
 *
 * gw_policy_proxy_dgram(): for one datagram of len bytes from peer on such
 * a listener, sets *client (and *clientlen) to the address the checks and
 * logs apply to. From a trusted peer the datagram must start with a header:
 * returns the header's length (the payload follows it) and *client is the
 * client it names (the peer itself for LOCAL, AF_UNSPEC, AF_UNIX). Without
 * a valid header returns GW_EMALFORMED, counted and logged at debug: drop
 * the datagram. From any other peer returns 0 with *client = *peer: a plain
 * datagram, whatever header it carries is not believed (as on streams).
 * Answers go back to peer (the proxy), without a header.
 */
bool gw_policy_proxy_listener(const gw_conf_t *c, const gw_endpoint_t *ep);
int gw_policy_proxy_dgram(gw_listener_t *l, const uint8_t *buf, size_t len,
			  const struct sockaddr_storage *peer,
			  struct sockaddr_storage *client, socklen_t *clientlen);

/* A datagram listener's ACL check for one datagram. */
bool gw_policy_admit_dgram(gw_listener_t *l, const struct sockaddr *addr);
/* ACL and new-connection rate for a connection that is not a socket of its
 * own (a DoQ Initial). */
bool gw_policy_admit_conn(gw_listener_t *l, const struct sockaddr *addr);

enum gw_policy_verdict {
	GW_POLICY_PASS = 0,
	GW_POLICY_REFUSE, /* answer REFUSED */
	GW_POLICY_DROP,	  /* UDP only: no answer (slip) */
};
/* Queries per second of q's client (the address the front-end set: the
 * forwarded one behind a trusted DoH proxy or a PROXY header). */
int gw_policy_query(gw_worker_t *w, const gw_query_t *q);

/* One query-log line (log.queries) for q answered with msg. */
void gw_policy_log_query(const gw_query_t *q, const uint8_t *msg, size_t len);

/* The client address as logged: with log.anonymize the last octet of an
 * IPv4 address and the last 80 bits of an IPv6 address are zeroed. */
void gw_policy_addr_text(const struct sockaddr *addr, bool anonymize, char *out,
			 size_t cap);

#endif
