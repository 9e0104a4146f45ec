/*
 * test_upstream_udp.c - the shared upstream UDP sockets (upstream/udp.c)
 * through a real pool on loopback: reuse across queries, retirement after
 * the query and age bounds (a new random port), idle close, matching by ID
 * and question with several queries on one socket, and an ICMP port
 * unreachable failing only the queries of the socket it arrived on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/dns.h"
#include "gateway/error.h"
#include "upstream/attempt.h"
#include "upstream/upstream.h"

/* --- DNS messages ------------------------------------------------------------ */

/* The answer to query q (qlen bytes): QR, one A record. */
static size_t mk_answer(const uint8_t *q, size_t qlen, uint8_t *out)
{
	static const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60,
				      0, 4, 192, 0, 2, 1 };

	memcpy(out, q, qlen);
	gw_dns_put16(out + 2, GW_DNS_QR | GW_DNS_RD | GW_DNS_RA);
	gw_dns_put16(out + 6, 1);
	memcpy(out + qlen, rr, sizeof(rr));
	return qlen + sizeof(rr);
}

/* --- a scripted upstream ------------------------------------------------------ */

#define SRV_MAX 64

/* Answers names starting with 'a' at once; keeps the others (held[]) for
 * the test to answer, or not, by hand. */
typedef struct srv {
	int fd;
	struct sockaddr_in addr;
	ev_io io;
	unsigned n;                    /* queries received */
	uint16_t port[SRV_MAX];        /* their source ports */
	uint8_t held[SRV_MAX][512];    /* queries not answered */
	size_t held_len[SRV_MAX];
	struct sockaddr_in held_from[SRV_MAX];
	unsigned n_held;
} srv_t;

static void srv_read(struct ev_loop *loop, ev_io *w, int revents)
{
	srv_t *s = w->data;
	uint8_t qm[512], out[600];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	ssize_t n;

	(void)loop;
	(void)revents;
	while ((n = recvfrom(s->fd, qm, sizeof(qm), MSG_DONTWAIT,
			     (struct sockaddr *)&from, &fl)) >= 0) {
		if (n < GW_DNS_HEADER_LEN + 2)
			continue;
		if (s->n < SRV_MAX)
			s->port[s->n] = ntohs(from.sin_port);
		s->n++;
		if (qm[GW_DNS_HEADER_LEN + 1] == 'a') {
			size_t ol = mk_answer(qm, (size_t)n, out);
			sendto(s->fd, out, ol, 0, (struct sockaddr *)&from, fl);
		} else if (s->n_held < SRV_MAX) {
			memcpy(s->held[s->n_held], qm, (size_t)n);
			s->held_len[s->n_held] = (size_t)n;
			s->held_from[s->n_held++] = from;
		}
		fl = sizeof(from);
	}
}

static void srv_start(struct ev_loop *loop, srv_t *s)
{
	socklen_t l = sizeof(s->addr);

	memset(s, 0, sizeof(*s));
	s->addr.sin_family = AF_INET;
	s->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&s->addr,
			      sizeof(s->addr)), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&s->addr, &l),
			 0);
	ev_io_init(&s->io, srv_read, s->fd, EV_READ);
	s->io.data = s;
	ev_io_start(loop, &s->io);
}

static void srv_stop(struct ev_loop *loop, srv_t *s)
{
	if (s->fd < 0)
		return;
	ev_io_stop(loop, &s->io);
	close(s->fd);
	s->fd = -1;
}

/* Sends held query i's answer, with its ID replaced by id when id >= 0 and
 * its question taken from held query qfrom when qfrom >= 0. */
static void srv_reply(srv_t *s, unsigned i, int id, int qfrom)
{
	uint8_t out[600];
	unsigned src = qfrom >= 0 ? (unsigned)qfrom : i;
	size_t ol = mk_answer(s->held[src], s->held_len[src], out);

	gw_dns_put16(out, id >= 0 ? (uint16_t)id : gw_dns_get16(s->held[i]));
	assert_int_equal(sendto(s->fd, out, ol, 0,
				(struct sockaddr *)&s->held_from[i],
				sizeof(s->held_from[i])),
			 (ssize_t)ol);
}

/* --- the pool under test ------------------------------------------------------- */

typedef struct tq {
	gw_query_t q;
	uint8_t wire[512];
	char name[64];
	int answered, failed, ede;
	uint8_t msg[600];
	size_t len;
} tq_t;

