/*
 * test_connset.c - the connection-pool bookkeeping shared by tcp.c, https.c
 * and quic.c (upstream/connset.h), driven through a fake protocol: limits
 * and their defaults, the reconnect backoff, which connection a query goes
 * on, when another is opened, the bounded FIFO wait queue, retiring and the
 * idle timer, failure accounting, and the wait-for-handshake mode of quic.c.
 * Connections are socketpair ends nothing is written to; nothing goes on a
 * network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/config.h"
#include "gateway/error.h"
#include "upstream/attempt.h"
#include "upstream/connset.h"
#include "upstream/upstream.h"

#define MAX_FAKE 16

typedef struct fconn {
	gw_up_cbase_t b; /* first, as in the real protocols */
	unsigned live;
	int peer;        /* the other socketpair end */
} fconn_t;

typedef struct fake {
	gw_up_cset_t set; /* first, as in the real protocols */
	int connect_err;  /* < 0: ops->connect fails with it */
	int assign_err;   /* < 0: ops->assign fails with it */
	unsigned connects, destroyed, retired, reissued, closing, flushes;
	unsigned timeouts;
	gw_up_query_t *assigned[MAX_FAKE];
	gw_up_cbase_t *assigned_on[MAX_FAKE];
	unsigned n_assigned;
	fconn_t *conns[MAX_FAKE];
} fake_t;

static fconn_t *fc(gw_up_cbase_t *b)
{
	return (fconn_t *)b;
}

static fake_t *fk(const gw_up_cbase_t *b)
{
	return (fake_t *)b->g->set;
}

static unsigned f_live(const gw_up_cbase_t *b)
{
	return ((const fconn_t *)b)->live;
}

static bool f_room(const gw_up_cbase_t *b)
{
	return ((const fconn_t *)b)->live < b->g->set->lim.max_inflight;
}

