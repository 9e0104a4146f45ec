/*
 * query.c - the query pipeline. See query.h for the path a query takes.
 */
#include "query.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cache.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/policy.h"
#include "gateway/worker.h"
#include "upstream/upstream.h"

gw_query_t *gw_query_new(gw_worker_t *w, gw_proto_t transport,
			 const gw_query_client_ops_t *ops, void *client,
			 const struct sockaddr *addr, socklen_t addrlen)
{
	gw_query_t *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->worker = w;
	q->ops = ops;
	q->client = client;
	q->transport = transport;
	q->encrypted = transport == GW_PROTO_DOT || transport == GW_PROTO_DOH ||
		       transport == GW_PROTO_DOQ;
	q->stream = transport != GW_PROTO_UDP;
	if (addr && addrlen <= sizeof(q->client_addr))
		memcpy(&q->client_addr, addr, addrlen);
	q->t_start = gw_worker_now(w);
	return q;
}

static void query_free(gw_query_t *q)
{
	free(q->wire);
	free(q);
}

/* Every answer, local or upstream, leaves through here: the client's ID,
 * hop-by-hop EDNS options for this transport, truncation for UDP. */
static void deliver(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_worker_t *w = q->worker;
	uint8_t *buf = w->answer_buf;
	gw_dns_msg_t am;
	int n;

	if (len > GW_DNS_MAX_MSG || gw_dns_parse(msg, len, &am) < 0)
		goto servfail;
	memmove(buf, msg, len); /* a cache hit is already in buf */

	gw_dns_answer_opts_t o = {
		.id = q->msg.id,
		.client_edns = q->msg.has_opt,
		.pad = q->encrypted && q->msg.has_padding,
		.keepalive_100ms = -1,
		.max_len = 0,
		.strip_ecs = q->ecs_added,
	};
	/* RFC 7828 3.3.2: answer keepalive on streams when the client asked */
	if (q->stream && q->msg.has_keepalive &&
	    q->transport != GW_PROTO_DOH)
		o.keepalive_100ms =
			(int)(w->conf->limits.idle_timeout_ms / 100);
	if (!q->stream)
		o.max_len = q->msg.has_opt && q->msg.udp_size > 512
				    ? q->msg.udp_size
				    : 512;
	n = gw_dns_finish_answer(buf, len, sizeof(w->answer_buf), &am, &o);
	if (n < 0)
		goto servfail;
	gw_wm_response(&w->metrics, q->transport, GW_DNS_RCODE(buf[3]),
		       gw_worker_now(w) - q->t_start);
	if (w->conf->query_log)
		gw_policy_log_query(q, buf, (size_t)n);
	q->ops->on_answer(q, buf, (size_t)n);
	query_free(q);
	return;

servfail:
	gw_log(GW_LOG_DEBUG, "query", "unusable answer", NULL);
	n = gw_dns_make_error(&q->msg, GW_DNS_SERVFAIL, -1, NULL, buf,
			      sizeof(w->answer_buf));
	if (n > 0) {
		gw_dns_put16(buf, q->msg.id);
		gw_wm_response(&w->metrics, q->transport, GW_DNS_SERVFAIL,
			       gw_worker_now(w) - q->t_start);
		if (w->conf->query_log)
			gw_policy_log_query(q, buf, (size_t)n);
		q->ops->on_answer(q, buf, (size_t)n);
	}
	query_free(q);
}

/* The cache key of q when q may use the cache: not when it is off, nor when
 * the client's EDNS Client Subnet goes upstream (an answer for one subnet,
 * RFC 7871 7.3; ECS is stripped by default, and then the answer is shared).
 */
static bool cache_key(gw_query_t *q, gw_cache_key_t *k)
{
	gw_worker_t *w = q->worker;

	/* policy.ecs.add: answers are per client subnet, not shared */
	if (!w->cache || (q->msg.has_ecs && !w->conf->up.strip_ecs) ||
	    w->conf->policy.ecs_add)
		return false;
	return gw_cache_key_make(k, &q->msg, q->stream) == 0;
}

/* Answers q from the cache (stale: RFC 8767, after upstreams failed) through
 * the same finish path as an upstream answer. True when q is answered. */
static bool cache_try(gw_query_t *q, bool stale)
{
	gw_worker_t *w = q->worker;
	gw_cache_key_t k;
	int n;

	if (!cache_key(q, &k))
		return false;
	n = stale ? gw_cache_lookup_stale(w->cache, &k, gw_worker_now(w),
					  w->answer_buf,
					  sizeof(w->answer_buf))
		  : gw_cache_lookup(w->cache, &k, gw_worker_now(w),
				    w->answer_buf, sizeof(w->answer_buf));
	if (n <= 0)
		return false;
	q->cache_hit = true;
	deliver(q, w->answer_buf, (size_t)n);
	return true;
}

