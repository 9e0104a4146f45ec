/*
 * reload.c - the main thread's loop: signals, certificate and config
 * reload. See reload.h for the contract and README.md ("Reload, drain and
 * running as a service") for what an operator sees.
 */
#include "gateway/reload.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "gateway/error.h"
#include "gateway/log.h"
#include "gateway/sdnotify.h"
#include "gateway/wmetrics.h"
#include "upstream/upstream.h"

static atomic_uint_fast64_t counts[GW_RELOAD_KINDS][2];

uint64_t gw_reload_count(gw_reload_kind_t kind, bool ok)
{
	if ((unsigned)kind >= GW_RELOAD_KINDS)
		return 0;
	return atomic_load(&counts[kind][ok]);
}

static void count(gw_reload_kind_t kind, bool ok)
{
	atomic_fetch_add(&counts[kind][ok], 1);
	gw_metrics_reload_inc(ok); /* dnsgw_reloads_total{result} */
}

bool gw_reload_name_matters(const char *name, const char *cert_base,
			    const char *key_base)
{
	if (!name || !*name)
		return false;
	/* Kubernetes projects a secret as cert.pem -> ..data/cert.pem and
	 * updates it by renaming a new "..data" symlink over the old one. */
	if (name[0] == '.' && name[1] == '.' && name[2])
		return true;
	return strcmp(name, cert_base) == 0 || strcmp(name, key_base) == 0;
}

/* Splits path into its directory (".", "/" or the prefix) and base name. */
static int split_path(const char *path, char *dir, size_t dirlen, char *base,
		      size_t baselen)
{
	const char *slash = strrchr(path, '/');
	const char *b = slash ? slash + 1 : path;
	size_t dl = slash ? (size_t)(slash - path) : 0;
	if (strlen(b) >= baselen || dl + 2 > dirlen || !*b)
		return GW_EINVAL;
	strcpy(base, b);
	if (!slash)
		strcpy(dir, ".");
	else if (dl == 0)
		strcpy(dir, "/");
	else {
		memcpy(dir, path, dl);
		dir[dl] = '\0';
	}
	return 0;
}

/* (Re)watches the directories of the cert and key files. */
static void add_watches(gw_reload_t *r)
{
	const char *files[2] = {r->conf->cert_file, r->conf->key_file};
	r->rewatch = false;
	for (int i = 0; i < 2; i++) {
		char dir[PATH_MAX];
		if (r->wd[i] >= 0)
			inotify_rm_watch(r->inofd, r->wd[i]); /* may be gone */
		r->wd[i] = -1;
		if (split_path(files[i], dir, sizeof(dir), r->base[i],
			       sizeof(r->base[i])) < 0)
			continue;
		/* No IN_MODIFY: a file being written is not ready yet; its
		 * IN_CLOSE_WRITE follows. IN_MOVED_TO catches renames (certbot,
		 * "..data"), IN_CREATE a new file or symlink; the *_SELF
		 * events say the directory itself was moved or deleted. */
		r->wd[i] = inotify_add_watch(r->inofd, dir,
					     IN_CLOSE_WRITE | IN_MOVED_TO |
						 IN_CREATE | IN_ATTRIB |
						 IN_MOVE_SELF | IN_DELETE_SELF);
		if (r->wd[i] < 0)
			gw_log(GW_LOG_WARN, "reload",
			       "cannot watch certificate directory, reload "
			       "on SIGHUP only",
			       "dir", dir, "error", strerror(errno), NULL);
	}
}

