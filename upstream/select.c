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

	*trial = false;
	/* Retries go to an upstream the query has not tried yet, so one dead
	 * resolver costs a query at most one timeout. */
	for (unsigned i = 0; i < s->n; i++) {
		if (!(tried & (1u << i)) && usable(&s->h[i], now)) {
			pick = (int)i;
			break;
		}
	}
	if (pick < 0) {
		for (unsigned i = 0; i < s->n; i++) {
			if (usable(&s->h[i], now)) {
				pick = (int)i;
				break;
			}
		}
	}
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
