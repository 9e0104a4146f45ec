/*
 * test_upstream_enc.c - the sans-I/O parts added for encrypted upstreams and
 * host names: the bootstrap resolver's query builder and answer parser, and
 * gw_up_pool_new()'s checks on https:// and quic:// upstreams.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"
#include "gateway/dns.h"
#include "gateway/error.h"
#include "upstream/attempt.h"
#include "upstream/upstream.h"

/* An answer to (name, qtype, id): the question as written in qname_wire,
 * then the records given as raw bytes. */
static size_t mk_answer(uint8_t *out, uint16_t id, uint8_t rcode,
			const char *name, uint16_t qtype, unsigned ancount,
			const uint8_t *rrs, size_t rrs_len)
{
	int n = gw_up_boot_query(out, 512, name, qtype, id);

	assert_true(n > 0);
	out[2] = 0x81; /* QR, RD */
	out[3] = (uint8_t)(0x80 | rcode); /* RA */
	gw_dns_put16(out + 6, (uint16_t)ancount);
	if (rrs_len)
		memcpy(out + n, rrs, rrs_len);
	return (size_t)n + rrs_len;
}

/* A record at the question's name (pointer 0xc00c), ttl, 4 address bytes. */
static size_t rr_a(uint8_t *p, uint32_t ttl, const uint8_t a[4])
{
	static const uint8_t head[] = { 0xc0, 0x0c, 0, 1, 0, 1 };
	memcpy(p, head, sizeof(head));
	p[6] = (uint8_t)(ttl >> 24);
	p[7] = (uint8_t)(ttl >> 16);
	p[8] = (uint8_t)(ttl >> 8);
	p[9] = (uint8_t)ttl;
	p[10] = 0;
	p[11] = 4;
	memcpy(p + 12, a, 4);
	return 16;
}

static void test_upstream_enc_boot_query_wire(void **state)
{
	uint8_t q[300];
	static const uint8_t want[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'd', 'o', 'h', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0,
		0, 28, 0, 1,
	};
	int n;

	(void)state;
	n = gw_up_boot_query(q, sizeof(q), "doh.example", 28, 0x1234);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(q, want, sizeof(want));
	/* a trailing dot is the same name */
	assert_int_equal(gw_up_boot_query(q, sizeof(q), "doh.example.", 28,
					  0x1234), sizeof(want));
	/* empty label, label over 63, no room */
	assert_int_equal(gw_up_boot_query(q, sizeof(q), "a..b", 1, 1),
			 GW_EINVAL);
	char big[80];
	memset(big, 'x', 64);
	big[64] = '\0';
	assert_int_equal(gw_up_boot_query(q, sizeof(q), big, 1, 1), GW_EINVAL);
	assert_int_equal(gw_up_boot_query(q, 20, "doh.example", 1, 1),
			 GW_EINVAL);
}

static void test_upstream_enc_boot_parse_a(void **state)
{
	uint8_t m[512], rrs[64], a[16];
	static const uint8_t ip1[4] = { 127, 0, 0, 1 }, ip2[4] = { 10, 0, 0, 2 };
	uint32_t ttl = 0;
	size_t n, k;

	(void)state;
	k = rr_a(rrs, 300, ip1);
	k += rr_a(rrs + k, 60, ip2);
	n = mk_answer(m, 7, 0, "doh.example.test", 1, 2, rrs, k);
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 7, a,
					  &ttl), 0);
	assert_memory_equal(a, ip1, 4); /* the first address */
	assert_int_equal(ttl, 60);      /* the smallest TTL */
	/* RFC 4343: the echoed question may differ in case */
	m[GW_DNS_HEADER_LEN + 1] = 'D';
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 7, a,
					  &ttl), 0);
	/* another ID, another name, another type: not our answer */
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 8, a,
					  &ttl), GW_EMALFORMED);
	assert_int_equal(gw_up_boot_parse(m, n, "dot.example.test", 1, 7, a,
					  &ttl), GW_EMALFORMED);
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 28, 7, a,
					  &ttl), GW_EMALFORMED);
	/* a query (QR=0) is no answer */
	m[2] &= 0x7f;
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 7, a,
					  &ttl), GW_EMALFORMED);
	m[2] |= 0x80;
	/* every truncation fails cleanly */
	for (size_t cut = 0; cut < n; cut++)
		assert_true(gw_up_boot_parse(m, cut, "doh.example.test", 1, 7,
					     a, &ttl) < 0);
}

