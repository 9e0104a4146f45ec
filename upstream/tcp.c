/*
 * tcp.c - pooled, pipelined stream connections to upstreams: classic DNS
 * over TCP (RFC 7766, RFC 1035 4.2.2: 2-byte length prefix) and over TLS
 * (RFC 7858), used for tcp:// and tls:// upstreams and for the TCP leg of a
 * UDP answer that came back with TC=1.
 *
 * Per worker and per upstream a bounded set of connections (at most
 * upstream.max_conns_per_upstream). A query goes on the first connection
 * with room (upstream.max_inflight_per_conn slots, IDs from that
 * connection's pending table, pending.h); a new connection is opened only
 * when every open one is full (RFC 7766 6.2.1: pipelining, reuse). Answers
 * are matched by ID and question in any order (RFC 7766 6.2.1.1).
 *
 * Lifecycle of a connection:
 *   CONNECTING -> (TLS: HANDSHAKE ->) OPEN -> closed
 * Queries queued while connecting are written once it is OPEN (for TLS
 * once the peer is authenticated - nothing ever goes out in cleartext).
 * A connection is retired (takes no new queries, closes when its last live
 * query ends) after upstream.max_queries_per_conn queries, when half its
 * slots are orphans (queries that timed out or were cancelled), or when a
 * query times out and no complete answer arrived on it since that query was
 * sent (blackholed or dripping upstream). An OPEN connection with no live
 * query closes after upstream.idle_timeout_ms (RFC 7766 6.2.3).
 *
 * A failed connect or handshake is reported once to the pool's health
 * (gw_up_pool_conn_report) and starts a per-upstream reconnect backoff
 * (100 ms doubling to 10 s, reset by a connection that comes up); while it
 * runs, queries are not queued for that upstream (GW_EAGAIN) except a health
 * trial. Queries on a connection that dies are handed back to the pool with
 * gw_up_attempt_reissue(): sent again once, elsewhere if possible.
 *
 * The per-upstream list, limits, wait queue, backoff, metrics and the
 * deferred free are the shared bookkeeping of connset.h; this file is the
 * TCP/TLS framing on top. Memory: a connection is freed only from its own
 * timer callback (dead flag plus a 0 s timer), so no handler ever runs on
 * freed memory however deep the call chain that decided to close it.
 * Writes from gw_up_tcp_start()
 * never fail the connection synchronously (errors surface in the I/O
 * handler), so answering a query may safely queue new ones.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attempt.h"
#include "connset.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "pending.h"
#include "tls_client.h"

/* Idle limit of the TCP connections of a udp:// upstream: they only carry
 * the rare retry of a truncated answer, so they do not linger. */
#define TC_IDLE 1.0
/* Plaintext read but not yet framed: at most one partial frame is kept
 * between reads, plus one read's worth. */
#define RD_MAX (2 * (2 + GW_DNS_MAX_MSG))
/* Plaintext queued per connection, and TLS ciphertext buffered. */
#define WBUF_MAX (4u << 20)
#define TLS_OUT_MAX (4u << 20)
/* Plaintext encrypted per gw_up_tls_write() call. */
#define TLS_CHUNK 16384

typedef struct gw_up_conn {
	gw_up_cbase_t b; /* first: list, state, watchers (connset.h) */
	gw_up_pend_t pend;
	gw_buf_t wbuf; /* plaintext frames not yet sent (or encrypted) */
	gw_buf_t rd;   /* plaintext read, framed answers */
	gw_up_tls_t *tls;
	double last_frame; /* when the last answer of ours arrived, 0 never */
} gw_up_conn_t;

struct gw_up_conns {
	gw_up_cset_t set; /* first: per-upstream lists, limits */
	gw_up_tls_ctx_t *tls;
};

static const gw_up_cset_ops_t tcp_ops;

static gw_up_conn_t *conn_of(gw_up_cbase_t *b)
{
	return (gw_up_conn_t *)b;
}

static bool is_tls(const gw_up_conns_t *cs, unsigned up)
{
	return cs->set.conf->upstream[up].proto == GW_PROTO_DOT;
}

