/*
 * worker.h - one worker thread: its own libev loop, its own SO_REUSEPORT
 * listening sockets, its own upstream pool. Nothing here is shared between
 * workers except the read-only configuration, the TLS context (refcounted,
 * internally locked by wolfSSL) and the lock-free connection counters.
 *
 * The worker's clock: gw_worker_now() is CLOCK_MONOTONIC read once per loop
 * iteration (a check watcher with top priority), so every deadline computed in
 * one iteration agrees and wall-clock jumps never move a timer.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "certs/certs.h"
#include "gateway/config.h"
#include "gateway/connlimit.h"
#include "gateway/wmetrics.h"
#include "upstream/upstream.h"

typedef struct gw_listener gw_listener_t;
typedef struct gw_worker gw_worker_t;

/* A connection whose gathered output waits to be sent (gw_worker_flush):
 * embedded in the connection, fn called once before the loop next waits. */
typedef struct gw_flush {
	struct gw_flush *next, *prev;
	void (*fn)(struct gw_flush *f);
	bool queued;
} gw_flush_t;

/* A configuration made by a reload (gateway/reload.c) for the workers to
 * switch to; seq counts them (1, 2, ...; the start-up one is 0). */
typedef struct gw_conf_gen {
	gw_conf_t conf;
	unsigned seq;
	/* its upstreams' host names as the main thread's check resolved them:
	 * workers take them without a lookup of their own */
	gw_up_seed_t seed;
} gw_conf_gen_t;

/* A stream front-end's handler for one admitted connection: it owns fd and
 * the connection-limit slot of addr from then on (release both on failure).
 */
typedef void (*gw_accept_cb)(gw_listener_t *l, int fd,
			     struct sockaddr_storage *addr, socklen_t addrlen);

/* What a front-end provides to the worker for its listeners. */
typedef struct gw_listener_ops {
	/* Starts serving a bound socket (stream sockets already listen). */
	int (*start)(gw_listener_t *l);
	/* Drain: stop taking new work, let in-flight work finish. */
	void (*drain)(gw_worker_t *w);
	/* Loop exit: free everything still open. */
	void (*close_all)(gw_worker_t *w);
} gw_listener_ops_t;

/* A listening socket of one worker. Front-ends keep their state in it. */
struct gw_listener {
	gw_worker_t *worker;
	const gw_endpoint_t *ep;
	const gw_listener_ops_t *ops;
	gw_certs_t *certs; /* TLS context for this listener, or NULL */
	/* A dot:// listener whose port also serves DoH: the doh:// listener of
	 * the same address, which has no socket of its own (fd -1) and takes
	 * the connections whose ALPN is h2 or http/1.1. */
	gw_listener_t *shared_doh;
	int fd;
	ev_io io;
	bool paused; /* accept backed off (fd exhaustion) */
	ev_timer resume;
	gw_accept_cb on_conn;
};

struct gw_worker {
	unsigned id;
	struct ev_loop *loop;
	pthread_t thread;
	const gw_conf_t *conf;
	/* the pool new queries go to; replaced on the worker's thread by a
	 * reload that changes the upstreams, under pool_lock (which only that
	 * swap and other threads' readers take: gw_worker_pool_hold) */
	gw_up_pool_t *pool;
	pthread_mutex_t pool_lock;
	struct gw_retired_pool *retired; /* replaced, queries in flight */
	ev_timer retire_timer;
	/* this worker's response cache (gateway/cache.h), NULL when off;
	 * per worker, so hits and the hit ratio are per worker too */
	struct gw_cache *cache;
	gw_connlimit_t *connlimit; /* process-wide, lock-free */
	struct gw_policy *policy;  /* gateway/policy.h: rate tables */

	gw_listener_t listeners[GW_CONF_MAX_LISTEN];
	unsigned n_listeners;

	double now; /* monotonic seconds, this iteration */
	ev_check clock_watcher;
	ev_async wakeup; /* drain request from the main thread */
	/* connections with output gathered this iteration (gw_worker_flush) */
	gw_flush_t *flush_head;
	ev_prepare flush_watcher;
	atomic_bool drain_requested;
	/* certificate reload: a new TLS context per listener index, handed
	 * over by the main thread (gw_worker_swap_certs); owned by whoever
	 * takes it out with an atomic exchange */
	_Atomic(gw_certs_t **) certs_next;
	/* config reload: the generation to switch to (gw_worker_swap_conf),
	 * and what the worker reports back to the main thread: the last
	 * generation handled, the last one it could not use (it kept its
	 * configuration and pool), and the oldest one it still reads (w->conf
	 * or a pool's), below which the main thread may free them */
	_Atomic(gw_conf_gen_t *) gen_next;
	unsigned conf_seq, pool_seq; /* worker's thread only */
	atomic_uint gen_done, gen_failed, gen_oldest;
	bool draining;
	double drain_deadline;
	ev_timer drain_timer;

	/* connections open in every front-end: drain waits for zero */
	unsigned n_conns;
	struct gw_stream_conn *conns; /* transports/stream.c's list */

