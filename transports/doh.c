/*
 * doh.c - DNS over HTTPS connections (see doh.h, docs/doh.md).
 *
 * Reading:  socket -> [TLS decrypt] -> nghttp2_session_mem_recv (h2)
 *                                   or c->in -> HTTP/1.1 head parser (h1)
 *           -> doh_req checks -> gw_query_start()
 * Writing:  on_answer() -> nghttp2_submit_response (h2) or a response head
 *           -> [TLS encrypt] -> out buffer -> socket
 *
 * nghttp2 must not be re-entered from its own callbacks, so answers that
 * arrive while mem_recv runs (local answers) are only submitted; the
 * output is pumped once mem_recv returns (c->in_recv).
 *
 * Rapid Reset (CVE-2023-44487): a stream the client resets while its query
 * is upstream stays counted (an "orphan") until the answer comes back, so a
 * connection never has more than max streams of upstream work, however fast
 * it resets. New streams past that are refused (RST_STREAM REFUSED_STREAM,
 * RFC 9113 8.7: safe to retry); a client that keeps pushing past the refusal
 * budget gets GOAWAY ENHANCE_YOUR_CALM and is closed.
 */
#include "doh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "gateway/dns.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/query.h"
#include "transports/doh_req.h"

#define READ_CHUNK 16384
#define OUT_MAX (256 * 1024) /* past this the client is not reading: close */
#define OUT_HIGH (64 * 1024) /* above this stop reading and pumping */
#define H1_HEAD_MAX 8192     /* REQUIREMENTS.md: bounded request head */
#define H1_IN_MAX (H1_HEAD_MAX + GW_DNS_MAX_MSG + READ_CHUNK)
#define REFUSE_BURST 100.0 /* refused streams before ENHANCE_YOUR_CALM */
#define REFUSE_RATE 10.0   /* refusal budget regained per second */
#define RST_BURST 200      /* nghttp2's own RST_STREAM token bucket */
#define RST_RATE 33
#define MAX_OUTBOUND_ACK 100 /* SETTINGS/PING acks queued: flood cap */
#define MAX_SETTINGS 32      /* entries per SETTINGS frame */
#define MAX_CONTINUATIONS 8  /* CVE-2024-28182 */
#define SERVFAIL_MAX_AGE 5   /* pinned: errors cached briefly */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

enum { MODE_SNIFF, MODE_H2, MODE_H1 };

typedef struct doh_conn doh_conn_t;

typedef struct doh_stream {
	doh_conn_t *c;
	int32_t id; /* HTTP/2 stream id; 0 for HTTP/1.1 */
	gw_doh_req_t req;
	gw_query_t *q;     /* in flight, owned by the pipeline */
	uint8_t *body;     /* response body */
	size_t body_len, body_off;
	bool responded;    /* a response has been submitted */
	bool orphan;       /* h2 stream closed while q was in flight */
	struct doh_stream *next, *prev;
} doh_stream_t;

struct doh_conn {
	gw_worker_t *w;
	gw_listener_t *l;
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	ev_io rio, wio;
	ev_timer timer;
	gw_tls_t *tls; /* NULL for h2c:// */
	gw_buf_t out;  /* cleartext output (TLS keeps its own) */
	gw_buf_t in;   /* plaintext waiting: sniffing and HTTP/1.1 */
	int mode;
	nghttp2_session *h2;
	doh_stream_t *streams;
	unsigned n_streams; /* attached to a live h2 stream or the h1 request */
	unsigned n_orphans;
	unsigned inflight;  /* queries out, orphans included */
	unsigned n_responding; /* h2 responses submitted, stream not closed */
	doh_stream_t *h1cur; /* the HTTP/1.1 request being served */
	size_t h1_need;      /* its body length */
	double t_accept, t_active, t_write, t_partial, t_refill;
	double refuse_tokens;
	bool handshake_done;
	bool reading;
	bool eof;
	bool in_recv;      /* inside nghttp2_session_mem_recv */
	bool goaway;       /* GOAWAY sent: no new streams */
	bool close_after_flush;
	bool h1_close;     /* HTTP/1.1: close after the current response */
	bool closing;
	bool freeing;
	/* HTTP/2 answers submitted in this loop iteration: pumped and sent
	 * once before the loop waits (gw_worker_flush, on_flush) */
	gw_flush_t flush;
	struct doh_conn *next, *prev;
};

static __thread doh_conn_t *conns; /* this worker's connections */

static gw_doh_metrics_t metrics[GW_DOH_MAX_WORKERS];

#define METRIC(c, field) \
	__atomic_fetch_add(&metrics[(c)->w->id % GW_DOH_MAX_WORKERS].field, 1, \
			   __ATOMIC_RELAXED)

static void conn_update(doh_conn_t *c);
static void h1_process(doh_conn_t *c);

/* ------------------------------------------------------------ metrics */

int gw_doh_status_index(int status)
{
	static const int codes[GW_DOH_SOTHER] = {
		200, 400, 404, 405, 408, 411, 413, 414, 415, 431, 500, 501, 503,
	};
	for (int i = 0; i < GW_DOH_SOTHER; i++)
		if (codes[i] == status)
			return i;
	return GW_DOH_SOTHER;
}

void gw_doh_metrics_sum(unsigned n, gw_doh_metrics_t *out)
{
	memset(out, 0, sizeof(*out));
	if (n > GW_DOH_MAX_WORKERS)
		n = GW_DOH_MAX_WORKERS;
	for (unsigned i = 0; i < n; i++) {
		const uint64_t *src = (const uint64_t *)&metrics[i];
		uint64_t *dst = (uint64_t *)out;
		for (size_t k = 0; k < sizeof(*out) / sizeof(uint64_t); k++)
			dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
	}
}

