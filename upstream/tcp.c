/*
 * tcp.c - classic DNS over TCP to an upstream (RFC 7766, RFC 1035 4.2.2:
 * 2-byte length prefix), used for tcp:// upstreams and for retrying a UDP
 * answer that came back with TC=1.
 *
 * For now one connection per attempt, closed when the attempt ends. The
 * pooled, pipelined connection manager (up to 100 queries per connection,
 * idle recycling, reconnect backoff) replaces gw_up_tcp_start() later behind
 * the same seam (attempt.h).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attempt.h"
#include "gateway/error.h"

/* Non-matching frames skipped per wakeup before yielding to the loop. */
#define TCP_FRAMES_PER_EVENT 16

static void watch(gw_up_query_t *uq, int events)
{
	struct ev_loop *loop = gw_up_pool_loop(uq->pool);

	ev_io_stop(loop, &uq->io);
	ev_io_set(&uq->io, uq->fd, events);
	ev_io_start(loop, &uq->io);
}

/* Returns 0 when everything is written, 1 to wait, or a negative error. */
static int do_write(gw_up_query_t *uq)
{
	size_t total = uq->out_len + 2;

	while (uq->wr_off < total) {
		/* Prefix and message in one write: one segment with NODELAY. */
		ssize_t n = send(uq->fd, uq->out + uq->wr_off,
				 total - uq->wr_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -errno;
		}
		uq->wr_off += (size_t)n;
	}
	return 0;
}

/*
 * Reads and judges framed answers. Returns 1 to keep waiting, or 0 when uq
 * was handed back to the pool (answered or failed: do not touch it).
 */
static int do_read(gw_up_query_t *uq)
{
	gw_buf_t *b = &uq->rd;
	int ignored = 0;

	for (;;) {
		size_t have = gw_buf_size(b), want;
		ssize_t n;

		if (have < 2) {
			want = 2 - have;
		} else {
			size_t len = gw_dns_get16(gw_buf_head(b));
			if (have >= 2 + len) {
				const uint8_t *msg = gw_buf_head(b) + 2;
				if (gw_up_check_answer(&uq->sent, msg, len,
						       false, NULL) ==
				    GW_UP_ANSWER) {
					gw_up_attempt_answer(uq, msg, len);
					return 0;
				}
				/* Not ours: skip it, keep reading until the
				 * attempt times out. */
				gw_up_debug(uq, "answer ignored", "no match");
				gw_buf_consume(b, 2 + len);
				/* A chatty upstream must not starve the loop:
				 * the watcher is level-triggered, come back. */
				if (++ignored >= TCP_FRAMES_PER_EVENT)
					return 1;
				continue;
			}
			want = 2 + len - have;
		}
		if (gw_buf_reserve(b, want) < 0) {
			gw_up_attempt_error(uq, GW_ENOMEM);
			return 0;
		}
		n = recv(uq->fd, gw_buf_tail(b), want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			gw_up_attempt_error(uq, -errno);
			return 0;
		}
		if (n == 0) {
			gw_up_attempt_error(uq, GW_ECLOSED);
			return 0;
		}
		b->len += (size_t)n;
	}
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	gw_up_query_t *uq = w->data;
	int r;

	(void)loop;
	if (!uq->connected && (revents & EV_WRITE)) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(uq->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			gw_up_attempt_error(uq, -soerr);
			return;
		}
		uq->connected = true;
	}
	if (revents & EV_WRITE) {
		r = do_write(uq);
		if (r < 0) {
			gw_up_attempt_error(uq, r);
			return;
		}
		if (r == 0)
			watch(uq, EV_READ);
		return;
	}
	if (revents & EV_READ)
		do_read(uq);
}

int gw_up_tcp_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	int fd, one = 1, err;

	fd = socket(ep->addr.ss_family,
		    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&ep->addr, ep->addrlen) < 0 &&
	    errno != EINPROGRESS) {
		err = -errno;
		close(fd);
		return err;
	}
	uq->fd = fd;
	uq->wr_off = 0;
	uq->connected = false;
	gw_buf_consume(&uq->rd, gw_buf_size(&uq->rd));
	/* Writable = connected (or failed: SO_ERROR tells). */
	ev_io_init(&uq->io, on_io, fd, EV_WRITE);
	uq->io.data = uq;
	ev_io_start(gw_up_pool_loop(uq->pool), &uq->io);
	return 0;
}

void gw_up_tcp_stop(gw_up_query_t *uq)
{
	if (uq->fd < 0 || uq->proto != GW_PROTO_TCP)
		return;
	ev_io_stop(gw_up_pool_loop(uq->pool), &uq->io);
	close(uq->fd);
	uq->fd = -1;
	uq->connected = false;
	/* uq->rd is left alone: the answer being delivered may live in it. */
}