	/* counters for /metrics and the /healthz heartbeat: written only
	 * by this worker, read by the admin thread (gateway/wmetrics.h) */
	gw_worker_metrics_t metrics;

	/* scratch space for one answer being finished (single-threaded) */
	uint8_t answer_buf[65536 + 1024];
};

/* Monotonic seconds; valid inside loop callbacks. */
static inline double gw_worker_now(const gw_worker_t *w) { return w->now; }
double gw_clock_monotonic(void);

/*
 * Binds every listener of conf for this worker (SO_REUSEPORT, so each worker
 * binds the same addresses). certs[i] is the TLS context of conf->listen[i]
 * (NULL for cleartext listeners). seed: upstream host names already
 * resolved (gw_up_pool_seed of another worker's pool), or NULL to resolve
 * them here. On failure writes "URL: reason" to err and returns a negative
 * error. Borrows conf, certs and connlimit.
 */
int gw_worker_init(gw_worker_t *w, unsigned id, const gw_conf_t *conf,
		   gw_certs_t *const *certs, gw_connlimit_t *cl,
		   const gw_up_seed_t *seed, char *err, size_t errlen);
/* For a dot:// or doh:// listener i, the index of a doh:// or dot://
 * listener on the same address and port (one TLS port serving both), or -1.
 */
int gw_conf_shared_port(const gw_conf_t *c, unsigned i);

/*
 * Starts accepting on a stream listener: batches of accept4(), the
 * per-client and global connection caps applied before on_conn is called,
 * and a 100 ms back-off instead of a busy loop when descriptors run out.
 */
void gw_listener_accept_start(gw_listener_t *l, gw_accept_cb on_conn);

/* Starts the thread running the loop. */
int gw_worker_start(gw_worker_t *w);
/* From any thread: stop accepting, finish in-flight work, then exit loop. */
void gw_worker_request_drain(gw_worker_t *w);
/*
 * From the main thread, once the worker runs: from now on new connections
 * of listener i use certs[i] (NULL for cleartext listeners; same length as
 * conf->listen). Takes a reference on each for the worker; the swap happens
 * in the worker's own thread (ev_async), which then drops its references
 * on the previous contexts: live connections hold their own reference and
 * keep theirs. Borrows certs. 0 or GW_ENOMEM.
 */
int gw_worker_swap_certs(gw_worker_t *w, gw_certs_t *const *certs);
/*
 * From the main thread, once the worker runs: the worker switches to g in
 * its own thread at its next loop iteration. g must differ from the current
 * configuration only in what is read at each use (ACLs, limits), in the
 * upstreams (upstream list and upstream: settings) and in the rate limits
 * (gateway/reload.c decides). When the upstreams differ from its pool's,
 * the worker makes a new pool from g (blocking for host names, as at start)
 * and sends new queries there; the old pool keeps its queries until they
 * end, then is freed. When the rate settings differ, the rate tables are
 * made again (gw_policy_reconf). If the new pool cannot be made, the worker
 * keeps its configuration and pool and reports g as failed. A g not yet
 * taken is replaced by a newer one. Borrows g: it must stay alive while
 * gen_oldest <= g->seq. Progress: gw_worker_gen_done().
 */
void gw_worker_swap_conf(gw_worker_t *w, gw_conf_gen_t *g);
/* True when a and b differ in the upstream list or the upstream: settings
 * (what a worker's pool is made from). Pure. */
bool gw_worker_upstreams_differ(const gw_conf_t *a, const gw_conf_t *b);
/* Any thread: the last generation w handled; *failed (if not NULL) the
 * last one it could not use; *oldest (if not NULL) the oldest it reads. */
unsigned gw_worker_gen_done(gw_worker_t *w, unsigned *failed, unsigned *oldest);
/*
 * Any thread but w's (the admin's): w's current upstream pool (NULL before
 * init), kept alive until gw_worker_pool_release(). Takes pool_lock: the
 * worker's thread only waits for it while it swaps pools after a reload,
 * never on the query path. Hold it briefly (copy what is needed).
 */
gw_up_pool_t *gw_worker_pool_hold(gw_worker_t *w);
void gw_worker_pool_release(gw_worker_t *w);
void gw_worker_join(gw_worker_t *w);
void gw_worker_deinit(gw_worker_t *w);

/* Called by front-ends when a connection ends; drain completes when none
 * are left and nothing is in flight. */
void gw_worker_check_drained(gw_worker_t *w);

/*
 * Deferred output: answers finished in one loop iteration leave in one
 * write per connection (one TLS record, one send) instead of one each.
 * gw_worker_flush() queues f (once; queuing again is a no-op) and f->fn(f)
 * runs before the loop next waits for events, dequeued first, so it may
 * queue f again. gw_worker_flush_cancel() takes f off the queue (a
 * connection being freed); a no-op when not queued. Worker's thread only.
 */
void gw_worker_flush(gw_worker_t *w, gw_flush_t *f);
void gw_worker_flush_cancel(gw_worker_t *w, gw_flush_t *f);

#endif
