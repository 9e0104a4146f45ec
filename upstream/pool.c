/*
 * pool.c - I/O glue of the upstream pool: one per worker, no locks.
 * Decisions (which upstream, health, IDs, matching) live in select.c; this
 * file wires them to libev timers and the protocol modules. See
 * docs/upstream.md.
 */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
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
/* Per-client waiting counters: hashed buckets (a collision makes two
 * clients share one bound, which only errs on the strict side). */
#define CLIENT_BUCKETS 4096
#define PROBE_WIRE 300

struct gw_up_pool {
	struct ev_loop *loop;
	const gw_conf_t *conf;
	gw_up_result_ops_t ops;
	gw_up_sel_t sel;
	gw_up_rng_t rng;
	gw_up_query_t *head;
	unsigned inflight; /* pending gw_up_query_t plus oom[] entries */
	gw_up_conns_t *conns; /* pooled TCP/TLS connections (tcp.c) */
	gw_up_https_t *https; /* DoH upstream connections (https.c) */
	gw_up_quic_t *quic;   /* DoQ upstream connections (quic.c) */
	gw_up_boot_t *boot;   /* host names resolved (bootstrap.c) */
	gw_up_udps_t *udps;   /* shared UDP sockets, made on first use (udp.c) */
	gw_up_metrics_t m[GW_CONF_MAX_UPSTREAM];

	uint64_t client_key; /* hash key: clients cannot aim at a bucket */
	uint32_t client_waiting[CLIENT_BUCKETS];

	/* active health probes, one in flight per upstream at most */
	ev_timer probe_timer[GW_CONF_MAX_UPSTREAM];
	gw_query_t probe_q[GW_CONF_MAX_UPSTREAM];
	uint8_t probe_wire[GW_CONF_MAX_UPSTREAM][PROBE_WIRE];
	bool probe_busy[GW_CONF_MAX_UPSTREAM];

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
gw_up_rng_t *gw_up_pool_rng(gw_up_pool_t *p) { return &p->rng; }
gw_up_conns_t *gw_up_pool_conns(const gw_up_pool_t *p) { return p->conns; }
gw_up_https_t *gw_up_pool_https(const gw_up_pool_t *p) { return p->https; }
gw_up_quic_t *gw_up_pool_quic(const gw_up_pool_t *p) { return p->quic; }
gw_up_udps_t **gw_up_pool_udps(gw_up_pool_t *p) { return &p->udps; }

const struct sockaddr *gw_up_pool_addr(gw_up_pool_t *p, unsigned i,
				       socklen_t *len)
{
	const gw_endpoint_t *ep = &p->conf->upstream[i];

	if (ep->addrlen) {
		*len = ep->addrlen;
		return (const struct sockaddr *)&ep->addr;
	}
	return gw_up_boot_addr(p->boot, i, len);
}

const unsigned gw_up_lat_bounds_ms[GW_UP_LAT_BUCKETS - 1] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000,
};

gw_up_metrics_t *gw_up_pool_metrics_w(gw_up_pool_t *p, unsigned i)
{
	/* Out-of-range writes land in a scratch entry, never out of bounds. */
	static _Thread_local gw_up_metrics_t scratch;
	return i < GW_CONF_MAX_UPSTREAM ? &p->m[i] : &scratch;
}

