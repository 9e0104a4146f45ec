/*
 * https.c - DNS over HTTPS upstreams (https://HOST[:PORT]/path, RFC 8484)
 * over HTTP/2 (nghttp2, sans-I/O: mem_recv/mem_send) inside client TLS
 * (tls_client.c, ALPN "h2", RFC 8484 5.2).
 *
 * Per worker and upstream a bounded set of connections (at most
 * upstream.max_conns_per_upstream), each carrying many queries as
 * concurrent streams: a query is a POST of application/dns-message with
 * message ID 0 (RFC 8484 4.1: 0 keeps caches friendly; the stream, not the
 * ID, matches the answer). Streams per connection are bounded by the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 5.1.2) and by
 * upstream.max_inflight_per_conn; when every connection is full and the cap
 * is reached, queries wait in a bounded FIFO per upstream.
 *
 * Answers: a stream that ends with :status 200, content-type
 * application/dns-message and a body that answers the question (ID 0,
 * gw_up_check_answer) answers the query; any other end is an upstream error
 * for that attempt. A stream the server refuses (REFUSED_STREAM, e.g. past
 * the last stream of a GOAWAY, RFC 9113 6.8) or a connection that dies
 * hands its queries back with gw_up_attempt_reissue(): retried once,
 * elsewhere if possible. A query that times out or is cancelled resets its
 * stream (CANCEL) and is forgotten; stream IDs are never reused (RFC 9113
 * 5.1.1), so nothing late can be misrouted.
 *
 * Connection lifecycle, limits, wait queue, backoff, health reports and the
 * deferred free are the shared ones of connset.h (as for tcp.c). Nothing is
 * handed to the pool from inside an nghttp2 callback: callbacks record, and
 * the code that called nghttp2 delivers afterwards.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "attempt.h"
#include "connset.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "tls_client.h"

#define TLS_OUT_MAX (4u << 20)
/* Stop pulling frames out of nghttp2 while this much ciphertext waits. */
#define TLS_OUT_HIGH (256u << 10)
#define RD_CHUNK 16384

typedef struct h2conn h2conn_t;

typedef struct h2st {
	h2conn_t *c;
	gw_up_query_t *uq; /* NULL once the query is gone */
	int32_t id;
	uint8_t *req;      /* the query, ID 0 (kept until the stream closes) */
	size_t req_len, req_off;
	uint8_t *body;     /* answer body, at most GW_DNS_MAX_MSG */
	size_t blen;
	int status;
	bool ctype_ok, too_big, ended, closed;
	uint32_t error_code; /* RST_STREAM / close reason */
	struct h2st *next, *prev;
} h2st_t;

struct h2conn {
	gw_up_cbase_t b;   /* first: list, state, watchers (connset.h) */
	bool in_h2;
	bool delivering;   /* conn_deliver() walks the stream list */
	double last_rx;    /* when bytes last arrived (blackhole check) */
	gw_up_tls_t *tls;
	nghttp2_session *h2;
	h2st_t *streams;
	unsigned nstreams; /* not yet closed (incl. cancelled) */
	unsigned live;     /* with a query */
};

struct gw_up_https {
	gw_up_cset_t set; /* first: per-upstream lists, limits */
	gw_up_tls_ctx_t *tls;
	nghttp2_session_callbacks *cbs;
	char authority[GW_CONF_MAX_UPSTREAM][GW_CONF_MAX_NAME + 16];
};

static const gw_up_cset_ops_t h2_ops;

static void conn_io(struct ev_loop *loop, ev_io *w, int revents);
static void conn_fail(h2conn_t *c, int err);
static int conn_flush(h2conn_t *c);

static h2conn_t *conn_of(gw_up_cbase_t *b)
{
	return (h2conn_t *)b;
}

