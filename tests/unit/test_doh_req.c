/*
 * test_doh_req.c - DoH request checks (transports/doh_req.c): every status
 * of REQUIREMENTS.md's DoH section, base64url, and the trusted-proxy walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "gateway/error.h"
#include "transports/doh_req.h"

/* ID 0, RD, one question www.example.test A IN */
static const char Q_B64[] = "AAABAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ";
static const uint8_t Q_WIRE[] = {
	0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 7, 'e', 'x',
	'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1,
};

struct hdr {
	const char *name, *value;
};

/* Runs a whole request; returns the status (0 = a DNS message). */
static int run(bool http1, const struct hdr *h, const uint8_t *body,
	       size_t blen, const uint8_t **msg, size_t *len,
	       gw_doh_req_t *keep)
{
	gw_doh_req_t r;
	const uint8_t *m = NULL;
	size_t l = 0;
	int st = 0;
	gw_doh_req_init(&r, "/dns-query", http1);
	for (; h && h->name; h++)
		gw_doh_req_header(&r, h->name, strlen(h->name), h->value,
				  strlen(h->value));
	st = gw_doh_req_headers_done(&r);
	if (!st && body)
		st = gw_doh_req_body(&r, body, blen);
	if (!st)
		st = gw_doh_req_finish(&r, &m, &l);
	if (msg) {
		*msg = m;
		*len = l;
	}
	if (keep)
		*keep = r;
	else
		gw_doh_req_deinit(&r);
	return st;
}

static int get(const char *path)
{
	struct hdr h[] = { { ":method", "GET" }, { ":path", path }, { 0 } };
	return run(false, h, NULL, 0, NULL, NULL, NULL);
}

static void test_doh_req_get_ok(void **state)
{
	char path[256];
	gw_doh_req_t r;
	const uint8_t *m;
	size_t l;
	snprintf(path, sizeof(path), "/dns-query?dns=%s", Q_B64);
	struct hdr h[] = { { ":method", "GET" }, { ":path", path },
			   { ":scheme", "https" }, { "accept",
						     "application/dns-message" },
			   { 0 } };
	assert_int_equal(run(false, h, NULL, 0, &m, &l, &r), 0);
	assert_int_equal(l, sizeof(Q_WIRE));
	assert_memory_equal(m, Q_WIRE, l);
	gw_doh_req_deinit(&r);

	/* other parameters around dns= are ignored; padding tolerated */
	snprintf(path, sizeof(path), "/dns-query?ct=x&dns=%s==&z=1", Q_B64);
	assert_int_equal(get(path), 0);
	snprintf(path, sizeof(path), "/dns-query?dns=%s%%3D%%3d", Q_B64);
	assert_int_equal(get(path), 0);
}

static void test_doh_req_get_errors(void **state)
{
	char path[8192];
	assert_int_equal(get("/dns-query"), 400);          /* no dns */
	assert_int_equal(get("/dns-query?dns="), 400);     /* empty */
	assert_int_equal(get("/dns-query?dns=AA*A"), 400); /* invalid */
	assert_int_equal(get("/dns-query?dns=AAAA"), 400); /* < 12 bytes */
	assert_int_equal(get("/dns-query?dns=AAABAAABAAAAAAAA&dns=AAABAAABAAAAAAAA"),
			 400); /* two dns= */
	/* QR=1 */
	assert_int_equal(get("/dns-query?dns=AACBAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ"),
			 400);
	assert_int_equal(get("/other?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ"),
			 404);
	assert_int_equal(get("/dns-query/x"), 404);
	/* 414: the target past GW_DOH_MAX_TARGET */
	memcpy(path, "/dns-query?dns=", 15);
	memset(path + 15, 'A', sizeof(path) - 16);
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(get(path), 414);
}

