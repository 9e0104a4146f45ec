/*
 * stream.c - DNS over TCP and DNS over TLS connections (see stream.h).
 *
 * Reading:  socket -> [TLS decrypt] -> c->in -> frames -> gw_query_start()
 * Writing:  on_answer() -> frame -> c->out -> [TLS encrypt] -> socket
 *
 * Answers are gathered per connection and sent once per loop iteration (an
 * ev_prepare watcher, or at once past STAGE_FLUSH bytes): the answers that
 * came back together share one TLS record and one send() instead of one
 * each. For TLS, c->out holds that plaintext until it is encrypted.
 *
 * Frames are taken in a loop, never by recursion, so a connection carrying
 * any number of queries uses constant stack. When the connection has
 * max_inflight_per_conn queries in flight, or its output is backed up, it
 * stops reading: the kernel's window then throttles the client.
 */
#include "stream.h"

#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/query.h"
#include "transports/doh.h"
#include "transports/frame.h"
#include "transports/tls.h"

#define READ_CHUNK 16384
#define IN_MAX (2 + 65535 + READ_CHUNK)
#define OUT_MAX (256 * 1024)  /* past this the client is not reading: close */
#define OUT_HIGH (64 * 1024)  /* above this stop taking new queries */
#define STAGE_FLUSH 16384     /* gathered answers: one full TLS record */

typedef struct gw_stream_conn {
	gw_worker_t *w;
	gw_listener_t *l;
	int fd;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	ev_io rio, wio;
	ev_timer timer;
	gw_tls_t *tls; /* NULL for plain TCP */
	gw_buf_t in;   /* plaintext, framed */
	gw_buf_t out;  /* plaintext TCP output (TLS keeps its own) */
	gw_query_t *queries; /* in flight, owned by the pipeline */
	unsigned inflight;
	unsigned partial_reads; /* read events without completing a query */
	double t_accept, t_active, t_partial, t_write;
	bool handshake_done;
	bool reading;
	bool processing; /* inside conn_process: no nested frame taking */
	bool eof;     /* client closed its side, or we stopped taking queries */
	bool closing; /* free at the next timer callback */
	gw_flush_t flush; /* answers gathered: sent before the loop waits */
	struct gw_stream_conn *next, *prev;
} gw_stream_conn_t;

static void conn_update(gw_stream_conn_t *c);
static void conn_process(gw_stream_conn_t *c);

static gw_buf_t *conn_out(gw_stream_conn_t *c)
{
	return c->tls ? gw_tls_out(c->tls) : &c->out;
}

/* Output not yet taken by the socket: for TLS also the plaintext gathered
 * but not yet encrypted. */
static size_t out_size(gw_stream_conn_t *c)
{
	return gw_buf_size(conn_out(c)) + (c->tls ? gw_buf_size(&c->out) : 0);
}

/* A whole frame waits in c->in to be taken. */
static bool frame_ready(const gw_stream_conn_t *c)
{
	const uint8_t *msg;
	size_t len;
	return gw_frame_next(gw_buf_head(&c->in), gw_buf_size(&c->in), &msg,
			     &len) > 0;
}

/* Bytes of a message wait for the rest (not merely unprocessed frames). */
static bool frame_incomplete(const gw_stream_conn_t *c)
{
	const uint8_t *msg;
	size_t len;
	return gw_buf_size(&c->in) > 0 &&
	       gw_frame_next(gw_buf_head(&c->in), gw_buf_size(&c->in), &msg,
			     &len) == 0;
}

/* Frees happen only here, in the connection's own timer callback. */
static void conn_free(gw_stream_conn_t *c)
{
	gw_worker_t *w = c->w;
	gw_worker_flush_cancel(w, &c->flush);
	while (c->queries) {
		gw_query_t *q = c->queries;
		c->queries = q->next;
		gw_query_cancel(q);
	}
	ev_io_stop(w->loop, &c->rio);
	ev_io_stop(w->loop, &c->wio);
	ev_timer_stop(w->loop, &c->timer);
	close(c->fd);
	if (c->tls)
		gw_tls_free(c->tls);
	gw_buf_deinit(&c->in);
	gw_buf_deinit(&c->out);
	gw_connlimit_release(w->connlimit, (struct sockaddr *)&c->addr);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	gw_wm_conn_close(&w->metrics, c->l->ep->proto);
	if (c->tls && !c->handshake_done)
		gw_wm_handshake(&w->metrics, c->l->ep->proto, false);
	free(c);
	gw_worker_check_drained(w);
}

