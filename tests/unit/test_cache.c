/* Response cache: keys, lifetimes, TTL countdown, negative caching, caps,
 * eviction, serve-stale. The clock is a plain double passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/cache.h"
#include "gateway/dns.h"
#include "gateway/error.h"

/* ------------------------------------------------------ message builder */

typedef struct mb {
	uint8_t b[8192];
	size_t n;
} mb_t;

static void put8(mb_t *m, uint8_t v) { m->b[m->n++] = v; }
static void put16(mb_t *m, uint16_t v)
{
	put8(m, (uint8_t)(v >> 8));
	put8(m, (uint8_t)v);
}
static void put32v(mb_t *m, uint32_t v)
{
	put16(m, (uint16_t)(v >> 16));
	put16(m, (uint16_t)v);
}
static void name(mb_t *m, const char *text)
{
	while (*text) {
		const char *dot = strchr(text, '.');
		size_t l = dot ? (size_t)(dot - text) : strlen(text);
		put8(m, (uint8_t)l);
		memcpy(m->b + m->n, text, l);
		m->n += l;
		text += l + (dot ? 1 : 0);
	}
	put8(m, 0);
}
static void header(mb_t *m, uint16_t id, uint16_t flags, uint16_t an,
		   uint16_t ns, uint16_t ar)
{
	m->n = 0;
	put16(m, id);
	put16(m, flags);
	put16(m, 1);
	put16(m, an);
	put16(m, ns);
	put16(m, ar);
}
static void question(mb_t *m, const char *qn, uint16_t type)
{
	name(m, qn);
	put16(m, type);
	put16(m, 1);
}
/* A record owned by the question name (pointer to offset 12). */
static void rr_a(mb_t *m, uint32_t ttl, uint8_t last)
{
	put16(m, 0xc00c);
	put16(m, GW_DNS_T_A);
	put16(m, 1);
	put32v(m, ttl);
	put16(m, 4);
	put8(m, 192);
	put8(m, 0);
	put8(m, 2);
	put8(m, last);
}
static void rr_soa(mb_t *m, uint32_t ttl, uint32_t minimum)
{
	put16(m, 0xc00c);
	put16(m, GW_DNS_T_SOA);
	put16(m, 1);
	put32v(m, ttl);
	size_t rdl = m->n;
	put16(m, 0);
	name(m, "ns.example.test");
	name(m, "host.example.test");
	put32v(m, 1);
	put32v(m, 3600);
	put32v(m, 600);
	put32v(m, 86400);
	put32v(m, minimum);
	gw_dns_put16(m->b + rdl, (uint16_t)(m->n - rdl - 2));
}
/* OPT with optional options given as (code, len) pairs of zero bytes. */
static void opt(mb_t *m, bool dnssec_ok, unsigned nopts, const uint16_t *codes,
		const uint16_t *lens)
{
	put8(m, 0);
	put16(m, GW_DNS_T_OPT);
	put16(m, 1232);
	put32v(m, dnssec_ok ? 0x8000 : 0);
	size_t rdl = m->n;
	put16(m, 0);
	for (unsigned i = 0; i < nopts; i++) {
		put16(m, codes[i]);
		put16(m, lens[i]);
		memset(m->b + m->n, 0xab, lens[i]);
		m->n += lens[i];
	}
	gw_dns_put16(m->b + rdl, (uint16_t)(m->n - rdl - 2));
}

#define QR_RD_RA (GW_DNS_QR | GW_DNS_RD | GW_DNS_RA)

/* The answer "www.example.test A 192.0.2.1" with ttl. */
static void answer_a(mb_t *m, const char *qn, uint32_t ttl)
{
	header(m, 0x1234, QR_RD_RA, 1, 0, 0);
	question(m, qn, GW_DNS_T_A);
	rr_a(m, ttl, 1);
}

/* Key of a client query for qn/type with flags, EDNS/DO, transport. */
static gw_cache_key_t key_of(const char *qn, uint16_t type, uint16_t flags,
			     int edns, bool dnssec_ok, bool stream)
{
	mb_t q;
	gw_dns_msg_t m;
	gw_cache_key_t k;

	header(&q, 7, flags, 0, 0, edns ? 1 : 0);
	question(&q, qn, type);
	if (edns)
		opt(&q, dnssec_ok, 0, NULL, NULL);
	assert_int_equal(gw_dns_parse(q.b, q.n, &m), 0);
	assert_int_equal(gw_cache_key_make(&k, &m, stream), 0);
	return k;
}