static void count_response(doh_conn_t *c, int status)
{
	gw_doh_metrics_t *m = &metrics[c->w->id % GW_DOH_MAX_WORKERS];
	__atomic_fetch_add(&m->responses_by_status[gw_doh_status_index(status)],
			   1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&m->responses_by_version[c->mode == MODE_H2
							    ? GW_DOH_V_H2
							    : GW_DOH_V_H1],
			   1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------- output */

static gw_buf_t *conn_out(doh_conn_t *c)
{
	return c->tls ? gw_tls_out(c->tls) : &c->out;
}

static int conn_write(doh_conn_t *c, const uint8_t *p, size_t n)
{
	return c->tls ? gw_tls_write(c->tls, p, n) : gw_buf_append(&c->out, p, n);
}

static void conn_close(doh_conn_t *c, const char *why)
{
	if (c->closing)
		return;
	gw_log(GW_LOG_DEBUG, "doh", "closing connection", "reason", why, NULL);
	c->closing = true;
	ev_io_stop(c->w->loop, &c->rio);
	ev_io_stop(c->w->loop, &c->wio);
	ev_feed_event(c->w->loop, &c->timer, EV_TIMER);
}

static void conn_flush(doh_conn_t *c)
{
	gw_buf_t *out = conn_out(c);
	long n = gw_buf_send(out, c->fd);
	if (n < 0) {
		conn_close(c, "write error");
		return;
	}
	if (n > 0)
		c->t_write = c->w->now; /* progress resets the stall clock */
	if (gw_buf_size(out) == 0) {
		gw_buf_shrink(out);
		ev_io_stop(c->w->loop, &c->wio);
	} else if (!ev_is_active(&c->wio)) {
		c->t_write = c->w->now;
		ev_io_start(c->w->loop, &c->wio);
	}
}

/* Moves nghttp2's pending frames to the out buffer, never past OUT_HIGH:
 * what nghttp2 keeps is bounded by its streams and the ack cap. nghttp2
 * hands out one frame at a time; they are gathered into up to 16 KiB so
 * that a HEADERS and DATA pair - or many answers - share one TLS record
 * (RFC 8446 5.1) rather than costing one record each. */
static void h2_pump(doh_conn_t *c)
{
	static __thread uint8_t stage[16384];
	size_t staged = 0;

	if (!c->h2 || c->closing || c->in_recv)
		return;
	while (gw_buf_size(conn_out(c)) + staged < OUT_HIGH) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->h2, &data);
		if (n < 0) {
			gw_log(GW_LOG_DEBUG, "doh", "nghttp2 send failed",
			       "error", nghttp2_strerror((int)n), NULL);
			conn_close(c, "http/2 error");
			return;
		}
		if (n == 0)
			break;
		/* data is valid until the next mem_send: copy or write it */
		if (staged + (size_t)n > sizeof(stage)) {
			if (conn_write(c, stage, staged) < 0)
				goto full;
			staged = 0;
		}
		if ((size_t)n >= sizeof(stage)) {
			if (conn_write(c, data, (size_t)n) < 0)
				goto full;
			continue;
		}
		memcpy(stage + staged, data, (size_t)n);
		staged += (size_t)n;
	}
	if (staged > 0 && conn_write(c, stage, staged) < 0)
		goto full;
	conn_flush(c);
	return;
full:
	conn_close(c, "output buffer full");
}

/* Runs once per loop iteration, before the loop blocks: every answer that
 * came back in this iteration goes out in one pump and one send per
 * connection instead of one each. The output caps are h2_pump()'s,
 * unchanged: frames wait inside nghttp2 until then. */
static void on_flush(gw_flush_t *f)
{
	doh_conn_t *c = (doh_conn_t *)((char *)f - offsetof(doh_conn_t, flush));

	if (c->closing)
		return;
	h2_pump(c);
	if (!c->closing)
		conn_update(c);
}

/* ------------------------------------------------------------ streams */

static doh_stream_t *stream_new(doh_conn_t *c, int32_t id)
{
	doh_stream_t *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->c = c;
	s->id = id;
	gw_doh_req_init(&s->req, c->l->ep->path[0] ? c->l->ep->path
						   : "/dns-query",
			c->mode != MODE_H2);
	s->next = c->streams;
	if (c->streams)
		c->streams->prev = s;
	c->streams = s;
	c->n_streams++;
	return s;
}

/* Unlinks and frees; the caller has settled s->q. */
static void stream_free(doh_stream_t *s)
{
	doh_conn_t *c = s->c;
	if (s->prev)
		s->prev->next = s->next;
	else
		c->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (s->orphan)
		c->n_orphans--;
	else
		c->n_streams--;
	if (s->responded && c->mode == MODE_H2)
		c->n_responding--;
	if (c->h1cur == s)
		c->h1cur = NULL;
	gw_doh_req_deinit(&s->req);
	free(s->body);
	free(s);
}

/* --------------------------------------------------------- responses */