static void conn_close(gw_stream_conn_t *c, const char *why)
{
	if (c->closing)
		return;
	gw_log(GW_LOG_DEBUG, "stream", "closing connection", "reason", why,
	       NULL);
	c->closing = true;
	ev_io_stop(c->w->loop, &c->rio);
	ev_io_stop(c->w->loop, &c->wio);
	ev_feed_event(c->w->loop, &c->timer, EV_TIMER);
}

/* Writes what the socket takes; the rest waits for EV_WRITE. */
static void conn_flush(gw_stream_conn_t *c)
{
	gw_buf_t *out = conn_out(c);
	if (c->tls && gw_buf_size(&c->out) > 0) {
		/* the gathered answers, in as few records as they fit */
		int r = gw_tls_write(c->tls, gw_buf_head(&c->out),
				     gw_buf_size(&c->out));
		if (r < 0) {
			conn_close(c, r == GW_ETOOBIG ? "client not reading"
						      : "write failed");
			return;
		}
		gw_buf_consume(&c->out, gw_buf_size(&c->out));
		gw_buf_shrink(&c->out);
	}
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

/* gw_worker_flush: the answers gathered in this loop iteration leave in
 * one write. */
static void on_flush(gw_flush_t *f)
{
	gw_stream_conn_t *c =
	    (gw_stream_conn_t *)((char *)f - offsetof(gw_stream_conn_t, flush));

	if (c->closing)
		return;
	conn_flush(c);
	/* output drained below the mark: take queries again */
	if (!c->closing && frame_ready(c))
		conn_process(c);
	if (!c->closing)
		conn_update(c);
}

static void stream_on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_stream_conn_t *c = q->client;

	if (q->prev)
		q->prev->next = q->next;
	else
		c->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	c->inflight--;
	if (c->closing)
		return;

	/* RFC 7766 8: prefix and message in one write (one TLS record),
	 * together with the other answers ready in this loop iteration */
	if (out_size(c) == 0)
		c->t_write = c->w->now; /* the stall clock starts now */
	int r = gw_buf_reserve(&c->out, len + 2);
	if (r < 0) {
		conn_close(c, r == GW_ETOOBIG ? "client not reading"
					      : "write failed");
		return;
	}
	uint8_t *t = gw_buf_tail(&c->out);
	t[0] = (uint8_t)(len >> 8);
	t[1] = (uint8_t)len;
	memcpy(t + 2, msg, len);
	c->out.len += len + 2;
	if (gw_buf_size(&c->out) >= STAGE_FLUSH)
		conn_flush(c); /* a full record's worth: no need to wait */
	else
		gw_worker_flush(c->w, &c->flush);
	/* a freed slot may let waiting frames in (also after a half-close) */
	if (!c->closing && frame_ready(c))
		conn_process(c);
	if (!c->closing)
		conn_update(c);
}

static const gw_query_client_ops_t stream_ops = {.on_answer = stream_on_answer};

/* Takes every complete frame out of c->in while the caps allow. */
static void conn_process(gw_stream_conn_t *c)
{
	const gw_limits_conf_t *lim = &c->w->conf->limits;
	/* A query answered at once calls back into stream_on_answer, which
	 * must not take frames while this loop holds one. */
	if (c->processing)
		return;
	c->processing = true;
	/* Frames that arrived before the client half-closed still count
	 * (RFC 7766 6.2.4); only a drain stops taking them. */
	while (!c->closing && !c->w->draining &&
	       c->inflight < lim->max_inflight_per_conn &&
	       out_size(c) < OUT_HIGH) {
		const uint8_t *msg;
		size_t len;
		int r = gw_frame_next(gw_buf_head(&c->in), gw_buf_size(&c->in),
				      &msg, &len);
		if (r < 0) {
			conn_close(c, "frame shorter than a DNS header");
			break;
		}
		if (r == 0)
			break;
		c->partial_reads = 0;
		gw_query_t *q = gw_query_new(c->w, c->tls ? GW_PROTO_DOT
							  : GW_PROTO_TCP,
					     &stream_ops, c,
					     (struct sockaddr *)&c->addr,
					     c->addrlen);
		if (!q) {
			conn_close(c, "out of memory");
			break;
		}
		q->next = c->queries;
		if (c->queries)
			c->queries->prev = q;
		c->queries = q;
		c->inflight++;
		/* may answer at once (local errors): stream_on_answer copes */
		gw_query_start(q, msg, len);
		gw_buf_consume(&c->in, (size_t)r);
		c->t_partial = c->w->now;
	}
	c->processing = false;
	if (gw_buf_size(&c->in) == 0)
		gw_buf_shrink(&c->in);
}

