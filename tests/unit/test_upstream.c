/*
 * test_upstream.c - the upstream pool: selection, health, IDs and matching
 * (sans-I/O, fake clock), then the UDP/TCP glue against scripted upstreams
 * on 127.0.0.1 in a real libev loop.
 *
 * The I/O tests build gw_query_t objects by hand and divert the pool's
 * results with gw_up_pool_set_result_ops(), so nothing here defines a symbol
 * of dnsgw_core (gw_query_answer/gw_query_fail stay the library's).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/dns.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "upstream/attempt.h"
#include "upstream/pending.h"
#include "upstream/select.h"
#include "upstream/upstream.h"

/* --- DNS message helpers --------------------------------------------------- */

static size_t put_name(uint8_t *p, const char *name)
{
	size_t n = 0;

	while (*name) {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);
		p[n++] = (uint8_t)l;
		memcpy(p + n, name, l);
		n += l;
		name += l;
		if (*name == '.')
			name++;
	}
	p[n++] = 0;
	return n;
}

/* Header + one question; with an A record when an is set. */
static size_t mk_msg(uint8_t *out, uint16_t id, uint16_t flags,
		     const char *name, uint16_t qtype, bool an)
{
	size_t n = GW_DNS_HEADER_LEN;

	memset(out, 0, GW_DNS_HEADER_LEN);
	gw_dns_put16(out, id);
	gw_dns_put16(out + 2, flags);
	gw_dns_put16(out + 4, 1);
	n += put_name(out + n, name);
	gw_dns_put16(out + n, qtype);
	gw_dns_put16(out + n + 2, 1);
	n += 4;
	if (an) {
		static const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0,
					      60, 0, 4, 192, 0, 2, 1 };
		gw_dns_put16(out + 6, 1);
		memcpy(out + n, rr, sizeof(rr));
		n += sizeof(rr);
	}
	return n;
}

/* --- selection and health ---------------------------------------------------- */

static void test_upstream_select_order(void **state)
{
	gw_up_sel_t s;
	bool trial;

	(void)state;
	gw_up_sel_init(&s, 3, 0);
	assert_int_equal(s.fall, GW_UP_FALL);
	/* ordered: the first one, always, while healthy */
	for (int i = 0; i < 5; i++) {
		assert_int_equal(gw_up_sel_pick(&s, 0, 0, &trial), 0);
		assert_false(trial);
		gw_up_sel_report(&s, 0, trial, GW_UP_OK, 0);
	}
	/* retries go to upstreams not yet tried, in order */
	assert_int_equal(gw_up_sel_pick(&s, 1u << 0, 0, &trial), 1);
	assert_int_equal(gw_up_sel_pick(&s, (1u << 0) | (1u << 1), 0, &trial), 2);
	assert_int_equal(gw_up_sel_pick(&s, 1u << 1, 0, &trial), 0);
	/* everything tried: back to the first usable one */
	assert_int_equal(gw_up_sel_pick(&s, 7, 0, &trial), 0);
	/* a single upstream is retried on itself */
	gw_up_sel_init(&s, 1, 3);
	assert_int_equal(gw_up_sel_pick(&s, 1, 0, &trial), 0);
}

static void fail_n(gw_up_sel_t *s, unsigned i, int n, double now)
{
	for (int k = 0; k < n; k++)
		gw_up_sel_report(s, i, false, GW_UP_FAIL, now);
}

static void test_upstream_select_failover(void **state)
{
	gw_up_sel_t s;
	bool trial;

	(void)state;
	gw_up_sel_init(&s, 3, 3);
	fail_n(&s, 0, 3, 10.0);
	assert_true(s.h[0].down);
	assert_int_equal(gw_up_sel_pick(&s, 0, 10.1, &trial), 1);
	assert_false(trial);
	/* retry after a failure on 1 goes to 2, never back to down 0 */
	assert_int_equal(gw_up_sel_pick(&s, 1u << 1, 10.2, &trial), 2);
	/* 0 and 1 down: 2 takes everything */
	fail_n(&s, 1, 3, 10.3);
	assert_int_equal(gw_up_sel_pick(&s, 0, 10.4, &trial), 2);
	/* tried 2 already and the rest down: 2 again, not a down one */
	assert_int_equal(gw_up_sel_pick(&s, 1u << 2, 10.5, &trial), 2);
}

static void test_upstream_health_fall_backoff_recovery(void **state)
{
	gw_up_sel_t s;
	bool trial;
	double t = 100.0;
	const double expect[] = { 2, 4, 8, 16, 30, 30 };

	(void)state;
	gw_up_sel_init(&s, 2, 3);
	/* success resets the consecutive count */
	fail_n(&s, 0, 2, t);
	gw_up_sel_report(&s, 0, false, GW_UP_OK, t);
	fail_n(&s, 0, 2, t);
	assert_false(s.h[0].down);
	assert_int_equal(gw_up_sel_report(&s, 0, false, GW_UP_FAIL, t),
			 GW_UP_WENT_DOWN);
	assert_true(s.h[0].down);

	/* no trial before the 1 s backoff */
	assert_int_equal(gw_up_sel_pick(&s, 0, t + 0.999, &trial), 1);
	/* late failures of older attempts change nothing */
	assert_int_equal(gw_up_sel_report(&s, 0, false, GW_UP_FAIL, t + 0.5),
			 GW_UP_SAME);
	assert_true(s.h[0].retry_at == t + 1.0);

	t += 1.0;
	for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++) {
		assert_int_equal(gw_up_sel_pick(&s, 0, t, &trial), 0);
		assert_true(trial);
		/* one trial at a time */
		assert_int_equal(gw_up_sel_pick(&s, 0, t, &trial), 1);
		assert_false(trial);
		assert_int_equal(gw_up_sel_report(&s, 0, true, GW_UP_FAIL, t),
				 GW_UP_SAME);
		assert_true(s.h[0].backoff == expect[k]);
		assert_int_equal(gw_up_sel_pick(&s, 0, t + expect[k] - 0.01,
						&trial),
				 1);
		t += expect[k];
	}

	/* an abandoned trial (query cancelled) frees the slot at once */
	assert_int_equal(gw_up_sel_pick(&s, 0, t, &trial), 0);
	assert_true(trial);
	gw_up_sel_report(&s, 0, true, GW_UP_ABANDON, t);
	assert_int_equal(gw_up_sel_pick(&s, 0, t, &trial), 0);
	assert_true(trial);

	/* the trial answers: up again, backoff forgotten */
	assert_int_equal(gw_up_sel_report(&s, 0, true, GW_UP_OK, t),
			 GW_UP_CAME_UP);
	assert_false(s.h[0].down);
	assert_int_equal(gw_up_sel_pick(&s, 0, t, &trial), 0);
	assert_false(trial);
	/* and it takes fall failures again to go down */
	fail_n(&s, 0, 2, t);
	assert_false(s.h[0].down);
	fail_n(&s, 0, 1, t);
	assert_true(s.h[0].down);
	assert_true(s.h[0].backoff == GW_UP_BACKOFF_MIN);
}

static void test_upstream_all_down_fails_fast(void **state)
{
	gw_up_sel_t s;
	bool trial;

	(void)state;
	gw_up_sel_init(&s, 2, 3);
	fail_n(&s, 0, 3, 5.0);
	fail_n(&s, 1, 3, 5.2);
	assert_int_equal(gw_up_sel_pick(&s, 0, 5.5, &trial), -1);
	assert_int_equal(gw_up_sel_pick(&s, 3, 5.5, &trial), -1);
	/* 0's backoff ends first: it gets the trial, 1 still nothing */
	assert_int_equal(gw_up_sel_pick(&s, 0, 6.0, &trial), 0);
	assert_true(trial);
	assert_int_equal(gw_up_sel_pick(&s, 0, 6.1, &trial), -1);
	assert_int_equal(gw_up_sel_pick(&s, 0, 6.2, &trial), 1);
	assert_true(trial);
	/* no upstreams at all: always -1 */
	gw_up_sel_init(&s, 0, 3);
	assert_int_equal(gw_up_sel_pick(&s, 0, 0, &trial), -1);
}

/* --- IDs -------------------------------------------------------------------- */

static void test_upstream_ids_never_in_flight(void **state)
{
	static gw_up_ids_t t;
	gw_up_rng_t r;
	uint16_t ring[100];
	unsigned head = 0, n = 0;
	unsigned seen_hi = 0, seen_lo = 0;

	(void)state;
	gw_up_ids_init(&t);
	gw_up_rng_seed(&r, 42);
	for (int i = 0; i < 70000; i++) {
		int id = gw_up_ids_alloc(&t, &r);
		assert_in_range(id, 0, 65535);
		for (unsigned k = 0; k < n; k++)
			assert_int_not_equal(ring[(head + k) % 100], id);
		if (id >= 32768)
			seen_hi++;
		else
			seen_lo++;
		if (n == 100) {
			gw_up_ids_release(&t, ring[head]);
			head = (head + 1) % 100;
			n--;
		}
		ring[(head + n) % 100] = (uint16_t)id;
		n++;
		assert_int_equal(t.count, n);
	}
	/* random, not sequential: both halves of the space get used */
	assert_true(seen_hi > 30000 && seen_lo > 30000);
}