static void f_io(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static gw_up_cbase_t *f_connect(gw_up_cset_t *s, unsigned up, bool trial,
				int *err)
{
	fake_t *f = (fake_t *)s;
	fconn_t *c;
	int sv[2];

	if (f->connect_err < 0) {
		*err = f->connect_err;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	gw_up_cbase_init(&c->b, s, up, trial);
	c->b.fd = sv[0];
	c->peer = sv[1];
	assert_true(f->connects < MAX_FAKE);
	f->conns[f->connects++] = c;
	gw_up_cbase_open(&c->b, f_io, EV_READ, 30.);
	return &c->b;
}

static int f_assign(gw_up_cbase_t *b, gw_up_query_t *uq)
{
	fake_t *f = fk(b);

	if (f->assign_err < 0)
		return f->assign_err;
	assert_true(f->n_assigned < MAX_FAKE);
	f->assigned[f->n_assigned] = uq;
	f->assigned_on[f->n_assigned++] = b;
	fc(b)->live++;
	gw_up_cbase_count_query(b);
	return 0;
}

static void f_destroy(gw_up_cbase_t *b)
{
	fconn_t *c = fc(b);

	fk(b)->destroyed++;
	close(c->peer);
	for (unsigned i = 0; i < MAX_FAKE; i++)
		if (fk(b)->conns[i] == c)
			fk(b)->conns[i] = NULL;
	free(c);
}

static void f_timeout(gw_up_cbase_t *b)
{
	fk(b)->timeouts++;
}

static void f_retire(gw_up_cbase_t *b)
{
	fk(b)->retired++;
	gw_up_cbase_kill(b);
}

static void f_reissue(gw_up_cbase_t *b, int err)
{
	(void)err;
	fk(b)->reissued += fc(b)->live;
	fc(b)->live = 0;
}

static const char *f_why(gw_up_cbase_t *b, int err)
{
	(void)b;
	(void)err;
	return "";
}

static void f_closing(gw_up_cbase_t *b)
{
	fk(b)->closing++;
}

static void f_flush(gw_up_cbase_t *b)
{
	fk(b)->flushes++;
}

static const gw_up_cset_ops_t stream_ops = {
	.live = f_live,
	.room = f_room,
	.connect = f_connect,
	.assign = f_assign,
	.destroy = f_destroy,
	.timeout = f_timeout,
	.retire = f_retire,
	.reissue = f_reissue,
	.why = f_why,
	.closing = f_closing,
	.handshake_failed = "upstream tls handshake failed",
};

static const gw_up_cset_ops_t quic_like_ops = {
	.live = f_live,
	.room = f_room,
	.connect = f_connect,
	.assign = f_assign,
	.destroy = f_destroy,
	.timeout = f_timeout,
	.retire = f_retire,
	.reissue = f_reissue,
	.why = f_why,
	.closing = f_closing,
	.flush = f_flush,
	.handshake_failed = "upstream quic handshake failed",
	.wait_for_open = true,
};

typedef struct fixture {
	struct ev_loop *loop;
	gw_conf_t *conf;
	gw_up_pool_t *pool;
	fake_t f;
	gw_up_query_t uq[MAX_FAKE];
} fixture_t;

/* One udp:// upstream (nothing is sent to it) with the given limits. */
static void setup(fixture_t *x, const gw_up_cset_ops_t *ops, unsigned conns,
		  unsigned inflight, unsigned waiting, unsigned queries)
{
	gw_endpoint_t *ep;
	char err[160];

	memset(x, 0, sizeof(*x));
	x->loop = ev_loop_new(EVFLAG_AUTO);
	x->conf = calloc(1, sizeof(*x->conf));
	assert_non_null(x->loop);
	assert_non_null(x->conf);
	x->conf->up.timeout_ms = 1000;
	x->conf->up.max_conns_per_upstream = conns;
	x->conf->up.max_inflight_per_conn = inflight;
	x->conf->up.max_waiting_per_upstream = waiting;
	x->conf->up.max_queries_per_conn = queries;
	ep = &x->conf->upstream[x->conf->n_upstream++];
	ep->proto = GW_PROTO_UDP;
	ep->addr.ss_family = AF_INET;
	ep->addrlen = sizeof(struct sockaddr_in);
	snprintf(ep->url, sizeof(ep->url), "udp://127.0.0.1:9");
	x->pool = gw_up_pool_new(x->loop, x->conf, err, sizeof(err));
	assert_non_null(x->pool);
	gw_up_cset_init(&x->f.set, x->pool, ops, 0);
	for (unsigned i = 0; i < MAX_FAKE; i++)
		x->uq[i].up = 0;
}

static void teardown(fixture_t *x)
{
	gw_up_cset_deinit(&x->f.set);
	assert_int_equal(x->f.destroyed, x->f.connects);
	gw_up_pool_free(x->pool);
	free(x->conf);
	ev_loop_destroy(x->loop);
}

static gw_up_cgroup_t *grp(fixture_t *x)
{
	return &x->f.set.up[0];
}

static const gw_up_metrics_t *metrics(fixture_t *x)
{
	static gw_up_metrics_t m;

	assert_int_equal(gw_up_pool_metrics(x->pool, 0, &m), 0);
	return &m;
}

/* --- limits and backoff ---------------------------------------------------- */

static void test_connset_limits_defaults_and_caps(void **state)
{
	gw_conf_t *c = calloc(1, sizeof(*c));
	gw_up_limits_t l;

	(void)state;
	assert_non_null(c);
	gw_up_limits_init(&l, c, 0);
	assert_int_equal(l.max_conns, 8);
	assert_int_equal(l.max_inflight, 100);
	assert_int_equal(l.max_queries, 0);
	assert_int_equal(l.max_waiting, 800); /* conns x inflight */
	assert_true(l.idle == 60.0);
	c->up.max_conns_per_upstream = 3;
	c->up.max_inflight_per_conn = 70000;
	c->up.max_queries_per_conn = 5;
	c->up.idle_timeout_ms = 1500;
	gw_up_limits_init(&l, c, 0);
	assert_int_equal(l.max_inflight, 70000);
	assert_int_equal(l.max_waiting, 210000);
	assert_int_equal(l.max_queries, 5);
	assert_true(l.idle == 1.5);
	/* the cap (tcp.c: 16-bit IDs) comes before the queue's default */
	gw_up_limits_init(&l, c, 65535);
	assert_int_equal(l.max_inflight, 65535);
	assert_int_equal(l.max_waiting, 3 * 65535);
	c->up.max_waiting_per_upstream = 7;
	gw_up_limits_init(&l, c, 65535);
	assert_int_equal(l.max_waiting, 7);
	free(c);
}

static void test_connset_backoff_doubles_to_cap(void **state)
{
	double b = 0;

	(void)state;
	b = gw_up_backoff_next(b);
	assert_true(b == 0.1);
	b = gw_up_backoff_next(b);
	assert_true(b == 0.2);
	for (int i = 0; i < 20; i++)
		b = gw_up_backoff_next(b);
	assert_true(b == 10.0);
}

/* --- choosing a connection, opening another, waiting --------------------------- */

static void test_connset_choice_and_wait_queue(void **state)
{
	fixture_t x;
	gw_up_cbase_t *on;
	fconn_t *a, *b;

	(void)state;
	/* 2 connections x 2 queries, 3 may wait */
	setup(&x, &stream_ops, 2, 2, 3, 0);
	/* no connection yet: one is opened and takes the query at once */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[0], &on), 0);
	assert_int_equal(x.f.connects, 1);
	a = x.f.conns[0];
	assert_ptr_equal(on, &a->b);
	assert_int_equal(gw_up_cset_open_count(&x.f.set, 0), 1);
	assert_int_equal(metrics(&x)->conns_opened, 1);
	assert_int_equal(metrics(&x)->conns_open, 1);
	/* a connection still coming up with room is used, not a new one */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[1], &on), 0);
	assert_ptr_equal(on, &a->b);
	assert_int_equal(x.f.connects, 1);
	/* a is full: a second connection */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[2], &on), 0);
	assert_int_equal(x.f.connects, 2);
	b = x.f.conns[1];
	assert_ptr_equal(on, &b->b);
	assert_ptr_equal(grp(&x)->head, &b->b); /* newest first */
	/* an OPEN connection with room beats one coming up listed first */
	a->live--;
	gw_up_cbase_opened(&a->b, false, "test");
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[3], &on), 0);
	assert_ptr_equal(on, &a->b);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[4], &on), 0);
	assert_ptr_equal(on, &b->b);
	/* everything full at the cap: queries wait, bounded */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[5], &on), 0);
	assert_null(on);
	assert_ptr_equal(x.uq[5].wq, grp(&x));
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[6], &on), 0);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[7], &on), 0);
	assert_int_equal(grp(&x)->n_waiting, 3);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[8], &on), GW_ENOSPC);
	assert_null(x.uq[8].wq);
	assert_int_equal(x.f.connects, 2);
	/* leaving the queue: only the set that holds the query takes it */
	static gw_up_cset_t other; /* e.g. https.c's, when tcp.c is asked */
	assert_false(gw_up_cset_unwait(NULL, &x.uq[6]));
	assert_false(gw_up_cset_unwait(&other, &x.uq[6]));
	assert_ptr_equal(x.uq[6].wq, grp(&x));
	assert_true(gw_up_cset_unwait(&x.f.set, &x.uq[6]));
	assert_false(gw_up_cset_unwait(&x.f.set, &x.uq[6]));
	assert_null(x.uq[6].wq);
	assert_int_equal(grp(&x)->n_waiting, 2);
	/* room appears, but nobody overtakes the queue */
	a->live = 0;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[6], &on), 0);
	assert_null(on);
	assert_int_equal(x.f.n_assigned, 5);
	/* a drain serves the queue in order while there is room */
	gw_up_cgroup_drain(grp(&x));
	assert_int_equal(x.f.n_assigned, 7);
	assert_ptr_equal(x.f.assigned[5], &x.uq[5]);
	assert_ptr_equal(x.f.assigned[6], &x.uq[7]);
	assert_ptr_equal(x.f.assigned_on[6], &a->b);
	assert_int_equal(grp(&x)->n_waiting, 1);
	assert_ptr_equal(grp(&x)->wait_head, &x.uq[6]);
	teardown(&x);
	assert_int_equal(x.f.closing, 2);
}