static bool is_http_alpn(const char *alpn)
{
	return strcmp(alpn, "h2") == 0 || strcmp(alpn, "http/1.1") == 0;
}

/* DoT and DoH on one port: the handshake chose HTTP, so the connection (its
 * socket, TLS state, connection-limit slot and the plaintext read so far)
 * moves to transports/doh.c and this object goes away. Called from on_read
 * only, which returns at once. */
static void conn_hand_to_doh(gw_stream_conn_t *c, const uint8_t *data,
			     size_t len)
{
	gw_worker_t *w = c->w;
	gw_worker_flush_cancel(w, &c->flush);
	ev_io_stop(w->loop, &c->rio);
	ev_io_stop(w->loop, &c->wio);
	ev_timer_stop(w->loop, &c->timer);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->n_conns--;
	gw_wm_conn_close(&w->metrics, c->l->ep->proto); /* DoH counts it */
	gw_doh_adopt(c->l->shared_doh, c->fd, &c->addr, c->addrlen, c->tls,
		     data, len);
	gw_buf_deinit(&c->in);
	gw_buf_deinit(&c->out);
	free(c);
}

/* Reads from the socket into c->in (through TLS when present).
 * Returns false when the connection is done for. */
static bool conn_read(gw_stream_conn_t *c)
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
		if (n > 0 && gw_buf_append(&c->in, chunk, (size_t)n) < 0) {
			conn_close(c, "input buffer full");
			return false;
		}
		return true;
	}
	/* Decrypt even without new bytes: records read earlier may still
	 * wait inside TLS after reading was paused. */
	if (n > 0 && gw_tls_feed(c->tls, chunk, (size_t)n) < 0) {
		conn_close(c, "tls input buffer full");
		return false;
	}
	for (;;) {
		if (gw_buf_reserve(&c->in, READ_CHUNK) < 0)
			break; /* in is full: frames must be taken first */
		ssize_t r = gw_tls_read(c->tls, gw_buf_tail(&c->in),
					gw_buf_room(&c->in));
		if (!c->handshake_done && gw_tls_handshake_done(c->tls)) {
			c->handshake_done = true;
			gw_log(GW_LOG_DEBUG, "dot", "handshake done", "alpn",
			       gw_tls_alpn(c->tls), "version",
			       gw_tls_version(c->tls), NULL);
			if (c->l->shared_doh && is_http_alpn(gw_tls_alpn(c->tls))) {
				conn_hand_to_doh(c, gw_buf_tail(&c->in),
						 r > 0 ? (size_t)r : 0);
				return false;
			}
			gw_wm_handshake(&c->w->metrics, c->l->ep->proto, true);
		}
		if (r > 0) {
			c->in.len += (size_t)r;
			continue;
		}
		if (r == 0)
			break;
		if (r == GW_ECLOSED) {
			c->eof = true;
			break;
		}
		conn_flush(c); /* send the alert, if any */
		conn_close(c, "tls error");
		return false;
	}
	conn_flush(c); /* handshake messages */
	return !c->closing;
}

/* One timer per connection, set to the earliest deadline that applies. */
static double conn_deadline(gw_stream_conn_t *c, const char **what)
{
	const gw_limits_conf_t *lim = &c->w->conf->limits;
	double d = INFINITY;
	*what = "";
	if (c->tls && !c->handshake_done) {
		*what = "handshake timeout";
		return c->t_accept + lim->handshake_timeout_ms / 1000.0;
	}
	if (out_size(c) > 0) {
		d = c->t_write + lim->write_timeout_ms / 1000.0;
		*what = "write stalled";
	}
	if (c->reading && frame_incomplete(c)) {
		double p = c->t_partial + lim->partial_timeout_ms / 1000.0;
		if (p < d) {
			d = p;
			*what = "partial message timeout";
		}
	}
	if (c->inflight == 0 && out_size(c) == 0 &&
	    gw_buf_size(&c->in) == 0) {
		double i = c->t_active + lim->idle_timeout_ms / 1000.0;
		if (c->w->draining)
			i = c->w->now;
		if (i < d) {
			d = i;
			*what = "idle timeout";
		}
	}
	return d;
}