/* --- nghttp2 callbacks: record only ----------------------------------------- */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf,
			 size_t len, uint32_t *flags, nghttp2_data_source *src,
			 void *user)
{
	h2st_t *st = src->ptr;
	size_t n = st->req_len - st->req_off;

	(void)s;
	(void)id;
	(void)user;
	if (n > len)
		n = len;
	memcpy(buf, st->req + st->req_off, n);
	st->req_off += n;
	if (st->req_off == st->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f,
		     const uint8_t *name, size_t nlen, const uint8_t *value,
		     size_t vlen, uint8_t flags, void *user)
{
	h2st_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

	(void)flags;
	(void)user;
	if (!st || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
		int v = 0;
		for (size_t i = 0; i < vlen && i < 3; i++)
			v = v * 10 + (value[i] - '0');
		st->status = vlen == 3 ? v : 0;
	} else if (nlen == 12 && memcmp(name, "content-type", 12) == 0) {
		/* RFC 8484 6: the media type, parameters tolerated */
		static const char mt[] = "application/dns-message";
		st->ctype_ok = vlen >= sizeof(mt) - 1 &&
			       strncasecmp((const char *)value, mt,
					   sizeof(mt) - 1) == 0 &&
			       (vlen == sizeof(mt) - 1 ||
				value[sizeof(mt) - 1] == ';');
	}
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id,
		   const uint8_t *data, size_t len, void *user)
{
	h2st_t *st = nghttp2_session_get_stream_user_data(s, id);

	(void)flags;
	(void)user;
	if (!st || st->too_big)
		return 0;
	if (len > GW_DNS_MAX_MSG - st->blen) {
		st->too_big = true;
		return 0;
	}
	if (!st->body && !(st->body = malloc(GW_DNS_MAX_MSG))) {
		st->too_big = true;
		return 0;
	}
	memcpy(st->body + st->blen, data, len);
	st->blen += len;
	return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	h2conn_t *c = user;
	h2st_t *st;

	if (f->hd.type == NGHTTP2_GOAWAY) {
		/* RFC 9113 6.8: no new streams here; those past the last
		 * stream id are refused by nghttp2 (REFUSED_STREAM). */
		c->b.retiring = true;
		return 0;
	}
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
		if (st)
			st->ended = true;
	}
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
	h2st_t *st = nghttp2_session_get_stream_user_data(s, id);

	(void)user;
	if (st) {
		st->closed = true;
		st->error_code = code;
	}
	return 0;
}

/* --- streams ----------------------------------------------------------------- */

static void st_unlink_free(h2st_t *st)
{
	h2conn_t *c = st->c;

	if (st->prev)
		st->prev->next = st->next;
	else
		c->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	c->nstreams--;
	if (st->uq) {
		st->uq->h2st = NULL;
		c->live--;
	}
	free(st->req);
	free(st->body);
	free(st);
}

/* Delivers what the callbacks recorded: closed streams end their query.
 * Runs outside nghttp2, so the pool may queue or cancel queries. */
static void conn_deliver(h2conn_t *c)
{
	h2st_t *st = c->streams, *nx;
	gw_up_metrics_t *m = gw_up_cbase_metrics(&c->b);

	c->delivering = true;
	for (; st && !c->b.dead; st = nx) {
		gw_up_query_t *uq;
		nx = st->next;
		if (!st->closed)
			continue;
		uq = st->uq;
		if (uq) {
			st->uq = NULL;
			uq->h2st = NULL;
			c->live--;
		}
		if (uq && st->error_code == NGHTTP2_REFUSED_STREAM) {
			/* Not processed by the server (RFC 9113 8.7). */
			st_unlink_free(st);
			gw_up_attempt_reissue(uq, GW_ECLOSED);
		} else if (uq && st->ended && st->error_code == 0 &&
			   st->status == 200 && st->ctype_ok && !st->too_big &&
			   gw_up_check_answer(&uq->sent, st->body, st->blen,
					      false, NULL) == GW_UP_ANSWER) {
			if (!c->b.saved_session) {
				gw_up_tls_session_t *ss =
					gw_up_tls_session(c->tls);
				if (ss) {
					gw_up_cgroup_keep_session(c->b.g, ss);
					c->b.saved_session = true;
				}
			}
			/* st->body is read before st goes */
			gw_up_attempt_answer(uq, st->body, st->blen);
			st_unlink_free(st);
		} else if (uq) {
			char d[48];
			snprintf(d, sizeof(d), "status=%d h2_error=%u",
				 st->status, st->error_code);
			m->ignored += st->ended && st->status == 200;
			gw_up_debug(uq, "doh answer refused", d);
			st_unlink_free(st);
			gw_up_attempt_error(uq, GW_EUPSTREAM);
		} else {
			st_unlink_free(st);
		}
		/* (callbacks only reset other streams; those stay listed
		 * until this loop frees them, so nx is still valid) */
	}
	c->delivering = false;
}