int gw_up_pool_metrics(const gw_up_pool_t *p, unsigned i,
		       gw_up_metrics_t *out)
{
	if (i >= p->conf->n_upstream)
		return GW_EINVAL;
	_Static_assert(offsetof(gw_up_metrics_t, conns_open) %
				       sizeof(uint64_t) == 0,
		       "uint64_t counters come first");
	_Static_assert(offsetof(gw_up_metrics_t, queries) == 0, "first");
	/* Relaxed word-by-word loads: the admin thread reads while the
	 * worker writes (see upstream.h); a struct copy could tear. */
	const gw_up_metrics_t *m = &p->m[i];
	const uint64_t *src = (const uint64_t *)(const void *)m;
	uint64_t *dst = (uint64_t *)(void *)out;
	size_t nw = offsetof(gw_up_metrics_t, conns_open) / sizeof(uint64_t);
	for (size_t k = 0; k < nw; k++)
		dst[k] = __atomic_load_n(&src[k], __ATOMIC_RELAXED);
	out->conns_open = __atomic_load_n(&m->conns_open, __ATOMIC_RELAXED);
	out->inflight = __atomic_load_n(&m->inflight, __ATOMIC_RELAXED);
	out->down = __atomic_load_n(&p->sel.h[i].down, __ATOMIC_RELAXED);
	return 0;
}

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
double gw_up_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned max_attempts(const gw_up_pool_t *p)
{
	/* (probes: one attempt; see gw_up_attempt_error) */
	return p->conf->up.attempts ? p->conf->up.attempts : 1;
}

double gw_up_pool_timeout(const gw_up_pool_t *p)
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
	       "attempt", att, "proto", gw_proto_scheme(uq->proto, true),
	       "detail", detail ? detail : "-", NULL);
}

