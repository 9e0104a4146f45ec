/*
 * connset.c - the connection-pool bookkeeping of tcp.c, https.c and quic.c
 * (contract in connset.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connset.h"
#include "gateway/error.h"
#include "gateway/log.h"

void gw_up_limits_init(gw_up_limits_t *l, const gw_conf_t *conf,
		       unsigned inflight_cap)
{
	l->max_conns = conf->up.max_conns_per_upstream
			       ? conf->up.max_conns_per_upstream
			       : GW_UP_DEF_MAX_CONNS;
	l->max_inflight = conf->up.max_inflight_per_conn
				  ? conf->up.max_inflight_per_conn
				  : GW_UP_DEF_MAX_INFLIGHT;
	if (inflight_cap && l->max_inflight > inflight_cap)
		l->max_inflight = inflight_cap;
	l->max_queries = conf->up.max_queries_per_conn;
	l->max_waiting = conf->up.max_waiting_per_upstream
				 ? conf->up.max_waiting_per_upstream
				 : l->max_conns * l->max_inflight;
	l->idle = (conf->up.idle_timeout_ms ? conf->up.idle_timeout_ms
					    : GW_UP_DEF_IDLE_MS) /
		  1000.0;
}

double gw_up_backoff_next(double cur)
{
	double b = cur ? cur * 2 : GW_UP_RECONNECT_MIN;

	return b > GW_UP_RECONNECT_MAX ? GW_UP_RECONNECT_MAX : b;
}

static const gw_up_cset_ops_t *ops_of(const gw_up_cbase_t *c)
{
	return c->g->set->ops;
}

gw_up_metrics_t *gw_up_cbase_metrics(const gw_up_cbase_t *c)
{
	return gw_up_pool_metrics_w(c->g->set->pool, c->up);
}

const char *gw_up_cbase_url(const gw_up_cbase_t *c)
{
	return c->g->set->conf->upstream[c->up].url;
}

/* --- the set --------------------------------------------------------------- */

void gw_up_cset_init(gw_up_cset_t *s, gw_up_pool_t *p,
		     const gw_up_cset_ops_t *ops, unsigned inflight_cap)
{
	s->pool = p;
	s->loop = gw_up_pool_loop(p);
	s->conf = gw_up_pool_conf(p);
	s->ops = ops;
	gw_up_limits_init(&s->lim, s->conf, inflight_cap);
	for (unsigned i = 0; i < GW_CONF_MAX_UPSTREAM; i++) {
		s->up[i].set = s;
		s->up[i].idle = s->lim.idle;
	}
}

