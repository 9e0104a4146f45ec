/*
 * test_admin_http.c - the admin listener's HTTP/1.1 request-head reader
 * (gateway/admin_http.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gateway/admin_http.h"

static int parse(const char *s, gw_admin_req_t *req)
{
	return gw_admin_http_parse((const uint8_t *)s, strlen(s), req);
}

static void test_admin_http_good_requests(void **state)
{
	static const struct {
		const char *in;
		gw_admin_method_t method;
		const char *path;
		unsigned minor;
	} v[] = {
	    {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", GW_ADMIN_GET,
	     "/metrics", 1},
	    {"GET /healthz HTTP/1.0\r\n\r\n", GW_ADMIN_GET, "/healthz", 0},
	    {"HEAD /readyz?verbose=1 HTTP/1.1\r\n\r\n", GW_ADMIN_HEAD,
	     "/readyz", 1},
	    /* RFC 9112 2.2: a bare LF ends a line too */
	    {"GET / HTTP/1.1\nUser-Agent: Prometheus/2.42\n\n", GW_ADMIN_GET,
	     "/", 1},
	    {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
	     GW_ADMIN_OTHER, "/metrics", 1},
	    {"GET /metrics HTTP/1.1\r\nAccept:  text/plain;q=0.9 \t\r\n"
	     "X-Empty:\r\n\r\n",
	     GW_ADMIN_GET, "/metrics", 1},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		gw_admin_req_t req;
		int r = parse(v[i].in, &req);
		assert_int_equal(r, (int)strlen(v[i].in));
		assert_int_equal(req.method, v[i].method);
		assert_string_equal(req.path, v[i].path);
		assert_int_equal(req.minor, v[i].minor);
	}
}

static void test_admin_http_incremental(void **state)
{
	const char *s = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
	gw_admin_req_t req;
	/* every proper prefix asks for more, byte by byte */
	for (size_t n = 0; n < strlen(s); n++)
		assert_int_equal(
		    gw_admin_http_parse((const uint8_t *)s, n, &req), 0);
	/* bytes after the head (a pipelined request) are not ours */
	char two[128];
	snprintf(two, sizeof(two), "%sGET /x HTTP/1.1\r\n\r\n", s);
	assert_int_equal(parse(two, &req), (int)strlen(s));
}

static void test_admin_http_bad_requests(void **state)
{
	static const struct {
		const char *in;
		int want;
	} v[] = {
	    {"GET  /metrics HTTP/1.1\r\n\r\n", -400}, /* two spaces */
	    {" GET /metrics HTTP/1.1\r\n\r\n", -400},
	    {"GET metrics HTTP/1.1\r\n\r\n", -400}, /* not origin-form */
	    {"GET http://a/metrics HTTP/1.1\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1 \r\n\r\n", -400},
	    {"GET /metrics http/1.1\r\n\r\n", -400},
	    {"GET /metrics HTTP/11\r\n\r\n", -400},
	    {"GET /metrics\r\n\r\n", -400}, /* HTTP/0.9 */
	    {"GET /metrics HTTP/2.0\r\n\r\n", -505},
	    {"GET /met rics HTTP/1.1\r\n\r\n", -400},
	    {"GET /a\"b HTTP/1.1\r\n\r\n", -400},
	    {"GET /a#frag HTTP/1.1\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\rX\n\r\n", -400}, /* bare CR */
	    {"GET /metrics HTTP/1.1\r\nHost : a\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\r\n: a\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\r\nX: a\x01"
	     "b\r\n\r\n",
	     -400},
	    {"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n", -413},
	    {"GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\r\nContent-Length:\r\n\r\n", -400},
	    {"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
	     -413},
	    {"\x16\x03\x01\x02\x00", -400}, /* a TLS ClientHello */
	    {"\r\nGET / HTTP/1.1\r\n\r\n", -400},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		gw_admin_req_t req;
		int r = parse(v[i].in, &req);
		if (r != v[i].want)
			fail_msg("case %zu: got %d want %d", i, r, v[i].want);
	}
}

static void test_admin_http_limits(void **state)
{
	static char big[GW_ADMIN_MAX_HEAD * 2];
	gw_admin_req_t req;

	/* path one byte short of the cap is kept; at the cap: 414 */
	int n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n",
			 GW_ADMIN_MAX_TARGET - 2, 0);
	assert_int_equal(parse(big, &req), n);
	assert_int_equal(strlen(req.path), GW_ADMIN_MAX_TARGET - 1);
	snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n",
		 GW_ADMIN_MAX_TARGET - 1, 0);
	assert_int_equal(parse(big, &req), -414);

	/* a head that never ends within the cap: 431 */
	memset(big, 0, sizeof(big));
	strcpy(big, "GET / HTTP/1.1\r\nX: ");
	memset(big + strlen(big), 'a', GW_ADMIN_MAX_HEAD);
	assert_int_equal(
	    gw_admin_http_parse((const uint8_t *)big, sizeof(big), &req), -431);
	/* a request line that alone fills the cap: 431 */
	memset(big, 'A', sizeof(big));
	assert_int_equal(
	    gw_admin_http_parse((const uint8_t *)big, GW_ADMIN_MAX_HEAD, &req),
	    -431);

	/* too many fields: 431 */
	size_t off = (size_t)sprintf(big, "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= GW_ADMIN_MAX_FIELDS; i++)
		off += (size_t)sprintf(big + off, "X%d: y\r\n", i);
	off += (size_t)sprintf(big + off, "\r\n");
	assert_int_equal(gw_admin_http_parse((const uint8_t *)big, off, &req),
			 -431);
}

static void test_admin_http_response_head(void **state)
{
	char out[512];
	int n = gw_admin_http_head(200, "text/plain; version=0.0.4", 12, out,
				   sizeof(out));
	assert_true(n > 0);
	assert_string_equal(out, "HTTP/1.1 200 OK\r\n"
				 "Content-Type: text/plain; version=0.0.4\r\n"
				 "Content-Length: 12\r\n"
				 "Cache-Control: no-store\r\n"
				 "Connection: close\r\n\r\n");
	n = gw_admin_http_head(405, NULL, 0, out, sizeof(out));
	assert_true(n > 0);
	assert_non_null(strstr(out, "HTTP/1.1 405 Method Not Allowed\r\n"));
	assert_non_null(strstr(out, "Allow: GET, HEAD\r\n"));
	assert_null(strstr(out, "Content-Type"));
	assert_true(gw_admin_http_head(200, "x", 1, out, 20) < 0);
	assert_string_equal(gw_admin_http_reason(503), "Service Unavailable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_admin_http_good_requests),
	    cmocka_unit_test(test_admin_http_incremental),
	    cmocka_unit_test(test_admin_http_bad_requests),
	    cmocka_unit_test(test_admin_http_limits),
	    cmocka_unit_test(test_admin_http_response_head),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