static gw_cache_key_t key_www(void)
{
	return key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD, 0, false,
		      false);
}

static bool key_eq(const gw_cache_key_t *a, const gw_cache_key_t *b)
{
	return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

/* TTL of record i (0-based over AN, NS, AR) of a message with one
 * question; names are skipped without following pointers. */
static size_t skip_nm(const uint8_t *b, size_t p)
{
	while (b[p]) {
		if ((b[p] & 0xc0) == 0xc0)
			return p + 2;
		p += 1 + (size_t)b[p];
	}
	return p + 1;
}
static uint32_t rr_ttl(const uint8_t *b, unsigned i)
{
	size_t p = skip_nm(b, GW_DNS_HEADER_LEN) + 4;
	for (;;) {
		p = skip_nm(b, p);
		if (i-- == 0)
			return ((uint32_t)b[p + 4] << 24) |
			       ((uint32_t)b[p + 5] << 16) |
			       ((uint32_t)b[p + 6] << 8) | b[p + 7];
		p += 10 + gw_dns_get16(b + p + 8);
	}
}

static gw_cache_params_t params(void)
{
	gw_cache_params_t p = {
		.max_bytes = 1 << 20,
		.min_ttl = 0,
		.max_ttl = 86400,
		.negative_max_ttl = 3600,
		.serve_stale = false,
		.stale_ttl = 100,
	};
	return p;
}

/* ------------------------------------------------------------------ tests */

static void test_cache_hit_and_miss(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 42);
	gw_cache_key_t k = key_www();
	gw_cache_key_t other = key_of("mail.example.test", GW_DNS_T_A,
				      GW_DNS_RD, 0, false, false);
	uint8_t out[GW_DNS_MAX_MSG];
	gw_cache_stats_t st;
	mb_t a;

	assert_int_equal(gw_cache_lookup(c, &k, 100, out, sizeof(out)),
			 GW_EAGAIN);
	answer_a(&a, "www.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 100), 0);
	int n = gw_cache_lookup(c, &k, 100, out, sizeof(out));
	assert_int_equal(n, (int)a.n);
	assert_memory_equal(out, a.b, a.n); /* at age 0: unchanged */
	assert_int_equal(gw_cache_lookup(c, &other, 100, out, sizeof(out)),
			 GW_EAGAIN);
	/* too small an output buffer is an error, not a truncation */
	assert_int_equal(gw_cache_lookup(c, &k, 100, out, 10), GW_ETOOBIG);
	gw_cache_stats(c, &st);
	assert_int_equal(st.hits, 1);
	assert_int_equal(st.misses, 2);
	assert_int_equal(st.inserts, 1);
	assert_int_equal(st.entries, 1);
	assert_true(st.bytes >= a.n);
	gw_cache_free(c);
}

static void test_cache_ttl_countdown(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_www();
	uint8_t out[GW_DNS_MAX_MSG];
	mb_t a;

	/* two answer records, TTL 300 and 500: lifetime is the minimum, each
	 * counts down on its own */
	header(&a, 9, QR_RD_RA, 2, 0, 0);
	question(&a, "www.example.test", GW_DNS_T_A);
	rr_a(&a, 300, 1);
	rr_a(&a, 500, 2);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 1000.0), 0);
	assert_true(gw_cache_lookup(c, &k, 1010.7, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 290); /* whole seconds */
	assert_int_equal(rr_ttl(out, 1), 490);
	assert_true(gw_cache_lookup(c, &k, 1299.9, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 1);
	assert_int_equal(rr_ttl(out, 1), 201);
	/* the entry ends with its shortest TTL */
	assert_int_equal(gw_cache_lookup(c, &k, 1300.0, out, sizeof(out)),
			 GW_EAGAIN);
	gw_cache_stats_t st;
	gw_cache_stats(c, &st);
	assert_int_equal(st.expired, 1);
	assert_int_equal(st.entries, 0);
	gw_cache_free(c);
}

static void test_cache_min_ttl_floor_counts_to_zero(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.min_ttl = 60;
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_www();
	uint8_t out[GW_DNS_MAX_MSG];
	mb_t a;

	/* TTL 5 raised to the floor of 60; served TTLs never go below 0 */
	answer_a(&a, "www.example.test", 5);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	assert_true(gw_cache_lookup(c, &k, 1, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 59);
	assert_true(gw_cache_lookup(c, &k, 59.5, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 1);
	assert_int_equal(gw_cache_lookup(c, &k, 60, out, sizeof(out)),
			 GW_EAGAIN);
	/* without a floor, an answer with TTL 0 is not cached */
	p.min_ttl = 0;
	gw_cache_t *c0 = gw_cache_new(&p, 1);
	answer_a(&a, "www.example.test", 0);
	assert_int_equal(gw_cache_insert(c0, &k, a.b, a.n, 0), GW_EINVAL);
	/* RFC 2181 8: a TTL with the top bit set is zero */
	answer_a(&a, "www.example.test", 0x80000010u);
	assert_int_equal(gw_cache_insert(c0, &k, a.b, a.n, 0), GW_EINVAL);
	gw_cache_free(c0);
	gw_cache_free(c);
}

static void test_cache_max_ttl_cap(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.max_ttl = 100;
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_www();
	uint8_t out[GW_DNS_MAX_MSG];
	mb_t a;

	answer_a(&a, "www.example.test", 86400);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	assert_true(gw_cache_lookup(c, &k, 0, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 100); /* clients see the cap too */
	assert_true(gw_cache_lookup(c, &k, 99, out, sizeof(out)) > 0);
	assert_int_equal(gw_cache_lookup(c, &k, 100, out, sizeof(out)),
			 GW_EAGAIN);
	gw_cache_free(c);
}

static void test_cache_key_fields(void **state)
{
	(void)state;
	gw_cache_key_t base = key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD,
				     1, false, false);
	gw_cache_key_t same_case = key_of("WWW.Example.TEST", GW_DNS_T_A,
					  GW_DNS_RD, 1, false, false);
	assert_true(key_eq(&base, &same_case)); /* RFC 4343 */

	const gw_cache_key_t differ[] = {
		key_of("www.example.test", GW_DNS_T_AAAA, GW_DNS_RD, 1, false,
		       false),
		key_of("www.example.test", GW_DNS_T_A, 0, 1, false, false),
		key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD | GW_DNS_CD,
		       1, false, false),
		key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD | GW_DNS_AD,
		       1, false, false),
		key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD, 1, true,
		       false), /* DO */
		key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD, 0, false,
		       false), /* no EDNS */
		key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD, 1, false,
		       true), /* stream */
		key_of("www.example.tes", GW_DNS_T_A, GW_DNS_RD, 1, false,
		       false),
	};
	for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
		assert_false(key_eq(&base, &differ[i]));
		for (size_t j = i + 1; j < sizeof(differ) / sizeof(differ[0]);
		     j++)
			assert_false(key_eq(&differ[i], &differ[j]));
	}

	/* a different qclass */
	mb_t q;
	gw_dns_msg_t m;
	gw_cache_key_t k;
	header(&q, 7, GW_DNS_RD, 0, 0, 1);
	name(&q, "www.example.test");
	put16(&q, GW_DNS_T_A);
	put16(&q, 3); /* CH */
	opt(&q, false, 0, NULL, NULL);
	assert_int_equal(gw_dns_parse(q.b, q.n, &m), 0);
	assert_int_equal(gw_cache_key_make(&k, &m, false), 0);
	assert_false(key_eq(&base, &k));

	/* no question: no key */
	header(&q, 7, GW_DNS_RD, 0, 0, 0);
	gw_dns_put16(q.b + 4, 0);
	assert_int_equal(gw_dns_parse(q.b, q.n, &m), 0);
	assert_int_equal(gw_cache_key_make(&k, &m, false), GW_EINVAL);
}

