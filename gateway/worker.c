/*
 * worker.c - worker threads: one loop, its sockets, its upstream pool.
 */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "gateway/cache.h"
#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/policy.h"
#include "transports/do53.h"
#include "transports/doh.h"
#include "transports/doq.h"
#include "transports/stream.h"

/* A pool replaced by a reload, kept until its last query has ended. */
struct gw_retired_pool {
	gw_up_pool_t *pool;
	unsigned seq; /* the generation its configuration belongs to */
	struct gw_retired_pool *next;
};

/* How often replaced pools are looked at (seconds). */
#define RETIRE_TICK 0.1

static void on_retire_tick(struct ev_loop *loop, ev_timer *t, int revents);

double gw_clock_monotonic(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs first in every iteration (highest priority check watcher), so all
 * callbacks of the iteration see the same time. */
static void on_clock(struct ev_loop *loop, ev_check *c, int revents)
{
	gw_worker_t *w = c->data;
	w->now = gw_clock_monotonic();
}

/* A socket of ep's type and family; v6 listeners are IPv6-only. */
static int listener_socket(const gw_endpoint_t *ep, int type)
{
	int fd = socket(ep->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);
	int one = 1;

	/* Stream listeners rebind over their TIME_WAIT connections after a
	 * restart. Datagram sockets have no TIME_WAIT, and SO_REUSEADDR on
	 * them would let any other socket that sets it too (a resolver
	 * client's random source port, say) bind the same port and take the
	 * datagrams meant for us. */
	if (fd >= 0 && type == SOCK_STREAM &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		close(fd);
		return -1;
	}
	if (fd >= 0 && ep->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	return fd;
}

/* first: the first worker's bind of ep. It binds a probe without
 * SO_REUSEPORT first, so an address another process holds - a second dnsgw
 * started by mistake included - fails with EADDRINUSE instead of being
 * shared, with the kernel splitting clients between the two. */
static int bind_listener(const gw_endpoint_t *ep, bool first, char *err,
			 size_t errlen)
{
	int type = ep->proto == GW_PROTO_UDP || ep->proto == GW_PROTO_DOQ
			   ? SOCK_DGRAM
			   : SOCK_STREAM;
	int one = 1, fd = -1;

	if (first) {
		int probe = listener_socket(ep, type);
		if (probe < 0)
			goto fail;
		int r = bind(probe, (const struct sockaddr *)&ep->addr,
			     ep->addrlen);
		int e = errno;
		close(probe);
		errno = e;
		if (r < 0)
			goto fail;
	}
	/* Every worker binds the same address; the kernel spreads clients
	 * over them by 4-tuple hash. */
	fd = listener_socket(ep, type);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&ep->addr, ep->addrlen) < 0)
		goto fail;
	/* listen() here, on the main thread, so "ready" means accepting */
	if (type == SOCK_STREAM && listen(fd, 1024) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "%s: %s", ep->url, strerror(errno));
	int e = -errno;
	if (fd >= 0)
		close(fd);
	return e;
}

/* The front-end serving each transport. */
static const gw_listener_ops_t *listener_ops(gw_proto_t proto)
{
	switch (proto) {
	case GW_PROTO_UDP:
		return &gw_udp_listener_ops;
	case GW_PROTO_TCP:
	case GW_PROTO_DOT:
		return &gw_stream_listener_ops;
	case GW_PROTO_DOH:
	case GW_PROTO_H2C:
		return &gw_doh_listener_ops;
	case GW_PROTO_DOQ:
		return &gw_doq_listener_ops;
	default:
		return NULL;
	}
}