void gw_up_debug_conn(gw_up_pool_t *p, unsigned i, const char *msg,
		      const char *detail)
{
	if (gw_log_level() < GW_LOG_DEBUG || i >= p->conf->n_upstream)
		return;
	gw_log(GW_LOG_DEBUG, "upstream", msg, "upstream",
	       p->conf->upstream[i].url, "detail", detail ? detail : "-",
	       NULL);
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

void gw_up_pool_conn_report(gw_up_pool_t *p, unsigned i, bool trial,
			    gw_up_outcome_t o)
{
	if (i >= p->sel.n)
		return;
	log_change(p, (int)i, gw_up_sel_verdict(&p->sel, i, trial, o,
						gw_up_now()));
}

static void report(gw_up_query_t *uq, gw_up_outcome_t o)
{
	gw_up_pool_t *p = uq->pool;

	if (!uq->picked)
		return;
	uq->picked = false;
	log_change(p, uq->up,
		   gw_up_sel_report(&p->sel, (unsigned)uq->up, uq->trial, o,
				    gw_up_now()));
	uq->trial = false;
}

/* Stops whatever runs for uq; leaves the ID and the pick alone. */
static void stop_io(gw_up_query_t *uq)
{
	ev_timer_stop(uq->pool->loop, &uq->timer);
	if (uq->counted) {
		uq->counted = false;
		uq->pool->m[uq->up].inflight--;
	}
	gw_up_udp_stop(uq);
	gw_up_tcp_stop(uq);
	gw_up_https_stop(uq);
	gw_up_quic_stop(uq);
}

/* Takes uq off the pool and the query; afterwards only uq's memory is left. */
static gw_query_t *detach(gw_up_query_t *uq)
{
	gw_up_pool_t *p = uq->pool;
	gw_query_t *q = uq->q;

	stop_io(uq);
	if (uq->prev)
		uq->prev->next = uq->next;
	else
		p->head = uq->next;
	if (uq->next)
		uq->next->prev = uq->prev;
	if (uq->probe_up < 0)
		p->inflight--;
	if (uq->client_bucket >= 0)
		p->client_waiting[uq->client_bucket]--;
	q->up_ctx = NULL;
	return q;
}

static void uq_free(gw_up_query_t *uq)
{
	free(uq->out);
	free(uq);
}

static void probe_done(gw_up_pool_t *p, unsigned i, bool ok);

static void finish_fail(gw_up_query_t *uq, int ede, const char *text)
{
	gw_up_pool_t *p = uq->pool;
	gw_query_t *q;
	int probe = uq->probe_up;

	report(uq, GW_UP_ABANDON);
	gw_up_debug(uq, "query failed", text);
	q = detach(uq);
	uq_free(uq);
	if (probe >= 0)
		probe_done(p, (unsigned)probe, false);
	else
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
	uq->err = 0;
	uq->t_sent = gw_up_now();
	if (uq->proto == GW_PROTO_UDP)
		r = gw_up_udp_start(uq, ep);
	else if (uq->proto == GW_PROTO_DOH)
		r = gw_up_https_start(uq, ep);
	else if (uq->proto == GW_PROTO_DOQ)
		r = gw_up_quic_start(uq, ep);
	else
		r = gw_up_tcp_start(uq, ep);
	ev_timer_stop(p->loop, &uq->timer);
	if (r >= 0) {
		p->m[uq->up].queries++;
		p->m[uq->up].inflight++;
		uq->counted = true;
	}
	if (r < 0) {
		/* Report from the loop, never from inside gw_up_pool_send(). */
		uq->state = GW_UPQ_DEFER_ERR;
		uq->err = r;
		ev_timer_set(&uq->timer, 0., 0.);
	} else {
		ev_timer_set(&uq->timer, gw_up_pool_timeout(p), 0.);
	}
	ev_timer_start(p->loop, &uq->timer);
	gw_up_debug(uq, r < 0 ? "attempt not started" : "attempt sent",
		    r < 0 ? errname(r) : NULL);
}

static void next_attempt(gw_up_query_t *uq)
{
	gw_up_pool_t *p = uq->pool;
	bool trial;
	int idx;

	if (uq->probe_up >= 0) {
		/* A probe asks its own upstream, whatever its health, and
		 * is no pick: no verdict through report(). */
		idx = uq->probe_up;
		trial = false;
	} else {
		idx = gw_up_sel_pick(&p->sel, uq->tried, gw_up_now(), &trial);
	}
	if (idx < 0) {
		defer_fail(uq, GW_DNS_EDE_NO_REACHABLE_AUTHORITY,
			   "all upstreams down");
		return;
	}
	uq->up = idx;
	uq->trial = trial;
	uq->picked = uq->probe_up < 0;
	uq->proto = p->conf->upstream[idx].proto;

	/* A fresh random ID per attempt (RFC 5452 9.2): each protocol
	 * module draws it from the socket or connection it uses (udp.c,
	 * tcp.c) and writes it into our copy; q->wire stays the pipeline's. */
	uq->tried |= 1u << idx;
	uq->q->attempts++;
	start_proto(uq);
}

void gw_up_attempt_error(gw_up_query_t *uq, int err)
{
	gw_up_pool_t *p = uq->pool;

	uq->err = err; /* before stop_io: tcp.c looks at timeouts */
	stop_io(uq);
	gw_up_debug(uq, "attempt failed", errname(err));
	if (err == GW_ETIMEDOUT) {
		p->m[uq->up].timeouts++;
		uq->timed_out = true;
	}
	else
		p->m[uq->up].errors++;
	/* Running out of fds or memory here says nothing about the upstream:
	 * fd exhaustion must not take every upstream down. Neither does a
	 * full connection pool (GW_ENOSPC) or the reconnect backoff
	 * (GW_EAGAIN: the failed connect was reported once already). */
	if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS ||
	    err == GW_ENOMEM || err == GW_ENOSPC || err == GW_EAGAIN)
		report(uq, GW_UP_ABANDON);
	else
		report(uq, GW_UP_FAIL);
	if (uq->q->attempts < max_attempts(p) && uq->probe_up < 0) {
		next_attempt(uq);
		return;
	}
	if (err == GW_ETIMEDOUT || uq->timed_out)
		finish_fail(uq, GW_DNS_EDE_NO_REACHABLE_AUTHORITY,
			    "upstream timeout");
	else
		finish_fail(uq, GW_DNS_EDE_NETWORK_ERROR,
			    "upstream network error");
}

