/*
 * connset.h - private to upstream/: the connection-pool bookkeeping shared by
 * the pooled upstream protocols, tcp.c (TCP and DoT), https.c (DoH over
 * HTTP/2) and quic.c (DoQ). Each keeps, per worker and upstream, a bounded
 * list of connections, a bounded FIFO of queries waiting for room, a
 * reconnect backoff and the last resumable TLS session; this module owns all
 * of that, the protocol module owns what travels on a connection.
 *
 * Shapes and ownership:
 *   - gw_up_cset_t: one protocol's connections in one pool, embedded as the
 *     FIRST member of the protocol's set (gw_up_conns_t, gw_up_https_t,
 *     gw_up_quic_t), so a protocol casts s back to its own type. It borrows
 *     the pool, its loop and its configuration, and reads the limits once
 *     (gw_up_limits_t). It holds one gw_up_cgroup_t per upstream slot.
 *   - gw_up_cgroup_t: one upstream's list of connections (dead ones stay
 *     listed until their deferred free), its wait queue (linked through
 *     uq->wnext/wprev, uq->wq points back at the group; the group does not
 *     own the queries), backoff and TLS session (owned).
 *   - gw_up_cbase_t: the shared head of one connection, embedded as the
 *     FIRST member of the protocol's connection. The protocol allocates it
 *     (zeroed), calls gw_up_cbase_init(), sets its own state, then
 *     gw_up_cbase_open(): from there the connection is listed, counted and
 *     watched, and the core frees it (ops->destroy) from its own timer once
 *     it is dead, so no handler runs on freed memory however deep the call
 *     chain that closed it.
 *
 * The contract, as the three protocols had it:
 *   - A query goes on the first OPEN connection with room (ops->room), else
 *     on one still coming up, else on a new connection if the group is under
 *     upstream.max_conns_per_upstream and no reconnect backoff runs (a health
 *     trial ignores the backoff: GW_EAGAIN otherwise); with every connection
 *     full it waits in the group's FIFO, bounded by
 *     upstream.max_waiting_per_upstream (GW_ENOSPC past it). Nobody overtakes
 *     the wait queue. With ops->wait_for_open (quic.c) no query is put on a
 *     connection before its handshake completed: the queries wait instead.
 *   - A failed connect or handshake counts a conn_failure, doubles the
 *     backoff (100 ms to 10 s, reset when a connection comes up), logs once
 *     and reports once to the pool's health; a lost OPEN connection is a
 *     debug line. Either way the connection is killed and the protocol hands
 *     its live queries back (ops->reissue).
 *   - conns_opened / conns_open metrics follow gw_up_cbase_open() and the
 *     kill; an OPEN connection without a live query closes after
 *     upstream.idle_timeout_ms (per group: tcp.c shortens it for udp://).
 *
 * Everything runs on the pool's worker thread. Functions that may report to
 * the pool (drain, fail, the timer) run from I/O handlers and timers only.
 */
#ifndef GW_UP_CONNSET_H
#define GW_UP_CONNSET_H

#include <stdbool.h>

#include "attempt.h"
#include "tls_client.h"

/* Defaults of the upstream.* pool limits (config value 0 = default). */
#define GW_UP_DEF_MAX_CONNS 8
#define GW_UP_DEF_MAX_INFLIGHT 100
#define GW_UP_DEF_IDLE_MS 60000
/* Reconnect backoff after a failed connect or handshake, in seconds. */
#define GW_UP_RECONNECT_MIN 0.1
#define GW_UP_RECONNECT_MAX 10.0

typedef struct gw_up_limits {
	unsigned max_conns;    /* per upstream, default 8 */
	unsigned max_inflight; /* queries per connection, default 100 */
	unsigned max_queries;  /* before a connection retires, 0: no limit */
	unsigned max_waiting;  /* wait queue, default max_conns x inflight */
	double idle;           /* seconds, default 60 */
} gw_up_limits_t;

/* Reads conf->up's limits with their defaults. inflight_cap > 0 bounds
 * max_inflight (before max_waiting is derived from it), 0 leaves it. */
void gw_up_limits_init(gw_up_limits_t *l, const gw_conf_t *conf,
		       unsigned inflight_cap);

/* The next reconnect backoff after a failure when cur is in force (0:
 * none yet): GW_UP_RECONNECT_MIN, doubling, at most GW_UP_RECONNECT_MAX. */
double gw_up_backoff_next(double cur);