static void test_cache_key_ignores_id_and_options(void **state)
{
	(void)state;
	static const uint16_t codes[] = { GW_DNS_OPT_PADDING,
					  GW_DNS_OPT_COOKIE,
					  GW_DNS_OPT_TCP_KEEPALIVE };
	static const uint16_t lens[] = { 100, 8, 0 };
	mb_t q1, q2;
	gw_dns_msg_t m1, m2;
	gw_cache_key_t k1, k2;

	header(&q1, 1, GW_DNS_RD, 0, 0, 1);
	question(&q1, "www.example.test", GW_DNS_T_A);
	opt(&q1, true, 0, NULL, NULL);
	header(&q2, 0xbeef, GW_DNS_RD, 0, 0, 1);
	question(&q2, "www.example.test", GW_DNS_T_A);
	opt(&q2, true, 3, codes, lens);
	assert_int_equal(gw_dns_parse(q1.b, q1.n, &m1), 0);
	assert_int_equal(gw_dns_parse(q2.b, q2.n, &m2), 0);
	assert_int_equal(gw_cache_key_make(&k1, &m1, true), 0);
	assert_int_equal(gw_cache_key_make(&k2, &m2, true), 0);
	assert_true(key_eq(&k1, &k2));
}

static void test_cache_id_independent_answer(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_www();
	uint8_t out1[GW_DNS_MAX_MSG], out2[GW_DNS_MAX_MSG];
	mb_t a;

	/* the upstream's ID is kept in the entry; the pipeline writes each
	 * client's own: two lookups give the same bytes whatever the ID */
	answer_a(&a, "www.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	int n1 = gw_cache_lookup(c, &k, 5, out1, sizeof(out1));
	int n2 = gw_cache_lookup(c, &k, 5, out2, sizeof(out2));
	assert_int_equal(n1, n2);
	assert_memory_equal(out1, out2, (size_t)n1);
	gw_cache_free(c);
}

static void test_cache_negative_nxdomain_soa_minimum(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_of("nx.example.test", GW_DNS_T_A, GW_DNS_RD, 0,
				  false, false);
	uint8_t out[GW_DNS_MAX_MSG];
	mb_t a;

	/* RFC 2308 5: min(SOA TTL 300, MINIMUM 60) */
	header(&a, 3, QR_RD_RA | GW_DNS_NXDOMAIN, 0, 1, 0);
	question(&a, "nx.example.test", GW_DNS_T_A);
	rr_soa(&a, 300, 60);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	int n = gw_cache_lookup(c, &k, 10, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(GW_DNS_RCODE(gw_dns_get16(out + 2)), GW_DNS_NXDOMAIN);
	assert_int_equal(rr_ttl(out, 0), 50); /* SOA TTL served as 60 - 10 */
	assert_true(gw_cache_lookup(c, &k, 59, out, sizeof(out)) > 0);
	assert_int_equal(gw_cache_lookup(c, &k, 60, out, sizeof(out)),
			 GW_EAGAIN);

	/* SOA TTL below MINIMUM: the TTL wins */
	header(&a, 3, QR_RD_RA | GW_DNS_NXDOMAIN, 0, 1, 0);
	question(&a, "nx.example.test", GW_DNS_T_A);
	rr_soa(&a, 20, 600);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 100), 0);
	assert_true(gw_cache_lookup(c, &k, 119, out, sizeof(out)) > 0);
	assert_int_equal(gw_cache_lookup(c, &k, 120, out, sizeof(out)),
			 GW_EAGAIN);

	/* RFC 2308 5: without an SOA, not cached */
	header(&a, 3, QR_RD_RA | GW_DNS_NXDOMAIN, 0, 0, 0);
	question(&a, "nx.example.test", GW_DNS_T_A);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 200), GW_EINVAL);
	gw_cache_free(c);
}