static ssize_t h2_read_body(nghttp2_session *session, int32_t id, uint8_t *buf,
			    size_t length, uint32_t *flags,
			    nghttp2_data_source *src, void *ud)
{
	doh_stream_t *s = src->ptr;
	size_t n = s->body_len - s->body_off;
	if (n > length)
		n = length;
	memcpy(buf, s->body + s->body_off, n);
	s->body_off += n;
	if (s->body_off == s->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

#define NV(n, v) \
	{ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), \
	  NGHTTP2_NV_FLAG_NONE }

/* Sends status with an optional DNS body (then max_age applies). */
static void respond(doh_stream_t *s, int status, uint8_t *body, size_t len,
		    uint32_t max_age)
{
	doh_conn_t *c = s->c;
	char st[8], cl[24], cc[32];

	if (c->mode == MODE_H2) {
		/* the stall clock starts with the first response waiting */
		if (c->n_responding == 0 && gw_buf_size(conn_out(c)) == 0)
			c->t_write = c->w->now;
		c->n_responding++;
	}
	s->responded = true;
	s->body = body;
	s->body_len = len;
	count_response(c, status);
	snprintf(st, sizeof(st), "%d", status);
	snprintf(cl, sizeof(cl), "%zu", len);
	snprintf(cc, sizeof(cc), "max-age=%u", (unsigned)max_age);

	if (c->mode == MODE_H2) {
		nghttp2_nv hdrs[4] = { NV(":status", st) };
		size_t n = 1;
		if (body) {
			hdrs[n++] = (nghttp2_nv)NV("content-type",
						   "application/dns-message");
			hdrs[n++] = (nghttp2_nv)NV("cache-control", cc);
		} else if (status == 405) {
			/* RFC 9110 15.5.6 */
			hdrs[n++] = (nghttp2_nv)NV("allow", "GET, POST");
		}
		hdrs[n++] = (nghttp2_nv)NV("content-length", cl);
		nghttp2_data_provider prd = { .source.ptr = s,
					      .read_callback = h2_read_body };
		int r = nghttp2_submit_response(c->h2, s->id, hdrs, n,
						body ? &prd : NULL);
		if (r < 0)
			gw_log(GW_LOG_DEBUG, "doh", "submit response failed",
			       "error", nghttp2_strerror(r), NULL);
		return;
	}

	/* HTTP/1.1: an error ends the connection, since after a refused
	 * request the framing of what follows cannot be trusted. */
	char head[512];
	if (status != 200)
		c->h1_close = true;
	int hn = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n", status,
			  gw_doh_status_text(status));
	if (body)
		hn += snprintf(head + hn, sizeof(head) - (size_t)hn,
			       "Content-Type: application/dns-message\r\n"
			       "Cache-Control: %s\r\n",
			       cc);
	if (status == 405)
		hn += snprintf(head + hn, sizeof(head) - (size_t)hn,
			       "Allow: GET, POST\r\n");
	hn += snprintf(head + hn, sizeof(head) - (size_t)hn,
		       "Content-Length: %zu\r\n%s\r\n", len,
		       c->h1_close ? "Connection: close\r\n" : "");
	/* head and body in one TLS record where they fit */
	static __thread uint8_t resp[512 + GW_DNS_MAX_MSG];
	memcpy(resp, head, (size_t)hn);
	if (body)
		memcpy(resp + hn, body, len);
	if (conn_write(c, resp, (size_t)hn + len) < 0)
		conn_close(c, "output buffer full");
}

static void respond_error(doh_stream_t *s, int status)
{
	char st[8];
	if (s->responded)
		return;
	snprintf(st, sizeof(st), "%d", status);
	gw_log(GW_LOG_DEBUG, "doh", "request refused", "status", st, NULL);
	respond(s, status, NULL, 0, 0);
}

/* RFC 8484 5.1: freshness no longer than the smallest TTL (SOA minimum for
 * negative answers); errors without TTLs briefly (pinned in docs/doh.md). */
static uint32_t answer_max_age(const uint8_t *msg, size_t len)
{
	gw_dns_msg_t m;
	if (gw_dns_parse(msg, len, &m) < 0)
		return 0;
	int rcode = GW_DNS_RCODE(m.flags);
	if (rcode != GW_DNS_NOERROR && rcode != GW_DNS_NXDOMAIN) {
		uint32_t t = m.has_ttl ? m.min_ttl : SERVFAIL_MAX_AGE;
		return t < SERVFAIL_MAX_AGE ? t : SERVFAIL_MAX_AGE;
	}
	return m.has_ttl ? m.min_ttl : 0;
}

static void doh_on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	doh_stream_t *s = q->client;
	doh_conn_t *c = s->c;

	s->q = NULL;
	c->inflight--;
	if (s->orphan || c->closing) {
		if (s->orphan)
			stream_free(s);
		if (!c->closing && !c->in_recv)
			conn_update(c);
		return;
	}
	uint8_t *body = malloc(len ? len : 1);
	if (!body) {
		respond(s, 500, NULL, 0, 0);
	} else {
		memcpy(body, msg, len);
		respond(s, 200, body, len, answer_max_age(msg, len));
	}
	if (c->mode == MODE_H1 && !c->closing) {
		/* the h1 request is done once its response is queued */
		stream_free(s);
	}
	if (c->in_recv || c->closing)
		return;
	if (c->mode == MODE_H2) {
		gw_worker_flush(c->w, &c->flush);
		return;
	}
	h2_pump(c);
	if (c->mode == MODE_H1 && !c->closing) {
		conn_flush(c);
		h1_process(c); /* a pipelined request may wait */
	}
	if (!c->closing)
		conn_update(c);
}

static const gw_query_client_ops_t doh_ops = { .on_answer = doh_on_answer };

static void log_addr(const char *msg, const struct sockaddr_storage *peer,
		     const struct sockaddr_storage *client)
{
	if (gw_log_level() < GW_LOG_DEBUG)
		return;
	char p[INET6_ADDRSTRLEN] = "?", cl[INET6_ADDRSTRLEN] = "?";
	const struct sockaddr_storage *a[2] = { peer, client };
	char *o[2] = { p, cl };
	for (int i = 0; i < 2; i++) {
		if (!a[i])
			continue;
		if (a[i]->ss_family == AF_INET)
			inet_ntop(AF_INET,
				  &((const struct sockaddr_in *)a[i])->sin_addr,
				  o[i], INET6_ADDRSTRLEN);
		else if (a[i]->ss_family == AF_INET6)
			inet_ntop(AF_INET6,
				  &((const struct sockaddr_in6 *)a[i])->sin6_addr,
				  o[i], INET6_ADDRSTRLEN);
	}
	gw_log(GW_LOG_DEBUG, "doh", msg, "peer", p, "client", cl, NULL);
}