/* After any event: decide reading, closing and the next deadline. */
static void conn_update(gw_stream_conn_t *c)
{
	gw_worker_t *w = c->w;
	const gw_limits_conf_t *lim = &w->conf->limits;

	if (c->closing)
		return;
	if ((c->eof || w->draining) && c->inflight == 0 &&
	    out_size(c) == 0 &&
	    (w->draining || !frame_ready(c))) {
		conn_close(c, c->eof ? "client closed" : "draining");
		return;
	}
	bool want_read = !c->eof && !w->draining &&
			 c->inflight < lim->max_inflight_per_conn &&
			 out_size(c) < OUT_HIGH;
	if (want_read && !c->reading) {
		ev_io_start(w->loop, &c->rio);
		/* frames or records may already be buffered: look at them */
		if (c->handshake_done || !c->tls)
			ev_feed_event(w->loop, &c->rio, EV_READ);
	}
	else if (!want_read && c->reading)
		ev_io_stop(w->loop, &c->rio);
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

static void on_read(struct ev_loop *loop, ev_io *io, int revents)
{
	gw_stream_conn_t *c = io->data;
	const gw_limits_conf_t *lim = &c->w->conf->limits;

	if (c->closing)
		return;
	size_t before = gw_buf_size(&c->in);
	if (!conn_read(c))
		return;
	conn_process(c);
	if (c->closing)
		return;
	/* Slowloris: count read events that leave a message unfinished. */
	if (frame_incomplete(c)) {
		if (before == 0)
			c->t_partial = c->w->now;
		if (c->handshake_done || !c->tls) {
			if (++c->partial_reads > lim->max_read_events_per_query) {
				conn_close(c, "too many reads for one query");
				return;
			}
		}
	}
	conn_update(c);
}

static void on_write(struct ev_loop *loop, ev_io *io, int revents)
{
	gw_stream_conn_t *c = io->data;
	if (c->closing)
		return;
	conn_flush(c);
	if (c->closing)
		return;
	conn_process(c); /* output drained below the mark: take queries again */
	conn_update(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	gw_stream_conn_t *c = t->data;
	if (c->closing) {
		conn_free(c);
		return;
	}
	const char *what;
	double d = conn_deadline(c, &what);
	if (d <= c->w->now + 0.001) {
		conn_close(c, what);
		return;
	}
	conn_update(c);
}

static void conn_new(gw_listener_t *l, int fd, struct sockaddr_storage *addr,
		     socklen_t addrlen)
{
	gw_worker_t *w = l->worker;
	gw_stream_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	if (l->ep->proto == GW_PROTO_DOT) {
		c->tls = gw_tls_new(l->certs, OUT_MAX);
		if (!c->tls) {
			free(c);
			goto fail;
		}
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->l = l;
	c->fd = fd;
	c->flush.fn = on_flush;
	memcpy(&c->addr, addr, addrlen);
	c->addrlen = addrlen;
	gw_buf_init(&c->in, IN_MAX);
	gw_buf_init(&c->out, OUT_MAX);
	c->t_accept = c->t_active = w->now;
	ev_io_init(&c->rio, on_read, fd, EV_READ);
	ev_io_init(&c->wio, on_write, fd, EV_WRITE);
	ev_init(&c->timer, on_timer);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;
	gw_wm_conn_open(&w->metrics, l->ep->proto);
	conn_update(c);
	return;
fail:
	gw_connlimit_release(w->connlimit, (struct sockaddr *)addr);
	close(fd);
}

static int stream_listener_start(gw_listener_t *l)
{
	gw_listener_accept_start(l, conn_new);
	return 0;
}

static void stream_drain(gw_worker_t *w)
{
	for (gw_stream_conn_t *c = w->conns; c; c = c->next)
		conn_update(c);
}

static void stream_close_all(gw_worker_t *w)
{
	while (w->conns)
		conn_free(w->conns);
}

const gw_listener_ops_t gw_stream_listener_ops = {
	.start = stream_listener_start,
	.drain = stream_drain,
	.close_all = stream_close_all,
};