int gw_reload_init(gw_reload_t *r, const sigset_t *sigs, char *err,
		   size_t errlen)
{
	r->inofd = -1;
	r->wd[0] = r->wd[1] = -1;
	r->sigfd = signalfd(-1, sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (r->sigfd < 0) {
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		return -errno;
	}
	if (!r->conf->cert_file[0])
		return 0; /* generated certificate: nothing on disk to watch */
	r->inofd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (r->inofd < 0) {
		gw_log(GW_LOG_WARN, "reload",
		       "cannot watch certificate files, reload on SIGHUP only",
		       "error", strerror(errno), NULL);
		return 0;
	}
	add_watches(r);
	return 0;
}

void gw_reload_deinit(gw_reload_t *r)
{
	/* after the workers are gone: they may read any generation */
	for (unsigned i = 0; i < r->n_gens; i++)
		free(r->gens[i]);
	r->n_gens = 0;
	r->live = NULL;
	if (r->sigfd >= 0)
		close(r->sigfd);
	if (r->inofd >= 0)
		close(r->inofd);
	r->sigfd = r->inofd = -1;
}

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void utc_time(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int gw_reload_certs(gw_reload_t *r, const char *why)
{
	gw_certs_t *next[GW_CONF_MAX_LISTEN] = {0};
	char err[1024] = "";
	const gw_conf_t *c = r->conf;

	if (!c->cert_file[0]) {
		gw_log(GW_LOG_INFO, "reload",
		       "generated certificate kept: no files to reload",
		       "trigger", why, NULL);
		return 0;
	}
	/* Validation happens here, before any worker sees the new pair:
	 * key matches, valid now, QUIC context for DoQ listeners. */
	if (r->build(c, next, err, sizeof(err)) < 0) {
		for (unsigned i = 0; i < c->n_listen; i++)
			gw_certs_unref(next[i]);
		count(GW_RELOAD_CERTS, false);
		gw_log(GW_LOG_ERROR, "reload",
		       "certificate reload failed, keeping the current one",
		       "trigger", why, "error", err, NULL);
		return GW_ETLS;
	}
	int rc = 0;
	for (unsigned i = 0; i < r->n_workers; i++) {
		int e = gw_worker_swap_certs(&r->workers[i], next);
		if (e < 0)
			rc = e; /* that worker keeps the old pair */
	}
	for (unsigned i = 0; i < c->n_listen; i++) {
		gw_certs_unref(r->certs[i]);
		r->certs[i] = next[i];
	}
	count(GW_RELOAD_CERTS, rc == 0);
	const gw_certs_t *any = NULL;
	time_t nb = 0, na = 0; /* latest notBefore, earliest notAfter */
	for (unsigned i = 0; i < c->n_listen; i++) {
		const gw_certs_t *x = r->certs[i];
		if (!x)
			continue;
		if (!any || gw_certs_not_before(x) > nb)
			nb = gw_certs_not_before(x);
		if (!any || gw_certs_not_after(x) < na)
			na = gw_certs_not_after(x);
		any = x;
	}
	char until[32] = "";
	if (any) {
		gw_metrics_cert_set(nb, na); /* the expiry gauge follows */
		utc_time(na, until, sizeof(until));
	}
	if (rc < 0)
		gw_log(GW_LOG_ERROR, "reload",
		       "certificate reload incomplete: out of memory", NULL);
	else
		gw_log(GW_LOG_INFO, "reload", "certificate reloaded", "trigger",
		       why, "cert", c->cert_file, "not_after", until, "pin",
		       any ? gw_certs_spki_pin(any) : "", NULL);
	return rc;
}

/* Appends name to a comma-separated list. */
static void add_name(char *list, size_t len, const char *name)
{
	size_t n = strlen(list);
	snprintf(list + n, len - n, "%s%s", n ? "," : "", name);
}

/* The ACL part of the policy: read at every check (gateway/policy.c), so
 * a worker can switch to a configuration where it differs. */
static void copy_acls(gw_policy_conf_t *dst, const gw_policy_conf_t *src)
{
	dst->acl = src->acl;
	memcpy(dst->listener_acl, src->listener_acl, sizeof(dst->listener_acl));
	dst->n_listener_acl = src->n_listener_acl;
	dst->slip = src->slip;
	dst->log_anonymize = src->log_anonymize;
}

/* The rate part: each worker makes new tables from it (gw_policy_reconf). */
static void copy_rates(gw_policy_conf_t *dst, const gw_policy_conf_t *src)
{
	dst->qps = src->qps;
	dst->qps_burst = src->qps_burst;
	dst->conn_rate = src->conn_rate;
	dst->conn_burst = src->conn_burst;
	dst->ratelimit_clients = src->ratelimit_clients;
}

/* What a worker's upstream pool is made from. */
static void copy_upstreams(gw_conf_t *dst, const gw_conf_t *src)
{
	memcpy(dst->upstream, src->upstream, sizeof(dst->upstream));
	dst->n_upstream = src->n_upstream;
	dst->up = src->up;
}

/* The parts of n that plan applies, copied into dst. */
static void apply_parts(gw_conf_t *dst, const gw_conf_t *n, unsigned plan)
{
	if (plan & GW_RELOAD_ACL)
		copy_acls(&dst->policy, &n->policy);
	if (plan & GW_RELOAD_RATES)
		copy_rates(&dst->policy, &n->policy);
	if (plan & GW_RELOAD_UPSTREAM)
		copy_upstreams(dst, n);
}

unsigned gw_reload_plan(const gw_conf_t *c, const gw_conf_t *n, char *restart,
			size_t restartlen)
{
	static gw_conf_t tmp; /* main thread only (gw_conf_t is large) */
	unsigned plan = 0;

	restart[0] = '\0';
	tmp = *c;
	copy_acls(&tmp.policy, &n->policy);
	if (memcmp(&tmp.policy, &c->policy, sizeof(tmp.policy)))
		plan |= GW_RELOAD_ACL;
	tmp = *c;
	copy_rates(&tmp.policy, &n->policy);
	if (memcmp(&tmp.policy, &c->policy, sizeof(tmp.policy)))
		plan |= GW_RELOAD_RATES;
	if (gw_worker_upstreams_differ(c, n))
		plan |= GW_RELOAD_UPSTREAM;

	/* Everything else needs a restart; name what changed, compared with
	 * what c would be once the applied parts are in. */
	tmp = *c;
	apply_parts(&tmp, n, plan);
	tmp.log_level = n->log_level;
	tmp.limits = n->limits;
	tmp.limits.max_conns = c->limits.max_conns;
	tmp.limits.max_conns_per_client = c->limits.max_conns_per_client;
	if (gw_endpoints_differ(c->listen, c->n_listen, n->listen, n->n_listen))
		add_name(restart, restartlen, "listen");
	if (strcmp(c->cert_file, n->cert_file) ||
	    strcmp(c->key_file, n->key_file))
		add_name(restart, restartlen, "tls");
	if (c->threads != n->threads)
		add_name(restart, restartlen, "threads");
	if (strcmp(c->user, n->user))
		add_name(restart, restartlen, "user");
	if (strcmp(c->admin, n->admin))
		add_name(restart, restartlen, "admin");
	if (c->log_format != n->log_format || c->query_log != n->query_log)
		add_name(restart, restartlen, "log");
	if (c->limits.max_conns != n->limits.max_conns ||
	    c->limits.max_conns_per_client != n->limits.max_conns_per_client)
		add_name(restart, restartlen, "limits.max_conns*");
	if (memcmp(&c->doh, &n->doh, sizeof(c->doh)))
		add_name(restart, restartlen, "doh");
	if (memcmp(&c->doq, &n->doq, sizeof(c->doq)))
		add_name(restart, restartlen, "doq");
	if (memcmp(&c->cache, &n->cache, sizeof(c->cache)))
		add_name(restart, restartlen, "cache");
	/* PROXY lists, ECS and whatever else the policy gains later */
	if (memcmp(&tmp.policy, &n->policy, sizeof(n->policy)))
		add_name(restart, restartlen, "policy");
	/* Catch-all for settings added later. */
	if (!restart[0] && memcmp(&tmp, n, sizeof(*n)))
		add_name(restart, restartlen, "other");
	return plan;
}

/* What the workers read now: the start-up configuration or the latest
 * generation made by a reload. */
static gw_conf_t *live_conf(gw_reload_t *r)
{
	return r->live ? r->live : r->conf;
}

/* Frees the generations no worker reads any more (each worker publishes
 * the oldest one it still uses); live stays, it is what the next one is
 * copied from. */
static void free_old_generations(gw_reload_t *r)
{
	unsigned oldest = UINT_MAX, k = 0;
	for (unsigned i = 0; i < r->n_workers; i++) {
		unsigned o;
		gw_worker_gen_done(&r->workers[i], NULL, &o);
		if (o < oldest)
			oldest = o;
	}
	for (unsigned i = 0; i < r->n_gens; i++) {
		gw_conf_gen_t *g = r->gens[i];
		if (g->seq < oldest && &g->conf != r->live)
			free(g);
		else
			r->gens[k++] = g;
	}
	r->n_gens = k;
}

/* Checks new upstreams the way start-up does, before any worker sees them:
 * a pool made on a loop of its own (protocols, TLS names or pins, the CA
 * file, host names resolved through the bootstrap resolver), then freed.
 * 0, or GW_ECONFIG with the reason in err. */
static int check_upstreams(const gw_conf_t *n, gw_up_seed_t *seed, char *err,
			   size_t errlen)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!loop) {
		snprintf(err, errlen, "cannot create event loop");
		return GW_ENOMEM;
	}
	gw_up_pool_t *p = gw_up_pool_new(loop, n, err, errlen);
	if (p)
		gw_up_pool_seed(p, seed); /* the workers take these */
	gw_up_pool_free(p);
	ev_loop_destroy(loop);
	return p ? 0 : GW_ECONFIG;
}