static void test_upstream_ids_full_table(void **state)
{
	static gw_up_ids_t t;
	gw_up_rng_t r;

	(void)state;
	gw_up_ids_init(&t);
	gw_up_rng_init(&r);
	for (int i = 0; i < 65536; i++)
		assert_true(gw_up_ids_alloc(&t, &r) >= 0);
	assert_int_equal(t.count, 65536);
	assert_int_equal(gw_up_ids_alloc(&t, &r), GW_ENOSPC);
	/* the only free ID is found by the scan */
	gw_up_ids_release(&t, 12345);
	assert_false(gw_up_ids_busy(&t, 12345));
	assert_int_equal(gw_up_ids_alloc(&t, &r), 12345);
	gw_up_ids_release(&t, 7);
	gw_up_ids_release(&t, 7); /* double release is harmless */
	assert_int_equal(t.count, 65535);
}

/* --- matching ------------------------------------------------------------------ */

static void test_upstream_match_rules(void **state)
{
	uint8_t q[512], a[512];
	size_t ql, al;
	gw_dns_msg_t sent, got;
	const uint16_t resp = GW_DNS_QR | GW_DNS_RD | GW_DNS_RA;

	(void)state;
	ql = mk_msg(q, 0x1234, GW_DNS_RD, "www.example.test", GW_DNS_T_A, false);
	assert_int_equal(gw_dns_parse(q, ql, &sent), 0);

	al = mk_msg(a, 0x1234, resp, "www.example.test", GW_DNS_T_A, true);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, &got),
			 GW_UP_ANSWER);
	assert_int_equal(got.ancount, 1);
	/* RFC 4343: qname case does not matter (0x20 randomization) */
	al = mk_msg(a, 0x1234, resp, "WwW.ExAmple.TEST", GW_DNS_T_A, true);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_ANSWER);

	al = mk_msg(a, 0x1235, resp, "www.example.test", GW_DNS_T_A, true);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_IGNORE); /* wrong ID */
	al = mk_msg(a, 0x1234, resp, "www.example.tesu", GW_DNS_T_A, true);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_IGNORE); /* wrong qname */
	al = mk_msg(a, 0x1234, resp, "www.example.test.x", GW_DNS_T_A, false);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_IGNORE); /* longer qname */
	al = mk_msg(a, 0x1234, resp, "www.example.test", GW_DNS_T_AAAA, false);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_IGNORE); /* wrong qtype */
	al = mk_msg(a, 0x1234, GW_DNS_RD, "www.example.test", GW_DNS_T_A, true);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_IGNORE); /* QR=0: a query, not an answer */
	assert_int_equal(gw_up_check_answer(&sent, a, 5, true, NULL),
			 GW_UP_IGNORE); /* shorter than a header */
	al = mk_msg(a, 0x1234, resp, "www.example.test", GW_DNS_T_A, true);
	assert_int_equal(gw_up_check_answer(&sent, a, al - 3, true, NULL),
			 GW_UP_IGNORE); /* cut inside a record, TC=0 */
	al = mk_msg(a, 0x1234, resp, "www.example.test", GW_DNS_T_A, false);
	a[5] = 0; /* QDCOUNT 0 */
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_IGNORE);

	/* TC=1: TCP retry over UDP; over TCP it is the answer */
	al = mk_msg(a, 0x1234, resp | GW_DNS_TC, "www.example.test", GW_DNS_T_A,
		    true);
	assert_int_equal(gw_up_check_answer(&sent, a, al, true, NULL),
			 GW_UP_TRUNCATED);
	assert_int_equal(gw_up_check_answer(&sent, a, al, false, NULL),
			 GW_UP_ANSWER);
	/* TC=1 cut mid-record still triggers TCP when the question matches */
	assert_int_equal(gw_up_check_answer(&sent, a, al - 3, true, NULL),
			 GW_UP_TRUNCATED);
	/* ... but not when it is someone else's */
	gw_dns_put16(a, 0x9999);
	assert_int_equal(gw_up_check_answer(&sent, a, al - 3, true, NULL),
			 GW_UP_IGNORE);
}

/* --- I/O: scripted upstreams on 127.0.0.1 -------------------------------------- */

enum srv_mode {
	SRV_ANSWER,
	SRV_WRONG_ID_FIRST, /* junk, a wrong-ID answer, then the right one */
	SRV_SILENT,
	SRV_TC,             /* TC=1 over UDP; full answer over TCP */
};

typedef struct srv {
	enum srv_mode mode;
	int ufd, lfd, cfd;
	struct sockaddr_in addr;
	ev_io uio, lio, cio;
	uint8_t cbuf[600];
	size_t clen;
	int udp_queries, tcp_queries;
	uint16_t last_id;
} srv_t;

typedef struct result {
	int answers, fails, ede;
	char text[64];
	uint8_t msg[600];
	size_t len;
	struct ev_loop *loop;
} result_t;

static size_t make_answer(const uint8_t *qm, size_t ql, uint8_t *out,
			  uint16_t extra_flags)
{
	static const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0,
				      60, 0, 4, 192, 0, 2, 1 };

	memcpy(out, qm, ql);
	gw_dns_put16(out + 2, gw_dns_get16(qm + 2) | GW_DNS_QR | GW_DNS_RA |
				      extra_flags);
	gw_dns_put16(out + 6, 1);
	memcpy(out + ql, rr, sizeof(rr));
	return ql + sizeof(rr);
}

static void srv_udp_read(struct ev_loop *loop, ev_io *w, int revents)
{
	srv_t *s = w->data;
	uint8_t qm[600], out[700];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n;
	size_t ol;

	(void)loop;
	(void)revents;
	n = recvfrom(s->ufd, qm, sizeof(qm), 0, (struct sockaddr *)&from, &fl);
	if (n < GW_DNS_HEADER_LEN)
		return;
	s->udp_queries++;
	s->last_id = gw_dns_get16(qm);
	switch (s->mode) {
	case SRV_SILENT:
		return;
	case SRV_WRONG_ID_FIRST:
		sendto(s->ufd, "junk", 4, 0, (struct sockaddr *)&from, fl);
		ol = make_answer(qm, (size_t)n, out, 0);
		gw_dns_put16(out, (uint16_t)(s->last_id ^ 0x5555));
		sendto(s->ufd, out, ol, 0, (struct sockaddr *)&from, fl);
		break;
	default:
		break;
	}
	ol = make_answer(qm, (size_t)n, out, s->mode == SRV_TC ? GW_DNS_TC : 0);
	sendto(s->ufd, out, ol, 0, (struct sockaddr *)&from, fl);
}

static void srv_tcp_read(struct ev_loop *loop, ev_io *w, int revents)
{
	srv_t *s = w->data;
	ssize_t n;

	(void)revents;
	n = read(s->cfd, s->cbuf + s->clen, sizeof(s->cbuf) - s->clen);
	if (n <= 0)
		goto close;
	s->clen += (size_t)n;
	if (s->clen >= 2 && s->clen >= 2u + gw_dns_get16(s->cbuf)) {
		uint8_t out[702];
		size_t ql = gw_dns_get16(s->cbuf);
		size_t ol = make_answer(s->cbuf + 2, ql, out + 2, 0);
		s->tcp_queries++;
		gw_dns_put16(out, (uint16_t)ol);
		if (s->mode == SRV_WRONG_ID_FIRST) {
			uint16_t id = gw_dns_get16(out + 2);
			gw_dns_put16(out + 2, id ^ 0x5555);
			assert_int_equal(write(s->cfd, out, ol + 2),
					 (ssize_t)(ol + 2));
			gw_dns_put16(out + 2, id);
		}
		/* in two pieces: the client must reassemble */
		assert_int_equal(write(s->cfd, out, 5), 5);
		assert_int_equal(write(s->cfd, out + 5, ol + 2 - 5),
				 (ssize_t)(ol + 2 - 5));
		goto close;
	}
	return;
close:
	ev_io_stop(loop, &s->cio);
	close(s->cfd);
	s->cfd = -1;
}

static void srv_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	srv_t *s = w->data;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	(void)revents;
	if (fd < 0)
		return;
	if (s->cfd >= 0) { /* one at a time is all these tests need */
		close(fd);
		return;
	}
	s->cfd = fd;
	s->clen = 0;
	ev_io_init(&s->cio, srv_tcp_read, fd, EV_READ);
	s->cio.data = s;
	ev_io_start(loop, &s->cio);
}

static void srv_start(struct ev_loop *loop, srv_t *s, enum srv_mode mode)
{
	int one = 1;

	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->cfd = -1;
	/* UDP on an ephemeral port, TCP on the same number as a real resolver
	 * has; another process may hold that TCP port, so try a few. */
	for (int tries = 0;; tries++) {
		socklen_t l = sizeof(s->addr);

		assert_true(tries < 50);
		memset(&s->addr, 0, sizeof(s->addr));
		s->addr.sin_family = AF_INET;
		s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s->ufd = socket(AF_INET,
				SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(s->ufd >= 0);
		assert_int_equal(bind(s->ufd, (struct sockaddr *)&s->addr,
				      sizeof(s->addr)), 0);
		assert_int_equal(getsockname(s->ufd,
					     (struct sockaddr *)&s->addr, &l),
				 0);
		s->lfd = socket(AF_INET,
				SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(s->lfd >= 0);
		setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s->lfd, (struct sockaddr *)&s->addr,
			 sizeof(s->addr)) == 0)
			break;
		close(s->lfd);
		close(s->ufd);
	}
	assert_int_equal(listen(s->lfd, 8), 0);
	ev_io_init(&s->uio, srv_udp_read, s->ufd, EV_READ);
	s->uio.data = s;
	ev_io_start(loop, &s->uio);
	ev_io_init(&s->lio, srv_accept, s->lfd, EV_READ);
	s->lio.data = s;
	ev_io_start(loop, &s->lio);
}

