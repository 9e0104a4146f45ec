/*
 * pool.c - I/O glue of the upstream pool: one per worker, no locks.
 * Decisions (which upstream, health, IDs, matching) live in select.c; this
 * file wires them to libev timers and the protocol modules. See
 * docs/upstream.md.
 */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attempt.h"
#include "gateway/error.h"
#include "gateway/log.h"

/* Queries whose per-query state could not be allocated wait here for their
 * failure, which must not run inside gw_up_pool_send(). */
#define OOM_RING 256

struct gw_up_pool {
	struct ev_loop *loop;
	const gw_conf_t *conf;
	gw_up_result_ops_t ops;
	gw_up_sel_t sel;
	gw_up_rng_t rng;
	gw_up_ids_t ids; /* worker-wide: no two pending queries share an ID */
	gw_up_query_t *head;
	unsigned inflight; /* pending gw_up_query_t plus oom[] entries */

	gw_query_t *oom[OOM_RING];
	unsigned n_oom;
	ev_timer oom_timer;
	char oom_marker; /* q->up_ctx of queries in oom[] */

	uint8_t rbuf[GW_DNS_MAX_MSG];
};

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void next_attempt(gw_up_query_t *uq);

struct ev_loop *gw_up_pool_loop(const gw_up_pool_t *p) { return p->loop; }
const gw_conf_t *gw_up_pool_conf(const gw_up_pool_t *p) { return p->conf; }
uint8_t *gw_up_pool_rbuf(gw_up_pool_t *p) { return p->rbuf; }
const gw_up_sel_t *gw_up_pool_sel(const gw_up_pool_t *p) { return &p->sel; }

void gw_up_pool_set_result_ops(gw_up_pool_t *p, const gw_up_result_ops_t *ops)
{
	p->ops = *ops;
}

unsigned gw_up_pool_inflight(const gw_up_pool_t *p)
{
	return p->inflight;
}

/* Health deadlines are absolute times, so they need a clock that never jumps:
 * ev_now() follows the wall clock (libev adjusts only its timers). */
static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned max_attempts(const gw_up_pool_t *p)
{
	return p->conf->up.attempts ? p->conf->up.attempts : 1;
}

static double attempt_timeout(const gw_up_pool_t *p)
{
	return (p->conf->up.timeout_ms ? p->conf->up.timeout_ms : 2000) / 1000.0;
}

static const char *errname(int err)
{
	switch (err) {
	case GW_ETIMEDOUT: return "timeout";
	case GW_ECLOSED: return "connection closed";
	case GW_ETOOBIG: return "answer too big";
	case GW_EMALFORMED: return "malformed";
	case GW_ENOMEM: return "out of memory";
	default: return err < 0 && err > -4096 ? strerror(-err) : "error";
	}
}

void gw_up_debug(const gw_up_query_t *uq, const char *msg, const char *detail)
{
	char id[8], att[8];
	const char *url = "-";

	if (gw_log_level() < GW_LOG_DEBUG)
		return;
	snprintf(id, sizeof(id), "%u", uq->id);
	snprintf(att, sizeof(att), "%u", uq->q->attempts);
	if (uq->up >= 0)
		url = uq->pool->conf->upstream[uq->up].url;
	gw_log(GW_LOG_DEBUG, "upstream", msg, "upstream", url, "id", id,
	       "attempt", att, "proto", uq->proto == GW_PROTO_TCP ? "tcp" : "udp",
	       "detail", detail ? detail : "-", NULL);
}

static void log_change(gw_up_pool_t *p, int i, gw_up_change_t c)
{
	if (c == GW_UP_WENT_DOWN)
		gw_log(GW_LOG_WARN, "upstream", "upstream down", "upstream",
		       p->conf->upstream[i].url, NULL);
	else if (c == GW_UP_CAME_UP)
		gw_log(GW_LOG_INFO, "upstream", "upstream up", "upstream",
		       p->conf->upstream[i].url, NULL);
}

