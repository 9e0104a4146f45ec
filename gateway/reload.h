/*
 * reload.h - what the main thread does while the workers serve: wait for
 * signals, reload certificates (SIGHUP, or when their directory changes)
 * and the parts of the configuration that can change safely (SIGHUP).
 *
 * Certificates: the new pair is loaded and validated first (key matches,
 * valid now, QUIC context for DoQ listeners) by the build callback; only
 * then is it handed to every worker (gw_worker_swap_certs), which uses it
 * for new handshakes. Live connections keep the context they were accepted
 * with (refcounted). A pair that fails is logged and the old one kept.
 * Changes on disk are seen with inotify on the directories of the cert and
 * key files, so both certbot's rename of a new file (or of a symlink in
 * live/) and Kubernetes' atomic swap of the "..data" symlink are caught;
 * events are coalesced until the directory has been quiet for
 * GW_RELOAD_DEBOUNCE seconds (a renewal writes several files).
 *
 * Configuration (SIGHUP only): the file, environment and flags are parsed
 * again with gw_conf_build(). Applied:
 *   - log.level and the limits that workers read each time they use them
 *     (timeouts, per-connection caps, drain deadline), at once;
 *   - the ACLs (policy.acl, listener_acl, slip, log.anonymize), the
 *     upstreams (the upstream list and every upstream: setting) and the
 *     rate limits (policy.qps, qps_burst, conn_rate, conn_burst,
 *     ratelimit_clients): in a new configuration generation that every
 *     worker switches to in its own thread (gw_worker_swap_conf). New
 *     upstreams are checked here first by making a pool from them on a
 *     throw-away loop (URLs, TLS names and CA files, host names through the
 *     bootstrap resolver, as at start-up): if that fails nothing changes.
 *     Each worker then makes its own new pool; queries in flight finish on
 *     the old one, which is freed once empty. New rate settings give every
 *     worker new, empty token-bucket tables (the buckets' state is lost).
 *     The main thread waits for every worker to report (bounded); a worker
 *     that could not switch keeps its configuration and pool, the reload
 *     counts as failed, and the next SIGHUP tries it again.
 * Every other difference (listeners, threads, TLS paths, admin, cache,
 * doh, doq, user, log format and query log, connection caps, the PROXY
 * lists and other policy settings) is named in one log line as needing a
 * restart. A file that does not parse changes nothing.
 *
 * Generations a worker no longer reads (neither as its configuration nor
 * through a pool) are freed at the next reload.
 *
 * systemd: RELOADING=1 ... READY=1 around each reload, whatever triggered
 * it (SIGHUP or a certificate change; gateway/sdnotify.h).
 *
 * Only the main thread calls these functions.
 */
#ifndef GW_RELOAD_H
#define GW_RELOAD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "certs/certs.h"
#include "gateway/config.h"
#include "gateway/worker.h"

#define GW_RELOAD_DEBOUNCE 1.0	   /* seconds of quiet after the last event */
#define GW_RELOAD_DEBOUNCE_MAX 5.0 /* a directory that never settles */
/* generations alive at once (one gw_conf_t each; older ones are freed
 * once no worker reads them) before a reload is refused */
#define GW_RELOAD_MAX_GENERATIONS 64
/* seconds the main thread waits for the workers to switch, beyond the time
 * host names of new upstreams may take to resolve */
#define GW_RELOAD_WORKER_WAIT 5.0

/* What a configuration reload applies through a new generation
 * (gw_reload_plan). */
enum {
	GW_RELOAD_ACL = 1u << 0,      /* policy.acl, listener_acl, slip ... */
	GW_RELOAD_UPSTREAM = 1u << 1, /* upstream list and upstream: */
	GW_RELOAD_RATES = 1u << 2,    /* policy.qps ... ratelimit_clients */
};

/* Builds one TLS context per listener of c into certs[] (NULL for
 * cleartext ones) as main() does at start-up; 0, or -1 with err (and
 * whatever it built left in certs[] for the caller to unref). */
typedef int (*gw_certs_build_cb)(const gw_conf_t *c, gw_certs_t **certs,
				 char *err, size_t errlen);

typedef enum gw_reload_kind {
	GW_RELOAD_CERTS,
	GW_RELOAD_CONFIG,
	GW_RELOAD_KINDS
} gw_reload_kind_t;

typedef struct gw_reload {
	gw_conf_t *conf;      /* live; borrowed; limits/log level updated */
	gw_certs_t **certs;   /* [conf->n_listen], main's references;
			       * replaced on a successful reload */
	gw_worker_t *workers; /* borrowed, all started */
	unsigned n_workers;
	gw_certs_build_cb build;
	int argc; /* for parsing the configuration again */
	char **argv;
	char **envp;
	const char *resolv_conf;
	/* set up by gw_reload_init */
	int sigfd;	   /* signalfd of the blocked signals */
	int inofd;	   /* inotify, -1 without certificate files */
	int wd[2];	   /* watches of the cert and key directories */
	char base[2][256]; /* the cert's and key's file names */
	bool rewatch;	   /* a watched directory went away: watch again */
	/* configurations made by reloads that changed ACLs, upstreams or
	 * rates; the workers read live (NULL: conf), or an older one until
	 * they have switched */
	gw_conf_t *live;
	gw_conf_gen_t *gens[GW_RELOAD_MAX_GENERATIONS];
	unsigned n_gens;
	unsigned seq;	 /* of the latest generation */
	bool incomplete; /* a worker could not switch to live: retry */
} gw_reload_t;

/*
 * Opens the signalfd for sigs (already blocked by the caller) and the
 * inotify watches; call before dropping privileges (the directories are
 * watched with the rights of the caller). Fields before "set up" must be
 * filled. 0, or a negative GW_E* code with err.
 */
int gw_reload_init(gw_reload_t *r, const sigset_t *sigs, char *err,
		   size_t errlen);
/* Serves signals and certificate changes until SIGTERM or SIGINT;
 * returns that signal's number. */
int gw_reload_run(gw_reload_t *r);
/* Closes the descriptors. */
void gw_reload_deinit(gw_reload_t *r);

/* One certificate reload now; 0 when the new contexts are in use, else a
 * negative code (the old ones stay). why is logged ("SIGHUP", "inotify"). */
int gw_reload_certs(gw_reload_t *r, const char *why);
/* One configuration reload now; 0 or a negative code (nothing applied). */
int gw_reload_config(gw_reload_t *r);

/* What reloading from c (live) to n (just parsed) does: returns the
 * GW_RELOAD_* parts that need a new generation, and writes the
 * comma-separated names of the differences that need a restart to restart
 * ("" when none). Log level and limits are not in either (always applied).
 * Pure; for tests. */
unsigned gw_reload_plan(const gw_conf_t *c, const gw_conf_t *n, char *restart,
			size_t restartlen);

/* True when a name seen in a watched directory may change the files:
 * the cert's or key's own name, or a "..name" entry of a Kubernetes
 * projected volume ("..data", "..2024_01_01_..."). Pure; for tests. */
bool gw_reload_name_matters(const char *name, const char *cert_base,
			    const char *key_base);

/* Reloads so far in this process, by kind and result (for /metrics). */
uint64_t gw_reload_count(gw_reload_kind_t kind, bool ok);

#endif