static void test_cache_negative_nodata_and_cap(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.negative_max_ttl = 30;
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_of("www.example.test", GW_DNS_T_AAAA, GW_DNS_RD,
				  0, false, false);
	uint8_t out[GW_DNS_MAX_MSG];
	mb_t a;

	/* NODATA: NOERROR, no answers, SOA; capped at negative_max_ttl */
	header(&a, 3, QR_RD_RA, 0, 1, 0);
	question(&a, "www.example.test", GW_DNS_T_AAAA);
	rr_soa(&a, 3600, 900);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	assert_true(gw_cache_lookup(c, &k, 0, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 30);
	assert_int_equal(gw_cache_lookup(c, &k, 30, out, sizeof(out)),
			 GW_EAGAIN);

	/* a referral-like NODATA without SOA is not cached */
	header(&a, 3, QR_RD_RA, 0, 0, 0);
	question(&a, "www.example.test", GW_DNS_T_AAAA);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), GW_EINVAL);
	gw_cache_free(c);
}

static void test_cache_uncacheable_answers(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_www();
	gw_cache_key_t k_edns = key_of("www.example.test", GW_DNS_T_A,
				       GW_DNS_RD, 1, false, false);
	static const uint16_t ecs[] = { GW_DNS_OPT_ECS };
	static const uint16_t ecs_len[] = { 7 };
	mb_t a;

	static const uint16_t rcodes[] = { GW_DNS_SERVFAIL, GW_DNS_REFUSED,
					   GW_DNS_FORMERR, GW_DNS_NOTIMP };
	for (size_t i = 0; i < 4; i++) {
		header(&a, 1, QR_RD_RA | rcodes[i], 0, 0, 0);
		question(&a, "www.example.test", GW_DNS_T_A);
		assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0),
				 GW_EINVAL);
	}
	/* truncated */
	header(&a, 1, QR_RD_RA | GW_DNS_TC, 1, 0, 0);
	question(&a, "www.example.test", GW_DNS_T_A);
	rr_a(&a, 300, 1);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), GW_EINVAL);
	/* client subnet in the answer */
	header(&a, 1, QR_RD_RA, 1, 0, 1);
	question(&a, "www.example.test", GW_DNS_T_A);
	rr_a(&a, 300, 1);
	opt(&a, false, 1, ecs, ecs_len);
	assert_int_equal(gw_cache_insert(c, &k_edns, a.b, a.n, 0), GW_EINVAL);
	/* another question than the key's */
	answer_a(&a, "mail.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), GW_EMALFORMED);
	/* not an answer, junk */
	answer_a(&a, "www.example.test", 300);
	gw_dns_put16(a.b + 2, GW_DNS_RD);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), GW_EMALFORMED);
	assert_int_equal(gw_cache_insert(c, &k, a.b, 5, 0), GW_EMALFORMED);
	answer_a(&a, "www.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n - 1, 0),
			 GW_EMALFORMED);

	gw_cache_stats_t st;
	gw_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.inserts, 0);
	gw_cache_free(c);
}

