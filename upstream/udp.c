/*
 * udp.c - classic DNS over UDP to an upstream through a small set of
 * long-lived connected sockets per worker and upstream.
 *
 * Each socket is connected to the upstream (the kernel then delivers only
 * datagrams from the upstream's address and port) and bound by connect() to
 * a random ephemeral port the kernel picks. A query takes the next socket in
 * turn (UDP_SOCKS of them per upstream) and a random message ID not in use on
 * that socket (its pending table, pending.h), so answers are matched out of
 * order by ID and then by question (gw_up_check_answer); anything else that
 * arrives - wrong ID, an ID whose query is gone, a wrong question, junk - is
 * ignored and counted, and the query keeps waiting (REQUIREMENTS "DNS
 * messages"). Batches of answers are read with one recvmmsg().
 *
 * Why a few long-lived sockets are safe enough (RFC 5452 9.2, 10): a blind
 * spoofer must hit the source port and the ID of a query in flight for the
 * question it wants to poison. The ports are random among the ephemeral
 * range (about 28 000 on Linux) and the IDs among 65 536, so a forged
 * answer hits with odds of about (queries in flight for that question on
 * the socket) / (28 000 x 65 536) per packet - the same as with a port per
 * query (Unbound's way) while the attacker does not know the ports. What a
 * fixed set (dnsdist's way) loses is the port's freshness: once a port is
 * learnt (a side channel such as the ICMP rate-limit scan of SAD DNS,
 * CVE-2020-25705), only the 16-bit ID is left, 1 in 65 536 per packet
 * (RFC 5452 7 with P = 1). So a socket is retired - no new queries, closed
 * when its last query ends - after UDP_MAX_QUERIES queries or UDP_MAX_AGE
 * seconds, and the next query opens a new one on a new random port: a learnt
 * port is worth little and not for long. An ID whose query timed out or was
 * cancelled stays taken on its socket until the socket closes (an orphan), so
 * a late answer can never be matched to a newer query with the same ID.
 *
 * ICMP errors (port unreachable: ECONNREFUSED) on a connected UDP socket are
 * reported once, to whichever call comes next, without saying which
 * datagram caused them. Such an error fails every query in flight on that
 * socket at once (as a fresh socket per attempt failed its own query fast)
 * and retires the socket; queries on the other sockets are untouched. An
 * error reported to send() belongs to earlier traffic: the new query joins
 * the socket's fate, failed from the loop, never synchronously.
 *
 * A socket with no query in flight and none sent for UDP_IDLE seconds is
 * closed, so an idle gateway holds no upstream UDP sockets. Sockets are
 * freed only from their own timer callback (dead flag plus a 0 s timer): no
 * handler ever runs on freed memory, however deep the call chain that
 * decided to close one.
 *
 * Ownership: the set (gw_up_udps_t) belongs to the pool (created on first
 * use, freed by gw_up_udps_free() once every query is detached); a socket
 * stores pointers to the queries in flight on it, never frees them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attempt.h"
#include "gateway/error.h"
#include "pending.h"

#define UDP_SOCKS 4             /* sockets per upstream and worker */
#define UDP_MAX_QUERIES 1024    /* queries per socket before it is retired */
#define UDP_MAX_AGE 10.0        /* seconds before it is retired */
#define UDP_IDLE 1.0            /* nothing in flight or sent: close */
#define UDP_BATCH 16            /* datagrams per recvmmsg() */
#define UDP_READ_ROUNDS 2       /* recvmmsg() calls per wakeup: a flood of
				   junk must not starve the loop */

typedef struct usock {
	gw_up_udps_t *us;
	unsigned up;
	unsigned slot;  /* index in us->active[up] while not retiring */
	int fd;
	ev_io io;
	ev_timer timer; /* idle check; 0 s once dead: the free */
	gw_up_pend_t pend;
	unsigned sent;  /* queries sent on it */
	double opened, last_send;
	int err;        /* an error send() reported: fails everything */
	bool retiring;  /* takes no new query; closes when none is live */
	bool dead;      /* closed; freed from its timer */
	struct usock *next, *prev;
} usock_t;

