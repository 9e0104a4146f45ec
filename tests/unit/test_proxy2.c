/*
 * test_proxy2.c - PROXY protocol v2 header reader (transports/proxy2.h),
 * vectors built as proxy-protocol.txt 2.2 lays them out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "gateway/error.h"
#include "transports/proxy2.h"

static const uint8_t SIG[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* signature, ver_cmd, fam, the block of blen bytes */
static size_t hdr(uint8_t *out, uint8_t ver_cmd, uint8_t fam,
		  const uint8_t *block, size_t blen)
{
	memcpy(out, SIG, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(blen >> 8);
	out[15] = (uint8_t)blen;
	if (blen)
		memcpy(out + 16, block, blen);
	return 16 + blen;
}

static void test_proxy2_ipv4(void **state)
{
	uint8_t b[64];
	gw_proxy2_t h;
	char s[64];
	(void)state;
	/* 192.0.2.7:4242 -> 198.51.100.1:853, then a TLV (type 4 NOOP) */
	const uint8_t blk[] = { 192, 0,    2, 7,   198, 51, 100, 1,
				0x10, 0x92, 3, 0x55, 4,  0,   2,  0, 0 };
	size_t n = hdr(b, 0x21, 0x11, blk, sizeof(blk));
	/* the length is known once the fixed 16 bytes are in */
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(gw_proxy2_need(b, i, GW_PROXY2_MAX_LEN), 0);
	assert_int_equal(gw_proxy2_need(b, 16, GW_PROXY2_MAX_LEN), (int)n);
	assert_int_equal(gw_proxy2_parse(b, n, &h), 0);
	assert_false(h.local);
	assert_true(h.has_addr);
	const struct sockaddr_in *src = (const struct sockaddr_in *)&h.src;
	assert_int_equal(src->sin_family, AF_INET);
	assert_string_equal(inet_ntop(AF_INET, &src->sin_addr, s, sizeof(s)),
			    "192.0.2.7");
	assert_int_equal(ntohs(src->sin_port), 4242);
	const struct sockaddr_in *dst = (const struct sockaddr_in *)&h.dst;
	assert_int_equal(ntohs(dst->sin_port), 853);
	assert_int_equal(h.addrlen, sizeof(struct sockaddr_in));
	/* one byte short, or one more: malformed */
	assert_int_equal(gw_proxy2_parse(b, n - 1, &h), GW_EMALFORMED);
}

static void test_proxy2_ipv6(void **state)
{
	uint8_t b[64], blk[36];
	gw_proxy2_t h;
	char s[64];
	(void)state;
	memset(blk, 0, sizeof(blk));
	inet_pton(AF_INET6, "2001:db8::5", blk);
	inet_pton(AF_INET6, "2001:db8::1", blk + 16);
	blk[32] = 0xc3;
	blk[33] = 0x50;
	size_t n = hdr(b, 0x21, 0x21, blk, sizeof(blk));
	assert_int_equal(gw_proxy2_need(b, n, GW_PROXY2_MAX_LEN), (int)n);
	assert_int_equal(gw_proxy2_parse(b, n, &h), 0);
	assert_true(h.has_addr);
	const struct sockaddr_in6 *src = (const struct sockaddr_in6 *)&h.src;
	assert_string_equal(inet_ntop(AF_INET6, &src->sin6_addr, s, sizeof(s)),
			    "2001:db8::5");
	assert_int_equal(ntohs(src->sin6_port), 50000);
	/* an IPv6 block too short for its family */
	n = hdr(b, 0x21, 0x21, blk, 20);
	assert_int_equal(gw_proxy2_parse(b, n, &h), GW_EMALFORMED);
	n = hdr(b, 0x21, 0x11, blk, 11);
	assert_int_equal(gw_proxy2_parse(b, n, &h), GW_EMALFORMED);
}

static void test_proxy2_local_and_unspec(void **state)
{
	uint8_t b[300], blk[216];
	gw_proxy2_t h;
	(void)state;
	/* LOCAL (a health check): keep the real peer, block ignored */
	size_t n = hdr(b, 0x20, 0x00, NULL, 0);
	assert_int_equal(gw_proxy2_parse(b, n, &h), 0);
	assert_true(h.local);
	assert_false(h.has_addr);
	n = hdr(b, 0x20, 0x11, (const uint8_t *)"xyz", 3);
	assert_int_equal(gw_proxy2_parse(b, n, &h), 0);
	assert_true(h.local);
	/* PROXY with AF_UNSPEC or AF_UNIX: no IP client, real peer used */
	n = hdr(b, 0x21, 0x00, NULL, 0);
	assert_int_equal(gw_proxy2_parse(b, n, &h), 0);
	assert_false(h.local);
	assert_false(h.has_addr);
	memset(blk, 'a', sizeof(blk));
	n = hdr(b, 0x21, 0x31, blk, sizeof(blk));
	assert_int_equal(gw_proxy2_parse(b, n, &h), 0);
	assert_false(h.has_addr);
	n = hdr(b, 0x21, 0x31, blk, 100);
	assert_int_equal(gw_proxy2_parse(b, n, &h), GW_EMALFORMED);
}

static void test_proxy2_rejects(void **state)
{
	uint8_t b[64];
	gw_proxy2_t h;
	(void)state;
	/* plain DNS over TCP (length prefix) is refused at the first byte */
	const uint8_t dns[] = { 0x00, 0x1d, 0x12, 0x34 };
	assert_int_equal(gw_proxy2_need(dns, sizeof(dns), GW_PROXY2_MAX_LEN),
			 GW_EMALFORMED);
	/* a TLS ClientHello too */
	const uint8_t tls[] = { 0x16, 0x03, 0x01 };
	assert_int_equal(gw_proxy2_need(tls, 3, GW_PROXY2_MAX_LEN),
			 GW_EMALFORMED);
	/* version 1 (text) */
	const char *v1 = "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n";
	assert_int_equal(gw_proxy2_need((const uint8_t *)v1, strlen(v1),
					GW_PROXY2_MAX_LEN),
			 GW_EMALFORMED);
	/* wrong version, unknown command, family, protocol */
	size_t n = hdr(b, 0x11, 0x11, NULL, 0);
	assert_int_equal(gw_proxy2_need(b, 13, GW_PROXY2_MAX_LEN),
			 GW_EMALFORMED);
	n = hdr(b, 0x22, 0x11, NULL, 0);
	assert_int_equal(gw_proxy2_need(b, n, GW_PROXY2_MAX_LEN),
			 GW_EMALFORMED);
	n = hdr(b, 0x21, 0x41, NULL, 0);
	assert_int_equal(gw_proxy2_need(b, n, GW_PROXY2_MAX_LEN),
			 GW_EMALFORMED);
	n = hdr(b, 0x21, 0x13, NULL, 0);
	assert_int_equal(gw_proxy2_parse(b, n, &h), GW_EMALFORMED);
	/* a block past our cap */
	b[13] = 0x11;
	b[14] = 0x10;
	b[15] = 0x00;
	assert_int_equal(gw_proxy2_need(b, 16, GW_PROXY2_MAX_LEN), GW_ETOOBIG);
}

/* The datagram form: a header then the payload, in one datagram. */
static void test_proxy2_strip_dgram(void **state)
{
	uint8_t b[4096], blk[36];
	gw_proxy2_t h;
	char s[64];
	(void)state;
	const uint8_t dns[] = { 0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
	/* IPv4 over UDP (0x12): 192.0.2.7:5353 -> 127.0.0.1:53 */
	const uint8_t b4[] = { 192, 0, 2, 7, 127, 0, 0, 1, 0x14, 0xe9, 0, 53 };
	size_t n = hdr(b, 0x21, 0x12, b4, sizeof(b4));
	memcpy(b + n, dns, sizeof(dns));
	assert_int_equal(gw_proxy2_strip_dgram(b, n + sizeof(dns), &h), 28);
	assert_true(h.has_addr);
	assert_false(h.local);
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&h.src;
	assert_string_equal(inet_ntop(AF_INET, &s4->sin_addr, s, sizeof(s)),
			    "192.0.2.7");
	assert_int_equal(ntohs(s4->sin_port), 5353);
	assert_memory_equal(b + 28, dns, sizeof(dns));
	/* a header alone: the payload is empty, the caller judges that */
	assert_int_equal(gw_proxy2_strip_dgram(b, n, &h), 28);
	/* cut anywhere inside the header: refused, never read past len */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(gw_proxy2_strip_dgram(b, i, &h),
				 GW_EMALFORMED);
	/* a TCP family (0x11) from a proxy that says so is accepted too */
	b[13] = 0x11;
	assert_int_equal(gw_proxy2_strip_dgram(b, n + sizeof(dns), &h), 28);
	assert_true(h.has_addr);

	/* IPv6 over UDP (0x22) */
	memset(blk, 0, sizeof(blk));
	inet_pton(AF_INET6, "2001:db8::7", blk);
	inet_pton(AF_INET6, "::1", blk + 16);
	n = hdr(b, 0x21, 0x22, blk, sizeof(blk));
	memcpy(b + n, dns, sizeof(dns));
	assert_int_equal(gw_proxy2_strip_dgram(b, n + sizeof(dns), &h), 52);
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&h.src;
	assert_int_equal(s6->sin6_family, AF_INET6);
	assert_string_equal(inet_ntop(AF_INET6, &s6->sin6_addr, s, sizeof(s)),
			    "2001:db8::7");
	assert_int_equal(h.addrlen, sizeof(struct sockaddr_in6));

	/* LOCAL: the proxy's own query (health check) */
	n = hdr(b, 0x20, 0x00, NULL, 0);
	memcpy(b + n, dns, sizeof(dns));
	assert_int_equal(gw_proxy2_strip_dgram(b, n + sizeof(dns), &h), 16);
	assert_true(h.local);
	assert_false(h.has_addr);

	/* TLVs past the stream cap are fine: the datagram is the bound */
	memset(blk, 0, sizeof(blk));
	n = hdr(b, 0x21, 0x12, b4, sizeof(b4));
	size_t tlv = 2000;
	b[14] = (uint8_t)((12 + tlv) >> 8);
	b[15] = (uint8_t)(12 + tlv);
	memset(b + n, 0, tlv);
	assert_true(16 + 12 + tlv > GW_PROXY2_MAX_LEN);
	memcpy(b + n + tlv, dns, sizeof(dns));
	assert_int_equal(gw_proxy2_strip_dgram(b, n + tlv + sizeof(dns), &h),
			 (int)(n + tlv));
	/* ... but not a length past the datagram */
	assert_int_equal(gw_proxy2_strip_dgram(b, n + tlv - 1, &h),
			 GW_EMALFORMED);

	/* not a header: a plain DNS query, version 1, an address block too
	 * short for its family, an unknown command */
	assert_int_equal(gw_proxy2_strip_dgram(dns, sizeof(dns), &h),
			 GW_EMALFORMED);
	memset(b, 0x55, 40);
	assert_int_equal(gw_proxy2_strip_dgram(b, 40, &h), GW_EMALFORMED);
	const char *v1 = "PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\nxxxxxxxxxxxx";
	assert_int_equal(gw_proxy2_strip_dgram((const uint8_t *)v1,
					       strlen(v1), &h),
			 GW_EMALFORMED);
	n = hdr(b, 0x21, 0x12, b4, 11);
	memcpy(b + n, dns, sizeof(dns));
	assert_int_equal(gw_proxy2_strip_dgram(b, n + sizeof(dns), &h),
			 GW_EMALFORMED);
	n = hdr(b, 0x2f, 0x12, b4, sizeof(b4));
	memcpy(b + n, dns, sizeof(dns));
	assert_int_equal(gw_proxy2_strip_dgram(b, n + sizeof(dns), &h),
			 GW_EMALFORMED);
	assert_false(h.has_addr); /* nothing left behind on failure */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proxy2_ipv4),
		cmocka_unit_test(test_proxy2_ipv6),
		cmocka_unit_test(test_proxy2_local_and_unspec),
		cmocka_unit_test(test_proxy2_rejects),
		cmocka_unit_test(test_proxy2_strip_dgram),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