static void srv_stop(struct ev_loop *loop, srv_t *s)
{
	ev_io_stop(loop, &s->uio);
	ev_io_stop(loop, &s->lio);
	close(s->ufd);
	close(s->lfd);
	if (s->cfd >= 0) {
		ev_io_stop(loop, &s->cio);
		close(s->cfd);
	}
}

static void add_upstream(gw_conf_t *c, gw_proto_t proto,
			 const struct sockaddr_in *a)
{
	gw_endpoint_t *ep = &c->upstream[c->n_upstream++];

	ep->proto = proto;
	memcpy(&ep->addr, a, sizeof(*a));
	ep->addrlen = sizeof(*a);
	snprintf(ep->url, sizeof(ep->url), "%s://127.0.0.1:%u",
		 proto == GW_PROTO_TCP ? "tcp" : "udp", ntohs(a->sin_port));
}

static gw_conf_t *new_conf(uint32_t timeout_ms, uint32_t attempts)
{
	gw_conf_t *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->up.timeout_ms = timeout_ms;
	c->up.attempts = attempts;
	return c;
}

/* A port nobody listens on: ICMP port unreachable on 127.0.0.1. */
static struct sockaddr_in closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
	close(fd);
	return a;
}

static void on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	result_t *r = q->client;

	assert_null(q->up_ctx);
	r->answers++;
	assert_true(len <= sizeof(r->msg));
	memcpy(r->msg, msg, len);
	r->len = len;
	ev_break(r->loop, EVBREAK_ALL);
}

static void on_fail(gw_query_t *q, int ede, const char *text)
{
	result_t *r = q->client;

	assert_null(q->up_ctx);
	r->fails++;
	r->ede = ede;
	snprintf(r->text, sizeof(r->text), "%s", text);
	ev_break(r->loop, EVBREAK_ALL);
}

static const gw_up_result_ops_t test_ops = { .answer = on_answer,
					     .fail = on_fail };

typedef struct fixture {
	struct ev_loop *loop;
	gw_conf_t *conf;
	gw_up_pool_t *pool;
	gw_query_t q;
	uint8_t wire[512];
	result_t res;
	ev_timer guard;
} fixture_t;

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void fx_pool(fixture_t *f)
{
	char err[128];

	f->pool = gw_up_pool_new(f->loop, f->conf, err, sizeof(err));
	assert_non_null(f->pool);
	gw_up_pool_set_result_ops(f->pool, &test_ops);
}

static void fx_init(fixture_t *f, uint32_t timeout_ms, uint32_t attempts)
{
	memset(f, 0, sizeof(*f));
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	f->conf = new_conf(timeout_ms, attempts);
	f->res.loop = f->loop;
	/* the pipeline's placeholder ID is 0; the pool must replace it */
	f->q.wire_len = mk_msg(f->wire, 0, GW_DNS_RD, "www.example.test",
			       GW_DNS_T_A, false);
	f->q.wire = f->wire;
	f->q.client = &f->res;
}

/* Runs the loop until a result arrives (or 10 s pass). */
static void fx_run(fixture_t *f)
{
	ev_now_update(f->loop);
	ev_timer_init(&f->guard, on_guard, 10., 0.);
	ev_timer_start(f->loop, &f->guard);
	ev_run(f->loop, 0);
	ev_timer_stop(f->loop, &f->guard);
}

/* The pool runs inside loop callbacks, where ev_now() is fresh; a test
 * calling it from outside must refresh the clock first. */
static void fx_send(fixture_t *f, gw_query_t *q)
{
	ev_now_update(f->loop);
	gw_up_pool_send(f->pool, q);
}

static void fx_deinit(fixture_t *f)
{
	gw_up_pool_free(f->pool);
	ev_loop_destroy(f->loop);
	free(f->conf);
}

static void assert_answered(fixture_t *f)
{
	gw_dns_msg_t a;

	assert_int_equal(f->res.answers, 1);
	assert_int_equal(f->res.fails, 0);
	assert_int_equal(gw_dns_parse(f->res.msg, f->res.len, &a), 0);
	assert_int_equal(a.ancount, 1);
	assert_false(a.flags & GW_DNS_TC);
	assert_int_equal(gw_up_pool_inflight(f->pool), 0);
	/* the pipeline's copy is untouched */
	assert_int_equal(gw_dns_get16(f->q.wire), 0);
}

/* A reload replaces the pool: the old one, retired, still finishes the
 * query it has (the answer arrives there), counters of an upstream kept
 * carry over to the new pool, and a query cancels in the pool it was sent
 * to (q->up_pool), not in the newest one. */