struct gw_up_udps {
	gw_up_pool_t *pool;
	struct ev_loop *loop;
	unsigned nsocks, max_queries;
	double max_age, idle;
	usock_t *active[GW_CONF_MAX_UPSTREAM][UDP_SOCKS];
	unsigned rr[GW_CONF_MAX_UPSTREAM];
	unsigned n_open[GW_CONF_MAX_UPSTREAM];
	usock_t *all;
	struct mmsghdr msgs[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	uint8_t *bufs; /* UDP_BATCH x GW_DNS_MAX_MSG, touched as used */
};

static gw_up_udps_t *udps_get(gw_up_pool_t *p)
{
	gw_up_udps_t **pu = gw_up_pool_udps(p);
	gw_up_udps_t *us = *pu;

	if (us)
		return us;
	us = calloc(1, sizeof(*us));
	if (!us)
		return NULL;
	us->bufs = malloc((size_t)UDP_BATCH * GW_DNS_MAX_MSG);
	if (!us->bufs) {
		free(us);
		return NULL;
	}
	us->pool = p;
	us->loop = gw_up_pool_loop(p);
	us->nsocks = UDP_SOCKS;
	us->max_queries = UDP_MAX_QUERIES;
	us->max_age = UDP_MAX_AGE;
	us->idle = UDP_IDLE;
	for (unsigned i = 0; i < UDP_BATCH; i++) {
		us->iov[i].iov_base = us->bufs + (size_t)i * GW_DNS_MAX_MSG;
		us->iov[i].iov_len = GW_DNS_MAX_MSG;
	}
	*pu = us;
	return us;
}

static void sock_free(usock_t *s)
{
	gw_up_udps_t *us = s->us;

	ev_timer_stop(us->loop, &s->timer);
	ev_io_stop(us->loop, &s->io);
	if (s->fd >= 0)
		close(s->fd);
	gw_up_pend_deinit(&s->pend);
	if (s->prev)
		s->prev->next = s->next;
	else
		us->all = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* Takes s out of the rotation: it only waits for its live queries now. */
static void retire(usock_t *s)
{
	gw_up_udps_t *us = s->us;

	if (s->retiring)
		return;
	s->retiring = true;
	if (us->active[s->up][s->slot] == s)
		us->active[s->up][s->slot] = NULL;
}

/* Closes s now (nothing may be live on it); the memory goes from its timer. */
static void sock_kill(usock_t *s)
{
	gw_up_udps_t *us = s->us;

	if (s->dead)
		return;
	retire(s);
	s->dead = true;
	ev_io_stop(us->loop, &s->io);
	close(s->fd);
	s->fd = -1;
	us->n_open[s->up]--;
	gw_up_debug_conn(us->pool, s->up, "udp socket closed", NULL);
	ev_timer_stop(us->loop, &s->timer);
	ev_timer_set(&s->timer, 0., 0.);
	ev_timer_start(us->loop, &s->timer);
}

static void maybe_close(usock_t *s)
{
	if (s->retiring && !s->dead && s->pend.live == 0)
		sock_kill(s);
}

/* Every query live on s fails with err (an ICMP error, a read error). */
static void fail_all(usock_t *s, int err)
{
	gw_up_query_t *uq;
	uint16_t id;

	retire(s);
	s->err = 0;
	/* Retired first: a retry on the same upstream takes another socket. */
	while ((uq = gw_up_pend_pop_live(&s->pend, &id)) != NULL) {
		uq->usock = NULL;
		gw_up_attempt_error(uq, err);
	}
	maybe_close(s);
}

static void ignored(usock_t *s, gw_up_query_t *uq, const char *why)
{
	gw_up_pool_metrics_w(s->us->pool, s->up)->ignored++;
	if (uq)
		gw_up_debug(uq, "answer ignored", why);
	else
		gw_up_debug_conn(s->us->pool, s->up, "answer ignored", why);
}

/* One datagram read on s. */
static void handle(usock_t *s, const uint8_t *buf, size_t len)
{
	gw_up_query_t *uq;
	uint16_t id;

	if (len < GW_DNS_HEADER_LEN) {
		ignored(s, NULL, "short");
		return;
	}
	id = gw_dns_get16(buf);
	uq = gw_up_pend_get(&s->pend, id);
	if (!uq) {
		/* Unknown ID, or the query holding it is gone (orphan). */
		ignored(s, NULL, "unknown id");
		return;
	}
	switch (gw_up_check_answer(&uq->sent, buf, len, true, NULL)) {
	case GW_UP_ANSWER:
		gw_up_pend_remove(&s->pend, id);
		uq->usock = NULL;
		gw_up_attempt_answer(uq, buf, len);
		break;
	case GW_UP_TRUNCATED:
		gw_up_pend_remove(&s->pend, id);
		uq->usock = NULL;
		gw_up_attempt_truncated(uq);
		break;
	case GW_UP_IGNORE:
		/* Spoofed, stale or broken: keep waiting; the attempt timer
		 * bounds this. */
		ignored(s, uq, "no match");
		return;
	}
	maybe_close(s);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	usock_t *s = w->data;
	gw_up_udps_t *us = s->us;

	(void)loop;
	(void)revents;
	if (s->err) {
		fail_all(s, s->err);
		return;
	}
	for (int round = 0; round < UDP_READ_ROUNDS && !s->dead; round++) {
		int n;

		for (unsigned i = 0; i < UDP_BATCH; i++) {
			memset(&us->msgs[i].msg_hdr, 0,
			       sizeof(us->msgs[i].msg_hdr));
			us->msgs[i].msg_hdr.msg_iov = &us->iov[i];
			us->msgs[i].msg_hdr.msg_iovlen = 1;
		}
		n = recvmmsg(s->fd, us->msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* ECONNREFUSED: ICMP port unreachable for one of the
			 * datagrams sent on s - which one, nobody knows. */
			fail_all(s, -errno);
			return;
		}
		/* The buffers are the set's: no reader runs nested (callbacks
		 * never read), so they stay put while the batch is handed out. */
		for (int i = 0; i < n && !s->dead; i++)
			handle(s, us->iov[i].iov_base, us->msgs[i].msg_len);
		if (n < UDP_BATCH)
			return;
	}
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	usock_t *s = w->data;
	gw_up_udps_t *us = s->us;
	double now = ev_now(loop), left;

	(void)revents;
	if (s->dead) {
		sock_free(s);
		return;
	}
	left = s->last_send + us->idle - now;
	if (s->pend.live == 0 && (s->retiring || left <= 0)) {
		sock_kill(s);
		return;
	}
	ev_timer_set(w, left > 0.01 ? left : us->idle, 0.);
	ev_timer_start(loop, w);
}

static usock_t *sock_open(gw_up_udps_t *us, unsigned up, unsigned slot,
			  const gw_endpoint_t *ep, int *err)
{
	usock_t *s = calloc(1, sizeof(*s));
	double now = ev_now(us->loop);

	if (!s) {
		*err = GW_ENOMEM;
		return NULL;
	}
	if ((*err = gw_up_pend_init(&s->pend, us->max_queries)) < 0) {
		free(s);
		return NULL;
	}
	s->fd = socket(ep->addr.ss_family,
		       SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* connect() binds a random ephemeral port (RFC 5452 10). */
	if (s->fd < 0 || connect(s->fd, (const struct sockaddr *)&ep->addr,
				 ep->addrlen) < 0) {
		*err = -errno;
		if (s->fd >= 0)
			close(s->fd);
		gw_up_pend_deinit(&s->pend);
		free(s);
		return NULL;
	}
	s->us = us;
	s->up = up;
	s->slot = slot;
	s->opened = s->last_send = now;
	ev_io_init(&s->io, on_read, s->fd, EV_READ);
	s->io.data = s;
	ev_io_start(us->loop, &s->io);
	ev_timer_init(&s->timer, on_timer, us->idle, 0.);
	s->timer.data = s;
	ev_timer_start(us->loop, &s->timer);
	s->next = us->all;
	if (us->all)
		us->all->prev = s;
	us->all = s;
	us->n_open[up]++;
	gw_up_debug_conn(us->pool, up, "udp socket opened", NULL);
	return s;
}

/* The socket for the next query to upstream up, in turn; a stale one is
 * retired and replaced on the way. */
static usock_t *pick(gw_up_udps_t *us, unsigned up, const gw_endpoint_t *ep,
		     int *err)
{
	unsigned k = us->rr[up]++ % us->nsocks;
	usock_t *s = us->active[up][k];

	if (s && (ev_now(us->loop) - s->opened >= us->max_age ||
		  s->sent >= us->max_queries || gw_up_pend_full(&s->pend))) {
		retire(s);
		maybe_close(s);
		s = NULL;
	}
	if (!s) {
		s = sock_open(us, up, k, ep, err);
		if (s)
			us->active[up][k] = s;
	}
	return s;
}

int gw_up_udp_start(gw_up_query_t *uq, const gw_endpoint_t *ep)
{
	gw_up_udps_t *us = udps_get(uq->pool);
	usock_t *s;
	int id, err = 0;

	if (!us)
		return GW_ENOMEM;
	s = pick(us, (unsigned)uq->up, ep, &err);
	if (!s)
		return err;
	/* A fresh random ID per attempt (RFC 5452 9.2), written into our
	 * copy: q->wire stays the pipeline's. */
	id = gw_up_pend_add(&s->pend, gw_up_pool_rng(uq->pool), uq);
	if (id < 0)
		return id; /* cannot happen: retired before it fills */
	gw_dns_put16(uq->out + 2, (uint16_t)id);
	uq->sent.id = (uint16_t)id;
	uq->id = (uint16_t)id;
	s->sent++;
	s->last_send = ev_now(us->loop);
	if (s->sent >= us->max_queries || gw_up_pend_full(&s->pend))
		retire(s); /* stays open for the queries on it */
	for (;;) {
		if (send(s->fd, uq->out + 2, uq->out_len, 0) >= 0)
			break;
		if (errno == EINTR)
			continue;
		err = -errno;
		if (err == -ECONNREFUSED) {
			/* An ICMP error for an earlier datagram on s: every
			 * query on s fails with it, this one too, from the
			 * loop (never inside gw_up_pool_send()). */
			uq->usock = s;
			s->err = err;
			retire(s);
			ev_feed_event(us->loop, &s->io, EV_READ);
			return 0;
		}
		gw_up_pend_remove(&s->pend, (uint16_t)id);
		maybe_close(s);
		return err;
	}
	uq->usock = s;
	return 0;
}

void gw_up_udp_stop(gw_up_query_t *uq)
{
	usock_t *s = uq->usock;

	if (!s)
		return;
	uq->usock = NULL;
	/* Sent: the upstream may still answer, so the ID stays taken on s
	 * until s closes, and a late answer meets an orphan. */
	gw_up_pend_orphan(&s->pend, uq->id);
	maybe_close(s);
}

void gw_up_udps_free(gw_up_udps_t *us)
{
	if (!us)
		return;
	while (us->all)
		sock_free(us->all);
	free(us->bufs);
	free(us);
}

/* --- for tests ---------------------------------------------------------------- */

int gw_up_udp_set_limits(gw_up_pool_t *p, unsigned socks, unsigned max_queries,
			 double max_age, double idle)
{
	gw_up_udps_t *us = udps_get(p);

	if (!us)
		return GW_ENOMEM;
	if (socks < 1 || socks > UDP_SOCKS || max_queries < 1 ||
	    max_queries > 65535 || max_age <= 0 || idle <= 0)
		return GW_EINVAL;
	us->nsocks = socks;
	us->max_queries = max_queries;
	us->max_age = max_age;
	us->idle = idle;
	return 0;
}

unsigned gw_up_udp_open(gw_up_pool_t *p, unsigned up)
{
	gw_up_udps_t *us = *gw_up_pool_udps(p);

	return us && up < GW_CONF_MAX_UPSTREAM ? us->n_open[up] : 0;
}
