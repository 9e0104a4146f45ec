#include "select.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "gateway/error.h"

_Static_assert(GW_CONF_MAX_UPSTREAM <= 32, "tried is a 32-bit mask");

void gw_up_sel_init(gw_up_sel_t *s, unsigned n, unsigned fall)
{
	memset(s, 0, sizeof(*s));
	s->n = n > GW_CONF_MAX_UPSTREAM ? GW_CONF_MAX_UPSTREAM : n;
	s->fall = fall ? fall : GW_UP_FALL;
	s->policy = GW_UP_POLICY_ORDERED;
	for (unsigned i = 0; i < GW_CONF_MAX_UPSTREAM; i++)
		s->weight[i] = 1;
	s->probe_rise = 2;
	s->probe_fall = GW_UP_FALL;
}

void gw_up_sel_policy(gw_up_sel_t *s, gw_up_policy_t policy,
		      const uint32_t *weights, gw_up_rng_t *rng)
{
	s->policy = policy;
	s->rng = rng;
	for (unsigned i = 0; i < s->n; i++)
		s->weight[i] = weights && weights[i] ? weights[i] : 1;
}

void gw_up_sel_rtt(gw_up_sel_t *s, unsigned i, double rtt)
{
	if (i >= s->n || rtt < 0)
		return;
	if (rtt < 1e-6)
		rtt = 1e-6; /* 0 means unmeasured */
	/* EWMA with alpha 1/4: a few answers move it, one outlier does not. */
	s->rtt[i] = s->rtt[i] == 0 ? rtt : s->rtt[i] * 0.75 + rtt * 0.25;
}

void gw_up_sel_probe_conf(gw_up_sel_t *s, unsigned rise, unsigned fall)
{
	s->probe_rise = rise ? rise : 2;
	s->probe_fall = fall ? fall : GW_UP_FALL;
}

gw_up_change_t gw_up_sel_probe(gw_up_sel_t *s, unsigned i, bool ok,
			       double now)
{
	gw_up_health_t *h;

	if (i >= s->n)
		return GW_UP_SAME;
	h = &s->h[i];
	if (ok) {
		s->probe_bad[i] = 0;
		if (++s->probe_ok[i] >= s->probe_rise && h->down) {
			h->down = false;
			h->trial_out = false;
			h->fails = 0;
			h->backoff = 0;
			return GW_UP_CAME_UP;
		}
		return GW_UP_SAME;
	}
	s->probe_ok[i] = 0;
	if (++s->probe_bad[i] >= s->probe_fall && !h->down) {
		h->down = true;
		h->trial_out = false;
		h->backoff = GW_UP_BACKOFF_MIN;
		h->retry_at = now + h->backoff;
		return GW_UP_WENT_DOWN;
	}
	return GW_UP_SAME;
}

