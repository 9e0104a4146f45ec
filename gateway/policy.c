/*
 * policy.c - ACL, rate limits, PROXY v2 preamble and query log glue. See
 * policy.h and docs/policy.md.
 */
#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway/acl.h"
#include "gateway/dns.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/query.h"
#include "gateway/ratelimit.h"
#include "gateway/worker.h"
#include "transports/proxy2.h"

/* Connections reading their PROXY header, per worker; more are closed. */
#define MAX_PENDING 1024

struct pending {
	gw_policy_t *p;
	gw_listener_t *l;
	int fd;
	ev_io io;
	ev_timer timer;
	struct sockaddr_storage peer;
	size_t have;
	int need; /* whole header length once known, else 0 */
	struct pending *next, *prev;
	uint8_t buf[GW_PROXY2_MAX_LEN];
};

struct gw_policy {
	gw_worker_t *w;
	gw_ratelimit_t *qps;   /* NULL: off */
	gw_ratelimit_t *conns; /* NULL: off */
	uint32_t slip_count;
	struct pending *pending;
	unsigned n_pending;
	uint32_t rates[5]; /* the settings the tables were made with */
};

/* The policy settings the rate tables are made from. */
static void rate_settings(const gw_policy_conf_t *pc, uint32_t out[5])
{
	out[0] = pc->qps;
	out[1] = pc->qps_burst;
	out[2] = pc->conn_rate;
	out[3] = pc->conn_burst;
	out[4] = pc->ratelimit_clients;
}

/* Fresh (empty) tables for pc into *qps and *conns (NULL when off).
 * 0 or GW_ENOMEM with nothing made. */
static int make_tables(const gw_policy_conf_t *pc, uint64_t seed,
		       gw_ratelimit_t **qps, gw_ratelimit_t **conns)
{
	*qps = *conns = NULL;
	if (pc->qps) {
		*qps = gw_ratelimit_new(pc->ratelimit_clients, pc->qps,
					pc->qps_burst ? pc->qps_burst : pc->qps,
					seed);
		if (!*qps)
			return GW_ENOMEM;
	}
	if (pc->conn_rate) {
		*conns = gw_ratelimit_new(pc->ratelimit_clients, pc->conn_rate,
					  pc->conn_burst ? pc->conn_burst
							 : pc->conn_rate,
					  seed * 31 + 7);
		if (!*conns) {
			gw_ratelimit_free(*qps);
			*qps = NULL;
			return GW_ENOMEM;
		}
	}
	return 0;
}

gw_policy_t *gw_policy_new(gw_worker_t *w)
{
	const gw_policy_conf_t *pc = &w->conf->policy;
	gw_policy_t *p = calloc(1, sizeof(*p));
	uint64_t seed = (uint64_t)(uintptr_t)p ^
			((uint64_t)(gw_clock_monotonic() * 1e9) << 1);

	if (!p)
		return NULL;
	p->w = w;
	if (make_tables(pc, seed, &p->qps, &p->conns) < 0) {
		gw_policy_free(p);
		return NULL;
	}
	rate_settings(pc, p->rates);
	return p;
}

int gw_policy_reconf(gw_policy_t *p)
{
	const gw_policy_conf_t *pc = &p->w->conf->policy;
	uint32_t now[5];
	gw_ratelimit_t *qps, *conns;
	uint64_t seed = (uint64_t)(uintptr_t)p ^
			((uint64_t)(gw_clock_monotonic() * 1e9) << 1);

	rate_settings(pc, now);
	if (memcmp(now, p->rates, sizeof(now)) == 0)
		return 0;
	if (make_tables(pc, seed, &qps, &conns) < 0)
		return GW_ENOMEM; /* the old tables stay */
	/* Every client starts again with a full bucket: the state of the
	 * old tables (other rates, other sizes) does not carry over. */
	gw_ratelimit_free(p->qps);
	gw_ratelimit_free(p->conns);
	p->qps = qps;
	p->conns = conns;
	memcpy(p->rates, now, sizeof(now));
	return 1;
}

static void pending_free(struct pending *c, bool close_fd)
{
	gw_policy_t *p = c->p;

	ev_io_stop(p->w->loop, &c->io);
	ev_timer_stop(p->w->loop, &c->timer);
	if (close_fd)
		close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->pending = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->n_pending--;
	free(c);
}

/* The trusted peer sent no usable header (bad, cut short or late). */
static void pending_refuse(struct pending *c)
{
	gw_wm_refusal(&c->p->w->metrics, c->l->ep->proto, GW_WM_REFUSE_PROXY);
	pending_free(c, true);
}

void gw_policy_free(gw_policy_t *p)
{
	if (!p)
		return;
	while (p->pending)
		pending_free(p->pending, true);
	gw_ratelimit_free(p->qps);
	gw_ratelimit_free(p->conns);
	free(p);
}