static void test_doh_req_methods(void **state)
{
	struct hdr put[] = { { ":method", "PUT" }, { ":path", "/dns-query" },
			     { 0 } };
	struct hdr head[] = { { ":method", "HEAD" },
			      { ":path", "/dns-query" }, { 0 } };
	struct hdr none[] = { { ":path", "/dns-query" }, { 0 } };
	struct hdr wrongpath[] = { { ":method", "PUT" }, { ":path", "/x" },
				   { 0 } };
	assert_int_equal(run(false, put, NULL, 0, NULL, NULL, NULL), 405);
	assert_int_equal(run(false, head, NULL, 0, NULL, NULL, NULL), 405);
	assert_int_equal(run(false, none, NULL, 0, NULL, NULL, NULL), 400);
	/* the path is checked first */
	assert_int_equal(run(false, wrongpath, NULL, 0, NULL, NULL, NULL), 404);
}

static void test_doh_req_post(void **state)
{
	const uint8_t *m;
	size_t l;
	struct hdr ok[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			    { "content-type", "application/dns-message" },
			    { "content-length", "34" }, { 0 } };
	assert_int_equal(run(false, ok, Q_WIRE, sizeof(Q_WIRE), &m, &l, NULL),
			 0);
	/* h2 without content-length is fine */
	struct hdr nocl[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			      { "Content-Type", "Application/DNS-Message; x=y" },
			      { 0 } };
	assert_int_equal(run(false, nocl, Q_WIRE, sizeof(Q_WIRE), NULL, NULL,
			     NULL),
			 0);
	/* HTTP/1.1 without content-length: 411 */
	assert_int_equal(run(true, nocl, Q_WIRE, sizeof(Q_WIRE), NULL, NULL,
			     NULL),
			 411);
	struct hdr te[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			    { "content-type", "application/dns-message" },
			    { "transfer-encoding", "chunked" }, { 0 } };
	assert_int_equal(run(true, te, NULL, 0, NULL, NULL, NULL), 501);
	struct hdr ct[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			    { "content-type", "text/plain" }, { 0 } };
	assert_int_equal(run(false, ct, Q_WIRE, sizeof(Q_WIRE), NULL, NULL,
			     NULL),
			 415);
	struct hdr noct[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			      { 0 } };
	assert_int_equal(run(false, noct, NULL, 0, NULL, NULL, NULL), 415);
	struct hdr ctpfx[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			       { "content-type", "application/dns-messagex" },
			       { 0 } };
	assert_int_equal(run(false, ctpfx, NULL, 0, NULL, NULL, NULL), 415);
	/* huge announced length: 413 before any body, nothing allocated */
	struct hdr big[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			     { "content-type", "application/dns-message" },
			     { "content-length", "99999999999999999999999" },
			     { 0 } };
	gw_doh_req_t r;
	assert_int_equal(run(false, big, NULL, 0, NULL, NULL, &r), 413);
	assert_true(r.msg.cap < 4096); /* only the :path was ever held */
	gw_doh_req_deinit(&r);
	/* lying content-length: more body than announced 413, less 400 */
	struct hdr lie[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			     { "content-type", "application/dns-message" },
			     { "content-length", "20" }, { 0 } };
	assert_int_equal(run(false, lie, Q_WIRE, sizeof(Q_WIRE), NULL, NULL,
			     NULL),
			 413);
	struct hdr lie2[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			      { "content-type", "application/dns-message" },
			      { "content-length", "40" }, { 0 } };
	assert_int_equal(run(false, lie2, Q_WIRE, sizeof(Q_WIRE), NULL, NULL,
			     NULL),
			 400);
	struct hdr badcl[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			       { "content-type", "application/dns-message" },
			       { "content-length", "3x" }, { 0 } };
	assert_int_equal(run(false, badcl, NULL, 0, NULL, NULL, NULL), 400);
	struct hdr dupcl[] = { { ":method", "POST" }, { ":path", "/dns-query" },
			       { "content-length", "34" },
			       { "content-length", "35" }, { 0 } };
	assert_int_equal(run(false, dupcl, NULL, 0, NULL, NULL, NULL), 400);
	/* body over 65535 without content-length */
	static uint8_t huge[70000];
	assert_int_equal(run(false, nocl, huge, sizeof(huge), NULL, NULL, NULL),
			 413);
	/* short body */
	assert_int_equal(run(false, nocl, Q_WIRE, 11, NULL, NULL, NULL), 400);
}