/* The policy's choice among the candidates in mask (non-empty). */
static int choose(gw_up_sel_t *s, uint32_t mask, double now)
{
	int best = -1;

	if (s->policy != GW_UP_POLICY_ORDERED) {
		/* A down upstream ready for its trial goes first. */
		for (unsigned i = 0; i < s->n; i++)
			if ((mask & (1u << i)) && s->h[i].down)
				return (int)i;
	}
	switch (s->policy) {
	case GW_UP_POLICY_RANDOM:
		if (s->rng) {
			uint64_t total = 0, x;
			for (unsigned i = 0; i < s->n; i++)
				if (mask & (1u << i))
					total += s->weight[i];
			x = gw_up_rng_next(s->rng) % total;
			for (unsigned i = 0; i < s->n; i++) {
				if (!(mask & (1u << i)))
					continue;
				if (x < s->weight[i])
					return (int)i;
				x -= s->weight[i];
			}
		}
		__attribute__((fallthrough)); /* no generator */
	case GW_UP_POLICY_ROUND_ROBIN: {
		/* Smooth weighted round robin: every candidate gains its
		 * weight, the richest is picked and pays the total. */
		long total = 0;
		for (unsigned i = 0; i < s->n; i++) {
			if (!(mask & (1u << i)))
				continue;
			s->rr_cur[i] += s->weight[i];
			total += s->weight[i];
			if (best < 0 || s->rr_cur[i] > s->rr_cur[best])
				best = (int)i;
		}
		s->rr_cur[best] -= total;
		return best;
	}
	case GW_UP_POLICY_LEAST_OUTSTANDING:
		for (unsigned i = 0; i < s->n; i++) {
			if (!(mask & (1u << i)))
				continue;
			/* out/weight compared without division */
			if (best < 0 || (uint64_t)s->out[i] * s->weight[best] <
						(uint64_t)s->out[best] * s->weight[i])
				best = (int)i;
		}
		return best;
	case GW_UP_POLICY_LOWEST_LATENCY:
		for (unsigned i = 0; i < s->n; i++) {
			if (!(mask & (1u << i)))
				continue;
			if (best < 0 || s->rtt[i] < s->rtt[best])
				best = (int)i;
		}
		return best;
	case GW_UP_POLICY_ORDERED:
		break;
	}
	(void)now;
	for (unsigned i = 0; i < s->n; i++)
		if (mask & (1u << i))
			return (int)i;
	return -1;
}

static bool usable(const gw_up_health_t *h, double now)
{
	if (!h->down)
		return true;
	return !h->trial_out && now >= h->retry_at;
}

int gw_up_sel_pick(gw_up_sel_t *s, uint32_t tried, double now, bool *trial)
{
	int pick = -1;
	uint32_t fresh = 0, any = 0;

	*trial = false;
	/* Retries go to an upstream the query has not tried yet, so one dead
	 * resolver costs a query at most one timeout. */
	for (unsigned i = 0; i < s->n; i++) {
		if (!usable(&s->h[i], now))
			continue;
		any |= 1u << i;
		if (!(tried & (1u << i)))
			fresh |= 1u << i;
	}
	if (fresh)
		pick = choose(s, fresh, now);
	else if (any)
		pick = choose(s, any, now);
	if (pick >= 0)
		s->out[pick]++;
	if (pick >= 0 && s->h[pick].down) {
		/* Only one trial at a time: a dead upstream must not soak up a
		 * burst of queries the moment its backoff expires. */
		s->h[pick].trial_out = true;
		*trial = true;
	}
	return pick;
}

gw_up_change_t gw_up_sel_report(gw_up_sel_t *s, unsigned i, bool trial,
				gw_up_outcome_t o, double now)
{
	if (i < s->n && s->out[i] > 0)
		s->out[i]--;
	return gw_up_sel_verdict(s, i, trial, o, now);
}

gw_up_change_t gw_up_sel_verdict(gw_up_sel_t *s, unsigned i, bool trial,
				 gw_up_outcome_t o, double now)
{
	gw_up_health_t *h;

	if (i >= s->n)
		return GW_UP_SAME;
	h = &s->h[i];
	if (trial)
		h->trial_out = false;

	switch (o) {
	case GW_UP_OK:
		h->fails = 0;
		if (!h->down)
			return GW_UP_SAME;
		/* Any matched answer proves it reachable, trial or late. */
		h->down = false;
		h->trial_out = false;
		h->backoff = 0;
		return GW_UP_CAME_UP;
	case GW_UP_FAIL:
		if (h->down) {
			/* Late failures of attempts sent before it went down
			 * say nothing new; only a failed trial backs off. */
			if (trial) {
				h->backoff *= 2;
				if (h->backoff > GW_UP_BACKOFF_MAX)
					h->backoff = GW_UP_BACKOFF_MAX;
				h->retry_at = now + h->backoff;
			}
			return GW_UP_SAME;
		}
		if (++h->fails < s->fall)
			return GW_UP_SAME;
		h->down = true;
		h->trial_out = false;
		h->backoff = GW_UP_BACKOFF_MIN;
		h->retry_at = now + h->backoff;
		return GW_UP_WENT_DOWN;
	case GW_UP_ABANDON:
		break;
	}
	return GW_UP_SAME;
}

