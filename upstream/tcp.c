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
 * Memory: a connection is freed only from its own timer callback (dead flag
 * plus a 0 s timer), so no handler ever runs on freed memory however deep
 * the call chain that decided to close it. Writes from gw_up_tcp_start()
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
#include "gateway/error.h"
#include "gateway/log.h"
#include "pending.h"
#include "tls_client.h"

#define DEF_MAX_CONNS 8
#define DEF_MAX_INFLIGHT 100
#define DEF_IDLE_MS 60000
/* Idle limit of the TCP connections of a udp:// upstream: they only carry
 * the rare retry of a truncated answer, so they do not linger. */
#define TC_IDLE 1.0
#define BACKOFF_MIN 0.1
#define BACKOFF_MAX 10.0
/* Plaintext read but not yet framed: at most one partial frame is kept
 * between reads, plus one read's worth. */
#define RD_MAX (2 * (2 + GW_DNS_MAX_MSG))
/* Plaintext queued per connection, and TLS ciphertext buffered. */
#define WBUF_MAX (4u << 20)
#define TLS_OUT_MAX (4u << 20)
/* Plaintext encrypted per gw_up_tls_write() call. */
#define TLS_CHUNK 16384

typedef enum conn_state {
	C_CONNECTING,
	C_HANDSHAKE,
	C_OPEN,
} conn_state_t;

typedef struct up_state up_state_t;

typedef struct gw_up_conn {
	gw_up_conns_t *cs;
	up_state_t *us;
	unsigned up;
	int fd;
	ev_io io;
	int io_events;
	ev_timer timer; /* connect/handshake deadline, idle, or deferred free */
	conn_state_t state;
	bool retiring; /* no new queries; closes when no live query is left */
	bool dead;     /* closed; freed from the timer */
	bool trial;    /* opened for a down upstream's health trial */
	bool saved_session;
	gw_up_pend_t pend;
	gw_buf_t wbuf; /* plaintext frames not yet sent (or encrypted) */
	gw_buf_t rd;   /* plaintext read, framed answers */
	gw_up_tls_t *tls;
	unsigned queries;
	double last_frame; /* when the last answer of ours arrived, 0 never */
	struct gw_up_conn *next, *prev;
} gw_up_conn_t;

struct up_state {
	gw_up_conns_t *cs;
	gw_up_conn_t *head;
	gw_up_query_t *wait_head, *wait_tail; /* FIFO: no connection had room */
	unsigned n_waiting;
	unsigned n_open; /* not dead */
	double backoff;  /* current reconnect backoff, 0 after success */
	double next_connect;
	gw_up_tls_session_t *session; /* last resumable TLS session */
};

struct gw_up_conns {
	gw_up_pool_t *pool;
	struct ev_loop *loop;
	const gw_conf_t *conf;
	gw_up_tls_ctx_t *tls;
	unsigned max_conns, max_inflight, max_queries, max_waiting;
	double idle;
	up_state_t up[GW_CONF_MAX_UPSTREAM];
};

static void conn_io(struct ev_loop *loop, ev_io *w, int revents);
static void drain_waiting(gw_up_conns_t *cs, up_state_t *us);
static void conn_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_fail(gw_up_conn_t *c, int err);

static bool is_tls(const gw_up_conns_t *cs, unsigned up)
{
	return cs->conf->upstream[up].proto == GW_PROTO_DOT;
}