static void test_upstream_enc_boot_parse_cname_and_misses(void **state)
{
	uint8_t m[512], rrs[128], a[16];
	static const uint8_t ip[4] = { 192, 0, 2, 1 };
	uint32_t ttl = 0;
	size_t n, k = 0;

	(void)state;
	/* CNAME (ttl 30) to "x" + pointer, then A of the target (ttl 90) */
	static const uint8_t cname[] = { 0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 30,
					 0, 4, 1, 'x', 0xc0, 0x10 };
	memcpy(rrs, cname, sizeof(cname));
	k = sizeof(cname);
	/* owner: "x" + pointer written out as a compressed name at k */
	static const uint8_t owner[] = { 1, 'x', 0xc0, 0x10 };
	memcpy(rrs + k, owner, sizeof(owner));
	k += sizeof(owner);
	static const uint8_t a_rest[] = { 0, 1, 0, 1, 0, 0, 0, 90, 0, 4 };
	memcpy(rrs + k, a_rest, sizeof(a_rest));
	k += sizeof(a_rest);
	memcpy(rrs + k, ip, 4);
	k += 4;
	n = mk_answer(m, 9, 0, "doh.example.test", 1, 2, rrs, k);
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 9, a,
					  &ttl), 0);
	assert_memory_equal(a, ip, 4);
	assert_int_equal(ttl, 30); /* the chain lives as long as its CNAME */

	/* NXDOMAIN, and NOERROR without an address: nothing (GW_EAGAIN) */
	n = mk_answer(m, 9, 3, "doh.example.test", 1, 0, NULL, 0);
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 9, a,
					  &ttl), GW_EAGAIN);
	n = mk_answer(m, 9, 0, "doh.example.test", 1, 1, cname, sizeof(cname));
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1, 9, a,
					  &ttl), GW_EAGAIN);
	/* an A record with a 16-byte rdata is not an address */
	{
		uint8_t bad[28];
		(void)rr_a(bad, 5, ip);
		bad[11] = 16;
		memset(bad + 12, 0, 16);
		n = mk_answer(m, 9, 0, "doh.example.test", 1, 1, bad,
			      sizeof(bad));
		assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 1,
						  9, a, &ttl), GW_EAGAIN);
	}
}

static void test_upstream_enc_boot_parse_aaaa(void **state)
{
	uint8_t m[512], rrs[64], a[16], want[16];
	uint32_t ttl = 0;
	size_t n;
	static const uint8_t head[] = { 0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 1, 0,
					0, 16 };

	(void)state;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::53", want), 1);
	memcpy(rrs, head, sizeof(head));
	memcpy(rrs + sizeof(head), want, 16);
	n = mk_answer(m, 0xbeef, 0, "doh.example.test", 28, 1, rrs,
		      sizeof(head) + 16);
	assert_int_equal(gw_up_boot_parse(m, n, "doh.example.test", 28, 0xbeef,
					  a, &ttl), 0);
	assert_memory_equal(a, want, 16);
	assert_int_equal(ttl, 256);
}

/* --- gw_up_pool_new() on the new schemes --------------------------------------- */

static gw_conf_t *conf_with(const char *url)
{
	gw_conf_t *c = calloc(1, sizeof(*c));
	char err[200];

	assert_non_null(c);
	gw_conf_defaults(c);
	assert_int_equal(gw_endpoint_parse(url, true, &c->upstream[0], err,
					   sizeof(err)), 0);
	c->n_upstream = 1;
	/* a CA file that exists: only the scheme checks are under test */
	snprintf(c->up.ca_file, sizeof(c->up.ca_file), "%s",
		 "/etc/ssl/certs/ca-certificates.crt");
	return c;
}