/* The request is complete: checks, then the query. s may be freed when
 * this returns (HTTP/1.1 local answers). */
static void request_done(doh_stream_t *s)
{
	doh_conn_t *c = s->c;
	const uint8_t *msg;
	size_t len;
	static __thread uint8_t copy[GW_DNS_MAX_MSG];

	if (s->responded)
		return;
	int status = gw_doh_req_finish(&s->req, &msg, &len);
	if (status) {
		respond_error(s, status);
		return;
	}
	/* The client as the trusted proxies tell it (RFC 7239 7.4). */
	struct sockaddr_storage client;
	const gw_doh_conf_t *dc = &c->w->conf->doh;
	bool fwd = gw_doh_client_addr(dc->trusted_proxies,
				      dc->n_trusted_proxies, &c->addr,
				      s->req.xff, s->req.fwd, &client);
	if (fwd) {
		METRIC(c, forwarded_used);
		log_addr("forwarded client address", &c->addr, &client);
	} else if (s->req.xff[0] || s->req.fwd[0] || s->req.xff_overflow ||
		   s->req.fwd_overflow) {
		METRIC(c, forwarded_ignored);
		log_addr("forwarded header ignored", &c->addr, NULL);
	}
	gw_query_t *q = gw_query_new(c->w, GW_PROTO_DOH, &doh_ops, s,
				     (struct sockaddr *)&client,
				     client.ss_family == AF_INET6
					     ? sizeof(struct sockaddr_in6)
					     : sizeof(struct sockaddr_in));
	if (!q) {
		respond(s, 503, NULL, 0, 0);
		return;
	}
	memcpy(copy, msg, len);
	gw_doh_req_deinit(&s->req); /* the body is not needed any more */
	gw_buf_init(&s->req.msg, GW_DNS_MAX_MSG);
	s->q = q;
	c->inflight++;
	/* may answer at once (FORMERR, NOTIMP for AXFR): on_answer copes */
	gw_query_start(q, copy, len);
}

/* ------------------------------------------------------------ HTTP/2 */

/* ENHANCE_YOUR_CALM (RFC 9113 7) and no more reading. */
static void h2_calm(doh_conn_t *c, const char *why)
{
	if (c->close_after_flush)
		return;
	gw_log(GW_LOG_INFO, "doh", "client misbehaves, closing", "reason", why,
	       NULL);
	METRIC(c, goaway_calm);
	nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(c->h2),
			      NGHTTP2_ENHANCE_YOUR_CALM, NULL, 0);
	c->goaway = true;
	c->close_after_flush = true;
}

static int on_begin_headers(nghttp2_session *session,
			    const nghttp2_frame *frame, void *ud)
{
	doh_conn_t *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (c->goaway)
		return 0; /* ignored: past our GOAWAY */
	unsigned max = c->w->conf->limits.max_inflight_per_conn;
	if (c->n_streams + c->n_orphans >= max) {
		/* reset streams still in flight count (Rapid Reset) */
		double now = c->w->now;
		c->refuse_tokens += (now - c->t_refill) * REFUSE_RATE;
		if (c->refuse_tokens > REFUSE_BURST)
			c->refuse_tokens = REFUSE_BURST;
		c->t_refill = now;
		METRIC(c, refused_streams);
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
					  frame->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		if ((c->refuse_tokens -= 1) < 0)
			h2_calm(c, "too many refused streams");
		return 0;
	}
	doh_stream_t *s = stream_new(c, frame->hd.stream_id);
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
		     const uint8_t *name, size_t nlen, const uint8_t *value,
		     size_t vlen, uint8_t flags, void *ud)
{
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	doh_stream_t *s = nghttp2_session_get_stream_user_data(
		session, frame->hd.stream_id);
	if (!s || s->responded)
		return 0;
	gw_doh_req_header(&s->req, (const char *)name, nlen,
			  (const char *)value, vlen);
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags,
			 int32_t id, const uint8_t *data, size_t len, void *ud)
{
	doh_stream_t *s = nghttp2_session_get_stream_user_data(session, id);
	if (!s || s->responded)
		return 0;
	int st = gw_doh_req_body(&s->req, data, len);
	if (st)
		respond_error(s, st);
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
			 void *ud)
{
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	doh_stream_t *s = nghttp2_session_get_stream_user_data(
		session, frame->hd.stream_id);
	if (!s || s->responded)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
		/* decide what can be decided before any body arrives */
		int st = gw_doh_req_headers_done(&s->req);
		if (st) {
			respond_error(s, st);
			return 0;
		}
	}
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		request_done(s);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id,
			   uint32_t error_code, void *ud)
{
	doh_conn_t *c = ud;
	doh_stream_t *s = nghttp2_session_get_stream_user_data(session, id);
	if (!s || c->freeing)
		return 0;
	if (s->q) {
		/* Rapid Reset: keep it counted until the upstream is done */
		s->orphan = true;
		c->n_streams--;
		c->n_orphans++;
		METRIC(c, reset_in_flight);
		return 0;
	}
	stream_free(s);
	return 0;
}

/*
 * nghttp2's memory. A session keeps a 16 KiB outbound frame buffer for its
 * whole life, though an idle connection's frames (SETTINGS, their ACK,
 * WINDOW_UPDATE) fill a few dozen bytes of it. Allocations this big come
 * from mmap, so only the pages written become resident: one page of four
 * for an idle connection, where a malloc'd block reuses memory the TLS
 * handshake just freed and is resident at once (bench/doh.sh idle). Every
 * block carries its size in front, which is how free() tells the kinds
 * apart.
 */