typedef enum gw_up_cstate {
	GW_UPC_CONNECTING, /* TCP connect under way */
	GW_UPC_HANDSHAKE,  /* TLS or QUIC handshake under way */
	GW_UPC_OPEN,
} gw_up_cstate_t;

typedef struct gw_up_cset gw_up_cset_t;
typedef struct gw_up_cgroup gw_up_cgroup_t;
typedef struct gw_up_cbase gw_up_cbase_t;

struct gw_up_cbase {
	gw_up_cgroup_t *g;
	unsigned up;
	int fd;          /* -1 when closed; the core closes it */
	ev_io io;        /* on fd, callback from the protocol */
	int io_events;
	ev_timer timer;  /* connect deadline, idle close, deferred free */
	gw_up_cstate_t state;
	bool retiring;   /* no new queries; closes when none is live */
	bool dead;       /* killed; freed from the timer */
	bool trial;      /* opened for a down upstream's health trial */
	bool saved_session;
	unsigned queries;/* ever assigned (upstream.max_queries_per_conn) */
	gw_up_cbase_t *next, *prev;
};

struct gw_up_cgroup {
	gw_up_cset_t *set;
	gw_up_cbase_t *head;
	gw_up_query_t *wait_head, *wait_tail; /* FIFO: no connection had room */
	unsigned n_waiting;
	unsigned n_open;  /* listed and not dead */
	double backoff;   /* current reconnect backoff, 0 after success */
	double next_connect;
	double idle;      /* seconds an OPEN connection may sit unused */
	gw_up_tls_session_t *session; /* last resumable TLS session, owned */
};

/* What the protocol provides. c is always the base of one of its
 * connections. Optional hooks may be NULL. */
typedef struct gw_up_cset_ops {
	/* Queries riding on c now. */
	unsigned (*live)(const gw_up_cbase_t *c);
	/* c (neither dead nor retiring) can take one more query. */
	bool (*room)(const gw_up_cbase_t *c);
	/* Opens a connection to upstream up (ending in gw_up_cbase_open()),
	 * or NULL with *err. */
	gw_up_cbase_t *(*connect)(gw_up_cset_t *s, unsigned up, bool trial,
				  int *err);
	/* Puts uq on c: 0, or a negative error with uq untouched. */
	int (*assign)(gw_up_cbase_t *c, gw_up_query_t *uq);
	/* Frees c's protocol state and c: unwatched, unlisted, fd closed. */
	void (*destroy)(gw_up_cbase_t *c);
	/* c's timer fired and c is not dead: a connect or handshake deadline
	 * (state not OPEN) or the idle close. */
	void (*timeout)(gw_up_cbase_t *c);
	/* c is retiring and has no live query: log and close it (kill). */
	void (*retire)(gw_up_cbase_t *c);
	/* c died: hand every live query back (gw_up_attempt_reissue). */
	void (*reissue)(gw_up_cbase_t *c, int err);
	/* Reason of a failed connect/handshake for the log; "" for none. */
	const char *(*why)(gw_up_cbase_t *c, int err);
	/* Optional: c is being killed (stop the protocol's own watchers). */
	void (*killed)(gw_up_cbase_t *c);
	/* Optional: the set is freed while c is listed (a polite close). */
	void (*closing)(gw_up_cbase_t *c);
	/* Optional: queries were assigned to c by a drain; send them (may
	 * fail c). */
	void (*flush)(gw_up_cbase_t *c);
	/* Log message of a failed handshake (a failed TCP connect logs
	 * "upstream connect failed"). */
	const char *handshake_failed;
	/* Queries wait for a connection's handshake rather than ride it, and
	 * wait too when ops->assign says GW_ENOSPC (out of stream credit). */
	bool wait_for_open;
} gw_up_cset_ops_t;

struct gw_up_cset {
	gw_up_pool_t *pool;
	struct ev_loop *loop;
	const gw_conf_t *conf;
	const gw_up_cset_ops_t *ops;
	gw_up_limits_t lim;
	gw_up_cgroup_t up[GW_CONF_MAX_UPSTREAM];
};

/* --- the set --------------------------------------------------------------- */

/* Readies s (embedded, zeroed) for pool p: limits from p's configuration
 * (inflight_cap as for gw_up_limits_init), groups empty. Borrows ops. */
void gw_up_cset_init(gw_up_cset_t *s, gw_up_pool_t *p,
		     const gw_up_cset_ops_t *ops, unsigned inflight_cap);