void gw_up_attempt_reissue(gw_up_query_t *uq, int err)
{
	uq->err = err;
	stop_io(uq);
	uq->pool->m[uq->up].errors++;
	if (err == GW_ETIMEDOUT)
		uq->timed_out = true; /* connect or handshake timed out */
	report(uq, GW_UP_ABANDON);
	if (!uq->reissued) {
		/* The query did nothing wrong: one more go, not counted as an
		 * attempt; next_attempt() prefers an untried upstream. */
		uq->reissued = true;
		gw_up_debug(uq, "connection lost, resending", errname(err));
		uq->q->attempts--;
		next_attempt(uq);
		return;
	}
	gw_up_debug(uq, "connection lost again", errname(err));
	if (uq->q->attempts < max_attempts(uq->pool)) {
		next_attempt(uq);
		return;
	}
	if (uq->timed_out)
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

	gw_up_metrics_t *m = &p->m[uq->up];
	double ms = (gw_up_now() - uq->t_sent) * 1000.0;
	unsigned k = 0;
	int probe = uq->probe_up;

	gw_up_debug(uq, "answer", NULL);
	m->answers[len >= 4 ? msg[3] & 0x0f : 0]++;
	while (k < GW_UP_LAT_BUCKETS - 1 && ms > gw_up_lat_bounds_ms[k])
		k++;
	m->latency[k]++;
	m->latency_sum_us += (uint64_t)(ms * 1000.0);
	gw_up_sel_rtt(&p->sel, (unsigned)uq->up, ms / 1000.0);
	report(uq, GW_UP_OK);
	q = detach(uq);
	if (probe >= 0) {
		/* Reachable and resolving: NOERROR or NXDOMAIN. */
		int rc = len >= 4 ? msg[3] & 0x0f : GW_DNS_SERVFAIL;
		uq_free(uq);
		probe_done(p, (unsigned)probe, rc == 0 || rc == 3);
		return;
	}
	/* msg may live in a connection's buffer; uq is ours to free. */
	q->upstream = p->conf->upstream[uq->up].url; /* for the query log */
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
	case GW_UPQ_DEFER_REFUSE: {
		gw_up_pool_t *p = uq->pool;
		gw_query_t *q = detach(uq);
		uq_free(uq);
		if (p->ops.refuse)
			p->ops.refuse(q);
		else
			p->ops.fail(q, GW_DNS_EDE_OTHER, "too many queries waiting");
		break;
	}
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
	q->up_pool = p;
	if (!ev_is_active(&p->oom_timer))
		ev_timer_start(p->loop, &p->oom_timer);
}