static bool same_listener(const gw_endpoint_t *a, const gw_endpoint_t *b)
{
	return a->proto == b->proto && a->addrlen == b->addrlen &&
	       a->addrlen > 0 && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

const gw_acl_t *gw_policy_acl(const gw_conf_t *c, const gw_endpoint_t *ep)
{
	const gw_policy_conf_t *pc = &c->policy;

	for (unsigned i = 0; i < pc->n_listener_acl; i++)
		if (same_listener(&pc->listener_acl[i].listen, ep))
			return &pc->listener_acl[i].acl;
	return &pc->acl;
}

static bool is_proxy_listener(const gw_conf_t *c, const gw_endpoint_t *ep)
{
	for (unsigned i = 0; i < c->policy.n_proxy_listen; i++)
		if (same_listener(&c->policy.proxy_listen[i], ep))
			return true;
	return false;
}

/* The index of the configured listener ep names, or -1. */
static int listener_index(const gw_conf_t *c, const gw_endpoint_t *ep)
{
	for (unsigned i = 0; i < c->n_listen; i++)
		if (same_listener(&c->listen[i], ep))
			return (int)i;
	return -1;
}

/* Entry ep of key names a listener that accepts its own connections: not
 * the doh:// half of a port shared with dot://, whose connections are
 * accepted (and judged) by the dot:// listener before ALPN is known. */
static int check_names(const gw_conf_t *c, const gw_endpoint_t *ep,
		       const char *key, char *err, size_t errlen)
{
	int i = listener_index(c, ep);

	if (i < 0) {
		snprintf(err, errlen, "%s: %s names no listener", ep->url, key);
		return GW_ECONFIG;
	}
	if (ep->proto == GW_PROTO_DOH &&
	    gw_conf_shared_port(c, (unsigned)i) >= 0) {
		snprintf(err, errlen,
			 "%s: %s: this port is shared with %s, which accepts "
			 "its connections; name that listener",
			 ep->url, key,
			 c->listen[gw_conf_shared_port(c, (unsigned)i)].url);
		return GW_ECONFIG;
	}
	return 0;
}

int gw_policy_check_conf(const gw_conf_t *c, char *err, size_t errlen)
{
	const gw_policy_conf_t *pc = &c->policy;

	for (unsigned i = 0; i < pc->n_listener_acl; i++)
		if (check_names(c, &pc->listener_acl[i].listen,
				"policy.listener_acl", err, errlen) < 0)
			return GW_ECONFIG;
	for (unsigned i = 0; i < pc->n_proxy_listen; i++)
		if (check_names(c, &pc->proxy_listen[i],
				"policy.proxy_protocol.listeners", err,
				errlen) < 0)
			return GW_ECONFIG;
	return 0;
}

/* Counts a refusal on /metrics and logs it at debug level. */
static void log_refusal(gw_listener_t *l, gw_wm_refusal_t reason,
			const char *why, const struct sockaddr *addr)
{
	char a[INET6_ADDRSTRLEN];

	gw_wm_refusal(&l->worker->metrics, l->ep->proto, reason);
	if (gw_log_level() < GW_LOG_DEBUG)
		return;
	gw_policy_addr_text(addr, l->worker->conf->policy.log_anonymize, a,
			    sizeof(a));
	gw_log(GW_LOG_DEBUG, "policy", why, "url", l->ep->url, "client", a,
	       NULL);
}

bool gw_policy_admit_dgram(gw_listener_t *l, const struct sockaddr *addr)
{
	if (gw_acl_allows(gw_policy_acl(l->worker->conf, l->ep), addr))
		return true;
	log_refusal(l, GW_WM_REFUSE_ACL, "denied by acl", addr);
	return false;
}

bool gw_policy_admit_conn(gw_listener_t *l, const struct sockaddr *addr)
{
	gw_worker_t *w = l->worker;

	if (!gw_policy_admit_dgram(l, addr))
		return false;
	if (w->policy && w->policy->conns &&
	    !gw_ratelimit_allow(w->policy->conns, addr, w->now)) {
		log_refusal(l, GW_WM_REFUSE_CONN_RATE,
			    "connection rate exceeded", addr);
		return false;
	}
	return true;
}

/* ------------------------------------------------- PROXY v2 preamble */

static void pending_done(struct pending *c)
{
	gw_listener_t *l = c->l;
	gw_worker_t *w = l->worker;
	gw_proxy2_t h;
	struct sockaddr_storage client = c->peer;
	socklen_t alen = client.ss_family == AF_INET6
			     ? sizeof(struct sockaddr_in6)
			     : sizeof(struct sockaddr_in);
	int fd = c->fd;

	if (gw_proxy2_parse(c->buf, c->have, &h) < 0) {
		gw_log(GW_LOG_DEBUG, "policy", "bad PROXY header", "url",
		       l->ep->url, NULL);
		pending_refuse(c);
		return;
	}
	if (h.has_addr) {
		client = h.src;
		alen = h.addrlen;
	}
	pending_free(c, false);
	/* From here the client named by the proxy is the client: ACL, rate,
	 * cap and logs all see it. */
	if (!gw_policy_admit_conn(l, (struct sockaddr *)&client)) {
		close(fd);
		return;
	}
	if (!gw_connlimit_acquire(w->connlimit, (struct sockaddr *)&client)) {
		gw_wm_refusal(&w->metrics, l->ep->proto, GW_WM_REFUSE_CONN_CAP);
		close(fd);
		return;
	}
	l->on_conn(l, fd, &client, alen);
}

static void on_pending_read(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pending *c = io->data;

	for (;;) {
		size_t want =
		    c->need > 0 ? (size_t)c->need : GW_PROXY2_HEADER_LEN;
		/* exactly the header: what follows belongs to the transport */
		ssize_t n = read(c->fd, c->buf + c->have, want - c->have);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			pending_refuse(c);
			return;
		}
		c->have += (size_t)n;
		if (c->need == 0) {
			int r =
			    gw_proxy2_need(c->buf, c->have, GW_PROXY2_MAX_LEN);
			if (r < 0) {
				gw_log(GW_LOG_DEBUG, "policy",
				       "not a PROXY v2 header", "url",
				       c->l->ep->url, "error", gw_strerror(r),
				       NULL);
				pending_refuse(c);
				return;
			}
			c->need = r;
		}
		if (c->need > 0 && c->have == (size_t)c->need) {
			pending_done(c);
			return;
		}
	}
}

