#include "connlimit.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define BUCKETS 65536

struct gw_connlimit {
	uint32_t per_client, global;
	uint64_t key;
	atomic_uint total;
	atomic_uint count[BUCKETS];
};

gw_connlimit_t *gw_connlimit_new(uint32_t per_client, uint32_t global)
{
	gw_connlimit_t *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->per_client = per_client;
	cl->global = global;
	if (getrandom(&cl->key, sizeof(cl->key), 0) != sizeof(cl->key))
		cl->key = (uint64_t)(uintptr_t)cl * 0x9e3779b97f4a7c15ull;
	return cl;
}

void gw_connlimit_free(gw_connlimit_t *cl) { free(cl); }

/* Keyed FNV-1a over the address bytes: enough to stop a client from choosing
 * addresses that collide with a victim's bucket without knowing the key. */
static unsigned bucket(const gw_connlimit_t *cl, const struct sockaddr *sa)
{
	const uint8_t *p;
	size_t n;
	if (sa->sa_family == AF_INET6) {
		p = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		n = 16;
	} else {
		p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		n = 4;
	}
	uint64_t h = 0xcbf29ce484222325ull ^ cl->key;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	h ^= h >> 29;
	return (unsigned)(h % BUCKETS);
}

bool gw_connlimit_acquire(gw_connlimit_t *cl, const struct sockaddr *addr)
{
	if (atomic_fetch_add(&cl->total, 1) >= cl->global) {
		atomic_fetch_sub(&cl->total, 1);
		return false;
	}
	atomic_uint *c = &cl->count[bucket(cl, addr)];
	if (atomic_fetch_add(c, 1) >= cl->per_client) {
		atomic_fetch_sub(c, 1);
		atomic_fetch_sub(&cl->total, 1);
		return false;
	}
	return true;
}

void gw_connlimit_release(gw_connlimit_t *cl, const struct sockaddr *addr)
{
	atomic_fetch_sub(&cl->count[bucket(cl, addr)], 1);
	atomic_fetch_sub(&cl->total, 1);
}

uint32_t gw_connlimit_total(const gw_connlimit_t *cl)
{
	return atomic_load(&cl->total);
}