void gw_query_answer_local(gw_query_t *q, int rcode, int ede,
			   const char *text)
{
	uint8_t tmp[GW_DNS_HEADER_LEN + GW_DNS_MAX_NAME + 4 + 64 + 256];
	int n = gw_dns_make_error(&q->msg, rcode, ede, text, tmp, sizeof(tmp));
	if (n < 0) {
		/* No header to answer to: nothing sensible to send. */
		query_free(q);
		return;
	}
	deliver(q, tmp, (size_t)n);
}

/* policy.ecs.add: the client's subnet, cut to the configured prefix,
 * goes upstream (RFC 7871 7.1.1: a forwarder may add one). */
static void add_client_subnet(gw_query_t *q, size_t cap)
{
	const gw_policy_conf_t *pc = &q->worker->conf->policy;
	const struct sockaddr_storage *a = &q->client_addr;
	const uint8_t *ip;
	int fam, n;
	unsigned prefix;

	if (a->ss_family == AF_INET) {
		ip = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;
		fam = 1;
		prefix = pc->ecs_ipv4_prefix;
	} else if (a->ss_family == AF_INET6) {
		ip = ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr;
		fam = 2;
		prefix = pc->ecs_ipv6_prefix;
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)ip)) {
			ip += 12;
			fam = 1;
			prefix = pc->ecs_ipv4_prefix;
		}
	} else {
		return;
	}
	n = gw_dns_add_ecs(q->wire, q->wire_len, cap, fam, ip, prefix);
	if (n > 0 && (size_t)n != q->wire_len) {
		q->wire_len = (size_t)n;
		q->ecs_added = true;
	}
}

void gw_query_start(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_worker_t *w = q->worker;

	/* Queries per second per client, before any work (policy.h). */
	int verdict = gw_policy_query(w, q);
	if (verdict != GW_POLICY_PASS) {
		(void)gw_dns_parse(msg, len, &q->msg); /* the header suffices */
		if (verdict == GW_POLICY_DROP) {
			query_free(q); /* UDP only: no per-query client state */
			return;
		}
		gw_query_answer_local(q, GW_DNS_REFUSED, GW_DNS_EDE_OTHER,
				      "rate limited");
		return;
	}
	if (gw_dns_parse(msg, len, &q->msg) < 0) {
		gw_wm_request(&w->metrics, q->transport, 0);
		gw_query_answer_local(q, GW_DNS_FORMERR, -1, NULL);
		return;
	}
	gw_wm_request(&w->metrics, q->transport, q->msg.qtype);
	gw_dns_msg_t check = q->msg;
	/* RFC 7828 3.2.1: over UDP the option is ignored, not an error */
	if (!q->stream)
		check.has_keepalive = false;
	int rcode = gw_dns_check_query(&check);
	if (rcode >= 0) {
		gw_query_answer_local(q, rcode, -1, NULL);
		return;
	}
	/* A zone transfer is a multi-message stream, not a query a gateway can
	 * forward answer-for-answer (REQUIREMENTS.md: NOTIMP). */
	if (q->msg.qtype == GW_DNS_T_AXFR || q->msg.qtype == GW_DNS_T_IXFR) {
		gw_query_answer_local(q, GW_DNS_NOTIMP, -1, NULL);
		return;
	}
	if (cache_try(q, false))
		return;
	q->wire = malloc(len + GW_DNS_ECS_MAX_LEN);
	if (!q->wire) {
		gw_query_answer_local(q, GW_DNS_SERVFAIL, GW_DNS_EDE_OTHER,
				      "out of memory");
		return;
	}
	int n = gw_dns_make_upstream_query(msg, &q->msg, 0,
					   w->conf->up.strip_ecs, q->wire, len);
	if (n < 0) {
		gw_query_answer_local(q, GW_DNS_FORMERR, -1, NULL);
		return;
	}
	q->wire_len = (size_t)n;
	if (w->conf->policy.ecs_add)
		add_client_subnet(q, len + GW_DNS_ECS_MAX_LEN);
	gw_up_pool_send(w->pool, q);
}

void gw_query_cancel(gw_query_t *q)
{
	if (q->up_ctx)
		gw_up_pool_cancel(q->up_pool, q);
	query_free(q);
}

void gw_query_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_cache_key_t k;
	/* An answer from upstreams a reload replaced is served, not kept:
	 * the cache was emptied for the new ones (gateway/worker.c). */
	if (q->up_pool == q->worker->pool && cache_key(q, &k))
		(void)gw_cache_insert(q->worker->cache, &k, msg, len,
				      gw_worker_now(q->worker));
	deliver(q, msg, len);
}

void gw_query_fail(gw_query_t *q, int ede, const char *ede_text)
{
	if (cache_try(q, true))
		return;
	gw_query_answer_local(q, GW_DNS_SERVFAIL, ede, ede_text);
}