/* Frees streams nghttp2 closed after we reset them (no query left). */
static void conn_reap(h2conn_t *c)
{
	h2st_t *st = c->streams, *nx;

	if (c->delivering || c->in_h2)
		return;
	for (; st; st = nx) {
		nx = st->next;
		if (st->closed && !st->uq)
			st_unlink_free(st);
	}
}

/* --- connection ---------------------------------------------------------------- */

static void conn_destroy(gw_up_cbase_t *b)
{
	h2conn_t *c = conn_of(b);

	while (c->streams)
		st_unlink_free(c->streams);
	if (c->h2)
		nghttp2_session_del(c->h2);
	gw_up_tls_free(c->tls);
	free(c);
}

static unsigned conn_live(const gw_up_cbase_t *b)
{
	return ((const h2conn_t *)b)->live;
}

static void conn_retire(gw_up_cbase_t *b)
{
	gw_up_debug_conn(b->g->set->pool, b->up, "connection retired",
			 "https");
	gw_up_cbase_kill(b);
}

static bool conn_room(const gw_up_cbase_t *b)
{
	const h2conn_t *c = (const h2conn_t *)b;
	unsigned cap = b->g->set->lim.max_inflight;

	if (c->h2 && b->state == GW_UPC_OPEN) {
		uint32_t mcs = nghttp2_session_get_remote_settings(
			c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
		if (mcs < cap)
			cap = mcs;
	}
	return c->nstreams < cap;
}

static const char *conn_why(gw_up_cbase_t *b, int err)
{
	h2conn_t *c = conn_of(b);

	(void)err;
	return c->tls ? gw_up_tls_error(c->tls) : "";
}

/* c died: hand every live query back to the pool. */
static void conn_reissue(gw_up_cbase_t *b, int err)
{
	h2conn_t *c = conn_of(b);

	for (h2st_t *st = c->streams; st; st = st->next) {
		gw_up_query_t *uq = st->uq;
		if (!uq)
			continue;
		st->uq = NULL;
		uq->h2st = NULL;
		c->live--;
		gw_up_attempt_reissue(uq, err);
	}
}

static void conn_fail(h2conn_t *c, int err)
{
	gw_up_cbase_fail(&c->b, err);
}

/* Pulls frames out of nghttp2 into TLS, then ciphertext to the socket. */
static int conn_flush(h2conn_t *c)
{
	gw_buf_t *out;

	if (c->b.dead || c->b.state == GW_UPC_CONNECTING)
		return 0;
	out = gw_up_tls_out(c->tls);
	while (c->b.state == GW_UPC_OPEN && gw_buf_size(out) < TLS_OUT_HIGH) {
		const uint8_t *data;
		ssize_t n;
		int r;

		c->in_h2 = true;
		n = nghttp2_session_mem_send(c->h2, &data);
		c->in_h2 = false;
		if (n < 0)
			return GW_EMALFORMED;
		if (n == 0)
			break;
		if ((r = gw_up_tls_write(c->tls, data, (size_t)n)) < 0)
			return r;
	}
	while (gw_buf_size(out) > 0) {
		ssize_t n = send(c->b.fd, gw_buf_head(out), gw_buf_size(out),
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		gw_buf_consume(out, (size_t)n);
	}
	gw_buf_shrink(out);
	gw_up_cbase_watch(&c->b,
			  EV_READ | (gw_buf_size(out) > 0 ||
						 (c->b.state == GW_UPC_OPEN &&
						  nghttp2_session_want_write(
							  c->h2))
					 ? EV_WRITE
					 : 0));
	return 0;
}

static void conn_opened(h2conn_t *c)
{
	bool resumed = gw_up_tls_resumed(c->tls);

	gw_up_cbase_opened(&c->b, resumed, resumed ? "h2 tls resumed" : "h2");
	if (c->live == 0)
		gw_up_cbase_check(&c->b);
}

static gw_up_cbase_t *conn_new(gw_up_cset_t *s, unsigned up, bool trial,
			       int *err)
{
	gw_up_https_t *hs = (gw_up_https_t *)s;
	const gw_endpoint_t *ep = &s->conf->upstream[up];
	nghttp2_settings_entry iv[] = {
		/* RFC 8484 5.2: no server push for DNS */
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535 },
	};
	const struct sockaddr *sa;
	socklen_t salen;
	h2conn_t *c;
	int r;

	sa = gw_up_pool_addr(s->pool, up, &salen);
	if (!sa) {
		*err = GW_EAGAIN; /* name not resolved (yet) */
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		*err = GW_ENOMEM;
		return NULL;
	}
	gw_up_cbase_init(&c->b, s, up, trial);
	c->tls = gw_up_tls_new(hs->tls, ep->tls_name, s->conf->up.pin[up],
			       c->b.g->session, TLS_OUT_MAX);
	if (!c->tls || gw_up_tls_set_alpn(c->tls, "h2") < 0) {
		r = GW_ETLS;
		goto fail;
	}
	if (nghttp2_session_client_new(&c->h2, hs->cbs, c) != 0 ||
	    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0) {
		r = GW_ENOMEM;
		goto fail;
	}
	c->b.fd = gw_up_connect_stream(sa, salen);
	if (c->b.fd < 0) {
		r = c->b.fd;
		goto fail;
	}
	gw_up_cbase_open(&c->b, conn_io, EV_WRITE, gw_up_pool_timeout(s->pool));
	return &c->b;
fail:
	gw_up_cbase_discard(&c->b);
	*err = r;
	return NULL;
}

static bool conn_read(h2conn_t *c)
{
	uint8_t *buf = gw_up_pool_rbuf(c->b.g->set->pool);
	uint8_t plain[RD_CHUNK];

	for (int rounds = 0; rounds < 8; rounds++) {
		ssize_t n = gw_up_cbase_recv(&c->b, buf, GW_DNS_MAX_MSG);
		int r;

		if (n <= 0)
			return n == 0;
		c->last_rx = gw_up_now();
		if ((r = gw_up_tls_feed(c->tls, buf, (size_t)n)) < 0) {
			conn_fail(c, r);
			return false;
		}
		for (;;) {
			ssize_t m = gw_up_tls_read(c->tls, plain, sizeof(plain));
			if (gw_up_tls_handshake_done(c->tls) &&
			    c->b.state == GW_UPC_HANDSHAKE) {
				conn_opened(c);
				gw_up_cgroup_drain(c->b.g);
				if (c->b.dead)
					return false;
			}
			if (m == 0)
				break;
			if (m < 0) {
				conn_fail(c, (int)m);
				return false;
			}
			c->in_h2 = true;
			n = nghttp2_session_mem_recv(c->h2, plain, (size_t)m);
			c->in_h2 = false;
			if (n < 0) {
				gw_log(GW_LOG_INFO, "upstream",
				       "upstream http/2 error", "upstream",
				       gw_up_cbase_url(&c->b), "error",
				       nghttp2_strerror((int)n), NULL);
				conn_fail(c, GW_EMALFORMED);
				return false;
			}
			conn_deliver(c);
			if (c->b.dead)
				return false;
			gw_up_cbase_check(&c->b);
			if (c->b.dead)
				return false;
		}
		if ((r = conn_flush(c)) < 0) {
			conn_fail(c, r);
			return false;
		}
		if (!nghttp2_session_want_read(c->h2) &&
		    !nghttp2_session_want_write(c->h2)) {
			/* GOAWAY done and every stream closed */
			conn_fail(c, GW_ECLOSED);
			return false;
		}
	}
	return true;
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	h2conn_t *c = w->data;
	int r;

	(void)loop;
	if (c->b.dead)
		return;
	if (c->b.state == GW_UPC_CONNECTING) {
		uint8_t dummy[1];
		ssize_t m;

		if (!gw_up_cbase_connected(&c->b, revents))
			return;
		c->b.state = GW_UPC_HANDSHAKE;
		m = gw_up_tls_read(c->tls, dummy, sizeof(dummy)); /* Hello */
		if (m < 0) {
			conn_fail(c, (int)m);
			return;
		}
		if ((r = conn_flush(c)) < 0)
			conn_fail(c, r);
		return;
	}
	if ((revents & EV_READ) && !conn_read(c))
		return;
	if ((revents & EV_WRITE) && (r = conn_flush(c)) < 0)
		conn_fail(c, r);
}

/* The connect/handshake deadline, or the idle close. */
static void conn_timeout(gw_up_cbase_t *b)
{
	h2conn_t *c = conn_of(b);

	if (c->b.state != GW_UPC_OPEN) {
		conn_fail(c, GW_ETIMEDOUT);
		return;
	}
	if (c->live == 0) {
		/* Idle: GOAWAY and close_notify, then FIN (RFC 9113 6.8). */
		gw_up_debug_conn(b->g->set->pool, b->up, "connection idle",
				 "https");
		(void)nghttp2_session_terminate_session(c->h2,
							NGHTTP2_NO_ERROR);
		(void)conn_flush(c);
		gw_up_tls_close(c->tls);
		(void)conn_flush(c);
		gw_up_cbase_kill(b);
	}
}

/* --- the seam -------------------------------------------------------------------- */

/* Opens a stream on c for uq: POST of the query with ID 0. */
static int assign(gw_up_cbase_t *b, gw_up_query_t *uq)
{
	h2conn_t *c = conn_of(b);
	gw_up_https_t *hs = (gw_up_https_t *)b->g->set;
	const gw_endpoint_t *ep = &hs->set.conf->upstream[b->up];
	char clen[8];
	h2st_t *st;
	int32_t id;

	st = calloc(1, sizeof(*st));
	if (!st || !(st->req = malloc(uq->out_len))) {
		free(st);
		return GW_ENOMEM;
	}
	/* RFC 8484 4.1: the DNS ID SHOULD be 0 in every DoH request. */
	memcpy(st->req, uq->out + 2, uq->out_len);
	st->req[0] = st->req[1] = 0;
	st->req_len = uq->out_len;
	uq->sent.id = 0;
	uq->id = 0;
	snprintf(clen, sizeof(clen), "%zu", uq->out_len);
#define NV(n, v)                                                          \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),       \
	  NGHTTP2_NV_FLAG_NO_COPY_NAME }
	nghttp2_nv hdr[] = {
		NV(":method", "POST"),
		NV(":scheme", "https"),
		NV(":authority", hs->authority[b->up]),
		NV(":path", ep->path),
		NV("content-type", "application/dns-message"),
		NV("accept", "application/dns-message"),
		NV("content-length", clen),
	};
#undef NV
	nghttp2_data_provider prd = { .source.ptr = st,
				      .read_callback = read_body };
	st->c = c;
	id = nghttp2_submit_request(c->h2, NULL, hdr,
				    sizeof(hdr) / sizeof(hdr[0]), &prd, st);
	if (id < 0) {
		free(st->req);
		free(st);
		return id == NGHTTP2_ERR_NOMEM ? GW_ENOMEM : GW_ENOSPC;
	}
	st->id = id;
	st->uq = uq;
	st->next = c->streams;
	if (c->streams)
		c->streams->prev = st;
	c->streams = st;
	c->nstreams++;
	c->live++;
	uq->h2st = st;
	gw_up_cbase_count_query(b);
	if (b->state == GW_UPC_OPEN) {
		ev_timer_stop(hs->set.loop, &b->timer);
		if (!c->in_h2 && conn_flush(c) < 0)
			gw_up_cbase_watch(b, EV_READ | EV_WRITE);
	}
	return 0;
}

