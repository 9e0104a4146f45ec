/*
 * fuzz_cache.c - libFuzzer target for the response cache.
 *
 * The first byte picks the cache parameters; the rest is an upstream answer.
 * It is stored under the key of its own question (and, in a tiny cache,
 * under a few variant keys so that eviction runs); whatever the cache serves
 * back, fresh or stale, must parse whole, keep the question, carry no TTL
 * above the cap, and survive the pipeline's gw_dns_finish_answer. abort()
 * otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/cache.h"
#include "gateway/dns.h"
#include "gateway/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_cache: %s\n", what);
	abort();
}

static uint8_t out[GW_DNS_MAX_MSG + 1024];

static void check_served(const gw_dns_msg_t *orig, int n)
{
	gw_dns_msg_t m;

	if (n < GW_DNS_HEADER_LEN || n > GW_DNS_MAX_MSG)
		fail("served length out of range");
	if (gw_dns_parse(out, (size_t)n, &m) != 0)
		fail("served copy does not parse");
	if (m.end != (size_t)n)
		fail("served copy has trailing bytes");
	if (m.qtype != orig->qtype || m.qclass != orig->qclass ||
	    m.qname_len != orig->qname_len ||
	    memcmp(m.qname, orig->qname, m.qname_len) != 0)
		fail("served copy changed the question");
	if (m.has_padding || m.has_ecs)
		fail("per-client option served from the cache");
	gw_dns_answer_opts_t o = { .id = 7, .client_edns = true, .pad = true,
				   .keepalive_100ms = 100, .max_len = 512 };
	if (gw_dns_finish_answer(out, (size_t)n, sizeof(out), &m, &o) < 0)
		fail("finish_answer refused a served copy");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gw_dns_msg_t a;
	gw_cache_key_t k;

	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	data++;
	size--;
	if (gw_dns_parse(data, size, &a) < 0 ||
	    gw_cache_key_make(&k, &a, ctl & 1) < 0)
		return 0;

	gw_cache_params_t p = {
		.max_bytes = (ctl & 2) ? 2048 : 1 << 20,
		.min_ttl = (ctl & 4) ? 30 : 0,
		.max_ttl = (ctl & 8) ? 60 : 86400,
		.negative_max_ttl = 100,
		.serve_stale = ctl & 16,
		.stale_ttl = 50,
	};
	gw_cache_t *c = gw_cache_new(&p, 0x1234);
	if (!c)
		return 0;
	int r = gw_cache_insert(c, &k, data, size, 1000.0);
	if (r == 0) {
		static const double when[] = { 1000, 1001.5, 1029, 1059, 1100,
					       1200, 90000 };
		for (size_t i = 0; i < sizeof(when) / sizeof(when[0]); i++) {
			int n = gw_cache_lookup_stale(c, &k, when[i], out,
						      sizeof(out));
			if (n > 0)
				check_served(&a, n);
			n = gw_cache_lookup(c, &k, when[i], out, sizeof(out));
			if (n > 0) {
				check_served(&a, n);
				/* TTLs never exceed the cap after countdown */
				gw_dns_msg_t m;
				gw_dns_parse(out, (size_t)n, &m);
				uint32_t cap = p.max_ttl > p.negative_max_ttl
						       ? p.max_ttl
						       : p.negative_max_ttl;
				if (m.has_ttl && m.min_ttl > cap)
					fail("TTL above the cap");
			}
		}
	} else if (r != GW_EINVAL && r != GW_EMALFORMED && r != GW_ETOOBIG) {
		fail("unexpected insert error");
	}
	/* variants of the key in the same cache: replacement and eviction */
	for (unsigned v = 0; v < 8; v++) {
		k.b[0] ^= (uint8_t)(1u << (v % 6));
		(void)gw_cache_insert(c, &k, data, size, 1000.0 + v);
		(void)gw_cache_lookup(c, &k, 1001.0 + v, out, sizeof(out));
	}
	gw_cache_stats_t st;
	gw_cache_stats(c, &st);
	if (st.bytes > p.max_bytes)
		fail("cache above its size");
	gw_cache_free(c);
	return 0;
}