static void test_upstream_io_retired_pool_finishes(void **state)
{
	fixture_t f;
	srv_t s;
	char err[128];
	gw_up_metrics_t m;

	(void)state;
	fx_init(&f, 5000, 3);
	srv_start(f.loop, &s, SRV_ANSWER);
	add_upstream(f.conf, GW_PROTO_UDP, &s.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	assert_ptr_equal(f.q.up_pool, f.pool);

	gw_conf_t *c2 = new_conf(5000, 3);
	add_upstream(c2, GW_PROTO_UDP, &s.addr);
	add_upstream(c2, GW_PROTO_TCP, &s.addr);
	gw_up_pool_t *p2 = gw_up_pool_new(f.loop, c2, err, sizeof(err));
	assert_non_null(p2);
	gw_up_pool_set_result_ops(p2, &test_ops);
	gw_up_pool_inherit(p2, f.pool);
	assert_int_equal(gw_up_pool_metrics(p2, 0, &m), 0);
	assert_int_equal(m.queries, 1);	 /* same URL: carried over */
	assert_int_equal(m.inflight, 0); /* that one stays with the old */
	assert_int_equal(gw_up_pool_metrics(p2, 1, &m), 0);
	assert_int_equal(m.queries, 0);
	gw_up_pool_retire(f.pool);

	/* a second query goes to the new pool and is cancelled there */
	gw_query_t q2 = f.q;
	q2.up_ctx = NULL;
	q2.up_pool = NULL;
	ev_now_update(f.loop);
	gw_up_pool_send(p2, &q2);
	assert_ptr_equal(q2.up_pool, p2);
	assert_int_equal(gw_up_pool_inflight(p2), 1);
	gw_up_pool_cancel(q2.up_pool, &q2);
	assert_int_equal(gw_up_pool_inflight(p2), 0);
	assert_int_equal(gw_up_pool_inflight(f.pool), 1);

	fx_run(&f); /* the first one is answered through the old pool */
	assert_answered(&f);
	gw_up_pool_free(p2);
	free(c2);
	srv_stop(f.loop, &s);
	fx_deinit(&f);
}

static void test_upstream_io_udp_answer(void **state)
{
	fixture_t f;
	srv_t s;

	(void)state;
	fx_init(&f, 5000, 3);
	srv_start(f.loop, &s, SRV_ANSWER);
	add_upstream(f.conf, GW_PROTO_UDP, &s.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	assert_non_null(f.q.up_ctx);
	assert_int_equal(gw_up_pool_inflight(f.pool), 1);
	fx_run(&f);
	assert_answered(&f);
	assert_int_equal(f.q.attempts, 1);
	assert_int_equal(s.udp_queries, 1);
	assert_int_equal(gw_dns_get16(f.res.msg), s.last_id);
	srv_stop(f.loop, &s);
	fx_deinit(&f);
}

static void test_upstream_io_udp_wrong_id_then_right(void **state)
{
	fixture_t f;
	srv_t s;

	(void)state;
	fx_init(&f, 5000, 3);
	srv_start(f.loop, &s, SRV_WRONG_ID_FIRST);
	add_upstream(f.conf, GW_PROTO_UDP, &s.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	fx_run(&f);
	assert_answered(&f);
	assert_int_equal(f.q.attempts, 1);
	assert_int_equal(gw_dns_get16(f.res.msg), s.last_id);
	srv_stop(f.loop, &s);
	fx_deinit(&f);
}

static void test_upstream_io_timeout_next_upstream(void **state)
{
	fixture_t f;
	srv_t dead, live;

	(void)state;
	fx_init(&f, 250, 3);
	srv_start(f.loop, &dead, SRV_SILENT);
	srv_start(f.loop, &live, SRV_ANSWER);
	add_upstream(f.conf, GW_PROTO_UDP, &dead.addr);
	add_upstream(f.conf, GW_PROTO_UDP, &live.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	fx_run(&f);
	assert_answered(&f);
	assert_int_equal(f.q.attempts, 2);
	assert_int_equal(dead.udp_queries, 1);
	assert_int_equal(live.udp_queries, 1);
	/* a fresh ID for the second attempt's socket, checked by the match */
	assert_int_equal(gw_dns_get16(f.res.msg), live.last_id);
	assert_int_equal(gw_up_pool_sel(f.pool)->h[0].fails, 1);
	srv_stop(f.loop, &dead);
	srv_stop(f.loop, &live);
	fx_deinit(&f);
}

static void test_upstream_io_refused_next_upstream(void **state)
{
	fixture_t f;
	srv_t live;
	struct sockaddr_in closed;

	(void)state;
	ev_tstamp t0;

	fx_init(&f, 5000, 3);
	closed = closed_port();
	srv_start(f.loop, &live, SRV_ANSWER);
	add_upstream(f.conf, GW_PROTO_UDP, &closed);
	add_upstream(f.conf, GW_PROTO_UDP, &live.addr);
	fx_pool(&f);
	ev_now_update(f.loop);
	t0 = ev_now(f.loop);
	fx_send(&f, &f.q);
	fx_run(&f);
	ev_now_update(f.loop);
	assert_true(ev_now(f.loop) - t0 < 4.0); /* refused, not timed out */
	/* ECONNREFUSED, well before the 2 s timeout (guard is 3 s) */
	assert_answered(&f);
	assert_int_equal(f.q.attempts, 2);
	srv_stop(f.loop, &live);
	fx_deinit(&f);
}

static void test_upstream_io_tc_retries_over_tcp(void **state)
{
	fixture_t f;
	srv_t s;

	(void)state;
	fx_init(&f, 5000, 3);
	srv_start(f.loop, &s, SRV_TC);
	add_upstream(f.conf, GW_PROTO_UDP, &s.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	fx_run(&f);
	assert_answered(&f);
	assert_int_equal(s.udp_queries, 1);
	assert_int_equal(s.tcp_queries, 1);
	assert_int_equal(f.q.attempts, 1);
	srv_stop(f.loop, &s);
	fx_deinit(&f);
}

static void test_upstream_io_tcp_upstream(void **state)
{
	fixture_t f;
	srv_t s;

	(void)state;
	fx_init(&f, 5000, 3);
	srv_start(f.loop, &s, SRV_SILENT); /* UDP silent: must not be used */
	add_upstream(f.conf, GW_PROTO_TCP, &s.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	fx_run(&f);
	assert_answered(&f);
	assert_int_equal(s.udp_queries, 0);
	assert_int_equal(s.tcp_queries, 1);
	srv_stop(f.loop, &s);
	fx_deinit(&f);
}

static void test_upstream_io_tcp_wrong_id_then_right(void **state)
{
	fixture_t f;
	srv_t s;

	(void)state;
	fx_init(&f, 5000, 3);
	srv_start(f.loop, &s, SRV_WRONG_ID_FIRST);
	add_upstream(f.conf, GW_PROTO_TCP, &s.addr);
	fx_pool(&f);
	fx_send(&f, &f.q);
	fx_run(&f);
	assert_answered(&f);
	assert_int_equal(s.tcp_queries, 1);
	assert_int_equal(f.q.attempts, 1);
	srv_stop(f.loop, &s);
	fx_deinit(&f);
}

static void test_upstream_io_tcp_refused_fails(void **state)
{
	fixture_t f;
	struct sockaddr_in closed;

	(void)state;
	ev_tstamp t0;

	fx_init(&f, 5000, 2);
	closed = closed_port();
	add_upstream(f.conf, GW_PROTO_TCP, &closed);
	fx_pool(&f);
	ev_now_update(f.loop);
	t0 = ev_now(f.loop);
	fx_send(&f, &f.q);
	fx_run(&f);
	ev_now_update(f.loop);
	assert_true(ev_now(f.loop) - t0 < 4.0); /* refused, not timed out */
	assert_int_equal(f.res.fails, 1);
	assert_int_equal(f.res.ede, GW_DNS_EDE_NETWORK_ERROR);
	assert_int_equal(f.q.attempts, 2); /* one upstream: retried on itself */
	assert_int_equal(gw_up_pool_inflight(f.pool), 0);
	fx_deinit(&f);
}

static void test_upstream_io_all_attempts_time_out(void **state)
{
	fixture_t f;
	srv_t a, b;
	ev_tstamp t0;

	(void)state;
	fx_init(&f, 100, 3);
	srv_start(f.loop, &a, SRV_SILENT);
	srv_start(f.loop, &b, SRV_SILENT);
	add_upstream(f.conf, GW_PROTO_UDP, &a.addr);
	add_upstream(f.conf, GW_PROTO_UDP, &b.addr);
	fx_pool(&f);
	ev_now_update(f.loop);
	t0 = ev_now(f.loop);
	fx_send(&f, &f.q);
	fx_run(&f);
	ev_now_update(f.loop);
	assert_int_equal(f.res.fails, 1);
	assert_int_equal(f.res.ede, GW_DNS_EDE_NO_REACHABLE_AUTHORITY);
	assert_string_equal(f.res.text, "upstream timeout");
	assert_int_equal(f.q.attempts, 3);
	/* a, b, then a again: different upstreams first */
	assert_int_equal(a.udp_queries, 2);
	assert_int_equal(b.udp_queries, 1);
	/* bounded by attempts * timeout (slack for loaded CI machines) */
	assert_true(ev_now(f.loop) - t0 >= 0.3 - 0.01);
	assert_true(ev_now(f.loop) - t0 < 0.3 + 1.5);
	srv_stop(f.loop, &a);
	srv_stop(f.loop, &b);
	fx_deinit(&f);
}

static void test_upstream_io_all_down_fails_next_iteration(void **state)
{
	fixture_t f;
	srv_t a;

	(void)state;
	fx_init(&f, 50, 1);
	srv_start(f.loop, &a, SRV_SILENT);
	add_upstream(f.conf, GW_PROTO_UDP, &a.addr);
	fx_pool(&f);
	/* three timed-out queries take the only upstream down */
	for (int i = 0; i < 3; i++) {
		f.res.fails = 0;
		fx_send(&f, &f.q);
		fx_run(&f);
		assert_int_equal(f.res.fails, 1);
	}
	assert_true(gw_up_pool_sel(f.pool)->h[0].down);
	f.res.fails = 0;
	fx_send(&f, &f.q);
	/* never synchronously inside send */
	assert_int_equal(f.res.fails, 0);
	assert_int_equal(gw_up_pool_inflight(f.pool), 1);
	ev_run(f.loop, EVRUN_NOWAIT);
	assert_int_equal(f.res.fails, 1);
	assert_int_equal(f.res.ede, GW_DNS_EDE_NO_REACHABLE_AUTHORITY);
	assert_string_equal(f.res.text, "all upstreams down");
	assert_int_equal(a.udp_queries, 3);
	assert_int_equal(gw_up_pool_inflight(f.pool), 0);
	srv_stop(f.loop, &a);
	fx_deinit(&f);
}

static void test_upstream_io_cancel_and_free(void **state)
{
	fixture_t f;
	srv_t a;
	gw_query_t q2;
	result_t r2;

	(void)state;
	fx_init(&f, 100, 3);
	srv_start(f.loop, &a, SRV_SILENT);
	add_upstream(f.conf, GW_PROTO_UDP, &a.addr);
	fx_pool(&f);

	/* cancel: no callback, ever */
	fx_send(&f, &f.q);
	gw_up_pool_cancel(f.pool, &f.q);
	assert_null(f.q.up_ctx);
	assert_int_equal(gw_up_pool_inflight(f.pool), 0);
	ev_timer_init(&f.guard, on_guard, 0.3, 0.);
	ev_timer_start(f.loop, &f.guard);
	ev_run(f.loop, 0);
	assert_int_equal(f.res.answers + f.res.fails, 0);
	/* a cancelled trial or attempt is no failure */
	assert_int_equal(gw_up_pool_sel(f.pool)->h[0].fails, 0);

	/* free: pending queries are failed */
	q2 = f.q;
	memset(&r2, 0, sizeof(r2));
	r2.loop = f.loop;
	q2.client = &r2;
	fx_send(&f, &f.q);
	fx_send(&f, &q2);
	assert_int_equal(gw_up_pool_inflight(f.pool), 2);
	gw_up_pool_free(f.pool);
	f.pool = NULL;
	assert_int_equal(f.res.fails, 1);
	assert_int_equal(r2.fails, 1);
	srv_stop(f.loop, &a);
	fx_deinit(&f);
}

static void test_upstream_pool_rejects_unsupported(void **state)
{
	gw_conf_t *c = new_conf(1000, 3);
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct sockaddr_in a = closed_port();
	char err[128] = "";

	(void)state;
	add_upstream(c, GW_PROTO_UDP, &a);
	/* https:// without a name to verify (tls_name empty: not parsed) */
	c->upstream[0].proto = GW_PROTO_DOH;
	snprintf(c->upstream[0].url, sizeof(c->upstream[0].url),
		 "https://127.0.0.1/dns-query");
	assert_null(gw_up_pool_new(loop, c, err, sizeof(err)));
	assert_non_null(strstr(err, "https://127.0.0.1/dns-query"));
	assert_non_null(strstr(err, "needs '#name'"));
	/* tls:// with nothing to verify the resolver against */
	c->upstream[0].proto = GW_PROTO_DOT;
	snprintf(c->upstream[0].url, sizeof(c->upstream[0].url),
		 "tls://127.0.0.1:853");
	assert_null(gw_up_pool_new(loop, c, err, sizeof(err)));
	assert_non_null(strstr(err, "needs '#name'"));
	c->upstream[0].proto = GW_PROTO_UDP;
	c->upstream[0].addrlen = 0; /* a host name: not resolved here */
	assert_null(gw_up_pool_new(loop, c, err, sizeof(err)));
	ev_loop_destroy(loop);
	free(c);
}

/* --- selection policies (sans-I/O, fake clock) ---------------------------------- */

static void pick_n(gw_up_sel_t *s, int n, unsigned *count, bool report)
{
	bool trial;

	for (int k = 0; k < n; k++) {
		int i = gw_up_sel_pick(s, 0, 100.0, &trial);
		assert_true(i >= 0);
		count[i]++;
		if (report)
			gw_up_sel_report(s, (unsigned)i, trial, GW_UP_OK, 100.0);
	}
}

static void test_upstream_policy_round_robin_weighted(void **state)
{
	gw_up_sel_t s;
	uint32_t w[3] = { 1, 2, 0 }; /* 0 means 1 */
	unsigned count[3] = { 0 };
	bool trial;
	int seq[4];

	(void)state;
	gw_up_sel_init(&s, 3, 0);
	gw_up_sel_policy(&s, GW_UP_POLICY_ROUND_ROBIN, w, NULL);
	pick_n(&s, 400, count, true);
	assert_int_equal(count[0], 100);
	assert_int_equal(count[1], 200);
	assert_int_equal(count[2], 100);
	/* interleaved, not in bursts: weight 2 never picked 3 times running */
	gw_up_sel_init(&s, 2, 0);
	gw_up_sel_policy(&s, GW_UP_POLICY_ROUND_ROBIN, NULL, NULL);
	for (int k = 0; k < 4; k++) {
		seq[k] = gw_up_sel_pick(&s, 0, 1.0, &trial);
		gw_up_sel_report(&s, (unsigned)seq[k], trial, GW_UP_OK, 1.0);
	}
	assert_int_not_equal(seq[0], seq[1]);
	assert_int_not_equal(seq[1], seq[2]);
	/* a retry still avoids the upstream already tried */
	assert_int_equal(gw_up_sel_pick(&s, 1u << 0, 1.0, &trial), 1);
	gw_up_sel_report(&s, 1, trial, GW_UP_ABANDON, 1.0);
	assert_int_equal(gw_up_sel_pick(&s, 1u << 1, 1.0, &trial), 0);
}

static void test_upstream_policy_random_weighted(void **state)
{
	gw_up_sel_t s;
	gw_up_rng_t r;
	uint32_t w[2] = { 1, 3 };
	unsigned count[2] = { 0 };

	(void)state;
	gw_up_rng_seed(&r, 5);
	gw_up_sel_init(&s, 2, 0);
	gw_up_sel_policy(&s, GW_UP_POLICY_RANDOM, w, &r);
	pick_n(&s, 4000, count, true);
	/* 1:3 within a few percent */
	assert_true(count[0] > 850 && count[0] < 1150);
	assert_int_equal(count[0] + count[1], 4000);
}

static void test_upstream_policy_least_outstanding(void **state)
{
	gw_up_sel_t s;
	bool trial;
	uint32_t w[2] = { 1, 2 };
	unsigned count[2] = { 0 };

	(void)state;
	gw_up_sel_init(&s, 2, 0);
	gw_up_sel_policy(&s, GW_UP_POLICY_LEAST_OUTSTANDING, NULL, NULL);
	/* nothing reported: picks alternate as in-flight counts grow */
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 0);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 1);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 0);
	/* upstream 0 answers both of its queries: it is preferred again */
	gw_up_sel_report(&s, 0, false, GW_UP_OK, 1.0);
	gw_up_sel_report(&s, 0, false, GW_UP_OK, 1.0);
	assert_int_equal(s.out[0], 0);
	assert_int_equal(s.out[1], 1);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 0);
	/* a connection-level verdict is not the end of a pick */
	gw_up_sel_verdict(&s, 0, false, GW_UP_FAIL, 1.0);
	assert_int_equal(s.out[0], 1);
	/* weights: twice the in-flight allowed on upstream 1 */
	gw_up_sel_init(&s, 2, 0);
	gw_up_sel_policy(&s, GW_UP_POLICY_LEAST_OUTSTANDING, w, NULL);
	pick_n(&s, 30, count, false);
	assert_int_equal(count[0], 10);
	assert_int_equal(count[1], 20);
}

static void test_upstream_policy_lowest_latency(void **state)
{
	gw_up_sel_t s;
	bool trial;

	(void)state;
	gw_up_sel_init(&s, 3, 0);
	gw_up_sel_policy(&s, GW_UP_POLICY_LOWEST_LATENCY, NULL, NULL);
	/* unmeasured ones first, in order */
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 0);
	gw_up_sel_report(&s, 0, trial, GW_UP_OK, 1.0);
	gw_up_sel_rtt(&s, 0, 0.050);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 1);
	gw_up_sel_report(&s, 1, trial, GW_UP_OK, 1.0);
	gw_up_sel_rtt(&s, 1, 0.010);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 2);
	gw_up_sel_report(&s, 2, trial, GW_UP_OK, 1.0);
	gw_up_sel_rtt(&s, 2, 0.030);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 1);
	gw_up_sel_report(&s, 1, trial, GW_UP_OK, 1.0);
	/* upstream 1 slows down: the EWMA follows within a few answers */
	for (int k = 0; k < 6; k++)
		gw_up_sel_rtt(&s, 1, 0.200);
	assert_true(s.rtt[1] > 0.030);
	assert_int_equal(gw_up_sel_pick(&s, 0, 1.0, &trial), 2);
	gw_up_sel_report(&s, 2, trial, GW_UP_OK, 1.0);
	/* retries still go elsewhere */
	assert_int_equal(gw_up_sel_pick(&s, 1u << 2, 1.0, &trial), 0);
	gw_up_sel_report(&s, 0, trial, GW_UP_OK, 1.0);
	/* a down upstream ready for its trial is taken first */
	for (int k = 0; k < GW_UP_FALL; k++)
		gw_up_sel_report(&s, 2, false, GW_UP_FAIL, 2.0);
	assert_true(s.h[2].down);
	/* before its backoff ends: the fastest of the others (0: 50 ms) */
	assert_true(s.rtt[0] < s.rtt[1]);
	assert_int_equal(gw_up_sel_pick(&s, 0, 2.5, &trial), 0);
	gw_up_sel_report(&s, 0, trial, GW_UP_OK, 2.5);
	assert_int_equal(gw_up_sel_pick(&s, 0, 3.5, &trial), 2);
	assert_true(trial);
}

