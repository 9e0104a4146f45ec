/*
 * responder.c - a deliberately trivial, fast DNS upstream for bench/.
 *
 * Answers every query on 127.0.0.1:PORT over UDP and TCP with a fixed
 * A record (192.0.2.1, RFC 5737 documentation address), whatever the name,
 * so every query the gateway forwards is a cache miss that still gets a
 * NOERROR answer. Single-threaded, epoll, recvmmsg/sendmmsg for UDP, and
 * pipelined (RFC 7766 section 6.2.1.1) TCP so that neither dnsgw's UDP
 * upstream nor dnsdist's TCP backend connections are throttled by it.
 *
 * It is a benchmark fixture, not a DNS server: no zone, no validation
 * beyond what is needed to build a well-formed reply. Queries it cannot
 * parse are dropped (UDP) or close the connection (TCP).
 *
 * Usage: responder PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define MSG_MAX 4096
#define TCP_IN 65536

struct tconn {
	int fd;
	size_t in_len;
	unsigned char in[TCP_IN];
	unsigned char *out; /* owned, realloc'd */
	size_t out_len, out_cap;
	int want_out;
};

/*
 * Builds the reply to q (qlen bytes) into r (room for MSG_MAX bytes).
 * Returns its length, or 0 when q is not a parseable one-question query.
 */
static size_t answer(const unsigned char *q, size_t qlen, unsigned char *r)
{
	size_t off = 12, qend, n;
	unsigned qtype, arcount, an = 0, opt = 0;

	if (qlen < 12 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1)
		return 0;
	while (off < qlen && q[off] != 0) {
		if (q[off] & 0xc0)
			return 0; /* no compression in a question */
		off += 1 + q[off];
	}
	if (off + 5 > qlen)
		return 0;
	off++;
	qtype = (unsigned)q[off] << 8 | q[off + 1];
	qend = off + 4;
	if (qend > MSG_MAX - 16 - 11)
		return 0;
	arcount = (unsigned)q[10] << 8 | q[11];
	/* RFC 6891 section 7: echo an OPT record when the query had one. */
	if (arcount > 0 && qend + 11 <= qlen && q[qend] == 0 &&
	    q[qend + 1] == 0 && q[qend + 2] == 41)
		opt = 1;

	memcpy(r, q, qend);
	r[2] = 0x80 | (q[2] & 0x01); /* QR, keep RD; opcode 0, AA 0, TC 0 */
	r[3] = 0x80;                 /* RA, NOERROR */
	n = qend;
	if (qtype == 1 || qtype == 255) {
		static const unsigned char rr[16] = {
			0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4,
			192, 0, 2, 1,
		};
		memcpy(r + n, rr, sizeof(rr));
		n += sizeof(rr);
		an = 1;
	}
	if (opt) {
		static const unsigned char o[11] = {
			0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
		};
		memcpy(r + n, o, sizeof(o));
		n += sizeof(o);
	}
	r[6] = 0;
	r[7] = (unsigned char)an;
	r[8] = r[9] = 0;
	r[10] = 0;
	r[11] = (unsigned char)opt;
	return n;
}