#define H2_HDR 16 /* keeps malloc's 16-byte alignment */
#define H2_MMAP_MIN 8192

static void *h2_malloc(size_t n, void *ud)
{
	uint8_t *p;

	(void)ud;
	if (n > SIZE_MAX - H2_HDR)
		return NULL;
	if (n >= H2_MMAP_MIN) {
		p = mmap(NULL, n + H2_HDR, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
	} else if (!(p = malloc(n + H2_HDR))) {
		return NULL;
	}
	memcpy(p, &n, sizeof(n));
	return p + H2_HDR;
}

static size_t h2_size(void *ptr)
{
	size_t n;
	memcpy(&n, (uint8_t *)ptr - H2_HDR, sizeof(n));
	return n;
}

static void h2_free(void *ptr, void *ud)
{
	(void)ud;
	if (!ptr)
		return;
	size_t n = h2_size(ptr);
	if (n >= H2_MMAP_MIN)
		munmap((uint8_t *)ptr - H2_HDR, n + H2_HDR);
	else
		free((uint8_t *)ptr - H2_HDR);
}

static void *h2_calloc(size_t nmemb, size_t size, void *ud)
{
	if (size && nmemb > SIZE_MAX / size)
		return NULL;
	size_t n = nmemb * size;
	void *p = h2_malloc(n, ud);
	if (p && n < H2_MMAP_MIN) /* mapped pages come zeroed */
		memset(p, 0, n);
	return p;
}

static void *h2_realloc(void *ptr, size_t n, void *ud)
{
	if (!ptr)
		return h2_malloc(n, ud);
	size_t old = h2_size(ptr);
	if (old < H2_MMAP_MIN && n < H2_MMAP_MIN) {
		uint8_t *p = realloc((uint8_t *)ptr - H2_HDR, n + H2_HDR);
		if (!p)
			return NULL;
		memcpy(p, &n, sizeof(n));
		return p + H2_HDR;
	}
	void *q = h2_malloc(n, ud);
	if (!q)
		return NULL;
	memcpy(q, ptr, old < n ? old : n);
	h2_free(ptr, ud);
	return q;
}

static int h2_start(doh_conn_t *c)
{
	nghttp2_mem mem = {.malloc = h2_malloc,
			   .free = h2_free,
			   .calloc = h2_calloc,
			   .realloc = h2_realloc};
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	int r;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return GW_ENOMEM;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb,
								on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb,
								  on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
							       on_stream_close);
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cb);
		return GW_ENOMEM;
	}
	nghttp2_option_set_max_outbound_ack(opt, MAX_OUTBOUND_ACK);
	nghttp2_option_set_max_settings(opt, MAX_SETTINGS);
	nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
	nghttp2_option_set_stream_reset_rate_limit(opt, RST_BURST, RST_RATE);
	nghttp2_option_set_no_closed_streams(opt, 1);
	r = nghttp2_session_server_new3(&c->h2, cb, c, opt, &mem);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	if (r != 0)
		return GW_ENOMEM;

	/* RFC 9113 6.5.2: our limits in the first SETTINGS */
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		  c->w->conf->limits.max_inflight_per_conn },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		  GW_DOH_MAX_HEADER_BYTES },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	r = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0]));
	if (r != 0)
		return GW_ENOMEM;
	c->mode = MODE_H2;
	c->refuse_tokens = REFUSE_BURST;
	c->t_refill = c->w->now;
	return 0;
}

static void h2_recv(doh_conn_t *c, const uint8_t *data, size_t len)
{
	c->in_recv = true;
	ssize_t r = nghttp2_session_mem_recv(c->h2, data, len);
	c->in_recv = false;
	if (r < 0) {
		gw_log(GW_LOG_DEBUG, "doh", "http/2 protocol error", "error",
		       nghttp2_strerror((int)r), NULL);
		/* nghttp2 may have queued a GOAWAY: send it, then close */
		if (r == NGHTTP2_ERR_FLOODED)
			METRIC(c, goaway_calm);
		c->close_after_flush = true;
		h2_pump(c);
		return;
	}
	h2_pump(c);
}

/* ---------------------------------------------------------- HTTP/1.1 */

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch);
}

/* An error before a stream exists (head unparsable or too large). */
static void h1_fail(doh_conn_t *c, int status)
{
	doh_stream_t *s = stream_new(c, 0);
	if (!s) {
		conn_close(c, "out of memory");
		return;
	}
	respond(s, status, NULL, 0, 0);
	stream_free(s);
	c->close_after_flush = true;
}

/* Parses the head in [p, p+n) (ending with the empty line) into s.
 * Returns 0 or an HTTP status. */