/* --- random numbers ------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void gw_up_rng_seed(gw_up_rng_t *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

void gw_up_rng_init(gw_up_rng_t *r)
{
	ssize_t n = getrandom(r->s, sizeof(r->s), 0);

	if (n != (ssize_t)sizeof(r->s) ||
	    (r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) {
		/* Not expected on Linux >= 3.17; still better than a constant. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		gw_up_rng_seed(r, (uint64_t)ts.tv_nsec ^
					  ((uint64_t)ts.tv_sec << 30) ^
					  ((uint64_t)getpid() << 48) ^
					  (uint64_t)(uintptr_t)r);
	}
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t gw_up_rng_next(gw_up_rng_t *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* --- message IDs ---------------------------------------------------------- */

void gw_up_ids_init(gw_up_ids_t *t)
{
	memset(t, 0, sizeof(*t));
}

bool gw_up_ids_busy(const gw_up_ids_t *t, uint16_t id)
{
	return (t->used[id >> 6] >> (id & 63)) & 1;
}

static void mark(gw_up_ids_t *t, uint16_t id)
{
	t->used[id >> 6] |= 1ULL << (id & 63);
	t->count++;
}

int gw_up_ids_alloc(gw_up_ids_t *t, gw_up_rng_t *r)
{
	uint64_t x;
	unsigned w, start;

	if (t->count >= 65536)
		return GW_ENOSPC;
	/* A few random draws almost always hit a free ID; the IDs stay
	 * uniformly random among free ones, which is what defeats guessing. */
	for (int i = 0; i < 16; i++) {
		uint16_t id = (uint16_t)(gw_up_rng_next(r) >> 48);
		if (!gw_up_ids_busy(t, id)) {
			mark(t, id);
			return id;
		}
	}
	/* Nearly full: scan from a random word for any free bit. */
	x = gw_up_rng_next(r);
	start = (unsigned)(x >> 54); /* 0..1023 */
	for (unsigned k = 0; k < 1024; k++) {
		w = (start + k) & 1023;
		if (t->used[w] != UINT64_MAX) {
			uint64_t free_bits = ~t->used[w];
			int bit = __builtin_ctzll(free_bits);
			uint16_t id = (uint16_t)(w * 64 + (unsigned)bit);
			mark(t, id);
			return id;
		}
	}
	return GW_ENOSPC;
}

void gw_up_ids_release(gw_up_ids_t *t, uint16_t id)
{
	if (!gw_up_ids_busy(t, id))
		return;
	t->used[id >> 6] &= ~(1ULL << (id & 63));
	t->count--;
}

/* --- answer matching ------------------------------------------------------ */

gw_up_verdict_t gw_up_check_answer(const gw_dns_msg_t *sent,
				   const uint8_t *msg, size_t len,
				   bool allow_tc, gw_dns_msg_t *a)
{
	gw_dns_msg_t tmp;

	if (!a)
		a = &tmp;
	/* A truncated UDP answer may not parse past the question (RFC 2181
	 * 9 lets the server cut it anywhere); TC=1 with a matching question is
	 * still reason enough to go to TCP. */
	if (gw_dns_parse(msg, len, a) < 0) {
		if (!allow_tc || len < GW_DNS_HEADER_LEN ||
		    !(a->flags & GW_DNS_TC) || a->qname_len == 0)
			return GW_UP_IGNORE;
	}
	if (!gw_dns_answer_matches(sent, a))
		return GW_UP_IGNORE;
	if (allow_tc && (a->flags & GW_DNS_TC))
		return GW_UP_TRUNCATED;
	return GW_UP_ANSWER;
}
