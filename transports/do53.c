#include "do53.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gateway/dns.h"
#include "gateway/log.h"
#include "gateway/policy.h"
#include "gateway/query.h"

#define BATCH 32
#define DGRAM_MAX 4096 /* queries are small; bigger datagrams are not DNS */
#define TX_MAX 64         /* answers per sendmmsg */
#define TX_BYTES 32768    /* answer bytes gathered before a send */

/*
 * Answers leave in one sendmmsg per loop iteration (gw_worker_flush), not
 * one sendto each: those of a read batch answered from the cache, and those
 * a batch of upstream answers finished. One gathering per worker thread,
 * for all its UDP listeners (runs of one socket go in one call).
 */
typedef struct udp_tx {
	gw_flush_t flush;
	unsigned n;
	size_t used;
	int fd[TX_MAX];
	struct mmsghdr mm[TX_MAX];
	struct iovec iov[TX_MAX];
	struct sockaddr_storage to[TX_MAX];
	uint8_t buf[TX_BYTES];
} udp_tx_t;

static __thread udp_tx_t *tls_tx;

static void tx_send(udp_tx_t *t)
{
	unsigned i = 0;
	while (i < t->n) {
		unsigned run = 1;
		while (i + run < t->n && t->fd[i + run] == t->fd[i])
			run++;
		int r = sendmmsg(t->fd[i], t->mm + i, run, MSG_DONTWAIT);
		if (r > 0) {
			i += (unsigned)r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
				     errno == ENOBUFS)) {
			/* a full socket buffer drops the rest of the run, as
			 * lost datagrams would be */
			i += run;
		} else {
			/* this destination failed (say, unreachable): skip
			 * it, not the answers after it */
			gw_log(GW_LOG_DEBUG, "udp", "send failed", "error",
			       strerror(errno), NULL);
			i++;
		}
	}
	t->n = 0;
	t->used = 0;
}

static void on_tx_flush(gw_flush_t *f)
{
	tx_send((udp_tx_t *)f);
}

static void udp_on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_listener_t *l = q->client;
	udp_tx_t *t = tls_tx;
	/* Behind a PROXY header the answer goes back through the proxy, bare
	 * (as dnsdist answers its proxies): the proxy knows its client. */
	const struct sockaddr *to =
		q->reply_to.sa.sa_family ? &q->reply_to.sa
					 : (const struct sockaddr *)&q->client_addr;
	socklen_t alen = to->sa_family == AF_INET6
				 ? sizeof(struct sockaddr_in6)
				 : sizeof(struct sockaddr_in);

	if (!t || len > TX_BYTES) {
		/* no gathering (out of memory), or too big for it */
		if (sendto(l->fd, msg, len, MSG_DONTWAIT, to, alen) < 0)
			gw_log(GW_LOG_DEBUG, "udp", "send failed", "error",
			       strerror(errno), NULL);
		return;
	}
	if (t->n == TX_MAX || TX_BYTES - t->used < len)
		tx_send(t);
	unsigned i = t->n++;
	memcpy(t->buf + t->used, msg, len);
	memcpy(&t->to[i], to, alen);
	t->fd[i] = l->fd;
	t->iov[i].iov_base = t->buf + t->used;
	t->iov[i].iov_len = len;
	memset(&t->mm[i], 0, sizeof(t->mm[i]));
	t->mm[i].msg_hdr.msg_name = &t->to[i];
	t->mm[i].msg_hdr.msg_namelen = alen;
	t->mm[i].msg_hdr.msg_iov = &t->iov[i];
	t->mm[i].msg_hdr.msg_iovlen = 1;
	t->used += len;
	gw_worker_flush(l->worker, &t->flush);
}

static const gw_query_client_ops_t udp_ops = {.on_answer = udp_on_answer};

/* proxy: l is in policy.proxy_protocol.listeners (a constant in each
 * caller, so the listeners without it test nothing more per datagram). */
static inline void read_batch(gw_listener_t *l, bool proxy)
{
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
		const uint8_t *msg = bufs[i];
		size_t len = msgs[i].msg_len;
		struct sockaddr_storage named, *client = &from[i];
		socklen_t clen = msgs[i].msg_hdr.msg_namelen;
		int hl = 0;

		/* Cut by the buffer, or (below) too short for a DNS header:
		 * not a query we can answer; silence is the only safe reply
		 * over UDP. */
		if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
			continue;
		if (proxy) {
			/* a trusted proxy's datagram: header, then the query
			 * of the client it names (docs/policy.md) */
			hl = gw_policy_proxy_dgram(l, msg, len, &from[i],
						   &named, &clen);
			if (hl < 0)
				continue;
			if (hl > 0) {
				msg += hl;
				len -= (size_t)hl;
				client = &named;
			}
		}
		if (len < GW_DNS_HEADER_LEN)
			continue;
		if (msg[2] & 0x80) /* QR=1: never answer an answer */
			continue;
		/* ACL: a denied datagram is dropped, as a refused stream
		 * connection is closed (docs/policy.md) */
		if (!gw_policy_admit_dgram(l, (struct sockaddr *)client))
			continue;
		gw_query_t *q = gw_query_new(l->worker, GW_PROTO_UDP, &udp_ops,
					     l, (struct sockaddr *)client, clen);
		if (!q)
			continue;
		if (hl > 0) /* the proxy: an inet peer, as every UDP peer */
			memcpy(&q->reply_to, &from[i],
			       from[i].ss_family == AF_INET6
				       ? sizeof(struct sockaddr_in6)
				       : sizeof(struct sockaddr_in));
		gw_query_start(q, msg, len);
	}
}

static void on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
	read_batch(io->data, false);
}

static void on_readable_proxy(struct ev_loop *loop, ev_io *io, int revents)
{
	read_batch(io->data, true);
}

static int udp_listener_start(gw_listener_t *l)
{
	/* in the worker's thread: its gathering, shared by its listeners
	 * (without it, answers go out one sendto each) */
	if (!tls_tx && (tls_tx = calloc(1, sizeof(*tls_tx))))
		tls_tx->flush.fn = on_tx_flush;
	/* policy.proxy_protocol needs a restart to change: decided once */
	bool proxy = gw_policy_proxy_listener(l->worker->conf, l->ep);

	ev_io_init(&l->io, proxy ? on_readable_proxy : on_readable, l->fd,
		   EV_READ);
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

/* Loop exit, in the worker's thread: what is gathered goes, then the
 * gathering. */
static void udp_close_all(gw_worker_t *w)
{
	udp_tx_t *t = tls_tx;
	if (!t)
		return;
	gw_worker_flush_cancel(w, &t->flush);
	tx_send(t);
	free(t);
	tls_tx = NULL;
}

const gw_listener_ops_t gw_udp_listener_ops = {
	.start = udp_listener_start,
	.drain = udp_drain,
	.close_all = udp_close_all,
};