static void test_cache_strips_per_client_options(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD, 1,
				  false, false);
	static const uint16_t codes[] = { GW_DNS_OPT_COOKIE, GW_DNS_OPT_EDE,
					  GW_DNS_OPT_PADDING };
	static const uint16_t lens[] = { 24, 2, 40 };
	uint8_t out[GW_DNS_MAX_MSG];
	gw_dns_msg_t m;
	mb_t a;

	/* a server cookie answers one client's cookie (RFC 7873); padding
	 * belongs to one hop: neither is stored. The EDE stays. A record
	 * after the OPT goes (as gw_dns_finish_answer drops it). */
	header(&a, 1, QR_RD_RA, 1, 0, 2);
	question(&a, "www.example.test", GW_DNS_T_A);
	rr_a(&a, 300, 1);
	opt(&a, false, 3, codes, lens);
	rr_a(&a, 300, 9);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	int n = gw_cache_lookup(c, &k, 1, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(gw_dns_parse(out, (size_t)n, &m), 0);
	assert_int_equal(m.end, (size_t)n);
	assert_true(m.has_opt);
	assert_false(m.has_padding);
	assert_int_equal(m.arcount, 1);
	assert_int_equal(m.ancount, 1);
	/* OPT RDATA: only the EDE option (4 + 2 bytes) */
	assert_int_equal(gw_dns_get16(out + m.opt_off + 9), 6);
	assert_int_equal(gw_dns_get16(out + m.opt_off + 11), GW_DNS_OPT_EDE);
	assert_int_equal(rr_ttl(out, 0), 299);
	gw_cache_free(c);
}