static void on_pending_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pending *c = t->data;
	gw_log(GW_LOG_DEBUG, "policy", "PROXY header timed out", "url",
	       c->l->ep->url, NULL);
	pending_refuse(c);
}

bool gw_policy_accept(gw_listener_t *l, int fd,
		      const struct sockaddr_storage *addr, socklen_t alen)
{
	gw_worker_t *w = l->worker;
	gw_policy_t *p = w->policy;
	const gw_conf_t *conf = w->conf;

	(void)alen;
	/* A trusted proxy is not a client: it must send the header, and the
	 * checks apply to the client it names. Others on the same listener
	 * are plain clients (their header, if any, is not believed). */
	if (p && is_proxy_listener(conf, l->ep) &&
	    gw_cidr_match_list(conf->policy.proxy_trusted,
			       conf->policy.n_proxy_trusted,
			       (const struct sockaddr *)addr)) {
		struct pending *c = NULL;
		if (p->n_pending < MAX_PENDING)
			c = calloc(1, sizeof(*c));
		if (!c) { /* too many headers awaited at once */
			gw_wm_refusal(&w->metrics, l->ep->proto,
				      GW_WM_REFUSE_CONN_CAP);
			close(fd);
			return false;
		}
		c->p = p;
		c->l = l;
		c->fd = fd;
		c->peer = *addr;
		c->next = p->pending;
		if (c->next)
			c->next->prev = c;
		p->pending = c;
		p->n_pending++;
		ev_io_init(&c->io, on_pending_read, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, on_pending_timeout,
			      conf->limits.handshake_timeout_ms / 1000.0, 0);
		c->timer.data = c;
		ev_io_start(w->loop, &c->io);
		ev_timer_start(w->loop, &c->timer);
		return false;
	}
	if (!gw_policy_admit_conn(l, (const struct sockaddr *)addr)) {
		close(fd);
		return false;
	}
	return true;
}

bool gw_policy_proxy_listener(const gw_conf_t *c, const gw_endpoint_t *ep)
{
	return is_proxy_listener(c, ep);
}

int gw_policy_proxy_dgram(gw_listener_t *l, const uint8_t *buf, size_t len,
			  const struct sockaddr_storage *peer,
			  struct sockaddr_storage *client, socklen_t *clientlen)
{
	const gw_conf_t *conf = l->worker->conf;
	gw_proxy2_t h;

	*client = *peer;
	*clientlen = peer->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						 : sizeof(struct sockaddr_in);
	/* As on streams: others are plain clients, their header unbelieved */
	if (!gw_cidr_match_list(conf->policy.proxy_trusted,
				conf->policy.n_proxy_trusted,
				(const struct sockaddr *)peer))
		return 0;
	int n = gw_proxy2_strip_dgram(buf, len, &h);
	if (n < 0) {
		/* a trusted proxy always sends one: without it we would take
		 * the proxy for the client (and answer it as one) */
		log_refusal(l, GW_WM_REFUSE_PROXY, "bad PROXY header",
			    (const struct sockaddr *)peer);
		return n;
	}
	if (h.has_addr) {
		memcpy(client, &h.src, h.addrlen);
		*clientlen = h.addrlen;
	}
	return n;
}