static void test_upstream_probe_rise_fall(void **state)
{
	gw_up_sel_t s;
	bool trial;

	(void)state;
	gw_up_sel_init(&s, 2, 0);
	gw_up_sel_probe_conf(&s, 2, 3);
	assert_int_equal(gw_up_sel_probe(&s, 0, false, 10.0), GW_UP_SAME);
	assert_int_equal(gw_up_sel_probe(&s, 0, false, 10.0), GW_UP_SAME);
	/* a success in between resets the count */
	assert_int_equal(gw_up_sel_probe(&s, 0, true, 10.0), GW_UP_SAME);
	assert_int_equal(gw_up_sel_probe(&s, 0, false, 11.0), GW_UP_SAME);
	assert_int_equal(gw_up_sel_probe(&s, 0, false, 11.0), GW_UP_SAME);
	assert_int_equal(gw_up_sel_probe(&s, 0, false, 11.0), GW_UP_WENT_DOWN);
	assert_true(s.h[0].down);
	/* down: queries go to upstream 1 */
	assert_int_equal(gw_up_sel_pick(&s, 0, 11.5, &trial), 1);
	gw_up_sel_report(&s, 1, trial, GW_UP_OK, 11.5);
	/* rise: two answered probes bring it back */
	assert_int_equal(gw_up_sel_probe(&s, 0, true, 12.0), GW_UP_SAME);
	assert_true(s.h[0].down);
	assert_int_equal(gw_up_sel_probe(&s, 0, true, 13.0), GW_UP_CAME_UP);
	assert_false(s.h[0].down);
	assert_int_equal(gw_up_sel_pick(&s, 0, 13.0, &trial), 0);
	assert_false(trial);
}

/* --- per-connection pending table (sans-I/O) -------------------------------------- */