static const gw_up_cset_ops_t h2_ops = {
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

int gw_up_https_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	(void)ep;
	return gw_up_cset_start(&gw_up_pool_https(uq->pool)->set, uq, NULL);
}

void gw_up_https_stop(gw_up_query_t *uq)
{
	gw_up_https_t *hs = gw_up_pool_https(uq->pool);
	h2st_t *st = uq->h2st;
	h2conn_t *c;

	if (gw_up_cset_unwait(hs ? &hs->set : NULL, uq))
		return;
	if (!st)
		return;
	c = st->c;
	st->uq = NULL;
	uq->h2st = NULL;
	c->live--;
	if (!c->b.dead && !st->closed) {
		/* RFC 9113 8.7 / 5.4.2: the answer is not wanted any more. */
		(void)nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id,
						NGHTTP2_CANCEL);
		/* Timed out and nothing arrived since it was sent: the
		 * connection is blackholed, not slow for one name (tcp.c). */
		if (uq->err == GW_ETIMEDOUT && c->last_rx <= uq->t_sent)
			c->b.retiring = true;
		if (!c->in_h2 && c->b.state == GW_UPC_OPEN)
			(void)conn_flush(c);
		conn_reap(c);
	}
	gw_up_cbase_check(&c->b);
}

gw_up_https_t *gw_up_https_new(gw_up_pool_t *p, char *err, size_t errlen)
{
	const gw_conf_t *conf = gw_up_pool_conf(p);
	gw_up_https_t *hs;
	bool any = false, need_ca = false;

	for (unsigned i = 0; i < conf->n_upstream; i++) {
		if (conf->upstream[i].proto != GW_PROTO_DOH)
			continue;
		any = true;
		if (!conf->up.pin[i][0])
			need_ca = true;
	}
	if (!any)
		return NULL;
	hs = calloc(1, sizeof(*hs));
	if (!hs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	gw_up_cset_init(&hs->set, p, &h2_ops, 0);
	for (unsigned i = 0; i < conf->n_upstream; i++) {
		const gw_endpoint_t *ep = &conf->upstream[i];
		bool v6 = strchr(ep->host, ':') != NULL;
		if (ep->port == 443)
			snprintf(hs->authority[i], sizeof(hs->authority[i]),
				 v6 ? "[%s]" : "%s", ep->host);
		else
			snprintf(hs->authority[i], sizeof(hs->authority[i]),
				 v6 ? "[%s]:%u" : "%s:%u", ep->host, ep->port);
	}
	hs->tls = gw_up_tls_ctx_new(conf->up.ca_file, need_ca, err, errlen);
	if (!hs->tls || nghttp2_session_callbacks_new(&hs->cbs) != 0) {
		if (hs->tls)
			snprintf(err, errlen, "out of memory");
		gw_up_tls_ctx_free(hs->tls);
		free(hs);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_header_callback(hs->cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(hs->cbs,
								  on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(hs->cbs, on_frame);
	nghttp2_session_callbacks_set_on_stream_close_callback(hs->cbs,
							       on_close);
	return hs;
}

void gw_up_https_free(gw_up_https_t *hs)
{
	if (!hs)
		return;
	gw_up_cset_deinit(&hs->set);
	nghttp2_session_callbacks_del(hs->cbs);
	gw_up_tls_ctx_free(hs->tls);
	free(hs);
}

unsigned gw_up_https_open(const gw_up_https_t *hs, unsigned up)
{
	return gw_up_cset_open_count(hs ? &hs->set : NULL, up);
}