static bool same_address(const gw_endpoint_t *a, const gw_endpoint_t *b)
{
	return a->addrlen == b->addrlen && a->addrlen > 0 &&
	       memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

int gw_conf_shared_port(const gw_conf_t *c, unsigned i)
{
	gw_proto_t other = c->listen[i].proto == GW_PROTO_DOT   ? GW_PROTO_DOH
			   : c->listen[i].proto == GW_PROTO_DOH ? GW_PROTO_DOT
								: (gw_proto_t)-1;
	for (unsigned j = 0; j < c->n_listen; j++)
		if (c->listen[j].proto == other &&
		    same_address(&c->listen[i], &c->listen[j]))
			return (int)j;
	return -1;
}

static void on_flush(struct ev_loop *loop, ev_prepare *p, int revents);

int gw_worker_init(gw_worker_t *w, unsigned id, const gw_conf_t *conf,
		   gw_certs_t *const *certs, gw_connlimit_t *cl,
		   const gw_up_seed_t *seed, char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->id = id;
	w->conf = conf;
	w->connlimit = cl;
	pthread_mutex_init(&w->pool_lock, NULL);
	ev_init(&w->retire_timer, on_retire_tick);
	w->retire_timer.repeat = RETIRE_TICK;
	w->retire_timer.data = w;
	w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!w->loop) {
		snprintf(err, errlen, "cannot create event loop");
		return GW_ENOMEM;
	}
	ev_set_userdata(w->loop, w);
	ev_prepare_init(&w->flush_watcher, on_flush);
	w->flush_watcher.data = w;
	w->now = gw_clock_monotonic();
	ev_check_init(&w->clock_watcher, on_clock);
	w->clock_watcher.data = w;
	ev_set_priority(&w->clock_watcher, EV_MAXPRI);
	ev_check_start(w->loop, &w->clock_watcher);
	ev_unref(w->loop);

	w->pool = gw_up_pool_new_seeded(w->loop, conf, seed, err, errlen);
	if (!w->pool)
		return GW_ECONFIG;
	if (gw_policy_check_conf(conf, err, errlen) < 0)
		return GW_ECONFIG;
	w->policy = gw_policy_new(w);
	if (!w->policy) {
		snprintf(err, errlen, "out of memory");
		return GW_ENOMEM;
	}
	if (conf->cache.size_bytes > 0) {
		/* The configured size is for the process: each worker has
		 * its own cache (no locks), so each gets an equal share. */
		uint64_t key = 0;
		gw_cache_params_t cp = {
			.max_bytes = conf->cache.size_bytes /
				     (conf->threads ? conf->threads : 1),
			.min_ttl = conf->cache.min_ttl,
			.max_ttl = conf->cache.max_ttl,
			.negative_max_ttl = conf->cache.negative_max_ttl,
			.serve_stale = conf->cache.serve_stale,
			.stale_ttl = conf->cache.stale_ttl,
		};
		if (getrandom(&key, sizeof(key), 0) != sizeof(key))
			key = (uint64_t)gw_clock_monotonic() * 1000003u ^ id;
		if (cp.max_bytes == 0)
			cp.max_bytes = 1;
		w->cache = gw_cache_new(&cp, key);
		if (!w->cache) {
			snprintf(err, errlen, "cannot create the cache");
			return GW_ENOMEM;
		}
	}

	for (unsigned i = 0; i < conf->n_listen; i++) {
		const gw_endpoint_t *ep = &conf->listen[i];
		const gw_listener_ops_t *ops = listener_ops(ep->proto);
		if (!ops) {
			snprintf(err, errlen,
				 "%s: this transport is not available yet",
				 ep->url);
			return GW_ECONFIG;
		}
		/* the DoT listener of a shared port owns the socket */
		bool shared = ep->proto == GW_PROTO_DOH &&
			      gw_conf_shared_port(conf, i) >= 0;
		int fd = shared ? -1 : bind_listener(ep, id == 0, err, errlen);
		if (fd < 0 && !shared)
			return fd;
		gw_listener_t *l = &w->listeners[w->n_listeners++];
		l->worker = w;
		l->ep = ep;
		l->ops = ops;
		l->certs = gw_certs_ref(certs[i]); /* swapped on reload */
		l->fd = fd;
	}
	for (unsigned i = 0; i < w->n_listeners; i++) {
		gw_listener_t *l = &w->listeners[i];
		int j = l->ep->proto == GW_PROTO_DOT ? gw_conf_shared_port(conf, i)
						     : -1;
		if (j >= 0)
			l->shared_doh = &w->listeners[j];
	}
	return 0;
}

/* Polled while draining: answers from upstreams finish queries at any time,
 * and this keeps the exit condition in one place. */
#define ACCEPT_BATCH 64

static void on_accept_resume(struct ev_loop *loop, ev_timer *t, int revents)
{
	gw_listener_t *l = t->data;
	l->paused = false;
	if (!l->worker->draining && l->fd >= 0)
		ev_io_start(loop, &l->io);
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
	gw_listener_t *l = io->data;
	gw_worker_t *w = l->worker;

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage addr;
		socklen_t alen = sizeof(addr);
		int fd = accept4(l->fd, (struct sockaddr *)&addr, &alen,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: back off instead of
				 * spinning on a readable listener. */
				gw_log(GW_LOG_WARN, "worker",
				       "accept failed, backing off", "url",
				       l->ep->url, "error", strerror(errno),
				       NULL);
				ev_io_stop(loop, &l->io);
				l->paused = true;
				ev_timer_set(&l->resume, 0.1, 0);
				ev_timer_start(loop, &l->resume);
			}
			return;
		}
		/* ACL, connection rate, PROXY header: before TLS */
		if (!gw_policy_accept(l, fd, &addr, alen))
			continue;
		if (!gw_connlimit_acquire(w->connlimit,
					  (struct sockaddr *)&addr)) {
			gw_wm_refusal(&w->metrics, l->ep->proto,
				      GW_WM_REFUSE_CONN_CAP);
			gw_log(GW_LOG_DEBUG, "worker", "connection cap reached",
			       "url", l->ep->url, NULL);
			close(fd);
			continue;
		}
		l->on_conn(l, fd, &addr, alen);
	}
}