static void report(gw_up_query_t *uq, gw_up_outcome_t o)
{
	gw_up_pool_t *p = uq->pool;

	if (!uq->picked)
		return;
	uq->picked = false;
	log_change(p, uq->up,
		   gw_up_sel_report(&p->sel, (unsigned)uq->up, uq->trial, o,
				    mono_now()));
	uq->trial = false;
}

/* Stops whatever runs for uq; leaves the ID and the pick alone. */
static void stop_io(gw_up_query_t *uq)
{
	ev_timer_stop(uq->pool->loop, &uq->timer);
	gw_up_udp_stop(uq);
	gw_up_tcp_stop(uq);
}

static void release_id(gw_up_query_t *uq)
{
	if (uq->has_id) {
		gw_up_ids_release(&uq->pool->ids, uq->id);
		uq->has_id = false;
	}
}

/* Takes uq off the pool and the query; afterwards only uq's memory is left. */
static gw_query_t *detach(gw_up_query_t *uq)
{
	gw_up_pool_t *p = uq->pool;
	gw_query_t *q = uq->q;

	stop_io(uq);
	release_id(uq);
	if (uq->prev)
		uq->prev->next = uq->next;
	else
		p->head = uq->next;
	if (uq->next)
		uq->next->prev = uq->prev;
	p->inflight--;
	q->up_ctx = NULL;
	return q;
}

static void uq_free(gw_up_query_t *uq)
{
	gw_buf_deinit(&uq->rd);
	free(uq->out);
	free(uq);
}

static void finish_fail(gw_up_query_t *uq, int ede, const char *text)
{
	gw_up_pool_t *p = uq->pool;
	gw_query_t *q;

	report(uq, GW_UP_ABANDON);
	gw_up_debug(uq, "query failed", text);
	q = detach(uq);
	uq_free(uq);
	p->ops.fail(q, ede, text);
}

/* Fails the query from the next loop iteration (callers may be inside
 * gw_up_pool_send()). */
static void defer_fail(gw_up_query_t *uq, int ede, const char *text)
{
	stop_io(uq);
	uq->state = GW_UPQ_DEFER_FAIL;
	uq->fail_ede = ede;
	uq->fail_text = text;
	ev_timer_set(&uq->timer, 0., 0.);
	ev_timer_start(uq->pool->loop, &uq->timer);
}

static void start_proto(gw_up_query_t *uq)
{
	gw_up_pool_t *p = uq->pool;
	const gw_endpoint_t *ep = &p->conf->upstream[uq->up];
	int r;

	uq->state = GW_UPQ_ATTEMPT;
	if (uq->proto == GW_PROTO_TCP)
		r = gw_up_tcp_start(uq, ep);
	else
		r = gw_up_udp_start(uq, ep);
	ev_timer_stop(p->loop, &uq->timer);
	if (r < 0) {
		/* Report from the loop, never from inside gw_up_pool_send(). */
		uq->state = GW_UPQ_DEFER_ERR;
		uq->err = r;
		ev_timer_set(&uq->timer, 0., 0.);
	} else {
		ev_timer_set(&uq->timer, attempt_timeout(p), 0.);
	}
	ev_timer_start(p->loop, &uq->timer);
	gw_up_debug(uq, r < 0 ? "attempt not started" : "attempt sent",
		    r < 0 ? errname(r) : NULL);
}

static void next_attempt(gw_up_query_t *uq)
{
	gw_up_pool_t *p = uq->pool;
	bool trial;
	int id, idx;

	release_id(uq);
	idx = gw_up_sel_pick(&p->sel, uq->tried, mono_now(), &trial);
	if (idx < 0) {
		defer_fail(uq, GW_DNS_EDE_NO_REACHABLE_AUTHORITY,
			   "all upstreams down");
		return;
	}
	uq->up = idx;
	uq->trial = trial;
	uq->picked = true;

	id = gw_up_ids_alloc(&p->ids, &p->rng);
	if (id < 0) {
		report(uq, GW_UP_ABANDON);
		defer_fail(uq, GW_DNS_EDE_OTHER, "too many queries in flight");
		return;
	}
	uq->id = (uint16_t)id;
	uq->has_id = true;
	uq->tried |= 1u << idx;
	uq->q->attempts++;
	uq->proto = p->conf->upstream[idx].proto;

	/* A fresh random ID per attempt (RFC 5452 9.2), written into our
	 * copy: q->wire stays the pipeline's. */
	gw_dns_put16(uq->out + 2, uq->id);
	uq->sent.id = uq->id;
	start_proto(uq);
}