/* Waits (bounded) until every worker has handled generation seq. 0, or
 * GW_EAGAIN when one could not switch, GW_ETIMEDOUT when one has not
 * answered yet (it will switch later). */
static int wait_workers(gw_reload_t *r, unsigned seq)
{
	const gw_conf_t *c = live_conf(r);
	/* a worker resolves the host names of new upstreams again
	 * (blocking, A then AAAA, as at start-up); normally at once, since
	 * this thread has just resolved them */
	double wait = GW_RELOAD_WORKER_WAIT +
		      2.0 * c->n_upstream * (c->up.timeout_ms / 1000.0);
	double deadline = now_mono() + wait;
	int rc = 0;

	for (unsigned i = 0; i < r->n_workers; i++) {
		unsigned failed;
		while (gw_worker_gen_done(&r->workers[i], &failed, NULL) <
		       seq) {
			if (now_mono() > deadline)
				return GW_ETIMEDOUT;
			struct timespec ts = {0, 2 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (failed == seq)
			rc = GW_EAGAIN;
	}
	return rc;
}

/* A new generation: the live configuration with the plan's parts of n, for
 * every worker to switch to in its own thread. Becomes live even when a
 * worker cannot switch (r->incomplete then: the next reload hands it out
 * again). 0 or a negative code (GW_ENOSPC/GW_ENOMEM: nothing changed). */
static int new_generation(gw_reload_t *r, const gw_conf_t *n, unsigned plan,
			  const gw_up_seed_t *seed)
{
	free_old_generations(r);
	if (r->n_gens == GW_RELOAD_MAX_GENERATIONS)
		return GW_ENOSPC;
	gw_conf_gen_t *g = malloc(sizeof(*g));
	if (!g)
		return GW_ENOMEM;
	g->conf = *live_conf(r);
	apply_parts(&g->conf, n, plan);
	g->seed = *seed;
	g->seq = ++r->seq;
	r->gens[r->n_gens++] = g;
	r->live = &g->conf;
	for (unsigned i = 0; i < r->n_workers; i++)
		gw_worker_swap_conf(&r->workers[i], g);
	int e = wait_workers(r, g->seq);
	r->incomplete = e < 0;
	return e;
}

int gw_reload_config(gw_reload_t *r)
{
	gw_conf_t *n = calloc(1, sizeof(*n));
	gw_conf_t *c = live_conf(r);
	gw_action_t action;
	char err[1024] = "", applied[512] = "", restart[512] = "";
	int rc = 0;

	if (!n) {
		count(GW_RELOAD_CONFIG, false);
		gw_log(GW_LOG_ERROR, "reload", "configuration reload failed",
		       "error", "out of memory", NULL);
		return GW_ENOMEM;
	}
	if (gw_conf_build(n, r->argc, r->argv, r->envp, r->resolv_conf, &action,
			  err, sizeof(err)) < 0) {
		count(GW_RELOAD_CONFIG, false);
		gw_log(GW_LOG_ERROR, "reload",
		       "configuration reload failed, nothing changed", "error",
		       err, NULL);
		free(n);
		return GW_ECONFIG;
	}
	unsigned plan = gw_reload_plan(c, n, restart, sizeof(restart));
	gw_up_seed_t seed = {0}; /* what check_upstreams resolved */

	/* New upstreams are checked before anything changes. */
	if ((plan & GW_RELOAD_UPSTREAM) &&
	    check_upstreams(n, &seed, err, sizeof(err)) < 0) {
		count(GW_RELOAD_CONFIG, false);
		gw_log(GW_LOG_ERROR, "reload",
		       "configuration reload failed, nothing changed", "error",
		       err, NULL);
		free(n);
		return GW_ECONFIG;
	}

	/* ACLs, upstreams, rates: a new generation of the configuration
	 * (copied from the live one) that every worker switches to. A worker
	 * that could not switch last time gets another go. */
	if (plan || r->incomplete) {
		int e = new_generation(r, n, plan, &seed);
		if (e == GW_ENOSPC || e == GW_ENOMEM) {
			count(GW_RELOAD_CONFIG, false);
			gw_log(GW_LOG_ERROR, "reload",
			       "configuration reload failed, nothing changed",
			       "error",
			       e == GW_ENOSPC ? "too many configurations in "
						"use: restart"
					      : "out of memory",
			       NULL);
			free(n);
			return e;
		}
		if (e < 0) {
			rc = e;
			gw_log(GW_LOG_ERROR, "reload",
			       e == GW_ETIMEDOUT
				   ? "configuration reload incomplete: a "
				     "worker has not switched yet"
				   : "configuration reload incomplete: a "
				     "worker keeps its previous upstreams or "
				     "rate tables",
			       NULL);
		}
		c = live_conf(r);
		if (plan & GW_RELOAD_ACL)
			add_name(applied, sizeof(applied), "policy.acl");
		if (plan & GW_RELOAD_UPSTREAM)
			add_name(applied, sizeof(applied), "upstream");
		if (plan & GW_RELOAD_RATES)
			add_name(applied, sizeof(applied), "policy.rates");
	}

	/* Applied at once: the log level, and the limits workers read each
	 * time they use them. Workers read them without a lock; each is one
	 * aligned 32-bit word, stored atomically here. */
	if (n->log_level != c->log_level) {
		gw_log_setup(n->log_level, c->log_format == GW_LOG_JSON);
		c->log_level = n->log_level;
		add_name(applied, sizeof(applied), "log.level");
	}
#define LIMIT(f)                                                               \
	do {                                                                   \
		if (n->limits.f != c->limits.f) {                              \
			__atomic_store_n(&c->limits.f, n->limits.f,            \
					 __ATOMIC_RELAXED);                    \
			add_name(applied, sizeof(applied), "limits." #f);      \
		}                                                              \
	} while (0)
	LIMIT(handshake_timeout_ms);
	LIMIT(idle_timeout_ms);
	LIMIT(partial_timeout_ms);
	LIMIT(write_timeout_ms);
	LIMIT(max_read_events_per_query);
	LIMIT(max_inflight_per_conn);
	LIMIT(max_waiting_per_client);
	LIMIT(drain_timeout_ms);
	LIMIT(doh_idle_timeout_ms);
#undef LIMIT

	count(GW_RELOAD_CONFIG, rc == 0);
	gw_log(restart[0] || rc < 0 ? GW_LOG_WARN : GW_LOG_INFO, "reload",
	       rc < 0 ? "configuration reloaded in part"
	       : restart[0]
		   ? "configuration reloaded; some changes need a restart"
		   : "configuration reloaded",
	       "applied", applied[0] ? applied : "none", "restart_needed",
	       restart[0] ? restart : "none", NULL);
	free(n);
	return rc;
}

/* Reads queued inotify events; true when one of them matters. */
static bool read_inotify(gw_reload_t *r)
{
	char buf[8192]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	bool hit = false;
	for (;;) {
		ssize_t len = read(r->inofd, buf, sizeof(buf));
		if (len <= 0)
			break;
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *ev = (const void *)p;
			bool ours = ev->wd == r->wd[0] || ev->wd == r->wd[1];
			if (ev->mask & IN_Q_OVERFLOW)
				hit = true; /* events lost: assume the worst */
			else if (ours &&
				 (ev->mask &
				  (IN_MOVE_SELF | IN_DELETE_SELF | IN_IGNORED)))
				/* the directory was replaced: follow the path
				 * again once things have settled */
				hit = r->rewatch = true;
			else if ((ev->wd == r->wd[0] || ev->wd == r->wd[1]) &&
				 ev->len &&
				 gw_reload_name_matters(ev->name, r->base[0],
							r->base[1]))
				hit = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	return hit;
}

/* systemd's reload bracket, the same for every trigger: RELOADING=1 with
 * the monotonic time (sd_notify(3); Type=notify-reload wants it) before,
 * READY=1 once done. */
static void sd_reloading(bool start)
{
	char st[64];
	if (!start) {
		gw_sd_notify("READY=1");
		return;
	}
	snprintf(st, sizeof(st), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)(now_mono() * 1e6));
	gw_sd_notify(st);
}

int gw_reload_run(gw_reload_t *r)
{
	double first = 0, due = 0; /* pending certificate change, 0 = none */

	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = r->sigfd, .events = POLLIN},
		    {.fd = r->inofd, .events = POLLIN},
		};
		int timeout = -1;
		if (due > 0) {
			double left = due - now_mono();
			timeout = left > 0 ? (int)(left * 1000) + 1 : 0;
		}
		int n = poll(pfd, r->inofd >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno != EINTR)
			return SIGTERM; /* cannot wait: stop cleanly */
		if (n > 0 && (pfd[1].revents & POLLIN) && read_inotify(r)) {
			double t = now_mono();
			if (due == 0)
				first = t;
			/* quiet for a second, but never later than 5 s after
			 * the first event of a burst */
			due = t + GW_RELOAD_DEBOUNCE;
			if (due > first + GW_RELOAD_DEBOUNCE_MAX)
				due = first + GW_RELOAD_DEBOUNCE_MAX;
		}
		if (n > 0 && (pfd[0].revents & POLLIN)) {
			struct signalfd_siginfo si;
			while (read(r->sigfd, &si, sizeof(si)) == sizeof(si)) {
				if (si.ssi_signo != SIGHUP)
					return (int)si.ssi_signo;
				gw_log(GW_LOG_INFO, "reload", "SIGHUP received",
				       NULL);
				sd_reloading(true);
				gw_reload_config(r);
				if (r->inofd >= 0 &&
				    (r->rewatch || r->wd[0] < 0 ||
				     r->wd[1] < 0))
					add_watches(
					    r); /* the path may be back */
				gw_reload_certs(r, "SIGHUP");
				sd_reloading(false);
				due = 0; /* just reloaded what changed */
			}
		}
		if (due > 0 && now_mono() >= due) {
			due = 0;
			if (r->rewatch)
				add_watches(r);
			sd_reloading(true);
			gw_reload_certs(r, "file change");
			sd_reloading(false);
		}
	}
}