static void test_cache_replace_same_key(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_www();
	uint8_t out[GW_DNS_MAX_MSG];
	gw_cache_stats_t st;
	mb_t a;

	answer_a(&a, "www.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	answer_a(&a, "www.example.test", 50);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 10), 0);
	gw_cache_stats(c, &st);
	assert_int_equal(st.entries, 1);
	assert_true(gw_cache_lookup(c, &k, 20, out, sizeof(out)) > 0);
	assert_int_equal(rr_ttl(out, 0), 40);
	gw_cache_free(c);
}

/* gw_cache_clear (an upstream reload): every entry gone, stale ones too,
 * the counters kept, and the cache usable again at once. */
static void test_cache_clear(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.serve_stale = true;
	gw_cache_t *c = gw_cache_new(&p, 3);
	gw_cache_key_t k = key_www();
	gw_cache_key_t other = key_of("mail.example.test", GW_DNS_T_A,
				      GW_DNS_RD, 0, false, false);
	uint8_t out[GW_DNS_MAX_MSG];
	gw_cache_stats_t st;
	mb_t a;

	answer_a(&a, "www.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	answer_a(&a, "mail.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &other, a.b, a.n, 0), 0);
	assert_true(gw_cache_lookup(c, &k, 1, out, sizeof(out)) > 0);
	gw_cache_clear(c);
	gw_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	assert_int_equal(st.bytes, 0);
	assert_int_equal(st.inserts, 2);
	assert_int_equal(st.hits, 1);
	assert_int_equal(gw_cache_lookup(c, &k, 1, out, sizeof(out)),
			 GW_EAGAIN);
	assert_int_equal(gw_cache_lookup_stale(c, &other, 1, out, sizeof(out)),
			 GW_EAGAIN);
	answer_a(&a, "www.example.test", 300);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 2), 0);
	assert_true(gw_cache_lookup(c, &k, 2, out, sizeof(out)) > 0);
	gw_cache_free(c);
}

static void test_cache_eviction_bound_and_lru(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.max_bytes = 16384;
	gw_cache_t *c = gw_cache_new(&p, 99);
	uint8_t out[GW_DNS_MAX_MSG];
	gw_cache_stats_t st;
	char qn[64];
	mb_t a;

	gw_cache_key_t hot = key_of("hot.example.test", GW_DNS_T_A, GW_DNS_RD,
				    0, false, false);
	answer_a(&a, "hot.example.test", 3600);
	assert_int_equal(gw_cache_insert(c, &hot, a.b, a.n, 0), 0);
	for (unsigned i = 0; i < 2000; i++) {
		snprintf(qn, sizeof(qn), "n%u.example.test", i);
		gw_cache_key_t k = key_of(qn, GW_DNS_T_A, GW_DNS_RD, 0, false,
					  false);
		answer_a(&a, qn, 3600);
		assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 1), 0);
		/* the hot name is asked all the time: it stays */
		assert_true(gw_cache_lookup(c, &hot, 1, out, sizeof(out)) > 0);
		gw_cache_stats(c, &st);
		assert_true(st.bytes <= p.max_bytes);
	}
	gw_cache_stats(c, &st);
	assert_true(st.evictions > 1500);
	assert_true(st.entries > 10);
	assert_int_equal(st.entries + st.evictions, 2001);
	/* the oldest names went first; the newest are there */
	gw_cache_key_t first = key_of("n0.example.test", GW_DNS_T_A, GW_DNS_RD,
				      0, false, false);
	gw_cache_key_t last = key_of("n1999.example.test", GW_DNS_T_A,
				     GW_DNS_RD, 0, false, false);
	assert_int_equal(gw_cache_lookup(c, &first, 2, out, sizeof(out)),
			 GW_EAGAIN);
	assert_true(gw_cache_lookup(c, &last, 2, out, sizeof(out)) > 0);

	/* one answer bigger than a quarter of the cache is refused */
	header(&a, 1, QR_RD_RA, 250, 0, 0);
	question(&a, "big.example.test", GW_DNS_T_A);
	for (unsigned i = 0; i < 250; i++)
		rr_a(&a, 300, (uint8_t)i);
	gw_cache_key_t big = key_of("big.example.test", GW_DNS_T_A, GW_DNS_RD,
				    0, false, false);
	assert_int_equal(gw_cache_insert(c, &big, a.b, a.n, 2), GW_ETOOBIG);
	gw_cache_free(c);
}

