/*
 * query.c - the query pipeline. See query.h for the path a query takes.
 */
#include "query.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/error.h"
#include "gateway/log.h"
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
	memcpy(buf, msg, len);

	gw_dns_answer_opts_t o = {
		.id = q->msg.id,
		.client_edns = q->msg.has_opt,
		.pad = q->encrypted && q->msg.has_padding,
		.keepalive_100ms = -1,
		.max_len = 0,
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
	q->ops->on_answer(q, buf, (size_t)n);
	query_free(q);
	return;

servfail:
	gw_log(GW_LOG_DEBUG, "query", "unusable answer", NULL);
	n = gw_dns_make_error(&q->msg, GW_DNS_SERVFAIL, -1, NULL, buf,
			      sizeof(w->answer_buf));
	if (n > 0) {
		gw_dns_put16(buf, q->msg.id);
		q->ops->on_answer(q, buf, (size_t)n);
	}
	query_free(q);
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

void gw_query_start(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_worker_t *w = q->worker;

	if (gw_dns_parse(msg, len, &q->msg) < 0) {
		gw_query_answer_local(q, GW_DNS_FORMERR, -1, NULL);
		return;
	}
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
	q->wire = malloc(len);
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
	gw_up_pool_send(w->pool, q);
}

void gw_query_cancel(gw_query_t *q)
{
	if (q->up_ctx)
		gw_up_pool_cancel(q->worker->pool, q);
	query_free(q);
}

void gw_query_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	deliver(q, msg, len);
}

void gw_query_fail(gw_query_t *q, int ede, const char *ede_text)
{
	gw_query_answer_local(q, GW_DNS_SERVFAIL, ede, ede_text);
}