/* A failed connect: counted once, backoff, queries handed back; the
 * backoff refuses new connections except for a health trial; an open
 * connection resets it. The dead one is freed from the loop. */
static void test_connset_fail_backoff_trial(void **state)
{
	fixture_t x;
	gw_up_cbase_t *on;
	fconn_t *a, *t;

	(void)state;
	setup(&x, &stream_ops, 2, 2, 4, 0);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[0], &on), 0);
	a = x.f.conns[0];
	gw_up_cbase_fail(&a->b, -ECONNREFUSED);
	assert_true(a->b.dead);
	assert_int_equal(x.f.reissued, 1);
	assert_int_equal(metrics(&x)->conn_failures, 1);
	assert_int_equal(metrics(&x)->conns_open, 0);
	assert_int_equal(gw_up_cset_open_count(&x.f.set, 0), 0);
	assert_true(grp(&x)->backoff == 0.1);
	assert_true(grp(&x)->next_connect > gw_up_now());
	gw_up_cbase_fail(&a->b, -ECONNREFUSED); /* dead: nothing twice */
	assert_int_equal(metrics(&x)->conn_failures, 1);
	/* the backoff runs: no new connection, the pool may go elsewhere */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[1], &on), GW_EAGAIN);
	assert_null(x.uq[1].wq);
	/* ... but a health trial gets one */
	x.uq[2].trial = true;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[2], &on), 0);
	t = x.f.conns[1];
	assert_ptr_equal(on, &t->b);
	assert_true(t->b.trial);
	/* the dead one goes from its 0 s timer */
	assert_int_equal(x.f.destroyed, 0);
	ev_run(x.loop, EVRUN_NOWAIT);
	assert_int_equal(x.f.destroyed, 1);
	assert_ptr_equal(grp(&x)->head, &t->b);
	assert_null(t->b.next);
	/* coming up resets the backoff and ends the trial */
	gw_up_cbase_opened(&t->b, true, "test");
	assert_true(grp(&x)->backoff == 0);
	assert_false(t->b.trial);
	assert_int_equal(metrics(&x)->tls_resumed, 1);
	/* a connect error of the protocol is passed up */
	t->live = 2;
	x.f.connect_err = GW_ENOMEM;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[3], &on), GW_ENOMEM);
	x.f.connect_err = 0;
	t->live = 0;
	teardown(&x);
}