static void unlink_conn(gw_up_cbase_t *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

void gw_up_cset_deinit(gw_up_cset_t *s)
{
	for (unsigned i = 0; i < GW_CONF_MAX_UPSTREAM; i++) {
		gw_up_cgroup_t *g = &s->up[i];
		while (g->head) {
			gw_up_cbase_t *c = g->head;
			if (s->ops->closing)
				s->ops->closing(c);
			ev_io_stop(s->loop, &c->io);
			ev_timer_stop(s->loop, &c->timer);
			if (c->fd >= 0)
				close(c->fd);
			unlink_conn(c);
			s->ops->destroy(c);
		}
		gw_up_tls_session_free(g->session);
		g->session = NULL;
	}
}

unsigned gw_up_cset_open_count(const gw_up_cset_t *s, unsigned up)
{
	return s && up < GW_CONF_MAX_UPSTREAM ? s->up[up].n_open : 0;
}

void gw_up_cgroup_keep_session(gw_up_cgroup_t *g, gw_up_tls_session_t *ss)
{
	gw_up_tls_session_free(g->session);
	g->session = ss;
}

/* --- choosing a connection --------------------------------------------------- */

/* The connection for a new query on g: an OPEN one with room first, then
 * (unless queries wait for handshakes) one still coming up, then a new one
 * if the cap and the reconnect backoff allow. NULL with *err otherwise
 * (GW_ENOSPC: wait for room). */
static gw_up_cbase_t *conn_for(gw_up_cgroup_t *g, unsigned up, bool trial,
			       int *err)
{
	const gw_up_cset_t *s = g->set;
	const gw_up_cset_ops_t *ops = s->ops;
	gw_up_cbase_t *best = NULL, *c;
	bool handshaking = false;

	for (c = g->head; c; c = c->next) {
		if (c->dead || c->retiring)
			continue;
		if (c->state != GW_UPC_OPEN) {
			/* A handshake under way takes the queries when it
			 * completes (wait_for_open). */
			if (ops->wait_for_open)
				handshaking = true;
			else if (!best && ops->room(c))
				best = c;
			continue;
		}
		if (ops->room(c))
			return c;
	}
	if (best)
		return best;
	if (handshaking) {
		*err = GW_ENOSPC;
		return NULL;
	}
	if (g->n_open >= s->lim.max_conns) {
		/* A retired connection whose last answer is being handed out
		 * right now still counts: close it first (freed later). */
		for (gw_up_cbase_t *o = g->head; o; o = o->next)
			if (!o->dead && o->retiring && ops->live(o) == 0)
				gw_up_cbase_kill(o);
	}
	if (g->n_open >= s->lim.max_conns) {
		*err = GW_ENOSPC;
		return NULL;
	}
	if (!trial && g->backoff > 0 && gw_up_now() < g->next_connect) {
		*err = GW_EAGAIN;
		return NULL;
	}
	c = ops->connect(g->set, up, trial, err);
	if (c && ops->wait_for_open) {
		*err = GW_ENOSPC; /* wait for its handshake */
		return NULL;
	}
	return c;
}

/* --- the wait queue ------------------------------------------------------------ */

static void wait_push(gw_up_cgroup_t *g, gw_up_query_t *uq)
{
	uq->wq = g;
	uq->wprev = g->wait_tail;
	uq->wnext = NULL;
	if (g->wait_tail)
		g->wait_tail->wnext = uq;
	else
		g->wait_head = uq;
	g->wait_tail = uq;
	g->n_waiting++;
}

static void wait_unlink(gw_up_cgroup_t *g, gw_up_query_t *uq)
{
	if (uq->wprev)
		uq->wprev->wnext = uq->wnext;
	else
		g->wait_head = uq->wnext;
	if (uq->wnext)
		uq->wnext->wprev = uq->wprev;
	else
		g->wait_tail = uq->wprev;
	uq->wnext = uq->wprev = NULL;
	uq->wq = NULL;
	g->n_waiting--;
}

bool gw_up_cset_unwait(gw_up_cset_t *s, gw_up_query_t *uq)
{
	if (!s || !uq->wq || uq->wq->set != s)
		return false;
	wait_unlink(uq->wq, uq);
	return true;
}

void gw_up_cgroup_drain(gw_up_cgroup_t *g)
{
	const gw_up_cset_ops_t *ops = g->set->ops;
	gw_up_cbase_t *touched = NULL;

	while (g->wait_head) {
		gw_up_query_t *uq = g->wait_head;
		gw_up_cbase_t *c;
		int r;

		c = conn_for(g, (unsigned)uq->up, false, &r);
		if (!c && (r == GW_ENOSPC || r == GW_EAGAIN))
			break; /* still no room: keep waiting (timer runs) */
		wait_unlink(g, uq);
		if (!c || (r = ops->assign(c, uq)) < 0) {
			gw_up_attempt_error(uq, r);
			continue;
		}
		/* One flush per connection for a run of queries. */
		if (ops->flush) {
			if (touched && touched != c)
				ops->flush(touched);
			touched = c;
		}
	}
	if (touched && !touched->dead)
		ops->flush(touched);
}

int gw_up_cset_start(gw_up_cset_t *s, gw_up_query_t *uq, gw_up_cbase_t **on)
{
	gw_up_cgroup_t *g = &s->up[uq->up];
	gw_up_cbase_t *c;
	int r = GW_ENOSPC;

	if (on)
		*on = NULL;
	/* First come, first served: nobody overtakes the wait queue. */
	c = g->wait_head ? NULL : conn_for(g, (unsigned)uq->up, uq->trial, &r);
	if (c) {
		r = s->ops->assign(c, uq);
		if (r == 0 && on)
			*on = c;
		if (r == 0 || !s->ops->wait_for_open)
			return r;
	}
	/* Every connection full and no new one allowed: wait for a slot
	 * (bounded; past the bound the pool fails or retries the query
	 * elsewhere at once). */
	if (r != GW_ENOSPC || g->n_waiting >= s->lim.max_waiting)
		return r;
	wait_push(g, uq);
	return 0;
}

/* --- one connection --------------------------------------------------------- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	gw_up_cbase_t *c = w->data;

	(void)loop;
	(void)revents;
	if (c->dead) {
		gw_up_cgroup_t *g = c->g;
		unlink_conn(c);
		g->set->ops->destroy(c);
		gw_up_cgroup_drain(g);
		return;
	}
	ops_of(c)->timeout(c);
}

void gw_up_cbase_init(gw_up_cbase_t *c, gw_up_cset_t *s, unsigned up,
		      bool trial)
{
	c->g = &s->up[up];
	c->up = up;
	c->trial = trial;
	c->fd = -1;
	c->state = GW_UPC_CONNECTING;
}

void gw_up_cbase_open(gw_up_cbase_t *c,
		      void (*io_cb)(struct ev_loop *, ev_io *, int), int events,
		      double after)
{
	gw_up_cgroup_t *g = c->g;
	gw_up_cset_t *s = g->set;

	ev_io_init(&c->io, io_cb, c->fd, events);
	c->io.data = c;
	c->io_events = events;
	ev_io_start(s->loop, &c->io);
	ev_timer_init(&c->timer, on_timer, 0., 0.);
	c->timer.data = c;
	if (after >= 0)
		gw_up_cbase_arm(c, after);
	c->next = g->head;
	if (g->head)
		g->head->prev = c;
	g->head = c;
	g->n_open++;
	gw_up_cbase_metrics(c)->conns_opened++;
	gw_up_cbase_metrics(c)->conns_open++;
}

void gw_up_cbase_discard(gw_up_cbase_t *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	ops_of(c)->destroy(c);
}

void gw_up_cbase_watch(gw_up_cbase_t *c, int events)
{
	struct ev_loop *loop = c->g->set->loop;

	if (c->io_events == events && ev_is_active(&c->io))
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	c->io_events = events;
	ev_io_start(loop, &c->io);
}

void gw_up_cbase_arm(gw_up_cbase_t *c, double after)
{
	struct ev_loop *loop = c->g->set->loop;

	ev_timer_stop(loop, &c->timer);
	ev_timer_set(&c->timer, after, 0.);
	ev_timer_start(loop, &c->timer);
}

void gw_up_cbase_kill(gw_up_cbase_t *c)
{
	gw_up_cset_t *s = c->g->set;

	if (c->dead)
		return;
	c->dead = true;
	c->g->n_open--;
	gw_up_cbase_metrics(c)->conns_open--;
	ev_io_stop(s->loop, &c->io);
	if (s->ops->killed)
		s->ops->killed(c);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	gw_up_cbase_arm(c, 0.);
}

void gw_up_cbase_check(gw_up_cbase_t *c)
{
	if (c->dead || ops_of(c)->live(c) > 0)
		return;
	if (c->retiring)
		ops_of(c)->retire(c);
	else if (c->state == GW_UPC_OPEN)
		gw_up_cbase_arm(c, c->g->idle);
}

void gw_up_cbase_opened(gw_up_cbase_t *c, bool resumed, const char *detail)
{
	c->state = GW_UPC_OPEN;
	c->g->backoff = 0;
	ev_timer_stop(c->g->set->loop, &c->timer);
	if (resumed)
		gw_up_cbase_metrics(c)->tls_resumed++;
	c->trial = false;
	gw_up_debug_conn(c->g->set->pool, c->up, "connection open", detail);
}

void gw_up_cbase_count_query(gw_up_cbase_t *c)
{
	unsigned max = c->g->set->lim.max_queries;

	if (++c->queries >= max && max)
		c->retiring = true;
}

bool gw_up_cbase_connected(gw_up_cbase_t *c, int revents)
{
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (!(revents & EV_WRITE))
		return false;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		soerr = errno;
	if (soerr) {
		gw_up_cbase_fail(c, -soerr);
		return false;
	}
	return true;
}

ssize_t gw_up_cbase_recv(gw_up_cbase_t *c, uint8_t *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n > 0)
			return n;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		gw_up_cbase_fail(c, n < 0 ? -errno : GW_ECLOSED);
		return -1;
	}
}

/* A connect or handshake failed: health and backoff, once per connection. */
static void connect_failed(gw_up_cbase_t *c, int err)
{
	gw_up_cgroup_t *g = c->g;
	const gw_up_cset_ops_t *ops = g->set->ops;
	bool hs = c->state == GW_UPC_HANDSHAKE;
	const char *why = ops->why(c, err);

	gw_up_cbase_metrics(c)->conn_failures++;
	g->backoff = gw_up_backoff_next(g->backoff);
	g->next_connect = gw_up_now() + g->backoff;
	gw_log(hs ? GW_LOG_WARN : GW_LOG_INFO, "upstream",
	       hs ? ops->handshake_failed : "upstream connect failed",
	       "upstream", gw_up_cbase_url(c), "error",
	       *why ? why : gw_strerror(err), NULL);
	gw_up_pool_conn_report(g->set->pool, c->up, c->trial, GW_UP_FAIL);
	c->trial = false;
}

void gw_up_cbase_fail(gw_up_cbase_t *c, int err)
{
	gw_up_cgroup_t *g = c->g;
	const gw_up_cset_ops_t *ops = g->set->ops;
	bool handshaking = false;

	if (c->dead)
		return;
	if (c->state != GW_UPC_OPEN)
		connect_failed(c, err);
	else
		gw_up_debug_conn(g->set->pool, c->up, "connection lost",
				 gw_strerror(err));
	gw_up_cbase_kill(c);
	/* The pool may queue the reissued queries on other connections of
	 * this upstream, never on c (dead). */
	ops->reissue(c, err);
	if (ops->wait_for_open && c->state != GW_UPC_OPEN) {
		for (gw_up_cbase_t *o = g->head; o; o = o->next)
			handshaking |= !o->dead && o->state != GW_UPC_OPEN;
	}
	if (ops->wait_for_open && c->state != GW_UPC_OPEN && !handshaking &&
	    g->wait_head) {
		/* The queries waited for this handshake: hand them back as
		 * for queries queued on a failed connect. The list is
		 * detached first, a reissue may queue here again. */
		gw_up_query_t *uq = g->wait_head, *nx;
		g->wait_head = g->wait_tail = NULL;
		g->n_waiting = 0;
		for (; uq; uq = nx) {
			nx = uq->wnext;
			uq->wnext = uq->wprev = NULL;
			uq->wq = NULL;
			gw_up_attempt_reissue(uq, err);
		}
	} else {
		gw_up_cgroup_drain(g);
	}
}