typedef struct fx {
	struct ev_loop *loop;
	gw_conf_t conf;
	gw_up_pool_t *pool;
	srv_t srv;
	unsigned results, want;
	ev_timer guard;
} fx_t;

static fx_t *g_fx;

static void result(void)
{
	if (++g_fx->results >= g_fx->want)
		ev_break(g_fx->loop, EVBREAK_ALL);
}

static void on_answer(gw_query_t *q, const uint8_t *msg, size_t len)
{
	tq_t *t = q->client;

	assert_null(q->up_ctx);
	t->answered++;
	memcpy(t->msg, msg, len);
	t->len = len;
	result();
}

static void on_fail(gw_query_t *q, int ede, const char *text)
{
	tq_t *t = q->client;

	(void)text;
	assert_null(q->up_ctx);
	t->failed++;
	t->ede = ede;
	result();
}

static const gw_up_result_ops_t ops = { .answer = on_answer,
					.fail = on_fail };

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void fx_init(fx_t *f, uint32_t timeout_ms, uint32_t attempts)
{
	char err[128];
	gw_endpoint_t *ep;

	memset(f, 0, sizeof(*f));
	g_fx = f;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	srv_start(f->loop, &f->srv);
	f->conf.up.timeout_ms = timeout_ms;
	f->conf.up.attempts = attempts;
	ep = &f->conf.upstream[f->conf.n_upstream++];
	ep->proto = GW_PROTO_UDP;
	memcpy(&ep->addr, &f->srv.addr, sizeof(f->srv.addr));
	ep->addrlen = sizeof(f->srv.addr);
	snprintf(ep->url, sizeof(ep->url), "udp://127.0.0.1:%u",
		 ntohs(f->srv.addr.sin_port));
	f->pool = gw_up_pool_new(f->loop, &f->conf, err, sizeof(err));
	assert_non_null(f->pool);
	gw_up_pool_set_result_ops(f->pool, &ops);
}

static void fx_deinit(fx_t *f)
{
	gw_up_pool_free(f->pool);
	srv_stop(f->loop, &f->srv);
	ev_loop_destroy(f->loop);
	g_fx = NULL;
}

/* Runs the loop until want more results arrived, or secs passed. */
static void fx_run(fx_t *f, unsigned want, double secs)
{
	f->results = 0;
	f->want = want ? want : ~0u;
	ev_now_update(f->loop);
	ev_timer_init(&f->guard, on_guard, secs, 0.);
	ev_timer_start(f->loop, &f->guard);
	ev_run(f->loop, 0);
	ev_timer_stop(f->loop, &f->guard);
}

static void fx_send(fx_t *f, tq_t *t, const char *name)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	int n = gw_up_boot_query(t->wire, sizeof(t->wire), name, GW_DNS_T_A, 0);
	assert_true(n > 0);
	t->q.wire_len = (size_t)n;
	t->q.wire = t->wire;
	t->q.client = t;
	ev_now_update(f->loop);
	gw_up_pool_send(f->pool, &t->q);
}

/* Sends a query that is answered at once and waits for its answer. */
static void fx_ask(fx_t *f, tq_t *t, const char *name)
{
	fx_send(f, t, name);
	fx_run(f, 1, 5.0);
	assert_int_equal(t->answered, 1);
	assert_int_equal(t->failed, 0);
}

static uint64_t ignored(fx_t *f)
{
	gw_up_metrics_t m;

	assert_int_equal(gw_up_pool_metrics(f->pool, 0, &m), 0);
	return m.ignored;
}

/* --- tests ----------------------------------------------------------------------- */

/* One socket carries query after query until the query bound, then a new
 * one on another port takes over; the old one stays open for its last
 * query in flight (held), so the new port cannot be the old one. */
