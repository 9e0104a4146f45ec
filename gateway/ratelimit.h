/*
 * ratelimit.h - token buckets per client address in a bounded table
 * (sans-I/O: the caller passes the time).
 *
 * Each client gets a bucket of `burst` tokens refilled at `rate` per second;
 * an event (a query, a new connection) takes one token and is refused when
 * none is left. Clients are keyed by address: an IPv4 address whole, an IPv6
 * address by its /64 (one subscriber's usual allocation, so a host cannot
 * escape by walking its own subnet); a v4-mapped IPv6 address is its IPv4.
 *
 * The table has a fixed number of entries (set-associative, 4 ways): a new
 * client takes a free way or evicts the way used least recently. Eviction
 * forgets a bucket, so a flood of distinct sources can at worst refill a
 * few clients early; the table never grows.
 *
 * Not thread-safe: one table per worker. Owns its memory (gw_ratelimit_free).
 */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct gw_ratelimit gw_ratelimit_t;

/* entries is rounded up to a power of two (at least 4); rate > 0 per
 * second, burst >= 1 tokens; seed keys the hash. NULL when out of memory. */
gw_ratelimit_t *gw_ratelimit_new(uint32_t entries, double rate, double burst,
				 uint64_t seed);
void gw_ratelimit_free(gw_ratelimit_t *rl);

/* Takes a token for addr at time now (seconds, monotonic): true when one
 * was left. Addresses other than IPv4/IPv6 are always allowed. */
bool gw_ratelimit_allow(gw_ratelimit_t *rl, const struct sockaddr *addr,
			double now);

/* Entries in use (for tests). */
uint32_t gw_ratelimit_used(const gw_ratelimit_t *rl);

#endif