void gw_listener_accept_start(gw_listener_t *l, gw_accept_cb on_conn)
{
	l->on_conn = on_conn;
	ev_io_init(&l->io, on_accept, l->fd, EV_READ);
	l->io.data = l;
	ev_init(&l->resume, on_accept_resume);
	l->resume.data = l;
	ev_io_start(l->worker->loop, &l->io);
}

static void on_drain_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	gw_worker_t *w = t->data;
	gw_worker_check_drained(w);
	if (w->now >= w->drain_deadline) {
		gw_log(GW_LOG_WARN, "worker", "drain deadline passed, closing",
		       NULL);
		ev_break(loop, EVBREAK_ALL);
	}
}

/* Queries waiting on upstreams, in the current pool and replaced ones. */
static unsigned inflight_all(const gw_worker_t *w)
{
	unsigned n = w->pool ? gw_up_pool_inflight(w->pool) : 0;
	for (const struct gw_retired_pool *r = w->retired; r; r = r->next)
		n += gw_up_pool_inflight(r->pool);
	return n;
}

void gw_worker_check_drained(gw_worker_t *w)
{
	if (w->draining && w->n_conns == 0 && inflight_all(w) == 0)
		ev_break(w->loop, EVBREAK_ALL);
}

/* Calls fn once per front-end in use, however many listeners it has. */
#define for_each_ops(w, fn)                                                   \
	do {                                                                  \
		const gw_listener_ops_t *seen[GW_CONF_MAX_LISTEN];            \
		unsigned nseen = 0;                                           \
		for (unsigned i_ = 0; i_ < (w)->n_listeners; i_++) {          \
			const gw_listener_ops_t *o_ = (w)->listeners[i_].ops; \
			bool dup_ = false;                                    \
			for (unsigned j_ = 0; j_ < nseen; j_++)               \
				dup_ |= seen[j_] == o_;                       \
			if (!dup_) {                                          \
				seen[nseen++] = o_;                           \
				if (o_->fn)                                   \
					o_->fn(w);                            \
			}                                                     \
		}                                                             \
	} while (0)

static void start_drain(gw_worker_t *w)
{
	if (w->draining)
		return;
	w->draining = true;
	/* Stream listeners close so new connections go elsewhere at once.
	 * Datagram sockets stay open: in-flight answers leave through them
	 * (and QUIC needs them to finish connections); their front-ends'
	 * drain stops taking new queries. */
	for (unsigned i = 0; i < w->n_listeners; i++) {
		gw_listener_t *l = &w->listeners[i];
		if (l->ep->proto == GW_PROTO_UDP || l->ep->proto == GW_PROTO_DOQ)
			continue;
		if (l->fd < 0)
			continue;
		ev_io_stop(w->loop, &l->io);
		ev_timer_stop(w->loop, &l->resume);
		close(l->fd);
		l->fd = -1;
	}
	w->drain_deadline = w->now + w->conf->limits.drain_timeout_ms / 1000.0;
	ev_timer_init(&w->drain_timer, on_drain_tick, 0.05, 0.05);
	w->drain_timer.data = w;
	ev_timer_start(w->loop, &w->drain_timer);
	for_each_ops(w, drain);
	gw_worker_check_drained(w);
}

/* Drops a handed-over certificate array and its references. */
static void free_certs_array(gw_certs_t **set, unsigned n)
{
	if (!set)
		return;
	for (unsigned i = 0; i < n; i++)
		gw_certs_unref(set[i]);
	free(set);
}

bool gw_worker_upstreams_differ(const gw_conf_t *a, const gw_conf_t *b)
{
	return gw_endpoints_differ(a->upstream, a->n_upstream, b->upstream,
				   b->n_upstream) ||
	       memcmp(&a->up, &b->up, sizeof(a->up)) != 0;
}

/* Tells the main thread the oldest generation this worker still reads
 * (release: whatever it read of older ones is done with). */
static void publish_oldest(gw_worker_t *w)
{
	unsigned o = w->conf_seq < w->pool_seq ? w->conf_seq : w->pool_seq;
	for (const struct gw_retired_pool *r = w->retired; r; r = r->next)
		if (r->seq < o)
			o = r->seq;
	atomic_store_explicit(&w->gen_oldest, o, memory_order_release);
}