static void test_doh_req_header_limits(void **state)
{
	gw_doh_req_t r;
	char v[GW_DOH_MAX_HEADER_BYTES];
	gw_doh_req_init(&r, "/dns-query", false);
	for (int i = 0; i < GW_DOH_MAX_HEADERS; i++)
		assert_int_equal(gw_doh_req_header(&r, "x-a", 3, "b", 1), 0);
	assert_int_equal(gw_doh_req_header(&r, "x-a", 3, "b", 1), 431);
	/* sticky */
	assert_int_equal(gw_doh_req_headers_done(&r), 431);
	gw_doh_req_deinit(&r);

	gw_doh_req_init(&r, "/dns-query", false);
	memset(v, 'a', sizeof(v));
	assert_int_equal(gw_doh_req_header(&r, "x-big", 5, v, sizeof(v)), 431);
	gw_doh_req_deinit(&r);
}

static void test_doh_req_base64url(void **state)
{
	uint8_t out[8];
	assert_int_equal(gw_doh_base64url_decode("", 0, out, sizeof(out)), 0);
	assert_int_equal(gw_doh_base64url_decode("_-8", 3, out, sizeof(out)),
			 2);
	assert_int_equal(out[0], 0xff);
	assert_int_equal(out[1], 0xef);
	assert_int_equal(gw_doh_base64url_decode("_-8=", 4, out, sizeof(out)),
			 2);
	assert_int_equal(gw_doh_base64url_decode("+/8", 3, out, sizeof(out)),
			 -1); /* base64, not base64url */
	assert_int_equal(gw_doh_base64url_decode("A", 1, out, sizeof(out)), -1);
	assert_int_equal(gw_doh_base64url_decode("AB", 2, out, sizeof(out)),
			 -1); /* non-zero leftover bits */
	assert_int_equal(gw_doh_base64url_decode("AA===", 5, out, sizeof(out)),
			 -1);
	assert_int_equal(gw_doh_base64url_decode("AAAAAAAAAAAAAAAA", 16, out,
						 sizeof(out)),
			 -1); /* 12 bytes > cap 8 */
}

static gw_cidr_t cidr(const char *s)
{
	gw_cidr_t c;
	char err[100];
	assert_int_equal(gw_cidr_parse(s, &c, err, sizeof(err)), 0);
	return c;
}

static struct sockaddr_storage v4(const char *s)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(4444);
	inet_pton(AF_INET, s, &a->sin_addr);
	return ss;
}

static const char *ip(const struct sockaddr_storage *ss, char *buf)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			  buf, INET6_ADDRSTRLEN);
	else
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)ss)->sin6_addr, buf,
			  INET6_ADDRSTRLEN);
	return buf;
}