static int bind_sock(int type, int port)
{
	struct sockaddr_in a;
	int one = 1;
	int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	if (type == SOCK_STREAM && listen(fd, 4096) < 0) {
		close(fd);
		return -1;
	}
	if (type == SOCK_DGRAM) {
		int sz = 4 << 20;

		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	return fd;
}

static void udp_serve(int fd)
{
	static unsigned char qb[BATCH][MSG_MAX], rb[BATCH][MSG_MAX];
	static struct sockaddr_in from[BATCH];
	struct mmsghdr in[BATCH], out[BATCH];
	struct iovec iin[BATCH], iout[BATCH];
	int i, n, k;

	for (;;) {
		for (i = 0; i < BATCH; i++) {
			iin[i].iov_base = qb[i];
			iin[i].iov_len = MSG_MAX;
			memset(&in[i], 0, sizeof(in[i]));
			in[i].msg_hdr.msg_iov = &iin[i];
			in[i].msg_hdr.msg_iovlen = 1;
			in[i].msg_hdr.msg_name = &from[i];
			in[i].msg_hdr.msg_namelen = sizeof(from[i]);
		}
		n = recvmmsg(fd, in, BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		for (i = 0, k = 0; i < n; i++) {
			size_t len = answer(qb[i], in[i].msg_len, rb[k]);

			if (len == 0)
				continue;
			iout[k].iov_base = rb[k];
			iout[k].iov_len = len;
			memset(&out[k], 0, sizeof(out[k]));
			out[k].msg_hdr.msg_iov = &iout[k];
			out[k].msg_hdr.msg_iovlen = 1;
			out[k].msg_hdr.msg_name = &from[i];
			out[k].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
			k++;
		}
		for (i = 0; i < k;) {
			int s = sendmmsg(fd, out + i, (unsigned)(k - i), 0);

			if (s <= 0)
				break; /* UDP: a lost answer is the client's timeout */
			i += s;
		}
		if (n < BATCH)
			return;
	}
}

static void tconn_close(int ep, struct tconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c);
}

/* Writes what is queued; returns -1 when the connection must go. */
static int tconn_flush(int ep, struct tconn *c)
{
	struct epoll_event ev;

	while (c->out_len > 0) {
		ssize_t w = write(c->fd, c->out, c->out_len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0)
			return -1;
		memmove(c->out, c->out + w, c->out_len - (size_t)w);
		c->out_len -= (size_t)w;
	}
	if ((c->out_len > 0) != c->want_out) {
		c->want_out = c->out_len > 0;
		ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
		ev.data.ptr = c;
		epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	return 0;
}

static int tconn_read(int ep, struct tconn *c)
{
	unsigned char r[MSG_MAX];

	for (;;) {
		ssize_t got = read(c->fd, c->in + c->in_len,
				   sizeof(c->in) - c->in_len);
		size_t off = 0;

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			break;
		if (got <= 0)
			return -1;
		c->in_len += (size_t)got;
		/* RFC 7766 section 8: two-byte length prefix per message. */
		while (c->in_len - off >= 2) {
			size_t flen = (size_t)c->in[off] << 8 | c->in[off + 1];
			size_t len;

			if (c->in_len - off - 2 < flen)
				break;
			len = answer(c->in + off + 2, flen, r);
			if (len == 0)
				return -1;
			if (c->out_len + len + 2 > c->out_cap) {
				size_t cap = (c->out_cap ? c->out_cap : 8192);
				unsigned char *p;

				while (cap < c->out_len + len + 2)
					cap *= 2;
				p = realloc(c->out, cap);
				if (!p)
					return -1;
				c->out = p;
				c->out_cap = cap;
			}
			c->out[c->out_len] = (unsigned char)(len >> 8);
			c->out[c->out_len + 1] = (unsigned char)len;
			memcpy(c->out + c->out_len + 2, r, len);
			c->out_len += len + 2;
			off += flen + 2;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
		if (tconn_flush(ep, c) < 0)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct epoll_event ev, evs[256];
	static int tag_udp, tag_lst;
	int port, ufd, lfd, ep, i, n;

	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: responder PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ufd = bind_sock(SOCK_DGRAM, port);
	lfd = bind_sock(SOCK_STREAM, port);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ufd < 0 || lfd < 0 || ep < 0) {
		perror("responder: bind");
		return 1;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = &tag_udp;
	epoll_ctl(ep, EPOLL_CTL_ADD, ufd, &ev);
	ev.data.ptr = &tag_lst;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 1;
		for (i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			struct tconn *c;

			if (p == &tag_udp) {
				udp_serve(ufd);
				continue;
			}
			if (p == &tag_lst) {
				int fd, one = 1;

				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK |
						     SOCK_CLOEXEC)) >= 0) {
					c = calloc(1, sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY,
						   &one, sizeof(one));
					c->fd = fd;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			c = p;
			if ((evs[i].events & (EPOLLERR | EPOLLHUP)) &&
			    !(evs[i].events & EPOLLIN)) {
				tconn_close(ep, c);
				continue;
			}
			if ((evs[i].events & EPOLLOUT) &&
			    tconn_flush(ep, c) < 0) {
				tconn_close(ep, c);
				continue;
			}
			if ((evs[i].events & EPOLLIN) &&
			    tconn_read(ep, c) < 0)
				tconn_close(ep, c);
		}
	}
}