static void test_upstream_pend_table(void **state)
{
	gw_up_pend_t t;
	gw_up_rng_t r;
	int a, b, c;
	uint16_t id;
	int x = 1, y = 2, z = 3;

	(void)state;
	gw_up_rng_seed(&r, 7);
	assert_int_equal(gw_up_pend_init(&t, 0), GW_EINVAL);
	assert_int_equal(gw_up_pend_init(&t, 3), 0);
	a = gw_up_pend_add(&t, &r, &x);
	b = gw_up_pend_add(&t, &r, &y);
	c = gw_up_pend_add(&t, &r, &z);
	assert_true(a >= 0 && b >= 0 && c >= 0);
	assert_true(a != b && b != c && a != c);
	assert_true(gw_up_pend_full(&t));
	assert_int_equal(gw_up_pend_add(&t, &r, &x), GW_ENOSPC);
	assert_ptr_equal(gw_up_pend_get(&t, (uint16_t)b), &y);
	/* an orphan keeps its ID and its slot, but yields no query */
	gw_up_pend_orphan(&t, (uint16_t)b);
	assert_null(gw_up_pend_get(&t, (uint16_t)b));
	assert_true(gw_up_pend_busy(&t, (uint16_t)b));
	assert_int_equal(t.live, 2);
	assert_int_equal(t.orphans, 1);
	assert_true(gw_up_pend_full(&t));
	/* the late answer frees it */
	assert_null(gw_up_pend_remove(&t, (uint16_t)b));
	assert_false(gw_up_pend_busy(&t, (uint16_t)b));
	assert_int_equal(t.orphans, 0);
	assert_false(gw_up_pend_full(&t));
	/* unknown IDs are harmless */
	assert_null(gw_up_pend_remove(&t, (uint16_t)(a ^ c ^ 0x8000)));
	gw_up_pend_orphan(&t, (uint16_t)(a ^ c ^ 0x8000));
	assert_ptr_equal(gw_up_pend_remove(&t, (uint16_t)a), &x);
	assert_ptr_equal(gw_up_pend_pop_live(&t, &id), &z);
	assert_int_equal(id, c);
	assert_null(gw_up_pend_pop_live(&t, &id));
	assert_int_equal(t.live + t.orphans, 0);
	gw_up_pend_deinit(&t);
}

/*
 * 70 000 queries through one connection's table with 100 in flight,
 * answered in random order, some orphaned and answered late: an ID is
 * never handed out while taken, and the map agrees with a reference model
 * after every step (probe chains survive backward-shift deletion).
 */
static void test_upstream_pend_70000_no_reuse(void **state)
{
	static void *model[65536];
	static bool taken[65536];
	gw_up_pend_t t;
	gw_up_rng_t r;
	uint16_t fl[100];
	unsigned n = 0, done = 0;
	uint64_t x = 12345;

	(void)state;
	memset(model, 0, sizeof(model));
	memset(taken, 0, sizeof(taken));
	gw_up_rng_seed(&r, 99);
	assert_int_equal(gw_up_pend_init(&t, 100), 0);
	for (unsigned sent = 0; sent < 70000 || n > 0;) {
		if (sent < 70000 && n < 100) {
			void *p = (void *)(uintptr_t)(sent + 1);
			int id = gw_up_pend_add(&t, &r, p);
			assert_true(id >= 0);
			assert_false(taken[id]);
			taken[id] = true;
			model[id] = p;
			fl[n++] = (uint16_t)id;
			sent++;
			continue;
		}
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		unsigned k = (unsigned)(x >> 33) % n;
		uint16_t id = fl[k];
		if ((x >> 20) % 7 == 0 && model[id]) {
			/* timed out: orphaned, answered later */
			gw_up_pend_orphan(&t, id);
			model[id] = NULL;
			continue;
		}
		assert_ptr_equal(gw_up_pend_get(&t, id), model[id]);
		assert_ptr_equal(gw_up_pend_remove(&t, id), model[id]);
		taken[id] = false;
		model[id] = NULL;
		fl[k] = fl[--n];
		done++;
		assert_int_equal(t.live + t.orphans, n);
	}
	assert_int_equal(done, 70000);
	gw_up_pend_deinit(&t);
}

/* --- pooled connections against a pipelining server ------------------------------ */

enum pmode {
	P_ANSWER,        /* answers each read's queries in reverse order */
	P_CLOSE_FIRST,   /* first connection: close after 3 queries */
	P_WRONG_QUESTION,/* right ID, other question */
	P_SILENT,        /* accepts, reads, never answers */
};

#define PMAX_CONNS 16

typedef struct pconn {
	int fd;
	ev_io io;
	uint8_t buf[65536];
	size_t len;
	unsigned queries;
	struct pserv *s;
} pconn_t;

typedef struct pserv {
	enum pmode mode;
	int lfd;
	struct sockaddr_in addr;
	ev_io lio;
	pconn_t c[PMAX_CONNS];
	unsigned accepts, queries, max_open;
	uint8_t inflight[65536]; /* per ID: queries seen, not yet answered */
	bool dup_seen;
} pserv_t;

static unsigned pserv_open(const pserv_t *s)
{
	unsigned n = 0;

	for (int i = 0; i < PMAX_CONNS; i++)
		n += s->c[i].fd >= 0;
	return n;
}

static void pconn_close(struct ev_loop *loop, pconn_t *c)
{
	ev_io_stop(loop, &c->io);
	close(c->fd);
	c->fd = -1;
}

static void pconn_read(struct ev_loop *loop, ev_io *w, int revents)
{
	pconn_t *c = w->data;
	pserv_t *s = c->s;
	uint8_t out[65536];
	size_t ol = 0, off = 0;
	uint16_t ids[512];
	size_t qoff[512], qlen[512];
	unsigned nq = 0;
	ssize_t n;

	(void)revents;
	n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	if (n <= 0) {
		pconn_close(loop, c);
		return;
	}
	c->len += (size_t)n;
	while (c->len - off >= 2 &&
	       c->len - off >= 2u + gw_dns_get16(c->buf + off) && nq < 512) {
		size_t l = gw_dns_get16(c->buf + off);
		uint16_t id = gw_dns_get16(c->buf + off + 2);
		/* the same ID twice on one connection while unanswered */
		if (s->inflight[id])
			s->dup_seen = true;
		s->inflight[id]++;
		ids[nq] = id;
		qoff[nq] = off + 2;
		qlen[nq] = l;
		nq++;
		off += 2 + l;
		c->queries++;
		s->queries++;
		if (s->mode == P_CLOSE_FIRST && s->accepts == 1 &&
		    c->queries == 3) {
			pconn_close(loop, c);
			return;
		}
	}
	if (s->mode == P_SILENT || s->mode == P_CLOSE_FIRST) {
		if (s->mode == P_SILENT || s->accepts == 1) {
			memmove(c->buf, c->buf + off, c->len - off);
			c->len -= off;
			return;
		}
	}
	/* out of order: last query first */
	for (unsigned i = nq; i-- > 0;) {
		uint8_t *a = out + ol + 2;
		size_t al = make_answer(c->buf + qoff[i], qlen[i], a, 0);
		if (s->mode == P_WRONG_QUESTION)
			a[GW_DNS_HEADER_LEN + 1] ^= 0x01; /* 1st label byte */
		gw_dns_put16(out + ol, (uint16_t)al);
		ol += 2 + al;
		s->inflight[ids[i]]--;
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
	for (size_t w2 = 0; w2 < ol;) {
		ssize_t k = write(c->fd, out + w2, ol - w2);
		assert_true(k > 0);
		w2 += (size_t)k;
	}
}

static void pserv_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	pserv_t *s = w->data;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);

	(void)revents;
	if (fd < 0)
		return;
	s->accepts++;
	for (int i = 0; i < PMAX_CONNS; i++) {
		pconn_t *c = &s->c[i];
		if (c->fd >= 0)
			continue;
		c->fd = fd;
		c->len = 0;
		c->queries = 0;
		c->s = s;
		ev_io_init(&c->io, pconn_read, fd, EV_READ);
		c->io.data = c;
		ev_io_start(loop, &c->io);
		if (pserv_open(s) > s->max_open)
			s->max_open = pserv_open(s);
		return;
	}
	close(fd);
}

static pserv_t *pserv_start(struct ev_loop *loop, enum pmode mode)
{
	pserv_t *s = calloc(1, sizeof(*s));
	socklen_t l = sizeof(s->addr);

	assert_non_null(s);
	s->mode = mode;
	for (int i = 0; i < PMAX_CONNS; i++)
		s->c[i].fd = -1;
	s->addr.sin_family = AF_INET;
	s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	assert_int_equal(bind(s->lfd, (struct sockaddr *)&s->addr,
			      sizeof(s->addr)), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&s->addr, &l),
			 0);
	assert_int_equal(listen(s->lfd, 64), 0);
	ev_io_init(&s->lio, pserv_accept, s->lfd, EV_READ);
	s->lio.data = s;
	ev_io_start(loop, &s->lio);
	return s;
}

static void pserv_stop(struct ev_loop *loop, pserv_t *s)
{
	ev_io_stop(loop, &s->lio);
	close(s->lfd);
	for (int i = 0; i < PMAX_CONNS; i++)
		if (s->c[i].fd >= 0)
			pconn_close(loop, &s->c[i]);
	free(s);
}

/* Many queries at once, each with its own result; the loop runs until
 * `want` results have arrived. */
typedef struct multi {
	struct ev_loop *loop;
	gw_query_t *q;
	uint8_t (*wire)[64];
	unsigned *free_slot, n_free; /* slots of finished queries */
	unsigned n, next, answers, fails, want, window, outstanding, refused;
	struct sockaddr_in client; /* client_addr of every query, if set */
	gw_up_pool_t *pool;
	int last_ede;
} multi_t;

static multi_t *g_multi;

static void multi_refill(multi_t *m);