/* max_queries_per_conn retires a connection; a retired one without live
 * queries goes; an idle OPEN one gets the idle timer; at the cap a
 * retired idle connection is closed to make room. */
static void test_connset_retire_idle(void **state)
{
	fixture_t x;
	gw_up_cbase_t *on;
	fconn_t *a, *b;

	(void)state;
	setup(&x, &stream_ops, 1, 10, 4, 2);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[0], &on), 0);
	a = x.f.conns[0];
	gw_up_cbase_opened(&a->b, false, "test");
	assert_false(a->b.retiring);
	/* idle: the timer is set to the idle limit */
	a->live = 0;
	gw_up_cbase_check(&a->b);
	assert_true(ev_is_active(&a->b.timer));
	assert_true(ev_timer_remaining(x.loop, &a->b.timer) > 59.0);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[1], &on), 0);
	assert_true(a->b.retiring); /* second query of 2 */
	/* retired, at the cap of 1, its last answer being handed out: it is
	 * closed to make room for a new connection */
	a->live = 0;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[2], &on), 0);
	assert_true(a->b.dead);
	assert_int_equal(x.f.connects, 2);
	b = x.f.conns[1];
	assert_ptr_equal(on, &b->b);
	assert_int_equal(gw_up_cset_open_count(&x.f.set, 0), 1);
	/* a retiring connection whose last query ends: ops->retire */
	b->b.retiring = true;
	b->live = 0;
	gw_up_cbase_check(&b->b);
	assert_int_equal(x.f.retired, 1);
	assert_true(b->b.dead);
	assert_int_equal(metrics(&x)->conns_open, 0);
	assert_int_equal(metrics(&x)->conns_opened, 2);
	ev_run(x.loop, EVRUN_NOWAIT);
	assert_int_equal(x.f.destroyed, 2);
	assert_null(grp(&x)->head);
	teardown(&x);
	assert_int_equal(x.f.timeouts, 0);
}

/* quic.c's mode: queries wait for the handshake instead of riding it, and
 * for stream credit (assign says GW_ENOSPC); a drain flushes once per
 * connection. */
static void test_connset_wait_for_open(void **state)
{
	fixture_t x;
	gw_up_cbase_t *on;
	fconn_t *a;

	(void)state;
	setup(&x, &quic_like_ops, 2, 4, 8, 0);
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[0], &on), 0);
	assert_null(on);
	assert_int_equal(x.f.connects, 1);
	a = x.f.conns[0];
	assert_ptr_equal(x.uq[0].wq, grp(&x));
	/* a handshake under way: no second connection, the query waits */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[1], &on), 0);
	assert_int_equal(x.f.connects, 1);
	assert_int_equal(grp(&x)->n_waiting, 2);
	/* the handshake completes: a drain moves both, one flush */
	gw_up_cbase_opened(&a->b, false, "test");
	gw_up_cgroup_drain(grp(&x));
	assert_int_equal(grp(&x)->n_waiting, 0);
	assert_int_equal(x.f.n_assigned, 2);
	assert_int_equal(x.f.flushes, 1);
	/* an open connection takes a query directly */
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[2], &on), 0);
	assert_ptr_equal(on, &a->b);
	/* out of stream credit: the query waits rather than fails */
	x.f.assign_err = GW_ENOSPC;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[3], &on), 0);
	assert_null(on);
	assert_int_equal(grp(&x)->n_waiting, 1);
	/* any other assign error is returned */
	assert_true(gw_up_cset_unwait(&x.f.set, &x.uq[3]));
	x.f.assign_err = GW_ENOMEM;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[3], &on), GW_ENOMEM);
	x.f.assign_err = 0;
	/* room again: straight onto the open connection */
	a->live = 0;
	assert_int_equal(gw_up_cset_start(&x.f.set, &x.uq[4], &on), 0);
	assert_ptr_equal(on, &a->b);
	teardown(&x);
	assert_int_equal(x.f.closing, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connset_limits_defaults_and_caps),
		cmocka_unit_test(test_connset_backoff_doubles_to_cap),
		cmocka_unit_test(test_connset_choice_and_wait_queue),
		cmocka_unit_test(test_connset_fail_backoff_trial),
		cmocka_unit_test(test_connset_retire_idle),
		cmocka_unit_test(test_connset_wait_for_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