static void test_cache_serve_stale(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.serve_stale = true;
	p.stale_ttl = 100;
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_of("www.example.test", GW_DNS_T_A, GW_DNS_RD, 1,
				  false, false);
	uint8_t out[GW_DNS_MAX_MSG];
	gw_dns_msg_t m;
	mb_t a;

	header(&a, 1, QR_RD_RA, 1, 0, 1);
	question(&a, "www.example.test", GW_DNS_T_A);
	rr_a(&a, 60, 1);
	opt(&a, false, 0, NULL, NULL);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	/* fresh: the stale lookup serves it as a normal hit */
	int n = gw_cache_lookup_stale(c, &k, 30, out, sizeof(out));
	assert_int_equal(n, (int)a.n);
	assert_int_equal(rr_ttl(out, 0), 30);
	/* expired: a miss for the normal path, kept for serve-stale */
	assert_int_equal(gw_cache_lookup(c, &k, 61, out, sizeof(out)),
			 GW_EAGAIN);
	n = gw_cache_lookup_stale(c, &k, 150, out, sizeof(out));
	assert_true(n > 0);
	assert_int_equal(rr_ttl(out, 0), GW_CACHE_STALE_TTL); /* RFC 8767 */
	assert_int_equal(gw_dns_parse(out, (size_t)n, &m), 0);
	assert_int_equal(m.end, (size_t)n);
	/* RFC 8914 EDE 3, Stale Answer */
	assert_int_equal(gw_dns_get16(out + m.opt_off + 9), 6);
	assert_int_equal(gw_dns_get16(out + m.opt_off + 11), GW_DNS_OPT_EDE);
	assert_int_equal(gw_dns_get16(out + m.opt_off + 15),
			 GW_CACHE_EDE_STALE);
	/* past expiry + stale_ttl: gone */
	assert_int_equal(gw_cache_lookup_stale(c, &k, 160, out, sizeof(out)),
			 GW_EAGAIN);
	gw_cache_stats_t st;
	gw_cache_stats(c, &st);
	assert_int_equal(st.stale_hits, 1);
	assert_int_equal(st.entries, 0);
	gw_cache_free(c);

	/* serve-stale off: expired entries go at once, nothing stale */
	p.serve_stale = false;
	c = gw_cache_new(&p, 1);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), 0);
	assert_int_equal(gw_cache_lookup_stale(c, &k, 61, out, sizeof(out)),
			 GW_EAGAIN);
	assert_int_equal(gw_cache_lookup(c, &k, 61, out, sizeof(out)),
			 GW_EAGAIN);
	gw_cache_stats(c, &st);
	assert_int_equal(st.entries, 0);
	gw_cache_free(c);
}

/* Found by fuzz_cache: a name pointing into a TTL field would stop parsing
 * once the TTL is rewritten; such an answer is not cached. */
static void test_cache_name_into_ttl_not_cached(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	gw_cache_t *c = gw_cache_new(&p, 1);
	gw_cache_key_t k = key_of("nx.example.test", GW_DNS_T_A, GW_DNS_RD, 0,
				  false, false);
	gw_dns_msg_t m;
	mb_t a;

	header(&a, 3, QR_RD_RA | GW_DNS_NXDOMAIN, 0, 2, 0);
	question(&a, "nx.example.test", GW_DNS_T_A);
	assert_int_equal(a.n, 33);
	rr_soa(&a, 0x0e00, 3600); /* TTL bytes at 39..42; byte 42 is 0 */
	size_t second = a.n;
	rr_soa(&a, 300, 60);
	gw_dns_put16(a.b + second, 0xc000 | 42); /* owner: "the root" at 42 */
	assert_int_equal(gw_dns_parse(a.b, a.n, &m), 0);
	assert_int_equal(gw_cache_insert(c, &k, a.b, a.n, 0), GW_EINVAL);
	gw_cache_free(c);
}

static void test_cache_new_rejects_zero_size(void **state)
{
	(void)state;
	gw_cache_params_t p = params();
	p.max_bytes = 0;
	assert_null(gw_cache_new(&p, 1));
	gw_cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_hit_and_miss),
		cmocka_unit_test(test_cache_ttl_countdown),
		cmocka_unit_test(test_cache_min_ttl_floor_counts_to_zero),
		cmocka_unit_test(test_cache_max_ttl_cap),
		cmocka_unit_test(test_cache_key_fields),
		cmocka_unit_test(test_cache_key_ignores_id_and_options),
		cmocka_unit_test(test_cache_id_independent_answer),
		cmocka_unit_test(test_cache_negative_nxdomain_soa_minimum),
		cmocka_unit_test(test_cache_negative_nodata_and_cap),
		cmocka_unit_test(test_cache_uncacheable_answers),
		cmocka_unit_test(test_cache_strips_per_client_options),
		cmocka_unit_test(test_cache_replace_same_key),
		cmocka_unit_test(test_cache_clear),
		cmocka_unit_test(test_cache_eviction_bound_and_lru),
		cmocka_unit_test(test_cache_serve_stale),
		cmocka_unit_test(test_cache_name_into_ttl_not_cached),
		cmocka_unit_test(test_cache_new_rejects_zero_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