/* Closes and frees every listed connection (ops->closing first) and the
 * groups' TLS sessions. Queries must be detached already. */
void gw_up_cset_deinit(gw_up_cset_t *s);
/* Connections of upstream up not yet dead; 0 for a NULL s. */
unsigned gw_up_cset_open_count(const gw_up_cset_t *s, unsigned up);

/* Starts uq on upstream uq->up: on a connection (*on = it, when on is not
 * NULL), or in the wait queue (*on = NULL). 0, GW_EAGAIN (backoff),
 * GW_ENOSPC (queue full), or ops->connect's or ops->assign's error. Never
 * reports to the pool. */
int gw_up_cset_start(gw_up_cset_t *s, gw_up_query_t *uq, gw_up_cbase_t **on);
/* If uq waits in one of s's queues, takes it out: true. NULL s: false. */
bool gw_up_cset_unwait(gw_up_cset_t *s, gw_up_query_t *uq);
/* Moves waiting queries of g onto connections while there is room; a
 * query whose assignment fails gets gw_up_attempt_error(). */
void gw_up_cgroup_drain(gw_up_cgroup_t *g);
/* Takes ownership of the TLS session ss (not NULL) as g's resumable one. */
void gw_up_cgroup_keep_session(gw_up_cgroup_t *g, gw_up_tls_session_t *ss);

/* --- one connection --------------------------------------------------------- */

/* Ties c (zeroed) to upstream up of s; fd -1, state CONNECTING. */
void gw_up_cbase_init(gw_up_cbase_t *c, gw_up_cset_t *s, unsigned up,
		      bool trial);
/* c->fd is set up: watch it for events with io_cb (io.data = c), ready the
 * timer (armed after seconds when after >= 0), list c first in its group
 * and count it open (conns_opened, conns_open). */
void gw_up_cbase_open(gw_up_cbase_t *c,
		      void (*io_cb)(struct ev_loop *, ev_io *, int), int events,
		      double after);
/* A connection that failed before gw_up_cbase_open(): closes its fd and
 * destroys it. */
void gw_up_cbase_discard(gw_up_cbase_t *c);
/* Marks c dead (uncounted, unwatched, fd closed); the memory goes from the
 * timer. Idempotent. */
void gw_up_cbase_kill(gw_up_cbase_t *c);
/* Watch c->fd for exactly events (no-op when already so). */
void gw_up_cbase_watch(gw_up_cbase_t *c, int events);
/* (Re)arms c's timer to fire once after seconds. */
void gw_up_cbase_arm(gw_up_cbase_t *c, double after);
/* Reconsiders c after its live queries shrank: a retiring one without
 * live queries goes (ops->retire), an idle OPEN one gets the idle timer. */
void gw_up_cbase_check(gw_up_cbase_t *c);
/* c's handshake completed: state OPEN, timer stopped, backoff reset, no
 * health verdict (a blackhole accepts connections too: answers speak for
 * the upstream), tls_resumed counted, debug line "connection open" with
 * detail. The caller reconsiders c (idle) itself. */
void gw_up_cbase_opened(gw_up_cbase_t *c, bool resumed, const char *detail);
/* One more query assigned to c: retires c at upstream.max_queries_per_conn. */
void gw_up_cbase_count_query(gw_up_cbase_t *c);
/* c failed with err: report (not OPEN yet) or log it, kill it, hand its
 * queries back (ops->reissue), then serve the wait queue (with
 * ops->wait_for_open, waiting queries whose handshake failed are handed
 * back too). No-op on a dead c. */
void gw_up_cbase_fail(gw_up_cbase_t *c, int err);
/* Stream sockets (tcp.c, https.c). connected: for a CONNECTING c on an
 * I/O event, true once the TCP connect completed; false while it has not
 * (no EV_WRITE yet) or when it failed (c failed with the socket's error).
 * recv: reads what c->fd has into buf (EINTR retried): the byte count, 0
 * when nothing is there now, -1 when c failed (closed by the peer, or a
 * socket error). */
bool gw_up_cbase_connected(gw_up_cbase_t *c, int revents);
ssize_t gw_up_cbase_recv(gw_up_cbase_t *c, uint8_t *buf, size_t len);
/* Conveniences. */
gw_up_metrics_t *gw_up_cbase_metrics(const gw_up_cbase_t *c);
const char *gw_up_cbase_url(const gw_up_cbase_t *c);

#endif