gw_up_conns_t *gw_up_conns_new(gw_up_pool_t *p, char *err, size_t errlen)
{
	const gw_conf_t *conf = gw_up_pool_conf(p);
	gw_up_conns_t *cs = calloc(1, sizeof(*cs));
	bool any_tls = false, need_ca = false;

	if (!cs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* IDs come from a 16-bit space per connection (pending.h). */
	gw_up_cset_init(&cs->set, p, &tcp_ops, 65535);
	for (unsigned i = 0; i < conf->n_upstream; i++) {
		if (conf->upstream[i].proto == GW_PROTO_UDP &&
		    cs->set.up[i].idle > TC_IDLE)
			cs->set.up[i].idle = TC_IDLE;
		if (conf->upstream[i].proto != GW_PROTO_DOT)
			continue;
		any_tls = true;
		if (!conf->up.pin[i][0])
			need_ca = true;
	}
	if (any_tls) {
		cs->tls = gw_up_tls_ctx_new(conf->up.ca_file, need_ca, err,
					    errlen);
		if (!cs->tls) {
			free(cs);
			return NULL;
		}
	}
	return cs;
}

/* Frees c's memory; c must be unwatched and out of every list. */
static void conn_destroy(gw_up_cbase_t *b)
{
	gw_up_conn_t *c = conn_of(b);

	gw_up_pend_deinit(&c->pend);
	gw_buf_deinit(&c->wbuf);
	gw_buf_deinit(&c->rd);
	gw_up_tls_free(c->tls);
	free(c);
}

void gw_up_conns_free(gw_up_conns_t *cs)
{
	if (!cs)
		return;
	gw_up_cset_deinit(&cs->set);
	gw_up_tls_ctx_free(cs->tls);
	free(cs);
}

static unsigned conn_live(const gw_up_cbase_t *b)
{
	return ((const gw_up_conn_t *)b)->pend.live;
}

static bool conn_room(const gw_up_cbase_t *b)
{
	return !gw_up_pend_full(&((const gw_up_conn_t *)b)->pend);
}

/* Reconsiders c after its set of live queries shrank. */
static void conn_check(gw_up_conn_t *c)
{
	if (!c->b.dead && c->pend.orphans > c->pend.max / 2)
		c->b.retiring = true;
	gw_up_cbase_check(&c->b);
}

static void conn_retire(gw_up_cbase_t *b)
{
	gw_log(GW_LOG_DEBUG, "upstream", "connection retired", "upstream",
	       gw_up_cbase_url(b), NULL);
	gw_up_cbase_kill(b);
}

/* --- writing ------------------------------------------------------------------ */

/* Sends what is queued. 0, or a negative error (the caller fails c). */
static int conn_flush(gw_up_conn_t *c)
{
	gw_buf_t *src = &c->wbuf;

	if (c->b.dead || c->b.state == GW_UPC_CONNECTING)
		return 0;
	if (c->tls) {
		src = gw_up_tls_out(c->tls);
		/* Queries go into TLS only once the peer is authenticated. */
		while (c->b.state == GW_UPC_OPEN && gw_buf_size(&c->wbuf) > 0) {
			size_t n = gw_buf_size(&c->wbuf);
			int r;
			if (n > TLS_CHUNK)
				n = TLS_CHUNK;
			r = gw_up_tls_write(c->tls, gw_buf_head(&c->wbuf), n);
			if (r == GW_ETOOBIG)
				break; /* wait until ciphertext drains */
			if (r < 0)
				return r;
			gw_buf_consume(&c->wbuf, n);
		}
		gw_buf_shrink(&c->wbuf);
	}
	while (gw_buf_size(src) > 0) {
		ssize_t n = send(c->b.fd, gw_buf_head(src), gw_buf_size(src),
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		gw_buf_consume(src, (size_t)n);
	}
	gw_buf_shrink(src);
	gw_up_cbase_watch(&c->b,
			  EV_READ | (gw_buf_size(src) > 0 ||
						 (c->tls &&
						  gw_buf_size(&c->wbuf) > 0 &&
						  c->b.state == GW_UPC_OPEN)
					 ? EV_WRITE
					 : 0));
	return 0;
}

/* --- the connection comes up --------------------------------------------------- */

static void conn_opened(gw_up_conn_t *c)
{
	/* No health verdict: a blackhole accepts connections too. Answers
	 * (and the trial query's answer) speak for the upstream. */
	gw_up_cbase_opened(&c->b, c->tls && gw_up_tls_resumed(c->tls),
			   c->tls ? (gw_up_tls_resumed(c->tls) ? "tls resumed"
							       : "tls")
				  : "tcp");
	if (c->pend.live == 0)
		conn_check(c);
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents);

static gw_up_cbase_t *conn_new(gw_up_cset_t *s, unsigned up, bool trial,
			       int *err)
{
	gw_up_conns_t *cs = (gw_up_conns_t *)s;
	const gw_endpoint_t *ep = &s->conf->upstream[up];
	gw_up_conn_t *c;
	const struct sockaddr *sa;
	socklen_t salen;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = GW_ENOMEM;
		return NULL;
	}
	gw_up_cbase_init(&c->b, s, up, trial);
	gw_buf_init(&c->wbuf, WBUF_MAX);
	gw_buf_init(&c->rd, RD_MAX);
	if ((r = gw_up_pend_init(&c->pend, s->lim.max_inflight)) < 0)
		goto fail;
	if (is_tls(cs, up)) {
		c->tls = gw_up_tls_new(cs->tls, ep->tls_name, s->conf->up.pin[up],
				       c->b.g->session, TLS_OUT_MAX);
		if (!c->tls) {
			r = GW_ETLS;
			goto fail;
		}
	}
	/* the URL's address, or a bootstrap-resolved one (tls://NAME) */
	sa = gw_up_pool_addr(s->pool, up, &salen);
	if (!sa) {
		r = GW_EAGAIN;
		goto fail;
	}
	c->b.fd = gw_up_connect_stream(sa, salen);
	if (c->b.fd < 0) {
		r = c->b.fd;
		goto fail;
	}
	/* Connect plus handshake get one attempt timeout. */
	gw_up_cbase_open(&c->b, conn_io, EV_WRITE, gw_up_pool_timeout(s->pool));
	return &c->b;
fail:
	gw_up_cbase_discard(&c->b);
	*err = r;
	return NULL;
}

static const char *conn_why(gw_up_cbase_t *b, int err)
{
	gw_up_conn_t *c = conn_of(b);

	(void)err;
	return c->tls ? gw_up_tls_error(c->tls) : "";
}

/* c died: hand every live query back to the pool. */
static void conn_reissue(gw_up_cbase_t *b, int err)
{
	gw_up_conn_t *c = conn_of(b);
	gw_up_query_t *uq;
	uint16_t id;

	while ((uq = gw_up_pend_pop_live(&c->pend, &id)) != NULL) {
		uq->conn = NULL;
		gw_up_attempt_reissue(uq, err);
	}
}

static void conn_fail(gw_up_conn_t *c, int err)
{
	gw_up_cbase_fail(&c->b, err);
}

/* --- reading ------------------------------------------------------------------ */

/* Handles the complete frames in c->rd. Returns false when c died. */
static bool conn_frames(gw_up_conn_t *c)
{
	gw_buf_t *b = &c->rd;
	gw_up_metrics_t *m = gw_up_cbase_metrics(&c->b);

	/* Every complete frame now: the watcher is on the socket, not on
	 * this buffer, so a frame left here could wait forever. */
	for (;;) {
		size_t have = gw_buf_size(b), len;
		const uint8_t *msg;
		gw_up_query_t *uq;
		uint16_t id;

		if (have < 2)
			break;
		len = gw_dns_get16(gw_buf_head(b));
		if (have < 2 + len)
			break;
		msg = gw_buf_head(b) + 2;
		if (len < GW_DNS_HEADER_LEN) {
			m->ignored++;
			gw_buf_consume(b, 2 + len);
			continue;
		}
		id = gw_dns_get16(msg);
		uq = gw_up_pend_get(&c->pend, id);
		if (!uq) {
			/* A late answer to an orphan frees its ID; anything
			 * else is junk. Either way nobody gets it. */
			if (gw_up_pend_busy(&c->pend, id)) {
				gw_up_pend_remove(&c->pend, id);
				c->last_frame = gw_up_now(); /* alive */
			} else
				m->ignored++;
			gw_buf_consume(b, 2 + len);
			continue;
		}
		if (gw_up_check_answer(&uq->sent, msg, len, false, NULL) !=
		    GW_UP_ANSWER) {
			/* Our ID but not our question: never hand it over
			 * (no misrouting); the query waits for its timeout. */
			m->ignored++;
			gw_up_debug(uq, "answer ignored", "wrong question");
			gw_buf_consume(b, 2 + len);
			continue;
		}
		gw_up_pend_remove(&c->pend, id);
		uq->conn = NULL;
		c->last_frame = gw_up_now();
		if (c->tls && !c->b.saved_session) {
			/* TLS 1.3 tickets arrive after the handshake: by the
			 * first answer the ticket is in (RFC 8446 4.6.1). */
			gw_up_tls_session_t *s = gw_up_tls_session(c->tls);
			if (s) {
				gw_up_cgroup_keep_session(c->b.g, s);
				c->b.saved_session = true;
			}
		}
		/* msg stays valid: only this handler touches c->rd. */
		gw_up_attempt_answer(uq, msg, len);
		gw_buf_consume(b, 2 + len);
		if (c->b.dead)
			return false;
	}
	gw_buf_shrink(b);
	conn_check(c);
	gw_up_cgroup_drain(c->b.g);
	return !c->b.dead;
}

/* Reads what the socket has. Returns false when c died. */
static bool conn_read(gw_up_conn_t *c)
{
	uint8_t *buf = gw_up_pool_rbuf(c->b.g->set->pool);

	for (int rounds = 0; rounds < 8; rounds++) {
		ssize_t n = gw_up_cbase_recv(&c->b, buf, GW_DNS_MAX_MSG);
		if (n <= 0)
			return n == 0;
		if (c->tls) {
			int r = gw_up_tls_feed(c->tls, buf, (size_t)n);
			if (r < 0) {
				conn_fail(c, r);
				return false;
			}
			for (;;) {
				ssize_t m;
				if (gw_buf_reserve(&c->rd, 16384) < 0) {
					/* A frame larger than any message:
					 * the stream is broken. */
					conn_fail(c, GW_EMALFORMED);
					return false;
				}
				m = gw_up_tls_read(c->tls, gw_buf_tail(&c->rd),
						   gw_buf_room(&c->rd));
				if (gw_up_tls_handshake_done(c->tls) &&
				    c->b.state == GW_UPC_HANDSHAKE)
					conn_opened(c);
				if (m == 0)
					break;
				if (m < 0) {
					conn_fail(c, (int)m);
					return false;
				}
				c->rd.len += (size_t)m;
				if (gw_buf_size(&c->rd) >= 2 &&
				    !conn_frames(c))
					return false;
			}
			/* Handshake flights, tickets, KeyUpdate answers. */
			if ((r = conn_flush(c)) < 0) {
				conn_fail(c, r);
				return false;
			}
		} else {
			if (gw_buf_append(&c->rd, buf, (size_t)n) < 0) {
				conn_fail(c, GW_EMALFORMED);
				return false;
			}
			if (!conn_frames(c))
				return false;
		}
		if (c->b.dead)
			return false;
	}
	return true;
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	gw_up_conn_t *c = w->data;
	int r;

	(void)loop;
	if (c->b.dead)
		return;
	if (c->b.state == GW_UPC_CONNECTING) {
		if (!gw_up_cbase_connected(&c->b, revents))
			return;
		if (c->tls) {
			uint8_t dummy[1];
			ssize_t m;
			c->b.state = GW_UPC_HANDSHAKE;
			/* Produces the ClientHello. */
			m = gw_up_tls_read(c->tls, dummy, sizeof(dummy));
			if (m < 0) {
				conn_fail(c, (int)m);
				return;
			}
		} else {
			conn_opened(c);
		}
		if ((r = conn_flush(c)) < 0)
			conn_fail(c, r);
		return;
	}
	if (revents & EV_READ) {
		if (!conn_read(c))
			return;
	}
	if (revents & EV_WRITE) {
		if ((r = conn_flush(c)) < 0)
			conn_fail(c, r);
	}
}

/* The connect/handshake deadline, or the idle close. */
static void conn_timeout(gw_up_cbase_t *b)
{
	gw_up_conn_t *c = conn_of(b);

	if (c->b.state != GW_UPC_OPEN) {
		conn_fail(c, GW_ETIMEDOUT);
		return;
	}
	if (c->pend.live == 0) {
		/* Idle: close politely (close_notify for TLS, then FIN). */
		gw_up_debug_conn(c->b.g->set->pool, c->b.up, "connection idle",
				 NULL);
		if (c->tls) {
			gw_up_tls_close(c->tls);
			(void)conn_flush(c);
		}
		gw_up_cbase_kill(&c->b);
	}
}

/* --- the seam ------------------------------------------------------------------ */

/* Puts uq on c: an ID from c's table, the frame in c's queue. */
static int assign(gw_up_cbase_t *b, gw_up_query_t *uq)
{
	gw_up_conn_t *c = conn_of(b);
	int id, r;

	id = gw_up_pend_add(&c->pend, gw_up_pool_rng(uq->pool), uq);
	if (id < 0)
		return id;
	gw_dns_put16(uq->out + 2, (uint16_t)id);
	uq->sent.id = (uint16_t)id;
	uq->id = (uint16_t)id;
	if ((r = gw_buf_append(&c->wbuf, uq->out, uq->out_len + 2)) < 0) {
		gw_up_pend_remove(&c->pend, (uint16_t)id);
		conn_check(c);
		return r;
	}
	uq->conn = c;
	gw_up_cbase_count_query(&c->b);
	if (c->b.state == GW_UPC_OPEN) {
		/* not idle any more */
		ev_timer_stop(c->b.g->set->loop, &c->b.timer);
		/* Errors surface in the I/O handler, never here. */
		if (conn_flush(c) < 0)
			gw_up_cbase_watch(&c->b, EV_READ | EV_WRITE);
	}
	return 0;
}

static const gw_up_cset_ops_t tcp_ops = {
	.live = conn_live,
	.room = conn_room,
	.connect = conn_new,
	.assign = assign,
	.destroy = conn_destroy,
	.timeout = conn_timeout,
	.retire = conn_retire,
	.reissue = conn_reissue,
	.why = conn_why,
	.handshake_failed = "upstream tls handshake failed",
};

int gw_up_tcp_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	(void)ep;
	return gw_up_cset_start(&gw_up_pool_conns(uq->pool)->set, uq, NULL);
}

void gw_up_tcp_stop(gw_up_query_t *uq)
{
	gw_up_conns_t *cs = gw_up_pool_conns(uq->pool);
	gw_up_conn_t *c = uq->conn;

	if (gw_up_cset_unwait(cs ? &cs->set : NULL, uq))
		return;
	if (!c)
		return;
	uq->conn = NULL;
	/* Written (or about to be): the upstream may still answer, so the ID
	 * stays taken until it does or the connection closes. */
	gw_up_pend_orphan(&c->pend, uq->id);
	/* Timed out and nothing complete arrived since it was sent: the
	 * connection is blackholed or dripping, not merely slow for one name. */
	if (uq->err == GW_ETIMEDOUT && c->last_frame <= uq->t_sent)
		c->b.retiring = true;
	conn_check(c);
}

/* --- for tests and metrics ------------------------------------------------------ */

unsigned gw_up_conns_open(const gw_up_conns_t *cs, unsigned up)
{
	return gw_up_cset_open_count(&cs->set, up);
}

int gw_up_connect_stream(const struct sockaddr *sa, socklen_t salen)
{
	int one = 1;
	int fd = socket(sa->sa_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}
