/*
 * select.h - the upstream pool's sans-I/O core: which upstream an attempt
 * goes to, passive health, message ID allocation and answer matching.
 *
 * Nothing here touches a socket, libev or the clock: callers pass `now`
 * (monotonic seconds) and get decisions back, so every rule is unit-tested
 * with a fake clock (tests/unit/test_upstream.c). One instance of each per
 * worker thread; none is locked.
 *
 * Candidates for an attempt: the usable upstreams the query has not tried
 * yet; failing that, the usable ones it has tried (a single upstream is
 * retried on itself). Usable means up, or down with its backoff expired and
 * no trial query out yet (then the attempt is that trial). Nothing usable:
 * the query fails fast. Among the candidates the policy picks:
 *   ordered            the first in configuration order (default)
 *   round-robin        smooth weighted round robin (each upstream gets
 *                      weight/sum of the picks, interleaved)
 *   random             weighted random
 *   least-outstanding  fewest attempts in flight per unit of weight
 *   lowest-latency     lowest EWMA of answer RTT (alpha 1/4); upstreams not
 *                      measured yet first, so every one gets measured
 * Every policy but ordered takes a trial-ready down upstream first, so it
 * is probed back promptly (ordered reaches it in list order anyway).
 *
 * Passive health: GW_UP_FALL consecutive failures (timeouts, errors) mark an
 * upstream down. A down upstream gets one trial query after a backoff of 1 s,
 * doubling on each failed trial up to 30 s; any matched answer from it marks it
 * up again. (Active probes with rise/fall thresholds come later and will feed
 * the same gw_up_sel_report().)
 *
 * Active probes (gw_up_sel_probe): with probing on, `rise` consecutive
 * answered probes bring a down upstream back up and `fall` consecutive failed
 * probes take an up one down, alongside the passive rules above.
 */
#ifndef GW_UP_SELECT_H
#define GW_UP_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/config.h"
#include "gateway/dns.h"

#define GW_UP_FALL 3             /* consecutive failures before down */
#define GW_UP_BACKOFF_MIN 1.0    /* seconds until the first trial */
#define GW_UP_BACKOFF_MAX 30.0   /* cap of the doubling backoff */

/* --- selection and health ----------------------------------------------- */

typedef struct gw_up_health {
	unsigned fails;   /* consecutive failures while up */
	bool down;
	bool trial_out;   /* down, and its trial query is in flight */
	double backoff;   /* current backoff (seconds) while down */
	double retry_at;  /* while down: no trial before this time */
} gw_up_health_t;

typedef struct gw_up_rng gw_up_rng_t;

typedef struct gw_up_sel {
	unsigned n;    /* configured upstreams, <= GW_CONF_MAX_UPSTREAM */
	unsigned fall; /* failures before down */
	gw_up_health_t h[GW_CONF_MAX_UPSTREAM];
	/* policy state */
	gw_up_policy_t policy;
	unsigned weight[GW_CONF_MAX_UPSTREAM]; /* >= 1 */
	long rr_cur[GW_CONF_MAX_UPSTREAM];     /* smooth round robin */
	unsigned out[GW_CONF_MAX_UPSTREAM];    /* picks not yet reported */
	double rtt[GW_CONF_MAX_UPSTREAM];      /* EWMA seconds; 0 = unmeasured */
	gw_up_rng_t *rng;                      /* random policy; borrowed */
	/* active probes */
	unsigned probe_rise, probe_fall;
	unsigned probe_ok[GW_CONF_MAX_UPSTREAM], probe_bad[GW_CONF_MAX_UPSTREAM];
} gw_up_sel_t;

/* How an attempt ended, for gw_up_sel_report(). */
typedef enum gw_up_outcome {
	GW_UP_OK,      /* a matched answer came back */
	GW_UP_FAIL,    /* timeout, ICMP error, connection failure */
	GW_UP_ABANDON, /* the query was cancelled: no verdict */
} gw_up_outcome_t;

/* What gw_up_sel_report() changed, so the caller logs it once. */
typedef enum gw_up_change {
	GW_UP_SAME,
	GW_UP_WENT_DOWN,
	GW_UP_CAME_UP,
} gw_up_change_t;