static const char *url(const gw_up_conn_t *c)
{
	return c->cs->conf->upstream[c->up].url;
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
	cs->pool = p;
	cs->loop = gw_up_pool_loop(p);
	cs->conf = conf;
	cs->max_conns = conf->up.max_conns_per_upstream
				? conf->up.max_conns_per_upstream
				: DEF_MAX_CONNS;
	cs->max_inflight = conf->up.max_inflight_per_conn
				   ? conf->up.max_inflight_per_conn
				   : DEF_MAX_INFLIGHT;
	if (cs->max_inflight > 65535)
		cs->max_inflight = 65535;
	cs->max_queries = conf->up.max_queries_per_conn;
	for (unsigned i = 0; i < GW_CONF_MAX_UPSTREAM; i++)
		cs->up[i].cs = cs;
	cs->max_waiting = conf->up.max_waiting_per_upstream
				  ? conf->up.max_waiting_per_upstream
				  : cs->max_conns * cs->max_inflight;
	cs->idle = (conf->up.idle_timeout_ms ? conf->up.idle_timeout_ms
					     : DEF_IDLE_MS) / 1000.0;
	for (unsigned i = 0; i < conf->n_upstream; i++) {
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
static void conn_destroy(gw_up_conn_t *c)
{
	gw_up_pend_deinit(&c->pend);
	gw_buf_deinit(&c->wbuf);
	gw_buf_deinit(&c->rd);
	gw_up_tls_free(c->tls);
	free(c);
}

static void unlink_conn(gw_up_conn_t *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->us->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

void gw_up_conns_free(gw_up_conns_t *cs)
{
	if (!cs)
		return;
	for (unsigned i = 0; i < GW_CONF_MAX_UPSTREAM; i++) {
		up_state_t *us = &cs->up[i];
		while (us->head) {
			gw_up_conn_t *c = us->head;
			ev_io_stop(cs->loop, &c->io);
			ev_timer_stop(cs->loop, &c->timer);
			if (c->fd >= 0)
				close(c->fd);
			unlink_conn(c);
			conn_destroy(c);
		}
		gw_up_tls_session_free(us->session);
	}
	gw_up_tls_ctx_free(cs->tls);
	free(cs);
}

/* --- watchers and timers ----------------------------------------------------- */

static void watch(gw_up_conn_t *c, int events)
{
	if (c->io_events == events && ev_is_active(&c->io))
		return;
	ev_io_stop(c->cs->loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	c->io_events = events;
	ev_io_start(c->cs->loop, &c->io);
}

static void arm(gw_up_conn_t *c, double after)
{
	ev_timer_stop(c->cs->loop, &c->timer);
	ev_timer_set(&c->timer, after, 0.);
	ev_timer_start(c->cs->loop, &c->timer);
}

/* Marks c dead and closes its socket; the memory goes from the timer. */
static void conn_kill(gw_up_conn_t *c)
{
	gw_up_conns_t *cs = c->cs;

	if (c->dead)
		return;
	c->dead = true;
	c->us->n_open--;
	gw_up_pool_metrics_w(cs->pool, c->up)->conns_open--;
	ev_io_stop(cs->loop, &c->io);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	arm(c, 0.);
}

/* Reconsiders c after its set of live queries shrank. */
static void conn_check(gw_up_conn_t *c)
{
	if (c->dead)
		return;
	if (c->pend.orphans > c->pend.max / 2)
		c->retiring = true;
	if (c->pend.live > 0)
		return;
	if (c->retiring) {
		gw_log(GW_LOG_DEBUG, "upstream", "connection retired",
		       "upstream", url(c), NULL);
		conn_kill(c);
	} else if (c->state == C_OPEN) {
		double idle = c->cs->idle;
		if (c->cs->conf->upstream[c->up].proto == GW_PROTO_UDP &&
		    idle > TC_IDLE)
			idle = TC_IDLE;
		arm(c, idle);
	}
}

/* --- writing ------------------------------------------------------------------ */

/* Sends what is queued. 0, or a negative error (the caller fails c). */
static int conn_flush(gw_up_conn_t *c)
{
	gw_buf_t *src = &c->wbuf;

	if (c->dead || c->state == C_CONNECTING)
		return 0;
	if (c->tls) {
		src = gw_up_tls_out(c->tls);
		/* Queries go into TLS only once the peer is authenticated. */
		while (c->state == C_OPEN && gw_buf_size(&c->wbuf) > 0) {
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
		ssize_t n = send(c->fd, gw_buf_head(src), gw_buf_size(src),
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
	watch(c, EV_READ | (gw_buf_size(src) > 0 ||
				    (c->tls && gw_buf_size(&c->wbuf) > 0 &&
				     c->state == C_OPEN)
			    ? EV_WRITE
			    : 0));
	return 0;
}

/* --- the connection comes up --------------------------------------------------- */

static void conn_opened(gw_up_conn_t *c)
{
	gw_up_metrics_t *m = gw_up_pool_metrics_w(c->cs->pool, c->up);

	c->state = C_OPEN;
	c->us->backoff = 0;
	ev_timer_stop(c->cs->loop, &c->timer);
	if (c->tls && gw_up_tls_resumed(c->tls))
		m->tls_resumed++;
	/* No health verdict: a blackhole accepts connections too. Answers
	 * (and the trial query's answer) speak for the upstream. */
	c->trial = false;
	gw_up_debug_conn(c->cs->pool, c->up, "connection open",
			 c->tls ? (gw_up_tls_resumed(c->tls) ? "tls resumed"
							     : "tls")
				: "tcp");
	if (c->pend.live == 0)
		conn_check(c);
}

static gw_up_conn_t *conn_new(gw_up_conns_t *cs, unsigned up, bool trial,
			      int *err)
{
	const gw_endpoint_t *ep = &cs->conf->upstream[up];
	up_state_t *us = &cs->up[up];
	gw_up_conn_t *c;
	const struct sockaddr *sa;
	socklen_t salen;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = GW_ENOMEM;
		return NULL;
	}
	c->cs = cs;
	c->us = us;
	c->up = up;
	c->trial = trial;
	c->fd = -1;
	gw_buf_init(&c->wbuf, WBUF_MAX);
	gw_buf_init(&c->rd, RD_MAX);
	if ((r = gw_up_pend_init(&c->pend, cs->max_inflight)) < 0)
		goto fail;
	if (is_tls(cs, up)) {
		c->tls = gw_up_tls_new(cs->tls, ep->tls_name,
				       cs->conf->up.pin[up], us->session,
				       TLS_OUT_MAX);
		if (!c->tls) {
			r = GW_ETLS;
			goto fail;
		}
	}
	/* the URL's address, or a bootstrap-resolved one (tls://NAME) */
	sa = gw_up_pool_addr(cs->pool, up, &salen);
	if (!sa) {
		r = GW_EAGAIN;
		goto fail;
	}
	c->fd = gw_up_connect_stream(sa, salen);
	if (c->fd < 0) {
		r = c->fd;
		goto fail;
	}
	ev_io_init(&c->io, conn_io, c->fd, EV_WRITE);
	c->io.data = c;
	c->io_events = EV_WRITE;
	ev_io_start(cs->loop, &c->io);
	ev_timer_init(&c->timer, conn_timer, 0., 0.);
	c->timer.data = c;
	/* Connect plus handshake get one attempt timeout. */
	arm(c, gw_up_pool_timeout(cs->pool));
	c->next = us->head;
	if (us->head)
		us->head->prev = c;
	us->head = c;
	us->n_open++;
	gw_up_pool_metrics_w(cs->pool, up)->conns_opened++;
	gw_up_pool_metrics_w(cs->pool, up)->conns_open++;
	return c;
fail:
	if (c->fd >= 0)
		close(c->fd);
	conn_destroy(c);
	*err = r;
	return NULL;
}

/* A connect or handshake failed: health and backoff, once per connection. */
static void connect_failed(gw_up_conn_t *c, int err)
{
	up_state_t *us = c->us;
	gw_up_metrics_t *m = gw_up_pool_metrics_w(c->cs->pool, c->up);
	const char *why = c->tls ? gw_up_tls_error(c->tls) : "";

	m->conn_failures++;
	us->backoff = us->backoff ? us->backoff * 2 : BACKOFF_MIN;
	if (us->backoff > BACKOFF_MAX)
		us->backoff = BACKOFF_MAX;
	us->next_connect = gw_up_now() + us->backoff;
	gw_log(c->state == C_HANDSHAKE ? GW_LOG_WARN : GW_LOG_INFO, "upstream",
	       c->state == C_HANDSHAKE ? "upstream tls handshake failed"
				       : "upstream connect failed",
	       "upstream", url(c), "error",
	       *why ? why : gw_strerror(err), NULL);
	gw_up_pool_conn_report(c->cs->pool, c->up, c->trial, GW_UP_FAIL);
	c->trial = false;
}

/* c failed: close it, then hand every live query back to the pool. */
static void conn_fail(gw_up_conn_t *c, int err)
{
	uint16_t id;
	gw_up_query_t *uq;

	if (c->dead)
		return;
	if (c->state != C_OPEN)
		connect_failed(c, err);
	else
		gw_up_debug_conn(c->cs->pool, c->up, "connection lost",
				 gw_strerror(err));
	conn_kill(c);
	/* The pool may queue the reissued queries on other connections of
	 * this upstream, never on c (dead). */
	while ((uq = gw_up_pend_pop_live(&c->pend, &id)) != NULL) {
		uq->conn = NULL;
		gw_up_attempt_reissue(uq, err);
	}
	if (c->us->n_waiting)
		drain_waiting(c->cs, c->us);
}

/* --- reading ------------------------------------------------------------------ */

/* Handles the complete frames in c->rd. Returns false when c died. */
static bool conn_frames(gw_up_conn_t *c)
{
	gw_buf_t *b = &c->rd;
	gw_up_metrics_t *m = gw_up_pool_metrics_w(c->cs->pool, c->up);

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
		if (c->tls && !c->saved_session) {
			/* TLS 1.3 tickets arrive after the handshake: by the
			 * first answer the ticket is in (RFC 8446 4.6.1). */
			gw_up_tls_session_t *s = gw_up_tls_session(c->tls);
			if (s) {
				gw_up_tls_session_free(c->us->session);
				c->us->session = s;
				c->saved_session = true;
			}
		}
		/* msg stays valid: only this handler touches c->rd. */
		gw_up_attempt_answer(uq, msg, len);
		gw_buf_consume(b, 2 + len);
		if (c->dead)
			return false;
	}
	gw_buf_shrink(b);
	conn_check(c);
	if (c->us->n_waiting)
		drain_waiting(c->cs, c->us);
	return !c->dead;
}

/* Reads what the socket has. Returns false when c died. */
static bool conn_read(gw_up_conn_t *c)
{
	uint8_t *buf = gw_up_pool_rbuf(c->cs->pool);

	for (int rounds = 0; rounds < 8; rounds++) {
		ssize_t n = recv(c->fd, buf, GW_DNS_MAX_MSG, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			conn_fail(c, -errno);
			return false;
		}
		if (n == 0) {
			conn_fail(c, GW_ECLOSED);
			return false;
		}
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
				    c->state == C_HANDSHAKE)
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
		if (c->dead)
			return false;
	}
	return true;
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	gw_up_conn_t *c = w->data;
	int r;

	(void)loop;
	if (c->dead)
		return;
	if (c->state == C_CONNECTING) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (!(revents & EV_WRITE))
			return;
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			conn_fail(c, -soerr);
			return;
		}
		if (c->tls) {
			uint8_t dummy[1];
			ssize_t m;
			c->state = C_HANDSHAKE;
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

static void conn_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	gw_up_conn_t *c = w->data;

	(void)loop;
	(void)revents;
	if (c->dead) {
		up_state_t *us = c->us;
		unlink_conn(c);
		conn_destroy(c);
		if (us->n_waiting)
			drain_waiting(us->cs, us);
		return;
	}
	if (c->state != C_OPEN) {
		conn_fail(c, GW_ETIMEDOUT);
		return;
	}
	if (c->pend.live == 0) {
		/* Idle: close politely (close_notify for TLS, then FIN). */
		gw_up_debug_conn(c->cs->pool, c->up, "connection idle", NULL);
		if (c->tls) {
			gw_up_tls_close(c->tls);
			(void)conn_flush(c);
		}
		conn_kill(c);
	}
}

/* --- the seam ------------------------------------------------------------------ */

/* The connection for a new query on upstream up: an OPEN one with room
 * first, then one still coming up; NULL when none has room. */
static gw_up_conn_t *pick_conn(up_state_t *us)
{
	gw_up_conn_t *best = NULL;

	for (gw_up_conn_t *c = us->head; c; c = c->next) {
		if (c->dead || c->retiring || gw_up_pend_full(&c->pend))
			continue;
		if (c->state == C_OPEN)
			return c;
		if (!best)
			best = c;
	}
	return best;
}

/* Puts uq on c: an ID from c's table, the frame in c's queue. */
static int assign(gw_up_conn_t *c, gw_up_query_t *uq)
{
	gw_up_conns_t *cs = c->cs;
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
	if (++c->queries >= cs->max_queries && cs->max_queries)
		c->retiring = true;
	if (c->state == C_OPEN) {
		ev_timer_stop(cs->loop, &c->timer); /* not idle any more */
		/* Errors surface in the I/O handler, never here. */
		if (conn_flush(c) < 0)
			watch(c, EV_READ | EV_WRITE);
	}
	return 0;
}

/* A connection for a query on us: one with room, else a new one if the cap
 * and the reconnect backoff allow. NULL with *err set otherwise. */
static gw_up_conn_t *conn_for(gw_up_conns_t *cs, up_state_t *us, unsigned up,
			      bool trial, int *err)
{
	gw_up_conn_t *c = pick_conn(us);

	if (c)
		return c;
	if (us->n_open >= cs->max_conns) {
		/* A retired connection whose last answer is being handed out
		 * right now still counts: close it first (freed later). */
		for (gw_up_conn_t *o = us->head; o; o = o->next)
			if (!o->dead && o->retiring && o->pend.live == 0)
				conn_kill(o);
	}
	if (us->n_open >= cs->max_conns) {
		*err = GW_ENOSPC;
		return NULL;
	}
	if (!trial && us->backoff > 0 && gw_up_now() < us->next_connect) {
		*err = GW_EAGAIN;
		return NULL;
	}
	return conn_new(cs, up, trial, err);
}

static void wait_unlink(up_state_t *us, gw_up_query_t *uq)
{
	if (uq->wprev)
		uq->wprev->wnext = uq->wnext;
	else
		us->wait_head = uq->wnext;
	if (uq->wnext)
		uq->wnext->wprev = uq->wprev;
	else
		us->wait_tail = uq->wprev;
	uq->wnext = uq->wprev = NULL;
	uq->waiting = false;
	us->n_waiting--;
}

/* Moves waiting queries onto connections while there is room. Runs from
 * I/O handlers and timers only (it may report errors). */
static void drain_waiting(gw_up_conns_t *cs, up_state_t *us)
{
	while (us->wait_head) {
		gw_up_query_t *uq = us->wait_head;
		gw_up_conn_t *c;
		int r;

		c = conn_for(cs, us, (unsigned)uq->up, false, &r);
		if (!c && (r == GW_ENOSPC || r == GW_EAGAIN))
			return; /* still no room: keep waiting (timer runs) */
		wait_unlink(us, uq);
		if (!c || (r = assign(c, uq)) < 0)
			gw_up_attempt_error(uq, r);
	}
}

int gw_up_tcp_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	gw_up_conns_t *cs = gw_up_pool_conns(uq->pool);
	unsigned up = (unsigned)uq->up;
	up_state_t *us = &cs->up[up];
	gw_up_conn_t *c;
	int r;

	(void)ep;
	/* First come, first served: nobody overtakes the wait queue. */
	r = GW_ENOSPC;
	c = us->wait_head ? NULL : conn_for(cs, us, up, uq->trial, &r);
	if (!c) {
		if (r != GW_ENOSPC)
			return r;
		/* Every connection full and no new one allowed: wait for a
		 * slot (bounded; past the bound the pool fails or retries
		 * the query elsewhere at once). */
		if (us->n_waiting >= cs->max_waiting)
			return GW_ENOSPC;
		uq->waiting = true;
		uq->wprev = us->wait_tail;
		uq->wnext = NULL;
		if (us->wait_tail)
			us->wait_tail->wnext = uq;
		else
			us->wait_head = uq;
		us->wait_tail = uq;
		us->n_waiting++;
		return 0;
	}
	return assign(c, uq);
}

void gw_up_tcp_stop(gw_up_query_t *uq)
{
	gw_up_conn_t *c = uq->conn;

	if (uq->waiting) {
		gw_up_conns_t *cs = gw_up_pool_conns(uq->pool);
		wait_unlink(&cs->up[uq->up], uq);
		return;
	}
	if (!c)
		return;
	uq->conn = NULL;
	/* Written (or about to be): the upstream may still answer, so the ID
	 * stays taken until it does or the connection closes. */
	gw_up_pend_orphan(&c->pend, uq->id);
	/* Timed out and nothing complete arrived since it was sent: the
	 * connection is blackholed or dripping, not merely slow for one name. */
	if (uq->err == GW_ETIMEDOUT && c->last_frame <= uq->t_sent)
		c->retiring = true;
	conn_check(c);
}

/* --- for tests and metrics ------------------------------------------------------ */

unsigned gw_up_conns_open(const gw_up_conns_t *cs, unsigned up)
{
	return up < GW_CONF_MAX_UPSTREAM ? cs->up[up].n_open : 0;
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