/* Frees the replaced pools whose last query has ended. Nothing else
 * reaches them: the admin reads only w->pool, and a query's cancel goes
 * to its own pool only while it is in flight there. */
static void reap_retired(gw_worker_t *w)
{
	struct gw_retired_pool **pp = &w->retired;
	while (*pp) {
		struct gw_retired_pool *r = *pp;
		if (gw_up_pool_inflight(r->pool) > 0) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		gw_up_pool_free(r->pool); /* closes its idle connections */
		free(r);
	}
	if (!w->retired)
		ev_timer_stop(w->loop, &w->retire_timer);
	publish_oldest(w);
}

static void on_retire_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	gw_worker_t *w = t->data;
	reap_retired(w);
	gw_worker_check_drained(w);
}

/* Switches to generation g (see gw_worker_swap_conf). */
static void apply_gen(gw_worker_t *w, gw_conf_gen_t *g)
{
	const gw_conf_t *nc = &g->conf;
	char id[16], seq[16], err[512] = "";

	snprintf(id, sizeof(id), "%u", w->id);
	snprintf(seq, sizeof(seq), "%u", g->seq);
	if (gw_worker_upstreams_differ(gw_up_pool_conf(w->pool), nc)) {
		gw_up_pool_t *np = gw_up_pool_new_seeded(w->loop, nc, &g->seed,
							  err, sizeof(err));
		struct gw_retired_pool *r = np ? malloc(sizeof(*r)) : NULL;
		if (!r) {
			if (np) {
				gw_up_pool_free(np);
				snprintf(err, sizeof(err), "out of memory");
			}
			/* the old configuration and pool stay, together */
			gw_log(GW_LOG_ERROR, "reload",
			       "worker keeps its upstreams: cannot make the "
			       "new ones",
			       "worker", id, "generation", seq, "error", err,
			       NULL);
			atomic_store(&w->gen_failed, g->seq);
			atomic_store_explicit(&w->gen_done, g->seq,
					      memory_order_release);
			return;
		}
		gw_up_pool_inherit(np, w->pool);
		gw_up_pool_retire(w->pool);
		r->pool = w->pool;
		r->seq = w->pool_seq;
		r->next = w->retired;
		w->retired = r;
		/* the admin thread may be reading the pool */
		pthread_mutex_lock(&w->pool_lock);
		w->pool = np;
		pthread_mutex_unlock(&w->pool_lock);
		w->pool_seq = g->seq;
		if (!ev_is_active(&w->retire_timer))
			ev_timer_again(w->loop, &w->retire_timer);
		/* answers of the old upstreams are not the new ones' (a
		 * filtering resolver put in, say): start empty, as Unbound's
		 * reload does */
		if (w->cache)
			gw_cache_clear(w->cache);
		gw_log(GW_LOG_DEBUG, "reload", "worker switched upstreams",
		       "worker", id, "generation", seq, NULL);
	}
	w->conf = nc; /* everything reads it through w->conf */
	w->conf_seq = g->seq;
	if (w->policy && gw_policy_reconf(w->policy) < 0) {
		gw_log(GW_LOG_ERROR, "reload",
		       "worker keeps its rate tables: out of memory", "worker",
		       id, "generation", seq, NULL);
		atomic_store(&w->gen_failed, g->seq);
	}
	reap_retired(w); /* nothing in flight: the old pool goes at once */
	atomic_store_explicit(&w->gen_done, g->seq, memory_order_release);
}

static void on_wakeup(struct ev_loop *loop, ev_async *a, int revents)
{
	gw_worker_t *w = a->data;
	gw_certs_t **next = atomic_exchange(&w->certs_next, NULL);
	if (next) {
		/* Only this thread reads l->certs (when it accepts), so the
		 * swap needs no lock; connections already made keep the
		 * reference they took on the old context. */
		for (unsigned i = 0; i < w->n_listeners; i++) {
			gw_certs_t *old = w->listeners[i].certs;
			w->listeners[i].certs = next[i];
			next[i] = old;
		}
		free_certs_array(next, w->n_listeners);
	}
	gw_conf_gen_t *g = atomic_exchange(&w->gen_next, NULL);
	if (g)
		apply_gen(w, g);
	if (atomic_load(&w->drain_requested))
		start_drain(w);
}

void gw_worker_swap_conf(gw_worker_t *w, gw_conf_gen_t *g)
{
	atomic_store(&w->gen_next, g);
	ev_async_send(w->loop, &w->wakeup);
}

