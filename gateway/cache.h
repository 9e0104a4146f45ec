/*
 * cache.h - the response cache: one per worker, no locks.
 *
 * Sans-I/O: the caller passes the time (monotonic seconds) into every call;
 * nothing here reads a clock, touches a socket or logs. Each worker owns its
 * own gw_cache_t (gateway/worker.h), so the hot path takes no lock and the
 * hit ratio is per worker: a name asked on two workers is fetched twice.
 *
 * What is cached: upstream answers with RCODE NOERROR or NXDOMAIN, TC clear,
 * no EDNS Client Subnet option, one question equal to the key's. Positive
 * answers live min(TTL of every record but OPT), clamped to [min_ttl,
 * max_ttl]. Negative answers (NXDOMAIN, or NOERROR without answer records)
 * need an SOA in Authority (RFC 2308 5: else not cached) and live as long as
 * the SOA's min(TTL, MINIMUM) (RFC 2308 3, 5), clamped to [min_ttl,
 * negative_max_ttl]. SERVFAIL, REFUSED and every other RCODE are not cached:
 * a failure is retried on the next query instead (RFC 2308 7 allows up to 5
 * minutes; this gateway chooses none). TTL 0 (after clamping) is not cached.
 *
 * The stored copy drops the hop-by-hop and per-client EDNS options (Cookie,
 * Padding, tcp-keepalive; RFC 7873 server cookies belong to one client) and
 * the records after the OPT (gw_dns_finish_answer drops them anyway); its
 * TTLs are clamped to the entry's cap. A served copy has every TTL but OPT's
 * counted down by the whole seconds since insertion, floored at 0.
 *
 * Size: max_bytes bounds the entries (message, key, record offsets and the
 * entry header); past it the least recently used entries go. The bucket array
 * grows with the entry count and is not counted in max_bytes.
 *
 * Keys (gw_cache_key_make): qname (ASCII case folded, RFC 4343), qtype,
 * qclass, the query's RD, CD and AD bits, whether it had EDNS, its DO bit,
 * and the client transport class (datagram or stream). Not the message ID,
 * not the EDNS options (Padding, Cookie, keepalive), not the UDP size.
 */
#ifndef GW_CACHE_H
#define GW_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/dns.h"

typedef struct gw_cache gw_cache_t;

/* RFC 8767 4: TTL of an answer served stale. */
#define GW_CACHE_STALE_TTL 30
/* RFC 8914 4.4: Extended DNS Error "Stale Answer". */
#define GW_CACHE_EDE_STALE 3

typedef struct gw_cache_params {
	size_t max_bytes;          /* > 0; entries bigger than max_bytes / 4
				    * are not cached */
	uint32_t min_ttl;          /* lifetime floor, seconds */
	uint32_t max_ttl;          /* positive lifetime cap */
	uint32_t negative_max_ttl; /* NXDOMAIN / NODATA lifetime cap */
	bool serve_stale;          /* keep expired entries stale_ttl longer */
	uint32_t stale_ttl;        /* seconds past expiry an entry may serve */
} gw_cache_params_t;

/* A lookup key: flag byte, qtype, qclass, lower-cased qname. */
typedef struct gw_cache_key {
	uint16_t len;
	uint8_t b[5 + GW_DNS_MAX_NAME];
} gw_cache_key_t;

typedef struct gw_cache_stats {
	uint64_t hits;       /* fresh answers served */
	uint64_t misses;     /* lookups without a fresh entry */
	uint64_t stale_hits; /* stale answers served (gw_cache_lookup_stale) */
	uint64_t inserts;    /* answers stored (replacements included) */
	uint64_t evictions;  /* entries pushed out for room (LRU) */
	uint64_t expired;    /* entries dropped because they ran out */
	uint64_t entries;    /* gauge */
	uint64_t bytes;      /* gauge: bytes counted against max_bytes */
} gw_cache_stats_t;

/*
 * Creates an empty cache. seed keys the hash (SipHash), so that names an
 * attacker picks cannot be made to collide; pass random bits. Returns NULL
 * when out of memory or max_bytes is 0. Free with gw_cache_free().
 */
gw_cache_t *gw_cache_new(const gw_cache_params_t *p, uint64_t seed);
void gw_cache_free(gw_cache_t *c);

/*
 * Builds the key of a parsed client query (borrowed). stream: the client
 * came over TCP, DoT, DoH or DoQ. Returns 0, or GW_EINVAL when the query has
 * no usable question (QDCOUNT != 1 or an empty name).
 */
int gw_cache_key_make(gw_cache_key_t *k, const gw_dns_msg_t *q, bool stream);

/*
 * Looks up a fresh entry at time now. On a hit writes the served copy into
 * out (cap bytes): the stored message with every TTL but OPT's counted down,
 * the ID left as stored (the caller sets the client's), and returns its
 * length. Returns GW_EAGAIN on a miss (an entry past its lifetime counts as a
 * miss; it is dropped unless serve-stale keeps it), GW_ETOOBIG when cap is
 * too small. Moves the entry to the front of the LRU order.
 */
int gw_cache_lookup(gw_cache_t *c, const gw_cache_key_t *k, double now,
		    uint8_t *out, size_t cap);

/*
 * RFC 8767: for a query whose upstreams all failed. When serve_stale is on
 * and an entry for k expired less than stale_ttl seconds ago (or is still
 * fresh), writes it to out with every TTL set to GW_CACHE_STALE_TTL and, when
 * it carries an OPT, an Extended DNS Error 3 (Stale Answer). Returns the
 * length, GW_EAGAIN when there is none, GW_ETOOBIG when cap is too small.
 */
int gw_cache_lookup_stale(gw_cache_t *c, const gw_cache_key_t *k, double now,
			  uint8_t *out, size_t cap);

/*
 * Stores an upstream answer (msg borrowed, copied) under k at time now,
 * replacing an older entry for k. Returns 0 when stored, GW_EINVAL when the
 * answer is not cacheable (see the top of this file), GW_EMALFORMED when it
 * does not parse or its question differs from k, GW_ETOOBIG when it is too
 * big for this cache, GW_ENOMEM when out of memory (the cache stays usable).
 */
int gw_cache_insert(gw_cache_t *c, const gw_cache_key_t *k,
		    const uint8_t *msg, size_t len, double now);

/* Drops every entry (the counters stay; the gauges go to 0). */
void gw_cache_clear(gw_cache_t *c);

/* Copies the counters into out. */
void gw_cache_stats(const gw_cache_t *c, gw_cache_stats_t *out);

#endif
