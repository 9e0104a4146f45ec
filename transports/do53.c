#include "do53.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "gateway/dns.h"
#include "gateway/log.h"
#include "gateway/policy.h"
#include "gateway/query.h"

#define BATCH 32
#define DGRAM_MAX 4096 /* queries are small; bigger datagrams are not DNS */

static void udp_on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_listener_t *l = q->client;
	socklen_t alen = q->client_addr.ss_family == AF_INET6
				 ? sizeof(struct sockaddr_in6)
				 : sizeof(struct sockaddr_in);
	/* A full socket buffer drops the answer, as a lost datagram would. */
	if (sendto(l->fd, msg, len, MSG_DONTWAIT,
		   (const struct sockaddr *)&q->client_addr, alen) < 0)
		gw_log(GW_LOG_DEBUG, "udp", "send failed", "error",
		       strerror(errno), NULL);
}

static const gw_query_client_ops_t udp_ops = {.on_answer = udp_on_answer};

static void on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	gw_listener_t *l = io->data;
	static __thread uint8_t bufs[BATCH][DGRAM_MAX];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_storage from[BATCH];

	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = DGRAM_MAX;
		memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &from[i];
		msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
	}
	int n = recvmmsg(l->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
	for (int i = 0; i < n; i++) {
		size_t len = msgs[i].msg_len;
		/* Too short for a header, or cut by the buffer: not a query we
		 * can answer; silence is the only safe reply over UDP. */
		if (len < GW_DNS_HEADER_LEN ||
		    (msgs[i].msg_hdr.msg_flags & MSG_TRUNC))
			continue;
		if (bufs[i][2] & 0x80) /* QR=1: never answer an answer */
			continue;
		/* ACL: a denied datagram is dropped, as a refused stream
		 * connection is closed (docs/policy.md) */
		if (!gw_policy_admit_dgram(l, (struct sockaddr *)&from[i]))
			continue;
		gw_query_t *q = gw_query_new(
			l->worker, GW_PROTO_UDP, &udp_ops, l,
			(struct sockaddr *)&from[i], msgs[i].msg_hdr.msg_namelen);
		if (!q)
			continue;
		gw_query_start(q, bufs[i], len);
	}
}

static int udp_listener_start(gw_listener_t *l)
{
	ev_io_init(&l->io, on_readable, l->fd, EV_READ);
	l->io.data = l;
	ev_io_start(l->worker->loop, &l->io);
	return 0;
}

/* Drain: no new queries; the socket stays open for in-flight answers. */
static void udp_drain(gw_worker_t *w)
{
	for (unsigned i = 0; i < w->n_listeners; i++)
		if (w->listeners[i].ops == &gw_udp_listener_ops)
			ev_io_stop(w->loop, &w->listeners[i].io);
}

const gw_listener_ops_t gw_udp_listener_ops = {
	.start = udp_listener_start,
	.drain = udp_drain,
};
