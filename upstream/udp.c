/*
 * udp.c - classic DNS over UDP to an upstream: one fresh connected socket
 * per attempt. The kernel picks a random ephemeral source port for each
 * (RFC 5452 9.2: port and ID randomization against spoofing), and a
 * connected socket only delivers datagrams from the upstream's address.
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attempt.h"
#include "gateway/error.h"

/* Datagrams read per wakeup: a flood of junk must not starve the loop. */
#define UDP_READS_PER_EVENT 16

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	gw_up_query_t *uq = w->data;
	uint8_t *buf = gw_up_pool_rbuf(uq->pool);

	(void)loop;
	(void)revents;
	for (int i = 0; i < UDP_READS_PER_EVENT; i++) {
		ssize_t n = recv(uq->fd, buf, GW_DNS_MAX_MSG, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* ECONNREFUSED: ICMP port unreachable for our query. */
			gw_up_attempt_error(uq, -errno);
			return;
		}
		switch (gw_up_check_answer(&uq->sent, buf, (size_t)n, true,
					   NULL)) {
		case GW_UP_ANSWER:
			gw_up_attempt_answer(uq, buf, (size_t)n);
			return;
		case GW_UP_TRUNCATED:
			gw_up_attempt_truncated(uq);
			return;
		case GW_UP_IGNORE:
			/* Spoofed, stale or broken: keep waiting (REQUIREMENTS
			 * "DNS messages"); the attempt timer bounds this. */
			gw_up_debug(uq, "answer ignored", "no match");
			break;
		}
	}
}

int gw_up_udp_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	struct ev_loop *loop = gw_up_pool_loop(uq->pool);
	int fd, err;

	fd = socket(ep->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&ep->addr, ep->addrlen) < 0)
		goto fail;
	for (;;) {
		if (send(fd, uq->out + 2, uq->out_len, 0) >= 0)
			break;
		if (errno != EINTR)
			goto fail;
	}
	uq->fd = fd;
	ev_io_init(&uq->io, on_read, fd, EV_READ);
	uq->io.data = uq;
	ev_io_start(loop, &uq->io);
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

void gw_up_udp_stop(gw_up_query_t *uq)
{
	if (uq->fd < 0)
		return;
	ev_io_stop(gw_up_pool_loop(uq->pool), &uq->io);
	close(uq->fd);
	uq->fd = -1;
}
