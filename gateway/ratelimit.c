/*
 * ratelimit.c - per-client token buckets. See ratelimit.h.
 */
#include "ratelimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 4

struct bucket {
	uint8_t key[16];
	bool used;
	double tokens;
	double last; /* time of the last refill (and use) */
};

struct gw_ratelimit {
	uint32_t nsets; /* power of two */
	double rate, burst;
	uint64_t seed;
	uint32_t used;
	struct bucket b[];
};

gw_ratelimit_t *gw_ratelimit_new(uint32_t entries, double rate, double burst,
				 uint64_t seed)
{
	uint32_t sets = 1;

	while ((uint64_t)sets * WAYS < entries && sets < (1u << 28))
		sets <<= 1;
	gw_ratelimit_t *rl =
	    calloc(1, sizeof(*rl) + (size_t)sets * WAYS * sizeof(rl->b[0]));
	if (!rl)
		return NULL;
	rl->nsets = sets;
	rl->rate = rate > 0 ? rate : 1;
	rl->burst = burst >= 1 ? burst : 1;
	rl->seed = seed;
	return rl;
}

void gw_ratelimit_free(gw_ratelimit_t *rl)
{
	free(rl);
}

uint32_t gw_ratelimit_used(const gw_ratelimit_t *rl)
{
	return rl->used;
}

/* The client key: IPv4 as ::ffff:a.b.c.d, IPv6 cut to its /64. */
static bool make_key(const struct sockaddr *addr, uint8_t key[16])
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
					     0, 0, 0, 0, 0xff, 0xff};

	memset(key, 0, 16);
	if (addr->sa_family == AF_INET) {
		memcpy(key, v4mapped, 12);
		memcpy(key + 12, &((const struct sockaddr_in *)addr)->sin_addr,
		       4);
		return true;
	}
	if (addr->sa_family != AF_INET6)
		return false;
	const uint8_t *a =
	    ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
	if (memcmp(a, v4mapped, 12) == 0)
		memcpy(key, a, 16);
	else
		memcpy(key, a, 8);
	return true;
}

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finaliser: every key bit reaches every hash bit */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

bool gw_ratelimit_allow(gw_ratelimit_t *rl, const struct sockaddr *addr,
			double now)
{
	uint8_t key[16];
	uint64_t lo, hi;

	if (!make_key(addr, key))
		return true;
	memcpy(&lo, key, 8);
	memcpy(&hi, key + 8, 8);
	uint64_t h = mix(mix(lo ^ rl->seed) ^ hi);
	struct bucket *set = &rl->b[(h & (rl->nsets - 1)) * WAYS];
	struct bucket *e = NULL, *victim = &set[0];

	for (int i = 0; i < WAYS; i++) {
		if (set[i].used && memcmp(set[i].key, key, 16) == 0) {
			e = &set[i];
			break;
		}
		if (!set[i].used) {
			if (victim->used)
				victim = &set[i];
		} else if (victim->used && set[i].last < victim->last) {
			victim = &set[i];
		}
	}
	if (!e) {
		e = victim;
		if (!e->used)
			rl->used++;
		memcpy(e->key, key, 16);
		e->used = true;
		e->tokens = rl->burst;
		e->last = now;
	}
	if (now > e->last) {
		e->tokens += (now - e->last) * rl->rate;
		if (e->tokens > rl->burst)
			e->tokens = rl->burst;
	}
	e->last = now;
	if (e->tokens < 1.0)
		return false;
	e->tokens -= 1.0;
	return true;
}