/* All n upstreams start up. fall 0 means GW_UP_FALL. Policy ordered. */
void gw_up_sel_init(gw_up_sel_t *s, unsigned n, unsigned fall);
/* Sets the policy; weights (n entries, 0 means 1) may be NULL; rng is
 * borrowed (needed by random; NULL falls back to round robin). */
void gw_up_sel_policy(gw_up_sel_t *s, gw_up_policy_t policy,
		      const uint32_t *weights, gw_up_rng_t *rng);
/* Feeds one answer's round-trip time (seconds) of upstream i. */
void gw_up_sel_rtt(gw_up_sel_t *s, unsigned i, double rtt);
/* rise/fall thresholds of active probes (0 = 2 / GW_UP_FALL). */
void gw_up_sel_probe_conf(gw_up_sel_t *s, unsigned rise, unsigned fall);
/* One active probe of upstream i ended (answered or not). */
gw_up_change_t gw_up_sel_probe(gw_up_sel_t *s, unsigned i, bool ok,
			       double now);

/*
 * Picks the upstream for a query's next attempt. tried has bit i set for each
 * upstream the query already tried. Returns the index, with *trial set when
 * the attempt is a down upstream's trial (the caller must hand the flag back
 * to gw_up_sel_report()), or -1 when nothing is usable (fail fast).
 */
int gw_up_sel_pick(gw_up_sel_t *s, uint32_t tried, double now, bool *trial);

/* Records the end of an attempt on upstream i. Every pick is reported once. */
gw_up_change_t gw_up_sel_report(gw_up_sel_t *s, unsigned i, bool trial,
				gw_up_outcome_t o, double now);
/* A health verdict on upstream i that is not the end of a pick (a pooled
 * connection's connect or handshake failed): gw_up_sel_report() without
 * the in-flight bookkeeping. */
gw_up_change_t gw_up_sel_verdict(gw_up_sel_t *s, unsigned i, bool trial,
				 gw_up_outcome_t o, double now);

/* --- random numbers and message IDs -------------------------------------- */

/* xoshiro256** seeded from getrandom(2): unpredictable IDs, no syscall each. */
struct gw_up_rng {
	uint64_t s[4];
};

/* Seeds from getrandom(); falls back to the clock and pid if that fails. */
void gw_up_rng_init(gw_up_rng_t *r);
/* Deterministic seed, for tests. */
void gw_up_rng_seed(gw_up_rng_t *r, uint64_t seed);
uint64_t gw_up_rng_next(gw_up_rng_t *r);

/*
 * The IDs in flight on one socket or connection: a 65536-bit set, 8 KiB,
 * constant-time checks.
 */
typedef struct gw_up_ids {
	uint64_t used[65536 / 64];
	unsigned count;
} gw_up_ids_t;

void gw_up_ids_init(gw_up_ids_t *t);
/* A random ID not in flight, now marked in flight; GW_ENOSPC when all are. */
int gw_up_ids_alloc(gw_up_ids_t *t, gw_up_rng_t *r);
void gw_up_ids_release(gw_up_ids_t *t, uint16_t id);
bool gw_up_ids_busy(const gw_up_ids_t *t, uint16_t id);

/* --- answer matching ------------------------------------------------------ */

typedef enum gw_up_verdict {
	GW_UP_ANSWER,    /* ours: hand it to the query */
	GW_UP_TRUNCATED, /* ours, TC=1: retry over TCP (RFC 7766 5) */
	GW_UP_IGNORE,    /* malformed, spoofed or stale: keep waiting */
} gw_up_verdict_t;

/*
 * Judges a message read from an upstream against the query sent (parsed, with
 * the ID used on the wire). Unparsable or non-matching messages (ID, QR,
 * opcode, question; qname compared ignoring case, RFC 4343) are ignored: the
 * attempt keeps waiting until its timeout. TC=1 gives GW_UP_TRUNCATED only
 * when allow_tc (UDP); over TCP a truncated answer is the answer. a receives
 * the parse (may be NULL).
 */
gw_up_verdict_t gw_up_check_answer(const gw_dns_msg_t *sent,
				   const uint8_t *msg, size_t len,
				   bool allow_tc, gw_dns_msg_t *a);

#endif