void gw_up_attempt_error(gw_up_query_t *uq, int err)
{
	gw_up_pool_t *p = uq->pool;

	stop_io(uq);
	uq->err = err;
	gw_up_debug(uq, "attempt failed", errname(err));
	/* Running out of fds or memory here says nothing about the upstream:
	 * fd exhaustion must not take every upstream down. */
	if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
	    err == GW_ENOMEM)
		report(uq, GW_UP_ABANDON);
	else
		report(uq, GW_UP_FAIL);
	if (uq->q->attempts < max_attempts(p)) {
		next_attempt(uq);
		return;
	}
	if (err == GW_ETIMEDOUT)
		finish_fail(uq, GW_DNS_EDE_NO_REACHABLE_AUTHORITY,
			    "upstream timeout");
	else
		finish_fail(uq, GW_DNS_EDE_NETWORK_ERROR,
			    "upstream network error");
}

void gw_up_attempt_truncated(gw_up_query_t *uq)
{
	/* RFC 7766 5: same upstream, same question, over TCP. The TCP leg
	 * belongs to the same attempt (it does not use up a retry) but gets
	 * its own timeout. */
	gw_up_debug(uq, "truncated answer, retrying over tcp", NULL);
	stop_io(uq);
	uq->proto = GW_PROTO_TCP;
	start_proto(uq);
}

void gw_up_attempt_answer(gw_up_query_t *uq, const uint8_t *msg, size_t len)
{
	gw_up_pool_t *p = uq->pool;
	gw_query_t *q;

	gw_up_debug(uq, "answer", NULL);
	report(uq, GW_UP_OK);
	q = detach(uq);
	/* msg may live in uq->rd: free uq only after the callback. */
	p->ops.answer(q, msg, len);
	uq_free(uq);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	gw_up_query_t *uq = w->data;

	(void)loop;
	(void)revents;
	switch (uq->state) {
	case GW_UPQ_ATTEMPT:
		gw_up_attempt_error(uq, GW_ETIMEDOUT);
		break;
	case GW_UPQ_DEFER_ERR:
		gw_up_attempt_error(uq, uq->err);
		break;
	case GW_UPQ_DEFER_FAIL:
		finish_fail(uq, uq->fail_ede, uq->fail_text);
		break;
	}
}

static void on_oom_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	gw_up_pool_t *p = w->data;
	unsigned n = p->n_oom;

	(void)loop;
	(void)revents;
	/* One at a time from the front: a callback may cancel or add others. */
	while (n-- > 0 && p->n_oom > 0) {
		gw_query_t *q = p->oom[0];
		memmove(p->oom, p->oom + 1, --p->n_oom * sizeof(p->oom[0]));
		p->inflight--;
		q->up_ctx = NULL;
		p->ops.fail(q, GW_DNS_EDE_OTHER, "out of memory");
	}
	if (p->n_oom > 0)
		ev_timer_start(p->loop, &p->oom_timer);
}

static void fail_oom(gw_up_pool_t *p, gw_query_t *q)
{
	if (p->n_oom == OOM_RING) {
		/* Hundreds of allocation failures in one loop iteration: the
		 * contract bends rather than the memory. */
		q->up_ctx = NULL;
		p->ops.fail(q, GW_DNS_EDE_OTHER, "out of memory");
		return;
	}
	p->oom[p->n_oom++] = q;
	p->inflight++;
	q->up_ctx = &p->oom_marker;
	if (!ev_is_active(&p->oom_timer))
		ev_timer_start(p->loop, &p->oom_timer);
}