static void test_doh_req_client_addr(void **state)
{
	gw_cidr_t t[2] = { cidr("127.0.0.0/8"), cidr("10.1.0.0/16") };
	struct sockaddr_storage peer = v4("127.0.0.1"), out;
	struct sockaddr_storage untrusted = v4("192.0.2.1");
	char b[INET6_ADDRSTRLEN];

	/* untrusted peer: headers ignored */
	assert_false(gw_doh_client_addr(t, 2, &untrusted, "198.51.100.7", "",
					&out));
	assert_string_equal(ip(&out, b), "192.0.2.1");
	/* trusted peer, one hop */
	assert_true(gw_doh_client_addr(t, 2, &peer, "198.51.100.7", "", &out));
	assert_string_equal(ip(&out, b), "198.51.100.7");
	/* right to left: a spoofed left entry is not believed */
	assert_true(gw_doh_client_addr(t, 2, &peer,
				       "6.6.6.6, 198.51.100.7, 10.1.2.3", "",
				       &out));
	assert_string_equal(ip(&out, b), "198.51.100.7");
	/* all hops trusted: the leftmost */
	assert_true(gw_doh_client_addr(t, 2, &peer, "10.1.9.9, 10.1.2.3", "",
				       &out));
	assert_string_equal(ip(&out, b), "10.1.9.9");
	/* garbage stops the walk at the last address known */
	assert_true(gw_doh_client_addr(t, 2, &peer, "junk, 10.1.2.3", "",
				       &out));
	assert_string_equal(ip(&out, b), "10.1.2.3");
	assert_false(gw_doh_client_addr(t, 2, &peer, "unknown", "", &out));
	assert_string_equal(ip(&out, b), "127.0.0.1");
	/* Forwarded wins over XFF; quoted IPv6 with a port */
	assert_true(gw_doh_client_addr(
		t, 2, &peer, "9.9.9.9",
		"for=192.0.2.60;proto=https, for=\"[2001:db8::7]:4711\"", &out));
	assert_string_equal(ip(&out, b), "2001:db8::7");
	assert_true(gw_doh_client_addr(t, 2, &peer, NULL,
				       "for=198.51.100.9:80;by=10.1.0.1", &out));
	assert_string_equal(ip(&out, b), "198.51.100.9");
	/* no trusted list at all */
	assert_false(gw_doh_client_addr(NULL, 0, &peer, "198.51.100.7", "",
					&out));
}

static void test_doh_req_forwarded_join(void **state)
{
	gw_doh_req_t r;
	gw_doh_req_init(&r, "/dns-query", false);
	gw_doh_req_header(&r, "X-Forwarded-For", 15, "1.1.1.1", 7);
	gw_doh_req_header(&r, "x-forwarded-for", 15, " 2.2.2.2 ", 9);
	assert_string_equal(r.xff, "1.1.1.1, 2.2.2.2");
	char big[GW_DOH_MAX_FORWARDED];
	memset(big, '1', sizeof(big));
	gw_doh_req_header(&r, "x-forwarded-for", 15, big, sizeof(big));
	assert_true(r.xff_overflow);
	assert_string_equal(r.xff, "");
	gw_doh_req_deinit(&r);
}

static void test_doh_req_cidr_match(void **state)
{
	gw_cidr_t t[3] = { cidr("192.0.2.0/25"), cidr("2001:db8::/32"),
			   cidr("0.0.0.0/0") };
	struct sockaddr_storage a = v4("192.0.2.127"), b = v4("192.0.2.128");
	assert_true(gw_doh_cidr_match(t, 1, (struct sockaddr *)&a));
	assert_false(gw_doh_cidr_match(t, 1, (struct sockaddr *)&b));
	assert_true(gw_doh_cidr_match(t, 3, (struct sockaddr *)&b));
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8:1::1", &s6.sin6_addr);
	assert_true(gw_doh_cidr_match(t, 2, (struct sockaddr *)&s6));
	inet_pton(AF_INET6, "::ffff:192.0.2.5", &s6.sin6_addr);
	assert_true(gw_doh_cidr_match(t, 1, (struct sockaddr *)&s6));
	gw_cidr_t c;
	char err[100];
	assert_int_equal(gw_cidr_parse("10.0.0.0/33", &c, err, sizeof(err)),
			 GW_EINVAL);
	assert_int_equal(gw_cidr_parse("nope", &c, err, sizeof(err)),
			 GW_EINVAL);
	assert_int_equal(gw_cidr_parse("::1", &c, err, sizeof(err)), 0);
	assert_int_equal(c.prefix, 128);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doh_req_get_ok),
		cmocka_unit_test(test_doh_req_get_errors),
		cmocka_unit_test(test_doh_req_methods),
		cmocka_unit_test(test_doh_req_post),
		cmocka_unit_test(test_doh_req_header_limits),
		cmocka_unit_test(test_doh_req_base64url),
		cmocka_unit_test(test_doh_req_client_addr),
		cmocka_unit_test(test_doh_req_forwarded_join),
		cmocka_unit_test(test_doh_req_cidr_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