static int h1_parse_head(doh_conn_t *c, doh_stream_t *s, const char *p,
			 size_t n)
{
	const char *end = p + n;
	const char *eol = memmem(p, n, "\r\n", 2);
	/* request-line = method SP request-target SP HTTP-version */
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || sp1 == p)
		return 400;
	const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1)
		return 400;
	const char *ver = sp2 + 1;
	size_t vlen = (size_t)(eol - ver);
	bool http10;
	if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
		http10 = false;
	else if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
		http10 = true;
	else
		return 400;
	for (const char *m = p; m < sp1; m++)
		if (!is_tchar((unsigned char)*m))
			return 400;
	int st = gw_doh_req_header(&s->req, ":method", 7, p, (size_t)(sp1 - p));
	if (!st)
		st = gw_doh_req_header(&s->req, ":path", 5, sp1 + 1,
				       (size_t)(sp2 - sp1 - 1));
	if (st)
		return st;

	bool keep_alive = !http10;
	const char *line = eol + 2;
	while (line < end) {
		const char *le = memmem(line, (size_t)(end - line), "\r\n", 2);
		if (!le)
			return 400;
		if (le == line)
			break; /* the empty line */
		/* RFC 9112 5.2: obsolete line folding is rejected */
		if (*line == ' ' || *line == '\t')
			return 400;
		const char *colon = memchr(line, ':', (size_t)(le - line));
		if (!colon || colon == line)
			return 400;
		for (const char *k = line; k < colon; k++)
			if (!is_tchar((unsigned char)*k))
				return 400; /* incl. space before the colon */
		const char *v = colon + 1;
		size_t nlen = (size_t)(colon - line), vl = (size_t)(le - v);
		for (size_t i = 0; i < vl; i++)
			if (v[i] == '\0' || v[i] == '\r' || v[i] == '\n')
				return 400;
		st = gw_doh_req_header(&s->req, line, nlen, v, vl);
		if (st)
			return st;
		if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
			while (vl && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			if (vl >= 5 && strncasecmp(v, "close", 5) == 0)
				keep_alive = false;
			else if (vl >= 10 &&
				 strncasecmp(v, "keep-alive", 10) == 0)
				keep_alive = true;
		}
		line = le + 2;
	}
	if (!keep_alive)
		c->h1_close = true;
	return 0;
}

/* Serves complete requests from c->in, one at a time, in order. */
static void h1_process(doh_conn_t *c)
{
	while (!c->closing && !c->close_after_flush &&
	       gw_buf_size(conn_out(c)) < OUT_HIGH) {
		if (c->h1cur && c->h1cur->q)
			return; /* answers go out in request order */
		if (c->h1cur && c->h1cur->responded)
			return;
		if (c->h1_close && !c->h1cur)
			return;
		const char *p = (const char *)gw_buf_head(&c->in);
		size_t n = gw_buf_size(&c->in);
		if (!c->h1cur) {
			if (n == 0)
				break;
			size_t look = n < H1_HEAD_MAX ? n : H1_HEAD_MAX;
			const char *e = memmem(p, look, "\r\n\r\n", 4);
			if (!e) {
				if (n < H1_HEAD_MAX)
					break; /* wait for the rest */
				/* a request line alone past the cap: 414 */
				h1_fail(c, memmem(p, look, "\r\n", 2) ? 431
								      : 414);
				return;
			}
			size_t hlen = (size_t)(e - p) + 4;
			doh_stream_t *s = stream_new(c, 0);
			if (!s) {
				conn_close(c, "out of memory");
				return;
			}
			c->h1cur = s;
			int st = h1_parse_head(c, s, p, hlen);
			gw_buf_consume(&c->in, hlen);
			if (!st)
				st = gw_doh_req_headers_done(&s->req);
			if (st) {
				respond(s, st, NULL, 0, 0);
				stream_free(s);
				c->close_after_flush = true;
				return;
			}
			c->h1_need = s->req.method == GW_DOH_M_POST
					     ? (size_t)s->req.content_length
					     : 0;
			c->t_partial = c->w->now;
			continue;
		}
		/* the body (Content-Length framing only) */
		if (n < c->h1_need)
			break;
		doh_stream_t *s = c->h1cur;
		int st = gw_doh_req_body(&s->req, (const uint8_t *)p,
					 c->h1_need);
		gw_buf_consume(&c->in, c->h1_need);
		c->h1_need = 0;
		if (st) {
			respond(s, st, NULL, 0, 0);
			stream_free(s);
			c->close_after_flush = true;
			return;
		}
		request_done(s); /* may free s */
		if (c->h1cur == s && s->responded && !s->q) {
			/* answered with an error status by request_done */
			stream_free(s);
			c->close_after_flush = true;
			return;
		}
	}
	if (gw_buf_size(&c->in) == 0)
		gw_buf_shrink(&c->in);
}

/* ------------------------------------------------------------ reading */

/* Plaintext from the client, in whatever mode the connection is. */
static void conn_input(doh_conn_t *c, const uint8_t *data, size_t len)
{
	if (c->mode == MODE_H2) {
		h2_recv(c, data, len);
		return;
	}
	if (gw_buf_append(&c->in, data, len) < 0) {
		conn_close(c, "input buffer full");
		return;
	}
	if (c->mode == MODE_SNIFF) {
		/* prior-knowledge h2 (RFC 9113 3.3) or else HTTP/1.1 */
		size_t n = gw_buf_size(&c->in);
		size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
		if (memcmp(gw_buf_head(&c->in), h2_preface, k) != 0) {
			c->mode = MODE_H1;
		} else if (n >= H2_PREFACE_LEN) {
			if (h2_start(c) < 0) {
				conn_close(c, "out of memory");
				return;
			}
			h2_recv(c, gw_buf_head(&c->in), n);
			gw_buf_consume(&c->in, n);
			gw_buf_shrink(&c->in);
			return;
		} else {
			return;
		}
	}
	h1_process(c);
}

/* After the TLS handshake: ALPN decides, no ALPN means sniffing. */
static void conn_handshaken(doh_conn_t *c)
{
	const char *alpn = gw_tls_alpn(c->tls);
	c->handshake_done = true;
	gw_wm_handshake(&c->w->metrics, c->l->ep->proto, true);
	gw_log(GW_LOG_DEBUG, "doh", "handshake done", "alpn", alpn, "version",
	       gw_tls_version(c->tls), NULL);
	if (strcmp(alpn, "h2") == 0) {
		if (h2_start(c) < 0)
			conn_close(c, "out of memory");
		else
			h2_pump(c); /* our SETTINGS right away */
	} else if (strcmp(alpn, "http/1.1") == 0) {
		c->mode = MODE_H1;
	}
}