static void multi_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	gw_dns_msg_t a, sent;

	assert_null(q->up_ctx);
	/* never misrouted: the answer is for this query's question */
	assert_int_equal(gw_dns_parse(msg, len, &a), 0);
	assert_int_equal(gw_dns_parse(q->wire, q->wire_len, &sent), 0);
	assert_int_equal(a.qname_len, sent.qname_len);
	assert_memory_equal(a.qname, sent.qname, sent.qname_len);
	g_multi->answers++;
	g_multi->outstanding--;
	g_multi->free_slot[g_multi->n_free++] = (unsigned)(q - g_multi->q);
	multi_refill(g_multi);
	if (g_multi->answers + g_multi->fails >= g_multi->want)
		ev_break(g_multi->loop, EVBREAK_ALL);
}

static void multi_fail(gw_query_t *q, int ede, const char *text)
{
	(void)text;
	assert_null(q->up_ctx);
	g_multi->fails++;
	g_multi->last_ede = ede;
	g_multi->outstanding--;
	g_multi->free_slot[g_multi->n_free++] = (unsigned)(q - g_multi->q);
	multi_refill(g_multi);
	if (g_multi->answers + g_multi->fails >= g_multi->want)
		ev_break(g_multi->loop, EVBREAK_ALL);
}

static void multi_refuse(gw_query_t *q)
{
	assert_null(q->up_ctx);
	g_multi->refused++;
	g_multi->fails++;
	g_multi->outstanding--;
	g_multi->free_slot[g_multi->n_free++] = (unsigned)(q - g_multi->q);
	multi_refill(g_multi);
	if (g_multi->answers + g_multi->fails >= g_multi->want)
		ev_break(g_multi->loop, EVBREAK_ALL);
}

static const gw_up_result_ops_t multi_ops = {
	.answer = multi_answer, .fail = multi_fail, .refuse = multi_refuse,
};

/* Sends from inside callbacks too: answering must be able to queue more. */
static void multi_refill(multi_t *m)
{
	while (m->next < m->n && m->outstanding < m->window) {
		unsigned i = m->next++, k = m->free_slot[--m->n_free];
		gw_query_t *q = &m->q[k];
		char name[48];
		memset(q, 0, sizeof(*q));
		snprintf(name, sizeof(name), "q%u.example.test", i);
		q->wire_len = mk_msg(m->wire[k], 0, GW_DNS_RD, name,
				     GW_DNS_T_A, false);
		q->wire = m->wire[k];
		memcpy(&q->client_addr, &m->client, sizeof(m->client));
		m->outstanding++;
		gw_up_pool_send(m->pool, q);
	}
}

static multi_t *multi_new(struct ev_loop *loop, gw_up_pool_t *p, unsigned n,
			  unsigned window)
{
	multi_t *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->loop = loop;
	m->pool = p;
	m->n = m->want = n;
	m->window = window;
	m->q = calloc(window, sizeof(*m->q));
	m->wire = calloc(window, sizeof(*m->wire));
	m->free_slot = calloc(window, sizeof(*m->free_slot));
	assert_non_null(m->free_slot);
	for (unsigned i = 0; i < window; i++)
		m->free_slot[m->n_free++] = window - 1 - i;
	assert_non_null(m->q);
	assert_non_null(m->wire);
	g_multi = m;
	gw_up_pool_set_result_ops(p, &multi_ops);
	return m;
}

static void multi_free(multi_t *m)
{
	free(m->q);
	free(m->wire);
	free(m->free_slot);
	free(m);
	g_multi = NULL;
}

static void multi_run(multi_t *m, double limit)
{
	ev_timer guard;

	ev_now_update(m->loop);
	multi_refill(m);
	ev_timer_init(&guard, on_guard, limit, 0.);
	ev_timer_start(m->loop, &guard);
	ev_run(m->loop, 0);
	ev_timer_stop(m->loop, &guard);
}

/* A seed stands in for the bootstrap lookup of a host name: with the
 * bootstrap resolver unreachable the pool is refused; with a seed it starts
 * on the seed's address, and exports it with the time left. */