static void test_udp_reuse_then_recycle_after_queries(void **state)
{
	fx_t f;
	tq_t held, t[6];

	(void)state;
	fx_init(&f, 5000, 1);
	assert_int_equal(gw_up_udp_set_limits(f.pool, 1, 4, 60.0, 60.0), 0);
	fx_send(&f, &held, "held.example.test");
	fx_run(&f, 0, 0.05);
	fx_ask(&f, &t[0], "a0.example.test");
	fx_ask(&f, &t[1], "a1.example.test");
	fx_ask(&f, &t[2], "a2.example.test"); /* the 4th on the socket */
	assert_int_equal(gw_up_udp_open(f.pool, 0), 1);
	fx_ask(&f, &t[3], "a3.example.test");
	fx_ask(&f, &t[4], "a4.example.test");
	assert_int_equal(f.srv.n, 6);
	for (unsigned i = 1; i < 4; i++)
		assert_int_equal(f.srv.port[i], f.srv.port[0]);
	assert_int_not_equal(f.srv.port[4], f.srv.port[0]);
	assert_int_equal(f.srv.port[5], f.srv.port[4]);
	/* the retired socket waits for its held query */
	assert_int_equal(gw_up_udp_open(f.pool, 0), 2);
	/* the held query answered late: the retired socket closes */
	srv_reply(&f.srv, 0, -1, -1);
	fx_run(&f, 1, 5.0);
	assert_int_equal(held.answered, 1);
	assert_int_equal(gw_up_udp_open(f.pool, 0), 1);
	for (unsigned i = 0; i < 5; i++) {
		gw_dns_msg_t m;
		assert_int_equal(gw_dns_parse(t[i].msg, t[i].len, &m), 0);
		assert_int_equal(m.ancount, 1);
	}
	fx_deinit(&f);
}

/* The age bound: a socket older than max_age takes no new query. */
static void test_udp_recycle_after_age(void **state)
{
	fx_t f;
	tq_t held, t[3];

	(void)state;
	fx_init(&f, 5000, 1);
	assert_int_equal(gw_up_udp_set_limits(f.pool, 1, 1000, 1.0, 60.0), 0);
	fx_send(&f, &held, "held.example.test");
	fx_ask(&f, &t[0], "a0.example.test");
	fx_run(&f, 0, 1.1);
	fx_ask(&f, &t[1], "a1.example.test");
	fx_ask(&f, &t[2], "a2.example.test");
	assert_int_equal(f.srv.n, 4);
	assert_int_equal(f.srv.port[1], f.srv.port[0]);
	assert_int_not_equal(f.srv.port[2], f.srv.port[0]);
	assert_int_equal(f.srv.port[3], f.srv.port[2]);
	gw_up_pool_cancel(f.pool, &held.q);
	/* cancelled: its ID stays an orphan, the retired socket closes */
	fx_run(&f, 0, 0.05);
	assert_int_equal(gw_up_udp_open(f.pool, 0), 1);
	fx_deinit(&f);
}

/* Nothing in flight and nothing sent for the idle time: no socket left. */
static void test_udp_idle_close(void **state)
{
	fx_t f;
	tq_t t;

	(void)state;
	fx_init(&f, 5000, 1);
	assert_int_equal(gw_up_udp_set_limits(f.pool, 4, 1000, 60.0, 0.2), 0);
	fx_ask(&f, &t, "a0.example.test");
	assert_int_equal(gw_up_udp_open(f.pool, 0), 1);
	fx_run(&f, 0, 0.5);
	assert_int_equal(gw_up_udp_open(f.pool, 0), 0);
	fx_ask(&f, &t, "a1.example.test"); /* and a new one on demand */
	fx_deinit(&f);
}

/* Several queries on one socket, answered out of order; forged answers -
 * a wrong ID, a right ID with another query's question, an ID whose query
 * was cancelled - are ignored and the queries keep waiting. */
static void test_udp_shared_socket_matching(void **state)
{
	fx_t f;
	tq_t t[3];

	(void)state;
	fx_init(&f, 5000, 1);
	assert_int_equal(gw_up_udp_set_limits(f.pool, 1, 1000, 60.0, 60.0), 0);
	fx_send(&f, &t[0], "x0.example.test");
	fx_send(&f, &t[1], "x1.example.test");
	fx_send(&f, &t[2], "x2.example.test");
	fx_run(&f, 0, 0.1);
	assert_int_equal(f.srv.n_held, 3);
	assert_int_equal(f.srv.port[1], f.srv.port[0]);
	assert_int_equal(f.srv.port[2], f.srv.port[0]);
	uint16_t id0 = gw_dns_get16(f.srv.held[0]);
	uint16_t id1 = gw_dns_get16(f.srv.held[1]);
	uint16_t id2 = gw_dns_get16(f.srv.held[2]);
	assert_true(id0 != id1 && id1 != id2 && id0 != id2);
	/* a wrong ID (none of the three) */
	uint16_t bad = (uint16_t)(id0 + 1);
	while (bad == id1 || bad == id2)
		bad++;
	srv_reply(&f.srv, 0, bad, -1);
	/* query 1's ID with query 0's question */
	srv_reply(&f.srv, 1, -1, 0);
	fx_run(&f, 0, 0.1);
	assert_int_equal(t[0].answered + t[1].answered + t[2].answered, 0);
	assert_int_equal(ignored(&f), 2);
	/* query 2 cancelled: its late answer is ignored */
	gw_up_pool_cancel(f.pool, &t[2].q);
	srv_reply(&f.srv, 2, -1, -1);
	/* the real answers, out of order */
	srv_reply(&f.srv, 1, -1, -1);
	srv_reply(&f.srv, 0, -1, -1);
	fx_run(&f, 2, 5.0);
	assert_int_equal(t[0].answered, 1);
	assert_int_equal(t[1].answered, 1);
	assert_int_equal(t[2].answered + t[2].failed, 0);
	assert_int_equal(ignored(&f), 3);
	assert_int_equal(gw_dns_get16(t[0].msg), id0);
	assert_int_equal(gw_dns_get16(t[1].msg), id1);
	assert_int_equal(gw_up_pool_inflight(f.pool), 0);
	fx_deinit(&f);
}