static bool conn_read(doh_conn_t *c)
{
	uint8_t chunk[READ_CHUNK];
	ssize_t n = recv(c->fd, chunk, sizeof(chunk), MSG_DONTWAIT);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		conn_close(c, "read error");
		return false;
	}
	if (n == 0)
		c->eof = true;
	if (n > 0)
		c->t_active = c->w->now;
	if (!c->tls) {
		if (n > 0)
			conn_input(c, chunk, (size_t)n);
		if (!c->closing)
			conn_flush(c);
		return !c->closing;
	}
	if (n > 0 && gw_tls_feed(c->tls, chunk, (size_t)n) < 0) {
		conn_close(c, "tls input buffer full");
		return false;
	}
	while (!c->closing && !c->close_after_flush) {
		/* HTTP/1.1 holds at most one request plus a read in c->in */
		if (c->mode != MODE_H2 &&
		    gw_buf_size(&c->in) + READ_CHUNK > H1_IN_MAX)
			break;
		if (c->mode == MODE_H2 &&
		    gw_buf_size(conn_out(c)) >= OUT_HIGH)
			break;
		ssize_t r = gw_tls_read(c->tls, chunk, sizeof(chunk));
		if (!c->handshake_done && gw_tls_handshake_done(c->tls))
			conn_handshaken(c);
		if (r > 0) {
			conn_input(c, chunk, (size_t)r);
			continue;
		}
		if (r == 0)
			break;
		if (r == GW_ECLOSED) {
			c->eof = true;
			break;
		}
		conn_flush(c);
		conn_close(c, "tls error");
		return false;
	}
	if (!c->closing)
		conn_flush(c);
	return !c->closing;
}

/* ------------------------------------------------------ the timer */

static bool conn_idle(doh_conn_t *c)
{
	return c->inflight == 0 && gw_buf_size(conn_out(c)) == 0 &&
	       c->n_responding == 0 &&
	       (c->mode == MODE_H2 || (!c->h1cur && gw_buf_size(&c->in) == 0));
}

static double conn_deadline(doh_conn_t *c, const char **what)
{
	const gw_limits_conf_t *lim = &c->w->conf->limits;
	double d = INFINITY;
	*what = "";
	if (c->tls && !c->handshake_done) {
		*what = "handshake timeout";
		return c->t_accept + lim->handshake_timeout_ms / 1000.0;
	}
	/* bytes the socket does not take, or responses the client's flow
	 * control windows hold back: either way it is not reading */
	if (gw_buf_size(conn_out(c)) > 0 || c->n_responding > 0) {
		d = c->t_write + lim->write_timeout_ms / 1000.0;
		*what = "write stalled";
	}
	/* a started HTTP/1.1 request must arrive in time (slowloris) */
	if (c->mode != MODE_H2 && gw_buf_size(&c->in) > 0 &&
	    !(c->h1cur && c->h1cur->q)) {
		double p = (c->h1cur ? c->t_partial : c->t_active) +
			   lim->partial_timeout_ms / 1000.0;
		if (p < d) {
			d = p;
			*what = "partial request timeout";
		}
	}
	if (conn_idle(c)) {
		double i = c->t_active + lim->doh_idle_timeout_ms / 1000.0;
		if (c->w->draining)
			i = c->w->now;
		if (i < d) {
			d = i;
			*what = "idle timeout";
		}
	}
	return d;
}

/* Graceful end: GOAWAY (h2) and close once everything is out. */
static void conn_goaway(doh_conn_t *c, const char *why)
{
	if (c->mode == MODE_H2 && c->h2 && !c->goaway) {
		gw_log(GW_LOG_DEBUG, "doh", "sending GOAWAY", "reason", why,
		       NULL);
		nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(c->h2),
				      NGHTTP2_NO_ERROR, NULL, 0);
		c->goaway = true;
		h2_pump(c);
	}
	if (c->mode != MODE_H2)
		c->h1_close = true;
}

static void conn_update(doh_conn_t *c)
{
	gw_worker_t *w = c->w;
	if (c->closing)
		return;
	bool out_empty = gw_buf_size(conn_out(c)) == 0;
	bool busy = c->inflight > 0 || c->n_streams > 0 || c->n_orphans > 0;

	if (w->draining && !c->goaway && (c->handshake_done || !c->tls))
		conn_goaway(c, "draining");
	if (c->closing)
		return;
	out_empty = gw_buf_size(conn_out(c)) == 0;
	if (c->close_after_flush && out_empty) {
		if (c->tls && c->handshake_done) {
			/* RFC 8446 6.1: a graceful end, best effort */
			gw_tls_close(c->tls);
			conn_flush(c);
		}
		conn_close(c, "done");
		return;
	}
	if ((c->eof || c->goaway || (c->h1_close && !c->h1cur) ||
	     (w->draining && c->mode != MODE_H2)) &&
	    !busy && out_empty && (c->mode == MODE_H2 || !c->h1cur)) {
		conn_close(c, c->eof ? "client closed" : "finished");
		return;
	}
	if (c->mode == MODE_H2 && out_empty &&
	    !nghttp2_session_want_read(c->h2) &&
	    !nghttp2_session_want_write(c->h2) && c->inflight == 0) {
		conn_close(c, "http/2 session over");
		return;
	}
	bool want_read = !c->eof && !c->close_after_flush &&
			 !(c->h1_close && c->mode != MODE_H2) &&
			 gw_buf_size(conn_out(c)) < OUT_HIGH &&
			 !(c->mode == MODE_H1 && c->h1cur && c->h1cur->q);
	if (want_read && !c->reading) {
		ev_io_start(w->loop, &c->rio);
		if (c->handshake_done || !c->tls)
			ev_feed_event(w->loop, &c->rio, EV_READ);
	} else if (!want_read && c->reading) {
		ev_io_stop(w->loop, &c->rio);
	}
	c->reading = want_read;

	const char *what;
	double d = conn_deadline(c, &what);
	ev_timer_stop(w->loop, &c->timer);
	if (isfinite(d)) {
		double after = d - w->now;
		ev_timer_set(&c->timer, after > 0 ? after : 0, 0);
		ev_timer_start(w->loop, &c->timer);
	}
}