static void test_upstream_pool_seed_skips_bootstrap(void **state)
{
	(void)state;
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	gw_conf_t *c = calloc(1, sizeof(*c));
	char err[256];
	struct sockaddr_in dead = closed_port(), a = {.sin_family = AF_INET};

	assert_non_null(c);
	gw_conf_defaults(c);
	c->up.timeout_ms = 200;
	c->up.attempts = 1;
	memcpy(&c->up.bootstrap_addr, &dead, sizeof(dead));
	c->up.bootstrap_addrlen = sizeof(dead);
	assert_int_equal(gw_endpoint_parse("tls://resolver.example.test"
					   "#resolver.example.test",
					   true, &c->upstream[0], err,
					   sizeof(err)),
			 0);
	c->n_upstream = 1;
	assert_null(gw_up_pool_new(loop, c, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot resolve"));

	gw_up_seed_t seed = {0}, out;
	a.sin_port = htons(853);
	a.sin_addr.s_addr = htonl(0x7f000002);
	memcpy(&seed.e[0].addr, &a, sizeof(a));
	seed.e[0].addrlen = sizeof(a);
	seed.e[0].ttl = 100;
	gw_up_pool_t *p = gw_up_pool_new_seeded(loop, c, &seed, err,
						sizeof(err));
	assert_non_null(p);
	socklen_t len = 0;
	const struct sockaddr *got = gw_up_pool_addr(p, 0, &len);
	assert_non_null(got);
	assert_int_equal(len, sizeof(a));
	assert_memory_equal(got, &a, sizeof(a));
	gw_up_pool_seed(p, &out);
	assert_int_equal(out.e[0].addrlen, sizeof(a));
	assert_memory_equal(&out.e[0].addr, &a, sizeof(a));
	assert_true(out.e[0].ttl > 90 && out.e[0].ttl <= 100);
	gw_up_pool_free(p);
	free(c);
	ev_loop_destroy(loop);
}

static gw_up_pool_t *pool_for(struct ev_loop *loop, gw_conf_t *c)
{
	char err[160];
	gw_up_pool_t *p = gw_up_pool_new(loop, c, err, sizeof(err));

	assert_non_null(p);
	return p;
}

static const gw_up_metrics_t *metrics(gw_up_pool_t *p)
{
	static gw_up_metrics_t m;

	assert_int_equal(gw_up_pool_metrics(p, 0, &m), 0);
	return &m;
}

/*
 * The acceptance test of the pooled manager: 70 000 queries, 100 in flight
 * at any time, over ONE connection answered out of order; the server checks
 * that no ID arrives twice while the first is unanswered.
 */
static void test_upstream_io_pool_70000_one_conn(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_ANSWER);
	gw_conf_t *c = new_conf(5000, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->up.max_conns_per_upstream = 1;
	c->up.max_inflight_per_conn = 100;
	p = pool_for(loop, c);
	m = multi_new(loop, p, 70000, 100);
	multi_run(m, 60.);
	assert_int_equal(m->answers, 70000);
	assert_int_equal(m->fails, 0);
	assert_int_equal(s->accepts, 1);
	assert_false(s->dup_seen);
	assert_int_equal(s->queries, 70000);
	assert_int_equal(gw_up_pool_inflight(p), 0);
	assert_int_equal(metrics(p)->queries, 70000);
	assert_int_equal(metrics(p)->answers[0], 70000);
	assert_int_equal(metrics(p)->conns_open, 1);
	assert_int_equal(metrics(p)->inflight, 0);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

/* More load than one connection takes: new connections up to the cap and
 * no further; then a bounded wait queue; past it queries fail at once
 * instead of piling up. */
static void test_upstream_io_pool_grows_to_cap(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_SILENT);
	gw_conf_t *c = new_conf(300, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->up.max_conns_per_upstream = 3;
	c->up.max_inflight_per_conn = 2;
	c->up.max_waiting_per_upstream = 1;
	p = pool_for(loop, c);
	m = multi_new(loop, p, 10, 10);
	multi_run(m, 10.);
	assert_int_equal(m->answers, 0);
	assert_int_equal(m->fails, 10);
	assert_int_equal(s->accepts, 3);
	assert_int_equal(s->max_open, 3);
	assert_int_equal(s->queries, 6);
	/* 6 on the wire and 1 waiting for a slot time out; 3 find the
	 * pool and its wait queue full and fail at once (GW_ENOSPC) */
	assert_int_equal(metrics(p)->queries, 7);
	assert_int_equal(metrics(p)->timeouts, 7);
	assert_int_equal(metrics(p)->errors, 3);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

/* A connection closed with queries on it: each is sent again once, on a new
 * connection, and answered; the close is not a health failure. */
static void test_upstream_io_pool_conn_dies_reissued(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_CLOSE_FIRST);
	gw_conf_t *c = new_conf(2000, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->up.max_conns_per_upstream = 1;
	p = pool_for(loop, c);
	m = multi_new(loop, p, 3, 3);
	multi_run(m, 10.);
	assert_int_equal(m->answers, 3);
	assert_int_equal(m->fails, 0);
	assert_int_equal(s->accepts, 2);
	assert_int_equal(s->queries, 6);
	assert_false(gw_up_pool_sel(p)->h[0].down);
	assert_int_equal(gw_up_pool_sel(p)->h[0].fails, 0);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

/* Our ID with another question is never handed over: the query times out
 * (SERVFAIL, EDE 22) and the connection is retired. */
static void test_upstream_io_pool_wrong_question(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_WRONG_QUESTION);
	gw_conf_t *c = new_conf(200, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	p = pool_for(loop, c);
	m = multi_new(loop, p, 2, 2);
	multi_run(m, 10.);
	assert_int_equal(m->answers, 0);
	assert_int_equal(m->fails, 2);
	assert_int_equal(m->last_ede, GW_DNS_EDE_NO_REACHABLE_AUTHORITY);
	assert_int_equal(metrics(p)->ignored, 2);
	/* nothing live left and it saw no good answer: retired, closed */
	assert_int_equal(gw_up_conns_open(gw_up_pool_conns(p), 0), 0);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ONE);
}

static void run_for(struct ev_loop *loop, double secs)
{
	ev_timer t;

	ev_now_update(loop);
	ev_timer_init(&t, on_tick, secs, 0.);
	ev_timer_start(loop, &t);
	ev_run(loop, 0);
	ev_timer_stop(loop, &t);
}

/* Idle connections close after upstream.idle_timeout_ms; a connection is
 * recycled after upstream.max_queries_per_conn queries. */
static void test_upstream_io_pool_idle_and_recycle(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_ANSWER);
	gw_conf_t *c = new_conf(2000, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->up.idle_timeout_ms = 150;
	c->up.max_queries_per_conn = 10;
	c->up.max_conns_per_upstream = 1;
	p = pool_for(loop, c);
	m = multi_new(loop, p, 25, 1);
	multi_run(m, 10.);
	assert_int_equal(m->answers, 25);
	assert_int_equal(s->accepts, 3); /* 10 + 10 + 5 */
	assert_int_equal(gw_up_conns_open(gw_up_pool_conns(p), 0), 1);
	run_for(loop, 0.4);
	assert_int_equal(gw_up_conns_open(gw_up_pool_conns(p), 0), 0);
	assert_int_equal(metrics(p)->conns_open, 0);
	assert_int_equal(metrics(p)->conns_opened, 3);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

/* Connection refused: one health failure per connect, a reconnect backoff
 * that makes further queries fail fast, and the upstream goes down after
 * `fall` connects failed. */
static void test_upstream_io_pool_refused_backoff(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	gw_conf_t *c = new_conf(1000, 2);
	struct sockaddr_in a = closed_port();
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &a);
	p = pool_for(loop, c);
	m = multi_new(loop, p, 5, 5);
	multi_run(m, 10.);
	assert_int_equal(m->fails, 5);
	assert_int_equal(m->last_ede, GW_DNS_EDE_NETWORK_ERROR);
	assert_int_equal(metrics(p)->conn_failures, 1);
	assert_int_equal(gw_up_pool_sel(p)->h[0].fails, 1);
	assert_false(gw_up_pool_sel(p)->h[0].down);
	multi_free(m);
	/* after the backoff another connect, another failure... */
	for (int i = 0; i < 2; i++) {
		run_for(loop, 0.1 * (1 << i) + 0.05);
		m = multi_new(loop, p, 1, 1);
		multi_run(m, 10.);
		assert_int_equal(m->fails, 1);
		multi_free(m);
	}
	assert_int_equal(metrics(p)->conn_failures, 3);
	assert_true(gw_up_pool_sel(p)->h[0].down);
	assert_true(metrics(p)->down);
	gw_up_pool_free(p);
	ev_loop_destroy(loop);
	free(c);
}

/* Queries beyond connections x in-flight wait for a free slot and are all
 * answered, on no more connections than the cap. */
static void test_upstream_io_pool_wait_queue_served(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_ANSWER);
	gw_conf_t *c = new_conf(5000, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->up.max_conns_per_upstream = 2;
	c->up.max_inflight_per_conn = 5;
	c->up.max_waiting_per_upstream = 1000;
	p = pool_for(loop, c);
	m = multi_new(loop, p, 500, 500);
	multi_run(m, 20.);
	assert_int_equal(m->answers, 500);
	assert_int_equal(s->accepts, 2);
	assert_false(s->dup_seen);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

/* limits.max_waiting_per_client: past it, REFUSED at once (next loop
 * iteration), and the count goes back down as queries end. */
static void test_upstream_io_client_cap_refused(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_SILENT);
	gw_conf_t *c = new_conf(300, 1);
	gw_up_pool_t *p;
	multi_t *m;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->limits.max_waiting_per_client = 5;
	p = pool_for(loop, c);
	m = multi_new(loop, p, 8, 8);
	m->client.sin_family = AF_INET;
	m->client.sin_addr.s_addr = htonl(0x7f000002);
	multi_run(m, 10.);
	assert_int_equal(m->refused, 3);
	assert_int_equal(m->fails, 8);
	assert_int_equal(s->queries, 5);
	assert_int_equal(gw_up_pool_inflight(p), 0);
	multi_free(m);
	/* freed: the same client gets 5 more on the wire */
	m = multi_new(loop, p, 5, 5);
	m->client.sin_family = AF_INET;
	m->client.sin_addr.s_addr = htonl(0x7f000002);
	multi_run(m, 10.);
	assert_int_equal(m->refused, 0);
	multi_free(m);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

/* Active probes take a silent upstream down (fall) and, once it answers
 * again, back up (rise), with no client query involved. */
static void test_upstream_io_probes_rise_fall(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	pserv_t *s = pserv_start(loop, P_SILENT);
	gw_conf_t *c = new_conf(100, 1);
	gw_up_pool_t *p;

	(void)state;
	add_upstream(c, GW_PROTO_TCP, &s->addr);
	c->up.probe_interval_ms = 150;
	c->up.probe_rise = 2;
	c->up.probe_fall = 2;
	snprintf(c->up.probe_name, sizeof(c->up.probe_name), "example.test");
	c->up.probe_type = GW_DNS_T_A;
	p = pool_for(loop, c);
	run_for(loop, 1.0);
	assert_true(gw_up_pool_sel(p)->h[0].down);
	assert_true(metrics(p)->probes_sent >= 2);
	assert_true(metrics(p)->probes_failed >= 2);
	assert_int_equal(gw_up_pool_inflight(p), 0); /* probes not counted */
	s->mode = P_ANSWER;
	run_for(loop, 1.2);
	assert_false(gw_up_pool_sel(p)->h[0].down);
	gw_up_pool_free(p);
	pserv_stop(loop, s);
	ev_loop_destroy(loop);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_select_order),
		cmocka_unit_test(test_upstream_select_failover),
		cmocka_unit_test(test_upstream_health_fall_backoff_recovery),
		cmocka_unit_test(test_upstream_all_down_fails_fast),
		cmocka_unit_test(test_upstream_ids_never_in_flight),
		cmocka_unit_test(test_upstream_ids_full_table),
		cmocka_unit_test(test_upstream_match_rules),
		cmocka_unit_test(test_upstream_io_udp_answer),
		cmocka_unit_test(test_upstream_io_retired_pool_finishes),
		cmocka_unit_test(test_upstream_io_udp_wrong_id_then_right),
		cmocka_unit_test(test_upstream_io_timeout_next_upstream),
		cmocka_unit_test(test_upstream_io_refused_next_upstream),
		cmocka_unit_test(test_upstream_io_tc_retries_over_tcp),
		cmocka_unit_test(test_upstream_io_tcp_upstream),
		cmocka_unit_test(test_upstream_io_tcp_wrong_id_then_right),
		cmocka_unit_test(test_upstream_io_tcp_refused_fails),
		cmocka_unit_test(test_upstream_io_all_attempts_time_out),
		cmocka_unit_test(test_upstream_io_all_down_fails_next_iteration),
		cmocka_unit_test(test_upstream_io_cancel_and_free),
		cmocka_unit_test(test_upstream_pool_rejects_unsupported),
		cmocka_unit_test(test_upstream_pool_seed_skips_bootstrap),
		cmocka_unit_test(test_upstream_policy_round_robin_weighted),
		cmocka_unit_test(test_upstream_policy_random_weighted),
		cmocka_unit_test(test_upstream_policy_least_outstanding),
		cmocka_unit_test(test_upstream_policy_lowest_latency),
		cmocka_unit_test(test_upstream_probe_rise_fall),
		cmocka_unit_test(test_upstream_pend_table),
		cmocka_unit_test(test_upstream_pend_70000_no_reuse),
		cmocka_unit_test(test_upstream_io_pool_70000_one_conn),
		cmocka_unit_test(test_upstream_io_pool_grows_to_cap),
		cmocka_unit_test(test_upstream_io_pool_wait_queue_served),
		cmocka_unit_test(test_upstream_io_pool_conn_dies_reissued),
		cmocka_unit_test(test_upstream_io_pool_wrong_question),
		cmocka_unit_test(test_upstream_io_pool_idle_and_recycle),
		cmocka_unit_test(test_upstream_io_pool_refused_backoff),
		cmocka_unit_test(test_upstream_io_client_cap_refused),
		cmocka_unit_test(test_upstream_io_probes_rise_fall),
	};

	gw_log_setup(getenv("GW_TEST_DEBUG") ? GW_LOG_DEBUG : GW_LOG_ERROR, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