/* ------------------------------------------------------------ queries */

int gw_policy_query(gw_worker_t *w, const gw_query_t *q)
{
	gw_policy_t *p = w->policy;
	uint32_t slip = w->conf->policy.slip;

	if (!p || !p->qps ||
	    gw_ratelimit_allow(p->qps, (const struct sockaddr *)&q->client_addr,
			       w->now))
		return GW_POLICY_PASS;
	gw_wm_refusal(&w->metrics, q->transport, GW_WM_REFUSE_QPS);
	if (q->transport != GW_PROTO_UDP)
		return GW_POLICY_REFUSE;
	/* Like RRL's slip: answering only every Nth refused datagram keeps a
	 * spoofed flood from turning us into a reflector, while a real client
	 * still learns it was refused. */
	if (slip == 0)
		return GW_POLICY_DROP;
	return ++p->slip_count % slip == 0 ? GW_POLICY_REFUSE : GW_POLICY_DROP;
}

void gw_policy_addr_text(const struct sockaddr *addr, bool anonymize, char *out,
			 size_t cap)
{
	uint8_t b[16];

	if (addr->sa_family == AF_INET6) {
		memcpy(b,
		       ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr,
		       16);
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)b)) {
			memmove(b, b + 12, 4);
			goto v4;
		}
		/* keep the /48: the site, not the host */
		if (anonymize)
			memset(b + 6, 0, 10);
		if (!inet_ntop(AF_INET6, b, out, (socklen_t)cap))
			snprintf(out, cap, "-");
		return;
	}
	if (addr->sa_family != AF_INET) {
		snprintf(out, cap, "-");
		return;
	}
	memcpy(b, &((const struct sockaddr_in *)addr)->sin_addr, 4);
v4:
	if (anonymize)
		b[3] = 0;
	if (!inet_ntop(AF_INET, b, out, (socklen_t)cap))
		snprintf(out, cap, "-");
}

static const char *rcode_name(int rc, char *buf, size_t cap)
{
	static const char *const names[] = {"NOERROR",	"FORMERR", "SERVFAIL",
					    "NXDOMAIN", "NOTIMP",  "REFUSED"};
	if (rc >= 0 && rc < 6)
		return names[rc];
	snprintf(buf, cap, "RCODE%d", rc);
	return buf;
}

static const char *qtype_name(unsigned t, char *buf, size_t cap)
{
	static const struct {
		unsigned t;
		const char *n;
	} names[] = {{1, "A"},	    {2, "NS"},	 {5, "CNAME"},	 {6, "SOA"},
		     {12, "PTR"},   {15, "MX"},	 {16, "TXT"},	 {28, "AAAA"},
		     {33, "SRV"},   {43, "DS"},	 {48, "DNSKEY"}, {64, "SVCB"},
		     {65, "HTTPS"}, {255, "ANY"}};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].t == t)
			return names[i].n;
	snprintf(buf, cap, "TYPE%u", t); /* RFC 3597 5 */
	return buf;
}

void gw_policy_log_query(const gw_query_t *q, const uint8_t *msg, size_t len)
{
	const gw_worker_t *w = q->worker;
	char client[INET6_ADDRSTRLEN], qname[GW_DNS_MAX_NAME * 4 + 2];
	char tb[16], rb[16], ms[32];

	gw_policy_addr_text((const struct sockaddr *)&q->client_addr,
			    w->conf->policy.log_anonymize, client,
			    sizeof(client));
	if (q->msg.qdcount >= 1 && q->msg.qname_len > 0)
		gw_dns_name_to_text(q->msg.qname, q->msg.qname_len, qname,
				    sizeof(qname));
	else
		snprintf(qname, sizeof(qname), "-");
	snprintf(ms, sizeof(ms), "%.3f", (w->now - q->t_start) * 1000.0);
	gw_log(GW_LOG_INFO, "query", "query", "client", client, "transport",
	       gw_proto_scheme(q->transport, false), "qname", qname, "qtype",
	       qtype_name(q->msg.qtype, tb, sizeof(tb)), "rcode",
	       len >= 4 ? rcode_name(msg[3] & 0xf, rb, sizeof(rb)) : "-",
	       "duration_ms", ms, "upstream", q->upstream ? q->upstream : "-",
	       "cache",
	       !w->cache      ? "off"
	       : q->cache_hit ? "hit"
			      : "miss",
	       NULL);
}