static void conn_free(doh_conn_t *c)
{
	gw_worker_t *w = c->w;
	c->freeing = true;
	gw_worker_flush_cancel(w, &c->flush);
	while (c->streams) {
		doh_stream_t *s = c->streams;
		if (s->q) {
			gw_query_cancel(s->q);
			s->q = NULL;
			c->inflight--;
		}
		stream_free(s);
	}
	if (c->h2)
		nghttp2_session_del(c->h2);
	ev_io_stop(w->loop, &c->rio);
	ev_io_stop(w->loop, &c->wio);
	ev_timer_stop(w->loop, &c->timer);
	close(c->fd);
	gw_tls_free(c->tls);
	gw_buf_deinit(&c->in);
	gw_buf_deinit(&c->out);
	gw_connlimit_release(w->connlimit, (struct sockaddr *)&c->addr);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	gw_wm_conn_close(&w->metrics, c->l->ep->proto);
	if (c->tls && !c->handshake_done)
		gw_wm_handshake(&w->metrics, c->l->ep->proto, false);
	free(c);
	gw_worker_check_drained(w);
}

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	doh_conn_t *c = io->data;
	if (c->closing)
		return;
	if (!conn_read(c))
		return;
	conn_update(c);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
	doh_conn_t *c = io->data;
	if (c->closing)
		return;
	conn_flush(c);
	if (c->closing)
		return;
	h2_pump(c); /* room again: more frames, then reading resumes */
	if (c->mode == MODE_H1 && !c->closing)
		h1_process(c);
	if (!c->closing)
		conn_update(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	doh_conn_t *c = t->data;
	if (c->closing) {
		conn_free(c);
		return;
	}
	const char *what;
	double d = conn_deadline(c, &what);
	if (d <= c->w->now + 0.001) {
		if (strcmp(what, "idle timeout") == 0 && c->mode == MODE_H2 &&
		    !c->goaway) {
			/* REQUIREMENTS.md: idle GOAWAY, then close */
			conn_goaway(c, what);
			c->close_after_flush = true;
			conn_update(c);
			return;
		}
		conn_close(c, what);
		return;
	}
	conn_update(c);
}

static doh_conn_t *conn_new(gw_listener_t *l, int fd,
			    const struct sockaddr_storage *addr,
			    socklen_t addrlen, gw_tls_t *tls)
{
	gw_worker_t *w = l->worker;
	doh_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->flush.fn = on_flush;
	c->l = l;
	c->fd = fd;
	c->tls = tls;
	memcpy(&c->addr, addr, addrlen);
	c->addrlen = addrlen;
	gw_buf_init(&c->in, H1_IN_MAX);
	gw_buf_init(&c->out, OUT_MAX);
	c->t_accept = c->t_active = c->t_write = w->now;
	c->mode = MODE_SNIFF;
	ev_io_init(&c->rio, on_read, fd, EV_READ);
	ev_io_init(&c->wio, on_write, fd, EV_WRITE);
	ev_init(&c->timer, on_timer);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	w->n_conns++;
	gw_wm_conn_open(&w->metrics, l->ep->proto);
	METRIC(c, connections);
	return c;
}

void gw_doh_adopt(gw_listener_t *l, int fd, const struct sockaddr_storage *addr,
		  socklen_t addrlen, gw_tls_t *tls, const uint8_t *data,
		  size_t len)
{
	doh_conn_t *c = conn_new(l, fd, addr, addrlen, tls);
	if (!c) {
		gw_tls_free(tls);
		gw_connlimit_release(l->worker->connlimit,
				     (const struct sockaddr *)addr);
		close(fd);
		return;
	}
	conn_handshaken(c);
	if (!c->closing && len > 0)
		conn_input(c, data, len);
	if (!c->closing)
		conn_flush(c);
	if (!c->closing) {
		conn_update(c);
		/* records already inside TLS raise no socket event: look now */
		ev_feed_event(c->w->loop, &c->rio, EV_READ);
	}
}

static void on_conn(gw_listener_t *l, int fd, struct sockaddr_storage *addr,
		    socklen_t alen)
{
	gw_tls_t *tls = NULL;
	if (l->ep->proto == GW_PROTO_DOH) {
		tls = gw_tls_new(l->certs, OUT_MAX);
		if (!tls)
			goto fail;
	}
	doh_conn_t *c = conn_new(l, fd, addr, alen, tls);
	if (!c) {
		gw_tls_free(tls);
		goto fail;
	}
	conn_update(c);
	return;
fail:
	gw_connlimit_release(l->worker->connlimit, (struct sockaddr *)addr);
	close(fd);
}

static int doh_listener_start(gw_listener_t *l)
{
	gw_listener_accept_start(l, on_conn);
	return 0;
}

static void doh_drain(gw_worker_t *w)
{
	doh_conn_t *next;
	for (doh_conn_t *c = conns; c; c = next) {
		next = c->next;
		conn_update(c);
	}
}

static void doh_close_all(gw_worker_t *w)
{
	while (conns)
		conn_free(conns);
}

const gw_listener_ops_t gw_doh_listener_ops = {
	.start = doh_listener_start,
	.drain = doh_drain,
	.close_all = doh_close_all,
};