static void test_upstream_enc_pool_schemes(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	char err[256];
	gw_up_pool_t *p;
	gw_conf_t *c;

	(void)state;
	/* https:// and quic:// with a name to verify: accepted */
	c = conf_with("https://127.0.0.1:4443/dns-query#dns.test");
	p = gw_up_pool_new(loop, c, err, sizeof(err));
	assert_non_null(p);
	gw_up_pool_free(p);
	free(c);
	c = conf_with("quic://127.0.0.1:8853#dns.test");
	p = gw_up_pool_new(loop, c, err, sizeof(err));
	assert_non_null(p);
	gw_up_pool_free(p);
	free(c);
	/* quic:// with nothing to verify against: refused (RFC 8310 5) */
	c = conf_with("quic://127.0.0.1:8853");
	assert_null(gw_up_pool_new(loop, c, err, sizeof(err)));
	assert_non_null(strstr(err, "quic:// upstream needs '#name'"));
	/* ... unless pinned */
	snprintf(c->up.pin[0], sizeof(c->up.pin[0]), "%s",
		 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
	p = gw_up_pool_new(loop, c, err, sizeof(err));
	assert_non_null(p);
	gw_up_pool_free(p);
	free(c);
	/* a host name with a bootstrap resolver that never answers: start-up
	 * fails with the name in the message (bounded by the timeout) */
	c = conf_with("https://doh.invalid.test/dns-query");
	c->up.timeout_ms = 200;
	assert_int_equal(gw_conf_parse_addr("127.0.0.1:9", &c->up.bootstrap_addr,
					    &c->up.bootstrap_addrlen, err,
					    sizeof(err)), 0);
	assert_null(gw_up_pool_new(loop, c, err, sizeof(err)));
	assert_non_null(strstr(err, "cannot resolve 'doh.invalid.test'"));
	free(c);
	ev_loop_destroy(loop);
}

/* 1-RTT TLS messages from a QUIC upstream: session tickets pass however
 * they are cut (a ticket body may hold any byte, 24 included); a KeyUpdate
 * (24) or any other type is refused, after tickets or within a chunk. */
static void test_upstream_enc_tls_tickets_only(void **state)
{
	(void)state;
	/* two tickets: one with a body holding 24s, one with none */
	static const uint8_t two[] = {4, 0, 0, 5, 24, 24, 0, 1, 2, 4, 0, 0, 0};
	static const uint8_t bad[] = {4, 0, 0, 1, 9, 24, 0, 0, 1, 0};
	gw_up_tls_msgs_t m;

	for (size_t cut = 0; cut <= sizeof(two); cut++) {
		memset(&m, 0, sizeof(m));
		assert_int_equal(gw_up_tls_tickets_only(&m, two, cut), 0);
		assert_int_equal(
		    gw_up_tls_tickets_only(&m, two + cut, sizeof(two) - cut), 0);
	}
	memset(&m, 0, sizeof(m));
	for (size_t i = 0; i < sizeof(two); i++)
		assert_int_equal(gw_up_tls_tickets_only(&m, two + i, 1), 0);
	/* the KeyUpdate after a ticket: refused in one chunk or alone */
	memset(&m, 0, sizeof(m));
	assert_int_equal(gw_up_tls_tickets_only(&m, bad, sizeof(bad)), -1);
	memset(&m, 0, sizeof(m));
	assert_int_equal(gw_up_tls_tickets_only(&m, bad, 5), 0);
	assert_int_equal(gw_up_tls_tickets_only(&m, bad + 5, 1), -1);
	/* a Finished (20) or anything else as well */
	static const uint8_t fin[] = {20, 0, 0, 0};
	memset(&m, 0, sizeof(m));
	assert_int_equal(gw_up_tls_tickets_only(&m, fin, sizeof(fin)), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_enc_boot_query_wire),
		cmocka_unit_test(test_upstream_enc_boot_parse_a),
		cmocka_unit_test(test_upstream_enc_boot_parse_cname_and_misses),
		cmocka_unit_test(test_upstream_enc_boot_parse_aaaa),
		cmocka_unit_test(test_upstream_enc_pool_schemes),
		cmocka_unit_test(test_upstream_enc_tls_tickets_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