unsigned gw_worker_gen_done(gw_worker_t *w, unsigned *failed, unsigned *oldest)
{
	unsigned done =
	    atomic_load_explicit(&w->gen_done, memory_order_acquire);
	if (failed)
		*failed = atomic_load(&w->gen_failed);
	if (oldest)
		*oldest =
		    atomic_load_explicit(&w->gen_oldest, memory_order_acquire);
	return done;
}

gw_up_pool_t *gw_worker_pool_hold(gw_worker_t *w)
{
	pthread_mutex_lock(&w->pool_lock);
	return w->pool;
}

void gw_worker_pool_release(gw_worker_t *w)
{
	pthread_mutex_unlock(&w->pool_lock);
}

int gw_worker_swap_certs(gw_worker_t *w, gw_certs_t *const *certs)
{
	gw_certs_t **set = calloc(w->n_listeners ? w->n_listeners : 1,
				  sizeof(*set));
	if (!set)
		return GW_ENOMEM;
	for (unsigned i = 0; i < w->n_listeners; i++)
		set[i] = gw_certs_ref(certs[i]);
	/* A set not yet taken by the worker is replaced by the newer one. */
	free_certs_array(atomic_exchange(&w->certs_next, set), w->n_listeners);
	ev_async_send(w->loop, &w->wakeup);
	return 0;
}

static void *worker_main(void *arg)
{
	gw_worker_t *w = arg;
	for (unsigned i = 0; i < w->n_listeners; i++) {
		gw_listener_t *l = &w->listeners[i];
		if (l->fd < 0)
			continue; /* served through a shared port */
		int r = l->ops->start(l);
		if (r < 0)
			gw_log(GW_LOG_ERROR, "worker", "listener failed", "url",
			       l->ep->url, "error", gw_strerror(r), NULL);
	}
	gw_wm_start(&w->metrics, w->loop);
	ev_run(w->loop, 0);
	for_each_ops(w, close_all);
	gw_certs_thread_cleanup();
	return NULL;
}

void gw_worker_flush_cancel(gw_worker_t *w, gw_flush_t *f)
{
	if (!f->queued)
		return;
	if (f->prev)
		f->prev->next = f->next;
	else
		w->flush_head = f->next;
	if (f->next)
		f->next->prev = f->prev;
	f->next = f->prev = NULL;
	f->queued = false;
	if (!w->flush_head) /* not a watcher the loop waits on when idle */
		ev_prepare_stop(w->loop, &w->flush_watcher);
}

void gw_worker_flush(gw_worker_t *w, gw_flush_t *f)
{
	if (f->queued)
		return;
	if (!w->flush_head)
		ev_prepare_start(w->loop, &w->flush_watcher);
	f->queued = true;
	f->prev = NULL;
	f->next = w->flush_head;
	if (f->next)
		f->next->prev = f;
	w->flush_head = f;
}

static void on_flush(struct ev_loop *loop, ev_prepare *p, int revents)
{
	gw_worker_t *w = p->data;

	(void)loop;
	(void)revents;
	while (w->flush_head) {
		gw_flush_t *f = w->flush_head;
		gw_worker_flush_cancel(w, f);
		f->fn(f);
	}
}

int gw_worker_start(gw_worker_t *w)
{
	ev_async_init(&w->wakeup, on_wakeup);
	w->wakeup.data = w;
	ev_async_start(w->loop, &w->wakeup);
	int r = pthread_create(&w->thread, NULL, worker_main, w);
	return r ? -r : 0;
}

void gw_worker_request_drain(gw_worker_t *w)
{
	atomic_store(&w->drain_requested, true);
	ev_async_send(w->loop, &w->wakeup);
}

void gw_worker_join(gw_worker_t *w) { pthread_join(w->thread, NULL); }

void gw_worker_deinit(gw_worker_t *w)
{
	for (unsigned i = 0; i < w->n_listeners; i++) {
		if (w->listeners[i].fd >= 0)
			close(w->listeners[i].fd);
		gw_certs_unref(w->listeners[i].certs);
	}
	free_certs_array(atomic_exchange(&w->certs_next, NULL),
			 w->n_listeners);
	gw_policy_free(w->policy);
	while (w->retired) { /* their queries were cancelled by close_all */
		struct gw_retired_pool *r = w->retired;
		w->retired = r->next;
		gw_up_pool_free(r->pool);
		free(r);
	}
	if (w->pool)
		gw_up_pool_free(w->pool);
	pthread_mutex_destroy(&w->pool_lock);
	gw_cache_free(w->cache);
	if (w->loop)
		ev_loop_destroy(w->loop);
}