/* The client's bucket of waiting counters; -1 when q has no address. */
static int client_bucket(const gw_up_pool_t *p, const gw_query_t *q)
{
	const struct sockaddr_storage *a = &q->client_addr;
	const uint8_t *b;
	size_t n;
	uint64_t h = p->client_key;

	if (a->ss_family == AF_INET) {
		b = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;
		n = 4;
	} else if (a->ss_family == AF_INET6) {
		b = (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
		n = 16;
	} else {
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL; /* FNV-1a, keyed */
	return (int)((h ^ (h >> 29)) % CLIENT_BUCKETS);
}

static void start_query(gw_up_pool_t *p, gw_query_t *q, int probe_up);

void gw_up_pool_send(gw_up_pool_t *p, gw_query_t *q)
{
	start_query(p, q, -1);
}

static void start_query(gw_up_pool_t *p, gw_query_t *q, int probe_up)
{
	gw_up_query_t *uq = calloc(1, sizeof(*uq));
	uint32_t max_wait = p->conf->limits.max_waiting_per_client;

	if (uq)
		uq->out = malloc(q->wire_len + 2);
	if (!uq || !uq->out) {
		free(uq);
		fail_oom(p, q);
		return;
	}
	uq->pool = p;
	uq->q = q;
	q->up_pool = p; /* cancel must reach this pool, even once retired */
	uq->up = -1;
	uq->probe_up = probe_up;
	uq->client_bucket = -1;
	ev_timer_init(&uq->timer, on_timer, 0., 0.);
	uq->timer.data = uq;
	uq->next = p->head;
	if (p->head)
		p->head->prev = uq;
	p->head = uq;
	if (probe_up < 0)
		p->inflight++;
	q->up_ctx = uq;
	q->attempts = 0;

	if (probe_up < 0 && (uq->client_bucket = client_bucket(p, q)) >= 0) {
		p->client_waiting[uq->client_bucket]++;
		if (max_wait && p->client_waiting[uq->client_bucket] > max_wait) {
			/* REQUIREMENTS.md "Bounded queues": past the cap an
			 * immediate REFUSED, from the next loop iteration. */
			uq->state = GW_UPQ_DEFER_REFUSE;
			ev_timer_set(&uq->timer, 0., 0.);
			ev_timer_start(p->loop, &uq->timer);
			return;
		}
	}

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

/* --- active health probes ------------------------------------------------ */

static void probe_done(gw_up_pool_t *p, unsigned i, bool ok)
{
	gw_up_metrics_t *m = &p->m[i];

	p->probe_busy[i] = false;
	if (!ok)
		m->probes_failed++;
	log_change(p, (int)i, gw_up_sel_probe(&p->sel, i, ok, gw_up_now()));
	gw_up_debug_conn(p, i, "probe", ok ? "ok" : "failed");
}

static void on_probe_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	gw_up_pool_t *p = w->data;
	unsigned i = (unsigned)(w - p->probe_timer);
	gw_query_t *q = &p->probe_q[i];
	const char *name = p->conf->up.probe_name;
	size_t n = GW_DNS_HEADER_LEN;
	uint8_t *b = p->probe_wire[i];

	(void)loop;
	(void)revents;
	if (p->probe_busy[i])
		return; /* the last one has not ended: no pile-up */
	/* Header (ID filled per attempt, RD=1, one question), then the
	 * name as labels, then type and class IN. */
	memset(b, 0, GW_DNS_HEADER_LEN);
	gw_dns_put16(b + 2, GW_DNS_RD);
	gw_dns_put16(b + 4, 1);
	while (*name && strcmp(name, ".") != 0) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		if (l == 0 || l > 63 || n + l + 1 + 5 > PROBE_WIRE)
			return;
		b[n++] = (uint8_t)l;
		memcpy(b + n, name, l);
		n += l;
		name += l;
		if (*name == '.')
			name++;
	}
	b[n++] = 0;
	gw_dns_put16(b + n, p->conf->up.probe_type);
	gw_dns_put16(b + n + 2, 1);
	n += 4;
	memset(q, 0, sizeof(*q));
	q->wire = b;
	q->wire_len = n;
	p->probe_busy[i] = true;
	p->m[i].probes_sent++;
	start_query(p, q, (int)i);
}

static void refuse_client(gw_query_t *q)
{
	gw_query_answer_local(q, GW_DNS_REFUSED, GW_DNS_EDE_OTHER,
			      "too many queries waiting");
}

gw_up_pool_t *gw_up_pool_new(struct ev_loop *loop, const gw_conf_t *conf,
			     char *err, size_t errlen)
{
	return gw_up_pool_new_seeded(loop, conf, NULL, err, errlen);
}

void gw_up_pool_seed(const gw_up_pool_t *p, gw_up_seed_t *out)
{
	gw_up_boot_seed(p->boot, out);
}

gw_up_pool_t *gw_up_pool_new_seeded(struct ev_loop *loop,
				    const gw_conf_t *conf,
				    const gw_up_seed_t *seed, char *err,
				    size_t errlen)
{
	gw_up_pool_t *p;

	for (unsigned i = 0; i < conf->n_upstream; i++) {
		const gw_endpoint_t *ep = &conf->upstream[i];
		bool tls = ep->proto == GW_PROTO_DOT ||
			   ep->proto == GW_PROTO_DOH ||
			   ep->proto == GW_PROTO_DOQ;
		if (ep->proto != GW_PROTO_UDP && ep->proto != GW_PROTO_TCP &&
		    !tls) {
			snprintf(err, errlen,
				 "%s: upstream protocol not supported",
				 ep->url);
			return NULL;
		}
		if (tls && !ep->tls_name[0] && !conf->up.pin[i][0]) {
			/* Nothing to authenticate against: refuse rather
			 * than talk to whoever answers (RFC 8310 5). */
			snprintf(err, errlen,
				 "%s: a %s:// upstream needs '#name' (or an "
				 "SPKI pin) to verify the resolver", ep->url,
				 gw_proto_scheme(ep->proto, true));
			return NULL;
		}
		if (ep->addrlen == 0 && !tls) {
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
	p->ops.refuse = refuse_client;
	gw_up_sel_init(&p->sel, conf->n_upstream, GW_UP_FALL);
	gw_up_rng_init(&p->rng);
	gw_up_sel_policy(&p->sel, conf->up.policy, conf->up.weight, &p->rng);
	p->client_key = gw_up_rng_next(&p->rng) | 1;
	gw_up_sel_probe_conf(&p->sel, conf->up.probe_rise, conf->up.probe_fall);
	ev_timer_init(&p->oom_timer, on_oom_timer, 0., 0.);
	p->oom_timer.data = p;
	err[0] = '\0';
	p->conns = gw_up_conns_new(p, err, errlen);
	if (p->conns) {
		p->https = gw_up_https_new(p, err, errlen);
		if (!err[0])
			p->quic = gw_up_quic_new(p, err, errlen);
		if (!err[0])
			p->boot = gw_up_boot_new(p, seed, err, errlen);
	}
	if (!p->conns || err[0]) {
		gw_up_boot_free(p->boot);
		gw_up_quic_free(p->quic);
		gw_up_https_free(p->https);
		gw_up_conns_free(p->conns);
		free(p);
		return NULL;
	}
	for (unsigned i = 0; i < conf->n_upstream; i++) {
		ev_timer_init(&p->probe_timer[i], on_probe_timer, 0.,
			      conf->up.probe_interval_ms / 1000.0);
		p->probe_timer[i].data = p;
		if (conf->up.probe_interval_ms) {
			/* spread the first probes over one interval */
			ev_timer_set(&p->probe_timer[i],
				     conf->up.probe_interval_ms / 1000.0 *
					     (i + 1) / conf->n_upstream,
				     conf->up.probe_interval_ms / 1000.0);
			ev_timer_start(loop, &p->probe_timer[i]);
		}
	}
	return p;
}

void gw_up_pool_retire(gw_up_pool_t *p)
{
	for (unsigned i = 0; i < p->conf->n_upstream; i++)
		ev_timer_stop(p->loop, &p->probe_timer[i]);
}

void gw_up_pool_inherit(gw_up_pool_t *p, const gw_up_pool_t *old)
{
	for (unsigned i = 0; i < p->conf->n_upstream; i++)
		for (unsigned j = 0; j < old->conf->n_upstream; j++) {
			if (strcmp(p->conf->upstream[i].url,
				   old->conf->upstream[j].url))
				continue;
			/* counters only: what is open or in flight stays
			 * with the old pool, and health is judged anew */
			gw_up_metrics_t *m = &p->m[i];
			const gw_up_metrics_t *o = &old->m[j];
			unsigned open = m->conns_open, fl = m->inflight;
			bool down = m->down;
			*m = *o;
			m->conns_open = open;
			m->inflight = fl;
			m->down = down;
			break;
		}
}

void gw_up_pool_free(gw_up_pool_t *p)
{
	if (!p)
		return;
	/* Pop from the head each time: a fail callback may cancel others. */
	for (unsigned i = 0; i < p->conf->n_upstream; i++)
		ev_timer_stop(p->loop, &p->probe_timer[i]);
	while (p->head) {
		gw_up_query_t *uq = p->head;
		gw_query_t *q;
		int probe = uq->probe_up;

		report(uq, GW_UP_ABANDON);
		q = detach(uq);
		uq_free(uq);
		if (probe < 0)
			p->ops.fail(q, GW_DNS_EDE_OTHER,
				    "gateway shutting down");
	}
	while (p->n_oom > 0) {
		gw_query_t *q = p->oom[--p->n_oom];
		p->inflight--;
		q->up_ctx = NULL;
		p->ops.fail(q, GW_DNS_EDE_OTHER, "gateway shutting down");
	}
	ev_timer_stop(p->loop, &p->oom_timer);
	gw_up_conns_free(p->conns);
	gw_up_https_free(p->https);
	gw_up_quic_free(p->quic);
	gw_up_boot_free(p->boot);
	gw_up_udps_free(p->udps);
	free(p);
}