void gw_up_pool_send(gw_up_pool_t *p, gw_query_t *q)
{
	gw_up_query_t *uq = calloc(1, sizeof(*uq));

	if (uq)
		uq->out = malloc(q->wire_len + 2);
	if (!uq || !uq->out) {
		free(uq);
		fail_oom(p, q);
		return;
	}
	uq->pool = p;
	uq->q = q;
	uq->fd = -1;
	uq->up = -1;
	gw_buf_init(&uq->rd, 2 + GW_DNS_MAX_MSG);
	ev_timer_init(&uq->timer, on_timer, 0., 0.);
	uq->timer.data = uq;
	uq->next = p->head;
	if (p->head)
		p->head->prev = uq;
	p->head = uq;
	p->inflight++;
	q->up_ctx = uq;
	q->attempts = 0;

	uq->out_len = q->wire_len;
	memcpy(uq->out + 2, q->wire, q->wire_len);
	gw_dns_put16(uq->out, (uint16_t)q->wire_len);
	if (q->wire_len > GW_DNS_MAX_MSG ||
	    gw_dns_parse(uq->out + 2, uq->out_len, &uq->sent) < 0 ||
	    uq->sent.qdcount != 1) {
		/* The pipeline checked the query; this is a bug, not input. */
		defer_fail(uq, GW_DNS_EDE_OTHER, "bad upstream query");
		return;
	}
	next_attempt(uq);
}

void gw_up_pool_cancel(gw_up_pool_t *p, gw_query_t *q)
{
	gw_up_query_t *uq = q->up_ctx;

	if (!uq)
		return;
	if (q->up_ctx == (void *)&p->oom_marker) {
		for (unsigned i = 0; i < p->n_oom; i++) {
			if (p->oom[i] == q) {
				memmove(p->oom + i, p->oom + i + 1,
					(p->n_oom - i - 1) * sizeof(p->oom[0]));
				p->n_oom--;
				p->inflight--;
				break;
			}
		}
		q->up_ctx = NULL;
		return;
	}
	gw_up_debug(uq, "query cancelled", NULL);
	report(uq, GW_UP_ABANDON);
	detach(uq);
	uq_free(uq);
}

gw_up_pool_t *gw_up_pool_new(struct ev_loop *loop, const gw_conf_t *conf,
			     char *err, size_t errlen)
{
	gw_up_pool_t *p;

	for (unsigned i = 0; i < conf->n_upstream; i++) {
		const gw_endpoint_t *ep = &conf->upstream[i];
		if (ep->proto != GW_PROTO_UDP && ep->proto != GW_PROTO_TCP) {
			snprintf(err, errlen,
				 "%s: upstream protocol not supported yet",
				 ep->url);
			return NULL;
		}
		if (ep->addrlen == 0) {
			snprintf(err, errlen,
				 "%s: upstream host must be an IP address",
				 ep->url);
			return NULL;
		}
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->conf = conf;
	p->ops.answer = gw_query_answer;
	p->ops.fail = gw_query_fail;
	gw_up_sel_init(&p->sel, conf->n_upstream, GW_UP_FALL);
	gw_up_rng_init(&p->rng);
	gw_up_ids_init(&p->ids);
	ev_timer_init(&p->oom_timer, on_oom_timer, 0., 0.);
	p->oom_timer.data = p;
	return p;
}

void gw_up_pool_free(gw_up_pool_t *p)
{
	if (!p)
		return;
	/* Pop from the head each time: a fail callback may cancel others. */
	while (p->head) {
		gw_up_query_t *uq = p->head;
		gw_query_t *q;

		report(uq, GW_UP_ABANDON);
		q = detach(uq);
		uq_free(uq);
		p->ops.fail(q, GW_DNS_EDE_OTHER, "gateway shutting down");
	}
	while (p->n_oom > 0) {
		gw_query_t *q = p->oom[--p->n_oom];
		p->inflight--;
		q->up_ctx = NULL;
		p->ops.fail(q, GW_DNS_EDE_OTHER, "gateway shutting down");
	}
	ev_timer_stop(p->loop, &p->oom_timer);
	free(p);
}