/* ICMP port unreachable on one socket fails the queries on that socket
 * fast (ECONNREFUSED: network error, not a timeout); a query on the other
 * socket keeps waiting until its own timeout. */
static void test_udp_refused_fails_only_that_socket(void **state)
{
	fx_t f;
	tq_t t[3];
	ev_tstamp t0;

	(void)state;
	fx_init(&f, 1500, 1);
	assert_int_equal(gw_up_udp_set_limits(f.pool, 2, 1000, 60.0, 60.0), 0);
	fx_send(&f, &t[0], "x0.example.test"); /* socket 1 */
	fx_send(&f, &t[1], "x1.example.test"); /* socket 2 */
	fx_run(&f, 0, 0.1);
	assert_int_equal(f.srv.n_held, 2);
	assert_int_not_equal(f.srv.port[0], f.srv.port[1]);
	/* the upstream goes away: the next datagram (on socket 1) draws an
	 * ICMP port unreachable */
	srv_stop(f.loop, &f.srv);
	ev_now_update(f.loop);
	t0 = ev_now(f.loop);
	fx_send(&f, &t[2], "x2.example.test");
	fx_run(&f, 2, 5.0);
	ev_now_update(f.loop);
	assert_true(ev_now(f.loop) - t0 < 1.0);
	assert_int_equal(t[0].failed, 1);
	assert_int_equal(t[0].ede, GW_DNS_EDE_NETWORK_ERROR);
	assert_int_equal(t[2].failed, 1);
	assert_int_equal(t[2].ede, GW_DNS_EDE_NETWORK_ERROR);
	assert_int_equal(t[1].failed + t[1].answered, 0);
	/* the refused socket is gone; the other one still waits */
	assert_int_equal(gw_up_udp_open(f.pool, 0), 1);
	fx_run(&f, 1, 5.0);
	assert_int_equal(t[1].failed, 1);
	assert_int_equal(t[1].ede, GW_DNS_EDE_NO_REACHABLE_AUTHORITY);
	fx_deinit(&f);
}

/* Many queries in flight over the shared sockets: each gets its answer. */
static void test_udp_many_in_flight(void **state)
{
	fx_t f;
	static tq_t t[200];
	char name[64];

	(void)state;
	fx_init(&f, 5000, 1);
	for (unsigned i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "a%u.example.test", i);
		fx_send(&f, &t[i], name);
	}
	fx_run(&f, 200, 10.0);
	for (unsigned i = 0; i < 200; i++) {
		gw_dns_msg_t m;
		assert_int_equal(t[i].answered, 1);
		assert_int_equal(gw_dns_parse(t[i].msg, t[i].len, &m), 0);
		/* the answer to this query's question, not another's */
		assert_memory_equal(t[i].msg + GW_DNS_HEADER_LEN,
				    t[i].wire + GW_DNS_HEADER_LEN,
				    t[i].q.wire_len - GW_DNS_HEADER_LEN);
	}
	/* the default set: at most 4 sockets for 200 queries */
	assert_true(gw_up_udp_open(f.pool, 0) <= 4);
	assert_int_equal(gw_up_pool_inflight(f.pool), 0);
	fx_deinit(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_udp_reuse_then_recycle_after_queries),
		cmocka_unit_test(test_udp_recycle_after_age),
		cmocka_unit_test(test_udp_idle_close),
		cmocka_unit_test(test_udp_shared_socket_matching),
		cmocka_unit_test(test_udp_refused_fails_only_that_socket),
		cmocka_unit_test(test_udp_many_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
